//! The chat pane over HTTP: its tools and view only for hosts that render MCP Apps, the long
//! poll behind it, and the web page at `/` with its same-origin rule.

use std::time::{Duration, Instant};

use mcp_chat::pane::{self, CHAT_HTML, CHAT_VIEW_URI, PANE_TOOL_NAMES, UI_MIME_TYPE};
use mcp_chat::tools::TOOL_NAMES;
use rmcp::model::{ReadResourceRequestParams, ResourceContents};
use serde_json::{Value, json};

use crate::common::{Chatter, RawClient, TestRelay, pair};

async fn tool_names(chatter: &Chatter) -> Vec<String> {
    let tools = chatter.service.list_all_tools().await.unwrap();
    tools.into_iter().map(|t| t.name.into_owned()).collect()
}

/// Hosts without the extension see the eight chat tools, unchanged; hosts with it see the
/// pane's three after them, the app-only ones marked so, and are told to offer the pane.
#[tokio::test]
async fn only_hosts_that_render_apps_see_the_pane() {
    let relay = TestRelay::start().await;
    let plain = Chatter::connect(&relay.url).await;
    let ui = Chatter::connect_ui(&relay.url).await;

    assert_eq!(tool_names(&plain).await, TOOL_NAMES);
    let with_pane = tool_names(&ui).await;
    assert_eq!(&with_pane[..TOOL_NAMES.len()], TOOL_NAMES);
    assert_eq!(&with_pane[TOOL_NAMES.len()..], PANE_TOOL_NAMES);

    let tools = ui.service.list_all_tools().await.unwrap();
    let open = tools.iter().find(|t| t.name == pane::OPEN_CHAT).unwrap();
    let meta = serde_json::to_value(open.meta.as_ref().unwrap()).unwrap();
    assert_eq!(meta["ui"]["resourceUri"], CHAT_VIEW_URI);
    let sync = tools.iter().find(|t| t.name == pane::PANE_SYNC).unwrap();
    let meta = serde_json::to_value(sync.meta.as_ref().unwrap()).unwrap();
    assert_eq!(meta["ui"]["visibility"], json!(["app"]));

    let instructions = |c: &Chatter| {
        c.service
            .peer_info()
            .and_then(|i| i.instructions.clone())
            .unwrap_or_default()
    };
    assert!(instructions(&ui).contains("open_chat"));
    assert!(!instructions(&plain).contains("open_chat"));

    // The pane's tools are not there for a client that was not shown them.
    let refused = plain
        .try_call(pane::PANE_SYNC, json!({}))
        .await
        .unwrap_err();
    assert!(refused.contains("unknown tool"), "{refused}");
}

/// The view is a `ui://` resource with the Apps MIME type and the embedded bytes, listed only
/// to hosts that render it.
#[tokio::test]
async fn the_view_is_served_as_an_app_resource() {
    let relay = TestRelay::start().await;
    let plain = Chatter::connect(&relay.url).await;
    let ui = Chatter::connect_ui(&relay.url).await;

    assert!(plain.service.list_all_resources().await.unwrap().is_empty());
    let listed = ui.service.list_all_resources().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].uri, CHAT_VIEW_URI);
    assert_eq!(listed[0].mime_type.as_deref(), Some(UI_MIME_TYPE));

    let read = ui
        .service
        .read_resource(ReadResourceRequestParams::new(CHAT_VIEW_URI))
        .await
        .unwrap();
    let [
        ResourceContents::TextResourceContents {
            uri,
            mime_type,
            text,
            ..
        },
    ] = read.contents.as_slice()
    else {
        panic!("one text resource: {read:?}");
    };
    assert_eq!(uri, CHAT_VIEW_URI);
    assert_eq!(mime_type.as_deref(), Some(UI_MIME_TYPE));
    assert_eq!(text, CHAT_HTML);

    let missing = ui
        .service
        .read_resource(ReadResourceRequestParams::new("ui://mcp-chat/other.html"))
        .await;
    assert!(missing.is_err());
}

/// `open_chat` answers with the caller's status and a line for the model, no chat text.
#[tokio::test]
async fn open_chat_shows_the_current_chat() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect_ui(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    let room = pair(&mut a, &mut b).await;
    b.ok::<Value>("send_message", json!({ "text": "secret words" }))
        .await;

    let result = a.call(pane::OPEN_CHAT, json!({})).await;
    assert_ne!(result.is_error, Some(true));
    let status = result.structured_content.unwrap();
    assert_eq!(status["state"], "in_room");
    assert_eq!(status["room_id"], room.as_str());
    let text = serde_json::to_string(&result.content).unwrap();
    assert!(text.contains("pane is open"), "{text}");
    assert!(!text.contains("secret words"));
}

/// The pane's long poll: the first call draws the chat, a held call wakes as soon as the
/// stranger writes, the pane's own line comes back from the transcript, events it showed are
/// read for the model, and a remount gets the same transcript.
#[tokio::test]
async fn pane_sync_draws_the_chat_and_wakes_on_a_message() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect_ui(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    let room = pair(&mut a, &mut b).await;

    let first: Value = a.ok(pane::PANE_SYNC, json!({})).await;
    assert_eq!(first["status"]["state"], "in_room");
    assert_eq!(first["room_id"], room.as_str());
    assert_eq!(first["events"][0]["type"], "chatroom.found");
    assert_eq!(first["messages"], json!([]));
    let cursor = first["cursor"].as_u64().unwrap();
    assert_eq!(cursor, first["events"][0]["seq"].as_u64().unwrap());

    // Held: nothing new yet, so it waits until B writes.
    let started = Instant::now();
    let (held, ()) = tokio::join!(
        a.ok::<Value>(
            pane::PANE_SYNC,
            json!({ "after_seq": cursor, "since_message_seq": 0, "wait_secs": 20 }),
        ),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            b.ok::<Value>("send_message", json!({ "text": "hello pane" }))
                .await;
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woke on the message"
    );
    assert_eq!(held["events"][0]["type"], "message.received");
    assert_eq!(held["events"][0]["text"], "hello pane");
    assert_eq!(held["messages"][0]["text"], "hello pane");
    assert_eq!(held["messages"][0]["from_you"], false);
    let cursor = held["cursor"].as_u64().unwrap();

    // What the pane showed is read: the model is not handed it by wait_for_message.
    let status: Value = a.ok("chat_status", json!({})).await;
    assert_eq!(status["unread"], 0);

    let sent: Value = a
        .ok(pane::PANE_SEND, json!({ "text": "hi from the pane" }))
        .await;
    assert_eq!(sent["message_seq"], 2);
    assert_eq!(
        b.pushed("message.received").await["text"],
        "hi from the pane"
    );
    let own: Value = a
        .ok(
            pane::PANE_SYNC,
            json!({ "after_seq": cursor, "since_message_seq": 1 }),
        )
        .await;
    assert_eq!(own["events"], json!([]));
    assert_eq!(own["messages"][0]["text"], "hi from the pane");
    assert_eq!(own["messages"][0]["from_you"], true);

    // A view mounted again draws the same chat.
    let again: Value = a.ok(pane::PANE_SYNC, json!({})).await;
    let texts: Vec<&str> = again["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello pane", "hi from the pane"]);
    assert_eq!(again["events"].as_array().unwrap().len(), 2);
}

/// With nothing new, a held call answers empty once its time is up.
#[tokio::test]
async fn an_idle_pane_sync_answers_empty_after_its_hold() {
    let relay = TestRelay::start().await;
    let a = Chatter::connect_ui(&relay.url).await;
    let started = Instant::now();
    let idle: Value = a
        .ok(pane::PANE_SYNC, json!({ "after_seq": 0, "wait_secs": 1 }))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(idle["status"]["state"], "idle");
    assert_eq!(idle["events"], json!([]));
    assert_eq!(idle["messages"], json!([]));
    assert_eq!(idle["cursor"], 0);
}

/// `GET /` is the chat page: the embedded file, with a policy that allows its own inline
/// script by hash and connections to this origin only.
#[tokio::test]
async fn the_web_page_is_served_with_a_strict_policy() {
    let relay = TestRelay::start().await;
    let base = relay.url.trim_end_matches("/mcp");
    let response = reqwest::get(format!("{base}/?room=book-club"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert!(header("content-type").starts_with("text/html"));
    let csp = header("content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    if CHAT_HTML.contains("<script") {
        assert!(csp.contains("'sha256-"), "{csp}");
    }
    assert!(!csp.contains("unsafe-eval"));
    assert_eq!(response.text().await.unwrap(), CHAT_HTML);
}

/// The page's own origin passes the Origin check; any other browser origin is still refused.
#[tokio::test]
async fn a_same_origin_page_passes_and_other_origins_do_not() {
    let relay = TestRelay::start().await;
    let own = format!("http://{}", relay.addr);
    let mut same = RawClient::new(&relay.url).header("origin", &own);
    same.initialize().await;
    let listed = same
        .post(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))
        .await;
    assert_eq!(listed.status, 200);

    for origin in [
        "http://evil.example".to_owned(),
        format!("http://{}:1", relay.addr.ip()),
        "null".to_owned(),
    ] {
        let other = RawClient::new(&relay.url).header("origin", &origin);
        let refused = other.post_initialize().await;
        assert_eq!(refused.status, 403, "{origin}: {refused:?}");
    }
}
