//! The XDP steering program: loading, attaching (fail-open bpf_link), the
//! socket map, the config map and the per-verdict counters.

pub mod abi;
pub mod fastpath;
pub mod netdev;

use std::{
    mem::MaybeUninit,
    net::Ipv4Addr,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use libbpf_rs::{
    libbpf_sys,
    skel::{OpenSkel, SkelBuilder},
    MapCore, MapFlags, OpenObject,
};

use abi::{
    FpMiss, HrCounter, HrXdpConfig, Verdict, HR_CFG_BYPASS_ADDRESS, HR_CFG_COMPLETE_CSUM,
    HR_CFG_ENABLED, HR_CFG_FAST_PATH, HR_FP_CSUM_COMPLETED, HR_FP_STAT_MAX, HR_MAX_JOBS, HR_V_MAX,
};
use fastpath::FlowMap;

/// What the program needs to know besides the socket map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpSettings {
    /// The node's own address: its exchange traffic bypasses the workers.
    pub node_ip4: Option<Ipv4Addr>,
    /// UDP port of the information exchange (0 = none).
    pub exchange_port: u16,
    /// All traffic to/from `node_ip4` bypasses the workers (a dedicated node
    /// address), not only the exchange's.
    pub bypass_address: bool,
    /// Largest frame (all buffers) the workers take; longer ones pass to the
    /// kernel path and are counted (`pass_too_big`). 0 = no limit.
    pub max_len: u32,
    /// Decided flows take the fast path.
    pub fast_path: bool,
    /// Frames received here can carry partial checksums: the fast path
    /// completes them.
    pub complete_csum: bool,
    /// Decision generation of valid fast-path entries.
    pub fp_gen: u32,
    /// MTU of the interface fast-path frames leave by.
    pub egress_mtu: u32,
    /// Underlay MTU (VIP encapsulation).
    pub underlay_mtu: u32,
    /// This node's underlay address: encapsulated frames to it from a pool
    /// node are decapsulated by the fast path (None: not a VIP pool).
    pub local_ip4: Option<Ipv4Addr>,
    /// Encapsulation UDP port.
    pub encap_port: u16,
    /// MAC of the host stack behind `inner`.
    pub host_mac: [u8; 6],
}

#[allow(
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    missing_docs,
    dead_code,
    unused_imports,
    non_camel_case_types
)]
pub(crate) mod skel {
    include!(concat!(env!("OUT_DIR"), "/headroom.skel.rs"));
}

/// How the program ended up attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (veth and most NICs support it).
    Native,
    /// In the generic skb path (slower; used when the driver lacks XDP).
    Generic,
}

impl AttachMode {
    /// Lower-case name for status output.
    pub fn as_str(&self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

/// Errors loading or attaching the XDP program.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The BPF object could not be opened or loaded into the kernel (verifier, permissions).
    #[error("loading the XDP program: {0}")]
    Load(#[source] libbpf_rs::Error),
    /// No interface of that name exists in this network namespace.
    #[error("interface {0:?} does not exist")]
    NoSuchInterface(String),
    /// The kernel refused the attachment in every allowed mode.
    #[error("attaching XDP to {ifname} ({mode}): {source}")]
    Attach {
        /// The interface.
        ifname: String,
        /// The last mode tried.
        mode: &'static str,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// A map update or lookup failed.
    #[error("XDP map {map}: {source}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// The error.
        source: libbpf_rs::Error,
    },
}

/// Which attach modes to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModePolicy {
    /// Native, then generic.
    Auto,
    /// Native only.
    Native,
    /// Generic only.
    Generic,
}

/// A loaded XDP program and its attachments. Dropping it detaches the program
/// (the links are file descriptors: the same happens if the process dies).
pub struct XdpProgram {
    skel: skel::HeadroomSkel<'static>,
    links: Vec<(String, AttachMode, OwnedFd)>,
}

impl XdpProgram {
    /// Opens and loads the embedded program with the default fast-path
    /// flow table (65536 flows).
    pub fn load() -> Result<Self, XdpError> {
        Self::load_with(65536)
    }

    /// Opens and loads the embedded program with room for `fast_flows`
    /// decided flows in its fast-path table.
    pub fn load_with(fast_flows: u32) -> Result<Self, XdpError> {
        // The skeleton borrows its object storage for its whole life; one
        // program lives as long as the daemon, so the storage is leaked once.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = skel::HeadroomSkelBuilder::default()
            .open(storage)
            .map_err(XdpError::Load)?;
        open.maps
            .flows
            .set_max_entries(fast_flows.max(1))
            .map_err(|source| XdpError::Map {
                map: "flows",
                source,
            })?;
        let skel = open.load().map_err(XdpError::Load)?;
        Ok(Self {
            skel,
            links: Vec::new(),
        })
    }

    /// Attaches to `ifname` with a bpf_link, trying the modes `policy` allows.
    pub fn attach(&mut self, ifname: &str, policy: ModePolicy) -> Result<AttachMode, XdpError> {
        let ifindex = nix::net::if_::if_nametoindex(ifname)
            .map_err(|_| XdpError::NoSuchInterface(ifname.into()))?;
        let modes: &[AttachMode] = match policy {
            ModePolicy::Auto => &[AttachMode::Native, AttachMode::Generic],
            ModePolicy::Native => &[AttachMode::Native],
            ModePolicy::Generic => &[AttachMode::Generic],
        };
        let prog_fd = self.skel.progs.headroom_xdp.as_fd().as_raw_fd();
        let mut last = None;
        for &mode in modes {
            match link_create(prog_fd, ifindex as i32, mode) {
                Ok(fd) => {
                    if mode == AttachMode::Generic && policy == ModePolicy::Auto {
                        tracing::warn!(ifname, "native XDP unavailable, attached in generic mode");
                    }
                    self.links.push((ifname.to_string(), mode, fd));
                    return Ok(mode);
                }
                Err(e) => last = Some((mode, e)),
            }
        }
        let (mode, source) = last.expect("at least one mode is tried");
        Err(XdpError::Attach {
            ifname: ifname.into(),
            mode: mode.as_str(),
            source,
        })
    }

    /// Interfaces the program is attached to, with their modes.
    pub fn attachments(&self) -> impl Iterator<Item = (&str, AttachMode)> {
        self.links.iter().map(|(n, m, _)| (n.as_str(), *m))
    }

    /// Writes the program's configuration (enables or disables steering).
    pub fn configure(&self, enabled: bool, s: &XdpSettings) -> Result<(), XdpError> {
        let mut flags = if enabled { HR_CFG_ENABLED } else { 0 };
        if s.bypass_address {
            flags |= HR_CFG_BYPASS_ADDRESS;
        }
        if s.fast_path {
            flags |= HR_CFG_FAST_PATH;
        }
        if s.complete_csum {
            flags |= HR_CFG_COMPLETE_CSUM;
        }
        let cfg = HrXdpConfig {
            flags,
            node_ip4: s
                .node_ip4
                .map(|a| u32::from_ne_bytes(a.octets()))
                .unwrap_or(0),
            exchange_port: s.exchange_port.to_be(),
            _pad: 0,
            max_len: s.max_len,
            fp_gen: s.fp_gen,
            egress_mtu: s.egress_mtu,
            underlay_mtu: s.underlay_mtu,
            local_ip4: s
                .local_ip4
                .map(|a| u32::from_ne_bytes(a.octets()))
                .unwrap_or(0),
            encap_port: s.encap_port.to_be(),
            host_mac: s.host_mac,
        };
        self.skel
            .maps
            .hr_config
            .update(&0u32.to_ne_bytes(), cfg.as_bytes(), MapFlags::ANY)
            .map_err(|source| XdpError::Map {
                map: "hr_config",
                source,
            })
    }

    /// Runs the program once over `frame` (BPF_PROG_TEST_RUN, nothing is
    /// transmitted): its return code and the frame as it left the program.
    pub fn test_run(&self, frame: &[u8]) -> Result<(u32, Vec<u8>), XdpError> {
        let mut out = vec![0u8; frame.len() + 512];
        let input = libbpf_rs::ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        };
        let o = self
            .skel
            .progs
            .headroom_xdp
            .test_run(input)
            .map_err(XdpError::Load)?;
        let rc = o.return_value;
        let n = o.data.map_or(0, |d| d.len());
        out.truncate(n);
        Ok((rc, out))
    }

    /// Sets the underlay addresses of the pool's nodes: encapsulated frames
    /// are decapsulated by the fast path only from these.
    pub fn set_peers(&self, peers: &[Ipv4Addr]) -> Result<(), XdpError> {
        let map = &self.skel.maps.peers;
        let err = |source| XdpError::Map {
            map: "peers",
            source,
        };
        let want: Vec<[u8; 4]> = peers.iter().map(|p| p.octets()).collect();
        let have: Vec<Vec<u8>> = map.keys().collect();
        for k in have {
            if !want.iter().any(|w| w[..] == k[..]) {
                map.delete(&k).map_err(err)?;
            }
        }
        for (i, w) in want.iter().enumerate() {
            map.update(w, &(i as u32).to_ne_bytes(), MapFlags::ANY)
                .map_err(err)?;
        }
        Ok(())
    }

    /// Frames the fast path encapsulated and decapsulated here.
    pub fn fast_director(&self) -> Result<(HrCounter, HrCounter), XdpError> {
        Ok((
            Self::percpu_sum(
                &self.skel.maps.fp_stats,
                "fp_stats",
                abi::HR_FP_ENCAPSULATED,
            )?,
            Self::percpu_sum(
                &self.skel.maps.fp_stats,
                "fp_stats",
                abi::HR_FP_DECAPSULATED,
            )?,
        ))
    }

    /// Sets the interfaces fast-path frames leave by: `other` for frames
    /// forwarded, `own` (the one the program is attached to) for frames
    /// encapsulated back out.
    pub fn set_egress(&self, other: u32, own: u32) -> Result<(), XdpError> {
        for (slot, ifindex) in [(0u32, other), (1, own)] {
            self.skel
                .maps
                .tx_port
                .update(&slot.to_ne_bytes(), &ifindex.to_ne_bytes(), MapFlags::ANY)
                .map_err(|source| XdpError::Map {
                    map: "tx_port",
                    source,
                })?;
        }
        Ok(())
    }

    /// A handle on the fast-path flow table (for a worker).
    pub fn flow_map(&self) -> Result<FlowMap, XdpError> {
        FlowMap::dup(self.skel.maps.flows.as_fd()).map_err(|e| XdpError::Map {
            map: "flows",
            source: libbpf_rs::Error::from(e),
        })
    }

    fn percpu_sum(
        map: &libbpf_rs::Map<'_>,
        name: &'static str,
        slot: u32,
    ) -> Result<HrCounter, XdpError> {
        let mut out = HrCounter::default();
        let per_cpu = map
            .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| XdpError::Map { map: name, source })?
            .unwrap_or_default();
        for v in per_cpu {
            let c = HrCounter::from_bytes(&v);
            out.packets += c.packets;
            out.bytes += c.bytes;
        }
        Ok(out)
    }

    /// Packets and bytes of `job` the fast path forwarded on this interface.
    pub fn fast_job(&self, job: u16) -> Result<HrCounter, XdpError> {
        if usize::from(job) >= HR_MAX_JOBS {
            return Ok(HrCounter::default());
        }
        Self::percpu_sum(&self.skel.maps.job_stats, "job_stats", u32::from(job))
    }

    /// Fast-path misses by reason.
    pub fn fast_misses(&self) -> Result<Vec<(&'static str, HrCounter)>, XdpError> {
        debug_assert!(FpMiss::ALL.len() < HR_FP_STAT_MAX);
        FpMiss::ALL
            .iter()
            .map(|m| {
                Ok((
                    m.name(),
                    Self::percpu_sum(&self.skel.maps.fp_stats, "fp_stats", *m as u32)?,
                ))
            })
            .collect()
    }

    /// Partial checksums the fast path completed.
    pub fn fast_checksums_completed(&self) -> Result<HrCounter, XdpError> {
        Self::percpu_sum(&self.skel.maps.fp_stats, "fp_stats", HR_FP_CSUM_COMPLETED)
    }

    /// Steers receive queue `queue` to the AF_XDP socket `fd`.
    pub fn register_socket(&self, queue: u32, fd: RawFd) -> Result<(), XdpError> {
        self.skel
            .maps
            .xsks
            .update(
                &queue.to_ne_bytes(),
                &(fd as u32).to_ne_bytes(),
                MapFlags::ANY,
            )
            .map_err(|source| XdpError::Map {
                map: "xsks",
                source,
            })
    }

    /// Stops steering `queue` (its frames pass to the kernel).
    pub fn unregister_socket(&self, queue: u32) -> Result<(), XdpError> {
        self.skel
            .maps
            .xsks
            .delete(&queue.to_ne_bytes())
            .map_err(|source| XdpError::Map {
                map: "xsks",
                source,
            })
    }

    /// Per-verdict counters summed over CPUs.
    pub fn verdicts(&self) -> Result<[HrCounter; HR_V_MAX], XdpError> {
        let mut out = [HrCounter::default(); HR_V_MAX];
        for (i, slot) in out.iter_mut().enumerate() {
            let per_cpu = self
                .skel
                .maps
                .verdicts
                .lookup_percpu(&(i as u32).to_ne_bytes(), MapFlags::ANY)
                .map_err(|source| XdpError::Map {
                    map: "verdicts",
                    source,
                })?
                .unwrap_or_default();
            for v in per_cpu {
                let c = HrCounter::from_bytes(&v);
                slot.packets += c.packets;
                slot.bytes += c.bytes;
            }
        }
        Ok(out)
    }

    /// Verdict counters with their names, for status and metrics.
    pub fn named_verdicts(&self) -> Result<Vec<(&'static str, HrCounter)>, XdpError> {
        let v = self.verdicts()?;
        Ok(Verdict::ALL
            .iter()
            .map(|&k| (k.name(), v[k as usize]))
            .collect())
    }
}

/// `bpf_link_create(BPF_XDP)` with an explicit mode flag, so native and
/// generic attachment can be told apart (libbpf-rs' attach_xdp lets the
/// kernel pick silently).
fn link_create(prog_fd: RawFd, ifindex: i32, mode: AttachMode) -> Result<OwnedFd, std::io::Error> {
    let flags = match mode {
        AttachMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
        AttachMode::Generic => libbpf_sys::XDP_FLAGS_SKB_MODE,
    };
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        flags,
        ..Default::default()
    };
    // SAFETY: `opts` is a fully initialised options struct whose `sz` matches
    // its size; the fds are plain integers the kernel validates.
    let fd = unsafe { libbpf_sys::bpf_link_create(prog_fd, ifindex, libbpf_sys::BPF_XDP, &opts) };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: the kernel just returned this new fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
