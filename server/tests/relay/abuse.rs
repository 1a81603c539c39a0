//! Bad input and abuse: each gets a clear error, and nothing else breaks.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    Chatter, RawClient, TestRelay, half_sent_request_is_cut_off, pair, test_config,
};

/// Text over the limit and empty text are tool errors that say what to do.
#[tokio::test]
async fn oversized_and_empty_messages_are_refused() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    pair(&mut a, &mut b).await;
    let e = a
        .err("send_message", json!({ "text": "x".repeat(4097) }))
        .await;
    assert_eq!(e.error.code.as_str(), "message_too_long");
    assert!(e.error.message.contains("4096"));
    let ok: Value = a
        .ok("send_message", json!({ "text": "é".repeat(2048) }))
        .await;
    assert_eq!(ok["delivered_to"], 1, "4096 bytes exactly is fine");
    let e = a.err("send_message", json!({ "text": "  \n " })).await;
    assert_eq!(e.error.code.as_str(), "empty_message");
    let e = a.err("send_message", json!({ "text": 42 })).await;
    assert_eq!(e.error.code.as_str(), "invalid_argument");
    let (_, metrics) = relay.get("/metrics").await;
    assert!(metrics.contains("mcp_chat_rejections_total{reason=\"message_too_long\"} 1"));
}

/// A participant over its rate limit gets a tool error with a retry hint; others are unaffected.
#[tokio::test]
async fn flooding_is_rate_limited_per_participant() {
    let mut config = test_config();
    config.rate_per_sec = 1.0;
    config.rate_burst = 5;
    let relay = TestRelay::start_with(config).await;
    let a = Chatter::connect(&relay.url).await;
    let b = Chatter::connect(&relay.url).await;
    let mut limited = None;
    for _ in 0..10 {
        let result = a.call("chat_status", json!({})).await;
        if result.is_error == Some(true) {
            limited = crate::common::error_of(&result);
            break;
        }
    }
    let limited = limited.expect("the flood is cut off");
    assert_eq!(limited.error.code.as_str(), "rate_limited");
    let retry = limited.error.retry_after_ms.unwrap();
    assert!(retry > 0 && retry <= 1000, "retry hint {retry} ms");
    let status: Value = b.ok("chat_status", json!({})).await;
    assert_eq!(
        status["state"], "idle",
        "another participant is not limited"
    );
    tokio::time::sleep(Duration::from_millis(retry + 50)).await;
    a.ok::<Value>("chat_status", json!({})).await;
}

/// Requests from a browser origin that is not allowed get 403; so does a Host not allowed
/// (DNS rebinding). Allowed ones pass.
#[tokio::test]
async fn foreign_origin_and_host_are_forbidden() {
    let mut config = test_config();
    config.allowed_origins = vec!["https://chat.example.com".into()];
    let relay = TestRelay::start_with(config).await;
    let evil = RawClient::new(&relay.url).header("origin", "https://evil.example");
    let response = evil
        .post(json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
        .await;
    assert_eq!(response.status, 403);
    let mut good = RawClient::new(&relay.url).header("origin", "https://chat.example.com");
    good.initialize().await;
    let rebound = RawClient::new(&relay.url).header("host", "attacker.example");
    let response = rebound
        .post(json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
        .await;
    assert_eq!(response.status, 403);
    let (_, metrics) = relay.get("/metrics").await;
    assert!(
        metrics.contains("mcp_chat_rejections_total{reason=\"forbidden\"} 2"),
        "{metrics}"
    );
}

/// An unknown or expired session id gets 404, as the spec says, so clients re-initialize.
#[tokio::test]
async fn unknown_session_is_404() {
    let relay = TestRelay::start().await;
    let mut raw = RawClient::new(&relay.url);
    raw.session = Some("no-such-session".into());
    let response = raw
        .post(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))
        .await;
    assert_eq!(response.status, 404);
}

/// Malformed JSON and non-JSON-RPC bodies get JSON-RPC errors with 400; oversized bodies 413.
#[tokio::test]
async fn malformed_and_oversized_bodies_get_clear_errors() {
    let relay = TestRelay::start().await;
    let raw = RawClient::new(&relay.url);
    let response = raw.post_raw("{\"jsonrpc\": \"2.0\", ").await;
    assert_eq!(response.status, 400);
    assert_eq!(response.messages()[0]["error"]["code"], -32700);
    for not_json in ["not json", "{\"id\": 1,, }", "\"unterminated"] {
        let response = raw.post_raw(not_json).await;
        assert_eq!(response.status, 400, "{not_json}");
        assert_eq!(
            response.messages()[0]["error"]["code"],
            -32700,
            "{not_json}"
        );
    }
    for not_jsonrpc in [
        json!({ "hello": "world" }),
        json!([1, 2]),
        json!("text"),
        json!({ "jsonrpc": "2.0", "id": 1, "method": 42 }),
    ] {
        let response = raw.post(not_jsonrpc.clone()).await;
        assert_eq!(response.status, 400, "{not_jsonrpc}");
        assert_eq!(
            response.messages()[0]["error"]["code"],
            -32600,
            "{not_jsonrpc}"
        );
    }
    let response = raw.post_raw(vec![b'['; 200_000]).await;
    assert_eq!(response.status, 413);
    // The unread rest of the body makes the connection unusable: the client is told, so its
    // pool does not send the next request down it.
    assert_eq!(response.headers["connection"], "close");
    for _ in 0..8 {
        let response = raw.post_raw(vec![0xff, 0xfe, 0x00]).await;
        assert_eq!(response.status, 400, "the next requests get through");
    }
    let response = raw.post_raw(vec![0xff, 0xfe, 0x00]).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.messages()[0]["error"]["code"], -32700);
    // The relay still serves everyone after all that.
    let a = Chatter::connect(&relay.url).await;
    a.ok::<Value>("chat_status", json!({})).await;
}

/// Unknown tools are protocol errors; bad arguments are tool errors a model can read.
#[tokio::test]
async fn unknown_tools_and_bad_arguments() {
    let relay = TestRelay::start().await;
    let a = Chatter::connect(&relay.url).await;
    let err = a.try_call("rm_rf", json!({})).await.unwrap_err();
    assert!(err.contains("unknown tool"), "{err}");
    let e = a
        .err("wait_for_message", json!({ "timeout_secs": -1 }))
        .await;
    assert_eq!(e.error.code.as_str(), "invalid_argument");
    let tools = a.service.peer().list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, mcp_chat::tools::TOOL_NAMES);
}

/// With an access token set, requests without it (or with a wrong one) get 401.
#[tokio::test]
async fn access_token_is_required_when_set() {
    let mut config = test_config();
    config.access_token = Some("s3cret-s3cret-s3cret".into());
    let relay = TestRelay::start_with(config).await;
    let response = RawClient::new(&relay.url)
        .post(json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
        .await;
    assert_eq!(response.status, 401);
    assert_eq!(response.headers["www-authenticate"], "Bearer");
    let wrong =
        Chatter::try_connect(&relay.url, HashMap::new(), Some("wrong-wrong-wrong-wrong")).await;
    assert!(wrong.is_err());
    let right =
        Chatter::connect_with(&relay.url, HashMap::new(), Some("s3cret-s3cret-s3cret")).await;
    right.ok::<Value>("chat_status", json!({})).await;
}

/// Past the session cap, new sessions get 503 with Retry-After; existing ones keep working.
#[tokio::test]
async fn session_cap_returns_503() {
    let mut config = test_config();
    config.max_sessions = 2;
    let relay = TestRelay::start_with(config).await;
    let a = Chatter::connect(&relay.url).await;
    let _b = Chatter::connect(&relay.url).await;
    let c = RawClient::new(&relay.url);
    let response = c
        .post(json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": { "protocolVersion": "2025-11-25", "capabilities": {},
                        "clientInfo": { "name": "c", "version": "0" } }
        }))
        .await;
    assert_eq!(response.status, 503);
    assert_eq!(response.headers["retry-after"], "30");
    a.ok::<Value>("chat_status", json!({})).await;
}

/// A malformed identity token is refused before it can name a participant.
#[tokio::test]
async fn weak_identity_token_is_refused() {
    let relay = TestRelay::start().await;
    let response = RawClient::new(&relay.url)
        .header(mcp_chat::protocol::IDENTITY_HEADER, "short")
        .post(json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
        .await;
    assert_eq!(response.status, 400);
    assert!(response.body.contains("random secret"));
}

/// `/healthz` reports counts as JSON.
#[tokio::test]
async fn healthz_reports_counts() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    pair(&mut a, &mut b).await;
    let (status, body) = relay.get("/healthz").await;
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["rooms"], 1);
    assert_eq!(health["sessions"], 2);
}

/// A connection that never finishes its request head (slowloris) is closed after the
/// header-read timeout; past the connection cap new connections are closed at once; and the
/// relay keeps serving everyone else throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_surplus_connections_are_closed() {
    use tokio::io::AsyncReadExt;
    let mut config = test_config();
    config.header_read_timeout = Duration::from_millis(500);
    let relay = TestRelay::start_with(config).await;
    assert!(
        half_sent_request_is_cut_off(&relay.addr.to_string()).await,
        "the half-sent request is cut off after the header timeout, not left open"
    );

    let mut config = test_config();
    config.header_read_timeout = Duration::from_secs(10);
    config.max_sessions = 2; // the cap is 3 × sessions + 64 connections: 70
    let relay = TestRelay::start_with(config).await;
    let mut idle = Vec::new();
    for _ in 0..70 {
        idle.push(tokio::net::TcpStream::connect(relay.addr).await.unwrap());
    }
    let mut surplus = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    // Well within the 10 s header timeout: closed by the cap, not by the timeout.
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(3), surplus.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the 71st connection is closed at once: {read:?}"
    );
    drop(idle);
    // Once the idle ones are gone (the relay sees their ends a moment later), it serves again.
    let healthz = format!("http://{}/healthz", relay.addr);
    let mut served = false;
    for _ in 0..50 {
        if reqwest::get(&healthz)
            .await
            .is_ok_and(|r| r.status().as_u16() == 200)
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served,
        "the relay serves again once the idle connections are gone"
    );
    let (_, metrics) = relay.get("/metrics").await;
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mcp_chat_rejections_total{reason=\"too_many_connections\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused >= 1, "the surplus connection is counted: {metrics}");
}

/// A session that floods the relay with requests is refused with 429 and `Retry-After` before
/// its bodies are read, and no other session is slowed down by it.
#[tokio::test]
async fn a_flooding_session_gets_429_and_others_do_not() {
    let mut config = test_config();
    config.rate_per_sec = 2.0; // a session's POST budget: 11/s, bursts of 30
    config.rate_burst = 10;
    let relay = TestRelay::start_with(config).await;
    let mut flooder = RawClient::new(&relay.url);
    flooder.initialize().await;
    let mut other = RawClient::new(&relay.url);
    other.initialize().await;
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });
    let mut refused = None;
    for _ in 0..60 {
        let response = flooder.post(ping.clone()).await;
        if response.status == 429 {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status, 200);
    }
    let refused = refused.expect("60 requests at once pass a budget of 30");
    assert!(refused.headers.contains_key("retry-after"), "{refused:?}");
    assert_eq!(refused.messages()[0]["error"]["code"], -32000);
    let response = other.post(ping).await;
    assert_eq!(response.status, 200, "another session is not affected");
    let (_, metrics) = relay.get("/metrics").await;
    assert!(
        metrics.contains("mcp_chat_rejections_total{reason=\"too_many_requests\"} 1"),
        "{metrics}"
    );
}
