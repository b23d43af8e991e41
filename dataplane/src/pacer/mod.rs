//! Pacer: per-(pipe, job) credit buckets the workers spend from without locks, with bounded
//! per-job queues for traffic beyond credit.
//!
//! The control thread ([`PacerControl`]) turns each interval's grants into rates: a job's own
//! credit (booked plus unbooked share) feeds the job's bucket, the node's immediate credit
//! feeds one bucket per pipe that every job of the pipe may draw on once its own credit is
//! spent (capped jobs only up to their allowance). Credit trickles in continuously at the
//! granted rate, so packets leave spread over the interval, in bursts of at most
//! [`PacerConfig::burst_ns`] worth of credit plus one packet.
//!
//! Each worker owns a [`Pacer<T>`] (`T` is whatever the worker queues, a frame descriptor for
//! instance). A packet whose job has nothing queued and has credit goes straight through: a
//! lightly loaded pipe adds no latency. Otherwise it waits in the job's queue, in order, until
//! [`Pacer::poll_release`] finds credit for it. A queue holds at most a packet and byte limit
//! and at most [`PacerPipeConfig::max_queue_delay_ns`] worth of the job's current rate; beyond
//! that the packet is dropped and handed back, so the frame can be recycled.
//!
//! Workers should call `poll_release` on every loop iteration (it returns at once when nothing
//! is queued) and may sleep until [`Pacer::next_release_time`], capped at the exchange
//! interval: new grants arrive without any wake-up.
//!
//! Per-packet cost: a few atomic loads and one compare-and-swap on the job's bucket (two when
//! immediate credit is used), plus stores to counters only this worker writes. No allocation
//! (queues are allocated up front), no lock, no system call. Time is passed in: the control
//! thread's [`PacerControl`] takes a `Timestamp`, the workers' per-packet calls its raw
//! nanoseconds (`Timestamp::as_nanos`) of the same monotonic clock.

mod bucket;
mod control;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::*};
use std::sync::Arc;

use thiserror::Error;

use bucket::Bucket;
pub use control::{JobCredit, JobSample, PacerControl, PacerControlStats};

/// Invalid pacer configuration or use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacerError {
    /// No pipe configured.
    #[error("no pipe configured")]
    NoPipes,
    /// A pipe has no job slot.
    #[error("pipe {0} has no job slot")]
    NoJobs(usize),
    /// A pipe's exchange interval is zero.
    #[error("pipe {0} has a zero exchange interval")]
    ZeroInterval(usize),
    /// A pipe's queue limit is zero.
    #[error("pipe {0} has a zero queue limit")]
    ZeroQueueLimit(usize),
    /// No worker configured.
    #[error("no worker configured")]
    NoWorkers,
    /// The worker index is out of range.
    #[error("worker {worker} out of range (workers: {workers})")]
    WorkerOutOfRange {
        /// Requested worker.
        worker: usize,
        /// Configured workers.
        workers: usize,
    },
    /// The worker's pacer was already created.
    #[error("worker {0} already has a pacer")]
    WorkerTaken(usize),
    /// Unknown pipe.
    #[error("unknown pipe {0}")]
    UnknownPipe(usize),
    /// Unknown job slot on a pipe.
    #[error("unknown job {job} on pipe {pipe}")]
    UnknownJob {
        /// The pipe.
        pipe: usize,
        /// The job slot.
        job: u16,
    },
}

/// One pipe as the pacer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacerPipeConfig {
    /// Number of job slots; jobs are addressed by slot `0..jobs`.
    pub jobs: u16,
    /// Exchange interval in nanoseconds: grants are bytes per interval.
    pub interval_ns: u64,
    /// Queue limit per job and worker, in packets.
    pub queue_limit_pkts: usize,
    /// Queue limit per job and worker, in bytes.
    pub queue_limit_bytes: u64,
    /// Longest expected wait in a queue, at the job's current rates (own plus immediate):
    /// beyond it, arriving packets are dropped rather than queued, so queues stay short and
    /// a job that stops stops asking for bandwidth within an interval (0: no limit).
    pub max_queue_delay_ns: u64,
    /// Bytes a job may always queue, whatever its rate (lets a job with no credit yet queue
    /// a few packets until its first grant).
    pub min_queue_bytes: u64,
    /// Immediate credit rate before the first grant, in bits per second (0: queue everything
    /// until the first exchange).
    pub initial_immediate_bps: u64,
}

impl Default for PacerPipeConfig {
    fn default() -> Self {
        Self {
            jobs: 1,
            interval_ns: 20_000_000,
            queue_limit_pkts: 4096,
            queue_limit_bytes: 4096 * 1514,
            max_queue_delay_ns: 10_000_000,
            min_queue_bytes: 16 * 1514,
            initial_immediate_bps: 0,
        }
    }
}

/// Pacer configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacerConfig {
    /// Pipes, addressed by index.
    pub pipes: Vec<PacerPipeConfig>,
    /// Number of workers (one [`Pacer`] each).
    pub workers: usize,
    /// Credit kept unspent at most, as time at the granted rate: the burst size.
    pub burst_ns: u64,
    /// Smallest burst in bytes, whatever the rate (at least one full packet).
    pub min_burst_bytes: u64,
}

impl Default for PacerConfig {
    fn default() -> Self {
        Self {
            pipes: vec![PacerPipeConfig::default()],
            workers: 1,
            burst_ns: 1_000_000,
            min_burst_bytes: 2 * 1514,
        }
    }
}

impl PacerConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), PacerError> {
        if self.pipes.is_empty() {
            return Err(PacerError::NoPipes);
        }
        if self.workers == 0 {
            return Err(PacerError::NoWorkers);
        }
        for (i, p) in self.pipes.iter().enumerate() {
            if p.jobs == 0 {
                return Err(PacerError::NoJobs(i));
            }
            if p.interval_ns == 0 {
                return Err(PacerError::ZeroInterval(i));
            }
            if p.queue_limit_pkts == 0 || p.queue_limit_bytes == 0 {
                return Err(PacerError::ZeroQueueLimit(i));
            }
        }
        Ok(())
    }

    /// Burst in bytes for a grant of `bytes` per `interval_ns`.
    fn burst(&self, bytes: u64, interval_ns: u64) -> u64 {
        self.carry(bytes, interval_ns).max(self.min_burst_bytes)
    }

    /// Unspent credit carried over a new grant of `bytes` per `interval_ns`: the burst at the
    /// new rate, without the minimum (a job granted nothing keeps nothing).
    fn carry(&self, bytes: u64, interval_ns: u64) -> u64 {
        let b = u128::from(bytes) * u128::from(self.burst_ns) / u128::from(interval_ns.max(1));
        u64::try_from(b).unwrap_or(u64::MAX)
    }
}

/// Padding to a cache-line pair, so state written by different threads never shares a line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// Shared state of one job slot.
#[derive(Debug, Default)]
struct JobShared {
    /// The job's own credit (booked + unbooked).
    bucket: Bucket,
    /// Immediate credit the job may still take before reaching its cap; `i64::MAX`: no cap.
    imm_allow: AtomicI64,
}

/// Counters of one (worker, job): written only by that worker, read by the control thread.
#[derive(Debug, Default)]
struct WorkerJobCounters {
    arrived_bytes: AtomicU64,
    sent_bytes: AtomicU64,
    sent_pkts: AtomicU64,
    sent_imm_bytes: AtomicU64,
    dropped_bytes: AtomicU64,
    dropped_pkts: AtomicU64,
    queued_bytes: AtomicU64,
    queued_pkts: AtomicU64,
}

/// Adds to a counter that has a single writer: a plain load and store, no locked instruction.
#[inline]
fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

#[inline]
fn drop_by(c: &AtomicU64, by: u64) {
    c.store(c.load(Relaxed).wrapping_sub(by), Relaxed);
}

#[derive(Debug)]
struct PipeShared {
    /// The node's immediate credit on this pipe.
    immediate: Bucket,
    /// Index of the pipe's first job in the flat job arrays.
    first_job: usize,
    jobs: usize,
}

/// State shared by the control thread and all workers.
#[derive(Debug)]
struct Shared {
    config: PacerConfig,
    pipes: Box<[PipeShared]>,
    /// Flat over (pipe, job).
    jobs: Box<[Padded<JobShared>]>,
    /// Flat over (worker, pipe, job).
    counters: Box<[Padded<WorkerJobCounters>]>,
    taken: Box<[AtomicBool]>,
}

impl Shared {
    fn new(config: PacerConfig) -> Result<Self, PacerError> {
        config.validate()?;
        let mut first_job = 0;
        let pipes: Box<[PipeShared]> = config
            .pipes
            .iter()
            .map(|p| {
                let ps = PipeShared {
                    immediate: Bucket::default(),
                    first_job,
                    jobs: usize::from(p.jobs),
                };
                let bytes = alloc_bytes(p.initial_immediate_bps, p.interval_ns);
                ps.immediate.set_rate(
                    0,
                    bucket::rate_fp(bytes, p.interval_ns),
                    config.burst(bytes, p.interval_ns),
                    0,
                );
                first_job += usize::from(p.jobs);
                ps
            })
            .collect();
        let jobs: Box<[Padded<JobShared>]> = (0..first_job)
            .map(|_| {
                let j = JobShared::default();
                j.imm_allow.store(i64::MAX, Relaxed);
                Padded(j)
            })
            .collect();
        let counters = (0..first_job * config.workers)
            .map(|_| Padded::default())
            .collect();
        let taken = (0..config.workers)
            .map(|_| AtomicBool::new(false))
            .collect();
        Ok(Self {
            config,
            pipes,
            jobs,
            counters,
            taken,
        })
    }

    #[inline]
    fn flat(&self, pipe: usize, job: u16) -> Option<usize> {
        let p = self.pipes.get(pipe)?;
        let job = usize::from(job);
        (job < p.jobs).then_some(p.first_job + job)
    }

    #[inline]
    fn counters(&self, worker: usize, flat: usize) -> &WorkerJobCounters {
        &self.counters[worker * self.jobs.len() + flat].0
    }

    /// Spends `len` bytes for the job at `flat` on `pipe`: own credit first, then the pipe's
    /// immediate credit within the job's allowance. Returns whether immediate credit was used.
    #[inline]
    fn try_spend(&self, now: u64, pipe: usize, flat: usize, len: u64) -> Option<bool> {
        let job = &self.jobs[flat].0;
        if job.bucket.try_spend(now, len) {
            return Some(false);
        }
        let allow = job.imm_allow.load(Relaxed);
        if allow <= 0 || !self.pipes[pipe].immediate.try_spend(now, len) {
            return None;
        }
        if allow != i64::MAX {
            job.imm_allow.fetch_sub(len as i64, Relaxed);
        }
        Some(true)
    }

    /// Most bytes the job at `flat` may have queued: what it can send within the pipe's
    /// queue delay at its current rates, but at least the pipe's minimum.
    #[inline]
    fn delay_limit(&self, pipe: usize, flat: usize) -> u64 {
        let cfg = &self.config.pipes[pipe];
        if cfg.max_queue_delay_ns == 0 {
            return u64::MAX;
        }
        let d = cfg.max_queue_delay_ns;
        let own = self.jobs[flat].0.bucket.bytes_over(d);
        let imm = if self.jobs[flat].0.imm_allow.load(Relaxed) > 0 {
            self.pipes[pipe].immediate.bytes_over(d)
        } else {
            0
        };
        own.saturating_add(imm).max(cfg.min_queue_bytes)
    }

    /// Earliest time the job at `flat` may send again.
    fn ready_at(&self, now: u64, pipe: usize, flat: usize) -> Option<u64> {
        let job = &self.jobs[flat].0;
        let own = job.bucket.ready_at(now);
        let imm = if job.imm_allow.load(Relaxed) > 0 {
            self.pipes[pipe].immediate.ready_at(now)
        } else {
            None
        };
        match (own, imm) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Bytes per interval of a rate in bits per second.
fn alloc_bytes(bps: u64, interval_ns: u64) -> u64 {
    u64::try_from(u128::from(bps) * u128::from(interval_ns) / 8_000_000_000).unwrap_or(u64::MAX)
}

/// What [`Pacer::admit`] did with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<T> {
    /// Credit was available: send it now.
    Send(T),
    /// Queued; [`Pacer::poll_release`] hands it back when credit arrives.
    Queued,
    /// Dropped (queue full, queue delay limit, or unknown pipe/job); the item is handed back
    /// for recycling.
    Dropped(T),
}

/// Counters of one worker's pacer (worker-local, read with [`Pacer::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// Packets offered to [`Pacer::admit`].
    pub admitted: u64,
    /// Packets sent at once by `admit` (credit available, nothing queued ahead).
    pub sent_direct: u64,
    /// Packets released from the queues by `poll_release`.
    pub released: u64,
    /// Packets sent on immediate credit (direct or released).
    pub sent_immediate: u64,
    /// Packets queued by `admit`.
    pub queued: u64,
    /// Packets dropped because the job's queue was full (packet or byte limit).
    pub dropped_queue_full: u64,
    /// Packets dropped because they would have waited longer than the queue delay limit.
    pub dropped_queue_delay: u64,
    /// Packets dropped because the pipe or job index was unknown.
    pub dropped_bad_index: u64,
}

struct JobQueue<T> {
    items: VecDeque<(u32, T)>,
    bytes: u64,
    limit_pkts: usize,
    limit_bytes: u64,
    pipe: usize,
}

/// One worker's pacer: its queues plus a handle on the shared credit.
pub struct Pacer<T> {
    shared: Arc<Shared>,
    worker: usize,
    /// Flat over (pipe, job).
    queues: Box<[JobQueue<T>]>,
    queued_pkts: usize,
    /// Scratch list of queues to visit in `poll_release` (allocated once).
    active: Vec<usize>,
    /// Where the next `poll_release` starts, for fairness between jobs.
    next: usize,
    stats: PacerStats,
}

impl<T> std::fmt::Debug for Pacer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("worker", &self.worker)
            .field("queued_pkts", &self.queued_pkts)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<T> Pacer<T> {
    fn new(shared: Arc<Shared>, worker: usize) -> Result<Self, PacerError> {
        let workers = shared.config.workers;
        let taken = shared
            .taken
            .get(worker)
            .ok_or(PacerError::WorkerOutOfRange { worker, workers })?;
        if taken.swap(true, AcqRel) {
            return Err(PacerError::WorkerTaken(worker));
        }
        let queues: Box<[JobQueue<T>]> = shared
            .config
            .pipes
            .iter()
            .enumerate()
            .flat_map(|(pipe, p)| {
                (0..p.jobs).map(move |_| JobQueue {
                    items: VecDeque::with_capacity(p.queue_limit_pkts),
                    bytes: 0,
                    limit_pkts: p.queue_limit_pkts,
                    limit_bytes: p.queue_limit_bytes,
                    pipe,
                })
            })
            .collect();
        let active = Vec::with_capacity(queues.len());
        Ok(Self {
            shared,
            worker,
            queues,
            queued_pkts: 0,
            active,
            next: 0,
            stats: PacerStats::default(),
        })
    }

    /// Offers a packet of `len` bytes of `job` on `pipe` at `now_ns`.
    #[inline]
    pub fn admit(&mut self, now_ns: u64, pipe: usize, job: u16, len: u32, item: T) -> Admit<T> {
        self.stats.admitted += 1;
        let Some(flat) = self.shared.flat(pipe, job) else {
            self.stats.dropped_bad_index += 1;
            return Admit::Dropped(item);
        };
        let shared = &*self.shared;
        let c = shared.counters(self.worker, flat);
        let bytes = u64::from(len);
        bump(&c.arrived_bytes, bytes);
        let q = &mut self.queues[flat];
        if q.items.is_empty() {
            if let Some(imm) = shared.try_spend(now_ns, pipe, flat, bytes) {
                bump(&c.sent_bytes, bytes);
                bump(&c.sent_pkts, 1);
                self.stats.sent_direct += 1;
                if imm {
                    bump(&c.sent_imm_bytes, bytes);
                    self.stats.sent_immediate += 1;
                }
                return Admit::Send(item);
            }
        }
        // Both limits are checked before pushing, so the preallocated deque never grows.
        let full = q.items.len() >= q.limit_pkts || q.bytes + bytes > q.limit_bytes;
        if full || q.bytes + bytes > shared.delay_limit(pipe, flat) {
            bump(&c.dropped_bytes, bytes);
            bump(&c.dropped_pkts, 1);
            if full {
                self.stats.dropped_queue_full += 1;
            } else {
                self.stats.dropped_queue_delay += 1;
            }
            return Admit::Dropped(item);
        }
        q.items.push_back((len, item));
        q.bytes += bytes;
        bump(&c.queued_bytes, bytes);
        bump(&c.queued_pkts, 1);
        self.queued_pkts += 1;
        self.stats.queued += 1;
        Admit::Queued
    }

    /// Releases up to `max` queued packets that have credit at `now_ns`, one job at a time in
    /// turn, in order within each job. Returns the number released.
    pub fn poll_release(&mut self, now_ns: u64, max: usize, mut out: impl FnMut(T)) -> usize {
        if self.queued_pkts == 0 || max == 0 {
            return 0;
        }
        let n = self.queues.len();
        self.active.clear();
        for k in 0..n {
            let i = (self.next + k) % n;
            if !self.queues[i].items.is_empty() {
                self.active.push(i);
            }
        }
        self.next = (self.next + 1) % n;
        let shared = &*self.shared;
        let mut released = 0;
        while !self.active.is_empty() {
            // One packet per job per round; a job without credit or packets leaves the round.
            let mut k = 0;
            while k < self.active.len() {
                let flat = self.active[k];
                let q = &mut self.queues[flat];
                let Some(&(len, _)) = q.items.front() else {
                    self.active.swap_remove(k);
                    continue;
                };
                let bytes = u64::from(len);
                let Some(imm) = shared.try_spend(now_ns, q.pipe, flat, bytes) else {
                    self.active.swap_remove(k);
                    continue;
                };
                let Some((_, item)) = q.items.pop_front() else {
                    break;
                };
                q.bytes -= bytes;
                let c = shared.counters(self.worker, flat);
                bump(&c.sent_bytes, bytes);
                bump(&c.sent_pkts, 1);
                drop_by(&c.queued_bytes, bytes);
                drop_by(&c.queued_pkts, 1);
                if imm {
                    bump(&c.sent_imm_bytes, bytes);
                    self.stats.sent_immediate += 1;
                }
                self.queued_pkts -= 1;
                self.stats.released += 1;
                out(item);
                released += 1;
                if released == max {
                    return released;
                }
                k += 1;
            }
        }
        released
    }

    /// Earliest time at which a queued packet may be released: `None` if nothing is queued or
    /// no queued job has any credit coming (it waits for the next grant).
    pub fn next_release_time(&self, now_ns: u64) -> Option<u64> {
        if self.queued_pkts == 0 {
            return None;
        }
        self.queues
            .iter()
            .enumerate()
            .filter(|(_, q)| !q.items.is_empty())
            .filter_map(|(flat, q)| self.shared.ready_at(now_ns, q.pipe, flat))
            .min()
    }

    /// Packets queued in this worker's pacer.
    pub fn queued(&self) -> usize {
        self.queued_pkts
    }

    /// This worker's counters.
    pub fn stats(&self) -> &PacerStats {
        &self.stats
    }

    /// Hands back every queued packet without sending it (shutdown), counting them as drops.
    pub fn drain(&mut self, mut out: impl FnMut(T)) {
        for (flat, q) in self.queues.iter_mut().enumerate() {
            let c = self.shared.counters(self.worker, flat);
            while let Some((len, item)) = q.items.pop_front() {
                let bytes = u64::from(len);
                drop_by(&c.queued_bytes, bytes);
                drop_by(&c.queued_pkts, 1);
                bump(&c.dropped_bytes, bytes);
                bump(&c.dropped_pkts, 1);
                out(item);
            }
            q.bytes = 0;
        }
        self.queued_pkts = 0;
    }
}

impl<T> Drop for Pacer<T> {
    fn drop(&mut self) {
        // Keep the shared queue gauges right if a worker goes away with packets queued.
        self.drain(drop);
        self.shared.taken[self.worker].store(false, Release);
    }
}

/// Benchmark fixture for the hot path: a one-pipe, one-job pacer whose job is granted
/// `rate_bps` from time 0 (20 ms interval), with worker 0's pacer. To time the send path of
/// `Pacer::admit`, advance the simulated clock by at least `len * 8e9 / rate_bps` ns per
/// packet; with a fixed clock credit runs out and the queue and drop paths are measured
/// instead (call `Pacer::poll_release` / `Pacer::drain` to recycle).
pub fn bench_fixture(rate_bps: u64) -> Result<(PacerControl, Pacer<u32>), PacerError> {
    let config = PacerConfig::default();
    let mut control = PacerControl::new(config)?;
    let credit = alloc_bytes(rate_bps, 20_000_000);
    control.set_grants(
        0,
        headroom_clock::Timestamp::ZERO,
        0,
        &[JobCredit {
            job: 0,
            credit_bytes: credit,
            immediate_allowance: None,
        }],
    )?;
    let pacer = control.worker(0)?;
    Ok((control, pacer))
}
