//! The pool state triggers are evaluated over: one snapshot per
//! evaluation, filled by the daemon from its status model (allocator,
//! process scheduler, director) and the node summaries every node gossips.
//! Rates are pool-wide sums over the live nodes.
//!
//! | field | from |
//! |---|---|
//! | `nodes`, `failed`, `left` | the exchange's members (alive/suspect, failed, left); cores from each node's summary |
//! | `pipe_jobs` | per job and pipe, the sum over node summaries: demand = sent + dropped (+ queued), grant = granted |
//! | `jobs` | instances = nodes whose process scheduler has the job's processes; CPU demand and grant = the scheduler's pool demand and the policy's share in cores |
//! | `pipes` | capacity from the effective policy, sent = sum of the jobs' sent rates |
//! | `alarms` | a node's insufficient-resources alarm (process scheduler); a pipe whose bookings exceed its live capacity |
//! | `vips` | the director's view: owner, members failing their health check |
//! | `exits` | processes of jobs that exited since the previous snapshot (process scheduler scans) |

use serde::{Deserialize, Serialize};

/// A pool node id (the exchange's).
pub type NodeId = u32;

/// A live node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// Id.
    pub id: NodeId,
    /// Cores its node file names.
    pub cores: f64,
}

/// A job on a pipe, pool-wide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipeJob {
    /// Job.
    pub job: String,
    /// Pipe.
    pub pipe: String,
    /// What the job would send (sent + queued + dropped), bit/s.
    pub demand_bps: u64,
    /// What the allocator granted it, bit/s.
    pub grant_bps: u64,
}

/// A job's CPU, pool-wide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// Job.
    pub job: String,
    /// Instances (nodes where it has processes).
    pub instances: u32,
    /// CPU it uses or wants, cores.
    pub cpu_demand_cores: f64,
    /// CPU its policy entitles it to, cores.
    pub cpu_grant_cores: f64,
}

/// A pipe, pool-wide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipeState {
    /// Name.
    pub name: String,
    /// Capacity, bit/s.
    pub capacity_bps: u64,
    /// Sent by all jobs, bit/s.
    pub sent_bps: u64,
}

/// A raised alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alarm {
    /// A node cannot give its jobs the CPU their policies book.
    InsufficientCpu {
        /// The node.
        node: NodeId,
    },
    /// A pipe's live capacity is below its bookings.
    InsufficientBandwidth {
        /// The pipe.
        pipe: String,
    },
}

/// A VIP service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipState {
    /// Service name.
    pub name: String,
    /// Owner (answers ARP), if any member is alive.
    pub owner: Option<NodeId>,
    /// Members failing their health check.
    pub unhealthy: Vec<NodeId>,
}

/// A process of a job that exited since the previous snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessExit {
    /// Job.
    pub job: String,
    /// Node it ran on.
    pub node: NodeId,
    /// Pid.
    pub pid: u32,
    /// Process name.
    pub comm: String,
    /// Processes of the job that exited on the node since the previous
    /// snapshot (`pid` and `comm` are the latest one's).
    pub count: u64,
}

/// Everything one evaluation looks at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolSnapshot {
    /// Live members (alive or suspect), with their cores.
    pub nodes: Vec<NodeState>,
    /// Members the exchange declared failed (tombstoned).
    pub failed: Vec<NodeId>,
    /// Members that left gracefully.
    pub left: Vec<NodeId>,
    /// Jobs on pipes.
    pub pipe_jobs: Vec<PipeJob>,
    /// Jobs' CPU and instances.
    pub jobs: Vec<JobState>,
    /// Pipes.
    pub pipes: Vec<PipeState>,
    /// Raised alarms.
    pub alarms: Vec<Alarm>,
    /// VIP services.
    pub vips: Vec<VipState>,
    /// Process exits since the previous snapshot.
    pub exits: Vec<ProcessExit>,
}

impl PoolSnapshot {
    /// Ids of the live nodes.
    pub fn live(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes.iter().map(|n| n.id)
    }

    /// Cores of the live pool.
    pub fn cores(&self) -> f64 {
        self.nodes.iter().map(|n| n.cores).sum()
    }
}
