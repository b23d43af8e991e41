//! The XDP steering program: loading, attaching (fail-open bpf_link), the
//! socket map, the config map and the per-verdict counters.

pub mod abi;

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

use abi::{HrCounter, HrXdpConfig, Verdict, HR_CFG_ENABLED, HR_V_MAX};

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
    /// Opens and loads the embedded program.
    pub fn load() -> Result<Self, XdpError> {
        // The skeleton borrows its object storage for its whole life; one
        // program lives as long as the daemon, so the storage is leaked once.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let open = skel::HeadroomSkelBuilder::default()
            .open(storage)
            .map_err(XdpError::Load)?;
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
    pub fn configure(&self, enabled: bool, node_ip4: Option<Ipv4Addr>) -> Result<(), XdpError> {
        let cfg = HrXdpConfig {
            flags: if enabled { HR_CFG_ENABLED } else { 0 },
            node_ip4: node_ip4
                .map(|a| u32::from_ne_bytes(a.octets()))
                .unwrap_or(0),
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
