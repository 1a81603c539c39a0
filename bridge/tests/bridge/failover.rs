//! Failover between relay nodes that share state through a real Redis: relay processes are
//! killed for real, and the bridge must carry on through the other node without losing or
//! repeating a message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use testkit::process::{RelayProcess, relay_binary, test_args};
use testkit::redis::RedisServer;

use crate::common::{Bridge, temp_dir};

/// Grace period of the relays: longer than a failover takes (a refused connection fails over
/// at once), short enough to wait out.
const GRACE_SECS: u64 = 5;

/// A relay node: a real `mcp-chat-relay` process on the shared Redis.
async fn node(redis: &RedisServer) -> RelayProcess {
    let mut args = vec!["--store".to_owned(), redis.url()];
    args.extend(test_args(GRACE_SECS));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RelayProcess::start(&relay_binary(), &args, &[]).await
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
    let Some(redis) = RedisServer::start("bridge failover").await else {
        return;
    };
    let mut node1 = node(&redis).await;
    let node2 = node(&redis).await;
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
    let diag = |a: &Bridge, b: &Bridge, node1: &RelayProcess, node2: &RelayProcess| {
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

    node1.sigkill();
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
    let Some(redis) = RedisServer::start("bridge failover").await else {
        return;
    };
    let mut node1 = node(&redis).await;
    let node2 = node(&redis).await;
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

    node1.sigkill();
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
