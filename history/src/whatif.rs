//! What-if: replays recorded demand through the allocator and CPU-policy code the daemon runs
//! (`headroom_control::allocator::{node_demand, allocate}`,
//! `headroom_control::procsched::policy::compute`) under another policy, optionally without
//! some nodes, and predicts per job the grant, the shortfall and the time squeezed, and
//! whether the pool fits.
//!
//! Model, per recorded step (a second or a minute):
//! * Demand is what was recorded: bytes offered to each pipe (sent, queued or dropped) and CPU
//!   used. CPU use is a lower bound of CPU demand where a job was throttled (`cpu_wants_more`).
//! * A removed node's job demand moves to the remaining nodes that run the job, in proportion
//!   to their own demand (evenly if it ran nowhere else); its other processes' load goes away.
//! * Bandwidth: every node's demand for one interval of the step goes through `node_demand`,
//!   every node computes its grant with `allocate` from all the others' demands, as the
//!   daemon does; unmet demand is not carried over (the pacer drops what waits longer than
//!   its queue delay, far shorter than a step).
//! * CPU: `compute` gives each job's target share on each node; the kernel's scheduler is
//!   modelled as weighted max-min fair sharing of the node's cores (a job never gets more than
//!   it uses, shares flow to whoever still wants), with caps. Processes outside any job on a
//!   node compete with the weight left unbooked.

use std::collections::BTreeMap;

use headroom_config::process::{CpuPolicy, CpuShare};
use headroom_config::Config;
use headroom_control::allocator::{
    self, JobBooking, JobDemand as PipeJobDemand, LocalDemand, PipeSpec, Rate,
};
use headroom_control::procsched::entry::{JobDemand as CpuJobDemand, PoolCpuState};
use headroom_control::procsched::policy::{compute, JobInput};
use serde::{Deserialize, Serialize};

use crate::query::Dataset;
use crate::series::{EntityKind, Metric, Unit};
use crate::time::WallTime;

/// A job is squeezed at a step when its shortfall exceeds this share of its demand...
pub const TOLERANCE: f64 = 0.01;
/// ... and this much bandwidth (bytes/s, 1 kbit/s) ...
pub const MIN_BYTES: f64 = 125.0;
/// ... or CPU (cores).
pub const MIN_CORES: f64 = 0.005;

/// One pipe under the policy being tried.
#[derive(Debug, Clone, PartialEq)]
pub struct PipePolicy {
    /// Pipe name.
    pub name: String,
    /// Capacity, immediate share and interval.
    pub spec: PipeSpec,
    /// Bookings: (job, booked bit/s, cap bit/s).
    pub bookings: Vec<(String, u64, Option<u64>)>,
}

/// The policy a what-if replays demand under.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WhatIfPolicy {
    /// Pipes with their bookings.
    pub pipes: Vec<PipePolicy>,
    /// CPU policies by job.
    pub cpu: Vec<(String, CpuPolicy)>,
}

impl WhatIfPolicy {
    /// The pipes, bookings and CPU policies of a configuration (or pool policy).
    pub fn from_config(c: &Config) -> Result<Self, String> {
        let interval_ns =
            u64::try_from(c.control.high_freq_interval.as_nanos()).unwrap_or(u64::MAX);
        let mut pipes = Vec::new();
        for p in &c.pipes {
            let cap = p.capacity.bps(0);
            let spec = PipeSpec::new(cap, p.immediate_share, interval_ns)
                .map_err(|e| format!("pipe {}: {e}", p.name))?;
            let bookings = c
                .jobs
                .iter()
                .flat_map(|j| j.bookings.iter().map(move |b| (j, b)))
                .filter(|(_, b)| b.pipe == p.name)
                .map(|(j, b)| (j.name.clone(), b.rate.bps(cap), b.cap.map(|x| x.bps(cap))))
                .collect();
            pipes.push(PipePolicy {
                name: p.name.clone(),
                spec,
                bookings,
            });
        }
        let cpu = c
            .jobs
            .iter()
            .filter_map(|j| j.cpu.map(|p| (j.name.clone(), p)))
            .collect();
        Ok(WhatIfPolicy { pipes, cpu })
    }
}

/// Options of a what-if.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatIfOptions {
    /// Nodes to take out of the pool.
    pub without_nodes: Vec<u32>,
}

/// One job's predicted service on one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Job name.
    pub job: String,
    /// `pipe uplink` or `cpu`.
    pub resource: String,
    /// Unit of the figures (bytes/s or cores).
    pub unit: Unit,
    /// Mean demand.
    pub demand_mean: f64,
    /// Mean grant (the part of the demand the policy would serve).
    pub grant_mean: f64,
    /// Mean shortfall (demand minus grant).
    pub shortfall_mean: f64,
    /// Largest shortfall at one step.
    pub shortfall_peak: f64,
    /// Total shortfall: bytes, or core-seconds.
    pub shortfall_total: f64,
    /// Seconds squeezed.
    pub squeezed_secs: u64,
}

/// The step of a what-if with the largest shortfall (CPU first, then bandwidth).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorstStep {
    /// When.
    pub at: WallTime,
    /// Bandwidth short over all jobs then, bytes/s.
    pub bandwidth_short: f64,
    /// CPU short over all jobs then, cores.
    pub cpu_short: f64,
}

/// The answer of a what-if.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhatIfReport {
    /// Schema version.
    pub version: u32,
    /// Window start.
    pub from: WallTime,
    /// Window end.
    pub to: WallTime,
    /// Seconds per step.
    pub step_secs: i64,
    /// Steps with data.
    pub steps: u64,
    /// Nodes with data in the window.
    pub nodes: Vec<u32>,
    /// Nodes taken out.
    pub removed: Vec<u32>,
    /// Steps at which every job's demand was met.
    pub fit_steps: u64,
    /// The pool fits at every step.
    pub fits: bool,
    /// Cores of the remaining nodes (largest over the window).
    pub remaining_cores: f64,
    /// Largest pool-wide CPU demand at one step, cores.
    pub peak_cpu_demand: f64,
    /// The step with the largest shortfall.
    pub worst: Option<WorstStep>,
    /// Per job and resource.
    pub jobs: Vec<Prediction>,
}

#[derive(Default, Clone)]
struct JobStep {
    cpu: f64,
    wants: f64,
    pipes: BTreeMap<String, f64>,
}

#[derive(Default, Clone)]
struct NodeStep {
    cores: Option<f64>,
    cpu_total: Option<f64>,
    jobs: BTreeMap<String, JobStep>,
}

#[derive(Default)]
struct Acc {
    unit: Option<Unit>,
    demand: f64,
    grant: f64,
    short: f64,
    peak: f64,
    squeezed: u64,
    secs: f64,
}

/// Weighted max-min fair shares of `capacity` for demands `d` with weights `w`, each at most
/// `cap`.
pub fn water_fill(capacity: f64, d: &[f64], w: &[f64], cap: &[f64]) -> Vec<f64> {
    let mut alloc = vec![0.0; d.len()];
    let want = |i: usize| d[i].min(cap[i]).max(0.0);
    let mut active: Vec<usize> = (0..d.len()).filter(|&i| want(i) > 0.0).collect();
    let mut left = capacity.max(0.0);
    while !active.is_empty() && left > 1e-12 {
        let tw: f64 = active.iter().map(|&i| w[i].max(1e-6)).sum();
        let done: Vec<usize> = active
            .iter()
            .copied()
            .filter(|&i| want(i) - alloc[i] <= left * w[i].max(1e-6) / tw + 1e-12)
            .collect();
        if done.is_empty() {
            for &i in &active {
                alloc[i] += left * w[i].max(1e-6) / tw;
            }
            break;
        }
        for i in done {
            let need = want(i) - alloc[i];
            alloc[i] += need;
            left -= need;
            active.retain(|&j| j != i);
        }
    }
    alloc
}

/// Moves a removed node's demand to the remaining nodes (see the module documentation).
fn spread(gone: &NodeStep, rest: &mut BTreeMap<u32, NodeStep>) {
    if rest.is_empty() {
        return;
    }
    for (job, js) in &gone.jobs {
        let hosts: Vec<u32> = rest
            .iter()
            .filter(|(_, s)| s.jobs.contains_key(job))
            .map(|(id, _)| *id)
            .collect();
        let targets: Vec<u32> = if hosts.is_empty() {
            rest.keys().copied().collect()
        } else {
            hosts
        };
        let cpu_weights: Vec<f64> = targets
            .iter()
            .map(|t| rest[t].jobs.get(job).map_or(0.0, |j| j.cpu))
            .collect();
        let total: f64 = cpu_weights.iter().sum();
        for (k, t) in targets.iter().enumerate() {
            let share = if total > 0.0 {
                cpu_weights[k] / total
            } else {
                1.0 / targets.len() as f64
            };
            let e = rest
                .get_mut(t)
                .expect("target")
                .jobs
                .entry(job.clone())
                .or_default();
            e.cpu += js.cpu * share;
            e.wants = e.wants.max(js.wants);
        }
        for (pipe, d) in &js.pipes {
            let w: Vec<f64> = targets
                .iter()
                .map(|t| {
                    rest[t]
                        .jobs
                        .get(job)
                        .and_then(|j| j.pipes.get(pipe))
                        .copied()
                        .unwrap_or(0.0)
                })
                .collect();
            let total: f64 = w.iter().sum();
            for (k, t) in targets.iter().enumerate() {
                let share = if total > 0.0 {
                    w[k] / total
                } else {
                    1.0 / targets.len() as f64
                };
                let e = rest
                    .get_mut(t)
                    .expect("target")
                    .jobs
                    .entry(job.clone())
                    .or_default();
                *e.pipes.entry(pipe.clone()).or_insert(0.0) += d * share;
            }
        }
    }
}

/// Replays the dataset's demand under `policy`.
pub fn what_if(ds: &Dataset, policy: &WhatIfPolicy, opts: &WhatIfOptions) -> WhatIfReport {
    let res = ds.tier.resolution();
    // ts -> node -> values.
    let mut steps: BTreeMap<i64, BTreeMap<u32, NodeStep>> = BTreeMap::new();
    // Seconds observed in each step: the window's first and last steps are
    // usually partial, and weigh only that much in the means.
    let mut observed: BTreeMap<i64, u32> = BTreeMap::new();
    for s in &ds.series {
        let k = &s.key;
        for (ts, v, secs) in s.values() {
            let o = observed.entry(ts).or_default();
            *o = (*o).max(secs);
            let node = steps.entry(ts).or_default().entry(k.node).or_default();
            match (k.kind, k.metric) {
                (EntityKind::Node, Metric::Cores) => node.cores = Some(v),
                (EntityKind::Node, Metric::CpuCores) => node.cpu_total = Some(v),
                (EntityKind::Job, Metric::CpuCores) => {
                    node.jobs.entry(k.name.clone()).or_default().cpu = v
                }
                (EntityKind::Job, Metric::CpuWantsMore) => {
                    node.jobs.entry(k.name.clone()).or_default().wants = v
                }
                (EntityKind::Job, Metric::PipeDemandBytes) if !k.sub.is_empty() => {
                    node.jobs
                        .entry(k.name.clone())
                        .or_default()
                        .pipes
                        .insert(k.sub.clone(), v);
                }
                _ => {}
            }
        }
    }
    let mut names: Vec<String> = steps
        .values()
        .flat_map(|n| n.values().flat_map(|s| s.jobs.keys().cloned()))
        .chain(policy.cpu.iter().map(|(j, _)| j.clone()))
        .chain(
            policy
                .pipes
                .iter()
                .flat_map(|p| p.bookings.iter().map(|b| b.0.clone())),
        )
        .collect();
    names.sort();
    names.dedup();
    let id_of = |n: &str| names.iter().position(|x| x == n).map(|i| i as u16);
    let mut acc: BTreeMap<(String, String), Acc> = BTreeMap::new();
    let mut fit_steps = 0u64;
    let mut worst: Option<WorstStep> = None;
    let mut remaining_cores = 0.0f64;
    let mut peak_cpu = 0.0f64;
    let nodes = ds.nodes();
    for (ts, mut at) in steps {
        let mut rest: BTreeMap<u32, NodeStep> = BTreeMap::new();
        let mut gone = Vec::new();
        for (id, n) in std::mem::take(&mut at) {
            if opts.without_nodes.contains(&id) {
                gone.push(n);
            } else {
                rest.insert(id, n);
            }
        }
        for g in &gone {
            spread(g, &mut rest);
        }
        let mut fits = true;
        let (mut short_bw, mut short_cpu) = (0.0, 0.0);
        let w = i64::from(observed.get(&ts).copied().unwrap_or(0)).clamp(1, res);
        let mut record = |job: &str, res_name: String, unit, d: f64, g: f64, min: f64| {
            let a = acc.entry((job.to_string(), res_name)).or_default();
            let s = (d - g).max(0.0);
            a.unit = Some(unit);
            a.demand += d * w as f64;
            a.grant += g.min(d) * w as f64;
            a.short += s * w as f64;
            a.peak = a.peak.max(s);
            a.secs += w as f64;
            if s > d * TOLERANCE && s > min {
                a.squeezed += w as u64;
                return (false, s);
            }
            (true, s)
        };

        // Bandwidth.
        for p in &policy.pipes {
            let per_sec = 1e9 / p.spec.interval_ns as f64;
            let all_bookings: Vec<JobBooking> = p
                .bookings
                .iter()
                .filter_map(|(j, b, c)| {
                    Some(JobBooking {
                        job: id_of(j)?,
                        booked: Rate::Bps(*b),
                        cap: c.map(Rate::Bps),
                    })
                })
                .collect();
            let mut locals: Vec<(u32, LocalDemand)> = Vec::new();
            let mut demand: BTreeMap<u16, f64> = BTreeMap::new();
            for (id, n) in &rest {
                let mut d: Vec<PipeJobDemand> = Vec::new();
                for (job, js) in &n.jobs {
                    let Some(want) = js.pipes.get(&p.name).filter(|w| **w > 0.0) else {
                        continue;
                    };
                    let Some(j) = id_of(job) else { continue };
                    *demand.entry(j).or_insert(0.0) += want;
                    d.push(PipeJobDemand {
                        job: j,
                        queued: 0,
                        arrived: (want / per_sec).round() as u64,
                        debt: 0,
                    });
                }
                let here: Vec<JobBooking> = all_bookings
                    .iter()
                    .filter(|b| d.iter().any(|x| x.job == b.job))
                    .copied()
                    .collect();
                locals.push((*id, allocator::node_demand(&p.spec, &here, &d)));
            }
            let mut granted: BTreeMap<u16, f64> = BTreeMap::new();
            for (i, (_, mine)) in locals.iter().enumerate() {
                let peers: Vec<_> = locals
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| *k != i)
                    .map(|(_, (_, l))| l.node.clone())
                    .collect();
                let g = allocator::allocate(&p.spec, &all_bookings, &peers, mine);
                for jg in &g.jobs {
                    *granted.entry(jg.job).or_insert(0.0) += jg.credit() as f64 * per_sec;
                }
            }
            for (j, d) in &demand {
                let g = granted.get(j).copied().unwrap_or(0.0);
                let (ok, s) = record(
                    &names[*j as usize],
                    format!("pipe {}", p.name),
                    Unit::BytesPerSec,
                    *d,
                    g,
                    MIN_BYTES,
                );
                fits &= ok;
                short_bw += s;
            }
        }

        // CPU.
        let cores_of = |n: &NodeStep| n.cores.filter(|c| *c > 0.0).unwrap_or(1.0);
        let step_cores: f64 = rest.values().map(cores_of).sum();
        remaining_cores = remaining_cores.max(step_cores);
        let mut cpu_demand = 0.0;
        let mut job_cpu: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        let states: Vec<(u32, PoolCpuState)> = rest
            .iter()
            .map(|(id, n)| {
                (
                    *id,
                    PoolCpuState {
                        cores_available: cores_of(n) as f32,
                        jobs: n
                            .jobs
                            .iter()
                            .filter(|(_, j)| j.cpu > 0.0)
                            .map(|(name, j)| CpuJobDemand {
                                job: name.clone(),
                                demand_cores: j.cpu as f32,
                                granted_cores: 0.0,
                                wants_more: j.wants >= 0.5,
                            })
                            .collect(),
                    },
                )
            })
            .collect();
        for (id, n) in &rest {
            let cores = cores_of(n);
            let inputs: Vec<JobInput> = n
                .jobs
                .iter()
                .filter(|(_, j)| j.cpu > 0.0)
                .map(|(name, j)| {
                    let pol = policy.cpu.iter().find(|(p, _)| p == name).map(|(_, p)| *p);
                    JobInput {
                        name: name.clone(),
                        share: pol.map(|p| p.share),
                        cap_percent: pol.and_then(|p| p.cap_percent),
                        present: true,
                        used_cores: j.cpu,
                        wants_more: j.wants >= 0.5,
                    }
                })
                .collect();
            let others: Vec<PoolCpuState> = states
                .iter()
                .filter(|(o, _)| o != id)
                .map(|(_, s)| s.clone())
                .collect();
            let out = compute(cores, &inputs, &others);
            let jobs_used: f64 = inputs.iter().map(|j| j.used_cores).sum();
            let unmanaged = n.cpu_total.map_or(0.0, |t| (t - jobs_used).max(0.0));
            let unpoliced = inputs.iter().filter(|j| j.share.is_none()).count() + 1;
            let free_weight = (out.unmanaged_percent / unpoliced as f64).max(0.01);
            let mut d: Vec<f64> = inputs.iter().map(|j| j.used_cores).collect();
            let mut w: Vec<f64> = out
                .jobs
                .iter()
                .zip(&inputs)
                .map(|(t, j)| {
                    if j.share.is_some() {
                        t.percent.max(0.01)
                    } else {
                        free_weight
                    }
                })
                .collect();
            let mut caps: Vec<f64> = out
                .jobs
                .iter()
                .map(|t| t.cap_cores.unwrap_or(f64::INFINITY))
                .collect();
            d.push(unmanaged);
            w.push(free_weight);
            caps.push(f64::INFINITY);
            let alloc = water_fill(cores, &d, &w, &caps);
            for (k, j) in inputs.iter().enumerate() {
                let e = job_cpu.entry(j.name.clone()).or_default();
                e.0 += d[k];
                e.1 += alloc[k];
            }
            cpu_demand += d.iter().sum::<f64>();
        }
        peak_cpu = peak_cpu.max(cpu_demand);
        for (job, (d, g)) in &job_cpu {
            let (ok, s) = record(job, "cpu".into(), Unit::Cores, *d, *g, MIN_CORES);
            fits &= ok;
            short_cpu += s;
        }
        if fits {
            fit_steps += 1;
        }
        let worse = match &worst {
            None => short_bw > 0.0 || short_cpu > 0.0,
            Some(w) => {
                short_cpu > w.cpu_short
                    || (short_cpu == w.cpu_short && short_bw > w.bandwidth_short)
            }
        };
        if worse && !fits {
            worst = Some(WorstStep {
                at: crate::time::from_secs(ts),
                bandwidth_short: short_bw,
                cpu_short: short_cpu,
            });
        }
    }
    let steps_n = observed.len() as u64;
    let jobs = acc
        .into_iter()
        .map(|((job, resource), a)| {
            let secs = a.secs.max(1.0);
            Prediction {
                job,
                resource,
                unit: a.unit.unwrap_or(Unit::Count),
                demand_mean: a.demand / secs,
                grant_mean: a.grant / secs,
                shortfall_mean: a.short / secs,
                shortfall_peak: a.peak,
                shortfall_total: a.short,
                squeezed_secs: a.squeezed,
            }
        })
        .collect();
    WhatIfReport {
        version: 1,
        from: crate::time::from_secs(ds.from),
        to: crate::time::from_secs(ds.to),
        step_secs: res,
        steps: steps_n,
        nodes,
        removed: opts.without_nodes.clone(),
        fit_steps,
        fits: worst.is_none(),
        remaining_cores,
        peak_cpu_demand: peak_cpu,
        worst,
        jobs,
    }
}

/// The what-if as text.
pub fn render_text(r: &WhatIfReport) -> String {
    let removed: Vec<String> = r.removed.iter().map(|n| n.to_string()).collect();
    let mut o = format!(
        "What-if {} to {} ({} steps of {}s){}\n",
        r.from.rfc3339(),
        r.to.rfc3339(),
        r.steps,
        r.step_secs,
        if removed.is_empty() {
            String::new()
        } else {
            format!(", without node {}", removed.join(", "))
        }
    );
    o.push_str(&format!(
        "  {:<16} {:<14} {:>14} {:>14} {:>14} {:>14} {:>10}\n",
        "job", "resource", "demand", "grant", "shortfall", "peak short", "squeezed"
    ));
    for p in &r.jobs {
        o.push_str(&format!(
            "  {:<16} {:<14} {:>14} {:>14} {:>14} {:>14} {:>10}\n",
            p.job,
            p.resource,
            p.unit.format(p.demand_mean),
            p.unit.format(p.grant_mean),
            p.unit.format(p.shortfall_mean),
            p.unit.format(p.shortfall_peak),
            crate::time::format_duration(std::time::Duration::from_secs(p.squeezed_secs))
        ));
    }
    let pct = if r.steps > 0 {
        r.fit_steps as f64 / r.steps as f64 * 100.0
    } else {
        100.0
    };
    o.push_str(&format!(
        "pool {}: every job served in {:.1}% of the steps; {:.2} cores remain, peak CPU demand {:.2} cores\n",
        if r.fits { "fits" } else { "does not fit" },
        pct,
        r.remaining_cores,
        r.peak_cpu_demand
    ));
    if let Some(w) = &r.worst {
        o.push_str(&format!(
            "  worst at {}: short by {} and {}\n",
            w.at.rfc3339(),
            Unit::BytesPerSec.format(w.bandwidth_short),
            Unit::Cores.format(w.cpu_short)
        ));
    }
    o
}

/// The share of a CPU policy as TOML writes it (for messages).
pub fn describe_share(s: &CpuShare) -> String {
    match s {
        CpuShare::ServerPercent(p) => format!("server_percent = {p}"),
        CpuShare::PoolPercent(p) => format!("pool_percent = {p}"),
        CpuShare::PoolCores(c) => format!("pool_cores = {c}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn water_fill_shares() {
        // 2 cores, weights 60:20, demands 1.8 and 0.3: the small job is served, the rest flows.
        let a = water_fill(2.0, &[1.8, 0.3], &[60.0, 20.0], &[f64::INFINITY; 2]);
        assert!(
            (a[0] - 1.7).abs() < 1e-9 && (a[1] - 0.3).abs() < 1e-9,
            "{a:?}"
        );
        // Both want everything: split by weight.
        let a = water_fill(2.0, &[5.0, 5.0], &[75.0, 25.0], &[f64::INFINITY; 2]);
        assert!(
            (a[0] - 1.5).abs() < 1e-9 && (a[1] - 0.5).abs() < 1e-9,
            "{a:?}"
        );
        // A cap holds.
        let a = water_fill(2.0, &[5.0, 5.0], &[75.0, 25.0], &[1.0, f64::INFINITY]);
        assert!(
            (a[0] - 1.0).abs() < 1e-9 && (a[1] - 1.0).abs() < 1e-9,
            "{a:?}"
        );
        assert_eq!(water_fill(1.0, &[0.0], &[1.0], &[1.0]), vec![0.0]);
    }
}
