//! The JSON API under `/api/` (docs/console.md): what the pages show, for
//! scripts, with the same login. State-changing calls need the session's
//! CSRF token in `X-CSRF-Token`; applying and rolling back need the admin role.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    extract::{ConnectInfo, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    server::{
        call, client, guard, login, logout, same_origin, session_of, App, LoginOutcome, Refusal,
    },
    users::Role,
};

/// An error document: `{"error": message}` with `code`.
pub fn error(code: StatusCode, message: &str) -> Response {
    (code, Json(json!({ "error": message }))).into_response()
}

fn answer<T: serde::Serialize>(r: Result<T, String>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(m) => error(StatusCode::UNPROCESSABLE_ENTITY, &m),
    }
}

/// A window like `15min`, `1h`, `7days` (humantime), 10 s to 2 years.
pub fn window(s: Option<&str>, default: Duration) -> Result<Duration, String> {
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Ok(default);
    };
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("window {s:?}: {e} (e.g. 15min, 1h, 7days)"))?;
    if !(Duration::from_secs(10)..=Duration::from_secs(730 * 86_400)).contains(&d) {
        return Err(format!("window {s:?}: must be 10s..=2years"));
    }
    Ok(d)
}

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/login", post(api_login))
        .route("/api/logout", post(api_logout))
        .route("/api/whoami", get(whoami))
        .route("/api/status", get(status))
        .route("/api/history", get(history))
        .route("/api/report", get(report))
        .route("/api/policy", get(policy_show))
        .route("/api/policy/history", get(policy_history))
        .route("/api/policy/diff", post(policy_diff))
        .route("/api/policy/apply", post(policy_apply))
        .route("/api/policy/rollback", post(policy_rollback))
        .route("/api/what-if", post(what_if))
        .route("/api/suggest", get(suggest))
}

#[derive(Deserialize)]
struct LoginBody {
    user: String,
    password: String,
}

async fn api_login(
    State(app): State<Arc<App>>,
    ConnectInfo(ci): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(b): Json<LoginBody>,
) -> Response {
    if !same_origin(&headers) {
        return Refusal::Origin.respond(true);
    }
    match login(app.clone(), client(&ConnectInfo(ci)), b.user, b.password).await {
        LoginOutcome::Ok(cookie, s) => (
            [(header::SET_COOKIE, cookie)],
            Json(json!({
                "user": s.user, "role": s.role.as_str(), "csrf": s.csrf,
                "expires_in_secs": app.ttl.as_secs(),
            })),
        )
            .into_response(),
        LoginOutcome::Failed => error(StatusCode::UNAUTHORIZED, "wrong user name or password"),
        LoginOutcome::Limited(w) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, w.as_secs().max(1).to_string())],
            Json(json!({ "error": format!("too many failed logins from this address: retry in {} s", w.as_secs().max(1)) })),
        )
            .into_response(),
        LoginOutcome::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, &m),
    }
}

async fn api_logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = guard(&app, &headers, None, Role::Viewer) {
        return r.respond(true);
    }
    (
        [(header::SET_COOKIE, logout(&app, &headers))],
        Json(json!({"logged_out": true})),
    )
        .into_response()
}

async fn whoami(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match session_of(&app, &headers) {
        Some((_, s)) => {
            Json(json!({"user": s.user, "role": s.role.as_str(), "csrf": s.csrf})).into_response()
        }
        None => Refusal::Unauthenticated.respond(true),
    }
}

async fn status(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    viewer!(app, headers, true);
    answer(call(&app, |b| b.status()).await)
}

#[derive(Deserialize)]
struct HistoryParams {
    selector: String,
    window: Option<String>,
    step: Option<String>,
}

async fn history(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<HistoryParams>,
) -> Response {
    viewer!(app, headers, true);
    let (since, step) = match (
        window(p.window.as_deref(), Duration::from_secs(900)),
        p.step.as_deref().map(humantime::parse_duration).transpose(),
    ) {
        (Ok(w), Ok(s)) => (w, s.unwrap_or_else(|| auto_step(w))),
        (Err(m), _) => return error(StatusCode::BAD_REQUEST, &m),
        (_, Err(e)) => return error(StatusCode::BAD_REQUEST, &format!("step: {e}")),
    };
    answer(call(&app, move |b| b.history(&p.selector, since, step)).await)
}

/// About 150 points over `window`, at least 1 s apart.
pub fn auto_step(window: Duration) -> Duration {
    Duration::from_secs((window.as_secs() / 150).max(1))
}

#[derive(Deserialize)]
struct WindowParam {
    window: Option<String>,
}

async fn report(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<WindowParam>,
) -> Response {
    viewer!(app, headers, true);
    match window(p.window.as_deref(), Duration::from_secs(3600)) {
        Ok(w) => answer(call(&app, move |b| b.report(w)).await),
        Err(m) => error(StatusCode::BAD_REQUEST, &m),
    }
}

#[derive(Deserialize)]
struct VersionParam {
    version: Option<u64>,
}

async fn policy_show(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<VersionParam>,
) -> Response {
    viewer!(app, headers, true);
    answer(call(&app, move |b| b.policy_show(p.version)).await)
}

async fn policy_history(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    viewer!(app, headers, true);
    answer(call(&app, |b| b.policy_history()).await)
}

#[derive(Deserialize)]
struct DocumentBody {
    document: String,
    #[serde(default)]
    message: String,
}

async fn policy_diff(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(d): Json<DocumentBody>,
) -> Response {
    // Read-only, but it takes a body: the token keeps other sites from probing.
    if let Err(r) = guard(&app, &headers, None, Role::Viewer) {
        return r.respond(true);
    }
    answer(
        call(&app, move |b| {
            b.policy_diff(crate::pages::POLICY_FILE, &d.document)
        })
        .await,
    )
}

async fn policy_apply(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(d): Json<DocumentBody>,
) -> Response {
    let s = match guard(&app, &headers, None, Role::Admin) {
        Ok(s) => s,
        Err(r) => return r.respond(true),
    };
    let user = format!("{} (console)", s.user);
    answer(
        call(&app, move |b| {
            b.policy_apply(crate::pages::POLICY_FILE, &d.document, &user, &d.message)
        })
        .await,
    )
}

#[derive(Deserialize)]
struct RollbackBody {
    version: u64,
    #[serde(default)]
    message: String,
}

async fn policy_rollback(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(r): Json<RollbackBody>,
) -> Response {
    let s = match guard(&app, &headers, None, Role::Admin) {
        Ok(s) => s,
        Err(e) => return e.respond(true),
    };
    let user = format!("{} (console)", s.user);
    answer(
        call(&app, move |b| {
            b.policy_rollback(r.version, &user, &r.message)
        })
        .await,
    )
}

#[derive(Deserialize)]
struct WhatIfBody {
    document: Option<String>,
    #[serde(default)]
    without_nodes: Vec<u32>,
    window: Option<String>,
}

async fn what_if(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(w): Json<WhatIfBody>,
) -> Response {
    if let Err(r) = guard(&app, &headers, None, Role::Viewer) {
        return r.respond(true);
    }
    match window(w.window.as_deref(), Duration::from_secs(3600)) {
        Ok(since) => answer(
            call(&app, move |b| {
                b.what_if(w.document.as_deref(), &w.without_nodes, since)
            })
            .await,
        ),
        Err(m) => error(StatusCode::BAD_REQUEST, &m),
    }
}

#[derive(Deserialize)]
struct SuggestParams {
    window: Option<String>,
    percentile: Option<f64>,
    margin_percent: Option<f64>,
}

async fn suggest(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<SuggestParams>,
) -> Response {
    viewer!(app, headers, true);
    let since = match window(p.window.as_deref(), Duration::from_secs(3600)) {
        Ok(w) => w,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let opts = match crate::pages::suggest_options(p.percentile, p.margin_percent) {
        Ok(o) => o,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    answer(
        call(&app, move |b| b.suggest(since, &opts))
            .await
            .map(|(s, policy)| json!({ "suggestion": s, "policy": policy })),
    )
}
