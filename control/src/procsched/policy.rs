//! Pure CPU policy arithmetic: from job policies, local demand and the
//! pool view to per-job targets on this server, plus the weight
//! conversions used by the enforcement backends.
//!
//! # Weights
//!
//! A job's target is a percentage `P` of this server's CPU. It becomes a
//! *cgroup v2 weight* `round(P * 100)` clamped to 1..=10000, so 100 % of the
//! server is the maximum weight and the resolution is 0.01 %. Job cgroups
//! are siblings under Headroom's parent cgroup, so their weights only matter
//! relative to each other: two busy jobs at 75 % and 25 % get 7500 and 2500
//! and split the CPU they compete for 75/25.
//!
//! Conversions between the cgroup versions follow the kernel and systemd:
//!
//! | cgroup v2 `cpu.weight` | cgroup v1 `cpu.shares` | nice (one task) |
//! |---|---|---|
//! | 1 (min) | 10 (v1 min is 2) | 19 (weight 15) |
//! | 100 (default) | 1024 (default) | 0 |
//! | 10000 (max) | 102400 (v1 max is 262144) | -20 (weight 88761) |
//!
//! * v2 -> v1: `shares = round(weight * 1024 / 100)` (the kernel's
//!   `sched_weight_from_cgroup`), clamped to 2..=262144.
//! * v1 -> v2: `weight = shares * 100 / 1024` clamped to 1..=10000 (systemd's
//!   `CPUShares=` to `CPUWeight=` conversion).
//! * nice: the kernel's `sched_prio_to_weight` table; the nice value whose
//!   weight is closest to the requested per-task weight.
//!
//! # Headroom's parent against the rest of the server
//!
//! Unmanaged processes are never moved: they stay in their own cgroups (or
//! the root) and compete with Headroom's parent cgroup as siblings. A nice-0
//! task or default cgroup counts 1024 shares (v2 weight 100). The parent's
//! weight is set so that, against one busy default competitor, the jobs
//! together get their booked fraction `B` of a core:
//! `parent_shares = 1024 * B / (100 - B)` with `B` clamped to 1..=99 %.
//! With more unmanaged competitors they share the remainder ([0095]); the
//! split *between jobs* is exact whatever the competition.

use super::entry::PoolCpuState;
use headroom_config::process::CpuShare;

/// Smallest cgroup v2 weight.
pub const V2_WEIGHT_MIN: u32 = 1;
/// Default cgroup v2 weight.
pub const V2_WEIGHT_DEFAULT: u32 = 100;
/// Largest cgroup v2 weight.
pub const V2_WEIGHT_MAX: u32 = 10000;
/// Smallest cgroup v1 `cpu.shares`.
pub const V1_SHARES_MIN: u64 = 2;
/// Default cgroup v1 `cpu.shares`.
pub const V1_SHARES_DEFAULT: u64 = 1024;
/// Largest cgroup v1 `cpu.shares`.
pub const V1_SHARES_MAX: u64 = 262144;

/// The kernel's `sched_prio_to_weight`, index 0 = nice -20.
const NICE_WEIGHTS: [u64; 40] = [
    88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916, 9548, 7620, 6100, 4904,
    3906, 3121, 2501, 1991, 1586, 1277, 1024, 820, 655, 526, 423, 335, 272, 215, 172, 137, 110, 87,
    70, 56, 45, 36, 29, 23, 18, 15,
];

/// Percentage of a server -> cgroup v2 weight (see the module table).
pub fn percent_to_v2_weight(percent: f64) -> u32 {
    if !percent.is_finite() {
        return V2_WEIGHT_MIN;
    }
    (percent * 100.0)
        .round()
        .clamp(V2_WEIGHT_MIN as f64, V2_WEIGHT_MAX as f64) as u32
}

/// cgroup v2 weight -> cgroup v1 shares (kernel convention).
pub fn v2_weight_to_v1_shares(weight: u32) -> u64 {
    ((weight as u64 * 1024 + 50) / 100).clamp(V1_SHARES_MIN, V1_SHARES_MAX)
}

/// cgroup v1 shares -> cgroup v2 weight (systemd convention).
pub fn v1_shares_to_v2_weight(shares: u64) -> u32 {
    (shares.saturating_mul(100) / 1024).clamp(V2_WEIGHT_MIN as u64, V2_WEIGHT_MAX as u64) as u32
}

/// Kernel load weight (1024 = nice 0) -> closest nice value.
pub fn kernel_weight_to_nice(weight: u64) -> i32 {
    let mut best = 0usize;
    for (i, w) in NICE_WEIGHTS.iter().enumerate() {
        if w.abs_diff(weight) < NICE_WEIGHTS[best].abs_diff(weight) {
            best = i;
        }
    }
    best as i32 - 20
}

/// Shares of Headroom's parent cgroup for a booked percentage (see the
/// module documentation), in v1 units.
pub fn parent_shares_for_booked(booked_percent: f64) -> u64 {
    let b = if booked_percent.is_finite() {
        booked_percent.clamp(1.0, 99.0)
    } else {
        1.0
    };
    ((1024.0 * b / (100.0 - b)).round() as u64).clamp(V1_SHARES_MIN, V1_SHARES_MAX)
}

/// Minimum demand assumed for an instance, in cores, so that an idle
/// instance still receives a small share of a pool policy.
pub const MIN_DEMAND_CORES: f64 = 0.01;

/// Effective demand used to split a pool policy: the CPU used, plus
/// half again (at least 0.1 core) when the instance used all it was
/// granted and wants more.
pub fn effective_demand(used_cores: f64, wants_more: bool) -> f64 {
    let used = if used_cores.is_finite() && used_cores > 0.0 {
        used_cores
    } else {
        0.0
    };
    let bump = if wants_more {
        (used * 0.5).max(0.1)
    } else {
        0.0
    };
    (used + bump).max(MIN_DEMAND_CORES)
}

/// Input for one job present in the configuration.
#[derive(Debug, Clone)]
pub struct JobInput {
    /// Job name.
    pub name: String,
    /// The job's entitlement, if it has a CPU policy.
    pub share: Option<CpuShare>,
    /// Cap in percent of a server.
    pub cap_percent: Option<f64>,
    /// The job has at least one process on this server.
    pub present: bool,
    /// Local CPU used over the last tick, in cores.
    pub used_cores: f64,
    /// Local instance used (nearly) all it was granted.
    pub wants_more: bool,
}

/// Result for one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTarget {
    /// Job name.
    pub name: String,
    /// Percentage of this server the job should get (after any scaling for
    /// insufficient resources); 0 when the job has no policy or no local
    /// instance.
    pub percent: f64,
    /// Percentage requested by the policy before scaling.
    pub requested_percent: f64,
    /// cgroup v2 weight for `percent`.
    pub weight: u32,
    /// Cap in cores of this server, if any.
    pub cap_cores: Option<f64>,
    /// Number of instances the job has in the pool (pool policies; 1 for
    /// server policies).
    pub instances: usize,
    /// Sum of the effective demand of all instances (pool policies).
    pub pool_demand_cores: f64,
}

/// Result of one policy computation.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyOutcome {
    /// One entry per input job, same order.
    pub jobs: Vec<JobTarget>,
    /// Sum of the jobs' final percentages on this server.
    pub booked_percent: f64,
    /// What is left for unmanaged processes, in percent of this server.
    pub unmanaged_percent: f64,
    /// Total cores of the live pool (this server plus the view).
    pub pool_cores: f64,
    /// Bookings exceeded what exists (locally or pool-wide): targets were
    /// scaled down.
    pub insufficient: bool,
    /// Human-readable reason when `insufficient`.
    pub insufficient_reason: Option<String>,
}

/// Computes this server's targets.
///
/// * `local_cores`: cores of this server.
/// * `others`: entries of the *other* live nodes (a failed node is simply
///   absent, so pool policies re-split over the survivors).
///
/// Pool policies: the job's pool-wide cores (`pool_percent` of the pool's
/// total, or `pool_cores`) are split over its instances in proportion to
/// their [`effective_demand`]. If the pool policies together book more than
/// the pool has, every pool job is scaled by the same factor (relative
/// priorities are preserved, [0146]). If this server's targets add up to more
/// than 100 %, they are scaled to fit. Either case flags `insufficient`.
pub fn compute(local_cores: f64, jobs: &[JobInput], others: &[PoolCpuState]) -> PolicyOutcome {
    let local_cores = if local_cores.is_finite() && local_cores > 0.0 {
        local_cores
    } else {
        1.0
    };
    let pool_cores: f64 = local_cores
        + others
            .iter()
            .map(|o| o.cores_available as f64)
            .filter(|c| c.is_finite() && *c > 0.0)
            .sum::<f64>();
    let mut reasons = Vec::new();

    // Pool-wide bookings of pool policies.
    let pool_req = |s: &Option<CpuShare>| match s {
        Some(CpuShare::PoolPercent(p)) => Some(pool_cores * p / 100.0),
        Some(CpuShare::PoolCores(c)) => Some(*c),
        _ => None,
    };
    let pool_booked: f64 = jobs.iter().filter_map(|j| pool_req(&j.share)).sum();
    let pool_scale = if pool_booked > pool_cores * (1.0 + 1e-9) {
        reasons.push(format!(
            "pool policies book {pool_booked:.2} cores but the pool has {pool_cores:.2}"
        ));
        pool_cores / pool_booked
    } else {
        1.0
    };

    let mut targets: Vec<JobTarget> = jobs
        .iter()
        .map(|j| {
            let cap_cores = j.cap_percent.map(|c| c / 100.0 * local_cores);
            let mut t = JobTarget {
                name: j.name.clone(),
                percent: 0.0,
                requested_percent: 0.0,
                weight: V2_WEIGHT_MIN,
                cap_cores,
                instances: 0,
                pool_demand_cores: 0.0,
            };
            match j.share {
                None => {}
                Some(CpuShare::ServerPercent(p)) if j.present => {
                    t.requested_percent = p;
                    t.instances = 1;
                }
                Some(CpuShare::ServerPercent(_)) => {}
                Some(_) => {
                    let job_cores = pool_req(&j.share).unwrap_or(0.0) * pool_scale;
                    let local = if j.present {
                        effective_demand(j.used_cores, j.wants_more)
                    } else {
                        0.0
                    };
                    let mut total = local;
                    let mut instances = usize::from(j.present);
                    for o in others {
                        for d in o.jobs.iter().filter(|d| d.job == j.name) {
                            total += effective_demand(d.demand_cores as f64, d.wants_more);
                            instances += 1;
                        }
                    }
                    t.instances = instances;
                    t.pool_demand_cores = total;
                    if j.present && total > 0.0 {
                        let cores_here = job_cores * local / total;
                        t.requested_percent = (cores_here / local_cores * 100.0).min(100.0);
                    }
                }
            }
            t
        })
        .collect();

    let requested: f64 = targets.iter().map(|t| t.requested_percent).sum();
    let local_scale = if requested > 100.0 + 1e-9 {
        reasons.push(format!(
            "jobs request {requested:.1}% of this server, more than 100%"
        ));
        100.0 / requested
    } else {
        1.0
    };
    for t in &mut targets {
        t.percent = t.requested_percent * local_scale;
        t.weight = percent_to_v2_weight(t.percent);
    }
    let booked_percent: f64 = targets.iter().map(|t| t.percent).sum();
    PolicyOutcome {
        jobs: targets,
        booked_percent,
        unmanaged_percent: (100.0 - booked_percent).max(0.0),
        pool_cores,
        insufficient: !reasons.is_empty(),
        insufficient_reason: if reasons.is_empty() {
            None
        } else {
            Some(reasons.join("; "))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::JobDemand;
    use super::*;

    fn job(name: &str, share: Option<CpuShare>, used: f64) -> JobInput {
        JobInput {
            name: name.into(),
            share,
            cap_percent: None,
            present: true,
            used_cores: used,
            wants_more: false,
        }
    }

    fn node(cores: f32, jobs: &[(&str, f32, bool)]) -> PoolCpuState {
        PoolCpuState {
            cores_available: cores,
            jobs: jobs
                .iter()
                .map(|&(j, d, w)| JobDemand {
                    job: j.into(),
                    demand_cores: d,
                    granted_cores: 0.0,
                    wants_more: w,
                })
                .collect(),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn weight_conversions() {
        assert_eq!(percent_to_v2_weight(75.0), 7500);
        assert_eq!(percent_to_v2_weight(0.0), 1);
        assert_eq!(percent_to_v2_weight(250.0), 10000);
        assert_eq!(percent_to_v2_weight(f64::NAN), 1);
        assert_eq!(v2_weight_to_v1_shares(100), 1024);
        assert_eq!(v2_weight_to_v1_shares(7500), 76800);
        assert_eq!(v2_weight_to_v1_shares(2500), 25600);
        assert_eq!(v2_weight_to_v1_shares(10000), 102400);
        assert_eq!(v2_weight_to_v1_shares(0), 2);
        assert_eq!(v1_shares_to_v2_weight(1024), 100);
        assert_eq!(v1_shares_to_v2_weight(2), 1);
        assert_eq!(v1_shares_to_v2_weight(262144), 10000);
        assert_eq!(v1_shares_to_v2_weight(512), 50);
        assert_eq!(kernel_weight_to_nice(1024), 0);
        assert_eq!(kernel_weight_to_nice(1_000_000), -20);
        assert_eq!(kernel_weight_to_nice(0), 19);
        assert_eq!(kernel_weight_to_nice(110), 10);
        assert_eq!(parent_shares_for_booked(50.0), 1024);
        assert_eq!(parent_shares_for_booked(75.0), 3072);
        assert_eq!(parent_shares_for_booked(100.0), 101376);
        assert_eq!(parent_shares_for_booked(0.0), 10);
    }

    #[test]
    fn server_percent_direct_and_unmanaged_rest() {
        let out = compute(
            2.0,
            &[
                job("a", Some(CpuShare::ServerPercent(40.0)), 0.0),
                job("b", Some(CpuShare::ServerPercent(20.0)), 0.0),
                job("c", None, 1.0),
            ],
            &[],
        );
        assert!(!out.insufficient);
        assert!(close(out.jobs[0].percent, 40.0));
        assert_eq!(out.jobs[0].weight, 4000);
        assert!(close(out.jobs[1].percent, 20.0));
        assert!(close(out.jobs[2].percent, 0.0));
        assert!(close(out.booked_percent, 60.0));
        assert!(close(out.unmanaged_percent, 40.0));
    }

    #[test]
    fn absent_job_books_nothing() {
        let mut j = job("a", Some(CpuShare::ServerPercent(40.0)), 0.0);
        j.present = false;
        let out = compute(2.0, &[j], &[]);
        assert!(close(out.jobs[0].percent, 0.0));
        assert!(close(out.unmanaged_percent, 100.0));
    }

    #[test]
    fn pool_split_by_demand() {
        // Pool: 2 + 2 + 4 = 8 cores; 50 % = 4 cores for "web".
        // Demands: here 1.0, node B 3.0 -> here gets 1 core of 2 = 50 %.
        let others = [
            node(2.0, &[("web", 3.0, false)]),
            node(4.0, &[("other", 1.0, false)]),
        ];
        let out = compute(
            2.0,
            &[job("web", Some(CpuShare::PoolPercent(50.0)), 1.0)],
            &others,
        );
        assert!(close(out.pool_cores, 8.0));
        assert_eq!(out.jobs[0].instances, 2);
        assert!(close(out.jobs[0].percent, 50.0), "{}", out.jobs[0].percent);
        // pool_cores policy: 1.5 cores split 1:2 -> 0.5 core here = 25 %.
        let others = [node(2.0, &[("web", 2.0, false)])];
        let out = compute(
            2.0,
            &[job("web", Some(CpuShare::PoolCores(1.5)), 1.0)],
            &others,
        );
        assert!(close(out.jobs[0].percent, 25.0), "{}", out.jobs[0].percent);
        // "wants more" increases the instance's portion.
        let mut j = job("web", Some(CpuShare::PoolCores(1.5)), 1.0);
        j.wants_more = true;
        let out = compute(2.0, &[j], &others);
        assert!(
            close(out.jobs[0].percent, 0.75 * 1.5 / 3.5 * 100.0),
            "{}",
            out.jobs[0].percent
        );
        // Idle instances everywhere: equal split.
        let others = [node(2.0, &[("web", 0.0, false)])];
        let out = compute(
            2.0,
            &[job("web", Some(CpuShare::PoolCores(1.0)), 0.0)],
            &others,
        );
        assert!(close(out.jobs[0].percent, 25.0), "{}", out.jobs[0].percent);
    }

    #[test]
    fn failure_resplits_over_survivors() {
        let before = [
            node(2.0, &[("web", 1.0, false)]),
            node(2.0, &[("web", 1.0, false)]),
        ];
        let j = [job("web", Some(CpuShare::PoolCores(1.5)), 1.0)];
        let out = compute(2.0, &j, &before);
        assert!(close(out.jobs[0].percent, 25.0));
        // One node fails: its entry disappears from the view.
        let out = compute(2.0, &j, &before[..1]);
        assert!(close(out.jobs[0].percent, 37.5));
        assert!(!out.insufficient);
        // Both fail: this node carries the whole 1.5 cores.
        let out = compute(2.0, &j, &[]);
        assert!(close(out.jobs[0].percent, 75.0));
        // pool_percent keeps its relative priority on a smaller pool.
        let jp = [job("web", Some(CpuShare::PoolPercent(50.0)), 1.0)];
        let out = compute(2.0, &jp, &before);
        assert!(close(out.jobs[0].percent, 50.0));
        let out = compute(2.0, &jp, &[]);
        assert!(close(out.jobs[0].percent, 50.0));
    }

    #[test]
    fn insufficient_resources_scales_and_flags() {
        let out = compute(
            2.0,
            &[
                job("a", Some(CpuShare::ServerPercent(90.0)), 0.0),
                job("b", Some(CpuShare::ServerPercent(60.0)), 0.0),
            ],
            &[],
        );
        assert!(out.insufficient);
        assert!(out
            .insufficient_reason
            .as_deref()
            .unwrap()
            .contains("150.0%"));
        assert!(close(out.jobs[0].percent, 60.0));
        assert!(close(out.jobs[1].percent, 40.0));
        assert!(close(out.jobs[0].requested_percent, 90.0));
        assert!(close(out.unmanaged_percent, 0.0));
        // Pool-wide: 3 cores booked in a 2-core pool.
        let out = compute(2.0, &[job("a", Some(CpuShare::PoolCores(3.0)), 1.0)], &[]);
        assert!(out.insufficient);
        assert!(close(out.jobs[0].percent, 100.0));
        // A failure that removes capacity makes bookings insufficient.
        let others = [node(2.0, &[("a", 1.0, false)])];
        let j = [job("a", Some(CpuShare::PoolCores(3.0)), 1.0)];
        assert!(!compute(2.0, &j, &others).insufficient);
        assert!(compute(2.0, &j, &[]).insufficient);
    }

    #[test]
    fn cap_in_cores() {
        let mut j = job("a", Some(CpuShare::ServerPercent(10.0)), 0.0);
        j.cap_percent = Some(25.0);
        let out = compute(4.0, &[j], &[]);
        assert_eq!(out.jobs[0].cap_cores, Some(1.0));
    }

    #[test]
    fn effective_demand_rules() {
        assert!(close(effective_demand(0.0, false), MIN_DEMAND_CORES));
        assert!(close(effective_demand(1.0, true), 1.5));
        assert!(close(effective_demand(0.05, true), 0.15));
        assert!(close(effective_demand(f64::NAN, false), MIN_DEMAND_CORES));
    }
}
