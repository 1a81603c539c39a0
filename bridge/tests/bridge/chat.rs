//! Two bridges chatting through a relay.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Bridge, Relay, paired, relay_config, temp_dir};

/// The host's `initialize` is answered without the network, with the chat tools' instructions.
#[tokio::test]
async fn initialize_is_answered_and_tools_match_the_contract() {
    let relay = Relay::start_with(relay_config()).await;
    let mut a = Bridge::spawn(&relay.url, temp_dir("init"), &[]);
    let result = a.initialize().await;
    assert_eq!(result["serverInfo"]["name"], "mcp-chat-bridge");
    assert_eq!(result["protocolVersion"], "2025-06-18");
    assert!(
        result["instructions"]
            .as_str()
            .unwrap()
            .contains("wait_for_message")
    );
    assert!(result["capabilities"]["experimental"]["claude/channel"].is_object());
    let tools = a.request("tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, mcp_chat::tools::TOOL_NAMES);
}

/// Two bridges: both matched with `chatroom.found` as a custom notification and as a log line;
/// messages both ways, pushed and pulled; channel pushes frame the stranger's words.
#[tokio::test]
async fn two_bridges_chat_through_a_relay() {
    let relay = Relay::start_with(relay_config()).await;
    let (mut a, mut b) = paired(&relay.url).await;
    let log = a
        .notification_where("notifications/message", |p| {
            p["data"]["event"]["type"] == "chatroom.found"
        })
        .await;
    assert_eq!(log["level"], "info");

    let sent = a
        .ok("send_message", json!({ "text": "hello from A" }))
        .await;
    assert_eq!(sent["delivered_to"], 1);
    let got = b.notification("message.received").await;
    assert_eq!(got["text"], "hello from A");
    assert_eq!(got["from"], "Ada");
    let channel = b
        .notification_where("notifications/claude/channel", |p| {
            p["meta"]["type"] == "message.received"
        })
        .await;
    assert!(channel["content"].as_str().unwrap().contains("untrusted"));
    assert!(
        channel["content"]
            .as_str()
            .unwrap()
            .contains("\"hello from A\"")
    );
    assert_eq!(channel["meta"]["from"], "Ada");

    b.ok("send_message", json!({ "text": "hi A" })).await;
    let out = a.ok("wait_for_message", json!({ "timeout_secs": 5 })).await;
    let texts: Vec<&str> = out["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(texts, ["hi A"]);

    // Each pushed event reached the host once, not twice.
    let pushes = b.drain(Duration::from_millis(500)).await;
    let received = pushes
        .iter()
        .filter(|m| m["method"] == "message.received")
        .count();
    assert_eq!(
        received, 0,
        "no duplicate of the message already seen: {pushes:?}"
    );
}

/// A long wait with a progress token gets regular progress notifications, and none after the
/// call finished.
#[tokio::test]
async fn long_waits_report_progress_until_they_end() {
    let relay = Relay::start_with(relay_config()).await;
    let mut a = Bridge::spawn(&relay.url, temp_dir("progress"), &[]);
    a.initialize().await;
    a.ok("enter_queue", json!({})).await;
    a.send(json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {
            "name": "wait_for_message",
            "arguments": { "timeout_secs": 2 },
            "_meta": { "progressToken": "wait-1" }
        }
    }))
    .await;
    let first = a.notification("notifications/progress").await;
    assert_eq!(first["progressToken"], "wait-1");
    let second = a.notification("notifications/progress").await;
    assert!(
        second["progress"].as_f64() > first["progress"].as_f64(),
        "progress increases: {first} then {second}"
    );
    let response = a.response(7).await;
    assert_eq!(response["result"]["structuredContent"]["timed_out"], true);
    a.backlog.clear();
    let after = a.drain(Duration::from_millis(1500)).await;
    assert!(
        !after
            .iter()
            .any(|m| m["method"] == "notifications/progress"),
        "no progress after the response: {after:?}"
    );
}

/// With a configured display name, queue calls without one use it.
#[tokio::test]
async fn configured_display_name_is_used() {
    let relay = Relay::start_with(relay_config()).await;
    let mut a = Bridge::spawn(
        &relay.url,
        temp_dir("name"),
        &[("MCP_CHAT_DISPLAY_NAME", "Nova")],
    );
    a.initialize().await;
    let status: Value = a.ok("enter_queue", json!({})).await;
    assert_eq!(status["display_name"], "Nova");
}

/// A host's cancellation reaches the relay: the cancelled wait consumes nothing, and the next
/// wait gets the message sent after the cancel.
#[tokio::test]
async fn cancellation_is_forwarded_and_loses_nothing() {
    let relay = Relay::start_with(relay_config()).await;
    let (mut a, mut b) = paired(&relay.url).await;
    a.ok("wait_for_message", json!({ "timeout_secs": 0 })).await;
    a.send(json!({
        "jsonrpc": "2.0", "id": 55, "method": "tools/call",
        "params": { "name": "wait_for_message", "arguments": { "timeout_secs": 30 } }
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.send(json!({
        "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": { "requestId": 55, "reason": "user pressed stop" }
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.ok("send_message", json!({ "text": "after cancel" }))
        .await;
    let out = a.ok("wait_for_message", json!({ "timeout_secs": 5 })).await;
    assert_eq!(out["events"][0]["text"], "after cancel");
    let late = a.drain(Duration::from_millis(300)).await;
    assert!(
        !late.iter().any(|m| m["id"] == 55),
        "no answer to a cancelled request: {late:?}"
    );
}

/// The `chat://current` resource lists the latest events and is updated as they arrive.
#[tokio::test]
async fn inbox_resource_follows_the_chat() {
    let relay = Relay::start_with(relay_config()).await;
    let (mut a, mut b) = paired(&relay.url).await;
    let list = a.request("resources/list", json!({})).await;
    assert_eq!(list["result"]["resources"][0]["uri"], "chat://current");
    let sub = a
        .request("resources/subscribe", json!({ "uri": "chat://current" }))
        .await;
    assert_eq!(sub["result"], json!({}));
    b.ok("send_message", json!({ "text": "for the resource" }))
        .await;
    let updated = a.notification("notifications/resources/updated").await;
    assert_eq!(updated["uri"], "chat://current");
    let read = a
        .request("resources/read", json!({ "uri": "chat://current" }))
        .await;
    let text = read["result"]["contents"][0]["text"].as_str().unwrap();
    assert!(text.contains("\"for the resource\""), "{text}");
    assert!(text.contains("untrusted"), "{text}");
}

/// The bridge declares `mcp-chat/events`: the relay pushes each event to it once (no logging
/// mirror), and the bridge writes the logging line for its host itself, once per event.
#[tokio::test]
async fn the_bridge_writes_the_log_lines_and_the_relay_sends_each_event_once() {
    let relay = Relay::start_with(relay_config()).await;
    let (mut a, mut b) = paired(&relay.url).await;
    a.ok("send_message", json!({ "text": "once" })).await;
    b.notification_where("message.received", |p| p["text"] == "once")
        .await;
    let log = b
        .notification_where("notifications/message", |p| {
            p["data"]["event"]["type"] == "message.received"
        })
        .await;
    assert_eq!(log["logger"], "mcp-chat");
    assert!(
        log["data"]["text"].as_str().unwrap().contains("\"once\""),
        "{log}"
    );
    let rest = b.drain(Duration::from_millis(300)).await;
    assert!(
        !rest.iter().any(|m| m["method"] == "notifications/message"
            && m["params"]["data"]["event"]["type"] == "message.received"),
        "one log line per event: {rest:?}"
    );
    // Two chatroom.found and one message.received: three notifications, not six.
    let metrics = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        tcp.read_to_string(&mut text).await.unwrap();
        text
    };
    let sent: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mcp_chat_notifications_sent_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no notifications counter in {metrics}"));
    assert_eq!(sent, 3, "{metrics}");
}

/// A text far beyond what the relay takes (70,000 characters: the relay answers HTTP 413
/// without reading the call) is answered at once with a tool error that says the text is too
/// long and nothing was sent, not 20 s later as "may or may not have taken effect" (issue 18,
/// fault 3). The partner gets nothing, and the next message goes through.
#[tokio::test]
async fn a_text_the_relay_refuses_as_too_large_is_answered_at_once() {
    let relay = Relay::start_with(relay_config()).await;
    let (mut a, mut b) = paired(&relay.url).await;
    let started = std::time::Instant::now();
    let result = a
        .call("send_message", json!({ "text": "x".repeat(70_000) }))
        .await;
    let took = started.elapsed();
    assert_eq!(result["isError"], true, "{result}");
    assert_eq!(
        result["_meta"]["mcp-chat/error"]["error"]["code"], "message_too_long",
        "{result}"
    );
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("too long"), "{text}");
    assert!(text.contains("nothing was sent"), "{text}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    a.ok("send_message", json!({ "text": "short" })).await;
    let got = b.notification("message.received").await;
    assert_eq!(got["text"], "short", "the long text never arrived");
}

/// Two host requests in flight with one JSON-RPC id: the second is refused at once with an
/// error that names the id, the first is answered by the relay, and nothing else comes for
/// that id (issue 18, fault 4: one got "stream closed before its final response", the other
/// was never answered).
#[tokio::test]
async fn a_duplicate_request_id_in_flight_is_refused_and_each_request_answered_once() {
    let relay = Relay::start_with(relay_config()).await;
    let (mut a, _b) = paired(&relay.url).await;
    let wait = json!({
        "jsonrpc": "2.0", "id": "twice", "method": "tools/call",
        "params": { "name": "wait_for_message", "arguments": { "timeout_secs": 1 } },
    });
    a.send(wait.clone()).await;
    a.send(wait).await;
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let message = a.next().await;
        if message["id"] == "twice" && message.get("method").is_none() {
            answers.push(message);
        }
    }
    let refused = &answers[0];
    assert_eq!(refused["error"]["code"], -32600, "{answers:?}");
    let why = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        why.contains("\"twice\"") && why.contains("already"),
        "{why}"
    );
    assert_eq!(answers[1]["result"]["isError"], false, "{answers:?}");
    // A later round trip through the relay: anything more for the id would have come first.
    a.ok("chat_status", json!({})).await;
    let more: Vec<_> = a.backlog.iter().filter(|m| m["id"] == "twice").collect();
    assert!(more.is_empty(), "answered twice: {more:?}");
}
