//! The goal loop against the deterministic queueing model: a long stability
//! run (two goal jobs and a booked CPU hog on one core, with the load of one
//! stepping up and down) and the pool-size sweep (convergence and entry
//! bytes). Not run in CI; `perf/goal_stability.sh` runs it long.
//!
//! ```text
//! cargo run --release -p headroom-control --example goal_sim -- [periods] [seed]
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use headroom_clock::Timestamp;

use headroom_config::goal::{Goal, Mode};
use headroom_control::goal::sim::{pool_of, pool_spec, SimJob, SimNode, SimPool};
use headroom_control::goal::{
    GoalLoop, GoalSettings, JobSpec, NodeId, NodeReport, PoolSpec, Verdict,
};

const PERIOD: f64 = 2.0;

fn stability(periods: usize, seed: u64) {
    let job = |name: &str, goal, mode| JobSpec {
        name: name.into(),
        goal,
        importance: 3,
        mode,
        cap_percent: None,
        bookings: Vec::new(),
    };
    let spec = PoolSpec {
        jobs: vec![
            job("batch", None, Mode::Booked),
            job(
                "web",
                Some(Goal::Percentile {
                    percentile: 90.0,
                    within: Duration::from_millis(20),
                }),
                Mode::Goal,
            ),
            job(
                "api",
                Some(Goal::Average {
                    average: Duration::from_millis(10),
                }),
                Mode::Goal,
            ),
        ],
        ..PoolSpec::default()
    };
    let node = SimNode::new(
        1,
        1.0,
        vec![
            SimJob::hog("batch", 1.0, 10.0),
            SimJob::new("web", 100.0, 0.002, 0.002, 10.0),
            SimJob::new("api", 100.0, 0.002, 0.002, 75.0),
        ],
    );
    let mut pool = SimPool::new(vec![node], seed);
    let t0 = Timestamp::ZERO;
    let mut gl = GoalLoop::new(spec, GoalSettings::default(), t0);
    // web's load steps between 100 and 130 requests/s every 300 periods.
    let seg = 300;
    let mut rows = Vec::new();
    let (mut applied, mut reversals, mut last_dir) = (0u64, 0u64, 0i8);
    let mut missing_periods = [0u64; 2];
    let mut seg_stats: Vec<(usize, f64, f64, Option<usize>)> = Vec::new();
    for p in 0..periods {
        if p % seg == 0 {
            let rate = if (p / seg) % 2 == 0 { 100.0 } else { 130.0 };
            pool.nodes[0].job_mut("web").unwrap().rate = rate;
            seg_stats.push((p, f64::MAX, 0.0, None));
        }
        let reports = pool.run(PERIOD);
        gl.handle_reports(
            t0 + Duration::from_secs_f64(PERIOD * (p + 1) as f64),
            &reports,
        );
        while let Some(c) = gl.poll_change() {
            pool.apply(&c);
        }
        while let Some(d) = gl.poll_decision() {
            if d.verdict == Verdict::Applied {
                applied += 1;
                let dir = if d.receiver.as_deref() == Some("web") {
                    1
                } else {
                    -1
                };
                if last_dir != 0 && dir != last_dir {
                    reversals += 1;
                }
                last_dir = dir;
            }
        }
        let st = gl.status();
        let idx = |n: &str| st.jobs.iter().find(|j| j.name == n).and_then(|j| j.index);
        let share = gl.cpu_share(1, "web").unwrap_or(0.0);
        for (k, n) in ["web", "api"].iter().enumerate() {
            if idx(n).is_some_and(|x| x > 1.0) {
                missing_periods[k] += 1;
            }
        }
        let s = seg_stats.last_mut().unwrap();
        if s.3.is_none() && idx("web").is_some_and(|x| x <= 1.0) {
            s.3 = Some(p - s.0);
        }
        // Band after the first 20 periods of a segment.
        if p - s.0 >= 20 {
            s.1 = s.1.min(share);
            s.2 = s.2.max(share);
        }
        rows.push((share, idx("web"), idx("api")));
    }
    println!("stability: {periods} periods of {PERIOD} s, web load stepping 100 <-> 130 req/s every {seg} periods (seed {seed})");
    println!("| segment | web load | periods to meet | web share band after 20 periods |");
    println!("|---|---|---|---|");
    for (i, (start, lo, hi, met)) in seg_stats.iter().enumerate() {
        let rate = if i % 2 == 0 { 100 } else { 130 };
        let met = met.map_or("never".to_string(), |m| m.to_string());
        println!(
            "| {start} | {rate} | {met} | {lo:.1} .. {hi:.1} % ({:.1} points) |",
            hi - lo
        );
    }
    println!(
        "shifts applied: {applied}, direction reversals: {reversals}; periods with an index above 1: web {} ({:.2} %), api {} ({:.2} %)",
        missing_periods[0],
        missing_periods[0] as f64 * 100.0 / periods as f64,
        missing_periods[1],
        missing_periods[1] as f64 * 100.0 / periods as f64
    );
}

fn sweep(seed: u64) {
    println!("\npool sweep: per node a booked hog, web (VIP job, p90 within 20 ms) and api (mean 10 ms), random starting splits (seed {seed})");
    println!("| nodes | entry budget | pairs missing at start | all met after | mean / max entry | into each node (every entry, 2 s period) | loop time per period |");
    println!("|---|---|---|---|---|---|---|");
    for n in [3usize, 16, 64, 128, 256] {
        for budget in [1024usize, 256] {
            let mut pool = pool_of(n, seed);
            let t0 = Timestamp::ZERO;
            let mut gl = GoalLoop::new(pool_spec(), GoalSettings::default(), t0);
            let (mut start_missing, mut met, mut bytes, mut max) = (0, None, 0usize, 0usize);
            let mut loop_time = Duration::ZERO;
            let periods = 30;
            for p in 0..periods {
                let w: BTreeMap<NodeId, f64> = (1..=n as NodeId)
                    .map(|i| (i, gl.weight("www", i)))
                    .collect();
                pool.route("web", 100.0 * n as f64, &w);
                let entries: Vec<Vec<u8>> =
                    pool.run(PERIOD).iter().map(|r| r.encode(budget)).collect();
                bytes += entries.iter().map(Vec::len).sum::<usize>();
                max = max.max(entries.iter().map(Vec::len).max().unwrap_or(0));
                let reports: Vec<NodeReport> = entries
                    .iter()
                    .map(|e| NodeReport::decode(e).unwrap())
                    .collect();
                let t = Instant::now();
                gl.handle_reports(
                    t0 + Duration::from_secs_f64(PERIOD * (p + 1) as f64),
                    &reports,
                );
                loop_time += t.elapsed();
                while let Some(c) = gl.poll_change() {
                    pool.apply(&c);
                }
                while gl.poll_decision().is_some() {}
                let missing = gl
                    .status()
                    .jobs
                    .iter()
                    .flat_map(|j| j.per_node.iter())
                    .filter(|(_, pi)| pi.is_some_and(|x| x > 1.0))
                    .count();
                if p == 0 {
                    start_missing = missing;
                }
                if missing == 0 && met.is_none() {
                    met = Some(p + 1);
                }
            }
            let mean = bytes as f64 / (periods * n) as f64;
            println!(
                "| {n} | {budget} B | {start_missing} | {} | {mean:.0} / {max} B | {:.1} kB/s | {:.2} ms |",
                met.map_or("not in 30 periods".into(), |m| format!("{m} periods ({} s)", m as f64 * PERIOD)),
                mean * n as f64 / PERIOD / 1000.0,
                loop_time.as_secs_f64() * 1e3 / periods as f64
            );
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let periods: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(42);
    stability(periods, seed);
    sweep(seed);
}
