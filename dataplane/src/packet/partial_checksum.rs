//! Completing TCP/UDP checksums a local stack left partial.
//!
//! A Linux stack that offloads checksums (`tx-checksumming on`, the default on
//! veth and on every NIC) hands the device a frame whose TCP/UDP checksum
//! field holds only the pseudo-header sum (`CHECKSUM_PARTIAL`): the NIC, or
//! for a veth the receiving stack's trust, completes it. A frame that reaches
//! AF_XDP that way carries no mark of it (no XDP metadata kfunc reports the
//! checksum state), and once a worker transmits it through a copy-mode socket
//! it is a fresh skb whose checksum every receiver verifies, and drops.
//!
//! Detection is by value: a partial field equals the folded pseudo-header
//! sum. A complete checksum takes that value with probability 2^-16; then
//! recomputing it yields the same, correct value, so a false positive costs
//! one checksum pass and never changes a correct frame. Only sides that can
//! carry partial frames (the host stack, and virtual devices on the network
//! side) are completed: on a physical network side a corrupt frame whose
//! field happened to equal the pseudo sum would otherwise be "repaired".
//!
//! Cost: the check is a pseudo-header sum (a dozen additions); completing is
//! one pass over the L4 bytes (`cargo bench -p headroom-dataplane --bench
//! hot_paths -- partial`).

use super::{
    checksum::{fold, pseudo_header_v4, pseudo_header_v6, sum_parts},
    field::u16_at,
    ipv4::protocol,
    FrameInfo, L3Kind,
};

/// What [`complete`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Not TCP/UDP over IP, a fragment, or UDP over IPv4 without a checksum.
    NotApplicable,
    /// The field was not a partial checksum: left alone.
    Complete,
    /// The field held the pseudo-header sum: the checksum was completed.
    Completed,
}

/// Where the L4 checksum field of a frame is and what the pseudo-header sums to.
struct L4Sum {
    l4: usize,
    l4_len: usize,
    field: usize,
    pseudo: u16,
    udp: bool,
}

fn locate(head: &[u8], info: &FrameInfo) -> Option<L4Sum> {
    if info.is_fragment {
        return None;
    }
    let l4 = info.l4_offset? as usize;
    let l3 = info.l3_offset as usize;
    let flow = info.flow?;
    let proto = flow.protocol();
    let field_at = match proto {
        protocol::TCP => 16,
        protocol::UDP => 6,
        _ => return None,
    };
    let l4_len = (info.l3_len as usize).checked_sub(l4 - l3)?;
    let field = l4 + field_at;
    if field + 2 > head.len() || l4_len < field_at + 2 {
        return None;
    }
    let pseudo = match info.kind {
        L3Kind::Ipv4 => {
            let ip = head.get(l3..l3 + 20)?;
            let s = [ip[12], ip[13], ip[14], ip[15]];
            let d = [ip[16], ip[17], ip[18], ip[19]];
            pseudo_header_v4(s, d, proto, l4_len as u16)
        }
        L3Kind::Ipv6 => {
            let ip = head.get(l3..l3 + 40)?;
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            pseudo_header_v6(s, d, proto, l4_len as u32)
        }
        _ => return None,
    };
    Some(L4Sum {
        l4,
        l4_len,
        field,
        pseudo: fold(pseudo),
        udp: proto == protocol::UDP,
    })
}

/// The `len` bytes from `at` of a packet whose first buffer is `head` and whose
/// other buffers are `tail`, as slices.
pub(crate) fn span<'a>(
    head: &'a [u8],
    tail: &'a [&'a [u8]],
    at: usize,
    len: usize,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut skip = at;
    let mut left = len;
    std::iter::once(head)
        .chain(tail.iter().copied())
        .filter_map(move |b| {
            if left == 0 {
                return None;
            }
            if skip >= b.len() {
                skip -= b.len();
                return None;
            }
            let part = &b[skip..b.len().min(skip + left)];
            skip = 0;
            left -= part.len();
            Some(part)
        })
}

/// Whether the frame's L4 checksum field holds a partial checksum.
pub fn is_partial(head: &[u8], info: &FrameInfo) -> bool {
    match locate(head, info) {
        Some(l) => u16_at(head, l.field) == l.pseudo && !(l.udp && l.pseudo == 0),
        None => false,
    }
}

/// Completes the TCP/UDP checksum of a frame (first buffer `head`, further
/// buffers `tail`) if it is partial. `info` is the frame's parse.
pub fn complete(head: &mut [u8], tail: &[&[u8]], info: &FrameInfo) -> Completion {
    let Some(l) = locate(head, info) else {
        return Completion::NotApplicable;
    };
    let field = u16_at(head, l.field);
    if l.udp && field == 0 && info.kind == L3Kind::Ipv4 {
        return Completion::NotApplicable;
    }
    if field != l.pseudo {
        return Completion::Complete;
    }
    // The field already holds the pseudo-header sum: summing the L4 bytes
    // with it in place gives the whole sum, whose complement is the checksum.
    let total = sum_parts(span(head, tail, l.l4, l.l4_len));
    let mut c = !fold(total);
    if l.udp && c == 0 {
        c = 0xffff;
    }
    head[l.field..l.field + 2].copy_from_slice(&c.to_be_bytes());
    Completion::Completed
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::packet::{build, parse_frame, parse_packet, tcp::TcpSegment, udp::UdpDatagram};

    /// Turns a frame with a correct checksum into what an offloading stack
    /// emits: the field holds the folded pseudo-header sum.
    fn make_partial(f: &mut [u8]) {
        let info = parse_frame(f).unwrap();
        let l = locate(f, &info).unwrap();
        f[l.field..l.field + 2].copy_from_slice(&l.pseudo.to_be_bytes());
    }

    fn l4_valid(f: &[u8]) -> bool {
        let info = parse_frame(f).unwrap();
        let l4 = info.l4_offset.unwrap() as usize;
        let l = locate(f, &info).unwrap();
        let end = l4 + l.l4_len;
        let pseudo = match info.kind {
            L3Kind::Ipv4 => pseudo_header_v4(
                f[26..30].try_into().unwrap(),
                f[30..34].try_into().unwrap(),
                info.flow.unwrap().protocol(),
                l.l4_len as u16,
            ),
            _ => pseudo_header_v6(
                f[22..38].try_into().unwrap(),
                f[38..54].try_into().unwrap(),
                info.flow.unwrap().protocol(),
                l.l4_len as u32,
            ),
        };
        if l.udp {
            UdpDatagram::new_checked(&f[l4..end])
                .unwrap()
                .verify_checksum(pseudo)
        } else {
            TcpSegment::new_checked(&f[l4..end])
                .unwrap()
                .verify_checksum(pseudo)
        }
    }

    fn frames() -> Vec<Vec<u8>> {
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let (a6, b6) = (Ipv6Addr::LOCALHOST, "2001:db8::2".parse().unwrap());
        let payload: Vec<u8> = (0..1001u32).map(|i| (i * 7) as u8).collect();
        vec![
            build::tcp4(a, 1000, b, 80, 0x18, &payload),
            build::udp4(a, 1000, b, 53, &payload),
            build::tcp4(a, 1000, b, 80, 0x02, &[]),
            build::tcp6(a6, 1000, b6, 80, 0x18, &payload),
            build::udp6(a6, 1000, b6, 53, &payload[..77]),
        ]
    }

    #[test]
    fn partial_frames_are_completed_to_the_correct_checksum() {
        for good in frames() {
            assert!(l4_valid(&good));
            let mut f = good.clone();
            make_partial(&mut f);
            assert!(!l4_valid(&f));
            let info = parse_frame(&f).unwrap();
            assert!(is_partial(&f, &info));
            assert_eq!(complete(&mut f, &[], &info), Completion::Completed);
            assert_eq!(f, good, "completion restores the stack's own checksum");
        }
    }

    #[test]
    fn complete_frames_are_left_alone() {
        for good in frames() {
            let mut f = good.clone();
            let info = parse_frame(&f).unwrap();
            assert_eq!(complete(&mut f, &[], &info), Completion::Complete);
            assert_eq!(f, good);
        }
    }

    #[test]
    fn multi_buffer_frames_are_completed_across_buffers() {
        for good in frames() {
            for cut in [80, 81, 101, 333, good.len() - 1] {
                if cut >= good.len() {
                    continue;
                }
                let mut f = good.clone();
                make_partial(&mut f);
                let (head, rest) = f.split_at_mut(cut);
                // Odd-sized middle buffers exercise the byte-swap path.
                let (mid, last) = rest.split_at(rest.len() / 2);
                let tail = [mid, last];
                let info = parse_packet(head, good.len()).unwrap();
                assert_eq!(complete(head, &tail, &info), Completion::Completed);
                assert_eq!(f, good);
            }
        }
    }

    #[test]
    fn non_l4_frames_are_not_applicable() {
        let mut f = build::icmp4_echo(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 1, 1);
        let info = parse_frame(&f).unwrap();
        assert_eq!(complete(&mut f, &[], &info), Completion::NotApplicable);
    }

    #[test]
    fn span_walks_buffers() {
        let head = [0u8, 1, 2, 3];
        let b1 = [4u8, 5, 6];
        let b2 = [7u8, 8];
        let tail = [&b1[..], &b2[..]];
        let got: Vec<u8> = span(&head, &tail, 2, 6).flatten().copied().collect();
        assert_eq!(got, vec![2, 3, 4, 5, 6, 7]);
        let got: Vec<u8> = span(&head, &tail, 5, 10).flatten().copied().collect();
        assert_eq!(got, vec![5, 6, 7, 8]);
    }
}
