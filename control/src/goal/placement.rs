//! Placement by goal: VIP members' weight multipliers from their measured
//! response times.
//!
//! Every period, for each VIP whose job has a goal, the members that answered
//! at least `min_samples` requests are compared on the goal's own statistic
//! (the percentile for a percentile goal, the mean for an average goal). A
//! member `r` times slower than the members' median should get `1/r` of the
//! new connections: its target multiplier is `(median / R)^exponent`,
//! bounded to `[min, max]`. The multiplier in force moves towards the
//! target by at most a factor `max_change` per period, geometrically
//! smoothed (`smoothing` of the way per period), so one noisy window cannot
//! swing placement and a change is measured before the next. Members
//! without enough samples keep their multiplier. The director multiplies
//! each member's static weight and headroom by it.

use std::collections::BTreeMap;

use super::NodeId;

/// Tunables of placement by goal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlacementSettings {
    /// Smallest multiplier (a slow member still gets some connections, so
    /// its response time stays measured).
    pub min: f64,
    /// Largest multiplier.
    pub max: f64,
    /// Largest change of a multiplier per period, as a factor.
    pub max_change: f64,
    /// Share of the way (in log terms) to the target taken per period.
    pub smoothing: f64,
    /// How strongly multipliers follow response-time ratios.
    pub exponent: f64,
    /// A multiplier moves only when its target differs from it by more than
    /// this (relative): sampling noise does not churn placement.
    pub deadband: f64,
}

impl Default for PlacementSettings {
    fn default() -> Self {
        Self {
            min: 0.2,
            max: 2.0,
            max_change: 1.25,
            smoothing: 0.5,
            exponent: 1.0,
            deadband: 0.1,
        }
    }
}

/// One member's measured statistic this period (None: too few samples).
pub type MemberStat = (NodeId, Option<f64>);

/// New multipliers for one VIP: `current` (absent members are 1.0) moved
/// towards the targets from `stats`. Returns only members whose multiplier
/// changes beyond the deadband, with their new value.
pub fn step(
    s: &PlacementSettings,
    current: &BTreeMap<NodeId, f64>,
    stats: &[MemberStat],
) -> Vec<(NodeId, f64, f64)> {
    let mut known: Vec<f64> = stats
        .iter()
        .filter_map(|(_, v)| *v)
        .filter(|v| *v > 0.0)
        .collect();
    if known.len() < 2 {
        return Vec::new();
    }
    known.sort_by(f64::total_cmp);
    let median = if known.len() % 2 == 1 {
        known[known.len() / 2]
    } else {
        (known[known.len() / 2 - 1] * known[known.len() / 2]).sqrt()
    };
    let mut out = Vec::new();
    for &(node, v) in stats {
        let Some(v) = v.filter(|v| *v > 0.0) else {
            continue;
        };
        let cur = current.get(&node).copied().unwrap_or(1.0);
        let target = ((median / v).powf(s.exponent)).clamp(s.min, s.max);
        if (target / cur).ln().abs() <= s.deadband.ln_1p() {
            continue;
        }
        let step = ((target / cur).ln() * s.smoothing).clamp(-s.max_change.ln(), s.max_change.ln());
        let next = (cur * step.exp()).clamp(s.min, s.max);
        out.push((node, cur, next));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_member_loses_weight_bounded_and_smoothed() {
        let s = PlacementSettings::default();
        let mut cur = BTreeMap::new();
        let stats = [(1, Some(20.0)), (2, Some(21.0)), (3, Some(60.0)), (4, None)];
        let mut seen = Vec::new();
        for _ in 0..20 {
            for (n, from, to) in step(&s, &cur, &stats) {
                assert!(to / from <= s.max_change + 1e-9 && from / to <= s.max_change + 1e-9);
                cur.insert(n, to);
            }
            seen.push(cur.get(&3).copied().unwrap_or(1.0));
        }
        // Node 3 is 3x slower than the median (21): it converges to 1/3 of
        // a weight, never below the bound, monotonically.
        let m3 = cur[&3];
        assert!((m3 - 21.0 / 60.0).abs() < 0.04, "{m3}");
        assert!(seen.windows(2).all(|w| w[1] <= w[0] + 1e-12));
        // Within the deadband of the median: left alone.
        assert!(!cur.contains_key(&1));
        assert!(!cur.contains_key(&4));
        // Settled: no more changes.
        assert!(step(&s, &cur, &stats).is_empty());
        // One member alone has nothing to compare with.
        assert!(step(&s, &cur, &[(1, Some(5.0)), (2, None)]).is_empty());
        // A very slow member stops at the minimum.
        let mut cur = BTreeMap::new();
        for _ in 0..40 {
            for (n, _, to) in step(
                &s,
                &cur,
                &[(1, Some(1.0)), (2, Some(1.0)), (3, Some(100.0))],
            ) {
                cur.insert(n, to);
            }
        }
        assert!(cur[&3] >= s.min && cur[&3] < s.min * 1.1, "{}", cur[&3]);
    }
}
