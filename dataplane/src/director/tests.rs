use super::maglev::DEFAULT_TABLE_SIZE;
use super::*;
use headroom_config::vip::{NodeWeight, VipProtocol};

const S: u64 = 1_000_000_000;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

fn service(name: &str, sticky_secs: u64, members: Vec<u32>) -> VipService {
    VipService {
        name: name.into(),
        vip: VIP,
        protocol: VipProtocol::Tcp,
        ports: vec![PortRange {
            first: 80,
            last: 80,
        }],
        members,
        weights: vec![],
        placement: Default::default(),
        sticky_timeout: std::time::Duration::from_secs(sticky_secs),
        gratuitous_arp_count: 3,
        health_check: None,
    }
}

fn pool(alive: &[NodeId]) -> PoolView {
    PoolView {
        alive: alive.to_vec(),
        ..PoolView::default()
    }
}

fn director(services: &[VipService], p: &PoolView, local: NodeId) -> Director {
    let t = DirectorTables::build(services, p, local, DEFAULT_TABLE_SIZE).unwrap();
    Director::new(Arc::new(t), ConntrackConfig::default(), 4096)
}

fn tables(services: &[VipService], p: &PoolView, local: NodeId) -> Arc<DirectorTables> {
    Arc::new(DirectorTables::build(services, p, local, DEFAULT_TABLE_SIZE).unwrap())
}

fn syn(client: u32, sport: u16) -> FlowFields {
    FlowFields {
        proto: IPPROTO_TCP,
        src: Ipv4Addr::from(0xc000_0200 + client),
        dst: VIP,
        sport,
        dport: 80,
        tcp_flags: tcp_flags::SYN,
    }
}

fn ack(client: u32, sport: u16) -> FlowFields {
    FlowFields {
        tcp_flags: tcp_flags::ACK,
        ..syn(client, sport)
    }
}

fn node_of(p: Placement, local: NodeId) -> NodeId {
    match p {
        Placement::Local => local,
        Placement::Remote(n, _) => n,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn owner_is_lowest_live_member() {
    assert_eq!(owner(&[3, 5, 9]), Some(3));
    assert_eq!(owner(&[]), None);
    let svcs = [
        service("a", 0, vec![4, 5, 6]),
        VipService {
            vip: Ipv4Addr::new(10, 0, 0, 200),
            ..service("b", 0, vec![])
        },
    ];
    let t = tables(&svcs, &pool(&[6, 2, 5]), 5);
    assert_eq!(t.owner_of(VIP), Some(5));
    assert_eq!(t.owner_of(Ipv4Addr::new(10, 0, 0, 200)), Some(2));
    assert_eq!(t.owned_vips().collect::<Vec<_>>(), vec![VIP]);
    let t = tables(&svcs, &pool(&[1, 2]), 1);
    assert_eq!(t.owner_of(VIP), None, "no member of service a alive");
}

#[test]
fn not_vip_for_other_destinations() {
    let mut d = director(&[service("web", 0, vec![])], &pool(&[1, 2]), 1);
    let mut f = syn(1, 1000);
    f.dport = 81;
    assert_eq!(d.decide(0, &f), Placement::NotVip);
    f.dport = 80;
    f.proto = IPPROTO_UDP;
    assert_eq!(d.decide(0, &f), Placement::NotVip);
    f.proto = IPPROTO_TCP;
    f.dst = Ipv4Addr::new(10, 0, 0, 101);
    assert_eq!(d.decide(0, &f), Placement::NotVip);
    assert_eq!(d.stats().not_vip, 3);
    assert_eq!(d.stats().vip_packets, 0);
}

#[test]
fn new_flows_spread_by_weight_and_are_deterministic() {
    let mut svc = service("web", 0, vec![]);
    svc.weights = vec![NodeWeight { node: 3, weight: 2 }];
    let p = pool(&[1, 2, 3]);
    let mut a = director(std::slice::from_ref(&svc), &p, 1);
    let mut b = director(&[svc], &p, 2);
    let mut count = [0u32; 4];
    for i in 0..8000u32 {
        let f = syn(i, 1024 + (i % 50000) as u16);
        let na = node_of(a.decide(0, &f), 1);
        let nb = node_of(b.decide(0, &f), 2);
        assert_eq!(na, nb, "directors on different nodes agree");
        count[na as usize] += 1;
    }
    // Expected 2000 / 2000 / 4000; allow statistical noise.
    assert!((1800..2200).contains(&count[1]), "{count:?}");
    assert!((1800..2200).contains(&count[2]), "{count:?}");
    assert!((3700..4300).contains(&count[3]), "{count:?}");
    let s = a.stats();
    assert_eq!(s.new_flows, 8000);
    assert_eq!(s.placed_local, u64::from(count[1]));
    assert_eq!(s.placed_remote, u64::from(count[2] + count[3]));
    assert_eq!(
        s.placed_remote_by_node.get(&3).copied(),
        Some(u64::from(count[3]))
    );
    assert_eq!(s.active_flows, 8000);
}

#[test]
fn headroom_scales_weights() {
    let svc = service("web", 0, vec![]);
    let mut p = pool(&[1, 2]);
    p.headroom.insert(1, 300);
    p.headroom.insert(2, 100);
    let t = tables(&[svc], &p, 1);
    let m = &t.services[0].maglev;
    let share1 = m.slots_of(1) as f64 / m.size() as f64;
    assert!((share1 - 0.75).abs() < 0.0075, "{share1}");
}

#[test]
fn pinned_flows_survive_table_changes() {
    let svc = service("web", 0, vec![]);
    let p0 = pool(&[1, 2, 3]);
    let mut d = director(std::slice::from_ref(&svc), &p0, 1);
    let flows: Vec<FlowFields> = (0..2000).map(|i| syn(i, 2000)).collect();
    let first: Vec<NodeId> = flows.iter().map(|f| node_of(d.decide(0, f), 1)).collect();
    // Node 4 joins: Maglev moves about a quarter of the slots to it.
    let t1 = tables(&[svc], &pool(&[1, 2, 3, 4]), 1);
    let moved_in_table = flows
        .iter()
        .filter(|f| {
            let h = flow_hash(f.proto, f.src, f.dst, f.sport, f.dport);
            t1.services[0].maglev.lookup(h) == Some(4)
        })
        .count();
    assert!(moved_in_table > 300, "{moved_in_table}");
    d.install(t1);
    for (f, &n) in flows.iter().zip(&first) {
        assert_eq!(node_of(d.decide(S, &ack(0, 0).with(f)), 1), n);
    }
    // A brand-new flow can now go to node 4.
    let new4 = (0..2000u32)
        .map(|i| node_of(d.decide(S, &syn(i, 3000)), 1))
        .filter(|&n| n == 4)
        .count();
    assert!(new4 > 300);
}

trait With {
    fn with(self, f: &FlowFields) -> FlowFields;
}

impl With for FlowFields {
    /// Same flags as `self`, addresses and ports of `f`.
    fn with(self, f: &FlowFields) -> FlowFields {
        FlowFields {
            tcp_flags: self.tcp_flags,
            ..*f
        }
    }
}

#[test]
fn failed_backend_flows_are_replaced() {
    let svc = service("web", 0, vec![]);
    let mut d = director(std::slice::from_ref(&svc), &pool(&[1, 2, 3]), 1);
    let flows: Vec<FlowFields> = (0..600).map(|i| syn(i, 4000)).collect();
    let first: Vec<NodeId> = flows.iter().map(|f| node_of(d.decide(0, f), 1)).collect();
    // Node 3 fails its health check.
    let mut p = pool(&[1, 2, 3]);
    p.unhealthy.insert((0, 3));
    d.install(tables(&[svc], &p, 1));
    let mut replaced = 0;
    for (f, &n) in flows.iter().zip(&first) {
        let now = node_of(d.decide(S, &ack(0, 0).with(f)), 1);
        assert_ne!(now, 3);
        if n == 3 {
            replaced += 1;
        } else {
            assert_eq!(now, n, "healthy backends keep their flows");
        }
    }
    assert!(replaced > 100);
    assert_eq!(d.stats().replaced_failed, replaced);
}

#[test]
fn failover_new_owner_agrees_on_midflow_packets() {
    let svc = service("web", 0, vec![]);
    // Old owner 1 placed flows; it dies; new owner 2 has only mid-flow packets.
    let mut old = director(std::slice::from_ref(&svc), &pool(&[1, 2, 3, 4, 5]), 1);
    let flows: Vec<FlowFields> = (0..5000).map(|i| syn(i, 5000)).collect();
    let placed: Vec<NodeId> = flows.iter().map(|f| node_of(old.decide(0, f), 1)).collect();

    // Same membership (e.g. owner's workers restarted): exact agreement.
    let mut same = director(std::slice::from_ref(&svc), &pool(&[5, 4, 3, 2, 1]), 2);
    for (f, &n) in flows.iter().zip(&placed) {
        assert_eq!(node_of(same.decide(S, &ack(0, 0).with(f)), 2), n);
    }

    // Owner 1 removed: flows not on node 1 keep their node except Maglev's
    // small disruption (< 1% of the table).
    let mut new = director(&[svc], &pool(&[2, 3, 4, 5]), 2);
    let mut survivors = 0;
    let mut moved = 0;
    for (f, &n) in flows.iter().zip(&placed) {
        let m = node_of(new.decide(S, &ack(0, 0).with(f)), 2);
        assert_ne!(m, 1);
        if n != 1 {
            survivors += 1;
            if m != n {
                moved += 1;
            }
        }
    }
    assert!(survivors > 3500);
    assert!(moved * 100 <= survivors, "{moved} of {survivors} moved");
    assert_eq!(new.stats().midflow_placed, 5000);
    assert_eq!(new.stats().new_flows, 0);
}

#[test]
fn sticky_clients_keep_their_node_across_table_changes() {
    let svc = service("web", 60, vec![]);
    let mut d = director(std::slice::from_ref(&svc), &pool(&[1, 2, 3]), 1);
    let clients: Vec<u32> = (0..300).collect();
    let first: Vec<NodeId> = clients
        .iter()
        .map(|&c| node_of(d.decide(0, &syn(c, 10_000)), 1))
        .collect();
    // Every connection from a client goes to the same node (client-IP hash).
    for (&c, &n) in clients.iter().zip(&first) {
        for sport in [10_001, 10_002, 30_000] {
            assert_eq!(node_of(d.decide(S, &syn(c, sport)), 1), n);
        }
    }
    // Weights change drastically; within the period clients stay put.
    let mut p = pool(&[1, 2, 3, 4]);
    p.headroom.insert(4, 50);
    d.install(tables(&[svc], &p, 1));
    let hits_before = d.stats().sticky_hits;
    for (&c, &n) in clients.iter().zip(&first) {
        assert_eq!(node_of(d.decide(30 * S, &syn(c, 20_000)), 1), n);
    }
    assert_eq!(d.stats().sticky_hits - hits_before, clients.len() as u64);
    // After the period has elapsed (no new flow for 60 s) Maglev decides
    // again: most clients now go to the heavy node 4.
    let to4 = clients
        .iter()
        .map(|&c| node_of(d.decide(100 * S, &syn(c, 40_000)), 1))
        .filter(|&n| n == 4)
        .count();
    assert!(to4 > 200, "{to4}");
}

#[test]
fn non_sticky_service_spreads_one_client() {
    let mut d = director(&[service("web", 0, vec![])], &pool(&[1, 2, 3]), 1);
    let mut seen = [false; 4];
    for sport in 1000..1100 {
        seen[node_of(d.decide(0, &syn(7, sport)), 1) as usize] = true;
    }
    assert_eq!(seen, [false, true, true, true]);
    assert_eq!(d.stats().sticky_hits, 0);
}

#[test]
fn rst_of_unknown_flow_is_not_pinned_fin_shortens() {
    let mut d = director(&[service("web", 0, vec![])], &pool(&[1, 2]), 1);
    let mut f = ack(1, 1);
    f.tcp_flags = tcp_flags::RST;
    d.decide(0, &f);
    assert_eq!(d.stats().active_flows, 0);
    let n = node_of(d.decide(0, &syn(2, 2)), 1);
    let mut fin = ack(2, 2);
    fin.tcp_flags |= tcp_flags::FIN;
    assert_eq!(node_of(d.decide(S, &fin), 1), n);
    // The lone RST counted as an unknown mid-flow packet.
    assert_eq!(d.stats().midflow_placed, 1);
    // Closing lifetime (10 s) has passed: the flow is forgotten and the next
    // packet is an unknown mid-flow packet again.
    d.decide(10 * S, &ack(2, 2));
    assert_eq!(d.stats().midflow_placed, 1, "still pinned before expiry");
    d.decide(21 * S, &ack(2, 2));
    assert_eq!(d.stats().midflow_placed, 2);
}

#[test]
fn degraded_and_empty_services() {
    let svc = service("web", 0, vec![2, 3]);
    let mut p = pool(&[1, 2, 3]);
    p.unhealthy.insert((0, 2));
    p.unhealthy.insert((0, 3));
    let t = tables(std::slice::from_ref(&svc), &p, 1);
    assert!(t.services[0].degraded);
    assert_eq!(t.services[0].maglev.backends(), &[2, 3]);
    // Zero headroom everywhere: static weights are used instead.
    let mut p = pool(&[2, 3]);
    p.headroom.insert(2, 0);
    p.headroom.insert(3, 0);
    let t = tables(std::slice::from_ref(&svc), &p, 1);
    assert!(!t.services[0].degraded);
    assert_eq!(t.services[0].maglev.backends(), &[2, 3]);
    // No member alive at all.
    let mut d = director(&[svc], &pool(&[1]), 1);
    assert_eq!(d.decide(0, &syn(1, 1)), Placement::NoBackend);
    assert_eq!(d.stats().no_backend, 1);
}

#[test]
fn drained_node_keeps_pinned_flows() {
    let svc = service("web", 0, vec![]);
    let mut d = director(std::slice::from_ref(&svc), &pool(&[1, 2]), 1);
    let flows: Vec<FlowFields> = (0..200).map(|i| syn(i, 6000)).collect();
    let first: Vec<NodeId> = flows.iter().map(|f| node_of(d.decide(0, f), 1)).collect();
    let mut p = pool(&[1, 2]);
    p.headroom.insert(2, 0);
    d.install(tables(&[svc], &p, 1));
    for (f, &n) in flows.iter().zip(&first) {
        assert_eq!(node_of(d.decide(S, &ack(0, 0).with(f)), 1), n);
    }
    for i in 0..200 {
        assert_eq!(d.decide(S, &syn(i, 7000)), Placement::Local);
    }
}

#[test]
fn table_cell_publication() {
    let svc = service("web", 0, vec![]);
    let cell = Arc::new(TableCell::new(DirectorTables::empty(1)));
    let mut d = Director::with_cell(Arc::clone(&cell), ConntrackConfig::default(), 64);
    assert!(!d.refresh());
    assert_eq!(d.decide(0, &syn(1, 1)), Placement::NotVip);
    cell.publish(DirectorTables::build(&[svc], &pool(&[1]), 1, DEFAULT_TABLE_SIZE).unwrap());
    assert!(d.refresh());
    assert!(!d.refresh());
    assert_eq!(d.decide(0, &syn(1, 1)), Placement::Local);
    assert_eq!(d.stats().table_swaps, 1);
}

#[test]
fn bounded_conntrack_counts_evictions() {
    let t = tables(&[service("web", 0, vec![])], &pool(&[1, 2]), 1);
    let cfg = ConntrackConfig {
        capacity: 128,
        ..ConntrackConfig::default()
    };
    let mut d = Director::new(t, cfg, 64);
    for i in 0..1000u32 {
        d.decide(u64::from(i), &syn(i, 1));
    }
    let s = d.stats();
    assert_eq!(s.active_flows, 128);
    assert_eq!(s.conntrack_evictions, 1000 - 128);
}

#[test]
fn build_errors() {
    let svc = service("web", 0, vec![]);
    assert!(matches!(
        DirectorTables::build(&[svc], &pool(&[1]), 1, 1000),
        Err(BuildError::Maglev { service: 0, .. })
    ));
}
