//! Frame-level tests of `parse_frame` and the fuzz body.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::build::*;
use super::*;

fn a4() -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 1)
}
fn b4() -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 2)
}
fn a6() -> Ipv6Addr {
    "2001:db8::1".parse().unwrap()
}
fn b6() -> Ipv6Addr {
    "2001:db8::2".parse().unwrap()
}

fn sample(name: &str) -> Vec<u8> {
    sample_frames()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
}

#[test]
fn udp4_frame() {
    let f = udp4(a4(), 40000, b4(), 53, b"query");
    let i = parse_frame(&f).unwrap();
    assert_eq!(i.kind, L3Kind::Ipv4);
    assert_eq!(i.ethertype, ethertype::IPV4);
    assert_eq!(i.vlan, None);
    assert_eq!(i.l3_offset, 14);
    assert_eq!(i.l4_offset, Some(34));
    assert_eq!(i.l3_len, 20 + 8 + 5);
    assert_eq!(i.flow, Some(FlowKey::v4(17, a4(), b4(), 40000, 53)));
    assert_eq!(i.tcp_flags, 0);
    assert!(!i.is_fragment);
    // Checksums from the builder are right.
    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert!(UdpDatagram::new_checked(ip.payload())
        .unwrap()
        .verify_checksum(ip.pseudo_header_sum()));
}

#[test]
fn tcp4_vlan_frame() {
    let f = sample("tcp4_vlan");
    let i = parse_frame(&f).unwrap();
    assert_eq!(i.vlan, Some(42));
    assert_eq!(i.l3_offset, 18);
    assert_eq!(i.l4_offset, Some(38));
    assert_eq!(i.tcp_flags, tcp::flags::ACK);
    assert_eq!(i.flow, Some(FlowKey::v4(6, b4(), a4(), 443, 40002)));
    let ip = Ipv4Packet::new_checked(&f[18..]).unwrap();
    assert!(TcpSegment::new_checked(ip.payload())
        .unwrap()
        .verify_checksum(ip.pseudo_header_sum()));
}

#[test]
fn qinq_frame() {
    let mut f = udp4(a4(), 1, b4(), 2, b"x");
    // Insert an 802.1ad tag and an 802.1Q tag.
    f.splice(12..12, [0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x07]);
    let i = parse_frame(&f).unwrap();
    assert_eq!(i.vlan, Some(100));
    assert_eq!(i.l3_offset, 22);
    assert_eq!(i.kind, L3Kind::Ipv4);
    assert_eq!(i.flow.unwrap().dst_port(), 2);
    // A third tag is "other".
    f.splice(12..12, [0x81, 0x00, 0x00, 0x09]);
    let i = parse_frame(&f).unwrap();
    assert_eq!(i.kind, L3Kind::Other);
    assert_eq!(i.ethertype, ethertype::VLAN);
    assert_eq!(i.flow, None);
}

#[test]
fn ipv6_frames() {
    let f = udp6(a6(), 5353, b6(), 5353, b"mdns");
    let i = parse_frame(&f).unwrap();
    assert_eq!(i.kind, L3Kind::Ipv6);
    assert_eq!(i.l4_offset, Some(54));
    assert_eq!(i.l3_len, 40 + 8 + 4);
    assert_eq!(i.flow, Some(FlowKey::v6(17, a6(), b6(), 5353, 5353)));

    let f = sample("tcp6_ext");
    let i = parse_frame(&f).unwrap();
    assert_eq!(i.l4_offset, Some(14 + 40 + 32));
    assert_eq!(i.tcp_flags, tcp::flags::SYN);
    assert!(i.is_fragment);
    assert_eq!(i.flow, Some(FlowKey::v6(6, a6(), b6(), 1234, 22)));
    let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
    let l4 = &f[86..];
    assert!(TcpSegment::new_checked(l4)
        .unwrap()
        .verify_checksum(ip.pseudo_header_sum(6, l4.len() as u32)));
}

#[test]
fn icmp_frames() {
    let i = parse_frame(&sample("icmp4_echo")).unwrap();
    assert_eq!(i.flow, Some(FlowKey::v4(1, a4(), b4(), 0x4242, 0x4242)));
    let f = sample("icmp6_echo");
    let i = parse_frame(&f).unwrap();
    assert_eq!(i.flow, Some(FlowKey::v6(58, a6(), b6(), 0x4243, 0x4243)));
    let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
    assert!(IcmpPacket::new_checked(ip.payload())
        .unwrap()
        .verify_checksum(ip.pseudo_header_sum(58, ip.payload().len() as u32)));
    // A non-echo ICMP message (destination unreachable) has ports 0.
    let mut f = sample("icmp4_echo");
    f[34] = 3;
    assert_eq!(parse_frame(&f).unwrap().flow.unwrap().src_port(), 0);
}

#[test]
fn arp_frames() {
    let i = parse_frame(&sample("arp_request")).unwrap();
    assert_eq!(
        (i.kind, i.l3_offset, i.l3_len, i.flow, i.l4_offset),
        (L3Kind::Arp, 14, 28, None, None)
    );
    let f = sample("arp_vlan_reply");
    let i = parse_frame(&f).unwrap();
    assert_eq!((i.kind, i.vlan, i.l3_offset), (L3Kind::Arp, Some(7), 18));
    let a = arp::ArpRepr::parse(&ArpPacket::new_checked(&f[18..]).unwrap());
    assert_eq!(a.operation, arp::op::REPLY);
    assert_eq!(a.sender_ip, b4());
    // Non-Ethernet ARP is unsupported.
    let mut f = sample("arp_request");
    f[15] = 6;
    assert_eq!(
        parse_frame(&f).unwrap_err(),
        ParseError::Unsupported { layer: Layer::Arp }
    );
}

#[test]
fn fragments() {
    let i = parse_frame(&sample("ipv4_later_fragment")).unwrap();
    assert!(i.is_fragment);
    assert_eq!(i.l4_offset, None);
    assert_eq!(i.flow, Some(FlowKey::v4(17, a4(), b4(), 0, 0)));
    // First fragment of a UDP datagram whose length field covers later fragments.
    let mut f = udp4(a4(), 5000, b4(), 53, &[0u8; 40]);
    f[14 + 6] = 0x20; // MF
    f[38..40].copy_from_slice(&1000u16.to_be_bytes()); // udp length
    let i = parse_frame(&f).unwrap();
    assert!(i.is_fragment);
    assert_eq!(i.l4_offset, Some(34));
    assert_eq!(i.flow.unwrap().dst_port(), 53);
    // The same UDP length without MF is a truncated datagram.
    f[14 + 6] = 0;
    assert_eq!(
        parse_frame(&f).unwrap_err(),
        ParseError::Truncated { layer: Layer::Udp }
    );
    // IPv6 later fragment.
    let ext = [protocol::UDP, 0, 0x00, 0x10, 0, 0, 0, 1];
    let f = ipv6_frame(
        None,
        protocol::UDP,
        a6(),
        b6(),
        1,
        2,
        0,
        protocol::IPV6_FRAG,
        &ext,
        b"x",
    );
    let i = parse_frame(&f).unwrap();
    assert!(i.is_fragment && i.l4_offset.is_none());
    assert_eq!(i.flow.unwrap().src_port(), 0);
}

#[test]
fn other_and_padding() {
    let mut f = vec![0u8; 60];
    f[12] = 0x88;
    f[13] = 0xcc; // LLDP
    let i = parse_frame(&f).unwrap();
    assert_eq!(
        (i.kind, i.ethertype, i.l3_len, i.flow),
        (L3Kind::Other, 0x88cc, 46, None)
    );
    // Padding after a short IPv4 datagram is ignored.
    let f = sample("tcp4_syn");
    assert_eq!(f.len(), 60);
    let i = parse_frame(&f).unwrap();
    assert_eq!(i.l3_len, 40);
}

#[test]
fn malformed_headers() {
    let good = udp4(a4(), 1, b4(), 2, b"hello");
    let cases: [(usize, u8, ParseError); 6] = [
        (14, 0x65, ParseError::BadVersion { layer: Layer::Ipv4 }),
        (14, 0x44, ParseError::BadHeaderLength { layer: Layer::Ipv4 }),
        (14, 0x4f, ParseError::Truncated { layer: Layer::Ipv4 }), // 60-byte header
        (16, 0xff, ParseError::Truncated { layer: Layer::Ipv4 }), // total length > frame
        (39, 0x07, ParseError::BadLength { layer: Layer::Udp }),  // udp len 7
        (39, 0xff, ParseError::Truncated { layer: Layer::Udp }),  // udp len > ip payload
    ];
    for (off, v, err) in cases {
        let mut f = good.clone();
        f[off] = v;
        assert_eq!(parse_frame(&f), Err(err), "byte {off} = {v:#x}");
    }
    // IPv4 total length below the header length.
    let mut f = good.clone();
    f[16] = 0;
    f[17] = 10;
    assert_eq!(
        parse_frame(&f),
        Err(ParseError::BadLength { layer: Layer::Ipv4 })
    );
    // TCP data offset < 5 and > segment.
    let t = tcp4(a4(), 1, b4(), 2, 0, b"");
    let mut f = t.clone();
    f[46] = 0x40;
    assert_eq!(
        parse_frame(&f),
        Err(ParseError::BadHeaderLength { layer: Layer::Tcp })
    );
    let mut f = t.clone();
    f[46] = 0xf0;
    assert_eq!(
        parse_frame(&f),
        Err(ParseError::Truncated { layer: Layer::Tcp })
    );
    // IPv6 with a bad version and an over-long payload length.
    let u = udp6(a6(), 1, b6(), 2, b"");
    let mut f = u.clone();
    f[14] = 0x40;
    assert_eq!(
        parse_frame(&f),
        Err(ParseError::BadVersion { layer: Layer::Ipv6 })
    );
    let mut f = u.clone();
    f[18] = 0x10;
    assert_eq!(
        parse_frame(&f),
        Err(ParseError::Truncated { layer: Layer::Ipv6 })
    );
    // IPv6 extension header running past the payload.
    let ext = [protocol::UDP, 4, 0, 0, 0, 0, 0, 0];
    let f = ipv6_frame(
        None,
        protocol::UDP,
        a6(),
        b6(),
        1,
        2,
        0,
        protocol::HOPOPT,
        &ext,
        b"",
    );
    assert_eq!(
        parse_frame(&f),
        Err(ParseError::Truncated {
            layer: Layer::Ipv6Ext
        })
    );
    // Short frames.
    assert_eq!(
        parse_frame(&[]),
        Err(ParseError::Truncated {
            layer: Layer::Ethernet
        })
    );
    assert_eq!(
        parse_frame(&good[..13]),
        Err(ParseError::Truncated {
            layer: Layer::Ethernet
        })
    );
}

/// Every prefix of every valid frame: either an error or a result consistent with the
/// prefix; never a panic. Prefixes that cut into the L3 packet must be errors (the
/// padding of short frames aside).
#[test]
fn truncated_at_every_offset() {
    for (name, f) in sample_frames() {
        let full = parse_frame(&f).unwrap_or_else(|e| panic!("{name}: {e}"));
        let needed = full.l3_offset as usize + full.l3_len as usize;
        for n in 0..f.len() {
            let prefix = &f[..n];
            fuzz_parse(prefix);
            match parse_frame(prefix) {
                Ok(i) => {
                    assert!(n >= needed, "{name}: prefix {n} < {needed} parsed as {i:?}");
                    assert_eq!(i, full, "{name}: prefix {n}");
                }
                Err(_) => assert!(
                    n < needed || full.kind == L3Kind::Other,
                    "{name}: prefix {n} failed"
                ),
            }
        }
    }
}

#[test]
fn parse_stats_count_each_kind() {
    let mut s = ParseStats::default();
    let good = udp4(a4(), 1, b4(), 2, b"");
    assert!(s.record(parse_frame(&good)).is_ok());
    assert!(s.record(parse_frame(&good[..10])).is_err());
    assert!(s.record(parse_frame(&good[..20])).is_err());
    assert!(s.record(parse_frame(&good[..20])).is_err());
    let mut bad = good.clone();
    bad[14] = 0x55;
    assert!(s.record(parse_frame(&bad)).is_err());
    assert_eq!(s.ok, 1);
    assert_eq!(s.errors(), 4);
    assert_eq!(s.count(ErrorKind::Truncated, Layer::Ethernet), 1);
    assert_eq!(s.count(ErrorKind::Truncated, Layer::Ipv4), 2);
    assert_eq!(s.count(ErrorKind::BadVersion, Layer::Ipv4), 1);
    let v: Vec<_> = s.iter().collect();
    assert_eq!(v.len(), 3);
    let mut t = ParseStats::default();
    t.merge(&s);
    t.merge(&s);
    assert_eq!((t.ok, t.errors()), (2, 8));
    assert_eq!(ErrorKind::ALL.len(), ErrorKind::COUNT);
    assert_eq!(
        Layer::ALL
            .iter()
            .enumerate()
            .filter(|(i, l)| **l as usize == *i)
            .count(),
        Layer::COUNT
    );
    assert_eq!(ParseError::TooManyExtensionHeaders.layer(), Layer::Ipv6Ext);
    assert_eq!(
        ParseError::Truncated { layer: Layer::Tcp }.to_string(),
        "truncated tcp header or packet"
    );
}

/// The fuzz body over the seed corpus files (if present) and the built samples.
#[test]
fn fuzz_body_over_corpus() {
    for (_, f) in sample_frames() {
        fuzz_parse(&f);
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_frame");
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            fuzz_parse(&data);
        }
    }
}

/// Writes the seed corpus: `HEADROOM_WRITE_CORPUS=1 cargo test -p headroom-dataplane
/// write_seed_corpus`. Checks the corpus matches the builders otherwise.
#[test]
fn write_seed_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_frame");
    let write = std::env::var_os("HEADROOM_WRITE_CORPUS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, f) in sample_frames() {
        let p = dir.join(format!("{name}.bin"));
        if write {
            std::fs::write(&p, &f).unwrap();
        } else if let Ok(on_disk) = std::fs::read(&p) {
            assert_eq!(
                on_disk,
                f,
                "{} is stale: rerun with HEADROOM_WRITE_CORPUS=1",
                p.display()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        fuzz_parse(&data);
    }

    /// Random bytes after a valid Ethernet + IPv4/IPv6 prefix, to get past the EtherType.
    #[test]
    fn random_l3_never_panic(v6 in any::<bool>(), vlan in any::<bool>(), tail in proptest::collection::vec(any::<u8>(), 0..160)) {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        }
        f.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
        f.extend_from_slice(&tail);
        fuzz_parse(&f);
    }

    /// Single-byte corruptions of valid frames.
    #[test]
    fn mutated_samples_never_panic(which in 0usize..10, idx in any::<usize>(), val in any::<u8>()) {
        let frames = sample_frames();
        let mut f = frames[which % frames.len()].1.clone();
        let i = idx % f.len();
        f[i] = val;
        fuzz_parse(&f);
    }
}
