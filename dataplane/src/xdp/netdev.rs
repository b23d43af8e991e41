//! What the dataplane needs to know about an interface: its receive-queue
//! count, MTU and driver, read with the ethtool and interface ioctls on a
//! socket in the caller's network namespace (`/sys/class/net` may show
//! another namespace's devices when the daemon was started with `nsenter`).
//! The queue count comes from [`headroom_config::machine::rx_queues`], so
//! `headroomd --check-config` checks `[workers] queues` against the same
//! number.
//!
//! Hand-written because the calls are three fixed-layout ioctls; the ethtool
//! crates on crates.io wrap the netlink API behind an async runtime the
//! daemon does not otherwise need.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
const ETHTOOL_GGRO: u32 = 0x0000_002b;
const ETHTOOL_GSSET_INFO: u32 = 0x0000_0037;
const ETHTOOL_GSTRINGS: u32 = 0x0000_001b;
const ETHTOOL_GSTATS: u32 = 0x0000_001d;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;

/// `struct ethtool_drvinfo`.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// Facts about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netdev {
    /// Interface name.
    pub name: String,
    /// Receive queues in use (rx-only plus combined channels).
    pub rx_queues: u32,
    /// Whether the driver reported its channels (otherwise one queue is
    /// assumed).
    pub channels_known: bool,
    /// MTU, bytes.
    pub mtu: u32,
    /// Driver name ("veth", "mlx5_core", ...), empty if unknown.
    pub driver: String,
}

impl Netdev {
    /// Reads the facts of `name`.
    pub fn read(name: &str) -> io::Result<Netdev> {
        let sock = Socket::new()?;
        let mtu = sock.mtu(name)?;
        // The same count `--check-config` checks `[workers] queues` against.
        let q = headroom_config::machine::rx_queues(name)?;
        let (rx_queues, channels_known) = (q.count, q.known);
        let driver = sock.driver(name).unwrap_or_default();
        Ok(Netdev {
            name: name.to_string(),
            rx_queues,
            channels_known,
            mtu,
            driver,
        })
    }

    /// The driver's statistics (`ethtool -S`), by name.
    pub fn stats(name: &str) -> io::Result<Vec<(String, u64)>> {
        Socket::new()?.stats(name)
    }

    /// Whether GRO is on (`ethtool -k`: generic-receive-offload).
    pub fn gro(name: &str) -> io::Result<bool> {
        let mut v = [ETHTOOL_GGRO, 0u32];
        Socket::new()?.ethtool(name, &mut v)?;
        Ok(v[1] != 0)
    }

    /// The name of interface `index` in this namespace.
    pub fn name_of(index: u32) -> Option<String> {
        let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname may write.
        let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
        if p.is_null() {
            return None;
        }
        // SAFETY: on success the kernel wrote a NUL-terminated name into `buf`.
        let c = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        Some(c.to_string_lossy().into_owned())
    }

    /// For a veth: its peer, if the peer lives in this namespace (its name).
    pub fn veth_peer_here(&self) -> Option<String> {
        if self.driver != "veth" {
            return None;
        }
        let stat = |n: &str, key: &str| {
            Self::stats(n)
                .ok()?
                .into_iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
        };
        let peer_index = stat(&self.name, "peer_ifindex")? as u32;
        let me = nix::net::if_::if_nametoindex(self.name.as_str()).ok()?;
        let peer = Self::name_of(peer_index)?;
        // The index is the peer's in its own namespace: it names the peer
        // here only if that device points back at us.
        (stat(&peer, "peer_ifindex")? as u32 == me).then_some(peer)
    }

    /// Whether frames received on this interface may carry checksums left
    /// partial by a local stack (a veth's peer hands its skbs over as they
    /// are; a physical NIC's frames come off the wire complete).
    pub fn may_carry_partial_checksums(&self) -> bool {
        matches!(self.driver.as_str(), "veth" | "tun" | "virtio_net" | "")
    }
}

struct Socket(OwnedFd);

impl Socket {
    fn new() -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd; nothing else owns it.
        Ok(Socket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ifreq(name: &str) -> io::Result<libc::ifreq> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name {name:?} is not 1..{} bytes", libc::IFNAMSIZ),
            ));
        }
        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        Ok(req)
    }

    fn ethtool<T: ?Sized>(&self, name: &str, data: &mut T) -> io::Result<()> {
        let mut req = Self::ifreq(name)?;
        req.ifr_ifru.ifru_data = (data as *mut T).cast::<libc::c_char>();
        // SAFETY: SIOCETHTOOL reads the command from `data` and writes at
        // most `size_of::<T>()` bytes into it; `T` is the repr(C) struct the
        // command's ABI defines, and both `req` and `data` outlive the call.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), SIOCETHTOOL, &mut req) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn stats(&self, name: &str) -> io::Result<Vec<(String, u64)>> {
        // struct ethtool_sset_info: cmd, reserved, sset_mask, then one u32
        // per set in the mask.
        let mut info = [0u64; 3];
        info[0] = u64::from(ETHTOOL_GSSET_INFO);
        info[1] = 1 << ETH_SS_STATS;
        self.ethtool(name, &mut info)?;
        let n = (info[2] & 0xffff_ffff) as usize;
        if n == 0 || n > 65536 {
            return Ok(Vec::new());
        }
        // struct ethtool_gstrings: cmd, string_set, len, then the strings.
        let mut strings = vec![0u8; 12 + n * ETH_GSTRING_LEN];
        strings[0..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
        strings[4..8].copy_from_slice(&ETH_SS_STATS.to_ne_bytes());
        strings[8..12].copy_from_slice(&(n as u32).to_ne_bytes());
        self.ethtool_buf(name, &mut strings)?;
        // struct ethtool_stats: cmd, n_stats, then u64 values.
        let mut stats = vec![0u64; 1 + n];
        stats[0] = u64::from(ETHTOOL_GSTATS) | ((n as u64) << 32);
        self.ethtool(name, &mut stats[..])?;
        Ok((0..n)
            .map(|i| {
                let raw = &strings[12 + i * ETH_GSTRING_LEN..12 + (i + 1) * ETH_GSTRING_LEN];
                let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                (
                    String::from_utf8_lossy(&raw[..end]).into_owned(),
                    stats[1 + i],
                )
            })
            .collect())
    }

    fn ethtool_buf(&self, name: &str, buf: &mut [u8]) -> io::Result<()> {
        let mut req = Self::ifreq(name)?;
        req.ifr_ifru.ifru_data = buf.as_mut_ptr().cast();
        // SAFETY: the command's header at the start of `buf` says how much
        // the kernel may write (the caller sized `buf` for it); both outlive
        // the call.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), SIOCETHTOOL, &mut req) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn driver(&self, name: &str) -> io::Result<String> {
        // SAFETY: plain data; all-zero is valid.
        let mut d: EthtoolDrvinfo = unsafe { std::mem::zeroed() };
        d.cmd = ETHTOOL_GDRVINFO;
        self.ethtool(name, &mut d)?;
        let end = d.driver.iter().position(|&b| b == 0).unwrap_or(32);
        Ok(String::from_utf8_lossy(&d.driver[..end]).into_owned())
    }

    fn mtu(&self, name: &str) -> io::Result<u32> {
        let mut req = Self::ifreq(name)?;
        // SAFETY: SIOCGIFMTU fills `ifru_mtu` of a valid ifreq naming the
        // interface; `req` outlives the call.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("interface {name}: {e}")));
        }
        // SAFETY: SIOCGIFMTU succeeded, so the mtu member is the one set.
        Ok(unsafe { req.ifr_ifru.ifru_mtu } as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_statistics_and_peer_are_read() {
        // A veth pair in a namespace of its own: needs root (the full test
        // suite runs as root; the unprivileged lint-and-unit run skips it).
        if !nix::unistd::geteuid().is_root() {
            eprintln!("needs root: creates a network namespace");
            return;
        }
        let ns = format!("hr-netdev-{}", std::process::id());
        let run = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        assert!(run(&["netns", "add", &ns]));
        let ok = run(&[
            "-n", &ns, "link", "add", "nda", "type", "veth", "peer", "name", "ndb",
        ]);
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                let a = Netdev::read("nda").unwrap();
                let stats = Netdev::stats("nda").unwrap();
                (
                    a.driver.clone(),
                    stats.iter().any(|(k, _)| k == "tx_queue_0_xdp_xmit_errors"),
                    a.veth_peer_here(),
                    Netdev::gro("nda").unwrap(),
                )
            })
            .join()
        });
        run(&["netns", "del", &ns]);
        assert!(ok);
        let (driver, has_errors, peer, gro) = result.unwrap();
        assert_eq!(driver, "veth");
        assert!(has_errors);
        assert_eq!(peer.as_deref(), Some("ndb"));
        assert!(!gro, "a fresh veth has GRO off");
    }

    #[test]
    fn loopback_is_readable() {
        let lo = Netdev::read("lo").expect("lo exists in every namespace");
        assert!(lo.mtu >= 1500);
        assert!(lo.rx_queues >= 1);
        assert!(Netdev::read("no-such-if0").is_err());
        assert!(Netdev::read("").is_err());
    }
}
