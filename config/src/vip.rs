//! Virtual IP (VIP) service configuration for the flow director.
//!
//! A VIP service is one virtual IPv4 address + protocol + port set that is
//! configured on the host stack of every member server and load-balanced
//! across those members with direct server return. Exactly one live member
//! (the owner) answers ARP for the address; the owner's workers place new
//! flows locally or forward them, encapsulated, to another member.
//!
//! Example (TOML):
//!
//! ```toml
//! [[vip]]
//! name = "web"
//! vip = "10.0.0.100"
//! protocol = "tcp"
//! ports = [80, "8000-8099"]
//! members = [1, 2, 3]
//! weights = [{ node = 3, weight = 2 }]
//! sticky_timeout = "5m"
//! health_check = { kind = "http", port = 80, path = "/healthz" }
//! ```

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Default number of gratuitous ARPs sent when a node becomes VIP owner.
pub const DEFAULT_GRATUITOUS_ARP_COUNT: u32 = 3;
/// Default UDP destination port of the director's encapsulation.
pub const DEFAULT_ENCAP_PORT: u16 = 6080;
/// Upper bound on the gratuitous ARP burst (protects the segment).
pub const MAX_GRATUITOUS_ARP_COUNT: u32 = 64;
/// Upper bound on a weight, so weight x headroom fits comfortably in `u32`.
pub const MAX_WEIGHT: u32 = 1000;

/// Transport protocol load-balanced by a VIP service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VipProtocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl VipProtocol {
    /// IANA IP protocol number.
    pub fn ip_proto(self) -> u8 {
        match self {
            VipProtocol::Tcp => 6,
            VipProtocol::Udp => 17,
        }
    }
}

/// Inclusive port range; in the configuration either a single port number
/// (`80`) or a string `"first-last"` (`"8000-8099"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "PortSpec", into = "PortSpec")]
pub struct PortRange {
    /// First port of the range (inclusive).
    pub first: u16,
    /// Last port of the range (inclusive).
    pub last: u16,
}

impl PortRange {
    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }

    /// Whether two ranges share at least one port.
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Raw serde form of a [`PortRange`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum PortSpec {
    /// A single port.
    One(u16),
    /// `"first-last"`.
    Range(String),
}

impl TryFrom<PortSpec> for PortRange {
    type Error = String;

    fn try_from(spec: PortSpec) -> Result<Self, Self::Error> {
        match spec {
            PortSpec::One(p) => Ok(PortRange { first: p, last: p }),
            PortSpec::Range(s) => {
                let parse = |t: &str| {
                    t.trim()
                        .parse::<u16>()
                        .map_err(|_| format!("invalid port range {s:?}: {t:?} is not a port"))
                };
                let (a, b) = match s.split_once('-') {
                    Some((a, b)) => (parse(a)?, parse(b)?),
                    None => {
                        let p = parse(&s)?;
                        (p, p)
                    }
                };
                if a > b {
                    return Err(format!("invalid port range {s:?}: first > last"));
                }
                Ok(PortRange { first: a, last: b })
            }
        }
    }
}

impl From<PortRange> for PortSpec {
    fn from(r: PortRange) -> Self {
        if r.first == r.last {
            PortSpec::One(r.first)
        } else {
            PortSpec::Range(format!("{}-{}", r.first, r.last))
        }
    }
}

/// Flow placement algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Weighted Maglev consistent hashing (identical table on every node).
    #[default]
    Maglev,
}

/// Static weight of one member node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeWeight {
    /// Node id of the member.
    pub node: u32,
    /// Static weight (0 drains the node: no new flows).
    pub weight: u32,
}

/// Kind of application health probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    /// TCP connect succeeds within the timeout.
    Tcp,
    /// HTTP/1.0 GET of `path` answers with a 2xx status within the timeout.
    Http,
}

/// Health check of the local application instance behind a VIP. Each node
/// probes its own instance and gossips the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Probe kind.
    pub kind: HealthKind,
    /// Port of the local application to probe.
    pub port: u16,
    /// HTTP path (only for `kind = "http"`), must start with `/`.
    #[serde(default = "default_path")]
    pub path: String,
    /// Time between probe starts.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Probe timeout; must be below `interval`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive successes that turn an unhealthy instance healthy.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that turn a healthy instance unhealthy.
    #[serde(default = "default_fall")]
    pub fall: u32,
}

fn default_path() -> String {
    "/".to_string()
}
fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_millis(500)
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}
fn default_gratuitous_arp_count() -> u32 {
    DEFAULT_GRATUITOUS_ARP_COUNT
}

/// One load-balanced virtual IP service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipService {
    /// Unique service name (used in logs and metrics).
    pub name: String,
    /// The virtual IPv4 address, configured on every member's host stack.
    pub vip: Ipv4Addr,
    /// Transport protocol.
    pub protocol: VipProtocol,
    /// Destination ports (single ports or inclusive ranges) served on the VIP.
    pub ports: Vec<PortRange>,
    /// Member node ids; empty (the default) means every node of the pool.
    #[serde(default)]
    pub members: Vec<u32>,
    /// Static per-node weights; nodes not listed have weight 1. The effective
    /// weight is this static weight times the node's gossiped headroom.
    #[serde(default)]
    pub weights: Vec<NodeWeight>,
    /// Placement algorithm.
    #[serde(default)]
    pub placement: Placement,
    /// Source-IP stickiness period: a client IP keeps going to the same
    /// server for this long after its last new flow (0s disables).
    #[serde(default, with = "humantime_serde")]
    pub sticky_timeout: Duration,
    /// Number of gratuitous ARPs the new owner sends for the VIP.
    #[serde(default = "default_gratuitous_arp_count")]
    pub gratuitous_arp_count: u32,
    /// Optional health check of the local application instance.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
}

/// Validation error of a VIP service configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VipConfigError {
    /// The service name is empty.
    #[error("VIP service name is empty")]
    EmptyName,
    /// Two services share a name.
    #[error("duplicate VIP service name {0:?}")]
    DuplicateName(String),
    /// The VIP is not a usable unicast address.
    #[error("service {service:?}: {vip} is not a unicast address")]
    BadAddress {
        /// Service name.
        service: String,
        /// Offending address.
        vip: Ipv4Addr,
    },
    /// No ports configured.
    #[error("service {0:?}: no ports")]
    NoPorts(String),
    /// Port 0 is not a valid destination port.
    #[error("service {0:?}: port 0 is not allowed")]
    PortZero(String),
    /// A member id appears twice.
    #[error("service {service:?}: duplicate member {node}")]
    DuplicateMember {
        /// Service name.
        service: String,
        /// Node id.
        node: u32,
    },
    /// A weight is given twice or for a node that is not a member.
    #[error("service {service:?}: weight for node {node} is duplicated or not a member")]
    BadWeightNode {
        /// Service name.
        service: String,
        /// Node id.
        node: u32,
    },
    /// A weight exceeds [`MAX_WEIGHT`].
    #[error("service {service:?}: weight {weight} of node {node} exceeds {MAX_WEIGHT}")]
    WeightTooLarge {
        /// Service name.
        service: String,
        /// Node id.
        node: u32,
        /// Weight given.
        weight: u32,
    },
    /// Gratuitous ARP count above [`MAX_GRATUITOUS_ARP_COUNT`].
    #[error("service {0:?}: gratuitous_arp_count above {MAX_GRATUITOUS_ARP_COUNT}")]
    TooManyGratuitousArps(String),
    /// Health check parameters are inconsistent.
    #[error("service {service:?}: health check: {reason}")]
    BadHealthCheck {
        /// Service name.
        service: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Two services claim the same VIP, protocol and port.
    #[error("services {a:?} and {b:?} overlap on {vip} {protocol:?} ports")]
    Overlap {
        /// First service.
        a: String,
        /// Second service.
        b: String,
        /// Shared VIP.
        vip: Ipv4Addr,
        /// Shared protocol.
        protocol: VipProtocol,
    },
}

impl VipService {
    /// Static weight of `node` (1 when not listed).
    pub fn weight_of(&self, node: u32) -> u32 {
        self.weights
            .iter()
            .find(|w| w.node == node)
            .map_or(1, |w| w.weight)
    }

    /// Whether `node` is a member (an empty member list means everyone).
    pub fn has_member(&self, node: u32) -> bool {
        self.members.is_empty() || self.members.contains(&node)
    }

    /// Whether a destination port belongs to the service.
    pub fn has_port(&self, port: u16) -> bool {
        self.ports.iter().any(|r| r.contains(port))
    }

    /// Checks one service in isolation.
    pub fn validate(&self) -> Result<(), VipConfigError> {
        let svc = || self.name.clone();
        if self.name.trim().is_empty() {
            return Err(VipConfigError::EmptyName);
        }
        let v = self.vip;
        if v.is_unspecified() || v.is_broadcast() || v.is_multicast() || v.is_loopback() {
            return Err(VipConfigError::BadAddress {
                service: svc(),
                vip: v,
            });
        }
        if self.ports.is_empty() {
            return Err(VipConfigError::NoPorts(svc()));
        }
        if self.ports.iter().any(|r| r.first == 0) {
            return Err(VipConfigError::PortZero(svc()));
        }
        let mut seen = BTreeSet::new();
        for &m in &self.members {
            if !seen.insert(m) {
                return Err(VipConfigError::DuplicateMember {
                    service: svc(),
                    node: m,
                });
            }
        }
        let mut wseen = BTreeSet::new();
        for w in &self.weights {
            if !wseen.insert(w.node) || !self.has_member(w.node) {
                return Err(VipConfigError::BadWeightNode {
                    service: svc(),
                    node: w.node,
                });
            }
            if w.weight > MAX_WEIGHT {
                return Err(VipConfigError::WeightTooLarge {
                    service: svc(),
                    node: w.node,
                    weight: w.weight,
                });
            }
        }
        if self.gratuitous_arp_count > MAX_GRATUITOUS_ARP_COUNT {
            return Err(VipConfigError::TooManyGratuitousArps(svc()));
        }
        if let Some(hc) = &self.health_check {
            let bad = |reason| {
                Err(VipConfigError::BadHealthCheck {
                    service: svc(),
                    reason,
                })
            };
            if hc.port == 0 {
                return bad("port 0");
            }
            if hc.interval.is_zero() || hc.timeout.is_zero() {
                return bad("interval and timeout must be positive");
            }
            if hc.timeout >= hc.interval {
                return bad("timeout must be below interval");
            }
            if hc.rise == 0 || hc.fall == 0 {
                return bad("rise and fall must be at least 1");
            }
            if hc.kind == HealthKind::Http
                && (!hc.path.starts_with('/') || hc.path.bytes().any(|b| b <= b' ' || b == 0x7f))
            {
                return bad("http path must start with '/' and contain no spaces or controls");
            }
        }
        Ok(())
    }
}

/// Validates a whole list of services: each one, unique names, and no two
/// services sharing (VIP, protocol, port).
pub fn validate_services(services: &[VipService]) -> Result<(), VipConfigError> {
    let mut names = BTreeSet::new();
    for s in services {
        s.validate()?;
        if !names.insert(s.name.as_str()) {
            return Err(VipConfigError::DuplicateName(s.name.clone()));
        }
    }
    for (i, a) in services.iter().enumerate() {
        for b in &services[i + 1..] {
            if a.vip == b.vip
                && a.protocol == b.protocol
                && a.ports
                    .iter()
                    .any(|p| b.ports.iter().any(|q| p.overlaps(q)))
            {
                return Err(VipConfigError::Overlap {
                    a: a.name.clone(),
                    b: b.name.clone(),
                    vip: a.vip,
                    protocol: a.protocol,
                });
            }
        }
    }
    Ok(())
}

/// Node-wide flow director settings (one per node, not per service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorSettings {
    /// UDP destination port of the owner-to-server encapsulation.
    #[serde(default = "default_encap_port")]
    pub encap_port: u16,
    /// Underlay MTU: largest encapsulated IP packet. The encapsulation adds
    /// 36 bytes, so client packets above `underlay_mtu - 36` cannot be
    /// forwarded: raise the underlay MTU or clamp the services' TCP MSS.
    #[serde(default = "default_mtu")]
    pub underlay_mtu: u16,
    /// Maglev table size (prime; larger means finer weights, more memory).
    #[serde(default = "default_table_size")]
    pub maglev_table_size: usize,
    /// Connection table entries per worker.
    #[serde(default = "default_conntrack_capacity")]
    pub conntrack_capacity: usize,
    /// Source-IP stickiness entries per worker.
    #[serde(default = "default_sticky_capacity")]
    pub sticky_capacity: usize,
    /// Idle lifetime of an established TCP flow.
    #[serde(default = "default_tcp_idle", with = "humantime_serde")]
    pub tcp_idle: Duration,
    /// Idle lifetime of a UDP flow.
    #[serde(default = "default_udp_idle", with = "humantime_serde")]
    pub udp_idle: Duration,
    /// Spacing of the gratuitous ARPs a new owner sends.
    #[serde(default = "default_garp_interval", with = "humantime_serde")]
    pub gratuitous_arp_interval: Duration,
    /// Host-stack address of every pool node (this one included): the
    /// encapsulation endpoints. Frames to a node's own address go to its
    /// kernel, not to its workers, so forwarded flows are addressed to the
    /// host address behind the node's Headroom instead. A node's MAC is
    /// taken from `mac` when given, else resolved through the kernel's
    /// neighbour table.
    #[serde(default)]
    pub hosts: Vec<HostAddress>,
}

/// Host-stack address of one pool node (`[[director.hosts]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostAddress {
    /// Node id.
    pub node: u32,
    /// IPv4 address of the node's host stack.
    pub address: Ipv4Addr,
    /// MAC of the host's interface ("aa:bb:cc:dd:ee:ff"); resolved with ARP
    /// when absent.
    #[serde(default)]
    pub mac: Option<String>,
}

/// Parses "aa:bb:cc:dd:ee:ff".
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn default_encap_port() -> u16 {
    DEFAULT_ENCAP_PORT
}
fn default_mtu() -> u16 {
    1500
}
fn default_table_size() -> usize {
    65537
}
fn default_conntrack_capacity() -> usize {
    1 << 18
}
fn default_sticky_capacity() -> usize {
    1 << 16
}
fn default_tcp_idle() -> Duration {
    Duration::from_secs(300)
}
fn default_udp_idle() -> Duration {
    Duration::from_secs(30)
}
fn default_garp_interval() -> Duration {
    Duration::from_millis(200)
}

impl Default for DirectorSettings {
    fn default() -> Self {
        DirectorSettings {
            encap_port: default_encap_port(),
            underlay_mtu: default_mtu(),
            maglev_table_size: default_table_size(),
            conntrack_capacity: default_conntrack_capacity(),
            sticky_capacity: default_sticky_capacity(),
            tcp_idle: default_tcp_idle(),
            udp_idle: default_udp_idle(),
            gratuitous_arp_interval: default_garp_interval(),
            hosts: Vec::new(),
        }
    }
}

/// Invalid [`DirectorSettings`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DirectorSettingsError {
    /// Port 0.
    #[error("encap_port must not be 0")]
    EncapPortZero,
    /// MTU outside 576..=9216.
    #[error("underlay_mtu {0} outside 576..=9216")]
    BadMtu(u16),
    /// Table size not prime or outside 251..=16777259.
    #[error("maglev_table_size {0} must be a prime in 251..=16777259")]
    BadTableSize(usize),
    /// A capacity outside 1..=2^26.
    #[error("{0} must be between 1 and 67108864")]
    BadCapacity(&'static str),
    /// A zero lifetime or interval.
    #[error("{0} must be positive")]
    ZeroDuration(&'static str),
    /// A host entry is duplicated or malformed.
    #[error("hosts: node {0} is listed twice or has a malformed MAC")]
    BadHost(u32),
}

fn is_prime(n: usize) -> bool {
    n >= 2
        && (2..)
            .take_while(|d: &usize| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

impl DirectorSettings {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), DirectorSettingsError> {
        use DirectorSettingsError as E;
        if self.encap_port == 0 {
            return Err(E::EncapPortZero);
        }
        if !(576..=9216).contains(&self.underlay_mtu) {
            return Err(E::BadMtu(self.underlay_mtu));
        }
        let t = self.maglev_table_size;
        if !(251..=16_777_259).contains(&t) || !is_prime(t) {
            return Err(E::BadTableSize(t));
        }
        for (name, c) in [
            ("conntrack_capacity", self.conntrack_capacity),
            ("sticky_capacity", self.sticky_capacity),
        ] {
            if !(1..=1 << 26).contains(&c) {
                return Err(E::BadCapacity(name));
            }
        }
        for (name, v) in [
            ("tcp_idle", self.tcp_idle),
            ("udp_idle", self.udp_idle),
            ("gratuitous_arp_interval", self.gratuitous_arp_interval),
        ] {
            if v.is_zero() {
                return Err(E::ZeroDuration(name));
            }
        }
        for (i, h) in self.hosts.iter().enumerate() {
            let dup = self.hosts[..i].iter().any(|o| o.node == h.node);
            let bad_mac = h.mac.as_deref().is_some_and(|m| parse_mac(m).is_none());
            if dup || bad_mac {
                return Err(E::BadHost(h.node));
            }
        }
        Ok(())
    }

    /// Host address entry of `node`.
    pub fn host_of(&self, node: u32) -> Option<&HostAddress> {
        self.hosts.iter().find(|h| h.node == node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        vip: Vec<VipService>,
    }

    fn parse(s: &str) -> Result<Vec<VipService>, toml::de::Error> {
        toml::from_str::<Doc>(s).map(|d| d.vip)
    }

    const GOOD: &str = r#"
[[vip]]
name = "web"
vip = "10.0.0.100"
protocol = "tcp"
ports = [80, "8000-8099"]
members = [1, 2, 3]
weights = [{ node = 3, weight = 2 }]
sticky_timeout = "300s"
health_check = { kind = "http", port = 80, path = "/healthz" }

[[vip]]
name = "dns"
vip = "10.0.0.100"
protocol = "udp"
ports = ["53"]
"#;

    #[test]
    fn parses_full_example_with_defaults() {
        let v = parse(GOOD).unwrap();
        validate_services(&v).unwrap();
        let web = &v[0];
        assert_eq!(web.protocol, VipProtocol::Tcp);
        assert_eq!(
            web.ports,
            vec![
                PortRange {
                    first: 80,
                    last: 80
                },
                PortRange {
                    first: 8000,
                    last: 8099
                }
            ]
        );
        assert!(web.has_port(8050) && !web.has_port(8100) && !web.has_port(81));
        assert_eq!(web.weight_of(3), 2);
        assert_eq!(web.weight_of(1), 1);
        assert!(web.has_member(2) && !web.has_member(4));
        assert_eq!(web.gratuitous_arp_count, DEFAULT_GRATUITOUS_ARP_COUNT);
        let hc = web.health_check.as_ref().unwrap();
        assert_eq!(
            (hc.rise, hc.fall, hc.interval, hc.timeout),
            (
                2,
                3,
                Duration::from_millis(1000),
                Duration::from_millis(500)
            )
        );
        let dns = &v[1];
        assert!(dns.members.is_empty() && dns.has_member(42));
        assert_eq!(
            dns.ports,
            vec![PortRange {
                first: 53,
                last: 53
            }]
        );
        assert_eq!(dns.sticky_timeout, Duration::ZERO);
        assert!(dns.health_check.is_none());
    }

    #[test]
    fn serde_round_trip() {
        let v = parse(GOOD).unwrap();
        let s = toml::to_string(&Doc2 { vip: v.clone() }).unwrap();
        assert_eq!(parse(&s).unwrap(), v);
    }

    #[derive(Serialize)]
    struct Doc2 {
        vip: Vec<VipService>,
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        let unknown = GOOD.replace("sticky_timeout", "stickyness");
        assert!(parse(&unknown).is_err());
        assert!(parse(&GOOD.replace("\"tcp\"", "\"sctp\"")).is_err());
        assert!(parse(&GOOD.replace("\"8000-8099\"", "\"8099-8000\"")).is_err());
        assert!(parse(&GOOD.replace("\"8000-8099\"", "\"80a\"")).is_err());
        let bad_placement = GOOD.replace("sticky_timeout = \"300s\"", "placement = \"random\"");
        assert!(parse(&bad_placement).is_err());
    }

    fn web() -> VipService {
        parse(GOOD).unwrap().remove(0)
    }

    #[test]
    fn validation_errors() {
        let mut s = web();
        s.name = " ".into();
        assert_eq!(s.validate(), Err(VipConfigError::EmptyName));

        let mut s = web();
        s.vip = Ipv4Addr::new(224, 0, 0, 1);
        assert!(matches!(
            s.validate(),
            Err(VipConfigError::BadAddress { .. })
        ));

        let mut s = web();
        s.ports.clear();
        assert!(matches!(s.validate(), Err(VipConfigError::NoPorts(_))));

        let mut s = web();
        s.members.push(2);
        assert!(matches!(
            s.validate(),
            Err(VipConfigError::DuplicateMember { node: 2, .. })
        ));

        let mut s = web();
        s.weights.push(NodeWeight { node: 9, weight: 1 });
        assert!(matches!(
            s.validate(),
            Err(VipConfigError::BadWeightNode { node: 9, .. })
        ));

        let mut s = web();
        s.weights[0].weight = MAX_WEIGHT + 1;
        assert!(matches!(
            s.validate(),
            Err(VipConfigError::WeightTooLarge { .. })
        ));

        let mut s = web();
        s.gratuitous_arp_count = MAX_GRATUITOUS_ARP_COUNT + 1;
        assert!(matches!(
            s.validate(),
            Err(VipConfigError::TooManyGratuitousArps(_))
        ));

        for f in [
            |h: &mut HealthCheck| h.timeout = h.interval,
            |h: &mut HealthCheck| h.rise = 0,
            |h: &mut HealthCheck| h.path = "healthz".into(),
            |h: &mut HealthCheck| h.port = 0,
        ] {
            let mut s = web();
            f(s.health_check.as_mut().unwrap());
            assert!(matches!(
                s.validate(),
                Err(VipConfigError::BadHealthCheck { .. })
            ));
        }
    }

    #[test]
    fn overlap_and_duplicate_names() {
        let mut a = web();
        let mut b = web();
        b.name = "web2".into();
        b.ports = vec![PortRange {
            first: 8099,
            last: 8200,
        }];
        assert!(matches!(
            validate_services(&[a.clone(), b.clone()]),
            Err(VipConfigError::Overlap { .. })
        ));
        b.ports = vec![PortRange {
            first: 8100,
            last: 8200,
        }];
        validate_services(&[a.clone(), b.clone()]).unwrap();
        b.name = a.name.clone();
        assert!(matches!(
            validate_services(&[a.clone(), b]),
            Err(VipConfigError::DuplicateName(_))
        ));
        a.protocol = VipProtocol::Udp;
        assert_eq!(a.protocol.ip_proto(), 17);
    }
    #[test]
    fn director_settings_defaults_and_validation() {
        let d: DirectorSettings = toml::from_str("").unwrap();
        assert_eq!(d, DirectorSettings::default());
        d.validate().unwrap();
        assert_eq!(
            (d.encap_port, d.underlay_mtu, d.maglev_table_size),
            (6080, 1500, 65537)
        );
        let d: DirectorSettings =
            toml::from_str("encap_port = 7000\nunderlay_mtu = 9000\nmaglev_table_size = 251")
                .unwrap();
        d.validate().unwrap();
        assert!(toml::from_str::<DirectorSettings>("encap = 1").is_err());
        let bad = |f: fn(&mut DirectorSettings)| {
            let mut d = DirectorSettings::default();
            f(&mut d);
            d.validate().unwrap_err()
        };
        assert_eq!(
            bad(|d| d.encap_port = 0),
            DirectorSettingsError::EncapPortZero
        );
        assert_eq!(
            bad(|d| d.underlay_mtu = 100),
            DirectorSettingsError::BadMtu(100)
        );
        assert_eq!(
            bad(|d| d.maglev_table_size = 65536),
            DirectorSettingsError::BadTableSize(65536)
        );
        assert_eq!(
            bad(|d| d.conntrack_capacity = 0),
            DirectorSettingsError::BadCapacity("conntrack_capacity")
        );
        assert_eq!(
            bad(|d| d.udp_idle = Duration::ZERO),
            DirectorSettingsError::ZeroDuration("udp_idle")
        );
    }
}
