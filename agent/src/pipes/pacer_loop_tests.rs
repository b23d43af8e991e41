//! Closed loop of real pacers driven by the daemon's pipes loop ([`Pipes`]), in simulated
//! time: the same assertions the system test makes with real traffic.
//!
//! Every node has a `PacerControl` and one or two worker `Pacer`s. Each job on each node offers
//! 1500-byte packets evenly at a fixed rate, spread over the workers; the workers admit them
//! and poll their queues every 50 us. Once per interval (at its own phase) each live node
//! runs [`Pipes::measure`] and "gossips" the entry (instantly), then runs [`Pipes::allocate`]
//! on the latest entries it has from its peers.

use headroom_clock::Timestamp;
use headroom_control::allocator::{JobBooking, PipeSpec, Rate};
use headroom_dataplane::pacer::{Admit, Pacer, PacerConfig, PacerControl, PacerPipeConfig};

use super::*;

/// Job names on the wire: the job id in decimal.
const NAMES: [&str; 4] = ["0", "1", "2", "3"];

fn name_of(id: u16) -> Option<&'static str> {
    NAMES.get(usize::from(id)).copied()
}

fn id_of(name: &str) -> Option<u16> {
    name.parse().ok()
}

const T: u64 = 20_000_000;
const STEP: u64 = 50_000;
const PKT: u32 = 1500;
/// 100 Mbit/s: 250_000 bytes per interval.
const CAPACITY_BPS: u64 = 100_000_000;

/// Offered bits per second as a function of the interval number.
type Offered = fn(u64) -> u64;

struct Source {
    job: u16,
    offered_bps: Offered,
    /// Bytes offered so far but not yet admitted as whole packets.
    owed: u64,
}

struct Node {
    pipes: Pipes<PacerControl>,
    pacers: Vec<Pacer<u16>>,
    sources: Vec<Source>,
    dies_at: Option<u64>,
    /// Offset of this node's exchanges within the interval.
    phase: u64,
    /// Packets admitted so far, to spread them over the workers.
    seq: usize,
    /// The node's last gossiped entry.
    last_gossip: Vec<u8>,
}

struct Pool {
    pipe: PipeSpec,
    bookings: Vec<JobBooking>,
    nodes: Vec<Node>,
    detect: u64,
    /// Bytes sent per interval, per job id.
    sent: Vec<Vec<u64>>,
    jobs: u16,
}

impl Pool {
    fn new(jobs: u16, bookings: Vec<JobBooking>, detect: u64) -> Self {
        let pipe = PipeSpec::new(CAPACITY_BPS, 50, T).unwrap();
        Self {
            pipe,
            bookings,
            nodes: Vec::new(),
            detect,
            sent: Vec::new(),
            jobs,
        }
    }

    fn node(&mut self, dies_at: Option<u64>, sources: Vec<(u16, Offered)>) {
        self.node_with(dies_at, sources, 1, 0);
    }

    fn node_with(
        &mut self,
        dies_at: Option<u64>,
        sources: Vec<(u16, Offered)>,
        workers: usize,
        phase: u64,
    ) {
        let config = PacerConfig {
            pipes: vec![PacerPipeConfig {
                jobs: self.jobs,
                interval_ns: T,
                queue_limit_pkts: 256,
                queue_limit_bytes: 256 * 1514,
                ..PacerPipeConfig::default()
            }],
            workers,
            ..PacerConfig::default()
        };
        let control = PacerControl::new(config).unwrap();
        let pacers = (0..workers).map(|w| control.worker(w).unwrap()).collect();
        let def = PipeDef {
            name: "uplink".into(),
            spec: self.pipe,
            direction: Default::default(),
            bookings: self.bookings.clone(),
        };
        let sources = sources
            .into_iter()
            .map(|(job, offered_bps)| Source {
                job,
                offered_bps,
                owed: 0,
            })
            .collect();
        self.nodes.push(Node {
            pipes: Pipes::new(vec![def], control),
            pacers,
            sources,
            dies_at,
            phase,
            seq: 0,
            last_gossip: Vec::new(),
        });
    }

    fn alive(&self, n: usize, k: u64) -> bool {
        !matches!(self.nodes[n].dies_at, Some(d) if k >= d)
    }

    fn member(&self, n: usize, k: u64) -> bool {
        !matches!(self.nodes[n].dies_at, Some(d) if k >= d + self.detect)
    }

    /// Node `n` measures and gossips its demand at `now`.
    fn publish(&mut self, n: usize, now: u64) {
        let node = &mut self.nodes[n];
        node.last_gossip = node.pipes.measure(Timestamp::from_nanos(now), name_of);
    }

    /// Node `n` allocates from the latest demands of the members it sees at interval `k`.
    fn apply(&mut self, n: usize, now: u64, k: u64) {
        let peers: Vec<(u32, Vec<u8>)> = (0..self.nodes.len())
            .filter(|&o| o != n && self.member(o, k))
            .map(|o| (o as u32, self.nodes[o].last_gossip.clone()))
            .collect();
        self.nodes[n].pipes.allocate(
            Timestamp::from_nanos(now),
            peers.iter().map(|(o, e)| (*o, e.as_slice())),
            id_of,
        );
    }

    fn run(&mut self, intervals: u64) {
        for k in 0..intervals {
            let mut sent = vec![0u64; usize::from(self.jobs)];
            let mut t = k * T;
            while t < (k + 1) * T {
                // Nodes whose exchange falls in this step: all gossip, then all allocate.
                let due: Vec<usize> = (0..self.nodes.len())
                    .filter(|&n| {
                        self.alive(n, k)
                            && t % T <= self.nodes[n].phase
                            && self.nodes[n].phase < t % T + STEP
                    })
                    .collect();
                for &n in &due {
                    self.publish(n, t);
                }
                for &n in &due {
                    self.apply(n, t, k);
                }
                for n in 0..self.nodes.len() {
                    if !self.alive(n, k) {
                        continue;
                    }
                    let node = &mut self.nodes[n];
                    let workers = node.pacers.len();
                    for s in &mut node.sources {
                        s.owed += (s.offered_bps)(k) / 8 * STEP / 1_000_000_000;
                        while s.owed >= u64::from(PKT) {
                            s.owed -= u64::from(PKT);
                            let pacer = &mut node.pacers[node.seq % workers];
                            node.seq += 1;
                            if let Admit::Send(job) = pacer.admit(t, 0, s.job, PKT, s.job) {
                                sent[usize::from(job)] += u64::from(PKT);
                            }
                        }
                    }
                    for pacer in &mut node.pacers {
                        pacer.poll_release(t, usize::MAX, |job| {
                            sent[usize::from(job)] += u64::from(PKT)
                        });
                    }
                }
                t += STEP;
            }
            self.sent.push(sent);
        }
    }

    fn job_mean(&self, job: u16, range: std::ops::Range<usize>) -> f64 {
        let n = range.len() as f64;
        self.sent[range]
            .iter()
            .map(|s| s[usize::from(job)])
            .sum::<u64>() as f64
            / n
    }

    fn total(&self, k: usize) -> u64 {
        self.sent[k].iter().sum()
    }

    fn total_mean(&self, range: std::ops::Range<usize>) -> f64 {
        let n = range.len() as f64;
        range.map(|k| self.total(k)).sum::<u64>() as f64 / n
    }
}

fn assert_within(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= want * tol,
        "{what}: got {got:.0}, want {want:.0} +- {:.0}%",
        tol * 100.0
    );
}

fn bookings() -> Vec<JobBooking> {
    vec![
        JobBooking {
            job: 0,
            booked: Rate::Percent(60),
            cap: None,
        },
        JobBooking {
            job: 1,
            booked: Rate::Percent(40),
            cap: None,
        },
    ]
}

/// Twice the pipe.
fn flood(_: u64) -> u64 {
    2 * CAPACITY_BPS
}

fn flood_until_40(k: u64) -> u64 {
    if k < 40 {
        flood(k)
    } else {
        0
    }
}

fn flood_until_60(k: u64) -> u64 {
    if k < 60 {
        flood(k)
    } else {
        0
    }
}

/// 5 % of the pipe.
fn light(_: u64) -> u64 {
    CAPACITY_BPS / 20
}

const CAP: f64 = (CAPACITY_BPS / 8 * T / 1_000_000_000) as f64;

#[test]
fn bookings_honoured_and_freed_capacity_taken_within_three_intervals() {
    let mut pool = Pool::new(2, bookings(), 2);
    pool.node(None, vec![(0, flood)]);
    pool.node(None, vec![(1, flood_until_40)]);
    pool.node(None, vec![]);
    pool.run(60);
    assert_within("job 0", pool.job_mean(0, 5..40), 0.6 * CAP, 0.05);
    assert_within("job 1", pool.job_mean(1, 5..40), 0.4 * CAP, 0.05);
    assert_within("pipe", pool.total_mean(5..40), CAP, 0.03);
    for k in 43..60 {
        assert_within(
            &format!("job 0 alone, interval {k}"),
            pool.sent[k][0] as f64,
            CAP,
            0.03,
        );
    }
    // Never more than the pipe plus a burst: the pacers spread each grant over its interval.
    for k in 0..60 {
        assert!(
            pool.total(k) as f64 <= CAP * 1.05,
            "interval {k}: {}",
            pool.total(k)
        );
    }
}

#[test]
fn jobs_on_every_node_survive_a_node_death() {
    let detect = 2;
    let mut pool = Pool::new(2, bookings(), detect);
    for dies_at in [None, None, Some(30)] {
        pool.node(dies_at, vec![(0, flood), (1, flood_until_60)]);
    }
    pool.run(80);
    assert_within("job 0", pool.job_mean(0, 5..30), 0.6 * CAP, 0.05);
    assert_within("job 1", pool.job_mean(1, 5..30), 0.4 * CAP, 0.05);
    assert_within("pipe", pool.total_mean(5..30), CAP, 0.03);
    let after = 30 + detect as usize + 3;
    assert_within(
        "job 0 after death",
        pool.job_mean(0, after..60),
        0.6 * CAP,
        0.05,
    );
    assert_within(
        "job 1 after death",
        pool.job_mean(1, after..60),
        0.4 * CAP,
        0.05,
    );
    assert_within("pipe after death", pool.total_mean(after..60), CAP, 0.03);
    for k in 63..80 {
        assert_within(
            &format!("job 0 alone, interval {k}"),
            pool.sent[k][0] as f64,
            CAP,
            0.03,
        );
    }
}

#[test]
fn light_traffic_goes_straight_through() {
    let mut pool = Pool::new(2, bookings(), 2);
    pool.node(None, vec![(0, light)]);
    pool.node(None, vec![(1, light)]);
    pool.run(30);
    // Nothing is dropped and, but for the first packet or two (sent before any credit was
    // earned), every packet is sent by `admit` itself as it arrives: no added latency.
    for node in &pool.nodes {
        let s = node.pacers[0].stats();
        assert_eq!(s.dropped_queue_full, 0);
        assert!(s.queued <= 2, "queued {}", s.queued);
        assert_eq!(s.sent_direct + s.queued, s.admitted);
    }
    assert_within("job 0", pool.job_mean(0, 2..30), 0.05 * CAP, 0.01);
}

fn flood_from_20(k: u64) -> u64 {
    if k < 20 {
        0
    } else {
        flood(k)
    }
}

#[test]
fn idle_job_ramps_up_to_its_booking_within_three_intervals() {
    let mut pool = Pool::new(2, bookings(), 2);
    pool.node(None, vec![(0, flood_from_20)]);
    pool.node(None, vec![(1, flood)]);
    pool.run(40);
    // Alone, job 1 fills the pipe but for job 0's minimum request.
    assert_within("job 1 alone", pool.job_mean(1, 5..20), CAP, 0.03);
    // Job 0's minimum request lets its first packets through at once, without credit kept
    // from long ago pushing the pipe over its capacity.
    assert!(pool.sent[20][0] > 0);
    for k in 1..40 {
        assert!(
            pool.total(k) as f64 <= CAP * 1.01,
            "interval {k}: {:?}",
            pool.sent[k]
        );
    }
    for k in 23..40 {
        assert_within(
            &format!("job 0, interval {k}"),
            pool.sent[k][0] as f64,
            0.6 * CAP,
            0.05,
        );
        assert_within(
            &format!("job 1, interval {k}"),
            pool.sent[k][1] as f64,
            0.4 * CAP,
            0.05,
        );
    }
}

#[test]
fn unsynchronised_exchanges_and_two_workers_per_node() {
    let mut pool = Pool::new(2, bookings(), 2);
    // Exchanges at 0, 7 and 13 ms into each interval, so every node allocates from demands
    // its peers measured up to an interval earlier; two workers per node.
    for phase in [0, 7_000_000, 13_000_000] {
        pool.node_with(None, vec![(0, flood), (1, flood_until_40)], 2, phase);
    }
    pool.run(60);
    assert_within("job 0", pool.job_mean(0, 5..40), 0.6 * CAP, 0.05);
    assert_within("job 1", pool.job_mean(1, 5..40), 0.4 * CAP, 0.05);
    assert_within("pipe", pool.total_mean(5..40), CAP, 0.03);
    // One more interval than in step, for the stale picture.
    for k in 44..60 {
        assert_within(
            &format!("job 0 alone, interval {k}"),
            pool.sent[k][0] as f64,
            CAP,
            0.03,
        );
    }
    // Once every node has seen every other's demand, never over the pipe. (Before that, a
    // node that has not heard from its peers yet believes it is alone.)
    for k in 3..60 {
        assert!(
            pool.total(k) as f64 <= CAP * 1.03,
            "interval {k}: {:?}",
            pool.sent[k]
        );
    }
}
