//! Test support for every crate of the workspace, one place each:
//!
//! - [`relay::InProcessRelay`]: the relay library served in the test's own process on a real
//!   loopback socket (port 0, or a given address to restart on);
//! - [`process::RelayProcess`]: the `mcp-chat-relay` binary as a child process, its URL read
//!   from its log, killed on drop; [`process::relay_binary`] finds (or builds) the binary for
//!   crates that do not build it themselves;
//! - [`redis::RedisServer`]: a `redis-server` of the test's own on a free port, or a loud
//!   "REDIS TESTS DID NOT RUN" banner (a panic with `CI` set);
//! - [`temp_dir`], [`free_port`]: private directories and ports;
//! - [`lines::LineLog`]: a child's output lines, kept for failure messages and watched for an
//!   announcement.
//!
//! Everything here is real: sockets on 127.0.0.1, real processes, real pipes. Nothing is a
//! mock, and nothing sleeps in place of an assertion: waits poll for a condition, bounded.

pub mod lines;
pub mod process;
pub mod redis;
pub mod relay;

use std::path::PathBuf;

/// A fresh directory of its own for one test (one bridge's config, a relay's files), named after
/// `name`, this process and the clock so that parallel tests and repeated runs never share one.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mcp-chat-test-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).expect("creates a test directory");
    dir
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released: someone else may take it
/// before the caller binds it, so callers that can retry do).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binds a free loopback port")
        .port()
}

/// Whether `program arg` runs and exits 0 (e.g. `redis-server --version`), asked once per
/// program and argument for the whole test process.
pub fn runs(program: &str, arg: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashMap<(String, String), bool>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    let key = (program.to_owned(), arg.to_owned());
    if let Some(known) = seen.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return *known;
    }
    let ok = std::process::Command::new(program)
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, ok);
    ok
}

/// The one rule for tests that need something besides Rust (redis-server, openssl, Chromium,
/// the pinned Node packages): true when nothing is `missing`. Otherwise the test must not look
/// as if it passed: with `CI` set this panics (CI installs everything), else it writes `banner`,
/// the test and what is missing straight to stderr (past the harness's capture) and returns
/// false, for the test to return.
pub fn needs(banner: &str, test: &str, missing: &[String]) -> bool {
    use std::io::Write;
    if missing.is_empty() {
        return true;
    }
    let detail = missing.join("; ");
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{banner}: {detail} — and CI is set, where these tests must run ({test})");
    }
    let rule = "!".repeat(72);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\n{rule}\n{banner}\n  not run: {test}");
    for what in missing {
        let _ = writeln!(err, "  missing: {what}");
    }
    let _ = writeln!(err, "{rule}\n");
    let _ = err.flush();
    false
}
