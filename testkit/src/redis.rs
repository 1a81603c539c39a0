//! A `redis-server` of the test's own, on a free loopback port.
//!
//! Without `redis-server` on PATH the Redis tests cannot run. They must not look as if they
//! passed: [`RedisServer::start`] writes a banner straight to the process's stderr (the test
//! harness captures `eprintln!`, not a direct write) and returns `None`; with `CI` set it
//! panics instead.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::process::{sigterm, wait_exit};

/// How long redis-server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long it may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a run without `redis-server` says, loudly.
pub const NOT_RUN_BANNER: &str = "REDIS TESTS DID NOT RUN";

/// True when `redis-server` can be run. Otherwise says so on stderr (past the capture) and
/// returns false, or panics when `CI` is set: CI must run these tests.
pub fn redis_available(test: &str) -> bool {
    let missing = if crate::runs("redis-server", "--version") {
        Vec::new()
    } else {
        vec!["redis-server on PATH (apt-get install redis-server)".to_owned()]
    };
    crate::needs(NOT_RUN_BANNER, test, &missing)
}

/// One `redis-server` on 127.0.0.1, killed on drop.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    /// The append-only file's directory (removed on drop), when persistent.
    dir: Option<PathBuf>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a throwaway server (no RDB, no AOF). `None` (after the banner) when
    /// `redis-server` is not on PATH.
    pub async fn start(test: &str) -> Option<Self> {
        Self::launch(test, false).await
    }

    /// Starts a server that keeps its data across [`Self::stop`] and [`Self::restart`]
    /// (append-only file, fsync on every write, in a fresh temporary directory).
    pub async fn start_persistent(test: &str) -> Option<Self> {
        Self::launch(test, true).await
    }

    async fn launch(test: &str, persistent: bool) -> Option<Self> {
        if !redis_available(test) {
            return None;
        }
        let dir = persistent.then(|| crate::temp_dir("redis"));
        let mut server = Self {
            port: 0,
            dir,
            child: None,
        };
        // A port freed by bind(0) can be taken by someone else before redis-server binds it.
        let mut last_error = String::new();
        for _ in 0..3 {
            server.port = crate::free_port();
            match server.spawn().await {
                Ok(()) => return Some(server),
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// The store URL relay nodes get.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""]);
        match &self.dir {
            Some(dir) => {
                command
                    .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                    .arg(dir)
                    .arg("--logfile")
                    .arg(dir.join("redis.log"));
            }
            None => {
                command.args(["--appendonly", "no"]);
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ping(self.port).await {
                self.child = Some(child);
                return Ok(());
            }
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("redis-server on port {port} exited: {status}"));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-server on port {port} did not answer PING within {START_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server (SIGTERM: the append-only file is complete) and waits for it to exit.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("redis-server is running");
        sigterm(&child);
        if wait_exit(&mut child, STOP_TIMEOUT).await.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-server did not exit within {STOP_TIMEOUT:?} of SIGTERM");
        }
    }

    /// Starts the server again on the same port (and directory).
    pub async fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "stop redis-server before restarting it"
        );
        if let Err(error) = self.spawn().await {
            panic!("redis-server did not restart: {error}");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// True when something on 127.0.0.1:`port` answers `PING` with `+PONG`.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer == *b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Ok(true))
    )
}
