//! The store's memory is bounded: SQLite's page cache fills up to the
//! store's `cache_size` as the database grows, then stays there, so a
//! daemon's RSS grows for its first minutes of recording and then stops.
//! (One test in its own binary: SQLite's memory counter is per process.)

use headroom_history::recorder::Recorder;
use headroom_history::store::CACHE_KIB;
use headroom_history::synth::{Shape, Synth, SynthJob};
use headroom_history::{Store, StoreOptions};

const T0: i64 = 1_764_583_200;

fn sqlite_memory() -> i64 {
    // SAFETY: sqlite3_memory_used only reads SQLite's global memory
    // statistics; it has no preconditions and is thread-safe.
    unsafe { rusqlite::ffi::sqlite3_memory_used() }
}

#[test]
fn sqlite_memory_stops_growing_at_the_cache_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(StoreOptions::new(dir.path().join("h.db"))).unwrap();
    // Many series, so the file outgrows the cache within the simulated hours.
    let jobs = (0..40)
        .map(|i| {
            SynthJob::new(
                &format!("job{i}"),
                Shape::Steady(125_000.0 * (i + 1) as f64),
                "uplink",
            )
        })
        .collect();
    let mut synth = Synth::new(4.0, jobs, T0 - 1);
    let mut rec = Recorder::new(1);
    let start = sqlite_memory();
    let mut hourly = Vec::new();
    for t in T0..T0 + 2 * 3600 {
        let b = rec.handle_sample(&synth.sample(t));
        store.write(&[b], &rec).unwrap();
        if (t - T0 + 1) % 3600 == 0 {
            hourly.push(sqlite_memory() - start);
        }
    }
    let mib = |b: i64| b as f64 / 1048576.0;
    let file = std::fs::metadata(dir.path().join("h.db")).unwrap().len();
    eprintln!(
        "SQLite memory after each hour: {:?} MiB; file {:.1} MiB",
        hourly
            .iter()
            .map(|b| (mib(*b) * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        file as f64 / 1048576.0
    );
    assert!(
        file as i64 > 2 * CACHE_KIB * 1024,
        "the file ({file} bytes) must outgrow the cache for this test to mean anything"
    );
    let bound = (CACHE_KIB + 1024) * 1024;
    assert!(
        hourly.iter().all(|b| *b <= bound),
        "SQLite memory {hourly:?} above the cache ({CACHE_KIB} KiB) plus 1 MiB"
    );
    let last = hourly[hourly.len() - 1] - hourly[hourly.len() - 2];
    assert!(
        last < 256 * 1024,
        "SQLite memory still grew {last} bytes in the last hour: {hourly:?}"
    );
}
