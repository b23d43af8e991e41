//! Encapsulation of flows forwarded from the VIP owner to another server.
//!
//! # Wire format (GUE-like UDP encapsulation)
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! | Ethernet: dst MAC (6) | src MAC (6) | [VLAN tags] | 0x0800 (2) |
//! +---------------------------------------------------------------+
//! | IPv4, 20 bytes, no options: TOS copied from the inner packet,   |
//! | identification 0, DF set, TTL 64, protocol 17, checksum valid,  |
//! | src = forwarding node, dst = serving node                       |
//! +-------------------------------+-------------------------------+
//! | UDP src port: 49152 + (flow   | UDP dst port (default 6080)   |
//! | hash mod 16384), for ECMP/RSS |                               |
//! +-------------------------------+-------------------------------+
//! | UDP length                    | UDP checksum = 0              |
//! +---------------+-------+-------+-------------------------------+
//! | magic 0x48    |ver=1  |flags=0| VIP service index (BE u16)    |
//! +---------------+-------+-------+-------------------------------+
//! | origin node id (BE u32)                                       |
//! +---------------------------------------------------------------+
//! | original packet, starting at its IPv4 header, unmodified      |
//! +---------------------------------------------------------------+
//! ```
//! Overhead: 36 bytes of IP packet ([`OVERHEAD`]). The UDP checksum is 0,
//! which RFC 768 allows for IPv4 (as VXLAN and GUE deployments do): the outer
//! IPv4 header has its own checksum, the inner packet keeps its own TCP/UDP
//! checksum end to end, and the Ethernet FCS covers each link.
//! The UDP source port carries flow entropy so the receiver's RSS spreads
//! forwarded flows over its queues, and every packet of one flow lands on the
//! same receiving worker.
//!
//! The VLAN tags of the received frame are kept on the encapsulated one (it
//! leaves on the same segment) and on the frame rebuilt for the host stack.
//!
//! The receiver checks everything ([`decapsulate`]: outer IPv4 header and
//! checksum, no fragment, UDP port and length, magic and version, inner IPv4
//! header and length) and then rebuilds an Ethernet header in front of the
//! inner packet in place ([`restore_ethernet`]) for its host stack.
//!
//! Both directions work on a [`Frame`] in place: headers are pushed into the
//! UMEM headroom in front of the packet or pulled off it, so multi-buffer
//! (jumbo) packets are encapsulated without touching their payload buffers.
//! Parsing is the pipeline's one parse ([`FrameInfo`]); headers are written
//! with the packet module's `Repr`s and checksums.

use std::net::Ipv4Addr;

use thiserror::Error;

use super::maglev::NodeId;
use super::ServiceIdx;
use crate::frame::Frame;
use crate::packet::{
    ethernet::{ethertype, EthernetAddress, EthernetFrame, EthernetRepr},
    ipv4::{protocol, Ipv4Packet, Ipv4Repr},
    udp::UdpRepr,
    FrameInfo, L3Kind,
};

/// Default UDP destination port.
pub const DEFAULT_PORT: u16 = 6080;
/// Ethernet header length (untagged).
pub const ETH_LEN: usize = 14;
/// Outer IPv4 header length.
pub const IP_LEN: usize = 20;
/// UDP header length.
pub const UDP_LEN: usize = 8;
/// Headroom header length.
pub const HR_LEN: usize = 8;
/// Bytes added to the IP packet (outer IPv4 + UDP + Headroom header).
pub const OVERHEAD: usize = IP_LEN + UDP_LEN + HR_LEN;
/// Outer headers of an untagged frame, in front of the inner IP packet.
pub const OUTER_LEN: usize = ETH_LEN + OVERHEAD;
/// First byte of the Headroom header.
pub const MAGIC: u8 = 0x48;
/// Format version (high nibble of the second byte).
pub const VERSION: u8 = 1;

/// Static encapsulation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncapConfig {
    /// UDP destination port of encapsulated traffic.
    pub udp_port: u16,
    /// MTU of the underlay: largest outer IP packet (without Ethernet).
    pub mtu: u16,
}

impl Default for EncapConfig {
    fn default() -> Self {
        EncapConfig {
            udp_port: DEFAULT_PORT,
            mtu: 1500,
        }
    }
}

impl EncapConfig {
    /// Settings from the node's director configuration.
    pub fn from_settings(s: &headroom_config::vip::DirectorSettings) -> Self {
        EncapConfig {
            udp_port: s.encap_port,
            mtu: s.underlay_mtu,
        }
    }

    /// Largest inner IP packet that fits the underlay once encapsulated.
    pub fn max_inner(&self) -> usize {
        usize::from(self.mtu).saturating_sub(OVERHEAD)
    }
}

/// Per-destination outer header parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterParams {
    /// This node's MAC on the outer interface.
    pub src_mac: [u8; 6],
    /// Next hop MAC towards the serving node.
    pub dst_mac: [u8; 6],
    /// This node's underlay address.
    pub src_ip: Ipv4Addr,
    /// Serving node's underlay address.
    pub dst_ip: Ipv4Addr,
    /// This node's id.
    pub origin: NodeId,
    /// VIP service index of the flow.
    pub service: ServiceIdx,
    /// UDP source port (flow entropy, see [`entropy_port`]).
    pub src_port: u16,
}

/// Encapsulation or decapsulation failure (each is counted by the worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncapError {
    /// Frame shorter than its headers claim.
    #[error("truncated frame")]
    Truncated,
    /// Not an IPv4 frame (ethertype or version).
    #[error("not IPv4")]
    NotIpv4,
    /// Malformed IPv4 header (IHL, total length).
    #[error("malformed IPv4 header")]
    BadIpHeader,
    /// Outer IPv4 header checksum mismatch.
    #[error("bad IPv4 header checksum")]
    BadChecksum,
    /// Outer packet is a fragment (encapsulated traffic is never fragmented).
    #[error("fragmented outer packet")]
    Fragmented,
    /// Outer packet is not UDP to the encapsulation port.
    #[error("not encapsulated traffic")]
    NotEncap,
    /// UDP length inconsistent with the IP length.
    #[error("bad UDP length")]
    BadUdpLength,
    /// Headroom header magic mismatch.
    #[error("bad magic")]
    BadMagic,
    /// Unknown format version.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// The inner packet is not a well-formed IPv4 packet.
    #[error("bad inner packet")]
    BadInner,
    /// The encapsulated packet would exceed the underlay MTU.
    #[error("encapsulated length {len} exceeds MTU {mtu}")]
    TooBig {
        /// Outer IP packet length that would result.
        len: usize,
        /// Configured MTU.
        mtu: u16,
    },
    /// Not enough room in front of the packet for the outer headers.
    #[error("not enough headroom in front of the packet")]
    NoHeadroom,
}

/// Result of a successful [`decapsulate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decap {
    /// Offset of the inner IPv4 header from the start of the frame.
    pub inner_offset: usize,
    /// Inner IPv4 packet length.
    pub inner_len: usize,
    /// Node that forwarded the packet.
    pub origin: NodeId,
    /// VIP service index.
    pub service: ServiceIdx,
    /// Outer source address (the forwarding node's underlay address).
    pub outer_src: Ipv4Addr,
    /// Outer source MAC.
    pub outer_src_mac: [u8; 6],
}

/// UDP source port for a flow hash (range 49152..=65535).
#[inline]
pub fn entropy_port(flow_hash: u64) -> u16 {
    49152 + ((flow_hash >> 16) % 16384) as u16
}

/// The Ethernet header of `frame` (validated by the parse that produced
/// its [`FrameInfo`]).
fn ethernet_of(frame: &Frame<'_>) -> Result<EthernetRepr, EncapError> {
    EthernetFrame::new_checked(frame.data())
        .map(|e| EthernetRepr::parse(&e))
        .map_err(|_| EncapError::Truncated)
}

/// Cuts Ethernet padding behind an IP packet ending at `end`.
fn trim(frame: &mut Frame<'_>, end: usize) -> Result<(), EncapError> {
    match frame.len().cmp(&end) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(EncapError::Truncated),
        std::cmp::Ordering::Greater => frame.set_len(end).map_err(|_| EncapError::BadInner),
    }
}

/// Encapsulates the IPv4 packet of `frame` (parsed as `info`) in place
/// towards `outer`: the Ethernet header is replaced by outer Ethernet (same
/// VLAN tags), IPv4, UDP and Headroom headers.
pub fn encapsulate(
    frame: &mut Frame<'_>,
    info: &FrameInfo,
    outer: &OuterParams,
    cfg: &EncapConfig,
) -> Result<(), EncapError> {
    if info.kind != L3Kind::Ipv4 {
        return Err(EncapError::BadInner);
    }
    let l3 = usize::from(info.l3_offset);
    let inner_len = usize::from(info.l3_len);
    let len = OVERHEAD + inner_len;
    if len > usize::from(cfg.mtu) {
        return Err(EncapError::TooBig { len, mtu: cfg.mtu });
    }
    let mut eth = ethernet_of(frame)?;
    let eth_len = eth.header_len();
    if frame.headroom() + l3 < eth_len + OVERHEAD {
        return Err(EncapError::NoHeadroom);
    }
    trim(frame, l3 + inner_len)?;
    let tos = frame.data()[l3 + 1];
    eth.dst = EthernetAddress(outer.dst_mac);
    eth.src = EthernetAddress(outer.src_mac);
    eth.ethertype = ethertype::IPV4;
    frame.pull_head(l3).map_err(|_| EncapError::Truncated)?;
    let hdr = frame
        .push_head(eth_len + OVERHEAD)
        .map_err(|_| EncapError::NoHeadroom)?;
    eth.emit(hdr).map_err(|_| EncapError::NoHeadroom)?;
    let ip = &mut hdr[eth_len..];
    Ipv4Repr::new(
        outer.src_ip,
        outer.dst_ip,
        protocol::UDP,
        (len - IP_LEN) as u16,
    )
    .emit(ip)
    .map_err(|_| EncapError::NoHeadroom)?;
    let mut v = Ipv4Packet::new_checked_wire(&mut ip[..IP_LEN], len)
        .map_err(|_| EncapError::BadIpHeader)?;
    v.set_dscp_ecn(tos >> 2, tos & 3);
    v.fill_checksum();
    let udp = &mut hdr[eth_len + IP_LEN..];
    UdpRepr {
        src_port: outer.src_port,
        dst_port: cfg.udp_port,
        payload_len: (HR_LEN + inner_len) as u16,
    }
    .emit(udp)
    .map_err(|_| EncapError::NoHeadroom)?;
    let hr = &mut hdr[eth_len + IP_LEN + UDP_LEN..eth_len + OVERHEAD];
    hr[0] = MAGIC;
    hr[1] = VERSION << 4;
    hr[2..4].copy_from_slice(&outer.service.to_be_bytes());
    hr[4..8].copy_from_slice(&outer.origin.to_be_bytes());
    Ok(())
}

/// Checks that `frame` (parsed as `info`) is encapsulated traffic for
/// `cfg.udp_port` and locates the inner packet. Never panics.
pub fn decapsulate(
    frame: &Frame<'_>,
    info: &FrameInfo,
    cfg: &EncapConfig,
) -> Result<Decap, EncapError> {
    if info.kind != L3Kind::Ipv4 {
        return Err(EncapError::NotIpv4);
    }
    if info.is_fragment {
        return Err(EncapError::Fragmented);
    }
    let head = frame.data();
    let l3 = usize::from(info.l3_offset);
    let total = usize::from(info.l3_len);
    let ip = Ipv4Packet::new_checked_wire(&head[l3..], frame.len() - l3)
        .map_err(|_| EncapError::BadIpHeader)?;
    if !ip.verify_checksum() {
        return Err(EncapError::BadChecksum);
    }
    let ihl = ip.header_len();
    if ip.protocol() != protocol::UDP {
        return Err(EncapError::NotEncap);
    }
    let l4 = l3 + ihl;
    let hdrs = l4 + UDP_LEN + HR_LEN;
    // The outer headers and the inner IPv4 header must be in the first buffer.
    if head.len() < hdrs + IP_LEN {
        return Err(EncapError::Truncated);
    }
    let be16 = |at: usize| u16::from_be_bytes([head[at], head[at + 1]]);
    if be16(l4 + 2) != cfg.udp_port {
        return Err(EncapError::NotEncap);
    }
    if usize::from(be16(l4 + 4)) != total - ihl {
        return Err(EncapError::BadUdpLength);
    }
    let hr = &head[l4 + UDP_LEN..hdrs];
    if hr[0] != MAGIC {
        return Err(EncapError::BadMagic);
    }
    if hr[1] >> 4 != VERSION {
        return Err(EncapError::UnsupportedVersion(hr[1] >> 4));
    }
    let inner_len = total - ihl - UDP_LEN - HR_LEN;
    let inner =
        Ipv4Packet::new_checked_wire(&head[hdrs..], inner_len).map_err(|_| EncapError::BadInner)?;
    if usize::from(inner.total_len()) != inner_len {
        return Err(EncapError::BadInner);
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&head[6..12]);
    Ok(Decap {
        inner_offset: hdrs,
        inner_len,
        origin: u32::from_be_bytes([hr[4], hr[5], hr[6], hr[7]]),
        service: u16::from_be_bytes([hr[2], hr[3]]),
        outer_src: ip.src_addr(),
        outer_src_mac: mac,
    })
}

/// Replaces the outer headers of a decapsulated frame with an Ethernet
/// header (`dst_mac`, `src_mac`, the outer frame's VLAN tags, IPv4) in front
/// of the inner packet, in place, for the host stack.
pub fn restore_ethernet(
    frame: &mut Frame<'_>,
    d: &Decap,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
) -> Result<(), EncapError> {
    let mut eth = ethernet_of(frame)?;
    trim(frame, d.inner_offset + d.inner_len)?;
    eth.dst = EthernetAddress(dst_mac);
    eth.src = EthernetAddress(src_mac);
    eth.ethertype = ethertype::IPV4;
    frame
        .pull_head(d.inner_offset)
        .map_err(|_| EncapError::Truncated)?;
    let hdr = frame
        .push_head(eth.header_len())
        .map_err(|_| EncapError::NoHeadroom)?;
    eth.emit(hdr).map_err(|_| EncapError::NoHeadroom)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{build, checksum::checksum, parse_packet};

    const HEADROOM: usize = 256;

    fn outer() -> OuterParams {
        OuterParams {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(172, 16, 0, 1),
            dst_ip: Ipv4Addr::new(172, 16, 0, 2),
            origin: 1,
            service: 3,
            src_port: 50000,
        }
    }

    /// A client frame in a 4 KiB chunk at HEADROOM.
    fn chunk(payload: usize, vlan: Option<u16>) -> (Vec<u8>, usize, Vec<u8>) {
        let mut f = build::ipv4_frame(
            vlan,
            6,
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(10, 0, 0, 100),
            40000,
            80,
            0x02,
            &vec![0xab; payload],
        );
        let l3 = if vlan.is_some() { 18 } else { 14 };
        f[l3 + 1] = 0x2e; // DSCP 11, ECN 2: copied to the outer header
        f[l3 + 10] = 0;
        f[l3 + 11] = 0;
        let c = checksum(&f[l3..l3 + 20]);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        let mut buf = vec![0u8; 4096];
        buf[HEADROOM..HEADROOM + f.len()].copy_from_slice(&f);
        (buf, f.len(), f)
    }

    fn encap(buf: &mut [u8], len: usize, cfg: &EncapConfig) -> Result<(usize, usize), EncapError> {
        let mut fr = Frame::new(buf, HEADROOM, len, &[]).unwrap();
        let info = parse_packet(fr.data(), fr.len()).unwrap();
        encapsulate(&mut fr, &info, &outer(), cfg)?;
        Ok((fr.start(), fr.len()))
    }

    fn decap(
        buf: &mut [u8],
        len: usize,
        cfg: &EncapConfig,
    ) -> Result<(Decap, usize, usize), EncapError> {
        let mut fr = Frame::new(buf, HEADROOM, len, &[]).unwrap();
        let info = parse_packet(fr.data(), fr.len()).map_err(|_| EncapError::Truncated)?;
        let d = decapsulate(&fr, &info, cfg)?;
        restore_ethernet(&mut fr, &d, [0xaa; 6], d.outer_src_mac)?;
        Ok((d, fr.start(), fr.len()))
    }

    #[test]
    fn encapsulated_bytes_match_spec() {
        let (mut buf, len, orig) = chunk(10, None);
        let (s, n) = encap(&mut buf, len, &EncapConfig::default()).unwrap();
        // Padding (the 60-byte minimum) is not carried.
        let ip_len = 40 + 10;
        assert_eq!(n, OUTER_LEN + ip_len);
        let f = &buf[s..s + n];
        assert_eq!(&f[0..6], &outer().dst_mac);
        assert_eq!(&f[6..12], &outer().src_mac);
        assert_eq!(&f[12..14], &[8, 0]);
        let ip = &f[14..34];
        assert_eq!(ip[0], 0x45);
        assert_eq!(ip[1], 0x2e);
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, 36 + ip_len);
        assert_eq!(&ip[6..8], &[0x40, 0]);
        assert_eq!(ip[9], 17);
        assert_eq!(checksum(ip), 0);
        assert_eq!(&ip[12..16], &[172, 16, 0, 1]);
        assert_eq!(&ip[16..20], &[172, 16, 0, 2]);
        let udp = &f[34..42];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 50000);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), DEFAULT_PORT);
        assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, 16 + ip_len);
        assert_eq!(&udp[6..8], &[0, 0]);
        assert_eq!(&f[42..50], &[MAGIC, VERSION << 4, 0, 3, 0, 0, 0, 1]);
        assert_eq!(&f[50..], &orig[14..14 + ip_len]);
    }

    #[test]
    fn round_trip_keeps_the_packet_and_vlan_tags() {
        for vlan in [None, Some(7)] {
            let (mut buf, len, orig) = chunk(100, vlan);
            let (s, n) = encap(&mut buf, len, &EncapConfig::default()).unwrap();
            let mut rx = vec![0u8; 4096];
            rx[HEADROOM..HEADROOM + n].copy_from_slice(&buf[s..s + n]);
            let (d, s2, n2) = decap(&mut rx, n, &EncapConfig::default()).unwrap();
            assert_eq!((d.origin, d.service), (1, 3));
            assert_eq!(d.outer_src, Ipv4Addr::new(172, 16, 0, 1));
            let f = &rx[s2..s2 + n2];
            assert_eq!(&f[..6], &[0xaa; 6]);
            assert_eq!(&f[6..12], &outer().src_mac);
            // Tags and the IP packet come back unchanged.
            assert_eq!(f[12..], orig[12..n2]);
        }
    }

    #[test]
    fn mtu_and_headroom_limits() {
        let (mut buf, len, _) = chunk(1460, None);
        assert_eq!(
            encap(&mut buf, len, &EncapConfig::default()),
            Err(EncapError::TooBig {
                len: 1536,
                mtu: 1500
            })
        );
        let cfg = EncapConfig {
            mtu: 9000,
            ..EncapConfig::default()
        };
        assert!(encap(&mut buf, len, &cfg).is_ok());
        let (mut buf, len, _) = chunk(10, None);
        buf.copy_within(HEADROOM..HEADROOM + len, 20);
        let mut fr = Frame::new(&mut buf, 20, len, &[]).unwrap();
        let info = parse_packet(fr.data(), fr.len()).unwrap();
        assert_eq!(
            encapsulate(&mut fr, &info, &outer(), &EncapConfig::default()),
            Err(EncapError::NoHeadroom)
        );
    }

    fn good(payload: usize) -> (Vec<u8>, usize) {
        let (mut buf, len, _) = chunk(payload, None);
        let (s, n) = encap(&mut buf, len, &EncapConfig::default()).unwrap();
        let mut rx = vec![0u8; 4096];
        rx[HEADROOM..HEADROOM + n].copy_from_slice(&buf[s..s + n]);
        (rx, n)
    }

    fn fix_ip_csum(rx: &mut [u8]) {
        let ip = HEADROOM + 14;
        rx[ip + 10] = 0;
        rx[ip + 11] = 0;
        let c = checksum(&rx[ip..ip + 20]);
        rx[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn decap_rejections() {
        let cfg = EncapConfig::default();
        let ip = HEADROOM + 14;
        // `None`: rejected, possibly already by the parse (a fragment, or a
        // "UDP" header that is now read as TCP).
        type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(Mutation, bool, Option<EncapError>)> = vec![
            (
                Box::new(move |f| f[ip + 11] ^= 1),
                false,
                Some(EncapError::BadChecksum),
            ),
            (Box::new(move |f| f[ip + 6] = 0x20), true, None),
            (Box::new(move |f| f[ip + 9] = 6), true, None),
            (
                Box::new(move |f| f[ip + 22] ^= 1),
                false,
                Some(EncapError::NotEncap),
            ),
            (
                Box::new(move |f| f[ip + 25] -= 2),
                false,
                Some(EncapError::BadUdpLength),
            ),
            (
                Box::new(move |f| f[ip + 28] = 0),
                false,
                Some(EncapError::BadMagic),
            ),
            (
                Box::new(move |f| f[ip + 29] = 0x20),
                false,
                Some(EncapError::UnsupportedVersion(2)),
            ),
            (
                Box::new(move |f| f[ip + 36] = 0x65),
                false,
                Some(EncapError::BadInner),
            ),
        ];
        for (i, (mutate, fix, want)) in cases.into_iter().enumerate() {
            let (mut rx, n) = good(10);
            mutate(&mut rx);
            if fix {
                fix_ip_csum(&mut rx);
            }
            let got = decap(&mut rx, n, &cfg);
            match want {
                Some(w) => assert_eq!(got.map(|_| ()), Err(w), "case {i}"),
                None => assert!(got.is_err(), "case {i}: {got:?}"),
            }
        }
    }

    #[test]
    fn ethernet_padding_after_outer_packet_is_ignored() {
        let (mut rx, n) = good(0);
        // Pad to a longer frame: the decapsulated frame ends with the packet.
        let (_, s, len) = decap(&mut rx, n + 6, &EncapConfig::default()).unwrap();
        assert_eq!(len, 14 + 40);
        assert_eq!(s, HEADROOM + 36);
    }

    fn decap_never_panics(bytes: &[u8]) {
        let mut buf = vec![0u8; HEADROOM + bytes.len()];
        buf[HEADROOM..].copy_from_slice(bytes);
        let mut fr = Frame::new(&mut buf, HEADROOM, bytes.len(), &[]).unwrap();
        if let Ok(info) = parse_packet(fr.data(), fr.len()) {
            if let Ok(d) = decapsulate(&fr, &info, &EncapConfig::default()) {
                let _ = restore_ethernet(&mut fr, &d, [0; 6], [0; 6]);
            }
        }
    }

    #[test]
    fn truncated_frames_never_panic() {
        let (rx, n) = good(20);
        for len in 0..n {
            decap_never_panics(&rx[HEADROOM..HEADROOM + len]);
        }
    }

    proptest::proptest! {
        #[test]
        fn decap_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            decap_never_panics(&bytes);
        }

        #[test]
        fn decap_mutated_frames_never_panic(pos in 0usize..90, val in proptest::num::u8::ANY) {
            let (mut rx, n) = good(20);
            if HEADROOM + pos < rx.len() {
                rx[HEADROOM + pos] = val;
            }
            decap_never_panics(&rx[HEADROOM..HEADROOM + n]);
        }
    }
}
