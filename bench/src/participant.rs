//! One simulated participant: a real rmcp Streamable HTTP client session with the relay, with its
//! standalone GET stream open, that pairs up and then sends and receives stamped messages.

#![allow(deprecated)] // `logging/setLevel` is deprecated by SEP-2577 but the relay honours it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use mcp_chat::events::{CHATROOM_FOUND, MESSAGE_RECEIVED, PARTNER_DISCONNECTED};
use mcp_chat::{ToolError, errors::ERROR_META_KEY, tools};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, CustomNotification, Implementation,
    LoggingLevel, SetLevelRequestParams,
};
use rmcp::service::{NotificationContext, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::common::client_side_sse::NeverRetry;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::BenchError;
use crate::ledger::{Clock, Received, decode};

/// The longest a tool call may take before it counts as an error of kind `timeout`.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a participant waits for its partner after entering the queue or a room.
const PAIR_TIMEOUT: Duration = Duration::from_secs(60);
/// How many details of each error kind are printed (the report only counts them).
const PRINTED_PER_KIND: usize = 3;

/// How participants find each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    /// `enter_queue`: the relay pairs whoever waits longest with the next one.
    Queue,
    /// `join_room` with one private room code per pair.
    Rooms,
}

impl std::fmt::Display for Pairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Queue => "queue",
            Self::Rooms => "rooms",
        })
    }
}

/// Which client code a participant runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// rmcp's Streamable HTTP client (what hosts and the bridge use).
    #[default]
    Rmcp,
    /// A lean participant: bare HTTP POSTs and one SSE GET stream read by hand, no rmcp client,
    /// so that the generator costs less CPU than the server it loads.
    Lean,
    /// The lean participant, its POSTs accepting only JSON answers (`Accept: application/json`):
    /// the relay then answers a tool call with one JSON body instead of an SSE stream with a
    /// priming event (what this costs the relay).
    LeanJson,
    /// The lean participant speaking the Python prototype's tools (`join_room` with a room code
    /// and display name, then `client_id`-addressed calls; it pushes no events).
    Prototype,
}

/// The HTTP client every participant shares. Each participant still holds its own GET stream
/// (a connection of its own, as a long-lived streaming response); POSTs reuse pooled
/// connections, like a bridge does (rmcp's default client disables pooling, which would open a
/// new TCP connection per tool call) and like the reverse proxy in front of a public relay.
/// One client also keeps the generator's own file descriptors near one per participant.
pub fn http_client() -> Result<reqwest::Client, BenchError> {
    http_client_from(None)
}

/// The same client, its connections bound to source address `local` (`None`: the kernel's
/// choice, 127.0.0.1 for the relay on 127.0.0.1). Linux routes all of 127.0.0.0/8 to `lo`, so
/// a client bound to 127.1.0.5 reaches a relay on 127.0.0.1 and the relay sees it as a client
/// of its own address (its per-address limits).
pub fn http_client_from(local: Option<IpAddr>) -> Result<reqwest::Client, BenchError> {
    // reqwest may be built with `rustls-no-provider` (feature unification with the bridge):
    // give it a provider, although every URL here is plain http.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .local_address(local)
        .build()
        .map_err(|e| BenchError::Setup(format!("cannot build the HTTP client: {e}")))
}

/// Which HTTP client, and so which source address, each participant of a crowd uses.
#[derive(Clone)]
pub struct Clients {
    /// One client per address, participant `index` uses `clients[index % len]`.
    clients: Arc<[reqwest::Client]>,
    /// The participants' client code.
    kind: ClientKind,
}

impl Clients {
    /// Every participant shares `http` (one source address, one connection pool).
    pub fn shared(http: &reqwest::Client) -> Self {
        Self {
            clients: Arc::from([http.clone()]),
            kind: ClientKind::Rmcp,
        }
    }

    /// The same clients, running `kind`'s client code.
    pub fn with_kind(self, kind: ClientKind) -> Self {
        Self { kind, ..self }
    }

    /// The participants' client code.
    pub fn kind(&self) -> ClientKind {
        self.kind
    }

    /// Participant `index` (for `index < n`) on address `address(index)`, each with a client
    /// of its own (its own connection pool, as separate machines have).
    pub fn per_participant(n: usize, address: impl Fn(u32) -> IpAddr) -> Result<Self, BenchError> {
        let clients = (0..n.max(1) as u32)
            .map(|index| http_client_from(Some(address(index))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            clients: clients.into(),
            kind: ClientKind::Rmcp,
        })
    }

    /// The client of participant `index`.
    pub fn of(&self, index: u32) -> &reqwest::Client {
        &self.clients[index as usize % self.clients.len()]
    }
}

/// The display name of participant `index` (how partners learn each other's index).
fn display_name(index: u32) -> String {
    format!("p{index}")
}

fn index_of(name: &str) -> Option<u32> {
    name.strip_prefix('p')?.parse().ok()
}

struct Shared {
    clock: Clock,
    partner: watch::Sender<Option<u32>>,
    /// `chatroom.found` events so far (a re-pairing with the same partner changes only this).
    rooms_found: watch::Sender<u64>,
    received: Mutex<Received>,
}

impl Shared {
    /// Records one pushed event that arrived at `now`.
    fn record(&self, now: u64, method: &str, params: Option<&Value>) {
        match method {
            MESSAGE_RECEIVED => {
                let stamp = params
                    .and_then(|p| p.get("text"))
                    .and_then(Value::as_str)
                    .and_then(decode);
                let mut received = self.received.lock().unwrap();
                match stamp {
                    Some(stamp) => received.record(stamp, now),
                    None => received.garbled += 1,
                }
            }
            CHATROOM_FOUND => {
                let partner = params
                    .and_then(|p| p.get("members"))
                    .and_then(|m| m.get(0))
                    .and_then(Value::as_str)
                    .and_then(index_of);
                if partner.is_some() {
                    self.partner.send_replace(partner);
                }
                self.rooms_found.send_modify(|n| *n += 1);
            }
            PARTNER_DISCONNECTED => self.received.lock().unwrap().disconnects += 1,
            _ => {}
        }
    }
}

/// The client handler: records pushed events.
#[derive(Clone)]
struct Inbox(Arc<Shared>);

impl ClientHandler for Inbox {
    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _ctx: NotificationContext<RoleClient>,
    ) {
        // Arrival time first: everything after this is the generator's bookkeeping.
        let now = self.0.clock.now_ns();
        self.0.record(
            now,
            notification.method.as_str(),
            notification.params.as_ref(),
        );
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("mcp-chat-bench", env!("CARGO_PKG_VERSION")),
        )
    }
}

/// One participant.
pub struct Participant {
    /// Its index (display name `p<index>`).
    pub index: u32,
    session: Session,
    shared: Arc<Shared>,
}

/// The client code behind a participant.
enum Session {
    Rmcp(RunningService<RoleClient, Inbox>),
    Lean(Box<crate::lean::LeanSession>),
}

impl Participant {
    /// Opens an MCP session with the server at `url`: `initialize`, `notifications/initialized`
    /// and the standalone GET stream. The stream is never re-opened: a stream that drops shows
    /// up as lost messages instead of being papered over.
    pub async fn connect(
        http: &reqwest::Client,
        url: &str,
        index: u32,
        clock: Clock,
    ) -> Result<Self, String> {
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned())
            .reinit_on_expired_session(false);
        config.retry_config = Arc::new(NeverRetry::default());
        let transport = StreamableHttpClientTransport::with_client(http.clone(), config);
        let shared = Arc::new(Shared {
            clock,
            partner: watch::channel(None).0,
            rooms_found: watch::channel(0).0,
            received: Mutex::default(),
        });
        let service = Inbox(shared.clone())
            .serve(transport)
            .await
            .map_err(|e| failed("connect", &e))?;
        Ok(Self {
            index,
            session: Session::Rmcp(service),
            shared,
        })
    }

    /// Opens a session with `kind`'s client code. A lean participant that will not mute the
    /// logging mirror later (`events_capability`) declares the relay's `mcp-chat/events`
    /// capability instead, which has the same effect from the start.
    pub async fn connect_as(
        kind: ClientKind,
        http: &reqwest::Client,
        url: &str,
        index: u32,
        clock: Clock,
        events_capability: bool,
    ) -> Result<Self, String> {
        let prototype = match kind {
            ClientKind::Rmcp => return Self::connect(http, url, index, clock).await,
            ClientKind::Lean | ClientKind::LeanJson => false,
            ClientKind::Prototype => true,
        };
        let shared = Arc::new(Shared {
            clock,
            partner: watch::channel(None).0,
            rooms_found: watch::channel(0).0,
            received: Mutex::default(),
        });
        let sink = shared.clone();
        let session = crate::lean::LeanSession::open(
            http,
            url,
            prototype,
            kind == ClientKind::LeanJson,
            events_capability,
            move |now, method, params| sink.record(now, method, params),
            clock,
        )
        .await
        .map_err(|e| failed(&e, &"lean connect"))?;
        Ok(Self {
            index,
            session: Session::Lean(Box::new(session)),
            shared,
        })
    }

    /// Enters the queue (or this pair's room) and waits for the partner's `chatroom.found`.
    /// Returns the partner's index.
    pub async fn pair(&self, pairing: Pairing, run_id: &str) -> Result<u32, String> {
        let name = display_name(self.index);
        if let Session::Lean(lean) = &self.session
            && lean.is_prototype()
        {
            // The prototype has no queue and pushes no event on pairing: both join the pair's
            // room, and the partner is known by construction.
            let room = format!("{run_id}-{}", self.index / 2);
            lean.prototype_join(&room, &name).await?;
            let partner = self.index ^ 1;
            self.shared.partner.send_replace(Some(partner));
            return Ok(partner);
        }
        match pairing {
            Pairing::Queue => {
                self.call(tools::ENTER_QUEUE, json!({ "display_name": name }))
                    .await?
            }
            Pairing::Rooms => {
                let room = format!("{run_id}-{}", self.index / 2);
                self.call(
                    tools::JOIN_ROOM,
                    json!({ "room_id": room, "display_name": name }),
                )
                .await?
            }
        };
        let mut partner = self.shared.partner.subscribe();
        match tokio::time::timeout(PAIR_TIMEOUT, partner.wait_for(Option::is_some)).await {
            Ok(Ok(found)) => Ok(found.expect("waited for Some")),
            _ => Err(failed("pairing_timeout", &"no chatroom.found")),
        }
    }

    /// Asks the relay to stop mirroring events as logging notifications (`logging/setLevel
    /// warning`), halving the notifications per message.
    pub async fn mute_log_pushes(&self) -> Result<(), String> {
        let Session::Rmcp(service) = &self.session else {
            // Lean participants declared `mcp-chat/events` at `initialize` instead.
            return Ok(());
        };
        let params = SetLevelRequestParams::new(LoggingLevel::Warning);
        service
            .peer()
            .set_level(params)
            .await
            .map_err(|e| classify(&e))
    }

    /// `chatroom.found` events received so far.
    pub fn rooms_found(&self) -> u64 {
        *self.shared.rooms_found.borrow()
    }

    /// Waits for a `chatroom.found` after the first `seen` ones; returns the partner's index.
    pub async fn wait_room_after(&self, seen: u64) -> Result<u32, String> {
        let mut found = self.shared.rooms_found.subscribe();
        match tokio::time::timeout(PAIR_TIMEOUT, found.wait_for(|n| *n > seen)).await {
            Ok(Ok(_)) => self
                .partner()
                .ok_or_else(|| failed("pairing_timeout", &"no partner in chatroom.found")),
            _ => Err(failed("pairing_timeout", &"no chatroom.found")),
        }
    }

    /// Hands over (and clears) what this participant has received so far.
    pub fn take_received(&self) -> Received {
        std::mem::take(&mut *self.shared.received.lock().unwrap())
    }

    /// The partner, once paired.
    pub fn partner(&self) -> Option<u32> {
        *self.shared.partner.borrow()
    }

    /// What this participant has received so far.
    pub fn received(&self) -> MutexGuard<'_, Received> {
        self.shared.received.lock().unwrap()
    }

    /// Sends one message.
    pub async fn send(&self, text: String) -> Result<(), String> {
        self.call(tools::SEND_MESSAGE, json!({ "text": text }))
            .await
            .map(drop)
    }

    /// Calls a tool; a failure is returned as its error kind (`tool:<code>`, `mcp:<code>`,
    /// `timeout`, `transport_send`, ...).
    pub async fn call(&self, tool: &str, args: Value) -> Result<Value, String> {
        let Value::Object(args) = args else {
            unreachable!("tool arguments are objects");
        };
        let service = match &self.session {
            Session::Rmcp(service) => service,
            Session::Lean(lean) => {
                return match tokio::time::timeout(CALL_TIMEOUT, lean.call(tool, args)).await {
                    Err(_) => Err(failed("timeout", &tool)),
                    Ok(Err(kind)) => Err(failed(&kind, &tool)),
                    Ok(Ok(value)) => Ok(value),
                };
            }
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
        let result = match tokio::time::timeout(CALL_TIMEOUT, service.call_tool(params)).await {
            Err(_) => return Err(failed("timeout", &tool)),
            Ok(Err(e)) => return Err(failed(&classify(&e), &e)),
            Ok(Ok(result)) => result,
        };
        if result.is_error == Some(true) {
            let code = result
                .meta
                .as_ref()
                .and_then(|m| m.0.get(ERROR_META_KEY))
                .and_then(|e| serde_json::from_value::<ToolError>(e.clone()).ok())
                .map_or("unknown", |e| e.code().as_str());
            return Err(failed(&format!("tool:{code}"), &tool));
        }
        Ok(result.structured_content.unwrap_or(Value::Null))
    }

    /// Ends the session (HTTP DELETE), waiting at most a few seconds.
    pub async fn close(self) {
        match self.session {
            Session::Rmcp(service) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), service.cancel()).await;
            }
            Session::Lean(lean) => (*lean).close().await,
        }
    }
}

/// The error kind of a failed request.
fn classify(error: &ServiceError) -> String {
    match error {
        ServiceError::McpError(e) => format!("mcp:{}", e.code.0),
        // The relay's per-session request budget (429, before rmcp sees the request).
        ServiceError::TransportSend(e) if e.to_string().ends_with("HTTP 429") => {
            "http:429".to_owned()
        }
        ServiceError::TransportSend(_) => "transport_send".to_owned(),
        ServiceError::TransportClosed => "transport_closed".to_owned(),
        ServiceError::Timeout { .. } => "timeout".to_owned(),
        ServiceError::Cancelled { .. } => "cancelled".to_owned(),
        ServiceError::UnexpectedResponse => "unexpected_response".to_owned(),
        _ => "other".to_owned(),
    }
}

/// Returns `kind`, printing the details of the first few errors of each kind to stderr.
fn failed(kind: &str, detail: &dyn std::fmt::Display) -> String {
    static PRINTED: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();
    let mut printed = PRINTED.get_or_init(Mutex::default).lock().unwrap();
    let n = printed.entry(kind.to_owned()).or_default();
    if *n < PRINTED_PER_KIND {
        *n += 1;
        eprintln!("error ({kind}): {detail}");
    }
    kind.to_owned()
}
