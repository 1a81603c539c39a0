//! The shared store: several relay nodes acting as one through Redis.
//!
//! Every change is one call of `redis.lua`, which Redis runs atomically: two nodes never pair
//! the same waiting participant twice, and nobody is lost from a queue. State carries TTLs and
//! is refreshed by presence heartbeats, so nothing outlives its participants for long.
//!
//! Pushing stays local: each node follows the channel on which the script announces every new
//! event (`<who>\n<seq>`), and wakes the watch channels of the participants it serves. So an
//! event for a participant connected to another node reaches it within a Redis round trip,
//! without polling. While that subscription is down (Redis restarting), nothing is announced;
//! once it is back every local watcher is woken, and reads the inbox, which lost nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use mcp_chat::events::{ChatEvent, DisconnectReason, EventBody};
use mcp_chat::limits::{
    BLOCK_TTL, DEFAULT_DISPLAY_NAME, MAX_BLOCKS_PER_PARTICIPANT, TRANSCRIPT_CAPACITY,
};
use mcp_chat::tools::{
    ChatStatus, GetMessagesOutput, LeaveChatOutput, LeftPlace, SendMessageOutput, TranscriptMessage,
};
use mcp_chat::{ErrorCode, ToolError};
use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ChatStore, ParticipantKey, ReadBatch, StoreCounts, new_random_room_id, refusal};
use crate::config::RedisUrl;
use crate::moderation::{
    Access, BanRefusal, BanRequest, EvidenceEntry, ModerationCounts, ModerationPolicy,
    ReportFiling, StoredBan, StoredReport,
};

/// How long state lives in Redis without being touched (heartbeats refresh it).
const STATE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest wait for one Redis reply or connection: a hung Redis fails calls instead of
/// hanging them.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Participants in one heartbeat call.
const HEARTBEAT_BATCH: usize = 500;
/// Participants reaped in one call.
const REAP_BATCH: usize = 200;

/// The script behind every operation.
const SCRIPT: &str = include_str!("redis.lua");

/// Why the store could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    /// The URL is not a Redis URL this relay can use.
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// The TLS handshake failed: a certificate that is not trusted or not for this host, or a
    /// port that does not speak TLS.
    #[error("TLS connection to Redis at {addr} failed: {reason}")]
    Tls {
        /// `host:port`.
        addr: String,
        /// What failed, and what to check.
        reason: String,
    },
    /// Redis refused the credentials, or wants some and got none.
    #[error("Redis at {addr} refused the login: {reason}")]
    Auth {
        /// `host:port`.
        addr: String,
        /// What Redis said, and what to check.
        reason: String,
    },
}

/// [`ChatStore`] in Redis, shared by every relay node that uses the same Redis and prefix.
pub struct RedisStore {
    connection: ConnectionManager,
    script: redis::Script,
    /// Key prefix, e.g. `mcp-chat:`.
    prefix: String,
    inbox_capacity: usize,
    room_capacity: usize,
    policy: ModerationPolicy,
    watchers: Arc<Watchers>,
    follower: JoinHandle<()>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// The watch channels of the participants this node serves, woken by the event channel.
#[derive(Default)]
struct Watchers {
    senders: Mutex<HashMap<ParticipantKey, watch::Sender<u64>>>,
}

impl Watchers {
    fn lock(&self) -> MutexGuard<'_, HashMap<ParticipantKey, watch::Sender<u64>>> {
        self.senders.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn subscribe(&self, who: &ParticipantKey) -> watch::Receiver<u64> {
        self.lock()
            .entry(who.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Handles one announcement from the event channel.
    fn announce(&self, payload: &str) {
        let Some((who, what)) = payload.split_once('\n') else {
            return;
        };
        let who = ParticipantKey::from_stored(who.to_owned());
        if what == "end" {
            // Dropping the sender ends every wait and pusher of the participant.
            self.lock().remove(&who);
        } else if let Ok(seq) = what.parse::<u64>()
            && let Some(sender) = self.lock().get(&who)
        {
            sender.send_replace(seq);
        }
    }

    /// Wakes everyone: announcements may have been missed.
    fn wake_all(&self) {
        for sender in self.lock().values() {
            sender.send_modify(|_| {});
        }
    }

    /// Forgets channels nobody listens to any more.
    fn prune(&self) {
        self.lock().retain(|_, sender| sender.receiver_count() > 0);
    }
}

/// Follows the event channel for as long as the store lives, reconnecting with backoff.
async fn follow_events(client: redis::Client, channel: String, watchers: Arc<Watchers>) {
    let mut delay = Duration::from_millis(100);
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(REDIS_TIMEOUT, subscribed).await {
            Ok(Ok(mut pubsub)) => {
                tracing::debug!("following the Redis event channel");
                delay = Duration::from_millis(100);
                watchers.wake_all();
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    if let Ok(payload) = message.get_payload::<String>() {
                        watchers.announce(&payload);
                    }
                }
                tracing::warn!("lost the Redis event channel; reconnecting");
            }
            Ok(Err(error)) => tracing::warn!(%error, "cannot follow the Redis event channel"),
            Err(_) => tracing::warn!("Redis did not answer the event subscription in time"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The client for `url`: its credentials set, and for `rediss://` its trust anchors (the
/// given CA, else the system's roots).
fn client_for(url: &RedisUrl) -> Result<redis::Client, RedisStoreError> {
    let invalid = |e: redis::RedisError| RedisStoreError::Url(e.to_string());
    let mut info = url.url.as_str().into_connection_info().map_err(invalid)?;
    let mut login = info.redis_settings().clone();
    if let Some(username) = &url.username {
        login = login.set_username(username);
    }
    if let Some(password) = &url.password {
        login = login.set_password(password);
    }
    info = info.set_redis_settings(login);
    if !url.is_tls() {
        return redis::Client::open(info).map_err(invalid);
    }
    // The provider rustls uses for every TLS connection of the process (ring, as the
    // bridge): chosen here, as a build with more than one provider has no default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certificates = redis::TlsCertificates {
        client_tls: url
            .client_identity
            .as_ref()
            .map(|identity| redis::ClientTlsConfig {
                client_cert: identity.cert_pem.clone(),
                client_key: identity.key_pem.clone(),
            }),
        root_cert: url.ca_pem.clone(),
    };
    redis::Client::build_with_tls(info, certificates).map_err(invalid)
}

/// Opens one connection and sends `PING`: fails on what a retry cannot fix (TLS, the login),
/// warns and passes when Redis cannot be reached in time.
async fn check_connection(client: &redis::Client, url: &RedisUrl) -> Result<(), RedisStoreError> {
    let addr = client.get_connection_info().addr().to_string();
    let attempt = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    let error = match tokio::time::timeout(REDIS_TIMEOUT, attempt).await {
        Ok(Ok(_)) => {
            tracing::info!(%addr, tls = url.is_tls(), "connected to Redis");
            return Ok(());
        }
        Ok(Err(error)) => error,
        Err(_) => redis::RedisError::from((redis::ErrorKind::Io, "no answer in time")),
    };
    if let Some(tls) = tls_error(&error) {
        return Err(RedisStoreError::Tls {
            addr,
            reason: tls_advice(tls, url),
        });
    }
    let text = error.to_string();
    if error.kind() == redis::ErrorKind::InvalidClientConfig {
        return Err(RedisStoreError::Tls {
            addr,
            reason: format!("the TLS settings cannot be used: {text}"),
        });
    }
    if error.kind() == redis::ErrorKind::AuthenticationFailed || error.code() == Some("WRONGPASS") {
        return Err(RedisStoreError::Auth {
            addr,
            reason: format!(
                "{text} (check the user name and the password: --redis-username, \
                 --redis-password-file or MCP_CHAT_REDIS_PASSWORD)"
            ),
        });
    }
    if error.code() == Some("NOAUTH") || text.contains("NOAUTH") {
        return Err(RedisStoreError::Auth {
            addr,
            reason: "it requires a password and none was given (give one with \
                     --redis-password-file or MCP_CHAT_REDIS_PASSWORD)"
                .to_owned(),
        });
    }
    if !url.is_tls() && error.is_connection_dropped() && !error.is_connection_refusal() {
        tracing::warn!(
            %addr,
            %error,
            "Redis dropped the connection at once; if it speaks TLS only, use rediss://. \
             Starting anyway (chat tools answer `unavailable` until it answers)"
        );
    } else if url.is_tls() && error.is_timeout() {
        tracing::warn!(
            %addr,
            %error,
            "Redis did not answer the TLS handshake in time; if that port speaks plain Redis, \
             use redis://. Starting anyway (chat tools answer `unavailable` until it answers)"
        );
    } else {
        tracing::warn!(
            %addr,
            %error,
            "cannot reach Redis yet; starting anyway (chat tools answer `unavailable` until it \
             answers)"
        );
    }
    Ok(())
}

/// The rustls error behind `error`, if the TLS layer failed: redis keeps the I/O error in an
/// `Arc`, and tokio-rustls keeps the rustls error inside that I/O error.
fn tls_error(error: &redis::RedisError) -> Option<&rustls::Error> {
    type Shared = Arc<dyn std::error::Error + Send + Sync>;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(mut current) = source {
        if let Some(shared) = current.downcast_ref::<Shared>() {
            current = shared.as_ref();
        }
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        source = current.source();
    }
    None
}

/// What a TLS failure means for the operator.
fn tls_advice(error: &rustls::Error, url: &RedisUrl) -> String {
    use rustls::CertificateError;
    let trusted = if url.ca_pem.is_some() {
        "it trusts the CA certificates in --redis-ca-file only"
    } else {
        "it trusts the system's roots; give the CA that signed it with --redis-ca-file (a \
         container image without a CA bundle has no roots at all)"
    };
    match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "{error}: the server's certificate is not signed by a CA this relay trusts: \
             {trusted}"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("{error}: the server's certificate is not for the host name in the store URL"),
        rustls::Error::InvalidCertificate(_) => {
            format!("{error}: the server's certificate is not acceptable")
        }
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => format!(
            "{error}: Redis requires a client certificate (mutual TLS); give it with \
             --redis-client-cert-file and --redis-client-key-file"
        ),
        rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::CertificateUnknown
            | rustls::AlertDescription::AccessDenied,
        ) if url.client_identity.is_some() => format!(
            "{error}: Redis does not accept the client certificate in \
             --redis-client-cert-file (is it signed by a CA in Redis' --tls-ca-cert-file?)"
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("{error}: is this Redis port a TLS port (--tls-port)?")
        }
        other => other.to_string(),
    }
}

/// What every failed Redis call tells the participant (the cause goes to the log).
fn unavailable(error: redis::RedisError) -> ToolError {
    tracing::warn!(%error, "Redis call failed");
    ToolError::new(
        ErrorCode::Unavailable,
        "The relay cannot reach its storage right now. Try again in a few seconds.",
    )
}

/// A reply that does not have the shape the script returns: a bug or a foreign script.
fn garbled(what: &str) -> ToolError {
    tracing::error!("unexpected reply from the Redis script for {what}");
    ToolError::new(
        ErrorCode::Unavailable,
        "The relay's storage answered something unexpected. Try again in a few seconds.",
    )
}

/// A duration as the script takes it: whole milliseconds.
fn millis(duration: Duration) -> String {
    (duration.as_millis() as u64).to_string()
}

/// Stream entries flattened by the script (seq, timestamp, room, body, ...) as events.
fn parse_events(flat: &[String]) -> Result<Vec<ChatEvent>, ToolError> {
    flat.chunks_exact(4)
        .map(|entry| {
            let body: EventBody =
                serde_json::from_str(&entry[3]).map_err(|_| garbled("an event"))?;
            Ok(ChatEvent {
                seq: entry[0].parse().map_err(|_| garbled("an event seq"))?,
                timestamp_ms: entry[1].parse().unwrap_or(0),
                room_id: entry[2].clone(),
                notice: None,
                body,
            })
        })
        .collect()
}

impl RedisStore {
    /// A store on the Redis at `url`, with keys under `prefix`, once one connection has shown
    /// that the settings work: a certificate that is not trusted, a wrong password or a missing
    /// one stop the relay at start, with what to fix. A Redis that does not answer yet does not
    /// (it may be starting too): the relay then starts, logs a warning, and its calls fail with
    /// `unavailable` until Redis answers.
    pub async fn connect(
        url: &RedisUrl,
        prefix: &str,
        inbox_capacity: usize,
        room_capacity: usize,
    ) -> Result<Self, RedisStoreError> {
        let client = client_for(url)?;
        check_connection(&client, url).await?;
        Self::with_client(client, prefix, inbox_capacity, room_capacity)
    }

    /// A store on the Redis at `url` (`redis[s]://[[user]:password@]host[:port][/db]`, the
    /// system's roots for TLS), with keys under `prefix`. Connects lazily, without the checks
    /// of [`Self::connect`].
    pub fn open(
        url: &str,
        prefix: &str,
        inbox_capacity: usize,
        room_capacity: usize,
    ) -> Result<Self, RedisStoreError> {
        let client = client_for(&RedisUrl::plain(url))?;
        Self::with_client(client, prefix, inbox_capacity, room_capacity)
    }

    fn with_client(
        client: redis::Client,
        prefix: &str,
        inbox_capacity: usize,
        room_capacity: usize,
    ) -> Result<Self, RedisStoreError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_max_delay(Duration::from_secs(1))
            // Few attempts per reconnection: the next call starts another one anyway, and
            // calls must fail fast while Redis is away.
            .set_number_of_retries(2);
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| RedisStoreError::Url(e.to_string()))?;
        let watchers = Arc::new(Watchers::default());
        let follower = tokio::spawn(follow_events(
            client,
            format!("{prefix}events"),
            watchers.clone(),
        ));
        Ok(Self {
            connection,
            script: redis::Script::new(SCRIPT),
            prefix: prefix.to_owned(),
            inbox_capacity: inbox_capacity.max(1),
            room_capacity: room_capacity.max(2),
            policy: ModerationPolicy::default(),
            watchers,
            follower,
        })
    }

    /// The same store with these moderation rules (every node sharing the store should have
    /// the same).
    pub fn with_policy(mut self, policy: ModerationPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Runs operation `op` of the script with `args`.
    async fn run<T: redis::FromRedisValue>(&self, op: &str, args: &[&str]) -> Result<T, ToolError> {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .arg(op)
            .arg(&self.prefix)
            .arg(STATE_TTL.as_secs())
            .arg(self.inbox_capacity)
            .arg(self.room_capacity)
            .arg(BLOCK_TTL.as_millis() as u64)
            .arg(MAX_BLOCKS_PER_PARTICIPANT)
            .arg(TRANSCRIPT_CAPACITY)
            .arg(DEFAULT_DISPLAY_NAME);
        for arg in args {
            invocation.arg(*arg);
        }
        let mut connection = self.connection.clone();
        // Bounded as a whole: while Redis is away a call may queue behind the manager's
        // reconnection, which has timeouts of its own per attempt only.
        match tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut connection)).await {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(unavailable(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no answer from Redis in time",
            )))),
        }
    }

    async fn status_now(&self, who: &ParticipantKey) -> Result<ChatStatus, ToolError> {
        let json: String = self.run("status", &[who.as_str()]).await?;
        serde_json::from_str(&json).map_err(|_| garbled("status"))
    }

    /// A status after an operation that answers `ok` or a refusal.
    async fn status_after(
        &self,
        who: &ParticipantKey,
        answer: String,
        room_id: &str,
    ) -> Result<ChatStatus, ToolError> {
        match answer.as_str() {
            "ok" => self.status_now(who).await,
            "room_full" => Err(refusal::room_full(room_id, self.room_capacity)),
            "already_waiting" => Err(refusal::already_waiting()),
            other => match other.split_once('\n') {
                Some(("already_in_room", room)) => Err(refusal::already_in_room(room)),
                _ => Err(garbled("a chat operation")),
            },
        }
    }
}

#[async_trait]
impl ChatStore for RedisStore {
    async fn enter_queue(
        &self,
        who: &ParticipantKey,
        display_name: String,
        topic: Option<String>,
    ) -> Result<ChatStatus, ToolError> {
        let room_id = new_random_room_id();
        let answer: String = self
            .run(
                "enter_queue",
                &[
                    who.as_str(),
                    &display_name,
                    topic.as_deref().unwrap_or(""),
                    &room_id,
                ],
            )
            .await?;
        self.status_after(who, answer, &room_id).await
    }

    async fn join_room(
        &self,
        who: &ParticipantKey,
        display_name: String,
        room_id: String,
    ) -> Result<ChatStatus, ToolError> {
        let answer: String = self
            .run("join_room", &[who.as_str(), &display_name, &room_id])
            .await?;
        self.status_after(who, answer, &room_id).await
    }

    async fn next_chat(&self, who: &ParticipantKey) -> Result<ChatStatus, ToolError> {
        let answer: String = self
            .run("next_chat", &[who.as_str(), &new_random_room_id()])
            .await?;
        self.status_after(who, answer, "").await
    }

    async fn send_message(
        &self,
        who: &ParticipantKey,
        text: String,
    ) -> Result<SendMessageOutput, ToolError> {
        let answer: Vec<String> = self.run("send", &[who.as_str(), &text]).await?;
        match answer.as_slice() {
            [ok, room_id, seq, delivered] if ok == "ok" => Ok(SendMessageOutput {
                room_id: room_id.clone(),
                message_seq: seq.parse().map_err(|_| garbled("send"))?,
                delivered_to: delivered.parse().map_err(|_| garbled("send"))?,
            }),
            [code] if code == "not_in_room" => Err(refusal::not_in_room_to_send()),
            [code] if code == "room_closed" => Err(refusal::room_closed()),
            [code] if code == "no_partner" => Err(refusal::no_partner()),
            _ => Err(garbled("send")),
        }
    }

    async fn leave(&self, who: &ParticipantKey, block: bool) -> Result<LeaveChatOutput, ToolError> {
        let answer: Vec<String> = self
            .run("leave", &[who.as_str(), if block { "1" } else { "0" }])
            .await?;
        let [left, room_id, blocked] = answer.as_slice() else {
            return Err(garbled("leave"));
        };
        let left = match left.as_str() {
            "room" => LeftPlace::Room,
            "queue" => LeftPlace::Queue,
            _ => LeftPlace::Nothing,
        };
        Ok(LeaveChatOutput {
            left,
            room_id: (!room_id.is_empty()).then(|| room_id.clone()),
            blocked: blocked.parse().map_err(|_| garbled("leave"))?,
            status: self.status_now(who).await?,
        })
    }

    async fn status(&self, who: &ParticipantKey) -> Result<ChatStatus, ToolError> {
        self.status_now(who).await
    }

    async fn read_unread(&self, who: &ParticipantKey, max: usize) -> Result<ReadBatch, ToolError> {
        let answer: Vec<String> = self.run("read", &[who.as_str(), &max.to_string()]).await?;
        let [missed, more, events @ ..] = answer.as_slice() else {
            return Err(garbled("read"));
        };
        Ok(ReadBatch {
            events: parse_events(events)?,
            missed: missed.parse().map_err(|_| garbled("read"))?,
            more: more == "1",
        })
    }

    async fn set_read_cursor(&self, who: &ParticipantKey, seq: u64) -> Result<(), ToolError> {
        let _: String = self
            .run("set_cursor", &[who.as_str(), &seq.to_string()])
            .await?;
        Ok(())
    }

    async fn mark_read_through(&self, who: &ParticipantKey, seq: u64) -> Result<(), ToolError> {
        let _: String = self
            .run("read_through", &[who.as_str(), &seq.to_string()])
            .await?;
        Ok(())
    }

    async fn events_after(
        &self,
        who: &ParticipantKey,
        seq: u64,
        max: usize,
    ) -> Result<Vec<ChatEvent>, ToolError> {
        let flat: Vec<String> = self
            .run(
                "events_after",
                &[who.as_str(), &seq.to_string(), &max.to_string()],
            )
            .await?;
        parse_events(&flat)
    }

    async fn resume_point(
        &self,
        who: &ParticipantKey,
        claimed: Option<u64>,
    ) -> Result<u64, ToolError> {
        let claimed = claimed.map(|seq| seq.to_string()).unwrap_or_default();
        let seq: String = self.run("resume_point", &[who.as_str(), &claimed]).await?;
        seq.parse().map_err(|_| garbled("resume point"))
    }

    async fn mark_pushed(&self, who: &ParticipantKey, seq: u64) -> Result<(), ToolError> {
        let _: String = self
            .run("mark_pushed", &[who.as_str(), &seq.to_string()])
            .await?;
        Ok(())
    }

    async fn transcript(
        &self,
        who: &ParticipantKey,
        since: Option<u64>,
        limit: usize,
    ) -> Result<GetMessagesOutput, ToolError> {
        let answer: Vec<String> = self.run("transcript", &[who.as_str()]).await?;
        let (room_id, latest, joined_after, stored) = match answer.as_slice() {
            [ok, room_id, latest, joined, stored @ ..] if ok == "ok" => (
                room_id.clone(),
                latest.parse::<u64>().map_err(|_| garbled("transcript"))?,
                joined.parse::<u64>().map_err(|_| garbled("transcript"))?,
                stored,
            ),
            [code] if code == "not_in_room" => return Err(refusal::no_transcript()),
            [code] if code == "room_closed" => return Err(refusal::room_closed()),
            _ => return Err(garbled("transcript")),
        };
        // Transcript entries have the shape of evidence entries (a report copies them).
        let stored: Vec<EvidenceEntry> = stored
            .iter()
            .filter_map(|entry| serde_json::from_str(entry).ok())
            .collect();
        let page = super::transcript_page(
            stored.iter().map(|m| (m.seq, m)),
            since,
            limit,
            joined_after,
        );
        Ok(GetMessagesOutput {
            room_id,
            messages: page
                .items
                .into_iter()
                .map(|m| TranscriptMessage {
                    message_seq: m.seq,
                    timestamp_ms: m.timestamp_ms,
                    from: m.from_name.clone(),
                    from_you: m.from == who.as_str(),
                    notice: None,
                    text: m.text.clone(),
                })
                .collect(),
            latest_message_seq: latest,
            truncated: page.truncated,
        })
    }

    fn watch(&self, who: &ParticipantKey) -> watch::Receiver<u64> {
        self.watchers.subscribe(who)
    }

    async fn end(&self, who: &ParticipantKey, reason: DisconnectReason) -> Result<(), ToolError> {
        let _: String = self.run("end", &[who.as_str(), reason.as_str()]).await?;
        Ok(())
    }

    async fn close_all_rooms(&self, _reason: DisconnectReason) -> Result<(), ToolError> {
        // The rooms belong to every node: one node stopping ends nothing. Its participants'
        // presence runs out unless they come back through a node (see `reap_absent`).
        Ok(())
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn heartbeat(&self, live: &[ParticipantKey]) -> Result<(), ToolError> {
        self.watchers.prune();
        for batch in live.chunks(HEARTBEAT_BATCH) {
            let keys: Vec<&str> = batch.iter().map(ParticipantKey::as_str).collect();
            let _: String = self.run("heartbeat", &keys).await?;
        }
        Ok(())
    }

    async fn reap_absent(&self, grace: Duration) -> Result<Vec<ParticipantKey>, ToolError> {
        let mut reaped = Vec::new();
        loop {
            let keys: Vec<String> = self
                .run(
                    "reap",
                    &[
                        &(grace.as_millis() as u64).to_string(),
                        &REAP_BATCH.to_string(),
                    ],
                )
                .await?;
            let full = keys.len() >= REAP_BATCH;
            reaped.extend(keys.into_iter().map(ParticipantKey::from_stored));
            if !full {
                return Ok(reaped);
            }
        }
    }

    async fn report(
        &self,
        who: &ParticipantKey,
        filing: ReportFiling,
    ) -> Result<StoredReport, ToolError> {
        let policy = &self.policy;
        let answer: Vec<String> = self
            .run(
                "report",
                &[
                    who.as_str(),
                    &filing.id,
                    filing.reason.as_str(),
                    filing.note.as_deref().unwrap_or(""),
                    filing.member.as_deref().unwrap_or(""),
                    &mcp_chat::limits::REPORT_EVIDENCE_MESSAGES.to_string(),
                    &millis(policy.report_retention),
                    &policy.cooldown_reports.to_string(),
                    &millis(policy.cooldown_window),
                    &millis(policy.cooldown_period),
                ],
            )
            .await?;
        match answer.as_slice() {
            [ok, json] if ok == "ok" => serde_json::from_str(json).map_err(|_| garbled("a report")),
            [code] if code == "nothing" => Err(refusal::nothing_to_report()),
            [code] if code == "no_member" => Err(refusal::no_such_member()),
            [code] if code == "which_member" => Err(refusal::which_member()),
            _ => Err(garbled("report")),
        }
    }

    async fn access(
        &self,
        who: &ParticipantKey,
        pseudonym: &str,
        address: Option<&str>,
    ) -> Result<Access, ToolError> {
        let answer: Vec<String> = self
            .run("access", &[who.as_str(), pseudonym, address.unwrap_or("")])
            .await?;
        match answer.as_slice() {
            [open] if open == "open" => Ok(Access::Open),
            [banned, json] if banned == "banned" => {
                let ban: StoredBan = serde_json::from_str(json).map_err(|_| garbled("a ban"))?;
                Ok(Access::Banned {
                    until_ms: ban.until_ms,
                })
            }
            [paused, until] if paused == "paused" => Ok(Access::MatchingPaused {
                until_ms: until.parse().map_err(|_| garbled("a cooldown"))?,
            }),
            _ => Err(garbled("access")),
        }
    }

    async fn reports(&self, limit: usize) -> Result<Vec<StoredReport>, ToolError> {
        let answer: Vec<String> = self
            .run(
                "reports",
                &[
                    &limit.max(1).to_string(),
                    &millis(self.policy.report_retention),
                ],
            )
            .await?;
        answer
            .iter()
            .map(|json| serde_json::from_str(json).map_err(|_| garbled("a report")))
            .collect()
    }

    async fn report_by_id(&self, id: &str) -> Result<Option<StoredReport>, ToolError> {
        let json: String = self.run("report_get", &[id]).await?;
        if json.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|_| garbled("a report"))
    }

    async fn ban(&self, request: BanRequest) -> Result<Result<StoredBan, BanRefusal>, ToolError> {
        let answer: Vec<String> = self
            .run(
                "ban",
                &[
                    &request.id,
                    &request.participant,
                    request.key.as_ref().map_or("", ParticipantKey::as_str),
                    request.address.as_deref().unwrap_or(""),
                    if request.ban_address { "1" } else { "0" },
                    &request.duration.map(millis).unwrap_or_default(),
                    request.report.as_deref().unwrap_or(""),
                ],
            )
            .await?;
        match answer.as_slice() {
            [ok, json] if ok == "ok" => serde_json::from_str(json)
                .map(Ok)
                .map_err(|_| garbled("a ban")),
            [code] if code == "no_address" => Ok(Err(BanRefusal::NoAddress)),
            _ => Err(garbled("ban")),
        }
    }

    async fn bans(&self) -> Result<Vec<StoredBan>, ToolError> {
        let answer: Vec<String> = self.run("bans", &[]).await?;
        let mut bans = answer
            .iter()
            .map(|json| serde_json::from_str(json).map_err(|_| garbled("a ban")))
            .collect::<Result<Vec<StoredBan>, _>>()?;
        bans.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.id.cmp(&b.id)));
        Ok(bans)
    }

    async fn unban(&self, id: &str) -> Result<bool, ToolError> {
        let answer: String = self.run("unban", &[id]).await?;
        Ok(answer == "1")
    }

    async fn kick(&self, pseudonym: &str) -> Result<bool, ToolError> {
        let answer: String = self.run("kick", &[pseudonym]).await?;
        Ok(answer == "1")
    }

    async fn moderation_counts(&self) -> Result<ModerationCounts, ToolError> {
        let answer: Vec<String> = self
            .run("mod_counts", &[&millis(self.policy.report_retention)])
            .await?;
        let [reports, bans, cooldowns @ ..] = answer.as_slice() else {
            return Err(garbled("moderation counts"));
        };
        Ok(ModerationCounts {
            reports: reports.parse().map_err(|_| garbled("moderation counts"))?,
            bans: bans.parse().map_err(|_| garbled("moderation counts"))?,
            cooldowns: cooldowns
                .chunks_exact(2)
                .map(|pair| {
                    let until = pair[1].parse::<f64>().unwrap_or(0.0) as u64;
                    (ParticipantKey::from_stored(pair[0].clone()), until)
                })
                .collect(),
        })
    }

    async fn counts(&self) -> Result<StoreCounts, ToolError> {
        let answer: Vec<String> = self.run("counts", &[]).await?;
        let numbers: Vec<u64> = answer.iter().filter_map(|n| n.parse().ok()).collect();
        let [
            participants,
            waiting,
            rooms,
            messages_relayed,
            events_dropped,
        ] = numbers.as_slice()
        else {
            return Err(garbled("counts"));
        };
        Ok(StoreCounts {
            participants: *participants,
            waiting: *waiting,
            rooms: *rooms,
            messages_relayed: *messages_relayed,
            events_dropped: *events_dropped,
        })
    }
}
