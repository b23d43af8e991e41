//! Live headroom into placement: each node's gossiped idle share of its
//! cores (from its summary), smoothed and quantised with hysteresis, is the
//! factor the director multiplies static VIP weights by. Sans-IO: fed the
//! pool's summaries at the low-frequency interval.

use std::collections::{BTreeMap, HashMap};

use headroom_dataplane::director::NodeId;

/// Weight of the newest sample in the moving average.
const ALPHA: f64 = 0.5;
/// Headroom is placed in steps of this many per mille (10 %)...
const STEP: f64 = 100.0;
/// ...and a node moves to another step only once its smoothed headroom is
/// this far (per mille) past the step's edge, so tables do not flap.
const HYSTERESIS: f64 = 30.0;

/// The smoothed headroom of every node and the factors in force.
#[derive(Debug, Default)]
pub(crate) struct Headroom {
    smoothed: BTreeMap<NodeId, f64>,
    level: BTreeMap<NodeId, u32>,
}

impl Headroom {
    /// Takes one round of samples: per live node, its idle share in per
    /// mille, or None when it does not measure CPU. Returns the factors
    /// when they changed. While any live node does not measure, none is
    /// used (static weights only): unmeasured must not mean idle or busy.
    pub(crate) fn update(
        &mut self,
        samples: &[(NodeId, Option<u32>)],
    ) -> Option<HashMap<NodeId, u32>> {
        let known: Option<Vec<(NodeId, u32)>> =
            samples.iter().map(|(n, h)| h.map(|h| (*n, h))).collect();
        let Some(known) = known.filter(|k| !k.is_empty()) else {
            if self.level.is_empty() {
                return None;
            }
            self.smoothed.clear();
            self.level.clear();
            return Some(HashMap::new());
        };
        let live: Vec<NodeId> = known.iter().map(|(n, _)| *n).collect();
        self.smoothed.retain(|n, _| live.contains(n));
        let before = self.level.clone();
        self.level.retain(|n, _| live.contains(n));
        for (n, h) in known {
            let h = f64::from(h.min(1000));
            let s = self
                .smoothed
                .entry(n)
                .and_modify(|s| *s = ALPHA * h + (1.0 - ALPHA) * *s)
                .or_insert(h);
            let s = *s;
            // Level k covers [k*STEP - STEP/2, k*STEP + STEP/2); a node keeps
            // its level until it leaves it by more than the hysteresis. At
            // least 1: a node with no headroom left still takes a sliver.
            let fresh = ((s / STEP).round() as u32).max(1);
            let level = match self.level.get(&n) {
                Some(&l) => {
                    let centre = f64::from(l) * STEP;
                    if (s - centre).abs() > STEP / 2.0 + HYSTERESIS {
                        fresh
                    } else {
                        l
                    }
                }
                None => fresh,
            };
            self.level.insert(n, level);
        }
        (self.level != before).then(|| self.level.iter().map(|(n, l)| (*n, *l)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_node_gets_a_smaller_factor_and_small_wobbles_change_nothing() {
        let mut h = Headroom::default();
        let f = h
            .update(&[(1, Some(950)), (2, Some(480)), (3, Some(1000))])
            .unwrap();
        assert_eq!((f[&1], f[&2], f[&3]), (10, 5, 10));
        // Wobbles around the edge between 4 and 5 move nothing.
        for x in [440, 470, 430, 460, 520] {
            assert_eq!(
                h.update(&[(1, Some(950)), (2, Some(x)), (3, Some(1000))]),
                None
            );
        }
        // A sustained drop does, step by step as the average follows.
        let moved = h.update(&[(1, Some(950)), (2, Some(100)), (3, Some(1000))]);
        assert!(moved.unwrap()[&2] < 5);
        for _ in 0..6 {
            h.update(&[(1, Some(950)), (2, Some(100)), (3, Some(1000))]);
        }
        assert_eq!(h.level[&2], 1);
        // No headroom at all still leaves a factor of 1.
        let mut h = Headroom::default();
        assert_eq!(h.update(&[(1, Some(0))]).unwrap()[&1], 1);
    }

    #[test]
    fn an_unmeasured_node_turns_headroom_off() {
        let mut h = Headroom::default();
        assert!(h.update(&[(1, Some(900)), (2, Some(300))]).is_some());
        assert_eq!(h.update(&[(1, Some(900)), (2, None)]), Some(HashMap::new()));
        assert_eq!(h.update(&[(1, None), (2, None)]), None);
    }
}
