// The checks of tests/hosts/check.sh that need JSON, on the pinned Node.
//
//   node expect.mjs tools <bridge> <relay-url>
//       Prints the tools the bridge lists to a host without the MCP Apps extension (as the
//       three CLIs are), one name a line: what each host must show its model.
//   node expect.mjs claude-init <stream-json-file> <tool>...
//       Claude Code's `-p --output-format stream-json` starts with a system/init event naming
//       every MCP server with its status and every tool: mcp-chat must be "connected" and each
//       tool listed as mcp__mcp-chat__<tool>.
//   node expect.mjs requests <stub-dir> <anthropic|gemini|openai> <tool>...
//       The model requests tests/hosts/model-stub.mjs recorded: the last one of that API must
//       offer the model each tool, under the name that host gives MCP tools.
//
// Prints "ok: ..." or "FAIL: ..." lines; exit status 0 when all passed, 1 otherwise.

import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

const [command, ...args] = process.argv.slice(2);
let failed = false;
function ok(message) {
  console.log(`ok: ${message}`);
}
function fail(message) {
  console.log(`FAIL: ${message}`);
  failed = true;
}
function missing(listed, wanted, what) {
  const absent = wanted.filter((name) => !listed.includes(name));
  if (absent.length) fail(`${what}: missing ${absent.join(", ")} (listed: ${listed.join(", ")})`);
  else ok(`${what}: all ${wanted.length} tools`);
}

async function bridgeTools(bridge, relay) {
  const child = spawn(bridge, ["--relay", relay, "--ephemeral"], {
    stdio: ["pipe", "pipe", "ignore"],
  });
  const lines = createInterface({ input: child.stdout });
  const answers = new Map();
  const waiting = new Map();
  lines.on("line", (line) => {
    const message = JSON.parse(line);
    if (message.id === undefined || message.method) return;
    if (waiting.has(message.id)) waiting.get(message.id)(message);
    else answers.set(message.id, message);
  });
  const request = (id, method, params) =>
    new Promise((resolve) => {
      waiting.set(id, resolve);
      child.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", id, method, params })}\n`);
    });
  await request(1, "initialize", {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name: "hosts-check", version: "0" },
  });
  child.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" })}\n`);
  const listed = await request(2, "tools/list", {});
  child.stdin.end();
  return listed.result.tools.map((tool) => tool.name);
}

function requests(dir) {
  return readdirSync(dir)
    .filter((f) => /^request-\d+\.json$/.test(f))
    .sort((a, b) => Number(a.match(/\d+/)[0]) - Number(b.match(/\d+/)[0]))
    .map((f) => {
      const path = readFileSync(join(dir, f.replace(/\.json$/, ".txt")), "utf8").trim();
      let body = null;
      try {
        body = JSON.parse(readFileSync(join(dir, f), "utf8"));
      } catch {
        // a HEAD or an empty body
      }
      return { path, body };
    });
}

if (command === "tools" && args.length === 2) {
  for (const name of await bridgeTools(args[0], args[1])) console.log(name);
  process.exit(0);
} else if (command === "claude-init" && args.length >= 2) {
  const [file, ...tools] = args;
  const init = readFileSync(file, "utf8")
    .split("\n")
    .map((line) => {
      try {
        return JSON.parse(line);
      } catch {
        return null;
      }
    })
    .find((event) => event && event.type === "system" && event.subtype === "init");
  if (!init) {
    fail(`no system/init event in ${file}`);
  } else {
    const server = (init.mcp_servers || []).find((s) => s.name === "mcp-chat");
    if (server && server.status === "connected") ok("Claude Code: mcp-chat connected");
    else fail(`Claude Code: mcp-chat is ${JSON.stringify(server)}`);
    missing(init.tools || [], tools.map((t) => `mcp__mcp-chat__${t}`), "Claude Code's tools");
  }
} else if (command === "requests" && args.length >= 3) {
  const [dir, api, ...tools] = args;
  const route = { anthropic: /\/v1\/messages/, gemini: /GenerateContent/i, openai: /\/responses/ }[api];
  const seen = requests(dir).filter((r) => route && route.test(r.path) && r.body);
  // The request that offers the most tools: hosts also make small side requests (titles,
  // routing) that offer none.
  let best = [];
  for (const { body } of seen) {
    let names = [];
    if (api === "anthropic") {
      // Claude Code may defer MCP tools behind its tool search: then they are named in the
      // request's text rather than in `tools`. Either way the model is offered them.
      const text = JSON.stringify(body);
      names = [...new Set(text.match(/mcp__mcp-chat__[a-z_]+/g) || [])];
    } else if (api === "gemini") {
      names = (body.tools || []).flatMap((t) => (t.functionDeclarations || []).map((f) => f.name));
    } else {
      names = (body.tools || []).flatMap((t) =>
        t.type === "namespace" ? (t.tools || []).map((x) => `${t.name}/${x.name}`) : [t.name],
      );
    }
    if (names.length > best.length) best = names;
  }
  if (!seen.length) fail(`no ${api} model request was recorded in ${dir}`);
  const named = {
    anthropic: (t) => `mcp__mcp-chat__${t}`,
    gemini: (t) => `mcp_mcp-chat_${t}`,
    openai: (t) => `mcp__mcp_chat/${t}`,
  }[api];
  missing(best, tools.map(named), `tools offered to the model (${api} request)`);
} else {
  console.error("usage: expect.mjs tools <bridge> <relay> | claude-init <file> <tool>... | requests <dir> <api> <tool>...");
  process.exit(2);
}
process.exit(failed ? 1 : 0);
