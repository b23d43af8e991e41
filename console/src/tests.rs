//! The console's access rules through its real router, with a backend of
//! fixed answers: logins, roles, CSRF, the login limit, and the policy
//! error shown at its line.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    extract::connect_info::MockConnectInfo,
    http::{header, Request, StatusCode},
    Router,
};
use headroom_agent::{policy::PolicyAnswer, status::Status};
use tower::ServiceExt;

use crate::{
    server::{router, App},
    session::{LoginLimiter, Sessions},
    users::{entry, Role, Users},
    Backend, BackendError,
};

#[derive(Default)]
struct Fake {
    applied: Mutex<Vec<String>>,
}

const BAD_LINE: usize = 3;

impl Backend for Fake {
    fn events(&self, _since: Duration) -> Result<Vec<headroom_history::EventRow>, BackendError> {
        Ok(vec![headroom_history::EventRow {
            unix_ms: 1_764_583_200_000,
            node: 1,
            line: "2025-12-01T10:00:00Z bulk-squeezed#2 firing on node 1: squeezed(bulk)".into(),
            entry: serde_json::json!({ "entry": "trigger", "trigger": "bulk-squeezed" }),
        }])
    }
    fn status(&self) -> Result<Status, BackendError> {
        Ok(Status {
            node_id: 1,
            node_name: "s1".into(),
            jobs: vec![headroom_agent::status::JobStatus {
                name: "api".into(),
                response: Some(headroom_agent::status::ResponseStatus {
                    goal: "90% within 50ms".into(),
                    index: Some(0.41),
                    requests: 100,
                    answered: 100,
                    p50_ms: Some(20.24),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
    }
    fn history(
        &self,
        _: &str,
        _: Duration,
        _: Duration,
    ) -> Result<headroom_history::query::HistoryTable, BackendError> {
        Err("no history here".into())
    }
    fn report(&self, _: Duration) -> Result<headroom_history::report::Report, BackendError> {
        Err("no history here".into())
    }
    fn policy_show(
        &self,
        _: Option<u64>,
    ) -> Result<headroom_agent::policy::PolicyVersion, BackendError> {
        Err("the pool has no policy yet".into())
    }
    fn policy_history(
        &self,
    ) -> Result<Vec<headroom_agent::policy::PolicyHistoryRow>, BackendError> {
        Ok(vec![])
    }
    fn policy_diff(
        &self,
        file: &str,
        doc: &str,
    ) -> Result<headroom_config::ConfigChanges, BackendError> {
        if doc.contains("oops") {
            Err(format!(
                "{file}:{BAD_LINE}: job.rate: invalid rate \"oops\""
            ))
        } else {
            Ok(Default::default())
        }
    }
    fn policy_apply(
        &self,
        _: &str,
        doc: &str,
        _: &str,
        _: &str,
    ) -> Result<PolicyAnswer, BackendError> {
        self.applied.lock().unwrap().push(doc.into());
        Ok(PolicyAnswer {
            outcome: "done".into(),
            version: Some("v2".into()),
            active_nodes: 3,
            ..Default::default()
        })
    }
    fn policy_rollback(&self, _: u64, _: &str, _: &str) -> Result<PolicyAnswer, BackendError> {
        Err("not here".into())
    }
    fn what_if(
        &self,
        _: Option<&str>,
        _: &[u32],
        _: Duration,
    ) -> Result<headroom_history::whatif::WhatIfReport, BackendError> {
        Err("no history here".into())
    }
    fn suggest(
        &self,
        _: Duration,
        _: &headroom_history::suggest::SuggestOptions,
    ) -> Result<(headroom_history::suggest::Suggestion, String), BackendError> {
        Err("no history here".into())
    }
}

struct Harness {
    router: Router,
    fake: Arc<Fake>,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "{}{}",
            entry("ann", Role::Admin, "admin-pass"),
            entry("vic", Role::Viewer, "viewer-pass")
        ),
    )
    .unwrap();
    let fake = Arc::new(Fake::default());
    let app = Arc::new(App {
        backend: fake.clone(),
        sessions: Mutex::new(Sessions::new(Duration::from_secs(3600))),
        limiter: Mutex::new(LoginLimiter::new(3)),
        users: Mutex::new(Users::load(&users).unwrap()),
        tls: false,
        ttl: Duration::from_secs(3600),
    });
    let router = router(app).layer(MockConnectInfo(SocketAddr::from(([10, 0, 0, 9], 5555))));
    Harness {
        router,
        fake,
        _dir: dir,
    }
}

async fn send(h: &Harness, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let r = h.router.clone().oneshot(req).await.unwrap();
    let (parts, body) = r.into_parts();
    let b = axum::body::to_bytes(body, 1 << 22).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&b).into_owned(),
    )
}

fn json_post(
    path: &str,
    body: serde_json::Value,
    cookie: Option<&str>,
    csrf: Option<&str>,
) -> Request<Body> {
    let mut b = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    if let Some(t) = csrf {
        b = b.header("x-csrf-token", t);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

/// Logs in through the API: (cookie header value, csrf token).
async fn api_login(h: &Harness, user: &str, pw: &str) -> (String, String) {
    let (code, headers, body) = send(
        h,
        json_post(
            "/api/login",
            serde_json::json!({"user": user, "password": pw}),
            None,
            None,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let set = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    (cookie, v["csrf"].as_str().unwrap().to_string())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn pages_and_api_need_a_login() {
    rt().block_on(async {
        let h = harness();
        let (code, headers, _) = send(&h, Request::get("/").body(Body::empty()).unwrap()).await;
        assert_eq!(code, StatusCode::SEE_OTHER);
        assert_eq!(headers.get(header::LOCATION).unwrap(), "/login");
        let (code, _, body) =
            send(&h, Request::get("/api/status").body(Body::empty()).unwrap()).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
        let (cookie, _) = api_login(&h, "vic", "viewer-pass").await;
        let (code, _, body) = send(
            &h,
            Request::get("/api/status")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("\"node_name\":\"s1\""), "{body}");
        let (code, headers, body) = send(
            &h,
            Request::get("/")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("Pool overview") && body.contains("vic (viewer)"));
        assert!(headers.get(header::CONTENT_SECURITY_POLICY).is_some());
    });
}

#[test]
fn viewers_cannot_apply_and_every_change_needs_the_csrf_token() {
    rt().block_on(async {
        let h = harness();
        let doc = serde_json::json!({"document": "[[job]]\nname = \"gold\"\n"});
        let (vc, vt) = api_login(&h, "vic", "viewer-pass").await;
        let (code, _, body) = send(
            &h,
            json_post("/api/policy/apply", doc.clone(), Some(&vc), Some(&vt)),
        )
        .await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("admin role"), "{body}");
        let (ac, at) = api_login(&h, "ann", "admin-pass").await;
        let (code, _, body) = send(
            &h,
            json_post("/api/policy/apply", doc.clone(), Some(&ac), None),
        )
        .await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("CSRF"), "{body}");
        let (code, _, _) = send(
            &h,
            json_post("/api/policy/apply", doc.clone(), Some(&ac), Some(&vt)),
        )
        .await;
        assert_eq!(code, StatusCode::FORBIDDEN, "another session's token");
        assert!(h.fake.applied.lock().unwrap().is_empty());
        let (code, _, body) = send(
            &h,
            json_post("/api/policy/apply", doc, Some(&ac), Some(&at)),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert_eq!(h.fake.applied.lock().unwrap().len(), 1);
        // The page form: the token is a form field.
        let form = |csrf: &str| {
            Request::post("/policy")
                .header(header::COOKIE, &ac)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!(
                    "csrf={csrf}&action=apply&message=m&document=a%3D1"
                )))
                .unwrap()
        };
        let (code, _, _) = send(&h, form("nope")).await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        let (code, _, body) = send(&h, form(&at)).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert!(body.contains("v2 is active on 3 server(s)"), "{body}");
        assert_eq!(h.fake.applied.lock().unwrap().len(), 2);
    });
}

#[test]
fn a_policy_error_is_shown_at_its_line_and_nothing_is_applied() {
    rt().block_on(async {
        let h = harness();
        let (ac, at) = api_login(&h, "ann", "admin-pass").await;
        let req = Request::post("/policy")
            .header(header::COOKIE, &ac)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "csrf={at}&action=apply&message=&document=a%3D1%0Ab%3D2%0Arate%3D%22oops%22%0A"
            )))
            .unwrap();
        let (code, _, body) = send(&h, req).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            body.contains(&format!("data-line=\"{BAD_LINE}\"")),
            "{body}"
        );
        assert!(body.contains("   3 | rate=&quot;oops&quot;"), "{body}");
        assert!(h.fake.applied.lock().unwrap().is_empty());
    });
}

#[test]
fn failed_logins_are_counted_and_limited() {
    rt().block_on(async {
        let h = harness();
        for _ in 0..3 {
            let (code, _, _) = send(
                &h,
                json_post(
                    "/api/login",
                    serde_json::json!({"user": "ann", "password": "wrong"}),
                    None,
                    None,
                ),
            )
            .await;
            assert_eq!(code, StatusCode::UNAUTHORIZED);
        }
        let (code, headers, body) = send(
            &h,
            json_post(
                "/api/login",
                serde_json::json!({"user": "ann", "password": "admin-pass"}),
                None,
                None,
            ),
        )
        .await;
        assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(headers.get(header::RETRY_AFTER).is_some());
        // A login form posted from another site is refused.
        let req = Request::post("/login")
            .header(header::HOST, "console.local")
            .header(header::ORIGIN, "https://evil.example")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("user=ann&password=admin-pass"))
            .unwrap();
        let (code, _, _) = send(&h, req).await;
        assert_eq!(code, StatusCode::FORBIDDEN);
    });
}

/// `path` as the viewer sees it.
async fn viewer_get(path: &str) -> (StatusCode, String) {
    let h = harness();
    let (cookie, _) = api_login(&h, "vic", "viewer-pass").await;
    let req = Request::get(path)
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let (code, _, body) = send(&h, req).await;
    (code, body)
}

#[test]
fn the_events_page_lists_the_trigger_journal() {
    rt().block_on(async {
        let (code, body) = viewer_get("/events").await;
        assert_eq!(code, StatusCode::OK);
        assert!(
            body.contains("id=\"journal\"")
                && body.contains("bulk-squeezed#2 firing on node 1: squeezed(bulk)"),
            "{body}"
        );
    });
}

#[test]
fn a_job_page_shows_its_response_times_against_the_goal() {
    rt().block_on(async {
        let (code, body) = viewer_get("/job/api").await;
        assert_eq!(code, StatusCode::OK);
        assert!(
            body.contains("id=\"response\"")
                && body.contains("90% within 50ms")
                && body.contains("0.41")
                && body.contains("20.2 ms"),
            "{body}"
        );
    });
}
