//! Per-node summaries for "the pool from any server": every node publishes
//! a bounded [`NodeSummary`] as its exchange entry at the low-frequency
//! interval; any node reads every live node's latest with [`pool_view`] and
//! the status model renders it (names, not indices; rates over the stated
//! window).
//!
//! ```text
//! version u8 (2) | flags u8 (0x01 policy present)
//! | window_ms v | [policy version: term n u32, node u32, epoch u32, seq u64]
//! | cores v | cpu_permille v | headroom_permille v
//! | jobs_total v | n u8 | job * n | vips_total v | n u8 | vip * n
//! job = name str8 | rx_bps v | tx_bps v | cpu_permille v | connections v
//!       | exits v [last_exit_pid v | last_exit_comm str8   (when exits > 0)]
//!       | pipe u8 (0/1) [pipe str8 | booked_bps v | granted_bps v | sent_bps v | dropped_bps v]
//! vip = name str8 | placements v | flows v | health u8
//! v = LEB128 varint, str8 = u8 length + UTF-8
//! ```
//!
//! Version 1 (no `exits` field) still decodes, with 0 exits, so a pool
//! being upgraded keeps seeing its older members.
//!
//! # Bounds
//! A summary never exceeds the byte budget given to [`NodeSummary::encode`]
//! ([`SUMMARY_MAX`] = 1024 bytes by default, which fits one entry at the
//! smallest MTU the config allows plus headroom at 1400): jobs and VIPs are
//! listed in the order given (the daemon puts the busiest first) until the
//! budget or [`MAX_JOBS`] / [`MAX_VIPS`] is reached, and the rest are
//! counted in `jobs_total` / `vips_total`. Names are cut to [`MAX_NAME`]
//! bytes. At 1024 bytes, 10 jobs in pipes plus 8 VIPs with 16-byte names
//! and 10 Gbit/s rates always fit (tested), 8 jobs when each also carries
//! its latest exited process; a typical node (4 jobs, 2 VIPs, short names,
//! 10 Gbit/s figures) about 260.
//!
//! # Gossip cost
//! Measured with `cargo run --release -p headroom-control --example
//! policy_rollout` (its last table; a 179-byte version-1 summary, 183 bytes
//! in version 2, of 4 jobs in pipes
//! and 2 VIPs from every node every 2 s, 1% loss): bytes per node per
//! second added to the exchange, and the time until every node holds every
//! node's new summary (median / max of 8 rounds).
//!
//! | nodes | 100 ms tick | 20 ms tick (`--tick-ms 20`, the daemon's default) |
//! |---|---|---|
//! | 16 | +26.7 k B/s, 400 / 680 ms | +117 k B/s, 80 / 120 ms |
//! | 64 | +43.4 k B/s, 2.0 / 2.5 s | +178 k B/s, 320 / 500 ms |
//! | 128 | +32.7 k B/s (MTU-bound), 14 / 20 s | +220 k B/s, 720 / 920 ms |
//!
//! Most of it is the exchange's push anti-entropy (`fill_entries`): every
//! datagram carries random settled entries, and summaries are large ones.
//! With `fill_entries = 0` (`--no-fill`) the 20 ms figures drop to
//! +7 k / +46 k / +60 k B/s but a lost summary then waits for its owner's
//! back-off (up to 14 s at 128 nodes). At 100 ms ticks 64+ nodes cannot
//! keep up with a summary every 2 s.

use std::time::Duration;

use headroom_clock::Timestamp;

use super::codec::{truncate_utf8, DecodeError, Reader, Writer};
use super::version::VersionId;
use crate::exchange::{Exchange, MemberState, NodeId, Registration};

/// Encoding version.
pub const SUMMARY_VERSION: u8 = 2;
/// Default registration code (bandwidth 1, CPU 2, policy 3).
pub const SUMMARY_CODE: u8 = 4;
/// Default byte budget of one summary.
pub const SUMMARY_MAX: usize = 1024;
/// Most jobs listed in one summary.
pub const MAX_JOBS: usize = 64;
/// Most VIPs listed in one summary.
pub const MAX_VIPS: usize = 32;
/// Longest job, pipe or VIP name carried.
pub const MAX_NAME: usize = 64;

/// A job's use of its pipe on this node, over the summary window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PipeUse {
    /// Pipe name.
    pub pipe: String,
    /// Booked rate of the job in the pipe, bit/s.
    pub booked_bps: u64,
    /// Rate granted to this node for the job by the allocator, bit/s.
    pub granted_bps: u64,
    /// Rate sent, bit/s.
    pub sent_bps: u64,
    /// Rate dropped by the pacer, bit/s.
    pub dropped_bps: u64,
}

/// One job on one node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobSummary {
    /// Job name.
    pub name: String,
    /// Received rate, bit/s.
    pub rx_bps: u64,
    /// Transmitted rate, bit/s.
    pub tx_bps: u64,
    /// CPU use, per mille of one core (1500 = 1.5 cores).
    pub cpu_permille: u32,
    /// Open connections (flows).
    pub connections: u32,
    /// Processes of the job that exited on the node since its daemon
    /// started (only grows; the master turns an increase into a
    /// process-exit event).
    pub exits: u64,
    /// The latest exited process's pid (with `exits` > 0).
    pub last_exit_pid: u32,
    /// Its name (`comm`).
    pub last_exit_comm: String,
    /// Its pipe, if it is in one.
    pub pipe: Option<PipeUse>,
}

/// Health of a VIP's service on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    /// Not checked (yet).
    #[default]
    Unknown,
    /// Health check passes.
    Up,
    /// Health check fails.
    Down,
    /// Weight 0: no new flows.
    Draining,
}

impl Health {
    fn code(self) -> u8 {
        match self {
            Health::Unknown => 0,
            Health::Up => 1,
            Health::Down => 2,
            Health::Draining => 3,
        }
    }
    fn from_code(c: u8) -> Result<Self, DecodeError> {
        Ok(match c {
            0 => Health::Unknown,
            1 => Health::Up,
            2 => Health::Down,
            3 => Health::Draining,
            _ => return Err(DecodeError::Invalid("vip health")),
        })
    }
    /// Lower-case name for status output.
    pub fn name(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
            Health::Draining => "draining",
        }
    }
}

/// One VIP on one node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VipSummary {
    /// Service name.
    pub name: String,
    /// New flows placed on this node during the window.
    pub placements: u32,
    /// Flows currently served by this node.
    pub flows: u32,
    /// Health here.
    pub health: Health,
}

/// What one node tells the pool about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeSummary {
    /// Window the rates and placements are measured over, ms.
    pub window_ms: u32,
    /// Active policy version.
    pub policy: Option<VersionId>,
    /// Cores the node file names.
    pub cores: u32,
    /// CPU use of those cores, per mille of their total.
    pub cpu_permille: u32,
    /// Measured headroom (idle share), per mille.
    pub headroom_permille: u32,
    /// Jobs listed (see `jobs_total`).
    pub jobs: Vec<JobSummary>,
    /// Jobs on the node, listed or not.
    pub jobs_total: u32,
    /// VIPs listed (see `vips_total`).
    pub vips: Vec<VipSummary>,
    /// VIPs on the node, listed or not.
    pub vips_total: u32,
}

fn write_job(w: &mut Writer, j: &JobSummary) {
    w.str8(truncate_utf8(&j.name, MAX_NAME))
        .varint(j.rx_bps)
        .varint(j.tx_bps)
        .varint(u64::from(j.cpu_permille))
        .varint(u64::from(j.connections))
        .varint(j.exits);
    if j.exits > 0 {
        w.varint(u64::from(j.last_exit_pid))
            .str8(truncate_utf8(&j.last_exit_comm, MAX_NAME));
    }
    match &j.pipe {
        None => {
            w.u8(0);
        }
        Some(p) => {
            w.u8(1)
                .str8(truncate_utf8(&p.pipe, MAX_NAME))
                .varint(p.booked_bps)
                .varint(p.granted_bps)
                .varint(p.sent_bps)
                .varint(p.dropped_bps);
        }
    }
}

fn write_vip(w: &mut Writer, v: &VipSummary) {
    w.str8(truncate_utf8(&v.name, MAX_NAME))
        .varint(u64::from(v.placements))
        .varint(u64::from(v.flows))
        .u8(v.health.code());
}

fn sized<T>(f: impl Fn(&mut Writer, &T), x: &T) -> usize {
    let mut w = Writer::new();
    f(&mut w, x);
    w.len()
}

fn u32_of(v: u64, what: &'static str) -> Result<u32, DecodeError> {
    u32::try_from(v).map_err(|_| DecodeError::Invalid(what))
}

impl NodeSummary {
    /// Encodes within `max` bytes (at least 64), listing as many jobs and
    /// VIPs as fit; the totals keep counting the others.
    pub fn encode(&self, max: usize) -> Vec<u8> {
        let max = max.max(64);
        let mut w = Writer::new();
        w.u8(SUMMARY_VERSION)
            .u8(u8::from(self.policy.is_some()))
            .varint(u64::from(self.window_ms));
        if let Some(v) = self.policy {
            v.write(&mut w);
        }
        w.varint(u64::from(self.cores))
            .varint(u64::from(self.cpu_permille))
            .varint(u64::from(self.headroom_permille.min(1000)));
        let jobs_total = self.jobs_total.max(self.jobs.len() as u32);
        let vips_total = self.vips_total.max(self.vips.len() as u32);
        // Room for the two counts and list lengths (varints up to 5 bytes).
        let fixed = w.len() + 2 * (5 + 1);
        let vip_sizes: Vec<usize> = self
            .vips
            .iter()
            .take(MAX_VIPS)
            .map(|v| sized(write_vip, v))
            .collect();
        // Keep up to a quarter of the budget for VIPs so jobs cannot crowd
        // them out entirely.
        let vip_reserve = vip_sizes.iter().sum::<usize>().min(max / 4);
        let mut used = fixed;
        let mut jobs = Vec::new();
        for j in self.jobs.iter().take(MAX_JOBS) {
            let s = sized(write_job, j);
            if used + s + vip_reserve > max {
                break;
            }
            used += s;
            jobs.push(j);
        }
        let mut nv = 0;
        for s in &vip_sizes {
            if used + s > max {
                break;
            }
            used += s;
            nv += 1;
        }
        w.varint(u64::from(jobs_total)).u8(jobs.len() as u8);
        for j in jobs {
            write_job(&mut w, j);
        }
        w.varint(u64::from(vips_total)).u8(nv as u8);
        for v in &self.vips[..nv] {
            write_vip(&mut w, v);
        }
        w.into_vec()
    }

    /// Decodes a summary. Never panics.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let v = r.u8("summary version")?;
        if v != SUMMARY_VERSION && v != 1 {
            return Err(DecodeError::UnknownVersion(v));
        }
        let flags = r.u8("summary flags")?;
        if flags > 1 {
            return Err(DecodeError::Invalid("summary flags"));
        }
        let window_ms = u32_of(r.varint("window")?, "window")?;
        let policy = if flags & 1 != 0 {
            Some(VersionId::read(&mut r)?)
        } else {
            None
        };
        let cores = u32_of(r.varint("cores")?, "cores")?;
        let cpu_permille = u32_of(r.varint("cpu")?, "cpu")?;
        let headroom_permille = u32_of(r.varint("headroom")?, "headroom")?;
        if headroom_permille > 1000 {
            return Err(DecodeError::Invalid("headroom"));
        }
        let jobs_total = u32_of(r.varint("jobs total")?, "jobs total")?;
        let n = r.u8("job count")? as usize;
        if n > MAX_JOBS || n as u32 > jobs_total {
            return Err(DecodeError::Invalid("job count"));
        }
        let mut jobs = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.str8(MAX_NAME, "job name")?;
            let rx_bps = r.varint("job rx")?;
            let tx_bps = r.varint("job tx")?;
            let cpu_permille = u32_of(r.varint("job cpu")?, "job cpu")?;
            let connections = u32_of(r.varint("job connections")?, "job connections")?;
            let exits = if v >= 2 { r.varint("job exits")? } else { 0 };
            let (last_exit_pid, last_exit_comm) = if exits > 0 {
                (
                    u32_of(r.varint("job exit pid")?, "job exit pid")?,
                    r.str8(MAX_NAME, "job exit name")?,
                )
            } else {
                (0, String::new())
            };
            let pipe = match r.u8("job pipe flag")? {
                0 => None,
                1 => Some(PipeUse {
                    pipe: r.str8(MAX_NAME, "pipe name")?,
                    booked_bps: r.varint("pipe booked")?,
                    granted_bps: r.varint("pipe granted")?,
                    sent_bps: r.varint("pipe sent")?,
                    dropped_bps: r.varint("pipe dropped")?,
                }),
                _ => return Err(DecodeError::Invalid("job pipe flag")),
            };
            jobs.push(JobSummary {
                name,
                rx_bps,
                tx_bps,
                cpu_permille,
                connections,
                exits,
                last_exit_pid,
                last_exit_comm,
                pipe,
            });
        }
        let vips_total = u32_of(r.varint("vips total")?, "vips total")?;
        let n = r.u8("vip count")? as usize;
        if n > MAX_VIPS || n as u32 > vips_total {
            return Err(DecodeError::Invalid("vip count"));
        }
        let mut vips = Vec::with_capacity(n);
        for _ in 0..n {
            vips.push(VipSummary {
                name: r.str8(MAX_NAME, "vip name")?,
                placements: u32_of(r.varint("vip placements")?, "vip placements")?,
                flows: u32_of(r.varint("vip flows")?, "vip flows")?,
                health: Health::from_code(r.u8("vip health")?)?,
            });
        }
        r.finish()?;
        Ok(Self {
            window_ms,
            policy,
            cores,
            cpu_permille,
            headroom_permille,
            jobs,
            jobs_total,
            vips,
            vips_total,
        })
    }
}

/// The exchange registration for summaries: re-sent (unchanged) at the
/// low-frequency interval, at most `max` bytes.
pub fn registration(low_freq: Duration, tick: Duration, max: usize) -> Registration {
    let ticks = (low_freq.as_nanos() / tick.as_nanos().max(1)).clamp(1, u128::from(u32::MAX));
    Registration {
        period_ticks: ticks as u32,
        max_size: max,
        flags: 0,
    }
}

/// One pool member as the status model shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolNode {
    /// Node.
    pub node: NodeId,
    /// Membership state (this node is `Alive`).
    pub state: MemberState,
    /// Its summary, if one was received and decodes.
    pub summary: Option<NodeSummary>,
    /// How long ago its summary was last updated here.
    pub age: Option<Duration>,
    /// Why its summary could not be read, if it could not.
    pub error: Option<DecodeError>,
}

/// Every known member with its latest summary (failed and left members are
/// listed with their state and no summary).
pub fn pool_view(ex: &Exchange, code: u8, now: Timestamp) -> Vec<PoolNode> {
    let me = ex.node_id();
    let mut v: Vec<PoolNode> = ex
        .members()
        .map(|(n, st, _)| (n, st))
        .chain(std::iter::once((me, MemberState::Alive)))
        .map(|(node, state)| PoolNode {
            node,
            state,
            summary: None,
            age: None,
            error: None,
        })
        .collect();
    v.sort_by_key(|p| p.node);
    for e in ex.entries(code) {
        if let Ok(i) = v.binary_search_by_key(&e.node, |p| p.node) {
            let p = &mut v[i];
            p.age = Some(now.saturating_duration_since(e.updated));
            match NodeSummary::decode(e.data) {
                Ok(s) => p.summary = Some(s),
                Err(err) => p.error = Some(err),
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::version::Term;

    pub(crate) fn sample(jobs: usize, vips: usize, name_len: usize) -> NodeSummary {
        let name = |p: &str, i: usize| {
            let mut s = format!("{p}{i}-");
            while s.len() < name_len {
                s.push('x');
            }
            s.truncate(name_len);
            s
        };
        NodeSummary {
            window_ms: 2000,
            policy: Some(VersionId {
                term: Term {
                    n: 2,
                    node: 1,
                    epoch: 1_700_000_000,
                },
                seq: 41,
            }),
            cores: 8,
            cpu_permille: 625,
            headroom_permille: 375,
            jobs: (0..jobs)
                .map(|i| JobSummary {
                    name: name("job", i),
                    rx_bps: 10_000_000_000,
                    tx_bps: 9_999_999_999,
                    cpu_permille: 3_500,
                    connections: 1_000_000,
                    pipe: Some(PipeUse {
                        pipe: name("pipe", i),
                        booked_bps: 10_000_000_000,
                        granted_bps: 10_000_000_000,
                        sent_bps: 10_000_000_000,
                        dropped_bps: 10_000_000_000,
                    }),
                    ..Default::default()
                })
                .collect(),
            jobs_total: jobs as u32,
            vips: (0..vips)
                .map(|i| VipSummary {
                    name: name("vip", i),
                    placements: 100_000,
                    flows: 1_000_000,
                    health: Health::Draining,
                })
                .collect(),
            vips_total: vips as u32,
        }
    }

    #[test]
    fn roundtrip_and_stated_bound() {
        // The documented guarantee: 10 jobs in pipes + 8 VIPs, 16-byte
        // names, 10 Gbit/s rates, within the default budget.
        let s = sample(10, 8, 16);
        let b = s.encode(SUMMARY_MAX);
        assert!(b.len() <= SUMMARY_MAX, "{}", b.len());
        assert_eq!(NodeSummary::decode(&b).unwrap(), s);
        println!("10 jobs + 8 VIPs: {} bytes", b.len());
        // A typical node (4 jobs, 2 VIPs, short names) is small.
        let t = sample(4, 2, 6);
        println!("4 jobs + 2 VIPs: {} bytes", t.encode(SUMMARY_MAX).len());
        assert!(t.encode(SUMMARY_MAX).len() < 300);
        // Jobs whose processes exited carry the latest one: 8 such jobs
        // + 8 VIPs still fit (the budget lists the busiest first).
        let mut e = sample(8, 8, 16);
        for j in &mut e.jobs {
            j.exits = 1_000_000;
            j.last_exit_pid = 4_194_304;
            j.last_exit_comm = "fifteen-bytes-x".into();
        }
        let b = e.encode(SUMMARY_MAX);
        assert!(b.len() <= SUMMARY_MAX, "{}", b.len());
        assert_eq!(NodeSummary::decode(&b).unwrap(), e);
        println!("8 jobs with exits + 8 VIPs: {} bytes", b.len());
    }

    #[test]
    fn oversize_is_listed_partially_and_counted() {
        let s = sample(200, 100, 64);
        for max in [64, 300, 512, SUMMARY_MAX, 4000] {
            let b = s.encode(max);
            assert!(b.len() <= max, "{max}: {}", b.len());
            let d = NodeSummary::decode(&b).unwrap();
            assert_eq!((d.jobs_total, d.vips_total), (200, 100));
            assert!(d.jobs.len() <= MAX_JOBS && d.vips.len() <= MAX_VIPS);
            assert_eq!(d.jobs[..], s.jobs[..d.jobs.len()]);
            if max >= 512 {
                assert!(!d.vips.is_empty(), "VIPs keep a share at {max}");
            }
        }
    }

    #[test]
    fn decoder_rejects_garbage_without_panicking() {
        let b = sample(3, 2, 10).encode(SUMMARY_MAX);
        for n in 0..b.len() {
            assert!(NodeSummary::decode(&b[..n]).is_err());
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(NodeSummary::decode(&long), Err(DecodeError::Trailing));
        let mut bad = b.clone();
        bad[0] = 9;
        assert_eq!(
            NodeSummary::decode(&bad),
            Err(DecodeError::UnknownVersion(9))
        );
        super::super::tests::fuzz_bytes(&b, 20_000, 11, super::super::fuzz::summary);
    }

    #[test]
    fn version_1_still_decodes() {
        // Version 1 had no exits field: with no jobs listed the rest is
        // identical, so a version-2 encoding relabelled is a version-1 one.
        let mut s = sample(0, 2, 8);
        s.jobs_total = 0;
        let mut b = s.encode(SUMMARY_MAX);
        b[0] = 1;
        assert_eq!(NodeSummary::decode(&b).unwrap(), s);
        // A version-1 job: no exits, then the pipe flag.
        let mut w = Writer::new();
        w.u8(1).u8(0).varint(2000).varint(4).varint(0).varint(0);
        w.varint(1)
            .u8(1)
            .str8("web")
            .varint(1)
            .varint(2)
            .varint(3)
            .varint(4)
            .u8(0);
        w.varint(0).u8(0);
        let d = NodeSummary::decode(&w.into_vec()).unwrap();
        assert_eq!(
            (
                d.jobs[0].name.as_str(),
                d.jobs[0].connections,
                d.jobs[0].exits
            ),
            ("web", 4, 0)
        );
    }

    #[test]
    fn registration_period_follows_low_frequency() {
        let r = registration(Duration::from_secs(2), Duration::from_millis(20), 1024);
        assert_eq!(r.period_ticks, 100);
        assert_eq!(r.max_size, 1024);
    }
}
