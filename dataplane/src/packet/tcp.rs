//! TCP (RFC 9293) segment header.

use super::checksum;
use super::field::*;
use super::{Layer, ParseError};

/// Minimum (option-less) header length.
pub const MIN_HEADER_LEN: usize = 20;

/// TCP flag bits (the low byte of the flags field).
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// A view of a TCP segment. `new_checked` guarantees data offset >= 5 and the header with
/// its options inside the buffer.
#[derive(Debug, Clone)]
pub struct TcpSegment<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpSegment<T> {
    /// Validate the data-offset field against the buffer.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(ParseError::Truncated { layer: Layer::Tcp });
        }
        let hl = (u8_at(b, 12) >> 4) as usize * 4;
        if hl < MIN_HEADER_LEN {
            return Err(ParseError::BadHeaderLength { layer: Layer::Tcp });
        }
        if b.len() < hl {
            return Err(ParseError::Truncated { layer: Layer::Tcp });
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
    /// Sequence number.
    pub fn seq(&self) -> u32 {
        u32_at(self.buf.as_ref(), 4)
    }
    /// Acknowledgement number.
    pub fn ack(&self) -> u32 {
        u32_at(self.buf.as_ref(), 8)
    }
    /// Header length in bytes (data offset x 4).
    pub fn header_len(&self) -> usize {
        (u8_at(self.buf.as_ref(), 12) >> 4) as usize * 4
    }
    /// Flags (see [`flags`]).
    pub fn flags(&self) -> u8 {
        u8_at(self.buf.as_ref(), 13)
    }
    /// Window.
    pub fn window(&self) -> u16 {
        u16_at(self.buf.as_ref(), 14)
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        u16_at(self.buf.as_ref(), 16)
    }
    /// Urgent pointer.
    pub fn urgent(&self) -> u16 {
        u16_at(self.buf.as_ref(), 18)
    }
    /// Options bytes.
    pub fn options(&self) -> &[u8] {
        slice(self.buf.as_ref(), MIN_HEADER_LEN, self.header_len())
    }
    /// Payload (after options to the end of the buffer).
    pub fn payload(&self) -> &[u8] {
        let b = self.buf.as_ref();
        slice(b, self.header_len(), b.len())
    }
    /// True if the checksum is correct given the pseudo-header sum (from
    /// `Ipv4Packet::pseudo_header_sum` or `Ipv6Packet::pseudo_header_sum`).
    pub fn verify_checksum(&self, pseudo: u32) -> bool {
        checksum::finish(checksum::combine(pseudo, checksum::sum(self.buf.as_ref()))) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpSegment<T> {
    /// Set the source port.
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 0, v);
    }
    /// Set the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 2, v);
    }
    /// Set the sequence number.
    pub fn set_seq(&mut self, v: u32) {
        set_u32(self.buf.as_mut(), 4, v);
    }
    /// Set the acknowledgement number.
    pub fn set_ack(&mut self, v: u32) {
        set_u32(self.buf.as_mut(), 8, v);
    }
    /// Set the flags.
    pub fn set_flags(&mut self, v: u8) {
        set_u8(self.buf.as_mut(), 13, v);
    }
    /// Set the window.
    pub fn set_window(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 14, v);
    }
    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), 16, v);
    }
    /// Compute and store the checksum over the whole buffer with the given pseudo-header sum.
    pub fn fill_checksum(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::combine(pseudo, checksum::sum(self.buf.as_ref())));
        self.set_checksum(c);
    }
    /// Payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        let b = self.buf.as_mut();
        let n = b.len();
        slice_mut(b, h, n)
    }
}

/// An option-less TCP header, for building segments.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags.
    pub flags: u8,
    /// Window.
    pub window: u16,
}

impl TcpRepr {
    /// Write the 20-byte header (checksum 0: fill it with [`TcpSegment::fill_checksum`]
    /// once the payload is in place); returns 20.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ParseError> {
        if buf.len() < MIN_HEADER_LEN {
            return Err(ParseError::BufferTooSmall { layer: Layer::Tcp });
        }
        set_u16(buf, 0, self.src_port);
        set_u16(buf, 2, self.dst_port);
        set_u32(buf, 4, self.seq);
        set_u32(buf, 8, self.ack);
        set_u8(buf, 12, 5 << 4);
        set_u8(buf, 13, self.flags);
        set_u16(buf, 14, self.window);
        set_u16(buf, 16, 0);
        set_u16(buf, 18, 0);
        Ok(MIN_HEADER_LEN)
    }
}

/// Clamps the MSS option of a SYN segment (`seg` starts at the TCP header) to
/// at most `max`, updating the checksum incrementally (RFC 1624; the checksum
/// must be complete). Returns whether the option was lowered. Segments
/// without the option, and malformed options, are left alone.
pub fn clamp_mss(seg: &mut [u8], max: u16) -> bool {
    let Ok(t) = TcpSegment::new_checked(&*seg) else {
        return false;
    };
    let end = t.header_len();
    let mut at = MIN_HEADER_LEN;
    while at < end {
        match seg[at] {
            0 => return false,
            1 => at += 1,
            kind => {
                let Some(&len) = seg.get(at + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || at + len > end {
                    return false;
                }
                if kind == 2 && len == 4 {
                    let old = u16::from_be_bytes([seg[at + 2], seg[at + 3]]);
                    if old <= max {
                        return false;
                    }
                    // The changed bytes may straddle two checksum words:
                    // update every aligned word they touch.
                    let first = (at + 2) & !1;
                    let last = (at + 3) | 1;
                    let before: Vec<u16> = (first..=last)
                        .step_by(2)
                        .map(|w| u16::from_be_bytes([seg[w], seg[w + 1]]))
                        .collect();
                    seg[at + 2..at + 4].copy_from_slice(&max.to_be_bytes());
                    let mut c = u16::from_be_bytes([seg[16], seg[17]]);
                    for (i, w) in (first..=last).step_by(2).enumerate() {
                        let now = u16::from_be_bytes([seg[w], seg[w + 1]]);
                        c = checksum::update_u16(c, before[i], now);
                    }
                    seg[16..18].copy_from_slice(&c.to_be_bytes());
                    return true;
                }
                at += len;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checksum() {
        let mut buf = vec![0u8; 24];
        let r = TcpRepr {
            src_port: 1234,
            dst_port: 80,
            seq: 7,
            ack: 9,
            flags: flags::SYN | flags::ACK,
            window: 1000,
        };
        r.emit(&mut buf).unwrap();
        buf[20..].copy_from_slice(b"data");
        let pseudo = checksum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, 24);
        let mut s = TcpSegment::new_checked(&mut buf[..]).unwrap();
        s.fill_checksum(pseudo);
        assert!(s.verify_checksum(pseudo));
        assert_eq!(
            (
                s.src_port(),
                s.dst_port(),
                s.seq(),
                s.ack(),
                s.flags(),
                s.window()
            ),
            (1234, 80, 7, 9, 0x12, 1000)
        );
        assert_eq!(s.header_len(), 20);
        assert_eq!(s.payload(), b"data");
        assert_eq!(s.urgent(), 0);
        // Port rewrite with an incremental update keeps the checksum valid.
        let c = checksum::update_u16(s.checksum(), 80, 8080);
        s.set_dst_port(8080);
        s.set_checksum(c);
        assert!(s.verify_checksum(pseudo));
        s.set_src_port(1);
        s.set_seq(2);
        s.set_ack(3);
        s.set_flags(flags::FIN);
        s.set_window(4);
        assert_eq!(s.payload_mut().len(), 4);
        assert!(!s.verify_checksum(pseudo));
    }

    #[test]
    fn mss_is_clamped_with_a_correct_checksum_wherever_the_option_sits() {
        use crate::packet::checksum::pseudo_header_v4;
        for pad in 0..4usize {
            // SYN-ACK with `pad` NOPs before the MSS option.
            let opts_len = (pad + 4).div_ceil(4) * 4;
            let mut seg = vec![0u8; 20 + opts_len];
            let r = TcpRepr {
                src_port: 80,
                dst_port: 40000,
                seq: 1,
                ack: 2,
                flags: 0x12,
                window: 65535,
            };
            r.emit(&mut seg).unwrap();
            seg[12] = (((20 + opts_len) / 4) << 4) as u8;
            for b in &mut seg[20..20 + pad] {
                *b = 1;
            }
            seg[20 + pad..24 + pad].copy_from_slice(&[2, 4, 0x05, 0xb4]); // 1460
            for b in &mut seg[24 + pad..] {
                *b = 1;
            }
            let ps = pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, seg.len() as u16);
            TcpSegment::new_checked(&mut seg[..])
                .unwrap()
                .fill_checksum(ps);
            assert!(clamp_mss(&mut seg, 1424), "pad {pad}");
            assert_eq!(&seg[22 + pad..24 + pad], &1424u16.to_be_bytes());
            assert!(
                TcpSegment::new_checked(&seg[..])
                    .unwrap()
                    .verify_checksum(ps),
                "pad {pad}"
            );
            assert!(!clamp_mss(&mut seg, 1500), "already small enough");
        }
        let mut none = vec![0u8; 20];
        TcpRepr::default().emit(&mut none).unwrap();
        assert!(!clamp_mss(&mut none, 100));
        assert!(!clamp_mss(&mut [0u8; 3], 100));
    }

    #[test]
    fn options_and_malformed() {
        let mut buf = [0u8; 28];
        buf[12] = 7 << 4;
        let s = TcpSegment::new_checked(&buf[..]).unwrap();
        assert_eq!(s.options().len(), 8);
        assert!(s.payload().is_empty());
        assert_eq!(
            TcpSegment::new_checked(&buf[..27]).unwrap_err(),
            ParseError::Truncated { layer: Layer::Tcp }
        );
        assert_eq!(
            TcpSegment::new_checked(&buf[..19]).unwrap_err(),
            ParseError::Truncated { layer: Layer::Tcp }
        );
        buf[12] = 4 << 4;
        assert_eq!(
            TcpSegment::new_checked(&buf[..]).unwrap_err(),
            ParseError::BadHeaderLength { layer: Layer::Tcp }
        );
        assert!(TcpRepr::default().emit(&mut [0u8; 19]).is_err());
    }
}
