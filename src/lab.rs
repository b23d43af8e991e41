//! A lab of network namespaces that looks like a small server pool.
//!
//! ```text
//!   client ns ─┐                         ┌─ server ns (the NIC) ──────────────┐
//!   client ns ─┼── switch ns (bridge) ───┼─ outer ═╗ headroomd ╔═ inner ──────┼── host ns (apps)
//!              │                         │         ╚═ bump bridge ═╝ (node IP)│
//!              └── ... one per server ...└────────────────────────────────────┘
//! ```
//!
//! Each server namespace holds the two interfaces Headroom sits between:
//! `outer` (a port of the switch) and `inner` (a veth to the host namespace
//! where applications run). A kernel bridge (`bump`) joins them too: while
//! headroomd runs, its XDP program steers frames to the workers before the
//! bridge sees them; when it dies, the program detaches and the bridge
//! carries traffic (fail-open). The node's own address (gossip, management)
//! sits on `bump`.
//!
//! Every name carries a per-lab tag, so labs can run in parallel; dropping
//! the [`Lab`] kills what it started and deletes every namespace (and with
//! them every link), also when a test fails.

use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// Errors building or driving a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command could not be started.
    #[error("running {cmd}: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command exited with an error.
    #[error("{cmd} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Exit status.
        status: String,
        /// Its standard error.
        stderr: String,
    },
}

/// One server: its NIC namespace and its host namespace.
#[derive(Debug, Clone)]
pub struct Server {
    /// 1-based index, also the node id.
    pub id: u16,
    /// Namespace where headroomd runs (holds `outer`, `inner`, `bump`).
    pub ns: String,
    /// Namespace of the server's own stack and applications.
    pub host_ns: String,
    /// The node's own address (on `bump`).
    pub node_ip: Ipv4Addr,
    /// The host stack's address (behind headroomd).
    pub host_ip: Ipv4Addr,
}

/// A client attached to the switch.
#[derive(Debug, Clone)]
pub struct Client {
    /// 1-based index.
    pub id: u16,
    /// Its namespace.
    pub ns: String,
    /// Its address.
    pub ip: Ipv4Addr,
}

/// Name of the outer interface inside each server namespace.
pub const OUTER: &str = "outer";
/// Name of the inner interface inside each server namespace.
pub const INNER: &str = "inner";
/// Prefix length of the lab subnet (10.200.0.0/16).
pub const PREFIX: u8 = 16;

/// Address of server `i`'s node (gossip) interface.
pub fn node_ip(i: u16) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 0, i as u8)
}
/// Address of server `i`'s host stack.
pub fn host_ip(i: u16) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 1, i as u8)
}
/// Address of client `j`.
pub fn client_ip(j: u16) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 2, j as u8)
}

/// A running lab. Dropping it tears everything down.
pub struct Lab {
    /// Unique tag in every name.
    pub tag: String,
    /// The switch namespace.
    pub switch_ns: String,
    /// Servers, in id order.
    pub servers: Vec<Server>,
    /// Clients, in id order.
    pub clients: Vec<Client>,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    keep: bool,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Runs a command, failing on a non-zero exit.
pub fn run(cmd: &[&str]) -> Result<Output, LabError> {
    let line = cmd.join(" ");
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            cmd: line.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Failed {
            cmd: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

impl Lab {
    /// Builds a lab of `servers` servers and `clients` clients.
    pub fn up(servers: u16, clients: u16) -> Result<Lab, LabError> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tag = format!("hr{}x{}", std::process::id(), seq);
        Self::up_tagged(&tag, servers, clients)
    }

    /// Builds a lab with an explicit tag (for `headroom-lab up --name`).
    pub fn up_tagged(tag: &str, servers: u16, clients: u16) -> Result<Lab, LabError> {
        let mut lab = Lab {
            tag: tag.to_string(),
            switch_ns: format!("{tag}-sw"),
            servers: Vec::new(),
            clients: Vec::new(),
            namespaces: Vec::new(),
            children: Vec::new(),
            keep: false,
        };
        lab.add_ns(&lab.switch_ns.clone())?;
        let sw = lab.switch_ns.clone();
        lab.ip(&sw, &["link", "add", "br0", "type", "bridge"])?;
        lab.ip(&sw, &["link", "set", "br0", "up"])?;
        for i in 1..=servers {
            let s = Server {
                id: i,
                ns: format!("{tag}-s{i}"),
                host_ns: format!("{tag}-h{i}"),
                node_ip: node_ip(i),
                host_ip: host_ip(i),
            };
            lab.add_ns(&s.ns)?;
            lab.add_ns(&s.host_ns)?;
            let port = format!("p{i}");
            lab.ip(
                &s.ns,
                &[
                    "link", "add", OUTER, "type", "veth", "peer", "name", &port, "netns", &sw,
                ],
            )?;
            lab.ip(
                &s.ns,
                &[
                    "link", "add", INNER, "type", "veth", "peer", "name", "eth0", "netns",
                    &s.host_ns,
                ],
            )?;
            lab.ip(&sw, &["link", "set", &port, "master", "br0", "up"])?;
            lab.ip(&s.ns, &["link", "add", "bump", "type", "bridge"])?;
            lab.ip(&s.ns, &["link", "set", OUTER, "master", "bump", "up"])?;
            lab.ip(&s.ns, &["link", "set", INNER, "master", "bump", "up"])?;
            lab.ip(&s.ns, &["link", "set", "bump", "up"])?;
            // Frames the node's own stack sends (gossip, probes) would leave
            // with partial checksums that a worker forwards as they are.
            for dev in ["bump", OUTER, INNER] {
                lab.offloads_off(&s.ns, dev);
            }
            lab.ip(
                &s.ns,
                &[
                    "addr",
                    "add",
                    &format!("{}/{PREFIX}", s.node_ip),
                    "dev",
                    "bump",
                ],
            )?;
            lab.ip(
                &s.host_ns,
                &[
                    "addr",
                    "add",
                    &format!("{}/{PREFIX}", s.host_ip),
                    "dev",
                    "eth0",
                ],
            )?;
            lab.ip(&s.host_ns, &["link", "set", "eth0", "up"])?;
            lab.offloads_off(&s.host_ns, "eth0");
            lab.servers.push(s);
        }
        for j in 1..=clients {
            let c = Client {
                id: j,
                ns: format!("{tag}-c{j}"),
                ip: client_ip(j),
            };
            lab.add_ns(&c.ns)?;
            let port = format!("c{j}");
            lab.ip(
                &c.ns,
                &[
                    "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &sw,
                ],
            )?;
            lab.ip(&sw, &["link", "set", &port, "master", "br0", "up"])?;
            lab.ip(
                &c.ns,
                &["addr", "add", &format!("{}/{PREFIX}", c.ip), "dev", "eth0"],
            )?;
            lab.ip(&c.ns, &["link", "set", "eth0", "up"])?;
            lab.offloads_off(&c.ns, "eth0");
            lab.clients.push(c);
        }
        Ok(lab)
    }

    fn add_ns(&mut self, ns: &str) -> Result<(), LabError> {
        run(&["ip", "netns", "add", ns])?;
        self.namespaces.push(ns.to_string());
        run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        // IPv6 autoconfiguration chatter is noise in exact-count tests.
        let _ = run(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
        ]);
        let _ = run(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]);
        Ok(())
    }

    /// The host stack hands veth partially checksummed, segmentation-offloaded
    /// skbs; a frame leaving through AF_XDP must be complete on the wire.
    fn offloads_off(&self, ns: &str, dev: &str) {
        let _ = run(&[
            "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso",
            "off",
        ]);
    }

    /// `ip -n ns args...`
    pub fn ip(&self, ns: &str, args: &[&str]) -> Result<Output, LabError> {
        let mut cmd = vec!["ip", "-n", ns];
        cmd.extend_from_slice(args);
        run(&cmd)
    }

    /// Runs `cmd` inside `ns` and waits for it.
    pub fn exec(&self, ns: &str, cmd: &[&str]) -> Result<Output, LabError> {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(cmd);
        run(&full)
    }

    /// A `Command` that runs `program` inside `ns` (not started). It enters
    /// only the network namespace (`nsenter --net`): `ip netns exec` would
    /// also remount /sys, hiding the cgroup hierarchy the process scheduler
    /// manages.
    pub fn command(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{ns}"))
            .arg("--")
            .arg(program);
        c
    }

    /// Starts `cmd` in the background; the lab kills it on drop.
    pub fn spawn(&mut self, name: &str, mut cmd: Command) -> Result<&mut Child, LabError> {
        let child = cmd.spawn().map_err(|source| LabError::Spawn {
            cmd: format!("{cmd:?}"),
            source,
        })?;
        self.children.push((name.to_string(), child));
        Ok(&mut self.children.last_mut().expect("just pushed").1)
    }

    /// A started child by name.
    pub fn child(&mut self, name: &str) -> Option<&mut Child> {
        self.children
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
    }

    /// Starts headroomd (`bin`) for server `idx` with `config`, written to
    /// `dir/s<id>.toml` (log in `dir/s<id>.log`; the child is named
    /// `headroomd-<id>`), and waits until its control socket — which the
    /// config must place at `dir/s<id>.sock` — answers. Returns that socket.
    pub fn start_headroomd(
        &mut self,
        bin: &std::path::Path,
        idx: usize,
        dir: &std::path::Path,
        config: &str,
    ) -> Result<std::path::PathBuf, LabError> {
        let s = self.servers[idx].clone();
        let io = |what: &str, source| LabError::Spawn {
            cmd: what.to_string(),
            source,
        };
        let cfg = dir.join(format!("s{}.toml", s.id));
        std::fs::write(&cfg, config).map_err(|e| io("write config", e))?;
        let log_path = dir.join(format!("s{}.log", s.id));
        let log = std::fs::File::create(&log_path).map_err(|e| io("create log", e))?;
        let socket = dir.join(format!("s{}.sock", s.id));
        let name = format!("headroomd-{}", s.id);
        let mut cmd = self.command(&s.ns, &bin.display().to_string());
        cmd.arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log);
        self.spawn(&name, cmd)?;
        let failed = |status: String| LabError::Failed {
            cmd: format!("headroomd for server {}", s.id),
            status,
            stderr: std::fs::read_to_string(&log_path).unwrap_or_default(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(crate::ctl::Response::Status(_)) =
                crate::ctl::call(&socket, &crate::ctl::Request::Status)
            {
                return Ok(socket);
            }
            if let Some(Ok(Some(st))) = self.child(&name).map(|c| c.try_wait()) {
                return Err(failed(format!("exited early: {st}")));
            }
            if Instant::now() >= deadline {
                return Err(failed("control socket did not answer within 20 s".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Removes a child from the lab's care (it was killed or waited for).
    pub fn forget(&mut self, name: &str) -> Option<Child> {
        let i = self.children.iter().position(|(n, _)| n == name)?;
        Some(self.children.remove(i).1)
    }

    /// Leaves the namespaces in place when dropped (`headroom-lab up`).
    pub fn keep(mut self) {
        self.keep = true;
    }

    /// Deletes every namespace whose name starts with `tag-` (`headroom-lab down`).
    pub fn down_tagged(tag: &str) -> Result<usize, LabError> {
        let out = run(&["ip", "netns", "list"])?;
        let mut n = 0;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(&format!("{tag}-")) {
                kill_ns_pids(name);
                let _ = run(&["ip", "netns", "del", name]);
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Kills every process running in namespace `ns`.
fn kill_ns_pids(ns: &str) {
    if let Ok(out) = run(&["ip", "netns", "pids", ns]) {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) with a pid and signal number has no memory effects.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for (_, c) in self.children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            kill_ns_pids(ns);
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`, so std
/// sockets created inside `f` live in that namespace.
pub fn run_in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LabError> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).map_err(|source| LabError::Spawn {
        cmd: format!("open {path}"),
        source,
    })?;
    let handle = std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| e.to_string())?;
        Ok::<T, String>(f())
    });
    match handle.join() {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(LabError::Failed {
            cmd: format!("setns {ns}"),
            status: "error".into(),
            stderr: e,
        }),
        Err(_) => Err(LabError::Failed {
            cmd: format!("thread in {ns}"),
            status: "panicked".into(),
            stderr: String::new(),
        }),
    }
}

/// Traffic helpers that run inside namespaces (used by the demo and tests).
pub mod traffic {
    use std::{
        io::{Read, Write},
        net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
        time::Duration,
    };

    use super::{run_in_ns, LabError};

    /// A UDP receiver in `ns` on `port`: counts datagrams and bytes until
    /// `quiet` passes with nothing arriving (after at least one arrived, or
    /// `first_timeout` with none).
    pub fn udp_sink(
        ns: &str,
        port: u16,
        quiet: Duration,
        first_timeout: Duration,
    ) -> Result<std::thread::JoinHandle<(u64, u64)>, LabError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let ns = ns.to_string();
        let h = std::thread::spawn(move || {
            run_in_ns(&ns, move || {
                let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind udp sink");
                big_receive_buffer(&s);
                let _ = tx.send(());
                let mut buf = [0u8; 65536];
                let (mut n, mut bytes) = (0u64, 0u64);
                s.set_read_timeout(Some(first_timeout)).ok();
                while let Ok(len) = s.recv(&mut buf) {
                    n += 1;
                    bytes += len as u64;
                    s.set_read_timeout(Some(quiet)).ok();
                }
                (n, bytes)
            })
            .unwrap_or((0, 0))
        });
        let _ = rx.recv_timeout(Duration::from_secs(5));
        Ok(h)
    }

    /// A sink must never be the bottleneck of a measurement: 8 MiB of
    /// receive buffer, forced past `rmem_max` (root only; best effort).
    fn big_receive_buffer(s: &UdpSocket) {
        use std::os::fd::AsRawFd;
        let size: libc::c_int = 8 << 20;
        // SAFETY: setsockopt reads `size` (a c_int of the length passed) only
        // during the call; the fd is a live socket.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    /// Sends `count` datagrams of `size` payload bytes from `ns` to `dst`,
    /// at most `pps` per second (0 = as fast as possible).
    pub fn udp_send(
        ns: &str,
        dst: SocketAddr,
        count: u64,
        size: usize,
        pps: u64,
    ) -> Result<u64, LabError> {
        run_in_ns(ns, move || {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind udp sender");
            let payload = vec![0xa5u8; size];
            let start = std::time::Instant::now();
            let mut sent = 0;
            for i in 0..count {
                if pps > 0 {
                    let due = start + Duration::from_secs_f64(i as f64 / pps as f64);
                    if let Some(d) = due.checked_duration_since(std::time::Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
                if s.send_to(&payload, dst).is_ok() {
                    sent += 1;
                }
            }
            sent
        })
    }

    /// A TCP server in `ns` on `port` that accepts `conns` connections and
    /// returns the bytes read from each (sorted by arrival).
    pub fn tcp_sink(
        ns: &str,
        port: u16,
        conns: usize,
    ) -> Result<std::thread::JoinHandle<Vec<u64>>, LabError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let ns = ns.to_string();
        let h = std::thread::spawn(move || {
            run_in_ns(&ns, move || {
                let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind tcp sink");
                let _ = tx.send(());
                let mut out = Vec::new();
                for _ in 0..conns {
                    let Ok((mut c, _)) = l.accept() else { break };
                    c.set_read_timeout(Some(Duration::from_secs(20))).ok();
                    let mut buf = vec![0u8; 65536];
                    let mut total = 0u64;
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        total += n as u64;
                    }
                    out.push(total);
                }
                out
            })
            .unwrap_or_default()
        });
        let _ = rx.recv_timeout(Duration::from_secs(5));
        Ok(h)
    }

    /// Connects from `ns` to `dst` and writes `bytes` bytes.
    pub fn tcp_send(
        ns: &str,
        dst: SocketAddr,
        bytes: u64,
    ) -> Result<std::io::Result<u64>, LabError> {
        run_in_ns(ns, move || {
            let mut c = TcpStream::connect_timeout(&dst, Duration::from_secs(5))?;
            let chunk = vec![0x5au8; 64 * 1024];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                c.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            c.shutdown(std::net::Shutdown::Write)?;
            // Wait for the peer to close so every byte was delivered.
            let mut b = [0u8; 1];
            let _ = c.read(&mut b);
            Ok(bytes)
        })
    }

    /// One arrival: (time, destination port, last octet of the source IPv4 address, bytes).
    pub type Arrival = (std::time::Instant, u16, u8, usize);
    /// A shared arrival log.
    pub type ArrivalLog = std::sync::Arc<std::sync::Mutex<Vec<Arrival>>>;

    /// Sends `payload`-byte datagrams from `ns` (source port `src_port`) to
    /// `dst` at `bps` (counting Ethernet/IPv4/UDP headers) until `stop`.
    pub fn udp_flood(
        ns: &str,
        src_port: u16,
        dst: SocketAddr,
        bps: f64,
        payload: usize,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<u64> {
        let ns = ns.to_string();
        std::thread::spawn(move || {
            run_in_ns(&ns, move || {
                let s =
                    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, src_port)).expect("bind flood sender");
                let buf = vec![0x11u8; payload];
                let gap = Duration::from_secs_f64((payload + 42) as f64 * 8.0 / bps);
                let start = std::time::Instant::now();
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let due = start + gap * i;
                    if let Some(d) = due.checked_duration_since(std::time::Instant::now()) {
                        std::thread::sleep(d);
                    }
                    let _ = s.send_to(&buf, dst);
                    i += 1;
                }
                i as u64
            })
            .unwrap_or(0)
        })
    }

    /// Logs every datagram arriving in `ns` on `ports` until `stop`.
    pub fn arrival_log(
        ns: &str,
        ports: &[u16],
        log: ArrivalLog,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Vec<std::thread::JoinHandle<()>> {
        ports
            .iter()
            .map(|&port| {
                let (ns, log, stop) = (ns.to_string(), log.clone(), stop.clone());
                std::thread::spawn(move || {
                    let _ = run_in_ns(&ns, move || {
                        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
                            .expect("bind arrival log");
                        big_receive_buffer(&s);
                        let mut buf = [0u8; 65536];
                        // Arrivals are batched to keep the lock off the receive
                        // path, but never held back for more than 20 ms: readers
                        // measure while the log is still being written.
                        let mut local = Vec::with_capacity(1 << 12);
                        let mut flushed = std::time::Instant::now();
                        s.set_read_timeout(Some(Duration::from_millis(10))).ok();
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            if let Ok((n, from)) = s.recv_from(&mut buf) {
                                let octet = match from.ip() {
                                    std::net::IpAddr::V4(a) => a.octets()[3],
                                    _ => 0,
                                };
                                local.push((std::time::Instant::now(), port, octet, n));
                            }
                            if !local.is_empty() && flushed.elapsed() >= Duration::from_millis(20) {
                                log.lock().expect("log lock").append(&mut local);
                                flushed = std::time::Instant::now();
                            }
                        }
                        log.lock().expect("log lock").append(&mut local);
                    });
                })
            })
            .collect()
    }

    /// Bit rate on the wire (payload + 42 header bytes) of the arrivals in
    /// [from, to) that match `f`.
    pub fn wire_rate(
        log: &ArrivalLog,
        from: std::time::Instant,
        to: std::time::Instant,
        f: impl Fn(u16, u8) -> bool,
    ) -> f64 {
        let l = log.lock().expect("log lock");
        let bytes: usize = l
            .iter()
            .filter(|(t, p, o, _)| *t >= from && *t < to && f(*p, *o))
            .map(|a| a.3 + 42)
            .sum();
        bytes as f64 * 8.0 / (to - from).as_secs_f64()
    }
}

/// Sends one ARP request for `target` from the client's eth0 and collects
/// the replies for `window`: (sender MAC) per reply.
pub fn arp_probe(
    ns: &str,
    src: Ipv4Addr,
    target: Ipv4Addr,
    window: Duration,
) -> Result<Vec<[u8; 6]>, LabError> {
    let probe = run_in_ns(ns, move || -> std::io::Result<Vec<[u8; 6]>> {
        const ETH_P_ARP: u16 = 0x0806;
        let name = c"eth0";
        // SAFETY: valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        // SAFETY: plain socket(2) call.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ARP.to_be()),
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: all-zero sockaddr_ll is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ARP.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: valid sockaddr_ll of the length passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mac = if_mac(fd.as_raw_fd(), "eth0");
        let mut f = [0u8; 60];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&mac);
        f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f[22..28].copy_from_slice(&mac);
        f[28..32].copy_from_slice(&src.octets());
        f[38..42].copy_from_slice(&target.octets());
        // SAFETY: `f` is valid for reads of its length.
        let sent = unsafe { libc::send(fd.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
        if sent != 60 {
            return Err(std::io::Error::last_os_error());
        }
        let mut replies = Vec::new();
        let end = Instant::now() + window;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if n <= 0 {
                continue;
            }
            let mut b = [0u8; 128];
            // SAFETY: `b` is valid for writes of its length.
            let got = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    b.as_mut_ptr().cast(),
                    b.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if got < 42 {
                continue;
            }
            let is_reply = b[20..22] == [0, 2];
            if is_reply && b[28..32] == target.octets() && b[38..42] == src.octets() {
                let mut sha = [0u8; 6];
                sha.copy_from_slice(&b[22..28]);
                replies.push(sha);
            }
        }
        Ok(replies)
    })?;
    probe.map_err(|source| LabError::Spawn {
        cmd: format!("ARP probe in {ns}"),
        source,
    })
}

/// MAC of interface `name` in the socket's network namespace
/// (SIOCGIFHWADDR: /sys may show another namespace's devices).
pub fn if_mac(fd: i32, name: &str) -> [u8; 6] {
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq for SIOCGIFHWADDR on a live socket.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) };
    let mut mac = [0u8; 6];
    if rc == 0 {
        // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
        let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
        for (m, d) in mac.iter_mut().zip(data.iter()) {
            *m = *d as u8;
        }
    }
    mac
}
