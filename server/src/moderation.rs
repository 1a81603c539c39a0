//! Moderation: reports, bans, the automatic cooldown and the operator's word list.
//!
//! The state (reports with their evidence, bans, who reported whom) lives in the store, so that
//! every node of a shared store sees the same; this module holds what the handler and the admin
//! API share around it: the settings, the records as the store keeps them, pseudonymous ids,
//! the word list and the words a suspended participant reads.
//!
//! Participant keys never leave the relay. Operators see [`pseudonym`]s: a short hash of the key,
//! stable for as long as the participant keeps its identity, and useless to impersonate anyone.

use std::time::Duration;

use mcp_chat::tools::ReportReason;
use mcp_chat::{ErrorCode, ToolError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::ParticipantKey;

/// Default [`ModerationPolicy::report_retention`]: 30 days.
pub const DEFAULT_REPORT_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Default [`ModerationPolicy::cooldown_reports`].
pub const DEFAULT_COOLDOWN_REPORTS: u32 = 3;
/// Default [`ModerationPolicy::cooldown_window`]: one hour.
pub const DEFAULT_COOLDOWN_WINDOW: Duration = Duration::from_secs(60 * 60);
/// Default [`ModerationPolicy::cooldown_period`]: one day.
pub const DEFAULT_COOLDOWN_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);
/// Most reports one `GET /admin/reports` lists (the newest).
pub const MAX_LISTED_REPORTS: usize = 500;

/// The rules the store applies to reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModerationPolicy {
    /// How long a report (and its evidence) is kept before it is deleted.
    pub report_retention: Duration,
    /// Distinct reporters within [`cooldown_window`](Self::cooldown_window) that hold a
    /// participant out of random matching (0: never).
    pub cooldown_reports: u32,
    /// The window in which reports count towards a cooldown.
    pub cooldown_window: Duration,
    /// How long a cooldown lasts.
    pub cooldown_period: Duration,
}

impl Default for ModerationPolicy {
    fn default() -> Self {
        Self {
            report_retention: DEFAULT_REPORT_RETENTION,
            cooldown_reports: DEFAULT_COOLDOWN_REPORTS,
            cooldown_window: DEFAULT_COOLDOWN_WINDOW,
            cooldown_period: DEFAULT_COOLDOWN_PERIOD,
        }
    }
}

/// The pseudonymous id operators see for a participant: `u-` and 16 hex digits of a hash of its
/// key. The same participant always gets the same id; nothing leads back to its token.
pub fn pseudonym(key: &ParticipantKey) -> String {
    let digest = Sha256::digest(format!("mcp-chat-moderation\n{}", key.as_str()).as_bytes());
    let mut id = String::with_capacity(18);
    id.push_str("u-");
    for byte in &digest[..8] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// A fresh report id (`r-` and 16 hex digits).
pub fn new_report_id() -> String {
    format!("r-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// A fresh ban id (`b-` and 16 hex digits).
pub fn new_ban_id() -> String {
    format!("b-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// What a participant asks the store to record with `report`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiling {
    /// The new report's id.
    pub id: String,
    /// Why.
    pub reason: ReportReason,
    /// The reporter's words, already cleaned.
    pub note: Option<String>,
    /// In a room with several others: the display name of the member reported.
    pub member: Option<String>,
}

/// One message kept as evidence, in the shape of the Redis transcript entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceEntry {
    /// Its message_seq in the room.
    #[serde(rename = "s")]
    pub seq: u64,
    /// When it was sent (ms since the epoch).
    #[serde(rename = "t")]
    pub timestamp_ms: u64,
    /// The sender's key, or empty when the store no longer knows who sent it.
    #[serde(rename = "f")]
    pub from: String,
    /// The sender's display name in that room.
    #[serde(rename = "n")]
    pub from_name: String,
    /// The text.
    #[serde(rename = "x")]
    pub text: String,
}

/// A report as the store keeps it: with participant keys, which never leave the relay (see
/// [`ReportView`] for what operators see).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReport {
    /// Its id.
    pub id: String,
    /// When it was filed (ms since the epoch).
    pub created_ms: u64,
    /// The reason, as on the wire (`spam`, ...).
    pub reason: String,
    /// The reporter's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The room it happened in.
    pub room_id: String,
    /// Who reported.
    pub reporter: String,
    /// Who was reported.
    pub reported: String,
    /// The reported participant's display name in that room, when known.
    #[serde(default)]
    pub reported_name: String,
    /// The reported participant's client address (IPv4, or IPv6 /64) when known, for an
    /// address ban.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_address: Option<String>,
    /// The room's last messages, oldest first.
    #[serde(default)]
    pub evidence: Vec<EvidenceEntry>,
}

/// A ban as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBan {
    /// Its id.
    pub id: String,
    /// The banned participant's pseudonym.
    pub participant: String,
    /// The banned client address, if the ban covers one (never shown to operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// When it was made (ms since the epoch).
    pub created_ms: u64,
    /// When it ends (ms since the epoch); `None` for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// The report it was made from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// What the store is asked to ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRequest {
    /// The new ban's id.
    pub id: String,
    /// The participant's pseudonym.
    pub participant: String,
    /// The participant's key when known (from a report); otherwise the store looks the
    /// pseudonym up among the participants it knows.
    pub key: Option<ParticipantKey>,
    /// The participant's address when known (from a report).
    pub address: Option<String>,
    /// Ban the address too.
    pub ban_address: bool,
    /// How long; `None` for good.
    pub duration: Option<Duration>,
    /// The report the ban comes from.
    pub report: Option<String>,
}

/// Why the store made no ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanRefusal {
    /// An address ban was asked for, and the participant's address is not known.
    NoAddress,
}

/// What the relay lets a participant do right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Everything.
    #[default]
    Open,
    /// Nothing: suspended until then (ms since the epoch), or for good.
    Banned {
        /// The end of the ban.
        until_ms: Option<u64>,
    },
    /// No random matching until then (ms since the epoch).
    MatchingPaused {
        /// The end of the cooldown.
        until_ms: u64,
    },
}

/// Moderation numbers for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModerationCounts {
    /// Reports kept.
    pub reports: u64,
    /// Bans in force.
    pub bans: u64,
    /// Participants held out of matching, with when that ends (ms since the epoch).
    pub cooldowns: Vec<(ParticipantKey, u64)>,
}

/// The evidence of a report as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceView {
    /// Its message_seq in the room.
    pub message_seq: u64,
    /// When it was sent (ms since the epoch).
    pub timestamp_ms: u64,
    /// The sender's pseudonym, when known.
    pub from: Option<String>,
    /// `reporter`, `reported`, `other` or `unknown`.
    pub side: &'static str,
    /// The sender's display name.
    pub from_name: String,
    /// The text.
    pub text: String,
}

/// A report as operators see it: pseudonyms instead of keys, no address.
#[derive(Debug, Clone, Serialize)]
pub struct ReportView {
    /// Its id.
    pub id: String,
    /// When it was filed (ms since the epoch).
    pub created_ms: u64,
    /// The same, readable (UTC).
    pub created: String,
    /// The reason.
    pub reason: String,
    /// The reporter's note.
    pub note: Option<String>,
    /// The room.
    pub room_id: String,
    /// The reporter's pseudonym.
    pub reporter: String,
    /// The reported participant's pseudonym.
    pub reported: String,
    /// The reported participant's display name there.
    pub reported_name: String,
    /// Whether an address ban is possible from this report.
    pub address_known: bool,
    /// Messages kept.
    pub evidence_count: usize,
    /// The messages (only in `GET /admin/reports/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Vec<EvidenceView>>,
}

impl ReportView {
    /// The operator's view of `report`, with its evidence or without.
    pub fn of(report: &StoredReport, with_evidence: bool) -> Self {
        let reporter = ParticipantKey::from_stored(report.reporter.clone());
        let reported = ParticipantKey::from_stored(report.reported.clone());
        let evidence = with_evidence.then(|| {
            report
                .evidence
                .iter()
                .map(|entry| {
                    let (from, side) = if entry.from.is_empty() {
                        (None, "unknown")
                    } else {
                        let side = if entry.from == report.reporter {
                            "reporter"
                        } else if entry.from == report.reported {
                            "reported"
                        } else {
                            "other"
                        };
                        let key = ParticipantKey::from_stored(entry.from.clone());
                        (Some(pseudonym(&key)), side)
                    };
                    EvidenceView {
                        message_seq: entry.seq,
                        timestamp_ms: entry.timestamp_ms,
                        from,
                        side,
                        from_name: entry.from_name.clone(),
                        text: entry.text.clone(),
                    }
                })
                .collect()
        });
        Self {
            id: report.id.clone(),
            created_ms: report.created_ms,
            created: utc(report.created_ms),
            reason: report.reason.clone(),
            note: report.note.clone(),
            room_id: report.room_id.clone(),
            reporter: pseudonym(&reporter),
            reported: pseudonym(&reported),
            reported_name: report.reported_name.clone(),
            address_known: report.reported_address.is_some(),
            evidence_count: report.evidence.len(),
            evidence,
        }
    }
}

/// A ban as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct BanView {
    /// Its id (for `DELETE /admin/bans/{id}`).
    pub id: String,
    /// The banned participant's pseudonym.
    pub participant: String,
    /// Whether the ban covers the participant's address.
    pub address: bool,
    /// When it was made (ms since the epoch).
    pub created_ms: u64,
    /// When it ends (ms since the epoch); null for good.
    pub until_ms: Option<u64>,
    /// The same, readable (UTC), or "permanent".
    pub until: String,
    /// The report it came from.
    pub report: Option<String>,
}

impl From<&StoredBan> for BanView {
    fn from(ban: &StoredBan) -> Self {
        Self {
            id: ban.id.clone(),
            participant: ban.participant.clone(),
            address: ban.address.is_some(),
            created_ms: ban.created_ms,
            until_ms: ban.until_ms,
            until: ban.until_ms.map_or_else(|| "permanent".to_owned(), utc),
            report: ban.report.clone(),
        }
    }
}

/// The error every tool call of a banned participant gets.
pub fn suspended(until_ms: Option<u64>) -> ToolError {
    let message = match until_ms {
        Some(ms) => format!(
            "This relay has suspended you until {}. Until then you cannot chat here. If you \
             think this is a mistake, contact the relay's operator.",
            utc(ms)
        ),
        None => "This relay has suspended you. You cannot chat here any more. If you think \
                 this is a mistake, contact the relay's operator."
            .to_owned(),
    };
    ToolError::new(ErrorCode::Suspended, message)
}

/// The error of `enter_queue`/`next_chat` during a cooldown. It does not say why: a reported
/// participant must not learn that it was.
pub fn matching_paused(until_ms: u64) -> ToolError {
    ToolError::new(
        ErrorCode::MatchingPaused,
        format!(
            "This relay has paused random matching for you until {}. You can still join a \
             private room with a code someone shares with you (join_room).",
            utc(until_ms)
        ),
    )
}

/// `ms` since the epoch as `YYYY-MM-DD HH:MM UTC`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = mcp_chat::render::civil_date(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

/// The operator's list of words and phrases that messages may not contain.
///
/// One entry per line, matched case-insensitively as whole words (so `ass` does not refuse
/// "class"); blank lines and lines starting with `#` are skipped. Plain substring search, no
/// regular expressions: operators maintain these lists by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WordList {
    entries: Vec<String>,
}

impl WordList {
    /// Reads a list from the text of its file.
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .map(|line| line.trim().to_lowercase())
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        Self { entries }
    }

    /// Entries in the list.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the list refuses nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `text` contains an entry as a whole word or phrase.
    pub fn matches(&self, text: &str) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        // Whitespace folded, so that "bad   phrase" and a line break inside it still match.
        let text = text
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
        self.entries.iter().any(|entry| {
            text.match_indices(entry.as_str()).any(|(at, found)| {
                !is_word(text[..at].chars().next_back())
                    && !is_word(text[at + found.len()..].chars().next())
            })
        })
    }
}

/// The error of a message the word list refuses.
pub fn message_refused() -> ToolError {
    ToolError::new(
        ErrorCode::MessageRefused,
        "This relay does not allow that message: it contains a word or phrase its operator \
         blocked. Nothing was sent; rephrase it and send again.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_match_whole_and_case_insensitively() {
        let list = WordList::parse("# comment\n\nBadWord\nbuy  now\n");
        assert_eq!(list.len(), 2);
        assert!(list.matches("this is a BADWORD!"));
        assert!(list.matches("please Buy\nnow"));
        assert!(!list.matches("badwords are fine as part of a word"));
        assert!(!list.matches("a notbadword either"));
        assert!(!list.matches("buy it now"));
        assert!(!WordList::default().matches("anything"));
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400_000 + 3_660_000), "2000-02-29 01:01 UTC");
        assert_eq!(utc(1_767_225_600_000), "2026-01-01 00:00 UTC");
    }

    #[test]
    fn pseudonyms_are_stable_and_reveal_nothing() {
        let key = ParticipantKey::for_identity_token("a-long-enough-identity-token-0123456789");
        let id = pseudonym(&key);
        assert_eq!(id, pseudonym(&key));
        assert_eq!(id.len(), 18);
        assert!(!id.contains(&key.as_str()[2..12]));
        assert_ne!(id, pseudonym(&ParticipantKey::for_session("x")));
    }
}
