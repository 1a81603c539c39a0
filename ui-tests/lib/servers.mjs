// The test host's two loopback origins: the host page (host.html + the esbuild bundle of
// host/host.js) and, on another port (so another origin), the sandbox proxy with the view's CSP
// as an HTTP header, as the spec wants for web hosts.

import { readFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

import { viewCsp } from "./policy.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const HOST_DIR = path.join(HERE, "..", "host");

/** Bundles host/host.js (AppBridge, Client, zod, ...) for the browser, in memory. */
export async function bundleHost() {
  const out = await esbuild.build({
    entryPoints: [path.join(HOST_DIR, "host.js")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "chrome120",
    write: false,
    sourcemap: "inline",
    logLevel: "silent",
    define: { "process.env.NODE_ENV": '"production"' },
  });
  return out.outputFiles[0].text;
}

function listen(handler) {
  return new Promise((resolve, reject) => {
    const server = http.createServer(handler);
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

function send(res, status, type, body, headers = {}) {
  res.writeHead(status, {
    "content-type": type,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  res.end(body);
}

/** Starts both servers; returns their origins and a close(). */
export async function startHostServers() {
  const [hostHtml, sandboxHtml, hostJs] = await Promise.all([
    readFile(path.join(HOST_DIR, "host.html"), "utf8"),
    readFile(path.join(HOST_DIR, "sandbox.html"), "utf8"),
    bundleHost(),
  ]);
  const host = await listen((req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    if (url.pathname === "/host.html") return send(res, 200, "text/html; charset=utf-8", hostHtml);
    if (url.pathname === "/host.js") return send(res, 200, "text/javascript; charset=utf-8", hostJs);
    if (url.pathname === "/favicon.ico") return send(res, 204, "image/x-icon", "");
    send(res, 404, "text/plain", "not found");
  });
  const sandbox = await listen((req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    if (url.pathname === "/sandbox.html") {
      let csp;
      try {
        csp = url.searchParams.has("csp") ? JSON.parse(url.searchParams.get("csp")) : undefined;
      } catch {
        return send(res, 400, "text/plain", "bad csp");
      }
      return send(res, 200, "text/html; charset=utf-8", sandboxHtml, {
        "content-security-policy": viewCsp(csp),
      });
    }
    if (url.pathname === "/favicon.ico") return send(res, 204, "image/x-icon", "");
    send(res, 404, "text/plain", "only /sandbox.html here");
  });
  const origin = (s) => `http://127.0.0.1:${s.address().port}`;
  return {
    hostOrigin: origin(host),
    sandboxOrigin: origin(sandbox),
    close: () => Promise.all([host, sandbox].map((s) => new Promise((r) => s.close(r)))),
  };
}
