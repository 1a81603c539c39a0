//! Scenario `abuse`: ordinary pairs chat while every kind of abuser we know of runs against the
//! same relay, which keeps its default per-participant rate limits.
//!
//! Phase 1 measures the victims alone; phase 2 the same window with all abusers at once:
//!
//! - **flood**: one participant in a room calls `send_message` in a closed loop, 16 in flight;
//! - **queue churn**: participants loop `enter_queue` / `leave_chat`;
//! - **reconnect churn**: sessions opened (`initialize` + `initialized`, every other one with an
//!   identity token) and deleted at once, 8 in flight;
//! - **malformed**: bare POSTs with a 1 MiB body, a body that is not JSON, JSON that is not
//!   JSON-RPC, and an unknown session id, 8 in flight;
//! - **slow readers**: sessions in a room whose partner (an accomplice) sends them messages at
//!   the allowed rate, with a GET stream on a raw TCP connection that is never read;
//! - **slowloris**: TCP connections that send part of a request header and then nothing.
//!
//! Then the abusers stop and the relay gets a while to recover. The victims' delivery latency
//! per phase, every victim message counted exactly once, abuser calls by outcome, and the
//! relay's memory, file descriptors and CPU tell whether the relay isolates them.
//!
//! The relay keeps its default per-address limits too (connections and sessions open at once,
//! new sessions per second, refused requests per second), so the scenario models the internet: every
//! victim comes from a loopback address of its own and every kind of abuser from one address
//! of its own (Linux routes all of 127.0.0.0/8 to `lo`; the relay listens on 127.0.0.1 and sees
//! each source address as a client):
//!
//! | who | source address |
//! |---|---|
//! | victim `v` (participant index `v`; the two members of a pair are on different addresses) | 127.1.(`v` / 250 mod 256).(`v` mod 250 + 1): 64,000 before they repeat |
//! | flood (the flooder and its partner) | 127.2.0.1 |
//! | queue churn | 127.2.0.2 |
//! | reconnect churn | 127.2.0.3 |
//! | malformed (pooled and fresh connections) | 127.2.0.4 |
//! | slow readers (their sessions and unread GET streams) | 127.2.0.5 |
//! | slowloris | 127.2.0.6 |
//! | the slow readers' accomplices | 127.2.0.7 |
//! | witnesses (partial requests held for the whole run) | 127.2.0.8 |
//! | `/healthz` readings | the default, 127.0.0.1 |
//!
//! Expected from those limits: reconnect churn gets 429 for `initialize` once its address has
//! used its burst of new sessions; malformed requests get 429 (unread, `Connection: close`)
//! once their address has used its burst of refusals; slowloris connections past the
//! per-address cap (512) are closed at accept; a refusal is held about 1 s before its answer,
//! and a connection the relay closes on a held or refused request shows up as `:closed`. A
//! victim is never refused: anything but success is a victim error.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::BenchError;
use crate::ledger::{LatencySummary, Tally};
use crate::load::{Crowd, Pace, accepted, drain, settle, start_senders, stop_senders};
use crate::participant::{Clients, Pairing, Participant, http_client_from};
use crate::procfs::ProcSample;
use crate::raw::{self, RawSession};
use crate::report::{CpuShare, ServerInfo};
use crate::scenario::{
    Env, Load, Mark, counted_in, crowd_from, finish, health, judge, server_info,
};
use crate::server::{RelayLimits, Server};

/// How long to wait for the victims' last messages before counting them lost.
const DRAIN_PATIENCE: Duration = Duration::from_secs(10);
/// Receive buffer of a slow reader's socket: its TCP window fills after a few events.
const SLOW_READER_RCVBUF: u32 = 4096;
/// Size of the oversized request body.
const OVERSIZED_BODY: usize = 1 << 20;
/// Partial requests held from the start to the end of the run.
const WITNESSES: usize = 5;
/// Abusers connecting at once during their set-up.
const SETUP_CONCURRENCY: usize = 32;

/// A slowloris connection the relay closes within this long of its opening was closed at
/// accept (its per-address connection cap), not by its 10 s header-read timeout.
const AT_ACCEPT_WITHIN: Duration = Duration::from_secs(2);

/// The worst victims' p99 in phase 2 may be, as a multiple of phase 1's (issue 7).
pub const P99_RATIO_GOAL: f64 = 2.0;

const fn loopback(b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, b, c, d))
}

/// The source address of victim `v` (see the module's table).
fn victim_address(v: u32) -> IpAddr {
    loopback(1, (v / 250 % 256) as u8, (v % 250 + 1) as u8)
}

/// Source addresses of the abusers, one per kind (see the module's table).
const FLOOD_ADDRESS: IpAddr = loopback(2, 0, 1);
const QUEUE_CHURN_ADDRESS: IpAddr = loopback(2, 0, 2);
const RECONNECT_ADDRESS: IpAddr = loopback(2, 0, 3);
const MALFORMED_ADDRESS: IpAddr = loopback(2, 0, 4);
const SLOW_READER_ADDRESS: IpAddr = loopback(2, 0, 5);
const SLOWLORIS_ADDRESS: IpAddr = loopback(2, 0, 6);
const ACCOMPLICE_ADDRESS: IpAddr = loopback(2, 0, 7);
const WITNESS_ADDRESS: IpAddr = loopback(2, 0, 8);

/// Scenario `abuse`.
#[derive(Debug, Clone)]
pub struct AbuseParams {
    /// Victim pairs.
    pub pairs: usize,
    /// How victims pair up.
    pub pairing: Pairing,
    /// Victims' total messages per second.
    pub rate: f64,
    /// Victims' message text size, bytes.
    pub message_bytes: usize,
    /// Victims chatting before phase 1.
    pub warmup: Duration,
    /// Length of each measured phase.
    pub window: Duration,
    /// After the abusers stop, before the last reading.
    pub recovery: Duration,
    /// Victims connecting at once.
    pub ramp_concurrency: usize,
    /// The flooder's `send_message` calls in flight.
    pub flood_in_flight: usize,
    /// Participants looping `enter_queue` / `leave_chat`.
    pub queue_churners: usize,
    /// Session open-and-delete loops.
    pub reconnect_in_flight: usize,
    /// Malformed-request loops.
    pub malformed_in_flight: usize,
    /// Slow readers (each with an accomplice sending to it).
    pub slow_readers: usize,
    /// Size of the accomplices' messages, bytes.
    pub slow_reader_message_bytes: usize,
    /// Slowloris connections.
    pub slowloris: usize,
    /// Rounds of abuse (each: abusers start, a window, abusers stop, recovery).
    pub rounds: usize,
    /// Smoke mode: also fail on any victim error and any abuser outcome not expected.
    pub strict: bool,
}

/// The victims in one phase.
#[derive(Debug, Serialize)]
pub struct Phase {
    /// `alone`, `abused` or `recovery`.
    pub name: String,
    /// Length, s.
    pub secs: f64,
    /// Victims' `send_message` calls started per second.
    pub sent_per_sec: f64,
    /// Messages sent in the phase and delivered, per second.
    pub delivered_per_sec: f64,
    /// Calls that failed.
    pub failed: u64,
    /// Messages undelivered at the end of the run (counted as infinitely late).
    pub late: u64,
    /// Delivery latency of the victims' messages sent in the phase.
    pub latency: LatencySummary,
    /// CPU use during the phase.
    pub cpu: CpuShare,
}

/// The relay at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct RelayReading {
    /// When.
    pub at: String,
    /// Memory and CPU time.
    pub memory: Option<ProcSample>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// Sessions, as `/healthz` counts them.
    pub sessions: Option<u64>,
}

async fn reading(env: &Env, server: &Server, at: &str) -> RelayReading {
    let sessions = health(env, server)
        .await
        .and_then(|h| h["sessions"].as_u64());
    RelayReading {
        at: at.to_owned(),
        memory: server.sample(),
        open_fds: server.open_fds(),
        sessions,
    }
}

/// What became of the slowloris connections.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SlowlorisReport {
    /// Connections opened.
    pub opened: u64,
    /// Connections that could not be opened.
    pub failed: u64,
    /// Connections the relay closed at once (within [`AT_ACCEPT_WITHIN`]), as its per-address
    /// connection cap does at accept.
    pub closed_at_accept: u64,
    /// Connections the relay closed later while the abusers ran (its header-read timeout).
    pub closed_by_relay: u64,
    /// The earliest and latest such closing, seconds after the connection was opened.
    pub closed_after_secs: Option<(f64, f64)>,
    /// How long the connections were held (phase 2 and the set-up), s.
    pub held_secs: f64,
    /// Witnesses: partial requests opened before phase 1 and left until the end of the run.
    pub witnesses: u64,
    /// Witnesses the relay had not closed at the end.
    pub witnesses_open_at_end: u64,
    /// How long the witnesses were held, s.
    pub witnesses_held_secs: f64,
}

/// Scenario `abuse`.
#[derive(Debug, Serialize)]
pub struct AbuseReport {
    /// Victim pairs.
    pub pairs: usize,
    /// How victims paired.
    pub pairing: Pairing,
    /// Victims' total rate asked for, msg/s.
    pub rate: f64,
    /// Victims' message size, bytes.
    pub message_bytes: usize,
    /// Each phase's length, s.
    pub window_secs: f64,
    /// The relay's rate limits: calls per second and burst, per participant.
    pub rate_limit: (f64, u32),
    /// The victims alone, abused, and recovering.
    pub phases: Vec<Phase>,
    /// p99 abused ÷ p99 alone.
    pub p99_ratio: Option<f64>,
    /// The goal for `p99_ratio`.
    pub p99_ratio_goal: f64,
    /// The relay: empty, with victims, after each phase, after recovery.
    pub relay: Vec<RelayReading>,
    /// Each abuser's calls by outcome.
    pub abusers: BTreeMap<String, BTreeMap<String, u64>>,
    /// How long the abusers ran, s.
    pub abuse_secs: f64,
    /// Abuser outcomes that are not among the expected ones, as `abuser/outcome`.
    pub unexpected: BTreeMap<String, u64>,
    /// The slowloris connections.
    pub slowloris: SlowlorisReport,
    /// Smoke mode (any victim error or unexpected abuser outcome fails the run).
    pub strict: bool,
    /// Every victim message of the run, and the victims' errors.
    pub tally: Tally,
    /// The server.
    pub server: ServerInfo,
}

impl AbuseReport {
    /// True when no victim message was lost or duplicated (and, in smoke mode, nothing else
    /// went wrong).
    pub fn is_clean(&self) -> bool {
        let books = self.tally.lost == 0 && self.tally.duplicated == 0;
        books && (!self.strict || (self.tally.is_clean() && self.unexpected.is_empty()))
    }
}

/// Outcomes of one abuser's calls, counted by kind.
#[derive(Debug, Default, Clone)]
struct Outcomes(Arc<Mutex<BTreeMap<String, u64>>>);

impl Outcomes {
    fn add(&self, kind: &str) {
        let mut map = self.0.lock().unwrap();
        match map.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                map.insert(kind.to_owned(), 1);
            }
        }
    }

    fn add_result<T>(&self, prefix: &str, result: &Result<T, String>) {
        match result {
            Ok(_) => self.add(&format!("{prefix}ok")),
            Err(kind) => self.add(&format!("{prefix}{kind}")),
        }
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap().clone()
    }
}

/// Outcomes an abuser is expected to get; anything else is a finding. Besides the relay's
/// answers to each kind of abuse, its per-address limits (the relay's defaults) refuse
/// reconnect churn's `initialize` (429: new sessions) and malformed requests (429: refusals,
/// answered unread with `Connection: close`), close slowloris connections past 512 at accept,
/// and may close a connection whose held request was refused (`:closed`).
fn expected(abuser: &str, outcome: &str) -> bool {
    let tool_refusals = [
        "ok",
        "http:429",
        "tool:rate_limited",
        "tool:already_waiting",
        "tool:already_in_room",
        "tool:not_in_room",
    ];
    match abuser {
        "flood" => matches!(outcome, "ok" | "http:429" | "tool:rate_limited"),
        "queue_churn" => outcome.split_once(':').is_some_and(|(tool, rest)| {
            matches!(tool, "enter_queue" | "leave_chat") && tool_refusals.contains(&rest)
        }),
        "reconnect" => matches!(
            outcome,
            "ok" | "ok_identity" | "initialize:http:429" | "initialize:closed"
        ),
        "malformed" => outcome.split_once(':').is_some_and(|(kind, answer)| {
            let refused = matches!(answer, "429" | "closed");
            match kind {
                "oversized" => refused || answer == "413",
                "not_json" => refused || answer == "400:-32700",
                "not_jsonrpc" => refused || answer == "400:-32600",
                "unknown_session" => refused || answer == "404",
                _ => false,
            }
        }),
        "slow_reader_accomplice" => matches!(outcome, "send:ok"),
        "slow_reader" => matches!(outcome, "setup:ok" | "teardown:ok"),
        "slowloris" => matches!(
            outcome,
            "opened" | "closed_at_accept" | "closed_by_relay" | "open_at_stop"
        ),
        _ => false,
    }
}

/// Everything the abusers hold while they run.
struct Abusers {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    participants: Vec<Arc<Participant>>,
    slow_sessions: Vec<(RawSession, TcpStream)>,
    slowloris: Vec<JoinHandle<Option<f64>>>,
    outcomes: BTreeMap<&'static str, Outcomes>,
    slowloris_failed: u64,
    /// The slow readers' client (their sessions are deleted from their own address).
    slow_http: reqwest::Client,
    started: Instant,
}

/// A client from `address`, or (should it not build) the generator's default one.
fn client_from(env: &Env, address: IpAddr) -> reqwest::Client {
    http_client_from(Some(address)).unwrap_or_else(|_| env.http.clone())
}

/// Scenario `abuse`.
pub async fn abuse(env: &Env, params: &AbuseParams) -> Result<AbuseReportBox, BenchError> {
    let victims = params.pairs * 2;
    let abusers_sessions = 2 + params.queue_churners + params.slow_readers * 2;
    let limits = RelayLimits::for_load(
        victims + abusers_sessions + params.reconnect_in_flight * 4,
        params.message_bytes.max(params.slow_reader_message_bytes),
    )
    .with_default_rate_limits();
    let server = Server::start(&env.relay, limits, env.server_cpus.as_deref()).await?;
    eprintln!("relay: {}", server.command);
    let addr = raw::socket_addr(&server.url)
        .ok_or_else(|| BenchError::Setup(format!("cannot read the address of {}", server.url)))?;
    let _ = health(env, &server).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut relay = vec![reading(env, &server, "empty").await];
    // A few partial requests held for the whole run: does the relay ever time them out?
    let witnesses_opened = Instant::now();
    let mut witnesses = Vec::new();
    for _ in 0..WITNESSES {
        if let Ok(stream) = raw::open_partial_request(addr, Some(WITNESS_ADDRESS)).await {
            witnesses.push(stream);
        }
    }

    let load = Load {
        pairs: params.pairs,
        pairing: params.pairing,
        message_bytes: params.message_bytes,
        warmup: params.warmup,
        duration: params.window,
        ramp_concurrency: params.ramp_concurrency,
        mute_log_pushes: false,
    };
    let clients = Clients::per_participant(victims, victim_address)?;
    let Crowd {
        participants,
        errors,
        ..
    } = crowd_from(env, &server, &load, &clients).await;
    let pace = Pace::new(Some(params.rate), participants.len());
    let senders = start_senders(&participants, &pace, params.message_bytes, env.clock);
    tokio::time::sleep(params.warmup).await;
    relay.push(reading(env, &server, "victims connected").await);

    eprintln!(
        "phase 1: victims alone for {:.0} s",
        params.window.as_secs_f64()
    );
    let alone_start = Mark::now(env.clock, &server);
    tokio::time::sleep(params.window).await;
    let alone_end = Mark::now(env.clock, &server);
    relay.push(reading(env, &server, "after phase 1").await);

    eprintln!("starting the abusers");
    let first_abuser = (victims as u32).div_ceil(2) * 2;
    let abusers = start_abusers(env, &server, addr, params, first_abuser).await;
    tokio::time::sleep(Duration::from_secs(1).min(params.window)).await;
    eprintln!(
        "phase 2: victims with every abuser for {:.0} s",
        params.window.as_secs_f64()
    );
    let abused_start = Mark::now(env.clock, &server);
    tokio::time::sleep(params.window).await;
    let abused_end = Mark::now(env.clock, &server);
    relay.push(reading(env, &server, "after phase 2 (abusers running)").await);

    eprintln!("stopping the abusers");
    let (abuser_outcomes, slowloris, abuse_secs) = stop_abusers(&server, abusers).await;
    let recovery_start = Mark::now(env.clock, &server);
    tokio::time::sleep(params.recovery).await;
    let recovery_end = Mark::now(env.clock, &server);
    relay.push(
        reading(
            env,
            &server,
            &format!(
                "{:.0} s after the abusers stopped",
                params.recovery.as_secs_f64()
            ),
        )
        .await,
    );

    // Further rounds, on the same relay: does memory come back to the same level each time
    // (allocator reuse), or climb round after round (something kept)?
    let mut abuser_outcomes = abuser_outcomes;
    let mut abuse_secs = abuse_secs;
    let mut extra_phases = Vec::new();
    for round in 2..=params.rounds {
        let base = first_abuser + (round as u32 - 1) * 100_000;
        let abusers = start_abusers(env, &server, addr, params, base).await;
        tokio::time::sleep(Duration::from_secs(1).min(params.window)).await;
        eprintln!("round {round}: victims with every abuser");
        let start = Mark::now(env.clock, &server);
        tokio::time::sleep(params.window).await;
        let end = Mark::now(env.clock, &server);
        relay.push(reading(env, &server, &format!("after phase 2, round {round}")).await);
        let (outcomes, _, secs) = stop_abusers(&server, abusers).await;
        for (abuser, counts) in outcomes {
            let merged = abuser_outcomes.entry(abuser).or_default();
            for (outcome, n) in counts {
                *merged.entry(outcome).or_default() += n;
            }
        }
        abuse_secs += secs;
        extra_phases.push((format!("abused (round {round})"), start, end));
        tokio::time::sleep(params.recovery).await;
        relay.push(
            reading(
                env,
                &server,
                &format!(
                    "{:.0} s after round {round} stopped",
                    params.recovery.as_secs_f64()
                ),
            )
            .await,
        );
    }

    let witnesses_held_secs = witnesses_opened.elapsed().as_secs_f64();
    let mut witnesses_open_at_end = 0;
    for stream in &mut witnesses {
        witnesses_open_at_end += u64::from(still_open(stream).await);
    }
    let mut slowloris = slowloris;
    slowloris.witnesses = witnesses.len() as u64;
    slowloris.witnesses_open_at_end = witnesses_open_at_end;
    slowloris.witnesses_held_secs = witnesses_held_secs;
    drop(witnesses);

    let sent = stop_senders(&pace, senders).await;
    drain(&participants, accepted(&sent), DRAIN_PATIENCE).await;
    let judged = env.clock.now_ns();
    let phases: Vec<Phase> = [
        ("alone".to_owned(), alone_start, alone_end),
        ("abused".to_owned(), abused_start, abused_end),
        ("recovery".to_owned(), recovery_start, recovery_end),
    ]
    .into_iter()
    .chain(extra_phases)
    .map(|(name, start, end)| {
        let window = start.ns..end.ns;
        let (started, failed) = counted_in(&sent, &window);
        let stats = judge(&participants, &window, started, failed, judged);
        let secs = (end.at - start.at).as_secs_f64();
        Phase {
            name,
            secs,
            sent_per_sec: stats.sent as f64 / secs,
            delivered_per_sec: stats.delivered as f64 / secs,
            failed: stats.failed,
            late: stats.late,
            latency: stats.latency,
            cpu: start.cpu_until(&end),
        }
    })
    .collect();
    let p99_ratio = (phases[0].latency.p99_ms > 0.0)
        .then(|| phases[1].latency.p99_ms / phases[0].latency.p99_ms);
    let unexpected: BTreeMap<String, u64> = abuser_outcomes
        .iter()
        .flat_map(|(abuser, outcomes)| {
            outcomes
                .iter()
                .filter(|(outcome, _)| !expected(abuser, outcome))
                .map(move |(outcome, n)| (format!("{abuser}/{outcome}"), *n))
        })
        .collect();
    let tally = settle(&participants, &sent, &errors);
    let report = AbuseReport {
        pairs: params.pairs,
        pairing: params.pairing,
        rate: params.rate,
        message_bytes: params.message_bytes,
        window_secs: params.window.as_secs_f64(),
        rate_limit: (
            mcp_chat::limits::DEFAULT_RATE_PER_SEC,
            mcp_chat::limits::DEFAULT_RATE_BURST,
        ),
        phases,
        p99_ratio,
        p99_ratio_goal: P99_RATIO_GOAL,
        relay,
        abusers: abuser_outcomes,
        abuse_secs,
        unexpected,
        slowloris,
        strict: params.strict,
        tally,
        server: server_info(&server),
    };
    finish(server, participants).await;
    Ok(Box::new(report))
}

/// The report, boxed (it is large next to the other scenarios').
pub type AbuseReportBox = Box<AbuseReport>;

async fn start_abusers(
    env: &Env,
    server: &Server,
    addr: SocketAddr,
    params: &AbuseParams,
    first_index: u32,
) -> Abusers {
    let started = Instant::now();
    let stop = CancellationToken::new();
    let mut outcomes: BTreeMap<&'static str, Outcomes> = BTreeMap::new();
    for name in [
        "flood",
        "queue_churn",
        "reconnect",
        "malformed",
        "slow_reader",
        "slow_reader_accomplice",
        "slowloris",
    ] {
        outcomes.insert(name, Outcomes::default());
    }
    let mut tasks = Vec::new();
    let mut participants = Vec::new();
    let url = server.url.clone();
    let clock = env.clock;
    let mut next_index = first_index;

    // Slowloris first: the longest set-up, and the connections should be there all along.
    let slowloris_out = outcomes["slowloris"].clone();
    // Each with the moment it was opened: the time to its closing tells the per-address cap
    // (at accept) from the header-read timeout, however long opening all of them takes.
    let opened: Vec<(Result<TcpStream, String>, Instant)> =
        futures::stream::iter(0..params.slowloris)
            .map(|_| async move {
                let stream = raw::open_partial_request(addr, Some(SLOWLORIS_ADDRESS)).await;
                (stream, Instant::now())
            })
            .buffer_unordered(64)
            .collect()
            .await;
    let mut slowloris = Vec::new();
    let mut slowloris_failed = 0;
    for (stream, opened) in opened {
        let mut stream = match stream {
            Ok(stream) => stream,
            // Connected, but the relay had closed the connection before the request was
            // written: the per-address cap, at accept.
            Err(kind) if kind == "connect:write" => {
                slowloris_out.add("opened");
                slowloris_out.add("closed_at_accept");
                continue;
            }
            Err(_) => {
                slowloris_failed += 1;
                slowloris_out.add("connect_failed");
                continue;
            }
        };
        slowloris_out.add("opened");
        let stop = stop.clone();
        let out = slowloris_out.clone();
        slowloris.push(tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            tokio::select! {
                _ = stop.cancelled() => {
                    out.add("open_at_stop");
                    None
                }
                _ = async {
                    // Whatever the relay answers (a 408, or nothing), we wait for it to close.
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                } => {
                    // The relay's per-address connection cap closes a connection as soon as it
                    // is accepted; its header-read timeout only after 10 s.
                    let after = opened.elapsed();
                    if after < AT_ACCEPT_WITHIN {
                        out.add("closed_at_accept");
                        None
                    } else {
                        out.add("closed_by_relay");
                        Some(after.as_secs_f64())
                    }
                }
            }
        }));
    }
    eprintln!(
        "  {} slowloris connections ({:.1} s)",
        slowloris.len(),
        started.elapsed().as_secs_f64()
    );

    // Slow readers and their accomplices.
    let slow_http = client_from(env, SLOW_READER_ADDRESS);
    let accomplice_http = client_from(env, ACCOMPLICE_ADDRESS);
    let base = next_index;
    next_index += params.slow_readers as u32 * 2;
    let pairs: Vec<Result<(RawSession, TcpStream, Participant), String>> =
        futures::stream::iter(0..params.slow_readers as u32)
            .map(|i| {
                let http = slow_http.clone();
                let accomplice_http = accomplice_http.clone();
                let url = url.clone();
                let run_id = env.run_id.clone();
                async move {
                    let reader = base + 2 * i;
                    let accomplice_index = reader + 1;
                    let session = raw::open_session(&http, &url, None).await?;
                    let stream = raw::open_unread_stream(
                        addr,
                        Some(SLOW_READER_ADDRESS),
                        &session,
                        SLOW_READER_RCVBUF,
                    )
                    .await?;
                    let room = format!("{run_id}-{}", accomplice_index / 2);
                    raw::call_tool(
                        &http,
                        &url,
                        &session,
                        mcp_chat::tools::JOIN_ROOM,
                        json!({ "room_id": room, "display_name": format!("p{reader}") }),
                    )
                    .await?;
                    let accomplice =
                        Participant::connect(&accomplice_http, &url, accomplice_index, clock)
                            .await?;
                    accomplice.pair(Pairing::Rooms, &run_id).await?;
                    Ok((session, stream, accomplice))
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect()
            .await;
    let mut slow_sessions = Vec::new();
    let slow_out = outcomes["slow_reader"].clone();
    let accomplices = pairs.len().max(1);
    for (n, pair) in pairs.into_iter().enumerate() {
        match pair {
            Err(kind) => slow_out.add(&format!("setup:{kind}")),
            Ok((session, stream, accomplice)) => {
                slow_out.add("setup:ok");
                slow_sessions.push((session, stream));
                let accomplice = Arc::new(accomplice);
                participants.push(accomplice.clone());
                let out = outcomes["slow_reader_accomplice"].clone();
                let stop = stop.clone();
                let size = params.slow_reader_message_bytes;
                let period = Duration::from_secs_f64(1.0 / mcp_chat::limits::DEFAULT_RATE_PER_SEC);
                // Spread over the period, as independent senders are: started together, the
                // accomplices would send in one burst every period, and what the victims
                // measured would be that burst's queue rather than the slow readers.
                let phase = period.mul_f64(n as f64 / accomplices as f64);
                tasks.push(tokio::spawn(async move {
                    let mut tick =
                        tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let text = "s".repeat(size);
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tick.tick() => {}
                        }
                        let result = accomplice.send(text.clone()).await;
                        out.add_result("send:", &result);
                    }
                }));
            }
        }
    }
    eprintln!(
        "  {} slow readers with accomplices ({:.1} s)",
        slow_sessions.len(),
        started.elapsed().as_secs_f64()
    );

    // The flooder and its partner.
    let flood_index = next_index.div_ceil(2) * 2;
    next_index = flood_index + 2;
    let flood_http = client_from(env, FLOOD_ADDRESS);
    let flood_pair = async {
        let a = Participant::connect(&flood_http, &url, flood_index, clock).await?;
        let b = Participant::connect(&flood_http, &url, flood_index + 1, clock).await?;
        let (ra, rb) = tokio::join!(
            a.pair(Pairing::Rooms, &env.run_id),
            b.pair(Pairing::Rooms, &env.run_id)
        );
        ra?;
        rb?;
        Ok::<_, String>((Arc::new(a), Arc::new(b)))
    }
    .await;
    match flood_pair {
        Err(kind) => outcomes["flood"].add(&format!("setup:{kind}")),
        Ok((flooder, partner)) => {
            participants.push(partner);
            participants.push(flooder.clone());
            for _ in 0..params.flood_in_flight {
                let flooder = flooder.clone();
                let out = outcomes["flood"].clone();
                let stop = stop.clone();
                let size = params.message_bytes;
                tasks.push(tokio::spawn(async move {
                    let text = "f".repeat(size);
                    while !stop.is_cancelled() {
                        out.add_result("", &flooder.send(text.clone()).await);
                    }
                }));
            }
        }
    }

    // Queue churners.
    let churn_http = client_from(env, QUEUE_CHURN_ADDRESS);
    for _ in 0..params.queue_churners {
        let index = next_index;
        next_index += 1;
        let out = outcomes["queue_churn"].clone();
        match Participant::connect(&churn_http, &url, index, clock).await {
            Err(kind) => out.add(&format!("setup:{kind}")),
            Ok(p) => {
                let p = Arc::new(p);
                participants.push(p.clone());
                let stop = stop.clone();
                tasks.push(tokio::spawn(async move {
                    let name = json!({ "display_name": format!("p{index}") });
                    while !stop.is_cancelled() {
                        let r = p.call(mcp_chat::tools::ENTER_QUEUE, name.clone()).await;
                        out.add_result("enter_queue:", &r);
                        let r = p.call(mcp_chat::tools::LEAVE_CHAT, json!({})).await;
                        out.add_result("leave_chat:", &r);
                    }
                }));
            }
        }
    }

    // Reconnect churn: open a session, delete it; every other one carries an identity token
    // (the same one each time for a loop, as a client reconnecting would).
    let reconnect_http = client_from(env, RECONNECT_ADDRESS);
    for worker in 0..params.reconnect_in_flight {
        let http = reconnect_http.clone();
        let url = url.clone();
        let out = outcomes["reconnect"].clone();
        let stop = stop.clone();
        let token = format!("abuse-reconnect-token-{worker:04}-{}", env.run_id);
        tasks.push(tokio::spawn(async move {
            let mut round = 0u64;
            while !stop.is_cancelled() {
                round += 1;
                let token = round.is_multiple_of(2).then_some(token.as_str());
                let result = match raw::open_session(&http, &url, token).await {
                    Ok(session) => raw::delete_session(&http, &url, &session).await,
                    Err(kind) => Err(kind),
                };
                match result {
                    Ok(()) if token.is_some() => out.add("ok_identity"),
                    Ok(()) => out.add("ok"),
                    Err(kind) => out.add(&kind),
                }
            }
        }));
    }

    // Malformed and oversized requests.
    let oversized: &'static [u8] = {
        let text = "a".repeat(OVERSIZED_BODY);
        let body = json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": { "name": mcp_chat::tools::SEND_MESSAGE, "arguments": { "text": text } }
        });
        // Once per run, so that every request can send it without a copy.
        Box::leak(body.to_string().into_bytes().into_boxed_slice())
    };
    // Oversized requests on connections of their own: the relay answers 413 without reading
    // the body and closes the connection, which must not break the other requests' pooled
    // connections (that is measured separately, see `oversized_then_reuse`).
    let http = client_from(env, MALFORMED_ADDRESS);
    let fresh = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .local_address(MALFORMED_ADDRESS)
        .build()
        .unwrap_or_else(|_| http.clone());
    for worker in 0..params.malformed_in_flight {
        let http = http.clone();
        let fresh = fresh.clone();
        let url = url.clone();
        let out = outcomes["malformed"].clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut round = worker;
            while !stop.is_cancelled() {
                round += 1;
                let kind = round % 4;
                let client = if kind == 0 { &fresh } else { &http };
                let outcome = malformed_request(client, &url, kind, oversized).await;
                out.add(&outcome);
            }
        }));
    }
    let _ = next_index;
    eprintln!(
        "  every abuser running ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Abusers {
        stop,
        tasks,
        participants,
        slow_sessions,
        slowloris,
        outcomes,
        slowloris_failed,
        slow_http,
        started,
    }
}

/// One malformed request of kind `kind` (0..4); the outcome is `<kind>:<status>[:<code>]`.
async fn malformed_request(
    http: &reqwest::Client,
    url: &str,
    kind: usize,
    oversized: &'static [u8],
) -> String {
    let base = http
        .post(url)
        .timeout(Duration::from_secs(30))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json");
    let (name, request) = match kind {
        0 => ("oversized", base.body(oversized)),
        1 => (
            "not_json",
            base.body("{\"jsonrpc\": \"2.0\", \"id\": 1, \"meth"),
        ),
        2 => (
            "not_jsonrpc",
            base.body("{\"hello\": \"relay\", \"numbers\": [1, 2, 3]}"),
        ),
        _ => (
            "unknown_session",
            base.header("mcp-session-id", "no-such-session-0123456789")
                .header("mcp-protocol-version", raw::PROTOCOL_VERSION)
                .body("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"tools/list\"}"),
        ),
    };
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return raw::transport(name, &e),
    };
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    if status == 400 {
        let code = raw::jsonrpc_of(&body)
            .and_then(|m| m["error"]["code"].as_i64())
            .map_or("none".to_owned(), |c| c.to_string());
        format!("{name}:{status}:{code}")
    } else {
        format!("{name}:{status}")
    }
}

/// True when the peer has neither closed `stream` nor sent anything on it (a read would
/// block).
async fn still_open(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf))
        .await
        .is_err()
}

/// Stops every abuser and closes what it held: the flooder's, churners' and accomplices'
/// sessions and the slow readers' sessions are deleted, the raw connections closed.
async fn stop_abusers(
    server: &Server,
    abusers: Abusers,
) -> (
    BTreeMap<String, BTreeMap<String, u64>>,
    SlowlorisReport,
    f64,
) {
    let Abusers {
        stop,
        tasks,
        participants,
        slow_sessions,
        slowloris,
        outcomes,
        slowloris_failed,
        slow_http,
        started,
    } = abusers;
    stop.cancel();
    let held_secs = started.elapsed().as_secs_f64();
    let closings: Vec<f64> = futures::future::join_all(slowloris)
        .await
        .into_iter()
        .filter_map(|r| r.ok().flatten())
        .collect();
    futures::future::join_all(tasks).await;
    let abuse_secs = started.elapsed().as_secs_f64();
    let slow_out = outcomes["slow_reader"].clone();
    futures::stream::iter(slow_sessions)
        .for_each_concurrent(SETUP_CONCURRENCY, |(session, stream)| {
            let out = slow_out.clone();
            let http = &slow_http;
            async move {
                let result = raw::delete_session(http, &server.url, &session).await;
                out.add_result("teardown:", &result);
                drop(stream);
            }
        })
        .await;
    crate::load::close_all(participants, SETUP_CONCURRENCY).await;
    let slowloris_counts = outcomes["slowloris"].snapshot();
    let count = |outcome: &str| slowloris_counts.get(outcome).copied().unwrap_or(0);
    let slowloris = SlowlorisReport {
        opened: count("opened"),
        failed: slowloris_failed,
        closed_at_accept: count("closed_at_accept"),
        closed_by_relay: closings.len() as u64,
        closed_after_secs: closings.iter().copied().fold(None, |acc, t| match acc {
            None => Some((t, t)),
            Some((lo, hi)) => Some((f64::min(lo, t), f64::max(hi, t))),
        }),
        held_secs,
        ..SlowlorisReport::default()
    };
    let outcomes = outcomes
        .into_iter()
        .map(|(name, o)| (name.to_owned(), o.snapshot()))
        .collect();
    (outcomes, slowloris, abuse_secs)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn pct(p: Option<f64>) -> String {
    p.map_or("–".to_owned(), |p| format!("{p:.0} %"))
}

/// The report as Markdown.
pub fn render(out: &mut String, r: &AbuseReport) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "## abuse: {} victim pairs at {:.0} msg/s ({} B, {} pairing), phases of {:.0} s, relay rate limit {}/s burst {}, per-address limits at their defaults (every victim and every kind of abuser on a loopback address of its own)\n",
        r.pairs, r.rate, r.message_bytes, r.pairing, r.window_secs, r.rate_limit.0, r.rate_limit.1
    );
    let _ = writeln!(
        out,
        "| phase | sent/s | delivered/s | p50 ms | p99 ms | p99.9 ms | max ms | late | failed | relay CPU | generator CPU | other load |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for p in &r.phases {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} |",
            p.name,
            p.sent_per_sec,
            p.delivered_per_sec,
            p.latency.p50_ms,
            p.latency.p99_ms,
            p.latency.p999_ms,
            p.latency.max_ms,
            p.late,
            p.failed,
            pct(p.cpu.server_pct),
            pct(p.cpu.generator_pct),
            pct(p.cpu.others_pct)
        );
    }
    let _ = writeln!(
        out,
        "\n| relay | VmRSS | RssAnon | open fds | sessions |\n|---|---|---|---|---|"
    );
    for reading in &r.relay {
        let (rss, anon) = reading
            .memory
            .map_or(("–".to_owned(), "–".to_owned()), |m| {
                (mib(m.rss_kib), mib(m.rss_anon_kib))
            });
        let _ = writeln!(
            out,
            "| {} | {rss} | {anon} | {} | {} |",
            reading.at,
            reading.open_fds.map_or("–".to_owned(), |n| n.to_string()),
            reading.sessions.map_or("–".to_owned(), |n| n.to_string())
        );
    }
    let _ = writeln!(
        out,
        "\n| abuser | calls by outcome (over {:.1} s) |\n|---|---|",
        r.abuse_secs
    );
    for (abuser, outcomes) in &r.abusers {
        let cells: Vec<String> = outcomes.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        let total: u64 = outcomes.values().sum();
        let _ = writeln!(
            out,
            "| {abuser} | {} ({:.0}/s) |",
            if cells.is_empty() {
                "none".to_owned()
            } else {
                cells.join(", ")
            },
            total as f64 / r.abuse_secs.max(1e-9)
        );
    }
    let _ = writeln!(out, "\n| measure | value |\n|---|---|");
    let _ = writeln!(
        out,
        "| victims' p99 abused ÷ alone (goal ≤ {}) | {} |",
        r.p99_ratio_goal,
        r.p99_ratio.map_or("–".to_owned(), |x| format!("{x:.2}"))
    );
    let s = &r.slowloris;
    let _ = writeln!(
        out,
        "| slowloris: opened / failed / closed at accept (within {:.0} s) / closed later by the relay within {:.0} s | {} / {} / {} / {}{} |",
        AT_ACCEPT_WITHIN.as_secs_f64(),
        s.held_secs,
        s.opened,
        s.failed,
        s.closed_at_accept,
        s.closed_by_relay,
        s.closed_after_secs
            .map_or(String::new(), |(a, b)| format!(" (after {a:.1}–{b:.1} s)"))
    );
    let _ = writeln!(
        out,
        "| partial requests held {:.0} s (the whole run): still open at the end | {} of {} |",
        s.witnesses_held_secs, s.witnesses_open_at_end, s.witnesses
    );
    let _ = writeln!(
        out,
        "| unexpected abuser outcomes | {} |",
        if r.unexpected.is_empty() {
            "none".to_owned()
        } else {
            r.unexpected
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let t = &r.tally;
    let _ = writeln!(
        out,
        "| victim messages sent / accepted / delivered | {} / {} / {} |",
        t.sent, t.accepted, t.delivered
    );
    let _ = writeln!(
        out,
        "| victim messages lost / duplicated | {} / {} |",
        t.lost, t.duplicated
    );
    let errors: Vec<String> = t.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    let _ = writeln!(
        out,
        "| victim errors | {} |",
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        }
    );
    let _ = writeln!(out, "| server | `{}` |", r.server.command);
    if r.server.log.warnings + r.server.log.errors > 0 {
        let _ = writeln!(
            out,
            "| server log | {} warnings, {} errors; first: {} |",
            r.server.log.warnings,
            r.server.log.errors,
            r.server.log.first.first().map_or("", String::as_str)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_outcomes() {
        assert!(expected("flood", "tool:rate_limited"));
        assert!(expected("flood", "http:429"));
        assert!(!expected("flood", "timeout"));
        assert!(expected("queue_churn", "leave_chat:tool:not_in_room"));
        assert!(!expected("queue_churn", "leave_chat:transport_send"));
        assert!(expected("malformed", "not_json:400:-32700"));
        assert!(expected("malformed", "not_json:429"));
        assert!(expected("malformed", "oversized:closed"));
        assert!(!expected("malformed", "oversized:transport"));
        assert!(!expected("malformed", "not_json:400:-32600"));
        assert!(!expected("malformed", "weird:429"));
        assert!(expected("reconnect", "initialize:http:429"));
        assert!(!expected("reconnect", "initialize:http:503"));
        assert!(!expected("reconnect", "delete:http:429"));
        assert!(expected("slowloris", "closed_at_accept"));
        assert!(!expected("slowloris", "connect_failed"));
    }

    #[test]
    fn addresses_are_distinct() {
        let victims: std::collections::HashSet<IpAddr> = (0..64_000).map(victim_address).collect();
        assert_eq!(victims.len(), 64_000);
        assert_eq!(victim_address(0), loopback(1, 0, 1));
        assert_eq!(victim_address(251), loopback(1, 1, 2));
        let abusers = [
            FLOOD_ADDRESS,
            QUEUE_CHURN_ADDRESS,
            RECONNECT_ADDRESS,
            MALFORMED_ADDRESS,
            SLOW_READER_ADDRESS,
            SLOWLORIS_ADDRESS,
            ACCOMPLICE_ADDRESS,
            WITNESS_ADDRESS,
        ];
        for a in abusers {
            assert!(!victims.contains(&a));
            assert!(a.is_loopback());
        }
    }
}
