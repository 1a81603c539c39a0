//! What operators deploy: the relay binary's settings from files, and the systemd unit in
//! `install/`.

use std::path::Path;
use std::process::Command;

use serde_json::json;
use testkit::process::RelayProcess;

use crate::common::RawClient;

#[tokio::test]
async fn access_token_from_a_file() {
    let dir = std::env::temp_dir().join(format!("mcp-chat-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    // A byte-order mark and CRLF, as Notepad saves it.
    std::fs::write(&file, "\u{feff}0123456789abcdef-from-a-file\r\n").unwrap();
    // Compose passes an empty MCP_CHAT_ACCESS_TOKEN when it is unset: that is no token.
    let relay = RelayProcess::start(
        Path::new(env!("CARGO_BIN_EXE_mcp-chat-relay")),
        &[],
        &[
            ("MCP_CHAT_ACCESS_TOKEN_FILE", file.to_str().unwrap()),
            ("MCP_CHAT_ACCESS_TOKEN", ""),
        ],
    )
    .await;
    let url = relay.url.clone();

    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let anonymous = RawClient::new(&url).post(ping.clone()).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let mut client =
        RawClient::new(&url).header("authorization", "Bearer 0123456789abcdef-from-a-file");
    client.initialize().await;

    drop(relay);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreadable_access_token_file_stops_the_relay_with_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-chat-relay"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--access-token-file",
            "/nonexistent/token",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/token"), "{stderr}");
}

/// `systemd-analyze verify` on the unit, with ExecStart pointing at the built binary (verify
/// checks that the executable exists). `.ci/run` installs systemd, so CI always runs it.
#[test]
fn systemd_unit_verifies() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../install/mcp-chat-relay.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    let exec = "ExecStart=/usr/local/bin/mcp-chat-relay";
    assert!(
        text.contains(exec),
        "the unit starts /usr/local/bin/mcp-chat-relay"
    );
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "\n*** SKIPPED: systemd-analyze is not installed, so the systemd unit was NOT \
             verified (CI installs it) ***\n"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("mcp-chat-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("mcp-chat-relay.service");
    let binary = std::fs::canonicalize(env!("CARGO_BIN_EXE_mcp-chat-relay")).unwrap();
    std::fs::write(
        &copy,
        text.replace(exec, &format!("ExecStart={}", binary.display())),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // verify exits 0 on some mistakes (unknown keys are only warned about).
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}"
    );
}
