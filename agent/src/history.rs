//! What the control thread hands the monitoring history: once a second a
//! [`NodeSample`] made from the one status model (so history, `headroomctl
//! status`, metrics and the pool summaries never disagree), and once a
//! minute each peer's latest gossiped summary ([`SummaryMinutes`]). Pure:
//! the daemon reads the clocks and owns the writer thread.

use std::time::Duration;

use headroom_clock::Timestamp;
use headroom_config::Config;
use headroom_control::exchange::MemberState;
use headroom_control::policy::summary::{NodeSummary, PoolNode};
use headroom_history::sample::{JobPipeValues, JobValues, NodeValues, PipeValues, VipValues};
use headroom_history::{NodeSample, WallTime};

use crate::status::Status;

/// A job uses (nearly) all its CPU target and wants more at this share of it
/// (the process scheduler's own threshold).
const WANTS_MORE: f64 = 0.9;

/// This node's second `at` as history records it. `run` and `run_started`
/// name the daemon run the status' cumulative counters count from.
pub fn node_sample(
    st: &Status,
    cfg: &Config,
    at: WallTime,
    run: u64,
    run_started: WallTime,
) -> NodeSample {
    let cpu = st.cpu.as_ref();
    let u = st.cpu_use();
    let cores = u.cores;
    let ex = st.exchange.as_ref();
    let node = NodeValues {
        cores,
        cpu_cores: u.used,
        // What the jobs leave of the cores (as the pool summaries say it).
        headroom_percent: u.headroom() * 100.0,
        exchange_tx_bytes: ex.map_or(0, |e| e.bytes_sent),
        exchange_rx_bytes: ex.map_or(0, |e| e.bytes_received),
        exchange_tx_packets: ex.map_or(0, |e| e.datagrams_sent),
        exchange_rx_packets: ex.map_or(0, |e| e.datagrams_received),
    };
    let jobs = st
        .jobs
        .iter()
        .map(|j| {
            let c = cpu.and_then(|c| c.jobs.iter().find(|cj| cj.name == j.name));
            let policy = cfg.jobs.iter().find(|c| c.name == j.name);
            let target = c
                .filter(|_| policy.is_some_and(|p| p.cpu.is_some()))
                .map(|c| c.target_percent / 100.0 * cores);
            let used = c.map_or(0.0, |c| c.cores_used);
            JobValues {
                name: j.name.clone(),
                bytes_in: j.bytes_in,
                bytes_out: j.bytes_out,
                packets_in: j.packets_in,
                packets_out: j.packets_out,
                cpu_cores: used,
                cpu_target_cores: target,
                cpu_wants_more: target.is_some_and(|t| t > 0.0 && used >= WANTS_MORE * t),
                rss_bytes: c.map_or(0, |c| c.rss_bytes),
                processes: c.map_or(0, |c| c.pids.len() as u32),
                connections: j.flows,
                pipes: st
                    .pipes
                    .iter()
                    .filter_map(|p| {
                        let booked = policy
                            .and_then(|pc| pc.bookings.iter().find(|b| b.pipe == p.name))
                            .map(|b| b.rate.bps(p.capacity_bps));
                        let t = p.totals.iter().find(|t| t.job == j.name);
                        if t.is_none() && booked.is_none() {
                            return None;
                        }
                        let queued = p
                            .jobs
                            .iter()
                            .find(|(n, ..)| *n == j.name)
                            .map_or(0, |(_, _, _, q, _)| *q);
                        Some(JobPipeValues {
                            pipe: p.name.clone(),
                            demand_bytes: t.map_or(0, |t| t.demand_bytes),
                            granted_bytes: t.map_or(0, |t| t.granted_bytes),
                            sent_bytes: t.map_or(0, |t| t.sent_bytes),
                            dropped_bytes: t.map_or(0, |t| t.dropped_bytes),
                            queued_bytes: queued,
                            booked_bps: booked,
                        })
                    })
                    .collect(),
            }
        })
        .collect();
    let pipes = st
        .pipes
        .iter()
        .map(|p| {
            let sum = |f: fn(&crate::status::PipeJobTotals) -> u64| p.totals.iter().map(f).sum();
            PipeValues {
                name: p.name.clone(),
                capacity_bps: p.capacity_bps,
                demand_bytes: sum(|t| t.demand_bytes),
                granted_bytes: sum(|t| t.granted_bytes),
                sent_bytes: sum(|t| t.sent_bytes),
                dropped_bytes: sum(|t| t.dropped_bytes),
                queued_bytes: p.jobs.iter().map(|j| j.3).sum(),
                nodes: p.nodes as u32,
            }
        })
        .collect();
    let vips = st
        .director
        .iter()
        .flat_map(|d| d.services.iter())
        .map(|v| VipValues {
            name: v.name.clone(),
            new_connections: v.new_flows,
            packets: v.packets,
            bytes: v.bytes,
            placements: v.placements.clone(),
            serving_members: v.serving.len() as u32,
            unhealthy_members: v.unhealthy.len() as u32,
        })
        .collect();
    NodeSample {
        at,
        run,
        run_started,
        node,
        jobs,
        pipes,
        vips,
    }
}

/// Hands history each live peer's latest gossiped summary once per sample.
/// A summary holds the peer's rates over a short window; history adds every
/// one into its one-minute point weighted by the time since the previous
/// one it was given for that peer, so a minute's point is the time average
/// of the rates seen in it. (A summary that did not change is not gossiped
/// again: waiting for new ones would under-weigh quiet times.)
#[derive(Debug, Default, Clone)]
pub struct SummaryLog {
    /// Per node, when its summary was last handed to history.
    last: std::collections::HashMap<u32, Timestamp>,
}

/// The longest time one summary stands for (a gap in the samples beyond it
/// is a gap in the history, not a longer window).
const MAX_WINDOW: Duration = Duration::from_secs(5);

impl SummaryLog {
    /// The summaries of `pool` (this node's view at `now`) to record: every
    /// alive peer's but `me`'s, each with the window it stands for.
    pub fn due(&mut self, now: Timestamp, me: u32, pool: Vec<PoolNode>) -> Vec<(u32, NodeSummary)> {
        let mut out = Vec::new();
        let mut alive = Vec::new();
        for p in pool {
            if p.node == me || p.state != MemberState::Alive {
                continue;
            }
            alive.push(p.node);
            let Some(mut s) = p.summary else { continue };
            let window = self
                .last
                .insert(p.node, now)
                .map_or(Duration::from_secs(1), |t| now.saturating_duration_since(t))
                .clamp(Duration::from_secs(1), MAX_WINDOW);
            s.window_ms = window.as_millis() as u32;
            out.push((p.node, s));
        }
        self.last.retain(|n, _| alive.contains(n));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{CpuJobStatus, CpuStatus, JobStatus, PipeJobTotals, PipeStatus};

    fn cfg() -> Config {
        Config::parse(
            r#"
[node]
id = 1
address = "10.0.0.1"
[interfaces]
outer = "eth0"
inner = "eth1"
[[pipe]]
name = "wan"
capacity = "100Mbit"
remote = "0.0.0.0/0"
direction = "out"
[[job]]
name = "web"
cpu = { pool_percent = 50 }
booking = [{ pipe = "wan", rate = "40%" }]
[[job.process]]
name = "nginx"
"#,
            std::path::Path::new("test.toml"),
        )
        .unwrap()
    }

    #[test]
    fn samples_carry_the_status_counters_and_the_policy_in_force() {
        let st = Status {
            jobs: vec![JobStatus {
                name: "web".into(),
                bytes_in: 1000,
                bytes_out: 5000,
                packets_in: 10,
                packets_out: 20,
                flows: 3,
                removed: false,
                response: None,
            }],
            cpu: Some(CpuStatus {
                local_cores: 2.0,
                jobs: vec![CpuJobStatus {
                    name: "web".into(),
                    pids: vec![7, 8],
                    cores_used: 0.95,
                    rss_bytes: 4096,
                    target_percent: 50.0,
                    ..Default::default()
                }],
                unmanaged_cores: 0.25,
                ..Default::default()
            }),
            pipes: vec![PipeStatus {
                name: "wan".into(),
                capacity_bps: 100_000_000,
                nodes: 3,
                jobs: vec![("web".into(), 100, 90, 64, 0)],
                totals: vec![PipeJobTotals {
                    job: "web".into(),
                    demand_bytes: 900,
                    granted_bytes: 800,
                    sent_bytes: 700,
                    dropped_bytes: 100,
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let s = node_sample(
            &st,
            &cfg(),
            WallTime::from_unix_secs(100),
            7,
            WallTime::from_unix_secs(90),
        );
        assert_eq!((s.run, s.node.cores, s.node.cpu_cores), (7, 2.0, 1.2));
        assert!((s.node.headroom_percent - 52.5).abs() < 1e-9);
        let j = &s.jobs[0];
        assert_eq!((j.bytes_in, j.bytes_out, j.packets_out), (1000, 5000, 20));
        assert_eq!((j.processes, j.rss_bytes, j.connections), (2, 4096, 3));
        assert_eq!(j.cpu_target_cores, Some(1.0));
        assert!(j.cpu_wants_more);
        let p = &j.pipes[0];
        assert_eq!(
            (
                p.demand_bytes,
                p.granted_bytes,
                p.sent_bytes,
                p.dropped_bytes
            ),
            (900, 800, 700, 100)
        );
        assert_eq!((p.queued_bytes, p.booked_bps), (64, Some(40_000_000)));
        let wan = &s.pipes[0];
        assert_eq!(
            (wan.demand_bytes, wan.queued_bytes, wan.nodes),
            (900, 64, 3)
        );
    }

    #[test]
    fn each_live_peer_summary_stands_for_the_time_since_the_last() {
        let mut log = SummaryLog::default();
        let t = |ms: u64| Timestamp::from_nanos(ms * 1_000_000);
        let peer = |node: u32, state: MemberState| PoolNode {
            node,
            state,
            summary: Some(NodeSummary {
                window_ms: 500,
                ..Default::default()
            }),
            age: Some(Duration::from_millis(100)),
            error: None,
        };
        // Node 1 is this one; 2 and 3 alive; 4 failed.
        let view = |three: MemberState| {
            vec![
                peer(1, MemberState::Alive),
                peer(2, MemberState::Alive),
                peer(3, three),
                peer(4, MemberState::Failed),
            ]
        };
        let got = |v: Vec<(u32, NodeSummary)>| -> Vec<(u32, u32)> {
            v.into_iter().map(|(n, s)| (n, s.window_ms)).collect()
        };
        let alive = MemberState::Alive;
        assert_eq!(
            got(log.due(t(10_000), 1, view(alive))),
            [(2, 1000), (3, 1000)]
        );
        assert_eq!(
            got(log.due(t(11_020), 1, view(alive))),
            [(2, 1020), (3, 1020)]
        );
        // A stall stands for at most 5 s.
        assert_eq!(
            got(log.due(t(30_000), 1, view(alive))),
            [(2, 5000), (3, 5000)]
        );
        // Node 3 fails and comes back: its first summary stands for 1 s.
        assert_eq!(
            got(log.due(t(31_000), 1, view(MemberState::Failed))),
            [(2, 1000)]
        );
        assert_eq!(
            got(log.due(t(32_000), 1, view(alive))),
            [(2, 1000), (3, 1000)]
        );
    }
}
