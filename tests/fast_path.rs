//! The XDP fast path in a lab: decided flows are forwarded, encapsulated and
//! decapsulated by the XDP programs after the workers' first decision, a
//! reload moves an established flow to its new job on its next packet, and
//! every frame stays counted in exactly one job.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use common::*;
use headroom::status::Status;
use headroom_lab::{
    run_in_ns,
    traffic::{self, Received},
    Lab,
};

fn on(cfg: String) -> String {
    cfg.replace(
        &format!("fast_path = \"{}\"", fast_path_mode()),
        "fast_path = \"on\"",
    )
}

fn job_packets_in(st: &Status, name: &str) -> u64 {
    st.job(name).map_or(0, |j| j.packets_in)
}

/// Sends `n` datagrams to `dst` from the fixed source port `sport` of `ns`
/// (one flow across calls).
fn udp_from(ns: &str, sport: u16, dst: SocketAddr, n: u64) {
    run_in_ns(ns, move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, sport)).expect("bind");
        for _ in 0..n {
            s.send_to(&[7u8; 300], dst).expect("send");
            std::thread::sleep(Duration::from_micros(200));
        }
    })
    .expect("sender");
}

const JOBS: &str = r#"
[[job]]
name = "a"
[[job.flow]]
protocol = "udp"
local_port = "{a}"

[[job]]
name = "b"
[[job.flow]]
protocol = "udp"
local_port = "{b}"
"#;

#[test]
fn a_reload_moves_an_established_fast_path_flow_to_its_new_job() {
    let mut lab = Lab::up(1, 1).expect("lab");
    let dir = TempDir::new(&format!("{}-fpreload", lab.tag));
    let s = lab.servers[0].clone();
    let c = lab.clients[0].clone();
    let base = on(server_config(&s, &dir.path("s1.sock"), ""));
    let jobs = |a: &str, b: &str| JOBS.replace("{a}", a).replace("{b}", b);
    let sock = start_headroomd(
        &mut lab,
        &dir,
        0,
        &format!("{base}{}", jobs("6000", "7000")),
    );
    let sink = traffic::udp_sink(
        &s.host_ns,
        6000,
        Duration::from_secs(2),
        Duration::from_secs(20),
    )
    .unwrap();
    let dst = SocketAddr::from((s.host_ip, 6000));
    udp_from(&c.ns, 40123, dst, 300);
    let fast = |st: &Status| st.interfaces[0].verdict("fast_forward");
    let st = wait_for(Duration::from_secs(5), || {
        let st = status(&sock);
        (job_packets_in(&st, "a") == 300).then_some(st)
    })
    .expect("300 datagrams in job a");
    assert!(
        fast(&st) > 250,
        "the flow took the fast path: {}",
        fast(&st)
    );

    // Port 6000 moves to job b: the same flow's next datagrams count there.
    std::fs::write(
        dir.path("s1.toml"),
        format!("{base}{}", jobs("6001", "6000")),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_headroomctl"))
        .arg("--socket")
        .arg(&sock)
        .arg("reload")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(Duration::from_secs(5), || {
        status(&sock)
            .workers
            .iter()
            .all(|w| w.rules_generation >= 1)
            .then_some(())
    })
    .expect("reload applied");
    udp_from(&c.ns, 40123, dst, 300);
    let st = wait_for(Duration::from_secs(5), || {
        let st = status(&sock);
        (job_packets_in(&st, "b") == 300).then_some(st)
    })
    .unwrap_or_else(|| panic!("job b never counted 300: {:?}", status(&sock).jobs));
    assert_eq!(job_packets_in(&st, "a"), 300, "nothing more in job a");
    assert!(fast(&st) > 500, "back on the fast path after the reload");
    let (n, _) = sink.join().unwrap();
    assert_eq!(n, 600);
}

#[test]
fn idle_fast_path_flows_expire_and_the_table_is_counted() {
    let mut lab = Lab::up(1, 1).expect("lab");
    let dir = TempDir::new(&format!("{}-fpidle", lab.tag));
    let s = lab.servers[0].clone();
    let c = lab.clients[0].clone();
    let cfg = on(server_config(
        &s,
        &dir.path("s1.sock"),
        &format!(
            "[classifier]\nidle_timeout = \"2s\"\n{}",
            JOBS.replace("{a}", "6000").replace("{b}", "7000")
        ),
    ));
    let sock = start_headroomd(&mut lab, &dir, 0, &cfg);
    let dst = SocketAddr::from((s.host_ip, 6000));
    // Three flows (three source ports), each decided by a worker and then
    // forwarded by XDP.
    for sport in [40201, 40202, 40203] {
        udp_from(&c.ns, sport, dst, 50);
    }
    let outer = |st: &Status| st.interfaces[0].clone();
    let st = wait_for(Duration::from_secs(5), || {
        let st = status(&sock);
        (outer(&st).fast_path_entries >= 3).then_some(st)
    })
    .unwrap_or_else(|| panic!("table never counted 3 flows: {:?}", outer(&status(&sock))));
    assert_eq!(outer(&st).fast_path_capacity, 65536);
    assert_eq!(job_packets_in(&st, "a"), 150);
    // Silent for longer than the idle timeout: the sweep removes them.
    wait_for(Duration::from_secs(10), || {
        let i = outer(&status(&sock));
        (i.fast_path_entries == 0 && i.fast_path_expired >= 3).then_some(())
    })
    .unwrap_or_else(|| panic!("idle entries not expired: {:?}", outer(&status(&sock))));
    // A flow that comes back is decided again and counted once.
    udp_from(&c.ns, 40201, dst, 50);
    wait_for(Duration::from_secs(5), || {
        let st = status(&sock);
        (job_packets_in(&st, "a") == 200).then_some(())
    })
    .unwrap_or_else(|| panic!("returning flow not counted: {:?}", status(&sock).jobs));
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_headroomctl"))
        .arg("--socket")
        .arg(&sock)
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("fast-path table:"), "{text}");
}

const VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 100, 3);
const PORT: u16 = 9400;

fn vip_config(lab: &Lab, me: u16, key: &std::path::Path) -> String {
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

[director]
{hosts}
[[vip]]
name = "web"
vip = "{VIP}"
protocol = "tcp"
ports = [{PORT}]
"#,
        peers = peers.join(", "),
        key = key.display()
    )
}

#[test]
fn vip_connections_are_encapsulated_by_xdp_after_their_first_packet() {
    let mut lab = Lab::up(3, 1).expect("lab");
    let dir = TempDir::new(&format!("{}-fpvip", lab.tag));
    let key = dir.path("pool.key");
    headroom_config::write_key_file(&key, b"fast-path-vip-test-key-0123456789").unwrap();
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
    for i in 0..3 {
        let s = lab.servers[i].clone();
        let sock = dir.path(&format!("s{}.sock", s.id));
        let cfg = on(server_config(&s, &sock, &vip_config(&lab, s.id, &key)));
        socks.push(start_headroomd(&mut lab, &dir, i, &cfg));
    }
    // Every node hears the other two (the directors are past their static
    // start-up view, so membership does not change under the connections)
    // and places over all three.
    wait_for(Duration::from_secs(20), || {
        socks
            .iter()
            .all(|sock| {
                let st = status(sock);
                st.exchange.as_ref().is_some_and(|e| e.live_nodes == 3)
                    && st.director.is_some_and(|d| {
                        d.ready
                            && d.nodes.iter().all(|n| n.mac.is_some())
                            && d.service("web").is_some_and(|v| v.serving == vec![1, 2, 3])
                    })
            })
            .then_some(())
    })
    .expect("pool and director ready");

    // Servers that check every byte, on every host.
    let stop = Arc::new(AtomicBool::new(false));
    let servers: Vec<_> = lab
        .servers
        .iter()
        .map(|s| {
            let (ns, stop) = (s.host_ns.clone(), stop.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            let h = std::thread::spawn(move || {
                run_in_ns(&ns, move || {
                    let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)).unwrap();
                    l.set_nonblocking(true).unwrap();
                    let _ = tx.send(());
                    let mut got: Vec<Received> = Vec::new();
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
                    got.extend(conns.into_iter().map(|h| h.join().unwrap_or_default()));
                    got
                })
                .unwrap_or_default()
            });
            rx.recv_timeout(Duration::from_secs(5)).expect("listening");
            h
        })
        .collect();
    let c = lab.clients[0].clone();
    for _ in 0..60 {
        let n = traffic::tcp_send(&c.ns, SocketAddr::from((VIP, PORT)), 64 * 1024)
            .expect("thread")
            .expect("TCP through the VIP");
        assert_eq!(n, 64 * 1024);
    }
    stop.store(true, Ordering::Relaxed);
    let per_server: Vec<Vec<Received>> = servers.into_iter().map(|h| h.join().unwrap()).collect();
    let all: Vec<Received> = per_server.iter().flatten().copied().collect();
    assert_eq!(all.len(), 60, "every connection was served once");
    assert!(
        all.iter().all(|r| r.bytes == 64 * 1024 && r.corrupt == 0),
        "{all:?}"
    );
    // The owner (node 1) placed every connection once (its workers publish
    // their counters every 100 ms: the last connections' placements arrive
    // after them), encapsulated in XDP after each connection's first
    // packets; the other servers decapsulated in XDP.
    let web = wait_for(Duration::from_secs(5), || {
        let w = status(&socks[0]).director?.service("web")?.clone();
        (w.new_flows >= 60).then_some(w)
    })
    .unwrap_or_else(|| panic!("owner counters: {:?}", status(&socks[0]).director));
    assert_eq!(web.new_flows, 60, "one placement per connection: {web:?}");
    assert_eq!(web.placed_local + web.placed_remote, 60, "{web:?}");
    let st: Vec<Status> = socks.iter().map(|s| status(s)).collect();
    let encap = st[0].interfaces[0].fast_path_encapsulated;
    let decap: u64 = st[1..]
        .iter()
        .map(|s| s.interfaces[0].fast_path_decapsulated)
        .sum();
    let remote = web.placed_remote;
    // Two of three placements are remote: 40 expected, fewer than 20 has a
    // probability of 3e-8.
    assert!(remote >= 20, "placements on other servers: {web:?}");
    assert!(
        encap > 20 * remote,
        "owner encapsulated {encap} frames in XDP for {remote} remote connections"
    );
    assert!(
        decap > 20 * remote,
        "serving nodes decapsulated {decap} in XDP"
    );
    assert!(
        per_server.iter().all(|v| !v.is_empty()),
        "every server served"
    );
}
