//! Per-frame glue for the worker's outer interface: decapsulate frames
//! forwarded by the VIP owner, place client frames, encapsulate remote ones
//! in place. Uses [`super::frame`] for parsing until the shared packet views
//! replace it.

use std::net::Ipv4Addr;

use super::encap::{self, Decap, EncapConfig, EncapError, OuterParams, ETH_LEN, OUTER_LEN};
use super::frame::parse_frame;
use super::hash::flow_hash;
use super::maglev::NodeId;
use super::{Director, Placement, IPPROTO_UDP};

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

    /// Whether `ip` is a peer's underlay address (decapsulation accepts only
    /// those, so nobody outside the pool can inject frames into host stacks).
    #[inline]
    pub fn is_peer_ip(&self, ip: Ipv4Addr) -> bool {
        self.ips.binary_search(&u32::from(ip)).is_ok()
    }
}

/// What the worker does with a frame from the outer interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuterAction {
    /// Deliver the frame unchanged to the host stack (local placement, not
    /// VIP traffic, a VIP service without live member, or not IPv4 TCP/UDP:
    /// ARP goes to the ARP interceptor before this).
    Pass,
    /// Deliver `buf[start..start + len]` to the host stack (a decapsulated
    /// frame with a rebuilt Ethernet header).
    ToHost {
        /// Frame start in the buffer.
        start: usize,
        /// Frame length.
        len: usize,
    },
    /// Transmit `buf[start..start + len]` on the outer interface (the frame,
    /// encapsulated towards its serving node).
    Transmit {
        /// Frame start in the buffer.
        start: usize,
        /// Frame length.
        len: usize,
        /// Serving node.
        node: NodeId,
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

    /// Handles the frame `buf[start..start + len]` received on the outer
    /// interface. `buf` is the whole umem chunk: in-place encapsulation
    /// writes the outer headers into the [`encap::OVERHEAD`] bytes in front
    /// of `start` (AF_XDP leaves XDP_PACKET_HEADROOM there).
    pub fn on_frame(
        &mut self,
        d: &mut Director,
        now_ns: u64,
        buf: &mut [u8],
        start: usize,
        len: usize,
    ) -> OuterAction {
        let Some(frame) = start.checked_add(len).and_then(|end| buf.get(start..end)) else {
            return OuterAction::Drop;
        };
        let Ok(p) = parse_frame(frame) else {
            return OuterAction::Pass;
        };
        // Encapsulated traffic: UDP to the encapsulation port of our own
        // underlay address. It bypasses placement.
        if p.flow.proto == IPPROTO_UDP
            && p.flow.dport == self.cfg.udp_port
            && p.flow.dst == d.tables().peers.local_ip
        {
            return match encap::decapsulate(frame, &self.cfg) {
                Ok(dc) => self.deliver_decapsulated(d, buf, start, &dc),
                Err(_) => {
                    self.stats.decap_errors += 1;
                    OuterAction::Drop
                }
            };
        }
        match d.decide(now_ns, &p.flow) {
            Placement::Local | Placement::NotVip | Placement::NoBackend => OuterAction::Pass,
            Placement::Remote(node, service) => {
                let peers = &d.tables().peers;
                let Some(peer) = peers.get(node) else {
                    self.stats.no_peer += 1;
                    return OuterAction::Drop;
                };
                let f = &p.flow;
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
                let ip_at = start + p.ip_offset;
                match encap::encapsulate_in_place(buf, ip_at, p.ip_len, &outer, &self.cfg) {
                    Ok(s) => {
                        self.stats.encapsulated += 1;
                        OuterAction::Transmit {
                            start: s,
                            len: OUTER_LEN + p.ip_len,
                            node,
                        }
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
        buf: &mut [u8],
        start: usize,
        dc: &Decap,
    ) -> OuterAction {
        if !d.tables().peers.is_peer_ip(dc.outer_src) {
            self.stats.decap_foreign += 1;
            return OuterAction::Drop;
        }
        let abs = Decap {
            inner_offset: start + dc.inner_offset,
            ..*dc
        };
        match encap::restore_ethernet(buf, &abs, self.host_mac, dc.outer_src_mac) {
            Ok(s) => {
                self.stats.decapsulated += 1;
                OuterAction::ToHost {
                    start: s,
                    len: ETH_LEN + dc.inner_len,
                }
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
    use super::super::encap::checksum;
    use super::super::maglev::DEFAULT_TABLE_SIZE;
    use super::super::{DirectorTables, PoolView};
    use super::*;

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
            sticky_secs: 0,
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

    /// Client frame (SYN to VIP:80 from 192.0.2.1:sport) with `payload`
    /// bytes of TCP data, placed at HEADROOM in a 4 KiB chunk.
    fn client_frame(sport: u16, payload: usize) -> (Vec<u8>, usize, Vec<u8>) {
        let ip_len = 40 + payload;
        let mut ip = vec![0u8; ip_len];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
        ip[16..20].copy_from_slice(&VIP.octets());
        let c = checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip[20..22].copy_from_slice(&sport.to_be_bytes());
        ip[22..24].copy_from_slice(&80u16.to_be_bytes());
        ip[32] = 0x50;
        ip[33] = 0x02;
        let mut buf = vec![0u8; 4096];
        buf[HEADROOM..HEADROOM + 6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        buf[HEADROOM + 6..HEADROOM + 12].copy_from_slice(&[0, 0x11, 0x22, 0x33, 0x44, 0x55]);
        buf[HEADROOM + 12..HEADROOM + 14].copy_from_slice(&[8, 0]);
        buf[HEADROOM + 14..HEADROOM + 14 + ip_len].copy_from_slice(&ip);
        (buf, 14 + ip_len, ip)
    }

    #[test]
    fn owner_to_server_round_trip() {
        let mut owner = director(1);
        let mut p1 = OuterPath::new(EncapConfig::default(), [2, 0, 0, 0, 0, 1]);
        let mut server = director(2);
        let mut p2 = OuterPath::new(EncapConfig::default(), [0xaa; 6]);
        let (mut remote_seen, mut local_seen) = (0, 0);
        for sport in 1000..1100 {
            let (mut buf, len, ip) = client_frame(sport, 0);
            match p1.on_frame(&mut owner, 0, &mut buf, HEADROOM, len) {
                OuterAction::Pass => local_seen += 1,
                OuterAction::Transmit { start, len, node } => {
                    remote_seen += 1;
                    assert_eq!(start, HEADROOM - 36);
                    assert_eq!(&buf[start..start + 6], &[2, 0, 0, 0, 0, node as u8]);
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
                    match p2.on_frame(srv, 0, &mut rx, HEADROOM, len) {
                        OuterAction::ToHost { start, len } => {
                            assert_eq!(&rx[start..start + 6], &[0xaa; 6]);
                            assert_eq!(&rx[start + 6..start + 12], &[2, 0, 0, 0, 0, 1]);
                            assert_eq!(&rx[start + 12..start + 14], &[8, 0]);
                            assert_eq!(&rx[start + 14..start + len], &ip[..]);
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

    fn first_remote_sport(d: &mut Director) -> u16 {
        (1000..2000)
            .find(|&s| {
                let (buf, len, _) = client_frame(s, 0);
                let p = parse_frame(&buf[HEADROOM..HEADROOM + len]).unwrap();
                matches!(d.tables().services[0].maglev.lookup(flow_hash(6, p.flow.src, p.flow.dst, p.flow.sport, p.flow.dport)), Some(n) if n != 1)
            })
            .unwrap()
    }

    #[test]
    fn mtu_headroom_and_foreign_sources() {
        let mut owner = director(1);
        let sport = first_remote_sport(&mut owner);
        let mut p1 = OuterPath::new(EncapConfig::default(), [0; 6]);
        // 1500-byte client packet cannot be encapsulated within MTU 1500.
        let (mut buf, len, _) = client_frame(sport, 1460);
        assert_eq!(
            p1.on_frame(&mut owner, 0, &mut buf, HEADROOM, len),
            OuterAction::Drop
        );
        assert_eq!(p1.stats.encap_too_big, 1);
        // No room in front of the frame.
        let (mut buf, len, _) = client_frame(sport, 0);
        buf.copy_within(HEADROOM..HEADROOM + len, 10);
        let mut d = director(1);
        assert_eq!(p1.on_frame(&mut d, 0, &mut buf, 10, len), OuterAction::Drop);
        assert_eq!(p1.stats.encap_no_headroom, 1);
        // An encapsulated frame from outside the pool is dropped.
        let (mut buf, len, _) = client_frame(sport, 0);
        let OuterAction::Transmit { start, len, node } =
            p1.on_frame(&mut director(1), 0, &mut buf, HEADROOM, len)
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
        assert_eq!(
            p2.on_frame(&mut director(node), 0, &mut chunk, HEADROOM, len),
            OuterAction::Drop
        );
        assert_eq!(p2.stats.decap_foreign, 1);
        // Out-of-range descriptors never panic.
        assert_eq!(
            p2.on_frame(&mut director(2), 0, &mut chunk, 4000, 200),
            OuterAction::Drop
        );
        assert_eq!(
            p2.on_frame(&mut director(2), 0, &mut chunk, usize::MAX, 2),
            OuterAction::Drop
        );
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
        let (mut buf, len, _) = client_frame(sport, 0);
        assert_eq!(
            p.on_frame(&mut d, 0, &mut buf, HEADROOM, len),
            OuterAction::Drop
        );
        assert_eq!(p.stats.no_peer, 1);
        // Non-VIP destination: passes untouched.
        let (mut buf, len, _) = client_frame(sport, 0);
        buf[HEADROOM + 14 + 19] = 101;
        let before = buf.clone();
        assert_eq!(
            p.on_frame(&mut d, 0, &mut buf, HEADROOM, len),
            OuterAction::Pass
        );
        assert_eq!(buf, before);
    }
}
