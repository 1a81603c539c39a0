//! The relay's request handling on arbitrary bytes: one in-process relay
//! (`mcp_chat_relay::serve` on 127.0.0.1, in-memory store, rate limits out of the way) for the
//! whole fuzzing process, and each input sent as an HTTP/1.1 request body to `/mcp` over a
//! kept-alive TCP connection.
//!
//! The first byte picks how the body is sent (see [`Variant`]): without a session, in the
//! fuzzer's MCP session, with an identity token, with a bad content type or `Accept`, with an
//! unknown session id, with a foreign `Origin`, or wrapped as the `arguments` of a `tools/call`
//! of one of the chat tools. Whatever the variant, an input that decodes as an
//! `rmcp::model::ClientJsonRpcMessage` `tools/call` is sent in the session, so that the relay's
//! argument decoding and the tool itself run on it.
//!
//! Asserts, for every input:
//! - the relay answers with a status line and a complete body within 5 s;
//! - no 5xx status but 503 (the session cap);
//! - a request from a foreign origin gets 403, one with a bad content type 415, one with a bad
//!   `Accept` 406, whatever the body (the headers are checked before the body is read); any
//!   other body that is not one JSON-RPC message gets 400 (or 413 when too large);
//! - a `tools/call` in the session gets 200 and a JSON-RPC response with its id, carrying a
//!   result (a failed call is a result with `isError`), or an error for an unknown tool or
//!   malformed params;
//! - the relay keeps answering (any panic in it aborts the fuzzer: libFuzzer's panic hook).
//!
//! `wait_for_message` calls are sent with `timeout_secs: 0` when they would wait (absent or a
//! valid number), so an input cannot park the fuzzer for 50 s; other values stay as they are.

#![no_main]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mcp_chat::tools::TOOL_NAMES;
use mcp_chat_relay::RelayConfig;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};
use serde_json::{Value, json};

/// Longest the relay may take to answer one request completely.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// A valid identity token (32 to 256 visible ASCII characters).
const IDENTITY: &str = "fuzz-identity-0123456789abcdef0123456789abcdef";

/// How an input is sent; chosen by its first byte.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Variant {
    /// Plain POST, no session: only `initialize` can succeed.
    NoSession,
    /// In the fuzzer's session.
    Session,
    /// In the session, with an identity token and a last-seq header from the input.
    Identity,
    /// In the session, with `Content-Type: text/plain`.
    BadContentType,
    /// In the session, with `Accept: text/html`.
    BadAccept,
    /// With a session id nobody has.
    UnknownSession,
    /// In the session, with `Origin: https://evil.example`.
    ForeignOrigin,
    /// The rest of the input as the `arguments` of a `tools/call`, in the session.
    ToolArguments,
}

const VARIANTS: [Variant; 8] = [
    Variant::NoSession,
    Variant::Session,
    Variant::Identity,
    Variant::BadContentType,
    Variant::BadAccept,
    Variant::UnknownSession,
    Variant::ForeignOrigin,
    Variant::ToolArguments,
];

struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    session: Option<String>,
    next_id: u64,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON-RPC messages of the body: the body itself (JSON), or each SSE `data:` line.
    fn messages(&self) -> Vec<Value> {
        if let Ok(value) = serde_json::from_slice::<Value>(&self.body) {
            return vec![value];
        }
        String::from_utf8_lossy(&self.body)
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    }
}

fn client() -> &'static Mutex<Client> {
    static CLIENT: OnceLock<Mutex<Client>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let config = RelayConfig {
                    rate_per_sec: 1_000_000.0,
                    rate_burst: 1_000_000,
                    // Sessions that inputs open (initialize without a session) are reaped soon.
                    idle_timeout: Duration::from_secs(5),
                    grace_period: Duration::from_secs(1),
                    max_sessions: 2_000,
                    // Every input comes from 127.0.0.1 and most are refused: the per-address
                    // limits would soon answer everything with a held 429.
                    address_sessions_per_sec: 0.0,
                    address_refusals_per_sec: 0.0,
                    address_max_connections: 0,
                    address_max_sessions: 0,
                    ..RelayConfig::default()
                };
                mcp_chat_relay::serve(listener, config, std::future::pending())
                    .await
                    .expect("the relay stopped");
            });
            panic!("the relay stopped");
        });
        Mutex::new(Client {
            addr,
            conn: None,
            session: None,
            next_id: 0,
        })
    })
}

impl Client {
    /// Sends one request; a kept-alive connection that the relay closed is replaced once.
    fn request(&mut self, method: &str, headers: &[(&str, String)], body: &[u8]) -> Response {
        let mut head = format!(
            "{method} /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n",
            self.addr.port(),
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let reused = self.conn.is_some();
        match self.try_request(head.as_bytes(), body) {
            Ok(Some(response)) => response,
            Ok(None) if reused => {
                // Closed before answering: an idle keep-alive connection. Once more, anew.
                self.conn = None;
                self.try_request(head.as_bytes(), body)
                    .unwrap_or_else(|e| panic!("{method} failed: {e}"))
                    .expect("the relay closed a fresh connection without answering")
            }
            Ok(None) => panic!("the relay closed a fresh connection without answering"),
            Err(e) => panic!("{method} failed (no answer within {ANSWER_WITHIN:?}?): {e}"),
        }
    }

    fn try_request(&mut self, head: &[u8], body: &[u8]) -> std::io::Result<Option<Response>> {
        if self.conn.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, ANSWER_WITHIN)?;
            stream.set_read_timeout(Some(ANSWER_WITHIN))?;
            stream.set_write_timeout(Some(ANSWER_WITHIN))?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().unwrap();
        let started = std::time::Instant::now();
        let mut request = head.to_vec();
        request.extend_from_slice(body);
        if conn.get_mut().write_all(&request).is_err() {
            self.conn = None;
            return Ok(None);
        }
        let mut status_line = String::new();
        if conn.read_line(&mut status_line)? == 0 {
            self.conn = None;
            return Ok(None);
        }
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if conn.read_line(&mut line)? == 0 {
                panic!("the relay closed the connection in the headers");
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header line");
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                conn.read_line(&mut size)?;
                let size = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
                let mut chunk = vec![0; size + 2];
                conn.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
                assert!(
                    started.elapsed() < ANSWER_WITHIN,
                    "the answer took longer than {ANSWER_WITHIN:?}"
                );
            }
        } else if let Some(length) = find("content-length") {
            body = vec![0; length.parse().expect("content-length")];
            conn.read_exact(&mut body)?;
        }
        if find("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            self.conn = None;
        }
        Ok(Some(Response {
            status,
            headers,
            body,
        }))
    }

    fn base_headers(&self, session: bool) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("Content-Type", "application/json".to_owned()),
            ("Accept", "application/json, text/event-stream".to_owned()),
        ];
        if session && let Some(id) = &self.session {
            headers.push(("Mcp-Session-Id", id.clone()));
            headers.push(("MCP-Protocol-Version", "2025-06-18".to_owned()));
        }
        headers
    }

    /// The fuzzer's own session: initialize, then notifications/initialized.
    fn ensure_session(&mut self) {
        if self.session.is_some() {
            return;
        }
        let init = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": { "name": "fuzz", "version": "0" },
            },
        });
        let headers = self.base_headers(false);
        // Inputs can open sessions up to the relay's cap (then 503) until they are reaped.
        let deadline = std::time::Instant::now() + Duration::from_secs(12);
        let response = loop {
            let response = self.request("POST", &headers, init.to_string().as_bytes());
            if response.status != 503 || std::time::Instant::now() > deadline {
                break response;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(response.status, 200, "initialize failed");
        let id = response
            .header("mcp-session-id")
            .expect("a session id")
            .to_owned();
        self.session = Some(id);
        let headers = self.base_headers(true);
        let done = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let response = self.request("POST", &headers, done.to_string().as_bytes());
        assert_eq!(response.status, 202, "notifications/initialized failed");
    }
}

/// Makes a `wait_for_message` call return at once when it would wait; `None` when `message`
/// is not such a call or needs no change.
fn without_wait(message: &Value) -> Option<Value> {
    if message["method"] != "tools/call" || message["params"]["name"] != "wait_for_message" {
        return None;
    }
    let mut message = message.clone();
    let arguments = &mut message["params"]["arguments"];
    if arguments.is_null() {
        *arguments = json!({});
    }
    let object = arguments.as_object_mut()?;
    match object.get("timeout_secs") {
        None | Some(Value::Null) => {}
        Some(v) if v.is_u64() && v != &json!(0) => {}
        _ => return None,
    }
    object.insert("timeout_secs".into(), json!(0));
    Some(message)
}

/// Header-safe text from the input (visible ASCII).
fn header_text(bytes: &[u8]) -> String {
    let text: String = bytes
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { 'x' })
        .take(64)
        .collect();
    if text.is_empty() { "x".into() } else { text }
}

/// Whether `body` is one JSON-RPC 2.0 message as the relay reads it: an object with
/// `"jsonrpc": "2.0"`, an `id` (if any) that is a string or an integer, and a `method`, or an
/// `id` with a `result` or an `error`.
fn is_jsonrpc(body: &[u8]) -> bool {
    let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return false;
    }
    let id = message.get("id");
    let id_ok = match id {
        None => true,
        Some(Value::String(_)) => true,
        Some(Value::Number(n)) => n.is_i64(),
        Some(_) => false,
    };
    let method_ok = match message.get("method") {
        Some(Value::String(_)) => true,
        None => id.is_some() && (message.contains_key("result") || message.contains_key("error")),
        Some(_) => false,
    };
    id_ok && method_ok
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut variant = VARIANTS[first as usize % VARIANTS.len()];
    let mut client = client().lock().unwrap_or_else(|e| e.into_inner());
    client.ensure_session();

    let mut body = rest.to_vec();
    if variant == Variant::ToolArguments {
        let (&pick, args) = rest.split_first().unwrap_or((&0, &[]));
        let arguments = serde_json::from_slice::<Value>(args)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(args).into_owned()));
        client.next_id += 1;
        let call = json!({
            "jsonrpc": "2.0", "id": format!("fuzz-{}", client.next_id), "method": "tools/call",
            "params": { "name": TOOL_NAMES[pick as usize % TOOL_NAMES.len()], "arguments": arguments },
        });
        body = call.to_string().into_bytes();
    }
    let decoded = serde_json::from_slice::<ClientJsonRpcMessage>(&body);
    let tool_call = matches!(
        &decoded,
        Ok(JsonRpcMessage::Request(r)) if matches!(r.request, ClientRequest::CallToolRequest(_))
    );
    if tool_call {
        // Always through the session, where the tool's arguments are decoded.
        if !matches!(variant, Variant::Session | Variant::Identity) {
            variant = Variant::ToolArguments;
        }
        let value: Value = serde_json::from_slice(&body).unwrap();
        if let Some(rewritten) = without_wait(&value) {
            body = rewritten.to_string().into_bytes();
        }
    }

    let in_session = !matches!(variant, Variant::NoSession | Variant::UnknownSession);
    let mut headers = client.base_headers(in_session);
    match variant {
        Variant::Identity => {
            headers.push(("mcp-chat-identity", IDENTITY.to_owned()));
            headers.push(("mcp-chat-last-seq", header_text(&rest[..rest.len().min(8)])));
        }
        Variant::BadContentType => headers[0].1 = "text/plain".into(),
        Variant::BadAccept => headers[1].1 = "text/html".into(),
        Variant::UnknownSession => {
            headers.push(("Mcp-Session-Id", header_text(&rest[..rest.len().min(40)])))
        }
        Variant::ForeignOrigin => headers.push(("Origin", "https://evil.example".into())),
        _ => {}
    }

    let response = client.request("POST", &headers, &body);
    let status = response.status;
    assert!(
        !(500..600).contains(&status) || status == 503,
        "{variant:?}: {status} for {:?}",
        String::from_utf8_lossy(&body)
    );
    match variant {
        Variant::ForeignOrigin => assert_eq!(status, 403, "a foreign origin got through"),
        Variant::BadContentType => assert_eq!(status, 415, "a bad content type got through"),
        Variant::BadAccept => assert_eq!(status, 406, "a bad Accept got through"),
        _ if !is_jsonrpc(&body) => assert!(
            status == 400 || status == 413,
            "{variant:?}: {status} for a body that is not JSON-RPC: {:?}",
            String::from_utf8_lossy(&body)
        ),
        _ => {}
    }
    if status == 404 && in_session {
        // The session was reaped (idle longer than the relay's idle timeout): a new one.
        client.session = None;
        return;
    }
    if tool_call && in_session {
        assert_eq!(
            status,
            200,
            "tools/call: {:?}",
            String::from_utf8_lossy(&body)
        );
        let id = serde_json::from_slice::<Value>(&body).unwrap()["id"].clone();
        let answer = response
            .messages()
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| {
                panic!(
                    "no answer to tools/call {id} in {:?}",
                    String::from_utf8_lossy(&response.body)
                )
            });
        assert!(
            answer.get("result").is_some() != answer.get("error").is_some(),
            "{answer}"
        );
    }
});
