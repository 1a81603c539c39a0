//! The single-node store: everything in one mutex-guarded structure.
//!
//! A std `Mutex` (not tokio's) guards the state: no `.await` happens while it is held and every
//! critical section is short (a queue scan is bounded by the queue's length). Nothing is written
//! to disk: when the relay stops, every chat is gone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use mcp_chat::ToolError;
use mcp_chat::events::{ChatEvent, DisconnectReason, EventBody, RoomKind};
use mcp_chat::limits::{BLOCK_TTL, MAX_BLOCKS_PER_PARTICIPANT, TRANSCRIPT_CAPACITY};
use mcp_chat::tools::{
    ChatState, ChatStatus, GetMessagesOutput, LeaveChatOutput, LeftPlace, SendMessageOutput,
    TranscriptMessage,
};
use tokio::sync::watch;

use super::{
    ChatStore, ParticipantKey, ReadBatch, StoreCounts, new_random_room_id, refusal, transcript_page,
};
use crate::moderation::{
    self, Access, BanRefusal, BanRequest, EvidenceEntry, ModerationCounts, ModerationPolicy,
    ReportFiling, StoredBan, StoredReport,
};

/// In-memory [`ChatStore`] for a single relay node.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    inbox_capacity: usize,
    room_capacity: usize,
    policy: ModerationPolicy,
}

impl MemoryStore {
    /// A store whose inboxes hold `inbox_capacity` events and whose private rooms hold
    /// `room_capacity` members.
    pub fn new(inbox_capacity: usize, room_capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            inbox_capacity: inbox_capacity.max(1),
            room_capacity: room_capacity.max(2),
            policy: ModerationPolicy::default(),
        }
    }

    /// The same store with these moderation rules.
    pub fn with_policy(mut self, policy: ModerationPolicy) -> Self {
        self.policy = policy;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; keep serving the other participants
        // rather than poisoning the whole relay.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Where a room lives: random rooms and private rooms are separate namespaces, so a private
/// room code can never name a random match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RoomRef {
    Random(String),
    Private(String),
}

impl RoomRef {
    fn id(&self) -> &str {
        match self {
            Self::Random(id) | Self::Private(id) => id,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    participants: HashMap<ParticipantKey, Participant>,
    /// One FIFO queue per topic (`None` = no topic).
    queues: HashMap<Option<String>, VecDeque<ParticipantKey>>,
    rooms: HashMap<RoomRef, Room>,
    /// Who blocked whom, with when the block was made. Blocks go both ways: both sides get an
    /// entry.
    blocks: HashMap<ParticipantKey, Vec<(ParticipantKey, Instant)>>,
    /// When expired blocks were last purged from `blocks`.
    blocks_purged: Option<Instant>,
    messages_relayed: u64,
    events_dropped: u64,
    moderation: Moderation,
}

/// Reports, bans and cooldowns. Deadlines are tokio instants (tests pause time); the times
/// operators read are wall-clock milliseconds.
#[derive(Debug, Default)]
struct Moderation {
    /// Oldest first, with when each is deleted.
    reports: VecDeque<(tokio::time::Instant, StoredReport)>,
    /// Who reported whom, and when (for the cooldown).
    reported_by: HashMap<ParticipantKey, Vec<(ParticipantKey, tokio::time::Instant)>>,
    /// Participants held out of matching: until when, as an instant and as wall-clock ms.
    cooldowns: HashMap<ParticipantKey, (tokio::time::Instant, u64)>,
    /// Bans by id, with when each ends.
    bans: HashMap<String, (Option<tokio::time::Instant>, StoredBan)>,
    /// Ban ids by participant pseudonym and by address.
    by_participant: HashMap<String, String>,
    by_address: HashMap<String, String>,
}

impl Moderation {
    /// Forgets reports past their retention, cooldowns and bans that ended.
    fn purge(&mut self) {
        let now = tokio::time::Instant::now();
        while self.reports.front().is_some_and(|(until, _)| *until <= now) {
            self.reports.pop_front();
        }
        self.cooldowns.retain(|_, (until, _)| *until > now);
        let ended: Vec<String> = self
            .bans
            .iter()
            .filter(|(_, (until, _))| until.is_some_and(|u| u <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            self.remove_ban(&id);
        }
    }

    fn remove_ban(&mut self, id: &str) -> bool {
        let Some((_, ban)) = self.bans.remove(id) else {
            return false;
        };
        if self
            .by_participant
            .get(&ban.participant)
            .is_some_and(|b| b == id)
        {
            self.by_participant.remove(&ban.participant);
        }
        if let Some(address) = &ban.address
            && self.by_address.get(address).is_some_and(|b| b == id)
        {
            self.by_address.remove(address);
        }
        true
    }

    fn in_cooldown(&self, who: &ParticipantKey) -> bool {
        self.cooldowns
            .get(who)
            .is_some_and(|(until, _)| *until > tokio::time::Instant::now())
    }
}

/// How often the whole block list is purged of expired entries.
const BLOCK_PURGE_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Participant {
    display_name: String,
    /// The topic of the last `enter_queue` (reused by `next_chat`).
    topic: Option<String>,
    place: Place,
    inbox: Inbox,
    seq_tx: watch::Sender<u64>,
    /// Who was in the participant's last room, so `leave_chat {block: true}` can still block a
    /// stranger who left first.
    last_partners: Vec<ParticipantKey>,
    /// The participant's last room, so that `report` can still name it after leaving.
    last_room: Option<RoomRef>,
    /// The client address it last called from (for address bans).
    address: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Place {
    Idle,
    Waiting(Option<String>),
    InRoom(RoomRef),
}

#[derive(Debug, Default)]
struct Inbox {
    events: VecDeque<ChatEvent>,
    last_seq: u64,
    read_through: u64,
    pushed_through: u64,
    missed: u64,
}

#[derive(Debug)]
struct Room {
    kind: RoomKind,
    topic: Option<String>,
    members: Vec<Member>,
    transcript: VecDeque<TranscriptEntry>,
    last_message_seq: u64,
}

#[derive(Debug, Clone)]
struct Member {
    key: ParticipantKey,
    /// The name shown in this room (made unique within the room).
    name: String,
    /// The room's last message_seq when this member joined: it may read only later messages.
    joined_after: u64,
}

#[derive(Debug, Clone)]
struct TranscriptEntry {
    message_seq: u64,
    timestamp_ms: u64,
    from: ParticipantKey,
    from_name: String,
    text: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Participant {
    fn new(display_name: String) -> Self {
        let (seq_tx, _) = watch::channel(0);
        Self {
            display_name,
            topic: None,
            place: Place::Idle,
            inbox: Inbox::default(),
            seq_tx,
            last_partners: Vec::new(),
            last_room: None,
            address: None,
        }
    }
}

impl State {
    fn participant(&mut self, who: &ParticipantKey) -> &mut Participant {
        self.participants
            .entry(who.clone())
            .or_insert_with(|| Participant::new(mcp_chat::limits::DEFAULT_DISPLAY_NAME.into()))
    }

    /// Appends an event to `to`'s inbox and wakes whoever watches it. Drops the oldest event
    /// when the inbox is full, counting it as missed if it was unread.
    fn deliver(&mut self, to: &ParticipantKey, room_id: &str, body: EventBody, capacity: usize) {
        let Some(p) = self.participants.get_mut(to) else {
            return;
        };
        let inbox = &mut p.inbox;
        inbox.last_seq += 1;
        if inbox.events.len() >= capacity
            && let Some(dropped) = inbox.events.pop_front()
            && dropped.seq > inbox.read_through
        {
            inbox.missed += 1;
            inbox.read_through = dropped.seq;
            self.events_dropped += 1;
        }
        inbox.events.push_back(ChatEvent {
            seq: inbox.last_seq,
            timestamp_ms: now_ms(),
            room_id: room_id.to_owned(),
            notice: None,
            body,
        });
        p.seq_tx.send_replace(inbox.last_seq);
    }

    fn is_blocked(&mut self, a: &ParticipantKey, b: &ParticipantKey) -> bool {
        let Some(list) = self.blocks.get_mut(a) else {
            return false;
        };
        list.retain(|(_, at)| at.elapsed() < BLOCK_TTL);
        list.iter().any(|(k, _)| k == b)
    }

    /// Drops expired blocks (and participants left with none), at most once per
    /// [`BLOCK_PURGE_INTERVAL`], so blocks of participants who never come back do not pile up.
    fn purge_expired_blocks(&mut self) {
        if self
            .blocks_purged
            .is_some_and(|at| at.elapsed() < BLOCK_PURGE_INTERVAL)
        {
            return;
        }
        self.blocks_purged = Some(Instant::now());
        self.blocks.retain(|_, list| {
            list.retain(|(_, at)| at.elapsed() < BLOCK_TTL);
            !list.is_empty()
        });
    }

    fn add_block(&mut self, a: &ParticipantKey, b: &ParticipantKey) {
        let list = self.blocks.entry(a.clone()).or_default();
        list.retain(|(k, at)| k != b && at.elapsed() < BLOCK_TTL);
        if list.len() >= MAX_BLOCKS_PER_PARTICIPANT {
            list.remove(0);
        }
        list.push((b.clone(), Instant::now()));
    }

    fn status(&self, who: &ParticipantKey) -> ChatStatus {
        let Some(p) = self.participants.get(who) else {
            return idle_status(mcp_chat::limits::DEFAULT_DISPLAY_NAME.into(), 0);
        };
        let unread = p
            .inbox
            .events
            .iter()
            .filter(|e| e.seq > p.inbox.read_through)
            .count() as u64;
        let mut status = idle_status(p.display_name.clone(), unread);
        match &p.place {
            Place::Idle => {}
            Place::Waiting(topic) => {
                status.state = ChatState::Waiting;
                status.topic = topic.clone();
                status.position = self
                    .queues
                    .get(topic)
                    .and_then(|q| q.iter().position(|k| k == who))
                    .map(|i| i as u32 + 1);
            }
            Place::InRoom(room_ref) => {
                status.state = ChatState::InRoom;
                status.room_id = Some(room_ref.id().to_owned());
                if let Some(room) = self.rooms.get(room_ref) {
                    status.room_kind = Some(room.kind);
                    status.topic = room.topic.clone();
                    if let Some(me) = room.members.iter().find(|m| &m.key == who) {
                        status.display_name = me.name.clone();
                    }
                    status.members = room
                        .members
                        .iter()
                        .filter(|m| &m.key != who)
                        .map(|m| m.name.clone())
                        .collect();
                    if status.members.len() == 1 {
                        status.partner_name = status.members.first().cloned();
                    }
                }
            }
        }
        status
    }

    /// Refuses a new chat while the participant is already in one.
    fn ensure_idle(&self, who: &ParticipantKey) -> Result<(), ToolError> {
        match self.participants.get(who).map(|p| &p.place) {
            None | Some(Place::Idle) => Ok(()),
            Some(Place::Waiting(_)) => Err(refusal::already_waiting()),
            Some(Place::InRoom(room)) => Err(refusal::already_in_room(room.id())),
        }
    }

    /// Takes the participant out of its queue or room, telling the room's others `reason`.
    /// Returns what was left and the members left behind.
    fn vacate(
        &mut self,
        who: &ParticipantKey,
        reason: DisconnectReason,
        capacity: usize,
    ) -> (LeftPlace, Option<String>, Vec<ParticipantKey>) {
        let Some(place) = self
            .participants
            .get_mut(who)
            .map(|p| std::mem::replace(&mut p.place, Place::Idle))
        else {
            return (LeftPlace::Nothing, None, Vec::new());
        };
        match place {
            Place::Idle => (LeftPlace::Nothing, None, Vec::new()),
            Place::Waiting(topic) => {
                if let Some(queue) = self.queues.get_mut(&topic) {
                    queue.retain(|k| k != who);
                    if queue.is_empty() {
                        self.queues.remove(&topic);
                    }
                }
                (LeftPlace::Queue, None, Vec::new())
            }
            Place::InRoom(room_ref) => {
                let room_id = room_ref.id().to_owned();
                let Some(room) = self.rooms.get_mut(&room_ref) else {
                    return (LeftPlace::Room, Some(room_id), Vec::new());
                };
                let leaver_name = room
                    .members
                    .iter()
                    .find(|m| &m.key == who)
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                room.members.retain(|m| &m.key != who);
                let others: Vec<ParticipantKey> =
                    room.members.iter().map(|m| m.key.clone()).collect();
                // A random match is a conversation between two: it ends when either side goes.
                // A private room stays open for whoever is still in it.
                let room_closed = room.kind == RoomKind::Random || others.is_empty();
                if room_closed {
                    self.rooms.remove(&room_ref);
                    for other in &others {
                        if let Some(p) = self.participants.get_mut(other) {
                            p.place = Place::Idle;
                            p.last_partners = vec![who.clone()];
                            p.last_room = Some(room_ref.clone());
                        }
                    }
                }
                if let Some(p) = self.participants.get_mut(who) {
                    p.last_partners = others.clone();
                    p.last_room = Some(room_ref.clone());
                }
                for other in &others {
                    self.deliver(
                        other,
                        &room_id,
                        EventBody::PartnerDisconnected {
                            partner_name: leaver_name.clone(),
                            reason,
                            room_closed,
                        },
                        capacity,
                    );
                }
                (LeftPlace::Room, Some(room_id), others)
            }
        }
    }

    fn enter_queue(
        &mut self,
        who: &ParticipantKey,
        topic: Option<String>,
        capacity: usize,
    ) -> ChatStatus {
        let mut partner = None;
        if let Some(queue) = self.queues.get(&topic) {
            let candidates: Vec<ParticipantKey> = queue.iter().cloned().collect();
            for candidate in candidates {
                if &candidate != who
                    && !self.moderation.in_cooldown(&candidate)
                    && !self.is_blocked(who, &candidate)
                    && !self.is_blocked(&candidate, who)
                {
                    partner = Some(candidate);
                    break;
                }
            }
        }
        let Some(partner) = partner else {
            self.queues
                .entry(topic.clone())
                .or_default()
                .push_back(who.clone());
            self.participant(who).place = Place::Waiting(topic);
            return self.status(who);
        };
        if let Some(queue) = self.queues.get_mut(&topic) {
            queue.retain(|k| k != &partner);
            if queue.is_empty() {
                self.queues.remove(&topic);
            }
        }
        let room_ref = RoomRef::Random(new_random_room_id());
        let partner_name = self.participant(&partner).display_name.clone();
        let my_name = unique_name(
            &self.participant(who).display_name,
            &[partner_name.as_str()],
        );
        let room = Room {
            kind: RoomKind::Random,
            topic: topic.clone(),
            members: vec![
                Member {
                    key: partner.clone(),
                    name: partner_name.clone(),
                    joined_after: 0,
                },
                Member {
                    key: who.clone(),
                    name: my_name.clone(),
                    joined_after: 0,
                },
            ],
            transcript: VecDeque::new(),
            last_message_seq: 0,
        };
        self.rooms.insert(room_ref.clone(), room);
        self.participant(&partner).place = Place::InRoom(room_ref.clone());
        self.participant(who).place = Place::InRoom(room_ref.clone());
        for (to, other) in [(&partner, &my_name), (who, &partner_name)] {
            self.deliver(
                to,
                room_ref.id(),
                EventBody::ChatroomFound {
                    room_kind: RoomKind::Random,
                    members: vec![other.clone()],
                    joined: None,
                    topic: topic.clone(),
                },
                capacity,
            );
        }
        self.status(who)
    }
}

/// The status of a participant in no queue and no room.
fn idle_status(display_name: String, unread: u64) -> ChatStatus {
    ChatStatus {
        state: ChatState::Idle,
        display_name,
        position: None,
        topic: None,
        room_id: None,
        room_kind: None,
        members: Vec::new(),
        partner_name: None,
        notice: None,
        unread,
    }
}

/// `name`, or `name (2)`, `name (3)`, ... so that members of one room are told apart.
fn unique_name(name: &str, taken: &[&str]) -> String {
    if !taken.contains(&name) {
        return name.to_owned();
    }
    (2..)
        .map(|n| format!("{name} ({n})"))
        .find(|candidate| !taken.contains(&candidate.as_str()))
        .unwrap_or_else(|| name.to_owned())
}

#[async_trait]
impl ChatStore for MemoryStore {
    async fn enter_queue(
        &self,
        who: &ParticipantKey,
        display_name: String,
        topic: Option<String>,
    ) -> Result<ChatStatus, ToolError> {
        let mut state = self.lock();
        state.ensure_idle(who)?;
        let p = state.participant(who);
        p.display_name = display_name;
        p.topic = topic.clone();
        Ok(state.enter_queue(who, topic, self.inbox_capacity))
    }

    async fn join_room(
        &self,
        who: &ParticipantKey,
        display_name: String,
        room_id: String,
    ) -> Result<ChatStatus, ToolError> {
        let mut state = self.lock();
        state.ensure_idle(who)?;
        let room_ref = RoomRef::Private(room_id.clone());
        let capacity = self.room_capacity;
        let room = state.rooms.entry(room_ref.clone()).or_insert_with(|| Room {
            kind: RoomKind::Private,
            topic: None,
            members: Vec::new(),
            transcript: VecDeque::new(),
            last_message_seq: 0,
        });
        if room.members.len() >= capacity {
            return Err(refusal::room_full(&room_id, capacity));
        }
        let taken: Vec<&str> = room.members.iter().map(|m| m.name.as_str()).collect();
        let my_name = unique_name(&display_name, &taken);
        let joined_after = room.last_message_seq;
        room.members.push(Member {
            key: who.clone(),
            name: my_name.clone(),
            joined_after,
        });
        let members = room.members.clone();
        let p = state.participant(who);
        p.display_name = display_name;
        p.place = Place::InRoom(room_ref.clone());
        if members.len() >= 2 {
            for member in &members {
                let others: Vec<String> = members
                    .iter()
                    .filter(|m| m.key != member.key)
                    .map(|m| m.name.clone())
                    .collect();
                let joined = (&member.key != who).then(|| my_name.clone());
                state.deliver(
                    &member.key,
                    &room_id,
                    EventBody::ChatroomFound {
                        room_kind: RoomKind::Private,
                        members: others,
                        joined,
                        topic: None,
                    },
                    self.inbox_capacity,
                );
            }
        }
        Ok(state.status(who))
    }

    async fn next_chat(&self, who: &ParticipantKey) -> Result<ChatStatus, ToolError> {
        let mut state = self.lock();
        if let Some(Place::Waiting(_)) = state.participants.get(who).map(|p| &p.place) {
            // Already looking for someone new: nothing to skip.
            return Ok(state.status(who));
        }
        state.vacate(who, DisconnectReason::Left, self.inbox_capacity);
        let topic = state.participant(who).topic.clone();
        Ok(state.enter_queue(who, topic, self.inbox_capacity))
    }

    async fn send_message(
        &self,
        who: &ParticipantKey,
        text: String,
    ) -> Result<SendMessageOutput, ToolError> {
        let mut state = self.lock();
        let Some(Place::InRoom(room_ref)) = state.participants.get(who).map(|p| p.place.clone())
        else {
            return Err(refusal::not_in_room_to_send());
        };
        let Some(room) = state.rooms.get_mut(&room_ref) else {
            return Err(refusal::room_closed());
        };
        let others: Vec<ParticipantKey> = room
            .members
            .iter()
            .filter(|m| &m.key != who)
            .map(|m| m.key.clone())
            .collect();
        if others.is_empty() {
            return Err(refusal::no_partner());
        }
        let from = room
            .members
            .iter()
            .find(|m| &m.key == who)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        room.last_message_seq += 1;
        let message_seq = room.last_message_seq;
        if room.transcript.len() >= TRANSCRIPT_CAPACITY {
            room.transcript.pop_front();
        }
        room.transcript.push_back(TranscriptEntry {
            message_seq,
            timestamp_ms: now_ms(),
            from: who.clone(),
            from_name: from.clone(),
            text: text.clone(),
        });
        for other in &others {
            state.deliver(
                other,
                room_ref.id(),
                EventBody::MessageReceived {
                    from: from.clone(),
                    text: text.clone(),
                    message_seq,
                },
                self.inbox_capacity,
            );
        }
        state.messages_relayed += 1;
        Ok(SendMessageOutput {
            room_id: room_ref.id().to_owned(),
            message_seq,
            delivered_to: others.len() as u32,
        })
    }

    async fn leave(&self, who: &ParticipantKey, block: bool) -> Result<LeaveChatOutput, ToolError> {
        let mut state = self.lock();
        let (left, room_id, others) =
            state.vacate(who, DisconnectReason::Left, self.inbox_capacity);
        let mut blocked = 0;
        if block {
            // Also block a stranger who already left (the usual case: an insult, then gone).
            let targets = match others.is_empty() {
                true => state
                    .participants
                    .get(who)
                    .map(|p| p.last_partners.clone())
                    .unwrap_or_default(),
                false => others,
            };
            for other in &targets {
                state.add_block(who, other);
                state.add_block(other, who);
                blocked += 1;
            }
        }
        Ok(LeaveChatOutput {
            left,
            room_id,
            blocked,
            status: state.status(who),
        })
    }

    async fn status(&self, who: &ParticipantKey) -> Result<ChatStatus, ToolError> {
        Ok(self.lock().status(who))
    }

    async fn read_unread(&self, who: &ParticipantKey, max: usize) -> Result<ReadBatch, ToolError> {
        let mut state = self.lock();
        let Some(p) = state.participants.get_mut(who) else {
            return Ok(ReadBatch {
                events: Vec::new(),
                missed: 0,
                more: false,
            });
        };
        let inbox = &mut p.inbox;
        let read_through = inbox.read_through;
        let events: Vec<ChatEvent> = inbox
            .events
            .iter()
            .filter(|e| e.seq > read_through)
            .take(max)
            .cloned()
            .collect();
        if let Some(last) = events.last() {
            inbox.read_through = last.seq;
        }
        let more = inbox.last_seq > inbox.read_through;
        Ok(ReadBatch {
            events,
            missed: std::mem::take(&mut inbox.missed),
            more,
        })
    }

    async fn set_read_cursor(&self, who: &ParticipantKey, seq: u64) -> Result<(), ToolError> {
        let mut state = self.lock();
        if let Some(p) = state.participants.get_mut(who) {
            p.inbox.read_through = seq.min(p.inbox.last_seq);
        }
        Ok(())
    }

    async fn mark_read_through(&self, who: &ParticipantKey, seq: u64) -> Result<(), ToolError> {
        let mut state = self.lock();
        if let Some(p) = state.participants.get_mut(who) {
            let inbox = &mut p.inbox;
            inbox.read_through = inbox.read_through.max(seq.min(inbox.last_seq));
        }
        Ok(())
    }

    async fn events_after(
        &self,
        who: &ParticipantKey,
        seq: u64,
        max: usize,
    ) -> Result<Vec<ChatEvent>, ToolError> {
        let state = self.lock();
        Ok(state
            .participants
            .get(who)
            .map(|p| {
                p.inbox
                    .events
                    .iter()
                    .filter(|e| e.seq > seq)
                    .take(max)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn resume_point(
        &self,
        who: &ParticipantKey,
        claimed: Option<u64>,
    ) -> Result<u64, ToolError> {
        let state = self.lock();
        let Some(inbox) = state.participants.get(who).map(|p| &p.inbox) else {
            return Ok(0);
        };
        // A claim above the newest event comes from an earlier life of this participant (a
        // relay that restarted with empty memory): resume where the pushes went instead.
        Ok(match claimed {
            Some(seq) if seq <= inbox.last_seq => seq,
            _ => inbox.pushed_through,
        })
    }

    async fn mark_pushed(&self, who: &ParticipantKey, seq: u64) -> Result<(), ToolError> {
        if let Some(p) = self.lock().participants.get_mut(who) {
            p.inbox.pushed_through = p.inbox.pushed_through.max(seq.min(p.inbox.last_seq));
        }
        Ok(())
    }

    async fn transcript(
        &self,
        who: &ParticipantKey,
        since: Option<u64>,
        limit: usize,
    ) -> Result<GetMessagesOutput, ToolError> {
        let state = self.lock();
        let Some(Place::InRoom(room_ref)) = state.participants.get(who).map(|p| &p.place) else {
            return Err(refusal::no_transcript());
        };
        let Some(room) = state.rooms.get(room_ref) else {
            return Err(refusal::room_closed());
        };
        let joined_after = room
            .members
            .iter()
            .find(|m| &m.key == who)
            .map(|m| m.joined_after)
            .unwrap_or(room.last_message_seq);
        let page = transcript_page(
            room.transcript.iter().map(|m| (m.message_seq, m)),
            since,
            limit,
            joined_after,
        );
        Ok(GetMessagesOutput {
            room_id: room_ref.id().to_owned(),
            messages: page
                .items
                .into_iter()
                .map(|m| TranscriptMessage {
                    message_seq: m.message_seq,
                    timestamp_ms: m.timestamp_ms,
                    from: m.from_name.clone(),
                    from_you: &m.from == who,
                    notice: None,
                    text: m.text.clone(),
                })
                .collect(),
            latest_message_seq: room.last_message_seq,
            truncated: page.truncated,
        })
    }

    fn watch(&self, who: &ParticipantKey) -> watch::Receiver<u64> {
        self.lock().participant(who).seq_tx.subscribe()
    }

    async fn end(&self, who: &ParticipantKey, reason: DisconnectReason) -> Result<(), ToolError> {
        let mut state = self.lock();
        state.vacate(who, reason, self.inbox_capacity);
        // Dropping the participant drops its watch sender, which wakes and ends every waiter.
        state.participants.remove(who);
        state.purge_expired_blocks();
        if !who.is_identity() {
            // A session-keyed participant can never come back, so its blocks are moot.
            if let Some(list) = state.blocks.remove(who) {
                for (other, _) in list {
                    if let Some(theirs) = state.blocks.get_mut(&other) {
                        theirs.retain(|(k, _)| k != who);
                    }
                }
            }
        }
        Ok(())
    }

    async fn close_all_rooms(&self, reason: DisconnectReason) -> Result<(), ToolError> {
        let mut state = self.lock();
        let rooms: Vec<(RoomRef, Vec<Member>)> = state
            .rooms
            .drain()
            .map(|(room_ref, room)| (room_ref, room.members))
            .collect();
        for (room_ref, members) in rooms {
            // Every member hears about every other member: nobody is left in a room.
            for member in &members {
                for other in members.iter().filter(|o| o.key != member.key) {
                    state.deliver(
                        &member.key,
                        room_ref.id(),
                        EventBody::PartnerDisconnected {
                            partner_name: other.name.clone(),
                            reason,
                            room_closed: true,
                        },
                        self.inbox_capacity,
                    );
                }
            }
        }
        state.queues.clear();
        for p in state.participants.values_mut() {
            p.place = Place::Idle;
        }
        Ok(())
    }

    async fn report(
        &self,
        who: &ParticipantKey,
        filing: ReportFiling,
    ) -> Result<StoredReport, ToolError> {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(me) = state.participants.get(who) else {
            return Err(refusal::nothing_to_report());
        };
        let evidence_max = mcp_chat::limits::REPORT_EVIDENCE_MESSAGES;
        let in_room = match &me.place {
            Place::InRoom(room_ref) => state.rooms.get(room_ref).map(|room| (room_ref, room)),
            _ => None,
        };
        let (target, target_name, room_id, evidence) = match in_room {
            Some((room_ref, room)) => {
                let joined_after = room
                    .members
                    .iter()
                    .find(|m| &m.key == who)
                    .map_or(0, |m| m.joined_after);
                let others: Vec<&Member> = room.members.iter().filter(|m| &m.key != who).collect();
                let target = match (&filing.member, others.as_slice()) {
                    (Some(name), _) => others
                        .iter()
                        .find(|m| &m.name == name)
                        .ok_or_else(refusal::no_such_member)?,
                    (None, [only]) => only,
                    (None, []) => return Err(refusal::nothing_to_report()),
                    (None, _) => return Err(refusal::which_member()),
                };
                // Only what the reporter could read itself.
                let readable: Vec<&TranscriptEntry> = room
                    .transcript
                    .iter()
                    .filter(|m| m.message_seq > joined_after)
                    .collect();
                let skip = readable.len().saturating_sub(evidence_max);
                let evidence = readable[skip..]
                    .iter()
                    .map(|m| EvidenceEntry {
                        seq: m.message_seq,
                        timestamp_ms: m.timestamp_ms,
                        from: m.from.as_str().to_owned(),
                        from_name: m.from_name.clone(),
                        text: m.text.clone(),
                    })
                    .collect();
                (
                    target.key.clone(),
                    target.name.clone(),
                    room_ref.id().to_owned(),
                    evidence,
                )
            }
            None => {
                // The stranger already left (the usual case: an insult, then gone): the room is
                // closed, so the evidence is what the reporter received from it.
                let ([target], Some(room_ref)) = (me.last_partners.as_slice(), &me.last_room)
                else {
                    return Err(refusal::nothing_to_report());
                };
                let room_id = room_ref.id();
                let sender = match room_ref {
                    RoomRef::Random(_) => target.as_str().to_owned(),
                    RoomRef::Private(_) => String::new(),
                };
                let mut evidence: Vec<EvidenceEntry> = me
                    .inbox
                    .events
                    .iter()
                    .rev()
                    .filter(|e| e.room_id == room_id)
                    .filter_map(|e| match &e.body {
                        EventBody::MessageReceived {
                            from,
                            text,
                            message_seq,
                        } => Some(EvidenceEntry {
                            seq: *message_seq,
                            timestamp_ms: e.timestamp_ms,
                            from: sender.clone(),
                            from_name: from.clone(),
                            text: text.clone(),
                        }),
                        _ => None,
                    })
                    .take(evidence_max)
                    .collect();
                evidence.reverse();
                let name = evidence
                    .last()
                    .map(|e| e.from_name.clone())
                    .unwrap_or_default();
                (target.clone(), name, room_id.to_owned(), evidence)
            }
        };
        let report = StoredReport {
            id: filing.id,
            created_ms: now_ms(),
            reason: filing.reason.as_str().to_owned(),
            note: filing.note,
            room_id,
            reporter: who.as_str().to_owned(),
            reported: target.as_str().to_owned(),
            reported_name: target_name,
            reported_address: state
                .participants
                .get(&target)
                .and_then(|p| p.address.clone()),
            evidence,
        };
        let now = tokio::time::Instant::now();
        let moderation = &mut state.moderation;
        moderation.purge();
        moderation
            .reports
            .push_back((now + self.policy.report_retention, report.clone()));
        // The cooldown counts distinct reporters within the window.
        let window = self.policy.cooldown_window;
        moderation
            .reported_by
            .retain(|_, list| list.iter().any(|(_, at)| now.duration_since(*at) < window));
        let list = moderation.reported_by.entry(target.clone()).or_default();
        list.retain(|(k, at)| k != who && now.duration_since(*at) < window);
        list.push((who.clone(), now));
        let reporters = list.len();
        if self.policy.cooldown_reports > 0
            && reporters >= self.policy.cooldown_reports as usize
            && !moderation.in_cooldown(&target)
        {
            let period = self.policy.cooldown_period;
            moderation
                .cooldowns
                .insert(target, (now + period, now_ms() + period.as_millis() as u64));
        }
        Ok(report)
    }

    async fn access(
        &self,
        who: &ParticipantKey,
        pseudonym: &str,
        address: Option<&str>,
    ) -> Result<Access, ToolError> {
        let mut state = self.lock();
        if let Some(p) = state.participants.get_mut(who)
            && let Some(address) = address
        {
            p.address = Some(address.to_owned());
        }
        let moderation = &mut state.moderation;
        moderation.purge();
        let ban = moderation
            .by_participant
            .get(pseudonym)
            .or_else(|| address.and_then(|a| moderation.by_address.get(a)))
            .and_then(|id| moderation.bans.get(id));
        if let Some((_, ban)) = ban {
            return Ok(Access::Banned {
                until_ms: ban.until_ms,
            });
        }
        Ok(match moderation.cooldowns.get(who) {
            Some((_, until_ms)) => Access::MatchingPaused {
                until_ms: *until_ms,
            },
            None => Access::Open,
        })
    }

    async fn reports(&self, limit: usize) -> Result<Vec<StoredReport>, ToolError> {
        let mut state = self.lock();
        state.moderation.purge();
        Ok(state
            .moderation
            .reports
            .iter()
            .rev()
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn report_by_id(&self, id: &str) -> Result<Option<StoredReport>, ToolError> {
        let mut state = self.lock();
        state.moderation.purge();
        Ok(state
            .moderation
            .reports
            .iter()
            .find(|(_, r)| r.id == id)
            .map(|(_, r)| r.clone()))
    }

    async fn ban(&self, request: BanRequest) -> Result<Result<StoredBan, BanRefusal>, ToolError> {
        let mut state = self.lock();
        let key = request.key.clone().or_else(|| {
            state
                .participants
                .keys()
                .find(|k| moderation::pseudonym(k) == request.participant)
                .cloned()
        });
        let address = request.address.clone().or_else(|| {
            key.as_ref()
                .and_then(|k| state.participants.get(k))
                .and_then(|p| p.address.clone())
        });
        if request.ban_address && address.is_none() {
            return Ok(Err(BanRefusal::NoAddress));
        }
        let ban = StoredBan {
            id: request.id,
            participant: request.participant,
            address: address.filter(|_| request.ban_address),
            created_ms: now_ms(),
            until_ms: request.duration.map(|d| now_ms() + d.as_millis() as u64),
            report: request.report,
        };
        let moderation = &mut state.moderation;
        moderation.purge();
        if let Some(old) = moderation.by_participant.get(&ban.participant).cloned() {
            moderation.remove_ban(&old);
        }
        moderation
            .by_participant
            .insert(ban.participant.clone(), ban.id.clone());
        if let Some(address) = &ban.address {
            moderation
                .by_address
                .insert(address.clone(), ban.id.clone());
        }
        let until = request.duration.map(|d| tokio::time::Instant::now() + d);
        moderation.bans.insert(ban.id.clone(), (until, ban.clone()));
        if let Some(key) = key {
            state.vacate(&key, DisconnectReason::Left, self.inbox_capacity);
        }
        Ok(Ok(ban))
    }

    async fn bans(&self) -> Result<Vec<StoredBan>, ToolError> {
        let mut state = self.lock();
        state.moderation.purge();
        let mut bans: Vec<StoredBan> = state
            .moderation
            .bans
            .values()
            .map(|(_, b)| b.clone())
            .collect();
        bans.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.id.cmp(&b.id)));
        Ok(bans)
    }

    async fn unban(&self, id: &str) -> Result<bool, ToolError> {
        let mut state = self.lock();
        state.moderation.purge();
        Ok(state.moderation.remove_ban(id))
    }

    async fn kick(&self, pseudonym: &str) -> Result<bool, ToolError> {
        let mut state = self.lock();
        let Some(key) = state
            .participants
            .keys()
            .find(|k| moderation::pseudonym(k) == pseudonym)
            .cloned()
        else {
            return Ok(false);
        };
        let (left, _, _) = state.vacate(&key, DisconnectReason::Left, self.inbox_capacity);
        Ok(left != LeftPlace::Nothing)
    }

    async fn moderation_counts(&self) -> Result<ModerationCounts, ToolError> {
        let mut state = self.lock();
        let moderation = &mut state.moderation;
        moderation.purge();
        let mut cooldowns: Vec<(ParticipantKey, u64)> = moderation
            .cooldowns
            .iter()
            .map(|(k, (_, until_ms))| (k.clone(), *until_ms))
            .collect();
        cooldowns.sort_by_key(|(_, until)| *until);
        Ok(ModerationCounts {
            reports: moderation.reports.len() as u64,
            bans: moderation.bans.len() as u64,
            cooldowns,
        })
    }

    async fn counts(&self) -> Result<StoreCounts, ToolError> {
        let state = self.lock();
        Ok(StoreCounts {
            participants: state.participants.len() as u64,
            waiting: state.queues.values().map(|q| q.len() as u64).sum(),
            rooms: state.rooms.len() as u64,
            messages_relayed: state.messages_relayed,
            events_dropped: state.events_dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> ParticipantKey {
        ParticipantKey::for_session(n)
    }

    /// The default retention, waited for in paused time: a report lives 30 days, then goes.
    #[tokio::test(start_paused = true)]
    async fn reports_go_after_the_default_retention() {
        let store = MemoryStore::new(16, 2);
        let (a, b) = (key("a"), key("b"));
        store.enter_queue(&a, "A".into(), None).await.unwrap();
        store.enter_queue(&b, "B".into(), None).await.unwrap();
        store.send_message(&b, "evidence".into()).await.unwrap();
        let filing = ReportFiling {
            id: moderation::new_report_id(),
            reason: mcp_chat::tools::ReportReason::Spam,
            note: None,
            member: None,
        };
        let report = store.report(&a, filing).await.unwrap();
        let day = Duration::from_secs(24 * 60 * 60);
        tokio::time::advance(29 * day).await;
        assert_eq!(store.reports(10).await.unwrap(), vec![report.clone()]);
        tokio::time::advance(day).await;
        assert!(store.reports(10).await.unwrap().is_empty());
        assert_eq!(store.report_by_id(&report.id).await.unwrap(), None);
    }
}
