//! Pointed at any MCP server (not a chat relay), the bridge is a faithful stdio bridge.

#![allow(deprecated)] // sampling and logging are deprecated by SEP-2577 but still in use.

use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, CreateMessageRequestParams, CustomNotification, LoggingLevel,
    LoggingMessageNotificationParam, ProgressNotificationParam, Role, SamplingMessage,
    ServerCapabilities, ServerConfig, ServerNotification,
};
use rmcp::service::RequestContext;
use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde_json::json;

use crate::common::{Bridge, temp_dir};

/// A small MCP server that has nothing to do with chat.
#[derive(Clone)]
struct Gadget {
    tool_router: ToolRouter<Self>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// Text to echo.
    text: String,
}

#[tool_router]
impl Gadget {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    /// Echoes text and a tiny image.
    #[tool]
    async fn echo(
        &self,
        Parameters(args): Parameters<EchoArgs>,
    ) -> Result<CallToolResult, McpError> {
        Ok(CallToolResult::success(vec![
            ContentBlock::text(args.text),
            ContentBlock::image("aGVsbG8=", "image/png"),
        ]))
    }

    /// Sends a log line, progress and a custom notification, then fails on purpose.
    #[tool]
    async fn chatty(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, McpError> {
        let _ = ctx
            .peer
            .notify_logging_message(LoggingMessageNotificationParam::new(
                LoggingLevel::Info,
                json!("working"),
            ))
            .await;
        if let Some(token) = ctx.meta.get_progress_token() {
            let _ = ctx
                .peer
                .notify_progress(ProgressNotificationParam::new(token, 0.5))
                .await;
        }
        let _ = ctx
            .peer
            .send_notification(ServerNotification::CustomNotification(
                CustomNotification::new("notifications/custom/hello", Some(json!({ "n": 1 }))),
            ))
            .await;
        Ok(CallToolResult::error(vec![ContentBlock::text(
            "deliberate failure",
        )]))
    }

    /// Asks the host's model (sampling) and returns its answer.
    #[tool]
    async fn ask_host(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, McpError> {
        let answer = ctx
            .peer
            .create_message(CreateMessageRequestParams::new(
                vec![SamplingMessage::new(
                    Role::User,
                    rmcp::model::SamplingMessageContentBlock::text("2+2?"),
                )],
                10,
            ))
            .await
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        let text = serde_json::to_string(&answer.message).unwrap();
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Gadget {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .build(),
        )
    }
}

async fn start_gadget() -> String {
    start_gadget_on("127.0.0.1:0").await
}

async fn start_gadget_on(addr: &str) -> String {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = StreamableHttpService::new(
        || Ok(Gadget::new()),
        LocalSessionManager::default().into(),
        Default::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}/mcp")
}

/// The server's tools, exact results (every content type, isError), its notifications in order,
/// and its requests to the host all pass through the bridge.
#[tokio::test]
async fn bridge_is_transparent_for_other_servers() {
    let url = start_gadget().await;
    let mut host = Bridge::spawn(&url, temp_dir("gadget"), &[]);
    host.initialize().await;
    let tools = host.request("tools/list", json!({})).await;
    let mut names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["ask_host", "chatty", "echo"]);

    let echo = host.call("echo", json!({ "text": "hi" })).await;
    assert_eq!(echo["content"][0], json!({ "type": "text", "text": "hi" }));
    assert_eq!(echo["content"][1]["type"], "image");
    assert_eq!(echo["content"][1]["data"], "aGVsbG8=");

    host.send(json!({
        "jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": { "name": "chatty", "arguments": {}, "_meta": { "progressToken": 42 } }
    }))
    .await;
    let mut order = Vec::new();
    let result = loop {
        let m = host.next().await;
        if m["id"] == 9 {
            break m;
        }
        order.push(m["method"].as_str().unwrap_or("").to_owned());
    };
    assert_eq!(result["result"]["isError"], true);
    // rmcp sends the progress on the call's own SSE stream and the others on the session's
    // stream; the bridge keeps the order it receives, but two streams have no order between them.
    order.sort();
    assert_eq!(
        order,
        [
            "notifications/custom/hello",
            "notifications/message",
            "notifications/progress"
        ],
        "every notification arrives"
    );

    // Sampling: the server asks the host, the host answers, the answer goes back.
    host.send(json!({
        "jsonrpc": "2.0", "id": 10, "method": "tools/call",
        "params": { "name": "ask_host", "arguments": {} }
    }))
    .await;
    let ask = loop {
        let m = host.next().await;
        if m["method"] == "sampling/createMessage" {
            break m;
        }
    };
    host.send(json!({
        "jsonrpc": "2.0", "id": ask["id"],
        "result": { "model": "test", "role": "assistant", "content": { "type": "text", "text": "4" } }
    }))
    .await;
    let answer = tokio::time::timeout(Duration::from_secs(10), host.response(10))
        .await
        .unwrap();
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("\"4\""),
        "{answer}"
    );
}

/// A tools list served from the built-in contract (server not reachable yet) is followed by
/// `notifications/tools/list_changed` once the real server turns out to have other tools.
#[tokio::test]
async fn list_changed_when_the_served_fallback_was_wrong() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut host = Bridge::spawn(&format!("http://{addr}/mcp"), temp_dir("listchanged"), &[]);
    host.initialize().await;
    let tools = host.request("tools/list", json!({})).await;
    assert_eq!(
        tools["result"]["tools"][0]["name"], "enter_queue",
        "the contract's list"
    );
    start_gadget_on(&addr).await;
    host.notification("notifications/tools/list_changed").await;
    let tools = host.request("tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"echo"), "{names:?}");
}
