//! Validated relay settings.
//!
//! The binary turns flags and environment variables into a [`RelayConfig`]; tests build one in
//! code. Every limit has a default taken from the shared contract ([`mcp_chat::limits`]).

use std::time::Duration;

use mcp_chat::limits;

use crate::moderation::{ModerationPolicy, WordList};

/// Where the chat state lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreSettings {
    /// In this process: one relay node; every chat ends when it stops.
    #[default]
    Memory,
    /// In Redis, shared by every relay node given the same URL and key prefix.
    Redis {
        /// `redis://[[user]:password@]host[:port][/db]`.
        url: String,
        /// Prefix of every key (several relays can share one Redis under different prefixes).
        prefix: String,
    },
}

/// The key prefix used when none is given.
pub const DEFAULT_REDIS_PREFIX: &str = "mcp-chat:";

impl StoreSettings {
    /// Reads `memory` or a `redis://` URL (keys under `prefix`).
    pub fn parse(value: &str, prefix: &str) -> Result<Self, ConfigError> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("memory") {
            return Ok(Self::Memory);
        }
        if value.starts_with("redis://") || value.starts_with("redis+unix://") {
            return Ok(Self::Redis {
                url: value.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        Err(ConfigError::Store(value.to_owned()))
    }
}

/// Default [`RelayConfig::body_timeout`]: a request body is a few kilobytes at most.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Default [`RelayConfig::address_max_connections`]: a bridge holds two or three connections,
/// so this is a large office behind one NAT.
pub const DEFAULT_ADDRESS_MAX_CONNECTIONS: usize = 512;
/// Default [`RelayConfig::address_max_sessions`]: an office behind one NAT, and one address cannot
/// take the relay's whole `max_sessions`.
pub const DEFAULT_ADDRESS_MAX_SESSIONS: usize = 256;
/// Default [`RelayConfig::address_sessions_per_sec`]: a bridge opens one session when it starts
/// and one per reconnect; bursts of 100 let a NAT's worth of clients come back after an outage.
pub const DEFAULT_ADDRESS_SESSIONS_PER_SEC: f64 = 10.0;
/// Default [`RelayConfig::address_refusals_per_sec`]: well-behaved clients are rarely refused
/// (a 404 after a relay restart, once per session).
pub const DEFAULT_ADDRESS_REFUSALS_PER_SEC: f64 = 10.0;

/// Everything the relay needs to know to serve, already checked.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where the chat state lives.
    pub store: StoreSettings,
    /// `Host` header values accepted in addition to the loopback names (DNS-rebinding guard).
    /// A relay reached by a public name must list it here (with and without the port when a
    /// non-default port is used).
    pub allowed_hosts: Vec<String>,
    /// Accept any `Host` header (only behind a reverse proxy that checks it).
    pub any_host: bool,
    /// `Origin` header values accepted from browsers, e.g. `https://chat.example.com`. Requests
    /// without an `Origin` (all desktop clients) always pass; any other origin gets 403.
    pub allowed_origins: Vec<String>,
    /// When set, every request to `/mcp` must carry `Authorization: Bearer <token>` (401 otherwise).
    pub access_token: Option<String>,
    /// How long a participant whose connection was lost keeps its seat before its partners are
    /// told (`partner.disconnected{reason: timeout}`).
    pub grace_period: Duration,
    /// A session with no request for this long (and none in flight) counts as lost.
    pub idle_timeout: Duration,
    /// Members a private room may hold.
    pub room_capacity: usize,
    /// Largest message text in bytes of UTF-8.
    pub max_message_bytes: usize,
    /// Largest HTTP request body in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Most concurrent MCP sessions (503 for new ones above it).
    pub max_sessions: usize,
    /// Events an inbox holds before the oldest unread ones are dropped.
    pub inbox_capacity: usize,
    /// Sustained chat tool calls per second and participant.
    pub rate_per_sec: f64,
    /// Chat tool calls a participant may make in a burst.
    pub rate_burst: u32,
    /// How often liveness is checked.
    pub sweep_interval: Duration,
    /// Serve the conformance suite's `test_reconnection` tool (unlisted; for running the
    /// official MCP conformance suite against this relay).
    pub conformance_tools: bool,
    /// How long a request body may take to arrive once its head is read: a body that stalls or
    /// trickles would otherwise hold its connection for as long as the client likes.
    pub body_timeout: Duration,
    /// How long a client may take to send a request head, and a kept-alive connection may sit
    /// idle between requests, before the connection is closed.
    pub header_read_timeout: Duration,
    /// Take the client's address from the rightmost `X-Forwarded-For` entry instead of the
    /// connection's peer (only when every request comes through a proxy that appends it:
    /// anyone reaching the relay directly could claim any address). Also turns off the
    /// per-address connection cap: every connection then comes from the proxy.
    pub trust_forwarded_for: bool,
    /// Most connections open at once from one client address (0: no limit).
    pub address_max_connections: usize,
    /// Most sessions open at once from one client address (0: no limit).
    pub address_max_sessions: usize,
    /// New MCP sessions per second one client address may open, in bursts of ten seconds'
    /// worth (0: no limit).
    pub address_sessions_per_sec: f64,
    /// Refused requests (4xx) per second one client address may cause, in bursts of ten
    /// seconds' worth, before its requests without a live session are refused unread
    /// (0: no limit).
    pub address_refusals_per_sec: f64,
    /// The bearer token of the admin API. Required when the relay serves one (see
    /// [`serve_with_admin`](crate::serve_with_admin)); the API has its own listener, never
    /// the public one.
    pub admin_token: Option<String>,
    /// Report retention and the automatic cooldown.
    pub moderation: ModerationPolicy,
    /// Words and phrases messages may not contain (empty: none).
    pub blocked_words: WordList,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            store: StoreSettings::Memory,
            allowed_hosts: Vec::new(),
            any_host: false,
            allowed_origins: Vec::new(),
            access_token: None,
            grace_period: limits::DEFAULT_GRACE_PERIOD,
            idle_timeout: limits::DEFAULT_IDLE_TIMEOUT,
            room_capacity: limits::DEFAULT_ROOM_CAPACITY,
            max_message_bytes: limits::DEFAULT_MAX_MESSAGE_BYTES,
            max_body_bytes: limits::DEFAULT_MAX_BODY_BYTES,
            max_sessions: limits::DEFAULT_MAX_SESSIONS,
            inbox_capacity: limits::DEFAULT_INBOX_CAPACITY,
            rate_per_sec: limits::DEFAULT_RATE_PER_SEC,
            rate_burst: limits::DEFAULT_RATE_BURST,
            sweep_interval: Duration::from_millis(500),
            conformance_tools: false,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            header_read_timeout: Duration::from_secs(10),
            trust_forwarded_for: false,
            address_max_connections: DEFAULT_ADDRESS_MAX_CONNECTIONS,
            address_max_sessions: DEFAULT_ADDRESS_MAX_SESSIONS,
            address_sessions_per_sec: DEFAULT_ADDRESS_SESSIONS_PER_SEC,
            address_refusals_per_sec: DEFAULT_ADDRESS_REFUSALS_PER_SEC,
            admin_token: None,
            moderation: ModerationPolicy::default(),
            blocked_words: WordList::default(),
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// Room capacity outside 2..=MAX_ROOM_CAPACITY.
    #[error("room capacity must be between 2 and {max}, got {0}", max = limits::MAX_ROOM_CAPACITY)]
    RoomCapacity(usize),
    /// A limit that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// The message limit does not fit in a request body.
    #[error("max message bytes ({message}) must be smaller than max body bytes ({body})")]
    MessageLargerThanBody {
        /// Message limit.
        message: usize,
        /// Body limit.
        body: usize,
    },
    /// A rate that is negative or not a number.
    #[error("{0} must be a number of at least 0 (0: no limit)")]
    NotARate(&'static str),
    /// An origin without a scheme.
    #[error("allowed origin {0:?} must include a scheme, e.g. https://chat.example.com")]
    Origin(String),
    /// A store that is neither `memory` nor a Redis URL this relay can use.
    #[error(
        "store must be `memory` or a redis:// URL (TLS to Redis is not built in: reach it over \
         a private network or a local TLS tunnel), got {0:?}"
    )]
    Store(String),
    /// An access token that is too short to be a secret.
    #[error("the access token must have at least 16 characters")]
    WeakAccessToken,
    /// An admin listener without a token to check.
    #[error("the admin API needs a token (--admin-token-file) when it is served (--admin-bind)")]
    AdminWithoutToken,
    /// An admin token that is too short to be a secret.
    #[error("the admin token must have at least 16 characters")]
    WeakAdminToken,
}

impl RelayConfig {
    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(2..=limits::MAX_ROOM_CAPACITY).contains(&self.room_capacity) {
            return Err(ConfigError::RoomCapacity(self.room_capacity));
        }
        for (name, value) in [
            ("max message bytes", self.max_message_bytes),
            ("max body bytes", self.max_body_bytes),
            ("max sessions", self.max_sessions),
            ("inbox capacity", self.inbox_capacity),
            ("rate burst", self.rate_burst as usize),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.rate_per_sec <= 0.0 || !self.rate_per_sec.is_finite() {
            return Err(ConfigError::Zero("rate per second"));
        }
        for (name, value) in [
            ("address sessions per second", self.address_sessions_per_sec),
            ("address refusals per second", self.address_refusals_per_sec),
        ] {
            if value < 0.0 || !value.is_finite() {
                return Err(ConfigError::NotARate(name));
            }
        }
        for (name, value) in [
            ("grace period", self.grace_period),
            ("idle timeout", self.idle_timeout),
            ("sweep interval", self.sweep_interval),
            ("header read timeout", self.header_read_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        // A message travels JSON-escaped inside a JSON-RPC envelope; leave room for both.
        if self.max_message_bytes * 2 + 1024 > self.max_body_bytes {
            return Err(ConfigError::MessageLargerThanBody {
                message: self.max_message_bytes,
                body: self.max_body_bytes,
            });
        }
        if let Some(origin) = self.allowed_origins.iter().find(|o| !o.contains("://")) {
            return Err(ConfigError::Origin(origin.clone()));
        }
        if self.access_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::WeakAccessToken);
        }
        if self.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::WeakAdminToken);
        }
        for (name, value) in [
            ("report retention", self.moderation.report_retention),
            ("cooldown window", self.moderation.cooldown_window),
            ("cooldown period", self.moderation.cooldown_period),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(RelayConfig::default().validate(), Ok(()));
    }
}
