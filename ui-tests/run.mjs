// Real-browser tests of the chat pane (an MCP App in the official ext-apps host side) and the
// relay's web page, in headless Chromium. See README.md. Exit code 0 when every test passed.
//
//   node run.mjs --relay http://127.0.0.1:PORT/mcp --bridge ../target/debug/mcp-chat-bridge
//   node run.mjs --relay-bin ../target/debug/mcp-chat-relay --bridge ../target/debug/mcp-chat-bridge
//
// Options (or environment): --relay URL (UI_TEST_RELAY), --relay-bin PATH (UI_TEST_RELAY_BIN:
// starts its own relay on a free loopback port), --bridge PATH (UI_TEST_BRIDGE), --chromium PATH
// (CHROMIUM, default /usr/bin/chromium), --only 1,4 (UI_TEST_ONLY), --screenshots DIR
// (UI_SCREENSHOTS: PNGs of the panes and pages, light and dark), --view FILE (UI_TEST_VIEW:
// development only, serves FILE instead of the real view and says so loudly).

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createHash } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";

import { Browser, isLocalUrl } from "./lib/browser.mjs";
import { HostPage } from "./lib/hosts.mjs";
import { UI_CLIENT_CAPABILITIES, UI_MIME_TYPE, appMayCall, modelMayCall, resourceUriOf, visibilityOf } from "./lib/policy.js";
import { startHostServers } from "./lib/servers.mjs";
import { Surface } from "./lib/surface.mjs";
import { httpTransport, stdioTransport } from "./lib/tunnel.mjs";
import { findExternalUrls } from "./lib/urls.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const VIEW_URI = "ui://mcp-chat/chat.html";
const PANE_TOOLS = ["open_chat", "pane_sync", "pane_send"];

// ---------------------------------------------------------------- configuration

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`);
    const [k, v] = a.includes("=") ? a.slice(2).split(/=(.*)/s) : [a.slice(2), argv[++i]];
    if (v === undefined) throw new Error(`--${k} needs a value`);
    out[k] = v;
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const cfg = {
  relay: args.relay ?? process.env.UI_TEST_RELAY,
  relayBin: args["relay-bin"] ?? process.env.UI_TEST_RELAY_BIN,
  bridge: args.bridge ?? process.env.UI_TEST_BRIDGE,
  chromium: args.chromium ?? process.env.CHROMIUM ?? "/usr/bin/chromium",
  only: (args.only ?? process.env.UI_TEST_ONLY ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number),
  screenshots: args.screenshots ?? process.env.UI_SCREENSHOTS ?? "",
  view: args.view ?? process.env.UI_TEST_VIEW ?? "",
  // Latency limits a line must meet (ms, worst sample). The issue's targets are 1500 ms p99
  // through a host and 100 ms through the web page; the limits leave room for a loaded CI box.
  maxPaneMs: Number(process.env.UI_MAX_PANE_MS ?? 1500),
  maxWebMs: Number(process.env.UI_MAX_WEB_MS ?? 500),
  verbose: !!process.env.UI_VERBOSE,
  // Pause between chat lines (ms), to type at a human pace (e.g. against a relay with its
  // default rate limit).
  lineGapMs: Number(process.env.UI_LINE_GAP_MS ?? 0),
  // Lines of test 1's chat (more for a longer latency sample).
  lines: Number(process.env.UI_CHAT_LINES ?? 8),
};

const T0 = Date.now();
const log = (...a) => console.log(...a);
const step = (...a) => {
  if (cfg.verbose) console.log(`      [${((Date.now() - T0) / 1000).toFixed(2)}s]`, ...a);
};

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

function pkgVersion(name) {
  try {
    return JSON.parse(readFileSync(path.join(HERE, "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return "?";
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const token = () => Math.random().toString(36).slice(2, 8);

// ---------------------------------------------------------------- the view under test

let overrideHtml = "";
if (cfg.view) {
  overrideHtml = readFileSync(cfg.view, "utf8");
}

/** Dev-only: swaps the view's HTML in resources/read answers. */
function rewriteView(message) {
  if (!overrideHtml) return message;
  const contents = message?.result?.contents;
  if (Array.isArray(contents) && contents[0]?.uri === VIEW_URI) {
    return {
      ...message,
      result: { ...message.result, contents: [{ ...contents[0], text: overrideHtml }] },
    };
  }
  return message;
}

/** Dev-only: serves the override at the web page's URL with the relay's own headers. */
async function routeWebPage(context, base) {
  if (!overrideHtml) return;
  await context.route(
    (url) => url.href === base || url.href.startsWith(base + "?"),
    async (route) => {
      const response = await route.fetch();
      const headers = { ...response.headers() };
      const hashes = [...overrideHtml.matchAll(/<script>([\s\S]*?)<\/script>/g)].map(
        (m) => `'sha256-${createHash("sha256").update(m[1]).digest("base64")}'`,
      );
      if (headers["content-security-policy"]) {
        headers["content-security-policy"] = headers["content-security-policy"].replace(
          /script-src[^;]*/,
          `script-src ${hashes.join(" ")}`,
        );
      }
      delete headers["content-length"];
      await route.fulfill({ status: response.status(), headers, body: overrideHtml });
    },
  );
}

// ---------------------------------------------------------------- fixtures

let relayUrl;
let relayProcess;
let browser;
let servers;
const openHosts = new Set();
const hostRecords = []; // { label, record } of every host page, for the final checks
const tempDirs = [];
const latencies = { "pane over HTTP": [], "pane through bridges": [], "web page": [] };
const notes = [];

async function startRelay(bin) {
  const child = spawn(bin, ["--bind", "127.0.0.1:0"], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, MCP_CHAT_LOG: process.env.MCP_CHAT_LOG ?? "info" },
  });
  let stderr = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start: ${stderr}`)), 15000);
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`relay exited (${code}): ${stderr}`)));
  });
  return { child, url: url.endsWith("/mcp") ? url : new URL("/mcp", url).href };
}

function bridgeEnv(name) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `mcp-chat-ui-${name}-`));
  tempDirs.push(dir);
  return {
    dir,
    env: {
      HOME: dir,
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      MCP_CHAT_RELAY: relayUrl,
      MCP_CHAT_CONFIG_DIR: path.join(dir, "config"),
      MCP_CHAT_LOG_DIR: path.join(dir, "logs"),
      MCP_CHAT_LOG: "debug",
    },
  };
}

async function openHost(label, theme, makeTransport) {
  const host = await HostPage.open({
    browser,
    servers,
    label,
    theme,
    makeTransport,
    rewrite: overrideHtml ? rewriteView : undefined,
  });
  openHosts.add(host);
  return host;
}

async function closeHost(host) {
  if (!openHosts.has(host)) return;
  openHosts.delete(host);
  try {
    hostRecords.push({ label: host.label, record: await host.record() });
  } catch {
    /* page gone */
  }
  await host.close();
}

/** A node-side client (no browser): for the tools/list and resources checks. */
async function nodeClient(kind, withUi, env) {
  const client = new Client(
    { name: `mcp-chat-ui-test-${withUi ? "ui" : "plain"}`, version: "1.0.0" },
    { capabilities: withUi ? UI_CLIENT_CAPABILITIES : {} },
  );
  const transport =
    kind === "http"
      ? new StreamableHTTPClientTransport(new URL(relayUrl))
      : new StdioClientTransport({ command: cfg.bridge, args: [], env, stderr: "ignore" });
  await client.connect(transport);
  return client;
}

/** Two host pages, each with the model's open_chat and the pane mounted; both find a stranger. */
async function pairPanes(prefix, makeA, makeB, { keyboardB = false } = {}) {
  const a = await openHost(`${prefix}-A`, "light", makeA);
  const b = await openHost(`${prefix}-B`, "dark", makeB);
  for (const h of [a, b]) {
    const missing = PANE_TOOLS.filter((n) => !h.tools.has(n));
    assert(!missing.length, `${h.label}: tools/list for a UI host lacks ${missing.join(", ")}`);
    await h.openChat();
  }
  step("open_chat answered; mounting");
  const pa = await a.mount();
  const pb = await b.mount();
  step("both views initialized");
  const A = pa.surface;
  const B = pb.surface;
  await A.click(/find a stranger/i);
  await A.waitStatus(/waiting/i);
  if (keyboardB) await B.pressButtonByKeyboard(b.page.keyboard, /find a stranger/i);
  else await B.click(/find a stranger/i);
  await A.waitStatus(/in a room/i);
  await B.waitStatus(/in a room/i);
  step("both in a room");
  if (keyboardB) {
    // Keyboard only: B answers without the mouse.
    const line = `${prefix} keyboard ${token()}`;
    await B.sendByKeyboard(b.page.keyboard, line);
    await A.waitLog(line);
    await B.waitLog(line);
  }
  return { a, b, pa, pb, A, B };
}

/** Lines both ways, alternating; returns the latencies and the lines in order. */
async function chat(A, B, n, tag, bucket) {
  const lines = [];
  for (let i = 0; i < n; i++) {
    const [from, to, who] = i % 2 === 0 ? [A, B, "A"] : [B, A, "B"];
    const line = `${tag} ${who}${i} ${token()}`;
    if (cfg.lineGapMs && i > 0) await sleep(cfg.lineGapMs);
    const ms = await from.sendMeasured(to, line);
    bucket?.push(ms);
    lines.push(line);
    step(`${from.label} → ${to.label}: ${ms} ms`);
  }
  return lines;
}

function assertInOrder(text, lines, label) {
  let at = -1;
  for (const line of lines) {
    const i = text.indexOf(line, at + 1);
    assert(i >= 0, `${label}: the transcript lacks ${JSON.stringify(line)}; it shows ${JSON.stringify(text.slice(-800))}`);
    assert(i > at, `${label}: ${JSON.stringify(line)} is out of order`);
    at = i;
  }
}

async function shot(target, name) {
  if (!cfg.screenshots) return;
  mkdirSync(cfg.screenshots, { recursive: true });
  const file = path.join(cfg.screenshots, name);
  await target.screenshot(file);
  notes.push(`screenshot ${file}`);
}

/** Checks a host's record: nothing refused, nothing to the model, no failed tool call. */
async function checkHostRecord(host) {
  const r = await host.record();
  assert(!r.refused.length, `${host.label}: the view called tools a view may not call: ${JSON.stringify(r.refused)}`);
  assert(!r.uiMessages.length, `${host.label}: the view sent ui/message on its own: ${JSON.stringify(r.uiMessages)}`);
  assert(
    !r.modelContext.length,
    `${host.label}: the view sent ui/update-model-context on its own: ${JSON.stringify(r.modelContext)}`,
  );
  const failed = r.viewToolCalls.filter((c) => (c.isError || c.error) && !c.cancelledByTeardown);
  assert(!failed.length, `${host.label}: view tool calls failed: ${JSON.stringify(failed)}`);
  const silent = r.mounted.filter((m) => !r.sizes.some((z) => z.mount === m.mount));
  assert(
    !silent.length,
    `${host.label}: views that never sent ui/notifications/size-changed: ${JSON.stringify(silent)}`,
  );
  const byName = {};
  for (const c of r.viewToolCalls) byName[c.name] = (byName[c.name] ?? 0) + 1;
  return byName;
}

// A probe view of the runner's own (test 5): asks the host for three tools/calls and writes
// what happened into #verdicts.
const PROBE_VIEW = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>probe</title></head>
<body><div role="log"></div><pre id="verdicts"></pre><script>
let next = 0; const pending = {};
addEventListener("message", (e) => {
  const m = e.data;
  if (m && m.jsonrpc === "2.0" && !m.method && pending[m.id]) { pending[m.id](m); delete pending[m.id]; }
  if (m && m.method === "ui/resource-teardown") parent.postMessage({ jsonrpc: "2.0", id: m.id, result: {} }, "*");
});
const rpc = (method, params) => new Promise((r) => { const id = ++next; pending[id] = r;
  parent.postMessage({ jsonrpc: "2.0", id, method, params }, "*"); });
(async () => {
  await rpc("ui/initialize", { protocolVersion: "2026-01-26", appInfo: { name: "probe", version: "0" }, appCapabilities: {} });
  parent.postMessage({ jsonrpc: "2.0", method: "ui/notifications/initialized", params: {} }, "*");
  const v = {};
  for (const [name, args] of [["chat_status", {}], ["no_such_tool", {}], ["pane_sync", { wait_secs: 0 }]]) {
    const m = await rpc("tools/call", { name, arguments: args });
    v[name] = m.error ? "error" : m.result && !m.result.isError ? "ok" : "tool error";
  }
  document.getElementById("verdicts").textContent = JSON.stringify(v);
})();
</script></body></html>`;

// ---------------------------------------------------------------- tests

const tests = [];
const test = (n, name, fn) => tests.push({ n, name, fn });

test(1, "two panes chat both ways over HTTP to one relay", async () => {
  const { a, b, pa, pb, A, B } = await pairPanes("http", httpTransport(relayUrl), httpTransport(relayUrl));
  assert(a.serverInfo?.name === "mcp-chat-relay", `${a.label}: serverInfo ${JSON.stringify(a.serverInfo)}, want the relay`);
  const lines = await chat(A, B, cfg.lines, "http", latencies["pane over HTTP"]);

  // Enter sends, Shift+Enter is a new line inside one message.
  const multi = `first line ${token()}\nsecond line ${token()}`;
  await A.send(multi);
  const [l1, l2] = multi.split("\n");
  const seen = await B.waitLog(l2);
  assert(seen.includes(l1), `${B.label}: the first line of a two-line message is missing`);
  const sends = (await a.record()).viewToolCalls.filter((c) => c.name === "pane_send");
  assert(
    sends.some((c) => c.args?.text === multi),
    `${A.label}: Shift+Enter did not make one two-line message; pane_send texts: ${JSON.stringify(sends.map((c) => c.args?.text))}`,
  );

  // Stranger text is text, never markup.
  const markup = `<b data-probe="x">bold</b> & "q" ${token()}`;
  await B.send(markup);
  await A.waitLog(markup);
  const injected = await A.log().evaluate((el) => el.querySelectorAll("[data-probe]").length);
  assert(injected === 0, `${A.label}: a stranger's markup became DOM elements (HTML injection)`);

  // Theme: A light, B dark; then A switches to dark through host-context-changed.
  const la = await A.textLuminance();
  const lb = await B.textLuminance();
  assert(la < 0.5, `${A.label}: light theme, but the transcript text is light (luminance ${la.toFixed(2)})`);
  assert(lb > 0.5, `${B.label}: dark theme, but the transcript text is dark (luminance ${lb.toFixed(2)})`);
  await shot(pa, "pane-light.png");
  await shot(pb, "pane-dark.png");
  await pa.setTheme("dark");
  const deadline = Date.now() + 3000;
  let la2 = la;
  while (Date.now() < deadline && (la2 = await A.textLuminance()) < 0.5) await sleep(25);
  assert(la2 > 0.5, `${A.label}: ui/notifications/host-context-changed to dark did not restyle the view`);

  assertInOrder(await A.logText(), lines, A.label);
  assertInOrder(await B.logText(), lines, B.label);

  // Report: A picks a reason and reports; A leaves, B sees an ordinary leave.
  await A.click(/^report$/i);
  await A.click(/report and leave/i);
  await A.waitLog("You reported");
  await B.waitStatus(/left/i);
  const reports = (await a.record()).viewToolCalls.filter((c) => c.name === "report");
  assert(reports.length === 1 && reports[0].args?.reason === "spam", `${A.label}: report calls ${JSON.stringify(reports)}`);
  assert(!(await B.logText()).includes("report"), `${B.label}: the reported side can tell it was reported`);

  const callsA = await checkHostRecord(a);
  const callsB = await checkHostRecord(b);
  notes.push(`view tool calls over HTTP: A ${JSON.stringify(callsA)}, B ${JSON.stringify(callsB)}`);
  await closeHost(a);
  await closeHost(b);
});

test(2, "two panes chat both ways through two stdio bridges", async () => {
  assert(cfg.bridge, "no bridge binary: pass --bridge PATH (or UI_TEST_BRIDGE)");
  assert(existsSync(cfg.bridge), `no bridge binary at ${cfg.bridge}`);
  const sinkA = {};
  const sinkB = {};
  const ea = bridgeEnv("A");
  const eb = bridgeEnv("B");
  try {
    const { a, b, A, B } = await pairPanes(
      "stdio",
      stdioTransport(cfg.bridge, ea.env, sinkA),
      stdioTransport(cfg.bridge, eb.env, sinkB),
      { keyboardB: true },
    );
    assert(a.serverInfo?.name === "mcp-chat-bridge", `${a.label}: serverInfo ${JSON.stringify(a.serverInfo)}, want the bridge`);
    const lines = await chat(A, B, 8, "stdio", latencies["pane through bridges"]);
    assertInOrder(await A.logText(), lines, A.label);
    assertInOrder(await B.logText(), lines, B.label);
    const callsA = await checkHostRecord(a);
    const callsB = await checkHostRecord(b);
    notes.push(`view tool calls through bridges: A ${JSON.stringify(callsA)}, B ${JSON.stringify(callsB)}`);
    await closeHost(a);
    await closeHost(b);
  } catch (e) {
    e.message +=
      `\n--- bridge A stderr (${ea.dir}) ---\n${(sinkA.stderr ?? "").slice(-3000)}` +
      `\n--- bridge B stderr (${eb.dir}) ---\n${(sinkB.stderr ?? "").slice(-3000)}`;
    throw e;
  }
});

test(3, "a pane torn down and mounted again shows the full transcript", async () => {
  const { a, b, pa, A, B } = await pairPanes("remount", httpTransport(relayUrl), httpTransport(relayUrl));
  const lines = await chat(A, B, 4, "before", null);

  // The host unmounts A's view: ui/resource-teardown, then the iframe goes.
  const { answer, callsAfter } = await pa.teardown(1500);
  assert(JSON.stringify(answer) === "{}", `${A.label}: ui/resource-teardown was answered ${JSON.stringify(answer)}, want {}`);
  assert(callsAfter === 0, `${A.label}: the view started ${callsAfter} tool calls after ui/resource-teardown`);
  assert(
    (await a.page.locator(`iframe[data-mount="${pa.id}"]`).count()) === 0,
    "the torn-down iframe is still there",
  );

  // Meanwhile the stranger writes on.
  for (let i = 0; i < 2; i++) {
    const line = `while-away B${i} ${token()}`;
    await B.send(line);
    await B.waitLog(line);
    lines.push(line);
  }

  // The host mounts the same tool result again (scrolling back to it, reopening the chat).
  const again = await a.mount(a.lastOpenChat);
  const A2 = again.surface;
  await A2.waitLog(lines.at(-1));
  assertInOrder(await A2.logText(), lines, `${A2.label} (remounted)`);
  await A2.waitStatus(/in a room/i);
  lines.push(...(await chat(A2, B, 2, "after", null)));

  // The model opens the pane again, and this host renders views in a stricter sandbox
  // (srcdoc, sandbox="allow-scripts" only: an opaque origin without storage).
  await again.teardown();
  await a.openChat();
  const strict = await a.mount(a.lastOpenChat, { mode: "srcdoc" });
  const A3 = strict.surface;
  await A3.waitLog(lines.at(-1));
  assertInOrder(await A3.logText(), lines, `${A3.label} (srcdoc sandbox)`);
  lines.push(...(await chat(A3, B, 2, "strict", null)));

  await checkHostRecord(a);
  await checkHostRecord(b);
  await closeHost(a);
  await closeHost(b);
});

test(4, "two web pages chat both ways; a reload keeps the chat", async () => {
  const base = new URL("./", relayUrl).href;
  const open = async (label, colorScheme) => {
    const context = await browser.newContext(label, { colorScheme });
    await routeWebPage(context, base);
    const page = await context.newPage();
    const response = await page.goto(base);
    assert(response.ok(), `${label}: GET ${base} answered ${response.status()}`);
    const type = response.headers()["content-type"] ?? "";
    assert(type.startsWith("text/html"), `${label}: GET ${base} is ${type}, not text/html`);
    const s = new Surface(label, page.mainFrame());
    await s.log().waitFor({ state: "attached", timeout: 10000 });
    await s.installProbes();
    await s.waitStatus(/^(?!.*(connect|loading)).+/i);
    return { context, page, s };
  };
  const wa = await open("web-A", "light");
  const wb = await open("web-B", "dark");
  const identity = () => wa.page.evaluate(() => localStorage.getItem("mcp-chat-identity"));
  const id1 = await identity();
  assert(/^[0-9a-f]{64}$/.test(id1 ?? ""), `web-A: localStorage["mcp-chat-identity"] is ${JSON.stringify(id1)}, want 64 hex chars`);

  await wa.s.click(/find a stranger/i);
  await wa.s.waitStatus(/waiting/i);
  await wb.s.pressButtonByKeyboard(wb.page.keyboard, /find a stranger/i); // keyboard only
  await wa.s.waitStatus(/in a room/i);
  await wb.s.waitStatus(/in a room/i);
  const typed = `web keyboard ${token()}`;
  await wb.s.sendByKeyboard(wb.page.keyboard, typed);
  await wa.s.waitLog(typed);
  const lines = await chat(wa.s, wb.s, 8, "web", latencies["web page"]);
  const roomBefore = await wa.s.statusText();
  await shot({ screenshot: (p) => wa.page.screenshot({ path: p, fullPage: true }) }, "web-light.png");
  await shot({ screenshot: (p) => wb.page.screenshot({ path: p, fullPage: true }) }, "web-dark.png");

  // Reload A: same participant, same room, the transcript is back, and it still chats.
  await wa.page.reload();
  const ra = new Surface("web-A (reloaded)", wa.page.mainFrame());
  await ra.log().waitFor({ state: "attached", timeout: 10000 });
  await ra.installProbes();
  await ra.waitStatus(/in a room/i);
  assert((await identity()) === id1, "web-A: the identity changed across a reload");
  await ra.waitLog(lines.at(-1));
  assertInOrder(await ra.logText(), lines, ra.label);
  const roomAfter = await ra.statusText();
  assert(roomAfter === roomBefore, `web-A: the state line was ${JSON.stringify(roomBefore)} before the reload, ${JSON.stringify(roomAfter)} after`);
  lines.push(...(await chat(ra, wb.s, 4, "reloaded", latencies["web page"])));
  assertInOrder(await wb.s.logText(), lines, wb.s.label);

  await wa.context.close();
  await wb.context.close();
});

test(5, "no external URL, no console error, pane tools only for UI clients", async () => {
  // Every part runs; the test fails with everything that is wrong.
  const failures = [];
  const part = async (name, fn) => {
    try {
      await fn();
    } catch (e) {
      failures.push(`${name}: ${e.message}`);
    }
  };
  const httpUi = await nodeClient("http", true);
  const httpPlain = await nodeClient("http", false);
  let html = "";

  // 5a. The view's bytes: the same from the relay, the bridge and GET /; no external URL.
  await part("5a view bytes", async () => {
    const fromRelay = (await httpUi.readResource({ uri: VIEW_URI })).contents;
    assert(fromRelay.length === 1, `relay: resources/read gave ${fromRelay.length} contents`);
    assert(fromRelay[0].mimeType === UI_MIME_TYPE, `relay: mimeType ${fromRelay[0].mimeType}`);
    html = fromRelay[0].text ?? Buffer.from(fromRelay[0].blob, "base64").toString("utf8");
    const page = await (await fetch(new URL("./", relayUrl))).text();
    assert(page === html, `GET / (${page.length} bytes) differs from resources/read (${html.length} bytes)`);
    const views = [["the view", html]];
    if (overrideHtml) views.push(["the override view", overrideHtml]);
    for (const [what, text] of views) {
      const found = findExternalUrls(text);
      assert(!found.length, `${what} has external URLs:\n  ${found.join("\n  ")}`);
    }
  });

  // 5b. tools/list and resources/list: pane tools and the view only for clients with the
  // extension, from the relay and from the bridge; the other tools unchanged.
  await part("5b tool lists", async () => {
    const clients = [["relay", httpPlain, httpUi]];
    if (cfg.bridge) {
      const e1 = bridgeEnv("plain");
      const e2 = bridgeEnv("ui");
      clients.push(["bridge", await nodeClient("stdio", false, e1.env), await nodeClient("stdio", true, e2.env)]);
    } else {
      throw new Error("no bridge binary: pass --bridge PATH (or UI_TEST_BRIDGE)");
    }
    try {
      for (const [who, plain, ui] of clients) {
        const p = (await plain.listTools()).tools;
        const u = (await ui.listTools()).tools;
        const pn = p.map((t) => t.name);
        const un = u.map((t) => t.name);
        for (const n of PANE_TOOLS) {
          assert(!pn.includes(n), `${who}: ${n} is listed to a client without the UI extension`);
          assert(un.includes(n), `${who}: ${n} is not listed to a client with the UI extension`);
        }
        notes.push(`${who}: ${p.length} tools without the extension, ${u.length} with it`);
        assert(!p.some((t) => t._meta?.ui), `${who}: a tool for a client without the extension carries _meta.ui`);
        assert(
          JSON.stringify(u.filter((t) => !PANE_TOOLS.includes(t.name))) === JSON.stringify(p),
          `${who}: the chat tools differ between clients with and without the extension`,
        );
        const tool = Object.fromEntries(u.map((t) => [t.name, t]));
        assert(modelMayCall(tool.open_chat), `${who}: open_chat is not model-visible: ${JSON.stringify(visibilityOf(tool.open_chat))}`);
        assert(resourceUriOf(tool.open_chat) === VIEW_URI, `${who}: open_chat's resourceUri is ${resourceUriOf(tool.open_chat)}`);
        for (const n of ["pane_sync", "pane_send"]) {
          assert(
            JSON.stringify(visibilityOf(tool[n])) === '["app"]',
            `${who}: ${n} visibility is ${JSON.stringify(visibilityOf(tool[n]))}, want ["app"]`,
          );
          assert(appMayCall(tool[n]) && !modelMayCall(tool[n]), `${who}: ${n} policy`);
        }
        const pr = (await plain.listResources()).resources.map((r) => r.uri);
        const ur = (await ui.listResources()).resources.map((r) => r.uri);
        assert(!pr.includes(VIEW_URI), `${who}: resources/list shows the view to a client without the extension`);
        assert(ur.includes(VIEW_URI), `${who}: resources/list does not show the view to a UI client`);
        if (who === "bridge") {
          const b = (await ui.readResource({ uri: VIEW_URI })).contents[0];
          assert(b.text === html, `bridge: resources/read of the view differs from the relay's`);
        }
      }
    } finally {
      await Promise.allSettled(clients.flatMap(([, p, u]) => [p.close(), u.close()]));
    }
  });

  // 5c. The test host refuses like a real host: a view's call to a tool without "app" in its
  // visibility, or to a tool the server never listed, fails; an app tool goes through.
  await part("5c host policy", async () => {
    assert(!appMayCall({ name: "x", _meta: { ui: { visibility: ["model"] } } }), "policy: model-only");
    assert(appMayCall({ name: "x" }) && modelMayCall({ name: "x" }), "policy: the default is model and app");
    const ph = await openHost("policy", "light", httpTransport(relayUrl));
    await ph.page.evaluate(() => window.host.setVisibility("chat_status", ["model"]));
    await ph.openChat();
    const probeView = await ph.mount(ph.lastOpenChat, { mode: "srcdoc", html: PROBE_VIEW });
    const verdicts = JSON.parse(
      await probeView.surface.frame.locator("#verdicts").textContent({ timeout: 10000 }).then(async (t) => {
        for (let i = 0; !t && i < 200; i++) {
          await sleep(25);
          t = await probeView.surface.frame.locator("#verdicts").textContent();
        }
        return t;
      }),
    );
    assert(verdicts.chat_status === "error", `the host let a view call a model-only tool: ${JSON.stringify(verdicts)}`);
    assert(verdicts.no_such_tool === "error", `the host let a view call an unlisted tool: ${JSON.stringify(verdicts)}`);
    assert(verdicts.pane_sync === "ok", `the host refused a view's app tool: ${JSON.stringify(verdicts)}`);
    const refused = (await ph.record()).refused.map((r) => r.name).sort();
    assert(JSON.stringify(refused) === '["chat_status","no_such_tool"]', `refusals recorded: ${refused}`);
    await closeHost(ph);
  });

  // 5d. The browser is off the network (a stray external URL would fail loudly).
  await part("5d offline", async () => {
    const net = await browser.browser.newContext();
    const probe = await net.newPage();
    const offline = await probe
      .evaluate(() => fetch("http://example.com/").then(() => "reached", (e) => `failed: ${e}`))
      .catch((e) => `failed: ${e}`);
    await net.close();
    assert(offline.startsWith("failed"), `the test browser reached example.com: ${offline}`);
  });

  // 5e. Every request of every page and frame so far stayed on loopback; no console error or
  // page error anywhere; no view logged at error level.
  for (const h of [...openHosts]) await closeHost(h);
  await part("5e requests", async () => {
    const external = browser.requests.filter((r) => !isLocalUrl(r.url));
    assert(!external.length, `requests left loopback:\n  ${external.map((r) => `[${r.label}] ${r.method} ${r.url}`).join("\n  ")}`);
  });
  await part("5e console", async () => {
    const problems = browser.problems();
    assert(!problems.length, `console errors / page errors:\n  ${problems.join("\n  ")}`);
    const viewErrors = hostRecords.flatMap(({ label, record }) =>
      record.logs
        .filter((l) => ["error", "critical", "alert", "emergency"].includes(l.level))
        .map((l) => `[${label}] ${l.level}: ${JSON.stringify(l.data)}`),
    );
    assert(!viewErrors.length, `views logged errors:\n  ${viewErrors.join("\n  ")}`);
  });
  notes.push(
    `${browser.requests.length} requests recorded (${browser.requests.filter((r) => !isLocalUrl(r.url)).length} off loopback); ` +
      `${browser.consoleMessages.length} console messages (${browser.problems().length} errors)`,
  );
  await Promise.allSettled([httpUi.close(), httpPlain.close()]);
  if (failures.length) throw new Error(failures.join("\n"));
});

// ---------------------------------------------------------------- runner

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
  return { n: s.length, min: s[0], median: q(0.5), p90: q(0.9), max: s.at(-1) };
}

async function main() {
  log("mcp-chat UI tests (real Chromium, official MCP Apps host side)");
  log(
    `  node ${process.version}, playwright-core ${pkgVersion("playwright-core")}, ` +
      `@modelcontextprotocol/ext-apps ${pkgVersion("@modelcontextprotocol/ext-apps")}, ` +
      `@modelcontextprotocol/client ${pkgVersion("@modelcontextprotocol/client")}`,
  );
  if (overrideHtml) {
    log("\n  !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    log(`  VIEW OVERRIDDEN by ${cfg.view}: these runs do NOT test the real view`);
    log("  !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n");
  }
  if (!cfg.relay && cfg.relayBin) {
    const started = await startRelay(cfg.relayBin);
    relayProcess = started.child;
    cfg.relay = started.url;
  }
  if (!cfg.relay) throw new Error("no relay: pass --relay URL or --relay-bin PATH");
  relayUrl = cfg.relay;
  assert(existsSync(cfg.chromium), `no Chromium at ${cfg.chromium} (apt-get install chromium)`);
  browser = await Browser.launch(cfg.chromium);
  servers = await startHostServers();
  log(`  chromium ${browser.version()} (${cfg.chromium}), relay ${relayUrl}`);
  log(`  bridge ${cfg.bridge ?? "(none)"}; host ${servers.hostOrigin}, sandbox ${servers.sandboxOrigin}\n`);

  const selected = tests.filter((t) => !cfg.only.length || cfg.only.includes(t.n));
  let failed = 0;
  for (const t of selected) {
    const started = Date.now();
    try {
      await Promise.race([
        t.fn(),
        sleep(45000).then(() => {
          throw new Error("timed out after 45 s");
        }),
      ]);
      log(`ok ${t.n} - ${t.name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    } catch (e) {
      failed++;
      log(`not ok ${t.n} - ${t.name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      log(`    ${String(e?.stack ?? e).replace(/\n/g, "\n    ")}`);
      await dumpFailure(t.n);
      for (const h of [...openHosts]) await closeHost(h).catch(() => {});
    }
  }

  log("\nline latency, Enter in one surface to visible in the other (ms):");
  for (const [what, xs] of Object.entries(latencies)) {
    if (!xs.length) continue;
    const s = stats(xs);
    const limit = what === "web page" ? cfg.maxWebMs : cfg.maxPaneMs;
    const over = s.max > limit;
    log(
      `  ${what.padEnd(22)} n=${s.n} min ${s.min} median ${s.median} p90 ${s.p90} max ${s.max}` +
        `  (limit ${limit}${over ? ", EXCEEDED" : ""})`,
    );
    if (over) failed++;
  }
  for (const n of notes) log(`  ${n}`);
  const problems = browser.problems();
  if (problems.length && !selected.some((t) => t.n === 5)) {
    log(`\nconsole errors / page errors (test 5 not selected):\n  ${problems.join("\n  ")}`);
  }
  log(`\n${failed ? "FAILED" : "PASSED"}: ${selected.length - Math.min(failed, selected.length)}/${selected.length} tests passed in ${((Date.now() - T0) / 1000).toFixed(1)} s`);
  return failed ? 1 : 0;
}

async function dumpFailure(n) {
  try {
    const dir = path.join(os.tmpdir(), `mcp-chat-ui-failure-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    let i = 0;
    for (const h of openHosts) {
      await h.page.screenshot({ path: path.join(dir, `test${n}-${h.label}.png`), fullPage: true }).catch(() => {});
      const r = await h.record().catch(() => null);
      if (r) log(`    ${h.label} host record: ${JSON.stringify({ ...r, viewToolCalls: r.viewToolCalls.slice(-8) }).slice(0, 3000)}`);
      i++;
    }
    const problems = browser.problems();
    if (problems.length) log(`    console errors so far:\n      ${problems.join("\n      ")}`);
    if (i) log(`    screenshots in ${dir}`);
  } catch {
    /* best effort */
  }
}

let code = 1;
try {
  code = await main();
} catch (e) {
  log(`FAILED to run: ${String(e?.stack ?? e)}`);
  code = 1;
} finally {
  for (const h of [...openHosts]) await closeHost(h).catch(() => {});
  await browser?.close().catch(() => {});
  await servers?.close().catch(() => {});
  relayProcess?.kill("SIGTERM");
  if (!code) for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  else if (tempDirs.length) log(`bridge dirs kept for inspection: ${tempDirs.join(" ")}`);
}
process.exit(code);
