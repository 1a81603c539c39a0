//! The two stores give the same answers: every case runs against the in-memory store and
//! against the Redis store on a real `redis-server`. (Same tools, same events, same limits,
//! whichever store a relay runs with.)

use std::time::Duration;

use mcp_chat::ErrorCode;
use mcp_chat::events::{DisconnectReason, EventBody};
use mcp_chat::tools::ChatState;
use mcp_chat::tools::{LeftPlace, ReportReason};
use mcp_chat_relay::moderation::{
    Access, BanRefusal, BanRequest, ModerationPolicy, ReportFiling, new_ban_id, new_report_id,
    pseudonym,
};
use mcp_chat_relay::store::{ChatStore, MemoryStore, ParticipantKey, RedisStore};

use crate::redis_harness::RedisServer;

fn key(n: &str) -> ParticipantKey {
    ParticipantKey::for_session(n)
}

/// Runs `case` against both stores, built with the given inbox and room capacities.
macro_rules! on_both_stores {
    ($test:literal, $inbox:expr, $room:expr, $case:ident) => {{
        let memory = MemoryStore::new($inbox, $room);
        $case(&memory, "memory").await;
        if let Some(redis) = RedisServer::start($test).await {
            let store = RedisStore::open(&redis.url(), "parity:", $inbox, $room).unwrap();
            $case(&store, "redis").await;
        }
    }};
}

/// Like `on_both_stores!`, with moderation rules: inboxes of 64 events, rooms of 3.
macro_rules! on_both_stores_with {
    ($test:literal, $policy:expr, $case:ident) => {{
        let memory = MemoryStore::new(64, 3).with_policy($policy);
        $case(&memory, "memory").await;
        if let Some(redis) = RedisServer::start($test).await {
            let store = RedisStore::open(&redis.url(), "parity:", 64, 3)
                .unwrap()
                .with_policy($policy);
            $case(&store, "redis").await;
        }
    }};
}

#[tokio::test]
async fn full_inbox_drops_oldest_unread_and_reports_the_gap() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b) = (key("a"), key("b"));
        store.join_room(&a, "A".into(), "r".into()).await.unwrap();
        store.join_room(&b, "B".into(), "r".into()).await.unwrap();
        // b has chatroom.found (seq 1); five messages make seq 2..=6; only 3 fit.
        for i in 0..5 {
            store.send_message(&a, format!("m{i}")).await.unwrap();
        }
        assert_eq!(store.status(&b).await.unwrap().unread, 3, "{kind}");
        let batch = store.read_unread(&b, 100).await.unwrap();
        assert_eq!(batch.missed, 3, "{kind}");
        let seqs: Vec<u64> = batch.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![4, 5, 6], "{kind}");
        let EventBody::MessageReceived { from, text, .. } = &batch.events[2].body else {
            panic!("{kind}: not a message: {:?}", batch.events[2]);
        };
        assert_eq!((from.as_str(), text.as_str()), ("A", "m4"), "{kind}");
        assert_eq!(store.counts().await.unwrap().events_dropped, 3, "{kind}");
        let again = store.read_unread(&b, 100).await.unwrap();
        assert!(again.events.is_empty() && again.missed == 0, "{kind}");
        // A client that lost an answer moves the cursor back and reads again.
        store.set_read_cursor(&b, 4).await.unwrap();
        let reread = store.read_unread(&b, 100).await.unwrap();
        let seqs: Vec<u64> = reread.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![5, 6], "{kind}");
    }
    on_both_stores!("store_parity::full_inbox", 3, 2, case);
}

#[tokio::test]
async fn blocked_pairs_are_never_matched_again() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b, c) = (key("a"), key("b"), key("c"));
        store.enter_queue(&a, "A".into(), None).await.unwrap();
        let s = store.enter_queue(&b, "B".into(), None).await.unwrap();
        assert_eq!(s.state, ChatState::InRoom, "{kind}");
        assert_eq!(s.partner_name.as_deref(), Some("A"), "{kind}");
        let left = store.leave(&a, true).await.unwrap();
        assert_eq!(left.blocked, 1, "{kind}");
        store.enter_queue(&a, "A".into(), None).await.unwrap();
        let s = store.enter_queue(&b, "B".into(), None).await.unwrap();
        assert_eq!(s.state, ChatState::Waiting, "{kind}: a and b paired again");
        assert_eq!(s.position, Some(2), "{kind}");
        let s = store.enter_queue(&c, "C".into(), None).await.unwrap();
        assert_eq!(
            s.partner_name.as_deref(),
            Some("A"),
            "{kind}: first in line"
        );
        let err = store.enter_queue(&b, "B".into(), None).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::AlreadyWaiting, "{kind}");
    }
    on_both_stores!("store_parity::blocked_pairs", 16, 2, case);
}

#[tokio::test]
async fn topics_are_separate_queues() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let s = store
            .enter_queue(&a, "A".into(), Some("rust".into()))
            .await
            .unwrap();
        assert_eq!(
            (s.state, s.topic.as_deref()),
            (ChatState::Waiting, Some("rust")),
            "{kind}"
        );
        let s = store.enter_queue(&b, "B".into(), None).await.unwrap();
        assert_eq!(
            s.state,
            ChatState::Waiting,
            "{kind}: no topic is its own queue"
        );
        let s = store
            .enter_queue(&c, "C".into(), Some("rust".into()))
            .await
            .unwrap();
        assert_eq!(s.state, ChatState::InRoom, "{kind}");
        assert_eq!(s.topic.as_deref(), Some("rust"), "{kind}");
        let found = store.read_unread(&a, 10).await.unwrap().events;
        let EventBody::ChatroomFound { members, topic, .. } = &found[0].body else {
            panic!("{kind}: {found:?}");
        };
        assert_eq!(
            (members.as_slice(), topic.as_deref()),
            (&["C".to_owned()][..], Some("rust")),
            "{kind}"
        );
        let counts = store.counts().await.unwrap();
        assert_eq!((counts.waiting, counts.rooms), (1, 1), "{kind}");
        // next_chat leaves the room and queues again on the same topic.
        let s = store.next_chat(&a).await.unwrap();
        assert_eq!(
            (s.state, s.topic.as_deref()),
            (ChatState::Waiting, Some("rust")),
            "{kind}"
        );
        let gone = store.read_unread(&c, 10).await.unwrap().events;
        assert!(
            matches!(
                gone.last().map(|e| &e.body),
                Some(EventBody::PartnerDisconnected {
                    reason: DisconnectReason::Left,
                    room_closed: true,
                    ..
                })
            ),
            "{kind}: {gone:?}"
        );
    }
    on_both_stores!("store_parity::topics", 16, 2, case);
}

#[tokio::test]
async fn duplicate_names_in_a_room_are_told_apart() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        for n in ["a", "b", "c"] {
            store
                .join_room(&key(n), "Sam".into(), "r".into())
                .await
                .unwrap();
        }
        let s = store.status(&key("c")).await.unwrap();
        assert_eq!(s.display_name, "Sam (3)", "{kind}");
        assert_eq!(s.members, vec!["Sam", "Sam (2)"], "{kind}");
        let err = store
            .join_room(&key("d"), "D".into(), "r".into())
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::RoomFull, "{kind}");
        assert!(
            err.error.message.contains("Room r is full"),
            "{kind}: {err:?}"
        );
        // A private room stays open while someone is in it.
        store.leave(&key("a"), false).await.unwrap();
        let s = store.status(&key("b")).await.unwrap();
        assert_eq!(s.members, vec!["Sam (3)"], "{kind}");
        store
            .send_message(&key("b"), "still here".into())
            .await
            .unwrap();
    }
    on_both_stores!("store_parity::duplicate_names", 16, 3, case);
}

#[tokio::test]
async fn later_members_do_not_read_earlier_messages() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b, c) = (key("a"), key("b"), key("c"));
        store.join_room(&a, "A".into(), "r".into()).await.unwrap();
        let err = store.send_message(&a, "alone".into()).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::NoPartner, "{kind}");
        store.join_room(&b, "B".into(), "r".into()).await.unwrap();
        store.send_message(&a, "before c".into()).await.unwrap();
        store.join_room(&c, "C".into(), "r".into()).await.unwrap();
        let sent = store.send_message(&b, "after c".into()).await.unwrap();
        assert_eq!((sent.message_seq, sent.delivered_to), (2, 2), "{kind}");
        let seen = store.transcript(&c, None, 10).await.unwrap();
        let texts: Vec<&str> = seen.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["after c"], "{kind}");
        assert!(!seen.truncated, "{kind}");
        let all = store.transcript(&a, Some(0), 10).await.unwrap();
        assert_eq!(all.messages.len(), 2, "{kind}");
        assert!(
            all.messages[0].from_you && !all.messages[1].from_you,
            "{kind}"
        );
        let err = store.transcript(&key("z"), None, 10).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotInRoom, "{kind}");
    }
    on_both_stores!("store_parity::later_members", 16, 3, case);
}

#[tokio::test]
async fn a_stranger_who_left_first_can_still_be_blocked() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b) = (key("a"), key("b"));
        store.enter_queue(&a, "A".into(), None).await.unwrap();
        store.enter_queue(&b, "B".into(), None).await.unwrap();
        store.leave(&b, false).await.unwrap();
        let out = store.leave(&a, true).await.unwrap();
        assert_eq!(out.blocked, 1, "{kind}");
        store.enter_queue(&a, "A".into(), None).await.unwrap();
        let s = store.enter_queue(&b, "B".into(), None).await.unwrap();
        assert_eq!(s.state, ChatState::Waiting, "{kind}");
    }
    on_both_stores!("store_parity::left_first", 16, 2, case);
}

/// What the chat pane showed counts as read, and marking never moves the cursor back.
#[tokio::test]
async fn marking_read_only_moves_forward() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b) = (key("a"), key("b"));
        store.join_room(&a, "A".into(), "r".into()).await.unwrap();
        store.join_room(&b, "B".into(), "r".into()).await.unwrap();
        for i in 0..3 {
            store.send_message(&a, format!("m{i}")).await.unwrap();
        }
        // b: chatroom.found (1), m0..m2 (2..=4).
        store.mark_read_through(&b, 3).await.unwrap();
        assert_eq!(store.status(&b).await.unwrap().unread, 1, "{kind}");
        store.mark_read_through(&b, 1).await.unwrap();
        assert_eq!(
            store.status(&b).await.unwrap().unread,
            1,
            "{kind}: not back"
        );
        let rest = store.read_unread(&b, 100).await.unwrap();
        let seqs: Vec<u64> = rest.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![4], "{kind}");
        store.mark_read_through(&b, 99).await.unwrap();
        assert_eq!(store.status(&b).await.unwrap().unread, 0, "{kind}");
        // Beyond the newest event it stops at the newest: the next one is unread.
        store.send_message(&a, "m3".into()).await.unwrap();
        assert_eq!(store.status(&b).await.unwrap().unread, 1, "{kind}");
        // Unknown participants are no error.
        store.mark_read_through(&key("nobody"), 5).await.unwrap();
    }
    on_both_stores!("store_parity::mark_read", 16, 2, case);
}

#[tokio::test]
async fn transcript_pages_by_message_seq() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b) = (key("a"), key("b"));
        store.join_room(&a, "A".into(), "r".into()).await.unwrap();
        store.join_room(&b, "B".into(), "r".into()).await.unwrap();
        for i in 1..=5 {
            let from = if i % 2 == 0 { &a } else { &b };
            store.send_message(from, format!("m{i}")).await.unwrap();
        }
        let newest = store.transcript(&a, None, 2).await.unwrap();
        let seqs: Vec<u64> = newest.messages.iter().map(|m| m.message_seq).collect();
        assert_eq!(seqs, vec![4, 5], "{kind}");
        assert!(newest.truncated && newest.messages[0].from_you, "{kind}");
        let page = store.transcript(&a, Some(1), 2).await.unwrap();
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.message_seq).collect();
        assert_eq!(seqs, vec![2, 3], "{kind}");
        assert_eq!(page.latest_message_seq, 5, "{kind}");
    }
    on_both_stores!("store_parity::transcript", 16, 2, case);
}

#[tokio::test]
async fn ending_tells_the_partner_and_forgets_the_participant() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b) = (key("a"), key("b"));
        store.enter_queue(&a, "A".into(), None).await.unwrap();
        store.enter_queue(&b, "B".into(), None).await.unwrap();
        let mut watch = store.watch(&a);
        watch.borrow_and_update();
        store.end(&a, DisconnectReason::Timeout).await.unwrap();
        let told = store.read_unread(&b, 10).await.unwrap().events;
        assert!(
            matches!(
                told.last().map(|e| &e.body),
                Some(EventBody::PartnerDisconnected {
                    reason: DisconnectReason::Timeout,
                    ..
                })
            ),
            "{kind}: {told:?}"
        );
        // Whoever waits on the ended participant is woken and sees it closed.
        let woke = tokio::time::timeout(Duration::from_secs(5), watch.changed()).await;
        assert!(
            matches!(woke, Ok(Err(_))),
            "{kind}: watch not closed: {woke:?}"
        );
        assert_eq!(
            store.status(&a).await.unwrap().state,
            ChatState::Idle,
            "{kind}"
        );
        assert_eq!(store.resume_point(&a, Some(3)).await.unwrap(), 0, "{kind}");
        assert_eq!(
            store.status(&b).await.unwrap().state,
            ChatState::Idle,
            "{kind}"
        );
    }
    on_both_stores!("store_parity::ending", 16, 2, case);
}

#[tokio::test]
async fn pushes_resume_from_the_clients_claim_or_the_last_push() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b) = (key("a"), key("b"));
        store.join_room(&a, "A".into(), "r".into()).await.unwrap();
        store.join_room(&b, "B".into(), "r".into()).await.unwrap();
        for i in 0..4 {
            store.send_message(&a, format!("m{i}")).await.unwrap();
        }
        // b: chatroom.found (1), m0..m3 (2..=5).
        store.mark_pushed(&b, 4).await.unwrap();
        assert_eq!(store.resume_point(&b, None).await.unwrap(), 4, "{kind}");
        assert_eq!(store.resume_point(&b, Some(2)).await.unwrap(), 2, "{kind}");
        assert_eq!(
            store.resume_point(&b, Some(99)).await.unwrap(),
            4,
            "{kind}: a claim from an earlier life is ignored"
        );
        let after: Vec<u64> = store
            .events_after(&b, 2, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(after, vec![3, 4, 5], "{kind}");
        // Pushing never counts as reading.
        assert_eq!(store.status(&b).await.unwrap().unread, 5, "{kind}");
    }
    on_both_stores!("store_parity::resume", 16, 2, case);
}

/// Presence is what a shared store adds: a participant no node vouches for is ended with
/// `timeout` by whichever node reaps first; one that is heartbeated stays.
#[tokio::test]
async fn the_shared_store_reaps_participants_no_node_serves() {
    let Some(redis) = RedisServer::start("store_parity::reaping").await else {
        return;
    };
    let store = RedisStore::open(&redis.url(), "parity:", 16, 2).unwrap();
    let other_node = RedisStore::open(&redis.url(), "parity:", 16, 2).unwrap();
    assert!(store.is_shared());
    let (a, b, c) = (key("a"), key("b"), key("c"));
    store.enter_queue(&a, "A".into(), None).await.unwrap();
    other_node.enter_queue(&b, "B".into(), None).await.unwrap();
    store.join_room(&c, "C".into(), "r".into()).await.unwrap();
    let grace = Duration::from_millis(300);
    tokio::time::sleep(grace * 2).await;
    store.heartbeat(std::slice::from_ref(&b)).await.unwrap();
    // c comes back through a new session just in time: taking it over vouches for it.
    other_node.resume_point(&c, None).await.unwrap();
    let reaped = other_node.reap_absent(grace).await.unwrap();
    assert_eq!(reaped, vec![a.clone()], "only the one nobody vouched for");
    let told = store.read_unread(&b, 10).await.unwrap().events;
    assert!(
        matches!(
            told.last().map(|e| &e.body),
            Some(EventBody::PartnerDisconnected {
                reason: DisconnectReason::Timeout,
                ..
            })
        ),
        "{told:?}"
    );
    assert!(store.reap_absent(grace).await.unwrap().is_empty());
    assert_eq!(store.counts().await.unwrap().participants, 2);
}

fn filing(reason: ReportReason, member: Option<&str>) -> ReportFiling {
    ReportFiling {
        id: new_report_id(),
        reason,
        note: Some("they insulted me".into()),
        member: member.map(str::to_owned),
    }
}

fn ban_of(who: &ParticipantKey, address: bool, duration: Option<Duration>) -> BanRequest {
    BanRequest {
        id: new_ban_id(),
        participant: pseudonym(who),
        key: None,
        address: None,
        ban_address: address,
        duration,
        report: None,
    }
}

/// A report keeps the room's last 20 messages with both sides' keys, and nobody else's state
/// changes: the reported participant's inbox and status are what they were.
#[tokio::test]
async fn a_report_keeps_the_last_messages_and_changes_nothing_else() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b) = (key("a"), key("b"));
        store.enter_queue(&a, "A".into(), None).await.unwrap();
        store.enter_queue(&b, "B".into(), None).await.unwrap();
        for i in 1..=25 {
            let from = if i % 2 == 0 { &a } else { &b };
            store.send_message(from, format!("m{i}")).await.unwrap();
        }
        let before = (
            store.status(&b).await.unwrap(),
            store.events_after(&b, 0, 100).await,
        );
        let report = store
            .report(&a, filing(ReportReason::Harassment, None))
            .await
            .unwrap();
        assert_eq!(report.reporter, a.as_str(), "{kind}");
        assert_eq!(report.reported, b.as_str(), "{kind}");
        assert_eq!(report.reported_name, "B", "{kind}");
        assert_eq!(report.reason, "harassment", "{kind}");
        assert_eq!(report.note.as_deref(), Some("they insulted me"), "{kind}");
        let seqs: Vec<u64> = report.evidence.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (6..=25).collect::<Vec<_>>(), "{kind}: the last 20");
        assert_eq!(report.evidence[0].from, a.as_str(), "{kind}: m6 is a's");
        assert_eq!(report.evidence[19].text, "m25", "{kind}");
        let after = (
            store.status(&b).await.unwrap(),
            store.events_after(&b, 0, 100).await,
        );
        assert_eq!(
            before, after,
            "{kind}: the reported participant sees no change"
        );
        let listed = store.reports(10).await.unwrap();
        assert_eq!(listed, vec![report.clone()], "{kind}");
        assert_eq!(
            store.report_by_id(&report.id).await.unwrap(),
            Some(report),
            "{kind}"
        );
        assert_eq!(store.report_by_id("r-nope").await.unwrap(), None, "{kind}");
        assert_eq!(
            store.moderation_counts().await.unwrap().reports,
            1,
            "{kind}"
        );
    }
    on_both_stores_with!("store_parity::report", ModerationPolicy::default(), case);
}

/// After the stranger left, the report names it and keeps what it said (from the inbox).
#[tokio::test]
async fn a_stranger_who_left_can_still_be_reported() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b, c) = (key("a"), key("b"), key("c"));
        store.enter_queue(&a, "A".into(), None).await.unwrap();
        store.enter_queue(&b, "B".into(), None).await.unwrap();
        store.send_message(&a, "hello".into()).await.unwrap();
        store.send_message(&b, "an insult".into()).await.unwrap();
        store.leave(&b, false).await.unwrap();
        let report = store
            .report(&a, filing(ReportReason::Harassment, None))
            .await
            .unwrap();
        assert_eq!(report.reported, b.as_str(), "{kind}");
        assert_eq!(report.evidence.len(), 1, "{kind}: {:?}", report.evidence);
        assert_eq!(report.evidence[0].text, "an insult", "{kind}");
        assert_eq!(report.evidence[0].from, b.as_str(), "{kind}");
        assert_eq!(report.reported_name, "B", "{kind}");
        let err = store
            .report(&c, filing(ReportReason::Spam, None))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            ErrorCode::NothingToReport,
            "{kind}: c never chatted"
        );
    }
    on_both_stores_with!(
        "store_parity::report_left",
        ModerationPolicy::default(),
        case
    );
}

/// In a group room the member is named; the evidence holds only what the reporter could read.
#[tokio::test]
async fn in_a_group_room_the_member_is_named() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b, c) = (key("a"), key("b"), key("c"));
        store.join_room(&a, "A".into(), "g".into()).await.unwrap();
        store.join_room(&b, "B".into(), "g".into()).await.unwrap();
        store.send_message(&b, "before c".into()).await.unwrap();
        store.join_room(&c, "C".into(), "g".into()).await.unwrap();
        store.send_message(&b, "spam spam".into()).await.unwrap();
        let err = store
            .report(&c, filing(ReportReason::Spam, None))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidArgument, "{kind}: which one?");
        let err = store
            .report(&c, filing(ReportReason::Spam, Some("Z")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::NothingToReport, "{kind}");
        let report = store
            .report(&c, filing(ReportReason::Spam, Some("B")))
            .await
            .unwrap();
        assert_eq!(report.reported, b.as_str(), "{kind}");
        let texts: Vec<&str> = report.evidence.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["spam spam"], "{kind}");
    }
    on_both_stores_with!(
        "store_parity::report_group",
        ModerationPolicy::default(),
        case
    );
}

/// Reports are deleted once their retention has passed.
#[tokio::test]
async fn reports_are_deleted_after_their_retention() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b) = (key("a"), key("b"));
        store.enter_queue(&a, "A".into(), None).await.unwrap();
        store.enter_queue(&b, "B".into(), None).await.unwrap();
        store.send_message(&b, "evidence".into()).await.unwrap();
        let report = store
            .report(&a, filing(ReportReason::Other, None))
            .await
            .unwrap();
        assert_eq!(store.reports(10).await.unwrap().len(), 1, "{kind}");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(store.reports(10).await.unwrap().is_empty(), "{kind}");
        assert_eq!(
            store.report_by_id(&report.id).await.unwrap(),
            None,
            "{kind}"
        );
        assert_eq!(
            store.moderation_counts().await.unwrap().reports,
            0,
            "{kind}"
        );
    }
    let policy = ModerationPolicy {
        report_retention: Duration::from_millis(300),
        ..ModerationPolicy::default()
    };
    on_both_stores_with!("store_parity::retention", policy, case);
}

/// A ban holds by pseudonym, and with `ban_address` for any identity calling from that
/// address; it takes the banned participant out of its room, and lifting it opens everything.
#[tokio::test]
async fn bans_hold_by_identity_and_address_until_lifted() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b, fresh) = (key("a"), key("b"), key("fresh"));
        store.enter_queue(&a, "A".into(), None).await.unwrap();
        store.enter_queue(&b, "B".into(), None).await.unwrap();
        let addr = Some("192.0.2.7");
        assert_eq!(
            store.access(&b, &pseudonym(&b), addr).await.unwrap(),
            Access::Open
        );
        store.read_unread(&a, 100).await.unwrap();
        let ban = store.ban(ban_of(&b, true, None)).await.unwrap().unwrap();
        assert_eq!(ban.address.as_deref(), Some("192.0.2.7"), "{kind}");
        assert_eq!(ban.until_ms, None, "{kind}");
        let gone = store.read_unread(&a, 100).await.unwrap().events;
        assert!(
            matches!(
                gone.last().map(|e| &e.body),
                Some(EventBody::PartnerDisconnected {
                    reason: DisconnectReason::Left,
                    ..
                })
            ),
            "{kind}: the partner sees an ordinary leave: {gone:?}"
        );
        let banned = Access::Banned { until_ms: None };
        assert_eq!(
            store.access(&b, &pseudonym(&b), None).await.unwrap(),
            banned,
            "{kind}"
        );
        assert_eq!(
            store
                .access(&fresh, &pseudonym(&fresh), addr)
                .await
                .unwrap(),
            banned,
            "{kind}: a fresh identity from the banned address"
        );
        assert_eq!(
            store
                .access(&fresh, &pseudonym(&fresh), Some("192.0.2.8"))
                .await
                .unwrap(),
            Access::Open,
            "{kind}"
        );
        assert_eq!(store.bans().await.unwrap(), vec![ban.clone()], "{kind}");
        assert!(store.unban(&ban.id).await.unwrap(), "{kind}");
        assert!(
            !store.unban(&ban.id).await.unwrap(),
            "{kind}: already lifted"
        );
        assert_eq!(
            store.access(&b, &pseudonym(&b), addr).await.unwrap(),
            Access::Open
        );
        assert!(store.bans().await.unwrap().is_empty(), "{kind}");
        // Without a known address there is no address ban.
        let unknown = key("unknown");
        assert_eq!(
            store.ban(ban_of(&unknown, true, None)).await.unwrap(),
            Err(BanRefusal::NoAddress),
            "{kind}"
        );
    }
    on_both_stores_with!("store_parity::bans", ModerationPolicy::default(), case);
}

/// A ban for a duration ends by itself.
#[tokio::test]
async fn timed_bans_end_by_themselves() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let b = key("b");
        let ban = store
            .ban(ban_of(&b, false, Some(Duration::from_millis(300))))
            .await
            .unwrap()
            .unwrap();
        let Access::Banned { until_ms: Some(_) } =
            store.access(&b, &pseudonym(&b), None).await.unwrap()
        else {
            panic!("{kind}: not banned for a time");
        };
        assert_eq!(store.moderation_counts().await.unwrap().bans, 1, "{kind}");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            store.access(&b, &pseudonym(&b), None).await.unwrap(),
            Access::Open
        );
        assert!(
            store.bans().await.unwrap().is_empty(),
            "{kind}: {ban:?} ended"
        );
    }
    on_both_stores_with!(
        "store_parity::timed_bans",
        ModerationPolicy::default(),
        case
    );
}

/// Reported by K distinct others within the window: held out of matching, even while
/// already waiting in the queue; the operator's counts list it.
#[tokio::test]
async fn distinct_reports_hold_a_participant_out_of_matching() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let spammer = key("spammer");
        let reporters = [key("r1"), key("r2"), key("r3")];
        for (i, reporter) in reporters.iter().enumerate() {
            store.enter_queue(reporter, "R".into(), None).await.unwrap();
            store.enter_queue(&spammer, "S".into(), None).await.unwrap();
            store
                .report(reporter, filing(ReportReason::Spam, None))
                .await
                .unwrap();
            if i == 0 {
                // The same reporter twice counts once.
                store
                    .report(reporter, filing(ReportReason::Spam, None))
                    .await
                    .unwrap();
            }
            let expected = if i < 2 { "open" } else { "paused" };
            let access = store
                .access(&spammer, &pseudonym(&spammer), None)
                .await
                .unwrap();
            let got = match access {
                Access::Open => "open",
                Access::MatchingPaused { .. } => "paused",
                Access::Banned { .. } => "banned",
            };
            assert_eq!(got, expected, "{kind}: after {} reporters", i + 1);
            store.leave(reporter, true).await.unwrap();
            store.leave(&spammer, false).await.unwrap();
        }
        let counts = store.moderation_counts().await.unwrap();
        assert_eq!(counts.cooldowns.len(), 1, "{kind}");
        assert_eq!(counts.cooldowns[0].0, spammer, "{kind}");
        // Already waiting when the cooldown started: nobody is paired with it.
        let waiting = key("waiting");
        let s = store.enter_queue(&waiting, "W".into(), None).await.unwrap();
        assert_eq!(s.state, ChatState::Waiting, "{kind}");
        store.leave(&waiting, false).await.unwrap();
        // (enter_queue itself is refused by the handler; the store only skips it.)
        let s = store.enter_queue(&spammer, "S".into(), None).await.unwrap();
        assert_eq!(s.state, ChatState::Waiting, "{kind}");
        let s = store.enter_queue(&waiting, "W".into(), None).await.unwrap();
        assert_eq!(
            s.state,
            ChatState::Waiting,
            "{kind}: not paired with the spammer"
        );
    }
    let policy = ModerationPolicy {
        cooldown_reports: 3,
        ..ModerationPolicy::default()
    };
    on_both_stores_with!("store_parity::cooldown", policy, case);
}

/// A kick takes a participant out of its room by pseudonym; the partner sees `left`.
#[tokio::test]
async fn a_kick_takes_a_participant_out_of_its_room() {
    async fn case(store: &dyn ChatStore, kind: &str) {
        let (a, b) = (key("a"), key("b"));
        store.enter_queue(&a, "A".into(), None).await.unwrap();
        store.enter_queue(&b, "B".into(), None).await.unwrap();
        store.access(&b, &pseudonym(&b), None).await.unwrap();
        assert!(!store.kick("u-0000000000000000").await.unwrap(), "{kind}");
        assert!(store.kick(&pseudonym(&b)).await.unwrap(), "{kind}");
        assert_eq!(
            store.status(&b).await.unwrap().state,
            ChatState::Idle,
            "{kind}"
        );
        assert_eq!(
            store.status(&a).await.unwrap().state,
            ChatState::Idle,
            "{kind}"
        );
        assert!(
            !store.kick(&pseudonym(&b)).await.unwrap(),
            "{kind}: in no room now"
        );
        let out = store.leave(&a, false).await.unwrap();
        assert_eq!(out.left, LeftPlace::Nothing, "{kind}");
    }
    on_both_stores_with!("store_parity::kick", ModerationPolicy::default(), case);
}
