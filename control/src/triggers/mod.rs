//! Triggers, schedules and failure policies: the pool reacting to its own
//! state and to time.
//!
//! A deterministic, sans-IO state machine like the exchange: no clock,
//! socket or process inside. One node evaluates for the pool, the master
//! (lowest live id), so nothing fires N times. The driver:
//!
//! * on the master, calls [`Automation::handle_snapshot`] with a
//!   [`PoolSnapshot`] at the low-frequency interval (and
//!   [`Automation::handle_timeout`] when [`Automation::poll_timeout`] or
//!   [`Automation::poll_wall_timeout`] expires), then drains
//!   [`Automation::poll_action`] (log / command / webhook requests for the
//!   executor, `headroom-actions`) and [`Automation::poll_event`] (trigger
//!   state changes for the event log, and [`AutomationEvent::Effective`]
//!   whenever the effective policy changes: activate
//!   [`Automation::effective_policy`] pool-wide through the policy
//!   mechanism);
//! * publishes [`Automation::record`] to the other nodes after every change
//!   ([`Automation::seq`] grows) and calls [`Automation::on_record_committed`]
//!   once the next master holds it;
//! * on every other node, feeds received records to a [`Standby`], and on
//!   becoming master builds the automation with [`Automation::take_over`].
//!
//! # Alerting semantics
//! A state condition that becomes true makes its trigger *pending*; after
//! holding for `for` it *fires* (episode n+1: its actions run once) and
//! stays firing while the condition holds; when it clears, the episode is
//! *resolved*. It cannot fire again before it has cleared (hysteresis), nor
//! within `cooldown` of its last firing: a new episode that holds through
//! the cooldown is *waiting* and fires when the cooldown ends. Events
//! (a node joined, ...) fire when seen and return to idle at once.
//!
//! # Failover without firing twice
//! Actions of a firing are released to the driver only once a record that
//! contains the firing is committed (held by the next master), or after
//! `commit_timeout` if it cannot be (counted). A new master therefore
//! either knows the episode fired and continues it silently (resolving it
//! when it clears), or the old master never ran its actions and the new
//! one fires it once. A master that dies after the commit and before the
//! actions ran leaves them unrun (at most once per episode); every event
//! carries its episode number so receivers can tell episodes apart.

mod condition;
pub mod failure;
pub mod record;
pub mod schedule;
pub mod snapshot;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::Duration;

use headroom_clock::{Timestamp, WallTime};
use headroom_config::{
    triggers::{
        share_value, Action, AdjustAction, AdjustTarget, Adjustment, Condition, Overlay,
        TriggerConfig,
    },
    Config,
};
use serde::Serialize;

use condition::{observe, Baseline};
pub use failure::{FailureState, FailureTracker};
use record::{ms, LostRecord, OverrideRecord, PhaseRecord, TriggerRecord};
pub use record::{FailoverRecord, RecordError, Standby};
pub use schedule::{Boundary, Decision, Schedules};
pub use snapshot::{
    Alarm, JobState, NodeId, NodeState, PipeJob, PipeState, PoolSnapshot, ProcessExit, VipState,
};

/// Tunables.
#[derive(Debug, Clone)]
pub struct AutomationConfig {
    /// The node this runs on (events name it).
    pub node: NodeId,
    /// Hold actions until the record with their firing is committed.
    pub require_commit: bool,
    /// Release held actions after this long without a commit (5 s).
    pub commit_timeout: Duration,
    /// Events kept for [`Automation::poll_event`] before the oldest are dropped.
    pub max_events: usize,
    /// Action requests kept before new ones are dropped (counted).
    pub max_actions: usize,
}

impl AutomationConfig {
    /// Defaults for node `node`.
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            require_commit: true,
            commit_timeout: Duration::from_secs(5),
            max_events: 1024,
            max_actions: 1024,
        }
    }
}

/// What a trigger's change of state was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventState {
    /// Condition true, waiting for `for`.
    Pending,
    /// Fired: actions run.
    Firing,
    /// Condition cleared after firing.
    Resolved,
    /// Condition held long enough but the cooldown blocked firing.
    Suppressed,
}

impl EventState {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            EventState::Pending => "pending",
            EventState::Firing => "firing",
            EventState::Resolved => "resolved",
            EventState::Suppressed => "suppressed",
        }
    }
}

/// One trigger event: what `headroomctl events` lists, what a command gets
/// in its environment and a webhook in its JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriggerEvent {
    /// Trigger name.
    pub trigger: String,
    /// Episode number (1, 2, ... per trigger, continued across masters).
    pub episode: u64,
    /// What happened.
    pub state: EventState,
    /// The condition, as written.
    pub condition: String,
    /// Wall-clock time on the master, ms since the Unix epoch.
    pub unix_ms: u64,
    /// The master that evaluated it.
    pub node: NodeId,
    /// Details: job, pipe, demand_bps, nodes, ...
    pub fields: Vec<(String, String)>,
}

impl TriggerEvent {
    /// RFC 3339 UTC time.
    pub fn time(&self) -> String {
        WallTime::from_unix_millis(self.unix_ms).rfc3339()
    }

    /// Environment variables of a command: `HEADROOM_TRIGGER`,
    /// `HEADROOM_EPISODE`, `HEADROOM_STATE`, `HEADROOM_CONDITION`,
    /// `HEADROOM_TIME`, `HEADROOM_NODE`, then each field as
    /// `HEADROOM_<FIELD>` (upper case).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("HEADROOM_TRIGGER".into(), self.trigger.clone()),
            ("HEADROOM_EPISODE".into(), self.episode.to_string()),
            ("HEADROOM_STATE".into(), self.state.name().into()),
            ("HEADROOM_CONDITION".into(), self.condition.clone()),
            ("HEADROOM_TIME".into(), self.time()),
            ("HEADROOM_NODE".into(), self.node.to_string()),
        ];
        for (k, val) in &self.fields {
            let key: String = k
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            v.push((format!("HEADROOM_{key}"), val.clone()));
        }
        v
    }
}

/// An action for the executor (log, command, webhook).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRequest {
    /// Position of the action in its trigger's list.
    pub index: usize,
    /// The firing event.
    pub event: TriggerEvent,
    /// The action.
    pub action: Action,
}

/// Why the effective policy changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// A schedule boundary.
    Schedule(Boundary),
    /// A trigger fired or resolved (variant or adjust action).
    Trigger {
        /// Trigger.
        trigger: String,
        /// Episode.
        episode: u64,
    },
    /// Nodes were lost or restored.
    NodeFailure,
    /// The master took over or the policy document changed.
    Start,
}

/// Something the driver reacts to.
#[derive(Debug, Clone, PartialEq)]
pub enum AutomationEvent {
    /// A trigger changed state (record it; actions come separately).
    Trigger(TriggerEvent),
    /// The effective policy changed: activate
    /// [`Automation::effective_policy`] pool-wide.
    Effective {
        /// Active variant (None: base).
        variant: Option<String>,
        /// `on_node_failure` policies apply.
        node_failure: bool,
        /// Trigger adjustments in force.
        adjustments: Vec<Adjustment>,
        /// Why.
        cause: Cause,
    },
}

/// A trigger's state for `headroomctl triggers` and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriggerStatus {
    /// Name.
    pub name: String,
    /// Condition as written.
    pub condition: String,
    /// "idle", "pending", "waiting" (cooldown) or "firing".
    pub state: &'static str,
    /// How long it has been in that state (not for idle).
    pub since_ms: Option<u64>,
    /// Episodes fired.
    pub episodes: u64,
    /// Age of the last firing.
    pub last_fired_ago_ms: Option<u64>,
}

/// Counters. All monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutomationStats {
    /// Snapshots and timeouts evaluated.
    pub evaluations: u64,
    /// Episodes fired.
    pub fired: u64,
    /// Episodes resolved.
    pub resolved: u64,
    /// Firings blocked by a cooldown.
    pub suppressed: u64,
    /// Action requests released.
    pub actions: u64,
    /// Action requests dropped (queue full).
    pub actions_dropped: u64,
    /// Events dropped (queue full: the oldest go).
    pub events_dropped: u64,
    /// Held actions released without a commit.
    pub commit_timeouts: u64,
    /// Firings of a previous master continued after a takeover.
    pub episodes_continued: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Pending { since: Timestamp },
    Waiting { since: Timestamp },
    Firing { episode: u64, since: Timestamp },
}

#[derive(Debug, Clone)]
struct Trig {
    cfg: TriggerConfig,
    cond: Condition,
    phase: Phase,
    episodes: u64,
    last_fired: Option<Timestamp>,
}

#[derive(Debug, Clone)]
struct Held {
    seq: u64,
    since: Timestamp,
    req: ActionRequest,
}

type OverlayKey = (Option<String>, bool, Vec<Adjustment>);

/// The master's automation (see the module documentation).
#[derive(Debug)]
pub struct Automation {
    conf: AutomationConfig,
    policy: Config,
    policy_id: u64,
    triggers: Vec<Trig>,
    schedules: Schedules,
    failure: FailureTracker,
    baseline: Option<Baseline>,
    last: Option<PoolSnapshot>,
    boundary: Option<Boundary>,
    next_boundary: Option<Boundary>,
    overrides: Vec<OverrideRecord>,
    adjustments: Vec<Adjustment>,
    emitted: Option<OverlayKey>,
    seq: u64,
    committed: u64,
    held: VecDeque<Held>,
    actions: VecDeque<ActionRequest>,
    events: VecDeque<AutomationEvent>,
    stats: AutomationStats,
}

fn compile(cfg: &Config) -> Result<Vec<Trig>, String> {
    cfg.triggers
        .iter()
        .map(|t| {
            Ok(Trig {
                cond: t
                    .parsed_condition()
                    .map_err(|e| format!("trigger {:?}: {e}", t.name))?,
                cfg: t.clone(),
                phase: Phase::Idle,
                episodes: 0,
                last_fired: None,
            })
        })
        .collect()
}

impl Automation {
    /// A fresh automation for policy `policy` (version `policy_id`, opaque),
    /// as on a pool's first master.
    pub fn new(
        conf: AutomationConfig,
        policy: &Config,
        policy_id: u64,
        now: Timestamp,
    ) -> Result<Self, String> {
        Self::take_over(conf, policy, policy_id, now, None)
    }

    /// The automation of a new master, continuing `record` (from its
    /// [`Standby`], ages advanced to `now`).
    pub fn take_over(
        conf: AutomationConfig,
        policy: &Config,
        policy_id: u64,
        now: Timestamp,
        record: Option<FailoverRecord>,
    ) -> Result<Self, String> {
        let mut a = Automation {
            conf,
            triggers: compile(policy)?,
            schedules: Schedules::new(policy)?,
            failure: FailureTracker::new(policy.pool.restore_after),
            policy: policy.clone(),
            policy_id,
            baseline: None,
            last: None,
            boundary: None,
            next_boundary: None,
            overrides: Vec::new(),
            adjustments: Vec::new(),
            emitted: None,
            seq: 0,
            committed: 0,
            held: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: AutomationStats::default(),
        };
        if let Some(r) = record {
            a.restore(now, r);
        }
        a.seq += 1;
        a.committed = a.seq;
        Ok(a)
    }

    fn restore(&mut self, now: Timestamp, r: FailoverRecord) {
        let ago = |m: u64| now.saturating_sub(Duration::from_millis(m));
        self.seq = r.seq;
        for t in &mut self.triggers {
            let Some(tr) = r.triggers.iter().find(|x| x.name == t.cfg.name) else {
                continue;
            };
            // Episode numbers continue even if the condition changed.
            t.episodes = tr.episodes;
            t.last_fired = tr.fired_ago_ms.map(ago);
            if tr.condition != t.cfg.condition {
                continue;
            }
            t.phase = match tr.phase {
                PhaseRecord::Idle => Phase::Idle,
                PhaseRecord::Pending { held_ms } => Phase::Pending {
                    since: ago(held_ms),
                },
                PhaseRecord::Waiting { held_ms } => Phase::Waiting {
                    since: ago(held_ms),
                },
                PhaseRecord::Firing { episode, firing_ms } => {
                    self.stats.episodes_continued += 1;
                    Phase::Firing {
                        episode,
                        since: ago(firing_ms),
                    }
                }
            };
        }
        self.boundary = r.boundary;
        self.overrides = r
            .overrides
            .into_iter()
            .filter(|o| {
                self.triggers.iter().any(|t| {
                    t.cfg.name == o.trigger
                        && matches!(t.phase, Phase::Firing { episode, .. } if episode == o.episode)
                })
            })
            .collect();
        if r.policy == self.policy_id {
            self.adjustments = r.adjustments;
        }
        for l in r.lost {
            self.failure.lost.insert(
                l.node,
                failure::Lost {
                    since: ago(l.lost_ago_ms),
                    back_since: l.back_ago_ms.map(ago),
                },
            );
        }
    }

    /// A new policy document (`policy apply`): trigger states carry over by
    /// name where the condition is unchanged; adjustments are dropped when
    /// the version changes (the operator's document is the truth).
    pub fn reconfigure(
        &mut self,
        now: Timestamp,
        policy: &Config,
        policy_id: u64,
    ) -> Result<(), String> {
        let mut triggers = compile(policy)?;
        let schedules = Schedules::new(policy)?;
        for t in &mut triggers {
            if let Some(old) = self.triggers.iter().find(|o| o.cfg.name == t.cfg.name) {
                t.episodes = old.episodes;
                t.last_fired = old.last_fired;
                if old.cfg.condition == t.cfg.condition {
                    t.phase = old.phase;
                }
            }
        }
        self.overrides.retain(|o| {
            triggers.iter().any(|t| {
                t.cfg.name == o.trigger && policy.variants.iter().any(|v| v.name == o.variant)
            })
        });
        if policy_id != self.policy_id {
            self.adjustments.clear();
        }
        self.triggers = triggers;
        self.schedules = schedules;
        let lost = std::mem::take(&mut self.failure.lost);
        self.failure = FailureTracker::new(policy.pool.restore_after);
        self.failure.lost = lost;
        self.policy = policy.clone();
        self.policy_id = policy_id;
        self.emitted = None;
        self.seq += 1;
        let _ = now;
        Ok(())
    }

    /// Evaluates a fresh snapshot of the pool.
    pub fn handle_snapshot(&mut self, now: Timestamp, wall: WallTime, snap: &PoolSnapshot) {
        self.evaluate(now, wall, Some(snap));
        self.baseline = Some(Baseline::of(snap));
        let mut last = snap.clone();
        last.exits.clear();
        self.last = Some(last);
    }

    /// Re-evaluates the last snapshot (a `for`, cooldown, restore or
    /// schedule deadline passed; events are not seen twice).
    /// Before the first snapshot only schedules are evaluated (an empty pool
    /// is not a pool that lost its cores).
    pub fn handle_timeout(&mut self, now: Timestamp, wall: WallTime) {
        let snap = self.last.take();
        self.evaluate(now, wall, snap.as_ref());
        self.last = snap;
    }

    fn evaluate(&mut self, now: Timestamp, wall: WallTime, snap: Option<&PoolSnapshot>) {
        self.stats.evaluations += 1;
        let mut cause = None;
        if let Some(snap) = snap {
            if self.failure.update(now, snap) {
                self.seq += 1;
                cause = Some(Cause::NodeFailure);
            }
            let lost = self.failure.down();
            let unix_ms = wall.as_unix_millis();
            for i in 0..self.triggers.len() {
                let obs = observe(&self.triggers[i].cond, snap, self.baseline.as_ref(), &lost);
                if let Some(c) = self.step(i, now, unix_ms, obs.holds, obs.fields) {
                    cause = Some(c);
                }
            }
        }
        let d = self.schedules.decide(wall, self.boundary.as_ref());
        if d.current != self.boundary {
            self.boundary = d.current.clone();
            self.seq += 1;
            if let Some(b) = d.current {
                cause = Some(Cause::Schedule(b));
            }
        }
        self.next_boundary = d.next;
        self.release(now);
        let key = self.overlay_key();
        if self.emitted.as_ref() != Some(&key) {
            let first = self.emitted.is_none();
            self.emitted = Some(key.clone());
            self.push_event(AutomationEvent::Effective {
                variant: key.0,
                node_failure: key.1,
                adjustments: key.2,
                cause: if first {
                    Cause::Start
                } else {
                    cause.unwrap_or(Cause::Start)
                },
            });
        }
    }

    fn overlay_key(&self) -> OverlayKey {
        (
            self.active_variant().map(str::to_string),
            self.failure.degraded(),
            self.adjustments.clone(),
        )
    }

    fn event(
        &self,
        i: usize,
        episode: u64,
        state: EventState,
        unix_ms: u64,
        fields: Vec<(String, String)>,
    ) -> TriggerEvent {
        TriggerEvent {
            trigger: self.triggers[i].cfg.name.clone(),
            episode,
            state,
            condition: self.triggers[i].cfg.condition.clone(),
            unix_ms,
            node: self.conf.node,
            fields,
        }
    }

    /// One trigger's transition; returns a cause if the overlay changed.
    fn step(
        &mut self,
        i: usize,
        now: Timestamp,
        unix_ms: u64,
        holds: bool,
        fields: Vec<(String, String)>,
    ) -> Option<Cause> {
        let t = &self.triggers[i];
        let hold = t.cfg.hold;
        let cooling = t
            .last_fired
            .is_some_and(|f| now.saturating_duration_since(f) < t.cfg.cooldown);
        match (t.phase, holds) {
            (Phase::Idle, true) => {
                if hold.is_zero() || t.cond.is_event() {
                    self.try_fire(i, now, unix_ms, fields)
                } else {
                    self.triggers[i].phase = Phase::Pending { since: now };
                    self.seq += 1;
                    let ev = self.event(
                        i,
                        self.triggers[i].episodes + 1,
                        EventState::Pending,
                        unix_ms,
                        fields,
                    );
                    self.push_event(AutomationEvent::Trigger(ev));
                    None
                }
            }
            (Phase::Pending { .. } | Phase::Waiting { .. }, false) => {
                self.triggers[i].phase = Phase::Idle;
                self.seq += 1;
                None
            }
            (Phase::Pending { since }, true) => {
                if now.saturating_duration_since(since) >= hold {
                    self.try_fire(i, now, unix_ms, fields)
                } else {
                    None
                }
            }
            (Phase::Waiting { .. }, true) => {
                if cooling {
                    None
                } else {
                    self.fire(i, now, unix_ms, fields)
                }
            }
            (Phase::Firing { .. }, true) => None,
            (Phase::Firing { episode, .. }, false) => {
                self.triggers[i].phase = Phase::Idle;
                self.seq += 1;
                self.stats.resolved += 1;
                let ev = self.event(i, episode, EventState::Resolved, unix_ms, fields);
                self.push_event(AutomationEvent::Trigger(ev));
                let name = self.triggers[i].cfg.name.clone();
                let before = self.overrides.len();
                self.overrides.retain(|o| o.trigger != name);
                (before != self.overrides.len()).then_some(Cause::Trigger {
                    trigger: name,
                    episode,
                })
            }
            (Phase::Idle, false) => None,
        }
    }

    fn try_fire(
        &mut self,
        i: usize,
        now: Timestamp,
        unix_ms: u64,
        fields: Vec<(String, String)>,
    ) -> Option<Cause> {
        let t = &self.triggers[i];
        let cooling = t
            .last_fired
            .is_some_and(|f| now.saturating_duration_since(f) < t.cfg.cooldown);
        if !cooling {
            return self.fire(i, now, unix_ms, fields);
        }
        self.stats.suppressed += 1;
        let ev = self.event(i, t.episodes + 1, EventState::Suppressed, unix_ms, fields);
        self.push_event(AutomationEvent::Trigger(ev));
        // An event is gone once seen; a state waits for the cooldown's end.
        self.triggers[i].phase = if self.triggers[i].cond.is_event() {
            Phase::Idle
        } else {
            Phase::Waiting { since: now }
        };
        self.seq += 1;
        None
    }

    fn fire(
        &mut self,
        i: usize,
        now: Timestamp,
        unix_ms: u64,
        fields: Vec<(String, String)>,
    ) -> Option<Cause> {
        let t = &mut self.triggers[i];
        t.episodes += 1;
        t.last_fired = Some(now);
        let episode = t.episodes;
        t.phase = if t.cond.is_event() {
            Phase::Idle
        } else {
            Phase::Firing {
                episode,
                since: now,
            }
        };
        self.seq += 1;
        self.stats.fired += 1;
        let ev = self.event(i, episode, EventState::Firing, unix_ms, fields);
        self.push_event(AutomationEvent::Trigger(ev.clone()));
        let mut changed = false;
        let actions = self.triggers[i].cfg.actions.clone();
        for (index, action) in actions.into_iter().enumerate() {
            match &action {
                Action::Variant(v) => {
                    if !self.triggers[i].cond.is_event() {
                        self.overrides.push(OverrideRecord {
                            trigger: ev.trigger.clone(),
                            episode,
                            variant: v.clone(),
                        });
                        changed = true;
                    }
                }
                Action::Adjust(a) => changed |= self.adjust(a),
                Action::Log(_) | Action::Command(_) | Action::Webhook(_) => {
                    self.held.push_back(Held {
                        seq: self.seq,
                        since: now,
                        req: ActionRequest {
                            index,
                            event: ev.clone(),
                            action,
                        },
                    })
                }
            }
        }
        changed.then_some(Cause::Trigger {
            trigger: ev.trigger,
            episode,
        })
    }

    /// Applies one bounded step; true if anything moved.
    fn adjust(&mut self, a: &AdjustAction) -> bool {
        let eff = self.effective_policy();
        let Some(job) = eff.jobs.iter().find(|j| j.name == a.job) else {
            return false;
        };
        let (target, current, next) = if let Some(b) = &a.booking {
            let Some(pipe) = eff.pipes.iter().find(|p| p.name == b.pipe) else {
                return false;
            };
            let cap = pipe.capacity.bps(0);
            let Some(bk) = job.bookings.iter().find(|x| x.pipe == b.pipe) else {
                return false;
            };
            let cur = bk.rate.bps(cap) as f64;
            let limit = b.limit.bps(cap) as f64;
            let step = b.step.bps(cap) as f64;
            let next = if step > 0.0 {
                (cur + step).min(limit.max(cur))
            } else {
                (cur + step).max(limit.min(cur))
            };
            (AdjustTarget::Booking(b.pipe.clone()), cur, next)
        } else if let Some(c) = &a.cpu {
            let Some(p) = job.cpu else { return false };
            let cur = share_value(p.share);
            let next = if c.step > 0.0 {
                (cur + c.step).min(c.limit.max(cur))
            } else {
                (cur + c.step).max(c.limit.min(cur))
            };
            (AdjustTarget::Cpu, cur, next)
        } else {
            return false;
        };
        if next == current {
            return false;
        }
        self.adjustments
            .retain(|x| !(x.job == a.job && x.target == target));
        self.adjustments.push(Adjustment {
            job: a.job.clone(),
            target,
            value: next,
        });
        true
    }

    fn release(&mut self, now: Timestamp) {
        while let Some(h) = self.held.front() {
            let committed = !self.conf.require_commit || h.seq <= self.committed;
            let timed_out = now.saturating_duration_since(h.since) >= self.conf.commit_timeout;
            if !committed && !timed_out {
                break;
            }
            if !committed {
                self.stats.commit_timeouts += 1;
            }
            let h = self.held.pop_front().expect("front exists");
            if self.actions.len() >= self.conf.max_actions {
                self.stats.actions_dropped += 1;
            } else {
                self.stats.actions += 1;
                self.actions.push_back(h.req);
            }
        }
    }

    fn push_event(&mut self, e: AutomationEvent) {
        if self.events.len() >= self.conf.max_events {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    /// The record with every change up to [`Automation::seq`], ages as of `now`.
    pub fn record(&self, now: Timestamp) -> FailoverRecord {
        let age = |t: Timestamp| ms(now.saturating_duration_since(t));
        FailoverRecord {
            seq: self.seq,
            policy: self.policy_id,
            triggers: self
                .triggers
                .iter()
                .map(|t| TriggerRecord {
                    name: t.cfg.name.clone(),
                    condition: t.cfg.condition.clone(),
                    episodes: t.episodes,
                    phase: match t.phase {
                        Phase::Idle => PhaseRecord::Idle,
                        Phase::Pending { since } => PhaseRecord::Pending {
                            held_ms: age(since),
                        },
                        Phase::Waiting { since } => PhaseRecord::Waiting {
                            held_ms: age(since),
                        },
                        Phase::Firing { episode, since } => PhaseRecord::Firing {
                            episode,
                            firing_ms: age(since),
                        },
                    },
                    fired_ago_ms: t.last_fired.map(age),
                })
                .collect(),
            boundary: self.boundary.clone(),
            overrides: self.overrides.clone(),
            adjustments: self.adjustments.clone(),
            lost: self
                .failure
                .lost
                .iter()
                .map(|(n, l)| LostRecord {
                    node: *n,
                    lost_ago_ms: age(l.since),
                    back_ago_ms: l.back_since.map(age),
                })
                .collect(),
        }
    }

    /// Grows with every change the record carries: publish when it moved.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The record up to `seq` is held by the next master: actions of
    /// firings up to it are released.
    pub fn on_record_committed(&mut self, now: Timestamp, seq: u64) {
        self.committed = self.committed.max(seq.min(self.seq));
        self.release(now);
    }

    /// The next action for the executor.
    pub fn poll_action(&mut self) -> Option<ActionRequest> {
        self.actions.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<AutomationEvent> {
        self.events.pop_front()
    }

    /// When [`Automation::handle_timeout`] should run next (a `for` or a
    /// cooldown ending, a restore, a held action's commit timeout).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut t: Option<Timestamp> = None;
        let mut at = |x: Timestamp| t = Some(t.map_or(x, |t| t.min(x)));
        for tr in &self.triggers {
            match tr.phase {
                Phase::Pending { since } => at(since + tr.cfg.hold),
                Phase::Waiting { .. } => {
                    if let Some(f) = tr.last_fired {
                        at(f + tr.cfg.cooldown)
                    }
                }
                _ => {}
            }
        }
        if let Some(r) = self.failure.state().restore_at {
            at(r);
        }
        if let Some(h) = self.held.front() {
            at(h.since + self.conf.commit_timeout);
        }
        t
    }

    /// The next schedule boundary (wall-clock): run
    /// [`Automation::handle_timeout`] when the wall clock reaches it.
    pub fn poll_wall_timeout(&self) -> Option<WallTime> {
        self.next_boundary.as_ref().map(Boundary::at)
    }

    /// The variant in force: the latest firing trigger's, else the schedule's.
    pub fn active_variant(&self) -> Option<&str> {
        match self.overrides.last() {
            Some(o) => Some(o.variant.as_str()).filter(|v| *v != "base"),
            None => self.boundary.as_ref().and_then(|b| b.variant.as_deref()),
        }
    }

    /// The boundary in force and the next one.
    pub fn schedule(&self) -> (Option<&Boundary>, Option<&Boundary>) {
        (self.boundary.as_ref(), self.next_boundary.as_ref())
    }

    /// Lost nodes and when the normal policies return.
    pub fn failure(&self) -> FailureState {
        self.failure.state()
    }

    /// Adjustments in force.
    pub fn adjustments(&self) -> &[Adjustment] {
        &self.adjustments
    }

    /// The policy the pool should run now: base, variant, failure
    /// policies and adjustments composed.
    pub fn effective_policy(&self) -> Config {
        self.policy.compose(&Overlay {
            variant: self.active_variant(),
            node_failure: self.failure.degraded(),
            adjustments: &self.adjustments,
        })
    }

    /// Every trigger's state.
    pub fn triggers(&self, now: Timestamp) -> Vec<TriggerStatus> {
        let age = |t: Timestamp| ms(now.saturating_duration_since(t));
        self.triggers
            .iter()
            .map(|t| {
                let (state, since) = match t.phase {
                    Phase::Idle => ("idle", None),
                    Phase::Pending { since } => ("pending", Some(age(since))),
                    Phase::Waiting { since } => ("waiting", Some(age(since))),
                    Phase::Firing { since, .. } => ("firing", Some(age(since))),
                };
                TriggerStatus {
                    name: t.cfg.name.clone(),
                    condition: t.cfg.condition.clone(),
                    state,
                    since_ms: since,
                    episodes: t.episodes,
                    last_fired_ago_ms: t.last_fired.map(age),
                }
            })
            .collect()
    }

    /// Counters.
    pub fn stats(&self) -> &AutomationStats {
        &self.stats
    }
}
