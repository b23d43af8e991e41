//! Flow director benchmark (run as root through `perf/director_bench.sh`).
//!
//! One lab, one run, interleaved: three servers running headroomd with a
//! TCP and a UDP VIP service (node 1 owns the VIP), one client.
//!
//! * Established-flow packet rate: 64 UDP flows from the client, blasted
//!   for a few seconds, (a) straight to server 2's host address (plain
//!   forwarding through one worker) and (b) to the VIP (placement on the
//!   owner, then local delivery or encapsulation + decapsulation on the
//!   serving node). Reported: datagrams sent and received per second, and
//!   the CPU time the owner's / server 2's worker spent per frame it
//!   handled (from the thread's `se.sum_exec_runtime`: /proc/stat
//!   under-reports softirq work in these guests, user-space thread time is
//!   accurate).
//! * New connections per second: parallel connect / GET / close loops
//!   against the VIP and against server 2's host address directly.
//! * Owner failover: SIGKILL the owner's daemon and time until the next
//!   owner answers an ARP request for the VIP.
//!
//! Usage: `director_bench [path/to/headroomd] [seconds]`.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use headroom::{
    ctl::{call, Request, Response},
    status::Status,
};
use headroom_lab::{arp_probe, run_in_ns, Lab, ServerConfig};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 100, 1);
const WEB: u16 = 80;
const UDP_PORT: u16 = 9000;
const FLOWS: u16 = 64;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let daemon = PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| "target/release/headroomd".into()),
    );
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4);
    let dur = Duration::from_secs(secs);
    if !daemon.exists() {
        bail!("{} not found (build with --release)", daemon.display());
    }
    let mut lab = Lab::up(3, 1)?;
    let dir = std::env::temp_dir().join(format!("{}-dbench", lab.tag));
    std::fs::create_dir_all(&dir)?;
    let key = dir.join("pool.key");
    headroom_config::write_key_file(&key, b"director-bench-pool-key-0123456789")?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut udp_counters = Vec::new();
    for s in lab.servers.clone() {
        sh(
            &lab,
            &s.host_ns,
            &format!(
                "ip addr add {VIP}/32 dev lo && sysctl -qw net.ipv4.conf.all.arp_ignore=1 \
                 net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.{h}.arp_ignore=1 \
                 net.ipv4.conf.{h}.arp_announce=2",
                h = s.host_if
            ),
        )?;
        http_app(&s.host_ns, s.id, stop.clone())?;
        udp_counters.push(udp_sink(&s.host_ns, stop.clone())?);
    }
    let c = lab.clients[0].clone();
    let mut socks = Vec::new();
    for i in 0..3 {
        let s = lab.servers[i].clone();
        let sock = dir.join(format!("s{}.sock", s.id));
        let cfg = config(&lab, s.id, &sock, &key)?;
        socks.push(lab.start_headroomd(&daemon, i, &dir, &cfg)?);
    }
    wait(Duration::from_secs(20), || {
        socks.iter().all(|s| {
            status(s).ok().and_then(|st| st.director).is_some_and(|d| {
                d.ready
                    && d.nodes.iter().all(|n| n.mac.is_some())
                    && d.service("web")
                        .is_some_and(|w| w.owner == Some(1) && w.serving == vec![1, 2, 3])
            })
        })
    })
    .context("pool did not become ready")?;
    let pid = |lab: &mut Lab, i: u16| -> Result<u32> {
        Ok(lab.child(&format!("headroomd-{i}")).context("daemon")?.id())
    };
    let (pid1, pid2) = (pid(&mut lab, 1)?, pid(&mut lab, 2)?);
    let host2 = lab.servers[1].host_ip;

    println!("# director benchmark: 3 servers, 1 worker each, {secs} s per measurement");
    println!("## established UDP flows ({FLOWS} flows, 64-byte payload)");
    for round in 0..2 {
        for (name, dst, watch) in [
            ("plain forwarding (to host 2)", host2, (pid2, 1usize)),
            ("director (to the VIP)", VIP, (pid1, 0usize)),
        ] {
            let before: u64 = udp_counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
            let cpu0 = worker_runtime_ns(watch.0)?;
            let fr0 = frames(&socks[watch.1])?;
            let sent = blast(&c.ns, dst, dur)?;
            // Let the sinks drain.
            std::thread::sleep(Duration::from_millis(300));
            let after: u64 = udp_counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
            let cpu1 = worker_runtime_ns(watch.0)?;
            let fr1 = frames(&socks[watch.1])?;
            let got = after - before;
            let handled = (fr1 - fr0).max(1);
            println!(
                "round {round} {name:<30} sent {:>9.0}/s received {:>9.0}/s ({:5.1}% delivered), \
                 worker on node {}: {:.0} ns CPU per frame over {} frames",
                sent as f64 / dur.as_secs_f64(),
                got as f64 / dur.as_secs_f64(),
                100.0 * got as f64 / sent.max(1) as f64,
                watch.1 + 1,
                (cpu1 - cpu0) as f64 / handled as f64,
                handled
            );
        }
    }
    println!("## new TCP connections (connect, GET, close; 4 parallel clients)");
    for round in 0..2 {
        for (name, dst) in [("plain (host 2 directly)", host2), ("director (VIP)", VIP)] {
            let (ok, failed) = conn_rate(&c.ns, SocketAddrV4::new(dst, WEB), dur)?;
            println!(
                "round {round} {name:<24} {:>7.0} connections/s ({failed} failed)",
                ok as f64 / dur.as_secs_f64()
            );
        }
    }
    if let Some(st) = status(&socks[0])?.director {
        let mut out = String::new();
        st.render_text(&mut out);
        println!("## owner's director status\n{out}");
    }
    println!("## owner failover");
    let mac2 = status(&socks[1])?
        .director
        .and_then(|d| headroom_config::vip::parse_mac(&d.local_mac))
        .context("node 2 MAC")?;
    let mut d1 = lab.forget("headroomd-1").context("daemon 1")?;
    d1.kill()?;
    let t0 = Instant::now();
    let _ = d1.wait();
    let mut took = None;
    while t0.elapsed() < Duration::from_secs(10) {
        if arp_probe(&c.ns, c.ip, VIP, Duration::from_millis(50))?.contains(&mac2) {
            took = Some(t0.elapsed());
            break;
        }
    }
    match took {
        Some(t) => println!(
            "node 2 answers ARP for the VIP {:.0} ms after node 1's daemon was killed \
             (failure_timeout = 600 ms)",
            t.as_secs_f64() * 1000.0
        ),
        None => println!("no new owner within 10 s"),
    }
    stop.store(true, Ordering::Relaxed);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn config(lab: &Lab, me: u16, sock: &Path, key: &Path) -> Result<String> {
    let s = &lab.servers[usize::from(me) - 1];
    let hosts: String = lab
        .servers
        .iter()
        .map(|p| {
            format!(
                "[[director.hosts]]\nnode = {}\naddress = \"{}\"\n",
                p.id, p.host_ip
            )
        })
        .collect();
    Ok(ServerConfig::new(s, sock)
        .pool(s, &lab.servers, key)
        .merge(&format!(
            r#"
[exchange]
failure_timeout = "600ms"

[director]
{hosts}
[[vip]]
name = "web"
vip = "{VIP}"
protocol = "tcp"
ports = [{WEB}]

[[vip]]
name = "udp"
vip = "{VIP}"
protocol = "udp"
ports = [{UDP_PORT}]
"#
        ))?
        .render())
}

fn sh(lab: &Lab, ns: &str, script: &str) -> Result<()> {
    let out = lab.command(ns, "sh").arg("-c").arg(script).output()?;
    if !out.status.success() {
        bail!("{script}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn status(sock: &Path) -> Result<Status> {
    match call(sock, &Request::Status)? {
        Response::Status(s) => Ok(*s),
        other => bail!("unexpected answer {other:?}"),
    }
}

fn wait(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<()> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Frames the node's workers received (both sides).
fn frames(sock: &Path) -> Result<u64> {
    Ok(status(sock)?
        .workers
        .iter()
        .map(|w| w.rx_packets[0] + w.rx_packets[1])
        .sum())
}

/// CPU time of the daemon's worker thread, ns.
fn worker_runtime_ns(pid: u32) -> Result<u64> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let t = t?.path();
        let comm = std::fs::read_to_string(t.join("comm")).unwrap_or_default();
        if comm.trim() == "hr-worker-0" {
            let sched = std::fs::read_to_string(t.join("sched"))?;
            for l in sched.lines() {
                if let Some(v) = l.strip_prefix("se.sum_exec_runtime") {
                    let ms: f64 = v.trim_start_matches([' ', ':']).trim().parse()?;
                    return Ok((ms * 1e6) as u64);
                }
            }
        }
    }
    bail!("no worker thread in {pid}")
}

fn http_app(ns: &str, id: u16, stop: Arc<AtomicBool>) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_string();
    std::thread::spawn(move || {
        let _ = run_in_ns(&ns, move || {
            let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, WEB)).expect("bind");
            l.set_nonblocking(true).expect("nonblocking");
            let _ = tx.send(());
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        std::thread::spawn(move || {
                            let _ = c.set_nonblocking(false);
                            let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
                            let mut b = [0u8; 512];
                            let mut req = Vec::new();
                            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                                match c.read(&mut b) {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => req.extend_from_slice(&b[..n]),
                                }
                            }
                            let body = format!("server={id}\n");
                            let _ = c.write_all(
                                format!(
                                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                                    body.len()
                                )
                                .as_bytes(),
                            );
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(5))?;
    Ok(())
}

fn udp_sink(ns: &str, stop: Arc<AtomicBool>) -> Result<Arc<AtomicU64>> {
    let count = Arc::new(AtomicU64::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    let (ns, c) = (ns.to_string(), count.clone());
    std::thread::spawn(move || {
        let _ = run_in_ns(&ns, move || {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, UDP_PORT)).expect("bind");
            let size: libc::c_int = 16 << 20;
            // SAFETY: setsockopt reads `size` (a c_int of the length passed).
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            s.set_read_timeout(Some(Duration::from_millis(100))).ok();
            let _ = tx.send(());
            let mut b = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if s.recv(&mut b).is_ok() {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(5))?;
    Ok(count)
}

/// Sends 64-byte datagrams round robin over `FLOWS` sockets for `dur`;
/// returns datagrams sent.
fn blast(ns: &str, dst: Ipv4Addr, dur: Duration) -> Result<u64> {
    Ok(run_in_ns(ns, move || {
        let socks: Vec<UdpSocket> = (0..FLOWS)
            .map(|_| {
                let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
                s.connect(SocketAddr::from((dst, UDP_PORT)))
                    .expect("connect");
                s
            })
            .collect();
        let payload = [0x42u8; 64];
        let end = Instant::now() + dur;
        let mut sent = 0u64;
        'outer: loop {
            for s in &socks {
                if s.send(&payload).is_ok() {
                    sent += 1;
                }
            }
            if sent % 4096 < u64::from(FLOWS) && Instant::now() >= end {
                break 'outer;
            }
        }
        sent
    })?)
}

/// Parallel connect / GET / close loops for `dur`: (completed, failed).
fn conn_rate(ns: &str, dst: SocketAddrV4, dur: Duration) -> Result<(u64, u64)> {
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (ns, ok, bad) = (ns.to_string(), ok.clone(), bad.clone());
            std::thread::spawn(move || {
                let _ = run_in_ns(&ns, move || {
                    let end = Instant::now() + dur;
                    while Instant::now() < end {
                        let r = (|| -> std::io::Result<()> {
                            let mut c = TcpStream::connect_timeout(
                                &SocketAddr::V4(dst),
                                Duration::from_secs(2),
                            )?;
                            c.set_read_timeout(Some(Duration::from_secs(2)))?;
                            c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                            let mut s = String::new();
                            c.read_to_string(&mut s)?;
                            if s.contains("server=") {
                                Ok(())
                            } else {
                                Err(std::io::ErrorKind::InvalidData.into())
                            }
                        })();
                        match r {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(_) => bad.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                });
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    Ok((ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed)))
}
