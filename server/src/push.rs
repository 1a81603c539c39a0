//! A session's standalone GET stream: its participant's inbox, pushed as it fills.
//!
//! The inbox is the event store: the stream reads it from a cursor and writes each new event
//! twice, as a custom notification named after the event (`message.received`, ...) for clients
//! that handle them, and as an MCP logging notification (`notifications/message`, level info)
//! for hosts that only show logs, unless the client said it renders the custom notifications
//! itself (`mcp-chat/events`). The SSE event id of an event's last frame is its inbox `seq`, so a
//! client that reconnects with `Last-Event-ID` gets every event after it exactly once (within
//! the inbox's capacity), and a client that reconnects with `mcp-chat-last-seq` on another node
//! is served the same way.
//!
//! Nothing runs for a session while no stream is open: the stream is a state machine that
//! hyper polls when it can write. A slow reader holds one frame in hyper's buffer and none
//! anywhere else; its events wait in the (bounded) inbox, readable by `wait_for_message`.

#![allow(deprecated)] // MCP logging is deprecated by SEP-2577 but is what Claude Desktop shows.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use futures::Stream;
use mcp_chat::ChatEvent;
use mcp_chat::protocol::EVENT_LOGGER;
use mcp_chat::render;
use rmcp::model::LoggingLevel;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::node::Node;
use crate::sessions::{SessionId, StreamGuard, StreamView};
use crate::sse;
use crate::store::ParticipantKey;

/// How long a frame may wait for its client before it counts as a push timeout (the client is
/// not reading its stream), counted when the wait ends: the client reads again or goes.
/// Nothing is dropped: the stream just waits.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Events read from the inbox per round.
const PUSH_BATCH: usize = 32;
/// An SSE comment this often on every stream: proxies keep a quiet one open, and a client that
/// went away is noticed when the write fails.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The standalone stream of generation `generation` of `session`. `claim` is the newest event
/// its client says it has (`Last-Event-ID`, or `mcp-chat-last-seq`).
pub fn event_stream(
    node: Arc<Node>,
    session: SessionId,
    generation: u64,
    open: StreamGuard,
    claim: Option<u64>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let wake = node
        .sessions
        .wake_signal(&session)
        .unwrap_or_else(|| Arc::new(Notify::new()));
    let pusher = Pusher {
        node,
        session,
        generation,
        wake,
        _open: open,
        claim,
        following: None,
        ready: VecDeque::new(),
        written_at: None,
        keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
    };
    futures::stream::unfold(pusher, |mut pusher| async move {
        let frame = pusher.next_frame().await?;
        Some((Ok(frame), pusher))
    })
}

/// The state of one standalone stream.
struct Pusher {
    node: Arc<Node>,
    session: SessionId,
    generation: u64,
    wake: Arc<Notify>,
    _open: StreamGuard,
    /// What the client said it has, until the stream starts following a participant.
    claim: Option<u64>,
    following: Option<Following>,
    /// Frames read from the inbox, not yet handed to hyper (at most one batch).
    ready: VecDeque<Bytes>,
    /// When the last event frame went to hyper: hyper asks for the next one only once it has
    /// written it (see [`PUSH_TIMEOUT`]).
    written_at: Option<Instant>,
    /// When to write a keep-alive comment next ([`KEEP_ALIVE`] apart, busy or quiet).
    keep_alive: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// The participant a stream pushes, and how far.
struct Following {
    who: ParticipantKey,
    changes: watch::Receiver<u64>,
    pushed: u64,
    /// The participant ended (its watch closed).
    ended: bool,
}

impl Drop for Pusher {
    fn drop(&mut self) {
        if self
            .written_at
            .is_some_and(|at| at.elapsed() >= PUSH_TIMEOUT)
        {
            self.node
                .metrics
                .push_timeouts
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Pusher {
    /// The next frame to write, waiting as long as it takes; `None` ends the stream.
    async fn next_frame(&mut self) -> Option<Bytes> {
        if let Some(at) = self.written_at.take()
            && at.elapsed() >= PUSH_TIMEOUT
        {
            self.node
                .metrics
                .push_timeouts
                .fetch_add(1, Ordering::Relaxed);
        }
        loop {
            if let Some(frame) = self.ready.pop_front() {
                self.written_at = Some(Instant::now());
                return Some(frame);
            }
            let wake = self.wake.clone();
            let notified = wake.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let view = self
                .node
                .sessions
                .stream_view(&self.session, self.generation);
            let mut changes = None;
            match view {
                StreamView::End => return None,
                StreamView::Idle => {}
                StreamView::Push { who, mirror } => {
                    if self.fill(who, mirror).await {
                        continue;
                    }
                    changes = self
                        .following
                        .as_mut()
                        .filter(|f| !f.ended)
                        .map(|f| &mut f.changes);
                }
            }
            let changed = async {
                match changes {
                    Some(changes) => changes.changed().await.is_err(),
                    None => std::future::pending().await,
                }
            };
            let mut ended = false;
            let mut quiet = false;
            tokio::select! {
                () = notified => {}
                closed = changed => ended = closed,
                () = &mut self.keep_alive => quiet = true,
            }
            if quiet {
                // One timer for the stream's life, re-armed when it fires, not on every wait:
                // arming a timer per pushed event costs more than the event's frames.
                self.keep_alive
                    .as_mut()
                    .reset(tokio::time::Instant::now() + KEEP_ALIVE);
                return Some(sse::keep_alive());
            }
            if ended && let Some(following) = self.following.as_mut() {
                following.ended = true;
            }
        }
    }

    /// Reads the next batch of `who`'s events into `ready`; false when there is none.
    async fn fill(&mut self, who: ParticipantKey, mirror: bool) -> bool {
        let store = &self.node.store;
        let restart = match &self.following {
            None => true,
            Some(f) if f.who != who => true,
            // The participant ended. With a shared store that can happen while this session
            // lives on (another node reaped it after a long Redis outage); its next call starts
            // it afresh, so follow it again from its new first event. In memory, a participant
            // only ends with its session, or comes back through a call that wakes this stream.
            Some(f) if f.ended => {
                if !store.is_shared() {
                    self.following = None;
                    return false;
                }
                true
            }
            Some(_) => false,
        };
        if restart {
            let ended_before = self.following.as_ref().is_some_and(|f| f.ended);
            let mut changes = store.watch(&who);
            changes.borrow_and_update();
            // Resume after what the client has, or else after the last event pushed to any
            // session of this participant: a client that comes back with a new session (on this
            // node or another) gets what happened while it was away.
            let pushed = if ended_before {
                0
            } else {
                match store.resume_point(&who, self.claim.take()).await {
                    Ok(seq) => seq,
                    Err(error) => {
                        tracing::warn!(%error, "stream could not read the inbox");
                        0
                    }
                }
            };
            self.following = Some(Following {
                who,
                changes,
                pushed,
                ended: false,
            });
        }
        let Some(following) = self.following.as_mut() else {
            return false;
        };
        let events = match store
            .events_after(&following.who, following.pushed, PUSH_BATCH)
            .await
        {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, "stream could not read the inbox");
                return false;
            }
        };
        let Some(last) = events.last().map(|e| e.seq) else {
            return false;
        };
        for event in &events {
            self.ready.push_back(event_frames(event, mirror));
        }
        following.pushed = last;
        self.node.metrics.notifications_sent.fetch_add(
            events.len() as u64 * if mirror { 2 } else { 1 },
            Ordering::Relaxed,
        );
        // Once per batch: a stream that dies mid-batch only makes the next one push a few
        // events again, which clients recognise by seq.
        let _ = store.mark_pushed(&following.who, last).await;
        true
    }
}

/// One event as SSE: its custom notification, then (with `mirror`) its logging notification.
/// Only the last frame carries the id, so a cut between the two repeats the first on resume
/// rather than losing the second. Serialized straight from the event (no JSON tree in between:
/// this runs once per event and recipient).
fn event_frames(event: &ChatEvent, mirror: bool) -> Bytes {
    let id = event.seq.to_string();
    let custom = Notification {
        jsonrpc: "2.0",
        method: event.method(),
        params: event,
    };
    if !mirror {
        return sse::frame(Some(&id), &custom);
    }
    // The shape of `notifications/message` (rmcp's `LoggingMessageNotificationParam`), with
    // the event borrowed.
    let logging = Notification {
        jsonrpc: "2.0",
        method: "notifications/message",
        params: LoggingParams {
            level: LoggingLevel::Info,
            logger: EVENT_LOGGER,
            data: LogData {
                text: render::event_line(event),
                event,
            },
        },
    };
    let mut both = sse::frame(None, &custom).to_vec();
    both.extend_from_slice(&sse::frame(Some(&id), &logging));
    Bytes::from(both)
}

#[derive(Serialize)]
struct Notification<'a, P: Serialize> {
    jsonrpc: &'static str,
    method: &'a str,
    params: P,
}

#[derive(Serialize)]
struct LoggingParams<'a> {
    level: LoggingLevel,
    logger: &'static str,
    data: LogData<'a>,
}

#[derive(Serialize)]
struct LogData<'a> {
    text: String,
    event: &'a ChatEvent,
}
