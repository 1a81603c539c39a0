//! The HTTP surface: `/mcp` (Streamable HTTP, `mcp`) behind a guard, the chat page at `/`,
//! `/healthz`, `/metrics`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::{HeaderValue, Method, StatusCode, header};
use mcp_chat::protocol::{IDENTITY_HEADER, MAX_IDENTITY_TOKEN_CHARS, MIN_IDENTITY_TOKEN_CHARS};

use crate::address::{ClientAddress, PeerAddress, SessionRefusal, forwarded_for};
use crate::mcp::{self, SESSION_HEADER, http_error as jsonrpc_error};
use crate::metrics::Rejection;
use crate::node::Node;
use crate::{origin, page};

/// The relay's routes.
pub fn router(node: Arc<Node>) -> Router {
    let guarded = Router::new()
        .route(
            "/mcp",
            axum::routing::post(mcp::post)
                .get(mcp::get)
                .delete(mcp::delete)
                .fallback(mcp::method_not_allowed),
        )
        .with_state(node.clone())
        .layer(middleware::from_fn_with_state(node.clone(), guard_mcp));
    Router::new()
        .route("/", get(page::chat_page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        // The admin API has a listener of its own (`admin`), never this one: a plain 404 here
        // (not the guard's JSON-RPC answers), so nothing suggests it might be.
        .route("/admin", any(not_found))
        .route("/admin/{*rest}", any(not_found))
        .with_state(node)
        .merge(guarded)
}

/// How long a request refused by a budget (429) waits for its answer. A client that retries at
/// once, as a flooding loop does, then makes a few requests a second per connection instead of
/// thousands; one that honours `Retry-After` loses nothing. Held requests cost a timer each,
/// and their connections count against the connection caps.
const REFUSAL_HOLD: Duration = Duration::from_secs(1);

/// Checks a request before the MCP endpoint reads it: Host and Origin, the per-address and
/// per-session budgets, the access token, the identity token's shape, the session cap. Also
/// feeds the session registry (last request), counts rejections, and charges each refusal
/// (4xx) to the client's address.
async fn guard_mcp(State(node): State<Arc<Node>>, mut request: Request, next: Next) -> Response {
    let client = client_address(&node, &request);
    // For the tool handler (bans by address), which sees the request's parts.
    request.extensions_mut().insert(ClientAddress(client));
    let response = guard_request(&node, client, request, next).await;
    let status = response.status();
    if let Some(ip) = client
        && status.is_client_error()
        && status != StatusCode::TOO_MANY_REQUESTS
    {
        node.addresses.count_refusal(ip);
    }
    response
}

/// The address the per-address limits count a request against: the connection's peer, or
/// with `trust_forwarded_for` what the proxy says. (None for requests that did not come
/// through the listener, e.g. from the fuzzer.)
fn client_address(node: &Node, request: &Request) -> Option<IpAddr> {
    let peer = request.extensions().get::<PeerAddress>().map(|p| p.0);
    if node.config.trust_forwarded_for {
        return forwarded_for(request.headers()).or(peer);
    }
    if peer.is_some_and(|ip| ip.is_loopback())
        && request.headers().contains_key("x-forwarded-for")
        && node.addresses.first_untrusted_proxy()
    {
        tracing::warn!(
            "requests come through a local proxy (X-Forwarded-For) that this relay does not \
             trust: every client counts as the proxy's one address for the per-address limits; \
             start the relay with --trust-forwarded-for if the proxy is its only way in"
        );
    }
    peer
}

/// A 429 answered after [`REFUSAL_HOLD`] (sooner if the relay shuts down). `close` when the
/// body was not read, so the connection cannot carry another request.
async fn refuse_held(node: &Node, wait: Duration, what: &str, close: bool) -> Response {
    tokio::select! {
        () = tokio::time::sleep(REFUSAL_HOLD) => {}
        () = node.shutdown.cancelled() => {}
    }
    let secs = wait.saturating_sub(REFUSAL_HOLD).as_secs_f64().ceil() as u64;
    let when = if secs == 0 {
        "retry now".to_owned()
    } else {
        format!("retry in {secs} s")
    };
    let mut response = jsonrpc_error(
        StatusCode::TOO_MANY_REQUESTS,
        -32000,
        &format!("Too Many Requests: {what}; {when}"),
    );
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn guard_request(
    node: &Node,
    client: Option<IpAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    // The relay's own page (`/`) passes the Origin check; every other origin must be
    // configured.
    page::strip_same_origin(request.headers_mut());
    if let Err(refusal) = origin::check(&node.config, request.headers()) {
        node.metrics.reject(Rejection::Forbidden);
        return jsonrpc_error(StatusCode::FORBIDDEN, -32600, &refusal.to_string());
    }
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let live_session = session
        .as_deref()
        .is_some_and(|id| node.sessions.has_session(id));
    let mut address_slot = None;
    if !live_session && let Some(ip) = client {
        if let Err(wait) = node.addresses.check_refusals(ip) {
            node.metrics.reject(Rejection::AddressRefusals);
            let what = "this address sent too many requests the relay had to refuse";
            return refuse_held(node, wait, what, true).await;
        }
        if request.method() == Method::POST && session.is_none() {
            match node.addresses.admit_session(ip) {
                Ok(slot) => address_slot = slot,
                Err(refusal) => {
                    node.metrics.reject(Rejection::AddressSessions);
                    let (what, wait) = match refusal {
                        SessionRefusal::TooFast(wait) => {
                            ("this address opens sessions too fast", wait)
                        }
                        // A slot comes back when one of its sessions ends.
                        SessionRefusal::TooMany => (
                            "this address holds as many sessions as it may",
                            Duration::from_secs(30),
                        ),
                    };
                    return refuse_held(node, wait, what, true).await;
                }
            }
        }
    }
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
    if let Some(id) = &session {
        node.sessions.touch(id);
    }
    if request.method() == Method::POST
        && let Some(id) = &session
        && let Err(wait) = node.sessions.admit_post(id)
    {
        node.metrics.reject(Rejection::TooManyRequests);
        return refuse_held(node, wait, "this session sends too fast", false).await;
    }
    if request.method() == Method::POST
        && session.is_none()
        && node.sessions.session_count() >= node.config.max_sessions
    {
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
    let response = next.run(request).await;
    if let Some(slot) = address_slot
        && let Some(id) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
    {
        node.sessions.hold_address_slot(id, slot);
    }
    if response.status() == StatusCode::NOT_FOUND {
        node.metrics.reject(Rejection::UnknownSession);
    }
    response
}

fn valid_identity_token(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (MIN_IDENTITY_TOKEN_CHARS..=MAX_IDENTITY_TOKEN_CHARS).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
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
