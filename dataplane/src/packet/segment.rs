//! Splitting an aggregated TCP frame into segments that fit the egress.
//!
//! Frames longer than the interface they leave by reach the workers when a
//! device upstream aggregated them (GRO on a virtual switch port, LRO): the
//! kernel would re-segment such an skb on transmit (GSO), but AF_XDP carries
//! no GSO metadata, and a copy-mode transmit of an over-MTU frame is dropped
//! by the receiver. The worker therefore segments TCP itself, the way Linux
//! GSO does (`tcp_gso_segment`): the same headers on every segment, sequence
//! numbers advanced by the payload, the IPv4 id incremented per segment, CWR
//! only on the first segment, FIN and PSH only on the last, fresh IPv4 and TCP
//! checksums. The original segment size (`gso_size`) is lost with the skb, so
//! segments are as large as the egress allows: `max_l3` minus the headers.
//!
//! Only TCP can be re-cut: a UDP aggregate has lost its datagram boundaries,
//! and an oversized UDP datagram or fragment is a different packet once cut.
//! Those are dropped and counted by the caller.

use super::{
    checksum::{finish, pseudo_header_v4, pseudo_header_v6, sum},
    field::{set_u16, set_u32, u16_at, u32_at},
    ipv4::protocol,
    partial_checksum::span,
    FrameInfo, L3Kind,
};

/// Why a frame cannot be segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// Not TCP over IPv4/IPv6 (or a fragment).
    #[error("not a TCP segment")]
    NotTcp,
    /// The headers do not fit in the first buffer, or leave no room for
    /// payload within `max_l3` / the output buffer.
    #[error("headers too long to segment")]
    Headers,
    /// The IP length fields disagree with the frame.
    #[error("inconsistent lengths")]
    Lengths,
}

/// TCP flags that only the first (CWR) or the last (FIN, PSH) segment keeps.
const CWR: u8 = 0x80;
const FIN: u8 = 0x01;
const PSH: u8 = 0x08;

/// A plan to cut one aggregated TCP frame into segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegmenter {
    l3: usize,
    l4: usize,
    hdr_len: usize,
    payload_len: usize,
    mss: usize,
    v6: bool,
}

impl TcpSegmenter {
    /// Plans segments of at most `max_l3` bytes of IP packet each, and at
    /// most `max_frame` bytes of frame (an output buffer), for the frame
    /// parsed as `info` whose first buffer is `head`.
    pub fn new(
        head: &[u8],
        info: &FrameInfo,
        max_l3: usize,
        max_frame: usize,
    ) -> Result<Self, SegmentError> {
        let flow = info.flow.ok_or(SegmentError::NotTcp)?;
        if flow.protocol() != protocol::TCP || info.is_fragment {
            return Err(SegmentError::NotTcp);
        }
        let v6 = match info.kind {
            L3Kind::Ipv4 => false,
            L3Kind::Ipv6 => true,
            _ => return Err(SegmentError::NotTcp),
        };
        let l3 = info.l3_offset as usize;
        let l4 = info.l4_offset.ok_or(SegmentError::NotTcp)? as usize;
        let doff = usize::from(*head.get(l4 + 12).ok_or(SegmentError::Headers)? >> 4) * 4;
        let hdr_len = l4 + doff;
        if doff < 20 || hdr_len > head.len() {
            return Err(SegmentError::Headers);
        }
        let l3_len = info.l3_len as usize;
        let payload_len = (l3 + l3_len)
            .checked_sub(hdr_len)
            .ok_or(SegmentError::Lengths)?;
        let mss = max_l3
            .saturating_sub(hdr_len - l3)
            .min(max_frame.saturating_sub(hdr_len));
        if mss == 0 {
            return Err(SegmentError::Headers);
        }
        Ok(Self {
            l3,
            l4,
            hdr_len,
            payload_len,
            mss,
            v6,
        })
    }

    /// Number of segments.
    pub fn count(&self) -> usize {
        self.payload_len.div_ceil(self.mss).max(1)
    }

    /// Payload bytes per segment (all but the last carry exactly this much).
    pub fn mss(&self) -> usize {
        self.mss
    }

    /// Writes segment `i` of the frame (first buffer `head`, further buffers
    /// `tail`) into `out`, which must hold at least the headers plus
    /// [`TcpSegmenter::mss`] bytes; returns the segment's frame length.
    pub fn write(&self, i: usize, head: &[u8], tail: &[&[u8]], out: &mut [u8]) -> usize {
        let off = i * self.mss;
        let n = self.mss.min(self.payload_len.saturating_sub(off));
        let len = self.hdr_len + n;
        out[..self.hdr_len].copy_from_slice(&head[..self.hdr_len]);
        let mut at = self.hdr_len;
        for part in span(head, tail, self.hdr_len + off, n) {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        let (l3, l4) = (self.l3, self.l4);
        let l4_len = len - l4;
        let last = i + 1 == self.count();
        if self.v6 {
            set_u16(out, l3 + 4, (len - l3 - 40) as u16);
        } else {
            set_u16(out, l3 + 2, (len - l3) as u16);
            let id = u16_at(out, l3 + 4).wrapping_add(i as u16);
            set_u16(out, l3 + 4, id);
            set_u16(out, l3 + 10, 0);
            let ihl = usize::from(out[l3] & 0x0f) * 4;
            let c = finish(sum(&out[l3..l3 + ihl]));
            set_u16(out, l3 + 10, c);
        }
        let seq = u32_at(out, l4 + 4).wrapping_add(off as u32);
        set_u32(out, l4 + 4, seq);
        let mut flags = out[l4 + 13];
        if i > 0 {
            flags &= !CWR;
        }
        if !last {
            flags &= !(FIN | PSH);
        }
        out[l4 + 13] = flags;
        set_u16(out, l4 + 16, 0);
        let pseudo = if self.v6 {
            pseudo_header_v6(
                out[l3 + 8..l3 + 24].try_into().expect("16 bytes"),
                out[l3 + 24..l3 + 40].try_into().expect("16 bytes"),
                protocol::TCP,
                l4_len as u32,
            )
        } else {
            pseudo_header_v4(
                out[l3 + 12..l3 + 16].try_into().expect("4 bytes"),
                out[l3 + 16..l3 + 20].try_into().expect("4 bytes"),
                protocol::TCP,
                l4_len as u16,
            )
        };
        let c = finish(super::checksum::combine(pseudo, sum(&out[l4..len])));
        set_u16(out, l4 + 16, c);
        len
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::packet::{build, parse_frame, parse_packet, tcp::TcpSegment};

    /// An "aggregate": one TCP frame far above the MTU, as GRO builds them.
    fn aggregate(v6: bool, payload: &[u8], flags: u8) -> Vec<u8> {
        let mut f = if v6 {
            build::tcp6(
                Ipv6Addr::LOCALHOST,
                40000,
                "2001:db8::9".parse().unwrap(),
                5201,
                flags,
                payload,
            )
        } else {
            build::tcp4(
                Ipv4Addr::new(10, 0, 0, 1),
                40000,
                Ipv4Addr::new(10, 0, 0, 2),
                5201,
                flags,
                payload,
            )
        };
        let info = parse_frame(&f).unwrap();
        let l4 = info.l4_offset.unwrap() as usize;
        f[l4 + 4..l4 + 8].copy_from_slice(&1_000_000u32.to_be_bytes());
        let ps = if v6 {
            pseudo_header_v6(
                f[22..38].try_into().unwrap(),
                f[38..54].try_into().unwrap(),
                6,
                (f.len() - l4) as u32,
            )
        } else {
            pseudo_header_v4(
                f[26..30].try_into().unwrap(),
                f[30..34].try_into().unwrap(),
                6,
                (f.len() - l4) as u16,
            )
        };
        TcpSegment::new_checked(&mut f[l4..])
            .unwrap()
            .fill_checksum(ps);
        f
    }

    fn check(v6: bool, total: usize, flags: u8, max_l3: usize) {
        let payload: Vec<u8> = (0..total as u32).map(|i| (i % 251) as u8).collect();
        let agg = aggregate(v6, &payload, flags);
        // Spread it over buffers as AF_XDP multi-buffer would.
        let (head, rest) = agg.split_at(3840.min(agg.len()));
        let tail: Vec<&[u8]> = rest.chunks(4096).collect();
        let info = parse_packet(head, agg.len()).unwrap();
        let seg = TcpSegmenter::new(head, &info, max_l3, 3840).unwrap();
        let mut got = Vec::new();
        for i in 0..seg.count() {
            let mut out = vec![0u8; 3840];
            let n = seg.write(i, head, &tail, &mut out);
            out.truncate(n);
            let p = parse_frame(&out).unwrap();
            assert!(p.l3_len as usize <= max_l3);
            let l4 = p.l4_offset.unwrap() as usize;
            let t = TcpSegment::new_checked(&out[l4..]).unwrap();
            let ps = if v6 {
                pseudo_header_v6(
                    out[22..38].try_into().unwrap(),
                    out[38..54].try_into().unwrap(),
                    6,
                    (n - l4) as u32,
                )
            } else {
                assert_eq!(crate::packet::checksum::checksum(&out[14..34]), 0);
                assert_eq!(u16::from_be_bytes([out[18], out[19]]), i as u16);
                pseudo_header_v4(
                    out[26..30].try_into().unwrap(),
                    out[30..34].try_into().unwrap(),
                    6,
                    (n - l4) as u16,
                )
            };
            assert!(t.verify_checksum(ps), "segment {i} checksum");
            assert_eq!(t.seq(), 1_000_000 + got.len() as u32);
            let last = i + 1 == seg.count();
            assert_eq!(
                t.flags() & (FIN | PSH) != 0,
                last && flags & (FIN | PSH) != 0
            );
            assert_eq!(t.flags() & CWR != 0, i == 0 && flags & CWR != 0);
            got.extend_from_slice(t.payload());
        }
        assert_eq!(got, payload, "payload intact and in order");
    }

    #[test]
    fn aggregates_are_cut_into_mtu_segments() {
        for v6 in [false, true] {
            check(v6, 64_000, 0x18 | CWR, 1500);
            check(v6, 1448 * 10, 0x10, 1500);
            check(v6, 3000, 0x19, 1500);
            check(v6, 20_000, 0x10, 9000);
        }
    }

    #[test]
    fn udp_is_refused() {
        let f = build::udp4(Ipv4Addr::LOCALHOST, 1, Ipv4Addr::LOCALHOST, 2, &[0; 3000]);
        let info = parse_frame(&f).unwrap();
        assert_eq!(
            TcpSegmenter::new(&f, &info, 1500, 3840),
            Err(SegmentError::NotTcp)
        );
    }
}
