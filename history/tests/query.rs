//! `history(series, since, step)` through a read-only [`Reader`] beside the writer: rows at
//! the requested step from the right tier, as text, CSV and JSON.

use std::time::Duration;

use headroom_history::query::{history, HistoryQuery, HistoryTable};
use headroom_history::recorder::Recorder;
use headroom_history::synth::{Shape, Synth, SynthJob};
use headroom_history::{Metric, Reader, Selector, Store, StoreOptions, Tier};

const T0: i64 = 1_764_583_200;

/// A store with a reader beside it, and server 1's recorder for job `web`
/// sending a steady 5 Mbit/s.
fn web_store() -> (tempfile::TempDir, Store, Reader, Synth, Recorder) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let store = Store::open(StoreOptions::new(&path)).unwrap();
    let reader = Reader::open(&path).unwrap();
    let synth = Synth::new(
        4.0,
        vec![SynthJob::new("web", Shape::Steady(625_000.0), "uplink")],
        T0 - 1,
    );
    (dir, store, reader, synth, Recorder::new(1))
}

#[test]
fn history_rows_csv_and_json() {
    let (_dir, mut store, reader, mut synth, mut rec) = web_store();
    for t in T0..T0 + 630 {
        let b = rec.handle_sample(&synth.sample(t));
        store.write(&[b], &rec).unwrap();
    }
    // One-minute steps over the last 10 minutes: from the minute tier, with the open
    // minute rolled up from its seconds.
    let q = HistoryQuery {
        selector: Selector::parse("web")
            .unwrap()
            .with_metrics(&[Metric::BytesOut]),
        since: headroom_history::time::from_secs(T0 + 30),
        until: None,
        step: Duration::from_secs(60),
    };
    let t = history(&reader, &q).unwrap();
    assert_eq!((t.tier, t.step_secs), (Tier::Min, 60));
    assert_eq!(t.series.len(), 1);
    let rows = &t.series[0].rows;
    assert_eq!(rows.len(), 11);
    assert_eq!(rows[0].ts, T0);
    assert!(rows.iter().all(|r| (r.mean - 625_000.0).abs() < 1e-6));
    assert_eq!(rows[10].seconds, 30);
    assert_eq!(rows[3].total, Some(625_000.0 * 60.0));
    let csv = t.to_csv();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("time,series,unit,mean,min,max,total,seconds")
    );
    assert_eq!(
        lines.next(),
        Some(
            "2025-12-01T10:00:00Z,node1:job/web:bytes_out,bytes/s,625000,625000,625000,37500000,60"
        )
    );
    let back: HistoryTable = serde_json::from_str(&t.to_json()).unwrap();
    assert_eq!(back, t);
    assert!(t.to_text().contains("5.00 Mbit/s"));
    // Ten-second steps come from the one-second tier.
    let q = HistoryQuery {
        step: Duration::from_secs(10),
        ..q
    };
    let t = history(&reader, &q).unwrap();
    assert_eq!((t.tier, t.step_secs), (Tier::Sec, 10));
    assert_eq!(t.series[0].rows.len(), 60);
    assert_eq!(t.series[0].rows[0].total, Some(6_250_000.0));
    // A node's own series.
    let q = HistoryQuery {
        selector: Selector::parse("node/1").unwrap(),
        since: headroom_history::time::from_secs(T0),
        until: Some(headroom_history::time::from_secs(T0 + 60)),
        step: Duration::from_secs(60),
    };
    let t = history(&reader, &q).unwrap();
    let cores = t
        .series
        .iter()
        .find(|s| s.key.metric == Metric::Cores)
        .unwrap();
    assert_eq!(cores.rows[0].mean, 4.0);
}

#[test]
fn short_windows_show_peers_from_the_minute_tier() {
    use headroom_control::policy::summary::{JobSummary, NodeSummary};
    let (_dir, mut store, reader, mut synth, mut rec) = web_store();
    let peer = NodeSummary {
        window_ms: 1000,
        cores: 2,
        jobs: vec![JobSummary {
            name: "web".into(),
            tx_bps: 2_000_000,
            ..Default::default()
        }],
        ..Default::default()
    };
    for t in T0..T0 + 180 {
        let own = rec.handle_sample(&synth.sample(t));
        let at = headroom_history::time::from_secs(t);
        let theirs = rec.handle_summary(2, at, &peer);
        store.write(&[own, theirs], &rec).unwrap();
    }
    // Ten-second steps read the 1 s tier, which holds only server 1's own points;
    // server 2's come from the minute tier, one row a minute.
    let q = HistoryQuery {
        selector: Selector::parse("web")
            .unwrap()
            .with_metrics(&[Metric::BytesOut]),
        since: headroom_history::time::from_secs(T0),
        until: None,
        step: Duration::from_secs(10),
    };
    let t = history(&reader, &q).unwrap();
    assert_eq!((t.tier, t.step_secs), (Tier::Sec, 10));
    let by_node = |n: u32| t.series.iter().find(|s| s.key.node == n).unwrap();
    assert_eq!(by_node(1).rows.len(), 18);
    let peer_rows = &by_node(2).rows;
    assert_eq!(peer_rows.len(), 3, "{peer_rows:?}");
    assert!(peer_rows
        .iter()
        .all(|r| r.ts % 60 == 0 && (r.mean - 250_000.0).abs() < 1e-6));
}
