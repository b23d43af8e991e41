//! What a series is: an entity (job, pipe, VIP, node), a metric, and the node that measured it.
//!
//! Keys are stored once in the `series` table and referred to by a compact integer id. Every
//! metric has a fixed kind and unit: a *counter* is cumulative in the samples and stored as the
//! amount per interval (bytes sent in that second); a *gauge* is stored as sampled. Values are
//! stored as integers in the metric's base unit times its [`Metric::scale`], so sums are exact
//! and the encoding stays small; the scale is the metric's resolution (e.g. 0.0001 core).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of entity a series belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    /// A job (application), with `sub` naming a pipe for its per-pipe metrics.
    Job,
    /// A shared pipe (this node's view of it).
    Pipe,
    /// A VIP service, with `sub` naming a node for placements.
    Vip,
    /// The node itself (`name` is empty).
    Node,
}

impl EntityKind {
    /// Stable code stored in the database.
    pub const fn code(self) -> u8 {
        match self {
            EntityKind::Job => 1,
            EntityKind::Pipe => 2,
            EntityKind::Vip => 3,
            EntityKind::Node => 4,
        }
    }

    /// The kind with the stored `code`.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => EntityKind::Job,
            2 => EntityKind::Pipe,
            3 => EntityKind::Vip,
            4 => EntityKind::Node,
            _ => return None,
        })
    }

    /// Lower-case name (`job`, `pipe`, `vip`, `node`).
    pub const fn as_str(self) -> &'static str {
        match self {
            EntityKind::Job => "job",
            EntityKind::Pipe => "pipe",
            EntityKind::Vip => "vip",
            EntityKind::Node => "node",
        }
    }
}

/// Whether samples carry a cumulative count or an instantaneous value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// Cumulative in samples; stored as the amount per interval, read as a rate.
    Counter,
    /// Sampled as is.
    Gauge,
}

/// The unit of a metric's value as read (counters read as a rate per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Bytes per second (shown as bit/s).
    BytesPerSec,
    /// Packets per second.
    PacketsPerSec,
    /// Events per second.
    PerSec,
    /// CPU cores.
    Cores,
    /// Bytes.
    Bytes,
    /// A count.
    Count,
    /// Percent.
    Percent,
    /// Bits per second.
    BitsPerSec,
    /// A fraction from 0 to 1.
    Ratio,
}

impl Unit {
    /// Short name for column headers (`bit/s`, `cores`, ...).
    pub const fn label(self) -> &'static str {
        match self {
            Unit::BytesPerSec | Unit::BitsPerSec => "bit/s",
            Unit::PacketsPerSec => "pkt/s",
            Unit::PerSec => "/s",
            Unit::Cores => "cores",
            Unit::Bytes => "bytes",
            Unit::Count => "",
            Unit::Percent => "%",
            Unit::Ratio => "",
        }
    }

    /// A value in human units: `5.00 Mbit/s`, `1.25 cores`, `512 MiB`, `37.5%`.
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::BytesPerSec => si(v * 8.0, "bit/s"),
            Unit::BitsPerSec => si(v, "bit/s"),
            Unit::PacketsPerSec => si(v, "pkt/s"),
            Unit::PerSec => format!("{v:.1}/s"),
            Unit::Cores => format!("{v:.2} cores"),
            Unit::Bytes => binary(v),
            Unit::Count => format!("{v:.0}"),
            Unit::Percent => format!("{v:.1}%"),
            Unit::Ratio => format!("{:.1}%", v * 100.0),
        }
    }
}

fn si(v: f64, unit: &str) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2} G{unit}", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2} M{unit}", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1} k{unit}", v / 1e3)
    } else {
        format!("{v:.0} {unit}")
    }
}

fn binary(v: f64) -> String {
    let a = v.abs();
    if a >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", v / (1u64 << 30) as f64)
    } else if a >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", v / (1u64 << 20) as f64)
    } else if a >= 1024.0 {
        format!("{:.1} KiB", v / 1024.0)
    } else {
        format!("{v:.0} B")
    }
}

macro_rules! metrics {
    ($( $(#[$doc:meta])* $var:ident = $code:literal, $name:literal, $kind:ident, $unit:ident, $scale:literal; )*) => {
        /// A measured quantity.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Metric {
            $( $(#[$doc])* $var, )*
        }

        impl Metric {
            /// Every metric, in code order.
            pub const ALL: &'static [Metric] = &[$(Metric::$var),*];

            /// Stable code stored in the database.
            pub const fn code(self) -> u16 {
                match self { $(Metric::$var => $code,)* }
            }

            /// The metric with the stored `code`.
            pub fn from_code(code: i64) -> Option<Self> {
                match code { $($code => Some(Metric::$var),)* _ => None }
            }

            /// Name used on the command line and in CSV/JSON (`bytes_out`).
            pub const fn name(self) -> &'static str {
                match self { $(Metric::$var => $name,)* }
            }

            /// Counter or gauge.
            pub const fn kind(self) -> MetricKind {
                match self { $(Metric::$var => MetricKind::$kind,)* }
            }

            /// Unit of the value as read.
            pub const fn unit(self) -> Unit {
                match self { $(Metric::$var => Unit::$unit,)* }
            }

            /// Stored integer per base unit (the resolution is its inverse).
            pub const fn scale(self) -> f64 {
                match self { $(Metric::$var => $scale,)* }
            }

            /// The metric called `name`.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(Metric::$var),)* _ => None }
            }
        }
    };
}

metrics! {
    /// Bytes received from the network for the job.
    BytesIn = 1, "bytes_in", Counter, BytesPerSec, 1.0;
    /// Bytes the job sent to the network.
    BytesOut = 2, "bytes_out", Counter, BytesPerSec, 1.0;
    /// Packets received.
    PacketsIn = 3, "packets_in", Counter, PacketsPerSec, 1.0;
    /// Packets sent.
    PacketsOut = 4, "packets_out", Counter, PacketsPerSec, 1.0;
    /// CPU used, in cores (job, or the whole node).
    CpuCores = 5, "cpu", Gauge, Cores, 10000.0;
    /// CPU the job's policy targets on this node, in cores.
    CpuTargetCores = 6, "cpu_target", Gauge, Cores, 10000.0;
    /// Whether the job used all it was granted and wanted more (1) or not (0).
    CpuWantsMore = 7, "cpu_wants_more", Gauge, Ratio, 1000.0;
    /// Resident memory of the job's processes.
    RssBytes = 8, "rss", Gauge, Bytes, 1.0;
    /// The job's processes on this node.
    Processes = 9, "processes", Gauge, Count, 1.0;
    /// The job's open connections (flows) on this node.
    Connections = 10, "connections", Gauge, Count, 1.0;
    /// Bytes offered to a pipe (sent, queued or dropped): the demand.
    PipeDemandBytes = 20, "pipe_demand", Counter, BytesPerSec, 1.0;
    /// Bytes of credit the allocator granted on a pipe.
    PipeGrantedBytes = 21, "pipe_granted", Counter, BytesPerSec, 1.0;
    /// Bytes sent on a pipe.
    PipeSentBytes = 22, "pipe_sent", Counter, BytesPerSec, 1.0;
    /// Bytes dropped by the pacer on a pipe.
    PipeDroppedBytes = 23, "pipe_dropped", Counter, BytesPerSec, 1.0;
    /// Bytes waiting in the pacer's queues.
    PipeQueuedBytes = 24, "pipe_queued", Gauge, Bytes, 1.0;
    /// The job's booking on a pipe, bit/s (the policy in force).
    PipeBookedBps = 25, "pipe_booked", Gauge, BitsPerSec, 1.0;
    /// A pipe's capacity, bit/s.
    PipeCapacityBps = 26, "pipe_capacity", Gauge, BitsPerSec, 1.0;
    /// Nodes whose demand went into the pipe's allocation.
    PipeNodes = 27, "pipe_nodes", Gauge, Count, 1.0;
    /// New connections placed by a VIP.
    NewConnections = 40, "new_connections", Counter, PerSec, 1.0;
    /// Packets of a VIP.
    VipPackets = 41, "vip_packets", Counter, PacketsPerSec, 1.0;
    /// Bytes of a VIP.
    VipBytes = 42, "vip_bytes", Counter, BytesPerSec, 1.0;
    /// Connections a VIP placed on the node named by `sub`.
    Placements = 43, "placements", Counter, PerSec, 1.0;
    /// Members of a VIP that may receive flows (alive, healthy).
    ServingMembers = 44, "serving", Gauge, Count, 1.0;
    /// Members of a VIP whose health check fails.
    UnhealthyMembers = 45, "unhealthy", Gauge, Count, 1.0;
    /// Cores of the node.
    Cores = 60, "cores", Gauge, Cores, 10000.0;
    /// The node's idle share of its cores, percent.
    HeadroomPercent = 61, "headroom", Gauge, Percent, 100.0;
    /// Bytes the information exchange sent.
    ExchangeTxBytes = 62, "exchange_tx", Counter, BytesPerSec, 1.0;
    /// Bytes the information exchange received.
    ExchangeRxBytes = 63, "exchange_rx", Counter, BytesPerSec, 1.0;
    /// Datagrams the information exchange sent.
    ExchangeTxPackets = 64, "exchange_tx_packets", Counter, PacketsPerSec, 1.0;
    /// Datagrams the information exchange received.
    ExchangeRxPackets = 65, "exchange_rx_packets", Counter, PacketsPerSec, 1.0;
}

/// One series: who measured (`node`), what entity, which metric, and a qualifier (`sub`: the
/// pipe of a job's pipe metric, the node of a VIP placement count; empty otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// Node the data comes from (this node, or a pool member's summary).
    pub node: u32,
    /// Entity kind.
    pub kind: EntityKind,
    /// Entity name (job, pipe or VIP name; empty for the node).
    pub name: String,
    /// Qualifier (see the type's documentation).
    pub sub: String,
    /// Metric.
    pub metric: Metric,
}

impl SeriesKey {
    /// A key.
    pub fn new(node: u32, kind: EntityKind, name: &str, sub: &str, metric: Metric) -> Self {
        SeriesKey {
            node,
            kind,
            name: name.to_string(),
            sub: sub.to_string(),
            metric,
        }
    }
}

impl fmt::Display for SeriesKey {
    /// `node3:job/web/uplink:pipe_sent`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node{}:{}", self.node, self.kind.as_str())?;
        if !self.name.is_empty() {
            write!(f, "/{}", self.name)?;
        }
        if !self.sub.is_empty() {
            write!(f, "/{}", self.sub)?;
        }
        write!(f, ":{}", self.metric.name())
    }
}

/// Which series a query wants, as the CLI names them: `JOB`, `pipe/NAME`, `vip/NAME`,
/// `node/N`, optionally narrowed to metrics and to the nodes that measured them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Selector {
    /// Entity kind (None: any).
    pub kind: Option<EntityKind>,
    /// Entity name (None: any).
    pub name: Option<String>,
    /// Metrics (empty: all).
    pub metrics: Vec<Metric>,
    /// Nodes (empty: all).
    pub nodes: Vec<u32>,
}

impl Selector {
    /// Parses `JOB`, `job/NAME`, `pipe/NAME`, `vip/NAME` or `node/N` (node N's own series).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (kind, name) = match s.split_once('/') {
            Some(("job", n)) => (EntityKind::Job, n),
            Some(("pipe", n)) => (EntityKind::Pipe, n),
            Some(("vip", n)) => (EntityKind::Vip, n),
            Some(("node", n)) => {
                let id: u32 = n
                    .parse()
                    .map_err(|_| format!("invalid node {n:?}: expected a node id, e.g. node/3"))?;
                return Ok(Selector {
                    kind: Some(EntityKind::Node),
                    name: None,
                    metrics: Vec::new(),
                    nodes: vec![id],
                });
            }
            Some((k, _)) => {
                return Err(format!(
                    "unknown entity kind {k:?}: expected JOB, pipe/NAME, vip/NAME or node/N"
                ))
            }
            None => (EntityKind::Job, s),
        };
        if name.is_empty() {
            return Err(format!(
                "{s:?} names no entity: expected JOB, pipe/NAME, vip/NAME or node/N"
            ));
        }
        Ok(Selector {
            kind: Some(kind),
            name: Some(name.to_string()),
            metrics: Vec::new(),
            nodes: Vec::new(),
        })
    }

    /// Only these metrics.
    pub fn with_metrics(mut self, metrics: &[Metric]) -> Self {
        self.metrics = metrics.to_vec();
        self
    }

    /// Whether `key` is selected.
    pub fn matches(&self, key: &SeriesKey) -> bool {
        self.kind.is_none_or(|k| k == key.kind)
            && self.name.as_ref().is_none_or(|n| *n == key.name)
            && (self.metrics.is_empty() || self.metrics.contains(&key.metric))
            && (self.nodes.is_empty() || self.nodes.contains(&key.node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_unique_and_round_trip() {
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(Metric::from_code(m.code() as i64), Some(*m));
            assert_eq!(Metric::from_name(m.name()), Some(*m));
            assert!(Metric::ALL[..i]
                .iter()
                .all(|o| o.code() != m.code() && o.name() != m.name()));
        }
        for k in [
            EntityKind::Job,
            EntityKind::Pipe,
            EntityKind::Vip,
            EntityKind::Node,
        ] {
            assert_eq!(EntityKind::from_code(k.code() as i64), Some(k));
        }
    }

    #[test]
    fn selectors() {
        let web = Selector::parse("web").unwrap();
        let k = SeriesKey::new(1, EntityKind::Job, "web", "uplink", Metric::PipeSentBytes);
        assert!(web.matches(&k));
        assert_eq!(k.to_string(), "node1:job/web/uplink:pipe_sent");
        assert!(!Selector::parse("pipe/web").unwrap().matches(&k));
        let n = Selector::parse("node/3").unwrap();
        assert!(n.matches(&SeriesKey::new(3, EntityKind::Node, "", "", Metric::Cores)));
        assert!(!n.matches(&SeriesKey::new(2, EntityKind::Node, "", "", Metric::Cores)));
        assert!(Selector::parse("node/x").unwrap_err().contains("node id"));
        assert!(Selector::parse("disk/x")
            .unwrap_err()
            .contains("unknown entity"));
        assert!(Selector::parse("pipe/").is_err());
        assert_eq!(Unit::BytesPerSec.format(625_000.0), "5.00 Mbit/s");
        assert_eq!(Unit::Bytes.format(512.0 * 1024.0 * 1024.0), "512.0 MiB");
    }
}
