//! Validated relay settings.
//!
//! The binary turns flags and environment variables into a [`RelayConfig`]; tests build one in
//! code. Every limit has a default taken from the shared contract ([`mcp_chat::limits`]).

use std::path::{Path, PathBuf};
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
        /// The Redis to use, with the credentials and the trust anchors that go with it.
        url: RedisUrl,
        /// Prefix of every key (several relays can share one Redis under different prefixes).
        prefix: String,
    },
}

/// The key prefix used when none is given.
pub const DEFAULT_REDIS_PREFIX: &str = "mcp-chat:";

/// A Redis URL (`redis://` or `rediss://`, TLS), completed with what should not be written
/// into it: the password (from a file or the environment) and the CA that signed the server's
/// certificate. Built by [`StoreSettings::parse`], which reads and checks the files.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// `redis[s]://[[user]:password@]host[:port][/db]` or `redis+unix://...`, as given. May
    /// carry credentials itself; [`Self::password`] and [`Self::username`] replace them.
    pub url: String,
    /// PEM certificates that sign the server's certificate (`rediss://` only). `None`: the
    /// system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The certificate chain and key (PEM) the relay shows a Redis that checks its clients'
    /// certificates (mutual TLS, `rediss://` only).
    pub client_identity: Option<ClientIdentity>,
    /// The user to log in as (Redis ACL); `None`: the URL's, else `default`.
    pub username: Option<String>,
    /// The password; `None`: the URL's, else none.
    pub password: Option<String>,
}

impl RedisUrl {
    /// A URL used as it is: credentials, if any, in it; the system's roots for `rediss://`.
    pub fn plain(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_pem: None,
            client_identity: None,
            username: None,
            password: None,
        }
    }

    /// True for `rediss://` (TLS).
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }

    /// True when the URL itself carries a password (which then shows wherever the URL does).
    pub fn has_password_in_url(&self) -> bool {
        redis::IntoConnectionInfo::into_connection_info(self.url.as_str())
            .is_ok_and(|info| info.redis_settings().password().is_some())
    }

    /// The URL with any password in it replaced by `***`, for messages.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) if rest[..at].contains(':') => {
                let user = rest[..at].split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***{}", &rest[at..])
            }
            _ => self.url.clone(),
        }
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisUrl")
            .field("url", &self.redacted())
            .field("ca_pem", &self.ca_pem.as_ref().map(|pem| pem.len()))
            .field(
                "client_identity",
                &self.client_identity.as_ref().map(|_| "***"),
            )
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A client certificate chain and its private key, both PEM, checked to belong together.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate chain, the relay's own certificate first.
    pub cert_pem: Vec<u8>,
    /// The private key of the first certificate.
    pub key_pem: Vec<u8>,
}

/// The Redis settings given besides the URL, before their files are read.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// `--redis-ca-file`: PEM file of the CA certificate(s) the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// `--redis-client-cert-file`: PEM certificate chain for mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    /// `--redis-client-key-file`: PEM private key of that certificate.
    pub client_key_file: Option<PathBuf>,
    /// `--redis-username`.
    pub username: Option<String>,
    /// `--redis-password-file`: a file holding the password on one line.
    pub password_file: Option<PathBuf>,
    /// `MCP_CHAT_REDIS_PASSWORD` (empty: none).
    pub password: Option<String>,
}

impl StoreSettings {
    /// Reads `memory` or a `redis://` / `rediss://` URL (keys under `prefix`), with the CA and
    /// the password `redis` names: files are read and checked here, so that a wrong one stops
    /// the relay at start with its name.
    pub fn parse(value: &str, prefix: &str, redis: &RedisOptions) -> Result<Self, ConfigError> {
        let value = value.trim();
        let password = redis.password.clone().filter(|p| !p.is_empty());
        if value.eq_ignore_ascii_case("memory") {
            let given = [
                (redis.ca_file.is_some(), "--redis-ca-file"),
                (redis.client_cert_file.is_some(), "--redis-client-cert-file"),
                (redis.client_key_file.is_some(), "--redis-client-key-file"),
                (redis.username.is_some(), "--redis-username"),
                (redis.password_file.is_some(), "--redis-password-file"),
                (password.is_some(), "MCP_CHAT_REDIS_PASSWORD"),
            ];
            if let Some((_, name)) = given.into_iter().find(|(set, _)| *set) {
                return Err(ConfigError::RedisOptionWithoutRedis(name));
            }
            return Ok(Self::Memory);
        }
        if !["redis://", "rediss://", "redis+unix://"]
            .iter()
            .any(|scheme| value.starts_with(scheme))
        {
            return Err(ConfigError::Store(value.to_owned()));
        }
        let info = redis::IntoConnectionInfo::into_connection_info(value)
            .map_err(|e| ConfigError::RedisUrl(e.to_string()))?;
        let tls = match info.addr() {
            redis::ConnectionAddr::TcpTls { insecure: true, .. } => {
                return Err(ConfigError::RedisInsecure);
            }
            redis::ConnectionAddr::TcpTls { .. } => true,
            _ => false,
        };
        let ca_pem = match &redis.ca_file {
            Some(_) if !tls => return Err(ConfigError::RedisCaWithoutTls),
            Some(path) => Some(read_ca_file(path)?),
            None => None,
        };
        let client_identity = match (&redis.client_cert_file, &redis.client_key_file) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => return Err(ConfigError::RedisClientCertHalf),
            (Some(_), Some(_)) if !tls => return Err(ConfigError::RedisCaWithoutTls),
            (Some(cert), Some(key)) => Some(read_client_identity(cert, key)?),
        };
        let password = match (&redis.password_file, password) {
            (Some(_), Some(_)) => return Err(ConfigError::RedisPasswordTwice),
            (Some(path), None) => Some(read_password_file(path)?),
            (None, password) => password,
        };
        if password.is_some() && info.redis_settings().password().is_some() {
            return Err(ConfigError::RedisPasswordTwice);
        }
        let username = redis.username.clone().filter(|u| !u.is_empty());
        if username.is_some() && info.redis_settings().username().is_some() {
            return Err(ConfigError::RedisUsernameTwice);
        }
        // Redis logs a user in with its password (`AUTH user password`); a name alone is unused.
        if username.is_some() && password.is_none() && info.redis_settings().password().is_none() {
            return Err(ConfigError::RedisUsernameWithoutPassword);
        }
        Ok(Self::Redis {
            url: RedisUrl {
                url: value.to_owned(),
                ca_pem,
                client_identity,
                username,
                password,
            },
            prefix: prefix.to_owned(),
        })
    }
}

/// The bytes of a PEM file of CA certificates, once every certificate in it was checked to be
/// usable as a trust anchor.
fn read_ca_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let bad = |reason: String| ConfigError::RedisCaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let mut anchors = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not valid PEM: {e}")))?;
        anchors
            .add(cert)
            .map_err(|e| bad(format!("a certificate in it cannot be a CA: {e}")))?;
    }
    if anchors.is_empty() {
        return Err(bad(
            "it holds no certificate (a PEM block `-----BEGIN CERTIFICATE-----`)".to_owned(),
        ));
    }
    Ok(pem)
}

/// A client certificate chain and key from their PEM files, once rustls accepted them as a
/// pair.
fn read_client_identity(cert: &Path, key: &Path) -> Result<ClientIdentity, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let bad = |path: &Path, reason: String| ConfigError::RedisClientCert {
        path: path.display().to_string(),
        reason,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| bad(cert, format!("cannot read it: {e}")))?;
    let key_pem = std::fs::read(key).map_err(|e| bad(key, format!("cannot read it: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, format!("not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad(
            cert,
            "it holds no certificate (a PEM block `-----BEGIN CERTIFICATE-----`)".to_owned(),
        ));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(key, format!("it holds no usable private key: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, private_key, &provider).map_err(|e| {
        bad(
            key,
            format!(
                "it does not go with the certificate in {}: {e}",
                cert.display()
            ),
        )
    })?;
    Ok(ClientIdentity { cert_pem, key_pem })
}

/// The password in a file: its one line, trimmed (editors on Windows may start it with a
/// byte-order mark).
fn read_password_file(path: &Path) -> Result<String, ConfigError> {
    let bad = |reason: &str| ConfigError::RedisPasswordFile {
        path: path.display().to_string(),
        reason: reason.to_owned(),
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(&format!("cannot read it: {e}")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text).trim();
    if text.is_empty() {
        return Err(bad("it is empty"));
    }
    if text.contains(['\n', '\r']) {
        return Err(bad(
            "it holds more than one line (the password alone is expected)",
        ));
    }
    Ok(text.to_owned())
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
    /// A store that is neither `memory` nor a Redis URL.
    #[error("store must be `memory` or a redis:// or rediss:// (TLS) URL, got {0:?}")]
    Store(String),
    /// A Redis URL that does not parse.
    #[error("invalid Redis URL: {0}")]
    RedisUrl(String),
    /// `rediss://...#insecure`: TLS without checking the server's certificate.
    #[error(
        "rediss:// with #insecure is not supported: the relay always checks the server's \
         certificate; give the CA that signed it with --redis-ca-file"
    )]
    RedisInsecure,
    /// A CA file for a connection without TLS.
    #[error(
        "--redis-ca-file or a client certificate is given but the store URL is not rediss://: \
         a redis:// connection is not encrypted; use rediss://"
    )]
    RedisCaWithoutTls,
    /// A CA file that cannot be used.
    #[error("the Redis CA file {path} cannot be used: {reason}")]
    RedisCaFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Only one of the client certificate and its key.
    #[error(
        "mutual TLS needs both --redis-client-cert-file and --redis-client-key-file, or neither"
    )]
    RedisClientCertHalf,
    /// A client certificate or key file that cannot be used.
    #[error("the Redis client certificate file {path} cannot be used: {reason}")]
    RedisClientCert {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A password file that cannot be used.
    #[error("the Redis password file {path} cannot be used: {reason}")]
    RedisPasswordFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The password given in more than one place.
    #[error(
        "the Redis password is given twice (of the store URL, --redis-password-file and \
         MCP_CHAT_REDIS_PASSWORD, give one)"
    )]
    RedisPasswordTwice,
    /// The user name given in the URL and as a setting.
    #[error("the Redis user name is given twice (in the store URL and --redis-username)")]
    RedisUsernameTwice,
    /// A user name without a password to log in with.
    #[error("--redis-username needs a password (--redis-password-file or MCP_CHAT_REDIS_PASSWORD)")]
    RedisUsernameWithoutPassword,
    /// A Redis setting with the in-memory store.
    #[error("{0} is set, but the store is `memory` (give --store redis://... or rediss://...)")]
    RedisOptionWithoutRedis(&'static str),
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

    /// A file of its own in the temporary directory, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(contents: &[u8]) -> Self {
            let path = std::env::temp_dir().join(format!(
                "mcp-chat-config-test-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::write(&path, contents).unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn redis_url(store: &str, options: &RedisOptions) -> Result<RedisUrl, ConfigError> {
        match StoreSettings::parse(store, DEFAULT_REDIS_PREFIX, options)? {
            StoreSettings::Redis { url, .. } => Ok(url),
            StoreSettings::Memory => panic!("{store} is not memory"),
        }
    }

    #[test]
    fn password_file_is_trimmed_and_may_start_with_a_bom() {
        let file = TempFile::new("\u{feff}  s3cret pw \r\n".as_bytes());
        let options = RedisOptions {
            password_file: Some(file.0.clone()),
            ..RedisOptions::default()
        };
        let url = redis_url("rediss://redis.example.com:6380/0", &options).unwrap();
        assert_eq!(url.password.as_deref(), Some("s3cret pw"));
        assert!(url.is_tls());
        assert!(!format!("{url:?}").contains("s3cret"), "{url:?}");
    }

    #[test]
    fn unusable_password_files_are_named() {
        for (contents, reason) in [
            (&b""[..], "it is empty"),
            (&b" \n\n"[..], "it is empty"),
            (&b"one\ntwo\n"[..], "more than one line"),
        ] {
            let file = TempFile::new(contents);
            let options = RedisOptions {
                password_file: Some(file.0.clone()),
                ..RedisOptions::default()
            };
            let error = redis_url("redis://127.0.0.1/", &options).unwrap_err();
            let text = error.to_string();
            assert!(
                text.contains(&file.0.display().to_string()) && text.contains(reason),
                "{text}"
            );
        }
        let options = RedisOptions {
            password_file: Some(PathBuf::from("/nonexistent/mcp-chat-redis-password")),
            ..RedisOptions::default()
        };
        let text = redis_url("redis://127.0.0.1/", &options)
            .unwrap_err()
            .to_string();
        assert!(text.contains("cannot read it"), "{text}");
    }

    #[test]
    fn the_password_is_given_once() {
        let file = TempFile::new(b"pw-from-file");
        let both = RedisOptions {
            password_file: Some(file.0.clone()),
            password: Some("pw-from-env".to_owned()),
            ..RedisOptions::default()
        };
        assert_eq!(
            redis_url("redis://127.0.0.1/", &both),
            Err(ConfigError::RedisPasswordTwice)
        );
        let env = RedisOptions {
            password: Some("pw-from-env".to_owned()),
            ..RedisOptions::default()
        };
        assert_eq!(
            redis_url("redis://:in-url@127.0.0.1/", &env),
            Err(ConfigError::RedisPasswordTwice)
        );
        // Compose passes an unset variable as an empty one.
        let empty = RedisOptions {
            password: Some(String::new()),
            ..RedisOptions::default()
        };
        let url = redis_url("redis://:in-url@127.0.0.1/", &empty).unwrap();
        assert!(url.has_password_in_url());
        assert_eq!(url.redacted(), "redis://:***@127.0.0.1/");
        assert_eq!(url.password, None);
    }

    #[test]
    fn ca_files_are_checked() {
        let not_pem = TempFile::new(b"this is not a certificate\n");
        let options = RedisOptions {
            ca_file: Some(not_pem.0.clone()),
            ..RedisOptions::default()
        };
        let text = redis_url("rediss://127.0.0.1:6380/", &options)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("holds no certificate") && text.contains("Redis CA file"),
            "{text}"
        );
        let garbled = TempFile::new(
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        );
        let options = RedisOptions {
            ca_file: Some(garbled.0.clone()),
            ..RedisOptions::default()
        };
        let text = redis_url("rediss://127.0.0.1:6380/", &options)
            .unwrap_err()
            .to_string();
        assert!(text.contains("cannot be a CA"), "{text}");
        // A CA for a connection that has no TLS would be silently unused.
        assert_eq!(
            redis_url("redis://127.0.0.1/", &options),
            Err(ConfigError::RedisCaWithoutTls)
        );
    }

    #[test]
    fn certificate_checks_stay_on() {
        assert_eq!(
            redis_url(
                "rediss://127.0.0.1:6380/#insecure",
                &RedisOptions::default()
            ),
            Err(ConfigError::RedisInsecure)
        );
    }

    #[test]
    fn redis_settings_need_a_redis_store() {
        let options = RedisOptions {
            username: Some("relay".to_owned()),
            ..RedisOptions::default()
        };
        assert_eq!(
            StoreSettings::parse("memory", DEFAULT_REDIS_PREFIX, &options),
            Err(ConfigError::RedisOptionWithoutRedis("--redis-username"))
        );
        assert_eq!(
            redis_url("redis://other@127.0.0.1/", &options),
            Err(ConfigError::RedisUsernameTwice)
        );
        assert_eq!(
            redis_url("redis://127.0.0.1/", &options),
            Err(ConfigError::RedisUsernameWithoutPassword)
        );
        let with_password = RedisOptions {
            password: Some("pw".to_owned()),
            ..options.clone()
        };
        let url = redis_url("redis://127.0.0.1/", &with_password).unwrap();
        assert_eq!(url.username.as_deref(), Some("relay"));
        for (given, shown) in [
            ("rediss://relay:pw@h:6380/0", "rediss://relay:***@h:6380/0"),
            ("redis://relay@h/", "redis://relay@h/"),
            ("redis://h/#a@b", "redis://h/#a@b"),
        ] {
            assert_eq!(RedisUrl::plain(given).redacted(), shown);
        }
        assert!(matches!(
            StoreSettings::parse("https://example.com", DEFAULT_REDIS_PREFIX, &options),
            Err(ConfigError::Store(_))
        ));
    }
}
