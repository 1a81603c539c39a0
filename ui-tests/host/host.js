// The test host: a web page that does what an MCP Apps host does, with the official pieces.
//
// - An official MCP `Client` (@modelcontextprotocol/client) that announces the UI extension.
//   A page cannot open a stdio pipe, so its transport is a tunnel: every JSON-RPC message goes
//   to the Node runner (lib/tunnel.mjs), which holds the real transport (Streamable HTTP to the
//   relay, or a stdio pipe to a bridge process).
// - The official `AppBridge` (@modelcontextprotocol/ext-apps/app-bridge) per mounted view,
//   built with that client, connected over the official `PostMessageTransport`.
// - The view in a sandbox like a web host's (spec "Sandbox proxy"): an outer iframe on another
//   origin (host/sandbox.html, `allow-scripts allow-same-origin`, the view's CSP as an HTTP
//   header) that writes the HTML into an inner sandboxed iframe and relays messages; or, in
//   mode "srcdoc", one iframe with `sandbox="allow-scripts"` only (an opaque origin).
// - Host policy: a view may call only tools this server listed with "app" in their
//   `_meta.ui.visibility` (AppBridge itself forwards every `tools/call`).
//
// The Node runner drives it through `window.host` (page.evaluate) and reads `window.hostRecord`.

import {
  AppBridge,
  PostMessageTransport,
  RESOURCE_MIME_TYPE,
} from "@modelcontextprotocol/ext-apps/app-bridge";
import { Client } from "@modelcontextprotocol/client";
import { UI_CLIENT_CAPABILITIES, appMayCall, resourceUriOf, viewCsp } from "../lib/policy.js";

const HOST_INFO = { name: "mcp-chat-ui-test-host", version: "1.0.0" };
const SANDBOX_ORIGIN = new URLSearchParams(location.search).get("sandbox");

/** Everything the view did through the host, for the runner's assertions. */
const record = {
  viewToolCalls: [], // { mount, name, args, startedAt, ms, isError, error }
  refused: [], // { mount, name }
  uiMessages: [], // ui/message params
  modelContext: [], // ui/update-model-context params
  openLinks: [],
  logs: [], // notifications/message from the view
  sizes: [],
  teardowns: [],
  mounted: [], // { mount, mode, at }
};
window.hostRecord = record;

/** The page half of the tunnel; the Node half (lib/tunnel.mjs) holds the real transport. */
class TunnelTransport {
  static open = new Map();
  constructor(id) {
    this.id = id;
  }
  async start() {
    TunnelTransport.open.set(this.id, this);
    await window.__tunnel("open", this.id, null);
  }
  async send(message) {
    await window.__tunnel("send", this.id, message);
  }
  setProtocolVersion(version) {
    void window.__tunnel("protocol", this.id, version);
  }
  async close() {
    TunnelTransport.open.delete(this.id);
    await window.__tunnel("close", this.id, null);
    this.onclose?.();
  }
}
// Node delivers with page.evaluate, in order.
window.__tunnelDeliver = (id, kind, payload) => {
  const transport = TunnelTransport.open.get(id);
  if (!transport) return;
  if (kind === "message") transport.onmessage?.(payload);
  else if (kind === "error") transport.onerror?.(new Error(payload));
  else if (kind === "close") {
    TunnelTransport.open.delete(id);
    transport.onclose?.();
  }
};

let client;
let tools = new Map();
let theme = "light";
let nextMount = 1;
const mounts = new Map();

function styleVariables(t) {
  const dark = t === "dark";
  return {
    "--color-background-primary": dark ? "#1f1f1e" : "#ffffff",
    "--color-background-secondary": dark ? "#2a2a28" : "#f5f4ef",
    "--color-text-primary": dark ? "#f5f4ef" : "#1f1f1e",
    "--color-text-secondary": dark ? "#b8b5a9" : "#5e5d59",
    "--color-border-primary": dark ? "#4a4a46" : "#d9d7ce",
    "--font-sans": "system-ui, sans-serif",
    "--border-radius-md": "8px",
  };
}

function hostContext(t, tool, requestId) {
  return {
    theme: t,
    styles: { variables: styleVariables(t) },
    displayMode: "inline",
    availableDisplayModes: ["inline"],
    containerDimensions: { width: 480, maxHeight: 720 },
    locale: "en-US",
    timeZone: "UTC",
    platform: "web",
    userAgent: HOST_INFO.name,
    deviceCapabilities: { touch: false, hover: true },
    ...(tool ? { toolInfo: { id: requestId, tool } } : {}),
  };
}

function setPageTheme(t) {
  document.documentElement.style.colorScheme = t;
  document.body.style.background = t === "dark" ? "#262624" : "#faf9f5";
}

function waitFor(predicate, what, ms = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`host: timed out waiting for ${what}`)), ms);
    const listener = (event) => {
      if (predicate(event)) {
        clearTimeout(timer);
        window.removeEventListener("message", listener);
        resolve(event);
      }
    };
    window.addEventListener("message", listener);
  });
}

window.host = {
  /** Connects the client (tunnel id `tunnelId`), lists the tools; returns the tool list. */
  async connect({ tunnelId, theme: t }) {
    theme = t;
    setPageTheme(t);
    client = new Client(HOST_INFO, { capabilities: UI_CLIENT_CAPABILITIES });
    await client.connect(new TunnelTransport(tunnelId));
    const listed = await client.listTools();
    tools = new Map(listed.tools.map((tool) => [tool.name, tool]));
    return {
      serverInfo: client.getServerVersion(),
      serverCapabilities: client.getServerCapabilities(),
      tools: listed.tools,
    };
  },

  /** The model calls a tool (the test plays the model). */
  async callModelTool(name, args) {
    return client.callTool({ name, arguments: args });
  },

  /** Any other client request (resources/list, ...). */
  async request(method, params) {
    return client.request({ method, params });
  },

  /**
   * Mounts the view of `toolName`'s result as a host does after the model called it: reads the
   * resource, builds the sandbox, connects an AppBridge, waits for `ui/notifications/initialized`,
   * then sends the tool input and result. Returns the mount id (the iframe's `data-mount`).
   */
  async mount({ toolName, toolArgs, toolResult, mode = "proxy", theme: t = theme, html: probeHtml }) {
    const tool = tools.get(toolName);
    const uri = resourceUriOf(tool);
    if (!uri) throw new Error(`host: tool ${toolName} has no _meta.ui.resourceUri`);
    const resource = await client.readResource({ uri });
    if (resource.contents.length !== 1) {
      throw new Error(`host: ${uri} has ${resource.contents.length} contents, want 1`);
    }
    const content = resource.contents[0];
    if (content.mimeType !== RESOURCE_MIME_TYPE) {
      throw new Error(`host: ${uri} has mimeType ${content.mimeType}, want ${RESOURCE_MIME_TYPE}`);
    }
    // `probeHtml`: the runner's own probe view (checks this host's policy), never the real one.
    const html = probeHtml ?? ("blob" in content ? atob(content.blob) : content.text);
    const uiMeta = content._meta?.ui ?? {};

    const id = nextMount++;
    const iframe = document.createElement("iframe");
    iframe.dataset.mount = String(id);
    iframe.title = `mcp-chat pane ${id}`;
    iframe.style.cssText =
      "display:block;width:480px;height:360px;margin:12px;border:0;background:transparent;color-scheme:normal";
    if (uiMeta.prefersBorder === true) iframe.style.border = "1px solid #8886";

    if (mode === "proxy") {
      if (!SANDBOX_ORIGIN) throw new Error("host: no sandbox origin in the page URL");
      iframe.setAttribute("sandbox", "allow-scripts allow-same-origin");
      const url = new URL("/sandbox.html", SANDBOX_ORIGIN);
      if (uiMeta.csp) url.searchParams.set("csp", JSON.stringify(uiMeta.csp));
      const ready = waitFor(
        (e) =>
          e.source === iframe.contentWindow &&
          e.data?.method === "ui/notifications/sandbox-proxy-ready",
        "the sandbox proxy",
      );
      iframe.src = url.href;
      document.getElementById("panes").append(iframe);
      await ready;
    } else if (mode === "srcdoc") {
      iframe.setAttribute("sandbox", "allow-scripts");
      document.getElementById("panes").append(iframe);
    } else {
      throw new Error(`host: unknown mount mode ${mode}`);
    }

    const bridge = new AppBridge(
      client,
      HOST_INFO,
      {
        openLinks: {},
        serverTools: {},
        serverResources: {},
        logging: {},
        sandbox: { csp: uiMeta.csp ?? {} },
      },
      { hostContext: hostContext(t, tool) },
    );
    const initialized = new Promise((resolve) => {
      bridge.oninitialized = () => resolve();
    });
    bridge.onmessage = async (params) => {
      record.uiMessages.push({ mount: id, params });
      return {};
    };
    bridge.onupdatemodelcontext = async (params) => {
      record.modelContext.push({ mount: id, params });
      return {};
    };
    bridge.onopenlink = async (params) => {
      record.openLinks.push({ mount: id, params });
      return { isError: true };
    };
    bridge.onloggingmessage = (params) => {
      record.logs.push({ mount: id, ...params });
    };
    bridge.onsizechange = ({ height }) => {
      record.sizes.push({ mount: id, height });
      if (typeof height === "number" && height > 0) {
        iframe.style.height = `${Math.min(Math.ceil(height), 720)}px`;
      }
    };
    bridge.onrequestteardown = () => {
      record.teardowns.push({ mount: id, by: "view" });
    };

    await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
    // AppBridge.connect forwards every tools/call to the server. A host must not: replace it
    // with the policy (cleared first, so the SDK does not warn about a replaced handler).
    bridge.oncalltool = undefined;
    bridge.oncalltool = async (params, extra) => {
      const target = tools.get(params.name);
      if (!appMayCall(target)) {
        record.refused.push({ mount: id, name: params.name });
        throw new Error(`host: tool ${params.name} is not callable by a view (visibility)`);
      }
      const entry = { mount: id, name: params.name, args: params.arguments, startedAt: Date.now() };
      record.viewToolCalls.push(entry);
      try {
        const result = await client.request(
          { method: "tools/call", params },
          { signal: extra?.mcpReq?.signal, timeout: 120000 },
        );
        entry.isError = result.isError === true;
        return result;
      } catch (e) {
        entry.error = String(e?.message ?? e);
        throw e;
      } finally {
        entry.ms = Date.now() - entry.startedAt;
      }
    };

    if (mode === "proxy") {
      await bridge.sendSandboxResourceReady({
        html,
        csp: uiMeta.csp,
        permissions: uiMeta.permissions,
        sandbox: "allow-scripts allow-same-origin allow-forms",
      });
    } else {
      iframe.srcdoc = withMetaCsp(html, uiMeta.csp);
    }

    await Promise.race([
      initialized,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error("host: the view sent no ui/notifications/initialized")), 10000),
      ),
    ]);
    record.mounted.push({ mount: id, mode, at: Date.now() });
    await bridge.sendToolInput({ arguments: toolArgs ?? {} });
    if (toolResult) await bridge.sendToolResult(toolResult);
    mounts.set(id, { bridge, iframe, tool, theme: t });
    return id;
  },

  /** Tears a view down as a host does when it unmounts it, and removes the iframe. */
  // Keeps the view connected `lingerMs` after its answer, and reports the tool calls it
  // started in that time (a view must stop polling once torn down).
  async teardown(id, lingerMs = 0) {
    const m = mounts.get(id);
    if (!m) throw new Error(`host: no mount ${id}`);
    mounts.delete(id);
    const answer = await m.bridge.teardownResource({}, { timeout: 5000 });
    const answeredAt = Date.now();
    record.teardowns.push({ mount: id, by: "host", answer, answeredAt });
    if (lingerMs > 0) await new Promise((r) => setTimeout(r, lingerMs));
    const callsAfter = record.viewToolCalls.filter(
      (c) => c.mount === id && c.startedAt > answeredAt,
    ).length;
    // Calls still held (a pane_sync long poll) end with the view's connection: not failures.
    for (const c of record.viewToolCalls) {
      if (c.mount === id && c.ms === undefined) c.cancelledByTeardown = true;
    }
    await m.bridge.close();
    m.iframe.remove();
    return { answer, callsAfter };
  },

  /** Switches the host theme; the view gets ui/notifications/host-context-changed. */
  setTheme(id, t) {
    const m = mounts.get(id);
    m.theme = t;
    setPageTheme(t);
    m.bridge.setHostContext(hostContext(t, m.tool));
  },

  /** Pretends the server listed `name` with this visibility (to prove the policy refuses). */
  setVisibility(name, visibility) {
    const tool = tools.get(name);
    tools.set(name, { ...tool, _meta: { ...tool._meta, ui: { ...tool._meta?.ui, visibility } } });
  },

  mountIds() {
    return [...mounts.keys()];
  },

  async close() {
    for (const id of [...mounts.keys()]) {
      try {
        await window.host.teardown(id);
      } catch {
        /* closing anyway */
      }
    }
    await client?.close();
  },
};

/** The view's HTML with its CSP as the first thing in <head> (srcdoc mode has no HTTP header). */
function withMetaCsp(html, csp) {
  const escaped = viewCsp(csp).replace(/"/g, "&quot;");
  const meta = `<meta http-equiv="Content-Security-Policy" content="${escaped}">`;
  const head = /<head[^>]*>/i.exec(html);
  if (head) return html.slice(0, head.index + head[0].length) + meta + html.slice(head.index + head[0].length);
  return meta + html;
}

window.hostReady = true;
