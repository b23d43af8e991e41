//! Benchmark of the history store, on synthetic data with time as a parameter (nothing waits
//! in real time):
//! 1. CPU cost of recording: `--jobs` jobs (22 series each, 1 s samples) for `--hours` of
//!    simulated time, through the writer's code (recorder + store), as % of one core;
//! 2. bytes per stored point on disk, per tier;
//! 3. query time: 24 h of 1 s data for one job, and `--days` of 1 min data for all jobs.
//!
//! `cargo run --release -p headroom-history --example history_bench -- [--hours 24]
//! [--days 30] [--jobs 50] [--dir DIR]`

use std::time::{Duration, Instant};

use headroom_history::point::Point;
use headroom_history::query::{history, Dataset, HistoryQuery};
use headroom_history::recorder::{Batch, Observation, Recorder};
use headroom_history::synth::benchmark_node;
use headroom_history::{EntityKind, Metric, Reader, Selector, Store, StoreOptions, Tier};
use nix::time::{clock_gettime, ClockId};

const T0: i64 = 1_764_547_200; // 2025-12-01T00:00:00Z, a day boundary

fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| {
            w[1].parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

/// On-disk bytes of each table (SQLite's dbstat: whole pages, overhead included).
fn table_bytes(path: &std::path::Path) -> Vec<(String, u64)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut q = c
        .prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY name")
        .unwrap();
    q.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

/// Runs `f` `runs` times: wall time of the first run, median wall time, median CPU time of
/// this thread (unaffected by other load on the machine), last result.
fn timed<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, Duration, T) {
    let mut times = Vec::new();
    let mut cpus = Vec::new();
    let mut out = None;
    for _ in 0..runs {
        let (t, c) = (Instant::now(), thread_cpu());
        out = Some(f());
        times.push(t.elapsed());
        cpus.push(thread_cpu() - c);
    }
    let first = times[0];
    times.sort();
    cpus.sort();
    (
        first,
        times[times.len() / 2],
        cpus[cpus.len() / 2],
        out.expect("ran"),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let hours = arg(&args, "--hours", 24) as i64;
    let days = arg(&args, "--days", 30) as i64;
    let jobs = arg(&args, "--jobs", 50) as usize;
    let dir = args
        .windows(2)
        .find(|w| w[0] == "--dir")
        .map(|w| std::path::PathBuf::from(&w[1]))
        .unwrap_or_else(std::env::temp_dir);
    // `--query PATH`: only time the one-job query on an existing database (for profiling).
    if let Some(path) = args
        .windows(2)
        .find(|w| w[0] == "--query")
        .map(|w| w[1].clone())
    {
        let reader = Reader::open(&path).unwrap();
        let to = reader.newest().unwrap().unwrap() + 1;
        let sel = Selector::parse("job00").unwrap();
        let (first, med, qcpu, n) = timed(20, || {
            let ds = Dataset::load(&reader, &sel, Tier::Sec, to - 86_400, to).unwrap();
            ds.series.iter().map(|s| s.points.len()).sum::<usize>()
        });
        println!(
            "job00: {n} points: first {:.1} ms, median {:.1} ms (CPU {:.1} ms)",
            ms(first),
            ms(med),
            ms(qcpu)
        );
        return;
    }
    let tmp = tempfile::tempdir_in(dir).unwrap();
    // `--keep`: leave the databases behind.
    let tmp_path = if args.iter().any(|a| a == "--keep") {
        tmp.keep()
    } else {
        tmp.path().to_path_buf()
    };

    // 1. Recording cost: the writer's work for each simulated second.
    let fine = tmp_path.join("fine.db");
    let mut opts = StoreOptions::new(&fine);
    opts.max_bytes = 64 << 30;
    let mut store = Store::open(opts).unwrap();
    let mut rec = Recorder::new(1);
    let mut synth = benchmark_node(jobs, T0 - 1);
    let secs = hours * 3600;
    let (mut cpu, wall0) = (Duration::ZERO, Instant::now());
    let mut series = 0;
    for t in T0..T0 + secs {
        let s = synth.sample(t);
        let c0 = thread_cpu();
        let b = rec.handle_sample(&s);
        series = series.max(b.points.len());
        store.write(&[b], &rec).unwrap();
        cpu += thread_cpu() - c0;
        if (t - T0) % 3600 == 3599 {
            eprintln!(
                "  {} h simulated, {:.1} s CPU so far",
                (t - T0 + 1) / 3600,
                cpu.as_secs_f64()
            );
        }
    }
    let wall = wall0.elapsed();
    let st = store.stats();
    drop(store);
    println!("recording: {jobs} jobs, {series} series, {hours} h of 1 s samples");
    println!(
        "  CPU {:.1} s for {secs} simulated s = {:.3}% of a core ({:.0} us per sample, {:.2} us per point); wall {:.1} s",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() / secs as f64 * 100.0,
        cpu.as_secs_f64() / secs as f64 * 1e6,
        cpu.as_secs_f64() / (secs as f64 * series as f64) * 1e6,
        wall.as_secs_f64()
    );
    let file = std::fs::metadata(&fine).unwrap().len();
    println!(
        "  file {:.1} MiB, pages in use {:.1} MiB",
        file as f64 / 1048576.0,
        st.bytes_used as f64 / 1048576.0
    );

    // 2. Bytes per point of the 1 s tier.
    let tb = table_bytes(&fine);
    let bytes = |tb: &[(String, u64)], name: &str| {
        tb.iter().find(|(n, _)| n == name).map_or(0, |(_, b)| *b)
    };
    println!(
        "bytes per stored point (table pages on disk / points; packed data alone in brackets):"
    );
    println!(
        "  1s tier: {:.2} ({:.2}) over {} points",
        bytes(&tb, "chunk_1s") as f64 / st.tiers[0].points.max(1) as f64,
        st.tiers[0].bytes as f64 / st.tiers[0].points.max(1) as f64,
        st.tiers[0].points
    );

    // 3a. One job, 24 h of 1 s data.
    let reader = Reader::open(&fine).unwrap();
    let from = T0 + secs - 86_400.min(secs);
    let sel = Selector::parse("job00").unwrap();
    let (first, med, qcpu, n) = timed(5, || {
        let ds = Dataset::load(&reader, &sel, Tier::Sec, from, T0 + secs).unwrap();
        ds.series.iter().map(|s| s.points.len()).sum::<usize>()
    });
    let job_series = Dataset::load(&reader, &sel, Tier::Sec, from, from + 1)
        .unwrap()
        .series
        .len();
    println!(
        "query: job00, all {job_series} series, {} h of 1 s data = {n} points: first {:.1} ms, median {:.1} ms (CPU {:.1} ms)",
        (T0 + secs - from) / 3600,
        ms(first),
        ms(med),
        ms(qcpu)
    );
    let q = HistoryQuery {
        selector: sel.clone().with_metrics(&[Metric::BytesOut]),
        since: headroom_history::time::from_secs(from),
        until: None,
        step: Duration::from_secs(1),
    };
    let (first, med, qcpu, rows) = timed(5, || history(&reader, &q).unwrap().series[0].rows.len());
    println!(
        "query: history(job00 bytes_out, {} h, step 1s) = {rows} rows: first {:.1} ms, median {:.1} ms (CPU {:.1} ms)",
        (T0 + secs - from) / 3600,
        ms(first),
        ms(med),
        ms(qcpu)
    );
    drop(reader);

    // 1 min and 1 h tiers: `days` of one-minute points for every series, as they arrive from
    // the rollup of seconds or from pool summaries (the writer's code from the minute tier up).
    let coarse = tmp_path.join("coarse.db");
    let mut opts = StoreOptions::new(&coarse);
    opts.max_bytes = 64 << 30;
    let mut store = Store::open(opts).unwrap();
    let mut rec = Recorder::new(1);
    let mut synth = benchmark_node(jobs, T0 - days * 86_400 - 1);
    let start = T0 - days * 86_400;
    let mut coarse_cpu = Duration::ZERO;
    for m in 0..days * 1440 {
        let ts = start + m * 60;
        let one = rec.handle_sample(&synth.sample(ts));
        let c0 = thread_cpu();
        let points = one
            .points
            .iter()
            .map(|o| {
                let p = o.point;
                // A minute around this second's value, with some spread for min and max.
                Observation {
                    series: o.series,
                    tier: Tier::Min,
                    ts,
                    point: Point {
                        sum: p.sum.saturating_mul(60),
                        count: 60,
                        min: p.min / 2,
                        max: p.max + p.max / 2,
                    },
                }
            })
            .collect();
        let batch = Batch {
            new_series: one.new_series,
            points,
        };
        store.write(&[batch], &rec).unwrap();
        coarse_cpu += thread_cpu() - c0;
        if m % 14_400 == 14_399 {
            eprintln!("  {} days of minutes", (m + 1) / 1440);
        }
    }
    let st = store.stats();
    drop(store);
    let tb = table_bytes(&coarse);
    for (t, name) in [(1, "chunk_1m"), (2, "chunk_1h")] {
        println!(
            "  {} tier: {:.2} ({:.2}) over {} points",
            Tier::ALL[t].label(),
            bytes(&tb, name) as f64 / st.tiers[t].points.max(1) as f64,
            st.tiers[t].bytes as f64 / st.tiers[t].points.max(1) as f64,
            st.tiers[t].points
        );
    }
    println!(
        "  ({days} days of minutes for {series} series written in {:.1} s CPU)",
        coarse_cpu.as_secs_f64()
    );

    // 3b. All jobs, `days` of 1 min data.
    let reader = Reader::open(&coarse).unwrap();
    let all = Selector {
        kind: Some(EntityKind::Job),
        ..Default::default()
    };
    let (first, med, qcpu, n) = timed(3, || {
        let ds = Dataset::load(&reader, &all, Tier::Min, start, T0).unwrap();
        ds.series.iter().map(|s| s.points.len()).sum::<usize>()
    });
    println!(
        "query: all {jobs} jobs, every series, {days} days of 1 min data = {n} points: first {:.0} ms, median {:.0} ms (CPU {:.0} ms)",
        ms(first),
        ms(med),
        ms(qcpu)
    );
    let out = all.clone().with_metrics(&[Metric::BytesOut]);
    let (first, med, qcpu, n) = timed(5, || {
        let ds = Dataset::load(&reader, &out, Tier::Min, start, T0).unwrap();
        ds.series.iter().map(|s| s.points.len()).sum::<usize>()
    });
    println!(
        "query: all {jobs} jobs, bytes_out, {days} days of 1 min data = {n} points: first {:.1} ms, median {:.1} ms (CPU {:.1} ms)",
        ms(first),
        ms(med),
        ms(qcpu)
    );
    let (first, med, qcpu, n) = timed(3, || {
        let ds = Dataset::load(&reader, &all, Tier::Min, T0 - 86_400, T0).unwrap();
        headroom_history::report::report(&ds).jobs.len()
    });
    println!(
        "report: {n} jobs over 24 h from the 1 min tier (load + report): first {:.0} ms, median {:.0} ms (CPU {:.0} ms)",
        ms(first),
        ms(med),
        ms(qcpu)
    );
}
