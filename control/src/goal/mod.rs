//! The goal loop: jobs state response-time goals; resources move from jobs
//! beating theirs (or less important) to jobs missing theirs.
//!
//! A deterministic, sans-IO state machine run by the pool's master at the
//! low frequency: no sockets, no clock, no hash-order iteration inside. Each
//! period the driver hands it every node's [`NodeReport`] (the response
//! times its workers measured during the node's last window, plus CPU and
//! pipe use) with [`GoalLoop::handle_reports`]; the loop then queues
//! [`Change`]s (CPU shares, pipe bookings, VIP weight multipliers, as data
//! the policy mechanism applies) and a [`Decision`] record for everything it
//! did or declined to do, with the reason.
//!
//! # Performance index
//! `PI = 1.0` is a goal exactly met; above 1 missing, below beating:
//! * percentile goal "p % within T": `PI = Q_p / T`, `Q_p` the measured p-th
//!   percentile (90 % within 50 ms with a measured p90 of 75 ms: 1.5);
//! * average goal "A": `PI = mean / A`.
//!
//! Computed per job pool-wide (all nodes' windows merged: the histograms add
//! up exactly) and per job and server (that node's window). A window with
//! fewer than `min_samples` requests has no index.
//!
//! # One period
//! 1. Index every job pool-wide and per server; feed the projection models
//!    ([`model`]) with (resource, index) observations.
//! 2. Receivers: goal-mode jobs with an index above 1 on a server (CPU is a
//!    server's resource) or pool-wide (a pipe is the pool's), the largest
//!    importance-weighted deficit `w (PI - 1)` first (`w = 2^(importance-1)`).
//! 3. For each receiver, its bottleneck: **CPU** when the server is busy (>= 90 %) and the job's
//!    tasks waited for a CPU at least 5 % of the time, or it uses at least
//!    90 % of its share (at its cap: nothing to give); else its
//!    **pipe** when the pacer dropped its traffic; else **placement** when it
//!    is a VIP's job with other members (placement by goal, below, already
//!    moves its new connections); else no bottleneck this loop can move.
//! 4. For a CPU or pipe bottleneck: take from the unassigned part first
//!    (what booked jobs and the goal jobs' shares leave), else from donors:
//!    the other goal jobs on that resource, least important and most ahead
//!    of their goals first. The shift is bounded (`max_step`, a fraction of
//!    the donor's share, never below `min_share` or above a cap), sized to
//!    bring the receiver to `target_index`, and, for a donor at least as
//!    important, small enough that the donor's projected index stays at or
//!    below `donor_limit` ("the donor stays within its goal").
//! 5. Project both indices with the models and apply the shift only if the
//!    importance-weighted net effect is positive: `w_r (pen(PI_r) -
//!    pen(PI_r')) - w_d (pen(PI_d') - pen(PI_d)) > min_gain`, where
//!    `pen(p) = max(p - 1, 0) + 0.1 p` (missing a goal costs ten times what
//!    beating it by as much gains).
//! 6. Hold: the resource changed (a server's CPU, a pipe) is left alone
//!    until `settle_periods` have passed and every job involved has
//!    answered `min_samples` requests since, so each change is measured
//!    before the next one, and shares do not oscillate.
//!
//! Booked jobs keep exactly their shares and bookings: only goal-mode jobs
//! are receivers or donors, and the unassigned part is what is left after
//! the booked jobs' shares (as the nodes report them) and a reserve.
//!
//! # Placement by goal
//! For every VIP whose job has a goal, members' weight multipliers follow
//! their measured response time (see [`placement`]): bounded, smoothed,
//! changed at most by a factor 1.25 per period.
//!
//! # Driving it (the master, every low-frequency tick)
//! ```text
//! let mut gl = GoalLoop::new(PoolSpec::from_config(&cfg), GoalSettings::default(), now);
//! // every node (the master too) publishes its NodeReport::encode() as an
//! // exchange entry each period; the master decodes every live node's:
//! gl.handle_reports(now, &reports);
//! while let Some(c) = gl.poll_change() { apply(c) }      // through the policy mechanism
//! while let Some(d) = gl.poll_decision() { log_and_record(d) }  // history store
//! status.goals = gl.status();                             // headroomctl goals
//! ```
//!
//! Figures (`cargo test -p headroom-control --lib goal::` and
//! `cargo run --release -p headroom-control --example goal_sim`) are in
//! `sim`'s docs.

pub mod model;
pub mod placement;
pub mod sim;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use headroom_clock::Timestamp;

use headroom_config::goal::{Goal, Mode};
use headroom_latency::Histogram;

pub use placement::PlacementSettings;
pub use wire::{JobReport, NodeReport, PipeReport};

/// A node id (the exchange's).
pub type NodeId = u32;

/// The performance index of `goal` over the window `h` (see the module
/// docs); None below `min_samples` requests.
pub fn performance_index(goal: &Goal, h: &Histogram, min_samples: u64) -> Option<f64> {
    if h.count() < min_samples.max(1) {
        return None;
    }
    let (measured, bound) = match *goal {
        Goal::Percentile { percentile, within } => (h.quantile(percentile / 100.0)?, within),
        Goal::Average { average } => (h.mean()?, average),
    };
    Some((measured.as_secs_f64() / bound.as_secs_f64().max(1e-9)).clamp(1e-3, 1e3))
}

/// The statistic a goal is judged by (the percentile, or the mean).
pub fn goal_statistic(goal: &Goal, h: &Histogram) -> Option<Duration> {
    match *goal {
        Goal::Percentile { percentile, .. } => h.quantile(percentile / 100.0),
        Goal::Average { .. } => h.mean(),
    }
}

/// Weight of an importance level: 1, 2, 4, 8, 16.
pub fn importance_weight(importance: u8) -> f64 {
    f64::from(1u32 << (importance.clamp(1, 5) - 1))
}

fn push_window(w: &mut VecDeque<Histogram>, h: Histogram, k: usize) {
    if w.len() >= k {
        w.pop_front();
    }
    w.push_back(h);
}

fn merge_all(w: &VecDeque<Histogram>) -> Histogram {
    let mut m = Histogram::new();
    for h in w {
        m.merge(h);
    }
    m
}

/// Cost of an index (missing counts ten times what beating gains).
fn penalty(pi: f64) -> f64 {
    (pi - 1.0).max(0.0) + 0.1 * pi.min(10.0)
}

/// One job as the loop sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Name (as in the node reports).
    pub name: String,
    /// Goal, if any.
    pub goal: Option<Goal>,
    /// Importance 1..=5.
    pub importance: u8,
    /// Booked or goal.
    pub mode: Mode,
    /// CPU cap per server, percent.
    pub cap_percent: Option<f64>,
    /// Bookings: (pipe, bit/s).
    pub bookings: Vec<(String, u64)>,
}

/// A shared pipe.
#[derive(Debug, Clone, PartialEq)]
pub struct PipeSpec {
    /// Name.
    pub name: String,
    /// Capacity, bit/s.
    pub capacity_bps: u64,
}

/// A VIP service and the job that serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct VipSpec {
    /// Service name.
    pub name: String,
    /// The job its traffic is classified into on the serving node.
    pub job: String,
    /// Member nodes (empty: every node).
    pub members: Vec<NodeId>,
}

/// What the loop manages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolSpec {
    /// Jobs.
    pub jobs: Vec<JobSpec>,
    /// Pipes.
    pub pipes: Vec<PipeSpec>,
    /// VIPs.
    pub vips: Vec<VipSpec>,
}

impl PoolSpec {
    /// The loop's view of a (pool) configuration. A VIP is served by the
    /// first job with a flow rule that matches its address and first port.
    pub fn from_config(cfg: &headroom_config::Config) -> PoolSpec {
        let jobs = cfg
            .jobs
            .iter()
            .map(|j| JobSpec {
                name: j.name.clone(),
                goal: j.goal,
                importance: j.importance,
                mode: j.mode,
                cap_percent: j.cpu.and_then(|c| c.cap_percent),
                bookings: j
                    .bookings
                    .iter()
                    .map(|b| {
                        let cap = cfg
                            .pipes
                            .iter()
                            .find(|p| p.name == b.pipe)
                            .map_or(0, |p| p.capacity.bps(0));
                        (b.pipe.clone(), b.rate.bps(cap))
                    })
                    .collect(),
            })
            .collect();
        let pipes = cfg
            .pipes
            .iter()
            .map(|p| PipeSpec {
                name: p.name.clone(),
                capacity_bps: p.capacity.bps(0),
            })
            .collect();
        let vips = cfg
            .vips
            .iter()
            .filter_map(|v| {
                let addr = std::net::IpAddr::V4(v.vip);
                let port = v.ports.first().map_or(0, |p| p.first);
                let job = cfg.jobs.iter().find(|j| {
                    j.flow_rules.iter().any(|r| {
                        r.local.is_none_or(|p| p.contains(&addr))
                            && r.local_port.is_none_or(|p| p.contains(port))
                            && r.protocol
                                .is_none_or(|p| p.number() == v.protocol.ip_proto())
                    })
                })?;
                Some(VipSpec {
                    name: v.name.clone(),
                    job: job.name.clone(),
                    members: v.members.clone(),
                })
            })
            .collect();
        PoolSpec { jobs, pipes, vips }
    }

    fn job(&self, name: &str) -> Option<&JobSpec> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

/// Tunables ([`GoalSettings::default`] documents the defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct GoalSettings {
    /// Requests a window needs for an index (50).
    pub min_samples: u64,
    /// Periods an index is computed over (3): the latest periods' windows
    /// merged, restarted when a change involves the job.
    pub window_periods: usize,
    /// An index above this is missing (1.0).
    pub receiver_threshold: f64,
    /// Shifts are sized to bring a receiver here (0.85).
    pub target_index: f64,
    /// A donor as important as its receiver must stay at or below this
    /// projected index (0.9).
    pub donor_limit: f64,
    /// Largest CPU shift per change, percentage points of a server (5).
    pub max_cpu_step: f64,
    /// Largest pipe shift per change, share of the pipe (5 %).
    pub max_pipe_step: f64,
    /// Largest shift as a share of the donor's own (25 %).
    pub max_donor_fraction: f64,
    /// Smallest shift worth making, percentage points (0.5).
    pub min_step: f64,
    /// A goal job's CPU share never goes below this, percent (2).
    pub min_share: f64,
    /// CPU of a server kept for what no job owns, percent (5).
    pub reserve: f64,
    /// Periods a changed resource is left alone at least (2).
    pub settle_periods: u64,
    /// Smallest projected importance-weighted gain applied (0.02).
    pub min_gain: f64,
    /// Observations each model keeps (16).
    pub history: usize,
    /// Decisions kept for status (256).
    pub max_decisions: usize,
    /// Placement by goal.
    pub placement: PlacementSettings,
}

impl Default for GoalSettings {
    fn default() -> Self {
        Self {
            min_samples: 50,
            window_periods: 3,
            receiver_threshold: 1.0,
            target_index: 0.85,
            donor_limit: 0.9,
            max_cpu_step: 5.0,
            max_pipe_step: 0.05,
            max_donor_fraction: 0.25,
            min_step: 0.5,
            min_share: 2.0,
            reserve: 5.0,
            settle_periods: 2,
            min_gain: 0.02,
            history: 16,
            max_decisions: 256,
            placement: PlacementSettings::default(),
        }
    }
}

/// A resource the loop moves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// CPU of one server.
    Cpu(NodeId),
    /// A shared pipe.
    Pipe(String),
    /// Placement of a VIP's new connections.
    Placement(String),
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Cpu(n) => write!(f, "cpu of node {n}"),
            Resource::Pipe(p) => write!(f, "pipe {p}"),
            Resource::Placement(v) => write!(f, "placement of vip {v}"),
        }
    }
}

/// A policy adjustment for the policy mechanism to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A job's CPU share on one server, percent.
    Cpu {
        /// Server.
        node: NodeId,
        /// Job.
        job: String,
        /// Share before.
        from: f64,
        /// Share now.
        to: f64,
    },
    /// A job's booking on a pipe, bit/s.
    Booking {
        /// Pipe.
        pipe: String,
        /// Job.
        job: String,
        /// Before.
        from_bps: u64,
        /// Now.
        to_bps: u64,
    },
    /// A VIP member's weight multiplier (times its static weight and headroom).
    VipWeight {
        /// Service.
        vip: String,
        /// Member.
        node: NodeId,
        /// Before.
        from: f64,
        /// Now.
        to: f64,
    },
}

/// What became of a considered shift.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The changes were made.
    Applied,
    /// Considered and declined (the reason says why).
    Declined,
    /// Nothing this loop can move.
    NoAction,
}

/// One recorded decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Loop period (0 = the first).
    pub period: u64,
    /// Time since the loop started.
    pub at: Duration,
    /// The job helped (or that would have been).
    pub receiver: Option<String>,
    /// The job that gave, if any.
    pub donor: Option<String>,
    /// The resource.
    pub resource: Option<Resource>,
    /// Verdict.
    pub verdict: Verdict,
    /// Indices before and projected after: receiver, donor.
    pub projected: Option<Projection>,
    /// The changes (empty unless applied).
    pub changes: Vec<Change>,
    /// Why, in words.
    pub reason: String,
}

/// Indices before and projected after a shift.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    /// Receiver's index now.
    pub receiver_before: f64,
    /// Receiver's projected index.
    pub receiver_after: f64,
    /// Donor's index now (None: the unassigned part).
    pub donor_before: Option<f64>,
    /// Donor's projected index.
    pub donor_after: Option<f64>,
    /// Importance-weighted net effect.
    pub net: f64,
}

/// One job's goal state, for status.
#[derive(Debug, Clone, PartialEq)]
pub struct JobGoalStatus {
    /// Job.
    pub name: String,
    /// Goal, if any.
    pub goal: Option<Goal>,
    /// Importance.
    pub importance: u8,
    /// Mode.
    pub mode: Mode,
    /// Pool-wide index over the latest window (up to `window_periods`).
    pub index: Option<f64>,
    /// Requests measured pool-wide in that window.
    pub requests: u64,
    /// Median over that window.
    pub median: Option<Duration>,
    /// The goal's statistic (percentile or mean).
    pub statistic: Option<Duration>,
    /// Per server: its index over its last window.
    pub per_node: Vec<(NodeId, Option<f64>)>,
    /// Per server: CPU share the loop holds for it (goal jobs).
    pub cpu: Vec<(NodeId, f64)>,
}

/// Status of the loop.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalStatus {
    /// Periods run.
    pub periods: u64,
    /// Every job with a goal or in goal mode.
    pub jobs: Vec<JobGoalStatus>,
    /// The most recent decisions, newest last.
    pub decisions: Vec<Decision>,
    /// Counters.
    pub stats: GoalStats,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GoalStats {
    /// Shifts applied.
    pub applied: u64,
    /// Shifts declined.
    pub declined: u64,
    /// Receivers without a bottleneck the loop can move.
    pub no_action: u64,
    /// Shifts skipped because the resource was held.
    pub held: u64,
    /// Node reports ignored (duplicate window, unknown job).
    pub stale_reports: u64,
    /// Placement multiplier changes.
    pub placement_changes: u64,
}

/// What the loop knows of one node from its latest report.
#[derive(Debug, Clone)]
struct NodeState {
    window: u64,
    busy: f64,
    jobs: BTreeMap<String, JobReport>,
}

/// What status shows of a job (computed before the period's changes).
#[derive(Debug, Clone, Default)]
struct Shown {
    index: Option<f64>,
    requests: u64,
    median: Option<Duration>,
    statistic: Option<Duration>,
    per_node: Vec<(NodeId, Option<f64>)>,
}

/// A change whose effect is not measured yet.
#[derive(Debug, Clone)]
struct Hold {
    since: u64,
    /// (job, node or None for pool-wide): samples still needed.
    waiting: Vec<(String, Option<NodeId>, u64)>,
}

/// The goal loop (see the module docs).
#[derive(Debug)]
pub struct GoalLoop {
    spec: PoolSpec,
    s: GoalSettings,
    start: Timestamp,
    period: u64,
    nodes: BTreeMap<NodeId, NodeState>,
    /// CPU share per (node, goal job), percent.
    cpu: BTreeMap<(NodeId, String), f64>,
    /// Booking per (pipe, goal job), bit/s.
    bookings: BTreeMap<(String, String), u64>,
    /// Weight multiplier per (vip, node).
    weights: BTreeMap<String, BTreeMap<NodeId, f64>>,
    models: BTreeMap<(String, Resource), model::Model>,
    holds: BTreeMap<Resource, Hold>,
    /// Recent windows per (node, job) and per job pool-wide, newest last.
    windows: BTreeMap<(NodeId, String), VecDeque<Histogram>>,
    pool: BTreeMap<String, VecDeque<Histogram>>,
    /// Each job's indices as of the latest period (before its changes),
    /// pool-wide and per node, with the pool window's statistics.
    shown: BTreeMap<String, Shown>,
    changes: VecDeque<Change>,
    decisions: VecDeque<Decision>,
    recent: VecDeque<Decision>,
    stats: GoalStats,
}

impl GoalLoop {
    /// A loop for `spec`; `now` is its start.
    pub fn new(spec: PoolSpec, settings: GoalSettings, now: Timestamp) -> Self {
        let mut bookings = BTreeMap::new();
        for j in spec.jobs.iter().filter(|j| j.mode == Mode::Goal) {
            for (p, bps) in &j.bookings {
                bookings.insert((p.clone(), j.name.clone()), *bps);
            }
        }
        Self {
            spec,
            s: settings,
            start: now,
            period: 0,
            nodes: BTreeMap::new(),
            cpu: BTreeMap::new(),
            bookings,
            weights: BTreeMap::new(),
            models: BTreeMap::new(),
            holds: BTreeMap::new(),
            windows: BTreeMap::new(),
            pool: BTreeMap::new(),
            shown: BTreeMap::new(),
            changes: VecDeque::new(),
            decisions: VecDeque::new(),
            recent: VecDeque::new(),
            stats: GoalStats::default(),
        }
    }

    /// Replaces the spec (a new policy). Shares of jobs that are still goal
    /// jobs are kept; held changes stay held.
    pub fn set_spec(&mut self, spec: PoolSpec) {
        let goal = |n: &str| spec.job(n).is_some_and(|j| j.mode == Mode::Goal);
        self.cpu.retain(|(_, j), _| goal(j));
        self.bookings.retain(|(_, j), _| goal(j));
        for j in spec.jobs.iter().filter(|j| j.mode == Mode::Goal) {
            for (p, bps) in &j.bookings {
                self.bookings
                    .entry((p.clone(), j.name.clone()))
                    .or_insert(*bps);
            }
        }
        self.spec = spec;
    }

    /// The next change to apply.
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    /// The next decision to log and record.
    pub fn poll_decision(&mut self) -> Option<Decision> {
        self.decisions.pop_front()
    }

    /// The CPU share the loop holds for a goal job on a node, percent.
    pub fn cpu_share(&self, node: NodeId, job: &str) -> Option<f64> {
        self.cpu.get(&(node, job.to_string())).copied()
    }

    /// The booking the loop holds for a goal job on a pipe, bit/s.
    pub fn booking(&self, pipe: &str, job: &str) -> Option<u64> {
        self.bookings
            .get(&(pipe.to_string(), job.to_string()))
            .copied()
    }

    /// A VIP member's weight multiplier (1.0 unless moved).
    pub fn weight(&self, vip: &str, node: NodeId) -> f64 {
        self.weights
            .get(vip)
            .and_then(|w| w.get(&node))
            .copied()
            .unwrap_or(1.0)
    }

    /// Counters.
    pub fn stats(&self) -> GoalStats {
        self.stats
    }

    /// Runs one period over the nodes' latest reports (a node's report
    /// whose window number was already seen is ignored).
    pub fn handle_reports(&mut self, now: Timestamp, reports: &[NodeReport]) {
        let at = now.saturating_duration_since(self.start);
        let mut fresh: BTreeMap<NodeId, BTreeMap<String, JobReport>> = BTreeMap::new();
        for r in reports {
            if self
                .nodes
                .get(&r.node)
                .is_some_and(|n| n.window == r.window)
            {
                self.stats.stale_reports += 1;
                continue;
            }
            let jobs: BTreeMap<String, JobReport> = r
                .jobs
                .iter()
                .filter(|j| self.spec.job(&j.job).is_some())
                .map(|j| (j.job.clone(), j.clone()))
                .collect();
            fresh.insert(r.node, jobs.clone());
            self.nodes.insert(
                r.node,
                NodeState {
                    window: r.window,
                    busy: r.cpu_busy_percent,
                    jobs,
                },
            );
        }
        // Windows: per node as reported, pool-wide the fresh reports merged.
        let k = self.s.window_periods.max(1);
        let mut merged: BTreeMap<String, Histogram> = BTreeMap::new();
        for (&node, jobs) in &fresh {
            for (name, j) in jobs {
                merged.entry(name.clone()).or_default().merge(&j.response);
                push_window(
                    self.windows.entry((node, name.clone())).or_default(),
                    j.response.clone(),
                    k,
                );
            }
        }
        for (name, h) in merged {
            push_window(self.pool.entry(name).or_default(), h, k);
        }
        self.adopt_shares(&fresh);
        self.snapshot_indices();
        self.observe(&fresh);
        self.release_holds(&fresh);
        self.shift(at);
        self.place(at);
        self.period += 1;
    }

    /// Goal jobs seen for the first time on a node start from the share
    /// the node reports (their configured starting share).
    fn adopt_shares(&mut self, fresh: &BTreeMap<NodeId, BTreeMap<String, JobReport>>) {
        for (&node, jobs) in fresh {
            for (name, j) in jobs {
                if self.is_goal_job(name) {
                    let min = self.s.min_share;
                    self.cpu
                        .entry((node, name.clone()))
                        .or_insert(j.cpu_percent.max(min));
                }
            }
        }
    }

    fn snapshot_indices(&mut self) {
        let mut shown = BTreeMap::new();
        for j in self.spec.jobs.iter().filter(|j| j.goal.is_some()) {
            let window = self.pool_window(&j.name);
            let h = window.as_ref();
            shown.insert(
                j.name.clone(),
                Shown {
                    index: self.pool_index(&j.name),
                    requests: h.map_or(0, |h| h.count()),
                    median: h.and_then(|h| h.quantile(0.5)),
                    statistic: j.goal.and_then(|g| h.and_then(|h| goal_statistic(&g, h))),
                    per_node: self
                        .nodes
                        .iter()
                        .filter(|(_, st)| st.jobs.contains_key(&j.name))
                        .map(|(&n, _)| (n, self.node_index(n, &j.name)))
                        .collect(),
                },
            );
        }
        self.shown = shown;
    }

    fn is_goal_job(&self, name: &str) -> bool {
        self.spec
            .job(name)
            .is_some_and(|j| j.mode == Mode::Goal && j.goal.is_some())
    }

    /// A job's recent windows on a node, merged.
    fn node_window(&self, node: NodeId, job: &str) -> Option<Histogram> {
        self.windows.get(&(node, job.to_string())).map(merge_all)
    }

    /// A job's recent pool-wide windows, merged.
    fn pool_window(&self, job: &str) -> Option<Histogram> {
        self.pool.get(job).map(merge_all)
    }

    fn node_index(&self, node: NodeId, job: &str) -> Option<f64> {
        let goal = self.spec.job(job)?.goal?;
        performance_index(&goal, &self.node_window(node, job)?, self.s.min_samples)
    }

    fn pool_index(&self, job: &str) -> Option<f64> {
        let goal = self.spec.job(job)?.goal?;
        performance_index(&goal, &self.pool_window(job)?, self.s.min_samples)
    }

    /// A change involves `job` (on `node`, or pool-wide): its windows
    /// restart, so its index measures the new allocation only.
    fn restart_windows(&mut self, job: &str, node: Option<NodeId>) {
        for ((n, j), w) in self.windows.iter_mut() {
            if j == job && node.is_none_or(|x| x == *n) {
                w.clear();
            }
        }
        if let Some(w) = self.pool.get_mut(job) {
            w.clear();
        }
    }

    fn observe(&mut self, fresh: &BTreeMap<NodeId, BTreeMap<String, JobReport>>) {
        let cap = self.s.history;
        for (&node, jobs) in fresh {
            for name in jobs.keys() {
                if !self.is_goal_job(name) {
                    continue;
                }
                let (Some(pi), Some(&x)) = (
                    self.node_index(node, name),
                    self.cpu.get(&(node, name.clone())),
                ) else {
                    continue;
                };
                self.models
                    .entry((name.clone(), Resource::Cpu(node)))
                    .or_insert_with(|| model::Model::new(cap))
                    .observe(x, pi);
            }
        }
        let pipe_jobs: Vec<(String, String, u64)> = self
            .bookings
            .iter()
            .map(|((p, j), b)| (p.clone(), j.clone(), *b))
            .collect();
        for (pipe, job, bps) in pipe_jobs {
            if let Some(pi) = self.pool_index(&job) {
                self.models
                    .entry((job.clone(), Resource::Pipe(pipe)))
                    .or_insert_with(|| model::Model::new(cap))
                    .observe(bps as f64, pi);
            }
        }
    }

    fn release_holds(&mut self, fresh: &BTreeMap<NodeId, BTreeMap<String, JobReport>>) {
        let period = self.period;
        let settle = self.s.settle_periods;
        self.holds.retain(|_, h| {
            for (job, node, need) in h.waiting.iter_mut() {
                let got: u64 = fresh
                    .iter()
                    .filter(|(n, _)| node.is_none_or(|x| x == **n))
                    .filter_map(|(_, jobs)| jobs.get(job.as_str()))
                    .map(|j| j.response.count())
                    .sum();
                *need = need.saturating_sub(got);
            }
            !(period >= h.since + settle && h.waiting.iter().all(|w| w.2 == 0))
        });
    }

    fn record(&mut self, d: Decision) {
        match d.verdict {
            Verdict::Applied => {
                self.stats.applied += 1;
                tracing::info!(period = d.period, reason = %d.reason, "goal loop");
            }
            Verdict::Declined => {
                self.stats.declined += 1;
                tracing::debug!(period = d.period, reason = %d.reason, "goal loop");
            }
            Verdict::NoAction => {
                self.stats.no_action += 1;
                tracing::debug!(period = d.period, reason = %d.reason, "goal loop");
            }
        }
        if self.recent.len() == self.s.max_decisions {
            self.recent.pop_front();
        }
        self.recent.push_back(d.clone());
        if self.decisions.len() == self.s.max_decisions {
            self.decisions.pop_front();
        }
        self.decisions.push_back(d);
    }

    /// Steps 2-6 of the module docs.
    fn shift(&mut self, at: Duration) {
        // Receivers: a goal job missing on a server (CPU is a server's
        // resource), or pool-wide (pipes are the pool's).
        let mut receivers: Vec<(f64, String, Option<NodeId>, f64)> = Vec::new();
        for j in self
            .spec
            .jobs
            .iter()
            .filter(|j| j.mode == Mode::Goal && j.goal.is_some())
        {
            let w = importance_weight(j.importance);
            for &n in self.nodes.keys() {
                if let Some(pi) = self
                    .node_index(n, &j.name)
                    .filter(|pi| *pi > self.s.receiver_threshold)
                {
                    receivers.push((w * (pi - 1.0), j.name.clone(), Some(n), pi));
                }
            }
            if let Some(pi) = self
                .pool_index(&j.name)
                .filter(|pi| *pi > self.s.receiver_threshold)
            {
                receivers.push((w * (pi - 1.0), j.name.clone(), None, pi));
            }
        }
        receivers.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| a.1.cmp(&b.1))
                .then(a.2.cmp(&b.2))
        });
        let mut reasons: BTreeMap<String, (f64, Vec<String>)> = BTreeMap::new();
        let mut pipe_tried: Vec<String> = Vec::new();
        for (_, job, node, pi) in receivers {
            let why = match node {
                Some(n) => self.help_node(at, &job, n, pi, &mut pipe_tried),
                None => self.help_pool(at, &job, pi, &mut pipe_tried),
            };
            if let Some(why) = why {
                reasons.entry(job).or_insert((pi, Vec::new())).1.push(why);
            }
        }
        for (job, (pi, why)) in reasons {
            let n = why.len();
            let mut text = why.into_iter().take(5).collect::<Vec<_>>().join("; ");
            if n > 5 {
                text.push_str(&format!("; and {} more", n - 5));
            }
            let d = self.decision(
                at,
                &job,
                None,
                Verdict::NoAction,
                format!("{job} misses its goal (index up to {pi:.2}): {text}"),
            );
            self.record(d);
        }
    }

    fn decision(
        &self,
        at: Duration,
        receiver: &str,
        resource: Option<Resource>,
        verdict: Verdict,
        reason: String,
    ) -> Decision {
        Decision {
            period: self.period,
            at,
            receiver: Some(receiver.to_string()),
            donor: None,
            resource,
            verdict,
            projected: None,
            changes: Vec::new(),
            reason,
        }
    }

    /// A job missing its goal on one server: its bottleneck there, and a
    /// shift if one helps. Returns why nothing was tried, if so.
    fn help_node(
        &mut self,
        at: Duration,
        job: &str,
        node: NodeId,
        pi: f64,
        pipe_tried: &mut Vec<String>,
    ) -> Option<String> {
        let st = &self.nodes[&node];
        let r = &st.jobs[job];
        let share = self
            .cpu
            .get(&(node, job.to_string()))
            .copied()
            .unwrap_or(r.cpu_percent);
        let cap = self.spec.job(job).and_then(|j| j.cap_percent);
        let cpu_bound =
            st.busy >= 90.0 && (r.cpu_wait_percent >= 5.0 || r.cpu_used_percent >= 0.9 * share);
        if cpu_bound {
            if let Some(c) = cap.filter(|c| share >= c - self.s.min_step) {
                return Some(format!("node {node}: CPU-bound at its cap of {c:.0}%"));
            }
            self.shift_cpu(at, job, node, pi, share);
            return None;
        }
        if let Some(pipe) = r
            .pipe
            .as_ref()
            .filter(|p| p.dropped_bps > 0)
            .map(|p| p.pipe.clone())
        {
            if !pipe_tried.contains(&pipe) {
                pipe_tried.push(pipe.clone());
                let pool_pi = self.pool_index(job).unwrap_or(pi);
                self.shift_pipe(at, job, &pipe, pool_pi);
            }
            return None;
        }
        if let Some(v) = self.vip_of(job) {
            return Some(format!(
                "node {node}: index {pi:.2}, placement of vip {v} moves its new connections"
            ));
        }
        Some(format!(
            "node {node}: index {pi:.2} but no bottleneck the loop moves (CPU {:.0}% of its {share:.0}% share, waited {:.0}%, node {:.0}% busy, no pipe drops)",
            r.cpu_used_percent, r.cpu_wait_percent, st.busy
        ))
    }

    /// A job missing its goal pool-wide: its pipe, if the pacer drops its
    /// traffic anywhere (servers are handled by [`GoalLoop::help_node`]).
    fn help_pool(
        &mut self,
        at: Duration,
        job: &str,
        pi: f64,
        pipe_tried: &mut Vec<String>,
    ) -> Option<String> {
        let pipe = self
            .nodes
            .values()
            .filter_map(|st| st.jobs.get(job)?.pipe.as_ref())
            .find(|p| p.dropped_bps > 0)
            .map(|p| p.pipe.clone());
        match pipe {
            Some(p) if !pipe_tried.contains(&p) => {
                pipe_tried.push(p.clone());
                self.shift_pipe(at, job, &p, pi);
                None
            }
            Some(_) => None,
            None if self.nodes.keys().any(|&n| {
                self.node_index(n, job)
                    .is_some_and(|x| x > self.s.receiver_threshold)
            }) =>
            {
                None
            }
            None => Some(format!(
                "pool-wide index {pi:.2}, no server or pipe bottleneck"
            )),
        }
    }

    fn vip_of(&self, job: &str) -> Option<String> {
        self.spec
            .vips
            .iter()
            .find(|v| v.job == job)
            .map(|v| v.name.clone())
    }

    fn fit(&self, job: &str, res: &Resource, prior: f64) -> model::Fit {
        self.models.get(&(job.to_string(), res.clone())).map_or(
            model::Fit {
                elasticity: prior,
                confidence: 0.0,
            },
            |m| m.fit(prior),
        )
    }

    fn shift_cpu(&mut self, at: Duration, job: &str, node: NodeId, pi: f64, share: f64) {
        let res = Resource::Cpu(node);
        if self.holds.contains_key(&res) {
            self.stats.held += 1;
            return;
        }
        let s = self.s.clone();
        let spec_r = self
            .spec
            .job(job)
            .cloned()
            .expect("receiver is in the spec");
        let w_r = importance_weight(spec_r.importance);
        let b_r = self.fit(job, &res, model::PRIOR_ELASTICITY).elasticity;
        let need = model::resource_for(pi, share, s.target_index, b_r) - share;
        let cap_room = spec_r.cap_percent.map_or(f64::INFINITY, |c| c - share);
        let limit = need.min(s.max_cpu_step).min(cap_room);
        let st = &self.nodes[&node];
        // The unassigned part: what booked jobs, goal jobs and the reserve leave.
        let booked: f64 = st
            .jobs
            .iter()
            .filter(|(n, _)| !self.is_goal_job(n))
            .map(|(_, j)| j.cpu_percent)
            .sum();
        let goal_total: f64 = self
            .cpu
            .range((node, String::new())..(node + 1, String::new()))
            .map(|(_, v)| *v)
            .sum();
        let free = (100.0 - s.reserve - booked - goal_total).max(0.0);
        let mut best: Option<(f64, Option<String>, f64, Projection)> = None;
        if free >= s.min_step {
            let delta = limit.min(free);
            if delta >= s.min_step {
                let after = model::project(pi, share, share + delta, b_r);
                let net = w_r * (penalty(pi) - penalty(after));
                best = Some((
                    net,
                    None,
                    delta,
                    Projection {
                        receiver_before: pi,
                        receiver_after: after,
                        donor_before: None,
                        donor_after: None,
                        net,
                    },
                ));
            }
        }
        let mut declined = Vec::new();
        if best.is_none() {
            let donors: Vec<(String, f64)> = self
                .cpu
                .range((node, String::new())..(node + 1, String::new()))
                .filter(|((_, d), _)| d != job)
                .map(|((_, d), x)| (d.clone(), *x))
                .collect();
            for (donor, x_d) in donors {
                let spec_d = self
                    .spec
                    .job(&donor)
                    .cloned()
                    .expect("goal job is in the spec");
                let rep = st.jobs.get(&donor);
                let used_d = rep.map_or(0.0, |r| r.cpu_used_percent);
                let pi_d = match self.node_index(node, &donor) {
                    Some(p) => p,
                    // Idle (uses under half its share): it can give.
                    None if used_d < 0.5 * x_d => 0.0,
                    None => {
                        declined.push(format!("{donor}: too few requests to judge"));
                        continue;
                    }
                };
                let b_d = self.fit(&donor, &res, model::PRIOR_ELASTICITY).elasticity;
                let mut delta = limit.min(x_d * s.max_donor_fraction).min(x_d - s.min_share);
                if spec_d.importance >= spec_r.importance && pi_d > 0.0 {
                    if pi_d >= s.donor_limit {
                        declined.push(format!("{donor}: index {pi_d:.2}, no room within its goal"));
                        continue;
                    }
                    // The largest gift that keeps the donor within its
                    // limit: x' with PI_d (x'/x_d)^b = limit.
                    let floor = x_d * (s.donor_limit / pi_d).powf(1.0 / b_d.min(-1e-6));
                    delta = delta.min(x_d - floor);
                }
                if delta < s.min_step {
                    declined.push(format!(
                        "{donor}: cannot give {:.1} points without missing its goal",
                        s.min_step
                    ));
                    continue;
                }
                let after_r = model::project(pi, share, share + delta, b_r);
                let after_d = if pi_d > 0.0 {
                    model::project(pi_d, x_d, x_d - delta, b_d)
                } else {
                    0.0
                };
                let w_d = importance_weight(spec_d.importance);
                let net = w_r * (penalty(pi) - penalty(after_r))
                    - w_d * (penalty(after_d) - penalty(pi_d));
                let p = Projection {
                    receiver_before: pi,
                    receiver_after: after_r,
                    donor_before: Some(pi_d),
                    donor_after: Some(after_d),
                    net,
                };
                if net <= s.min_gain {
                    declined.push(format!("{donor}: net effect {net:.3} (receiver {pi:.2}->{after_r:.2}, donor {pi_d:.2}->{after_d:.2})"));
                    continue;
                }
                if best.as_ref().is_none_or(|b| net > b.0) {
                    best = Some((net, Some(donor), delta, p));
                }
            }
        }
        let Some((net, donor, delta, p)) = best.filter(|b| b.0 > s.min_gain) else {
            let mut d = self.decision(
                at,
                job,
                Some(res),
                Verdict::Declined,
                format!(
                    "{job} on node {node} (index {pi:.2}, {share:.1}% CPU) has no donor: {}",
                    if declined.is_empty() {
                        "nothing unassigned and no other goal job".to_string()
                    } else {
                        declined.join("; ")
                    }
                ),
            );
            d.projected = None;
            self.record(d);
            return;
        };
        let mut changes = vec![Change::Cpu {
            node,
            job: job.to_string(),
            from: share,
            to: share + delta,
        }];
        self.cpu.insert((node, job.to_string()), share + delta);
        let mut waiting = vec![(job.to_string(), Some(node), s.min_samples)];
        if let Some(d) = &donor {
            let x_d = self.cpu[&(node, d.clone())];
            self.cpu.insert((node, d.clone()), x_d - delta);
            changes.push(Change::Cpu {
                node,
                job: d.clone(),
                from: x_d,
                to: x_d - delta,
            });
            if p.donor_before.is_some_and(|x| x > 0.0) {
                waiting.push((d.clone(), Some(node), s.min_samples));
            }
        }
        for (j, n, _) in &waiting {
            self.restart_windows(j, *n);
        }
        self.holds.insert(
            res.clone(),
            Hold {
                since: self.period,
                waiting,
            },
        );
        self.changes.extend(changes.iter().cloned());
        let reason = format!(
            "{job} on node {node}: CPU-bound, index {pi:.2}; {delta:.1} points from {} (projected {:.2} -> {:.2}{}, net {net:.3})",
            donor.as_deref().unwrap_or("the unassigned share"),
            p.receiver_before,
            p.receiver_after,
            match (p.donor_before, p.donor_after) {
                (Some(a), Some(b)) => format!(", donor {a:.2} -> {b:.2}"),
                _ => String::new(),
            }
        );
        let d = Decision {
            period: self.period,
            at,
            receiver: Some(job.to_string()),
            donor,
            resource: Some(res),
            verdict: Verdict::Applied,
            projected: Some(p),
            changes,
            reason,
        };
        self.record(d);
    }

    fn shift_pipe(&mut self, at: Duration, job: &str, pipe: &str, pi: f64) {
        let res = Resource::Pipe(pipe.to_string());
        if self.holds.contains_key(&res) {
            self.stats.held += 1;
            return;
        }
        let s = self.s.clone();
        let Some(cap) = self
            .spec
            .pipes
            .iter()
            .find(|p| p.name == pipe)
            .map(|p| p.capacity_bps)
        else {
            return;
        };
        let spec_r = self
            .spec
            .job(job)
            .cloned()
            .expect("receiver is in the spec");
        let cur = self.booking(pipe, job).unwrap_or(0);
        let booked: u64 = self
            .spec
            .jobs
            .iter()
            .filter(|j| j.mode != Mode::Goal)
            .flat_map(|j| j.bookings.iter())
            .filter(|(p, _)| p == pipe)
            .map(|(_, b)| *b)
            .sum();
        let goal_total: u64 = self
            .bookings
            .iter()
            .filter(|((p, _), _)| p == pipe)
            .map(|(_, b)| *b)
            .sum();
        let free = cap.saturating_sub(booked).saturating_sub(goal_total);
        let step = ((cap as f64 * s.max_pipe_step) as u64).max(1);
        let b_r = self.fit(job, &res, model::PRIOR_ELASTICITY).elasticity;
        let x = (cur.max(1)) as f64;
        let (delta, donor) = if free > 0 {
            (step.min(free), None)
        } else {
            // The donor most ahead of its goal, least important first.
            let mut cands: Vec<(u8, f64, String, u64)> = self
                .bookings
                .iter()
                .filter(|((p, j), _)| p == pipe && j != job)
                .filter_map(|((_, j), b)| {
                    let sp = self.spec.job(j)?;
                    let pi_d = self.pool_index(j).unwrap_or(0.0);
                    (pi_d < s.donor_limit || sp.importance < spec_r.importance)
                        .then(|| (sp.importance, pi_d, j.clone(), *b))
                })
                .collect();
            cands.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
            match cands.first() {
                Some((_, _, d, b)) => (
                    step.min((*b as f64 * s.max_donor_fraction) as u64),
                    Some((d.clone(), *b)),
                ),
                None => {
                    let d = self.decision(at, job, Some(res), Verdict::Declined, format!("{job} drops on pipe {pipe} (index {pi:.2}); nothing unassigned and no donor within its goal"));
                    self.record(d);
                    return;
                }
            }
        };
        let after = model::project(pi, x, x + delta as f64, b_r);
        let mut net = importance_weight(spec_r.importance) * (penalty(pi) - penalty(after));
        let mut proj = Projection {
            receiver_before: pi,
            receiver_after: after,
            donor_before: None,
            donor_after: None,
            net,
        };
        if let Some((d, b)) = &donor {
            let pi_d = self.pool_index(d).unwrap_or(0.0);
            let b_d = self.fit(d, &res, model::PRIOR_ELASTICITY).elasticity;
            let after_d = if pi_d > 0.0 {
                model::project(pi_d, *b as f64, (*b - delta) as f64, b_d)
            } else {
                0.0
            };
            let w_d = importance_weight(self.spec.job(d).map_or(3, |j| j.importance));
            net -= w_d * (penalty(after_d) - penalty(pi_d));
            proj = Projection {
                donor_before: Some(pi_d),
                donor_after: Some(after_d),
                net,
                ..proj
            };
        }
        if delta == 0 || net <= s.min_gain {
            let mut d = self.decision(
                at,
                job,
                Some(res),
                Verdict::Declined,
                format!("{job} drops on pipe {pipe}: projected net effect {net:.3} too small"),
            );
            d.projected = Some(proj);
            self.record(d);
            return;
        }
        let mut changes = vec![Change::Booking {
            pipe: pipe.to_string(),
            job: job.to_string(),
            from_bps: cur,
            to_bps: cur + delta,
        }];
        self.bookings
            .insert((pipe.to_string(), job.to_string()), cur + delta);
        let mut waiting = vec![(job.to_string(), None, s.min_samples)];
        if let Some((d, b)) = &donor {
            self.bookings
                .insert((pipe.to_string(), d.clone()), b - delta);
            changes.push(Change::Booking {
                pipe: pipe.to_string(),
                job: d.clone(),
                from_bps: *b,
                to_bps: b - delta,
            });
            waiting.push((d.clone(), None, s.min_samples));
        }
        for (j, n, _) in &waiting {
            self.restart_windows(j, *n);
        }
        self.holds.insert(
            res.clone(),
            Hold {
                since: self.period,
                waiting,
            },
        );
        self.changes.extend(changes.iter().cloned());
        let reason = format!(
            "{job} drops on pipe {pipe}, index {pi:.2}; booking +{} kbit/s from {} (projected {pi:.2} -> {after:.2}, net {net:.3})",
            delta / 1000,
            donor.as_ref().map_or("the unbooked capacity", |d| d.0.as_str())
        );
        let d = Decision {
            period: self.period,
            at,
            receiver: Some(job.to_string()),
            donor: donor.map(|d| d.0),
            resource: Some(res),
            verdict: Verdict::Applied,
            projected: Some(proj),
            changes,
            reason,
        };
        self.record(d);
    }

    /// Placement by goal for every VIP whose job has a goal.
    fn place(&mut self, at: Duration) {
        let vips = self.spec.vips.clone();
        for v in vips {
            let Some(goal) = self.spec.job(&v.job).and_then(|j| j.goal) else {
                continue;
            };
            let stats: Vec<placement::MemberStat> = self
                .nodes
                .iter()
                .filter(|(n, _)| v.members.is_empty() || v.members.contains(n))
                .filter(|(_, st)| st.jobs.contains_key(&v.job))
                .map(|(&n, _)| {
                    let h = self.node_window(n, &v.job).unwrap_or_default();
                    let stat = (h.count() >= self.s.min_samples)
                        .then(|| goal_statistic(&goal, &h))
                        .flatten()
                        .map(|d| d.as_secs_f64());
                    (n, stat)
                })
                .collect();
            let cur = self.weights.entry(v.name.clone()).or_default().clone();
            let moves = placement::step(&self.s.placement, &cur, &stats);
            if moves.is_empty() {
                continue;
            }
            let mut changes = Vec::new();
            let mut parts = Vec::new();
            for (node, from, to) in moves {
                self.weights
                    .get_mut(&v.name)
                    .expect("inserted above")
                    .insert(node, to);
                let stat = stats
                    .iter()
                    .find(|s| s.0 == node)
                    .and_then(|s| s.1)
                    .unwrap_or(0.0);
                parts.push(format!(
                    "node {node} {:.1} ms: x{from:.2} -> x{to:.2}",
                    stat * 1e3
                ));
                changes.push(Change::VipWeight {
                    vip: v.name.clone(),
                    node,
                    from,
                    to,
                });
            }
            self.stats.placement_changes += changes.len() as u64;
            self.changes.extend(changes.iter().cloned());
            let d = Decision {
                period: self.period,
                at,
                receiver: Some(v.job.clone()),
                donor: None,
                resource: Some(Resource::Placement(v.name.clone())),
                verdict: Verdict::Applied,
                projected: None,
                changes,
                reason: format!(
                    "vip {} members by measured response time ({goal}): {}",
                    v.name,
                    parts.join(", ")
                ),
            };
            self.record(d);
        }
    }

    /// Each goal job's state and the recent decisions.
    pub fn status(&self) -> GoalStatus {
        let jobs = self
            .spec
            .jobs
            .iter()
            .filter(|j| j.goal.is_some() || j.mode == Mode::Goal)
            .map(|j| {
                let sh = self.shown.get(&j.name).cloned().unwrap_or_default();
                JobGoalStatus {
                    name: j.name.clone(),
                    goal: j.goal,
                    importance: j.importance,
                    mode: j.mode,
                    index: sh.index,
                    requests: sh.requests,
                    median: sh.median,
                    statistic: sh.statistic,
                    per_node: sh.per_node,
                    cpu: self
                        .cpu
                        .iter()
                        .filter(|((_, name), _)| *name == j.name)
                        .map(|((n, _), x)| (*n, *x))
                        .collect(),
                }
            })
            .collect();
        GoalStatus {
            periods: self.period,
            jobs,
            decisions: self.recent.iter().cloned().collect(),
            stats: self.stats,
        }
    }
}
