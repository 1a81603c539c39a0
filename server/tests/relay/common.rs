//! Test harness: a relay on 127.0.0.1 port 0, rmcp clients as participants, and a raw HTTP
//! client for what a well-behaved client never sends.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use mcp_chat::ToolError;
use mcp_chat_relay::RelayConfig;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, CustomNotification,
    Implementation, LoggingMessageNotificationParam,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen promptly.
pub const PROMPT: Duration = Duration::from_secs(5);

pub use testkit::relay::InProcessRelay as TestRelay;

/// Settings that keep tests fast: short grace period and sweep, generous rate limit.
pub fn test_config() -> RelayConfig {
    testkit::relay::test_config()
}

/// Something the relay pushed to a client.
#[derive(Debug, Clone)]
pub enum Pushed {
    /// A custom notification (`chatroom.found`, ...).
    Custom { method: String, params: Value },
    /// An MCP logging notification.
    Log(LoggingMessageNotificationParam),
}

/// Client handler that records every push.
#[derive(Clone)]
pub struct Recorder {
    pushes: mpsc::UnboundedSender<Pushed>,
    /// Announce the MCP Apps extension, as hosts that render the chat pane do.
    ui: bool,
}

impl ClientHandler for Recorder {
    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _ctx: NotificationContext<RoleClient>,
    ) {
        let _ = self.pushes.send(Pushed::Custom {
            method: notification.method,
            params: notification.params.unwrap_or(Value::Null),
        });
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        let _ = self.pushes.send(Pushed::Log(params));
    }

    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        if self.ui {
            let mut ui = serde_json::Map::new();
            ui.insert(
                "mimeTypes".to_owned(),
                serde_json::json!([mcp_chat::pane::UI_MIME_TYPE]),
            );
            capabilities.extensions = Some([(mcp_chat::pane::UI_EXTENSION.to_owned(), ui)].into());
        }
        ClientConfig::new(capabilities, Implementation::new("relay-test", "0"))
    }
}

/// One participant: an rmcp Streamable HTTP client session with the relay.
pub struct Chatter {
    pub service: RunningService<RoleClient, Recorder>,
    pushes: mpsc::UnboundedReceiver<Pushed>,
}

impl Chatter {
    /// Connects a participant without an identity token.
    pub async fn connect(url: &str) -> Self {
        Self::connect_with(url, HashMap::new(), None).await
    }

    /// Connects a participant that presents `token` in the identity header.
    pub async fn connect_as(url: &str, token: &str) -> Self {
        let mut headers = HashMap::new();
        headers.insert(
            http::HeaderName::from_static(mcp_chat::protocol::IDENTITY_HEADER),
            http::HeaderValue::from_str(token).unwrap(),
        );
        Self::connect_with(url, headers, None).await
    }

    /// Connects a participant presenting `token`, its connections coming from `source` (any
    /// 127.x.y.z works on loopback), for tests of address bans.
    pub async fn connect_from(url: &str, token: &str, source: &str) -> Self {
        let mut headers = HashMap::new();
        headers.insert(
            http::HeaderName::from_static(mcp_chat::protocol::IDENTITY_HEADER),
            http::HeaderValue::from_str(token).unwrap(),
        );
        let source: std::net::IpAddr = source.parse().unwrap();
        let client = reqwest::Client::builder()
            .local_address(source)
            .build()
            .unwrap();
        let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers);
        let transport = StreamableHttpClientTransport::with_client(client, config);
        let (tx, pushes) = mpsc::unbounded_channel();
        let service = Recorder {
            pushes: tx,
            ui: false,
        }
        .serve(transport)
        .await
        .expect("connects to the relay");
        Self { service, pushes }
    }

    /// Connects with extra headers and an optional bearer token.
    pub async fn connect_with(
        url: &str,
        headers: HashMap<http::HeaderName, http::HeaderValue>,
        bearer: Option<&str>,
    ) -> Self {
        Self::try_connect(url, headers, bearer)
            .await
            .expect("connects to the relay")
    }

    /// Connects a participant whose client announces the MCP Apps extension (a host that
    /// renders the chat pane).
    pub async fn connect_ui(url: &str) -> Self {
        Self::try_connect_client(url, HashMap::new(), None, true)
            .await
            .expect("connects to the relay")
    }

    /// Like [`Self::connect_with`], but returns the error.
    pub async fn try_connect(
        url: &str,
        headers: HashMap<http::HeaderName, http::HeaderValue>,
        bearer: Option<&str>,
    ) -> Result<Self, String> {
        Self::try_connect_client(url, headers, bearer, false).await
    }

    async fn try_connect_client(
        url: &str,
        headers: HashMap<http::HeaderName, http::HeaderValue>,
        bearer: Option<&str>,
        ui: bool,
    ) -> Result<Self, String> {
        let mut config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers);
        if let Some(token) = bearer {
            config = config.auth_header(token);
        }
        let transport = StreamableHttpClientTransport::from_config(config);
        let (tx, pushes) = mpsc::unbounded_channel();
        let service = Recorder { pushes: tx, ui }
            .serve(transport)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { service, pushes })
    }

    /// Calls a tool and returns the raw result (protocol errors panic).
    pub async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        self.try_call(tool, args)
            .await
            .expect("tools/call answered")
    }

    /// Calls a tool; protocol errors are returned.
    pub async fn try_call(&self, tool: &str, args: Value) -> Result<CallToolResult, String> {
        let Value::Object(args) = args else {
            panic!("tool arguments must be an object");
        };
        self.service
            .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
            .await
            .map_err(|e| e.to_string())
    }

    /// Calls a tool that must succeed and decodes its structured content.
    pub async fn ok<T: DeserializeOwned>(&self, tool: &str, args: Value) -> T {
        let result = self.call(tool, args).await;
        assert_ne!(result.is_error, Some(true), "{tool} failed: {result:?}");
        serde_json::from_value(result.structured_content.expect("structured content"))
            .expect("structured content matches the contract")
    }

    /// Calls a tool that must fail with a tool error, and decodes the error.
    pub async fn err(&self, tool: &str, args: Value) -> ToolError {
        let result = self.call(tool, args).await;
        assert_eq!(
            result.is_error,
            Some(true),
            "{tool} should fail: {result:?}"
        );
        assert!(
            result.structured_content.is_none(),
            "errors must not break the tool's output schema"
        );
        error_of(&result).expect("the error is in _meta")
    }

    /// Waits for the next custom notification with this method, returning its params. Logging
    /// notifications and other methods are skipped.
    pub async fn pushed(&mut self, method: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PROMPT;
        loop {
            match tokio::time::timeout_at(deadline, self.pushes.recv()).await {
                Ok(Some(Pushed::Custom { method: m, params })) if m == method => return params,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("push channel closed while waiting for {method}"),
                Err(_) => panic!("no {method} notification within {PROMPT:?}"),
            }
        }
    }

    /// The next push of any kind, waiting at most `within`; `None` when nothing came (or the
    /// session's push channel is closed).
    pub async fn next_push_within(&mut self, within: Duration) -> Option<Pushed> {
        tokio::time::timeout(within, self.pushes.recv())
            .await
            .ok()
            .flatten()
    }

    /// Every push received so far (without waiting).
    pub fn drain_pushes(&mut self) -> Vec<Pushed> {
        let mut out = Vec::new();
        while let Ok(p) = self.pushes.try_recv() {
            out.push(p);
        }
        out
    }

    /// Pings the relay every `every` in the background, as the bridge does, until the returned
    /// task is aborted or the session ends.
    pub fn keep_alive(&self, every: Duration) -> JoinHandle<()> {
        let peer = self.service.peer().clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let ping = rmcp::model::ClientRequest::PingRequest(Default::default());
                if peer.send_request(ping).await.is_err() {
                    return;
                }
            }
        })
    }

    /// Ends the session cleanly (HTTP DELETE).
    pub async fn close(self) {
        let _ = self.service.cancel().await;
    }
}

/// The machine-readable error of a failed result (`_meta["mcp-chat/error"]`).
pub fn error_of(result: &CallToolResult) -> Option<ToolError> {
    let meta = result.meta.as_ref()?;
    serde_json::from_value(meta.0.get(mcp_chat::errors::ERROR_META_KEY)?.clone()).ok()
}

/// Enters two participants in the queue so that they are paired; returns the room id.
pub async fn pair(a: &mut Chatter, b: &mut Chatter) -> String {
    let first: Value = a.ok("enter_queue", json!({ "display_name": "Ada" })).await;
    assert_eq!(first["state"], "waiting");
    let second: Value = b.ok("enter_queue", json!({ "display_name": "Bob" })).await;
    assert_eq!(second["state"], "in_room");
    let room = second["room_id"].as_str().unwrap().to_owned();
    let found = a.pushed("chatroom.found").await;
    assert_eq!(found["room_id"], room.as_str());
    b.pushed("chatroom.found").await;
    room
}

/// A bare HTTP client speaking JSON-RPC by hand, for requests a real client never makes and
/// for vanishing without a DELETE.
pub struct RawClient {
    pub http: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// A raw response: status, headers and the JSON-RPC messages found in the body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl RawResponse {
    /// The JSON-RPC messages of the body, whether plain JSON or SSE `data:` lines.
    pub fn messages(&self) -> Vec<Value> {
        if let Ok(v) = serde_json::from_str::<Value>(&self.body) {
            return vec![v];
        }
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    }
}

impl RawClient {
    pub fn new(url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            session: None,
            headers: Vec::new(),
        }
    }

    /// A client whose connections come from `source` (any 127.x.y.z works on loopback), for
    /// tests of the per-address limits.
    pub fn from_address(url: &str, source: &str) -> Self {
        let source: std::net::IpAddr = source.parse().unwrap();
        Self {
            http: reqwest::Client::builder()
                .local_address(source)
                .build()
                .unwrap(),
            ..Self::new(url)
        }
    }

    /// Adds a header to every request.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, &self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json");
        if let Some(id) = &self.session {
            req = req
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", "2025-11-25");
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req
    }

    /// POSTs a raw body.
    pub async fn post_raw(&self, body: impl Into<reqwest::Body>) -> RawResponse {
        let response = self
            .request(reqwest::Method::POST)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        RawResponse {
            status,
            headers,
            body,
        }
    }

    /// POSTs one JSON-RPC message.
    pub async fn post(&self, message: Value) -> RawResponse {
        self.post_raw(message.to_string()).await
    }

    /// POSTs an `initialize` request and returns the response as it is.
    pub async fn post_initialize(&self) -> RawResponse {
        self.post(json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": { "name": "raw-test", "version": "0" }
            }
        }))
        .await
    }

    /// `initialize` + `notifications/initialized`; remembers the session id.
    pub async fn initialize(&mut self) -> RawResponse {
        let response = self.post_initialize().await;
        assert_eq!(response.status, 200, "initialize: {response:?}");
        self.session = response
            .headers
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let ack = self
            .post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        assert_eq!(ack.status, 202, "initialized: {ack:?}");
        response
    }

    /// Calls a tool and returns the JSON-RPC result object.
    pub async fn call(&self, id: u64, tool: &str, args: Value) -> Value {
        let response = self
            .post(json!({
                "jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": { "name": tool, "arguments": args }
            }))
            .await;
        assert_eq!(response.status, 200, "{tool}: {response:?}");
        response
            .messages()
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {tool}: {response:?}"))
    }

    /// Opens the standalone GET stream and returns the live response (drop it to disconnect).
    pub async fn open_stream(&self) -> reqwest::Response {
        let response = self.request(reqwest::Method::GET).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response
    }

    /// Sends a DELETE for the session.
    pub async fn delete(&self) -> u16 {
        self.request(reqwest::Method::DELETE)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// A client of the admin API: `(status, JSON body)` for every call.
pub struct AdminClient {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The same API with another token.
    pub fn with_token(&self, token: &str) -> Self {
        Self::new(&self.base, token)
    }

    /// A request with the token (none when it is empty).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the admin API answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }
}

/// Reads SSE blocks from `response` until `done` says so or `within` passes; returns the `(id,
/// data)` of each block with JSON data (the id empty when the block has none).
pub async fn read_sse(
    response: &mut reqwest::Response,
    within: Duration,
    done: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let deadline = tokio::time::Instant::now() + within;
    let mut buffer = String::new();
    let mut events = Vec::new();
    while !done(&events) {
        let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await else {
            break;
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .and_then(|d| serde_json::from_str(d.trim()).ok());
            if let Some(data) = data {
                events.push((id, data));
            }
        }
    }
    events
}

/// Sends half a request head to `addr` and waits: true when the server closes the connection
/// (or answers) within 5 s, as it must once its header-read timeout passes.
pub async fn half_sent_request_is_cut_off(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await;
    matches!(read, Ok(Ok(_)) | Ok(Err(_)))
}
