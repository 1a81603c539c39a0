//! What the bridge advertises to its host and how it answers the list methods of each
//! capability, over real stdio (issue 16; rmcp 3.11 #1446 made the defaults of unadvertised
//! methods -32601 on the relay's side).
//!
//! The rule, the same as the relay's (`server/tests/relay/capabilities.rs`): every method of an
//! advertised capability answers (an empty list when there is nothing), every method of a
//! capability not advertised answers -32601. The bridge advertises `tools`, `logging`,
//! `resources` (its own `chat://current`, and the chat view for hosts with the MCP Apps
//! extension) and `prompts` (none: Claude Desktop asks for `resources/list` and `prompts/list`
//! right after `initialize`, whatever was advertised), and not `completions`. Lists are the same
//! before the relay is reached and after.

use std::time::{Duration, Instant};

use mcp_chat::pane;
use serde_json::{Value, json};

use crate::common::{Bridge, Relay, temp_dir};

/// How fast a method the bridge answers itself must answer, relay or not.
const AT_ONCE: Duration = Duration::from_secs(1);

fn complete_params() -> Value {
    json!({
        "ref": { "type": "ref/prompt", "name": "anything" },
        "argument": { "name": "a", "value": "" }
    })
}

fn ui_capabilities() -> Value {
    json!({ "extensions": { pane::UI_EXTENSION: { "mimeTypes": [pane::UI_MIME_TYPE] } } })
}

fn check_advertised(result: &Value) {
    let caps = &result["capabilities"];
    assert!(caps["tools"].is_object(), "{caps}");
    assert!(caps["logging"].is_object(), "{caps}");
    assert_eq!(caps["resources"]["subscribe"], true, "{caps}");
    assert!(caps["prompts"].is_object(), "{caps}");
    assert!(caps.get("completions").is_none(), "{caps}");
}

/// The URIs of `resources/list`, sorted (the order carries no meaning).
async fn resource_uris(bridge: &mut Bridge) -> Vec<String> {
    let list = bridge.request("resources/list", json!({})).await;
    let mut uris: Vec<String> = list["result"]["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("resources/list: {list}"))
        .iter()
        .map(|r| r["uri"].as_str().unwrap().to_owned())
        .collect();
    uris.sort();
    uris
}

fn expected_uris(ui: bool) -> Vec<String> {
    let mut uris = vec![mcp_chat_bridge::INBOX_URI.to_owned()];
    if ui {
        uris.push(pane::CHAT_VIEW_URI.to_owned());
    }
    uris.sort();
    uris
}

/// The answers of the three list methods the bridge can always give, each timed.
async fn check_lists(bridge: &mut Bridge, ui: bool, when: &str) {
    let started = Instant::now();
    assert_eq!(resource_uris(bridge).await, expected_uris(ui), "{when}");
    let templates = bridge.request("resources/templates/list", json!({})).await;
    assert_eq!(
        templates["result"]["resourceTemplates"],
        json!([]),
        "{when}: {templates}"
    );
    let prompts = bridge.request("prompts/list", json!({})).await;
    assert_eq!(prompts["result"]["prompts"], json!([]), "{when}: {prompts}");
    assert!(
        started.elapsed() < AT_ONCE * 3,
        "{when}: the list methods took {:?}",
        started.elapsed()
    );
}

async fn check_connected(capabilities: Value, ui: bool) {
    let relay = Relay::start().await;
    let mut bridge = Bridge::spawn(&relay.url, temp_dir("caps"), &[]);
    let result = bridge.initialize_with(capabilities).await;
    check_advertised(&result);
    // Right after initialize, as Claude Desktop asks: answered whether or not the relay is
    // reached yet.
    check_lists(&mut bridge, ui, "right after initialize").await;
    // Once the relay is reached (a chat tool answered), the same lists.
    let status = bridge.ok(mcp_chat::tools::CHAT_STATUS, json!({})).await;
    assert!(status["state"].is_string(), "{status}");
    check_lists(&mut bridge, ui, "connected").await;
    let complete = bridge
        .request("completion/complete", complete_params())
        .await;
    assert_eq!(
        complete["error"]["code"], -32601,
        "completion/complete: {complete}"
    );
    drop(bridge);
    relay.stop().await;
}

/// A host without the MCP Apps extension, relay reachable.
#[tokio::test]
async fn bridge_answers_each_list_method_as_it_advertises() {
    check_connected(json!({ "sampling": {} }), false).await;
}

/// A host with the MCP Apps extension: the same, with the chat view listed.
#[tokio::test]
async fn bridge_answers_a_ui_host_the_same_with_the_view_listed() {
    check_connected(ui_capabilities(), true).await;
}

/// The relay cannot be reached: the lists are answered at once, the same as connected.
#[tokio::test]
async fn bridge_answers_the_lists_at_once_without_a_relay() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let url = format!("http://{closed}/mcp");
    for (capabilities, ui) in [(json!({}), false), (ui_capabilities(), true)] {
        let mut bridge = Bridge::spawn(&url, temp_dir("caps-offline"), &[]);
        let result = bridge.initialize_with(capabilities).await;
        check_advertised(&result);
        check_lists(&mut bridge, ui, "relay unreachable").await;
    }
}

/// `completion/complete` is not advertised, so it answers -32601 at once, also while the relay
/// is unreachable (it once waited for the relay, then answered "could not be reached").
#[tokio::test]
async fn bridge_answers_completion_at_once_without_a_relay() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut bridge = Bridge::spawn(&format!("http://{closed}/mcp"), temp_dir("caps-c"), &[]);
    bridge.initialize().await;
    let started = Instant::now();
    let complete = bridge
        .request("completion/complete", complete_params())
        .await;
    assert_eq!(complete["error"]["code"], -32601, "{complete}");
    assert!(started.elapsed() < AT_ONCE, "{:?}", started.elapsed());
}
