//! Shared-pipe bandwidth allocator.
//!
//! A *pipe* is a path with a fixed capacity shared by every node of the pool (for example the
//! pool's uplink). Every exchange interval each node summarises the traffic it wants to send on
//! the pipe as `booked` and `unbooked` bytes, with the detail of its booked or capped jobs
//! ([`NodePipeDemand`]), gossips that, and then — from the same global picture — every node
//! computes its own share locally ([`allocate`]). Bookings and caps belong to a job across the
//! whole pool, wherever its traffic comes from. Nothing here reads a clock or does I/O: all inputs are plain data, so the
//! whole closed loop can be simulated deterministically.
//!
//! The three levels, applied identically between nodes and between jobs of a node:
//! 1. *booked* bytes (demand up to each job's guaranteed rate) are always granted;
//! 2. *unbooked* bytes are granted in full when all demand fits, otherwise each gets the same
//!    fraction `(capacity - booked_total) / unbooked_total`;
//! 3. when everything fits, the capacity nobody asked for is shared as *immediate* credit,
//!    devalued by the pipe's immediate share and split evenly between live nodes, so traffic
//!    that appears between two exchanges can go straight out.
//!
//! Each interval, per pipe, the control loop: reads the pacer's per-job counters
//! ([`JobDemand`]), calls [`node_demand`] with the bookings of the jobs running on this node,
//! gossips [`LocalDemand::node`], and once it has the peers' latest demands calls [`allocate`]
//! with the pool-wide booking table and hands the [`PipeGrant`] to the pacer.
//!
//! Demand is reported from what the pacer measured: bytes still queued, bytes that arrived in
//! the last interval (sent + queued + dropped) and any debt from sending a whole packet on a
//! fraction of credit. Arrivals rather than bytes sent are used so that a job throttled to a
//! small grant still reports what it is really offered and can ramp up in one interval instead
//! of growing by a queue's worth per interval.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Upper bound of [`PipeSpec::immediate_share_pct`].
pub const SHARE_MAX: u64 = 100;

/// Default exchange interval (20 ms).
pub const DEFAULT_INTERVAL_NS: u64 = 20_000_000;
/// Shortest accepted exchange interval (10 ms).
pub const MIN_INTERVAL_NS: u64 = 10_000_000;
/// Longest accepted exchange interval (100 ms).
pub const MAX_INTERVAL_NS: u64 = 100_000_000;
/// Default immediate share in percent.
pub const DEFAULT_IMMEDIATE_SHARE_PCT: u8 = 50;
/// Default minimum booking request per booked job and interval: two full Ethernet frames, so
/// a booked job is never starved while the pipe is congested, but at most
/// 1/[`MIN_REQUEST_MAX_FRACTION`] of the pipe: a request an idle job does not use is lost.
pub const DEFAULT_MIN_REQUEST_BYTES: u64 = 2 * 1514;
/// The default minimum request is at most this fraction of the pipe's interval (0.5 %).
pub const MIN_REQUEST_MAX_FRACTION: u64 = 200;

/// Invalid allocator input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AllocError {
    /// The exchange interval is outside the accepted range.
    #[error("exchange interval {0} ns is outside {MIN_INTERVAL_NS}..={MAX_INTERVAL_NS} ns")]
    Interval(u64),
    /// The immediate share is above 100 percent.
    #[error("immediate share {0}% is above 100%")]
    ImmediateShare(u8),
    /// A percentage rate is above 100 percent.
    #[error("rate of {0}% of the pipe is above 100%")]
    Percent(u8),
    /// The pipe has zero capacity.
    #[error("pipe capacity is zero")]
    ZeroCapacity,
    /// The same job is booked twice on one pipe.
    #[error("job {0} is booked twice on the same pipe")]
    DuplicateJob(u16),
    /// A job's cap is below its booking.
    #[error("job {job}: cap of {cap_bps} bit/s is below its booking of {booked_bps} bit/s")]
    CapBelowBooking {
        /// The job.
        job: u16,
        /// The cap in bits per second.
        cap_bps: u64,
        /// The booking in bits per second.
        booked_bps: u64,
    },
    /// The bookings of the pipe add up to more than its capacity.
    #[error(
        "bookings add up to {booked_bps} bit/s, above the pipe capacity of {capacity_bps} bit/s"
    )]
    OverBooked {
        /// Sum of the bookings in bits per second.
        booked_bps: u64,
        /// Pipe capacity in bits per second.
        capacity_bps: u64,
    },
}

/// A pipe shared by all nodes of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeSpec {
    /// Capacity in bits per second.
    pub capacity_bps: u64,
    /// Part of the spare capacity handed out as immediate credit, in percent (0 = always
    /// queue, 100 = always take a chance).
    pub immediate_share_pct: u8,
    /// Exchange interval in nanoseconds.
    pub interval_ns: u64,
    /// Minimum booked request per booked job and interval in bytes (capped by the booking).
    pub min_request_bytes: u64,
}

impl PipeSpec {
    /// A validated pipe with the default minimum booking request (two frames, at most 0.5 %
    /// of the pipe).
    pub fn new(
        capacity_bps: u64,
        immediate_share_pct: u8,
        interval_ns: u64,
    ) -> Result<Self, AllocError> {
        let mut spec = Self {
            capacity_bps,
            immediate_share_pct,
            interval_ns,
            min_request_bytes: 0,
        };
        spec.validate()?;
        spec.min_request_bytes =
            DEFAULT_MIN_REQUEST_BYTES.min(spec.capacity_bytes() / MIN_REQUEST_MAX_FRACTION);
        Ok(spec)
    }

    /// Checks the invariants [`PipeSpec::new`] enforces (fields are public).
    pub fn validate(&self) -> Result<(), AllocError> {
        if self.capacity_bps == 0 {
            return Err(AllocError::ZeroCapacity);
        }
        if u64::from(self.immediate_share_pct) > SHARE_MAX {
            return Err(AllocError::ImmediateShare(self.immediate_share_pct));
        }
        if !(MIN_INTERVAL_NS..=MAX_INTERVAL_NS).contains(&self.interval_ns) {
            return Err(AllocError::Interval(self.interval_ns));
        }
        Ok(())
    }

    /// Capacity of one interval in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        bps_to_bytes(self.capacity_bps, self.interval_ns)
    }

    /// Immediate share clamped to 100 (an unvalidated value never over-allocates).
    fn share(&self) -> u64 {
        u64::from(self.immediate_share_pct).min(SHARE_MAX)
    }
}

/// Bytes per interval of `bps` bits per second over `interval_ns` (rounded down).
pub fn bps_to_bytes(bps: u64, interval_ns: u64) -> u64 {
    mul_div(bps, interval_ns, 8_000_000_000)
}

/// A rate, absolute or relative to the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rate {
    /// Bits per second.
    Bps(u64),
    /// Percent of the pipe capacity (0..=100).
    Percent(u8),
}

impl Rate {
    /// The rate in bits per second on `pipe` (percentages above 100 are clamped).
    pub fn bps(&self, pipe: &PipeSpec) -> u64 {
        match *self {
            Rate::Bps(b) => b,
            Rate::Percent(p) => mul_div(pipe.capacity_bps, u64::from(p).min(100), 100),
        }
    }

    /// The rate in bytes per interval on `pipe`.
    pub fn bytes(&self, pipe: &PipeSpec) -> u64 {
        bps_to_bytes(self.bps(pipe), pipe.interval_ns)
    }
}

/// A job's booking on a pipe. Bookings apply per node: a job running on several nodes needs
/// its pool-wide booking divided between them by the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobBooking {
    /// Job identifier.
    pub job: u16,
    /// Guaranteed rate.
    pub booked: Rate,
    /// Maximum rate, if any.
    pub cap: Option<Rate>,
}

/// Checks a pipe's bookings: no duplicates, caps at or above bookings, total within capacity.
pub fn validate_bookings(pipe: &PipeSpec, bookings: &[JobBooking]) -> Result<(), AllocError> {
    pipe.validate()?;
    let mut total: u64 = 0;
    for (i, b) in bookings.iter().enumerate() {
        if bookings[..i].iter().any(|o| o.job == b.job) {
            return Err(AllocError::DuplicateJob(b.job));
        }
        for r in [Some(b.booked), b.cap].into_iter().flatten() {
            if let Rate::Percent(p) = r {
                if p > 100 {
                    return Err(AllocError::Percent(p));
                }
            }
        }
        let booked_bps = b.booked.bps(pipe);
        if let Some(cap) = b.cap {
            let cap_bps = cap.bps(pipe);
            if cap_bps < booked_bps {
                return Err(AllocError::CapBelowBooking {
                    job: b.job,
                    cap_bps,
                    booked_bps,
                });
            }
        }
        total = total.saturating_add(booked_bps);
    }
    if total > pipe.capacity_bps {
        return Err(AllocError::OverBooked {
            booked_bps: total,
            capacity_bps: pipe.capacity_bps,
        });
    }
    Ok(())
}

/// What a node gossips about one pipe each interval, in bytes per interval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePipeDemand {
    /// Demand covered by bookings, as seen by this node alone.
    pub booked: u64,
    /// Demand beyond bookings.
    pub unbooked: u64,
    /// Per-job detail for every job with a booking or a cap, so that bookings and caps, which
    /// hold for a job across the whole pool, can be enforced when a job runs on several nodes.
    pub jobs: Vec<JobWant>,
}

/// One booked or capped job's demand on one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobWant {
    /// Job identifier.
    pub job: u16,
    /// Part of `want` covered by the job's booking on this node's own view.
    pub booked: u64,
    /// Whole demand of the job on this node (booked + unbooked).
    pub want: u64,
}

/// What the pacer measured for one job on one pipe over the last interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobDemand {
    /// Job identifier.
    pub job: u16,
    /// Bytes waiting in the pacer's queues now.
    pub queued: u64,
    /// Bytes offered to the pacer during the last interval (sent, queued or dropped).
    pub arrived: u64,
    /// Bytes sent beyond credit, still owed.
    pub debt: u64,
}

/// One job's part of a node's demand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobSplit {
    /// Job identifier.
    pub job: u16,
    /// Demand covered by the job's booking.
    pub booked: u64,
    /// Demand beyond the booking.
    pub unbooked: u64,
    /// The job's cap in bytes per interval, if any.
    pub cap: Option<u64>,
}

/// A node's demand on one pipe: what it gossips plus the per-job breakdown it keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalDemand {
    /// What to gossip: the sums over `jobs`, and the detail of the booked or capped ones.
    pub node: NodePipeDemand,
    /// Per-job breakdown, one entry per booked job and per job with demand.
    pub jobs: Vec<JobSplit>,
}

/// Splits this node's measured job demands into booked and unbooked bytes.
///
/// `bookings` holds the entries of the pool-wide table for the jobs that run on this node (a
/// job with a cap but no booking is listed with a booking of zero). Leave out jobs that do not
/// run here: each listed job makes a minimum booking request even when idle, and that request
/// comes out of the job's pool-wide booking.
///
/// Each job wants `queued + arrived + debt`, clamped to its cap and to the pipe capacity (no
/// job can use more than the pipe in one interval, and the clamp keeps two saturated jobs'
/// unbooked demands comparable however deep their queues are). The booked part is the want up
/// to the booking, but never below the minimum booking request, so an idle booked job keeps
/// a trickle of guaranteed credit. Jobs with demand but no booking are entirely unbooked.
pub fn node_demand(pipe: &PipeSpec, bookings: &[JobBooking], local: &[JobDemand]) -> LocalDemand {
    let capacity = pipe.capacity_bytes();
    let mut out = LocalDemand {
        node: NodePipeDemand::default(),
        jobs: Vec::with_capacity(bookings.len() + local.len()),
    };
    let mut push = |job: u16, want: u64, booking: Option<&JobBooking>| {
        let cap = booking.and_then(|b| b.cap).map(|c| c.bytes(pipe));
        let want = want.min(cap.unwrap_or(u64::MAX)).min(capacity);
        let booked = match booking {
            Some(b) => {
                let book = b.booked.bytes(pipe).min(cap.unwrap_or(u64::MAX));
                book.min(want.max(pipe.min_request_bytes))
            }
            None => 0,
        };
        let unbooked = want.saturating_sub(booked);
        out.node.booked = out.node.booked.saturating_add(booked);
        out.node.unbooked = out.node.unbooked.saturating_add(unbooked);
        if booking.is_some() {
            out.node.jobs.push(JobWant {
                job,
                booked,
                want: booked + unbooked,
            });
        }
        out.jobs.push(JobSplit {
            job,
            booked,
            unbooked,
            cap,
        });
    };
    for b in bookings {
        // Several measurements for one job (one per worker, say) are added up.
        let want = local
            .iter()
            .filter(|d| d.job == b.job)
            .fold(0u64, |acc, d| {
                acc.saturating_add(d.queued)
                    .saturating_add(d.arrived)
                    .saturating_add(d.debt)
            });
        push(b.job, want, Some(b));
    }
    for (i, d) in local.iter().enumerate() {
        if bookings.iter().any(|b| b.job == d.job) || local[..i].iter().any(|o| o.job == d.job) {
            continue;
        }
        let want = local[i..]
            .iter()
            .filter(|o| o.job == d.job)
            .fold(0u64, |acc, o| {
                acc.saturating_add(o.queued)
                    .saturating_add(o.arrived)
                    .saturating_add(o.debt)
            });
        if want > 0 {
            push(d.job, want, None);
        }
    }
    out
}

/// Which case of the allocation applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All demand fits; the rest of the pipe is shared as immediate credit.
    AllFits,
    /// Bookings fit but unbooked demand was scaled down to the remaining capacity.
    UnbookedScaled,
    /// Booked demand alone exceeds the capacity (bookings are oversubscribed): booked demand
    /// is scaled down proportionally and unbooked demand gets nothing.
    OverBooked,
}

/// One job's grant for the coming interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobGrant {
    /// Job identifier.
    pub job: u16,
    /// Granted booked bytes.
    pub booked: u64,
    /// Granted unbooked bytes.
    pub unbooked: u64,
    /// How much of the node's immediate credit the job may still use before reaching its cap
    /// (`None`: no cap).
    pub immediate_allowance: Option<u64>,
}

impl JobGrant {
    /// Credit of the job's own bucket: booked plus unbooked.
    pub fn credit(&self) -> u64 {
        self.booked.saturating_add(self.unbooked)
    }
}

/// This node's grant on one pipe for the coming interval, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeGrant {
    /// Which allocation case applied.
    pub outcome: Outcome,
    /// Credit granted to this node (sum of its jobs' credits).
    pub node_credit: u64,
    /// Immediate credit shared by all jobs of this node (already devalued).
    pub immediate: u64,
    /// Per-job grants, one per entry of [`LocalDemand::jobs`].
    pub jobs: Vec<JobGrant>,
    /// Pool-wide booked demand this interval.
    pub total_booked: u64,
    /// Pool-wide unbooked demand this interval.
    pub total_unbooked: u64,
}

/// A booked or capped job seen across the pool.
#[derive(Debug, Clone, Copy)]
struct PoolJob {
    job: u16,
    /// Booking in bytes per interval (`None`: not in this node's table; trusted as reported).
    booking: Option<u64>,
    /// Cap in bytes per interval.
    cap: Option<u64>,
    /// Sum of the nodes' booked demands.
    booked: u64,
    /// Sum of the nodes' booked demands once limited to the booking.
    booked_scaled: u64,
    /// Sum of the nodes' whole demands.
    want: u64,
    /// Nodes reporting the job.
    nodes: u64,
}

impl PoolJob {
    /// A node's demand for this job once the pool-wide booking and cap are applied: the
    /// booked parts of all nodes share the booking in proportion, what falls outside it
    /// becomes unbooked, and the unbooked parts share what the cap leaves.
    fn limit(&self, w: &JobWant) -> (u64, u64) {
        let booked = match self.booking {
            Some(b) if self.booked > b => mul_div(w.booked, b, self.booked),
            _ => w.booked,
        };
        let unbooked = w.want.saturating_sub(booked);
        let unbooked = match self.cap {
            Some(c) if self.want > c => {
                let room = c.saturating_sub(self.booked_scaled);
                mul_div(unbooked, room, self.want.saturating_sub(self.booked_scaled))
            }
            _ => unbooked,
        };
        (booked, unbooked)
    }
}

/// Gathers the booked and capped jobs of all nodes.
fn pool_jobs<'a>(
    pipe: &PipeSpec,
    bookings: &[JobBooking],
    nodes: impl Iterator<Item = &'a NodePipeDemand> + Clone,
) -> Vec<PoolJob> {
    let mut jobs: Vec<PoolJob> = Vec::new();
    for w in nodes.clone().flat_map(|n| n.jobs.iter()) {
        let i = match jobs.iter().position(|p| p.job == w.job) {
            Some(i) => i,
            None => {
                let b = bookings.iter().find(|b| b.job == w.job);
                jobs.push(PoolJob {
                    job: w.job,
                    booking: b.map(|b| b.booked.bytes(pipe)),
                    cap: b.and_then(|b| b.cap).map(|c| c.bytes(pipe)),
                    booked: 0,
                    booked_scaled: 0,
                    want: 0,
                    nodes: 0,
                });
                jobs.len() - 1
            }
        };
        let p = &mut jobs[i];
        p.booked = p.booked.saturating_add(w.booked);
        p.want = p.want.saturating_add(w.want.max(w.booked));
        p.nodes += 1;
    }
    for w in nodes.flat_map(|n| n.jobs.iter()) {
        if let Some(p) = jobs.iter_mut().find(|p| p.job == w.job) {
            let b = match p.booking {
                Some(b) if p.booked > b => mul_div(w.booked, b, p.booked),
                _ => w.booked,
            };
            p.booked_scaled = p.booked_scaled.saturating_add(b);
        }
    }
    jobs
}

/// A node's booked and unbooked demand once pool-wide bookings and caps are applied.
fn node_limited(pool: &[PoolJob], n: &NodePipeDemand) -> (u64, u64) {
    let (mut booked, mut unbooked) = (0u64, 0u64);
    let (mut listed_b, mut listed_u) = (0u64, 0u64);
    for w in &n.jobs {
        listed_b = listed_b.saturating_add(w.booked);
        listed_u = listed_u.saturating_add(w.want.saturating_sub(w.booked));
        if let Some(p) = pool.iter().find(|p| p.job == w.job) {
            let (b, u) = p.limit(w);
            booked = booked.saturating_add(b);
            unbooked = unbooked.saturating_add(u);
        }
    }
    // Jobs without booking or cap are only in the totals.
    (
        booked.saturating_add(n.booked.saturating_sub(listed_b)),
        unbooked.saturating_add(n.unbooked.saturating_sub(listed_u)),
    )
}

/// Computes this node's grant from the demands gossiped by its live peers (`peers`, excluding
/// this node) and its own demand `mine` (whose `node` part is what it gossiped). `bookings`
/// is the pipe's pool-wide booking table, the same on every node.
///
/// Bookings and caps hold per job across the pool: when a job runs on several nodes, their
/// booked demands share the booking in proportion and the rest of their demand is unbooked.
/// Every node runs this on the same picture, so the grants of all nodes add up to at most the
/// pipe capacity: booked + scaled unbooked <= capacity, and the immediate credits add up to at
/// most `share%` of what is left (each one rounded down).
pub fn allocate(
    pipe: &PipeSpec,
    bookings: &[JobBooking],
    peers: &[NodePipeDemand],
    mine: &LocalDemand,
) -> PipeGrant {
    let capacity = pipe.capacity_bytes();
    let all = || peers.iter().chain(std::iter::once(&mine.node));
    let pool = pool_jobs(pipe, bookings, all());
    let (booked, unbooked) = all().fold((0u64, 0u64), |(b, u), n| {
        let (nb, nu) = node_limited(&pool, n);
        (b.saturating_add(nb), u.saturating_add(nu))
    });
    let nodes = peers.len() as u64 + 1;
    let queued = booked.saturating_add(unbooked);

    let (outcome, immediate) = if booked > capacity {
        (Outcome::OverBooked, 0)
    } else if queued <= capacity {
        let nonqueued = capacity - queued;
        (
            Outcome::AllFits,
            mul_div(nonqueued, pipe.share(), SHARE_MAX) / nodes,
        )
    } else {
        (Outcome::UnbookedScaled, 0)
    };
    let grant = |b: u64, u: u64| match outcome {
        Outcome::AllFits => (b, u),
        Outcome::UnbookedScaled => (b, mul_div(u, capacity - booked, unbooked)),
        Outcome::OverBooked => (mul_div(b, capacity, booked), 0),
    };
    // What each capped job is granted across the pool, to share out the headroom to its cap.
    let mut pool_credit = vec![0u64; pool.len()];
    for w in all().flat_map(|n| n.jobs.iter()) {
        if let Some(i) = pool.iter().position(|p| p.job == w.job) {
            let (b, u) = pool[i].limit(w);
            let (b, u) = grant(b, u);
            pool_credit[i] = pool_credit[i].saturating_add(b + u);
        }
    }

    let mut node_credit = 0u64;
    let jobs = mine
        .jobs
        .iter()
        .map(|j| {
            let listed = pool.iter().position(|p| p.job == j.job);
            let (b, u) = match listed {
                Some(i) => pool[i].limit(&JobWant {
                    job: j.job,
                    booked: j.booked,
                    want: j.booked.saturating_add(j.unbooked),
                }),
                None => (j.booked, j.unbooked),
            };
            let (b, u) = grant(b, u);
            let immediate_allowance = match listed {
                Some(i) => pool[i]
                    .cap
                    .map(|c| c.saturating_sub(pool_credit[i]) / pool[i].nodes.max(1)),
                None => j.cap.map(|c| c.saturating_sub(b + u)),
            };
            let g = JobGrant {
                job: j.job,
                booked: b,
                unbooked: u,
                immediate_allowance,
            };
            node_credit = node_credit.saturating_add(g.credit());
            g
        })
        .collect();
    PipeGrant {
        outcome,
        node_credit,
        immediate,
        jobs,
        total_booked: booked,
        total_unbooked: unbooked,
    }
}

/// Pays an overdraft with the immediate credit left unused last interval ("swap what we did
/// use last time with what we can use this time; use the result to pay off the overdraft"):
/// capacity that was offered but not taken absorbs bytes sent beyond credit. Returns the
/// overdraft left, never below zero.
pub fn pay_overdraft(overdraft: u64, unused_last: u64) -> u64 {
    overdraft.saturating_sub(unused_last)
}

/// Counters of the allocator, kept by the control loop (the functions above are pure).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Allocations computed.
    pub allocations: u64,
    /// Allocations where all demand fitted.
    pub all_fits: u64,
    /// Allocations where unbooked demand was scaled down.
    pub unbooked_scaled: u64,
    /// Allocations where booked demand exceeded the capacity (misconfigured bookings).
    pub overbooked: u64,
}

impl AllocatorStats {
    /// Counts one allocation result.
    pub fn record(&mut self, grant: &PipeGrant) {
        self.allocations += 1;
        match grant.outcome {
            Outcome::AllFits => self.all_fits += 1,
            Outcome::UnbookedScaled => self.unbooked_scaled += 1,
            Outcome::OverBooked => self.overbooked += 1,
        }
    }
}

/// `x * y / z` rounded down without intermediate overflow; 0 when `z` is 0, saturating.
pub fn mul_div(x: u64, y: u64, z: u64) -> u64 {
    if z == 0 {
        return 0;
    }
    u64::try_from(u128::from(x) * u128::from(y) / u128::from(z)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
pub mod wire;
