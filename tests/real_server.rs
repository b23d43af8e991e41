//! Headroom in front of a host stack as Linux sets it up: default offloads
//! (checksum offload, GSO) on every host and client, GRO upstream,
//! aggregated frames reaching the XDP program, jumbo frames, and interfaces
//! with several receive queues. Every transfer is checked byte for byte
//! (the sender writes a pattern the receiver verifies), and the per-job
//! counts are compared with the host stack's own TCP counters: the workers
//! count packets as the host sees them (segments, after any segmentation of
//! an aggregate in the worker).

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::*;
use headroom::status::{JobStatus, Status, WorkerStatus};
use headroom_lab::{
    run_in_ns,
    traffic::{self, arrival_log, udp_flood, wire_rate, ArrivalLog, Received},
    Lab, LabOptions,
};

const JOBS: &str = r#"
[[job]]
name = "tcp"
[[job.flow]]
protocol = "tcp"

[[job]]
name = "udp"
[[job.flow]]
protocol = "udp"
local_port = "9000"
"#;

const MB: u64 = 1 << 20;

fn job<'a>(st: &'a Status, name: &str) -> &'a JobStatus {
    st.jobs.iter().find(|j| j.name == name).expect("job")
}

fn sum_workers(st: &Status, f: impl Fn(&WorkerStatus) -> u64) -> u64 {
    st.workers.iter().map(f).sum()
}

/// `bytes` from client to host and back over `streams` parallel connections
/// each way; every byte must arrive intact.
fn transfer_both_ways(lab: &Lab, server: usize, bytes: u64, streams: usize) {
    let s = lab.servers[server].clone();
    let c = lab.clients[0].clone();
    for (from, to, to_ip, port) in [
        (c.ns.clone(), s.host_ns.clone(), s.host_ip, 7000),
        (s.host_ns.clone(), c.ns.clone(), c.ip, 7001),
    ] {
        let sink = traffic::tcp_sink_checked(&to, port, streams).unwrap();
        let senders: Vec<_> = (0..streams)
            .map(|_| {
                let from = from.clone();
                std::thread::spawn(move || {
                    traffic::tcp_send(&from, SocketAddr::from((to_ip, port)), bytes)
                        .expect("sender thread")
                        .expect("TCP transfer")
                })
            })
            .collect();
        for h in senders {
            assert_eq!(h.join().unwrap(), bytes);
        }
        let got = sink.join().unwrap();
        assert_eq!(
            got,
            vec![Received { bytes, corrupt: 0 }; streams],
            "{from} -> {to}: every byte delivered intact"
        );
    }
}

/// TCP segments the client and the host of server `i` have sent so far.
fn segments_sent(lab: &Lab, i: usize) -> (u64, u64) {
    (
        tcp_sent(&lab.clients[0].ns),
        tcp_sent(&lab.servers[i].host_ns),
    )
}

/// The job "tcp" (all TCP) counted exactly the segments the client sent
/// the host (inbound) and the host sent back (outbound) since `before`.
fn assert_tcp_counts_equal_segments_sent(
    sock: &std::path::Path,
    lab: &Lab,
    i: usize,
    before: (u64, u64),
) {
    let mut last = (0, 0, 0, 0);
    let ok = wait_for(Duration::from_secs(10), || {
        let st = status(sock);
        let j = job(&st, "tcp");
        let now = segments_sent(lab, i);
        last = (
            j.packets_in,
            now.0 - before.0,
            j.packets_out,
            now.1 - before.1,
        );
        (last.0 == last.1 && last.2 == last.3).then_some(())
    });
    assert!(
        ok.is_some(),
        "job in/out {}/{} vs segments sent by the client {} and the host {}",
        last.0,
        last.2,
        last.1,
        last.3
    );
}

#[test]
fn linux_default_offloads_and_gro_upstream_carry_tcp_intact() {
    let mut lab = Lab::up(1, 1).expect("lab");
    let sw = lab.switch_ns.clone();
    // GRO at the client's switch port: the bridge then forwards aggregates
    // that the kernel re-segments with partial checksums.
    sh(&lab, &sw, "ethtool -K c1 gro on && ethtool -K p1 gro on");
    let dir = TempDir::new(&format!("{}-offloads", lab.tag));
    let s = lab.servers[0].clone();
    let sock = start_headroomd(
        &mut lab,
        &dir,
        0,
        &server_config(&s, &dir.path("s1.sock"), JOBS),
    );
    let mib0 = segments_sent(&lab, 0);
    transfer_both_ways(&lab, 0, 8 * MB, 1);
    assert_tcp_counts_equal_segments_sent(&sock, &lab, 0, mib0);
    let st = status(&sock);
    // Both stacks hand over partial checksums: the workers (or the fast
    // path) completed them.
    let completed = |side: usize| {
        sum_workers(&st, |w| w.checksums_completed[side])
            + st.interfaces[side].fast_path_checksums_completed
    };
    assert!(completed(0) > 1000, "client side: {}", completed(0));
    assert!(completed(1) > 1000, "host side: {}", completed(1));
    assert!(st
        .workers
        .iter()
        .all(|w| w.frame_violations == 0 && w.frames_accounted == w.frames_total));
}

#[test]
fn aggregates_reaching_xdp_are_segmented_in_the_worker() {
    // In generic (skb) mode the kernel hands XDP the GSO/GRO aggregates as
    // they are (64 KB TCP super-frames from both stacks), as a NIC with LRO
    // would: the workers receive them as multi-buffer packets and cut them.
    let mut lab = Lab::up(1, 1).expect("lab");
    let dir = TempDir::new(&format!("{}-aggregates", lab.tag));
    let s = lab.servers[0].clone();
    let cfg = server_config(&s, &dir.path("s1.sock"), JOBS).replace(
        "inner = \"inner\"\n",
        "inner = \"inner\"\nxdp_mode = \"generic\"\n",
    );
    let sock = start_headroomd(&mut lab, &dir, 0, &cfg);
    let mib0 = segments_sent(&lab, 0);
    transfer_both_ways(&lab, 0, 8 * MB, 2);
    assert_tcp_counts_equal_segments_sent(&sock, &lab, 0, mib0);
    let st = status(&sock);
    let aggregates = sum_workers(&st, |w| w.segmented[0]);
    let segments = sum_workers(&st, |w| w.segmented[1]);
    assert!(aggregates > 10, "aggregates segmented: {aggregates}");
    assert!(
        segments > 2 * aggregates,
        "{segments} segments of {aggregates}"
    );
    // Longer than a UMEM frame, they arrived in several buffers.
    assert!(sum_workers(&st, |w| w.rx_multi_buffer[0] + w.rx_multi_buffer[1]) > 0);
}

#[test]
fn a_frame_too_big_for_the_host_side_is_dropped_and_counted() {
    // The network runs jumbo frames, the host side 1500: an 8 KB UDP
    // datagram cannot be cut (its boundaries are the application's).
    let mut lab = Lab::up_with(
        1,
        1,
        LabOptions {
            mtu: 9000,
            ..LabOptions::default()
        },
    )
    .expect("lab");
    let s = lab.servers[0].clone();
    lab.ip(&s.ns, &["link", "set", &s.inner, "mtu", "1500"])
        .unwrap();
    lab.ip(&s.host_ns, &["link", "set", &s.host_if, "mtu", "1500"])
        .unwrap();
    let dir = TempDir::new(&format!("{}-toobig", lab.tag));
    let sock = start_headroomd(
        &mut lab,
        &dir,
        0,
        &server_config(&s, &dir.path("s1.sock"), JOBS),
    );
    let c = lab.clients[0].clone();
    // Resolve the host's MAC first: datagrams queued behind an unresolved
    // neighbour are dropped by the client's own stack.
    sh(&lab, &c.ns, &format!("ping -c 1 -W 5 {}", s.host_ip));
    let sent =
        traffic::udp_send(&c.ns, SocketAddr::from((s.host_ip, 9000)), 50, 8000, 500).unwrap();
    assert_eq!(sent, 50);
    let dropped = wait_for(Duration::from_secs(5), || {
        let st = status(&sock);
        let n: u64 = st
            .workers
            .iter()
            .flat_map(|w| w.drops.iter())
            .filter(|d| d.0 == "too_big")
            .map(|d| d.1)
            .sum();
        (n == 50).then_some(n)
    });
    assert_eq!(
        dropped,
        Some(50),
        "every oversized datagram counted by reason"
    );
    assert_eq!(job(&status(&sock), "udp").packets_in, 0);
}

/// `queues` receive queues on every server link, `cores` workers.
fn queued_lab(cores: &str) -> (Lab, TempDir, std::path::PathBuf) {
    let mut lab = Lab::up_with(
        1,
        1,
        LabOptions {
            queues: 4,
            ..LabOptions::default()
        },
    )
    .expect("lab");
    let dir = TempDir::new(&format!("{}-queues", lab.tag));
    let s = lab.servers[0].clone();
    let cfg = server_config(&s, &dir.path("s1.sock"), JOBS)
        .replace("cores = [1]", &format!("cores = {cores}"));
    let sock = start_headroomd(&mut lab, &dir, 0, &cfg);
    (lab, dir, sock)
}

#[test]
fn every_receive_queue_is_served_by_one_or_two_workers() {
    for cores in ["[1]", "[0, 1]"] {
        let (lab, _dir, sock) = queued_lab(cores);
        let mib0 = segments_sent(&lab, 0);
        transfer_both_ways(&lab, 0, 2 * MB, 8);
        assert_tcp_counts_equal_segments_sent(&sock, &lab, 0, mib0);
        let st = status(&sock);
        for i in &st.interfaces {
            assert_eq!(i.rx_queues, 4, "{}", i.name);
            assert_eq!(
                i.served_queues.len(),
                4,
                "{}: {:?}",
                i.name,
                i.served_queues
            );
            assert_eq!(i.verdict("pass_no_xsk"), 0, "{}: no frame bypassed", i.name);
        }
        let workers = st.workers.len();
        assert_eq!(workers, if cores == "[1]" { 1 } else { 2 });
        for w in &st.workers {
            assert_eq!(w.queues_outer.len(), 4 / workers);
            assert_eq!(w.queues_inner.len(), 4 / workers);
        }
    }
}

#[test]
fn a_configuration_leaving_queues_unserved_is_refused_unless_allowed() {
    let mut lab = Lab::up_with(
        1,
        1,
        LabOptions {
            queues: 4,
            ..LabOptions::default()
        },
    )
    .expect("lab");
    let dir = TempDir::new(&format!("{}-unserved", lab.tag));
    let s = lab.servers[0].clone();
    let cfg = server_config(&s, &dir.path("s1.sock"), JOBS)
        .replace("cores = [1]", "cores = [1]\nqueues = [0]");
    let err = lab
        .start_headroomd(std::path::Path::new(HEADROOMD), 0, &dir.0, &cfg)
        .expect_err("queues 1-3 would be unserved");
    let msg = err.to_string();
    assert!(
        msg.contains("unserved")
            && msg.contains("[1, 2, 3]")
            && msg.contains("allow_unserved_queues"),
        "{msg}"
    );
    lab.forget("headroomd-1");
    let cfg = cfg.replace("queues = [0]", "queues = [0]\nallow_unserved_queues = true");
    let sock = start_headroomd(&mut lab, &dir, 0, &cfg);
    transfer_both_ways(&lab, 0, MB, 8);
    let st = status(&sock);
    let share = st.interfaces[0]
        .bypassed_share()
        .max(st.interfaces[1].bypassed_share());
    assert!(share > 0.1, "the bypassed share is shown: {share}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_headroomctl"))
        .arg("--socket")
        .arg(&sock)
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bypassed the workers"), "{text}");
}

// --- jumbo frames: classified, paced, directed ---

const VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 100, 2);
const VIP_UDP: u16 = 9100;
const VIP_TCP: u16 = 9200;

fn jumbo_config(lab: &Lab, me: u16, key: &std::path::Path) -> String {
    let peers: Vec<String> = lab
        .servers
        .iter()
        .filter(|s| s.id != me)
        .map(|s| format!("\"{}@{}:7946\"", s.id, s.node_ip))
        .collect();
    let hosts: String = lab
        .servers
        .iter()
        .map(|s| {
            format!(
                "[[director.hosts]]\nnode = {}\naddress = \"{}\"\n",
                s.id, s.host_ip
            )
        })
        .collect();
    format!(
        r#"
[exchange]
peers = [{peers}]
key_file = "{key}"
failure_timeout = "1s"

[director]
underlay_mtu = 9000
{hosts}
[[vip]]
name = "jumbo-udp"
vip = "{VIP}"
protocol = "udp"
ports = [{VIP_UDP}]

[[vip]]
name = "jumbo-tcp"
vip = "{VIP}"
protocol = "tcp"
ports = [{VIP_TCP}]

[[pipe]]
name = "uplink"
capacity = "100Mbit"
remote = "10.200.2.0/24"

[[job]]
name = "paced"
[[job.flow]]
protocol = "udp"
local_port = "9300"
[[job.booking]]
pipe = "uplink"
rate = "100%"
{JOBS}
"#,
        peers = peers.join(", "),
        key = key.display()
    )
}

/// A TCP server on `port` in `ns` that serves connections until `stop`,
/// checking each against the sender's pattern.
fn pattern_server(
    ns: &str,
    port: u16,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Received>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_string();
    let h = std::thread::spawn(move || {
        run_in_ns(&ns, move || {
            let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind");
            l.set_nonblocking(true).expect("nonblocking");
            let _ = tx.send(());
            let mut conns = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => conns.push(std::thread::spawn(move || {
                        use std::io::Read;
                        c.set_nonblocking(false).ok();
                        c.set_read_timeout(Some(Duration::from_secs(20))).ok();
                        let mut r = Received::default();
                        let mut buf = vec![0u8; 65536];
                        while let Ok(n) = c.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            for (k, b) in buf[..n].iter().enumerate() {
                                if *b != traffic::pattern_byte(r.bytes + k as u64) {
                                    r.corrupt += 1;
                                }
                            }
                            r.bytes += n as u64;
                        }
                        r
                    })),
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            conns
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("listening");
    h
}

#[test]
fn jumbo_frames_are_classified_paced_and_directed() {
    let mut lab = Lab::up_with(
        2,
        1,
        LabOptions {
            mtu: 9000,
            ..LabOptions::default()
        },
    )
    .expect("lab");
    let dir = TempDir::new(&format!("{}-jumbo", lab.tag));
    let key = dir.path("pool.key");
    headroom_config::write_key_file(&key, b"jumbo-test-pool-key-0123456789ab").unwrap();
    for s in lab.servers.clone() {
        sh(
            &lab,
            &s.host_ns,
            &format!(
                "ip addr add {VIP}/32 dev lo && \
                 sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2"
            ),
        );
    }
    let mut socks = Vec::new();
    for i in 0..2 {
        let s = lab.servers[i].clone();
        let sock = dir.path(&format!("s{}.sock", s.id));
        let cfg = server_config(&s, &sock, &jumbo_config(&lab, s.id, &key));
        socks.push(start_headroomd(&mut lab, &dir, i, &cfg));
    }
    let ready = wait_for(Duration::from_secs(20), || {
        socks
            .iter()
            .all(|sock| {
                status(sock).director.is_some_and(|d| {
                    d.ready
                        && d.nodes.iter().all(|n| n.mac.is_some())
                        && d.service("jumbo-udp")
                            .is_some_and(|v| v.owner == Some(1) && v.serving == vec![1, 2])
                })
            })
            .then_some(())
    });
    assert!(ready.is_some(), "pool and director ready");
    let s1 = lab.servers[0].clone();
    let c = lab.clients[0].clone();

    // TCP both ways with 9000-byte frames (three UMEM buffers each).
    let mib0 = segments_sent(&lab, 0);
    transfer_both_ways(&lab, 0, 8 * MB, 1);
    assert_tcp_counts_equal_segments_sent(&socks[0], &lab, 0, mib0);
    let st = status(&socks[0]);
    assert!(sum_workers(&st, |w| w.rx_multi_buffer[0]) > 500);
    assert!(sum_workers(&st, |w| w.rx_multi_buffer[1]) > 500);

    // 8 KB UDP datagrams to the host: classified exactly.
    let udp = traffic::udp_sink(
        &s1.host_ns,
        9000,
        Duration::from_millis(700),
        Duration::from_secs(10),
    )
    .unwrap();
    let before = job(&status(&socks[0]), "udp").packets_in;
    let sent =
        traffic::udp_send(&c.ns, SocketAddr::from((s1.host_ip, 9000)), 300, 8000, 2000).unwrap();
    let (n, bytes) = udp.join().unwrap();
    assert_eq!((sent, n, bytes), (300, 300, 300 * 8000));
    let counted = wait_for(Duration::from_secs(5), || {
        let j = job(&status(&socks[0]), "udp").packets_in - before;
        (j == 300).then_some(j)
    });
    assert_eq!(counted, Some(300), "every jumbo datagram in its job");

    // Paced on the 100 Mbit/s pipe: 8 KB datagrams offered at twice that.
    let log: ArrivalLog = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let logger = arrival_log(&c.ns, &[9301], log.clone(), stop.clone());
    let flood = udp_flood(
        &s1.host_ns,
        9300,
        SocketAddr::from((c.ip, 9301)),
        200e6,
        8000,
        stop.clone(),
    );
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(3500));
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    for h in logger {
        h.join().unwrap();
    }
    let rate = wire_rate(
        &log,
        t0 + Duration::from_millis(1000),
        t0 + Duration::from_millis(3000),
        |_, _| true,
    );
    assert!(
        (85e6..=105e6).contains(&rate),
        "paced jumbo traffic: {:.1} Mbit/s on a 100 Mbit/s pipe",
        rate / 1e6
    );

    // Directed through the VIP: UDP datagrams from 40 flows, TCP from 20
    // connections, placed on both servers; remote placements travel
    // encapsulated (the overhead fits the 9000-byte underlay for UDP; for
    // TCP the serving node clamps the MSS its SYN-ACK offers, so the
    // client's segments fit once encapsulated and the owner cuts nothing).
    let sinks: Vec<_> = lab
        .servers
        .iter()
        .map(|s| {
            traffic::udp_sink(
                &s.host_ns,
                VIP_UDP,
                Duration::from_millis(1500),
                Duration::from_secs(15),
            )
            .unwrap()
        })
        .collect();
    let mut sent = 0;
    for _ in 0..40 {
        sent += traffic::udp_send(&c.ns, SocketAddr::from((VIP, VIP_UDP)), 5, 8000, 1000).unwrap();
    }
    let got: Vec<(u64, u64)> = sinks.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(sent, 200);
    assert_eq!(got.iter().map(|g| g.0).sum::<u64>(), 200, "{got:?}");
    assert!(got.iter().all(|g| g.0 > 0), "both servers serve: {got:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let servers: Vec<_> = lab
        .servers
        .iter()
        .map(|s| pattern_server(&s.host_ns, VIP_TCP, stop.clone()))
        .collect();
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let ns = c.ns.clone();
            std::thread::spawn(move || {
                traffic::tcp_send(&ns, SocketAddr::from((VIP, VIP_TCP)), 256 * 1024)
                    .expect("thread")
                    .expect("TCP through the VIP")
            })
        })
        .collect();
    for h in clients {
        assert_eq!(h.join().unwrap(), 256 * 1024);
    }
    stop.store(true, Ordering::Relaxed);
    let per_server: Vec<Vec<Received>> = servers.into_iter().map(|h| h.join().unwrap()).collect();
    let all: Vec<Received> = per_server.iter().flatten().copied().collect();
    assert_eq!(all.len(), 20);
    assert!(
        all.iter().all(|r| r.bytes == 256 * 1024 && r.corrupt == 0),
        "{all:?}"
    );
    assert!(
        per_server.iter().all(|v| !v.is_empty()),
        "both servers serve TCP"
    );
    let d1 = status(&socks[0]).director.unwrap();
    let d2 = status(&socks[1]).director.unwrap();
    assert!(d1.counter("encapsulated") > 0 && d2.counter("decapsulated") > 0);
    // Full-size jumbo segments do not fit the underlay once encapsulated:
    // the serving side clamps the MSS of the VIP's SYN-ACKs or a worker cuts
    // an oversized segment; either way no frame is lost to the
    // encapsulation (the transfers above arrived whole).
    let clamped = d1.counter("mss_clamped") + d2.counter("mss_clamped");
    let segmented = sum_workers(&status(&socks[0]), |w| w.segmented[0]);
    eprintln!("SYN-ACKs clamped {clamped}, segments cut {segmented}");
    assert_eq!(d1.counter("encap_too_big") + d2.counter("encap_too_big"), 0);
}

#[test]
fn a_channel_change_while_running_is_reported() {
    let mut lab = Lab::up_with(
        1,
        1,
        LabOptions {
            queues: 8,
            ..LabOptions::default()
        },
    )
    .expect("lab");
    let s = lab.servers[0].clone();
    sh(&lab, &s.ns, &format!("ethtool -L {} rx 4 tx 4", s.nic));
    let dir = TempDir::new(&format!("{}-channels", lab.tag));
    let cfg = server_config(
        &s,
        &dir.path("s1.sock"),
        &format!("[control]\nlow_freq_interval = \"100ms\"\n{JOBS}"),
    );
    let sock = start_headroomd(&mut lab, &dir, 0, &cfg);
    assert_eq!(status(&sock).interfaces[0].rx_queues, 4);
    // `ethtool -L` while running: queues 4-7 now have no socket.
    sh(&lab, &s.ns, &format!("ethtool -L {} rx 8 tx 8", s.nic));
    let seen = wait_for(Duration::from_secs(5), || {
        status(&sock).interfaces[0].rx_queues_now
    });
    assert_eq!(seen, Some(8), "the change is shown in status");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_headroomctl"))
        .arg("--socket")
        .arg(&sock)
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("restart headroomd to serve them all"),
        "{text}"
    );
}
