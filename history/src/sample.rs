//! What the control thread hands to history: once a second a [`NodeSample`] of this node, and
//! whenever the pool delivers one, a [`NodeSummary`] of another node.
//!
//! Flow quantities in a [`NodeSample`] are *cumulative counters* within one daemon run
//! (`run`): the control thread adds up what it already counts (bytes per job from the
//! workers, pipe demand and grants per 20 ms interval) and never resets them. History turns
//! them into exact per-second amounts, so a dropped sample loses no bytes: the next delta
//! covers both seconds. Every configured entity should be listed every second; one that
//! appears in the middle of a run is taken to count from zero (a job added by a reload).
//!
//! A [`NodeSummary`] is the coarse per-node view the pool gossips (the exchange entry of
//! `headroom_control::policy::summary`: rates over a window); it is stored at one-minute
//! resolution under the sending node's id, so the pool's history can be queried on any server,
//! also for a server that has since died.

use serde::{Deserialize, Serialize};

pub use headroom_control::policy::summary::NodeSummary;

use crate::time::WallTime;

/// One second of this node, as the control thread sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeSample {
    /// Wall-clock time the sample was taken.
    pub at: WallTime,
    /// Identifies the daemon run: counters are cumulative within a run and restart from zero
    /// with a new one (e.g. the start time in nanoseconds).
    pub run: u64,
    /// Wall-clock time the run started (counters were zero then).
    pub run_started: WallTime,
    /// The node.
    pub node: NodeValues,
    /// Every configured job (the default job included).
    pub jobs: Vec<JobValues>,
    /// Every pipe.
    pub pipes: Vec<PipeValues>,
    /// Every VIP service.
    pub vips: Vec<VipValues>,
}

/// Node-wide values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeValues {
    /// Cores of this server.
    pub cores: f64,
    /// CPU used on this server, cores (all processes).
    pub cpu_cores: f64,
    /// Idle share of the cores, percent.
    pub headroom_percent: f64,
    /// Information exchange: bytes sent (cumulative).
    pub exchange_tx_bytes: u64,
    /// Bytes received (cumulative).
    pub exchange_rx_bytes: u64,
    /// Datagrams sent (cumulative).
    pub exchange_tx_packets: u64,
    /// Datagrams received (cumulative).
    pub exchange_rx_packets: u64,
}

/// One job on this node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobValues {
    /// Job name.
    pub name: String,
    /// Bytes from the network (cumulative).
    pub bytes_in: u64,
    /// Bytes to the network (cumulative).
    pub bytes_out: u64,
    /// Packets from the network (cumulative).
    pub packets_in: u64,
    /// Packets to the network (cumulative).
    pub packets_out: u64,
    /// CPU used over the last second, cores.
    pub cpu_cores: f64,
    /// CPU its policy targets on this node, cores (None: no CPU policy).
    pub cpu_target_cores: Option<f64>,
    /// It used (nearly) all it was granted and wanted more.
    pub cpu_wants_more: bool,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Processes on this node.
    pub processes: u32,
    /// Open connections (flows) on this node.
    pub connections: u64,
    /// Its traffic on each pipe it uses or is booked on.
    pub pipes: Vec<JobPipeValues>,
}

/// One job on one pipe, on this node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobPipeValues {
    /// Pipe name.
    pub pipe: String,
    /// Bytes offered to the pacer: sent, queued or dropped (cumulative).
    pub demand_bytes: u64,
    /// Bytes of credit granted by the allocator (cumulative).
    pub granted_bytes: u64,
    /// Bytes sent (cumulative).
    pub sent_bytes: u64,
    /// Bytes dropped (cumulative).
    pub dropped_bytes: u64,
    /// Bytes queued now.
    pub queued_bytes: u64,
    /// The job's booking on the pipe in force, bit/s (None: not booked).
    pub booked_bps: Option<u64>,
}

/// One pipe, this node's part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipeValues {
    /// Pipe name.
    pub name: String,
    /// Capacity, bit/s.
    pub capacity_bps: u64,
    /// Bytes offered by this node's jobs (cumulative).
    pub demand_bytes: u64,
    /// Bytes granted to this node (cumulative).
    pub granted_bytes: u64,
    /// Bytes sent (cumulative).
    pub sent_bytes: u64,
    /// Bytes dropped (cumulative).
    pub dropped_bytes: u64,
    /// Bytes queued now.
    pub queued_bytes: u64,
    /// Nodes in the last allocation.
    pub nodes: u32,
}

/// One VIP service, as placed by this node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VipValues {
    /// Service name.
    pub name: String,
    /// New connections placed (cumulative).
    pub new_connections: u64,
    /// Packets (cumulative).
    pub packets: u64,
    /// Bytes (cumulative).
    pub bytes: u64,
    /// Connections placed per node (cumulative): (node id, count).
    pub placements: Vec<(u32, u64)>,
    /// Members that may receive flows now.
    pub serving_members: u32,
    /// Members whose health check fails now.
    pub unhealthy_members: u32,
}
