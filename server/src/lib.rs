//! The mcp-chat relay: anonymous chat matching and routing over MCP Streamable HTTP.
//!
//! # Layout
//! - [`serve`] runs a relay on a bound listener until a shutdown future completes;
//!   [`serve_with_admin`] also serves the operators' admin API on a listener of its own.
//! - [`config`]: validated settings ([`RelayConfig`]).
//! - [`store`]: the chat state behind the [`ChatStore`](store::ChatStore) interface, with the
//!   in-memory implementation.
//! - `mcp`: the MCP endpoint (Streamable HTTP, our own session layer: why is in its docs);
//!   `sse`: its event framing; `handler`: what it answers (tools, lists, logging level);
//!   `push`: a session's GET stream, read from the participant's inbox; `sessions`: sessions,
//!   their liveness and the grace period; `http`: routes and the request guard; `origin`: the
//!   Host and Origin rules; `page`: the chat page at `/` and its same-origin rule; `address`:
//!   limits per client address; `listen`: accepting connections; `metrics`, `rate_limit`.
//! - [`moderation`]: reports, bans, cooldowns and the word list; `admin`: the admin API.
//! - `node`: what every request of a node shares ([`serve`] builds it).

mod address;
mod admin;
pub mod config;
mod handler;
mod http;
mod listen;
mod mcp;
mod metrics;
pub mod moderation;
mod node;
mod origin;
mod page;
mod push;
mod rate_limit;
mod sessions;
mod sse;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_chat::events::DisconnectReason;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{ConfigError, RelayConfig, StoreSettings};

use crate::address::AddressLimits;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::rate_limit::RateLimiter;
use crate::sessions::SessionRegistry;
use crate::store::{ChatStore, MemoryStore, RedisStore, RedisStoreError};

/// After shutdown starts: how long pushers get to deliver the final `partner.disconnected`
/// events before sessions are closed.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(500);
/// Open connections the admin API accepts at once.
const ADMIN_CONNECTIONS: usize = 32;
/// After shutdown starts: the longest the relay waits for connections to finish.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Why the relay could not serve.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The settings cannot work.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The store cannot be used.
    #[error("store: {0}")]
    Store(#[from] RedisStoreError),
    /// The HTTP server failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the relay on `listener` until `shutdown` completes, then closes every session and
/// returns within a few seconds. With the in-memory store it first tells everyone in a room
/// (`partner.disconnected{reason: relay_shutdown}`); with a shared store the rooms stay open for
/// the other nodes, and this node's participants carry on wherever they reconnect.
pub async fn serve(
    listener: TcpListener,
    config: RelayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    serve_with_admin(listener, None, config, shutdown).await
}

/// Like [`serve`], and with `admin` also serves the admin API there (`/admin/...`, bearer
/// [`RelayConfig::admin_token`], which must then be set). The admin API is never served on the
/// public listener.
pub async fn serve_with_admin(
    listener: TcpListener,
    admin: Option<TcpListener>,
    config: RelayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    config.validate()?;
    if admin.is_some() && config.admin_token.is_none() {
        return Err(ConfigError::AdminWithoutToken.into());
    }
    let store: Arc<dyn ChatStore> = match &config.store {
        StoreSettings::Memory => Arc::new(
            MemoryStore::new(config.inbox_capacity, config.room_capacity)
                .with_policy(config.moderation),
        ),
        StoreSettings::Redis { url, prefix } => {
            let store =
                RedisStore::connect(url, prefix, config.inbox_capacity, config.room_capacity)
                    .await?
                    .with_policy(config.moderation);
            tracing::info!(%prefix, "chat state in Redis, shared with every node using it");
            Arc::new(store)
        }
    };
    let node = Arc::new(Node {
        // The POST budget of a session: well above what the chat rate limit lets through
        // (tool calls), plus room for pings and notifications.
        sessions: Arc::new(SessionRegistry::new(
            config.grace_period,
            config.idle_timeout,
            config.rate_per_sec * 5.0 + 1.0,
            f64::from(config.rate_burst) * 2.0 + 10.0,
        )),
        limiter: RateLimiter::new(config.rate_per_sec, config.rate_burst),
        addresses: Arc::new(AddressLimits::new(
            // Behind a trusted proxy every connection comes from the proxy.
            if config.trust_forwarded_for {
                0
            } else {
                config.address_max_connections
            },
            config.address_max_sessions,
            config.address_sessions_per_sec,
            config.address_refusals_per_sec,
        )),
        metrics: Metrics::default(),
        shutdown: CancellationToken::new(),
        started: Instant::now(),
        store,
        config,
    });

    let app = http::router(node.clone());

    // The admin API gets the public listener's header-read timeout and a connection cap of its
    // own: it is private, but a stuck client must not hold it open.
    let admin = admin.map(|listener| {
        let stop = node.shutdown.clone();
        let app = admin::router(node.clone());
        let node = node.clone();
        tokio::spawn(async move {
            let stopped = async move { stop.cancelled().await };
            listen::serve_http(listener, app, ADMIN_CONNECTIONS, node, stopped).await;
        })
    });
    let sweeper = tokio::spawn(sweep(node.clone()));
    let presence = node
        .store
        .is_shared()
        .then(|| tokio::spawn(presence(node.clone())));

    let draining = CancellationToken::new();
    let graceful = {
        let node = node.clone();
        let draining = draining.clone();
        async move {
            shutdown.await;
            if node.store.is_shared() {
                tracing::info!("shutting down: rooms stay open on the other nodes");
            } else {
                tracing::info!("shutting down: telling everyone in a room");
            }
            draining.cancel();
            // Close the rooms first, so that waits woken by the shutdown find the events.
            if let Err(error) = node
                .store
                .close_all_rooms(DisconnectReason::RelayShutdown)
                .await
            {
                tracing::warn!(%error, "could not close rooms at shutdown");
            }
            node.shutdown.cancel();
            tokio::time::sleep(SHUTDOWN_FLUSH).await;
            // Ends every stream, so the connections close.
            for id in node.sessions.session_ids() {
                node.sessions.close(&id, false);
            }
        }
    };
    // Each participant holds its GET stream and, at times, a POST or two.
    let max_connections = node
        .config
        .max_sessions
        .saturating_mul(3)
        .saturating_add(64);
    let server = listen::serve_http(listener, app, max_connections, node.clone(), graceful);
    let result = tokio::select! {
        () = server => Ok(()),
        _ = async {
            draining.cancelled().await;
            tokio::time::sleep(SHUTDOWN_DEADLINE).await;
        } => {
            tracing::warn!("connections still open after {SHUTDOWN_DEADLINE:?}; closing anyway");
            Ok(())
        }
    };
    sweeper.abort();
    if let Some(admin) = admin {
        admin.abort();
    }
    if let Some(presence) = presence {
        presence.abort();
    }
    result
}

/// Every sweep interval: ends participants whose grace period ran out (their partners hear
/// `timeout`), closes sessions that stayed lost and forgets client addresses that hold nothing.
async fn sweep(node: Arc<Node>) {
    let mut tick = tokio::time::interval(node.config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let found = node.sessions.sweep(Instant::now());
        for who in found.expired {
            tracing::debug!(participant = ?who, "grace period over");
            // With a shared store the participant may have come back through another node:
            // presence decides (see `presence`).
            if !node.store.is_shared() {
                node.metrics
                    .participants_timed_out
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Err(error) = node.store.end(&who, DisconnectReason::Timeout).await {
                    tracing::warn!(%error, "could not end a timed-out participant");
                }
            }
            node.limiter.forget(&who);
        }
        for id in found.close {
            node.sessions.close(&id, false);
        }
        node.addresses.prune();
    }
}

/// How often a node vouches for its participants in a shared store: often enough that a
/// participant whose node died is ended close to one grace period after its last heartbeat.
fn heartbeat_interval(grace: Duration) -> Duration {
    (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// With a shared store: heartbeats this node's live participants, and ends (with `timeout`)
/// those that no node served for a grace period, wherever they were: a node that died cannot
/// end its own. Errors (Redis away) are logged and retried on the next beat.
async fn presence(node: Arc<Node>) {
    let every = heartbeat_interval(node.config.grace_period);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let live = node.sessions.live_participants();
        if let Err(error) = node.store.heartbeat(&live).await {
            tracing::warn!(%error, "heartbeat failed");
            continue;
        }
        // One beat of slack: the last heartbeat may have come up to one interval before the
        // participant was lost.
        match node
            .store
            .reap_absent(node.config.grace_period + every)
            .await
        {
            Ok(reaped) => {
                for who in reaped {
                    tracing::debug!(participant = ?who, "no node served it for the grace period");
                    node.metrics
                        .participants_timed_out
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    node.limiter.forget(&who);
                }
            }
            Err(error) => tracing::warn!(%error, "reaping absent participants failed"),
        }
    }
}
