// A stand-in for the model APIs of the host CLIs, on loopback, for tests/hosts/check.sh.
//
//   node tests/hosts/model-stub.mjs <dir>
//
// Listens on 127.0.0.1 (a free port, written to <dir>/port), saves the body of every request
// as <dir>/request-<n>.json (with the method and path in <dir>/request-<n>.txt), and answers
// each with HTTP 400 and a JSON error: a request error no client retries, so a host that sends
// its first model request ends at once. Nothing here is a model: the point is the request,
// which carries the tool list the host would give its model (Anthropic `tools`, Gemini
// `functionDeclarations`, OpenAI Responses `tools`). Stops on SIGTERM.

import { writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: model-stub.mjs <dir>");
  process.exit(2);
}
let count = 0;
const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    count += 1;
    writeFileSync(join(dir, `request-${count}.json`), Buffer.concat(chunks));
    writeFileSync(join(dir, `request-${count}.txt`), `${req.method} ${req.url}\n`);
    const body = JSON.stringify({
      type: "error",
      error: {
        type: "invalid_request_error",
        code: 400,
        status: "INVALID_ARGUMENT",
        message: "mcp-chat hosts check: this is not a model (the request was recorded)",
      },
    });
    res.writeHead(400, { "content-type": "application/json", "content-length": body.length });
    res.end(body);
  });
});
server.listen(0, "127.0.0.1", () => {
  writeFileSync(join(dir, "port"), `${server.address().port}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
