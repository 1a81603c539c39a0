//! The standalone GET stream: a client that re-opens it after a cut gets every event, even
//! while the relay has not noticed yet that the old stream is dead.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Chatter, RawClient, TestRelay, read_sse, test_config};

/// Reads SSE from `response` until a `message.received` with `text` arrived or `within`
/// passed; returns the `(id, data)` of every event read.
async fn read_until(
    response: &mut reqwest::Response,
    text: &str,
    within: Duration,
) -> Vec<(String, Value)> {
    read_sse(response, within, |events| {
        message_texts(events).iter().any(|t| t == text)
    })
    .await
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
    // The id a client resumes from: the last one it saw (an event's id is on its last frame,
    // the logging mirror; the id is the event's inbox seq).
    let last_id = seen
        .iter()
        .rev()
        .map(|(id, _)| id.clone())
        .find(|id| !id.is_empty())
        .unwrap();
    let last_seq: u64 = last_id.parse().unwrap();
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

/// Takes the complete chunks of an HTTP/1.1 chunked body from the front of `raw` and appends
/// their data to `body`.
fn dechunk(raw: &mut Vec<u8>, body: &mut Vec<u8>) {
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return;
        };
        let size = std::str::from_utf8(&raw[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .expect("a chunk size line");
        let start = line_end + 2;
        if raw.len() < start + size + 2 {
            return;
        }
        body.extend_from_slice(&raw[start..start + size]);
        raw.drain(..start + size + 2);
    }
}

/// A client that stops reading its stream for longer than a push may take (5 s) and then
/// reads again gets every event pushed exactly once, in order, and the stall is counted as a
/// push timeout once the wait ends. (The stream is pulled by hyper: nothing is queued for a
/// stalled reader but one frame in hyper's buffer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_gets_every_push_once_in_order_when_it_reads_again() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The relay's socket buffer grows to 4 MiB on loopback (tcp_wmem), hyper buffers ~400 KB
    // more: 600 events of ~12 KB are what it takes to make a push wait.
    const MESSAGES: usize = 600;
    let mut config = test_config();
    config.inbox_capacity = 4096;
    let relay = TestRelay::start_with(config).await;
    let mut a = RawClient::new(&relay.url);
    a.initialize().await;
    let b = Chatter::connect(&relay.url).await;
    a.call(1, "join_room", json!({ "room_id": "stall" })).await;
    let _: Value = b.ok("join_room", json!({ "room_id": "stall" })).await;

    // The GET stream on a socket with a small receive buffer, so that the relay's writes stop
    // after a few events (reqwest would keep reading into its own buffers).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(relay.addr).await.unwrap();
    let request = format!(
        "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\
         Mcp-Session-Id: {}\r\nMcp-Protocol-Version: 2025-11-25\r\n\r\n",
        a.session.as_deref().unwrap()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let head_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the stream's head")
            .unwrap();
        assert!(n > 0, "the relay closed the stream");
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    raw.drain(..head_end + 4);

    // Each event is two notifications of about 4 KB and 8 KB (custom and logging mirror).
    let padding = "p".repeat(3900);
    let sent: Vec<String> = (0..MESSAGES)
        .map(|i| format!("m{i:02} {padding}"))
        .collect();
    for text in &sent {
        b.ok::<Value>("send_message", json!({ "text": text })).await;
    }
    // Longer than a push may wait (5 s) before it counts as a push timeout.
    tokio::time::sleep(Duration::from_secs(6)).await;

    // Read again: every message arrives, once, in order.
    let mut body = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while texts.len() < MESSAGES {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("only {} of {MESSAGES} pushed: {texts:?}", texts.len()))
            .unwrap();
        assert!(
            n > 0,
            "the relay closed the stream after {} pushes",
            texts.len()
        );
        raw.extend_from_slice(&buf[..n]);
        dechunk(&mut raw, &mut body);
        while let Some(end) = body.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = body.drain(..end + 2).collect();
            let block = String::from_utf8_lossy(&block);
            let Some(data) = block
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .and_then(|d| serde_json::from_str::<Value>(d.trim()).ok())
            else {
                continue;
            };
            if data["method"] == "message.received" {
                texts.push(
                    data["params"]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    }
    assert!(texts == sent, "every push once, in order");
    // The wait is counted once it ends (the client read again).
    let (_, metrics) = relay.get("/metrics").await;
    let timeouts = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mcp_chat_push_timeouts_total "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        timeouts > 0,
        "the stall counts as a push timeout: {metrics}"
    );
}
