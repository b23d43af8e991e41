//! The configuration schema. Every field is documented in
//! `config/headroom.toml`; defaults live next to the fields here.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{
    deprecated,
    error::ConfigError,
    locate::{line_of, render, Seg},
    net::FlowRule,
};

/// The whole configuration of one server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This server's identity in the pool.
    pub node: NodeConfig,
    /// The interfaces Headroom sits between.
    pub interfaces: InterfacesConfig,
    /// Worker threads and AF_XDP ring geometry.
    #[serde(default)]
    pub workers: WorkersConfig,
    /// Flow table sizing and expiry.
    #[serde(default)]
    pub classifier: ClassifierConfig,
    /// Control thread timers and the local control socket.
    #[serde(default)]
    pub control: ControlConfig,
    /// Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Information exchange with the other servers of the pool.
    #[serde(default)]
    pub exchange: ExchangeConfig,
    /// Shared pipes (paths whose capacity the pool shares).
    #[serde(default, rename = "pipe")]
    pub pipes: Vec<PipeConfig>,
    /// Jobs (applications): what traffic and processes belong to them and their policies.
    #[serde(default, rename = "job")]
    pub jobs: Vec<JobConfig>,
    /// Process detection and CPU-share enforcement.
    #[serde(default)]
    pub cpu: CpuConfig,
    /// Embedded monitoring history.
    #[serde(default)]
    pub history: crate::history::HistoryConfig,
    /// The web console.
    #[serde(default)]
    pub console: crate::console::ConsoleConfig,
    // --- flow director (VIP services) ---
    /// Load-balanced VIP services (`[[vip]]`).
    #[serde(default, rename = "vip")]
    pub vips: Vec<crate::vip::VipService>,
    /// Node-wide flow director settings (`[director]`).
    #[serde(default)]
    pub director: crate::vip::DirectorSettings,
    // --- end flow director ---
    /// Putting the host stack behind headroomd on a real server.
    #[serde(default)]
    pub deploy: crate::deploy::DeployConfig,
    // --- triggers, schedules, variants (config/src/triggers.rs) ---
    /// Pool-wide settings of the policy (`[pool]`: time zone of schedules).
    #[serde(default)]
    pub pool: crate::triggers::PoolSettings,
    /// Triggers (`[[trigger]]`).
    #[serde(default, rename = "trigger")]
    pub triggers: Vec<crate::triggers::TriggerConfig>,
    /// Schedules (`[[schedule]]`).
    #[serde(default, rename = "schedule")]
    pub schedules: Vec<crate::triggers::ScheduleConfig>,
    /// Policy variants (`[[variant]]`).
    #[serde(default, rename = "variant")]
    pub variants: Vec<crate::triggers::VariantConfig>,
    /// Node file: what triggers may run here (`[actions]`).
    #[serde(default)]
    pub actions: crate::triggers::ActionsConfig,
    // --- end triggers ---
    /// Deprecation warnings of the file this was read from (`file:line:
    /// field: ...`), for the daemon to log.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `[node]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique id of this server in the pool (1..=65535).
    pub id: u16,
    /// Human-readable name (defaults to `node-<id>`).
    #[serde(default)]
    pub name: Option<String>,
    /// The server's own IPv4 address on the outer network: the information
    /// exchange runs on it and its datagrams bypass the workers.
    pub address: Ipv4Addr,
    /// Which traffic of the node address bypasses the workers.
    #[serde(default)]
    pub bypass: Bypass,
}

/// Which traffic to and from `[node] address` the XDP program hands to the
/// kernel instead of the workers.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Bypass {
    /// Only the information exchange's UDP (address:exchange.port): the node
    /// address may be the host stack's own address, whose other traffic is
    /// classified, paced and directed like any other.
    #[default]
    Exchange,
    /// Everything to or from the address: a dedicated node (management)
    /// address that the host stack behind `inner` does not own.
    Address,
}

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic mode with a warning.
    #[default]
    Auto,
    /// Native mode only: fail if the driver lacks XDP support.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// Whether AF_XDP sockets use zero-copy.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ZeroCopy {
    /// Try zero-copy, fall back to copy mode.
    #[default]
    Auto,
    /// Zero-copy only.
    On,
    /// Copy mode only.
    Off,
}

/// Whether decided flows take the XDP fast path.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FastPath {
    /// On towards each interface that is known to take XDP frames (a NIC, or
    /// a veth whose peer in this namespace has GRO or XDP on); off otherwise.
    #[default]
    Auto,
    /// On in both directions (the operator vouches that both interfaces'
    /// peers take XDP frames; headroomd still turns a direction off if the
    /// kernel counts redirect errors on it).
    On,
    /// Every frame goes through the workers.
    Off,
}

/// `[interfaces]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InterfacesConfig {
    /// The network-side interface (towards the switch).
    pub outer: String,
    /// The host-side interface (towards the server's own stack).
    pub inner: String,
    /// XDP attach mode.
    #[serde(default)]
    pub xdp_mode: XdpMode,
}

/// `[workers]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// CPU cores to pin one worker each to.
    pub cores: Vec<usize>,
    /// Receive queues served on both interfaces, spread over the workers
    /// (default: every queue each interface has).
    pub queues: Option<Vec<u32>>,
    /// Start even if the listed `queues` leave some receive queue of an
    /// interface without a worker (its frames then pass to the kernel path,
    /// unclassified; status shows the share).
    pub allow_unserved_queues: bool,
    /// Frames moved per ring operation.
    pub batch_size: u32,
    /// Descriptors in each RX and TX ring (power of two).
    pub ring_size: u32,
    /// Descriptors in each fill and completion ring (power of two).
    pub fill_size: u32,
    /// UMEM frame size in bytes (2048 or 4096).
    pub frame_size: u32,
    /// UMEM frames per worker (shared by the worker's sockets on both interfaces).
    pub frame_count: u32,
    /// Zero-copy policy.
    pub zero_copy: ZeroCopy,
    /// XDP fast path for decided flows.
    pub fast_path: FastPath,
    /// Decided flows the fast path holds per interface (an LRU table).
    pub fast_path_flows: u32,
    /// Most of the machine's RAM, percent, that what the dataplane
    /// allocates at start (UMEM, rings, flow tables, fast-path tables) may
    /// take; a configuration that needs more is refused before anything
    /// is attached.
    pub max_memory_share: u8,
    /// How long an idle worker sleeps in poll() before re-checking.
    #[serde(with = "humantime_serde")]
    pub poll_timeout: Duration,
    /// How often workers publish accounting to the control thread.
    #[serde(with = "humantime_serde")]
    pub publish_interval: Duration,
    /// Largest burst a paced job may send at once, as time at its rate
    /// (credit beyond it is not carried over within an interval).
    #[serde(with = "humantime_serde")]
    pub pacer_burst: Duration,
    /// Longest a frame may wait in a pacer queue before new frames of its job
    /// are dropped instead of queued.
    #[serde(with = "humantime_serde")]
    pub pacer_max_queue_delay: Duration,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            cores: vec![0],
            queues: None,
            allow_unserved_queues: false,
            batch_size: 64,
            ring_size: 2048,
            fill_size: 4096,
            frame_size: 4096,
            frame_count: 8192,
            zero_copy: ZeroCopy::Auto,
            fast_path: FastPath::Auto,
            fast_path_flows: 65536,
            max_memory_share: 50,
            poll_timeout: Duration::from_millis(50),
            publish_interval: Duration::from_millis(100),
            pacer_burst: Duration::from_millis(2),
            pacer_max_queue_delay: Duration::from_millis(10),
        }
    }
}

impl WorkersConfig {
    /// Assigns the receive queues of an interface with `available` queues to
    /// the workers: queue q goes to worker (position of q) mod workers. With
    /// no `queues` list every queue is served.
    pub fn assign_queues(&self, available: u32) -> Vec<Vec<u32>> {
        let mut out = vec![Vec::new(); self.cores.len().max(1)];
        let served: Vec<u32> = match &self.queues {
            Some(q) => {
                let mut q: Vec<u32> = q.iter().copied().filter(|&q| q < available).collect();
                q.sort_unstable();
                q
            }
            None => (0..available).collect(),
        };
        let n = out.len();
        for (i, q) in served.into_iter().enumerate() {
            out[i % n].push(q);
        }
        out
    }
}

/// `[classifier]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierConfig {
    /// Flow-table capacity per worker; flows beyond it are still counted per job.
    pub flow_capacity: usize,
    /// A flow idle this long is expired.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self {
            flow_capacity: 65536,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// `[control]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Unix socket `headroomctl` talks to.
    pub socket: PathBuf,
    /// High-frequency interval (exchange + allocation), 10ms..=100ms.
    #[serde(with = "humantime_serde")]
    pub high_freq_interval: Duration,
    /// Low-frequency interval (membership, process scan, sampling).
    #[serde(with = "humantime_serde")]
    pub low_freq_interval: Duration,
    /// Group (name or numeric id) whose members may run read-only commands
    /// (`headroomctl status`) on the control socket: the socket is then
    /// mode 0660 and owned by this group. Commands that change the daemon
    /// (`reload`) stay root's. Absent (the default): mode 0600, root only.
    pub group: Option<String>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/headroom/headroomd.sock"),
            high_freq_interval: Duration::from_millis(20),
            low_freq_interval: Duration::from_secs(2),
            group: None,
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint, e.g. "127.0.0.1:7947"; none = disabled.
    pub listen: Option<SocketAddr>,
}

/// `[exchange]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeConfig {
    /// UDP port of the information exchange on `node.address`.
    pub port: u16,
    /// Seed peers, `"id@ip:port"`, used to join the pool.
    pub peers: Vec<String>,
    /// File holding the pool key (at least 16 bytes); none = exchange disabled.
    pub key_file: Option<PathBuf>,
    /// During a key rotation, a second pool key accepted but never signed
    /// with (the next key, or the previous one).
    pub rotation_key_file: Option<PathBuf>,
    /// A peer silent this long is declared failed.
    #[serde(with = "humantime_serde")]
    pub failure_timeout: Duration,
    /// Largest datagram payload, bytes.
    pub mtu: u16,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            port: 7946,
            peers: Vec::new(),
            key_file: None,
            rotation_key_file: None,
            failure_timeout: Duration::from_secs(2),
            mtu: 1400,
        }
    }
}

/// `[[pipe]]`: a path whose capacity all servers of the pool share.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipeConfig {
    /// Name jobs refer to in bookings.
    pub name: String,
    /// Capacity, e.g. "100Mbit", "1Gbit", "500kbit" or bits/s as an integer.
    pub capacity: Rate,
    /// Share of spare capacity handed out as immediate credit, percent (0 = always queue,
    /// 100 = always take a chance).
    #[serde(default = "default_immediate_share")]
    pub immediate_share: u8,
    /// Traffic this pipe carries: frames whose remote address (the destination of outbound
    /// frames, the source of inbound ones) is in this prefix; none: every remote address.
    #[serde(default)]
    pub remote: Option<crate::net::IpPrefix>,
    /// Which directions the pipe paces: "out" (host to network, the default), "in" (network
    /// to host: downloads) or "both" (the two share the capacity).
    #[serde(default)]
    pub direction: crate::net::PipeDirection,
}

fn default_immediate_share() -> u8 {
    50
}

/// A rate: absolute bits/s or a percentage of a pipe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Bits per second.
    Bps(u64),
    /// Percent of the pipe's capacity.
    Percent(f64),
}

impl Rate {
    /// Bits/s given the capacity a percentage refers to.
    pub fn bps(&self, of_capacity: u64) -> u64 {
        match *self {
            Rate::Bps(b) => b,
            Rate::Percent(p) => (of_capacity as f64 * p / 100.0).round() as u64,
        }
    }
}

/// As written in the file: "40%", "100Mbit", "1.5Gbit".
impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Rate::Bps(b) => f.write_str(&crate::validate::human_bps(b)),
            Rate::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("invalid percentage {s:?}"))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("percentage {s:?} is outside 0..100"));
            }
            return Ok(Rate::Percent(v));
        }
        let lower = t.to_ascii_lowercase();
        let (num, mult) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
            .iter()
            .find_map(|(suf, m)| lower.strip_suffix(suf).map(|n| (n.trim().to_string(), *m)))
            .unwrap_or((lower.clone(), 1.0));
        let v: f64 = num.parse().map_err(|_| {
            format!("invalid rate {s:?}: expected e.g. \"100Mbit\", \"1.5Gbit\", \"500kbit\" (bookings may also be \"40%\")")
        })?;
        if !(v.is_finite() && v >= 0.0) {
            return Err(format!("invalid rate {s:?}"));
        }
        Ok(Rate::Bps((v * mult).round() as u64))
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(b) => Ok(Rate::Bps(b)),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A job's guaranteed rate on a pipe.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BookingConfig {
    /// The pipe's name.
    pub pipe: String,
    /// Guaranteed rate: absolute ("20Mbit") or percent of the pipe ("40%").
    pub rate: Rate,
    /// Optional ceiling the job never exceeds on this pipe.
    #[serde(default)]
    pub cap: Option<Rate>,
}

/// `[[job]]`: an application.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Unique name.
    pub name: String,
    /// Flow rules: traffic matching any of them belongs to this job.
    #[serde(default, rename = "flow")]
    pub flow_rules: Vec<FlowRule>,
    /// Bookings on shared pipes.
    #[serde(default, rename = "booking")]
    pub bookings: Vec<BookingConfig>,
    /// Process rules: processes matching any of them belong to this job.
    #[serde(default, rename = "process")]
    pub process_rules: Vec<crate::process::ProcessRule>,
    /// Children of a matched process join the job even if they match no rule.
    #[serde(default = "default_true")]
    pub include_children: bool,
    /// CPU policy (share of each server, or of the pool), optionally capped.
    #[serde(default)]
    pub cpu: Option<crate::process::CpuPolicy>,
    /// Its policy while the pool has lost nodes (`on_node_failure`).
    #[serde(default)]
    pub on_node_failure: Option<crate::triggers::FailurePolicy>,
    /// Response-time goal (see [`crate::goal`]).
    #[serde(default)]
    pub goal: Option<crate::goal::Goal>,
    /// Importance of the goal, 1 (least) ..= 5 (most).
    #[serde(default = "crate::goal::default_importance")]
    pub importance: u8,
    /// Booked (the policy, exactly) or goal (resources follow the goal).
    #[serde(default)]
    pub mode: crate::goal::Mode,
}

fn default_true() -> bool {
    true
}

impl JobConfig {
    /// The goal-mode view of this job.
    pub(crate) fn goal_fields(&self) -> crate::goal::JobGoal<'_> {
        crate::goal::JobGoal {
            goal: self.goal.as_ref(),
            importance: self.importance,
            mode: self.mode,
            cpu: self.cpu.as_ref(),
        }
    }

    /// The process-detection view of this job.
    pub fn process_job(&self) -> crate::process::ProcessJob {
        crate::process::ProcessJob {
            name: self.name.clone(),
            rules: self.process_rules.clone(),
            include_children: self.include_children,
            cpu: self.cpu,
        }
    }
}

/// How CPU shares are enforced.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CpuBackendChoice {
    /// cgroup v2 if its cpu controller is available, else cgroup v1, else nice.
    #[default]
    Auto,
    /// cgroup v2 (`cpu.weight`, `cpu.max`).
    CgroupV2,
    /// cgroup v1 (`cpu.shares`, `cpu.cfs_quota_us`).
    CgroupV1,
    /// `setpriority` nice values.
    Nice,
}

/// `[cpu]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CpuConfig {
    /// Enforcement backend.
    pub backend: CpuBackendChoice,
    /// Name of the cgroup Headroom creates (under the cpu hierarchy's root)
    /// to hold one child cgroup per job. Must not exist when headroomd
    /// starts, unless the state file records that a previous headroomd of
    /// this boot left it (then it is taken over).
    pub cgroup_parent: String,
    /// Whether process detection and CPU enforcement run at all.
    pub enabled: bool,
    /// Directory of the record of the cgroups headroomd created and the
    /// processes it moved (`cpu-<cgroup_parent>.json`), read at the next
    /// start after a crash.
    pub state_dir: PathBuf,
    /// Which processes are detected: every process of the host, or only
    /// those in headroomd's own network namespace.
    pub scope: CpuScope,
}

/// `[cpu] scope`: the processes process rules are matched against.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CpuScope {
    /// Every process on the host (a server's applications, containers
    /// included).
    #[default]
    Host,
    /// Only processes in headroomd's network namespace (several headroomd
    /// sharing one kernel, each for one namespace, as in the lab).
    Netns,
}

impl CpuConfig {
    /// The cgroup backend's state file.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir
            .join(format!("cpu-{}.json", self.cgroup_parent))
    }
}

impl Default for CpuConfig {
    fn default() -> Self {
        Self {
            backend: CpuBackendChoice::Auto,
            cgroup_parent: "headroom".into(),
            enabled: true,
            state_dir: "/var/lib/headroom".into(),
            scope: CpuScope::Host,
        }
    }
}

/// Upgrades keys of earlier releases in `src` and deserialises it, with
/// errors at the line and column of the text the user wrote.
pub(crate) fn deserialize<T: serde::de::DeserializeOwned>(
    src: &str,
    file: &Path,
) -> Result<(T, deprecated::Upgraded), ConfigError> {
    // Keys of earlier releases are rewritten first, line for line, so
    // every position below is still one of the file the user wrote.
    let upgraded =
        deprecated::upgrade(src).map_err(|(line, field, message)| ConfigError::Invalid {
            file: file.to_owned(),
            line,
            field,
            message,
        })?;
    let text = upgraded.src.as_str();
    let value: T = toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| {
                let before = &text.as_bytes()[..s.start.min(text.len())];
                let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
                let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
                (line, col)
            })
            .unwrap_or((0, 0));
        ConfigError::Syntax {
            file: file.to_owned(),
            line,
            column,
            message: e.message().to_string(),
        }
    })?;
    Ok((value, upgraded))
}

/// Name of the job that collects traffic no rule matches.
pub const DEFAULT_JOB: &str = "default";

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: path.to_owned(),
            source,
        })?;
        Config::parse(&src, path)
    }

    /// Parses and validates `src`; `file` is used in error messages.
    pub fn parse(src: &str, file: &Path) -> Result<Config, ConfigError> {
        let (mut cfg, upgraded) = deserialize::<Config>(src, file)?;
        if cfg.history.path.as_os_str().is_empty() {
            cfg.history.path = cfg.cpu.state_dir.join("history.db");
        }
        let src = upgraded.src.as_str();
        cfg.validate()
            .map_err(|(path, message)| ConfigError::Invalid {
                file: file.to_owned(),
                line: line_of(src, &path),
                field: upgraded.as_written(render(&path)),
                message,
            })?;
        cfg.warnings = upgraded
            .warnings
            .iter()
            .map(|w| format!("{}:{w}", file.display()))
            .collect();
        Ok(cfg)
    }

    /// Reads and validates `path` and checks the files it names: what
    /// `--check-config`, start and reload all accept.
    pub fn load_checked(path: &Path) -> Result<Config, ConfigError> {
        let cfg = Config::load(path)?;
        cfg.check_files(path)?;
        Ok(cfg)
    }

    /// Checks the files the configuration names (the pool key: readable, at
    /// least 16 bytes, private to its owner), which validation alone does not
    /// touch. `file` locates the error.
    pub fn check_files(&self, file: &Path) -> Result<(), ConfigError> {
        let keys = [
            ("key_file", &self.exchange.key_file),
            ("rotation_key_file", &self.exchange.rotation_key_file),
        ];
        let src = std::fs::read_to_string(file).unwrap_or_default();
        for (field, k) in keys {
            let Some(k) = k else { continue };
            let path = [Seg::Key("exchange"), Seg::Key(field)];
            let invalid = |message: String| ConfigError::Invalid {
                file: file.to_owned(),
                line: line_of(&src, &path),
                field: render(&path),
                message,
            };
            check_key_file(k).map_err(invalid)?;
        }
        if let Err(message) = self.control_group() {
            let path = [Seg::Key("control"), Seg::Key("group")];
            return Err(ConfigError::Invalid {
                file: file.to_owned(),
                line: line_of(&src, &path),
                field: render(&path),
                message,
            });
        }
        Ok(())
    }

    /// The numeric id of `[control] group`, looked up on this machine.
    pub fn control_group(&self) -> Result<Option<u32>, String> {
        let Some(g) = &self.control.group else {
            return Ok(None);
        };
        let found = match g.parse::<u32>() {
            Ok(gid) => nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)),
            Err(_) => nix::unistd::Group::from_name(g),
        };
        match found {
            Ok(Some(group)) => Ok(Some(group.gid.as_raw())),
            Ok(None) => Err(format!(
                "no group {g:?} on this machine (`getent group {g}` finds none); \
                 create it (groupadd) or remove the field"
            )),
            Err(e) => Err(format!("looking up group {g:?}: {e}")),
        }
    }

    /// The node's display name.
    pub fn node_name(&self) -> String {
        self.node
            .name
            .clone()
            .unwrap_or_else(|| format!("node-{}", self.node.id))
    }

    /// Job names in job-id order: id 0 is the default job, then the file's jobs.
    pub fn job_names(&self) -> Vec<String> {
        std::iter::once(DEFAULT_JOB.to_string())
            .chain(self.jobs.iter().map(|j| j.name.clone()))
            .collect()
    }
}

/// A pool key file as [`Config::check_files`] accepts it: readable, private
/// to its owner, at least 16 bytes. The error says how to fix it.
fn check_key_file(k: &Path) -> Result<(), String> {
    let key = match std::fs::read(k) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "cannot read {k}: {e}; create the pool key once with \
                 `(umask 077; head -c 32 /dev/urandom > {k})` and copy it to every server",
                k = k.display()
            ))
        }
        Err(e) => return Err(format!("cannot read {}: {e}", k.display())),
    };
    let mode = std::fs::metadata(k)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .map_err(|e| format!("cannot read {}: {e}", k.display()))?;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{k} has mode {:04o}: group or others may read or change the pool key; \
             make it private with `chmod 600 {k}`",
            mode & 0o7777,
            k = k.display()
        ));
    }
    if key.len() < 16 {
        return Err(format!("{} holds fewer than 16 bytes", k.display()));
    }
    Ok(())
}

/// Writes a pool key file the way [`Config::check_files`] accepts it: created
/// with mode 600 (not from the umask), replacing any previous file.
pub fn write_key_file(path: &Path, key: &[u8]) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(key)?;
    f.sync_all()
}

/// A seed peer: `id@ip:port`.
pub fn parse_peer(s: &str) -> Result<(u16, SocketAddr), String> {
    let (id, addr) = s
        .split_once('@')
        .ok_or_else(|| format!("peer {s:?} must look like \"2@10.0.0.2:7946\""))?;
    let id: u16 = id
        .parse()
        .map_err(|_| format!("peer {s:?}: invalid node id"))?;
    let addr: SocketAddr = addr.parse().map_err(|_| {
        format!("peer {s:?}: invalid address, expected id@ip:port, e.g. \"2@10.0.0.2:7946\"")
    })?;
    Ok((id, addr))
}
