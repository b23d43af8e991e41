//! Pool key rotation on a live pool of three: the documented three passes
//! (accept B, sign with B, drop A), one reload per server and step, while
//! every server sends through a shared pipe. No datagram ever fails its
//! MAC (every server accepts what every other signs at every moment), no
//! member is declared failed, the pipe is never re-split (every node keeps
//! allocating among three), and it carries its capacity before and after.

mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::*;
use headroom::ctl::{call, Request, Response};
use headroom_lab::{
    traffic::{arrival_log, udp_flood, wire_rate, ArrivalLog},
    Lab,
};

const CAPACITY_BPS: f64 = 20e6;
const PAYLOAD: usize = 1000;

/// What the watcher saw go wrong, sampled every 100 ms on every node.
#[derive(Default, Debug)]
struct Watch {
    samples: u64,
    problems: Vec<String>,
}

#[test]
fn a_pool_of_three_rotates_its_key_without_failure_or_re_split() {
    let mut lab = Lab::up(3, 1).expect("lab");
    let dir = TempDir::new(&format!("{}-keyrot", lab.tag));
    let (a, b) = (dir.path("pool.key"), dir.path("pool.key.new"));
    headroom_config::write_key_file(&a, b"key-a-0123456789abcdef0123456789").unwrap();
    headroom_config::write_key_file(&b, b"key-b-0123456789abcdef0123456789").unwrap();
    let peers = exchange_peers(&lab);
    let servers = lab.servers.clone();
    let config_of = |i: usize, key: &Path, rotation: Option<&Path>| {
        let s = &servers[i];
        let sock = dir.path(&format!("s{}.sock", s.id));
        server_config(s, &sock, &pipe_config(&peers, key, rotation))
    };
    let mut socks: Vec<PathBuf> = Vec::new();
    for i in 0..3 {
        let cfg = config_of(i, &a, None);
        socks.push(start_headroomd(&mut lab, &dir, i, &cfg));
    }
    wait_pool_ready(&socks, 3);
    let key_a = status(&socks[0]).exchange.unwrap().key_id;

    // Every server offers 12 Mbit/s of gold into the 20 Mbit/s pipe (bronze
    // idles, so its booking is given away).
    let client = lab.clients[0].clone();
    let log: ArrivalLog = Arc::default();
    let stop_sink = Arc::new(AtomicBool::new(false));
    let sinks = arrival_log(&client.ns, &[9001], log.clone(), stop_sink.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = servers
        .iter()
        .map(|s| {
            udp_flood(
                &s.host_ns,
                7001,
                SocketAddr::from((client.ip, 9001)),
                12e6,
                PAYLOAD,
                stop.clone(),
            )
        })
        .collect();
    // Settled on three nodes before the rotation starts.
    for sock in &socks {
        wait_for(Duration::from_secs(5), || {
            let st = status(sock);
            (st.pipes.iter().any(|p| p.name == "uplink" && p.nodes == 3)).then_some(())
        })
        .expect("pipe allocated among 3");
    }
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let before = wire_rate(&log, t0, t0 + Duration::from_secs(2), |p, _| p == 9001);
    let events_before: Vec<u64> = socks
        .iter()
        .map(|s| status(s).exchange.unwrap().membership_events)
        .collect();

    // The watcher: every node, every 100 ms, for the whole rotation.
    let watch = Arc::new(Mutex::new(Watch::default()));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (watch, watching, socks) = (watch.clone(), watching.clone(), socks.clone());
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                for (i, sock) in socks.iter().enumerate() {
                    let st = status(sock);
                    let ex = st.exchange.expect("exchange status");
                    let mut w = watch.lock().unwrap();
                    w.samples += 1;
                    for m in &ex.members {
                        if m.state != "alive" && m.state != "self" {
                            w.problems
                                .push(format!("node {}: member {} {}", i + 1, m.id, m.state));
                        }
                    }
                    // At every moment every server accepts what every
                    // other one signs: not one datagram fails its MAC.
                    if ex.bad_mac > 0 {
                        w.problems.push(format!(
                            "node {}: {} datagrams with a bad MAC",
                            i + 1,
                            ex.bad_mac
                        ));
                    }
                    if ex.failures > 0 {
                        w.problems
                            .push(format!("node {}: {} failures", i + 1, ex.failures));
                    }
                    for p in st.pipes.iter().filter(|p| p.nodes != 3) {
                        w.problems.push(format!(
                            "node {}: pipe {} among {}",
                            i + 1,
                            p.name,
                            p.nodes
                        ));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // The three passes, one server at a time, each step a reload.
    let passes: [(&Path, Option<&Path>); 3] = [(&a, Some(&b)), (&b, Some(&a)), (&b, None)];
    for (pass, (key, rotation)) in passes.iter().enumerate() {
        for i in 0..3 {
            let id = servers[i].id;
            std::fs::write(
                dir.path(&format!("s{id}.toml")),
                config_of(i, key, *rotation),
            )
            .unwrap();
            match call(&socks[i], &Request::Reload).expect("reload") {
                Response::Reloaded { changes } => {
                    assert!(
                        !changes.pool_keys.is_empty(),
                        "pass {}, server {id}: the reload did not change the keys: {changes:?}",
                        pass + 1
                    );
                    eprintln!(
                        "pass {}, server {id}: {}",
                        pass + 1,
                        changes.pool_keys.join("; ")
                    );
                }
                other => panic!("pass {}, server {id}: {other:?}", pass + 1),
            }
            // A reload on a real pool is minutes apart; here, a few
            // heartbeats, so every peer has heard the new signer.
            std::thread::sleep(Duration::from_millis(300));
        }
        if pass == 1 {
            // Everyone signs with B: nobody lists a member on key A any more.
            for sock in &socks {
                wait_for(Duration::from_secs(3), || {
                    let ex = status(sock).exchange?;
                    ex.members.iter().all(|m| !m.rotation_key).then_some(())
                })
                .unwrap_or_else(|| panic!("members still on key A: {:?}", status(sock).exchange));
            }
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    watching.store(false, Ordering::Relaxed);
    watcher.join().unwrap();

    let t1 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let after = wire_rate(&log, t1, t1 + Duration::from_secs(2), |p, _| p == 9001);
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    stop_sink.store(true, Ordering::Relaxed);
    for s in sinks {
        let _ = s.join();
    }

    let w = watch.lock().unwrap();
    eprintln!(
        "key rotation: {} status samples, {} problems; pipe {:.2} Mbit/s before, {:.2} after",
        w.samples,
        w.problems.len(),
        before / 1e6,
        after / 1e6
    );
    assert!(w.samples >= 30, "watched too little: {w:?}");
    assert!(w.problems.is_empty(), "{:?}\n{}", w.problems, logs(&dir));
    for (i, sock) in socks.iter().enumerate() {
        let ex = status(sock).exchange.unwrap();
        assert_ne!(ex.key_id, key_a, "node {} still signs with key A", i + 1);
        assert_eq!(ex.rotation_key_id, None, "node {}", i + 1);
        assert_eq!(ex.failures, 0, "node {}", i + 1);
        assert_eq!(
            ex.membership_events,
            events_before[i],
            "node {}: membership changed during the rotation",
            i + 1
        );
    }
    for (what, rate) in [("before", before), ("after", after)] {
        assert!(
            (0.90 * CAPACITY_BPS..=1.03 * CAPACITY_BPS).contains(&rate),
            "pipe {what} the rotation: {rate} bit/s"
        );
    }
}

fn logs(dir: &TempDir) -> String {
    (1..=3)
        .map(|i| {
            format!(
                "--- s{i} ---\n{}",
                std::fs::read_to_string(dir.path(&format!("s{i}.log"))).unwrap_or_default()
            )
        })
        .collect()
}
