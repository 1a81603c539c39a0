//! The MCP endpoint, `/mcp`: Streamable HTTP (MCP 2025-11-25 and earlier), owned by the relay.
//!
//! # Why the relay has its own session layer
//! rmcp's Streamable HTTP server runs each session as a worker task with several channels of
//! large message enums and a replay cache of whole notifications, next to our own inbox, which
//! already is an ordered, replayable event log. Measured on a 2-core box (BENCHMARKS.md, one run
//! of each on 2026-12-04): an idle participant cost the relay 81 KiB with rmcp's layer (a lean
//! implementation of its `SessionManager` was measured at 35 KiB), 275 KiB after 60 messages
//! each way, and 131–145 µs of relay CPU per delivered message. So the relay keeps rmcp's *model*
//! types (messages, params, results) and does the HTTP part itself. With this layer: 18.7 KiB
//! per idle participant (mostly hyper's two 8 KiB buffers of the GET connection), 63 KiB after 60
//! messages (the stored chat), 49–60 µs per message and 14,000–16,000 delivered msg/s with p99
//! ≤ 5 ms at 1,000 pairs (a plain axum/hyper SSE server that stores nothing: 19–24 µs). How:
//!
//! - a session is one small entry in [`SessionRegistry`](crate::sessions::SessionRegistry): no
//!   task and no channel of its own;
//! - the standalone GET stream reads the participant's inbox (`push`): SSE event ids are inbox
//!   positions, so `Last-Event-ID` resumes from the inbox, exactly once, however long the
//!   client was away (within the inbox's capacity);
//! - a tool call runs as a task while it runs and answers on its POST's SSE stream, which starts
//!   with a priming event (SEP-1699). The answer stays in the session for a little while, so
//!   that a client whose stream was cut gets it with a GET carrying the priming event's id;
//! - everything else (initialize, lists, ping, logging level) is answered as plain JSON.
//!
//! Bad input gets a JSON-RPC error and breaks nothing else: a body is read within
//! [`RelayConfig::body_timeout`](crate::RelayConfig::body_timeout) and [`RelayConfig::max_body_bytes`](crate::RelayConfig::max_body_bytes)
//! (refused before `100 Continue` when its `Content-Length` says it is too large), params that do
//! not fit their method get -32602, a second request with the id of one still running gets
//! -32600, batches are refused.

#![allow(deprecated)] // MCP logging is deprecated by SEP-2577 but is what Claude Desktop shows.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use mcp_chat::protocol::{IDENTITY_HEADER, LAST_SEQ_HEADER, supported_protocol_versions};
use rmcp::model::{
    CallToolRequestParams, CancelledNotificationParam, ErrorCode, ErrorData,
    InitializeRequestParams, JsonRpcError, JsonRpcResponse, JsonRpcVersion2_0, ProtocolVersion,
    ReadResourceRequestParams, RequestId, ServerResult, SetLevelRequestParams,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::address::ClientAddress;
use crate::handler::{CallContext, ChatHandler};
use crate::metrics::Rejection;
use crate::node::Node;
use crate::push;
use crate::sessions::{CallRefusal, ResumedAnswer, SessionId};
use crate::sse;

/// The session header of Streamable HTTP.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The protocol version header clients send after `initialize`.
const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";
/// The `_meta` key of a 2026-07-28 request's protocol version (sessionless requests).
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// `POST /mcp`: one JSON-RPC message.
pub async fn post(State(node): State<Arc<Node>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let address = parts.extensions.get::<ClientAddress>().and_then(|a| a.0);
    if !is_json(&headers) {
        node.metrics.reject(Rejection::Malformed);
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            -32600,
            "Unsupported Media Type: send the JSON-RPC message as Content-Type: application/json",
        );
    }
    let (json_ok, sse_ok) = accepts(&headers);
    if !json_ok && !sse_ok {
        node.metrics.reject(Rejection::Malformed);
        return http_error(
            StatusCode::NOT_ACCEPTABLE,
            -32600,
            "Not Acceptable: accept application/json and text/event-stream",
        );
    }
    let bytes = match read_body(&node, &headers, body).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let message = match parse_message(&bytes) {
        Ok(message) => message,
        Err((code, why)) => {
            node.metrics.reject(Rejection::Malformed);
            return http_error(StatusCode::BAD_REQUEST, code, &why);
        }
    };
    let handler = ChatHandler::new(node.clone());
    let session = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(SessionId::from);
    let Some(session) = session else {
        return sessionless(&node, &handler, message);
    };
    if !node.sessions.has_session(&session) {
        return unknown_session();
    }
    if let Some(response) = check_protocol_header(&headers) {
        return response;
    }
    match message {
        Message::Notification { method, params } => {
            match method.as_str() {
                "notifications/initialized" => handler.on_initialized(&session, &headers),
                "notifications/cancelled" => {
                    if let Ok(cancelled) = parse_params::<CancelledNotificationParam>(params)
                        && let Some(id) = cancelled.request_id
                    {
                        node.sessions.cancel_tool_call(&session, &id);
                    }
                }
                _ => {}
            }
            StatusCode::ACCEPTED.into_response()
        }
        // We send no requests; answers to none are accepted and dropped.
        Message::Answer => StatusCode::ACCEPTED.into_response(),
        Message::Request { id, method, params } => {
            let Some(_busy) = node.sessions.begin_call(&session) else {
                return unknown_session();
            };
            let context = RequestScope {
                session,
                headers,
                address,
                sse: sse_ok,
            };
            answer_request(&node, handler, context, id, &method, params).await
        }
    }
}

/// What a request needs to know about where it came from.
struct RequestScope {
    session: SessionId,
    headers: HeaderMap,
    address: Option<IpAddr>,
    /// The client accepts an SSE answer.
    sse: bool,
}

/// Answers a request of a known session.
async fn answer_request(
    node: &Arc<Node>,
    handler: ChatHandler,
    scope: RequestScope,
    id: RequestId,
    method: &str,
    params: Option<Value>,
) -> Response {
    let session = &scope.session;
    let answer: Result<ServerResult, ErrorData> = match method {
        "ping" => Ok(ServerResult::empty(())),
        "tools/call" => return tool_call(node, handler, scope, id, params),
        "tools/list" => Ok(handler.list_tools(node.sessions.renders_ui(session)).into()),
        "resources/list" => Ok(handler
            .list_resources(node.sessions.renders_ui(session))
            .into()),
        "resources/templates/list" => Ok(handler.list_resource_templates().into()),
        "resources/read" => parse_params::<ReadResourceRequestParams>(params)
            .and_then(|p| handler.read_resource(&p))
            .map(Into::into),
        "logging/setLevel" => parse_params::<SetLevelRequestParams>(params)
            .and_then(|p| handler.set_level(session, &p))
            .map(|()| ServerResult::empty(())),
        "initialize" => Err(ErrorData::invalid_request(
            "this session is initialized already; send initialize without Mcp-Session-Id to \
             open another",
            None,
        )),
        _ => Err(method_not_found(method)),
    };
    json_answer(StatusCode::OK, &id, answer, None)
}

/// A request without a session: `initialize` opens one; nothing else is served without.
fn sessionless(node: &Arc<Node>, handler: &ChatHandler, message: Message) -> Response {
    let Message::Request { id, method, params } = message else {
        return http_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "Bad Request: no Mcp-Session-Id; send initialize first to open a session",
        );
    };
    if method == "initialize" {
        let params = match parse_params::<InitializeRequestParams>(params) {
            Ok(params) => params,
            Err(error) => return json_answer(StatusCode::OK, &id, Err(error), None),
        };
        let (session, result) = handler.initialize(&params);
        tracing::debug!(client = %params.client_info.name, "session opened");
        return json_answer(StatusCode::OK, &id, Ok(result.into()), Some(&session));
    }
    // A 2026-07-28 client probes with `server/discover` or a request carrying its version in
    // `_meta`: say which versions we speak, so that it falls back to `initialize`.
    let meta_version = params
        .as_ref()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION));
    if method == "server/discover" || meta_version.is_some() {
        let requested = meta_version
            .and_then(|v| serde_json::from_value::<ProtocolVersion>(v.clone()).ok())
            .unwrap_or(ProtocolVersion::LATEST);
        let error =
            ErrorData::unsupported_protocol_version(requested, supported_protocol_versions());
        return json_answer(StatusCode::BAD_REQUEST, &id, Err(error), None);
    }
    node.metrics.reject(Rejection::Malformed);
    json_answer(
        StatusCode::BAD_REQUEST,
        &id,
        Err(ErrorData::invalid_request(
            "Bad Request: no Mcp-Session-Id; send initialize first to open a session",
            None,
        )),
        None,
    )
}

/// Runs a tool call as a task of its own and answers on an SSE stream (or, for a client that
/// accepts only JSON, as JSON once it is done).
fn tool_call(
    node: &Arc<Node>,
    handler: ChatHandler,
    scope: RequestScope,
    id: RequestId,
    params: Option<Value>,
) -> Response {
    let params = match parse_params::<CallToolRequestParams>(params) {
        Ok(params) => params,
        Err(error) => return json_answer(StatusCode::OK, &id, Err(error), None),
    };
    let cancel = CancellationToken::new();
    let stream = match node
        .sessions
        .begin_tool_call(&scope.session, &id, cancel.clone())
    {
        Ok(stream) => stream,
        Err(CallRefusal::UnknownSession) => return unknown_session(),
        Err(CallRefusal::DuplicateId) => {
            node.metrics.reject(Rejection::Malformed);
            let error = ErrorData::invalid_request(
                format!(
                    "a request with id {id} is still running in this session; give each \
                     request its own id"
                ),
                None,
            );
            return json_answer(StatusCode::OK, &id, Err(error), None);
        }
    };
    let closes_early = handler.closes_stream_early(&params.name);
    let (answered, answer) = oneshot::channel::<Bytes>();
    let task = {
        let node = node.clone();
        let session = scope.session.clone();
        let id = id.clone();
        async move {
            let busy = node.sessions.begin_call(&session);
            let context = CallContext {
                session: session.clone(),
                headers: scope.headers,
                address: scope.address,
                cancel,
            };
            let result = handler.call_tool(params, &context).await.map(Into::into);
            let message = answer_bytes(&id, result);
            // Kept a while whether or not the stream is still there: a write into a connection
            // the client already dropped succeeds, so only the client knows what it got.
            node.sessions
                .end_tool_call(&session, stream, message.clone());
            let _ = answered.send(message);
            drop(busy);
        }
    };
    // Most calls (a send, a status) finish without waiting: run them here first, and give the
    // runtime a task only for one that waits (a `wait_for_message`, a store round trip to
    // Redis). A spawned task is polled again at once, with a real waker.
    let mut task = Box::pin(task);
    let mut first = std::task::Context::from_waker(std::task::Waker::noop());
    if task.as_mut().poll(&mut first).is_pending() {
        tokio::spawn(task);
    }
    if !scope.sse {
        // The POST waits for the answer (kept for a resume all the same).
        return AsyncJson(answer).into_response();
    }
    let body = CallStream {
        stream,
        priming: Some(sse::priming(&format!("{stream}/0"))),
        answer: Some(answer),
        closes_early,
    };
    sse_response(futures::stream::unfold(body, CallStream::next))
}

/// A tool call's answer, delivered as JSON when the client accepts no SSE.
struct AsyncJson(oneshot::Receiver<Bytes>);

impl IntoResponse for AsyncJson {
    fn into_response(self) -> Response {
        let stream =
            futures::stream::once(
                async move { Ok::<_, Infallible>(self.0.await.unwrap_or_default()) },
            );
        let mut response = Response::new(Body::from_stream(stream));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// The SSE stream of one tool call: a priming event, then the answer. (If it is cut, the
/// answer waits in the session for a resume: see `SessionRegistry::end_tool_call`.)
struct CallStream {
    stream: u32,
    priming: Option<Bytes>,
    answer: Option<oneshot::Receiver<Bytes>>,
    /// Close after the priming event and leave the answer for a resume (the conformance
    /// suite's `test_reconnection`).
    closes_early: bool,
}

impl CallStream {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if let Some(priming) = self.priming.take() {
            return Some((Ok(priming), self));
        }
        if self.closes_early {
            return None;
        }
        let message = self.answer.take()?.await.ok()?;
        Some((Ok(answer_frame(self.stream, &message)), self))
    }
}

/// `GET /mcp`: the session's standalone stream of events, or the resume of a tool call's stream
/// (`Last-Event-ID: <stream>/<n>`).
pub async fn get(State(node): State<Arc<Node>>, request: Request) -> Response {
    let headers = request.headers();
    if !accepts(headers).1 {
        node.metrics.reject(Rejection::Malformed);
        return http_error(
            StatusCode::NOT_ACCEPTABLE,
            -32600,
            "Not Acceptable: the event stream needs Accept: text/event-stream",
        );
    }
    let Some(session) = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(SessionId::from)
    else {
        node.metrics.reject(Rejection::Malformed);
        return http_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "Bad Request: the event stream needs the Mcp-Session-Id from initialize",
        );
    };
    if !node.sessions.has_session(&session) {
        return unknown_session();
    }
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if let Some(stream) = last_event_id.and_then(|id| id.split_once('/')) {
        let Ok(stream) = stream.0.parse::<u32>() else {
            return http_error(
                StatusCode::BAD_REQUEST,
                -32600,
                "Bad Request: Last-Event-ID names no stream of this session",
            );
        };
        return sse_response(resumed_answer(node, session, stream));
    }
    let claimed_by_header = headers.get(IDENTITY_HEADER).and(
        headers
            .get(LAST_SEQ_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok()),
    );
    let claimed_by_stream = last_event_id.and_then(|id| id.parse::<u64>().ok());
    // Both say what the client has; repeats are harmless (clients drop them by seq), losses
    // are not.
    let claim = match (claimed_by_header, claimed_by_stream) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let Some((generation, open)) = node.sessions.open_stream(&session) else {
        return unknown_session();
    };
    sse_response(push::event_stream(
        node.clone(),
        session,
        generation,
        open,
        claim,
    ))
}

/// The stream a client resumes after its tool call's stream was cut: the answer once there.
fn resumed_answer(
    node: Arc<Node>,
    session: SessionId,
    stream: u32,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures::stream::unfold(Some(node), move |node| {
        let session = session.clone();
        async move {
            let node = node?;
            let wake = node.sessions.wake_signal(&session)?;
            loop {
                let notified = wake.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                match node.sessions.resume_answer(&session, stream) {
                    ResumedAnswer::Ready(message) => {
                        return Some((Ok(answer_frame(stream, &message)), None));
                    }
                    ResumedAnswer::Gone => return None,
                    ResumedAnswer::Running => {}
                }
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep(push::KEEP_ALIVE) => {
                        return Some((Ok(sse::keep_alive()), Some(node)));
                    }
                }
            }
        }
    })
}

/// `DELETE /mcp`: the client ends its session (and its participant).
pub async fn delete(State(node): State<Arc<Node>>, request: Request) -> Response {
    let Some(session) = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        node.metrics.reject(Rejection::Malformed);
        return http_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "Bad Request: DELETE needs the Mcp-Session-Id of the session to end",
        );
    };
    if !node.sessions.has_session(session) {
        return unknown_session();
    }
    node.end_session(session, true).await;
    StatusCode::NO_CONTENT.into_response()
}

/// Any other method on `/mcp`.
pub async fn method_not_allowed() -> Response {
    let mut response = http_error(
        StatusCode::METHOD_NOT_ALLOWED,
        -32600,
        "Method Not Allowed: /mcp takes POST, GET and DELETE",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
    response
}

/// One JSON-RPC message from a client, as far as routing needs it.
enum Message {
    Request {
        id: RequestId,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A response or error (we send no requests, so it answers nothing).
    Answer,
}

#[derive(Deserialize)]
struct Envelope {
    jsonrpc: Option<String>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    method: Option<String>,
    params: Option<Value>,
    result: Option<Value>,
    error: Option<Value>,
}

/// Keeps `"id": null` apart from no id at all.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Reads one JSON-RPC message; `Err((code, why))` for a body that is not one. One pass over the
/// bytes: serde's error category tells a syntax error (-32700) from JSON of the wrong shape
/// (-32600).
fn parse_message(bytes: &[u8]) -> Result<Message, (i32, String)> {
    let invalid = |why: &str| (-32600, format!("Invalid Request: {why}"));
    let not_json = |e: serde_json::Error| {
        (
            -32700,
            format!("Parse error: the body is not valid JSON ({e})"),
        )
    };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(not_json)?;
        return Err(invalid(
            "batches are not supported: send one JSON-RPC message per POST",
        ));
    }
    // JSON is UTF-8 (RFC 8259); serde skips the bytes of fields it ignores without checking.
    let text = std::str::from_utf8(bytes).map_err(|e| {
        (
            -32700,
            format!("Parse error: the body is not valid JSON: not UTF-8 ({e})"),
        )
    })?;
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            invalid(&format!("not a JSON-RPC 2.0 request or notification ({e})"))
        }
        _ => not_json(e),
    })?;
    if envelope.jsonrpc.as_deref() != Some("2.0") {
        return Err(invalid("`jsonrpc` must be \"2.0\""));
    }
    let id = match envelope.id {
        None => None,
        Some(id) => Some(
            serde_json::from_value::<RequestId>(id)
                .map_err(|_| invalid("`id` must be a string or an integer"))?,
        ),
    };
    match (envelope.method, id) {
        (Some(method), Some(id)) => Ok(Message::Request {
            id,
            method,
            params: envelope.params,
        }),
        (Some(method), None) => Ok(Message::Notification {
            method,
            params: envelope.params,
        }),
        (None, Some(_)) if envelope.result.is_some() || envelope.error.is_some() => {
            Ok(Message::Answer)
        }
        _ => Err(invalid(
            "a message needs a `method`, or an `id` with `result` or `error`",
        )),
    }
}

/// Decodes a method's params; a mismatch is -32602 (invalid params).
fn parse_params<T: DeserializeOwned>(params: Option<Value>) -> Result<T, ErrorData> {
    serde_json::from_value(params.unwrap_or_else(|| Value::Object(Default::default())))
        .map_err(|e| ErrorData::invalid_params(format!("invalid params: {e}"), None))
}

fn method_not_found(method: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::METHOD_NOT_FOUND,
        format!("method not found: {method}"),
        None,
    )
}

/// Reads a request body within the size limit and the body timeout.
async fn read_body(node: &Node, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let max = node.config.max_body_bytes;
    let too_large = || {
        node.metrics.reject(Rejection::BodyTooLarge);
        let mut response = http_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            -32600,
            &format!("Payload Too Large: request bodies are limited to {max} bytes"),
        );
        // The rest of the body is never read, so the connection cannot carry another request:
        // say so, or a pooling client reuses it and its next request fails.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    };
    // Refused on its stated length, before hyper would send `100 Continue` for it.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let deadline = node.config.body_timeout;
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, max)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => {
            node.metrics.reject(Rejection::Malformed);
            let mut response = http_error(
                StatusCode::REQUEST_TIMEOUT,
                -32600,
                &format!(
                    "Request Timeout: the body did not arrive within {} ms",
                    deadline.as_millis()
                ),
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(response)
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether the client accepts (JSON, SSE) answers. No Accept header accepts both.
fn accepts(headers: &HeaderMap) -> (bool, bool) {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return (true, true);
    };
    let mut json = false;
    let mut sse = false;
    for item in accept.split(',') {
        let kind = item
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match kind.as_str() {
            "*/*" => (json, sse) = (true, true),
            "application/*" | "application/json" => json = true,
            "text/*" | "text/event-stream" => sse = true,
            _ => {}
        }
    }
    (json, sse)
}

/// A known session's request must name a protocol version we speak, if it names one.
fn check_protocol_header(headers: &HeaderMap) -> Option<Response> {
    let value = headers.get(PROTOCOL_VERSION_HEADER)?;
    let known = value.to_str().ok().is_some_and(|v| {
        supported_protocol_versions()
            .iter()
            .any(|p| p.as_str() == v.trim())
    });
    if known {
        return None;
    }
    Some(http_error(
        StatusCode::BAD_REQUEST,
        -32600,
        "Bad Request: unsupported MCP-Protocol-Version (this relay speaks 2024-11-05 to \
         2025-11-25)",
    ))
}

fn unknown_session() -> Response {
    http_error(
        StatusCode::NOT_FOUND,
        -32001,
        "Not Found: no such session (it ended or the relay restarted); send initialize to \
         open a new one",
    )
}

/// The bytes of a JSON-RPC answer (result or error) for `id`.
fn answer_bytes(id: &RequestId, answer: Result<ServerResult, ErrorData>) -> Bytes {
    let bytes = match answer {
        Ok(mut result) => {
            // Our peers speak revisions before 2026-07-28, which have no `resultType`.
            result.strip_result_type_for_legacy_peer();
            serde_json::to_vec(&JsonRpcResponse {
                jsonrpc: JsonRpcVersion2_0,
                id: id.clone(),
                result,
            })
        }
        Err(error) => serde_json::to_vec(&JsonRpcError {
            jsonrpc: JsonRpcVersion2_0,
            id: Some(id.clone()),
            error,
        }),
    };
    Bytes::from(bytes.unwrap_or_default())
}

/// The SSE event carrying a tool call's answer (id `<stream>/1`).
fn answer_frame(stream: u32, message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(message.len() + 24);
    out.extend_from_slice(format!("id: {stream}/1\ndata: ").as_bytes());
    out.extend_from_slice(message);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A JSON answer, with the new session's id after `initialize`.
fn json_answer(
    status: StatusCode,
    id: &RequestId,
    answer: Result<ServerResult, ErrorData>,
    session: Option<&str>,
) -> Response {
    let mut response = (status, answer_bytes(id, answer)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(session) = session
        && let Ok(value) = HeaderValue::from_str(session)
    {
        headers.insert(SESSION_HEADER, value);
    }
    response
}

fn sse_response(
    stream: impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
) -> Response {
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A JSON-RPC error with no id (the request could not be read far enough to have one).
pub fn http_error(status: StatusCode, code: i32, message: &str) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message },
    });
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_one_utf8_json_rpc_message() {
        let parse = |body: &[u8]| parse_message(body).map(|_| ()).map_err(|(code, _)| code);
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(())
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(())
        );
        assert_eq!(parse(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#), Ok(()));
        // Invalid UTF-8 inside a key serde would ignore (found by the fuzzer).
        assert_eq!(
            parse(b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\",\"x\":{\"\x85k\":1}}"),
            Err(-32700)
        );
        assert_eq!(parse(b"{\"jsonrpc\":"), Err(-32700));
        assert_eq!(
            parse(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            Err(-32600)
        );
        assert_eq!(parse(br#"[1,"#), Err(-32700));
        assert_eq!(
            parse(br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#),
            Err(-32600)
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#),
            Err(-32600)
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#),
            Err(-32600)
        );
        assert_eq!(parse(br#"{"jsonrpc":"2.0","id":1}"#), Err(-32600));
        assert_eq!(parse(b"5"), Err(-32600));
    }
}
