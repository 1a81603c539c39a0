//! Managed Redis: `rediss://` with a CA file or the system's roots, the password from a file or
//! the environment, and settings that cannot work stopping the relay at start with what to fix.
//!
//! Real processes: a `redis-server` that speaks TLS only and requires a password, with a CA and
//! certificates made for the test (see `redis_tls_harness`), and relay nodes run from the
//! `mcp-chat-relay` binary. Without `redis-server` or `openssl` on PATH every test says so
//! loudly on stderr and returns (and fails when `CI` is set).

use serde_json::{Value, json};

use crate::common::{Chatter, PROMPT, pair};
use crate::redis_harness::{identity_token, pushed_text};
use crate::redis_tls_harness::{ACL_PASSWORD, ACL_USER, PASSWORD, RelayProcess, Startup, TlsRedis};

/// The MCP endpoint of a relay that started, or a panic with its log.
async fn serving(relay: &mut RelayProcess) -> String {
    match relay.startup().await {
        Startup::Serving(addr) => format!("http://{addr}/mcp"),
        Startup::Exited(status) => panic!(
            "the relay exited ({status}) instead of serving; log:\n{}",
            relay.log()
        ),
    }
}

/// Sends `text` from `from` and asserts it is pushed to `to`.
async fn say(from: &Chatter, to: &mut Chatter, text: &str) {
    let sent: Value = from.ok("send_message", json!({ "text": text })).await;
    assert_eq!(sent["delivered_to"], 1, "{sent}");
    let mut skipped = Vec::new();
    let got = pushed_text(to, text, PROMPT, &mut skipped).await;
    assert!(
        got.is_some(),
        "no push of {text:?} within {PROMPT:?}; other pushes: {skipped:?}"
    );
}

/// (1) Two relay nodes reach a TLS-only Redis over `rediss://`, trusting the test's CA
/// (`--redis-ca-file`) and logging in with the password from `--redis-password-file`: a
/// participant on each is matched with the other and their messages cross between the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_chat_through_a_tls_redis_with_a_ca_and_a_password_file() {
    let test = "redis_tls::two_nodes_chat_through_a_tls_redis_with_a_ca_and_a_password_file";
    let Some(redis) = TlsRedis::start(test).await else {
        return;
    };
    // A trailing newline, as editors and `echo` leave one.
    let password_file = redis.write("password", &format!("{PASSWORD}\n"));
    let ca = redis.path("ca.crt");
    let store = redis.url();
    let args = [
        "--store",
        &store,
        "--redis-ca-file",
        &ca,
        "--redis-password-file",
        &password_file,
        "--rate-per-sec",
        "1000",
        "--rate-burst",
        "1000",
    ];
    let mut node1 = RelayProcess::spawn(&args, &[]);
    let mut node2 = RelayProcess::spawn(&args, &[]);
    let (url1, url2) = (serving(&mut node1).await, serving(&mut node2).await);
    for node in [&node1, &node2] {
        let log = node.log();
        assert!(
            log.contains("connected to Redis") && log.contains("tls=true"),
            "{log}"
        );
    }
    let mut a = Chatter::connect_as(&url1, &identity_token("tls-a")).await;
    let mut b = Chatter::connect_as(&url2, &identity_token("tls-b")).await;
    pair(&mut a, &mut b).await;
    say(&a, &mut b, "from node 1, over TLS").await;
    say(&b, &mut a, "and back from node 2").await;
    a.close().await;
    b.close().await;
}

/// (2) A server certificate that does not chain to the trusted CA stops the relay at start,
/// naming the TLS failure and the setting to fix: a CA file of another CA, and (without
/// `--redis-ca-file`) the system's roots, which do not hold the test's CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_stops_the_relay_at_start() {
    let test = "redis_tls::an_untrusted_certificate_stops_the_relay_at_start";
    let Some(redis) = TlsRedis::start(test).await else {
        return;
    };
    let password_file = redis.write("password", PASSWORD);
    let store = redis.url();
    let other_ca = redis.path("other-ca.crt");
    RelayProcess::spawn(
        &[
            "--store",
            &store,
            "--redis-ca-file",
            &other_ca,
            "--redis-password-file",
            &password_file,
        ],
        &[],
    )
    .assert_refused(&[
        "TLS connection to Redis at 127.0.0.1:",
        "UnknownIssuer",
        "not signed by a CA this relay trusts",
        "--redis-ca-file only",
    ])
    .await;
    RelayProcess::spawn(
        &["--store", &store, "--redis-password-file", &password_file],
        &[],
    )
    .assert_refused(&["TLS connection to Redis", "UnknownIssuer", "system's roots"])
    .await;
}

/// (3) A wrong password, and no password for a Redis that requires one, stop the relay at
/// start with what Redis refused and where the password comes from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_password_stops_the_relay_at_start() {
    let test = "redis_tls::a_wrong_or_missing_password_stops_the_relay_at_start";
    let Some(redis) = TlsRedis::start(test).await else {
        return;
    };
    let store = redis.url();
    let ca = redis.path("ca.crt");
    let wrong = redis.write("wrong-password", "not-the-password\n");
    RelayProcess::spawn(
        &[
            "--store",
            &store,
            "--redis-ca-file",
            &ca,
            "--redis-password-file",
            &wrong,
        ],
        &[],
    )
    .assert_refused(&[
        "refused the login",
        "authentication failed",
        "--redis-password-file",
    ])
    .await;
    RelayProcess::spawn(
        &["--store", &store, "--redis-ca-file", &ca],
        &[("MCP_CHAT_REDIS_PASSWORD", "also-wrong")],
    )
    .assert_refused(&["refused the login", "authentication failed"])
    .await;
    RelayProcess::spawn(&["--store", &store, "--redis-ca-file", &ca], &[])
        .assert_refused(&[
            "refused the login",
            "requires a password and none was given",
            "MCP_CHAT_REDIS_PASSWORD",
        ])
        .await;
}

/// (4) Files that cannot be used stop the relay before it connects, naming the file and what
/// is wrong with it: an empty password file, a CA file without a certificate, a CA file for a
/// `redis://` (unencrypted) store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_files_stop_the_relay_at_start() {
    let test = "redis_tls::unusable_files_stop_the_relay_at_start";
    let Some(redis) = TlsRedis::start(test).await else {
        return;
    };
    let store = redis.url();
    let ca = redis.path("ca.crt");
    let empty = redis.write("empty-password", "\u{feff}\n");
    RelayProcess::spawn(
        &[
            "--store",
            &store,
            "--redis-ca-file",
            &ca,
            "--redis-password-file",
            &empty,
        ],
        &[],
    )
    .assert_refused(&["Redis password file", "empty-password", "it is empty"])
    .await;
    let key = redis.path("server.key");
    RelayProcess::spawn(&["--store", &store, "--redis-ca-file", &key], &[])
        .assert_refused(&["Redis CA file", "server.key", "holds no certificate"])
        .await;
    let plain = format!("redis://127.0.0.1:{}/", redis.port);
    RelayProcess::spawn(&["--store", &plain, "--redis-ca-file", &ca], &[])
        .assert_refused(&["not rediss://", "not encrypted"])
        .await;
}

/// (5) The password (and the CA) from the environment work: a participant's tool calls reach
/// Redis. A password written into a `--store` URL on the command line works too, with a
/// warning that every local user can read it; the same URL from `MCP_CHAT_STORE` gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_from_the_environment_works_and_one_on_the_command_line_is_warned_about() {
    let test = "redis_tls::the_password_from_the_environment_works_and_one_on_the_command_line_is_warned_about";
    let Some(redis) = TlsRedis::start(test).await else {
        return;
    };
    let store = redis.url();
    let ca = redis.path("ca.crt");
    let mut relay = RelayProcess::spawn(
        &["--store", &store],
        &[
            ("MCP_CHAT_REDIS_PASSWORD", PASSWORD),
            ("MCP_CHAT_REDIS_CA_FILE", ca.as_str()),
        ],
    );
    let url = serving(&mut relay).await;
    let who = Chatter::connect_as(&url, &identity_token("tls-env")).await;
    let queued: Value = who
        .ok("enter_queue", json!({ "display_name": "Eve" }))
        .await;
    assert_eq!(queued["state"], "waiting", "{queued}");
    let status: Value = who.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "waiting", "{status}");
    who.close().await;
    let warning = "the Redis password is in the --store URL on the command line";
    assert!(!relay.log().contains(warning), "{}", relay.log());
    drop(relay);

    let with_password = format!("rediss://:{PASSWORD}@127.0.0.1:{}/", redis.port);
    let mut relay = RelayProcess::spawn(&["--store", &with_password, "--redis-ca-file", &ca], &[]);
    serving(&mut relay).await;
    let log = relay.log();
    assert!(
        log.contains(warning) && log.contains("--redis-password-file"),
        "{log}"
    );
    drop(relay);

    let mut relay = RelayProcess::spawn(
        &["--redis-ca-file", &ca],
        &[("MCP_CHAT_STORE", with_password.as_str())],
    );
    serving(&mut relay).await;
    assert!(!relay.log().contains(warning), "{}", relay.log());
}

/// (6) Mutual TLS: a Redis that checks client certificates lets in a relay that shows one
/// signed by its CA (`--redis-client-cert-file`, `--redis-client-key-file`), and turns away,
/// at the relay's start, one without a certificate or with a certificate of another CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_shown_to_a_redis_that_checks_them() {
    let test = "redis_tls::a_client_certificate_is_shown_to_a_redis_that_checks_them";
    let Some(redis) = TlsRedis::start_checking_clients(test).await else {
        return;
    };
    let password_file = redis.write("password", PASSWORD);
    let store = redis.url();
    let ca = redis.path("ca.crt");
    let common = [
        "--store",
        &store,
        "--redis-ca-file",
        &ca,
        "--redis-password-file",
        &password_file,
    ];
    let (cert, key) = (redis.path("client.crt"), redis.path("client.key"));
    let mut with_cert = common.to_vec();
    with_cert.extend([
        "--redis-client-cert-file",
        &cert,
        "--redis-client-key-file",
        &key,
    ]);
    let mut relay = RelayProcess::spawn(&with_cert, &[]);
    let url = serving(&mut relay).await;
    let who = Chatter::connect_as(&url, &identity_token("tls-mtls")).await;
    let status: Value = who.ok("chat_status", json!({})).await;
    assert_eq!(status["state"], "idle", "{status}");
    who.close().await;
    drop(relay);

    RelayProcess::spawn(&common, &[])
        .assert_refused(&[
            "TLS connection to Redis",
            "CertificateRequired",
            "requires a client certificate",
            "--redis-client-cert-file",
        ])
        .await;
    let (stranger_cert, stranger_key) = (redis.path("stranger.crt"), redis.path("stranger.key"));
    let mut with_stranger = common.to_vec();
    with_stranger.extend([
        "--redis-client-cert-file",
        &stranger_cert,
        "--redis-client-key-file",
        &stranger_key,
    ]);
    RelayProcess::spawn(&with_stranger, &[])
        .assert_refused(&[
            "TLS connection to Redis",
            "UnknownCA",
            "does not accept the client certificate",
        ])
        .await;
    // A key that is not the certificate's is caught before any connection.
    let mut mismatched = common.to_vec();
    mismatched.extend([
        "--redis-client-cert-file",
        &cert,
        "--redis-client-key-file",
        &stranger_key,
    ]);
    RelayProcess::spawn(&mismatched, &[])
        .assert_refused(&[
            "client certificate file",
            "does not go with the certificate",
        ])
        .await;
}

/// (7) An ACL user (`--redis-username`) logs in with its own password; a user Redis does not
/// know is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_logs_in_with_its_password() {
    let test = "redis_tls::an_acl_user_logs_in_with_its_password";
    let Some(redis) = TlsRedis::start(test).await else {
        return;
    };
    let store = redis.url();
    let ca = redis.path("ca.crt");
    let password_file = redis.write("acl-password", ACL_PASSWORD);
    let args = |user: &'static str| {
        [
            "--store",
            store.as_str(),
            "--redis-ca-file",
            ca.as_str(),
            "--redis-password-file",
            password_file.as_str(),
            "--redis-username",
            user,
        ]
    };
    let mut relay = RelayProcess::spawn(&args(ACL_USER), &[]);
    let url = serving(&mut relay).await;
    let who = Chatter::connect_as(&url, &identity_token("tls-acl")).await;
    let queued: Value = who
        .ok("enter_queue", json!({ "display_name": "Ida" }))
        .await;
    assert_eq!(queued["state"], "waiting", "{queued}");
    who.close().await;
    drop(relay);

    RelayProcess::spawn(&args("nobody"), &[])
        .assert_refused(&["refused the login", "--redis-username"])
        .await;
}
