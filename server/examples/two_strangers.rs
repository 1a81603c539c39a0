//! Two MCP clients chatting through a running relay: a end-to-end check of a deployment.
//!
//! Start a relay (`cargo run -p mcp-chat-relay`), then:
//!
//! ```text
//! cargo run -p mcp-chat-relay --example two_strangers -- http://127.0.0.1:8080/mcp
//! ```
//!
//! Both clients enter the random queue, get paired, exchange a message each way (one received
//! as a pushed notification, one with `wait_for_message`), and leave.

use anyhow::{Context, bail};
use rmcp::model::{CallToolRequestParams, CallToolResult, CustomNotification};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Prints and forwards every custom notification the relay pushes.
#[derive(Clone)]
struct Printer {
    name: &'static str,
    pushes: mpsc::UnboundedSender<CustomNotification>,
}

impl ClientHandler for Printer {
    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _ctx: NotificationContext<RoleClient>,
    ) {
        println!(
            "  [{} received push] {} {}",
            self.name,
            notification.method,
            notification.params.clone().unwrap_or(Value::Null)
        );
        let _ = self.pushes.send(notification);
    }
}

type Client = RunningService<RoleClient, Printer>;

async fn connect(
    url: &str,
    name: &'static str,
) -> anyhow::Result<(Client, mpsc::UnboundedReceiver<CustomNotification>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = Printer { name, pushes: tx }
        .serve(StreamableHttpClientTransport::from_uri(url))
        .await
        .with_context(|| format!("{name} could not connect to {url}"))?;
    Ok((client, rx))
}

async fn call(client: &Client, who: &str, tool: &str, args: Value) -> anyhow::Result<Value> {
    let Value::Object(args) = args else {
        bail!("arguments must be an object");
    };
    let result: CallToolResult = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
        .await?;
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default();
    println!("{who} → {tool}: {text}");
    if result.is_error == Some(true) {
        bail!("{tool} failed: {text}");
    }
    Ok(result.structured_content.unwrap_or(Value::Null))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080/mcp".to_owned());
    let (alice, mut alice_pushes) = connect(&url, "alice").await?;
    let (bob, _bob_pushes) = connect(&url, "bob").await?;

    call(
        &alice,
        "alice",
        "enter_queue",
        json!({ "display_name": "Alice" }),
    )
    .await?;
    call(&bob, "bob", "enter_queue", json!({ "display_name": "Bob" })).await?;

    call(
        &bob,
        "bob",
        "send_message",
        json!({ "text": "Hi, I'm Bob!" }),
    )
    .await?;
    // Alice hears it as a pushed notification...
    while let Some(push) = alice_pushes.recv().await {
        if push.method == mcp_chat::events::MESSAGE_RECEIVED {
            break;
        }
    }
    call(
        &alice,
        "alice",
        "send_message",
        json!({ "text": "Hello Bob, Alice here." }),
    )
    .await?;
    // ...and Bob pulls his with wait_for_message (found + Alice's message).
    let out = call(
        &bob,
        "bob",
        "wait_for_message",
        json!({ "timeout_secs": 10 }),
    )
    .await?;
    let got = out["events"]
        .as_array()
        .is_some_and(|events| events.iter().any(|e| e["text"] == "Hello Bob, Alice here."));
    if !got {
        bail!("bob did not receive alice's message: {out}");
    }

    call(&alice, "alice", "leave_chat", json!({})).await?;
    alice.cancel().await?;
    bob.cancel().await?;
    println!("ok: two strangers chatted through {url}");
    Ok(())
}
