//! The lean participant (`--client lean`): an MCP session spoken by hand over the shared
//! reqwest client, no rmcp client. `initialize` and `notifications/initialized` as POSTs, the
//! standalone GET stream read by a small SSE line parser, and tool calls as POSTs whose answer
//! (JSON or SSE) is read in full.
//!
//! It exists because rmcp's client costs the generator about as much CPU per message as the
//! relay spends (issue 15): on a shared 2-core box the generator, not the relay, would set the
//! sustained rate. The same code loads the relay, the floor server ([`crate::floor`]) and, with
//! the prototype's tool arguments, the Python prototype.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mcp_chat::protocol::EVENTS_CAPABILITY;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::raw::{self, RawSession};

/// Called for every pushed JSON-RPC notification: arrival time (the generator's clock, read
/// when the bytes arrived), method, params.
pub type EventSink = Box<dyn Fn(u64, &str, Option<&Value>) + Send + Sync>;

/// One lean session.
pub struct LeanSession {
    http: reqwest::Client,
    url: String,
    raw: RawSession,
    prototype: bool,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
    /// The prototype's `(room_id, client_id)` after `join_room`.
    prototype_seat: Mutex<Option<(String, String)>>,
}

impl Drop for LeanSession {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl LeanSession {
    /// `initialize` (declaring `mcp-chat/events` when `events_capability`), `initialized`, and
    /// the GET stream (its response head read before this returns). Errors are kinds such as
    /// `initialize:http:503` or `get:http:405`.
    pub async fn open(
        http: &reqwest::Client,
        url: &str,
        prototype: bool,
        json_answers: bool,
        events_capability: bool,
        sink: impl Fn(u64, &str, Option<&Value>) + Send + Sync + 'static,
        clock: crate::ledger::Clock,
    ) -> Result<Self, String> {
        let capabilities = if events_capability {
            json!({ "experimental": { EVENTS_CAPABILITY: {} } })
        } else {
            json!({})
        };
        let mut raw = raw::open_session_with(http, url, None, capabilities).await?;
        raw.json_answers = json_answers;
        let response = raw::session_get(http, url, &raw)
            .send()
            .await
            .map_err(|e| raw::transport("get", &e))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("get:http:{}", response.status().as_u16()));
        }
        let sink: Arc<EventSink> = Arc::new(Box::new(sink));
        let reader = tokio::spawn(read_events(response, sink, clock));
        Ok(Self {
            http: http.clone(),
            url: url.to_owned(),
            raw,
            prototype,
            next_id: AtomicU64::new(1),
            reader,
            prototype_seat: Mutex::new(None),
        })
    }

    /// True for the prototype's dialect.
    pub fn is_prototype(&self) -> bool {
        self.prototype
    }

    /// The prototype's `join_room`: keeps the `client_id` it answers for later calls.
    pub async fn prototype_join(&self, room: &str, name: &str) -> Result<(), String> {
        let result = self
            .call_raw(
                mcp_chat::tools::JOIN_ROOM,
                json!({ "room_id": room, "display_name": name }),
            )
            .await?;
        // FastMCP puts the tool's returned dict, as JSON text, in the first content block.
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        let answer: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let Some(client_id) = answer["client_id"].as_str() else {
            return Err("join_room:no_client_id".to_owned());
        };
        if answer["status"] == "error" {
            return Err("join_room:refused".to_owned());
        }
        *self.prototype_seat.lock().await = Some((room.to_owned(), client_id.to_owned()));
        Ok(())
    }

    /// Calls a tool; returns its `structuredContent` (or null). For the prototype,
    /// `send_message {text}` becomes its `send_message {room_id, message, client_id}`.
    pub async fn call(&self, tool: &str, args: Map<String, Value>) -> Result<Value, String> {
        let args = if self.prototype && tool == mcp_chat::tools::SEND_MESSAGE {
            let seat = self.prototype_seat.lock().await.clone();
            let Some((room, client_id)) = seat else {
                return Err("send_message:not_joined".to_owned());
            };
            json!({ "room_id": room, "message": args.get("text"), "client_id": client_id })
        } else {
            Value::Object(args)
        };
        let result = self.call_raw(tool, args).await?;
        Ok(result
            .get("structuredContent")
            .cloned()
            .unwrap_or(Value::Null))
    }

    async fn call_raw(&self, tool: &str, args: Value) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        raw::call_tool_id(&self.http, &self.url, &self.raw, id, tool, args).await
    }

    /// Ends the session (DELETE) and stops reading its stream.
    pub async fn close(self) {
        let _ = raw::delete_session(&self.http, &self.url, &self.raw).await;
    }
}

/// Reads SSE events off `response` until it ends, handing each JSON-RPC notification to `sink`.
/// Lines may end in `\n` or `\r\n`; the `data:` lines of one event are joined with `\n`.
async fn read_events(
    mut response: reqwest::Response,
    sink: Arc<EventSink>,
    clock: crate::ledger::Clock,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let now = clock.now_ns();
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(at) = buf[start..].iter().position(|&b| b == b'\n') {
            let mut line = &buf[start..start + at];
            start += at + 1;
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            if line.is_empty() {
                if !data.is_empty() {
                    dispatch(&data, now, &**sink);
                    data.clear();
                }
            } else if let Some(value) = line.strip_prefix(b"data:") {
                if !data.is_empty() {
                    data.push(b'\n');
                }
                data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
            }
        }
        buf.drain(..start);
    }
}

fn dispatch(data: &[u8], now: u64, sink: &(dyn Fn(u64, &str, Option<&Value>) + Send + Sync)) {
    /// The method alone: other notifications (the logging mirror, progress) and answers are
    /// skipped without building their JSON tree.
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        method: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Notification {
        #[serde(default)]
        params: Option<Value>,
    }
    let Ok(Head {
        method: Some(method),
    }) = serde_json::from_slice::<Head>(data)
    else {
        return;
    };
    if !mcp_chat::events::NOTIFICATION_METHODS.contains(&method.as_str()) {
        return;
    }
    if let Ok(n) = serde_json::from_slice::<Notification>(data) {
        sink(now, &method, n.params.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    #[test]
    fn dispatches_notifications_only() {
        let seen: Arc<StdMutex<Vec<String>>> = Arc::default();
        let s = seen.clone();
        let sink: EventSink = Box::new(move |_, method, params| {
            s.lock().unwrap().push(format!(
                "{method} {}",
                params.map_or(Value::Null, Clone::clone)
            ));
        });
        dispatch(
            br#"{"jsonrpc":"2.0","method":"message.received","params":{"text":"x"}}"#,
            0,
            &sink,
        );
        dispatch(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#, 0, &sink);
        dispatch(b"", 0, &sink);
        assert_eq!(*seen.lock().unwrap(), ["message.received {\"text\":\"x\"}"]);
    }
}
