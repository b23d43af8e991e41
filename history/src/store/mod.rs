//! The embedded time-series store: one SQLite file (WAL) per node, written by the writer
//! thread only, read by any number of [`Reader`]s at the same time.
//!
//! Points of the current period of each tier are rows of `hot` (upserted: two samples in one
//! second merge). When a period closes — judged by the newest data's timestamp, never by a
//! clock — each series' points of that period are packed into one chunk row of the tier and
//! their sum becomes one point of the next tier: 60 one-second points make a one-minute point,
//! 60 of those an hour. Everything happens in the transaction of the write that closed the
//! period, so a crash never loses or doubles a rollup, and a restart continues where the file
//! left off. Retention is per tier; the size bound drops the oldest data of the largest tier
//! (the finest first: its data also lives in the coarser tiers), counted.

mod read;
pub mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, Transaction};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::chunk;
use crate::point::{Point, Tier};
use crate::recorder::{Batch, Recorder};
use crate::series::SeriesKey;
use schema::{chunk_table, closed_before, meta, set_meta};

pub use read::merge_sorted;

/// How long a statement waits for a lock held by another connection before it fails (the
/// writer then retries later; it never stalls the producer).
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// What went wrong with the store, as operators need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// No space left on the file system.
    DiskFull,
    /// The file or its directory cannot be written (read-only mount, permissions).
    ReadOnly,
    /// Another process holds a lock on the database.
    Locked,
    /// The file is not a valid database or fails its integrity check.
    Corrupt,
    /// The file was written by a newer version of Headroom.
    TooNew,
    /// Any other I/O or SQLite error.
    Io,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 6] = [
        Fault::DiskFull,
        Fault::ReadOnly,
        Fault::Locked,
        Fault::Corrupt,
        Fault::TooNew,
        Fault::Io,
    ];

    /// What the operator can do about it.
    pub fn hint(self) -> &'static str {
        match self {
            Fault::DiskFull => "free space on the file system or lower history.max_size",
            Fault::ReadOnly => "make history.path's directory writable (is it mounted read-only?)",
            Fault::Locked => "stop the other process that has the database open for writing",
            Fault::Corrupt => "the file was moved aside and a new one started",
            Fault::TooNew => "run the newer Headroom, or point history.path at another file",
            Fault::Io => "check the file system and the system log",
        }
    }

    /// Index into per-fault counters.
    pub fn index(self) -> usize {
        Fault::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// A store error: its class and a message naming the file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct StoreError {
    /// Class.
    pub fault: Fault,
    /// What happened.
    pub message: String,
}

impl StoreError {
    /// An error of class `fault`.
    pub fn new(fault: Fault, message: impl Into<String>) -> Self {
        StoreError {
            fault,
            message: message.into(),
        }
    }

    /// Classifies a SQLite error.
    pub fn sql(e: rusqlite::Error) -> Self {
        let fault = match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => Fault::DiskFull,
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
                Fault::ReadOnly
            }
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Fault::Locked,
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => Fault::Corrupt,
            _ => Fault::Io,
        };
        StoreError::new(fault, e.to_string())
    }

    fn io(what: &str, e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let fault = match e.kind() {
            K::ReadOnlyFilesystem | K::PermissionDenied => Fault::ReadOnly,
            K::StorageFull | K::QuotaExceeded => Fault::DiskFull,
            _ => Fault::Io,
        };
        StoreError::new(fault, format!("{what}: {e}"))
    }

    /// Classifies a file-system error.
    pub fn from_io(what: &str, e: std::io::Error) -> Self {
        Self::io(what, e)
    }

    fn at(mut self, path: &Path) -> Self {
        self.message = format!("{}: {}", path.display(), self.message);
        self
    }
}

/// Where and how much the store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The database file.
    pub path: PathBuf,
    /// Retention of each tier (finest first).
    pub retention: [Duration; 3],
    /// Size bound of the database's used pages.
    pub max_bytes: u64,
}

impl StoreOptions {
    /// The defaults of `[history]` for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::from_config(&headroom_config::history::HistoryConfig {
            path: path.into(),
            ..Default::default()
        })
    }

    /// From the node's `[history]` section.
    pub fn from_config(c: &headroom_config::history::HistoryConfig) -> Self {
        StoreOptions {
            path: c.path.clone(),
            retention: [c.retention_1s, c.retention_1m, c.retention_1h],
            max_bytes: c.max_size.0,
        }
    }
}

/// Points, chunks and bytes of one tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierStats {
    /// Chunk rows.
    pub chunks: u64,
    /// Points in chunks.
    pub points: u64,
    /// Bytes of packed chunk data (without SQLite's per-row and per-page overhead).
    pub bytes: u64,
}

/// Counters of the store since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Transactions committed.
    pub writes: u64,
    /// Points written (one-second points and pool summaries' one-minute points).
    pub points_written: u64,
    /// Points that arrived for a period already packed (merged into its chunk).
    pub late_points: u64,
    /// Chunks packed.
    pub chunks_packed: u64,
    /// Points removed because they were older than their tier's retention.
    pub points_expired: u64,
    /// Points removed to stay within the size bound.
    pub points_dropped_for_size: u64,
    /// Times the size bound could not be met by dropping data (the bound is too small).
    pub size_bound_unmet: u64,
    /// Journal entries stored.
    pub journal_written: u64,
    /// Journal entries removed because they were older than the one-hour tier's retention.
    pub journal_expired: u64,
    /// Pages in use times the page size, after the last write.
    pub bytes_used: u64,
    /// Per tier (finest first).
    pub tiers: [TierStats; 3],
}

#[derive(Debug, Clone, Copy)]
struct State {
    max_ts: i64,
    closed: [i64; 3],
    floor: [i64; 3],
    pruned_to: [i64; 3],
    tiers: [TierStats; 3],
}

/// The writer's handle on the database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    opts: StoreOptions,
    ids: HashMap<SeriesKey, i64>,
    /// Recorder id -> database id (0: not mapped yet).
    local: Vec<i64>,
    st: State,
    stats: StoreStats,
}

/// The writer's page cache, KiB. SQLite keeps every page it read or wrote
/// until the cache is full and never gives the memory back, so as the file
/// grows the cache fills: this bounds what the store adds to headroomd's RSS.
/// Appends touch only the right edge of each index, and retention deletes
/// the oldest chunks once a minute, so a few MiB keep the hot pages.
pub const CACHE_KIB: i64 = 4096;

fn configure(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(StoreError::sql)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(StoreError::sql)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::new(
            Fault::Io,
            format!("{}: cannot switch to WAL mode (got {mode})", path.display()),
        ));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL; PRAGMA journal_size_limit = 16777216;
         PRAGMA cache_size = -{CACHE_KIB};"
    ))
    .map_err(StoreError::sql)
}

/// Opens and checks an existing file's format; creates or migrates the schema.
fn prepare(conn: &mut Connection) -> Result<(), StoreError> {
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(StoreError::sql)?;
    if check != "ok" {
        return Err(StoreError::new(
            Fault::Corrupt,
            format!("integrity check failed: {check}"),
        ));
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(StoreError::sql)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(StoreError::sql)?;
    let tx = conn.transaction().map_err(StoreError::sql)?;
    match version {
        0 if tables == 0 => schema::create(&tx).map_err(StoreError::sql)?,
        0 => {
            return Err(StoreError::new(
                Fault::Corrupt,
                "holds tables but no Headroom history schema version",
            ))
        }
        1 => {
            tracing::info!(
                "migrating the history database from version 1 to {}",
                schema::VERSION
            );
            schema::migrate_v1(&tx).map_err(StoreError::sql)?;
            schema::migrate_v2(&tx).map_err(StoreError::sql)?
        }
        2 => schema::migrate_v2(&tx).map_err(StoreError::sql)?,
        schema::VERSION => {}
        v => {
            return Err(StoreError::new(
                Fault::TooNew,
                format!(
                    "schema version {v} is newer than this build's {}",
                    schema::VERSION
                ),
            ))
        }
    }
    tx.commit().map_err(StoreError::sql)
}

impl Store {
    /// Opens (creating or migrating) the database. A missing directory is created.
    pub fn open(opts: StoreOptions) -> Result<Store, StoreError> {
        let path = opts.path.clone();
        Self::open_inner(opts).map_err(|e| e.at(&path))
    }

    fn open_inner(opts: StoreOptions) -> Result<Store, StoreError> {
        if let Some(dir) = opts.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::io("creating the directory", e))?;
        }
        let mut conn = Connection::open_with_flags(
            &opts.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StoreError::sql)?;
        configure(&conn, &opts.path)?;
        prepare(&mut conn)?;
        let get = |k: &str| meta(&conn, k).map_err(StoreError::sql);
        let mut st = State {
            max_ts: get("max_ts")?.unwrap_or(i64::MIN),
            closed: [i64::MIN; 3],
            floor: [i64::MIN; 3],
            pruned_to: [i64::MIN; 3],
            tiers: [TierStats::default(); 3],
        };
        for t in Tier::ALL {
            let i = t.index();
            st.closed[i] = get(&format!("closed_{i}"))?.unwrap_or(i64::MIN);
            st.floor[i] = get(&format!("floor_{i}"))?.unwrap_or(i64::MIN);
            st.tiers[i] = conn
                .query_row(
                    "SELECT chunks, points, bytes FROM tier_stats WHERE tier = ?1",
                    [t.code()],
                    |r| {
                        Ok(TierStats {
                            chunks: r.get::<_, i64>(0)?.max(0) as u64,
                            points: r.get::<_, i64>(1)?.max(0) as u64,
                            bytes: r.get::<_, i64>(2)?.max(0) as u64,
                        })
                    },
                )
                .map_err(StoreError::sql)?;
        }
        // Readers choose tiers by retention: record it.
        for (i, r) in opts.retention.iter().enumerate() {
            set_meta(&conn, &format!("retention_{i}"), r.as_secs() as i64)
                .map_err(StoreError::sql)?;
        }
        let ids = read::series(&conn)?
            .into_iter()
            .map(|(id, k)| (k, id))
            .collect();
        let mut s = Store {
            conn,
            opts,
            ids,
            local: Vec::new(),
            st,
            stats: StoreStats::default(),
        };
        s.stats.tiers = s.st.tiers;
        s.stats.bytes_used = s.used_bytes().map_err(StoreError::sql)?;
        Ok(s)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.opts.path
    }

    /// Counters.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// Newest data timestamp, seconds (None: empty).
    pub fn newest(&self) -> Option<i64> {
        (self.st.max_ts != i64::MIN).then_some(self.st.max_ts)
    }

    /// The stored series: (database id, key).
    pub fn series(&self) -> Result<Vec<(i64, SeriesKey)>, StoreError> {
        read::series(&self.conn)
    }

    /// Points of tier `t` for the series `ids` in `[from, to)` (as [`Reader::points`]).
    pub fn points(
        &self,
        t: Tier,
        ids: &[i64],
        from: i64,
        to: i64,
    ) -> Result<HashMap<i64, Vec<(i64, Point)>>, StoreError> {
        read::points(&self.conn, t, ids, from, to)
    }

    fn used_bytes(&self) -> rusqlite::Result<u64> {
        let (pages, free, size): (i64, i64, i64) = self.conn.query_row(
            "SELECT page_count, freelist_count, page_size FROM pragma_page_count(),
             pragma_freelist_count(), pragma_page_size()",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(((pages - free).max(0) * size) as u64)
    }

    /// Writes `batches` in one transaction, then packs closed periods, expires old data and
    /// keeps the size bound. On error nothing of it is applied (the caller may retry the same
    /// batches later).
    pub fn write(&mut self, batches: &[Batch], keys: &Recorder) -> Result<(), StoreError> {
        let path = self.opts.path.clone();
        self.write_inner(batches, keys).map_err(|e| e.at(&path))
    }

    fn write_inner(&mut self, batches: &[Batch], keys: &Recorder) -> Result<(), StoreError> {
        let mut st = self.st;
        let mut stats = self.stats;
        let mut new_ids: Vec<(u32, i64, SeriesKey)> = Vec::new();
        let tx = self.conn.transaction().map_err(StoreError::sql)?;
        {
            let mut upsert = tx.prepare_cached(UPSERT_HOT).map_err(StoreError::sql)?;
            for b in batches {
                for o in &b.points {
                    let local = o.series as usize;
                    let mut db = self.local.get(local).copied().unwrap_or(0);
                    if db == 0 {
                        db = match new_ids.iter().find(|(l, _, _)| *l == o.series) {
                            Some((_, d, _)) => *d,
                            None => {
                                let Some(key) = keys.key(o.series) else {
                                    continue;
                                };
                                let d = match self.ids.get(key) {
                                    Some(&d) => d,
                                    None => insert_series(&tx, key).map_err(StoreError::sql)?,
                                };
                                new_ids.push((o.series, d, key.clone()));
                                d
                            }
                        };
                    }
                    let p = o.point;
                    upsert
                        .execute(params![
                            o.tier.code(),
                            o.ts,
                            db,
                            p.sum,
                            p.count,
                            p.min,
                            p.max
                        ])
                        .map_err(StoreError::sql)?;
                    stats.points_written += 1;
                    st.max_ts = st.max_ts.max(o.ts);
                    if o.ts < st.closed[o.tier.index()] {
                        stats.late_points += 1;
                    }
                }
            }
        }
        let packed = pack(&tx, &mut st, &mut stats).map_err(StoreError::sql)?;
        if packed {
            expire(&tx, &mut st, &mut stats, &self.opts).map_err(StoreError::sql)?;
            let keep_ms = i64::try_from(self.opts.retention[Tier::Hour.index()].as_millis())
                .unwrap_or(i64::MAX);
            stats.journal_expired +=
                crate::journal::expire(&tx, st.max_ts.saturating_mul(1000).saturating_sub(keep_ms))
                    .map_err(StoreError::sql)?;
            bound_size(&tx, &mut st, &mut stats, &self.opts).map_err(StoreError::sql)?;
            for t in Tier::ALL {
                let i = t.index();
                let ts = st.tiers[i];
                tx.execute(
                    "UPDATE tier_stats SET chunks = ?2, points = ?3, bytes = ?4 WHERE tier = ?1",
                    params![
                        t.code(),
                        ts.chunks as i64,
                        ts.points as i64,
                        ts.bytes as i64
                    ],
                )
                .map_err(StoreError::sql)?;
                set_meta(&tx, &format!("closed_{i}"), st.closed[i]).map_err(StoreError::sql)?;
                set_meta(&tx, &format!("floor_{i}"), st.floor[i]).map_err(StoreError::sql)?;
            }
        }
        set_meta(&tx, "max_ts", st.max_ts).map_err(StoreError::sql)?;
        tx.commit().map_err(StoreError::sql)?;
        // Applied only once committed.
        for (local, db, key) in new_ids {
            let l = local as usize;
            if self.local.len() <= l {
                self.local.resize(l + 1, 0);
            }
            self.local[l] = db;
            self.ids.insert(key, db);
        }
        stats.writes += 1;
        stats.tiers = st.tiers;
        if packed {
            stats.bytes_used = self.used_bytes().map_err(StoreError::sql)?;
        }
        self.st = st;
        self.stats = stats;
        Ok(())
    }

    /// Stores journal entries in one transaction (all or nothing).
    pub fn write_journal(&mut self, rows: &[crate::journal::EventRow]) -> Result<(), StoreError> {
        let path = self.opts.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| StoreError::sql(e).at(&path))?;
        crate::journal::insert(&tx, rows).map_err(|e| StoreError::sql(e).at(&path))?;
        tx.commit().map_err(|e| StoreError::sql(e).at(&path))?;
        self.stats.journal_written += rows.len() as u64;
        Ok(())
    }

    /// Journal entries at or after `since_ms` (as [`Reader::journal`]).
    pub fn journal(&self, since_ms: u64) -> Result<Vec<crate::journal::EventRow>, StoreError> {
        crate::journal::read(&self.conn, since_ms)
    }

    /// Forgets which recorder ids map to which rows (the recorder is new).
    pub fn reset_ids(&mut self) {
        self.local.clear();
    }
}

const UPSERT_HOT: &str = "INSERT INTO hot (tier, ts, series, sum, count, min, max)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
    ON CONFLICT (tier, ts, series) DO UPDATE SET sum = sum + excluded.sum,
        count = count + excluded.count, min = min(min, excluded.min), max = max(max, excluded.max)";

fn insert_series(tx: &Transaction, k: &SeriesKey) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO series (node, kind, name, sub, metric) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        k.node,
        k.kind.code(),
        k.name,
        k.sub,
        k.metric.code()
    ])?;
    tx.prepare_cached(
        "SELECT id FROM series WHERE node = ?1 AND kind = ?2 AND name = ?3 AND sub = ?4
         AND metric = ?5",
    )?
    .query_row(
        params![k.node, k.kind.code(), k.name, k.sub, k.metric.code()],
        |r| r.get(0),
    )
}

/// Packs every closed period of every tier (finest first, so a closing hour includes its
/// last minute). Returns whether any tier's boundary moved.
fn pack(tx: &Transaction, st: &mut State, stats: &mut StoreStats) -> rusqlite::Result<bool> {
    if st.max_ts == i64::MIN {
        return Ok(false);
    }
    let mut moved = false;
    for t in Tier::ALL {
        let i = t.index();
        let closed = closed_before(t, st.max_ts);
        if closed <= st.closed[i] {
            continue;
        }
        moved = true;
        let span = t.chunk_span();
        let res = t.resolution();
        let mut rows: Vec<(i64, i64, Point)> = Vec::new();
        {
            let mut q = tx.prepare_cached(
                "SELECT series, ts, sum, count, min, max FROM hot WHERE tier = ?1 AND ts < ?2",
            )?;
            let mut r = q.query((t.code(), closed))?;
            while let Some(r) = r.next()? {
                rows.push((
                    r.get(0)?,
                    r.get(1)?,
                    Point {
                        sum: r.get(2)?,
                        count: r.get::<_, i64>(3)?.clamp(1, u32::MAX as i64) as u32,
                        min: r.get(4)?,
                        max: r.get(5)?,
                    },
                ));
            }
        }
        rows.sort_unstable_by_key(|(s, ts, _)| (*s, *ts));
        let table = chunk_table(t);
        let mut existing_q = tx.prepare_cached(&format!(
            "SELECT data FROM {table} WHERE series = ?1 AND start = ?2"
        ))?;
        let mut put = tx.prepare_cached(&format!(
            "INSERT OR REPLACE INTO {table} (series, start, n, data) VALUES (?1, ?2, ?3, ?4)"
        ))?;
        let mut up = tx.prepare_cached(UPSERT_HOT)?;
        let mut pts: Vec<(u32, Point)> = Vec::with_capacity(64);
        let mut old: Vec<(u32, Point)> = Vec::new();
        let mut k = 0;
        while k < rows.len() {
            let (series, ts, _) = rows[k];
            let start = ts.div_euclid(span) * span;
            pts.clear();
            let mut total: Option<Point> = None;
            while k < rows.len() && rows[k].0 == series && rows[k].1 < start + span {
                let (_, ts, p) = rows[k];
                pts.push((((ts - start) / res) as u32, p));
                match &mut total {
                    Some(a) => a.merge(&p),
                    None => total = Some(p),
                }
                k += 1;
            }
            // A late point for a period packed before: merge with the chunk.
            let (mut old_n, mut old_len) = (0u64, 0u64);
            if start < st.closed[i] {
                let data: Option<Vec<u8>> = {
                    use rusqlite::OptionalExtension;
                    existing_q
                        .query_row((series, start), |r| r.get(0))
                        .optional()?
                };
                if let Some(data) = data {
                    old.clear();
                    // An unreadable old chunk is replaced by the new points (counted as late).
                    if chunk::decode(&data, (span / res) as u32, &mut old).is_ok() {
                        old_n = old.len() as u64;
                        old_len = data.len() as u64;
                        pts.extend_from_slice(&old);
                        pts.sort_by_key(|(s, _)| *s);
                        let mut merged: Vec<(u32, Point)> = Vec::with_capacity(pts.len());
                        for (s, p) in pts.drain(..) {
                            match merged.last_mut() {
                                Some((ls, lp)) if *ls == s => lp.merge(&p),
                                _ => merged.push((s, p)),
                            }
                        }
                        pts = merged;
                    }
                }
            }
            let data = chunk::encode(&pts);
            put.execute(params![series, start, pts.len() as i64, data])?;
            let ts = &mut st.tiers[i];
            if old_len == 0 {
                ts.chunks += 1;
            }
            ts.points = (ts.points + pts.len() as u64).saturating_sub(old_n);
            ts.bytes = (ts.bytes + data.len() as u64).saturating_sub(old_len);
            stats.chunks_packed += 1;
            if let (Some(c), Some(total)) = (t.coarser(), total) {
                up.execute(params![
                    c.code(),
                    start,
                    series,
                    total.sum,
                    total.count,
                    total.min,
                    total.max
                ])?;
            }
        }
        tx.prepare_cached("DELETE FROM hot WHERE tier = ?1 AND ts < ?2")?
            .execute((t.code(), closed))?;
        st.closed[i] = closed;
    }
    Ok(moved)
}

fn series_ids(tx: &Transaction) -> rusqlite::Result<Vec<i64>> {
    let mut q = tx.prepare_cached("SELECT id FROM series")?;
    let ids = q.query_map([], |r| r.get(0))?;
    ids.collect()
}

/// Deletes the chunks of tier `t` starting before `before`; returns (points, bytes, chunks).
fn delete_before(tx: &Transaction, t: Tier, before: i64) -> rusqlite::Result<(u64, u64, u64)> {
    let mut del = tx.prepare_cached(&format!(
        "DELETE FROM {} WHERE series = ?1 AND start < ?2 RETURNING n, length(data)",
        chunk_table(t)
    ))?;
    let (mut n, mut bytes, mut chunks) = (0u64, 0u64, 0u64);
    for id in series_ids(tx)? {
        let mut rows = del.query((id, before))?;
        while let Some(r) = rows.next()? {
            n += r.get::<_, i64>(0)?.max(0) as u64;
            bytes += r.get::<_, i64>(1)?.max(0) as u64;
            chunks += 1;
        }
    }
    Ok((n, bytes, chunks))
}

fn forget(ts: &mut TierStats, (n, bytes, chunks): (u64, u64, u64)) {
    ts.points = ts.points.saturating_sub(n);
    ts.bytes = ts.bytes.saturating_sub(bytes);
    ts.chunks = ts.chunks.saturating_sub(chunks);
}

/// Drops chunks wholly older than their tier's retention (at most once per chunk period).
fn expire(
    tx: &Transaction,
    st: &mut State,
    stats: &mut StoreStats,
    opts: &StoreOptions,
) -> rusqlite::Result<()> {
    for t in Tier::ALL {
        let i = t.index();
        let keep = i64::try_from(opts.retention[i].as_secs()).unwrap_or(i64::MAX);
        // A chunk [start, start + span) is dropped once all of it is older than `keep`.
        let before = st
            .max_ts
            .saturating_sub(keep)
            .saturating_sub(t.chunk_span())
            .saturating_add(1);
        if before < st.pruned_to[i].saturating_add(t.chunk_span()) {
            continue;
        }
        let gone = delete_before(tx, t, before)?;
        stats.points_expired += gone.0;
        forget(&mut st.tiers[i], gone);
        st.pruned_to[i] = before;
    }
    Ok(())
}

/// Keeps the used pages within `max_bytes`: drops the oldest data of the tier with the most
/// bytes, a step (1/48 of its retention) at a time, down to 90 % of the bound.
fn bound_size(
    tx: &Transaction,
    st: &mut State,
    stats: &mut StoreStats,
    opts: &StoreOptions,
) -> rusqlite::Result<()> {
    let used = |tx: &Transaction| -> rusqlite::Result<u64> {
        let (pages, free, size): (i64, i64, i64) = tx.query_row(
            "SELECT page_count, freelist_count, page_size FROM pragma_page_count(),
             pragma_freelist_count(), pragma_page_size()",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(((pages - free).max(0) * size) as u64)
    };
    if used(tx)? <= opts.max_bytes {
        return Ok(());
    }
    let target = opts.max_bytes / 10 * 9;
    for _ in 0..500 {
        if used(tx)? <= target {
            return Ok(());
        }
        let Some(t) = Tier::ALL
            .into_iter()
            .filter(|t| st.tiers[t.index()].chunks > 0)
            .max_by_key(|t| st.tiers[t.index()].bytes)
        else {
            break;
        };
        let i = t.index();
        // The oldest chunk: one index seek per series (a plain min() would scan the table).
        let oldest: Option<i64> = {
            let mut q = tx.prepare_cached(&format!(
                "SELECT min(start) FROM {} WHERE series = ?1",
                chunk_table(t)
            ))?;
            let mut m: Option<i64> = None;
            for id in series_ids(tx)? {
                let v: Option<i64> = q.query_row([id], |r| r.get(0))?;
                m = match (m, v) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            m
        };
        let Some(oldest) = oldest else {
            st.tiers[i] = TierStats::default();
            continue;
        };
        let step = (opts.retention[i].as_secs() as i64 / 48).max(t.chunk_span());
        let before = oldest.max(st.floor[i]) + step;
        let gone = delete_before(tx, t, before)?;
        stats.points_dropped_for_size += gone.0;
        forget(&mut st.tiers[i], gone);
        st.floor[i] = before;
        tracing::warn!(
            tier = t.label(),
            points = gone.0,
            "history over its size bound: dropped the oldest data of the {} tier",
            t.label()
        );
    }
    stats.size_bound_unmet += 1;
    Ok(())
}

/// A read-only handle for queries, usable from any thread beside the writer (WAL readers do
/// not block the writer, nor it them).
#[derive(Debug)]
pub struct Reader {
    conn: Connection,
    path: PathBuf,
}

impl Reader {
    /// Opens the database read-only.
    pub fn open(path: impl AsRef<Path>) -> Result<Reader, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::sql(e).at(&path))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| StoreError::sql(e).at(&path))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| StoreError::sql(e).at(&path))?;
        if version != schema::VERSION {
            return Err(StoreError::new(
                if version > schema::VERSION { Fault::TooNew } else { Fault::Io },
                format!(
                    "{}: schema version {version}, this build reads {} (the daemon migrates it on start)",
                    path.display(),
                    schema::VERSION
                ),
            ));
        }
        Ok(Reader { conn, path })
    }

    /// The stored series: (database id, key).
    pub fn series(&self) -> Result<Vec<(i64, SeriesKey)>, StoreError> {
        read::series(&self.conn).map_err(|e| e.at(&self.path))
    }

    /// Points of tier `t` for the series `ids` with `from <= ts < to`, sorted, including the
    /// open points of finer tiers rolled up to `t`'s resolution.
    pub fn points(
        &self,
        t: Tier,
        ids: &[i64],
        from: i64,
        to: i64,
    ) -> Result<HashMap<i64, Vec<(i64, Point)>>, StoreError> {
        read::points(&self.conn, t, ids, from, to).map_err(|e| e.at(&self.path))
    }

    /// Retention of each tier as the writer last recorded it.
    pub fn retention(&self) -> Result<[Duration; 3], StoreError> {
        let mut out = [Duration::ZERO; 3];
        for (i, o) in out.iter_mut().enumerate() {
            let v = meta(&self.conn, &format!("retention_{i}"))
                .map_err(|e| StoreError::sql(e).at(&self.path))?
                .unwrap_or(0);
            *o = Duration::from_secs(v.max(0) as u64);
        }
        Ok(out)
    }

    /// Journal entries at or after `since_ms` (ms since the epoch), oldest first, at most
    /// [`crate::journal::READ_MAX`] (the newest).
    pub fn journal(&self, since_ms: u64) -> Result<Vec<crate::journal::EventRow>, StoreError> {
        crate::journal::read(&self.conn, since_ms).map_err(|e| e.at(&self.path))
    }

    /// Newest data timestamp in seconds (None: empty).
    pub fn newest(&self) -> Result<Option<i64>, StoreError> {
        meta(&self.conn, "max_ts").map_err(|e| StoreError::sql(e).at(&self.path))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
