//! Pairing: the random queue, topics, private rooms, blocks.

use serde_json::{Value, json};

use crate::common::{Chatter, TestRelay, pair};

/// Two participants in the queue are paired; both get `chatroom.found` (pushed as a custom
/// notification and as a log line), including the one whose call completed the match.
#[tokio::test]
async fn two_participants_are_matched_and_both_told() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;

    let waiting: Value = a.ok("enter_queue", json!({ "display_name": "Ada" })).await;
    assert_eq!(waiting["state"], "waiting");
    assert_eq!(waiting["position"], 1);

    let matched: Value = b
        .ok("enter_queue", json!({ "display_name": "  Bob\u{7} " }))
        .await;
    assert_eq!(matched["state"], "in_room");
    assert_eq!(matched["partner_name"], "Ada");
    assert_eq!(
        matched["display_name"], "Bob",
        "names are trimmed and cleaned"
    );
    let room = matched["room_id"].as_str().unwrap();

    for (chatter, partner) in [(&mut a, "Bob"), (&mut b, "Ada")] {
        let found = chatter.pushed("chatroom.found").await;
        assert_eq!(found["room_id"], room);
        assert_eq!(found["members"], json!([partner]));
        assert_eq!(found["room_kind"], "random");
        assert_eq!(found["seq"], 1);
    }
    // The same event also went out as an MCP log message, for hosts that only show logs.
    let logs: Vec<_> = a
        .drain_pushes()
        .into_iter()
        .filter_map(|p| match p {
            crate::common::Pushed::Log(log) => Some(log),
            _ => None,
        })
        .collect();
    assert!(
        logs.iter()
            .any(|l| l.data["event"]["type"] == "chatroom.found"),
        "a log line per event: {logs:?}"
    );
}

/// A topic only pairs participants who chose the same topic (case-insensitive).
#[tokio::test]
async fn topics_pair_only_like_minded_participants() {
    let relay = TestRelay::start().await;
    let a = Chatter::connect(&relay.url).await;
    let b = Chatter::connect(&relay.url).await;
    let c = Chatter::connect(&relay.url).await;

    let s: Value = a.ok("enter_queue", json!({ "topic": "Rust" })).await;
    assert_eq!(s["state"], "waiting");
    let s: Value = b.ok("enter_queue", json!({})).await;
    assert_eq!(s["state"], "waiting", "no topic does not match a topic");
    let s: Value = c.ok("enter_queue", json!({ "topic": " rust " })).await;
    assert_eq!(s["state"], "in_room");
    assert_eq!(s["topic"], "rust");
}

/// Calling enter_queue or join_room while already waiting or in a room is a clear tool error.
#[tokio::test]
async fn entering_twice_is_refused() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    a.ok::<Value>("enter_queue", json!({})).await;
    let e = a.err("enter_queue", json!({})).await;
    assert_eq!(e.error.code.as_str(), "already_waiting");
    let e = a.err("join_room", json!({ "room_id": "x" })).await;
    assert_eq!(e.error.code.as_str(), "already_waiting");
    a.ok::<Value>("leave_chat", json!({})).await;

    pair(&mut a, &mut b).await;
    let e = b.err("enter_queue", json!({})).await;
    assert_eq!(e.error.code.as_str(), "already_in_room");
    assert!(e.error.message.contains("next_chat"));
}

/// Private rooms: create-or-join by code, a capacity, the others told when someone joins.
#[tokio::test]
async fn private_rooms_fill_up_to_capacity() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    let c = Chatter::connect(&relay.url).await;

    let s: Value = a
        .ok(
            "join_room",
            json!({ "room_id": "book-club", "display_name": "Ann" }),
        )
        .await;
    assert_eq!(s["state"], "in_room");
    assert_eq!(s["members"], json!([]));
    let e = a.err("send_message", json!({ "text": "anyone?" })).await;
    assert_eq!(e.error.code.as_str(), "no_partner");

    let s: Value = b
        .ok(
            "join_room",
            json!({ "room_id": "book-club", "display_name": "Ann" }),
        )
        .await;
    assert_eq!(s["members"], json!(["Ann"]));
    assert_eq!(s["display_name"], "Ann (2)", "same names are told apart");
    let found = a.pushed("chatroom.found").await;
    assert_eq!(found["joined"], "Ann (2)");
    assert_eq!(found["room_kind"], "private");
    b.pushed("chatroom.found").await;

    let e = c.err("join_room", json!({ "room_id": "book-club" })).await;
    assert_eq!(e.error.code.as_str(), "room_full");
    let e = c.err("join_room", json!({ "room_id": "no spaces!" })).await;
    assert_eq!(e.error.code.as_str(), "invalid_argument");
    let e = c.err("join_room", json!({})).await;
    assert_eq!(e.error.code.as_str(), "invalid_argument", "missing room_id");

    // Room codes are case-sensitive: another spelling is another room.
    let s: Value = c.ok("join_room", json!({ "room_id": "Book-Club" })).await;
    assert_eq!(s["members"], json!([]), "room ids are case-sensitive");
}

/// `leave_chat {block: true}`: the queue never pairs these two again.
#[tokio::test]
async fn blocked_strangers_are_not_paired_again() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    pair(&mut a, &mut b).await;
    let out: Value = a.ok("leave_chat", json!({ "block": true })).await;
    assert_eq!(out["left"], "room");
    assert_eq!(out["blocked"], 1);

    let s: Value = b.ok("enter_queue", json!({})).await;
    assert_eq!(s["state"], "waiting");
    let s: Value = a.ok("enter_queue", json!({})).await;
    assert_eq!(s["state"], "waiting", "a blocked b: not paired again");
    assert_eq!(s["position"], 2);

    let c = Chatter::connect(&relay.url).await;
    let s: Value = c.ok("enter_queue", json!({})).await;
    assert_eq!(s["state"], "in_room", "c pairs with the first in line");
    assert_eq!(s["partner_name"], "Stranger");
}

/// `next_chat` leaves the partner (who is told) and queues again in one step.
#[tokio::test]
async fn next_chat_skips_to_someone_new() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    let c = Chatter::connect(&relay.url).await;
    pair(&mut a, &mut b).await;
    c.ok::<Value>("enter_queue", json!({ "display_name": "Cy" }))
        .await;

    let s: Value = a.ok("next_chat", json!({})).await;
    assert_eq!(s["state"], "in_room");
    assert_eq!(s["partner_name"], "Cy");
    assert_eq!(s["display_name"], "Ada", "next_chat keeps the display name");
    let gone = b.pushed("partner.disconnected").await;
    assert_eq!(gone["reason"], "left");
    assert_eq!(gone["room_closed"], true);
    let s: Value = b.ok("chat_status", json!({})).await;
    assert_eq!(s["state"], "idle");
}
