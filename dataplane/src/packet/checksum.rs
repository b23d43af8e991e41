//! The Internet checksum (RFC 1071), pseudo-header sums for TCP/UDP/ICMPv6 over IPv4 and
//! IPv6, and incremental updates (RFC 1624) for rewriting addresses and ports in place.
//!
//! Partial sums are carried as `u32` "unfolded" one's-complement sums: add them with
//! [`combine`], and turn the total into a checksum field with [`finish`].
//!
//! ```
//! use headroom_dataplane::packet::checksum;
//! // RFC 1071 section 3 example.
//! let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
//! assert_eq!(checksum::fold(checksum::sum(&data)), 0xddf2);
//! assert_eq!(checksum::checksum(&data), !0xddf2);
//! ```

/// The unfolded one's-complement sum of `data` as big-endian 16-bit words; an odd final
/// byte is padded with a zero byte. Never overflows for buffers under 64 KiB x 64 K.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        // Two big-endian 32-bit words per step; carries accumulate in the upper bits.
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut rest = chunks.remainder();
    while rest.len() >= 2 {
        acc += u16::from_be_bytes([rest[0], rest[1]]) as u64;
        rest = &rest[2..];
    }
    if let [b] = rest {
        acc += (*b as u64) << 8;
    }
    fold64(acc)
}

#[inline]
fn fold64(mut acc: u64) -> u32 {
    // Fold 64 -> 32 bits keeping one's-complement semantics (end-around carry).
    acc = (acc >> 32) + (acc & 0xffff_ffff);
    acc = (acc >> 32) + (acc & 0xffff_ffff);
    acc as u32
}

/// The unfolded sum of the bytes `parts` hold back to back (a packet spread over
/// several buffers), as if they were one slice: a part that starts at an odd offset
/// has its words byte-swapped (RFC 1071 section 2(B)).
#[inline]
pub fn sum_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u32 {
    let mut acc = 0u32;
    let mut odd = false;
    for p in parts {
        let s = fold(sum(p));
        let s = if odd { s.swap_bytes() } else { s };
        acc = combine(acc, s as u32);
        odd ^= p.len() % 2 == 1;
    }
    acc
}

/// Add two unfolded partial sums.
#[inline]
pub fn combine(a: u32, b: u32) -> u32 {
    fold64(a as u64 + b as u64)
}

/// Fold an unfolded sum to 16 bits (end-around carry). Not complemented.
#[inline]
pub fn fold(mut s: u32) -> u16 {
    s = (s >> 16) + (s & 0xffff);
    s = (s >> 16) + (s & 0xffff);
    s as u16
}

/// The checksum field value for an unfolded sum: `!fold(s)`.
#[inline]
pub fn finish(s: u32) -> u16 {
    !fold(s)
}

/// The RFC 1071 checksum of `data` (the value to store in a zeroed checksum field).
/// Over data that includes a correct checksum field this returns 0.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// The pseudo-header sum for TCP/UDP over IPv4: addresses, protocol and L4 length.
#[inline]
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, l4_len: u16) -> u32 {
    let s = u32::from_be_bytes(src);
    let d = u32::from_be_bytes(dst);
    fold64(
        (s >> 16) as u64
            + (s & 0xffff) as u64
            + (d >> 16) as u64
            + (d & 0xffff) as u64
            + protocol as u64
            + l4_len as u64,
    )
}

/// The pseudo-header sum for TCP/UDP/ICMPv6 over IPv6 (RFC 8200 section 8.1): addresses,
/// upper-layer packet length and next header.
#[inline]
pub fn pseudo_header_v6(src: [u8; 16], dst: [u8; 16], next_header: u8, l4_len: u32) -> u32 {
    combine(
        combine(sum(&src), sum(&dst)),
        fold64((l4_len >> 16) as u64 + (l4_len & 0xffff) as u64 + next_header as u64),
    )
}

/// RFC 1624 eqn. 3: the new checksum field after a 16-bit word of the covered data changed
/// from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub fn update_u16(check: u16, old: u16, new: u16) -> u16 {
    let s = (!check) as u32 + (!old) as u32 + new as u32;
    !fold(s)
}

/// [`update_u16`] for a 32-bit field (an IPv4 address), as two 16-bit words.
#[inline]
pub fn update_u32(check: u16, old: u32, new: u32) -> u16 {
    let s = (!check) as u32
        + (!(old >> 16) as u16) as u32
        + (!(old as u16)) as u32
        + (new >> 16)
        + (new & 0xffff);
    !fold(s)
}

/// [`update_u16`] for an arbitrary even-length field (an IPv6 address): `old` and `new`
/// must have the same length; an odd trailing byte is treated as padded with zero.
#[inline]
pub fn update_bytes(check: u16, old: &[u8], new: &[u8]) -> u16 {
    // ~m summed word-wise equals (0xffff * words) - sum(m); use one's-complement negation
    // of the folded sum instead: ~HC + ~sum(old) + sum(new).
    let s = (!check) as u32 + (!fold(sum(old))) as u32 + fold(sum(new)) as u32;
    !fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sum_parts_equals_sum_of_the_whole(data in proptest::collection::vec(any::<u8>(), 0..600),
                                             cuts in proptest::collection::vec(0usize..600, 0..6)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([data.len()]) {
                parts.push(&data[at..c]);
                at = c;
            }
            prop_assert_eq!(fold(sum_parts(parts)), fold(sum(&data)));
        }
    }

    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), 0x220d);
    }

    #[test]
    fn ipv4_header_known_answer() {
        // A classic example header with checksum 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10] = 0xb8;
        h[11] = 0x61;
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn odd_length_and_empty() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(fold(sum(&[0xab])), 0xab00);
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        // All-ones words: one's-complement sum stays 0xffff.
        assert_eq!(fold(sum(&[0xff; 64])), 0xffff);
    }

    #[test]
    fn udp_ipv4_known_answer() {
        // UDP 10.0.0.1:1234 -> 10.0.0.2:5678, payload "hi"; computed by hand below.
        let src = [10, 0, 0, 1];
        let dst = [10, 0, 0, 2];
        let udp = [0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0a, 0x00, 0x00, b'h', b'i'];
        let ph = pseudo_header_v4(src, dst, 17, 10);
        let c = finish(combine(ph, sum(&udp)));
        // 0a00+0001+0a00+0002+0011+000a + 04d2+162e+000a+0000+6869
        let manual: u32 =
            0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 0x0011 + 0x000a + 0x04d2 + 0x162e + 0x000a + 0x6869;
        assert_eq!(c, !fold(manual));
    }

    fn naive(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for ch in data.chunks(2) {
            let w = if ch.len() == 2 {
                u16::from_be_bytes([ch[0], ch[1]])
            } else {
                u16::from_be_bytes([ch[0], 0])
            };
            s += w as u32;
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// One's-complement checksums have two zeros; compare modulo that.
    fn same(a: u16, b: u16) -> bool {
        a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
    }

    proptest! {
        #[test]
        fn fast_sum_matches_naive(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(checksum(&data), naive(&data));
        }

        #[test]
        fn incremental_u16_matches_recompute(mut data in proptest::collection::vec(any::<u8>(), 2..100), idx in any::<usize>(), new in any::<u16>()) {
            let words = data.len() / 2;
            let i = (idx % words) * 2;
            let before = checksum(&data);
            let old = u16::from_be_bytes([data[i], data[i + 1]]);
            data[i..i + 2].copy_from_slice(&new.to_be_bytes());
            let full = checksum(&data);
            prop_assert!(same(update_u16(before, old, new), full));
        }

        #[test]
        fn incremental_u32_matches_recompute(mut data in proptest::collection::vec(any::<u8>(), 4..100), idx in any::<usize>(), new in any::<u32>()) {
            let words = data.len() / 2 - 1;
            let i = (idx % words) * 2;
            let before = checksum(&data);
            let old = u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
            data[i..i + 4].copy_from_slice(&new.to_be_bytes());
            prop_assert!(same(update_u32(before, old, new), checksum(&data)));
        }

        #[test]
        fn incremental_bytes_matches_recompute(mut data in proptest::collection::vec(any::<u8>(), 16..100), idx in any::<usize>(), new in any::<[u8; 16]>()) {
            let words = data.len() / 2 - 7;
            let i = (idx % words) * 2;
            let before = checksum(&data);
            let old: [u8; 16] = data[i..i + 16].try_into().unwrap();
            data[i..i + 16].copy_from_slice(&new);
            prop_assert!(same(update_bytes(before, &old, &new), checksum(&data)));
        }

        #[test]
        fn pseudo_v6_matches_naive(src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), nh in any::<u8>(), len in any::<u32>()) {
            let mut buf = Vec::new();
            buf.extend_from_slice(&src);
            buf.extend_from_slice(&dst);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&[0, 0, 0, nh]);
            prop_assert_eq!(fold(pseudo_header_v6(src, dst, nh, len)), fold(sum(&buf)));
        }

        #[test]
        fn pseudo_v4_matches_naive(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), p in any::<u8>(), len in any::<u16>()) {
            let mut buf = Vec::new();
            buf.extend_from_slice(&src);
            buf.extend_from_slice(&dst);
            buf.extend_from_slice(&[0, p]);
            buf.extend_from_slice(&len.to_be_bytes());
            prop_assert_eq!(fold(pseudo_header_v4(src, dst, p, len)), fold(sum(&buf)));
        }
    }
}
