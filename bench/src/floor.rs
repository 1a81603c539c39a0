//! The floor: the least a Streamable HTTP chat server can do for the bench's load, so that the
//! report can say how far the relay is above it (issue 15).
//!
//! Per session: `initialize` gets a session id (`Mcp-Session-Id`) and a fixed result; the
//! standalone GET is an SSE stream held open; `notifications/*` get 202. `tools/call` of
//! `enter_queue` or `join_room` pairs the session (one waiting slot for the queue, one per room
//! code) and pushes a `chatroom.found` event naming the partner to both; `send_message` pushes
//! one `message.received` event of about 300 bytes (the text and a fixed envelope) to the
//! partner's stream and answers with a fixed result shaped like the relay's. Nothing is stored,
//! there is no replay, no limit and no logging mirror. DELETE ends the session.
//!
//! It is an axum router on hyper's HTTP/1 connection builder (the relay's own accept loop
//! without its limits and timers; `axum::serve` costs about 3 KiB more per idle connection),
//! one mutex over a map of sessions, and a small bounded channel per GET stream: what a lean
//! hand-written server would use. It is loaded by the bench's lean participant
//! (`--client lean`), the same client code as the relay.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tower::ServiceExt;

use crate::BenchError;

/// Events a GET stream may have queued (a slow reader loses the rest: the floor does not
/// buffer).
const STREAM_QUEUE: usize = 64;

const INITIALIZE_RESULT: &str = r#"{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"mcp-chat-bench-floor","version":"0"}}"#;
const SEND_RESULT: &str = r#"{"content":[{"type":"text","text":"Sent."}],"structuredContent":{"room_id":"floor","message_seq":1,"delivered_to":1},"isError":false}"#;
const PAIR_RESULT: &str = r#"{"content":[{"type":"text","text":"Waiting."}],"structuredContent":{"status":"waiting"},"isError":false}"#;
const ERROR_RESULT: &str = r#"{"content":[{"type":"text","text":"No partner."}],"isError":true}"#;

#[derive(Default)]
struct Session {
    name: String,
    partner: Option<u64>,
    stream: Option<mpsc::Sender<Bytes>>,
}

#[derive(Default)]
struct Floor {
    next_id: u64,
    sessions: HashMap<u64, Session>,
    queue: Option<u64>,
    rooms: HashMap<String, u64>,
}

type Shared = Arc<Mutex<Floor>>;

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: String,
    #[serde(default)]
    params: Option<Params>,
}

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    name: String,
    #[serde(default)]
    arguments: Arguments,
}

#[derive(Default, Deserialize)]
struct Arguments {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    room_id: Option<String>,
}

/// Serves the floor on `bind` until the process is killed, announcing the address on stderr
/// the way the relay does.
pub async fn serve(bind: SocketAddr) -> Result<(), BenchError> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    eprintln!(
        "floor server listening on http://{}/mcp",
        listener.local_addr()?
    );
    let app = Router::new()
        .route("/mcp", post(answer).get(stream).delete(end))
        .with_state(Shared::default());
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: http::Request<_>| {
            app.clone().oneshot(request)
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
        );
    }
}

fn session_of(headers: &HeaderMap) -> Option<u64> {
    headers.get("mcp-session-id")?.to_str().ok()?.parse().ok()
}

fn json(id: &Value, result: &str) -> Response {
    let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// One SSE frame carrying a JSON-RPC notification.
fn frame(notification: &Value) -> Bytes {
    Bytes::from(format!("data: {notification}\n\n"))
}

fn push(floor: &Floor, to: u64, event: Bytes) {
    if let Some(stream) = floor.sessions.get(&to).and_then(|s| s.stream.as_ref()) {
        let _ = stream.try_send(event);
    }
}

fn pair(floor: &mut Floor, a: u64, b: u64) {
    let name = |floor: &Floor, s| floor.sessions.get(&s).map(|s| s.name.clone());
    let (Some(name_a), Some(name_b)) = (name(floor, a), name(floor, b)) else {
        return;
    };
    for (me, partner, partner_name) in [(a, b, name_b), (b, a, name_a)] {
        if let Some(s) = floor.sessions.get_mut(&me) {
            s.partner = Some(partner);
        }
        let event = serde_json::json!({
            "jsonrpc": "2.0", "method": mcp_chat::events::CHATROOM_FOUND,
            "params": { "room_id": "floor", "members": [partner_name] }
        });
        push(floor, me, frame(&event));
    }
}

async fn answer(State(floor): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Request>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(id) = request.id else {
        return StatusCode::ACCEPTED.into_response();
    };
    if request.method == "initialize" {
        let session = {
            let mut floor = floor.lock().unwrap();
            floor.next_id += 1;
            let session = floor.next_id;
            floor.sessions.insert(session, Session::default());
            session
        };
        let mut response = json(&id, INITIALIZE_RESULT);
        response
            .headers_mut()
            .insert("mcp-session-id", HeaderValue::from(session));
        return response;
    }
    let Some(session) = session_of(&headers) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(params) = request.params else {
        return json(&id, "{}");
    };
    let mut floor = floor.lock().unwrap();
    if !floor.sessions.contains_key(&session) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match params.name.as_str() {
        mcp_chat::tools::SEND_MESSAGE => {
            let partner = floor.sessions.get(&session).and_then(|s| s.partner);
            let Some(partner) = partner else {
                return json(&id, ERROR_RESULT);
            };
            let event = serde_json::json!({
                "jsonrpc": "2.0", "method": mcp_chat::events::MESSAGE_RECEIVED,
                "params": {
                    "room_id": "00000000-0000-0000-0000-000000000000",
                    "seq": 1,
                    "from": floor.sessions.get(&session).map(|s| s.name.as_str()),
                    "text": params.arguments.text.unwrap_or_default(),
                    "sent_at": "2026-01-01T00:00:00.000Z",
                }
            });
            push(&floor, partner, frame(&event));
            json(&id, SEND_RESULT)
        }
        mcp_chat::tools::ENTER_QUEUE | mcp_chat::tools::JOIN_ROOM => {
            if let Some(s) = floor.sessions.get_mut(&session) {
                s.name = params.arguments.display_name.unwrap_or_default();
            }
            let waiting = match params.arguments.room_id {
                Some(room) => match floor.rooms.remove(&room) {
                    Some(other) => Some(other),
                    None => {
                        floor.rooms.insert(room, session);
                        None
                    }
                },
                None => floor.queue.take().or_else(|| {
                    floor.queue = Some(session);
                    None
                }),
            };
            if let Some(other) = waiting {
                pair(&mut floor, other, session);
            }
            json(&id, PAIR_RESULT)
        }
        _ => json(&id, "{}"),
    }
}

async fn stream(State(floor): State<Shared>, headers: HeaderMap) -> Response {
    let Some(session) = session_of(&headers) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let (tx, rx) = mpsc::channel::<Bytes>(STREAM_QUEUE);
    {
        let mut floor = floor.lock().unwrap();
        let Some(s) = floor.sessions.get_mut(&session) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        s.stream = Some(tx);
    }
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        )],
        Body::from_stream(body),
    )
        .into_response()
}

async fn end(State(floor): State<Shared>, headers: HeaderMap) -> StatusCode {
    let Some(session) = session_of(&headers) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut floor = floor.lock().unwrap();
    match floor.sessions.remove(&session) {
        Some(_) => StatusCode::OK,
        None => StatusCode::NOT_FOUND,
    }
}
