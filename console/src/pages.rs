//! The HTML pages (maud templates, escaped by construction). Each page with
//! live values has a fragment under `/live/...` that the page's script
//! fetches every two seconds and swaps in; charts are SVG images that it
//! reloads every fifteen.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    extract::{ConnectInfo, Form, Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use headroom_agent::status::{PoolNodeStatus, Status};
use headroom_history::{
    query::HistoryTable,
    report::Report,
    series::{Metric, Unit},
    suggest::{CpuSuggestion, SuggestOptions},
};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;

use crate::{
    api::{auto_step, window},
    charts::{self, Line},
    server::{call, client, guard, login, logout, same_origin, App, LoginOutcome, Refusal},
    session::Session,
    users::Role,
};

/// The file name policy errors from the console point at.
pub const POLICY_FILE: &str = "policy.toml";

/// Windows offered on the chart pages.
const WINDOWS: [&str; 6] = ["5min", "15min", "1h", "6h", "24h", "7days"];

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/login", get(login_page).post(login_form))
        .route("/", get(overview))
        .route("/live/overview", get(live_overview))
        .route("/job/{name}", get(job_page))
        .route("/pipe/{name}", get(pipe_page))
        .route("/vip/{name}", get(vip_page))
        .route("/node/{id}", get(node_page))
        .route("/live/{kind}/{name}", get(live_entity))
        .route("/chart/{kind}/{name}", get(chart))
        .route("/policy", get(policy_page).post(policy_form))
        .route("/policy/rollback", post(rollback_form))
        .route("/suggest", get(suggest_page))
        .route("/events", get(events_page))
}

/// `s` with HTML's special characters escaped.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A rate in bit/s, in human units.
pub fn bits(bps: f64) -> String {
    let (d, u) = charts::scale("bit/s", bps.abs());
    format!("{:.2} {u}", bps / d)
}

fn mbit(m: f64) -> String {
    bits(m * 1e6)
}

fn bytes(b: f64) -> String {
    let (d, u) = charts::scale("bytes", b.abs());
    format!("{:.1} {u}", b / d)
}

fn secs(s: u64) -> String {
    humantime::format_duration(Duration::from_secs(s)).to_string()
}

fn wall(ms: u64) -> String {
    headroom_clock::WallTime::from_unix_millis(ms).rfc3339()
}

/// A page refused for `msg` (403).
pub fn refused(msg: &str) -> Markup {
    bare(
        "Refused",
        html! { h1 { "Refused" } p.error { (msg) } p { a href="/" { "Back to the overview" } } },
    )
}

fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Headroom" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body { main { (body) } }
        }
    }
}

fn page(title: &str, s: &Session, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf" content=(s.csrf);
                title { (title) " · Headroom" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                nav {
                    a.brand href="/" { "Headroom" }
                    a href="/" { "Overview" }
                    a href="/policy" { "Policy" }
                    a href="/suggest" { "Suggestions & what-if" }
                    a href="/events" { "Events" }
                    span.who { (s.user) " (" (s.role.as_str()) ")" }
                    form.logout method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(s.csrf);
                        button type="submit" { "Log out" }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn live(src: &str, inner: Markup) -> Markup {
    html! { div.live id="live" data-live=(src) { (inner) } }
}

fn backend_error(title: &str, s: &Session, e: &str) -> Response {
    (
        StatusCode::BAD_GATEWAY,
        page(title, s, html! { p.error { "headroomd: " (e) } }),
    )
        .into_response()
}

// --- login ---

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

fn login_markup(error: Option<&str>) -> Markup {
    bare(
        "Log in",
        html! {
            h1 { "Headroom console" }
            form.login method="post" action="/login" {
                label { "User " input name="user" autocomplete="username" required autofocus; }
                label { "Password " input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { "Log in" }
            }
            @if let Some(e) = error { p.error id="login-error" { (e) } }
        },
    )
}

async fn login_page() -> Markup {
    login_markup(None)
}

async fn login_form(
    State(app): State<Arc<App>>,
    ci: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return Refusal::Origin.respond(false);
    }
    match login(app, client(&ci), f.user, f.password).await {
        LoginOutcome::Ok(cookie, _) => {
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        LoginOutcome::Failed => (
            StatusCode::UNAUTHORIZED,
            login_markup(Some("Wrong user name or password.")),
        )
            .into_response(),
        LoginOutcome::Limited(w) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, w.as_secs().max(1).to_string())],
            login_markup(Some(&format!(
                "Too many failed logins from this address: try again in {} s.",
                w.as_secs().max(1)
            ))),
        )
            .into_response(),
        LoginOutcome::Unavailable(m) => {
            (StatusCode::SERVICE_UNAVAILABLE, login_markup(Some(&m))).into_response()
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: Option<String>,
}

pub(crate) async fn logout_form(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = guard(&app, &headers, f.csrf.as_deref(), Role::Viewer) {
        return r.respond(false);
    }
    (
        [(header::SET_COOKIE, logout(&app, &headers))],
        Redirect::to("/login"),
    )
        .into_response()
}

// --- overview ---

/// Problems an operator should look at, from one status document.
pub fn alarms(st: &Status) -> Vec<String> {
    let mut a = Vec::new();
    for n in &st.pool {
        if n.state != "alive" {
            a.push(format!("server {} is {}", n.node, n.state));
        }
        if let Some(e) = &n.error {
            a.push(format!("server {}'s summary: {e}", n.node));
        }
    }
    if let Some(p) = &st.policy {
        if let Some(r) = &p.rejected {
            a.push(format!("policy rejected here: {r}"));
        }
        for n in p.nodes.iter().filter(|n| !n.current) {
            a.push(format!(
                "server {} runs policy {} (not the pool's current version)",
                n.node,
                n.active.as_deref().unwrap_or("none")
            ));
        }
    }
    if st.enforcement != "on" && !st.enforcement.is_empty() {
        a.push("enforcement is OFF (monitor-only): nothing paced, no CPU shares set".into());
    }
    if let Some(h) = &st.history {
        if h.state != headroom_history::writer::StoreState::Ok
            && h.state != headroom_history::writer::StoreState::Starting
        {
            a.push(format!(
                "history store: {:?} ({})",
                h.state,
                h.last_error.as_deref().unwrap_or("")
            ));
        }
    }
    if let Some(c) = &st.cpu {
        if let Some(r) = &c.insufficient_resources {
            a.push(format!("CPU: {r}"));
        }
    }
    if let Some(d) = &st.director {
        for v in d.services.iter().filter(|v| v.degraded) {
            a.push(format!(
                "VIP {} is degraded (unhealthy: {:?})",
                v.name, v.unhealthy
            ));
        }
    }
    if let Some(e) = &st.last_reload_error {
        a.push(format!("last reload failed: {e}"));
    }
    a
}

fn alive(st: &Status) -> usize {
    st.pool.iter().filter(|n| n.state == "alive").count()
}

fn overview_live(st: &Status) -> Markup {
    let alarms = alarms(st);
    // Pool-wide use of each pipe by job, from every node's summary.
    let mut pipes: BTreeMap<&str, BTreeMap<&str, (f64, f64, f64)>> = BTreeMap::new();
    for n in &st.pool {
        for j in &n.jobs {
            if let Some(p) = &j.pipe {
                let e = pipes
                    .entry(&p.pipe)
                    .or_default()
                    .entry(&j.name)
                    .or_default();
                e.0 = e.0.max(p.booked_mbit_s);
                e.1 += p.granted_mbit_s;
                e.2 += p.sent_mbit_s;
            }
        }
    }
    html! {
        p.summary {
            strong { (alive(st)) " of " (st.pool.len().max(1)) } " servers alive · policy "
            strong { (st.policy.as_ref().and_then(|p| p.active.clone()).unwrap_or_else(|| "none".into())) }
            " · enforcement " strong { (if st.enforcement.is_empty() { "on" } else { &st.enforcement }) }
            " · served by server " (st.node_id) " (" (st.node_name) ")"
        }
        h2 { "Alarms" }
        @if alarms.is_empty() { p.ok id="alarms" { "None." } } @else {
            ul.alarms id="alarms" { @for a in &alarms { li { (a) } } }
        }
        h2 { "Servers" }
        table id="servers" {
            thead { tr { th { "Server" } th { "State" } th { "Policy" } th.num { "Cores" } th.num { "CPU used" } th.num { "Headroom" } th.num { "Jobs" } th.num { "Summary age" } } }
            tbody { @for n in &st.pool {
                tr data-node=(n.node) {
                    td { a href={ "/node/" (n.node) } { "server " (n.node) } }
                    td class=(n.state) { (n.state) }
                    td { (n.policy.as_deref().unwrap_or("-")) }
                    td.num { (n.cores) }
                    td.num { (format!("{:.2} cores", n.cpu_cores)) }
                    td.num { (format!("{:.0} %", n.headroom_percent)) }
                    td.num { (n.jobs_total) }
                    td.num { (n.age_ms.map(|a| format!("{:.1} s", a as f64 / 1000.0)).unwrap_or_else(|| "-".into())) }
                }
            } }
        }
        h2 { "Jobs" }
        (jobs_table(&st.pool, None))
        h2 { "Pipes" }
        @if st.pipes.is_empty() { p { "No pipes configured." } }
        @for p in &st.pipes {
            h3 { a href={ "/pipe/" (p.name) } { "pipe " (p.name) } " · " (bits(p.capacity_bps as f64)) " " (p.direction) " · " (p.nodes) " node(s) sharing" }
            (pipe_shares(pipes.get(p.name.as_str())))
        }
        h2 { "VIPs" }
        (vips_table(st))
    }
}

fn pipe_shares(jobs: Option<&BTreeMap<&str, (f64, f64, f64)>>) -> Markup {
    let total: f64 = jobs.map(|j| j.values().map(|v| v.2).sum()).unwrap_or(0.0);
    html! {
        table.pipe {
            thead { tr { th { "Job" } th.num { "Booked" } th.num { "Granted (pool)" } th.num { "Sent (pool)" } th.num { "Share of sent" } } }
            tbody { @for (job, (b, g, s)) in jobs.into_iter().flatten() {
                tr {
                    td { a href={ "/job/" (job) } { (job) } }
                    td.num { (mbit(*b)) } td.num { (mbit(*g)) } td.num { (mbit(*s)) }
                    td.num { (if total > 0.0 { format!("{:.0} %", s / total * 100.0) } else { "-".into() }) }
                }
            } }
        }
    }
}

fn jobs_table(pool: &[PoolNodeStatus], only: Option<&str>) -> Markup {
    html! {
        table.jobs id="jobs" {
            thead { tr { th { "Job" } th { "Server" } th.num { "Out" } th.num { "In" } th.num { "CPU" } th.num { "Connections" } th { "Pipe: booked / granted / sent" } } }
            tbody { @for n in pool { @for j in n.jobs.iter().filter(|j| only.is_none_or(|o| o == j.name)) {
                tr data-job=(j.name) data-node=(n.node) {
                    td { a href={ "/job/" (j.name) } { (j.name) } }
                    td { a href={ "/node/" (n.node) } { "server " (n.node) } }
                    td.num data-metric="tx" data-mbit=(format!("{:.4}", j.tx_mbit_s)) { (mbit(j.tx_mbit_s)) }
                    td.num data-metric="rx" data-mbit=(format!("{:.4}", j.rx_mbit_s)) { (mbit(j.rx_mbit_s)) }
                    td.num { (format!("{:.2} cores", j.cpu_cores)) }
                    td.num { (j.connections) }
                    td { @if let Some(p) = &j.pipe { (p.pipe) ": " (mbit(p.booked_mbit_s)) " / " (mbit(p.granted_mbit_s)) " / " (mbit(p.sent_mbit_s)) } @else { "-" } }
                }
            } } }
        }
    }
}

fn vips_table(st: &Status) -> Markup {
    let Some(d) = &st.director else {
        return html! { p { "No VIP services on this server." } };
    };
    html! {
        table.vips id="vips" {
            thead { tr { th { "VIP" } th { "Address" } th { "Owner" } th { "Serving" } th { "Unhealthy" } th { "Placements by server" } th.num { "Packets" } } }
            tbody { @for v in &d.services {
                tr data-vip=(v.name) {
                    td { a href={ "/vip/" (v.name) } { (v.name) } }
                    td { (v.vip) " " (v.protocol) }
                    td { (v.owner.map(|o| format!("server {o}")).unwrap_or_else(|| "none".into())) }
                    td { (format!("{:?}", v.serving)) }
                    td { (format!("{:?}", v.unhealthy)) }
                    td { @for (n, c) in &v.placements { span.placement { "server " (n) ": " (c) } " " } }
                    td.num { (v.packets) }
                }
            } }
        }
    }
}

async fn overview(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let s = viewer!(app, headers, false);
    match call(&app, |b| b.status()).await {
        Ok(st) => page(
            "Pool overview",
            &s,
            live("/live/overview", overview_live(&st)),
        )
        .into_response(),
        Err(e) => backend_error("Pool overview", &s, &e),
    }
}

async fn live_overview(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let _s = viewer!(app, headers, false);
    match call(&app, |b| b.status()).await {
        Ok(st) => overview_live(&st).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            html! { p.error { "headroomd: " (e) } },
        )
            .into_response(),
    }
}

// --- entity pages ---

#[derive(Deserialize, Default)]
struct WindowQuery {
    window: Option<String>,
}

fn window_links(path: &str, current: &str) -> Markup {
    html! {
        p.windows { "Window: " @for w in WINDOWS {
            @if w == current { strong { (w) } } @else { a href={ (path) "?window=" (w) } { (w) } } " "
        } }
    }
}

fn chart_img(kind: &str, name: &str, metric: &str, win: &str, alt: &str) -> Markup {
    html! {
        figure.chart {
            img data-chart="1" src={ "/chart/" (kind) "/" (name) "?metric=" (metric) "&window=" (win) } alt=(alt) width="760" height="300";
        }
    }
}

fn job_live(st: &Status, name: &str) -> Markup {
    let local = st
        .cpu
        .as_ref()
        .and_then(|c| c.jobs.iter().find(|j| j.name == name));
    html! {
        h2 { "Instances" }
        (jobs_table(&st.pool, Some(name)))
        h2 { "Processes on server " (st.node_id) }
        @match local {
            Some(j) => table.procs {
                thead { tr { th { "PIDs" } th.num { "CPU" } th.num { "Memory" } th.num { "Entitlement here" } th.num { "Weight" } th.num { "Instances in the pool" } } }
                tbody { tr {
                    td { (format!("{:?}", j.pids)) }
                    td.num { (format!("{:.2} cores", j.cores_used)) }
                    td.num { (bytes(j.rss_bytes as f64)) }
                    td.num { (format!("{:.1} %", j.target_percent)) }
                    td.num { (j.weight) }
                    td.num { (j.pool_instances) }
                } }
            },
            None => p { "No processes of this job detected here." },
        }
        @if let Some(r) = st.job(name).and_then(|j| j.response.as_ref()) {
            @let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
            h2 { "Response times on server " (st.node_id) " (since start)" }
            table.procs id="response" {
                thead { tr { th { "Goal" } th.num { "Index" } th.num { "Requests" } th.num { "Unanswered" } th.num { "p50" } th.num { "p90" } th.num { "p99" } th.num { "Mean" } th.num { "Setup p50" } } }
                tbody { tr {
                    td { (r.goal) }
                    td.num { (r.index.map_or("-".to_string(), |i| format!("{i:.2}"))) }
                    td.num { (r.requests) }
                    td.num { (r.unanswered) }
                    td.num { (ms(r.p50_ms)) } td.num { (ms(r.p90_ms)) } td.num { (ms(r.p99_ms)) } td.num { (ms(r.mean_ms)) }
                    td.num { (ms(r.setup_p50_ms)) }
                } }
            }
        }
    }
}

fn report_section(r: &Report, job: &str) -> Markup {
    let Some(j) = r.jobs.iter().find(|j| j.job == job) else {
        return html! { p { "Nothing recorded for this job in the window." } };
    };
    html! {
        table.report id="report" {
            thead { tr { th { "Resource" } th.num { "Mean" } th.num { "p95" } th.num { "Max" } th.num { "Policy" } th.num { "Above policy" } th.num { "Below policy" } } }
            tbody { @for x in &j.resources {
                tr {
                    td { (x.resource) }
                    td.num { (value(x.mean, x.unit)) } td.num { (value(x.p95, x.unit)) } td.num { (value(x.max, x.unit)) }
                    td.num { (x.policy.map(|p| value(p, x.unit)).unwrap_or_else(|| "-".into())) }
                    td.num { (x.above_policy_secs.map(secs).unwrap_or_else(|| "-".into())) }
                    td.num { (x.below_policy_secs.map(secs).unwrap_or_else(|| "-".into())) }
                }
            } }
        }
        p { "Squeezed (a pipe gave less than asked): " strong { (secs(j.squeezed_secs)) } " · guarantee breached: " strong { (secs(j.breach_secs)) } }
        @for x in j.resources.iter().filter(|x| x.resource == "cpu" || x.resource.starts_with("pipe ")) {
            figure.chart { (PreEscaped(charts::histogram(&format!("{} utilisation ({})", x.resource, job), &x.histogram, &x.histogram_of))) }
        }
    }
}

/// `v` in `unit`, human.
pub fn value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::BytesPerSec => bits(v * 8.0),
        Unit::BitsPerSec => bits(v),
        Unit::Cores => format!("{v:.2} cores"),
        Unit::Bytes => bytes(v),
        Unit::Percent => format!("{v:.1} %"),
        Unit::Ratio => format!("{:.0} %", v * 100.0),
        u => format!("{v:.1} {}", u.label()),
    }
}

async fn job_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<WindowQuery>,
) -> Response {
    let s = viewer!(app, headers, false);
    let win = q.window.unwrap_or_else(|| "15min".into());
    let w = match window(Some(&win), Duration::from_secs(900)) {
        Ok(w) => w,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                page("Job", &s, html! { p.error { (e) } }),
            )
                .into_response()
        }
    };
    let title = format!("Job {name}");
    let n = name.clone();
    let (st, rep) = match (
        call(&app, |b| b.status()).await,
        call(&app, move |b| b.report(w)).await,
    ) {
        (Ok(st), r) => (st, r),
        (Err(e), _) => return backend_error(&title, &s, &e),
    };
    let body = html! {
        (live(&format!("/live/job/{n}"), job_live(&st, &n)))
        h2 { "History" }
        (window_links(&format!("/job/{n}"), &win))
        (chart_img("job", &n, "out", &win, "traffic out by server"))
        (chart_img("job", &n, "in", &win, "traffic in by server"))
        (chart_img("job", &n, "pipe", &win, "pipe use with the booking"))
        (chart_img("job", &n, "cpu", &win, "CPU by server with the target"))
        h2 { "Utilisation over " (win) }
        @match &rep { Ok(r) => (report_section(r, &n)), Err(e) => p.error { "report: " (e) } }
    };
    page(&title, &s, body).into_response()
}

fn pipe_live(st: &Status, name: &str) -> Markup {
    let Some(p) = st.pipes.iter().find(|p| p.name == name) else {
        return html! { p.error { "No pipe " (name) " on this server." } };
    };
    let sent: u64 = p.jobs.iter().map(|j| j.2).sum();
    html! {
        p { (bits(p.capacity_bps as f64)) " " (p.direction) " · " (p.nodes) " node(s) · this node's credit " (bytes(p.node_credit as f64)) " per interval · immediate " (bytes(p.immediate as f64))
            " · pool booked " (bits(p.pool_booked as f64)) ", unbooked " (bits(p.pool_unbooked as f64)) }
        table.pipe {
            thead { tr { th { "Job" } th.num { "Credit" } th.num { "Sent (last interval)" } th.num { "Share" } th.num { "Queued" } th.num { "Dropped (last interval)" } th.num { "Sent since start" } th.num { "Dropped since start" } } }
            tbody { @for (j, credit, s, q, d) in &p.jobs {
                @let t = p.totals.iter().find(|t| &t.job == j);
                tr {
                    td { a href={ "/job/" (j) } { (j) } }
                    td.num { (bytes(*credit as f64)) } td.num { (bytes(*s as f64)) }
                    td.num { (if sent > 0 { format!("{:.0} %", *s as f64 / sent as f64 * 100.0) } else { "-".into() }) }
                    td.num { (bytes(*q as f64)) } td.num { (bytes(*d as f64)) }
                    td.num { (t.map(|t| bytes(t.sent_bytes as f64)).unwrap_or_default()) }
                    td.num { (t.map(|t| bytes(t.dropped_bytes as f64)).unwrap_or_default()) }
                }
            } }
        }
    }
}

fn vip_live(st: &Status, name: &str) -> Markup {
    let Some(v) = st
        .director
        .as_ref()
        .and_then(|d| d.services.iter().find(|v| v.name == name))
    else {
        return html! { p.error { "No VIP " (name) " on this server." } };
    };
    html! {
        p { (v.vip) " " (v.protocol) " · owner " (v.owner.map(|o| format!("server {o}")).unwrap_or_else(|| "none".into()))
            @if v.degraded { " · " strong.bad { "degraded" } } }
        table {
            thead { tr { th { "Server" } th.num { "Placements" } th { "Serving" } th { "Healthy" } } }
            tbody { @for (n, c) in &v.placements {
                tr { td { a href={ "/node/" (n) } { "server " (n) } } td.num { (c) }
                     td { (if v.serving.contains(n) { "yes" } else { "no" }) } td { (if v.unhealthy.contains(n) { "no" } else { "yes" }) } }
            } }
        }
        p { "Packets " (v.packets) " · " (bytes(v.bytes as f64)) " · new flows " (v.new_flows) " · sticky hits " (v.sticky_hits)
            " · placed here " (v.placed_local) " · encapsulated " (v.encapsulated) }
    }
}

fn node_live(st: &Status, id: u16) -> Markup {
    let n = st.pool.iter().find(|n| n.node == id);
    html! {
        @match n {
            Some(n) => p { "State " strong { (n.state) } " · policy " (n.policy.as_deref().unwrap_or("-")) " · " (n.cores) " cores · CPU used "
                (format!("{:.2} cores", n.cpu_cores)) " · headroom " (format!("{:.0} %", n.headroom_percent)) " · " (n.jobs_total) " job(s)" },
            None => p.error { "Server " (id) " is not in this server's view of the pool." },
        }
        (jobs_table(&st.pool[..], None).clone())
        @if id == st.node_id {
            h2 { "Interfaces" }
            table { thead { tr { th { "Name" } th { "Role" } th { "XDP" } th { "Driver" } th.num { "MTU" } th.num { "Queues" } th { "Fast path" } } }
                tbody { @for i in &st.interfaces { tr { td { (i.name) } td { (i.role) } td { (i.xdp_mode) } td { (i.driver) } td.num { (i.mtu) } td.num { (i.rx_queues) }
                    td { (if i.fast_path { "on".to_string() } else { format!("off: {}", i.fast_path_off_reason) }) } } } } }
            @if let Some(x) = &st.exchange {
                h2 { "Exchange" }
                p { "master " (x.master) " · " (x.live_nodes) " live · sent " (bytes(x.bytes_sent as f64)) " · received " (bytes(x.bytes_received as f64))
                    " · dropped: bad key " (x.bad_mac) ", replayed " (x.replayed) ", malformed " (x.malformed) }
            }
        }
    }
}

async fn entity(
    app: Arc<App>,
    s: Session,
    kind: &'static str,
    name: String,
    win: Option<String>,
) -> Response {
    let title = match kind {
        "pipe" => format!("Pipe {name}"),
        "vip" => format!("VIP {name}"),
        _ => format!("Server {name}"),
    };
    let win = win.unwrap_or_else(|| "15min".into());
    if let Err(e) = window(Some(&win), Duration::from_secs(900)) {
        return (
            StatusCode::BAD_REQUEST,
            page(&title, &s, html! { p.error { (e) } }),
        )
            .into_response();
    }
    let st = match call(&app, |b| b.status()).await {
        Ok(st) => st,
        Err(e) => return backend_error(&title, &s, &e),
    };
    let Some(inner) = live_markup(&st, kind, &name) else {
        return (
            StatusCode::NOT_FOUND,
            page(&title, &s, html! { p.error { "no such " (kind) } }),
        )
            .into_response();
    };
    let charts: &[(&str, &str)] = match kind {
        "pipe" => &[("sent", "sent by job"), ("demand", "demand by job")],
        "vip" => &[
            ("bytes", "VIP traffic"),
            ("placements", "placements by server"),
        ],
        _ => &[
            ("cpu", "CPU used"),
            ("headroom", "headroom"),
            ("exchange", "exchange traffic"),
        ],
    };
    let body = html! {
        (live(&format!("/live/{kind}/{name}"), inner))
        h2 { "History" }
        (window_links(&format!("/{kind}/{name}"), &win))
        @for (m, alt) in charts { (chart_img(kind, &name, m, &win, alt)) }
    };
    page(&title, &s, body).into_response()
}

fn live_markup(st: &Status, kind: &str, name: &str) -> Option<Markup> {
    Some(match kind {
        "job" => job_live(st, name),
        "pipe" => pipe_live(st, name),
        "vip" => vip_live(st, name),
        "node" => node_live(st, name.parse().ok()?),
        _ => return None,
    })
}

async fn pipe_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<WindowQuery>,
) -> Response {
    let s = viewer!(app, headers, false);
    entity(app, s, "pipe", name, q.window).await
}

async fn vip_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<WindowQuery>,
) -> Response {
    let s = viewer!(app, headers, false);
    entity(app, s, "vip", name, q.window).await
}

async fn node_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<WindowQuery>,
) -> Response {
    let s = viewer!(app, headers, false);
    entity(app, s, "node", id, q.window).await
}

async fn live_entity(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    let _s = viewer!(app, headers, false);
    match call(&app, |b| b.status()).await {
        Ok(st) => match live_markup(&st, &kind, &name) {
            Some(m) => m.into_response(),
            None => (StatusCode::NOT_FOUND, "no such page").into_response(),
        },
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            html! { p.error { "headroomd: " (e) } },
        )
            .into_response(),
    }
}

// --- charts ---

#[derive(Deserialize)]
struct ChartQuery {
    metric: String,
    window: Option<String>,
}

/// What a chart plots: (metric of the lines, policy metric, whether lines
/// are per `sub` instead of per node, title).
fn chart_spec(kind: &str, metric: &str) -> Option<(Metric, Option<Metric>, bool, &'static str)> {
    Some(match (kind, metric) {
        ("job", "out") => (Metric::BytesOut, None, false, "traffic out"),
        ("job", "in") => (Metric::BytesIn, None, false, "traffic in"),
        ("job", "pipe") => (
            Metric::PipeSentBytes,
            Some(Metric::PipeBookedBps),
            false,
            "sent on its pipe",
        ),
        ("job", "cpu") => (Metric::CpuCores, Some(Metric::CpuTargetCores), false, "CPU"),
        ("pipe", "sent") => (
            Metric::PipeSentBytes,
            Some(Metric::PipeCapacityBps),
            true,
            "sent",
        ),
        ("pipe", "demand") => (
            Metric::PipeDemandBytes,
            Some(Metric::PipeCapacityBps),
            true,
            "demand",
        ),
        ("vip", "bytes") => (Metric::VipBytes, None, false, "traffic"),
        ("vip", "placements") => (Metric::Placements, None, true, "placements"),
        ("node", "cpu") => (Metric::CpuCores, Some(Metric::Cores), false, "CPU used"),
        ("node", "headroom") => (Metric::HeadroomPercent, None, false, "headroom"),
        ("node", "exchange") => (Metric::ExchangeTxBytes, None, false, "exchange sent"),
        _ => return None,
    })
}

/// The lines and the policy of a chart from a history table.
pub fn chart_lines(
    t: &HistoryTable,
    metric: Metric,
    policy: Option<Metric>,
    by_sub: bool,
) -> (Vec<Line>, Option<f64>, &'static str) {
    let to_base = |m: Metric| {
        if m.unit() == Unit::BytesPerSec {
            8.0
        } else {
            1.0
        }
    };
    let unit = match metric.unit() {
        Unit::BytesPerSec => "bit/s",
        u => u.label(),
    };
    let mut lines: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let mut pol: BTreeMap<u32, f64> = BTreeMap::new();
    for s in &t.series {
        if s.key.metric == metric {
            let label = if by_sub {
                if s.key.sub.is_empty() {
                    format!("server {}", s.key.node)
                } else {
                    format!("{} (server {})", s.key.sub, s.key.node)
                }
            } else if s.key.sub.is_empty() {
                format!("server {}", s.key.node)
            } else {
                format!("server {} · {}", s.key.node, s.key.sub)
            };
            let e = lines.entry(label).or_default();
            e.extend(s.rows.iter().map(|r| (r.ts, r.mean * to_base(metric))));
        }
        if Some(s.key.metric) == policy {
            if let Some(last) = s.rows.last() {
                let v = last.mean * to_base(s.key.metric);
                let e = pol.entry(s.key.node).or_insert(0.0);
                // One booking per pipe (the pool's); targets and cores add up over servers.
                *e = if s.key.metric == Metric::PipeBookedBps
                    || s.key.metric == Metric::PipeCapacityBps
                {
                    e.max(v)
                } else {
                    *e + v
                };
            }
        }
    }
    let policy = if pol.is_empty() {
        None
    } else if matches!(
        policy,
        Some(Metric::PipeBookedBps | Metric::PipeCapacityBps)
    ) {
        pol.values().copied().reduce(f64::max)
    } else {
        Some(pol.values().sum())
    };
    let mut out: Vec<Line> = lines
        .into_iter()
        .map(|(label, mut points)| {
            points.sort_by_key(|p| p.0);
            Line { label, points }
        })
        .collect();
    if !by_sub && out.len() > 1 && policy.is_some() {
        // The policy is for the pool: show the pool's sum beside it. Servers'
        // lines can have different resolutions (this one's seconds, peers'
        // minutes), so each adds its latest value at or before every time.
        let mut times: Vec<i64> = out
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0))
            .collect();
        times.sort_unstable();
        times.dedup();
        let points = times
            .into_iter()
            .map(|t| {
                let v = out
                    .iter()
                    .filter_map(|l| {
                        let i = l.points.partition_point(|p| p.0 <= t);
                        i.checked_sub(1).map(|i| l.points[i].1)
                    })
                    .sum();
                (t, v)
            })
            .collect();
        out.push(Line {
            label: "pool".into(),
            points,
        });
    }
    (out, policy, unit)
}

async fn chart(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((kind, name)): Path<(String, String)>,
    Query(q): Query<ChartQuery>,
) -> Response {
    let _s = viewer!(app, headers, false);
    let Some((metric, policy, by_sub, what)) = chart_spec(&kind, &q.metric) else {
        return (StatusCode::NOT_FOUND, "no such chart").into_response();
    };
    let w = match window(q.window.as_deref(), Duration::from_secs(900)) {
        Ok(w) => w,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let selector = format!("{kind}/{name}");
    let svg = match call(&app, move |b| b.history(&selector, w, auto_step(w))).await {
        Ok(t) => {
            let (lines, pol, unit) = chart_lines(&t, metric, policy, by_sub);
            let pol_label = match policy {
                Some(Metric::PipeBookedBps) => "booking",
                Some(Metric::CpuTargetCores) => "target (pool)",
                Some(Metric::PipeCapacityBps) => "capacity",
                Some(Metric::Cores) => "cores",
                _ => "policy",
            };
            let points: usize = lines.iter().map(|l| l.points.len()).sum();
            let title = format!(
                "{kind} {name}: {what}, last {}",
                humantime::format_duration(w)
            );
            let svg = charts::time_chart(
                &title,
                unit,
                &lines,
                pol.map(|p| (pol_label, p)),
                t.from,
                t.to,
            );
            return (
                [
                    (header::CONTENT_TYPE, "image/svg+xml".to_string()),
                    (
                        header::HeaderName::from_static("x-points"),
                        points.to_string(),
                    ),
                ],
                svg,
            )
                .into_response();
        }
        Err(e) => charts::time_chart(&format!("{kind} {name}"), "", &[], None, 0, 1)
            .replace("no points recorded in this window yet", &escape(&e)),
    };
    ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}

// --- policy ---

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<u64>,
}

/// The line an error message `policy.toml:LINE[:COL]: ...` points at.
pub fn error_line(msg: &str) -> Option<usize> {
    let rest = msg.split(&format!("{POLICY_FILE}:")).nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn editor(s: &Session, doc: &str, message: &str, error: Option<&str>) -> Markup {
    let line = error.and_then(error_line);
    html! {
        @if let Some(e) = error {
            div.error id="policy-error" data-line=(line.map(|l| l.to_string()).unwrap_or_default()) {
                strong { "Not applied: " } (e)
            }
            @if let Some(l) = line {
                pre.listing id="policy-listing" {
                    @for (i, text) in doc.lines().enumerate() {
                        @let n = i + 1;
                        @if n == l { span.error-line id="error-line" data-line=(n) { (format!("{n:>4} | {text}")) "\n" } }
                        @else if n + 3 >= l && n <= l + 3 { span { (format!("{n:>4} | {text}")) "\n" } }
                    }
                }
            }
        }
        form.policy method="post" action="/policy" {
            input type="hidden" name="csrf" value=(s.csrf);
            textarea name="document" id="policy-document" rows="24" cols="100" spellcheck="false" { (doc) }
            label { "Message " input name="message" id="policy-message" value=(message) size="60"; }
            button type="submit" name="action" value="check" id="policy-check" { "Check (diff)" }
            @if s.role == Role::Admin { button type="submit" name="action" value="apply" id="policy-apply" { "Apply to the pool" } }
            @else { span.note { " Applying needs the admin role." } }
        }
    }
}

fn history_table(s: &Session, rows: &[headroom_agent::policy::PolicyHistoryRow]) -> Markup {
    html! {
        table id="policy-history" {
            thead { tr { th { "Version" } th { "When" } th { "Who" } th { "What" } th { "Message" } th { "Status" } th {} } }
            tbody { @for r in rows.iter().rev() {
                tr {
                    td { a href={ "/policy?version=" (r.version.trim_start_matches('v')) } { (r.version) } }
                    td { (wall(r.time_ms)) } td { (r.user) } td { (r.kind) } td { (r.message) } td { (r.status) }
                    td { @if s.role == Role::Admin && r.status != "active" {
                        form.inline method="post" action="/policy/rollback" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            input type="hidden" name="version" value=(r.version.trim_start_matches('v'));
                            button type="submit" { "Roll back to " (r.version) }
                        }
                    } }
                }
            } }
        }
    }
}

async fn policy_view(
    app: &Arc<App>,
    s: &Session,
    version: Option<u64>,
    result: Option<Markup>,
    edited: Option<(&str, &str, Option<&str>)>,
) -> Markup {
    let shown = call(app, move |b| b.policy_show(version)).await;
    let rows = call(app, |b| b.policy_history()).await.unwrap_or_default();
    let body = html! {
        @if let Some(r) = result { (r) }
        @match &shown {
            Ok(v) => p { "Showing " strong { (v.id) } " · " (v.kind) " by " (v.user) " at " (wall(v.author_ms)) @if !v.message.is_empty() { " · \"" (v.message) "\"" } },
            Err(e) => p.error { (e) },
        }
        @let doc = edited.map(|e| e.0.to_string()).or_else(|| shown.as_ref().ok().map(|v| v.document.clone())).unwrap_or_default();
        (editor(s, &doc, edited.map(|e| e.1).unwrap_or(""), edited.and_then(|e| e.2)))
        h2 { "History" }
        (history_table(s, &rows))
    };
    page("Policy", s, body)
}

async fn policy_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<VersionQuery>,
) -> Response {
    let s = viewer!(app, headers, false);
    policy_view(&app, &s, q.version, None, None)
        .await
        .into_response()
}

#[derive(Deserialize)]
struct PolicyForm {
    csrf: Option<String>,
    document: String,
    #[serde(default)]
    message: String,
    action: String,
}

fn changes_markup(c: &headroom_config::ConfigChanges) -> Markup {
    let text = c.to_string();
    html! { pre.changes id="policy-changes" { @if text.trim().is_empty() { "no changes" } @else { (text) } } }
}

async fn policy_form(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<PolicyForm>,
) -> Response {
    let role = if f.action == "apply" {
        Role::Admin
    } else {
        Role::Viewer
    };
    let s = match guard(&app, &headers, f.csrf.as_deref(), role) {
        Ok(s) => s,
        Err(r) => return r.respond(false),
    };
    let doc = f.document.replace("\r\n", "\n");
    let d = doc.clone();
    let diff = call(&app, move |b| b.policy_diff(POLICY_FILE, &d)).await;
    let changes = match diff {
        Err(e) => {
            let v = policy_view(&app, &s, None, None, Some((&doc, &f.message, Some(&e)))).await;
            return (StatusCode::UNPROCESSABLE_ENTITY, v).into_response();
        }
        Ok(c) => c,
    };
    if f.action != "apply" {
        let r = html! { h2 { "What it would change here" } (changes_markup(&changes)) };
        return policy_view(&app, &s, None, Some(r), Some((&doc, &f.message, None)))
            .await
            .into_response();
    }
    let user = format!("{} (console)", s.user);
    let (d, m) = (doc.clone(), f.message.clone());
    let answer = call(&app, move |b| b.policy_apply(POLICY_FILE, &d, &user, &m)).await;
    let (code, r) = apply_result(answer);
    (code, policy_view(&app, &s, None, Some(r), None).await).into_response()
}

fn apply_result(
    answer: Result<headroom_agent::policy::PolicyAnswer, String>,
) -> (StatusCode, Markup) {
    match answer {
        Ok(a) if a.outcome == "done" => (
            StatusCode::OK,
            html! {
                div.ok id="apply-result" data-outcome="done" data-version=(a.version.clone().unwrap_or_default()) {
                    strong { (a.version.unwrap_or_default()) " is active on " (a.active_nodes) " server(s)" } " (" (a.took_ms) " ms)."
                    @if let Some(c) = &a.changes { (changes_markup(c)) }
                }
            },
        ),
        Ok(a) => (
            StatusCode::CONFLICT,
            html! {
                div.error id="apply-result" data-outcome=(a.outcome) {
                    strong { "Apply " (a.outcome) } ": " (a.message.unwrap_or_default())
                    @for (n, why) in &a.rejected { p { "server " (n) " refused: " (why) } }
                    @if !a.stragglers.is_empty() { p { "no answer from: " (format!("{:?}", a.stragglers)) } }
                }
            },
        ),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            html! { div.error id="apply-result" data-outcome="error" { (e) } },
        ),
    }
}

#[derive(Deserialize)]
struct RollbackForm {
    csrf: Option<String>,
    version: u64,
}

async fn rollback_form(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<RollbackForm>,
) -> Response {
    let s = match guard(&app, &headers, f.csrf.as_deref(), Role::Admin) {
        Ok(s) => s,
        Err(r) => return r.respond(false),
    };
    let user = format!("{} (console)", s.user);
    let v = f.version;
    let answer = call(&app, move |b| {
        b.policy_rollback(v, &user, "rollback from the console")
    })
    .await;
    let (code, r) = apply_result(answer);
    (code, policy_view(&app, &s, None, Some(r), None).await).into_response()
}

// --- suggestions and what-if ---

/// Suggest options from the page's or the API's parameters.
pub fn suggest_options(
    percentile: Option<f64>,
    margin_percent: Option<f64>,
) -> Result<SuggestOptions, String> {
    let mut o = SuggestOptions::default();
    if let Some(p) = percentile {
        if !(50.0..=100.0).contains(&p) {
            return Err("percentile must be 50..=100".into());
        }
        o.percentile = p;
    }
    if let Some(m) = margin_percent {
        if !(0.0..=200.0).contains(&m) {
            return Err("margin must be 0..=200 %".into());
        }
        o.margin = m / 100.0;
    }
    Ok(o)
}

#[derive(Deserialize)]
struct SuggestQuery {
    window: Option<String>,
    without: Option<String>,
}

async fn suggest_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<SuggestQuery>,
) -> Response {
    let s = viewer!(app, headers, false);
    let win = q.window.clone().unwrap_or_else(|| "1h".into());
    let w = match window(Some(&win), Duration::from_secs(3600)) {
        Ok(w) => w,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                page("Suggestions & what-if", &s, html! { p.error { (e) } }),
            )
                .into_response()
        }
    };
    let without: Vec<u32> = q
        .without
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let opts = SuggestOptions::default();
    let sug = call(&app, move |b| b.suggest(w, &opts)).await;
    let wo = without.clone();
    let wi = call(&app, move |b| b.what_if(None, &wo, w)).await;
    let body = html! {
        (window_links("/suggest", &win))
        h2 { "Suggested policy (p95 + 5 %, recent days weigh more)" }
        @match &sug {
            Ok((sg, policy)) => {
                table id="suggestions" {
                    thead { tr { th { "Job" } th { "Resource" } th.num { "Suggested" } th.num { "Observed p95" } th { "Confidence" } th.num { "Would have covered" } } }
                    tbody { @for j in &sg.jobs {
                        @for b in &j.bookings { tr { td { (j.job) } td { "booking on " (b.pipe) } td.num { (bits(b.rate_bps as f64)) } td.num { (bits(b.basis.observed)) }
                            td { (format!("{:?}", b.basis.confidence)) } td.num { (format!("{:.0} %", b.basis.met_fraction * 100.0)) } } }
                        @if let Some(c) = &j.cpu { @match c {
                            CpuSuggestion::ServerPercent { percent, basis } => tr { td { (j.job) } td { "CPU of its server" } td.num { (format!("{percent:.1} %")) } td.num { (format!("{:.1} %", basis.observed)) } td { (format!("{:?}", basis.confidence)) } td.num { (format!("{:.0} %", basis.met_fraction * 100.0)) } },
                            CpuSuggestion::PoolCores { cores, basis } => tr { td { (j.job) } td { "CPU of the pool" } td.num { (format!("{cores:.2} cores")) } td.num { (format!("{:.2} cores", basis.observed)) } td { (format!("{:?}", basis.confidence)) } td.num { (format!("{:.0} %", basis.met_fraction * 100.0)) } },
                        } }
                    } }
                }
                @for n in &sg.notes { p.note { (n) } }
                details { summary { "The policy with these values (paste it into the policy editor to check or apply it)" } pre id="suggested-policy" { (policy) } }
            }
            Err(e) => p.error { (e) },
        }
        h2 { "What if" }
        form method="get" action="/suggest" {
            input type="hidden" name="window" value=(win);
            label { "Servers taken out (comma-separated ids) " input name="without" value=(q.without.clone().unwrap_or_default()); }
            button type="submit" { "Replay" }
        }
        @match &wi {
            Ok(r) => {
                p id="what-if-summary" { "Replaying " (r.steps) " steps of " (r.step_secs) " s under the policy in force"
                    @if !r.removed.is_empty() { " without server(s) " (format!("{:?}", r.removed)) }
                    ": " strong { (if r.fits { "every job's demand fits" } else { "the pool falls short" }) }
                    " (" (r.fit_steps) " of " (r.steps) " steps fit; " (format!("{:.2}", r.remaining_cores)) " cores left, peak CPU demand " (format!("{:.2}", r.peak_cpu_demand)) " cores)." }
                table { thead { tr { th { "Job" } th { "Resource" } th.num { "Demand (mean)" } th.num { "Served (mean)" } th.num { "Shortfall (mean)" } th.num { "Shortfall (peak)" } th.num { "Squeezed" } } }
                    tbody { @for p in &r.jobs { tr { td { (p.job) } td { (p.resource) } td.num { (value(p.demand_mean, p.unit)) } td.num { (value(p.grant_mean, p.unit)) }
                        td.num { (value(p.shortfall_mean, p.unit)) } td.num { (value(p.shortfall_peak, p.unit)) } td.num { (secs(p.squeezed_secs)) } } } } }
            }
            Err(e) => p.error { (e) },
        }
    };
    page("Suggestions & what-if", &s, body).into_response()
}

// --- events ---

async fn events_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let s = viewer!(app, headers, false);
    let st = call(&app, |b| b.status()).await;
    let rows = call(&app, |b| b.policy_history()).await;
    let journal = call(&app, |b| b.events(Duration::from_secs(86_400))).await;
    let body = html! {
        h2 { "Now" }
        @match &st {
            Ok(st) => {
                @let a = alarms(st);
                @if a.is_empty() { p.ok { "No alarms." } } @else { ul.alarms { @for x in &a { li { (x) } } } }
                @if let Some(x) = &st.exchange { p { "Membership changes seen by this server: " (x.membership_events) " · members declared failed: " (x.failures) } }
                p { "Reloads: " (st.reloads_ok) " applied, " (st.reloads_failed) " failed" }
            }
            Err(e) => p.error { (e) },
        }
        h2 { "Triggers (last 24 h)" }
        @match &journal {
            Ok(j) if j.is_empty() => p { "No trigger fired or ran an action." },
            Ok(j) => table id="journal" {
                thead { tr { th { "When" } th { "Event" } } }
                tbody { @for r in j.iter().rev() { tr { td { (wall(r.unix_ms)) } td { (r.line.split_once(' ').map_or(r.line.as_str(), |x| x.1)) } } } }
            },
            Err(e) => p.error { (e) },
        }
        h2 { "Policy changes" }
        @match &rows {
            Ok(rows) => table id="events" {
                thead { tr { th { "When" } th { "Event" } th { "Who" } th { "Status" } } }
                tbody { @for r in rows.iter().rev() { tr { td { (wall(r.time_ms)) } td { (r.version) " " (r.kind) @if !r.message.is_empty() { ": " (r.message) } } td { (r.user) } td { (r.status) } } } }
            },
            Err(e) => p.error { (e) },
        }
    };
    page("Events", &s, body).into_response()
}

#[cfg(test)]
mod chart_tests {
    use headroom_history::{
        query::{HistoryTable, Row, SeriesHistory},
        EntityKind, Metric, SeriesKey, Tier,
    };

    use super::chart_lines;

    fn series(node: u32, metric: Metric, rows: &[(i64, f64)]) -> SeriesHistory {
        let key = SeriesKey::new(node, EntityKind::Job, "gold", "uplink", metric);
        SeriesHistory {
            label: key.to_string(),
            unit: metric.unit(),
            kind: metric.kind(),
            key,
            rows: rows
                .iter()
                .map(|&(ts, mean)| Row {
                    ts,
                    time: String::new(),
                    mean,
                    min: mean,
                    max: mean,
                    total: None,
                    seconds: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn the_pool_line_adds_servers_of_different_resolutions() {
        // Server 1 every 2 s, server 2 once a minute (its summary's tier).
        let own: Vec<(i64, f64)> = (0..30).map(|i| (60 + 2 * i, 100.0)).collect();
        let t = HistoryTable {
            version: 1,
            tier: Tier::Sec,
            step_secs: 2,
            from: 60,
            to: 120,
            series: vec![
                series(1, Metric::PipeSentBytes, &own),
                series(2, Metric::PipeSentBytes, &[(60, 50.0)]),
                series(1, Metric::PipeBookedBps, &[(60, 1000.0)]),
            ],
        };
        let (lines, policy, unit) = chart_lines(
            &t,
            Metric::PipeSentBytes,
            Some(Metric::PipeBookedBps),
            false,
        );
        assert_eq!((policy, unit), (Some(1000.0), "bit/s"));
        let pool = lines.iter().find(|l| l.label == "pool").expect("pool line");
        assert_eq!(pool.points.len(), 30);
        assert!(
            pool.points.iter().all(|p| p.1 == 1200.0),
            "{:?}",
            pool.points
        );
    }
}
