//! Scenario `smoke`: every scenario in miniature, for CI (`tests/smoke.rs`). Only correctness
//! matters here: each must deliver every message exactly once.

use std::time::Duration;

use crate::BenchError;
use crate::participant::{ClientKind, Pairing};
use crate::scenario::{
    BaselineParams, ConnectionsParams, Env, LatencyParams, Load, ThroughputParams, baseline,
    connections, latency, throughput,
};
use crate::server::ServerKind;
use crate::summary::ScenarioReport;
use crate::{abuse, soak};

/// A part of the smoke run, so that tests can run the parts side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Connections, throughput, latency and the baseline (rmcp clients).
    Basic,
    /// Victims next to every abuser.
    Abuse,
    /// A short soak with churn.
    Soak,
    /// The lean participant against the relay, then against the floor.
    Lean,
}

/// Every scenario in miniature (or one `part` of them), for CI. Only correctness matters here.
pub async fn run(env: &Env, part: Option<Part>) -> Result<Vec<ScenarioReport>, BenchError> {
    let runs = |p: Part| part.is_none_or(|only| only == p);
    let load = |pairs, pairing| Load {
        pairs,
        pairing,
        message_bytes: 64,
        warmup: Duration::from_millis(300),
        duration: Duration::from_secs(1),
        ramp_concurrency: 8,
        mute_log_pushes: false,
    };
    let mut reports = Vec::new();
    if runs(Part::Basic) {
        reports.push(ScenarioReport::Connections(
            connections(
                env,
                &ConnectionsParams {
                    participants: 20,
                    pairing: Pairing::Queue,
                    ramp_concurrency: 8,
                    settle: Duration::from_millis(200),
                    message_bytes: 64,
                    messages_each: 3,
                },
            )
            .await?,
        ));
        reports.push(ScenarioReport::Throughput(
            throughput(
                env,
                &ThroughputParams {
                    load: load(4, Pairing::Rooms),
                    start_rate: 40.0,
                    step_factor: 2.0,
                    max_rate: 80.0,
                    p99_limit_ms: 50.0,
                    with_baseline: false,
                    max_other_load_pct: None,
                },
            )
            .await?,
        ));
        reports.push(ScenarioReport::Latency(
            latency(
                env,
                &LatencyParams {
                    load: load(4, Pairing::Queue),
                    rate: 100.0,
                },
            )
            .await?,
        ));
        reports.push(ScenarioReport::Baseline(
            baseline(
                env,
                &BaselineParams {
                    sessions: 8,
                    message_bytes: 64,
                    warmup: Duration::from_millis(300),
                    duration: Duration::from_secs(1),
                    ramp_concurrency: 8,
                },
            )
            .await?,
        ));
    }
    if runs(Part::Abuse) {
        reports.push(ScenarioReport::Abuse(
            abuse::abuse(
                env,
                &abuse::AbuseParams {
                    pairs: 4,
                    pairing: Pairing::Rooms,
                    rate: 8.0,
                    message_bytes: 64,
                    warmup: Duration::from_millis(300),
                    window: Duration::from_secs(2),
                    recovery: Duration::from_millis(500),
                    ramp_concurrency: 8,
                    flood_in_flight: 4,
                    queue_churners: 2,
                    reconnect_in_flight: 2,
                    malformed_in_flight: 4,
                    slow_readers: 2,
                    slow_reader_message_bytes: 2000,
                    slowloris: 20,
                    rounds: 1,
                    strict: true,
                },
            )
            .await?,
        ));
    }
    if runs(Part::Soak) {
        reports.push(ScenarioReport::Soak(
            soak::soak(
                env,
                &soak::SoakParams {
                    pairs: 6,
                    rate: 24.0,
                    message_bytes: 64,
                    duration: Duration::from_secs(6),
                    sample_every: Duration::from_secs(2),
                    churn_every: Duration::from_millis(1500),
                    churn_repairs: 2,
                    churn_reconnects: 1,
                    ramp_concurrency: 8,
                    strict: true,
                },
            )
            .await?,
        ));
    }
    if runs(Part::Lean) {
        // The lean participant against the relay, and against the floor (what `--client lean` and
        // `--floor` measure), in miniature.
        let lean = Env {
            relay: env.relay.clone(),
            server_cpus: env.server_cpus.clone(),
            http: env.http.clone(),
            clock: env.clock,
            run_id: format!("{}-lean", env.run_id),
            client: ClientKind::Lean,
        };
        reports.push(ScenarioReport::Latency(
            latency(
                &lean,
                &LatencyParams {
                    load: load(4, Pairing::Queue),
                    rate: 100.0,
                },
            )
            .await?,
        ));
        if !matches!(env.relay, ServerKind::External(..)) {
            let floor = Env {
                relay: ServerKind::Floor,
                run_id: format!("{}-floor", env.run_id),
                ..lean
            };
            reports.push(ScenarioReport::Connections(
                connections(
                    &floor,
                    &ConnectionsParams {
                        participants: 8,
                        pairing: Pairing::Rooms,
                        ramp_concurrency: 8,
                        settle: Duration::from_millis(100),
                        message_bytes: 64,
                        messages_each: 3,
                    },
                )
                .await?,
            ));
        }
    }
    Ok(reports)
}
