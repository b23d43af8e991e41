//! ICMP (RFC 792) and ICMPv6 (RFC 4443) messages: both share the 8-byte layout
//! type / code / checksum / 4 bytes of "rest of header".

use super::checksum;
use super::field::*;
use super::{Layer, ParseError};

/// Header length (type, code, checksum and rest-of-header).
pub const HEADER_LEN: usize = 8;

/// ICMP and ICMPv6 message types used by Headroom.
pub mod types {
    /// ICMPv4 echo reply.
    pub const V4_ECHO_REPLY: u8 = 0;
    /// ICMPv4 echo request.
    pub const V4_ECHO_REQUEST: u8 = 8;
    /// ICMPv6 echo request.
    pub const V6_ECHO_REQUEST: u8 = 128;
    /// ICMPv6 echo reply.
    pub const V6_ECHO_REPLY: u8 = 129;
}

/// True if `ty` is an echo request or reply for the given family.
pub fn is_echo(v6: bool, ty: u8) -> bool {
    if v6 {
        ty == types::V6_ECHO_REQUEST || ty == types::V6_ECHO_REPLY
    } else {
        ty == types::V4_ECHO_REQUEST || ty == types::V4_ECHO_REPLY
    }
}

/// A view of an ICMP or ICMPv6 message. `new_checked` guarantees 8 bytes.
#[derive(Debug, Clone)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Validate that the 8-byte header is present.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Truncated { layer: Layer::Icmp });
        }
        Ok(Self { buf })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        u8_at(self.buf.as_ref(), 0)
    }
    /// Message code.
    pub fn code(&self) -> u8 {
        u8_at(self.buf.as_ref(), 1)
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        u16_at(self.buf.as_ref(), 2)
    }
    /// Echo identifier (bytes 4-5; meaningful for echo messages).
    pub fn echo_ident(&self) -> u16 {
        u16_at(self.buf.as_ref(), 4)
    }
    /// Echo sequence number (bytes 6-7; meaningful for echo messages).
    pub fn echo_seq(&self) -> u16 {
        u16_at(self.buf.as_ref(), 6)
    }
    /// Everything after the 8-byte header.
    pub fn payload(&self) -> &[u8] {
        let b = self.buf.as_ref();
        slice(b, HEADER_LEN, b.len())
    }
    /// True if the checksum is correct. ICMPv4 has no pseudo-header: pass 0; ICMPv6 needs
    /// the IPv6 pseudo-header sum.
    pub fn verify_checksum(&self, pseudo: u32) -> bool {
        checksum::finish(checksum::combine(pseudo, checksum::sum(self.buf.as_ref()))) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Set the type.
    pub fn set_msg_type(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 0, v);
    }
    /// Set the code.
    pub fn set_code(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 1, v);
    }
    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 2, v);
    }
    /// Set the echo identifier.
    pub fn set_echo_ident(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 4, v);
    }
    /// Set the echo sequence number.
    pub fn set_echo_seq(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 6, v);
    }
    /// Compute and store the checksum over the whole buffer (pseudo 0 for ICMPv4).
    pub fn fill_checksum(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::combine(pseudo, checksum::sum(self.buf.as_ref())));
        self.set_checksum(c);
    }
}

/// An echo request or reply header, for building ICMP messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IcmpEchoRepr {
    /// Type (e.g. [`types::V4_ECHO_REQUEST`]).
    pub msg_type: u8,
    /// Identifier.
    pub ident: u16,
    /// Sequence number.
    pub seq: u16,
}

impl IcmpEchoRepr {
    /// Write the 8-byte header (checksum 0); returns 8.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ParseError> {
        if buf.len() < HEADER_LEN {
            return Err(ParseError::BufferTooSmall { layer: Layer::Icmp });
        }
        set_u8(buf, 0, self.msg_type);
        set_u8(buf, 1, 0);
        set_u16(buf, 2, 0);
        set_u16(buf, 4, self.ident);
        set_u16(buf, 6, self.seq);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_round_trip() {
        let mut buf = [0u8; 12];
        IcmpEchoRepr {
            msg_type: types::V4_ECHO_REQUEST,
            ident: 0x1234,
            seq: 1,
        }
        .emit(&mut buf)
        .unwrap();
        let mut p = IcmpPacket::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum(0);
        assert!(p.verify_checksum(0));
        assert_eq!(
            (p.msg_type(), p.code(), p.echo_ident(), p.echo_seq()),
            (8, 0, 0x1234, 1)
        );
        assert_eq!(p.payload().len(), 4);
        assert!(is_echo(false, p.msg_type()) && !is_echo(true, p.msg_type()));
        p.set_msg_type(types::V4_ECHO_REPLY);
        p.set_code(0);
        p.set_echo_ident(1);
        p.set_echo_seq(2);
        assert!(!p.verify_checksum(0));
        assert!(IcmpPacket::new_checked(&buf[..7]).is_err());
        assert!(IcmpEchoRepr {
            msg_type: 0,
            ident: 0,
            seq: 0
        }
        .emit(&mut [0u8; 7])
        .is_err());
    }
}
