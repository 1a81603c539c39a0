//! Clients that vanish without a DELETE, come back, or go silent.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Chatter, Pushed, RawClient, TestRelay, test_config};

fn partner_disconnected(pushes: &[Pushed]) -> bool {
    pushes
        .iter()
        .any(|p| matches!(p, Pushed::Custom { method, .. } if method == "partner.disconnected"))
}

/// A client whose GET stream closes and never comes back (the process died) loses its seat
/// after the grace period, and only then: the partner hears `timeout`.
#[tokio::test]
async fn vanished_client_times_out_after_the_grace_period() {
    let mut config = test_config();
    config.grace_period = Duration::from_secs(2);
    let relay = TestRelay::start_with(config).await;
    let mut ghost = RawClient::new(&relay.url);
    ghost.initialize().await;
    let stream = ghost.open_stream().await;
    ghost.call(1, "enter_queue", json!({})).await;
    let mut b = Chatter::connect(&relay.url).await;
    let s: Value = b.ok("enter_queue", json!({})).await;
    assert_eq!(s["state"], "in_room");
    b.pushed("chatroom.found").await;

    drop(stream);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !partner_disconnected(&b.drain_pushes()),
        "not before the grace period ends"
    );
    let gone = b.pushed("partner.disconnected").await;
    assert_eq!(gone["reason"], "timeout");
    assert_eq!(gone["room_closed"], true);
    // The lost session is closed too.
    let answer = ghost
        .post(json!({ "jsonrpc": "2.0", "id": 9, "method": "ping" }))
        .await;
    assert_eq!(answer.status, 404, "the ghost's session is gone");
}

/// The same identity token coming back with a new session within the grace period keeps its
/// room and unread events; the partner never hears of the drop.
#[tokio::test]
async fn identity_token_reconnect_keeps_the_room() {
    let mut config = test_config();
    config.grace_period = Duration::from_secs(2);
    let relay = TestRelay::start_with(config).await;
    let token = "test-identity-token-0123456789abcdefghijklmnop";
    let mut first = RawClient::new(&relay.url).header(mcp_chat::protocol::IDENTITY_HEADER, token);
    first.initialize().await;
    let stream = first.open_stream().await;
    first
        .call(1, "enter_queue", json!({ "display_name": "Ida" }))
        .await;
    let mut b = Chatter::connect(&relay.url).await;
    b.ok::<Value>("enter_queue", json!({})).await;
    b.pushed("chatroom.found").await;

    // The first connection dies; a message arrives while nobody is there.
    drop(stream);
    drop(first);
    b.ok::<Value>("send_message", json!({ "text": "are you there?" }))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let back = Chatter::connect_as(&relay.url, token).await;
    let status: Value = back.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "in_room");
    assert_eq!(status["display_name"], "Ida");
    let out: Value = back
        .ok("wait_for_message", json!({ "timeout_secs": 0 }))
        .await;
    let texts: Vec<&str> = out["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        ["are you there?"],
        "unread events survive the reconnect"
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !partner_disconnected(&b.drain_pushes()),
        "the partner never hears of the drop"
    );
    back.ok::<Value>("send_message", json!({ "text": "back again" }))
        .await;
    assert_eq!(b.pushed("message.received").await["text"], "back again");
}

/// A client that never opens a GET stream and stops sending requests is lost after the idle
/// timeout plus the grace period. A call in flight (a long wait) keeps it alive.
#[tokio::test]
async fn silent_client_times_out_but_a_waiting_one_does_not() {
    let mut config = test_config();
    config.idle_timeout = Duration::from_secs(1);
    config.grace_period = Duration::from_secs(1);
    let relay = TestRelay::start_with(config).await;
    let mut poller = RawClient::new(&relay.url);
    poller.initialize().await;
    poller.call(1, "enter_queue", json!({})).await;
    let mut b = Chatter::connect(&relay.url).await;
    b.ok::<Value>("enter_queue", json!({})).await;
    b.pushed("chatroom.found").await;
    let _pinger = b.keep_alive(Duration::from_millis(300));

    // A 4 s wait outlasts idle timeout + grace (2 s): the poller stays in the room.
    let out = poller
        .call(2, "wait_for_message", json!({ "timeout_secs": 0 }))
        .await;
    assert_eq!(out["result"]["isError"], false);
    let out = poller
        .call(3, "wait_for_message", json!({ "timeout_secs": 4 }))
        .await;
    assert_eq!(out["result"]["structuredContent"]["timed_out"], true);
    assert!(
        !partner_disconnected(&b.drain_pushes()),
        "a blocked wait is alive"
    );

    // Then silence: lost after idle timeout + grace.
    let gone = b.pushed("partner.disconnected").await;
    assert_eq!(gone["reason"], "timeout");
}
