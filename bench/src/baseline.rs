//! The baseline: a minimal HTTP server that answers the relay's request shape with a fixed
//! JSON-RPC reply and does no MCP work, so the report can show how close the relay gets to the
//! cost of HTTP itself.
//!
//! It answers just enough for an rmcp client to use it: `initialize` gets a fixed result and a
//! session id, notifications get 202, every other request gets a fixed `tools/call` result
//! carrying the request's id, GET gets 405 (no event stream), DELETE gets 200. The only work per
//! request is reading the JSON body far enough to echo its id.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::Value;

use crate::BenchError;

/// The `initialize` result.
const INITIALIZE_RESULT: &str = r#"{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"mcp-chat-bench-baseline","version":"0"}}"#;

/// The reply to any other request: shaped and sized like the relay's `send_message` result.
const TOOL_RESULT: &str = r#"{"content":[{"type":"text","text":"Sent (message 1 in room 00000000-0000-0000-0000-000000000000, delivered to 1)."}],"structuredContent":{"room_id":"00000000-0000-0000-0000-000000000000","message_seq":1,"delivered_to":1},"isError":false}"#;

/// The session id every client gets.
const SESSION_ID: &str = "baseline";

/// What the server reads of a request body.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: String,
}

/// Serves the baseline on `bind` until the process is killed, announcing the address on stderr
/// the way the relay does.
pub async fn serve(bind: SocketAddr) -> Result<(), BenchError> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    eprintln!(
        "baseline server listening on http://{}/mcp",
        listener.local_addr()?
    );
    let app = Router::new().route(
        "/mcp",
        post(answer)
            .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
            .delete(|| async { StatusCode::OK }),
    );
    // Same socket option as the relay, so that neither side of the comparison waits for
    // delayed ACKs.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

async fn answer(body: Bytes) -> Response {
    let Ok(probe) = serde_json::from_slice::<Probe>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(id) = probe.id else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = if probe.method == "initialize" {
        INITIALIZE_RESULT
    } else {
        TOOL_RESULT
    };
    let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#);
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    response
        .headers_mut()
        .insert("mcp-session-id", HeaderValue::from_static(SESSION_ID));
    response
}
