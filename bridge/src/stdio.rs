//! The host side: newline-delimited JSON-RPC on stdin and stdout.
//!
//! stdout carries MCP frames only, written by one task in the order they were queued. stdin is
//! read with a bounded line buffer: a line that is not JSON gets a JSON-RPC parse error (and the
//! bridge keeps serving); a line longer than [`MAX_LINE_BYTES`] is discarded with an error.

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Longest line accepted from the host.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// What the host sent.
#[derive(Debug)]
pub enum HostInput {
    /// A JSON value (a JSON-RPC message, or something claiming to be one).
    Message(Value),
    /// A line that is not JSON, or too long: answer with this error.
    Unreadable {
        /// JSON-RPC error code.
        code: i64,
        /// Explanation.
        message: String,
    },
}

/// Reads host lines until EOF, sending each to `tx`. Returns at EOF or read error, or when the
/// receiver is gone.
pub async fn read_host<R: AsyncBufRead + Unpin>(mut input: R, tx: mpsc::Sender<HostInput>) {
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut too_long = false;
        // Read one line without letting the buffer grow past the limit.
        loop {
            let chunk = match input.fill_buf().await {
                Ok(chunk) => chunk,
                Err(e) => {
                    tracing::warn!("reading stdin failed: {e}");
                    return;
                }
            };
            if chunk.is_empty() {
                if line.is_empty() && !too_long {
                    return; // EOF
                }
                break;
            }
            let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..=i], true),
                None => (chunk, false),
            };
            let used = part.len();
            if !too_long {
                if line.len() + used > MAX_LINE_BYTES {
                    too_long = true;
                    line.clear();
                } else {
                    line.extend_from_slice(part);
                }
            }
            input.consume(used);
            if done {
                break;
            }
        }
        let item = if too_long {
            HostInput::Unreadable {
                code: -32600,
                message: format!("Invalid Request: message longer than {MAX_LINE_BYTES} bytes"),
            }
        } else {
            let text = trim_line(&line);
            if text.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Value>(text) {
                Ok(value) => HostInput::Message(value),
                Err(e) => HostInput::Unreadable {
                    code: -32700,
                    message: format!("Parse error: {e}"),
                },
            }
        };
        if tx.send(item).await.is_err() {
            return;
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &line[..end]
}

/// Writes every queued message to `out` as one line, in order, flushing after each. Returns
/// when the queue closes or the host stops reading (write error).
pub async fn write_host<W: AsyncWrite + Unpin>(mut out: W, mut rx: mpsc::Receiver<Value>) {
    while let Some(message) = rx.recv().await {
        let mut bytes = match serde_json::to_vec(&message) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!("cannot encode a message for the host: {e}");
                continue;
            }
        };
        bytes.push(b'\n');
        if out.write_all(&bytes).await.is_err() || out.flush().await.is_err() {
            tracing::warn!("stdout closed; the host stopped reading");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_parse_errors_and_oversize() {
        let big = "x".repeat(MAX_LINE_BYTES + 10);
        let input = format!("{{\"a\":1}}\r\n\nnot json\n{big}\n{{\"b\":2}}");
        let (tx, mut rx) = mpsc::channel(16);
        read_host(input.as_bytes(), tx).await;
        let mut got = Vec::new();
        while let Ok(item) = rx.try_recv() {
            got.push(item);
        }
        assert_eq!(got.len(), 4);
        assert!(matches!(&got[0], HostInput::Message(v) if v["a"] == 1));
        assert!(matches!(
            &got[1],
            HostInput::Unreadable { code: -32700, .. }
        ));
        assert!(matches!(
            &got[2],
            HostInput::Unreadable { code: -32600, .. }
        ));
        assert!(
            matches!(&got[3], HostInput::Message(v) if v["b"] == 2),
            "last line without newline"
        );
    }
}
