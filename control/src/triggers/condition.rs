//! Whether a condition holds over a snapshot, and the event fields that
//! say why. Events (a node joined, an owner changed, ...) compare the
//! snapshot with the previous one; the first snapshot a master sees is only
//! a baseline (a change during a failover is not reported twice, nor
//! invented).

use std::collections::{BTreeMap, BTreeSet};

use headroom_config::triggers::{Condition, Resource};

use super::snapshot::{Alarm, NodeId, PoolSnapshot};

/// What events are measured against.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Baseline {
    live: BTreeSet<NodeId>,
    owners: BTreeMap<String, Option<NodeId>>,
    instances: BTreeMap<String, u32>,
}

impl Baseline {
    pub(crate) fn of(s: &PoolSnapshot) -> Self {
        Self {
            live: s.live().collect(),
            owners: s.vips.iter().map(|v| (v.name.clone(), v.owner)).collect(),
            instances: s
                .jobs
                .iter()
                .map(|j| (j.job.clone(), j.instances))
                .collect(),
        }
    }
}

/// The result of one evaluation of a condition.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Observation {
    pub holds: bool,
    /// Event fields (`job`, `pipe`, `demand_bps`, ...).
    pub fields: Vec<(String, String)>,
}

fn list(ids: impl IntoIterator<Item = NodeId>) -> String {
    ids.into_iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn opt(n: Option<NodeId>) -> String {
    n.map_or_else(|| "none".into(), |n| n.to_string())
}

fn f(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

pub(crate) fn observe(
    c: &Condition,
    s: &PoolSnapshot,
    prev: Option<&Baseline>,
    lost: &[NodeId],
) -> Observation {
    let mut fields = Vec::new();
    let holds = match c {
        Condition::Squeezed {
            job,
            on,
            by_percent,
        } => {
            let over = |demand: f64, grant: f64| demand > grant * (1.0 + by_percent / 100.0);
            let mut hit = false;
            if matches!(on, Resource::Any | Resource::Pipe(_)) {
                for pj in s.pipe_jobs.iter().filter(|p| &p.job == job) {
                    if matches!(on, Resource::Pipe(p) if *p != pj.pipe) {
                        continue;
                    }
                    if over(pj.demand_bps as f64, pj.grant_bps as f64) && !hit {
                        hit = true;
                        fields.extend([
                            f("job", job),
                            f("pipe", &pj.pipe),
                            f("demand_bps", pj.demand_bps),
                            f("grant_bps", pj.grant_bps),
                        ]);
                    }
                }
            }
            if !hit && matches!(on, Resource::Any | Resource::Cpu) {
                if let Some(j) = s.jobs.iter().find(|j| &j.job == job) {
                    if over(j.cpu_demand_cores, j.cpu_grant_cores) {
                        hit = true;
                        fields.extend([
                            f("job", job),
                            f("resource", "cpu"),
                            f("demand_cores", format!("{:.2}", j.cpu_demand_cores)),
                            f("grant_cores", format!("{:.2}", j.cpu_grant_cores)),
                        ]);
                    }
                }
            }
            hit
        }
        Condition::Utilisation { pipe, cmp, percent } => {
            match s.pipes.iter().find(|p| &p.name == pipe) {
                Some(p) if p.capacity_bps > 0 => {
                    let u = p.sent_bps as f64 * 100.0 / p.capacity_bps as f64;
                    fields.extend([
                        f("pipe", pipe),
                        f("utilisation_percent", format!("{u:.1}")),
                        f("sent_bps", p.sent_bps),
                        f("capacity_bps", p.capacity_bps),
                    ]);
                    cmp.holds(u, *percent)
                }
                _ => false,
            }
        }
        Condition::NodeFailed { node } => {
            let hit: Vec<NodeId> = lost
                .iter()
                .copied()
                .filter(|n| node.is_none_or(|x| x == *n))
                .collect();
            if !hit.is_empty() {
                fields.push(f("nodes", list(hit.iter().copied())));
            }
            !hit.is_empty()
        }
        Condition::NodeJoined { node } => match prev {
            Some(p) => {
                let hit: Vec<NodeId> = s
                    .live()
                    .filter(|n| !p.live.contains(n) && node.is_none_or(|x| x == *n))
                    .collect();
                if !hit.is_empty() {
                    fields.push(f("nodes", list(hit.iter().copied())));
                }
                !hit.is_empty()
            }
            None => false,
        },
        Condition::PoolCores { cmp, cores } => {
            let have = s.cores();
            fields.push(f("pool_cores", format!("{have:.2}")));
            cmp.holds(have, *cores)
        }
        Condition::InsufficientResources { on } => {
            let hit: Vec<String> = s
                .alarms
                .iter()
                .filter_map(|a| match (a, on) {
                    (Alarm::InsufficientCpu { node }, Resource::Any | Resource::Cpu) => {
                        Some(format!("cpu@{node}"))
                    }
                    (Alarm::InsufficientBandwidth { pipe }, Resource::Any) => {
                        Some(format!("pipe:{pipe}"))
                    }
                    (Alarm::InsufficientBandwidth { pipe }, Resource::Pipe(p)) if p == pipe => {
                        Some(format!("pipe:{pipe}"))
                    }
                    _ => None,
                })
                .collect();
            if !hit.is_empty() {
                fields.push(f("alarms", hit.join(",")));
            }
            !hit.is_empty()
        }
        Condition::VipOwnerChanged { vip } => match prev {
            Some(p) => {
                let mut hit = false;
                for v in &s.vips {
                    if vip.as_ref().is_some_and(|n| *n != v.name) {
                        continue;
                    }
                    if let Some(before) = p.owners.get(&v.name) {
                        if *before != v.owner && !hit {
                            hit = true;
                            fields.extend([
                                f("vip", &v.name),
                                f("from", opt(*before)),
                                f("to", opt(v.owner)),
                            ]);
                        }
                    }
                }
                hit
            }
            None => false,
        },
        Condition::VipUnhealthy { vip, node } => {
            let mut hit = false;
            for v in &s.vips {
                if vip.as_ref().is_some_and(|n| *n != v.name) {
                    continue;
                }
                let bad: Vec<NodeId> = v
                    .unhealthy
                    .iter()
                    .copied()
                    .filter(|n| node.is_none_or(|x| x == *n))
                    .collect();
                if !bad.is_empty() && !hit {
                    hit = true;
                    fields.extend([f("vip", &v.name), f("nodes", list(bad))]);
                }
            }
            hit
        }
        Condition::InstancesChanged { job } => match prev {
            Some(p) => {
                let now = s
                    .jobs
                    .iter()
                    .find(|j| &j.job == job)
                    .map_or(0, |j| j.instances);
                let before = p.instances.get(job).copied().unwrap_or(0);
                if now != before {
                    fields.extend([f("job", job), f("from", before), f("to", now)]);
                }
                now != before
            }
            None => false,
        },
        Condition::ProcessExited { job } => {
            let exits: Vec<_> = s.exits.iter().filter(|e| &e.job == job).collect();
            if !exits.is_empty() {
                fields.extend([
                    f("job", job),
                    f(
                        "pids",
                        exits
                            .iter()
                            .map(|e| e.pid.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    f("nodes", list(exits.iter().map(|e| e.node))),
                    f("count", exits.iter().map(|e| e.count).sum::<u64>()),
                    f(
                        "processes",
                        exits
                            .iter()
                            .map(|e| e.comm.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                ]);
            }
            !exits.is_empty()
        }
    };
    Observation { holds, fields }
}
