//! Machine-readable errors of failed tool calls.
//!
//! A tool that cannot do what was asked returns a result with `isError: true`, a sentence for the
//! model in its text content, and a [`ToolError`] in the result's `_meta` under
//! [`ERROR_META_KEY`] so programs can branch on the [`ErrorCode`]. (Not in `structuredContent`:
//! clients validate that against the tool's output schema, which describes success.)

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Key of the [`ToolError`] in a failed tool result's `_meta`.
pub const ERROR_META_KEY: &str = "mcp-chat/error";

/// Why a tool call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The participant is already waiting in the queue.
    AlreadyWaiting,
    /// The participant is already in a room.
    AlreadyInRoom,
    /// The call needs a room, and the participant is in none.
    NotInRoom,
    /// The participant is alone in its room; there is nobody to send to.
    NoPartner,
    /// The private room already holds as many participants as it may.
    RoomFull,
    /// The message text is longer than the relay accepts.
    MessageTooLong,
    /// The message text is empty.
    EmptyMessage,
    /// Too many calls in a short time; retry after `retry_after_ms`.
    RateLimited,
    /// An argument is malformed (for example a room id with forbidden characters).
    InvalidArgument,
    /// The relay's state could not be reached; retry later.
    Unavailable,
    /// The relay is shutting down.
    ShuttingDown,
    /// The relay's operator suspended this participant (or its network address) for a time
    /// or for good: every chat tool is refused until then.
    Suspended,
    /// Random matching is paused for this participant for a while (`enter_queue` and
    /// `next_chat` are refused; private rooms still work).
    MatchingPaused,
    /// The message contains a word or phrase the relay's operator does not allow.
    MessageRefused,
    /// `report` found nobody to report (not in a room, or no such member).
    NothingToReport,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlreadyWaiting => "already_waiting",
            Self::AlreadyInRoom => "already_in_room",
            Self::NotInRoom => "not_in_room",
            Self::NoPartner => "no_partner",
            Self::RoomFull => "room_full",
            Self::MessageTooLong => "message_too_long",
            Self::EmptyMessage => "empty_message",
            Self::RateLimited => "rate_limited",
            Self::InvalidArgument => "invalid_argument",
            Self::Unavailable => "unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::Suspended => "suspended",
            Self::MatchingPaused => "matching_paused",
            Self::MessageRefused => "message_refused",
            Self::NothingToReport => "nothing_to_report",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The machine-readable part of a failed tool call (in `_meta`, under [`ERROR_META_KEY`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolError {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The body of a [`ToolError`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// One sentence for a model or a person: what happened and what to do instead.
    pub message: String,
    /// For `rate_limited`: milliseconds to wait before the call can succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ToolError {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code,
                message: message.into(),
                retry_after_ms: None,
            },
        }
    }

    /// Adds a retry hint.
    pub fn with_retry_after_ms(mut self, ms: u64) -> Self {
        self.error.retry_after_ms = Some(ms);
        self
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.error.code
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error.code, self.error.message)
    }
}

impl std::error::Error for ToolError {}
