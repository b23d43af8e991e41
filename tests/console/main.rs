//! The web console in a real browser (headless Chromium over WebDriver) on a
//! three-server lab with real traffic: logins for a viewer and an admin, the
//! overview lists every server and job with the rates `headroomctl status`
//! reports and refreshes them in place, a job chart has the last minute's
//! points, a policy error is shown at its line and changes nothing, a valid
//! edit applied from the page is active on every server, a viewer cannot
//! apply (403 from the page's form and from the API), and a change without
//! the CSRF token, or with another session's, is refused. Every page is
//! written as a screenshot to `target/test-artifacts/console/`. The test also
//! prints what the console costs: the serving threads' CPU while one browser
//! polls the overview, and the overview's load time.

mod browser;
#[path = "../common/mod.rs"]
mod common;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use browser::{artifacts_dir, Browser};
use common::*;
use headroom_console::users::{entry, Role};
use headroom_lab::{traffic::udp_flood, Lab};
use serde_json::Value;

const CONSOLE: &str = "127.0.0.1:7948";
const GOLD_1: f64 = 5e6;
const GOLD_3: f64 = 2e6;
const PAGE: Duration = Duration::from_secs(20);

/// Logs in through the login form, typing as a user does; lands on the overview.
fn log_in(b: &Browser, user: &str, password: &str) {
    b.goto("/login");
    b.type_into("input[name=user]", user);
    b.type_into("input[name=password]", password);
    b.click("form.login button[type=submit]");
    b.wait_for("#servers", PAGE);
    let who = b.eval_async(
        "fetch('/api/whoami').then(r => r.json()).then(done, e => done(String(e)));",
        vec![],
    );
    assert_eq!(who["user"], user, "{who}");
    // The session cookie is HttpOnly: scripts in the page cannot read it.
    let cookies = b.eval("return document.cookie;", vec![]);
    assert!(
        !cookies.as_str().unwrap_or("").contains("hr_session"),
        "{cookies}"
    );
}

/// The session's CSRF token, from the page's `<meta name="csrf">`.
fn csrf(b: &Browser) -> String {
    b.eval(
        "return document.querySelector('meta[name=csrf]').content;",
        vec![],
    )
    .as_str()
    .expect("csrf meta")
    .to_string()
}

/// The gold rate the overview in the browser shows for `node`, Mbit/s.
fn overview_gold(b: &Browser, node: u16) -> Option<f64> {
    b.eval(
        "const c = document.querySelector(`tr[data-job=\"gold\"][data-node=\"${arguments[0]}\"] td[data-metric=tx]`);
         return c ? c.getAttribute('data-mbit') : null;",
        vec![Value::from(node)],
    )
    .as_str()?
    .parse()
    .ok()
}

/// A POST of the policy form from the page with `fields`: the HTTP status.
fn post_policy_form(b: &Browser, fields: &[(&str, &str)]) -> u16 {
    let fields: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    let v = b.eval_async(
        "const f = new URLSearchParams(arguments[0]);
         fetch('/policy', {method: 'POST', body: f}).then(r => done(r.status), e => done(String(e)));",
        vec![Value::Object(fields)],
    );
    v.as_u64().unwrap_or_else(|| panic!("POST /policy: {v}")) as u16
}

/// A JSON POST to `/api/policy/apply` from the page, with the CSRF header
/// `token` if given: the HTTP status.
fn api_apply(b: &Browser, document: &str, token: Option<&str>) -> u16 {
    let v = b.eval_async(
        "const h = {'content-type': 'application/json'};
         if (arguments[1] !== null) { h['x-csrf-token'] = arguments[1]; }
         fetch('/api/policy/apply', {method: 'POST', headers: h,
               body: JSON.stringify({document: arguments[0]})})
           .then(r => done(r.status), e => done(String(e)));",
        vec![
            Value::from(document),
            token.map(Value::from).unwrap_or(Value::Null),
        ],
    );
    v.as_u64()
        .unwrap_or_else(|| panic!("POST /api/policy/apply: {v}")) as u16
}

/// Replaces the editor's text, as a paste would.
fn set_document(b: &Browser, doc: &str) {
    b.eval(
        "const t = document.getElementById('policy-document');
         t.value = arguments[0];
         t.dispatchEvent(new Event('input', {bubbles: true}));",
        vec![Value::from(doc)],
    );
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

/// CPU time of `pid`'s threads whose name starts with `prefix` (the
/// scheduler's nanosecond count, `/proc/PID/task/TID/schedstat`).
fn thread_cpu(pid: u32, prefix: &str) -> Duration {
    let mut ns = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim().starts_with(prefix) {
            let stat = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

#[test]
fn console_in_a_browser_shows_the_pool_and_applies_policies_with_access_control() {
    let mut lab = Lab::up(3, 1).expect("lab");
    let dir = TempDir::new(&format!("{}-console", lab.tag));
    let shots = artifacts_dir("console");
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
    let daemon_pid = lab.child("headroomd-1").expect("server 1's headroomd").id();
    let ns = lab.servers[0].ns.clone();
    let base = format!("http://{CONSOLE}");

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

    // --- the viewer ---
    let viewer = Browser::start(&ns, &base, "viewer", &shots);
    // Not logged in: the API refuses, pages send the browser to the login form.
    viewer.goto("/login");
    assert_eq!(viewer.fetch_status("/api/status", "{}"), 401);
    viewer.goto("/");
    viewer.wait_for("form.login", PAGE);
    // A wrong password is refused at the form.
    viewer.type_into("input[name=user]", "viewer");
    viewer.type_into("input[name=password]", "not-the-password");
    viewer.click("form.login button[type=submit]");
    viewer.wait_for("#login-error", PAGE);
    viewer.screenshot("login-refused");
    log_in(&viewer, "viewer", "viewer-password");

    // The overview: all three servers, gold on servers 1 and 3 at the rates
    // status reports, refreshed in place (the page is never reloaded).
    let t0 = Instant::now();
    let seen = wait_for(Duration::from_secs(30), || {
        let (g1, g3) = (overview_gold(&viewer, 1)?, overview_gold(&viewer, 3)?);
        ((g1 * 1e6 / GOLD_1 - 1.0).abs() < 0.15 && (g3 * 1e6 / GOLD_3 - 1.0).abs() < 0.15)
            .then_some(())
    });
    seen.unwrap_or_else(|| {
        viewer.screenshot("overview-failed");
        panic!(
            "gold not at its rates on the overview after {:?}",
            t0.elapsed()
        )
    });
    let refreshed = wait_for(Duration::from_secs(10), || {
        let v = viewer.eval(
            "return document.getElementById('live').getAttribute('data-refreshed');",
            vec![],
        );
        v.is_string().then_some(())
    });
    assert!(refreshed.is_some(), "live values never refreshed in place");
    assert!(
        overview_gold(&viewer, 1).is_some(),
        "gold gone after a refresh"
    );
    for n in 1..=3 {
        let row = viewer.eval(
            "return !!document.querySelector(`#servers tr[data-node=\"${arguments[0]}\"]`);",
            vec![Value::from(n)],
        );
        assert_eq!(
            row,
            Value::Bool(true),
            "server {n} missing from the overview"
        );
    }
    // The page and `headroomctl status` render one status model: read close
    // together they agree. Peers' rates move with each gossip round, so the
    // pair is read again until one reading agrees (or 20 s pass).
    let ctl = |node: u16| {
        status(&socks[0])
            .pool
            .iter()
            .find(|n| n.node == node)
            .and_then(|n| n.jobs.iter().find(|j| j.name == "gold"))
            .map(|j| j.tx_mbit_s)
    };
    let mut last = None;
    let agreed = wait_for(Duration::from_secs(20), || {
        let (g1, s1) = (overview_gold(&viewer, 1)?, ctl(1)?);
        let (g3, s3) = (overview_gold(&viewer, 3)?, ctl(3)?);
        last = Some((g1, s1, g3, s3));
        ((g1 / s1 - 1.0).abs() < 0.15 && (g3 / s3 - 1.0).abs() < 0.15).then_some(())
    });
    let (g1, s1, g3, s3) = last.expect("gold on the overview and in status");
    eprintln!(
        "overview gold: server 1 {g1:.3} Mbit/s (status {s1:.3}), server 3 {g3:.3} (status {s3:.3})"
    );
    assert!(
        agreed.is_some(),
        "the overview and status never agreed on gold within 15 %"
    );
    viewer.screenshot("overview");

    // What the console costs: its threads' CPU while this browser polls the
    // overview (every 2 s), and the overview's load time in the browser.
    let (cpu0, w0) = (thread_cpu(daemon_pid, "hr-console"), Instant::now());
    std::thread::sleep(Duration::from_secs(10));
    let (cpu, wall) = (thread_cpu(daemon_pid, "hr-console") - cpu0, w0.elapsed());
    let mut loads = Vec::new();
    for _ in 0..5 {
        viewer.goto("/");
        let nav = viewer.eval(
            "const n = performance.getEntriesByType('navigation')[0];
             return [n.responseEnd - n.requestStart, n.loadEventEnd - n.startTime];",
            vec![],
        );
        loads.push((nav[0].as_f64().unwrap(), nav[1].as_f64().unwrap()));
    }
    loads.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (resp, load) = loads[loads.len() / 2];
    eprintln!(
        "console cost: {:.1} ms CPU over {:.1} s with one browser polling the overview ({:.2} % of a core); \
         overview page: response {resp:.1} ms, loaded in {load:.1} ms (median of 5)",
        cpu.as_secs_f64() * 1e3,
        wall.as_secs_f64(),
        cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
    );

    // A job chart with the last minute's points.
    viewer.goto("/job/gold");
    let points = wait_for(Duration::from_secs(30), || {
        let v = viewer.eval_async(
            "const i = document.querySelector('img[data-chart][src*=\"metric=out\"]');
             fetch(i.src).then(r => r.text().then(t => done([r.status, r.headers.get('x-points'), t])),
                               e => done(String(e)));",
            vec![],
        );
        let n: usize = v[1].as_str()?.parse().ok()?;
        (v[0] == 200 && n >= 10).then(|| (n, v[2].as_str().unwrap_or("").to_string()))
    });
    let (n, svg) = points.expect("points on the gold chart");
    assert!(
        svg.contains("server 1") && svg.contains("Mbit/s"),
        "legend and unit"
    );
    eprintln!("gold chart: {n} points");
    viewer.goto("/job/gold");
    let drawn = wait_for(PAGE, || {
        let v = viewer.eval(
            "const is = Array.from(document.querySelectorAll('img[data-chart]'));
             return is.length > 0 && is.every(i => i.complete && i.naturalWidth > 0);",
            vec![],
        );
        (v == Value::Bool(true)).then_some(())
    });
    assert!(drawn.is_some(), "the job page's charts did not render");
    viewer.screenshot("job-gold");
    for (path, shot) in [
        ("/pipe/uplink", "pipe-uplink"),
        ("/node/2", "node-2"),
        ("/suggest", "suggest"),
        ("/events", "events"),
    ] {
        viewer.goto(path);
        viewer.wait_for("main h1", PAGE);
        let h1 = viewer.eval(
            "return document.querySelector('main h1').textContent;",
            vec![],
        );
        assert_ne!(h1, "Refused", "{path}");
        viewer.screenshot(shot);
    }

    // A viewer cannot apply: no apply button, 403 from the page's form and the API.
    viewer.goto("/policy");
    viewer.wait_for("#policy-document", PAGE);
    let no_button = viewer.eval(
        "return document.getElementById('policy-apply') === null;",
        vec![],
    );
    assert_eq!(
        no_button,
        Value::Bool(true),
        "a viewer sees the apply button"
    );
    let doc = viewer
        .eval(
            "return document.getElementById('policy-document').value;",
            vec![],
        )
        .as_str()
        .expect("policy document")
        .to_string();
    let next = doc
        .replace("\"60%\"", "\"80%\"")
        .replace("\"40%\"", "\"20%\"");
    assert_ne!(next, doc, "gold's and bronze's bookings in {doc}");
    let viewer_csrf = csrf(&viewer);
    assert_eq!(
        post_policy_form(
            &viewer,
            &[
                ("csrf", &viewer_csrf),
                ("action", "apply"),
                ("document", &next)
            ]
        ),
        403
    );
    assert_eq!(api_apply(&viewer, &next, Some(&viewer_csrf)), 403);
    viewer.screenshot("policy-viewer");

    // --- the admin ---
    let admin = Browser::start(&ns, &base, "admin", &shots);
    log_in(&admin, "admin", "admin-password");
    admin.goto("/policy");
    admin.wait_for("#policy-apply", PAGE);

    // A booking with an error: shown at its line, nothing applied.
    let line = doc
        .lines()
        .position(|l| l.contains("\"60%\""))
        .expect("gold's booking")
        + 1;
    set_document(&admin, &doc.replace("\"60%\"", "\"60 furlongs\""));
    admin.type_into("#policy-message", "typo");
    admin.click("#policy-apply");
    admin.wait_for("#policy-error", PAGE);
    let at = admin.eval(
        "const l = document.getElementById('error-line'); return l ? l.getAttribute('data-line') : null;",
        vec![],
    );
    assert_eq!(
        at,
        Value::from(line.to_string()),
        "error not at line {line}"
    );
    admin.screenshot("policy-error");
    assert!(
        versions_all(&socks, "v1"),
        "a broken document changed the pool"
    );

    // Without the CSRF token, or with another session's, the admin is refused too.
    admin.goto("/policy");
    admin.wait_for("#policy-apply", PAGE);
    assert_eq!(api_apply(&admin, &next, None), 403);
    assert_eq!(
        post_policy_form(&admin, &[("action", "apply"), ("document", &next)]),
        403
    );
    assert_eq!(
        post_policy_form(
            &admin,
            &[
                ("csrf", &viewer_csrf),
                ("action", "apply"),
                ("document", &next)
            ]
        ),
        403
    );
    assert!(versions_all(&socks, "v1"));

    // The valid edit from the page: active on every server.
    set_document(&admin, &next);
    admin.type_into("#policy-message", "more gold");
    admin.click("#policy-apply");
    admin.wait_for("#apply-result", Duration::from_secs(30));
    let result = admin.eval(
        "const r = document.getElementById('apply-result');
         return [r.getAttribute('data-outcome'), r.getAttribute('data-version'), r.textContent];",
        vec![],
    );
    assert_eq!(
        (&result[0], &result[1]),
        (&Value::from("done"), &Value::from("v2")),
        "{result}"
    );
    admin.screenshot("policy-applied");
    assert!(versions_all(&socks, "v2"), "v2 not active everywhere");
    admin.goto("/policy");
    admin.wait_for("#policy-history", PAGE);
    let hist = admin.eval(
        "return document.getElementById('policy-history').textContent;",
        vec![],
    );
    let hist = hist.as_str().unwrap_or("");
    assert!(
        hist.contains("admin (console)") && hist.contains("more gold"),
        "{hist}"
    );
    admin.screenshot("policy-history");

    // Logging out ends the session.
    for b in [&viewer, &admin] {
        b.goto("/");
        b.wait_for("form.logout", PAGE);
        b.click("form.logout button[type=submit]");
        b.wait_for("form.login", PAGE);
        assert_eq!(b.fetch_status("/api/status", "{}"), 401);
    }

    drop((viewer, admin));
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.join();
    }
}
