//! Bare HTTP against the relay's `/mcp`, below rmcp: the requests a misbehaving or hostile
//! client sends (sessions opened and dropped, GET streams never read, partial requests).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mcp_chat::protocol::IDENTITY_HEADER;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The longest one raw request may take before it counts as `timeout`.
const RAW_TIMEOUT: Duration = Duration::from_secs(30);
/// The protocol version raw clients ask for (the relay's newest).
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// What rmcp clients send as `Accept` on a POST.
const POST_ACCEPT: &str = "application/json, text/event-stream";

/// An MCP session opened by hand.
#[derive(Debug, Clone)]
pub struct RawSession {
    /// `Mcp-Session-Id`.
    pub id: String,
    /// The protocol version the relay answered `initialize` with.
    pub version: String,
    /// The identity token sent with `initialize`, if any.
    pub token: Option<String>,
    /// POSTs accept only a JSON answer (`Accept: application/json`), so that the server cannot
    /// answer a request with an SSE stream.
    pub json_answers: bool,
}

/// The socket address of an `http://HOST:PORT/mcp` URL.
pub fn socket_addr(url: &str) -> Option<SocketAddr> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    authority.parse().ok()
}

/// The JSON-RPC message in a response body: plain JSON, or the `data:` lines of an SSE body
/// (the first one that is an answer, skipping rmcp's empty priming event).
pub fn jsonrpc_of(body: &str) -> Option<Value> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('{') {
        return serde_json::from_str(trimmed).ok();
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v.get("result").is_some() || v.get("error").is_some())
}

fn post(http: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    post_accepting(http, url, POST_ACCEPT)
}

fn post_accepting(http: &reqwest::Client, url: &str, accept: &str) -> reqwest::RequestBuilder {
    http.post(url)
        .timeout(RAW_TIMEOUT)
        .header("accept", accept)
        .header("content-type", "application/json")
}

/// The kind of a failed request: `<step>:timeout`, `<step>:closed` (the server closed or reset
/// the connection before its answer was read) or `<step>:transport` (anything else).
pub fn transport(step: &str, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("{step}:timeout")
    } else if closed_by_peer(e) {
        format!("{step}:closed")
    } else {
        format!("{step}:transport")
    }
}

/// True when `error` (or one of its causes) is the peer closing or resetting the connection:
/// an I/O error of that kind, or hyper's "connection closed before message completed".
pub fn closed_by_peer(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        if e.to_string()
            .contains("connection closed before message completed")
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A TCP connection to `addr`, from source address `local` (port chosen by the kernel) when
/// given: every address of 127.0.0.0/8 reaches a relay on 127.0.0.1, as a client of its own.
pub async fn connect(
    addr: SocketAddr,
    local: Option<IpAddr>,
    recv_buffer: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(size) = recv_buffer {
        let _ = socket.set_recv_buffer_size(size);
    }
    if let Some(ip) = local {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

/// `initialize` then `notifications/initialized`, as a client does; the error is the kind of
/// the first step that failed (`initialize:http:503`, `initialized:transport`, ...).
pub async fn open_session(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> Result<RawSession, String> {
    open_session_with(http, url, token, json!({})).await
}

/// [`open_session`], declaring these client `capabilities`.
pub async fn open_session_with(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    capabilities: Value,
) -> Result<RawSession, String> {
    let body = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": capabilities,
            "clientInfo": { "name": "mcp-chat-bench-raw", "version": env!("CARGO_PKG_VERSION") }
        }
    });
    let mut request = post(http, url).body(body.to_string());
    if let Some(token) = token {
        request = request.header(IDENTITY_HEADER, token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| transport("initialize", &e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("initialize:http:{}", status.as_u16()));
    }
    let id = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| "initialize:no_session_id".to_owned())?;
    let text = response
        .text()
        .await
        .map_err(|e| transport("initialize", &e))?;
    let version = jsonrpc_of(&text)
        .and_then(|m| m["result"]["protocolVersion"].as_str().map(str::to_owned))
        .ok_or_else(|| "initialize:unreadable".to_owned())?;
    let session = RawSession {
        id,
        version,
        token: token.map(str::to_owned),
        json_answers: false,
    };
    let notification = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let response = session_post(http, url, &session, &notification)
        .send()
        .await
        .map_err(|e| transport("initialized", &e))?;
    if response.status() != reqwest::StatusCode::ACCEPTED {
        return Err(format!("initialized:http:{}", response.status().as_u16()));
    }
    Ok(session)
}

fn session_post(
    http: &reqwest::Client,
    url: &str,
    session: &RawSession,
    body: &Value,
) -> reqwest::RequestBuilder {
    let accept = if session.json_answers {
        "application/json"
    } else {
        POST_ACCEPT
    };
    let mut request = post_accepting(http, url, accept)
        .header("mcp-session-id", &session.id)
        .header("mcp-protocol-version", &session.version)
        .body(body.to_string());
    if let Some(token) = &session.token {
        request = request.header(IDENTITY_HEADER, token);
    }
    request
}

/// Calls a tool on a raw session; the error is `tool:<code>`, `http:<status>`, ...
pub async fn call_tool(
    http: &reqwest::Client,
    url: &str,
    session: &RawSession,
    name: &str,
    arguments: Value,
) -> Result<Value, String> {
    call_tool_id(http, url, session, 1, name, arguments).await
}

/// [`call_tool`] with JSON-RPC id `id` (calls in flight at once need distinct ids).
pub async fn call_tool_id(
    http: &reqwest::Client,
    url: &str,
    session: &RawSession,
    id: u64,
    name: &str,
    arguments: Value,
) -> Result<Value, String> {
    let body = json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": name, "arguments": arguments }
    });
    let response = session_post(http, url, session, &body)
        .send()
        .await
        .map_err(|e| transport(name, &e))?;
    if !response.status().is_success() {
        return Err(format!("{name}:http:{}", response.status().as_u16()));
    }
    let text = response.text().await.map_err(|e| transport(name, &e))?;
    let message = jsonrpc_of(&text).ok_or_else(|| format!("{name}:unreadable"))?;
    if let Some(code) = message["error"]["code"].as_i64() {
        return Err(format!("{name}:mcp:{code}"));
    }
    let result = &message["result"];
    if result["isError"] == Value::Bool(true) {
        let code = result["_meta"][mcp_chat::errors::ERROR_META_KEY]["error"]["code"]
            .as_str()
            .unwrap_or("unknown");
        return Err(format!("{name}:tool:{code}"));
    }
    Ok(result.clone())
}

/// The standalone GET (SSE) stream of `session`, with the headers rmcp's client sends; it stays
/// open as long as its response is read (no timeout).
pub fn session_get(
    http: &reqwest::Client,
    url: &str,
    session: &RawSession,
) -> reqwest::RequestBuilder {
    let mut request = http
        .get(url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session.id)
        .header("mcp-protocol-version", &session.version);
    if let Some(token) = &session.token {
        request = request.header(IDENTITY_HEADER, token);
    }
    request
}

/// Ends a raw session (HTTP DELETE); the error is `delete:http:<status>`, `delete:transport`,
/// ...
pub async fn delete_session(
    http: &reqwest::Client,
    url: &str,
    session: &RawSession,
) -> Result<(), String> {
    let mut request = http
        .delete(url)
        .timeout(RAW_TIMEOUT)
        .header("mcp-session-id", &session.id)
        .header("mcp-protocol-version", &session.version);
    if let Some(token) = &session.token {
        request = request.header(IDENTITY_HEADER, token);
    }
    let response = request.send().await.map_err(|e| transport("delete", &e))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("delete:http:{}", response.status().as_u16()))
    }
}

/// Opens `session`'s standalone GET (SSE) stream on a TCP connection of its own, with the
/// headers rmcp's client sends, and reads only the response head: the caller then never reads
/// again. `recv_buffer` shrinks the socket's receive buffer (and so the TCP window the relay
/// sees) so that the relay's side fills after a few events, not megabytes. The connection comes
/// from source address `local` when given.
pub async fn open_unread_stream(
    addr: SocketAddr,
    local: Option<IpAddr>,
    session: &RawSession,
    recv_buffer: u32,
) -> Result<TcpStream, String> {
    let mut stream = tokio::time::timeout(RAW_TIMEOUT, connect(addr, local, Some(recv_buffer)))
        .await
        .map_err(|_| "get:timeout".to_owned())?
        .map_err(|_| "get:connect".to_owned())?;
    let mut head = format!(
        "GET /mcp HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream, application/json\r\n\
         Mcp-Session-Id: {}\r\nMcp-Protocol-Version: {}\r\n",
        session.id, session.version
    );
    if let Some(token) = &session.token {
        head.push_str(&format!("{IDENTITY_HEADER}: {token}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|_| "get:write".to_owned())?;
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(RAW_TIMEOUT, stream.read(&mut buf))
        .await
        .map_err(|_| "get:timeout".to_owned())?
        .map_err(|_| "get:read".to_owned())?;
    let head = String::from_utf8_lossy(&buf[..n]);
    let status = head.split_whitespace().nth(1).unwrap_or("none");
    if status != "200" {
        return Err(format!("get:http:{status}"));
    }
    Ok(stream)
}

/// Connects (from source address `local` when given) and sends the start of a request
/// (request line and one unfinished header), then nothing: a slowloris connection. The error is
/// `connect:timeout`, `connect:failed`, or `connect:write` (connected, but the peer had
/// already closed or reset the connection when the request was written).
pub async fn open_partial_request(
    addr: SocketAddr,
    local: Option<IpAddr>,
) -> Result<TcpStream, String> {
    let mut stream = tokio::time::timeout(RAW_TIMEOUT, connect(addr, local, None))
        .await
        .map_err(|_| "connect:timeout".to_owned())?
        .map_err(|_| "connect:failed".to_owned())?;
    let partial = format!("POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: applica");
    stream
        .write_all(partial.as_bytes())
        .await
        .map_err(|_| "connect:write".to_owned())?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_and_sse_bodies() {
        let sse = "id: 0\ndata: \n\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"protocolVersion\":\"2025-11-25\"}}\n\n";
        assert_eq!(
            jsonrpc_of(sse).unwrap()["result"]["protocolVersion"],
            "2025-11-25"
        );
        let plain = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700}}";
        assert_eq!(jsonrpc_of(plain).unwrap()["error"]["code"], -32700);
        assert!(jsonrpc_of("Not Found: Session not found").is_none());
        assert_eq!(
            socket_addr("http://127.0.0.1:4000/mcp"),
            Some("127.0.0.1:4000".parse().unwrap())
        );
    }
}
