//! The one status model: what the daemon reports about itself. The agent
//! assembles it ([`crate::Agent::status`]); `headroomctl` prints it as text
//! or JSON, the daemon's metrics endpoint renders it as Prometheus metrics.

use serde::{Deserialize, Serialize};

mod text;

pub use text::render_pool;

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
    /// The response-time trackers' counters (all workers; empty while no
    /// job has a goal): connections, capacity, table_full, replies_unseen,
    /// expired, syn_retransmits, retransmits, untracked_segments.
    #[serde(default)]
    pub response_tracker: Vec<(String, u64)>,
    /// Process detection and CPU shares (absent when no job has process rules).
    pub cpu: Option<CpuStatus>,
    /// Shared pipes.
    pub pipes: Vec<PipeStatus>,
    /// Peer bandwidth entries that did not decode (dropped).
    #[serde(default)]
    pub pipe_entries_rejected: u64,
    /// The information exchange and membership (absent when running alone).
    pub exchange: Option<ExchangeStatus>,
    /// Flow director (absent when no VIP service is configured).
    #[serde(default)]
    pub director: Option<DirectorStatus>,
    /// The pool policy (absent when running alone).
    #[serde(default)]
    pub policy: Option<PolicyStatus>,
    /// Every pool member with its latest gossiped summary (empty when
    /// running alone).
    #[serde(default)]
    pub pool: Vec<PoolNodeStatus>,
    /// `"on"`, or `"off"` in monitor-only mode (`[pool] enforcement`):
    /// nothing paced, no CPU shares set, everything still measured.
    #[serde(default)]
    pub enforcement: String,
    /// The monitoring history's writer (absent when `[history] enabled =
    /// false`).
    #[serde(default)]
    pub history: Option<headroom_history::HistoryStatus>,
    /// Triggers, schedules and failure policies.
    #[serde(default)]
    pub automation: Option<crate::automation::AutomationStatus>,
    /// headroomd's own memory.
    #[serde(default)]
    pub memory: Option<MemoryStatus>,
    /// Version of this document's layout ([`STATUS_SCHEMA`]).
    #[serde(default)]
    pub schema_version: u32,
}

/// This server's CPU as the process scheduler measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuUse {
    /// Cores of the server (0: not measured, no process scheduler).
    pub cores: f64,
    /// Cores the jobs used.
    pub jobs: f64,
    /// Cores everything used (jobs and unmanaged processes).
    pub used: f64,
}

impl CpuUse {
    /// What the jobs leave of the cores, 0..1 (headroomd's own threads and
    /// unmanaged processes are not the pool's to place around); 0 when not
    /// measured.
    pub fn headroom(&self) -> f64 {
        if self.cores > 0.0 {
            (1.0 - self.jobs / self.cores).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

impl Status {
    /// This server's CPU use (all zero without the process scheduler).
    pub fn cpu_use(&self) -> CpuUse {
        self.cpu.as_ref().map_or(CpuUse::default(), |c| {
            let jobs = c.jobs.iter().map(|j| j.cores_used).sum::<f64>();
            CpuUse {
                cores: c.local_cores,
                jobs,
                used: jobs + c.unmanaged_cores,
            }
        })
    }
}

/// The status document's layout version: 2 added `policy` and `pool`, 3
/// `enforcement`, `history` and the pipes' `totals`.
pub const STATUS_SCHEMA: u32 = 3;

/// One pool member, from its gossiped summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PoolNodeStatus {
    /// Node id.
    pub node: u16,
    /// Membership state: alive, suspect, failed, left.
    pub state: String,
    /// How long ago its summary was updated here, ms.
    pub age_ms: Option<u64>,
    /// Why its summary could not be read.
    pub error: Option<String>,
    /// The window its rates are over, ms.
    pub window_ms: u32,
    /// Policy version it runs.
    pub policy: Option<String>,
    /// Its cores.
    pub cores: u32,
    /// CPU it uses (jobs and unmanaged processes), cores.
    pub cpu_cores: f64,
    /// Idle share of its cores, percent.
    pub headroom_percent: f64,
    /// Its jobs, busiest first (at most what fits a summary).
    pub jobs: Vec<PoolJobStatus>,
    /// Jobs it has in all.
    pub jobs_total: u32,
    /// Its VIP services.
    pub vips: Vec<PoolVipStatus>,
    /// VIP services it has in all.
    pub vips_total: u32,
}

/// One job on one pool member.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PoolJobStatus {
    /// Job name.
    pub name: String,
    /// Received, Mbit/s.
    pub rx_mbit_s: f64,
    /// Sent, Mbit/s.
    pub tx_mbit_s: f64,
    /// CPU, cores.
    pub cpu_cores: f64,
    /// Open flows.
    pub connections: u32,
    /// Its use of its pipe.
    pub pipe: Option<PoolPipeUse>,
}

/// A job's use of its pipe on one member, Mbit/s.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PoolPipeUse {
    /// Pipe.
    pub pipe: String,
    /// Booked.
    pub booked_mbit_s: f64,
    /// Granted to this member.
    pub granted_mbit_s: f64,
    /// Sent.
    pub sent_mbit_s: f64,
    /// Dropped by the pacer.
    pub dropped_mbit_s: f64,
}

/// A VIP service on one member.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PoolVipStatus {
    /// Service name.
    pub name: String,
    /// Flows it placed (as owner), all members.
    pub placements: u32,
    /// New flows it placed.
    pub flows: u32,
    /// unknown, up, down, draining.
    pub health: String,
}

/// The pool policy as this node sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PolicyStatus {
    /// The version this node runs ("v3"; None: the pool has none, the node
    /// file's sections are in force).
    pub active: Option<String>,
    /// The same with its term ("v3 (term 1 of node 1)").
    pub active_id: Option<String>,
    /// Whether this node enforces it (it has run the pool's current version).
    pub enforcing: bool,
    /// Every live node's version.
    pub nodes: Vec<NodePolicyStatus>,
    /// This node's last refusal of a version, with why.
    pub rejected: Option<String>,
    /// Counters (name, value); every dropped message and refusal is one.
    pub counters: Vec<(String, u64)>,
}

/// One node's policy version.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodePolicyStatus {
    /// Node id.
    pub node: u16,
    /// Version it runs.
    pub active: Option<String>,
    /// It runs the pool's current version.
    pub current: bool,
    /// Its last refusal.
    pub rejected: Option<String>,
}

/// One pipe.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PipeStatus {
    /// Name.
    pub name: String,
    /// Capacity, bits/s.
    pub capacity_bps: u64,
    /// Directions paced: "outbound", "inbound" or "both".
    #[serde(default)]
    pub direction: String,
    /// Whether the pacer's current grants pace (false in monitor-only
    /// mode, once the first unpaced grants are installed).
    #[serde(default)]
    pub paced: bool,
    /// This node's credit for the interval (booked + unbooked), bytes.
    pub node_credit: u64,
    /// Immediate credit, bytes.
    pub immediate: u64,
    /// Pool-wide booked demand, bytes per interval.
    pub pool_booked: u64,
    /// Pool-wide unbooked demand.
    pub pool_unbooked: u64,
    /// Live nodes whose demand went into the last allocation (this one included).
    pub nodes: usize,
    /// Per job: (name, credit bytes, sent bytes last interval, queued bytes, dropped bytes last interval).
    pub jobs: Vec<(String, u64, u64, u64, u64)>,
    /// Per job, bytes on this pipe on this node since start.
    #[serde(default)]
    pub totals: Vec<PipeJobTotals>,
}

/// One job's bytes on one pipe on this node since the daemon started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PipeJobTotals {
    /// Job.
    pub job: String,
    /// Offered to the pacer (sent, queued or dropped).
    pub demand_bytes: u64,
    /// Credit granted by the allocator (monitor-only: what it would grant).
    pub granted_bytes: u64,
    /// Sent.
    pub sent_bytes: u64,
    /// Dropped.
    pub dropped_bytes: u64,
}

/// One member of the pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Node id.
    pub id: u32,
    /// "alive", "suspect", "failed", "left" ("self" for this node).
    pub state: String,
    /// Exchange address.
    pub addr: String,
    /// Its last datagram verified only under the rotation key: it signs
    /// with the other key of a rotation.
    #[serde(default)]
    pub rotation_key: bool,
}

/// The information exchange.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExchangeStatus {
    /// Master (lowest live id).
    pub master: u32,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Datagrams that passed authentication and parsing.
    pub datagrams_accepted: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received (before any check).
    #[serde(default)]
    pub bytes_received: u64,
    /// Datagrams dropped: wrong MAC (wrong key or forged).
    pub bad_mac: u64,
    /// Datagrams dropped: replayed.
    pub replayed: u64,
    /// Datagrams dropped: malformed, truncated, bad magic or version.
    pub malformed: u64,
    /// Membership events seen (joins, leaves, failures, master changes).
    #[serde(default)]
    pub membership_events: u64,
    /// Members declared failed (heartbeat silent for the failure timeout).
    #[serde(default)]
    pub failures: u64,
    /// Failure checks that kept a silent member suspect because this node
    /// was losing exchange datagrams on receive.
    #[serde(default)]
    pub failures_held: u64,
    /// The receive thread's counters: pre-filter rejections by reason and
    /// kernel drops of a full receive buffer (None: not receiving on a
    /// thread, e.g. in simulation).
    #[serde(default)]
    pub receive: Option<headroom_control::exchange::udp::ReceiverStats>,
    /// Live nodes, this one included.
    #[serde(default)]
    pub live_nodes: usize,
    /// Members.
    pub members: Vec<MemberStatus>,
    /// Id of the key this node signs with (a hash, not the key).
    #[serde(default)]
    pub key_id: String,
    /// Id of the rotation key it also accepts, during a key rotation.
    #[serde(default)]
    pub rotation_key_id: Option<String>,
    /// Datagrams that verified under the rotation key.
    #[serde(default)]
    pub rotation_key_verified: u64,
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

    /// Text lines for `headroomctl status`.
    pub fn render_text(&self, out: &mut String) {
        use std::fmt::Write;
        let d = self;
        let list = |v: &[u32]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            }
        };
        let _ = writeln!(
            out,
            "director: {}, mac {}, servers alive: {}, owns VIPs: {}, tables published {}",
            if d.ready { "ready" } else { "not ready" },
            d.local_mac,
            list(&d.alive),
            if d.owned_vips.is_empty() {
                "none".to_string()
            } else {
                d.owned_vips.join(", ")
            },
            d.tables_published
        );
        for s in &d.services {
            let placements: Vec<String> = s
                .placements
                .iter()
                .map(|(n, c)| format!("server {n} {c}"))
                .collect();
            let _ = writeln!(
                out,
                "  vip {} {} {}: owner {}, serving {}, unhealthy {}{}; placed here: {} packets, {} bytes, {} new flows ({} sticky), {} local, {} remote, {} encapsulated; placements: {}",
                s.name,
                s.vip,
                s.protocol,
                s.owner.map_or("none".to_string(), |o| format!("server {o}")),
                list(&s.serving),
                list(&s.unhealthy),
                if s.degraded { " DEGRADED" } else { "" },
                s.packets,
                s.bytes,
                s.new_flows,
                s.sticky_hits,
                s.placed_local,
                s.placed_remote,
                s.encapsulated,
                if placements.is_empty() { "none".to_string() } else { placements.join(", ") }
            );
        }
        for n in &d.nodes {
            let _ = writeln!(
                out,
                "  node {} host {} mac {} {} placements {}",
                n.node,
                n.host_address,
                n.mac.as_deref().unwrap_or("?"),
                if n.alive { "alive" } else { "down" },
                n.placements
            );
        }
        let c: Vec<String> = d
            .counters
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let _ = writeln!(out, "  {}", c.join(" "));
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
    /// Its processes that exited here since the daemon started.
    pub exits: u64,
    /// The latest exited one: pid and name.
    pub last_exit: Option<(u32, String)>,
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
    /// Driver ("veth", ...), empty if unknown.
    #[serde(default)]
    pub driver: String,
    /// MTU, bytes.
    #[serde(default)]
    pub mtu: u32,
    /// Receive queues the interface had at start.
    #[serde(default)]
    pub rx_queues: u32,
    /// Receive queues served by a worker.
    #[serde(default)]
    pub served_queues: Vec<u32>,
    /// Receive queues now, if they changed since start (`ethtool -L`): the
    /// new queues are served after a restart.
    #[serde(default)]
    pub rx_queues_now: Option<u32>,
    /// Whether partial checksums of frames received here are completed.
    #[serde(default)]
    pub completes_checksums: bool,
    /// Whether decided flows received here take the XDP fast path.
    #[serde(default)]
    pub fast_path: bool,
    /// Why the fast path is off for frames received here (empty when on).
    #[serde(default)]
    pub fast_path_off_reason: String,
    /// Managed frames that took the slow path, by reason: (reason, packets).
    #[serde(default)]
    pub fast_path_misses: Vec<(String, u64)>,
    /// Partial checksums the fast path completed on frames received here.
    #[serde(default)]
    pub fast_path_checksums_completed: u64,
    /// VIP frames the fast path encapsulated towards their serving node.
    #[serde(default)]
    pub fast_path_encapsulated: u64,
    /// Encapsulated frames the fast path decapsulated for the host.
    #[serde(default)]
    pub fast_path_decapsulated: u64,
    /// Flows in this interface's fast-path table at the last sweep.
    #[serde(default)]
    pub fast_path_entries: u64,
    /// The table's size (`[workers] fast_path_flows`); beyond it the least
    /// recently used flow's entry makes room (that flow returns to the workers).
    #[serde(default)]
    pub fast_path_capacity: u64,
    /// Entries removed for being idle longer than the classifier's idle timeout.
    #[serde(default)]
    pub fast_path_expired: u64,
}

impl InterfaceStatus {
    /// A verdict counter's packets by name.
    pub fn verdict(&self, name: &str) -> u64 {
        self.verdicts
            .iter()
            .find(|v| v.0 == name)
            .map_or(0, |v| v.1)
    }

    /// Share of the managed frames that bypassed the workers because their
    /// queue had no socket (0..=1).
    pub fn bypassed_share(&self) -> f64 {
        let bypass = self.verdict("pass_no_xsk");
        let total = bypass + self.verdict("redirect") + self.verdict("redirect_multi");
        if total == 0 {
            0.0
        } else {
            bypass as f64 / total as f64
        }
    }
}

/// One worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Index.
    pub index: usize,
    /// Pinned core.
    pub core: Option<usize>,
    /// Queues served on the outer interface.
    pub queues_outer: Vec<u32>,
    /// Queues served on the inner interface.
    pub queues_inner: Vec<u32>,
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
    /// Multi-buffer packets received per side (jumbo frames, aggregates).
    #[serde(default)]
    pub rx_multi_buffer: [u64; 2],
    /// Partial TCP/UDP checksums completed, per receiving side.
    #[serde(default)]
    pub checksums_completed: [u64; 2],
    /// Aggregates cut into segments, and segments made of them.
    #[serde(default)]
    pub segmented: [u64; 2],
    /// Fast-path entries written, and refused by the kernel.
    #[serde(default)]
    pub fast_installs: [u64; 2],
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
    /// Removed by a reload: its counters are its totals until a restart
    /// (the metrics keep them too).
    #[serde(default)]
    pub removed: bool,
    /// Response times, for a job with a goal (measured by the workers).
    #[serde(default)]
    pub response: Option<ResponseStatus>,
}

/// headroomd's own memory, for watching it over weeks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStatus {
    /// Resident set, bytes (`/proc/self/statm`; includes the UMEM frames
    /// the kernel has touched).
    pub rss_bytes: u64,
    /// What SQLite holds (the history store's page cache and statements;
    /// bounded by its cache size).
    pub sqlite_bytes: u64,
}

/// A job's response times since the daemon started, as its workers
/// measured them passively: request in (first new data byte) to reply out
/// (first new data byte), once per turn of a TCP connection opened from the
/// network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseStatus {
    /// The goal, as written (`90% within 50ms`).
    pub goal: String,
    /// How far from the goal: the measured value at the goal's percentile
    /// (or the mean) over the goal's time; 1.0 is exactly met, above 1
    /// misses it. None before the first answered request.
    pub index: Option<f64>,
    /// Requests (turns) seen.
    pub requests: u64,
    /// Requests answered (each gives one response time).
    pub answered: u64,
    /// Requests that ended without a reply (reset, closed, idle).
    pub unanswered: u64,
    /// Median response time, ms.
    pub p50_ms: Option<f64>,
    /// 90th percentile, ms.
    pub p90_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Mean, ms.
    pub mean_ms: Option<f64>,
    /// Connections set up (SYN in to SYN-ACK out).
    pub setups: u64,
    /// Median connection setup time, ms.
    pub setup_p50_ms: Option<f64>,
}

impl Status {
    /// A job by name.
    pub fn job(&self, name: &str) -> Option<&JobStatus> {
        self.jobs.iter().find(|j| j.name == name)
    }
}
