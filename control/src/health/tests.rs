use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use headroom_clock::Timestamp;

use headroom_config::vip::{PortRange, VipProtocol};

use super::probe::{parse_status_line, run_probe, ProbeFailure, ProbeResult, Prober};
use super::*;

const MS: u64 = 1_000_000;

/// The simulated time `ns` after start.
fn at(ns: u64) -> Timestamp {
    Timestamp::from_nanos(ns)
}

fn params() -> HealthParams {
    HealthParams {
        rise: 2,
        fall: 3,
        interval: Duration::from_millis(1000),
        timeout: Duration::from_millis(500),
    }
}

/// Drives one probe cycle at `t`: poll must ask for a probe, then the result.
fn cycle(tr: &mut HealthTracker, t: u64, ok: bool) -> Option<Transition> {
    let p = tr.poll(at(t));
    assert!(p.start_probe, "probe due at {t}");
    tr.on_result(at(t + 10 * MS), ok)
}

#[test]
fn rise_and_fall() {
    let mut tr = HealthTracker::new(params(), Timestamp::ZERO);
    assert!(!tr.is_healthy(), "starts unhealthy");
    assert_eq!(cycle(&mut tr, 0, true), None);
    assert_eq!(
        cycle(&mut tr, 1000 * MS, false),
        None,
        "failure resets rise"
    );
    assert_eq!(cycle(&mut tr, 2000 * MS, true), None);
    assert_eq!(cycle(&mut tr, 3000 * MS, true), Some(Transition::Up));
    assert!(tr.is_healthy());
    assert_eq!(cycle(&mut tr, 4000 * MS, false), None);
    assert_eq!(cycle(&mut tr, 5000 * MS, false), None);
    assert_eq!(cycle(&mut tr, 6000 * MS, true), None, "success resets fall");
    assert_eq!(cycle(&mut tr, 7000 * MS, false), None);
    assert_eq!(cycle(&mut tr, 8000 * MS, false), None);
    assert_eq!(cycle(&mut tr, 9000 * MS, false), Some(Transition::Down));
    assert!(!tr.is_healthy());
}

#[test]
fn probes_follow_interval() {
    let mut tr = HealthTracker::new(params(), at(100));
    assert!(!tr.poll(at(99)).start_probe);
    assert!(tr.poll(at(100)).start_probe);
    assert!(tr.in_flight());
    assert!(!tr.poll(at(500)).start_probe, "one probe at a time");
    tr.on_result(at(600), true);
    assert!(!tr.poll(at(1000 * MS)).start_probe);
    assert_eq!(tr.next_event(), at(1000 * MS + 100));
    assert!(tr.poll(at(1000 * MS + 100)).start_probe);
}

#[test]
fn lost_probe_counts_as_failure_and_late_result_is_ignored() {
    let p = HealthParams {
        fall: 1,
        rise: 1,
        ..params()
    };
    let mut tr = HealthTracker::new(p, Timestamp::ZERO);
    assert_eq!(cycle(&mut tr, 0, true), Some(Transition::Up));
    assert!(tr.poll(at(1000 * MS)).start_probe);
    // Result never comes; deadline = start + timeout + interval.
    assert_eq!(tr.next_event(), at(2500 * MS));
    let out = tr.poll(at(2499 * MS));
    assert!(!out.lost && !out.start_probe);
    let out = tr.poll(at(2500 * MS));
    assert!(out.lost);
    assert_eq!(out.transition, Some(Transition::Down));
    assert!(out.start_probe, "next probe overdue, started at once");
    tr.on_result(at(2600 * MS), true);
    assert!(tr.is_healthy());
    assert_eq!(
        tr.on_result(at(2700 * MS), true),
        None,
        "no probe outstanding"
    );
}

#[test]
fn codec_round_trip_and_layout() {
    let entries = [
        HealthEntry {
            service: 0,
            healthy: true,
            weight: 100,
        },
        HealthEntry {
            service: 0x0102,
            healthy: false,
            weight: 0xffff,
        },
    ];
    let mut buf = Vec::new();
    encode_entries(&entries, &mut buf).unwrap();
    assert_eq!(buf, [1, 0, 2, 0, 0, 1, 0, 0, 100, 1, 2, 0, 0, 0xff, 0xff]);
    assert_eq!(decode_entries(&buf).unwrap(), entries);
    let mut empty = Vec::new();
    encode_entries(&[], &mut empty).unwrap();
    assert_eq!(decode_entries(&empty).unwrap(), vec![]);
}

#[test]
fn codec_rejects_bad_input() {
    let mut buf = Vec::new();
    encode_entries(
        &[HealthEntry {
            service: 3,
            healthy: true,
            weight: 7,
        }],
        &mut buf,
    )
    .unwrap();
    for len in 0..buf.len() {
        assert_eq!(
            decode_entries(&buf[..len]),
            Err(HealthCodecError::Truncated)
        );
    }
    let mut b = buf.clone();
    b.push(0);
    assert_eq!(decode_entries(&b), Err(HealthCodecError::Trailing));
    let mut b = buf.clone();
    b[0] = 2;
    assert_eq!(decode_entries(&b), Err(HealthCodecError::BadVersion(2)));
    let mut b = buf.clone();
    b[5] = 0x03;
    assert_eq!(decode_entries(&b), Err(HealthCodecError::Reserved));
    let mut b = buf;
    b[6] = 1;
    assert_eq!(decode_entries(&b), Err(HealthCodecError::Reserved));
}

proptest::proptest! {
    #[test]
    fn codec_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
        if let Ok(e) = decode_entries(&bytes) {
            let mut again = Vec::new();
            encode_entries(&e, &mut again).unwrap();
            proptest::prop_assert_eq!(again, bytes);
        }
    }
}

#[test]
fn status_line_parsing() {
    assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Ok(200));
    assert_eq!(
        parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\nX: y\r\n"),
        Ok(503)
    );
    assert_eq!(parse_status_line(b"HTTP/1.1 204\r\n"), Ok(204));
    for bad in [
        &b"HTTP/1.1 200 OK"[..],
        b"HTTP/2 200 OK\r\n",
        b"HTTP/1.1 2x0 OK\r\n",
        b"HTTP/1.1 2000 OK\r\n",
        b"SSH-2.0-OpenSSH\r\n",
        b"",
    ] {
        assert_eq!(
            parse_status_line(bad),
            Err(ProbeFailure::BadResponse),
            "{bad:?}"
        );
    }
}

/// Minimal HTTP server answering every request with the current status.
fn http_server(status: Arc<AtomicU16>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 1024];
            let mut got = 0;
            while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") && got < buf.len() {
                match s.read(&mut buf[got..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            let code = status.load(Ordering::Relaxed);
            let _ = write!(s, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
        }
    });
    port
}

fn req(port: u16, kind: ProbeKind) -> ProbeRequest {
    ProbeRequest {
        token: 9,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        kind,
        timeout: Duration::from_millis(300),
    }
}

fn http() -> ProbeKind {
    ProbeKind::Http {
        path: "/healthz".into(),
        host: "10.0.0.100".into(),
    }
}

#[test]
fn real_tcp_probe() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    assert_eq!(run_probe(&req(port, ProbeKind::Tcp)), Ok(()));
    drop(l);
    assert!(matches!(
        run_probe(&req(port, ProbeKind::Tcp)),
        Err(ProbeFailure::Connect(_))
    ));
}

#[test]
fn real_http_probe_statuses_and_timeout() {
    let status = Arc::new(AtomicU16::new(200));
    let port = http_server(Arc::clone(&status));
    assert_eq!(run_probe(&req(port, http())), Ok(()));
    status.store(503, Ordering::Relaxed);
    assert_eq!(
        run_probe(&req(port, http())),
        Err(ProbeFailure::Status(503))
    );
    // A listener that never answers: the probe gives up at its deadline.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let sport = silent.local_addr().unwrap().port();
    let t0 = Timestamp::now();
    assert_eq!(run_probe(&req(sport, http())), Err(ProbeFailure::Timeout));
    let took = Timestamp::now() - t0;
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn prober_threads_return_results() {
    let status = Arc::new(AtomicU16::new(200));
    let port = http_server(status);
    let p = Prober::spawn(2, 8).unwrap();
    p.submit(req(port, http())).unwrap();
    let r = p.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((r.token, r.outcome), (9, Ok(())));
    let full = Prober::spawn(1, 1).unwrap();
    // The first request may be taken by the thread at once; keep submitting
    // until the bounded queue refuses.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let sport = silent.local_addr().unwrap().port();
    let mut refused = false;
    for _ in 0..4 {
        if full.submit(req(sport, http())) == Err(probe::SubmitError::Full) {
            refused = true;
            break;
        }
    }
    assert!(refused);
}

fn service_with_check(port: u16) -> VipService {
    VipService {
        name: "web".into(),
        vip: Ipv4Addr::new(10, 0, 0, 100),
        protocol: VipProtocol::Tcp,
        ports: vec![PortRange {
            first: 80,
            last: 80,
        }],
        members: vec![],
        weights: vec![],
        placement: Default::default(),
        sticky_timeout: Duration::ZERO,
        gratuitous_arp_count: 3,
        health_check: Some(HealthCheck {
            kind: HealthKind::Http,
            port,
            path: "/healthz".into(),
            interval: Duration::from_millis(40),
            timeout: Duration::from_millis(30),
            rise: 2,
            fall: 2,
        }),
    }
}

#[test]
fn monitor_end_to_end() {
    let status = Arc::new(AtomicU16::new(200));
    let port = http_server(Arc::clone(&status));
    let mut no_check = service_with_check(port);
    no_check.name = "nocheck".into();
    no_check.health_check = None;
    let services = [no_check, service_with_check(port)];
    let mut m = HealthMonitor::new(&services, Ipv4Addr::LOCALHOST, Timestamp::now());
    let prober = Prober::spawn(1, 4).unwrap();
    assert!(m.is_healthy(0) && !m.is_healthy(1));
    // The daemon's part: start the probes the monitor asks for on the real
    // prober, hand back what finished.
    let wait_for = |m: &mut HealthMonitor, want: Transition| {
        let start = Timestamp::now();
        while Timestamp::now() - start < Duration::from_secs(5) {
            let now = Timestamp::now();
            let mut ch = m.handle_timeout(now);
            while let Some(req) = m.poll_probe() {
                if prober.submit(req.clone()).is_err() {
                    let r = ProbeResult {
                        token: req.token,
                        outcome: Err(ProbeFailure::NotStarted),
                    };
                    ch.extend(m.handle_result(now, &r));
                }
            }
            while let Some(r) = prober.try_recv() {
                ch.extend(m.handle_result(Timestamp::now(), &r));
            }
            if ch.contains(&HealthChange {
                service: 1,
                transition: want,
            }) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    };
    assert!(wait_for(&mut m, Transition::Up));
    assert_eq!(
        m.entries(50),
        vec![
            HealthEntry {
                service: 0,
                healthy: true,
                weight: 50
            },
            HealthEntry {
                service: 1,
                healthy: true,
                weight: 50
            },
        ]
    );
    status.store(500, Ordering::Relaxed);
    assert!(wait_for(&mut m, Transition::Down));
    assert!(!m.is_healthy(1));
    assert!(m.stats().probes_ok >= 2 && m.stats().probes_failed >= 2);
    assert!(m.next_event().is_some());
}
