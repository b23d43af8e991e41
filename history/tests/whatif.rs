//! What-if replays of stored history against hand calculations: a policy change on a
//! congested pipe, and taking a node out of a three-node pool whose other members' history
//! arrived as pool summaries (one of them has since died).

use std::path::Path;

use headroom_config::Config;
use headroom_control::policy::summary::{JobSummary, NodeSummary};
use headroom_history::query::Dataset;
use headroom_history::recorder::Recorder;
use headroom_history::synth::{Shape, Synth, SynthJob};
use headroom_history::whatif::{render_text, what_if, Prediction, WhatIfOptions, WhatIfPolicy};
use headroom_history::{EntityKind, Selector, Store, StoreOptions, Tier};

const T0: i64 = 1_764_583_200;

fn config(extra: &str) -> Config {
    let src = format!(
        "[node]\nid = 1\naddress = \"10.0.0.1\"\n[interfaces]\nouter = \"eth0\"\ninner = \"eth1\"\n{extra}"
    );
    Config::parse(&src, Path::new("policy.toml")).unwrap()
}

/// Job `job`'s prediction on pipe `uplink`.
fn on_uplink<'a>(r: &'a headroom_history::whatif::WhatIfReport, job: &str) -> &'a Prediction {
    r.jobs
        .iter()
        .find(|p| p.job == job && p.resource == "pipe uplink")
        .unwrap()
}

fn near(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol
}

#[test]
fn booking_change_on_a_congested_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(StoreOptions::new(dir.path().join("h.db"))).unwrap();
    // Recorded: a offers 8 Mbit/s, b 6 Mbit/s.
    let jobs = vec![
        SynthJob::new("a", Shape::Steady(1_000_000.0), "uplink"),
        SynthJob::new("b", Shape::Steady(750_000.0), "uplink"),
    ];
    let mut synth = Synth::new(4.0, jobs, T0 - 1);
    let mut rec = Recorder::new(1);
    for t in T0..T0 + 300 {
        let b = rec.handle_sample(&synth.sample(t));
        store.write(&[b], &rec).unwrap();
    }
    // Tried: a 10 Mbit/s pipe with a booked 6 Mbit/s and b 2 Mbit/s.
    let policy = WhatIfPolicy::from_config(&config(
        r#"
[[pipe]]
name = "uplink"
capacity = "10Mbit"
[[job]]
name = "a"
[[job.booking]]
pipe = "uplink"
rate = "6Mbit"
[[job]]
name = "b"
[[job.booking]]
pipe = "uplink"
rate = "2Mbit"
"#,
    ))
    .unwrap();
    let ds = Dataset::load(&store, &Selector::default(), Tier::Sec, T0, T0 + 300).unwrap();
    let r = what_if(&ds, &policy, &WhatIfOptions::default());
    // By hand, per 20 ms interval: capacity 25000 B; a wants 20000 (15000 booked), b 15000
    // (5000 booked). Booked 20000 fit; the 5000 B left go to the unbooked 5000 + 10000 in
    // proportion: a 1666, b 3333 (rounded down). Per second (x50): a 833300 B/s, b 416650.
    let a = on_uplink(&r, "a");
    let b = on_uplink(&r, "b");
    assert!(near(a.grant_mean, 833_300.0, 1e-6), "{a:?}");
    assert!(near(a.shortfall_mean, 166_700.0, 1e-6), "{a:?}");
    assert!(near(b.grant_mean, 416_650.0, 1e-6), "{b:?}");
    assert!(near(b.shortfall_mean, 333_350.0, 1e-6), "{b:?}");
    assert_eq!((a.squeezed_secs, b.squeezed_secs), (300, 300));
    assert!(near(a.shortfall_total, 166_700.0 * 300.0, 1e-3));
    assert!(!r.fits);
    assert_eq!(r.fit_steps, 0);
    // With a 20 Mbit/s pipe everything fits.
    let mut wide = policy.clone();
    wide.pipes[0].spec.capacity_bps = 20_000_000;
    let r = what_if(&ds, &wide, &WhatIfOptions::default());
    assert!(r.fits, "{}", render_text(&r));
    assert!(r.jobs.iter().all(|p| p.shortfall_total == 0.0));
}

/// Node 1 records its own samples; nodes 2 and 3 are known from their summaries (node 3
/// stops halfway: it died). Each node has 2 cores. Job A uses 1.2 cores on every node, job B
/// 0.6 cores on node 3 only; policy A 60 % and B 20 % of each server.
fn pool_history(dir: &Path) -> Store {
    let mut store = Store::open(StoreOptions::new(dir.join("h.db"))).unwrap();
    let mut job_a = SynthJob::new("A", Shape::Steady(0.0), "uplink");
    job_a.cpu = Shape::Steady(1.2);
    job_a.inn = Shape::Steady(0.0);
    let mut synth = Synth::new(2.0, vec![job_a], T0 - 1);
    let mut rec = Recorder::new(1);
    let job = |name: &str, cpu_permille: u32| JobSummary {
        name: name.into(),
        cpu_permille,
        ..Default::default()
    };
    for t in T0..T0 + 1200 {
        let mut batches = vec![rec.handle_sample(&synth.sample(t))];
        if (t + 1) % 60 == 0 {
            let at = headroom_history::time::from_secs(t + 1);
            let two = NodeSummary {
                window_ms: 60_000,
                cores: 2,
                cpu_permille: 600,
                jobs: vec![job("A", 1200)],
                ..Default::default()
            };
            batches.push(rec.handle_summary(2, at, &two));
            if t < T0 + 600 {
                let three = NodeSummary {
                    window_ms: 60_000,
                    cores: 2,
                    cpu_permille: 900,
                    jobs: vec![job("A", 1200), job("B", 600)],
                    ..Default::default()
                };
                batches.push(rec.handle_summary(3, at, &three));
            }
        }
        store.write(&batches, &rec).unwrap();
    }
    store
}

fn cpu_policy() -> WhatIfPolicy {
    WhatIfPolicy::from_config(&config(
        r#"
[[job]]
name = "A"
cpu = { server_percent = 60 }
[[job]]
name = "B"
cpu = { server_percent = 20 }
"#,
    ))
    .unwrap()
}

#[test]
fn without_node_3_the_pool_is_short_by_the_hand_calculation() {
    let dir = tempfile::tempdir().unwrap();
    let store = pool_history(dir.path());
    // The first ten minutes, while node 3 was alive; read from any node's store.
    let ds = Dataset::load(&store, &Selector::default(), Tier::Min, T0, T0 + 600).unwrap();
    assert_eq!(ds.nodes(), vec![1, 2, 3]);
    let kept = what_if(&ds, &cpu_policy(), &WhatIfOptions::default());
    assert!(kept.fits, "{}", render_text(&kept));
    assert!(near(kept.peak_cpu_demand, 4.2, 1e-3));

    let r = what_if(
        &ds,
        &cpu_policy(),
        &WhatIfOptions {
            without_nodes: vec![3],
        },
    );
    // By hand: node 3's A (1.2) splits over nodes 1 and 2 (0.6 each, to 1.8); B runs nowhere
    // else, so 0.3 goes to each. Per node, 2 cores shared 60:20: B's fair 0.5 covers its 0.3,
    // A gets the other 1.7 of its 1.8. Pool-wide A is short 0.2 cores, B not at all.
    let a = r
        .jobs
        .iter()
        .find(|p| p.job == "A" && p.resource == "cpu")
        .unwrap();
    let b = r
        .jobs
        .iter()
        .find(|p| p.job == "B" && p.resource == "cpu")
        .unwrap();
    assert!(near(a.demand_mean, 3.6, 1e-3), "{a:?}");
    assert!(near(a.grant_mean, 3.4, 1e-3), "{a:?}");
    assert!(near(a.shortfall_mean, 0.2, 1e-3), "{a:?}");
    assert!(near(b.grant_mean, 0.6, 1e-3), "{b:?}");
    assert!(near(b.shortfall_mean, 0.0, 1e-6), "{b:?}");
    assert_eq!(a.squeezed_secs, 600);
    assert!(!r.fits);
    assert!(near(r.remaining_cores, 4.0, 1e-6));
    let text = render_text(&r);
    assert!(
        text.contains("does not fit") && text.contains("without node 3"),
        "{text}"
    );

    // After node 3 died its history is still there, and later steps have only nodes 1, 2.
    let late = Dataset::load(&store, &Selector::default(), Tier::Min, T0 + 600, T0 + 1200).unwrap();
    assert_eq!(late.nodes(), vec![1, 2]);
    let gone = store
        .series()
        .unwrap()
        .into_iter()
        .filter(|(_, k)| k.node == 3 && k.kind == EntityKind::Job)
        .count();
    assert!(gone > 0);
}

/// A step observed only in part (the window's open minute) weighs only its seconds: one full
/// minute 8 Mbit/s over an 8 Mbit/s-short pipe and 6 s that fit average to 60/66 of the
/// full minute's shortfall, not half of it.
#[test]
fn partial_steps_weigh_their_seconds() {
    use headroom_history::query::SeriesData;
    use headroom_history::recorder::scale;
    use headroom_history::{Metric, Point, SeriesKey};
    let m = Metric::PipeDemandBytes;
    let point = |bps: f64, secs: u32| {
        let v = scale(m, bps).unwrap();
        Point {
            sum: v * i64::from(secs),
            count: secs,
            min: v,
            max: v,
        }
    };
    let ds = Dataset {
        tier: Tier::Min,
        from: T0,
        to: T0 + 66,
        series: vec![SeriesData {
            key: SeriesKey::new(1, EntityKind::Job, "a", "uplink", m),
            points: vec![(T0, point(2_000_000.0, 60)), (T0 + 60, point(500_000.0, 6))],
        }],
    };
    let policy = WhatIfPolicy::from_config(&config(
        "[[pipe]]\nname = \"uplink\"\ncapacity = \"8Mbit\"\n[[job]]\nname = \"a\"\n",
    ))
    .unwrap();
    let r = what_if(&ds, &policy, &WhatIfOptions::default());
    let a = on_uplink(&r, "a");
    assert_eq!(r.steps, 2);
    let want = 1_000_000.0 * 60.0 / 66.0;
    assert!(near(a.shortfall_mean, want, want * 0.01), "{a:?} vs {want}");
    assert!(
        near(a.demand_mean, (2e6 * 60.0 + 5e5 * 6.0) / 66.0, 1.0),
        "{a:?}"
    );
}
