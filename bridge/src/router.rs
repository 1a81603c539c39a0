//! The router: JSON-RPC between the host (stdio) and the relay connection, one message at a
//! time, in order. (The loop that feeds it is [`crate::run`]; the chat events go through
//! [`ChatView`], the waiting requests live in [`PendingCalls`].)
//!
//! Everything the bridge does not own passes through unchanged — requests, responses, errors and
//! notifications keep their ids, params and order, so the bridge is a faithful general-purpose
//! stdio ↔ Streamable HTTP bridge. What it owns:
//!
//! - `initialize`, `ping`: answered at once, without the network;
//! - `tools/list` before the relay is reached: answered from the shared contract after a short
//!   wait, with `notifications/tools/list_changed` later if the relay's list differs;
//! - calls while the relay is unreachable: held for a short bound, then answered with an error
//!   that names the relay and the cause;
//! - calls of the relay's own chat tools: answered with an error if the relay's answer does not
//!   come within a bound (it can be lost for good on the way), and cancelled at the relay;
//! - progress notifications during long calls that carry a progress token;
//! - chat events: de-duplicated by event, mirrored as Claude Code channel pushes, and kept for
//!   the `chat://current` resource;
//! - the chat pane, for hosts that announce the MCP Apps extension: its tools in the offline
//!   `tools/list` and its view (`ui://mcp-chat/chat.html`) from `resources/read`, embedded, so
//!   the pane opens before the relay is reached (the host's capabilities go to the relay
//!   unchanged, so the relay lists the same tools);
//! - `logging/setLevel`: applied to what the bridge forwards, and passed on to the relay;
//! - one answer per request: a request whose id is still in flight is refused at once (the
//!   relay's answers are routed by id, so two could not be told apart);
//! - after a reconnect, whether the relay still has the host's chat (`chat_status`): a relay
//!   that restarted without its store cannot say that the chat ended, so the bridge does.
//!
//! Why three files: routing is the part that must stay in lockstep with MCP (which message goes
//! where, who answers), while the chat view is pure bookkeeping over events and the pending
//! table is clocks over requests. Each is easier to test and to change alone; the router only
//! decides, and calls them.

use std::sync::Arc;
use std::time::Duration;

use mcp_chat::errors::{ERROR_META_KEY, ErrorCode};
use mcp_chat::events::{ChatEvent, NOTIFICATION_METHODS};
use mcp_chat::pane;
use mcp_chat::protocol::{EVENTS_CAPABILITY, supported_protocol_versions};
use mcp_chat::tools;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::chat_view::{ChatView, INBOX_URI, inbox_resource};
use crate::internal_id::InternalId;
use crate::pending::PendingCalls;
use crate::settings::Settings;
use crate::stdio::HostInput;
use crate::upstream::{self, LastSeq, Upstream, UpstreamEvent};

/// How often timers (progress, waits for the connection, call deadlines) are checked.
pub const TICK: Duration = Duration::from_millis(200);

/// The connection as the bridge sees it.
enum Link {
    /// Not tried yet (the host has not initialized).
    Idle,
    /// Trying; `cause` is the last failure, if any.
    Down { cause: Option<String> },
    /// Connected; `server` is the relay's initialize result.
    Up { server: Value },
}

/// The router's state; see the module docs.
pub struct Router {
    settings: Arc<Settings>,
    identity: String,
    to_host: mpsc::Sender<Value>,
    to_relay: Option<mpsc::Sender<Value>>,
    /// The relay connection the host's `initialize` asked for, until the loop starts it.
    start: Option<(Upstream, mpsc::Receiver<Value>)>,
    link: Link,
    ever_connected: bool,
    pending: PendingCalls,
    /// The tools list last served to the host, if it came from the contract.
    served_fallback_tools: bool,
    /// The host announced the MCP Apps extension: it gets the chat pane's tools and view.
    host_renders_ui: bool,
    /// The relay's last `tools/list` result (served while disconnected).
    relay_tools: Option<Value>,
    /// Host's minimum log level rank (debug 0 ... emergency 7).
    host_log_rank: u8,
    host_log_level_set: Option<Value>,
    chat: ChatView,
    /// Shared with the relay connection, which sends it when it opens a session.
    last_seq: LastSeq,
    internal_counter: u64,
}

/// A request id MCP allows: a string or an integer that fits 64 bits.
fn is_valid_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

fn response(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

/// A failed tool call result, in the contract's error shape (machine-readable part in `_meta`).
fn tool_error(message: &str) -> Value {
    json!({
        "content": [{ "type": "text", "text": message }],
        "isError": true,
        "_meta": { ERROR_META_KEY: { "error": { "code": "unavailable", "message": message } } },
    })
}

/// The tool result for a call the relay refused without reading it (its HTTP answer carried no
/// request id: a body too large for it, or one it could not parse). Nothing of it took effect.
fn refused_unread(refusal: &str) -> Value {
    let (code, text) = if refusal.to_ascii_lowercase().contains("too large") {
        (
            ErrorCode::MessageTooLong,
            format!(
                "The text is too long: the relay refused the call unread ({refusal}), so \
                 nothing was sent. Shorten it and send it again."
            ),
        )
    } else {
        (
            ErrorCode::InvalidArgument,
            format!("The relay refused the call unread ({refusal}), so nothing was sent."),
        )
    };
    json!({
        "content": [{ "type": "text", "text": text }],
        "isError": true,
        "_meta": { ERROR_META_KEY: { "error": { "code": code.as_str(), "message": text } } },
    })
}

fn log_rank(level: &str) -> u8 {
    match level {
        "debug" => 0,
        "info" => 1,
        "notice" => 2,
        "warning" => 3,
        "error" => 4,
        "critical" => 5,
        "alert" => 6,
        "emergency" => 7,
        _ => 1,
    }
}

impl Router {
    /// A router that writes host-bound messages to `to_host`. `last_seq` is kept at the `seq`
    /// of the newest chat event received, for the connection to resume from.
    pub fn new(settings: Arc<Settings>, identity: String, to_host: mpsc::Sender<Value>) -> Self {
        let last_seq = LastSeq::default();
        Self {
            pending: PendingCalls::new(settings.chat_call_deadline),
            settings,
            identity,
            to_host,
            to_relay: None,
            start: None,
            link: Link::Idle,
            ever_connected: false,
            served_fallback_tools: false,
            host_renders_ui: false,
            relay_tools: None,
            host_log_rank: 1,
            host_log_level_set: None,
            chat: ChatView::new(last_seq.clone()),
            last_seq,
            internal_counter: 0,
        }
    }

    /// The relay connection the host's `initialize` asked for, once: what it needs, and the
    /// queue of messages for it. The caller runs it ([`upstream::run`]) and feeds its reports
    /// to [`Router::on_upstream`].
    pub fn take_start(&mut self) -> Option<(Upstream, mpsc::Receiver<Value>)> {
        self.start.take()
    }

    async fn send_host(&self, message: Value) {
        let _ = self.to_host.send(message).await;
    }

    /// Sends a logging notification to the host, if its level allows.
    async fn log_to_host(&self, level: &str, text: String) {
        if log_rank(level) < self.host_log_rank {
            return;
        }
        self.send_host(json!({
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": { "level": level, "logger": "mcp-chat-bridge", "data": { "text": text } },
        }))
        .await;
    }

    /// Queues a message for the relay without waiting: the relay connection may itself be
    /// waiting for this loop, so a full queue fails the request instead of blocking.
    async fn send_relay(&mut self, message: Value) {
        let Some(tx) = &self.to_relay else { return };
        if tx.try_send(message.clone()).is_err()
            && message.get("method").is_some()
            && let Some(id) = message.get("id")
            && let Some(pending) = self.pending.finish(id)
        {
            let cause = "the bridge's queue to the relay is full";
            self.answer_lost(id, &pending.method, cause).await;
        }
    }

    /// Handles one thing the host sent.
    pub async fn on_host(&mut self, input: HostInput) {
        let message = match input {
            HostInput::Unreadable { code, message } => {
                self.send_host(error(&Value::Null, code, &message)).await;
                return;
            }
            HostInput::Message(message) => message,
        };
        let Some(object) = message.as_object() else {
            let why = if message.is_array() {
                "Invalid Request: JSON-RPC batches are not supported"
            } else {
                "Invalid Request: expected a JSON-RPC object"
            };
            self.send_host(error(&Value::Null, -32600, why)).await;
            return;
        };
        let method = object
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let id = object.get("id").cloned();
        if method.is_some()
            && let Some(id) = &id
            && !is_valid_id(id)
        {
            // An id the bridge cannot echo exactly (a fraction, a number beyond 64 bits, which
            // would come back re-encoded as a float) could not be matched by the host anyway.
            self.send_host(error(
                &Value::Null,
                -32600,
                "Invalid Request: the id must be a string or an integer",
            ))
            .await;
            return;
        }
        match (method, id) {
            (Some(method), Some(id)) => self.on_host_request(&method, id, message).await,
            (Some(method), None) => self.on_host_notification(&method, message).await,
            (None, Some(_)) if object.contains_key("result") || object.contains_key("error") => {
                // The host answering a request of the relay (sampling, roots, elicitation).
                self.send_relay(message).await;
            }
            (None, id) => {
                let id = id.unwrap_or(Value::Null);
                self.send_host(error(&id, -32600, "Invalid Request: no method"))
                    .await;
            }
        }
    }

    async fn on_host_request(&mut self, method: &str, id: Value, mut message: Value) {
        if self.pending.in_flight(&id) {
            // Every request gets exactly one answer: the first keeps its id, this one is
            // refused now (rmcp would otherwise route the relay's answers by id to one of them).
            let why = format!(
                "Invalid Request: a request with id {id} is already in flight; give each \
                 request in flight its own id"
            );
            self.send_host(error(&id, -32600, &why)).await;
            return;
        }
        match method {
            "initialize" => {
                let params = message.get("params").cloned().unwrap_or(Value::Null);
                self.initialize(id, params).await;
            }
            "ping" => self.send_host(response(&id, json!({}))).await,
            "logging/setLevel" => {
                let level = message["params"]["level"]
                    .as_str()
                    .unwrap_or("info")
                    .to_owned();
                self.host_log_rank = log_rank(&level);
                self.host_log_level_set = Some(json!(level));
                self.send_host(response(&id, json!({}))).await;
                if matches!(self.link, Link::Up { .. }) {
                    self.send_set_level().await;
                }
            }
            "tools/list" => match &self.link {
                Link::Up { .. } => self.forward(id, message).await,
                _ if !self.ever_connected && self.to_relay.is_some() => {
                    self.pending.wait_for_list(id, self.settings.list_wait);
                }
                _ => self.answer_tools_list_offline(id).await,
            },
            "tools/call" => {
                let tool = message["params"]["name"].as_str().unwrap_or_default();
                if [
                    tools::LEAVE_CHAT,
                    tools::NEXT_CHAT,
                    tools::ENTER_QUEUE,
                    tools::JOIN_ROOM,
                ]
                .contains(&tool)
                {
                    self.chat.forget_room(); // the host moves on by itself
                }
                self.add_default_display_name(&mut message);
                self.forward_or_hold(id, message).await;
            }
            "resources/list" if !self.relay_has("resources") => {
                let mut resources = vec![inbox_resource()];
                if self.host_renders_ui {
                    resources.push(json!(pane::chat_view_resource()));
                }
                self.send_host(response(&id, json!({ "resources": resources })))
                    .await;
            }
            // The view is embedded, so the pane opens even before the relay is reached.
            "resources/read" if message["params"]["uri"] == pane::CHAT_VIEW_URI => {
                self.send_host(response(&id, json!(pane::chat_view_contents())))
                    .await;
            }
            "resources/templates/list" if !self.relay_has("resources") => {
                self.send_host(response(&id, json!({ "resourceTemplates": [] })))
                    .await;
            }
            "resources/read" if message["params"]["uri"] == INBOX_URI => {
                let contents = self.chat.inbox_contents();
                self.send_host(response(&id, contents)).await;
            }
            "resources/subscribe" | "resources/unsubscribe"
                if message["params"]["uri"] == INBOX_URI =>
            {
                self.chat.subscribed = method == "resources/subscribe";
                self.send_host(response(&id, json!({}))).await;
            }
            "prompts/list" if !self.relay_has("prompts") => {
                self.send_host(response(&id, json!({ "prompts": [] })))
                    .await;
            }
            // Not advertised (neither here nor, while it is unknown or down, by the relay):
            // -32601 at once rather than after a wait for the relay.
            "completion/complete" if !self.relay_has("completions") => {
                let text = "Method not found: completion/complete (mcp-chat offers no completions)";
                self.send_host(error(&id, -32601, text)).await;
            }
            _ => self.forward_or_hold(id, message).await,
        }
    }

    async fn on_host_notification(&mut self, method: &str, message: Value) {
        match method {
            "notifications/initialized" => {}
            "notifications/cancelled" => {
                let target = message["params"]["requestId"].clone();
                if self.pending.cancel_held(&target) {
                    return; // never reached the relay: nothing to cancel there
                }
                if self.pending.finish(&target).is_some() {
                    self.send_relay(message).await;
                }
            }
            _ => {
                if matches!(self.link, Link::Up { .. }) {
                    self.send_relay(message).await;
                }
            }
        }
    }

    /// Answers the host's `initialize` at once and starts connecting to the relay.
    async fn initialize(&mut self, id: Value, params: Value) {
        let host_renders_ui = pane::announces_ui(&params["capabilities"]);
        let asked = params["protocolVersion"].as_str().unwrap_or("");
        let versions = supported_protocol_versions();
        let version = versions
            .iter()
            .find(|v| v.as_str() == asked)
            .or(versions.last())
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let result = json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": { "listChanged": true },
                "logging": {},
                "resources": { "subscribe": true, "listChanged": false },
                "prompts": { "listChanged": false },
                "experimental": { "claude/channel": {} },
            },
            "serverInfo": {
                "name": "mcp-chat-bridge",
                "title": "mcp-chat",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "instructions": pane::instructions_for(host_renders_ui),
        });
        self.send_host(response(&id, result)).await;
        if self.to_relay.is_some() {
            return; // a second initialize: the connection is already there
        }
        // The host's capabilities, the extension included, go to the relay as they are, so
        // the relay lists the pane's tools to exactly the hosts the bridge lists them to.
        self.host_renders_ui = host_renders_ui;
        let mut client_info = params
            .get("clientInfo")
            .cloned()
            .unwrap_or_else(|| json!({ "name": "unknown", "version": "0" }));
        if let Some(name) = client_info.get("name").and_then(Value::as_str) {
            client_info["name"] = json!(format!("{name} (via mcp-chat-bridge)"));
        }
        let mut capabilities = params
            .get("capabilities")
            .filter(|c| c.is_object())
            .cloned()
            .unwrap_or_else(|| json!({}));
        // The bridge writes the logging line of every chat event for its host itself (see
        // `on_relay_notification`), so the relay need not send each event twice.
        if !capabilities["experimental"].is_object() {
            capabilities["experimental"] = json!({});
        }
        capabilities["experimental"][EVENTS_CAPABILITY] = json!({});
        let init_params = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "clientInfo": client_info,
        });
        let (tx, rx) = mpsc::channel(256);
        self.to_relay = Some(tx);
        self.link = Link::Down { cause: None };
        let upstream = Upstream {
            settings: self.settings.clone(),
            identity: self.identity.clone(),
            last_seq: self.last_seq.clone(),
            init_params,
        };
        self.start = Some((upstream, rx));
    }

    fn relay_has(&self, capability: &str) -> bool {
        match &self.link {
            Link::Up { server } => server["capabilities"].get(capability).is_some(),
            _ => false,
        }
    }

    /// For `enter_queue` and `join_room` without a display name, adds the configured one.
    fn add_default_display_name(&self, message: &mut Value) {
        let Some(name) = &self.settings.display_name else {
            return;
        };
        let tool = message["params"]["name"].as_str().unwrap_or("");
        if tool != tools::ENTER_QUEUE && tool != tools::JOIN_ROOM {
            return;
        }
        let params = &mut message["params"];
        if !params["arguments"].is_object() {
            params["arguments"] = json!({});
        }
        if params["arguments"].get("display_name").is_none() {
            params["arguments"]["display_name"] = json!(name);
        }
    }

    async fn forward_or_hold(&mut self, id: Value, message: Value) {
        if matches!(self.link, Link::Up { .. }) {
            self.forward(id, message).await;
        } else if self.to_relay.is_none() {
            self.send_host(error(&id, -32002, "Not initialized: send initialize first"))
                .await;
        } else {
            self.pending.hold(message, self.settings.connect_wait);
        }
    }

    /// Sends a host request to the relay and remembers it until answered.
    async fn forward(&mut self, id: Value, message: Value) {
        self.pending.start(&id, &message);
        self.send_relay(message).await;
    }

    async fn answer_tools_list_offline(&mut self, id: Value) {
        let result = match &self.relay_tools {
            Some(tools) => tools.clone(),
            None => {
                self.served_fallback_tools = true;
                contract_tools(self.host_renders_ui)
            }
        };
        self.send_host(response(&id, result)).await;
    }

    async fn send_set_level(&mut self) {
        if let Some(level) = self.host_log_level_set.clone() {
            self.internal_counter += 1;
            let id = InternalId::SetLevel(self.internal_counter).to_value();
            self.send_relay(json!({
                "jsonrpc": "2.0", "id": id, "method": "logging/setLevel", "params": { "level": level },
            }))
            .await;
        }
    }

    /// Handles one report of the relay connection.
    pub async fn on_upstream(&mut self, event: UpstreamEvent) {
        match event {
            UpstreamEvent::Connected { server, restored } => {
                let first = !self.ever_connected;
                self.ever_connected = true;
                self.link = Link::Up { server };
                if restored {
                    self.log_to_host(
                        "info",
                        format!(
                            "mcp-chat: connection to the relay {} restored",
                            self.settings.relay_url
                        ),
                    )
                    .await;
                    if self.chat.room().is_some() {
                        // A relay that restarted without its store kept nothing of the chat,
                        // and nobody is left to say so: ask.
                        self.internal_counter += 1;
                        let id = InternalId::Status(self.internal_counter).to_value();
                        self.send_relay(json!({
                            "jsonrpc": "2.0", "id": id, "method": "tools/call",
                            "params": { "name": tools::CHAT_STATUS, "arguments": {} },
                        }))
                        .await;
                    }
                }
                self.send_set_level().await;
                if first || self.served_fallback_tools {
                    // Learn the relay's tool list: to serve it later while disconnected, and to
                    // tell the host if what it got from the contract was different.
                    self.internal_counter += 1;
                    let id = InternalId::Tools(self.internal_counter).to_value();
                    self.send_relay(json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list" }))
                        .await;
                }
                for id in self.pending.take_list_waiters() {
                    self.forward(
                        id.clone(),
                        json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list" }),
                    )
                    .await;
                }
                for held in self.pending.take_held() {
                    let id = held.message["id"].clone();
                    self.forward(id, held.message).await;
                }
            }
            UpstreamEvent::Lost {
                cause,
                transport_gone,
            } => {
                let was_up = matches!(self.link, Link::Up { .. });
                self.link = Link::Down {
                    cause: Some(cause.clone()),
                };
                if was_up {
                    self.log_to_host(
                        "warning",
                        format!(
                            "mcp-chat: lost the connection to the relay {} ({cause}); reconnecting",
                            self.settings.relay_url
                        ),
                    )
                    .await;
                }
                if transport_gone {
                    // Calls in flight on a torn-down connection will never be answered. (When
                    // only a ping failed, the transport lives on and answers them itself.)
                    for (id, pending) in self.pending.take_all() {
                        self.answer_lost(&id, &pending.method, &cause).await;
                    }
                }
            }
            UpstreamEvent::SendFailed { id, cause } => {
                if let Some(id) = id
                    && let Some(pending) = self.pending.finish(&id)
                {
                    self.answer_lost(&id, &pending.method, &cause).await;
                }
            }
            UpstreamEvent::Message(message) => self.on_relay_message(message).await,
        }
    }

    async fn answer_lost(&self, id: &Value, method: &str, cause: &str) {
        let text = format!(
            "The mcp-chat relay at {} could not be reached ({cause}). Try again in a moment: \
             incoming chat events are kept for wait_for_message, but a message you were sending \
             may or may not have arrived (get_messages shows). Details are in the bridge's log: \
             {}",
            self.settings.relay_url,
            self.settings.paths.log_file().display()
        );
        if method == "tools/call" {
            self.send_host(response(id, tool_error(&text))).await;
        } else {
            self.send_host(error(id, -32000, &text)).await;
        }
    }

    async fn on_relay_message(&mut self, mut message: Value) {
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let id = message.get("id").cloned();
        match (method, id) {
            // A request from the relay to the host (sampling, roots, elicitation, ping).
            (Some(_), Some(_)) => self.send_host(message).await,
            (None, Some(id)) => {
                if InternalId::is_internal(&id) {
                    match InternalId::parse(&id) {
                        Some(InternalId::Tools(_)) => {
                            self.on_relay_tools(message.get("result").cloned()).await;
                        }
                        Some(InternalId::Status(_)) => {
                            self.on_relay_status(&message["result"]).await;
                        }
                        _ => {}
                    }
                    return;
                }
                let Some(pending) = self.pending.finish(&id) else {
                    return; // cancelled by the host, or already answered as lost
                };
                if let Some(cause) = transport_closed(&message) {
                    // rmcp's client gave up on the call's stream (cut before it could resume):
                    // the relay may or may not have acted on it. Say so, like any lost call.
                    self.answer_lost(&id, &pending.method, &cause).await;
                    return;
                }
                if pending.method == "tools/call"
                    && message["error"]["data"][upstream::REFUSED_UNREAD] == true
                {
                    let refusal = message["error"]["message"].as_str().unwrap_or_default();
                    self.send_host(response(&id, refused_unread(refusal))).await;
                    return;
                }
                if pending.method == "tools/list"
                    && let Some(result) = message.get("result")
                {
                    self.relay_tools = Some(result.clone());
                    self.served_fallback_tools = false;
                }
                if pending.method == "resources/list"
                    && let Some(list) = message["result"]["resources"].as_array_mut()
                {
                    list.push(inbox_resource());
                }
                self.send_host(message).await;
            }
            (Some(method), None) => self.on_relay_notification(&method, message).await,
            (None, None) => {}
        }
    }

    /// The relay's `chat_status` after a reconnect: if the room the host was in is gone, the
    /// host hears that the chat ended (no `partner.disconnected` will come: the relay that
    /// could send it kept nothing).
    async fn on_relay_status(&mut self, result: &Value) {
        if !self.chat.room_gone(result) {
            return;
        }
        self.log_to_host(
            "warning",
            format!(
                "mcp-chat: the chat ended: the relay {} no longer has your room (it restarted \
                 without keeping its chats), so your partner is gone and nobody will say so. \
                 Call enter_queue or join_room to chat again.",
                self.settings.relay_url
            ),
        )
        .await;
    }

    async fn on_relay_tools(&mut self, result: Option<Value>) {
        let Some(result) = result else { return };
        let differs = self.served_fallback_tools
            && result["tools"] != contract_tools(self.host_renders_ui)["tools"];
        self.relay_tools = Some(result);
        if differs {
            self.served_fallback_tools = false;
            self.send_host(
                json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" }),
            )
            .await;
        }
    }

    async fn on_relay_notification(&mut self, method: &str, message: Value) {
        match method {
            "notifications/progress" => {
                // Progress for a call that already finished is dropped: hosts drop servers that
                // send it.
                if self
                    .pending
                    .relay_reports_progress(&message["params"]["progressToken"])
                {
                    self.send_host(message).await;
                }
            }
            "notifications/message" => {
                let level = message["params"]["level"].as_str().unwrap_or("info");
                if log_rank(level) < self.host_log_rank || !self.chat.log_line_is_new(&message) {
                    return;
                }
                self.send_host(message).await;
            }
            m if NOTIFICATION_METHODS.contains(&m) => {
                let Ok(event) = serde_json::from_value::<ChatEvent>(message["params"].clone())
                else {
                    self.send_host(message).await;
                    return;
                };
                let log_lines = log_rank("info") >= self.host_log_rank;
                for frame in self.chat.on_event(message, event, log_lines) {
                    self.send_host(frame).await;
                }
            }
            _ => self.send_host(message).await,
        }
    }

    /// Gives up on a chat tool call the relay did not answer by its deadline: the host gets a
    /// tool error (its call would otherwise never end), the relay a cancellation (which also
    /// makes rmcp stop trying to resume the call's response stream), the log a line.
    async fn expire(&mut self, id: Value, tool: &str, waited: Duration) {
        tracing::warn!(
            %id,
            tool,
            waited_ms = waited.as_millis() as u64,
            "the relay did not answer a chat tool call in time; answered the host with an \
             error and cancelled the call"
        );
        let check = match tool {
            tools::SEND_MESSAGE => {
                "The message may or may not have been sent: check with get_messages before \
                 resending."
            }
            tools::WAIT_FOR_MESSAGE => {
                "Events it returned may not have reached you: call wait_for_message again with \
                 after_seq set to the seq of the newest event you have seen."
            }
            tools::GET_MESSAGES | tools::CHAT_STATUS => "It changes nothing: just try again.",
            _ => "chat_status shows where you stand.",
        };
        let text = format!(
            "The mcp-chat relay at {} did not answer {tool} in time ({} s), so the call may or \
             may not have taken effect. {check} Details are in the bridge's log: {}",
            self.settings.relay_url,
            waited.as_secs(),
            self.settings.paths.log_file().display()
        );
        self.send_host(response(&id, tool_error(&text))).await;
        self.send_relay(json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": { "requestId": id, "reason": "the bridge stopped waiting for the answer" },
        }))
        .await;
    }

    /// Checks timers: held calls and list waits past their bound, chat tool calls past their
    /// deadline, progress for long calls.
    pub async fn on_tick(&mut self) {
        let now = tokio::time::Instant::now();
        for overdue in self.pending.overdue(now) {
            self.expire(overdue.id, overdue.tool, overdue.waited).await;
        }
        for held in self.pending.expired_held(now) {
            let id = held.message["id"].clone();
            let method = held.message["method"].as_str().unwrap_or("").to_owned();
            let cause = match &self.link {
                Link::Down { cause: Some(cause) } => cause.clone(),
                _ => format!("no connection within {:?}", self.settings.connect_wait),
            };
            self.answer_lost(&id, &method, &cause).await;
        }
        for id in self.pending.expired_list_waiters(now) {
            self.answer_tools_list_offline(id).await;
        }
        for tick in self.pending.progress(now, self.settings.progress_interval) {
            self.send_host(tick).await;
        }
    }
}

/// The contract's tool list as a `tools/list` result, with the chat pane's tools for a host
/// that renders MCP Apps (`ui`).
pub fn contract_tools(ui: bool) -> Value {
    json!({ "tools": pane::tools_for(ui) })
}

/// The cause when `message` is rmcp's client saying a call's response stream closed before its
/// answer (an error carrying the `io.modelcontextprotocol/transportClosed` marker).
fn transport_closed(message: &Value) -> Option<String> {
    let error = message.get("error")?;
    error
        .get("data")?
        .get("io.modelcontextprotocol/transportClosed")?;
    Some(
        error["message"]
            .as_str()
            .unwrap_or("the response stream closed")
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    //! The router alone, in process, on tokio's paused time: the relay connection is played by
    //! the test (its reports fed to `on_upstream`, its queue read), so deadlines of 20 s are
    //! checked without waiting for them.

    use std::path::PathBuf;

    use tokio::time::advance;

    use super::*;
    use crate::settings::{DEFAULT_CALL_DEADLINE, Paths};

    fn settings() -> Settings {
        let dir = PathBuf::from("/nonexistent/mcp-chat-router-test");
        let paths = Paths {
            config_dir: dir.clone(),
            log_dir: dir,
        };
        Settings::defaults(&["http://127.0.0.1:9/mcp"], paths)
    }

    /// A router whose host has initialized and whose relay connection is up; the host's and
    /// the relay's queues.
    async fn connected() -> (Router, mpsc::Receiver<Value>, mpsc::Receiver<Value>) {
        let (to_host, mut host) = mpsc::channel(1024);
        let mut router = Router::new(Arc::new(settings()), "identity".to_owned(), to_host);
        let init = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": { "name": "test", "version": "1" } },
        });
        router.on_host(HostInput::Message(init)).await;
        let (_, mut relay) = router
            .take_start()
            .expect("initialize starts the connection");
        let server = json!({ "capabilities": { "tools": {} } });
        router
            .on_upstream(UpstreamEvent::Connected {
                server,
                restored: false,
            })
            .await;
        drain(&mut host);
        drain(&mut relay);
        (router, host, relay)
    }

    fn drain(queue: &mut mpsc::Receiver<Value>) -> Vec<Value> {
        let mut all = Vec::new();
        while let Ok(message) = queue.try_recv() {
            all.push(message);
        }
        all
    }

    fn send_message(id: u64) -> HostInput {
        HostInput::Message(json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": { "name": "send_message", "arguments": { "text": "hi" } },
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_chat_call_never_answered_gets_a_tool_error_at_the_default_deadline_and_is_cancelled()
    {
        let (mut router, mut host, mut relay) = connected().await;
        router.on_host(send_message(5)).await;
        assert_eq!(drain(&mut relay)[0]["id"], 5, "forwarded");

        advance(DEFAULT_CALL_DEADLINE - Duration::from_millis(100)).await;
        router.on_tick().await;
        assert!(drain(&mut host).is_empty(), "not before the deadline");

        advance(Duration::from_millis(200)).await;
        router.on_tick().await;
        let answers = drain(&mut host);
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert_eq!(answers[0]["id"], 5);
        assert_eq!(answers[0]["result"]["isError"], true);
        let text = answers[0]["result"]["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains("did not answer send_message in time (20 s)"),
            "{text}"
        );
        let cancelled = drain(&mut relay);
        assert_eq!(cancelled[0]["method"], "notifications/cancelled");
        assert_eq!(cancelled[0]["params"]["requestId"], 5);

        // The relay's late answer is dropped: one answer per request.
        let late = json!({ "jsonrpc": "2.0", "id": 5, "result": { "isError": false } });
        router.on_upstream(UpstreamEvent::Message(late)).await;
        advance(Duration::from_secs(60)).await;
        router.on_tick().await;
        assert!(drain(&mut host).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_request_with_an_id_in_flight_is_refused_at_once() {
        let (mut router, mut host, mut relay) = connected().await;
        router.on_host(send_message(7)).await;
        router.on_host(send_message(7)).await;
        assert_eq!(
            drain(&mut relay).len(),
            1,
            "only the first reaches the relay"
        );
        let refused = drain(&mut host);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0]["id"], 7);
        assert_eq!(refused[0]["error"]["code"], -32600);
        let answer = json!({ "jsonrpc": "2.0", "id": 7, "result": { "isError": false } });
        router.on_upstream(UpstreamEvent::Message(answer)).await;
        assert_eq!(drain(&mut host)[0]["result"]["isError"], false);
        // Answered: the id is free again.
        router.on_host(send_message(7)).await;
        assert_eq!(drain(&mut relay).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_refused_unread_as_too_large_says_the_text_is_too_long_and_nothing_was_sent() {
        let (mut router, mut host, _relay) = connected().await;
        router.on_host(send_message(9)).await;
        let refusal = json!({
            "jsonrpc": "2.0", "id": 9,
            "error": { "code": -32600,
                       "message": "Payload Too Large: request bodies are limited to 65536 bytes",
                       "data": { upstream::REFUSED_UNREAD: true, "relay": null } },
        });
        router.on_upstream(UpstreamEvent::Message(refusal)).await;
        let answer = &drain(&mut host)[0];
        assert_eq!(answer["id"], 9);
        assert_eq!(answer["result"]["isError"], true);
        let code = &answer["result"]["_meta"][ERROR_META_KEY]["error"]["code"];
        assert_eq!(code, "message_too_long");
        let text = answer["result"]["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains("too long") && text.contains("nothing was sent"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_reconnect_the_host_hears_when_the_relay_no_longer_has_its_chat() {
        let (mut router, mut host, mut relay) = connected().await;
        let found = json!({
            "jsonrpc": "2.0", "method": "chatroom.found",
            "params": { "seq": 1, "timestamp_ms": 1, "room_id": "r1", "type": "chatroom.found",
                        "room_kind": "random", "members": ["Bob"] },
        });
        router.on_upstream(UpstreamEvent::Message(found)).await;
        drain(&mut host);
        let lost = UpstreamEvent::Lost {
            cause: "cannot reach the relay: connection refused".to_owned(),
            transport_gone: true,
        };
        router.on_upstream(lost).await;
        let server = json!({ "capabilities": { "tools": {} } });
        let restored = UpstreamEvent::Connected {
            server,
            restored: true,
        };
        router.on_upstream(restored).await;
        let logs: Vec<String> = drain(&mut host)
            .iter()
            .filter_map(|m| m["params"]["data"]["text"].as_str().map(str::to_owned))
            .collect();
        assert!(logs[0].contains("lost the connection"), "{logs:?}");
        assert!(logs[1].contains("restored"), "{logs:?}");
        let status = drain(&mut relay)
            .into_iter()
            .find(|m| m["params"]["name"] == tools::CHAT_STATUS)
            .expect("asks the relay for chat_status");
        assert!(matches!(
            InternalId::parse(&status["id"]),
            Some(InternalId::Status(_))
        ));
        let idle = json!({
            "jsonrpc": "2.0", "id": status["id"],
            "result": { "isError": false, "structuredContent": { "state": "idle" } },
        });
        router.on_upstream(UpstreamEvent::Message(idle)).await;
        let told = drain(&mut host);
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!(told[0]["params"]["level"], "warning");
        let text = told[0]["params"]["data"]["text"].as_str().unwrap();
        assert!(text.contains("the chat ended"), "{text}");
    }
}
