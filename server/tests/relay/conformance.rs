//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
//! ui-tests/package.json) against a relay on loopback: every server scenario that applies to
//! the relay must pass with no failure and no warning.
//!
//! Scenarios that do not apply (docs/conformance.md): the `tools-call-*`, `resources-*`,
//! `prompts-*`, `completion-*` and `elicitation-*` ones call fixture tools, resources and prompts
//! of the suite's reference server (`test_simple_text`, `test://static-text`, ...) that a chat
//! relay does not have. `server-sse-polling` calls one fixture, `test_reconnection`, which the
//! relay serves with `conformance_tools` only: it exercises the relay's real resume path
//! (the answer parked after its stream closed, fetched with `Last-Event-ID`).
//!
//! Needs the pinned Node packages (`npm ci --prefix ui-tests`, which brings Node 22). Without
//! them the test says so loudly and returns, or fails when `CI` is set.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::common::{TestRelay, test_config};

/// The server scenarios that apply to the relay.
const SCENARIOS: [&str; 7] = [
    "server-initialize",
    "ping",
    "logging-set-level",
    "tools-list",
    "dns-rebinding-protection",
    "server-sse-multiple-streams",
    "server-sse-polling",
];

/// Longest one scenario may take (each takes under a second).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);

struct Suite {
    node: PathBuf,
    cli: PathBuf,
}

impl Suite {
    fn find(test: &str) -> Option<Self> {
        let ui = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the relay crate is in the workspace")
            .join("ui-tests")
            .join("node_modules");
        let node = ui.join(".bin").join("node");
        let cli = ui
            .join("@modelcontextprotocol")
            .join("conformance")
            .join("dist")
            .join("index.js");
        let mut missing = Vec::new();
        if !node_runs_22(&node) {
            missing.push(format!(
                "the pinned Node 22 at {} (npm ci --prefix ui-tests)",
                node.display()
            ));
        }
        if !cli.is_file() {
            missing.push("@modelcontextprotocol/conformance (npm ci --prefix ui-tests)".to_owned());
        }
        testkit::needs("CONFORMANCE SUITE DID NOT RUN", test, &missing)
            .then_some(Self { node, cli })
    }
}

fn node_runs_22(node: &Path) -> bool {
    std::process::Command::new(node)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.starts_with(b"v22."))
}

/// Every applicable scenario passes: no failed check, no warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_applicable_conformance_scenario_passes() {
    let Some(suite) = Suite::find("conformance::every_applicable_conformance_scenario_passes")
    else {
        return;
    };
    let mut config = test_config();
    config.conformance_tools = true;
    let relay = TestRelay::start_with(config).await;
    let mut report = Vec::new();
    for scenario in SCENARIOS {
        let run = Command::new(&suite.node)
            .arg(&suite.cli)
            .args(["server", "--url", &relay.url, "--scenario", scenario])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(SCENARIO_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| panic!("{scenario} took over {SCENARIO_TIMEOUT:?}"))
            .expect("the conformance suite runs");
        let text = strip_ansi(&String::from_utf8_lossy(&out.stdout));
        let summary = text
            .lines()
            .find(|l| l.starts_with("Passed: "))
            .unwrap_or_default()
            .to_owned();
        let clean = out.status.success()
            && summary.contains(" 0 failed, 0 warnings")
            && !summary.starts_with("Passed: 0/");
        assert!(
            clean,
            "{scenario}: {summary}\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        report.push(format!("{scenario}: {summary}"));
    }
    println!("{}", report.join("\n"));
}

/// The suite colours its output; the summary is matched without the escapes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
