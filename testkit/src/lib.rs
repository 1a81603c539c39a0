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
