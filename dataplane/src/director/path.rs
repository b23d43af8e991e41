//! Per-frame glue for the worker's outer interface: decapsulate frames
//! forwarded by the VIP owner, place client frames, encapsulate remote ones
//! in place. Works on the pipeline's one parse of the frame ([`FrameInfo`]).

use std::net::{IpAddr, Ipv4Addr};

use super::encap::{self, EncapConfig, EncapError, OuterParams};
use super::hash::flow_hash;
use super::maglev::NodeId;
use super::{Director, FlowFields, Placement, IPPROTO_TCP, IPPROTO_UDP};
use crate::frame::Frame;
use crate::packet::{FrameInfo, L3Kind};

/// Underlay address of one pool node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Node id.
    pub node: NodeId,
    /// Underlay IPv4 address.
    pub ip: Ipv4Addr,
    /// Next-hop MAC towards it (its own MAC on a flat L2 segment).
    pub mac: [u8; 6],
}

/// Underlay addresses of the pool, built by the control thread from
/// membership (and neighbour resolution) and shared with the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers {
    /// This node's underlay address.
    pub local_ip: Ipv4Addr,
    /// This node's MAC on the outer interface.
    pub local_mac: [u8; 6],
    /// Sorted by node id.
    by_node: Vec<Peer>,
    /// Underlay addresses of all peers, sorted.
    ips: Vec<u32>,
}

impl Default for Peers {
    fn default() -> Self {
        Peers::new(Ipv4Addr::UNSPECIFIED, [0; 6], &[])
    }
}

impl Peers {
    /// Builds the peer set (any order; the last entry of a duplicate id wins).
    pub fn new(local_ip: Ipv4Addr, local_mac: [u8; 6], peers: &[Peer]) -> Self {
        let mut by_node: Vec<Peer> = Vec::with_capacity(peers.len());
        for p in peers {
            match by_node.iter_mut().find(|q| q.node == p.node) {
                Some(q) => *q = *p,
                None => by_node.push(*p),
            }
        }
        by_node.sort_unstable_by_key(|p| p.node);
        let mut ips: Vec<u32> = by_node.iter().map(|p| u32::from(p.ip)).collect();
        ips.sort_unstable();
        Peers {
            local_ip,
            local_mac,
            by_node,
            ips,
        }
    }

    /// Peer `node`.
    #[inline]
    pub fn get(&self, node: NodeId) -> Option<&Peer> {
        self.by_node
            .binary_search_by_key(&node, |p| p.node)
            .ok()
            .map(|i| &self.by_node[i])
    }

    /// Every peer's underlay address.
    pub fn underlay_ips(&self) -> Vec<Ipv4Addr> {
        self.by_node.iter().map(|p| p.ip).collect()
    }

    /// Whether `ip` is a peer's underlay address (decapsulation accepts only
    /// those, so nobody outside the pool can inject frames into host stacks).
    #[inline]
    pub fn is_peer_ip(&self, ip: Ipv4Addr) -> bool {
        self.ips.binary_search(&u32::from(ip)).is_ok()
    }
}

/// The director's flow fields of a parsed frame: IPv4 TCP or UDP with ports
/// (not a later fragment), VLAN-tagged or not.
pub fn flow_fields(info: &FrameInfo) -> Option<FlowFields> {
    if info.kind != L3Kind::Ipv4 || info.l4_offset.is_none() {
        return None;
    }
    let k = info.flow?;
    let proto = k.protocol();
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (k.src_ip(), k.dst_ip()) else {
        return None;
    };
    Some(FlowFields {
        proto,
        src,
        dst,
        sport: k.src_port(),
        dport: k.dst_port(),
        tcp_flags: info.tcp_flags,
    })
}

/// What the worker does with a frame from the outer interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuterAction {
    /// Deliver the frame unchanged to the host stack (local placement, not
    /// VIP traffic, a VIP service without live member, or not IPv4 TCP/UDP:
    /// ARP goes to the ARP interceptor before this).
    Pass,
    /// Deliver the rewritten frame to the host stack (decapsulated, with a
    /// rebuilt Ethernet header).
    ToHost,
    /// Transmit the rewritten frame on the outer interface (encapsulated
    /// towards its serving node).
    Transmit {
        /// Serving node.
        node: NodeId,
        /// The outer headers it was given.
        outer: OuterParams,
    },
    /// Drop the frame (counted in [`PathStats`]).
    Drop,
}

/// Counters of the outer path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Forwarded frames decapsulated for the host stack.
    pub decapsulated: u64,
    /// Encapsulated frames from an address that is not a pool node (dropped).
    pub decap_foreign: u64,
    /// Malformed encapsulated frames (dropped).
    pub decap_errors: u64,
    /// Frames encapsulated towards another node.
    pub encapsulated: u64,
    /// Frames that would exceed the underlay MTU once encapsulated (dropped).
    pub encap_too_big: u64,
    /// Frames without headroom for in-place encapsulation (dropped).
    pub encap_no_headroom: u64,
    /// Remote placements to a node with no known underlay address (dropped).
    pub no_peer: u64,
    /// VIP SYN-ACKs leaving the host whose MSS was lowered to fit the
    /// encapsulation.
    pub mss_clamped: u64,
}

/// Outer-interface frame handling of one worker.
#[derive(Debug)]
pub struct OuterPath {
    cfg: EncapConfig,
    host_mac: [u8; 6],
    /// Counters.
    pub stats: PathStats,
}

impl OuterPath {
    /// `host_mac`: destination MAC of frames handed to the host stack.
    pub fn new(cfg: EncapConfig, host_mac: [u8; 6]) -> Self {
        OuterPath {
            cfg,
            host_mac,
            stats: PathStats::default(),
        }
    }

    /// The encapsulation settings.
    pub fn config(&self) -> &EncapConfig {
        &self.cfg
    }

    /// Whether a frame with these flow fields is encapsulated traffic for
    /// this node (it bypasses placement).
    #[inline]
    pub fn is_encapsulated(&self, d: &Director, f: &FlowFields) -> bool {
        f.proto == IPPROTO_UDP && f.dport == self.cfg.udp_port && f.dst == d.tables().peers.local_ip
    }

    /// Handles a frame received on the outer interface, parsed as `info`
    /// (its director fields `flow`). Encapsulation writes the outer headers
    /// into the headroom in front of the frame.
    pub fn on_frame(
        &mut self,
        d: &mut Director,
        now_ns: u64,
        frame: &mut Frame<'_>,
        info: &FrameInfo,
        flow: &FlowFields,
    ) -> OuterAction {
        if self.is_encapsulated(d, flow) {
            return self.deliver_decapsulated(d, frame, info);
        }
        match d.decide(now_ns, flow) {
            Placement::Local | Placement::NotVip | Placement::NoBackend => OuterAction::Pass,
            Placement::Remote(node, service) => {
                let peers = &d.tables().peers;
                let Some(peer) = peers.get(node) else {
                    self.stats.no_peer += 1;
                    return OuterAction::Drop;
                };
                let f = flow;
                let outer = OuterParams {
                    src_mac: peers.local_mac,
                    dst_mac: peer.mac,
                    src_ip: peers.local_ip,
                    dst_ip: peer.ip,
                    origin: d.tables().local,
                    service,
                    src_port: encap::entropy_port(flow_hash(
                        f.proto, f.src, f.dst, f.sport, f.dport,
                    )),
                };
                match encap::encapsulate(frame, info, &outer, &self.cfg) {
                    Ok(()) => {
                        self.stats.encapsulated += 1;
                        OuterAction::Transmit { node, outer }
                    }
                    Err(EncapError::TooBig { .. }) => {
                        self.stats.encap_too_big += 1;
                        OuterAction::Drop
                    }
                    Err(_) => {
                        self.stats.encap_no_headroom += 1;
                        OuterAction::Drop
                    }
                }
            }
        }
    }

    fn deliver_decapsulated(
        &mut self,
        d: &Director,
        frame: &mut Frame<'_>,
        info: &FrameInfo,
    ) -> OuterAction {
        let dc = match encap::decapsulate(frame, info, &self.cfg) {
            Ok(dc) => dc,
            Err(_) => {
                self.stats.decap_errors += 1;
                return OuterAction::Drop;
            }
        };
        if !d.tables().peers.is_peer_ip(dc.outer_src) {
            self.stats.decap_foreign += 1;
            return OuterAction::Drop;
        }
        match encap::restore_ethernet(frame, &dc, self.host_mac, dc.outer_src_mac) {
            Ok(()) => {
                self.stats.decapsulated += 1;
                OuterAction::ToHost
            }
            Err(_) => {
                self.stats.decap_errors += 1;
                OuterAction::Drop
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use headroom_config::vip::{PortRange, VipProtocol, VipService};

    use super::super::conntrack::ConntrackConfig;
    use super::super::maglev::DEFAULT_TABLE_SIZE;
    use super::super::{DirectorTables, PoolView};
    use super::*;
    use crate::packet::{build, checksum::checksum, parse_packet};

    const HEADROOM: usize = 256;
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

    fn peers(local: NodeId) -> Peers {
        let all = [1u32, 2, 3].map(|n| Peer {
            node: n,
            ip: Ipv4Addr::new(172, 16, 0, n as u8),
            mac: [2, 0, 0, 0, 0, n as u8],
        });
        Peers::new(
            Ipv4Addr::new(172, 16, 0, local as u8),
            [2, 0, 0, 0, 0, local as u8],
            &all,
        )
    }

    fn director(local: NodeId) -> Director {
        let svc = VipService {
            name: "web".into(),
            vip: VIP,
            protocol: VipProtocol::Tcp,
            ports: vec![PortRange {
                first: 80,
                last: 80,
            }],
            members: vec![],
            weights: vec![],
            placement: Default::default(),
            sticky_timeout: std::time::Duration::ZERO,
            gratuitous_arp_count: 3,
            health_check: None,
        };
        let pool = PoolView {
            alive: vec![1, 2, 3],
            ..PoolView::default()
        };
        let t = DirectorTables::build(&[svc], &pool, local, DEFAULT_TABLE_SIZE)
            .unwrap()
            .with_peers(peers(local));
        Director::new(Arc::new(t), ConntrackConfig::default(), 1024)
    }

    /// Client frame (SYN to VIP:80 from 192.0.2.1:sport, optionally tagged)
    /// with `payload` bytes of TCP data, placed at HEADROOM in a 4 KiB chunk.
    fn client_frame(sport: u16, payload: usize, vlan: Option<u16>) -> (Vec<u8>, usize) {
        let f = build::ipv4_frame(
            vlan,
            6,
            Ipv4Addr::new(192, 0, 2, 1),
            VIP,
            sport,
            80,
            0x02,
            &vec![0x5a; payload],
        );
        let mut buf = vec![0u8; 4096];
        buf[HEADROOM..HEADROOM + f.len()].copy_from_slice(&f);
        (buf, f.len())
    }

    /// Runs `p` over `buf[start..start+len]`; returns the action and the
    /// frame's new range.
    fn run(
        p: &mut OuterPath,
        d: &mut Director,
        buf: &mut [u8],
        start: usize,
        len: usize,
    ) -> (OuterAction, usize, usize) {
        let mut frame = Frame::new(buf, start, len, &[]).unwrap();
        let Ok(info) = parse_packet(frame.data(), frame.len()) else {
            return (OuterAction::Pass, start, len);
        };
        let Some(flow) = flow_fields(&info) else {
            return (OuterAction::Pass, start, len);
        };
        let a = p.on_frame(d, 0, &mut frame, &info, &flow);
        (a, frame.start(), frame.len())
    }

    fn ip_of(frame: &[u8]) -> &[u8] {
        let info = parse_packet(frame, frame.len()).unwrap();
        let l3 = info.l3_offset as usize;
        &frame[l3..l3 + info.l3_len as usize]
    }

    #[test]
    fn owner_to_server_round_trip() {
        for vlan in [None, Some(42)] {
            let mut owner = director(1);
            let mut p1 = OuterPath::new(EncapConfig::default(), [2, 0, 0, 0, 0, 1]);
            let mut server = director(2);
            let mut p2 = OuterPath::new(EncapConfig::default(), [0xaa; 6]);
            let (mut remote_seen, mut local_seen) = (0, 0);
            for sport in 1000..1100 {
                let (mut buf, len) = client_frame(sport, 0, vlan);
                let original = buf[HEADROOM..HEADROOM + len].to_vec();
                let ip = ip_of(&original).to_vec();
                match run(&mut p1, &mut owner, &mut buf, HEADROOM, len) {
                    (OuterAction::Pass, ..) => local_seen += 1,
                    (OuterAction::Transmit { node, .. }, start, len) => {
                        remote_seen += 1;
                        let tag = if vlan.is_some() { 4 } else { 0 };
                        assert_eq!(start + 14 + tag + 36, HEADROOM + 14 + tag);
                        assert_eq!(&buf[start..start + 6], &[2, 0, 0, 0, 0, node as u8]);
                        // Tagged frames leave with their tag.
                        assert_eq!(buf[start + 12..start + 12 + tag], original[12..12 + tag]);
                        // The serving node receives it (in its own chunk).
                        let mut rx = vec![0u8; 4096];
                        rx[HEADROOM..HEADROOM + len].copy_from_slice(&buf[start..start + len]);
                        let mut other;
                        let srv: &mut Director = if node == 2 {
                            &mut server
                        } else {
                            other = director(node);
                            &mut other
                        };
                        match run(&mut p2, srv, &mut rx, HEADROOM, len) {
                            (OuterAction::ToHost, start, len) => {
                                let f = &rx[start..start + len];
                                assert_eq!(&f[..6], &[0xaa; 6]);
                                assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 1]);
                                assert_eq!(f[12..12 + tag], original[12..12 + tag]);
                                assert_eq!(&f[12 + tag..14 + tag], &[8, 0]);
                                assert_eq!(ip_of(f), &ip[..]);
                            }
                            other => panic!("server: {other:?}"),
                        }
                    }
                    other => panic!("owner: {other:?}"),
                }
            }
            assert!(
                remote_seen > 40 && local_seen > 15,
                "{remote_seen} {local_seen}"
            );
            assert_eq!(p1.stats.encapsulated, remote_seen);
            assert_eq!(p2.stats.decapsulated, remote_seen);
            // The server's director never placed anything: decapsulated frames
            // bypass placement.
            assert_eq!(server.stats().vip_packets, 0);
        }
    }

    fn first_remote_sport(d: &mut Director) -> u16 {
        (1000..2000)
            .find(|&s| {
                let h = flow_hash(6, Ipv4Addr::new(192, 0, 2, 1), VIP, s, 80);
                matches!(d.tables().services[0].maglev.lookup(h), Some(n) if n != 1)
            })
            .unwrap()
    }

    #[test]
    fn mtu_headroom_and_foreign_sources() {
        let mut owner = director(1);
        let sport = first_remote_sport(&mut owner);
        let mut p1 = OuterPath::new(EncapConfig::default(), [0; 6]);
        // 1500-byte client packet cannot be encapsulated within MTU 1500.
        let (mut buf, len) = client_frame(sport, 1460, None);
        assert_eq!(
            run(&mut p1, &mut owner, &mut buf, HEADROOM, len).0,
            OuterAction::Drop
        );
        assert_eq!(p1.stats.encap_too_big, 1);
        // No room in front of the frame.
        let (mut buf, len) = client_frame(sport, 0, None);
        buf.copy_within(HEADROOM..HEADROOM + len, 10);
        let mut d = director(1);
        assert_eq!(run(&mut p1, &mut d, &mut buf, 10, len).0, OuterAction::Drop);
        assert_eq!(p1.stats.encap_no_headroom, 1);
        // An encapsulated frame from outside the pool is dropped.
        let (mut buf, len) = client_frame(sport, 0, None);
        let (OuterAction::Transmit { node, .. }, start, len) =
            run(&mut p1, &mut director(1), &mut buf, HEADROOM, len)
        else {
            panic!("expected transmit");
        };
        let mut rx = buf[start..start + len].to_vec();
        rx[26..30].copy_from_slice(&[203, 0, 113, 9]);
        rx[24] = 0;
        rx[25] = 0;
        let c = checksum(&rx[14..34]);
        rx[24..26].copy_from_slice(&c.to_be_bytes());
        let mut chunk = vec![0u8; 4096];
        chunk[HEADROOM..HEADROOM + len].copy_from_slice(&rx);
        let mut p2 = OuterPath::new(EncapConfig::default(), [0; 6]);
        // Addressed to the serving node's underlay address, it is checked as
        // encapsulated traffic.
        assert_eq!(
            run(&mut p2, &mut director(node), &mut chunk, HEADROOM, len).0,
            OuterAction::Drop
        );
        assert_eq!(p2.stats.decap_foreign, 1);
        // A corrupted outer header is counted.
        chunk[HEADROOM + 24] ^= 0xff;
        assert_eq!(
            run(&mut p2, &mut director(node), &mut chunk, HEADROOM, len).0,
            OuterAction::Drop
        );
        assert_eq!(p2.stats.decap_errors, 1);
    }

    #[test]
    fn unknown_peer_and_non_vip() {
        let svc_tables = {
            let d = director(1);
            let t: DirectorTables = (**d.tables()).clone();
            t.with_peers(Peers::new(Ipv4Addr::new(172, 16, 0, 1), [0; 6], &[]))
        };
        let mut d = Director::new(Arc::new(svc_tables), ConntrackConfig::default(), 16);
        let sport = first_remote_sport(&mut d);
        let mut p = OuterPath::new(EncapConfig::default(), [0; 6]);
        let (mut buf, len) = client_frame(sport, 0, None);
        assert_eq!(
            run(&mut p, &mut d, &mut buf, HEADROOM, len).0,
            OuterAction::Drop
        );
        assert_eq!(p.stats.no_peer, 1);
        // Non-VIP destination: passes untouched.
        let (mut buf, len) = client_frame(sport, 0, None);
        buf[HEADROOM + 14 + 19] = 101;
        let before = buf.clone();
        assert_eq!(
            run(&mut p, &mut d, &mut buf, HEADROOM, len).0,
            OuterAction::Pass
        );
        assert_eq!(buf, before);
    }

    #[test]
    fn multi_buffer_packets_are_encapsulated_in_place() {
        let mut owner = director(1);
        let sport = first_remote_sport(&mut owner);
        let cfg = EncapConfig {
            mtu: 9000,
            ..EncapConfig::default()
        };
        let mut p1 = OuterPath::new(cfg, [0; 6]);
        let f = build::ipv4_frame(
            None,
            6,
            Ipv4Addr::new(192, 0, 2, 1),
            VIP,
            sport,
            80,
            0x10,
            &vec![7u8; 8000],
        );
        // First buffer 3840 bytes at HEADROOM, the rest in two more buffers.
        let mut buf = vec![0u8; 4096];
        buf[HEADROOM..HEADROOM + 3840].copy_from_slice(&f[..3840]);
        let tail = [&f[3840..7680], &f[7680..]];
        let mut frame = Frame::new(&mut buf, HEADROOM, 3840, &tail).unwrap();
        let info = parse_packet(frame.data(), frame.len()).unwrap();
        let flow = flow_fields(&info).unwrap();
        let a = p1.on_frame(&mut owner, 0, &mut frame, &info, &flow);
        assert!(matches!(a, OuterAction::Transmit { .. }), "{a:?}");
        assert_eq!(frame.len(), f.len() + 36);
        let total = u16::from_be_bytes([frame.data()[16], frame.data()[17]]);
        assert_eq!(usize::from(total), f.len() - 14 + 36);
    }
}
