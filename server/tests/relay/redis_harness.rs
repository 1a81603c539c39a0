//! Harness of the Redis tests: a real `redis-server` on a free loopback port, relay nodes as
//! child processes of the `mcp-chat-relay` binary sharing it, and bounded waits.
//!
//! Without `redis-server` on PATH the tests cannot run. They must not look as if they passed:
//! [`RedisServer::start`] writes a banner straight to the process's stderr (the test harness
//! captures `eprintln!`, not a direct write) and returns `None`; with `CI` set it panics instead.

use std::collections::VecDeque;
use std::fmt::Display;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Chatter, PROMPT, Pushed};

/// What a run without `redis-server` says, loudly.
pub const NOT_RUN_BANNER: &str =
    "REDIS TESTS DID NOT RUN: redis-server is not on PATH (apt-get install redis-server)";

/// How long a process may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a process may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Relay log lines kept for failure messages.
const KEPT_LOG_LINES: usize = 60;

/// True when `redis-server` can be run. Otherwise says so on stderr (past the capture) and
/// returns false, or panics when `CI` is set: CI must run these tests.
pub fn redis_available(test: &str) -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        Command::new("redis-server")
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    if found {
        return true;
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{NOT_RUN_BANNER} — and CI is set, where the Redis tests must run ({test})");
    }
    let rule = "!".repeat(NOT_RUN_BANNER.len());
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "\n{rule}\n{NOT_RUN_BANNER}\n  not run: {test}\n{rule}\n"
    );
    let _ = err.flush();
    false
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binds a free loopback port")
        .port()
}

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

/// Sends a SIGTERM to `child` (with `kill`, as the shutdown test does).
fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("runs kill");
    assert!(status.success(), "kill -TERM {} failed", child.id());
}

/// Waits for `child` to exit, for at most `within`.
async fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("polls the child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One `redis-server` on 127.0.0.1, killed on drop.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    /// The append-only file's directory (removed on drop), when persistent.
    dir: Option<PathBuf>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a throwaway server (no RDB, no AOF). `None` (after the banner) when
    /// `redis-server` is not on PATH.
    pub async fn start(test: &str) -> Option<Self> {
        Self::launch(test, false).await
    }

    /// Starts a server that keeps its data across [`Self::stop`] and [`Self::restart`]
    /// (append-only file, fsync on every write, in a fresh temporary directory).
    pub async fn start_persistent(test: &str) -> Option<Self> {
        Self::launch(test, true).await
    }

    async fn launch(test: &str, persistent: bool) -> Option<Self> {
        if !redis_available(test) {
            return None;
        }
        let dir = persistent.then(|| {
            let dir = std::env::temp_dir().join(format!(
                "mcp-chat-redis-test-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(&dir).expect("creates the Redis data directory");
            dir
        });
        let mut server = Self {
            port: 0,
            dir,
            child: None,
        };
        // A port freed by bind(0) can be taken by someone else before redis-server binds it.
        let mut last_error = String::new();
        for _ in 0..3 {
            server.port = free_port();
            match server.spawn().await {
                Ok(()) => return Some(server),
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// The store URL relay nodes get.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""]);
        match &self.dir {
            Some(dir) => {
                command
                    .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                    .arg(dir)
                    .arg("--logfile")
                    .arg(dir.join("redis.log"));
            }
            None => {
                command.args(["--appendonly", "no"]);
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ping(self.port).await {
                self.child = Some(child);
                return Ok(());
            }
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("redis-server on port {port} exited: {status}"));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-server on port {port} did not answer PING within {START_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server (SIGTERM: the append-only file is complete) and waits for it to exit.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("redis-server is running");
        sigterm(&child);
        if wait_exit(&mut child, STOP_TIMEOUT).await.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-server did not exit within {STOP_TIMEOUT:?} of SIGTERM");
        }
    }

    /// Starts the server again on the same port (and directory).
    pub async fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "stop redis-server before restarting it"
        );
        if let Err(error) = self.spawn().await {
            panic!("redis-server did not restart: {error}");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// True when something on 127.0.0.1:`port` answers `PING` with `+PONG`.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer == *b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Ok(true))
    )
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
    args: Vec<String>,
    child: Option<Child>,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl RelayNode {
    /// Starts a node on a port of its own, with the store at `store` (e.g. a Redis URL).
    pub async fn start(store: &str, options: &NodeOptions) -> Self {
        let mut args = vec![
            "--store".to_owned(),
            store.to_owned(),
            "--grace-secs".to_owned(),
            options.grace_secs.to_string(),
            "--rate-per-sec".to_owned(),
            "1000".to_owned(),
            "--rate-burst".to_owned(),
            "1000".to_owned(),
        ];
        args.extend(options.extra_args.iter().cloned());
        let mut node = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            url: String::new(),
            admin_url: None,
            args,
            child: None,
            log: Arc::default(),
        };
        node.spawn("127.0.0.1:0").await;
        node
    }

    async fn spawn(&mut self, bind: &str) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-chat-relay"));
        command.args(["--bind", bind]).args(&self.args);
        // Settings from the caller's environment would change what is tested.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MCP_CHAT_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .env("RUST_LOG", "info,rmcp=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs mcp-chat-relay");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        let (admin_tx, admin_rx) = mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = announced_addr(&line) {
                    let _ = tx.send(addr);
                }
                if let Some(addr) = announced_after(&line, "admin API listening on http://") {
                    let _ = admin_tx.send(addr);
                }
                let mut log = log.lock().unwrap();
                if log.len() == KEPT_LOG_LINES {
                    log.pop_front();
                }
                log.push_back(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            if let Ok(addr) = rx.try_recv() {
                break addr;
            }
            if let Some(status) = child.try_wait().expect("polls the relay") {
                // Let the reader thread take the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "relay `{bind} {}` exited before listening ({status}); log:\n{}",
                    self.args.join(" "),
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "relay did not announce its address within {START_TIMEOUT:?}; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        self.addr = addr;
        self.url = format!("http://{addr}/mcp");
        // The admin line is logged before the public one.
        self.admin_url = admin_rx.try_recv().ok().map(|a| format!("http://{a}"));
        self.child = Some(child);
    }

    /// SIGTERM; waits for the exit and asserts it is clean.
    pub async fn sigterm(&mut self) {
        let mut child = self.child.take().expect("the relay is running");
        sigterm(&child);
        match wait_exit(&mut child, STOP_TIMEOUT).await {
            Some(status) => assert!(
                status.success(),
                "relay exit status after SIGTERM: {status}; log:\n{}",
                self.log_tail()
            ),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "relay did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                    self.log_tail()
                );
            }
        }
    }

    /// SIGKILL: the node vanishes without a word.
    pub fn sigkill(&mut self) {
        let mut child = self.child.take().expect("the relay is running");
        child.kill().expect("kills the relay");
        let _ = child.wait();
    }

    /// Starts the node again on the same address, with the same settings.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the relay before restarting it");
        let bind = self.addr.to_string();
        self.spawn(&bind).await;
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
        let log = self.log.lock().unwrap();
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for RelayNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The address in the relay's startup line `mcp-chat relay listening on http://ADDR/mcp`.
fn announced_addr(line: &str) -> Option<SocketAddr> {
    announced_after(line, "relay listening on http://")
}

/// The address after `prefix` in a startup line.
fn announced_after(line: &str, prefix: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(prefix)? + prefix.len()..];
    rest.split('/').next()?.trim().parse().ok()
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
