//! Failure policies: whether the pool runs its jobs' `on_node_failure`.
//!
//! A node is *lost* from the moment the exchange declares it failed until
//! it has been live again for `restore_after` (a bouncing node does not
//! flap the pool) or it leaves gracefully (decommissioned). Lost nodes are
//! remembered here, not in the exchange, whose tombstones expire after
//! 30 s; the set travels in the failover record, so a new master knows
//! nodes lost before it took over.

use std::collections::BTreeMap;
use std::time::Duration;

use headroom_clock::Timestamp;

use super::snapshot::{NodeId, PoolSnapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lost {
    /// When it was declared failed.
    pub since: Timestamp,
    /// Since when it is live again, if it is.
    pub back_since: Option<Timestamp>,
}

/// The failure state of the pool as one value (for status and the lead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureState {
    /// `on_node_failure` policies apply.
    pub degraded: bool,
    /// Lost nodes (including those back but not yet restored).
    pub lost: Vec<NodeId>,
    /// When the normal policies return if nothing changes (all lost nodes
    /// are back): the latest return plus `restore_after`.
    pub restore_at: Option<Timestamp>,
}

/// Tracks lost nodes.
#[derive(Debug, Clone)]
pub struct FailureTracker {
    pub(crate) lost: BTreeMap<NodeId, Lost>,
    restore_after: Duration,
}

impl FailureTracker {
    /// No node lost.
    pub fn new(restore_after: Duration) -> Self {
        Self {
            lost: BTreeMap::new(),
            restore_after,
        }
    }

    /// Updates from a snapshot; true when `degraded` changed.
    pub fn update(&mut self, now: Timestamp, s: &PoolSnapshot) -> bool {
        let before = self.degraded();
        let live: Vec<NodeId> = s.live().collect();
        for &n in &s.failed {
            if !live.contains(&n) {
                let e = self.lost.entry(n).or_insert(Lost {
                    since: now,
                    back_since: None,
                });
                e.back_since = None;
            }
        }
        for n in &s.left {
            self.lost.remove(n);
        }
        let restore_after = self.restore_after;
        self.lost.retain(|n, l| {
            if live.contains(n) {
                let back = *l.back_since.get_or_insert(now);
                now.saturating_duration_since(back) < restore_after
            } else {
                l.back_since = None;
                true
            }
        });
        before != self.degraded()
    }

    /// Whether `on_node_failure` policies apply.
    pub fn degraded(&self) -> bool {
        !self.lost.is_empty()
    }

    /// Lost nodes that are not back.
    pub fn down(&self) -> Vec<NodeId> {
        self.lost
            .iter()
            .filter(|(_, l)| l.back_since.is_none())
            .map(|(n, _)| *n)
            .collect()
    }

    /// The state as one value.
    pub fn state(&self) -> FailureState {
        let restore_at = if self.lost.values().all(|l| l.back_since.is_some()) {
            self.lost
                .values()
                .filter_map(|l| l.back_since)
                .max()
                .map(|b| b + self.restore_after)
        } else {
            None
        };
        FailureState {
            degraded: self.degraded(),
            lost: self.lost.keys().copied().collect(),
            restore_at,
        }
    }
}
