//! `mcp-chat-relay`: run an mcp-chat relay, or (`mcp-chat-relay admin ...`) act on one through
//! its admin API.

mod admin_cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser};
use mcp_chat::limits;
use mcp_chat_relay::config::{RedisOptions, env};
use mcp_chat_relay::moderation::{self, ModerationPolicy, WordList};
use mcp_chat_relay::{RelayConfig, StoreSettings};
use tracing_subscriber::EnvFilter;

/// Anonymous chat between AI desktop clients, over MCP Streamable HTTP.
///
/// Every flag can also be set through the environment variable shown. By default state lives
/// in memory only (nothing is written to disk); with --store redis://... (rediss://... for
/// TLS) several relays share it and act as one. The Redis password has no flag: give it in a
/// file (--redis-password-file) or in MCP_CHAT_REDIS_PASSWORD.
#[derive(Debug, Parser)]
#[command(name = "mcp-chat-relay", version, about)]
struct Args {
    /// Without a command: run the relay.
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to listen on. The default only accepts connections from this machine; use
    /// 0.0.0.0:8080 (and --allowed-host) to serve others.
    #[arg(long, env = env::BIND, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,

    /// Where chat state lives: `memory` (this process only), or a Redis URL such as
    /// redis://127.0.0.1:6379/0 (rediss://host:6380/0 for TLS) shared by every relay node that
    /// should act as one. Keep the password out of it: see --redis-password-file.
    #[arg(
        long,
        env = env::STORE,
        default_value = "memory",
        hide_env_values = true
    )]
    store: String,

    /// Prefix of every Redis key, so that several relays can share one Redis.
    #[arg(long, env = env::REDIS_PREFIX, default_value = mcp_chat_relay::config::DEFAULT_REDIS_PREFIX)]
    redis_prefix: String,

    /// PEM file of the CA certificate(s) that signed the Redis server's certificate (rediss://
    /// only). Without it the system's roots are used (SSL_CERT_FILE or SSL_CERT_DIR name others).
    #[arg(long, env = env::REDIS_CA_FILE, value_name = "PATH")]
    redis_ca_file: Option<PathBuf>,

    /// PEM certificate chain the relay shows a Redis that checks client certificates (mutual
    /// TLS, rediss:// only); with --redis-client-key-file.
    #[arg(long, env = env::REDIS_CLIENT_CERT_FILE, value_name = "PATH")]
    redis_client_cert_file: Option<PathBuf>,

    /// PEM private key of --redis-client-cert-file.
    #[arg(long, env = env::REDIS_CLIENT_KEY_FILE, value_name = "PATH")]
    redis_client_key_file: Option<PathBuf>,

    /// The Redis user to log in as (Redis 6 ACL); without it, the URL's, else `default`.
    #[arg(long, env = env::REDIS_USERNAME, value_name = "NAME")]
    redis_username: Option<String>,

    /// File holding the Redis password on one line (systemd credentials, container secrets).
    /// Or set MCP_CHAT_REDIS_PASSWORD: there is no flag that takes the password itself, as
    /// command lines are visible to every local user.
    #[arg(long, env = env::REDIS_PASSWORD_FILE, value_name = "PATH")]
    redis_password_file: Option<PathBuf>,

    /// Host name clients use to reach the relay, accepted in the Host header besides the
    /// loopback names (DNS-rebinding protection). Repeat or separate with commas.
    #[arg(
        long = "allowed-host",
        env = env::ALLOWED_HOSTS,
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,

    /// Accept any Host header. Only behind a reverse proxy that checks Host itself.
    #[arg(
        long,
        env = env::ANY_HOST,
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    any_host: bool,

    /// Browser origin allowed to call the relay, e.g. https://chat.example.com. Requests
    /// without an Origin header (desktop clients) always pass; others need to be listed.
    #[arg(
        long = "allowed-origin",
        env = env::ALLOWED_ORIGINS,
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,

    /// Require `Authorization: Bearer <token>` on every MCP request (at least 16 characters).
    /// Prefer the environment variable: command lines are visible to other local users.
    #[arg(long, env = env::ACCESS_TOKEN, hide_env_values = true)]
    access_token: Option<String>,

    /// Read the access token from the first line of this file instead (systemd credentials,
    /// container secrets).
    #[arg(long, env = env::ACCESS_TOKEN_FILE, value_name = "PATH")]
    access_token_file: Option<std::path::PathBuf>,

    /// Seconds a participant whose connection was lost keeps its seat before its partner is told.
    #[arg(long, env = env::GRACE_SECS, default_value_t = limits::DEFAULT_GRACE_PERIOD.as_secs())]
    grace_secs: u64,

    /// Seconds without any request after which a session counts as lost.
    #[arg(long, env = env::IDLE_TIMEOUT_SECS, default_value_t = limits::DEFAULT_IDLE_TIMEOUT.as_secs())]
    idle_timeout_secs: u64,

    /// Members a private room (join_room) may hold, 2 to 64.
    #[arg(long, env = env::ROOM_CAPACITY, default_value_t = limits::DEFAULT_ROOM_CAPACITY)]
    room_capacity: usize,

    /// Largest message, in bytes of UTF-8.
    #[arg(long, env = env::MAX_MESSAGE_BYTES, default_value_t = limits::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,

    /// Largest HTTP request body, in bytes.
    #[arg(long, env = env::MAX_BODY_BYTES, default_value_t = limits::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,

    /// Most concurrent MCP sessions.
    #[arg(long, env = env::MAX_SESSIONS, default_value_t = limits::DEFAULT_MAX_SESSIONS)]
    max_sessions: usize,

    /// Events a participant's inbox holds before the oldest unread ones are dropped.
    #[arg(long, env = env::INBOX_CAPACITY, default_value_t = limits::DEFAULT_INBOX_CAPACITY)]
    inbox_capacity: usize,

    /// Sustained chat tool calls per second allowed to each participant.
    #[arg(long, env = env::RATE_PER_SEC, default_value_t = limits::DEFAULT_RATE_PER_SEC)]
    rate_per_sec: f64,

    /// Chat tool calls a participant may make in a burst.
    #[arg(long, env = env::RATE_BURST, default_value_t = limits::DEFAULT_RATE_BURST)]
    rate_burst: u32,

    /// Serve the MCP conformance suite's `test_reconnection` tool (unlisted), to run the official
    /// conformance suite against this relay. Not for public relays.
    #[arg(long, env = env::CONFORMANCE_TOOLS)]
    conformance_tools: bool,

    /// Take each client's address from the rightmost X-Forwarded-For entry (set this behind a
    /// reverse proxy that appends it, and only if the relay cannot be reached around the proxy).
    /// Without it, behind a local proxy, every client counts as the proxy's one address.
    #[arg(
        long,
        env = env::TRUST_FORWARDED_FOR,
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    trust_forwarded_for: bool,

    /// Most connections open at once from one client address; more are closed at once. 0: no
    /// limit. Not applied with --trust-forwarded-for (connections then come from the proxy).
    #[arg(long, env = env::ADDRESS_MAX_CONNECTIONS, default_value_t = mcp_chat_relay::config::DEFAULT_ADDRESS_MAX_CONNECTIONS)]
    address_max_connections: usize,

    /// Most sessions open at once from one client address; more are answered 429. 0: no limit.
    #[arg(long, env = env::ADDRESS_MAX_SESSIONS, default_value_t = mcp_chat_relay::config::DEFAULT_ADDRESS_MAX_SESSIONS)]
    address_max_sessions: usize,

    /// New MCP sessions per second one client address may open (bursts of ten seconds' worth);
    /// more are answered 429. 0: no limit.
    #[arg(long, env = env::ADDRESS_SESSIONS_PER_SEC, default_value_t = mcp_chat_relay::config::DEFAULT_ADDRESS_SESSIONS_PER_SEC)]
    address_sessions_per_sec: f64,

    /// Refused requests (4xx) per second one client address may cause (bursts of ten seconds'
    /// worth); past that, its requests without a live session are answered 429 unread. 0: no
    /// limit.
    #[arg(long, env = env::ADDRESS_REFUSALS_PER_SEC, default_value_t = mcp_chat_relay::config::DEFAULT_ADDRESS_REFUSALS_PER_SEC)]
    address_refusals_per_sec: f64,

    /// Serve the admin API (reports, bans, kicks, stats) on this address, e.g.
    /// 127.0.0.1:8081. Off by default; never on the public --bind port. Needs
    /// --admin-token-file. Keep it on a private address: it speaks plain HTTP.
    #[arg(long, env = env::ADMIN_BIND)]
    admin_bind: Option<SocketAddr>,

    /// File whose first line is the admin API's bearer token (at least 16 characters). The
    /// `admin` subcommands read the same file.
    #[arg(long, env = env::ADMIN_TOKEN_FILE, value_name = "PATH")]
    admin_token_file: Option<std::path::PathBuf>,

    /// Days a report and its evidence (the room's last 20 messages) are kept, then deleted.
    #[arg(long, env = env::REPORT_RETENTION_DAYS, default_value_t = 30)]
    report_retention_days: u64,

    /// Distinct participants whose reports within --cooldown-window-secs hold someone out of
    /// random matching for --cooldown-secs. 0: no automatic cooldown.
    #[arg(long, env = env::COOLDOWN_REPORTS, default_value_t = moderation::DEFAULT_COOLDOWN_REPORTS)]
    cooldown_reports: u32,

    /// The window in which reports count towards a cooldown, in seconds.
    #[arg(long, env = env::COOLDOWN_WINDOW_SECS, default_value_t = moderation::DEFAULT_COOLDOWN_WINDOW.as_secs())]
    cooldown_window_secs: u64,

    /// How long a cooldown holds a participant out of random matching, in seconds.
    #[arg(long, env = env::COOLDOWN_SECS, default_value_t = moderation::DEFAULT_COOLDOWN_PERIOD.as_secs())]
    cooldown_secs: u64,

    /// File of words and phrases messages may not contain: one per line, case-insensitive,
    /// whole words; lines starting with # are comments. Such messages are refused with an
    /// error to the sender.
    #[arg(long, env = env::BLOCKED_WORDS_FILE, value_name = "PATH")]
    blocked_words_file: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Act on a running relay through its admin API: reports, bans, kicks, stats.
    Admin(admin_cli::AdminArgs),
}

/// The first line of a secret's file, trimmed (editors on Windows may start it with a
/// byte-order mark).
pub(crate) fn read_secret_file(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    mcp_chat::secrets::read_token_file(path).with_context(|| format!("the {what} file"))
}

/// The Redis password in `MCP_CHAT_REDIS_PASSWORD` (empty: none, as Compose passes an unset
/// variable).
fn redis_password_from_env() -> anyhow::Result<Option<String>> {
    match std::env::var(REDIS_PASSWORD_ENV) {
        Ok(password) => Ok(Some(password).filter(|p| !p.is_empty())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("{REDIS_PASSWORD_ENV} is not valid UTF-8")
        }
    }
}

/// The environment variable that may hold the Redis password (it has no flag).
const REDIS_PASSWORD_ENV: &str = "MCP_CHAT_REDIS_PASSWORD";

impl Args {
    fn into_config(mut self) -> anyhow::Result<RelayConfig> {
        if let Some(path) = &self.access_token_file {
            // An empty MCP_CHAT_ACCESS_TOKEN (compose passes one when unset) is no token.
            if self.access_token.as_deref().is_some_and(|t| !t.is_empty()) {
                anyhow::bail!("set the access token or the access token file, not both");
            }
            self.access_token = Some(read_secret_file(path, "access token")?);
        }
        if self.admin_bind.is_some() && self.admin_token_file.is_none() {
            anyhow::bail!(
                "--admin-bind needs --admin-token-file: the admin API is never served without a \
                 token"
            );
        }
        let admin_token = match (&self.admin_bind, &self.admin_token_file) {
            (Some(_), Some(path)) => Some(read_secret_file(path, "admin token")?),
            _ => None,
        };
        let blocked_words = match &self.blocked_words_file {
            Some(path) => WordList::parse(&std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the blocked words file {}", path.display())
            })?),
            None => WordList::default(),
        };
        let redis = RedisOptions {
            ca_file: self.redis_ca_file.clone(),
            client_cert_file: self.redis_client_cert_file.clone(),
            client_key_file: self.redis_client_key_file.clone(),
            username: self.redis_username.clone(),
            password_file: self.redis_password_file.clone(),
            password: redis_password_from_env()?,
        };
        let day = 24 * 60 * 60;
        Ok(RelayConfig {
            store: StoreSettings::parse(&self.store, &self.redis_prefix, &redis)?,
            allowed_hosts: self.allowed_hosts,
            any_host: self.any_host,
            allowed_origins: self.allowed_origins,
            access_token: self.access_token.filter(|t| !t.is_empty()),
            grace_period: Duration::from_secs(self.grace_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            room_capacity: self.room_capacity,
            max_message_bytes: self.max_message_bytes,
            max_body_bytes: self.max_body_bytes,
            max_sessions: self.max_sessions,
            inbox_capacity: self.inbox_capacity,
            rate_per_sec: self.rate_per_sec,
            rate_burst: self.rate_burst,
            conformance_tools: self.conformance_tools,
            trust_forwarded_for: self.trust_forwarded_for,
            address_max_connections: self.address_max_connections,
            address_max_sessions: self.address_max_sessions,
            address_sessions_per_sec: self.address_sessions_per_sec,
            address_refusals_per_sec: self.address_refusals_per_sec,
            admin_token,
            moderation: ModerationPolicy {
                report_retention: Duration::from_secs(
                    self.report_retention_days.saturating_mul(day),
                ),
                cooldown_reports: self.cooldown_reports,
                cooldown_window: Duration::from_secs(self.cooldown_window_secs),
                cooldown_period: Duration::from_secs(self.cooldown_secs),
            },
            blocked_words,
            ..RelayConfig::default()
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let matches = Args::command().get_matches();
    // The store URL is in `ps` output only when it came from the command line.
    let store_on_command_line =
        matches.value_source("store") == Some(clap::parser::ValueSource::CommandLine);
    let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(Command::Admin(admin)) = args.command.take() {
        return admin_cli::run(admin).await;
    }
    let bind = args.bind;
    let admin_bind = args.admin_bind;
    let config = args.into_config()?;
    config.validate().context("invalid settings")?;
    if let StoreSettings::Redis { url, .. } = &config.store
        && store_on_command_line
        && url.has_password_in_url()
    {
        tracing::warn!(
            "the Redis password is in the --store URL on the command line, where every local \
             user can read it (ps, /proc); leave it out of the URL and put it in a file named by \
             --redis-password-file, or in {REDIS_PASSWORD_ENV}"
        );
    }
    if !config.blocked_words.is_empty() {
        tracing::info!(entries = config.blocked_words.len(), "blocked words loaded");
    }
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let admin = match admin_bind {
        Some(admin_bind) => Some(
            tokio::net::TcpListener::bind(admin_bind)
                .await
                .with_context(|| format!("cannot listen on {admin_bind} (admin API)"))?,
        ),
        None => None,
    };
    let local = listener.local_addr()?;
    if let Some(admin) = &admin {
        // Logged first: the line that announces the relay comes last (scripts wait for it).
        tracing::info!(
            "admin API listening on http://{}/admin",
            admin.local_addr()?
        );
    }
    tracing::info!("mcp-chat relay listening on http://{local}/mcp");
    if !local.ip().is_loopback() && config.allowed_hosts.is_empty() && !config.any_host {
        tracing::warn!(
            "listening on {local} but only loopback Host names are allowed; add \
             --allowed-host <your host name> so that other machines can connect"
        );
    }
    mcp_chat_relay::serve_with_admin(listener, admin, config, shutdown_signal()).await?;
    tracing::info!("relay stopped");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
