//! Flow director: load-balances VIP services across the pool with direct
//! server return.
//!
//! # Roles
//! Every member server has the VIP on its host stack. One server, the VIP
//! *owner* ([`owner`]: the lowest live node id among the members of the
//! services using that address), answers ARP for it, so the network delivers
//! all client packets for the VIP to the owner. The owner's workers call
//! [`Director::decide`] per packet: [`Placement::Local`] hands the frame to
//! the local host stack, [`Placement::Remote`] encapsulates it
//! ([`encap::encapsulate`]) towards the chosen node, whose worker
//! decapsulates it ([`encap::decapsulate`]) and delivers the original packet
//! to its own host stack. Replies leave the serving node directly (DSR).
//!
//! # Placement of a packet
//! 1. Pinned flow in the connection table whose backend still serves: that
//!    backend (table changes never move a live connection).
//! 2. Pinned flow whose backend died or failed its health check: re-placed as
//!    below and re-pinned.
//! 3. New flow (TCP SYN without ACK, or any UDP datagram of an unknown flow):
//!    the source-IP sticky entry if the service is sticky and the remembered
//!    node still serves, else the service's Maglev table.
//! 4. Mid-connection packet of an unknown flow (TCP without SYN): Maglev
//!    lookup on the same hash as a new flow would use, then pinned.
//!
//! # Why owner failover keeps connections (consistent hashing argument)
//! Conntrack is local to the owner's workers and is lost when the owner
//! dies. The new owner sees mid-connection packets of flows it never saw
//! start (case 4). Every node builds a bit-identical Maglev table from the
//! same gossiped inputs (members, weights, health: [`maglev`] sorts by node
//! id and uses fixed hash functions), and the lookup hash depends only on
//! the packet (5-tuple, or client address for sticky services). So the new
//! owner picks the same backend the old owner picked, provided the table did
//! not change while the connection lived. Flows placed while the table
//! differed (a weight change, or a sticky entry overriding Maglev) may land
//! elsewhere after failover; Maglev's minimal disruption bounds that to the
//! slots that changed. Workers of one owner agree for the same reason (the
//! NIC spreads flows over workers by RSS, each worker has its own tables).
//!
//! # Tables
//! [`DirectorTables`] holds per-service Maglev tables built by the control
//! thread ([`DirectorTables::build`]) and published through a [`TableCell`];
//! workers pick up a new version with one atomic load per batch
//! ([`Director::refresh`]). Nothing on the packet path allocates or locks.

pub mod conntrack;
pub mod encap;
pub mod hash;
pub mod maglev;
pub mod path;
pub mod sticky;
pub mod table;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use headroom_config::vip::{PortRange, VipService};
use thiserror::Error;

use conntrack::{ConnKey, Conntrack, ConntrackConfig};
use hash::{flow_hash, ip_hash};
pub use maglev::NodeId;
use maglev::{Backend, MaglevError, MaglevTable};
use path::Peers;
use sticky::StickyTable;

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// TCP flag bits (byte 13 of the TCP header).
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// Largest headroom multiplier accepted from gossip (bounds weight products).
pub const MAX_HEADROOM: u32 = 1_000_000;

/// Index of a VIP service in the configured service list.
pub type ServiceIdx = u16;

/// The parsed fields of a packet the director needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowFields {
    /// IP protocol.
    pub proto: u8,
    /// Source (client) address.
    pub src: Ipv4Addr,
    /// Destination address (a VIP if the packet is for a service).
    pub dst: Ipv4Addr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Deliver to the local host stack.
    Local,
    /// Encapsulate towards `node`; the service index goes in the header.
    Remote(NodeId, ServiceIdx),
    /// Not addressed to a configured VIP service: normal processing.
    NotVip,
    /// A VIP service with no live member: deliver locally (the host stack
    /// answers with a reset or ICMP) or drop; counted.
    NoBackend,
}

/// Lowest node id of a sorted list of live members: the VIP owner.
///
/// Deterministic: every node that agrees on membership agrees on the owner,
/// with no extra election round. When the owner dies, membership removes it
/// and the next lowest id takes over (and announces with gratuitous ARP);
/// when a lower id joins, ownership moves to it. `None` if nobody is alive.
pub fn owner(members_alive_sorted: &[NodeId]) -> Option<NodeId> {
    debug_assert!(members_alive_sorted.windows(2).all(|w| w[0] < w[1]));
    members_alive_sorted.first().copied()
}

/// Pool state the tables are built from (supplied by membership and the lead).
#[derive(Debug, Clone, Default)]
pub struct PoolView {
    /// Live node ids, any order.
    pub alive: Vec<NodeId>,
    /// Gossiped headroom multiplier per node (any common scale; only ratios
    /// matter; capped at [`MAX_HEADROOM`]). Nodes absent here count as 1.
    pub headroom: HashMap<NodeId, u32>,
    /// (service index, node) pairs whose application failed its health check.
    pub unhealthy: HashSet<(ServiceIdx, NodeId)>,
}

/// Error building director tables.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    /// More services than a [`ServiceIdx`] can index.
    #[error("too many VIP services ({0})")]
    TooManyServices(usize),
    /// A service's Maglev table could not be built.
    #[error("service {service}: {source}")]
    Maglev {
        /// Service index.
        service: ServiceIdx,
        /// Cause.
        source: MaglevError,
    },
}

/// Compiled state of one service.
#[derive(Debug, Clone)]
pub struct ServiceTable {
    /// Index in the configured list (goes in the encapsulation header).
    pub index: ServiceIdx,
    /// The VIP.
    pub vip: Ipv4Addr,
    /// IP protocol.
    pub proto: u8,
    /// Served destination ports.
    pub ports: Vec<PortRange>,
    /// Stickiness period (0 = off).
    pub sticky_ns: u64,
    /// Placement table for new flows.
    pub maglev: MaglevTable,
    /// Nodes that may keep pinned flows: live, member, healthy (sorted).
    pub serving: Vec<NodeId>,
    /// True if no member was healthy and health was ignored for this build.
    pub degraded: bool,
}

impl ServiceTable {
    /// Whether pinned flows may stay on `node`.
    #[inline]
    pub fn serves(&self, node: NodeId) -> bool {
        self.serving.binary_search(&node).is_ok()
    }
}

/// Immutable set of compiled services, shared by all workers.
#[derive(Debug, Clone)]
pub struct DirectorTables {
    /// Local node id.
    pub local: NodeId,
    /// Compiled services, indexed by [`ServiceIdx`].
    pub services: Vec<ServiceTable>,
    /// Owner of every VIP address (`None` if no member is alive).
    pub owners: Vec<(Ipv4Addr, Option<NodeId>)>,
    /// Underlay addresses of the pool (for encapsulation).
    pub peers: Peers,
    by_vip: HashMap<(u32, u8), Vec<ServiceIdx>>,
}

impl DirectorTables {
    /// Tables with no service (every packet is [`Placement::NotVip`]).
    pub fn empty(local: NodeId) -> Self {
        DirectorTables {
            local,
            services: Vec::new(),
            owners: Vec::new(),
            peers: Peers::default(),
            by_vip: HashMap::new(),
        }
    }

    /// Attaches the pool's underlay addresses.
    pub fn with_peers(mut self, peers: Peers) -> Self {
        self.peers = peers;
        self
    }

    /// Builds all tables; run on the control thread whenever membership,
    /// weights, headroom or health change. `table_size` must be prime
    /// ([`maglev::DEFAULT_TABLE_SIZE`]).
    pub fn build(
        services: &[VipService],
        pool: &PoolView,
        local: NodeId,
        table_size: usize,
    ) -> Result<Self, BuildError> {
        if services.len() > usize::from(ServiceIdx::MAX) {
            return Err(BuildError::TooManyServices(services.len()));
        }
        let mut alive = pool.alive.clone();
        alive.sort_unstable();
        alive.dedup();
        let mut out = DirectorTables::empty(local);
        let mut vip_members: Vec<(Ipv4Addr, Vec<NodeId>)> = Vec::new();
        for (i, svc) in services.iter().enumerate() {
            let index = i as ServiceIdx;
            let members: Vec<NodeId> = alive
                .iter()
                .copied()
                .filter(|&n| svc.has_member(n))
                .collect();
            match vip_members.iter_mut().find(|(v, _)| *v == svc.vip) {
                Some((_, m)) => m.extend_from_slice(&members),
                None => vip_members.push((svc.vip, members.clone())),
            }
            let healthy: Vec<NodeId> = members
                .iter()
                .copied()
                .filter(|&n| !pool.unhealthy.contains(&(index, n)))
                .collect();
            let weigh = |nodes: &[NodeId], use_headroom: bool| -> Vec<Backend> {
                nodes
                    .iter()
                    .map(|&n| {
                        let h = if use_headroom {
                            pool.headroom
                                .get(&n)
                                .copied()
                                .unwrap_or(1)
                                .min(MAX_HEADROOM)
                        } else {
                            1
                        };
                        Backend {
                            node: n,
                            weight: svc.weight_of(n).saturating_mul(h),
                        }
                    })
                    .collect()
            };
            let mut degraded = false;
            let mut serving = healthy.clone();
            let mut backends = weigh(&healthy, true);
            if backends.iter().all(|b| b.weight == 0) {
                // Nobody healthy with headroom: better to spread over the
                // healthy nodes by static weight, else over every live member.
                backends = weigh(&healthy, false);
                if backends.iter().all(|b| b.weight == 0) {
                    degraded = true;
                    serving = members.clone();
                    backends = weigh(&members, false);
                }
            }
            let maglev =
                MaglevTable::build(&backends, table_size).map_err(|source| BuildError::Maglev {
                    service: index,
                    source,
                })?;
            out.by_vip
                .entry((u32::from(svc.vip), svc.protocol.ip_proto()))
                .or_default()
                .push(index);
            out.services.push(ServiceTable {
                index,
                vip: svc.vip,
                proto: svc.protocol.ip_proto(),
                ports: svc.ports.clone(),
                sticky_ns: u64::try_from(svc.sticky_timeout.as_nanos()).unwrap_or(u64::MAX),
                maglev,
                serving,
                degraded,
            });
        }
        for (vip, mut m) in vip_members {
            m.sort_unstable();
            m.dedup();
            out.owners.push((vip, owner(&m)));
        }
        Ok(out)
    }

    /// Service serving `dst:dport` over `proto`, if any.
    #[inline]
    pub fn find(&self, dst: Ipv4Addr, proto: u8, dport: u16) -> Option<&ServiceTable> {
        let idxs = self.by_vip.get(&(u32::from(dst), proto))?;
        idxs.iter()
            .map(|&i| &self.services[usize::from(i)])
            .find(|s| s.ports.iter().any(|r| r.contains(dport)))
    }

    /// Owner of a VIP address.
    pub fn owner_of(&self, vip: Ipv4Addr) -> Option<NodeId> {
        self.owners
            .iter()
            .find(|(v, _)| *v == vip)
            .and_then(|(_, o)| *o)
    }

    /// VIP addresses this node owns (for the ARP interceptor).
    pub fn owned_vips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.owners
            .iter()
            .filter(move |(_, o)| *o == Some(self.local))
            .map(|(v, _)| *v)
    }
}

/// Publication point of the current tables: written by the control thread,
/// polled by workers (an atomic generation check per batch; the tables are
/// loaded, lock-free through `arc-swap`, only when the generation changed).
#[derive(Debug)]
pub struct TableCell {
    generation: AtomicU64,
    current: arc_swap::ArcSwap<DirectorTables>,
}

impl TableCell {
    /// Cell holding `tables` as generation 1.
    pub fn new(tables: DirectorTables) -> Self {
        TableCell {
            generation: AtomicU64::new(1),
            current: arc_swap::ArcSwap::from_pointee(tables),
        }
    }

    /// Publishes new tables (control thread).
    pub fn publish(&self, tables: DirectorTables) {
        self.current.store(Arc::new(tables));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Current generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Current tables.
    pub fn load(&self) -> Arc<DirectorTables> {
        self.current.load_full()
    }
}

/// Director counters of one worker.
#[derive(Debug, Clone, Default)]
pub struct DirectorStats {
    /// Packets for a VIP service.
    pub vip_packets: u64,
    /// Packets not addressed to a VIP service.
    pub not_vip: u64,
    /// New flows placed (TCP SYN or unknown UDP flow).
    pub new_flows: u64,
    /// Mid-connection packets of unknown flows placed by Maglev (failover).
    pub midflow_placed: u64,
    /// Pinned flows re-placed because their backend stopped serving.
    pub replaced_failed: u64,
    /// Flow placements that chose this node.
    pub placed_local: u64,
    /// Flow placements that chose another node.
    pub placed_remote: u64,
    /// Flow placements per remote node (preallocated; ids beyond its
    /// capacity are counted in `placed_remote` only).
    pub placed_remote_by_node: HashMap<NodeId, u64>,
    /// New flows placed by a source-IP sticky entry.
    pub sticky_hits: u64,
    /// Packets of a service with no live member.
    pub no_backend: u64,
    /// Live pinned flows evicted from the bounded connection table.
    pub conntrack_evictions: u64,
    /// Pinned flows right now (gauge; includes expired ones not yet swept).
    pub active_flows: u64,
    /// Table versions installed.
    pub table_swaps: u64,
}

/// Capacity of the per-node placement counter map (no growth on the path).
const NODE_STATS_CAPACITY: usize = 256;

/// Per-worker director.
#[derive(Debug)]
pub struct Director {
    cell: Option<Arc<TableCell>>,
    seen_generation: u64,
    tables: Arc<DirectorTables>,
    conntrack: Conntrack,
    sticky: StickyTable,
    stats: DirectorStats,
}

impl Director {
    /// Director with its own tables; `sticky_capacity` bounds the sticky table.
    pub fn new(tables: Arc<DirectorTables>, ct: ConntrackConfig, sticky_capacity: usize) -> Self {
        let mut stats = DirectorStats::default();
        stats.placed_remote_by_node.reserve(NODE_STATS_CAPACITY);
        Director {
            cell: None,
            seen_generation: 0,
            tables,
            conntrack: Conntrack::new(ct),
            sticky: StickyTable::new(sticky_capacity),
            stats,
        }
    }

    /// Director following a [`TableCell`] (call [`Director::refresh`] per batch).
    pub fn with_cell(cell: Arc<TableCell>, ct: ConntrackConfig, sticky_capacity: usize) -> Self {
        let generation = cell.generation();
        let mut d = Director::new(cell.load(), ct, sticky_capacity);
        d.seen_generation = generation;
        d.cell = Some(cell);
        d
    }

    /// Installs new tables directly.
    pub fn install(&mut self, tables: Arc<DirectorTables>) {
        self.tables = tables;
        self.stats.table_swaps += 1;
    }

    /// Generation of the tables in use (0 without a cell).
    pub fn generation(&self) -> u64 {
        self.seen_generation
    }

    /// Picks up newly published tables; returns whether they changed. One
    /// atomic load when nothing changed.
    #[inline]
    pub fn refresh(&mut self) -> bool {
        let Some(cell) = &self.cell else {
            return false;
        };
        let g = cell.generation();
        if g == self.seen_generation {
            return false;
        }
        let t = cell.load();
        self.seen_generation = g;
        self.install(t);
        true
    }

    /// Current tables.
    pub fn tables(&self) -> &Arc<DirectorTables> {
        &self.tables
    }

    /// Counters (the `active_flows` gauge and eviction count are updated here).
    pub fn stats(&mut self) -> &DirectorStats {
        self.stats.active_flows = self.conntrack.len() as u64;
        self.stats.conntrack_evictions = self.conntrack.stats.evicted;
        &self.stats
    }

    /// Reclaims expired conntrack and sticky entries; call from the worker's
    /// idle/timer path with a small budget (slots scanned per table).
    pub fn sweep(&mut self, now_ns: u64, budget: usize) {
        self.conntrack.sweep(now_ns, budget);
        self.sticky.sweep(now_ns, budget);
    }

    /// Decides where a packet goes. Call for every packet arriving on the
    /// outer interface that is IPv4 TCP/UDP (non-first fragments excluded).
    #[inline]
    pub fn decide(&mut self, now_ns: u64, flow: &FlowFields) -> Placement {
        let tables = &self.tables;
        let Some(svc) = tables.find(flow.dst, flow.proto, flow.dport) else {
            self.stats.not_vip += 1;
            return Placement::NotVip;
        };
        self.stats.vip_packets += 1;
        let key = ConnKey::of(flow);
        let fhash = flow_hash(flow.proto, flow.src, flow.dst, flow.sport, flow.dport);
        let mut replaced = false;
        if let Some(node) = self.conntrack.lookup(&key, fhash, now_ns, flow.tcp_flags) {
            if svc.serves(node) {
                return to_placement(node, tables.local, svc.index);
            }
            replaced = true;
        }
        let is_tcp = flow.proto == IPPROTO_TCP;
        let is_new = !is_tcp
            || (flow.tcp_flags & tcp_flags::SYN != 0 && flow.tcp_flags & tcp_flags::ACK == 0);
        let lookup_hash = if svc.sticky_ns > 0 {
            ip_hash(flow.src)
        } else {
            fhash
        };
        let mut chosen = None;
        let mut sticky_hit = false;
        if svc.sticky_ns > 0 && (is_new || replaced) {
            if let Some(n) = self.sticky.get(svc.index, flow.src, now_ns) {
                if svc.serves(n) {
                    chosen = Some(n);
                    sticky_hit = true;
                }
            }
        }
        let node = match chosen.or_else(|| svc.maglev.lookup(lookup_hash)) {
            Some(n) => n,
            None => {
                self.stats.no_backend += 1;
                return Placement::NoBackend;
            }
        };
        if svc.sticky_ns > 0 && (is_new || replaced) {
            self.sticky
                .record(svc.index, flow.src, node, now_ns, svc.sticky_ns, sticky_hit);
            if sticky_hit {
                self.stats.sticky_hits += 1;
            }
        }
        if replaced {
            self.stats.replaced_failed += 1;
        } else if is_new {
            self.stats.new_flows += 1;
        } else {
            self.stats.midflow_placed += 1;
        }
        // A RST on an unknown flow ends it: place it, but do not pin it.
        if replaced || flow.tcp_flags & tcp_flags::RST == 0 {
            self.conntrack.pin(key, fhash, node, now_ns, flow.tcp_flags);
        }
        if node == tables.local {
            self.stats.placed_local += 1;
        } else {
            self.stats.placed_remote += 1;
            let m = &mut self.stats.placed_remote_by_node;
            if let Some(c) = m.get_mut(&node) {
                *c += 1;
            } else if m.len() < NODE_STATS_CAPACITY {
                m.insert(node, 1);
            }
        }
        to_placement(node, tables.local, svc.index)
    }
}

#[inline]
fn to_placement(node: NodeId, local: NodeId, svc: ServiceIdx) -> Placement {
    if node == local {
        Placement::Local
    } else {
        Placement::Remote(node, svc)
    }
}

#[cfg(test)]
mod tests;
