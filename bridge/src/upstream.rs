//! The relay side: one MCP Streamable HTTP client connection, kept alive and re-made.
//!
//! The connection task owns rmcp's client transport and passes raw JSON-RPC messages both ways,
//! so every server message (custom notifications, progress, sampling requests) reaches the host
//! unchanged and in order. It also owns the connection's health:
//!
//! - it makes the MCP handshake itself (the host was already answered, instantly);
//! - it pings the relay every ping interval: that keeps the relay's idle reaper away and is the
//!   only way to notice a restarted relay, because rmcp's client re-initializes an expired
//!   session on a POST, never from its GET stream alone;
//! - when a ping or the handshake fails it reports the connection lost and retries with capped
//!   exponential backoff and jitter; when the transport itself ends it builds a new one;
//! - every new relay session it opens carries the `seq` of the newest chat event received
//!   (`mcp-chat-last-seq`), so the relay (another node, or a restarted one) resumes its pushes
//!   from what actually arrived;
//! - when the bridge has no room for a relay message (its host stops reading stdout), it holds
//!   that one message and stops reading the relay — the backpressure — but keeps its timer and
//!   the queue to the relay going, and keeps the relay session alive with pings sent straight
//!   over HTTP (see [`RelayClient::keepalive`]), so a host that stops reading does not lose its
//!   seat.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
use tokio_util::sync::CancellationToken;

use crate::internal_id::InternalId;
use crate::settings::Settings;

/// Longest the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one message may take to be accepted by the relay.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a ping may go unanswered.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// First retry delay after a failure; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Largest server-sent event accepted from the relay.
const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Most bytes read of the answer to a keepalive ping (a ping answer is a few hundred).
const KEEPALIVE_MAX_BYTES: usize = 64 * 1024;

/// The `seq` of the newest chat event received from the relay; 0 until the first one. The bridge
/// writes it as events arrive, the connection reads it whenever it opens a relay session.
pub type LastSeq = Arc<AtomicU64>;

/// The transport to the relay.
type RelayTransport = StreamableHttpClientTransport<RelayClient>;

/// What the connection task reports to the bridge.
#[derive(Debug)]
pub enum UpstreamEvent {
    /// The relay answered the handshake (or answers again after being lost).
    Connected {
        /// The relay's `initialize` result.
        server: Value,
        /// True when this follows a loss.
        restored: bool,
    },
    /// The relay cannot be reached or stopped answering.
    Lost {
        /// Why, in words for a person.
        cause: String,
        /// True when the connection was torn down: requests in flight on it will never be
        /// answered. False when only a ping failed: the transport lives on, and so may they.
        transport_gone: bool,
    },
    /// A message from the relay.
    Message(Value),
    /// A message from the host could not be delivered to the relay.
    SendFailed {
        /// The JSON-RPC id of the failed request, if it was one.
        id: Option<Value>,
        /// Why.
        cause: String,
    },
}

/// Runs the relay connection until `shutdown`, then ends the relay session (HTTP DELETE).
pub async fn run(
    settings: Arc<Settings>,
    identity: String,
    last_seq: LastSeq,
    init_params: Value,
    events: mpsc::Sender<UpstreamEvent>,
    mut outgoing: mpsc::Receiver<Value>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new();
    let mut was_connected = false;
    let mut ping_counter = 0u64;
    // The node tried next. A lost connection is retried on the same node first (most losses
    // are blips); a node that cannot be reached hands over to the next one.
    let mut node = 0;
    'connect: loop {
        let url = &settings.relay_urls[node % settings.relay_urls.len()];
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            connected = connect(&settings, url, &identity, &last_seq, &init_params) => connected,
        };
        let (mut transport, client, server, mut signals) = match connected {
            Ok(connected) => connected,
            Err(cause) => {
                let cause = if settings.relay_urls.len() > 1 {
                    node += 1;
                    format!("{url}: {cause}")
                } else {
                    cause
                };
                let lost = UpstreamEvent::Lost {
                    cause,
                    transport_gone: true,
                };
                let _ = events.send(lost).await;
                if sleep_or_shutdown(backoff.next(), &shutdown).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        tracing::info!(relay = %url, "connected to the relay");
        // What the bridge has no room for yet: at most one report. While one waits, the reports'
        // sources (the relay's messages, the send failures) are not read: that is the
        // backpressure, through rmcp's bounded queues and TCP to the relay, and it keeps the
        // memory bounded. The ping timer and the queue to the relay go on meanwhile.
        let mut waiting = offer(
            &events,
            UpstreamEvent::Connected {
                server: server.clone(),
                restored: was_connected,
            },
        );
        was_connected = true;

        let (failures_tx, mut failures) = mpsc::channel::<(Option<Value>, String)>(64);
        let mut healthy = true;
        let mut outstanding_ping: Option<(InternalId, Instant)> = None;
        let mut next_ping = tokio::time::Instant::now() + settings.ping_interval;
        // Since when the bridge has been reading the relay's messages: a ping's answer comes
        // among them, so a ping counts as unanswered only for time they could have been read.
        let mut reading_since = Instant::now();
        // The keepalive ping in flight while the bridge is blocked (one at a time).
        let mut keepalive: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    if let Some(task) = keepalive.take() {
                        task.abort();
                    }
                    // Closing the transport sends DELETE: the partner learns at once.
                    let _ = tokio::time::timeout(Duration::from_secs(3), transport.close()).await;
                    return;
                }
                permit = events.reserve(), if waiting.is_some() => {
                    // A bridge that is gone takes nothing more; the shutdown comes next.
                    if let (Ok(permit), Some(event)) = (permit, waiting.take()) {
                        permit.send(event);
                    }
                    waiting = None;
                    reading_since = Instant::now();
                }
                message = transport.receive(), if waiting.is_none() => {
                    let Some(message) = message else {
                        let cause = "the connection to the relay closed".to_owned();
                        let _ = events.send(UpstreamEvent::Lost { cause, transport_gone: true }).await;
                        break;
                    };
                    let Ok(value) = serde_json::to_value(&message) else { continue };
                    let internal = value.get("id").and_then(InternalId::parse);
                    if let Some(id @ InternalId::Ping(_)) = internal {
                        if outstanding_ping.as_ref().is_some_and(|(p, _)| *p == id) {
                            outstanding_ping = None;
                            if !healthy {
                                healthy = true;
                                backoff.reset();
                                let restored = UpstreamEvent::Connected { server: server.clone(), restored: true };
                                waiting = offer(&events, restored);
                            }
                        }
                        continue;
                    }
                    waiting = offer(&events, UpstreamEvent::Message(value));
                }
                Some(value) = outgoing.recv() => {
                    send(&mut transport, value, &failures_tx);
                }
                Some(signal) = signals.recv() => {
                    // A refused connection is proof enough that nobody serves at this URL now,
                    // and a forgotten session that the chat it held may be gone: either way
                    // this transport is done, whatever the phase of the ping.
                    let cause = match signal {
                        Signal::Unreachable(cause) => format!("cannot reach the relay: {cause}"),
                        Signal::SessionGone => {
                            "the relay no longer knows this session (it restarted or expired it)"
                                .to_owned()
                        }
                    };
                    let cause = if settings.relay_urls.len() > 1 {
                        node += 1;
                        format!("{url}: {cause}")
                    } else {
                        cause
                    };
                    if let Some(event) = waiting.take() {
                        let _ = events.send(event).await;
                    }
                    let _ = events.send(UpstreamEvent::Lost { cause, transport_gone: true }).await;
                    break;
                }
                Some((id, cause)) = failures.recv(), if waiting.is_none() => {
                    let ping = id.as_ref().and_then(InternalId::parse);
                    if let Some(ping @ InternalId::Ping(_)) = ping {
                        // A late failure of an older ping says nothing about the link now.
                        if outstanding_ping.as_ref().map(|(p, _)| *p) != Some(ping) {
                            continue;
                        }
                        let blocked_meanwhile = outstanding_ping
                            .take()
                            .is_some_and(|(_, sent)| sent < reading_since);
                        if blocked_meanwhile {
                            // The bridge was blocked during this ping's life, and rmcp's worker,
                            // waiting for room toward it, may have held the ping back until its
                            // send bound ran out: no verdict on the link. Ask again now.
                            next_ping = tokio::time::Instant::now();
                            continue;
                        }
                        if settings.relay_urls.len() > 1 {
                            // rmcp would retry this node forever; another node can serve now.
                            node += 1;
                            let cause = format!("{url}: {cause}");
                            let _ = events.send(UpstreamEvent::Lost { cause, transport_gone: true }).await;
                            break;
                        }
                        if healthy {
                            healthy = false;
                            waiting = offer(&events, UpstreamEvent::Lost { cause, transport_gone: false });
                        }
                        // Try again soon, backing off, to notice the relay's return.
                        next_ping = tokio::time::Instant::now() + backoff.next();
                    } else {
                        waiting = offer(&events, UpstreamEvent::SendFailed { id, cause });
                    }
                }
                _ = tokio::time::sleep_until(next_ping) => {
                    if waiting.is_some() {
                        // The bridge is blocked (its host is not reading): it is not reading the
                        // relay either, so no ping can be answered, and a ping through rmcp would
                        // not even leave (rmcp's worker waits for room toward us before it makes
                        // another request). Nothing is judged; the relay gets a ping straight
                        // over HTTP, which keeps the session from going idle.
                        if keepalive.as_ref().is_none_or(|task| task.is_finished()) {
                            ping_counter += 1;
                            let id = InternalId::Keepalive(ping_counter).to_string();
                            keepalive = Some(tokio::spawn(keep_alive(client.clone(), id)));
                        }
                        next_ping = tokio::time::Instant::now() + settings.ping_interval;
                        continue;
                    }
                    if let Some((_, sent)) = &outstanding_ping {
                        if (*sent).max(reading_since).elapsed() < PING_TIMEOUT {
                            next_ping = tokio::time::Instant::now() + Duration::from_millis(250);
                            continue;
                        }
                        let cause = format!("the relay did not answer a ping within {PING_TIMEOUT:?}");
                        if settings.relay_urls.len() > 1 {
                            node += 1;
                            let cause = format!("{url}: {cause}");
                            let _ = events.send(UpstreamEvent::Lost { cause, transport_gone: true }).await;
                            break;
                        }
                        if healthy {
                            healthy = false;
                            waiting = offer(&events, UpstreamEvent::Lost { cause, transport_gone: false });
                        }
                    }
                    ping_counter += 1;
                    let id = InternalId::Ping(ping_counter);
                    send(&mut transport, json!({ "jsonrpc": "2.0", "id": id.to_value(), "method": "ping" }), &failures_tx);
                    outstanding_ping = Some((id, Instant::now()));
                    let wait = if healthy { settings.ping_interval } else { backoff.next() };
                    next_ping = tokio::time::Instant::now() + wait;
                }
            }
        }
        if let Some(task) = keepalive.take() {
            task.abort();
        }
        // Reports keep their order: what was waiting goes before the loss. (The loop leaves only
        // where nothing waits; this is for safety.)
        if let Some(event) = waiting.take() {
            let _ = events.send(event).await;
        }
        close(&mut transport).await;
        // What was queued for the dead connection must not reach the next one: the bridge has
        // already answered those requests as failed.
        while let Ok(stale) = outgoing.try_recv() {
            if stale.get("method").is_some() && stale.get("id").is_some() {
                let cause = "the connection to the relay closed".to_owned();
                let id = stale.get("id").cloned();
                let _ = events.send(UpstreamEvent::SendFailed { id, cause }).await;
            }
        }
        if sleep_or_shutdown(backoff.next(), &shutdown).await {
            return;
        }
        continue 'connect;
    }
}

/// Hands `event` to the bridge if it has room; otherwise returns it, to wait.
fn offer(events: &mpsc::Sender<UpstreamEvent>, event: UpstreamEvent) -> Option<UpstreamEvent> {
    match events.try_send(event) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => None,
        Err(mpsc::error::TrySendError::Full(event)) => Some(event),
    }
}

/// One keepalive ping, bounded by [`SEND_TIMEOUT`]; its outcome is only logged (it says nothing
/// about whether the bridge could read an answer through rmcp).
async fn keep_alive(client: RelayClient, id: String) {
    match tokio::time::timeout(SEND_TIMEOUT, client.keepalive(&id)).await {
        Ok(Ok(())) => tracing::debug!(%id, "keepalive ping answered while the host is not reading"),
        Ok(Err(cause)) => tracing::warn!(%id, "keepalive ping failed: {cause}"),
        Err(_) => tracing::warn!(%id, "keepalive ping not answered within {SEND_TIMEOUT:?}"),
    }
}

/// Closes a transport (DELETE for a live session), never waiting long: rmcp's worker can sit in
/// a request a hung relay never answers.
async fn close(transport: &mut RelayTransport) {
    let _ = tokio::time::timeout(Duration::from_secs(3), transport.close()).await;
}

/// Hands one message to the transport without waiting for the relay: the send completes in its
/// own task; a failure is reported on `failures`. Only the bridge's own requests and
/// notifications are bounded by [`SEND_TIMEOUT`]: a host request may take as long as the host
/// allows (a server answering in plain JSON holds the POST open until the tool finishes).
fn send(
    transport: &mut RelayTransport,
    value: Value,
    failures: &mpsc::Sender<(Option<Value>, String)>,
) {
    let id = value.get("method").and(value.get("id")).cloned();
    let bounded = match &id {
        None => true,
        Some(id) => InternalId::is_internal(id),
    };
    let message: ClientJsonRpcMessage = match serde_json::from_value(value) {
        Ok(message) => message,
        Err(e) => {
            let _ = failures.try_send((id, format!("the message is not valid MCP: {e}")));
            return;
        }
    };
    let sending = transport.send(message);
    let failures = failures.clone();
    tokio::spawn(async move {
        let limit = if bounded { SEND_TIMEOUT } else { Duration::MAX };
        let cause = match tokio::time::timeout(limit, sending).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => format!("cannot reach the relay: {}", error_chain(&e)),
            Err(_) => format!("the relay did not accept the request within {SEND_TIMEOUT:?}"),
        };
        let _ = failures.send((id, cause)).await;
    });
}

/// A transport after its handshake: the transport, its HTTP client, the relay's `initialize`
/// result and the client's signals.
type Connected = (
    RelayTransport,
    RelayClient,
    Value,
    mpsc::UnboundedReceiver<Signal>,
);

/// A new transport that completed the handshake within [`HANDSHAKE_TIMEOUT`], with its HTTP client
/// (for keepalive pings) and the relay's `initialize` result.
async fn connect(
    settings: &Settings,
    url: &str,
    identity: &str,
    last_seq: &LastSeq,
    init_params: &Value,
) -> Result<Connected, String> {
    let (mut transport, client, signals) = build_transport(settings, url, identity, last_seq)?;
    let cause =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut transport, init_params)).await
        {
            Ok(Ok(server)) => return Ok((transport, client, server, signals)),
            Ok(Err(cause)) => cause,
            Err(_) => {
                format!("the relay did not answer the handshake within {HANDSHAKE_TIMEOUT:?}")
            }
        };
    close(&mut transport).await;
    Err(cause)
}

/// Connects to the relay once with a throwaway identity (so a bridge running for the same user
/// keeps its seat), ends the session, and returns the relay's `initialize` result.
pub(crate) async fn probe(settings: &Settings) -> Result<Value, String> {
    let identity = crate::identity::new_token().map_err(|e| e.to_string())?;
    let params = json!({
        "protocolVersion": mcp_chat::protocol::NEWEST_SUPPORTED_VERSION,
        "capabilities": {},
        "clientInfo": { "name": "mcp-chat-bridge doctor", "version": env!("CARGO_PKG_VERSION") },
    });
    // A new identity has received nothing: no resume point.
    let last_seq = LastSeq::default();
    let (mut transport, _, server, _) =
        connect(settings, &settings.relay_url, &identity, &last_seq, &params).await?;
    close(&mut transport).await;
    Ok(server)
}

/// `initialize` → result → `notifications/initialized`.
async fn handshake(transport: &mut RelayTransport, init_params: &Value) -> Result<Value, String> {
    let id = InternalId::Init.to_string();
    let request: ClientJsonRpcMessage = serde_json::from_value(json!({
        "jsonrpc": "2.0", "id": id, "method": "initialize", "params": init_params,
    }))
    .map_err(|e| format!("cannot build the initialize request: {e}"))?;
    transport
        .send(request)
        .await
        .map_err(|e| format!("cannot reach the relay: {}", error_chain(&e)))?;
    loop {
        let Some(message) = transport.receive().await else {
            return Err("the relay closed the connection during the handshake".to_owned());
        };
        let value = serde_json::to_value(&message).map_err(|e| e.to_string())?;
        if value.get("id").and_then(Value::as_str) != Some(id.as_str()) {
            continue;
        }
        if let Some(error) = value.get("error") {
            return Err(format!("the relay refused the handshake: {error}"));
        }
        let result = value.get("result").cloned().unwrap_or(Value::Null);
        let initialized: ClientJsonRpcMessage = serde_json::from_value(json!({
            "jsonrpc": "2.0", "method": "notifications/initialized",
        }))
        .map_err(|e| e.to_string())?;
        transport
            .send(initialized)
            .await
            .map_err(|e| format!("cannot reach the relay: {}", error_chain(&e)))?;
        return Ok(result);
    }
}

fn build_transport(
    settings: &Settings,
    url: &str,
    identity: &str,
    last_seq: &LastSeq,
) -> Result<(RelayTransport, RelayClient, mpsc::UnboundedReceiver<Signal>), String> {
    let mut headers = HashMap::new();
    for (name, value) in &settings.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers.insert(
        http::HeaderName::from_static(mcp_chat::protocol::IDENTITY_HEADER),
        http::HeaderValue::from_str(&crate::identity::token_for(identity, &settings.relay_url))
            .map_err(|e| e.to_string())?,
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
    retry.max_delay = Some(MAX_BACKOFF);
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
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read CA bundle {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("CA bundle {} is not valid PEM: {e}", path.display()))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot set up HTTP: {e}"))?;
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
struct RelayClient {
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
enum Signal {
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
    async fn keepalive(&self, id: &str) -> Result<(), String> {
        let route = self.route.lock().ok().and_then(|slot| slot.clone());
        let Some(route) = route else {
            return Err("no relay session yet".to_owned());
        };
        let body = serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": id, "method": "ping" }))
            .map_err(|e| e.to_string())?;
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
        let mut response = request.send().await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        // To its end, so that the connection goes back to the pool; never more than a bound.
        let mut read = 0;
        while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
            read += chunk.len();
            if read > KEEPALIVE_MAX_BYTES {
                break;
            }
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
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
        self.note_route(&uri, &session_id, &auth_header, &custom_headers);
        let headers = self.headers_for(&message, &session_id, custom_headers);
        let request_id = request_id(&message);
        let attached = session_id.is_some();
        let result = self
            .http
            .post_message(uri, message, session_id, auth_header, headers)
            .await;
        self.observe(&result, attached);
        claim_refusal(request_id, result)
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
        // Re-attaching the stream: the relay pushes again from what arrived, beyond what its
        // replay cache for `Last-Event-ID` still holds.
        let mut custom_headers = custom_headers;
        self.add_last_seq(&mut custom_headers);
        let attached = session_id.is_some();
        let result = self
            .http
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await;
        self.observe(&result, attached);
        result
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

/// An error and its causes, innermost last: "error sending request" alone does not tell a user
/// that the certificate was refused or the connection was refused.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Sleeps `delay` unless shutdown comes first; true on shutdown.
async fn sleep_or_shutdown(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

/// Capped exponential backoff with ±25 % jitter, so that many bridges cut off by the same relay
/// restart do not all come back in the same instant.
struct Backoff {
    next: Duration,
    seed: u64,
}

impl Backoff {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self {
            next: FIRST_BACKOFF,
            seed: seed | 1,
        }
    }

    fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }

    fn next(&mut self) -> Duration {
        // xorshift64: plenty for jitter.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = 0.75 + (self.seed % 1000) as f64 / 2000.0;
        let delay = self.next.mul_f64(jitter);
        self.next = (self.next * 2).min(MAX_BACKOFF);
        delay
    }
}
