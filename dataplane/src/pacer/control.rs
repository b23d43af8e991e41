//! The control thread's side of the pacer: reads the per-job counters each interval and
//! writes the new grants.

use std::sync::atomic::Ordering::*;
use std::sync::Arc;

use headroom_clock::Timestamp;

use super::{bucket::rate_fp, Pacer, PacerConfig, PacerError, Shared};

/// One job's credit for the coming interval, in bytes per interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCredit {
    /// Job slot on the pipe.
    pub job: u16,
    /// The job's own credit (booked + unbooked grant).
    pub credit_bytes: u64,
    /// Immediate credit the job may use before reaching its cap (`None`: no cap).
    pub immediate_allowance: Option<u64>,
}

/// What the pacer measured for one job since the previous sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobSample {
    /// Job slot on the pipe.
    pub job: u16,
    /// Bytes queued now (all workers).
    pub queued_bytes: u64,
    /// Packets queued now (all workers).
    pub queued_pkts: u64,
    /// Bytes offered since the previous sample (sent, queued or dropped).
    pub arrived_bytes: u64,
    /// Bytes sent since the previous sample.
    pub sent_bytes: u64,
    /// Packets sent since the previous sample.
    pub sent_pkts: u64,
    /// Bytes of `sent_bytes` sent on immediate credit.
    pub sent_immediate_bytes: u64,
    /// Bytes dropped since the previous sample.
    pub dropped_bytes: u64,
    /// Packets dropped since the previous sample.
    pub dropped_pkts: u64,
    /// Bytes sent beyond the job's credit, still owed.
    pub debt_bytes: u64,
}

/// Counters of the pacer's control side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacerControlStats {
    /// Grant sets applied.
    pub grants_applied: u64,
    /// Grant sets rejected (unknown pipe or job).
    pub grants_rejected: u64,
    /// Debt bytes paid off with immediate credit left unused.
    pub debt_forgiven_bytes: u64,
}

/// Cumulative totals of one job, summed over workers.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    arrived: u64,
    sent: u64,
    sent_pkts: u64,
    sent_imm: u64,
    dropped: u64,
    dropped_pkts: u64,
}

/// Per pipe: where the immediate credit stood at the last grant.
#[derive(Debug, Clone, Copy, Default)]
struct ImmediateMark {
    earned: u64,
    sent: u64,
}

/// The control thread's handle: there is exactly one, it owns the configuration and creates
/// the workers' [`Pacer`]s.
#[derive(Debug)]
pub struct PacerControl {
    shared: Arc<Shared>,
    /// Totals at the previous sample, flat over (pipe, job).
    prev: Vec<Totals>,
    /// Per pipe.
    marks: Vec<ImmediateMark>,
    stats: PacerControlStats,
}

impl PacerControl {
    /// Builds the shared state. No job has credit until the first [`PacerControl::set_grants`].
    pub fn new(config: PacerConfig) -> Result<Self, PacerError> {
        let shared = Arc::new(Shared::new(config)?);
        let prev = vec![Totals::default(); shared.jobs.len()];
        let marks = vec![ImmediateMark::default(); shared.pipes.len()];
        Ok(Self {
            shared,
            prev,
            marks,
            stats: PacerControlStats::default(),
        })
    }

    /// Creates worker `worker`'s pacer (once per worker; again after the previous one was
    /// dropped).
    pub fn worker<T>(&self, worker: usize) -> Result<Pacer<T>, PacerError> {
        Pacer::new(self.shared.clone(), worker)
    }

    /// The configuration.
    pub fn config(&self) -> &PacerConfig {
        &self.shared.config
    }

    /// Control-side counters.
    pub fn stats(&self) -> &PacerControlStats {
        &self.stats
    }

    fn totals(&self, flat: usize) -> Totals {
        let mut t = Totals::default();
        for w in 0..self.shared.config.workers {
            let c = self.shared.counters(w, flat);
            t.arrived = t.arrived.wrapping_add(c.arrived_bytes.load(Relaxed));
            t.sent = t.sent.wrapping_add(c.sent_bytes.load(Relaxed));
            t.sent_pkts = t.sent_pkts.wrapping_add(c.sent_pkts.load(Relaxed));
            t.sent_imm = t.sent_imm.wrapping_add(c.sent_imm_bytes.load(Relaxed));
            t.dropped = t.dropped.wrapping_add(c.dropped_bytes.load(Relaxed));
            t.dropped_pkts = t.dropped_pkts.wrapping_add(c.dropped_pkts.load(Relaxed));
        }
        t
    }

    /// Pays the jobs' debts on `pipe` with the immediate credit granted since the previous
    /// call but not used: "swap what was used for what can be used, pay the overdraft with
    /// the difference". That capacity was offered to this node and left idle, so bytes sent
    /// beyond credit took nothing from anyone.
    fn settle_overdraft(&mut self, pipe: usize, now_ns: u64) {
        let p = &self.shared.pipes[pipe];
        let imm_earned = p.immediate.earned(now_ns);
        let imm_sent: u64 = (0..p.jobs)
            .map(|j| self.totals(p.first_job + j).sent_imm)
            .fold(0, u64::wrapping_add);
        let mark = std::mem::replace(
            &mut self.marks[pipe],
            ImmediateMark {
                earned: imm_earned,
                sent: imm_sent,
            },
        );
        let mut unused = imm_earned
            .saturating_sub(mark.earned)
            .saturating_sub(imm_sent.wrapping_sub(mark.sent));
        for j in 0..p.jobs {
            let bucket = &self.shared.jobs[p.first_job + j].0.bucket;
            let pay = bucket.debt(now_ns).min(unused);
            if pay > 0 {
                bucket.forgive(pay);
                unused -= pay;
                self.stats.debt_forgiven_bytes += pay;
            }
        }
    }

    /// Samples every job of `pipe` at `now` into `out` (cleared first): counts since the
    /// previous sample of the pipe, queue sizes and debt now (after paying what unused
    /// immediate credit can). Call once per interval, before [`PacerControl::set_grants`].
    pub fn sample(
        &mut self,
        pipe: usize,
        now: Timestamp,
        out: &mut Vec<JobSample>,
    ) -> Result<(), PacerError> {
        let now_ns = now.as_nanos();
        let p = self
            .shared
            .pipes
            .get(pipe)
            .ok_or(PacerError::UnknownPipe(pipe))?;
        let (first, jobs) = (p.first_job, p.jobs);
        self.settle_overdraft(pipe, now_ns);
        out.clear();
        for j in 0..jobs {
            let flat = first + j;
            let t = self.totals(flat);
            let prev = std::mem::replace(&mut self.prev[flat], t);
            let (mut queued_bytes, mut queued_pkts) = (0u64, 0u64);
            for w in 0..self.shared.config.workers {
                let c = self.shared.counters(w, flat);
                queued_bytes = queued_bytes.wrapping_add(c.queued_bytes.load(Relaxed));
                queued_pkts = queued_pkts.wrapping_add(c.queued_pkts.load(Relaxed));
            }
            out.push(JobSample {
                job: j as u16,
                // Gauges of different workers are read at slightly different times; a sum
                // that wrapped below zero means "about empty".
                queued_bytes: if queued_bytes > u64::MAX / 2 {
                    0
                } else {
                    queued_bytes
                },
                queued_pkts: if queued_pkts > u64::MAX / 2 {
                    0
                } else {
                    queued_pkts
                },
                arrived_bytes: t.arrived.wrapping_sub(prev.arrived),
                sent_bytes: t.sent.wrapping_sub(prev.sent),
                sent_pkts: t.sent_pkts.wrapping_sub(prev.sent_pkts),
                sent_immediate_bytes: t.sent_imm.wrapping_sub(prev.sent_imm),
                dropped_bytes: t.dropped.wrapping_sub(prev.dropped),
                dropped_pkts: t.dropped_pkts.wrapping_sub(prev.dropped_pkts),
                debt_bytes: self.shared.jobs[flat].0.bucket.debt(now_ns),
            });
        }
        Ok(())
    }

    /// Applies `pipe`'s grants for the interval starting at `now`: `immediate_bytes` of
    /// immediate credit for the node, and each listed job's credit (jobs not listed get
    /// none). All amounts are bytes per interval and trickle in at that rate until the next
    /// call. Nothing changes if the pipe or a job is unknown.
    pub fn set_grants(
        &mut self,
        pipe: usize,
        now: Timestamp,
        immediate_bytes: u64,
        jobs: &[JobCredit],
    ) -> Result<(), PacerError> {
        let now_ns = now.as_nanos();
        let Some(p) = self.shared.pipes.get(pipe) else {
            self.stats.grants_rejected += 1;
            return Err(PacerError::UnknownPipe(pipe));
        };
        if let Some(bad) = jobs.iter().find(|j| usize::from(j.job) >= p.jobs) {
            self.stats.grants_rejected += 1;
            return Err(PacerError::UnknownJob { pipe, job: bad.job });
        }
        let cfg = &self.shared.config.pipes[pipe];
        let interval = cfg.interval_ns;

        for j in 0..p.jobs {
            let grant = jobs
                .iter()
                .find(|g| usize::from(g.job) == j)
                .copied()
                .unwrap_or_default();
            let job = &self.shared.jobs[p.first_job + j].0;
            let cfg = &self.shared.config;
            let (bytes, rate) = (grant.credit_bytes, rate_fp(grant.credit_bytes, interval));
            let (burst, carry) = (cfg.burst(bytes, interval), cfg.carry(bytes, interval));
            job.bucket.set_rate(now_ns, rate, burst, carry);
            let allow = grant
                .immediate_allowance
                .map_or(i64::MAX, |a| i64::try_from(a).unwrap_or(i64::MAX));
            job.imm_allow.store(allow, Relaxed);
        }
        let cfg = &self.shared.config;
        let burst = cfg.burst(immediate_bytes, interval);
        let carry = cfg.carry(immediate_bytes, interval);
        let rate = rate_fp(immediate_bytes, interval);
        p.immediate.set_rate(now_ns, rate, burst, carry);
        self.stats.grants_applied += 1;
        Ok(())
    }
}
