//! Whole-frame builders for tests, seed corpora and traffic generators (not the packet
//! path: these allocate). Every frame has correct lengths and checksums.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::arp::ArpRepr;
use super::checksum;
use super::ethernet::{ethertype, EthernetAddress, EthernetRepr, VlanTag};
use super::icmp::{IcmpEchoRepr, IcmpPacket};
use super::ipv4::{protocol, Ipv4Repr};
use super::ipv6::Ipv6Repr;
use super::tcp::{TcpRepr, TcpSegment};
use super::udp::{UdpDatagram, UdpRepr};

/// Source MAC used by the builders.
pub const SRC_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
/// Destination MAC used by the builders.
pub const DST_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);

fn eth(ethertype: u16, vlan: Option<u16>) -> Vec<u8> {
    let mut r = EthernetRepr::new(DST_MAC, SRC_MAC, ethertype);
    r.vlans[0] = vlan.map(VlanTag::dot1q);
    let mut buf = vec![0u8; r.header_len()];
    r.emit(&mut buf).expect("sized above");
    buf
}

/// The L4 segment (TCP header or UDP header) followed by `payload`, checksum filled.
fn l4(
    proto: u8,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    payload: &[u8],
    pseudo: impl Fn(u32) -> u32,
) -> Vec<u8> {
    let mut seg = Vec::new();
    match proto {
        protocol::TCP => {
            seg.resize(20, 0);
            TcpRepr {
                src_port: sport,
                dst_port: dport,
                seq: 1,
                ack: 0,
                flags: tcp_flags,
                window: 65535,
            }
            .emit(&mut seg)
            .expect("sized");
            seg.extend_from_slice(payload);
            let ps = pseudo(seg.len() as u32);
            TcpSegment::new_checked(&mut seg[..])
                .expect("valid")
                .fill_checksum(ps);
        }
        protocol::UDP => {
            seg.resize(8, 0);
            UdpRepr {
                src_port: sport,
                dst_port: dport,
                payload_len: payload.len() as u16,
            }
            .emit(&mut seg)
            .expect("sized");
            seg.extend_from_slice(payload);
            let ps = pseudo(seg.len() as u32);
            UdpDatagram::new_checked(&mut seg[..])
                .expect("valid")
                .fill_checksum(ps);
        }
        _ => seg.extend_from_slice(payload),
    }
    seg
}

/// An Ethernet/IPv4 frame carrying TCP (`proto` 6, with `tcp_flags`) or UDP (17), padded
/// to the 60-byte Ethernet minimum.
#[allow(clippy::too_many_arguments)]
pub fn ipv4_frame(
    vlan: Option<u16>,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let seg = l4(proto, sport, dport, tcp_flags, payload, |len| {
        checksum::pseudo_header_v4(src.octets(), dst.octets(), proto, len as u16)
    });
    let mut f = eth(ethertype::IPV4, vlan);
    let off = f.len();
    f.resize(off + 20, 0);
    Ipv4Repr::new(src, dst, proto, seg.len() as u16)
        .emit(&mut f[off..])
        .expect("sized");
    f.extend_from_slice(&seg);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// A UDP/IPv4 frame.
pub fn udp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    ipv4_frame(None, protocol::UDP, src, dst, sport, dport, 0, payload)
}

/// A TCP/IPv4 frame with the given flags.
pub fn tcp4(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    ipv4_frame(None, protocol::TCP, src, dst, sport, dport, flags, payload)
}

/// An Ethernet/IPv6 frame carrying TCP or UDP after the given raw extension headers
/// (`first_nh` is the fixed header's Next Header; the last extension header's Next Header
/// must be `proto`).
#[allow(clippy::too_many_arguments)]
pub fn ipv6_frame(
    vlan: Option<u16>,
    proto: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    first_nh: u8,
    ext: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let seg = l4(proto, sport, dport, tcp_flags, payload, |len| {
        checksum::pseudo_header_v6(src.octets(), dst.octets(), proto, len)
    });
    let mut f = eth(ethertype::IPV6, vlan);
    let off = f.len();
    f.resize(off + 40, 0);
    let nh = if ext.is_empty() { proto } else { first_nh };
    Ipv6Repr::new(src, dst, nh, (ext.len() + seg.len()) as u16)
        .emit(&mut f[off..])
        .expect("sized");
    f.extend_from_slice(ext);
    f.extend_from_slice(&seg);
    f
}

/// A UDP/IPv6 frame.
pub fn udp6(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    ipv6_frame(
        None,
        protocol::UDP,
        src,
        dst,
        sport,
        dport,
        0,
        0,
        &[],
        payload,
    )
}

/// A TCP/IPv6 frame.
pub fn tcp6(
    src: Ipv6Addr,
    sport: u16,
    dst: Ipv6Addr,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    ipv6_frame(
        None,
        protocol::TCP,
        src,
        dst,
        sport,
        dport,
        flags,
        0,
        &[],
        payload,
    )
}

/// An ICMPv4 echo request frame.
pub fn icmp4_echo(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16) -> Vec<u8> {
    let mut icmp = vec![0u8; 8];
    IcmpEchoRepr {
        msg_type: super::icmp::types::V4_ECHO_REQUEST,
        ident,
        seq,
    }
    .emit(&mut icmp)
    .expect("sized");
    icmp.extend_from_slice(b"headroom");
    IcmpPacket::new_checked(&mut icmp[..])
        .expect("valid")
        .fill_checksum(0);
    let mut f = eth(ethertype::IPV4, None);
    let off = f.len();
    f.resize(off + 20, 0);
    Ipv4Repr::new(src, dst, protocol::ICMP, icmp.len() as u16)
        .emit(&mut f[off..])
        .expect("sized");
    f.extend_from_slice(&icmp);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// An ICMPv6 echo request frame.
pub fn icmp6_echo(src: Ipv6Addr, dst: Ipv6Addr, ident: u16, seq: u16) -> Vec<u8> {
    let mut icmp = vec![0u8; 8];
    IcmpEchoRepr {
        msg_type: super::icmp::types::V6_ECHO_REQUEST,
        ident,
        seq,
    }
    .emit(&mut icmp)
    .expect("sized");
    icmp.extend_from_slice(b"headroom");
    let ps = checksum::pseudo_header_v6(
        src.octets(),
        dst.octets(),
        protocol::ICMPV6,
        icmp.len() as u32,
    );
    IcmpPacket::new_checked(&mut icmp[..])
        .expect("valid")
        .fill_checksum(ps);
    let mut f = eth(ethertype::IPV6, None);
    let off = f.len();
    f.resize(off + 40, 0);
    Ipv6Repr::new(src, dst, protocol::ICMPV6, icmp.len() as u16)
        .emit(&mut f[off..])
        .expect("sized");
    f.extend_from_slice(&icmp);
    f
}

/// An ARP frame (broadcast destination for requests, padded to 60 bytes).
pub fn arp_frame(vlan: Option<u16>, arp: &ArpRepr) -> Vec<u8> {
    let mut f = eth(ethertype::ARP, vlan);
    if arp.operation == super::arp::op::REQUEST {
        f[..6].copy_from_slice(&EthernetAddress::BROADCAST.0);
    }
    let off = f.len();
    f.resize(off + 28, 0);
    arp.emit(&mut f[off..]).expect("sized");
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// A small set of valid frames of every kind (for seed corpora and prefix tests), with a
/// name for each.
pub fn sample_frames() -> Vec<(&'static str, Vec<u8>)> {
    let a4 = Ipv4Addr::new(10, 0, 0, 1);
    let b4 = Ipv4Addr::new(10, 0, 0, 2);
    let a6: Ipv6Addr = "2001:db8::1".parse().expect("literal");
    let b6: Ipv6Addr = "2001:db8::2".parse().expect("literal");
    // hop-by-hop (8) -> routing (8) -> fragment (first, M=1) -> dest-opts (8) -> TCP
    let ext = [
        protocol::IPV6_ROUTE,
        0,
        1,
        4,
        0,
        0,
        0,
        0, // hop-by-hop: PadN
        protocol::IPV6_FRAG,
        0,
        0,
        0,
        0,
        0,
        0,
        0, // routing, segments left 0
        protocol::IPV6_OPTS,
        0,
        0x00,
        0x01,
        0,
        0,
        0,
        7, // fragment: offset 0, M
        protocol::TCP,
        0,
        1,
        4,
        0,
        0,
        0,
        0, // dest-opts: PadN
    ];
    let mut frag4 = udp4(a4, 5000, b4, 53, &[0u8; 40]);
    frag4[14 + 6] = 0x00;
    frag4[14 + 7] = 0x05; // a later fragment at offset 40
    vec![
        ("udp4", udp4(a4, 40000, b4, 53, b"query")),
        (
            "tcp4_syn",
            tcp4(a4, 40001, b4, 80, super::tcp::flags::SYN, &[]),
        ),
        (
            "tcp4_vlan",
            ipv4_frame(
                Some(42),
                protocol::TCP,
                b4,
                a4,
                443,
                40002,
                super::tcp::flags::ACK,
                b"hello",
            ),
        ),
        ("udp6", udp6(a6, 5353, b6, 5353, b"mdns")),
        (
            "tcp6_ext",
            ipv6_frame(
                None,
                protocol::TCP,
                a6,
                b6,
                1234,
                22,
                super::tcp::flags::SYN,
                protocol::HOPOPT,
                &ext,
                &[],
            ),
        ),
        ("icmp4_echo", icmp4_echo(a4, b4, 0x4242, 1)),
        ("icmp6_echo", icmp6_echo(a6, b6, 0x4243, 1)),
        (
            "arp_request",
            arp_frame(None, &ArpRepr::request(SRC_MAC, a4, b4)),
        ),
        (
            "arp_vlan_reply",
            arp_frame(Some(7), &ArpRepr::request(SRC_MAC, a4, b4).reply(DST_MAC)),
        ),
        ("ipv4_later_fragment", frag4),
    ]
}
