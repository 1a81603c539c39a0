//! The relay goes away and comes back.

use serde_json::json;

use crate::common::{Bridge, Relay, paired, relay_config, temp_dir};

/// The relay is stopped and restarted on the same port: both bridges tell their host, reconnect
/// on their own, and chatting works again.
#[tokio::test]
async fn bridges_reconnect_after_a_relay_restart() {
    let relay = Relay::start_with(relay_config()).await;
    let addr = relay.addr;
    let (mut a, mut b) = paired(&relay.url).await;
    relay.stop().await;
    for bridge in [&mut a, &mut b] {
        let lost = bridge
            .notification_where("notifications/message", |p| {
                p["data"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("lost the connection"))
            })
            .await;
        assert_eq!(lost["level"], "warning");
    }
    let relay = Relay::start_on(addr, relay_config()).await;
    for bridge in [&mut a, &mut b] {
        bridge
            .notification_where("notifications/message", |p| {
                p["data"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("restored"))
            })
            .await;
    }
    // The restarted relay kept nothing (in-memory): queue again and chat.
    let s = a.ok("enter_queue", json!({ "display_name": "Ada" })).await;
    assert_eq!(s["state"], "waiting", "{}", a.stderr());
    let s = b.ok("enter_queue", json!({ "display_name": "Bob" })).await;
    assert_eq!(s["state"], "in_room");
    b.ok("send_message", json!({ "text": "back online" })).await;
    let got = a
        .notification_where("message.received", |p| p["text"] == "back online")
        .await;
    assert_eq!(got["from"], "Bob");
    drop(relay);
}

/// A relay that is not there at start is picked up once it appears.
#[tokio::test]
async fn bridge_connects_when_the_relay_appears_later() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut a = Bridge::spawn(&format!("http://{addr}/mcp"), temp_dir("late"), &[]);
    a.initialize().await;
    let _relay = Relay::start_on(addr, relay_config()).await;
    // The call is held until the connection is made, then answered by the relay.
    let status = a.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "idle");
}

/// Several relay URLs are nodes of one relay: a node that is down hands over to the next, at
/// start and when the node in use goes away mid-session.
#[tokio::test]
async fn bridge_fails_over_to_the_next_relay_node() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let first = Relay::start_with(relay_config()).await;
    let second = Relay::start_with(relay_config()).await;
    // The first node is not there at start; the second is.
    let urls = format!("http://{dead}/mcp,{},{}", first.url, second.url);
    let mut a = Bridge::spawn(&urls, temp_dir("failover"), &[]);
    a.initialize().await;
    let status = a.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "idle", "{}", a.stderr());
    assert!(
        a.stderr().contains(&format!("relay={}", first.url)),
        "{}",
        a.stderr()
    );

    // The node in use goes away: the bridge moves on to the next one by itself.
    first.stop().await;
    a.notification_where("notifications/message", |p| {
        p["data"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("restored"))
    })
    .await;
    let status = a.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "idle");
    let log = a.stderr();
    assert!(log.contains(&format!("relay={}", second.url)), "{log}");
    drop(second);
}
