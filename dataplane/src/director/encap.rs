//! Encapsulation of flows forwarded from the VIP owner to another server.
//!
//! # Wire format (GUE-like UDP encapsulation)
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! | Ethernet: dst MAC (6) | src MAC (6) | type 0x0800 (2)           |
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
//! The receiver checks everything ([`decapsulate`]: outer IPv4 header and
//! checksum, no fragment, UDP port and length, magic and version, inner IPv4
//! header and length) and then rebuilds an Ethernet header in front of the
//! inner packet in place ([`restore_ethernet`]) for its host stack.

use std::net::Ipv4Addr;

use thiserror::Error;

use super::maglev::NodeId;
use super::ServiceIdx;

/// Default UDP destination port.
pub const DEFAULT_PORT: u16 = 6080;
/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// Outer IPv4 header length written by [`encapsulate`].
pub const IP_LEN: usize = 20;
/// UDP header length.
pub const UDP_LEN: usize = 8;
/// Headroom header length.
pub const HR_LEN: usize = 8;
/// Bytes added to the IP packet (outer IPv4 + UDP + Headroom header).
pub const OVERHEAD: usize = IP_LEN + UDP_LEN + HR_LEN;
/// Outer headers including Ethernet, in front of the inner IP packet.
pub const OUTER_LEN: usize = ETH_LEN + OVERHEAD;
/// First byte of the Headroom header.
pub const MAGIC: u8 = 0x48;
/// Format version (high nibble of the second byte).
pub const VERSION: u8 = 1;

const ETHERTYPE_IPV4: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;

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
    /// The output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// Not enough room in front of the inner packet for in-place encapsulation.
    #[error("not enough headroom in front of the packet")]
    NoHeadroom,
}

/// Result of a successful [`decapsulate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decap {
    /// Offset of the inner IPv4 header in the frame.
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

/// RFC 1071 Internet checksum of `data` (complemented).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// UDP source port for a flow hash (range 49152..=65535).
#[inline]
pub fn entropy_port(flow_hash: u64) -> u16 {
    49152 + ((flow_hash >> 16) % 16384) as u16
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Checks an IPv4 header at the start of `p`; returns (header len, total len).
fn check_ipv4(p: &[u8]) -> Result<(usize, usize), EncapError> {
    if p.len() < 20 {
        return Err(EncapError::Truncated);
    }
    if p[0] >> 4 != 4 {
        return Err(EncapError::NotIpv4);
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(be16(p, 2));
    if ihl < 20 || total < ihl {
        return Err(EncapError::BadIpHeader);
    }
    if total > p.len() {
        return Err(EncapError::Truncated);
    }
    Ok((ihl, total))
}

/// Writes Ethernet + IPv4 + UDP + Headroom header into `hdr` (exactly
/// [`OUTER_LEN`] bytes) for an inner packet of `inner_len` bytes with TOS `tos`.
fn write_outer(hdr: &mut [u8], inner_len: usize, tos: u8, o: &OuterParams, cfg: &EncapConfig) {
    let ip_total = (OVERHEAD + inner_len) as u16;
    hdr[0..6].copy_from_slice(&o.dst_mac);
    hdr[6..12].copy_from_slice(&o.src_mac);
    hdr[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip = &mut hdr[ETH_LEN..ETH_LEN + IP_LEN];
    ip[0] = 0x45;
    ip[1] = tos;
    ip[2..4].copy_from_slice(&ip_total.to_be_bytes());
    ip[4..6].copy_from_slice(&[0, 0]);
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    ip[8] = 64;
    ip[9] = IPPROTO_UDP;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&o.src_ip.octets());
    ip[16..20].copy_from_slice(&o.dst_ip.octets());
    let c = checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut hdr[ETH_LEN + IP_LEN..ETH_LEN + IP_LEN + UDP_LEN];
    udp[0..2].copy_from_slice(&o.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&cfg.udp_port.to_be_bytes());
    udp[4..6].copy_from_slice(&((UDP_LEN + HR_LEN + inner_len) as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    let hr = &mut hdr[ETH_LEN + IP_LEN + UDP_LEN..OUTER_LEN];
    hr[0] = MAGIC;
    hr[1] = VERSION << 4;
    hr[2..4].copy_from_slice(&o.service.to_be_bytes());
    hr[4..8].copy_from_slice(&o.origin.to_be_bytes());
}

/// Validates the inner packet and the MTU; returns its TOS.
fn check_inner(inner: &[u8], cfg: &EncapConfig) -> Result<u8, EncapError> {
    let (_, total) = check_ipv4(inner).map_err(|_| EncapError::BadInner)?;
    if total != inner.len() {
        return Err(EncapError::BadInner);
    }
    let len = OVERHEAD + inner.len();
    if len > usize::from(cfg.mtu) {
        return Err(EncapError::TooBig { len, mtu: cfg.mtu });
    }
    Ok(inner[1])
}

/// Encapsulates `inner_ip_packet` (starting at its IPv4 header, exactly its
/// IPv4 total length, i.e. without Ethernet padding) into `out`; returns the
/// frame length.
pub fn encapsulate(
    inner_ip_packet: &[u8],
    outer: &OuterParams,
    cfg: &EncapConfig,
    out: &mut [u8],
) -> Result<usize, EncapError> {
    let tos = check_inner(inner_ip_packet, cfg)?;
    let n = OUTER_LEN + inner_ip_packet.len();
    if out.len() < n {
        return Err(EncapError::BufferTooSmall);
    }
    write_outer(
        &mut out[..OUTER_LEN],
        inner_ip_packet.len(),
        tos,
        outer,
        cfg,
    );
    out[OUTER_LEN..n].copy_from_slice(inner_ip_packet);
    Ok(n)
}

/// Encapsulates in place: the inner IPv4 packet is `buf[inner_offset..
/// inner_offset + inner_len]` and the outer headers are written into the
/// [`OUTER_LEN`] bytes in front of it (AF_XDP frame headroom, or the old
/// Ethernet header plus headroom). Returns the offset where the new frame
/// starts; it ends at `inner_offset + inner_len`.
pub fn encapsulate_in_place(
    buf: &mut [u8],
    inner_offset: usize,
    inner_len: usize,
    outer: &OuterParams,
    cfg: &EncapConfig,
) -> Result<usize, EncapError> {
    let start = inner_offset
        .checked_sub(OUTER_LEN)
        .ok_or(EncapError::NoHeadroom)?;
    let end = inner_offset
        .checked_add(inner_len)
        .ok_or(EncapError::Truncated)?;
    if end > buf.len() {
        return Err(EncapError::Truncated);
    }
    let tos = check_inner(&buf[inner_offset..end], cfg)?;
    write_outer(&mut buf[start..inner_offset], inner_len, tos, outer, cfg);
    Ok(start)
}

/// Checks that `frame` (starting at Ethernet) is encapsulated traffic for
/// `cfg.udp_port` and locates the inner packet. Never panics.
pub fn decapsulate(frame: &[u8], cfg: &EncapConfig) -> Result<Decap, EncapError> {
    if frame.len() < ETH_LEN {
        return Err(EncapError::Truncated);
    }
    if be16(frame, 12) != ETHERTYPE_IPV4 {
        return Err(EncapError::NotIpv4);
    }
    let ip = &frame[ETH_LEN..];
    let (ihl, total) = check_ipv4(ip)?;
    if checksum(&ip[..ihl]) != 0 {
        return Err(EncapError::BadChecksum);
    }
    if be16(ip, 6) & 0x3fff != 0 {
        return Err(EncapError::Fragmented);
    }
    if ip[9] != IPPROTO_UDP {
        return Err(EncapError::NotEncap);
    }
    let udp = &ip[ihl..total];
    if udp.len() < UDP_LEN {
        return Err(EncapError::Truncated);
    }
    if be16(udp, 2) != cfg.udp_port {
        return Err(EncapError::NotEncap);
    }
    if usize::from(be16(udp, 4)) != udp.len() {
        return Err(EncapError::BadUdpLength);
    }
    let hr = &udp[UDP_LEN..];
    if hr.len() < HR_LEN {
        return Err(EncapError::Truncated);
    }
    if hr[0] != MAGIC {
        return Err(EncapError::BadMagic);
    }
    if hr[1] >> 4 != VERSION {
        return Err(EncapError::UnsupportedVersion(hr[1] >> 4));
    }
    let inner = &hr[HR_LEN..];
    let (_, inner_total) = check_ipv4(inner).map_err(|_| EncapError::BadInner)?;
    if inner_total != inner.len() {
        return Err(EncapError::BadInner);
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&frame[6..12]);
    Ok(Decap {
        inner_offset: ETH_LEN + ihl + UDP_LEN + HR_LEN,
        inner_len: inner.len(),
        origin: u32::from_be_bytes([hr[4], hr[5], hr[6], hr[7]]),
        service: be16(hr, 2),
        outer_src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        outer_src_mac: mac,
    })
}

/// Writes an Ethernet header (`dst_mac`, `src_mac`, IPv4) right in front of
/// the inner packet of a decapsulated frame and returns the offset where the
/// frame for the host stack starts; it ends at `inner_offset + inner_len`.
/// (If the driver needs frames at offset 0, `frame.copy_within(start..end, 0)`.)
pub fn restore_ethernet(
    frame: &mut [u8],
    d: &Decap,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
) -> Result<usize, EncapError> {
    let start = d
        .inner_offset
        .checked_sub(ETH_LEN)
        .ok_or(EncapError::NoHeadroom)?;
    if d.inner_offset.saturating_add(d.inner_len) > frame.len() {
        return Err(EncapError::Truncated);
    }
    let h = &mut frame[start..d.inner_offset];
    h[0..6].copy_from_slice(&dst_mac);
    h[6..12].copy_from_slice(&src_mac);
    h[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP SYN from 192.0.2.1:40000 to 10.0.0.100:80 (IPv4 checksum filled
    /// in by `inner`).
    const SYN: [u8; 40] = [
        0x45, 0x10, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 192, 0, 2, 1, 10,
        0, 0, 100, // IPv4
        0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0x72, 0x10, 0, 0, 0,
        0, // TCP
    ];

    fn inner() -> Vec<u8> {
        let mut p = SYN.to_vec();
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn outer() -> OuterParams {
        OuterParams {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(172, 16, 0, 1),
            dst_ip: Ipv4Addr::new(172, 16, 0, 2),
            origin: 0x0102_0304,
            service: 7,
            src_port: 50000,
        }
    }

    #[test]
    fn checksum_known_vector() {
        // RFC 1071 example words.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // A textbook IPv4 header with checksum 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn encapsulated_bytes_match_spec() {
        let p = inner();
        let mut out = [0u8; 256];
        let n = encapsulate(&p, &outer(), &EncapConfig::default(), &mut out).unwrap();
        assert_eq!(n, 50 + 40);
        #[rustfmt::skip]
        let want: [u8; 50] = [
            2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00,
            0x45, 0x10, 0x00, 76, 0, 0, 0x40, 0x00, 64, 17, 0, 0, 172, 16, 0, 1, 172, 16, 0, 2,
            0xc3, 0x50, 0x17, 0xc0, 0, 56, 0, 0,
            0x48, 0x10, 0, 7, 1, 2, 3, 4,
        ];
        let mut got = out[..50].to_vec();
        // Check the IPv4 checksum separately, then compare the rest.
        assert_eq!(checksum(&got[14..34]), 0);
        got[24] = 0;
        got[25] = 0;
        assert_eq!(&got[..], &want[..]);
        assert_eq!(&out[50..n], &p[..]);
    }

    #[test]
    fn round_trip_and_restore() {
        let p = inner();
        let cfg = EncapConfig::default();
        let mut out = [0u8; 256];
        let n = encapsulate(&p, &outer(), &cfg, &mut out).unwrap();
        let d = decapsulate(&out[..n], &cfg).unwrap();
        assert_eq!(d.origin, 0x0102_0304);
        assert_eq!(d.service, 7);
        assert_eq!(d.outer_src, Ipv4Addr::new(172, 16, 0, 1));
        assert_eq!(d.outer_src_mac, [2, 0, 0, 0, 0, 1]);
        assert_eq!(&out[d.inner_offset..d.inner_offset + d.inner_len], &p[..]);
        let start = restore_ethernet(&mut out[..n], &d, [9; 6], [8; 6]).unwrap();
        assert_eq!(start, 36);
        assert_eq!(&out[start..start + 6], &[9; 6]);
        assert_eq!(&out[start + 6..start + 12], &[8; 6]);
        assert_eq!(&out[start + 12..start + 14], &[8, 0]);
        assert_eq!(&out[start + 14..n], &p[..]);
    }

    #[test]
    fn in_place_matches_copy() {
        let p = inner();
        let cfg = EncapConfig::default();
        let mut copy = [0u8; 256];
        let n = encapsulate(&p, &outer(), &cfg, &mut copy).unwrap();
        let mut buf = vec![0xaa; 64 + p.len()];
        buf[64..].copy_from_slice(&p);
        let start = encapsulate_in_place(&mut buf, 64, p.len(), &outer(), &cfg).unwrap();
        assert_eq!(start, 14);
        assert_eq!(&buf[start..], &copy[..n]);
        assert_eq!(
            encapsulate_in_place(&mut buf, 49, p.len(), &outer(), &cfg),
            Err(EncapError::NoHeadroom)
        );
    }

    #[test]
    fn mtu_and_buffer_limits() {
        let mut big = vec![0u8; 1480];
        big[0] = 0x45;
        big[2..4].copy_from_slice(&1480u16.to_be_bytes());
        let cfg = EncapConfig::default();
        let mut out = vec![0u8; 2000];
        assert_eq!(
            encapsulate(&big, &outer(), &cfg, &mut out),
            Err(EncapError::TooBig {
                len: 1516,
                mtu: 1500
            })
        );
        let cfg9k = EncapConfig { mtu: 9000, ..cfg };
        assert_eq!(encapsulate(&big, &outer(), &cfg9k, &mut out), Ok(1530));
        assert_eq!(
            encapsulate(&big, &outer(), &cfg9k, &mut out[..1529]),
            Err(EncapError::BufferTooSmall)
        );
        // Largest inner packet that fits a 1500 MTU: 1464 bytes.
        big.truncate(1464);
        big[2..4].copy_from_slice(&1464u16.to_be_bytes());
        assert_eq!(encapsulate(&big, &outer(), &cfg, &mut out), Ok(1514));
    }

    #[test]
    fn rejects_bad_inner() {
        let cfg = EncapConfig::default();
        let mut out = [0u8; 256];
        let mut p = inner();
        p.push(0); // length mismatch (e.g. Ethernet padding left in)
        assert_eq!(
            encapsulate(&p, &outer(), &cfg, &mut out),
            Err(EncapError::BadInner)
        );
        let mut p = inner();
        p[0] = 0x65;
        assert_eq!(
            encapsulate(&p, &outer(), &cfg, &mut out),
            Err(EncapError::BadInner)
        );
        assert_eq!(
            encapsulate(&[], &outer(), &cfg, &mut out),
            Err(EncapError::BadInner)
        );
    }

    fn good_frame() -> Vec<u8> {
        let mut out = vec![0u8; 256];
        let n = encapsulate(&inner(), &outer(), &EncapConfig::default(), &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn fix_csum(f: &mut [u8]) {
        f[24] = 0;
        f[25] = 0;
        let c = checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn decap_rejections() {
        let cfg = EncapConfig::default();
        type Case = (fn(&mut Vec<u8>), EncapError);
        let cases: Vec<Case> = vec![
            (|f| f[12] = 0x86, EncapError::NotIpv4),
            (|f| f[20] ^= 1, EncapError::BadChecksum),
            (
                |f| {
                    f[20] = 0x20;
                    fix_csum(f)
                },
                EncapError::Fragmented,
            ),
            (
                |f| {
                    f[23] = 6;
                    fix_csum(f)
                },
                EncapError::NotEncap,
            ),
            (
                |f| f[36..38].copy_from_slice(&4789u16.to_be_bytes()),
                EncapError::NotEncap,
            ),
            (|f| f[39] += 1, EncapError::BadUdpLength),
            (|f| f[42] = 0x47, EncapError::BadMagic),
            (|f| f[43] = 0x20, EncapError::UnsupportedVersion(2)),
            (|f| f[50] = 0x55, EncapError::BadInner),
            (|f| f[14] = 0x44, EncapError::BadIpHeader),
            (
                |f| {
                    f[17] += 2;
                    fix_csum(f)
                },
                EncapError::Truncated,
            ),
        ];
        for (i, (mutate, want)) in cases.into_iter().enumerate() {
            let mut f = good_frame();
            mutate(&mut f);
            assert_eq!(decapsulate(&f, &cfg), Err(want), "case {i}");
        }
    }

    #[test]
    fn ethernet_padding_after_outer_packet_is_ignored() {
        let mut f = good_frame();
        f.extend_from_slice(&[0; 10]);
        let d = decapsulate(&f, &EncapConfig::default()).unwrap();
        assert_eq!(d.inner_len, 40);
    }

    #[test]
    fn truncated_frames_never_panic() {
        let f = good_frame();
        let cfg = EncapConfig::default();
        for len in 0..f.len() {
            assert!(decapsulate(&f[..len], &cfg).is_err(), "len {len}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decap_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decapsulate(&bytes, &EncapConfig::default());
        }

        #[test]
        fn decap_mutated_frames_never_panic(pos in 0usize..90, val in proptest::num::u8::ANY) {
            let mut f = good_frame();
            f[pos] = val;
            if let Ok(d) = decapsulate(&f, &EncapConfig::default()) {
                proptest::prop_assert!(d.inner_offset + d.inner_len <= f.len());
            }
        }
    }
}
