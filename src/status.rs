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
