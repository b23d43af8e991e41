//! Passive response-time measurement of TCP request/response traffic.
//!
//! A worker sees both directions of every connection it serves, so it can
//! time the jobs without touching them. One [`ResponseTracker`] per worker
//! keeps a small state per inbound TCP connection (in a bounded table of its
//! own) and, per job, two cumulative [`Histogram`]s:
//!
//! * **response time**: from the first *new* data segment of a request
//!   arriving (inbound) to the first *new* data segment of the reply leaving
//!   (outbound), once per direction turn. A connection carries any number of
//!   turns (keep-alive); pipelined requests sent before the previous reply
//!   began form one turn with it (passively, message boundaries inside a
//!   byte stream are unknowable).
//! * **connection setup time**: from the first SYN arriving to the SYN-ACK
//!   leaving. That is the server's own share of the handshake (listen-queue
//!   overflow shows up as SYN retransmissions: the first SYN's time is kept,
//!   so a dropped SYN costs its retransmission delay, 1 s and more). The time
//!   to the client's ACK would add the network round trip to the client,
//!   which no server-side resource can change.
//!
//! What it relies on and how it copes:
//! * Only connections whose SYN arrived from the network are tracked (the
//!   local side is the server). Connections opened by local clients, and
//!   connections already open when the tracker started (no SYN seen), are
//!   not: their first segments cannot tell which side asks.
//! * Sequence numbers tell new data from retransmissions: a segment starts
//!   or closes a turn only if it carries bytes beyond the highest seen in its
//!   direction. Acknowledgements advance the other direction's mark, so the
//!   tracker stays right when it sees only part of a flow (turn edges
//!   only, as an XDP fast path would hand over).
//! * Half-close: a FIN without data neither starts nor closes a turn; a
//!   request followed by the client's FIN is still timed by the reply. RST,
//!   or FINs both ways, end the connection and free its entry at once; a
//!   turn still waiting then is counted *unanswered*.
//! * Replies that take another path (direct server return: only the serving
//!   node sees replies): a connection whose client acknowledges a SYN-ACK
//!   this worker never saw is dropped from the table and counted
//!   (`replies_unseen`); it never yields a sample.
//! * The table holds at most `capacity` connections (allocated up front);
//!   a SYN that finds it full is counted (`table_full`) and not tracked.
//!   Entries idle for `idle_timeout` are swept by [`ResponseTracker::expire`].
//!
//! # Driving it (per worker)
//! ```text
//! let mut rt = ResponseTracker::new(ResponseConfig { capacity, idle_timeout_ns });
//! rt.set_measured(&goal_jobs);                     // on start and on every rules change
//! // per TCP frame delivered locally, after classification (job known):
//! if rt.measures(job) {
//!     if let Some(seg) = TcpMeta::from_frame(frame.data(), &info) {
//!         rt.on_segment(now_ns, direction, &info.flow.unwrap(), job, &seg);
//!     }
//! }
//! // on the publish tick:
//! rt.expire(now_ns);
//! report.response = rt.snapshot();                 // cumulative; merge workers with ResponseReport::merge
//! ```
//! Cost per TCP frame of a measured job: the header read and one probe of
//! this table (see `cargo bench -p headroom-dataplane --bench response`);
//! frames of other jobs cost one array read. A snapshot copies two 5.9 KB
//! histograms per measured job.

#[cfg(test)]
mod tests;

use std::hash::BuildHasher;
use std::net::Ipv4Addr;

use hashbrown::{DefaultHashBuilder, HashTable};
use headroom_config::net::Direction;
use headroom_latency::Histogram;

use crate::classifier::{FlowKey, JobId};
use crate::packet::{ipv4::protocol, tcp, tcp::TcpSegment, FrameInfo};

/// The TCP fields the tracker needs from one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpMeta {
    /// Flags ([`tcp::flags`]).
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful with ACK).
    pub ack: u32,
    /// Payload bytes.
    pub payload_len: u32,
}

impl TcpMeta {
    /// Reads the fields from a parsed frame (`head` is its first buffer,
    /// which holds every header). None for anything but an unfragmented
    /// TCP segment.
    #[inline]
    pub fn from_frame(head: &[u8], info: &FrameInfo) -> Option<TcpMeta> {
        let flow = info.flow?;
        if flow.protocol() != protocol::TCP || info.is_fragment {
            return None;
        }
        let l4 = usize::from(info.l4_offset?);
        let seg = TcpSegment::new_checked(head.get(l4..)?).ok()?;
        let headers = (l4 - usize::from(info.l3_offset)) + seg.header_len();
        Some(TcpMeta {
            flags: seg.flags(),
            seq: seg.seq(),
            ack: seg.ack(),
            payload_len: u32::from(info.l3_len).saturating_sub(headers as u32),
        })
    }

    #[inline]
    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// Settings of a tracker.
#[derive(Debug, Clone, Copy)]
pub struct ResponseConfig {
    /// Connections tracked at most (memory is allocated up front, about
    /// 150 bytes per connection).
    pub capacity: usize,
    /// A connection idle this long is forgotten (a turn still waiting is
    /// counted unanswered).
    pub idle_timeout_ns: u64,
}

/// What the tracker measured for one job (cumulative).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobResponse {
    /// Response times, one per answered turn.
    pub response: Histogram,
    /// Connection setup times (SYN in to SYN-ACK out).
    pub setup: Histogram,
    /// Turns started (requests).
    pub requests: u64,
    /// Turns that ended without a reply (reset, closed or idle).
    pub unanswered: u64,
}

impl JobResponse {
    /// Adds another worker's or node's counts.
    pub fn merge(&mut self, o: &JobResponse) {
        self.response.merge(&o.response);
        self.setup.merge(&o.setup);
        self.requests += o.requests;
        self.unanswered += o.unanswered;
    }

    /// The counts since `earlier` (see [`Histogram::since`]).
    pub fn since(&self, earlier: &JobResponse) -> JobResponse {
        let reset = self.requests < earlier.requests;
        JobResponse {
            response: self.response.since(&earlier.response),
            setup: self.setup.since(&earlier.setup),
            requests: if reset {
                self.requests
            } else {
                self.requests - earlier.requests
            },
            unanswered: self
                .unanswered
                .saturating_sub(if reset { 0 } else { earlier.unanswered }),
        }
    }
}

/// Counters of a tracker (cumulative, except `connections`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Connections in the table now.
    pub connections: u64,
    /// Table capacity.
    pub capacity: u64,
    /// Connections inserted (an inbound SYN of a measured job).
    pub tracked: u64,
    /// Inbound SYNs not tracked because the table was full.
    pub table_full: u64,
    /// Connections dropped because their replies take another path.
    pub replies_unseen: u64,
    /// Connections removed by idle expiry.
    pub expired: u64,
    /// Retransmitted SYNs (the first one's time is kept).
    pub syn_retransmits: u64,
    /// Data segments carrying no new bytes (retransmissions), both ways.
    pub retransmits: u64,
    /// Segments of measured jobs on connections not in the table.
    pub untracked_segments: u64,
}

impl TrackerStats {
    /// Adds another worker's counters.
    pub fn merge(&mut self, o: &TrackerStats) {
        self.connections += o.connections;
        self.capacity += o.capacity;
        self.tracked += o.tracked;
        self.table_full += o.table_full;
        self.replies_unseen += o.replies_unseen;
        self.expired += o.expired;
        self.syn_retransmits += o.syn_retransmits;
        self.retransmits += o.retransmits;
        self.untracked_segments += o.untracked_segments;
    }
}

/// A tracker's published state: cumulative per-job measurements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseReport {
    /// Measured jobs that have counts, in id order.
    pub jobs: Vec<(JobId, JobResponse)>,
    /// Tracker counters.
    pub stats: TrackerStats,
}

impl ResponseReport {
    /// Adds another worker's report (jobs matched by id).
    pub fn merge(&mut self, o: &ResponseReport) {
        for (j, r) in &o.jobs {
            match self.jobs.binary_search_by_key(j, |(k, _)| *k) {
                Ok(i) => self.jobs[i].1.merge(r),
                Err(i) => self.jobs.insert(i, (*j, r.clone())),
            }
        }
        self.stats.merge(&o.stats);
    }

    /// The measurements of `job`, if any.
    pub fn job(&self, job: JobId) -> Option<&JobResponse> {
        self.jobs.iter().find(|(j, _)| *j == job).map(|(_, r)| r)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// SYN arrived, SYN-ACK not yet seen.
    SynSeen,
    /// Waiting for a request.
    Idle,
    /// A request arrived, no reply data yet (`since` = its first byte).
    Request,
    /// The reply is leaving.
    Reply,
}

const FIN_IN: u8 = 1;
const FIN_OUT: u8 = 2;

#[derive(Debug, Clone, Copy)]
struct Conn {
    job: JobId,
    phase: Phase,
    fins: u8,
    /// Next sequence number expected inbound (past the highest byte seen).
    in_next: u32,
    /// Same, outbound.
    out_next: u32,
    /// SYN time (SynSeen) or the request's first byte (Request), ns.
    since: u64,
    last_seen: u64,
}

/// `a` is after `b` in sequence space (RFC 9293 serial comparison).
#[inline]
fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Per-worker response-time measurement (see the module docs).
pub struct ResponseTracker {
    table: HashTable<(FlowKey, Conn)>,
    hasher: DefaultHashBuilder,
    cfg: ResponseConfig,
    /// Per job id: its measurements, if measured.
    jobs: Vec<Option<Box<JobResponse>>>,
    stats: TrackerStats,
    next_sweep: u64,
}

impl std::fmt::Debug for ResponseTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseTracker")
            .field("connections", &self.table.len())
            .field("capacity", &self.cfg.capacity)
            .finish_non_exhaustive()
    }
}

impl ResponseTracker {
    /// A tracker measuring no job yet (see [`ResponseTracker::set_measured`]).
    pub fn new(cfg: ResponseConfig) -> Self {
        let mut table = HashTable::with_capacity(cfg.capacity);
        let dummy = Conn {
            job: JobId::DEFAULT,
            phase: Phase::Idle,
            fins: 0,
            in_next: 0,
            out_next: 0,
            since: 0,
            last_seen: 0,
        };
        let key = FlowKey::v4(0, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, 0, 0);
        crate::classifier::prefault(&mut table, (key, dummy));
        Self {
            table,
            hasher: DefaultHashBuilder::default(),
            cfg,
            jobs: Vec::new(),
            stats: TrackerStats {
                capacity: cfg.capacity as u64,
                ..TrackerStats::default()
            },
            next_sweep: 0,
        }
    }

    /// Measures exactly the jobs in `jobs` (allocates their histograms;
    /// call on start and on rules changes, not per packet). Jobs that stay
    /// measured keep their counts; jobs that stop lose theirs.
    pub fn set_measured(&mut self, jobs: &[JobId]) {
        let need = jobs.iter().map(|j| usize::from(j.0) + 1).max().unwrap_or(0);
        let mut next: Vec<Option<Box<JobResponse>>> =
            (0..need.max(self.jobs.len())).map(|_| None).collect();
        for j in jobs {
            let i = usize::from(j.0);
            next[i] = self
                .jobs
                .get_mut(i)
                .and_then(Option::take)
                .or_else(|| Some(Box::default()));
        }
        self.jobs = next;
    }

    /// Whether `job`'s segments should be fed to [`ResponseTracker::on_segment`].
    #[inline]
    pub fn measures(&self, job: JobId) -> bool {
        matches!(self.jobs.get(usize::from(job.0)), Some(Some(_)))
    }

    /// One TCP segment of a measured job, delivered locally: `key` as on the
    /// wire, `dir` its direction, `now_ns` the worker's clock. Never
    /// allocates.
    #[inline]
    pub fn on_segment(
        &mut self,
        now_ns: u64,
        dir: Direction,
        key: &FlowKey,
        job: JobId,
        seg: &TcpMeta,
    ) {
        if !self.measures(job) {
            return;
        }
        let okey = key.local_remote(dir);
        let hash = self.hasher.hash_one(okey);
        let syn_only = seg.has(tcp::flags::SYN) && !seg.has(tcp::flags::ACK);
        let Ok(entry) = self.table.find_entry(hash, |(k, _)| *k == okey) else {
            if dir == Direction::Inbound && syn_only && !seg.has(tcp::flags::RST) {
                if self.table.len() >= self.cfg.capacity {
                    self.stats.table_full += 1;
                    return;
                }
                let conn = Conn {
                    job,
                    phase: Phase::SynSeen,
                    fins: 0,
                    in_next: seg.seq.wrapping_add(1),
                    out_next: 0,
                    since: now_ns,
                    last_seen: now_ns,
                };
                let hasher = &self.hasher;
                self.table
                    .insert_unique(hash, (okey, conn), |(k, _)| hasher.hash_one(k));
                self.stats.tracked += 1;
            } else {
                self.stats.untracked_segments += 1;
            }
            return;
        };
        let mut entry = entry;
        let c = &mut entry.get_mut().1;
        c.last_seen = now_ns;
        c.job = job;
        let inbound = dir == Direction::Inbound;
        let outcome = step(c, inbound, syn_only, seg, now_ns);
        let (job, phase) = (c.job, c.phase);
        let m = self
            .jobs
            .get_mut(usize::from(job.0))
            .and_then(|j| j.as_deref_mut());
        match outcome {
            Step::None => {}
            Step::Retransmit => self.stats.retransmits += 1,
            Step::SynRetransmit => self.stats.syn_retransmits += 1,
            Step::Setup(ns) => {
                if let Some(m) = m {
                    m.setup.record_ns(ns);
                }
            }
            Step::Request => {
                if let Some(m) = m {
                    m.requests += 1;
                }
            }
            Step::Response(ns) => {
                if let Some(m) = m {
                    m.response.record_ns(ns);
                }
            }
            Step::Reused { pending } => {
                if let (true, Some(m)) = (pending, m) {
                    m.unanswered += 1;
                }
            }
            Step::Close => {
                if let (Phase::Request, Some(m)) = (phase, m) {
                    m.unanswered += 1;
                }
                entry.remove();
            }
            Step::RepliesUnseen => {
                self.stats.replies_unseen += 1;
                entry.remove();
            }
        }
    }

    /// Forgets connections idle for the idle timeout (sweeps the table at
    /// most once per second of `now_ns`; call on the publish tick). Returns
    /// the number removed.
    pub fn expire(&mut self, now_ns: u64) -> usize {
        if now_ns < self.next_sweep {
            return 0;
        }
        self.next_sweep = now_ns.saturating_add(1_000_000_000);
        let timeout = self.cfg.idle_timeout_ns;
        let jobs = &mut self.jobs;
        let before = self.table.len();
        self.table.retain(|(_, c)| {
            if now_ns.saturating_sub(c.last_seen) < timeout {
                return true;
            }
            if c.phase == Phase::Request {
                if let Some(Some(m)) = jobs.get_mut(usize::from(c.job.0)) {
                    m.unanswered += 1;
                }
            }
            false
        });
        let removed = before - self.table.len();
        self.stats.expired += removed as u64;
        removed
    }

    /// Connections in the table.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no connection is tracked.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The cumulative measurements of `job`, if measured.
    pub fn job(&self, job: JobId) -> Option<&JobResponse> {
        self.jobs.get(usize::from(job.0)).and_then(|j| j.as_deref())
    }

    /// Copies the measurements (allocates: call on the publish tick).
    pub fn snapshot(&self) -> ResponseReport {
        ResponseReport {
            jobs: self
                .jobs
                .iter()
                .enumerate()
                .filter_map(|(i, j)| j.as_deref().map(|j| (JobId(i as u16), j.clone())))
                .collect(),
            stats: TrackerStats {
                connections: self.table.len() as u64,
                ..self.stats
            },
        }
    }
}

/// What one segment did to a connection.
enum Step {
    None,
    Retransmit,
    SynRetransmit,
    Setup(u64),
    Request,
    Response(u64),
    /// A new SYN on a known tuple: the old connection is gone.
    Reused {
        pending: bool,
    },
    /// The connection ended (RST, or FINs both ways).
    Close,
    RepliesUnseen,
}

/// The per-connection state machine.
#[inline]
fn step(c: &mut Conn, inbound: bool, syn_only: bool, seg: &TcpMeta, now: u64) -> Step {
    use tcp::flags::{ACK, FIN, RST, SYN};
    if seg.has(RST) {
        return Step::Close;
    }
    if inbound && syn_only {
        if c.phase == Phase::SynSeen {
            return Step::SynRetransmit;
        }
        let pending = c.phase == Phase::Request;
        *c = Conn {
            phase: Phase::SynSeen,
            fins: 0,
            in_next: seg.seq.wrapping_add(1),
            out_next: 0,
            since: now,
            ..*c
        };
        return Step::Reused { pending };
    }
    if c.phase == Phase::SynSeen {
        return if !inbound && seg.has(SYN) && seg.has(ACK) {
            c.phase = Phase::Idle;
            c.out_next = seg.seq.wrapping_add(1);
            Step::Setup(now.saturating_sub(c.since))
        } else if inbound {
            // The client acknowledges a SYN-ACK that left by another path.
            Step::RepliesUnseen
        } else {
            Step::None
        };
    }
    if seg.has(SYN) {
        // A retransmitted SYN-ACK.
        return Step::None;
    }
    // What the other side acknowledges, it has received: our mark for its
    // direction is at least that (holds when frames were not all seen).
    if seg.has(ACK) {
        if inbound {
            if seq_after(seg.ack, c.out_next) {
                c.out_next = seg.ack;
            }
        } else if seq_after(seg.ack, c.in_next) {
            c.in_next = seg.ack;
        }
    }
    let mut out = Step::None;
    if seg.payload_len > 0 {
        let end = seg.seq.wrapping_add(seg.payload_len);
        let mark = if inbound {
            &mut c.in_next
        } else {
            &mut c.out_next
        };
        if seq_after(end, *mark) {
            *mark = end;
            if inbound && c.phase != Phase::Request {
                c.phase = Phase::Request;
                c.since = now;
                out = Step::Request;
            } else if !inbound && c.phase == Phase::Request {
                c.phase = Phase::Reply;
                out = Step::Response(now.saturating_sub(c.since));
            }
        } else {
            out = Step::Retransmit;
        }
    }
    if seg.has(FIN) {
        c.fins |= if inbound { FIN_IN } else { FIN_OUT };
        if c.fins == FIN_IN | FIN_OUT {
            return Step::Close;
        }
    }
    out
}

/// The fuzz target's body (also run by the unit tests over random input).
/// The bytes drive a small tracker: each 12-byte record is one segment
/// (direction and flow from the first byte, then flags, sequence delta,
/// acknowledgement, payload length and time step), followed, if long
/// enough, by the whole input parsed as a frame and fed as one segment.
/// Checks the tracker's invariants after every segment. Panics only on a
/// bug.
pub fn fuzz_segments(data: &[u8]) {
    use std::net::Ipv4Addr;
    let mut rt = ResponseTracker::new(ResponseConfig {
        capacity: 4,
        idle_timeout_ns: 5_000_000_000,
    });
    rt.set_measured(&[JobId(1), JobId(2)]);
    let mut now = 0u64;
    let mut seqs = [0u32; 16];
    for r in data.chunks_exact(12) {
        let inbound = r[0] & 1 == 0;
        let flow = usize::from(r[0] >> 1 & 7);
        let job = JobId(u16::from(r[0] >> 4 & 3));
        let wire = FlowKey::v4(
            6,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 1, 1),
            40_000 + flow as u16,
            80,
        );
        let (key, dir) = if inbound {
            (wire, Direction::Inbound)
        } else {
            (wire.reversed(), Direction::Outbound)
        };
        let s = &mut seqs[flow * 2 + usize::from(!inbound)];
        *s = s.wrapping_add(u32::from(u16::from_le_bytes([r[2], r[3]])));
        let seg = TcpMeta {
            flags: r[1],
            seq: *s,
            ack: u32::from_le_bytes([r[4], r[5], r[6], r[7]]),
            payload_len: u32::from(u16::from_le_bytes([r[8], r[9]])),
        };
        now += u64::from(u16::from_le_bytes([r[10], r[11]])) * 1_000_000;
        rt.on_segment(now, dir, &key, job, &seg);
        rt.expire(now);
        check_invariants(&rt);
    }
    if let Ok(info) = crate::packet::parse_frame(data) {
        if let (Some(seg), Some(key)) = (TcpMeta::from_frame(data, &info), info.flow) {
            assert!(seg.payload_len <= u32::from(info.l3_len));
            rt.on_segment(now, Direction::Inbound, &key, JobId(1), &seg);
            check_invariants(&rt);
        }
    }
}

fn check_invariants(rt: &ResponseTracker) {
    assert!(rt.len() <= rt.cfg.capacity, "table within capacity");
    let snap = rt.snapshot();
    assert_eq!(snap.stats.connections, rt.len() as u64);
    for (_, j) in &snap.jobs {
        // Every response closes a request; a request is answered at most once
        // and unanswered at most once.
        assert!(j.response.count() + j.unanswered <= j.requests, "{j:?}");
        assert!(j.setup.count() <= snap.stats.tracked);
    }
}
