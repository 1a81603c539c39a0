//! A loopback TCP proxy in front of a relay that breaks the network on demand: pass through,
//! delay every chunk, stall (hold every byte until released), reset every open connection
//! (RST), cut responses after N bytes (truncation mid-frame), refuse new connections.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the proxy does to the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward at once.
    Pass,
    /// Hold every chunk (both directions) this long before forwarding it.
    Delay(Duration),
    /// Forward nothing, in either direction, until the mode changes (reads stop too, so the
    /// peers' TCP windows fill up as on a dead link).
    Stall,
    /// Let each connection carry at most this many more response bytes (relay → client) from
    /// the moment the mode was set; the first one to go past is reset there (its response ends
    /// mid-frame) and the proxy goes back to [`Mode::Pass`]: one cut, as a network blip.
    TruncateAfter(usize),
}

#[derive(Debug, Clone, Copy)]
struct Setting {
    mode: Mode,
    /// Bumped at every change, so that a truncation budget starts afresh.
    generation: u64,
}

/// Counters for diagnostics.
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicUsize,
    pub resets: AtomicUsize,
    pub truncated: AtomicUsize,
    pub response_bytes: AtomicU64,
}

/// The proxy; dropping it stops accepting (open connections live on until reset or closed).
pub struct FaultProxy {
    pub addr: SocketAddr,
    /// `http://<proxy>/mcp`.
    pub url: String,
    setting: Arc<watch::Sender<Setting>>,
    /// Cancelled (and replaced) by [`FaultProxy::reset_all`].
    reset: Arc<Mutex<CancellationToken>>,
    refusing: watch::Sender<bool>,
    pub stats: Arc<Stats>,
    upstream: Arc<Mutex<SocketAddr>>,
    stop: CancellationToken,
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (setting, _) = watch::channel(Setting {
            mode: Mode::Pass,
            generation: 0,
        });
        let setting = Arc::new(setting);
        let (refusing, refusing_rx) = watch::channel(false);
        let reset = Arc::new(Mutex::new(CancellationToken::new()));
        let stats = Arc::new(Stats::default());
        let stop = CancellationToken::new();
        let upstream = Arc::new(Mutex::new(upstream));
        tokio::spawn(accept_loop(
            listener,
            addr,
            upstream.clone(),
            setting.clone(),
            refusing_rx,
            reset.clone(),
            stats.clone(),
            stop.clone(),
        ));
        Self {
            addr,
            url: format!("http://{addr}/mcp"),
            setting,
            reset,
            refusing,
            stats,
            upstream,
            stop,
        }
    }

    /// Points new connections at another server (open ones stay where they are).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = upstream;
    }

    /// Switches what the proxy does to the bytes it carries, on every connection at once.
    pub fn set(&self, mode: Mode) {
        self.setting.send_modify(|s| {
            s.mode = mode;
            s.generation += 1;
        });
    }

    pub fn pass(&self) {
        self.set(Mode::Pass);
    }

    pub fn stall(&self) {
        self.set(Mode::Stall);
    }

    /// Resets (RST) every connection open now, both towards the client and the relay.
    pub fn reset_all(&self) {
        let mut token = self.reset.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
    }

    /// Refuses new connections (the port is closed: connection refused) until `false`.
    pub fn refuse(&self, refuse: bool) {
        self.refusing.send_replace(refuse);
    }

    pub fn resets(&self) -> usize {
        self.stats.resets.load(Ordering::SeqCst)
    }

    pub fn accepted(&self) -> usize {
        self.stats.accepted.load(Ordering::SeqCst)
    }

    pub fn truncated(&self) -> usize {
        self.stats.truncated.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.reset_all();
    }
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    setting: Arc<watch::Sender<Setting>>,
    mut refusing: watch::Receiver<bool>,
    reset: Arc<Mutex<CancellationToken>>,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    let mut listener = Some(listener);
    loop {
        if *refusing.borrow_and_update() {
            // Closing the listening socket is what makes a connect fail with "refused".
            listener = None;
        } else if listener.is_none() {
            listener = Some(rebind(addr).await);
        }
        let Some(open) = &listener else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = refusing.changed() => continue,
            }
        };
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            _ = refusing.changed() => continue,
            accepted = open.accept() => accepted,
        };
        let Ok((client, _)) = accepted else { continue };
        let _ = client.set_nodelay(true);
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        let token = reset.lock().unwrap().clone();
        let target = *upstream.lock().unwrap();
        tokio::spawn(carry(client, target, setting.clone(), token, stats.clone()));
    }
}

/// Binds `addr` again (SO_REUSEADDR: the old connections may be in TIME_WAIT).
async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        if socket.bind(addr).is_ok()
            && let Ok(listener) = socket.listen(128)
        {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the proxy cannot listen on {addr} again");
}

/// Resets a connection: SO_LINGER 0, then close, so the peer gets RST, not FIN.
fn rst(read: OwnedReadHalf, write: OwnedWriteHalf) {
    if let Ok(stream) = read.reunite(write) {
        let _ = stream.set_zero_linger();
        drop(stream);
    }
}

async fn carry(
    client: TcpStream,
    upstream: SocketAddr,
    setting: Arc<watch::Sender<Setting>>,
    reset: CancellationToken,
    stats: Arc<Stats>,
) {
    let Ok(relay) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = relay.set_nodelay(true);
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_relay, mut to_relay) = relay.into_split();
    let outcome = {
        let requests = pump(&mut from_client, &mut to_relay, setting.subscribe(), None);
        let responses = pump(
            &mut from_relay,
            &mut to_client,
            setting.subscribe(),
            Some(&stats.response_bytes),
        );
        tokio::select! {
            _ = reset.cancelled() => End::Reset,
            end = requests => end,
            end = responses => end,
        }
    };
    match outcome {
        End::Reset | End::Truncated => {
            if outcome == End::Reset {
                stats.resets.fetch_add(1, Ordering::SeqCst);
            } else {
                stats.truncated.fetch_add(1, Ordering::SeqCst);
                // One cut: other connections pass again.
                setting.send_if_modified(|s| {
                    if matches!(s.mode, Mode::TruncateAfter(_)) {
                        s.mode = Mode::Pass;
                        s.generation += 1;
                        true
                    } else {
                        false
                    }
                });
            }
            rst(from_client, to_client);
            rst(from_relay, to_relay);
        }
        // One side closed: close the other (FIN) as a plain proxy would.
        End::Closed => {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    Reset,
    Truncated,
}

/// Copies `from` to `to` under the current mode until EOF, an error or a truncation.
/// `counted` is set for the response direction (which truncation applies to).
async fn pump(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    mut setting: watch::Receiver<Setting>,
    counted: Option<&AtomicU64>,
) -> End {
    let mut buf = vec![0u8; 16 * 1024];
    let mut generation = setting.borrow().generation;
    let mut budget_used = 0usize;
    loop {
        // A stalled link reads nothing either.
        loop {
            let now = *setting.borrow_and_update();
            if now.mode != Mode::Stall {
                break;
            }
            if setting.changed().await.is_err() {
                return End::Closed;
            }
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return End::Closed,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        // Apply the mode in force now (it may have changed while the read waited).
        loop {
            let now = *setting.borrow_and_update();
            if now.generation != generation {
                generation = now.generation;
                budget_used = 0;
            }
            match now.mode {
                Mode::Pass => break,
                Mode::Delay(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                Mode::Stall => {
                    if setting.changed().await.is_err() {
                        return End::Closed;
                    }
                }
                Mode::TruncateAfter(limit) => {
                    if counted.is_none() {
                        break;
                    }
                    let left = limit.saturating_sub(budget_used);
                    if chunk.len() <= left {
                        budget_used += chunk.len();
                        break;
                    }
                    let part = &chunk[..left];
                    if !part.is_empty() {
                        let _ = to.write_all(part).await;
                        let _ = to.flush().await;
                    }
                    if let Some(counted) = counted {
                        counted.fetch_add(part.len() as u64, Ordering::SeqCst);
                    }
                    return End::Truncated;
                }
            }
        }
        if to.write_all(chunk).await.is_err() {
            return End::Closed;
        }
        if let Some(counted) = counted {
            counted.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    }
}
