//! Reading points back: the packed chunks of a tier, its open points, and the open points of
//! the finer tiers not rolled up yet (so the newest minute is visible at every resolution).

use std::collections::HashMap;

use rusqlite::Connection;

use super::schema::chunk_table;
use super::{Fault, StoreError};
use crate::chunk;
use crate::point::{Point, Tier};
use crate::series::{EntityKind, Metric, SeriesKey};

/// All stored series: (database id, key). Rows with unknown codes (a newer build's metrics)
/// are skipped.
pub fn series(conn: &Connection) -> Result<Vec<(i64, SeriesKey)>, StoreError> {
    let mut q = conn
        .prepare_cached("SELECT id, node, kind, name, sub, metric FROM series ORDER BY id")
        .map_err(StoreError::sql)?;
    let rows = q
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(StoreError::sql)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, node, kind, name, sub, metric) = row.map_err(StoreError::sql)?;
        let (Some(kind), Some(metric), Ok(node)) = (
            EntityKind::from_code(kind),
            Metric::from_code(metric),
            u32::try_from(node),
        ) else {
            continue;
        };
        out.push((
            id,
            SeriesKey {
                node,
                kind,
                name,
                sub,
                metric,
            },
        ));
    }
    Ok(out)
}

/// Points of tier `t` of the series `ids` with `from <= ts < to`, sorted by time, merged where
/// two sources hold the same interval.
pub fn points(
    conn: &Connection,
    t: Tier,
    ids: &[i64],
    from: i64,
    to: i64,
) -> Result<HashMap<i64, Vec<(i64, Point)>>, StoreError> {
    let span_pts = ((to - from).max(0) / t.resolution()).clamp(0, 1 << 20) as usize;
    let mut out: HashMap<i64, Vec<(i64, Point)>> = ids
        .iter()
        .map(|&i| (i, Vec::with_capacity(span_pts + 64)))
        .collect();
    if from >= to || ids.is_empty() {
        return Ok(out);
    }
    // One read transaction: every statement sees the same snapshot, so a period packed by
    // the writer meanwhile is neither missed nor counted twice (and locks are taken once).
    let tx = conn.unchecked_transaction().map_err(StoreError::sql)?;
    let conn: &Connection = &tx;
    let span = t.chunk_span();
    let res = t.resolution();
    let first_chunk = from.div_euclid(span) * span;
    let mut q = conn
        .prepare_cached(&format!(
            "SELECT start, data FROM {} WHERE series = ?1 AND start >= ?2 AND start < ?3",
            chunk_table(t)
        ))
        .map_err(StoreError::sql)?;
    let mut buf = Vec::new();
    for &id in ids {
        let v = out.get_mut(&id).expect("listed");
        let mut rows = q.query((id, first_chunk, to)).map_err(StoreError::sql)?;
        while let Some(r) = rows.next().map_err(StoreError::sql)? {
            let start: i64 = r.get(0).map_err(StoreError::sql)?;
            let data = r
                .get_ref(1)
                .map_err(StoreError::sql)?
                .as_blob()
                .map_err(|e| {
                    StoreError::new(Fault::Corrupt, format!("chunk of series {id}: {e}"))
                })?;
            buf.clear();
            chunk::decode(data, (span / res) as u32, &mut buf).map_err(|e| {
                StoreError::new(
                    Fault::Corrupt,
                    format!("chunk of series {id} at {start}: {e}"),
                )
            })?;
            v.extend(
                buf.iter()
                    .map(|(slot, p)| (start + i64::from(*slot) * res, *p))
                    .filter(|(ts, _)| (from..to).contains(ts)),
            );
        }
    }
    // Open points of this tier and of every finer one, rolled up to this resolution.
    let total_series: i64 = conn
        .prepare_cached("SELECT count(*) FROM series")
        .and_then(|mut q| q.query_row([], |r| r.get(0)))
        .map_err(StoreError::sql)?;
    let newest = super::schema::meta(conn, "max_ts")
        .map_err(StoreError::sql)?
        .unwrap_or(0);
    for fine in Tier::ALL.into_iter().filter(|f| f.resolution() <= res) {
        let lo = from.div_euclid(res) * res;
        let closed = super::schema::meta(conn, &format!("closed_{}", fine.index()))
            .map_err(StoreError::sql)?
            .unwrap_or(i64::MIN)
            .clamp(lo, to);
        // Before the packed boundary only late points wait in `hot`: a short range scan.
        hot_scan(conn, fine, lo, closed, res, from, &mut out)?;
        // After it, the open periods: one lookup per series and interval when few series
        // are wanted, else one scan.
        let last = to.min(newest.saturating_add(1));
        let intervals = (last - closed).max(0) / fine.resolution() + 1;
        if (ids.len() as i64) * 4 < total_series && intervals <= 4096 {
            let mut q = conn
                .prepare_cached(
                    "SELECT sum, count, min, max FROM hot WHERE tier = ?1 AND ts = ?2 AND series = ?3",
                )
                .map_err(StoreError::sql)?;
            let first = closed.div_euclid(fine.resolution()) * fine.resolution();
            for &id in ids {
                let v = out.get_mut(&id).expect("listed");
                let mut ts = first.max(closed);
                while ts < last {
                    let mut rows = q.query((fine.code(), ts, id)).map_err(StoreError::sql)?;
                    if let Some(r) = rows.next().map_err(StoreError::sql)? {
                        let bucket = ts.div_euclid(res) * res;
                        if bucket >= from {
                            v.push((bucket, hot_point(r, 0)?));
                        }
                    }
                    ts += fine.resolution();
                }
            }
        } else {
            hot_scan(conn, fine, closed, to, res, from, &mut out)?;
        }
    }
    for v in out.values_mut() {
        merge_sorted(v);
    }
    Ok(out)
}

fn hot_point(r: &rusqlite::Row, at: usize) -> Result<Point, StoreError> {
    Ok(Point {
        sum: r.get(at).map_err(StoreError::sql)?,
        count: r
            .get::<_, i64>(at + 1)
            .map_err(StoreError::sql)?
            .clamp(1, u32::MAX as i64) as u32,
        min: r.get(at + 2).map_err(StoreError::sql)?,
        max: r.get(at + 3).map_err(StoreError::sql)?,
    })
}

/// Open points of tier `fine` with `lo <= ts < hi` for the series in `out`, bucketed to `res`.
fn hot_scan(
    conn: &Connection,
    fine: Tier,
    lo: i64,
    hi: i64,
    res: i64,
    from: i64,
    out: &mut HashMap<i64, Vec<(i64, Point)>>,
) -> Result<(), StoreError> {
    if lo >= hi {
        return Ok(());
    }
    let mut hot = conn
        .prepare_cached(
            "SELECT ts, series, sum, count, min, max FROM hot
             WHERE tier = ?1 AND ts >= ?2 AND ts < ?3",
        )
        .map_err(StoreError::sql)?;
    let mut rows = hot.query((fine.code(), lo, hi)).map_err(StoreError::sql)?;
    while let Some(r) = rows.next().map_err(StoreError::sql)? {
        let series: i64 = r.get(1).map_err(StoreError::sql)?;
        let Some(v) = out.get_mut(&series) else {
            continue;
        };
        let ts: i64 = r.get(0).map_err(StoreError::sql)?;
        let bucket = ts.div_euclid(res) * res;
        if bucket >= from {
            v.push((bucket, hot_point(r, 2)?));
        }
    }
    Ok(())
}

/// Sorts by time and merges points of the same interval.
pub fn merge_sorted(v: &mut Vec<(i64, Point)>) {
    if v.windows(2).any(|w| w[0].0 >= w[1].0) {
        v.sort_by_key(|(ts, _)| *ts);
        let mut w = 0;
        for r in 1..v.len() {
            if v[r].0 == v[w].0 {
                let p = v[r].1;
                v[w].1.merge(&p);
            } else {
                w += 1;
                v[w] = v[r];
            }
        }
        v.truncate(w + 1);
    }
}
