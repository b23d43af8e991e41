//! The database layout, its versions and the migrations between them (`PRAGMA user_version`).
//!
//! * Version 1 stored one row per point in `point (tier, series, ts, ...)`; a point of the next
//!   tier was written when its period closed.
//! * Version 2 keeps the points of still-open periods as rows in `hot` and packs every
//!   closed period of a series into one row of `chunk_1s`/`chunk_1m`/`chunk_1h` (see
//!   [`crate::chunk`]): about 8x smaller on disk and one B-tree insert per series and minute
//!   instead of per point.
//! * Version 3 (current) adds the event journal (`journal`, see [`crate::journal`]).

use rusqlite::{params, Connection, Transaction};

use crate::chunk;
use crate::point::{Point, Tier};

/// The version this build writes.
pub const VERSION: i64 = 3;

/// Keeps a point's period open this many seconds after its end, for samples that arrive a
/// little late.
pub const GRACE_SECS: i64 = 5;

/// The chunk table of a tier.
pub fn chunk_table(t: Tier) -> &'static str {
    match t {
        Tier::Sec => "chunk_1s",
        Tier::Min => "chunk_1m",
        Tier::Hour => "chunk_1h",
    }
}

/// Version 1, as it was (kept to test and run the migration).
pub const V1: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE series (
    id INTEGER PRIMARY KEY, node INTEGER NOT NULL, kind INTEGER NOT NULL,
    name TEXT NOT NULL, sub TEXT NOT NULL, metric INTEGER NOT NULL,
    UNIQUE (node, kind, name, sub, metric));
CREATE TABLE point (
    tier INTEGER NOT NULL, series INTEGER NOT NULL, ts INTEGER NOT NULL,
    sum INTEGER NOT NULL, count INTEGER NOT NULL, min INTEGER NOT NULL, max INTEGER NOT NULL,
    PRIMARY KEY (tier, series, ts)) WITHOUT ROWID;
PRAGMA user_version = 1;
";

const V2_TABLES: &str = "
CREATE TABLE hot (
    tier INTEGER NOT NULL, ts INTEGER NOT NULL, series INTEGER NOT NULL,
    sum INTEGER NOT NULL, count INTEGER NOT NULL, min INTEGER NOT NULL, max INTEGER NOT NULL,
    PRIMARY KEY (tier, ts, series)) WITHOUT ROWID;
CREATE TABLE chunk_1s (series INTEGER NOT NULL, start INTEGER NOT NULL, n INTEGER NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY (series, start)) WITHOUT ROWID;
CREATE TABLE chunk_1m (series INTEGER NOT NULL, start INTEGER NOT NULL, n INTEGER NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY (series, start)) WITHOUT ROWID;
CREATE TABLE chunk_1h (series INTEGER NOT NULL, start INTEGER NOT NULL, n INTEGER NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY (series, start)) WITHOUT ROWID;
CREATE TABLE tier_stats (tier INTEGER PRIMARY KEY, chunks INTEGER NOT NULL,
    points INTEGER NOT NULL, bytes INTEGER NOT NULL);
INSERT INTO tier_stats VALUES (0, 0, 0, 0), (1, 0, 0, 0), (2, 0, 0, 0);
";

/// Creates the current layout in an empty database.
pub fn create(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE series (
            id INTEGER PRIMARY KEY, node INTEGER NOT NULL, kind INTEGER NOT NULL,
            name TEXT NOT NULL, sub TEXT NOT NULL, metric INTEGER NOT NULL,
            UNIQUE (node, kind, name, sub, metric));",
    )?;
    tx.execute_batch(V2_TABLES)?;
    tx.execute_batch(crate::journal::TABLE)?;
    tx.pragma_update(None, "user_version", VERSION)
}

/// Version 2 to 3: the journal table.
pub fn migrate_v2(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(crate::journal::TABLE)?;
    tx.pragma_update(None, "user_version", 3)
}

/// A meta value.
pub fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    use rusqlite::OptionalExtension;
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

/// Sets a meta value.
pub fn set_meta(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// The first period of `t` still open when the newest data is at `max_ts`.
pub fn closed_before(t: Tier, max_ts: i64) -> i64 {
    let span = t.chunk_span();
    (max_ts - GRACE_SECS).div_euclid(span) * span
}

/// Version 1 to 2: closed periods into chunks, open ones into `hot` (then [`migrate_v2`]).
pub fn migrate_v1(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(V2_TABLES)?;
    let max_ts: i64 = tx.query_row("SELECT coalesce(max(ts), 0) FROM point", [], |r| r.get(0))?;
    for t in Tier::ALL {
        let closed = closed_before(t, max_ts);
        let span = t.chunk_span();
        let res = t.resolution();
        let mut rows: Vec<(i64, i64, Point)> = Vec::new();
        {
            let mut q = tx.prepare(
                "SELECT series, ts, sum, count, min, max FROM point WHERE tier = ?1
                 ORDER BY series, ts",
            )?;
            let it = q.query_map([t.code()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    Point {
                        sum: r.get(2)?,
                        count: r.get::<_, i64>(3)?.clamp(1, u32::MAX as i64) as u32,
                        min: r.get(4)?,
                        max: r.get(5)?,
                    },
                ))
            })?;
            for row in it {
                rows.push(row?);
            }
        }
        let (mut chunks, mut points, mut bytes) = (0i64, 0i64, 0i64);
        let mut i = 0;
        while i < rows.len() {
            let (series, ts, _) = rows[i];
            let start = ts.div_euclid(span) * span;
            let mut j = i;
            while j < rows.len() && rows[j].0 == series && rows[j].1 < start + span {
                j += 1;
            }
            if start + span <= closed {
                let pts: Vec<(u32, Point)> = rows[i..j]
                    .iter()
                    .map(|(_, ts, p)| (((ts - start) / res) as u32, *p))
                    .collect();
                let data = chunk::encode(&pts);
                tx.execute(
                    &format!(
                        "INSERT INTO {} (series, start, n, data) VALUES (?1, ?2, ?3, ?4)",
                        chunk_table(t)
                    ),
                    params![series, start, pts.len() as i64, data],
                )?;
                chunks += 1;
                points += pts.len() as i64;
                bytes += data.len() as i64;
            } else {
                for (s, ts, p) in &rows[i..j] {
                    tx.execute(
                        "INSERT INTO hot (tier, ts, series, sum, count, min, max)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![t.code(), ts, s, p.sum, p.count, p.min, p.max],
                    )?;
                }
            }
            i = j;
        }
        tx.execute(
            "UPDATE tier_stats SET chunks = ?2, points = ?3, bytes = ?4 WHERE tier = ?1",
            params![t.code(), chunks, points, bytes],
        )?;
        set_meta(tx, &format!("closed_{}", t.code()), closed)?;
    }
    set_meta(tx, "max_ts", max_ts)?;
    tx.execute_batch("DROP TABLE point;")?;
    tx.pragma_update(None, "user_version", 2)
}
