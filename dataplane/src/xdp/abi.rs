//! `#[repr(C)]` mirrors of the types in `bpf/headroom.h`. The tests check
//! them against the BTF-derived skeleton types so the two cannot drift.

/// Number of XSKMAP slots (receive queues per interface).
pub const HR_MAX_QUEUES: usize = 64;
/// Number of verdict counter slots.
pub const HR_V_MAX: usize = 8;
/// `hr_xdp_config.flags`: steering enabled.
pub const HR_CFG_ENABLED: u32 = 1;

/// `enum hr_verdict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Verdict {
    /// Redirected to the AF_XDP socket of the receive queue.
    Redirect = 0,
    /// Addressed to the node's own stack: passed.
    PassLocal = 1,
    /// A protocol Headroom does not manage: passed.
    PassUnmanaged = 2,
    /// Managed, but no socket on this queue: passed (fail open).
    PassNoXsk = 3,
    /// Shorter than its headers claim: passed, counted.
    PassMalformed = 4,
    /// Steering disabled: passed.
    PassDisabled = 5,
}

impl Verdict {
    /// Every verdict, in slot order.
    pub const ALL: [Verdict; 6] = [
        Verdict::Redirect,
        Verdict::PassLocal,
        Verdict::PassUnmanaged,
        Verdict::PassNoXsk,
        Verdict::PassMalformed,
        Verdict::PassDisabled,
    ];

    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Redirect => "redirect",
            Verdict::PassLocal => "pass_local",
            Verdict::PassUnmanaged => "pass_unmanaged",
            Verdict::PassNoXsk => "pass_no_xsk",
            Verdict::PassMalformed => "pass_malformed",
            Verdict::PassDisabled => "pass_disabled",
        }
    }
}

/// `struct hr_counter`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct HrCounter {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

impl HrCounter {
    /// Reads a counter from a map value (short input reads as zeros).
    pub fn from_bytes(b: &[u8]) -> Self {
        let word = |i: usize| {
            b.get(i..i + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_ne_bytes)
                .unwrap_or(0)
        };
        Self {
            packets: word(0),
            bytes: word(8),
        }
    }
}

/// `struct hr_xdp_config`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct HrXdpConfig {
    /// `HR_CFG_*` flags.
    pub flags: u32,
    /// Node IPv4 address, network byte order (0 = none).
    pub node_ip4: u32,
}

impl HrXdpConfig {
    /// The value as the map stores it.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: repr(C) struct of two u32 with no padding; the slice covers
        // exactly the struct and lives as long as `self`.
        unsafe {
            std::slice::from_raw_parts(
                (self as *const Self).cast::<u8>(),
                std::mem::size_of::<Self>(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of, MaybeUninit};

    use libbpf_rs::{skel::SkelBuilder, OpenObject};

    use super::*;
    use crate::xdp::skel::{self, types};

    #[test]
    fn layouts_match_the_c_header() {
        assert_eq!(size_of::<HrXdpConfig>(), size_of::<types::hr_xdp_config>());
        assert_eq!(
            align_of::<HrXdpConfig>(),
            align_of::<types::hr_xdp_config>()
        );
        assert_eq!(
            offset_of!(HrXdpConfig, flags),
            offset_of!(types::hr_xdp_config, flags)
        );
        assert_eq!(
            offset_of!(HrXdpConfig, node_ip4),
            offset_of!(types::hr_xdp_config, node_ip4)
        );
        assert_eq!(size_of::<HrCounter>(), size_of::<types::hr_counter>());
        assert_eq!(
            offset_of!(HrCounter, packets),
            offset_of!(types::hr_counter, packets)
        );
        assert_eq!(
            offset_of!(HrCounter, bytes),
            offset_of!(types::hr_counter, bytes)
        );
    }

    #[test]
    fn map_geometry_matches_constants() {
        // Opening parses the ELF/BTF without loading: no privileges needed.
        let mut storage = MaybeUninit::<OpenObject>::uninit();
        let open = skel::HeadroomSkelBuilder::default()
            .open(&mut storage)
            .expect("open skeleton");
        assert_eq!(open.maps.verdicts.max_entries() as usize, HR_V_MAX);
        assert_eq!(open.maps.xsks.max_entries() as usize, HR_MAX_QUEUES);
        assert_eq!(Verdict::ALL.len(), 6);
        assert!(Verdict::ALL.iter().all(|v| (*v as usize) < HR_V_MAX));
    }

    #[test]
    fn counter_from_short_bytes_is_zero() {
        assert_eq!(HrCounter::from_bytes(&[1, 2, 3]), HrCounter::default());
    }
}
