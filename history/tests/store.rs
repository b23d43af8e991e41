//! The store against known shapes: every stored one-second and one-minute point equals what
//! the synthetic jobs sent, hours roll up, and everything survives closing and reopening.

use std::collections::HashMap;

use headroom_history::recorder::Recorder;
use headroom_history::synth::{Shape, Synth, SynthJob};
use headroom_history::{EntityKind, Metric, Point, SeriesKey, Store, StoreOptions, Tier};

const T0: i64 = 1_764_583_200; // 2025-12-01T10:00:00Z, on an hour boundary

fn jobs() -> Vec<SynthJob> {
    vec![
        SynthJob::new("steady", Shape::Steady(625_000.0), "uplink"),
        SynthJob::new(
            "bursty",
            Shape::Bursty {
                base: 12_500.0,
                peak: 2_500_000.0,
                period_s: 37,
                burst_s: 4,
            },
            "uplink",
        ),
    ]
}

fn id_of(store: &Store, job: &str, sub: &str, m: Metric) -> i64 {
    let key = SeriesKey::new(1, EntityKind::Job, job, sub, m);
    store
        .series()
        .unwrap()
        .into_iter()
        .find(|(_, k)| *k == key)
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("no series {key}"))
}

/// Runs seconds `from..to`, returning per job the bytes sent in each second.
fn run(
    store: &mut Store,
    rec: &mut Recorder,
    synth: &mut Synth,
    from: i64,
    to: i64,
    sent: &mut [HashMap<i64, u64>],
) {
    for t in from..to {
        let s = synth.sample(t);
        for (i, a) in synth.last.iter().enumerate() {
            sent[i].insert(t, a.bytes_out);
        }
        let b = rec.handle_sample(&s);
        store.write(&[b], rec).unwrap();
    }
}

fn check(store: &Store, sent: &[HashMap<i64, u64>], from: i64, to: i64) {
    for (i, job) in ["steady", "bursty"].iter().enumerate() {
        for (sub, m) in [("", Metric::BytesOut), ("uplink", Metric::PipeSentBytes)] {
            let id = id_of(store, job, sub, m);
            let secs = &store.points(Tier::Sec, &[id], from, to).unwrap()[&id];
            assert_eq!(
                secs.len() as i64,
                to - from,
                "{job} {m:?}: one point per second"
            );
            for (ts, p) in secs {
                assert_eq!(*p, Point::single(sent[i][ts] as i64), "{job} {m:?} at {ts}");
            }
            let mins = &store.points(Tier::Min, &[id], from, to).unwrap()[&id];
            assert_eq!(mins.len() as i64, (to - from) / 60);
            for (ts, p) in mins {
                let v: Vec<i64> = (*ts..ts + 60).map(|t| sent[i][&t] as i64).collect();
                let want = Point {
                    sum: v.iter().sum(),
                    count: 60,
                    min: *v.iter().min().unwrap(),
                    max: *v.iter().max().unwrap(),
                };
                assert_eq!(*p, want, "{job} {m:?} minute {ts}");
            }
            let hours = &store.points(Tier::Hour, &[id], from, to).unwrap()[&id];
            let total: i64 = (from..to).map(|t| sent[i][&t] as i64).sum();
            assert_eq!(hours.iter().map(|(_, p)| p.sum).sum::<i64>(), total);
            assert_eq!(
                hours.iter().map(|(_, p)| p.count as i64).sum::<i64>(),
                to - from
            );
        }
    }
}

#[test]
fn steady_and_bursty_points_are_exact_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions::new(dir.path().join("h.db"));
    let mut store = Store::open(opts.clone()).unwrap();
    let mut rec = Recorder::new(1);
    let mut synth = Synth::new(4.0, jobs(), T0 - 1);
    let mut sent = vec![HashMap::new(), HashMap::new()];
    // 1 h 10 min: one hour packed and rolled up, the last minutes still open.
    let mid = T0 + 4200;
    run(&mut store, &mut rec, &mut synth, T0, mid, &mut sent);
    check(&store, &sent, T0, mid - 60);
    let st = store.stats();
    assert!(st.tiers[0].points > 0 && st.tiers[1].points > 0);
    assert_eq!(st.late_points, 0);
    drop(store);

    // Reopen; a new recorder (as after a daemon restart) continues the same series.
    let mut store = Store::open(opts.clone()).unwrap();
    check(&store, &sent, T0, mid - 60);
    let mut rec = Recorder::new(1);
    synth.restart(mid - 1);
    let end = T0 + 2 * 3600 + 300;
    run(&mut store, &mut rec, &mut synth, mid, end, &mut sent);
    check(&store, &sent, T0, end - 60);
    // Two whole hours are packed at the hour tier.
    let id = id_of(&store, "steady", "", Metric::BytesOut);
    let hours = store.points(Tier::Hour, &[id], T0, T0 + 7200).unwrap();
    assert_eq!(
        hours[&id],
        vec![
            (
                T0,
                Point {
                    sum: 625_000 * 3600,
                    count: 3600,
                    min: 625_000,
                    max: 625_000
                }
            ),
            (
                T0 + 3600,
                Point {
                    sum: 625_000 * 3600,
                    count: 3600,
                    min: 625_000,
                    max: 625_000
                }
            ),
        ]
    );
}

/// A file written by version 1 (one row per point) opens, is migrated to chunks, and reads
/// back the same points at every tier; writing continues on it.
#[test]
fn migrates_a_version_1_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    // Version 1's writer: every tier's points as rows, rolled up when a period closed.
    let end = T0 + 3600 + 600;
    let mut expect: HashMap<Tier, Vec<(i64, Point)>> = HashMap::new();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(headroom_history::store::schema::V1)
            .unwrap();
        conn.execute(
            "INSERT INTO series (id, node, kind, name, sub, metric) VALUES (7, 1, ?1, 'steady', '', ?2)",
            (EntityKind::Job.code(), Metric::BytesOut.code()),
        )
        .unwrap();
        let mut ins = |tier: Tier, ts: i64, p: Point| {
            conn.execute(
                "INSERT INTO point VALUES (?1, 7, ?2, ?3, ?4, ?5, ?6)",
                (tier.code(), ts, p.sum, p.count, p.min, p.max),
            )
            .unwrap();
            expect.entry(tier).or_default().push((ts, p));
        };
        let v = |t: i64| 600_000 + (t % 7) * 1000;
        for t in T0..end {
            ins(Tier::Sec, t, Point::single(v(t)));
        }
        // v1 wrote minute and hour points of closed periods only.
        let closed_min = (end - 5) / 60 * 60;
        for m in (T0..closed_min).step_by(60) {
            let mut p = Point::single(v(m));
            (m + 1..m + 60).for_each(|t| p.merge(&Point::single(v(t))));
            ins(Tier::Min, m, p);
        }
        let mut h = Point::single(v(T0));
        (T0 + 1..T0 + 3600).for_each(|t| h.merge(&Point::single(v(t))));
        ins(Tier::Hour, T0, h);
    }
    let mut store = Store::open(StoreOptions::new(&path)).unwrap();
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, headroom_history::store::schema::VERSION);
    for t in Tier::ALL {
        let got = store.points(t, &[7], T0, end).unwrap().remove(&7).unwrap();
        let mut want = expect[&t].clone();
        if t == Tier::Min {
            // The open minutes are read rolled up from the open seconds.
            let closed = (end - 5) / 60 * 60;
            for m in (closed..end).step_by(60) {
                let v = |t: i64| 600_000 + (t % 7) * 1000;
                let mut p = Point::single(v(m));
                (m + 1..(m + 60).min(end)).for_each(|t| p.merge(&Point::single(v(t))));
                want.push((m, p));
            }
        }
        if t == Tier::Hour {
            let v = |t: i64| 600_000 + (t % 7) * 1000;
            let mut p = Point::single(v(T0 + 3600));
            (T0 + 3601..end).for_each(|t| p.merge(&Point::single(v(t))));
            want.push((T0 + 3600, p));
        }
        assert_eq!(got, want, "tier {}", t.label());
    }
    assert!(store.stats().tiers[0].chunks >= 60);
    // The migrated file keeps taking samples for the same series.
    let mut rec = Recorder::new(1);
    let mut synth = Synth::new(4.0, jobs(), end - 1);
    store
        .write(&[rec.handle_sample(&synth.sample(end))], &rec)
        .unwrap();
    let steady = id_of(&store, "steady", "", Metric::BytesOut);
    assert_eq!(steady, 7);
    assert_eq!(
        store.points(Tier::Sec, &[7], end, end + 1).unwrap()[&7],
        vec![(end, Point::single(625_000))]
    );
    // Version 3's journal exists on the migrated file.
    store
        .write_journal(&[journal_row(end, "j#1 firing")])
        .unwrap();
    assert_eq!(
        store.journal(0).unwrap(),
        vec![journal_row(end, "j#1 firing")]
    );
}

fn journal_row(secs: i64, line: &str) -> headroom_history::EventRow {
    headroom_history::EventRow {
        unix_ms: secs as u64 * 1000,
        node: 1,
        line: line.into(),
        entry: serde_json::json!({ "entry": "trigger", "line": line }),
    }
}

/// Journal entries live as long as the one-hour tier keeps points, judged by the newest
/// data (no clock); they survive reopening the file.
#[test]
fn journal_expires_with_the_hour_tier_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StoreOptions::new(dir.path().join("j.db"));
    opts.retention = [
        std::time::Duration::from_secs(180),
        std::time::Duration::from_secs(600),
        std::time::Duration::from_secs(600),
    ];
    let mut store = Store::open(opts.clone()).unwrap();
    store
        .write_journal(&[
            journal_row(T0, "old#1 firing"),
            journal_row(T0 + 900, "new#1 firing"),
        ])
        .unwrap();
    let mut rec = Recorder::new(1);
    let mut synth = Synth::new(4.0, jobs(), T0 - 1);
    let mut sent = vec![HashMap::new(), HashMap::new()];
    run(&mut store, &mut rec, &mut synth, T0, T0 + 1200, &mut sent);
    assert_eq!(store.stats().journal_expired, 1);
    assert_eq!(store.stats().journal_written, 2);
    drop(store);
    let r = headroom_history::Reader::open(&opts.path).unwrap();
    assert_eq!(
        r.journal(0).unwrap(),
        vec![journal_row(T0 + 900, "new#1 firing")]
    );
    assert!(r.journal((T0 as u64 + 901) * 1000).unwrap().is_empty());
}

fn many_jobs(n: usize) -> Vec<SynthJob> {
    (0..n)
        .map(|i| SynthJob::new(&format!("j{i}"), Shape::Steady(1000.0 * i as f64), "uplink"))
        .collect()
}

#[test]
fn retention_drops_whole_old_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StoreOptions::new(dir.path().join("r.db"));
    opts.retention = [
        std::time::Duration::from_secs(180),
        std::time::Duration::from_secs(3600),
        std::time::Duration::from_secs(86400),
    ];
    let mut store = Store::open(opts).unwrap();
    let mut rec = Recorder::new(1);
    let mut synth = Synth::new(4.0, jobs(), T0 - 1);
    let mut sent = vec![HashMap::new(), HashMap::new()];
    let end = T0 + 600;
    run(&mut store, &mut rec, &mut synth, T0, end, &mut sent);
    let id = id_of(&store, "steady", "", Metric::BytesOut);
    let secs = &store.points(Tier::Sec, &[id], T0, end).unwrap()[&id];
    // Kept: the chunks overlapping the last 3 minutes, and the open minute.
    let first = secs.first().unwrap().0;
    assert!(
        (end - 300..=end - 180).contains(&first),
        "oldest second kept: {}",
        first - T0
    );
    assert!(store.stats().points_expired > 0);
    // The minute tier still has all ten minutes.
    let mins = &store.points(Tier::Min, &[id], T0, end).unwrap()[&id];
    assert_eq!(mins.len(), 10);
    assert_eq!(mins.iter().map(|(_, p)| p.sum).sum::<i64>(), 625_000 * 600);
}

#[test]
fn size_bound_drops_the_oldest_fine_data_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StoreOptions::new(dir.path().join("s.db"));
    opts.max_bytes = 2 << 20;
    let mut store = Store::open(opts.clone()).unwrap();
    let mut rec = Recorder::new(1);
    let mut synth = Synth::new(4.0, many_jobs(12), T0 - 1);
    let end = T0 + 2 * 3600;
    for t in T0..end {
        let b = rec.handle_sample(&synth.sample(t));
        store.write(&[b], &rec).unwrap();
    }
    let st = store.stats();
    assert!(st.points_dropped_for_size > 0, "{st:?}");
    assert!(
        st.bytes_used <= opts.max_bytes,
        "{} bytes used",
        st.bytes_used
    );
    assert_eq!(st.size_bound_unmet, 0);
    let key = SeriesKey::new(1, EntityKind::Job, "j7", "", Metric::BytesOut);
    let id = store
        .series()
        .unwrap()
        .into_iter()
        .find(|(_, k)| *k == key)
        .unwrap()
        .0;
    // The newest seconds are there, the oldest are gone; minutes cover both hours.
    let secs = &store.points(Tier::Sec, &[id], T0, end).unwrap()[&id];
    assert_eq!(secs.last().unwrap().0, end - 1);
    assert!(secs.first().unwrap().0 > T0 + 600);
    let mins = &store.points(Tier::Min, &[id], T0, end).unwrap()[&id];
    assert_eq!(mins.first().unwrap().0, T0);
    assert_eq!(
        mins.iter().map(|(_, p)| p.sum).sum::<i64>(),
        7000 * 2 * 3600
    );
    // The file itself stays near the bound (free pages are reused).
    let file = std::fs::metadata(&opts.path).unwrap().len();
    assert!(file < 2 * opts.max_bytes, "file is {file} bytes");
}

#[test]
fn late_points_merge_into_packed_periods() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(StoreOptions::new(dir.path().join("l.db"))).unwrap();
    let mut rec = Recorder::new(1);
    let mut synth = Synth::new(4.0, jobs(), T0 - 1);
    let mut sent = vec![HashMap::new(), HashMap::new()];
    run(&mut store, &mut rec, &mut synth, T0, T0 + 300, &mut sent);
    // The wall clock steps back two minutes: samples land in packed minutes.
    let id = id_of(&store, "steady", "", Metric::BytesOut);
    let before = store.points(Tier::Min, &[id], T0, T0 + 300).unwrap()[&id].clone();
    let mut s = synth.sample(T0 + 300);
    s.at = headroom_history::time::from_secs(T0 + 121);
    store.write(&[rec.handle_sample(&s)], &rec).unwrap();
    run(
        &mut store,
        &mut rec,
        &mut synth,
        T0 + 301,
        T0 + 400,
        &mut sent,
    );
    assert!(store.stats().late_points > 0);
    let after = store.points(Tier::Min, &[id], T0, T0 + 300).unwrap()[&id].clone();
    assert_eq!(after[2].1.sum, before[2].1.sum + 625_000);
    assert_eq!(after[2].1.count, 61);
    let secs = &store.points(Tier::Sec, &[id], T0 + 120, T0 + 121).unwrap()[&id];
    assert_eq!(
        secs[0].1,
        Point {
            sum: 1_250_000,
            count: 2,
            min: 625_000,
            max: 625_000
        }
    );
}
