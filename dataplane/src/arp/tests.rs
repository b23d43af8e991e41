use super::*;
use crate::packet::{build, parse_frame};

const OUR_MAC: [u8; 6] = [0x02, 0x48, 0x52, 0, 0, 0x01];
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const MS: u64 = 1_000_000;

/// Router 10.0.0.1 (00:11:22:33:44:55) asks, broadcast, who has 10.0.0.100.
#[rustfmt::skip]
const REQUEST_FOR_VIP: [u8; 60] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x08, 0x06,
    0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 10, 0, 0, 1,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 0, 0, 100,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// The expected answer of the owner.
#[rustfmt::skip]
const REPLY_FROM_OWNER: [u8; 60] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x02, 0x48, 0x52, 0x00, 0x00, 0x01, 0x08, 0x06,
    0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02,
    0x02, 0x48, 0x52, 0x00, 0x00, 0x01, 10, 0, 0, 100,
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 10, 0, 0, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn interceptor(host_ip: Option<Ipv4Addr>) -> ArpInterceptor {
    let mut a = ArpInterceptor::new(ArpConfig {
        mac: OUR_MAC,
        host_ip,
        announce_spacing_ns: 100 * MS,
    });
    a.set_vips(&[(VIP, 3)]).unwrap();
    a
}

fn frame(oper: u16, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    tagged(None, oper, spa, tpa)
}

fn tagged(vlan: Option<u16>, oper: u16, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = build::arp_frame(
        vlan,
        &ArpRepr {
            operation: oper,
            sender_hw: EthernetAddress([0x00, 0x11, 0x22, 0x33, 0x44, 0x66]),
            sender_ip: spa,
            target_hw: EthernetAddress::ZERO,
            target_ip: tpa,
        },
    );
    f[6..12].copy_from_slice(&[0x00, 0x11, 0x22, 0x33, 0x44, 0x66]);
    f
}

/// What the pipeline does: parse once, hand ARP to the interceptor.
fn outer(a: &mut ArpInterceptor, f: &[u8], out: &mut [u8]) -> Verdict {
    let p = parse_frame(f);
    a.on_frame(Side::Outer, f, p.as_ref(), out)
        .unwrap_or(Verdict::Forward)
}

fn inner(a: &mut ArpInterceptor, f: &[u8], out: &mut [u8]) -> Verdict {
    let p = parse_frame(f);
    a.on_frame(Side::Inner, f, p.as_ref(), out)
        .unwrap_or(Verdict::Forward)
}

#[test]
fn message_reads_fields() {
    let info = parse_frame(&REQUEST_FOR_VIP).unwrap();
    let m = ArpMessage::read(&REQUEST_FOR_VIP, &info).unwrap();
    assert_eq!(m.arp.operation, OP_REQUEST);
    assert_eq!(m.eth.dst.0, BROADCAST);
    assert_eq!(m.eth.src.0, [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
    assert_eq!(m.arp.sender_hw.0, [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
    assert_eq!(m.arp.sender_ip, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(m.arp.target_hw.0, [0; 6]);
    assert_eq!(m.arp.target_ip, VIP);
    // Unpadded 42-byte frames are fine too.
    let short = &REQUEST_FOR_VIP[..42];
    assert!(ArpMessage::read(short, &parse_frame(short).unwrap()).is_some());
    let mut out = [0u8; 64];
    assert_eq!(m.emit(&mut out), Some(60));
    assert_eq!(out[..60], REQUEST_FOR_VIP);
}

#[test]
fn bad_frames_from_the_wire_are_dropped_as_malformed() {
    let mut a = interceptor(None);
    let mut out = [0u8; 64];
    let mut f = REQUEST_FOR_VIP;
    f[15] = 6; // hardware type 6 (IEEE 802)
    assert_eq!(
        outer(&mut a, &f, &mut out),
        Verdict::Drop(DropReason::Malformed)
    );
    let mut f = REQUEST_FOR_VIP;
    f[18] = 8;
    assert_eq!(
        outer(&mut a, &f, &mut out),
        Verdict::Drop(DropReason::Malformed)
    );
    let mut f = REQUEST_FOR_VIP;
    f[21] = 3;
    assert_eq!(
        outer(&mut a, &f, &mut out),
        Verdict::Drop(DropReason::Malformed)
    );
    for len in 14..42 {
        assert_eq!(
            outer(&mut a, &REQUEST_FOR_VIP[..len], &mut out),
            Verdict::Drop(DropReason::Malformed),
            "len {len}"
        );
    }
    // From the host they go on (the host's own business).
    assert_eq!(inner(&mut a, &f, &mut out), Verdict::Forward);
}

#[test]
fn tagged_requests_are_answered_on_their_vlan() {
    let mut a = interceptor(Some(HOST_IP));
    a.on_ownership_change(0, VIP, true);
    let mut out = [0u8; 64];
    let req = tagged(Some(42), OP_REQUEST, Ipv4Addr::new(10, 0, 0, 1), VIP);
    let Verdict::Reply(n) = outer(&mut a, &req, &mut out) else {
        panic!("the owner answers tagged requests");
    };
    let info = parse_frame(&out[..n]).unwrap();
    assert_eq!(info.vlan, Some(42));
    let m = ArpMessage::read(&out[..n], &info).unwrap();
    assert_eq!(m.arp.operation, OP_REPLY);
    assert_eq!((m.arp.sender_ip, m.arp.sender_hw.0), (VIP, OUR_MAC));
    assert_eq!(m.eth.dst.0, [0x00, 0x11, 0x22, 0x33, 0x44, 0x66]);
    // A tagged announcement of the VIP from the host is suppressed, a tagged
    // request with the VIP as sender rewritten (tag kept).
    assert_eq!(
        inner(&mut a, &tagged(Some(42), OP_REQUEST, VIP, VIP), &mut out),
        Verdict::Drop(DropReason::Suppressed)
    );
    let r = tagged(Some(42), OP_REQUEST, VIP, Ipv4Addr::new(10, 0, 0, 1));
    let Verdict::Reply(n) = inner(&mut a, &r, &mut out) else {
        panic!("rewritten");
    };
    let info = parse_frame(&out[..n]).unwrap();
    assert_eq!(info.vlan, Some(42));
    assert_eq!(
        ArpMessage::read(&out[..n], &info).unwrap().arp.sender_ip,
        HOST_IP
    );
}

#[test]
fn owner_answers_with_its_mac() {
    let mut a = interceptor(None);
    assert!(a.on_ownership_change(0, VIP, true));
    let mut out = [0xeeu8; 64];
    assert_eq!(
        outer(&mut a, &REQUEST_FOR_VIP, &mut out),
        Verdict::Reply(60)
    );
    assert_eq!(out[..60], REPLY_FROM_OWNER);
    assert_eq!(a.stats().answered, 1);
    // Too small an output buffer: nothing sent, the request is still kept
    // from the host stack.
    assert_eq!(
        outer(&mut a, &REQUEST_FOR_VIP, &mut [0u8; 59]),
        Verdict::Drop(DropReason::Suppressed)
    );
}

#[test]
fn non_owner_drops_requests_for_vip() {
    let mut a = interceptor(None);
    let mut out = [0u8; 64];
    assert_eq!(
        outer(&mut a, &REQUEST_FOR_VIP, &mut out),
        Verdict::Drop(DropReason::Suppressed)
    );
    assert_eq!(a.stats().suppressed_in, 1);
    assert_eq!(a.stats().answered, 0);
    // After losing ownership, the same holds.
    a.on_ownership_change(0, VIP, true);
    a.on_ownership_change(1, VIP, false);
    assert_eq!(
        outer(&mut a, &REQUEST_FOR_VIP, &mut out),
        Verdict::Drop(DropReason::Suppressed)
    );
    assert_eq!(a.stats().ownership_changes, 2);
}

#[test]
fn outer_other_arp_passes_vip_announcements_dropped() {
    let mut a = interceptor(None);
    a.on_ownership_change(0, VIP, true);
    let mut out = [0u8; 64];
    let other = frame(OP_REQUEST, Ipv4Addr::new(10, 0, 0, 1), HOST_IP);
    assert_eq!(outer(&mut a, &other, &mut out), Verdict::Forward);
    let reply = frame(OP_REPLY, Ipv4Addr::new(10, 0, 0, 1), HOST_IP);
    assert_eq!(outer(&mut a, &reply, &mut out), Verdict::Forward);
    // Another node's gratuitous ARP for the VIP never reaches the host stack.
    let garp = frame(OP_REQUEST, VIP, VIP);
    assert_eq!(
        outer(&mut a, &garp, &mut out),
        Verdict::Drop(DropReason::Suppressed)
    );
    let garp_reply = frame(OP_REPLY, VIP, VIP);
    assert_eq!(
        outer(&mut a, &garp_reply, &mut out),
        Verdict::Drop(DropReason::Suppressed)
    );
    // Non-ARP frames pass; malformed ARP is dropped and counted.
    let mut ip = REQUEST_FOR_VIP;
    ip[13] = 0x00;
    assert_eq!(outer(&mut a, &ip, &mut out), Verdict::Forward);
    assert_eq!(
        outer(&mut a, &REQUEST_FOR_VIP[..30], &mut out),
        Verdict::Drop(DropReason::Malformed)
    );
    assert_eq!(outer(&mut a, &[0u8; 5], &mut out), Verdict::Forward);
    assert_eq!(a.stats().malformed, 1);
    assert_eq!(a.stats().suppressed_in, 2);
}

#[test]
fn inner_vip_arp_is_suppressed_on_every_node() {
    for owner in [false, true] {
        let mut a = interceptor(None);
        a.on_ownership_change(0, VIP, owner);
        let mut out = [0u8; 64];
        // Host stack answering a request for the VIP.
        let mut host_reply = REPLY_FROM_OWNER;
        host_reply[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
        assert_eq!(
            inner(&mut a, &host_reply, &mut out),
            Verdict::Drop(DropReason::Suppressed)
        );
        // Host stack announcing the VIP.
        assert_eq!(
            inner(&mut a, &frame(OP_REQUEST, VIP, VIP), &mut out),
            Verdict::Drop(DropReason::Suppressed)
        );
        // Host resolving a neighbour with the VIP as sender, no host address
        // configured: dropped.
        let req = frame(OP_REQUEST, VIP, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(
            inner(&mut a, &req, &mut out),
            Verdict::Drop(DropReason::Suppressed)
        );
        // Ordinary ARP of the host passes.
        let own = frame(OP_REQUEST, HOST_IP, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(inner(&mut a, &own, &mut out), Verdict::Forward);
        assert_eq!(a.stats().suppressed_out, 3);
    }
}

#[test]
fn inner_request_with_vip_sender_is_rewritten() {
    let mut a = interceptor(Some(HOST_IP));
    let mut out = [0u8; 64];
    let req = frame(OP_REQUEST, VIP, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(inner(&mut a, &req, &mut out), Verdict::Reply(60));
    let mut want = req.clone();
    want[28..32].copy_from_slice(&HOST_IP.octets());
    assert_eq!(out[..60], want);
    assert_eq!(a.stats().rewritten, 1);
}

#[test]
fn gratuitous_burst_on_becoming_owner() {
    let mut a = interceptor(None);
    let mut out = [0u8; 64];
    assert_eq!(a.poll_announce(0, &mut out), None);
    assert_eq!(a.next_announce_ns(), None);
    a.on_ownership_change(1000 * MS, VIP, true);
    assert_eq!(a.next_announce_ns(), Some(1000 * MS));
    assert_eq!(a.poll_announce(999 * MS, &mut out), None);

    let mut sent = Vec::new();
    let mut t = 1000 * MS;
    while t < 2000 * MS {
        while let Some(n) = a.poll_announce(t, &mut out) {
            sent.push((t, out[..n].to_vec()));
        }
        t += 10 * MS;
    }
    let times: Vec<u64> = sent.iter().map(|s| s.0).collect();
    assert_eq!(times, vec![1000 * MS, 1100 * MS, 1200 * MS]);
    assert_eq!(a.stats().announced, 3);
    #[rustfmt::skip]
    let want_request: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x48, 0x52, 0x00, 0x00, 0x01, 0x08, 0x06,
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
        0x02, 0x48, 0x52, 0x00, 0x00, 0x01, 10, 0, 0, 100,
        0, 0, 0, 0, 0, 0, 10, 0, 0, 100,
    ];
    assert_eq!(sent[0].1[..42], want_request);
    assert_eq!(sent[0].1.len(), 60);
    let read = |f: &[u8]| ArpMessage::read(f, &parse_frame(f).unwrap()).unwrap().arp;
    let g = read(&sent[1].1);
    assert_eq!(g.operation, OP_REPLY);
    assert_eq!(
        (g.sender_ip, g.target_ip, g.target_hw.0),
        (VIP, VIP, OUR_MAC)
    );
    assert_eq!(read(&sent[2].1).operation, OP_REQUEST);
    assert_eq!(a.next_announce_ns(), None);
}

#[test]
fn losing_ownership_cancels_burst() {
    let mut a = interceptor(None);
    let mut out = [0u8; 64];
    a.on_ownership_change(0, VIP, true);
    assert!(a.poll_announce(0, &mut out).is_some());
    a.on_ownership_change(MS, VIP, false);
    assert_eq!(a.poll_announce(10_000 * MS, &mut out), None);
    assert!(!a.on_ownership_change(0, Ipv4Addr::new(1, 2, 3, 4), true));
}

#[test]
fn sync_owned_applies_only_changes() {
    let mut a = interceptor(None);
    let other = Ipv4Addr::new(10, 0, 0, 200);
    a.set_vips(&[(VIP, 2), (other, 1)]).unwrap();
    assert_eq!(a.sync_owned(0, &[VIP]), 1);
    assert_eq!(a.sync_owned(MS, &[VIP]), 0, "no change, no new burst");
    let mut out = [0u8; 64];
    let mut n = 0;
    while a
        .poll_announce(10_000 * MS + n * 100 * MS, &mut out)
        .is_some()
    {
        n += 1;
    }
    assert_eq!(n, 2);
    assert_eq!(a.sync_owned(20_000 * MS, &[other]), 2);
    assert!(!a.is_owner(VIP) && a.is_owner(other));
}

#[test]
fn set_vips_keeps_state_and_bounds() {
    let mut a = interceptor(None);
    a.on_ownership_change(0, VIP, true);
    let other = Ipv4Addr::new(10, 0, 0, 200);
    a.set_vips(&[(other, 1), (VIP, 3)]).unwrap();
    assert!(a.is_owner(VIP) && !a.is_owner(other));
    let many: Vec<(Ipv4Addr, u32)> = (0..=MAX_VIPS as u32)
        .map(|i| (Ipv4Addr::from(i), 1))
        .collect();
    assert_eq!(a.set_vips(&many), Err(ArpError::TooManyVips));
}

proptest::proptest! {
    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80), owner in proptest::bool::ANY) {
        let mut a = interceptor(Some(HOST_IP));
        a.on_ownership_change(0, VIP, owner);
        let mut out = [0u8; 64];
        let _ = outer(&mut a, &bytes, &mut out);
        let _ = inner(&mut a, &bytes, &mut out);
        let mut f = REQUEST_FOR_VIP.to_vec();
        let n = bytes.len().min(f.len());
        f[20..].iter_mut().zip(&bytes[..n.saturating_sub(20)]).for_each(|(d, s)| *d = *s);
        let _ = outer(&mut a, &f, &mut out);
    }
}
