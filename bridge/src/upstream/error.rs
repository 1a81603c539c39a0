//! What can go wrong on the relay connection, in words for a person.
//!
//! Every variant's text is what the host finally reads (inside "could not be reached (…)" or
//! "lost the connection … (…)"), so each says what happened, not which function failed.

use std::path::PathBuf;
use std::time::Duration;

/// A failure of the relay connection or of one exchange on it.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made, or a request could not be delivered (with its causes).
    #[error("cannot reach the relay: {0}")]
    Unreachable(String),
    /// The transport ended (rmcp gave up on it).
    #[error("the connection to the relay closed")]
    Closed,
    /// The transport ended before the relay answered `initialize`.
    #[error("the relay closed the connection during the handshake")]
    ClosedDuringHandshake,
    /// The relay answered `initialize` with an error.
    #[error("the relay refused the handshake: {0}")]
    HandshakeRefused(String),
    /// The relay did not answer `initialize` in time.
    #[error("the relay did not answer the handshake within {0:?}")]
    HandshakeTimeout(Duration),
    /// A health ping went unanswered (for time the bridge could have read the answer).
    #[error("the relay did not answer a ping within {0:?}")]
    PingTimeout(Duration),
    /// The relay did not take a request of the bridge's own in time.
    #[error("the relay did not accept the request within {0:?}")]
    SendTimeout(Duration),
    /// The relay answered 404 for the session: it restarted, or expired the session.
    #[error("the relay no longer knows this session (it restarted or expired it)")]
    SessionGone,
    /// The host sent something that is not an MCP message.
    #[error("the message is not valid MCP: {0}")]
    InvalidMessage(String),
    /// A keepalive ping before any session was made.
    #[error("no relay session yet")]
    NoSession,
    /// A keepalive ping was answered with an HTTP error.
    #[error("HTTP {0}")]
    Status(http::StatusCode),
    /// The configured CA bundle cannot be read.
    #[error("cannot read CA bundle {}: {source}", path.display())]
    CaBundleUnreadable {
        /// The bundle's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configured CA bundle is not PEM.
    #[error("CA bundle {} is not valid PEM: {source}", path.display())]
    CaBundleInvalid {
        /// The bundle's path.
        path: PathBuf,
        /// Why.
        source: reqwest::Error,
    },
    /// The HTTP client cannot be built.
    #[error("cannot set up HTTP: {0}")]
    HttpSetup(reqwest::Error),
    /// The identity token is not a valid header value, or none can be made.
    #[error("cannot use the identity: {0}")]
    Identity(String),
    /// A message of the bridge's own could not be built or read.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// An error and its causes, innermost last: "error sending request" alone does not tell a user
/// that the certificate was refused or the connection was refused.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
