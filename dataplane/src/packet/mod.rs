//! Zero-copy packet views and the single-pass frame parser of the packet path.
//!
//! Each header has a view `X<T: AsRef<[u8]>> { buf }` in the smoltcp style:
//! `X::new_checked(buf)` validates the lengths (and length fields) the accessors rely on,
//! accessors read fields in place and never panic, setters exist when `T: AsMut<[u8]>`,
//! and an `XRepr` struct with `emit` writes a fresh header into a buffer (for ARP replies,
//! encapsulation headers and test frames; see also [`build`]).
//!
//! The packet path calls [`parse_frame`] once per frame: one pass over the headers, no
//! allocation, returning offsets, the kind of frame and its [`FlowKey`].

pub mod arp;
pub mod build;
pub mod checksum;
mod error;
pub mod ethernet;
mod field;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod partial_checksum;
pub mod segment;
pub mod tcp;
pub mod udp;

pub use error::{ErrorKind, Layer, ParseError, ParseStats};

use crate::classifier::FlowKey;
use arp::ArpPacket;
use ethernet::{ethertype, EthernetFrame};
use icmp::IcmpPacket;
use ipv4::{protocol, Ipv4Packet};
use ipv6::Ipv6Packet;
use tcp::TcpSegment;
use udp::UdpDatagram;

/// What the frame carries at layer 3.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum L3Kind {
    /// ARP (Ethernet/IPv4).
    Arp,
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// Anything else (an unknown EtherType, an 802.3 length field, a third VLAN tag).
    Other,
}

/// The result of [`parse_frame`]. Offsets are from the start of the frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FrameInfo {
    /// The payload EtherType (after VLAN tags).
    pub ethertype: u16,
    /// VID of the outermost VLAN tag, if tagged.
    pub vlan: Option<u16>,
    /// Offset of the L3 header (14 + 4 per VLAN tag).
    pub l3_offset: u16,
    /// Offset of the upper-layer header (TCP, UDP, ICMP or any other IP protocol's
    /// header), after IPv4 options and IPv6 extension headers. `None` for non-IP frames,
    /// non-first fragments and IPv6 "no next header".
    pub l4_offset: Option<u16>,
    /// ARP, IPv4, IPv6 or other.
    pub kind: L3Kind,
    /// The wire 5-tuple for IPv4 and IPv6 frames (see [`FlowKey`] for ports of ICMP,
    /// other protocols and non-first fragments: 0).
    pub flow: Option<FlowKey>,
    /// TCP flags (0 if not TCP).
    pub tcp_flags: u8,
    /// IPv4 total length, IPv6 40 + payload length (saturated at 65535), 28 for ARP, or
    /// the bytes after the Ethernet header for other frames (saturated). Excludes
    /// Ethernet padding.
    pub l3_len: u16,
    /// True if the IP packet is a fragment (first or later).
    pub is_fragment: bool,
}

#[inline]
fn sat16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Ports and flags found in an upper-layer header.
#[derive(Default)]
struct L4 {
    sport: u16,
    dport: u16,
    flags: u8,
}

/// Read ports/flags of the upper-layer header at the start of `l4`. `fragmented` relaxes
/// the UDP length check for first fragments.
#[inline]
fn parse_l4(proto: u8, l4: &[u8], v6: bool, fragmented: bool) -> Result<L4, ParseError> {
    match proto {
        protocol::TCP => {
            let t = TcpSegment::new_checked(l4)?;
            Ok(L4 {
                sport: t.src_port(),
                dport: t.dst_port(),
                flags: t.flags(),
            })
        }
        protocol::UDP => {
            let u = if fragmented {
                UdpDatagram::new_checked_header(l4)?
            } else {
                UdpDatagram::new_checked(l4)?
            };
            Ok(L4 {
                sport: u.src_port(),
                dport: u.dst_port(),
                flags: 0,
            })
        }
        protocol::ICMP if !v6 => icmp_ports(l4, false),
        protocol::ICMPV6 if v6 => icmp_ports(l4, true),
        p if key_has_ports(p) => {
            // SCTP, DCCP, UDP-Lite: ports are the first four bytes.
            if l4.len() < 4 {
                return Err(ParseError::Truncated { layer: Layer::Udp });
            }
            Ok(L4 {
                sport: u16::from_be_bytes([l4[0], l4[1]]),
                dport: u16::from_be_bytes([l4[2], l4[3]]),
                flags: 0,
            })
        }
        _ => Ok(L4::default()),
    }
}

#[inline]
fn key_has_ports(p: u8) -> bool {
    crate::classifier::protocol_has_ports(p)
}

#[inline]
fn icmp_ports(l4: &[u8], v6: bool) -> Result<L4, ParseError> {
    let i = IcmpPacket::new_checked(l4)?;
    if icmp::is_echo(v6, i.msg_type()) {
        let id = i.echo_ident();
        Ok(L4 {
            sport: id,
            dport: id,
            flags: 0,
        })
    } else {
        Ok(L4::default())
    }
}

/// Parse an Ethernet frame in one pass without allocating: VLAN tags, ARP / IPv4 / IPv6
/// (options, extension headers, fragments), and the TCP/UDP/ICMP header if present.
///
/// Errors mean the frame is malformed at the reported layer (a header or a length it
/// declares does not fit, a bad version or header-length field, a non-Ethernet/IPv4 ARP).
/// Frames of unknown EtherType are not errors: they return [`L3Kind::Other`].
/// Checksums are not verified.
pub fn parse_frame(frame: &[u8]) -> Result<FrameInfo, ParseError> {
    parse_packet(frame, frame.len())
}

/// [`parse_frame`] for a packet that may span several buffers (jumbo frames and
/// aggregates arrive that way): `frame` is its first buffer, `wire_len` its length
/// over all buffers. Every header must lie in the first buffer; lengths the headers
/// declare are checked against `wire_len`.
pub fn parse_packet(frame: &[u8], wire_len: usize) -> Result<FrameInfo, ParseError> {
    let wire_len = wire_len.max(frame.len());
    let spans = wire_len > frame.len();
    let (et_off, vlan) = ethernet::walk_header(frame)?;
    let et = field::u16_at(frame, et_off);
    let l3_off = et_off + 2;
    let l3 = field::slice(frame, l3_off, frame.len());
    let mut info = FrameInfo {
        ethertype: et,
        vlan,
        l3_offset: l3_off as u16,
        l4_offset: None,
        kind: L3Kind::Other,
        flow: None,
        tcp_flags: 0,
        l3_len: 0,
        is_fragment: false,
    };
    match et {
        ethertype::IPV4 => {
            let ip = Ipv4Packet::new_checked_wire(l3, wire_len - l3_off)?;
            let proto = ip.protocol();
            info.kind = L3Kind::Ipv4;
            info.l3_len = ip.total_len();
            info.is_fragment = ip.is_fragment();
            let mut ports = L4::default();
            if ip.has_l4_header() {
                ports = parse_l4(proto, ip.payload(), false, info.is_fragment || spans)?;
                info.l4_offset = Some((l3_off + ip.header_len()) as u16);
            }
            info.tcp_flags = ports.flags;
            let b = l3;
            info.flow = Some(FlowKey::v4_bytes(
                proto,
                field::array_at(b, 12),
                field::array_at(b, 16),
                ports.sport,
                ports.dport,
            ));
        }
        ethertype::IPV6 => {
            let ip = Ipv6Packet::new_checked_wire(l3, wire_len - l3_off)?;
            let ul = ip.upper_layer()?;
            info.kind = L3Kind::Ipv6;
            info.l3_len = sat16(ip.total_len());
            info.is_fragment = ul.is_fragment;
            let mut ports = L4::default();
            if ul.has_l4_header {
                let l4 = field::slice(l3, ul.offset, ip.total_len());
                ports = parse_l4(ul.protocol, l4, true, ul.is_fragment || spans)?;
                info.l4_offset =
                    Some(
                        u16::try_from(l3_off + ul.offset).map_err(|_| ParseError::BadLength {
                            layer: Layer::Ipv6Ext,
                        })?,
                    );
            }
            info.tcp_flags = ports.flags;
            info.flow = Some(FlowKey::v6_bytes(
                ul.protocol,
                ip.src_bytes(),
                ip.dst_bytes(),
                ports.sport,
                ports.dport,
            ));
        }
        ethertype::ARP => {
            ArpPacket::new_checked(l3)?;
            info.kind = L3Kind::Arp;
            info.l3_len = arp::ARP_LEN as u16;
        }
        _ => {
            info.l3_len = sat16(wire_len - l3_off);
        }
    }
    Ok(info)
}

/// The fuzz target's body (also run by unit tests over the seed corpus and random bytes):
/// runs [`parse_frame`], checks the consistency of its result, and exercises every view's
/// accessors and setters on `data` and on the offsets found. Panics only on a bug.
pub fn fuzz_parse(data: &[u8]) {
    use std::hint::black_box;

    let res = parse_frame(data);
    if let Ok(info) = &res {
        let len = data.len();
        let l3 = info.l3_offset as usize;
        assert!(l3 >= 14 && l3 <= len, "l3 offset in bounds");
        match info.kind {
            L3Kind::Ipv4 | L3Kind::Ipv6 | L3Kind::Arp => {
                assert!(l3 + info.l3_len as usize <= len, "l3 len in bounds")
            }
            L3Kind::Other => assert!(info.flow.is_none() && info.l4_offset.is_none()),
        }
        if let Some(l4) = info.l4_offset {
            assert!(
                l4 as usize > l3 && l4 as usize <= len,
                "l4 offset in bounds"
            );
            assert!(info.flow.is_some());
        }
        assert_eq!(
            info.flow.is_some(),
            matches!(info.kind, L3Kind::Ipv4 | L3Kind::Ipv6)
        );
        if info.tcp_flags != 0 {
            assert_eq!(info.flow.map(|f| f.protocol()), Some(protocol::TCP));
        }
        // Parsing is deterministic.
        assert_eq!(parse_frame(data), res);
        // The fast path agrees with the Ethernet view.
        let e = EthernetFrame::new_checked(data).expect("parse_frame accepted it");
        assert_eq!(e.ethertype(), info.ethertype);
        assert_eq!(e.header_len(), l3);
        assert_eq!(e.vlan_tag(0).map(|t| t.vid), info.vlan);
        let l3b = &data[l3..];
        exercise_views(l3b);
        if let Some(l4) = info.l4_offset {
            exercise_views(&data[l4 as usize..]);
        }
    }
    exercise_views(data);
    if let Ok(mut e) = EthernetFrame::new_checked(data.to_vec()) {
        black_box((
            e.dst_addr(),
            e.src_addr(),
            e.outer_ethertype(),
            e.vlan_count(),
            e.vlan_tag(0),
            e.vlan_tag(1),
        ));
        black_box((e.ethertype(), e.header_len(), e.payload().len()));
        black_box(ethernet::EthernetRepr::parse(&e));
        // Setters that rewrite structure must not make later accessors panic.
        e.set_ethertype(ethertype::VLAN);
        e.set_vlan_id(0, 5);
        e.set_dst_addr(ethernet::EthernetAddress::BROADCAST);
        e.set_src_addr(ethernet::EthernetAddress::ZERO);
        black_box((
            e.ethertype(),
            e.header_len(),
            e.payload_mut().len(),
            e.vlan_tag(2),
        ));
    }
    black_box(res.map_err(|e| (e.kind(), e.layer())).ok());
}

/// Read every field of every view that accepts `b`, then mutate a copy through each view.
fn exercise_views(b: &[u8]) {
    use std::hint::black_box;
    if let Ok(a) = ArpPacket::new_checked(b) {
        black_box(arp::ArpRepr::parse(&a));
    }
    if let Ok(p) = Ipv4Packet::new_checked(b) {
        black_box((
            p.version(),
            p.header_len(),
            p.dscp(),
            p.ecn(),
            p.total_len(),
            p.ident(),
            p.dont_frag(),
        ));
        black_box((
            p.more_frags(),
            p.frag_offset(),
            p.is_fragment(),
            p.has_l4_header(),
            p.ttl(),
            p.protocol(),
        ));
        black_box((
            p.checksum(),
            p.src_addr(),
            p.dst_addr(),
            p.options().len(),
            p.payload().len(),
        ));
        black_box((p.verify_checksum(), p.pseudo_header_sum()));
        let mut m = Ipv4Packet::new_checked(b.to_vec()).expect("same bytes");
        m.set_ttl(1);
        m.set_src_addr(std::net::Ipv4Addr::LOCALHOST);
        m.fill_checksum();
        assert!(m.verify_checksum());
        black_box(m.payload_mut().len());
    }
    if let Ok(p) = Ipv6Packet::new_checked(b) {
        black_box((
            p.version(),
            p.traffic_class(),
            p.flow_label(),
            p.payload_len(),
            p.next_header(),
            p.hop_limit(),
        ));
        let _ = black_box((
            p.src_addr(),
            p.dst_addr(),
            p.payload().len(),
            p.upper_layer(),
            p.pseudo_header_sum(6, 20),
        ));
        let mut m = Ipv6Packet::new_checked(b.to_vec()).expect("same bytes");
        m.set_traffic_class(3);
        m.set_next_header(protocol::IPV6_FRAG);
        let _ = black_box((m.upper_layer(), m.payload_mut().len()));
    }
    if let Ok(t) = TcpSegment::new_checked(b) {
        black_box((
            t.src_port(),
            t.dst_port(),
            t.seq(),
            t.ack(),
            t.header_len(),
            t.flags(),
            t.window(),
        ));
        black_box((
            t.checksum(),
            t.urgent(),
            t.options().len(),
            t.payload().len(),
            t.verify_checksum(0),
        ));
        let mut m = TcpSegment::new_checked(b.to_vec()).expect("same bytes");
        m.set_dst_port(1);
        m.fill_checksum(0);
        assert!(m.verify_checksum(0));
        black_box(m.payload_mut().len());
    }
    if let Ok(u) = UdpDatagram::new_checked_header(b) {
        black_box((
            u.src_port(),
            u.dst_port(),
            u.len(),
            u.is_empty(),
            u.checksum(),
            u.payload().len(),
        ));
        black_box(u.verify_checksum(0));
        let mut m = UdpDatagram::new_checked_header(b.to_vec()).expect("same bytes");
        m.set_len(u16::MAX);
        m.fill_checksum(0);
        black_box(m.payload_mut().len());
    }
    if let Ok(i) = IcmpPacket::new_checked(b) {
        black_box((
            i.msg_type(),
            i.code(),
            i.checksum(),
            i.echo_ident(),
            i.echo_seq(),
            i.payload().len(),
        ));
        black_box(i.verify_checksum(0));
    }
}

#[cfg(test)]
mod tests;
