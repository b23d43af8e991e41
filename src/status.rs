//! The status document `headroomctl status` prints (JSON on the wire).

use serde::{Deserialize, Serialize};

/// Everything the daemon reports about itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// Node id.
    pub node_id: u16,
    /// Node name.
    pub node_name: String,
    /// Config file in use.
    pub config_file: String,
    /// Seconds since start.
    pub uptime_secs: f64,
    /// Successful reloads.
    pub reloads_ok: u64,
    /// Rejected reloads (the previous config kept running).
    pub reloads_failed: u64,
    /// Last reload error, if the last reload failed.
    pub last_reload_error: Option<String>,
    /// Attached interfaces.
    pub interfaces: Vec<InterfaceStatus>,
    /// Workers.
    pub workers: Vec<WorkerStatus>,
    /// Jobs with their cumulative counters (summed over workers).
    pub jobs: Vec<JobStatus>,
    /// Flows currently in the flow tables (all workers).
    pub flows: u64,
    /// Process detection and CPU shares (absent when no job has process rules).
    pub cpu: Option<CpuStatus>,
    /// Shared pipes.
    pub pipes: Vec<crate::bandwidth::PipeStatus>,
    /// The information exchange and membership (absent when running alone).
    pub exchange: Option<crate::pool::ExchangeStatus>,
    /// Flow director (absent when no VIP service is configured).
    #[serde(default)]
    pub director: Option<DirectorStatus>,
}

// --- flow director ---

/// Flow director and ARP interceptor state of this node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DirectorStatus {
    /// Whether the workers intercept VIP traffic (the local host MAC is known).
    pub ready: bool,
    /// MAC this node answers VIP ARP with (its host's MAC on the wire).
    pub local_mac: String,
    /// Table versions published.
    pub tables_published: u64,
    /// Live pool members the tables were built from.
    pub alive: Vec<u32>,
    /// VIP addresses this node owns (answers ARP for).
    pub owned_vips: Vec<String>,
    /// Services.
    pub services: Vec<VipStatus>,
    /// Per pool node.
    pub nodes: Vec<DirectorNodeStatus>,
    /// Node-wide counters summed over workers: (name, value).
    pub counters: Vec<(String, u64)>,
}

impl DirectorStatus {
    /// A counter by name (0 if absent).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// A service by name.
    pub fn service(&self, name: &str) -> Option<&VipStatus> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// One VIP service.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VipStatus {
    /// Name.
    pub name: String,
    /// Virtual address.
    pub vip: String,
    /// "tcp" or "udp".
    pub protocol: String,
    /// Current owner (answers ARP), if any member is alive.
    pub owner: Option<u32>,
    /// Nodes that may receive flows (alive, member, healthy).
    pub serving: Vec<u32>,
    /// Members whose health check fails.
    pub unhealthy: Vec<u32>,
    /// True when no member is healthy and health is ignored.
    pub degraded: bool,
    /// Packets placed by this node (as owner).
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// New flows placed by this node.
    pub new_flows: u64,
    /// New flows placed by a sticky entry.
    pub sticky_hits: u64,
    /// Placements on this node.
    pub placed_local: u64,
    /// Placements on other nodes.
    pub placed_remote: u64,
    /// Packets encapsulated to other nodes.
    pub encapsulated: u64,
    /// Flow placements per node: (node, flows).
    pub placements: Vec<(u32, u64)>,
}

/// One pool node as the director sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DirectorNodeStatus {
    /// Node id.
    pub node: u32,
    /// Host-stack address (encapsulation endpoint).
    pub host_address: String,
    /// Its MAC, once known.
    pub mac: Option<String>,
    /// Alive in the membership view.
    pub alive: bool,
    /// Flows this node placed on it (all services).
    pub placements: u64,
}

// --- end flow director ---

/// Process scheduler state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuStatus {
    /// Enforcement backend (e.g. "cgroup-v1 at /sys/fs/cgroup/cpu/headroom").
    pub backend: String,
    /// Cores of this server.
    pub local_cores: f64,
    /// Cores of the live pool.
    pub pool_cores: f64,
    /// The insufficient-resources alarm, with its reason when raised.
    pub insufficient_resources: Option<String>,
    /// Jobs (instances on this server).
    pub jobs: Vec<CpuJobStatus>,
    /// Processes that match no job.
    pub unmanaged_processes: usize,
    /// CPU they use, cores.
    pub unmanaged_cores: f64,
}

/// One job's instance on this server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuJobStatus {
    /// Job name.
    pub name: String,
    /// Its processes.
    pub pids: Vec<u32>,
    /// CPU used over the last interval, cores.
    pub cores_used: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Entitlement on this server, percent.
    pub target_percent: f64,
    /// Weight written to the kernel (cpu.shares / cpu.weight / nice).
    pub weight: u32,
    /// Instances of the job in the pool (pool policies).
    pub pool_instances: usize,
}

/// One attached interface.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InterfaceStatus {
    /// Name.
    pub name: String,
    /// "outer" or "inner".
    pub role: String,
    /// "native" or "generic".
    pub xdp_mode: String,
    /// XDP verdict counters: (name, packets, bytes).
    pub verdicts: Vec<(String, u64, u64)>,
}

/// One worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Index.
    pub index: usize,
    /// Pinned core.
    pub core: Option<usize>,
    /// Queue served.
    pub queue: u32,
    /// Zero-copy per side (outer, inner).
    pub zero_copy: [bool; 2],
    /// Frames received per side.
    pub rx_packets: [u64; 2],
    /// Bytes received per side.
    pub rx_bytes: [u64; 2],
    /// Frames transmitted per side.
    pub tx_packets: [u64; 2],
    /// Bytes transmitted per side.
    pub tx_bytes: [u64; 2],
    /// Drops by reason: (reason, count).
    pub drops: Vec<(String, u64)>,
    /// Kernel socket statistics per side: (name, outer, inner).
    pub socket: Vec<(String, u64, u64)>,
    /// Frames in the UMEM.
    pub frames_total: usize,
    /// Frames accounted for (free + rings + held); equals total when balanced.
    pub frames_accounted: usize,
    /// Frame ownership violations (0 unless there is a bug).
    pub frame_violations: u64,
    /// Generation of the flow rules the worker runs (1 at start, +1 per applied reload).
    pub rules_generation: u64,
    /// Frames the parser rejected (forwarded anyway, counted in the default job).
    pub parse_errors: u64,
}

/// One job's traffic counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobStatus {
    /// Name.
    pub name: String,
    /// Packets inbound (network to host).
    pub packets_in: u64,
    /// Bytes inbound.
    pub bytes_in: u64,
    /// Packets outbound (host to network).
    pub packets_out: u64,
    /// Bytes outbound.
    pub bytes_out: u64,
    /// Active flows.
    pub flows: u64,
}

impl Status {
    /// A job by name.
    pub fn job(&self, name: &str) -> Option<&JobStatus> {
        self.jobs.iter().find(|j| j.name == name)
    }
}
