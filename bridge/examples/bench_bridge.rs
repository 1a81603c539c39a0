//! Measures the bridge against its budgets: spawn → `initialize` answer, resident memory while
//! chatting, time added to a tool call compared with calling the relay directly, binary size.
//!
//! ```text
//! cargo build --release -p mcp-chat-bridge
//! cargo run --release -p mcp-chat-bridge --example bench_bridge [-- path/to/mcp-chat-bridge]
//! ```
//!
//! A relay runs in this process on 127.0.0.1; the bridge is the real binary on real pipes.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const SPAWN_RUNS: usize = 30;
const CALLS: usize = 1000;

struct Host {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl Host {
    fn spawn(bin: &PathBuf, relay: &str, dir: &PathBuf) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .env("MCP_CHAT_RELAY", relay)
            .env("MCP_CHAT_CONFIG_DIR", dir)
            .env("MCP_CHAT_LOG_DIR", dir.join("logs"))
            .env("MCP_CHAT_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Ok(Self {
            child,
            stdin,
            stdout,
            next_id: 0,
        })
    }

    async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut line = serde_json::to_vec(&json!({
            "jsonrpc": "2.0", "id": id, "method": method, "params": params
        }))?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        loop {
            let Some(line) = self.stdout.next_line().await? else {
                bail!("the bridge closed stdout");
            };
            let message: Value = serde_json::from_str(&line)?;
            if message["id"] == id {
                return Ok(message);
            }
        }
    }

    async fn initialize(&mut self) -> anyhow::Result<Value> {
        let init = self
            .request(
                "initialize",
                json!({ "protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": { "name": "bench", "version": "1" } }),
            )
            .await?;
        self.stdin
            .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
            .await?;
        Ok(init)
    }

    async fn close(mut self) -> anyhow::Result<()> {
        drop(self.stdin);
        tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await??;
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The bridge's reqwest has no TLS provider of its own (see bridge/Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bin = match std::env::args().nth(1) {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?
            .parent()
            .and_then(|examples| examples.parent())
            .context("cannot find the target directory")?
            .join("mcp-chat-bridge"),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let relay = format!("http://{}/mcp", listener.local_addr()?);
    let config = mcp_chat_relay::RelayConfig {
        rate_per_sec: 1e6,
        rate_burst: 1_000_000,
        ..Default::default()
    };
    tokio::spawn(mcp_chat_relay::serve(
        listener,
        config,
        std::future::pending(),
    ));
    let dir = std::env::temp_dir().join(format!("mcp-chat-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    // 1. Spawn → initialize answer.
    let mut starts = Vec::new();
    for _ in 0..SPAWN_RUNS {
        let started = Instant::now();
        let mut host = Host::spawn(&bin, &relay, &dir)?;
        host.initialize().await?;
        starts.push(started.elapsed());
        host.close().await?;
    }
    starts.sort();

    // 2. Chatting through the bridge with a direct partner; memory afterwards.
    let mut host = Host::spawn(&bin, &relay, &dir)?;
    host.initialize().await?;
    let partner = ().serve(StreamableHttpClientTransport::from_uri(relay.as_str())).await?;
    let call = |name: &str, args: Value| {
        let Value::Object(args) = args else {
            unreachable!()
        };
        CallToolRequestParams::new(name.to_owned()).with_arguments(args)
    };
    host.request(
        "tools/call",
        json!({ "name": "enter_queue", "arguments": {} }),
    )
    .await?;
    partner.call_tool(call("enter_queue", json!({}))).await?;
    for n in 0..200 {
        partner
            .call_tool(call(
                "send_message",
                json!({ "text": format!("message {n} ").repeat(20) }),
            ))
            .await?;
        host.request(
            "tools/call",
            json!({ "name": "send_message",
            "arguments": { "text": format!("reply {n}") } }),
        )
        .await?;
    }
    host.request(
        "tools/call",
        json!({ "name": "wait_for_message", "arguments": { "timeout_secs": 0 } }),
    )
    .await?;

    // 3. Tool call round trips: through the bridge, and directly.
    let mut bridged = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        host.request(
            "tools/call",
            json!({ "name": "chat_status", "arguments": {} }),
        )
        .await?;
        bridged.push(started.elapsed());
    }
    let mut direct = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        partner.call_tool(call("chat_status", json!({}))).await?;
        direct.push(started.elapsed());
    }
    bridged.sort();
    direct.sort();
    let memory = rss_kib(host.child.id().unwrap_or(0));
    host.close().await?;
    let size = std::fs::metadata(&bin)?.len();

    println!("mcp-chat-bridge budgets ({})", bin.display());
    println!("| measure | result | budget |");
    println!("|---|---|---|");
    println!(
        "| spawn → initialize answer (median / p90 / min of {SPAWN_RUNS}) | {} / {} / {} | < 5 ms |",
        ms(percentile(&starts, 0.5)),
        ms(percentile(&starts, 0.9)),
        ms(starts[0])
    );
    match memory {
        Some((rss, peak)) => println!(
            "| resident memory after 400 messages (now / peak) | {:.1} MiB / {:.1} MiB | < 8 MB |",
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        ),
        None => println!("| resident memory | (needs /proc) | < 8 MB |"),
    }
    println!(
        "| chat_status round trip via bridge (median / p99 of {CALLS}) | {} / {} | |",
        ms(percentile(&bridged, 0.5)),
        ms(percentile(&bridged, 0.99))
    );
    println!(
        "| chat_status round trip direct (median / p99 of {CALLS}) | {} / {} | |",
        ms(percentile(&direct, 0.5)),
        ms(percentile(&direct, 0.99))
    );
    println!(
        "| added by the bridge (median) | {} | < 0.2 ms |",
        ms(percentile(&bridged, 0.5).saturating_sub(percentile(&direct, 0.5)))
    );
    println!(
        "| binary size | {:.2} MiB | report |",
        size as f64 / (1024.0 * 1024.0)
    );
    let _ = partner.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
