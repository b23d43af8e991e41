//! Checks of a valid configuration against the machine it runs on: the
//! interfaces exist (in this network namespace; the inner one only without
//! `[deploy] attach_on_start`, which creates it), the worker cores are
//! online, every listed receive queue exists on the interfaces, and the
//! memory the dataplane allocates at start fits the share of RAM
//! `[workers] max_memory_share` allows. `--check-config` reports them as
//! "valid, but on this machine"; a start refuses them before anything is
//! attached.

use std::{collections::HashMap, io, path::Path};

use crate::{
    locate::{line_of, render, Seg},
    validate::MAX_MEMORY_SHARE,
    Config, ConfigError,
};

/// The receive queues of an interface, as the dataplane counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxQueues {
    /// Receive queues in use (rx-only plus combined channels; 1 when the
    /// driver does not say).
    pub count: u32,
    /// Whether the driver reported its channels (`ethtool -l`).
    pub known: bool,
}

/// What the checks read of the machine: [`Machine::probe`] reads this one;
/// tests describe their own.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// Online CPUs (None: unknown, not checked).
    pub online_cpus: Option<Vec<usize>>,
    /// RAM (`MemTotal` of /proc/meminfo), bytes (None: unknown, the memory
    /// budget is not checked).
    pub mem_total: Option<u64>,
    /// The interfaces found in this network namespace, by name.
    pub interfaces: HashMap<String, RxQueues>,
}

impl Machine {
    /// Reads what `cfg` needs of this machine: its online CPUs, its RAM and
    /// the receive queues of the configured interfaces.
    pub fn probe(cfg: &Config) -> Machine {
        let mut interfaces = HashMap::new();
        for name in [&cfg.interfaces.outer, &cfg.interfaces.inner] {
            if nix::net::if_::if_nametoindex(name.as_str()).is_err() {
                continue;
            }
            let q = rx_queues(name).unwrap_or(RxQueues {
                count: 1,
                known: false,
            });
            interfaces.insert(name.clone(), q);
        }
        Machine {
            online_cpus: online_cpus(),
            mem_total: mem_total(),
            interfaces,
        }
    }
}

/// The receive queues of interface `name` in the caller's network namespace
/// (the ethtool channels ioctl, which `ethtool -l` shows: rx-only plus
/// combined channels; `/sys/class/net` may show another namespace's
/// devices). A driver that does not report channels counts as one queue,
/// not known. The dataplane reads its interfaces with this too.
pub fn rx_queues(name: &str) -> io::Result<RxQueues> {
    use nix::libc;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GCHANNELS: u32 = 0x0000_003c;
    /// `struct ethtool_channels`.
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolChannels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?} is not 1..{} bytes", libc::IFNAMSIZ),
        ));
    }
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    let mut c = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    req.ifr_ifru.ifru_data = (&mut c as *mut EthtoolChannels).cast::<libc::c_char>();
    // SAFETY: ETHTOOL_GCHANNELS writes one `struct ethtool_channels` (the
    // repr(C) struct above) into `c`; `req` and `c` outlive the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
            return Ok(RxQueues {
                count: 1,
                known: false,
            });
        }
        return Err(e);
    }
    Ok(RxQueues {
        count: (c.rx_count + c.combined_count).max(1),
        known: true,
    })
}

/// Bytes of one slot of a worker's flow table, `(FlowKey, FlowEntry)` of
/// dataplane/src/classifier (its tests check this against the type).
pub const FLOW_SLOT_BYTES: u64 = 104;
/// Flows per shard the classifier aims at (`SHARD_TARGET` there).
pub const FLOW_SHARD_TARGET: usize = 4096;
/// Most shards of a flow table (`MAX_SHARDS` there).
pub const FLOW_MAX_SHARDS: usize = 1024;
/// Control bytes per hashbrown group (16 with SSE2, 8 elsewhere: the larger).
const HASHBROWN_GROUP: u64 = 16;
/// Bytes of one slot of the director's connection table
/// (`Slot<ConnKey, ConnEntry>` of dataplane/src/director; checked there).
pub const CONNTRACK_SLOT_BYTES: u64 = 48;
/// Bytes of one slot of the director's sticky table
/// (`Slot<StickyKey, NodeId>`; checked there).
pub const STICKY_SLOT_BYTES: u64 = 32;
/// Slots per bucket of the director's tables (`WAYS` there).
pub const DIRECTOR_WAYS: usize = 8;
/// `struct hr_flow_key` and `struct hr_flow_entry`, the fast path's key and
/// value (checked against the dataplane's ABI types).
pub const FAST_PATH_KEY_BYTES: u64 = 40;
/// See [`FAST_PATH_KEY_BYTES`].
pub const FAST_PATH_VALUE_BYTES: u64 = 48;
/// The kernel's `struct htab_elem` ahead of each key of a preallocated
/// (LRU) hash map, and its `struct bucket` per power-of-two bucket.
const HTAB_ELEM_HEADER: u64 = 48;
const HTAB_BUCKET: u64 = 16;
/// `struct xdp_desc` (RX and TX rings) and a fill/completion ring entry.
const XDP_DESC: u64 = 16;
const FILL_ENTRY: u64 = 8;

/// The memory the dataplane allocates (and the kernel pins) at start, by
/// part, in bytes: what `[workers] max_memory_share` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryNeed {
    /// UMEM frames of every worker: frame_size x frame_count x the queues a
    /// worker serves on its busier side, summed over the workers.
    pub umem: u64,
    /// That sum of served queues (the UMEM's multiplier).
    pub umem_queues: u64,
    /// The RX, TX, fill and completion rings of every AF_XDP socket.
    pub rings: u64,
    /// AF_XDP sockets (one per served queue and interface).
    pub sockets: u64,
    /// The workers' flow tables (one each, `[classifier] flow_capacity`).
    pub flow_tables: u64,
    /// The director's connection and sticky tables of every worker (only
    /// with `[[vip]]` services).
    pub director: u64,
    /// The fast path's LRU flow tables in the kernel (one per interface,
    /// `[workers] fast_path_flows`).
    pub fast_path: u64,
}

impl MemoryNeed {
    /// Everything.
    pub fn total(&self) -> u64 {
        self.umem + self.rings + self.flow_tables + self.director + self.fast_path
    }
}

/// Bytes hashbrown allocates for a table created `with_capacity(cap)` of
/// `slot`-byte entries (its `capacity_to_buckets` and layout, cap >= 15).
fn hashbrown_bytes(cap: usize, slot: u64) -> u64 {
    let buckets = (cap.max(15) * 8 / 7).next_power_of_two() as u64;
    (buckets * slot).div_ceil(16) * 16 + buckets + HASHBROWN_GROUP
}

/// Bytes of one worker's flow table of `capacity` flows, sharded and
/// preallocated as `Classifier::new` does it.
pub fn flow_table_bytes(capacity: usize) -> u64 {
    let n = (capacity / FLOW_SHARD_TARGET)
        .next_power_of_two()
        .clamp(1, FLOW_MAX_SHARDS);
    let per = capacity.div_ceil(n);
    let prealloc = per + per / 4 + 16;
    n as u64 * hashbrown_bytes(prealloc, FLOW_SLOT_BYTES)
}

/// Bytes of a director table (`BoundedTable::with_capacity`) of `capacity`
/// entries in `slot`-byte slots.
pub fn director_table_bytes(capacity: usize, slot: u64) -> u64 {
    let buckets = capacity.div_ceil(DIRECTOR_WAYS).max(1).next_power_of_two();
    (buckets * DIRECTOR_WAYS) as u64 * slot
}

/// Bytes the kernel preallocates for one fast-path table of `entries`.
pub fn fast_path_table_bytes(entries: u32) -> u64 {
    let e = u64::from(entries.max(1));
    let elem = HTAB_ELEM_HEADER
        + FAST_PATH_KEY_BYTES.div_ceil(8) * 8
        + FAST_PATH_VALUE_BYTES.div_ceil(8) * 8;
    e * elem + e.next_power_of_two() * HTAB_BUCKET
}

/// A size in the largest binary unit that keeps it at 1 or more ("4.0 GiB").
pub fn human_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if b >= size {
            return format!("{:.1} {unit}", b as f64 / size as f64);
        }
    }
    format!("{b} B")
}

impl Config {
    /// The memory the dataplane allocates at start when the interfaces have
    /// `rx_queues` (outer, inner) receive queues: the queues are assigned to
    /// the workers as at start, and each worker's UMEM grows with the queues
    /// it serves on its busier side (src/dataplane.rs).
    pub fn memory_need(&self, rx_queues: [u32; 2]) -> MemoryNeed {
        let w = &self.workers;
        let [outer, inner] = rx_queues.map(|n| w.assign_queues(n.max(1)));
        let mut m = MemoryNeed::default();
        for (o, i) in outer.iter().zip(&inner) {
            m.umem_queues += o.len().max(i.len()) as u64;
            m.sockets += (o.len() + i.len()) as u64;
        }
        m.umem = m.umem_queues * u64::from(w.frame_size) * u64::from(w.frame_count);
        m.rings = m.sockets
            * (2 * u64::from(w.ring_size) * XDP_DESC + 2 * u64::from(w.fill_size) * FILL_ENTRY);
        let workers = w.cores.len() as u64;
        m.flow_tables = workers * flow_table_bytes(self.classifier.flow_capacity);
        if !self.vips.is_empty() {
            let d = &self.director;
            m.director = workers
                * (director_table_bytes(d.conntrack_capacity, CONNTRACK_SLOT_BYTES)
                    + director_table_bytes(d.sticky_capacity, STICKY_SLOT_BYTES));
        }
        m.fast_path = 2 * fast_path_table_bytes(w.fast_path_flows);
        m
    }

    /// What this machine lacks for the configuration, each located in
    /// `file` (empty: nothing).
    pub fn machine_problems(&self, file: &Path) -> Vec<ConfigError> {
        self.machine_problems_on(file, &Machine::probe(self))
    }

    /// [`Config::machine_problems`] on the machine `m` describes.
    pub fn machine_problems_on(&self, file: &Path, m: &Machine) -> Vec<ConfigError> {
        use Seg::{Index as I, Key as K};
        let src = std::fs::read_to_string(file).unwrap_or_default();
        let mut out = Vec::new();
        let mut problem = |path: Vec<Seg>, message: String| {
            out.push(ConfigError::Invalid {
                file: file.to_owned(),
                line: line_of(&src, &path),
                field: render(&path),
                message,
            })
        };
        let w = &self.workers;
        for (key, name) in [
            ("outer", &self.interfaces.outer),
            ("inner", &self.interfaces.inner),
        ] {
            // `[deploy] attach_on_start` creates the inner interface.
            if key == "inner" && self.deploy.attach_on_start {
                continue;
            }
            let Some(rx) = m.interfaces.get(name) else {
                problem(
                    vec![K("interfaces"), K(key)],
                    format!(
                        "no interface {name:?} in this network namespace (`ip link show` lists them)"
                    ),
                );
                continue;
            };
            // A listed queue the interface lacks would silently serve
            // nothing (the workers bind the queues that exist).
            for (i, &q) in w.queues.iter().flatten().enumerate() {
                if q < rx.count {
                    continue;
                }
                let assumed = if rx.known {
                    ""
                } else {
                    " (its driver reports no channels: one is assumed, as headroomd does)"
                };
                problem(
                    vec![K("workers"), K("queues"), I(i)],
                    format!(
                        "interfaces.{key} {name} has {n} receive queue(s) (0..={last}){assumed}; \
                         queue {q} does not exist (`ethtool -l {name}` shows them): list only \
                         queues below {n}, or give {name} more (`ethtool -L {name} combined {more}`)",
                        n = rx.count,
                        last = rx.count - 1,
                        more = q + 1,
                    ),
                );
            }
        }
        if let Some(online) = &m.online_cpus {
            for (i, c) in w.cores.iter().enumerate() {
                if !online.contains(c) {
                    problem(
                        vec![K("workers"), K("cores"), I(i)],
                        format!(
                            "core {c} is not online on this machine (online: {})",
                            ranges(online)
                        ),
                    );
                }
            }
        }
        if let Some(ram) = m.mem_total {
            let outer = m
                .interfaces
                .get(&self.interfaces.outer)
                .map_or(1, |q| q.count);
            let inner = if self.deploy.attach_on_start {
                // The veth pair attach creates (deploy/src/plan.rs).
                self.deploy.inner_queues.unwrap_or(outer).clamp(1, 64)
            } else {
                m.interfaces
                    .get(&self.interfaces.inner)
                    .map_or(1, |q| q.count)
            };
            if let Some((path, message)) = self.memory_problem([outer, inner], ram) {
                problem(path, message);
            }
        }
        out
    }

    /// The refusal of a configuration whose dataplane would need more than
    /// `max_memory_share` of `ram` bytes, located at the field of its
    /// largest part.
    fn memory_problem(&self, rx_queues: [u32; 2], ram: u64) -> Option<(Vec<Seg>, String)> {
        use Seg::Key as K;
        let w = &self.workers;
        let m = self.memory_need(rx_queues);
        let share = u64::from(w.max_memory_share);
        let allowed = ram / 100 * share;
        if m.total() <= allowed {
            return None;
        }
        let h = human_bytes;
        let workers = w.cores.len();
        let mut parts: Vec<(u64, Vec<Seg>, String)> = vec![
            (
                m.umem,
                vec![K("workers"), K("frame_count")],
                format!(
                    "UMEM {} (workers.frame_size {} B x workers.frame_count {} x {} served \
                     queue(s) over {workers} worker(s))",
                    h(m.umem),
                    w.frame_size,
                    w.frame_count,
                    m.umem_queues
                ),
            ),
            (
                m.flow_tables,
                vec![K("classifier"), K("flow_capacity")],
                format!(
                    "flow tables {} (classifier.flow_capacity {} x {workers} worker(s))",
                    h(m.flow_tables),
                    self.classifier.flow_capacity
                ),
            ),
            (
                m.fast_path,
                vec![K("workers"), K("fast_path_flows")],
                format!(
                    "fast-path tables {} (workers.fast_path_flows {} x 2 interfaces)",
                    h(m.fast_path),
                    w.fast_path_flows
                ),
            ),
            (
                m.rings,
                vec![K("workers"), K("ring_size")],
                format!(
                    "rings {} (workers.ring_size and fill_size x {} sockets)",
                    h(m.rings),
                    m.sockets
                ),
            ),
        ];
        if m.director > 0 {
            parts.push((
                m.director,
                vec![K("director"), K("conntrack_capacity")],
                format!(
                    "director tables {} (director.conntrack_capacity {} and sticky_capacity {} \
                     x {workers} worker(s))",
                    h(m.director),
                    self.director.conntrack_capacity,
                    self.director.sticky_capacity
                ),
            ));
        }
        parts.sort_by_key(|p| std::cmp::Reverse(p.0));
        let biggest = render(&parts[0].1);
        let listed: Vec<&str> = parts
            .iter()
            .filter(|p| p.0 > 0)
            .map(|p| p.2.as_str())
            .collect();
        let message = format!(
            "the dataplane would allocate {} at start, more than max_memory_share = {share}% of \
             this machine's {} RAM ({}): {}. Lower {biggest} first, use fewer workers.cores, or \
             raise workers.max_memory_share (1..={MAX_MEMORY_SHARE})",
            h(m.total()),
            h(ram),
            h(allowed),
            listed.join(", "),
        );
        Some((parts.swap_remove(0).1, message))
    }
}

/// RAM (`MemTotal` of /proc/meminfo), bytes.
fn mem_total() -> Option<u64> {
    parse_meminfo_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// `MemTotal:  24683584 kB` of a /proc/meminfo text, in bytes.
pub(crate) fn parse_meminfo_total(s: &str) -> Option<u64> {
    let rest = s.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kb.checked_mul(1024)
}

/// The online CPUs (`/sys/devices/system/cpu/online`, e.g. "0-3,6"), or
/// None when it cannot be read.
fn online_cpus() -> Option<Vec<usize>> {
    parse_cpu_list(
        std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()?
            .trim(),
    )
}

/// Parses a kernel CPU list ("0-3,6").
pub(crate) fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut v = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 1 << 16 {
                    return None;
                }
                v.extend(a..=b);
            }
            None => v.push(part.parse().ok()?),
        }
    }
    Some(v)
}

/// "0-3,6" again, for messages.
fn ranges(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_and_print() {
        assert_eq!(parse_cpu_list("0-3,6"), Some(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(ranges(&[0, 1, 2, 3, 6]), "0-3,6");
    }

    #[test]
    fn a_missing_interface_and_an_offline_core_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[node]\nid = 1\naddress = \"10.0.0.1\"\n[interfaces]\nouter = \"lo\"\n\
             inner = \"hr-nosuch9\"\n[workers]\ncores = [0, 4095]\n",
        )
        .unwrap();
        let cfg = Config::load(&file).unwrap();
        let p: Vec<String> = cfg
            .machine_problems(&file)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains(":6: interfaces.inner: no interface \"hr-nosuch9\""),
            "{p:?}"
        );
        assert!(
            p[1].contains(":8: workers.cores[1]: core 4095 is not online"),
            "{p:?}"
        );
    }

    /// A machine with `outer`/`inner` receive queues on eth0/eth1, two
    /// online cores and `ram` bytes.
    fn fake(outer: u32, inner: u32, ram: u64) -> Machine {
        let q = |count| RxQueues { count, known: true };
        Machine {
            online_cpus: Some(vec![0, 1]),
            mem_total: Some(ram),
            interfaces: [
                ("eth0".to_string(), q(outer)),
                ("eth1".to_string(), q(inner)),
            ]
            .into_iter()
            .collect(),
        }
    }

    /// The problems of `extra` after a minimal [node] and [interfaces]
    /// (eth0, eth1) on `m`, as printed.
    fn problems(extra: &str, m: &Machine) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            format!(
                "[node]\nid = 1\naddress = \"10.0.0.1\"\n[interfaces]\nouter = \"eth0\"\n\
                 inner = \"eth1\"\n{extra}"
            ),
        )
        .unwrap();
        let cfg = Config::load(&file).unwrap();
        cfg.machine_problems_on(&file, m)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn a_queue_the_interface_lacks_is_located_with_the_fix() {
        let m = fake(1, 8, 1 << 40);
        let p = problems("[workers]\ncores = [0]\nqueues = [0, 5]\n", &m);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].ends_with(
                ":9: workers.queues[1]: interfaces.outer eth0 has 1 receive queue(s) (0..=0); \
                 queue 5 does not exist (`ethtool -l eth0` shows them): list only queues below 1, \
                 or give eth0 more (`ethtool -L eth0 combined 6`)"
            ),
            "{p:?}"
        );
        // Both interfaces short: one line each.
        let p = problems(
            "[workers]\ncores = [0]\nqueues = [0, 5]\n",
            &fake(2, 4, 1 << 40),
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[1].contains("interfaces.inner eth1 has 4 receive queue(s) (0..=3)"),
            "{p:?}"
        );
        // A driver without channels counts as one queue, and says so.
        let mut m = fake(8, 8, 1 << 40);
        m.interfaces.get_mut("eth1").unwrap().known = false;
        m.interfaces.get_mut("eth1").unwrap().count = 1;
        let p = problems("[workers]\ncores = [0]\nqueues = [0, 1]\n", &m);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("its driver reports no channels"), "{p:?}");
        // Queues that exist, or no list: nothing.
        assert!(problems(
            "[workers]\ncores = [0, 1]\nqueues = [0, 1]\n",
            &fake(2, 2, 1 << 40)
        )
        .is_empty());
        assert!(problems("[workers]\ncores = [0]\n", &fake(1, 1, 1 << 40)).is_empty());
    }

    #[test]
    fn the_memory_need_follows_the_dataplane_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[node]\nid = 1\naddress = \"10.0.0.1\"\n[interfaces]\nouter = \"eth0\"\n\
             inner = \"eth1\"\n[workers]\ncores = [0, 1]\n",
        )
        .unwrap();
        let cfg = Config::load(&file).unwrap();
        // 4 outer queues give each worker 2, 2 inner queues 1: the UMEM of
        // each worker is sized for its busier side, 2 x 8192 frames of 4 KiB.
        let m = cfg.memory_need([4, 2]);
        assert_eq!(m.umem_queues, 4);
        assert_eq!(m.umem, 4 * 8192 * 4096);
        assert_eq!(m.sockets, 6);
        assert_eq!(m.rings, 6 * (2 * 2048 * 16 + 2 * 4096 * 8));
        // 65536 flows: 16 shards of 5136 slots preallocated, 8192 buckets
        // of 104 bytes plus a control byte each, plus one group.
        assert_eq!(flow_table_bytes(65536), 16 * (8192 * 104 + 8192 + 16));
        assert_eq!(m.flow_tables, 2 * flow_table_bytes(65536));
        // Two kernel LRU tables of 65536 elements of 48 + 40 + 48 bytes.
        assert_eq!(m.fast_path, 2 * (65536 * 136 + 65536 * 16));
        assert_eq!(m.director, 0, "no [[vip]], no director tables");
        assert_eq!(
            m.total(),
            m.umem + m.rings + m.flow_tables + m.fast_path,
            "{m:?}"
        );
        // 174 MiB in all: well inside half of 1 GiB, outside a tenth.
        assert!(cfg.memory_problem([4, 2], 1 << 30).is_none());
        let mut tight = cfg.clone();
        tight.workers.max_memory_share = 10;
        let (path, msg) = tight.memory_problem([4, 2], 1 << 30).unwrap();
        assert_eq!(render(&path), "workers.frame_count");
        assert!(
            msg.starts_with(
                "the dataplane would allocate 174.0 MiB at start, more than max_memory_share = \
                 10% of this machine's 1.0 GiB RAM (102.4 MiB): UMEM 128.0 MiB (workers.frame_size \
                 4096 B x workers.frame_count 8192 x 4 served queue(s) over 2 worker(s)), flow \
                 tables 26.3 MiB"
            ),
            "{msg}"
        );
        assert!(msg.ends_with("Lower workers.frame_count first, use fewer workers.cores, or raise workers.max_memory_share (1..=95)"), "{msg}");
    }

    #[test]
    fn a_dataplane_too_big_for_the_machine_is_refused_at_its_biggest_field() {
        let ram = 8 << 30;
        let p = problems(
            "[workers]\ncores = [0, 1]\nframe_count = 1048576\n[classifier]\nflow_capacity = 16777216\n",
            &fake(2, 2, ram),
        );
        assert_eq!(p.len(), 1, "{p:?}");
        // 2 workers x 4 GiB of UMEM, 2 x 3.3 GiB of flow tables, in 4 GiB.
        assert!(p[0].contains(":9: workers.frame_count: the dataplane would allocate 14.6 GiB at start, more than max_memory_share = 50% of this machine's 8.0 GiB RAM (4.0 GiB): UMEM 8.0 GiB"), "{p:?}");
        assert!(
            p[0].contains("flow tables 6.6 GiB (classifier.flow_capacity 16777216 x 2 worker(s))"),
            "{p:?}"
        );
        // Flow tables the biggest part: located there.
        let p = problems(
            "[classifier]\nflow_capacity = 16777216\n",
            &fake(1, 1, ram / 4),
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains(":8: classifier.flow_capacity: "), "{p:?}");
        // With VIP services the director's tables count too.
        let vip =
            "[[vip]]\nname = \"web\"\nvip = \"10.0.0.100\"\nprotocol = \"tcp\"\nports = [80]\nmembers = [1]\n\
                   [director]\nconntrack_capacity = 67108864\n\
                   [[director.hosts]]\nnode = 1\naddress = \"10.0.0.1\"\n";
        let p = problems(vip, &fake(1, 1, ram / 4));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains(": director.conntrack_capacity: "), "{p:?}");
        assert!(
            p[0].contains("director tables 3.0 GiB (director.conntrack_capacity 67108864"),
            "{p:?}"
        );
        // An unknown RAM size checks nothing.
        let mut m = fake(2, 2, 0);
        m.mem_total = None;
        assert!(problems("[workers]\ncores = [0, 1]\nframe_count = 1048576\n", &m).is_empty());
    }

    #[test]
    fn meminfo_and_sizes_read_and_print() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       24683584 kB\nMemFree: 1 kB\n"),
            Some(24683584 * 1024)
        );
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(1536 << 20), "1.5 GiB");
        assert!(mem_total().unwrap() > 0, "this machine's /proc/meminfo");
    }

    #[test]
    fn queues_are_read_as_ethtool_shows_them() {
        // Loopback reports no channels: one queue, not known.
        assert_eq!(
            rx_queues("lo").unwrap(),
            RxQueues {
                count: 1,
                known: false
            }
        );
        assert!(rx_queues("hr-nosuch9").is_err());
        assert!(rx_queues("").is_err());
    }
}
