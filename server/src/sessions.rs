//! The MCP sessions this node holds, and how we tell that a participant's client is gone.
//!
//! A session is one small [`SessionEntry`] in [`SessionRegistry`]: no task, no channel, no
//! replay cache of its own (see `mcp` for why). Its standalone GET stream reads the
//! participant's inbox directly; a tool call runs as a task of its own only while it runs.
//!
//! Liveness is decided here:
//!
//! - a session is **lost** when nothing is in flight and either its GET stream closed after its
//!   last request (the client went away without a DELETE, as mcp-remote does), or it sent no
//!   request for the idle timeout;
//! - a participant whose session is lost, or whose session closed without a DELETE, keeps its
//!   seat for the grace period: coming back (same session, or a new one with the same identity
//!   token) cancels it; otherwise the sweep ends the participant and its partners hear `timeout`;
//! - a DELETE ends the participant at once (`disconnected`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use rmcp::model::RequestId;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::address::AddressSlot;
use crate::rate_limit::{Rate, TokenBucket};
use crate::store::ParticipantKey;

/// A session's id, as sent in `Mcp-Session-Id` (a random UUID).
pub type SessionId = Arc<str>;

/// Minimum MCP logging level rank (debug = 0 ... emergency = 7) a session asked for.
pub type LogRank = u8;

/// Rank of `info`, the level chat events are logged at.
pub const INFO_RANK: LogRank = 1;

/// Answers of tool calls kept per session for a client whose POST stream was cut to fetch with
/// `Last-Event-ID` (SEP-1699): a write into a connection the client already dropped succeeds,
/// so the relay cannot tell a delivered answer from a lost one. A client resumes at once, so a
/// few, for a little while, suffice.
const PARKED_ANSWERS: usize = 4;
/// How long an answer is kept for a resume (the sweep forgets older ones).
pub const PARKED_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// Liveness bookkeeping for every session of this node.
#[derive(Debug)]
pub struct SessionRegistry {
    state: Mutex<RegistryState>,
    grace_period: Duration,
    idle_timeout: Duration,
    /// POSTs a session may make per second, sustained, and in a burst (see [`admit_post`]).
    ///
    /// [`admit_post`]: Self::admit_post
    post_rate: Rate,
}

#[derive(Debug, Default)]
struct RegistryState {
    sessions: HashMap<SessionId, SessionEntry>,
    participants: HashMap<ParticipantKey, Presence>,
}

/// Everything a node keeps for one session.
#[derive(Debug)]
struct SessionEntry {
    participant: Option<ParticipantKey>,
    last_request: Instant,
    in_flight: u32,
    open_streams: u32,
    stream_closed_at: Option<Instant>,
    lost_since: Option<Instant>,
    log_rank: LogRank,
    /// Whether events are also pushed as logging notifications (off for clients that render
    /// the custom notifications themselves: `mcp-chat/events`).
    mirror_events: bool,
    /// The client announced the MCP Apps extension: it sees the pane's tools and view.
    renders_ui: bool,
    /// Which standalone stream is the session's: a newer GET retires the older one.
    stream_generation: u64,
    /// Tool calls running, by JSON-RPC id (two at once is the common case: a wait and a send).
    calls: Vec<RunningCall>,
    /// The last answers of tool calls, with when they were given (see [`PARKED_ANSWERS`]).
    parked: VecDeque<(u32, Bytes, Instant)>,
    /// Numbers the POST streams of tool calls (their SSE event ids are `<stream>/<n>`).
    next_stream: u32,
    /// Wakes whatever stream of this session waits on a change: a new current session for its
    /// participant, a newer GET, a parked answer, the session's end.
    wake: Arc<Notify>,
    /// The session's POST budget.
    post_budget: TokenBucket,
    /// The session counted against its client's address; given back when the entry goes.
    address_slot: Option<AddressSlot>,
}

#[derive(Debug)]
struct RunningCall {
    id: RequestId,
    stream: u32,
    cancel: CancellationToken,
}

#[derive(Debug, Default)]
struct Presence {
    session: Option<SessionId>,
    /// Set while the participant has no session (it closed without a DELETE).
    detached_since: Option<Instant>,
}

/// What the registry learnt when a session closed.
#[derive(Debug, PartialEq)]
pub enum SessionEnd {
    /// The client ended the session (DELETE): end its participant now.
    Explicit(ParticipantKey),
    /// The session is gone without a DELETE: its participant's grace period runs.
    Lost,
}

/// What a sweep found.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Participants whose grace period ran out: end them with `timeout`.
    pub expired: Vec<ParticipantKey>,
    /// Sessions to close (lost for longer than the grace period).
    pub close: Vec<SessionId>,
}

/// What a standalone stream should do now (see [`SessionRegistry::stream_view`]).
#[derive(Debug, PartialEq)]
pub enum StreamView {
    /// The session is gone, or a newer GET took its place: end the stream.
    End,
    /// Nothing to push to this session now (no participant yet, or another session of its
    /// participant is the current one): wait for a change.
    Idle,
    /// Push this participant's events; `mirror` says whether as logging notifications too.
    Push {
        /// Whose inbox to follow.
        who: ParticipantKey,
        /// Also send each event as `notifications/message`.
        mirror: bool,
    },
}

/// Why a tool call could not start.
#[derive(Debug, PartialEq)]
pub enum CallRefusal {
    /// The session is gone.
    UnknownSession,
    /// A call with the same JSON-RPC id is still running in this session.
    DuplicateId,
}

/// Where the answer to a cut POST stream is (see [`SessionRegistry::resume_answer`]).
#[derive(Debug, PartialEq)]
pub enum ResumedAnswer {
    /// Here it is (handed over once).
    Ready(Bytes),
    /// Its call is still running: wait for a wake.
    Running,
    /// Unknown: delivered already, too old, or never ours.
    Gone,
}

fn new_entry(post_rate: Rate, renders_ui: bool, mirror_events: bool) -> SessionEntry {
    SessionEntry {
        participant: None,
        last_request: Instant::now(),
        in_flight: 0,
        open_streams: 0,
        stream_closed_at: None,
        lost_since: None,
        log_rank: INFO_RANK,
        mirror_events,
        renders_ui,
        stream_generation: 0,
        calls: Vec::new(),
        parked: VecDeque::new(),
        next_stream: 0,
        wake: Arc::new(Notify::new()),
        post_budget: TokenBucket::full(post_rate, Instant::now()),
        address_slot: None,
    }
}

impl SessionRegistry {
    /// A registry applying the given grace period and idle timeout, letting each session make
    /// `post_rate` POSTs per second with bursts of `post_burst`.
    pub fn new(
        grace_period: Duration,
        idle_timeout: Duration,
        post_rate: f64,
        post_burst: f64,
    ) -> Self {
        Self {
            state: Mutex::new(RegistryState::default()),
            grace_period,
            idle_timeout,
            post_rate: Rate::new(post_rate, post_burst),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for a client that just sent `initialize` and returns its new id.
    /// `renders_ui`: it announced MCP Apps; `mirror_events`: it wants chat events as logging
    /// notifications too.
    pub fn create(&self, renders_ui: bool, mirror_events: bool) -> SessionId {
        let id: SessionId = uuid::Uuid::new_v4().simple().to_string().into();
        let entry = new_entry(self.post_rate, renders_ui, mirror_events);
        self.lock().sessions.insert(id.clone(), entry);
        id
    }

    /// Counts a POST against its session's budget. Checked before anything reads the body, so
    /// a client flooding the relay costs it little. `Err(wait)` when the session made too many
    /// lately. (Unknown sessions pass: they are answered 404.)
    pub fn admit_post(&self, id: &str) -> Result<(), Duration> {
        let mut state = self.lock();
        let Some(entry) = state.sessions.get_mut(id) else {
            return Ok(());
        };
        entry.post_budget.take(self.post_rate, Instant::now())
    }

    /// Counts the session against its client's address for as long as it lives (dropped at
    /// once if the session is already gone).
    pub fn hold_address_slot(&self, id: &str, slot: AddressSlot) {
        let mut state = self.lock();
        if let Some(entry) = state.sessions.get_mut(id) {
            entry.address_slot = Some(slot);
        }
    }

    /// Whether this node holds a session with that id.
    pub fn has_session(&self, id: &str) -> bool {
        self.lock().sessions.contains_key(id)
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Records a request on a session (any POST, GET or DELETE carrying its id).
    pub fn touch(&self, id: &str) {
        if let Some(entry) = self.lock().sessions.get_mut(id) {
            entry.last_request = Instant::now();
        }
    }

    /// The participant a session speaks for, if registered.
    pub fn participant_of(&self, id: &str) -> Option<ParticipantKey> {
        self.lock()
            .sessions
            .get(id)
            .and_then(|e| e.participant.clone())
    }

    /// Whether the session's client renders MCP Apps (false for unknown sessions).
    pub fn renders_ui(&self, id: &str) -> bool {
        self.lock().sessions.get(id).is_some_and(|e| e.renders_ui)
    }

    /// Binds a session to its participant and makes it the one that receives the participant's
    /// pushes. Nothing happens when the session is unknown, or bound to another participant (a
    /// session's identity never changes).
    ///
    /// When another session held the participant (a client that came back with a new session,
    /// or two clients sharing one identity), that session's stream stops pushing; it keeps its
    /// participant and takes it back with its next call.
    pub fn attach(&self, id: &SessionId, who: &ParticipantKey) {
        let mut state = self.lock();
        let RegistryState {
            sessions,
            participants,
        } = &mut *state;
        let Some(entry) = sessions.get_mut(id) else {
            return;
        };
        if entry.participant.as_ref().is_some_and(|p| p != who) {
            return;
        }
        let presence = participants.entry(who.clone()).or_default();
        if entry.participant.is_some() && presence.session.as_ref() == Some(id) {
            return;
        }
        entry.participant = Some(who.clone());
        entry.wake.notify_waiters();
        let previous = presence.session.replace(id.clone());
        presence.detached_since = None;
        if let Some(previous) = previous.filter(|p| p != id)
            && let Some(old) = sessions.get(&previous)
        {
            old.wake.notify_waiters();
        }
    }

    /// True while `id` is the session receiving `who`'s pushes.
    pub fn is_current(&self, id: &SessionId, who: &ParticipantKey) -> bool {
        self.lock()
            .participants
            .get(who)
            .is_some_and(|p| p.session.as_ref() == Some(id))
    }

    /// Counts a request in flight on the session until the guard drops. A session with a call
    /// in flight (a blocked `wait_for_message`, say) is alive. `None` when the session is
    /// unknown.
    pub fn begin_call(self: &Arc<Self>, id: &SessionId) -> Option<CallGuard> {
        let entry_known = self
            .lock()
            .sessions
            .get_mut(id)
            .map(|entry| {
                entry.in_flight += 1;
                entry.last_request = Instant::now();
            })
            .is_some();
        entry_known.then(|| CallGuard {
            registry: self.clone(),
            id: id.clone(),
        })
    }

    /// Registers a tool call about to run under JSON-RPC id `request`, cancelled by `cancel`
    /// (`notifications/cancelled`, the session's end). Returns the number of its POST stream.
    pub fn begin_tool_call(
        &self,
        id: &SessionId,
        request: &RequestId,
        cancel: CancellationToken,
    ) -> Result<u32, CallRefusal> {
        let mut state = self.lock();
        let entry = state
            .sessions
            .get_mut(id)
            .ok_or(CallRefusal::UnknownSession)?;
        if entry.calls.iter().any(|c| &c.id == request) {
            return Err(CallRefusal::DuplicateId);
        }
        let stream = entry.next_stream;
        entry.next_stream = entry.next_stream.wrapping_add(1);
        entry.calls.push(RunningCall {
            id: request.clone(),
            stream,
            cancel,
        });
        Ok(stream)
    }

    /// A tool call finished with `answer`: kept for [`PARKED_FOR`] (and among the last
    /// [`PARKED_ANSWERS`]) for a client whose stream was cut to fetch with `Last-Event-ID`.
    pub fn end_tool_call(&self, id: &SessionId, stream: u32, answer: Bytes) {
        let mut state = self.lock();
        let Some(entry) = state.sessions.get_mut(id) else {
            return;
        };
        entry.calls.retain(|c| c.stream != stream);
        if entry.parked.len() == PARKED_ANSWERS {
            entry.parked.pop_front();
        }
        entry.parked.push_back((stream, answer, Instant::now()));
        entry.wake.notify_waiters();
    }

    /// The host cancelled request `request` (`notifications/cancelled`).
    pub fn cancel_tool_call(&self, id: &str, request: &RequestId) {
        if let Some(entry) = self.lock().sessions.get(id) {
            for call in entry.calls.iter().filter(|c| &c.id == request) {
                call.cancel.cancel();
            }
        }
    }

    /// The answer of POST stream `stream`, for a client resuming it with `Last-Event-ID`.
    pub fn resume_answer(&self, id: &str, stream: u32) -> ResumedAnswer {
        let mut state = self.lock();
        let Some(entry) = state.sessions.get_mut(id) else {
            return ResumedAnswer::Gone;
        };
        if let Some(at) = entry.parked.iter().position(|(s, ..)| *s == stream)
            && let Some((_, answer, _)) = entry.parked.remove(at)
        {
            return ResumedAnswer::Ready(answer);
        }
        if entry.calls.iter().any(|c| c.stream == stream) {
            ResumedAnswer::Running
        } else {
            ResumedAnswer::Gone
        }
    }

    /// The signal that wakes the session's streams on a change (`None` for unknown sessions).
    pub fn wake_signal(&self, id: &str) -> Option<Arc<Notify>> {
        self.lock().sessions.get(id).map(|e| e.wake.clone())
    }

    /// Opens the session's standalone stream, retiring the one it had (a client opens one per
    /// session; a second means the first died without the relay noticing yet: its connection
    /// was cut and no write has failed). Returns the stream's generation and a guard that
    /// counts it open until dropped; `None` for unknown sessions.
    pub fn open_stream(self: &Arc<Self>, id: &SessionId) -> Option<(u64, StreamGuard)> {
        let mut state = self.lock();
        let entry = state.sessions.get_mut(id)?;
        entry.stream_generation += 1;
        entry.open_streams += 1;
        entry.wake.notify_waiters();
        Some((
            entry.stream_generation,
            StreamGuard {
                registry: self.clone(),
                id: id.clone(),
            },
        ))
    }

    /// What the standalone stream of generation `generation` should do now.
    pub fn stream_view(&self, id: &SessionId, generation: u64) -> StreamView {
        let state = self.lock();
        let Some(entry) = state.sessions.get(id) else {
            return StreamView::End;
        };
        if entry.stream_generation != generation {
            return StreamView::End;
        }
        match &entry.participant {
            Some(who)
                if state
                    .participants
                    .get(who)
                    .is_some_and(|p| p.session.as_ref() == Some(id)) =>
            {
                StreamView::Push {
                    who: who.clone(),
                    mirror: entry.mirror_events && entry.log_rank <= INFO_RANK,
                }
            }
            _ => StreamView::Idle,
        }
    }

    /// Sets the minimum logging level rank of a session (`logging/setLevel`); false when the
    /// session is unknown.
    pub fn set_log_rank(&self, id: &str, rank: LogRank) -> bool {
        self.lock()
            .sessions
            .get_mut(id)
            .map(|entry| entry.log_rank = rank)
            .is_some()
    }

    /// Forgets a session, cancels its calls, ends its streams, and says what that means for
    /// its participant. `explicit`: the client asked (DELETE). `None` when it was not open.
    pub fn close(&self, id: &str, explicit: bool) -> Option<SessionEnd> {
        let mut state = self.lock();
        let entry = state.sessions.remove(id)?;
        for call in &entry.calls {
            call.cancel.cancel();
        }
        entry.wake.notify_waiters();
        let who = entry.participant?;
        let presence = state.participants.get_mut(&who)?;
        if presence.session.as_deref() != Some(id) {
            return None;
        }
        presence.session = None;
        if explicit {
            state.participants.remove(&who);
            Some(SessionEnd::Explicit(who))
        } else {
            presence.detached_since = Some(entry.lost_since.unwrap_or_else(Instant::now));
            Some(SessionEnd::Lost)
        }
    }

    /// Every open session's id (to close them at shutdown).
    pub fn session_ids(&self) -> Vec<SessionId> {
        self.lock().sessions.keys().cloned().collect()
    }

    /// The participants this node serves right now: bound to a session that is not lost. (A
    /// shared store hears about them in heartbeats; one that stops being vouched for runs out
    /// of grace there.)
    pub fn live_participants(&self) -> Vec<ParticipantKey> {
        let state = self.lock();
        state
            .participants
            .iter()
            .filter(|(_, presence)| {
                presence
                    .session
                    .as_ref()
                    .and_then(|id| state.sessions.get(id))
                    .is_some_and(|entry| entry.lost_since.is_none())
            })
            .map(|(who, _)| who.clone())
            .collect()
    }

    /// Re-evaluates liveness at `now`: which participants ran out of grace, which sessions to
    /// close.
    pub fn sweep(&self, now: Instant) -> Sweep {
        let mut state = self.lock();
        let mut sweep = Sweep::default();
        for (id, entry) in state.sessions.iter_mut() {
            while entry
                .parked
                .front()
                .is_some_and(|(.., at)| now.saturating_duration_since(*at) >= PARKED_FOR)
            {
                entry.parked.pop_front();
            }
            let stream_gone = entry.open_streams == 0
                && entry
                    .stream_closed_at
                    .is_some_and(|closed| closed >= entry.last_request);
            let silent = now.saturating_duration_since(entry.last_request) >= self.idle_timeout;
            if entry.in_flight == 0 && (stream_gone || silent) {
                let since = *entry.lost_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= self.grace_period {
                    sweep.close.push(id.clone());
                }
            } else {
                entry.lost_since = None;
            }
        }
        let RegistryState {
            sessions,
            participants,
        } = &mut *state;
        for (who, presence) in participants.iter() {
            let lost_since = match &presence.session {
                Some(id) => sessions.get(id).and_then(|e| e.lost_since),
                None => presence.detached_since,
            };
            if lost_since.is_some_and(|t| now.saturating_duration_since(t) >= self.grace_period) {
                sweep.expired.push(who.clone());
            }
        }
        for who in &sweep.expired {
            if let Some(presence) = participants.remove(who)
                && let Some(id) = presence.session
                && let Some(entry) = sessions.get_mut(&id)
            {
                entry.participant = None;
            }
        }
        sweep
    }
}

/// Keeps a session counted as busy while a request is handled.
#[derive(Debug)]
pub struct CallGuard {
    registry: Arc<SessionRegistry>,
    id: SessionId,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(entry) = self.registry.lock().sessions.get_mut(&self.id) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
    }
}

/// Keeps a standalone GET stream counted as open until the stream is dropped (the client
/// disconnected or the session ended).
#[derive(Debug)]
pub struct StreamGuard {
    registry: Arc<SessionRegistry>,
    id: SessionId,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(entry) = self.registry.lock().sessions.get_mut(&self.id) {
            entry.open_streams = entry.open_streams.saturating_sub(1);
            if entry.open_streams == 0 {
                entry.stream_closed_at = Some(Instant::now());
            }
        }
    }
}
