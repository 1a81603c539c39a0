//! `mcp-chat-bench`: the load generator for the mcp-chat relay (issue 6).
//!
//! Every simulated participant is a real rmcp Streamable HTTP client session with its standalone
//! GET stream open, against a relay process the bench spawns (or one given by URL), so that the
//! relay's resident memory and CPU time can be read from `/proc`.
//!
//! # Layout
//! - [`scenario`]: connections, throughput, latency, baseline; [`smoke`]: all in miniature.
//! - [`abuse`], [`soak`]: victims next to abusers; a long run with churn (issue 7).
//! - [`raw`]: bare HTTP requests to `/mcp`, below rmcp (what abusers send).
//! - [`participant`]: one participant (rmcp client + handler that records pushed events).
//! - [`load`]: connecting a crowd, pacing senders, draining, settling the books.
//! - [`ledger`]: message stamps, per-message accounting, latency percentiles.
//! - [`server`]: spawning the relay (or the baseline server) and finding its port.
//! - [`baseline`]: the minimal HTTP server answering a fixed JSON-RPC reply.
//! - [`floor`]: the least a chat server over Streamable HTTP can do (POST → one SSE push).
//! - [`lean`]: the lean participant (bare HTTP and SSE, no rmcp client).
//! - [`procfs`]: memory and CPU readings; [`report`]: the scenarios' report types and tables;
//!   [`summary`]: the whole run's report (the one module that knows every scenario).

pub mod abuse;
pub mod baseline;
pub mod floor;
pub mod lean;
pub mod ledger;
pub mod load;
pub mod participant;
pub mod procfs;
pub mod raw;
pub mod report;
pub mod scenario;
pub mod server;
pub mod smoke;
pub mod soak;
pub mod summary;

use std::net::SocketAddr;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A server process could not be started.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The command line.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A server process did not announce its address.
    #[error("`{program}` did not announce its address; its log:\n{log}")]
    StartFailed {
        /// The command line.
        program: String,
        /// What it wrote to stderr.
        log: String,
    },
    /// Something the run needs could not be set up.
    #[error("{0}")]
    Setup(String),
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The built-in relay failed.
    #[error(transparent)]
    Relay(#[from] mcp_chat_relay::RelayError),
}

/// Runs the relay library linked into this binary on `bind` until the process is killed,
/// announcing its address on stderr with the same line the relay binary logs.
pub async fn run_builtin_relay(
    bind: SocketAddr,
    config: mcp_chat_relay::RelayConfig,
) -> Result<(), BenchError> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    eprintln!(
        "mcp-chat relay (built into mcp-chat-bench) listening on http://{}/mcp",
        listener.local_addr()?
    );
    mcp_chat_relay::serve(listener, config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
