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

use std::net::Ipv4Addr;
use std::sync::Arc;

use hashbrown::HashMap;
use headroom_config::vip::DirectorSettings;

use crate::arp::{ArpConfig, ArpInterceptor, ArpStats, Verdict};
use crate::director::conntrack::ConntrackConfig;
use crate::director::encap::{EncapConfig, OuterParams};
use crate::director::path::{flow_fields, OuterAction, OuterPath, PathStats};
use crate::director::{
    Director, DirectorStats, FlowFields, NodeId, ServiceIdx, TableCell, IPPROTO_TCP,
};
use crate::frame::Frame;
use crate::packet::{FrameInfo, ParseError};
use crate::worker::{Action, DropReason, Side};
use crate::xdp::abi::HrEncap;

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
    /// Continue with the rest of the pipeline, frame unchanged.
    Continue,
    /// Continue with the rest of the pipeline: the frame is a different
    /// packet now (decapsulated) and must be parsed again.
    Rewritten,
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
    scratch: [u8; 96],
    services: Vec<ServiceCounters>,
    placements: HashMap<(ServiceIdx, NodeId), u64>,
    vips: Vec<(Ipv4Addr, u32)>,
    owned: Vec<Ipv4Addr>,
    /// The outer headers of the last frame encapsulated (for the fast path).
    last_encap: Option<HrEncap>,
}

/// The fast path's form of the outer headers.
fn to_fast_encap(o: &OuterParams, udp_port: u16) -> HrEncap {
    HrEncap {
        dst_mac: o.dst_mac,
        src_mac: o.src_mac,
        src_ip: u32::from_ne_bytes(o.src_ip.octets()),
        dst_ip: u32::from_ne_bytes(o.dst_ip.octets()),
        sport: o.src_port.to_be(),
        dport: udp_port.to_be(),
        service: o.service.to_be(),
        _pad: 0,
        origin: o.origin.to_be(),
    }
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
            announce_spacing_ns: settings.gratuitous_arp_interval.as_nanos() as u64,
            local_mac: [0; 6],
            scratch: [0; 96],
            services: Vec::new(),
            placements,
            vips: Vec::new(),
            owned: Vec::new(),
            last_encap: None,
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

    /// A VIP service's SYN-ACK leaving the host: clamp the MSS it offers so
    /// the client's segments fit the underlay once the owner encapsulates
    /// them (36 bytes of outer headers), instead of being cut by the owner.
    fn clamp_vip_mss(&mut self, frame: &mut Frame<'_>, info: &FrameInfo) {
        const SYN_ACK: u8 = 0x12;
        if info.tcp_flags & SYN_ACK != SYN_ACK {
            return;
        }
        let Some(f) = flow_fields(info) else { return };
        if self
            .director
            .tables()
            .find(f.src, f.proto, f.sport)
            .is_none()
        {
            return;
        }
        let (Some(l4), l3) = (info.l4_offset, usize::from(info.l3_offset)) else {
            return;
        };
        let l4 = usize::from(l4);
        let ip_hl = l4 - l3;
        let max = self
            .path
            .config()
            .max_inner()
            .saturating_sub(ip_hl + 20)
            .min(usize::from(u16::MAX)) as u16;
        let data = frame.data_mut();
        if let Some(seg) = data.get_mut(l4..) {
            if crate::packet::tcp::clamp_mss(seg, max) {
                self.path.stats.mss_clamped += 1;
            }
        }
    }

    /// The outer headers of the frame just encapsulated, if it was.
    pub fn take_encap(&mut self) -> Option<HrEncap> {
        self.last_encap.take()
    }

    /// Generation of the tables the stage follows.
    pub fn tables_generation(&self) -> u64 {
        self.director.generation()
    }

    /// Whether frames like this one need the stage (VIP traffic or
    /// encapsulated traffic from the network): such flows stay off the fast
    /// path. Flows the stage never touches (host traffic, replies leaving the
    /// host) do not.
    pub fn involves(&self, side: Side, info: &FrameInfo) -> bool {
        if side == Side::Inner {
            return false;
        }
        match flow_fields(info) {
            Some(f) => {
                self.path.is_encapsulated(&self.director, &f)
                    || self
                        .director
                        .tables()
                        .find(f.dst, f.proto, f.dport)
                        .is_some()
            }
            None => true,
        }
    }

    /// Whether the stage intercepts traffic (the local host MAC is known).
    #[inline]
    pub fn ready(&self) -> bool {
        self.arp.is_some()
    }

    /// Handles one frame with the pipeline's parse of it.
    #[inline]
    pub fn on_frame(
        &mut self,
        now_ns: u64,
        side: Side,
        frame: &mut Frame<'_>,
        parsed: Result<&FrameInfo, &ParseError>,
    ) -> StageVerdict {
        if self.director.refresh() {
            self.apply_tables(now_ns);
        }
        let Some(arp) = &mut self.arp else {
            return StageVerdict::Continue;
        };
        if let Some(verdict) = arp.on_frame(side, frame.data(), parsed, &mut self.scratch) {
            return match verdict {
                Verdict::Forward => StageVerdict::Continue,
                Verdict::Drop(_) => StageVerdict::Done(Action::Drop(DropReason::Policy)),
                Verdict::Reply(n) => {
                    if frame.replace(&self.scratch[..n]).is_err() {
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
        let Ok(info) = parsed else {
            return StageVerdict::Continue;
        };
        if side == Side::Inner {
            self.clamp_vip_mss(frame, info);
            return StageVerdict::Continue;
        }
        let Some(flow) = flow_fields(info) else {
            return StageVerdict::Continue;
        };
        self.outer_ip(now_ns, frame, info, &flow)
    }

    #[inline]
    fn outer_ip(
        &mut self,
        now_ns: u64,
        frame: &mut Frame<'_>,
        info: &FrameInfo,
        flow: &FlowFields,
    ) -> StageVerdict {
        // A TCP packet that would not fit the underlay once encapsulated is
        // cut to size first (its segments come back through the pipeline),
        // if it is VIP traffic at all: a cheap table lookup decides.
        let max_inner = self.path.config().max_inner();
        if usize::from(info.l3_len) > max_inner
            && flow.proto == IPPROTO_TCP
            && !self.path.is_encapsulated(&self.director, flow)
            && self
                .director
                .tables()
                .find(flow.dst, flow.proto, flow.dport)
                .is_some()
        {
            return StageVerdict::Done(Action::Segment {
                max_l3: max_inner as u16,
            });
        }
        let len = frame.len();
        let before = Snapshot::of(self.director.stats());
        let action = self
            .path
            .on_frame(&mut self.director, now_ns, frame, info, flow);
        let (verdict, node) = match action {
            OuterAction::Pass => (StageVerdict::Continue, None),
            OuterAction::ToHost => (StageVerdict::Rewritten, None),
            OuterAction::Transmit { node, outer } => {
                self.last_encap = Some(to_fast_encap(&outer, self.path.config().udp_port));
                (StageVerdict::Done(Action::Bounce), Some(node))
            }
            OuterAction::Drop => return StageVerdict::Done(Action::Drop(DropReason::Rewrite)),
        };
        let after = Snapshot::of(self.director.stats());
        if after.vip_packets != before.vip_packets {
            self.count_service(flow, len, &before, &after, node);
        }
        verdict
    }

    /// Attributes one VIP packet (`len` bytes, flow `f`) to its service.
    fn count_service(
        &mut self,
        f: &FlowFields,
        len: usize,
        b: &Snapshot,
        a: &Snapshot,
        node: Option<NodeId>,
    ) {
        let tables = self.director.tables();
        let Some(svc) = tables.find(f.dst, f.proto, f.dport) else {
            return;
        };
        let idx = svc.index;
        let local = tables.local;
        let Some(c) = self.services.get_mut(usize::from(idx)) else {
            return;
        };
        c.packets += 1;
        c.bytes += len as u64;
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
