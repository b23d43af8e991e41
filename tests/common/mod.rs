//! Shared helpers for the system tests: a lab plus headroomd instances
//! started in it, with status queries through the real control socket.
#![allow(dead_code)]

pub mod slow;

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use headroom::{
    ctl::{call, Request, Response},
    status::Status,
};
use headroom_lab::{Lab, Server, ServerConfig};

/// Path of the daemon binary built for these tests.
pub const HEADROOMD: &str = env!("CARGO_BIN_EXE_headroomd");
/// Path of the client binary built for these tests.
pub const HEADROOMCTL: &str = env!("CARGO_BIN_EXE_headroomctl");

/// Runs `headroomctl --socket SOCKET ARGS...`: (exit code, stdout, stderr).
pub fn headroomctl(socket: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(HEADROOMCTL)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("running headroomctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fast-path setting the system tests run with: `HEADROOM_TEST_FAST_PATH`
/// (`on`, `off` or `auto`; default `off`). The test suite runs the traffic,
/// pipes, director and real-server tests once with each of `off` and `on`.
pub fn fast_path_mode() -> String {
    std::env::var("HEADROOM_TEST_FAST_PATH").unwrap_or_else(|_| "off".into())
}

/// The lab's server configuration, with the fast-path mode of this run and
/// `extra` merged in.
pub fn server_config(s: &Server, socket: &std::path::Path, extra: &str) -> String {
    ServerConfig::new(s, socket)
        .merge(&format!(
            "[workers]\nfast_path = \"{}\"\n",
            fast_path_mode()
        ))
        .and_then(|c| c.merge(extra))
        .unwrap_or_else(|e| panic!("test configuration: {e}"))
        .render()
}

/// Starts headroomd for server `idx` (0-based) with `config`; waits until
/// its control socket answers. The lab owns the process.
pub fn start_headroomd(lab: &mut Lab, dir: &TempDir, idx: usize, config: &str) -> PathBuf {
    lab.start_headroomd(std::path::Path::new(HEADROOMD), idx, &dir.0, config)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The daemon's status.
pub fn status(socket: &std::path::Path) -> Status {
    match call(socket, &Request::Status).expect("control socket") {
        Response::Status(s) => *s,
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether an XDP program is attached to `dev` in `ns`.
pub fn xdp_attached(lab: &Lab, ns: &str, dev: &str) -> bool {
    let out = lab
        .ip(ns, &["link", "show", "dev", dev])
        .expect("ip link show");
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

/// Runs a command in `ns` and returns stdout, panicking with stderr on failure.
pub fn sh(lab: &Lab, ns: &str, script: &str) -> String {
    let out = lab
        .command(ns, "sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `Command` for a program in `ns`.
pub fn in_ns(lab: &Lab, ns: &str, program: &str) -> Command {
    lab.command(ns, program)
}

/// TCP segments `ns` put on the wire: OutSegs + RetransSegs. (A receiver's
/// InSegs is no reference: with GRO on, as the fast path needs at the host
/// side, it counts aggregated skbs, not segments.)
pub fn tcp_sent(ns: &str) -> u64 {
    let c = headroom_lab::traffic::tcp_counters(ns).expect("read the TCP MIB");
    c.out_segs + c.retrans_segs
}

/// `[exchange] peers` listing every server of the lab.
pub fn exchange_peers(lab: &Lab) -> String {
    let peers: Vec<String> = lab
        .servers
        .iter()
        .map(|s| format!("\"{}@{}:7946\"", s.id, s.node_ip))
        .collect();
    peers.join(", ")
}

/// A pool of the lab's servers (`peers`, the pool `key`, optionally a
/// `rotation` key) sharing the 20 Mbit/s pipe `uplink` towards the
/// clients: job `gold` (UDP from port 7001) books 60 %, `bronze` (7002) 40 %.
pub fn pipe_config(
    peers: &str,
    key: &std::path::Path,
    rotation: Option<&std::path::Path>,
) -> String {
    let rotation = rotation
        .map(|r| format!("rotation_key_file = \"{}\"\n", r.display()))
        .unwrap_or_default();
    format!(
        "\n[exchange]\nkey_file = \"{key}\"\n{rotation}peers = [{peers}]\nfailure_timeout = \"1500ms\"\n{}",
        headroom_lab::gold_bronze_policy(60),
        key = key.display()
    )
}

/// The cgroup v1 cpu hierarchy the CPU tests use.
pub const CPU_MOUNT: &str = "/sys/fs/cgroup/cpu";

/// Pids in the cgroup `dir`, ascending.
pub fn procs_in(dir: &std::path::Path) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// Removes the named cgroup parents under [`CPU_MOUNT`] (their processes
/// moved back to the root first) on drop: a daemon killed by a failing
/// test leaves its cgroups behind.
pub struct CgroupCleanup(pub Vec<String>);

impl Drop for CgroupCleanup {
    fn drop(&mut self) {
        let root = std::path::Path::new(CPU_MOUNT);
        for parent in &self.0 {
            let p = root.join(parent);
            if !p.exists() {
                continue;
            }
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(&p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|d| d.is_dir())
                        .collect()
                })
                .unwrap_or_default();
            dirs.push(p.clone());
            for d in dirs {
                for pid in procs_in(&d) {
                    let _ = std::fs::write(root.join("cgroup.procs"), pid.to_string());
                }
                let _ = std::fs::remove_dir(&d);
            }
        }
    }
}

/// Waits until every daemon of `socks` sees `n` live members and enforces
/// the pool's policy (it runs the pool's current version: before that it
/// grants no bandwidth and sets no CPU share). Panics with the last status.
pub fn wait_pool_ready(socks: &[PathBuf], n: usize) {
    for sock in socks {
        let ok = wait_for(Duration::from_secs(15), || {
            let st = status(sock);
            let live = st.exchange.as_ref()?.live_nodes;
            let enforcing = st.policy.as_ref()?.enforcing;
            (live == n && enforcing).then_some(())
        });
        if ok.is_none() {
            let st = status(sock);
            panic!(
                "{}: pool of {n} not ready: exchange {:?}, policy {:?}",
                sock.display(),
                st.exchange.map(|e| e.members),
                st.policy
            );
        }
    }
}

/// From the client namespace `ns`, a node 99 with the wrong pool key tries
/// to join the node at `target` (its exchange address) for a second,
/// publishing an entry under each of `codes` (e.g. the policy's); then
/// waits until `socket`'s daemon counted more bad-MAC datagrams than
/// before, and returns its status.
pub fn forge_exchange(
    ns: &str,
    target: std::net::SocketAddr,
    codes: &[u8],
    socket: &std::path::Path,
) -> Status {
    use headroom_control::exchange::{Exchange, ExchangeConfig, Registration};
    use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
    let bad_before = status(socket).exchange.map_or(0, |e| e.bad_mac);
    let codes = codes.to_vec();
    headroom_lab::run_in_ns(ns, move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 7946)).expect("forger socket");
        let me = SocketAddr::from((Ipv4Addr::new(10, 200, 2, 1), 7946));
        let mut cfg = ExchangeConfig::new(99, 1, me);
        cfg.seeds = vec![target];
        let now = headroom_clock::Timestamp::now();
        let mut ex = Exchange::new(cfg, b"not-the-pool-key-at-all-00000000", now);
        for code in codes {
            let reg = Registration {
                period_ticks: 1,
                max_size: 512,
                flags: 0,
            };
            ex.register(code, reg).expect("register");
            ex.set_local(now, code, &[0xff; 64]).expect("entry");
        }
        for k in 0..50u64 {
            ex.handle_timeout(now + Duration::from_millis(20 * k));
            while let Some(t) = ex.poll_transmit() {
                let _ = s.send_to(&t.bytes, target);
            }
        }
    })
    .expect("forger thread");
    wait_for(Duration::from_secs(3), || {
        let st = status(socket);
        (st.exchange.as_ref()?.bad_mac > bad_before).then_some(st)
    })
    .expect("forged datagrams counted")
}
