//! The deployment as a pure function of what is observed: which steps move
//! the host stack behind headroomd (attach) or back onto the NIC (detach),
//! which states are refused, and what is checked afterwards. No sockets
//! here; `apply` carries the steps out.
//!
//! Attach, in this order (the only traffic gap is between "NIC joins the
//! bridge" and "NIC takes its stand-in MAC", a few netlink requests):
//! 1. create the bridge, with the record of what will change in its alias,
//!    answering no ARP (it carries no address; see [`BRIDGE_ARP_IGNORE`]);
//! 2. NIC: LRO and hardware GRO off (a forwarded aggregate is not a frame);
//!    the MTU if one is configured;
//! 3. create the veth pair, the host end with the NIC's MAC and MTU and the
//!    NIC's per-interface settings; GRO on at the host end (a veth takes
//!    frames XDP redirects to its peer only with NAPI, which GRO turns on;
//!    the host's TCP also gets aggregates);
//! 4. bridge and veth up, `inner` into the bridge;
//! 5. NIC into the bridge; its addresses, neighbours and routes onto the
//!    host end (routes by atomic replace); addresses off the NIC;
//! 6. NIC takes a stand-in MAC, so frames to the host's MAC are forwarded
//!    to the host end instead of being taken by the bridge as its own.
//!
//! Detach reverses it: the NIC gets its MAC, addresses, neighbours and
//! routes back, leaves the bridge, the veth pair goes, the NIC's offloads,
//! MTU and settings are restored, and the bridge (with the record) goes last.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Addr, Mac, Neigh, Observed, Route};

/// Offloads that must be off on the NIC: frames the NIC merged are not
/// frames the workers (or the bridge) may forward.
pub const NIC_OFF: [&str; 2] = ["rx-lro", "rx-gro-hw"];
/// Offload turned on at the host end.
pub const HOST_ON: &str = "rx-gro";
/// Settings the kernel derives from the interface itself (or that attach
/// sets on its own), never copied from the NIC to the host end.
const DERIVED_SYSCTLS: [&str; 2] = ["ipv6/disable_ipv6", "ipv6/mtu"];
/// The bridge answers no ARP request (`arp_ignore` 8). It shares the host
/// stack's namespace but carries no address: with the default (0) the
/// kernel would answer a request for a host address that the bridge floods
/// to itself (with headroomd's workers passing a frame to the kernel, or
/// failing open) with the bridge's MAC, the NIC's stand-in, as well as from
/// the host end, and clients would send to whichever answered last.
pub const BRIDGE_ARP_IGNORE: (&str, &str) = ("ipv4/arp_ignore", "8");
/// Prefix of the record in the bridge's alias.
pub const RECORD_PREFIX: &str = "headroom-deploy ";

/// What to build: the names and the sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The physical NIC (headroomd's outer interface).
    pub nic: String,
    /// headroomd's side of the veth pair (its inner interface).
    pub inner: String,
    /// The host's side of the veth pair: it carries the host's addresses.
    pub host: String,
    /// The fail-open bridge joining the NIC and `inner`.
    pub bridge: String,
    /// MTU for the NIC, the veth pair and the bridge (None: the NIC's).
    pub mtu: Option<u32>,
    /// Queues of the veth pair (None: as many as the NIC has).
    pub inner_queues: Option<u32>,
}

/// What attach changed on the NIC, kept in the bridge's alias so that
/// detach restores it exactly, also after a crash or from another process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The NIC.
    pub nic: String,
    /// Its own MAC (now the host end's).
    pub mac: String,
    /// Its MTU before attach.
    pub mtu: u32,
    /// Offloads attach turned off.
    #[serde(default)]
    pub off: Vec<String>,
    /// Its `ipv6/disable_ipv6` before attach, when attach changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v6: Option<String>,
}

impl Record {
    /// The alias text.
    pub fn alias(&self) -> String {
        format!(
            "{RECORD_PREFIX}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }
    /// Parses an alias written by [`Record::alias`].
    pub fn parse(alias: &str) -> Option<Record> {
        serde_json::from_str(alias.strip_prefix(RECORD_PREFIX)?).ok()
    }
    /// The NIC's own MAC.
    pub fn mac(&self) -> Option<Mac> {
        self.mac.parse().ok()
    }
}

/// One change.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the bridge (STP off, no forwarding delay) carrying `record`.
    CreateBridge {
        /// Its name.
        name: String,
        /// Its MTU.
        mtu: u32,
        /// The record, in its alias.
        record: Record,
    },
    /// Rewrite the record (a resumed attach that changes more).
    SetRecord {
        /// The bridge.
        bridge: String,
        /// The new record.
        record: Record,
    },
    /// Create the veth pair.
    CreateVeth {
        /// headroomd's end.
        inner: String,
        /// The host's end.
        host: String,
        /// MAC of the host end.
        host_mac: Mac,
        /// MTU of both ends.
        mtu: u32,
        /// Queues of both ends.
        queues: u32,
    },
    /// Turn an offload on or off.
    Feature {
        /// Interface.
        dev: String,
        /// ethtool feature name.
        name: String,
        /// On or off.
        on: bool,
    },
    /// Write a per-interface setting.
    Sysctl {
        /// Interface.
        dev: String,
        /// `ipv4/...` or `ipv6/...`.
        key: String,
        /// Value.
        value: String,
    },
    /// Set the MTU.
    Mtu {
        /// Interface.
        dev: String,
        /// Bytes.
        mtu: u32,
    },
    /// Set the MAC.
    MacAddr {
        /// Interface.
        dev: String,
        /// Address.
        mac: Mac,
    },
    /// Bring an interface up.
    Up {
        /// Interface.
        dev: String,
    },
    /// Make `dev` a port of `master` (None: of nothing).
    Master {
        /// Interface.
        dev: String,
        /// The bridge, or None to leave it.
        master: Option<String>,
    },
    /// Add an address to `dev`.
    AddAddr {
        /// Interface.
        dev: String,
        /// The address as observed elsewhere.
        addr: Addr,
    },
    /// Remove an address from `dev`.
    DelAddr {
        /// Interface.
        dev: String,
        /// The address.
        addr: Addr,
    },
    /// Add (or replace) a neighbour entry on `dev`.
    Neighbour {
        /// Interface.
        dev: String,
        /// The entry as observed elsewhere.
        neigh: Neigh,
    },
    /// Replace a route so it leaves through `to` instead of `from`.
    MoveRoute {
        /// The interface it leaves today.
        from: String,
        /// Its index.
        from_index: u32,
        /// The interface it will leave.
        to: String,
        /// The route.
        route: Route,
    },
    /// Delete an interface (a veth's peer goes with it).
    Delete {
        /// Interface.
        dev: String,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreateBridge { name, mtu, record } => write!(
                f,
                "create bridge {name} (fail-open path; STP off, MTU {mtu}; records NIC MAC {}, MTU {})",
                record.mac, record.mtu
            ),
            Step::SetRecord { bridge, .. } => write!(f, "update the record on {bridge}"),
            Step::CreateVeth { inner, host, host_mac, mtu, queues } => write!(
                f,
                "create veth pair {inner} <-> {host} ({host} takes MAC {host_mac}; MTU {mtu}; {queues} queue{})",
                if *queues == 1 { "" } else { "s" }
            ),
            Step::Feature { dev, name, on } => {
                write!(f, "{dev}: {name} {}", if *on { "on" } else { "off" })
            }
            Step::Sysctl { dev, key, value } => write!(f, "{dev}: {key} = {value}"),
            Step::Mtu { dev, mtu } => write!(f, "{dev}: MTU {mtu}"),
            Step::MacAddr { dev, mac } => write!(f, "{dev}: MAC {mac}"),
            Step::Up { dev } => write!(f, "{dev}: up"),
            Step::Master { dev, master: Some(m) } => write!(f, "{dev}: join bridge {m}"),
            Step::Master { dev, master: None } => write!(f, "{dev}: leave its bridge"),
            Step::AddAddr { dev, addr } => write!(f, "{dev}: add address {addr}"),
            Step::DelAddr { dev, addr } => write!(f, "{dev}: remove address {addr}"),
            Step::Neighbour { dev, neigh } => write!(f, "{dev}: neighbour {neigh}"),
            Step::MoveRoute { from, to, route, .. } => {
                write!(f, "route {route}: {from} -> {to}")
            }
            Step::Delete { dev } => write!(f, "delete {dev}"),
        }
    }
}

/// The steps, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// What to do.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "{:3}. {s}", i + 1)?;
        }
        Ok(())
    }
}

/// Why a deployment will not touch this namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

fn refuse<T>(msg: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(msg.into()))
}

/// The record on the bridge, if the bridge is one attach made.
pub fn record_of(obs: &Observed, spec: &Spec) -> Result<Option<Record>, Refusal> {
    let Some(br) = obs.link(&spec.bridge) else {
        return Ok(None);
    };
    match br.alias.as_deref().and_then(Record::parse) {
        Some(r) if r.nic == spec.nic => Ok(Some(r)),
        Some(r) => refuse(format!(
            "{} holds the host of {}, not of {}: detach that one first \
             (headroomctl detach with its configuration)",
            spec.bridge, r.nic, spec.nic
        )),
        None => refuse(format!(
            "an interface named {} exists and was not made by headroom \
             (no record in its alias): choose another name with [deploy] bridge",
            spec.bridge
        )),
    }
}

/// Checks the NIC is a plain Ethernet interface headroom can take over.
fn check_nic_fresh(obs: &Observed, spec: &Spec) -> Result<(), Refusal> {
    let nic = obs.link(&spec.nic).expect("checked by the caller");
    let name = &spec.nic;
    if !nic.ether || nic.mac.is_none() {
        return refuse(format!("{name} is not an Ethernet interface"));
    }
    match nic.kind.as_deref() {
        None | Some("veth") => {}
        Some(k) => {
            return refuse(format!(
                "{name} is a {k} interface: headroom attaches to a physical NIC \
                 (AF_XDP needs its hardware queues)"
            ))
        }
    }
    if !nic.up {
        return refuse(format!(
            "{name} is down: bring it up and configure the host on it first (ip link set {name} up)"
        ));
    }
    if let Some(m) = nic.master {
        let master = obs.by_index(m).map(|l| l.name.clone()).unwrap_or_default();
        return refuse(format!(
            "{name} is a port of {master}: headroom attaches to a NIC that carries the host directly"
        ));
    }
    if nic.xdp {
        return refuse(format!(
            "{name} has an XDP program attached: remove it (ip link set {name} xdp off) \
             or stop the program's owner"
        ));
    }
    let uppers = obs.uppers(nic.index);
    if !uppers.is_empty() {
        let names: Vec<&str> = uppers.iter().map(|l| l.name.as_str()).collect();
        return refuse(format!(
            "{} {} stacked on {name}: they would be cut off behind the bridge; \
             move them off {name} first",
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" }
        ));
    }
    for dev in [&spec.inner, &spec.host] {
        if obs.link(dev).is_some() {
            return refuse(format!(
                "an interface named {dev} exists but no headroom bridge {} does: \
                 remove it or choose other names in [deploy]/[interfaces]",
                spec.bridge
            ));
        }
    }
    for a in obs.movable_addrs(nic.index) {
        if let (Some(left), Some(std::net::IpAddr::V4(_))) = (a.valid_lifetime(), a.ip()) {
            return refuse(format!(
                "address {a} on {name} expires in {left} s (a DHCP lease?): a DHCP client \
                 on {name} would put it back there; give the host a static address, or run \
                 the client on {} after attaching",
                spec.host
            ));
        }
    }
    for r in &obs.rules {
        let names = crate::model::rule_interfaces(r);
        if names.iter().any(|n| n == name) {
            return refuse(format!(
                "a policy-routing rule matches interface {name} (ip rule): after attach the \
                 host's traffic uses {}; change the rule to name {} first",
                spec.host, spec.host
            ));
        }
    }
    for r in obs.movable_routes(nic.index) {
        if r.nexthop_object() {
            return refuse(format!(
                "route {r} uses a nexthop object on {name} (ip nexthop): move it to {} by hand",
                spec.host
            ));
        }
    }
    Ok(())
}

/// The steps that put the host stack behind headroomd, from whatever part
/// of that is already done (an empty plan when attached).
pub fn plan_attach(obs: &Observed, spec: &Spec) -> Result<Plan, Refusal> {
    let Some(nic) = obs.link(&spec.nic) else {
        return refuse(format!(
            "no interface {} here: set [interfaces] outer to the NIC that carries the host",
            spec.nic
        ));
    };
    let existing = record_of(obs, spec)?;
    if existing.is_none() {
        check_nic_fresh(obs, spec)?;
    } else if let Some(m) = nic.master {
        if obs.link(&spec.bridge).map(|b| b.index) != Some(m) {
            return refuse(format!("{} is a port of another master", spec.nic));
        }
    }
    let mut record = existing.clone().unwrap_or_else(|| Record {
        nic: spec.nic.clone(),
        mac: nic.mac.unwrap_or_default().to_string(),
        mtu: nic.mtu,
        off: Vec::new(),
        v6: None,
    });
    let own_mac = record
        .mac()
        .ok_or_else(|| Refusal(format!("the record on {} has no valid MAC", spec.bridge)))?;
    let mtu = spec.mtu.unwrap_or(record.mtu.max(nic.mtu));
    let mut steps = Vec::new();
    let mut late = Vec::new();

    // 2. NIC offloads and MTU; what changes is recorded first.
    let nic_feat = obs.features.get(&spec.nic).cloned().unwrap_or_default();
    for f in NIC_OFF {
        if nic_feat.on(f) {
            if !nic_feat.can_change(f) {
                return refuse(format!(
                    "{} has {f} on and its driver does not let it be turned off",
                    spec.nic
                ));
            }
            if !record.off.iter().any(|o| o == f) {
                record.off.push(f.to_string());
            }
            late.push(Step::Feature {
                dev: spec.nic.clone(),
                name: f.into(),
                on: false,
            });
        }
    }
    let v6_key = "ipv6/disable_ipv6";
    let nic_v6_on = obs.ipv6 && obs.nic_sysctls.get(v6_key).map(String::as_str) == Some("0");
    if nic_v6_on && record.v6.is_none() {
        record.v6 = Some("0".into());
    }
    // 1. The bridge with the record, or the record brought up to date.
    match obs.link(&spec.bridge) {
        None => steps.push(Step::CreateBridge {
            name: spec.bridge.clone(),
            mtu,
            record: record.clone(),
        }),
        Some(_) if existing.as_ref() != Some(&record) => steps.push(Step::SetRecord {
            bridge: spec.bridge.clone(),
            record: record.clone(),
        }),
        Some(_) => {}
    }
    let (arp_key, arp_value) = BRIDGE_ARP_IGNORE;
    if obs.link(&spec.bridge).is_none()
        || obs.bridge_sysctls.get(arp_key).map(String::as_str) != Some(arp_value)
    {
        steps.push(Step::Sysctl {
            dev: spec.bridge.clone(),
            key: arp_key.into(),
            value: arp_value.into(),
        });
    }
    if record.alias().len() > 255 {
        return refuse(format!(
            "the record for {} does not fit an interface alias: shorten the NIC's name",
            spec.nic
        ));
    }
    steps.append(&mut late);
    if nic.mtu != mtu {
        steps.push(Step::Mtu {
            dev: spec.nic.clone(),
            mtu,
        });
    }
    if let Some(br) = obs.link(&spec.bridge) {
        if br.mtu != mtu && !obs.links.iter().any(|l| l.master == Some(br.index)) {
            steps.push(Step::Mtu {
                dev: spec.bridge.clone(),
                mtu,
            });
        }
    }

    // 3. The veth pair.
    let host = obs.link(&spec.host);
    let inner = obs.link(&spec.inner);
    match (inner, host) {
        (None, None) => {
            let queues = spec
                .inner_queues
                .or(obs.nic_rx_queues)
                .unwrap_or(1)
                .clamp(1, 64);
            steps.push(Step::CreateVeth {
                inner: spec.inner.clone(),
                host: spec.host.clone(),
                host_mac: own_mac,
                mtu,
                queues,
            });
            // The host end gets the NIC's own per-interface settings.
            for (k, v) in &obs.nic_sysctls {
                if DERIVED_SYSCTLS.contains(&k.as_str()) || !obs.writable_sysctls.contains(k) {
                    continue;
                }
                if obs.default_sysctls.get(k) != Some(v) {
                    steps.push(Step::Sysctl {
                        dev: spec.host.clone(),
                        key: k.clone(),
                        value: v.clone(),
                    });
                }
            }
            if nic_v6_on || record.v6.is_some() {
                for dev in [&spec.inner, &spec.bridge] {
                    steps.push(Step::Sysctl {
                        dev: dev.clone(),
                        key: v6_key.into(),
                        value: "1".into(),
                    });
                }
            }
            steps.push(Step::Feature {
                dev: spec.host.clone(),
                name: HOST_ON.into(),
                on: true,
            });
        }
        (Some(i), Some(h)) => {
            if h.mac != Some(own_mac) {
                steps.push(Step::MacAddr {
                    dev: spec.host.clone(),
                    mac: own_mac,
                });
            }
            for (dev, l) in [(&spec.inner, i), (&spec.host, h)] {
                if l.mtu != mtu {
                    steps.push(Step::Mtu {
                        dev: dev.clone(),
                        mtu,
                    });
                }
            }
            if let Some(f) = obs.features.get(&spec.host) {
                if !f.on(HOST_ON) && f.can_change(HOST_ON) {
                    steps.push(Step::Feature {
                        dev: spec.host.clone(),
                        name: HOST_ON.into(),
                        on: true,
                    });
                }
            }
        }
        _ => {
            return refuse(format!(
                "only one of {} and {} exists: delete it (ip link del ...) and attach again",
                spec.inner, spec.host
            ))
        }
    }

    // 4. Up, inner into the bridge.
    let bridge_index = obs.link(&spec.bridge).map(|b| b.index);
    let inner_bridged = inner.is_some_and(|i| i.master.is_some() && i.master == bridge_index);
    if !inner_bridged {
        steps.push(Step::Master {
            dev: spec.inner.clone(),
            master: Some(spec.bridge.clone()),
        });
    }
    for (dev, l) in [
        (&spec.bridge, obs.link(&spec.bridge)),
        (&spec.inner, inner),
        (&spec.host, host),
    ] {
        if !l.is_some_and(|l| l.up) {
            steps.push(Step::Up { dev: dev.clone() });
        }
    }

    // 5. The NIC joins; the host stack moves.
    let nic_bridged = nic.master.is_some() && nic.master == bridge_index;
    if !nic_bridged {
        steps.push(Step::Master {
            dev: spec.nic.clone(),
            master: Some(spec.bridge.clone()),
        });
    }
    move_host(
        obs,
        nic.index,
        &spec.nic,
        host,
        &spec.host,
        Family::All,
        &mut steps,
    );

    // 6. The stand-in MAC, and no IPv6 of its own on the NIC.
    let stand_in = own_mac.nic_stand_in();
    if nic.mac != Some(stand_in) {
        steps.push(Step::MacAddr {
            dev: spec.nic.clone(),
            mac: stand_in,
        });
    }
    if nic_v6_on {
        steps.push(Step::Sysctl {
            dev: spec.nic.clone(),
            key: v6_key.into(),
            value: "1".into(),
        });
    }
    Ok(Plan { steps })
}

/// Which addresses, neighbours and routes a move takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    All,
    V4,
    V6,
}

impl Family {
    fn has(self, ip: Option<std::net::IpAddr>) -> bool {
        match (self, ip) {
            (Family::All, _) => true,
            (Family::V4, Some(ip)) => ip.is_ipv4(),
            (Family::V6, Some(ip)) => ip.is_ipv6(),
            (_, None) => false,
        }
    }
    fn has_family(self, f: netlink_packet_route::AddressFamily) -> bool {
        use netlink_packet_route::AddressFamily as F;
        match self {
            Family::All => true,
            Family::V4 => f == F::Inet,
            Family::V6 => f == F::Inet6,
        }
    }
}

/// Steps that move addresses, neighbours and routes from `from` to `to`
/// (which may not exist yet): add to `to`, replace routes, remove from
/// `from` (secondaries before their primary).
fn move_host(
    obs: &Observed,
    from_index: u32,
    from: &str,
    to_link: Option<&crate::model::Link>,
    to: &str,
    only: Family,
    steps: &mut Vec<Step>,
) {
    let have = |a: &Addr| {
        to_link.is_some_and(|t| {
            obs.addrs
                .iter()
                .any(|b| b.index() == t.index && b.ip() == a.ip() && b.prefix() == a.prefix())
        })
    };
    let addrs: Vec<&Addr> = obs
        .movable_addrs(from_index)
        .into_iter()
        .filter(|a| only.has(a.ip()))
        .collect();
    for a in &addrs {
        if !have(a) {
            steps.push(Step::AddAddr {
                dev: to.into(),
                addr: (*a).clone(),
            });
        }
    }
    for n in obs
        .movable_neighs(from_index)
        .into_iter()
        .filter(|n| only.has(n.ip()))
    {
        let known = to_link.is_some_and(|t| {
            obs.neighs
                .iter()
                .any(|m| m.index() == t.index && m.ip() == n.ip())
        });
        if !known {
            steps.push(Step::Neighbour {
                dev: to.into(),
                neigh: n,
            });
        }
    }
    for r in obs
        .movable_routes(from_index)
        .into_iter()
        .filter(|r| only.has_family(r.0.header.address_family))
    {
        steps.push(Step::MoveRoute {
            from: from.into(),
            from_index,
            to: to.into(),
            route: r.clone(),
        });
    }
    for a in addrs.iter().rev() {
        steps.push(Step::DelAddr {
            dev: from.into(),
            addr: (*a).clone(),
        });
    }
}

/// The steps that put the host stack back onto the NIC and remove what
/// attach made (an empty plan when nothing is attached).
pub fn plan_detach(obs: &Observed, spec: &Spec) -> Result<Plan, Refusal> {
    let record = record_of(obs, spec)?;
    let Some(record) = record else {
        if obs.link(&spec.inner).is_some() || obs.link(&spec.host).is_some() {
            return refuse(format!(
                "{} or {} exists but the bridge {} with headroom's record does not: \
                 this is not a deployment headroom can undo; remove them by hand",
                spec.inner, spec.host, spec.bridge
            ));
        }
        return Ok(Plan::default());
    };
    let Some(nic) = obs.link(&spec.nic) else {
        return refuse(format!("the NIC {} is gone", spec.nic));
    };
    for dev in [&spec.nic, &spec.inner] {
        if obs.link(dev).is_some_and(|l| l.xdp) {
            return refuse(format!(
                "{dev} has an XDP program attached: headroomd is running; stop it first \
                 (with [deploy] detach_on_stop it detaches by itself)"
            ));
        }
    }
    let own_mac = record
        .mac()
        .ok_or_else(|| Refusal(format!("the record on {} has no valid MAC", spec.bridge)))?;
    let mut steps = Vec::new();
    if nic.mac != Some(own_mac) {
        steps.push(Step::MacAddr {
            dev: spec.nic.clone(),
            mac: own_mac,
        });
    }
    // IPv6 comes back once the NIC has left the bridge: its link-local
    // address (the same as the host end's, from the same MAC) must not see
    // the host end during duplicate detection.
    let v6_later = record.v6.is_some()
        && obs.nic_sysctls.get("ipv6/disable_ipv6").map(String::as_str) != record.v6.as_deref();
    let first = if v6_later { Family::V4 } else { Family::All };
    let host = obs.link(&spec.host);
    if let Some(h) = host {
        move_host(
            obs,
            h.index,
            &spec.host,
            Some(nic),
            &spec.nic,
            first,
            &mut steps,
        );
    }
    if nic.master.is_some() {
        steps.push(Step::Master {
            dev: spec.nic.clone(),
            master: None,
        });
    }
    if v6_later {
        steps.push(Step::Sysctl {
            dev: spec.nic.clone(),
            key: "ipv6/disable_ipv6".into(),
            value: record.v6.clone().unwrap_or_default(),
        });
        if let Some(h) = host {
            move_host(
                obs,
                h.index,
                &spec.host,
                Some(nic),
                &spec.nic,
                Family::V6,
                &mut steps,
            );
        }
    }
    if obs.link(&spec.inner).is_some() {
        steps.push(Step::Delete {
            dev: spec.inner.clone(),
        });
    } else if obs.link(&spec.host).is_some() {
        steps.push(Step::Delete {
            dev: spec.host.clone(),
        });
    }
    for f in &record.off {
        steps.push(Step::Feature {
            dev: spec.nic.clone(),
            name: f.clone(),
            on: true,
        });
    }
    if nic.mtu != record.mtu {
        steps.push(Step::Mtu {
            dev: spec.nic.clone(),
            mtu: record.mtu,
        });
    }
    steps.push(Step::Delete {
        dev: spec.bridge.clone(),
    });
    Ok(Plan { steps })
}

/// One verified property of the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it holds.
    pub ok: bool,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {}",
            if self.ok { " ok " } else { "FAIL" },
            self.what
        )
    }
}

/// Verifies an attached namespace: the fail-open path forwards, sizes and
/// offloads are as planned, the host stack sits on the host end.
pub fn check_attached(obs: &Observed, spec: &Spec) -> Vec<Check> {
    let mut out = Vec::new();
    let mut check = |what: String, ok: bool| out.push(Check { what, ok });
    let record = record_of(obs, spec).ok().flatten();
    check(
        format!("bridge {} exists with headroom's record", spec.bridge),
        record.is_some(),
    );
    let (Some(nic), Some(br), Some(inner), Some(host), Some(record)) = (
        obs.link(&spec.nic),
        obs.link(&spec.bridge),
        obs.link(&spec.inner),
        obs.link(&spec.host),
        record,
    ) else {
        check(
            format!(
                "{}, {}, {} and {} all exist",
                spec.nic, spec.inner, spec.host, spec.bridge
            ),
            false,
        );
        return out;
    };
    let mtu = spec.mtu.unwrap_or(record.mtu.max(nic.mtu));
    for l in [nic, inner] {
        check(
            format!("{} is a forwarding port of {}", l.name, br.name),
            l.master == Some(br.index)
                && l.port_state == Some(netlink_packet_route::link::BridgePortState::Forwarding),
        );
    }
    for l in [nic, br, inner, host] {
        check(format!("{} is up", l.name), l.up);
        check(
            format!("{} has MTU {mtu} (has {})", l.name, l.mtu),
            l.mtu == mtu,
        );
    }
    check(format!("{} has carrier", nic.name), nic.carrier);
    let own = record.mac();
    check(
        format!("{} has the NIC's MAC {}", host.name, record.mac),
        host.mac.is_some() && host.mac == own,
    );
    check(
        format!("{} has a stand-in MAC", nic.name),
        own.is_some_and(|m| nic.mac == Some(m.nic_stand_in())),
    );
    let (arp_key, arp_value) = BRIDGE_ARP_IGNORE;
    check(
        format!("{} answers no ARP ({arp_key} {arp_value})", br.name),
        obs.bridge_sysctls.get(arp_key).map(String::as_str) == Some(arp_value),
    );
    let f = obs.features.get(&spec.nic).cloned().unwrap_or_default();
    for name in NIC_OFF {
        check(format!("{}: {name} off", nic.name), !f.on(name));
    }
    let hf = obs.features.get(&spec.host).cloned().unwrap_or_default();
    if hf.can_change(HOST_ON) {
        check(format!("{}: {HOST_ON} on", host.name), hf.on(HOST_ON));
    }
    check(
        format!("{} carries no host address", nic.name),
        obs.movable_addrs(nic.index).is_empty(),
    );
    check(
        format!("no route leaves through {} directly", nic.name),
        obs.movable_routes(nic.index).is_empty(),
    );
    out
}

#[cfg(test)]
mod tests;
