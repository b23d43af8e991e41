//! Validation of a parsed [`Config`]: ranges, uniqueness and references
//! that the types alone cannot express. An error is the path of the
//! offending field and what is expected; [`Config::parse`] turns the path
//! into a line of the file.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use crate::{locate::Seg, parse_peer, Config, Rate, DEFAULT_JOB};

const US: Duration = Duration::from_micros(1);
const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

type Invalid = (Vec<Seg>, String);

/// A duration within `min..=max`, or an error saying so in the file's units.
fn within(path: &[&'static str], d: Duration, min: Duration, max: Duration) -> Result<(), Invalid> {
    if (min..=max).contains(&d) {
        return Ok(());
    }
    let f = humantime::format_duration;
    Err((
        path.iter().map(|k| Seg::Key(k)).collect(),
        format!("{} is outside {}..={}", f(d), f(min), f(max)),
    ))
}

/// Most flows a worker's table may hold (16 Mi; each entry is tens of bytes).
pub const MAX_FLOW_CAPACITY: usize = 1 << 24;
/// Most UMEM frames per served queue (1 Mi frames: 4 GiB at 4 KiB frames).
pub const MAX_FRAME_COUNT: u32 = 1 << 20;
/// Largest `[workers] max_memory_share`, percent of RAM (the kernel and
/// the host's own processes need the rest).
pub const MAX_MEMORY_SHARE: u8 = 95;

impl Config {
    /// The bookings of every job on pipe `p`, bit/s.
    pub(crate) fn booked_on(&self, p: &crate::PipeConfig) -> u64 {
        let cap = p.capacity.bps(0);
        self.jobs
            .iter()
            .flat_map(|j| j.bookings.iter())
            .filter(|b| b.pipe == p.name)
            .map(|b| b.rate.bps(cap))
            .sum()
    }

    pub(crate) fn validate(&self) -> Result<(), (Vec<Seg>, String)> {
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
            let mut seen = HashSet::new();
            for (i, &n) in q.iter().enumerate() {
                if n >= 64 {
                    return err(
                        vec![K("workers"), K("queues"), I(i)],
                        format!("queue {n} is beyond the 64 queues Headroom can steer"),
                    );
                }
                if !seen.insert(n) {
                    return err(
                        vec![K("workers"), K("queues"), I(i)],
                        format!("queue {n} is listed twice"),
                    );
                }
            }
            if q.len() < w.cores.len() {
                return err(
                    vec![K("workers"), K("queues")],
                    format!(
                        "{} queues for {} workers: every worker needs a queue; list more \
                         queues or fewer cores (or leave `queues` out to serve them all)",
                        q.len(),
                        w.cores.len()
                    ),
                );
            }
        }
        if !(1..=(1 << 24)).contains(&w.fast_path_flows) {
            return err(
                vec![K("workers"), K("fast_path_flows")],
                format!("{} must be 1..=16777216", w.fast_path_flows),
            );
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
        if w.frame_count < 2 * w.fill_size
            || !w.frame_count.is_power_of_two()
            || w.frame_count > MAX_FRAME_COUNT
        {
            return err(
                vec![K("workers"), K("frame_count")],
                format!(
                    "{} must be a power of two in 2 x fill_size ({})..={MAX_FRAME_COUNT} \
                     (UMEM frames per served queue)",
                    w.frame_count,
                    2 * w.fill_size
                ),
            );
        }
        if !(1..=MAX_MEMORY_SHARE).contains(&w.max_memory_share) {
            return err(
                vec![K("workers"), K("max_memory_share")],
                format!(
                    "{} must be 1..={MAX_MEMORY_SHARE} (percent of this machine's RAM)",
                    w.max_memory_share
                ),
            );
        }
        within(&["workers", "poll_timeout"], w.poll_timeout, MS, SEC)?;
        within(
            &["workers", "publish_interval"],
            w.publish_interval,
            10 * MS,
            HOUR,
        )?;
        within(
            &["workers", "pacer_burst"],
            w.pacer_burst,
            100 * US,
            100 * MS,
        )?;
        within(
            &["workers", "pacer_max_queue_delay"],
            w.pacer_max_queue_delay,
            MS,
            SEC,
        )?;
        if !(1..=MAX_FLOW_CAPACITY).contains(&self.classifier.flow_capacity) {
            return err(
                vec![K("classifier"), K("flow_capacity")],
                format!(
                    "{} must be 1..={MAX_FLOW_CAPACITY} (flows per worker)",
                    self.classifier.flow_capacity
                ),
            );
        }
        within(
            &["classifier", "idle_timeout"],
            self.classifier.idle_timeout,
            SEC,
            DAY,
        )?;
        let c = &self.control;
        within(
            &["control", "high_freq_interval"],
            c.high_freq_interval,
            10 * MS,
            100 * MS,
        )?;
        if c.low_freq_interval < c.high_freq_interval || c.low_freq_interval > 60 * SEC {
            return err(
                vec![K("control"), K("low_freq_interval")],
                "must be high_freq_interval..=60s".into(),
            );
        }
        if self.exchange.port == 0 {
            return err(vec![K("exchange"), K("port")], "must be 1..=65535".into());
        }
        let mut ids: Vec<u16> = Vec::new();
        for (i, p) in self.exchange.peers.iter().enumerate() {
            let at = || vec![K("exchange"), K("peers"), I(i)];
            let (id, addr) = match parse_peer(p) {
                Ok(v) => v,
                Err(m) => return err(at(), m),
            };
            if id == 0 {
                return err(
                    at(),
                    format!("peer {p:?}: node id 0 is reserved (1..=65535)"),
                );
            }
            if ids.contains(&id) {
                return err(at(), format!("peer {p:?}: node {id} is listed twice"));
            }
            ids.push(id);
            if id == self.node.id && addr.ip() != std::net::IpAddr::V4(self.node.address) {
                return err(
                    at(),
                    format!(
                        "peer {p:?} is this node (node.id {id}) with another address: \
                         its address must be node.address {}",
                        self.node.address
                    ),
                );
            }
        }
        within(
            &["exchange", "failure_timeout"],
            self.exchange.failure_timeout,
            100 * MS,
            HOUR,
        )?;
        if !(512..=9000).contains(&self.exchange.mtu) {
            return err(vec![K("exchange"), K("mtu")], "must be 512..=9000".into());
        }
        if let Some(r) = &self.exchange.rotation_key_file {
            if self.exchange.key_file.is_none() {
                return err(
                    vec![K("exchange"), K("rotation_key_file")],
                    "needs key_file: the rotation key is accepted beside the pool key".into(),
                );
            }
            if self.exchange.key_file.as_ref() == Some(r) {
                return err(
                    vec![K("exchange"), K("rotation_key_file")],
                    "names the same file as key_file".into(),
                );
            }
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
        if let Err((field, m)) = self.history.validate() {
            return err(vec![K("history"), K(field)], m);
        }
        if let Err((field, m)) = self.console.validate() {
            return err(vec![K("console"), K(field)], m);
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
        if let Err((field, msg)) = self
            .deploy
            .validate(&self.interfaces.outer, &self.interfaces.inner)
        {
            return err(vec![K("deploy"), K(field)], msg);
        }
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
        let mut names: HashMap<&str, usize> = HashMap::new();
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
            crate::goal::validate_job(i, j.goal_fields())?;
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
            let booked = self.booked_on(p);
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
        crate::triggers::validate_policy(self)?;
        crate::triggers::check_allowlist(self, &self.actions)
    }
}

/// A rate for messages: "130Mbit", "1.5Gbit", "800kbit".
pub(crate) fn human_bps(b: u64) -> String {
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
