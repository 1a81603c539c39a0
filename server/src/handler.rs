//! What the relay answers: session start, tool calls, lists, the chat view, logging level.
//!
//! `mcp` routes each JSON-RPC message here. Every call resolves its participant through the
//! session registry, so the caller never passes an id: the session is who you are.

#![allow(deprecated)] // MCP logging is deprecated by SEP-2577 but is what Claude Desktop shows.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use mcp_chat::errors::ERROR_META_KEY;
use mcp_chat::limits::{self, MAX_EVENTS_PER_WAIT};
use mcp_chat::pane::{self, PaneSync, PaneSyncParams};
use mcp_chat::protocol::{EVENTS_CAPABILITY, IDENTITY_HEADER, supported_protocol_versions};
use mcp_chat::tools::{self, ChatStatus, LabelUntrusted, WaitForMessageOutput};
use mcp_chat::{ErrorCode, ToolError, render};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock, ErrorData as McpError, Implementation,
    InitializeRequestParams, InitializeResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, LoggingLevel, MetaObject, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResult, ServerCapabilities, SetLevelRequestParams,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::address::address_key;
use crate::metrics::Rejection;
use crate::moderation::{self, Access, ReportFiling};
use crate::node::Node;
use crate::sessions::{LogRank, SessionId};
use crate::store::ParticipantKey;

/// The conformance suite's tool that checks SEP-1699 resumption (served with
/// `RelayConfig::conformance_tools` only): its stream closes after the priming event and the
/// answer comes on the client's GET with `Last-Event-ID`.
pub const TEST_RECONNECTION: &str = "test_reconnection";

/// Where a tool call comes from.
pub struct CallContext {
    /// The caller's session.
    pub session: SessionId,
    /// The request's headers (identity token).
    pub headers: HeaderMap,
    /// The client's address (bans by address).
    pub address: Option<IpAddr>,
    /// Cancelled when the host cancels the call or the session ends.
    pub cancel: CancellationToken,
}

/// The relay's MCP server.
#[derive(Clone)]
pub struct ChatHandler {
    node: Arc<Node>,
}

impl ChatHandler {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// The session's participant: the one bound at `notifications/initialized`, or (for a
    /// client that skipped that notification) the one its headers name. Makes the session the
    /// participant's current one (the one its events are pushed to).
    fn participant(&self, session: &SessionId, headers: &HeaderMap) -> ParticipantKey {
        let who = self
            .node
            .sessions
            .participant_of(session)
            .unwrap_or_else(|| participant_key(session, headers));
        self.node.sessions.attach(session, &who);
        who
    }

    /// Runs a chat tool. `name` is one of [`tools::TOOL_NAMES`].
    async fn dispatch(
        &self,
        name: &str,
        args: serde_json::Value,
        who: &ParticipantKey,
        ctx: &CallContext,
    ) -> Result<CallToolResult, ToolError> {
        let store = &self.node.store;
        match name {
            tools::ENTER_QUEUE => {
                let p: tools::EnterQueueParams = parse(args)?;
                let name = limits::sanitize_display_name(p.display_name.as_deref());
                let topic = limits::sanitize_topic(p.topic.as_deref());
                Ok(status_result(&store.enter_queue(who, name, topic).await?))
            }
            tools::JOIN_ROOM => {
                let p: tools::JoinRoomParams = parse(args)?;
                let room = limits::validate_room_id(&p.room_id)
                    .map_err(|e| ToolError::new(ErrorCode::InvalidArgument, format!("{e}.")))?;
                let name = limits::sanitize_display_name(p.display_name.as_deref());
                Ok(status_result(&store.join_room(who, name, room).await?))
            }
            tools::SEND_MESSAGE => {
                let p: tools::SendMessageParams = parse(args)?;
                self.check_text(&p.text)?;
                let out = store.send_message(who, p.text).await?;
                Ok(structured(&out, render::send_text(&out)))
            }
            tools::WAIT_FOR_MESSAGE => {
                let p: tools::WaitForMessageParams = parse(args)?;
                if let Some(seq) = p.after_seq {
                    store.set_read_cursor(who, seq).await?;
                }
                self.wait_for_message(who, tools::wait_duration(p.timeout_secs), ctx)
                    .await
            }
            tools::GET_MESSAGES => {
                let p: tools::GetMessagesParams = parse(args)?;
                let limit = p
                    .limit
                    .unwrap_or(limits::DEFAULT_TRANSCRIPT_PAGE)
                    .clamp(1, limits::MAX_TRANSCRIPT_PAGE);
                let out = store.transcript(who, p.since_seq, limit as usize).await?;
                Ok(structured(&out, render::transcript_text(&out)))
            }
            tools::LEAVE_CHAT => {
                let p: tools::LeaveChatParams = parse(args)?;
                let out = store.leave(who, p.block.unwrap_or(false)).await?;
                Ok(structured(&out, render::leave_text(&out)))
            }
            tools::NEXT_CHAT => {
                let _: tools::NoParams = parse(args)?;
                Ok(status_result(&store.next_chat(who).await?))
            }
            tools::REPORT => {
                let p: tools::ReportParams = parse(args)?;
                let filing = ReportFiling {
                    id: moderation::new_report_id(),
                    reason: p.reason,
                    note: limits::sanitize_note(p.note.as_deref()),
                    member: p
                        .member
                        .map(|m| m.trim().to_owned())
                        .filter(|m| !m.is_empty()),
                };
                let report = store.report(who, filing).await?;
                tracing::info!(report = %report.id, reason = %report.reason, "report filed");
                // Leaving with a block is exactly what leave_chat {block: true} does, so the
                // reported participant sees nothing else.
                let output = if p.leave.unwrap_or(true) {
                    let left = store.leave(who, true).await?;
                    tools::ReportOutput {
                        reported: true,
                        left: left.left,
                        room_id: left.room_id,
                        blocked: left.blocked,
                        status: left.status,
                    }
                } else {
                    tools::ReportOutput {
                        reported: true,
                        left: tools::LeftPlace::Nothing,
                        room_id: None,
                        blocked: 0,
                        status: store.status(who).await?,
                    }
                };
                Ok(structured(&output, render::report_text(&output)))
            }
            pane::OPEN_CHAT => {
                let _: tools::NoParams = parse(args)?;
                Ok(structured(
                    &store.status(who).await?,
                    pane::OPEN_CHAT_TEXT.to_owned(),
                ))
            }
            pane::PANE_SYNC => {
                let p: PaneSyncParams = parse(args)?;
                self.pane_sync(who, p, ctx).await
            }
            pane::PANE_SEND => {
                let p: tools::SendMessageParams = parse(args)?;
                self.check_text(&p.text)?;
                let out = store.send_message(who, p.text).await?;
                Ok(structured(&out, render::send_text(&out)))
            }
            _ => {
                let _: tools::NoParams = parse(args)?;
                Ok(status_result(&store.status(who).await?))
            }
        }
    }

    fn check_text(&self, text: &str) -> Result<(), ToolError> {
        let max = self.node.config.max_message_bytes;
        if text.trim().is_empty() {
            return Err(ToolError::new(
                ErrorCode::EmptyMessage,
                "The message is empty. Write some text to send.",
            ));
        }
        if text.len() > max {
            self.node.metrics.reject(Rejection::MessageTooLong);
            return Err(ToolError::new(
                ErrorCode::MessageTooLong,
                format!(
                    "The message has {} bytes; this relay accepts at most {max}. Shorten it or \
                     split it into several messages.",
                    text.len()
                ),
            ));
        }
        if self.node.config.blocked_words.matches(text) {
            return Err(moderation::message_refused());
        }
        Ok(())
    }

    /// Returns unread events at once, or waits for the next one until `timeout`, the host's
    /// cancellation, or relay shutdown.
    async fn wait_for_message(
        &self,
        who: &ParticipantKey,
        timeout: std::time::Duration,
        ctx: &CallContext,
    ) -> Result<CallToolResult, ToolError> {
        let store = &self.node.store;
        // Subscribe before reading, so an event landing between the read and the wait still
        // wakes us.
        let mut changes = store.watch(who);
        changes.borrow_and_update();
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        loop {
            if !self.node.sessions.is_current(&ctx.session, who) {
                // Another session of this participant took over (a reconnect): this call's
                // answer would likely go nowhere, so it must not consume events.
                let status = store.status(who).await?;
                let output = WaitForMessageOutput {
                    events: Vec::new(),
                    timed_out: true,
                    missed_events: 0,
                    more: status.unread > 0,
                    status,
                };
                return Ok(structured(&output, render::wait_text(&output)));
            }
            let batch = store.read_unread(who, MAX_EVENTS_PER_WAIT).await?;
            if !batch.events.is_empty() || batch.missed > 0 || timed_out {
                if ctx.cancel.is_cancelled()
                    && let Some(first) = batch.events.first()
                {
                    // The host gave up on this call: its answer would be lost, so the events go
                    // back to unread for the next wait.
                    store.set_read_cursor(who, first.seq - 1).await?;
                }
                let status = store.status(who).await?;
                let output = WaitForMessageOutput {
                    timed_out: batch.events.is_empty() && timed_out,
                    events: batch.events,
                    missed_events: batch.missed,
                    more: batch.more,
                    status,
                };
                return Ok(structured(&output, render::wait_text(&output)));
            }
            tokio::select! {
                _ = ctx.cancel.cancelled() => timed_out = true,
                _ = self.node.shutdown.cancelled() => timed_out = true,
                changed = tokio::time::timeout_at(deadline, changes.changed()) => match changed {
                    Ok(Ok(())) => {}
                    // The participant ended (its watch closed) or the time is up: answer with
                    // whatever is there.
                    Ok(Err(_)) | Err(_) => timed_out = true,
                },
            }
        }
    }
}

impl ChatHandler {
    /// The chat pane's long poll: what is new after the view's cursors, at once, or after
    /// holding the call until an event arrives, `wait_secs` pass, the host cancels or the relay
    /// shuts down. Events it returns count as read: the person saw them in the pane.
    async fn pane_sync(
        &self,
        who: &ParticipantKey,
        params: PaneSyncParams,
        ctx: &CallContext,
    ) -> Result<CallToolResult, ToolError> {
        let store = &self.node.store;
        // Subscribe before reading, so an event landing between the read and the wait still
        // wakes the call.
        let mut changes = store.watch(who);
        changes.borrow_and_update();
        let deadline = Instant::now() + pane::pane_wait(params.wait_secs);
        loop {
            let sync = self.pane_snapshot(who, &params).await?;
            let held_long_enough = Instant::now() >= deadline
                || ctx.cancel.is_cancelled()
                || self.node.shutdown.is_cancelled();
            if !sync.is_empty() || held_long_enough {
                if let Some(last) = sync.events.last() {
                    store.mark_read_through(who, last.seq).await?;
                }
                let text = format!(
                    "{} new events, {} messages.",
                    sync.events.len(),
                    sync.messages.len()
                );
                return Ok(structured(&sync, text));
            }
            tokio::select! {
                _ = ctx.cancel.cancelled() => {}
                _ = self.node.shutdown.cancelled() => {}
                changed = tokio::time::timeout_at(deadline, changes.changed()) => {
                    if let Ok(Err(_)) = changed {
                        // The participant ended: nothing more will arrive.
                        let sync = self.pane_snapshot(who, &params).await?;
                        return Ok(structured(&sync, "The chat ended.".to_owned()));
                    }
                }
            }
        }
    }

    /// What the pane has not seen yet: inbox events after `after_seq` (on the first call, the
    /// newest ones still in the inbox) and the current room's messages after
    /// `since_message_seq`.
    async fn pane_snapshot(
        &self,
        who: &ParticipantKey,
        params: &PaneSyncParams,
    ) -> Result<PaneSync, ToolError> {
        let store = &self.node.store;
        let status = store.status(who).await?;
        let (events, more) = match params.after_seq {
            Some(after) => {
                let mut events = store
                    .events_after(who, after, pane::MAX_PANE_ITEMS + 1)
                    .await?;
                let more = events.len() > pane::MAX_PANE_ITEMS;
                events.truncate(pane::MAX_PANE_ITEMS);
                (events, more)
            }
            None => {
                let mut events = store
                    .events_after(who, 0, self.node.config.inbox_capacity)
                    .await?;
                let older = events.len().saturating_sub(pane::MAX_PANE_ITEMS);
                events.drain(..older);
                (events, false)
            }
        };
        let cursor = events
            .last()
            .map(|e| e.seq)
            .or(params.after_seq)
            .unwrap_or(0);
        let (room_id, messages) = match &status.room_id {
            Some(room) => {
                let page = store
                    .transcript(who, params.since_message_seq, pane::MAX_PANE_ITEMS)
                    .await?;
                (Some(room.clone()), page.messages)
            }
            None => (None, Vec::new()),
        };
        Ok(PaneSync {
            status,
            events,
            more,
            cursor,
            room_id,
            messages,
        })
    }
}

impl ChatHandler {
    /// Opens a session for `request` and answers it: the newest protocol version both speak,
    /// our capabilities, and instructions (hosts that render the chat pane are told to offer it).
    pub fn initialize(&self, request: &InitializeRequestParams) -> (SessionId, InitializeResult) {
        let renders_ui = pane::client_renders_ui(&request.capabilities);
        // A client that renders the custom notifications itself needs no logging mirror.
        let renders_events = request
            .capabilities
            .experimental
            .as_ref()
            .is_some_and(|experimental| experimental.contains_key(EVENTS_CAPABILITY));
        let session = self.node.sessions.create(renders_ui, !renders_events);
        let supported = supported_protocol_versions();
        let version = if supported.contains(&request.protocol_version) {
            request.protocol_version.clone()
        } else {
            supported
                .last()
                .cloned()
                .unwrap_or(ProtocolVersion::V_2025_11_25)
        };
        let mut result = InitializeResult::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .enable_resources()
                .build(),
        )
        .with_server_info(
            Implementation::new("mcp-chat-relay", env!("CARGO_PKG_VERSION"))
                .with_title("mcp-chat relay"),
        )
        .with_instructions(pane::instructions_for(renders_ui));
        result.protocol_version = version;
        (session, result)
    }

    /// `notifications/initialized`: binds the session to the participant its headers name.
    pub fn on_initialized(&self, session: &SessionId, headers: &HeaderMap) {
        let who = participant_key(session, headers);
        self.node.sessions.attach(session, &who);
    }

    /// `logging/setLevel`.
    pub fn set_level(
        &self,
        session: &SessionId,
        request: &SetLevelRequestParams,
    ) -> Result<(), McpError> {
        if !self
            .node
            .sessions
            .set_log_rank(session, log_rank(request.level))
        {
            return Err(no_session());
        }
        Ok(())
    }

    /// `tools/list`: the chat tools, and the pane's for hosts that render it.
    pub fn list_tools(&self, renders_ui: bool) -> ListToolsResult {
        ListToolsResult::with_all_items(pane::tools_for(renders_ui))
    }

    /// `resources/list`: the chat view, for hosts that render it.
    pub fn list_resources(&self, renders_ui: bool) -> ListResourcesResult {
        let resources = if renders_ui {
            vec![pane::chat_view_resource()]
        } else {
            Vec::new()
        };
        ListResourcesResult::with_all_items(resources)
    }

    /// `resources/templates/list`: none.
    pub fn list_resource_templates(&self) -> ListResourceTemplatesResult {
        ListResourceTemplatesResult::with_all_items(Vec::new())
    }

    /// `resources/read`: the chat view.
    pub fn read_resource(
        &self,
        request: &ReadResourceRequestParams,
    ) -> Result<ReadResourceResult, McpError> {
        if request.uri != pane::CHAT_VIEW_URI {
            return Err(McpError::resource_not_found(
                format!(
                    "no resource {:?}; this relay serves {}",
                    request.uri,
                    pane::CHAT_VIEW_URI
                ),
                None,
            ));
        }
        Ok(pane::chat_view_contents())
    }

    /// Whether the tool's SSE stream closes before its answer (see [`TEST_RECONNECTION`]).
    pub fn closes_stream_early(&self, name: &str) -> bool {
        name == TEST_RECONNECTION && self.node.config.conformance_tools
    }

    /// `tools/call`. Unknown tools are -32602; everything a model can act on (refusals, rate
    /// limits, bad arguments) is a tool result with `isError`.
    pub async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: &CallContext,
    ) -> Result<CallToolResult, McpError> {
        let name = request.name.as_ref();
        if self.closes_stream_early(name) {
            // Long enough for the client to see its stream close first.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            return Ok(CallToolResult::success(vec![ContentBlock::text(
                "Answered after the stream closed.",
            )]));
        }
        let known = tools::TOOL_NAMES.contains(&name)
            || (pane::PANE_TOOL_NAMES.contains(&name)
                && self.node.sessions.renders_ui(&ctx.session));
        if !known {
            return Err(McpError::invalid_params(
                format!(
                    "unknown tool {:?}; call tools/list for the chat tools",
                    request.name
                ),
                None,
            ));
        }
        let who = self.participant(&ctx.session, &ctx.headers);
        let changes_state = matches!(
            name,
            tools::ENTER_QUEUE | tools::JOIN_ROOM | tools::SEND_MESSAGE | tools::NEXT_CHAT
        );
        if changes_state && self.node.shutdown.is_cancelled() {
            let e = ToolError::new(
                ErrorCode::ShuttingDown,
                "The relay is shutting down. Try again in a moment.",
            );
            return Ok(error_result(&e));
        }
        // The pane's long poll is not a chat action: it answers once per event at most (or
        // after its hold), and the session's request budget in the HTTP guard still bounds a
        // client that calls it in a loop. Charging it to the chat rate would make a lively
        // pane wait for its own reads.
        let charged = name != pane::PANE_SYNC;
        if charged && let Err(wait) = self.node.limiter.check(&who) {
            self.node.metrics.reject(Rejection::RateLimited);
            let ms = wait.as_millis().max(1) as u64;
            let e = ToolError::new(
                ErrorCode::RateLimited,
                format!("Too many calls. Wait {ms} ms, then try again."),
            )
            .with_retry_after_ms(ms);
            return Ok(error_result(&e));
        }
        let address = ctx.address.map(|ip| address_key(ip).to_string());
        let access = self
            .node
            .store
            .access(&who, &moderation::pseudonym(&who), address.as_deref())
            .await;
        let refusal = match access {
            Err(e) => Some(e),
            Ok(Access::Banned { until_ms }) => Some(moderation::suspended(until_ms)),
            Ok(Access::MatchingPaused { until_ms })
                if matches!(name, tools::ENTER_QUEUE | tools::NEXT_CHAT) =>
            {
                Some(moderation::matching_paused(until_ms))
            }
            Ok(_) => None,
        };
        if let Some(e) = refusal {
            return Ok(error_result(&e));
        }
        let args = serde_json::Value::Object(request.arguments.clone().unwrap_or_default());
        Ok(self
            .dispatch(name, args, &who, ctx)
            .await
            .unwrap_or_else(|e| error_result(&e)))
    }
}

/// The participant a session speaks for: its identity token's hash when the client sent one,
/// else the session itself. (The HTTP layer already refused malformed tokens.)
fn participant_key(session: &SessionId, headers: &HeaderMap) -> ParticipantKey {
    headers
        .get(IDENTITY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(ParticipantKey::for_identity_token)
        .unwrap_or_else(|| ParticipantKey::for_session(session))
}

fn no_session() -> McpError {
    McpError::invalid_request(
        "this relay needs an MCP session: send initialize and use the Mcp-Session-Id it returns",
        None,
    )
}

/// Decodes tool arguments. A mistake is a tool error (not a protocol error) so that the model
/// reads it and can correct its call.
fn parse<T: DeserializeOwned>(args: serde_json::Value) -> Result<T, ToolError> {
    serde_json::from_value(args).map_err(|e| {
        ToolError::new(
            ErrorCode::InvalidArgument,
            format!("Invalid arguments: {e}."),
        )
    })
}

/// A successful call: the text rendering and the structured result, every stranger's words in
/// it labelled as such.
fn structured<T: Serialize + Clone + LabelUntrusted>(value: &T, text: String) -> CallToolResult {
    let mut labelled = value.clone();
    labelled.label_untrusted();
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = serde_json::to_value(&labelled).ok();
    result
}

fn status_result(status: &ChatStatus) -> CallToolResult {
    structured(status, render::status_text(status))
}

/// A failed call: the message for the model as text, the machine-readable error in `_meta`
/// (not `structuredContent`, which clients check against the success schema).
fn error_result(error: &ToolError) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(error.error.message.clone())]);
    if let Ok(value) = serde_json::to_value(error) {
        let mut meta = MetaObject::new();
        meta.0.insert(ERROR_META_KEY.to_owned(), value);
        result.meta = Some(meta);
    }
    result
}

/// Rank of an MCP logging level, debug (0) to emergency (7).
fn log_rank(level: LoggingLevel) -> LogRank {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}
