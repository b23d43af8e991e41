//! Triggers, schedules and failure policies on this node: the seat of the
//! pool's automation (`headroom_control::triggers`).
//!
//! One node evaluates for the pool: the exchange's master. It runs the
//! [`Automation`] over a [`PoolSnapshot`] built from every node's gossiped
//! summary and the membership, releases the actions of firings to the
//! runtime ([`crate::Command::RunAction`]) and publishes the failover record
//! under [`CODE_AUTOMATION`]. Every other node keeps the master's latest
//! record ([`Standby`]) and acknowledges the sequence it holds; the master
//! treats the next master's acknowledgement as the commit that releases
//! held actions (so a failover never runs an episode's actions twice).
//!
//! Every node, master included, derives the overlay in force from the same
//! record ([`overlay_of`]: variant, failure policies, adjustments) and
//! composes it over the pool's policy. A schedule boundary, a firing
//! trigger's variant or a lost node thus reaches every node within one
//! gossip round of the master's evaluation.
//!
//! Sans-IO like the rest of the agent: time (monotonic and wall) is passed
//! in, the entries travel through [`crate::pool::Pool`].

use std::collections::BTreeMap;

use headroom_actions::{ActionRecord, Entry, Journal};
use headroom_clock::{Timestamp, WallTime};
use headroom_config::{
    process::CpuShare,
    triggers::{Adjustment, Overlay},
    Config,
};
use headroom_control::{
    exchange::MemberState,
    policy::summary::PoolNode,
    triggers::{
        ActionRequest, Alarm, Automation, AutomationConfig, AutomationEvent, AutomationStats,
        FailoverRecord, JobState, NodeId, NodeState, PipeJob, PipeState, PoolSnapshot, ProcessExit,
        Standby, TriggerStatus, VipState,
    },
};
use serde::{Deserialize, Serialize};

use crate::status::{CpuStatus, DirectorStatus};

mod parts;
mod witness;
pub use parts::{codes, PARTS, PART_CODE, RECORD_MAX};

/// The exchange code of the automation's entries.
pub const CODE_AUTOMATION: u8 = 5;
/// Largest entry: it must fit one datagram beside the exchange's headers
/// (about a dozen triggers with their states). A larger record travels in
/// parts ([`parts`], up to [`RECORD_MAX`]); one larger still is not
/// published, logged and counted as `records_too_large`.
pub const AUTOMATION_MAX: usize = 1024;
/// Journal entries kept in memory.
pub const JOURNAL_MAX: usize = 4096;

/// Entry tag: the master's failover record follows.
const TAG_RECORD: u8 = 1;
/// Entry tag: a standby's held sequence (u64, little endian) follows.
const TAG_HELD: u8 = 2;

/// The overlay in force: what the automation changes in the pool's policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverlayState {
    /// Active variant (None: base).
    pub variant: Option<String>,
    /// The jobs' `on_node_failure` policies apply.
    pub node_failure: bool,
    /// Trigger adjustments in force.
    pub adjustments: Vec<Adjustment>,
}

impl OverlayState {
    /// `base` with this overlay.
    pub fn compose(&self, base: &Config) -> Config {
        if *self == OverlayState::default() {
            return base.clone();
        }
        base.compose(&Overlay {
            variant: self.variant.as_deref(),
            node_failure: self.node_failure,
            adjustments: &self.adjustments,
        })
    }

    /// "base", "night", "night + failure policies + 1 adjustment".
    pub fn describe(&self) -> String {
        let mut s = self.variant.clone().unwrap_or_else(|| "base".into());
        if self.node_failure {
            s.push_str(" + failure policies");
        }
        if !self.adjustments.is_empty() {
            s.push_str(&format!(" + {} adjustment(s)", self.adjustments.len()));
        }
        s
    }
}

/// The overlay a record puts in force for policy `policy_id`: the latest
/// firing trigger's variant, else the schedule's; failure policies while any
/// lost node is not restored; adjustments only of the same policy version.
pub fn overlay_of(r: &FailoverRecord, policy_id: u64) -> OverlayState {
    let variant = match r.overrides.last() {
        Some(o) => Some(o.variant.clone()).filter(|v| v != "base"),
        None => r.boundary.as_ref().and_then(|b| b.variant.clone()),
    };
    OverlayState {
        variant,
        node_failure: !r.lost.is_empty(),
        adjustments: if r.policy == policy_id {
            r.adjustments.clone()
        } else {
            Vec::new()
        },
    }
}

/// The automation's part of the status document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AutomationStatus {
    /// The node that evaluates for the pool.
    pub master: Option<u32>,
    /// Whether this node is it.
    pub evaluating: bool,
    /// The overlay in force here.
    pub overlay: OverlayState,
    /// The record it comes from (sequence), 0 before the first.
    pub record_seq: u64,
    /// Each trigger's state (the master's view; a standby shows its latest
    /// record's).
    pub triggers: Vec<TriggerRow>,
    /// When the schedule changes next (RFC 3339), on the master.
    pub next_boundary: Option<String>,
    /// Counters, all monotonic.
    pub counters: Vec<(String, u64)>,
    /// Why the policy's triggers could not be compiled here, if they could not.
    pub error: Option<String>,
}

/// One trigger for `headroomctl triggers`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TriggerRow {
    /// Name.
    pub name: String,
    /// Condition as written.
    pub condition: String,
    /// idle, pending, waiting (cooldown) or firing.
    pub state: String,
    /// Seconds in that state.
    pub since_secs: Option<f64>,
    /// Episodes fired.
    pub episodes: u64,
    /// Seconds since it last fired.
    pub last_fired_secs: Option<f64>,
}

impl From<TriggerStatus> for TriggerRow {
    fn from(t: TriggerStatus) -> Self {
        let secs = |ms: u64| ms as f64 / 1000.0;
        TriggerRow {
            name: t.name,
            condition: t.condition,
            state: t.state.into(),
            since_secs: t.since_ms.map(secs),
            episodes: t.episodes,
            last_fired_secs: t.last_fired_ago_ms.map(secs),
        }
    }
}

/// One line of `headroomctl events` (the history store keeps them).
pub use headroom_history::EventRow;

fn event_row(me: NodeId, e: &Entry) -> EventRow {
    EventRow {
        unix_ms: e.unix_ms(),
        node: me,
        line: e.line(),
        entry: e.to_json(),
    }
}

/// Journals `e` in memory and queues it for the history store.
fn journal_push(journal: &mut Journal, unsaved: &mut Vec<EventRow>, me: NodeId, e: Entry) {
    unsaved.push(event_row(me, &e));
    journal.push(e);
}

/// What the seat asks of the agent after a step.
#[derive(Debug, Default)]
pub struct Effects {
    /// Actions for the executor.
    pub actions: Vec<ActionRequest>,
    /// An entry to publish under [`CODE_AUTOMATION`].
    pub publish: Option<Vec<u8>>,
    /// With it, the record's parts to publish, by exchange code.
    pub parts: Vec<(u8, Vec<u8>)>,
    /// The overlay changed: compose and apply it.
    pub overlay: Option<OverlayState>,
}

/// What one step sees of the pool.
pub struct View<'a> {
    /// This node.
    pub me: NodeId,
    /// The exchange's master (this node when alone).
    pub master: NodeId,
    /// Live node ids, ascending (this one included).
    pub live: &'a [NodeId],
    /// Entries under [`CODE_AUTOMATION`] of the other live nodes.
    pub entries: Vec<(NodeId, &'a [u8])>,
    /// The master's entries under the part codes ([`PART_CODE`]..).
    pub parts: Vec<(u8, &'a [u8])>,
    /// The pool's policy without the overlay.
    pub base: &'a Config,
    /// Its version (opaque).
    pub policy_id: u64,
}

/// The automation's seat on this node.
#[derive(Debug)]
pub struct Seat {
    master: Option<Automation>,
    standby: Standby,
    /// The last record bytes fed to the standby (the same bytes again are
    /// the same record: its ages must not restart).
    standby_bytes: Vec<u8>,
    /// The overlay in force and the record sequence it came from.
    overlay: OverlayState,
    record_seq: u64,
    published_seq: u64,
    journal: Journal,
    /// Journal entries not handed to the history store yet.
    unsaved: Vec<EventRow>,
    /// This node (journal rows name it).
    me: NodeId,
    /// The master's published episodes, journaled here while standby.
    witness: witness::Witness,
    last_master: Option<NodeId>,
    error: Option<String>,
    /// Per (member, job): its exit count at the previous snapshot.
    exits_seen: BTreeMap<(NodeId, String), u64>,
    stats: SeatStats,
}

#[derive(Debug, Default, Clone)]
struct SeatStats {
    takeovers: u64,
    records_published: u64,
    records_received: u64,
    records_malformed: u64,
    records_split: u64,
    records_too_large: u64,
    acks_malformed: u64,
    overlay_changes: u64,
    actions_ok: u64,
    actions_failed: u64,
}

impl Default for Seat {
    fn default() -> Self {
        Seat {
            master: None,
            standby: Standby::new(),
            standby_bytes: Vec::new(),
            overlay: OverlayState::default(),
            record_seq: 0,
            published_seq: 0,
            journal: Journal::new(JOURNAL_MAX),
            unsaved: Vec::new(),
            me: 0,
            witness: witness::Witness::default(),
            last_master: None,
            error: None,
            exits_seen: BTreeMap::new(),
            stats: SeatStats::default(),
        }
    }
}

impl Seat {
    /// The overlay in force here.
    pub fn overlay(&self) -> &OverlayState {
        &self.overlay
    }

    /// Whether this node evaluates for the pool.
    pub fn is_master(&self) -> bool {
        self.master.is_some()
    }

    /// One step at `now` / `wall`: role, acknowledgements, evaluation
    /// (`snapshot` is built only when `evaluate` is set and this node is
    /// master), publication and the overlay.
    pub fn step(
        &mut self,
        now: Timestamp,
        wall: WallTime,
        view: View<'_>,
        evaluate: bool,
        snapshot: impl FnOnce(&mut Self) -> PoolSnapshot,
    ) -> Effects {
        let mut fx = Effects::default();
        self.me = view.me;
        if self.last_master != Some(view.master) {
            self.last_master = Some(view.master);
            self.standby.set_master(view.master);
        }
        if view.master == view.me {
            if self.master.is_none() {
                self.take_over(now, &view);
            }
        } else if self.master.take().is_some() {
            tracing::info!(
                master = view.master,
                "automation: node {} evaluates for the pool now",
                view.master
            );
        }
        if self.master.is_none() {
            return self.step_standby(now, wall, view, fx);
        }
        // The next master (lowest other live id) holding a record commits it.
        let next = view.live.iter().copied().find(|n| *n != view.me);
        let mut acks = Vec::new();
        for (from, bytes) in &view.entries {
            if Some(*from) != next {
                continue;
            }
            match held_seq(bytes) {
                Some(seq) => acks.push(seq),
                None if matches!(bytes.first(), Some(&TAG_RECORD | &parts::TAG_SPLIT)) => {}
                None => self.stats.acks_malformed += 1,
            }
        }
        let due = {
            let Some(auto) = self.master.as_mut() else {
                return fx;
            };
            if next.is_none() {
                auto.on_record_committed(now, auto.seq());
            }
            for seq in acks {
                auto.on_record_committed(now, seq);
            }
            auto.poll_timeout().is_some_and(|t| t <= now)
                || auto.poll_wall_timeout().is_some_and(|t| t <= wall)
        };
        if evaluate {
            let snap = snapshot(self);
            if let Some(a) = self.master.as_mut() {
                a.handle_snapshot(now, wall, &snap);
            }
        } else if due {
            if let Some(a) = self.master.as_mut() {
                a.handle_timeout(now, wall);
            }
        }
        let Some(auto) = self.master.as_mut() else {
            return fx;
        };
        if next.is_none() {
            // Alone: nobody to hand over to, nothing to wait for.
            auto.on_record_committed(now, auto.seq());
        }
        while let Some(a) = auto.poll_action() {
            fx.actions.push(a);
        }
        while let Some(ev) = auto.poll_event() {
            match ev {
                AutomationEvent::Trigger(e) => {
                    tracing::info!(trigger = %e.trigger, episode = e.episode, state = e.state.name(), "trigger");
                    journal_push(
                        &mut self.journal,
                        &mut self.unsaved,
                        self.me,
                        Entry::Trigger(e),
                    );
                }
                AutomationEvent::Effective {
                    variant,
                    node_failure,
                    cause,
                    ..
                } => {
                    tracing::info!(
                        ?variant,
                        node_failure,
                        ?cause,
                        "automation: effective policy changed"
                    );
                }
            }
        }
        if auto.seq() != self.published_seq {
            self.published_seq = auto.seq();
            let rec = auto.record(now);
            self.witness.baseline(&rec);
            let bytes = rec.encode();
            match parts::split(rec.seq, &bytes) {
                Some((head, parts)) => {
                    self.stats.records_published += 1;
                    if !parts.is_empty() {
                        self.stats.records_split += 1;
                    }
                    fx.publish = Some(head);
                    fx.parts = parts;
                }
                None => {
                    self.stats.records_too_large += 1;
                    tracing::error!(bytes = bytes.len(), limit = RECORD_MAX, "automation record too large to publish (fewer triggers or shorter names and conditions)");
                }
            }
            let o = overlay_of(&rec, view.policy_id);
            self.record_seq = rec.seq;
            if o != self.overlay {
                self.set_overlay(o, &mut fx);
            }
        }
        fx
    }

    fn take_over(&mut self, now: Timestamp, view: &View<'_>) {
        let mut conf = AutomationConfig::new(view.me);
        conf.max_events = JOURNAL_MAX;
        let record = self.standby.current(now);
        match Automation::take_over(conf, view.base, view.policy_id, now, record) {
            Ok(a) => {
                self.stats.takeovers += 1;
                self.error = None;
                self.published_seq = 0;
                tracing::info!(
                    seq = a.seq(),
                    "automation: this node evaluates for the pool"
                );
                self.master = Some(a);
            }
            Err(e) => {
                if self.error.as_deref() != Some(e.as_str()) {
                    tracing::error!(error = %e, "automation not started");
                }
                self.error = Some(e);
            }
        }
    }

    fn step_standby(
        &mut self,
        now: Timestamp,
        wall: WallTime,
        view: View<'_>,
        mut fx: Effects,
    ) -> Effects {
        if let Some((from, bytes)) = view.entries.iter().find(|(n, _)| *n == view.master) {
            if bytes[..] != self.standby_bytes[..] {
                let part = |code: u8| view.parts.iter().find(|(c, _)| *c == code).map(|(_, b)| *b);
                match parts::join(bytes, part) {
                    parts::Joined::Record(rec) => {
                        self.standby_bytes = bytes.to_vec();
                        match self.standby.on_record(now, *from, &rec) {
                            Ok(()) => {
                                self.stats.records_received += 1;
                                let seen = self.standby.current(now);
                                for e in seen
                                    .map(|r| self.witness.observe(*from, wall, &r))
                                    .unwrap_or_default()
                                {
                                    journal_push(
                                        &mut self.journal,
                                        &mut self.unsaved,
                                        self.me,
                                        Entry::Trigger(e),
                                    );
                                }
                            }
                            Err(e) => {
                                self.stats.records_malformed += 1;
                                tracing::warn!(error = %e, from, "automation record not used");
                            }
                        }
                    }
                    // The parts travel separately: the next step looks again.
                    parts::Joined::Waiting | parts::Joined::NotRecord => {}
                    parts::Joined::Malformed(why) => {
                        self.standby_bytes = bytes.to_vec();
                        self.stats.records_malformed += 1;
                        tracing::warn!(error = why, from, "automation record not used");
                    }
                }
            }
        }
        if let Some(rec) = self.standby.current(now) {
            let mut ack = vec![TAG_HELD];
            ack.extend(rec.seq.to_le_bytes());
            if rec.seq != self.published_seq {
                self.published_seq = rec.seq;
                fx.publish = Some(ack);
            }
            let o = overlay_of(&rec, view.policy_id);
            self.record_seq = rec.seq;
            if o != self.overlay {
                self.set_overlay(o, &mut fx);
            }
        }
        fx
    }

    fn set_overlay(&mut self, o: OverlayState, fx: &mut Effects) {
        tracing::info!(from = %self.overlay.describe(), to = %o.describe(), "automation: policy overlay changed");
        self.stats.overlay_changes += 1;
        self.overlay = o.clone();
        fx.overlay = Some(o);
    }

    /// The pool's policy changed (apply, rollback, reload alone).
    pub fn reconfigure(&mut self, now: Timestamp, base: &Config, policy_id: u64) {
        let Some(a) = &mut self.master else { return };
        if let Err(e) = a.reconfigure(now, base, policy_id) {
            tracing::error!(error = %e, "automation keeps the previous policy's triggers");
            self.error = Some(e);
        } else {
            self.error = None;
            // Republish: adjustments of the old version no longer apply.
            self.published_seq = 0;
        }
    }

    /// An action finished (from the executor).
    pub fn handle_action(&mut self, rec: ActionRecord) {
        if rec.outcome == headroom_actions::Outcome::Ok {
            self.stats.actions_ok += 1;
        } else {
            self.stats.actions_failed += 1;
            tracing::warn!(trigger = %rec.trigger, episode = rec.episode, kind = rec.kind, target = %rec.target,
                outcome = rec.outcome.name(), error = ?rec.error, "trigger action did not succeed");
        }
        journal_push(
            &mut self.journal,
            &mut self.unsaved,
            self.me,
            Entry::Action(rec),
        );
    }

    /// Journal entries since the last call, for the history store.
    pub fn take_unsaved(&mut self) -> Vec<EventRow> {
        std::mem::take(&mut self.unsaved)
    }

    /// Journal entries in memory since `unix_ms`.
    pub fn events(&self, unix_ms: u64) -> Vec<EventRow> {
        self.journal
            .since(unix_ms)
            .map(|e| event_row(self.me, e))
            .collect()
    }

    /// The status section.
    pub fn status(&self, now: Timestamp) -> AutomationStatus {
        let (triggers, next, auto_stats) = match &self.master {
            Some(a) => (
                a.triggers(now).into_iter().map(TriggerRow::from).collect(),
                a.poll_wall_timeout().map(|w| w.rfc3339()),
                a.stats().clone(),
            ),
            None => (
                self.standby
                    .current(now)
                    .map(|r| standby_rows(&r))
                    .unwrap_or_default(),
                None,
                AutomationStats::default(),
            ),
        };
        let s = &self.stats;
        AutomationStatus {
            master: self.last_master,
            evaluating: self.master.is_some(),
            overlay: self.overlay.clone(),
            record_seq: self.record_seq,
            triggers,
            next_boundary: next,
            counters: vec![
                ("evaluations".into(), auto_stats.evaluations),
                ("fired".into(), auto_stats.fired),
                ("resolved".into(), auto_stats.resolved),
                ("suppressed".into(), auto_stats.suppressed),
                ("actions_released".into(), auto_stats.actions),
                ("actions_dropped".into(), auto_stats.actions_dropped),
                ("actions_ok".into(), s.actions_ok),
                ("actions_failed".into(), s.actions_failed),
                ("commit_timeouts".into(), auto_stats.commit_timeouts),
                ("episodes_continued".into(), auto_stats.episodes_continued),
                ("events_dropped".into(), auto_stats.events_dropped),
                ("takeovers".into(), s.takeovers),
                ("records_published".into(), s.records_published),
                ("records_received".into(), s.records_received),
                ("records_malformed".into(), s.records_malformed),
                ("records_split".into(), s.records_split),
                ("records_too_large".into(), s.records_too_large),
                ("records_stale".into(), self.standby.stale),
                ("records_not_master".into(), self.standby.not_master),
                ("acks_malformed".into(), s.acks_malformed),
                ("overlay_changes".into(), s.overlay_changes),
            ],
            error: self.error.clone(),
        }
    }

    /// Processes of jobs that exited since the previous call, from every
    /// live member's summary: each carries a count per job that only
    /// grows, and an increase is an exit event. A member or job seen for
    /// the first time sets the baseline (a new master does not replay a
    /// member's history). Called on every node every tick, so a standby's
    /// baseline is current when it takes over; exits a standby saw while
    /// the old master was failing are not events (see docs/triggers.md).
    pub fn exits(&mut self, nodes: &[PoolNode]) -> Vec<ProcessExit> {
        let mut out = Vec::new();
        let mut seen = BTreeMap::new();
        for n in nodes {
            let Some(sum) = &n.summary else { continue };
            if !matches!(n.state, MemberState::Alive | MemberState::Suspect) {
                continue;
            }
            for j in &sum.jobs {
                let key = (n.node, j.name.clone());
                match self.exits_seen.get(&key) {
                    Some(&before) if j.exits > before => out.push(ProcessExit {
                        job: j.name.clone(),
                        node: n.node,
                        pid: j.last_exit_pid,
                        comm: j.last_exit_comm.clone(),
                        count: j.exits - before,
                    }),
                    _ => {}
                }
                seen.insert(key, j.exits);
            }
        }
        // Members failed or not listing a job keep their baseline until
        // they are back; members the exchange forgot drop theirs.
        for (k, v) in std::mem::take(&mut self.exits_seen) {
            if nodes.iter().any(|n| n.node == k.0) {
                seen.entry(k).or_insert(v);
            }
        }
        self.exits_seen = seen;
        out
    }
}

/// This node as a pool member carrying only its job exit counts, for a
/// node that runs without a pool (no summaries are gossiped then).
pub fn alone(me: NodeId, cpu: Option<&CpuStatus>) -> PoolNode {
    use headroom_control::policy::summary::{JobSummary, NodeSummary};
    let jobs = cpu
        .iter()
        .flat_map(|c| c.jobs.iter())
        .map(|j| {
            let (last_exit_pid, last_exit_comm) = j.last_exit.clone().unwrap_or_default();
            JobSummary {
                name: j.name.clone(),
                exits: j.exits,
                last_exit_pid,
                last_exit_comm,
                ..Default::default()
            }
        })
        .collect();
    PoolNode {
        node: me,
        state: MemberState::Alive,
        summary: Some(NodeSummary {
            jobs,
            ..Default::default()
        }),
        age: None,
        error: None,
    }
}

fn held_seq(b: &[u8]) -> Option<u64> {
    match b {
        [TAG_HELD, rest @ ..] => Some(u64::from_le_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

fn standby_rows(r: &FailoverRecord) -> Vec<TriggerRow> {
    use headroom_control::triggers::record::PhaseRecord;
    let secs = |ms: u64| ms as f64 / 1000.0;
    r.triggers
        .iter()
        .map(|t| {
            let (state, since) = match t.phase {
                PhaseRecord::Idle => ("idle", None),
                PhaseRecord::Pending { held_ms } => ("pending", Some(secs(held_ms))),
                PhaseRecord::Waiting { held_ms } => ("waiting", Some(secs(held_ms))),
                PhaseRecord::Firing { firing_ms, .. } => ("firing", Some(secs(firing_ms))),
            };
            TriggerRow {
                name: t.name.clone(),
                condition: t.condition.clone(),
                state: state.into(),
                since_secs: since,
                episodes: t.episodes,
                last_fired_secs: t.fired_ago_ms.map(secs),
            }
        })
        .collect()
}

/// The pool as the triggers see it, from the members' summaries, this
/// node's process scheduler and director, and the policy in force.
pub fn snapshot(
    cfg: &Config,
    nodes: &[PoolNode],
    me: NodeId,
    cpu: Option<&CpuStatus>,
    director: Option<&DirectorStatus>,
    exits: Vec<ProcessExit>,
) -> PoolSnapshot {
    let mut s = PoolSnapshot {
        exits,
        ..Default::default()
    };
    let mut sent: Vec<(String, u64)> = Vec::new();
    let mut booked: Vec<(String, u64)> = Vec::new();
    let mut job_cpu: Vec<(String, f64, u32)> = Vec::new();
    for n in nodes {
        match n.state {
            MemberState::Alive | MemberState::Suspect => {}
            MemberState::Failed => {
                s.failed.push(n.node);
                continue;
            }
            MemberState::Left => {
                s.left.push(n.node);
                continue;
            }
        }
        let Some(sum) = &n.summary else {
            s.nodes.push(NodeState {
                id: n.node,
                cores: 0.0,
            });
            continue;
        };
        s.nodes.push(NodeState {
            id: n.node,
            cores: f64::from(sum.cores),
        });
        for j in &sum.jobs {
            if j.cpu_permille > 0 {
                // Millicores.
                let cores = f64::from(j.cpu_permille) / 1000.0;
                match job_cpu.iter_mut().find(|(n, _, _)| *n == j.name) {
                    Some(e) => {
                        e.1 += cores;
                        e.2 += 1;
                    }
                    None => job_cpu.push((j.name.clone(), cores, 1)),
                }
            }
            let Some(p) = &j.pipe else { continue };
            add(&mut sent, &p.pipe, p.sent_bps);
            add(&mut booked, &p.pipe, p.booked_bps);
            let demand = p.sent_bps.saturating_add(p.dropped_bps);
            match s
                .pipe_jobs
                .iter_mut()
                .find(|x| x.job == j.name && x.pipe == p.pipe)
            {
                Some(x) => {
                    x.demand_bps = x.demand_bps.saturating_add(demand);
                    x.grant_bps = x.grant_bps.saturating_add(p.granted_bps);
                }
                None => s.pipe_jobs.push(PipeJob {
                    job: j.name.clone(),
                    pipe: p.pipe.clone(),
                    demand_bps: demand,
                    grant_bps: p.granted_bps,
                }),
            }
        }
    }
    let pool_cores = s.cores();
    for p in &cfg.pipes {
        let cap = p.capacity.bps(0);
        let get = |v: &[(String, u64)]| v.iter().find(|(n, _)| *n == p.name).map_or(0, |x| x.1);
        s.pipes.push(PipeState {
            name: p.name.clone(),
            capacity_bps: cap,
            sent_bps: get(&sent),
        });
        if cap > 0 && get(&booked) > cap {
            s.alarms.push(Alarm::InsufficientBandwidth {
                pipe: p.name.clone(),
            });
        }
    }
    for j in &cfg.jobs {
        let (demand, counted) = job_cpu
            .iter()
            .find(|(n, _, _)| *n == j.name)
            .map_or((0.0, 0), |x| (x.1, x.2));
        let instances = cpu
            .and_then(|c| c.jobs.iter().find(|x| x.name == j.name))
            .map_or(counted, |x| (x.pool_instances as u32).max(counted));
        let grant = match j.cpu.map(|c| c.share) {
            Some(CpuShare::PoolCores(c)) => c,
            Some(CpuShare::PoolPercent(p)) => pool_cores * p / 100.0,
            Some(CpuShare::ServerPercent(p)) => {
                let per = if s.nodes.is_empty() {
                    0.0
                } else {
                    pool_cores / s.nodes.len() as f64
                };
                per * p / 100.0 * f64::from(instances.max(1))
            }
            None => 0.0,
        };
        s.jobs.push(JobState {
            job: j.name.clone(),
            instances,
            cpu_demand_cores: demand,
            cpu_grant_cores: grant,
        });
    }
    if cpu.is_some_and(|c| c.insufficient_resources.is_some()) {
        s.alarms.push(Alarm::InsufficientCpu { node: me });
    }
    if let Some(d) = director {
        s.vips = d
            .services
            .iter()
            .map(|v| VipState {
                name: v.name.clone(),
                owner: v.owner,
                unhealthy: v.unhealthy.clone(),
            })
            .collect();
    }
    s
}

fn add(v: &mut Vec<(String, u64)>, name: &str, x: u64) {
    match v.iter_mut().find(|(n, _)| n == name) {
        Some(e) => e.1 = e.1.saturating_add(x),
        None => v.push((name.to_string(), x)),
    }
}

/// A policy version as the automation's opaque id.
pub fn policy_id(v: Option<headroom_control::policy::VersionId>) -> u64 {
    let Some(v) = v else { return 0 };
    // Distinct versions give distinct ids in practice (term, node, epoch,
    // seq folded); equality is all that is compared.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in [
        u64::from(v.term.n),
        u64::from(v.term.node),
        u64::from(v.term.epoch),
        v.seq,
    ] {
        h ^= x;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl AutomationStatus {
    /// What `headroomctl triggers` prints.
    pub fn render_text(&self) -> String {
        let secs = human_secs;
        let mut out = format!(
            "evaluated by server {}{}; in force: {} (record {})\n",
            self.master.map_or("?".to_string(), |m| m.to_string()),
            if self.evaluating { " (this one)" } else { "" },
            self.overlay.describe(),
            self.record_seq
        );
        if let Some(n) = &self.next_boundary {
            out.push_str(&format!("next schedule boundary: {n}\n"));
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("error: {e}\n"));
        }
        if self.triggers.is_empty() {
            out.push_str("no triggers in the pool policy\n");
        }
        for t in &self.triggers {
            out.push_str(&format!(
                "  {:<24} {:<8} {:<14} episodes {:<4} last fired {:<12} {}\n",
                t.name,
                t.state,
                t.since_secs
                    .map_or("-".into(), |s| format!("for {}", secs(s))),
                t.episodes,
                t.last_fired_secs
                    .map_or("never".into(), |s| format!("{} ago", secs(s))),
                t.condition
            ));
        }
        let nonzero: Vec<String> = self
            .counters
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if !nonzero.is_empty() {
            out.push_str(&format!("counters: {}\n", nonzero.join(", ")));
        }
        out
    }
}

/// "12.3 s", "4 min 12 s", "2 h 03 min".
fn human_secs(s: f64) -> String {
    let s = s.max(0.0);
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {:02} s", (s / 60.0) as u64, (s as u64) % 60)
    } else {
        format!("{} h {:02} min", (s / 3600.0) as u64, (s as u64 / 60) % 60)
    }
}
