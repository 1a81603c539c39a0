//! Harness of the TLS Redis tests: a throwaway CA and server certificate made with the
//! `openssl` CLI, a `redis-server` that speaks TLS only and wants a password, and relay
//! processes whose startup (or refusal to start) the tests watch.
//!
//! Without `redis-server` or `openssl` on PATH the tests cannot run: like the other Redis tests
//! they say so on stderr, past the capture, and return; with `CI` set they fail instead.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::free_port;
use testkit::redis::redis_available;

/// What a run without `openssl` says, loudly.
const NO_OPENSSL_BANNER: &str = "REDIS TLS TESTS DID NOT RUN";
/// How long a process may take to start (or to give up starting).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The password the test Redis requires (of its `default` user).
pub const PASSWORD: &str = "tls-test-password-7f3a";
/// A second user of the test Redis (Redis 6 ACL), with every right.
pub const ACL_USER: &str = "mcp-relay";
/// [`ACL_USER`]'s password.
pub const ACL_PASSWORD: &str = "acl-test-password-91c2";

/// True when `redis-server` and `openssl` can be run. Otherwise says which is missing on
/// stderr and returns false, or panics when `CI` is set.
fn tools_available(test: &str) -> bool {
    if !redis_available(test) {
        return false;
    }
    let missing = if testkit::runs("openssl", "version") {
        Vec::new()
    } else {
        vec!["openssl on PATH (apt-get install openssl)".to_owned()]
    };
    testkit::needs(NO_OPENSSL_BANNER, test, &missing)
}

/// Runs `openssl` with the words of `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &str) {
    let output = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("runs openssl");
    assert!(
        output.status.success(),
        "openssl {args} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Key options: P-256, unencrypted.
const NEW_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

/// A self-signed CA: `<name>.key` and `<name>.crt` in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 {NEW_KEY} -days 2 -keyout {name}.key -out {name}.crt \
             -subj /CN=mcp-chat-test-{name}"
        ),
    );
}

/// A certificate for 127.0.0.1 and localhost signed by the CA `ca`, for `usage`
/// (`serverAuth`, `clientAuth`): `<name>.key`, `<name>.crt` in `dir`.
fn make_signed(dir: &Path, ca: &str, name: &str, usage: &str) {
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n"
        ),
    )
    .expect("writes the extensions file");
    openssl(
        dir,
        &format!("req {NEW_KEY} -keyout {name}.key -out {name}.csr -subj /CN=127.0.0.1"),
    );
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA {ca}.crt -CAkey {ca}.key -CAcreateserial -days 2 \
             -out {name}.crt -extfile {name}.ext"
        ),
    );
}

/// A `redis-server` on 127.0.0.1 that speaks TLS only (no plain port) and requires
/// [`PASSWORD`], with its certificates in a temporary directory; killed (and the directory
/// removed) on drop.
pub struct TlsRedis {
    /// The TLS port.
    pub port: u16,
    /// The directory of the certificates and files the tests hand to relays.
    pub dir: PathBuf,
    /// Whether clients must show a certificate signed by `ca.crt` (mutual TLS).
    checks_clients: bool,
    child: Option<Child>,
}

impl TlsRedis {
    /// Makes a CA (`ca.crt`), a server certificate it signs, an unrelated CA (`other-ca.crt`)
    /// and starts the server. `None` (after the banner) when a tool is missing.
    pub async fn start(test: &str) -> Option<Self> {
        Self::launch(test, false).await
    }

    /// Like [`Self::start`], and the server requires a client certificate signed by `ca.crt`
    /// (`--tls-auth-clients yes`): `client.crt` and `client.key` are one, `stranger.crt` and
    /// `stranger.key` one signed by `other-ca.crt`.
    pub async fn start_checking_clients(test: &str) -> Option<Self> {
        Self::launch(test, true).await
    }

    async fn launch(test: &str, checks_clients: bool) -> Option<Self> {
        if !tools_available(test) {
            return None;
        }
        let dir = testkit::temp_dir("redis-tls");
        make_ca(&dir, "ca");
        make_signed(&dir, "ca", "server", "serverAuth");
        make_ca(&dir, "other-ca");
        if checks_clients {
            make_signed(&dir, "ca", "client", "clientAuth");
            make_signed(&dir, "other-ca", "stranger", "clientAuth");
        }
        let mut server = Self {
            port: 0,
            dir,
            checks_clients,
            child: None,
        };
        // A port freed by bind(0) can be taken by someone else before redis-server binds it.
        let mut last_error = String::new();
        for _ in 0..3 {
            server.port = free_port();
            match server.spawn().await {
                Ok(()) => return Some(server),
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server (TLS) did not start: {last_error}");
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let log = self.dir.join("redis.log");
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1", "--tls-port", &port])
            .args([
                "--tls-cert-file",
                "server.crt",
                "--tls-key-file",
                "server.key",
            ])
            .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients"])
            .arg(if self.checks_clients { "yes" } else { "no" })
            .args([
                "--requirepass",
                PASSWORD,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--user", ACL_USER, "on", &format!(">{ACL_PASSWORD}")])
            .args(["~*", "&*", "+@all"])
            .arg("--logfile")
            .arg(&log)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // Accepting on the TLS port is enough: the server reads once its loop runs.
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                self.child = Some(child);
                return Ok(());
            }
            let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "redis-server on TLS port {port} exited ({status}; built without TLS?): {}",
                    log_text()
                ));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-server did not listen on TLS port {port} within {START_TIMEOUT:?}: {}",
                    log_text()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `rediss://127.0.0.1:<port>/` (no credentials in it).
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port)
    }

    /// A file in the directory.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Writes `contents` to a file in the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> String {
        std::fs::write(self.dir.join(name), contents).expect("writes a test file");
        self.path(name)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How a relay process started.
pub enum Startup {
    /// It connected to its store and serves on this address.
    Serving(SocketAddr),
    /// It exited first, with this status.
    Exited(ExitStatus),
}

/// An `mcp-chat-relay` process with exactly the given flags and `MCP_CHAT_*` variables (none
/// of the caller's), its stderr kept; killed on drop.
pub struct RelayProcess {
    child: Child,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl RelayProcess {
    /// Starts the relay on a free loopback port.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-chat-relay"));
        command.args(["--bind", "127.0.0.1:0"]).args(args);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MCP_CHAT_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,rmcp=warn")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs mcp-chat-relay");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                if log.len() == 200 {
                    log.pop_front();
                }
                log.push_back(line);
            }
        });
        Self { child, log }
    }

    /// Waits until the relay has connected to Redis (it logs `chat state in Redis` after its
    /// startup check) or has exited.
    pub async fn startup(&mut self) -> Startup {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("polls the relay") {
                // Let the reader thread take the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Startup::Exited(status);
            }
            let log = self.log();
            if log.contains("chat state in Redis")
                && let Some(addr) = log.lines().find_map(announced_addr)
            {
                return Startup::Serving(addr);
            }
            if Instant::now() >= deadline {
                panic!("the relay neither served nor exited within {START_TIMEOUT:?}; log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asserts the relay refuses to start: it exits unsuccessfully, before serving, and says
    /// every one of `expected` (its stderr is returned).
    pub async fn assert_refused(mut self, expected: &[&str]) -> String {
        match self.startup().await {
            Startup::Exited(status) => {
                let log = self.log();
                assert!(!status.success(), "exit status {status}; log:\n{log}");
                for text in expected {
                    assert!(log.contains(text), "no {text:?} in the relay's log:\n{log}");
                }
                log
            }
            Startup::Serving(addr) => {
                panic!(
                    "the relay serves on {addr}, expected it to refuse; log:\n{}",
                    self.log()
                )
            }
        }
    }

    /// Everything the relay wrote to stderr so far.
    pub fn log(&self) -> String {
        let log = self.log.lock().unwrap();
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in the relay's line `mcp-chat relay listening on http://ADDR/mcp`.
fn announced_addr(line: &str) -> Option<SocketAddr> {
    let prefix = "relay listening on http://";
    let rest = &line[line.find(prefix)? + prefix.len()..];
    rest.split('/').next()?.trim().parse().ok()
}
