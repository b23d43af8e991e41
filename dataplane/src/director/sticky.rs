//! Source-IP stickiness: a client address keeps going to the same server for
//! `sticky_timeout` after its last new flow, even if the Maglev table changes in
//! between (weights follow gossiped headroom, so tables change often).

use std::net::Ipv4Addr;

use super::hash::mix64;
use super::maglev::NodeId;
use super::table::{BoundedTable, Insert};

/// Sticky table key: (service index, client address).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct StickyKey {
    service: u16,
    client: u32,
}

/// Sticky table counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StickyStats {
    /// New flows placed by an existing sticky entry.
    pub hits: u64,
    /// Live entries evicted because their bucket was full.
    pub evicted: u64,
}

/// Bounded client-address to node table of one worker.
#[derive(Debug)]
pub struct StickyTable {
    table: BoundedTable<StickyKey, NodeId>,
    /// Counters.
    pub stats: StickyStats,
}

#[inline]
fn key_hash(service: u16, client: Ipv4Addr) -> u64 {
    mix64((u64::from(service) << 32) ^ u64::from(u32::from(client)) ^ 0x7374_6963_6b79)
}

impl StickyTable {
    /// Allocates room for `capacity` clients.
    pub fn new(capacity: usize) -> Self {
        StickyTable {
            table: BoundedTable::with_capacity(capacity),
            stats: StickyStats::default(),
        }
    }

    /// Node remembered for `client` on `service`, if not expired. Does not
    /// count a hit: the caller decides whether the node is still usable and
    /// then calls [`StickyTable::record`].
    #[inline]
    pub fn get(&mut self, service: u16, client: Ipv4Addr, now_ns: u64) -> Option<NodeId> {
        let k = StickyKey {
            service,
            client: u32::from(client),
        };
        self.table
            .get(&k, key_hash(service, client), now_ns)
            .map(|(n, _)| n)
    }

    /// Remembers (or refreshes) `client -> node` until `now_ns + period_ns`.
    #[inline]
    pub fn record(
        &mut self,
        service: u16,
        client: Ipv4Addr,
        node: NodeId,
        now_ns: u64,
        period_ns: u64,
        hit: bool,
    ) {
        if hit {
            self.stats.hits += 1;
        }
        let k = StickyKey {
            service,
            client: u32::from(client),
        };
        let exp = now_ns.saturating_add(period_ns);
        if self
            .table
            .insert(k, key_hash(service, client), node, now_ns, exp)
            == Insert::Evicted
        {
            self.stats.evicted += 1;
        }
    }

    /// Reclaims expired entries among the next `budget` slots.
    pub fn sweep(&mut self, now_ns: u64, budget: usize) -> usize {
        self.table.sweep(now_ns, budget)
    }

    /// Remembered clients (including expired ones not yet reclaimed).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_budget_counts_the_table_as_allocated() {
        use headroom_config::machine as m;
        let t = StickyTable::new(1000);
        assert_eq!(
            t.table.allocated_bytes() as u64,
            m::director_table_bytes(1000, m::STICKY_SLOT_BYTES)
        );
    }

    #[test]
    fn expires_after_period_and_refreshes() {
        let mut t = StickyTable::new(1024);
        let c = Ipv4Addr::new(198, 51, 100, 7);
        t.record(0, c, 4, 0, 100, false);
        assert_eq!(t.get(0, c, 99), Some(4));
        assert_eq!(t.get(1, c, 99), None, "per service");
        t.record(0, c, 4, 99, 100, true);
        assert_eq!(t.stats.hits, 1);
        assert_eq!(t.get(0, c, 198), Some(4));
        assert_eq!(t.get(0, c, 199), None);
        assert!(t.is_empty());
    }
}
