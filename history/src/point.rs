//! Stored points and the resolution tiers they live in.

use serde::{Deserialize, Serialize};

/// One stored point: what happened in one interval of a tier.
///
/// `count` is the number of seconds observed in the interval; `sum` is the integral of the
/// value over them (for a counter: the amount, e.g. bytes sent; for a gauge sampled once a
/// second: the sum of the samples). The mean, `sum / count`, is the rate of a counter or the
/// average of a gauge. `min` and `max` are the smallest and largest per-second values. All in
/// the metric's scaled integer units ([`crate::Metric::scale`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// Integral of the value over the observed seconds.
    pub sum: i64,
    /// Seconds observed.
    pub count: u32,
    /// Smallest per-second value.
    pub min: i64,
    /// Largest per-second value.
    pub max: i64,
}

impl Point {
    /// One second with value `v`.
    pub const fn single(v: i64) -> Self {
        Point {
            sum: v,
            count: 1,
            min: v,
            max: v,
        }
    }

    /// `amount` spread over `secs` seconds (a counter delta), at least one second.
    pub fn over(amount: i64, secs: u32) -> Self {
        let secs = secs.max(1);
        let rate = div_round(amount, secs as i64);
        Point {
            sum: amount,
            count: secs,
            min: rate,
            max: rate,
        }
    }

    /// Adds another interval's point into this one.
    pub fn merge(&mut self, o: &Point) {
        self.sum = self.sum.saturating_add(o.sum);
        self.count = self.count.saturating_add(o.count);
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// `sum / count` in scaled units.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

fn div_round(a: i64, b: i64) -> i64 {
    let (q, r) = (a.div_euclid(b), a.rem_euclid(b));
    if r * 2 >= b {
        q + 1
    } else {
        q
    }
}

/// A resolution tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tier {
    /// One point per second.
    Sec,
    /// One point per minute.
    Min,
    /// One point per hour.
    Hour,
}

impl Tier {
    /// Finest first.
    pub const ALL: [Tier; 3] = [Tier::Sec, Tier::Min, Tier::Hour];

    /// Stable code stored in the database.
    pub const fn code(self) -> i64 {
        match self {
            Tier::Sec => 0,
            Tier::Min => 1,
            Tier::Hour => 2,
        }
    }

    /// The tier with the stored `code`.
    pub fn from_code(c: i64) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.code() == c)
    }

    /// Seconds per point.
    pub const fn resolution(self) -> i64 {
        match self {
            Tier::Sec => 1,
            Tier::Min => 60,
            Tier::Hour => 3600,
        }
    }

    /// Seconds per chunk: closed periods of this length are packed into one row. For the two
    /// finer tiers it is the next tier's resolution, so packing a chunk yields exactly one
    /// point of the next tier.
    pub const fn chunk_span(self) -> i64 {
        match self {
            Tier::Sec => 60,
            Tier::Min => 3600,
            Tier::Hour => 86400,
        }
    }

    /// The next coarser tier.
    pub const fn coarser(self) -> Option<Tier> {
        match self {
            Tier::Sec => Some(Tier::Min),
            Tier::Min => Some(Tier::Hour),
            Tier::Hour => None,
        }
    }

    /// `1s`, `1m`, `1h`.
    pub const fn label(self) -> &'static str {
        match self {
            Tier::Sec => "1s",
            Tier::Min => "1m",
            Tier::Hour => "1h",
        }
    }

    /// Index into per-tier arrays.
    pub const fn index(self) -> usize {
        self.code() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_spread() {
        let mut p = Point::single(10);
        p.merge(&Point::over(30, 2));
        assert_eq!(
            p,
            Point {
                sum: 40,
                count: 3,
                min: 10,
                max: 15
            }
        );
        assert_eq!(Point::over(5, 2).min, 3);
        assert_eq!(Point::over(-5, 2).min, -2);
        assert_eq!(Point::over(7, 0).count, 1);
        for t in Tier::ALL {
            assert_eq!(Tier::from_code(t.code()), Some(t));
            if let Some(c) = t.coarser() {
                assert_eq!(t.chunk_span(), c.resolution());
            }
        }
    }
}
