//! The flow classifier: organises IP traffic into flows, maps each flow to a job
//! (application), and keeps per-flow and per-job resource accounting.
//!
//! One [`Classifier`] per worker thread, no locks: the worker calls
//! [`Classifier::classify`] for every IP frame (with the key from
//! [`crate::packet::parse_frame`]), [`Classifier::classify_unkeyed`] for ARP and other
//! non-IP frames, [`Classifier::expire`] periodically, and publishes
//! [`Classifier::snapshot`] periodically. On reload (SIGHUP) it installs the new shared
//! [`RuleSet`] with [`Classifier::set_rules`].

mod key;
mod rules;

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};
use headroom_config::net::Direction;

pub use key::{protocol_has_ports, FlowKey};
pub use rules::RuleSet;

/// A job (application) identifier. [`JobId::DEFAULT`] (0) is the default job that owns
/// traffic no rule matches, ARP and non-IP frames.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Default)]
pub struct JobId(pub u16);

impl JobId {
    /// The default job, 0.
    pub const DEFAULT: JobId = JobId(0);
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job{}", self.0)
    }
}

/// A flow's state in the table. The table's key is oriented local -> remote (see
/// [`FlowKey::local_remote`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlowEntry {
    /// The job the flow currently belongs to.
    pub job: JobId,
    /// Direction of the first packet seen: which side opened the flow (matched by rules'
    /// `direction`).
    pub origin: Direction,
    /// Packets received from the network.
    pub packets_in: u64,
    /// Bytes received from the network.
    pub bytes_in: u64,
    /// Packets sent to the network.
    pub packets_out: u64,
    /// Bytes sent to the network.
    pub bytes_out: u64,
    /// Time of the first packet (the caller's clock, ns).
    pub first_seen: u64,
    /// Time of the latest packet (ns).
    pub last_seen: u64,
    /// The rules generation `job` was computed under.
    pub rules_generation: u64,
}

/// Cumulative counters of one job.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct JobCounters {
    /// Packets received from the network.
    pub packets_in: u64,
    /// Bytes received from the network.
    pub bytes_in: u64,
    /// Packets sent to the network.
    pub packets_out: u64,
    /// Bytes sent to the network.
    pub bytes_out: u64,
    /// Flows of this job currently in the table (not cumulative).
    pub active_flows: u64,
}

impl JobCounters {
    #[inline]
    fn count(&mut self, dir: Direction, bytes: u32) {
        match dir {
            Direction::Inbound => {
                self.packets_in += 1;
                self.bytes_in += bytes as u64;
            }
            Direction::Outbound => {
                self.packets_out += 1;
                self.bytes_out += bytes as u64;
            }
        }
    }

    /// Add another job's counters (e.g. to aggregate workers).
    pub fn merge(&mut self, o: &JobCounters) {
        self.packets_in += o.packets_in;
        self.bytes_in += o.bytes_in;
        self.packets_out += o.packets_out;
        self.bytes_out += o.bytes_out;
        self.active_flows += o.active_flows;
    }
}

/// A point-in-time copy of a classifier's counters, published by the worker
/// periodically. All counters are cumulative since the classifier was created, except
/// `flows` and `active_flows`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassifierSnapshot {
    /// Per-job counters: every job of the current rules (default job first), then any job
    /// of earlier rules that still has counts.
    pub jobs: Vec<(JobId, JobCounters)>,
    /// Flows in the table now.
    pub flows: usize,
    /// Flows inserted.
    pub created: u64,
    /// Flows removed by idle expiry.
    pub expired: u64,
    /// New flows classified and counted but not inserted because the table was full.
    pub table_full: u64,
    /// Flows re-classified after a rules change.
    pub remapped: u64,
    /// Packets counted through [`Classifier::classify_unkeyed`].
    pub unkeyed: u64,
    /// Rules generation (incremented by each [`Classifier::set_rules`]).
    pub rules_generation: u64,
}

impl ClassifierSnapshot {
    /// The counters of `job`, if present.
    pub fn job(&self, job: JobId) -> Option<&JobCounters> {
        self.jobs.iter().find(|(j, _)| *j == job).map(|(_, c)| c)
    }
}

/// Default number of table slots [`Classifier::expire`] examines per call.
pub const DEFAULT_EXPIRY_SCAN: usize = 4096;

/// Per-worker flow table, rules and counters. See the module docs.
///
/// Storage: flows live in a dense `Vec` and a `hashbrown::HashTable<u32>` indexes them by
/// key hash; a lookup hashes once, probes the compact index, and compares one slot. The
/// index and the vector are allocated at full capacity up front, so the packet path does
/// not allocate. Idle expiry walks the dense vector with a cursor, a bounded number of
/// slots per call, so no single call stalls the worker; removal is a swap-remove plus one
/// index fix-up.
pub struct Classifier {
    index: HashTable<u32>,
    slots: Vec<(FlowKey, FlowEntry)>,
    hasher: DefaultHashBuilder,
    capacity: usize,
    idle_timeout_ns: u64,
    rules: Arc<RuleSet>,
    generation: u64,
    jobs: Vec<JobCounters>,
    cursor: usize,
    scan_budget: usize,
    created: u64,
    expired: u64,
    table_full: u64,
    remapped: u64,
    unkeyed: u64,
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("flows", &self.slots.len())
            .field("capacity", &self.capacity)
            .field("idle_timeout_ns", &self.idle_timeout_ns)
            .field("rules", &self.rules.len())
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Classifier {
    /// A classifier holding at most `capacity` flows (clamped to `u32::MAX`), expiring flows
    /// idle for `idle_timeout_ns`.
    pub fn new(capacity: usize, idle_timeout_ns: u64, rules: Arc<RuleSet>) -> Self {
        let capacity = capacity.min(u32::MAX as usize);
        let jobs = vec![JobCounters::default(); rules.max_job().0 as usize + 1];
        Self {
            index: HashTable::with_capacity(capacity),
            slots: Vec::with_capacity(capacity),
            hasher: DefaultHashBuilder::default(),
            capacity,
            idle_timeout_ns,
            rules,
            generation: 0,
            jobs,
            cursor: 0,
            scan_budget: DEFAULT_EXPIRY_SCAN,
            created: 0,
            expired: 0,
            table_full: 0,
            remapped: 0,
            unkeyed: 0,
        }
    }

    /// How many table slots each [`Classifier::expire`] call examines (0 = the whole
    /// table every call). A flow is removed at most `idle_timeout` plus one full sweep
    /// (`flows / budget` calls) after its last packet.
    pub fn set_expiry_scan_budget(&mut self, slots: usize) {
        self.scan_budget = slots;
    }

    /// Classify and count one packet of an IP flow. `key` is the wire key (from
    /// `parse_frame`), `dir` the packet's direction, `bytes` its length as the caller
    /// accounts it (e.g. the frame length).
    ///
    /// A new flow is classified by the rules (with `dir` as its origin) and inserted; if
    /// the table is full it is still classified and counted per job, but not inserted
    /// (`table_full` is incremented, and its later packets are classified again). A known
    /// flow whose job was computed under older rules is re-classified now (lazy
    /// re-mapping after [`Classifier::set_rules`]).
    #[inline]
    pub fn classify(&mut self, now_ns: u64, key: &FlowKey, dir: Direction, bytes: u32) -> JobId {
        let okey = key.local_remote(dir);
        let hash = self.hasher.hash_one(okey);
        let slots = &mut self.slots;
        let job = if let Some(&i) = self.index.find(hash, |&i| slots[i as usize].0 == okey) {
            let e = &mut slots[i as usize].1;
            if e.rules_generation != self.generation {
                let new = self.rules.classify(&okey, e.origin);
                if new != e.job {
                    dec_flow(&mut self.jobs, e.job);
                    inc_flow(&mut self.jobs, new);
                    e.job = new;
                }
                e.rules_generation = self.generation;
                self.remapped += 1;
            }
            e.last_seen = now_ns;
            match dir {
                Direction::Inbound => {
                    e.packets_in += 1;
                    e.bytes_in += bytes as u64;
                }
                Direction::Outbound => {
                    e.packets_out += 1;
                    e.bytes_out += bytes as u64;
                }
            }
            e.job
        } else {
            let job = self.rules.classify(&okey, dir);
            if slots.len() < self.capacity {
                let (pi, bi, po, bo) = match dir {
                    Direction::Inbound => (1, bytes as u64, 0, 0),
                    Direction::Outbound => (0, 0, 1, bytes as u64),
                };
                let idx = slots.len() as u32;
                slots.push((
                    okey,
                    FlowEntry {
                        job,
                        origin: dir,
                        packets_in: pi,
                        bytes_in: bi,
                        packets_out: po,
                        bytes_out: bo,
                        first_seen: now_ns,
                        last_seen: now_ns,
                        rules_generation: self.generation,
                    },
                ));
                let hasher = &self.hasher;
                self.index
                    .insert_unique(hash, idx, |&i| hasher.hash_one(slots[i as usize].0));
                self.created += 1;
                inc_flow(&mut self.jobs, job);
            } else {
                self.table_full += 1;
            }
            job
        };
        self.count_job(job, dir, bytes);
        job
    }

    /// Count a packet that has no flow key (ARP, non-IP, malformed-but-forwarded) against
    /// the default job.
    #[inline]
    pub fn classify_unkeyed(&mut self, dir: Direction, bytes: u32) -> JobId {
        self.unkeyed += 1;
        self.count_job(JobId::DEFAULT, dir, bytes);
        JobId::DEFAULT
    }

    #[inline]
    fn count_job(&mut self, job: JobId, dir: Direction, bytes: u32) {
        // Every job the rules can return has a slot (sized in new/set_rules).
        if let Some(c) = self.jobs.get_mut(job.0 as usize) {
            c.count(dir, bytes);
        }
    }

    /// Install new rules (reload). The generation is bumped; existing flows keep their job
    /// until their next packet, which re-classifies them under the new rules (with the
    /// flow's original `origin`), so traffic moves to its new job without a table flush or
    /// a lost count. Job counters are cumulative across reloads; jobs that disappeared keep
    /// their counts in snapshots.
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        let need = rules.max_job().0 as usize + 1;
        if self.jobs.len() < need {
            self.jobs.resize(need, JobCounters::default());
        }
        self.rules = rules;
        self.generation += 1;
    }

    /// The current rules.
    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// The current rules generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Remove flows idle for at least the idle timeout (`now_ns - last_seen >=
    /// idle_timeout_ns`), examining at most the scan budget of slots from where the
    /// previous call stopped. Call periodically (e.g. every few milliseconds), not per
    /// packet. Returns the number of flows removed.
    pub fn expire(&mut self, now_ns: u64) -> usize {
        let budget = if self.scan_budget == 0 {
            self.slots.len()
        } else {
            self.scan_budget.min(self.slots.len())
        };
        self.expire_scan(now_ns, budget)
    }

    /// Like [`Classifier::expire`] but examines the whole table.
    pub fn expire_all(&mut self, now_ns: u64) -> usize {
        self.cursor = 0;
        let n = self.slots.len();
        self.expire_scan(now_ns, n)
    }

    fn expire_scan(&mut self, now_ns: u64, budget: usize) -> usize {
        let mut removed = 0;
        for _ in 0..budget {
            if self.slots.is_empty() {
                break;
            }
            if self.cursor >= self.slots.len() {
                self.cursor = 0;
            }
            let i = self.cursor;
            if now_ns.saturating_sub(self.slots[i].1.last_seen) >= self.idle_timeout_ns {
                // The last slot moves into `i`: examine `i` again next.
                self.remove_at(i);
                removed += 1;
            } else {
                self.cursor += 1;
            }
        }
        self.expired += removed as u64;
        removed
    }

    fn remove_at(&mut self, i: usize) {
        let hash = self.hasher.hash_one(self.slots[i].0);
        if let Ok(o) = self.index.find_entry(hash, |&j| j as usize == i) {
            o.remove();
        } else {
            debug_assert!(false, "flow table index lost slot {i}");
        }
        let last = self.slots.len() - 1;
        let (_, e) = self.slots.swap_remove(i);
        dec_flow(&mut self.jobs, e.job);
        if i != last {
            let moved = self.hasher.hash_one(self.slots[i].0);
            if let Some(j) = self.index.find_mut(moved, |&j| j as usize == last) {
                *j = i as u32;
            } else {
                debug_assert!(false, "flow table index lost slot {last}");
            }
        }
    }

    /// Look up a flow by its wire key and the packet direction (as `classify` would).
    pub fn lookup(&self, key: &FlowKey, dir: Direction) -> Option<&FlowEntry> {
        let okey = key.local_remote(dir);
        let hash = self.hasher.hash_one(okey);
        self.index
            .find(hash, |&i| self.slots[i as usize].0 == okey)
            .map(|&i| &self.slots[i as usize].1)
    }

    /// Flows in the table now.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True if the table is empty.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Maximum number of flows.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Every flow, keyed local -> remote, in no particular order.
    pub fn flows(&self) -> impl Iterator<Item = (&FlowKey, &FlowEntry)> + '_ {
        self.slots.iter().map(|(k, e)| (k, e))
    }

    /// The cumulative counters of one job (zero if unknown).
    pub fn job_counters(&self, job: JobId) -> JobCounters {
        self.jobs.get(job.0 as usize).copied().unwrap_or_default()
    }

    /// Copy the counters (allocates: call periodically, not per packet).
    pub fn snapshot(&self) -> ClassifierSnapshot {
        let mut jobs: Vec<(JobId, JobCounters)> = self
            .rules
            .jobs()
            .iter()
            .map(|&j| (j, self.job_counters(j)))
            .collect();
        for (i, c) in self.jobs.iter().enumerate() {
            let j = JobId(i as u16);
            if *c != JobCounters::default() && !self.rules.jobs().contains(&j) {
                jobs.push((j, *c));
            }
        }
        ClassifierSnapshot {
            jobs,
            flows: self.slots.len(),
            created: self.created,
            expired: self.expired,
            table_full: self.table_full,
            remapped: self.remapped,
            unkeyed: self.unkeyed,
            rules_generation: self.generation,
        }
    }
}

#[inline]
fn inc_flow(jobs: &mut [JobCounters], job: JobId) {
    if let Some(c) = jobs.get_mut(job.0 as usize) {
        c.active_flows += 1;
    }
}

#[inline]
fn dec_flow(jobs: &mut [JobCounters], job: JobId) {
    if let Some(c) = jobs.get_mut(job.0 as usize) {
        c.active_flows = c.active_flows.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests;
