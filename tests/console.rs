//! The web console on a three-server lab with real traffic, over real HTTP
//! from inside server 1's namespace: logins for a viewer and an admin, the
//! overview lists every server and job with the rates `headroomctl status`
//! reports, a job chart has the last minute's points, a policy error is
//! shown at its line and changes nothing, a valid edit applied from the page
//! is active on every server, a viewer cannot apply (403, also through the
//! API), and a change without the CSRF token is refused.

mod common;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use common::*;
use headroom_console::users::{entry, Role};
use headroom_lab::{run_in_ns, traffic::udp_flood, Lab};

const CONSOLE: &str = "127.0.0.1:7948";
const GOLD_1: f64 = 5e6;
const GOLD_3: f64 = 2e6;

/// One HTTP exchange from inside `ns`: (status, headers, body).
struct Http {
    ns: String,
}

struct Answer {
    code: u16,
    set_cookie: Option<String>,
    headers: Vec<(String, String)>,
    body: String,
}

impl Http {
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Answer {
        let url = format!("http://{CONSOLE}{path}");
        let method = method.to_string();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        run_in_ns(&self.ns, move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into();
            let mut req = ureq::http::Request::builder()
                .method(method.as_str())
                .uri(&url);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let r = agent
                .run(req.body(body.unwrap_or_default()).unwrap())
                .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let code = r.status().as_u16();
            let hs: Vec<(String, String)> = r
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            let set_cookie = r
                .headers()
                .get("set-cookie")
                .map(|v| v.to_str().unwrap().to_string());
            let body = r.into_body().read_to_string().unwrap_or_default();
            Answer {
                code,
                set_cookie,
                headers: hs,
                body,
            }
        })
        .expect("in the server's namespace")
    }
}

struct Login {
    cookie: String,
    csrf: String,
}

fn login(h: &Http, user: &str, password: &str) -> Login {
    let a = h.send(
        "POST",
        "/api/login",
        &[("content-type", "application/json")],
        Some(serde_json::json!({"user": user, "password": password}).to_string()),
    );
    assert_eq!(a.code, 200, "login {user}: {}", a.body);
    let cookie = a.set_cookie.expect("session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["role"], if user == "admin" { "admin" } else { "viewer" });
    Login {
        cookie: cookie.split(';').next().unwrap().to_string(),
        csrf: v["csrf"].as_str().unwrap().to_string(),
    }
}

fn get(h: &Http, l: &Login, path: &str) -> Answer {
    h.send("GET", path, &[("cookie", &l.cookie)], None)
}

fn form(h: &Http, l: &Login, path: &str, fields: &[(&str, &str)]) -> Answer {
    let body = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    h.send(
        "POST",
        path,
        &[
            ("cookie", &l.cookie),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(body),
    )
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The gold rate the overview shows for `node`, Mbit/s.
fn overview_gold(html: &str, node: u16) -> Option<f64> {
    let row = html
        .split("<tr ")
        .find(|r| r.starts_with(&format!("data-job=\"gold\" data-node=\"{node}\"")))?;
    let cell = row.split("data-metric=\"tx\" data-mbit=\"").nth(1)?;
    cell.split('"').next()?.parse().ok()
}

fn versions_all(socks: &[PathBuf], v: &str) -> bool {
    wait_for(Duration::from_secs(10), || {
        socks
            .iter()
            .all(|s| {
                status(s).policy.is_some_and(|p| {
                    p.nodes.len() == socks.len()
                        && p.nodes.iter().all(|n| n.active.as_deref() == Some(v))
                })
            })
            .then_some(())
    })
    .is_some()
}

#[test]
fn console_shows_the_pool_and_applies_policies_with_access_control() {
    let mut lab = Lab::up(3, 1).expect("lab");
    let dir = TempDir::new(&format!("{}-console", lab.tag));
    let key = dir.path("pool.key");
    headroom_config::write_key_file(&key, b"console-test-pool-key-0123456789").unwrap();
    let users = dir.path("users.toml");
    std::fs::write(
        &users,
        format!(
            "{}{}",
            entry("admin", Role::Admin, "admin-password"),
            entry("viewer", Role::Viewer, "viewer-password")
        ),
    )
    .unwrap();
    let extra = pipe_config(&exchange_peers(&lab), &key, None);
    let mut socks = Vec::new();
    for i in 0..3 {
        let s = lab.servers[i].clone();
        let sock = dir.path(&format!("s{}.sock", s.id));
        let mut extra = extra.clone();
        if i == 0 {
            extra.push_str(&format!(
                "\n[console]\nlisten = \"{CONSOLE}\"\nusers = \"{}\"\n",
                users.display()
            ));
        }
        socks.push(start_headroomd(
            &mut lab,
            &dir,
            i,
            &server_config(&s, &sock, &extra),
        ));
    }
    wait_pool_ready(&socks, 3);
    assert!(versions_all(&socks, "v1"));
    let h = Http {
        ns: lab.servers[0].ns.clone(),
    };

    let client = lab.clients[0].clone();
    let stop = Arc::new(AtomicBool::new(false));
    let to = SocketAddr::from((client.ip, 9001));
    let senders = [
        udp_flood(
            &lab.servers[0].host_ns,
            7001,
            to,
            GOLD_1,
            1000,
            stop.clone(),
        ),
        udp_flood(
            &lab.servers[2].host_ns,
            7001,
            to,
            GOLD_3,
            1000,
            stop.clone(),
        ),
    ];

    // Logins: a wrong password is refused and counted; both roles log in.
    let bad = h.send(
        "POST",
        "/api/login",
        &[("content-type", "application/json")],
        Some(r#"{"user":"admin","password":"nope"}"#.into()),
    );
    assert_eq!(bad.code, 401, "{}", bad.body);
    assert_eq!(h.send("GET", "/api/status", &[], None).code, 401);
    let viewer = login(&h, "viewer", "viewer-password");
    let admin = login(&h, "admin", "admin-password");

    // The overview: all three servers, gold on servers 1 and 3 at the rates status reports.
    let seen = wait_for(Duration::from_secs(20), || {
        let page = get(&h, &viewer, "/");
        assert_eq!(page.code, 200);
        let (g1, g3) = (overview_gold(&page.body, 1)?, overview_gold(&page.body, 3)?);
        ((g1 * 1e6 / GOLD_1 - 1.0).abs() < 0.15 && (g3 * 1e6 / GOLD_3 - 1.0).abs() < 0.15)
            .then_some((page.body, g1, g3))
    });
    let (page, g1, g3) = seen.expect("gold at its rates on the overview");
    for n in 1..=3 {
        assert!(
            page.contains(&format!("<tr data-node=\"{n}\">")),
            "server {n} missing from the overview"
        );
    }
    let st = status(&socks[0]);
    let ctl = |node: u16| {
        st.pool
            .iter()
            .find(|n| n.node == node)
            .and_then(|n| n.jobs.iter().find(|j| j.name == "gold"))
            .map(|j| j.tx_mbit_s)
            .unwrap()
    };
    eprintln!(
        "overview gold: server 1 {g1:.3} Mbit/s (status {:.3}), server 3 {g3:.3} (status {:.3})",
        ctl(1),
        ctl(3)
    );
    assert!((g1 / ctl(1) - 1.0).abs() < 0.15 && (g3 / ctl(3) - 1.0).abs() < 0.15);
    let live = get(&h, &viewer, "/live/overview");
    assert_eq!(live.code, 200);
    assert!(live.body.contains("data-job=\"gold\""));

    // A job chart with the last minute's points.
    let points = wait_for(Duration::from_secs(30), || {
        let c = get(&h, &viewer, "/chart/job/gold?metric=out&window=5min");
        assert_eq!(c.code, 200);
        let n: usize = c
            .headers
            .iter()
            .find(|(k, _)| k == "x-points")?
            .1
            .parse()
            .ok()?;
        (n >= 10).then_some((n, c.body))
    });
    let (n, svg) = points.unwrap_or_else(|| {
        let c = get(&h, &viewer, "/chart/job/gold?metric=out&window=5min");
        panic!("no points on the gold chart: {:?} {}", c.headers, c.body)
    });
    assert!(
        svg.contains("server 1") && svg.contains("Mbit/s"),
        "legend and unit"
    );
    eprintln!("gold chart: {n} points");
    assert_eq!(get(&h, &viewer, "/job/gold").code, 200);

    // A booking with an error: shown at its line, nothing applied.
    let doc: serde_json::Value =
        serde_json::from_str(&get(&h, &viewer, "/api/policy").body).unwrap();
    let doc = doc["document"]
        .as_str()
        .expect("policy document")
        .to_string();
    let line = doc
        .lines()
        .position(|l| l.contains("\"60%\""))
        .expect("gold's booking")
        + 1;
    let broken = doc.replace("\"60%\"", "\"60 furlongs\"");
    let a = form(
        &h,
        &admin,
        "/policy",
        &[
            ("csrf", &admin.csrf),
            ("action", "apply"),
            ("message", "typo"),
            ("document", &broken),
        ],
    );
    assert_eq!(a.code, 422, "{}", a.body);
    assert!(
        a.body
            .contains(&format!("id=\"error-line\" data-line=\"{line}\"")),
        "error not at line {line}: {}",
        a.body
    );
    assert!(
        versions_all(&socks, "v1"),
        "a broken document changed the pool"
    );

    // A viewer cannot apply, through the page or the API.
    let next = doc
        .replace("\"60%\"", "\"80%\"")
        .replace("\"40%\"", "\"20%\"");
    let v = form(
        &h,
        &viewer,
        "/policy",
        &[
            ("csrf", &viewer.csrf),
            ("action", "apply"),
            ("document", &next),
        ],
    );
    assert_eq!(v.code, 403);
    let body = serde_json::json!({ "document": next }).to_string();
    let v = h.send(
        "POST",
        "/api/policy/apply",
        &[
            ("cookie", &viewer.cookie),
            ("x-csrf-token", &viewer.csrf),
            ("content-type", "application/json"),
        ],
        Some(body.clone()),
    );
    assert_eq!(v.code, 403, "{}", v.body);
    // Without the CSRF token, or with another session's, the admin is refused too.
    let c = h.send(
        "POST",
        "/api/policy/apply",
        &[
            ("cookie", &admin.cookie),
            ("content-type", "application/json"),
        ],
        Some(body.clone()),
    );
    assert_eq!(c.code, 403, "{}", c.body);
    let c = form(
        &h,
        &admin,
        "/policy",
        &[
            ("csrf", &viewer.csrf),
            ("action", "apply"),
            ("document", &next),
        ],
    );
    assert_eq!(c.code, 403);
    assert!(versions_all(&socks, "v1"));

    // The valid edit from the page: active on every server.
    let ok = form(
        &h,
        &admin,
        "/policy",
        &[
            ("csrf", &admin.csrf),
            ("action", "apply"),
            ("message", "more gold"),
            ("document", &next),
        ],
    );
    assert_eq!(ok.code, 200, "{}", ok.body);
    assert!(
        ok.body
            .contains("data-outcome=\"done\" data-version=\"v2\""),
        "{}",
        ok.body
    );
    assert!(versions_all(&socks, "v2"), "v2 not active everywhere");
    let hist = get(&h, &viewer, "/api/policy/history");
    assert!(
        hist.body.contains("admin (console)") && hist.body.contains("more gold"),
        "{}",
        hist.body
    );
    for p in ["/policy", "/suggest", "/events", "/pipe/uplink", "/node/2"] {
        let a = get(&h, &viewer, p);
        assert_eq!(a.code, 200, "{p}: {}", a.body);
    }

    // Logging out ends the session.
    let out = form(&h, &viewer, "/logout", &[("csrf", &viewer.csrf)]);
    assert_eq!(out.code, 303);
    assert_eq!(get(&h, &viewer, "/api/status").code, 401);

    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.join();
    }
}
