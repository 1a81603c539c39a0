// A host page per person: a browser profile with the test host (host/host.html) whose client
// reaches the server under test through the tunnel.

import { frameOf } from "./browser.mjs";
import { resourceUriOf } from "./policy.js";
import { Surface } from "./surface.mjs";
import { Tunnel } from "./tunnel.mjs";

let nextTunnel = 1;

export class HostPage {
  /**
   * Opens a host page. `makeTransport` gives the real SDK transport (lib/tunnel.mjs);
   * `rewrite(message)` may change server messages before the page sees them (the dev-only
   * view override).
   */
  static async open({ browser, servers, label, theme, makeTransport, rewrite }) {
    const h = new HostPage();
    h.label = label;
    h.theme = theme;
    h.context = await browser.newContext(label, { colorScheme: theme });
    h.page = await h.context.newPage();
    h.tunnel = new Tunnel(h.page, makeTransport, label);
    if (rewrite) {
      const deliver = h.tunnel.deliver.bind(h.tunnel);
      h.tunnel.deliver = (id, kind, payload) =>
        deliver(id, kind, kind === "message" ? rewrite(payload) : payload);
    }
    await h.tunnel.install();
    const url = new URL("/host.html", servers.hostOrigin);
    url.searchParams.set("sandbox", servers.sandboxOrigin);
    await h.page.goto(url.href);
    await h.page.waitForFunction(() => window.hostReady === true, null, { timeout: 10000 });
    const connected = await h.page.evaluate(
      (args) => window.host.connect(args),
      { tunnelId: `${label}-${nextTunnel++}`, theme },
    );
    h.serverInfo = connected.serverInfo;
    h.tools = new Map(connected.tools.map((t) => [t.name, t]));
    return h;
  }

  async callModelTool(name, args = {}) {
    return this.page.evaluate(([n, a]) => window.host.callModelTool(n, a), [name, args]);
  }

  /**
   * The model calls `open_chat` with {}: checks that it is a model tool with a view and that
   * the call succeeded; returns the result.
   */
  async openChat() {
    const tool = this.tools.get("open_chat");
    if (!tool) throw new Error(`${this.label}: tools/list has no open_chat for a UI host`);
    const uri = resourceUriOf(tool);
    if (uri !== "ui://mcp-chat/chat.html") {
      throw new Error(`${this.label}: open_chat's _meta.ui.resourceUri is ${JSON.stringify(uri)}`);
    }
    const result = await this.callModelTool("open_chat", {});
    if (result.isError) throw new Error(`${this.label}: open_chat failed: ${JSON.stringify(result)}`);
    this.lastOpenChat = result;
    return result;
  }

  /** Mounts the open_chat view with `result`; returns the Pane. */
  async mount(result = this.lastOpenChat, { mode = "proxy", theme = this.theme, html } = {}) {
    const id = await this.page.evaluate(
      (args) => window.host.mount(args),
      { toolName: "open_chat", toolArgs: {}, toolResult: result, mode, theme, html },
    );
    const pane = new Pane(this, id, mode);
    await pane.attach();
    return pane;
  }

  async record() {
    return this.page.evaluate(() => window.hostRecord);
  }

  async screenshot(path) {
    await this.page.screenshot({ path, fullPage: true });
  }

  async close() {
    await this.page.evaluate(() => window.host.close()).catch(() => {});
    await this.tunnel.close();
    await this.context.close().catch(() => {});
  }
}

export class Pane {
  constructor(host, id, mode) {
    this.host = host;
    this.id = id;
    this.mode = mode;
    this.label = `${host.label}#${id}`;
  }

  iframe() {
    return this.host.page.locator(`iframe[data-mount="${this.id}"]`);
  }

  /** Finds the view's frame (inside the sandbox proxy, or the srcdoc frame). */
  async attach() {
    const outer = await frameOf(this.iframe());
    const view = this.mode === "proxy" ? await frameOf(outer.locator("iframe")) : outer;
    this.surface = new Surface(this.label, view);
    await this.surface.log().waitFor({ state: "attached", timeout: 10000 });
    await this.surface.installProbes();
    return this.surface;
  }

  async teardown(lingerMs = 0) {
    return this.host.page.evaluate(([id, linger]) => window.host.teardown(id, linger), [
      this.id,
      lingerMs,
    ]);
  }

  setTheme(theme) {
    return this.host.page.evaluate(([id, t]) => window.host.setTheme(id, t), [this.id, theme]);
  }

  async screenshot(path) {
    await this.iframe().screenshot({ path });
  }
}
