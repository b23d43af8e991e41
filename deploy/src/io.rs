//! The thin I/O layer: reads an [`Observed`] from the kernel and carries
//! out [`Step`]s, over netlink (links, addresses, routes, neighbours,
//! rules), ethtool netlink (offloads, channels) and `/proc/sys/net`.

use std::io;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage},
    link::{
        BridgeStpState, InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVeth,
        LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage, LinkXdp, XdpAttached,
    },
    neighbour::NeighbourMessage,
    route::RouteMessage,
    rule::RuleMessage,
    AddressFamily, RouteNetlinkMessage,
};

use crate::{
    ethtool::EthtoolSocket,
    model::{Addr, Link, Mac, Neigh, Observed, Route},
    netlink::Channel,
    plan::{Spec, Step},
    sysctl,
};

/// Route netlink plus ethtool, in the caller's network namespace.
#[derive(Debug)]
pub struct Kernel {
    rt: Channel,
    ethtool: EthtoolSocket,
}

fn link_of(m: &LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        up: m.header.flags.contains(LinkFlags::Up),
        carrier: m.header.flags.contains(LinkFlags::LowerUp),
        ether: m.header.link_layer_type == LinkLayerType::Ether,
        ..Default::default()
    };
    let mut lower_elsewhere = false;
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Address(b) if b.len() == 6 => {
                l.mac = Some(Mac([b[0], b[1], b[2], b[3], b[4], b[5]]))
            }
            LinkAttribute::Mtu(v) => l.mtu = *v,
            LinkAttribute::Controller(v) if *v != 0 => l.master = Some(*v),
            LinkAttribute::Link(v) if *v != 0 => l.lower = Some(*v),
            LinkAttribute::LinkNetNsId(_) => lower_elsewhere = true,
            LinkAttribute::IfAlias(s) => l.alias = Some(s.clone()),
            LinkAttribute::NumRxQueues(n) => l.num_rx_queues = *n,
            LinkAttribute::Xdp(x) => {
                l.xdp = x
                    .iter()
                    .any(|x| matches!(x, LinkXdp::Attached(a) if *a != XdpAttached::None))
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => l.kind = Some(k.to_string()),
                        LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                            for x in p {
                                if let InfoBridgePort::State(s) = x {
                                    l.port_state = Some(*s);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if lower_elsewhere {
        l.lower = None;
    }
    l
}

fn not_found(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV) | Some(libc::EADDRNOTAVAIL) | Some(libc::ESRCH) | Some(libc::ENOENT)
    )
}

fn links_on(rt: &mut Channel) -> io::Result<Vec<Link>> {
    let msgs = rt.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(link_of(l)),
            _ => None,
        })
        .collect())
}

/// This namespace's own IPv4 addresses with the MAC of the interface each
/// is on (the host end's MAC for a host address behind headroomd).
pub fn local_macs() -> io::Result<Vec<(std::net::Ipv4Addr, Mac)>> {
    let mut rt = Channel::open(netlink_sys::protocols::NETLINK_ROUTE)?;
    let links = links_on(&mut rt)?;
    let mut out = Vec::new();
    for m in rt.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))? {
        if let RouteNetlinkMessage::NewAddress(a) = m {
            let a = Addr(a);
            let mac = links
                .iter()
                .find(|l| l.index == a.index())
                .and_then(|l| l.mac);
            if let (Some(std::net::IpAddr::V4(ip)), Some(mac)) = (a.ip(), mac) {
                out.push((ip, mac));
            }
        }
    }
    Ok(out)
}

impl Kernel {
    /// Opens both sockets.
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            rt: Channel::open(netlink_sys::protocols::NETLINK_ROUTE)?,
            ethtool: EthtoolSocket::open()?,
        })
    }

    fn rt(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.rt.request(msg, flags).map(|_| ())
    }

    /// Every interface.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        links_on(&mut self.rt)
    }

    /// Reads what the planner needs for `spec`.
    pub fn observe(&mut self, spec: &Spec) -> io::Result<Observed> {
        let mut obs = Observed {
            links: self.links()?,
            ..Default::default()
        };
        for m in self
            .rt
            .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?
        {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                obs.addrs.push(Addr(a));
            }
        }
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut q = RouteMessage::default();
            q.header.address_family = family;
            for m in self.rt.dump(RouteNetlinkMessage::GetRoute(q))? {
                if let RouteNetlinkMessage::NewRoute(r) = m {
                    obs.routes.push(Route(r));
                }
            }
            let mut q = RuleMessage::default();
            q.header.family = family;
            match self.rt.dump(RouteNetlinkMessage::GetRule(q)) {
                Ok(rules) => obs.rules.extend(rules.into_iter().filter_map(|m| match m {
                    RouteNetlinkMessage::NewRule(r) => Some(r),
                    _ => None,
                })),
                Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {}
                Err(e) => return Err(e),
            }
        }
        for m in self.rt.dump(RouteNetlinkMessage::GetNeighbour(
            NeighbourMessage::default(),
        ))? {
            if let RouteNetlinkMessage::NewNeighbour(n) = m {
                obs.neighs.push(Neigh(n));
            }
        }
        for dev in [&spec.nic, &spec.host] {
            if obs.link(dev).is_some() {
                let f = self.ethtool.features(dev)?;
                obs.features.insert(dev.clone(), f);
            }
        }
        if obs.link(&spec.nic).is_some() {
            obs.nic_rx_queues = self.ethtool.rx_queues(&spec.nic)?;
            let (nic, writable) = sysctl::read(&spec.nic)?;
            obs.nic_sysctls = nic;
            obs.writable_sysctls = writable;
        }
        if obs.link(&spec.bridge).is_some() {
            obs.bridge_sysctls = sysctl::read(&spec.bridge)?.0;
        }
        obs.default_sysctls = sysctl::read("default")?.0;
        obs.ipv6 = sysctl::ipv6();
        Ok(obs)
    }

    fn index(&mut self, dev: &str) -> io::Result<u32> {
        self.links()?
            .into_iter()
            .find(|l| l.name == dev)
            .map(|l| l.index)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface {dev}")))
    }

    fn set_link(
        &mut self,
        dev: &str,
        attrs: Vec<LinkAttribute>,
        up: Option<bool>,
    ) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = self.index(dev)?;
        if let Some(up) = up {
            m.header.change_mask = LinkFlags::Up;
            if up {
                m.header.flags = LinkFlags::Up;
            }
        }
        m.attributes = attrs;
        self.rt(RouteNetlinkMessage::SetLink(m), 0)
    }

    /// Carries out one step.
    pub fn apply(&mut self, step: &Step) -> io::Result<()> {
        match step {
            Step::CreateBridge { name, mtu, record } => {
                let mut m = LinkMessage::default();
                m.attributes = vec![
                    LinkAttribute::IfName(name.clone()),
                    LinkAttribute::Mtu(*mtu),
                    LinkAttribute::LinkInfo(vec![
                        LinkInfo::Kind(InfoKind::Bridge),
                        LinkInfo::Data(InfoData::Bridge(vec![
                            InfoBridge::StpState(BridgeStpState::Disabled),
                            InfoBridge::ForwardDelay(0),
                        ])),
                    ]),
                ];
                self.rt(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)?;
                // Creation ignores IFLA_IFALIAS; a bridge without its record
                // is refused by the next run, so a crash here needs
                // `ip link del` by hand (the message says so).
                self.set_link(name, vec![LinkAttribute::IfAlias(record.alias())], None)
            }
            Step::SetRecord { bridge, record } => {
                self.set_link(bridge, vec![LinkAttribute::IfAlias(record.alias())], None)
            }
            Step::CreateVeth {
                inner,
                host,
                host_mac,
                mtu,
                queues,
            } => {
                let mut peer = LinkMessage::default();
                peer.attributes = vec![
                    LinkAttribute::IfName(host.clone()),
                    LinkAttribute::Address(host_mac.0.to_vec()),
                    LinkAttribute::Mtu(*mtu),
                    LinkAttribute::NumTxQueues(*queues),
                    LinkAttribute::NumRxQueues(*queues),
                ];
                let mut m = LinkMessage::default();
                m.attributes = vec![
                    LinkAttribute::IfName(inner.clone()),
                    LinkAttribute::Mtu(*mtu),
                    LinkAttribute::NumTxQueues(*queues),
                    LinkAttribute::NumRxQueues(*queues),
                    LinkAttribute::LinkInfo(vec![
                        LinkInfo::Kind(InfoKind::Veth),
                        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
                    ]),
                ];
                self.rt(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
            }
            Step::Feature { dev, name, on } => self.ethtool.set_features(dev, &[(name, *on)]),
            Step::Sysctl { dev, key, value } => sysctl::write(dev, key, value),
            Step::Mtu { dev, mtu } => self.set_link(dev, vec![LinkAttribute::Mtu(*mtu)], None),
            Step::MacAddr { dev, mac } => {
                let attrs = vec![LinkAttribute::Address(mac.0.to_vec())];
                match self.set_link(dev, attrs.clone(), None) {
                    // Some drivers change the MAC only while down.
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        self.set_link(dev, Vec::new(), Some(false))?;
                        self.set_link(dev, attrs, None)?;
                        self.set_link(dev, Vec::new(), Some(true))
                    }
                    r => r,
                }
            }
            Step::Up { dev } => self.set_link(dev, Vec::new(), Some(true)),
            Step::Master { dev, master } => {
                let idx = match master {
                    Some(m) => self.index(m)?,
                    None => 0,
                };
                self.set_link(dev, vec![LinkAttribute::Controller(idx)], None)
            }
            Step::AddAddr { dev, addr } => {
                let index = self.index(dev)?;
                let m = address_for(addr, index, dev, true);
                self.rt(
                    RouteNetlinkMessage::NewAddress(m),
                    NLM_F_CREATE | NLM_F_REPLACE,
                )?;
                // Added without duplicate detection; now the address's own
                // flags back (changing flags does not start DAD).
                let exact = address_for(addr, index, dev, false);
                if exact.attributes != address_for(addr, index, dev, true).attributes {
                    self.rt(RouteNetlinkMessage::NewAddress(exact), NLM_F_REPLACE)?;
                }
                Ok(())
            }
            Step::DelAddr { dev, addr } => {
                let mut m = AddressMessage::default();
                m.header.family = addr.0.header.family;
                m.header.prefix_len = addr.prefix();
                m.header.index = self.index(dev)?;
                m.attributes = addr
                    .0
                    .attributes
                    .iter()
                    .filter(|a| {
                        matches!(a, AddressAttribute::Local(_) | AddressAttribute::Address(_))
                    })
                    .cloned()
                    .collect();
                match self.rt(RouteNetlinkMessage::DelAddress(m), 0) {
                    // A secondary goes with its primary.
                    Err(e) if not_found(&e) => Ok(()),
                    r => r,
                }
            }
            Step::Neighbour { dev, neigh } => {
                let mut m = neigh.0.clone();
                m.header.ifindex = self.index(dev)?;
                self.rt(
                    RouteNetlinkMessage::NewNeighbour(m),
                    NLM_F_CREATE | NLM_F_REPLACE,
                )
            }
            Step::MoveRoute {
                from_index,
                to,
                route,
                ..
            } => {
                let to = self.index(to)?;
                let r = route.moved(*from_index, to);
                self.rt(
                    RouteNetlinkMessage::NewRoute(r.0),
                    NLM_F_CREATE | NLM_F_REPLACE,
                )
            }
            Step::Delete { dev } => {
                let mut m = LinkMessage::default();
                m.header.index = match self.index(dev) {
                    Ok(i) => i,
                    Err(_) => return Ok(()),
                };
                match self.rt(RouteNetlinkMessage::DelLink(m), 0) {
                    Err(e) if not_found(&e) => Ok(()),
                    r => r,
                }
            }
        }
    }
}

/// `addr` re-made for interface `index` named `dev`: the kernel's own
/// bookkeeping flags dropped and a label renamed with the interface; with
/// `nodad`, IPv6 without duplicate detection (the address is already in use
/// on this very link; DAD would hold it back for a second).
fn address_for(addr: &Addr, index: u32, dev: &str, nodad: bool) -> AddressMessage {
    let mut m = addr.0.clone();
    m.header.index = index;
    let keep = AddressFlags::Nodad
        | AddressFlags::Homeaddress
        | AddressFlags::Managetempaddr
        | AddressFlags::Noprefixroute
        | AddressFlags::Mcautojoin;
    let mut flags = addr.flags() & keep;
    if nodad && m.header.family == AddressFamily::Inet6 {
        flags |= AddressFlags::Nodad;
    }
    m.header.flags = AddressHeaderFlags::from_bits_truncate(flags.bits() as u8);
    m.attributes
        .retain(|a| !matches!(a, AddressAttribute::Flags(_)));
    m.attributes.push(AddressAttribute::Flags(flags));
    for a in &mut m.attributes {
        if let AddressAttribute::Label(l) = a {
            let suffix = l.split_once(':').map(|(_, s)| s.to_string());
            *l = match suffix {
                Some(s) if dev.len() + 1 + s.len() < 16 => format!("{dev}:{s}"),
                _ => dev.to_string(),
            };
        }
    }
    m
}
