//! Shared pipes (seed [0202]-[0215]): the one pipes loop.
//!
//! Every high-frequency interval, per pipe:
//! 1. *sample*: read what the pacers measured ([`PacerPort::sample`]),
//! 2. *demand*: turn it into this node's demand ([`allocator::node_demand`],
//!    with the bookings of the jobs that ran here lately),
//! 3. *gossip*: [`Pipes::measure`] returns the encoded entry; the caller
//!    spreads it (the exchange, or a simulation's instant gossip) and brings
//!    back the other live nodes' entries,
//! 4. *allocate*: [`Pipes::allocate`] decodes them and computes this node's
//!    grant ([`allocator::allocate`]),
//! 5. *grants*: hands the per-job credits to the pacers
//!    ([`PacerPort::set_grants`]).
//!
//! The daemon runs it on the real [`PacerControl`]; the closed-loop
//! simulations run the same code on real pacers (`pacer_loop_tests`) and on
//! a packet-level model of one (`model_sim_tests`).

use std::collections::{BTreeSet, HashMap};

use headroom_clock::Timestamp;
use headroom_config::{net::PipeDirection, Config};
use headroom_control::allocator::{
    self,
    wire::{self, PipeEntry},
    JobBooking, JobDemand, LocalDemand, NodePipeDemand, PipeGrant, PipeSpec,
};
use headroom_dataplane::{
    pacer::{JobCredit, JobSample, Pacer, PacerConfig, PacerControl, PacerError, PacerPipeConfig},
    pipeline::{PacingRules, PipeMatch},
};

use crate::status::{PipeJobTotals, PipeStatus};

/// A job counts as running on this node for this long after its last byte,
/// or after start for a job not seen yet (it keeps making a minimum booked
/// request meanwhile, so its first packets need not wait for an exchange),
/// in intervals.
pub const ACTIVE_INTERVALS: u32 = 50;

/// Credit per interval each job gets in monitor-only mode
/// (`[pool] enforcement = "off"`): more than any link carries, so nothing
/// waits, while the allocator's grant is still computed and recorded.
pub const UNPACED_BYTES: u64 = 1 << 32;

/// Job slots of the pacers beyond the configured jobs: room for jobs added
/// by later reloads.
const SPARE_JOB_SLOTS: u16 = 64;

/// The pacers as the pipes loop sees them.
pub trait PacerPort {
    /// Per-job counters of `pipe` since the previous sample (into `out`,
    /// cleared first).
    fn sample(
        &mut self,
        pipe: usize,
        now: Timestamp,
        out: &mut Vec<JobSample>,
    ) -> Result<(), PacerError>;

    /// The credits of `pipe` for the interval starting at `now`.
    fn set_grants(
        &mut self,
        pipe: usize,
        now: Timestamp,
        immediate: u64,
        credits: &[JobCredit],
    ) -> Result<(), PacerError>;
}

impl PacerPort for PacerControl {
    fn sample(
        &mut self,
        pipe: usize,
        now: Timestamp,
        out: &mut Vec<JobSample>,
    ) -> Result<(), PacerError> {
        PacerControl::sample(self, pipe, now, out)
    }

    fn set_grants(
        &mut self,
        pipe: usize,
        now: Timestamp,
        immediate: u64,
        credits: &[JobCredit],
    ) -> Result<(), PacerError> {
        PacerControl::set_grants(self, pipe, now, immediate, credits)
    }
}

/// One pipe as the loop needs it.
#[derive(Debug, Clone)]
pub struct PipeDef {
    /// Name (what peers' entries are matched by).
    pub name: String,
    /// Capacity, immediate share and interval.
    pub spec: PipeSpec,
    /// Directions the pipe paces.
    pub direction: PipeDirection,
    /// The pool-wide booking table, in local job ids.
    pub bookings: Vec<JobBooking>,
}

#[derive(Debug)]
struct Pipe {
    def: PipeDef,
    /// Intervals since each job last had traffic here.
    idle: HashMap<u16, u32>,
    /// Intervals measured since start (the idle time of jobs not seen yet).
    intervals: u32,
    local: LocalDemand,
    grant: Option<PipeGrant>,
    /// Whether the grants last installed in the pacer pace (false:
    /// monitor-only credit).
    paced: bool,
    /// Nodes whose demand went into the last allocation (this one included).
    nodes: usize,
    /// Bytes sent per job in the last interval (for status).
    sent: HashMap<u16, u64>,
    dropped: HashMap<u16, u64>,
    queued: HashMap<u16, u64>,
    /// Per job since start, for history and metrics.
    totals: HashMap<u16, PipeTotals>,
}

/// One job's cumulative bytes on one pipe on this node (never reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipeTotals {
    /// Offered to the pacer: sent, queued or dropped.
    pub demand: u64,
    /// Credit the allocator granted (in monitor-only mode: what it would
    /// have granted).
    pub granted: u64,
    /// Sent.
    pub sent: u64,
    /// Dropped.
    pub dropped: u64,
}

/// Shared-pipe state of this node.
#[derive(Debug)]
pub struct Pipes<P> {
    pipes: Vec<Pipe>,
    port: P,
    samples: Vec<JobSample>,
    /// Peer entries that did not decode.
    entries_rejected: u64,
    /// False in monitor-only mode: grants are computed, not installed.
    enforce: bool,
}

impl Pipes<PacerControl> {
    /// Sets up the pacers of `workers` workers for the config's pipes (None
    /// when there are none). `id_of` gives the stable local id of a job name.
    pub fn from_config(
        cfg: &Config,
        workers: usize,
        id_of: impl FnMut(&str) -> u16,
    ) -> Result<Option<Self>, PipesError> {
        if cfg.pipes.is_empty() {
            return Ok(None);
        }
        let interval_ns = nanos(cfg.control.high_freq_interval);
        let job_slots = job_slots(cfg);
        let pacer_pipes = cfg
            .pipes
            .iter()
            .map(|_| PacerPipeConfig {
                jobs: job_slots,
                interval_ns,
                max_queue_delay_ns: nanos(cfg.workers.pacer_max_queue_delay),
                ..Default::default()
            })
            .collect();
        let control = PacerControl::new(PacerConfig {
            pipes: pacer_pipes,
            workers,
            burst_ns: nanos(cfg.workers.pacer_burst),
            ..Default::default()
        })?;
        let mut defs = Vec::new();
        for p in &cfg.pipes {
            let spec = PipeSpec::new(p.capacity.bps(0), p.immediate_share, interval_ns)
                .map_err(|e| PipesError::Pipe(p.name.clone(), e))?;
            defs.push(PipeDef {
                name: p.name.clone(),
                spec,
                direction: p.direction,
                bookings: Vec::new(),
            });
        }
        let mut pipes = Pipes::new(defs, control);
        pipes.set_bookings(cfg, id_of);
        Ok(Some(pipes))
    }

    /// The pacer of worker `i`.
    pub fn worker_pacer<T>(&self, i: usize) -> Result<Pacer<T>, PacerError> {
        self.port.worker(i)
    }
}

/// Why the pipes could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PipesError {
    /// The pacer refused its configuration.
    #[error("configuring the pacer: {0}")]
    Pacer(#[from] PacerError),
    /// A pipe's settings are out of range.
    #[error("pipe {0}: {1}")]
    Pipe(String, allocator::AllocError),
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Job slots the pacers get for `cfg`.
pub fn job_slots(cfg: &Config) -> u16 {
    (cfg.jobs.len() as u16 + 1).saturating_add(SPARE_JOB_SLOTS)
}

/// Which traffic each pipe carries, for the workers.
pub fn pacing_rules(cfg: &Config) -> PacingRules {
    if cfg.pipes.is_empty() {
        return PacingRules::default();
    }
    PacingRules {
        pipes: cfg
            .pipes
            .iter()
            .map(|p| PipeMatch {
                remote: p.remote,
                direction: p.direction,
            })
            .collect(),
        job_slots: job_slots(cfg),
    }
}

impl<P: PacerPort> Pipes<P> {
    /// The loop over `defs`, driving `port`.
    pub fn new(defs: Vec<PipeDef>, port: P) -> Self {
        Pipes {
            pipes: defs
                .into_iter()
                .map(|def| Pipe {
                    def,
                    idle: HashMap::new(),
                    intervals: 0,
                    local: LocalDemand::default(),
                    grant: None,
                    paced: true,
                    nodes: 1,
                    sent: HashMap::new(),
                    dropped: HashMap::new(),
                    queued: HashMap::new(),
                    totals: HashMap::new(),
                })
                .collect(),
            port,
            samples: Vec::new(),
            entries_rejected: 0,
            enforce: true,
        }
    }

    /// The pacers.
    pub fn port(&self) -> &P {
        &self.port
    }

    /// The pacers, mutably (simulations offer traffic through them).
    pub fn port_mut(&mut self) -> &mut P {
        &mut self.port
    }

    /// Peer entries rejected as undecodable so far.
    pub fn entries_rejected(&self) -> u64 {
        self.entries_rejected
    }

    /// Re-reads each pipe's capacity, immediate share and bookings (live;
    /// the set of pipes and what traffic they carry need a restart).
    pub fn set_bookings(&mut self, cfg: &Config, mut id_of: impl FnMut(&str) -> u16) {
        self.enforce = cfg.pool.enforcement.is_on();
        for pipe in &mut self.pipes {
            let Some(pc) = cfg.pipes.iter().find(|p| p.name == pipe.def.name) else {
                continue;
            };
            let capacity = pc.capacity.bps(0);
            match PipeSpec::new(capacity, pc.immediate_share, pipe.def.spec.interval_ns) {
                Ok(spec) => pipe.def.spec = spec,
                // Validation bounds the fields: not reached with a valid config.
                Err(e) => tracing::error!(pipe = %pc.name, error = %e, "pipe settings kept"),
            }
            pipe.def.bookings = cfg
                .jobs
                .iter()
                .flat_map(|j| j.bookings.iter().map(move |b| (j, b)))
                .filter(|(_, b)| b.pipe == pipe.def.name)
                .map(|(j, b)| JobBooking {
                    job: id_of(&j.name),
                    booked: allocator::Rate::Bps(b.rate.bps(capacity)),
                    cap: b.cap.map(|c| allocator::Rate::Bps(c.bps(capacity))),
                })
                .collect();
        }
    }

    /// Replaces the bookings of pipe `i` (local job ids).
    pub fn set_pipe_bookings(&mut self, i: usize, bookings: Vec<JobBooking>) {
        if let Some(p) = self.pipes.get_mut(i) {
            p.def.bookings = bookings;
        }
    }

    /// Steps 1 and 2: samples the pacers and computes this node's demand on
    /// every pipe; returns the entry to gossip. `name_of` names local job ids
    /// (entries carry names: ids are local to each node).
    pub fn measure<'a>(
        &mut self,
        now: Timestamp,
        name_of: impl Fn(u16) -> Option<&'a str>,
    ) -> Vec<u8> {
        let mut entries = Vec::with_capacity(self.pipes.len());
        for (i, pipe) in self.pipes.iter_mut().enumerate() {
            self.samples.clear();
            if self.port.sample(i, now, &mut self.samples).is_err() {
                continue;
            }
            pipe.sent.clear();
            pipe.dropped.clear();
            pipe.queued.clear();
            pipe.intervals = pipe.intervals.saturating_add(1);
            let mut demands = Vec::with_capacity(self.samples.len());
            for s in &self.samples {
                let idle = pipe.idle.entry(s.job).or_insert(pipe.intervals - 1);
                *idle = if s.arrived_bytes > 0 || s.queued_bytes > 0 {
                    0
                } else {
                    idle.saturating_add(1)
                };
                *pipe.sent.entry(s.job).or_default() += s.sent_bytes;
                *pipe.dropped.entry(s.job).or_default() += s.dropped_bytes;
                *pipe.queued.entry(s.job).or_default() += s.queued_bytes;
                let t = pipe.totals.entry(s.job).or_default();
                t.demand += s.arrived_bytes;
                t.sent += s.sent_bytes;
                t.dropped += s.dropped_bytes;
                demands.push(JobDemand {
                    job: s.job,
                    queued: s.queued_bytes,
                    arrived: s.arrived_bytes,
                    debt: s.debt_bytes,
                });
            }
            // Only the bookings of jobs that ran here lately: each listed job
            // makes a minimum request out of its pool-wide booking.
            let running: Vec<JobBooking> = pipe
                .def
                .bookings
                .iter()
                .filter(|b| pipe.idle.get(&b.job).unwrap_or(&pipe.intervals) < &ACTIVE_INTERVALS)
                .copied()
                .collect();
            pipe.local = allocator::node_demand(&pipe.def.spec, &running, &demands);
            entries.push(PipeEntry::from_demand(
                &pipe.def.name,
                &pipe.local.node,
                &name_of,
            ));
        }
        wire::encode(&entries)
    }

    /// Steps 4 and 5: computes and installs this node's grants from the
    /// other live nodes' latest entries (`peers`: (node, entry bytes)).
    pub fn allocate<'a>(
        &mut self,
        now: Timestamp,
        peers: impl IntoIterator<Item = (u32, &'a [u8])>,
        id_of: impl Fn(&str) -> Option<u16>,
    ) {
        let mut decoded: Vec<Vec<PipeEntry>> = Vec::new();
        for (node, bytes) in peers {
            match wire::decode(bytes) {
                Ok(e) => decoded.push(e),
                Err(e) => {
                    self.entries_rejected += 1;
                    tracing::debug!(node, error = %e, "bandwidth entry rejected");
                }
            }
        }
        for (i, pipe) in self.pipes.iter_mut().enumerate() {
            let demands: Vec<NodePipeDemand> = decoded
                .iter()
                .filter_map(|entries| entries.iter().find(|e| e.pipe == pipe.def.name))
                .map(|e| e.to_demand(&id_of))
                .collect();
            let d = &pipe.def;
            let grant = allocator::allocate(&d.spec, &d.bookings, &demands, &pipe.local);
            for j in &grant.jobs {
                pipe.totals.entry(j.job).or_default().granted += j.credit();
            }
            let (immediate, credits): (u64, Vec<JobCredit>) = if self.enforce {
                let credits = grant
                    .jobs
                    .iter()
                    .map(|j| JobCredit {
                        job: j.job,
                        credit_bytes: j.credit(),
                        immediate_allowance: j.immediate_allowance,
                    })
                    .collect();
                (grant.immediate, credits)
            } else {
                // Monitor-only: every job (listed or not) may use the
                // shared immediate credit without a cap.
                (UNPACED_BYTES, Vec::new())
            };
            if let Err(e) = self.port.set_grants(i, now, immediate, &credits) {
                tracing::error!(pipe = %d.name, error = %e, "grants rejected by the pacer");
            }
            pipe.nodes = demands.len() + 1;
            pipe.grant = Some(grant);
            pipe.paced = self.enforce;
        }
    }

    /// Whether grants are installed (false: monitor-only).
    pub fn enforcing(&self) -> bool {
        self.enforce
    }

    /// Each pipe's per-job totals since start: (pipe name, job id, totals).
    pub fn totals(&self) -> impl Iterator<Item = (&str, u16, PipeTotals)> + '_ {
        self.pipes.iter().flat_map(|p| {
            p.totals
                .iter()
                .map(move |(job, t)| (p.def.name.as_str(), *job, *t))
        })
    }

    /// The last grant of pipe `i`.
    pub fn grant(&self, i: usize) -> Option<&PipeGrant> {
        self.pipes.get(i).and_then(|p| p.grant.as_ref())
    }

    /// Status of every pipe.
    pub fn status<'a>(&self, name_of: impl Fn(u16) -> Option<&'a str>) -> Vec<PipeStatus> {
        self.pipes
            .iter()
            .map(|p| {
                let g = p.grant.as_ref();
                let mut jobs: Vec<(String, u64, u64, u64, u64)> = p
                    .sent
                    .keys()
                    .chain(g.iter().flat_map(|g| g.jobs.iter().map(|j| &j.job)))
                    .copied()
                    .collect::<BTreeSet<u16>>()
                    .into_iter()
                    .map(|job| {
                        let credit = g
                            .and_then(|g| g.jobs.iter().find(|j| j.job == job))
                            .map(|j| j.credit())
                            .unwrap_or(0);
                        (
                            name_of(job).unwrap_or("?").to_string(),
                            credit,
                            p.sent.get(&job).copied().unwrap_or(0),
                            p.queued.get(&job).copied().unwrap_or(0),
                            p.dropped.get(&job).copied().unwrap_or(0),
                        )
                    })
                    .collect();
                jobs.retain(|j| j.1 + j.2 + j.3 + j.4 > 0);
                let mut totals: Vec<PipeJobTotals> = p
                    .totals
                    .iter()
                    .map(|(job, t)| PipeJobTotals {
                        job: name_of(*job).unwrap_or("?").to_string(),
                        demand_bytes: t.demand,
                        granted_bytes: t.granted,
                        sent_bytes: t.sent,
                        dropped_bytes: t.dropped,
                    })
                    .collect();
                totals.sort_by(|a, b| a.job.cmp(&b.job));
                PipeStatus {
                    totals,
                    name: p.def.name.clone(),
                    capacity_bps: p.def.spec.capacity_bps,
                    direction: p.def.direction.to_string(),
                    node_credit: g.map(|g| g.node_credit).unwrap_or(0),
                    immediate: g.map(|g| g.immediate).unwrap_or(0),
                    pool_booked: g.map(|g| g.total_booked).unwrap_or(0),
                    pool_unbooked: g.map(|g| g.total_unbooked).unwrap_or(0),
                    nodes: p.nodes,
                    jobs,
                    paced: p.paced,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod model_sim_tests;
#[cfg(test)]
mod pacer_loop_tests;
