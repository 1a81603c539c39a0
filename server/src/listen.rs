//! Accepting HTTP connections: what `axum::serve` does, plus the limits a public server needs.
//!
//! - A header-read timeout: a connection that does not send a complete request head in time
//!   (`RelayConfig::header_read_timeout`: slowloris, or an idle keep-alive connection) is
//!   closed. (axum's own `serve` builds hyper without a timer, so hyper's never applies.)
//! - A cap on open connections, and one per client address: past them, new connections are
//!   closed at once, so a flood of idle sockets cannot take every file descriptor.
//! - The peer address on every request ([`PeerAddress`]), for the per-address limits.
//! - `TCP_NODELAY` on every connection: chat events are small writes on long-lived streams;
//!   without it each would wait for the previous one's ACK, which the peer delays by up to
//!   40 ms.
//! - Graceful shutdown: once `shutdown` completes, no new connection is accepted and open ones
//!   finish their current request (the relay ends its sessions' streams itself).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::address::PeerAddress;
use crate::metrics::Rejection;
use crate::node::Node;

/// Serves `app` on `listener` with at most `max_connections` open at once, until `shutdown`
/// completes; then waits for the open connections to finish.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // not fatal; pause so a full descriptor table does not become a busy loop.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            node.metrics.reject(Rejection::TooManyConnections);
            drop(tcp);
            continue;
        };
        let Ok(address_permit) = node.addresses.connect(peer.ip()) else {
            node.metrics.reject(Rejection::AddressConnections);
            drop(tcp);
            continue;
        };
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(node.config.header_read_timeout);
        let app = app.clone();
        let peer = PeerAddress(peer.ip());
        let service = hyper::service::service_fn(move |mut request: http::Request<_>| {
            request.extensions_mut().insert(peer);
            app.clone().oneshot(request)
        });
        let connection = builder.serve_connection(TokioIo::new(tcp), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _permits = (permit, address_permit);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
