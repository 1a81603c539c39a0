//! `wait_for_message`: the pull fallback that loses nothing between two waits.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Chatter, TestRelay, pair};

/// Unread events come back at once; with nothing unread the call blocks until an event arrives.
#[tokio::test]
async fn wait_returns_unread_at_once_and_blocks_otherwise() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    pair(&mut a, &mut b).await;

    // chatroom.found is unread: returned at once even with a long timeout.
    let out: Value = b
        .ok("wait_for_message", json!({ "timeout_secs": 50 }))
        .await;
    assert_eq!(out["timed_out"], false);
    assert_eq!(out["events"][0]["type"], "chatroom.found");
    assert_eq!(out["status"]["unread"], 0);

    // Nothing unread: the wait blocks, and the message sent meanwhile ends it.
    let waiter = tokio::spawn(async move {
        let out: Value = b
            .ok("wait_for_message", json!({ "timeout_secs": 30 }))
            .await;
        out
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the wait blocks while nothing is unread"
    );
    a.ok::<Value>("send_message", json!({ "text": "wake up" }))
        .await;
    let out = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the message ends the wait")
        .unwrap();
    assert_eq!(out["timed_out"], false);
    assert_eq!(out["events"][0]["text"], "wake up");
}

/// Messages sent while the partner is not waiting are all returned by its next wait, in order.
#[tokio::test]
async fn messages_sent_between_waits_are_all_returned_in_order() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    pair(&mut a, &mut b).await;
    b.ok::<Value>("wait_for_message", json!({ "timeout_secs": 0 }))
        .await;

    for n in 0..20 {
        a.ok::<Value>("send_message", json!({ "text": format!("msg {n}") }))
            .await;
    }
    let out: Value = b.ok("wait_for_message", json!({})).await;
    let events = out["events"].as_array().unwrap();
    let texts: Vec<&str> = events.iter().map(|e| e["text"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..20).map(|n| format!("msg {n}")).collect();
    assert_eq!(texts, expected);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seq increases by one: {seqs:?}"
    );
    assert_eq!(out["more"], false);
    let again: Value = b.ok("wait_for_message", json!({ "timeout_secs": 0 })).await;
    assert_eq!(again["events"], json!([]), "each event is returned once");
}

/// With nothing happening, the wait ends after its timeout with `timed_out: true`.
#[tokio::test]
async fn wait_times_out_cleanly() {
    let relay = TestRelay::start().await;
    let a = Chatter::connect(&relay.url).await;
    a.ok::<Value>("enter_queue", json!({})).await;
    let started = std::time::Instant::now();
    let out: Value = a.ok("wait_for_message", json!({ "timeout_secs": 1 })).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(out["timed_out"], true);
    assert_eq!(out["events"], json!([]));
    assert_eq!(out["status"]["state"], "waiting");
    let text = a
        .call("wait_for_message", json!({ "timeout_secs": 0 }))
        .await
        .content[0]
        .as_text()
        .unwrap()
        .text
        .clone();
    assert!(
        text.contains("wait_for_message"),
        "tells the model what to do next: {text}"
    );
}

/// A wait the host cancels ends at once and consumes nothing: the next wait gets the events.
#[tokio::test]
async fn cancelled_wait_loses_nothing() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    pair(&mut a, &mut b).await;
    b.ok::<Value>("wait_for_message", json!({ "timeout_secs": 0 }))
        .await;

    // Dropping the call's future makes rmcp send notifications/cancelled to the relay.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(300),
        b.call("wait_for_message", json!({ "timeout_secs": 30 })),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "the wait was still blocked when cancelled"
    );
    // Give the cancel notification time to reach the relay before the next event does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.ok::<Value>("send_message", json!({ "text": "after the cancel" }))
        .await;
    let out: Value = b.ok("wait_for_message", json!({ "timeout_secs": 5 })).await;
    assert_eq!(out["events"][0]["text"], "after the cancel");
}

/// A full inbox drops the oldest unread events and says so instead of growing without bound.
#[tokio::test]
async fn full_inbox_reports_a_gap() {
    let mut config = crate::common::test_config();
    config.inbox_capacity = 4;
    let relay = TestRelay::start_with(config).await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    pair(&mut a, &mut b).await;
    for n in 0..10 {
        a.ok::<Value>("send_message", json!({ "text": format!("m{n}") }))
            .await;
    }
    let out: Value = b.ok("wait_for_message", json!({ "timeout_secs": 0 })).await;
    assert_eq!(out["missed_events"], 7, "found + 10 messages, 4 kept");
    let texts: Vec<&str> = out["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["m6", "m7", "m8", "m9"]);
    let (_, metrics) = relay.get("/metrics").await;
    assert!(
        metrics.contains("mcp_chat_events_dropped_total 7"),
        "{metrics}"
    );
}

/// `after_seq` returns events again that an interrupted call already took (the answer was lost
/// on the way), so a client that tracks seq never misses one.
#[tokio::test]
async fn after_seq_replays_events_a_lost_answer_carried() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    pair(&mut a, &mut b).await;
    let first: Value = b.ok("wait_for_message", json!({ "timeout_secs": 0 })).await;
    let found_seq = first["events"][0]["seq"].as_u64().unwrap();
    a.ok::<Value>("send_message", json!({ "text": "one" }))
        .await;
    a.ok::<Value>("send_message", json!({ "text": "two" }))
        .await;
    // This answer is "lost": the client never looks at it.
    b.ok::<Value>("wait_for_message", json!({ "timeout_secs": 0 }))
        .await;
    let again: Value = b
        .ok(
            "wait_for_message",
            json!({ "timeout_secs": 0, "after_seq": found_seq }),
        )
        .await;
    let texts: Vec<&str> = again["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two"]);
}
