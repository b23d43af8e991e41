//! A lab of network namespaces that looks like a small server pool.
//!
//! ```text
//!   client ns ─┐                         ┌─ server ns (a real server's stack) ─────────────────────┐
//!   client ns ─┼── switch ns (bridge) ───┼─ eth0 ═╗ headroomd ╔═ inner ── hr-host (its address)   │
//!              │                         │        ╚═ hr-bridge (fail-open) ═╝                      │
//!              └── ... one per server ...└────────────────────────────────────────────────────────┘
//! ```
//!
//! Each server is one namespace built like a real server: its address on
//! `eth0`, a veth to the switch playing the physical NIC. The lab then puts
//! it behind headroomd with the deployment code operators use
//! (`headroomctl attach`): `eth0` becomes headroomd's outer interface, the
//! address moves to `hr-host`, whose veth peer `inner` is headroomd's inner
//! interface, and the bridge `hr-bridge` joins `eth0` and `inner` as the
//! fail-open path. Applications run in the same namespace, on the host's
//! address, which is also the node's (the exchange's UDP bypasses the
//! workers; everything else goes through them). Interfaces keep Linux's
//! default offloads (a fresh veth: checksum offload, TSO and GSO on, GRO
//! off) unless a test changes them.
//!
//! Every name carries a per-lab tag, so labs can run in parallel; dropping
//! the [`Lab`] kills what it started and deletes every namespace (and with
//! them every link), also when a test fails.

use std::{
    net::Ipv4Addr,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::{
    ns::{kill_ns_pids, run, run_in_ns, sysctl},
    LabError,
};

/// One server.
#[derive(Debug, Clone)]
pub struct Server {
    /// 1-based index, also the node id.
    pub id: u16,
    /// The server's namespace: headroomd runs here.
    pub ns: String,
    /// Where the server's applications run: the same namespace (a lab
    /// server, like a real one, is one network stack).
    pub host_ns: String,
    /// The node's address (the information exchange runs on it).
    pub node_ip: Ipv4Addr,
    /// The host stack's address: the same one.
    pub host_ip: Ipv4Addr,
    /// The NIC (headroomd's outer interface).
    pub nic: String,
    /// headroomd's inner interface.
    pub inner: String,
    /// The veth end that carries the host's address while attached.
    pub host_if: String,
    /// The fail-open bridge.
    pub bridge: String,
}

impl Server {
    /// The deployment of this server (what `headroomctl attach` would do
    /// with its configuration).
    pub fn deploy_spec(&self, mtu: Option<u32>) -> headroom_deploy::Spec {
        headroom_deploy::Spec {
            nic: self.nic.clone(),
            inner: self.inner.clone(),
            host: self.host_if.clone(),
            bridge: self.bridge.clone(),
            mtu,
            inner_queues: None,
        }
    }
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

/// The NIC of each server.
pub const NIC: &str = "eth0";
/// headroomd's inner interface in each server.
pub const INNER: &str = "inner";
/// Prefix length of the lab subnet (10.200.0.0/16).
pub const PREFIX: u8 = 16;

/// Address of server `i` (its host's and its node's).
pub fn server_ip(i: u16) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 0, i as u8)
}
/// Address of client `j`.
pub fn client_ip(j: u16) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 2, j as u8)
}

/// How a lab's links are built (the fields of [`LabBuilder`] that tests set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabOptions {
    /// Receive and transmit queues of every server's NIC (the veth pair the
    /// deployment makes gets as many).
    pub queues: u16,
    /// MTU of every link.
    pub mtu: u32,
    /// Leave Linux's default offloads on (checksum offload, TSO/GSO, as a
    /// fresh veth has them), as on a real server; `false` turns them off
    /// everywhere.
    pub linux_offloads: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            queues: 1,
            mtu: 1500,
            linux_offloads: true,
        }
    }
}

/// How to build a lab.
#[derive(Debug, Clone)]
pub struct LabBuilder {
    servers: u16,
    clients: u16,
    tag: Option<String>,
    mtu: Option<u32>,
    queues: u32,
    attach: bool,
    linux_offloads: bool,
}

impl LabBuilder {
    /// Number of servers.
    pub fn servers(mut self, n: u16) -> Self {
        self.servers = n;
        self
    }
    /// Number of clients.
    pub fn clients(mut self, n: u16) -> Self {
        self.clients = n;
        self
    }
    /// Explicit tag (`headroom-lab up --name`).
    pub fn tag(mut self, tag: &str) -> Self {
        self.tag = Some(tag.to_string());
        self
    }
    /// MTU of every link (default: 1500, the veth default).
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
    /// Queues of every server NIC (and so of its veth pair; default 1).
    pub fn queues(mut self, q: u32) -> Self {
        self.queues = q.max(1);
        self
    }
    /// Leave Linux's default offloads on (default yes); no turns checksum
    /// and segmentation offloads off on every interface.
    pub fn linux_offloads(mut self, yes: bool) -> Self {
        self.linux_offloads = yes;
        self
    }
    /// The link options of `opts`.
    pub fn options(self, opts: LabOptions) -> Self {
        let b = self
            .queues(u32::from(opts.queues))
            .linux_offloads(opts.linux_offloads);
        if opts.mtu == 1500 {
            b
        } else {
            b.mtu(opts.mtu)
        }
    }
    /// Whether servers are put behind headroomd's interfaces (default yes;
    /// no leaves them as plain servers, for tests of the deployment itself).
    pub fn attached(mut self, yes: bool) -> Self {
        self.attach = yes;
        self
    }

    /// Builds it.
    pub fn up(self) -> Result<Lab, LabError> {
        let tag = self.tag.clone().unwrap_or_else(|| {
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            format!("hr{}x{}", std::process::id(), seq)
        });
        let mut lab = Lab {
            tag: tag.clone(),
            switch_ns: format!("{tag}-sw"),
            servers: Vec::new(),
            clients: Vec::new(),
            mtu: self.mtu,
            namespaces: Vec::new(),
            children: Vec::new(),
            keep: false,
        };
        let mtu = self.mtu.map(|m| m.to_string());
        let sw = lab.switch_ns.clone();
        lab.add_ns(&sw)?;
        lab.ip(&sw, &["link", "add", "br0", "type", "bridge"])?;
        lab.ip(&sw, &["link", "set", "br0", "up"])?;
        let queues = self.queues.to_string();
        for i in 1..=self.servers {
            let ns = format!("{tag}-s{i}");
            let s = Server {
                id: i,
                ns: ns.clone(),
                host_ns: ns.clone(),
                node_ip: server_ip(i),
                host_ip: server_ip(i),
                nic: NIC.into(),
                inner: INNER.into(),
                host_if: "hr-host".into(),
                bridge: "hr-bridge".into(),
            };
            lab.add_ns(&ns)?;
            let port = format!("p{i}");
            lab.ip(
                &ns,
                &[
                    "link",
                    "add",
                    "name",
                    NIC,
                    "numtxqueues",
                    &queues,
                    "numrxqueues",
                    &queues,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &port,
                    "numtxqueues",
                    &queues,
                    "numrxqueues",
                    &queues,
                    "netns",
                    &sw,
                ],
            )?;
            lab.plug(&port)?;
            // The NIC's peer takes XDP frames (the fast path redirects to the
            // NIC) only with GRO on; the deployment sets it on the host end.
            lab.gro_on(&sw, &port);
            if let Some(m) = &mtu {
                lab.ip(&ns, &["link", "set", NIC, "mtu", m])?;
            }
            let addr = format!("{}/{PREFIX}", s.host_ip);
            lab.ip(&ns, &["addr", "add", &addr, "dev", NIC])?;
            lab.ip(&ns, &["link", "set", NIC, "up"])?;
            if self.attach {
                let spec = s.deploy_spec(None);
                match run_in_ns(&ns, move || headroom_deploy::attach(&spec, false))? {
                    Ok(_) => {}
                    Err(e) => {
                        return Err(LabError::Failed {
                            cmd: format!("attach in {ns}"),
                            status: "refused or failed".into(),
                            stderr: e.to_string(),
                        })
                    }
                }
            }
            if !self.linux_offloads {
                for dev in [&s.nic, &s.inner, &s.host_if, &s.bridge] {
                    lab.offloads_off(&ns, dev);
                }
            }
            lab.servers.push(s);
        }
        for j in 1..=self.clients {
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
            lab.plug(&port)?;
            if let Some(m) = &mtu {
                lab.ip(&c.ns, &["link", "set", "eth0", "mtu", m])?;
            }
            lab.ip(
                &c.ns,
                &["addr", "add", &format!("{}/{PREFIX}", c.ip), "dev", "eth0"],
            )?;
            lab.ip(&c.ns, &["link", "set", "eth0", "up"])?;
            if !self.linux_offloads {
                lab.offloads_off(&c.ns, "eth0");
            }
            lab.clients.push(c);
        }
        Ok(lab)
    }
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
    /// The MTU the lab was built with (None: 1500).
    pub mtu: Option<u32>,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    keep: bool,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("tag", &self.tag)
            .field("servers", &self.servers)
            .field("clients", &self.clients)
            .finish()
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// A builder: 1 server, 1 client, attached, MTU 1500, one queue.
    pub fn builder() -> LabBuilder {
        LabBuilder {
            servers: 1,
            clients: 1,
            tag: None,
            mtu: None,
            queues: 1,
            attach: true,
            linux_offloads: true,
        }
    }

    /// Builds a lab with non-default links.
    pub fn up_with(servers: u16, clients: u16, opts: LabOptions) -> Result<Lab, LabError> {
        Self::builder()
            .servers(servers)
            .clients(clients)
            .options(opts)
            .up()
    }

    /// Turns GRO on (a veth then takes XDP frames redirected to its peer).
    fn gro_on(&self, ns: &str, dev: &str) {
        let _ = run(&["ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "on"]);
    }

    /// Turns checksum and segmentation offloads off on `dev` in `ns` (the
    /// lab's links have Linux's defaults unless a test says otherwise).
    pub fn offloads_off(&self, ns: &str, dev: &str) {
        let _ = run(&[
            "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso",
            "off",
        ]);
    }

    /// Builds a lab of `servers` servers and `clients` clients.
    pub fn up(servers: u16, clients: u16) -> Result<Lab, LabError> {
        Self::builder().servers(servers).clients(clients).up()
    }

    /// Builds a lab with an explicit tag (for `headroom-lab up --name`).
    pub fn up_tagged(tag: &str, servers: u16, clients: u16) -> Result<Lab, LabError> {
        Self::builder()
            .tag(tag)
            .servers(servers)
            .clients(clients)
            .up()
    }

    /// Adds switch port `port` (already in the switch namespace) to the bridge.
    fn plug(&self, port: &str) -> Result<(), LabError> {
        let sw = &self.switch_ns;
        if let Some(m) = self.mtu {
            self.ip(sw, &["link", "set", port, "mtu", &m.to_string()])?;
        }
        self.ip(sw, &["link", "set", port, "master", "br0", "up"])?;
        Ok(())
    }

    fn add_ns(&mut self, ns: &str) -> Result<(), LabError> {
        run(&["ip", "netns", "add", ns])?;
        self.namespaces.push(ns.to_string());
        run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        // IPv6 autoconfiguration chatter is noise in exact-count tests.
        for k in ["all", "default"] {
            let _ = sysctl(ns, &format!("ipv6/conf/{k}/disable_ipv6"), "1");
        }
        Ok(())
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

    /// Takes a child started elsewhere into the lab's care (killed on drop).
    pub fn spawn_adopt(&mut self, name: &str, child: Child) {
        self.children.push((name.to_string(), child));
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
            if let Ok(headroom::ctl::Response::Status(_)) =
                headroom::ctl::call(&socket, &headroom::ctl::Request::Status)
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
