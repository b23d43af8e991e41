//! The pool from any server: this node's bounded summary, gossiped at the
//! low-frequency interval (`headroom_control::policy::summary` is the
//! format), and every member's latest one as the status model shows it
//! (names, bit/s, percent; rates over the stated window).

use std::collections::BTreeMap;

use headroom_clock::Timestamp;
use headroom_config::Config;
use headroom_control::policy::summary::{
    Health, JobSummary, NodeSummary, PipeUse, PoolNode, VipSummary,
};

use crate::status::{PoolJobStatus, PoolNodeStatus, PoolPipeUse, PoolVipStatus, Status};

/// Per job: (bytes in, bytes out), cumulative.
type JobBytes = BTreeMap<String, (u64, u64)>;

/// The job byte counters at the previous summary, for rates.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    last: Option<(Timestamp, JobBytes)>,
}

impl Rates {
    /// This node's summary at `now` from its status `st` (`cfg` in force).
    pub(crate) fn summary(&mut self, now: Timestamp, st: &Status, cfg: &Config) -> NodeSummary {
        let counters: JobBytes = st
            .jobs
            .iter()
            .map(|j| (j.name.clone(), (j.bytes_in, j.bytes_out)))
            .collect();
        let (window, prev) = match self.last.take() {
            Some((t, prev)) => ((now - t).as_secs_f64(), prev),
            None => (0.0, BTreeMap::new()),
        };
        let rate = |now: u64, before: Option<u64>| match before {
            Some(b) if window > 0.0 => (now.saturating_sub(b) as f64 * 8.0 / window) as u64,
            _ => 0,
        };
        let interval = cfg.control.high_freq_interval.as_secs_f64().max(1e-3);
        let per_s = |bytes: u64| (bytes as f64 * 8.0 / interval) as u64;
        let cpu = st.cpu.as_ref();
        let mut jobs: Vec<JobSummary> = st
            .jobs
            .iter()
            .filter(|j| !j.removed)
            .map(|j| {
                let before = prev.get(&j.name);
                let pipe = st.pipes.iter().find_map(|p| {
                    let (_, credit, sent, _, dropped) =
                        p.jobs.iter().find(|(n, ..)| *n == j.name)?;
                    let booked = cfg
                        .jobs
                        .iter()
                        .find(|c| c.name == j.name)
                        .and_then(|c| c.bookings.iter().find(|b| b.pipe == p.name))
                        .map_or(0, |b| b.rate.bps(p.capacity_bps));
                    Some(PipeUse {
                        pipe: p.name.clone(),
                        booked_bps: booked,
                        granted_bps: per_s(*credit),
                        sent_bps: per_s(*sent),
                        dropped_bps: per_s(*dropped),
                    })
                });
                let cj = cpu.and_then(|c| c.jobs.iter().find(|cj| cj.name == j.name));
                let (last_exit_pid, last_exit_comm) =
                    cj.and_then(|c| c.last_exit.clone()).unwrap_or_default();
                JobSummary {
                    name: j.name.clone(),
                    rx_bps: rate(j.bytes_in, before.map(|b| b.0)),
                    tx_bps: rate(j.bytes_out, before.map(|b| b.1)),
                    cpu_permille: cj.map_or(0, |cj| (cj.cores_used * 1000.0) as u32),
                    connections: j.flows.min(u64::from(u32::MAX)) as u32,
                    exits: cj.map_or(0, |c| c.exits),
                    last_exit_pid,
                    last_exit_comm,
                    pipe,
                }
            })
            .collect();
        // The busiest first: they are the ones a full budget keeps.
        jobs.sort_by_key(|j| std::cmp::Reverse(j.rx_bps + j.tx_bps));
        let vips: Vec<VipSummary> = st
            .director
            .iter()
            .flat_map(|d| d.services.iter())
            .map(|v| VipSummary {
                name: v.name.clone(),
                placements: v
                    .placements
                    .iter()
                    .map(|(_, n)| *n)
                    .sum::<u64>()
                    .min(u64::from(u32::MAX)) as u32,
                flows: v.new_flows.min(u64::from(u32::MAX)) as u32,
                health: if v.unhealthy.contains(&u32::from(st.node_id)) {
                    Health::Down
                } else if v.serving.contains(&u32::from(st.node_id)) {
                    Health::Up
                } else {
                    Health::Unknown
                },
            })
            .collect();
        // Not measured without the process scheduler: 0 cores says so.
        let u = st.cpu_use();
        self.last = Some((now, counters));
        NodeSummary {
            window_ms: (window * 1e3) as u32,
            policy: None,
            cores: u.cores.round() as u32,
            cpu_permille: (u.used * 1000.0) as u32,
            headroom_permille: (u.headroom() * 1000.0) as u32,
            jobs_total: jobs.len() as u32,
            jobs,
            vips_total: vips.len() as u32,
            vips,
        }
    }
}

/// Every member with its latest summary, for the status.
pub(crate) fn pool_status(view: Vec<PoolNode>) -> Vec<PoolNodeStatus> {
    let mbit = |b: u64| b as f64 / 1e6;
    view.into_iter()
        .map(|p| {
            let state = crate::pool::state_name(p.state);
            let mut n = PoolNodeStatus {
                node: p.node as u16,
                state: state.into(),
                age_ms: p.age.map(|a| a.as_millis() as u64),
                error: p.error.map(|e| e.to_string()),
                ..Default::default()
            };
            if let Some(s) = p.summary {
                n.window_ms = s.window_ms;
                n.policy = s.policy.map(|v| v.to_string());
                n.cores = s.cores;
                n.cpu_cores = f64::from(s.cpu_permille) / 1000.0;
                n.headroom_percent = f64::from(s.headroom_permille) / 10.0;
                n.jobs_total = s.jobs_total;
                n.vips_total = s.vips_total;
                n.jobs = s
                    .jobs
                    .into_iter()
                    .map(|j| PoolJobStatus {
                        name: j.name,
                        rx_mbit_s: mbit(j.rx_bps),
                        tx_mbit_s: mbit(j.tx_bps),
                        cpu_cores: f64::from(j.cpu_permille) / 1000.0,
                        connections: j.connections,
                        pipe: j.pipe.map(|u| PoolPipeUse {
                            pipe: u.pipe,
                            booked_mbit_s: mbit(u.booked_bps),
                            granted_mbit_s: mbit(u.granted_bps),
                            sent_mbit_s: mbit(u.sent_bps),
                            dropped_mbit_s: mbit(u.dropped_bps),
                        }),
                    })
                    .collect();
                n.vips = s
                    .vips
                    .into_iter()
                    .map(|v| PoolVipStatus {
                        name: v.name,
                        placements: v.placements,
                        flows: v.flows,
                        health: v.health.name().into(),
                    })
                    .collect();
            }
            n
        })
        .collect()
}
