//! Server-sent event framing for the MCP endpoint's streams.

use axum::body::Bytes;
use serde::Serialize;

/// How long a client should wait before it reconnects a stream the relay closed (the SSE
/// `retry` field, in milliseconds).
pub const RETRY_MS: u64 = 1000;

/// One SSE event carrying `message` as its data, with `id` if given. JSON is written on one
/// line, so one `data:` line holds it.
pub fn frame(id: Option<&str>, message: &impl Serialize) -> Bytes {
    let json = serde_json::to_vec(message).unwrap_or_default();
    let mut out = Vec::with_capacity(json.len() + 32);
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The first event of a tool call's stream (SEP-1699): an id to resume from and an empty data
/// line, with the reconnection delay.
pub fn priming(id: &str) -> Bytes {
    Bytes::from(format!("id: {id}\nretry: {RETRY_MS}\ndata: \n\n"))
}

/// A comment line: keeps a quiet stream open and reveals a dead connection.
pub fn keep_alive() -> Bytes {
    Bytes::from_static(b": keep-alive\n\n")
}
