//! The admin API: what an operator acts with, on a listener of its own (`--admin-bind`), never
//! on the public one.
//!
//! Every request needs `Authorization: Bearer <admin token>`, compared in constant time; without
//! it the answer is 401 and nothing is read or changed. JSON in and out:
//!
//! - `GET /admin/reports`: the reports kept, newest first, without their evidence.
//! - `GET /admin/reports/{id}`: one report with its evidence.
//! - `POST /admin/bans` `{"report": ID}` or `{"participant": ID}`, optional `"duration_secs"`
//!   (for good without it) and `"address": true` (the client address too): bans, and takes the
//!   participant out of its room.
//! - `GET /admin/bans`, `DELETE /admin/bans/{id}`.
//! - `POST /admin/kicks` `{"participant": ID}`: takes a participant out of its room or queue.
//! - `GET /admin/stats`: the relay's numbers, the bans, reports and cooldowns.
//!
//! Participants appear only as pseudonyms ([`moderation::pseudonym`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::{HeaderValue, StatusCode, header};
use mcp_chat::ToolError;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::constant_time_eq;
use crate::moderation::{
    self, BanRefusal, BanRequest, BanView, MAX_LISTED_REPORTS, ReportView, pseudonym,
};
use crate::node::Node;
use crate::store::ParticipantKey;

/// The admin API's routes, all behind the token check.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/admin/reports", get(list_reports))
        .route("/admin/reports/{id}", get(show_report))
        .route("/admin/bans", post(create_ban).get(list_bans))
        .route("/admin/bans/{id}", delete(lift_ban))
        .route("/admin/kicks", post(kick))
        .route("/admin/stats", get(stats))
        .fallback(|| async { failure(StatusCode::NOT_FOUND, "no such admin endpoint") })
        .layer(middleware::from_fn_with_state(node.clone(), require_token))
        .with_state(node)
}

/// Refuses (401) every request without the admin token, before anything else runs.
async fn require_token(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let expected = node.config.admin_token.as_deref();
    let allowed = matches!((given, expected), (Some(given), Some(expected))
        if constant_time_eq(given.as_bytes(), expected.as_bytes()));
    if !allowed {
        tracing::warn!("admin API request without the right token");
        let mut response = failure(
            StatusCode::UNAUTHORIZED,
            "this API needs `Authorization: Bearer <admin token>`",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

const NOT_A_PARTICIPANT: &str =
    "\"participant\" must be a participant id as reports and stats show them (u-<16 hex digits>)";

/// True for what [`pseudonym`] makes.
fn is_pseudonym(id: &str) -> bool {
    id.strip_prefix("u-")
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// An error answer: `{"error": message}`.
fn failure(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// The store could not answer (Redis away).
fn store_failure(error: ToolError) -> Response {
    failure(StatusCode::SERVICE_UNAVAILABLE, &error.error.message)
}

/// A JSON body, or the 400 that says what is wrong with it.
fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(bytes).map_err(|e| {
        Box::new(failure(
            StatusCode::BAD_REQUEST,
            &format!("invalid JSON body: {e}"),
        ))
    })
}

async fn list_reports(State(node): State<Arc<Node>>) -> Response {
    match node.store.reports(MAX_LISTED_REPORTS).await {
        Ok(reports) => {
            let views: Vec<ReportView> = reports.iter().map(|r| ReportView::of(r, false)).collect();
            axum::Json(json!({ "reports": views })).into_response()
        }
        Err(error) => store_failure(error),
    }
}

async fn show_report(State(node): State<Arc<Node>>, Path(id): Path<String>) -> Response {
    match node.store.report_by_id(&id).await {
        Ok(Some(report)) => axum::Json(ReportView::of(&report, true)).into_response(),
        Ok(None) => failure(
            StatusCode::NOT_FOUND,
            "no such report (reports are deleted after the retention)",
        ),
        Err(error) => store_failure(error),
    }
}

/// The body of `POST /admin/bans`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BanBody {
    report: Option<String>,
    participant: Option<String>,
    duration_secs: Option<u64>,
    #[serde(default)]
    address: bool,
}

async fn create_ban(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let request: BanBody = match body(&bytes) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let duration = match request.duration_secs {
        Some(0) => return failure(StatusCode::BAD_REQUEST, "duration_secs must be at least 1"),
        Some(secs) => Some(Duration::from_secs(secs)),
        None => None,
    };
    let mut ban = BanRequest {
        id: moderation::new_ban_id(),
        participant: String::new(),
        key: None,
        address: None,
        ban_address: request.address,
        duration,
        report: None,
    };
    match (request.report, request.participant) {
        (Some(id), None) => match node.store.report_by_id(&id).await {
            Ok(Some(report)) => {
                let key = ParticipantKey::from_stored(report.reported);
                ban.participant = pseudonym(&key);
                ban.key = Some(key);
                ban.address = report.reported_address;
                ban.report = Some(id);
            }
            Ok(None) => return failure(StatusCode::NOT_FOUND, "no such report"),
            Err(error) => return store_failure(error),
        },
        (None, Some(participant)) if is_pseudonym(&participant) => ban.participant = participant,
        (None, Some(_)) => return failure(StatusCode::BAD_REQUEST, NOT_A_PARTICIPANT),
        _ => {
            return failure(
                StatusCode::BAD_REQUEST,
                "give either \"report\" (a report id) or \"participant\" (a participant id)",
            );
        }
    }
    match node.store.ban(ban).await {
        Ok(Ok(ban)) => {
            tracing::info!(ban = %ban.id, participant = %ban.participant, "ban made");
            (StatusCode::CREATED, axum::Json(BanView::from(&ban))).into_response()
        }
        Ok(Err(BanRefusal::NoAddress)) => failure(
            StatusCode::CONFLICT,
            "the participant's address is not known (it is learnt while the participant is \
             connected, and kept with reports): ban without \"address\", or ban by report",
        ),
        Err(error) => store_failure(error),
    }
}

async fn list_bans(State(node): State<Arc<Node>>) -> Response {
    match node.store.bans().await {
        Ok(bans) => {
            let views: Vec<BanView> = bans.iter().map(BanView::from).collect();
            axum::Json(json!({ "bans": views })).into_response()
        }
        Err(error) => store_failure(error),
    }
}

async fn lift_ban(State(node): State<Arc<Node>>, Path(id): Path<String>) -> Response {
    match node.store.unban(&id).await {
        Ok(true) => {
            tracing::info!(ban = %id, "ban lifted");
            axum::Json(json!({ "unbanned": id })).into_response()
        }
        Ok(false) => failure(StatusCode::NOT_FOUND, "no such ban (it may have ended)"),
        Err(error) => store_failure(error),
    }
}

/// The body of `POST /admin/kicks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    participant: String,
}

async fn kick(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let request: KickBody = match body(&bytes) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    if !is_pseudonym(&request.participant) {
        return failure(StatusCode::BAD_REQUEST, NOT_A_PARTICIPANT);
    }
    match node.store.kick(&request.participant).await {
        Ok(true) => {
            tracing::info!(participant = %request.participant, "participant kicked");
            axum::Json(json!({ "kicked": request.participant })).into_response()
        }
        Ok(false) => failure(
            StatusCode::NOT_FOUND,
            "no connected participant with that id is in a room or the queue",
        ),
        Err(error) => store_failure(error),
    }
}

async fn stats(State(node): State<Arc<Node>>) -> Response {
    let (counts, moderation) = match (
        node.store.counts().await,
        node.store.moderation_counts().await,
    ) {
        (Ok(counts), Ok(moderation)) => (counts, moderation),
        (Err(error), _) | (_, Err(error)) => return store_failure(error),
    };
    let cooldowns: Vec<Value> = moderation
        .cooldowns
        .iter()
        .map(|(key, until_ms)| {
            json!({
                "participant": pseudonym(key),
                "until_ms": until_ms,
                "until": moderation::utc(*until_ms),
            })
        })
        .collect();
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": node.started.elapsed().as_secs(),
        "sessions_on_this_node": node.sessions.session_count(),
        "participants": counts.participants,
        "waiting": counts.waiting,
        "rooms": counts.rooms,
        "messages_relayed": counts.messages_relayed,
        "reports": moderation.reports,
        "bans": moderation.bans,
        "cooldowns": cooldowns,
        "blocked_words": node.config.blocked_words.len(),
        "report_retention_secs": node.config.moderation.report_retention.as_secs(),
    }))
    .into_response()
}
