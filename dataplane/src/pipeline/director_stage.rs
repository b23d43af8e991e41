//! The flow director and ARP interceptor as a pipeline stage.
//!
//! Runs first on every frame (see [`super::HeadroomPipeline`]):
//! * outer side: ARP goes to the [`ArpInterceptor`] (the owner answers VIP
//!   requests by bouncing the reply out of the outer interface; other VIP
//!   ARP is suppressed); everything else goes through [`OuterPath`], which
//!   decapsulates frames forwarded by the VIP owner, places client flows of
//!   VIP services, and encapsulates remotely placed ones in place;
//! * inner side: ARP the host stack sends about a VIP is suppressed or
//!   rewritten (see [`ArpInterceptor::on_inner_frame`]).
//!
//! Tables come from a [`TableCell`] the control thread publishes; the stage
//! picks up a new version with one atomic load per frame and rebuilds its
//! per-table state (ARP ownership, host MAC) only when the version changed.
//!
//! Nothing here allocates, locks or makes a syscall per frame.

use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;

use hashbrown::HashMap;
use headroom_config::vip::DirectorSettings;

use crate::arp::{ArpConfig, ArpInterceptor, ArpStats, Verdict};
use crate::director::conntrack::ConntrackConfig;
use crate::director::encap::{EncapConfig, OUTER_LEN};
use crate::director::frame::parse_frame;
use crate::director::path::{OuterAction, OuterPath, PathStats};
use crate::director::{Director, DirectorStats, NodeId, ServiceIdx, TableCell};
use crate::worker::{Action, DataMut, DropReason, Side};

/// Bytes in front of a received frame the stage may write into. AF_XDP
/// places every received frame `XDP_PACKET_HEADROOM` (256) bytes into its
/// UMEM chunk (plus the configured frame headroom), in copy and zero-copy
/// mode alike, and the Headroom XDP program never moves the packet start;
/// in-place encapsulation needs [`crate::director::encap::OVERHEAD`] (36).
pub const FRONT_ROOM: usize = 64;

/// Most (service, node) placement counters kept (preallocated).
const PLACEMENT_SLOTS: usize = 1024;

/// Counters of one VIP service on one worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    /// Packets of the service placed by this node (it was the owner).
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// New flows placed (including re-placed ones whose server died).
    pub new_flows: u64,
    /// New flows placed by a source-IP sticky entry.
    pub sticky_hits: u64,
    /// Placements on this node.
    pub placed_local: u64,
    /// Placements on other nodes.
    pub placed_remote: u64,
    /// Packets encapsulated towards another node.
    pub encapsulated: u64,
}

/// What a worker's director stage publishes (cumulative).
#[derive(Debug, Clone, Default)]
pub struct DirectorReport {
    /// Placement counters.
    pub director: DirectorStats,
    /// Encapsulation / decapsulation counters.
    pub path: PathStats,
    /// ARP interceptor counters.
    pub arp: ArpStats,
    /// Per service (indexed by service index).
    pub services: Vec<ServiceCounters>,
    /// Flow placements per (service index, node).
    pub placements: Vec<(ServiceIdx, NodeId, u64)>,
    /// Whether the stage is active (it knows the local host MAC).
    pub ready: bool,
}

/// Result of the stage for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageVerdict {
    /// Continue with the rest of the pipeline (the frame may have been
    /// rewritten, e.g. decapsulated).
    Continue,
    /// The frame is handled: do this.
    Done(Action),
}

/// Per-worker flow director stage.
#[derive(Debug)]
pub struct DirectorStage {
    director: Director,
    path: OuterPath,
    encap: EncapConfig,
    arp: Option<ArpInterceptor>,
    arp_base: ArpStats,
    announce_spacing_ns: u64,
    local_mac: [u8; 6],
    scratch: [u8; 64],
    services: Vec<ServiceCounters>,
    placements: HashMap<(ServiceIdx, NodeId), u64>,
    vips: Vec<(Ipv4Addr, u32)>,
    owned: Vec<Ipv4Addr>,
}

impl DirectorStage {
    /// A stage following `cell`.
    pub fn new(cell: Arc<TableCell>, settings: &DirectorSettings) -> Self {
        let director = Director::with_cell(
            cell,
            ConntrackConfig::from_settings(settings),
            settings.sticky_capacity,
        );
        let encap = EncapConfig::from_settings(settings);
        let mut placements = HashMap::new();
        placements.reserve(PLACEMENT_SLOTS);
        let mut s = DirectorStage {
            director,
            path: OuterPath::new(encap, [0; 6]),
            encap,
            arp: None,
            arp_base: ArpStats::default(),
            announce_spacing_ns: settings.gratuitous_arp_interval_ms * 1_000_000,
            local_mac: [0; 6],
            scratch: [0; 64],
            services: Vec::new(),
            placements,
            vips: Vec::new(),
            owned: Vec::new(),
        };
        s.apply_tables(0);
        s
    }

    /// Rebuilds per-table state after a new table version (rare: membership,
    /// health or MAC changes). May allocate.
    fn apply_tables(&mut self, now_ns: u64) {
        let t = Arc::clone(self.director.tables());
        let mac = t.peers.local_mac;
        if mac != self.local_mac {
            self.local_mac = mac;
            let stats = std::mem::take(&mut self.path.stats);
            self.path = OuterPath::new(self.encap, mac);
            self.path.stats = stats;
            if let Some(old) = self.arp.take() {
                add_arp(&mut self.arp_base, old.stats());
            }
            if mac != [0; 6] {
                self.arp = Some(ArpInterceptor::new(ArpConfig {
                    mac,
                    host_ip: Some(t.peers.local_ip),
                    announce_spacing_ns: self.announce_spacing_ns,
                }));
            }
        }
        if self.services.len() < t.services.len() {
            self.services
                .resize(t.services.len(), ServiceCounters::default());
        }
        self.vips.clear();
        for s in &t.services {
            if !self.vips.iter().any(|(v, _)| *v == s.vip) {
                // Workers never announce (the control thread does): burst 0.
                self.vips.push((s.vip, 0));
            }
        }
        self.owned.clear();
        self.owned.extend(t.owned_vips());
        if let Some(arp) = &mut self.arp {
            if arp.set_vips(&self.vips).is_err() {
                tracing::error!("too many VIP addresses for the ARP interceptor");
            }
            arp.sync_owned(now_ns, &self.owned);
        }
    }

    /// Whether the stage intercepts traffic (the local host MAC is known).
    #[inline]
    pub fn ready(&self) -> bool {
        self.arp.is_some()
    }

    /// Handles one frame.
    #[inline]
    pub fn on_frame(&mut self, now_ns: u64, side: Side, data: &mut DataMut<'_>) -> StageVerdict {
        if self.director.refresh() {
            self.apply_tables(now_ns);
        }
        let Some(arp) = &mut self.arp else {
            return StageVerdict::Continue;
        };
        let frame = data.contents();
        if frame.len() >= 14 && frame[12..14] == [0x08, 0x06] {
            let verdict = match side {
                Side::Outer => arp.on_outer_frame(frame, &mut self.scratch),
                Side::Inner => arp.on_inner_frame(frame, &mut self.scratch),
            };
            return match verdict {
                Verdict::Forward => StageVerdict::Continue,
                Verdict::Drop(_) => StageVerdict::Done(Action::Drop(DropReason::Policy)),
                Verdict::Reply(n) => {
                    let mut c = data.cursor();
                    c.set_pos(0);
                    if c.write_all(&self.scratch[..n]).is_err() {
                        return StageVerdict::Done(Action::Drop(DropReason::Rewrite));
                    }
                    // Outer: the answer goes back to the wire. Inner: the
                    // rewritten request continues to the wire as well.
                    StageVerdict::Done(match side {
                        Side::Outer => Action::Bounce,
                        Side::Inner => Action::Forward,
                    })
                }
            };
        }
        if side == Side::Inner {
            return StageVerdict::Continue;
        }
        self.outer_ip(now_ns, data)
    }

    #[inline]
    fn outer_ip(&mut self, now_ns: u64, data: &mut DataMut<'_>) -> StageVerdict {
        let len = data.contents().len();
        let cap = data.cursor().buf_len();
        let before = Snapshot::of(self.director.stats());
        let base = data.contents_mut().as_mut_ptr();
        // SAFETY: `base` points at the packet data of a frame this worker
        // holds exclusively (received from its RX ring, in no ring now).
        // The `FRONT_ROOM` bytes in front of it lie in the same UMEM chunk:
        // the kernel starts received packets XDP_PACKET_HEADROOM (256) bytes
        // plus the UMEM frame headroom into the chunk and the XDP program
        // never moves the start. `cap` is the data capacity to the chunk's
        // end. The whole range is part of the UMEM mapping, nothing else
        // references it while this slice lives, and `data` is not touched
        // until the last use of `buf`.
        let buf = unsafe { std::slice::from_raw_parts_mut(base.sub(FRONT_ROOM), FRONT_ROOM + cap) };
        let action = self
            .path
            .on_frame(&mut self.director, now_ns, buf, FRONT_ROOM, len);
        let (verdict, new_len, node) = match action {
            OuterAction::Pass => (StageVerdict::Continue, None, None),
            OuterAction::ToHost { start, len } => {
                if len > cap {
                    return StageVerdict::Done(Action::Drop(DropReason::Rewrite));
                }
                buf.copy_within(start..start + len, FRONT_ROOM);
                (StageVerdict::Continue, Some(len), None)
            }
            OuterAction::Transmit { start, len, node } => {
                if len > cap {
                    return StageVerdict::Done(Action::Drop(DropReason::Rewrite));
                }
                buf.copy_within(start..start + len, FRONT_ROOM);
                (StageVerdict::Done(Action::Bounce), Some(len), Some(node))
            }
            OuterAction::Drop => return StageVerdict::Done(Action::Drop(DropReason::Rewrite)),
        };
        let after = Snapshot::of(self.director.stats());
        if after.vip_packets != before.vip_packets {
            // The inner packet sits at the frame start (Pass) or behind the
            // outer headers (Transmit).
            let at = if node.is_some() {
                FRONT_ROOM + OUTER_LEN - 14
            } else {
                FRONT_ROOM
            };
            let frame_len = new_len.unwrap_or(len);
            self.count_service(&buf[at..FRONT_ROOM + frame_len], &before, &after, node);
        }
        if let Some(n) = new_len {
            data.cursor().set_pos(n);
        }
        verdict
    }

    /// Attributes one VIP packet to its service (only VIP packets get here:
    /// one extra header parse on the owner).
    fn count_service(&mut self, frame: &[u8], b: &Snapshot, a: &Snapshot, node: Option<NodeId>) {
        let tables = self.director.tables();
        // Transmitted frames are parsed from their inner IP header: give the
        // parser an Ethernet-sized prefix (the bytes in front are the outer
        // headers; only the ethertype position matters, and it is checked).
        let parsed = if node.is_some() {
            inner_fields(frame)
        } else {
            parse_frame(frame).ok().map(|p| p.flow)
        };
        let Some(f) = parsed else { return };
        let Some(svc) = tables.find(f.dst, f.proto, f.dport) else {
            return;
        };
        let idx = svc.index;
        let local = tables.local;
        let Some(c) = self.services.get_mut(usize::from(idx)) else {
            return;
        };
        c.packets += 1;
        c.bytes += frame.len() as u64;
        c.new_flows += a.placed - b.placed;
        c.sticky_hits += a.sticky_hits - b.sticky_hits;
        c.placed_local += a.placed_local - b.placed_local;
        c.placed_remote += a.placed_remote - b.placed_remote;
        if node.is_some() {
            c.encapsulated += 1;
        }
        let placed_on = if a.placed_local != b.placed_local {
            Some(local)
        } else if a.placed_remote != b.placed_remote {
            node
        } else {
            None
        };
        if let Some(n) = placed_on {
            if let Some(v) = self.placements.get_mut(&(idx, n)) {
                *v += 1;
            } else if self.placements.len() < PLACEMENT_SLOTS {
                self.placements.insert((idx, n), 1);
            }
        }
    }

    /// Reclaims expired conntrack and sticky entries (off the packet path).
    pub fn sweep(&mut self, now_ns: u64) {
        if self.director.refresh() {
            self.apply_tables(now_ns);
        }
        self.director.sweep(now_ns, 16 * 1024);
    }

    /// Cumulative counters (allocates: call at the publish interval only).
    pub fn report(&mut self) -> DirectorReport {
        let mut arp = self.arp_base.clone();
        if let Some(a) = &self.arp {
            add_arp(&mut arp, a.stats());
        }
        DirectorReport {
            director: self.director.stats().clone(),
            path: self.path.stats.clone(),
            arp,
            services: self.services.clone(),
            placements: self
                .placements
                .iter()
                .map(|(&(s, n), &c)| (s, n, c))
                .collect(),
            ready: self.ready(),
        }
    }
}

/// Flow fields of an encapsulated frame's inner packet: `frame` starts 14
/// bytes before the inner IPv4 header.
fn inner_fields(frame: &[u8]) -> Option<crate::director::FlowFields> {
    let ip = frame.get(14..)?;
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let l4 = ip.get(ihl..)?;
    if l4.len() < 4 {
        return None;
    }
    Some(crate::director::FlowFields {
        proto: ip[9],
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        tcp_flags: 0,
    })
}

#[derive(Debug, Clone, Copy)]
struct Snapshot {
    vip_packets: u64,
    placed: u64,
    sticky_hits: u64,
    placed_local: u64,
    placed_remote: u64,
}

impl Snapshot {
    #[inline]
    fn of(s: &DirectorStats) -> Self {
        Snapshot {
            vip_packets: s.vip_packets,
            placed: s.new_flows + s.replaced_failed,
            sticky_hits: s.sticky_hits,
            placed_local: s.placed_local,
            placed_remote: s.placed_remote,
        }
    }
}

fn add_arp(acc: &mut ArpStats, s: &ArpStats) {
    acc.answered += s.answered;
    acc.suppressed_in += s.suppressed_in;
    acc.suppressed_out += s.suppressed_out;
    acc.rewritten += s.rewritten;
    acc.announced += s.announced;
    acc.malformed += s.malformed;
    acc.ownership_changes += s.ownership_changes;
}
