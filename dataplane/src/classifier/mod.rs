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
use std::net::Ipv4Addr;
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

/// By default [`Classifier::expire`] sweeps the whole table in this many calls (one shard
/// per call for tables of up to 16 shards, i.e. 64 Ki flows).
pub const DEFAULT_EXPIRY_SWEEP_CALLS: usize = 16;

/// Target number of flows per shard of the flow table.
const SHARD_TARGET: usize = 4096;
/// Upper bound on the number of shards.
const MAX_SHARDS: usize = 1024;

type Slot = (FlowKey, FlowEntry);

/// Per-worker flow table, rules and counters. See the module docs.
///
/// Storage: the flow table is split into a power-of-two number of `hashbrown` tables
/// (shards, about [`SHARD_TARGET`] flows each, chosen by hash bits the tables do not use
/// for bucket selection), each holding `(FlowKey, FlowEntry)` inline: a lookup hashes
/// once and touches one bucket, as a plain `HashMap` would. Every shard is allocated up
/// front with room for its share of the capacity plus slack, so the packet path does not
/// allocate in practice. Idle expiry runs `retain` over one or a few shards per call,
/// round-robin, so no single call walks the whole table and every flow is examined once
/// per sweep of all shards.
pub struct Classifier {
    shards: Box<[HashTable<Slot>]>,
    shard_mask: usize,
    hasher: DefaultHashBuilder,
    len: usize,
    capacity: usize,
    idle_timeout_ns: u64,
    rules: Arc<RuleSet>,
    generation: u64,
    jobs: Vec<JobCounters>,
    cursor: usize,
    /// Slots per expire() call; `None` = a 1/DEFAULT_EXPIRY_SWEEP_CALLS share.
    scan_budget: Option<usize>,
    created: u64,
    expired: u64,
    table_full: u64,
    remapped: u64,
    unkeyed: u64,
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("flows", &self.len)
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .field("idle_timeout_ns", &self.idle_timeout_ns)
            .field("rules", &self.rules.len())
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Writes every bucket of `t` once (copies of `dummy` up to its capacity,
/// then cleared): the table is resident from the start. Otherwise each page
/// of buckets faults in on the packet path when a new entry first lands in
/// it, and the resident size creeps up for hours as new flows reach
/// untouched pages (the one-hour soak saw that).
pub(crate) fn prefault<T: Clone>(t: &mut HashTable<T>, dummy: T) {
    let mut h = 0u64;
    for _ in 0..t.capacity() {
        // Distinct, well-spread hashes (splitmix64): the buckets fill as
        // real entries would, and the table never grows.
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        t.insert_unique(z ^ (z >> 31), dummy.clone(), |_| 0);
    }
    t.clear();
}

/// A flow-table entry for [`prefault`].
fn dummy_slot() -> Slot {
    (
        FlowKey::v4(0, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, 0, 0),
        FlowEntry {
            job: JobId::DEFAULT,
            origin: Direction::Inbound,
            packets_in: 0,
            bytes_in: 0,
            packets_out: 0,
            bytes_out: 0,
            first_seen: 0,
            last_seen: 0,
            rules_generation: 0,
        },
    )
}

#[inline]
fn shard_of(hash: u64, mask: usize) -> usize {
    // hashbrown picks buckets from the low bits and tags from the top 7: use the middle.
    (hash >> 32) as usize & mask
}

impl Classifier {
    /// A classifier holding at most `capacity` flows, expiring flows idle for
    /// `idle_timeout_ns`.
    ///
    /// Memory is allocated here, about 210 bytes per flow of capacity (buckets of
    /// `(FlowKey, FlowEntry)`, 104 bytes, at most half full when the table is full):
    /// 14 MB for 64 Ki flows, written once here ([`prefault`]) so all of it is resident
    /// from the start.
    pub fn new(capacity: usize, idle_timeout_ns: u64, rules: Arc<RuleSet>) -> Self {
        let n = (capacity / SHARD_TARGET)
            .next_power_of_two()
            .clamp(1, MAX_SHARDS);
        let per = capacity.div_ceil(n);
        // Hash imbalance between shards: ~sqrt(per) typically; allow 25% + 16.
        let prealloc = per + per / 4 + 16;
        let shards: Box<[HashTable<Slot>]> = (0..n)
            .map(|_| {
                let mut t = HashTable::with_capacity(prealloc);
                prefault(&mut t, dummy_slot());
                t
            })
            .collect();
        let jobs = vec![JobCounters::default(); rules.max_job().0 as usize + 1];
        Self {
            shards,
            shard_mask: n - 1,
            hasher: DefaultHashBuilder::default(),
            len: 0,
            capacity,
            idle_timeout_ns,
            rules,
            generation: 0,
            jobs,
            cursor: 0,
            scan_budget: None,
            created: 0,
            expired: 0,
            table_full: 0,
            remapped: 0,
            unkeyed: 0,
        }
    }

    /// About how many table slots each [`Classifier::expire`] call examines (0 = the
    /// whole table every call). Expiry works in whole shards, at least one per call. The
    /// default sweeps the table in [`DEFAULT_EXPIRY_SWEEP_CALLS`] calls (or one shard per
    /// call for small tables). A flow is removed at most `idle_timeout` plus one full sweep
    /// after its last packet: with the worker calling `expire` on every publish tick, a
    /// sweep takes 16 ticks.
    pub fn set_expiry_scan_budget(&mut self, slots: usize) {
        self.scan_budget = Some(slots);
    }

    /// Number of shards of the flow table.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Bytes the flow table allocated up front (every shard's buckets):
    /// what `headroom_config::machine::flow_table_bytes` predicts for the
    /// memory budget at start.
    pub fn table_bytes(&self) -> usize {
        self.shards.iter().map(HashTable::allocation_size).sum()
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
        let shard = &mut self.shards[shard_of(hash, self.shard_mask)];
        let job = if let Some((_, e)) = shard.find_mut(hash, |(k, _)| *k == okey) {
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
            if self.len < self.capacity {
                let (pi, bi, po, bo) = match dir {
                    Direction::Inbound => (1, bytes as u64, 0, 0),
                    Direction::Outbound => (0, 0, 1, bytes as u64),
                };
                let entry = FlowEntry {
                    job,
                    origin: dir,
                    packets_in: pi,
                    bytes_in: bi,
                    packets_out: po,
                    bytes_out: bo,
                    first_seen: now_ns,
                    last_seen: now_ns,
                    rules_generation: self.generation,
                };
                let hasher = &self.hasher;
                shard.insert_unique(hash, (okey, entry), |(k, _)| hasher.hash_one(k));
                self.len += 1;
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

    /// Generation of the rules in force (0 at start, +1 per
    /// [`Classifier::set_rules`]).
    pub fn rules_generation(&self) -> u64 {
        self.generation
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
    /// idle_timeout_ns`) from the next shard(s) in round-robin order (see
    /// [`Classifier::set_expiry_scan_budget`]). Call periodically (e.g. on every publish
    /// tick), not per packet. Returns the number of flows removed.
    pub fn expire(&mut self, now_ns: u64) -> usize {
        let n = self.shards.len();
        let per = self.capacity.div_ceil(n).max(1);
        let count = match self.scan_budget {
            None => (n / DEFAULT_EXPIRY_SWEEP_CALLS).max(1),
            Some(0) => n,
            Some(slots) => (slots / per).clamp(1, n),
        };
        self.expire_shards(now_ns, count)
    }

    /// Like [`Classifier::expire`] but examines the whole table.
    pub fn expire_all(&mut self, now_ns: u64) -> usize {
        let n = self.shards.len();
        self.expire_shards(now_ns, n)
    }

    fn expire_shards(&mut self, now_ns: u64, count: usize) -> usize {
        let timeout = self.idle_timeout_ns;
        let jobs = &mut self.jobs;
        let mut removed = 0;
        for _ in 0..count {
            let i = self.cursor & self.shard_mask;
            self.cursor = self.cursor.wrapping_add(1);
            self.shards[i].retain(|(_, e)| {
                if now_ns.saturating_sub(e.last_seen) >= timeout {
                    dec_flow(jobs, e.job);
                    removed += 1;
                    false
                } else {
                    true
                }
            });
        }
        self.len -= removed;
        self.expired += removed as u64;
        removed
    }

    /// Look up a flow by its wire key and the packet direction (as `classify` would).
    pub fn lookup(&self, key: &FlowKey, dir: Direction) -> Option<&FlowEntry> {
        let okey = key.local_remote(dir);
        let hash = self.hasher.hash_one(okey);
        self.shards[shard_of(hash, self.shard_mask)]
            .find(hash, |(k, _)| *k == okey)
            .map(|(_, e)| e)
    }

    /// Flows in the table now.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of flows.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Every flow, keyed local -> remote, in no particular order.
    pub fn flows(&self) -> impl Iterator<Item = (&FlowKey, &FlowEntry)> + '_ {
        self.shards
            .iter()
            .flat_map(|s| s.iter())
            .map(|(k, e)| (k, e))
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
            flows: self.len,
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
