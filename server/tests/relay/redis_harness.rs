//! Harness of the Redis tests: a real `redis-server` on a free loopback port, relay nodes as
//! child processes of the `mcp-chat-relay` binary sharing it, and bounded waits.
//!
//! Without `redis-server` on PATH the tests cannot run. They must not look as if they passed:
//! [`RedisServer::start`] writes a banner straight to the process's stderr (the test harness
//! captures `eprintln!`, not a direct write) and returns `None`; with `CI` set it panics instead.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::process::{RelayProcess, test_args};

use crate::common::{Chatter, PROMPT, Pushed};

pub use testkit::redis::RedisServer;

/// A fresh identity token (at least 32 printable characters) labelled for logs.
pub fn identity_token(label: &str) -> String {
    format!("redis-test-{label}-{}", uuid::Uuid::new_v4().simple())
}

/// Polls `probe` every 20 ms until it gives `Some`, for at most `within`; panics naming `what`.
pub async fn eventually<T, F, Fut>(what: impl Display, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Settings of a relay node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// `--grace-secs`.
    pub grace_secs: u64,
    /// More flags, e.g. `--admin-bind`.
    pub extra_args: Vec<String>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            grace_secs: 30,
            extra_args: Vec::new(),
        }
    }
}

/// One relay node: an `mcp-chat-relay` process on 127.0.0.1, killed on drop.
pub struct RelayNode {
    /// Where it listens (the same after [`Self::restart`]).
    pub addr: SocketAddr,
    /// Its MCP endpoint.
    pub url: String,
    /// Its admin API's base URL, when it serves one (`--admin-bind`).
    pub admin_url: Option<String>,
    process: RelayProcess,
}

impl RelayNode {
    /// Starts a node on a port of its own, with the store at `store` (e.g. a Redis URL).
    pub async fn start(store: &str, options: &NodeOptions) -> Self {
        let mut args = vec!["--store".to_owned(), store.to_owned()];
        args.extend(test_args(options.grace_secs));
        args.extend(options.extra_args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let binary = Path::new(env!("CARGO_BIN_EXE_mcp-chat-relay"));
        let process = RelayProcess::start(binary, &args, &[]).await;
        Self {
            addr: process.addr,
            url: process.url.clone(),
            admin_url: process.admin_url.clone(),
            process,
        }
    }

    /// SIGTERM; waits for the exit and asserts it is clean.
    pub async fn sigterm(&mut self) {
        let status = self.process.sigterm().await;
        assert!(
            status.success(),
            "relay exit status after SIGTERM: {status}; log:\n{}",
            self.log_tail()
        );
    }

    /// SIGKILL: the node vanishes without a word.
    pub fn sigkill(&mut self) {
        self.process.sigkill();
    }

    /// Starts the node again on the same address, with the same settings.
    pub async fn restart(&mut self) {
        self.process.restart().await;
        self.admin_url = self.process.admin_url.clone();
    }

    /// GET `/healthz`: status code and JSON body (`Value::Null` if it is not JSON). Panics,
    /// with the node's log, when there is no answer within [`PROMPT`].
    pub async fn health(&self) -> (u16, Value) {
        let started = Instant::now();
        self.try_health().await.unwrap_or_else(|error| {
            panic!(
                "GET /healthz of {}: no answer after {:?}: {error}; log:\n{}",
                self.addr,
                started.elapsed(),
                self.log_tail()
            )
        })
    }

    /// Like [`Self::health`], but returns the error.
    pub async fn try_health(&self) -> Result<(u16, Value), String> {
        let client = reqwest::Client::builder().timeout(PROMPT).build().unwrap();
        let response = client
            .get(format!("http://{}/healthz", self.addr))
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }

    /// The last lines the node logged, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log()
    }
}

/// Waits up to `within` for a `message.received` push with this text; other pushes are kept
/// in `skipped`. Returns the push's params.
pub async fn pushed_text(
    chatter: &mut Chatter,
    text: &str,
    within: Duration,
    skipped: &mut Vec<Pushed>,
) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match chatter.next_push_within(left).await? {
            Pushed::Custom { method, params }
                if method == "message.received" && params["text"] == text =>
            {
                return Some(params);
            }
            other => skipped.push(other),
        }
    }
}

/// Waits up to `within` for a custom notification with this method; others are kept in
/// `skipped`.
pub async fn pushed_method(
    chatter: &mut Chatter,
    method: &str,
    within: Duration,
    skipped: &mut Vec<Pushed>,
) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match chatter.next_push_within(left).await? {
            Pushed::Custom { method: m, params } if m == method => return Some(params),
            other => skipped.push(other),
        }
    }
}

/// The custom notifications (method, params) among `pushes`.
pub fn customs(pushes: &[Pushed]) -> Vec<(String, Value)> {
    pushes
        .iter()
        .filter_map(|p| match p {
            Pushed::Custom { method, params } => Some((method.clone(), params.clone())),
            Pushed::Log(_) => None,
        })
        .collect()
}
