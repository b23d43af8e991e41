//! The configuration schema. Every field is documented in
//! `config/headroom.toml`; defaults live next to the fields here.

use std::{
    collections::HashSet,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::{
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
    // --- flow director (VIP services) ---
    /// Load-balanced VIP services (`[[vip]]`).
    #[serde(default, rename = "vip")]
    pub vips: Vec<crate::vip::VipService>,
    /// Node-wide flow director settings (`[director]`).
    #[serde(default)]
    pub director: crate::vip::DirectorSettings,
    // --- end flow director ---
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
    /// The server's own IPv4 address on the outer network: gossip and
    /// management traffic to it bypasses the workers.
    pub address: Ipv4Addr,
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
    /// Receive queue each worker serves on both interfaces (default: 0, 1, ...).
    pub queues: Option<Vec<u32>>,
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
    /// How long an idle worker sleeps in poll() before re-checking, in ms.
    pub poll_timeout_ms: u32,
    /// How often workers publish accounting to the control thread, in ms.
    pub publish_interval_ms: u32,
    /// Largest burst a paced job may send at once, as time at its rate, in µs
    /// (credit beyond it is not carried over within an interval).
    pub pacer_burst_us: u32,
    /// Longest a frame may wait in a pacer queue before new frames of its job
    /// are dropped instead of queued, in ms.
    pub pacer_max_queue_delay_ms: u32,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            cores: vec![0],
            queues: None,
            batch_size: 64,
            ring_size: 2048,
            fill_size: 4096,
            frame_size: 4096,
            frame_count: 8192,
            zero_copy: ZeroCopy::Auto,
            poll_timeout_ms: 50,
            publish_interval_ms: 100,
            pacer_burst_us: 2000,
            pacer_max_queue_delay_ms: 10,
        }
    }
}

impl WorkersConfig {
    /// The queue served by worker `i`.
    pub fn queue_of(&self, i: usize) -> u32 {
        self.queues
            .as_ref()
            .and_then(|q| q.get(i).copied())
            .unwrap_or(i as u32)
    }
}

/// `[classifier]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierConfig {
    /// Flow-table capacity per worker; flows beyond it are still counted per job.
    pub flow_capacity: usize,
    /// A flow idle this long (seconds) is expired.
    pub idle_timeout_secs: u64,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self {
            flow_capacity: 65536,
            idle_timeout_secs: 60,
        }
    }
}

/// `[control]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Unix socket `headroomctl` talks to.
    pub socket: PathBuf,
    /// High-frequency interval (exchange + allocation), ms, 10..=100.
    pub high_freq_ms: u32,
    /// Low-frequency interval (membership, process scan, sampling), ms.
    pub low_freq_ms: u32,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/headroom/headroomd.sock"),
            high_freq_ms: 20,
            low_freq_ms: 2000,
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint, e.g. "127.0.0.1:9100"; none = disabled.
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
    /// A peer silent this long is declared failed, ms.
    pub failure_timeout_ms: u32,
    /// Largest datagram payload, bytes.
    pub mtu: u16,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            port: 7946,
            peers: Vec::new(),
            key_file: None,
            failure_timeout_ms: 2000,
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
    /// Traffic this pipe carries: outbound frames whose remote address is in this prefix.
    #[serde(default)]
    pub remote: Option<crate::net::IpPrefix>,
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
}

fn default_true() -> bool {
    true
}

impl JobConfig {
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
    /// to hold one child cgroup per job. Must not exist when headroomd starts.
    pub cgroup_parent: String,
    /// Whether process detection and CPU enforcement run at all.
    pub enabled: bool,
}

impl Default for CpuConfig {
    fn default() -> Self {
        Self {
            backend: CpuBackendChoice::Auto,
            cgroup_parent: "headroom".into(),
            enabled: true,
        }
    }
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
        let cfg: Config = toml::from_str(src).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| {
                    let before = &src.as_bytes()[..s.start.min(src.len())];
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
        cfg.validate()
            .map_err(|(path, message)| ConfigError::Invalid {
                file: file.to_owned(),
                line: line_of(src, &path),
                field: render(&path),
                message,
            })?;
        Ok(cfg)
    }

    /// Checks the files the configuration names (the pool key), which
    /// validation alone does not touch. `file`/`src` locate the error.
    pub fn check_files(&self, file: &Path) -> Result<(), ConfigError> {
        let Some(k) = &self.exchange.key_file else {
            return Ok(());
        };
        let src = std::fs::read_to_string(file).unwrap_or_default();
        let path = [Seg::Key("exchange"), Seg::Key("key_file")];
        let invalid = |message: String| ConfigError::Invalid {
            file: file.to_owned(),
            line: line_of(&src, &path),
            field: render(&path),
            message,
        };
        match std::fs::read(k) {
            Ok(b) if b.len() >= 16 => Ok(()),
            Ok(_) => Err(invalid(format!(
                "{} holds fewer than 16 bytes",
                k.display()
            ))),
            Err(e) => Err(invalid(format!("cannot read {}: {e}", k.display()))),
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

    fn validate(&self) -> Result<(), (Vec<Seg>, String)> {
        use Seg::{Index as I, Key as K};
        let err = |p: Vec<Seg>, m: String| Err((p, m));
        if self.node.id == 0 {
            return err(
                vec![K("node"), K("id")],
                "must be 1..=65535 (0 is reserved)".into(),
            );
        }
        if self.interfaces.outer.is_empty() || self.interfaces.outer.len() > 15 {
            return err(
                vec![K("interfaces"), K("outer")],
                "must be an interface name (1-15 chars)".into(),
            );
        }
        if self.interfaces.inner.is_empty() || self.interfaces.inner.len() > 15 {
            return err(
                vec![K("interfaces"), K("inner")],
                "must be an interface name (1-15 chars)".into(),
            );
        }
        if self.interfaces.inner == self.interfaces.outer {
            return err(
                vec![K("interfaces"), K("inner")],
                "must differ from interfaces.outer".into(),
            );
        }
        let w = &self.workers;
        if w.cores.is_empty() {
            return err(
                vec![K("workers"), K("cores")],
                "at least one core is needed".into(),
            );
        }
        let mut seen = HashSet::new();
        for (i, c) in w.cores.iter().enumerate() {
            if !seen.insert(c) {
                return err(
                    vec![K("workers"), K("cores"), I(i)],
                    format!("core {c} is listed twice"),
                );
            }
        }
        if let Some(q) = &w.queues {
            if q.len() != w.cores.len() {
                return err(
                    vec![K("workers"), K("queues")],
                    format!(
                        "{} queues for {} cores: give one queue per core",
                        q.len(),
                        w.cores.len()
                    ),
                );
            }
        }
        if !(1..=1024).contains(&w.batch_size) {
            return err(
                vec![K("workers"), K("batch_size")],
                "must be 1..=1024".into(),
            );
        }
        for (name, v) in [("ring_size", w.ring_size), ("fill_size", w.fill_size)] {
            if !v.is_power_of_two() || !(64..=65536).contains(&v) {
                return err(
                    vec![K("workers"), K(name)],
                    format!("{v} must be a power of two in 64..=65536"),
                );
            }
        }
        if w.batch_size > w.ring_size {
            return err(
                vec![K("workers"), K("batch_size")],
                "must not exceed workers.ring_size".into(),
            );
        }
        if w.frame_size != 2048 && w.frame_size != 4096 {
            return err(
                vec![K("workers"), K("frame_size")],
                "must be 2048 or 4096".into(),
            );
        }
        if w.frame_count < 2 * w.fill_size || !w.frame_count.is_power_of_two() {
            return err(
                vec![K("workers"), K("frame_count")],
                format!(
                    "must be a power of two and at least 2 x fill_size ({})",
                    2 * w.fill_size
                ),
            );
        }
        if w.poll_timeout_ms == 0 || w.poll_timeout_ms > 1000 {
            return err(
                vec![K("workers"), K("poll_timeout_ms")],
                "must be 1..=1000".into(),
            );
        }
        if w.publish_interval_ms < 10 {
            return err(
                vec![K("workers"), K("publish_interval_ms")],
                "must be at least 10".into(),
            );
        }
        if !(100..=100_000).contains(&w.pacer_burst_us) {
            return err(
                vec![K("workers"), K("pacer_burst_us")],
                "must be 100..=100000".into(),
            );
        }
        if !(1..=1000).contains(&w.pacer_max_queue_delay_ms) {
            return err(
                vec![K("workers"), K("pacer_max_queue_delay_ms")],
                "must be 1..=1000".into(),
            );
        }
        if self.classifier.flow_capacity == 0 {
            return err(
                vec![K("classifier"), K("flow_capacity")],
                "must be at least 1".into(),
            );
        }
        if self.classifier.idle_timeout_secs == 0 {
            return err(
                vec![K("classifier"), K("idle_timeout_secs")],
                "must be at least 1".into(),
            );
        }
        let c = &self.control;
        if !(10..=100).contains(&c.high_freq_ms) {
            return err(
                vec![K("control"), K("high_freq_ms")],
                "must be 10..=100".into(),
            );
        }
        if c.low_freq_ms < c.high_freq_ms || c.low_freq_ms > 60_000 {
            return err(
                vec![K("control"), K("low_freq_ms")],
                "must be high_freq_ms..=60000".into(),
            );
        }
        for (i, p) in self.exchange.peers.iter().enumerate() {
            if let Err(m) = parse_peer(p) {
                return err(vec![K("exchange"), K("peers"), I(i)], m);
            }
        }
        if self.exchange.failure_timeout_ms < 100 {
            return err(
                vec![K("exchange"), K("failure_timeout_ms")],
                "must be at least 100".into(),
            );
        }
        if !(512..=9000).contains(&self.exchange.mtu) {
            return err(vec![K("exchange"), K("mtu")], "must be 512..=9000".into());
        }
        if self.cpu.cgroup_parent.is_empty()
            || self.cpu.cgroup_parent.contains('/')
            || self.cpu.cgroup_parent.starts_with('.')
        {
            return err(
                vec![K("cpu"), K("cgroup_parent")],
                "must be a plain directory name".into(),
            );
        }
        // --- flow director (VIP services) ---
        if let Err(e) = crate::vip::validate_services(&self.vips) {
            return err(vec![K("vip")], e.to_string());
        }
        if let Err(e) = self.director.validate() {
            return err(vec![K("director")], e.to_string());
        }
        if !self.vips.is_empty() && self.director.host_of(u32::from(self.node.id)).is_none() {
            return err(
                vec![K("director"), K("hosts")],
                format!(
                    "VIP services need this node's host address (an entry for node {})",
                    self.node.id
                ),
            );
        }
        // --- end flow director ---
        let mut pipes = HashSet::new();
        for (i, p) in self.pipes.iter().enumerate() {
            if p.name.is_empty() || !pipes.insert(p.name.as_str()) {
                return err(
                    vec![K("pipe"), I(i), K("name")],
                    format!("pipe name {:?} is empty or not unique", p.name),
                );
            }
            match p.capacity {
                Rate::Bps(b) if b >= 8000 => {}
                Rate::Bps(_) => {
                    return err(
                        vec![K("pipe"), I(i), K("capacity")],
                        "must be at least 8kbit".into(),
                    )
                }
                Rate::Percent(_) => {
                    return err(
                        vec![K("pipe"), I(i), K("capacity")],
                        "must be an absolute rate, not a percentage".into(),
                    )
                }
            }
            if p.immediate_share > 100 {
                return err(
                    vec![K("pipe"), I(i), K("immediate_share")],
                    "must be 0..=100".into(),
                );
            }
        }
        let mut names: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        if self.jobs.len() > 1000 {
            return err(vec![K("job")], "at most 1000 jobs".into());
        }
        for (i, j) in self.jobs.iter().enumerate() {
            if j.name.is_empty() {
                return err(vec![K("job"), I(i), K("name")], "must not be empty".into());
            }
            if j.name == DEFAULT_JOB {
                return err(
                    vec![K("job"), I(i), K("name")],
                    format!("{DEFAULT_JOB:?} is reserved for traffic no rule matches"),
                );
            }
            if let Some(first) = names.insert(j.name.as_str(), i) {
                return err(
                    vec![K("job"), I(i), K("name")],
                    format!(
                        "duplicate job name {:?} (first used by job[{first}])",
                        j.name
                    ),
                );
            }
            if let Err(e) = j.process_job().validate() {
                return err(vec![K("job"), I(i), K("process")], e.to_string());
            }
            for (b, bk) in j.bookings.iter().enumerate() {
                let Some(pipe) = self.pipes.iter().find(|p| p.name == bk.pipe) else {
                    return err(
                        vec![K("job"), I(i), K("booking"), I(b), K("pipe")],
                        format!("no pipe named {:?}", bk.pipe),
                    );
                };
                let cap = pipe.capacity.bps(0);
                if let Some(c) = bk.cap {
                    if c.bps(cap) < bk.rate.bps(cap) {
                        return err(
                            vec![K("job"), I(i), K("booking"), I(b), K("cap")],
                            "cap is below the booked rate".into(),
                        );
                    }
                }
            }
        }
        for (pi, p) in self.pipes.iter().enumerate() {
            let cap = p.capacity.bps(0);
            let booked: u64 = self
                .jobs
                .iter()
                .flat_map(|j| j.bookings.iter())
                .filter(|b| b.pipe == p.name)
                .map(|b| b.rate.bps(cap))
                .sum();
            if booked > cap {
                let parts: Vec<String> = self
                    .jobs
                    .iter()
                    .flat_map(|j| j.bookings.iter().map(move |b| (j, b)))
                    .filter(|(_, b)| b.pipe == p.name)
                    .map(|(j, b)| format!("{} {}", j.name, human_bps(b.rate.bps(cap))))
                    .collect();
                return err(
                    vec![K("pipe"), I(pi), K("capacity")],
                    format!(
                        "bookings on pipe {:?} add up to {} ({}), more than its capacity {}",
                        p.name,
                        human_bps(booked),
                        parts.join(" + "),
                        human_bps(cap)
                    ),
                );
            }
        }
        Ok(())
    }
}

/// A rate for messages: "130Mbit", "1.5Gbit", "800kbit".
fn human_bps(b: u64) -> String {
    let f = b as f64;
    if f >= 1e9 {
        format!("{}Gbit", (f / 1e7).round() / 100.0)
    } else if f >= 1e6 {
        format!("{}Mbit", (f / 1e4).round() / 100.0)
    } else if f >= 1e3 {
        format!("{}kbit", (f / 10.0).round() / 100.0)
    } else {
        format!("{b}bit")
    }
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
