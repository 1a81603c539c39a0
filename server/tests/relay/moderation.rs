//! Moderation end to end: `report` → evidence → ban → refused (in memory, and on two nodes
//! sharing Redis), the reported participant's view, the cooldown, the word list, kicks, the
//! admin API's token and listener, the `admin` subcommands.

use std::time::Duration;

use mcp_chat::ErrorCode;
use mcp_chat_relay::RelayConfig;
use mcp_chat_relay::moderation::{WordList, pseudonym};
use mcp_chat_relay::store::ParticipantKey;
use serde_json::{Value, json};

use crate::common::{
    AdminClient, Chatter, PROMPT, TestRelay, half_sent_request_is_cut_off, pair, test_config,
};
use crate::redis_harness::{NodeOptions, RedisServer, RelayNode, eventually, identity_token};

const ADMIN_TOKEN: &str = "admin-token-for-the-tests-0123456789";

fn admin_config() -> RelayConfig {
    RelayConfig {
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        ..test_config()
    }
}

async fn start() -> (TestRelay, AdminClient) {
    start_with(admin_config()).await
}

async fn start_with(config: RelayConfig) -> (TestRelay, AdminClient) {
    let relay = TestRelay::start_with_admin(config).await;
    let admin = AdminClient::new(relay.admin_url.as_deref().unwrap(), ADMIN_TOKEN);
    (relay, admin)
}

/// The pseudonym operators see for the participant with this identity token.
fn id_of(token: &str) -> String {
    pseudonym(&ParticipantKey::for_identity_token(token))
}

/// Event bodies of every unread event, without what differs between two runs (seq, time,
/// room id).
async fn unread_bodies(who: &Chatter) -> Vec<Value> {
    let out: Value = who
        .ok("wait_for_message", json!({ "timeout_secs": 0 }))
        .await;
    out["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut e = e.clone();
            for field in ["seq", "timestamp_ms", "room_id"] {
                e.as_object_mut().unwrap().remove(field);
            }
            e
        })
        .collect()
}

/// Pairs `a` and `b`, then `b` says something `a` then reports.
async fn pair_and_insult(a: &mut Chatter, b: &mut Chatter) {
    pair(a, b).await;
    let _: Value = a.ok("send_message", json!({ "text": "hi there" })).await;
    let _: Value = b
        .ok("send_message", json!({ "text": "you are awful" }))
        .await;
    a.pushed("message.received").await;
}

#[tokio::test]
async fn report_evidence_ban_refused_in_memory() {
    let (relay, admin) = start().await;
    let (ta, tb) = (identity_token("ada"), identity_token("bob"));
    let mut a = Chatter::connect_from(&relay.url, &ta, "127.0.0.1").await;
    let mut b = Chatter::connect_from(&relay.url, &tb, "127.0.0.2").await;
    pair_and_insult(&mut a, &mut b).await;

    let out: Value = a
        .ok(
            "report",
            json!({ "reason": "harassment", "note": "insults after hello" }),
        )
        .await;
    assert_eq!(out["reported"], true, "{out}");
    assert_eq!(out["left"], "room", "{out}");
    assert_eq!(out["blocked"], 1, "{out}");
    assert_eq!(out["status"]["state"], "idle", "{out}");

    let (status, list) = admin.get("/admin/reports").await;
    assert_eq!(status, 200, "{list}");
    let reports = list["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "{list}");
    let report = &reports[0];
    assert_eq!(report["reported"], id_of(&tb), "{report}");
    assert_eq!(report["reporter"], id_of(&ta), "{report}");
    assert_eq!(report["reason"], "harassment");
    assert_eq!(report["note"], "insults after hello");
    assert_eq!(report["address_known"], true, "{report}");
    assert!(
        report.get("evidence").is_none(),
        "the list leaves evidence out"
    );
    let text = list.to_string();
    for secret in [ta.as_str(), tb.as_str(), "127.0.0.2"] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }

    let id = report["id"].as_str().unwrap();
    let (status, shown) = admin.get(&format!("/admin/reports/{id}")).await;
    assert_eq!(status, 200, "{shown}");
    let evidence = shown["evidence"].as_array().unwrap();
    let lines: Vec<(&str, &str)> = evidence
        .iter()
        .map(|m| (m["side"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        lines,
        [("reporter", "hi there"), ("reported", "you are awful")]
    );
    let (status, _) = admin.get("/admin/reports/r-0000000000000000").await;
    assert_eq!(status, 404);

    let (status, ban) = admin
        .post("/admin/bans", json!({ "report": id, "address": true }))
        .await;
    assert_eq!(status, 201, "{ban}");
    assert_eq!(ban["participant"], id_of(&tb));
    assert_eq!(ban["address"], true);
    assert_eq!(ban["until"], "permanent");

    // Refused, with words a person understands, on every tool.
    for tool in ["chat_status", "enter_queue", "wait_for_message"] {
        let err = b.err(tool, json!({})).await;
        assert_eq!(err.code(), ErrorCode::Suspended, "{tool}");
        assert!(
            err.error.message.contains("suspended you"),
            "{}",
            err.error.message
        );
    }
    // A fresh identity from the same address too; not another address.
    let fresh = Chatter::connect_from(&relay.url, &identity_token("fresh"), "127.0.0.2").await;
    let err = fresh.err("enter_queue", json!({})).await;
    assert_eq!(err.code(), ErrorCode::Suspended);
    let elsewhere = Chatter::connect_from(&relay.url, &identity_token("other"), "127.0.0.3").await;
    let _: Value = elsewhere.ok("chat_status", json!({})).await;
    let _: Value = a.ok("chat_status", json!({})).await;

    // Lifted: B chats again.
    let (_, bans) = admin.get("/admin/bans").await;
    assert_eq!(bans["bans"].as_array().unwrap().len(), 1, "{bans}");
    let ban_id = ban["id"].as_str().unwrap();
    let (status, _) = admin.delete(&format!("/admin/bans/{ban_id}")).await;
    assert_eq!(status, 200);
    let (status, _) = admin.delete(&format!("/admin/bans/{ban_id}")).await;
    assert_eq!(status, 404);
    let _: Value = b.ok("chat_status", json!({})).await;
    relay.stop().await;
}

/// The reported participant's events, status and next calls are exactly those of someone
/// whose partner left with block=true.
#[tokio::test]
async fn a_reported_participant_cannot_tell() {
    let (relay, admin) = start().await;
    let mut reporter = Chatter::connect(&relay.url).await;
    let mut reported = Chatter::connect(&relay.url).await;
    pair_and_insult(&mut reporter, &mut reported).await;
    let _: Value = reporter.ok("report", json!({ "reason": "spam" })).await;
    reported.pushed("partner.disconnected").await;

    let mut leaver = Chatter::connect(&relay.url).await;
    let mut left = Chatter::connect(&relay.url).await;
    pair_and_insult(&mut leaver, &mut left).await;
    let _: Value = leaver.ok("leave_chat", json!({ "block": true })).await;
    left.pushed("partner.disconnected").await;

    assert_eq!(unread_bodies(&reported).await, unread_bodies(&left).await);
    let status: Value = reported.ok("chat_status", json!({})).await;
    assert_eq!(status, left.ok::<Value>("chat_status", json!({})).await);
    let queued: Value = reported.ok("enter_queue", json!({})).await;
    let _: Value = reported.ok("leave_chat", json!({})).await;
    assert_eq!(queued, left.ok::<Value>("enter_queue", json!({})).await);
    // And the reporter's side is still recorded.
    let (_, list) = admin.get("/admin/reports").await;
    assert_eq!(list["reports"].as_array().unwrap().len(), 1);
    relay.stop().await;
}

/// Reported by three distinct participants: held out of random matching (private rooms still
/// work), and the operator sees it.
#[tokio::test]
async fn three_reports_start_a_cooldown() {
    let (relay, admin) = start().await;
    let token = identity_token("spammer");
    let spammer = Chatter::connect_as(&relay.url, &token).await;
    for _ in 0..3 {
        let reporter = Chatter::connect(&relay.url).await;
        let _: Value = reporter.ok("enter_queue", json!({})).await;
        let s: Value = spammer.ok("enter_queue", json!({})).await;
        assert_eq!(s["state"], "in_room", "{s}");
        let _: Value = spammer.ok("send_message", json!({ "text": "buy" })).await;
        let _: Value = reporter.ok("report", json!({ "reason": "spam" })).await;
    }
    let err = spammer.err("enter_queue", json!({})).await;
    assert_eq!(err.code(), ErrorCode::MatchingPaused);
    assert!(
        err.error
            .message
            .contains("paused random matching for you until"),
        "{}",
        err.error.message
    );
    assert!(!err.error.message.contains("report"), "it must not say why");
    let err = spammer.err("next_chat", json!({})).await;
    assert_eq!(err.code(), ErrorCode::MatchingPaused);
    let room: Value = spammer
        .ok("join_room", json!({ "room_id": "friends" }))
        .await;
    assert_eq!(room["state"], "in_room");

    let (_, stats) = admin.get("/admin/stats").await;
    assert_eq!(stats["reports"], 3, "{stats}");
    let cooldowns = stats["cooldowns"].as_array().unwrap();
    assert_eq!(cooldowns.len(), 1, "{stats}");
    assert_eq!(cooldowns[0]["participant"], id_of(&token));
    relay.stop().await;
}

#[tokio::test]
async fn blocked_words_are_refused_with_a_clear_error() {
    let (relay, _admin) = start_with(RelayConfig {
        blocked_words: WordList::parse("# spam\nbuy now\n"),
        ..admin_config()
    })
    .await;
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect(&relay.url).await;
    pair(&mut a, &mut b).await;
    let err = a
        .err("send_message", json!({ "text": "Cheap pills: BUY   NOW!" }))
        .await;
    assert_eq!(err.code(), ErrorCode::MessageRefused);
    assert!(err.error.message.contains("Nothing was sent"));
    let sent: Value = a
        .ok("send_message", json!({ "text": "buying nowhere" }))
        .await;
    assert_eq!(sent["delivered_to"], 1);
    let got = b.pushed("message.received").await;
    assert_eq!(
        got["text"], "buying nowhere",
        "the refused one never arrived"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_kick_looks_like_an_ordinary_leave_to_the_partner() {
    let (relay, admin) = start().await;
    let token = identity_token("kicked");
    let mut a = Chatter::connect(&relay.url).await;
    let mut b = Chatter::connect_as(&relay.url, &token).await;
    pair(&mut a, &mut b).await;
    let (status, out) = admin
        .post("/admin/kicks", json!({ "participant": id_of(&token) }))
        .await;
    assert_eq!(status, 200, "{out}");
    let gone = a.pushed("partner.disconnected").await;
    assert_eq!(gone["reason"], "left", "{gone}");
    let s: Value = b.ok("chat_status", json!({})).await;
    assert_eq!(s["state"], "idle");
    let (status, _) = admin
        .post("/admin/kicks", json!({ "participant": id_of(&token) }))
        .await;
    assert_eq!(status, 404, "in no room any more");
    let (status, _) = admin
        .post("/admin/kicks", json!({ "participant": "not-an-id" }))
        .await;
    assert_eq!(status, 400);
    relay.stop().await;
}

/// Without the token, or with a wrong one: 401, and nothing changes.
#[tokio::test]
async fn admin_requests_without_the_right_token_get_401_and_change_nothing() {
    let (relay, admin) = start().await;
    let token = identity_token("target");
    let target = Chatter::connect_as(&relay.url, &token).await;
    let _: Value = target.ok("enter_queue", json!({})).await;
    for wrong in [
        admin.with_token(""),
        admin.with_token("admin-token-for-the-tests-0123456780"),
        admin.with_token("short"),
    ] {
        for (status, body) in [
            wrong.get("/admin/reports").await,
            wrong.get("/admin/stats").await,
            wrong.get("/admin/nowhere").await,
            wrong
                .post("/admin/bans", json!({ "participant": id_of(&token) }))
                .await,
            wrong
                .post("/admin/kicks", json!({ "participant": id_of(&token) }))
                .await,
        ] {
            assert_eq!(status, 401, "{body}");
        }
    }
    let (_, bans) = admin.get("/admin/bans").await;
    assert_eq!(bans["bans"], json!([]), "no ban was made");
    let s: Value = target.ok("chat_status", json!({})).await;
    assert_eq!(s["state"], "waiting", "not kicked");
    let (status, _) = admin.get("/admin/nowhere").await;
    assert_eq!(status, 404);
    relay.stop().await;
}

#[tokio::test]
async fn the_admin_api_is_not_on_the_public_port() {
    let (relay, admin) = start().await;
    let public = AdminClient::new(&format!("http://{}", relay.addr), ADMIN_TOKEN);
    assert_eq!(public.get("/admin/reports").await.0, 404);
    assert_eq!(public.get("/admin/stats").await.0, 404);
    let body = json!({ "participant": "u-0000000000000000" });
    assert_eq!(public.post("/admin/bans", body).await.0, 404);
    assert_eq!(admin.get("/admin/stats").await.0, 200);
    relay.stop().await;
}

/// A relay without the admin API serves nothing of it anywhere.
#[tokio::test]
async fn the_admin_api_is_off_by_default() {
    let relay = TestRelay::start().await;
    assert!(relay.admin_url.is_none());
    assert_eq!(relay.get("/admin/stats").await.0, 404);
    relay.stop().await;
}

fn relay_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-chat-relay"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MCP_CHAT_") {
            command.env_remove(name);
        }
    }
    command
}

#[tokio::test]
async fn the_relay_refuses_an_admin_listener_without_a_token() {
    let out = relay_command()
        .args(["--bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--admin-token-file"), "{stderr}");
}

/// `mcp-chat-relay admin ...` drives the API: text and `--json`.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_subcommands_call_the_api() {
    let (relay, admin) = start().await;
    let dir = std::env::temp_dir().join(format!("mcp-chat-admin-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let url = relay.admin_url.clone().unwrap();
    let run = |args: &[&str]| {
        let out = relay_command()
            .arg("admin")
            .args(["--url", &url, "--token-file"])
            .arg(&token_file)
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stdout, stderr)
    };
    let target = identity_token("cli");
    let participant = id_of(&target);

    let (ok, stdout, stderr) = tokio::task::block_in_place(|| run(&["stats", "--json"]));
    assert!(ok, "{stderr}");
    let stats: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(stats["bans"], 0);
    let (ok, stdout, stderr) = tokio::task::block_in_place(|| {
        run(&["ban", "--participant", &participant, "--duration", "2h"])
    });
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&participant), "{stdout}");
    let (ok, stdout, _) = tokio::task::block_in_place(|| run(&["bans", "--json"]));
    assert!(ok);
    let bans: Value = serde_json::from_str(&stdout).unwrap();
    let ban_id = bans["bans"][0]["id"].as_str().unwrap().to_owned();
    let (ok, stdout, _) = tokio::task::block_in_place(|| run(&["reports"]));
    assert!(ok && stdout.contains("No reports"), "{stdout}");
    let (ok, _, stderr) = tokio::task::block_in_place(|| run(&["report", "r-0000000000000000"]));
    assert!(!ok && stderr.contains("404"), "{stderr}");
    let (ok, _, stderr) = tokio::task::block_in_place(|| run(&["unban", &ban_id]));
    assert!(ok, "{stderr}");
    assert_eq!(admin.get("/admin/bans").await.1["bans"], json!([]));
    let _ = std::fs::remove_dir_all(&dir);
    relay.stop().await;
}

/// Two nodes on one Redis: a report filed on one is listed on the other, a ban made on the
/// other holds on both, for the identity and its address, and outlives a node's restart.
#[tokio::test(flavor = "multi_thread")]
async fn report_evidence_ban_refused_across_redis_nodes() {
    let Some(redis) = RedisServer::start("moderation::redis_nodes").await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("mcp-chat-admin-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    let options = NodeOptions {
        extra_args: vec![
            "--admin-bind".into(),
            "127.0.0.1:0".into(),
            "--admin-token-file".into(),
            token_file.display().to_string(),
        ],
        ..NodeOptions::default()
    };
    let mut node1 = RelayNode::start(&redis.url(), &options).await;
    let node2 = RelayNode::start(&redis.url(), &options).await;
    let admin2 = AdminClient::new(node2.admin_url.as_deref().unwrap(), ADMIN_TOKEN);

    let (ta, tb) = (identity_token("ada"), identity_token("bob"));
    let mut a = Chatter::connect_from(&node1.url, &ta, "127.0.0.1").await;
    let mut b = Chatter::connect_from(&node2.url, &tb, "127.0.0.2").await;
    pair_and_insult(&mut a, &mut b).await;
    let _: Value = a.ok("report", json!({ "reason": "harassment" })).await;

    let (_, list) = admin2.get("/admin/reports").await;
    let report = list["reports"][0].clone();
    assert_eq!(report["reported"], id_of(&tb), "{list}");
    let id = report["id"].as_str().unwrap();
    let (_, shown) = admin2.get(&format!("/admin/reports/{id}")).await;
    assert_eq!(shown["evidence"][1]["text"], "you are awful", "{shown}");
    let (status, ban) = admin2
        .post("/admin/bans", json!({ "report": id, "address": true }))
        .await;
    assert_eq!(status, 201, "{ban}");

    let err = b.err("enter_queue", json!({})).await;
    assert_eq!(err.code(), ErrorCode::Suspended);
    let again = Chatter::connect_from(&node1.url, &tb, "127.0.0.3").await;
    assert_eq!(
        again.err("chat_status", json!({})).await.code(),
        ErrorCode::Suspended,
        "the identity, on the other node"
    );
    let fresh = Chatter::connect_from(&node1.url, &identity_token("fresh"), "127.0.0.2").await;
    assert_eq!(
        fresh.err("enter_queue", json!({})).await.code(),
        ErrorCode::Suspended,
        "the address, on the other node"
    );
    let _ = tokio::time::timeout(PROMPT, again.close()).await;
    let _ = tokio::time::timeout(PROMPT, fresh.close()).await;

    node1.sigterm().await;
    node1.restart().await;
    let after = Chatter::connect_from(&node1.url, &tb, "127.0.0.4").await;
    eventually("the ban after a restart", PROMPT, || async {
        let result = after.call("chat_status", json!({})).await;
        (result.is_error == Some(true)).then_some(())
    })
    .await;
    assert_eq!(
        after.err("chat_status", json!({})).await.code(),
        ErrorCode::Suspended
    );
    let admin1 = AdminClient::new(node1.admin_url.as_deref().unwrap(), ADMIN_TOKEN);
    let (_, bans) = admin1.get("/admin/bans").await;
    assert_eq!(bans["bans"][0]["id"], ban["id"], "{bans}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = Duration::ZERO;
}

/// The admin listener closes a connection that does not send a complete request head within
/// the header-read timeout, as the public one does (it once used `axum::serve`, which has none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_closes_a_half_sent_request() {
    let mut config = admin_config();
    config.header_read_timeout = Duration::from_millis(500);
    let (relay, admin) = start_with(config).await;
    let address = relay
        .admin_url
        .as_deref()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    assert!(
        half_sent_request_is_cut_off(&address).await,
        "the half-sent request is cut off after the header timeout"
    );
    // The listener still serves whole requests.
    let (status, _) = admin.get("/admin/stats").await;
    assert_eq!(status, 200);
}
