//! A blocking netlink request/response channel.
//!
//! `rtnetlink` and `ethtool` (the async layers over the same
//! `netlink-packet-*` message crates) need an async runtime; a deployment is
//! a few dozen requests made once, in order, by a CLI or at daemon start, so
//! a blocking socket that sends one request and reads until its ACK, error
//! or end of dump is all it needs.

use std::io;

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_sys::{Socket, SocketAddr};

/// One netlink socket (route or generic) in the caller's network namespace.
pub struct Channel {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("seq", &self.seq).finish()
    }
}

impl Channel {
    /// Opens a socket of `protocol` (`netlink_sys::protocols::NETLINK_*`).
    pub fn open(protocol: isize) -> io::Result<Self> {
        let mut sock = Socket::new(protocol)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Errors carry the kernel's explanation (extended ACK) where it has one.
        let _ = sock.set_ext_ack(true);
        Ok(Self {
            sock,
            seq: 0,
            buf: vec![0; 1 << 16],
        })
    }

    /// Sends `msg` as a request expecting an ACK; returns the messages the
    /// kernel answered before the ACK (none for most changes, one for a get).
    pub fn request<T>(&mut self, msg: T, flags: u16) -> io::Result<Vec<T>>
    where
        T: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
    {
        self.exchange(msg, NLM_F_REQUEST | NLM_F_ACK | flags)
    }

    /// Sends `msg` as a dump request; returns every message of the dump.
    pub fn dump<T>(&mut self, msg: T) -> io::Result<Vec<T>>
    where
        T: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
    {
        self.exchange(msg, NLM_F_REQUEST | NLM_F_DUMP)
    }

    fn exchange<T>(&mut self, msg: T, flags: u16) -> io::Result<Vec<T>>
    where
        T: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
    {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        self.sock.send(&out, 0)?;
        let mut answers = Vec::new();
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let m = NetlinkMessage::<T>::deserialize(&self.buf[off..n]).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {e}"))
                })?;
                let len = m.header.length as usize;
                let seq = m.header.sequence_number;
                off += len.max(16);
                if seq != self.seq {
                    continue; // a stale answer to an earlier request
                }
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(_) => Err(e.to_io()),
                        };
                    }
                    NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                    _ => {}
                }
            }
        }
    }
}
