//! The per-node CPU state gossiped through the information exchange.
//!
//! Every node publishes one [`PoolCpuState`]: how many cores it has and, for
//! every job with an instance on it, that instance's demand. With the entries
//! of all live nodes each node can split pool-level policies
//! (`pool_percent`, `pool_cores`) across the job's instances by itself.
//!
//! Wire format, version 1 (all integers and floats little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 2 | magic `b"HC"` |
//! | 1 | version (1) |
//! | 1 | reserved flags (0) |
//! | 4 | `cores_available`, f32 |
//! | 2 | number of jobs `n`, u16 (at most [`MAX_JOBS`]) |
//! | n x ... | per job: name length u8 (1..=64), name (UTF-8, a valid job name), `demand_cores` f32, `granted_cores` f32, flags u8 (bit 0: wants more) |
//!
//! The decoder rejects anything else (bad magic, unknown version, truncated
//! or trailing data, non-finite or negative numbers, bad names) with an
//! error; it never panics.

use headroom_config::process::validate_job_name;
use thiserror::Error;

/// Magic bytes at the start of an encoded entry.
pub const MAGIC: [u8; 2] = *b"HC";
/// Current format version.
pub const VERSION: u8 = 1;
/// Maximum number of jobs in one entry.
pub const MAX_JOBS: usize = 1024;
const FLAG_WANTS_MORE: u8 = 1;

/// Why an entry could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EntryError {
    /// The input ended before the entry was complete.
    #[error("pool cpu entry truncated at byte {0}")]
    Truncated(usize),
    /// The first two bytes are not the magic.
    #[error("pool cpu entry has bad magic")]
    BadMagic,
    /// The version byte names a format this build does not know.
    #[error("pool cpu entry version {0} is not supported (expected {VERSION})")]
    UnsupportedVersion(u8),
    /// More jobs than [`MAX_JOBS`].
    #[error("pool cpu entry lists {0} jobs, more than the maximum")]
    TooManyJobs(usize),
    /// A job name is not valid UTF-8 or not a valid job name.
    #[error("pool cpu entry has an invalid job name")]
    BadName,
    /// A number is negative, NaN or infinite.
    #[error("pool cpu entry has an invalid number in field {0}")]
    BadNumber(&'static str),
    /// Bytes remain after the last job.
    #[error("pool cpu entry has {0} trailing bytes")]
    Trailing(usize),
    /// Unknown flag bits are set.
    #[error("pool cpu entry has unknown flag bits {0:#x}")]
    BadFlags(u8),
}

/// Demand of one job's instance on one node.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDemand {
    /// Job name.
    pub job: String,
    /// CPU the instance used over the last tick, in cores.
    pub demand_cores: f32,
    /// CPU the node currently grants the instance under its policy, in cores.
    pub granted_cores: f32,
    /// The instance used (nearly) all it was granted and would take more.
    pub wants_more: bool,
}

/// What one node publishes about its CPU.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolCpuState {
    /// Number of cores the node contributes to the pool.
    pub cores_available: f32,
    /// One entry per job with at least one process on the node.
    pub jobs: Vec<JobDemand>,
}

impl PoolCpuState {
    /// Encodes the entry (see the module documentation). Jobs beyond
    /// [`MAX_JOBS`] and jobs with invalid names are left out.
    pub fn encode(&self) -> Vec<u8> {
        let jobs: Vec<&JobDemand> = self
            .jobs
            .iter()
            .filter(|j| validate_job_name(&j.job).is_ok())
            .take(MAX_JOBS)
            .collect();
        let mut out = Vec::with_capacity(10 + jobs.len() * 24);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(0);
        out.extend_from_slice(&sanitize(self.cores_available).to_le_bytes());
        out.extend_from_slice(&(jobs.len() as u16).to_le_bytes());
        for j in jobs {
            out.push(j.job.len() as u8);
            out.extend_from_slice(j.job.as_bytes());
            out.extend_from_slice(&sanitize(j.demand_cores).to_le_bytes());
            out.extend_from_slice(&sanitize(j.granted_cores).to_le_bytes());
            out.push(if j.wants_more { FLAG_WANTS_MORE } else { 0 });
        }
        out
    }

    /// Decodes an entry; never panics.
    pub fn decode(bytes: &[u8]) -> Result<PoolCpuState, EntryError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        if r.take(2)? != MAGIC {
            return Err(EntryError::BadMagic);
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(EntryError::UnsupportedVersion(version));
        }
        let flags = r.u8()?;
        if flags != 0 {
            return Err(EntryError::BadFlags(flags));
        }
        let cores_available = r.f32("cores_available")?;
        let n = r.u16()? as usize;
        if n > MAX_JOBS {
            return Err(EntryError::TooManyJobs(n));
        }
        let mut jobs = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.u8()? as usize;
            let name = std::str::from_utf8(r.take(len)?).map_err(|_| EntryError::BadName)?;
            validate_job_name(name).map_err(|_| EntryError::BadName)?;
            let demand_cores = r.f32("demand_cores")?;
            let granted_cores = r.f32("granted_cores")?;
            let flags = r.u8()?;
            if flags & !FLAG_WANTS_MORE != 0 {
                return Err(EntryError::BadFlags(flags));
            }
            jobs.push(JobDemand {
                job: name.to_string(),
                demand_cores,
                granted_cores,
                wants_more: flags & FLAG_WANTS_MORE != 0,
            });
        }
        if r.pos != bytes.len() {
            return Err(EntryError::Trailing(bytes.len() - r.pos));
        }
        Ok(PoolCpuState {
            cores_available,
            jobs,
        })
    }
}

fn sanitize(v: f32) -> f32 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        0.0
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EntryError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(EntryError::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, EntryError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, EntryError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn f32(&mut self, field: &'static str) -> Result<f32, EntryError> {
        let b = self.take(4)?;
        let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(EntryError::BadNumber(field))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> PoolCpuState {
        PoolCpuState {
            cores_available: 2.0,
            jobs: vec![
                JobDemand {
                    job: "web".into(),
                    demand_cores: 0.75,
                    granted_cores: 1.0,
                    wants_more: false,
                },
                JobDemand {
                    job: "batch-1".into(),
                    demand_cores: 1.5,
                    granted_cores: 0.5,
                    wants_more: true,
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let b = s.encode();
        assert_eq!(PoolCpuState::decode(&b).unwrap(), s);
        let empty = PoolCpuState::default();
        assert_eq!(PoolCpuState::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn rejects_garbage() {
        let b = sample().encode();
        assert_eq!(PoolCpuState::decode(&[]), Err(EntryError::Truncated(0)));
        assert_eq!(
            PoolCpuState::decode(b"XX\x01\x00"),
            Err(EntryError::BadMagic)
        );
        let mut v = b.clone();
        v[2] = 9;
        assert_eq!(
            PoolCpuState::decode(&v),
            Err(EntryError::UnsupportedVersion(9))
        );
        for cut in 0..b.len() {
            assert!(matches!(
                PoolCpuState::decode(&b[..cut]),
                Err(EntryError::Truncated(_))
            ));
        }
        let mut v = b.clone();
        v.push(0);
        assert_eq!(PoolCpuState::decode(&v), Err(EntryError::Trailing(1)));
        let mut v = b.clone();
        v[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(
            PoolCpuState::decode(&v),
            Err(EntryError::BadNumber("cores_available"))
        );
        let mut v = b.clone();
        v[11] = b'/'; // inside the first name
        assert_eq!(PoolCpuState::decode(&v), Err(EntryError::BadName));
        let mut v = b.clone();
        v[8..10].copy_from_slice(&5000u16.to_le_bytes());
        assert_eq!(PoolCpuState::decode(&v), Err(EntryError::TooManyJobs(5000)));
    }

    #[test]
    fn encode_skips_invalid_and_sanitizes() {
        let s = PoolCpuState {
            cores_available: f32::INFINITY,
            jobs: vec![JobDemand {
                job: "bad/name".into(),
                demand_cores: 1.0,
                granted_cores: 1.0,
                wants_more: false,
            }],
        };
        let d = PoolCpuState::decode(&s.encode()).unwrap();
        assert_eq!(d.cores_available, 0.0);
        assert!(d.jobs.is_empty());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = PoolCpuState::decode(&bytes);
        }

        #[test]
        fn decode_mutations_never_panic(idx in 0usize..40, val in any::<u8>()) {
            let mut b = sample().encode();
            let i = idx % b.len();
            b[i] = val;
            let _ = PoolCpuState::decode(&b);
        }
    }
}
