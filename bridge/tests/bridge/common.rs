//! Test harness: relays served in this process on loopback, bridge processes driven through
//! real pipes with newline-delimited JSON-RPC, as a desktop host does.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen promptly.
pub const PROMPT: Duration = Duration::from_secs(10);

pub use testkit::relay::InProcessRelay as Relay;
pub use testkit::temp_dir;

/// The relay settings of the bridge's tests: a 3 s grace period (longer than any reconnect the
/// tests make), a fast sweep, a generous rate limit.
pub fn relay_config() -> mcp_chat_relay::RelayConfig {
    mcp_chat_relay::RelayConfig {
        grace_period: Duration::from_secs(3),
        ..testkit::relay::test_config()
    }
}

/// A bridge process, driven like a host drives it.
pub struct Bridge {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Notifications and requests seen while waiting for something else.
    pub backlog: Vec<Value>,
    next_id: u64,
    pub dir: PathBuf,
}

impl Bridge {
    /// Spawns a bridge for `relay_url` with its own config dir and fast timers.
    pub fn spawn(relay_url: &str, dir: PathBuf, extra_env: &[(&str, &str)]) -> Self {
        Self::spawn_gated(relay_url, dir, extra_env, None)
    }

    /// Like [`Bridge::spawn`], but the host reads the bridge's stdout only while `reading` is
    /// true (a host that stops reading): nothing is read until it first is.
    pub fn spawn_gated(
        relay_url: &str,
        dir: PathBuf,
        extra_env: &[(&str, &str)],
        reading: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Self {
        let program = std::path::Path::new(env!("CARGO_BIN_EXE_mcp-chat-bridge"));
        Self::spawn_program(program, relay_url, dir, extra_env, reading)
    }

    /// Like [`Bridge::spawn_gated`], for the bridge binary at `program` (e.g. one unpacked
    /// from a bundle).
    pub fn spawn_program(
        program: &std::path::Path,
        relay_url: &str,
        dir: PathBuf,
        extra_env: &[(&str, &str)],
        reading: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Self {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MCP_CHAT_RELAY", relay_url)
            .env("MCP_CHAT_CONFIG_DIR", &dir)
            .env("MCP_CHAT_LOG_DIR", dir.join("logs"))
            .env("MCP_CHAT_PING_SECS", "0.3")
            .env("MCP_CHAT_CONNECT_WAIT_SECS", "2")
            .env("MCP_CHAT_PROGRESS_SECS", "0.5")
            .env("MCP_CHAT_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("stderr.log")).unwrap(),
            ))
            .kill_on_drop(true);
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn the bridge");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reading = reading;
            let mut reader = BufReader::new(stdout).lines();
            loop {
                if let Some(gate) = &mut reading
                    && gate.wait_for(|open| *open).await.is_err()
                {
                    return;
                }
                let Ok(Some(line)) = reader.next_line().await else {
                    return;
                };
                let value = serde_json::from_str::<Value>(&line).unwrap_or_else(|e| {
                    panic!("bridge wrote a non-JSON line to stdout: {line:?} ({e})")
                });
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            backlog: Vec::new(),
            next_id: 100,
            dir,
        }
    }

    /// Writes raw bytes to the bridge's stdin.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// Sends one JSON-RPC message.
    pub async fn send(&mut self, message: Value) {
        let mut line = serde_json::to_vec(&message).unwrap();
        line.push(b'\n');
        self.write_raw(&line).await;
    }

    /// Closes stdin (the host went away).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next message from the bridge.
    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(PROMPT, self.lines.recv())
            .await
            .expect("bridge answered in time")
            .expect("bridge stdout open")
    }

    /// Sends a request and returns its response; other messages go to the backlog.
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
        self.response(id).await
    }

    /// Waits for the response with this id.
    pub async fn response(&mut self, id: u64) -> Value {
        loop {
            let message = self.next().await;
            if message["id"] == id && message.get("method").is_none() {
                return message;
            }
            self.backlog.push(message);
        }
    }

    /// Calls a tool and returns the result object.
    pub async fn call(&mut self, tool: &str, args: Value) -> Value {
        let response = self
            .request("tools/call", json!({ "name": tool, "arguments": args }))
            .await;
        response["result"].clone()
    }

    /// Calls a tool that must succeed; returns its structured content.
    pub async fn ok(&mut self, tool: &str, args: Value) -> Value {
        let result = self.call(tool, args).await;
        assert_eq!(result["isError"], false, "{tool}: {result}");
        result["structuredContent"].clone()
    }

    /// `initialize` + `notifications/initialized`, as a host does; returns the result.
    pub async fn initialize(&mut self) -> Value {
        self.initialize_with(json!({ "sampling": {} })).await
    }

    /// `initialize` as a host that renders MCP Apps (the chat pane) does.
    pub async fn initialize_ui(&mut self) -> Value {
        self.initialize_with(json!({
            "extensions": {
                mcp_chat::pane::UI_EXTENSION: { "mimeTypes": [mcp_chat::pane::UI_MIME_TYPE] }
            }
        }))
        .await
    }

    /// `initialize` with these client capabilities + `notifications/initialized`.
    pub async fn initialize_with(&mut self, capabilities: Value) -> Value {
        let response = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": "2025-06-18",
                    "capabilities": capabilities,
                    "clientInfo": { "name": "test-host", "version": "1" }
                }),
            )
            .await;
        self.send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        response["result"].clone()
    }

    /// Waits for a notification with this method (looking in the backlog first).
    pub async fn notification(&mut self, method: &str) -> Value {
        self.notification_where(method, |_| true).await
    }

    /// Waits for a notification with this method whose params satisfy `pred`.
    pub async fn notification_where(
        &mut self,
        method: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self
            .backlog
            .iter()
            .position(|m| m["method"] == method && m.get("id").is_none() && pred(&m["params"]))
        {
            return self.backlog.remove(i)["params"].clone();
        }
        loop {
            let message = self.next().await;
            if message["method"] == method
                && message.get("id").is_none()
                && pred(&message["params"])
            {
                return message["params"].clone();
            }
            self.backlog.push(message);
        }
    }

    /// Reads for `wait`, returning everything that arrived (plus the backlog).
    pub async fn drain(&mut self, wait: Duration) -> Vec<Value> {
        let mut all = std::mem::take(&mut self.backlog);
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, self.lines.recv()).await {
            all.push(m);
        }
        all
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(PROMPT, self.child.wait())
            .await
            .expect("bridge exits in time")
            .unwrap()
    }

    /// The bridge's stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

/// Two bridges on `url`, initialized and paired in the random queue.
pub async fn paired(url: &str) -> (Bridge, Bridge) {
    let mut a = Bridge::spawn(url, temp_dir("a"), &[]);
    let mut b = Bridge::spawn(url, temp_dir("b"), &[]);
    a.initialize().await;
    b.initialize().await;
    let s = a.ok("enter_queue", json!({ "display_name": "Ada" })).await;
    assert_eq!(s["state"], "waiting");
    let s = b.ok("enter_queue", json!({ "display_name": "Bob" })).await;
    assert_eq!(s["state"], "in_room");
    a.notification("chatroom.found").await;
    b.notification("chatroom.found").await;
    (a, b)
}
