//! The host's requests that wait: forwarded and not answered yet, held for the connection, or
//! waiting for the relay's tool list; and the clocks that run on them.
//!
//! Every host request gets exactly one answer. This table is where that is kept: a request is
//! in it from the moment the router takes it until it is answered (by the relay, or by the
//! bridge: a deadline, a lost connection), and [`PendingCalls::in_flight`] lets the router
//! refuse a second request with the same id instead of confusing the two. The deadlines of the
//! relay's chat tools, the bound on holding a call for the connection and the progress the
//! bridge sends on a long call's behalf are all timers on these entries, so they live here and
//! the router only asks "what is due now?". The clocks are tokio's, so tests run them on paused
//! time (the 20 s chat-call deadline is checked in no time at all).

use std::collections::HashMap;
use std::time::Duration;

use mcp_chat::pane;
use mcp_chat::tools;
use serde_json::{Value, json};
use tokio::time::Instant;

/// How much longer than its own `timeout_secs` a `wait_for_message` may take.
const WAIT_CALL_MARGIN: Duration = Duration::from_secs(15);

/// A host request forwarded to the relay and not answered yet.
pub struct Pending {
    /// Its method.
    pub method: String,
    progress_token: Option<Value>,
    started: Instant,
    last_progress: Instant,
    /// The relay sends progress of its own: the bridge sends none.
    upstream_progress: bool,
    /// For a call of one of the relay's chat tools: the tool and when the bridge gives up on
    /// the answer. Any other request has no deadline: a server that is not a chat relay may
    /// hold a call open as long as its tool runs, and only the host knows how long it waits.
    deadline: Option<(&'static str, Instant)>,
}

/// A host request waiting for the connection.
pub struct Held {
    deadline: Instant,
    /// The request as the host sent it.
    pub message: Value,
}

/// A chat tool call the relay did not answer by its deadline.
pub struct Overdue {
    /// The request's id.
    pub id: Value,
    /// The tool.
    pub tool: &'static str,
    /// How long the bridge waited.
    pub waited: Duration,
}

/// The waiting requests; see the module docs.
pub struct PendingCalls {
    calls: HashMap<String, (Value, Pending)>,
    held: Vec<Held>,
    /// `tools/list` requests waiting briefly for the first connection: (deadline, id).
    list_waiters: Vec<(Instant, Value)>,
    /// How long the relay may take to answer one of its chat tools (other than the waits).
    chat_call_deadline: Duration,
}

fn key(id: &Value) -> String {
    id.to_string()
}

impl PendingCalls {
    /// An empty table; chat tool calls get `chat_call_deadline`.
    pub fn new(chat_call_deadline: Duration) -> Self {
        Self {
            calls: HashMap::new(),
            held: Vec::new(),
            list_waiters: Vec::new(),
            chat_call_deadline,
        }
    }

    /// True when a request with this id still waits for its answer (forwarded, held, or
    /// waiting for the tool list): a second one could not be told apart from it, at the relay
    /// or by the host.
    pub fn in_flight(&self, id: &Value) -> bool {
        self.calls.contains_key(&key(id))
            || self.held.iter().any(|h| h.message["id"] == *id)
            || self.list_waiters.iter().any(|(_, waiting)| waiting == id)
    }

    /// Remembers `message` (a request with `id`) as forwarded now.
    pub fn start(&mut self, id: &Value, message: &Value) {
        let method = message["method"].as_str().unwrap_or("").to_owned();
        let progress_token = message["params"]["_meta"]
            .get("progressToken")
            .filter(|t| t.is_string() || t.is_number())
            .cloned();
        let now = Instant::now();
        let deadline = chat_call_limit(message, self.chat_call_deadline)
            .map(|(tool, limit)| (tool, now + limit));
        let pending = Pending {
            method,
            progress_token,
            started: now,
            last_progress: now,
            upstream_progress: false,
            deadline,
        };
        self.calls.insert(key(id), (id.clone(), pending));
    }

    /// The forwarded request `id`, answered now (by whoever answers it).
    pub fn finish(&mut self, id: &Value) -> Option<Pending> {
        self.calls.remove(&key(id)).map(|(_, pending)| pending)
    }

    /// Every forwarded request (the connection they went on is gone).
    pub fn take_all(&mut self) -> Vec<(Value, Pending)> {
        self.calls.drain().map(|(_, entry)| entry).collect()
    }

    /// Holds `message` until the connection is up, or until `bound` has passed.
    pub fn hold(&mut self, message: Value, bound: Duration) {
        self.held.push(Held {
            deadline: Instant::now() + bound,
            message,
        });
    }

    /// Every held request (the connection is up).
    pub fn take_held(&mut self) -> Vec<Held> {
        std::mem::take(&mut self.held)
    }

    /// Drops the held request `id`; true if there was one (it never reached the relay).
    pub fn cancel_held(&mut self, id: &Value) -> bool {
        let before = self.held.len();
        self.held.retain(|h| h.message["id"] != *id);
        self.held.len() != before
    }

    /// A `tools/list` that waits up to `bound` for the first connection.
    pub fn wait_for_list(&mut self, id: Value, bound: Duration) {
        self.list_waiters.push((Instant::now() + bound, id));
    }

    /// Every `tools/list` waiting for the first connection (it is up).
    pub fn take_list_waiters(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.list_waiters)
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    }

    /// The chat tool calls past their deadline, removed.
    pub fn overdue(&mut self, now: Instant) -> Vec<Overdue> {
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, (_, p))| p.deadline.is_some_and(|(_, at)| at <= now))
            .map(|(key, _)| key.clone())
            .collect();
        due.into_iter()
            .filter_map(|key| self.calls.remove(&key))
            .filter_map(|(id, pending)| {
                let (tool, _) = pending.deadline?;
                let waited = now.duration_since(pending.started);
                Some(Overdue { id, tool, waited })
            })
            .collect()
    }

    /// The held requests past their bound, removed.
    pub fn expired_held(&mut self, now: Instant) -> Vec<Held> {
        let (expired, kept) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.deadline <= now);
        self.held = kept;
        expired
    }

    /// The `tools/list` waits past their bound, removed.
    pub fn expired_list_waiters(&mut self, now: Instant) -> Vec<Value> {
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.list_waiters)
            .into_iter()
            .partition(|(d, _)| *d <= now);
        self.list_waiters = waiting;
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// Marks the request whose progress token is `token` as reporting progress itself; false
    /// when no request in flight has it (progress for a finished call, which hosts punish).
    pub fn relay_reports_progress(&mut self, token: &Value) -> bool {
        let owner = self
            .calls
            .values_mut()
            .find(|(_, p)| p.progress_token.as_ref() == Some(token));
        match owner {
            Some((_, pending)) => {
                pending.upstream_progress = true;
                true
            }
            None => false,
        }
    }

    /// Progress notifications due now (every `interval`) for long calls with a progress token
    /// whose server sends none of its own.
    pub fn progress(&mut self, now: Instant, interval: Duration) -> Vec<Value> {
        let mut ticks = Vec::new();
        for (_, pending) in self.calls.values_mut() {
            if pending.upstream_progress || now.duration_since(pending.last_progress) < interval {
                continue;
            }
            let Some(token) = &pending.progress_token else {
                continue;
            };
            pending.last_progress = now;
            // Progress must grow with every notification: tenths of seconds waited do.
            let waited = now.duration_since(pending.started).as_millis() / 100;
            ticks.push(json!({
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {
                    "progressToken": token,
                    "progress": waited as f64 / 10.0,
                    "message": format!("still waiting ({} s)", waited / 10),
                },
            }));
        }
        ticks
    }
}

/// For a `tools/call` of one of the relay's chat tools: the tool's name and how long its answer
/// may take. `wait_for_message` waits up to its `timeout_secs`, and the pane's `pane_sync` up
/// to its `wait_secs` (clamped as the relay clamps them), before answering; a value that is
/// not a whole number of seconds gets the longest wait, so that the bridge never gives up
/// before the relay would answer. Every other chat tool gets `deadline`.
fn chat_call_limit(message: &Value, deadline: Duration) -> Option<(&'static str, Duration)> {
    if message["method"] != "tools/call" {
        return None;
    }
    let name = message["params"]["name"].as_str()?;
    let tool = tools::TOOL_NAMES
        .into_iter()
        .chain(pane::PANE_TOOL_NAMES)
        .find(|t| *t == name)?;
    let arguments = &message["params"]["arguments"];
    let asked = |key: &str| match &arguments[key] {
        Value::Null => None,
        value => Some(value.as_u64().unwrap_or(u64::MAX)),
    };
    match tool {
        tools::WAIT_FOR_MESSAGE => Some((
            tool,
            tools::wait_duration(asked("timeout_secs")) + WAIT_CALL_MARGIN,
        )),
        pane::PANE_SYNC => Some((tool, pane::pane_wait(asked("wait_secs")) + WAIT_CALL_MARGIN)),
        _ => Some((tool, deadline)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: Value) -> Value {
        json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": { "name": name, "arguments": arguments },
        })
    }

    #[test]
    fn chat_tools_get_deadlines_and_other_calls_none() {
        let limit = |m: &Value| {
            chat_call_limit(m, Duration::from_secs(20)).map(|(tool, d)| (tool, d.as_secs()))
        };
        assert_eq!(
            limit(&call("send_message", json!({ "text": "hi" }))),
            Some(("send_message", 20))
        );
        assert_eq!(
            limit(&call("chat_status", json!({}))),
            Some(("chat_status", 20))
        );
        let wait = |args| limit(&call("wait_for_message", args)).unwrap().1;
        assert_eq!(wait(json!({ "timeout_secs": 5 })), 5 + 15);
        assert_eq!(wait(json!({})), mcp_chat::limits::DEFAULT_WAIT_SECS + 15);
        assert_eq!(
            wait(json!({ "timeout_secs": 3600 })),
            mcp_chat::limits::MAX_WAIT_SECS + 15
        );
        assert_eq!(
            wait(json!({ "timeout_secs": 2.5 })),
            mcp_chat::limits::MAX_WAIT_SECS + 15
        );
        assert_eq!(wait(Value::Null), mcp_chat::limits::DEFAULT_WAIT_SECS + 15);
        let sync = |args| limit(&call("pane_sync", args)).unwrap().1;
        assert_eq!(sync(json!({})), 15);
        assert_eq!(sync(json!({ "wait_secs": 20 })), 20 + 15);
        assert_eq!(
            sync(json!({ "wait_secs": 3600 })),
            pane::MAX_PANE_WAIT_SECS + 15
        );
        assert_eq!(
            limit(&call("pane_send", json!({ "text": "hi" }))),
            Some(("pane_send", 20))
        );
        // A tool of some other server, and requests that are not tool calls, have no bound.
        assert_eq!(limit(&call("long_build", json!({}))), None);
        assert_eq!(
            limit(&json!({ "jsonrpc": "2.0", "id": 1, "method": "resources/read" })),
            None
        );
    }

    #[test]
    fn a_request_is_in_flight_until_answered_and_a_deadline_answers_it_once() {
        let mut calls = PendingCalls::new(Duration::ZERO);
        let id = json!("a");
        calls.start(&id, &call("send_message", json!({ "text": "hi" })));
        assert!(calls.in_flight(&id));
        let overdue = calls.overdue(Instant::now());
        assert_eq!(overdue.len(), 1);
        assert_eq!(overdue[0].id, id);
        assert!(!calls.in_flight(&id));
        assert!(calls.overdue(Instant::now()).is_empty());
        assert!(calls.finish(&id).is_none());
    }
}
