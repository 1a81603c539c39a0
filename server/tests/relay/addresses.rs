//! Limits per client address: one address looping on new sessions, refused requests or
//! connections is slowed down and cut off; other addresses, and the same address's live
//! sessions, are not. Clients bind distinct loopback source addresses (127.0.0.0/8 is all
//! loopback on Linux).

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{RawClient, TestRelay, test_config};

fn initialize_body() -> serde_json::Value {
    json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "address-test", "version": "0" }
        }
    })
}

fn rejections(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("mcp_chat_rejections_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {reason} counter in {metrics}"))
}

/// An address opening sessions faster than its budget gets a held 429 (closing the
/// connection) once its burst is spent; another address opens sessions as before.
#[tokio::test]
async fn an_address_opening_sessions_too_fast_gets_429_and_others_do_not() {
    let mut config = test_config();
    config.address_sessions_per_sec = 1.0; // bursts of 10
    let relay = TestRelay::start_with(config).await;
    let churner = RawClient::from_address(&relay.url, "127.0.0.2");
    for i in 0..10 {
        let response = churner.post(initialize_body()).await;
        assert_eq!(response.status, 200, "session {i} is within the burst");
    }
    let started = Instant::now();
    let refused = churner.post(initialize_body()).await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the refusal is held, not answered at once: {:?}",
        started.elapsed()
    );
    assert_eq!(refused.headers["connection"], "close");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(refused.messages()[0]["error"]["code"], -32000);
    assert!(
        refused.body.contains("opens sessions too fast"),
        "{refused:?}"
    );

    let mut other = RawClient::from_address(&relay.url, "127.0.0.3");
    other.initialize().await;
    let (_, metrics) = relay.get("/metrics").await;
    assert_eq!(rejections(&metrics, "too_many_sessions_per_address"), 1);
}

/// An address holding as many sessions as it may gets a held 429 for the next one, until one
/// of its sessions ends.
#[tokio::test]
async fn an_address_holding_its_sessions_cap_opens_no_more_until_one_ends() {
    let mut config = test_config();
    config.address_max_sessions = 3;
    let relay = TestRelay::start_with(config).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut client = RawClient::from_address(&relay.url, "127.0.0.8");
        client.initialize().await;
        held.push(client);
    }
    let one_more = RawClient::from_address(&relay.url, "127.0.0.8");
    let refused = one_more.post(initialize_body()).await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(
        refused.body.contains("as many sessions as it may"),
        "{refused:?}"
    );
    let mut elsewhere = RawClient::from_address(&relay.url, "127.0.0.9");
    elsewhere.initialize().await;

    assert_eq!(held[0].delete().await, 204);
    let mut again = RawClient::from_address(&relay.url, "127.0.0.8");
    again.initialize().await;
}

/// An address that was refused too often is refused unread (held 429) on requests without a
/// live session; its live session, and other addresses, carry on.
#[tokio::test]
async fn an_address_refused_too_often_is_cut_off_but_its_live_session_goes_on() {
    let mut config = test_config();
    // Bursts of 2, then one refusal per 5 s: the 1 s holds below do not earn a new one.
    config.address_refusals_per_sec = 0.2;
    let relay = TestRelay::start_with(config).await;
    let mut member = RawClient::from_address(&relay.url, "127.0.0.4");
    member.initialize().await;
    let garbage = RawClient::from_address(&relay.url, "127.0.0.4");
    for i in 0..2 {
        let response = garbage.post_raw("{ not json").await;
        assert_eq!(response.status, 400, "refusal {i} is within the burst");
    }
    let cut_off = garbage.post_raw("{ not json").await;
    assert_eq!(cut_off.status, 429, "{cut_off:?}");
    assert!(cut_off.body.contains("too many requests"), "{cut_off:?}");
    let unknown = RawClient::from_address(&relay.url, "127.0.0.4").header("mcp-session-id", "nope");
    assert_eq!(
        unknown
            .post(json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
            .await
            .status,
        429,
        "an unknown session is not a live one"
    );

    let ping = json!({ "jsonrpc": "2.0", "id": 7, "method": "ping" });
    let response = member.post(ping.clone()).await;
    assert_eq!(response.status, 200, "the address's live session goes on");
    let neighbour = RawClient::from_address(&relay.url, "127.0.0.5");
    assert_eq!(
        neighbour.post_raw("{ not json").await.status,
        400,
        "another address still gets its plain answer"
    );
    let (_, metrics) = relay.get("/metrics").await;
    assert_eq!(rejections(&metrics, "too_many_refusals_per_address"), 2);
}

/// Past its connection cap an address's new connections are closed at once; other addresses
/// connect, and a slot comes back when one of its connections ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_address() {
    let mut config = test_config();
    config.address_max_connections = 3;
    let relay = TestRelay::start_with(config).await;
    let connect_from = |source: &str| {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(relay.addr)
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.6").await.unwrap());
    }
    let mut buf = [0u8; 512];
    let mut surplus = connect_from("127.0.0.6").await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(3), surplus.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the 4th connection from one address is closed at once: {read:?}"
    );

    async fn healthz(mut stream: tokio::net::TcpStream) -> String {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut text)).await;
        text
    }
    let other = connect_from("127.0.0.7").await.unwrap();
    assert!(
        healthz(other).await.starts_with("HTTP/1.1 200"),
        "another address"
    );

    drop(held.pop());
    // The relay sees that connection end a moment later.
    let mut served = false;
    for _ in 0..50 {
        let again = connect_from("127.0.0.6").await.unwrap();
        if healthz(again).await.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "a slot comes back when a connection ends");
    let (_, metrics) = relay.get("/metrics").await;
    assert!(rejections(&metrics, "too_many_connections_per_address") >= 1);
}

/// Behind a trusted proxy the client is the rightmost `X-Forwarded-For` entry: what a client
/// writes further left does not change whose budget it spends.
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_counts() {
    let mut config = test_config();
    config.trust_forwarded_for = true;
    config.address_sessions_per_sec = 1.0; // bursts of 10
    let relay = TestRelay::start_with(config).await;
    let proxied = |chain: &str| RawClient::new(&relay.url).header("x-forwarded-for", chain);
    for i in 0..10 {
        let response = proxied(&format!("198.51.100.{i}, 203.0.113.1"))
            .post(initialize_body())
            .await;
        assert_eq!(response.status, 200, "session {i}");
    }
    let refused = proxied("198.51.100.99, 203.0.113.1")
        .post(initialize_body())
        .await;
    assert_eq!(refused.status, 429, "a spoofed left entry does not help");
    let other = proxied("203.0.113.2").post(initialize_body()).await;
    assert_eq!(other.status, 200, "another client behind the same proxy");
}
