//! Real traffic through headroomd: exact per-job accounting, and SIGHUP
//! rule swaps that move traffic between jobs without loss.

mod common;

use std::{net::SocketAddr, time::Duration};

use common::*;
use headroom_lab::{traffic, Lab};

const JOBS: &str = r#"
[[job]]
name = "web"
[[job.flow]]
protocol = "tcp"
local_port = "8080"

[[job]]
name = "bulk"
[[job.flow]]
protocol = "udp"
local_port = "5001"
"#;

#[test]
fn per_job_counters_equal_what_was_sent() {
    const DATAGRAMS: u64 = 3000;
    const PAYLOAD: usize = 700;
    const TCP_BYTES: u64 = 6_000_000;
    let mut lab = Lab::up(1, 2).expect("lab");
    let dir = TempDir::new(&format!("{}-traffic", lab.tag));
    let s = lab.servers[0].clone();
    let (c1, c2) = (lab.clients[0].clone(), lab.clients[1].clone());
    let sock = dir.path("s1.sock");
    let sock = start_headroomd(&mut lab, &dir, 0, &server_config(&s, &sock, JOBS));
    let tcp0 = (tcp_sent(&c2.ns), tcp_sent(&s.host_ns));

    let udp = traffic::udp_sink(
        &s.host_ns,
        5001,
        Duration::from_millis(700),
        Duration::from_secs(10),
    )
    .unwrap();
    let tcp = traffic::tcp_sink(&s.host_ns, 8080, 1).unwrap();
    let sent = traffic::udp_send(
        &c1.ns,
        SocketAddr::from((s.host_ip, 5001)),
        DATAGRAMS,
        PAYLOAD,
        20_000,
    )
    .unwrap();
    assert_eq!(sent, DATAGRAMS);
    traffic::tcp_send(&c2.ns, SocketAddr::from((s.host_ip, 8080)), TCP_BYTES)
        .unwrap()
        .expect("tcp transfer");
    let (got, got_bytes) = udp.join().unwrap();
    assert_eq!(got, DATAGRAMS, "datagrams lost through headroomd");
    assert_eq!(got_bytes, DATAGRAMS * PAYLOAD as u64);
    assert_eq!(
        tcp.join().unwrap(),
        vec![TCP_BYTES],
        "TCP bytes lost through headroomd"
    );

    // Every TCP segment the client sent to the host and the host sent back
    // passed through the worker (or the fast path) and was counted in the web
    // job (the only TCP connection in those namespaces); every frame a worker
    // or the fast path received was counted in exactly one job. (The host's interface counters are no reference here: the lab's
    // fail-open bridge also carries the node's own IGMP reports to it.)
    let mut last = String::new();
    let st = wait_for(Duration::from_secs(5), || {
        let tcp = (tcp_sent(&c2.ns), tcp_sent(&s.host_ns));
        let st = status(&sock);
        let web = st.job("web").unwrap();
        let sum_in: u64 = st.jobs.iter().map(|j| j.packets_in).sum();
        let sum_out: u64 = st.jobs.iter().map(|j| j.packets_out).sum();
        // Frames reach a job through a worker or through the XDP fast path.
        let rx: (u64, u64) = st.workers.iter().fold(
            (
                st.interfaces[0].verdict("fast_forward"),
                st.interfaces[1].verdict("fast_forward"),
            ),
            |a, w| (a.0 + w.rx_packets[0], a.1 + w.rx_packets[1]),
        );
        let got = (web.packets_in, web.packets_out, sum_in, sum_out);
        let want = (tcp.0 - tcp0.0, tcp.1 - tcp0.1, rx.0, rx.1);
        last = format!("jobs {got:?} reference {want:?}");
        (got == want).then_some(st)
    })
    .unwrap_or_else(|| {
        panic!(
            "job counters never matched: {last}\n{:#?}",
            status(&sock).jobs
        )
    });
    let bulk = st.job("bulk").unwrap();
    assert_eq!(bulk.packets_in, DATAGRAMS);
    // Ethernet 14 + IPv4 20 + UDP 8 bytes of headers per datagram.
    assert_eq!(bulk.bytes_in, DATAGRAMS * (PAYLOAD as u64 + 42));
    assert_eq!(bulk.packets_out, 0);
    let web = st.job("web").unwrap();
    assert!(
        web.bytes_in > TCP_BYTES,
        "web saw {} bytes in, {TCP_BYTES} were sent",
        web.bytes_in
    );
    assert!(web.packets_out > 0, "no ACKs counted");
    for w in &st.workers {
        assert_eq!(
            w.frames_accounted, w.frames_total,
            "frame ledger out of balance"
        );
        assert_eq!(w.frame_violations, 0);
    }
}

fn jobs_config(port_job: &str) -> String {
    format!(
        r#"
[[job]]
name = "a"
{a}
[[job]]
name = "b"
{b}
"#,
        a = if port_job == "a" {
            "[[job.flow]]\nprotocol = \"udp\"\nlocal_port = \"6000\""
        } else {
            ""
        },
        b = if port_job == "b" {
            "[[job.flow]]\nprotocol = \"udp\"\nlocal_port = \"6000\""
        } else {
            ""
        },
    )
}

#[test]
fn sighup_moves_traffic_and_rejects_invalid_files() {
    let mut lab = Lab::up(1, 1).expect("lab");
    let dir = TempDir::new(&format!("{}-reload", lab.tag));
    let s = lab.servers[0].clone();
    let c = lab.clients[0].clone();
    let sockp = dir.path("s1.sock");
    let base = server_config(&s, &sockp, "");
    let sock = start_headroomd(&mut lab, &dir, 0, &format!("{base}{}", jobs_config("a")));
    let pid = lab.child("headroomd-1").unwrap().id() as i32;
    let dst = SocketAddr::from((s.host_ip, 6000));
    let sink = traffic::udp_sink(
        &s.host_ns,
        6000,
        Duration::from_secs(2),
        Duration::from_secs(20),
    )
    .unwrap();
    let hup = || {
        // SAFETY: kill(2) has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    };

    assert_eq!(
        traffic::udp_send(&c.ns, dst, 400, 200, 10_000).unwrap(),
        400
    );
    let gen0 = status(&sock).workers[0].rules_generation;

    // A valid change: port 6000 now belongs to job b.
    std::fs::write(dir.path("s1.toml"), format!("{base}{}", jobs_config("b"))).unwrap();
    hup();
    wait_for(Duration::from_secs(5), || {
        let st = status(&sock);
        (st.reloads_ok == 1 && st.workers.iter().all(|w| w.rules_generation > gen0)).then_some(())
    })
    .expect("reload applied by every worker");
    assert_eq!(
        traffic::udp_send(&c.ns, dst, 300, 200, 10_000).unwrap(),
        300
    );

    // An invalid file is rejected; the old rules keep counting.
    std::fs::write(
        dir.path("s1.toml"),
        format!("{base}{}\n[[job]]\nname = \"a\"\n", jobs_config("a")),
    )
    .unwrap();
    hup();
    let st = wait_for(Duration::from_secs(5), || {
        let st = status(&sock);
        (st.reloads_failed == 1).then_some(st)
    })
    .expect("invalid reload rejected");
    let err = st.last_reload_error.clone().unwrap_or_default();
    assert!(
        err.contains("s1.toml") && err.contains("name"),
        "error should name file and field: {err}"
    );
    assert_eq!(
        traffic::udp_send(&c.ns, dst, 200, 200, 10_000).unwrap(),
        200
    );

    let (got, _) = sink.join().unwrap();
    assert_eq!(got, 900, "datagrams lost across reloads");
    let st = wait_for(Duration::from_secs(5), || {
        let st = status(&sock);
        (st.job("a").unwrap().packets_in + st.job("b").unwrap().packets_in == 900).then_some(st)
    })
    .expect("counters settle");
    assert_eq!(st.job("a").unwrap().packets_in, 400);
    assert_eq!(st.job("b").unwrap().packets_in, 500);
    assert_eq!(st.reloads_ok, 1);
}
