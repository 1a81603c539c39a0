//! Messages between matched participants: delivery, isolation, transcript, leaving.

use serde_json::{Value, json};

use crate::common::{Chatter, Pushed, TestRelay, pair};

/// Messages flow both ways, each pushed to the partner only, with the partner's text marked
/// as a stranger's in the text rendering.
#[tokio::test]
async fn messages_flow_both_ways() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    let room = pair(&mut a, &mut b).await;

    let sent: Value = a
        .ok("send_message", json!({ "text": "hello from A" }))
        .await;
    assert_eq!(sent["delivered_to"], 1);
    assert_eq!(sent["message_seq"], 1);
    let got = b.pushed("message.received").await;
    assert_eq!(got["text"], "hello from A");
    assert_eq!(got["from"], "Ada");
    assert_eq!(got["room_id"], room.as_str());
    assert_eq!(got["message_seq"], 1);

    b.ok::<Value>("send_message", json!({ "text": "hi A, B here" }))
        .await;
    let got = a.pushed("message.received").await;
    assert_eq!(got["text"], "hi A, B here");
    assert_eq!(got["from"], "Bob");

    // The sender never gets its own message pushed back.
    assert!(
        !a.drain_pushes().iter().any(|p| matches!(p,
            Pushed::Custom { params, .. } if params["text"] == "hello from A")),
        "no echo to the sender"
    );

    // Pulling returns the same events, with the stranger's words quoted as untrusted.
    let result = b
        .call("wait_for_message", json!({ "timeout_secs": 0 }))
        .await;
    let text = result.content[0].as_text().unwrap().text.clone();
    assert!(text.contains("untrusted"), "{text}");
    assert!(text.contains("\"hello from A\""), "{text}");
}

/// Three pairs chatting at the same time never see each other's messages.
#[tokio::test]
async fn concurrent_pairs_never_cross_talk() {
    let relay = TestRelay::start().await;
    let mut pairs = Vec::new();
    for _ in 0..3 {
        let mut a = Chatter::connect(&relay.url).await;
        let mut b = Chatter::connect(&relay.url).await;
        let room = pair(&mut a, &mut b).await;
        pairs.push((room, a, b));
    }
    let tasks = pairs.into_iter().enumerate().map(|(i, (room, a, b))| {
        tokio::spawn(async move {
            for n in 0..5 {
                a.ok::<Value>("send_message", json!({ "text": format!("pair{i} a{n}") }))
                    .await;
                b.ok::<Value>("send_message", json!({ "text": format!("pair{i} b{n}") }))
                    .await;
            }
            (i, room, a, b)
        })
    });
    for task in tasks {
        let (i, room, a, b) = task.await.unwrap();
        for (who, from) in [(&a, 'b'), (&b, 'a')] {
            let out: Value = who
                .ok("wait_for_message", json!({ "timeout_secs": 0 }))
                .await;
            let texts: Vec<String> = out["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["type"] == "message.received")
                .map(|e| {
                    assert_eq!(e["room_id"], room.as_str());
                    e["text"].as_str().unwrap().to_owned()
                })
                .collect();
            let expected: Vec<String> = (0..5).map(|n| format!("pair{i} {from}{n}")).collect();
            assert_eq!(
                texts, expected,
                "pair {i} sees exactly its partner's messages, in order"
            );
        }
    }
}

/// `leave_chat` ends a random chat for both; the partner is told at once.
#[tokio::test]
async fn leaving_tells_the_partner() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    pair(&mut a, &mut b).await;

    let out: Value = a.ok("leave_chat", json!({})).await;
    assert_eq!(out["left"], "room");
    assert_eq!(out["status"]["state"], "idle");
    let gone = b.pushed("partner.disconnected").await;
    assert_eq!(gone["reason"], "left");
    assert_eq!(gone["partner_name"], "Ada");
    let e = b
        .err("send_message", json!({ "text": "still there?" }))
        .await;
    assert_eq!(e.error.code.as_str(), "not_in_room");
    let out: Value = b.ok("leave_chat", json!({})).await;
    assert_eq!(out["left"], "nothing", "leaving when idle does nothing");
}

/// A clean session end (HTTP DELETE) ends the participant at once: the partner hears
/// `disconnected` without waiting for the grace period.
#[tokio::test]
async fn deleting_the_session_tells_the_partner_at_once() {
    let mut config = crate::common::test_config();
    config.grace_period = std::time::Duration::from_secs(60);
    let relay = TestRelay::start_with(config).await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    pair(&mut a, &mut b).await;
    a.close().await;
    let gone = b.pushed("partner.disconnected").await;
    assert_eq!(gone["reason"], "disconnected");
}

/// `get_messages` returns the room's transcript by message_seq, both sides' messages.
#[tokio::test]
async fn transcript_pages_by_message_seq() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    pair(&mut a, &mut b).await;
    for n in 1..=4 {
        let who = if n % 2 == 1 { &a } else { &b };
        who.ok::<Value>("send_message", json!({ "text": format!("m{n}") }))
            .await;
    }
    let page: Value = a
        .ok("get_messages", json!({ "since_seq": 1, "limit": 2 }))
        .await;
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["m2", "m3"]);
    assert_eq!(page["messages"][0]["from_you"], false);
    assert_eq!(page["messages"][1]["from_you"], true);
    assert_eq!(page["latest_message_seq"], 4);
    assert_eq!(page["truncated"], true);
    // Reading the transcript does not consume unread events.
    let status: Value = b.ok("chat_status", json!({})).await;
    assert_eq!(status["unread"], 3, "chatroom.found + m1 + m3");
}

/// `logging/setLevel` above info stops the log copies of events; the custom notifications go on.
#[tokio::test]
async fn log_level_is_honoured() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    b.service
        .peer()
        .set_level(rmcp::model::SetLevelRequestParams::new(
            rmcp::model::LoggingLevel::Warning,
        ))
        .await
        .unwrap();
    pair(&mut a, &mut b).await;
    a.ok::<Value>("send_message", json!({ "text": "one" }))
        .await;
    b.pushed("message.received").await;
    assert!(
        !b.drain_pushes().iter().any(|p| matches!(p, Pushed::Log(_))),
        "no log notifications at level warning"
    );
}

/// A client repeating `notifications/initialized` does not get every event pushed twice (nor
/// start a pusher per repetition).
#[tokio::test]
async fn repeated_initialized_does_not_duplicate_pushes() {
    let relay = TestRelay::start().await;
    let mut raw = crate::common::RawClient::new(&relay.url);
    raw.initialize().await;
    for _ in 0..3 {
        let ack = raw
            .post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        assert_eq!(ack.status, 202);
    }
    let mut stream = raw.open_stream().await;
    raw.call(1, "join_room", json!({ "room_id": "dup" })).await;
    let b = Chatter::connect(&relay.url).await;
    b.ok::<Value>("join_room", json!({ "room_id": "dup" }))
        .await;
    b.ok::<Value>("send_message", json!({ "text": "once" }))
        .await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(1500);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, stream.chunk()).await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let pushes = seen.matches("\"method\":\"message.received\"").count();
    assert_eq!(pushes, 1, "one push per event: {seen}");
}
