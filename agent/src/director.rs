//! Director control: builds and publishes the director tables, drives the
//! health checks of every pool node's instance, resolves the pool's host
//! MACs, keeps the ARP ownership of VIPs and has the gratuitous ARPs of a new
//! owner sent. Sans-IO: time is passed in, and what needs the outside world
//! goes through the agent's outbox.
//!
//! # Inputs
//! * Membership: [`Director::on_membership`] with the live node ids. Until
//!   live membership runs (or converges) the static view stays in force: this
//!   node, the `[exchange] peers` and every explicit VIP member.
//! * Health: every node's instance is probed at its host address
//!   ([`Transmit::Probe`]; results come back through
//!   [`Director::handle_probe_result`]).
//! * Host addresses (`[[director.hosts]]`): the encapsulation endpoints.
//!   Their MACs come from the config or from the kernel neighbour table of
//!   the node's own interface: the director asks for it
//!   ([`Command::ReadNeighbours`]), takes it in [`Director::handle_neighbours`]
//!   and asks the runtime to make the kernel resolve what is missing
//!   ([`Transmit::ResolveNeighbour`]). This server's own host address (the
//!   node address on a real server) comes with the MAC of the interface
//!   that carries it.
//!
//! # Outputs
//! Every change rebuilds [`DirectorTables`] and publishes them through the
//! [`TableCell`] the workers follow; a new owner's gratuitous ARPs are
//! [`Transmit::Frame`]s for the outer interface.

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use headroom_clock::Timestamp;
use headroom_config::{
    parse_peer,
    vip::{parse_mac, DirectorSettings, VipProtocol, VipService},
    Config,
};
use headroom_control::health::{probe::ProbeResult, HealthMonitor, Transition};
use headroom_dataplane::{
    arp::{ArpConfig, ArpInterceptor},
    director::{
        path::{Peer, Peers},
        DirectorTables, NodeId, PoolView, TableCell,
    },
    pipeline::director_stage::{DirectorReport, ServiceCounters},
};

use crate::{
    status::{DirectorNodeStatus, DirectorStatus, VipStatus},
    Command, Outbox, Transmit,
};

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
#[derive(Debug)]
pub struct Director {
    services: Vec<VipService>,
    settings: DirectorSettings,
    local: NodeId,
    cell: Arc<TableCell>,
    hosts: Vec<Host>,
    alive: Vec<NodeId>,
    unhealthy: Vec<(u16, NodeId)>,
    health: Vec<(NodeId, HealthMonitor)>,
    arp: Option<ArpInterceptor>,
    owned: Vec<Ipv4Addr>,
    tables: Arc<DirectorTables>,
    published: u64,
    announce_errors: u64,
    next_resolve: Timestamp,
    dirty: bool,
    static_alive: Vec<NodeId>,
    live_after: Timestamp,
    live_converged: bool,
    headroom: std::collections::HashMap<NodeId, u32>,
}

impl Director {
    /// The director of `cfg`, or None when no VIP service is configured.
    pub fn new(cfg: &Config, now: Timestamp) -> Option<Self> {
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
        let mut health = Vec::new();
        if cfg.vips.iter().any(|s| s.health_check.is_some()) {
            for h in &hosts {
                health.push((h.node, HealthMonitor::new(&cfg.vips, h.ip, now)));
            }
        }
        let cell = Arc::new(TableCell::new(DirectorTables::empty(local)));
        let mut d = Director {
            services: cfg.vips.clone(),
            settings: cfg.director.clone(),
            local,
            tables: cell.load(),
            cell,
            hosts,
            alive: Vec::new(),
            unhealthy: Vec::new(),
            health,
            arp: None,
            owned: Vec::new(),
            published: 0,
            announce_errors: 0,
            next_resolve: now,
            dirty: true,
            static_alive: static_alive(cfg),
            live_after: now + cfg.exchange.failure_timeout,
            live_converged: false,
            headroom: std::collections::HashMap::new(),
        };
        d.on_membership(&d.static_alive.clone());
        Some(d)
    }

    /// A new policy's VIP services (added, removed, re-weighted, drained
    /// with weight 0, new members or health checks): the tables are rebuilt
    /// at the next tick. Established flows keep their node while it serves
    /// (conntrack is the workers' and outlives tables); a drained node gets
    /// no new flows. Health state is kept when no health check changed.
    pub fn reconfigure(&mut self, cfg: &Config, now: Timestamp) {
        if cfg.vips == self.services {
            return;
        }
        let checks = |v: &[VipService]| -> Vec<_> {
            v.iter()
                .map(|s| (s.vip, s.ports.clone(), s.health_check.clone()))
                .collect()
        };
        if checks(&cfg.vips) != checks(&self.services) {
            self.health.clear();
            self.unhealthy.clear();
            if cfg.vips.iter().any(|s| s.health_check.is_some()) {
                for h in &self.hosts {
                    self.health
                        .push((h.node, HealthMonitor::new(&cfg.vips, h.ip, now)));
                }
            }
        }
        tracing::info!(services = cfg.vips.len(), "director: VIP services replaced");
        self.services = cfg.vips.clone();
        // The ARP interceptor answers for the new set of VIPs (and announces
        // the owned ones) from the next rebuild.
        self.arp = None;
        self.dirty = true;
    }

    /// Each node's live headroom factor (see `headroom`): multiplies the
    /// static weights of new placements. Empty: static weights only.
    pub fn set_headroom(&mut self, factors: std::collections::HashMap<NodeId, u32>) {
        if factors != self.headroom {
            tracing::info!(?factors, "director: headroom factors");
            self.headroom = factors;
            self.dirty = true;
        }
    }

    /// The cell the workers follow.
    pub fn cell(&self) -> &Arc<TableCell> {
        &self.cell
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
    pub fn on_live_nodes(&mut self, now: Timestamp, live: &[NodeId]) {
        if !self.live_converged {
            let all = self.static_alive.iter().all(|n| live.contains(n));
            if !all && now < self.live_after {
                return;
            }
            self.live_converged = true;
        }
        self.on_membership(live);
    }

    /// Timers: health, MAC resolution, table rebuilds, announcements. Call
    /// from the control loop's high-frequency branch.
    pub(crate) fn handle_tick(&mut self, now: Timestamp, out: &mut Outbox) {
        for i in 0..self.health.len() {
            let node = self.health[i].0;
            let changes = self.health[i].1.handle_timeout(now);
            for ch in changes {
                self.on_health(node, ch.service, ch.transition);
            }
            while let Some(request) = self.health[i].1.poll_probe() {
                out.transmits.push_back(Transmit::Probe { node, request });
            }
        }
        if now >= self.next_resolve {
            // Re-asked if the neighbour table does not come back.
            self.next_resolve = now + RESOLVE_EVERY;
            out.commands.push_back(Command::ReadNeighbours);
        }
        self.update(now, out);
    }

    /// The result of a health probe of `node`'s instance.
    pub(crate) fn handle_probe_result(
        &mut self,
        now: Timestamp,
        node: NodeId,
        result: &ProbeResult,
        out: &mut Outbox,
    ) {
        let Some(i) = self.health.iter().position(|(n, _)| *n == node) else {
            return;
        };
        if let Some(ch) = self.health[i].1.handle_result(now, result) {
            self.on_health(node, ch.service, ch.transition);
            self.update(now, out);
        }
    }

    fn on_health(&mut self, node: NodeId, service: u16, transition: Transition) {
        let key = (service, node);
        match transition {
            Transition::Down => {
                if !self.unhealthy.contains(&key) {
                    self.unhealthy.push(key);
                }
            }
            Transition::Up => self.unhealthy.retain(|k| *k != key),
        }
        tracing::info!(node, service, ?transition, "director: health");
        self.dirty = true;
    }

    /// The kernel's neighbour table (complete IPv4 entries of the outer
    /// interface's namespace, this server's own addresses included, as asked
    /// for by [`Command::ReadNeighbours`]):
    /// takes the host MACs in and asks the kernel to resolve the missing ones.
    pub(crate) fn handle_neighbours(
        &mut self,
        now: Timestamp,
        table: &[(Ipv4Addr, [u8; 6])],
        out: &mut Outbox,
    ) {
        let mut all = true;
        for h in self.hosts.iter_mut().filter(|h| !h.configured) {
            let found = table.iter().find(|(ip, _)| *ip == h.ip).map(|(_, m)| *m);
            match found {
                Some(m) if h.mac != Some(m) => {
                    tracing::info!(node = h.node, ip = %h.ip, mac = %fmt_mac(&m), "director: host MAC");
                    h.mac = Some(m);
                    self.dirty = true;
                }
                Some(_) => {}
                None => {
                    all = false;
                    out.transmits
                        .push_back(Transmit::ResolveNeighbour { to: h.ip });
                }
            }
        }
        self.next_resolve = now + if all { RECHECK_EVERY } else { RESOLVE_EVERY };
        self.update(now, out);
    }

    /// A gratuitous ARP could not be sent.
    pub(crate) fn announce_failed(&mut self) {
        self.announce_errors += 1;
    }

    /// Rebuilds what changed and queues the announcements that are due.
    pub(crate) fn update(&mut self, now: Timestamp, out: &mut Outbox) {
        if self.dirty {
            self.dirty = false;
            self.rebuild(now);
        }
        self.announce(now, out);
    }

    /// A node's host instance starts unhealthy until its first probes pass:
    /// health-checked services start with every member in `unhealthy`.
    fn pool(&self) -> PoolView {
        let mut pool = PoolView {
            alive: self.alive.clone(),
            headroom: self.headroom.iter().map(|(n, h)| (*n, *h)).collect(),
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

    fn rebuild(&mut self, now: Timestamp) {
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
                    announce_spacing_ns: nanos(self.settings.gratuitous_arp_interval),
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
            a.sync_owned(now.as_nanos(), &self.owned);
        }
    }

    fn announce(&mut self, now: Timestamp, out: &mut Outbox) {
        let Some(arp) = &mut self.arp else {
            return;
        };
        let mut buf = [0u8; 64];
        while let Some(n) = arp.poll_announce(now.as_nanos(), &mut buf) {
            out.transmits.push_back(Transmit::Frame {
                payload: buf[..n].to_vec(),
            });
        }
    }

    /// Status, with the workers' counters summed.
    pub fn status<'a>(&self, reports: impl Iterator<Item = &'a DirectorReport>) -> DirectorStatus {
        let t = &self.tables;
        let mut total = DirectorReport::default();
        let mut svc: Vec<ServiceCounters> = vec![Default::default(); self.services.len()];
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
            p.mss_clamped += r.path.mss_clamped;
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
            ("mss_clamped", p.mss_clamped),
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

fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
