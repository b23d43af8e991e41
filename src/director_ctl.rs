//! Control-thread side of the flow director: builds and publishes the
//! director tables, drives health checks, resolves the pool's host MACs,
//! keeps the ARP ownership of VIPs and sends the gratuitous ARPs of a new
//! owner.
//!
//! # Inputs
//! * Membership: [`DirectorCtl::on_membership`] with the live node ids. Until
//!   live membership runs, the daemon feeds it the static view (this node,
//!   the `[exchange] peers` and every explicit VIP member).
//! * Health: every node's instance is probed at its host address (a
//!   stand-in for the gossiped per-node health entries).
//! * Host addresses (`[[director.hosts]]`): the encapsulation endpoints.
//!   Their MACs come from the config or from the kernel neighbour table of
//!   the node's own interface (`/proc/net/arp`), primed by a datagram to
//!   the discard port so the kernel resolves them.
//!
//! Every change rebuilds [`DirectorTables`] and publishes them through the
//! [`TableCell`] the workers follow.

use std::{
    io::BufRead,
    net::{Ipv4Addr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::Arc,
    time::{Duration, Instant},
};

use headroom_config::{
    parse_peer,
    vip::{parse_mac, DirectorSettings, VipProtocol, VipService},
    Config,
};
use headroom_control::health::{probe::Prober, HealthMonitor, Transition};
use headroom_dataplane::{
    arp::{ArpConfig, ArpInterceptor},
    director::{
        path::{Peer, Peers},
        DirectorTables, NodeId, PoolView, TableCell,
    },
    pipeline::director_stage::{DirectorReport, DirectorStage},
};

use crate::status::{DirectorNodeStatus, DirectorStatus, VipStatus};

/// How often unresolved MACs are re-requested and the neighbour table read.
const RESOLVE_EVERY: Duration = Duration::from_millis(200);
/// How often resolved MACs are re-checked.
const RECHECK_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
struct Host {
    node: NodeId,
    ip: Ipv4Addr,
    mac: Option<[u8; 6]>,
    configured: bool,
}

/// The control thread's flow director.
pub struct DirectorCtl {
    services: Vec<VipService>,
    settings: DirectorSettings,
    local: NodeId,
    outer: String,
    cell: Arc<TableCell>,
    hosts: Vec<Host>,
    alive: Vec<NodeId>,
    unhealthy: Vec<(u16, NodeId)>,
    health: Vec<(NodeId, HealthMonitor)>,
    arp: Option<ArpInterceptor>,
    garp: Option<PacketSender>,
    nudge: Option<UdpSocket>,
    owned: Vec<Ipv4Addr>,
    tables: Arc<DirectorTables>,
    published: u64,
    announce_errors: u64,
    epoch: Instant,
    next_resolve: Instant,
    dirty: bool,
    static_alive: Vec<NodeId>,
    live_after: Instant,
    live_converged: bool,
}

impl DirectorCtl {
    /// The director of `cfg`, or None when no VIP service is configured.
    pub fn new(cfg: &Config) -> Option<Self> {
        if cfg.vips.is_empty() {
            return None;
        }
        let local = NodeId::from(cfg.node.id);
        let hosts: Vec<Host> = cfg
            .director
            .hosts
            .iter()
            .map(|h| {
                let mac = h.mac.as_deref().and_then(parse_mac);
                Host {
                    node: h.node,
                    ip: h.address,
                    mac,
                    configured: mac.is_some(),
                }
            })
            .collect();
        let epoch = Instant::now();
        let mut health = Vec::new();
        if cfg.vips.iter().any(|s| s.health_check.is_some()) {
            for h in &hosts {
                match Prober::spawn(1, 16) {
                    Ok(p) => health.push((h.node, HealthMonitor::new(&cfg.vips, h.ip, p, 0))),
                    Err(e) => tracing::error!(error = %e, "starting health probes"),
                }
            }
        }
        let cell = Arc::new(TableCell::new(DirectorTables::empty(local)));
        let garp = match PacketSender::open(&cfg.interfaces.outer) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "no packet socket for gratuitous ARP");
                None
            }
        };
        let mut d = DirectorCtl {
            services: cfg.vips.clone(),
            settings: cfg.director.clone(),
            local,
            outer: cfg.interfaces.outer.clone(),
            tables: cell.load(),
            cell,
            hosts,
            alive: Vec::new(),
            unhealthy: Vec::new(),
            health,
            arp: None,
            garp,
            nudge: UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok(),
            owned: Vec::new(),
            published: 0,
            announce_errors: 0,
            epoch,
            next_resolve: epoch,
            dirty: true,
            static_alive: static_alive(cfg),
            live_after: epoch + Duration::from_millis(u64::from(cfg.exchange.failure_timeout_ms)),
            live_converged: false,
        };
        d.on_membership(&d.static_alive.clone());
        Some(d)
    }

    /// The cell the workers follow.
    pub fn cell(&self) -> &Arc<TableCell> {
        &self.cell
    }

    /// The stage one worker runs.
    pub fn stage(&self) -> DirectorStage {
        DirectorStage::new(Arc::clone(&self.cell), &self.settings)
    }

    /// Live membership changed: `alive` are the live node ids (any order).
    pub fn on_membership(&mut self, alive: &[NodeId]) {
        let mut a = alive.to_vec();
        if !a.contains(&self.local) {
            a.push(self.local);
        }
        a.sort_unstable();
        a.dedup();
        if a != self.alive {
            tracing::info!(alive = ?a, "director: membership");
            self.alive = a;
            self.dirty = true;
        }
    }

    /// Live membership from the exchange. Until it has converged (every
    /// statically configured node seen alive) or one failure timeout has
    /// passed since start, the static view stays in force: a node that has
    /// not heard from its peers yet must not claim (and announce) their VIPs.
    pub fn on_live_nodes(&mut self, now: Instant, live: &[NodeId]) {
        if !self.live_converged {
            let all = self.static_alive.iter().all(|n| live.contains(n));
            if !all && now < self.live_after {
                return;
            }
            self.live_converged = true;
        }
        self.on_membership(live);
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Timers: health, MAC resolution, table rebuilds, announcements. Call
    /// from the control loop's high-frequency branch.
    pub fn tick(&mut self, now: Instant) {
        let now_ns = self.now_ns();
        for i in 0..self.health.len() {
            let node = self.health[i].0;
            for ch in self.health[i].1.tick(now_ns) {
                let key = (ch.service, node);
                match ch.transition {
                    Transition::Down => {
                        if !self.unhealthy.contains(&key) {
                            self.unhealthy.push(key);
                        }
                    }
                    Transition::Up => self.unhealthy.retain(|k| *k != key),
                }
                tracing::info!(node, service = ch.service, transition = ?ch.transition, "director: health");
                self.dirty = true;
            }
        }
        if now >= self.next_resolve {
            let all_known = self.resolve_macs();
            self.next_resolve = now
                + if all_known {
                    RECHECK_EVERY
                } else {
                    RESOLVE_EVERY
                };
        }
        if self.dirty {
            self.dirty = false;
            self.rebuild(now_ns);
        }
        self.announce(now_ns);
    }

    /// A node's host instance starts unhealthy until its first probes pass:
    /// health-checked services start with every member in `unhealthy`.
    fn pool(&self) -> PoolView {
        let mut pool = PoolView {
            alive: self.alive.clone(),
            ..PoolView::default()
        };
        for (i, s) in self.services.iter().enumerate() {
            if s.health_check.is_none() {
                continue;
            }
            for (node, mon) in &self.health {
                if !mon.is_healthy(i as u16) {
                    pool.unhealthy.insert((i as u16, *node));
                }
            }
        }
        for k in &self.unhealthy {
            pool.unhealthy.insert(*k);
        }
        pool
    }

    fn rebuild(&mut self, now_ns: u64) {
        let pool = self.pool();
        let t = match DirectorTables::build(
            &self.services,
            &pool,
            self.local,
            self.settings.maglev_table_size,
        ) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "director tables not built");
                return;
            }
        };
        let local_host = self.hosts.iter().find(|h| h.node == self.local);
        let peers: Vec<Peer> = self
            .hosts
            .iter()
            .filter_map(|h| {
                Some(Peer {
                    node: h.node,
                    ip: h.ip,
                    mac: h.mac?,
                })
            })
            .collect();
        let t = t.with_peers(Peers::new(
            local_host.map_or(Ipv4Addr::UNSPECIFIED, |h| h.ip),
            local_host.and_then(|h| h.mac).unwrap_or([0; 6]),
            &peers,
        ));
        let owned: Vec<Ipv4Addr> = t.owned_vips().collect();
        if owned != self.owned {
            tracing::info!(?owned, "director: VIP ownership");
        }
        self.owned = owned;
        self.tables = Arc::new(t.clone());
        self.cell.publish(t);
        self.published += 1;
        if self.arp.is_none() {
            if let Some(mac) = local_host.and_then(|h| h.mac) {
                let mut a = ArpInterceptor::new(ArpConfig {
                    mac,
                    host_ip: local_host.map(|h| h.ip),
                    announce_spacing_ns: self.settings.gratuitous_arp_interval_ms * 1_000_000,
                });
                let mut vips: Vec<(Ipv4Addr, u32)> = Vec::new();
                for s in &self.services {
                    match vips.iter_mut().find(|(v, _)| *v == s.vip) {
                        Some((_, b)) => *b = (*b).max(s.gratuitous_arp_count),
                        None => vips.push((s.vip, s.gratuitous_arp_count)),
                    }
                }
                if a.set_vips(&vips).is_err() {
                    tracing::error!("too many VIP addresses");
                }
                self.arp = Some(a);
            }
        }
        if let Some(a) = &mut self.arp {
            a.sync_owned(now_ns, &self.owned);
        }
    }

    fn announce(&mut self, now_ns: u64) {
        let (Some(arp), Some(tx)) = (&mut self.arp, &self.garp) else {
            return;
        };
        let mut buf = [0u8; 64];
        while let Some(n) = arp.poll_announce(now_ns, &mut buf) {
            if let Err(e) = tx.send(&buf[..n]) {
                self.announce_errors += 1;
                tracing::warn!(error = %e, interface = %self.outer, "gratuitous ARP not sent");
            }
        }
    }

    /// Reads the neighbour table; asks the kernel to resolve what is
    /// missing. Returns whether every host MAC is known.
    fn resolve_macs(&mut self) -> bool {
        let table = read_arp_table();
        let mut changed = false;
        let mut all = true;
        for h in self.hosts.iter_mut().filter(|h| !h.configured) {
            let found = table.iter().find(|(ip, _)| *ip == h.ip).map(|(_, m)| *m);
            match found {
                Some(m) if h.mac != Some(m) => {
                    tracing::info!(node = h.node, ip = %h.ip, mac = %fmt_mac(&m), "director: host MAC");
                    h.mac = Some(m);
                    changed = true;
                }
                Some(_) => {}
                None => {
                    all = false;
                    if let Some(s) = &self.nudge {
                        // The discard port: the datagram only makes the
                        // kernel resolve the address.
                        let _ = s.send_to(&[0], (h.ip, 9));
                    }
                }
            }
        }
        if changed {
            self.dirty = true;
        }
        all
    }

    /// Status, with the workers' counters summed.
    pub fn status<'a>(&self, reports: impl Iterator<Item = &'a DirectorReport>) -> DirectorStatus {
        let t = &self.tables;
        let mut total = DirectorReport::default();
        let mut svc: Vec<headroom_dataplane::pipeline::director_stage::ServiceCounters> =
            vec![Default::default(); self.services.len()];
        let mut placements: Vec<(u16, NodeId, u64)> = Vec::new();
        let mut ready = true;
        let mut any = false;
        for r in reports {
            any = true;
            ready &= r.ready;
            let d = &mut total.director;
            let s = &r.director;
            d.vip_packets += s.vip_packets;
            d.not_vip += s.not_vip;
            d.new_flows += s.new_flows;
            d.midflow_placed += s.midflow_placed;
            d.replaced_failed += s.replaced_failed;
            d.placed_local += s.placed_local;
            d.placed_remote += s.placed_remote;
            d.sticky_hits += s.sticky_hits;
            d.no_backend += s.no_backend;
            d.conntrack_evictions += s.conntrack_evictions;
            d.active_flows += s.active_flows;
            let p = &mut total.path;
            p.decapsulated += r.path.decapsulated;
            p.decap_foreign += r.path.decap_foreign;
            p.decap_errors += r.path.decap_errors;
            p.encapsulated += r.path.encapsulated;
            p.encap_too_big += r.path.encap_too_big;
            p.encap_no_headroom += r.path.encap_no_headroom;
            p.no_peer += r.path.no_peer;
            let a = &mut total.arp;
            a.answered += r.arp.answered;
            a.suppressed_in += r.arp.suppressed_in;
            a.suppressed_out += r.arp.suppressed_out;
            a.rewritten += r.arp.rewritten;
            a.malformed += r.arp.malformed;
            for (i, c) in r.services.iter().enumerate() {
                if let Some(acc) = svc.get_mut(i) {
                    acc.packets += c.packets;
                    acc.bytes += c.bytes;
                    acc.new_flows += c.new_flows;
                    acc.sticky_hits += c.sticky_hits;
                    acc.placed_local += c.placed_local;
                    acc.placed_remote += c.placed_remote;
                    acc.encapsulated += c.encapsulated;
                }
            }
            for &(s, n, c) in &r.placements {
                match placements.iter_mut().find(|(a, b, _)| *a == s && *b == n) {
                    Some(e) => e.2 += c,
                    None => placements.push((s, n, c)),
                }
            }
        }
        ready &= any;
        let local_mac = self
            .hosts
            .iter()
            .find(|h| h.node == self.local)
            .and_then(|h| h.mac);
        let announced = self.arp.as_ref().map_or(0, |a| a.stats().announced);
        let d = &total.director;
        let p = &total.path;
        let a = &total.arp;
        let counters: Vec<(String, u64)> = [
            ("vip_packets", d.vip_packets),
            ("new_flows", d.new_flows),
            ("midflow_placed", d.midflow_placed),
            ("replaced_failed", d.replaced_failed),
            ("active_flows", d.active_flows),
            ("placed_local", d.placed_local),
            ("placed_remote", d.placed_remote),
            ("sticky_hits", d.sticky_hits),
            ("no_backend", d.no_backend),
            ("conntrack_evictions", d.conntrack_evictions),
            ("encapsulated", p.encapsulated),
            ("decapsulated", p.decapsulated),
            ("decap_foreign", p.decap_foreign),
            ("decap_errors", p.decap_errors),
            ("encap_too_big", p.encap_too_big),
            ("encap_no_headroom", p.encap_no_headroom),
            ("no_peer", p.no_peer),
            ("arp_answered", a.answered),
            ("arp_suppressed_in", a.suppressed_in),
            ("arp_suppressed_out", a.suppressed_out),
            ("arp_rewritten", a.rewritten),
            ("arp_malformed", a.malformed),
            ("arp_announced", announced),
            ("arp_announce_errors", self.announce_errors),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
        let services = self
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let st = t.services.get(i);
                let c = &svc[i];
                let mut pl: Vec<(u32, u64)> = placements
                    .iter()
                    .filter(|(si, _, _)| usize::from(*si) == i)
                    .map(|(_, n, c)| (*n, *c))
                    .collect();
                pl.sort_unstable();
                let serving = st.map(|x| x.serving.clone()).unwrap_or_default();
                let mut unhealthy: Vec<u32> = self
                    .alive
                    .iter()
                    .copied()
                    .filter(|&n| s.has_member(n))
                    .filter(|&n| {
                        s.health_check.is_some()
                            && (self.unhealthy.contains(&(i as u16, n))
                                || self
                                    .health
                                    .iter()
                                    .any(|(hn, m)| *hn == n && !m.is_healthy(i as u16)))
                    })
                    .collect();
                unhealthy.dedup();
                VipStatus {
                    name: s.name.clone(),
                    vip: s.vip.to_string(),
                    protocol: match s.protocol {
                        VipProtocol::Tcp => "tcp".into(),
                        VipProtocol::Udp => "udp".into(),
                    },
                    owner: t.owner_of(s.vip),
                    serving,
                    unhealthy,
                    degraded: st.is_some_and(|x| x.degraded),
                    packets: c.packets,
                    bytes: c.bytes,
                    new_flows: c.new_flows,
                    sticky_hits: c.sticky_hits,
                    placed_local: c.placed_local,
                    placed_remote: c.placed_remote,
                    encapsulated: c.encapsulated,
                    placements: pl,
                }
            })
            .collect();
        let nodes = self
            .hosts
            .iter()
            .map(|h| DirectorNodeStatus {
                node: h.node,
                host_address: h.ip.to_string(),
                mac: h.mac.as_ref().map(fmt_mac),
                alive: self.alive.contains(&h.node),
                placements: placements
                    .iter()
                    .filter(|(_, n, _)| *n == h.node)
                    .map(|(_, _, c)| c)
                    .sum(),
            })
            .collect();
        DirectorStatus {
            ready,
            local_mac: local_mac.as_ref().map(fmt_mac).unwrap_or_default(),
            tables_published: self.published,
            alive: self.alive.clone(),
            owned_vips: self.owned.iter().map(|v| v.to_string()).collect(),
            services,
            nodes,
            counters,
        }
    }
}

/// The static membership view: this node, the configured exchange peers
/// and every explicit member of a VIP service.
pub fn static_alive(cfg: &Config) -> Vec<NodeId> {
    let mut v = vec![NodeId::from(cfg.node.id)];
    v.extend(
        cfg.exchange
            .peers
            .iter()
            .filter_map(|p| parse_peer(p).ok())
            .map(|(id, _)| NodeId::from(id)),
    );
    for s in &cfg.vips {
        v.extend(s.members.iter().copied());
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Prometheus export of the director status.
pub fn export_metrics(st: &DirectorStatus) {
    for (name, v) in &st.counters {
        metrics::counter!("headroom_director_total", "counter" => name.clone()).absolute(*v);
    }
    for s in &st.services {
        let l = |k: &'static str| [("vip", s.name.clone()), ("what", k.to_string())];
        metrics::counter!("headroom_vip_packets_total", &l("packets")[..1]).absolute(s.packets);
        metrics::counter!("headroom_vip_bytes_total", &l("bytes")[..1]).absolute(s.bytes);
        metrics::counter!("headroom_vip_new_flows_total", &l("new")[..1]).absolute(s.new_flows);
        metrics::counter!("headroom_vip_sticky_hits_total", &l("sticky")[..1])
            .absolute(s.sticky_hits);
        metrics::counter!("headroom_vip_encapsulated_total", &l("encap")[..1])
            .absolute(s.encapsulated);
        metrics::gauge!("headroom_vip_owner", &l("owner")[..1]).set(s.owner.map_or(0.0, f64::from));
        for (node, c) in &s.placements {
            metrics::counter!("headroom_vip_placements_total", "vip" => s.name.clone(), "node" => node.to_string()).absolute(*c);
        }
    }
}

/// Text lines for `headroomctl status`.
pub fn render_text(d: &DirectorStatus, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "director: {} mac {} alive {:?} owns {:?} tables {}",
        if d.ready { "ready" } else { "not ready" },
        d.local_mac,
        d.alive,
        d.owned_vips,
        d.tables_published
    );
    for s in &d.services {
        let _ = writeln!(
            out,
            "  vip {} {} {}: owner {:?} serving {:?} unhealthy {:?}{} packets {} bytes {} new {} sticky {} local {} remote {} encap {} placements {:?}",
            s.name,
            s.vip,
            s.protocol,
            s.owner,
            s.serving,
            s.unhealthy,
            if s.degraded { " DEGRADED" } else { "" },
            s.packets,
            s.bytes,
            s.new_flows,
            s.sticky_hits,
            s.placed_local,
            s.placed_remote,
            s.encapsulated,
            s.placements
        );
    }
    for n in &d.nodes {
        let _ = writeln!(
            out,
            "  node {} host {} mac {} {} placements {}",
            n.node,
            n.host_address,
            n.mac.as_deref().unwrap_or("?"),
            if n.alive { "alive" } else { "down" },
            n.placements
        );
    }
    let c: Vec<String> = d
        .counters
        .iter()
        .filter(|(_, v)| *v > 0)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    let _ = writeln!(out, "  {}", c.join(" "));
}

fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Complete entries of the kernel's IPv4 neighbour table.
fn read_arp_table() -> Vec<(Ipv4Addr, [u8; 6])> {
    let Ok(f) = std::fs::File::open("/proc/net/arp") else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .skip(1)
        .map_while(Result::ok)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let ip: Ipv4Addr = cols.first()?.parse().ok()?;
            let flags = u32::from_str_radix(cols.get(2)?.trim_start_matches("0x"), 16).ok()?;
            let mac = parse_mac(cols.get(3)?)?;
            (flags & 0x2 != 0 && mac != [0; 6]).then_some((ip, mac))
        })
        .collect()
}

/// A send-only AF_PACKET socket on one interface (gratuitous ARP leaves
/// through the kernel: XDP only sees received frames).
struct PacketSender {
    fd: OwnedFd,
}

impl PacketSender {
    fn open(ifname: &str) -> std::io::Result<Self> {
        let name = std::ffi::CString::new(ifname)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: `name` is a valid NUL-terminated string for the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: plain socket(2) call; protocol 0 receives nothing.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the length passed.
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
        Ok(PacketSender { fd })
    }

    fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        // SAFETY: `frame` is valid for reads of its length during the call.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}
