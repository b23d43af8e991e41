//! `headroom-lab soak`: a long run of a 3-server pool under mixed traffic
//! with the operator's routine faults, for leaks and drift that short tests
//! cannot see (perf/soak.sh; never in CI).
//!
//! Client 1 streams TCP to every server in turn (1 MB transfers, every byte
//! checked); client 2 sends UDP at a fixed rate to server 1 (counted exactly
//! by its job) and to servers 2 and 3. Every `--reload-every` each daemon's
//! configuration gains or loses a probe job and `headroomctl reload` applies
//! it; every `--restart-every` one peer's headroomd (servers 2 and 3 in turn,
//! never server 1, the exchange master whose counters are checked) is killed
//! with SIGKILL, left down past the failure timeout and started again. Every
//! `--sample-every` each headroomd's RSS and `headroomctl status --json` are
//! read. The report: RSS slope per node after the warm-up (least squares),
//! frame-ledger violations, the UDP job's count against what the client
//! sent, and failures the exchange declared beyond the restarts.
//!
//! SIGINT or SIGTERM ends the run early: the report is written for the time
//! run, and the lab is torn down as at the end.

use std::{
    io::Read,
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use headroom_lab::{run_in_ns, traffic, Lab, Server, ServerConfig};
use serde_json::Value;

/// What the soak does and for how long.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Seconds of traffic.
    pub duration: u64,
    /// Seconds between reloads.
    pub reload_every: u64,
    /// Seconds between peer restarts.
    pub restart_every: u64,
    /// Seconds between samples.
    pub sample_every: u64,
    /// Seconds of a daemon's life left out of its RSS slope.
    pub warmup: u64,
    /// Namespace prefix (`headroom-lab down --name` removes a leftover lab).
    pub name: String,
    /// Report directory (a dated folder is made in it).
    pub out: PathBuf,
    /// `[workers] fast_path` of every daemon.
    pub fast_path: String,
    /// Where to copy every daemon's log at the end (None: nowhere).
    pub logs: Option<PathBuf>,
}

/// Every job of the soak, merged into the lab's server configuration.
const POLICY: &str = r#"
[[job]]
name = "soak-udp"
[[job.flow]]
protocol = "udp"
local_port = "5001"

[[job]]
name = "soak-udp-peers"
[[job.flow]]
protocol = "udp"
local_port = "6001"

[[job]]
name = "soak-tcp"
[[job.flow]]
protocol = "tcp"
local_port = "8080"
"#;

/// The job each reload adds or removes (no traffic matches it).
const PROBE: &str = r#"
[[job]]
name = "soak-reload-probe"
[[job.flow]]
protocol = "udp"
local_port = "9999"
"#;

/// The job each policy apply adds or removes (the pool's jobs come from its
/// policy, so only an apply changes them; a reload still exercises the
/// node-file path).
const POLICY_PROBE: &str = r#"
[[job]]
name = "soak-policy-probe"
[[job.flow]]
protocol = "udp"
local_port = "9998"
"#;

const UDP_PPS: u64 = 1000;
const UDP_PEER_PPS: u64 = 500;
const UDP_PAYLOAD: usize = 512;
const TCP_BYTES: u64 = 1_000_000;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT and SIGTERM end the run early (the report and teardown follow).
fn catch_signals() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { sigaction(s, &act) }.context("installing the signal handler")?;
    }
    Ok(())
}

/// One headroomd process of a node: when it started, its samples.
#[derive(Debug, Default)]
struct Life {
    /// Seconds into the run it started (0 for the first).
    start: f64,
    /// (seconds into the run, RSS kB).
    rss: Vec<(f64, f64)>,
    /// (seconds into the run, RSS kB less what SQLite holds): SQLite's
    /// page cache grows with the history file up to its bound (4 MiB).
    rss_less_sqlite: Vec<(f64, f64)>,
    /// Highest frame-ownership violation count seen (sum over workers).
    violations: u64,
    /// Samples in which a worker's frames did not add up.
    unbalanced: u64,
    /// Exchange failures it declared (its counter starts at 0).
    failures: u64,
    /// Restarts of other nodes while it lived (each should be one failure).
    others_restarted: u64,
}

struct Node {
    server: Server,
    idx: usize,
    sock: PathBuf,
    probe: bool,
    lives: Vec<Life>,
}

impl Node {
    fn child(&self) -> String {
        format!("headroomd-{}", self.server.id)
    }

    fn config(&self, servers: &[Server], key: &Path, fast_path: &str) -> Result<String> {
        let mut c = ServerConfig::new(&self.server, &self.sock)
            .pool(&self.server, servers, key)
            .merge(POLICY)?
            .merge(&format!("[workers]\nfast_path = \"{fast_path}\"\n"))?;
        if self.probe {
            c = c.merge(PROBE)?;
        }
        Ok(c.render())
    }
}

/// Counters of the traffic threads.
#[derive(Default)]
struct Counters {
    udp_sent: AtomicU64,
    udp_received: AtomicU64,
    udp_peer_sent: AtomicU64,
    tcp_ok: AtomicU64,
    tcp_failed: AtomicU64,
    tcp_bytes: AtomicU64,
    tcp_received: AtomicU64,
    tcp_corrupt: AtomicU64,
}

pub fn run(headroomd: &Path, headroomctl: &Path, o: &Opts) -> Result<()> {
    catch_signals()?;
    // A lab left by a run that was killed outright.
    let _ = Lab::down_tagged(&o.name);
    let mut lab = Lab::builder()
        .tag(&o.name)
        .servers(3)
        .clients(2)
        .up()
        .context("building the lab")?;
    let dir = std::env::temp_dir().join(format!("{}-soak", o.name));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let r = soak(&mut lab, &dir, headroomd, headroomctl, o);
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn soak(lab: &mut Lab, dir: &Path, headroomd: &Path, ctl: &Path, o: &Opts) -> Result<()> {
    let key = dir.join("pool.key");
    let mut key_bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key_bytes)?;
    headroom_config::write_key_file(&key, &key_bytes)?;
    let servers = lab.servers.clone();
    let mut nodes: Vec<Node> = servers
        .iter()
        .enumerate()
        .map(|(idx, s)| Node {
            server: s.clone(),
            idx,
            sock: dir.join(format!("s{}.sock", s.id)),
            probe: false,
            lives: vec![Life::default()],
        })
        .collect();
    for n in &nodes {
        lab.start_headroomd(
            headroomd,
            n.idx,
            dir,
            &n.config(&servers, &key, &o.fast_path)?,
        )?;
    }
    wait_for_pool(ctl, &nodes, Duration::from_secs(20))?;
    println!("soak: pool of 3 formed; {} s of traffic", o.duration);

    // Neighbours resolved before the counted traffic starts (a datagram
    // queued behind ARP may be dropped, and would not be the job's fault).
    for c in &lab.clients {
        for s in &servers {
            let _ = lab.exec(
                &c.ns,
                &[
                    "ping",
                    "-c",
                    "2",
                    "-i",
                    "0.2",
                    "-W",
                    "1",
                    &s.host_ip.to_string(),
                ],
            );
        }
    }

    let counters = Arc::new(Counters::default());
    let stop_traffic = Arc::new(AtomicBool::new(false));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    for s in &servers {
        threads.push(tcp_sink(&s.host_ns, 8080, &counters, &stop_traffic));
    }
    threads.push(udp_sink(
        &servers[0].host_ns,
        5001,
        &counters,
        &stop_traffic,
    ));
    let client_tcp = lab.clients[0].ns.clone();
    let client_udp = lab.clients[1].ns.clone();
    threads.push(udp_sender(
        &client_udp,
        vec![SocketAddr::from((servers[0].host_ip, 5001))],
        UDP_PPS,
        Arc::clone(&counters),
        |c| &c.udp_sent,
        &stop_traffic,
    ));
    threads.push(udp_sender(
        &client_udp,
        servers[1..]
            .iter()
            .map(|s| SocketAddr::from((s.host_ip, 6001)))
            .collect(),
        UDP_PEER_PPS,
        Arc::clone(&counters),
        |c| &c.udp_peer_sent,
        &stop_traffic,
    ));
    threads.push(tcp_client(
        &client_tcp,
        servers
            .iter()
            .map(|s| SocketAddr::from((s.host_ip, 8080)))
            .collect(),
        &counters,
        &stop_traffic,
    ));

    let t0 = Instant::now();
    let secs = |t: Instant| t.duration_since(t0).as_secs_f64();
    let run_for = Duration::from_secs(o.duration);
    let mut next_sample = t0;
    let mut next_reload = t0 + Duration::from_secs(o.reload_every);
    let mut next_restart = t0 + Duration::from_secs(o.restart_every);
    let (mut reloads_ok, mut reload_errors) = (0u64, Vec::<String>::new());
    let (mut applies_ok, mut round) = (0u64, 0usize);
    let base_policy =
        headroom_config::initial_policy(&nodes[0].config(&servers, &key, &o.fast_path)?)
            .context("the soak's node file has no policy")?;
    let policy_file = dir.join("soak-policy.toml");
    let mut restarts: Vec<(f64, u16, f64)> = Vec::new();
    loop {
        let now = Instant::now();
        if STOP.load(Ordering::Relaxed) || now >= t0 + run_for {
            break;
        }
        if now >= next_sample {
            next_sample += Duration::from_secs(o.sample_every);
            for n in &mut nodes {
                sample(lab, ctl, n, secs(now));
            }
        }
        if now >= next_reload {
            next_reload += Duration::from_secs(o.reload_every);
            for n in &mut nodes {
                n.probe = !n.probe;
                std::fs::write(
                    dir.join(format!("s{}.toml", n.server.id)),
                    n.config(&servers, &key, &o.fast_path)?,
                )?;
                match headroomctl(ctl, &n.sock, &["reload"]) {
                    Ok(_) => reloads_ok += 1,
                    Err(e) => reload_errors.push(format!(
                        "{:.0} s, server {}: {e:#}",
                        secs(Instant::now()),
                        n.server.id
                    )),
                }
            }
            // A pool policy version from each server in turn, with the probe
            // job added or removed: every server must make it active.
            round += 1;
            let doc = if round % 2 == 1 {
                format!("{base_policy}\n{POLICY_PROBE}")
            } else {
                base_policy.clone()
            };
            std::fs::write(&policy_file, doc)?;
            let n = &nodes[round % nodes.len()];
            let file = policy_file.display().to_string();
            match headroomctl(ctl, &n.sock, &["policy", "apply", &file, "-m", "soak"]) {
                Ok(_) => applies_ok += 1,
                Err(e) => reload_errors.push(format!(
                    "{:.0} s, policy apply on server {}: {e:#}",
                    secs(Instant::now()),
                    n.server.id
                )),
            }
        }
        if now >= next_restart {
            next_restart += Duration::from_secs(o.restart_every);
            let victim = 1 + restarts.len() % 2;
            let t_kill = secs(Instant::now());
            let name = nodes[victim].child();
            if let Some(mut c) = lab.forget(&name) {
                let _ = c.kill();
                let _ = c.wait();
            }
            // The restart writes a new log: keep this life's.
            let id = nodes[victim].server.id;
            let _ = std::fs::rename(
                dir.join(format!("s{id}.log")),
                dir.join(format!("s{id}.life{}.log", nodes[victim].lives.len())),
            );
            for (i, n) in nodes.iter_mut().enumerate() {
                if i != victim {
                    n.lives.last_mut().expect("a life").others_restarted += 1;
                }
            }
            // Down past the failure timeout (2 s), so every peer sees it fail.
            std::thread::sleep(Duration::from_secs(3));
            let cfg = nodes[victim].config(&servers, &key, &o.fast_path)?;
            let t_start = Instant::now();
            lab.start_headroomd(headroomd, victim, dir, &cfg)
                .with_context(|| format!("restarting headroomd {}", victim + 1))?;
            nodes[victim].lives.push(Life {
                start: secs(t_start),
                ..Life::default()
            });
            restarts.push((
                t_kill,
                nodes[victim].server.id,
                secs(Instant::now()) - t_kill,
            ));
            println!(
                "soak: {t_kill:.0} s: server {} killed and restarted",
                victim + 1
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let ran = secs(Instant::now());
    let interrupted = STOP.load(Ordering::Relaxed);
    stop_traffic.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    // Counters reach the status within a publish interval (100 ms).
    std::thread::sleep(Duration::from_secs(2));
    let mut udp_counted = None;
    for n in &mut nodes {
        sample(lab, ctl, n, ran);
        if n.idx == 0 {
            udp_counted = status(ctl, &n.sock).ok().and_then(|st| {
                st["jobs"]
                    .as_array()?
                    .iter()
                    .find(|j| j["name"] == "soak-udp")?["packets_in"]
                    .as_u64()
            });
        }
    }
    let report = Report {
        opts: o,
        ran,
        interrupted,
        nodes: &nodes,
        counters: &counters,
        udp_counted,
        reloads_ok,
        applies_ok,
        reload_errors: &reload_errors,
        restarts: &restarts,
    };
    let (md, ok) = report.render();
    if let Some(logs) = &o.logs {
        std::fs::create_dir_all(logs)?;
        for e in std::fs::read_dir(dir)?.flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                std::fs::copy(e.path(), logs.join(e.file_name()))?;
            }
        }
    }
    println!("{md}");
    let date = Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let out = o.out.join(date);
    std::fs::create_dir_all(&out)?;
    let path = out.join("soak.md");
    std::fs::write(&path, &md)?;
    println!("report: {}", path.display());
    if !ok {
        bail!("the soak found problems (see the report)");
    }
    Ok(())
}

/// Runs `headroomctl -s sock ARGS`, returning its standard output.
fn headroomctl(ctl: &Path, sock: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(ctl)
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .with_context(|| format!("running {}", ctl.display()))?;
    if !out.status.success() {
        bail!(
            "headroomctl {} exited {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `headroomctl status --json`.
fn status(ctl: &Path, sock: &Path) -> Result<Value> {
    let s = headroomctl(ctl, sock, &["status", "--json"])?;
    serde_json::from_str(&s).context("parsing headroomctl status --json")
}

fn wait_for_pool(ctl: &Path, nodes: &[Node], within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let formed = nodes.iter().all(|n| {
            status(ctl, &n.sock).ok().is_some_and(|st| {
                st["exchange"]["members"].as_array().is_some_and(|m| {
                    m.iter()
                        .filter(|m| m["state"] == "alive" || m["state"] == "self")
                        .count()
                        == nodes.len()
                })
            })
        });
        if formed {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the pool did not form within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// RSS of `pid`, kB (VmRSS of /proc/PID/status).
fn rss_kb(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// One sample of node `n`'s current daemon: its RSS, its frame ledger and
/// its exchange failures.
fn sample(lab: &mut Lab, ctl: &Path, n: &mut Node, t: f64) {
    let pid = lab.child(&n.child()).map(|c| c.id());
    let life = n.lives.last_mut().expect("a life");
    let kb = pid.and_then(rss_kb);
    if let Some(kb) = kb {
        life.rss.push((t, kb));
    }
    let Ok(st) = status(ctl, &n.sock) else { return };
    if let (Some(kb), Some(sq)) = (kb, st["memory"]["sqlite_bytes"].as_u64()) {
        life.rss_less_sqlite.push((t, kb - sq as f64 / 1024.0));
    }
    let mut violations = 0;
    for w in st["workers"].as_array().into_iter().flatten() {
        violations += w["frame_violations"].as_u64().unwrap_or(0);
        if w["frames_accounted"] != w["frames_total"] {
            life.unbalanced += 1;
        }
    }
    life.violations = life.violations.max(violations);
    if let Some(f) = st["exchange"]["failures"].as_u64() {
        life.failures = f;
    }
}

/// Least-squares slope of (seconds, kB) in kB per minute.
fn slope_kb_per_min(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx * 60.0)
}

/// A persistent TCP server in `ns` on `port` that checks every byte of
/// every connection against [`traffic::pattern_byte`].
fn tcp_sink(ns: &str, port: u16, c: &Arc<Counters>, stop: &Arc<AtomicBool>) -> JoinHandle<()> {
    let (ns, c, stop) = (ns.to_string(), Arc::clone(c), Arc::clone(stop));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = run_in_ns(&ns, move || {
            let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind the TCP sink");
            l.set_nonblocking(true).expect("non-blocking listener");
            let _ = ready_tx.send(());
            let mut readers: Vec<JoinHandle<()>> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // A finished thread keeps its stack mapped until joined (an
                // hour of transfers would exhaust vm.max_map_count).
                readers.retain(|r| !r.is_finished());
                match l.accept() {
                    Ok((mut s, _)) => {
                        let c = Arc::clone(&c);
                        readers.push(std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            s.set_read_timeout(Some(Duration::from_secs(30))).ok();
                            let mut buf = vec![0u8; 65536];
                            let mut at = 0u64;
                            while let Ok(n) = s.read(&mut buf) {
                                if n == 0 {
                                    break;
                                }
                                let bad = buf[..n]
                                    .iter()
                                    .enumerate()
                                    .filter(|(k, b)| **b != traffic::pattern_byte(at + *k as u64))
                                    .count();
                                at += n as u64;
                                c.tcp_received.fetch_add(n as u64, Ordering::Relaxed);
                                c.tcp_corrupt.fetch_add(bad as u64, Ordering::Relaxed);
                            }
                            let _ = s.shutdown(std::net::Shutdown::Both);
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            for r in readers {
                let _ = r.join();
            }
        });
    });
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    h
}

/// Counts datagrams arriving in `ns` on `port` until `stop`.
fn udp_sink(ns: &str, port: u16, c: &Arc<Counters>, stop: &Arc<AtomicBool>) -> JoinHandle<()> {
    let (ns, c, stop) = (ns.to_string(), Arc::clone(c), Arc::clone(stop));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = run_in_ns(&ns, move || {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind the UDP sink");
            let _ = nix::sys::socket::setsockopt(
                &s,
                nix::sys::socket::sockopt::RcvBufForce,
                &(8 << 20),
            );
            s.set_read_timeout(Some(Duration::from_millis(200))).ok();
            let _ = ready_tx.send(());
            let mut buf = [0u8; 2048];
            let mut quiet_since: Option<Instant> = None;
            loop {
                match s.recv(&mut buf) {
                    Ok(_) => {
                        c.udp_received.fetch_add(1, Ordering::Relaxed);
                        quiet_since = None;
                    }
                    Err(_) if stop.load(Ordering::Relaxed) => {
                        // The last datagrams in flight, then done.
                        let q = *quiet_since.get_or_insert_with(Instant::now);
                        if q.elapsed() > Duration::from_millis(500) {
                            break;
                        }
                    }
                    Err(_) => {}
                }
            }
        });
    });
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    h
}

/// Sends `UDP_PAYLOAD`-byte datagrams from `ns` to `dsts` in turn at `pps`
/// until `stop`, counting each one the kernel took in `which(counters)`.
fn udp_sender(
    ns: &str,
    dsts: Vec<SocketAddr>,
    pps: u64,
    c: Arc<Counters>,
    which: fn(&Counters) -> &AtomicU64,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<()> {
    let (ns, stop) = (ns.to_string(), Arc::clone(stop));
    std::thread::spawn(move || {
        let _ = run_in_ns(&ns, move || {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind the UDP sender");
            let payload = vec![0xa5u8; UDP_PAYLOAD];
            let start = Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = start + Duration::from_secs_f64(i as f64 / pps as f64);
                if let Some(d) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
                if s.send_to(&payload, dsts[i as usize % dsts.len()]).is_ok() {
                    which(&c).fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        });
    })
}

/// TCP transfers of `TCP_BYTES` from `ns` to `dsts` in turn until `stop`.
fn tcp_client(
    ns: &str,
    dsts: Vec<SocketAddr>,
    c: &Arc<Counters>,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<()> {
    let (ns, c, stop) = (ns.to_string(), Arc::clone(c), Arc::clone(stop));
    std::thread::spawn(move || {
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let dst = dsts[i % dsts.len()];
            i += 1;
            match traffic::tcp_send(&ns, dst, TCP_BYTES) {
                Ok(Ok(n)) => {
                    c.tcp_ok.fetch_add(1, Ordering::Relaxed);
                    c.tcp_bytes.fetch_add(n, Ordering::Relaxed);
                }
                _ => {
                    c.tcp_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

struct Report<'a> {
    opts: &'a Opts,
    ran: f64,
    interrupted: bool,
    nodes: &'a [Node],
    counters: &'a Counters,
    udp_counted: Option<u64>,
    reloads_ok: u64,
    applies_ok: u64,
    reload_errors: &'a [String],
    restarts: &'a [(f64, u16, f64)],
}

impl Report<'_> {
    /// The Markdown report and whether the run was clean.
    fn render(&self) -> (String, bool) {
        let o = self.opts;
        let c = self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut ok = !self.interrupted;
        let mut md = format!(
            "# Soak\n\nCommand: `{}` (kernel {}, {} build, commit {}).\n\n\
             3 servers (pool with a key), 2 clients, one switch. Traffic: client 1 sends {} MB TCP \
             transfers to each server in turn (every byte checked at the receiver); client 2 sends \
             {UDP_PAYLOAD}-byte UDP datagrams at {UDP_PPS}/s to server 1 (job `soak-udp`) and at \
             {UDP_PEER_PPS}/s to servers 2 and 3. Every {} s each daemon's configuration gains or \
             loses a job and `headroomctl reload` applies it, and one server in turn applies a pool \
             policy version that adds or removes a job (`headroomctl policy apply`); every {} s servers 2 and 3 in turn \
             are killed (SIGKILL), left down 3 s (past the 2 s failure timeout) and started again; \
             every {} s each headroomd's RSS and `headroomctl status --json` are sampled. \
             `[workers] fast_path = \"{}\"`.\n\n\
             Ran {:.0} s of {} s{}.\n\n",
            std::env::args().collect::<Vec<_>>().join(" "),
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim(),
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            headroom_buildinfo::COMMIT,
            TCP_BYTES / 1_000_000,
            o.reload_every,
            o.restart_every,
            o.sample_every,
            o.fast_path,
            self.ran,
            o.duration,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
        );
        md.push_str(&format!(
            "## RSS\n\nSlope: least squares over each daemon's samples from {} s after its start \
             (its longest life when it was restarted). The last column leaves out what \
             SQLite holds (`memory.sqlite_bytes` in the status: the history store's page cache, \
             which grows with the file up to its 4 MiB bound).\n\n\
             | server | lives | samples used | RSS at warm-up end (kB) | RSS at end (kB) | max RSS (kB) | slope (kB/min) | slope without SQLite (kB/min) |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|\n",
            o.warmup
        ));
        for n in self.nodes {
            let warm = |l: &Life, pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
                pts.iter()
                    .copied()
                    .filter(|p| p.0 - l.start >= o.warmup as f64)
                    .collect()
            };
            let longest = n.lives.iter().max_by_key(|l| warm(l, &l.rss).len());
            let best = longest.map(|l| warm(l, &l.rss)).unwrap_or_default();
            let less = longest
                .map(|l| warm(l, &l.rss_less_sqlite))
                .unwrap_or_default();
            let max = n
                .lives
                .iter()
                .flat_map(|l| l.rss.iter().map(|p| p.1))
                .fold(0.0f64, f64::max);
            let end = n
                .lives
                .last()
                .and_then(|l| l.rss.last())
                .map_or(0.0, |p| p.1);
            let slope = |pts: &[(f64, f64)]| {
                slope_kb_per_min(pts).map_or("n/a (too short after the warm-up)".into(), |s| {
                    format!("{s:+.1}")
                })
            };
            let (slope, less) = (slope(&best), slope(&less));
            md.push_str(&format!(
                "| {} | {} | {} | {} | {end:.0} | {max:.0} | {slope} | {less} |\n",
                n.server.id,
                n.lives.len(),
                best.len(),
                best.first().map_or("-".into(), |p| format!("{:.0}", p.1)),
            ));
        }
        let violations: u64 = self
            .nodes
            .iter()
            .flat_map(|n| &n.lives)
            .map(|l| l.violations)
            .sum();
        let unbalanced: u64 = self
            .nodes
            .iter()
            .flat_map(|n| &n.lives)
            .map(|l| l.unbalanced)
            .sum();
        ok &= violations == 0 && unbalanced == 0;
        md.push_str(&format!(
            "\n## Frame ledger\n\nOwnership violations (sum of `frame_violations`, every worker, \
             every daemon): **{violations}**. Samples with a worker whose frames did not add up \
             (`frames_accounted` != `frames_total`): **{unbalanced}**.\n"
        ));
        let sent = get(&c.udp_sent);
        let exact = self.udp_counted == Some(sent);
        ok &= exact;
        md.push_str(&format!(
            "\n## Job counter exactness\n\nUDP datagrams client 2 sent to server 1: {sent}; \
             counted by server 1's job `soak-udp` (packets in): {}; received by server 1's host \
             socket: {}. **{}**.\n",
            self.udp_counted
                .map_or("unreadable".into(), |n| n.to_string()),
            get(&c.udp_received),
            if exact {
                "exact".to_string()
            } else {
                format!(
                    "NOT exact ({:+})",
                    self.udp_counted.unwrap_or(0) as i64 - sent as i64
                )
            }
        ));
        md.push_str(
            "\n## Exchange failures\n\nEach restart should be declared failed once by every \
             daemon that lived through it; more is a false failure.\n\n\
             | server | daemon (life) | failures declared | restarts of others it lived through | false failures | missed |\n\
             |---:|---:|---:|---:|---:|---:|\n",
        );
        let mut false_total = 0;
        for n in self.nodes {
            for (i, l) in n.lives.iter().enumerate() {
                let f = l.failures.saturating_sub(l.others_restarted);
                let missed = l.others_restarted.saturating_sub(l.failures);
                false_total += f;
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {f} | {missed} |\n",
                    n.server.id,
                    i + 1,
                    l.failures,
                    l.others_restarted
                ));
            }
        }
        ok &= false_total == 0;
        md.push_str(&format!("\nFalse failures in all: **{false_total}**.\n"));
        md.push_str("\n## Faults injected\n\n");
        let restarts: Vec<String> = self
            .restarts
            .iter()
            .map(|(t, id, took)| format!("{t:.0} s server {id} (back in {took:.1} s)"))
            .collect();
        md.push_str(&format!(
            "Restarts: {} ({}). Reloads applied: {}; policy versions active on every server: \
             {}; refused or failed: {}{}.\n",
            self.restarts.len(),
            if restarts.is_empty() {
                "none".into()
            } else {
                restarts.join(", ")
            },
            self.reloads_ok,
            self.applies_ok,
            self.reload_errors.len(),
            if self.reload_errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.reload_errors.join("; "))
            }
        ));
        ok &= self.reload_errors.is_empty();
        let corrupt = get(&c.tcp_corrupt);
        ok &= corrupt == 0;
        md.push_str(&format!(
            "\n## Traffic\n\nTCP: {} transfers complete, {} failed (a transfer to a server whose \
             daemon was down, or that timed out), {} bytes sent in complete transfers, {} bytes \
             received, {corrupt} corrupt. UDP to servers 2 and 3: {} datagrams.\n",
            get(&c.tcp_ok),
            get(&c.tcp_failed),
            get(&c.tcp_bytes),
            get(&c.tcp_received),
            get(&c.udp_peer_sent),
        ));
        md.push_str(&format!(
            "\n**Verdict: {}** (ledger clean, job count exact, no false failure, every reload \
             and policy apply done, no corrupt byte{}).\n",
            if ok { "PASS" } else { "FAIL" },
            if self.interrupted {
                "; an interrupted run never passes"
            } else {
                ""
            }
        ));
        (md, ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_is_least_squares_in_kb_per_minute() {
        // 2 kB per 10 s: 12 kB/min, whatever the offset.
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64 * 10.0, 5000.0 + i as f64 * 2.0))
            .collect();
        assert!((slope_kb_per_min(&pts).unwrap() - 12.0).abs() < 1e-9);
        // Noise around a flat line: about 0.
        let flat = [(0.0, 10.0), (10.0, 12.0), (20.0, 10.0), (30.0, 12.0)];
        assert!(slope_kb_per_min(&flat).unwrap().abs() < 3.0);
        assert_eq!(slope_kb_per_min(&pts[..2]), None);
    }
}
