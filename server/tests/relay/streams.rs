//! The standalone GET stream: a client that re-opens it after a cut gets every event, even
//! while the relay has not noticed yet that the old stream is dead.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Chatter, RawClient, TestRelay};

/// Reads SSE from `response` until a `message.received` with `text` arrived or `within`
/// passed; returns the `(id, data)` of every event read.
async fn read_until(
    response: &mut reqwest::Response,
    text: &str,
    within: Duration,
) -> Vec<(String, Value)> {
    let deadline = tokio::time::Instant::now() + within;
    let mut buffer = String::new();
    let mut events = Vec::new();
    while !message_texts(&events).iter().any(|t| t == text) {
        let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await else {
            break;
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .and_then(|d| serde_json::from_str(d.trim()).ok());
            if let Some(data) = data {
                events.push((id, data));
            }
        }
    }
    events
}

fn message_texts(events: &[(String, Value)]) -> Vec<String> {
    messages_after(events, 0)
}

/// The texts of the `message.received` events with a `seq` above `seq`.
fn messages_after(events: &[(String, Value)], seq: u64) -> Vec<String> {
    events
        .iter()
        .filter(|(_, e)| e["method"] == "message.received")
        .filter(|(_, e)| e["params"]["seq"].as_u64().unwrap_or(0) > seq)
        .map(|(_, e)| e["params"]["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The client's first stream was cut, but the relay has not found out (nothing failed to
/// write yet): the client's new GET, with the `Last-Event-ID` it last saw, must become the
/// stream that gets the events and replay what the first one swallowed. (rmcp alone makes the
/// new stream a keep-alive-only "shadow" of the dead one, and the events after the cut are
/// lost from push.)
#[tokio::test]
async fn a_reopened_stream_gets_what_the_dead_one_swallowed() {
    let relay = TestRelay::start().await;
    let mut a = RawClient::new(&relay.url);
    a.initialize().await;
    let b = Chatter::connect(&relay.url).await;
    a.call(1, "join_room", json!({ "room_id": "streams" }))
        .await;
    let _: Value = b.ok("join_room", json!({ "room_id": "streams" })).await;

    let mut first = a.open_stream().await;
    b.ok::<Value>("send_message", json!({ "text": "one" }))
        .await;
    let seen = read_until(&mut first, "one", Duration::from_secs(10)).await;
    assert_eq!(message_texts(&seen), ["one"], "{seen:?}");
    let (last_id, last_event) = seen.last().unwrap().clone();
    let last_seq = last_event["params"]["seq"].as_u64().unwrap();
    // The cut: `first` is neither read nor closed from here on, as with a connection whose
    // peer vanished. What is sent now goes into it.
    b.ok::<Value>("send_message", json!({ "text": "two" }))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let again = RawClient {
        session: a.session.clone(),
        ..RawClient::new(&relay.url)
    }
    .header("last-event-id", &last_id);
    let mut second = again.open_stream().await;
    b.ok::<Value>("send_message", json!({ "text": "three" }))
        .await;
    let got = read_until(&mut second, "three", Duration::from_secs(10)).await;
    // The replay starts at the last event seen (clients drop it by seq), then "two", which
    // the dead stream swallowed, then what came after.
    assert_eq!(
        messages_after(&got, last_seq),
        ["two", "three"],
        "the new stream replays what the dead one swallowed, then carries on: {got:?}"
    );
    drop(first);
}

/// A client that declares `mcp-chat/events` renders the custom notifications itself: it gets
/// no logging mirror of each event. One that does not gets both.
#[tokio::test]
async fn clients_rendering_events_get_no_logging_mirror() {
    let relay = TestRelay::start().await;
    let mut renders = RawClient::new(&relay.url);
    let init = renders
        .post(json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {
                    "experimental": { mcp_chat::protocol::EVENTS_CAPABILITY: {} }
                },
                "clientInfo": { "name": "renders-events", "version": "0" }
            }
        }))
        .await;
    renders.session = init
        .headers
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let ack = renders
        .post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
        .await;
    assert_eq!(ack.status, 202, "{ack:?}");
    let mut plain = RawClient::new(&relay.url);
    plain.initialize().await;
    renders
        .call(1, "join_room", json!({ "room_id": "mirror" }))
        .await;
    plain
        .call(1, "join_room", json!({ "room_id": "mirror" }))
        .await;
    let mut renders_stream = renders.open_stream().await;
    let mut plain_stream = plain.open_stream().await;
    plain
        .call(2, "send_message", json!({ "text": "to the renderer" }))
        .await;
    renders
        .call(2, "send_message", json!({ "text": "to the plain one" }))
        .await;
    plain
        .call(3, "send_message", json!({ "text": "last" }))
        .await;

    let got = read_until(&mut renders_stream, "last", Duration::from_secs(10)).await;
    let methods: Vec<&str> = got
        .iter()
        .filter_map(|(_, e)| e["method"].as_str())
        .collect();
    assert_eq!(
        methods,
        ["chatroom.found", "message.received", "message.received"],
        "no notifications/message: {got:?}"
    );
    renders
        .call(3, "send_message", json!({ "text": "end" }))
        .await;
    let got = read_until(&mut plain_stream, "end", Duration::from_secs(10)).await;
    let mirrored = got
        .iter()
        .filter(|(_, e)| e["method"] == "notifications/message")
        .count();
    assert!(
        mirrored >= 2,
        "chatroom.found and the first message, each also mirrored: {got:?}"
    );
}
