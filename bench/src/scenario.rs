//! The scenarios of issue 6: connection scale, throughput steps, latency at a fixed rate, the
//! HTTP baseline, and a smoke run of all of them in miniature.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use crate::BenchError;
use crate::ledger::{Clock, LatencySummary, Sent, window_latencies};
use crate::load::{
    Crowd, Pace, Ramp, accepted, close_all, drain, gather, send_stamped, settle, start_senders,
    stop_senders,
};
use crate::participant::{ClientKind, Clients, Pairing, Participant};
use crate::procfs::{self, ProcSample};
use crate::report::{
    BaselineReport, BaselineRun, ConnectionsReport, CpuReading, CpuShare, LatencyReport,
    ServerInfo, Step, ThroughputReport,
};
use crate::server::{RelayLimits, Server, ServerKind};

/// How long to wait for the last messages of a run to arrive before counting them lost.
const DRAIN_PATIENCE: Duration = Duration::from_secs(10);
/// Sessions closed at once when the relay is somebody else's (ours is simply stopped).
const CLOSE_CONCURRENCY: usize = 256;

/// What every scenario runs with.
pub struct Env {
    /// The relay to load.
    pub relay: ServerKind,
    /// `taskset` CPU list for spawned servers.
    pub server_cpus: Option<String>,
    /// The HTTP client every participant shares.
    pub http: reqwest::Client,
    /// The generator's clock.
    pub clock: Clock,
    /// Unique per run: room codes start with it.
    pub run_id: String,
    /// The participants' client code (rmcp's client, or the lean one).
    pub client: ClientKind,
}

/// Parameters shared by the scenarios that send messages.
#[derive(Debug, Clone)]
pub struct Load {
    /// Pairs of participants.
    pub pairs: usize,
    /// How they pair up.
    pub pairing: Pairing,
    /// Message text size, bytes.
    pub message_bytes: usize,
    /// Load before measuring.
    pub warmup: Duration,
    /// The measurement window.
    pub duration: Duration,
    /// Participants connecting at once during the ramp.
    pub ramp_concurrency: usize,
    /// Ask the relay not to mirror events as logging notifications.
    pub mute_log_pushes: bool,
}

/// Scenario `connections`.
#[derive(Debug, Clone)]
pub struct ConnectionsParams {
    /// Participants to connect (rounded up to an even number).
    pub participants: usize,
    /// How they pair up.
    pub pairing: Pairing,
    /// Participants connecting at once.
    pub ramp_concurrency: usize,
    /// Pause between the ramp and the memory reading.
    pub settle: Duration,
    /// Size of the messages each participant sends at the end.
    pub message_bytes: usize,
    /// Messages each participant sends to its partner at the end (one after the other), before
    /// the last memory reading; 0 for none.
    pub messages_each: usize,
}

/// Scenario `throughput`.
#[derive(Debug, Clone)]
pub struct ThroughputParams {
    /// Pairs, sizes, warm-up; `duration` is the length of each step's window.
    pub load: Load,
    /// Rate of the first step, msg/s.
    pub start_rate: f64,
    /// Each step's rate over the previous one's.
    pub step_factor: f64,
    /// No step above this rate, msg/s.
    pub max_rate: f64,
    /// A step passes while its p99 delivery latency stays at or below this, ms.
    pub p99_limit_ms: f64,
    /// Also measure the baseline at the same concurrency, after the relay is stopped.
    pub with_baseline: bool,
    /// A step during which the rest of the machine used more than this much CPU (percent of
    /// one CPU) is measured again, up to [`STEP_RETRIES`] times (a shared box: another
    /// process's burst says nothing about the relay).
    pub max_other_load_pct: Option<f64>,
}

/// How often a step disturbed by other load is measured again.
pub const STEP_RETRIES: usize = 6;

/// Scenario `latency`.
#[derive(Debug, Clone)]
pub struct LatencyParams {
    /// Pairs, sizes, warm-up, window.
    pub load: Load,
    /// Total messages per second.
    pub rate: f64,
}

/// Scenario `baseline`.
#[derive(Debug, Clone)]
pub struct BaselineParams {
    /// Concurrent sessions.
    pub sessions: usize,
    /// Message text size in the request, bytes.
    pub message_bytes: usize,
    /// Load before measuring.
    pub warmup: Duration,
    /// The measurement window.
    pub duration: Duration,
    /// Sessions connecting at once.
    pub ramp_concurrency: usize,
}

/// Readings of the server, the generator and the machine at one moment.
#[derive(Clone, Copy)]
pub(crate) struct Mark {
    pub(crate) at: Instant,
    pub(crate) ns: u64,
    pub(crate) cpu: CpuReading,
}

impl Mark {
    pub(crate) fn now(clock: Clock, server: &Server) -> Self {
        Self {
            at: Instant::now(),
            ns: clock.now_ns(),
            cpu: CpuReading {
                server: server.sample(),
                generator: procfs::sample_self(),
                machine_busy_secs: procfs::machine_busy_secs(),
            },
        }
    }

    pub(crate) fn cpu_until(&self, end: &Mark) -> CpuShare {
        CpuShare::between(&self.cpu, &end.cpu, end.at - self.at)
    }
}

pub(crate) fn server_info(server: &Server) -> ServerInfo {
    ServerInfo {
        command: server.command.clone(),
        log: server.log(),
    }
}

pub(crate) async fn health(env: &Env, server: &Server) -> Option<Value> {
    let url = format!("{}/healthz", server.base_url());
    let response = env.http.get(url).send().await.ok()?;
    response.json().await.ok()
}

async fn start_relay(env: &Env, participants: usize, size: usize) -> Result<Server, BenchError> {
    let server = Server::start(
        &env.relay,
        RelayLimits::for_load(participants, size),
        env.server_cpus.as_deref(),
    )
    .await?;
    eprintln!("relay: {}", server.command);
    Ok(server)
}

/// Ends a scenario: our relay is stopped (its sessions die with it, and the participants'
/// tasks end as they are dropped); somebody else's relay gets a DELETE for every session.
pub(crate) async fn finish(server: Server, participants: Vec<Arc<Participant>>) {
    if server.owned() {
        server.stop().await;
        drop(participants);
    } else {
        close_all(participants, CLOSE_CONCURRENCY).await;
        server.stop().await;
    }
}

/// Connects and pairs `2 × pairs` participants, all on the generator's shared client (one
/// source address: the spawned relay's per-address limits are off, see
/// [`RelayLimits::relay_args`]).
pub(crate) async fn crowd(env: &Env, server: &Server, load: &Load) -> Crowd {
    crowd_from(
        env,
        server,
        load,
        &Clients::shared(&env.http).with_kind(env.client),
    )
    .await
}

/// Connects and pairs `2 × pairs` participants, participant `i` with `clients.of(i)`.
pub(crate) async fn crowd_from(
    env: &Env,
    server: &Server,
    load: &Load,
    clients: &Clients,
) -> Crowd {
    let n = load.pairs * 2;
    eprintln!("connecting {n} participants ({} pairing)", load.pairing);
    let crowd = gather(
        clients,
        &server.url,
        n,
        Ramp {
            pairing: Some(load.pairing),
            concurrency: load.ramp_concurrency,
            mute_log_pushes: load.mute_log_pushes,
        },
        env.clock,
        &env.run_id,
    )
    .await;
    eprintln!(
        "  {} paired in {:.1} s",
        crowd.participants.len(),
        crowd.ramp.as_secs_f64()
    );
    crowd
}

/// Scenario `connections`: ramps to N idle participants in rooms and reads the relay's memory.
pub async fn connections(
    env: &Env,
    params: &ConnectionsParams,
) -> Result<ConnectionsReport, BenchError> {
    let n = params.participants.div_ceil(2) * 2;
    if let Some(limit) = procfs::open_files_limit()
        && (n as u64) + 1000 > limit
    {
        eprintln!(
            "warning: {n} participants need about {n} open files here and in the relay; the limit is {limit}"
        );
    }
    let server = start_relay(env, n, params.message_bytes).await?;
    // The empty relay has answered a request: its runtime and allocator are warmed up.
    let _ = health(env, &server).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let empty = server.sample();
    let load = Load {
        pairs: n / 2,
        pairing: params.pairing,
        message_bytes: params.message_bytes,
        warmup: Duration::ZERO,
        duration: Duration::ZERO,
        ramp_concurrency: params.ramp_concurrency,
        mute_log_pushes: false,
    };
    let Crowd {
        participants,
        errors,
        ramp,
    } = crowd(env, &server, &load).await;
    tokio::time::sleep(params.settle).await;
    let connected = server.sample();
    let relay_health = health(env, &server).await;
    let generator = procfs::sample_self();

    // Everyone is still there and working: each sends its messages to its partner (and so
    // receives as many), one after the other.
    let clock = env.clock;
    let size = params.message_bytes;
    let each = params.messages_each;
    let sent: Vec<Sent> = futures::stream::iter(participants.iter().cloned())
        .map(|p| async move {
            let mut sent = Sent {
                sender: p.index,
                ..Sent::default()
            };
            for _ in 0..each {
                send_stamped(&p, &mut sent, size, clock, None).await;
            }
            sent
        })
        .buffer_unordered(params.ramp_concurrency.max(1))
        .collect()
        .await;
    drain(
        &participants,
        accepted(&sent),
        DRAIN_PATIENCE + Duration::from_millis(each as u64 * 20),
    )
    .await;
    if each > 0 {
        tokio::time::sleep(params.settle).await;
    }
    let after_messages = server.sample();
    let tally = settle(&participants, &sent, &errors);
    let message_latency = LatencySummary::of(window_latencies(
        participants
            .iter()
            .map(|p| p.received())
            .collect::<Vec<_>>()
            .iter()
            .map(|g| &**g),
        &(0..u64::MAX),
    ));
    let per_at = |at: Option<ProcSample>, f: fn(&ProcSample) -> u64| match (empty, at) {
        (Some(a), Some(b)) if !participants.is_empty() => {
            Some((f(&b) as f64 - f(&a) as f64) * 1024.0 / participants.len() as f64)
        }
        _ => None,
    };
    let per = |f: fn(&ProcSample) -> u64| per_at(connected, f);
    let report = ConnectionsReport {
        participants: n,
        connected: participants.len(),
        pairing: params.pairing,
        ramp_secs: ramp.as_secs_f64(),
        empty_relay: empty,
        connected_relay: connected,
        after_messages,
        rss_bytes_per_participant: per(|s| s.rss_kib),
        anon_bytes_per_participant: per(|s| s.rss_anon_kib),
        messages_each: each,
        after_messages_rss_bytes_per_participant: per_at(after_messages, |s| s.rss_kib),
        after_messages_anon_bytes_per_participant: per_at(after_messages, |s| s.rss_anon_kib),
        relay_health,
        generator,
        message_latency,
        tally,
        server: server_info(&server),
    };
    finish(server, participants).await;
    Ok(report)
}

/// Counts and latencies of the messages sent in one window.
pub(crate) struct WindowStats {
    pub(crate) sent: u64,
    pub(crate) failed: u64,
    pub(crate) delivered: u64,
    pub(crate) late: u64,
    pub(crate) latency: LatencySummary,
}

/// Judges the messages sent in `window` at `judged_ns`: `sent` and `failed` calls, and what the
/// participants received. Messages sent in the window and not (yet) delivered count with a
/// latency of at least the time from the window's end to the judgement.
pub(crate) fn judge(
    participants: &[Arc<Participant>],
    window: &Range<u64>,
    sent: u64,
    failed: u64,
    judged_ns: u64,
) -> WindowStats {
    let guards: Vec<_> = participants.iter().map(|p| p.received()).collect();
    let mut latencies = window_latencies(guards.iter().map(|g| &**g), window);
    drop(guards);
    let delivered = latencies.len() as u64;
    let late = sent.saturating_sub(failed).saturating_sub(delivered);
    latencies.extend((0..late).map(|_| judged_ns.saturating_sub(window.end)));
    WindowStats {
        sent,
        failed,
        delivered,
        late,
        latency: LatencySummary::of(latencies),
    }
}

/// Calls started, and calls failed, in `window`, according to the senders.
pub(crate) fn counted_in(sent: &[Sent], window: &Range<u64>) -> (u64, u64) {
    let mut started = 0;
    let mut failed = 0;
    for s in sent {
        started += s.starts.iter().filter(|t| window.contains(t)).count() as u64;
        failed += s
            .failed
            .iter()
            .filter(|(seq, _)| window.contains(&s.starts[*seq as usize]))
            .count() as u64;
    }
    (started, failed)
}

/// Scenario `throughput`: P pairs chat at increasing rates until the p99 delivery latency
/// passes the limit; the highest delivered rate of a passing step is the sustained rate.
pub async fn throughput(
    env: &Env,
    params: &ThroughputParams,
) -> Result<ThroughputReport, BenchError> {
    let load = &params.load;
    let server = start_relay(env, load.pairs * 2, load.message_bytes).await?;
    let Crowd {
        participants,
        errors,
        ..
    } = crowd(env, &server, load).await;
    // Judging a step waits this long after its window for the window's last messages.
    let grace = load.duration.min(Duration::from_secs(1));
    let pace = Pace::new(Some(params.start_rate), participants.len());
    let senders = start_senders(&participants, &pace, load.message_bytes, env.clock);
    let mut windows: Vec<(f64, Range<u64>, CpuShare)> = Vec::new();
    let mut rate = params.start_rate;
    let mut retries = 0;
    let stopped_because = loop {
        pace.set_rate(Some(rate));
        tokio::time::sleep(load.warmup).await;
        let (started0, failed0) = (pace.started.load(ORD), pace.failed.load(ORD));
        let start = Mark::now(env.clock, &server);
        tokio::time::sleep(load.duration).await;
        let end = Mark::now(env.clock, &server);
        let (started1, failed1) = (pace.started.load(ORD), pace.failed.load(ORD));
        tokio::time::sleep(grace).await;
        let window = start.ns..end.ns;
        let secs = load.duration.as_secs_f64();
        let stats = judge(
            &participants,
            &window,
            started1 - started0,
            failed1 - failed0,
            env.clock.now_ns(),
        );
        let cpu = start.cpu_until(&end);
        if let (Some(limit), Some(others)) = (params.max_other_load_pct, cpu.others_pct)
            && others > limit
            && retries < STEP_RETRIES
        {
            retries += 1;
            eprintln!(
                "  {rate:.0} msg/s offered: other load {others:.0} % > {limit} %, measuring again"
            );
            continue;
        }
        retries = 0;
        windows.push((rate, window, cpu));
        eprintln!(
            "  {rate:.0} msg/s offered: sent {:.0}/s, delivered {:.0}/s, p99 {:.2} ms, late {}, failed {}",
            stats.sent as f64 / secs,
            stats.delivered as f64 / secs,
            stats.latency.p99_ms,
            stats.late,
            stats.failed
        );
        if stats.latency.p99_ms > params.p99_limit_ms {
            break format!(
                "p99 {:.1} ms > {} ms at {rate:.0} msg/s offered",
                stats.latency.p99_ms, params.p99_limit_ms
            );
        }
        if stats.failed > 0 {
            break format!("{} calls failed at {rate:.0} msg/s offered", stats.failed);
        }
        if (stats.sent as f64) < 0.9 * rate * secs {
            break format!(
                "senders reached only {:.0} of {rate:.0} msg/s offered (calls too slow)",
                stats.sent as f64 / secs
            );
        }
        if rate * params.step_factor > params.max_rate {
            break format!("next step would pass --max-rate {}", params.max_rate);
        }
        rate *= params.step_factor;
    };
    let sent = stop_senders(&pace, senders).await;
    drain(&participants, accepted(&sent), DRAIN_PATIENCE).await;
    let judged = env.clock.now_ns();
    // The final numbers come from the senders' own records, after everything arrived.
    let steps: Vec<Step> = windows
        .into_iter()
        .map(|(offered, window, cpu)| {
            let (started, failed) = counted_in(&sent, &window);
            let stats = judge(&participants, &window, started, failed, judged);
            let secs = (window.end - window.start) as f64 / 1e9;
            Step {
                offered_per_sec: offered,
                sent_per_sec: stats.sent as f64 / secs,
                delivered_per_sec: stats.delivered as f64 / secs,
                late: stats.late,
                failed: stats.failed,
                passed: stats.latency.p99_ms <= params.p99_limit_ms
                    && stats.failed == 0
                    && stats.late == 0,
                latency: stats.latency,
                cpu,
            }
        })
        .collect();
    let sustained_per_sec = steps
        .iter()
        .filter(|s| s.passed)
        .map(|s| s.delivered_per_sec)
        .fold(0.0, f64::max);
    let tally = settle(&participants, &sent, &errors);
    let server_info = server_info(&server);
    finish(server, participants).await;
    let baseline = if params.with_baseline {
        let report = baseline_report(
            env,
            &BaselineParams {
                sessions: load.pairs * 2,
                message_bytes: load.message_bytes,
                warmup: load.warmup,
                duration: load.duration,
                ramp_concurrency: load.ramp_concurrency,
            },
        )
        .await?;
        Some(Box::new(report))
    } else {
        None
    };
    let ratio_to_baseline = baseline
        .as_ref()
        .map(|b| sustained_per_sec / b.rmcp_client.requests_per_sec.max(1e-9));
    Ok(ThroughputReport {
        pairs: load.pairs,
        pairing: load.pairing,
        message_bytes: load.message_bytes,
        warmup_secs: load.warmup.as_secs_f64(),
        step_secs: load.duration.as_secs_f64(),
        p99_limit_ms: params.p99_limit_ms,
        steps,
        sustained_per_sec,
        stopped_because,
        tally,
        baseline,
        ratio_to_baseline,
        server: server_info,
    })
}

const ORD: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

/// Scenario `latency`: P pairs chat at a fixed total rate; delivery latency percentiles.
pub async fn latency(env: &Env, params: &LatencyParams) -> Result<LatencyReport, BenchError> {
    let load = &params.load;
    let server = start_relay(env, load.pairs * 2, load.message_bytes).await?;
    let Crowd {
        participants,
        errors,
        ..
    } = crowd(env, &server, load).await;
    let pace = Pace::new(Some(params.rate), participants.len());
    let senders = start_senders(&participants, &pace, load.message_bytes, env.clock);
    tokio::time::sleep(load.warmup).await;
    let start = Mark::now(env.clock, &server);
    tokio::time::sleep(load.duration).await;
    let end = Mark::now(env.clock, &server);
    let sent = stop_senders(&pace, senders).await;
    drain(&participants, accepted(&sent), DRAIN_PATIENCE).await;
    let window = start.ns..end.ns;
    let (started, failed) = counted_in(&sent, &window);
    let stats = judge(&participants, &window, started, failed, env.clock.now_ns());
    let call = LatencySummary::of(
        sent.iter()
            .flat_map(|s| s.starts.iter().zip(&s.call_ns))
            .filter(|(t, _)| window.contains(t))
            .map(|(_, d)| *d)
            .collect(),
    );
    let secs = (end.at - start.at).as_secs_f64();
    let cpu = start.cpu_until(&end);
    let relay_cpu_us_per_message = match (start.cpu.server, end.cpu.server) {
        (Some(a), Some(b)) if stats.delivered > 0 => {
            Some((b.cpu_secs - a.cpu_secs) * 1e6 / stats.delivered as f64)
        }
        _ => None,
    };
    let report = LatencyReport {
        pairs: load.pairs,
        pairing: load.pairing,
        rate: params.rate,
        message_bytes: load.message_bytes,
        warmup_secs: load.warmup.as_secs_f64(),
        duration_secs: load.duration.as_secs_f64(),
        sent_per_sec: stats.sent as f64 / secs,
        delivered_per_sec: stats.delivered as f64 / secs,
        latency: stats.latency,
        call,
        cpu,
        relay_cpu_us_per_message,
        relay_memory: end.cpu.server,
        tally: settle(&participants, &sent, &errors),
        server: server_info(&server),
    };
    finish(server, participants).await;
    Ok(report)
}

/// Scenario `baseline`.
pub async fn baseline(env: &Env, params: &BaselineParams) -> Result<BaselineReport, BenchError> {
    baseline_report(env, params).await
}

async fn baseline_report(env: &Env, params: &BaselineParams) -> Result<BaselineReport, BenchError> {
    let limits = RelayLimits::for_load(params.sessions, params.message_bytes);
    let server = Server::start(&ServerKind::Baseline, limits, env.server_cpus.as_deref()).await?;
    eprintln!("baseline: {}", server.command);

    // 1. rmcp clients: exactly the client code the relay scenarios use, sending back to back.
    let crowd = gather(
        &Clients::shared(&env.http),
        &server.url,
        params.sessions,
        Ramp {
            pairing: None,
            concurrency: params.ramp_concurrency,
            mute_log_pushes: false,
        },
        env.clock,
        &env.run_id,
    )
    .await;
    let pace = Pace::new(None, crowd.participants.len());
    let senders = start_senders(&crowd.participants, &pace, params.message_bytes, env.clock);
    tokio::time::sleep(params.warmup).await;
    let start = Mark::now(env.clock, &server);
    tokio::time::sleep(params.duration).await;
    let end = Mark::now(env.clock, &server);
    let sent = stop_senders(&pace, senders).await;
    let window = start.ns..end.ns;
    let mut rmcp_client = BaselineRun {
        cpu: start.cpu_until(&end),
        errors: crowd.errors.errors.clone(),
        ..BaselineRun::default()
    };
    let mut answered = Vec::new();
    for s in &sent {
        let failed: std::collections::HashSet<u64> = s.failed.iter().map(|(q, _)| *q).collect();
        for (seq, (t, d)) in s.starts.iter().zip(&s.call_ns).enumerate() {
            if window.contains(t) && !failed.contains(&(seq as u64)) {
                answered.push(*d);
            }
        }
        for (_, kind) in &s.failed {
            *rmcp_client.errors.entry(kind.clone()).or_default() += 1;
        }
    }
    let secs = (end.at - start.at).as_secs_f64();
    rmcp_client.requests_per_sec = answered.len() as f64 / secs;
    rmcp_client.latency = LatencySummary::of(answered);
    eprintln!(
        "  rmcp client: {:.0} requests/s",
        rmcp_client.requests_per_sec
    );
    close_all(crowd.participants, CLOSE_CONCURRENCY).await;

    // 2. Bare POSTs of the same body over the same reqwest client.
    let raw_http = raw_http_run(env, &server, params).await;
    eprintln!("  raw HTTP: {:.0} requests/s", raw_http.requests_per_sec);
    let report = BaselineReport {
        sessions: params.sessions,
        message_bytes: params.message_bytes,
        warmup_secs: params.warmup.as_secs_f64(),
        duration_secs: params.duration.as_secs_f64(),
        rmcp_client,
        raw_http,
        server: server_info(&server),
    };
    server.stop().await;
    Ok(report)
}

/// `sessions` tasks POSTing a `tools/call send_message` body back to back, with the headers an
/// rmcp client sends, reading every answer in full.
async fn raw_http_run(env: &Env, server: &Server, params: &BaselineParams) -> BaselineRun {
    let stop = tokio_util::sync::CancellationToken::new();
    let tasks: Vec<_> = (0..params.sessions as u32)
        .map(|sender| {
            let http = env.http.clone();
            let url = server.url.clone();
            let stop = stop.clone();
            let clock = env.clock;
            let size = params.message_bytes;
            tokio::spawn(async move {
                let mut done: Vec<(u64, u64, Option<String>)> = Vec::new();
                let mut seq = 0u64;
                while !stop.is_cancelled() {
                    let start = clock.now_ns();
                    let text = crate::ledger::encode(
                        crate::ledger::Stamp {
                            sender,
                            seq,
                            sent_ns: start,
                        },
                        size,
                    );
                    let body = serde_json::json!({
                        "jsonrpc": "2.0", "id": seq, "method": "tools/call",
                        "params": { "name": mcp_chat::tools::SEND_MESSAGE, "arguments": { "text": text } }
                    })
                    .to_string();
                    seq += 1;
                    let result = http
                        .post(&url)
                        .header("accept", "application/json, text/event-stream")
                        .header("content-type", "application/json")
                        .header("mcp-session-id", "baseline")
                        .header("mcp-protocol-version", "2025-11-25")
                        .body(body)
                        .send()
                        .await;
                    let error = match result {
                        Ok(response) if response.status().is_success() => {
                            response.bytes().await.err().map(|_| "transport".to_owned())
                        }
                        Ok(response) => Some(format!("http:{}", response.status().as_u16())),
                        Err(_) => Some("transport".to_owned()),
                    };
                    done.push((start, clock.now_ns() - start, error));
                }
                done
            })
        })
        .collect();
    tokio::time::sleep(params.warmup).await;
    let start = Mark::now(env.clock, server);
    tokio::time::sleep(params.duration).await;
    let end = Mark::now(env.clock, server);
    stop.cancel();
    let window = start.ns..end.ns;
    let mut run = BaselineRun {
        cpu: start.cpu_until(&end),
        ..BaselineRun::default()
    };
    let mut answered = Vec::new();
    for task in futures::future::join_all(tasks).await.into_iter().flatten() {
        for (t, d, error) in task {
            match error {
                Some(kind) => *run.errors.entry(kind).or_default() += 1,
                None if window.contains(&t) => answered.push(d),
                None => {}
            }
        }
    }
    run.requests_per_sec = answered.len() as f64 / (end.at - start.at).as_secs_f64();
    run.latency = LatencySummary::of(answered);
    run
}
