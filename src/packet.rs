//! The AF_PACKET socket: raw Ethernet frames through the kernel on one
//! interface. The daemon sends its gratuitous ARPs with it (XDP only sees
//! received frames, so frames of our own leave through the kernel); the lab
//! sends and receives its ARP probes with it.
//!
//! Written against `nix`; the one piece it lacks is a constructor for the
//! link-layer address `bind` takes, hence the one `unsafe` below.

use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
    time::Duration,
};

use nix::{
    net::if_::if_nametoindex,
    poll::{poll, PollFd, PollFlags, PollTimeout},
    sys::socket::{
        bind, recv, send, socket, AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType,
        SockaddrLike,
    },
};

/// ARP's EtherType.
pub const ETH_P_ARP: u16 = 0x0806;

/// A raw packet socket bound to one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl PacketSocket {
    /// Opens a socket on `ifname` that receives frames of EtherType
    /// `protocol` (None: receives nothing, for sending only).
    pub fn open(ifname: &str, protocol: Option<u16>) -> io::Result<Self> {
        let ifindex = if_nametoindex(ifname)?;
        // Protocol 0 at creation: nothing is queued before `bind` has
        // narrowed the socket to one interface.
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let sll = nix::libc::sockaddr_ll {
            sll_family: nix::libc::AF_PACKET as u16,
            sll_protocol: protocol.unwrap_or(0).to_be(),
            sll_ifindex: ifindex as i32,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: `sll` is a fully initialised sockaddr_ll and the length
        // passed is its size; `from_raw` only copies it.
        let addr = unsafe {
            LinkAddr::from_raw(
                (&sll as *const nix::libc::sockaddr_ll).cast(),
                Some(std::mem::size_of::<nix::libc::sockaddr_ll>() as nix::libc::socklen_t),
            )
        }
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        debug_assert_eq!(addr.family(), Some(AddressFamily::Packet));
        bind(fd.as_raw_fd(), &addr)?;
        Ok(PacketSocket { fd })
    }

    /// Sends one whole frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let n = send(self.fd.as_raw_fd(), frame, MsgFlags::empty())?;
        if n != frame.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "frame cut short"));
        }
        Ok(())
    }

    /// Waits up to `timeout` for a frame; its length, or None on timeout.
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        let ms = timeout.as_millis().clamp(1, u128::from(u16::MAX)) as u16;
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&self.fd),
            PollFlags::POLLIN,
        )];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        match recv(self.fd.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => Ok(Some(n)),
            Err(nix::errno::Errno::EAGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
