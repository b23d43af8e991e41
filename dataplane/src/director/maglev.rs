//! Weighted Maglev lookup table.
//!
//! Each backend gets a pseudo-random permutation of the `M` slots (`M` prime)
//! derived only from its node id: `offset = h1(id) mod M`,
//! `skip = h2(id) mod (M - 1) + 1`, slot `j` of the permutation is
//! `(offset + j * skip) mod M`. Backends take turns claiming their next free
//! preferred slot until the table is full. Weighting: in every round backend
//! `i` adds its weight to a credit counter and claims one slot each time the
//! credit reaches the largest weight, so slot counts are proportional to
//! weights (to within one slot per backend).
//!
//! The table depends only on the *set* of (node id, weight) pairs: backends
//! are sorted by id before building, so every node builds a bit-identical
//! table from the same gossiped inputs, in whatever order they arrived.

use thiserror::Error;

use super::hash::node_hash;

/// Node identifier within the pool.
pub type NodeId = u32;

/// Default table size (prime, as in the Maglev paper).
pub const DEFAULT_TABLE_SIZE: usize = 65537;

const SEED_OFFSET: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
const SEED_SKIP: u64 = 0x6d61_676c_6576_736b; // "maglevsk"
const UNSET: u32 = u32::MAX;

/// One placement target with its effective weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// Node id.
    pub node: NodeId,
    /// Effective weight (static weight x headroom); 0 means no new flows.
    pub weight: u32,
}

/// Error building a Maglev table.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MaglevError {
    /// The table size is not a prime number.
    #[error("maglev table size {0} is not prime")]
    SizeNotPrime(usize),
    /// The table is smaller than the number of backends (or absurdly large).
    #[error("maglev table size {size} unusable for {backends} backends")]
    BadSize {
        /// Requested size.
        size: usize,
        /// Number of backends with non-zero weight.
        backends: usize,
    },
    /// The same node id was given twice.
    #[error("node {0} listed twice")]
    DuplicateBackend(NodeId),
}

/// Immutable Maglev lookup table; built off the hot path, shared read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaglevTable {
    entries: Box<[NodeId]>,
    backends: Box<[NodeId]>,
}

/// Whether `n` is prime (trial division; only used at build time).
pub fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2usize;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

impl MaglevTable {
    /// A table with no backends: every lookup returns `None`.
    pub fn empty() -> Self {
        MaglevTable {
            entries: Box::new([]),
            backends: Box::new([]),
        }
    }

    /// Builds the table of `size` slots (prime). Backends with weight 0 are
    /// left out; if none remain, the table is empty.
    pub fn build(backends: &[Backend], size: usize) -> Result<Self, MaglevError> {
        if !is_prime(size) {
            return Err(MaglevError::SizeNotPrime(size));
        }
        let mut live: Vec<Backend> = backends.iter().copied().filter(|b| b.weight > 0).collect();
        live.sort_unstable_by_key(|b| b.node);
        let mut all: Vec<NodeId> = backends.iter().map(|b| b.node).collect();
        all.sort_unstable();
        if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
            return Err(MaglevError::DuplicateBackend(w[0]));
        }
        if live.is_empty() {
            return Ok(Self::empty());
        }
        if size < live.len() || size > (u32::MAX as usize) {
            return Err(MaglevError::BadSize {
                size,
                backends: live.len(),
            });
        }
        let m = size as u64;
        let n = live.len();
        let offset: Vec<u64> = live
            .iter()
            .map(|b| node_hash(b.node, SEED_OFFSET) % m)
            .collect();
        let skip: Vec<u64> = live
            .iter()
            .map(|b| node_hash(b.node, SEED_SKIP) % (m - 1) + 1)
            .collect();
        let max_w = live.iter().map(|b| u64::from(b.weight)).max().unwrap_or(1);
        let mut next = vec![0u64; n];
        let mut credit = vec![0u64; n];
        let mut entries = vec![UNSET; size];
        let mut filled = 0usize;
        'fill: loop {
            for i in 0..n {
                credit[i] += u64::from(live[i].weight);
                if credit[i] < max_w {
                    continue;
                }
                credit[i] -= max_w;
                loop {
                    let c = ((offset[i] + next[i] * skip[i]) % m) as usize;
                    next[i] += 1;
                    if entries[c] == UNSET {
                        entries[c] = live[i].node;
                        filled += 1;
                        break;
                    }
                }
                if filled == size {
                    break 'fill;
                }
            }
        }
        Ok(MaglevTable {
            entries: entries.into_boxed_slice(),
            backends: live.iter().map(|b| b.node).collect(),
        })
    }

    /// Backend for a flow hash, `None` if the table is empty.
    #[inline]
    pub fn lookup(&self, hash: u64) -> Option<NodeId> {
        if self.entries.is_empty() {
            return None;
        }
        Some(self.entries[(hash % self.entries.len() as u64) as usize])
    }

    /// Number of slots (0 for an empty table).
    pub fn size(&self) -> usize {
        self.entries.len()
    }

    /// Backends present in the table, sorted by id.
    pub fn backends(&self) -> &[NodeId] {
        &self.backends
    }

    /// Whether `node` owns at least one slot's worth of weight in the table.
    #[inline]
    pub fn contains(&self, node: NodeId) -> bool {
        self.backends.binary_search(&node).is_ok()
    }

    /// Number of slots owned by `node`.
    pub fn slots_of(&self, node: NodeId) -> usize {
        self.entries.iter().filter(|&&e| e == node).count()
    }

    /// Raw slot array (for diagnostics and tests).
    pub fn entries(&self) -> &[NodeId] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(nodes: &[NodeId]) -> Vec<Backend> {
        nodes
            .iter()
            .map(|&node| Backend { node, weight: 1 })
            .collect()
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537) && is_prime(251) && is_prime(2));
        assert!(!is_prime(65536) && !is_prime(1) && !is_prime(0) && !is_prime(65535));
        assert_eq!(
            MaglevTable::build(&eq(&[1]), 65536),
            Err(MaglevError::SizeNotPrime(65536))
        );
        assert_eq!(
            MaglevTable::build(&eq(&[1, 2, 3]), 2),
            Err(MaglevError::BadSize {
                size: 2,
                backends: 3
            })
        );
        assert_eq!(
            MaglevTable::build(&eq(&[1, 2, 1]), 251),
            Err(MaglevError::DuplicateBackend(1))
        );
    }

    #[test]
    fn empty_and_zero_weight() {
        let t = MaglevTable::build(&[Backend { node: 1, weight: 0 }], 251).unwrap();
        assert_eq!(t.lookup(7), None);
        assert_eq!(t.size(), 0);
        let t = MaglevTable::build(
            &[
                Backend { node: 1, weight: 0 },
                Backend { node: 2, weight: 5 },
            ],
            251,
        )
        .unwrap();
        assert!(t.entries().iter().all(|&e| e == 2));
        assert!(!t.contains(1) && t.contains(2));
    }

    #[test]
    fn weighted_balance_within_one_percent() {
        let backends = vec![
            Backend {
                node: 10,
                weight: 1,
            },
            Backend {
                node: 20,
                weight: 2,
            },
            Backend {
                node: 30,
                weight: 3,
            },
            Backend {
                node: 40,
                weight: 4,
            },
            Backend { node: 7, weight: 7 },
        ];
        let t = MaglevTable::build(&backends, DEFAULT_TABLE_SIZE).unwrap();
        assert!(t.entries().iter().all(|&e| e != UNSET));
        let total: u32 = backends.iter().map(|b| b.weight).sum();
        for b in &backends {
            let share = t.slots_of(b.node) as f64 / DEFAULT_TABLE_SIZE as f64;
            let want = f64::from(b.weight) / f64::from(total);
            assert!(
                (share - want).abs() <= 0.01 * want,
                "node {} share {share} want {want}",
                b.node
            );
        }
    }

    #[test]
    fn equal_weights_balance_many_nodes() {
        let nodes: Vec<NodeId> = (1..=50).collect();
        let t = MaglevTable::build(&eq(&nodes), DEFAULT_TABLE_SIZE).unwrap();
        let want = DEFAULT_TABLE_SIZE as f64 / 50.0;
        for n in nodes {
            let got = t.slots_of(n) as f64;
            assert!(
                (got - want).abs() <= 0.01 * want,
                "node {n}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn order_independent() {
        let a = vec![
            Backend { node: 5, weight: 3 },
            Backend { node: 1, weight: 1 },
            Backend { node: 9, weight: 2 },
            Backend { node: 2, weight: 0 },
        ];
        let mut b = a.clone();
        b.reverse();
        b.swap(0, 2);
        let ta = MaglevTable::build(&a, DEFAULT_TABLE_SIZE).unwrap();
        let tb = MaglevTable::build(&b, DEFAULT_TABLE_SIZE).unwrap();
        assert_eq!(ta, tb);
        // A different set gives a different table.
        b[0].weight += 1;
        assert_ne!(ta, MaglevTable::build(&b, DEFAULT_TABLE_SIZE).unwrap());
    }

    fn disruption(before: &[Backend], removed: NodeId) -> (usize, usize) {
        let after: Vec<Backend> = before
            .iter()
            .copied()
            .filter(|b| b.node != removed)
            .collect();
        let t0 = MaglevTable::build(before, DEFAULT_TABLE_SIZE).unwrap();
        let t1 = MaglevTable::build(&after, DEFAULT_TABLE_SIZE).unwrap();
        let mut lost = 0;
        let mut extra = 0;
        for (a, b) in t0.entries().iter().zip(t1.entries()) {
            if *a == removed {
                lost += 1;
                assert_ne!(*b, removed);
            } else if a != b {
                extra += 1;
            }
        }
        (lost, extra)
    }

    #[test]
    fn removal_moves_only_removed_share_equal_weights() {
        for n in [3u32, 5, 10, 20] {
            let before = eq(&(1..=n).collect::<Vec<_>>());
            for removed in [1, n / 2 + 1, n] {
                let (lost, extra) = disruption(&before, removed);
                assert!(lost > 0);
                assert!(
                    extra as f64 <= 0.01 * DEFAULT_TABLE_SIZE as f64,
                    "n={n} removed={removed}: {extra} extra slots moved"
                );
            }
        }
    }

    #[test]
    fn removal_moves_only_removed_share_weighted() {
        let before: Vec<Backend> = (1..=8u32)
            .map(|node| Backend {
                node,
                weight: node * 100,
            })
            .collect();
        for removed in [1, 4, 8] {
            let (_, extra) = disruption(&before, removed);
            assert!(
                extra as f64 <= 0.01 * DEFAULT_TABLE_SIZE as f64,
                "removed={removed}: {extra} extra slots moved"
            );
        }
    }
}
