//! The mcp-chat bridge: an MCP server on stdio that is an MCP client of a relay.
//!
//! Desktop AI clients launch it as a child process; it forwards their requests to the relay over
//! Streamable HTTP and re-emits the relay's notifications on stdout, so hosts without HTTP
//! support can chat.
//!
//! # Layout
//! - [`run`] serves one host on a reader and a writer until EOF or a shutdown signal.
//! - [`settings`]: flags > environment > `config.toml` > defaults, resolved into [`Settings`].
//! - [`identity`]: the stored anonymous identity token.
//! - `stdio`: bounded line reading and ordered writing; `upstream`: the relay connection (ping,
//!   reconnect); `bridge`: the loop between the two; [`logfile`]: the bounded log file.
//! - [`clients`], [`install`], [`doctor`]: `install --client`, `uninstall` and `doctor`.

// stdout is the host's JSON-RPC channel: the library never prints (the binary's subcommands,
// which run instead of the bridge, may).
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod bridge;
pub mod clients;
pub mod doctor;
pub mod identity;
pub mod install;
mod internal_id;
pub mod logfile;
pub mod settings;
mod stdio;
mod upstream;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use settings::Settings;

use crate::bridge::{Bridge, TICK};

/// Serves the host speaking on `input`/`output` until the host closes `input` or `shutdown`
/// completes; then ends the relay session (so the partner learns at once) and returns.
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
    let mut bridge = Bridge::new(
        Arc::new(settings),
        identity,
        upstream::LastSeq::default(),
        out_tx,
        events_tx,
        stop_relay.clone(),
    );
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            input = host_rx.recv() => match input {
                Some(input) => bridge.on_host(input).await,
                None => {
                    tracing::info!("stdin closed; ending the relay session");
                    break;
                }
            },
            Some(event) = events_rx.recv() => bridge.on_upstream(event).await,
            _ = tick.tick() => bridge.on_tick().await,
            _ = &mut shutdown => {
                tracing::info!("shutdown signal; ending the relay session");
                break;
            }
        }
    }
    stop_relay.cancel();
    bridge.finish().await;
    drop(bridge);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), writer).await;
    reader.abort();
}
