//! The `mcp-chat-relay` binary as a child process: started, its address read from its log,
//! killed (SIGKILL) or stopped (SIGTERM), restarted on the same address, killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::lines::LineLog;

/// How long a relay may take to announce its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a relay may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a starting or stopping process is looked at.
const POLL: Duration = Duration::from_millis(10);

/// What the relay logs when it listens: `... relay listening on http://ADDR/mcp`.
const LISTENING: &str = "relay listening on http://";
/// What it logs when its admin API listens (before the public line).
const ADMIN_LISTENING: &str = "admin API listening on http://";

/// The relay binary of this build (`target/<profile>/mcp-chat-relay`), built first when the
/// calling package does not build it itself (the bridge, the bench). A package that builds it
/// has it as `env!("CARGO_BIN_EXE_mcp-chat-relay")` and should pass that instead.
pub fn relay_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("the test binary's path");
            // target/<profile>/deps/<test binary>
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("the test binary is in target/<profile>/deps");
            let binary =
                profile_dir.join(format!("mcp-chat-relay{}", std::env::consts::EXE_SUFFIX));
            let target_dir = profile_dir.parent().expect("a target directory");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut build = Command::new(cargo);
            build
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "mcp-chat-relay",
                    "--bin",
                    "mcp-chat-relay",
                ])
                .arg("--target-dir")
                .arg(target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.ends_with("release") {
                build.arg("--release");
            }
            match build.output() {
                Ok(out) if out.status.success() => {}
                _ if binary.is_file() => {}
                Ok(out) => panic!(
                    "cannot build mcp-chat-relay:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => panic!("cannot run cargo to build mcp-chat-relay: {e}"),
            }
            binary
        })
        .clone()
}

/// The flags that keep a relay process fast to test: a grace period of `grace_secs` and a
/// rate limit no test reaches. Tests add their own (`--store`, `--admin-bind`, ...).
pub fn test_args(grace_secs: u64) -> Vec<String> {
    [
        "--grace-secs",
        &grace_secs.to_string(),
        "--rate-per-sec",
        "1000",
        "--rate-burst",
        "1000",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// One relay process; killed on drop.
pub struct RelayProcess {
    /// Where it listens (the same after [`Self::restart`]).
    pub addr: SocketAddr,
    /// Its MCP endpoint.
    pub url: String,
    /// Its admin API's base URL, when it serves one (`--admin-bind`).
    pub admin_url: Option<String>,
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: LineLog,
}

impl RelayProcess {
    /// Starts `binary --bind 127.0.0.1:0 <args>` with `env` and no `MCP_CHAT_*` variable of the
    /// caller's (they would change what is tested), and waits until it listens.
    pub async fn start(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_on(binary, 0, args, env).await
    }

    /// Like [`Self::start`], on `port` (0: a free one).
    pub async fn start_on(binary: &Path, port: u16, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut relay = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            url: String::new(),
            admin_url: None,
            binary: binary.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            child: None,
            log: LineLog::default(),
        };
        relay.spawn().await;
        relay
    }

    async fn spawn(&mut self) {
        let mut command = Command::new(&self.binary);
        command
            .args(["--bind", &self.addr.to_string()])
            .args(&self.args);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MCP_CHAT_") {
                command.env_remove(name);
            }
        }
        // The listening line is an info log; a RUST_LOG of the caller's must not hide it.
        command.env("RUST_LOG", "info,rmcp=warn");
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let (log, announced) = LineLog::follow(stderr, |line| {
            announced_after(line, ADMIN_LISTENING)
                .map(|a| (true, a))
                .or_else(|| announced_after(line, LISTENING).map(|a| (false, a)))
        });
        self.log = log;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut admin = None;
        let addr = loop {
            match announced.try_recv() {
                Ok((true, addr)) => admin = Some(addr),
                Ok((false, addr)) => break addr,
                Err(_) => {}
            }
            if let Some(status) = child.try_wait().expect("polls the relay") {
                // Let the reader take the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "relay `{}` exited before listening ({status}); log:\n{}",
                    self.args.join(" "),
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "relay did not announce its address within {START_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(POLL).await;
        };
        self.addr = addr;
        self.url = format!("http://{addr}/mcp");
        self.admin_url = admin.map(|a| format!("http://{a}"));
        self.child = Some(child);
    }

    /// SIGKILL: the relay vanishes without a word, as when a machine dies.
    pub fn sigkill(&mut self) {
        let mut child = self.child.take().expect("the relay is running");
        child.kill().expect("kills the relay");
        let _ = child.wait();
    }

    /// SIGTERM; waits for the exit (at most 10 s) and returns its status.
    pub async fn sigterm(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the relay is running");
        sigterm(&child);
        match wait_exit(&mut child, STOP_TIMEOUT).await {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "relay did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Starts the relay again on the same address, with the same settings.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the relay before restarting it");
        self.spawn().await;
    }

    /// The process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the relay logged (the last few hundred lines), for failure messages.
    pub fn log(&self) -> String {
        self.log.text()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The address after `prefix` in a log line (`prefix` ends with `http://`).
fn announced_after(line: &str, prefix: &str) -> Option<SocketAddr> {
    let rest = line.split(prefix).nth(1)?;
    rest.split('/').next()?.trim().parse().ok()
}

/// Sends SIGTERM to `child` (with `kill`, as an operator or systemd would).
pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("runs kill");
    assert!(status.success(), "kill -TERM {} failed", child.id());
}

/// Waits for `child` to exit, for at most `within`.
pub async fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("polls the child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_addresses_are_read_from_the_log_lines() {
        let line = "2026-12-04T01:00:00Z  INFO mcp_chat_relay: mcp-chat relay listening on http://127.0.0.1:4567/mcp store=memory";
        assert_eq!(
            announced_after(line, LISTENING),
            Some("127.0.0.1:4567".parse().unwrap())
        );
        assert_eq!(announced_after(line, ADMIN_LISTENING), None);
        let admin = "INFO admin API listening on http://127.0.0.1:99/";
        assert_eq!(
            announced_after(admin, ADMIN_LISTENING),
            Some("127.0.0.1:99".parse().unwrap())
        );
    }
}
