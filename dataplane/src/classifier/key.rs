//! The 5-tuple flow key.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use headroom_config::net::Direction;

/// A flow's 5-tuple: protocol, source and destination addresses and ports, for IPv4 or
/// IPv6.
///
/// Layout: 38 bytes, no padding, `Copy`; addresses are stored as 16 big-endian bytes
/// (an IPv4 address in the last 4, the first 12 zero) plus a family flag, so IPv4 and
/// IPv6 keys share one type and one hash table, and `::a.b.c.d` never equals `a.b.c.d`.
/// Hashing feeds two `u128`s and one `u64` to the hasher.
///
/// Ports:
/// * TCP, UDP, SCTP, DCCP, UDP-Lite: the transport ports.
/// * ICMP / ICMPv6 echo request and reply: **both ports are the echo identifier**, so a
///   ping's requests and replies form one flow, and different pings between the same two
///   hosts are different flows.
/// * Other ICMP messages (errors, neighbour discovery, ...), other protocols, and
///   non-first IP fragments: both ports are 0 (one flow per protocol and address pair).
///
/// A key from [`crate::packet::parse_frame`] is as seen on the wire (src = sender). The
/// classifier's table is keyed by the *oriented* key from [`FlowKey::local_remote`], whose
/// `src` is the local endpoint, so both directions of a connection share one entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    src: [u8; 16],
    dst: [u8; 16],
    src_port: u16,
    dst_port: u16,
    protocol: u8,
    v6: bool,
}

impl Hash for FlowKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.src));
        state.write_u128(u128::from_ne_bytes(self.dst));
        state.write_u64(
            (self.src_port as u64)
                | ((self.dst_port as u64) << 16)
                | ((self.protocol as u64) << 32)
                | ((self.v6 as u64) << 40),
        );
    }
}

/// True for IP protocols whose first four payload bytes are source and destination ports.
#[inline]
pub const fn protocol_has_ports(protocol: u8) -> bool {
    matches!(protocol, 6 | 17 | 33 | 132 | 136)
}

#[inline]
fn v4_bytes(a: [u8; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[12..].copy_from_slice(&a);
    b
}

impl FlowKey {
    /// An IPv4 key.
    #[inline]
    pub fn v4(protocol: u8, src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16) -> Self {
        Self::v4_bytes(protocol, src.octets(), dst.octets(), src_port, dst_port)
    }

    /// An IPv4 key from address bytes.
    #[inline]
    pub fn v4_bytes(
        protocol: u8,
        src: [u8; 4],
        dst: [u8; 4],
        src_port: u16,
        dst_port: u16,
    ) -> Self {
        Self {
            src: v4_bytes(src),
            dst: v4_bytes(dst),
            src_port,
            dst_port,
            protocol,
            v6: false,
        }
    }

    /// An IPv6 key.
    #[inline]
    pub fn v6(protocol: u8, src: Ipv6Addr, dst: Ipv6Addr, src_port: u16, dst_port: u16) -> Self {
        Self::v6_bytes(protocol, src.octets(), dst.octets(), src_port, dst_port)
    }

    /// An IPv6 key from address bytes.
    #[inline]
    pub fn v6_bytes(
        protocol: u8,
        src: [u8; 16],
        dst: [u8; 16],
        src_port: u16,
        dst_port: u16,
    ) -> Self {
        Self {
            src,
            dst,
            src_port,
            dst_port,
            protocol,
            v6: true,
        }
    }

    /// A key from `IpAddr`s; `None` if the families differ.
    pub fn new(
        protocol: u8,
        src: IpAddr,
        dst: IpAddr,
        src_port: u16,
        dst_port: u16,
    ) -> Option<Self> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Some(Self::v4(protocol, s, d, src_port, dst_port)),
            (IpAddr::V6(s), IpAddr::V6(d)) => Some(Self::v6(protocol, s, d, src_port, dst_port)),
            _ => None,
        }
    }

    /// IP protocol number.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// True for an IPv6 key.
    #[inline]
    pub fn is_ipv6(&self) -> bool {
        self.v6
    }

    /// True if the protocol has transport ports (see [`protocol_has_ports`]).
    #[inline]
    pub fn has_ports(&self) -> bool {
        protocol_has_ports(self.protocol)
    }

    /// Source port (see the type docs for ICMP and other protocols).
    #[inline]
    pub fn src_port(&self) -> u16 {
        self.src_port
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.dst_port
    }

    /// Source address as a number (IPv4 in the low 32 bits), for prefix matching.
    #[inline]
    pub fn src_raw(&self) -> u128 {
        u128::from_be_bytes(self.src)
    }

    /// Destination address as a number (IPv4 in the low 32 bits).
    #[inline]
    pub fn dst_raw(&self) -> u128 {
        u128::from_be_bytes(self.dst)
    }

    fn ip(&self, b: [u8; 16]) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(b))
        } else {
            IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15]))
        }
    }

    /// Source address.
    pub fn src_ip(&self) -> IpAddr {
        self.ip(self.src)
    }

    /// Destination address.
    pub fn dst_ip(&self) -> IpAddr {
        self.ip(self.dst)
    }

    /// The same flow seen from the other end (addresses and ports swapped).
    #[inline]
    pub fn reversed(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            ..*self
        }
    }

    /// Orient a wire key by the packet's direction: the result's `src` is the **local**
    /// endpoint and `dst` the **remote** one. Inbound packets have the local end as their
    /// destination, so they are reversed; outbound keys are returned unchanged.
    #[inline]
    pub fn local_remote(&self, dir: Direction) -> Self {
        match dir {
            Direction::Inbound => self.reversed(),
            Direction::Outbound => *self,
        }
    }
}

fn proto_name(p: u8) -> Option<&'static str> {
    match p {
        1 => Some("icmp"),
        6 => Some("tcp"),
        17 => Some("udp"),
        58 => Some("icmpv6"),
        _ => None,
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match proto_name(self.protocol) {
            Some(n) => f.write_str(n)?,
            None => write!(f, "proto{}", self.protocol)?,
        }
        let (s, d) = (self.src_ip(), self.dst_ip());
        if self.v6 {
            write!(f, " [{s}]:{} -> [{d}]:{}", self.src_port, self.dst_port)
        } else {
            write!(f, " {s}:{} -> {d}:{}", self.src_port, self.dst_port)
        }
    }
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlowKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_orientation() {
        assert_eq!(std::mem::size_of::<FlowKey>(), 38);
        let k = FlowKey::v4(
            6,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            1234,
            80,
        );
        assert_eq!(k.local_remote(Direction::Outbound), k);
        let inbound = k.reversed();
        assert_eq!(inbound.local_remote(Direction::Inbound), k);
        assert_eq!(k.src_raw(), u32::from(Ipv4Addr::new(10, 0, 0, 1)) as u128);
        assert_eq!(k.to_string(), "tcp 10.0.0.1:1234 -> 10.0.0.2:80");
        assert!(k.has_ports());
        let m = FlowKey::v6(
            6,
            Ipv4Addr::new(10, 0, 0, 1).to_ipv6_compatible(),
            Ipv4Addr::new(10, 0, 0, 2).to_ipv6_compatible(),
            1234,
            80,
        );
        assert_ne!(k, m, "families never collide");
        assert_eq!(m.src_raw(), k.src_raw());
        assert_eq!(m.to_string(), "tcp [::a00:1]:1234 -> [::a00:2]:80");
        assert!(FlowKey::new(1, k.src_ip(), m.dst_ip(), 0, 0).is_none());
        assert_eq!(FlowKey::new(6, k.src_ip(), k.dst_ip(), 1234, 80), Some(k));
        assert!(!FlowKey::v4(47, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 0, 0).has_ports());
    }
}
