//! Counters for `/metrics` (Prometheus text format) and `/healthz` (JSON).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::StoreCounts;

/// Why a request or tool call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Missing or wrong access token (401).
    Unauthorized,
    /// Host or Origin not allowed (403).
    Forbidden,
    /// Unknown or expired session (404).
    UnknownSession,
    /// Request body over the limit (413).
    BodyTooLarge,
    /// Body that is not JSON, bad identity header, or another malformed request (400, 406, 415).
    Malformed,
    /// Session cap reached (503).
    TooManySessions,
    /// Chat tool call over the participant's rate limit.
    RateLimited,
    /// Message text over the limit.
    MessageTooLong,
    /// Connection closed at once: the relay holds as many connections as it may.
    TooManyConnections,
    /// POST over its session's budget (429), refused before its body was read.
    TooManyRequests,
    /// Connection closed at once: its client address holds as many connections as it may.
    AddressConnections,
    /// New session over its client address's budget (429).
    AddressSessions,
    /// Request without a live session from an address refused too often lately (429).
    AddressRefusals,
}

const REJECTIONS: [(Rejection, &str); 13] = [
    (Rejection::Unauthorized, "unauthorized"),
    (Rejection::Forbidden, "forbidden"),
    (Rejection::UnknownSession, "unknown_session"),
    (Rejection::BodyTooLarge, "body_too_large"),
    (Rejection::Malformed, "malformed"),
    (Rejection::TooManySessions, "too_many_sessions"),
    (Rejection::RateLimited, "rate_limited"),
    (Rejection::MessageTooLong, "message_too_long"),
    (Rejection::TooManyConnections, "too_many_connections"),
    (Rejection::TooManyRequests, "too_many_requests"),
    (
        Rejection::AddressConnections,
        "too_many_connections_per_address",
    ),
    (Rejection::AddressSessions, "too_many_sessions_per_address"),
    (Rejection::AddressRefusals, "too_many_refusals_per_address"),
];

/// Counters kept by one relay node.
#[derive(Debug, Default)]
pub struct Metrics {
    rejections: [AtomicU64; REJECTIONS.len()],
    /// Notifications pushed to sessions (custom and logging).
    pub notifications_sent: AtomicU64,
    /// Pushes that waited more than 5 s for a client not reading its stream.
    pub push_timeouts: AtomicU64,
    /// Participants ended because their grace period ran out.
    pub participants_timed_out: AtomicU64,
}

impl Metrics {
    /// Counts one rejection.
    pub fn reject(&self, why: Rejection) {
        if let Some(i) = REJECTIONS.iter().position(|(r, _)| *r == why) {
            self.rejections[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Rejections so far, by reason label.
    pub fn rejections(&self) -> Vec<(&'static str, u64)> {
        REJECTIONS
            .iter()
            .zip(&self.rejections)
            .map(|((_, label), n)| (*label, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// The Prometheus exposition of these counters plus the store's and session numbers.
    pub fn render(&self, sessions: usize, counts: &StoreCounts) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        gauge(
            "mcp_chat_sessions",
            "Open MCP sessions on this node.",
            "gauge",
            sessions as u64,
        );
        gauge(
            "mcp_chat_participants",
            "Participants known to the store.",
            "gauge",
            counts.participants,
        );
        gauge(
            "mcp_chat_waiting",
            "Participants waiting in a random queue.",
            "gauge",
            counts.waiting,
        );
        gauge("mcp_chat_rooms", "Open rooms.", "gauge", counts.rooms);
        gauge(
            "mcp_chat_messages_relayed_total",
            "Messages accepted by send_message.",
            "counter",
            counts.messages_relayed,
        );
        gauge(
            "mcp_chat_events_dropped_total",
            "Unread events dropped from full inboxes.",
            "counter",
            counts.events_dropped,
        );
        gauge(
            "mcp_chat_notifications_sent_total",
            "Notifications pushed to sessions.",
            "counter",
            self.notifications_sent.load(Ordering::Relaxed),
        );
        gauge(
            "mcp_chat_push_timeouts_total",
            "Pushes that waited more than 5 s for a client not reading its stream.",
            "counter",
            self.push_timeouts.load(Ordering::Relaxed),
        );
        gauge(
            "mcp_chat_participants_timed_out_total",
            "Participants ended after their grace period ran out.",
            "counter",
            self.participants_timed_out.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP mcp_chat_rejections_total Requests and tool calls refused, by reason.\n\
             # TYPE mcp_chat_rejections_total counter"
        );
        for (label, n) in self.rejections() {
            let _ = writeln!(out, "mcp_chat_rejections_total{{reason=\"{label}\"}} {n}");
        }
        out
    }
}
