//! Deterministic, platform-independent hashing used for placement.
//!
//! Every node must compute the same Maglev table and the same flow hash, so
//! these functions are fixed here (not `std`'s hasher, whose algorithm is not
//! guaranteed across releases) and depend only on their integer inputs.

use std::net::Ipv4Addr;

/// Final mixer of SplitMix64 / MurmurHash3 (full avalanche on 64 bits).
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hash of a node id under a seed (Maglev offset / skip generation).
#[inline]
pub fn node_hash(node: u32, seed: u64) -> u64 {
    mix64(mix64(u64::from(node) ^ seed.rotate_left(17)) ^ seed)
}

/// Hash of a full 5-tuple.
#[inline]
pub fn flow_hash(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u64 {
    let a = (u64::from(u32::from(src)) << 32) | u64::from(u32::from(dst));
    let b = (u64::from(sport) << 32) | (u64::from(dport) << 16) | u64::from(proto);
    mix64(mix64(a ^ 0x5851_f42d_4c95_7f2d) ^ b)
}

/// Hash of a client address alone (source-IP sticky placement).
#[inline]
pub fn ip_hash(src: Ipv4Addr) -> u64 {
    mix64(u64::from(u32::from(src)) ^ 0x2545_f491_4f6c_dd1d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_pinned() {
        // Values must never change between releases: nodes running different
        // builds have to agree on placement.
        assert_eq!(mix64(0), 0);
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
        assert_eq!(mix64(0xdead_beef), 0x4e06_2702_ec92_9eea);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        assert_ne!(flow_hash(6, a, b, 1, 2), flow_hash(6, b, a, 1, 2));
        assert_ne!(flow_hash(6, a, b, 1, 2), flow_hash(6, a, b, 2, 1));
        assert_ne!(flow_hash(6, a, b, 1, 2), flow_hash(17, a, b, 1, 2));
        assert_ne!(node_hash(1, 1), node_hash(1, 2));
    }
}
