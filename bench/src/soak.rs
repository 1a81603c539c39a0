//! Scenario `soak`: steady chatting with churn for a long bounded time, sampling the relay's
//! memory and file descriptors.
//!
//! P pairs chat at a total rate R. Every few seconds some pairs leave their room and pair again
//! (through the queue or a fresh room code, in turn), and some participants disconnect (HTTP
//! DELETE) and are replaced by new ones that join their old partner in a fresh room. A pair
//! stops sending and waits for its messages to arrive before it churns, so every accepted
//! message was accepted while both ends were in the same room and must arrive exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::sync::{Mutex as AsyncMutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::BenchError;
use crate::ledger::{Clock, LatencySummary, Received, Stamp, Tally, encode};
use crate::load::Crowd;
use crate::participant::{Pairing, Participant};
use crate::procfs::ProcSample;
use crate::report::ServerInfo;
use crate::scenario::{Env, Load, crowd, finish, health, server_info};
use crate::server::{RelayLimits, Server};

/// How long a pair waits for its messages to arrive before it churns (and at the end).
const QUIET_PATIENCE: Duration = Duration::from_secs(10);

/// Scenario `soak`.
#[derive(Debug, Clone)]
pub struct SoakParams {
    /// Pairs chatting.
    pub pairs: usize,
    /// Total messages per second.
    pub rate: f64,
    /// Message text size, bytes.
    pub message_bytes: usize,
    /// The whole run.
    pub duration: Duration,
    /// Time between two readings of the relay.
    pub sample_every: Duration,
    /// Time between two rounds of churn.
    pub churn_every: Duration,
    /// Pairs that leave and pair again each round.
    pub churn_repairs: usize,
    /// Participants replaced each round.
    pub churn_reconnects: usize,
    /// Participants connecting at once during the ramp.
    pub ramp_concurrency: usize,
    /// Smoke mode: any error fails the run.
    pub strict: bool,
}

/// One reading of the relay.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSample {
    /// Seconds since the ramp ended.
    pub at_secs: f64,
    /// Memory and CPU time.
    pub memory: Option<ProcSample>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// Sessions (`/healthz`).
    pub sessions: Option<u64>,
}

/// First, last, largest value and slope of one series.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trend {
    /// At the first reading.
    pub first: f64,
    /// At the last reading.
    pub last: f64,
    /// The largest reading.
    pub max: f64,
    /// Least-squares slope over every reading, per hour.
    pub slope_per_hour: f64,
    /// Least-squares slope over the second half of the run, per hour.
    pub slope_per_hour_second_half: f64,
}

impl Trend {
    fn of(points: &[(f64, f64)]) -> Option<Self> {
        let first = points.first()?.1;
        let last = points.last()?.1;
        let max = points.iter().map(|p| p.1).fold(f64::MIN, f64::max);
        let end = points.last()?.0;
        let half: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|p| p.0 >= end / 2.0)
            .collect();
        Some(Self {
            first,
            last,
            max,
            slope_per_hour: slope(points) * 3600.0,
            slope_per_hour_second_half: slope(&half) * 3600.0,
        })
    }
}

/// Least-squares slope of y over x (0 with fewer than two distinct x).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// Scenario `soak`.
#[derive(Debug, Serialize)]
pub struct SoakReport {
    /// Pairs chatting.
    pub pairs: usize,
    /// Total rate asked for, msg/s.
    pub rate: f64,
    /// Message size, bytes.
    pub message_bytes: usize,
    /// The run, s.
    pub duration_secs: f64,
    /// Churn: rounds every `churn_every_secs`, with so many re-pairings and replacements.
    pub churn_every_secs: f64,
    /// Re-pairings per round asked for.
    pub churn_repairs: usize,
    /// Replacements per round asked for.
    pub churn_reconnects: usize,
    /// Re-pairings done: through the queue, through a fresh room code.
    pub repaired: (u64, u64),
    /// Participants disconnected and replaced.
    pub replaced: u64,
    /// Every reading of the relay.
    pub samples: Vec<SoakSample>,
    /// VmRSS, KiB.
    pub rss_kib: Option<Trend>,
    /// RssAnon, KiB.
    pub rss_anon_kib: Option<Trend>,
    /// Open file descriptors.
    pub open_fds: Option<Trend>,
    /// Relay CPU over the run, percent of one CPU.
    pub relay_cpu_pct: Option<f64>,
    /// Delivery latency of every message.
    pub latency: LatencySummary,
    /// Smoke mode.
    pub strict: bool,
    /// Every message (accepted while both ends were in one room), and all errors.
    pub tally: Tally,
    /// The server.
    pub server: ServerInfo,
}

impl SoakReport {
    /// True when no message was lost or duplicated (and, in smoke mode, nothing failed).
    pub fn is_clean(&self) -> bool {
        let books = self.tally.lost == 0 && self.tally.duplicated == 0;
        books && (!self.strict || self.tally.is_clean())
    }
}

/// What a pair is told to do.
#[derive(Debug, Clone, Copy)]
enum Churn {
    /// Both leave and pair again this way.
    Repair(Pairing),
    /// One of them (the first or second) disconnects; a new participant takes its place.
    Replace(bool),
}

/// One message sent: by whom, which, to whom, and whether the relay accepted it.
#[derive(Debug, Clone, Copy)]
struct Record {
    sender: u32,
    seq: u64,
    recipient: u32,
    accepted: bool,
}

/// What a pair task hands back.
#[derive(Default)]
struct Books {
    records: Vec<Record>,
    /// Failed calls and churn steps, by kind.
    errors: Tally,
    /// Participants that left the run, with what they received.
    retired: Vec<(u32, Received)>,
    /// The pair at the end.
    members: Vec<Arc<Participant>>,
    repaired_queue: u64,
    repaired_rooms: u64,
    replaced: u64,
}

struct PairCtx {
    http: reqwest::Client,
    url: String,
    clock: Clock,
    run_id: String,
    size: usize,
    period: Duration,
    offset: Duration,
    /// Re-pairing through the queue one pair at a time, so that a pair finds itself.
    queue_lock: Arc<AsyncMutex<()>>,
    next_index: Arc<AtomicU32>,
    pair_id: usize,
}

/// Scenario `soak`.
pub async fn soak(env: &Env, params: &SoakParams) -> Result<Box<SoakReport>, BenchError> {
    let server = Server::start(
        &env.relay,
        RelayLimits::for_load(params.pairs * 2, params.message_bytes),
        env.server_cpus.as_deref(),
    )
    .await?;
    eprintln!("relay: {}", server.command);
    let load = Load {
        pairs: params.pairs,
        pairing: Pairing::Rooms,
        message_bytes: params.message_bytes,
        warmup: Duration::ZERO,
        duration: params.duration,
        ramp_concurrency: params.ramp_concurrency,
        mute_log_pushes: false,
    };
    let Crowd {
        participants,
        errors: setup_errors,
        ..
    } = crowd(env, &server, &load).await;
    let by_index: HashMap<u32, Arc<Participant>> =
        participants.iter().map(|p| (p.index, p.clone())).collect();
    let pairs: Vec<(Arc<Participant>, Arc<Participant>)> = participants
        .iter()
        .filter_map(|p| {
            let q = by_index.get(&p.partner()?)?;
            (p.index < q.index).then(|| (p.clone(), q.clone()))
        })
        .collect();
    drop(by_index);
    drop(participants);
    let n_pairs = pairs.len().max(1);
    let period = Duration::from_secs_f64(n_pairs as f64 / params.rate.max(1e-9));
    let stop = CancellationToken::new();
    let queue_lock = Arc::new(AsyncMutex::new(()));
    let next_index = Arc::new(AtomicU32::new((params.pairs * 2) as u32));
    let mut commands = Vec::new();
    let mut tasks = Vec::new();
    for (k, (a, b)) in pairs.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(1);
        commands.push(tx);
        let ctx = PairCtx {
            http: env.http.clone(),
            url: server.url.clone(),
            clock: env.clock,
            run_id: env.run_id.clone(),
            size: params.message_bytes,
            period,
            offset: period * k as u32 / n_pairs as u32,
            queue_lock: queue_lock.clone(),
            next_index: next_index.clone(),
            pair_id: k,
        };
        tasks.push(tokio::spawn(run_pair(ctx, a, b, rx, stop.clone())));
    }

    let started = Instant::now();
    let first_cpu = server.sample();
    let mut samples = Vec::new();
    let mut next_sample = started;
    let mut next_churn = started + params.churn_every;
    let mut rng = env.clock.now_ns() | 1;
    let mut round = 0u64;
    let end = started + params.duration;
    loop {
        let now = Instant::now();
        if now >= next_sample {
            let sample = SoakSample {
                at_secs: now.duration_since(started).as_secs_f64(),
                memory: server.sample(),
                open_fds: server.open_fds(),
                sessions: health(env, &server)
                    .await
                    .and_then(|h| h["sessions"].as_u64()),
            };
            eprintln!(
                "  {:>6.0} s: relay RSS {} KiB (anon {} KiB), {} fds, {} sessions",
                sample.at_secs,
                sample.memory.map_or(0, |m| m.rss_kib),
                sample.memory.map_or(0, |m| m.rss_anon_kib),
                sample.open_fds.unwrap_or(0),
                sample.sessions.unwrap_or(0)
            );
            samples.push(sample);
            if now >= end {
                break;
            }
            next_sample = (next_sample + params.sample_every).min(end);
        }
        if now >= next_churn {
            round += 1;
            for i in 0..params.churn_repairs {
                let k = pick(&mut rng, commands.len());
                let how = if (round + i as u64).is_multiple_of(2) {
                    Pairing::Queue
                } else {
                    Pairing::Rooms
                };
                let _ = commands[k].try_send(Churn::Repair(how));
            }
            for _ in 0..params.churn_reconnects {
                let k = pick(&mut rng, commands.len());
                let _ = commands[k].try_send(Churn::Replace(rng & 2 == 0));
            }
            next_churn += params.churn_every;
        }
        let wake = next_sample.min(next_churn).min(end);
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
    }
    let last_cpu = server.sample();
    let elapsed = started.elapsed();
    stop.cancel();
    drop(commands);
    let mut books = Vec::new();
    for task in tasks {
        if let Ok(b) = task.await {
            books.push(b);
        }
    }
    let report = settle_soak(
        params,
        &server,
        books,
        setup_errors,
        samples,
        (first_cpu, last_cpu),
        elapsed,
    );
    finish(server, Vec::new()).await;
    Ok(Box::new(report))
}

fn pick(rng: &mut u64, n: usize) -> usize {
    // xorshift64
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    (*rng % n.max(1) as u64) as usize
}

fn settle_soak(
    params: &SoakParams,
    server: &Server,
    books: Vec<Books>,
    setup_errors: Tally,
    samples: Vec<SoakSample>,
    cpu: (Option<ProcSample>, Option<ProcSample>),
    elapsed: Duration,
) -> SoakReport {
    let mut tally = setup_errors;
    let mut received: HashMap<u32, Received> = HashMap::new();
    let mut records = Vec::new();
    let (mut queue, mut rooms, mut replaced) = (0, 0, 0);
    for b in books {
        for (index, r) in b.retired {
            received.insert(index, r);
        }
        for p in &b.members {
            received.insert(p.index, p.take_received());
        }
        records.extend(b.records);
        tally.merge(&b.errors);
        queue += b.repaired_queue;
        rooms += b.repaired_rooms;
        replaced += b.replaced;
    }
    for r in &records {
        tally.sent += 1;
        let arrived = received
            .get(&r.recipient)
            .is_some_and(|got| got.has(r.sender, r.seq));
        if r.accepted {
            tally.accepted += 1;
            if arrived {
                tally.delivered += 1;
            } else {
                tally.lost += 1;
            }
        } else {
            tally.delivered_after_error += u64::from(arrived);
        }
    }
    let unique: u64 = received.values().map(Received::unique).sum();
    tally.error(
        "misrouted",
        unique.saturating_sub(tally.delivered + tally.delivered_after_error),
    );
    tally.duplicated += received.values().map(|r| r.duplicates).sum::<u64>();
    tally.error(
        "garbled_message",
        received.values().map(|r| r.garbled).sum(),
    );
    let latency = LatencySummary::of(
        received
            .values()
            .flat_map(|r| r.samples.iter().map(|s| s.latency_ns))
            .collect(),
    );
    let series = |f: &dyn Fn(&SoakSample) -> Option<f64>| {
        let points: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|s| Some((s.at_secs, f(s)?)))
            .collect();
        Trend::of(&points)
    };
    let relay_cpu_pct = match cpu {
        (Some(a), Some(b)) => Some((b.cpu_secs - a.cpu_secs) / elapsed.as_secs_f64() * 100.0),
        _ => None,
    };
    SoakReport {
        pairs: params.pairs,
        rate: params.rate,
        message_bytes: params.message_bytes,
        duration_secs: elapsed.as_secs_f64(),
        churn_every_secs: params.churn_every.as_secs_f64(),
        churn_repairs: params.churn_repairs,
        churn_reconnects: params.churn_reconnects,
        repaired: (queue, rooms),
        replaced,
        rss_kib: series(&|s| s.memory.map(|m| m.rss_kib as f64)),
        rss_anon_kib: series(&|s| s.memory.map(|m| m.rss_anon_kib as f64)),
        open_fds: series(&|s| s.open_fds.map(|n| n as f64)),
        samples,
        relay_cpu_pct,
        latency,
        strict: params.strict,
        tally,
        server: server_info(server),
    }
}

/// One pair: sends in turn at its share of the rate; churns when told; hands back its books.
async fn run_pair(
    ctx: PairCtx,
    a: Arc<Participant>,
    b: Arc<Participant>,
    mut commands: mpsc::Receiver<Churn>,
    stop: CancellationToken,
) -> Books {
    let mut books = Books::default();
    let mut members = [a, b];
    let mut seqs: HashMap<u32, u64> = HashMap::new();
    // Accepted messages sent to each participant, to know when they have all arrived.
    let mut owed: HashMap<u32, u64> = HashMap::new();
    let mut epoch = 0u64;
    let mut turn = 0usize;
    let mut broken = false;
    tokio::time::sleep(ctx.offset).await;
    let mut tick = tokio::time::interval(ctx.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let command = tokio::select! {
            _ = stop.cancelled() => break,
            command = commands.recv() => match command {
                Some(c) => Some(c),
                None => break,
            },
            _ = tick.tick() => None,
        };
        let Some(command) = command else {
            if broken {
                continue;
            }
            let (from, to) = (&members[turn % 2], &members[(turn + 1) % 2]);
            turn += 1;
            let seq = seqs.entry(from.index).or_default();
            let text = encode(
                Stamp {
                    sender: from.index,
                    seq: *seq,
                    sent_ns: ctx.clock.now_ns(),
                },
                ctx.size,
            );
            let record_seq = *seq;
            *seq += 1;
            let result = from.send(text).await;
            if let Err(kind) = &result {
                books.errors.error(format!("send:{kind}"), 1);
            } else {
                *owed.entry(to.index).or_default() += 1;
            }
            books.records.push(Record {
                sender: from.index,
                seq: record_seq,
                recipient: to.index,
                accepted: result.is_ok(),
            });
            continue;
        };
        if broken {
            continue;
        }
        // Quiet: everything accepted has arrived before anyone leaves.
        settle_pair(&members, &owed).await;
        epoch += 1;
        let result = match command {
            Churn::Repair(how) => repair(&ctx, &members, how, epoch)
                .await
                .map(|()| match how {
                    Pairing::Queue => books.repaired_queue += 1,
                    Pairing::Rooms => books.repaired_rooms += 1,
                }),
            Churn::Replace(first) => {
                let gone = usize::from(!first);
                replace(&ctx, &mut members, gone, epoch, &mut books.retired)
                    .await
                    .map(|()| books.replaced += 1)
            }
        };
        if let Err(kind) = result {
            books.errors.error(format!("churn:{kind}"), 1);
            broken = true;
        }
    }
    settle_pair(&members, &owed).await;
    books.members = members.to_vec();
    books
}

/// Waits until each member has received every accepted message sent to it, or the patience
/// runs out (what is missing then counts as lost).
async fn settle_pair(members: &[Arc<Participant>; 2], owed: &HashMap<u32, u64>) {
    let deadline = Instant::now() + QUIET_PATIENCE;
    loop {
        // A member's received set also holds what its earlier partners sent, all owed.
        let done = members
            .iter()
            .all(|p| p.received().unique() >= owed.get(&p.index).copied().unwrap_or(0));
        if done || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Both leave, then pair again through the queue or a fresh room.
async fn repair(
    ctx: &PairCtx,
    members: &[Arc<Participant>; 2],
    how: Pairing,
    epoch: u64,
) -> Result<(), String> {
    for p in members {
        p.call(mcp_chat::tools::LEAVE_CHAT, json!({}))
            .await
            .map_err(|k| format!("leave_chat:{k}"))?;
    }
    pair_again(ctx, members, how, epoch).await
}

async fn pair_again(
    ctx: &PairCtx,
    members: &[Arc<Participant>; 2],
    how: Pairing,
    epoch: u64,
) -> Result<(), String> {
    let seen = [members[0].rooms_found(), members[1].rooms_found()];
    let _queue = match how {
        Pairing::Queue => Some(ctx.queue_lock.lock().await),
        Pairing::Rooms => None,
    };
    for p in members {
        let name = format!("p{}", p.index);
        let (tool, args) = match how {
            Pairing::Queue => (
                mcp_chat::tools::ENTER_QUEUE,
                json!({ "display_name": name }),
            ),
            Pairing::Rooms => (
                mcp_chat::tools::JOIN_ROOM,
                json!({
                    "room_id": format!("{}-s{}-{epoch}", ctx.run_id, ctx.pair_id),
                    "display_name": name,
                }),
            ),
        };
        p.call(tool, args)
            .await
            .map_err(|k| format!("{tool}:{k}"))?;
    }
    for (p, seen) in members.iter().zip(seen) {
        let partner = p.wait_room_after(seen).await?;
        let expected = members.iter().find(|q| q.index != p.index).map(|q| q.index);
        if Some(partner) != expected {
            return Err("paired_with_a_stranger".to_owned());
        }
    }
    Ok(())
}

/// Member `gone` disconnects (HTTP DELETE) and a new participant joins its partner in a fresh
/// room. What the one that left received goes to `retired`.
async fn replace(
    ctx: &PairCtx,
    members: &mut [Arc<Participant>; 2],
    gone: usize,
    epoch: u64,
    retired: &mut Vec<(u32, Received)>,
) -> Result<(), String> {
    let index = ctx.next_index.fetch_add(1, Ordering::Relaxed);
    let fresh = Participant::connect(&ctx.http, &ctx.url, index, ctx.clock).await?;
    let old = std::mem::replace(&mut members[gone], Arc::new(fresh));
    retired.push((old.index, old.take_received()));
    if let Some(p) = Arc::into_inner(old) {
        // Its partner hears `partner.disconnected`; a private room stays open for it, so it
        // leaves too before both join a fresh one.
        p.close().await;
    }
    members[1 - gone]
        .call(mcp_chat::tools::LEAVE_CHAT, json!({}))
        .await
        .map_err(|k| format!("leave_chat:{k}"))?;
    pair_again(ctx, members, Pairing::Rooms, epoch).await
}

/// The report as Markdown.
pub fn render(out: &mut String, r: &SoakReport) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "## soak: {} pairs at {:.0} msg/s ({} B) for {:.0} s; churn every {:.0} s: {} re-pairings, {} replacements\n",
        r.pairs,
        r.rate,
        r.message_bytes,
        r.duration_secs,
        r.churn_every_secs,
        r.churn_repairs,
        r.churn_reconnects
    );
    let _ = writeln!(
        out,
        "| series | first | last | max | slope per hour | slope per hour, 2nd half |\n|---|---|---|---|---|---|"
    );
    for (name, trend, unit) in [
        ("relay VmRSS", &r.rss_kib, "KiB"),
        ("relay RssAnon", &r.rss_anon_kib, "KiB"),
        ("relay open fds", &r.open_fds, ""),
    ] {
        if let Some(t) = trend {
            let _ = writeln!(
                out,
                "| {name} | {:.0} {unit} | {:.0} {unit} | {:.0} {unit} | {:+.0} {unit} | {:+.0} {unit} |",
                t.first, t.last, t.max, t.slope_per_hour, t.slope_per_hour_second_half
            );
        }
    }
    let _ = writeln!(
        out,
        "\n| at s | VmRSS KiB | RssAnon KiB | fds | sessions |\n|---|---|---|---|---|"
    );
    for s in &r.samples {
        let _ = writeln!(
            out,
            "| {:.0} | {} | {} | {} | {} |",
            s.at_secs,
            s.memory.map_or("–".to_owned(), |m| m.rss_kib.to_string()),
            s.memory
                .map_or("–".to_owned(), |m| m.rss_anon_kib.to_string()),
            s.open_fds.map_or("–".to_owned(), |n| n.to_string()),
            s.sessions.map_or("–".to_owned(), |n| n.to_string())
        );
    }
    let _ = writeln!(out, "\n| measure | value |\n|---|---|");
    let _ = writeln!(
        out,
        "| re-pairings through the queue / a room code; replacements | {} / {}; {} |",
        r.repaired.0, r.repaired.1, r.replaced
    );
    let l = &r.latency;
    let _ = writeln!(
        out,
        "| delivery latency p50 / p99 / p99.9 / max | {:.2} / {:.2} / {:.2} / {:.2} ms (n = {}) |",
        l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
    );
    if let Some(cpu) = r.relay_cpu_pct {
        let _ = writeln!(out, "| relay CPU | {cpu:.1} % |");
    }
    let t = &r.tally;
    let _ = writeln!(
        out,
        "| messages sent / accepted / delivered | {} / {} / {} |",
        t.sent, t.accepted, t.delivered
    );
    let _ = writeln!(
        out,
        "| lost / duplicated / delivered after an error | {} / {} / {} |",
        t.lost, t.duplicated, t.delivered_after_error
    );
    let errors: Vec<String> = t.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    let _ = writeln!(
        out,
        "| errors | {} |",
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        }
    );
    let _ = writeln!(out, "| server | `{}` |", r.server.command);
}
