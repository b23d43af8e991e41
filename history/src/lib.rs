//! Headroom's monitoring history: every node records its own one-second samples and the
//! pool's per-node summaries in an embedded SQLite store, and answers history queries,
//! reports, what-if replays and policy suggestions from it.
//!
//! The pieces, from producer to operator:
//! * [`sample`]: what the control thread produces once a second ([`NodeSample`]) and what
//!   the pool delivers about other nodes ([`NodeSummary`]).
//! * [`recorder`]: sans-IO conversion of samples into points (exact counter deltas).
//! * [`store`]: the SQLite store with its tiers, rollups, retention and size bound.
//! * [`writer`]: the thread that owns the store, fed by a bounded channel that never blocks
//!   the producer, with fault handling and recovery ([`HistoryStatus`]).
//! * [`journal`]: the triggers' event journal, stored with the points.
//! * [`query`], [`report`], [`whatif`], [`suggest`]: library functions the CLI renders.
//! * [`synth`]: synthetic workloads of known shapes for tests, benchmarks and demos.
//!
//! Wiring it into the daemon (text, not a doc-test):
//!
//! ```text
//! // start: the writer thread owns the store
//! let (history, writer) = headroom_history::spawn(HistoryOptions::from_config(node_id, &cfg.history))?;
//! // control thread, once a second: cumulative counters + gauges, never blocks
//! history.record(NodeSample { at: WallTime::now(), run, run_started, node, jobs, pipes, vips });
//! // whenever the pool delivers member N's summary
//! history.record_summary(n, WallTime::now(), summary);
//! // status document / metrics
//! status.history = Some(history.status());
//! // control socket thread, per request (WAL readers never block the writer)
//! let r = Reader::open(&cfg.history.path)?;
//! let table = query::history(&r, &HistoryQuery { selector, since, until: None, step })?;
//! let ds = Dataset::load(&r, &Selector::default(), tier, from, to)?;
//! report::report(&ds); whatif::what_if(&ds, &WhatIfPolicy::from_config(&policy)?, &opts);
//! suggest::suggest(&ds, &capacities, &opts) -> render_toml / apply_to(policy_text)
//! // shutdown: writes what is left
//! writer.stop();
//! ```

pub mod chunk;
pub mod hist;
pub mod journal;
pub mod point;
pub mod query;
pub mod recorder;
pub mod report;
pub mod sample;
pub mod series;
pub mod store;
pub mod suggest;
pub mod synth;
pub mod time;
pub mod whatif;
pub mod writer;

pub use journal::EventRow;

/// Bytes SQLite holds in this process (every connection: the writer's
/// page cache, the readers', prepared statements).
pub fn sqlite_memory_bytes() -> u64 {
    // SAFETY: sqlite3_memory_used only reads SQLite's global memory
    // counter (thread-safe in the bundled, serialized build).
    let used = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    u64::try_from(used).unwrap_or(0)
}
pub use point::{Point, Tier};
pub use sample::{NodeSample, NodeSummary};
pub use series::{EntityKind, Metric, Selector, SeriesKey, Unit};
pub use store::{Fault, Reader, Store, StoreError, StoreOptions};
pub use time::WallTime;
pub use writer::{spawn, History, HistoryOptions, HistoryStatus, Writer};
