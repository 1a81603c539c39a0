//! The contract's (de)serialisation, renderings and sanitisers on arbitrary bytes.
//!
//! - Every wire type (`ChatEvent`, `ToolError`, each tool's params and structured output) that
//!   parses from the input re-serialises, parses back equal, and re-serialises to the same bytes.
//! - Every rendering of what parsed does not panic, quotes each stranger-written string as a JSON
//!   string, and puts the untrusted-content notice before any stranger's message.
//! - The sanitisers hold their documented bounds on the input read as text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_chat::ToolError;
use mcp_chat::events::{ChatEvent, EventBody};
use mcp_chat::limits::{self, MAX_DISPLAY_NAME_CHARS, MAX_ROOM_ID_CHARS, MAX_TOPIC_CHARS};
use mcp_chat::render::{self, UNTRUSTED_NOTICE};
use mcp_chat::tools::{self, ChatState, ChatStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    round_trip::<ToolError>(data);
    round_trip::<tools::EnterQueueParams>(data);
    round_trip::<tools::JoinRoomParams>(data);
    round_trip::<tools::SendMessageParams>(data);
    if let Some(p) = round_trip::<tools::WaitForMessageParams>(data) {
        assert!(tools::wait_duration(p.timeout_secs).as_secs() <= limits::MAX_WAIT_SECS);
    }
    round_trip::<tools::GetMessagesParams>(data);
    round_trip::<tools::LeaveChatParams>(data);
    round_trip::<tools::NoParams>(data);

    if let Some(event) = round_trip::<ChatEvent>(data) {
        check_event_line(&event);
    }
    if let Some(status) = round_trip::<ChatStatus>(data) {
        check_status_text(&status);
    }
    if let Some(out) = round_trip::<tools::SendMessageOutput>(data) {
        render::send_text(&out);
    }
    if let Some(out) = round_trip::<tools::WaitForMessageOutput>(data) {
        check_wait_text(&out);
    }
    if let Some(out) = round_trip::<tools::GetMessagesOutput>(data) {
        check_transcript_text(&out);
    }
    if let Some(out) = round_trip::<tools::LeaveChatOutput>(data) {
        let text = render::leave_text(&out);
        assert!(text.contains(&render::status_text(&out.status)));
    }

    let text = String::from_utf8_lossy(data);
    check_sanitizers(&text);
    // The same text as a JSON string value, so that escapes reach the sanitisers too.
    if let Ok(serde_json::Value::String(s)) = serde_json::from_slice(data) {
        check_sanitizers(&s);
    }
    if data.len() >= 8 {
        let ms = u64::from_le_bytes(data[..8].try_into().unwrap());
        check_time_of_day(ms);
    }
});

/// Parses `T`; when it parses, it must survive serialise → parse unchanged, and serialise to
/// the same bytes again.
fn round_trip<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_slice(data).ok()?;
    let bytes = serde_json::to_vec(&value).expect("a parsed value serialises");
    let again: T = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{} does not parse back: {e}\n{}",
            std::any::type_name::<T>(),
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(
        value,
        again,
        "{} changed in a round trip",
        std::any::type_name::<T>()
    );
    let bytes_again = serde_json::to_vec(&again).unwrap();
    assert_eq!(bytes, bytes_again, "serialisation is not stable");
    Some(value)
}

fn quote(s: &str) -> String {
    render::quote(s)
}

/// An event line quotes every stranger-written string (names, topic, text) as a JSON string,
/// so it cannot break out of its quotes; with a room id the relay could have made (its
/// validated form), the line is one line without control characters.
fn check_event_line(event: &ChatEvent) {
    let line = render::event_line(event);
    let strangers: Vec<&str> = match &event.body {
        EventBody::ChatroomFound {
            members,
            joined,
            topic,
            ..
        } => members
            .iter()
            .map(String::as_str)
            .chain(joined.as_deref())
            .chain(topic.as_deref())
            .collect(),
        EventBody::MessageReceived { from, text, .. } => vec![from, text],
        EventBody::PartnerDisconnected { partner_name, .. } => vec![partner_name],
        _ => Vec::new(),
    };
    for s in strangers {
        assert!(line.contains(&quote(s)), "{s:?} is not quoted in {line:?}");
    }
    assert!(line.starts_with('['), "{line:?}");
    if limits::validate_room_id(&event.room_id).as_deref() == Ok(event.room_id.as_str()) {
        assert!(!line.chars().any(breaks_the_line), "{line:?}");
    }
}

/// What a rendered line must not carry raw: control characters and Unicode line breaks.
fn breaks_the_line(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

fn check_status_text(status: &ChatStatus) {
    let text = render::status_text(status);
    assert!(text.contains(&quote(&status.display_name)), "{text:?}");
    if status.state == ChatState::InRoom {
        for m in &status.members {
            assert!(text.contains(&quote(m)), "{m:?} is not quoted in {text:?}");
        }
    }
}

/// The untrusted-content notice comes before the first line of any stranger's message.
fn check_wait_text(out: &tools::WaitForMessageOutput) {
    let text = render::wait_text(out);
    for event in &out.events {
        check_event_line(event);
    }
    let first_message = out
        .events
        .iter()
        .find(|e| matches!(e.body, EventBody::MessageReceived { .. }));
    if let Some(event) = first_message {
        let notice = text.find(UNTRUSTED_NOTICE).expect("untrusted notice");
        let line = text.find(&render::event_line(event)).expect("event line");
        assert!(notice < line, "the notice must come first: {text:?}");
    }
    assert!(text.ends_with(&render::status_text(&out.status)));
}

fn check_transcript_text(out: &tools::GetMessagesOutput) {
    let text = render::transcript_text(out);
    let notice = text.find(UNTRUSTED_NOTICE);
    for m in &out.messages {
        let at = text.find(&quote(&m.text)).expect("message text quoted");
        if !m.from_you {
            assert!(text.contains(&quote(&m.from)));
            assert!(notice.is_some_and(|n| n < at), "no notice before {text:?}");
        }
    }
}

fn check_time_of_day(ms: u64) {
    let t = render::time_of_day(ms);
    let b = t.as_bytes();
    assert_eq!(b.len(), 12, "{t:?}");
    assert!(t.ends_with(" UTC") && b[2] == b':' && b[5] == b':', "{t:?}");
    let hours: u32 = t[..2].parse().unwrap();
    let minutes: u32 = t[3..5].parse().unwrap();
    let seconds: u32 = t[6..8].parse().unwrap();
    assert!(hours < 24 && minutes < 60 && seconds < 60, "{t:?}");
}

/// Text a sanitiser let through: no control or formatting characters, no whitespace at either
/// end, whitespace only as single spaces.
fn assert_clean(s: &str, max: usize) {
    assert!(s.chars().count() <= max, "{s:?} longer than {max}");
    assert!(
        !s.chars().any(char::is_control),
        "{s:?} has a control character"
    );
    assert!(
        !s.chars()
            .any(|c| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')),
        "{s:?} has a formatting character"
    );
    assert_eq!(s, s.trim(), "{s:?} is not trimmed");
    assert!(
        !s.contains("  ") && !s.chars().any(|c| c.is_whitespace() && c != ' '),
        "{s:?} has unnormalised whitespace"
    );
}

fn check_sanitizers(raw: &str) {
    let name = limits::sanitize_display_name(Some(raw));
    assert!(!name.is_empty());
    assert_clean(&name, MAX_DISPLAY_NAME_CHARS);
    assert_eq!(
        limits::sanitize_display_name(Some(&name)),
        name,
        "not idempotent"
    );

    if let Some(topic) = limits::sanitize_topic(Some(raw)) {
        assert!(!topic.is_empty());
        assert_clean(&topic, MAX_TOPIC_CHARS);
        assert_eq!(topic.to_lowercase(), topic, "topic not lower case");
        assert_eq!(
            limits::sanitize_topic(Some(&topic)).as_deref(),
            Some(topic.as_str())
        );
    }

    if let Ok(room) = limits::validate_room_id(raw) {
        assert_eq!(room, raw.trim());
        assert!((1..=MAX_ROOM_ID_CHARS).contains(&room.chars().count()));
        assert!(
            room.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        );
        assert_eq!(limits::validate_room_id(&room), Ok(room.clone()));
    }
}
