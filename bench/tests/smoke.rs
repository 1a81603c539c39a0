//! CI's short run of every benchmark scenario: `mcp-chat-bench smoke` against a relay process it
//! spawns, asserting only correctness — every message delivered exactly once, no errors. Its four
//! parts run as four tests, side by side.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Far above the 10–30 s a part takes in a debug build; a hang fails instead of blocking CI.
const DEADLINE: Duration = Duration::from_secs(180);

#[test]
fn smoke_basic_scenarios_deliver_every_message_exactly_once() {
    smoke(
        "basic",
        &["connections", "throughput", "latency", "baseline"],
    );
}

#[test]
fn smoke_abuse_leaves_the_victims_whole() {
    smoke("abuse", &["abuse"]);
}

#[test]
fn smoke_soak_churns_and_loses_nothing() {
    smoke("soak", &["soak"]);
}

/// The lean participant against the relay, then against the floor.
#[test]
fn smoke_lean_participant_and_floor() {
    smoke("lean", &["latency", "connections"]);
}

/// Runs one part of `mcp-chat-bench smoke` and checks that it ran `expected` (in order), each
/// delivering every message exactly once.
fn smoke(part: &str, expected: &[&str]) {
    let bench = Path::new(env!("CARGO_BIN_EXE_mcp-chat-bench"));
    let mut command = Command::new(bench);
    command.args(["smoke", "--json", "--part", part]);
    // The real relay binary (built first when only this package was built).
    command
        .arg("--relay-bin")
        .arg(testkit::process::relay_binary());
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mcp-chat-bench starts");
    let started = Instant::now();
    while child.try_wait().expect("can wait for the bench").is_none() {
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("mcp-chat-bench smoke --part {part} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("bench output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "mcp-chat-bench smoke failed ({}):\n{stderr}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios
        .iter()
        .filter_map(|s| s["scenario"].as_str())
        .collect();
    assert_eq!(names, expected, "every scenario of the part ran");
    for scenario in scenarios {
        let name = &scenario["scenario"];
        if name == "baseline" {
            for run in ["rmcp_client", "raw_http"] {
                assert!(
                    scenario[run]["requests_per_sec"].as_f64() > Some(0.0),
                    "baseline {run} answered: {scenario}"
                );
                assert_eq!(scenario[run]["errors"], serde_json::json!({}), "{scenario}");
            }
            continue;
        }
        if name == "abuse" {
            assert_eq!(scenario["unexpected"], serde_json::json!({}), "{scenario}");
            for (abuser, outcomes) in scenario["abusers"].as_object().expect("abusers") {
                assert!(
                    outcomes.as_object().is_some_and(|o| !o.is_empty()),
                    "abuser {abuser} ran: {scenario}"
                );
            }
        }
        if name == "soak" {
            let churned = scenario["repaired"][0].as_u64().unwrap_or(0)
                + scenario["repaired"][1].as_u64().unwrap_or(0)
                + scenario["replaced"].as_u64().unwrap_or(0);
            assert!(churned > 0, "the soak churned: {scenario}");
        }
        let tally = &scenario["tally"];
        let sent = tally["sent"].as_u64().expect("sent");
        assert!(sent > 0, "{name} sent messages: {tally}");
        assert_eq!(tally["accepted"].as_u64(), Some(sent), "{name}: {tally}");
        assert_eq!(tally["delivered"].as_u64(), Some(sent), "{name}: {tally}");
        assert_eq!(tally["lost"], 0, "{name}: {tally}");
        assert_eq!(tally["duplicated"], 0, "{name}: {tally}");
        assert_eq!(tally["delivered_after_error"], 0, "{name}: {tally}");
        assert_eq!(tally["errors"], serde_json::json!({}), "{name}: {tally}");
    }
}
