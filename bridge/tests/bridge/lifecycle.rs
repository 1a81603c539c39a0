//! Starting without a relay, bad input, leaving, identity.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Bridge, Relay, paired, relay_config, temp_dir};

/// With no relay listening, initialize is still instant, tools/list falls back to the contract,
/// and a tool call fails clearly (naming the relay) within the connect bound.
#[tokio::test]
async fn unreachable_relay_fails_clearly_and_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut a = Bridge::spawn(&url, temp_dir("unreachable"), &[]);
    let started = Instant::now();
    let result = a.initialize().await;
    assert_eq!(result["serverInfo"]["name"], "mcp-chat-bridge");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "initialize does not wait for the network"
    );
    let tools = a.request("tools/list", json!({})).await;
    assert_eq!(
        tools["result"]["tools"].as_array().unwrap().len(),
        mcp_chat::tools::TOOL_NAMES.len()
    );
    let started = Instant::now();
    let result = a.call("enter_queue", json!({})).await;
    assert_eq!(result["isError"], true);
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(text.contains(&url), "names the relay: {text}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "fails within the bound"
    );
}

/// A malformed line gets a parse error and the bridge keeps serving; stdout stays pure MCP
/// (the harness fails on any non-JSON line).
#[tokio::test]
async fn malformed_input_gets_errors_and_serving_continues() {
    let relay = Relay::start_with(relay_config()).await;
    let mut a = Bridge::spawn(&relay.url, temp_dir("malformed"), &[]);
    a.initialize().await;
    a.write_raw(b"{this is not json\n").await;
    let error = a.next().await;
    assert_eq!(error["error"]["code"], -32700);
    a.write_raw(b"[1,2,3]\n").await;
    assert_eq!(a.next().await["error"]["code"], -32600);
    a.send(json!({ "jsonrpc": "2.0", "id": 5 })).await;
    assert_eq!(a.next().await["error"]["code"], -32600);
    let pong = a.request("ping", json!({})).await;
    assert_eq!(pong["result"], json!({}));
    let status = a.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "idle");
}

/// Closing stdin ends the relay session: the bridge exits 0 and the partner is told at once.
#[tokio::test]
async fn stdin_eof_ends_the_session_and_tells_the_partner() {
    let relay = Relay::start_with(relay_config()).await;
    let (mut a, mut b) = paired(&relay.url).await;
    a.close_stdin();
    let status = a.wait_exit().await;
    assert!(status.success(), "exit {status:?}: {}", a.stderr());
    let gone = b.notification("partner.disconnected").await;
    assert_eq!(gone["reason"], "disconnected");
}

/// The identity token is stored privately and reused: a bridge killed without a goodbye and
/// started again within the grace period is still in its room.
#[tokio::test]
async fn stored_identity_keeps_the_seat_across_restarts() {
    let relay = Relay::start_with(relay_config()).await;
    let dir = temp_dir("identity");
    let mut a = Bridge::spawn(&relay.url, dir.clone(), &[]);
    let mut b = Bridge::spawn(&relay.url, temp_dir("identity-b"), &[]);
    a.initialize().await;
    b.initialize().await;
    a.ok("enter_queue", json!({ "display_name": "Ida" })).await;
    b.ok("enter_queue", json!({})).await;
    let token = std::fs::read_to_string(dir.join("identity")).unwrap();
    assert_eq!(token.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("identity"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    a.child.start_kill().unwrap();
    a.wait_exit().await;

    let mut again = Bridge::spawn(&relay.url, dir.clone(), &[]);
    again.initialize().await;
    let status = again.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "in_room", "same identity, same seat");
    assert_eq!(status["display_name"], "Ida");
    b.ok("send_message", json!({ "text": "still here?" })).await;
    let got = again.notification("message.received").await;
    assert_eq!(got["text"], "still here?");

    let mut fresh = Bridge::spawn(&relay.url, dir, &[("MCP_CHAT_EPHEMERAL", "1")]);
    fresh.initialize().await;
    let status = fresh.ok("chat_status", json!({})).await;
    assert_eq!(
        status["state"], "idle",
        "an ephemeral identity is someone new"
    );
}

/// SIGTERM with stdin still open (the host just stops the process): the bridge ends the relay
/// session and exits 0, even though a thread is blocked reading stdin.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_ends_the_session_and_exits_zero() {
    let relay = Relay::start_with(relay_config()).await;
    let (mut a, mut b) = paired(&relay.url).await;
    let pid = a.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = a.wait_exit().await;
    assert!(exit.success(), "exit {exit:?}: {}", a.stderr());
    let gone = b.notification("partner.disconnected").await;
    assert_eq!(gone["reason"], "disconnected");
}

/// A setting the bridge cannot use stops it at once, with exit status 2 and a message that names
/// the variable, and nothing on stdout: no silent fallback to the default.
#[tokio::test]
async fn a_bad_environment_value_stops_the_bridge_and_names_the_variable() {
    let cases = [
        ("MCP_CHAT_PING_SECS", "thirty"),
        ("MCP_CHAT_CALL_DEADLINE_SECS", "-5"),
        ("MCP_CHAT_EPHEMERAL", "maybe"),
        ("MCP_CHAT_LOG", "info,=[broken"),
    ];
    for (name, value) in cases {
        let dir = temp_dir("bad-env");
        let mut bridge = Bridge::spawn("http://127.0.0.1:9/mcp", dir, &[(name, value)]);
        let status = bridge.wait_exit().await;
        assert_eq!(
            status.code(),
            Some(2),
            "{name}={value}: {}",
            bridge.stderr()
        );
        let stderr = bridge.stderr();
        assert!(stderr.contains(name), "{name}={value}: {stderr}");
        assert!(stderr.contains("is not valid"), "{name}={value}: {stderr}");
        assert!(
            bridge.drain(Duration::ZERO).await.is_empty(),
            "stdout stays empty"
        );
    }
}
