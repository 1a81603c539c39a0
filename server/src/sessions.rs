//! The MCP sessions this node holds, and how we tell that a participant's client is gone.
//!
//! rmcp owns the sessions; [`TrackedSessionManager`] wraps its [`LocalSessionManager`] to see
//! the moments that matter (a standalone GET stream opening and closing, a session closing) and
//! records them in [`SessionRegistry`]. Liveness is decided here, not by rmcp's idle reaper:
//!
//! - a session is **lost** when nothing is in flight and either its GET stream closed after its
//!   last request (the client went away without a DELETE, as mcp-remote does), or it sent no
//!   request for the idle timeout;
//! - a participant whose session is lost, or whose session closed without a DELETE, keeps its
//!   seat for the grace period: coming back (same session, or a new one with the same identity
//!   token) cancels it; otherwise the sweep ends the participant and its partners hear `timeout`;
//! - a DELETE ends the participant at once (`disconnected`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use mcp_chat::events::DisconnectReason;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::{
    RestoreOutcome, ServerSseMessage, SessionId, SessionManager,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::address::AddressSlot;
use crate::rate_limit::{Rate, TokenBucket};
use crate::store::{ChatStore, ParticipantKey};

/// Minimum MCP logging level rank (debug = 0 ... emergency = 7) a session asked for.
pub type LogRank = u8;

/// Rank of `info`, the level chat events are logged at.
pub const INFO_RANK: LogRank = 1;

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

#[derive(Debug)]
struct SessionEntry {
    participant: Option<ParticipantKey>,
    last_request: Instant,
    in_flight: u32,
    open_streams: u32,
    stream_closed_at: Option<Instant>,
    lost_since: Option<Instant>,
    explicit_end: bool,
    log_rank: LogRank,
    /// Whether events are also pushed as logging notifications (off for clients that render
    /// the custom notifications themselves: `mcp-chat/events`).
    mirror_events: bool,
    /// Cancelled when the session closes or another session takes its participant over; stops
    /// the session's pusher.
    pusher: CancellationToken,
    /// The newest event the client says it has, from the GET that is re-attaching its stream.
    resume_claim: Option<u64>,
    /// That claim once the stream is attached, for the pusher to act on.
    ready_claim: Option<u64>,
    /// The session's POST budget.
    post_budget: TokenBucket,
    /// Wakes the session's pusher to push again from `resume_claim` (see [`Rewind`]).
    rewind: Arc<Notify>,
    /// The session counted against its client's address; given back when the entry goes.
    address_slot: Option<AddressSlot>,
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

fn new_entry(post_rate: Rate) -> SessionEntry {
    SessionEntry {
        participant: None,
        last_request: Instant::now(),
        in_flight: 0,
        open_streams: 0,
        stream_closed_at: None,
        lost_since: None,
        explicit_end: false,
        log_rank: INFO_RANK,
        mirror_events: true,
        pusher: CancellationToken::new(),
        resume_claim: None,
        ready_claim: None,
        post_budget: TokenBucket::full(post_rate, Instant::now()),
        rewind: Arc::new(Notify::new()),
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

    /// Counts a POST against its session's budget. Checked before anything reads the body, so
    /// a client flooding the relay costs it little: a tool call refused by the chat rate limit
    /// has already been parsed twice and passed through rmcp. `Err(wait)` when the session
    /// made too many lately. (Unknown sessions pass: rmcp answers them 404.)
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

    fn lock(&self) -> MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn session_created(&self, id: &SessionId) {
        let entry = new_entry(self.post_rate);
        self.lock().sessions.insert(id.clone(), entry);
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

    /// Marks whether the client asked to end the session (an HTTP DELETE; unmarked again if the
    /// DELETE was refused).
    pub fn mark_explicit_end(&self, id: &str, explicit: bool) {
        if let Some(entry) = self.lock().sessions.get_mut(id) {
            entry.explicit_end = explicit;
        }
    }

    /// The participant a session speaks for, if registered.
    pub fn participant_of(&self, id: &str) -> Option<ParticipantKey> {
        self.lock()
            .sessions
            .get(id)
            .and_then(|e| e.participant.clone())
    }

    /// Binds a session to its participant and makes it the one that receives the participant's
    /// pushes. Returns a fresh token that stops the session's new pusher, or `None` when there is
    /// nothing to do: the session is unknown (closed, or never created: stateless requests),
    /// already the participant's current session, or bound to another participant (a session's
    /// identity never changes).
    ///
    /// When another session held the participant (a client that came back with a new session,
    /// or two clients sharing one identity), that session stops receiving pushes; it keeps its
    /// participant and takes it back with its next call.
    pub fn attach(&self, id: &SessionId, who: &ParticipantKey) -> Option<CancellationToken> {
        let mut state = self.lock();
        let RegistryState {
            sessions,
            participants,
        } = &mut *state;
        let entry = sessions.get_mut(id)?;
        if entry.participant.as_ref().is_some_and(|p| p != who) {
            return None;
        }
        let presence = participants.entry(who.clone()).or_default();
        if entry.participant.is_some() && presence.session.as_ref() == Some(id) {
            return None;
        }
        entry.participant = Some(who.clone());
        entry.pusher.cancel();
        entry.pusher = CancellationToken::new();
        let token = entry.pusher.clone();
        let previous = presence.session.replace(id.clone());
        presence.detached_since = None;
        if let Some(previous) = previous.filter(|p| p != id)
            && let Some(old) = sessions.get_mut(&previous)
        {
            old.pusher.cancel();
        }
        Some(token)
    }

    /// True while `id` is the session receiving `who`'s pushes.
    pub fn is_current(&self, id: &SessionId, who: &ParticipantKey) -> bool {
        self.lock()
            .participants
            .get(who)
            .is_some_and(|p| p.session.as_ref() == Some(id))
    }

    /// Counts a request in flight on the session until the guard drops. A session with a call
    /// in flight (a blocked `wait_for_message`, say) is alive.
    /// `None` when the session is unknown (closed, or a stateless request with a made-up id).
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

    fn stream_opened(self: &Arc<Self>, id: &SessionId) -> StreamGuard {
        if let Some(entry) = self.lock().sessions.get_mut(id) {
            entry.open_streams += 1;
        }
        StreamGuard {
            registry: self.clone(),
            id: id.clone(),
        }
    }

    /// True while a standalone GET stream of the session is open, as far as this node knows.
    fn has_open_stream(&self, id: &SessionId) -> bool {
        self.lock()
            .sessions
            .get(id)
            .is_some_and(|entry| entry.open_streams > 0)
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

    /// Records the newest event the client of a session says it has, from a GET that opens its
    /// standalone stream again.
    pub fn set_resume_claim(&self, id: &str, seq: u64) {
        if let Some(entry) = self.lock().sessions.get_mut(id) {
            entry.resume_claim = Some(seq);
        }
    }

    /// The signal a session's pusher follows to push again from what its client has.
    pub fn rewind(self: &Arc<Self>, id: &SessionId) -> Rewind {
        let notify = self
            .lock()
            .sessions
            .get(id)
            .map(|entry| entry.rewind.clone())
            .unwrap_or_default();
        Rewind {
            registry: self.clone(),
            id: id.clone(),
            notify,
        }
    }

    /// After a GET re-attached a session's stream: wakes its pusher if the client said what it
    /// has.
    fn stream_reattached(&self, id: &SessionId) {
        if let Some(entry) = self.lock().sessions.get_mut(id)
            && let Some(claim) = entry.resume_claim.take()
        {
            entry.ready_claim = Some(claim);
            entry.rewind.notify_one();
        }
    }

    /// Stops mirroring chat events as logging notifications to a session whose client renders
    /// the custom notifications itself.
    pub fn stop_event_mirror(&self, id: &str) {
        if let Some(entry) = self.lock().sessions.get_mut(id) {
            entry.mirror_events = false;
        }
    }

    /// Whether a session gets chat events as logging notifications too: its client did not
    /// opt out, and its logging level lets `info` through.
    pub fn mirrors_events(&self, id: &str) -> bool {
        self.lock()
            .sessions
            .get(id)
            .is_none_or(|e| e.mirror_events && e.log_rank <= INFO_RANK)
    }

    /// Forgets a session that closed, and says what that means for its participant.
    fn session_closed(&self, id: &SessionId) -> Option<SessionEnd> {
        let mut state = self.lock();
        let entry = state.sessions.remove(id)?;
        entry.pusher.cancel();
        let who = entry.participant?;
        let presence = state.participants.get_mut(&who)?;
        if presence.session.as_ref() != Some(id) {
            return None;
        }
        presence.session = None;
        if entry.explicit_end {
            state.participants.remove(&who);
            Some(SessionEnd::Explicit(who))
        } else {
            presence.detached_since = Some(entry.lost_since.unwrap_or_else(Instant::now));
            Some(SessionEnd::Lost)
        }
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

/// A pusher's view of the re-attachments of its session's stream.
///
/// rmcp replays a re-attached stream from its own cache of the last few notifications, which
/// a long outage outruns; the inbox keeps far more. So when the client says which event it has
/// (`mcp-chat-last-seq` on the GET), the pusher pushes again from there.
#[derive(Debug)]
pub struct Rewind {
    registry: Arc<SessionRegistry>,
    id: SessionId,
    notify: Arc<Notify>,
}

impl Rewind {
    /// Waits for the next re-attachment with a claim, and returns the claim.
    pub async fn next(&self) -> u64 {
        loop {
            self.notify.notified().await;
            if let Some(claim) = self.take() {
                return claim;
            }
        }
    }

    /// The claim of a re-attachment not acted on yet, if any (checked between two pushes, so
    /// that a rewind takes effect at once rather than after a burst of newer events).
    pub fn take(&self) -> Option<u64> {
        self.registry
            .lock()
            .sessions
            .get_mut(&self.id)
            .and_then(|entry| entry.ready_claim.take())
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
struct StreamGuard {
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

/// rmcp's in-memory session manager, watched: every session's creation, GET streams and end are
/// reported to the [`SessionRegistry`], and a DELETE ends the participant in the store.
pub struct TrackedSessionManager {
    inner: LocalSessionManager,
    registry: Arc<SessionRegistry>,
    store: Arc<dyn ChatStore>,
    on_end: Box<dyn Fn(&ParticipantKey) + Send + Sync>,
}

impl TrackedSessionManager {
    /// Wraps `inner`. `on_end` runs after a participant is ended by a DELETE (to drop per-node
    /// state such as its rate-limit bucket).
    pub fn new(
        inner: LocalSessionManager,
        registry: Arc<SessionRegistry>,
        store: Arc<dyn ChatStore>,
        on_end: impl Fn(&ParticipantKey) + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            registry,
            store,
            on_end: Box::new(on_end),
        }
    }

    /// Before a client's GET takes over the session's standalone stream: if the previous one
    /// still counts as open, it is a stream the client gave up on (its connection was cut and
    /// the write that would reveal it has not failed yet). rmcp would keep pushing into that
    /// dead stream and make the new one a keep-alive-only "shadow" that gets no events, whose
    /// priming event id then moves the client's `Last-Event-ID` past what was lost. Closing the
    /// old one first makes the new stream the primary and replays from its `Last-Event-ID`.
    /// (Our clients open one standalone stream per session; a second one means the first died.)
    async fn retire_stale_stream(&self, id: &SessionId) {
        if !self.registry.has_open_stream(id) {
            return;
        }
        let handle = self.inner.sessions.read().await.get(id).cloned();
        if let Some(handle) = handle
            && let Err(error) = handle.close_standalone_sse_stream(None).await
        {
            tracing::debug!(%error, "closing a stale standalone stream");
        }
    }

    fn tracked<S>(&self, id: &SessionId, stream: S) -> impl Stream<Item = ServerSseMessage> + use<S>
    where
        S: Stream<Item = ServerSseMessage> + Send + Sync + 'static,
    {
        let guard = self.registry.stream_opened(id);
        stream.map(move |message| {
            let _alive = &guard;
            message
        })
    }
}

impl SessionManager for TrackedSessionManager {
    type Error = <LocalSessionManager as SessionManager>::Error;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.inner.create_session().await?;
        self.registry.session_created(&id);
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        // rmcp calls this twice for a DELETE (once for the request, once when the session's
        // worker exits); only the first call finds the session in the registry.
        let result = self.inner.close_session(id).await;
        if let Some(SessionEnd::Explicit(who)) = self.registry.session_closed(id) {
            tracing::debug!(participant = ?who, "session deleted by its client");
            if let Err(error) = self.store.end(&who, DisconnectReason::Disconnected).await {
                tracing::warn!(%error, "could not end participant after DELETE");
            }
            (self.on_end)(&who);
        }
        result
    }

    fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> impl Future<
        Output = Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error>,
    > + Send {
        self.inner.create_stream(id, message)
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.retire_stale_stream(id).await;
        let stream = self.inner.create_standalone_stream(id).await?;
        self.registry.stream_reattached(id);
        Ok(self.tracked(id, stream))
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        // An id with a `/` resumes a POST's stream, not the standalone one.
        let standalone = !last_event_id.contains('/');
        if standalone {
            self.retire_stale_stream(id).await;
        }
        let stream = self.inner.resume(id, last_event_id).await?;
        if standalone {
            self.registry.stream_reattached(id);
        }
        Ok(self.tracked(id, stream))
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.inner.restore_session(id).await
    }
}
