//! IPv6 (RFC 8200): the fixed header and a bounded walk over the common extension headers
//! (hop-by-hop options, routing, fragment, destination options) to the upper layer.

use std::net::Ipv6Addr;

use super::checksum;
use super::field::*;
use super::ipv4::protocol;
use super::{Layer, ParseError};

/// Fixed header length.
pub const HEADER_LEN: usize = 40;

/// Extension headers walked before giving up with
/// [`ParseError::TooManyExtensionHeaders`].
pub const MAX_EXT_HEADERS: usize = 8;

/// Where the upper-layer header is, found by [`Ipv6Packet::upper_layer`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UpperLayer {
    /// Upper-layer protocol (the last Next Header value), e.g. 6 for TCP. 59 ("no next
    /// header") if the chain ends without one.
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    pub offset: usize,
    /// True if a fragment header was present.
    pub is_fragment: bool,
    /// True if the upper-layer header is present at `offset`: false for a fragment with a
    /// non-zero offset (later fragments carry no upper-layer header).
    pub has_l4_header: bool,
}

/// A view of an IPv6 packet.
///
/// `new_checked` guarantees version 6 and that the 40-byte header and `payload_len` bytes
/// of payload are inside the buffer (which may be longer: padding is ignored). Extension
/// headers are validated lazily by [`Ipv6Packet::upper_layer`].
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Validate the version and payload length against the buffer.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        let len = buf.as_ref().len();
        Self::new_checked_wire(buf, len)
    }

    /// [`Ipv6Packet::new_checked`] for the first buffer of a multi-buffer packet:
    /// the fixed header must be inside `buf`, the payload length inside
    /// `wire_len` (the packet's length over all buffers). Extension headers
    /// must still lie in `buf` ([`Ipv6Packet::upper_layer`] checks).
    pub fn new_checked_wire(buf: T, wire_len: usize) -> Result<Self, ParseError> {
        let b = buf.as_ref();
        let wire_len = wire_len.max(b.len());
        if b.len() < HEADER_LEN {
            return Err(ParseError::Truncated { layer: Layer::Ipv6 });
        }
        if b[0] >> 4 != 6 {
            return Err(ParseError::BadVersion { layer: Layer::Ipv6 });
        }
        if wire_len < HEADER_LEN + u16_at(b, 4) as usize {
            return Err(ParseError::Truncated { layer: Layer::Ipv6 });
        }
        Ok(Self { buf })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Version nibble (6).
    pub fn version(&self) -> u8 {
        u8_at(self.buf.as_ref(), 0) >> 4
    }

    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        (u16_at(self.buf.as_ref(), 0) >> 4) as u8
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        u32_at(self.buf.as_ref(), 0) & 0x000f_ffff
    }

    /// Payload length (everything after the fixed header, extension headers included).
    pub fn payload_len(&self) -> u16 {
        u16_at(self.buf.as_ref(), 4)
    }

    /// Total length: 40 + payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len() as usize
    }

    /// The Next Header field of the fixed header.
    pub fn next_header(&self) -> u8 {
        u8_at(self.buf.as_ref(), 6)
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        u8_at(self.buf.as_ref(), 7)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array_at::<16>(self.buf.as_ref(), 8))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array_at::<16>(self.buf.as_ref(), 24))
    }

    /// Source address bytes.
    pub fn src_bytes(&self) -> [u8; 16] {
        array_at(self.buf.as_ref(), 8)
    }

    /// Destination address bytes.
    pub fn dst_bytes(&self) -> [u8; 16] {
        array_at(self.buf.as_ref(), 24)
    }

    /// Everything after the fixed header up to the payload length.
    pub fn payload(&self) -> &[u8] {
        slice(self.buf.as_ref(), HEADER_LEN, self.total_len())
    }

    /// Walk hop-by-hop, routing, fragment and destination-options headers (at most
    /// [`MAX_EXT_HEADERS`]) to find the upper-layer protocol and its offset. Every
    /// extension header must lie inside the payload length.
    pub fn upper_layer(&self) -> Result<UpperLayer, ParseError> {
        let b = slice(self.buf.as_ref(), 0, self.total_len());
        let mut nh = self.next_header();
        let mut off = HEADER_LEN;
        let mut is_fragment = false;
        let mut has_l4 = true;
        for _ in 0..MAX_EXT_HEADERS {
            match nh {
                protocol::HOPOPT | protocol::IPV6_ROUTE | protocol::IPV6_OPTS => {
                    if b.len() < off + 8 {
                        return Err(ParseError::Truncated {
                            layer: Layer::Ipv6Ext,
                        });
                    }
                    let len = (u8_at(b, off + 1) as usize + 1) * 8;
                    if b.len() < off + len {
                        return Err(ParseError::Truncated {
                            layer: Layer::Ipv6Ext,
                        });
                    }
                    nh = u8_at(b, off);
                    off += len;
                }
                protocol::IPV6_FRAG => {
                    if b.len() < off + 8 {
                        return Err(ParseError::Truncated {
                            layer: Layer::Ipv6Ext,
                        });
                    }
                    is_fragment = true;
                    if u16_at(b, off + 2) & 0xfff8 != 0 {
                        has_l4 = false;
                    }
                    nh = u8_at(b, off);
                    off += 8;
                }
                _ => {
                    return Ok(UpperLayer {
                        protocol: nh,
                        offset: off,
                        is_fragment,
                        has_l4_header: has_l4 && nh != protocol::IPV6_NONXT,
                    })
                }
            }
        }
        match nh {
            protocol::HOPOPT | protocol::IPV6_ROUTE | protocol::IPV6_OPTS | protocol::IPV6_FRAG => {
                Err(ParseError::TooManyExtensionHeaders)
            }
            _ => Ok(UpperLayer {
                protocol: nh,
                offset: off,
                is_fragment,
                has_l4_header: has_l4 && nh != protocol::IPV6_NONXT,
            }),
        }
    }

    /// The pseudo-header sum for an upper-layer packet of `l4_len` bytes and protocol
    /// `next_header` (RFC 8200 8.1; the routing-header final destination is not applied).
    pub fn pseudo_header_sum(&self, next_header: u8, l4_len: u32) -> u32 {
        checksum::pseudo_header_v6(self.src_bytes(), self.dst_bytes(), next_header, l4_len)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Set the traffic class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let v = (u16_at(self.buf.as_ref(), 0) & 0xf00f) | ((tc as u16) << 4);
        set_u16(self.buf.as_mut(), 0, v);
    }
    /// Set the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 7, v);
    }
    /// Set the next header of the fixed header.
    pub fn set_next_header(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 6, v);
    }
    /// Set the source address.
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        set_bytes(self.buf.as_mut(), 8, &a.octets());
    }
    /// Set the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        set_bytes(self.buf.as_mut(), 24, &a.octets());
    }
    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let t = self.total_len();
        slice_mut(self.buf.as_mut(), HEADER_LEN, t)
    }
}

/// A fixed IPv6 header, for building packets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header.
    pub next_header: u8,
    /// Payload length.
    pub payload_len: u16,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// A header with hop limit 64, traffic class 0 and flow label 0.
    pub const fn new(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload_len: u16) -> Self {
        Self {
            src,
            dst,
            next_header,
            payload_len,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
    }

    /// Write the 40-byte header at the start of `buf`; returns 40.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ParseError> {
        if buf.len() < HEADER_LEN {
            return Err(ParseError::BufferTooSmall { layer: Layer::Ipv6 });
        }
        let w0 =
            (6u32 << 28) | ((self.traffic_class as u32) << 20) | (self.flow_label & 0x000f_ffff);
        set_u32(buf, 0, w0);
        set_u16(buf, 4, self.payload_len);
        set_u8(buf, 6, self.next_header);
        set_u8(buf, 7, self.hop_limit);
        set_bytes(buf, 8, &self.src.octets());
        set_bytes(buf, 24, &self.dst.octets());
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(next: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN];
        let mut r = Ipv6Repr::new(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            next,
            0,
        );
        r.payload_len = (ext.len() + l4.len()) as u16;
        r.traffic_class = 0xb8;
        r.flow_label = 0x12345;
        r.emit(&mut buf).unwrap();
        buf.extend_from_slice(ext);
        buf.extend_from_slice(l4);
        buf
    }

    #[test]
    fn fixed_header() {
        let buf = build(protocol::UDP, &[], &[0; 8]);
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            p.upper_layer().unwrap(),
            UpperLayer {
                protocol: protocol::UDP,
                offset: 40,
                is_fragment: false,
                has_l4_header: true
            }
        );
    }

    #[test]
    fn extension_chain() {
        // hop-by-hop (8 bytes) -> routing (16 bytes) -> dest opts (8) -> fragment (first) -> TCP
        let mut ext = vec![protocol::IPV6_ROUTE, 0, 0, 0, 0, 0, 0, 0];
        ext.extend_from_slice(&[
            protocol::IPV6_OPTS,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ]);
        ext.extend_from_slice(&[protocol::IPV6_FRAG, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[protocol::TCP, 0, 0x00, 0x01, 0, 0, 0, 1]); // offset 0, M=1
        let buf = build(protocol::HOPOPT, &ext, &[0; 20]);
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            p.upper_layer().unwrap(),
            UpperLayer {
                protocol: protocol::TCP,
                offset: 80,
                is_fragment: true,
                has_l4_header: true
            }
        );
        // A later fragment.
        let mut ext2 = ext.clone();
        ext2[34] = 0x01; // fragment offset 32 (<<3)
        let buf = build(protocol::HOPOPT, &ext2, &[0; 20]);
        let ul = Ipv6Packet::new_checked(&buf[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert!(ul.is_fragment && !ul.has_l4_header);
    }

    #[test]
    fn extension_truncated_and_too_many() {
        // Routing header claiming 16 bytes with only 8 present.
        let buf = build(
            protocol::IPV6_ROUTE,
            &[protocol::TCP, 1, 0, 0, 0, 0, 0, 0],
            &[],
        );
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            p.upper_layer().unwrap_err(),
            ParseError::Truncated {
                layer: Layer::Ipv6Ext
            }
        );
        // Header that ends inside 8 bytes.
        let buf = build(protocol::HOPOPT, &[protocol::TCP, 0, 0, 0], &[]);
        assert_eq!(
            Ipv6Packet::new_checked(&buf[..])
                .unwrap()
                .upper_layer()
                .unwrap_err(),
            ParseError::Truncated {
                layer: Layer::Ipv6Ext
            }
        );
        // Nine destination-options headers.
        let mut ext = Vec::new();
        for _ in 0..9 {
            ext.extend_from_slice(&[protocol::IPV6_OPTS, 0, 0, 0, 0, 0, 0, 0]);
        }
        let buf = build(protocol::IPV6_OPTS, &ext, &[]);
        assert_eq!(
            Ipv6Packet::new_checked(&buf[..])
                .unwrap()
                .upper_layer()
                .unwrap_err(),
            ParseError::TooManyExtensionHeaders
        );
        // No next header.
        let buf = build(protocol::IPV6_NONXT, &[], &[]);
        assert!(
            !Ipv6Packet::new_checked(&buf[..])
                .unwrap()
                .upper_layer()
                .unwrap()
                .has_l4_header
        );
    }

    #[test]
    fn malformed_and_setters() {
        let mut buf = build(protocol::UDP, &[], &[0; 8]);
        assert_eq!(
            Ipv6Packet::new_checked(&buf[..39]).unwrap_err(),
            ParseError::Truncated { layer: Layer::Ipv6 }
        );
        assert_eq!(
            Ipv6Packet::new_checked(&buf[..47]).unwrap_err(),
            ParseError::Truncated { layer: Layer::Ipv6 }
        );
        let mut b = buf.clone();
        b[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::BadVersion { layer: Layer::Ipv6 }
        );
        let mut p = Ipv6Packet::new_checked(&mut buf[..]).unwrap();
        p.set_traffic_class(0x10);
        p.set_hop_limit(1);
        p.set_src_addr(Ipv6Addr::LOCALHOST);
        p.set_dst_addr(Ipv6Addr::UNSPECIFIED);
        p.set_next_header(protocol::TCP);
        assert_eq!(
            (
                p.traffic_class(),
                p.flow_label(),
                p.hop_limit(),
                p.next_header()
            ),
            (0x10, 0x12345, 1, protocol::TCP)
        );
        assert_eq!(p.src_addr(), Ipv6Addr::LOCALHOST);
        assert_eq!(p.payload_mut().len(), 8);
    }
}
