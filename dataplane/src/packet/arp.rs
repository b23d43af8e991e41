//! ARP for Ethernet / IPv4 (RFC 826): the only variant Headroom answers or inspects.

use std::net::Ipv4Addr;

use super::ethernet::{ethertype, EthernetAddress};
use super::field::*;
use super::{Layer, ParseError};

/// Length of an Ethernet/IPv4 ARP packet.
pub const ARP_LEN: usize = 28;

/// ARP operation codes.
pub mod op {
    /// Request (who-has).
    pub const REQUEST: u16 = 1;
    /// Reply (is-at).
    pub const REPLY: u16 = 2;
}

/// A view of an Ethernet/IPv4 ARP packet. `new_checked` rejects other hardware or
/// protocol types with [`ParseError::Unsupported`]; accessors never panic.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Validate length and the htype/ptype/hlen/plen fields.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        let b = buf.as_ref();
        if b.len() < ARP_LEN {
            return Err(ParseError::Truncated { layer: Layer::Arp });
        }
        if u16_at(b, 0) != 1
            || u16_at(b, 2) != ethertype::IPV4
            || u8_at(b, 4) != 6
            || u8_at(b, 5) != 4
        {
            return Err(ParseError::Unsupported { layer: Layer::Arp });
        }
        Ok(Self { buf })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Operation ([`op::REQUEST`], [`op::REPLY`], ...).
    pub fn operation(&self) -> u16 {
        u16_at(self.buf.as_ref(), 6)
    }

    /// Sender hardware address.
    pub fn sender_hw_addr(&self) -> EthernetAddress {
        EthernetAddress(array_at(self.buf.as_ref(), 8))
    }

    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.buf.as_ref(), 14))
    }

    /// Target hardware address.
    pub fn target_hw_addr(&self) -> EthernetAddress {
        EthernetAddress(array_at(self.buf.as_ref(), 18))
    }

    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.buf.as_ref(), 24))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Set the operation.
    pub fn set_operation(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 6, v);
    }
    /// Set the sender hardware address.
    pub fn set_sender_hw_addr(&mut self, a: EthernetAddress) {
        set_bytes(self.buf.as_mut(), 8, &a.0);
    }
    /// Set the sender protocol address.
    pub fn set_sender_ip(&mut self, a: Ipv4Addr) {
        set_bytes(self.buf.as_mut(), 14, &a.octets());
    }
    /// Set the target hardware address.
    pub fn set_target_hw_addr(&mut self, a: EthernetAddress) {
        set_bytes(self.buf.as_mut(), 18, &a.0);
    }
    /// Set the target protocol address.
    pub fn set_target_ip(&mut self, a: Ipv4Addr) {
        set_bytes(self.buf.as_mut(), 24, &a.octets());
    }
}

/// An Ethernet/IPv4 ARP message, for building and answering.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ArpRepr {
    /// Operation.
    pub operation: u16,
    /// Sender hardware address.
    pub sender_hw: EthernetAddress,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_hw: EthernetAddress,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Read a validated packet.
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Self {
        Self {
            operation: p.operation(),
            sender_hw: p.sender_hw_addr(),
            sender_ip: p.sender_ip(),
            target_hw: p.target_hw_addr(),
            target_ip: p.target_ip(),
        }
    }

    /// A who-has request for `target_ip`.
    pub fn request(sender_hw: EthernetAddress, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Self {
        Self {
            operation: op::REQUEST,
            sender_hw,
            sender_ip,
            target_hw: EthernetAddress::ZERO,
            target_ip,
        }
    }

    /// The reply to this request saying `self.target_ip` is at `my_hw`.
    pub fn reply(&self, my_hw: EthernetAddress) -> Self {
        Self {
            operation: op::REPLY,
            sender_hw: my_hw,
            sender_ip: self.target_ip,
            target_hw: self.sender_hw,
            target_ip: self.sender_ip,
        }
    }

    /// Write the 28-byte packet at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ParseError> {
        if buf.len() < ARP_LEN {
            return Err(ParseError::BufferTooSmall { layer: Layer::Arp });
        }
        set_u16(buf, 0, 1);
        set_u16(buf, 2, ethertype::IPV4);
        set_u8(buf, 4, 6);
        set_u8(buf, 5, 4);
        set_u16(buf, 6, self.operation);
        set_bytes(buf, 8, &self.sender_hw.0);
        set_bytes(buf, 14, &self.sender_ip.octets());
        set_bytes(buf, 18, &self.target_hw.0);
        set_bytes(buf, 24, &self.target_ip.octets());
        Ok(ARP_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_reply_round_trip() {
        let me = EthernetAddress([2, 0, 0, 0, 0, 9]);
        let peer = EthernetAddress([2, 0, 0, 0, 0, 1]);
        let req = ArpRepr::request(peer, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 9));
        let mut buf = [0u8; 28];
        req.emit(&mut buf).unwrap();
        let p = ArpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(ArpRepr::parse(&p), req);
        let rep = req.reply(me);
        assert_eq!(rep.operation, op::REPLY);
        assert_eq!(rep.sender_ip, Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(rep.target_hw, peer);
        let mut p = ArpPacket::new_checked(&mut buf[..]).unwrap();
        p.set_operation(op::REPLY);
        p.set_sender_hw_addr(me);
        p.set_sender_ip(rep.sender_ip);
        p.set_target_hw_addr(peer);
        p.set_target_ip(rep.target_ip);
        assert_eq!(ArpRepr::parse(&p), rep);
    }

    #[test]
    fn rejects() {
        assert_eq!(
            ArpPacket::new_checked(&[0u8; 27][..]).unwrap_err(),
            ParseError::Truncated { layer: Layer::Arp }
        );
        let mut buf = [0u8; 28];
        ArpRepr::request(
            EthernetAddress::ZERO,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
        )
        .emit(&mut buf)
        .unwrap();
        for (i, v) in [(1usize, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut b = buf;
            b[i] = v;
            assert_eq!(
                ArpPacket::new_checked(&b[..]).unwrap_err(),
                ParseError::Unsupported { layer: Layer::Arp }
            );
        }
        assert!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap())
            .emit(&mut [0u8; 27])
            .is_err());
    }
}
