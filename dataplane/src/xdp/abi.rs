//! `#[repr(C)]` mirrors of the types in `bpf/headroom.h`. The tests check
//! them against the BTF-derived skeleton types so the two cannot drift.

/// Number of XSKMAP slots (receive queues per interface).
pub const HR_MAX_QUEUES: usize = 64;
/// Number of verdict counter slots.
pub const HR_V_MAX: usize = 16;
/// `hr_xdp_config.flags`: steering enabled.
pub const HR_CFG_ENABLED: u32 = 1;
/// `hr_xdp_config.flags`: all traffic to/from the node address bypasses the
/// workers (not only the exchange's UDP).
pub const HR_CFG_BYPASS_ADDRESS: u32 = 1 << 1;
/// `hr_xdp_config.flags`: decided flows take the fast path.
pub const HR_CFG_FAST_PATH: u32 = 1 << 2;
/// `hr_xdp_config.flags`: the fast path completes partial checksums.
pub const HR_CFG_COMPLETE_CSUM: u32 = 1 << 3;
/// Most jobs the fast path accounts.
pub const HR_MAX_JOBS: usize = 4096;
/// Fast-path counter slots.
pub const HR_FP_STAT_MAX: usize = 16;
/// `HR_FP_CSUM_COMPLETED`: partial checksums the fast path completed.
pub const HR_FP_CSUM_COMPLETED: u32 = 5;
/// `hr_flow_entry.action`: forward to the other interface unchanged.
pub const HR_FP_FORWARD: u8 = 1;
/// `hr_flow_entry.action`: encapsulate towards the serving node (VIP owner).
pub const HR_FP_ENCAP: u8 = 2;
/// `hr_flow_entry.action`: decapsulate and forward to the host (serving node).
pub const HR_FP_DECAP: u8 = 3;
/// `HR_FP_ENCAPSULATED`: frames the fast path encapsulated.
pub const HR_FP_ENCAPSULATED: u32 = 6;
/// `HR_FP_DECAPSULATED`: frames the fast path decapsulated.
pub const HR_FP_DECAPSULATED: u32 = 7;

/// `struct hr_encap`: the outer headers of an encapsulated flow (network
/// byte order where the C side says so).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct HrEncap {
    /// Next-hop MAC towards the serving node.
    pub dst_mac: [u8; 6],
    /// This node's MAC.
    pub src_mac: [u8; 6],
    /// This node's underlay address, network order.
    pub src_ip: u32,
    /// The serving node's underlay address, network order.
    pub dst_ip: u32,
    /// UDP source port (flow entropy), network order.
    pub sport: u16,
    /// UDP destination port, network order.
    pub dport: u16,
    /// Service index, network order.
    pub service: u16,
    /// Padding (zero).
    pub _pad: u16,
    /// Origin node id, network order.
    pub origin: u32,
}

/// `enum hr_fp_miss`: why a managed frame took the slow path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum FpMiss {
    /// No entry for the flow.
    NoEntry = 0,
    /// The entry is from an older decision generation.
    Stale = 1,
    /// Partial checksum the fast path could not complete.
    PartialCsum = 2,
    /// Multi-buffer, or longer than the egress MTU.
    Size = 3,
    /// Not TCP/UDP over IPv4/IPv6 without extension headers.
    NotL4 = 4,
    /// A TCP SYN (new connections always go through a worker).
    NewConnection = 8,
}

impl FpMiss {
    /// Every reason, in slot order.
    pub const ALL: [FpMiss; 6] = [
        FpMiss::NoEntry,
        FpMiss::Stale,
        FpMiss::PartialCsum,
        FpMiss::Size,
        FpMiss::NotL4,
        FpMiss::NewConnection,
    ];

    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            FpMiss::NoEntry => "no_entry",
            FpMiss::Stale => "stale",
            FpMiss::PartialCsum => "partial_checksum",
            FpMiss::Size => "size",
            FpMiss::NotL4 => "not_l4",
            FpMiss::NewConnection => "new_connection",
        }
    }
}

/// `struct hr_flow_key`: addresses and ports in network byte order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct HrFlowKey {
    /// Source address (IPv4 in the first 4 bytes).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port, network byte order (as read from the frame).
    pub sport: u16,
    /// Destination port, network byte order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    /// Outermost VLAN id, 0 if untagged.
    pub vlan: u16,
}

/// `struct hr_flow_entry`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct HrFlowEntry {
    /// Decision generation.
    pub gen: u32,
    /// Job id.
    pub job: u16,
    /// `HR_FP_*` action.
    pub action: u8,
    /// Flags (none yet).
    pub flags: u8,
    /// Last fast-path packet, CLOCK_MONOTONIC ns.
    pub last_seen_ns: u64,
    /// `HR_FP_ENCAP`: the outer headers.
    pub encap: HrEncap,
}

/// Bytes of a `repr(C)` value without padding, for map keys and values.
pub(crate) fn bytes_of<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: callers pass the repr(C) ABI structs of this module, whose
    // fields leave no padding (checked against BTF by the tests), so every
    // byte is initialised; the slice covers exactly the value and borrows it.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

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
    /// A multi-buffer frame (jumbo or aggregate) redirected to the socket.
    RedirectMulti = 6,
    /// Longer than the workers take: passed to the kernel path, counted.
    PassTooBig = 7,
    /// Forwarded by the fast path.
    FastForward = 8,
}

impl Verdict {
    /// Every verdict, in slot order.
    pub const ALL: [Verdict; 9] = [
        Verdict::Redirect,
        Verdict::RedirectMulti,
        Verdict::PassLocal,
        Verdict::PassUnmanaged,
        Verdict::PassNoXsk,
        Verdict::PassMalformed,
        Verdict::PassDisabled,
        Verdict::PassTooBig,
        Verdict::FastForward,
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
            Verdict::RedirectMulti => "redirect_multi",
            Verdict::PassTooBig => "pass_too_big",
            Verdict::FastForward => "fast_forward",
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
    /// Exchange UDP port, network byte order (0 = none).
    pub exchange_port: u16,
    /// Padding (zero).
    pub _pad: u16,
    /// Largest frame the workers take, bytes (0 = no limit).
    pub max_len: u32,
    /// Decision generation of valid fast-path entries.
    pub fp_gen: u32,
    /// MTU of the interface fast-path frames leave by.
    pub egress_mtu: u32,
    /// Underlay MTU.
    pub underlay_mtu: u32,
    /// This node's underlay address, network order (0: no decapsulation).
    pub local_ip4: u32,
    /// Encapsulation UDP port, network order.
    pub encap_port: u16,
    /// MAC of the host stack behind `inner`.
    pub host_mac: [u8; 6],
}

impl HrXdpConfig {
    /// The value as the map stores it.
    pub fn as_bytes(&self) -> &[u8] {
        bytes_of(self)
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of, MaybeUninit};

    #[test]
    fn the_memory_budget_sizes_the_fast_path_entries_as_the_abi() {
        use headroom_config::machine as m;
        assert_eq!(size_of::<super::HrFlowKey>() as u64, m::FAST_PATH_KEY_BYTES);
        assert_eq!(
            size_of::<super::HrFlowEntry>() as u64,
            m::FAST_PATH_VALUE_BYTES
        );
    }

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
        for (ours, theirs) in [
            (
                offset_of!(HrXdpConfig, exchange_port),
                offset_of!(types::hr_xdp_config, exchange_port),
            ),
            (
                offset_of!(HrXdpConfig, max_len),
                offset_of!(types::hr_xdp_config, max_len),
            ),
            (
                offset_of!(HrXdpConfig, fp_gen),
                offset_of!(types::hr_xdp_config, fp_gen),
            ),
            (
                offset_of!(HrXdpConfig, egress_mtu),
                offset_of!(types::hr_xdp_config, egress_mtu),
            ),
            (size_of::<HrFlowKey>(), size_of::<types::hr_flow_key>()),
            (
                offset_of!(HrFlowKey, src),
                offset_of!(types::hr_flow_key, src),
            ),
            (
                offset_of!(HrFlowKey, dst),
                offset_of!(types::hr_flow_key, dst),
            ),
            (
                offset_of!(HrFlowKey, sport),
                offset_of!(types::hr_flow_key, sport),
            ),
            (
                offset_of!(HrFlowKey, dport),
                offset_of!(types::hr_flow_key, dport),
            ),
            (
                offset_of!(HrFlowKey, proto),
                offset_of!(types::hr_flow_key, proto),
            ),
            (
                offset_of!(HrFlowKey, family),
                offset_of!(types::hr_flow_key, family),
            ),
            (
                offset_of!(HrFlowKey, vlan),
                offset_of!(types::hr_flow_key, vlan),
            ),
            (size_of::<HrFlowEntry>(), size_of::<types::hr_flow_entry>()),
            (
                offset_of!(HrFlowEntry, encap),
                offset_of!(types::hr_flow_entry, encap),
            ),
            (size_of::<HrEncap>(), size_of::<types::hr_encap>()),
            (
                offset_of!(HrEncap, src_ip),
                offset_of!(types::hr_encap, src_ip),
            ),
            (
                offset_of!(HrEncap, sport),
                offset_of!(types::hr_encap, sport),
            ),
            (
                offset_of!(HrEncap, service),
                offset_of!(types::hr_encap, service),
            ),
            (
                offset_of!(HrEncap, origin),
                offset_of!(types::hr_encap, origin),
            ),
            (size_of::<HrXdpConfig>(), size_of::<types::hr_xdp_config>()),
            (
                offset_of!(HrXdpConfig, underlay_mtu),
                offset_of!(types::hr_xdp_config, underlay_mtu),
            ),
            (
                offset_of!(HrXdpConfig, local_ip4),
                offset_of!(types::hr_xdp_config, local_ip4),
            ),
            (
                offset_of!(HrXdpConfig, encap_port),
                offset_of!(types::hr_xdp_config, encap_port),
            ),
            (
                offset_of!(HrXdpConfig, host_mac),
                offset_of!(types::hr_xdp_config, host_mac),
            ),
            (
                offset_of!(HrFlowEntry, gen),
                offset_of!(types::hr_flow_entry, gen),
            ),
            (
                offset_of!(HrFlowEntry, job),
                offset_of!(types::hr_flow_entry, job),
            ),
            (
                offset_of!(HrFlowEntry, action),
                offset_of!(types::hr_flow_entry, action),
            ),
            (
                offset_of!(HrFlowEntry, last_seen_ns),
                offset_of!(types::hr_flow_entry, last_seen_ns),
            ),
        ] {
            assert_eq!(ours, theirs);
        }
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
        assert_eq!(Verdict::ALL.len(), 9);
        assert_eq!(open.maps.job_stats.max_entries() as usize, HR_MAX_JOBS);
        assert_eq!(open.maps.fp_stats.max_entries() as usize, HR_FP_STAT_MAX);
        assert!(Verdict::ALL.iter().all(|v| (*v as usize) < HR_V_MAX));
    }

    #[test]
    fn counter_from_short_bytes_is_zero() {
        assert_eq!(HrCounter::from_bytes(&[1, 2, 3]), HrCounter::default());
    }
}
