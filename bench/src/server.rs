//! The server under load, as a process of its own: the relay binary, the relay library built
//! into this binary, or the baseline HTTP server; or a relay somebody else runs.
//!
//! A spawned server listens on 127.0.0.1 port 0 and announces its address on stderr (the relay's
//! startup log line `mcp-chat relay listening on http://ADDR/mcp`); we read that line, then keep
//! draining stderr so that the server never blocks on a full pipe, counting warnings and errors.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::BenchError;
use crate::procfs::{self, ProcSample};

/// How long a spawned server may take to announce its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Warning and error lines of the server's log kept for the report.
const KEPT_LOG_LINES: usize = 5;

/// Which server to run.
#[derive(Debug, Clone)]
pub enum ServerKind {
    /// A relay binary (normally `mcp-chat-relay` next to this binary).
    RelayBinary(PathBuf),
    /// This binary's `relay` subcommand: the relay library linked into the bench.
    BuiltinRelay,
    /// This binary's `baseline-server` subcommand: a minimal HTTP server doing no MCP work.
    Baseline,
    /// This binary's `floor-server` subcommand: the least a chat server can do (see
    /// [`crate::floor`]).
    Floor,
    /// A server that is already running at this MCP endpoint URL; its process is sampled when
    /// its pid is given (`--server-pid`), and never stopped by the bench.
    External(String, Option<u32>),
}

/// Limits a spawned relay gets, raised (or turned off) so that they do not throttle the load.
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// Concurrent sessions the relay admits.
    pub max_sessions: usize,
    /// Longest message, bytes.
    pub max_message_bytes: usize,
    /// Keep the relay's own per-participant rate limits (`--rate-per-sec 2 --rate-burst 10`)
    /// and its per-address limits (connections, sessions, new sessions and refusals per client
    /// address)
    /// instead of raising them out of the way or turning them off (the abuse scenario, whose
    /// clients come from many loopback addresses).
    pub default_rate_limits: bool,
}

/// The relay flags that turn its per-address limits off.
const ADDRESS_LIMITS_OFF: [&str; 8] = [
    "--address-sessions-per-sec",
    "0",
    "--address-max-sessions",
    "0",
    "--address-refusals-per-sec",
    "0",
    "--address-max-connections",
    "0",
];

impl RelayLimits {
    /// Limits for `participants` sessions sending messages of `message_bytes`.
    pub fn for_load(participants: usize, message_bytes: usize) -> Self {
        Self {
            max_sessions: (participants * 2).max(mcp_chat::limits::DEFAULT_MAX_SESSIONS),
            max_message_bytes: message_bytes.max(mcp_chat::limits::DEFAULT_MAX_MESSAGE_BYTES),
            default_rate_limits: false,
        }
    }

    /// The same, with the relay's default per-participant rate limits and per-address limits.
    pub fn with_default_rate_limits(self) -> Self {
        Self {
            default_rate_limits: true,
            ..self
        }
    }

    /// The relay's command-line flags for these limits. Per-participant rate limits are set
    /// far above anything the generator sends, and the per-address limits are turned off
    /// (`--address-sessions-per-sec 0 --address-max-sessions 0 --address-refusals-per-sec 0
    /// --address-max-connections 0`): every participant of these scenarios comes from 127.0.0.1, one address ramping
    /// thousands of sessions. With [`Self::default_rate_limits`] both stay at the relay's
    /// defaults. The idle timeout is an hour so that idle participants of a long ramp are not
    /// reaped.
    pub fn relay_args(&self) -> Vec<String> {
        let body =
            (self.max_message_bytes * 2 + 2048).max(mcp_chat::limits::DEFAULT_MAX_BODY_BYTES);
        let (rate, burst) = if self.default_rate_limits {
            (
                mcp_chat::limits::DEFAULT_RATE_PER_SEC.to_string(),
                mcp_chat::limits::DEFAULT_RATE_BURST.to_string(),
            )
        } else {
            ("1000000".to_owned(), "1000000".to_owned())
        };
        ["--bind", "127.0.0.1:0"]
            .into_iter()
            .map(str::to_owned)
            .chain([
                "--rate-per-sec".to_owned(),
                rate,
                "--rate-burst".to_owned(),
                burst,
                "--idle-timeout-secs".to_owned(),
                "3600".to_owned(),
            ])
            .chain(
                if self.default_rate_limits {
                    &[][..]
                } else {
                    &ADDRESS_LIMITS_OFF[..]
                }
                .iter()
                .map(|&a| a.to_owned()),
            )
            .chain([
                "--max-sessions".to_owned(),
                self.max_sessions.to_string(),
                "--max-message-bytes".to_owned(),
                self.max_message_bytes.to_string(),
                "--max-body-bytes".to_owned(),
                body.to_string(),
            ])
            .collect()
    }
}

/// Warnings and errors the server logged.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LogSummary {
    /// Lines at WARN level.
    pub warnings: u64,
    /// Lines at ERROR level.
    pub errors: u64,
    /// The first few of them.
    pub first: Vec<String>,
}

/// A running server: its MCP endpoint and, when we spawned it, its process.
pub struct Server {
    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    /// The command line that started it (for the report), or the external URL.
    pub command: String,
    child: Option<Child>,
    pid: Option<u32>,
    log: Arc<Mutex<LogSummary>>,
}

impl Server {
    /// Starts (or, for [`ServerKind::External`], just names) a server. `cpus` is a `taskset`
    /// CPU list to pin a spawned server to.
    pub async fn start(
        kind: &ServerKind,
        limits: RelayLimits,
        cpus: Option<&str>,
    ) -> Result<Self, BenchError> {
        let (program, mut args) = match kind {
            ServerKind::External(url, pid) => {
                return Ok(Self {
                    url: url.clone(),
                    command: url.clone(),
                    child: None,
                    pid: *pid,
                    log: Arc::default(),
                });
            }
            ServerKind::RelayBinary(path) => (path.clone(), limits.relay_args()),
            ServerKind::BuiltinRelay => {
                let mut args = vec!["relay".to_owned()];
                args.extend(limits.relay_args());
                (current_exe()?, args)
            }
            ServerKind::Floor => (
                current_exe()?,
                vec![
                    "floor-server".to_owned(),
                    "--bind".to_owned(),
                    "127.0.0.1:0".to_owned(),
                ],
            ),
            ServerKind::Baseline => (
                current_exe()?,
                vec![
                    "baseline-server".to_owned(),
                    "--bind".to_owned(),
                    "127.0.0.1:0".to_owned(),
                ],
            ),
        };
        let launcher = match cpus {
            Some(cpus) => {
                let mut pinned = vec![
                    "-c".to_owned(),
                    cpus.to_owned(),
                    program.display().to_string(),
                ];
                pinned.append(&mut args);
                args = pinned;
                PathBuf::from("taskset")
            }
            None => program,
        };
        let printable = format!("{} {}", launcher.display(), args.join(" "));
        let mut command = Command::new(&launcher);
        command.args(&args);
        // The relay reads its settings from MCP_CHAT_* variables too: an access token or a low
        // session cap in the caller's environment would silently change what is measured.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MCP_CHAT_") {
                command.env_remove(name);
            }
        }
        command
            .env("RUST_LOG", "info,rmcp=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| BenchError::Spawn {
            program: printable.clone(),
            source,
        })?;
        let pid = child.id();
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let url = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = announced_url(&line) {
                    return Some(url);
                }
                seen.push(line);
            }
            None
        })
        .await
        .ok()
        .flatten();
        let Some(url) = url else {
            let _ = child.start_kill();
            return Err(BenchError::StartFailed {
                program: printable,
                log: seen.join("\n"),
            });
        };
        let log = Arc::new(Mutex::new(LogSummary::default()));
        tokio::spawn({
            let log = log.clone();
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    let warn = line.contains(" WARN ");
                    let error = line.contains(" ERROR ");
                    if warn || error {
                        let mut log = log.lock().unwrap();
                        log.warnings += u64::from(warn);
                        log.errors += u64::from(error);
                        if log.first.len() < KEPT_LOG_LINES {
                            log.first.push(line);
                        }
                    }
                }
            }
        });
        Ok(Self {
            url,
            command: printable,
            child: Some(child),
            pid,
            log,
        })
    }

    /// Memory and CPU time of the server process (`None` for an external relay).
    pub fn sample(&self) -> Option<ProcSample> {
        procfs::sample(self.pid?)
    }

    /// The server's process id, when we spawned it.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Open file descriptors of the server process (`None` for an external relay).
    pub fn open_fds(&self) -> Option<u64> {
        procfs::open_fds(self.pid?)
    }

    /// True when the server is a process we can sample.
    pub fn sampled(&self) -> bool {
        self.pid.is_some()
    }

    /// True when the bench started the server (and stops it at the end).
    pub fn owned(&self) -> bool {
        self.child.is_some()
    }

    /// The base URL (`http://127.0.0.1:PORT`) for `/healthz`.
    pub fn base_url(&self) -> &str {
        self.url.strip_suffix("/mcp").unwrap_or(&self.url)
    }

    /// Warnings and errors logged so far.
    pub fn log(&self) -> LogSummary {
        self.log.lock().unwrap().clone()
    }

    /// Kills a spawned server and waits for it to exit.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }
}

/// The URL in a startup line such as `... mcp-chat relay listening on http://127.0.0.1:41234/mcp`.
fn announced_url(line: &str) -> Option<String> {
    let at = line.find("listening on http://")? + "listening on ".len();
    let url = line[at..].split_whitespace().next()?;
    Some(url.to_owned())
}

fn current_exe() -> Result<PathBuf, BenchError> {
    std::env::current_exe().map_err(BenchError::Io)
}

/// The relay binary next to this one (`target/release/mcp-chat-relay` beside
/// `target/release/mcp-chat-bench`), where `cargo build -p mcp-chat-relay -p mcp-chat-bench`
/// leaves them.
pub fn sibling_relay_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe
        .parent()?
        .join(format!("mcp-chat-relay{}", std::env::consts::EXE_SUFFIX));
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_limits_are_off_unless_defaults_are_kept() {
        let load = RelayLimits::for_load(100, 100);
        let args = load.relay_args().join(" ");
        assert!(args.contains(
            "--address-sessions-per-sec 0 --address-max-sessions 0 --address-refusals-per-sec 0 \
             --address-max-connections 0"
        ));
        let abuse = load.with_default_rate_limits().relay_args().join(" ");
        assert!(!abuse.contains("--address-"));
        assert!(abuse.contains("--rate-per-sec 2 "));
    }

    #[test]
    fn reads_the_relay_startup_line() {
        let line = "2026-11-30T10:00:00.000Z  INFO mcp_chat_relay: mcp-chat relay listening on \
                    http://127.0.0.1:40123/mcp";
        assert_eq!(
            announced_url(line).as_deref(),
            Some("http://127.0.0.1:40123/mcp")
        );
        assert_eq!(announced_url("INFO something else"), None);
    }
}
