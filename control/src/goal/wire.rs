//! What each node publishes for the goal loop, and its wire form (an
//! exchange entry, once per low-frequency period).
//!
//! ```text
//! version u8 (1) | node v | window v | busy_permille v | n u8 | job * n
//! job = name str8 | cpu_permille v | used_permille v | wait_permille v | flags u8 (0x01 pipe)
//!       | [pipe str8 | sent_bps v | dropped_bps v] | hist_len v | histogram
//! v = LEB128 varint, str8 = u8 length + UTF-8, histogram = headroom-latency's wire form
//! ```
//!
//! [`NodeReport::encode`] keeps the entry within a byte budget: each job's
//! histogram gets an equal share of what the fixed fields leave and is
//! coarsened to fit ([`Histogram::encode_within`]); jobs that do not fit at
//! all are left out (listed first = kept first: the daemon puts goal jobs
//! first). Sizes measured by the tests: a job whose times spread ±10 %
//! around 20 ms takes about 40 bytes, one spread evenly over 1-9 ms about
//! 230 bytes at full resolution.

use headroom_latency::Histogram;

use super::NodeId;

/// Entry version.
pub const VERSION: u8 = 1;
/// Default byte budget of one node's entry.
pub const REPORT_MAX: usize = 1024;
/// Most jobs in one entry.
pub const MAX_JOBS: usize = 64;
/// Longest name carried.
pub const MAX_NAME: usize = 64;

/// A job's pipe use on the node over the window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PipeReport {
    /// Pipe name.
    pub pipe: String,
    /// Rate sent, bit/s.
    pub sent_bps: u64,
    /// Rate the pacer dropped, bit/s.
    pub dropped_bps: u64,
}

/// One job on one node over the node's last window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobReport {
    /// Job name.
    pub job: String,
    /// Response times measured in the window (all workers merged).
    pub response: Histogram,
    /// CPU share in force on the node, percent of the node.
    pub cpu_percent: f64,
    /// CPU used over the window, percent of the node.
    pub cpu_used_percent: f64,
    /// Time the job's runnable tasks waited for a CPU over the window,
    /// percent of the window (the run delay of `/proc/PID/schedstat`,
    /// summed over its tasks): contention a larger share relieves.
    pub cpu_wait_percent: f64,
    /// Its pipe, if it is in one.
    pub pipe: Option<PipeReport>,
}

/// One node's report for a period.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeReport {
    /// Node id.
    pub node: NodeId,
    /// The node's window number (increments per window; a repeat is stale).
    pub window: u64,
    /// CPU used on the node by everything, percent.
    pub cpu_busy_percent: f64,
    /// Jobs.
    pub jobs: Vec<JobReport>,
}

/// Why bytes are not a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Ends inside a field.
    #[error("goal report truncated")]
    Truncated,
    /// Unknown version.
    #[error("goal report version {0} is not {VERSION}")]
    Version(u8),
    /// A varint overflows or a field is out of range.
    #[error("goal report field {0} is invalid")]
    Invalid(&'static str),
    /// A histogram does not decode.
    #[error("goal report histogram: {0}")]
    Histogram(#[from] headroom_latency::DecodeError),
    /// Bytes after the last job.
    #[error("goal report has trailing bytes")]
    Trailing,
}

fn put_v(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(MAX_NAME);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.push(end as u8);
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn permille(p: f64) -> u64 {
    if p.is_finite() && p > 0.0 {
        (p * 10.0).round().min(1e9) as u64
    } else {
        0
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, WireError> {
        let (&b, rest) = self.0.split_first().ok_or(WireError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }
    fn v(&mut self, what: &'static str) -> Result<u64, WireError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && bits > 1 {
                return Err(WireError::Invalid(what));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError::Invalid(what))
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn str(&mut self, what: &'static str) -> Result<String, WireError> {
        let n = usize::from(self.u8()?);
        let b = self.bytes(n)?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| WireError::Invalid(what))
    }
}

impl NodeReport {
    /// The wire form within `budget` bytes (see the module docs).
    pub fn encode(&self, budget: usize) -> Vec<u8> {
        let mut out = vec![VERSION];
        put_v(&mut out, u64::from(self.node));
        put_v(&mut out, self.window);
        put_v(&mut out, permille(self.cpu_busy_percent));
        let count_at = out.len();
        out.push(0);
        let jobs = &self.jobs[..self.jobs.len().min(MAX_JOBS)];
        let mut n = 0u8;
        for (i, j) in jobs.iter().enumerate() {
            let mut fixed = Vec::new();
            put_str(&mut fixed, &j.job);
            put_v(&mut fixed, permille(j.cpu_percent));
            put_v(&mut fixed, permille(j.cpu_used_percent));
            put_v(&mut fixed, permille(j.cpu_wait_percent));
            match &j.pipe {
                Some(p) => {
                    fixed.push(1);
                    put_str(&mut fixed, &p.pipe);
                    put_v(&mut fixed, p.sent_bps);
                    put_v(&mut fixed, p.dropped_bps);
                }
                None => fixed.push(0),
            }
            let left = budget.saturating_sub(out.len() + fixed.len() + 2);
            let share = left / (jobs.len() - i);
            let mut h = Vec::new();
            if j.response.encode_within(share, &mut h).is_none() {
                continue;
            }
            out.extend_from_slice(&fixed);
            put_v(&mut out, h.len() as u64);
            out.extend_from_slice(&h);
            n += 1;
        }
        out[count_at] = n;
        out
    }

    /// Parses an entry (all of `bytes`).
    pub fn decode(bytes: &[u8]) -> Result<NodeReport, WireError> {
        let mut r = Reader(bytes);
        let v = r.u8()?;
        if v != VERSION {
            return Err(WireError::Version(v));
        }
        let node = u32::try_from(r.v("node")?).map_err(|_| WireError::Invalid("node"))?;
        let window = r.v("window")?;
        let busy = r.v("busy")? as f64 / 10.0;
        let n = r.u8()?;
        if usize::from(n) > MAX_JOBS {
            return Err(WireError::Invalid("job count"));
        }
        let mut jobs = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let job = r.str("job name")?;
            let cpu_percent = r.v("cpu")? as f64 / 10.0;
            let cpu_used_percent = r.v("cpu used")? as f64 / 10.0;
            let cpu_wait_percent = r.v("cpu wait")? as f64 / 10.0;
            let pipe = match r.u8()? {
                0 => None,
                1 => Some(PipeReport {
                    pipe: r.str("pipe name")?,
                    sent_bps: r.v("sent")?,
                    dropped_bps: r.v("dropped")?,
                }),
                _ => return Err(WireError::Invalid("flags")),
            };
            let len = usize::try_from(r.v("histogram length")?)
                .map_err(|_| WireError::Invalid("histogram length"))?;
            let response = Histogram::decode(r.bytes(len)?)?;
            jobs.push(JobReport {
                job,
                response,
                cpu_percent,
                cpu_used_percent,
                cpu_wait_percent,
                pipe,
            });
        }
        if !r.0.is_empty() {
            return Err(WireError::Trailing);
        }
        Ok(NodeReport {
            node,
            window,
            cpu_busy_percent: busy,
            jobs,
        })
    }
}

/// The fuzz target's body (also run by the unit tests over random input):
/// decodes; whatever decodes re-encodes (with room) to the same report.
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(r) = NodeReport::decode(data) {
        let again = NodeReport::decode(&r.encode(usize::MAX)).expect("re-encoded report decodes");
        assert_eq!(again.node, r.node);
        assert_eq!(again.jobs.len(), r.jobs.len());
        for (a, b) in again.jobs.iter().zip(&r.jobs) {
            assert_eq!(a.response.count(), b.response.count());
            assert_eq!(a.job, b.job);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, center_us: u64, spread: u64, n: u64) -> JobReport {
        let mut h = Histogram::new();
        let mut x = 7u64;
        for _ in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record_us(center_us - spread + (x >> 33) % (2 * spread));
        }
        JobReport {
            job: name.into(),
            response: h,
            cpu_percent: 42.5,
            cpu_used_percent: 40.1,
            cpu_wait_percent: 12.5,
            pipe: None,
        }
    }

    #[test]
    fn round_trip_budget_and_errors() {
        let mut r = NodeReport {
            node: 17,
            window: 99,
            cpu_busy_percent: 93.2,
            jobs: vec![
                job("web", 20_000, 2_000, 500),
                job("api", 5_000, 4_000, 2000),
            ],
        };
        r.jobs[1].pipe = Some(PipeReport {
            pipe: "uplink".into(),
            sent_bps: 10_000_000,
            dropped_bps: 1234,
        });
        let b = r.encode(REPORT_MAX);
        // web (±10 % around 20 ms) about 40 bytes, api (1-9 ms) about 230.
        assert!(b.len() < 320, "{} bytes", b.len());
        assert_eq!(NodeReport::decode(&b).unwrap(), r);
        // A tight budget coarsens the histograms but keeps the counts.
        let small = r.encode(60);
        assert!(small.len() <= 60, "{}", small.len());
        let d = NodeReport::decode(&small).unwrap();
        assert!(!d.jobs.is_empty());
        for (a, b) in d.jobs.iter().zip(&r.jobs) {
            assert_eq!((&a.job, a.response.count()), (&b.job, b.response.count()));
        }
        // Nothing fits 20 bytes but the header.
        assert!(NodeReport::decode(&r.encode(20)).unwrap().jobs.is_empty());
        assert_eq!(NodeReport::decode(&[]), Err(WireError::Truncated));
        assert_eq!(NodeReport::decode(&[2]), Err(WireError::Version(2)));
        let mut t = b.clone();
        t.push(0);
        assert_eq!(NodeReport::decode(&t), Err(WireError::Trailing));
        assert!(NodeReport::decode(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn fuzz_body_over_random_input() {
        let good = NodeReport {
            node: 1,
            window: 1,
            cpu_busy_percent: 50.0,
            jobs: vec![job("w", 1000, 100, 10)],
        }
        .encode(REPORT_MAX);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..300 {
            let mut data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            fuzz_decode(&data);
            if !data.is_empty() {
                data[0] = VERSION;
            }
            fuzz_decode(&data);
            let mut m = good.clone();
            let i = (x as usize) % m.len();
            m[i] = x.rotate_left(8) as u8;
            fuzz_decode(&m);
        }
    }
}
