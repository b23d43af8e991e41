//! A deterministic model of servers whose jobs' response times depend on
//! their CPU share and load, to run the goal loop against.
//!
//! Each job on a server is a queue: requests arrive at `rate` per second
//! and each needs `service` seconds of one core. The CPU is shared the way
//! CFS shares weights, work-conserving: a job's *capacity* is what it
//! would get if it always had work while the others use what they demand
//! (water-filling by shares). With capacity `c` cores the job serves
//! `mu = c / service` requests per second and behaves as an M/M/1 queue
//! (processor sharing has the same mean): response times are a fixed
//! `floor` plus an exponential of mean `1 / (mu - rate)`; past saturation
//! a backlog builds and adds its drain time. Each period every request's
//! response time is drawn from a seeded RNG into a real [`Histogram`], so
//! the loop sees sampling noise like the real one. A VIP's requests are
//! split over its members by their weight multipliers.
//!
//! Measured with `cargo run --release -p headroom-control --example goal_sim`
//! (see that example's output; the tests in `goal::tests` assert the
//! bounds).

use std::collections::BTreeMap;

use headroom_latency::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{JobReport, NodeId, NodeReport};

/// One job's instance on a simulated server.
#[derive(Debug, Clone)]
pub struct SimJob {
    /// Job name.
    pub name: String,
    /// Requests per second (for a VIP job: this member's share is set by
    /// [`SimPool::route`]).
    pub rate: f64,
    /// CPU seconds of one core per request.
    pub service: f64,
    /// Fixed part of every response time, seconds.
    pub floor: f64,
    /// CPU share, percent of the server.
    pub share: f64,
    /// Jobs that only burn CPU (no requests): their demand in cores.
    pub hog: Option<f64>,
    backlog: f64,
}

impl SimJob {
    /// A request/response job.
    pub fn new(name: &str, rate: f64, service: f64, floor: f64, share: f64) -> Self {
        Self {
            name: name.into(),
            rate,
            service,
            floor,
            share,
            hog: None,
            backlog: 0.0,
        }
    }

    /// A CPU hog demanding `cores`.
    pub fn hog(name: &str, cores: f64, share: f64) -> Self {
        Self {
            hog: Some(cores),
            ..Self::new(name, 0.0, 0.0, 0.0, share)
        }
    }

    fn demand(&self) -> f64 {
        self.hog.unwrap_or(self.rate * self.service)
    }
}

/// One simulated server.
#[derive(Debug, Clone)]
pub struct SimNode {
    /// Node id.
    pub id: NodeId,
    /// Cores.
    pub cores: f64,
    /// Jobs.
    pub jobs: Vec<SimJob>,
    window: u64,
}

impl SimNode {
    /// A server with `cores` and `jobs`.
    pub fn new(id: NodeId, cores: f64, jobs: Vec<SimJob>) -> Self {
        Self {
            id,
            cores,
            jobs,
            window: 0,
        }
    }

    /// The job named `name`.
    pub fn job_mut(&mut self, name: &str) -> Option<&mut SimJob> {
        self.jobs.iter_mut().find(|j| j.name == name)
    }

    /// Water-filling of `cores` by shares over `demands`.
    fn fill(&self, demands: &[f64]) -> Vec<f64> {
        let n = self.jobs.len();
        let mut alloc = vec![0.0; n];
        let mut open: Vec<usize> = (0..n).collect();
        let mut left = self.cores;
        while !open.is_empty() && left > 1e-12 {
            let w: f64 = open.iter().map(|&i| self.jobs[i].share.max(0.01)).sum();
            let level = left / w;
            let sat: Vec<usize> = open
                .iter()
                .copied()
                .filter(|&i| demands[i] - alloc[i] <= self.jobs[i].share.max(0.01) * level)
                .collect();
            if sat.is_empty() {
                for &i in &open {
                    alloc[i] += self.jobs[i].share.max(0.01) * level;
                }
                break;
            }
            for &i in &sat {
                left -= demands[i] - alloc[i];
                alloc[i] = demands[i];
            }
            open.retain(|i| !sat.contains(i));
        }
        alloc
    }

    /// Runs `period` seconds and reports what a real node would.
    pub fn run(&mut self, period: f64, rng: &mut SmallRng) -> NodeReport {
        let demands: Vec<f64> = self.jobs.iter().map(SimJob::demand).collect();
        let used = self.fill(&demands);
        let busy: f64 = used.iter().sum::<f64>() / self.cores * 100.0;
        let mut jobs = Vec::new();
        for i in 0..self.jobs.len() {
            // Capacity: what the job gets when it has work.
            let mut d = demands.clone();
            d[i] = f64::INFINITY;
            let cap = self.fill(&d)[i];
            let j = &mut self.jobs[i];
            // Run delay: busy a share rho of the time, and then running at
            // cap / cores of a core's speed.
            let rho = (j.demand() / cap.max(1e-9)).min(1.0);
            let wait = rho * (1.0 - (cap / self.cores).min(1.0)) * 100.0;
            let mut h = Histogram::new();
            if j.hog.is_none() && j.rate > 0.0 {
                let mu = cap / j.service;
                let arrivals = (j.rate * period).round() as u64;
                let served_max = mu * period;
                let start_backlog = j.backlog;
                j.backlog = (j.backlog + arrivals as f64 - served_max).max(0.0);
                let completed = (arrivals as f64).min(served_max + start_backlog).max(0.0) as u64;
                // Queueing delay: M/M/1 below saturation, plus a backlog's
                // drain time (average over the period) above.
                let rho = (j.rate / mu).min(0.98);
                let mean_wait = 1.0 / (mu * (1.0 - rho));
                let drain = (start_backlog + j.backlog) / 2.0 / mu;
                for _ in 0..completed {
                    let u: f64 = rng.gen_range(1e-12..1.0);
                    let r = j.floor + drain - u.ln() * mean_wait;
                    h.record_ns((r * 1e9) as u64);
                }
            }
            jobs.push(JobReport {
                job: j.name.clone(),
                response: h,
                cpu_percent: j.share,
                cpu_used_percent: used[i] / self.cores * 100.0,
                cpu_wait_percent: wait,
                pipe: None,
            });
        }
        self.window += 1;
        NodeReport {
            node: self.id,
            window: self.window,
            cpu_busy_percent: busy,
            jobs,
        }
    }
}

/// A pool of simulated servers.
#[derive(Debug)]
pub struct SimPool {
    /// Servers.
    pub nodes: Vec<SimNode>,
    rng: SmallRng,
}

impl SimPool {
    /// A pool of `nodes`, seeded.
    pub fn new(nodes: Vec<SimNode>, seed: u64) -> Self {
        Self {
            nodes,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// Runs every server for `period` seconds.
    pub fn run(&mut self, period: f64) -> Vec<NodeReport> {
        let rng = &mut self.rng;
        self.nodes.iter_mut().map(|n| n.run(period, rng)).collect()
    }

    /// Applies a loop change (CPU shares; bookings and weights are the
    /// caller's: see [`SimPool::route`]).
    pub fn apply(&mut self, c: &super::Change) {
        if let super::Change::Cpu { node, job, to, .. } = c {
            if let Some(j) = self
                .nodes
                .iter_mut()
                .find(|n| n.id == *node)
                .and_then(|n| n.job_mut(job))
            {
                j.share = *to;
            }
        }
    }

    /// Splits `total` requests per second of VIP job `job` over its members
    /// by `weights` (node -> multiplier; absent = 1).
    pub fn route(&mut self, job: &str, total: f64, weights: &BTreeMap<NodeId, f64>) {
        let members: Vec<(usize, f64)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.jobs.iter().any(|j| j.name == job))
            .map(|(i, n)| (i, weights.get(&n.id).copied().unwrap_or(1.0)))
            .collect();
        let sum: f64 = members.iter().map(|m| m.1).sum();
        for (i, w) in members {
            if let Some(j) = self.nodes[i].job_mut(job) {
                j.rate = total * w / sum;
            }
        }
    }
}

/// The spec of [`pool_of`]: per node a booked CPU hog (10 %), `web` (the
/// VIP's job, 90 % within 20 ms) and `api` (mean within 10 ms).
pub fn pool_spec() -> super::PoolSpec {
    use super::{JobSpec, PoolSpec, VipSpec};
    use headroom_config::goal::{Goal, Mode};
    use std::time::Duration;
    let job = |name: &str, goal: Option<Goal>, mode: Mode| JobSpec {
        name: name.into(),
        goal,
        importance: 3,
        mode,
        cap_percent: None,
        bookings: Vec::new(),
    };
    PoolSpec {
        jobs: vec![
            job("batch", None, Mode::Booked),
            job(
                "web",
                Some(Goal::Percentile {
                    percentile: 90.0,
                    within: Duration::from_millis(20),
                }),
                Mode::Goal,
            ),
            job(
                "api",
                Some(Goal::Average {
                    average: Duration::from_millis(10),
                }),
                Mode::Goal,
            ),
        ],
        pipes: Vec::new(),
        vips: vec![VipSpec {
            name: "www".into(),
            job: "web".into(),
            members: Vec::new(),
        }],
    }
}

/// `n` servers of one core running [`pool_spec`]'s jobs: `api`'s load and
/// the starting split of CPU between `web` and `api` vary by node (seeded),
/// so some nodes start with `web` short of CPU. `web`'s total load is
/// `100 n` requests per second, routed by [`SimPool::route`].
pub fn pool_of(n: usize, seed: u64) -> SimPool {
    let mut rng = SmallRng::seed_from_u64(seed);
    let nodes = (1..=n as NodeId)
        .map(|id| {
            let web_share = rng.gen_range(8.0..30.0f64).round();
            let api_rate = rng.gen_range(60.0..140.0f64).round();
            SimNode::new(
                id,
                1.0,
                vec![
                    SimJob::hog("batch", 1.0, 10.0),
                    SimJob::new("web", 100.0, 0.002, 0.002, web_share),
                    SimJob::new("api", api_rate, 0.002, 0.002, 85.0 - web_share),
                ],
            )
        })
        .collect();
    SimPool::new(nodes, seed ^ 0x5eed)
}
