//! Failover between relay nodes that share state through a real Redis: relay processes are
//! killed for real, and the bridge must carry on through the other node without losing or
//! repeating a message.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::common::{Bridge, temp_dir};

/// Grace period of the relays: longer than a failover takes, short enough to wait out.
const GRACE_SECS: u64 = 10;

/// A `redis-server` of this test's own, on a free loopback port, without persistence.
struct Redis {
    _child: Child,
    port: u16,
}

impl Redis {
    /// Starts one, or says loudly that the Redis tests did not run (fails under CI) and
    /// returns `None` when `redis-server` is not installed.
    async fn start() -> Option<Self> {
        let Some(binary) = on_path("redis-server") else {
            let banner = "REDIS TESTS DID NOT RUN: redis-server is not on PATH \
                          (apt-get install redis-server)";
            assert!(std::env::var_os("CI").is_none(), "{banner}");
            // Written directly: the test harness captures `eprintln!`, and this must be seen.
            let line = "!".repeat(banner.len());
            let _ = write!(std::io::stderr(), "\n{line}\n{banner}\n{line}\n\n");
            return None;
        };
        let port = free_port();
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !pong(port).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server on port {port} does not answer PING"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Self {
            _child: child,
            port,
        })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// True when Redis on `port` answers a raw PING with `+PONG`.
async fn pong(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").await.is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut reply)).await,
        Ok(Ok(_))
    ) && reply == *b"+PONG\r\n"
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The relay binary of this build (`target/<profile>/mcp-chat-relay`), built first: the bridge
/// package does not build it, and a binary left over from an older build may lack flags.
fn relay_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            // target/<profile>/deps/<test binary>
            let profile_dir = exe.parent().and_then(Path::parent).unwrap();
            let binary =
                profile_dir.join(format!("mcp-chat-relay{}", std::env::consts::EXE_SUFFIX));
            let target_dir = profile_dir.parent().unwrap();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut build = std::process::Command::new(cargo);
            build
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "mcp-chat-relay",
                    "--bin",
                    "mcp-chat-relay",
                ])
                .arg("--target-dir")
                .arg(target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.ends_with("release") {
                build.arg("--release");
            }
            let output = build.output();
            match output {
                Ok(out) if out.status.success() => {}
                // A build broken by work in progress elsewhere: an existing binary still tests.
                Ok(_) | Err(_) if binary.is_file() => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "note: cannot rebuild mcp-chat-relay; using {}",
                        binary.display()
                    );
                }
                Ok(out) => panic!(
                    "cannot build mcp-chat-relay:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => panic!("cannot run cargo to build mcp-chat-relay: {e}"),
            }
            binary
        })
        .clone()
}

/// A relay node: a real `mcp-chat-relay` process on the shared Redis.
struct Node {
    child: Child,
    addr: SocketAddr,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Node {
    async fn start(redis: &Redis) -> Self {
        let mut command = Command::new(relay_binary());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MCP_CHAT_") {
                command.env_remove(key);
            }
        }
        let grace = GRACE_SECS.to_string();
        command
            .args(["--bind", "127.0.0.1:0", "--store", &redis.url()])
            .args(["--grace-secs", &grace])
            .args(["--rate-per-sec", "1000", "--rate-burst", "1000"])
            // The listening line is an info log; a RUST_LOG of the caller's must not hide it.
            .env("RUST_LOG", "info,rmcp=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start mcp-chat-relay");
        let log = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = log.clone();
        tokio::spawn(async move {
            let mut port_tx = Some(port_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1)
                    && let Some(port) = rest.split('/').next().and_then(|p| p.parse::<u16>().ok())
                    && let Some(tx) = port_tx.take()
                {
                    let _ = tx.send(port);
                }
                let mut log = kept.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let port = match tokio::time::timeout(Duration::from_secs(20), port_rx).await {
            Ok(Ok(port)) => port,
            // The reader ended (the relay exited) or the relay is silent.
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let status = child.try_wait().ok().flatten();
                panic!(
                    "mcp-chat-relay did not start listening (exit: {status:?}):\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            url: format!("http://127.0.0.1:{port}/mcp"),
            log,
        }
    }

    /// SIGKILL: no goodbye to anyone, as when a machine dies.
    async fn kill(&mut self) {
        self.child.kill().await.expect("kill the relay");
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// The network between a bridge and a node: it can swallow everything the node sends (so
/// pushes the node counts as delivered are lost in flight, as when a machine dies with data in
/// its buffers) and then cut every connection.
struct Link {
    url: String,
    swallow: Arc<AtomicBool>,
    cut: CancellationToken,
}

impl Link {
    async fn start(node: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let swallow = Arc::new(AtomicBool::new(false));
        let cut = CancellationToken::new();
        let (swallowing, cutting) = (swallow.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                // Once cut, the listener is dropped: new connections are refused.
                let accepted = tokio::select! {
                    _ = cutting.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                tokio::spawn(relay_bytes(
                    client,
                    node,
                    swallowing.clone(),
                    cutting.clone(),
                ));
            }
        });
        Self { url, swallow, cut }
    }
}

async fn relay_bytes(
    client: TcpStream,
    node: SocketAddr,
    swallow: Arc<AtomicBool>,
    cut: CancellationToken,
) {
    let Ok(upstream) = TcpStream::connect(node).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_node, mut to_node) = upstream.into_split();
    let outbound = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_node).await;
    };
    let inbound = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from_node.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) if swallow.load(Ordering::SeqCst) => {}
                Ok(n) => {
                    if to_client.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    // Either direction ending ends both, and so does the cut: the sockets close here.
    tokio::select! {
        _ = cut.cancelled() => {}
        _ = outbound => {}
        _ = inbound => {}
    }
}

/// Reads from `bridge` into `seen` until `done(seen)` or `limit` has passed.
async fn read_until(
    bridge: &mut Bridge,
    seen: &mut Vec<Value>,
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        seen.extend(bridge.drain(Duration::from_millis(100)).await);
        if done(seen) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
    }
}

/// Texts of the host-side `message.received` notifications, in the order they arrived.
fn received(seen: &[Value]) -> Vec<String> {
    seen.iter()
        .filter(|m| m["method"] == "message.received" && m.get("id").is_none())
        .filter_map(|m| m["params"]["text"].as_str().map(str::to_owned))
        .collect()
}

/// Any `partner.disconnected`, as a custom notification or as its log mirror.
fn disconnects(seen: &[Value]) -> Vec<&Value> {
    seen.iter()
        .filter(|m| {
            m["method"] == "partner.disconnected"
                || m["params"]["data"]["event"]["type"] == "partner.disconnected"
        })
        .collect()
}

/// A on node 1 (with node 2 as its fallback), B on node 2, in one private room. Node 1 dies
/// mid-chat: first its pushes of m6..m8 are lost on the way (it counts them as delivered), then
/// it is SIGKILLed while B keeps writing m9..m15. A's bridge fails over to node 2, which resumes
/// from A's `mcp-chat-last-seq`: A's host gets m1..m15 exactly once and in order, B never hears
/// that A left, and A can still answer.
#[tokio::test]
async fn bridge_fails_over_between_redis_backed_nodes_without_losing_a_message() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let mut node1 = Node::start(&redis).await;
    let node2 = Node::start(&redis).await;
    let link1 = Link::start(node1.addr).await;
    let urls = format!("{},{}", link1.url, node2.url);
    let mut a = Bridge::spawn(
        &urls,
        temp_dir("failover-a"),
        &[("MCP_CHAT_PING_SECS", "1")],
    );
    let mut b = Bridge::spawn(&node2.url, temp_dir("failover-b"), &[]);
    a.initialize().await;
    b.initialize().await;
    let diag = |a: &Bridge, b: &Bridge, node1: &Node, node2: &Node| {
        format!(
            "\n--- bridge A ---\n{}\n--- bridge B ---\n{}\n--- node 1 ---\n{}\n--- node 2 ---\n{}",
            a.stderr(),
            b.stderr(),
            node1.log(),
            node2.log()
        )
    };

    let room = format!("failover-{}", std::process::id());
    a.ok(
        "join_room",
        json!({ "room_id": room, "display_name": "Ada" }),
    )
    .await;
    let joined = b
        .ok(
            "join_room",
            json!({ "room_id": room, "display_name": "Bob" }),
        )
        .await;
    assert_eq!(
        joined["state"],
        "in_room",
        "{joined}{}",
        diag(&a, &b, &node1, &node2)
    );
    a.notification("chatroom.found").await;
    assert!(
        a.stderr()
            .contains(&format!("connected to the relay relay={}", link1.url)),
        "A starts on node 1{}",
        diag(&a, &b, &node1, &node2)
    );

    let mut seen_a = Vec::new();
    let texts: Vec<String> = (1..=15).map(|i| format!("m{i}")).collect();
    for text in &texts[..5] {
        b.ok("send_message", json!({ "text": text })).await;
    }
    let arrived = read_until(&mut a, &mut seen_a, Duration::from_secs(10), |seen| {
        received(seen).len() >= 5
    })
    .await;
    assert!(
        arrived,
        "A got {:?} before the kill{}",
        received(&seen_a),
        diag(&a, &b, &node1, &node2)
    );

    // Node 1 pushes m6..m8 into a network that no longer delivers.
    link1.swallow.store(true, Ordering::SeqCst);
    for text in &texts[5..8] {
        b.ok("send_message", json!({ "text": text })).await;
    }
    seen_a.extend(a.drain(Duration::from_secs(1)).await);
    assert_eq!(
        received(&seen_a).len(),
        5,
        "nothing gets through the swallowing link: {:?}{}",
        received(&seen_a),
        diag(&a, &b, &node1, &node2)
    );

    node1.kill().await;
    link1.cut.cancel();
    let killed = tokio::time::Instant::now();
    for text in &texts[8..] {
        b.ok("send_message", json!({ "text": text })).await;
    }
    read_until(&mut a, &mut seen_a, Duration::from_secs(30), |seen| {
        received(seen).len() >= 15
    })
    .await;
    // Anything pushed twice would arrive right behind the rest.
    seen_a.extend(a.drain(Duration::from_secs(2)).await);
    assert_eq!(
        received(&seen_a),
        texts,
        "every message once, in order{}",
        diag(&a, &b, &node1, &node2)
    );
    assert!(
        a.stderr()
            .contains(&format!("connected to the relay relay={}", node2.url)),
        "A moved to node 2{}",
        diag(&a, &b, &node1, &node2)
    );

    // The way back works through node 2.
    a.ok("send_message", json!({ "text": "still here" })).await;
    b.notification_where("message.received", |p| p["text"] == "still here")
        .await;

    // Past node 1's grace period, A's seat is still A's: its partner was never told it left.
    let mut seen_b = Vec::new();
    let grace_over = Duration::from_secs(GRACE_SECS + 3).saturating_sub(killed.elapsed());
    read_until(&mut b, &mut seen_b, grace_over, |_| false).await;
    assert!(
        disconnects(&seen_b).is_empty(),
        "B was told A left: {:?}{}",
        disconnects(&seen_b),
        diag(&a, &b, &node1, &node2)
    );
    seen_a.extend(a.drain(Duration::from_millis(100)).await);
    assert_eq!(received(&seen_a), texts, "nothing repeated later");
}

/// A on node 1 (node 2 its fallback) on the default ping interval (30 s), B on node 2, in one
/// private room; node 1 is SIGKILLed. A refused connection is proof enough that node 1 is gone:
/// A's bridge fails over at once, whatever the phase of its ping, and B's next message reaches
/// A within 5 s of the death (issue 18, fault 2: it took 29.4 s, 146 sends refused meanwhile).
#[tokio::test]
async fn a_dead_node_is_failed_over_at_once_whatever_the_phase_of_the_ping() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let mut node1 = Node::start(&redis).await;
    let node2 = Node::start(&redis).await;
    let urls = format!("{},{}", node1.url, node2.url);
    let mut a = Bridge::spawn(
        &urls,
        temp_dir("failfast-a"),
        &[("MCP_CHAT_PING_SECS", "30")],
    );
    let mut b = Bridge::spawn(&node2.url, temp_dir("failfast-b"), &[]);
    a.initialize().await;
    b.initialize().await;
    let room = format!("failfast-{}", std::process::id());
    a.ok(
        "join_room",
        json!({ "room_id": room, "display_name": "Ada" }),
    )
    .await;
    b.ok(
        "join_room",
        json!({ "room_id": room, "display_name": "Bob" }),
    )
    .await;
    a.notification("chatroom.found").await;
    b.ok("send_message", json!({ "text": "before" })).await;
    a.notification_where("message.received", |p| p["text"] == "before")
        .await;

    node1.kill().await;
    let killed = tokio::time::Instant::now();
    b.ok("send_message", json!({ "text": "after" })).await;
    let mut seen = Vec::new();
    let resumed = read_until(&mut a, &mut seen, Duration::from_secs(5), |seen| {
        received(seen).iter().any(|t| t == "after")
    })
    .await;
    let took = killed.elapsed();
    assert!(
        resumed,
        "A got {:?} within 5 s of node 1's death\n--- A ---\n{}\n--- node 1 ---\n{}",
        received(&seen),
        a.stderr(),
        node1.log()
    );
    eprintln!(
        "FIGURE failover_fast: node death to the next message: {} ms",
        took.as_millis()
    );
    a.ok("send_message", json!({ "text": "through node 2" }))
        .await;
    b.notification_where("message.received", |p| p["text"] == "through node 2")
        .await;
}
