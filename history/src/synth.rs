//! Synthetic workloads of realistic shapes, for the tests, the benchmark and demos: steady,
//! bursty and daily-cycle jobs whose samples are generated for any second (time is a
//! parameter; nothing waits), with exact cumulative counters so stored points can be checked
//! against what was "sent".

use crate::sample::{JobPipeValues, JobValues, NodeSample, NodeValues, PipeValues};
use crate::time::WallTime;

/// How a value moves over time (per second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Always `v`.
    Steady(f64),
    /// `peak` for `burst_s` seconds at the start of every `period_s`, `base` otherwise.
    Bursty {
        /// Value between bursts.
        base: f64,
        /// Value during a burst.
        peak: f64,
        /// Seconds from one burst's start to the next.
        period_s: u32,
        /// Burst length in seconds.
        burst_s: u32,
    },
    /// A daily cycle: `mean * (1 + amplitude * sin(2 pi t / 1 day))`, times a uniform noise
    /// of +-`noise` (a fraction), deterministic per second.
    Daily {
        /// Mean value.
        mean: f64,
        /// Relative swing of the day (0..1).
        amplitude: f64,
        /// Relative noise per second (0..1).
        noise: f64,
    },
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Shape {
    /// The value during second `t` (seed: decorrelates the noise of different series).
    pub fn at(&self, t: i64, seed: u64) -> f64 {
        match *self {
            Shape::Steady(v) => v,
            Shape::Bursty {
                base,
                peak,
                period_s,
                burst_s,
            } => {
                if t.rem_euclid(i64::from(period_s.max(1))) < i64::from(burst_s) {
                    peak
                } else {
                    base
                }
            }
            Shape::Daily {
                mean,
                amplitude,
                noise,
            } => {
                let day = (t.rem_euclid(86_400) as f64) / 86_400.0 * std::f64::consts::TAU;
                let u = (splitmix(seed ^ (t as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)) >> 11)
                    as f64
                    / (1u64 << 53) as f64;
                (mean * (1.0 + amplitude * day.sin()) * (1.0 + noise * (2.0 * u - 1.0))).max(0.0)
            }
        }
    }
}

/// One synthetic job.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthJob {
    /// Name.
    pub name: String,
    /// Bytes per second sent (offered to its pipes, all sent).
    pub out: Shape,
    /// Bytes per second received.
    pub inn: Shape,
    /// CPU used, cores.
    pub cpu: Shape,
    /// Pipes its outbound traffic is offered to (split evenly).
    pub pipes: Vec<String>,
    /// Its booking on each pipe, bit/s.
    pub booked_bps: Option<u64>,
    /// Its CPU target, cores.
    pub cpu_target: Option<f64>,
    /// The most its pipes grant it, bytes per second (the rest of its demand is dropped).
    pub grant_cap: Option<f64>,
}

impl SynthJob {
    /// A job sending `out` on `pipe`, with a small steady inbound and CPU use.
    pub fn new(name: &str, out: Shape, pipe: &str) -> Self {
        SynthJob {
            name: name.into(),
            out,
            inn: Shape::Steady(10_000.0),
            cpu: Shape::Steady(0.25),
            pipes: vec![pipe.into()],
            booked_bps: None,
            cpu_target: None,
            grant_cap: None,
        }
    }
}

/// What one job did in the last generated second (exact integers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    /// Bytes offered (the demand).
    pub demand: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
}

/// A synthetic node.
#[derive(Debug, Clone)]
pub struct Synth {
    /// Node cores.
    pub cores: f64,
    /// Jobs.
    pub jobs: Vec<SynthJob>,
    /// Daemon run id and start.
    pub run: u64,
    /// When the run started.
    pub run_started: WallTime,
    totals: Vec<JobValues>,
    pipes: Vec<PipeValues>,
    /// Per job, what the last sample added.
    pub last: Vec<Amounts>,
}

impl Synth {
    /// A node with `jobs`, whose run starts at `start` (seconds).
    pub fn new(cores: f64, jobs: Vec<SynthJob>, start: i64) -> Self {
        let mut pipes: Vec<PipeValues> = Vec::new();
        for j in &jobs {
            for p in &j.pipes {
                if !pipes.iter().any(|q| &q.name == p) {
                    pipes.push(PipeValues {
                        name: p.clone(),
                        capacity_bps: 100_000_000,
                        nodes: 1,
                        ..Default::default()
                    });
                }
            }
        }
        let totals = jobs
            .iter()
            .map(|j| JobValues {
                name: j.name.clone(),
                pipes: j
                    .pipes
                    .iter()
                    .map(|p| JobPipeValues {
                        pipe: p.clone(),
                        booked_bps: j.booked_bps,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        Synth {
            cores,
            last: vec![Amounts::default(); jobs.len()],
            jobs,
            run: start as u64,
            run_started: crate::time::from_secs(start),
            totals,
            pipes,
        }
    }

    /// A restart of the daemon at `t`: counters start again from zero.
    pub fn restart(&mut self, t: i64) {
        *self = Synth::new(self.cores, std::mem::take(&mut self.jobs), t);
    }

    /// The sample taken at the end of second `t` (the amounts of second `t` added).
    pub fn sample(&mut self, t: i64) -> NodeSample {
        let mut cpu_total = 0.0;
        for p in &mut self.pipes {
            p.queued_bytes = 0;
        }
        for (i, (j, v)) in self.jobs.iter().zip(self.totals.iter_mut()).enumerate() {
            let seed = i as u64 * 7919;
            let demand = j.out.at(t, seed).round() as u64;
            let out = j.grant_cap.map_or(demand, |c| demand.min(c.round() as u64));
            let inn = j.inn.at(t, seed + 1).round() as u64;
            self.last[i] = Amounts {
                demand,
                bytes_out: out,
                bytes_in: inn,
            };
            v.bytes_out += out;
            v.bytes_in += inn;
            v.packets_out += out.div_ceil(1500);
            v.packets_in += inn.div_ceil(1500);
            v.cpu_cores = j.cpu.at(t, seed + 2);
            cpu_total += v.cpu_cores;
            v.cpu_target_cores = j.cpu_target;
            v.cpu_wants_more = j.cpu_target.is_some_and(|c| v.cpu_cores >= c * 0.98);
            v.rss_bytes = 200 << 20;
            v.processes = 4;
            v.connections = 10 + (t.rem_euclid(7)) as u64;
            let n = j.pipes.len().max(1) as u64;
            // Amounts are split exactly between pipes: the first takes the remainder.
            let split = |x: u64, k: usize| x / n + if k == 0 { x % n } else { 0 };
            for (k, p) in v.pipes.iter_mut().enumerate() {
                let (d, o) = (split(demand, k), split(out, k));
                p.demand_bytes += d;
                p.granted_bytes += o;
                p.sent_bytes += o;
                p.dropped_bytes += d.saturating_sub(o);
                if let Some(pp) = self.pipes.iter_mut().find(|q| q.name == p.pipe) {
                    pp.demand_bytes += d;
                    pp.granted_bytes += o;
                    pp.sent_bytes += o;
                    pp.dropped_bytes += d.saturating_sub(o);
                }
            }
        }
        NodeSample {
            at: crate::time::from_secs(t + 1),
            run: self.run,
            run_started: self.run_started,
            node: NodeValues {
                cores: self.cores,
                cpu_cores: cpu_total,
                headroom_percent: (100.0 * (1.0 - cpu_total / self.cores)).max(0.0),
                exchange_tx_bytes: (t + 1 - crate::time::secs(self.run_started)) as u64 * 2000,
                exchange_rx_bytes: (t + 1 - crate::time::secs(self.run_started)) as u64 * 4000,
                exchange_tx_packets: (t + 1 - crate::time::secs(self.run_started)) as u64 * 2,
                exchange_rx_packets: (t + 1 - crate::time::secs(self.run_started)) as u64 * 4,
            },
            jobs: self.totals.clone(),
            pipes: self.pipes.clone(),
            vips: Vec::new(),
        }
    }
}

/// The benchmark's node: `jobs` jobs of mixed shapes, each on two pipes.
pub fn benchmark_node(jobs: usize, start: i64) -> Synth {
    let list = (0..jobs)
        .map(|i| {
            let out = match i % 3 {
                0 => Shape::Steady(125_000.0 * (1 + i % 10) as f64),
                1 => Shape::Bursty {
                    base: 20_000.0,
                    peak: 2_000_000.0,
                    period_s: 30 + (i as u32 % 5) * 7,
                    burst_s: 3,
                },
                _ => Shape::Daily {
                    mean: 400_000.0,
                    amplitude: 0.6,
                    noise: 0.2,
                },
            };
            SynthJob {
                name: format!("job{i:02}"),
                out,
                inn: Shape::Daily {
                    mean: 50_000.0,
                    amplitude: 0.5,
                    noise: 0.3,
                },
                cpu: Shape::Daily {
                    mean: 0.1 + (i % 4) as f64 * 0.1,
                    amplitude: 0.5,
                    noise: 0.25,
                },
                pipes: vec!["uplink".into(), "backup".into()],
                booked_bps: Some(1_000_000),
                cpu_target: Some(0.5),
                grant_cap: None,
            }
        })
        .collect();
    Synth::new(16.0, list, start)
}
