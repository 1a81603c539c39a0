//! The chat pane: an MCP App view (and the relay's web page) where the person at the keyboard
//! talks to the stranger directly, without the model in between.
//!
//! Hosts that render MCP Apps (extension [`UI_EXTENSION`]) announce it in `initialize`. For them
//! the tool list grows by three tools: [`OPEN_CHAT`], which the model calls to show the pane, and
//! two app-only tools ([`PANE_SYNC`], [`PANE_SEND`]) that only the view may call — hosts keep
//! them away from the model. Every other client sees [`crate::tools::tool_definitions`],
//! unchanged. The view itself is [`CHAT_HTML`], one self-contained file served as the resource
//! [`CHAT_VIEW_URI`] by the relay and by the bridge (so it works before the relay is reached),
//! and by the relay at `GET /` as a plain web page. `docs/chat-pane.md` describes the protocol.
//!
//! Hosts give a view no push from the server, so the view long-polls [`PANE_SYNC`]: the relay
//! answers at once when something is new and otherwise holds the call for up to
//! [`MAX_PANE_WAIT_SECS`]. The state lives on the relay behind the inbox `seq`, so a view that
//! the host tears down and mounts again draws the same transcript.

use std::sync::Arc;

use rmcp::model::{
    ClientCapabilities, JsonObject, MetaObject, ReadResourceResult, Resource, ResourceContents,
    Tool,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::events::ChatEvent;
use crate::tools::{self, ChatStatus, NoParams, SendMessageOutput, TranscriptMessage};

/// The MCP Apps extension id, as hosts announce it in `capabilities.extensions`.
pub const UI_EXTENSION: &str = "io.modelcontextprotocol/ui";
/// The MIME type of an MCP App view.
pub const UI_MIME_TYPE: &str = "text/html;profile=mcp-app";
/// The resource URI of the chat view.
pub const CHAT_VIEW_URI: &str = "ui://mcp-chat/chat.html";
/// The chat view and web page: one self-contained HTML file (no external URL of any kind).
pub const CHAT_HTML: &str = include_str!("ui/chat.html");

/// Tool name (model-visible, UI hosts only): show the chat pane.
pub const OPEN_CHAT: &str = "open_chat";
/// Tool name (app-only): the view's long poll for events and transcript.
pub const PANE_SYNC: &str = "pane_sync";
/// Tool name (app-only): the view sends a line.
pub const PANE_SEND: &str = "pane_send";
/// The tools that only UI hosts list, in the order they are listed after the chat tools.
pub const PANE_TOOL_NAMES: [&str; 3] = [OPEN_CHAT, PANE_SYNC, PANE_SEND];

/// Longest hold of a `pane_sync` call, in seconds. Well under the shortest host tool-call
/// timeout (claude.ai cancels after about 60 s).
pub const MAX_PANE_WAIT_SECS: u64 = 25;
/// Most events or transcript messages one `pane_sync` returns.
pub const MAX_PANE_ITEMS: usize = 100;

/// What the model reads when it opened the pane.
pub const OPEN_CHAT_TEXT: &str = "The mcp-chat pane is open. The user reads the stranger's \
messages and types replies there directly, so you do not need to relay messages or call \
wait_for_message; help only when the user asks you to.";

/// The instructions' paragraph for UI hosts, appended to [`tools::INSTRUCTIONS`].
pub const PANE_INSTRUCTIONS: &str = "\
Chat pane: this host can show mcp-chat's own chat pane. When the user wants to chat with \
strangers, call open_chat and let the user chat there themselves; that keeps the stranger's \
words between the user and the stranger. Use the other tools only when the user asks you to chat \
for them.";

/// Arguments of `pane_sync`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaneSyncParams {
    /// The `cursor` of the previous answer. Leave it out on the first call to get every event
    /// still in the inbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
    /// The highest message_seq already shown for the current room. Leave it out to get the
    /// room's newest messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_message_seq: Option<u64>,
    /// Seconds to hold the call when nothing is new (default 0, at most 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_secs: Option<u64>,
}

/// Result of `pane_sync`: what the view needs to draw the chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaneSync {
    /// Where the participant stands.
    pub status: ChatStatus,
    /// Inbox events after `after_seq`, oldest first.
    pub events: Vec<ChatEvent>,
    /// True when more events are waiting (call again at once).
    pub more: bool,
    /// The newest inbox seq this answer covers: the next call's `after_seq`.
    pub cursor: u64,
    /// The room `messages` belong to (the current room).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// The current room's messages after `since_message_seq` (both sides), oldest first.
    pub messages: Vec<TranscriptMessage>,
}

impl crate::tools::LabelUntrusted for PaneSync {
    fn label_untrusted(&mut self) {
        self.status.label_untrusted();
        self.events.iter_mut().for_each(ChatEvent::label_untrusted);
        self.messages
            .iter_mut()
            .for_each(TranscriptMessage::label_untrusted);
    }
}

impl PaneSync {
    /// True when the answer carries nothing the view has not seen.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.messages.is_empty()
    }
}

/// Clamps a requested `pane_sync` hold to the contract's bounds.
pub fn pane_wait(wait_secs: Option<u64>) -> std::time::Duration {
    std::time::Duration::from_secs(wait_secs.unwrap_or(0).min(MAX_PANE_WAIT_SECS))
}

/// True when `capabilities` (an `initialize` request's `capabilities` object, as JSON) announce
/// the MCP Apps extension with the view's MIME type (or without a MIME type list).
pub fn announces_ui(capabilities: &serde_json::Value) -> bool {
    capabilities
        .get("extensions")
        .and_then(|e| e.get(UI_EXTENSION))
        .and_then(|ui| ui.as_object())
        .is_some_and(accepts_view)
}

/// [`announces_ui`] for rmcp's typed client capabilities.
pub fn client_renders_ui(capabilities: &ClientCapabilities) -> bool {
    capabilities
        .extensions
        .as_ref()
        .and_then(|e| e.get(UI_EXTENSION))
        .is_some_and(accepts_view)
}

/// True when the extension's settings accept [`UI_MIME_TYPE`] (or list no MIME types).
fn accepts_view(settings: &JsonObject) -> bool {
    match settings.get("mimeTypes").and_then(|m| m.as_array()) {
        Some(types) => types.iter().any(|t| t.as_str() == Some(UI_MIME_TYPE)),
        None => true,
    }
}

/// The tool list for a client: the chat tools, and for UI hosts the pane's tools after them.
pub fn tools_for(ui: bool) -> Vec<Tool> {
    let mut list = tools::tool_definitions();
    if ui {
        list.extend(pane_tool_definitions());
    }
    list
}

/// The definition of the tool `name` as a client with (`ui`) or without the extension sees it.
pub fn tool_for(name: &str, ui: bool) -> Option<Tool> {
    tools_for(ui).into_iter().find(|tool| tool.name == name)
}

/// The server instructions for a client with (`ui`) or without the extension.
pub fn instructions_for(ui: bool) -> String {
    if ui {
        format!("{}\n{PANE_INSTRUCTIONS}", tools::INSTRUCTIONS)
    } else {
        tools::INSTRUCTIONS.to_owned()
    }
}

/// The pane's three tools, in [`PANE_TOOL_NAMES`] order.
pub fn pane_tool_definitions() -> Vec<Tool> {
    let mut open = Tool::new(
        OPEN_CHAT,
        "Show the mcp-chat pane, where the user chats with anonymous strangers themselves: \
         find a random stranger (optionally by topic), join a private room by code, read and \
         send messages, skip or leave. Call it with {} when the user wants to chat; it shows \
         the user's current chat if there is one. You do not see what is said in the pane.",
        schema::<NoParams>(),
    )
    .with_title("Open the chat pane")
    .with_raw_output_schema(tools::output_schema::<ChatStatus>())
    .with_annotations(
        rmcp::model::ToolAnnotations::new()
            .read_only(true)
            .destructive(false)
            .idempotent(true)
            .open_world(false),
    );
    open.meta = Some(view_meta(&["model", "app"]));
    let mut sync = Tool::new(
        PANE_SYNC,
        "For the chat pane only: events and transcript after a cursor, held up to wait_secs \
         when nothing is new.",
        schema::<PaneSyncParams>(),
    )
    .with_title("Chat pane: sync")
    .with_raw_output_schema(tools::output_schema::<PaneSync>());
    sync.meta = Some(view_meta(&["app"]));
    let mut send = Tool::new(
        PANE_SEND,
        "For the chat pane only: send the line the user typed to the current room.",
        schema::<tools::SendMessageParams>(),
    )
    .with_title("Chat pane: send")
    .with_raw_output_schema(tools::output_schema::<SendMessageOutput>());
    send.meta = Some(view_meta(&["app"]));
    vec![open, sync, send]
}

/// The chat view as a `resources/list` entry.
pub fn chat_view_resource() -> Resource {
    Resource::new(CHAT_VIEW_URI, "chat-pane")
        .with_title("mcp-chat pane")
        .with_description("The chat pane: the user chats with anonymous strangers here directly.")
        .with_mime_type(UI_MIME_TYPE)
        .with_size(CHAT_HTML.len() as u64)
}

/// The `resources/read` result for the chat view.
pub fn chat_view_contents() -> ReadResourceResult {
    let mut meta = MetaObject::new();
    // No `csp`: the view loads nothing and connects nowhere, so the host's default
    // (`connect-src 'none'`) is what it wants.
    meta.0
        .insert("ui".to_owned(), json!({ "prefersBorder": false }));
    ReadResourceResult::new(vec![ResourceContents::TextResourceContents {
        uri: CHAT_VIEW_URI.to_owned(),
        mime_type: Some(UI_MIME_TYPE.to_owned()),
        text: CHAT_HTML.to_owned(),
        meta: Some(meta),
    }])
}

/// `_meta` of a pane tool: the view it belongs to and who may call it. The flat
/// `ui/resourceUri` key is the pre-2026 spelling some hosts still read.
fn view_meta(visibility: &[&str]) -> MetaObject {
    let mut meta = MetaObject::new();
    meta.0.insert(
        "ui".to_owned(),
        json!({ "resourceUri": CHAT_VIEW_URI, "visibility": visibility }),
    );
    meta.0
        .insert("ui/resourceUri".to_owned(), json!(CHAT_VIEW_URI));
    meta
}

fn schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    tools::input_schema::<T>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ui_clients_get_the_pane_tools() {
        let plain: Vec<_> = tools_for(false).into_iter().map(|t| t.name).collect();
        assert_eq!(plain, tools::TOOL_NAMES);
        let ui: Vec<_> = tools_for(true).into_iter().map(|t| t.name).collect();
        assert_eq!(&ui[..tools::TOOL_NAMES.len()], tools::TOOL_NAMES);
        assert_eq!(&ui[tools::TOOL_NAMES.len()..], PANE_TOOL_NAMES);
    }

    #[test]
    fn app_only_tools_say_so_and_name_the_view() {
        for tool in pane_tool_definitions() {
            let ui = &tool.meta.as_ref().unwrap().0["ui"];
            assert_eq!(ui["resourceUri"], CHAT_VIEW_URI);
            let visible_to_model = ui["visibility"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == "model");
            assert_eq!(visible_to_model, tool.name == OPEN_CHAT, "{}", tool.name);
        }
    }

    #[test]
    fn the_extension_is_recognised_as_hosts_announce_it() {
        assert!(announces_ui(&json!({
            "extensions": { UI_EXTENSION: { "mimeTypes": [UI_MIME_TYPE] } }
        })));
        assert!(announces_ui(&json!({ "extensions": { UI_EXTENSION: {} } })));
        assert!(!announces_ui(&json!({
            "extensions": { UI_EXTENSION: { "mimeTypes": ["text/html"] } }
        })));
        assert!(!announces_ui(
            &json!({ "extensions": { UI_EXTENSION: true } })
        ));
        assert!(!announces_ui(
            &json!({ "experimental": { UI_EXTENSION: {} } })
        ));
        assert!(!announces_ui(&json!(null)));
    }

    #[test]
    fn the_view_links_to_nothing_outside() {
        for needle in ["http://", "https://", "src=\"//", "href=\"//", "url(//"] {
            assert!(!CHAT_HTML.contains(needle), "the view contains {needle:?}");
        }
    }
}
