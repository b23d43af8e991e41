//! Response-time histograms.
//!
//! One [`Histogram`] per job and worker holds **cumulative** counts of
//! response times in fixed log-linear buckets: the workers fill it without
//! allocating, publish copies with their normal cumulative reports, and the
//! control plane subtracts two copies for a window ([`Histogram::since`]),
//! adds the workers' and the nodes' windows ([`Histogram::merge`]) and asks
//! for quantiles, means and the share within a bound. The same type goes to
//! the pool summaries and the history store in a compact wire form
//! ([`Histogram::encode`], [`Histogram::encode_within`], [`Histogram::decode`]).
//!
//! # Buckets and resolution
//! Values are recorded in microseconds. Below 64 µs every microsecond has
//! its bucket; above, every power of two is split into [`SUB`] = 32 equal
//! sub-buckets, so a bucket is at most 1/32 (3.1 %) of its lower bound wide,
//! up to 2^27 µs (134 s): [`BUCKETS`] = 736 buckets, 5.9 KB. Quantiles are
//! interpolated linearly inside their bucket, so a quantile is off by less
//! than one bucket width: at 20 ms the buckets are 512 µs wide (20 ms is
//! known within 0.5 ms, typically 0.26 ms), at 50 ms 1 ms wide. Values at or
//! above 134 s land in the last bucket.
//!
//! The history crate's weighted sketch (`history::hist`) answers quantiles
//! of stored points; this type counts events exactly and merges by addition,
//! which is what cumulative worker reports need.

use std::time::Duration;

/// Sub-buckets per power of two (the resolution: 1/32 of the value).
pub const SUB: usize = 32;
const SUB_BITS: u32 = 5;
/// Values below this (µs) have one bucket each.
const LINEAR: u64 = 2 * SUB as u64;
/// First power of two past the range: values >= 2^27 µs go to the last bucket.
const TOP_OCTAVE: u32 = 27;
/// Number of buckets.
pub const BUCKETS: usize = LINEAR as usize + (TOP_OCTAVE - SUB_BITS - 1) as usize * SUB;

/// Wire format version.
pub const WIRE_VERSION: u8 = 1;
/// Largest coarsening [`Histogram::encode_within`] applies (one bucket per
/// power of two).
pub const MAX_SHIFT: u8 = SUB_BITS as u8;

/// Bucket index of `us` microseconds.
#[inline]
pub fn bucket_of(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let e = 63 - us.leading_zeros();
    if e >= TOP_OCTAVE {
        return BUCKETS - 1;
    }
    LINEAR as usize
        + (e - SUB_BITS - 1) as usize * SUB
        + ((us >> (e - SUB_BITS)) as usize & (SUB - 1))
}

/// Lowest value (µs) of bucket `i` (`i` may be [`BUCKETS`]: the range's end).
#[inline]
pub fn bucket_low(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let k = i - LINEAR as usize;
    let e = (k / SUB) as u32 + SUB_BITS + 1;
    ((SUB + k % SUB) as u64) << (e - SUB_BITS)
}

/// Width (µs) of bucket `i`.
#[inline]
pub fn bucket_width(i: usize) -> u64 {
    bucket_low(i + 1) - bucket_low(i)
}

/// Cumulative response-time counts in fixed buckets (see the crate docs).
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    count: u64,
    sum_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = |q| self.quantile(q).map(|d| d.as_micros());
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("mean_us", &self.mean().map(|d| d.as_micros()))
            .field("p50_us", &q(0.5))
            .field("p90_us", &q(0.9))
            .field("p99_us", &q(0.99))
            .finish()
    }
}

/// Why bytes are not a histogram.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end inside a field.
    #[error("histogram truncated")]
    Truncated,
    /// The version byte is not [`WIRE_VERSION`].
    #[error("histogram wire version {0} is not {WIRE_VERSION}")]
    Version(u8),
    /// The coarsening is beyond [`MAX_SHIFT`].
    #[error("histogram coarsening {0} is beyond {MAX_SHIFT}")]
    Shift(u8),
    /// A varint is longer than 10 bytes or overflows.
    #[error("histogram varint overflows")]
    Varint,
    /// A bucket index is past the last bucket, or repeats.
    #[error("histogram bucket index out of range")]
    Index,
    /// A run has a zero count, or the counts do not add up to the total.
    #[error("histogram counts are inconsistent")]
    Counts,
}

impl Histogram {
    /// An empty histogram (allocates its 5.9 KB of buckets).
    pub fn new() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            count: 0,
            sum_us: 0,
        }
    }

    /// Records one response time. Never allocates.
    #[inline]
    pub fn record(&mut self, d: Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one response time of `ns` nanoseconds.
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        self.record_us(ns / 1000);
    }

    /// Records one response time of `us` microseconds.
    #[inline]
    pub fn record_us(&mut self, us: u64) {
        self.counts[bucket_of(us)] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sum of the values, µs (saturating).
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    /// Count of bucket `i`.
    pub fn bucket(&self, i: usize) -> u64 {
        self.counts.get(i).copied().unwrap_or(0)
    }

    /// Non-empty buckets as (index, count).
    pub fn buckets(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (i, n))
    }

    /// Adds `other`'s counts (workers of a node, nodes of a pool).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    /// The values recorded since `earlier`, a previous copy of the same
    /// cumulative histogram. If any count went down the source restarted
    /// (a worker or node restart): everything it holds is new.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let reset = self.count < earlier.count
            || self
                .counts
                .iter()
                .zip(earlier.counts.iter())
                .any(|(a, b)| a < b);
        if reset {
            return self.clone();
        }
        let mut d = Histogram::new();
        for ((o, a), b) in d
            .counts
            .iter_mut()
            .zip(self.counts.iter())
            .zip(earlier.counts.iter())
        {
            *o = a - b;
        }
        d.count = self.count - earlier.count;
        d.sum_us = self.sum_us.saturating_sub(earlier.sum_us);
        d
    }

    /// Empties the histogram (keeps its allocation).
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.count = 0;
        self.sum_us = 0;
    }

    /// Mean of the values; None when empty.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| {
            let ns = u128::from(self.sum_us) * 1000 / u128::from(self.count);
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
        })
    }

    /// The `q` quantile (0..=1), interpolated inside its bucket: less than
    /// one bucket width (1/32 of the value) from a recorded value's rank.
    /// None when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_finite() {
            q.clamp(0.0, 1.0)
        } else {
            0.5
        };
        // The rank as a continuous position: the k-th value of n sits at
        // (k - 0.5) / n, so a bucket's values are spread evenly across it.
        let pos = q * self.count as f64;
        let mut below = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (below + n) as f64 >= pos {
                let frac = ((pos - below as f64) / n as f64).clamp(0.0, 1.0);
                let us = bucket_low(i) as f64 + frac * bucket_width(i) as f64;
                return Some(Duration::from_nanos((us * 1000.0) as u64));
            }
            below += n;
        }
        Some(Duration::from_micros(bucket_low(BUCKETS)))
    }

    /// Share (0..=1) of the values at or below `bound`, interpolated inside
    /// the bucket that straddles it. 0 when empty.
    pub fn fraction_within(&self, bound: Duration) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let b = bound.as_nanos() as f64 / 1000.0;
        let mut within = 0.0;
        for (i, &n) in self.counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let lo = bucket_low(i) as f64;
            let hi = bucket_low(i + 1) as f64;
            if hi <= b {
                within += n as f64;
            } else if lo < b {
                within += n as f64 * (b - lo) / (hi - lo);
            } else {
                break;
            }
        }
        (within / self.count as f64).clamp(0.0, 1.0)
    }

    /// Appends the full-resolution wire form to `out`:
    ///
    /// ```text
    /// version u8 (1) | shift u8 | count v | sum_us v | (gap v | n v)*
    /// v = LEB128 varint; gap = index - previous index - 1 (first: index);
    /// indices count buckets of 2^shift fine buckets (0 = full resolution)
    /// ```
    ///
    /// Empty buckets cost nothing: a 20 ms job spread over ±10 % takes about
    /// 25 bytes, an exponential spread around 20 ms about 250.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_shift(0, out);
    }

    /// Appends the wire form at the finest resolution that fits `budget`
    /// bytes: sub-buckets are merged in pairs (`shift` = 1..=5, halving the
    /// resolution each time) until it fits. Returns the shift used, or None
    /// (nothing appended) if even one bucket per power of two does not fit.
    /// A decoded coarse histogram puts each coarse bucket's count in the
    /// middle of its range: quantiles are then within half a coarse bucket.
    pub fn encode_within(&self, budget: usize, out: &mut Vec<u8>) -> Option<u8> {
        let start = out.len();
        for shift in 0..=MAX_SHIFT {
            self.encode_shift(shift, out);
            if out.len() - start <= budget {
                return Some(shift);
            }
            out.truncate(start);
        }
        None
    }

    fn encode_shift(&self, shift: u8, out: &mut Vec<u8>) {
        out.push(WIRE_VERSION);
        out.push(shift);
        put_varint(out, self.count);
        put_varint(out, self.sum_us);
        let group = 1usize << shift;
        let mut prev: Option<usize> = None;
        for (j, chunk) in self.counts.chunks(group).enumerate() {
            let n: u64 = chunk.iter().sum();
            if n == 0 {
                continue;
            }
            put_varint(out, (j - prev.map_or(0, |p| p + 1)) as u64);
            put_varint(out, n);
            prev = Some(j);
        }
    }

    /// Parses the wire form (all of `bytes`). Never panics; rejects
    /// unknown versions, out-of-range indices and counts that do not add up.
    pub fn decode(bytes: &[u8]) -> Result<Histogram, DecodeError> {
        let mut r = bytes;
        let version = take_u8(&mut r)?;
        if version != WIRE_VERSION {
            return Err(DecodeError::Version(version));
        }
        let shift = take_u8(&mut r)?;
        if shift > MAX_SHIFT {
            return Err(DecodeError::Shift(shift));
        }
        let mut h = Histogram::new();
        h.count = take_varint(&mut r)?;
        h.sum_us = take_varint(&mut r)?;
        let group = 1usize << shift;
        let groups = BUCKETS.div_ceil(group);
        let mut next = 0usize;
        let mut total = 0u64;
        while !r.is_empty() {
            let gap = take_varint(&mut r)?;
            let j = usize::try_from(gap)
                .ok()
                .and_then(|g| next.checked_add(g))
                .filter(|&j| j < groups)
                .ok_or(DecodeError::Index)?;
            let n = take_varint(&mut r)?;
            if n == 0 {
                return Err(DecodeError::Counts);
            }
            total = total.checked_add(n).ok_or(DecodeError::Counts)?;
            let fine = (j * group + group / 2).min(BUCKETS - 1);
            h.counts[fine] += n;
            next = j + 1;
        }
        if total != h.count {
            return Err(DecodeError::Counts);
        }
        Ok(h)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
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

fn take_u8(r: &mut &[u8]) -> Result<u8, DecodeError> {
    let (&b, rest) = r.split_first().ok_or(DecodeError::Truncated)?;
    *r = rest;
    Ok(b)
}

fn take_varint(r: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = take_u8(r)?;
        let bits = u64::from(b & 0x7f);
        if i == 9 && bits > 1 {
            return Err(DecodeError::Varint);
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError::Varint)
}

/// The fuzz target's body (also run by the unit tests over random input):
/// decodes `data`; whatever decodes re-encodes at its own resolution and
/// decodes to the same histogram. Panics only on a bug.
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(h) = Histogram::decode(data) {
        let shift = data[1];
        let mut out = Vec::new();
        h.encode_shift(shift, &mut out);
        let again = Histogram::decode(&out).expect("re-encoded histogram decodes");
        assert_eq!(again.count(), h.count());
        assert_eq!(again.sum_us(), h.sum_us());
        let _ = h.quantile(0.5);
        let _ = h.mean();
        let _ = h.fraction_within(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests;
