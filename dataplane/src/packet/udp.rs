//! UDP (RFC 768) datagram header.

use super::checksum;
use super::field::*;
use super::{Layer, ParseError};

/// Header length.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram. `new_checked` guarantees the 8-byte header is present, the
/// length field is at least 8, and the datagram it declares fits in the buffer.
/// (`new_checked_header` checks only the header, for first fragments.)
#[derive(Debug, Clone)]
pub struct UdpDatagram<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    /// Validate the header and the length field against the buffer.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(ParseError::Truncated { layer: Layer::Udp });
        }
        let len = u16_at(b, 4) as usize;
        if len < HEADER_LEN {
            return Err(ParseError::BadLength { layer: Layer::Udp });
        }
        if b.len() < len {
            return Err(ParseError::Truncated { layer: Layer::Udp });
        }
        Ok(Self { buf })
    }

    /// Validate only that the 8-byte header is present (for the first fragment of a
    /// fragmented datagram, whose length field covers bytes in later fragments).
    pub fn new_checked_header(buf: T) -> Result<Self, ParseError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Truncated { layer: Layer::Udp });
        }
        Ok(Self { buf })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        u16_at(self.buf.as_ref(), 0)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        u16_at(self.buf.as_ref(), 2)
    }
    /// Length field (header + payload).
    pub fn len(&self) -> u16 {
        u16_at(self.buf.as_ref(), 4)
    }
    /// True if the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        self.len() as usize <= HEADER_LEN
    }
    /// Checksum field (0 = none, IPv4 only).
    pub fn checksum(&self) -> u16 {
        u16_at(self.buf.as_ref(), 6)
    }
    /// Payload, up to the length field (clamped to the buffer).
    pub fn payload(&self) -> &[u8] {
        slice(self.buf.as_ref(), HEADER_LEN, self.len() as usize)
    }
    /// True if the checksum is correct for the given pseudo-header sum, or absent (0).
    pub fn verify_checksum(&self, pseudo: u32) -> bool {
        self.checksum() == 0
            || checksum::finish(checksum::combine(
                pseudo,
                checksum::sum(slice(self.buf.as_ref(), 0, self.len() as usize)),
            )) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpDatagram<T> {
    /// Set the source port.
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 0, v);
    }
    /// Set the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 2, v);
    }
    /// Set the length field.
    pub fn set_len(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 4, v);
    }
    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 6, v);
    }
    /// Compute and store the checksum (a computed 0 is sent as 0xffff, RFC 768).
    pub fn fill_checksum(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let len = self.len() as usize;
        let c = checksum::finish(checksum::combine(
            pseudo,
            checksum::sum(slice(self.buf.as_ref(), 0, len)),
        ));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
    /// Payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let l = self.len() as usize;
        slice_mut(self.buf.as_mut(), HEADER_LEN, l)
    }
}

/// A UDP header, for building datagrams.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length.
    pub payload_len: u16,
}

impl UdpRepr {
    /// Write the 8-byte header (checksum 0); returns 8.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ParseError> {
        if buf.len() < HEADER_LEN || self.payload_len as usize > u16::MAX as usize - HEADER_LEN {
            return Err(ParseError::BufferTooSmall { layer: Layer::Udp });
        }
        set_u16(buf, 0, self.src_port);
        set_u16(buf, 2, self.dst_port);
        set_u16(buf, 4, self.payload_len + HEADER_LEN as u16);
        set_u16(buf, 6, 0);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = vec![0u8; 12];
        UdpRepr {
            src_port: 53,
            dst_port: 5353,
            payload_len: 3,
        }
        .emit(&mut buf)
        .unwrap();
        buf[8..11].copy_from_slice(b"abc");
        let pseudo = checksum::pseudo_header_v6([1; 16], [2; 16], 17, 11);
        let mut d = UdpDatagram::new_checked(&mut buf[..]).unwrap();
        assert!(d.verify_checksum(pseudo), "absent checksum passes");
        d.fill_checksum(pseudo);
        assert_ne!(d.checksum(), 0);
        assert!(d.verify_checksum(pseudo));
        assert_eq!((d.src_port(), d.dst_port(), d.len()), (53, 5353, 11));
        assert_eq!(d.payload(), b"abc");
        assert!(!d.is_empty());
        d.set_src_port(1);
        d.set_dst_port(2);
        assert!(!d.verify_checksum(pseudo));
        d.set_len(8);
        assert!(d.payload_mut().is_empty());
    }

    #[test]
    fn malformed() {
        let mut buf = [0u8; 12];
        UdpRepr {
            src_port: 1,
            dst_port: 2,
            payload_len: 4,
        }
        .emit(&mut buf)
        .unwrap();
        assert_eq!(
            UdpDatagram::new_checked(&buf[..7]).unwrap_err(),
            ParseError::Truncated { layer: Layer::Udp }
        );
        assert_eq!(
            UdpDatagram::new_checked(&buf[..11]).unwrap_err(),
            ParseError::Truncated { layer: Layer::Udp }
        );
        assert!(UdpDatagram::new_checked_header(&buf[..8]).is_ok());
        assert!(UdpDatagram::new_checked_header(&buf[..7]).is_err());
        buf[5] = 7;
        assert_eq!(
            UdpDatagram::new_checked(&buf[..]).unwrap_err(),
            ParseError::BadLength { layer: Layer::Udp }
        );
    }
}
