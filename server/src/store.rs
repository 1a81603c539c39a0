//! The chat state behind one small interface.
//!
//! Tool code talks only to [`ChatStore`]: participants, the random queues, rooms and inboxes live
//! behind it. [`MemoryStore`] is the single-node implementation; [`RedisStore`] lets several
//! relay nodes act as one. Both give the same answers to the same calls; only a shared store has
//! presence (heartbeats, reaping the participants of a node that died).
//!
//! The store never talks to the network. When an event lands in a participant's inbox it bumps
//! that participant's [`watch`](tokio::sync::watch) channel; whoever serves the participant's MCP
//! session (the pusher, a blocked `wait_for_message`) wakes up and reads the inbox. So a send to B
//! never waits on B's connection.

mod memory;
mod redis;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use mcp_chat::ToolError;
use mcp_chat::events::{ChatEvent, DisconnectReason};
use mcp_chat::tools::{ChatStatus, GetMessagesOutput, LeaveChatOutput, SendMessageOutput};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::moderation::{
    Access, BanRefusal, BanRequest, ModerationCounts, ReportFiling, StoredBan, StoredReport,
};

pub use memory::MemoryStore;
pub use redis::{RedisStore, RedisStoreError};

/// Who a participant is, as the store knows it: opaque, never shown to anyone.
///
/// Either derived from an MCP session id (the participant lives as long as that session) or from
/// the SHA-256 of an identity token (the participant survives reconnects with new sessions).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantKey(String);

impl ParticipantKey {
    /// The key of a participant tied to one MCP session.
    pub fn for_session(session_id: &str) -> Self {
        Self(format!("s:{session_id}"))
    }

    /// The key of a participant identified by an identity token. Only the hash is kept.
    pub fn for_identity_token(token: &str) -> Self {
        let digest = Sha256::digest(token.as_bytes());
        let mut hex = String::with_capacity(2 + digest.len() * 2);
        hex.push_str("i:");
        for byte in digest {
            hex.push_str(&format!("{byte:02x}"));
        }
        Self(hex)
    }

    /// A key read back from a store that was given [`as_str`](Self::as_str).
    pub(crate) fn from_stored(key: String) -> Self {
        Self(key)
    }

    /// True when the participant outlives its MCP session (identity token).
    pub fn is_identity(&self) -> bool {
        self.0.starts_with("i:")
    }

    /// The key as a string, for a store that needs one (e.g. a Redis key). Never show it to users.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ParticipantKey {
    /// Shows only a short prefix: enough to follow one participant in logs, useless to anyone
    /// trying to impersonate it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short: String = self.0.chars().take(10).collect();
        write!(f, "ParticipantKey({short}…)")
    }
}

/// Unread events taken from an inbox by [`ChatStore::read_unread`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReadBatch {
    /// Events, oldest first.
    pub events: Vec<ChatEvent>,
    /// Unread events dropped because the inbox was full since the last read.
    pub missed: u64,
    /// True when unread events remain after this batch.
    pub more: bool,
}

/// Numbers for `/healthz` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreCounts {
    /// Participants the store knows.
    pub participants: u64,
    /// Participants waiting in a random queue.
    pub waiting: u64,
    /// Open rooms (random and private).
    pub rooms: u64,
    /// Messages accepted by `send_message` since start.
    pub messages_relayed: u64,
    /// Events dropped from full inboxes since start.
    pub events_dropped: u64,
}

/// The chat state: matching, rooms, inboxes.
///
/// Methods return [`ToolError`] for anything a participant should read (already waiting, room
/// full, ...) and for an unreachable backend (`unavailable`). Inputs are already validated and
/// sanitised by the caller (display names, topics, room ids, message size).
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    /// Enters the random queue for `topic`, or pairs at once with the longest-waiting compatible
    /// participant of that queue. Both sides of a match get `chatroom.found`.
    async fn enter_queue(
        &self,
        who: &ParticipantKey,
        display_name: String,
        topic: Option<String>,
    ) -> Result<ChatStatus, ToolError>;

    /// Joins the private room `room_id`, creating it when empty. Everyone in the room gets
    /// `chatroom.found` once it holds two or more.
    async fn join_room(
        &self,
        who: &ParticipantKey,
        display_name: String,
        room_id: String,
    ) -> Result<ChatStatus, ToolError>;

    /// Leaves the current room (the others are told: `left`) and enters the random queue again
    /// with the last display name and topic.
    async fn next_chat(&self, who: &ParticipantKey) -> Result<ChatStatus, ToolError>;

    /// Delivers `text` to every other member of the participant's room.
    async fn send_message(
        &self,
        who: &ParticipantKey,
        text: String,
    ) -> Result<SendMessageOutput, ToolError>;

    /// Leaves the room or the queue. With `block`, the queue never pairs the participant with
    /// the room's other members again.
    async fn leave(&self, who: &ParticipantKey, block: bool) -> Result<LeaveChatOutput, ToolError>;

    /// Where the participant stands.
    async fn status(&self, who: &ParticipantKey) -> Result<ChatStatus, ToolError>;

    /// Takes up to `max` unread events and marks them read.
    async fn read_unread(&self, who: &ParticipantKey, max: usize) -> Result<ReadBatch, ToolError>;

    /// Moves the read cursor: events after `seq` count as unread, events up to it as read.
    /// (A client whose earlier answer was lost says what it last saw; a cancelled wait gives its
    /// events back.) The cursor never moves past the newest event.
    async fn set_read_cursor(&self, who: &ParticipantKey, seq: u64) -> Result<(), ToolError>;

    /// Marks events up to `seq` read, never moving the read cursor back (the chat pane showed
    /// them to the person, so `wait_for_message` does not hand them to the model later).
    async fn mark_read_through(&self, who: &ParticipantKey, seq: u64) -> Result<(), ToolError>;

    /// Events with a sequence number above `seq`, without marking anything read (for pushing).
    async fn events_after(
        &self,
        who: &ParticipantKey,
        seq: u64,
        max: usize,
    ) -> Result<Vec<ChatEvent>, ToolError>;

    /// Where a session that takes the participant over starts pushing: after `claimed` (the
    /// newest event its client says it received) when that is an event of this participant,
    /// else after the newest event already pushed to one of its sessions (0 for none). So events
    /// that arrived while the participant had no session are pushed on its return.
    async fn resume_point(
        &self,
        who: &ParticipantKey,
        claimed: Option<u64>,
    ) -> Result<u64, ToolError>;

    /// Records that events up to `seq` were pushed.
    async fn mark_pushed(&self, who: &ParticipantKey, seq: u64) -> Result<(), ToolError>;

    /// The room transcript: messages after `since` (or the newest ones), at most `limit`.
    async fn transcript(
        &self,
        who: &ParticipantKey,
        since: Option<u64>,
        limit: usize,
    ) -> Result<GetMessagesOutput, ToolError>;

    /// A channel holding the sequence number of the participant's newest event; it changes
    /// whenever an event arrives, and closes when the participant ends.
    fn watch(&self, who: &ParticipantKey) -> watch::Receiver<u64>;

    /// Ends the participant: leaves its room or queue (the others are told `reason`) and forgets
    /// its inbox. Blocks made by an identity-keyed participant outlive it.
    async fn end(&self, who: &ParticipantKey, reason: DisconnectReason) -> Result<(), ToolError>;

    /// Closes every room and empties the queues (relay shutdown): every member of a room is
    /// told `reason` about each other member. Inboxes are kept so the final events can still be
    /// read and pushed.
    async fn close_all_rooms(&self, reason: DisconnectReason) -> Result<(), ToolError>;

    /// Current numbers.
    async fn counts(&self) -> Result<StoreCounts, ToolError>;

    /// Files a report by `who` against its partner (or the `member` named) in its room, or
    /// against its only partner of the room it just left. Keeps the room's last messages as
    /// evidence (those `who` could read), the reported participant's address when known, and
    /// counts the report towards the reported participant's cooldown. Changes nothing anyone
    /// else can see: leaving and blocking is the caller's next step.
    async fn report(
        &self,
        who: &ParticipantKey,
        filing: ReportFiling,
    ) -> Result<StoredReport, ToolError>;

    /// What `who` (whose pseudonym is `pseudonym`, calling from `address`) may do: banned (by
    /// pseudonym or address), held out of matching, or everything. Also remembers the address
    /// and pseudonym of a known participant, for address bans and kicks.
    async fn access(
        &self,
        who: &ParticipantKey,
        pseudonym: &str,
        address: Option<&str>,
    ) -> Result<Access, ToolError>;

    /// The reports kept, newest first, at most `limit`.
    async fn reports(&self, limit: usize) -> Result<Vec<StoredReport>, ToolError>;

    /// One report, if it is still kept.
    async fn report_by_id(&self, id: &str) -> Result<Option<StoredReport>, ToolError>;

    /// Bans a participant (and its address, if asked and known), replacing an earlier ban of
    /// that participant, and takes it out of its room or queue (the others see an ordinary
    /// `left`).
    async fn ban(&self, request: BanRequest) -> Result<Result<StoredBan, BanRefusal>, ToolError>;

    /// The bans in force.
    async fn bans(&self) -> Result<Vec<StoredBan>, ToolError>;

    /// Lifts a ban; false when there is none with that id.
    async fn unban(&self, id: &str) -> Result<bool, ToolError>;

    /// Takes the participant with this pseudonym out of its room or queue (the others see an
    /// ordinary `left`); false when no known participant has it, or it was in neither.
    async fn kick(&self, pseudonym: &str) -> Result<bool, ToolError>;

    /// Reports kept, bans in force, cooldowns running.
    async fn moderation_counts(&self) -> Result<ModerationCounts, ToolError>;

    /// True when other relay nodes share this state. Then a node that stops closes no room,
    /// and presence ([`heartbeat`](Self::heartbeat), [`reap_absent`](Self::reap_absent)) decides
    /// when a participant is gone.
    fn is_shared(&self) -> bool {
        false
    }

    /// Records that this node serves `live` right now.
    async fn heartbeat(&self, _live: &[ParticipantKey]) -> Result<(), ToolError> {
        Ok(())
    }

    /// Ends, with `timeout`, every participant that no node has served within `grace`, and
    /// returns them. (A store that is not shared has no presence: the node's own liveness
    /// sweep ends its participants.)
    async fn reap_absent(&self, _grace: Duration) -> Result<Vec<ParticipantKey>, ToolError> {
        Ok(Vec::new())
    }
}

/// A fresh id for a random match.
fn new_random_room_id() -> String {
    format!("chat-{}", uuid::Uuid::new_v4().simple())
}

/// One page of a room transcript.
struct TranscriptPage<T> {
    items: Vec<T>,
    truncated: bool,
}

/// Pages a transcript (oldest first, as `(message_seq, item)`) for a member who joined after
/// message `joined_after`: messages after `since` oldest first, or the newest ones without a
/// cursor; `truncated` when the page leaves out messages the member may read.
fn transcript_page<T>(
    transcript: impl Iterator<Item = (u64, T)>,
    since: Option<u64>,
    limit: usize,
    joined_after: u64,
) -> TranscriptPage<T> {
    let limit = limit.max(1);
    // A member reads only what was said since it joined: a private room's earlier
    // conversation is not for whoever joins later.
    let floor = since.unwrap_or(0).max(joined_after);
    let mut first_kept = None;
    let mut matching = Vec::new();
    for (seq, item) in transcript {
        first_kept.get_or_insert(seq);
        if seq > floor {
            matching.push(item);
        }
    }
    let forgotten = first_kept.is_some_and(|first| first > floor + 1);
    match since {
        // Paging forward from a cursor: the oldest matching messages first.
        Some(_) => {
            let truncated = forgotten || matching.len() > limit;
            matching.truncate(limit);
            TranscriptPage {
                items: matching,
                truncated,
            }
        }
        // No cursor: the newest messages.
        None => {
            let skip = matching.len().saturating_sub(limit);
            TranscriptPage {
                items: matching.split_off(skip),
                truncated: skip > 0 || forgotten,
            }
        }
    }
}

/// What a participant reads when the store refuses a call: the same words from every store.
mod refusal {
    use mcp_chat::{ErrorCode, ToolError};

    pub fn already_waiting() -> ToolError {
        ToolError::new(
            ErrorCode::AlreadyWaiting,
            "You are already waiting in the queue. Call wait_for_message to wait for a partner, \
             or leave_chat to stop waiting.",
        )
    }

    pub fn already_in_room(room_id: &str) -> ToolError {
        ToolError::new(
            ErrorCode::AlreadyInRoom,
            format!(
                "You are already in room {room_id}. Call next_chat to meet someone new, or \
                 leave_chat first."
            ),
        )
    }

    pub fn room_full(room_id: &str, capacity: usize) -> ToolError {
        ToolError::new(
            ErrorCode::RoomFull,
            format!(
                "Room {room_id} is full ({capacity} members). Try another room code, or \
                 enter_queue for a random partner."
            ),
        )
    }

    pub fn not_in_room_to_send() -> ToolError {
        ToolError::new(
            ErrorCode::NotInRoom,
            "You are not in a room. Call enter_queue or join_room first (if you are waiting, \
             call wait_for_message until a partner is found).",
        )
    }

    pub fn room_closed() -> ToolError {
        ToolError::new(ErrorCode::NotInRoom, "Your room is closed.")
    }

    pub fn no_partner() -> ToolError {
        ToolError::new(
            ErrorCode::NoPartner,
            "Nobody else is in this room yet. Call wait_for_message until someone joins.",
        )
    }

    pub fn nothing_to_report() -> ToolError {
        ToolError::new(
            ErrorCode::NothingToReport,
            "There is nobody to report: you are not in a chat with anyone, and the last \
             stranger you talked to is no longer known. Report during the chat or right after \
             the stranger leaves.",
        )
    }

    pub fn which_member() -> ToolError {
        ToolError::new(
            ErrorCode::InvalidArgument,
            "This room has several other members: say which one with member, the display name \
             exactly as chat_status shows it.",
        )
    }

    pub fn no_such_member() -> ToolError {
        ToolError::new(
            ErrorCode::NothingToReport,
            "No member of this room has that display name. Call chat_status for the names, \
             and pass one exactly as shown.",
        )
    }

    pub fn no_transcript() -> ToolError {
        ToolError::new(
            ErrorCode::NotInRoom,
            "You are not in a room, so there is no transcript. Call enter_queue or join_room \
             first.",
        )
    }
}
