//! The relay connection as a state machine.
//!
//! [`Connection`] lives as long as the bridge; each relay session it opens is a [`Live`]. A
//! live session is in one of three states, and every input moves it:
//!
//! | state | means | left by |
//! |---|---|---|
//! | healthy | pings answered | a ping that fails or goes unanswered → degraded (one URL) or ended (several) |
//! | degraded | a ping failed, the transport lives on | a ping answered → healthy ("restored") |
//! | ended | the transport is done | [`Connection::fail_over`], always |
//!
//! A live session ends when rmcp's transport closes, when a ping fails with several relay URLs
//! configured (another node can serve now; rmcp would retry this one forever), or at once when
//! the HTTP client proves the node gone ([`Signal`]: a refused connection, a forgotten session).
//! However it ends, [`Connection::fail_over`] is the one way out: it reports the loss, closes
//! the transport, fails what was queued for it, and moves on to the next URL (or retries the
//! only one), after a backoff with jitter.
//!
//! Backpressure: what the bridge has no room for yet waits here, one report at most
//! (`Live::waiting`); while one waits, the relay's messages and the send failures are not
//! read, which holds the relay back through rmcp's bounded queues and TCP. The ping timer and
//! the queue to the relay go on meanwhile, and a ping is judged only on time during which its
//! answer could have been read.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::Transport;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{self, RelayClient, RelayTransport, Signal};
use super::error::{UpstreamError, error_chain};
use super::{LastSeq, Upstream, UpstreamEvent};
use crate::internal_id::InternalId;
use crate::settings::Settings;

/// First retry delay after a failure; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Longest the relay session's DELETE may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

impl From<Signal> for UpstreamError {
    fn from(signal: Signal) -> Self {
        match signal {
            Signal::Unreachable(cause) => Self::Unreachable(cause),
            Signal::SessionGone => Self::SessionGone,
        }
    }
}

/// A keepalive ping of a session, sent outside its transport within a bound; its outcome is
/// only logged.
pub(super) type KeepAlive =
    Arc<dyn Fn(InternalId, Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A relay session after its handshake, as the connection uses it.
pub(super) struct Session<T> {
    /// The transport (rmcp's, in the bridge).
    pub transport: T,
    /// Pings the session outside the transport (while the bridge is blocked).
    pub keepalive: KeepAlive,
    /// The relay's `initialize` result.
    pub server: Value,
    /// What the session's HTTP exchanges prove.
    pub signals: mpsc::UnboundedReceiver<Signal>,
}

/// Makes relay sessions: over HTTP in the bridge ([`RelayConnector`]); played by the tests,
/// which run the state machine on tokio's paused time.
pub(super) trait Connector: Send {
    /// The transport of a session.
    type Transport: Transport<RoleClient> + 'static;
    /// A new session with the relay at `url`, its handshake done.
    fn connect(
        &mut self,
        url: &str,
    ) -> impl Future<Output = Result<Session<Self::Transport>, UpstreamError>> + Send;
}

/// Sessions over rmcp's Streamable HTTP transport, with the bridge's identity and resume point.
pub(super) struct RelayConnector {
    settings: Arc<Settings>,
    identity: String,
    last_seq: LastSeq,
    init_params: Value,
}

impl Connector for RelayConnector {
    type Transport = RelayTransport;

    async fn connect(&mut self, url: &str) -> Result<Session<RelayTransport>, UpstreamError> {
        let session = client::connect(
            &self.settings,
            url,
            &self.identity,
            &self.last_seq,
            &self.init_params,
        )
        .await?;
        let http = session.client;
        let keepalive: KeepAlive = Arc::new(move |id, bound| {
            let http = http.clone();
            Box::pin(keep_alive(http, id, bound))
        });
        Ok(Session {
            transport: session.transport,
            keepalive,
            server: session.server,
            signals: session.signals,
        })
    }
}

/// A send that failed: the id of the message (if it was a request) and why.
type Failure = (Option<Value>, UpstreamError);

/// The relay connection, across all the sessions it opens.
pub(super) struct Connection<C: Connector> {
    settings: Arc<Settings>,
    connector: C,
    events: mpsc::Sender<UpstreamEvent>,
    outgoing: mpsc::Receiver<Value>,
    shutdown: CancellationToken,
    backoff: Backoff,
    /// Longest a ping may go unanswered (`Settings::ping_timeout`, 10 s by default).
    ping_timeout: Duration,
    /// Longest one message of the bridge's own may take to be accepted by the relay: half as
    /// long again as a ping may go unanswered (15 s by default).
    send_timeout: Duration,
    /// A session was made before: the next one is a restoration.
    was_connected: bool,
    ping_counter: u64,
    /// The node tried next (an index into the relay URLs, modulo their number). A lost
    /// connection is retried on the same node when it is the only one; with several, a node
    /// that fails hands over to the next.
    node: usize,
}

/// How a live session ended.
enum End {
    /// The bridge is shutting down.
    Shutdown,
    /// The transport is done.
    Lost(UpstreamError),
}

/// One relay session while it lives: what `run` used to keep in ten mutable locals.
struct Live<T> {
    session: Session<T>,
    failures_tx: mpsc::Sender<Failure>,
    failures: mpsc::Receiver<Failure>,
    /// The report the bridge has no room for yet.
    waiting: Option<UpstreamEvent>,
    /// Healthy or degraded (see the module docs).
    healthy: bool,
    /// The ping in flight through rmcp, and when it was sent.
    outstanding_ping: Option<(InternalId, Instant)>,
    next_ping: tokio::time::Instant,
    /// Since when the bridge has been reading the relay's messages: a ping's answer comes
    /// among them, so a ping counts as unanswered only for time they could have been read.
    reading_since: Instant,
    /// The keepalive ping in flight while the bridge is blocked (one at a time).
    keepalive: Option<JoinHandle<()>>,
}

impl Connection<RelayConnector> {
    /// The bridge's connection: sessions over HTTP.
    pub(super) fn new(
        upstream: Upstream,
        events: mpsc::Sender<UpstreamEvent>,
        outgoing: mpsc::Receiver<Value>,
        shutdown: CancellationToken,
    ) -> Self {
        let connector = RelayConnector {
            settings: upstream.settings.clone(),
            identity: upstream.identity,
            last_seq: upstream.last_seq,
            init_params: upstream.init_params,
        };
        Self::with_connector(upstream.settings, connector, events, outgoing, shutdown)
    }
}

impl<C: Connector> Connection<C> {
    /// A connection whose sessions `connector` makes.
    pub(super) fn with_connector(
        settings: Arc<Settings>,
        connector: C,
        events: mpsc::Sender<UpstreamEvent>,
        outgoing: mpsc::Receiver<Value>,
        shutdown: CancellationToken,
    ) -> Self {
        let ping_timeout = settings.ping_timeout;
        Self {
            ping_timeout,
            send_timeout: ping_timeout.mul_f64(1.5),
            settings,
            connector,
            events,
            outgoing,
            shutdown,
            backoff: Backoff::new(),
            was_connected: false,
            ping_counter: 0,
            node: 0,
        }
    }

    /// Connects, serves, fails over, until shutdown; then ends the relay session.
    pub(super) async fn run(mut self) {
        loop {
            let urls = &self.settings.relay_urls;
            let url = urls[self.node % urls.len()].clone();
            let connected = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                connected = self.connector.connect(&url) => connected,
            };
            let (cause, live) = match connected {
                Err(cause) => (cause, None),
                Ok(session) => {
                    self.backoff.reset();
                    tracing::info!(relay = %url, "connected to the relay");
                    let mut live = self.open(session);
                    match self.serve(&mut live).await {
                        End::Shutdown => {
                            live.stop_keepalive();
                            // Closing the transport sends DELETE: the partner learns at once.
                            close(&mut live.session.transport).await;
                            return;
                        }
                        End::Lost(cause) => (cause, Some(live)),
                    }
                }
            };
            self.fail_over(&url, cause, live).await;
            if sleep_or_shutdown(self.backoff.next(), &self.shutdown).await {
                return;
            }
        }
    }

    /// A new live session, its `Connected` report offered.
    fn open(&mut self, session: Session<C::Transport>) -> Live<C::Transport> {
        let (failures_tx, failures) = mpsc::channel(64);
        let connected = UpstreamEvent::Connected {
            server: session.server.clone(),
            restored: self.was_connected,
        };
        self.was_connected = true;
        Live {
            waiting: offer(&self.events, connected),
            session,
            failures_tx,
            failures,
            healthy: true,
            outstanding_ping: None,
            next_ping: tokio::time::Instant::now() + self.settings.ping_interval,
            reading_since: Instant::now(),
            keepalive: None,
        }
    }

    /// The one way out of a session (or of a connection attempt): the bridge hears why, in
    /// order after what was waiting; the transport is closed; what was queued for it is failed
    /// (the bridge must not see it reach the next session); the next node is chosen.
    async fn fail_over(
        &mut self,
        url: &str,
        cause: UpstreamError,
        live: Option<Live<C::Transport>>,
    ) {
        let cause = if self.settings.relay_urls.len() > 1 {
            self.node += 1;
            format!("{url}: {cause}")
        } else {
            cause.to_string()
        };
        tracing::warn!(relay = %url, "relay connection lost: {cause}");
        let mut live = live;
        if let Some(event) = live.as_mut().and_then(|live| live.waiting.take()) {
            let _ = self.events.send(event).await;
        }
        let lost = UpstreamEvent::Lost {
            cause,
            transport_gone: true,
        };
        let _ = self.events.send(lost).await;
        if let Some(mut live) = live {
            live.stop_keepalive();
            close(&mut live.session.transport).await;
        }
        while let Ok(stale) = self.outgoing.try_recv() {
            if stale.get("method").is_some() && stale.get("id").is_some() {
                let failed = UpstreamEvent::SendFailed {
                    id: stale.get("id").cloned(),
                    cause: UpstreamError::Closed.to_string(),
                };
                let _ = self.events.send(failed).await;
            }
        }
    }

    /// Drives a live session until it ends.
    async fn serve(&mut self, live: &mut Live<C::Transport>) -> End {
        // A handle of its own for `reserve`, whose permit would otherwise borrow `self`.
        let events = self.events.clone();
        loop {
            let timer = live.timer(self.ping_timeout);
            let end = tokio::select! {
                _ = self.shutdown.cancelled() => Some(End::Shutdown),
                permit = events.reserve(), if live.waiting.is_some() => {
                    // A bridge that is gone takes nothing more; the shutdown comes next.
                    if let (Ok(permit), Some(event)) = (permit, live.waiting.take()) {
                        permit.send(event);
                    }
                    live.waiting = None;
                    live.reading_since = Instant::now();
                    None
                }
                message = live.session.transport.receive(), if live.waiting.is_none() => {
                    self.on_message(live, message)
                }
                Some(value) = self.outgoing.recv() => {
                    send(&mut live.session.transport, value, &live.failures_tx, self.send_timeout);
                    None
                }
                Some(signal) = live.session.signals.recv() => Some(End::Lost(signal.into())),
                Some((id, cause)) = live.failures.recv(), if live.waiting.is_none() => {
                    self.on_failure(live, id, cause)
                }
                _ = tokio::time::sleep_until(timer) => self.on_ping_due(live),
            };
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// A message from the relay: a ping's answer is the bridge's own, anything else is
    /// offered to the bridge.
    fn on_message(
        &mut self,
        live: &mut Live<C::Transport>,
        message: Option<ClientMessage>,
    ) -> Option<End> {
        let Some(message) = message else {
            return Some(End::Lost(UpstreamError::Closed));
        };
        let Ok(value) = serde_json::to_value(&message) else {
            return None;
        };
        if let Some(id @ InternalId::Ping(_)) = value.get("id").and_then(InternalId::parse) {
            if live.outstanding_ping.is_some_and(|(ping, _)| ping == id) {
                live.outstanding_ping = None;
                if !live.healthy {
                    live.healthy = true;
                    self.backoff.reset();
                    let restored = UpstreamEvent::Connected {
                        server: live.session.server.clone(),
                        restored: true,
                    };
                    live.waiting = offer(&self.events, restored);
                }
            }
            return None;
        }
        live.waiting = offer(&self.events, UpstreamEvent::Message(value));
        None
    }

    /// A send that failed. A ping's failure is a verdict on the link; any other is the
    /// bridge's to answer.
    fn on_failure(
        &mut self,
        live: &mut Live<C::Transport>,
        id: Option<Value>,
        cause: UpstreamError,
    ) -> Option<End> {
        let Some(ping @ InternalId::Ping(_)) = id.as_ref().and_then(InternalId::parse) else {
            let cause = cause.to_string();
            live.waiting = offer(&self.events, UpstreamEvent::SendFailed { id, cause });
            return None;
        };
        // A late failure of an older ping says nothing about the link now.
        let (outstanding, sent) = live.outstanding_ping?;
        if outstanding != ping {
            return None;
        }
        live.outstanding_ping = None;
        if sent < live.reading_since {
            // The bridge was blocked during this ping's life, and rmcp's worker, waiting for
            // room toward it, may have held the ping back until its send bound ran out: no
            // verdict on the link. Ask again now.
            live.next_ping = tokio::time::Instant::now();
            return None;
        }
        self.ping_failed(live, cause)
    }

    /// The ping timer: judge the ping in flight, send the next one (or, while the bridge is
    /// blocked, a keepalive straight over HTTP).
    fn on_ping_due(&mut self, live: &mut Live<C::Transport>) -> Option<End> {
        let now = tokio::time::Instant::now();
        if live.waiting.is_some() {
            // The bridge is blocked (its host is not reading): it is not reading the relay
            // either, so no ping can be answered, and a ping through rmcp would not even leave
            // (rmcp's worker waits for room toward us before it makes another request).
            // Nothing is judged; the relay gets a ping straight over HTTP, which keeps the
            // session from going idle.
            if live.keepalive.as_ref().is_none_or(JoinHandle::is_finished) {
                self.ping_counter += 1;
                let id = InternalId::Keepalive(self.ping_counter);
                let ping = (live.session.keepalive)(id, self.send_timeout);
                live.keepalive = Some(tokio::spawn(ping));
            }
            live.next_ping = now + self.settings.ping_interval;
            return None;
        }
        if let Some((_, sent)) = live.outstanding_ping {
            if sent.max(live.reading_since).elapsed() < self.ping_timeout {
                return None; // the timer moved: the bridge was blocked meanwhile
            }
            live.outstanding_ping = None;
            let unanswered = UpstreamError::PingTimeout(self.ping_timeout);
            if let Some(end) = self.ping_failed(live, unanswered) {
                return Some(end);
            }
        } else if now < live.next_ping {
            return None;
        }
        self.ping_counter += 1;
        let id = InternalId::Ping(self.ping_counter);
        let ping = json!({ "jsonrpc": "2.0", "id": id.to_value(), "method": "ping" });
        send(
            &mut live.session.transport,
            ping,
            &live.failures_tx,
            self.send_timeout,
        );
        live.outstanding_ping = Some((id, Instant::now()));
        let wait = if live.healthy {
            self.settings.ping_interval
        } else {
            self.backoff.next()
        };
        live.next_ping = now + wait;
        None
    }

    /// A ping failed or went unanswered: with several relay URLs the session ends (another
    /// node can serve now); with one, the session is degraded and pinged again soon, backing
    /// off, to notice the relay's return.
    fn ping_failed(&mut self, live: &mut Live<C::Transport>, cause: UpstreamError) -> Option<End> {
        if self.settings.relay_urls.len() > 1 {
            return Some(End::Lost(cause));
        }
        if live.healthy {
            live.healthy = false;
            let lost = UpstreamEvent::Lost {
                cause: cause.to_string(),
                transport_gone: false,
            };
            live.waiting = offer(&self.events, lost);
        }
        live.next_ping = tokio::time::Instant::now() + self.backoff.next();
        None
    }
}

/// What rmcp's client transport yields.
type ClientMessage = rmcp::service::RxJsonRpcMessage<rmcp::RoleClient>;

impl<T> Live<T> {
    /// When the ping timer must look next: at the deadline of the ping in flight (its
    /// timeout, counted from when its answer could first be read), else when the next ping
    /// is due. (While the bridge is blocked no ping is judged: only the next keepalive is.)
    /// A ping is judged at its own deadline, not at the next ping: with the default 30 s
    /// interval, a relay that stopped answering is reported 10 s after the ping, not 30.
    fn timer(&self, ping_timeout: Duration) -> Instant {
        match self.outstanding_ping {
            Some((_, sent)) if self.waiting.is_none() => {
                sent.max(self.reading_since) + ping_timeout
            }
            _ => self.next_ping,
        }
    }

    fn stop_keepalive(&mut self) {
        if let Some(task) = self.keepalive.take() {
            task.abort();
        }
    }
}

/// Hands `event` to the bridge if it has room; otherwise returns it, to wait.
fn offer(events: &mpsc::Sender<UpstreamEvent>, event: UpstreamEvent) -> Option<UpstreamEvent> {
    match events.try_send(event) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => None,
        Err(mpsc::error::TrySendError::Full(event)) => Some(event),
    }
}

/// One keepalive ping, bounded by `bound`; its outcome is only logged (it says nothing about
/// whether the bridge could read an answer through rmcp).
async fn keep_alive(client: RelayClient, id: InternalId, bound: Duration) {
    match tokio::time::timeout(bound, client.keepalive(id)).await {
        Ok(Ok(())) => tracing::debug!(%id, "keepalive ping answered while the host is not reading"),
        Ok(Err(cause)) => tracing::warn!(%id, "keepalive ping failed: {cause}"),
        Err(_) => tracing::warn!(%id, "keepalive ping not answered within {bound:?}"),
    }
}

/// Hands one message to the transport without waiting for the relay: the send completes in its
/// own task; a failure is reported on `failures`. Only the bridge's own requests and
/// notifications are bounded (by `bound`): a host request may take as long as the host allows
/// (a server answering in plain JSON holds the POST open until the tool finishes).
fn send<T: Transport<RoleClient>>(
    transport: &mut T,
    value: Value,
    failures: &mpsc::Sender<Failure>,
    bound: Duration,
) {
    let id = value.get("method").and(value.get("id")).cloned();
    let bounded = match &id {
        None => true,
        Some(id) => InternalId::is_internal(id),
    };
    let message: ClientJsonRpcMessage = match serde_json::from_value(value) {
        Ok(message) => message,
        Err(e) => {
            let _ = failures.try_send((id, UpstreamError::InvalidMessage(e.to_string())));
            return;
        }
    };
    let sending = transport.send(message);
    let failures = failures.clone();
    tokio::spawn(async move {
        let limit = if bounded { bound } else { Duration::MAX };
        let cause = match tokio::time::timeout(limit, sending).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => UpstreamError::Unreachable(error_chain(&e)),
            Err(_) => UpstreamError::SendTimeout(bound),
        };
        let _ = failures.send((id, cause)).await;
    });
}

/// Closes a transport (DELETE for a live relay session), never waiting long: rmcp's worker can
/// sit in a request a hung relay never answers.
async fn close<T: Transport<RoleClient>>(transport: &mut T) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, transport.close()).await;
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

#[cfg(test)]
mod tests {
    //! The state machine on tokio's paused time: a scripted connector and an in-memory
    //! transport play the relay, so 30 s ping intervals and 10 s timeouts take no real time.

    use std::collections::VecDeque;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use rmcp::model::ServerJsonRpcMessage;
    use rmcp::service::TxJsonRpcMessage;

    use super::*;
    use crate::settings::Paths;

    /// One relay session's transport, in memory: what the connection sends goes to `sent`,
    /// what the test pushes on `incoming` is what it receives.
    struct FakeTransport {
        sent: mpsc::UnboundedSender<Value>,
        incoming: mpsc::UnboundedReceiver<ServerJsonRpcMessage>,
    }

    impl Transport<RoleClient> for FakeTransport {
        type Error = std::io::Error;

        fn send(
            &mut self,
            item: TxJsonRpcMessage<RoleClient>,
        ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
            let _ = self.sent.send(serde_json::to_value(item).unwrap());
            std::future::ready(Ok(()))
        }

        async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
            self.incoming.recv().await
        }

        async fn close(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    /// The test's end of one session.
    struct Relay {
        sent: mpsc::UnboundedReceiver<Value>,
        incoming: mpsc::UnboundedSender<ServerJsonRpcMessage>,
        signals: mpsc::UnboundedSender<Signal>,
    }

    impl Relay {
        /// The next ping the connection sends (other messages are skipped).
        async fn ping(&mut self) -> Value {
            loop {
                let message = self.sent.recv().await.expect("the session is open");
                if message["method"] == "ping" {
                    return message["id"].clone();
                }
            }
        }

        fn answer(&self, id: Value) {
            let answer = json!({ "jsonrpc": "2.0", "id": id, "result": {} });
            let _ = self.incoming.send(serde_json::from_value(answer).unwrap());
        }
    }

    /// Connects to every URL it is asked for, handing the test its end of each session.
    #[derive(Clone, Default)]
    struct Scripted {
        urls: Arc<Mutex<Vec<String>>>,
        relays: Arc<Mutex<VecDeque<Relay>>>,
    }

    impl Connector for Scripted {
        type Transport = FakeTransport;

        async fn connect(&mut self, url: &str) -> Result<Session<FakeTransport>, UpstreamError> {
            self.urls.lock().unwrap().push(url.to_owned());
            let (sent_tx, sent) = mpsc::unbounded_channel();
            let (incoming, incoming_rx) = mpsc::unbounded_channel();
            let (signals, signals_rx) = mpsc::unbounded_channel();
            self.relays.lock().unwrap().push_back(Relay {
                sent,
                incoming,
                signals,
            });
            let keepalive: KeepAlive = Arc::new(|_, _| Box::pin(async {}));
            Ok(Session {
                transport: FakeTransport {
                    sent: sent_tx,
                    incoming: incoming_rx,
                },
                keepalive,
                server: json!({ "serverInfo": { "name": "fake" } }),
                signals: signals_rx,
            })
        }
    }

    impl Scripted {
        fn session(&self) -> Relay {
            self.relays.lock().unwrap().pop_front().expect("a session")
        }
    }

    fn settings(urls: &[&str]) -> Arc<Settings> {
        let dir = PathBuf::from("/nonexistent/mcp-chat-connection-test");
        let paths = Paths {
            config_dir: dir.clone(),
            log_dir: dir,
        };
        Arc::new(Settings::defaults(urls, paths))
    }

    /// Starts a connection to `urls`; returns its reports, its queue, the script and the stop.
    fn start(
        urls: &[&str],
    ) -> (
        mpsc::Receiver<UpstreamEvent>,
        mpsc::Sender<Value>,
        Scripted,
        CancellationToken,
    ) {
        let (events_tx, events) = mpsc::channel(16);
        let (outgoing, outgoing_rx) = mpsc::channel(16);
        let script = Scripted::default();
        let stop = CancellationToken::new();
        let connection = Connection::with_connector(
            settings(urls),
            script.clone(),
            events_tx,
            outgoing_rx,
            stop.clone(),
        );
        tokio::spawn(connection.run());
        (events, outgoing, script, stop)
    }

    async fn next(events: &mut mpsc::Receiver<UpstreamEvent>) -> UpstreamEvent {
        events.recv().await.expect("the connection reports")
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_ping_degrades_the_session_and_an_answer_restores_it() {
        let (mut events, _outgoing, script, _stop) = start(&["http://one/mcp"]);
        assert!(matches!(
            next(&mut events).await,
            UpstreamEvent::Connected {
                restored: false,
                ..
            }
        ));
        let mut relay = script.session();
        let started = Instant::now();
        let _unanswered = relay.ping().await;
        assert!(started.elapsed() >= Duration::from_secs(30), "one interval");
        match next(&mut events).await {
            UpstreamEvent::Lost {
                cause,
                transport_gone,
            } => {
                assert!(!transport_gone, "one URL: the transport lives on");
                assert!(
                    cause.contains("did not answer a ping within 10s"),
                    "{cause}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() >= Duration::from_secs(40),
            "after the timeout"
        );
        // Pinged again soon (backing off), not after a whole interval; an answer restores.
        let retry = relay.ping().await;
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "{:?}",
            started.elapsed()
        );
        relay.answer(retry);
        assert!(matches!(
            next(&mut events).await,
            UpstreamEvent::Connected { restored: true, .. }
        ));
        assert_eq!(script.urls.lock().unwrap().len(), 1, "the same session");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_connection_fails_over_to_the_next_url_at_once() {
        let (mut events, _outgoing, script, _stop) = start(&["http://one/mcp", "http://two/mcp"]);
        next(&mut events).await;
        let relay = script.session();
        let started = Instant::now();
        relay
            .signals
            .send(Signal::Unreachable("connection refused".to_owned()))
            .unwrap();
        match next(&mut events).await {
            UpstreamEvent::Lost {
                cause,
                transport_gone,
            } => {
                assert!(transport_gone);
                assert_eq!(
                    cause,
                    "http://one/mcp: cannot reach the relay: connection refused"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            next(&mut events).await,
            UpstreamEvent::Connected { restored: true, .. }
        ));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no ping waited for: {:?}",
            started.elapsed()
        );
        assert_eq!(
            *script.urls.lock().unwrap(),
            ["http://one/mcp", "http://two/mcp"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_several_urls_an_unanswered_ping_fails_over_and_a_forgotten_session_reconnects() {
        let (mut events, _outgoing, script, _stop) = start(&["http://one/mcp", "http://two/mcp"]);
        next(&mut events).await;
        let mut first = script.session();
        first.ping().await;
        match next(&mut events).await {
            UpstreamEvent::Lost {
                cause,
                transport_gone,
            } => {
                assert!(transport_gone, "several URLs: the session ends");
                assert!(cause.starts_with("http://one/mcp: the relay did not answer a ping"));
            }
            other => panic!("{other:?}"),
        }
        next(&mut events).await;
        let second = script.session();
        second.signals.send(Signal::SessionGone).unwrap();
        match next(&mut events).await {
            UpstreamEvent::Lost { cause, .. } => {
                assert!(cause.contains("no longer knows this session"), "{cause}")
            }
            other => panic!("{other:?}"),
        }
        next(&mut events).await;
        assert_eq!(
            *script.urls.lock().unwrap(),
            ["http://one/mcp", "http://two/mcp", "http://one/mcp"]
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap_and_starts_over_on_reset() {
        let mut backoff = Backoff::new();
        let mut base = FIRST_BACKOFF;
        for _ in 0..10 {
            let delay = backoff.next();
            assert!(
                delay >= base.mul_f64(0.75) && delay <= base.mul_f64(1.25),
                "{delay:?} around {base:?}"
            );
            base = (base * 2).min(MAX_BACKOFF);
        }
        assert_eq!(base, MAX_BACKOFF);
        backoff.reset();
        assert!(backoff.next() <= FIRST_BACKOFF.mul_f64(1.25));
    }

    #[test]
    fn what_the_http_client_proves_becomes_the_reason_the_host_reads() {
        let refused = UpstreamError::from(Signal::Unreachable("connection refused".to_owned()));
        assert_eq!(
            refused.to_string(),
            "cannot reach the relay: connection refused"
        );
        let gone = UpstreamError::from(Signal::SessionGone);
        assert!(gone.to_string().contains("no longer knows this session"));
    }
}
