//! The chat pane and the web page in a real browser (issue 14): `ui-tests/run.mjs` drives
//! headless Chromium with the official MCP Apps host side (`AppBridge` of
//! @modelcontextprotocol/ext-apps and the official MCP TypeScript client) against a relay in
//! this process (panes over HTTP, the web page at `GET /`) and against two processes of this
//! build's bridge (panes over stdio).
//!
//! It needs the pinned Node packages (`npm ci --prefix ui-tests`, which brings its own Node 22)
//! and Chromium (`apt-get install chromium`, or `CHROMIUM=/path`). Without them the test must not
//! look as if it passed: it writes a banner past the test harness's capture and returns, or fails
//! when `CI` is set (`.ci/run` installs both).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::common::{Relay, relay_config};

/// Longest the whole browser run may take (it takes about 20 s; a hung run must not hang CI).
const RUN_TIMEOUT: Duration = Duration::from_secs(150);

/// The npm packages the runner loads (pinned in ui-tests/package.json and its lockfile).
const PACKAGES: [&str; 4] = [
    "playwright-core",
    "@modelcontextprotocol/ext-apps",
    "@modelcontextprotocol/client",
    "esbuild",
];

const NO_CHROMIUM: &str =
    "Chromium: no $CHROMIUM, /usr/bin/chromium or chromium on PATH (apt-get install chromium)";

/// What is needed to run the browser tests, found on this machine.
struct BrowserSetup {
    node: PathBuf,
    runner: PathBuf,
    chromium: PathBuf,
    root: PathBuf,
}

impl BrowserSetup {
    /// Finds everything, or says loudly what is missing (and panics under `CI`).
    fn find(test: &str) -> Option<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the bridge crate is in the workspace")
            .to_path_buf();
        let ui = root.join("ui-tests");
        let node = ui.join("node_modules").join(".bin").join("node");
        let runner = ui.join("run.mjs");
        let mut missing = Vec::new();
        if !node_runs(&node) {
            missing.push(format!(
                "the pinned Node at {} does not run (npm ci --prefix ui-tests)",
                node.display()
            ));
        }
        for package in PACKAGES {
            let manifest = ui.join("node_modules").join(package).join("package.json");
            if !manifest.is_file() {
                missing.push(format!(
                    "ui-tests/node_modules/{package} (npm ci --prefix ui-tests)"
                ));
            }
        }
        let chromium = find_chromium();
        if chromium.is_none() {
            missing.push(NO_CHROMIUM.to_owned());
        }
        if !testkit::needs("BROWSER TESTS DID NOT RUN", test, &missing) {
            return None;
        }
        Some(Self {
            node,
            runner,
            chromium: chromium?,
            root,
        })
    }
}

fn node_runs(node: &Path) -> bool {
    std::process::Command::new(node)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.starts_with(b"v22."))
}

fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM").map(PathBuf::from) {
        return path.is_file().then_some(path);
    }
    let debian = PathBuf::from("/usr/bin/chromium");
    if debian.is_file() {
        return Some(debian);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
}

/// Two panes chat both ways over HTTP and through two stdio bridges; a pane torn down and
/// mounted again (also in a stricter srcdoc sandbox) shows the full transcript; two web pages
/// chat both ways and a reload keeps the chat; the view names no external URL, the browser never
/// leaves loopback, no page or frame logs an error, and the pane tools are listed only to UI
/// clients. Line latencies are printed (run with --nocapture to see them on success).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_pane_and_web_page_in_a_real_browser() {
    let test = "pane::chat_pane_and_web_page_in_a_real_browser";
    let Some(setup) = BrowserSetup::find(test) else {
        return;
    };
    let relay = Relay::start_with(relay_config()).await;
    let started = Instant::now();
    let child = Command::new(&setup.node)
        .arg(&setup.runner)
        .arg("--relay")
        .arg(&relay.url)
        .arg("--bridge")
        .arg(env!("CARGO_BIN_EXE_mcp-chat-bridge"))
        .arg("--chromium")
        .arg(&setup.chromium)
        // The whole run on the real view, whatever the caller's shell says; UI_SCREENSHOTS
        // (relative to the repository root) passes through.
        .env_remove("UI_TEST_VIEW")
        .env_remove("UI_TEST_ONLY")
        .env_remove("UI_TEST_RELAY")
        .env_remove("UI_TEST_RELAY_BIN")
        .current_dir(&setup.root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start ui-tests/run.mjs with the pinned Node");
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("ui-tests/run.mjs did not finish within {RUN_TIMEOUT:?}"))
        .expect("wait for ui-tests/run.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    if !stderr.trim().is_empty() {
        println!("--- stderr ---\n{stderr}");
    }
    println!(
        "ui-tests/run.mjs took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    relay.stop().await;
    if output.status.success() {
        // The verdict and the latencies, past the capture: CI logs should show them.
        let summary: Vec<&str> = stdout
            .lines()
            .filter(|line| {
                line.starts_with("PASSED")
                    || ["pane over HTTP", "pane through bridges", "web page"]
                        .iter()
                        .any(|what| line.trim_start().starts_with(what))
            })
            .collect();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "\nbrowser tests (ui-tests/run.mjs):");
        for line in summary {
            let _ = writeln!(err, "  {}", line.trim());
        }
        let _ = err.flush();
    }
    assert!(
        output.status.success(),
        "ui-tests/run.mjs failed ({}); its output is above",
        output.status
    );
}
