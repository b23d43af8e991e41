//! Policy distribution in the deterministic simulation: time from `apply`
//! on a random non-master node to the version active on every node
//! (median and max of 20 applies), how far apart the nodes switch, and the
//! bytes per node per second it adds to the exchange; then 256 KiB
//! documents, and the node summaries' gossip load.
//!
//! 1% loss, 0.2-2 ms delay, 100 ms exchange tick, clocks up to an hour
//! apart with up to 1% drift, wall clocks up to 10 minutes apart.
//!
//! `cargo run --release -p headroom-control --example policy_rollout [-- SIZES...]`
//! (default sizes 16 64 128 256; `--applies N` changes the 20, `--tick-ms N`
//! the exchange tick, `--no-fill` turns the exchange's filler entries off).

use std::time::Duration;

use headroom_control::exchange::NodeId;
use headroom_control::policy::sim::{PolicySim, PolicySimConfig};
use headroom_control::policy::summary::{Health, JobSummary, NodeSummary, PipeUse, VipSummary};
use headroom_control::policy::ApplyResult;
use headroom_control::sim::{Sim, SimConfig, Simulation};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const STEP: Duration = Duration::from_millis(5);
const SEED: u64 = 42;

/// Exchange tick: 100 ms like `exchange_sizing`, or `--tick-ms` (the
/// daemon's default `control.high_freq_ms` is 20).
static TICK_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);

/// `--no-fill`: exchange without push anti-entropy (`fill_entries = 0`), to
/// see what the fillers cost.
static NO_FILL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn tick() -> Duration {
    Duration::from_millis(TICK_MS.load(std::sync::atomic::Ordering::Relaxed))
}

fn doc(k: usize, pad: usize) -> Vec<u8> {
    let mut d = format!(
        "# change {k}\n[pipes.wan]\ncapacity = \"30 Mbit/s\"\n[jobs.gold]\npipe = \"wan\"\nbooking = \"{}%\"\n[jobs.bronze]\npipe = \"wan\"\nbooking = \"{}%\"\n",
        50 + k % 40,
        50 - k % 40
    )
    .into_bytes();
    if pad > 0 {
        let mut i = 0;
        while d.len() < pad {
            d.extend_from_slice(format!("# padding line {i:08}\n").as_bytes());
            i += 1;
        }
        d.truncate(pad);
    }
    d
}

fn formed(n: usize, summaries: bool) -> PolicySim {
    let mut cfg = PolicySimConfig::new(n, SEED);
    cfg.initial = Some(doc(0, 0));
    cfg.summaries = summaries;
    cfg.demand = true;
    cfg.net.tick = tick();
    if NO_FILL.load(std::sync::atomic::Ordering::Relaxed) {
        cfg.exchange_tweak = |c| c.fill_entries = 0;
    }
    let mut sim = PolicySim::new(cfg);
    sim.run_until_pred(Duration::from_millis(50), Duration::from_secs(60), |s| {
        s.membership_converged() && s.all_current()
    })
    .expect("pool forms");
    sim.run_for(Duration::from_secs(2));
    sim
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

struct Run {
    /// Datagrams the receivers' replay windows refused (reordered bursts).
    replayed: u64,
    latency: Vec<Duration>,
    spread: Vec<Duration>,
    bytes: u64,
    span: Duration,
}

/// `applies` applies of `size`-byte documents from random non-master nodes,
/// one after the other.
fn applies(sim: &mut PolicySim, n: usize, applies: usize, size: usize) -> Run {
    let mut rng = SmallRng::seed_from_u64(SEED ^ n as u64 ^ size as u64);
    let mut latency = Vec::new();
    let mut spread = Vec::new();
    let replayed = |sim: &PolicySim| -> u64 {
        sim.running()
            .iter()
            .map(|id| sim.exchange(*id).expect("running").stats().replayed)
            .sum()
    };
    let r0 = replayed(sim);
    let b0 = sim.bytes_sent();
    let t_start = sim.now();
    for k in 0..applies {
        let author = rng.gen_range(2..=n as NodeId);
        let t0 = sim.now();
        let req = sim
            .apply(author, &doc(k + 1, size), "bench", "")
            .expect("valid document");
        sim.run_until_pred(STEP, Duration::from_secs(30), |s| {
            s.result(author, req).is_some()
                && s.assigned(author, req)
                    .is_some_and(|v| s.all_active(v, &[]))
        })
        .expect("apply finishes");
        match sim.result(author, req) {
            Some(ApplyResult::Done(_)) => {}
            other => panic!("apply {k}: {other:?}"),
        }
        let v = sim.assigned(author, req).expect("numbered");
        let acts = sim.activations(v);
        let first = acts.iter().map(|a| a.1).min().expect("activations");
        let last = acts.iter().map(|a| a.1).max().expect("activations");
        latency.push(last - t0);
        spread.push(last - first);
        sim.run_for(Duration::from_millis(300));
    }
    Run {
        replayed: replayed(sim) - r0,
        latency,
        spread,
        bytes: sim.bytes_sent() - b0,
        span: sim.now() - t_start,
    }
}

/// Bytes per node per second of the exchange without the policy, idle,
/// with one 8-byte demand entry per node (as the allocator publishes).
fn baseline_idle(n: usize) -> f64 {
    let mut net = SimConfig::new(n, SEED);
    net.tick = tick();
    let mut sim = Sim::new(net);
    sim.run_until_pred(Duration::from_millis(50), Duration::from_secs(60), |s| {
        s.membership_converged()
    })
    .expect("pool forms");
    for id in sim.running() {
        sim.set_demand(id, u64::from(id));
    }
    sim.run_for(Duration::from_secs(2));
    let b0 = sim.bytes_sent();
    sim.run_for(Duration::from_secs(5));
    (sim.bytes_sent() - b0) as f64 / n as f64 / 5.0
}

fn summary(node: NodeId, round: u32) -> NodeSummary {
    let job = |name: &str, pipe: &str| JobSummary {
        name: name.into(),
        rx_bps: 12_000_000 + u64::from(node) * 1000,
        tx_bps: 9_000_000,
        cpu_permille: 400,
        connections: 1200,
        pipe: Some(PipeUse {
            pipe: pipe.into(),
            booked_bps: 18_000_000,
            granted_bps: 17_500_000,
            sent_bps: 16_900_000,
            dropped_bps: 100_000,
        }),
        ..Default::default()
    };
    NodeSummary {
        window_ms: 2000,
        policy: None,
        cores: 4,
        cpu_permille: 500,
        headroom_permille: round % 1000,
        jobs: vec![
            job("gold", "wan"),
            job("bronze", "wan"),
            job("web", "lan"),
            job("batch", "lan"),
        ],
        jobs_total: 4,
        vips: vec![
            VipSummary {
                name: "www".into(),
                placements: 300,
                flows: 2000,
                health: Health::Up,
            },
            VipSummary {
                name: "api".into(),
                placements: 100,
                flows: 700,
                health: Health::Up,
            },
        ],
        vips_total: 2,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut count = 20;
    let mut sizes = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--applies" {
            count = it.next().and_then(|v| v.parse().ok()).expect("--applies N");
        } else if a == "--no-fill" {
            NO_FILL.store(true, std::sync::atomic::Ordering::Relaxed);
        } else if a == "--tick-ms" {
            let t: u64 = it.next().and_then(|v| v.parse().ok()).expect("--tick-ms N");
            TICK_MS.store(t, std::sync::atomic::Ordering::Relaxed);
        } else {
            sizes.push(a.parse::<usize>().expect("node count"));
        }
    }
    if sizes.is_empty() {
        sizes = vec![16, 64, 128, 256];
    }

    println!(
        "exchange tick {} ms; apply to active on every node, {count} applies of a ~300-byte policy each",
        tick().as_millis()
    );
    println!("exchange without policy (heartbeats + one 8-byte entry per node) vs with it:");
    println!("nodes  median_ms  max_ms  spread_median_ms  spread_max_ms  idle_B/node/s: without  with  during_applies  B/node/apply");
    for &n in &sizes {
        let base = baseline_idle(n);
        let mut sim = formed(n, false);
        let b0 = sim.bytes_sent();
        sim.run_for(Duration::from_secs(5));
        let idle = (sim.bytes_sent() - b0) as f64 / n as f64 / 5.0;
        let mut r = applies(&mut sim, n, count, 0);
        let during = r.bytes as f64 / n as f64 / r.span.as_secs_f64();
        let per_apply =
            (r.bytes as f64 - idle * n as f64 * r.span.as_secs_f64()) / n as f64 / count as f64;
        let max_l = *r.latency.iter().max().expect("applies");
        let max_s = *r.spread.iter().max().expect("applies");
        println!(
            "{:>5}  {:>9.1}  {:>6.1}  {:>16.1}  {:>13.1}  {:>22.0}  {:>4.0}  {:>14.0}  {:>12.0}",
            n,
            median(&mut r.latency).as_secs_f64() * 1e3,
            max_l.as_secs_f64() * 1e3,
            median(&mut r.spread).as_secs_f64() * 1e3,
            max_s.as_secs_f64() * 1e3,
            base,
            idle,
            during,
            per_apply,
        );
        if r.replayed > 0 {
            println!(
                "       ({} datagrams refused by replay windows during the applies)",
                r.replayed
            );
        }
    }

    println!();
    println!("256 KiB policy (largest accepted), 3 applies");
    println!("nodes  median_ms  max_ms");
    for &n in sizes.iter().filter(|n| **n <= 128) {
        let mut sim = formed(n, false);
        let mut r = applies(&mut sim, n, 3, 256 * 1024);
        let max_l = *r.latency.iter().max().expect("applies");
        println!(
            "{:>5}  {:>9.0}  {:>6.0}",
            n,
            median(&mut r.latency).as_secs_f64() * 1e3,
            max_l.as_secs_f64() * 1e3
        );
    }

    println!();
    println!(
        "node summaries (4 jobs in pipes, 2 VIPs: {} bytes) every 2 s",
        summary(1, 0).encode(1024).len()
    );
    println!("nodes  added_B/node/s  every_node_has_every_summary_median_ms  max_ms");
    for &n in sizes.iter().filter(|n| **n <= 128) {
        let mut sim = formed(n, true);
        let b0 = sim.bytes_sent();
        sim.run_for(Duration::from_secs(10));
        let quiet = (sim.bytes_sent() - b0) as f64 / n as f64 / 10.0;
        let b0 = sim.bytes_sent();
        let t0 = sim.now();
        // A round every 2 s; for each, the time until every node holds every
        // node's summary of that round or a later one.
        let rounds = 8u32;
        let mut started: Vec<Duration> = Vec::new();
        let mut seen = Vec::new();
        let check = Duration::from_millis(20);
        while seen.len() < rounds as usize && sim.now() - t0 < Duration::from_secs(60) {
            let k = started.len() as u32;
            if k < rounds && sim.now() >= t0 + Duration::from_secs(2) * k {
                started.push(sim.now());
                for id in sim.running() {
                    sim.set_summary(id, &summary(id, k + 1));
                }
            }
            let next = seen.len() as u32 + 1;
            if next <= started.len() as u32
                && sim.summaries_seen(|_, x| x.headroom_permille >= next)
            {
                seen.push(sim.now() - started[next as usize - 1]);
                continue;
            }
            sim.run_for(check);
        }
        let publishing = Duration::from_secs(2) * rounds;
        if sim.now() < t0 + publishing {
            sim.run_until(t0 + publishing);
        }
        let rate = (sim.bytes_sent() - b0) as f64 / n as f64 / (sim.now() - t0).as_secs_f64();
        if seen.is_empty() {
            println!("{n:>5}  summaries did not reach every node within 60 s");
            continue;
        }
        let max_s = *seen.iter().max().expect("rounds");
        println!(
            "{:>5}  {:>14.0}  {:>38.0}  {:>6.0}",
            n,
            rate - quiet,
            median(&mut seen).as_secs_f64() * 1e3,
            max_s.as_secs_f64() * 1e3
        );
    }
}
