//! The mcp-chat bridge: an MCP server on stdio that is an MCP client of a relay.
//!
//! Desktop AI clients launch it as a child process; it forwards their requests to the relay over
//! Streamable HTTP and re-emits the relay's notifications on stdout, so hosts without HTTP
//! support can chat.
//!
//! # Layout
//! - [`run`] serves one host on a reader and a writer until EOF or a shutdown signal: it is the
//!   one loop, and it owns every task (stdin reader, stdout writer, relay connection).
//! - `router`: JSON-RPC routing between host and relay, one message at a time; `chat_view`:
//!   chat events de-duplicated, mirrored (log line, channel push) and kept for `chat://current`;
//!   `pending`: the requests that wait and their deadlines; `internal_id`: the ids of the
//!   bridge's own requests.
//! - `stdio`: bounded line reading and ordered writing; `upstream`: the relay connection, a
//!   state machine (ping, what HTTP proves, one fail-over path).
//! - [`settings`]: flags > environment > `config.toml` > defaults, resolved into [`Settings`];
//!   a bad value is an error, never a silent default.
//! - [`identity`]: the stored anonymous identity token; [`logfile`]: the bounded log file.
//! - [`clients`], [`install`], [`doctor`]: `install --client`, `uninstall` and `doctor`.
//!
//! # One message, host A → relay → host B
//! 1. `stdio::read_host`: a line on A's stdin becomes a `HostInput` (bounded queue).
//! 2. [`run`]'s loop → `router::Router::on_host` → `forward`: the request enters
//!    `pending::PendingCalls` (its deadline, its progress) and the queue to the relay.
//! 3. `upstream::connection::Connection::serve` → rmcp's transport → `upstream::client::RelayClient`:
//!    an HTTP POST to the relay.
//! 4. The relay (`server/src`: `listen.rs` → `http.rs` → `handler.rs` → the store → `push.rs`)
//!    puts the message in B's inbox and pushes it on B's event stream.
//! 5. B's bridge: rmcp's transport → `Connection::on_message` (backpressure) → [`run`]'s loop
//!    → `Router::on_upstream` → `chat_view::ChatView::on_event` (once, mirrored).
//! 6. `stdio::write_host`: the frames, in order, on B's stdout.

// stdout is the host's JSON-RPC channel: the library never prints (the binary's subcommands,
// which run instead of the bridge, may).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod chat_view;
pub mod clients;
pub mod doctor;
pub mod identity;
pub mod install;
mod internal_id;
pub mod logfile;
mod pending;
mod router;
pub mod settings;
mod stdio;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use chat_view::INBOX_URI;
pub use settings::Settings;

use crate::router::{Router, TICK};

/// Longest the relay connection may take to end its session at shutdown.
const FINISH_TIMEOUT: Duration = Duration::from_secs(4);
/// Longest the writer may take to flush the last frames at shutdown.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the host speaking on `input`/`output` until the host closes `input` or `shutdown`
/// completes; then ends the relay session (so the partner learns at once) and returns.
///
/// This is the bridge's one loop, and it owns the task tree: the stdin reader, the stdout
/// writer and the relay connection (started when the host's `initialize` asks the router for
/// it) are spawned here and ended here, so the order of shutdown is in one place.
pub async fn run<R, W>(
    settings: Settings,
    identity: String,
    input: R,
    output: W,
    shutdown: impl Future<Output = ()>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (host_tx, mut host_rx) = mpsc::channel(64);
    let reader = tokio::spawn(stdio::read_host(BufReader::new(input), host_tx));
    let (out_tx, out_rx) = mpsc::channel(1024);
    let writer = tokio::spawn(stdio::write_host(output, out_rx));
    let (events_tx, mut events_rx) = mpsc::channel(256);
    let stop_relay = CancellationToken::new();
    let mut connection: Option<JoinHandle<()>> = None;
    let mut router = Router::new(Arc::new(settings), identity, out_tx);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            input = host_rx.recv() => match input {
                Some(input) => {
                    router.on_host(input).await;
                    if let Some((upstream, outgoing)) = router.take_start() {
                        let events = events_tx.clone();
                        let stop = stop_relay.clone();
                        connection =
                            Some(tokio::spawn(upstream::run(upstream, events, outgoing, stop)));
                    }
                }
                None => {
                    tracing::info!("stdin closed; ending the relay session");
                    break;
                }
            },
            Some(event) = events_rx.recv() => router.on_upstream(event).await,
            _ = tick.tick() => router.on_tick().await,
            _ = &mut shutdown => {
                tracing::info!("shutdown signal; ending the relay session");
                break;
            }
        }
    }
    stop_relay.cancel();
    if let Some(task) = connection {
        let _ = tokio::time::timeout(FINISH_TIMEOUT, task).await;
    }
    drop(router);
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, writer).await;
    reader.abort();
}
