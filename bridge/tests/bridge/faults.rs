//! Fault injection: real bridge processes on real pipes, relays on loopback, and a proxy (see
//! `fault_proxy`) that resets, stalls, delays or truncates the bridge's connections. Each test
//! asserts what the user's host sees, and that no chat message is lost or repeated where the
//! design promises it. Timings are printed (`--nocapture`) for `docs/reliability.md`.
//!
//! Randomised cases print their seed; `MCP_CHAT_FAULT_SEED=<seed>` replays one.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::common::{Bridge, Relay, temp_dir};
use crate::fault_proxy::FaultProxy;

/// A small deterministic RNG (xorshift64*), seeded from `MCP_CHAT_FAULT_SEED` or the clock.
struct Rng(u64);

impl Rng {
    fn from_env() -> (Self, u64) {
        let seed = std::env::var("MCP_CHAT_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        (Self(seed | 1), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Prints a timing line for the reliability figures.
fn figure(test: &str, what: &str, took: Duration) {
    eprintln!("FIGURE {test}: {what}: {} ms", took.as_millis());
}

/// Reads from `bridge` into `seen` until `done(seen)` or `limit` has passed.
async fn read_until(
    bridge: &mut Bridge,
    seen: &mut Vec<Value>,
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        seen.extend(bridge.drain(Duration::from_millis(50)).await);
        if done(seen) {
            return true;
        }
        if Instant::now() >= deadline {
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

/// Texts of the `message.received` events mirrored as log lines (hosts that show only logs).
fn logged(seen: &[Value]) -> Vec<String> {
    seen.iter()
        .filter(|m| {
            m["method"] == "notifications/message"
                && m["params"]["data"]["event"]["type"] == "message.received"
        })
        .filter_map(|m| {
            m["params"]["data"]["event"]["text"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[allow(dead_code)] // used by the stall case
/// The bridge's own log lines to the host (logger `mcp-chat-bridge`) containing `needle`.
fn bridge_logs<'a>(seen: &'a [Value], needle: &str) -> Vec<&'a Value> {
    seen.iter()
        .filter(|m| {
            m["method"] == "notifications/message"
                && m["params"]["logger"] == "mcp-chat-bridge"
                && m["params"]["data"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(needle))
        })
        .collect()
}

#[allow(dead_code)] // used by the relay-kill case
/// Any `partner.disconnected`, as a custom notification or as its log mirror.
fn disconnects(seen: &[Value]) -> Vec<&Value> {
    seen.iter()
        .filter(|m| {
            m["method"] == "partner.disconnected"
                || m["params"]["data"]["event"]["type"] == "partner.disconnected"
        })
        .collect()
}

/// A (on `url_a`, usually the proxy) and B (on `url_b`), initialized and paired.
async fn pair(
    url_a: &str,
    url_b: &str,
    name: &str,
    env_a: &[(&str, &str)],
    env_b: &[(&str, &str)],
) -> (Bridge, Bridge) {
    let mut a = Bridge::spawn(url_a, temp_dir(&format!("{name}-a")), env_a);
    let mut b = Bridge::spawn(url_b, temp_dir(&format!("{name}-b")), env_b);
    a.initialize().await;
    b.initialize().await;
    let s = a.ok("enter_queue", json!({ "display_name": "Ada" })).await;
    assert_eq!(s["state"], "waiting", "{}", a.stderr());
    let s = b.ok("enter_queue", json!({ "display_name": "Bob" })).await;
    assert_eq!(s["state"], "in_room", "{}", b.stderr());
    a.notification("chatroom.found").await;
    b.notification("chatroom.found").await;
    (a, b)
}

fn texts(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

/// B writes 40 messages while A's connections (its SSE stream, its POSTs, all of them) are
/// reset 3–5 times at random moments. A's host gets every `message.received` exactly once and
/// in order, both as the custom notification and as its log mirror, through pushes alone.
#[tokio::test]
async fn sse_stream_cut_at_random_points_loses_and_repeats_nothing() {
    let (mut rng, seed) = Rng::from_env();
    eprintln!("fault seed {seed} (MCP_CHAT_FAULT_SEED={seed} replays it)");
    let relay = Relay::start().await;
    let proxy = FaultProxy::start(relay.addr).await;
    let (mut a, mut b) = pair(&proxy.url, &relay.url, "cut", &[], &[]).await;

    let sent = texts("m", 40);
    let cuts = 3 + rng.below(3) as usize;
    let mut cut_after: Vec<usize> = Vec::new();
    while cut_after.len() < cuts {
        let i = 2 + rng.below(36) as usize;
        if !cut_after.contains(&i) {
            cut_after.push(i);
        }
    }
    cut_after.sort();
    eprintln!("seed {seed}: resets after messages {cut_after:?}");

    let mut seen = Vec::new();
    let mut last_cut = Instant::now();
    for (i, text) in sent.iter().enumerate() {
        b.ok("send_message", json!({ "text": text })).await;
        if cut_after.contains(&i) {
            // Somewhere between "just written" and "already delivered".
            tokio::time::sleep(Duration::from_millis(rng.below(25))).await;
            proxy.reset_all();
            last_cut = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
        seen.extend(a.drain(Duration::ZERO).await);
    }
    let last_send = Instant::now();
    let all = read_until(&mut a, &mut seen, Duration::from_secs(10), |seen| {
        received(seen).len() >= sent.len()
    })
    .await;
    let recovered = last_cut.elapsed();
    let after_send = last_send.elapsed();
    // Anything pushed twice would arrive right behind the rest.
    seen.extend(a.drain(Duration::from_secs(1)).await);
    let diag = || {
        format!(
            "\nseed {seed}, resets after {cut_after:?}, proxy resets {}, accepted {}\n--- A ---\n{}",
            proxy.resets(),
            proxy.accepted(),
            a.stderr()
        )
    };
    assert!(all, "A got {:?}{}", received(&seen), diag());
    assert_eq!(received(&seen), sent, "once each, in order{}", diag());
    assert_eq!(logged(&seen), sent, "log mirror once each{}", diag());
    assert!(
        proxy.resets() >= cuts,
        "the cuts hit open connections{}",
        diag()
    );
    figure(
        "sse_stream_cut",
        "last reset to every message delivered",
        recovered,
    );
    figure(
        "sse_stream_cut",
        "last send to every message delivered",
        after_send,
    );

    // Nothing is left unread behind the pushes, and the chat goes on both ways.
    let out = a.ok("wait_for_message", json!({ "timeout_secs": 0 })).await;
    let unread: Vec<&str> = out["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(unread.len(), sent.len(), "the inbox holds them all once");
    a.ok("send_message", json!({ "text": "still here" })).await;
    b.notification_where("message.received", |p| p["text"] == "still here")
        .await;
}
