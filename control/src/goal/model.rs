//! The projection model: how a job's performance index responds to a resource.
//!
//! Per job and resource (its CPU share on one server, its booking on a pipe)
//! the loop keeps the recent observations (resource `x`, index `PI`) and fits
//! `ln PI = a + b ln x`: `b` is the *elasticity* (-1: doubling the resource
//! halves the response time). The fit is a weighted least-squares slope
//! shrunk towards a prior (ridge regression): with few observations, or all
//! at one level of the resource (nothing to learn a slope from), the prior
//! rules; as the loop's own changes spread the observations, the data take
//! over. The slope is clamped to `[-MAX_ELASTICITY, 0]`: more of a resource
//! never makes a job slower (monotone), and no projection is wilder than the
//! clamp. Projections anchor on the latest observation, `PI' = PI (x'/x)^b`,
//! so a change of load (which moves `a`) does not bias them.
//!
//! The prior is elasticity -1 (response time inversely proportional to the
//! resource). Queueing theory says a CPU-bound job near saturation gains
//! more (`-1 / (1 - rho)` for an M/M/1 queue at utilisation `rho`), but a
//! work-conserving scheduler lets a job use more than its share, so its
//! utilisation of the share says little, and a share is not its capacity:
//! the data decide, starting from the cautious -1.

use std::collections::VecDeque;

/// Steepest elasticity the model projects with.
pub const MAX_ELASTICITY: f64 = 8.0;
/// Weight of the prior, in units of (ln x)^2 of observed spread: two
/// observations 25 % apart outweigh it.
const PRIOR_STRENGTH: f64 = 0.05;
/// Older observations count less: weight `DECAY^age`.
const DECAY: f64 = 0.85;

/// The prior elasticity (see the module docs).
pub const PRIOR_ELASTICITY: f64 = -1.0;

/// Recent observations of one job and resource.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// (ln x, ln PI), newest last.
    obs: VecDeque<(f64, f64)>,
    cap: usize,
}

/// A fitted slope and how much of it the data (not the prior) decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Elasticity `b` (<= 0).
    pub elasticity: f64,
    /// 0 (prior only) ..= 1 (data only).
    pub confidence: f64,
}

impl Model {
    /// A model keeping the last `cap` observations.
    pub fn new(cap: usize) -> Self {
        Self {
            obs: VecDeque::with_capacity(cap),
            cap: cap.max(2),
        }
    }

    /// Adds an observation (ignored unless both are positive and finite).
    pub fn observe(&mut self, x: f64, pi: f64) {
        if !(x > 0.0 && pi > 0.0 && x.is_finite() && pi.is_finite()) {
            return;
        }
        if self.obs.len() == self.cap {
            self.obs.pop_front();
        }
        self.obs.push_back((x.ln(), pi.ln()));
    }

    /// Observations held.
    pub fn len(&self) -> usize {
        self.obs.len()
    }

    /// True without observations.
    pub fn is_empty(&self) -> bool {
        self.obs.is_empty()
    }

    /// The slope, shrunk towards `prior`.
    pub fn fit(&self, prior: f64) -> Fit {
        let n = self.obs.len();
        let w = |i: usize| DECAY.powi((n - 1 - i) as i32);
        let sw: f64 = (0..n).map(w).sum();
        if n < 2 || sw <= 0.0 {
            return Fit {
                elasticity: prior.clamp(-MAX_ELASTICITY, 0.0),
                confidence: 0.0,
            };
        }
        let mx = self
            .obs
            .iter()
            .enumerate()
            .map(|(i, o)| w(i) * o.0)
            .sum::<f64>()
            / sw;
        let my = self
            .obs
            .iter()
            .enumerate()
            .map(|(i, o)| w(i) * o.1)
            .sum::<f64>()
            / sw;
        let sxx: f64 = self
            .obs
            .iter()
            .enumerate()
            .map(|(i, o)| w(i) * (o.0 - mx).powi(2))
            .sum();
        let sxy: f64 = self
            .obs
            .iter()
            .enumerate()
            .map(|(i, o)| w(i) * (o.0 - mx) * (o.1 - my))
            .sum();
        let b = (sxy + PRIOR_STRENGTH * prior) / (sxx + PRIOR_STRENGTH);
        Fit {
            elasticity: b.clamp(-MAX_ELASTICITY, 0.0),
            confidence: sxx / (sxx + PRIOR_STRENGTH),
        }
    }
}

/// `pi` projected from resource `x` to `x2` with elasticity `b`.
pub fn project(pi: f64, x: f64, x2: f64, b: f64) -> f64 {
    if x <= 0.0 || x2 <= 0.0 {
        return if x2 > x { pi } else { f64::INFINITY };
    }
    pi * (x2 / x).powf(b)
}

/// The resource that brings `pi` at `x` to `target` with elasticity `b`
/// (infinite when `b` is 0 and the target is below `pi`).
pub fn resource_for(pi: f64, x: f64, target: f64, b: f64) -> f64 {
    if pi <= target {
        return x;
    }
    if b > -1e-6 {
        return f64::INFINITY;
    }
    x * (target / pi).powf(1.0 / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_the_slope_and_keeps_it_monotone() {
        let mut m = Model::new(16);
        assert_eq!(
            m.fit(-2.0),
            Fit {
                elasticity: -2.0,
                confidence: 0.0
            }
        );
        // One level only: nothing to learn, the prior stays.
        for _ in 0..5 {
            m.observe(30.0, 1.5);
        }
        let f = m.fit(-2.0);
        assert!(
            f.confidence < 1e-9 && (f.elasticity + 2.0).abs() < 1e-9,
            "{f:?}"
        );
        // Observations of PI = (x/30)^-3 over a spread of shares.
        let mut m = Model::new(16);
        for x in [30.0, 33.0, 36.0, 40.0, 44.0] {
            m.observe(x, (x / 30.0f64).powf(-3.0));
        }
        let f = m.fit(-1.0);
        assert!(
            f.confidence > 0.1 && f.elasticity < -2.0 && f.elasticity > -3.01,
            "{f:?}"
        );
        // Data saying more CPU hurts are clamped to "no effect".
        let mut m = Model::new(4);
        for x in [10.0, 20.0, 40.0, 80.0, 160.0] {
            m.observe(x, x);
        }
        assert_eq!(m.len(), 4);
        assert_eq!(m.fit(-1.0).elasticity, 0.0);
        m.observe(f64::NAN, 1.0);
        m.observe(1.0, 0.0);
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn priors_and_projections() {
        assert!((project(2.0, 10.0, 20.0, -1.0) - 1.0).abs() < 1e-12);
        assert!((resource_for(2.0, 10.0, 1.0, -1.0) - 20.0).abs() < 1e-9);
        assert_eq!(resource_for(0.5, 10.0, 1.0, -1.0), 10.0);
        assert_eq!(resource_for(2.0, 10.0, 1.0, 0.0), f64::INFINITY);
        assert_eq!(project(1.0, 10.0, 0.0, -1.0), f64::INFINITY);
    }
}
