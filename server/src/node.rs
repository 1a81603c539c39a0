//! What every session of a relay node shares: settings, the store, the session registry,
//! limits, metrics and the shutdown signal. Built once by `serve`, handed to every request.

use std::sync::Arc;
use std::time::Instant;

use mcp_chat::events::DisconnectReason;
use tokio_util::sync::CancellationToken;

use crate::RelayConfig;
use crate::address::AddressLimits;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::sessions::{SessionEnd, SessionRegistry};
use crate::store::ChatStore;

/// What every session of this node shares.
pub(crate) struct Node {
    pub(crate) config: RelayConfig,
    pub(crate) store: Arc<dyn ChatStore>,
    pub(crate) sessions: Arc<SessionRegistry>,
    pub(crate) limiter: RateLimiter,
    pub(crate) addresses: Arc<AddressLimits>,
    pub(crate) metrics: Metrics,
    /// Cancelled when shutdown starts: tools refuse new work, waits return.
    pub(crate) shutdown: CancellationToken,
    pub(crate) started: Instant,
}

impl Node {
    /// Closes a session. `explicit` (a DELETE): its participant ends now and its partners
    /// hear `disconnected`; otherwise the participant's grace period runs.
    pub(crate) async fn end_session(&self, id: &str, explicit: bool) {
        if let Some(SessionEnd::Explicit(who)) = self.sessions.close(id, explicit) {
            tracing::debug!(participant = ?who, "session deleted by its client");
            if let Err(error) = self.store.end(&who, DisconnectReason::Disconnected).await {
                tracing::warn!(%error, "could not end participant after DELETE");
            }
            self.limiter.forget(&who);
        }
    }
}
