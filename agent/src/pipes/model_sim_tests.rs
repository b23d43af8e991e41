//! Closed-loop simulation of the allocator with a packet-level model of each node's pacer,
//! driven by the daemon's pipes loop ([`Pipes`]).
//!
//! Time advances one exchange interval at a time. At the start of an interval every live node
//! turns what its pacer measured into a demand ([`Pipes::measure`]), the demands are gossiped,
//! every node allocates for itself from what it sees ([`Pipes::allocate`]), and the pacers
//! then send whole packets on the granted credit (own credit first, then the node's immediate
//! credit) while traffic arrives in small slices spread over the interval. Leftover credit is
//! lost; a packet sent on the last byte of credit becomes debt, paid first from the next grant
//! (after what was left of the immediate credit pays for it).

use std::collections::HashMap;

use headroom_clock::Timestamp;
use headroom_control::allocator::{pay_overdraft, JobBooking, PipeSpec, Rate, DEFAULT_INTERVAL_NS};
use headroom_dataplane::pacer::{JobCredit, JobSample, PacerError};

use super::*;

/// Job names on the wire: the job id in decimal.
const NAMES: [&str; 4] = ["0", "1", "2", "3"];

fn name_of(id: u16) -> Option<&'static str> {
    NAMES.get(usize::from(id)).copied()
}

fn id_of(name: &str) -> Option<u16> {
    name.parse().ok()
}

const PKT: u64 = 1500;
/// Slices of an interval over which arrivals are spread and credit trickles in.
const SLICES: u64 = 20;

struct Job {
    id: u16,
    /// Offered bytes per interval as a function of the interval number.
    offered: fn(u64) -> u64,
    queue_limit: u64,
    queued: u64,
    arrived_last: u64,
    debt: u64,
    sent_log: Vec<u64>,
}

/// The packet-level pacer model of one node, as the pipes loop sees it.
#[derive(Default)]
struct Model {
    jobs: Vec<Job>,
    /// The last grant: credit per job and the node's immediate credit.
    credit: HashMap<u16, u64>,
    immediate: u64,
}

impl PacerPort for Model {
    fn sample(
        &mut self,
        _pipe: usize,
        _now: Timestamp,
        out: &mut Vec<JobSample>,
    ) -> Result<(), PacerError> {
        out.clear();
        out.extend(self.jobs.iter().map(|j| JobSample {
            job: j.id,
            queued_bytes: j.queued,
            arrived_bytes: j.arrived_last,
            sent_bytes: j.sent_log.last().copied().unwrap_or(0),
            debt_bytes: j.debt,
            ..JobSample::default()
        }));
        Ok(())
    }

    fn set_grants(
        &mut self,
        _pipe: usize,
        _now: Timestamp,
        immediate: u64,
        credits: &[JobCredit],
    ) -> Result<(), PacerError> {
        self.immediate = immediate;
        self.credit = credits.iter().map(|c| (c.job, c.credit_bytes)).collect();
        Ok(())
    }
}

struct Node {
    pipes: Pipes<Model>,
    /// Interval from which the node is dead (sends and gossips nothing).
    dies_at: Option<u64>,
    /// Last gossip, which peers keep using until membership notices a death.
    last_gossip: Vec<u8>,
}

impl Node {
    fn jobs(&self) -> &[Job] {
        &self.pipes.port().jobs
    }
}

struct Sim {
    pipe: PipeSpec,
    /// Pool-wide booking table.
    bookings: Vec<JobBooking>,
    nodes: Vec<Node>,
    /// Intervals it takes membership to notice a dead node.
    detect: u64,
    total_log: Vec<u64>,
}

impl Sim {
    fn new(pipe: PipeSpec, detect: u64) -> Self {
        Self {
            pipe,
            bookings: Vec::new(),
            nodes: Vec::new(),
            detect,
            total_log: Vec::new(),
        }
    }

    fn node(&mut self, dies_at: Option<u64>) -> usize {
        let def = PipeDef {
            name: "uplink".into(),
            spec: self.pipe,
            direction: Default::default(),
            bookings: Vec::new(),
        };
        self.nodes.push(Node {
            pipes: Pipes::new(vec![def], Model::default()),
            dies_at,
            last_gossip: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// Runs job `id` on `node`; its booking holds across the pool.
    fn job(&mut self, node: usize, id: u16, booked_pct: u8, offered: fn(u64) -> u64) {
        if booked_pct > 0 && self.bookings.iter().all(|b| b.job != id) {
            self.bookings.push(JobBooking {
                job: id,
                booked: Rate::Percent(booked_pct),
                cap: None,
            });
        }
        for n in &mut self.nodes {
            n.pipes.set_pipe_bookings(0, self.bookings.clone());
        }
        let queue_limit = self.pipe.capacity_bytes() / 2;
        self.nodes[node].pipes.port_mut().jobs.push(Job {
            id,
            offered,
            queue_limit,
            queued: 0,
            arrived_last: 0,
            debt: 0,
            sent_log: Vec::new(),
        });
    }

    fn alive(&self, n: usize, k: u64) -> bool {
        match self.nodes[n].dies_at {
            Some(d) => k < d,
            None => true,
        }
    }

    /// Seen as a member by the others (dead for less than the detection delay).
    fn member(&self, n: usize, k: u64) -> bool {
        match self.nodes[n].dies_at {
            Some(d) => k < d + self.detect,
            None => true,
        }
    }

    fn run(&mut self, intervals: u64) {
        for _ in 0..intervals {
            self.step();
        }
    }

    fn step(&mut self) {
        let k = self.total_log.len() as u64;
        let now = Timestamp::from_nanos(k * self.pipe.interval_ns);
        // 1. Measure and gossip.
        for n in 0..self.nodes.len() {
            if self.alive(n, k) {
                self.nodes[n].last_gossip = self.nodes[n].pipes.measure(now, name_of);
            }
        }
        // 2. Allocate and send.
        let mut total = 0;
        for n in 0..self.nodes.len() {
            if !self.alive(n, k) {
                for j in &mut self.nodes[n].pipes.port_mut().jobs {
                    j.sent_log.push(0);
                }
                continue;
            }
            let peers: Vec<(u32, Vec<u8>)> = (0..self.nodes.len())
                .filter(|&o| o != n && self.member(o, k))
                .map(|o| (o as u32, self.nodes[o].last_gossip.clone()))
                .collect();
            self.nodes[n]
                .pipes
                .allocate(now, peers.iter().map(|(o, e)| (*o, e.as_slice())), id_of);
            total += self.run_node(n, k);
        }
        self.total_log.push(total);
    }

    /// Sends one interval of node `n`'s traffic on its last grant; returns the bytes sent.
    fn run_node(&mut self, n: usize, k: u64) -> u64 {
        let model = self.nodes[n].pipes.port_mut();
        let immediate = model.immediate;
        let granted: Vec<i64> = model
            .jobs
            .iter()
            .map(|j| model.credit.get(&j.id).copied().unwrap_or(0) as i64)
            .collect();
        let jobs = &mut model.jobs;
        // Available own credit: starts at minus the debt, trickles in over the interval.
        let mut avail: Vec<i64> = jobs.iter().map(|j| -(j.debt as i64)).collect();
        let mut imm: i64 = 0;
        let mut imm_last = None;
        let mut sent = vec![0u64; jobs.len()];
        let mut arrived = vec![0u64; jobs.len()];
        let slice = |total: i64, s: u64| {
            total * s as i64 / SLICES as i64 - total * (s as i64 - 1) / SLICES as i64
        };
        for s in 1..=SLICES {
            for (i, j) in jobs.iter_mut().enumerate() {
                let offered = (j.offered)(k) as i64;
                let a = slice(offered, s) as u64;
                arrived[i] += a;
                j.queued = (j.queued + a).min(j.queue_limit);
                avail[i] += slice(granted[i], s);
            }
            imm += slice(immediate as i64, s);
            // Round-robin, one packet per job per round, own credit before immediate credit.
            loop {
                let mut progress = false;
                for (i, j) in jobs.iter_mut().enumerate() {
                    if j.queued == 0 {
                        continue;
                    }
                    let len = j.queued.min(PKT);
                    if avail[i] > 0 {
                        avail[i] -= len as i64;
                    } else if imm > 0 {
                        imm -= len as i64;
                        imm_last = Some(i);
                    } else {
                        continue;
                    }
                    j.queued -= len;
                    sent[i] += len;
                    progress = true;
                }
                if !progress {
                    break;
                }
            }
        }
        // Debt: what each job overdrew (the last immediate spender owns an overdrawn immediate
        // credit); the immediate credit left unused then pays it off. Leftover credit is lost.
        let mut debts: Vec<u64> = avail.iter().map(|a| (-a).max(0) as u64).collect();
        if let (true, Some(i)) = (imm < 0, imm_last) {
            debts[i] += (-imm) as u64;
        }
        let mut unused = imm.max(0) as u64;
        let mut out = 0;
        for (i, j) in jobs.iter_mut().enumerate() {
            let left = pay_overdraft(debts[i], unused);
            unused -= debts[i] - left;
            j.debt = left;
            j.arrived_last = arrived[i];
            j.sent_log.push(sent[i]);
            out += sent[i];
        }
        out
    }

    fn sent(&self, node: usize, job: u16) -> &[u64] {
        &self.nodes[node]
            .jobs()
            .iter()
            .find(|j| j.id == job)
            .unwrap()
            .sent_log
    }
}

fn mean(xs: &[u64]) -> f64 {
    xs.iter().sum::<u64>() as f64 / xs.len() as f64
}

fn assert_within(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= want * tol,
        "{what}: got {got:.0}, want {want:.0} +- {:.0}%",
        tol * 100.0
    );
}

fn pipe() -> PipeSpec {
    PipeSpec::new(1_000_000_000, 50, DEFAULT_INTERVAL_NS).unwrap()
}

/// Offers twice the capacity of `pipe()` (5M bytes per interval).
fn flood(_: u64) -> u64 {
    5_000_000
}

fn flood_until_60(k: u64) -> u64 {
    if k < 60 {
        5_000_000
    } else {
        0
    }
}

fn flood_from_30(k: u64) -> u64 {
    if k < 30 {
        0
    } else {
        5_000_000
    }
}

/// 5 % of the pipe, steady.
fn light(_: u64) -> u64 {
    125_000
}

#[test]
fn bookings_honoured_then_survivor_takes_the_pipe() {
    let cap = pipe().capacity_bytes() as f64;
    let mut sim = Sim::new(pipe(), 2);
    let a = sim.node(None);
    let b = sim.node(None);
    let idle = sim.node(None);
    sim.job(a, 1, 60, flood);
    sim.job(b, 2, 40, flood_until_60);
    let _ = idle;
    sim.run(100);

    // Steady state: each job within 5 % of its booking, the pipe within 3 % of capacity.
    assert_within("job 1", mean(&sim.sent(a, 1)[10..60]), 0.6 * cap, 0.05);
    assert_within("job 2", mean(&sim.sent(b, 2)[10..60]), 0.4 * cap, 0.05);
    assert_within("pipe", mean(&sim.total_log[10..60]), cap, 0.03);
    // Job 2 stops at interval 60: by interval 63 job 1 has the whole pipe.
    for k in 63..100 {
        assert_within(
            &format!("job 1 alone, interval {k}"),
            sim.sent(a, 1)[k] as f64,
            cap,
            0.03,
        );
    }
    // Never more than the pipe plus one packet per job.
    assert!(sim
        .total_log
        .iter()
        .all(|&t| t <= pipe().capacity_bytes() + 2 * PKT));
}

#[test]
fn both_jobs_on_one_node_share_by_booking() {
    let cap = pipe().capacity_bytes() as f64;
    let mut sim = Sim::new(pipe(), 2);
    let n = sim.node(None);
    sim.node(None);
    sim.job(n, 1, 60, flood);
    sim.job(n, 2, 40, flood_until_60);
    sim.run(80);
    assert_within("job 1", mean(&sim.sent(n, 1)[10..60]), 0.6 * cap, 0.05);
    assert_within("job 2", mean(&sim.sent(n, 2)[10..60]), 0.4 * cap, 0.05);
    assert_within("pipe", mean(&sim.total_log[10..60]), cap, 0.03);
    for k in 63..80 {
        assert_within(
            &format!("job 1 alone, interval {k}"),
            sim.sent(n, 1)[k] as f64,
            cap,
            0.03,
        );
    }
}

#[test]
fn dead_node_capacity_goes_to_survivor_once_detected() {
    let cap = pipe().capacity_bytes() as f64;
    let detect = 3;
    let mut sim = Sim::new(pipe(), detect);
    let a = sim.node(None);
    let b = sim.node(Some(40));
    sim.job(a, 1, 60, flood);
    sim.job(b, 2, 40, flood);
    sim.run(70);
    assert_within(
        "job 1 before",
        mean(&sim.sent(a, 1)[10..40]),
        0.6 * cap,
        0.05,
    );
    // Until membership notices, the dead node's last demand still holds its share.
    assert_within(
        "job 1 undetected",
        sim.sent(a, 1)[40] as f64,
        0.6 * cap,
        0.05,
    );
    for k in (40 + detect + 3) as usize..70 {
        assert_within(
            &format!("job 1 alone, interval {k}"),
            sim.sent(a, 1)[k] as f64,
            cap,
            0.03,
        );
    }
}

#[test]
fn idle_job_ramps_up_to_its_booking() {
    let cap = pipe().capacity_bytes() as f64;
    let mut sim = Sim::new(pipe(), 2);
    let a = sim.node(None);
    let b = sim.node(None);
    sim.job(a, 1, 60, flood_from_30);
    sim.job(b, 2, 40, flood);
    sim.run(60);
    // Alone, job 2 fills the pipe (minus job 1's minimum request).
    assert_within("job 2 alone", mean(&sim.sent(b, 2)[10..30]), cap, 0.03);
    // The minimum request lets job 1 send at once; it has its booking within 3 intervals.
    assert!(sim.sent(a, 1)[30] > 0);
    for k in 33..60 {
        assert_within(
            &format!("job 1 ramped, interval {k}"),
            sim.sent(a, 1)[k] as f64,
            0.6 * cap,
            0.05,
        );
        assert_within(
            &format!("job 2 back, interval {k}"),
            sim.sent(b, 2)[k] as f64,
            0.4 * cap,
            0.05,
        );
    }
}

#[test]
fn light_load_is_never_queued_for_long_and_never_dropped() {
    let mut sim = Sim::new(pipe(), 2);
    let a = sim.node(None);
    let b = sim.node(None);
    sim.job(a, 1, 0, light);
    sim.job(b, 2, 10, light);
    sim.run(30);
    // Everything offered is sent in the interval it arrives in, from the first interval on
    // (immediate credit), and nothing is left queued.
    for (n, j) in [(a, 1), (b, 2)] {
        assert!(
            sim.sent(n, j).iter().all(|&s| s == light(0)),
            "{:?}",
            sim.sent(n, j)
        );
        assert_eq!(sim.nodes[n].jobs()[0].queued, 0);
    }
}

#[test]
fn unbooked_jobs_share_the_rest_evenly() {
    let cap = pipe().capacity_bytes() as f64;
    let mut sim = Sim::new(pipe(), 2);
    let a = sim.node(None);
    let b = sim.node(None);
    let c = sim.node(None);
    sim.job(a, 1, 20, flood);
    sim.job(b, 2, 0, flood);
    sim.job(c, 3, 0, flood);
    sim.run(40);
    // Job 1 has its 20 %; jobs 2 and 3 want the whole pipe each and split the other 80 %.
    // Job 1's unbooked 80 % competes too: (100 - 20) * 80 / (80 + 100 + 100) = 22.9 % extra.
    let extra = 0.8 * 0.8 / 2.8;
    assert_within(
        "job 1",
        mean(&sim.sent(a, 1)[10..]),
        (0.2 + extra) * cap,
        0.05,
    );
    assert_within("job 2", mean(&sim.sent(b, 2)[10..]), 0.8 / 2.8 * cap, 0.05);
    assert_within("job 3", mean(&sim.sent(c, 3)[10..]), 0.8 / 2.8 * cap, 0.05);
    assert_within("pipe", mean(&sim.total_log[10..]), cap, 0.03);
}

impl Sim {
    /// Bytes job `job` sent in interval `k`, over all nodes.
    fn job_total(&self, job: u16, k: usize) -> u64 {
        self.nodes
            .iter()
            .flat_map(|n| n.jobs().iter())
            .filter(|j| j.id == job)
            .map(|j| j.sent_log[k])
            .sum()
    }

    fn job_mean(&self, job: u16, range: std::ops::Range<usize>) -> f64 {
        let n = range.len() as f64;
        range.map(|k| self.job_total(job, k)).sum::<u64>() as f64 / n
    }
}

fn flood_until_70(k: u64) -> u64 {
    if k < 70 {
        5_000_000
    } else {
        0
    }
}

#[test]
fn jobs_spanning_nodes_keep_their_bookings_through_a_node_death() {
    let cap = pipe().capacity_bytes() as f64;
    let detect = 2;
    let mut sim = Sim::new(pipe(), detect);
    let nodes = [sim.node(None), sim.node(None), sim.node(Some(40))];
    for n in nodes {
        sim.job(n, 1, 60, flood);
        sim.job(n, 2, 40, flood_until_70);
    }
    sim.run(100);
    let pipe_mean = |r: std::ops::Range<usize>| mean(&sim.total_log[r]);
    // Three nodes each claim both bookings; pool-wide they still get 60 / 40.
    assert_within("job 1", sim.job_mean(1, 10..40), 0.6 * cap, 0.05);
    assert_within("job 2", sim.job_mean(2, 10..40), 0.4 * cap, 0.05);
    assert_within("pipe", pipe_mean(10..40), cap, 0.03);
    // Node 2 dies at 40; once membership drops it the two survivors carry both jobs.
    let after = 40 + detect as usize + 3;
    assert_within(
        "job 1 after death",
        sim.job_mean(1, after..70),
        0.6 * cap,
        0.05,
    );
    assert_within(
        "job 2 after death",
        sim.job_mean(2, after..70),
        0.4 * cap,
        0.05,
    );
    assert_within("pipe after death", pipe_mean(after..70), cap, 0.03);
    // Job 2 stops everywhere at 70: job 1 has the whole pipe by 73.
    for k in 73..100 {
        assert_within(
            &format!("job 1 alone, interval {k}"),
            sim.job_total(1, k) as f64,
            cap,
            0.03,
        );
    }
}

#[test]
fn booking_follows_a_job_whose_traffic_is_uneven_across_nodes() {
    let cap = pipe().capacity_bytes() as f64;
    let mut sim = Sim::new(pipe(), 2);
    let a = sim.node(None);
    let b = sim.node(None);
    // Job 1 floods from node A and trickles (5 %) from node B; job 2 floods from node B.
    sim.job(a, 1, 60, flood);
    sim.job(b, 1, 60, light);
    sim.job(b, 2, 40, flood);
    sim.run(40);
    assert_within("job 1", sim.job_mean(1, 10..40), 0.6 * cap, 0.05);
    assert_within("job 2", sim.job_mean(2, 10..40), 0.4 * cap, 0.05);
    // The job offers more than its booking as a whole, so its booking is split in proportion
    // to demand: the trickle gets 1.5M / (1.5M + 125k) = 92 % of what it offers, at least.
    assert!(
        sim.sent(b, 1)[10..]
            .iter()
            .all(|&s| s >= light(0) * 92 / 100),
        "{:?}",
        sim.sent(b, 1)
    );
}
