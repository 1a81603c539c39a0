//! Default limits, and the sanitisers that hold user input to the contract's bounds.
//!
//! The relay exposes most of these as flags; the values here are the defaults and the hard bounds
//! every relay enforces.

use std::time::Duration;

/// Display name used when a participant gives none.
pub const DEFAULT_DISPLAY_NAME: &str = "Stranger";
/// Most characters (Unicode scalar values) a display name keeps.
pub const MAX_DISPLAY_NAME_CHARS: usize = 32;
/// Most characters a topic keeps.
pub const MAX_TOPIC_CHARS: usize = 32;
/// Most characters a private room id may have.
pub const MAX_ROOM_ID_CHARS: usize = 64;

/// Default largest message text, in bytes of UTF-8.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4096;

/// `wait_for_message` timeout when the caller gives none.
pub const DEFAULT_WAIT_SECS: u64 = 25;
/// Longest `wait_for_message` timeout. Desktop hosts cancel tool calls after about 60 s, so a
/// wait must return before that.
pub const MAX_WAIT_SECS: u64 = 50;
/// Most events one `wait_for_message` call returns; the rest stay unread for the next call.
pub const MAX_EVENTS_PER_WAIT: usize = 100;

/// `get_messages` page size when the caller gives none.
pub const DEFAULT_TRANSCRIPT_PAGE: u32 = 20;
/// Largest `get_messages` page.
pub const MAX_TRANSCRIPT_PAGE: u32 = 100;
/// Messages a room remembers for `get_messages`; older ones are forgotten.
pub const TRANSCRIPT_CAPACITY: usize = 200;

/// Default number of events an inbox holds before the oldest are dropped.
pub const DEFAULT_INBOX_CAPACITY: usize = 256;

/// Default time a participant whose connection was lost keeps its seat.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(60);
/// Default time without any request after which a session counts as lost.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Default members of a private room.
pub const DEFAULT_ROOM_CAPACITY: usize = 2;
/// Largest private room a relay may allow.
pub const MAX_ROOM_CAPACITY: usize = 64;

/// Default sustained chat tool calls per second and participant (token-bucket refill rate).
pub const DEFAULT_RATE_PER_SEC: f64 = 2.0;
/// Default burst of chat tool calls a participant may make at once (token-bucket size).
pub const DEFAULT_RATE_BURST: u32 = 10;

/// Default largest HTTP request body, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default most concurrent MCP sessions a relay holds.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

/// How long a block made with `leave_chat {block: true}` lasts for an identity-keyed participant.
pub const BLOCK_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Most blocks one participant keeps; the oldest is forgotten first.
pub const MAX_BLOCKS_PER_PARTICIPANT: usize = 256;

/// Longest `note` of a `report`, in characters (longer notes are cut).
pub const MAX_REPORT_NOTE_CHARS: usize = 500;
/// Messages of the room a report keeps as evidence (the newest ones).
pub const REPORT_EVIDENCE_MESSAGES: usize = 20;

/// Cleans a report's note as display names are cleaned (whitespace folded, control characters
/// removed), cut to [`MAX_REPORT_NOTE_CHARS`]. Empty means no note.
pub fn sanitize_note(raw: Option<&str>) -> Option<String> {
    let cleaned = clean(raw.unwrap_or(""), MAX_REPORT_NOTE_CHARS);
    (!cleaned.is_empty()).then_some(cleaned)
}

/// Trims a display name, removes control characters and cuts it to [`MAX_DISPLAY_NAME_CHARS`];
/// an absent or empty name becomes [`DEFAULT_DISPLAY_NAME`].
pub fn sanitize_display_name(raw: Option<&str>) -> String {
    let cleaned = clean(raw.unwrap_or(""), MAX_DISPLAY_NAME_CHARS);
    if cleaned.is_empty() {
        DEFAULT_DISPLAY_NAME.to_owned()
    } else {
        cleaned
    }
}

/// Normalises a topic: trimmed, control characters removed, lower case, at most
/// [`MAX_TOPIC_CHARS`]. Empty means no topic.
pub fn sanitize_topic(raw: Option<&str>) -> Option<String> {
    let cleaned = clean(&raw.unwrap_or("").to_lowercase(), MAX_TOPIC_CHARS);
    (!cleaned.is_empty()).then_some(cleaned)
}

/// Why a room id was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomIdError {
    /// Nothing left after trimming.
    Empty,
    /// Longer than [`MAX_ROOM_ID_CHARS`].
    TooLong,
    /// Contains something other than ASCII letters, digits, `-`, `_` and `.`.
    BadCharacter,
}

impl std::fmt::Display for RoomIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => write!(f, "the room id is empty"),
            Self::TooLong => write!(
                f,
                "the room id is longer than {MAX_ROOM_ID_CHARS} characters"
            ),
            Self::BadCharacter => write!(
                f,
                "the room id may only contain letters, digits, '-', '_' and '.'"
            ),
        }
    }
}

/// Checks a private room id: trimmed, 1 to [`MAX_ROOM_ID_CHARS`] characters of ASCII letters,
/// digits, `-`, `_` and `.` (no look-alike letters from other scripts). Room ids are
/// case-sensitive.
pub fn validate_room_id(raw: &str) -> Result<String, RoomIdError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(RoomIdError::Empty);
    }
    if trimmed.chars().count() > MAX_ROOM_ID_CHARS {
        return Err(RoomIdError::TooLong);
    }
    if !trimmed
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(RoomIdError::BadCharacter);
    }
    Ok(trimmed.to_owned())
}

/// Removes control and formatting characters (including bidirectional overrides, which can make
/// a name render as something else), collapses runs of whitespace, trims, and keeps at most `max`
/// characters.
fn clean(raw: &str, max: usize) -> String {
    let mut out = String::new();
    let mut pending_space = false;
    for c in raw.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if c.is_control() || is_format_char(c) {
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    out.chars()
        .take(max)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Unicode "format" characters that change how surrounding text renders (bidi controls,
/// zero-width joiners and the like).
pub(crate) fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_cleaned_and_bounded() {
        assert_eq!(sanitize_display_name(None), "Stranger");
        assert_eq!(sanitize_display_name(Some("  \t\n ")), "Stranger");
        assert_eq!(
            sanitize_display_name(Some("  Ada \u{0007}Love\u{202E}lace  ")),
            "Ada Lovelace"
        );
        assert_eq!(sanitize_display_name(Some("a\n\nb")), "a b");
        let long = "x".repeat(100);
        assert_eq!(
            sanitize_display_name(Some(&long)).chars().count(),
            MAX_DISPLAY_NAME_CHARS
        );
        let wide = "é".repeat(40);
        assert_eq!(sanitize_display_name(Some(&wide)), "é".repeat(32));
    }

    #[test]
    fn topics_are_normalised() {
        assert_eq!(sanitize_topic(None), None);
        assert_eq!(sanitize_topic(Some("   ")), None);
        assert_eq!(
            sanitize_topic(Some(" Rust  Lang ")),
            Some("rust lang".into())
        );
    }

    #[test]
    fn room_ids_are_checked() {
        assert_eq!(
            validate_room_id(" book-club.42 "),
            Ok("book-club.42".into())
        );
        assert_eq!(validate_room_id(""), Err(RoomIdError::Empty));
        assert_eq!(validate_room_id("a b"), Err(RoomIdError::BadCharacter));
        assert_eq!(
            validate_room_id("b\u{43e}\u{43e}k"),
            Err(RoomIdError::BadCharacter)
        );
        assert_eq!(validate_room_id(&"r".repeat(65)), Err(RoomIdError::TooLong));
    }
}
