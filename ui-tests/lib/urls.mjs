// Finds anything in the view's HTML that could make the browser leave the page: absolute URLs
// with a scheme that reaches the network, and protocol-relative URLs in attributes, CSS url(),
// @import, or quoted strings. docs/chat-pane.md: "no external URL of any kind" — this is
// deliberately strict (an SVG xmlns="http://..." counts too: inline SVG in HTML needs none).

const PATTERNS = [
  [/\b(?:https?|wss?|ftp):/gi, "absolute URL"],
  [/\b(?:src|href|action|formaction|poster|srcset|data|background|ping)\s*=\s*["']?\s*\/\//gi, "protocol-relative URL in an attribute"],
  [/url\(\s*["']?\s*\/\//gi, "protocol-relative url() in CSS"],
  [/@import/gi, "CSS @import"],
  [/["'`]\/\/[a-z0-9-]+(?:\.[a-z0-9-]+)+/gi, "protocol-relative URL in a string"],
];

/** Returns one line per finding: what, where (line:col) and the text around it. */
export function findExternalUrls(html) {
  const found = [];
  for (const [re, what] of PATTERNS) {
    for (const m of html.matchAll(re)) {
      const before = html.slice(0, m.index);
      const line = before.split("\n").length;
      const col = m.index - before.lastIndexOf("\n");
      const around = html.slice(Math.max(0, m.index - 40), m.index + 60).replace(/\s+/g, " ");
      found.push(`${what} at ${line}:${col}: …${around}…`);
    }
  }
  return found;
}
