//! What a standby journals from the master's failover records: every firing and resolution
//! the master published, so each node's history holds the pool's episodes, not only the ones
//! it evaluated while master. The actions' outcomes stay in the journal of the node that ran
//! them (the record does not carry them).
//!
//! A firing's time is the receiver's wall clock minus the record's age of the firing, so it is
//! off by the gossip delay; a resolution is timed when the record showing it arrives. The
//! first record after a start only sets the baseline (nothing is replayed), and the master
//! feeds its own records through [`Witness::baseline`], so a node that stops being master
//! continues from what it published and never journals its own episodes twice.

use std::collections::BTreeMap;

use headroom_clock::WallTime;
use headroom_control::triggers::record::PhaseRecord;
use headroom_control::triggers::{EventState, FailoverRecord, NodeId, TriggerEvent};

/// Per trigger: the last episode and whether it was firing.
#[derive(Debug, Default)]
pub struct Witness {
    seen: Option<BTreeMap<String, (u64, Option<u64>)>>,
}

fn state(rec: &FailoverRecord) -> BTreeMap<String, (u64, Option<u64>)> {
    rec.triggers
        .iter()
        .map(|t| {
            let firing = match t.phase {
                PhaseRecord::Firing { episode, .. } => Some(episode),
                _ => None,
            };
            (t.name.clone(), (t.episodes, firing))
        })
        .collect()
}

impl Witness {
    /// The master's own record: the baseline, nothing to journal.
    pub fn baseline(&mut self, rec: &FailoverRecord) {
        self.seen = Some(state(rec));
    }

    /// A record from `master` received at `wall`: the firings and resolutions since the
    /// previous one, oldest first.
    pub fn observe(
        &mut self,
        master: NodeId,
        wall: WallTime,
        rec: &FailoverRecord,
    ) -> Vec<TriggerEvent> {
        let now = state(rec);
        let Some(before) = self.seen.replace(now.clone()) else {
            return Vec::new();
        };
        let wall_ms = wall.as_unix_millis();
        let mut out = Vec::new();
        for t in &rec.triggers {
            let (old_episodes, old_firing) = before.get(&t.name).copied().unwrap_or((0, None));
            let (_, firing) = now[&t.name];
            let event = |episode: u64, state: EventState, unix_ms: u64| TriggerEvent {
                trigger: t.name.clone(),
                episode,
                state,
                condition: t.condition.clone(),
                unix_ms,
                node: master,
                fields: vec![("seen_in".into(), "record".into())],
            };
            if let Some(ep) = old_firing.filter(|ep| firing != Some(*ep)) {
                out.push(event(ep, EventState::Resolved, wall_ms));
            }
            // Fewer episodes: the trigger started over (its condition changed).
            if t.episodes > old_episodes || (t.episodes < old_episodes && t.episodes > 0) {
                let at = wall_ms.saturating_sub(t.fired_ago_ms.unwrap_or(0));
                out.push(event(t.episodes, EventState::Firing, at));
            }
        }
        out.sort_by_key(|e| e.unix_ms);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use headroom_control::triggers::record::TriggerRecord;

    fn rec(episodes: u64, phase: PhaseRecord) -> FailoverRecord {
        FailoverRecord {
            seq: 1,
            policy: 1,
            triggers: vec![TriggerRecord {
                name: "t".into(),
                condition: "squeezed(bulk)".into(),
                episodes,
                phase,
                fired_ago_ms: (episodes > 0).then_some(500),
            }],
            boundary: None,
            overrides: Vec::new(),
            adjustments: Vec::new(),
            lost: Vec::new(),
        }
    }

    fn firing(episode: u64) -> PhaseRecord {
        PhaseRecord::Firing {
            episode,
            firing_ms: 500,
        }
    }

    #[test]
    fn journals_each_change_once_after_the_baseline() {
        let mut w = Witness::default();
        let at = |s: u64| WallTime::from_unix_millis(s * 1000);
        let seen = |w: &mut Witness, r: &FailoverRecord, s: u64| -> Vec<(u64, &'static str, u64)> {
            w.observe(1, at(s), r)
                .into_iter()
                .map(|e| (e.episode, e.state.name(), e.unix_ms))
                .collect()
        };
        // The first record is only the baseline, even mid-episode.
        assert!(seen(&mut w, &rec(3, firing(3)), 10).is_empty());
        assert!(seen(&mut w, &rec(3, firing(3)), 11).is_empty());
        assert_eq!(
            seen(&mut w, &rec(3, PhaseRecord::Idle), 12),
            [(3, "resolved", 12_000)]
        );
        assert_eq!(
            seen(&mut w, &rec(4, firing(4)), 20),
            [(4, "firing", 19_500)]
        );
        // Resolved and fired again between two records: both, in time order.
        assert_eq!(
            seen(&mut w, &rec(5, firing(5)), 30),
            [(5, "firing", 29_500), (4, "resolved", 30_000)]
        );
        // The master's own record moves the baseline silently.
        w.baseline(&rec(6, firing(6)));
        assert!(seen(&mut w, &rec(6, firing(6)), 40).is_empty());
        // A trigger that started over (new condition) and fired.
        assert_eq!(
            seen(&mut w, &rec(1, firing(1)), 50),
            [(1, "firing", 49_500), (6, "resolved", 50_000)]
        );
    }
}
