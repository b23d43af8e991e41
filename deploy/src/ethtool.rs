//! Interface features (offloads) and channel counts over the ethtool
//! generic-netlink family.
//!
//! Hand-written on `netlink-packet-generic`: the `ethtool` crate reads
//! features but cannot set them, and needs an async runtime. Only the
//! attributes used here are encoded: a device header, verbose bitsets of
//! feature names (`ETHTOOL_A_BITSET_BITS`), and the channel counts.

use std::{collections::BTreeSet, io};

use netlink_packet_core::{DecodeError, Emitable, ParseableParametrized};
use netlink_packet_generic::{
    ctrl::{nlas::GenlCtrlAttrs, GenlCtrl, GenlCtrlCmd},
    GenlFamily, GenlHeader, GenlMessage,
};

use crate::netlink::Channel;

const MSG_FEATURES_GET: u8 = 11;
const MSG_FEATURES_SET: u8 = 12;
const MSG_CHANNELS_GET: u8 = 17;

const A_HEADER: u16 = 1;
const A_HEADER_DEV_NAME: u16 = 2;
const A_HEADER_FLAGS: u16 = 3;
const FLAG_OMIT_REPLY: u32 = 1 << 1;

const A_FEATURES_HW: u16 = 2;
const A_FEATURES_WANTED: u16 = 3;
const A_FEATURES_ACTIVE: u16 = 4;
const A_FEATURES_NOCHANGE: u16 = 5;

const A_BITSET_BITS: u16 = 3;
const A_BITSET_BITS_BIT: u16 = 1;
const A_BITSET_BIT_NAME: u16 = 2;
const A_BITSET_BIT_VALUE: u16 = 3;

const A_CHANNELS_RX_COUNT: u16 = 6;
const A_CHANNELS_COMBINED_COUNT: u16 = 9;

const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(1 << 15 | 1 << 14);

/// The features of one interface, by their ethtool names ("rx-gro", "rx-lro", ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// Features that are on.
    pub active: BTreeSet<String>,
    /// Features the driver lets be changed.
    pub changeable: BTreeSet<String>,
}

impl Features {
    /// Whether `name` is on.
    pub fn on(&self, name: &str) -> bool {
        self.active.contains(name)
    }
    /// Whether `name` can be changed.
    pub fn can_change(&self, name: &str) -> bool {
        self.changeable.contains(name)
    }
}

/// One ethtool message: a command and its raw attributes.
#[derive(Debug, Clone)]
struct Ethtool {
    cmd: u8,
    attrs: Vec<u8>,
}

impl GenlFamily for Ethtool {
    fn family_name() -> &'static str {
        "ethtool"
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        1
    }
}

impl Emitable for Ethtool {
    fn buffer_len(&self) -> usize {
        self.attrs.len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        buffer[..self.attrs.len()].copy_from_slice(&self.attrs);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for Ethtool {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(Self {
            cmd: header.cmd,
            attrs: buf.to_vec(),
        })
    }
}

/// Appends one attribute (4-byte aligned).
fn put(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

fn put_nested(out: &mut Vec<u8>, kind: u16, inner: &[u8]) {
    put(out, kind | NLA_F_NESTED, inner);
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// The attributes of `buf`: (type, value).
fn attrs(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= buf.len() {
        let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]) & NLA_TYPE_MASK;
        if len < 4 || off + len > buf.len() {
            break;
        }
        out.push((kind, &buf[off + 4..off + len]));
        off += (len + 3) & !3;
    }
    out
}

fn header(dev: &str, flags: u32) -> Vec<u8> {
    let mut h = Vec::new();
    put(&mut h, A_HEADER_DEV_NAME, &cstr(dev));
    if flags != 0 {
        put(&mut h, A_HEADER_FLAGS, &flags.to_ne_bytes());
    }
    let mut out = Vec::new();
    put_nested(&mut out, A_HEADER, &h);
    out
}

/// Names of the bits of a verbose bitset that are set (a list-mode bitset
/// lists only set bits; a masked one flags them with BIT_VALUE).
fn bitset_names(bitset: &[u8]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let nomask = attrs(bitset).iter().any(|(k, _)| *k == 1);
    for (k, bits) in attrs(bitset) {
        if k != A_BITSET_BITS {
            continue;
        }
        for (k, bit) in attrs(bits) {
            if k != A_BITSET_BITS_BIT {
                continue;
            }
            let mut name = None;
            let mut value = nomask;
            for (k, v) in attrs(bit) {
                match k {
                    A_BITSET_BIT_NAME => {
                        let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
                        name = Some(String::from_utf8_lossy(&v[..end]).into_owned());
                    }
                    A_BITSET_BIT_VALUE => value = true,
                    _ => {}
                }
            }
            if let (Some(n), true) = (name, value) {
                names.insert(n);
            }
        }
    }
    names
}

/// An ethtool generic-netlink socket.
#[derive(Debug)]
pub struct EthtoolSocket {
    chan: Channel,
    family: u16,
}

impl EthtoolSocket {
    /// Opens the socket and resolves the family.
    pub fn open() -> io::Result<Self> {
        let mut chan = Channel::open(netlink_sys::protocols::NETLINK_GENERIC)?;
        let req = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName("ethtool".into())],
        });
        let family = chan
            .request(req, 0)?
            .into_iter()
            .flat_map(|m| m.payload.nlas)
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(id),
                _ => None,
            })
            .ok_or_else(|| io::Error::other("the kernel has no ethtool netlink family"))?;
        Ok(Self { chan, family })
    }

    fn call(&mut self, cmd: u8, attrs: Vec<u8>) -> io::Result<Vec<Ethtool>> {
        let mut msg = GenlMessage::from_payload(Ethtool { cmd, attrs });
        msg.set_resolved_family_id(self.family);
        Ok(self
            .chan
            .request(msg, 0)?
            .into_iter()
            .map(|m| m.payload)
            .collect())
    }

    /// The features of `dev`.
    pub fn features(&mut self, dev: &str) -> io::Result<Features> {
        let reply = self.call(MSG_FEATURES_GET, header(dev, 0))?;
        let mut f = Features::default();
        let mut nochange = BTreeSet::new();
        for m in &reply {
            for (k, v) in attrs(&m.attrs) {
                match k {
                    A_FEATURES_ACTIVE => f.active = bitset_names(v),
                    A_FEATURES_HW => f.changeable = bitset_names(v),
                    A_FEATURES_NOCHANGE => nochange = bitset_names(v),
                    _ => {}
                }
            }
        }
        f.changeable.retain(|n| !nochange.contains(n));
        Ok(f)
    }

    /// Turns each named feature of `dev` on or off (others unchanged).
    pub fn set_features(&mut self, dev: &str, wanted: &[(&str, bool)]) -> io::Result<()> {
        let mut bits = Vec::new();
        for (name, on) in wanted {
            let mut bit = Vec::new();
            put(&mut bit, A_BITSET_BIT_NAME, &cstr(name));
            if *on {
                put(&mut bit, A_BITSET_BIT_VALUE, &[]);
            }
            put_nested(&mut bits, A_BITSET_BITS_BIT, &bit);
        }
        let mut set = Vec::new();
        put_nested(&mut set, A_BITSET_BITS, &bits);
        let mut msg = header(dev, FLAG_OMIT_REPLY);
        put_nested(&mut msg, A_FEATURES_WANTED, &set);
        self.call(MSG_FEATURES_SET, msg)?;
        Ok(())
    }

    /// Receive queues in use on `dev` (rx-only plus combined channels), or
    /// None when the driver does not report channels.
    pub fn rx_queues(&mut self, dev: &str) -> io::Result<Option<u32>> {
        let reply = match self.call(MSG_CHANNELS_GET, header(dev, 0)) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut n = 0u32;
        for m in &reply {
            for (k, v) in attrs(&m.attrs) {
                if (k == A_CHANNELS_RX_COUNT || k == A_CHANNELS_COMBINED_COUNT) && v.len() >= 4 {
                    n += u32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
                }
            }
        }
        Ok(Some(n.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_and_bitsets_decode() {
        // A masked verbose bitset with two bits, one of them set, and a
        // list-mode (NOMASK) bitset with one bit.
        let bit = |name: &str, on: bool| {
            let mut b = Vec::new();
            put(&mut b, A_BITSET_BIT_NAME, &cstr(name));
            if on {
                put(&mut b, A_BITSET_BIT_VALUE, &[]);
            }
            let mut out = Vec::new();
            put_nested(&mut out, A_BITSET_BITS_BIT, &b);
            out
        };
        let mut bits = bit("rx-gro", true);
        bits.extend(bit("rx-lro", false));
        let mut masked = Vec::new();
        put_nested(&mut masked, A_BITSET_BITS, &bits);
        assert_eq!(
            bitset_names(&masked).into_iter().collect::<Vec<_>>(),
            ["rx-gro"]
        );
        let mut list = Vec::new();
        put(&mut list, 1, &[]);
        put_nested(&mut list, A_BITSET_BITS, &bit("tx-checksum-ipv4", false));
        assert_eq!(
            bitset_names(&list).into_iter().collect::<Vec<_>>(),
            ["tx-checksum-ipv4"]
        );
        // Truncated input yields what parsed, never a panic.
        for cut in 0..masked.len() {
            let _ = bitset_names(&masked[..cut]);
        }
    }
}
