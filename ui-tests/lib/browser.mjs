// Headless Chromium through playwright-core, kept off the network: every host name but
// 127.0.0.1 resolves to nothing, and every request, console message and page error of every
// page and frame is recorded for the checks at the end.

import { chromium } from "playwright-core";

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
];

/** True for URLs that stay on this machine (or never touch the network). */
export function isLocalUrl(raw) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    return false;
  }
  if (["data:", "blob:", "about:", "javascript:"].includes(url.protocol)) return true;
  if (["http:", "https:", "ws:", "wss:"].includes(url.protocol)) {
    return url.hostname === "127.0.0.1" || url.hostname === "[::1]";
  }
  return false;
}

export class Browser {
  static async launch(executablePath) {
    const b = new Browser();
    b.browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
    return b;
  }

  constructor() {
    this.requests = []; // { label, url, method, resourceType }
    this.failedRequests = []; // { label, url, failure }
    this.consoleMessages = []; // { label, type, text, frame }
    this.pageErrors = []; // { label, message }
    this.contexts = [];
  }

  version() {
    return this.browser.version();
  }

  /** A fresh profile (own storage), watched. */
  async newContext(label, options = {}) {
    const context = await this.browser.newContext({
      viewport: { width: 560, height: 900 },
      ...options,
    });
    this.contexts.push(context);
    context.on("request", (r) =>
      this.requests.push({ label, url: r.url(), method: r.method(), resourceType: r.resourceType() }),
    );
    context.on("requestfailed", (r) =>
      this.failedRequests.push({ label, url: r.url(), failure: r.failure()?.errorText }),
    );
    context.on("page", (page) => this.watchPage(label, page));
    return context;
  }

  watchPage(label, page) {
    page.on("console", (m) =>
      this.consoleMessages.push({
        label,
        type: m.type(),
        text: m.text(),
        frame: m.location()?.url ?? "",
      }),
    );
    page.on("pageerror", (e) => this.pageErrors.push({ label, message: String(e?.stack ?? e) }));
    page.on("websocket", (ws) =>
      this.requests.push({ label, url: ws.url(), method: "GET", resourceType: "websocket" }),
    );
  }

  /** Console errors and page errors so far. */
  problems() {
    return [
      ...this.pageErrors.map((e) => `[${e.label}] page error: ${e.message}`),
      ...this.consoleMessages
        .filter((m) => m.type === "error")
        .map((m) => `[${m.label}] console.error: ${m.text} (${m.frame})`),
    ];
  }

  async close() {
    await Promise.allSettled(this.contexts.map((c) => c.close()));
    await this.browser?.close();
  }
}

/** The Frame of an iframe element found by `locator`. */
export async function frameOf(locator) {
  const handle = await locator.elementHandle({ timeout: 10000 });
  const frame = await handle.contentFrame();
  if (!frame) throw new Error("iframe has no content frame");
  return frame;
}

/**
 * Latency probes in the page or frame: `Date.now()` of the last Enter keydown (capture phase,
 * before the view's handler), and of the first time each token shows in the role="log" element.
 * Date.now() in every frame and page of one machine is the same clock.
 */
export async function installProbes(frame) {
  await frame.evaluate(() => {
    if (window.__probes) return;
    const probes = { enter: 0, seen: {}, watch: [] };
    window.__probes = probes;
    document.addEventListener(
      "keydown",
      (e) => {
        if (e.key === "Enter" && !e.shiftKey) probes.enter = Date.now();
      },
      true,
    );
    const check = () => {
      const log = document.querySelector('[role="log"]');
      if (!log) return;
      const text = log.textContent;
      for (const token of probes.watch) {
        if (!probes.seen[token] && text.includes(token)) probes.seen[token] = Date.now();
      }
    };
    new MutationObserver(check).observe(document.documentElement, {
      subtree: true,
      childList: true,
      characterData: true,
    });
    probes.check = check;
  });
}

export async function watchToken(frame, token) {
  await frame.evaluate((t) => {
    window.__probes.watch.push(t);
    window.__probes.check();
  }, token);
}

export async function lastEnter(frame) {
  return frame.evaluate(() => window.__probes.enter);
}

export async function seenAt(frame, token, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const at = await frame.evaluate((t) => window.__probes.seen[t] ?? 0, token);
    if (at) return at;
    if (Date.now() > deadline) return 0;
    await new Promise((r) => setTimeout(r, 10));
  }
}
