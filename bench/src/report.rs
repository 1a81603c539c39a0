//! What a run found, as data (serialised for `--json`) and as readable Markdown tables.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::ledger::{LatencySummary, Tally};
use crate::participant::Pairing;
use crate::procfs::ProcSample;
use crate::server::LogSummary;

/// The server a scenario ran against.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    /// How it was started (or its URL when external).
    pub command: String,
    /// What it logged at WARN and ERROR.
    pub log: LogSummary,
}

/// CPU used during a measurement window, in percent of one CPU.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuShare {
    /// The server process (`None` when it is not ours to sample).
    pub server_pct: Option<f64>,
    /// The generator (this process).
    pub generator_pct: Option<f64>,
    /// Everything else the machine did (other processes, interrupts): a busy neighbour
    /// makes the other numbers of the window unreliable.
    pub others_pct: Option<f64>,
}

/// Readings of the server, the generator and the whole machine at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuReading {
    /// The server process.
    pub server: Option<ProcSample>,
    /// This process.
    pub generator: Option<ProcSample>,
    /// Busy CPU time of the machine, s.
    pub machine_busy_secs: Option<f64>,
}

impl CpuShare {
    /// The share between two readings `wall` apart.
    pub fn between(a: &CpuReading, b: &CpuReading, wall: Duration) -> Self {
        let secs = wall.as_secs_f64();
        let pct = |a: Option<ProcSample>, b: Option<ProcSample>| {
            let (a, b) = (a?, b?);
            Some((b.cpu_secs - a.cpu_secs) / secs * 100.0)
        };
        let server_pct = pct(a.server, b.server);
        let generator_pct = pct(a.generator, b.generator);
        let others_pct = match (a.machine_busy_secs, b.machine_busy_secs) {
            (Some(x), Some(y)) => Some(
                ((y - x) / secs * 100.0 - server_pct.unwrap_or(0.0) - generator_pct.unwrap_or(0.0))
                    .max(0.0),
            ),
            _ => None,
        };
        Self {
            server_pct,
            generator_pct,
            others_pct,
        }
    }
}

/// Scenario `connections`.
#[derive(Debug, Serialize)]
pub struct ConnectionsReport {
    /// Participants asked for.
    pub participants: usize,
    /// Participants connected and paired.
    pub connected: usize,
    /// How they were paired.
    pub pairing: Pairing,
    /// Time to connect and pair them all, s.
    pub ramp_secs: f64,
    /// The relay before anyone connected (after answering one `/healthz`).
    pub empty_relay: Option<ProcSample>,
    /// The relay with everyone connected, idle, in rooms.
    pub connected_relay: Option<ProcSample>,
    /// The relay after everyone sent its messages (and received its partner's).
    pub after_messages: Option<ProcSample>,
    /// Messages each participant sent (and received) before `after_messages`.
    pub messages_each: usize,
    /// Resident memory above the empty relay per participant after the messages, bytes: the
    /// inbox and the room transcript included.
    pub after_messages_rss_bytes_per_participant: Option<f64>,
    /// The same, anonymous memory only, bytes.
    pub after_messages_anon_bytes_per_participant: Option<f64>,
    /// Resident memory above the empty relay per participant, bytes.
    pub rss_bytes_per_participant: Option<f64>,
    /// Anonymous (heap) memory above the empty relay per participant, bytes.
    pub anon_bytes_per_participant: Option<f64>,
    /// The relay's `/healthz` with everyone connected.
    pub relay_health: Option<Value>,
    /// The generator with everyone connected.
    pub generator: Option<ProcSample>,
    /// Latency of the messages each participant sent at the end.
    pub message_latency: LatencySummary,
    /// The messages of that check, and all errors.
    pub tally: Tally,
    /// The server.
    pub server: ServerInfo,
}

/// One rate step of scenario `throughput`.
#[derive(Debug, Serialize)]
pub struct Step {
    /// Messages per second asked of the senders.
    pub offered_per_sec: f64,
    /// `send_message` calls started per second.
    pub sent_per_sec: f64,
    /// Messages sent in the window that were delivered, per second.
    pub delivered_per_sec: f64,
    /// Messages sent in the window still undelivered a second after it (counted as infinitely
    /// late in the percentiles).
    pub late: u64,
    /// Calls that failed in the window.
    pub failed: u64,
    /// Delivery latency of the messages sent in the window.
    pub latency: LatencySummary,
    /// CPU use during the window.
    pub cpu: CpuShare,
    /// Whether the step met the latency limit without failures.
    pub passed: bool,
}

/// Scenario `throughput`.
#[derive(Debug, Serialize)]
pub struct ThroughputReport {
    /// Pairs chatting.
    pub pairs: usize,
    /// How they were paired.
    pub pairing: Pairing,
    /// Message text size, bytes.
    pub message_bytes: usize,
    /// Warm-up before each step's window, s.
    pub warmup_secs: f64,
    /// Length of each step's window, s.
    pub step_secs: f64,
    /// The p99 delivery latency a step may reach, ms.
    pub p99_limit_ms: f64,
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// The highest delivered rate of a passing step, msg/s.
    pub sustained_per_sec: f64,
    /// Why the steps ended.
    pub stopped_because: String,
    /// Every message of the run, and all errors.
    pub tally: Tally,
    /// The baseline at the same concurrency, when measured in the same run.
    pub baseline: Option<Box<BaselineReport>>,
    /// Sustained delivered msg/s over the baseline's requests/s (rmcp client).
    pub ratio_to_baseline: Option<f64>,
    /// The server.
    pub server: ServerInfo,
}

/// Scenario `latency`.
#[derive(Debug, Serialize)]
pub struct LatencyReport {
    /// Pairs chatting.
    pub pairs: usize,
    /// How they were paired.
    pub pairing: Pairing,
    /// Messages per second asked for, in total.
    pub rate: f64,
    /// Message text size, bytes.
    pub message_bytes: usize,
    /// Warm-up before the window, s.
    pub warmup_secs: f64,
    /// The window, s.
    pub duration_secs: f64,
    /// `send_message` calls started per second in the window.
    pub sent_per_sec: f64,
    /// Messages sent in the window and delivered, per second.
    pub delivered_per_sec: f64,
    /// Delivery latency: `send_message` call start → partner's `message.received`.
    pub latency: LatencySummary,
    /// `send_message` round trip (call start → result).
    pub call: LatencySummary,
    /// CPU use during the window.
    pub cpu: CpuShare,
    /// Relay CPU time per delivered message, µs.
    pub relay_cpu_us_per_message: Option<f64>,
    /// The relay at the end of the window.
    pub relay_memory: Option<ProcSample>,
    /// Every message of the run, and all errors.
    pub tally: Tally,
    /// The server.
    pub server: ServerInfo,
}

/// One way of loading the baseline.
#[derive(Debug, Default, Serialize)]
pub struct BaselineRun {
    /// Answered requests per second.
    pub requests_per_sec: f64,
    /// Request round trip.
    pub latency: LatencySummary,
    /// Failed requests by kind.
    pub errors: BTreeMap<String, u64>,
    /// CPU use during the window.
    pub cpu: CpuShare,
}

/// Scenario `baseline`.
#[derive(Debug, Serialize)]
pub struct BaselineReport {
    /// Concurrent sessions (each sends its next request when the previous one is answered).
    pub sessions: usize,
    /// Message text size in the request, bytes.
    pub message_bytes: usize,
    /// Warm-up, s.
    pub warmup_secs: f64,
    /// Window, s.
    pub duration_secs: f64,
    /// Driven by rmcp clients, the same client code as the relay scenarios.
    pub rmcp_client: BaselineRun,
    /// Driven by bare reqwest POSTs of the same body (the cost of HTTP alone).
    pub raw_http: BaselineRun,
    /// The server.
    pub server: ServerInfo,
}

impl BaselineReport {
    /// True when both kinds of baseline client saw no error.
    pub(crate) fn is_clean(&self) -> bool {
        self.rmcp_client.errors.is_empty() && self.raw_http.errors.is_empty()
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn pct(p: Option<f64>) -> String {
    p.map_or("–".to_owned(), |p| format!("{p:.0} %"))
}

fn latency_cells(l: &LatencySummary) -> String {
    format!(
        "{:.2} / {:.2} / {:.2} / {:.2} / {:.2} ms (n = {})",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
    )
}

fn tally_rows(out: &mut String, t: &Tally) {
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
    let _ = writeln!(out, "| errors | {} |", errors_cell(&t.errors));
}

fn errors_cell(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".to_owned();
    }
    errors
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn server_rows(out: &mut String, s: &ServerInfo) {
    let _ = writeln!(out, "| server | `{}` |", s.command);
    if s.log.warnings + s.log.errors > 0 {
        let _ = writeln!(
            out,
            "| server log | {} warnings, {} errors; first: {} |",
            s.log.warnings,
            s.log.errors,
            s.log.first.first().map_or("", String::as_str)
        );
    }
}

pub(crate) fn render_connections(out: &mut String, r: &ConnectionsReport) {
    let _ = writeln!(
        out,
        "## connections: {} idle participants in rooms ({} pairing)\n\n| measure | value |\n|---|---|",
        r.participants, r.pairing
    );
    let _ = writeln!(
        out,
        "| connected and paired | {} of {} in {:.1} s ({:.0}/s) |",
        r.connected,
        r.participants,
        r.ramp_secs,
        r.connected as f64 / r.ramp_secs.max(1e-9)
    );
    if let (Some(empty), Some(full)) = (r.empty_relay, r.connected_relay) {
        let _ = writeln!(
            out,
            "| relay RSS: empty → connected (anonymous) | {} → {} ({} → {}) |",
            mib(empty.rss_kib),
            mib(full.rss_kib),
            mib(empty.rss_anon_kib),
            mib(full.rss_anon_kib)
        );
    }
    if let (Some(rss), Some(anon)) = (r.rss_bytes_per_participant, r.anon_bytes_per_participant) {
        let _ = writeln!(
            out,
            "| relay memory per participant: RSS (anonymous) | {:.2} KiB ({:.2} KiB) |",
            rss / 1024.0,
            anon / 1024.0
        );
    }
    if let Some(after) = r.after_messages
        && r.messages_each > 0
    {
        let _ = writeln!(
            out,
            "| relay RSS after {} messages sent and received each | {} |",
            r.messages_each,
            mib(after.rss_kib)
        );
    }
    if let (Some(rss), Some(anon)) = (
        r.after_messages_rss_bytes_per_participant,
        r.after_messages_anon_bytes_per_participant,
    ) && r.messages_each > 0
    {
        let _ = writeln!(
            out,
            "| relay memory per participant after {} messages each: RSS (anonymous) | {:.2} KiB ({:.2} KiB) |",
            r.messages_each,
            rss / 1024.0,
            anon / 1024.0
        );
    }
    if let Some(h) = &r.relay_health {
        let _ = writeln!(
            out,
            "| relay /healthz | sessions {}, participants {}, rooms {} |",
            h["sessions"], h["participants"], h["rooms"]
        );
    }
    if let Some(g) = r.generator {
        let _ = writeln!(out, "| generator RSS | {} |", mib(g.rss_kib));
    }
    let _ = writeln!(
        out,
        "| the messages at the end: latency p50 / p90 / p99 / p99.9 / max | {} |",
        latency_cells(&r.message_latency)
    );
    tally_rows(out, &r.tally);
    server_rows(out, &r.server);
}

pub(crate) fn render_throughput(out: &mut String, r: &ThroughputReport) {
    let _ = writeln!(
        out,
        "## throughput: {} pairs, {} B messages, steps of {:.1} s after {:.1} s warm-up, p99 limit {} ms\n",
        r.pairs, r.message_bytes, r.step_secs, r.warmup_secs, r.p99_limit_ms
    );
    let _ = writeln!(
        out,
        "| offered msg/s | sent/s | delivered/s | p50 ms | p99 ms | max ms | late | failed | relay CPU | relay µs/msg | generator CPU | other load | ok |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for s in &r.steps {
        let _ = writeln!(
            out,
            "| {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
            s.offered_per_sec,
            s.sent_per_sec,
            s.delivered_per_sec,
            s.latency.p50_ms,
            s.latency.p99_ms,
            s.latency.max_ms,
            s.late,
            s.failed,
            pct(s.cpu.server_pct),
            s.cpu
                .server_pct
                .filter(|_| s.delivered_per_sec > 0.0)
                .map_or("–".to_owned(), |p| format!(
                    "{:.0}",
                    p / 100.0 * 1e6 / s.delivered_per_sec
                )),
            pct(s.cpu.generator_pct),
            pct(s.cpu.others_pct),
            if s.passed { "yes" } else { "no" }
        );
    }
    let _ = writeln!(out, "\n| measure | value |\n|---|---|");
    let _ = writeln!(
        out,
        "| sustained delivered msg/s (p99 ≤ {} ms) | {:.0} |",
        r.p99_limit_ms, r.sustained_per_sec
    );
    let _ = writeln!(out, "| stopped because | {} |", r.stopped_because);
    if let Some(b) = &r.baseline {
        let _ = writeln!(
            out,
            "| baseline at {} sessions: rmcp client / raw HTTP | {:.0} / {:.0} requests/s |",
            b.sessions, b.rmcp_client.requests_per_sec, b.raw_http.requests_per_sec
        );
        let _ = writeln!(
            out,
            "| sustained ÷ baseline (rmcp client / raw HTTP) | {:.2} / {:.2} |",
            r.sustained_per_sec / b.rmcp_client.requests_per_sec.max(1e-9),
            r.sustained_per_sec / b.raw_http.requests_per_sec.max(1e-9)
        );
    }
    tally_rows(out, &r.tally);
    server_rows(out, &r.server);
}

pub(crate) fn render_latency(out: &mut String, r: &LatencyReport) {
    let _ = writeln!(
        out,
        "## latency: {:.0} msg/s over {} pairs, {} B messages, {:.1} s after {:.1} s warm-up\n\n| measure | value |\n|---|---|",
        r.rate, r.pairs, r.message_bytes, r.duration_secs, r.warmup_secs
    );
    let _ = writeln!(
        out,
        "| sent / delivered per second | {:.0} / {:.0} |",
        r.sent_per_sec, r.delivered_per_sec
    );
    let _ = writeln!(
        out,
        "| delivery latency p50 / p90 / p99 / p99.9 / max | {} |",
        latency_cells(&r.latency)
    );
    let _ = writeln!(
        out,
        "| send_message round trip p50 / p90 / p99 / p99.9 / max | {} |",
        latency_cells(&r.call)
    );
    let _ = writeln!(
        out,
        "| CPU: relay / generator / other load | {} / {} / {} |",
        pct(r.cpu.server_pct),
        pct(r.cpu.generator_pct),
        pct(r.cpu.others_pct)
    );
    if let Some(us) = r.relay_cpu_us_per_message {
        let _ = writeln!(out, "| relay CPU per delivered message | {us:.0} µs |");
    }
    if let Some(m) = r.relay_memory {
        let _ = writeln!(out, "| relay RSS | {} |", mib(m.rss_kib));
    }
    tally_rows(out, &r.tally);
    server_rows(out, &r.server);
}

pub(crate) fn render_baseline(out: &mut String, r: &BaselineReport) {
    let _ = writeln!(
        out,
        "## baseline: fixed JSON-RPC reply, {} concurrent sessions, {} B messages, {:.1} s after {:.1} s warm-up\n\n| client | requests/s | round trip p50 / p90 / p99 / p99.9 / max | server CPU | server µs/request | generator CPU | other load | errors |\n|---|---|---|---|---|---|---|---|",
        r.sessions, r.message_bytes, r.duration_secs, r.warmup_secs
    );
    for (name, run) in [("rmcp client", &r.rmcp_client), ("raw HTTP", &r.raw_http)] {
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {} | {} | {} | {} | {} | {} |",
            run.requests_per_sec,
            latency_cells(&run.latency),
            pct(run.cpu.server_pct),
            run.cpu
                .server_pct
                .filter(|_| run.requests_per_sec > 0.0)
                .map_or("–".to_owned(), |p| format!(
                    "{:.0}",
                    p / 100.0 * 1e6 / run.requests_per_sec
                )),
            pct(run.cpu.generator_pct),
            pct(run.cpu.others_pct),
            errors_cell(&run.errors)
        );
    }
    let _ = writeln!(out, "\nserver: `{}`", r.server.command);
}
