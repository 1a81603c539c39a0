//! The HTTP surface: `/mcp` (Streamable HTTP via rmcp) behind a guard, `/healthz`, `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Method, StatusCode, header};
use mcp_chat::protocol::{
    IDENTITY_HEADER, LAST_SEQ_HEADER, MAX_IDENTITY_TOKEN_CHARS, MIN_IDENTITY_TOKEN_CHARS,
};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::StreamableHttpService;

use crate::Node;
use crate::handler::ChatHandler;
use crate::metrics::Rejection;
use crate::sessions::TrackedSessionManager;

/// The rmcp service mounted at `/mcp`.
pub type McpService = StreamableHttpService<ChatHandler, TrackedSessionManager>;

/// The relay's routes.
pub fn router(node: Arc<Node>, mcp: McpService) -> Router {
    let guarded = Router::new()
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(node.clone(), guard_mcp));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(node)
        .merge(guarded)
}

/// Checks what rmcp does not before a request reaches it: the access token, the identity token's
/// shape, the session cap, the body size and that the body is JSON. Also feeds the session
/// registry (last request, explicit DELETE) and counts rejections.
async fn guard_mcp(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &node.config.access_token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|t| constant_time_eq(t.as_bytes(), expected.as_bytes())) {
            node.metrics.reject(Rejection::Unauthorized);
            let mut response = jsonrpc_error(
                StatusCode::UNAUTHORIZED,
                -32001,
                "Unauthorized: this relay needs `Authorization: Bearer <access token>`",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    if let Some(token) = request.headers().get(IDENTITY_HEADER)
        && !valid_identity_token(token)
    {
        node.metrics.reject(Rejection::Malformed);
        return jsonrpc_error(
            StatusCode::BAD_REQUEST,
            -32600,
            &format!(
                "Bad Request: the {IDENTITY_HEADER} header must be {MIN_IDENTITY_TOKEN_CHARS} to \
                 {MAX_IDENTITY_TOKEN_CHARS} visible ASCII characters of a random secret"
            ),
        );
    }
    let session = request
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let deleting = request.method() == Method::DELETE;
    if let Some(id) = &session {
        node.sessions.touch(id);
        if deleting {
            // Read by the session manager while rmcp closes the session for this DELETE.
            node.sessions.mark_explicit_end(id, true);
        }
        if request.method() == Method::GET
            && request.headers().contains_key(IDENTITY_HEADER)
            && let Some(claim) = request
                .headers()
                .get(LAST_SEQ_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        {
            // Read by the session manager once this GET's stream is attached.
            node.sessions.set_resume_claim(id, claim);
        }
    }
    if request.method() == Method::POST
        && let Some(id) = &session
        && let Err(wait) = node.sessions.admit_post(id)
    {
        node.metrics.reject(Rejection::TooManyRequests);
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = jsonrpc_error(
            StatusCode::TOO_MANY_REQUESTS,
            -32000,
            &format!("Too Many Requests: this session sends too fast; retry in {secs} s"),
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&secs.to_string()).unwrap_or(HeaderValue::from_static("1")),
        );
        return response;
    }
    let request = if request.method() == Method::POST {
        if session.is_none() && node.sessions.session_count() >= node.config.max_sessions {
            node.metrics.reject(Rejection::TooManySessions);
            let mut response = jsonrpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                -32000,
                "Service Unavailable: this relay holds as many sessions as it may; retry later",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            return response;
        }
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, node.config.max_body_bytes).await else {
            node.metrics.reject(Rejection::BodyTooLarge);
            let mut response = jsonrpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                -32600,
                &format!(
                    "Payload Too Large: request bodies are limited to {} bytes",
                    node.config.max_body_bytes
                ),
            );
            // The rest of the body is never read, so the connection cannot carry another
            // request: say so, or a pooling client reuses it and its next request fails.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        };
        // One typed parse here (rmcp parses the body again); serde_json's error category tells
        // a syntax error (-32700) from valid JSON that is not JSON-RPC (-32600).
        if let Err(e) = serde_json::from_slice::<ClientJsonRpcMessage>(&bytes) {
            node.metrics.reject(Rejection::Malformed);
            return match e.classify() {
                serde_json::error::Category::Data => jsonrpc_error(
                    StatusCode::BAD_REQUEST,
                    -32600,
                    &format!("Invalid Request: not a JSON-RPC 2.0 request or notification ({e})"),
                ),
                _ => jsonrpc_error(
                    StatusCode::BAD_REQUEST,
                    -32700,
                    &format!("Parse error: the body is not valid JSON ({e})"),
                ),
            };
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    let response = next.run(request).await;
    if deleting
        && !response.status().is_success()
        && let Some(id) = &session
    {
        node.sessions.mark_explicit_end(id, false);
    }
    match response.status() {
        StatusCode::FORBIDDEN => node.metrics.reject(Rejection::Forbidden),
        StatusCode::NOT_FOUND => node.metrics.reject(Rejection::UnknownSession),
        StatusCode::PAYLOAD_TOO_LARGE => node.metrics.reject(Rejection::BodyTooLarge),
        StatusCode::BAD_REQUEST
        | StatusCode::NOT_ACCEPTABLE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE => node.metrics.reject(Rejection::Malformed),
        _ => {}
    }
    response
}

fn valid_identity_token(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (MIN_IDENTITY_TOKEN_CHARS..=MAX_IDENTITY_TOKEN_CHARS).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JSON-RPC error response with no id (the request could not be read far enough to have one).
fn jsonrpc_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message },
    });
    (status, axum::Json(body)).into_response()
}

async fn healthz(State(node): State<Arc<Node>>) -> Response {
    let counts = match node.store.counts().await {
        Ok(counts) => counts,
        Err(error) => {
            let body = serde_json::json!({ "status": "unavailable", "error": error.to_string() });
            return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
        }
    };
    let shutting_down = node.shutdown.is_cancelled();
    let body = serde_json::json!({
        "status": if shutting_down { "shutting_down" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": node.started.elapsed().as_secs(),
        "sessions": node.sessions.session_count(),
        "participants": counts.participants,
        "waiting": counts.waiting,
        "rooms": counts.rooms,
        "messages_relayed": counts.messages_relayed,
    });
    let status = if shutting_down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let counts = node.store.counts().await.unwrap_or_default();
    let text = node.metrics.render(node.sessions.session_count(), &counts);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}
