//! From samples to points, with no I/O: interns series keys into compact ids, turns
//! cumulative counters into exact per-second amounts (handling restarts and resets), scales
//! gauges, and turns pool summaries into one-minute points. The writer thread feeds it and
//! stores what it returns; tests drive it directly.

use std::hash::Hash;

use hashbrown::{Equivalent, HashMap};
use serde::{Deserialize, Serialize};

use crate::point::{Point, Tier};
use crate::sample::{NodeSample, NodeSummary};
use crate::series::{EntityKind, Metric, MetricKind, SeriesKey};
use crate::time::WallTime;

/// A run whose first sample arrives later than this after its start began before history
/// did (history enabled or restarted mid-run): its first counter values are only baselines.
pub const FRESH_RUN_MS: i64 = 5_000;

/// One point for the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Series id.
    pub series: u32,
    /// Tier the point belongs to.
    pub tier: Tier,
    /// Start of its interval, seconds since the epoch (a multiple of the tier's resolution).
    pub ts: i64,
    /// The point.
    pub point: Point,
}

/// What one sample or summary produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Series seen for the first time, with their new ids.
    pub new_series: Vec<(u32, SeriesKey)>,
    /// Points.
    pub points: Vec<Observation>,
}

impl Batch {
    /// Appends another batch.
    pub fn append(&mut self, mut o: Batch) {
        self.new_series.append(&mut o.new_series);
        self.points.append(&mut o.points);
    }
}

/// Counters of the recorder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecorderStats {
    /// Samples handled.
    pub samples: u64,
    /// Pool summaries handled.
    pub summaries: u64,
    /// Counters that went backwards within a run (treated as restarted from zero).
    pub counter_resets: u64,
    /// Daemon restarts seen (a new run id).
    pub runs: u64,
    /// Values that were not finite or negative, left out.
    pub invalid_values: u64,
    /// Summaries claiming to come from this node, left out.
    pub own_summaries_ignored: u64,
    /// Series known.
    pub series: u64,
}

#[derive(Hash)]
struct KeyRef<'a> {
    node: u32,
    kind: EntityKind,
    name: &'a str,
    sub: &'a str,
    metric: Metric,
}

impl Equivalent<SeriesKey> for KeyRef<'_> {
    fn equivalent(&self, k: &SeriesKey) -> bool {
        self.node == k.node
            && self.kind == k.kind
            && self.metric == k.metric
            && self.name == k.name
            && self.sub == k.sub
    }
}

#[derive(Debug, Clone, Copy)]
struct Last {
    run: u64,
    value: u64,
    at_ms: i64,
}

/// Samples to points (see the module documentation).
#[derive(Debug)]
pub struct Recorder {
    node: u32,
    ids: HashMap<SeriesKey, u32>,
    keys: Vec<Option<SeriesKey>>,
    last: Vec<Option<Last>>,
    run: Option<(u64, i64, bool)>,
    stats: RecorderStats,
}

impl Recorder {
    /// A recorder for node `node`. Its series ids live in memory only (the store maps them to
    /// its own), so a recorder can start before the store opens.
    pub fn new(node: u32) -> Self {
        Recorder {
            node,
            ids: HashMap::new(),
            keys: vec![None],
            last: vec![None],
            run: None,
            stats: RecorderStats::default(),
        }
    }

    /// This node's id.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// Counters.
    pub fn stats(&self) -> RecorderStats {
        self.stats
    }

    /// The key of series `id`.
    pub fn key(&self, id: u32) -> Option<&SeriesKey> {
        self.keys.get(id as usize).and_then(|k| k.as_ref())
    }

    /// Every known series.
    pub fn series(&self) -> impl Iterator<Item = (u32, &SeriesKey)> {
        self.keys
            .iter()
            .enumerate()
            .filter_map(|(i, k)| k.as_ref().map(|k| (i as u32, k)))
    }

    fn intern(
        &mut self,
        node: u32,
        kind: EntityKind,
        name: &str,
        sub: &str,
        metric: Metric,
        out: &mut Batch,
    ) -> u32 {
        let r = KeyRef {
            node,
            kind,
            name,
            sub,
            metric,
        };
        if let Some(&id) = self.ids.get(&r) {
            return id;
        }
        let id = self.keys.len() as u32;
        let key = SeriesKey::new(node, kind, name, sub, metric);
        self.keys.push(Some(key.clone()));
        self.last.push(None);
        self.ids.insert(key.clone(), id);
        self.stats.series += 1;
        out.new_series.push((id, key));
        id
    }

    /// Turns one sample of this node into one-second points.
    pub fn handle_sample(&mut self, s: &NodeSample) -> Batch {
        self.stats.samples += 1;
        let at = crate::time::millis(s.at);
        match self.run {
            Some((run, _, _)) if run == s.run => {}
            prev => {
                if prev.is_some() {
                    self.stats.runs += 1;
                }
                let late = at - crate::time::millis(s.run_started) > FRESH_RUN_MS;
                self.run = Some((s.run, at, late));
            }
        }
        // A sample covers the second that ends when it is taken: its point is that second's.
        let mut ctx = SampleCtx {
            ts: crate::time::nearest_sec(s.at) - 1,
            at,
            run: s.run,
            baseline: matches!(self.run, Some((_, first, true)) if first == at),
            out: Batch::default(),
        };
        let me = self.node;
        let n = &s.node;
        use EntityKind as K;
        use Metric as M;
        self.gauge(&mut ctx, me, K::Node, "", "", M::Cores, n.cores);
        self.gauge(&mut ctx, me, K::Node, "", "", M::CpuCores, n.cpu_cores);
        self.gauge(
            &mut ctx,
            me,
            K::Node,
            "",
            "",
            M::HeadroomPercent,
            n.headroom_percent,
        );
        for (m, v) in [
            (M::ExchangeTxBytes, n.exchange_tx_bytes),
            (M::ExchangeRxBytes, n.exchange_rx_bytes),
            (M::ExchangeTxPackets, n.exchange_tx_packets),
            (M::ExchangeRxPackets, n.exchange_rx_packets),
        ] {
            self.counter(&mut ctx, K::Node, "", "", m, v);
        }
        for j in &s.jobs {
            let name = j.name.as_str();
            for (m, v) in [
                (M::BytesIn, j.bytes_in),
                (M::BytesOut, j.bytes_out),
                (M::PacketsIn, j.packets_in),
                (M::PacketsOut, j.packets_out),
            ] {
                self.counter(&mut ctx, K::Job, name, "", m, v);
            }
            self.gauge(&mut ctx, me, K::Job, name, "", M::CpuCores, j.cpu_cores);
            if let Some(t) = j.cpu_target_cores {
                self.gauge(&mut ctx, me, K::Job, name, "", M::CpuTargetCores, t);
            }
            let wants = if j.cpu_wants_more { 1.0 } else { 0.0 };
            self.gauge(&mut ctx, me, K::Job, name, "", M::CpuWantsMore, wants);
            self.gauge(
                &mut ctx,
                me,
                K::Job,
                name,
                "",
                M::RssBytes,
                j.rss_bytes as f64,
            );
            self.gauge(
                &mut ctx,
                me,
                K::Job,
                name,
                "",
                M::Processes,
                j.processes as f64,
            );
            self.gauge(
                &mut ctx,
                me,
                K::Job,
                name,
                "",
                M::Connections,
                j.connections as f64,
            );
            for p in &j.pipes {
                let sub = p.pipe.as_str();
                for (m, v) in [
                    (M::PipeDemandBytes, p.demand_bytes),
                    (M::PipeGrantedBytes, p.granted_bytes),
                    (M::PipeSentBytes, p.sent_bytes),
                    (M::PipeDroppedBytes, p.dropped_bytes),
                ] {
                    self.counter(&mut ctx, K::Job, name, sub, m, v);
                }
                let q = p.queued_bytes as f64;
                self.gauge(&mut ctx, me, K::Job, name, sub, M::PipeQueuedBytes, q);
                if let Some(b) = p.booked_bps {
                    self.gauge(&mut ctx, me, K::Job, name, sub, M::PipeBookedBps, b as f64);
                }
            }
        }
        for p in &s.pipes {
            let name = p.name.as_str();
            for (m, v) in [
                (M::PipeDemandBytes, p.demand_bytes),
                (M::PipeGrantedBytes, p.granted_bytes),
                (M::PipeSentBytes, p.sent_bytes),
                (M::PipeDroppedBytes, p.dropped_bytes),
            ] {
                self.counter(&mut ctx, K::Pipe, name, "", m, v);
            }
            let cap = p.capacity_bps as f64;
            self.gauge(&mut ctx, me, K::Pipe, name, "", M::PipeCapacityBps, cap);
            let q = p.queued_bytes as f64;
            self.gauge(&mut ctx, me, K::Pipe, name, "", M::PipeQueuedBytes, q);
            self.gauge(
                &mut ctx,
                me,
                K::Pipe,
                name,
                "",
                M::PipeNodes,
                p.nodes as f64,
            );
        }
        for v in &s.vips {
            let name = v.name.as_str();
            for (m, c) in [
                (M::NewConnections, v.new_connections),
                (M::VipPackets, v.packets),
                (M::VipBytes, v.bytes),
            ] {
                self.counter(&mut ctx, K::Vip, name, "", m, c);
            }
            for (node, c) in &v.placements {
                let sub = node.to_string();
                self.counter(&mut ctx, K::Vip, name, &sub, M::Placements, *c);
            }
            let (sv, un) = (v.serving_members as f64, v.unhealthy_members as f64);
            self.gauge(&mut ctx, me, K::Vip, name, "", M::ServingMembers, sv);
            self.gauge(&mut ctx, me, K::Vip, name, "", M::UnhealthyMembers, un);
        }
        ctx.out
    }

    #[allow(clippy::too_many_arguments)]
    fn gauge(
        &mut self,
        ctx: &mut SampleCtx,
        node: u32,
        kind: EntityKind,
        name: &str,
        sub: &str,
        metric: Metric,
        v: f64,
    ) {
        debug_assert_eq!(metric.kind(), MetricKind::Gauge);
        let Some(scaled) = scale(metric, v) else {
            self.stats.invalid_values += 1;
            return;
        };
        let id = self.intern(node, kind, name, sub, metric, &mut ctx.out);
        ctx.out.points.push(Observation {
            series: id,
            tier: Tier::Sec,
            ts: ctx.ts,
            point: Point::single(scaled),
        });
    }

    fn counter(
        &mut self,
        ctx: &mut SampleCtx,
        kind: EntityKind,
        name: &str,
        sub: &str,
        metric: Metric,
        value: u64,
    ) {
        debug_assert_eq!(metric.kind(), MetricKind::Counter);
        let id = self.intern(self.node, kind, name, sub, metric, &mut ctx.out);
        let prev = self.last[id as usize];
        self.last[id as usize] = Some(Last {
            run: ctx.run,
            value,
            at_ms: ctx.at,
        });
        let (delta, secs) = match prev {
            None if ctx.baseline => return,
            Some(l) if l.run == ctx.run && value >= l.value => {
                if ctx.at <= l.at_ms {
                    // Two samples in one instant: the amount joins the second it falls in.
                    (value - l.value, 1)
                } else {
                    let secs = ((ctx.at - l.at_ms + 500) / 1000).max(1);
                    (value - l.value, u32::try_from(secs).unwrap_or(u32::MAX))
                }
            }
            Some(l) if l.run == ctx.run => {
                self.stats.counter_resets += 1;
                (value, 1)
            }
            // New series, or the first value of a new run: counted from zero.
            _ => (value, 1),
        };
        let delta = i64::try_from(delta).unwrap_or(i64::MAX);
        ctx.out.points.push(Observation {
            series: id,
            tier: Tier::Sec,
            ts: ctx.ts,
            point: Point::over(delta, secs),
        });
    }

    /// Turns pool member `node`'s gossiped summary, received at `at` (this node's clock), into
    /// one-minute points under that node's id. Rates in bit/s become bytes per second; per
    /// mille shares become cores and percent; a VIP's placements on the node are stored as
    /// placements on itself (`sub` = its id) and its served flows as connections.
    pub fn handle_summary(&mut self, node: u32, at: WallTime, s: &NodeSummary) -> Batch {
        let mut out = Batch::default();
        if node == self.node {
            self.stats.own_summaries_ignored += 1;
            return out;
        }
        self.stats.summaries += 1;
        let ts = (crate::time::secs(at) - 1).div_euclid(60) * 60;
        let window = (s.window_ms / 1000).max(1);
        let mut put = |r: &mut Recorder, kind, name: &str, sub: &str, metric: Metric, v: f64| {
            let Some(per_sec) = scale(metric, v) else {
                r.stats.invalid_values += 1;
                return;
            };
            let id = r.intern(node, kind, name, sub, metric, &mut out);
            out.points.push(Observation {
                series: id,
                tier: Tier::Min,
                ts,
                point: Point {
                    sum: per_sec.saturating_mul(i64::from(window)),
                    count: window,
                    min: per_sec,
                    max: per_sec,
                },
            });
        };
        let bytes = |bps: u64| bps as f64 / 8.0;
        let cores = f64::from(s.cores);
        use EntityKind as K;
        use Metric as M;
        put(self, K::Node, "", "", M::Cores, cores);
        let used = cores * f64::from(s.cpu_permille) / 1000.0;
        put(self, K::Node, "", "", M::CpuCores, used);
        let headroom = f64::from(s.headroom_permille) / 10.0;
        put(self, K::Node, "", "", M::HeadroomPercent, headroom);
        for j in &s.jobs {
            let n = j.name.as_str();
            put(self, K::Job, n, "", M::BytesIn, bytes(j.rx_bps));
            put(self, K::Job, n, "", M::BytesOut, bytes(j.tx_bps));
            let cpu = f64::from(j.cpu_permille) / 1000.0;
            put(self, K::Job, n, "", M::CpuCores, cpu);
            put(
                self,
                K::Job,
                n,
                "",
                M::Connections,
                f64::from(j.connections),
            );
            if let Some(p) = &j.pipe {
                let sub = p.pipe.as_str();
                put(
                    self,
                    K::Job,
                    n,
                    sub,
                    M::PipeGrantedBytes,
                    bytes(p.granted_bps),
                );
                put(self, K::Job, n, sub, M::PipeSentBytes, bytes(p.sent_bps));
                // What the peer's job offered: sent or dropped (the queue's
                // growth within the window is not gossiped).
                put(
                    self,
                    K::Job,
                    n,
                    sub,
                    M::PipeDemandBytes,
                    bytes(p.sent_bps.saturating_add(p.dropped_bps)),
                );
                put(
                    self,
                    K::Job,
                    n,
                    sub,
                    M::PipeDroppedBytes,
                    bytes(p.dropped_bps),
                );
                put(self, K::Job, n, sub, M::PipeBookedBps, p.booked_bps as f64);
            }
        }
        let me = node.to_string();
        for v in &s.vips {
            let n = v.name.as_str();
            let placed = f64::from(v.placements) / f64::from(window);
            put(self, K::Vip, n, &me, M::Placements, placed);
            put(self, K::Vip, n, "", M::Connections, f64::from(v.flows));
        }
        out
    }
}

struct SampleCtx {
    ts: i64,
    at: i64,
    run: u64,
    baseline: bool,
    out: Batch,
}

/// `v` in the metric's stored units, or None if it is not a finite non-negative number.
pub fn scale(metric: Metric, v: f64) -> Option<i64> {
    let s = (v * metric.scale()).round();
    (s.is_finite() && s >= 0.0 && s < i64::MAX as f64).then_some(s as i64)
}

/// A stored value back in the metric's unit.
pub fn unscale(metric: Metric, v: f64) -> f64 {
    v / metric.scale()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{JobPipeValues, JobValues};

    fn sample(at_ms: u64, run: u64, bytes_out: u64, cpu: f64) -> NodeSample {
        NodeSample {
            at: WallTime::from_unix_millis(at_ms),
            run,
            run_started: WallTime::from_unix_millis(1_000_000),
            jobs: vec![JobValues {
                name: "web".into(),
                bytes_out,
                cpu_cores: cpu,
                pipes: vec![JobPipeValues {
                    pipe: "uplink".into(),
                    sent_bytes: bytes_out,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn point_of(b: &Batch, r: &Recorder, name: &str, sub: &str, m: Metric) -> Option<Observation> {
        b.points.iter().copied().find(|o| {
            let k = r.key(o.series).unwrap();
            k.name == name && k.sub == sub && k.metric == m
        })
    }

    #[test]
    fn counters_become_exact_amounts() {
        let mut r = Recorder::new(1);
        let b = r.handle_sample(&sample(1_001_000, 7, 100, 0.5));
        let o = point_of(&b, &r, "web", "", Metric::BytesOut).unwrap();
        // Fresh run: counted from zero.
        assert_eq!((o.ts, o.point), (1000, Point::single(100)));
        assert!(!b.new_series.is_empty());
        let cpu = point_of(&b, &r, "web", "", Metric::CpuCores).unwrap();
        assert_eq!(cpu.point, Point::single(5000));
        let b = r.handle_sample(&sample(1_001_998, 7, 350, 0.5));
        assert!(b.new_series.is_empty());
        let o = point_of(&b, &r, "web", "", Metric::BytesOut).unwrap();
        assert_eq!((o.ts, o.point), (1001, Point::single(250)));
        // A missed sample: the next one covers two seconds, nothing lost.
        let b = r.handle_sample(&sample(1_004_010, 7, 1350, 0.5));
        let o = point_of(&b, &r, "web", "uplink", Metric::PipeSentBytes).unwrap();
        assert_eq!((o.ts, o.point), (1003, Point::over(1000, 2)));
        // A counter that goes backwards within a run restarted from zero.
        let b = r.handle_sample(&sample(1_005_000, 7, 40, 0.5));
        assert_eq!(
            point_of(&b, &r, "web", "", Metric::BytesOut).unwrap().point,
            Point::single(40)
        );
        assert_eq!(r.stats().counter_resets, 2);
        // A daemon restart (new run): counted from zero, not a reset.
        let b = r.handle_sample(&sample(1_006_000, 8, 30, f64::NAN));
        assert_eq!(
            point_of(&b, &r, "web", "", Metric::BytesOut).unwrap().point,
            Point::single(30)
        );
        assert_eq!(r.stats().runs, 1);
        assert_eq!(r.stats().invalid_values, 1);
        assert!(point_of(&b, &r, "web", "", Metric::CpuCores).is_none());
    }

    #[test]
    fn late_start_takes_a_baseline() {
        let mut r = Recorder::new(1);
        // History started an hour into the run: the first counters are baselines only.
        let b = r.handle_sample(&sample(4_600_000, 9, 1 << 40, 0.1));
        assert!(point_of(&b, &r, "web", "", Metric::BytesOut).is_none());
        assert!(point_of(&b, &r, "web", "", Metric::CpuCores).is_some());
        let b = r.handle_sample(&sample(4_601_000, 9, (1 << 40) + 10, 0.1));
        assert_eq!(
            point_of(&b, &r, "web", "", Metric::BytesOut).unwrap().point,
            Point::single(10)
        );
    }

    #[test]
    fn summaries_become_minute_points() {
        let mut r = Recorder::new(1);
        let s = NodeSummary {
            window_ms: 2000,
            cores: 2,
            jobs: vec![headroom_control::policy::summary::JobSummary {
                name: "web".into(),
                tx_bps: 5_000_000,
                ..Default::default()
            }],
            ..Default::default()
        };
        let b = r.handle_summary(3, WallTime::from_unix_millis(150_000), &s);
        let o = point_of(&b, &r, "web", "", Metric::BytesOut).unwrap();
        assert_eq!(o.tier, Tier::Min);
        assert_eq!(o.ts, 120);
        assert_eq!(
            o.point,
            Point {
                sum: 1_250_000,
                count: 2,
                min: 625_000,
                max: 625_000
            }
        );
        assert_eq!(r.key(o.series).unwrap().node, 3);
        assert!(r
            .handle_summary(1, WallTime::from_unix_millis(0), &s)
            .points
            .is_empty());
        assert_eq!(r.stats().own_summaries_ignored, 1);
    }
}
