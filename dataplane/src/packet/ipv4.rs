//! IPv4 (RFC 791): header with options (via IHL) and fragmentation fields.

use std::net::Ipv4Addr;

use super::checksum;
use super::field::*;
use super::{Layer, ParseError};

/// Minimum (option-less) header length.
pub const MIN_HEADER_LEN: usize = 20;

/// IP protocol numbers used by Headroom.
pub mod protocol {
    /// IPv6 hop-by-hop options (extension header).
    pub const HOPOPT: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 routing header.
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 fragment header.
    pub const IPV6_FRAG: u8 = 44;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 destination options.
    pub const IPV6_OPTS: u8 = 60;
}

/// A view of an IPv4 packet.
///
/// `new_checked` guarantees: version 4, IHL >= 5, the header (with options) and the
/// whole datagram (`total_len`) are inside the buffer, and `total_len >= header_len`.
/// The buffer may be longer than `total_len` (Ethernet padding): [`Ipv4Packet::payload`]
/// stops at `total_len`. The checksum is *not* verified (see
/// [`Ipv4Packet::verify_checksum`]).
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Validate the version and length fields against the buffer.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        let len = buf.as_ref().len();
        Self::new_checked_wire(buf, len)
    }

    /// [`Ipv4Packet::new_checked`] for the first buffer of a multi-buffer packet:
    /// the header must be inside `buf`, the datagram (`total_len`) inside
    /// `wire_len` bytes (the packet's length over all its buffers, at least
    /// `buf.len()`). Payload accessors stop at the end of `buf`.
    pub fn new_checked_wire(buf: T, wire_len: usize) -> Result<Self, ParseError> {
        let b = buf.as_ref();
        let wire_len = wire_len.max(b.len());
        if b.len() < MIN_HEADER_LEN {
            return Err(ParseError::Truncated { layer: Layer::Ipv4 });
        }
        if b[0] >> 4 != 4 {
            return Err(ParseError::BadVersion { layer: Layer::Ipv4 });
        }
        let hl = ((b[0] & 0x0f) as usize) * 4;
        if hl < MIN_HEADER_LEN {
            return Err(ParseError::BadHeaderLength { layer: Layer::Ipv4 });
        }
        if b.len() < hl {
            return Err(ParseError::Truncated { layer: Layer::Ipv4 });
        }
        let total = u16_at(b, 2) as usize;
        if total < hl {
            return Err(ParseError::BadLength { layer: Layer::Ipv4 });
        }
        if wire_len < total {
            return Err(ParseError::Truncated { layer: Layer::Ipv4 });
        }
        Ok(Self { buf })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Version nibble (4).
    pub fn version(&self) -> u8 {
        u8_at(self.buf.as_ref(), 0) >> 4
    }

    /// Header length in bytes (IHL x 4), including options.
    pub fn header_len(&self) -> usize {
        ((u8_at(self.buf.as_ref(), 0) & 0x0f) as usize) * 4
    }

    /// DSCP (6 bits).
    pub fn dscp(&self) -> u8 {
        u8_at(self.buf.as_ref(), 1) >> 2
    }

    /// ECN (2 bits).
    pub fn ecn(&self) -> u8 {
        u8_at(self.buf.as_ref(), 1) & 3
    }

    /// Total length of the datagram (header + payload).
    pub fn total_len(&self) -> u16 {
        u16_at(self.buf.as_ref(), 2)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        u16_at(self.buf.as_ref(), 4)
    }

    /// The DF flag.
    pub fn dont_frag(&self) -> bool {
        u16_at(self.buf.as_ref(), 6) & 0x4000 != 0
    }

    /// The MF flag.
    pub fn more_frags(&self) -> bool {
        u16_at(self.buf.as_ref(), 6) & 0x2000 != 0
    }

    /// Fragment offset in bytes (the field x 8).
    pub fn frag_offset(&self) -> u16 {
        (u16_at(self.buf.as_ref(), 6) & 0x1fff).wrapping_mul(8)
    }

    /// True if the datagram is a fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        u16_at(self.buf.as_ref(), 6) & 0x3fff != 0
    }

    /// True if the payload starts with the upper-layer header: not a fragment, or the
    /// first fragment. Later fragments carry no L4 header.
    pub fn has_l4_header(&self) -> bool {
        u16_at(self.buf.as_ref(), 6) & 0x1fff == 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        u8_at(self.buf.as_ref(), 8)
    }

    /// Upper-layer protocol.
    pub fn protocol(&self) -> u8 {
        u8_at(self.buf.as_ref(), 9)
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        u16_at(self.buf.as_ref(), 10)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.buf.as_ref(), 12))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.buf.as_ref(), 16))
    }

    /// Options bytes (empty when IHL is 5).
    pub fn options(&self) -> &[u8] {
        slice(self.buf.as_ref(), MIN_HEADER_LEN, self.header_len())
    }

    /// The payload: from the end of the header to `total_len` (padding excluded).
    pub fn payload(&self) -> &[u8] {
        slice(
            self.buf.as_ref(),
            self.header_len(),
            self.total_len() as usize,
        )
    }

    /// True if the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(slice(self.buf.as_ref(), 0, self.header_len())) == 0
    }

    /// The TCP/UDP pseudo-header sum for this packet's payload.
    pub fn pseudo_header_sum(&self) -> u32 {
        let b = self.buf.as_ref();
        checksum::pseudo_header_v4(
            array_at(b, 12),
            array_at(b, 16),
            self.protocol(),
            self.payload().len() as u16,
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Set DSCP and ECN.
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        set_u8(self.buf.as_mut(), 1, (dscp << 2) | (ecn & 3));
    }
    /// Set identification.
    pub fn set_ident(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 4, v);
    }
    /// Set the time to live.
    pub fn set_ttl(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 8, v);
    }
    /// Set the protocol.
    pub fn set_protocol(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 9, v);
    }
    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 10, v);
    }
    /// Set the source address (checksum not updated: see [`Ipv4Packet::fill_checksum`] or
    /// [`checksum::update_u32`]).
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        set_bytes(self.buf.as_mut(), 12, &a.octets());
    }
    /// Set the destination address (checksum not updated).
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        set_bytes(self.buf.as_mut(), 16, &a.octets());
    }
    /// Recompute the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(slice(self.buf.as_ref(), 0, self.header_len()));
        self.set_checksum(c);
    }
    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), self.total_len() as usize);
        slice_mut(self.buf.as_mut(), h, t)
    }
}

/// An option-less IPv4 header, for building packets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Upper-layer protocol.
    pub protocol: u8,
    /// Payload length (total length minus 20).
    pub payload_len: u16,
    /// Time to live.
    pub ttl: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// Identification.
    pub ident: u16,
    /// Set DF.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// A header with TTL 64, DF set, DSCP 0, ident 0.
    pub const fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload_len: u16) -> Self {
        Self {
            src,
            dst,
            protocol,
            payload_len,
            ttl: 64,
            dscp: 0,
            ident: 0,
            dont_frag: true,
        }
    }

    /// Write the 20-byte header (with a correct checksum) at the start of `buf`; returns 20.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ParseError> {
        if buf.len() < MIN_HEADER_LEN
            || self.payload_len as usize > u16::MAX as usize - MIN_HEADER_LEN
        {
            return Err(ParseError::BufferTooSmall { layer: Layer::Ipv4 });
        }
        let h = &mut buf[..MIN_HEADER_LEN];
        set_u8(h, 0, 0x45);
        set_u8(h, 1, self.dscp << 2);
        set_u16(h, 2, self.payload_len + MIN_HEADER_LEN as u16);
        set_u16(h, 4, self.ident);
        set_u16(h, 6, if self.dont_frag { 0x4000 } else { 0 });
        set_u8(h, 8, self.ttl);
        set_u8(h, 9, self.protocol);
        set_u16(h, 10, 0);
        set_bytes(h, 12, &self.src.octets());
        set_bytes(h, 16, &self.dst.octets());
        let c = checksum::checksum(h);
        set_u16(h, 10, c);
        Ok(MIN_HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut buf = vec![0u8; 28];
        Ipv4Repr::new(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            protocol::UDP,
            8,
        )
        .emit(&mut buf)
        .unwrap();
        buf
    }

    #[test]
    fn round_trip() {
        let mut buf = sample();
        buf.extend_from_slice(&[0; 6]); // Ethernet padding
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.protocol(), protocol::UDP);
        assert_eq!(p.ttl(), 64);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment() && p.has_l4_header());
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.payload().len(), 8);
        assert!(p.options().is_empty());
        assert!(p.verify_checksum());
    }

    #[test]
    fn setters_and_incremental_checksum() {
        let mut buf = sample();
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        let old = u32::from(p.src_addr());
        let new = Ipv4Addr::new(192, 168, 7, 9);
        p.set_src_addr(new);
        let c = checksum::update_u32(p.checksum(), old, u32::from(new));
        p.set_checksum(c);
        assert!(p.verify_checksum());
        p.set_ttl(3);
        p.set_dscp_ecn(46, 1);
        p.set_dst_addr(Ipv4Addr::new(1, 2, 3, 4));
        p.set_ident(77);
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!((p.ttl(), p.dscp(), p.ecn(), p.ident()), (3, 46, 1, 77));
        assert_eq!(p.payload_mut().len(), 8);
    }

    #[test]
    fn options_and_fragments() {
        let mut buf = [0u8; 32];
        buf[0] = 0x46; // IHL 6
        buf[2..4].copy_from_slice(&32u16.to_be_bytes());
        buf[6] = 0x20; // MF, offset 0
        buf[20..24].copy_from_slice(&[1, 1, 1, 0]);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload().len(), 8);
        assert!(p.is_fragment() && p.has_l4_header());
        buf[6] = 0x00;
        buf[7] = 0x03; // offset 24 bytes
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.is_fragment() && !p.has_l4_header());
        assert_eq!(p.frag_offset(), 24);
    }

    #[test]
    fn malformed() {
        let buf = sample();
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..19]).unwrap_err(),
            ParseError::Truncated { layer: Layer::Ipv4 }
        );
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..27]).unwrap_err(),
            ParseError::Truncated { layer: Layer::Ipv4 }
        );
        let mut b = buf.clone();
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::BadVersion { layer: Layer::Ipv4 }
        );
        for ihl in 0..5u8 {
            let mut b = buf.clone();
            b[0] = 0x40 | ihl;
            assert_eq!(
                Ipv4Packet::new_checked(&b[..]).unwrap_err(),
                ParseError::BadHeaderLength { layer: Layer::Ipv4 }
            );
        }
        let mut b = buf.clone();
        b[0] = 0x48; // 32-byte header in a 28-byte buffer
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::Truncated { layer: Layer::Ipv4 }
        );
        let mut b = buf.clone();
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::BadLength { layer: Layer::Ipv4 }
        );
    }
}
