// The Node half of the host page's client transport. The page's official Client speaks through
// a TunnelTransport (host/host.js) whose messages arrive here by page.exposeBinding; this side
// holds the real transport: the SDK's StreamableHTTPClientTransport to the relay, or its
// StdioClientTransport to a bridge process (a page cannot spawn one). Messages from the server
// go back into the page with page.evaluate, in order.

import { StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";

/** A transport factory for the relay over Streamable HTTP. */
export function httpTransport(url, headers = {}) {
  return () =>
    new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
}

/**
 * A transport factory for a bridge process: `bridge` is the binary, `env` its whole environment.
 * The process's stderr is kept in `sink.stderr` for failure reports.
 */
export function stdioTransport(bridge, env, sink) {
  return () => {
    const transport = new StdioClientTransport({ command: bridge, args: [], env, stderr: "pipe" });
    sink.stderr = "";
    transport.stderr?.on("data", (chunk) => {
      sink.stderr = (sink.stderr + chunk.toString()).slice(-20000);
    });
    return transport;
  };
}

export class Tunnel {
  /** `makeTransport()` gives a fresh, unstarted SDK transport. */
  constructor(page, makeTransport, label) {
    this.page = page;
    this.makeTransport = makeTransport;
    this.label = label;
    this.transports = new Map();
    this.chain = Promise.resolve();
    this.errors = [];
  }

  /** Installs the binding; call before the page loads. */
  async install() {
    await this.page.exposeBinding("__tunnel", (source, op, id, payload) =>
      this.handle(source, op, id, payload),
    );
  }

  async handle(source, op, id, payload) {
    // Only the host page itself may use the tunnel, never a view inside it.
    if (source.frame !== this.page.mainFrame()) throw new Error("the tunnel is the host's only");
    switch (op) {
      case "open": {
        const transport = this.makeTransport();
        transport.onmessage = (message) => this.deliver(id, "message", message);
        transport.onerror = (error) => {
          const text = String(error?.message ?? error);
          this.errors.push(text);
          this.deliver(id, "error", text);
        };
        transport.onclose = () => this.deliver(id, "close", null);
        this.transports.set(id, transport);
        await transport.start();
        return;
      }
      case "send":
        return this.transports.get(id).send(payload);
      case "protocol":
        this.transports.get(id)?.setProtocolVersion?.(payload);
        return;
      case "close": {
        const transport = this.transports.get(id);
        this.transports.delete(id);
        await transport?.close();
        return;
      }
      default:
        throw new Error(`unknown tunnel op ${op}`);
    }
  }

  deliver(id, kind, payload) {
    this.chain = this.chain
      .then(() =>
        this.page.evaluate(([i, k, p]) => window.__tunnelDeliver?.(i, k, p), [id, kind, payload]),
      )
      .catch(() => {
        /* the page is gone */
      });
  }

  /** Closes every real transport (kills bridge processes). */
  async close() {
    const all = [...this.transports.values()];
    this.transports.clear();
    await Promise.allSettled(all.map((t) => t.close()));
  }
}
