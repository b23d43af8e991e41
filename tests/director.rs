//! Flow director system tests: a pool of three servers behind real AF_XDP
//! workers, a VIP on every host stack, real TCP servers answering with
//! their server id, and real clients from many source addresses.
//!
//! Node 1 (the lowest id) owns the VIP: it answers ARP for it and places
//! every new flow, locally or encapsulated to the chosen server, which
//! decapsulates it for its host stack; replies go straight to the client.

mod common;

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::*;
use headroom::status::DirectorStatus;
use headroom_lab::{arp_probe, run_in_ns, Lab};

/// The service address (inside the lab subnet, so clients resolve it with ARP).
const VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 100, 1);
/// Plain (per-connection) service port.
const WEB: u16 = 80;
/// Sticky service port.
const STICKY: u16 = 8080;
/// Line echo service port (long-lived connections): answers every line
/// with `server=<id>`.
const ECHO: u16 = 7000;
/// Client source addresses added to the client's interface.
const CLIENT_ADDRS: u8 = 100;

/// Labs of this file run one at a time (each has three daemons on two cores).
static SERIAL: Mutex<()> = Mutex::new(());

fn client_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 3, 1 + (i % CLIENT_ADDRS as usize) as u8)
}

fn director_config(lab: &Lab, me: u16, key: &std::path::Path) -> String {
    let peers: Vec<String> = lab
        .servers
        .iter()
        .filter(|s| s.id != me)
        .map(|s| format!("\"{}@{}:7946\"", s.id, s.node_ip))
        .collect();
    let mut hosts = String::new();
    for s in &lab.servers {
        hosts.push_str(&format!(
            "[[director.hosts]]\nnode = {}\naddress = \"{}\"\n",
            s.id, s.host_ip
        ));
    }
    format!(
        r#"
[exchange]
peers = [{peers}]
key_file = "{key}"
failure_timeout = "600ms"

[director]
gratuitous_arp_interval = "50ms"
{hosts}
[[vip]]
name = "web"
vip = "{VIP}"
protocol = "tcp"
ports = [{WEB}]
weights = [{{ node = 2, weight = 2 }}]
health_check = {{ kind = "http", port = {WEB}, path = "/healthz", interval = "300ms", timeout = "250ms", rise = 1, fall = 2 }}

[[vip]]
name = "sticky"
vip = "{VIP}"
protocol = "tcp"
ports = [{STICKY}]
sticky_timeout = "60s"

[[vip]]
name = "echo"
vip = "{VIP}"
protocol = "tcp"
ports = [{ECHO}]
"#,
        peers = peers.join(", "),
        key = key.display()
    )
}

/// A tiny HTTP server in a host namespace: answers `server=<id>` on every
/// path, and 503 on /healthz while `down` is set.
struct App {
    stop: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn start_app(ns: &str, id: u16, ports: &[u16]) -> App {
    let stop = Arc::new(AtomicBool::new(false));
    let down = Arc::new(AtomicBool::new(false));
    for &port in ports {
        let (tx, rx) = std::sync::mpsc::channel();
        let (ns, stop, down) = (ns.to_string(), stop.clone(), down.clone());
        std::thread::spawn(move || {
            let _ = run_in_ns(&ns, move || {
                let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind app");
                l.set_nonblocking(true).expect("nonblocking");
                let _ = tx.send(());
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((c, _)) => {
                            let down = down.clone();
                            if port == ECHO {
                                std::thread::spawn(move || serve_lines(c, id));
                            } else {
                                std::thread::spawn(move || serve(c, id, &down));
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("app listening");
    }
    App { stop, down }
}

fn serve_lines(c: TcpStream, id: u16) {
    use std::io::BufRead;
    let _ = c.set_nonblocking(false);
    let Ok(mut w) = c.try_clone() else { return };
    let mut r = std::io::BufReader::new(c);
    let mut line = String::new();
    while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
        if w.write_all(format!("server={id}\n").as_bytes()).is_err() {
            return;
        }
        line.clear();
    }
}

fn serve(mut c: TcpStream, id: u16, down: &AtomicBool) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let health = req.starts_with(b"GET /healthz ");
    let resp = if health && down.load(Ordering::Relaxed) {
        "HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_string()
    } else {
        let body = format!("server={id}\n");
        format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let _ = c.write_all(resp.as_bytes());
}

/// A pool of three servers running headroomd with the VIP services, an
/// app on every host, and one client with `CLIENT_ADDRS` extra addresses.
struct Pool {
    apps: Vec<App>,
    socks: Vec<std::path::PathBuf>,
    dir: TempDir,
    lab: Lab,
}

fn pool() -> Pool {
    pool_with(|_, _| String::new())
}

/// [`pool`] with `extra(lab tag, node id)` merged into each server's
/// configuration.
fn pool_with(extra: impl Fn(&str, u16) -> String) -> Pool {
    let mut lab = Lab::up(3, 1).expect("lab");
    let dir = TempDir::new(&format!("{}-director", lab.tag));
    let mut apps = Vec::new();
    for s in lab.servers.clone() {
        sh(
            &lab,
            &s.host_ns,
            &format!(
                "ip addr add {VIP}/32 dev lo && \
                 sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
                 net.ipv4.conf.{h}.arp_ignore=1 net.ipv4.conf.{h}.arp_announce=2",
                h = s.host_if
            ),
        );
        apps.push(start_app(&s.host_ns, s.id, &[WEB, STICKY, ECHO]));
    }
    let c = lab.clients[0].clone();
    let batch = dir.path("client-addrs");
    let lines: String = (0..CLIENT_ADDRS as usize)
        .map(|i| format!("addr add {}/16 dev eth0\n", client_addr(i)))
        .collect();
    std::fs::write(&batch, lines).unwrap();
    lab.ip(&c.ns, &["-batch", &batch.display().to_string()])
        .expect("client addresses");
    let key = dir.path("pool.key");
    headroom_config::write_key_file(&key, b"director-test-pool-key-0123456789").unwrap();
    let mut socks = Vec::new();
    for i in 0..lab.servers.len() {
        let s = lab.servers[i].clone();
        let sock = dir.path(&format!("s{}.sock", s.id));
        let more = extra(&lab.tag, s.id);
        let cfg = server_config(
            &s,
            &sock,
            &format!("{}{more}", director_config(&lab, s.id, &key)),
        );
        socks.push(start_headroomd(&mut lab, &dir, i, &cfg));
    }
    let p = Pool {
        apps,
        socks,
        dir,
        lab,
    };
    // Ready: every node hears every other (its director is past the static
    // start-up view), knows every MAC, node 1 owns the VIP and sees all
    // three servers healthy.
    let mut last = String::new();
    let ok = wait_for(Duration::from_secs(20), || {
        for (i, sock) in p.socks.iter().enumerate() {
            let st = status(sock);
            let live = st.exchange.as_ref().map_or(0, |e| e.live_nodes);
            let d = st.director.expect("director status");
            last = format!("node {}: live {live}, {d:?}", i + 1);
            if live != 3 || !d.ready || d.nodes.iter().any(|n| n.mac.is_none()) {
                return None;
            }
            let web = d.service("web")?;
            if web.owner != Some(1) || web.serving != vec![1, 2, 3] {
                return None;
            }
        }
        Some(())
    });
    assert!(ok.is_some(), "pool not ready: {last}\n{}", p.logs());
    p
}

impl Pool {
    fn logs(&self) -> String {
        (1..=3)
            .map(|i| {
                let log = std::fs::read_to_string(self.dir.path(&format!("s{i}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                format!(
                    "--- s{i} ---\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn director(sock: &std::path::Path) -> DirectorStatus {
    status(sock).director.expect("director status")
}

/// Opens `n` connections to VIP:port from the client, the i-th from
/// `src(i)` (address, port; port 0 lets the kernel pick); returns the
/// server id that answered each (or the error). Fixed source ports make the
/// placements, and so the test, reproducible: the flow hash is fixed.
fn connect_many(
    ns: &str,
    port: u16,
    n: usize,
    src: impl Fn(usize) -> (Ipv4Addr, u16) + Send + 'static,
) -> Vec<Result<u16, String>> {
    run_in_ns(ns, move || {
        (0..n)
            .map(|i| request(src(i), SocketAddrV4::new(VIP, port)))
            .collect()
    })
    .expect("client thread")
}

/// Source `i` of a batch: one of the client addresses, a port from `base`
/// (distinct per batch, so no 4-tuple is ever reused).
fn numbered(base: u16) -> impl Fn(usize) -> (Ipv4Addr, u16) + Send + 'static {
    move |i| (client_addr(i), base + (i / CLIENT_ADDRS as usize) as u16)
}

fn request((src, sport): (Ipv4Addr, u16), dst: SocketAddrV4) -> Result<u16, String> {
    let mut c =
        connect_from(src, sport, dst).map_err(|e| format!("connect from {src}:{sport}: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    c.write_all(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut resp = String::new();
    c.read_to_string(&mut resp)
        .map_err(|e| format!("read from {src}: {e}"))?;
    let id = resp
        .split("server=")
        .nth(1)
        .and_then(|r| r.trim().parse().ok())
        .ok_or_else(|| format!("bad response {resp:?}"))?;
    Ok(id)
}

/// A TCP connection from a chosen local address.
fn connect_from(src: Ipv4Addr, sport: u16, dst: SocketAddrV4) -> std::io::Result<TcpStream> {
    // SAFETY: plain socket(2) call.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let tv = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: `tv` is a valid timeval of the length passed.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let sa = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let local = sa(src, sport);
    // SAFETY: `local` is a valid sockaddr_in of the length passed.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&local as *const libc::sockaddr_in).cast(),
            len,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    let remote = sa(*dst.ip(), dst.port());
    // SAFETY: `remote` is a valid sockaddr_in of the length passed.
    if unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&remote as *const libc::sockaddr_in).cast(),
            len,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(TcpStream::from(fd))
}

fn counts(results: &[Result<u16, String>]) -> [usize; 4] {
    let mut c = [0usize; 4];
    for r in results.iter().flatten() {
        c[usize::from(*r).min(3)] += 1;
    }
    c
}

fn failures(results: &[Result<u16, String>]) -> Vec<&String> {
    results.iter().filter_map(|r| r.as_ref().err()).collect()
}

#[test]
fn thousand_connections_spread_by_weight() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = pool();
    let client = p.lab.clients[0].ns.clone();
    const N: usize = 1000;
    let res = connect_many(&client, WEB, N, numbered(20000));
    let bad = failures(&res);
    assert!(
        bad.is_empty(),
        "{} of {N} failed, first {:?}\n{}",
        bad.len(),
        bad.first(),
        p.logs()
    );
    // Weights 1 : 2 : 1.
    let c = counts(&res);
    for (node, share) in [(1usize, 0.25f64), (2, 0.5), (3, 0.25)] {
        let want = share * N as f64;
        let got = c[node] as f64;
        assert!(
            (got - want).abs() <= 0.15 * want,
            "node {node}: {got} connections, expected {want} +-15% ({c:?})"
        );
    }
    // The owner placed them all, and its counters say so.
    let d = wait_for(Duration::from_secs(5), || {
        let d = director(&p.socks[0]);
        let web = d.service("web")?.clone();
        (web.new_flows >= N as u64).then_some((d, web))
    });
    let (d, web) = d.expect("owner counters");
    assert_eq!(web.placed_local + web.placed_remote, web.new_flows);
    for (node, n) in &web.placements {
        assert_eq!(
            *n as usize, c[*node as usize],
            "placements on {node} vs connections served ({:?})",
            web.placements
        );
    }
    assert!(d.counter("encapsulated") > 0);
    assert_eq!(d.counter("encap_too_big"), 0);
    assert_eq!(d.counter("no_peer"), 0);
    // The other servers decapsulated what the owner forwarded.
    for (i, sock) in p.socks.iter().enumerate().skip(1) {
        let d = director(sock);
        assert!(
            d.counter("decapsulated") >= c[i + 1] as u64,
            "node {} decapsulated {} for {} connections",
            i + 1,
            d.counter("decapsulated"),
            c[i + 1]
        );
        assert_eq!(d.counter("decap_foreign") + d.counter("decap_errors"), 0);
        assert_eq!(d.counter("vip_packets"), 0, "only the owner places flows");
    }
}

#[test]
fn same_client_address_sticks_to_one_server() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = pool();
    let client = p.lab.clients[0].ns.clone();
    const ADDRS: usize = 30;
    const EACH: usize = 4;
    // Address-major order: each address connects EACH times, interleaved
    // with the others, each time from its own fixed port. (Ports the kernel
    // picks on bind may repeat for an address: a SYN on a 4-tuple the owner
    // has pinned belongs to that pinned flow and is no new flow, so the
    // counters below would come up short.)
    let res = connect_many(&client, STICKY, ADDRS * EACH, |i| {
        (client_addr(i % ADDRS), 45000 + (i / ADDRS) as u16)
    });
    let bad = failures(&res);
    assert!(bad.is_empty(), "failures: {bad:?}");
    let mut seen = std::collections::BTreeSet::new();
    for a in 0..ADDRS {
        let servers: std::collections::BTreeSet<u16> = (0..EACH)
            .map(|k| *res[a + k * ADDRS].as_ref().unwrap())
            .collect();
        assert_eq!(
            servers.len(),
            1,
            "client {} reached {servers:?}",
            client_addr(a)
        );
        seen.extend(servers);
    }
    assert!(seen.len() >= 2, "all clients on {seen:?}");
    // The owner placed every connection, once; the first of each address
    // by Maglev, the others by its sticky entry.
    let sticky = wait_for(Duration::from_secs(5), || {
        let d = director(&p.socks[0]);
        let s = d.service("sticky")?.clone();
        (s.new_flows >= (ADDRS * EACH) as u64).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "sticky counters: {:?}",
            p.socks
                .iter()
                .map(|s| director(s).service("sticky").cloned())
                .collect::<Vec<_>>()
        )
    });
    assert_eq!(sticky.new_flows, (ADDRS * EACH) as u64, "{sticky:?}");
    assert_eq!(
        sticky.placed_local + sticky.placed_remote,
        sticky.new_flows,
        "{sticky:?}"
    );
    assert!(
        sticky.sticky_hits >= (ADDRS * (EACH - 1)) as u64,
        "sticky hits {}",
        sticky.sticky_hits
    );
}

#[test]
fn vip_arp_request_gets_exactly_one_answer_from_the_owner() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = pool();
    let c = p.lab.clients[0].clone();
    let owner = director(&p.socks[0]);
    assert_eq!(owner.owned_vips, vec![VIP.to_string()]);
    let owner_mac = headroom_config::vip::parse_mac(&owner.local_mac).expect("owner MAC in status");
    let before: Vec<DirectorStatus> = p.socks.iter().map(|s| director(s)).collect();
    for round in 0..3 {
        let replies = arp_probe(&c.ns, c.ip, VIP, Duration::from_millis(1500)).expect("ARP probe");
        assert_eq!(
            replies,
            vec![owner_mac],
            "round {round}: replies {replies:02x?}"
        );
    }
    // The owner answered, the other two suppressed the request; the owner
    // announced itself when it took the VIP.
    let ok = wait_for(Duration::from_secs(3), || {
        let after: Vec<DirectorStatus> = p.socks.iter().map(|s| director(s)).collect();
        let d = |i: usize, k: &str| after[i].counter(k) - before[i].counter(k);
        (d(0, "arp_answered") >= 3
            && d(1, "arp_suppressed_in") >= 3
            && d(2, "arp_suppressed_in") >= 3)
            .then_some(after)
    });
    let after = ok.expect("ARP counters");
    assert_eq!(after[1].counter("arp_answered"), 0);
    assert_eq!(after[2].counter("arp_answered"), 0);
    assert!(after[0].counter("arp_announced") >= 3);
    assert_eq!(after[1].counter("arp_announced"), 0);
}

#[test]
fn unhealthy_server_receives_no_new_flows() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = pool();
    let client = p.lab.clients[0].ns.clone();
    p.apps[2].down.store(true, Ordering::Relaxed);
    let web = wait_for(Duration::from_secs(5), || {
        let d = director(&p.socks[0]);
        let w = d.service("web")?.clone();
        (w.serving == vec![1, 2] && w.unhealthy == vec![3]).then_some(w)
    });
    assert!(web.is_some(), "node 3 never marked unhealthy");
    const N: usize = 300;
    let res = connect_many(&client, WEB, N, numbered(30000));
    let bad = failures(&res);
    assert!(bad.is_empty(), "failures: {bad:?}");
    let c = counts(&res);
    assert_eq!(c[3], 0, "unhealthy node 3 got flows: {c:?}");
    assert!(c[1] > 0 && c[2] > 0, "{c:?}");
    // Health comes back: node 3 serves again.
    p.apps[2].down.store(false, Ordering::Relaxed);
    let back = wait_for(Duration::from_secs(5), || {
        let d = director(&p.socks[0]);
        (d.service("web")?.serving == vec![1, 2, 3]).then_some(())
    });
    assert!(back.is_some(), "node 3 never came back");
    let res = connect_many(&client, WEB, N, numbered(31000));
    assert!(failures(&res).is_empty());
    assert!(counts(&res)[3] > 0);
}

/// One line over an echo connection: the server id that answered.
fn echo(s: &mut TcpStream) -> Result<u16, String> {
    s.write_all(b"ping\n").map_err(|e| e.to_string())?;
    echo_reply(s)
}

/// The answer to a line sent over an echo connection.
fn echo_reply(s: &mut TcpStream) -> Result<u16, String> {
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while !got.contains(&b'\n') {
        match s.read(&mut buf) {
            Ok(0) => return Err("closed".into()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let line = String::from_utf8_lossy(&got);
    line.trim()
        .strip_prefix("server=")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("bad line {line:?}"))
}

/// The client's neighbour entry for the VIP (MAC), if any.
fn client_neighbour(lab: &Lab, ns: &str) -> Option<[u8; 6]> {
    let out = sh(lab, ns, &format!("ip neigh show {VIP}"));
    let mut it = out.split_whitespace();
    it.by_ref().find(|w| *w == "lladdr")?;
    headroom_config::vip::parse_mac(it.next()?)
}

#[test]
fn owner_failover_new_owner_answers_arp_within_two_seconds() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut p = pool();
    let c = p.lab.clients[0].clone();
    let mac = |i: usize| {
        headroom_config::vip::parse_mac(&director(&p.socks[i]).local_mac).expect("node MAC")
    };
    let (mac1, mac2) = (mac(0), mac(1));
    assert_eq!(
        arp_probe(&c.ns, c.ip, VIP, Duration::from_millis(500)).expect("ARP probe"),
        vec![mac1]
    );
    // Traffic before the failure, so the client caches the old owner.
    let res = connect_many(&c.ns, WEB, 30, numbered(40000));
    assert!(failures(&res).is_empty(), "{:?}", failures(&res));
    assert_eq!(client_neighbour(&p.lab, &c.ns), Some(mac1));
    // Long-lived idle connections, open across the failover.
    let mut held = hold_echo(&c.ns, 24, 42000);

    // The owner's daemon dies.
    let mut d1 = p.lab.forget("headroomd-1").expect("daemon 1");
    d1.kill().expect("kill headroomd 1");
    let t0 = Instant::now();
    let _ = d1.wait();
    // A line sent to a surviving server inside the failover window goes to
    // the dead owner's MAC: its fail-open bridge must drop it (the VIP
    // guard), not hand it to its host, which would reset the connection.
    // The client retransmits; the new owner places it mid-flow.
    let (window, window_id) = {
        let i = held
            .iter()
            .position(|(_, id)| *id != 1)
            .expect("a connection to a survivor");
        held.swap_remove(i)
    };
    let mut window = window;
    window.write_all(b"ping\n").expect("send in the window");
    let answered = wait_for(Duration::from_secs(2), || {
        let r = arp_probe(&c.ns, c.ip, VIP, Duration::from_millis(100)).expect("ARP probe");
        (!r.is_empty()).then_some(r)
    });
    let took = t0.elapsed();
    let replies = answered.unwrap_or_else(|| panic!("no ARP answer within 2 s\n{}", p.logs()));
    assert_eq!(replies, vec![mac2], "new owner must answer, alone");
    assert!(took <= Duration::from_secs(2), "failover took {took:?}");
    eprintln!("owner failover: node 2 answers ARP {took:?} after node 1 died");

    // The survivors agree on the new owner; the client learned it from the
    // gratuitous ARP; new connections land on the surviving servers only.
    for sock in &p.socks[1..] {
        let st = wait_for(Duration::from_secs(2), || {
            let d = director(sock);
            let w = d.service("web")?.clone();
            (w.owner == Some(2) && w.serving == vec![2, 3]).then_some(())
        });
        assert!(st.is_some(), "{:?}", director(sock));
    }
    let learned = wait_for(Duration::from_secs(2), || {
        (client_neighbour(&p.lab, &c.ns) == Some(mac2)).then_some(())
    });
    assert!(
        learned.is_some(),
        "client still points the VIP at the old owner"
    );
    let res = connect_many(&c.ns, WEB, 200, numbered(41000));
    assert!(failures(&res).is_empty(), "{:?}", failures(&res));
    let n = counts(&res);
    assert_eq!(n[1], 0, "{n:?}");
    // Connections served by the survivors carry on: the new owner has no
    // conntrack for them but builds the same Maglev table, so their next
    // packet lands where the old owner sent them.
    let mut survivors = 0;
    for (mut s, id) in held {
        if id == 1 {
            continue;
        }
        assert_eq!(echo(&mut s), Ok(id), "connection to server {id} lost");
        survivors += 1;
    }
    assert!(survivors > 0);
    assert_eq!(
        echo_reply(&mut window),
        Ok(window_id),
        "a line sent to server {window_id} while the owner was dead\n{}",
        p.logs()
    );
    let guard = sh(
        &p.lab,
        &p.lab.servers[0].host_ns,
        "nft list table bridge headroom",
    );
    let dropped: u64 = guard
        .split("counter packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no guard counter in {guard}"));
    assert!(
        dropped >= 1,
        "the dead owner's guard dropped nothing: {guard}"
    );
    eprintln!("owner failover: the dead owner's VIP guard dropped {dropped} frames");
    let midflow = wait_for(Duration::from_secs(3), || {
        let m = director(&p.socks[1]).counter("midflow_placed");
        (m >= survivors).then_some(m)
    });
    assert!(
        midflow.is_some(),
        "midflow_placed {} for {survivors} surviving connections",
        director(&p.socks[1]).counter("midflow_placed")
    );
    assert!(n[2] > 0 && n[3] > 0, "{n:?}");
    assert!(director(&p.socks[1]).counter("arp_announced") >= 3);
    p.apps.clear();
}

#[test]
fn a_policy_drains_a_member_live_and_its_connections_stay() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let p = pool();
    let c = p.lab.clients[0].clone();
    // Long-lived connections to every server.
    let mut held = hold_echo(&c.ns, 30, 44000);
    assert!(
        held.iter().any(|(_, id)| *id == 2),
        "no connection on server 2"
    );

    // Server 3 drains server 2 from the echo service (weight 0).
    let cfg = std::fs::read_to_string(p.dir.path("s1.toml")).unwrap();
    let policy = headroom_config::initial_policy(&cfg).expect("initial policy");
    let echo_line = format!("ports = [{ECHO}]");
    assert!(policy.contains(&echo_line), "{policy}");
    let drained = policy.replace(
        &echo_line,
        &format!("{echo_line}\nweights = [{{ node = 2, weight = 0 }}]"),
    );
    let file = p.dir.path("drain.toml");
    std::fs::write(&file, &drained).unwrap();
    let (code, out, err) = headroomctl(
        &p.socks[2],
        &[
            "policy",
            "apply",
            &file.display().to_string(),
            "-m",
            "drain 2",
        ],
    );
    assert_eq!(code, 0, "{out}{err}\n{}", p.logs());
    assert!(
        out.contains("v2 active on 3 node(s)") && out.contains("vip echo: changed"),
        "{out}"
    );

    // Every established connection keeps its server, server 2's included.
    for (s, id) in &mut held {
        assert_eq!(
            echo(s).as_ref(),
            Ok(&*id),
            "a held connection moved or broke"
        );
    }
    // New connections avoid server 2.
    let res = echo_many(&c.ns, 200, numbered(46000));
    assert!(failures(&res).is_empty(), "{:?}", failures(&res));
    let n = counts(&res);
    assert_eq!(n[2], 0, "new flows on the drained server: {n:?}");
    assert!(n[1] > 0 && n[3] > 0, "{n:?}");

    // A second VIP service, added live on a new address.
    let vip2 = Ipv4Addr::new(10, 200, 100, 2);
    for s in p.lab.servers.clone() {
        sh(&p.lab, &s.host_ns, &format!("ip addr add {vip2}/32 dev lo"));
    }
    let added = format!(
        "{drained}\n[[vip]]\nname = \"echo2\"\nvip = \"{vip2}\"\nprotocol = \"tcp\"\nports = [{ECHO}]\n"
    );
    std::fs::write(&file, &added).unwrap();
    let (code, out, err) = headroomctl(
        &p.socks[1],
        &["policy", "apply", &file.display().to_string()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("vip echo2: added"), "{out}");
    let res = echo_many_to(&c.ns, vip2, 150, numbered(47000));
    assert!(failures(&res).is_empty(), "{:?}", failures(&res));
    let n2 = counts(&res);
    assert!(
        n2[1] > 0 && n2[2] > 0 && n2[3] > 0,
        "the new VIP on every server: {n2:?}"
    );
    for (s, id) in &mut held {
        assert_eq!(
            echo(s).as_ref(),
            Ok(&*id),
            "a held connection moved or broke"
        );
    }

    // Back to weight 1: server 2 takes new flows again; held ones stay.
    std::fs::write(&file, &policy).unwrap();
    let (code, out, err) = headroomctl(
        &p.socks[0],
        &["policy", "apply", &file.display().to_string()],
    );
    assert_eq!(code, 0, "{out}{err}");
    let res = echo_many(&c.ns, 200, numbered(48000));
    assert!(failures(&res).is_empty(), "{:?}", failures(&res));
    assert!(counts(&res)[2] > 0, "{:?}", counts(&res));
    for (s, id) in &mut held {
        assert_eq!(
            echo(s).as_ref(),
            Ok(&*id),
            "a held connection moved or broke"
        );
    }
}

/// `n` short echo connections (one line each) from the client, the i-th
/// from `src(i)`: the server id that answered each.
fn echo_many(
    ns: &str,
    n: usize,
    src: impl Fn(usize) -> (Ipv4Addr, u16) + Send + 'static,
) -> Vec<Result<u16, String>> {
    echo_many_to(ns, VIP, n, src)
}

/// [`echo_many`] to the echo port of `vip`.
fn echo_many_to(
    ns: &str,
    vip: Ipv4Addr,
    n: usize,
    src: impl Fn(usize) -> (Ipv4Addr, u16) + Send + 'static,
) -> Vec<Result<u16, String>> {
    run_in_ns(ns, move || {
        (0..n)
            .map(|i| {
                let (a, p) = src(i);
                let mut s = connect_from(a, p, SocketAddrV4::new(vip, ECHO))
                    .map_err(|e| format!("connect from {a}:{p}: {e}"))?;
                s.set_read_timeout(Some(Duration::from_secs(3)))
                    .map_err(|e| e.to_string())?;
                echo(&mut s)
            })
            .collect()
    })
    .expect("client thread")
}

#[test]
fn a_server_with_busy_cores_gets_fewer_new_connections() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        std::path::Path::new(CPU_MOUNT).join("cpu.shares").exists(),
        "no cgroup v1 cpu controller at {CPU_MOUNT}"
    );
    // Every server measures the CPU of its own namespace's processes; a
    // job "hog" takes whatever matches.
    let parent = |tag: &str, id: u16| format!("{tag}-dirhr-n{id}");
    let cpu = move |tag: &str, id: u16| {
        format!(
            "\n[cpu]\nbackend = \"cgroup-v1\"\ncgroup_parent = \"{}\"\nscope = \"netns\"\n\
             [[job]]\nname = \"hog\"\ncpu = {{ server_percent = 90 }}\n[[job.process]]\n\
             cmdline = \"* hrhog-{tag}\"\n",
            parent(tag, id)
        )
    };
    let p = pool_with(cpu);
    let tag = p.lab.tag.clone();
    let _cleanup = CgroupCleanup((1..=3).map(|id| parent(&tag, id)).collect());
    let c = p.lab.clients[0].clone();
    let before = counts(&echo_many(&c.ns, 300, numbered(50000)));
    eprintln!("idle servers: {before:?}");
    // A busy loop on server 2 (in its namespace, so only its scheduler
    // sees it), a core's worth of work.
    let s2 = p.lab.servers[1].clone();
    let mut hog = p
        .lab
        .command(&s2.ns, "sh")
        .args(["-c", "while :; do :; done", &format!("hrhog-{tag}")])
        .spawn()
        .expect("spawn the hog");
    let low = wait_for(Duration::from_secs(15), || {
        let st = status(&p.socks[0]);
        let n2 = st.pool.iter().find(|n| n.node == 2)?;
        (n2.cores > 0 && n2.headroom_percent < 70.0).then_some(n2.headroom_percent)
    });
    // Two rounds of smoothing after the summaries show it.
    std::thread::sleep(Duration::from_millis(1500));
    let after = counts(&echo_many(&c.ns, 300, numbered(52000)));
    let _ = hog.kill();
    let _ = hog.wait();
    eprintln!("server 2 busy ({low:?} % idle): {after:?}");
    let low = low.unwrap_or_else(|| {
        panic!(
            "server 2's headroom did not drop: {:?}",
            status(&p.socks[0]).pool
        )
    });
    assert!(low < 70.0);
    let peers = after[1].min(after[3]) as f64;
    assert!(
        // Its factor is at most 7 of 10 (headroom under 70%).
        (after[2] as f64) < 0.85 * peers,
        "the busy server got {} new connections, its peers {} and {}",
        after[2],
        after[1],
        after[3]
    );
}

/// `n` long-lived echo connections from the client (sources
/// `numbered(base)`), each with the server id that answered its first line.
fn hold_echo(ns: &str, n: usize, base: u16) -> Vec<(TcpStream, u16)> {
    run_in_ns(ns, move || {
        (0..n)
            .map(|i| {
                let (src, sport) = numbered(base)(i);
                let mut s = connect_from(src, sport, SocketAddrV4::new(VIP, ECHO)).expect("echo");
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let id = echo(&mut s).expect("first echo");
                (s, id)
            })
            .collect()
    })
    .expect("client")
}

/// Response times through the VIP: each connection is placed on one
/// server, whose worker sees the request decapsulated and the reply leave
/// its host directly; every request is timed by the server that answered
/// it, each server's median within 2 ms of the client's.
#[test]
fn response_times_are_measured_where_the_vip_is_served() {
    const SLOW: u16 = 9100;
    const SLEEP: Duration = Duration::from_millis(20);
    const CONNECTIONS: usize = 12;
    const REQUESTS: usize = 10;
    let p = pool_with(|_, _| {
        format!(
            "\n[[vip]]\nname = \"slow\"\nvip = \"{VIP}\"\nprotocol = \"tcp\"\nports = [{SLOW}]\n\
             [[job]]\nname = \"api\"\ngoal = {{ percentile = 90, within = \"50ms\" }}\n\
             [[job.flow]]\nprotocol = \"tcp\"\nlocal_port = \"{SLOW}\"\n"
        )
    });
    let servers: Vec<common::slow::SlowServer> = p
        .lab
        .servers
        .iter()
        .map(|s| common::slow::SlowServer::start(&s.host_ns, SLOW, SLEEP))
        .collect();
    let c = p.lab.clients[0].clone();
    let dst = std::net::SocketAddr::from((VIP, SLOW));
    let times = common::slow::timed_requests(&c.ns, dst, CONNECTIONS, REQUESTS);
    drop(servers);
    let client_p50 = common::slow::median(times);
    let n = (CONNECTIONS * REQUESTS) as u64;
    let mut last = Vec::new();
    let per_server = wait_for(Duration::from_secs(10), || {
        last = p
            .socks
            .iter()
            .map(|s| status(s).job("api").and_then(|j| j.response.clone()))
            .collect::<Vec<_>>();
        let answered: u64 = last.iter().flatten().map(|r| r.answered).sum();
        (answered == n).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("not every request measured once: {last:?}"));
    let mut serving = 0;
    for (i, r) in per_server.iter().enumerate() {
        let Some(r) = r.as_ref().filter(|r| r.answered > 0) else {
            continue;
        };
        serving += 1;
        let p50 = r.p50_ms.expect("a median");
        eprintln!(
            "server {}: {} requests, median {p50:.2} ms (client {client_p50:.2} ms), setup p50 {:?} ms",
            i + 1,
            r.answered,
            r.setup_p50_ms
        );
        assert_eq!(r.unanswered, 0, "server {}: {r:?}", i + 1);
        assert_eq!(r.requests, r.answered, "server {}: {r:?}", i + 1);
        assert_eq!(r.answered % REQUESTS as u64, 0, "whole connections");
        assert!(
            (p50 - client_p50).abs() <= 2.0,
            "server {}: median {p50:.2} ms, the client's {client_p50:.2} ms",
            i + 1
        );
    }
    assert!(serving >= 1);
}
