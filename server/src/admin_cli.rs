//! `mcp-chat-relay admin ...`: the operator's commands, each one call of the admin API (part of
//! the binary, not of the library). Text for people by default, the API's JSON with `--json`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use mcp_chat_relay::config::env;
use serde_json::{Value, json};

/// Where the admin API is and how to authenticate.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Base URL of the relay's admin API (the address of its --admin-bind).
    #[arg(
        long,
        env = env::ADMIN_URL,
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    url: String,

    /// File whose first line is the admin token (the relay's --admin-token-file).
    #[arg(
        long = "token-file",
        env = env::ADMIN_TOKEN_FILE,
        value_name = "PATH",
        global = true
    )]
    token_file: Option<PathBuf>,

    /// Print the API's JSON answer instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AdminCommand {
    /// List the reports kept, newest first.
    Reports,
    /// Show one report with its evidence (the room's last messages).
    Report {
        /// The report id (r-...).
        id: String,
    },
    /// Ban a participant: the one a report names, or a participant id. Also takes it out of
    /// its room.
    Ban {
        /// Ban the participant this report (r-...) names.
        #[arg(
            long,
            conflicts_with = "participant",
            required_unless_present = "participant"
        )]
        report: Option<String>,
        /// Ban this participant id (u-...).
        #[arg(long)]
        participant: Option<String>,
        /// How long, e.g. 3600, 90m, 12h, 7d. For good without it.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Also refuse every identity from the participant's client address (IPv6: its /64).
        #[arg(long)]
        address: bool,
    },
    /// List the bans in force.
    Bans,
    /// Lift a ban.
    Unban {
        /// The ban id (b-...).
        id: String,
    },
    /// Take a participant out of its room or the queue (its partner sees an ordinary leave).
    Kick {
        /// The participant id (u-...).
        participant: String,
    },
    /// The relay's numbers: participants, rooms, reports, bans, cooldowns.
    Stats,
}

/// `3600`, `90s`, `90m`, `12h`, `7d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 3600, 90m, 12h or 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    if secs == 0 {
        return Err("the duration must be at least one second".to_owned());
    }
    Ok(Duration::from_secs(secs))
}

/// Runs one admin command.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let token_file = args.token_file.as_deref().context(
        "the admin token is needed: --token-file PATH or MCP_CHAT_ADMIN_TOKEN_FILE (the file \
         the relay's --admin-token-file names)",
    )?;
    let token = crate::read_secret_file(token_file, "admin token")?;
    let base = args.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        async {
            let response = request
                .send()
                .await
                .with_context(|| format!("cannot reach the admin API at {base}"))?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            if !status.is_success() {
                let message = value["error"]
                    .as_str()
                    .map_or(value.to_string(), str::to_owned);
                anyhow::bail!("the admin API answered {status}: {message}");
            }
            Ok::<_, anyhow::Error>(value)
        }
    };
    use reqwest::Method;
    let (value, text) = match args.command {
        AdminCommand::Reports => {
            let v = call(Method::GET, "/admin/reports".into(), None).await?;
            let t = reports_text(&v);
            (v, t)
        }
        AdminCommand::Report { id } => {
            let v = call(Method::GET, format!("/admin/reports/{id}"), None).await?;
            let t = report_text(&v);
            (v, t)
        }
        AdminCommand::Ban {
            report,
            participant,
            duration,
            address,
        } => {
            let mut body = json!({ "address": address });
            if let Some(report) = report {
                body["report"] = json!(report);
            }
            if let Some(participant) = participant {
                body["participant"] = json!(participant);
            }
            if let Some(duration) = duration {
                body["duration_secs"] = json!(duration.as_secs());
            }
            let v = call(Method::POST, "/admin/bans".into(), Some(body)).await?;
            let t = format!("Banned: {}", ban_line(&v));
            (v, t)
        }
        AdminCommand::Bans => {
            let v = call(Method::GET, "/admin/bans".into(), None).await?;
            let bans = v["bans"].as_array().cloned().unwrap_or_default();
            let t = if bans.is_empty() {
                "No bans in force.".to_owned()
            } else {
                bans.iter().map(ban_line).collect::<Vec<_>>().join("\n")
            };
            (v, t)
        }
        AdminCommand::Unban { id } => {
            let v = call(Method::DELETE, format!("/admin/bans/{id}"), None).await?;
            (v, format!("Lifted ban {id}."))
        }
        AdminCommand::Kick { participant } => {
            let body = json!({ "participant": participant });
            let v = call(Method::POST, "/admin/kicks".into(), Some(body)).await?;
            (v, format!("Took {participant} out of its room."))
        }
        AdminCommand::Stats => {
            let v = call(Method::GET, "/admin/stats".into(), None).await?;
            let t = stats_text(&v);
            (v, t)
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{text}");
    }
    Ok(())
}

fn s(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn reports_text(v: &Value) -> String {
    let reports = v["reports"].as_array().cloned().unwrap_or_default();
    if reports.is_empty() {
        return "No reports.".to_owned();
    }
    reports
        .iter()
        .map(|r| {
            let note = r["note"]
                .as_str()
                .map(|n| format!("  note: {n:?}"))
                .unwrap_or_default();
            format!(
                "{}  {}  {}  reported {} ({:?}) by {}  {} messages{note}",
                s(&r["id"]),
                s(&r["created"]),
                s(&r["reason"]),
                s(&r["reported"]),
                s(&r["reported_name"]),
                s(&r["reporter"]),
                s(&r["evidence_count"]),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn report_text(r: &Value) -> String {
    let mut out = format!(
        "Report {}, {}: {}\nReported: {} ({:?}){}\nReporter: {}\nRoom: {}\nNote: {}\nEvidence \
         ({} messages):",
        s(&r["id"]),
        s(&r["created"]),
        s(&r["reason"]),
        s(&r["reported"]),
        s(&r["reported_name"]),
        if r["address_known"] == true {
            ", address known"
        } else {
            ""
        },
        s(&r["reporter"]),
        s(&r["room_id"]),
        s(&r["note"]),
        s(&r["evidence_count"]),
    );
    for m in r["evidence"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n  #{} [{}] {} {:?}: {:?}",
            s(&m["message_seq"]),
            s(&m["side"]),
            s(&m["from"]),
            s(&m["from_name"]),
            s(&m["text"]),
        ));
    }
    out
}

fn ban_line(b: &Value) -> String {
    format!(
        "{}  {}{}  until {}{}",
        s(&b["id"]),
        s(&b["participant"]),
        if b["address"] == true {
            " and its address"
        } else {
            ""
        },
        s(&b["until"]),
        b["report"]
            .as_str()
            .map(|r| format!("  (report {r})"))
            .unwrap_or_default(),
    )
}

fn stats_text(v: &Value) -> String {
    let mut out = String::new();
    for key in [
        "version",
        "uptime_secs",
        "sessions_on_this_node",
        "participants",
        "waiting",
        "rooms",
        "messages_relayed",
        "reports",
        "bans",
        "blocked_words",
        "report_retention_secs",
    ] {
        out.push_str(&format!("{key}: {}\n", s(&v[key])));
    }
    let cooldowns = v["cooldowns"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("cooldowns: {}", cooldowns.len()));
    for c in cooldowns {
        out.push_str(&format!(
            "\n  {} until {}",
            s(&c["participant"]),
            s(&c["until"])
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_operators_write_them() {
        assert_eq!(parse_duration("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
