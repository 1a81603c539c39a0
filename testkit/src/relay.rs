//! The relay library served in the test's own process, on a real loopback socket.

use std::net::SocketAddr;
use std::time::Duration;

use mcp_chat_relay::{RelayConfig, RelayError};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long binding a given address is retried (a port just freed by a stopped relay).
const BIND_ATTEMPTS: u32 = 50;
const BIND_RETRY: Duration = Duration::from_millis(100);
/// How long a relay may take to return after it is told to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings that keep tests fast: a short grace period and sweep, a generous rate limit.
pub fn test_config() -> RelayConfig {
    RelayConfig {
        grace_period: Duration::from_secs(1),
        sweep_interval: Duration::from_millis(100),
        rate_per_sec: 1000.0,
        rate_burst: 1000,
        ..RelayConfig::default()
    }
}

/// A relay served in this process; aborted on drop.
pub struct InProcessRelay {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its MCP endpoint.
    pub url: String,
    /// The admin API's base URL (`http://addr`), when started with one.
    pub admin_url: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), RelayError>>>,
}

impl InProcessRelay {
    /// A relay with [`test_config`] on a free port.
    pub async fn start() -> Self {
        Self::start_with(test_config()).await
    }

    /// A relay with `config` on a free port.
    pub async fn start_with(config: RelayConfig) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// A relay with `config` on `addr` (e.g. the address of a relay that was stopped: binding
    /// is retried for a few seconds).
    pub async fn start_on(addr: SocketAddr, config: RelayConfig) -> Self {
        let listener = bind(addr).await;
        Self::launch(listener, None, config)
    }

    /// A relay with `config` and its admin API on a port of its own (`config` must carry an
    /// admin token).
    pub async fn start_with_admin(config: RelayConfig) -> Self {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await;
        let admin = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await;
        Self::launch(listener, Some(admin), config)
    }

    fn launch(listener: TcpListener, admin: Option<TcpListener>, config: RelayConfig) -> Self {
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let admin_url = admin.as_ref().map(|l| {
            format!(
                "http://{}",
                l.local_addr().expect("a bound listener has an address")
            )
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(mcp_chat_relay::serve_with_admin(
            listener,
            admin,
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            url: format!("http://{addr}/mcp"),
            admin_url,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// GETs a path of the relay (e.g. `/healthz`) and returns status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{}{path}", self.addr))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Stops the relay (gracefully: partners are told) and waits until it has returned, so its
    /// port is free again.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STOP_TIMEOUT, task)
                .await
                .expect("the relay stops within 10 s")
                .expect("the relay task does not panic")
                .expect("the relay returns without an error");
        }
    }
}

impl Drop for InProcessRelay {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn bind(addr: SocketAddr) -> TcpListener {
    let mut attempts = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(_) if attempts < BIND_ATTEMPTS => {
                attempts += 1;
                tokio::time::sleep(BIND_RETRY).await;
            }
            Err(e) => panic!("cannot bind {addr}: {e}"),
        }
    }
}
