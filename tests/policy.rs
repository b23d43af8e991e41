//! The pool policy with real traffic on three servers: `policy apply` on
//! one server moves a saturated pipe's split on all three at once, an
//! invalid file changes nothing anywhere and says where it is wrong, the
//! history keeps who did what, and a restarted server comes back on the
//! pool's version, not its node file's.

mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::*;
use headroom_lab::{
    traffic::{arrival_log, udp_flood, wire_rate, ArrivalLog},
    Lab,
};

const PAYLOAD: usize = 1000;

/// Every live node's active version, as `socket`'s server sees the pool.
fn versions(socket: &Path) -> Vec<(u16, Option<String>)> {
    status(socket)
        .policy
        .map(|p| p.nodes.into_iter().map(|n| (n.node, n.active)).collect())
        .unwrap_or_default()
}

/// Waits until every server of `socks` runs `v`, each seeing them all on it.
fn all_on(socks: &[PathBuf], v: &str) -> bool {
    wait_for(Duration::from_secs(10), || {
        socks
            .iter()
            .all(|s| {
                let vs = versions(s);
                vs.len() == socks.len() && vs.iter().all(|(_, a)| a.as_deref() == Some(v))
            })
            .then_some(())
    })
    .is_some()
}

/// Gold's and bronze's rates at the client over the 2 s after `from`.
fn split(log: &ArrivalLog, from: Instant) -> (f64, f64) {
    let (a, b) = (from, from + Duration::from_secs(2));
    (
        wire_rate(log, a, b, |p, _| p == 9001),
        wire_rate(log, a, b, |p, _| p == 9002),
    )
}

#[test]
fn policy_apply_moves_a_saturated_pipe_on_every_server() {
    // Four servers; the fourth joins at the end.
    let mut lab = Lab::up(4, 1).expect("lab");
    let dir = TempDir::new(&format!("{}-policy", lab.tag));
    let key = dir.path("pool.key");
    headroom_config::write_key_file(&key, b"policy-test-pool-key-0123456789ab").unwrap();
    // Every node file carries the same initial policy: gold 60 %, bronze 40 %.
    let extra = pipe_config(&exchange_peers(&lab), &key, None);
    let mut socks = Vec::new();
    let mut configs = Vec::new();
    for i in 0..3 {
        let s = lab.servers[i].clone();
        let sock = dir.path(&format!("s{}.sock", s.id));
        let cfg = server_config(&s, &sock, &extra);
        socks.push(start_headroomd(&mut lab, &dir, i, &cfg));
        configs.push(cfg);
    }
    assert!(
        all_on(&socks, "v1"),
        "initial policy not v1 everywhere: {:?}",
        versions(&socks[0])
    );
    let st = status(&socks[1]);
    assert!(st.policy.as_ref().unwrap().enforcing, "{:?}", st.policy);
    assert!(
        st.render_text().contains("policy: v1 (term"),
        "{}",
        st.render_text()
    );

    let client = lab.clients[0].clone();
    let log: ArrivalLog = Arc::default();
    let stop_sink = Arc::new(AtomicBool::new(false));
    let sinks = arrival_log(&client.ns, &[9001, 9002], log.clone(), stop_sink.clone());
    // Every job on every server offers 12 Mbit/s: 72 Mbit/s for 20 Mbit/s.
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for s in lab.servers[..3].iter().cloned() {
        for (port, dport) in [(7001u16, 9001u16), (7002, 9002)] {
            senders.push(udp_flood(
                &s.host_ns,
                port,
                SocketAddr::from((client.ip, dport)),
                12e6,
                PAYLOAD,
                stop.clone(),
            ));
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let (g1, b1) = split(&log, Instant::now() - Duration::from_secs(2));
    eprintln!(
        "v1: gold {:.2} Mbit/s, bronze {:.2} Mbit/s",
        g1 / 1e6,
        b1 / 1e6
    );
    let share1 = g1 / (g1 + b1);
    assert!((0.57..=0.63).contains(&share1), "v1 gold share {share1:.3}");

    // Server 3 applies 80 / 20.
    let initial = headroom_config::initial_policy(&configs[0]).expect("initial policy");
    let next = initial
        .replace("\"60%\"", "\"80%\"")
        .replace("\"40%\"", "\"20%\"");
    assert_ne!(next, initial);
    let file = dir.path("gold80.toml");
    std::fs::write(&file, &next).unwrap();
    let f = file.display().to_string();
    let (code, out, err) = headroomctl(&socks[2], &["policy", "apply", &f, "-m", "more gold"]);
    eprintln!("{out}{err}");
    assert_eq!(code, 0, "apply failed: {out}{err}");
    assert!(out.contains("v2 active on 3 node(s)"), "{out}");
    assert!(out.contains("booking gold on uplink: 60% -> 80%"), "{out}");
    assert!(all_on(&socks, "v2"), "{:?}", versions(&socks[0]));
    std::thread::sleep(Duration::from_millis(2500));
    let (g2, b2) = split(&log, Instant::now() - Duration::from_secs(2));
    eprintln!(
        "v2: gold {:.2} Mbit/s, bronze {:.2} Mbit/s",
        g2 / 1e6,
        b2 / 1e6
    );
    let share2 = g2 / (g2 + b2);
    assert!((0.77..=0.83).contains(&share2), "v2 gold share {share2:.3}");
    assert!(g2 + b2 <= 1.03 * 20e6, "pipe over capacity: {}", g2 + b2);

    // The pool from server 1: every server's summary, on v2, each sending
    // gold through the pipe.
    let pool = wait_for(Duration::from_secs(5), || {
        let st = status(&socks[0]);
        let ok = st.pool.len() == 3
            && st.pool.iter().all(|n| {
                n.policy.as_deref() == Some("v2")
                    && n.jobs.iter().any(|j| {
                        j.name == "gold"
                            && j.tx_mbit_s > 1.0
                            && j.pipe
                                .as_ref()
                                .is_some_and(|p| p.pipe == "uplink" && p.booked_mbit_s == 16.0)
                    })
            });
        ok.then_some(st)
    })
    .unwrap_or_else(|| panic!("pool view: {:?}", status(&socks[0]).pool));
    let text = pool.render_text();
    eprintln!("{text}");
    assert!(
        text.contains("pool: 3 server(s)") && text.contains("job gold:"),
        "{text}"
    );
    let gold_sent: f64 = pool
        .pool
        .iter()
        .flat_map(|n| n.jobs.iter().filter(|j| j.name == "gold"))
        .map(|j| j.tx_mbit_s)
        .sum();
    assert!(
        gold_sent > 16.0,
        "the servers offer gold 36 Mbit/s in all: {gold_sent}"
    );
    // One server in detail, from another; `--socket` anywhere on the line.
    let out = std::process::Command::new(HEADROOMCTL)
        .args(["status", "--node", "3", "--socket"])
        .arg(&socks[0])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("node 3 alive: policy v2") && !text.contains("node 2 "),
        "{text}"
    );

    // An invalid file changes nothing anywhere and names file, line, field.
    let bad = dir.path("bad.toml");
    let mut parts: Vec<&str> = next.rsplitn(2, "pipe = \"uplink\"").collect();
    parts.reverse();
    std::fs::write(&bad, parts.join("pipe = \"nope\"")).unwrap();
    let b = bad.display().to_string();
    let (code, out, err) = headroomctl(&socks[0], &["policy", "apply", &b]);
    assert_eq!(code, 2, "invalid policy accepted: {out}{err}");
    assert!(
        err.contains(&format!("{b}:")) && err.contains("job[1].booking[0].pipe"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(300));
    for s in &socks {
        assert!(versions(s).iter().all(|(_, v)| v.as_deref() == Some("v2")));
    }

    // A node with the wrong key can neither join nor inject a policy: its
    // beacons and messages fail the MAC and are counted.
    let node1 = SocketAddr::from((lab.servers[0].node_ip, 7946));
    let st = forge_exchange(
        &client.ns,
        node1,
        &[headroom_control::policy::POLICY_CODE],
        &socks[0],
    );
    assert!(st.exchange.unwrap().members.iter().all(|m| m.id != 99));
    let pol = st.policy.unwrap();
    assert_eq!(pol.active.as_deref(), Some("v2"));
    assert!(
        pol.counters
            .iter()
            .all(|(n, v)| n != "beacons_malformed" || *v == 0),
        "{pol:?}"
    );

    // The history: who, where, why.
    let (code, out, _) = headroomctl(&socks[0], &["policy", "history"]);
    assert_eq!(code, 0);
    eprintln!("{out}");
    let v2 = out
        .lines()
        .find(|l| l.starts_with("v2 "))
        .expect("v2 in history");
    assert!(v2.contains("more gold") && v2.contains("active"), "{v2}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("v1 ") && l.contains("initial")),
        "{out}"
    );
    assert!(!out.contains("v3"), "{out}");
    let (code, out, _) = headroomctl(&socks[1], &["policy", "show"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("\"80%\"") && out.contains("more gold"),
        "{out}"
    );

    // Server 2 restarts with its node file (still 60 / 40): it comes back
    // on v2, persisted, and the split holds.
    let mut d = lab.forget("headroomd-2").expect("daemon 2");
    d.kill().unwrap();
    d.wait().unwrap();
    let sock2 = start_headroomd(&mut lab, &dir, 1, &configs[1]);
    let st = status(&sock2);
    let p = st.policy.expect("policy status");
    assert_eq!(
        p.active.as_deref(),
        Some("v2"),
        "restarted on {:?}",
        p.active
    );
    assert!(all_on(&socks, "v2"), "{:?}", versions(&socks[0]));
    std::thread::sleep(Duration::from_millis(2500));
    let (g3, b3) = split(&log, Instant::now() - Duration::from_secs(2));
    eprintln!(
        "after restart: gold {:.2} Mbit/s, bronze {:.2} Mbit/s",
        g3 / 1e6,
        b3 / 1e6
    );
    let share3 = g3 / (g3 + b3);
    assert!(
        (0.77..=0.83).contains(&share3),
        "after restart gold share {share3:.3}"
    );

    // A new server joins with the same (stale) node file: it grants
    // nothing until it runs the pool's version, then runs v2.
    let s4 = lab.servers[3].clone();
    let sock4 = dir.path(&format!("s{}.sock", s4.id));
    let cfg4 = server_config(&s4, &sock4, &extra);
    let sock4 = start_headroomd(&mut lab, &dir, 3, &cfg4);
    let first = status(&sock4);
    let p = first.policy.clone().expect("policy status");
    if !p.enforcing {
        assert_eq!(
            first.pipes[0].node_credit, 0,
            "granted before it ran the pool's policy"
        );
    } else {
        assert_eq!(
            p.active.as_deref(),
            Some("v2"),
            "enforcing a stale policy: {p:?}"
        );
    }
    socks.push(sock4.clone());
    assert!(all_on(&socks, "v2"), "{:?}", versions(&sock4));
    let st = status(&sock4);
    assert!(st.policy.as_ref().unwrap().enforcing);
    let (code, out, _) = headroomctl(&sock4, &["policy", "show"]);
    assert!(code == 0 && out.contains("\"80%\""), "{out}");

    stop.store(true, Ordering::Relaxed);
    stop_sink.store(true, Ordering::Relaxed);
    for h in senders {
        let _ = h.join();
    }
    for h in sinks {
        let _ = h.join();
    }
}
