//! The whole run's report: each scenario's findings side by side, as Markdown or JSON.
//!
//! The one place that knows every scenario: the scenarios return their own reports
//! (`report` holds the shared types and the tables of the basic ones; `abuse` and `soak` render
//! theirs), so none of them imports another.

use std::fmt::Write as _;

use serde::Serialize;

use crate::abuse::{self, AbuseReport};
use crate::procfs::Machine;
use crate::report::{
    BaselineReport, ConnectionsReport, LatencyReport, ThroughputReport, render_baseline,
    render_connections, render_latency, render_throughput,
};
use crate::soak::{self, SoakReport};

/// One scenario's findings.
#[derive(Debug, Serialize)]
#[serde(tag = "scenario", rename_all = "snake_case")]
pub enum ScenarioReport {
    /// Connection scale.
    Connections(ConnectionsReport),
    /// Throughput steps.
    Throughput(ThroughputReport),
    /// Latency at a fixed rate.
    Latency(LatencyReport),
    /// The HTTP baseline.
    Baseline(BaselineReport),
    /// Victims next to abusers.
    Abuse(Box<AbuseReport>),
    /// A long run with churn.
    Soak(Box<SoakReport>),
}

impl ScenarioReport {
    /// True when every message arrived exactly once and nothing failed.
    pub fn is_clean(&self) -> bool {
        match self {
            Self::Connections(r) => r.tally.is_clean(),
            Self::Throughput(r) => {
                r.tally.is_clean() && r.baseline.as_deref().is_none_or(BaselineReport::is_clean)
            }
            Self::Latency(r) => r.tally.is_clean(),
            Self::Baseline(r) => r.is_clean(),
            Self::Abuse(r) => r.is_clean(),
            Self::Soak(r) => r.is_clean(),
        }
    }
}

/// A whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// How the server and the generator shared the CPUs.
    pub cpu_split: String,
    /// Worker threads of the generator's runtime.
    pub generator_workers: usize,
    /// What each scenario found.
    pub scenarios: Vec<ScenarioReport>,
}

impl Report {
    /// True when every scenario is clean.
    pub fn is_clean(&self) -> bool {
        self.scenarios.iter().all(ScenarioReport::is_clean)
    }

    /// The report as Markdown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "machine: {} × {} CPUs, {} MiB, Linux {}\ncpu split: {} (generator: {} worker threads)\n",
            m.cpu, m.cpus, m.memory_mib, m.kernel, self.cpu_split, self.generator_workers
        );
        for scenario in &self.scenarios {
            match scenario {
                ScenarioReport::Connections(r) => render_connections(&mut out, r),
                ScenarioReport::Throughput(r) => render_throughput(&mut out, r),
                ScenarioReport::Latency(r) => render_latency(&mut out, r),
                ScenarioReport::Baseline(r) => render_baseline(&mut out, r),
                ScenarioReport::Abuse(r) => abuse::render(&mut out, r),
                ScenarioReport::Soak(r) => soak::render(&mut out, r),
            }
            out.push('\n');
        }
        out
    }
}
