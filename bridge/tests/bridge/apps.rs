//! The chat pane through the bridge: its tools and view only for hosts that announce MCP Apps,
//! the view served from the binary before the relay is reached, the app-only tools forwarded.

use std::time::{Duration, Instant};

use mcp_chat::pane::{self, CHAT_HTML, CHAT_VIEW_URI, PANE_TOOL_NAMES, UI_MIME_TYPE};
use mcp_chat::tools::TOOL_NAMES;
use serde_json::{Value, json};

use crate::common::{Bridge, Relay, relay_config, temp_dir};

fn names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("a tool list: {list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

fn with_pane() -> Vec<String> {
    TOOL_NAMES
        .iter()
        .chain(PANE_TOOL_NAMES.iter())
        .map(|n| (*n).to_owned())
        .collect()
}

/// The relay lists the pane's tools to a host that announced the extension (the bridge passes
/// its capabilities on), and not to one that did not; the instructions follow.
#[tokio::test]
async fn only_a_host_that_renders_apps_gets_the_pane() {
    let relay = Relay::start_with(relay_config()).await;
    let mut ui = Bridge::spawn(&relay.url, temp_dir("apps-ui"), &[]);
    let mut plain = Bridge::spawn(&relay.url, temp_dir("apps-plain"), &[]);
    let init = ui.initialize_ui().await;
    assert!(init["instructions"].as_str().unwrap().contains("open_chat"));
    let init = plain.initialize().await;
    assert!(!init["instructions"].as_str().unwrap().contains("open_chat"));

    assert_eq!(
        names(&ui.request("tools/list", json!({})).await),
        with_pane()
    );
    assert_eq!(
        names(&plain.request("tools/list", json!({})).await),
        TOOL_NAMES
    );

    // The relay's own list (not the bridge's fallback) carries the view and visibility.
    let status = ui.ok(pane::OPEN_CHAT, json!({})).await;
    assert_eq!(status["state"], "idle");
    let list = ui.request("tools/list", json!({})).await;
    let sync = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == pane::PANE_SYNC)
        .unwrap()
        .clone();
    assert_eq!(sync["_meta"]["ui"]["visibility"], json!(["app"]));
    assert_eq!(sync["_meta"]["ui"]["resourceUri"], CHAT_VIEW_URI);
}

/// With no relay in reach, the host still gets the pane's tools and its view, from the binary.
#[tokio::test]
async fn the_view_opens_before_the_relay_is_reached() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", closed.local_addr().unwrap());
    drop(closed);
    let mut ui = Bridge::spawn(&url, temp_dir("apps-offline"), &[]);
    ui.initialize_ui().await;

    let read = ui
        .request("resources/read", json!({ "uri": CHAT_VIEW_URI }))
        .await;
    let contents = &read["result"]["contents"][0];
    assert_eq!(contents["uri"], CHAT_VIEW_URI);
    assert_eq!(contents["mimeType"], UI_MIME_TYPE);
    assert_eq!(contents["text"], CHAT_HTML);

    let listed = ui.request("resources/list", json!({})).await;
    let uris: Vec<&str> = listed["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert!(uris.contains(&CHAT_VIEW_URI), "{listed}");

    assert_eq!(
        names(&ui.request("tools/list", json!({})).await),
        with_pane()
    );
}

/// Two panes behind two bridges: a held `pane_sync` wakes when the other side sends with
/// `pane_send`, and the line shows in both transcripts.
#[tokio::test]
async fn pane_calls_go_through_the_bridge() {
    let relay = Relay::start_with(relay_config()).await;
    let mut a = Bridge::spawn(&relay.url, temp_dir("apps-a"), &[]);
    let mut b = Bridge::spawn(&relay.url, temp_dir("apps-b"), &[]);
    a.initialize_ui().await;
    b.initialize_ui().await;
    a.ok("enter_queue", json!({ "display_name": "Ada" })).await;
    b.ok("enter_queue", json!({ "display_name": "Bob" })).await;

    let first = a.ok(pane::PANE_SYNC, json!({})).await;
    assert_eq!(first["status"]["state"], "in_room");
    let cursor = first["cursor"].clone();

    // A's held call is in flight while B sends; the bridge answers each call exactly once.
    a.send(json!({
        "jsonrpc": "2.0", "id": 900, "method": "tools/call",
        "params": {
            "name": pane::PANE_SYNC,
            "arguments": { "after_seq": cursor, "since_message_seq": 0, "wait_secs": 20 }
        }
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let sent = b
        .ok(pane::PANE_SEND, json!({ "text": "hello from B's pane" }))
        .await;
    assert_eq!(sent["delivered_to"], 1);
    let held = a.response(900).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let sync = &held["result"]["structuredContent"];
    assert_eq!(sync["messages"][0]["text"], "hello from B's pane");
    assert_eq!(sync["messages"][0]["from_you"], false);

    let own = b
        .ok(
            pane::PANE_SYNC,
            json!({ "after_seq": 0, "since_message_seq": 0 }),
        )
        .await;
    assert_eq!(own["messages"][0]["from_you"], true);
}
