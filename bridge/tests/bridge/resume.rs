//! The resume header: every new relay session carries the `seq` of the newest chat event the
//! bridge received, so another node (or a restarted relay) pushes from what actually arrived.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mcp_chat::protocol::LAST_SEQ_HEADER;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, CustomNotification, ServerCapabilities, ServerConfig,
    ServerNotification,
};
use rmcp::service::RequestContext;
use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde_json::json;

use crate::common::{Bridge, PROMPT, temp_dir};

/// A relay node that pushes whatever chat events a test asks for.
#[derive(Clone)]
struct Pusher {
    tool_router: ToolRouter<Self>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct EmitArgs {
    /// `seq`s of `message.received` events to push, each with the text `m<seq>`.
    seqs: Vec<u64>,
}

#[tool_router]
impl Pusher {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    /// Pushes the events.
    #[tool]
    async fn emit(
        &self,
        Parameters(args): Parameters<EmitArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        for seq in args.seqs {
            // A fixed timestamp per seq: pushed again, it is the same event.
            let event = json!({
                "seq": seq, "timestamp_ms": 1_700_000_000_000u64 + seq, "room_id": "r1",
                "type": "message.received", "from": "Bob", "text": format!("m{seq}"),
                "message_seq": seq,
            });
            let notification = CustomNotification::new("message.received", Some(event));
            ctx.peer
                .send_notification(ServerNotification::CustomNotification(notification))
                .await
                .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        }
        Ok(CallToolResult::success(vec![ContentBlock::text("sent")]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Pusher {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// What a node's HTTP layer saw and how it behaves.
#[derive(Default)]
struct NodeState {
    /// Each session-opening POST (`initialize`, then `notifications/initialized`, where the
    /// relay binds the session) with its `mcp-chat-last-seq`, in order.
    opened: Vec<(String, Option<String>)>,
    /// Other POSTs that carried `mcp-chat-last-seq`.
    others_with_header: usize,
    /// GETs (the standalone stream, opened or re-attached) that carried it: the relay pushes
    /// again from there what its replay cache no longer holds.
    streams_with_header: usize,
    /// Every session id seen so far.
    sessions: HashSet<String>,
    /// Sessions this node answers 404 for, as a restarted relay (or another node behind a
    /// load balancer) does.
    forgotten: HashSet<String>,
    /// Answers everything with 503, as a dead node behind a proxy.
    dead: bool,
}

struct Node {
    url: String,
    state: Arc<Mutex<NodeState>>,
}

impl Node {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(NodeState::default()));
        let service = StreamableHttpService::new(
            || Ok(Pusher::new()),
            LocalSessionManager::default().into(),
            Default::default(),
        );
        let recorder = {
            let state = state.clone();
            move |request: Request, next: Next| {
                let state = state.clone();
                async move { record(state, request, next).await }
            }
        };
        let app = axum::Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn(recorder));
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url: format!("http://{addr}/mcp"),
            state,
        }
    }

    fn opened(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().opened.clone()
    }

    /// Waits until this node has seen `n` sessions opened; returns what it saw.
    async fn wait_opened(&self, n: usize, bridge: &Bridge) -> Vec<(String, Option<String>)> {
        let deadline = tokio::time::Instant::now() + PROMPT;
        loop {
            let opened = self.opened();
            if opened.len() >= 2 * n {
                return opened;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} saw {opened:?}, expected {n} sessions\n{}",
                self.url,
                bridge.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn record(state: Arc<Mutex<NodeState>>, request: Request, next: Next) -> Response {
    let session = request
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let seq = request
        .headers()
        .get(LAST_SEQ_HEADER)
        .map(|v| v.to_str().unwrap().to_owned());
    let is_get = request.method() == http::Method::GET;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let method = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|m| m["method"].as_str().map(str::to_owned));
    let request = Request::from_parts(parts, axum::body::Body::from(body));
    {
        let mut state = state.lock().unwrap();
        if state.dead {
            return http::StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        if let Some(id) = &session {
            if state.forgotten.contains(id) {
                return http::StatusCode::NOT_FOUND.into_response();
            }
            state.sessions.insert(id.clone());
        }
        match method {
            Some(m) if m == "initialize" || m == "notifications/initialized" => {
                state.opened.push((m, seq));
            }
            _ if seq.is_some() && is_get => state.streams_with_header += 1,
            _ if seq.is_some() => state.others_with_header += 1,
            _ => {}
        }
    }
    next.run(request).await
}

/// The session-opening POSTs of one session, each with `seq` as its header.
fn opening(seq: Option<u64>) -> Vec<(String, Option<String>)> {
    ["initialize", "notifications/initialized"]
        .map(|m| (m.to_owned(), seq.map(|s| s.to_string())))
        .to_vec()
}

/// Nothing before the first event; then the newest seq on a failover to another node and on
/// the new session the bridge makes when a node has forgotten its session (404); a replay of older events does not lower
/// it. Only the POSTs that open a session carry it.
#[tokio::test]
async fn new_relay_sessions_carry_the_newest_received_seq() {
    let first = Node::start().await;
    let second = Node::start().await;
    let urls = format!("{},{}", first.url, second.url);
    let mut a = Bridge::spawn(&urls, temp_dir("resume"), &[]);
    a.initialize().await;

    first.wait_opened(1, &a).await;
    a.call("emit", json!({ "seqs": [1, 2, 3] })).await;
    for text in ["m1", "m2", "m3"] {
        a.notification_where("message.received", |p| p["text"] == text)
            .await;
    }
    assert_eq!(first.opened(), opening(None), "no event yet: no header");

    // Node 1 dies: the bridge moves to node 2 and says where it is.
    first.state.lock().unwrap().dead = true;
    let opened = second.wait_opened(1, &a).await;
    assert_eq!(opened, opening(Some(3)), "{}", a.stderr());

    // Node 2 pushes from an older point (3 again), then new events.
    let result = a.call("emit", json!({ "seqs": [3, 4, 5] })).await;
    assert_eq!(result["isError"], false, "{result}");
    for text in ["m4", "m5"] {
        a.notification_where("message.received", |p| p["text"] == text)
            .await;
    }

    // Node 2 forgets the session (a restart): rmcp re-initializes on its own, and the header is
    // the value of that moment, not the one the transport was built with.
    {
        let mut state = second.state.lock().unwrap();
        let sessions = state.sessions.clone();
        state.forgotten.extend(sessions);
    }
    let opened = second.wait_opened(2, &a).await;
    assert_eq!(
        opened,
        [opening(Some(3)), opening(Some(5))].concat(),
        "{}",
        a.stderr()
    );
    a.call("emit", json!({ "seqs": [6] })).await;
    a.notification_where("message.received", |p| p["text"] == "m6")
        .await;
    for node in [&first, &second] {
        assert_eq!(node.state.lock().unwrap().others_with_header, 0);
    }
    assert!(
        second.state.lock().unwrap().streams_with_header > 0,
        "the stream opened after events carries the header too"
    );

    // m3 reached the host once: the replay was recognised.
    let all = a.drain(Duration::from_millis(300)).await;
    let m3 = all
        .iter()
        .filter(|m| m["method"] == "message.received" && m["params"]["text"] == "m3")
        .count();
    assert_eq!(m3, 0, "m3 was already taken from the backlog once");
}
