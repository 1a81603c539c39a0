//! Several relay nodes sharing one Redis (`--store redis://...`): matching, chat and pushes
//! across nodes, restarts, a killed node, Redis going away and coming back.
//!
//! Real processes: a `redis-server` of the test's own on a free loopback port and relay nodes
//! run from the `mcp-chat-relay` binary. Without `redis-server` on PATH every test says so loudly
//! on stderr and returns (and fails when `CI` is set).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mcp_chat::errors::ErrorCode;
use serde_json::{Value, json};

use crate::common::{Chatter, PROMPT, Pushed, error_of, pair};
use crate::redis_harness::{
    NodeOptions, RedisServer, RelayNode, customs, eventually, identity_token, pushed_method,
    pushed_text,
};

/// The texts of the `message.received` events among `events`.
fn texts(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("events is an array")
        .iter()
        .filter(|e| e["type"] == "message.received")
        .map(|e| e["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Every unread event of `who` (`wait_for_message` without waiting).
async fn unread(who: &Chatter) -> Value {
    let out: Value = who
        .ok("wait_for_message", json!({ "timeout_secs": 0 }))
        .await;
    assert_eq!(out["more"], false, "one call returns everything: {out}");
    out["events"].clone()
}

/// Sends `text` from `from` and waits for its push at `to`; returns the push's params.
async fn say(from: &Chatter, to: &mut Chatter, text: &str, what: &str) -> Value {
    let sent: Value = from.ok("send_message", json!({ "text": text })).await;
    assert_eq!(sent["delivered_to"], 1, "{what}: {sent}");
    let mut skipped = Vec::new();
    pushed_text(to, text, PROMPT, &mut skipped)
        .await
        .unwrap_or_else(|| {
            panic!("{what}: no message.received push of {text:?} within {PROMPT:?}; other pushes: {skipped:?}")
        })
}

/// Collects pushes until `until`.
async fn pushes_until(who: &mut Chatter, until: Instant) -> Vec<Pushed> {
    let mut out = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        if let Some(push) = who.next_push_within(left).await {
            out.push(push);
        }
    }
}

fn disconnections(pushes: &[Pushed]) -> Vec<Value> {
    customs(pushes)
        .into_iter()
        .filter(|(method, _)| method == "partner.disconnected")
        .map(|(_, params)| params)
        .collect()
}

/// Ends an old session whose node is gone, without waiting long for it.
async fn abandon(chatter: Chatter) {
    let _ = tokio::time::timeout(Duration::from_secs(5), chatter.close()).await;
}

/// (1) A on node 1 and B on node 2 are matched through the shared random queue and chat both
/// ways; every event is pushed across nodes within milliseconds and readable with
/// `wait_for_message`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_match_and_chat_both_ways() {
    let Some(redis) = RedisServer::start("redis::two_nodes_match_and_chat_both_ways").await else {
        return;
    };
    let options = NodeOptions::default();
    let node1 = RelayNode::start(&redis.url(), &options).await;
    let node2 = RelayNode::start(&redis.url(), &options).await;
    let mut a = Chatter::connect_as(&node1.url, &identity_token("a")).await;
    let mut b = Chatter::connect_as(&node2.url, &identity_token("b")).await;

    // `pair` asserts A waits, B is matched with A at once, and both get chatroom.found pushed.
    let room = pair(&mut a, &mut b).await;
    let status_a: Value = a.ok("chat_status", json!({})).await;
    let status_b: Value = b.ok("chat_status", json!({})).await;
    for (status, partner) in [(&status_a, "Bob"), (&status_b, "Ada")] {
        assert_eq!(status["state"], "in_room", "{status}");
        assert_eq!(status["room_id"], room.as_str(), "{status}");
        assert_eq!(status["room_kind"], "random", "{status}");
        assert_eq!(status["partner_name"], partner, "{status}");
    }

    let mut latencies = Vec::new();
    for n in 1..=5u64 {
        let text = format!("a to b {n}");
        let started = Instant::now();
        let sent: Value = a.ok("send_message", json!({ "text": text })).await;
        assert_eq!(
            sent["message_seq"],
            2 * n - 1,
            "one transcript counter: {sent}"
        );
        let mut skipped = Vec::new();
        let got = pushed_text(&mut b, &text, PROMPT, &mut skipped)
            .await
            .unwrap_or_else(|| panic!("B (node 2) got no push of {text:?}: {skipped:?}"));
        latencies.push(started.elapsed());
        assert_eq!(got["from"], "Ada");
        assert_eq!(got["room_id"], room.as_str());
        assert_eq!(got["message_seq"], 2 * n - 1);

        let text = format!("b to a {n}");
        let started = Instant::now();
        let sent: Value = b.ok("send_message", json!({ "text": text })).await;
        assert_eq!(sent["message_seq"], 2 * n, "one transcript counter: {sent}");
        let mut skipped = Vec::new();
        let got = pushed_text(&mut a, &text, PROMPT, &mut skipped)
            .await
            .unwrap_or_else(|| panic!("A (node 1) got no push of {text:?}: {skipped:?}"));
        latencies.push(started.elapsed());
        assert_eq!(got["from"], "Bob");
        assert_eq!(got["room_id"], room.as_str());
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    assert!(
        median < Duration::from_millis(250),
        "send + push across nodes should take milliseconds, took {latencies:?}"
    );

    // The same events, pulled; nobody hears its own messages.
    let events_a = unread(&a).await;
    let events_b = unread(&b).await;
    assert_eq!(events_a[0]["type"], "chatroom.found", "{events_a}");
    assert_eq!(events_b[0]["type"], "chatroom.found", "{events_b}");
    let expected_a: Vec<String> = (1..=5).map(|n| format!("b to a {n}")).collect();
    let expected_b: Vec<String> = (1..=5).map(|n| format!("a to b {n}")).collect();
    assert_eq!(texts(&events_a), expected_a, "A's inbox: {events_a}");
    assert_eq!(texts(&events_b), expected_b, "B's inbox: {events_b}");
    assert_eq!(events_a.as_array().unwrap().len(), 6, "{events_a}");
    assert_eq!(events_b.as_array().unwrap().len(), 6, "{events_b}");
    for (who, own) in [(&mut a, "a to b"), (&mut b, "b to a")] {
        let echoes: Vec<_> = customs(&who.drain_pushes())
            .into_iter()
            .filter(|(_, p)| p["text"].as_str().is_some_and(|t| t.starts_with(own)))
            .collect();
        assert!(echoes.is_empty(), "no echo to the sender: {echoes:?}");
    }

    // The shared transcript, read on node 2.
    let page: Value = b.ok("get_messages", json!({ "limit": 100 })).await;
    assert_eq!(page["latest_message_seq"], 10, "{page}");
    let mine: Vec<bool> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["from_you"].as_bool().unwrap())
        .collect();
    assert_eq!(mine, [false, true].repeat(5), "{page}");
}

/// (2) Both nodes stop (SIGTERM) and start again: no room is closed, A and B come back with
/// their identity tokens to the same room, the events they had not read yet are still there,
/// and the chat goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_nodes_restarted_rooms_and_unread_events_survive() {
    let Some(redis) =
        RedisServer::start("redis::both_nodes_restarted_rooms_and_unread_events_survive").await
    else {
        return;
    };
    let options = NodeOptions::default();
    let mut node1 = RelayNode::start(&redis.url(), &options).await;
    let mut node2 = RelayNode::start(&redis.url(), &options).await;
    let (token_a, token_b) = (identity_token("a"), identity_token("b"));
    let mut a = Chatter::connect_as(&node1.url, &token_a).await;
    let mut b = Chatter::connect_as(&node2.url, &token_b).await;
    let room = pair(&mut a, &mut b).await;

    say(&a, &mut b, "read 1", "before the restart, A to B").await;
    say(&b, &mut a, "read 2", "before the restart, B to A").await;
    unread(&a).await;
    unread(&b).await;
    // Pushed but not read: still unread after the restart.
    say(&a, &mut b, "unread a1", "A to B").await;
    say(&a, &mut b, "unread a2", "A to B").await;
    say(&b, &mut a, "unread b1", "B to A").await;
    let status: Value = b.ok("chat_status", json!({})).await;
    assert_eq!(status["unread"], 2, "{status}");

    tokio::join!(node1.sigterm(), node2.sigterm());
    // Whatever the nodes said before exiting is in flight for a moment at most.
    let settled = Instant::now() + Duration::from_millis(300);
    for (who, name) in [(&mut a, "A"), (&mut b, "B")] {
        let gone = disconnections(&pushes_until(who, settled).await);
        assert!(
            gone.is_empty(),
            "{name}: stopping a node with the Redis store closes no room, got {gone:?}"
        );
    }
    abandon(a).await;
    abandon(b).await;

    tokio::join!(node1.restart(), node2.restart());
    let mut a = Chatter::connect_as(&node1.url, &token_a).await;
    let mut b = Chatter::connect_as(&node2.url, &token_b).await;
    for (who, name, partner, unread_count) in [(&a, "A", "Bob", 1), (&b, "B", "Ada", 2)] {
        let status: Value = who.ok("chat_status", json!({})).await;
        assert_eq!(
            status["state"], "in_room",
            "{name} after the restart: {status}"
        );
        assert_eq!(status["room_id"], room.as_str(), "{name}: {status}");
        assert_eq!(status["partner_name"], partner, "{name}: {status}");
        assert_eq!(status["unread"], unread_count, "{name}: {status}");
    }
    let events_b = unread(&b).await;
    assert_eq!(texts(&events_b), ["unread a1", "unread a2"], "{events_b}");
    assert_eq!(
        events_b.as_array().unwrap().len(),
        2,
        "only those: {events_b}"
    );
    let events_a = unread(&a).await;
    assert_eq!(texts(&events_a), ["unread b1"], "{events_a}");
    assert_eq!(
        events_a.as_array().unwrap().len(),
        1,
        "only that: {events_a}"
    );

    say(
        &a,
        &mut b,
        "after the restart, A",
        "A to B after the restart",
    )
    .await;
    say(
        &b,
        &mut a,
        "after the restart, B",
        "B to A after the restart",
    )
    .await;
    let page: Value = a.ok("get_messages", json!({ "limit": 100 })).await;
    assert_eq!(
        page["latest_message_seq"], 7,
        "the transcript survived: {page}"
    );
    for (who, name) in [(&mut a, "A"), (&mut b, "B")] {
        let gone = disconnections(&who.drain_pushes());
        assert!(
            gone.is_empty(),
            "{name} was never told of a disconnection: {gone:?}"
        );
    }
}

/// (3) 200 participants, 100 on each node, enter the random queue at the same moment: all are
/// paired, each exactly once, into 100 rooms of two who name each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_enter_the_queue_at_once_across_two_nodes() {
    const PEOPLE: usize = 200;
    let Some(redis) =
        RedisServer::start("redis::two_hundred_enter_the_queue_at_once_across_two_nodes").await
    else {
        return;
    };
    let options = NodeOptions::default();
    let node1 = RelayNode::start(&redis.url(), &options).await;
    let node2 = RelayNode::start(&redis.url(), &options).await;

    let connecting = (0..PEOPLE).map(|i| {
        let url = if i % 2 == 0 { &node1.url } else { &node2.url }.clone();
        tokio::spawn(async move {
            Chatter::connect_as(&url, &identity_token(&format!("p{i:03}"))).await
        })
    });
    let mut chatters = Vec::new();
    for task in futures::future::join_all(connecting).await {
        chatters.push(task.unwrap());
    }

    let start = std::sync::Arc::new(tokio::sync::Barrier::new(PEOPLE));
    let entering = chatters.into_iter().enumerate().map(|(i, chatter)| {
        let start = start.clone();
        tokio::spawn(async move {
            let name = format!("p{i:03}");
            start.wait().await;
            let status: Value = chatter
                .ok("enter_queue", json!({ "display_name": name }))
                .await;
            (name, chatter, status)
        })
    });
    let entered = futures::future::join_all(entering).await;

    // Everyone hears chatroom.found; then status and inbox tell who is with whom.
    let checking = entered.into_iter().map(|joined| {
        tokio::spawn(async move {
            let (name, mut chatter, entered) = joined.unwrap();
            let state = entered["state"].as_str().unwrap().to_owned();
            assert!(
                state == "waiting" || state == "in_room",
                "{name}: enter_queue gave {entered}"
            );
            let mut skipped = Vec::new();
            let found = pushed_method(
                &mut chatter,
                "chatroom.found",
                Duration::from_secs(15),
                &mut skipped,
            )
            .await
            .unwrap_or_else(|| panic!("{name} was never paired (entered as {entered})"));
            let status: Value = chatter.ok("chat_status", json!({})).await;
            let events = unread(&chatter).await;
            (name, chatter, found, status, events)
        })
    });
    let mut by_name = HashMap::new();
    let mut rooms: HashMap<String, Vec<String>> = HashMap::new();
    let mut chatters = Vec::new();
    for task in futures::future::join_all(checking).await {
        let (name, chatter, found, status, events) = task.unwrap();
        assert_eq!(status["state"], "in_room", "{name}: {status}");
        assert_eq!(status["room_kind"], "random", "{name}: {status}");
        let room = status["room_id"].as_str().unwrap().to_owned();
        let members = status["members"].as_array().unwrap();
        assert_eq!(members.len(), 1, "{name} has exactly one partner: {status}");
        let partner = members[0].as_str().unwrap().to_owned();
        assert_eq!(status["partner_name"], partner.as_str(), "{name}: {status}");
        assert_eq!(found["room_id"], room.as_str(), "{name}: push {found}");
        assert_eq!(found["members"], json!([partner]), "{name}: push {found}");
        let events = events.as_array().unwrap();
        assert_eq!(
            events.len(),
            1,
            "{name} was paired exactly once: its inbox is one chatroom.found, got {events:?}"
        );
        assert_eq!(events[0]["type"], "chatroom.found", "{name}: {events:?}");
        assert_eq!(events[0]["room_id"], room.as_str(), "{name}: {events:?}");
        rooms.entry(room.clone()).or_default().push(name.clone());
        by_name.insert(name, (room, partner));
        chatters.push(chatter);
    }
    assert_eq!(by_name.len(), PEOPLE);
    for (name, (room, partner)) in &by_name {
        let (partner_room, partners_partner) = by_name
            .get(partner)
            .unwrap_or_else(|| panic!("{name}'s partner {partner:?} is nobody in the test"));
        assert_eq!(partner_room, room, "{name} and {partner} share a room");
        assert_eq!(partners_partner, name, "{partner}'s partner is {name}");
    }
    assert_eq!(rooms.len(), PEOPLE / 2, "100 rooms");
    assert!(
        rooms.values().all(|members| members.len() == 2),
        "two per room: {rooms:?}"
    );
    // No second chatroom.found pushed to anyone.
    for chatter in &mut chatters {
        let again: Vec<_> = customs(&chatter.drain_pushes())
            .into_iter()
            .filter(|(method, _)| method == "chatroom.found")
            .collect();
        assert!(again.is_empty(), "paired twice: {again:?}");
    }
}

/// (4) Redis goes away: tool calls fail with `unavailable` and /healthz says 503; Redis comes
/// back on the same port with its data, and the nodes recover by themselves, pushes included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_started_again() {
    let Some(mut redis) =
        RedisServer::start_persistent("redis::redis_stopped_and_started_again").await
    else {
        return;
    };
    let options = NodeOptions::default();
    let node1 = RelayNode::start(&redis.url(), &options).await;
    let node2 = RelayNode::start(&redis.url(), &options).await;
    let mut a = Chatter::connect_as(&node1.url, &identity_token("a")).await;
    let mut b = Chatter::connect_as(&node2.url, &identity_token("b")).await;
    let room = pair(&mut a, &mut b).await;
    say(&a, &mut b, "before the outage", "A to B before the outage").await;
    for node in [&node1, &node2] {
        let (code, body) = node.health().await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"], "ok", "{body}");
    }

    redis.stop().await;
    for (who, node, tool, args) in [
        (&a, &node1, "chat_status", json!({})),
        (
            &b,
            &node2,
            "send_message",
            json!({ "text": "during the outage" }),
        ),
        (&a, &node1, "wait_for_message", json!({ "timeout_secs": 0 })),
    ] {
        let started = Instant::now();
        // Promptly: a client (or a load balancer's health check) must not hang on an outage.
        let result = tokio::time::timeout(PROMPT, who.call(tool, args))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{tool} with Redis down did not answer within {PROMPT:?}; log:\n{}",
                    node.log_tail()
                )
            });
        let code = error_of(&result).map(|e| e.error.code);
        assert_eq!(
            (result.is_error, code),
            (Some(true), Some(ErrorCode::Unavailable)),
            "{tool} with Redis down (answered after {:?}): {result:?}; log:\n{}",
            started.elapsed(),
            node.log_tail()
        );
    }
    for node in [&node1, &node2] {
        let (code, body) = node.health().await;
        assert_eq!(code, 503, "/healthz with Redis down: {body}");
        assert_eq!(body["status"], "unavailable", "{body}");
    }

    redis.restart().await;
    for node in [&node1, &node2] {
        eventually(
            format!(
                "/healthz of {} answers 200 after Redis came back",
                node.addr
            ),
            Duration::from_secs(10),
            || async {
                match node.try_health().await {
                    Ok((200, body)) if body["status"] == "ok" => Some(()),
                    _ => None,
                }
            },
        )
        .await;
    }
    let status: Value = a.ok("chat_status", json!({})).await;
    assert_eq!(
        status["room_id"],
        room.as_str(),
        "the room is in Redis' AOF: {status}"
    );
    say(
        &a,
        &mut b,
        "after the outage, A",
        "A to B after Redis came back",
    )
    .await;
    say(
        &b,
        &mut a,
        "after the outage, B",
        "B to A after Redis came back",
    )
    .await;
    let events_b = unread(&b).await;
    assert_eq!(
        texts(&events_b),
        ["before the outage", "after the outage, A"],
        "{events_b}"
    );
    let events_a = unread(&a).await;
    assert_eq!(texts(&events_a), ["after the outage, B"], "{events_a}");
}

/// (5) Node 1 is killed (SIGKILL) mid-chat. A1, who never comes back, is ended by node 2 after
/// the grace period: B1 hears `timeout`. A2 reconnects to node 2 in time with its identity
/// token: it finds the message sent meanwhile, exactly once, and B2 hears nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_participants_time_out_unless_they_come_back() {
    const GRACE: Duration = Duration::from_secs(2);
    let Some(redis) =
        RedisServer::start("redis::killed_node_participants_time_out_unless_they_come_back").await
    else {
        return;
    };
    let options = NodeOptions {
        grace_secs: GRACE.as_secs(),
        ..NodeOptions::default()
    };
    let mut node1 = RelayNode::start(&redis.url(), &options).await;
    let node2 = RelayNode::start(&redis.url(), &options).await;
    let token_a2 = identity_token("a2");
    let mut a1 = Chatter::connect_as(&node1.url, &identity_token("a1")).await;
    let mut b1 = Chatter::connect_as(&node2.url, &identity_token("b1")).await;
    pair(&mut a1, &mut b1).await;
    let mut a2 = Chatter::connect_as(&node1.url, &token_a2).await;
    let mut b2 = Chatter::connect_as(&node2.url, &identity_token("b2")).await;
    let room2 = pair(&mut a2, &mut b2).await;
    say(&a1, &mut b1, "pair 1 chatting", "A1 to B1").await;
    say(&a2, &mut b2, "pair 2 chatting", "A2 to B2").await;
    say(&b2, &mut a2, "pair 2 answering", "B2 to A2").await;
    unread(&a2).await;

    node1.sigkill();
    let killed = Instant::now();
    say_unseen(&b2, "while you were away").await;
    let mut a2 = {
        abandon(a2).await;
        Chatter::connect_as(&node2.url, &token_a2).await
    };
    let status: Value = a2.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "in_room", "A2 on node 2: {status}");
    assert_eq!(status["room_id"], room2.as_str(), "A2 on node 2: {status}");
    let events = unread(&a2).await;
    assert_eq!(
        texts(&events),
        ["while you were away"],
        "A2 gets what was sent while it was away, exactly once: {events}"
    );
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");

    // B1's partner was on the dead node and never came back.
    let mut skipped = Vec::new();
    let gone = pushed_method(&mut b1, "partner.disconnected", GRACE * 4, &mut skipped)
        .await
        .unwrap_or_else(|| {
            panic!(
                "B1 heard nothing of A1 (node 1 killed) within {:?}; pushes: {skipped:?}; node 2 log:\n{}",
                GRACE * 4,
                node2.log_tail()
            )
        });
    let after = killed.elapsed();
    assert_eq!(gone["reason"], "timeout", "{gone}");
    assert_eq!(gone["room_closed"], true, "{gone}");
    assert_eq!(gone["partner_name"], "Ada", "{gone}");
    assert!(
        after >= GRACE - Duration::from_secs(1),
        "not before the grace period (less one heartbeat): {after:?}"
    );
    assert!(
        after <= GRACE + Duration::from_secs(3),
        "within the grace period plus a heartbeat (and slack): {after:?}"
    );
    let status: Value = b1.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "idle", "B1's room is closed: {status}");

    // B2's partner came back in time: no timeout, well past the grace period.
    let quiet_until = killed + GRACE + Duration::from_secs(2);
    let pushed_b2 = pushes_until(&mut b2, quiet_until).await;
    let gone = disconnections(&pushed_b2);
    assert!(gone.is_empty(), "A2 came back in time, yet B2 got {gone:?}");
    let pushed_a2 = a2.drain_pushes();
    let copies = customs(&pushed_a2)
        .into_iter()
        .filter(|(_, p)| p["text"] == "while you were away")
        .count();
    assert!(
        copies <= 1,
        "pushed {copies} times on node 2: {pushed_a2:?}"
    );
    let status: Value = b2.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "in_room", "{status}");
    say(&a2, &mut b2, "back on node 2", "A2 (node 2) to B2").await;
    say(&b2, &mut a2, "welcome back", "B2 to A2 (node 2)").await;
}

/// Sends `text` from `from` while its partner has no session anywhere.
async fn say_unseen(from: &Chatter, text: &str) {
    let sent: Value = from.ok("send_message", json!({ "text": text })).await;
    assert_eq!(sent["delivered_to"], 1, "delivered to the inbox: {sent}");
}
