//! Regression tests from fuzzing (`fuzz/`, `docs/fuzzing.md`): the bridge's host side, in
//! process (`mcp_chat_bridge::run` on in-memory pipes, relay on a closed port).

use std::time::Duration;

use mcp_chat_bridge::Settings;
use mcp_chat_bridge::settings::Paths;
use serde_json::Value;
use tokio::io::AsyncReadExt;

fn settings() -> Settings {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let dir =
        std::env::temp_dir().join(format!("mcp-chat-fuzz-regressions-{}", std::process::id()));
    let paths = Paths {
        config_dir: dir.clone(),
        log_dir: dir,
    };
    let mut settings = Settings::defaults(&[&url], paths);
    settings.ephemeral = true;
    settings.ping_interval = Duration::from_secs(1);
    settings.connect_wait = Duration::from_millis(1);
    settings.list_wait = Duration::from_millis(1);
    settings.progress_interval = Duration::from_millis(1);
    settings
}

/// Runs the bridge on `input` until it ends; returns what it wrote, one JSON value a line.
async fn bridge(input: &str) -> Vec<Value> {
    let (out_write, mut out_read) = tokio::io::duplex(64 * 1024);
    let collect = tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = out_read.read_to_end(&mut bytes).await;
        bytes
    });
    let input = std::io::Cursor::new(input.as_bytes().to_vec());
    let run = mcp_chat_bridge::run(
        settings(),
        "f".repeat(64),
        input,
        out_write,
        std::future::pending(),
    );
    tokio::time::timeout(Duration::from_secs(6), run)
        .await
        .expect("the bridge ends when its input ends");
    let bytes = collect.await.unwrap();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[tokio::test]
async fn garbage_gets_one_error_a_line_and_the_bridge_ends() {
    let out =
        bridge("not json\r\n\n[1]\n42\n{\"jsonrpc\":\"2.0\",\"id\":9}\n{\"unterminated\":").await;
    let codes: Vec<i64> = out
        .iter()
        .map(|m| m["error"]["code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [-32700, -32600, -32600, -32600, -32700], "{out:?}");
    assert_eq!(out[3]["id"], 9);
}

/// Finding 2 of docs/fuzzing.md (found by `bridge_stdio`): a request id that is a number beyond
/// 64-bit integers (or has a fraction) is parsed as an `f64` and echoed re-encoded, e.g.
/// `133333333333333363333333336666` comes back as `1.3333333333333633e+26`: the host cannot
/// match the answer. MCP ids are strings or integers; fix: answer such a request with
/// `-32600 Invalid Request` and `"id": null`, as for a line without a method.
#[tokio::test]
async fn ids_that_are_not_strings_or_integers_are_invalid_requests() {
    for id in ["133333333333333363333333336666", "1.5"] {
        let out = bridge(&format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}\n"
        ))
        .await;
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0]["error"]["code"], -32600, "{out:?}");
        assert_eq!(out[0]["id"], Value::Null, "{out:?}");
    }
}
