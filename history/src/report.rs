//! `report(since)`: per job the distribution of each resource (p50/p95/p99/max, a text
//! histogram of utilisation), time above and below its policy, *squeezed* periods (demand
//! above grant) and policy breaches (the guarantee not delivered), and the top consumers of
//! each pipe. Pure: works on a [`Dataset`] loaded by the caller.
//!
//! A job's values are pool-wide: at each point in time the job's nodes are added up (its
//! booking, which holds pool-wide, is taken once). Percentiles are over the points of the
//! dataset's tier, weighted by seconds observed, with the relative accuracy of
//! [`crate::hist::ACCURACY`]; over the one-minute tier they are percentiles of minute averages
//! (the report says which).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::hist::{Histogram, ACCURACY};
use crate::point::Tier;
use crate::query::Dataset;
use crate::series::{EntityKind, Metric, Unit};
use crate::time::WallTime;

/// Demand above grant by more than this share counts as squeezed.
pub const SQUEEZE_TOLERANCE: f64 = 0.01;
/// ... and by more than this many bytes per second (1 kbit/s).
pub const SQUEEZE_MIN_BYTES: f64 = 125.0;
/// Periods listed per job (the longest).
pub const MAX_PERIODS: usize = 10;

/// How a job's series combine across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// Add the nodes up (traffic, CPU used).
    Sum,
    /// Take the largest (a pool-wide booking reported by every node).
    Max,
}

/// A job's pool-wide value at each point: ts -> (value in the metric's unit, seconds).
pub fn pool_series(
    ds: &Dataset,
    kind: EntityKind,
    name: &str,
    sub: &str,
    metric: Metric,
    how: Combine,
) -> BTreeMap<i64, (f64, u32)> {
    let mut out: BTreeMap<i64, (f64, u32)> = BTreeMap::new();
    for s in ds.filter(|k| k.kind == kind && k.name == name && k.sub == sub && k.metric == metric) {
        for (ts, v, secs) in s.values() {
            let e = out.entry(ts).or_insert((0.0, 0));
            e.0 = match how {
                Combine::Sum => e.0 + v,
                Combine::Max => e.0.max(v),
            };
            e.1 = e.1.max(secs);
        }
    }
    out
}

/// A stretch of time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Period {
    /// Start.
    pub start: WallTime,
    /// End (exclusive).
    pub end: WallTime,
    /// Seconds observed in it.
    pub secs: u64,
    /// What: `pipe uplink`, `cpu`.
    pub resource: String,
    /// Largest shortfall in the period, in `unit`.
    pub peak_shortfall: f64,
    /// Unit of the shortfall.
    pub unit: Unit,
}

/// One bar of a utilisation histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// Lower bound, percent of the reference.
    pub from_percent: f64,
    /// Upper bound (None: open).
    pub to_percent: Option<f64>,
    /// Share of the time.
    pub fraction: f64,
}

/// One resource of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceReport {
    /// `out`, `in`, `cpu`, `rss`, `connections`, `pipe uplink`.
    pub resource: String,
    /// Metric behind it.
    pub metric: Metric,
    /// Unit of the values.
    pub unit: Unit,
    /// Seconds observed.
    pub seconds: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest per-second value (exact, from the points' maxima).
    pub max: f64,
    /// The policy (booking, CPU target) in force at the end, if any.
    pub policy: Option<f64>,
    /// Seconds above the policy in force at the time.
    pub above_policy_secs: Option<u64>,
    /// Seconds below it.
    pub below_policy_secs: Option<u64>,
    /// What the histogram's percentages are of: `policy` or `max`.
    pub histogram_of: String,
    /// Utilisation histogram: 0-10 %, ..., 90-100 %, above 100 %.
    pub histogram: Vec<Bar>,
}

/// One job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// Job name.
    pub job: String,
    /// Nodes it was seen on.
    pub nodes: Vec<u32>,
    /// Its resources.
    pub resources: Vec<ResourceReport>,
    /// Seconds some pipe gave it less than it asked for.
    pub squeezed_secs: u64,
    /// The longest squeezed periods.
    pub squeezed: Vec<Period>,
    /// Seconds its guarantee (booking, CPU target) was not delivered while it wanted it.
    pub breach_secs: u64,
    /// The longest breaches.
    pub breaches: Vec<Period>,
}

/// One job's part of a pipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consumer {
    /// Job name.
    pub job: String,
    /// Bytes sent over the window.
    pub bytes: f64,
    /// Share of the pipe's bytes, percent.
    pub share_percent: f64,
    /// Mean rate, bytes/s.
    pub mean_bytes_per_sec: f64,
}

/// One pipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipeReport {
    /// Pipe name.
    pub pipe: String,
    /// Capacity, bit/s (last recorded).
    pub capacity_bps: Option<f64>,
    /// Jobs by bytes sent, largest first.
    pub top: Vec<Consumer>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Schema version of this document.
    pub version: u32,
    /// Window start.
    pub from: WallTime,
    /// Window end.
    pub to: WallTime,
    /// Tier the figures come from.
    pub tier: Tier,
    /// How to read the percentiles.
    pub basis: String,
    /// Per job.
    pub jobs: Vec<JobReport>,
    /// Per pipe.
    pub pipes: Vec<PipeReport>,
}

struct Track {
    resource: String,
    unit: Unit,
    secs: u64,
    periods: Vec<Period>,
    open: Option<Period>,
}

impl Track {
    fn new(resource: String, unit: Unit) -> Self {
        Track {
            resource,
            unit,
            secs: 0,
            periods: Vec::new(),
            open: None,
        }
    }

    fn mark(&mut self, ts: i64, res: i64, secs: u32, shortfall: f64) {
        self.secs += u64::from(secs);
        let end = crate::time::from_secs(ts + res);
        match &mut self.open {
            Some(p) if crate::time::secs(p.end) >= ts => {
                p.end = end;
                p.secs += u64::from(secs);
                p.peak_shortfall = p.peak_shortfall.max(shortfall);
            }
            _ => {
                self.close();
                self.open = Some(Period {
                    start: crate::time::from_secs(ts),
                    end,
                    secs: u64::from(secs),
                    resource: self.resource.clone(),
                    peak_shortfall: shortfall,
                    unit: self.unit,
                });
            }
        }
    }

    fn close(&mut self) {
        if let Some(p) = self.open.take() {
            self.periods.push(p);
        }
    }
}

fn longest(mut tracks: Vec<Track>) -> (u64, Vec<Period>) {
    let mut all = Vec::new();
    let mut secs = 0;
    for t in &mut tracks {
        t.close();
        secs += t.secs;
        all.append(&mut t.periods);
    }
    all.sort_by(|a, b| b.secs.cmp(&a.secs).then(a.start.cmp(&b.start)));
    all.truncate(MAX_PERIODS);
    all.sort_by_key(|p| p.start);
    (secs, all)
}

fn resource(
    resource: String,
    metric: Metric,
    values: &BTreeMap<i64, (f64, u32)>,
    maxima: f64,
    policy: Option<&BTreeMap<i64, (f64, u32)>>,
) -> Option<ResourceReport> {
    if values.is_empty() {
        return None;
    }
    let mut h = Histogram::new();
    for (v, secs) in values.values() {
        h.add(*v, f64::from(*secs));
    }
    let last_policy = policy.and_then(|p| p.values().next_back().map(|(v, _)| *v));
    let (mut above, mut below) = (0u64, 0u64);
    let mut bars = [0.0f64; 11];
    let mut total = 0.0;
    let reference_max = h.max().max(f64::MIN_POSITIVE);
    for (ts, (v, secs)) in values {
        let pol = policy
            .and_then(|p| p.get(ts))
            .map(|(p, _)| *p)
            .filter(|p| *p > 0.0);
        if let Some(p) = pol {
            if *v > p {
                above += u64::from(*secs);
            } else if *v < p {
                below += u64::from(*secs);
            }
        }
        let r = pol.unwrap_or(reference_max);
        let u = v / r * 100.0;
        let i = if u >= 100.0 + 1e-9 {
            if pol.is_some() {
                10
            } else {
                9
            }
        } else {
            ((u / 10.0).floor() as usize).min(9)
        };
        bars[i] += f64::from(*secs);
        total += f64::from(*secs);
    }
    let has_policy = policy.is_some_and(|p| !p.is_empty());
    Some(ResourceReport {
        resource,
        metric,
        unit: metric.unit(),
        seconds: h.total_weight() as u64,
        mean: h.mean(),
        p50: h.quantile(0.50).unwrap_or(0.0),
        p95: h.quantile(0.95).unwrap_or(0.0),
        p99: h.quantile(0.99).unwrap_or(0.0),
        max: maxima.max(h.max()),
        policy: last_policy,
        above_policy_secs: has_policy.then_some(above),
        below_policy_secs: has_policy.then_some(below),
        histogram_of: if has_policy { "policy" } else { "max" }.into(),
        histogram: bars
            .iter()
            .enumerate()
            .map(|(i, w)| Bar {
                from_percent: i as f64 * 10.0,
                to_percent: (i < 10).then_some((i + 1) as f64 * 10.0),
                fraction: if total > 0.0 { w / total } else { 0.0 },
            })
            .collect(),
    })
}

/// The largest per-second value of a job's metric: the sum over nodes of the points' maxima
/// (an upper bound when nodes peak at different seconds).
fn peak(ds: &Dataset, kind: EntityKind, name: &str, sub: &str, metric: Metric) -> f64 {
    let mut per_ts: BTreeMap<i64, f64> = BTreeMap::new();
    for s in ds.filter(|k| k.kind == kind && k.name == name && k.sub == sub && k.metric == metric) {
        for (ts, p) in &s.points {
            *per_ts.entry(*ts).or_insert(0.0) += crate::recorder::unscale(metric, p.max as f64);
        }
    }
    per_ts.values().copied().fold(0.0, f64::max)
}

/// Builds the report over the whole dataset.
pub fn report(ds: &Dataset) -> Report {
    let res = ds.tier.resolution();
    let jobs: BTreeSet<&str> = ds
        .filter(|k| k.kind == EntityKind::Job)
        .map(|s| s.key.name.as_str())
        .collect();
    let mut out_jobs = Vec::new();
    for job in jobs {
        let mut nodes: Vec<u32> = ds
            .filter(|k| k.kind == EntityKind::Job && k.name == job)
            .filter(|s| !s.points.is_empty())
            .map(|s| s.key.node)
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        let mut resources = Vec::new();
        let series = |sub: &str, m: Metric, how| pool_series(ds, EntityKind::Job, job, sub, m, how);
        let cpu_target = series("", Metric::CpuTargetCores, Combine::Sum);
        for (name, m, pol) in [
            ("out", Metric::BytesOut, None),
            ("in", Metric::BytesIn, None),
            ("cpu", Metric::CpuCores, Some(&cpu_target)),
            ("rss", Metric::RssBytes, None),
            ("connections", Metric::Connections, None),
        ] {
            let v = series("", m, Combine::Sum);
            let pk = peak(ds, EntityKind::Job, job, "", m);
            resources.extend(resource(name.into(), m, &v, pk, pol));
        }
        let pipes: BTreeSet<&str> = ds
            .filter(|k| k.kind == EntityKind::Job && k.name == job && !k.sub.is_empty())
            .map(|s| s.key.sub.as_str())
            .collect();
        let mut squeezed = Vec::new();
        let mut breaches = Vec::new();
        for pipe in pipes {
            let sent = series(pipe, Metric::PipeSentBytes, Combine::Sum);
            let demand = series(pipe, Metric::PipeDemandBytes, Combine::Sum);
            let granted = series(pipe, Metric::PipeGrantedBytes, Combine::Sum);
            // Bookings are bit/s; compare in bytes/s.
            let booked: BTreeMap<i64, (f64, u32)> =
                series(pipe, Metric::PipeBookedBps, Combine::Max)
                    .into_iter()
                    .map(|(ts, (v, s))| (ts, (v / 8.0, s)))
                    .collect();
            let pk = peak(ds, EntityKind::Job, job, pipe, Metric::PipeSentBytes);
            resources.extend(resource(
                format!("pipe {pipe}"),
                Metric::PipeSentBytes,
                &sent,
                pk,
                Some(&booked),
            ));
            let mut sq = Track::new(format!("pipe {pipe}"), Unit::BytesPerSec);
            let mut br = Track::new(format!("pipe {pipe}"), Unit::BytesPerSec);
            for (ts, (d, secs)) in &demand {
                let g = granted.get(ts).map_or(0.0, |x| x.0);
                let short = d - g;
                if short > d * SQUEEZE_TOLERANCE && short > SQUEEZE_MIN_BYTES {
                    sq.mark(*ts, res, *secs, short);
                }
                if let Some((b, _)) = booked.get(ts).filter(|(b, _)| *b > 0.0) {
                    let owed = d.min(*b);
                    let got = sent.get(ts).map_or(0.0, |x| x.0);
                    let gap = owed - got;
                    if gap > owed * SQUEEZE_TOLERANCE && gap > SQUEEZE_MIN_BYTES {
                        br.mark(*ts, res, *secs, gap);
                    }
                }
            }
            squeezed.push(sq);
            breaches.push(br);
        }
        // CPU: throttled below its target.
        let used = series("", Metric::CpuCores, Combine::Sum);
        let wants = series("", Metric::CpuWantsMore, Combine::Max);
        let mut br = Track::new("cpu".into(), Unit::Cores);
        for (ts, (t, secs)) in &cpu_target {
            let u = used.get(ts).map_or(0.0, |x| x.0);
            let w = wants.get(ts).map_or(0.0, |x| x.0);
            if w >= 0.5 && u < t * 0.95 {
                br.mark(*ts, res, *secs, t - u);
            }
        }
        breaches.push(br);
        let (squeezed_secs, squeezed) = longest(squeezed);
        let (breach_secs, breaches) = longest(breaches);
        out_jobs.push(JobReport {
            job: job.to_string(),
            nodes,
            resources,
            squeezed_secs,
            squeezed,
            breach_secs,
            breaches,
        });
    }
    // Pipes: who sent what.
    let pipes: BTreeSet<&str> = ds
        .filter(|k| k.kind == EntityKind::Job && k.metric == Metric::PipeSentBytes)
        .map(|s| s.key.sub.as_str())
        .chain(
            ds.filter(|k| k.kind == EntityKind::Pipe)
                .map(|s| s.key.name.as_str()),
        )
        .collect();
    let mut out_pipes = Vec::new();
    let window = (ds.to - ds.from).max(1) as f64;
    for pipe in pipes {
        let mut top: Vec<Consumer> = Vec::new();
        for s in ds.filter(|k| {
            k.kind == EntityKind::Job && k.sub == pipe && k.metric == Metric::PipeSentBytes
        }) {
            let bytes: f64 = s.points.iter().map(|(_, p)| p.sum as f64).sum();
            match top.iter_mut().find(|c| c.job == s.key.name) {
                Some(c) => c.bytes += bytes,
                None => top.push(Consumer {
                    job: s.key.name.clone(),
                    bytes,
                    share_percent: 0.0,
                    mean_bytes_per_sec: 0.0,
                }),
            }
        }
        let total: f64 = top.iter().map(|c| c.bytes).sum();
        for c in &mut top {
            c.share_percent = if total > 0.0 {
                c.bytes / total * 100.0
            } else {
                0.0
            };
            c.mean_bytes_per_sec = c.bytes / window;
        }
        top.sort_by(|a, b| b.bytes.total_cmp(&a.bytes).then(a.job.cmp(&b.job)));
        let capacity_bps = ds
            .filter(|k| {
                k.kind == EntityKind::Pipe && k.name == pipe && k.metric == Metric::PipeCapacityBps
            })
            .filter_map(|s| s.values().last().map(|(_, v, _)| v))
            .reduce(f64::max);
        out_pipes.push(PipeReport {
            pipe: pipe.to_string(),
            capacity_bps,
            top,
        });
    }
    Report {
        version: 1,
        from: crate::time::from_secs(ds.from),
        to: crate::time::from_secs(ds.to),
        tier: ds.tier,
        basis: format!(
            "percentiles of {} values weighted by seconds observed, accurate to {:.0}% of the value",
            match ds.tier {
                Tier::Sec => "per-second",
                Tier::Min => "per-minute average",
                Tier::Hour => "per-hour average",
            },
            ACCURACY * 100.0
        ),
        jobs: out_jobs,
        pipes: out_pipes,
    }
}

fn dur(secs: u64) -> String {
    crate::time::format_duration(std::time::Duration::from_secs(secs))
}

/// The report as text, in human units.
pub fn render_text(r: &Report) -> String {
    let mut o = format!(
        "Report {} to {} ({})\n",
        r.from.rfc3339(),
        r.to.rfc3339(),
        r.basis
    );
    for j in &r.jobs {
        let nodes: Vec<String> = j.nodes.iter().map(|n| n.to_string()).collect();
        o.push_str(&format!("\njob {} (nodes {})\n", j.job, nodes.join(", ")));
        o.push_str(&format!(
            "  {:<16} {:>14} {:>14} {:>14} {:>14} {:>14}  policy\n",
            "resource", "mean", "p50", "p95", "p99", "max"
        ));
        for x in &j.resources {
            let f = |v: f64| x.unit.format(v);
            let pol = match (x.policy, x.above_policy_secs, x.below_policy_secs) {
                (Some(p), Some(a), Some(b)) => {
                    format!("{} (above {}, below {})", f(p), dur(a), dur(b))
                }
                _ => "-".into(),
            };
            o.push_str(&format!(
                "  {:<16} {:>14} {:>14} {:>14} {:>14} {:>14}  {}\n",
                x.resource,
                f(x.mean),
                f(x.p50),
                f(x.p95),
                f(x.p99),
                f(x.max),
                pol
            ));
        }
        for x in j.resources.iter().filter(|x| x.seconds > 0) {
            o.push_str(&format!(
                "  {} utilisation (% of {}):\n",
                x.resource, x.histogram_of
            ));
            for b in &x.histogram {
                if b.to_percent.is_none() && x.histogram_of != "policy" {
                    continue;
                }
                let label = match b.to_percent {
                    Some(t) => format!("{:>3.0}-{:<3.0}%", b.from_percent, t),
                    None => format!(">{:.0}%    ", b.from_percent),
                };
                let bar = "#".repeat((b.fraction * 40.0).round() as usize);
                o.push_str(&format!(
                    "    {label} {:<40} {:5.1}%\n",
                    bar,
                    b.fraction * 100.0
                ));
            }
        }
        o.push_str(&format!(
            "  squeezed (demand above grant): {}\n",
            dur(j.squeezed_secs)
        ));
        for p in &j.squeezed {
            o.push_str(&format!(
                "    {} to {} ({}) {}, short by up to {}\n",
                p.start.rfc3339(),
                p.end.rfc3339(),
                dur(p.secs),
                p.resource,
                p.unit.format(p.peak_shortfall)
            ));
        }
        o.push_str(&format!("  policy breaches: {}\n", dur(j.breach_secs)));
        for p in &j.breaches {
            o.push_str(&format!(
                "    {} to {} ({}) {}, short by up to {}\n",
                p.start.rfc3339(),
                p.end.rfc3339(),
                dur(p.secs),
                p.resource,
                p.unit.format(p.peak_shortfall)
            ));
        }
    }
    for p in &r.pipes {
        let cap = p
            .capacity_bps
            .map(|c| Unit::BitsPerSec.format(c))
            .unwrap_or_else(|| "capacity unknown".into());
        o.push_str(&format!("\npipe {} ({cap}): top consumers\n", p.pipe));
        for c in p.top.iter().take(10) {
            o.push_str(&format!(
                "  {:<20} {:>14} {:>6.1}%  {}\n",
                c.job,
                Unit::Bytes.format(c.bytes),
                c.share_percent,
                Unit::BytesPerSec.format(c.mean_bytes_per_sec)
            ));
        }
    }
    o
}
