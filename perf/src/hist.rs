//! Fixed-size log-linear latency histogram (8 sub-buckets per power of two,
//! 12.5% resolution); the same bucketing as the sink XDP program.

/// Number of buckets.
pub const BUCKETS: usize = 512;

/// Bucket index of a value (ns).
#[inline]
pub fn bucket(v: u64) -> usize {
    if v < 8 {
        return v as usize;
    }
    let b = 63 - v.leading_zeros() as usize;
    ((b - 2) * 8 + ((v >> (b - 3)) & 7) as usize).min(BUCKETS - 1)
}

/// Lowest value that falls into bucket `i`.
pub fn bucket_low(i: usize) -> u64 {
    if i < 8 {
        return i as u64;
    }
    let b = i / 8 + 2;
    let sub = (i % 8) as u64;
    (8 + sub) << (b - 3)
}

/// Latency histogram; recording never allocates.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    /// Records one value.
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.total += 1;
        if v > self.max {
            self.max = v;
        }
    }
    /// Adds bucket counts from elsewhere (e.g. the kernel histogram).
    pub fn add_bucket(&mut self, i: usize, n: u64) {
        if i < BUCKETS && n > 0 {
            self.counts[i] += n;
            self.total += n;
            self.max = self.max.max(bucket_low(i + 1).saturating_sub(1));
        }
    }
    /// Merges another histogram.
    pub fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += b;
        }
        self.total += o.total;
        self.max = self.max.max(o.max);
    }
    /// Number of values.
    pub fn count(&self) -> u64 {
        self.total
    }
    /// Largest value (bucket upper bound when merged from buckets).
    pub fn max(&self) -> u64 {
        self.max
    }
    /// Quantile `q` in [0, 1] (bucket midpoint), 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let target = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= target {
                let lo = bucket_low(i);
                let hi = bucket_low(i + 1);
                return ((lo + hi) / 2).min(self.max.max(lo));
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            100,
            1000,
            123_456,
            10_000_000,
            u64::MAX / 2,
        ] {
            let b = bucket(v);
            assert!(b >= last);
            last = b;
            assert!(bucket_low(b) <= v, "v={v} b={b}");
            if b + 1 < BUCKETS {
                assert!(bucket_low(b + 1) > v, "v={v} b={b}");
            }
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.13, "{p50}");
        assert_eq!(h.max(), 1_000_000);
    }
}
