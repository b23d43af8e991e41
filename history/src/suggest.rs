//! Suggested policy: bookings and CPU shares from what jobs really used.
//!
//! For each job and pipe, the pool-wide demand (bytes offered, all nodes added up) at each
//! point goes into a decaying histogram (a point's weight halves every `half_life` of age, so
//! recent weeks count more than old ones); the booking is the target percentile plus a margin.
//! CPU likewise, as a percentage of the server for a job on one server, as pool cores for a
//! job on several. Each value carries its basis: the percentile, the samples behind it (and
//! the effective number after decay), a 95 % confidence interval of the percentile from the
//! binomial spread of its rank, and a confidence label. A backtest replays the window: how
//! often every job's use stayed within its suggestion.
//!
//! The output is TOML in the policy schema (`[[job]]` with `cpu` and `[[job.booking]]`), as
//! a fragment ([`render_toml`]) or merged into an existing policy or configuration file
//! ([`apply_to`]), which then passes the configuration parser.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::hist::{decay_weight, Histogram};
use crate::query::Dataset;
use crate::report::{pool_series, Combine};
use crate::series::{EntityKind, Metric, Unit};
use crate::time::{format_duration, WallTime};

/// Options of a suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestOptions {
    /// Target percentile, 0..100 (e.g. 95).
    pub percentile: f64,
    /// Margin added on top, as a fraction (0.05 = 5 %).
    pub margin: f64,
    /// Half-life of a point's weight (None: all points weigh the same).
    pub half_life: Option<Duration>,
}

impl Default for SuggestOptions {
    fn default() -> Self {
        SuggestOptions {
            percentile: 95.0,
            margin: 0.05,
            half_life: Some(Duration::from_secs(2 * 86_400)),
        }
    }
}

/// How much to trust a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// At least 1000 effective samples and a 95 % interval within 10 % of the value.
    High,
    /// At least 100 effective samples and an interval within 30 %.
    Medium,
    /// Anything less.
    Low,
}

/// What a suggested value is based on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Basis {
    /// The percentile.
    pub percentile: f64,
    /// Its value before the margin, in `unit`.
    pub observed: f64,
    /// Unit of `observed` and the interval.
    pub unit: Unit,
    /// Points behind it.
    pub samples: u64,
    /// Effective number of points after decay.
    pub effective_samples: f64,
    /// 95 % confidence interval of the percentile.
    pub interval: (f64, f64),
    /// Confidence label.
    pub confidence: Confidence,
    /// Share of the window's time the suggestion would have covered the use.
    pub met_fraction: f64,
}

/// A suggested booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingSuggestion {
    /// Pipe name.
    pub pipe: String,
    /// Rate, bit/s.
    pub rate_bps: u64,
    /// Basis (values in bit/s).
    pub basis: Basis,
}

/// A suggested CPU share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CpuSuggestion {
    /// Percent of its one server.
    ServerPercent {
        /// Percentage.
        percent: f64,
        /// Basis (values in percent of the server).
        basis: Basis,
    },
    /// Cores of the pool, for a job on several servers.
    PoolCores {
        /// Cores.
        cores: f64,
        /// Basis (values in cores).
        basis: Basis,
    },
}

/// One job's suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSuggestion {
    /// Job name.
    pub job: String,
    /// Bookings by pipe.
    pub bookings: Vec<BookingSuggestion>,
    /// CPU share, unless it uses (next to) none.
    pub cpu: Option<CpuSuggestion>,
}

/// The whole suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// Window start.
    pub from: WallTime,
    /// Window end.
    pub to: WallTime,
    /// The options used.
    pub options: SuggestOptions,
    /// Per job.
    pub jobs: Vec<JobSuggestion>,
    /// Share of the window's steps at which every job stayed within all its suggestions.
    pub backtest_met: f64,
    /// Steps in the backtest.
    pub backtest_steps: u64,
    /// Adjustments and warnings.
    pub notes: Vec<String>,
}

/// Below this a job gets no CPU suggestion (cores).
pub const MIN_CPU_CORES: f64 = 0.005;

/// Rounds `v` up to three significant digits.
fn round_up_3(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 0.0;
    }
    let e = 10f64.powi(v.log10().floor() as i32 - 2);
    (v / e - 1e-9).ceil() * e
}

/// A rate the configuration reads: `5.25Mbit`, `800kbit`, `1.2Gbit`.
pub fn format_rate(bps: u64) -> String {
    let b = bps as f64;
    let (v, unit) = if b >= 1e9 {
        (b / 1e9, "Gbit")
    } else if b >= 1e6 {
        (b / 1e6, "Mbit")
    } else if b >= 1e3 {
        (b / 1e3, "kbit")
    } else {
        (b, "bit")
    };
    let s = format!("{:.3}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{unit}")
}

struct Item {
    values: BTreeMap<i64, (f64, u32)>,
}

fn basis_of(it: &Item, unit: Unit, opts: &SuggestOptions, now: i64) -> Option<(Histogram, Basis)> {
    let half = opts.half_life.map(|h| h.as_secs_f64());
    let mut h = Histogram::new();
    for (ts, (v, secs)) in &it.values {
        h.add(*v, f64::from(*secs) * decay_weight((now - ts) as f64, half));
    }
    let p = (opts.percentile / 100.0).clamp(0.0, 1.0);
    let q = h.quantile(p)?;
    let n = h.effective_samples().max(1.0);
    let se = 1.96 * (p * (1.0 - p) / n).sqrt();
    let lo = h.quantile((p - se).max(0.0)).unwrap_or(q);
    let hi = h.quantile((p + se).min(1.0)).unwrap_or(q);
    let width = if q > 0.0 { (hi - lo) / q } else { 0.0 };
    let confidence = if n >= 1000.0 && width <= 0.10 {
        Confidence::High
    } else if n >= 100.0 && width <= 0.30 {
        Confidence::Medium
    } else {
        Confidence::Low
    };
    Some((
        h.clone(),
        Basis {
            percentile: opts.percentile,
            observed: q,
            unit,
            samples: it.values.len() as u64,
            effective_samples: n,
            interval: (lo, hi),
            confidence,
            met_fraction: 0.0,
        },
    ))
}

/// Fraction of the seconds with `value <= limit`, and the steps where it was exceeded.
fn backtest(it: &Item, limit: f64, missed: &mut BTreeSet<i64>) -> f64 {
    let (mut ok, mut all) = (0u64, 0u64);
    for (ts, (v, secs)) in &it.values {
        all += u64::from(*secs);
        if *v <= limit * (1.0 + 1e-9) {
            ok += u64::from(*secs);
        } else {
            missed.insert(*ts);
        }
    }
    if all == 0 {
        1.0
    } else {
        ok as f64 / all as f64
    }
}

/// Suggests bookings and CPU shares from the dataset. `capacities` are the pipes' capacities
/// in bit/s (from the current policy); pipes not listed use their recorded capacity.
pub fn suggest(ds: &Dataset, capacities: &[(String, u64)], opts: &SuggestOptions) -> Suggestion {
    let now = ds.to;
    let m = 1.0 + opts.margin.max(0.0);
    let mut notes = Vec::new();
    let mut missed: BTreeSet<i64> = BTreeSet::new();
    let mut steps: BTreeSet<i64> = BTreeSet::new();
    // The default job (traffic no rule matches) cannot be booked: a policy
    // naming it is refused.
    let jobs: BTreeSet<&str> = ds
        .filter(|k| k.kind == EntityKind::Job && k.name != headroom_config::DEFAULT_JOB)
        .map(|s| s.key.name.as_str())
        .collect();
    let mut out: Vec<JobSuggestion> = Vec::new();
    // Node cores at each point, for server percentages.
    let cores_of = |node: u32| -> BTreeMap<i64, f64> {
        ds.filter(|k| k.kind == EntityKind::Node && k.node == node && k.metric == Metric::Cores)
            .flat_map(|s| s.values().map(|(ts, v, _)| (ts, v)))
            .collect()
    };
    for job in jobs {
        let mut js = JobSuggestion {
            job: job.to_string(),
            bookings: Vec::new(),
            cpu: None,
        };
        let pipes: BTreeSet<&str> = ds
            .filter(|k| {
                k.kind == EntityKind::Job && k.name == job && k.metric == Metric::PipeDemandBytes
            })
            .filter(|s| !s.points.is_empty())
            .map(|s| s.key.sub.as_str())
            .collect();
        for pipe in pipes {
            let values: BTreeMap<i64, (f64, u32)> = pool_series(
                ds,
                EntityKind::Job,
                job,
                pipe,
                Metric::PipeDemandBytes,
                Combine::Sum,
            )
            .into_iter()
            .map(|(ts, (v, s))| (ts, (v * 8.0, s)))
            .collect();
            steps.extend(values.keys());
            let it = Item { values };
            let Some((_, mut basis)) = basis_of(&it, Unit::BitsPerSec, opts, now) else {
                continue;
            };
            let rate = round_up_3(basis.observed * m).max(8000.0);
            basis.met_fraction = backtest(&it, rate, &mut missed);
            js.bookings.push(BookingSuggestion {
                pipe: pipe.to_string(),
                rate_bps: rate as u64,
                basis,
            });
        }
        let nodes: Vec<u32> = {
            let mut v: Vec<u32> = ds
                .filter(|k| {
                    k.kind == EntityKind::Job && k.name == job && k.metric == Metric::CpuCores
                })
                .filter(|s| s.points.iter().any(|(_, p)| p.sum > 0))
                .map(|s| s.key.node)
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        if nodes.len() == 1 {
            let cores = cores_of(nodes[0]);
            let values: BTreeMap<i64, (f64, u32)> = ds
                .filter(|k| {
                    k.kind == EntityKind::Job
                        && k.name == job
                        && k.node == nodes[0]
                        && k.metric == Metric::CpuCores
                })
                .flat_map(|s| s.values())
                .filter_map(|(ts, v, secs)| {
                    cores
                        .get(&ts)
                        .filter(|c| **c > 0.0)
                        .map(|c| (ts, (v / c * 100.0, secs)))
                })
                .collect();
            if values.is_empty() {
                notes.push(format!(
                    "{job}: no core count recorded for node {}, no CPU suggestion",
                    nodes[0]
                ));
            } else {
                steps.extend(values.keys());
                let it = Item { values };
                if let Some((h, mut basis)) = basis_of(&it, Unit::Percent, opts, now) {
                    let pct = ((basis.observed * m * 10.0).ceil() / 10.0).clamp(0.1, 100.0);
                    basis.met_fraction = backtest(&it, pct, &mut missed);
                    if h.max() > 0.0 && basis.observed / 100.0 * cores_max(&cores) >= MIN_CPU_CORES
                    {
                        js.cpu = Some(CpuSuggestion::ServerPercent {
                            percent: pct,
                            basis,
                        });
                    }
                }
            }
        } else if nodes.len() > 1 {
            let values = pool_series(ds, EntityKind::Job, job, "", Metric::CpuCores, Combine::Sum);
            steps.extend(values.keys());
            let it = Item { values };
            if let Some((_, mut basis)) = basis_of(&it, Unit::Cores, opts, now) {
                let c = ((basis.observed * m * 100.0).ceil() / 100.0).max(0.01);
                basis.met_fraction = backtest(&it, c, &mut missed);
                if basis.observed >= MIN_CPU_CORES {
                    js.cpu = Some(CpuSuggestion::PoolCores { cores: c, basis });
                }
            }
        }
        if !js.bookings.is_empty() || js.cpu.is_some() {
            out.push(js);
        }
    }
    // Bookings of a pipe must fit its capacity.
    let pipes: BTreeSet<String> = out
        .iter()
        .flat_map(|j| j.bookings.iter().map(|b| b.pipe.clone()))
        .collect();
    for pipe in pipes {
        let cap = capacities
            .iter()
            .find(|(p, _)| *p == pipe)
            .map(|(_, c)| *c as f64)
            .or_else(|| {
                ds.filter(|k| {
                    k.kind == EntityKind::Pipe
                        && k.name == pipe
                        && k.metric == Metric::PipeCapacityBps
                })
                .filter_map(|s| s.values().last().map(|(_, v, _)| v))
                .reduce(f64::max)
            });
        let total: f64 = out
            .iter()
            .flat_map(|j| j.bookings.iter())
            .filter(|b| b.pipe == pipe)
            .map(|b| b.rate_bps as f64)
            .sum();
        if let Some(cap) = cap.filter(|c| total > *c) {
            let f = cap / total;
            for b in out
                .iter_mut()
                .flat_map(|j| j.bookings.iter_mut())
                .filter(|b| b.pipe == pipe)
            {
                b.rate_bps = ((b.rate_bps as f64 * f).floor() as u64).max(8000);
            }
            notes.push(format!(
                "bookings on pipe {pipe} add up to {}, more than its capacity {}: all scaled by {:.1}% to fit",
                Unit::BitsPerSec.format(total),
                Unit::BitsPerSec.format(cap),
                f * 100.0
            ));
        }
    }
    // The backtest judges the values that will be written (after any scaling).
    missed.clear();
    for j in &mut out {
        for b in &mut j.bookings {
            let values: BTreeMap<i64, (f64, u32)> = pool_series(
                ds,
                EntityKind::Job,
                &j.job,
                &b.pipe,
                Metric::PipeDemandBytes,
                Combine::Sum,
            )
            .into_iter()
            .map(|(ts, (v, s))| (ts, (v * 8.0, s)))
            .collect();
            b.basis.met_fraction = backtest(&Item { values }, b.rate_bps as f64, &mut missed);
        }
        match &mut j.cpu {
            Some(CpuSuggestion::PoolCores { cores, basis }) => {
                let values = pool_series(
                    ds,
                    EntityKind::Job,
                    &j.job,
                    "",
                    Metric::CpuCores,
                    Combine::Sum,
                );
                basis.met_fraction = backtest(&Item { values }, *cores, &mut missed);
            }
            Some(CpuSuggestion::ServerPercent { percent, basis }) => {
                let node = ds
                    .filter(|k| {
                        k.kind == EntityKind::Job && k.name == j.job && k.metric == Metric::CpuCores
                    })
                    .find(|s| s.points.iter().any(|(_, p)| p.sum > 0))
                    .map(|s| s.key.node);
                if let Some(node) = node {
                    let cores = cores_of(node);
                    let values: BTreeMap<i64, (f64, u32)> = ds
                        .filter(|k| {
                            k.kind == EntityKind::Job
                                && k.name == j.job
                                && k.node == node
                                && k.metric == Metric::CpuCores
                        })
                        .flat_map(|s| s.values())
                        .filter_map(|(ts, v, secs)| {
                            cores
                                .get(&ts)
                                .filter(|c| **c > 0.0)
                                .map(|c| (ts, (v / c * 100.0, secs)))
                        })
                        .collect();
                    basis.met_fraction = backtest(&Item { values }, *percent, &mut missed);
                }
            }
            None => {}
        }
    }
    let backtest_steps = steps.len() as u64;
    let backtest_met = if backtest_steps == 0 {
        1.0
    } else {
        1.0 - missed.len() as f64 / backtest_steps as f64
    };
    Suggestion {
        from: crate::time::from_secs(ds.from),
        to: crate::time::from_secs(ds.to),
        options: opts.clone(),
        jobs: out,
        backtest_met,
        backtest_steps,
        notes,
    }
}

fn cores_max(c: &BTreeMap<i64, f64>) -> f64 {
    c.values().copied().fold(0.0, f64::max)
}

fn basis_comment(b: &Basis) -> String {
    let f = |v: f64| b.unit.format(v);
    format!(
        "p{} {} over {} points ({:.0} effective), 95% interval {}..{}, confidence {}; met {:.1}% of the time",
        b.percentile,
        f(b.observed),
        b.samples,
        b.effective_samples,
        f(b.interval.0),
        f(b.interval.1),
        match b.confidence {
            Confidence::High => "high",
            Confidence::Medium => "medium",
            Confidence::Low => "low",
        },
        b.met_fraction * 100.0
    )
}

fn header(s: &Suggestion) -> String {
    let mut o = format!(
        "# Suggested policy from the history of {} to {}: p{} + {:.0}% margin, half-life {}.\n",
        s.from.rfc3339(),
        s.to.rfc3339(),
        s.options.percentile,
        s.options.margin * 100.0,
        s.options
            .half_life
            .map(format_duration)
            .unwrap_or_else(|| "none".into())
    );
    o.push_str(&format!(
        "# backtest: every job within its suggestion in {:.1}% of {} steps\n",
        s.backtest_met * 100.0,
        s.backtest_steps
    ));
    for n in &s.notes {
        o.push_str(&format!("# note: {n}\n"));
    }
    o
}

fn cpu_value(c: &CpuSuggestion) -> (String, &Basis) {
    match c {
        CpuSuggestion::ServerPercent { percent, basis } => {
            (format!("{{ server_percent = {percent} }}"), basis)
        }
        CpuSuggestion::PoolCores { cores, basis } => (format!("{{ pool_cores = {cores} }}"), basis),
    }
}

/// The suggestion as a TOML fragment of `[[job]]` tables.
pub fn render_toml(s: &Suggestion) -> String {
    let mut o = header(s);
    for j in &s.jobs {
        o.push_str(&format!("\n[[job]]\nname = {:?}\n", j.job));
        if let Some(c) = &j.cpu {
            let (v, b) = cpu_value(c);
            o.push_str(&format!("# cpu: {}\ncpu = {v}\n", basis_comment(b)));
        }
        for b in &j.bookings {
            o.push_str(&format!(
                "[[job.booking]]\npipe = {:?}\n# {}\nrate = {:?}\n",
                b.pipe,
                basis_comment(&b.basis),
                format_rate(b.rate_bps)
            ));
        }
    }
    o
}

/// Merges the suggestion into a policy or configuration document: each suggested job's `cpu`
/// and its bookings on the suggested pipes are set (a booking's cap is kept if it is still at
/// or above the new rate), jobs missing from the document are added; everything else is
/// left as written.
pub fn apply_to(src: &str, s: &Suggestion) -> Result<String, String> {
    use toml_edit::{value, ArrayOfTables, DocumentMut, Item as TItem, Table};
    let mut doc: DocumentMut = src.parse().map_err(|e| format!("not valid TOML: {e}"))?;
    let jobs = doc
        .entry("job")
        .or_insert(TItem::ArrayOfTables(ArrayOfTables::new()))
        .as_array_of_tables_mut()
        .ok_or("`job` is not an array of tables ([[job]])")?;
    for j in &s.jobs {
        let idx = jobs
            .iter()
            .position(|t| t.get("name").and_then(|n| n.as_str()) == Some(j.job.as_str()));
        let t = match idx {
            Some(i) => jobs.get_mut(i).expect("found"),
            None => {
                let mut t = Table::new();
                t.insert("name", value(j.job.clone()));
                jobs.push(t);
                jobs.get_mut(jobs.len() - 1).expect("pushed")
            }
        };
        if let Some(c) = &j.cpu {
            let (v, b) = cpu_value(c);
            let parsed: toml_edit::Value = v.parse().map_err(|e| format!("{e}"))?;
            t.insert("cpu", TItem::Value(parsed));
            if let Some(mut k) = t.key_mut("cpu") {
                k.leaf_decor_mut()
                    .set_prefix(format!("# suggested: {}\n", basis_comment(b)));
            }
        }
        if j.bookings.is_empty() {
            continue;
        }
        let bookings = t
            .entry("booking")
            .or_insert(TItem::ArrayOfTables(ArrayOfTables::new()))
            .as_array_of_tables_mut()
            .ok_or_else(|| format!("job {}: `booking` is not [[job.booking]]", j.job))?;
        for b in &j.bookings {
            let i = bookings
                .iter()
                .position(|t| t.get("pipe").and_then(|p| p.as_str()) == Some(b.pipe.as_str()));
            let bt = match i {
                Some(i) => bookings.get_mut(i).expect("found"),
                None => {
                    let mut t = Table::new();
                    t.insert("pipe", value(b.pipe.clone()));
                    bookings.push(t);
                    bookings.get_mut(bookings.len() - 1).expect("pushed")
                }
            };
            bt.insert("rate", value(format_rate(b.rate_bps)));
            if let Some(mut k) = bt.key_mut("rate") {
                k.leaf_decor_mut()
                    .set_prefix(format!("# suggested: {}\n", basis_comment(&b.basis)));
            }
            let cap_ok = bt
                .get("cap")
                .and_then(|c| c.as_str())
                .and_then(|c| c.parse::<headroom_config::Rate>().ok())
                .map(|c| matches!(c, headroom_config::Rate::Bps(x) if x >= b.rate_bps));
            if cap_ok == Some(false) {
                bt.remove("cap");
            }
        }
    }
    Ok(format!("{}{}", header(s), doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_and_rates() {
        assert_eq!(round_up_3(5_250_000.0), 5_250_000.0);
        assert_eq!(round_up_3(5_251_000.0), 5_260_000.0);
        assert_eq!(round_up_3(123.4), 124.0);
        assert_eq!(format_rate(5_250_000), "5.25Mbit");
        assert_eq!(format_rate(800_000), "800kbit");
        assert_eq!(format_rate(1_200_000_000), "1.2Gbit");
        assert_eq!(format_rate(500), "500bit");
        for r in [5_250_000u64, 800_000, 1_200_000_000, 8000] {
            let back: headroom_config::Rate = format_rate(r).parse().unwrap();
            assert_eq!(back, headroom_config::Rate::Bps(r));
        }
    }
}
