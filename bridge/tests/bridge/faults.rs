//! Fault injection: real bridge processes on real pipes, relays on loopback, and a proxy (see
//! `fault_proxy`) that resets, stalls, delays or truncates the bridge's connections. Each test
//! asserts what the user's host sees, and that no chat message is lost or repeated where the
//! design promises it. Timings are printed (`--nocapture`) for `docs/reliability.md`.
//!
//! Randomised cases print their seed; `MCP_CHAT_FAULT_SEED=<seed>` replays one.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::common::{Bridge, Relay, relay_config, temp_dir};
use crate::fault_proxy::{FaultProxy, Mode};
use testkit::process::{RelayProcess, relay_binary, test_args};

/// A small deterministic RNG (xorshift64*), seeded from `MCP_CHAT_FAULT_SEED` or the clock.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn from_env() -> (Self, u64) {
        let seed = std::env::var("MCP_CHAT_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        (Self(seed | 1), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Prints a timing line for the reliability figures.
pub(crate) fn figure(test: &str, what: &str, took: Duration) {
    eprintln!("FIGURE {test}: {what}: {} ms", took.as_millis());
}

/// Reads from `bridge` into `seen` until `done(seen)` or `limit` has passed.
pub(crate) async fn read_until(
    bridge: &mut Bridge,
    seen: &mut Vec<Value>,
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        seen.extend(bridge.drain(Duration::from_millis(50)).await);
        if done(seen) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// Texts of the host-side `message.received` notifications, in the order they arrived.
pub(crate) fn received(seen: &[Value]) -> Vec<String> {
    seen.iter()
        .filter(|m| m["method"] == "message.received" && m.get("id").is_none())
        .filter_map(|m| m["params"]["text"].as_str().map(str::to_owned))
        .collect()
}

/// Texts of the `message.received` events mirrored as log lines (hosts that show only logs).
pub(crate) fn logged(seen: &[Value]) -> Vec<String> {
    seen.iter()
        .filter(|m| {
            m["method"] == "notifications/message"
                && m["params"]["data"]["event"]["type"] == "message.received"
        })
        .filter_map(|m| {
            m["params"]["data"]["event"]["text"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The bridge's own log lines to the host (logger `mcp-chat-bridge`) containing `needle`.
fn bridge_logs<'a>(seen: &'a [Value], needle: &str) -> Vec<&'a Value> {
    seen.iter()
        .filter(|m| {
            m["method"] == "notifications/message"
                && m["params"]["logger"] == "mcp-chat-bridge"
                && m["params"]["data"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(needle))
        })
        .collect()
}

/// Any `partner.disconnected`, as a custom notification or as its log mirror.
fn disconnects(seen: &[Value]) -> Vec<&Value> {
    seen.iter()
        .filter(|m| {
            m["method"] == "partner.disconnected"
                || m["params"]["data"]["event"]["type"] == "partner.disconnected"
        })
        .collect()
}

/// A (on `url_a`, usually the proxy) and B (on `url_b`), initialized and paired.
pub(crate) async fn pair(
    url_a: &str,
    url_b: &str,
    name: &str,
    env_a: &[(&str, &str)],
    env_b: &[(&str, &str)],
) -> (Bridge, Bridge) {
    let mut a = Bridge::spawn(url_a, temp_dir(&format!("{name}-a")), env_a);
    let mut b = Bridge::spawn(url_b, temp_dir(&format!("{name}-b")), env_b);
    a.initialize().await;
    b.initialize().await;
    let s = a.ok("enter_queue", json!({ "display_name": "Ada" })).await;
    assert_eq!(s["state"], "waiting", "{}", a.stderr());
    let s = b.ok("enter_queue", json!({ "display_name": "Bob" })).await;
    assert_eq!(s["state"], "in_room", "{}", b.stderr());
    a.notification("chatroom.found").await;
    b.notification("chatroom.found").await;
    (a, b)
}

pub(crate) fn texts(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

/// B writes 40 messages while A's connections (its SSE stream, its POSTs, all of them) are
/// reset 3–5 times at random moments (seed printed). What the design promises, and this
/// checks: every message reaches A's host exactly once by push (the relay retires the dead
/// stream and pushes again from the inbox after the client's `Last-Event-ID` or
/// `mcp-chat-last-seq`; the bridge drops replays), its log mirror too, and `wait_for_message`
/// returns every message exactly once, in order.
#[tokio::test]
async fn sse_stream_cut_at_random_points_loses_and_repeats_nothing() {
    let (mut rng, seed) = Rng::from_env();
    eprintln!("fault seed {seed} (MCP_CHAT_FAULT_SEED={seed} replays it)");
    let (relay, proxy, mut a, mut b, sent, cut_after, mut seen) =
        chat_through_resets(&mut rng, seed, "cut").await;
    let diag = |a: &Bridge| {
        format!(
            "\nseed {seed}, resets after {cut_after:?}, proxy resets {}, accepted {}\n--- A ---\n{}",
            proxy.resets(),
            proxy.accepted(),
            a.stderr()
        )
    };
    let by_number = |texts: Vec<String>| {
        let mut texts = texts;
        texts.sort_by_key(|t| t[1..].parse::<u32>().unwrap_or(u32::MAX));
        texts
    };
    let pushed = received(&seen);
    let in_order = pushed == sent;
    assert_eq!(
        by_number(pushed.clone()),
        sent,
        "every message pushed exactly once: {pushed:?}{}",
        diag(&a)
    );
    assert_eq!(
        by_number(logged(&seen)),
        sent,
        "every log mirror exactly once{}",
        diag(&a)
    );
    eprintln!(
        "FIGURE sse_stream_cut: seed {seed}: {} of {} pushes arrived once each, {}",
        pushed.len(),
        sent.len(),
        if in_order {
            "in order"
        } else {
            "some after newer ones"
        }
    );

    // The inbox has every message once, in order, pushed or not.
    let out = a.ok("wait_for_message", json!({ "timeout_secs": 0 })).await;
    let unread: Vec<&str> = out["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(
        unread,
        sent,
        "wait_for_message returns all, once{}",
        diag(&a)
    );
    seen.extend(a.drain(Duration::from_millis(300)).await);
    assert!(received(&seen).len() <= sent.len(), "nothing pushed twice");
    assert!(
        proxy.resets() >= cut_after.len(),
        "the cuts hit open connections"
    );

    // And the chat goes on both ways.
    a.ok("send_message", json!({ "text": "still here" })).await;
    b.notification_where("message.received", |p| p["text"] == "still here")
        .await;
    drop(relay);
}

/// The chat of the SSE-cut cases: A (behind a proxy) and B (direct), B writes 40 messages,
/// the proxy resets all of A's connections after 3–5 of them (chosen by `rng`). Returns what
/// A's host saw, once the pushes stopped coming (or all 40 arrived).
#[allow(clippy::type_complexity)]
pub(crate) async fn chat_through_resets(
    rng: &mut Rng,
    seed: u64,
    name: &str,
) -> (
    Relay,
    FaultProxy,
    Bridge,
    Bridge,
    Vec<String>,
    Vec<usize>,
    Vec<Value>,
) {
    let relay = Relay::start_with(relay_config()).await;
    let proxy = FaultProxy::start(relay.addr).await;
    let (mut a, mut b) = pair(&proxy.url, &relay.url, name, &[], &[]).await;

    let sent = texts("m", 40);
    let cuts = 3 + rng.below(3) as usize;
    let mut cut_after: Vec<usize> = Vec::new();
    while cut_after.len() < cuts {
        let i = 2 + rng.below(36) as usize;
        if !cut_after.contains(&i) {
            cut_after.push(i);
        }
    }
    cut_after.sort();
    eprintln!("seed {seed}: resets after messages {cut_after:?}");

    let mut seen = Vec::new();
    let mut last_cut = Instant::now();
    let mut accepted_at_cut = None;
    for (i, text) in sent.iter().enumerate() {
        b.ok("send_message", json!({ "text": text })).await;
        if cut_after.contains(&i) {
            // A cut right after another (messages 16 and 17) can find nothing open: A has not
            // reconnected yet. Each cut must hit a connection, so wait (bounded) until A has
            // made a new one since the last cut.
            let deadline = Instant::now() + Duration::from_secs(5);
            while accepted_at_cut.is_some_and(|at| proxy.accepted() <= at)
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Somewhere between "just written" and "already delivered".
            tokio::time::sleep(Duration::from_millis(rng.below(25))).await;
            accepted_at_cut = Some(proxy.accepted());
            proxy.reset_all();
            last_cut = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
        seen.extend(a.drain(Duration::ZERO).await);
    }
    let last_send = Instant::now();
    let all = read_until(&mut a, &mut seen, Duration::from_secs(6), |seen| {
        received(seen).len() >= sent.len()
    })
    .await;
    if all {
        figure(
            "sse_stream_cut",
            "last reset to every message pushed",
            last_cut.elapsed(),
        );
        figure(
            "sse_stream_cut",
            "last send to every message pushed",
            last_send.elapsed(),
        );
    }
    // Anything pushed twice would arrive right behind the rest.
    seen.extend(a.drain(Duration::from_secs(1)).await);
    (relay, proxy, a, b, sent, cut_after, seen)
}

/// A's link stalls (nothing moves either way, connections stay open) for longer than the
/// bridge's ping timeout (3 s here, `MCP_CHAT_PING_TIMEOUT_SECS`; 10 s by default), with pings
/// every second: A's host is told the connection was lost,
/// then restored once bytes flow again; what B wrote during the stall arrives after it, once
/// each, and nothing is reported lost.
#[tokio::test]
async fn long_stall_is_reported_lost_then_restored_and_delivers_after() {
    let relay = Relay::start_with(relay_config()).await;
    let proxy = FaultProxy::start(relay.addr).await;
    let env = [
        ("MCP_CHAT_PING_SECS", "1"),
        ("MCP_CHAT_PING_TIMEOUT_SECS", "3"),
    ];
    let (mut a, mut b) = pair(&proxy.url, &relay.url, "stall", &env, &[]).await;
    let sent = texts("s", 6);
    let mut seen = Vec::new();
    b.ok("send_message", json!({ "text": sent[0] })).await;
    assert!(
        read_until(&mut a, &mut seen, Duration::from_secs(5), |s| received(s)
            .len()
            == 1)
        .await,
        "{}",
        a.stderr()
    );

    proxy.stall();
    let stalled = Instant::now();
    for text in &sent[1..] {
        b.ok("send_message", json!({ "text": text })).await;
    }
    // The bridge's ping timeout is 3 s here, whatever the ping interval.
    let lost = read_until(&mut a, &mut seen, Duration::from_secs(8), |s| {
        !bridge_logs(s, "lost the connection").is_empty()
    })
    .await;
    let noticed = stalled.elapsed();
    assert!(lost, "A's host is told: {seen:?}\n{}", a.stderr());
    let warning = bridge_logs(&seen, "lost the connection")[0].clone();
    assert_eq!(warning["params"]["level"], "warning");
    let text = warning["params"]["data"]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains(&proxy.url), "names the relay: {text}");
    // Why: the ping went unanswered, or the request could not be sent.
    assert!(
        text.contains("did not answer a ping") || text.contains("cannot reach the relay"),
        "says why: {text}"
    );
    assert_eq!(received(&seen).len(), 1, "nothing passes a stalled link");

    proxy.pass();
    let released = Instant::now();
    let back = read_until(&mut a, &mut seen, Duration::from_secs(10), |s| {
        !bridge_logs(s, "restored").is_empty() && received(s).len() >= sent.len()
    })
    .await;
    let recovered = released.elapsed();
    seen.extend(a.drain(Duration::from_secs(1)).await);
    assert!(
        back,
        "restored and delivered: {:?}\n{}",
        received(&seen),
        a.stderr()
    );
    assert_eq!(received(&seen), sent, "once each, in order");
    assert_eq!(
        bridge_logs(&seen, "lost the connection").len(),
        1,
        "one loss reported"
    );
    assert_eq!(
        bridge_logs(&seen, "restored").len(),
        1,
        "one restore reported"
    );
    let restored = bridge_logs(&seen, "restored")[0];
    assert_eq!(restored["params"]["level"], "info");
    figure("long_stall", "stall start to 'lost' reported", noticed);
    figure(
        "long_stall",
        "release to 'restored' and all delivered",
        recovered,
    );

    // The partner never noticed, and the chat goes on.
    let status = b.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "in_room", "{status}");
    a.ok("send_message", json!({ "text": "after the stall" }))
        .await;
    b.notification_where("message.received", |p| p["text"] == "after the stall")
        .await;
}

/// A stall shorter than the ping timeout (3 s): the host sees no loss at all, the calls and
/// messages caught in it complete after it, once each.
#[tokio::test]
async fn short_stall_is_invisible_and_delivers_after() {
    let relay = Relay::start_with(relay_config()).await;
    let proxy = FaultProxy::start(relay.addr).await;
    let env = [("MCP_CHAT_PING_SECS", "1")];
    let (mut a, mut b) = pair(&proxy.url, &relay.url, "shortstall", &env, &[]).await;
    let sent = texts("q", 5);
    proxy.stall();
    let stalled = Instant::now();
    for text in &sent {
        b.ok("send_message", json!({ "text": text })).await;
    }
    // A call made into the stall is answered after it.
    a.send(json!({
        "jsonrpc": "2.0", "id": 900, "method": "tools/call",
        "params": { "name": "chat_status", "arguments": {} }
    }))
    .await;
    let mut seen = a.drain(Duration::from_secs(3)).await;
    assert!(received(&seen).is_empty(), "nothing passes a stalled link");
    proxy.pass();
    let released = Instant::now();
    let done = read_until(&mut a, &mut seen, Duration::from_secs(5), |s| {
        received(s).len() >= sent.len() && s.iter().any(|m| m["id"] == 900)
    })
    .await;
    let recovered = released.elapsed();
    seen.extend(a.drain(Duration::from_secs(1)).await);
    assert!(done, "{seen:?}\n{}", a.stderr());
    assert_eq!(received(&seen), sent, "once each, in order");
    let answer = seen.iter().find(|m| m["id"] == 900).unwrap();
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(answer["result"]["structuredContent"]["state"], "in_room");
    assert!(
        bridge_logs(&seen, "lost the connection").is_empty(),
        "a short stall is not reported: {seen:?}"
    );
    assert!(stalled.elapsed() < Duration::from_secs(10));
    figure("short_stall", "release to all delivered", recovered);
}

/// The text of a tool result (its first content block).
pub(crate) fn result_text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A's response to `send_message` is cut after N bytes (in the status line, in the headers):
/// the call gets a tool error at once that names the relay and says the message may or may not
/// have arrived; the relay got each message once (B sees it once), and A's next call works. A
/// push cut mid-frame on the SSE stream is delivered after the stream is re-attached, once.
/// (A cut inside the SSE body of a POST response: see the next test.)
#[tokio::test]
async fn truncated_responses_get_an_answer_and_send_nothing_twice() {
    let relay = Relay::start_with(relay_config()).await;
    let proxy = FaultProxy::start(relay.addr).await;
    // No pings: they would take the cut meant for the tool call.
    let env = [
        ("MCP_CHAT_PING_SECS", "60"),
        ("MCP_CHAT_CALL_DEADLINE_SECS", "4"),
    ];
    let (mut a, mut b) = pair(&proxy.url, &relay.url, "truncate", &env, &[]).await;
    let mut outcomes = Vec::new();
    for (i, cut) in [12usize, 90, 150].into_iter().enumerate() {
        let text = format!("cut-{cut}");
        proxy.set(Mode::TruncateAfter(cut));
        let started = Instant::now();
        let result = a.call("send_message", json!({ "text": text })).await;
        let took = started.elapsed();
        proxy.pass();
        let failed = result["isError"] == true;
        if failed {
            let why = result_text(&result);
            assert!(why.contains(&proxy.url), "names the relay: {why}");
            assert!(why.contains("may or may not have arrived"), "{why}");
        } else {
            assert_eq!(result["structuredContent"]["delivered_to"], 1, "{result}");
        }
        assert!(
            took < Duration::from_secs(10),
            "answered within bounds: {took:?}"
        );
        outcomes.push(format!(
            "cut after {cut} B: {} in {} ms",
            if failed { "tool error" } else { "result" },
            took.as_millis()
        ));
        // The relay took the message once, whatever A's host was told.
        let got = b
            .notification_where("message.received", |p| p["text"] == text)
            .await;
        assert_eq!(got["message_seq"], i as u64 + 1, "{got}");
        // And A works again at once.
        let status = a.ok("chat_status", json!({})).await;
        assert_eq!(status["state"], "in_room", "{status}\n{}", a.stderr());
    }
    let extra = b.drain(Duration::from_millis(500)).await;
    assert!(
        received(&extra).is_empty(),
        "nothing arrived twice: {:?}",
        received(&extra)
    );
    assert!(proxy.truncated() >= 1, "the cuts hit the calls");
    eprintln!("FIGURE truncation: {}", outcomes.join("; "));

    // Pushes to A survive a cut of the stream too.
    proxy.set(Mode::TruncateAfter(100));
    b.ok("send_message", json!({ "text": "through a cut" }))
        .await;
    let started = Instant::now();
    let mut seen = Vec::new();
    let got = read_until(&mut a, &mut seen, Duration::from_secs(8), |s| {
        !received(s).is_empty()
    })
    .await;
    proxy.pass();
    let recovered = started.elapsed();
    seen.extend(a.drain(Duration::from_secs(1)).await);
    assert!(got, "{}", a.stderr());
    assert_eq!(received(&seen), ["through a cut"]);
    figure("truncation", "push cut mid-frame to delivered", recovered);
}

/// A's POST response to `send_message` is cut inside its SSE body (after the priming event,
/// before or inside the frame carrying the result; three cut points, side by side). The relay
/// keeps a tool call's answer for a resume, so rmcp's client resumes the stream with
/// `Last-Event-ID` and the host gets the result (about 50 ms after the cut, measured). Should
/// the resume find nothing, the bridge gives up at its deadline (20 s by default,
/// `MCP_CHAT_CALL_DEADLINE_SECS`; 4 s here), answers the host with a tool error that says the
/// message may or may not have been sent, and cancels the call at the relay. Either way the
/// relay took the message once, and the next call works.
#[tokio::test]
async fn a_tool_result_cut_inside_the_sse_body_is_answered_within_its_deadline() {
    let (a, b, c) = tokio::join!(
        send_cut_in_sse_body(200),
        send_cut_in_sse_body(260),
        send_cut_in_sse_body(330),
    );
    eprintln!("FIGURE truncation in the SSE body: {a}; {b}; {c}");
}

/// One `send_message` whose response is cut after `cut` bytes (A behind a proxy to its own
/// relay); checks what A's host is told and what B gets. Returns the figure.
async fn send_cut_in_sse_body(cut: usize) -> String {
    let relay = Relay::start_with(relay_config()).await;
    let proxy = FaultProxy::start(relay.addr).await;
    // No pings: they would take the cut meant for the tool call.
    let env = [
        ("MCP_CHAT_PING_SECS", "60"),
        ("MCP_CHAT_CALL_DEADLINE_SECS", "4"),
    ];
    let name = format!("truncbody{cut}");
    let (mut a, mut b) = pair(&proxy.url, &relay.url, &name, &env, &[]).await;
    let text = format!("cut-{cut}");
    proxy.set(Mode::TruncateAfter(cut));
    let id = 700;
    a.send(json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": "send_message", "arguments": { "text": text } }
    }))
    .await;
    let started = Instant::now();
    let mut seen = Vec::new();
    // The deadline is 4 s, checked every 200 ms.
    let answered = read_until(&mut a, &mut seen, Duration::from_secs(9), |s| {
        s.iter().any(|m| m["id"] == id)
    })
    .await;
    let took = started.elapsed();
    proxy.pass();
    assert!(
        answered,
        "cut after {cut} bytes: no answer within 9 s (truncated {})\n{}",
        proxy.truncated(),
        a.stderr()
    );
    let result = seen.iter().find(|m| m["id"] == id).unwrap()["result"].clone();
    let failed = result["isError"] == true;
    let resumes = || a.stderr().matches("sse stream ended gracefully").count();
    let resumed = resumes();
    if failed {
        let why = result_text(&result);
        assert!(why.contains(&proxy.url), "names the relay: {why}");
        assert!(why.contains("did not answer send_message in time"), "{why}");
        assert!(why.contains("may or may not have taken effect"), "{why}");
        assert!(
            why.contains("check with get_messages before resending"),
            "{why}"
        );
        assert!(why.contains("in time (4 s)"), "{why}");
        assert!(
            took >= Duration::from_millis(3800) && took < Duration::from_secs(7),
            "cut after {cut}: given up at the 4 s deadline: {took:?}"
        );
        assert!(
            a.stderr()
                .contains("did not answer a chat tool call in time"),
            "logged"
        );
    } else {
        assert_eq!(result["structuredContent"]["delivered_to"], 1, "{result}");
    }
    // The relay took it once, whatever A's host was told.
    let got = b
        .notification_where("message.received", |p| p["text"] == text)
        .await;
    assert_eq!(got["message_seq"], 1, "{got}");
    // The cancellation ended rmcp's resume attempts of the dead stream (one every 500 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        resumes() <= resumed + 1,
        "cut after {cut}: resumes go on: {resumed} then {}",
        resumes()
    );
    // And A works again at once.
    let status = a.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "in_room", "{status}\n{}", a.stderr());
    let extra = b.drain(Duration::from_millis(500)).await;
    assert!(
        received(&extra).is_empty(),
        "nothing arrived twice: {:?}",
        received(&extra)
    );
    assert!(proxy.truncated() >= 1, "the cut hit the call");
    format!(
        "cut after {cut} B: {} in {} ms ({resumed} resume attempts before)",
        if failed { "tool error" } else { "result" },
        took.as_millis()
    )
}

/// What a broken relay does to every request.
#[derive(Clone, Copy, Debug)]
enum Fake {
    /// 200 `text/event-stream` whose events are not JSON-RPC.
    SseGarbage,
    /// 200 `application/json` that is not JSON.
    JsonGarbage,
    /// 502 with an HTML page, as a reverse proxy whose backend is gone.
    BadGateway,
    /// Accepts the request and never answers.
    Hang,
}

/// A fake relay on a free loopback port.
async fn fake_relay(kind: Fake) -> std::net::SocketAddr {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let handler = move || async move {
        match kind {
            Fake::SseGarbage => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/event-stream")],
                "id: 1\nevent: message\ndata: {\"jsonrpc\": 2.0, garbage\n\ndata: \u{0}\u{1}\n\n",
            )
                .into_response(),
            Fake::JsonGarbage => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "<html>definitely not json",
            )
                .into_response(),
            Fake::BadGateway => (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>502 Bad Gateway</body></html>",
            )
                .into_response(),
            Fake::Hang => std::future::pending().await,
        }
    };
    let app = axum::Router::new().route("/mcp", axum::routing::any(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Points a fresh bridge at a fake relay of `kind` (through a proxy), checks the host's call
/// fails clearly within the connect bound and the bridge stays up, then puts the real relay
/// behind the same URL and checks the bridge recovers by itself. Returns the figures.
async fn broken_relay_then_real_one(kind: Fake, relay: &Relay) -> String {
    let fake = fake_relay(kind).await;
    let proxy = FaultProxy::start(fake).await;
    let mut a = Bridge::spawn(&proxy.url, temp_dir("fake"), &[]);
    a.initialize().await;
    let started = Instant::now();
    let result = a.call("chat_status", json!({})).await;
    let took = started.elapsed();
    assert_eq!(result["isError"], true, "{kind:?}: {result}");
    let why = result_text(&result);
    assert!(why.contains(&proxy.url), "{kind:?} names the relay: {why}");
    assert!(
        took < Duration::from_secs(6),
        "{kind:?}: within the connect bound (2 s here): {took:?}"
    );
    let pong = a.request("ping", json!({})).await;
    assert_eq!(pong["result"], json!({}), "{kind:?}: the bridge is up");

    // The real relay comes back behind the same URL.
    proxy.set_upstream(relay.addr);
    proxy.reset_all();
    let switched = Instant::now();
    let mut status = a.call("chat_status", json!({})).await;
    while status["isError"] == true && switched.elapsed() < Duration::from_secs(8) {
        status = a.call("chat_status", json!({})).await;
    }
    let recovered = switched.elapsed();
    assert_eq!(
        status["structuredContent"]["state"],
        "idle",
        "{kind:?}: recovers: {status}\n{}",
        a.stderr()
    );
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "{kind:?}: still running"
    );
    format!(
        "{kind:?}: error in {} ms ({}), recovered in {} ms",
        took.as_millis(),
        why.split(". Try again").next().unwrap_or_default(),
        recovered.as_millis()
    )
}

/// The "relay" answers garbage (SSE events that are not JSON-RPC, a JSON body that is not
/// JSON) or a 502 page: the bridge stays up, answers the host's call with a tool error naming
/// the relay and the cause within its connect bound, and recovers by itself when the real
/// relay is behind the same URL again.
#[tokio::test]
async fn a_relay_answering_garbage_gets_clear_errors_then_recovers() {
    let relay = Relay::start_with(relay_config()).await;
    // Three bridges side by side, one per kind of garbage.
    let (sse, json, gateway) = tokio::join!(
        broken_relay_then_real_one(Fake::SseGarbage, &relay),
        broken_relay_then_real_one(Fake::JsonGarbage, &relay),
        broken_relay_then_real_one(Fake::BadGateway, &relay),
    );
    let figures = [sse, json, gateway];
    eprintln!("FIGURE fake relay: {}", figures.join(" | "));
}

/// The "relay" accepts connections and requests and never answers: the host's call fails
/// within the connect bound, and the bridge recovers once the real relay answers there.
#[tokio::test]
async fn a_hanging_relay_gets_a_clear_error_then_recovers() {
    let relay = Relay::start_with(relay_config()).await;
    let figure = broken_relay_then_real_one(Fake::Hang, &relay).await;
    eprintln!("FIGURE fake relay: {figure}");
}

/// Resident memory of a process, in KiB (Linux `/proc`).
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// One counter of the relay's `/metrics` (0 when absent).
async fn metric(relay: &Relay, name: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// A's host stops reading the bridge's stdout while B floods it (1,000 messages, within the
/// relay's limits), for 9 s. The bridge stays alive and its memory bounded, the relay keeps A
/// (default idle timeout), and once the host reads again `wait_for_message` returns every
/// message once, in order.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_host_that_stops_reading_stdout_leaves_the_bridge_bounded_and_loses_nothing() {
    deaf_host(None, None, Duration::from_secs(9)).await;
}

/// The deaf-host case with a relay idle timeout (4 s) plus grace (3 s) shorter than the host's
/// deafness (9 s, longer than the bridge's ping timeout, 3 s here, and than a ping's send bound,
/// 4.5 s; by default 10 s and 15 s): the relay keeps A all along (the bridge, blocked, pings it straight over
/// HTTP), B is never told A left, and A's host is never told the connection was lost (a ping
/// the bridge could not read the answer of says nothing about the link).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_deaf_host_keeps_its_seat_past_the_relay_idle_timeout() {
    let idle = Duration::from_secs(4);
    deaf_host(Some(idle), Some("3"), Duration::from_secs(9)).await;
}

/// The deaf-host case: the host does not read for `deaf_for`; `idle_timeout` overrides the
/// relay's (its grace period is 3 s), `ping_timeout` the bridge's (seconds).
#[cfg(target_os = "linux")]
pub(crate) async fn deaf_host(
    idle_timeout: Option<Duration>,
    ping_timeout: Option<&str>,
    deaf_for: Duration,
) {
    const FLOOD: usize = 1000;
    let mut config = relay_config();
    config.inbox_capacity = 4096;
    if let Some(idle) = idle_timeout {
        config.idle_timeout = idle;
    }
    let relay = Relay::start_with(config).await;
    let (reading, gate) = tokio::sync::watch::channel(true);
    let mut env = vec![("MCP_CHAT_PING_SECS", "1")];
    if let Some(timeout) = ping_timeout {
        env.push(("MCP_CHAT_PING_TIMEOUT_SECS", timeout));
    }
    let mut a = Bridge::spawn_gated(&relay.url, temp_dir("deaf-a"), &env, Some(gate));
    let mut b = Bridge::spawn(&relay.url, temp_dir("deaf-b"), &[]);
    a.initialize().await;
    b.initialize().await;
    a.ok("enter_queue", json!({ "display_name": "Ada" })).await;
    b.ok("enter_queue", json!({ "display_name": "Bob" })).await;
    a.notification("chatroom.found").await;
    b.notification("chatroom.found").await;
    let pid = a.child.id().unwrap();
    let rss_before = vm_rss_kib(pid);

    reading.send_replace(false);
    let started = Instant::now();
    let padding = "x".repeat(200);
    let sent: Vec<String> = (1..=FLOOD).map(|i| format!("f{i} {padding}")).collect();
    let mut rss_max = rss_before;
    for (i, text) in sent.iter().enumerate() {
        let out = b.ok("send_message", json!({ "text": text })).await;
        assert_eq!(out["delivered_to"], 1, "{out}");
        if i % 100 == 0 {
            rss_max = rss_max.max(vm_rss_kib(pid));
        }
    }
    let flooded = started.elapsed();
    // Stay deaf past the relay's idle timeout plus its grace period.
    let deaf_until = started + deaf_for;
    while Instant::now() < deaf_until {
        rss_max = rss_max.max(vm_rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(a.child.try_wait().unwrap().is_none(), "A's bridge is alive");
    let seen_b = b.drain(Duration::from_millis(100)).await;
    assert!(
        disconnects(&seen_b).is_empty(),
        "the relay timed A out: {:?}\n{}",
        disconnects(&seen_b),
        a.stderr()
    );
    let status = b.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "in_room", "{status}");
    let grown_kib = rss_max.saturating_sub(rss_before);
    assert!(
        grown_kib < 50 * 1024,
        "memory bounded: {rss_before} KiB before, {rss_max} KiB at most"
    );
    let push_timeouts = metric(&relay, "mcp_chat_push_timeouts_total").await;

    // The host reads again: the backlog comes out, and the inbox has everything.
    reading.send_replace(true);
    let resumed = Instant::now();
    let backlog = a.drain(Duration::from_secs(2)).await;
    let pushed = received(&backlog);
    let mut rest = sent.iter();
    for text in &pushed {
        assert!(rest.any(|s| s == text), "pushes in order, none twice");
    }
    let lost = bridge_logs(&backlog, "lost the connection");
    assert!(
        lost.is_empty(),
        "no loss reported: {lost:?}\n{}",
        a.stderr()
    );
    let mut unread: Vec<String> = Vec::new();
    for _ in 0..(FLOOD / 100 + 5) {
        let out = a.ok("wait_for_message", json!({ "timeout_secs": 0 })).await;
        let events = out["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        unread.extend(
            events
                .iter()
                .filter_map(|e| e["text"].as_str().map(str::to_owned)),
        );
    }
    assert_eq!(unread.len(), FLOOD, "every message unread once");
    assert!(unread == sent, "in order");
    let lost = bridge_logs(&a.backlog, "lost the connection");
    assert!(
        lost.is_empty(),
        "no loss reported: {lost:?}\n{}",
        a.stderr()
    );
    let drained = resumed.elapsed();
    eprintln!(
        "FIGURE deaf_host: deaf {} s, relay idle timeout {idle_timeout:?}: {FLOOD} messages in {} ms; bridge RSS {rss_before} KiB -> at most \
         {rss_max} KiB (+{grown_kib} KiB); {} of {FLOOD} pushes reached the host, relay push \
         timeouts {push_timeouts}; backlog + {FLOOD} unread read back in {} ms",
        deaf_for.as_secs(),
        flooded.as_millis(),
        pushed.len(),
        drained.as_millis()
    );
    // The chat goes on.
    a.ok("send_message", json!({ "text": "I was away" })).await;
    b.notification_where("message.received", |p| p["text"] == "I was away")
        .await;
}

/// A real `mcp-chat-relay` process (in-memory store) on `port` (0: a free one).
async fn relay_process(port: u16) -> RelayProcess {
    let args = test_args(3);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RelayProcess::start_on(&relay_binary(), port, &args, &[]).await
}

/// The relay process is SIGKILLed mid-chat and started again on the same port (in-memory
/// store: every chat is gone). Both hosts are told the connection was lost, then restored;
/// neither gets a `partner.disconnected` (nobody is left to send one): the chat is simply over —
/// `chat_status` says idle and `send_message` fails with `not_in_room`. A new chat works at
/// once, its messages pushed once each (the restarted relay's seqs start again at 1).
#[cfg(unix)]
#[tokio::test]
async fn relay_killed_mid_chat_and_restarted_ends_the_chat_and_a_new_one_works() {
    let mut relay = relay_process(0).await;
    let url = relay.url.clone();
    let (mut a, mut b) = pair(&url, &url, "kill", &[], &[]).await;
    let before = texts("k", 5);
    let mut seen_a = Vec::new();
    for text in &before {
        b.ok("send_message", json!({ "text": text })).await;
    }
    assert!(
        read_until(&mut a, &mut seen_a, Duration::from_secs(5), |s| received(s)
            .len()
            == 5)
        .await,
        "{}",
        a.stderr()
    );

    relay.sigkill();
    let killed = Instant::now();
    let mut seen_b = Vec::new();
    for (bridge, seen) in [(&mut a, &mut seen_a), (&mut b, &mut seen_b)] {
        let told = read_until(bridge, seen, Duration::from_secs(5), |s| {
            !bridge_logs(s, "lost the connection").is_empty()
        })
        .await;
        assert!(told, "told of the loss: {seen:?}\n{}", bridge.stderr());
    }
    let noticed = killed.elapsed();
    let port = relay.addr.port();
    let log = relay.log();
    drop(relay);
    let relay = relay_process(port).await;
    let restarted = Instant::now();
    for (bridge, seen) in [(&mut a, &mut seen_a), (&mut b, &mut seen_b)] {
        let back = read_until(bridge, seen, Duration::from_secs(8), |s| {
            !bridge_logs(s, "restored").is_empty()
        })
        .await;
        assert!(back, "restored: {seen:?}\n{}\n{log}", bridge.stderr());
    }
    let recovered = restarted.elapsed();
    assert!(disconnects(&seen_a).is_empty() && disconnects(&seen_b).is_empty());

    // The chat is over, and each side can tell.
    let status = a.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "idle", "{status}");
    let failed = b.call("send_message", json!({ "text": "anyone?" })).await;
    assert_eq!(failed["isError"], true, "{failed}");
    assert_eq!(
        failed["_meta"]["mcp-chat/error"]["error"]["code"], "not_in_room",
        "{failed}"
    );

    // A new chat works, its events not mistaken for the old relay's.
    let s = a.ok("enter_queue", json!({ "display_name": "Ada" })).await;
    assert_eq!(s["state"], "waiting", "{s}");
    let s = b.ok("enter_queue", json!({ "display_name": "Bob" })).await;
    assert_eq!(s["state"], "in_room", "{s}");
    let after = texts("n", 5);
    for text in &after {
        b.ok("send_message", json!({ "text": text })).await;
    }
    let new_chat = Instant::now();
    assert!(
        read_until(&mut a, &mut seen_a, Duration::from_secs(5), |s| received(s)
            .len()
            == 10)
        .await,
        "{:?}\n{}",
        received(&seen_a),
        a.stderr()
    );
    seen_a.extend(a.drain(Duration::from_millis(500)).await);
    let mut expected = before.clone();
    expected.extend(after);
    assert_eq!(received(&seen_a), expected, "each once");
    figure("relay_kill", "SIGKILL to both hosts told", noticed);
    figure(
        "relay_kill",
        "restart to both hosts told restored",
        recovered,
    );
    figure(
        "relay_kill",
        "new chat's 5 messages pushed",
        new_chat.elapsed(),
    );
    drop(relay);
}

/// The relay process is SIGKILLed mid-chat and restarted on its port while the bridges run on
/// the default ping interval (30 s, far longer than the test): a dead relay is noticed from the
/// connection itself (its event stream ends, the reconnect is refused), not from the next ping.
/// Both hosts hear "lost the connection" promptly, then "restored" and that the chat ended,
/// instead of only `unavailable` tool errors and a silent new session (issue 18, fault 1).
#[cfg(unix)]
#[tokio::test]
async fn relay_killed_and_restarted_is_reported_on_default_settings() {
    let mut relay = relay_process(0).await;
    let url = relay.url.clone();
    let default_ping = [("MCP_CHAT_PING_SECS", "30")];
    let (mut a, mut b) = pair(&url, &url, "kill-default", &default_ping, &default_ping).await;
    b.ok("send_message", json!({ "text": "before" })).await;
    let mut seen_a = Vec::new();
    assert!(
        read_until(&mut a, &mut seen_a, Duration::from_secs(5), |s| {
            received(s) == ["before"]
        })
        .await
    );

    relay.sigkill();
    let killed = Instant::now();
    let mut seen_b = Vec::new();
    for (bridge, seen) in [(&mut a, &mut seen_a), (&mut b, &mut seen_b)] {
        let told = read_until(bridge, seen, Duration::from_secs(5), |s| {
            !bridge_logs(s, "lost the connection").is_empty()
        })
        .await;
        assert!(told, "told of the loss: {seen:?}\n{}", bridge.stderr());
    }
    let noticed = killed.elapsed();
    let port = relay.addr.port();
    drop(relay);
    let relay = relay_process(port).await;
    let restarted = Instant::now();
    for (bridge, seen) in [(&mut a, &mut seen_a), (&mut b, &mut seen_b)] {
        let back = read_until(bridge, seen, Duration::from_secs(8), |s| {
            !bridge_logs(s, "restored").is_empty() && !bridge_logs(s, "chat ended").is_empty()
        })
        .await;
        assert!(
            back,
            "restored, and the chat's end told: {seen:?}\n{}\n{}",
            bridge.stderr(),
            relay.log()
        );
        assert_eq!(
            bridge_logs(seen, "lost the connection").len(),
            1,
            "{seen:?}"
        );
        assert_eq!(bridge_logs(seen, "restored").len(), 1, "{seen:?}");
    }
    let recovered = restarted.elapsed();
    let status = a.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "idle", "{status}");
    figure("relay_kill_default", "SIGKILL to both hosts told", noticed);
    figure(
        "relay_kill_default",
        "restart to both told restored",
        recovered,
    );
}
