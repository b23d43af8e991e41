//! A weighted histogram with logarithmic buckets, for percentiles of stored points.
//!
//! Bucket `i` holds values in `(gamma^(i-1), gamma^i]` with `gamma = (1 + a) / (1 - a)`, and a
//! quantile is answered with the bucket's midpoint `2 gamma^i / (gamma + 1)`: its relative
//! error is at most `a` ([`ACCURACY`] = 1 %), whatever the range of values (the DDSketch
//! construction). Weights are real numbers so the same type serves plain histograms (weight =
//! seconds observed) and decaying ones (weight halved per half-life of age). Hand-written
//! because the sketch crates count integers and cannot weight or decay.

use std::collections::BTreeMap;

/// Relative accuracy of every quantile.
pub const ACCURACY: f64 = 0.01;

/// Values at or below this are counted as zero.
const ZERO: f64 = 1e-9;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Histogram {
    ln_gamma: f64,
    gamma: f64,
    buckets: BTreeMap<i32, f64>,
    zero: f64,
    total: f64,
    sum_sq: f64,
    samples: u64,
    min: f64,
    max: f64,
    weighted_sum: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram with [`ACCURACY`].
    pub fn new() -> Self {
        let gamma = (1.0 + ACCURACY) / (1.0 - ACCURACY);
        Histogram {
            ln_gamma: gamma.ln(),
            gamma,
            buckets: BTreeMap::new(),
            zero: 0.0,
            total: 0.0,
            sum_sq: 0.0,
            samples: 0,
            min: f64::INFINITY,
            max: 0.0,
            weighted_sum: 0.0,
        }
    }

    /// Adds value `v` with weight `w` (non-finite or negative values count as zero).
    pub fn add(&mut self, v: f64, w: f64) {
        if !(w.is_finite() && w > 0.0) {
            return;
        }
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        if v <= ZERO {
            self.zero += w;
        } else {
            let i = (v.ln() / self.ln_gamma).ceil() as i32;
            *self.buckets.entry(i).or_insert(0.0) += w;
        }
        self.total += w;
        self.sum_sq += w * w;
        self.samples += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.weighted_sum += v * w;
    }

    /// Values added.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Total weight.
    pub fn total_weight(&self) -> f64 {
        self.total
    }

    /// Effective number of samples, `(sum w)^2 / sum w^2` (equals `samples` with equal weights).
    pub fn effective_samples(&self) -> f64 {
        if self.sum_sq == 0.0 {
            0.0
        } else {
            self.total * self.total / self.sum_sq
        }
    }

    /// Largest value added (exact).
    pub fn max(&self) -> f64 {
        self.max
    }

    /// Weighted mean (exact).
    pub fn mean(&self) -> f64 {
        if self.total == 0.0 {
            0.0
        } else {
            self.weighted_sum / self.total
        }
    }

    /// The `q` quantile (0..=1), within [`ACCURACY`] of a true value and never outside the
    /// smallest and largest values added; None when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.total;
        let mut acc = self.zero;
        if acc >= rank && self.zero > 0.0 {
            return Some(0.0);
        }
        for (&i, &w) in &self.buckets {
            acc += w;
            if acc >= rank {
                // Never outside the values seen: exact for a constant series.
                let v = 2.0 * self.gamma.powi(i) / (self.gamma + 1.0);
                return Some(v.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Share of the weight with values at or below `v` (buckets straddling `v` count as
    /// below when their midpoint is).
    pub fn fraction_at_or_below(&self, v: f64) -> f64 {
        if self.total <= 0.0 {
            return 0.0;
        }
        let mut acc = self.zero;
        for (&i, &w) in &self.buckets {
            if 2.0 * self.gamma.powi(i) / (self.gamma + 1.0) > v * (1.0 + 1e-12) {
                break;
            }
            acc += w;
        }
        acc / self.total
    }
}

/// Weight of a point `age_secs` old with a half-life (None: no decay).
pub fn decay_weight(age_secs: f64, half_life_secs: Option<f64>) -> f64 {
    match half_life_secs {
        Some(h) if h > 0.0 => (-(age_secs.max(0.0)) / h * std::f64::consts::LN_2).exp(),
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_accuracy() {
        let mut h = Histogram::new();
        for i in 1..=10_000 {
            h.add(i as f64, 1.0);
        }
        for q in [0.5, 0.9, 0.95, 0.99] {
            let got = h.quantile(q).unwrap();
            let want = q * 10_000.0;
            assert!(
                (got - want).abs() / want <= ACCURACY + 1e-3,
                "q{q}: {got} vs {want}"
            );
        }
        assert_eq!(h.max(), 10_000.0);
        assert!((h.mean() - 5000.5).abs() < 1e-9);
        assert!((h.effective_samples() - 10_000.0).abs() < 1e-6);
        assert!((h.fraction_at_or_below(5000.0) - 0.5).abs() < 0.01);
        assert_eq!(Histogram::new().quantile(0.5), None);
    }

    #[test]
    fn zeros_weights_and_decay() {
        let mut h = Histogram::new();
        h.add(0.0, 3.0);
        h.add(100.0, 1.0);
        assert_eq!(h.quantile(0.5), Some(0.0));
        assert!((h.quantile(0.9).unwrap() - 100.0).abs() <= 1.0);
        h.add(f64::NAN, 1.0);
        h.add(5.0, -1.0);
        assert_eq!(h.samples(), 3);
        assert!((decay_weight(3600.0, Some(3600.0)) - 0.5).abs() < 1e-12);
        assert_eq!(decay_weight(1e9, None), 1.0);
        let mut d = Histogram::new();
        d.add(1.0, 1.0);
        d.add(1.0, 1.0);
        d.add(2.0, 2.0);
        assert!((d.effective_samples() - 16.0 / 6.0).abs() < 1e-12);
    }
}
