// What a real MCP Apps host decides about tools, shared by the browser host page (host/host.js)
// and the Node runner (run.mjs). Spec: ext-apps specification/2026-01-26/apps.mdx, "Visibility":
// `_meta.ui.visibility` defaults to ["model", "app"]; a host MUST NOT list tools without "model"
// to the agent and MUST reject `tools/call` from a view for tools without "app".

/** The extension id hosts announce in `capabilities.extensions`. */
export const UI_EXTENSION = "io.modelcontextprotocol/ui";
/** The MIME type of an MCP App view. */
export const UI_MIME_TYPE = "text/html;profile=mcp-app";
/** What a host that renders MCP Apps announces in `initialize` (as Claude Desktop does). */
export const UI_CLIENT_CAPABILITIES = {
  extensions: { [UI_EXTENSION]: { mimeTypes: [UI_MIME_TYPE] } },
};

/** The tool's visibility, with the spec's default. */
export function visibilityOf(tool) {
  const v = tool?._meta?.ui?.visibility;
  return Array.isArray(v) ? v : ["model", "app"];
}

/** True when a view of this server may call the tool (a tool the host never listed: no). */
export function appMayCall(tool) {
  return tool !== undefined && visibilityOf(tool).includes("app");
}

/** True when the host shows the tool to the model. */
export function modelMayCall(tool) {
  return tool !== undefined && visibilityOf(tool).includes("model");
}

/** The view the tool renders its results with (`_meta.ui.resourceUri`), if any. */
export function resourceUriOf(tool) {
  const uri = tool?._meta?.ui?.resourceUri ?? tool?._meta?.["ui/resourceUri"];
  return typeof uri === "string" && uri.startsWith("ui://") ? uri : undefined;
}

/**
 * The spec's restrictive default CSP for a view whose resource declares no `ui.csp`, widened only
 * by the domains it declares (the spec: a host may tighten, must not loosen). Adds what the spec's
 * sandbox section asks for besides: `frame-src 'none'`, `object-src 'none'`, `base-uri 'self'`.
 */
export function viewCsp(csp) {
  const clean = (list) =>
    (Array.isArray(list) ? list : []).filter((d) => typeof d === "string" && !/[;\r\n'" ]/.test(d));
  const resource = clean(csp?.resourceDomains).join(" ");
  const connect = clean(csp?.connectDomains).join(" ");
  const frame = clean(csp?.frameDomains).join(" ");
  const base = clean(csp?.baseUriDomains).join(" ");
  return [
    "default-src 'none'",
    `script-src 'self' 'unsafe-inline' ${resource}`.trim(),
    `style-src 'self' 'unsafe-inline' ${resource}`.trim(),
    `img-src 'self' data: ${resource}`.trim(),
    `font-src 'self' data: ${resource}`.trim(),
    `media-src 'self' data: ${resource}`.trim(),
    connect ? `connect-src ${connect}` : "connect-src 'none'",
    frame ? `frame-src ${frame}` : "frame-src 'none'",
    "object-src 'none'",
    base ? `base-uri ${base}` : "base-uri 'self'",
  ].join("; ");
}
