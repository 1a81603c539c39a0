//! HTTP to the relay: rmcp's Streamable HTTP transport over our own [`RelayClient`], the MCP
//! handshake, and keepalive pings that bypass rmcp.
//!
//! [`RelayClient`] wraps reqwest for two reasons. It adds `mcp-chat-last-seq` to what opens or
//! re-attaches a session, with the value of the moment. And it watches every exchange for what
//! it proves about the connection ([`Signal`]): rmcp retries a dead node's event stream
//! forever and says nothing, so without these signals a dead relay would be noticed only at
//! the next ping (30 s by default), and a restarted one never (rmcp would re-make the session
//! silently, on a relay that has forgotten the chat).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, ClientRequest, RequestId, ServerJsonRpcMessage,
};
use rmcp::transport::common::client_side_sse::{BoxedSseResponse, ExponentialBackoff};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse,
};
use rmcp::transport::{StreamableHttpClientTransport, Transport};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::LastSeq;
use super::error::{UpstreamError, error_chain};
use crate::internal_id::InternalId;
use crate::settings::Settings;

/// Longest the handshake may take.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest server-sent event accepted from the relay.
const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Longest delay between rmcp's own retries (of the event stream).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);
/// Longest the relay session's DELETE may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Most bytes read of the answer to a keepalive ping (a ping answer is a few hundred).
const KEEPALIVE_MAX_BYTES: usize = 64 * 1024;

/// The transport to the relay.
pub(super) type RelayTransport = StreamableHttpClientTransport<RelayClient>;

/// A relay session after its handshake.
pub(super) struct Session {
    /// rmcp's transport.
    pub transport: RelayTransport,
    /// Its HTTP client (for keepalive pings).
    pub client: RelayClient,
    /// The relay's `initialize` result.
    pub server: Value,
    /// What the client's exchanges prove.
    pub signals: mpsc::UnboundedReceiver<Signal>,
}

/// Closes a transport (DELETE for a live session), never waiting long: rmcp's worker can sit in
/// a request a hung relay never answers.
pub(super) async fn close(transport: &mut RelayTransport) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, transport.close()).await;
}

/// A new relay session, its handshake completed within [`HANDSHAKE_TIMEOUT`].
pub(super) async fn connect(
    settings: &Settings,
    url: &str,
    identity: &str,
    last_seq: &LastSeq,
    init_params: &Value,
) -> Result<Session, UpstreamError> {
    let (mut transport, client, signals) = build_transport(settings, url, identity, last_seq)?;
    let cause =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut transport, init_params)).await
        {
            Ok(Ok(server)) => {
                return Ok(Session {
                    transport,
                    client,
                    server,
                    signals,
                });
            }
            Ok(Err(cause)) => cause,
            Err(_) => UpstreamError::HandshakeTimeout(HANDSHAKE_TIMEOUT),
        };
    close(&mut transport).await;
    Err(cause)
}

/// `initialize` → result → `notifications/initialized`.
async fn handshake(
    transport: &mut RelayTransport,
    init_params: &Value,
) -> Result<Value, UpstreamError> {
    let id = InternalId::Init.to_value();
    let request: ClientJsonRpcMessage = serde_json::from_value(json!({
        "jsonrpc": "2.0", "id": id, "method": "initialize", "params": init_params,
    }))?;
    transport
        .send(request)
        .await
        .map_err(|e| UpstreamError::Unreachable(error_chain(&e)))?;
    loop {
        let Some(message) = transport.receive().await else {
            return Err(UpstreamError::ClosedDuringHandshake);
        };
        let value = serde_json::to_value(&message)?;
        if value.get("id") != Some(&id) {
            continue;
        }
        if let Some(error) = value.get("error") {
            return Err(UpstreamError::HandshakeRefused(error.to_string()));
        }
        let result = value.get("result").cloned().unwrap_or(Value::Null);
        let initialized: ClientJsonRpcMessage = serde_json::from_value(json!({
            "jsonrpc": "2.0", "method": "notifications/initialized",
        }))?;
        transport
            .send(initialized)
            .await
            .map_err(|e| UpstreamError::Unreachable(error_chain(&e)))?;
        return Ok(result);
    }
}

fn build_transport(
    settings: &Settings,
    url: &str,
    identity: &str,
    last_seq: &LastSeq,
) -> Result<(RelayTransport, RelayClient, mpsc::UnboundedReceiver<Signal>), UpstreamError> {
    let mut headers = HashMap::new();
    for (name, value) in &settings.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers.insert(
        http::HeaderName::from_static(mcp_chat::protocol::IDENTITY_HEADER),
        http::HeaderValue::from_str(&crate::identity::token_for(identity, &settings.relay_url))
            .map_err(|e| UpstreamError::Identity(e.to_string()))?,
    );
    // Chat messages are at most a few KiB; a relay may not make the bridge buffer 16 MiB events.
    let mut config = StreamableHttpClientTransportConfig::with_uri(url)
        .custom_headers(headers)
        .max_sse_event_size(MAX_EVENT_BYTES);
    if let Some(token) = &settings.access_token {
        config = config.auth_header(token.clone());
    }
    let mut retry = ExponentialBackoff::default();
    retry.max_times = None;
    retry.base_duration = Duration::from_millis(500);
    retry.max_delay = Some(MAX_RETRY_DELAY);
    config.retry_config = Arc::new(retry);
    // A session the relay no longer has means the chat it held may be gone: the connection
    // makes the new session itself, and tells the host (see `Signal::SessionGone`).
    config.reinit_on_expired_session = false;
    // reqwest is built without a TLS crypto provider of its own; use ring (a no-op when one is
    // already installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        // A redirect would replay the identity and extra headers to another host, and turn a
        // POST into a body-less GET: refuse them, the user fixes the URL instead.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("mcp-chat-bridge/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &settings.ca_bundle {
        let pem = std::fs::read(path).map_err(|source| UpstreamError::CaBundleUnreadable {
            path: path.clone(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
            UpstreamError::CaBundleInvalid {
                path: path.clone(),
                source,
            }
        })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    let client = builder.build().map_err(UpstreamError::HttpSetup)?;
    let (signals, signals_rx) = mpsc::unbounded_channel();
    let client = RelayClient {
        http: client,
        last_seq: last_seq.clone(),
        route: Arc::default(),
        signals,
    };
    let transport = StreamableHttpClientTransport::with_client(client.clone(), config);
    Ok((transport, client, signals_rx))
}

/// reqwest, adding `mcp-chat-last-seq` to the POSTs that open a session (`initialize` and
/// `notifications/initialized`, where the relay binds the session to the participant) with the
/// value of the moment each is sent. Fixed transport headers would not do: rmcp re-initializes an
/// expired session by itself (a restarted relay, or another node behind a load balancer) with the
/// headers the transport was built with, so the relay would get a stale resume point or none.
///
/// It also remembers how the current session is reached, for [`RelayClient::keepalive`].
#[derive(Clone)]
pub(super) struct RelayClient {
    http: reqwest::Client,
    last_seq: LastSeq,
    /// The last POST rmcp made on a session; shared by the clones (rmcp's and the loop's).
    route: Arc<std::sync::Mutex<Option<SessionRoute>>>,
    /// What the HTTP exchanges prove about the connection, for the connection task: rmcp keeps
    /// retrying a dead node's event stream by itself and would say nothing.
    signals: mpsc::UnboundedSender<Signal>,
}

/// What one HTTP exchange with the relay proved.
#[derive(Debug)]
pub(super) enum Signal {
    /// A connection to the relay was refused (or could not be made): nobody serves there now.
    Unreachable(String),
    /// The relay answered 404 for the session: it no longer has it (it restarted, or expired
    /// it). rmcp's own silent re-initialization is off; the connection makes a new session and
    /// says so.
    SessionGone,
}

/// Where and how rmcp reaches the relay session: URL, session id, token and headers.
#[derive(Clone)]
struct SessionRoute {
    uri: Arc<str>,
    session_id: Arc<str>,
    auth_header: Option<String>,
    headers: HashMap<HeaderName, HeaderValue>,
}

impl RelayClient {
    /// Remembers the session a POST goes to. Its headers are the transport's (identity, the
    /// user's extra headers) and `MCP-Protocol-Version`: rmcp adds per-message headers only from
    /// protocol 2026-07-28 on, newer than any the contract (and so the bridge) negotiates, so
    /// they are the headers of a ping as well.
    fn note_route(
        &self,
        uri: &Arc<str>,
        session_id: &Option<Arc<str>>,
        auth_header: &Option<String>,
        headers: &HashMap<HeaderName, HeaderValue>,
    ) {
        let Some(session_id) = session_id else { return };
        let route = SessionRoute {
            uri: uri.clone(),
            session_id: session_id.clone(),
            auth_header: auth_header.clone(),
            headers: headers.clone(),
        };
        if let Ok(mut slot) = self.route.lock() {
            *slot = Some(route);
        }
    }

    /// Sends the relay session a `ping` as a POST of its own, outside rmcp's transport, and
    /// reads the (small) answer. Any request keeps a session from going idle at the relay; this
    /// one gets there while rmcp's worker is stuck waiting for room toward the bridge, which
    /// would hold back a ping sent through it.
    pub(super) async fn keepalive(&self, id: InternalId) -> Result<(), UpstreamError> {
        let route = self.route.lock().ok().and_then(|slot| slot.clone());
        let Some(route) = route else {
            return Err(UpstreamError::NoSession);
        };
        let body = serde_json::to_vec(
            &json!({ "jsonrpc": "2.0", "id": id.to_value(), "method": "ping" }),
        )?;
        let mut request = self
            .http
            .post(route.uri.as_ref())
            .header(http::header::ACCEPT, "text/event-stream, application/json")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("mcp-session-id", route.session_id.as_ref())
            .body(body);
        if let Some(token) = &route.auth_header {
            request = request.bearer_auth(token);
        }
        for (name, value) in route.headers {
            request = request.header(name, value);
        }
        let unreachable = |e: reqwest::Error| UpstreamError::Unreachable(error_chain(&e));
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        // To its end, so that the connection goes back to the pool; never more than a bound.
        let mut read = 0;
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            read += chunk.len();
            if read > KEEPALIVE_MAX_BYTES {
                break;
            }
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(UpstreamError::Status(status))
        }
    }

    fn headers_for(
        &self,
        message: &ClientJsonRpcMessage,
        session_id: &Option<Arc<str>>,
        mut headers: HashMap<HeaderName, HeaderValue>,
    ) -> HashMap<HeaderName, HeaderValue> {
        let opens_session = match message {
            ClientJsonRpcMessage::Request(r) => {
                session_id.is_none() && matches!(r.request, ClientRequest::InitializeRequest(_))
            }
            ClientJsonRpcMessage::Notification(n) => {
                matches!(
                    n.notification,
                    ClientNotification::InitializedNotification(_)
                )
            }
            _ => false,
        };
        if opens_session {
            self.add_last_seq(&mut headers);
        }
        headers
    }

    /// Tells the connection what an exchange proved: a refused connection, or a session the
    /// relay no longer has (404 on a request that carried its id).
    fn observe<T>(&self, result: &Result<T, StreamableHttpError<reqwest::Error>>, attached: bool) {
        let signal = match result {
            Err(StreamableHttpError::Client(e)) if e.is_connect() => {
                Signal::Unreachable(error_chain(e))
            }
            Err(StreamableHttpError::SessionExpired) => Signal::SessionGone,
            Err(StreamableHttpError::Client(e))
                if attached && e.status() == Some(http::StatusCode::NOT_FOUND) =>
            {
                Signal::SessionGone
            }
            _ => return,
        };
        let _ = self.signals.send(signal);
    }

    /// Adds `mcp-chat-last-seq` with the newest event received so far. Before the first event
    /// there is nothing to resume from: the relay's own view stands.
    fn add_last_seq(&self, headers: &mut HashMap<HeaderName, HeaderValue>) {
        let seq = self.last_seq.load(Ordering::Relaxed);
        if seq > 0 {
            headers.insert(
                HeaderName::from_static(mcp_chat::protocol::LAST_SEQ_HEADER),
                HeaderValue::from(seq),
            );
        }
    }
}

impl StreamableHttpClient for RelayClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        // One path for every POST, with the bridge's own event bound.
        self.post_message_with_max_sse_event_size(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            MAX_EVENT_BYTES,
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.note_route(&uri, &session_id, &auth_header, &custom_headers);
        let headers = self.headers_for(&message, &session_id, custom_headers);
        let request_id = request_id(&message);
        let attached = session_id.is_some();
        let result = self
            .http
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                headers,
                max_sse_event_size,
            )
            .await;
        self.observe(&result, attached);
        claim_refusal(request_id, result)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.http
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxedSseResponse, StreamableHttpError<Self::Error>> {
        // One path for every GET, with the bridge's own event bound.
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            MAX_EVENT_BYTES,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxedSseResponse, StreamableHttpError<Self::Error>> {
        // Re-attaching the stream: the relay pushes again from what arrived (a new session has
        // no `Last-Event-ID` of its own; this says what the host already got).
        let mut custom_headers = custom_headers;
        self.add_last_seq(&mut custom_headers);
        let attached = session_id.is_some();
        let result = self
            .http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.observe(&result, attached);
        result
    }
}

/// The id of a request (not of a notification or a response).
fn request_id(message: &ClientJsonRpcMessage) -> Option<RequestId> {
    match message {
        ClientJsonRpcMessage::Request(request) => Some(request.id.clone()),
        _ => None,
    }
}

/// Key in the `data` of a JSON-RPC error the relay gave without reading the request (no id:
/// a body too large, a malformed one): the bridge knows the request, since one POST carries
/// one message, and nothing of it took effect.
pub const REFUSED_UNREAD: &str = "mcp-chat-bridge/refused-unread";

/// A relay's JSON-RPC error without an id, answering the POST of request `id`, becomes that
/// request's answer (marked [`REFUSED_UNREAD`]): otherwise nobody could match it, and the
/// host's call would wait for an answer that never comes.
fn claim_refusal(
    id: Option<RequestId>,
    result: Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>,
) -> Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>> {
    match result {
        Ok(StreamableHttpPostResponse::Json(ServerJsonRpcMessage::Error(mut refusal), session))
            if refusal.id.is_none() && id.is_some() =>
        {
            refusal.id = id;
            let relay_data = refusal.error.data.take();
            refusal.error.data = Some(json!({ REFUSED_UNREAD: true, "relay": relay_data }));
            Ok(StreamableHttpPostResponse::Json(
                ServerJsonRpcMessage::Error(refusal),
                session,
            ))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_answer(
        body: Value,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>> {
        let message: ServerJsonRpcMessage = serde_json::from_value(body).unwrap();
        Ok(StreamableHttpPostResponse::Json(message, None))
    }

    fn answer_of(
        result: Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>,
    ) -> Value {
        match result {
            Ok(StreamableHttpPostResponse::Json(message, _)) => {
                serde_json::to_value(message).unwrap()
            }
            _ => panic!("a JSON answer"),
        }
    }

    #[test]
    fn an_error_without_id_becomes_the_answer_of_the_posted_request() {
        let refusal = json!({
            "jsonrpc": "2.0", "id": null,
            "error": { "code": -32600, "message": "Payload Too Large: request bodies are limited to 65536 bytes" },
        });
        let id: RequestId = serde_json::from_value(json!(42)).unwrap();
        let answer = answer_of(claim_refusal(Some(id), json_answer(refusal.clone())));
        assert_eq!(answer["id"], 42);
        assert_eq!(answer["error"]["data"][REFUSED_UNREAD], true);
        assert_eq!(answer["error"]["code"], -32600);
        // A notification's POST has no request to answer; an error with an id is left alone.
        let answer = answer_of(claim_refusal(None, json_answer(refusal)));
        assert!(answer.get("id").is_none_or(Value::is_null), "{answer}");
        let own =
            json!({ "jsonrpc": "2.0", "id": 7, "error": { "code": -32602, "message": "no" } });
        let id: RequestId = serde_json::from_value(json!(42)).unwrap();
        let answer = answer_of(claim_refusal(Some(id), json_answer(own)));
        assert_eq!(answer["id"], 7);
        assert!(answer["error"].get("data").is_none_or(Value::is_null));
    }
}
