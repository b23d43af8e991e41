//! History queries: which tier answers a time range and step, loading points into a
//! [`Dataset`] (what reports, what-if and suggestions work on), and `history(series, since,
//! step)` as a table the CLI prints as text, CSV or JSON.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::point::{Point, Tier};
use crate::recorder::unscale;
use crate::series::{MetricKind, Selector, SeriesKey, Unit};
use crate::store::{Reader, Store, StoreError};
use crate::time::WallTime;

/// Where points come from: a [`Reader`] (the CLI's queries) or the writer's [`Store`].
pub trait PointSource {
    /// All series: (database id, key).
    fn series(&self) -> Result<Vec<(i64, SeriesKey)>, StoreError>;
    /// Points of tier `t` in `[from, to)` per series id.
    fn points(
        &self,
        t: Tier,
        ids: &[i64],
        from: i64,
        to: i64,
    ) -> Result<HashMap<i64, Vec<(i64, Point)>>, StoreError>;
}

impl PointSource for Reader {
    fn series(&self) -> Result<Vec<(i64, SeriesKey)>, StoreError> {
        Reader::series(self)
    }
    fn points(
        &self,
        t: Tier,
        ids: &[i64],
        from: i64,
        to: i64,
    ) -> Result<HashMap<i64, Vec<(i64, Point)>>, StoreError> {
        Reader::points(self, t, ids, from, to)
    }
}

impl PointSource for Store {
    fn series(&self) -> Result<Vec<(i64, SeriesKey)>, StoreError> {
        Store::series(self)
    }
    fn points(
        &self,
        t: Tier,
        ids: &[i64],
        from: i64,
        to: i64,
    ) -> Result<HashMap<i64, Vec<(i64, Point)>>, StoreError> {
        Store::points(self, t, ids, from, to)
    }
}

/// The tier to read for `[from, to)` at `step` seconds: the coarsest tier no coarser than
/// the step (fewest points, and exact, since steps are whole multiples of it), unless it no
/// longer reaches back to `from`; then the finest tier that does. Returns the tier and the
/// effective step (at least the tier's resolution).
pub fn choose_tier(step: i64, from: i64, newest: i64, retention: &[Duration; 3]) -> (Tier, i64) {
    let covers = |t: Tier| {
        let keep = retention[t.index()].as_secs() as i64;
        keep == 0 || newest - keep <= from
    };
    let mut pick = Tier::ALL
        .into_iter()
        .rev()
        .find(|t| t.resolution() <= step.max(1))
        .unwrap_or(Tier::Sec);
    if !covers(pick) {
        if let Some(t) = Tier::ALL
            .into_iter()
            .filter(|t| t.resolution() > pick.resolution())
            .find(|t| covers(*t))
        {
            pick = t;
        } else {
            pick = Tier::Hour;
        }
    }
    let res = pick.resolution();
    (pick, (step.max(res) / res) * res)
}

/// One series' points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesData {
    /// The series.
    pub key: SeriesKey,
    /// Points sorted by time (scaled units).
    pub points: Vec<(i64, Point)>,
}

impl SeriesData {
    /// The mean at each point in the metric's unit: (ts, value, seconds observed).
    pub fn values(&self) -> impl Iterator<Item = (i64, f64, u32)> + '_ {
        let m = self.key.metric;
        self.points
            .iter()
            .map(move |(ts, p)| (*ts, unscale(m, p.mean()), p.count))
    }
}

/// Points of many series at one tier over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Tier of the points.
    pub tier: Tier,
    /// Window start, seconds (inclusive).
    pub from: i64,
    /// Window end, seconds (exclusive).
    pub to: i64,
    /// The series.
    pub series: Vec<SeriesData>,
}

impl Dataset {
    /// Loads the series `sel` selects, at tier `tier`, over `[from, to)`.
    pub fn load(
        src: &impl PointSource,
        sel: &Selector,
        tier: Tier,
        from: i64,
        to: i64,
    ) -> Result<Dataset, StoreError> {
        let keys: Vec<(i64, SeriesKey)> = src
            .series()?
            .into_iter()
            .filter(|(_, k)| sel.matches(k))
            .collect();
        let ids: Vec<i64> = keys.iter().map(|(i, _)| *i).collect();
        let mut pts = src.points(tier, &ids, from, to)?;
        let series = keys
            .into_iter()
            .map(|(id, key)| SeriesData {
                key,
                points: pts.remove(&id).unwrap_or_default(),
            })
            .collect();
        Ok(Dataset {
            tier,
            from,
            to,
            series,
        })
    }

    /// Series matching a predicate.
    pub fn filter<'a>(
        &'a self,
        f: impl Fn(&SeriesKey) -> bool + 'a,
    ) -> impl Iterator<Item = &'a SeriesData> + 'a {
        self.series.iter().filter(move |s| f(&s.key))
    }

    /// Nodes with points in the window.
    pub fn nodes(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .series
            .iter()
            .filter(|s| !s.points.is_empty())
            .map(|s| s.key.node)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// A `history` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// Which series.
    pub selector: Selector,
    /// Window start.
    pub since: WallTime,
    /// Window end (the newest data when None).
    pub until: Option<WallTime>,
    /// Step between rows.
    pub step: Duration,
}

/// One row of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Step start, seconds since the epoch.
    pub ts: i64,
    /// Step start, RFC 3339.
    pub time: String,
    /// Mean over the step: the rate of a counter, the average of a gauge.
    pub mean: f64,
    /// Smallest per-second value.
    pub min: f64,
    /// Largest per-second value.
    pub max: f64,
    /// For counters: the amount over the step (bytes, packets, connections).
    pub total: Option<f64>,
    /// Seconds observed in the step.
    pub seconds: u32,
}

/// One series of a [`HistoryTable`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesHistory {
    /// The series.
    pub key: SeriesKey,
    /// `node3:job/web:bytes_out`.
    pub label: String,
    /// Unit of `mean`, `min`, `max`.
    pub unit: Unit,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Rows, oldest first; steps without data are left out.
    pub rows: Vec<Row>,
}

/// The answer to a [`HistoryQuery`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryTable {
    /// Schema version of this document.
    pub version: u32,
    /// Tier the rows were computed from.
    pub tier: Tier,
    /// Effective step, seconds.
    pub step_secs: i64,
    /// Window start (inclusive), seconds.
    pub from: i64,
    /// Window end (exclusive), seconds.
    pub to: i64,
    /// One per selected series.
    pub series: Vec<SeriesHistory>,
}

/// Answers a history query from the store.
pub fn history(r: &Reader, q: &HistoryQuery) -> Result<HistoryTable, StoreError> {
    let newest = r.newest()?.unwrap_or(crate::time::secs(q.since));
    let to = q.until.map(crate::time::secs).unwrap_or(newest + 1);
    let from = crate::time::secs(q.since);
    let (tier, step) = choose_tier(q.step.as_secs() as i64, from, newest, &r.retention()?);
    let start = from.div_euclid(step) * step;
    let mut ds = Dataset::load(r, &q.selector, tier, start, to)?;
    // Peers' points are kept from the minute tier up (the 1 s tier holds this server's own),
    // so a series with nothing at a fine tier is read from the next coarser one: a short
    // window still shows every server, at the resolution the store has for it.
    if let Some(coarser) = tier.coarser() {
        if ds.series.iter().any(|s| s.points.is_empty()) {
            let res = coarser.resolution();
            let more = Dataset::load(r, &q.selector, coarser, from.div_euclid(res) * res, to)?;
            for s in more.series {
                if let Some(d) = ds
                    .series
                    .iter_mut()
                    .find(|d| d.key == s.key && d.points.is_empty())
                {
                    d.points = s.points;
                }
            }
        }
    }
    Ok(table(&ds, step))
}

/// Buckets a dataset's points into rows of `step` seconds.
pub fn table(ds: &Dataset, step: i64) -> HistoryTable {
    let step = step.max(ds.tier.resolution());
    let mut series: Vec<SeriesHistory> = ds
        .series
        .iter()
        .map(|s| {
            let m = s.key.metric;
            let mut rows: Vec<(i64, Point)> = Vec::new();
            for (ts, p) in &s.points {
                let b = ts.div_euclid(step) * step;
                match rows.last_mut() {
                    Some((lb, lp)) if *lb == b => lp.merge(p),
                    _ => rows.push((b, *p)),
                }
            }
            let counter = m.kind() == MetricKind::Counter;
            SeriesHistory {
                label: s.key.to_string(),
                key: s.key.clone(),
                unit: m.unit(),
                kind: m.kind(),
                rows: rows
                    .into_iter()
                    .map(|(ts, p)| Row {
                        ts,
                        time: crate::time::from_secs(ts).rfc3339(),
                        mean: unscale(m, p.mean()),
                        min: unscale(m, p.min as f64),
                        max: unscale(m, p.max as f64),
                        total: counter.then(|| unscale(m, p.sum as f64)),
                        seconds: p.count,
                    })
                    .collect(),
            }
        })
        .collect();
    series.sort_by(|a, b| a.key.cmp(&b.key));
    HistoryTable {
        version: 1,
        tier: ds.tier,
        step_secs: step,
        from: ds.from,
        to: ds.to,
        series,
    }
}

impl HistoryTable {
    /// CSV: `time,series,unit,mean,min,max,total,seconds`, one line per row (raw base units:
    /// bytes per second, cores, bytes).
    pub fn to_csv(&self) -> String {
        let mut out = String::from("time,series,unit,mean,min,max,total,seconds\n");
        for s in &self.series {
            for r in &s.rows {
                out.push_str(&format!(
                    "{},{},{},{},{},{},{},{}\n",
                    r.time,
                    s.label,
                    unit_name(s.unit),
                    r.mean,
                    r.min,
                    r.max,
                    r.total.map(|t| t.to_string()).unwrap_or_default(),
                    r.seconds
                ));
            }
        }
        out
    }

    /// JSON (the same fields as the struct, schema `version`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Text in human units, one block per series.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} to {}, step {} (from the {} tier)\n",
            crate::time::from_secs(self.from).rfc3339(),
            crate::time::from_secs(self.to).rfc3339(),
            crate::time::format_duration(Duration::from_secs(self.step_secs as u64)),
            self.tier.label()
        );
        for s in &self.series {
            out.push_str(&format!("\n{}\n", s.label));
            out.push_str(&format!(
                "  {:<22} {:>16} {:>16} {:>16}\n",
                "time", "mean", "min", "max"
            ));
            for r in &s.rows {
                out.push_str(&format!(
                    "  {:<22} {:>16} {:>16} {:>16}\n",
                    r.time,
                    s.unit.format(r.mean),
                    s.unit.format(r.min),
                    s.unit.format(r.max)
                ));
            }
        }
        out
    }
}

fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::BytesPerSec => "bytes/s",
        Unit::PacketsPerSec => "packets/s",
        Unit::PerSec => "1/s",
        Unit::Cores => "cores",
        Unit::Bytes => "bytes",
        Unit::Count => "count",
        Unit::Percent => "percent",
        Unit::BitsPerSec => "bits/s",
        Unit::Ratio => "ratio",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_choice() {
        let r = [
            Duration::from_secs(86400),
            Duration::from_secs(30 * 86400),
            Duration::from_secs(730 * 86400),
        ];
        let now = 100 * 86400;
        assert_eq!(choose_tier(1, now - 3600, now, &r), (Tier::Sec, 1));
        assert_eq!(choose_tier(10, now - 3600, now, &r), (Tier::Sec, 10));
        assert_eq!(choose_tier(60, now - 3600, now, &r), (Tier::Min, 60));
        assert_eq!(choose_tier(90, now - 3600, now, &r), (Tier::Min, 60));
        assert_eq!(choose_tier(7200, now - 3600, now, &r), (Tier::Hour, 7200));
        // One-second steps over a week: only the minute tier still has it.
        assert_eq!(choose_tier(1, now - 7 * 86400, now, &r), (Tier::Min, 60));
        assert_eq!(
            choose_tier(60, now - 90 * 86400, now, &r),
            (Tier::Hour, 3600)
        );
    }
}
