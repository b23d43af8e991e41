//! The HTTP server: routes, the session and CSRF checks every handler goes
//! through, security headers, and the thread the runtime lives on.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, DefaultBodyLimit, Request},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use headroom_clock::Timestamp;
use headroom_config::console::ConsoleConfig;

use crate::{
    session::{same_token, LoginLimiter, Session, Sessions},
    users::{Role, Users, UsersError},
    Backend,
};

/// The session cookie's name.
pub const COOKIE: &str = "hr_session";

/// Largest request body (a policy document is at most 256 KiB).
pub const MAX_BODY: usize = 1 << 20;

/// Errors starting the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The users file.
    #[error("{0}")]
    Users(#[from] UsersError),
    /// The listen address.
    #[error("console: listening on {addr}: {source} (set [console] listen to a free address)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS files.
    #[error("console: TLS certificate {cert} / key {key}: {message}")]
    Tls {
        /// Certificate path.
        cert: String,
        /// Key path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The thread or runtime.
    #[error("console: starting its thread: {0}")]
    Start(std::io::Error),
}

/// What every handler shares.
pub struct App {
    /// The daemon.
    pub backend: Arc<dyn Backend>,
    /// Logins.
    pub sessions: Mutex<Sessions>,
    /// Failed-login limit.
    pub limiter: Mutex<LoginLimiter>,
    /// The users file.
    pub users: Mutex<Users>,
    /// Whether cookies are marked Secure.
    pub tls: bool,
    /// How long a login lasts.
    pub ttl: Duration,
}

/// Why a request was refused, counted in `headroom_console_refused_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No valid session.
    Unauthenticated,
    /// A viewer asked for an admin action.
    Forbidden,
    /// The CSRF token was missing or wrong.
    Csrf,
    /// A login form posted from another site.
    Origin,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::Forbidden => "forbidden",
            Refusal::Csrf => "csrf",
            Refusal::Origin => "origin",
        }
    }

    /// The HTTP answer (JSON for the API, text for pages).
    pub fn respond(self, api: bool) -> Response {
        metrics::counter!("headroom_console_refused_total", "reason" => self.reason()).increment(1);
        let (code, msg) = match self {
            Refusal::Unauthenticated => (StatusCode::UNAUTHORIZED, "log in first (POST /api/login)"),
            Refusal::Forbidden => (
                StatusCode::FORBIDDEN,
                "this needs the admin role (ask an admin to change your role in the users file)",
            ),
            Refusal::Csrf => (
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token (send the session's token in X-CSRF-Token or the csrf form field)",
            ),
            Refusal::Origin => (StatusCode::FORBIDDEN, "cross-site login refused"),
        };
        if api {
            crate::api::error(code, msg)
        } else if self == Refusal::Unauthenticated {
            Redirect::to("/login").into_response()
        } else {
            (code, crate::pages::refused(msg)).into_response()
        }
    }
}

/// The caller's session, if it has a live one: (cookie value, session).
pub fn session_of(app: &App, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = cookie(headers, COOKIE)?;
    let s = app.sessions.lock().ok()?.get(Timestamp::now(), &id)?;
    Some((id, s))
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Checks a state-changing request: a live session, the role, and its CSRF
/// token (header `X-CSRF-Token`, or `form_token` from the form).
pub fn guard(
    app: &App,
    headers: &HeaderMap,
    form_token: Option<&str>,
    role: Role,
) -> Result<Session, Refusal> {
    let (_, s) = session_of(app, headers).ok_or(Refusal::Unauthenticated)?;
    let sent = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .or(form_token);
    if !sent.is_some_and(|t| same_token(t, &s.csrf)) {
        return Err(Refusal::Csrf);
    }
    if role == Role::Admin && s.role != Role::Admin {
        return Err(Refusal::Forbidden);
    }
    Ok(s)
}

/// Whether a login request comes from this site: an `Origin` header, when
/// the browser sends one, names the host the request was sent to.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, h)| !host.is_empty() && h == host)
}

/// The outcome of a login attempt.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Logged in: the Set-Cookie value and the session.
    Ok(String, Session),
    /// Wrong name or password.
    Failed,
    /// Too many failures from this address; retry after this long.
    Limited(Duration),
    /// The users file cannot be read.
    Unavailable(String),
}

/// Checks `user`/`password` from `addr` (argon2 on a blocking thread).
pub async fn login(app: Arc<App>, addr: IpAddr, user: String, password: String) -> LoginOutcome {
    if let Some(wait) = app
        .limiter
        .lock()
        .map(|mut l| l.check(Timestamp::now(), addr))
        .unwrap_or(None)
    {
        metrics::counter!("headroom_console_logins_total", "result" => "limited").increment(1);
        return LoginOutcome::Limited(wait);
    }
    let found = {
        let Ok(mut users) = app.users.lock() else {
            return LoginOutcome::Unavailable("users lock poisoned".into());
        };
        if let Err(e) = users.refresh() {
            tracing::warn!(error = %e, "console users file; keeping the users read before");
        }
        users.find(&user)
    };
    let ok = {
        let found = found.clone();
        tokio::task::spawn_blocking(move || match &found {
            Some(u) => crate::users::verify(u, &password),
            None => {
                crate::users::verify(crate::users::decoy(), &password);
                false
            }
        })
        .await
        .unwrap_or(false)
    };
    let now = Timestamp::now();
    match (ok, found) {
        (true, Some(u)) => {
            if let Ok(mut l) = app.limiter.lock() {
                l.succeeded(addr);
            }
            let Ok(mut sessions) = app.sessions.lock() else {
                return LoginOutcome::Unavailable("sessions lock poisoned".into());
            };
            let (id, s) = sessions.create(now, &u.name, u.role);
            metrics::gauge!("headroom_console_sessions").set(sessions.len() as f64);
            metrics::counter!("headroom_console_logins_total", "result" => "ok").increment(1);
            tracing::info!(user = %u.name, role = u.role.as_str(), %addr, "console login");
            let cookie = format!(
                "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                app.ttl.as_secs(),
                if app.tls { "; Secure" } else { "" }
            );
            LoginOutcome::Ok(cookie, s)
        }
        _ => {
            if let Ok(mut l) = app.limiter.lock() {
                l.failed(now, addr);
            }
            metrics::counter!("headroom_console_logins_total", "result" => "failed").increment(1);
            tracing::warn!(%user, %addr, "console login failed");
            LoginOutcome::Failed
        }
    }
}

/// Ends the caller's session; the Set-Cookie value that clears the cookie.
pub fn logout(app: &App, headers: &HeaderMap) -> String {
    if let (Some(id), Ok(mut s)) = (cookie(headers, COOKIE), app.sessions.lock()) {
        s.remove(&id);
        metrics::gauge!("headroom_console_sessions").set(s.len() as f64);
    }
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Runs a backend call on a blocking thread.
pub async fn call<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&dyn Backend) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let b = app.backend.clone();
    tokio::task::spawn_blocking(move || f(&*b))
        .await
        .unwrap_or_else(|e| Err(format!("console worker failed: {e}")))
}

async fn headers_mw(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    metrics::counter!("headroom_console_requests_total", "status" => status_class(r.status()))
        .increment(1);
    r
}

fn status_class(s: StatusCode) -> &'static str {
    match s.as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The console's routes over `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .merge(crate::pages::routes())
        .merge(crate::api::routes())
        .route("/assets/console.js", get(asset_js))
        .route("/assets/console.css", get(asset_css))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/logout", post(crate::pages::logout_form))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(headers_mw))
        .with_state(app)
}

async fn asset_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../assets/console.js"),
    )
}

async fn asset_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../assets/console.css"),
    )
}

/// The client address of a request (for the login limit).
pub fn client(ci: &ConnectInfo<SocketAddr>) -> IpAddr {
    ci.0.ip()
}

/// The running console.
pub struct Console {
    handle: axum_server::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The address it listens on (the port chosen when `listen` had 0).
    pub addr: SocketAddr,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("addr", &self.addr).finish()
    }
}

impl Console {
    /// Binds `cfg.listen` and serves it on a thread of its own. Errors
    /// (users file, address, TLS files) are returned before any request is served.
    pub fn start(cfg: &ConsoleConfig, backend: Arc<dyn Backend>) -> Result<Console, ConsoleError> {
        let addr = cfg
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let users = Users::load(&cfg.users)?;
        if users.is_empty() {
            tracing::warn!(file = %cfg.users.display(), "the console users file lists nobody: nobody can log in");
        }
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| ConsoleError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| ConsoleError::Bind { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ConsoleError::Bind { addr, source })?;
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => Some(tls_config(c, k)?),
            _ => None,
        };
        let app = Arc::new(App {
            backend,
            sessions: Mutex::new(Sessions::new(cfg.session)),
            limiter: Mutex::new(LoginLimiter::new(cfg.login_failures_per_minute)),
            users: Mutex::new(users),
            tls: tls.is_some(),
            ttl: cfg.session,
        });
        let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
        let handle = axum_server::Handle::new();
        let h = handle.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(4)
            .thread_name("hr-console-work")
            .build()
            .map_err(ConsoleError::Start)?;
        let thread = std::thread::Builder::new()
            .name("hr-console".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let served = match tls {
                        Some(tls) => {
                            axum_server::from_tcp_rustls(listener, tls)
                                .handle(h)
                                .serve(service)
                                .await
                        }
                        None => {
                            axum_server::from_tcp(listener)
                                .handle(h)
                                .serve(service)
                                .await
                        }
                    };
                    if let Err(e) = served {
                        tracing::error!(error = %e, "console stopped");
                    }
                })
            })
            .map_err(ConsoleError::Start)?;
        tracing::info!(addr = %bound, tls = cfg.tls(), "console listening");
        Ok(Console {
            handle,
            thread: Some(thread),
            addr: bound,
        })
    }

    /// Stops serving (open connections get a second to finish).
    pub fn stop(mut self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(1)));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<axum_server::tls_rustls::RustlsConfig, ConsoleError> {
    let err = |message: String| ConsoleError::Tls {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        message,
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| err(format!("reading {}: {e}", p.display())))
    };
    let (c, k) = (read(cert)?, read(key)?);
    let certs = rustls_pemfile::certs(&mut c.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file (PEM expected)".into()));
    }
    let key = rustls_pemfile::private_key(&mut k.as_slice())
        .map_err(|e| err(format!("key: {e}")))?
        .ok_or_else(|| err("no private key in the file (PEM expected)".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(config),
    ))
}
