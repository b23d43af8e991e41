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
}

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
