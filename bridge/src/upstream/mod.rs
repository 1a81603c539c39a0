//! The relay side: one MCP Streamable HTTP client connection, kept alive and re-made.
//!
//! The connection passes raw JSON-RPC messages both ways, so every server message (custom
//! notifications, progress, sampling requests) reaches the host unchanged and in order. It
//! also owns the connection's health, and that is why it is a state machine of its own
//! ([`connection::Connection`]) rather than a loop inside the bridge: health is judged from
//! several sources at once — pings, the relay's answers, what each HTTP exchange proved — and
//! each verdict must lead to exactly one report and one way out.
//!
//! - it makes the MCP handshake itself (the host was already answered, instantly);
//! - it pings the relay every ping interval: that keeps the relay's idle reaper away and
//!   notices a relay that hangs;
//! - the HTTP client ([`client::RelayClient`]) reports what an exchange proves: a refused
//!   connection (nobody serves at that URL now) or a 404 for the session (the relay no longer
//!   has it). Either ends the transport at once, whatever the phase of the ping: the one
//!   fail-over path hands over to the next relay URL, or retries the only one with capped
//!   exponential backoff and jitter, and the bridge tells the host "lost … restored";
//! - every new relay session it opens carries the `seq` of the newest chat event received
//!   (`mcp-chat-last-seq`), so the relay (another node, or a restarted one) resumes its pushes
//!   from what actually arrived;
//! - when the bridge has no room for a relay message (its host stops reading stdout), it holds
//!   that one message and stops reading the relay — the backpressure — but keeps its timer and
//!   the queue to the relay going, and keeps the relay session alive with pings sent straight
//!   over HTTP, so a host that stops reading does not lose its seat.
//!
//! Files: `connection.rs` (the state machine), `client.rs` (HTTP: the transport, the
//! handshake, keepalive pings), `error.rs` ([`UpstreamError`]).

mod client;
mod connection;
mod error;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use client::REFUSED_UNREAD;
pub use error::UpstreamError;

use crate::settings::Settings;

/// The `seq` of the newest chat event received from the relay; 0 until the first one. The bridge
/// writes it as events arrive, the connection reads it whenever it opens a relay session.
pub type LastSeq = Arc<AtomicU64>;

/// What the connection reports to the bridge.
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

/// What the connection needs to know of its bridge.
pub struct Upstream {
    /// The bridge's settings (relay URLs, headers, ping interval).
    pub settings: Arc<Settings>,
    /// The participant's identity.
    pub identity: String,
    /// The resume point, kept by the bridge.
    pub last_seq: LastSeq,
    /// The `initialize` params the relay gets (the host's, adjusted).
    pub init_params: Value,
}

/// Runs the relay connection until `shutdown`, then ends the relay session (HTTP DELETE).
/// Reports go to `events`; messages for the relay come from `outgoing`.
pub async fn run(
    upstream: Upstream,
    events: mpsc::Sender<UpstreamEvent>,
    outgoing: mpsc::Receiver<Value>,
    shutdown: CancellationToken,
) {
    connection::Connection::new(upstream, events, outgoing, shutdown)
        .run()
        .await;
}

/// Connects to the relay once with a throwaway identity (so a bridge running for the same user
/// keeps its seat), ends the session, and returns the relay's `initialize` result.
pub(crate) async fn probe(settings: &Settings) -> Result<Value, UpstreamError> {
    let identity =
        crate::identity::new_token().map_err(|e| UpstreamError::Identity(e.to_string()))?;
    let params = json!({
        "protocolVersion": mcp_chat::protocol::NEWEST_SUPPORTED_VERSION,
        "capabilities": {},
        "clientInfo": { "name": "mcp-chat-bridge doctor", "version": env!("CARGO_PKG_VERSION") },
    });
    // A new identity has received nothing: no resume point.
    let last_seq = LastSeq::default();
    let mut session =
        client::connect(settings, &settings.relay_url, &identity, &last_seq, &params).await?;
    client::close(&mut session.transport).await;
    Ok(session.server)
}
