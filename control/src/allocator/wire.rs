//! The bandwidth entry a node gossips every interval: its demand on every
//! pipe. Pipes and jobs travel by name, because job ids are local to a node
//! (they depend on its reload history); each receiver maps names back to its
//! own ids and keeps unknown jobs in the totals only.
//!
//! ```text
//! u8  version (1)
//! u8  pipe count
//! per pipe:
//!   u8 name length, name bytes
//!   u64 booked, u64 unbooked        (little endian, bytes per interval)
//!   u8  job count
//!   per job: u8 name length, name bytes, u64 booked, u64 want
//! ```

use super::{JobWant, NodePipeDemand};

/// Wire format version.
pub const VERSION: u8 = 1;

/// Why an entry was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The entry ended before a field it announced.
    #[error("entry truncated")]
    Truncated,
    /// A version this node does not speak.
    #[error("unknown entry version {0}")]
    Version(u8),
    /// A name is not UTF-8.
    #[error("name is not UTF-8")]
    BadName,
    /// Bytes follow the last pipe.
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// One pipe's demand with its job details by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PipeEntry {
    /// Pipe name.
    pub pipe: String,
    /// Booked demand, bytes per interval.
    pub booked: u64,
    /// Unbooked demand.
    pub unbooked: u64,
    /// Per-job detail: (job name, booked, want).
    pub jobs: Vec<(String, u64, u64)>,
}

impl PipeEntry {
    /// Builds the entry from a demand whose job ids `name_of` can name (jobs
    /// it cannot name are left out of the detail but stay in the totals).
    pub fn from_demand<'a>(
        pipe: &str,
        d: &NodePipeDemand,
        name_of: impl Fn(u16) -> Option<&'a str>,
    ) -> Self {
        PipeEntry {
            pipe: pipe.to_string(),
            booked: d.booked,
            unbooked: d.unbooked,
            jobs: d
                .jobs
                .iter()
                .filter_map(|w| Some((name_of(w.job)?.to_string(), w.booked, w.want)))
                .collect(),
        }
    }

    /// The demand in local job ids (`id_of` maps names; unknown jobs are
    /// dropped from the detail, their bytes stay in the totals).
    pub fn to_demand(&self, id_of: impl Fn(&str) -> Option<u16>) -> NodePipeDemand {
        NodePipeDemand {
            booked: self.booked,
            unbooked: self.unbooked,
            jobs: self
                .jobs
                .iter()
                .filter_map(|(n, b, w)| {
                    Some(JobWant {
                        job: id_of(n)?,
                        booked: *b,
                        want: *w,
                    })
                })
                .collect(),
        }
    }
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    let b = name.as_bytes();
    let n = b.len().min(255);
    out.push(n as u8);
    out.extend_from_slice(&b[..n]);
}

/// Encodes pipe entries (at most 255 pipes and 255 jobs each are kept).
pub fn encode(pipes: &[PipeEntry]) -> Vec<u8> {
    let mut out = vec![VERSION, pipes.len().min(255) as u8];
    for p in pipes.iter().take(255) {
        put_name(&mut out, &p.pipe);
        out.extend_from_slice(&p.booked.to_le_bytes());
        out.extend_from_slice(&p.unbooked.to_le_bytes());
        out.push(p.jobs.len().min(255) as u8);
        for (n, b, w) in p.jobs.iter().take(255) {
            put_name(&mut out, n);
            out.extend_from_slice(&b.to_le_bytes());
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    out
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(WireError::Truncated);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn name(&mut self) -> Result<String, WireError> {
        let n = self.u8()? as usize;
        std::str::from_utf8(self.take(n)?)
            .map(str::to_string)
            .map_err(|_| WireError::BadName)
    }
}

/// Decodes an entry; never panics on any input.
pub fn decode(bytes: &[u8]) -> Result<Vec<PipeEntry>, WireError> {
    let mut r = Reader { b: bytes };
    let v = r.u8()?;
    if v != VERSION {
        return Err(WireError::Version(v));
    }
    let np = r.u8()?;
    let mut out = Vec::with_capacity(np as usize);
    for _ in 0..np {
        let pipe = r.name()?;
        let booked = r.u64()?;
        let unbooked = r.u64()?;
        let nj = r.u8()?;
        let mut jobs = Vec::with_capacity(nj as usize);
        for _ in 0..nj {
            let n = r.name()?;
            let b = r.u64()?;
            let w = r.u64()?;
            jobs.push((n, b, w));
        }
        out.push(PipeEntry {
            pipe,
            booked,
            unbooked,
            jobs,
        });
    }
    if !r.b.is_empty() {
        return Err(WireError::Trailing(r.b.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> Vec<PipeEntry> {
        vec![
            PipeEntry {
                pipe: "uplink".into(),
                booked: 30_000,
                unbooked: 12_345,
                jobs: vec![
                    ("gold".into(), 30_000, 30_000),
                    ("bronze".into(), 0, 12_345),
                ],
            },
            PipeEntry {
                pipe: "backup".into(),
                booked: 0,
                unbooked: 0,
                jobs: vec![],
            },
        ]
    }

    #[test]
    fn round_trip() {
        let e = sample();
        assert_eq!(decode(&encode(&e)).unwrap(), e);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = encode(&sample());
        for n in 0..b.len() {
            assert_eq!(decode(&b[..n]), Err(WireError::Truncated), "prefix {n}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(WireError::Trailing(1)));
        let mut v2 = b;
        v2[0] = 9;
        assert_eq!(decode(&v2), Err(WireError::Version(9)));
    }

    #[test]
    fn names_map_to_local_ids() {
        let d = NodePipeDemand {
            booked: 10,
            unbooked: 5,
            jobs: vec![
                JobWant {
                    job: 3,
                    booked: 10,
                    want: 12,
                },
                JobWant {
                    job: 9,
                    booked: 0,
                    want: 3,
                },
            ],
        };
        let names = |j: u16| match j {
            3 => Some("gold"),
            9 => Some("x"),
            _ => None,
        };
        let e = PipeEntry::from_demand("uplink", &d, names);
        // The receiver knows "gold" as id 1 and has never heard of "x".
        let back = e.to_demand(|n| (n == "gold").then_some(1));
        assert_eq!(back.booked, 10);
        assert_eq!(back.unbooked, 5);
        assert_eq!(
            back.jobs,
            vec![JobWant {
                job: 1,
                booked: 10,
                want: 12
            }]
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&b);
        }
    }
}
