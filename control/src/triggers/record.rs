//! The failover record: what a new master needs to continue the
//! automation without firing an episode twice. The master publishes it
//! (the daemon carries it over the exchange); every other node keeps the
//! latest one ([`Standby`]).
//!
//! Times in it are *ages* at publication ("fired 12.3 s ago"), never clock
//! readings: no clock is compared between nodes. A receiver turns them into
//! its own monotonic time on receipt, so the error is the propagation delay.
//!
//! Encoding: one version byte, then the record in postcard (serde).

use std::time::Duration;

use headroom_clock::Timestamp;
use headroom_config::triggers::Adjustment;
use serde::{Deserialize, Serialize};

use super::schedule::Boundary;
use super::snapshot::NodeId;

/// Encoding version.
pub const RECORD_VERSION: u8 = 1;
/// Largest encoded record accepted.
pub const MAX_RECORD: usize = 64 * 1024;

/// Where one trigger stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PhaseRecord {
    /// Condition false.
    Idle,
    /// Condition true for `held_ms`, less than `for`.
    Pending {
        /// How long it has held.
        held_ms: u64,
    },
    /// Condition true but the cooldown of the last episode blocks firing.
    Waiting {
        /// How long it has held.
        held_ms: u64,
    },
    /// Fired episode `episode`, condition still true.
    Firing {
        /// The episode.
        episode: u64,
        /// How long it has been firing.
        firing_ms: u64,
    },
}

/// One trigger's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerRecord {
    /// Trigger name.
    pub name: String,
    /// Its condition text (state is only carried over to the same condition).
    pub condition: String,
    /// Episodes fired so far (the last episode's number).
    pub episodes: u64,
    /// Phase.
    pub phase: PhaseRecord,
    /// Age of the last firing.
    pub fired_ago_ms: Option<u64>,
}

/// A trigger's variant in force while it fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideRecord {
    /// Trigger.
    pub trigger: String,
    /// Episode.
    pub episode: u64,
    /// Variant.
    pub variant: String,
}

/// A lost node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostRecord {
    /// Node.
    pub node: NodeId,
    /// Age of its failure.
    pub lost_ago_ms: u64,
    /// Age of its return, if it is live again.
    pub back_ago_ms: Option<u64>,
}

/// Everything a new master continues from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverRecord {
    /// Grows with every change; a master continues its predecessor's count.
    pub seq: u64,
    /// The policy version the state belongs to (opaque, from the daemon).
    pub policy: u64,
    /// Triggers.
    pub triggers: Vec<TriggerRecord>,
    /// The schedule boundary the pool runs.
    pub boundary: Option<Boundary>,
    /// Variants of firing triggers, oldest first (the last wins).
    pub overrides: Vec<OverrideRecord>,
    /// Adjustments made by triggers.
    pub adjustments: Vec<Adjustment>,
    /// Lost nodes.
    pub lost: Vec<LostRecord>,
}

/// Why a record was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Too short, too long or not decodable.
    #[error("malformed trigger record: {0}")]
    Malformed(String),
    /// Written by a newer release.
    #[error("trigger record version {0} is not supported (this release reads {RECORD_VERSION})")]
    Version(u8),
}

impl FailoverRecord {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_VERSION];
        // Serialising plain data into a Vec cannot fail.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    /// Decodes a record (never panics; bounded).
    pub fn decode(b: &[u8]) -> Result<Self, RecordError> {
        if b.len() > MAX_RECORD {
            return Err(RecordError::Malformed(format!(
                "{} bytes, the limit is {MAX_RECORD}",
                b.len()
            )));
        }
        match b.split_first() {
            None => Err(RecordError::Malformed("empty".into())),
            Some((&RECORD_VERSION, rest)) => {
                postcard::from_bytes(rest).map_err(|e| RecordError::Malformed(e.to_string()))
            }
            Some((&v, _)) => Err(RecordError::Version(v)),
        }
    }
}

/// Milliseconds of a duration (saturating).
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The latest record a non-master node received, with when it arrived.
///
/// Only the current master's records are kept ([`Standby::set_master`],
/// from the exchange's view): a late datagram of a failed master cannot
/// replace its successor's state. Within one master, a record older than
/// the one held (reordered) is ignored.
#[derive(Debug, Clone, Default)]
pub struct Standby {
    master: Option<NodeId>,
    latest: Option<(FailoverRecord, NodeId, Timestamp)>,
    /// Records that did not decode.
    pub malformed: u64,
    /// Records older than the one held from the same master.
    pub stale: u64,
    /// Records from a node that is not the master.
    pub not_master: u64,
}

impl Standby {
    /// Nothing received yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The exchange's master changed (or is first known).
    pub fn set_master(&mut self, master: NodeId) {
        self.master = Some(master);
    }

    /// A record from node `from` arrived at `now`.
    pub fn on_record(
        &mut self,
        now: Timestamp,
        from: NodeId,
        bytes: &[u8],
    ) -> Result<(), RecordError> {
        let r = match FailoverRecord::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.malformed += 1;
                return Err(e);
            }
        };
        if self.master.is_some_and(|m| m != from) {
            self.not_master += 1;
            return Ok(());
        }
        if self
            .latest
            .as_ref()
            .is_some_and(|(l, by, _)| *by == from && l.seq > r.seq)
        {
            self.stale += 1;
            return Ok(());
        }
        self.latest = Some((r, from, now));
        Ok(())
    }

    /// The latest record with its ages advanced to `now`.
    pub fn current(&self, now: Timestamp) -> Option<FailoverRecord> {
        let (r, _, at) = self.latest.as_ref()?;
        let extra = ms(now.saturating_duration_since(*at));
        let mut r = r.clone();
        for t in &mut r.triggers {
            t.fired_ago_ms = t.fired_ago_ms.map(|a| a.saturating_add(extra));
            t.phase = match t.phase {
                PhaseRecord::Idle => PhaseRecord::Idle,
                PhaseRecord::Pending { held_ms } => PhaseRecord::Pending {
                    held_ms: held_ms.saturating_add(extra),
                },
                PhaseRecord::Waiting { held_ms } => PhaseRecord::Waiting {
                    held_ms: held_ms.saturating_add(extra),
                },
                PhaseRecord::Firing { episode, firing_ms } => PhaseRecord::Firing {
                    episode,
                    firing_ms: firing_ms.saturating_add(extra),
                },
            };
        }
        for l in &mut r.lost {
            l.lost_ago_ms = l.lost_ago_ms.saturating_add(extra);
            l.back_ago_ms = l.back_ago_ms.map(|a| a.saturating_add(extra));
        }
        Some(r)
    }
}

/// Fuzz body (the cargo-fuzz target `trigger_record` and a unit test):
/// never panics; a record that decodes round-trips.
pub fn fuzz(data: &[u8]) {
    if let Ok(r) = FailoverRecord::decode(data) {
        assert_eq!(FailoverRecord::decode(&r.encode()).as_ref(), Ok(&r));
    }
    let mut s = Standby::new();
    let _ = s.on_record(Timestamp::ZERO, 1, data);
    let _ = s.current(Timestamp::from_nanos(u64::MAX));
}
