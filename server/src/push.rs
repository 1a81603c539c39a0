//! Pushing a participant's events to its MCP session.
//!
//! One pusher task per session follows the participant's inbox (through the store's watch
//! channel) and sends every new event twice: as a custom notification named after the event
//! (`message.received`, ...) for clients that handle them, and as an MCP logging notification
//! (`notifications/message`, level info) for hosts that only show logs, unless the client said
//! it renders the custom notifications itself (`mcp-chat/events`). The inbox is the bounded
//! outbound queue: a slow client delays only its own pusher, never the sender's tool call, and an
//! event it misses stays readable through `wait_for_message`.

#![allow(deprecated)] // MCP logging is deprecated by SEP-2577 but is what Claude Desktop shows.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mcp_chat::ChatEvent;
use mcp_chat::protocol::EVENT_LOGGER;
use mcp_chat::render;
use rmcp::model::{
    CustomNotification, LoggingLevel, LoggingMessageNotificationParam, ServerNotification,
};
use rmcp::transport::streamable_http_server::session::SessionId;
use rmcp::{Peer, RoleServer};
use tokio_util::sync::CancellationToken;

use crate::Node;
use crate::store::ParticipantKey;

/// How long a notification may wait for its client before it counts as a push timeout (the
/// client is not reading its stream). The pusher goes on waiting for it: see [`send`].
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Events read from the inbox per round.
const PUSH_BATCH: usize = 32;

/// Pushes `who`'s new events to `peer` until `stop` is cancelled or the session is gone.
/// `claimed` is the newest event the client says it has (the `mcp-chat-last-seq` header).
pub async fn run_pusher(
    node: Arc<Node>,
    session: SessionId,
    who: ParticipantKey,
    peer: Peer<RoleServer>,
    claimed: Option<u64>,
    stop: CancellationToken,
) {
    let mut changes = node.store.watch(&who);
    changes.borrow_and_update();
    let rewind = node.sessions.rewind(&session);
    // Resume after what the client has, or else after the last event pushed to any session of
    // this participant: a client that comes back with a new session (on this node or another)
    // gets what happened while it was away.
    let mut pushed = match node.store.resume_point(&who, claimed).await {
        Ok(seq) => seq,
        Err(error) => {
            tracing::warn!(%error, "pusher could not read the inbox");
            return;
        }
    };
    let mut closed = false;
    loop {
        loop {
            let events = match node.store.events_after(&who, pushed, PUSH_BATCH).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(%error, "pusher could not read the inbox");
                    break;
                }
            };
            if events.is_empty() {
                break;
            }
            for event in events {
                if stop.is_cancelled() {
                    return;
                }
                if let Some(claim) = rewind.take() {
                    // The client re-attached its stream: push again from what it has.
                    pushed = pushed.min(claim);
                    break;
                }
                let log = node.sessions.mirrors_events(&session);
                if !push_event(&node, &peer, &event, log, &stop).await {
                    return;
                }
                pushed = event.seq;
            }
            // Once per batch: a pusher that dies mid-batch only makes the next one push a few
            // events again, which clients recognise by seq.
            let _ = node.store.mark_pushed(&who, pushed).await;
        }
        if closed {
            // The participant ended. With a shared store that can happen while its session
            // here lives on (another node reaped it after a long Redis outage): its next call
            // starts it afresh, so keep following it, from its new first event.
            if !(node.store.is_shared() && node.sessions.is_current(&session, &who)) {
                return;
            }
            changes = node.store.watch(&who);
            changes.borrow_and_update();
            pushed = 0;
            closed = false;
            continue;
        }
        closed = tokio::select! {
            _ = stop.cancelled() => return,
            changed = changes.changed() => changed.is_err(),
            claim = rewind.next() => {
                // The client re-attached its stream and says what it has: what rmcp's replay
                // cache no longer holds is pushed again (the client drops repeats by seq).
                pushed = pushed.min(claim);
                false
            }
        };
    }
}

/// Sends one event; false when the session is gone or the pusher is stopped.
async fn push_event(
    node: &Node,
    peer: &Peer<RoleServer>,
    event: &ChatEvent,
    log: bool,
    stop: &CancellationToken,
) -> bool {
    let Ok(params) = serde_json::to_value(event) else {
        return true;
    };
    let custom = ServerNotification::CustomNotification(CustomNotification::new(
        event.method(),
        Some(params.clone()),
    ));
    if !send(node, stop, peer.send_notification(custom)).await {
        return false;
    }
    if log {
        let data = serde_json::json!({ "text": render::event_line(event), "event": params });
        let logging = LoggingMessageNotificationParam::new(LoggingLevel::Info, data)
            .with_logger(EVENT_LOGGER);
        if !send(node, stop, peer.notify_logging_message(logging)).await {
            return false;
        }
    }
    true
}

/// Sends one notification and waits until rmcp has taken it; false when the session is gone
/// or the pusher is stopped.
///
/// A client that does not read its stream is waited for, however long, one notification at a
/// time. Giving up and pushing the next event instead (as this once did after
/// [`PUSH_TIMEOUT`]) does not take the first one back: it stays queued inside rmcp, and every
/// further try queues another, up to about a hundred notifications per session (its sink, its
/// stream channel, its replay cache) — megabytes per slow reader with long messages — while
/// the skipped events were never pushed at all. Waiting keeps one notification in flight, the
/// pushes complete and in order once the client reads again, and meanwhile the events wait
/// in the inbox (bounded; `wait_for_message` reads them). A stream the client gave up on is
/// closed when it opens a new one (`sessions`), which ends the wait.
async fn send(
    node: &Node,
    stop: &CancellationToken,
    sending: impl Future<Output = Result<(), rmcp::service::ServiceError>>,
) -> bool {
    let mut sending = std::pin::pin!(sending);
    let sent = match tokio::time::timeout(PUSH_TIMEOUT, &mut sending).await {
        Ok(sent) => sent,
        Err(_) => {
            node.metrics.push_timeouts.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                sent = &mut sending => sent,
                () = stop.cancelled() => return false,
            }
        }
    };
    if sent.is_err() {
        return false;
    }
    node.metrics
        .notifications_sent
        .fetch_add(1, Ordering::Relaxed);
    true
}
