//! MCP protocol versions and HTTP header names shared by relay and bridge.

use rmcp::model::ProtocolVersion;

/// The newest MCP revision both programs speak.
///
/// mcp-chat pushes events to one participant at any time (custom notifications and
/// `notifications/message`). That needs the session-based protocol: an `initialize` handshake, an
/// `Mcp-Session-Id` and the standalone GET stream. The 2026-07-28 revision removes sessions and
/// cannot carry these pushes, so it is deliberately not supported.
pub const NEWEST_SUPPORTED_VERSION: ProtocolVersion = ProtocolVersion::V_2025_11_25;

/// Every MCP revision both programs accept, oldest first (2024-11-05 up to
/// [`NEWEST_SUPPORTED_VERSION`]).
pub fn supported_protocol_versions() -> &'static [ProtocolVersion] {
    ProtocolVersion::known_up_to(&NEWEST_SUPPORTED_VERSION)
}

/// Request header carrying a client's anonymous identity token.
///
/// The token is a random secret chosen by the client (the bridge makes a 256-bit one). A relay keys
/// the participant by a hash of it, so a client that reconnects with a new MCP session within the
/// grace period keeps its queue place, room and unread events. The relay stores only the hash and
/// never shows either to anyone. `Authorization` stays free for access control.
pub const IDENTITY_HEADER: &str = "mcp-chat-identity";

/// Fewest characters an identity token must have (shorter ones are rejected with 400: a guessable
/// token would let a stranger take over someone's seat).
pub const MIN_IDENTITY_TOKEN_CHARS: usize = 32;

/// Most characters an identity token may have.
pub const MAX_IDENTITY_TOKEN_CHARS: usize = 256;

/// Request header carrying the `seq` of the newest event a client has already received (decimal).
///
/// Sent with an identity token when a client opens a new session (after a relay restart, or on
/// another relay node): the relay then pushes every event after that `seq`, instead of resuming
/// where it believes its last push went. A pushed event can be lost in flight when a node dies;
/// only the client knows what actually arrived. An older value only causes events the client
/// already has to be pushed again, which it recognises by `seq`.
pub const LAST_SEQ_HEADER: &str = "mcp-chat-last-seq";

/// Experimental client capability (`capabilities.experimental["mcp-chat/events"] = {}` in
/// `initialize`): the client shows chat events from their custom notifications
/// (`message.received`, ...) itself. The relay then sends that session no logging mirror of
/// each event, which halves what every event costs to push. The bridge declares it and writes
/// the mirror for its host itself, so hosts that only show logs still see every event.
pub const EVENTS_CAPABILITY: &str = "mcp-chat/events";

/// Name of the MCP logger used for chat events sent as `notifications/message`.
pub const EVENT_LOGGER: &str = "mcp-chat";
