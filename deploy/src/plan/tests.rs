//! The planner against a small model of the kernel: each step is applied to
//! an [`Observed`] the way the kernel would, so whole runs, interrupted runs
//! and refusals are tested without sockets.

use std::net::IpAddr;

use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressMessage, CacheInfo},
    link::BridgePortState,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol},
    rule::{RuleAttribute, RuleMessage},
    AddressFamily,
};

use super::*;
use crate::{
    ethtool::Features,
    model::{Link, Neigh},
};

const MAC: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

fn spec() -> Spec {
    Spec {
        nic: "eth0".into(),
        inner: "inner".into(),
        host: "hr-host".into(),
        bridge: "hr-bridge".into(),
        mtu: None,
        inner_queues: None,
    }
}

fn addr(index: u32, ip: &str, prefix: u8) -> Addr {
    let ip: IpAddr = ip.parse().unwrap();
    let mut m = AddressMessage::default();
    m.header.family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.prefix_len = prefix;
    m.header.index = index;
    m.attributes = vec![AddressAttribute::Address(ip), AddressAttribute::Local(ip)];
    Addr(m)
}

fn route(
    index: u32,
    dst: Option<(&str, u8)>,
    via: &str,
    table: u32,
    proto: RouteProtocol,
) -> Route {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.protocol = proto;
    m.header.table = if table < 256 { table as u8 } else { 252 };
    if let Some((d, p)) = dst {
        m.header.destination_prefix_length = p;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                d.parse().unwrap(),
            )));
    }
    if !via.is_empty() {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(
                via.parse().unwrap(),
            )));
    }
    m.attributes.push(RouteAttribute::Table(table));
    m.attributes.push(RouteAttribute::Oif(index));
    Route(m)
}

fn neigh(index: u32, ip: &str, state: NeighbourState) -> Neigh {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = index;
    m.header.state = state;
    m.attributes = vec![
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip.parse().unwrap())),
        NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 9]),
    ];
    Neigh(m)
}

/// A server: eth0 (index 2) with two IPv4 addresses (one secondary), a
/// global and a link-local IPv6 address, a default route, a route in table
/// 100, a learned, a static and a failed neighbour, LRO on.
fn server() -> Observed {
    let mut o = Observed {
        links: vec![
            Link {
                index: 1,
                name: "lo".into(),
                up: true,
                ..Default::default()
            },
            Link {
                index: 2,
                name: "eth0".into(),
                mac: Some(MAC),
                mtu: 1500,
                up: true,
                carrier: true,
                ether: true,
                num_rx_queues: 8,
                ..Default::default()
            },
        ],
        addrs: vec![
            addr(2, "192.0.2.10", 24),
            addr(2, "192.0.2.11", 24),
            addr(2, "2001:db8::10", 64),
            addr(2, "fe80::5054:ff:fe12:3456", 64),
        ],
        routes: vec![
            route(2, None, "192.0.2.1", 254, RouteProtocol::Static),
            route(
                2,
                Some(("198.51.100.0", 24)),
                "192.0.2.1",
                100,
                RouteProtocol::Boot,
            ),
            route(2, Some(("192.0.2.0", 24)), "", 254, RouteProtocol::Kernel),
        ],
        neighs: vec![
            neigh(2, "192.0.2.1", NeighbourState::Reachable),
            neigh(2, "192.0.2.99", NeighbourState::Permanent),
            neigh(2, "192.0.2.50", NeighbourState::Failed),
        ],
        nic_rx_queues: Some(4),
        ipv6: true,
        ..Default::default()
    };
    o.addrs[1]
        .0
        .attributes
        .push(AddressAttribute::Flags(AddressFlags::Secondary));
    o.features.insert(
        "eth0".into(),
        Features {
            active: ["rx-lro".to_string(), "rx-gro".to_string()].into(),
            changeable: ["rx-lro".to_string(), "rx-gro".to_string()].into(),
        },
    );
    for (k, nic, default) in [
        ("ipv4/rp_filter", "1", "0"),
        ("ipv6/disable_ipv6", "0", "0"),
        ("ipv6/mtu", "1500", "1280"),
        ("ipv4/arp_ignore", "0", "0"),
    ] {
        o.nic_sysctls.insert(k.into(), nic.into());
        o.default_sysctls.insert(k.into(), default.into());
        o.writable_sysctls.insert(k.into());
    }
    o
}

fn link_mut<'a>(o: &'a mut Observed, name: &str) -> &'a mut Link {
    o.links
        .iter_mut()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

/// A small model of the kernel: what each step does to the state.
fn apply(o: &mut Observed, step: &Step) {
    let idx = |o: &Observed, n: &str| o.link(n).unwrap_or_else(|| panic!("no {n}")).index;
    let next = |o: &Observed| o.links.iter().map(|l| l.index).max().unwrap() + 1;
    match step {
        Step::CreateBridge { name, mtu, record } => {
            assert!(o.link(name).is_none());
            let index = next(o);
            o.links.push(Link {
                index,
                name: name.clone(),
                kind: Some("bridge".into()),
                mac: Some(Mac([2, 0, 0, 0, 0, 1])),
                mtu: *mtu,
                alias: Some(record.alias()),
                ether: true,
                ..Default::default()
            });
            o.bridge_sysctls = o.default_sysctls.clone();
        }
        Step::SetRecord { bridge, record } => link_mut(o, bridge).alias = Some(record.alias()),
        Step::CreateVeth {
            inner,
            host,
            host_mac,
            mtu,
            ..
        } => {
            let a = next(o);
            for (index, name, mac, peer) in [
                (a, inner, Mac([2, 0, 0, 0, 0, 2]), a + 1),
                (a + 1, host, *host_mac, a),
            ] {
                o.links.push(Link {
                    index,
                    name: name.clone(),
                    kind: Some("veth".into()),
                    mac: Some(mac),
                    mtu: *mtu,
                    lower: Some(peer),
                    ether: true,
                    ..Default::default()
                });
            }
            o.features.insert(
                host.clone(),
                Features {
                    active: Default::default(),
                    changeable: ["rx-gro".to_string()].into(),
                },
            );
        }
        Step::Feature { dev, name, on } => {
            let f = o.features.entry(dev.clone()).or_default();
            assert!(f.can_change(name), "{dev}: {name} is fixed");
            if *on {
                f.active.insert(name.clone());
            } else {
                f.active.remove(name);
            }
        }
        Step::Sysctl { dev, key, value } => {
            if dev == "hr-bridge" {
                assert!(o.link(dev).is_some(), "no {dev}");
                o.bridge_sysctls.insert(key.clone(), value.clone());
            }
            if dev == "eth0" {
                o.nic_sysctls.insert(key.clone(), value.clone());
                if key == "ipv6/disable_ipv6" && value == "1" {
                    // The kernel drops the interface's IPv6 addresses.
                    let i = idx(o, dev);
                    o.addrs
                        .retain(|a| !(a.index() == i && a.ip().is_some_and(|ip| ip.is_ipv6())));
                }
            }
        }
        Step::Mtu { dev, mtu } => link_mut(o, dev).mtu = *mtu,
        Step::MacAddr { dev, mac } => link_mut(o, dev).mac = Some(*mac),
        Step::Up { dev } => {
            let l = link_mut(o, dev);
            l.up = true;
            l.carrier = true;
        }
        Step::Master { dev, master } => {
            let m = master.as_ref().map(|m| idx(o, m));
            let l = link_mut(o, dev);
            l.master = m;
            l.port_state = m.map(|_| BridgePortState::Forwarding);
        }
        Step::AddAddr { dev, addr } => {
            let i = idx(o, dev);
            let v6_off = dev == "eth0"
                && o.nic_sysctls.get("ipv6/disable_ipv6").map(String::as_str) == Some("1");
            assert!(
                !(v6_off && addr.ip().is_some_and(|ip| ip.is_ipv6())),
                "EACCES: IPv6 address {addr} added to {dev} while its IPv6 is off"
            );
            let mut a = addr.clone();
            a.0.header.index = i;
            o.addrs.retain(|b| !(b.index() == i && b.ip() == a.ip()));
            o.addrs.push(a);
            // The kernel's prefix route for the new address.
            if let Some(IpAddr::V4(ip)) = addr.ip() {
                let net = u32::from(ip) & (u32::MAX << (32 - addr.prefix()));
                let net = std::net::Ipv4Addr::from(net).to_string();
                let r = route(
                    i,
                    Some((&net, addr.prefix())),
                    "",
                    254,
                    RouteProtocol::Kernel,
                );
                if !o.routes.contains(&r) {
                    o.routes.push(r);
                }
            }
        }
        Step::DelAddr { dev, addr } => {
            let i = idx(o, dev);
            o.addrs.retain(|b| !(b.index() == i && b.ip() == addr.ip()));
            if !o.addrs.iter().any(|b| b.index() == i && !b.link_local()) {
                o.routes.retain(|r| !(r.uses(i) && r.kernel_made()));
            }
        }
        Step::Neighbour { dev, neigh } => {
            let i = idx(o, dev);
            let mut n = neigh.clone();
            n.0.header.ifindex = i;
            o.neighs.retain(|m| !(m.index() == i && m.ip() == n.ip()));
            o.neighs.push(n);
        }
        Step::MoveRoute {
            from_index,
            to,
            route,
            ..
        } => {
            let to = idx(o, to);
            let pos = o
                .routes
                .iter()
                .position(|r| r == route)
                .expect("the route to replace exists");
            o.routes[pos] = route.moved(*from_index, to);
        }
        Step::Delete { dev } => {
            let l = o.link(dev).unwrap().clone();
            let mut gone = vec![l.index];
            if l.kind.as_deref() == Some("veth") {
                gone.extend(l.lower);
            }
            for l in o.links.iter_mut() {
                if l.master.is_some_and(|m| gone.contains(&m)) {
                    l.master = None;
                    l.port_state = None;
                }
            }
            let names: Vec<String> = o
                .links
                .iter()
                .filter(|l| gone.contains(&l.index))
                .map(|l| l.name.clone())
                .collect();
            o.links.retain(|l| !gone.contains(&l.index));
            o.addrs.retain(|a| !gone.contains(&a.index()));
            o.routes
                .retain(|r| !r.oifs().iter().any(|i| gone.contains(i)));
            o.neighs.retain(|n| !gone.contains(&n.index()));
            o.features.retain(|n, _| !names.contains(n));
            if names.iter().any(|n| n == "hr-bridge") {
                o.bridge_sysctls.clear();
            }
        }
    }
}

fn run(o: &mut Observed, steps: &[Step]) {
    for s in steps {
        apply(o, s);
    }
}

/// What the host sees of itself on `dev`: addresses, routes and static
/// neighbours.
fn host_view(o: &Observed, dev: &str) -> Vec<String> {
    let i = o.link(dev).unwrap().index;
    let mut v: Vec<String> = o
        .movable_addrs(i)
        .iter()
        .map(|a| format!("addr {a}"))
        .chain(o.movable_routes(i).iter().map(|r| format!("route {r}")))
        .chain(
            o.neighs
                .iter()
                .filter(|n| n.index() == i && n.0.header.state == NeighbourState::Permanent)
                .map(|n| format!("neigh {n}")),
        )
        .collect();
    v.sort();
    v
}

/// The NIC's own attributes: MAC, MTU, master, offloads, IPv6 setting.
type NicView = (Option<Mac>, u32, Option<u32>, Features, Option<String>);

fn nic_view(o: &Observed) -> NicView {
    let n = o.link("eth0").unwrap();
    (
        n.mac,
        n.mtu,
        n.master,
        o.features["eth0"].clone(),
        o.nic_sysctls.get("ipv6/disable_ipv6").cloned(),
    )
}

fn failed_checks(o: &Observed, spec: &Spec) -> Vec<String> {
    check_attached(o, spec)
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| c.to_string())
        .collect()
}

#[test]
fn attach_moves_the_host_and_verifies_then_has_nothing_left_to_do() {
    let before = server();
    let mut o = before.clone();
    let plan = plan_attach(&o, &spec()).unwrap();
    run(&mut o, &plan.steps);
    assert_eq!(failed_checks(&o, &spec()), Vec::<String>::new(), "{plan}");
    assert_eq!(host_view(&o, "hr-host"), host_view(&before, "eth0"));
    assert_eq!(plan_attach(&o, &spec()).unwrap(), Plan::default());
    // Not even a link-local address is left on the NIC (its IPv6 is off;
    // the host end has the NIC's MAC, so it makes the same one).
    let nic = o.link("eth0").unwrap();
    assert_eq!(o.addrs.iter().filter(|a| a.index() == nic.index).count(), 0);
    assert_eq!(o.link("hr-host").unwrap().mac, Some(MAC));
    assert_eq!(nic.mac, Some(MAC.nic_stand_in()));
    assert!(plan
        .steps
        .iter()
        .any(|s| matches!(s, Step::CreateVeth { queues: 4, .. })));
}

#[test]
fn attach_orders_the_steps_for_the_shortest_gap() {
    let o = server();
    let plan = plan_attach(&o, &spec()).unwrap();
    let pos = |f: &dyn Fn(&Step) -> bool| plan.steps.iter().position(f).unwrap();
    let bridge = pos(&|s| matches!(s, Step::CreateBridge { .. }));
    let lro = pos(&|s| matches!(s, Step::Feature { name, on: false, .. } if name == "rx-lro"));
    let inner_up = pos(&|s| matches!(s, Step::Up { dev } if dev == "inner"));
    let nic_joins = pos(&|s| matches!(s, Step::Master { dev, .. } if dev == "eth0"));
    let first_add = pos(&|s| matches!(s, Step::AddAddr { .. }));
    let first_route = pos(&|s| matches!(s, Step::MoveRoute { .. }));
    let first_del = pos(&|s| matches!(s, Step::DelAddr { .. }));
    let stand_in = pos(&|s| matches!(s, Step::MacAddr { dev, .. } if dev == "eth0"));
    assert_eq!(bridge, 0, "the record is written before anything changes");
    assert!(lro < nic_joins && inner_up < nic_joins);
    assert!(nic_joins < first_add && first_add < first_route && first_route < first_del);
    assert!(first_del < stand_in);
    // The gap (NIC joined .. stand-in MAC) holds only the host's own moves.
    assert!(plan.steps[nic_joins + 1..stand_in].iter().all(|s| matches!(
        s,
        Step::AddAddr { .. }
            | Step::DelAddr { .. }
            | Step::Neighbour { .. }
            | Step::MoveRoute { .. }
    )));
    // Secondaries go before their primary; the failed neighbour stays
    // behind; kernel routes are not copied; rp_filter is carried over, the
    // derived IPv6 MTU is not.
    let dels: Vec<String> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::DelAddr { addr, .. } => Some(addr.to_string()),
            _ => None,
        })
        .collect();
    let at = |a: &str| dels.iter().position(|d| d == a).unwrap();
    assert!(at("192.0.2.11/24") < at("192.0.2.10/24"));
    let count = |f: &dyn Fn(&Step) -> bool| plan.steps.iter().filter(|s| f(s)).count();
    assert_eq!(count(&|s| matches!(s, Step::Neighbour { .. })), 2);
    assert_eq!(count(&|s| matches!(s, Step::MoveRoute { .. })), 2);
    let sysctls: Vec<&str> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Sysctl { dev, key, .. } if dev == "hr-host" => Some(key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(sysctls, ["ipv4/rp_filter"]);
    // The bridge answers no ARP from before the NIC joins it.
    let bridge_arp = pos(&|s| {
        matches!(s, Step::Sysctl { dev, key, value }
            if dev == "hr-bridge" && key == "ipv4/arp_ignore" && value == "8")
    });
    assert!(bridge_arp < nic_joins);
}

#[test]
fn a_bridge_answering_arp_is_found_and_fixed() {
    let mut o = server();
    let plan = plan_attach(&o, &spec()).unwrap();
    run(&mut o, &plan.steps);
    // An attach that left the bridge answering ARP (as an earlier release
    // did): the check says so, and attaching again fixes only that.
    o.bridge_sysctls
        .insert("ipv4/arp_ignore".into(), "0".into());
    assert_eq!(
        failed_checks(&o, &spec()),
        ["[FAIL] hr-bridge answers no ARP (ipv4/arp_ignore 8)"]
    );
    let fix = plan_attach(&o, &spec()).unwrap();
    assert_eq!(
        fix.steps,
        [Step::Sysctl {
            dev: "hr-bridge".into(),
            key: "ipv4/arp_ignore".into(),
            value: "8".into(),
        }]
    );
    run(&mut o, &fix.steps);
    assert_eq!(failed_checks(&o, &spec()), Vec::<String>::new());
}

#[test]
fn detach_restores_exactly_what_was_there() {
    let before = server();
    let mut o = before.clone();
    let p = plan_attach(&o, &spec()).unwrap().steps;
    run(&mut o, &p);
    let plan = plan_detach(&o, &spec()).unwrap();
    run(&mut o, &plan.steps);
    assert!(crate::check_detached(&o, &spec()).iter().all(|c| c.ok));
    assert_eq!(host_view(&o, "eth0"), host_view(&before, "eth0"));
    assert_eq!(nic_view(&o), nic_view(&before));
    assert_eq!(plan_detach(&o, &spec()).unwrap(), Plan::default());
    // The record goes last: an interrupted detach can always resume.
    assert!(matches!(plan.steps.last(), Some(Step::Delete { dev }) if dev == "hr-bridge"));
}

#[test]
fn an_interrupted_attach_or_detach_resumes_from_any_step() {
    let before = server();
    let full = plan_attach(&before, &spec()).unwrap();
    let mut attached = before.clone();
    run(&mut attached, &full.steps);
    for k in 0..full.steps.len() {
        // Attach stops after k steps; attaching again completes it.
        let mut o = before.clone();
        run(&mut o, &full.steps[..k]);
        let rest = plan_attach(&o, &spec()).unwrap_or_else(|e| panic!("after {k} steps: {e}"));
        run(&mut o, &rest.steps);
        assert_eq!(
            failed_checks(&o, &spec()),
            Vec::<String>::new(),
            "after {k}:\n{rest}"
        );
        assert_eq!(
            host_view(&o, "hr-host"),
            host_view(&attached, "hr-host"),
            "after {k}"
        );
        // Or detaching instead goes back to the start.
        let mut o = before.clone();
        run(&mut o, &full.steps[..k]);
        let back = plan_detach(&o, &spec()).unwrap_or_else(|e| panic!("detach after {k}: {e}"));
        run(&mut o, &back.steps);
        assert_eq!(
            host_view(&o, "eth0"),
            host_view(&before, "eth0"),
            "detach after {k}"
        );
        assert_eq!(nic_view(&o), nic_view(&before), "detach after {k}");
    }
    let full = plan_detach(&attached, &spec()).unwrap();
    for k in 0..full.steps.len() {
        let mut o = attached.clone();
        run(&mut o, &full.steps[..k]);
        let rest = plan_detach(&o, &spec()).unwrap_or_else(|e| panic!("after {k}: {e}"));
        run(&mut o, &rest.steps);
        assert_eq!(
            host_view(&o, "eth0"),
            host_view(&before, "eth0"),
            "resumed after {k}"
        );
        assert_eq!(nic_view(&o), nic_view(&before), "resumed after {k}");
    }
}

#[test]
fn a_configured_mtu_is_set_everywhere_and_restored() {
    let before = server();
    let mut o = before.clone();
    let spec = Spec {
        mtu: Some(9000),
        ..spec()
    };
    let p = plan_attach(&o, &spec).unwrap().steps;
    run(&mut o, &p);
    assert_eq!(failed_checks(&o, &spec), Vec::<String>::new());
    for dev in ["eth0", "inner", "hr-host", "hr-bridge"] {
        assert_eq!(o.link(dev).unwrap().mtu, 9000, "{dev}");
    }
    let p = plan_detach(&o, &spec).unwrap().steps;
    run(&mut o, &p);
    assert_eq!(o.link("eth0").unwrap().mtu, 1500);
}

fn refused(o: &Observed, spec: &Spec, want: &str) {
    match plan_attach(o, spec) {
        Err(Refusal(msg)) => assert!(msg.contains(want), "{msg:?} lacks {want:?}"),
        Ok(p) => panic!("not refused ({want}):\n{p}"),
    }
}

#[test]
fn states_it_does_not_understand_are_refused_with_the_fix() {
    let s = spec();
    let other_nic = Spec {
        nic: "eth9".into(),
        ..spec()
    };
    refused(&server(), &other_nic, "no interface eth9");
    let mut o = server();
    link_mut(&mut o, "eth0").up = false;
    refused(&o, &s, "ip link set eth0 up");
    let mut o = server();
    link_mut(&mut o, "eth0").kind = Some("bond".into());
    refused(&o, &s, "physical NIC");
    let mut o = server();
    o.links.push(Link {
        index: 9,
        name: "br9".into(),
        kind: Some("bridge".into()),
        ..Default::default()
    });
    link_mut(&mut o, "eth0").master = Some(9);
    refused(&o, &s, "port of br9");
    let mut o = server();
    link_mut(&mut o, "eth0").xdp = true;
    refused(&o, &s, "xdp off");
    let mut o = server();
    o.links.push(Link {
        index: 9,
        name: "eth0.100".into(),
        kind: Some("vlan".into()),
        lower: Some(2),
        ..Default::default()
    });
    refused(&o, &s, "eth0.100 is stacked on eth0");
    let mut o = server();
    let mut lease = CacheInfo::default();
    lease.ifa_preferred = 3000;
    lease.ifa_valid = 3600;
    o.addrs[0]
        .0
        .attributes
        .push(AddressAttribute::CacheInfo(lease));
    refused(&o, &s, "DHCP");
    let mut o = server();
    let mut rule = RuleMessage::default();
    rule.attributes.push(RuleAttribute::Iifname("eth0".into()));
    o.rules.push(rule);
    refused(&o, &s, "ip rule");
    let mut o = server();
    o.links.push(Link {
        index: 9,
        name: "hr-bridge".into(),
        kind: Some("bridge".into()),
        ..Default::default()
    });
    refused(&o, &s, "not made by headroom");
    let mut o = server();
    o.links.push(Link {
        index: 9,
        name: "hr-host".into(),
        ..Default::default()
    });
    refused(&o, &s, "hr-host exists");
    let mut o = server();
    o.features
        .get_mut("eth0")
        .unwrap()
        .changeable
        .remove("rx-lro");
    refused(&o, &s, "does not let it be turned off");
    let mut o = server();
    o.routes[0].0.attributes.push(RouteAttribute::NhId(3));
    refused(&o, &s, "nexthop object");
}

#[test]
fn detach_refuses_while_headroomd_runs_and_does_nothing_when_not_attached() {
    let mut o = server();
    assert_eq!(plan_detach(&o, &spec()).unwrap(), Plan::default());
    let p = plan_attach(&o, &spec()).unwrap().steps;
    run(&mut o, &p);
    link_mut(&mut o, "inner").xdp = true;
    let e = plan_detach(&o, &spec()).unwrap_err();
    assert!(e.0.contains("headroomd is running"), "{e}");
}

#[test]
fn the_record_round_trips_through_the_alias_and_fits() {
    let r = Record {
        nic: "enp175s0f1np1".into(),
        mac: MAC.to_string(),
        mtu: 9000,
        off: vec!["rx-lro".into(), "rx-gro-hw".into()],
        v6: Some("0".into()),
    };
    assert!(r.alias().len() <= 255, "{}", r.alias());
    assert_eq!(Record::parse(&r.alias()), Some(r));
    assert_eq!(Record::parse("some operator's alias"), None);
    assert_eq!(Record::parse("headroom-deploy {not json"), None);
    assert_ne!(MAC.nic_stand_in(), MAC);
    assert_eq!(MAC.nic_stand_in().0[0] & 1, 0, "unicast");
}
