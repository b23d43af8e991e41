//! The control-thread side of shared pipes (seed [0202]-[0215]): every
//! high-frequency interval, read what the pacers measured, turn it into this
//! node's demand (gossiped to the pool), and once the peers' demands are in,
//! compute this node's grants and hand them to the pacers.

use std::collections::HashMap;

use anyhow::{Context, Result};
use headroom_config::Config;
use headroom_control::allocator::{
    self,
    wire::{self, PipeEntry},
    JobBooking, JobDemand, LocalDemand, NodePipeDemand, PipeGrant, PipeSpec,
};
use headroom_dataplane::{
    pacer::{JobCredit, JobSample, Pacer, PacerConfig, PacerControl, PacerPipeConfig},
    pipeline::PacingRules,
    worker::FrameDesc,
};
use serde::{Deserialize, Serialize};

/// A job counts as running on this node for this long after its last byte
/// (it keeps making a minimum booked request meanwhile), in intervals.
const ACTIVE_INTERVALS: u32 = 50;

struct Pipe {
    name: String,
    spec: PipeSpec,
    /// The pool-wide booking table, in local job ids.
    bookings: Vec<JobBooking>,
    /// Intervals since each job last had traffic here.
    idle: HashMap<u16, u32>,
    local: LocalDemand,
    grant: Option<PipeGrant>,
    /// Bytes sent per job in the last interval (for status).
    sent: HashMap<u16, u64>,
    dropped: HashMap<u16, u64>,
    queued: HashMap<u16, u64>,
}

/// Shared-pipe state of this node.
pub struct Bandwidth {
    pipes: Vec<Pipe>,
    control: PacerControl,
    samples: Vec<JobSample>,
    /// Job slots of the pacers.
    pub job_slots: u16,
}

/// One pipe in the status document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PipeStatus {
    /// Name.
    pub name: String,
    /// Capacity, bits/s.
    pub capacity_bps: u64,
    /// This node's credit for the interval (booked + unbooked), bytes.
    pub node_credit: u64,
    /// Immediate credit, bytes.
    pub immediate: u64,
    /// Pool-wide booked demand, bytes per interval.
    pub pool_booked: u64,
    /// Pool-wide unbooked demand.
    pub pool_unbooked: u64,
    /// Live nodes whose demand went into the last allocation (this one included).
    pub nodes: usize,
    /// Per job: (name, credit bytes, sent bytes last interval, queued bytes, dropped bytes last interval).
    pub jobs: Vec<(String, u64, u64, u64, u64)>,
}

impl Bandwidth {
    /// Sets up the pacers for the config's pipes (None when there are none).
    /// `id_of` gives the stable local id of a job name.
    pub fn new(
        cfg: &Config,
        workers: usize,
        mut id_of: impl FnMut(&str) -> u16,
    ) -> Result<Option<Self>> {
        if cfg.pipes.is_empty() {
            return Ok(None);
        }
        let interval_ns = cfg.control.high_freq_ms as u64 * 1_000_000;
        // Room for jobs added by later reloads.
        let job_slots = (cfg.jobs.len() as u16 + 1).saturating_add(64);
        let pacer_pipes = cfg
            .pipes
            .iter()
            .map(|_| PacerPipeConfig {
                jobs: job_slots,
                interval_ns,
                max_queue_delay_ns: cfg.workers.pacer_max_queue_delay_ms as u64 * 1_000_000,
                ..Default::default()
            })
            .collect();
        let control = PacerControl::new(PacerConfig {
            pipes: pacer_pipes,
            workers,
            burst_ns: cfg.workers.pacer_burst_us as u64 * 1000,
            ..Default::default()
        })
        .context("configuring the pacer")?;
        let mut pipes = Vec::new();
        for p in &cfg.pipes {
            let capacity = p.capacity.bps(0);
            let spec = PipeSpec::new(capacity, p.immediate_share, interval_ns)
                .with_context(|| format!("pipe {}", p.name))?;
            pipes.push(Pipe {
                name: p.name.clone(),
                spec,
                bookings: Vec::new(),
                idle: HashMap::new(),
                local: LocalDemand::default(),
                grant: None,
                sent: HashMap::new(),
                dropped: HashMap::new(),
                queued: HashMap::new(),
            });
        }
        let mut bw = Bandwidth {
            pipes,
            control,
            samples: Vec::new(),
            job_slots,
        };
        bw.set_bookings(cfg, &mut id_of);
        Ok(Some(bw))
    }

    /// Which outbound traffic each pipe carries, for the workers.
    pub fn pacing_rules(cfg: &Config, job_slots: u16) -> PacingRules {
        PacingRules {
            pipes: cfg.pipes.iter().map(|p| p.remote).collect(),
            job_slots,
        }
    }

    /// Re-reads the bookings (on reload; the set of pipes needs a restart).
    pub fn set_bookings(&mut self, cfg: &Config, mut id_of: impl FnMut(&str) -> u16) {
        for pipe in &mut self.pipes {
            let Some(pc) = cfg.pipes.iter().find(|p| p.name == pipe.name) else {
                continue;
            };
            let capacity = pc.capacity.bps(0);
            pipe.bookings = cfg
                .jobs
                .iter()
                .flat_map(|j| j.bookings.iter().map(move |b| (j, b)))
                .filter(|(_, b)| b.pipe == pipe.name)
                .map(|(j, b)| JobBooking {
                    job: id_of(&j.name),
                    booked: allocator::Rate::Bps(b.rate.bps(capacity)),
                    cap: b.cap.map(|c| allocator::Rate::Bps(c.bps(capacity))),
                })
                .collect();
        }
    }

    /// The pacer of worker `i`.
    pub fn worker_pacer(&self, i: usize) -> Result<Pacer<FrameDesc>> {
        Ok(self.control.worker(i)?)
    }

    /// Reads the pacers and computes this node's demand on every pipe; returns
    /// the gossip entry.
    pub fn measure<'a>(
        &mut self,
        now_ns: u64,
        name_of: impl Fn(u16) -> Option<&'a str>,
    ) -> Vec<u8> {
        let mut entries = Vec::with_capacity(self.pipes.len());
        for (i, pipe) in self.pipes.iter_mut().enumerate() {
            self.samples.clear();
            if self.control.sample(i, now_ns, &mut self.samples).is_err() {
                continue;
            }
            pipe.sent.clear();
            pipe.dropped.clear();
            pipe.queued.clear();
            let mut demands = Vec::with_capacity(self.samples.len());
            for s in &self.samples {
                let idle = pipe.idle.entry(s.job).or_insert(ACTIVE_INTERVALS);
                *idle = if s.arrived_bytes > 0 || s.queued_bytes > 0 {
                    0
                } else {
                    idle.saturating_add(1)
                };
                pipe.sent.insert(s.job, s.sent_bytes);
                pipe.dropped.insert(s.job, s.dropped_bytes);
                pipe.queued.insert(s.job, s.queued_bytes);
                demands.push(JobDemand {
                    job: s.job,
                    queued: s.queued_bytes,
                    arrived: s.arrived_bytes,
                    debt: s.debt_bytes,
                });
            }
            let running: Vec<JobBooking> = pipe
                .bookings
                .iter()
                .filter(|b| pipe.idle.get(&b.job).is_some_and(|&i| i < ACTIVE_INTERVALS))
                .copied()
                .collect();
            pipe.local = allocator::node_demand(&pipe.spec, &running, &demands);
            entries.push(PipeEntry::from_demand(
                &pipe.name,
                &pipe.local.node,
                &name_of,
            ));
        }
        wire::encode(&entries)
    }

    /// Computes and installs this node's grants from the peers' latest
    /// entries (`peers`: decoded entries of the other live nodes).
    pub fn allocate(
        &mut self,
        now_ns: u64,
        peers: &[Vec<PipeEntry>],
        id_of: impl Fn(&str) -> Option<u16>,
    ) {
        for (i, pipe) in self.pipes.iter_mut().enumerate() {
            let demands: Vec<NodePipeDemand> = peers
                .iter()
                .filter_map(|entries| entries.iter().find(|e| e.pipe == pipe.name))
                .map(|e| e.to_demand(&id_of))
                .collect();
            let grant = allocator::allocate(&pipe.spec, &pipe.bookings, &demands, &pipe.local);
            let credits: Vec<JobCredit> = grant
                .jobs
                .iter()
                .map(|j| JobCredit {
                    job: j.job,
                    credit_bytes: j.credit(),
                    immediate_allowance: j.immediate_allowance,
                })
                .collect();
            if let Err(e) = self
                .control
                .set_grants(i, now_ns, grant.immediate, &credits)
            {
                tracing::error!(pipe = %pipe.name, error = %e, "grants rejected by the pacer");
            }
            metrics::gauge!("headroom_pipe_node_credit_bytes", "pipe" => pipe.name.clone())
                .set(grant.node_credit as f64);
            metrics::gauge!("headroom_pipe_immediate_bytes", "pipe" => pipe.name.clone())
                .set(grant.immediate as f64);
            metrics::gauge!("headroom_pipe_nodes", "pipe" => pipe.name.clone())
                .set((demands.len() + 1) as f64);
            pipe.grant = Some(grant);
        }
    }

    /// Status of every pipe.
    pub fn status<'a>(
        &self,
        name_of: impl Fn(u16) -> Option<&'a str>,
        nodes: usize,
    ) -> Vec<PipeStatus> {
        self.pipes
            .iter()
            .map(|p| {
                let g = p.grant.as_ref();
                let mut jobs: Vec<(String, u64, u64, u64, u64)> = p
                    .sent
                    .keys()
                    .chain(g.iter().flat_map(|g| g.jobs.iter().map(|j| &j.job)))
                    .copied()
                    .collect::<std::collections::BTreeSet<u16>>()
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
                PipeStatus {
                    name: p.name.clone(),
                    capacity_bps: p.spec.capacity_bps,
                    node_credit: g.map(|g| g.node_credit).unwrap_or(0),
                    immediate: g.map(|g| g.immediate).unwrap_or(0),
                    pool_booked: g.map(|g| g.total_booked).unwrap_or(0),
                    pool_unbooked: g.map(|g| g.total_unbooked).unwrap_or(0),
                    nodes,
                    jobs,
                }
            })
            .collect()
    }
}
