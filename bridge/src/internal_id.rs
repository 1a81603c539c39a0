//! The ids of the requests the bridge makes on its own.
//!
//! The bridge shares one JSON-RPC id space with its host on the relay connection: the host's
//! requests keep their ids (the bridge is transparent), and the bridge's own requests (the
//! handshake, pings, the tool list it learns, the log level it passes on, the status it checks
//! after a reconnect) carry ids no host would choose, with a prefix. Their answers are never
//! forwarded to the host. [`InternalId`] is the one place that writes and reads those ids, so
//! no code recognises them by a substring.

use std::fmt;

use serde_json::Value;

/// Prefix of every internal id.
const PREFIX: &str = "mcp-chat-bridge-";

/// A request of the bridge's own, by purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalId {
    /// The `initialize` of a relay session.
    Init,
    /// A health ping through rmcp's transport (its answer says the link works).
    Ping(u64),
    /// A ping straight over HTTP while the host is not reading (keeps the session alive).
    Keepalive(u64),
    /// `tools/list`: the relay's list, to serve while disconnected.
    Tools(u64),
    /// `logging/setLevel`: the host's level, passed on.
    SetLevel(u64),
    /// `chat_status` after a reconnect: is the chat the host was in still there?
    Status(u64),
}

impl InternalId {
    /// The id as it goes on the wire.
    pub fn to_value(self) -> Value {
        Value::String(self.to_string())
    }

    /// The internal id `id` is, if it is one.
    pub fn parse(id: &Value) -> Option<Self> {
        let rest = id.as_str()?.strip_prefix(PREFIX)?;
        if rest == "init" {
            return Some(Self::Init);
        }
        let (kind, n) = rest.rsplit_once('-')?;
        let n = n.parse().ok()?;
        Some(match kind {
            "ping" => Self::Ping(n),
            "keepalive" => Self::Keepalive(n),
            "tools" => Self::Tools(n),
            "setlevel" => Self::SetLevel(n),
            "status" => Self::Status(n),
            _ => return None,
        })
    }

    /// True for any id with the internal prefix, including kinds this build does not know
    /// (never the host's to see).
    pub fn is_internal(id: &Value) -> bool {
        id.as_str().is_some_and(|s| s.starts_with(PREFIX))
    }
}

impl fmt::Display for InternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Init => write!(f, "{PREFIX}init"),
            Self::Ping(n) => write!(f, "{PREFIX}ping-{n}"),
            Self::Keepalive(n) => write!(f, "{PREFIX}keepalive-{n}"),
            Self::Tools(n) => write!(f, "{PREFIX}tools-{n}"),
            Self::SetLevel(n) => write!(f, "{PREFIX}setlevel-{n}"),
            Self::Status(n) => write!(f, "{PREFIX}status-{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_host_ids_are_not_internal() {
        for id in [
            InternalId::Init,
            InternalId::Ping(3),
            InternalId::Keepalive(4),
            InternalId::Tools(1),
            InternalId::SetLevel(2),
            InternalId::Status(9),
        ] {
            assert_eq!(InternalId::parse(&id.to_value()), Some(id));
            assert!(InternalId::is_internal(&id.to_value()));
        }
        for host in [
            serde_json::json!(7),
            serde_json::json!("ping-1"),
            serde_json::json!("my-ping-2"),
            serde_json::json!("mcp-chat-bridge-ping-x"),
        ] {
            assert_eq!(InternalId::parse(&host), None, "{host}");
        }
    }
}
