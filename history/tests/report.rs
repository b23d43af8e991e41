//! Reports from stored history of known shapes: the steady job's percentiles within 2 % of
//! its rate, the bursty job's bursts as squeezed periods and breaches, top consumers.

use headroom_history::query::Dataset;
use headroom_history::recorder::Recorder;
use headroom_history::report::{render_text, report};
use headroom_history::synth::{Shape, Synth, SynthJob};
use headroom_history::{Selector, Store, StoreOptions, Tier};

const T0: i64 = 1_764_583_200;
const STEADY: f64 = 625_000.0; // 5 Mbit/s

fn history(secs: i64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(StoreOptions::new(dir.path().join("h.db"))).unwrap();
    let mut steady = SynthJob::new("steady", Shape::Steady(STEADY), "uplink");
    steady.booked_bps = Some(6_000_000);
    steady.cpu = Shape::Daily {
        mean: 0.4,
        amplitude: 0.0,
        noise: 0.5,
    };
    let mut bursty = SynthJob::new(
        "bursty",
        Shape::Bursty {
            base: 12_500.0,
            peak: 2_500_000.0,
            period_s: 40,
            burst_s: 4,
        },
        "uplink",
    );
    // Booked 8 Mbit/s but granted at most 6 Mbit/s: bursts are squeezed and breach it.
    bursty.booked_bps = Some(8_000_000);
    bursty.grant_cap = Some(750_000.0);
    let mut synth = Synth::new(4.0, vec![steady, bursty], T0 - 1);
    let mut rec = Recorder::new(1);
    for t in T0..T0 + secs {
        let b = rec.handle_sample(&synth.sample(t));
        store.write(&[b], &rec).unwrap();
    }
    (dir, store)
}

fn within(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= want * tol
}

#[test]
fn percentiles_squeezes_and_breaches() {
    let (_dir, store) = history(1800);
    let ds = Dataset::load(&store, &Selector::default(), Tier::Sec, T0, T0 + 1800).unwrap();
    let r = report(&ds);
    let steady = r.jobs.iter().find(|j| j.job == "steady").unwrap();
    let out = steady
        .resources
        .iter()
        .find(|x| x.resource == "out")
        .unwrap();
    for v in [out.p50, out.p95, out.p99, out.max, out.mean] {
        assert!(
            within(v, STEADY, 0.02),
            "steady out {v} vs {STEADY}: {out:?}"
        );
    }
    assert_eq!(out.seconds, 1800);
    // CPU: uniform in 0.2..0.6 cores; p50 ~0.4, p95 ~0.58.
    let cpu = steady
        .resources
        .iter()
        .find(|x| x.resource == "cpu")
        .unwrap();
    assert!(within(cpu.p50, 0.4, 0.05), "{cpu:?}");
    assert!(within(cpu.p95, 0.58, 0.03), "{cpu:?}");
    assert!(cpu.max <= 0.6 + 1e-9);
    let pipe = steady
        .resources
        .iter()
        .find(|x| x.resource == "pipe uplink")
        .unwrap();
    // 5 of 6 Mbit/s booked: always below its booking, at 83 %.
    assert_eq!(pipe.below_policy_secs, Some(1800));
    assert_eq!(pipe.above_policy_secs, Some(0));
    assert!(within(pipe.policy.unwrap(), 750_000.0, 1e-9));
    assert!(
        (pipe.histogram[8].fraction - 1.0).abs() < 1e-9,
        "{:?}",
        pipe.histogram
    );
    assert_eq!(steady.squeezed_secs, 0);
    assert_eq!(steady.breach_secs, 0);

    let bursty = r.jobs.iter().find(|j| j.job == "bursty").unwrap();
    let out = bursty
        .resources
        .iter()
        .find(|x| x.resource == "out")
        .unwrap();
    // 4 of 40 seconds at the (capped) peak: p50 is the base, p95 the cap.
    assert!(within(out.p50, 12_500.0, 0.02), "{out:?}");
    assert!(within(out.p95, 750_000.0, 0.02), "{out:?}");
    // 45 bursts of 4 s, each squeezed and each a breach (wanted 8 Mbit/s, got 6).
    assert_eq!(bursty.squeezed_secs, 45 * 4);
    assert_eq!(bursty.breach_secs, 45 * 4);
    assert_eq!(bursty.squeezed.len(), 10);
    let p = &bursty.squeezed[0];
    assert_eq!(
        (
            headroom_history::time::secs(p.start),
            headroom_history::time::secs(p.end),
            p.secs
        ),
        (T0, T0 + 4, 4)
    );
    assert!(within(p.peak_shortfall, 2_500_000.0 - 750_000.0, 1e-9));
    let b = &bursty.breaches[0];
    assert!(
        within(b.peak_shortfall, 1_000_000.0 - 750_000.0, 1e-9),
        "{b:?}"
    );

    let up = r.pipes.iter().find(|p| p.pipe == "uplink").unwrap();
    assert_eq!(up.top[0].job, "steady");
    assert!(within(up.top[0].mean_bytes_per_sec, STEADY, 1e-9));
    let text = render_text(&r);
    assert!(text.contains("job steady"), "{text}");
    assert!(text.contains("5.00 Mbit/s"), "{text}");
    assert!(text.contains("squeezed (demand above grant): 3m"), "{text}");
}

#[test]
fn minute_tier_report_agrees() {
    let (_dir, store) = history(1800);
    let ds = Dataset::load(&store, &Selector::default(), Tier::Min, T0, T0 + 1800).unwrap();
    let r = report(&ds);
    assert!(r.basis.contains("per-minute"));
    let steady = r.jobs.iter().find(|j| j.job == "steady").unwrap();
    let out = steady
        .resources
        .iter()
        .find(|x| x.resource == "out")
        .unwrap();
    assert!(within(out.p95, STEADY, 0.02), "{out:?}");
    assert_eq!(out.seconds, 1800);
    let bursty = r.jobs.iter().find(|j| j.job == "bursty").unwrap();
    // Minute averages hide bursts from percentiles, but max keeps the per-second peak.
    let out = bursty
        .resources
        .iter()
        .find(|x| x.resource == "out")
        .unwrap();
    assert!(within(out.max, 750_000.0, 1e-9), "{out:?}");
    assert!(out.p95 < 200_000.0, "{out:?}");
}
