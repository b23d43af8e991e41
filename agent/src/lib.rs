//! The control thread of a Headroom node as a deterministic, sans-IO state
//! machine (in the style of `headroom_control::exchange`): no sockets, no
//! files, no clock inside. Time is passed in, inputs arrive through
//! `handle_*` calls and everything that must reach the outside world is
//! taken out with [`Agent::poll_transmit`] (datagrams, frames, probes) and
//! [`Agent::poll_command`] (workers, process scheduler, neighbour table).
//!
//! # What it owns
//! * the pipes loop ([`pipes`]): sample -> demand -> gossip -> allocate ->
//!   grants, every high-frequency tick,
//! * the node's seat in the pool ([`pool`]): the exchange and its
//!   registrations,
//! * director control ([`director`]): VIP ownership, tables, health, host
//!   MACs, gratuitous ARP,
//! * stable job ids ([`jobs`]) and configuration reloads,
//! * the status model ([`status`]) every output renders.
//!
//! # Driving it (what `headroomd`'s runtime does)
//! ```text
//! let mut agent = Agent::new(cfg, path, Timestamp::now(), setup)?;
//! // start the workers with agent.rules(), agent.pacing_rules(),
//! // agent.worker_pacer(i), agent.director_cell(); bind agent.exchange_addr()
//! loop {
//!     wait for a worker report, a control request, a datagram or agent.poll_timeout();
//!     let now = Timestamp::now();
//!     agent.handle_report(r) / agent.handle_datagram(now, from, bytes) / ...;
//!     agent.handle_tick(now);
//!     while let Some(c) = agent.poll_command() { run it; answer with handle_* }
//!     while let Some(t) = agent.poll_transmit() { send it }
//! }
//! ```
//!
//! Unit tests run it in simulated time with a simulated network (see
//! `tests`), at several pool sizes.

pub mod automation;
pub mod director;
mod headroom;
pub mod history;
pub mod jobs;
pub mod pipes;
pub mod policy;
pub mod pool;
pub mod status;
mod summary;

#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, VecDeque},
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use headroom_clock::{Timestamp, WallTime};
use headroom_config::{process::ProcessJob, Config, ConfigChanges, ConfigError, DEFAULT_JOB};
use headroom_control::{
    health::probe::{ProbeRequest, ProbeResult},
    policy::{PolicyEvent, ReqId},
    procsched::ProcSchedSnapshot,
};
use headroom_dataplane::{
    classifier::{JobCounters, JobId, RuleSet},
    director::{NodeId, TableCell},
    pacer::{Pacer, PacerControl, PacerError},
    pipeline::{self, PacingRules},
    worker::WorkerReport,
};

use director::Director;
use jobs::JobRegistry;
use pipes::{Pipes, PipesError};
use policy::{Composer, PolicyAnswer, PolicyHistoryRow, PolicyVersion, SharedComposer};
use pool::{Pool, PoolError, PoolSetup, CODE_BANDWIDTH, CODE_CPU};
use status::{CpuJobStatus, CpuStatus, InterfaceStatus, JobStatus, Status, WorkerStatus};

/// What a worker publishes.
pub type Report = WorkerReport<pipeline::Report>;

/// How often the agent ticks when neither a pool nor pipes need the
/// high-frequency interval (the director's timers are coarser).
pub const IDLE_TICK: Duration = Duration::from_millis(100);

/// Something for the runtime to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// An exchange datagram, from the exchange's address.
    Datagram {
        /// Destination.
        to: SocketAddr,
        /// Payload.
        payload: Vec<u8>,
    },
    /// A raw Ethernet frame for the outer interface (a gratuitous ARP: XDP
    /// only sees received frames, so it leaves through the kernel).
    Frame {
        /// The whole frame.
        payload: Vec<u8>,
    },
    /// Make the kernel resolve `to`'s MAC: any datagram to it does (the
    /// discard port, 9, so nothing answers).
    ResolveNeighbour {
        /// The address to resolve.
        to: Ipv4Addr,
    },
    /// Start a health probe of `node`'s instance; answer with
    /// [`Agent::handle_probe_result`].
    Probe {
        /// The node whose instance is probed.
        node: NodeId,
        /// What to probe.
        request: ProbeRequest,
    },
}

/// Something for the runtime to do.
#[derive(Debug)]
pub enum Command {
    /// Send the new flow rules to every worker (each applies them between
    /// batches).
    SetRules(Arc<RuleSet>),
    /// Run the process scheduler's tick with the other live nodes' CPU
    /// entries, then answer with [`Agent::handle_cpu`].
    CpuTick {
        /// Encoded `PoolCpuState` entries of the other live nodes.
        peers: Vec<Vec<u8>>,
        /// False in monitor-only mode (`[pool] enforcement = "off"`):
        /// measure and compute, set no shares.
        enforce: bool,
    },
    /// Apply new process rules to the process scheduler.
    CpuReload {
        /// The jobs' process views.
        jobs: Vec<ProcessJob>,
    },
    /// Read the kernel's IPv4 neighbour table, with this server's own IPv4
    /// addresses and their interfaces' MACs, and hand it to
    /// [`Agent::handle_neighbours`].
    ReadNeighbours,
    /// A `policy apply` / `policy rollback` made on this node finished:
    /// answer the client waiting for `req`.
    PolicyAnswer {
        /// The request ([`Agent::policy_apply`] returned it).
        req: ReqId,
        /// The answer.
        answer: Box<PolicyAnswer>,
    },
    /// Run a firing trigger's action (log, command, webhook) on the
    /// executor; answer with [`Agent::handle_action_record`].
    RunAction(Box<headroom_control::triggers::ActionRequest>),
    /// Write the policy state (atomically: a crash mid-write must leave the
    /// previous state) where the next start reads it back into
    /// [`PoolSetup::policy_state`].
    PersistPolicy(Vec<u8>),
    /// Store a journal entry in the history (the memory journal keeps it
    /// too, for `headroomctl events` while the store lags or is off).
    Journal(Box<automation::EventRow>),
}

/// What only the runtime can read from the dataplane, for the status: the
/// interfaces (XDP verdicts, fast path), each worker's placement (index,
/// core, queues, zero-copy; the counters come from the workers' reports),
/// and what the XDP fast path forwarded without a worker.
#[derive(Debug, Clone, Default)]
pub struct DataplaneView {
    /// The interfaces.
    pub interfaces: Vec<InterfaceStatus>,
    /// The workers' placement.
    pub workers: Vec<WorkerStatus>,
    /// Per job id: (packets, bytes) the fast path forwarded received on
    /// (outer, inner), i.e. (inbound, outbound).
    pub fast_jobs: Vec<(u16, [(u64, u64); 2])>,
    /// VIP frames the fast path encapsulated (as owner) and decapsulated (as
    /// serving node) on the network side.
    pub fast_director: Option<(u64, u64)>,
}

/// What the agent queued for the runtime.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) commands: VecDeque<Command>,
}

/// What the agent needs besides the config.
#[derive(Debug, Clone)]
pub struct AgentSetup {
    /// Workers the dataplane runs (one pacer each).
    pub workers: usize,
    /// The pool key and the exchange's epoch and seed (None: run alone).
    pub pool: Option<PoolSetup>,
    /// The wall clock at the `now` given to [`Agent::new`], ms since the
    /// Unix epoch (schedules read wall-clock time).
    pub wall_ms: u64,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The pipes could not be set up.
    #[error(transparent)]
    Pipes(#[from] PipesError),
    /// A worker's pacer could not be made.
    #[error("pacer of worker {0}: {1}")]
    Pacer(usize, PacerError),
    /// The exchange or the policy refused to start.
    #[error("joining the pool: {0}")]
    Pool(#[from] PoolError),
}

/// The control thread's state.
#[derive(Debug)]
pub struct Agent {
    /// In force: `base` with the automation's overlay (variant, failure
    /// policies, adjustments).
    cfg: Config,
    /// The node file composed with the pool's active policy.
    base: Config,
    /// Triggers, schedules and failure policies.
    seat: automation::Seat,
    /// The wall clock at `started`, ms since the Unix epoch.
    wall_ms: u64,
    /// The node file as last read, and what checks policy versions.
    composer: SharedComposer,
    /// Changes of this node's own pending applies, for their answers.
    policy_changes: BTreeMap<ReqId, headroom_config::ConfigChanges>,
    /// Active versions this node could not run (kept its previous one).
    policy_failed: u64,
    /// Job counters at the last summary (for its rates).
    rates: summary::Rates,
    /// The pool's smoothed headroom, for VIP placement.
    headroom: headroom::Headroom,
    /// The latest time the agent was given (for changes that arrive
    /// without one: a reload).
    now_hint: Timestamp,
    config_file: String,
    started: Timestamp,
    jobs: JobRegistry,
    rules: Arc<RuleSet>,
    pipes: Option<Pipes<PacerControl>>,
    pool: Option<Pool>,
    director: Option<Director>,
    reports: Vec<Option<Report>>,
    /// Whether the process scheduler runs (decided at start).
    cpu_scheduling: bool,
    cpu: Option<CpuStatus>,
    reloads_ok: u64,
    reloads_failed: u64,
    last_reload_error: Option<String>,
    next_tick: Timestamp,
    next_low: Timestamp,
    out: Outbox,
}

impl Agent {
    /// The agent of a node configured by `cfg` (read from `config_file`).
    pub fn new(
        cfg: Config,
        config_file: impl Into<String>,
        now: Timestamp,
        setup: AgentSetup,
    ) -> Result<Agent, AgentError> {
        let config_file = config_file.into();
        let composer = Arc::new(Mutex::new(Composer {
            node: cfg.clone(),
            active: cfg.clone(),
            cpu_scheduling: cpu_scheduling(&cfg),
        }));
        let validator = {
            let c = Arc::clone(&composer);
            Box::new(move |doc: &[u8]| policy::lock(&c).check(doc, "policy").map(|_| ()))
        };
        let wall_ms = setup.wall_ms;
        let initial = setup.pool.as_ref().and_then(|p| p.initial_policy.clone());
        let pool = Pool::new(&cfg, setup.pool, initial, validator, now)?;
        // A restarted node starts with the version it persisted (it still
        // enforces nothing until the pool confirms it is current).
        let mut cfg = cfg;
        if let Some((meta, doc)) = pool.as_ref().and_then(|p| p.policy().active()) {
            match policy::lock(&composer).check(doc, &format!("policy {}", meta.id)) {
                Ok((c, _)) => cfg = c,
                Err(e) => tracing::error!(error = %e, "persisted policy not used at start"),
            }
        }
        {
            let mut c = policy::lock(&composer);
            c.active = cfg.clone();
            c.cpu_scheduling = cpu_scheduling(&cfg);
        }
        let mut jobs = JobRegistry::default();
        let rules = jobs.rules(&cfg);
        let pipes = Pipes::from_config(&cfg, setup.workers, |n| jobs.id(n).0)?;
        let director = Director::new(&cfg, now);
        let mut agent = Agent {
            composer,
            policy_changes: BTreeMap::new(),
            policy_failed: 0,
            rates: summary::Rates::default(),
            headroom: headroom::Headroom::default(),
            now_hint: now,
            config_file,
            started: now,
            jobs,
            rules,
            pipes,
            pool,
            director,
            reports: (0..setup.workers).map(|_| None).collect(),
            cpu_scheduling: cpu_scheduling(&cfg),
            cpu: None,
            reloads_ok: 0,
            reloads_failed: 0,
            last_reload_error: None,
            next_tick: now,
            next_low: now + cfg.control.low_freq_interval,
            out: Outbox::default(),
            base: cfg.clone(),
            seat: automation::Seat::default(),
            wall_ms,
            cfg,
        };
        agent.next_tick = now + agent.tick_interval();
        Ok(agent)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The compiled flow rules the workers start with.
    pub fn rules(&self) -> Arc<RuleSet> {
        Arc::clone(&self.rules)
    }

    /// Which outbound traffic each pipe carries, for the workers.
    pub fn pacing_rules(&self) -> PacingRules {
        pipes::pacing_rules(&self.cfg)
    }

    /// The pacer worker `i` runs (None without pipes).
    pub fn worker_pacer<T>(&self, i: usize) -> Result<Option<Pacer<T>>, AgentError> {
        self.pipes
            .as_ref()
            .map(|p| p.worker_pacer(i).map_err(|e| AgentError::Pacer(i, e)))
            .transpose()
    }

    /// The cell the director tables are published through (None without
    /// VIP services).
    pub fn director_cell(&self) -> Option<&Arc<TableCell>> {
        self.director.as_ref().map(Director::cell)
    }

    /// Every job id seen since start (the default job's and removed jobs'
    /// included: their counters stay until a restart).
    pub fn job_ids(&self) -> Vec<u16> {
        self.job_names_seen()
            .iter()
            .filter_map(|(n, _)| self.jobs.lookup(n))
            .collect()
    }

    /// The config's job names, then those a reload removed (`true`).
    fn job_names_seen(&self) -> Vec<(String, bool)> {
        let mut names: Vec<(String, bool)> = self
            .cfg
            .job_names()
            .into_iter()
            .map(|n| (n, false))
            .collect();
        for n in self.jobs.names() {
            if !names.iter().any(|(m, _)| m == n) {
                names.push((n.to_string(), true));
            }
        }
        names
    }

    /// AF_XDP receive drops (kernel drops and full rings) summed over the
    /// workers' latest reports, per side (outer, inner).
    pub fn rx_socket_drops(&self) -> [u64; 2] {
        self.reports.iter().flatten().fold([0; 2], |mut a, r| {
            for (s, k) in r.sockets.iter().enumerate() {
                a[s] += k.rx_dropped + k.rx_ring_full;
            }
            a
        })
    }

    /// Where the pool's datagrams come from (empty when running alone).
    pub fn exchange_sources(&self) -> Vec<SocketAddr> {
        self.pool.as_ref().map(Pool::sources).unwrap_or_default()
    }

    /// The runtime lost received exchange datagrams at `now`.
    pub fn note_exchange_loss(&mut self, now: Timestamp) {
        if let Some(p) = &mut self.pool {
            p.note_receive_loss(now);
        }
    }

    /// The address the exchange runs on (None when running alone).
    pub fn exchange_addr(&self) -> Option<SocketAddr> {
        self.pool.as_ref().map(Pool::advertise)
    }

    /// Whether the process scheduler runs: at start some job had process
    /// rules and CPU enforcement was on.
    pub fn cpu_scheduling(&self) -> bool {
        self.cpu_scheduling
    }

    /// The high-frequency interval in force: the configured one with a pool
    /// or pipes, [`IDLE_TICK`] otherwise.
    fn tick_interval(&self) -> Duration {
        if self.pool.is_some() || self.pipes.is_some() {
            self.cfg.control.high_freq_interval
        } else {
            IDLE_TICK
        }
    }

    /// When [`Agent::handle_tick`] has timed work next.
    pub fn poll_timeout(&self) -> Timestamp {
        let mut t = self.next_tick.min(self.next_low);
        if let Some(p) = self.pool.as_ref().and_then(Pool::poll_timeout) {
            t = t.min(p);
        }
        t
    }

    /// Runs whatever is due at `now`: the exchange's timers on every call,
    /// the pipes loop and the director every high-frequency interval, the
    /// process scheduler's tick every low-frequency interval.
    pub fn handle_tick(&mut self, now: Timestamp) {
        self.now_hint = self.now_hint.max(now);
        if let Some(pool) = &mut self.pool {
            pool.handle_timeout(now);
        }
        let mut high = false;
        if now >= self.next_tick {
            let interval = self.tick_interval();
            self.next_tick += interval;
            if self.next_tick < now {
                self.next_tick = now + interval;
            }
            self.high_frequency(now);
            high = true;
        }
        let mut low = false;
        if now >= self.next_low {
            self.next_low = now + self.cfg.control.low_freq_interval;
            self.low_frequency();
            self.publish_summary(now);
            low = true;
        }
        if high || low {
            self.automate(now, low);
        }
        self.drain_pool(now);
    }

    /// Exchange and allocation (seed [0174] lines 8-20): publish this node's
    /// demand on every pipe, then compute its grants from everyone's. Then
    /// the flow director: live membership, then its timers.
    fn high_frequency(&mut self, now: Timestamp) {
        let Agent {
            pipes, pool, jobs, ..
        } = self;
        if let Some(bw) = pipes {
            let entry = bw.measure(now, |id| jobs.name_of(id));
            match pool {
                // No grant before this node runs the pool's current policy
                // (a joiner or a restarted node must not enforce a stale one).
                Some(pool) => {
                    pool.publish(now, CODE_BANDWIDTH, &entry);
                    if pool.policy().is_current() {
                        bw.allocate(now, pool.peer_entries(CODE_BANDWIDTH), |n| jobs.lookup(n));
                    }
                }
                None => bw.allocate(now, std::iter::empty(), |n| jobs.lookup(n)),
            }
        }
        if let Some(d) = &mut self.director {
            if let Some(pool) = &self.pool {
                d.on_live_nodes(now, &pool.live_nodes());
            }
            d.handle_tick(now, &mut self.out);
        }
    }

    /// Process detection and CPU shares (seed [0179]-[0182]): the runtime
    /// runs the scheduler's tick with the peers' entries.
    fn low_frequency(&mut self) {
        if !self.cpu_scheduling() || !self.enforcing() {
            return;
        }
        let peers = match &self.pool {
            Some(pool) => pool
                .peer_entries(CODE_CPU)
                .map(|(_, b)| b.to_vec())
                .collect(),
            None => Vec::new(),
        };
        let enforce = self.cfg.pool.enforcement.is_on();
        self.out
            .commands
            .push_back(Command::CpuTick { peers, enforce });
    }

    /// Gossips this node's summary (the pool from any server).
    fn publish_summary(&mut self, now: Timestamp) {
        if self.pool.is_none() {
            return;
        }
        let st = self.status(now, DataplaneView::default());
        let mut s = self.rates.summary(now, &st, &self.cfg);
        if let Some(pool) = &mut self.pool {
            s.policy = pool.policy().active().map(|(m, _)| m.id);
            let bytes = s.encode(headroom_control::policy::summary::SUMMARY_MAX);
            pool.publish(now, headroom_control::policy::summary::SUMMARY_CODE, &bytes);
            // Every live node's headroom (its summary: cores 0 = not measured).
            let samples: Vec<(u32, Option<u32>)> = pool
                .summaries(now)
                .into_iter()
                .filter(|p| p.state == headroom_control::exchange::MemberState::Alive)
                .map(|p| {
                    let h = p
                        .summary
                        .filter(|s| s.cores > 0)
                        .map(|s| s.headroom_permille);
                    (p.node, h)
                })
                .collect();
            if let (Some(f), Some(d)) = (self.headroom.update(&samples), &mut self.director) {
                d.set_headroom(f);
            }
        }
    }

    /// The pool policy version in force (0 when alone or before one).
    fn policy_id(&self) -> u64 {
        automation::policy_id(
            self.pool
                .as_ref()
                .and_then(|p| p.policy().active().map(|(m, _)| m.id)),
        )
    }

    /// This node's wall clock at `now`.
    fn wall(&self, now: Timestamp) -> WallTime {
        let ms = u64::try_from(now.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u64::MAX);
        WallTime::from_unix_millis(self.wall_ms.saturating_add(ms))
    }

    /// Triggers, schedules and failure policies: the master evaluates
    /// (`evaluate`: a fresh snapshot, at the low frequency; deadlines in
    /// between), every node follows the master's record.
    fn automate(&mut self, now: Timestamp, evaluate: bool) {
        if !self.enforcing() {
            // Not on the pool's current policy yet: nothing to evaluate it by.
            return;
        }
        let me = u32::from(self.cfg.node.id);
        let wall = self.wall(now);
        let policy_id = self.policy_id();
        let Agent {
            seat,
            pool,
            base,
            cfg,
            cpu,
            director,
            ..
        } = self;
        let pool = pool.as_ref();
        let (master, live) = match pool {
            Some(p) => (p.master(), p.live_nodes()),
            None => (me, vec![me]),
        };
        let entries: Vec<(u32, &[u8])> = pool
            .map(|p| p.peer_entries(automation::CODE_AUTOMATION).collect())
            .unwrap_or_default();
        let parts: Vec<(u8, &[u8])> = pool
            .map(|p| {
                automation::codes()
                    .skip(1)
                    .filter_map(|c| {
                        let (_, b) = p.peer_entries(c).find(|(n, _)| *n == master)?;
                        Some((c, b))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let view = automation::View {
            me,
            master,
            live: &live,
            entries,
            parts,
            base,
            policy_id,
        };
        // Every node keeps the exit baseline at each evaluation, so a new
        // master starts current (a standby's increases are not events).
        let (nodes, exits) = if evaluate {
            let nodes = match pool {
                Some(p) => p.summaries(now),
                // Alone: this node's own exit counts, as a summary carries them.
                None => vec![automation::alone(me, cpu.as_ref())],
            };
            let exits = seat.exits(&nodes);
            (nodes, exits)
        } else {
            (Vec::new(), Vec::new())
        };
        let fx = seat.step(now, wall, view, evaluate, |_| {
            let dir = director.as_ref().map(|d| d.status(std::iter::empty()));
            // Alone, `nodes` holds only the exit counts: no members.
            let members = if pool.is_some() { &nodes[..] } else { &[] };
            let mut snap =
                automation::snapshot(cfg, members, me, cpu.as_ref(), dir.as_ref(), exits);
            if pool.is_none() {
                snap.nodes.push(headroom_control::triggers::NodeState {
                    id: me,
                    cores: cpu.as_ref().map_or(0.0, |c| c.local_cores),
                });
            }
            snap
        });
        for a in fx.actions {
            self.out.commands.push_back(Command::RunAction(Box::new(a)));
        }
        self.journal_out();
        if let (Some(bytes), Some(p)) = (fx.publish, &mut self.pool) {
            // Parts first: a standby that sees the head finds them sooner.
            for (code, part) in &fx.parts {
                p.publish(now, *code, part);
            }
            p.publish(now, automation::CODE_AUTOMATION, &bytes);
        }
        if let Some(o) = fx.overlay {
            let effective = o.compose(&self.base);
            let changes = policy::live_changes(&self.cfg, &effective, self.cpu_scheduling);
            if changes.restart_required.is_empty() {
                tracing::info!(overlay = %o.describe(), %changes, "automation: overlay applied");
                self.install(effective);
            } else {
                tracing::error!(overlay = %o.describe(), fields = ?changes.restart_required,
                    "automation: overlay not applied here: it changes what only a restart applies");
            }
        }
    }

    /// A trigger action finished ([`Command::RunAction`]).
    pub fn handle_action_record(&mut self, rec: headroom_actions::ActionRecord) {
        self.seat.handle_action(rec);
        self.journal_out();
    }

    fn journal_out(&mut self) {
        for r in self.seat.take_unsaved() {
            self.out.commands.push_back(Command::Journal(Box::new(r)));
        }
    }

    /// The memory journal since `unix_ms` (what this node evaluated while
    /// master, this run; the history store has the earlier runs too).
    pub fn events(&self, unix_ms: u64) -> Vec<automation::EventRow> {
        self.seat.events(unix_ms)
    }

    /// The automation's state.
    pub fn automation_status(&self, now: Timestamp) -> automation::AutomationStatus {
        self.seat.status(now)
    }

    fn drain_pool(&mut self, now: Timestamp) {
        while let Some(ev) = self.pool.as_mut().and_then(Pool::poll_policy_event) {
            self.on_policy_event(now, ev);
        }
        if let Some(pool) = &mut self.pool {
            if let Some(bytes) = pool.take_policy_persist() {
                self.out.commands.push_back(Command::PersistPolicy(bytes));
            }
            while let Some(t) = pool.poll_transmit() {
                self.out.transmits.push_back(Transmit::Datagram {
                    to: t.dst,
                    payload: t.bytes,
                });
            }
        }
    }

    /// An exchange datagram arrived.
    pub fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, bytes: &[u8]) {
        if let Some(pool) = &mut self.pool {
            pool.handle_datagram(now, from, bytes);
        }
        self.drain_pool(now);
    }

    /// A worker published its counters.
    pub fn handle_report(&mut self, report: Report) {
        let i = report.index;
        if let Some(slot) = self.reports.get_mut(i) {
            *slot = Some(report);
        }
    }

    /// The kernel's neighbour table, as asked for by
    /// [`Command::ReadNeighbours`]: complete IPv4 entries (address, MAC),
    /// this server's own addresses included.
    pub fn handle_neighbours(&mut self, now: Timestamp, table: &[(Ipv4Addr, [u8; 6])]) {
        if let Some(d) = &mut self.director {
            d.handle_neighbours(now, table, &mut self.out);
        }
    }

    /// The result of a [`Transmit::Probe`].
    pub fn handle_probe_result(&mut self, now: Timestamp, node: NodeId, result: &ProbeResult) {
        if let Some(d) = &mut self.director {
            d.handle_probe_result(now, node, result, &mut self.out);
        }
    }

    /// The process scheduler ran its tick ([`Command::CpuTick`]): this node's
    /// encoded pool entry and what it now knows.
    pub fn handle_cpu(&mut self, now: Timestamp, entry: &[u8], snap: &ProcSchedSnapshot) {
        if let Some(pool) = &mut self.pool {
            pool.publish(now, CODE_CPU, entry);
        }
        self.cpu = Some(cpu_status(snap));
        self.drain_pool(now);
    }

    /// A transmit could not be sent (counted where it matters).
    pub fn handle_transmit_failed(&mut self, t: &Transmit) {
        if let (Transmit::Frame { .. }, Some(d)) = (t, &mut self.director) {
            d.announce_failed();
        }
    }

    /// A reload: the node file as read again (or why it could not be). With
    /// a pool that runs a policy, the node file's policy sections are not
    /// used (the pool's policy is composed in; `policy apply` changes it).
    /// A valid result is applied whole; one that is invalid or changes a
    /// field only a start reads is rejected whole (naming those fields) and
    /// leaves the previous one in force. Returns what changed, or the error
    /// message of a rejected reload.
    pub fn reload(&mut self, loaded: Result<Config, ConfigError>) -> Result<ConfigChanges, String> {
        let node = match loaded {
            Ok(c) => c,
            Err(e) => return Err(self.reload_failed(e.to_string())),
        };
        for w in &node.warnings {
            tracing::warn!("{w}");
        }
        let mut notes = Vec::new();
        let new = match self.pool.as_ref().and_then(|p| p.policy().active()) {
            Some((meta, doc)) => {
                let name = format!("policy {}", meta.id);
                let composed = std::str::from_utf8(doc)
                    .map_err(|e| e.to_string())
                    .and_then(|d| {
                        node.with_policy(d, Path::new(&name))
                            .map_err(|e| e.to_string())
                    });
                match composed {
                    Ok(c) => {
                        if !c.same_policy(&node) {
                            notes.push(format!(
                                "the node file's policy sections are not used: the pool runs {} \
                                 (`headroomctl policy apply FILE` changes it)",
                                meta.id
                            ));
                        }
                        c
                    }
                    Err(e) => return Err(self.reload_failed(e)),
                }
            }
            None => node.clone(),
        };
        let mut changes = policy::live_changes(&self.base, &new, self.cpu_scheduling);
        changes.notes = notes;
        // All or nothing: a file that changes what only a start reads is
        // refused whole, so status, pool and dataplane never disagree.
        if !changes.restart_required.is_empty() {
            let msg = format!(
                "{}: not reloaded, nothing changed: {} only change(s) at a restart \
                 (restart headroomd to apply them, or put the running values back)",
                self.config_file,
                changes.restart_required.join(", ")
            );
            return Err(self.reload_failed(msg));
        }
        policy::lock(&self.composer).node = node;
        self.apply_config(new, &changes);
        self.reloads_ok += 1;
        self.last_reload_error = None;
        tracing::info!(file = %self.config_file, %changes, "configuration reloaded");
        for n in &changes.notes {
            tracing::warn!("{n}");
        }
        Ok(changes)
    }

    fn reload_failed(&mut self, msg: String) -> String {
        self.reloads_failed += 1;
        self.last_reload_error = Some(msg.clone());
        tracing::error!(error = %msg, "configuration rejected; the previous one stays in force");
        msg
    }

    /// Puts `new` in force: rules to the workers, bookings to the pipes,
    /// process rules to the scheduler. `changes` must hold nothing for a
    /// restart.
    fn apply_config(&mut self, new: Config, changes: &ConfigChanges) {
        debug_assert!(changes.restart_required.is_empty());
        let id = self.policy_id();
        self.seat.reconfigure(self.now_hint, &new, id);
        let effective = self.seat.overlay().compose(&new);
        self.base = new;
        self.install(effective);
    }

    /// Puts `new` (the base with the overlay) in force.
    fn install(&mut self, new: Config) {
        let rules = self.jobs.rules(&new);
        self.rules = Arc::clone(&rules);
        self.out.commands.push_back(Command::SetRules(rules));
        if let Some(bw) = &mut self.pipes {
            let jobs = &mut self.jobs;
            bw.set_bookings(&new, |n| jobs.id(n).0);
        }
        if let Some(d) = &mut self.director {
            // Tables rebuilt now, before this node acknowledges the version:
            // once `policy apply` answers, every owner places by it.
            d.reconfigure(&new, self.now_hint);
            d.update(self.now_hint, &mut self.out);
        }
        if self.cpu_scheduling {
            self.out.commands.push_back(Command::CpuReload {
                jobs: new.jobs.iter().map(|j| j.process_job()).collect(),
            });
        }
        policy::lock(&self.composer).active = new.clone();
        self.cfg = new;
    }

    /// Whether this node enforces its policy: always alone; in a pool once
    /// it has run the pool's current version.
    pub fn enforcing(&self) -> bool {
        self.pool.as_ref().is_none_or(|p| p.policy().is_current())
    }

    fn on_policy_event(&mut self, _now: Timestamp, ev: PolicyEvent) {
        match ev {
            PolicyEvent::Current { active } => match active {
                Some(v) => {
                    tracing::info!(version = %v.long(), "running the pool's current policy; enforcing")
                }
                None => tracing::info!("the pool has no policy yet; enforcing the node file's"),
            },
            PolicyEvent::Activated { id, previous } => self.activate_policy(id, previous),
            PolicyEvent::Rejected { id, reason } => {
                tracing::error!(version = %id.long(), %reason, "policy version refused here; the previous one stays in force")
            }
            PolicyEvent::ApplyAssigned { req, id } => {
                tracing::info!(?req, version = %id.long(), "policy apply numbered")
            }
            PolicyEvent::ApplyFinished { req, result } => {
                let changes = self.policy_changes.remove(&req);
                let answer = Box::new(PolicyAnswer::from_result(&result, changes));
                tracing::info!(outcome = %answer.outcome, version = ?answer.version, "policy apply finished");
                self.out
                    .commands
                    .push_back(Command::PolicyAnswer { req, answer });
            }
            PolicyEvent::Lost { lost, winner } => {
                for l in &lost {
                    tracing::warn!(version = %l.id.long(), author = l.author, user = %l.user, message = %l.message,
                        winner = %winner.long(), "policy version lost when a partition healed");
                }
            }
            PolicyEvent::RolloutFinished(r) => tracing::info!(
                version = %r.version.long(),
                active = r.active,
                rejected = r.rejected.len(),
                stragglers = r.stragglers.len(),
                took_ms = r.took_ms,
                "policy rollout finished"
            ),
            PolicyEvent::InitialIgnored { reason } => {
                tracing::info!(%reason, "the node file's initial policy is not used")
            }
        }
    }

    /// The pool activated `id` here: compose and apply it live.
    fn activate_policy(
        &mut self,
        id: headroom_control::policy::VersionId,
        previous: Option<headroom_control::policy::VersionId>,
    ) {
        let Some(doc) = self
            .pool
            .as_ref()
            .and_then(|p| p.policy().active_document())
            .map(<[u8]>::to_vec)
        else {
            return;
        };
        let checked = policy::lock(&self.composer).check(&doc, &format!("policy {id}"));
        match checked {
            Ok((new, changes)) => {
                self.apply_config(new, &changes);
                tracing::info!(version = %id.long(), previous = ?previous.map(|p| p.to_string()), %changes, "policy activated");
            }
            Err(e) => {
                self.policy_failed += 1;
                tracing::error!(version = %id.long(), error = %e, "policy active in the pool cannot run here; the previous configuration stays in force");
            }
        }
    }

    fn pool_for_policy(&mut self) -> Result<&mut Pool, String> {
        self.pool.as_mut().ok_or_else(|| {
            "policy commands need a pool: this node runs alone (no [exchange] key_file); \
             edit the node file's [[job]] and [[pipe]] sections and run `headroomctl reload`"
                .to_string()
        })
    }

    /// `policy apply`: checks `doc` (named `file` in errors) against this
    /// node, then submits it as the pool's next version. The answer comes as
    /// [`Command::PolicyAnswer`] for the returned request.
    pub fn policy_apply(
        &mut self,
        now: Timestamp,
        doc: &str,
        file: &str,
        user: &str,
        message: &str,
    ) -> Result<ReqId, String> {
        self.pool_for_policy()?;
        let (_, changes) = policy::lock(&self.composer).check(doc.as_bytes(), file)?;
        let pool = self.pool_for_policy()?;
        let req = pool
            .policy_apply(now, doc.as_bytes(), user, message)
            .map_err(|e| e.to_string())?;
        self.policy_changes.insert(req, changes);
        self.drain_pool(now);
        Ok(req)
    }

    /// `policy rollback N`: publishes version `seq`'s content anew.
    pub fn policy_rollback(
        &mut self,
        now: Timestamp,
        seq: u64,
        user: &str,
        message: &str,
    ) -> Result<ReqId, String> {
        let pool = self.pool_for_policy()?;
        let doc = pool
            .policy()
            .version(seq)
            .map(|(_, d)| d.to_vec())
            .ok_or_else(|| {
                format!("no document of v{seq} on this node (`policy history` lists the versions)")
            })?;
        let (_, changes) = policy::lock(&self.composer).check(&doc, &format!("policy v{seq}"))?;
        let pool = self.pool_for_policy()?;
        let req = pool
            .policy_rollback(now, seq, user, message)
            .map_err(|e| e.to_string())?;
        self.policy_changes.insert(req, changes);
        self.drain_pool(now);
        Ok(req)
    }

    /// `policy show [--version N]`: the active version, or version `seq`.
    pub fn policy_show(&mut self, seq: Option<u64>) -> Result<PolicyVersion, String> {
        let p = self.pool_for_policy()?.policy();
        let found = match seq {
            Some(n) => p.version(n).ok_or_else(|| {
                format!("no document of v{n} on this node (only the last versions are kept; `policy history` lists them)")
            })?,
            None => p
                .active()
                .ok_or("the pool has no policy yet (`headroomctl policy apply FILE` sets one)")?,
        };
        Ok(PolicyVersion::new(found.0, found.1))
    }

    /// `policy history`, oldest first.
    pub fn policy_history(&mut self) -> Result<Vec<PolicyHistoryRow>, String> {
        let p = self.pool_for_policy()?.policy();
        let active = p.active().map(|(m, _)| m.id);
        Ok(p.history()
            .map(|h| PolicyHistoryRow::new(h, active))
            .collect())
    }

    /// `policy diff FILE`: what `doc` would change here.
    pub fn policy_diff(&mut self, doc: &str, file: &str) -> Result<ConfigChanges, String> {
        policy::lock(&self.composer)
            .check(doc.as_bytes(), file)
            .map(|(_, c)| c)
    }

    /// The configuration `doc` would make on this node (the node file with
    /// `doc` as its policy), checked as `policy apply` checks it.
    pub fn policy_compose(&self, doc: &str, file: &str) -> Result<Config, String> {
        policy::lock(&self.composer)
            .check(doc.as_bytes(), file)
            .map(|(c, _)| c)
    }

    /// The policy document in force: the pool's active version, or None
    /// when running alone or before the pool has one.
    pub fn policy_document(&self) -> Option<String> {
        let (_, doc) = self.pool.as_ref()?.policy().active()?;
        Some(String::from_utf8_lossy(doc).into_owned())
    }

    /// Every pool member with its latest summary (empty when alone).
    pub fn pool_summaries(
        &self,
        now: Timestamp,
    ) -> Vec<headroom_control::policy::summary::PoolNode> {
        self.pool
            .as_ref()
            .map(|p| p.summaries(now))
            .unwrap_or_default()
    }

    /// The pool keys as a reload re-read them (`key_file`, and
    /// `rotation_key_file` during a key rotation): applied at once. Returns
    /// what changed for the reload's summary, None when nothing did (or no
    /// pool runs).
    pub fn set_pool_keys(&mut self, key: &[u8], rotation: Option<&[u8]>) -> Option<String> {
        self.pool.as_mut()?.set_keys(key, rotation)
    }

    /// Announces a graceful leave of the pool (on shutdown; the datagrams
    /// are in the next transmits).
    pub fn leave(&mut self, now: Timestamp) {
        if let Some(pool) = &mut self.pool {
            pool.leave(now);
        }
        self.drain_pool(now);
    }

    /// The next thing to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next thing to do.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.commands.pop_front()
    }

    /// The status document, from the agent's state, the workers' latest
    /// reports and what the runtime read from the dataplane.
    pub fn status(&self, now: Timestamp, dp: DataplaneView) -> Status {
        let DataplaneView {
            interfaces,
            mut workers,
            fast_jobs,
            fast_director,
        } = dp;
        for ws in &mut workers {
            if let Some(Some(r)) = self.reports.get(ws.index) {
                fill_worker(ws, r);
            }
        }
        let mut flows = 0;
        let mut per_job: Vec<(JobId, JobCounters)> = Vec::new();
        let mut response: Option<headroom_dataplane::response::ResponseReport> = None;
        for r in self.reports.iter().flatten() {
            if let Some(rr) = &r.pipeline.response {
                response.get_or_insert_with(Default::default).merge(rr);
            }
            flows += r.pipeline.classifier.flows as u64;
            for (id, c) in &r.pipeline.classifier.jobs {
                match per_job.iter_mut().find(|(j, _)| j == id) {
                    Some((_, acc)) => acc.merge(c),
                    None => per_job.push((*id, *c)),
                }
            }
        }
        let jobs = self
            .job_names_seen()
            .into_iter()
            .map(|(name, removed)| {
                let id = if name == DEFAULT_JOB {
                    Some(JobId::DEFAULT.0)
                } else {
                    self.jobs.lookup(&name)
                };
                let c = per_job
                    .iter()
                    .find(|(j, _)| Some(j.0) == id)
                    .map(|(_, c)| *c)
                    .unwrap_or_default();
                let [fin, fout] = fast_jobs
                    .iter()
                    .find(|(j, _)| Some(*j) == id)
                    .map_or([(0, 0); 2], |(_, f)| *f);
                let goal = self
                    .cfg
                    .jobs
                    .iter()
                    .find(|j| j.name == name)
                    .and_then(|j| j.goal);
                let measured = response
                    .as_ref()
                    .zip(id)
                    .and_then(|(r, id)| r.job(JobId(id)));
                let response = goal.map(|g| response_status(&g, measured));
                JobStatus {
                    response,
                    name,
                    packets_in: c.packets_in + fin.0,
                    bytes_in: c.bytes_in + fin.1,
                    packets_out: c.packets_out + fout.0,
                    bytes_out: c.bytes_out + fout.1,
                    flows: c.active_flows,
                    removed,
                }
            })
            .collect();
        Status {
            node_id: self.cfg.node.id,
            node_name: self.cfg.node_name(),
            config_file: self.config_file.clone(),
            uptime_secs: (now - self.started).as_secs_f64(),
            reloads_ok: self.reloads_ok,
            reloads_failed: self.reloads_failed,
            last_reload_error: self.last_reload_error.clone(),
            interfaces,
            workers,
            jobs,
            flows,
            response_tracker: response.map_or_else(Vec::new, |r| {
                let t = r.stats;
                [
                    ("connections", t.connections),
                    ("capacity", t.capacity),
                    ("table_full", t.table_full),
                    ("replies_unseen", t.replies_unseen),
                    ("expired", t.expired),
                    ("syn_retransmits", t.syn_retransmits),
                    ("retransmits", t.retransmits),
                    ("untracked_segments", t.untracked_segments),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
            }),
            cpu: self.cpu.clone(),
            pipes: self
                .pipes
                .as_ref()
                .map(|bw| bw.status(|id| self.jobs.name_of(id)))
                .unwrap_or_default(),
            pipe_entries_rejected: self.pipes.as_ref().map_or(0, |bw| bw.entries_rejected()),
            exchange: self.pool.as_ref().map(Pool::status),
            policy: self.pool.as_ref().map(|p| self.policy_status(p)),
            pool: self
                .pool
                .as_ref()
                .map(|p| summary::pool_status(p.summaries(now)))
                .unwrap_or_default(),
            enforcement: self.cfg.pool.enforcement.to_string(),
            history: None,
            automation: Some(self.seat.status(now)),
            // The runtime fills it in.
            memory: None,
            schema_version: status::STATUS_SCHEMA,
            director: self.director.as_ref().map(|d| {
                let mut ds = d.status(
                    self.reports
                        .iter()
                        .flatten()
                        .filter_map(|r| r.pipeline.director.as_ref()),
                );
                if let Some((enc, dec)) = fast_director {
                    for (name, v) in ds.counters.iter_mut() {
                        match name.as_str() {
                            "encapsulated" => *v += enc,
                            "decapsulated" => *v += dec,
                            _ => {}
                        }
                    }
                }
                ds
            }),
        }
    }
}

impl Agent {
    fn policy_status(&self, p: &Pool) -> status::PolicyStatus {
        let node = p.policy();
        let st = node.stats();
        let refusal = |r: &Option<(headroom_control::policy::VersionId, String)>| {
            r.as_ref().map(|(v, why)| format!("{v}: {why}"))
        };
        status::PolicyStatus {
            active: node.active().map(|(m, _)| m.id.to_string()),
            active_id: node.active().map(|(m, _)| m.id.long()),
            enforcing: node.is_current(),
            nodes: p
                .policy_pool()
                .into_iter()
                .map(|n| status::NodePolicyStatus {
                    node: n.node as u16,
                    active: n.active.map(|v| v.to_string()),
                    current: n.current,
                    rejected: refusal(&n.rejected),
                })
                .collect(),
            rejected: refusal(&node.rejected().cloned()),
            counters: vec![
                ("activations".into(), st.activations),
                ("versions_rejected".into(), st.versions_rejected),
                ("activation_failed".into(), self.policy_failed),
                ("versions_published".into(), st.versions_published),
                ("submissions_refused".into(), st.submissions_refused),
                ("versions_lost".into(), st.versions_lost),
                ("messages_malformed".into(), st.messages_malformed),
                ("messages_unexpected".into(), st.messages_unexpected),
                ("send_failed".into(), st.send_failed),
                ("chunks_ignored".into(), st.chunks_ignored),
                ("blobs_corrupt".into(), st.blobs_corrupt),
                ("records_invalid".into(), st.records_invalid),
                ("drafts_invalid".into(), st.drafts_invalid),
                ("beacons_malformed".into(), st.beacons_malformed),
                ("transfers_refused".into(), st.transfers_refused),
                ("transfers_expired".into(), st.transfers_expired),
                (
                    "restore_failed".into(),
                    u64::from(p.policy_restore_error.is_some()),
                ),
            ],
        }
    }
}

/// Whether `cfg` gives the process scheduler work.
pub fn cpu_scheduling(cfg: &Config) -> bool {
    cfg.cpu.enabled && cfg.jobs.iter().any(|j| !j.process_rules.is_empty())
}

fn cpu_status(snap: &ProcSchedSnapshot) -> CpuStatus {
    CpuStatus {
        backend: format!("{:?} {}", snap.backend, snap.backend_description),
        local_cores: snap.local_cores,
        pool_cores: snap.pool_cores,
        insufficient_resources: snap
            .insufficient_resources
            .then(|| snap.insufficient_reason.clone().unwrap_or_default()),
        jobs: snap
            .jobs
            .iter()
            .map(|j| CpuJobStatus {
                name: j.name.clone(),
                pids: j.pids.clone(),
                cores_used: j.cores_used,
                rss_bytes: j.rss_bytes,
                target_percent: j.target_percent,
                weight: j.weight,
                pool_instances: j.pool_instances,
                exits: j.exits.count,
                last_exit: (j.exits.count > 0)
                    .then(|| (j.exits.last_pid, j.exits.last_comm.clone())),
            })
            .collect(),
        unmanaged_processes: snap.unmanaged.processes,
        unmanaged_cores: snap.unmanaged.cores_used,
    }
}

/// A job's response times against its goal (nothing measured yet: zeros).
fn response_status(
    goal: &headroom_config::goal::Goal,
    m: Option<&headroom_dataplane::response::JobResponse>,
) -> status::ResponseStatus {
    use headroom_config::goal::Goal;
    let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64() * 1e3);
    let Some(m) = m else {
        return status::ResponseStatus {
            goal: goal.to_string(),
            ..Default::default()
        };
    };
    let h = &m.response;
    let achieved = match *goal {
        Goal::Percentile { percentile, .. } => h.quantile(percentile / 100.0),
        Goal::Average { .. } => h.mean(),
    };
    let bound = goal.time().as_secs_f64();
    status::ResponseStatus {
        goal: goal.to_string(),
        index: achieved
            .filter(|_| bound > 0.0)
            .map(|a| a.as_secs_f64() / bound),
        requests: m.requests,
        answered: h.count(),
        unanswered: m.unanswered,
        p50_ms: ms(h.quantile(0.5)),
        p90_ms: ms(h.quantile(0.9)),
        p99_ms: ms(h.quantile(0.99)),
        mean_ms: ms(h.mean()),
        setups: m.setup.count(),
        setup_p50_ms: ms(m.setup.quantile(0.5)),
    }
}

/// A worker's counters from its latest report.
fn fill_worker(ws: &mut WorkerStatus, r: &Report) {
    let s = &r.stats;
    ws.rx_packets = s.rx_packets;
    ws.rx_bytes = s.rx_bytes;
    ws.tx_packets = s.tx_packets;
    ws.tx_bytes = s.tx_bytes;
    ws.drops = vec![
        ("policy".into(), s.drop_policy),
        ("pacer_queue_full".into(), s.drop_pacer),
        ("rewrite".into(), s.drop_rewrite),
        ("tx_full".into(), s.drop_tx_full),
        ("too_big".into(), s.drop_too_big),
        ("too_many_buffers".into(), s.drop_too_many_buffers),
        ("no_frames".into(), s.drop_no_frames),
    ];
    ws.rx_multi_buffer = s.rx_multi_buffer;
    ws.segmented = [s.segmented, s.segments_made];
    ws.checksums_completed = r.pipeline.checksums_completed;
    ws.fast_installs = [s.fast_installs, s.fast_install_errors];
    let k = &r.sockets;
    ws.socket = vec![
        ("rx_dropped".into(), k[0].rx_dropped, k[1].rx_dropped),
        ("rx_ring_full".into(), k[0].rx_ring_full, k[1].rx_ring_full),
        (
            "rx_fill_ring_empty".into(),
            k[0].rx_fill_ring_empty_descs,
            k[1].rx_fill_ring_empty_descs,
        ),
        (
            "rx_invalid_descs".into(),
            k[0].rx_invalid_descs,
            k[1].rx_invalid_descs,
        ),
        (
            "tx_invalid_descs".into(),
            k[0].tx_invalid_descs,
            k[1].tx_invalid_descs,
        ),
        (
            "tx_ring_empty".into(),
            k[0].tx_ring_empty_descs,
            k[1].tx_ring_empty_descs,
        ),
    ];
    let l = &r.ledger;
    ws.frames_total = l.total;
    ws.frames_accounted = l.accounted();
    ws.frame_violations = l.violations;
    ws.rules_generation = r.pipeline.classifier.rules_generation;
    ws.parse_errors = r.pipeline.parse_errors;
}
