//! Shutdown: everyone in a room is told, and the relay exits promptly.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::process::RelayProcess;

use crate::common::{Chatter, TestRelay, pair};

/// In-process: stopping the relay tells both partners `relay_shutdown` and ends waits.
#[tokio::test]
async fn shutdown_tells_partners() {
    let relay = TestRelay::start().await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    pair(&mut a, &mut b).await;
    b.ok::<Value>("wait_for_message", json!({ "timeout_secs": 0 }))
        .await;
    let waiter = tokio::spawn(async move {
        let out: Value = b
            .ok("wait_for_message", json!({ "timeout_secs": 30 }))
            .await;
        out
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(relay.stop());
    let gone = a.pushed("partner.disconnected").await;
    assert_eq!(gone["reason"], "relay_shutdown");
    let out = waiter.await.unwrap();
    assert_eq!(out["events"][0]["reason"], "relay_shutdown");
    stopping.await.unwrap();
}

/// The real binary: SIGTERM tells partners and exits 0 within a few seconds.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_tells_partners_and_exits_zero() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_mcp-chat-relay"));
    let mut relay = RelayProcess::start(binary, &[], &[]).await;
    let url = relay.url.clone();
    let mut a = Chatter::connect(&url).await;
    let mut b = Chatter::connect(&url).await;
    pair(&mut a, &mut b).await;

    let started = Instant::now();
    let exit = relay.sigterm().await;
    for chatter in [&mut a, &mut b] {
        let gone = chatter.pushed("partner.disconnected").await;
        assert_eq!(gone["reason"], "relay_shutdown");
    }
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "exits within a few seconds"
    );
}
