//! What the deployment looks at: the links, addresses, routes, neighbours,
//! rules, offloads and per-interface settings of one network namespace, as
//! plain data. Addresses, routes and neighbours keep their netlink messages
//! whole, so a move re-creates every attribute (flags, metrics, lifetimes)
//! with only the interface changed.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
};

use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressMessage},
    link::BridgePortState,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol},
    rule::{RuleAttribute, RuleMessage},
    AddressFamily,
};

use crate::ethtool::Features;

/// A MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut m = [0u8; 6];
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!(
                "{s:?} is not a MAC address (six hex bytes with ':')"
            ));
        }
        for (d, p) in m.iter_mut().zip(parts) {
            *d = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?}: bad byte {p:?}"))?;
        }
        Ok(Mac(m))
    }
}

impl Mac {
    /// The address the NIC takes while its own MAC belongs to the host
    /// interface: locally administered, unicast, and derived from the
    /// original so that attaching twice gives the same one.
    pub fn nic_stand_in(self) -> Mac {
        let mut m = self.0;
        m[0] = (m[0] | 0x02) & !0x01;
        m[1] ^= 0x48;
        Mac(m)
    }
}

/// One interface.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// `IFLA_INFO_KIND` ("veth", "bridge", "vlan", ...); None for a
    /// physical NIC.
    pub kind: Option<String>,
    /// Hardware address (Ethernet interfaces).
    pub mac: Option<Mac>,
    /// MTU, bytes.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// Carrier (IFF_LOWER_UP).
    pub carrier: bool,
    /// Index of the master (bridge, bond, VRF) it is a port of.
    pub master: Option<u32>,
    /// `IFLA_LINK` of a device stacked on another one in this namespace
    /// (VLAN, macvlan, a veth whose peer is here).
    pub lower: Option<u32>,
    /// `IFLA_IFALIAS`.
    pub alias: Option<String>,
    /// An XDP program is attached.
    pub xdp: bool,
    /// STP state when it is a bridge port.
    pub port_state: Option<BridgePortState>,
    /// Ethernet link layer (ARPHRD_ETHER).
    pub ether: bool,
    /// Receive queues allocated (`IFLA_NUM_RX_QUEUES`).
    pub num_rx_queues: u32,
}

/// An address as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr(pub AddressMessage);

impl Addr {
    /// Interface index.
    pub fn index(&self) -> u32 {
        self.0.header.index
    }
    /// The address (`IFA_LOCAL`, else `IFA_ADDRESS`).
    pub fn ip(&self) -> Option<IpAddr> {
        let mut addr = None;
        for a in &self.0.attributes {
            match a {
                AddressAttribute::Local(ip) => return Some(*ip),
                AddressAttribute::Address(ip) => addr = Some(*ip),
                _ => {}
            }
        }
        addr
    }
    /// Prefix length.
    pub fn prefix(&self) -> u8 {
        self.0.header.prefix_len
    }
    /// Full flags (`IFA_FLAGS`, else the header's 8 bits).
    pub fn flags(&self) -> AddressFlags {
        self.0
            .attributes
            .iter()
            .find_map(|a| match a {
                AddressAttribute::Flags(f) => Some(*f),
                _ => None,
            })
            .unwrap_or_else(|| AddressFlags::from_bits_truncate(self.0.header.flags.bits() as u32))
    }
    /// An IPv6 link-local address (each interface makes its own).
    pub fn link_local(&self) -> bool {
        matches!(self.ip(), Some(IpAddr::V6(a)) if (a.segments()[0] & 0xffc0) == 0xfe80)
    }
    /// Seconds of validity left, None when permanent.
    pub fn valid_lifetime(&self) -> Option<u32> {
        self.0.attributes.iter().find_map(|a| match a {
            AddressAttribute::CacheInfo(c) if c.ifa_valid != u32::MAX => Some(c.ifa_valid),
            _ => None,
        })
    }
    /// A secondary IPv4 address (deleted with its primary).
    pub fn secondary(&self) -> bool {
        self.flags().contains(AddressFlags::Secondary)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip() {
            Some(ip) => write!(f, "{ip}/{}", self.prefix()),
            None => write!(f, "(address without IP)/{}", self.prefix()),
        }
    }
}

/// A route as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route(pub RouteMessage);

/// The local table (local and broadcast addresses; the kernel owns it).
pub const TABLE_LOCAL: u32 = 255;

impl Route {
    /// Routing table id.
    pub fn table(&self) -> u32 {
        self.0
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(self.0.header.table as u32)
    }
    /// Output interfaces (the route's own and those of its nexthops).
    pub fn oifs(&self) -> Vec<u32> {
        let mut v = Vec::new();
        for a in &self.0.attributes {
            match a {
                RouteAttribute::Oif(i) => v.push(*i),
                RouteAttribute::MultiPath(hops) => v.extend(hops.iter().map(|h| h.interface_index)),
                _ => {}
            }
        }
        v
    }
    /// Whether the route goes out of interface `index`.
    pub fn uses(&self, index: u32) -> bool {
        self.oifs().contains(&index)
    }
    /// Whether the kernel made it for an address (a prefix or link-local
    /// route): it comes back by itself when the address moves.
    pub fn kernel_made(&self) -> bool {
        self.0.header.protocol == RouteProtocol::Kernel || self.table() == TABLE_LOCAL
    }
    /// Uses a nexthop object (`ip nexthop`), which names its own device.
    pub fn nexthop_object(&self) -> bool {
        self.0
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::NhId(_)))
    }
    /// The same route out of `to` wherever it went out of `from`.
    pub fn moved(&self, from: u32, to: u32) -> Route {
        let mut m = self.0.clone();
        for a in &mut m.attributes {
            match a {
                RouteAttribute::Oif(i) if *i == from => *i = to,
                RouteAttribute::MultiPath(hops) => {
                    for h in hops.iter_mut().filter(|h| h.interface_index == from) {
                        h.interface_index = to;
                    }
                }
                _ => {}
            }
        }
        // Kernel-filled attributes a new route must not carry.
        m.attributes
            .retain(|a| !matches!(a, RouteAttribute::CacheInfo(_)));
        Route(m)
    }
}

fn route_addr(a: &RouteAddress) -> String {
    match a {
        RouteAddress::Inet(ip) => ip.to_string(),
        RouteAddress::Inet6(ip) => ip.to_string(),
        other => format!("{other:?}"),
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.0.header;
        let mut dst = None;
        let mut parts = Vec::new();
        for a in &self.0.attributes {
            match a {
                RouteAttribute::Destination(d) => dst = Some(route_addr(d)),
                RouteAttribute::Gateway(g) => parts.push(format!("via {}", route_addr(g))),
                RouteAttribute::PrefSource(s) => parts.push(format!("src {}", route_addr(s))),
                RouteAttribute::Priority(p) => parts.push(format!("metric {p}")),
                RouteAttribute::MultiPath(hops) => parts.push(format!("{} nexthops", hops.len())),
                _ => {}
            }
        }
        match dst {
            Some(d) => write!(f, "{d}/{}", h.destination_prefix_length)?,
            None => write!(f, "default")?,
        }
        for p in parts {
            write!(f, " {p}")?;
        }
        if h.address_family == AddressFamily::Inet6 {
            write!(f, " (IPv6)")?;
        }
        match self.table() {
            254 => Ok(()),
            t => write!(f, " table {t}"),
        }
    }
}

/// A neighbour (ARP/NDP) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neigh(pub NeighbourMessage);

impl Neigh {
    /// Interface index.
    pub fn index(&self) -> u32 {
        self.0.header.ifindex
    }
    /// The neighbour's IP address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.0.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
            _ => None,
        })
    }
    /// Its link-layer address.
    pub fn lladdr(&self) -> Option<&[u8]> {
        self.0.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(l) => Some(l.as_slice()),
            _ => None,
        })
    }
    /// Whether the entry is worth carrying over: it knows an address and
    /// is not being resolved or failed. A static entry stays static; a
    /// learned one arrives stale, so the kernel re-confirms it by unicast
    /// before trusting it again instead of asking by broadcast.
    pub fn carried(&self) -> Option<Neigh> {
        let st = self.0.header.state;
        if self.ip().is_none() || self.lladdr().is_none() {
            return None;
        }
        // NOARP entries (multicast, broadcast) are the kernel's own.
        let state = match st {
            NeighbourState::Permanent => st,
            NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe => NeighbourState::Stale,
            _ => return None,
        };
        let mut m = self.0.clone();
        m.header.state = state;
        m.attributes.retain(|a| {
            matches!(
                a,
                NeighbourAttribute::Destination(_) | NeighbourAttribute::LinkLayerAddress(_)
            )
        });
        Some(Neigh(m))
    }
}

impl fmt::Display for Neigh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.ip().map(|i| i.to_string()).unwrap_or_default();
        let ll = self
            .lladdr()
            .filter(|l| l.len() == 6)
            .map(|l| Mac([l[0], l[1], l[2], l[3], l[4], l[5]]).to_string())
            .unwrap_or_default();
        write!(f, "{ip} lladdr {ll} ({:?})", self.0.header.state)
    }
}

/// Interface names a policy-routing rule matches on.
pub fn rule_interfaces(r: &RuleMessage) -> Vec<String> {
    r.attributes
        .iter()
        .filter_map(|a| match a {
            RuleAttribute::Iifname(n) | RuleAttribute::Oifname(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

/// Per-interface IP settings (`/proc/sys/net/ipv{4,6}/conf/DEV/*`), keyed
/// `ipv4/rp_filter`, `ipv6/accept_ra`, ...
pub type Sysctls = BTreeMap<String, String>;

/// Everything the planner looks at, read from one network namespace.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Every interface.
    pub links: Vec<Link>,
    /// Every address.
    pub addrs: Vec<Addr>,
    /// Every route of every table, IPv4 and IPv6.
    pub routes: Vec<Route>,
    /// Every neighbour entry.
    pub neighs: Vec<Neigh>,
    /// Policy-routing rules.
    pub rules: Vec<RuleMessage>,
    /// Offloads of the NIC and the host interface (when they exist).
    pub features: BTreeMap<String, Features>,
    /// Receive queues the NIC's driver reports in use.
    pub nic_rx_queues: Option<u32>,
    /// IPv6 is available in the namespace.
    pub ipv6: bool,
    /// The NIC's per-interface settings.
    pub nic_sysctls: Sysctls,
    /// The bridge's per-interface settings (when it exists).
    pub bridge_sysctls: Sysctls,
    /// The defaults a new interface gets (`conf/default`).
    pub default_sysctls: Sysctls,
    /// Keys of the settings that can be written.
    pub writable_sysctls: BTreeSet<String>,
}

impl Observed {
    /// The interface named `name`.
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }
    /// The interface with index `index`.
    pub fn by_index(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }
    /// Addresses of interface `index` that move with the host stack (every
    /// IPv4 address; IPv6 ones except link-local), primaries first.
    pub fn movable_addrs(&self, index: u32) -> Vec<&Addr> {
        let mut v: Vec<&Addr> = self
            .addrs
            .iter()
            .filter(|a| a.index() == index && !a.link_local() && a.ip().is_some())
            .collect();
        v.sort_by_key(|a| a.secondary());
        v
    }
    /// Routes out of `index` that are not the kernel's own.
    pub fn movable_routes(&self, index: u32) -> Vec<&Route> {
        self.routes
            .iter()
            .filter(|r| r.uses(index) && !r.kernel_made())
            .collect()
    }
    /// Neighbour entries of `index` worth carrying over.
    pub fn movable_neighs(&self, index: u32) -> Vec<Neigh> {
        self.neighs
            .iter()
            .filter(|n| n.index() == index)
            .filter_map(Neigh::carried)
            .collect()
    }
    /// Interfaces stacked on `index` in this namespace (VLANs, macvlans).
    pub fn uppers(&self, index: u32) -> Vec<&Link> {
        self.links
            .iter()
            .filter(|l| l.lower == Some(index) && l.kind.as_deref() != Some("veth"))
            .collect()
    }
}
