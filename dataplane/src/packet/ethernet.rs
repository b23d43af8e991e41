//! Ethernet II frames with up to two VLAN tags (802.1Q `0x8100`, 802.1ad `0x88A8`).

use std::fmt;

use super::field::*;
use super::{Layer, ParseError};

/// EtherType values used by Headroom.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
}

/// Maximum number of VLAN tags parsed before the EtherType; a third tag is left in place
/// and reported as the frame's EtherType (0x8100), i.e. "other".
pub const MAX_VLAN_TAGS: usize = 2;

const HEADER_LEN: usize = 14;
const TAG_LEN: usize = 4;

#[inline]
fn is_tpid(t: u16) -> bool {
    t == ethertype::VLAN || t == ethertype::QINQ
}

/// A 48-bit Ethernet (MAC) address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);
    /// 00:00:00:00:00:00.
    pub const ZERO: EthernetAddress = EthernetAddress([0; 6]);

    /// True for the broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True for a group (multicast or broadcast) address.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// True for an individual (unicast) address.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EthernetAddress({self})")
    }
}

/// One VLAN tag: TPID and TCI fields.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VlanTag {
    /// Tag protocol identifier: [`ethertype::VLAN`] or [`ethertype::QINQ`].
    pub tpid: u16,
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (12 bits).
    pub vid: u16,
}

impl VlanTag {
    /// An 802.1Q tag with priority 0.
    pub const fn dot1q(vid: u16) -> Self {
        Self {
            tpid: ethertype::VLAN,
            pcp: 0,
            dei: false,
            vid: vid & 0x0fff,
        }
    }

    /// An 802.1ad service tag with priority 0.
    pub const fn dot1ad(vid: u16) -> Self {
        Self {
            tpid: ethertype::QINQ,
            pcp: 0,
            dei: false,
            vid: vid & 0x0fff,
        }
    }

    fn tci(&self) -> u16 {
        ((self.pcp as u16 & 7) << 13) | ((self.dei as u16) << 12) | (self.vid & 0x0fff)
    }

    fn from_tci(tpid: u16, tci: u16) -> Self {
        Self {
            tpid,
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }
}

/// Validate the Ethernet header and its VLAN tags in one pass: returns the offset of the
/// payload EtherType field and the VID of the outermost tag. The same checks as
/// [`EthernetFrame::new_checked`] (which calls it); [`super::parse_frame`] uses it to
/// avoid walking the tags more than once.
#[inline]
pub(crate) fn walk_header(b: &[u8]) -> Result<(usize, Option<u16>), ParseError> {
    if b.len() < HEADER_LEN {
        return Err(ParseError::Truncated {
            layer: Layer::Ethernet,
        });
    }
    let mut off = 12;
    let mut vid = None;
    for _ in 0..MAX_VLAN_TAGS {
        if !is_tpid(u16_at(b, off)) {
            break;
        }
        // The tag's TCI and the next EtherType must be present.
        if b.len() < off + TAG_LEN + 2 {
            return Err(ParseError::Truncated { layer: Layer::Vlan });
        }
        if vid.is_none() {
            vid = Some(u16_at(b, off + 2) & 0x0fff);
        }
        off += TAG_LEN;
    }
    Ok((off, vid))
}

/// A read (and, for mutable buffers, write) view of an Ethernet frame.
///
/// `new_checked` guarantees the 14-byte header and every VLAN tag (up to
/// [`MAX_VLAN_TAGS`]) are inside the buffer; accessors never panic.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Validate that the header and its VLAN tags fit in `buf`.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        walk_header(buf.as_ref())?;
        Ok(Self { buf })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Destination address.
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress(array_at(self.buf.as_ref(), 0))
    }

    /// Source address.
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress(array_at(self.buf.as_ref(), 6))
    }

    /// The EtherType field right after the source address (a TPID if the frame is tagged).
    pub fn outer_ethertype(&self) -> u16 {
        u16_at(self.buf.as_ref(), 12)
    }

    /// Offset of the innermost EtherType field (12 + 4 per tag).
    fn ethertype_offset(&self) -> usize {
        let b = self.buf.as_ref();
        let mut off = 12;
        for _ in 0..MAX_VLAN_TAGS {
            if !is_tpid(u16_at(b, off)) || b.len() < off + TAG_LEN + 2 {
                break;
            }
            off += TAG_LEN;
        }
        off
    }

    /// Number of VLAN tags (0..=2).
    pub fn vlan_count(&self) -> usize {
        (self.ethertype_offset() - 12) / TAG_LEN
    }

    /// The `i`th VLAN tag, outermost first.
    pub fn vlan_tag(&self, i: usize) -> Option<VlanTag> {
        if i >= self.vlan_count() {
            return None;
        }
        let b = self.buf.as_ref();
        let off = 12 + i * TAG_LEN;
        Some(VlanTag::from_tci(u16_at(b, off), u16_at(b, off + 2)))
    }

    /// The payload's EtherType (after any VLAN tags).
    pub fn ethertype(&self) -> u16 {
        u16_at(self.buf.as_ref(), self.ethertype_offset())
    }

    /// Length of the header including VLAN tags.
    pub fn header_len(&self) -> usize {
        self.ethertype_offset() + 2
    }

    /// The bytes after the header (including any trailing padding).
    pub fn payload(&self) -> &[u8] {
        let b = self.buf.as_ref();
        slice(b, self.header_len(), b.len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Set the destination address.
    pub fn set_dst_addr(&mut self, a: EthernetAddress) {
        set_bytes(self.buf.as_mut(), 0, &a.0);
    }

    /// Set the source address.
    pub fn set_src_addr(&mut self, a: EthernetAddress) {
        set_bytes(self.buf.as_mut(), 6, &a.0);
    }

    /// Set the payload's EtherType (after any VLAN tags).
    pub fn set_ethertype(&mut self, t: u16) {
        let off = self.ethertype_offset();
        set_u16(self.buf.as_mut(), off, t);
    }

    /// Set the VID of the `i`th tag (no-op if there is no such tag).
    pub fn set_vlan_id(&mut self, i: usize, vid: u16) {
        if let Some(mut t) = self.vlan_tag(i) {
            t.vid = vid & 0x0fff;
            set_u16(self.buf.as_mut(), 12 + i * TAG_LEN + 2, t.tci());
        }
    }

    /// The bytes after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        let b = self.buf.as_mut();
        let n = b.len();
        slice_mut(b, h, n)
    }
}

/// A parsed-out Ethernet header, for building frames.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EthernetRepr {
    /// Destination address.
    pub dst: EthernetAddress,
    /// Source address.
    pub src: EthernetAddress,
    /// VLAN tags, outermost first; `None`s after the last tag.
    pub vlans: [Option<VlanTag>; MAX_VLAN_TAGS],
    /// Payload EtherType.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// An untagged header.
    pub const fn new(dst: EthernetAddress, src: EthernetAddress, ethertype: u16) -> Self {
        Self {
            dst,
            src,
            vlans: [None, None],
            ethertype,
        }
    }

    /// Read the header of a validated frame.
    pub fn parse<T: AsRef<[u8]>>(f: &EthernetFrame<T>) -> Self {
        Self {
            dst: f.dst_addr(),
            src: f.src_addr(),
            vlans: [f.vlan_tag(0), f.vlan_tag(1)],
            ethertype: f.ethertype(),
        }
    }

    /// Header length this repr emits.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.vlans.iter().take_while(|v| v.is_some()).count() * TAG_LEN
    }

    /// Write the header at the start of `buf`; returns the header length (the payload's
    /// offset).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ParseError> {
        let len = self.header_len();
        if buf.len() < len {
            return Err(ParseError::BufferTooSmall {
                layer: Layer::Ethernet,
            });
        }
        set_bytes(buf, 0, &self.dst.0);
        set_bytes(buf, 6, &self.src.0);
        let mut off = 12;
        for t in self.vlans.iter().map_while(|v| v.as_ref()) {
            set_u16(buf, off, t.tpid);
            set_u16(buf, off + 2, t.tci());
            off += TAG_LEN;
        }
        set_u16(buf, off, self.ethertype);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC_A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const MAC_B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

    #[test]
    fn untagged_round_trip() {
        let mut buf = [0u8; 20];
        let r = EthernetRepr::new(MAC_B, MAC_A, ethertype::IPV4);
        assert_eq!(r.emit(&mut buf).unwrap(), 14);
        let f = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(f.dst_addr(), MAC_B);
        assert_eq!(f.src_addr(), MAC_A);
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.vlan_count(), 0);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.payload().len(), 6);
        assert_eq!(EthernetRepr::parse(&f), r);
    }

    #[test]
    fn qinq_round_trip_and_setters() {
        let mut buf = [0u8; 30];
        let r = EthernetRepr {
            dst: EthernetAddress::BROADCAST,
            src: MAC_A,
            vlans: [
                Some(VlanTag::dot1ad(100)),
                Some(VlanTag {
                    tpid: ethertype::VLAN,
                    pcp: 5,
                    dei: true,
                    vid: 42,
                }),
            ],
            ethertype: ethertype::ARP,
        };
        assert_eq!(r.emit(&mut buf).unwrap(), 22);
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        assert_eq!(f.vlan_count(), 2);
        assert_eq!(f.outer_ethertype(), ethertype::QINQ);
        assert_eq!(f.vlan_tag(0).unwrap().vid, 100);
        assert_eq!(
            f.vlan_tag(1).unwrap(),
            VlanTag {
                tpid: ethertype::VLAN,
                pcp: 5,
                dei: true,
                vid: 42
            }
        );
        assert_eq!(f.vlan_tag(2), None);
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert!(f.dst_addr().is_broadcast() && f.dst_addr().is_multicast());
        f.set_vlan_id(1, 7);
        f.set_ethertype(ethertype::IPV6);
        f.set_dst_addr(MAC_B);
        assert_eq!(f.vlan_tag(1).unwrap().vid, 7);
        assert_eq!(f.vlan_tag(1).unwrap().pcp, 5);
        assert_eq!(f.ethertype(), ethertype::IPV6);
        assert_eq!(f.payload_mut().len(), 8);
        assert_eq!(f.dst_addr().to_string(), "02:00:00:00:00:02");
    }

    #[test]
    fn truncation() {
        assert_eq!(
            EthernetFrame::new_checked(&[0u8; 13][..]).unwrap_err(),
            ParseError::Truncated {
                layer: Layer::Ethernet
            }
        );
        let mut buf = [0u8; 17];
        buf[12] = 0x81;
        assert_eq!(
            EthernetFrame::new_checked(&buf[..]).unwrap_err(),
            ParseError::Truncated { layer: Layer::Vlan }
        );
        assert!(EthernetFrame::new_checked(&[0u8; 10][..]).is_err());
        let mut buf = [0u8; 18];
        buf[12] = 0x81;
        let f = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(f.vlan_count(), 1);
        assert_eq!(f.payload().len(), 0);
    }

    #[test]
    fn third_tag_is_ethertype() {
        let mut buf = [0u8; 40];
        for off in [12, 16, 20] {
            buf[off] = 0x81;
        }
        let f = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(f.vlan_count(), 2);
        assert_eq!(f.ethertype(), ethertype::VLAN);
    }

    #[test]
    fn emit_too_small() {
        let r = EthernetRepr::new(MAC_B, MAC_A, 0x0800);
        assert_eq!(
            r.emit(&mut [0u8; 13]).unwrap_err(),
            ParseError::BufferTooSmall {
                layer: Layer::Ethernet
            }
        );
    }
}
