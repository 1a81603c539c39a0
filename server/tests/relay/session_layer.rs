//! The relay's own Streamable HTTP layer: what it answers to bad input, to DELETE, and how its
//! streams resume (from the inbox, and a tool call's answer after its stream was cut).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Chatter, PROMPT, RawClient, TestRelay, read_sse, test_config};

/// Sends `head` (and then nothing) on a raw connection and returns what the relay answers
/// before it closes the connection or `within` passes.
async fn raw_exchange(relay: &TestRelay, head: &str, within: Duration) -> (String, Duration) {
    let mut socket = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let started = Instant::now();
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(within, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

/// A body that stalls after its head gets 408 once the body timeout passes, and the connection
/// closes; `Expect: 100-continue` with a body over the limit gets 413 at once, never
/// `100 Continue`.
#[tokio::test]
async fn stalled_and_oversized_bodies_are_refused_promptly() {
    let mut config = test_config();
    config.body_timeout = Duration::from_millis(500);
    let relay = TestRelay::start_with(config).await;

    let stalled = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                   Accept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n\
                   {\"jsonrpc\":";
    let (answer, took) = raw_exchange(&relay, stalled, PROMPT).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");

    let huge = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                Accept: application/json, text/event-stream\r\nContent-Length: 50000000\r\n\
                Expect: 100-continue\r\n\r\n";
    let (answer, took) = raw_exchange(&relay, huge, PROMPT).await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "no 100 Continue first: {answer}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// Params that do not fit their method are -32602 (not -32601); a batch is refused; a second
/// request with the id of one still running is refused at once while the first still gets its
/// answer; paths under `/mcp/` are not the endpoint.
#[tokio::test]
async fn bad_params_batches_duplicate_ids_and_other_paths() {
    let relay = TestRelay::start().await;
    let mut client = RawClient::new(&relay.url);
    client.initialize().await;

    for params in [
        json!({ "name": 5 }),
        json!({ "name": "chat_status", "arguments": "x" }),
    ] {
        let answer = client
            .post(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params }))
            .await;
        let message = &answer.messages()[0];
        assert_eq!(message["error"]["code"], -32602, "{params}: {answer:?}");
    }
    let batch = client
        .post(json!([{ "jsonrpc": "2.0", "id": 2, "method": "ping" }]))
        .await;
    assert_eq!(batch.status, 400, "{batch:?}");
    assert!(
        batch.body.contains("batches are not supported"),
        "{batch:?}"
    );

    // A wait held for 2 s under id 7, then another call with id 7.
    let waiting = {
        let client = RawClient {
            session: client.session.clone(),
            ..RawClient::new(&relay.url)
        };
        tokio::spawn(async move {
            client
                .call(7, "wait_for_message", json!({ "timeout_secs": 2 }))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let second = client
        .post(json!({
            "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": { "name": "chat_status", "arguments": {} }
        }))
        .await;
    assert!(started.elapsed() < Duration::from_secs(1));
    let refusal = &second.messages()[0];
    assert_eq!(refusal["id"], 7, "{second:?}");
    assert_eq!(refusal["error"]["code"], -32600, "{second:?}");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("still running"),
        "{second:?}"
    );
    let first = tokio::time::timeout(PROMPT, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first["result"]["structuredContent"]["timed_out"], true,
        "{first}"
    );

    let elsewhere = RawClient {
        url: format!("{}/anything", relay.url),
        session: client.session.clone(),
        ..RawClient::new(&relay.url)
    };
    assert_eq!(
        elsewhere
            .post(json!({ "jsonrpc": "2.0", "id": 3, "method": "ping" }))
            .await
            .status,
        404
    );
}

/// DELETE ends the session with 204; the same DELETE again, or for a made-up session, is 404;
/// a DELETE without a session id is 400.
#[tokio::test]
async fn delete_answers_204_then_404() {
    let relay = TestRelay::start().await;
    let mut client = RawClient::new(&relay.url);
    client.initialize().await;
    assert_eq!(client.delete().await, 204);
    assert_eq!(client.delete().await, 404);
    let made_up = RawClient {
        session: Some("not-a-session".to_owned()),
        ..RawClient::new(&relay.url)
    };
    assert_eq!(made_up.delete().await, 404);
    assert_eq!(RawClient::new(&relay.url).delete().await, 400);
}

fn received(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .filter(|(_, e)| e["method"] == "message.received")
        .map(|(_, e)| e["params"]["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A client away for 100 events (rmcp's replay cache kept 32) reconnects its GET stream with
/// `Last-Event-ID` and gets every one of them exactly once, in order.
#[tokio::test]
async fn last_event_id_resumes_from_the_inbox_however_much_was_missed() {
    let relay = TestRelay::start().await;
    let mut a = RawClient::new(&relay.url);
    a.initialize().await;
    let b = Chatter::connect(&relay.url).await;
    a.call(1, "join_room", json!({ "room_id": "resume" })).await;
    let _: Value = b.ok("join_room", json!({ "room_id": "resume" })).await;

    let mut stream = a.open_stream().await;
    b.ok::<Value>("send_message", json!({ "text": "before" }))
        .await;
    let seen = read_sse(&mut stream, PROMPT, |e| received(e).len() == 1).await;
    let last_id = seen
        .iter()
        .rev()
        .find(|(id, _)| !id.is_empty())
        .unwrap()
        .0
        .clone();
    drop(stream);

    let sent: Vec<String> = (0..100).map(|i| format!("away-{i:03}")).collect();
    for text in &sent {
        b.ok::<Value>("send_message", json!({ "text": text })).await;
    }
    let again = RawClient {
        session: a.session.clone(),
        ..RawClient::new(&relay.url)
    }
    .header("last-event-id", &last_id);
    let mut stream = again.open_stream().await;
    let got = read_sse(&mut stream, PROMPT, |e| received(e).len() >= sent.len()).await;
    // Nothing more is on its way.
    let more = read_sse(&mut stream, Duration::from_millis(300), |_| false).await;
    assert_eq!(received(&got), sent, "every missed event once, in order");
    assert!(received(&more).is_empty(), "{more:?}");
}

/// A tool call whose POST stream is cut after its priming event: the answer is kept, and a GET
/// with the priming event's id as `Last-Event-ID` gets it (SEP-1699), once.
#[tokio::test]
async fn a_cut_tool_call_stream_is_resumed_with_its_answer() {
    let relay = TestRelay::start().await;
    let mut a = RawClient::new(&relay.url);
    a.initialize().await;
    let b = Chatter::connect(&relay.url).await;
    a.call(1, "join_room", json!({ "room_id": "cut" })).await;
    let _: Value = b.ok("join_room", json!({ "room_id": "cut" })).await;
    // Reads the join, so that the next wait waits.
    a.call(2, "wait_for_message", json!({ "timeout_secs": 5 }))
        .await;

    let mut waiting = a
        .http
        .post(&a.url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", a.session.as_deref().unwrap())
        .body(
            json!({
                "jsonrpc": "2.0", "id": 9, "method": "tools/call",
                "params": { "name": "wait_for_message", "arguments": { "timeout_secs": 20 } }
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let first = tokio::time::timeout(PROMPT, waiting.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&first).into_owned();
    let priming = first
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("a priming event with an id first: {first}"));
    assert!(first.contains("retry:"), "{first}");
    drop(waiting);

    b.ok::<Value>("send_message", json!({ "text": "while cut" }))
        .await;
    let resumer = RawClient {
        session: a.session.clone(),
        ..RawClient::new(&relay.url)
    }
    .header("last-event-id", &priming);
    let mut resumed = resumer.open_stream().await;
    let got = read_sse(&mut resumed, PROMPT, |e| {
        e.iter().any(|(_, m)| m["id"] == 9)
    })
    .await;
    let answer = got
        .iter()
        .map(|(_, m)| m)
        .find(|m| m["id"] == 9)
        .unwrap_or_else(|| panic!("the answer on resume: {got:?}"));
    let events = &answer["result"]["structuredContent"]["events"];
    assert_eq!(events[0]["text"], "while cut", "{answer}");
    // Handed over once: a second resume finds nothing.
    let mut again = resumer.open_stream().await;
    let none = read_sse(&mut again, Duration::from_millis(300), |_| false).await;
    assert!(none.is_empty(), "{none:?}");
}

/// A 2026-07-28 client's probe (`server/discover`, or a request with its version in `_meta`)
/// gets -32022 with the versions the relay speaks, so that it falls back to `initialize`; any
/// other request without a session is -32600.
#[tokio::test]
async fn sessionless_probes_learn_the_supported_versions() {
    let relay = TestRelay::start().await;
    let client = RawClient::new(&relay.url);
    let probes = [
        json!({ "jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {} }),
        json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/list",
            "params": { "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28" } }
        }),
    ];
    for probe in probes {
        let answer = client.post(probe.clone()).await;
        assert_eq!(answer.status, 400, "{probe}: {answer:?}");
        let error = &answer.messages()[0]["error"];
        assert_eq!(error["code"], -32022, "{probe}: {answer:?}");
        let supported = error["data"]["supported"]
            .as_array()
            .expect("supported versions");
        assert!(supported.contains(&json!("2025-11-25")), "{answer:?}");
        assert!(!supported.contains(&json!("2026-07-28")), "{answer:?}");
    }
    let plain = client
        .post(json!({ "jsonrpc": "2.0", "id": 3, "method": "ping" }))
        .await;
    assert_eq!(plain.status, 400, "{plain:?}");
    assert_eq!(plain.messages()[0]["error"]["code"], -32600, "{plain:?}");
}
