//! Network types used in configuration files and by the dataplane's flow classifier.
//!
//! Every type here parses from the short textual forms an operator writes in TOML
//! (`"10.0.0.0/8"`, `"8000-8100"`, `"tcp"`, `"in"`) and reports a self-contained error
//! message when it cannot: `toml` attaches the line and column of the offending value to
//! any error raised inside `Deserialize`, so the message only has to say what was wrong
//! with the value and what would have been accepted.
//!
//! The types are deliberately plain (`Copy`, no allocation) so the classifier can compile
//! them into its rule tables and match them on the packet path.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Why a network value in a configuration file could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetParseError {
    /// The text is not an IPv4 or IPv6 address (optionally followed by `/LEN`).
    #[error("invalid IP prefix {input:?}: expected an IPv4 or IPv6 address, optionally followed by /LEN (e.g. \"10.0.0.0/8\", \"192.0.2.1\", \"2001:db8::/32\", \"::/0\")")]
    BadAddress {
        /// The text as written.
        input: String,
    },
    /// The prefix length is not a number or is too long for the address family.
    #[error("invalid prefix length in {input:?}: must be 0-32 for an IPv4 address or 0-128 for an IPv6 address")]
    BadPrefixLength {
        /// The text as written.
        input: String,
    },
    /// A port is not a number in 0-65535, or a range is not `LO-HI`.
    #[error("invalid port or port range {input:?}: expected a port number 0-65535 (e.g. 80) or a range LO-HI (e.g. \"8000-8100\")")]
    BadPort {
        /// The text as written.
        input: String,
    },
    /// A port range whose low end is above its high end.
    #[error("invalid port range {input:?}: the first port ({lo}) is greater than the last ({hi})")]
    ReversedPortRange {
        /// The text as written.
        input: String,
        /// The low end as written.
        lo: u16,
        /// The high end as written.
        hi: u16,
    },
    /// Not a known protocol name or a number in 0-255.
    #[error("invalid protocol {input:?}: expected tcp, udp, icmp, icmpv6 or an IP protocol number 0-255")]
    BadProtocol {
        /// The text as written.
        input: String,
    },
    /// Not a known direction.
    #[error("invalid direction {input:?}: expected \"in\", \"inbound\", \"out\" or \"outbound\"")]
    BadDirection {
        /// The text as written.
        input: String,
    },
    /// Not a direction a pipe can carry.
    #[error("invalid pipe direction {input:?}: expected \"in\", \"out\" or \"both\"")]
    BadPipeDirection {
        /// The text as written.
        input: String,
    },
}

// ---------------------------------------------------------------------------------------
// IpPrefix
// ---------------------------------------------------------------------------------------

/// An IPv4 or IPv6 network prefix: an address and a prefix length.
///
/// Accepted forms: `"10.0.0.0/8"`, `"2001:db8::/32"`, `"::/0"`, and a bare address
/// (`"10.0.0.1"`, `"::1"`), which is a host prefix (/32 or /128).
///
/// **Host bits are accepted and cleared**: `"10.1.2.3/8"` is the same prefix as
/// `"10.0.0.0/8"`. (Rejecting them would make configs written as "my address/my subnet"
/// fail to load for no safety benefit; [`IpPrefix::addr`] returns the normalised network
/// address, and `Display` prints the normalised form.)
///
/// Families never mix: an IPv4 prefix (even `0.0.0.0/0`) matches only IPv4 addresses and
/// an IPv6 prefix (even `::/0`) only IPv6 addresses. IPv4-mapped IPv6 addresses
/// (`::ffff:a.b.c.d`) are IPv6 addresses here.
///
/// Parsing and normalisation are `ipnet`'s; the prefix also keeps its network and mask as
/// one number each so that the classifier's per-packet test is a mask and a compare.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    net: ipnet::IpNet,
    /// The network address as a number: an IPv4 address is in the low 32 bits.
    bits: u128,
    /// The mask for `bits`, in the same representation.
    mask: u128,
}

impl IpPrefix {
    /// A prefix from an address and a length; host bits are cleared.
    /// Fails if `len` is over 32 (IPv4) or 128 (IPv6).
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, NetParseError> {
        let net = ipnet::IpNet::new(addr, len)
            .map_err(|_| NetParseError::BadPrefixLength {
                input: format!("{addr}/{len}"),
            })?
            .trunc();
        Ok(Self::from_net(net))
    }

    /// The prefix of an `ipnet` network (host bits cleared).
    pub fn from_net(net: ipnet::IpNet) -> Self {
        let net = net.trunc();
        let (bits, mask) = match net {
            ipnet::IpNet::V4(n) => (
                u128::from(u32::from(n.network())),
                u128::from(u32::from(n.netmask())),
            ),
            ipnet::IpNet::V6(n) => (u128::from(n.network()), u128::from(n.netmask())),
        };
        Self { net, bits, mask }
    }

    /// The prefix that matches exactly one address.
    pub fn host(addr: IpAddr) -> Self {
        Self::from_net(ipnet::IpNet::from(addr))
    }

    /// The prefix as an `ipnet` network.
    pub fn net(&self) -> ipnet::IpNet {
        self.net
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.net.network()
    }

    /// The prefix length in bits.
    pub fn len(&self) -> u8 {
        self.net.prefix_len()
    }

    /// True for a zero-length prefix (`0.0.0.0/0` or `::/0`), which matches every address
    /// of its family.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if this is an IPv6 prefix.
    pub fn is_ipv6(&self) -> bool {
        matches!(self.net, ipnet::IpNet::V6(_))
    }

    /// True if `addr` is inside this prefix (and of the same family).
    pub fn contains(&self, addr: &IpAddr) -> bool {
        self.net.contains(addr)
    }

    /// Fast path: true if the IPv4 address (as a host-order number) is inside this prefix.
    #[inline]
    pub fn contains_v4(&self, addr: u32) -> bool {
        !self.is_ipv6() && (addr as u128 & self.mask) == self.bits
    }

    /// Fast path: true if the IPv6 address (as a host-order number) is inside this prefix.
    #[inline]
    pub fn contains_v6(&self, addr: u128) -> bool {
        self.is_ipv6() && (addr & self.mask) == self.bits
    }

    /// Fast path on the classifier's address representation: `v6` tells the family, and an
    /// IPv4 address is the low 32 bits of `addr`.
    #[inline]
    pub fn contains_raw(&self, v6: bool, addr: u128) -> bool {
        self.is_ipv6() == v6 && (addr & self.mask) == self.bits
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len())
    }
}

impl fmt::Debug for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpPrefix({self})")
    }
}

impl FromStr for IpPrefix {
    type Err = NetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let (addr_s, len_s) = match t.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (t, None),
        };
        let addr: IpAddr = addr_s.parse().map_err(|_| NetParseError::BadAddress {
            input: s.to_string(),
        })?;
        match len_s {
            None => Ok(Self::host(addr)),
            Some(l) => {
                // u8::from_str accepts a leading '+'; insist on plain digits.
                if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(NetParseError::BadPrefixLength {
                        input: s.to_string(),
                    });
                }
                let len: u8 = l.parse().map_err(|_| NetParseError::BadPrefixLength {
                    input: s.to_string(),
                })?;
                Self::new(addr, len).map_err(|_| NetParseError::BadPrefixLength {
                    input: s.to_string(),
                })
            }
        }
    }
}

impl<'de> Deserialize<'de> for IpPrefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IpPrefix;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IP prefix string such as \"10.0.0.0/8\", \"192.0.2.1\" or \"2001:db8::/32\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IpPrefix, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for IpPrefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

// ---------------------------------------------------------------------------------------
// PortRange
// ---------------------------------------------------------------------------------------

/// An inclusive range of TCP/UDP ports.
///
/// Accepted forms: an integer (`80`), a string with one port (`"80"`) or a range
/// `"LO-HI"` (`"8000-8100"`, inclusive, `LO <= HI`). Whitespace around the numbers is
/// ignored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PortRange {
    /// First port in the range.
    pub lo: u16,
    /// Last port in the range (inclusive).
    pub hi: u16,
}

impl PortRange {
    /// Every port, 0-65535.
    pub const ANY: PortRange = PortRange {
        lo: 0,
        hi: u16::MAX,
    };

    /// A range of one port.
    pub const fn single(port: u16) -> Self {
        Self { lo: port, hi: port }
    }

    /// A range `lo..=hi`; `None` if `lo > hi`.
    pub const fn new(lo: u16, hi: u16) -> Option<Self> {
        if lo <= hi {
            Some(Self { lo, hi })
        } else {
            None
        }
    }

    /// True if `port` is in the range.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

fn parse_port(s: &str, input: &str) -> Result<u16, NetParseError> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NetParseError::BadPort {
            input: input.to_string(),
        });
    }
    t.parse().map_err(|_| NetParseError::BadPort {
        input: input.to_string(),
    })
}

impl FromStr for PortRange {
    type Err = NetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('-') {
            None => Ok(Self::single(parse_port(s, s)?)),
            Some((a, b)) => {
                let lo = parse_port(a, s)?;
                let hi = parse_port(b, s)?;
                Self::new(lo, hi).ok_or(NetParseError::ReversedPortRange {
                    input: s.to_string(),
                    lo,
                    hi,
                })
            }
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number 0-65535 or a port range string such as \"8000-8100\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRange, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRange, E> {
                u16::try_from(v).map(PortRange::single).map_err(|_| {
                    E::custom(NetParseError::BadPort {
                        input: v.to_string(),
                    })
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRange, E> {
                u16::try_from(v).map(PortRange::single).map_err(|_| {
                    E::custom(NetParseError::BadPort {
                        input: v.to_string(),
                    })
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.lo == self.hi {
            s.serialize_u16(self.lo)
        } else {
            s.collect_str(self)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Protocol
// ---------------------------------------------------------------------------------------

/// An IP protocol (the IPv4 `protocol` field or the IPv6 upper-layer `next header`).
///
/// Accepted forms (case-insensitive): `"tcp"`, `"udp"`, `"icmp"`, `"icmpv6"` (also
/// `"ipv6-icmp"`), or a number 0-255 given as an integer or a string. A number that has a
/// name is normalised to it (`6` is [`Protocol::Tcp`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Protocol {
    /// TCP, protocol 6.
    Tcp,
    /// UDP, protocol 17.
    Udp,
    /// ICMP for IPv4, protocol 1.
    Icmp,
    /// ICMP for IPv6, protocol 58.
    Icmpv6,
    /// Any other protocol number (never 1, 6, 17 or 58: see [`Protocol::from_number`]).
    Other(u8),
}

impl Protocol {
    /// The protocol for an IP protocol number, normalising named numbers.
    pub const fn from_number(n: u8) -> Self {
        match n {
            1 => Protocol::Icmp,
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            58 => Protocol::Icmpv6,
            n => Protocol::Other(n),
        }
    }

    /// The IP protocol number.
    pub const fn number(&self) -> u8 {
        match self {
            Protocol::Icmp => 1,
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmpv6 => 58,
            Protocol::Other(n) => *n,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
            Protocol::Icmp => f.write_str("icmp"),
            Protocol::Icmpv6 => f.write_str("icmpv6"),
            Protocol::Other(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for Protocol {
    type Err = NetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "icmp" => Ok(Protocol::Icmp),
            "icmpv6" | "ipv6-icmp" => Ok(Protocol::Icmpv6),
            _ if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => t
                .parse::<u8>()
                .map(Protocol::from_number)
                .map_err(|_| NetParseError::BadProtocol {
                    input: s.to_string(),
                }),
            _ => Err(NetParseError::BadProtocol {
                input: s.to_string(),
            }),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Protocol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("tcp, udp, icmp, icmpv6 or an IP protocol number 0-255")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Protocol, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Protocol, E> {
                u8::try_from(v).map(Protocol::from_number).map_err(|_| {
                    E::custom(NetParseError::BadProtocol {
                        input: v.to_string(),
                    })
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Protocol, E> {
                u8::try_from(v).map(Protocol::from_number).map_err(|_| {
                    E::custom(NetParseError::BadProtocol {
                        input: v.to_string(),
                    })
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Protocol::Other(n) => s.serialize_u8(*n),
            _ => s.collect_str(self),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Direction
// ---------------------------------------------------------------------------------------

/// Which way a packet travels relative to this host.
///
/// * `Inbound`: arrived on the outer (network-facing) interface, heading to the host; the
///   packet's destination is the local endpoint.
/// * `Outbound`: sent by the host, heading out to the network; the packet's source is the
///   local endpoint.
///
/// Accepted forms (case-insensitive): `"in"`, `"inbound"`, `"out"`, `"outbound"`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Direction {
    /// From the network to the host.
    Inbound,
    /// From the host to the network.
    Outbound,
}

impl Direction {
    /// The other direction.
    pub const fn reverse(self) -> Self {
        match self {
            Direction::Inbound => Direction::Outbound,
            Direction::Outbound => Direction::Inbound,
        }
    }

    /// 0 for inbound, 1 for outbound: for indexing per-direction counters.
    pub const fn index(self) -> usize {
        match self {
            Direction::Inbound => 0,
            Direction::Outbound => 1,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        })
    }
}

impl FromStr for Direction {
    type Err = NetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "in" | "inbound" => Ok(Direction::Inbound),
            "out" | "outbound" => Ok(Direction::Outbound),
            _ => Err(NetParseError::BadDirection {
                input: s.to_string(),
            }),
        }
    }
}

impl<'de> Deserialize<'de> for Direction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Direction;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"in\", \"inbound\", \"out\" or \"outbound\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Direction, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Direction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The directions a pipe carries: one [`Direction`] or both (the two directions then share
/// the pipe's capacity; a full-duplex link with a limit each way is two pipes).
///
/// Accepted forms: those of [`Direction`], and `"both"`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum PipeDirection {
    /// From the network to the host.
    Inbound,
    /// From the host to the network (the default: what pipes always carried).
    #[default]
    Outbound,
    /// Both directions.
    Both,
}

impl PipeDirection {
    /// Whether traffic travelling in `dir` belongs on the pipe.
    pub const fn carries(self, dir: Direction) -> bool {
        matches!(
            (self, dir),
            (PipeDirection::Both, _)
                | (PipeDirection::Inbound, Direction::Inbound)
                | (PipeDirection::Outbound, Direction::Outbound)
        )
    }
}

impl From<Direction> for PipeDirection {
    fn from(d: Direction) -> Self {
        match d {
            Direction::Inbound => PipeDirection::Inbound,
            Direction::Outbound => PipeDirection::Outbound,
        }
    }
}

impl fmt::Display for PipeDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipeDirection::Inbound => Direction::Inbound.fmt(f),
            PipeDirection::Outbound => Direction::Outbound.fmt(f),
            PipeDirection::Both => f.write_str("both"),
        }
    }
}

impl FromStr for PipeDirection {
    type Err = NetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("both") {
            return Ok(PipeDirection::Both);
        }
        s.parse::<Direction>()
            .map(PipeDirection::from)
            .map_err(|_| NetParseError::BadPipeDirection {
                input: s.to_string(),
            })
    }
}

impl<'de> Deserialize<'de> for PipeDirection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PipeDirection;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"in\", \"out\" or \"both\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PipeDirection, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for PipeDirection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

// ---------------------------------------------------------------------------------------
// FlowRule
// ---------------------------------------------------------------------------------------

/// One traffic-selection rule of a job: which flows belong to it.
///
/// Every field is optional and every field that is present must match (logical AND).
/// **An empty rule (`{}`) matches every flow.** Fields:
///
/// * `local` / `remote`: prefix that the local / remote address must be in. "Local" is
///   this host's end of the flow: the destination of an inbound packet, the source of an
///   outbound one.
/// * `local_port` / `remote_port`: port range for the local / remote port. A rule with a
///   port field only matches protocols that have ports (TCP, UDP, SCTP, DCCP, UDP-Lite),
///   never ICMP. Non-first IP fragments carry no ports and are keyed with ports 0, so
///   they match a port field only if its range includes 0.
/// * `protocol`: IP protocol.
/// * `direction`: which side opened the flow: `inbound` for flows whose first packet seen
///   arrived from the network (connections to a local server), `outbound` for flows the
///   host started.
///
/// ```toml
/// [[job]]
/// name = "web"
/// [[job.flow]]
/// local_port = 80
/// protocol = "tcp"
/// direction = "in"
/// [[job.flow]]
/// remote = "10.1.0.0/16"
/// remote_port = "5432"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRule {
    /// Prefix for this host's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<IpPrefix>,
    /// Ports for this host's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<PortRange>,
    /// Prefix for the peer's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<IpPrefix>,
    /// Ports for the peer's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_port: Option<PortRange>,
    /// IP protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Which side opened the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
}

impl FlowRule {
    /// True if the rule has no constraint and so matches every flow.
    pub fn is_match_all(&self) -> bool {
        *self == FlowRule::default()
    }

    /// True if the rule constrains a port.
    pub fn has_port_constraint(&self) -> bool {
        self.local_port.is_some() || self.remote_port.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn p(s: &str) -> IpPrefix {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_parse_forms() {
        let a = p("10.0.0.0/8");
        assert_eq!(a.addr(), "10.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(a.len(), 8);
        assert!(!a.is_ipv6());
        let h = p("10.0.0.1");
        assert_eq!(h.len(), 32);
        assert_eq!(h.to_string(), "10.0.0.1/32");
        let z = p("::/0");
        assert!(z.is_ipv6() && z.is_empty());
        let v6 = p("2001:db8::/32");
        assert_eq!(v6.len(), 32);
        assert_eq!(p("::1").len(), 128);
        assert_eq!(p(" 10.0.0.0/8 "), a);
        assert_eq!(p("0.0.0.0/0").to_string(), "0.0.0.0/0");
    }

    #[test]
    fn prefix_host_bits_normalised() {
        assert_eq!(p("10.1.2.3/8"), p("10.0.0.0/8"));
        assert_eq!(p("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(p("2001:db8:ffff::1/32").to_string(), "2001:db8::/32");
    }

    #[test]
    fn prefix_parse_errors() {
        for bad in [
            "",
            "10.0.0",
            "10.0.0.256/8",
            "host.example",
            "10.0.0.0/",
            "/8",
            "1.2.3.4/x",
        ] {
            let e = bad.parse::<IpPrefix>().unwrap_err();
            assert!(
                matches!(
                    e,
                    NetParseError::BadAddress { .. } | NetParseError::BadPrefixLength { .. }
                ),
                "{bad}: {e}"
            );
        }
        assert!(matches!(
            "10.0.0.0/33".parse::<IpPrefix>(),
            Err(NetParseError::BadPrefixLength { .. })
        ));
        assert!(matches!(
            "10.0.0.0/+8".parse::<IpPrefix>(),
            Err(NetParseError::BadPrefixLength { .. })
        ));
        assert!(matches!(
            "::/129".parse::<IpPrefix>(),
            Err(NetParseError::BadPrefixLength { .. })
        ));
        assert!(matches!(
            "10.0.0.0/999".parse::<IpPrefix>(),
            Err(NetParseError::BadPrefixLength { .. })
        ));
        assert!(matches!(
            "10.0.0.x/8".parse::<IpPrefix>(),
            Err(NetParseError::BadAddress { .. })
        ));
        let msg = "10.0.0.0/33".parse::<IpPrefix>().unwrap_err().to_string();
        assert!(msg.contains("0-32"), "{msg}");
    }

    #[test]
    fn prefix_contains() {
        let a = p("10.0.0.0/8");
        assert!(a.contains(&"10.255.1.2".parse().unwrap()));
        assert!(!a.contains(&"11.0.0.0".parse().unwrap()));
        assert!(
            !a.contains(&"::ffff:10.0.0.1".parse().unwrap()),
            "families never mix"
        );
        let all4 = p("0.0.0.0/0");
        assert!(all4.contains(&"1.2.3.4".parse().unwrap()));
        assert!(!all4.contains(&"::1".parse().unwrap()));
        let all6 = p("::/0");
        assert!(all6.contains(&"2001:db8::1".parse().unwrap()));
        assert!(!all6.contains(&"1.2.3.4".parse().unwrap()));
        let v6 = p("2001:db8::/32");
        assert!(v6.contains(&"2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains(&"2001:db9::1".parse().unwrap()));
        let h = p("192.0.2.7");
        assert!(h.contains_v4(u32::from(Ipv4Addr::new(192, 0, 2, 7))));
        assert!(!h.contains_v4(u32::from(Ipv4Addr::new(192, 0, 2, 8))));
        assert!(h.contains_raw(false, u32::from(Ipv4Addr::new(192, 0, 2, 7)) as u128));
        assert!(!h.contains_raw(true, u32::from(Ipv4Addr::new(192, 0, 2, 7)) as u128));
        let p31 = p("192.0.2.6/31");
        assert!(p31.contains(&"192.0.2.7".parse().unwrap()));
        assert!(!p31.contains(&"192.0.2.8".parse().unwrap()));
    }

    #[test]
    fn port_range_parse() {
        assert_eq!("80".parse::<PortRange>().unwrap(), PortRange::single(80));
        assert_eq!(
            "8000-8100".parse::<PortRange>().unwrap(),
            PortRange { lo: 8000, hi: 8100 }
        );
        assert_eq!(
            " 1 - 2 ".parse::<PortRange>().unwrap(),
            PortRange { lo: 1, hi: 2 }
        );
        assert_eq!("0-65535".parse::<PortRange>().unwrap(), PortRange::ANY);
        assert_eq!("5-5".parse::<PortRange>().unwrap(), PortRange::single(5));
        for bad in ["", "x", "65536", "-1", "1-", "-", "1-2-3", "+80", "80-x"] {
            assert!(
                matches!(bad.parse::<PortRange>(), Err(NetParseError::BadPort { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            "9-8".parse::<PortRange>(),
            Err(NetParseError::ReversedPortRange { lo: 9, hi: 8, .. })
        ));
        let r = PortRange { lo: 10, hi: 20 };
        assert!(r.contains(10) && r.contains(20) && r.contains(15));
        assert!(!r.contains(9) && !r.contains(21));
        assert_eq!(r.to_string(), "10-20");
        assert_eq!(PortRange::new(3, 2), None);
    }

    #[test]
    fn protocol_parse() {
        assert_eq!("tcp".parse::<Protocol>().unwrap(), Protocol::Tcp);
        assert_eq!("UDP".parse::<Protocol>().unwrap(), Protocol::Udp);
        assert_eq!("icmp".parse::<Protocol>().unwrap(), Protocol::Icmp);
        assert_eq!("icmpv6".parse::<Protocol>().unwrap(), Protocol::Icmpv6);
        assert_eq!("ipv6-icmp".parse::<Protocol>().unwrap(), Protocol::Icmpv6);
        assert_eq!("47".parse::<Protocol>().unwrap(), Protocol::Other(47));
        assert_eq!("6".parse::<Protocol>().unwrap(), Protocol::Tcp);
        assert_eq!("0".parse::<Protocol>().unwrap().number(), 0);
        assert_eq!("255".parse::<Protocol>().unwrap().number(), 255);
        for bad in ["", "tcpp", "256", "-1", "+6", "gre"] {
            assert!(
                matches!(
                    bad.parse::<Protocol>(),
                    Err(NetParseError::BadProtocol { .. })
                ),
                "{bad}"
            );
        }
        for n in 0..=255u8 {
            assert_eq!(Protocol::from_number(n).number(), n);
        }
    }

    #[test]
    fn direction_parse() {
        assert_eq!("in".parse::<Direction>().unwrap(), Direction::Inbound);
        assert_eq!("Inbound".parse::<Direction>().unwrap(), Direction::Inbound);
        assert_eq!("out".parse::<Direction>().unwrap(), Direction::Outbound);
        assert_eq!(
            "outbound".parse::<Direction>().unwrap(),
            Direction::Outbound
        );
        assert!(matches!(
            "sideways".parse::<Direction>(),
            Err(NetParseError::BadDirection { .. })
        ));
        assert_eq!("both".parse(), Ok(PipeDirection::Both));
        assert_eq!("IN".parse(), Ok(PipeDirection::Inbound));
        assert_eq!("outbound".parse(), Ok(PipeDirection::Outbound));
        assert!(matches!(
            "sideways".parse::<PipeDirection>(),
            Err(NetParseError::BadPipeDirection { .. })
        ));
        assert!(PipeDirection::Both.carries(Direction::Inbound));
        assert!(!PipeDirection::Outbound.carries(Direction::Inbound));
        assert!(PipeDirection::Inbound.carries(Direction::Inbound));
        assert_eq!(Direction::Inbound.reverse(), Direction::Outbound);
    }

    #[derive(Deserialize, Debug)]
    struct Doc {
        rule: Vec<FlowRule>,
    }

    fn doc(s: &str) -> Result<Doc, toml::de::Error> {
        toml::from_str(s)
    }

    #[test]
    fn flow_rule_toml() {
        let d = doc(r#"
            [[rule]]
            local = "10.0.0.0/8"
            local_port = 80
            remote = "2001:db8::/32"
            remote_port = "1024-65535"
            protocol = "tcp"
            direction = "in"
            [[rule]]
            protocol = 47
            [[rule]]
        "#)
        .unwrap();
        assert_eq!(d.rule.len(), 3);
        let r = &d.rule[0];
        assert_eq!(r.local, Some(p("10.0.0.0/8")));
        assert_eq!(r.local_port, Some(PortRange::single(80)));
        assert_eq!(r.remote, Some(p("2001:db8::/32")));
        assert_eq!(
            r.remote_port,
            Some(PortRange {
                lo: 1024,
                hi: 65535
            })
        );
        assert_eq!(r.protocol, Some(Protocol::Tcp));
        assert_eq!(r.direction, Some(Direction::Inbound));
        assert!(r.has_port_constraint());
        assert_eq!(d.rule[1].protocol, Some(Protocol::Other(47)));
        assert!(d.rule[2].is_match_all());
    }

    #[test]
    fn flow_rule_toml_errors_are_helpful() {
        let cases = [
            ("[[rule]]\nlocal = \"10.0.0.0/33\"\n", "0-32"),
            ("[[rule]]\nlocal = \"nonsense\"\n", "IPv4 or IPv6"),
            ("[[rule]]\nlocal = 10\n", "IP prefix string"),
            ("[[rule]]\nlocal_port = 70000\n", "0-65535"),
            ("[[rule]]\nlocal_port = \"90-80\"\n", "greater than"),
            ("[[rule]]\nremote_port = -5\n", "0-65535"),
            ("[[rule]]\nprotocol = \"tcpx\"\n", "tcp, udp"),
            ("[[rule]]\nprotocol = 300\n", "0-255"),
            ("[[rule]]\ndirection = \"up\"\n", "inbound"),
            ("[[rule]]\nlocal_ip = \"10.0.0.1\"\n", "unknown field"),
        ];
        for (text, needle) in cases {
            let e = doc(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(
                e.contains("line 2"),
                "{text:?} should carry a location: {e}"
            );
        }
    }

    #[test]
    fn serialize_round_trip() {
        let r = FlowRule {
            local: Some(p("10.0.0.0/8")),
            local_port: Some(PortRange { lo: 1, hi: 2 }),
            remote: None,
            remote_port: Some(PortRange::single(53)),
            protocol: Some(Protocol::Other(47)),
            direction: Some(Direction::Outbound),
        };
        #[derive(Serialize, Deserialize)]
        struct W {
            r: FlowRule,
        }
        let s = toml::to_string(&W { r: r.clone() }).unwrap();
        let back: W = toml::from_str(&s).unwrap();
        assert_eq!(back.r, r);
    }
}
