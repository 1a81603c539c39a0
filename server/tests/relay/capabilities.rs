//! What the relay advertises and how it answers the list methods of each capability, over raw
//! HTTP JSON-RPC (issue 16; rmcp 3.11 #1446 changed the defaults of the unadvertised ones).
//!
//! The rule, the same for the bridge (`bridge/tests/bridge/capabilities.rs`): every method of
//! an advertised capability answers (an empty list when there is nothing), and every method of
//! a capability that is not advertised answers JSON-RPC -32601 (method not found). The relay
//! advertises `tools`, `logging` and `resources`; not `prompts` and not `completions`.
//!
//! Only plain HTTP and JSON here (no rmcp client, no relay internals), so the test holds
//! whatever the relay's session layer is built on.

use serde_json::{Value, json};

use crate::common::{RawClient, TestRelay};

/// `initialize` with these client capabilities, then `notifications/initialized`; returns the
/// initialize result. Keeps the session id, if the relay gives one.
async fn initialize(client: &mut RawClient, capabilities: Value) -> Value {
    let response = client
        .post(json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": capabilities,
                "clientInfo": { "name": "capabilities-test", "version": "0" }
            }
        }))
        .await;
    assert_eq!(response.status, 200, "initialize: {response:?}");
    client.session = response
        .headers
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let result = answer(&response.messages(), 1)["result"].clone();
    let ack = client
        .post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
        .await;
    assert!(
        (200..300).contains(&ack.status),
        "notifications/initialized: {ack:?}"
    );
    result
}

fn answer(messages: &[Value], id: u64) -> Value {
    messages
        .iter()
        .find(|m| m["id"] == id && m.get("method").is_none())
        .cloned()
        .unwrap_or_else(|| panic!("no answer with id {id} in {messages:?}"))
}

/// Sends one request and returns its JSON-RPC answer (result or error).
async fn request(client: &RawClient, id: u64, method: &str, params: Value) -> Value {
    let response = client
        .post(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
        .await;
    assert_eq!(response.status, 200, "{method}: {response:?}");
    answer(&response.messages(), id)
}

fn complete_params() -> Value {
    json!({
        "ref": { "type": "ref/prompt", "name": "anything" },
        "argument": { "name": "a", "value": "" }
    })
}

/// What one kind of host sees: the advertised capabilities and the answer of each list method.
async fn check(relay: &TestRelay, capabilities: Value, view_listed: bool) {
    let mut client = RawClient::new(&relay.url);
    let result = initialize(&mut client, capabilities).await;
    let advertised = &result["capabilities"];
    assert!(advertised["tools"].is_object(), "{advertised}");
    assert!(advertised["logging"].is_object(), "{advertised}");
    assert!(advertised["resources"].is_object(), "{advertised}");
    assert!(advertised.get("prompts").is_none(), "{advertised}");
    assert!(advertised.get("completions").is_none(), "{advertised}");

    let list = request(&client, 2, "resources/list", json!({})).await;
    let uris: Vec<&str> = list["result"]["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("resources/list: {list}"))
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    if view_listed {
        assert_eq!(uris, [mcp_chat::pane::CHAT_VIEW_URI], "{list}");
    } else {
        assert!(uris.is_empty(), "{list}");
    }

    let templates = request(&client, 3, "resources/templates/list", json!({})).await;
    assert_eq!(
        templates["result"]["resourceTemplates"],
        json!([]),
        "resources/templates/list: {templates}"
    );

    let prompts = request(&client, 4, "prompts/list", json!({})).await;
    assert_eq!(prompts["error"]["code"], -32601, "prompts/list: {prompts}");
    assert!(prompts.get("result").is_none());

    let complete = request(&client, 5, "completion/complete", complete_params()).await;
    assert_eq!(
        complete["error"]["code"], -32601,
        "completion/complete: {complete}"
    );

    // And a method nobody has, for comparison: the same answer.
    let unknown = request(&client, 6, "no/such_method", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    let _ = client.delete().await;
}

/// A host without the MCP Apps extension: resources advertised and listed (empty), resource
/// templates an empty list, prompts and completion -32601.
#[tokio::test]
async fn relay_answers_each_list_method_as_it_advertises() {
    let relay = TestRelay::start().await;
    check(&relay, json!({}), false).await;
    relay.stop().await;
}

/// A host that renders MCP Apps: the same capabilities and answers, and the chat view listed.
#[tokio::test]
async fn relay_answers_a_ui_host_the_same_with_the_view_listed() {
    let relay = TestRelay::start().await;
    let ui = json!({
        "extensions": {
            mcp_chat::pane::UI_EXTENSION: { "mimeTypes": [mcp_chat::pane::UI_MIME_TYPE] }
        }
    });
    check(&relay, ui, true).await;
    relay.stop().await;
}
