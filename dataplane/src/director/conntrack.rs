//! Connection table pinning established flows to their backend.
//!
//! Once a flow is placed, its packets follow the pinned backend even if the
//! Maglev table changes (weights, membership), so live connections never
//! move. The director re-places a pinned flow only when its backend is no
//! longer serving (dead or unhealthy). Only the client-to-VIP direction is
//! seen (direct server return), so TCP state is inferred from that side:
//! a SYN-only flow has a short lifetime (bounds SYN-flood pollution), the
//! first packet carrying ACK makes it established, and FIN or RST moves it to
//! a short closing lifetime that later packets do not extend back.

use std::net::Ipv4Addr;

use super::maglev::NodeId;
use super::table::{BoundedTable, Insert};
use super::{tcp_flags, FlowFields, IPPROTO_TCP};

/// Lifetimes and size of the connection table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Capacity in entries (rounded up to the table's bucket geometry).
    pub capacity: usize,
    /// Idle lifetime of a TCP flow that has only sent SYNs.
    pub tcp_syn_ns: u64,
    /// Idle lifetime of an established TCP flow.
    pub tcp_established_ns: u64,
    /// Lifetime after FIN or RST was seen.
    pub tcp_closing_ns: u64,
    /// Idle lifetime of a UDP flow.
    pub udp_ns: u64,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        const S: u64 = 1_000_000_000;
        ConntrackConfig {
            capacity: 1 << 18,
            tcp_syn_ns: 10 * S,
            tcp_established_ns: 300 * S,
            tcp_closing_ns: 10 * S,
            udp_ns: 30 * S,
        }
    }
}

impl ConntrackConfig {
    /// Table settings from the node's director configuration (SYN-only and
    /// closing lifetimes keep their defaults).
    pub fn from_settings(s: &headroom_config::vip::DirectorSettings) -> Self {
        let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        ConntrackConfig {
            capacity: s.conntrack_capacity,
            tcp_established_ns: ns(s.tcp_idle),
            udp_ns: ns(s.udp_idle),
            ..ConntrackConfig::default()
        }
    }
}

/// Connection table key: the client-to-VIP 5-tuple.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Client address.
    pub src: u32,
    /// VIP.
    pub dst: u32,
    /// Client port.
    pub sport: u16,
    /// VIP port.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
}

impl ConnKey {
    /// Key of a flow.
    pub fn of(f: &FlowFields) -> Self {
        ConnKey {
            src: u32::from(f.src),
            dst: u32::from(f.dst),
            sport: f.sport,
            dport: f.dport,
            proto: f.proto,
        }
    }

    /// Client address.
    pub fn client(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src)
    }
}

/// Inferred TCP state of a pinned flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ConnState {
    /// Only SYNs seen (or a UDP flow, which has no states).
    #[default]
    Opening,
    /// ACK seen from the client.
    Established,
    /// FIN or RST seen from the client.
    Closing,
}

/// Value stored per flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnEntry {
    /// Backend the flow is pinned to.
    pub node: NodeId,
    /// Inferred state.
    pub state: ConnState,
}

/// Connection table counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConntrackStats {
    /// Flows pinned into a free slot.
    pub inserted: u64,
    /// Live flows evicted because their bucket was full (LRU within bucket).
    pub evicted: u64,
    /// Flows whose pinning was replaced (re-placement after backend failure).
    pub repinned: u64,
    /// Flows that saw FIN or RST.
    pub closing: u64,
    /// Expired entries reclaimed by [`Conntrack::sweep`].
    pub swept: u64,
}

/// Bounded connection table of one worker.
#[derive(Debug)]
pub struct Conntrack {
    table: BoundedTable<ConnKey, ConnEntry>,
    cfg: ConntrackConfig,
    /// Counters.
    pub stats: ConntrackStats,
}

fn next_state(proto: u8, prev: ConnState, flags: u8) -> ConnState {
    if proto != IPPROTO_TCP {
        return ConnState::Opening;
    }
    if prev == ConnState::Closing || flags & (tcp_flags::FIN | tcp_flags::RST) != 0 {
        ConnState::Closing
    } else if prev == ConnState::Established || flags & tcp_flags::ACK != 0 {
        ConnState::Established
    } else {
        ConnState::Opening
    }
}

impl Conntrack {
    /// Allocates the table.
    pub fn new(cfg: ConntrackConfig) -> Self {
        Conntrack {
            table: BoundedTable::with_capacity(cfg.capacity),
            cfg,
            stats: ConntrackStats::default(),
        }
    }

    fn lifetime(&self, proto: u8, state: ConnState) -> u64 {
        if proto != IPPROTO_TCP {
            return self.cfg.udp_ns;
        }
        match state {
            ConnState::Opening => self.cfg.tcp_syn_ns,
            ConnState::Established => self.cfg.tcp_established_ns,
            ConnState::Closing => self.cfg.tcp_closing_ns,
        }
    }

    /// Looks a flow up and, if pinned, refreshes its lifetime according to
    /// the TCP flags of this packet. Returns the pinned backend.
    #[inline]
    pub fn lookup(&mut self, key: &ConnKey, hash: u64, now_ns: u64, flags: u8) -> Option<NodeId> {
        let (mut e, h) = self.table.get(key, hash, now_ns)?;
        let st = next_state(key.proto, e.state, flags);
        if st == ConnState::Closing && e.state != ConnState::Closing {
            self.stats.closing += 1;
        }
        e.state = st;
        let exp = now_ns.saturating_add(self.lifetime(key.proto, st));
        self.table.touch(h, e, now_ns, exp);
        Some(e.node)
    }

    /// Pins (or re-pins) a flow to `node`.
    pub fn pin(&mut self, key: ConnKey, hash: u64, node: NodeId, now_ns: u64, flags: u8) {
        let state = next_state(key.proto, ConnState::Opening, flags);
        if state == ConnState::Closing {
            self.stats.closing += 1;
        }
        let exp = now_ns.saturating_add(self.lifetime(key.proto, state));
        match self
            .table
            .insert(key, hash, ConnEntry { node, state }, now_ns, exp)
        {
            Insert::Fresh => self.stats.inserted += 1,
            Insert::Replaced => self.stats.repinned += 1,
            Insert::Evicted => {
                self.stats.inserted += 1;
                self.stats.evicted += 1;
            }
        }
    }

    /// Forgets a flow.
    pub fn remove(&mut self, key: &ConnKey, hash: u64) -> bool {
        self.table.remove(key, hash)
    }

    /// Reclaims expired entries among the next `budget` slots.
    pub fn sweep(&mut self, now_ns: u64, budget: usize) -> usize {
        let n = self.table.sweep(now_ns, budget);
        self.stats.swept += n as u64;
        n
    }

    /// Pinned flows (occupied slots, including expired ones not yet reclaimed).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no flow is pinned.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Slot capacity.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::super::hash::flow_hash;
    use super::super::IPPROTO_UDP;
    use super::*;

    #[test]
    fn the_memory_budget_counts_the_table_as_allocated() {
        use headroom_config::machine as m;
        let cap = 1000;
        let ct = Conntrack::new(ConntrackConfig {
            capacity: cap,
            ..ConntrackConfig::default()
        });
        assert_eq!(
            ct.table.allocated_bytes() as u64,
            m::director_table_bytes(cap, m::CONNTRACK_SLOT_BYTES)
        );
    }

    const S: u64 = 1_000_000_000;

    fn key(sport: u16, proto: u8) -> (ConnKey, u64) {
        let f = FlowFields {
            proto,
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(10, 0, 0, 100),
            sport,
            dport: 80,
            tcp_flags: 0,
        };
        (
            ConnKey::of(&f),
            flow_hash(f.proto, f.src, f.dst, f.sport, f.dport),
        )
    }

    #[test]
    fn tcp_lifecycle_lifetimes() {
        let mut ct = Conntrack::new(ConntrackConfig::default());
        let (k, h) = key(1000, IPPROTO_TCP);
        ct.pin(k, h, 7, 0, tcp_flags::SYN);
        // SYN-only lifetime is short.
        assert_eq!(ct.lookup(&k, h, 9 * S, tcp_flags::SYN), Some(7));
        assert_eq!(ct.lookup(&k, h, 18 * S, tcp_flags::ACK), Some(7));
        // Established: long idle lifetime.
        assert_eq!(ct.lookup(&k, h, 300 * S, tcp_flags::ACK), Some(7));
        // FIN shortens it, and a later ACK does not extend it back.
        assert_eq!(
            ct.lookup(&k, h, 301 * S, tcp_flags::FIN | tcp_flags::ACK),
            Some(7)
        );
        assert_eq!(ct.lookup(&k, h, 305 * S, tcp_flags::ACK), Some(7));
        assert_eq!(ct.stats.closing, 1);
        assert_eq!(ct.lookup(&k, h, 316 * S, tcp_flags::ACK), None);
        assert!(ct.is_empty());
    }

    #[test]
    fn config_from_settings() {
        let s = headroom_config::vip::DirectorSettings {
            udp_idle: std::time::Duration::from_secs(5),
            conntrack_capacity: 100,
            ..Default::default()
        };
        let c = ConntrackConfig::from_settings(&s);
        assert_eq!(
            (c.capacity, c.udp_ns, c.tcp_established_ns),
            (100, 5 * S, 300 * S)
        );
    }

    #[test]
    fn syn_only_flow_expires_quickly() {
        let mut ct = Conntrack::new(ConntrackConfig::default());
        let (k, h) = key(1001, IPPROTO_TCP);
        ct.pin(k, h, 3, 0, tcp_flags::SYN);
        assert_eq!(ct.lookup(&k, h, 10 * S, tcp_flags::SYN), None);
    }

    #[test]
    fn rst_on_first_packet_is_closing() {
        let mut ct = Conntrack::new(ConntrackConfig::default());
        let (k, h) = key(1002, IPPROTO_TCP);
        ct.pin(k, h, 3, 0, tcp_flags::RST);
        assert_eq!(ct.stats.closing, 1);
        assert_eq!(ct.lookup(&k, h, 11 * S, 0), None);
    }

    #[test]
    fn udp_idle_timeout_and_refresh() {
        let mut ct = Conntrack::new(ConntrackConfig::default());
        let (k, h) = key(53, IPPROTO_UDP);
        ct.pin(k, h, 2, 0, 0);
        assert_eq!(ct.lookup(&k, h, 29 * S, 0), Some(2));
        assert_eq!(ct.lookup(&k, h, 58 * S, 0), Some(2));
        assert_eq!(ct.lookup(&k, h, 89 * S, 0), None);
    }

    #[test]
    fn repin_and_capacity_bound() {
        let cfg = ConntrackConfig {
            capacity: 64,
            ..ConntrackConfig::default()
        };
        let mut ct = Conntrack::new(cfg);
        let (k, h) = key(1, IPPROTO_UDP);
        ct.pin(k, h, 1, 0, 0);
        ct.pin(k, h, 2, 1, 0);
        assert_eq!(ct.stats.repinned, 1);
        assert_eq!(ct.lookup(&k, h, 2, 0), Some(2));
        for p in 0..1000u16 {
            let (k, h) = key(2000 + p, IPPROTO_UDP);
            ct.pin(k, h, 1, 10 + u64::from(p), 0);
        }
        assert!(ct.len() <= ct.capacity());
        assert_eq!(ct.len(), ct.capacity());
        assert!(ct.stats.evicted >= 1000 + 1 - ct.capacity() as u64);
        // The most recent flow is still there.
        let (k, h) = key(2999, IPPROTO_UDP);
        assert_eq!(ct.lookup(&k, h, 2000, 0), Some(1));
        // Everything expires and a sweep reclaims it.
        let mut freed = 0;
        while freed < ct.capacity() {
            let n = ct.sweep(1000 * S, 16);
            if n == 0 && ct.is_empty() {
                break;
            }
            freed += n;
        }
        assert!(ct.is_empty());
    }
}
