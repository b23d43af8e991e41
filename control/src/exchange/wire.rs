//! Wire format of exchange datagrams.
//!
//! ```text
//! header (29 bytes, big endian)
//!   magic u16 = 0x4858 ("HX") | version u8 | flags u8 | sender u32 | epoch u32
//!   | seq u64 | timestamp_ms u64 | entry_count u8
//! flags: FLAG_SNAPSHOT (0x01) or FLAG_DIRECT (0x02), never both
//! snapshot sub-header (7 bytes, only when flags & FLAG_SNAPSHOT)
//!   snapshot_id u32 | code u8 | part u8 | parts u8
//! entry_count entries (20 bytes + data each)
//!   code u8 | origin u32 | incarnation u32 | version u64 | ttl u8 | len u16 | data[len]
//! mac [16] = HMAC-SHA256(pool key, everything before it), truncated
//! ```
//!
//! The decoder never panics: every length is checked before it is used, and
//! the MAC is verified (in constant time) before any entry is parsed.
//!
//! During a key rotation an [`Authenticator`] holds a second key that it
//! accepts but never signs with, so servers can move from one pool key to
//! the next one at a time (see [`Authenticator::with_rotation`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// Datagram magic, "HX".
pub const MAGIC: u16 = 0x4858;
/// Wire format version understood by this implementation.
pub const VERSION: u8 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 29;
/// Size of the snapshot sub-header.
pub const SNAPSHOT_HEADER_LEN: usize = 7;
/// Size of an entry header (without its data).
pub const ENTRY_HEADER_LEN: usize = 20;
/// Size of the truncated MAC trailer.
pub const MAC_LEN: usize = 16;
/// Hard maximum of entries per datagram (8-bit count field).
pub const MAX_ENTRIES: usize = 255;

/// Datagram carries (a part of) a frozen snapshot sent by the master.
pub const FLAG_SNAPSHOT: u8 = 0x01;
/// Datagram carries one direct message (see `exchange::direct`): not stored,
/// not relayed, queued for the module.
pub const FLAG_DIRECT: u8 = 0x02;
/// Every flag a datagram may carry (at most one of them: a direct message
/// is never part of a snapshot).
pub const KNOWN_FLAGS: u8 = FLAG_SNAPSHOT | FLAG_DIRECT;

type HmacSha256 = Hmac<Sha256>;

/// Why a datagram was rejected by [`decode`].
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the header plus MAC, or an entry runs past the end.
    #[error("datagram truncated")]
    Truncated,
    /// The magic number does not match: not an exchange datagram.
    #[error("bad magic")]
    BadMagic,
    /// The header version is not one this node understands.
    #[error("unknown wire version {0}")]
    UnknownVersion(u8),
    /// The MAC does not verify with the pool key (wrong key or tampering).
    #[error("authentication failed")]
    BadMac,
    /// Structurally invalid after authentication (unknown flags, trailing
    /// bytes, impossible snapshot part numbers).
    #[error("malformed datagram")]
    Malformed,
}

/// Fixed datagram header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Flag bits (`FLAG_*`).
    pub flags: u8,
    /// Node id of the sender.
    pub sender: u32,
    /// Boot epoch of the sender (incarnation); grows on every restart.
    pub epoch: u32,
    /// Per-epoch datagram sequence number, for replay protection.
    pub seq: u64,
    /// Sender's uptime in milliseconds (informational).
    pub timestamp_ms: u64,
}

/// Snapshot sub-header: identifies one part of a frozen snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Snapshot identifier chosen by the master (grows monotonically).
    pub id: u32,
    /// Registration code the snapshot is for.
    pub code: u8,
    /// Index of this part, `< parts`.
    pub part: u8,
    /// Number of parts of the snapshot, `>= 1`.
    pub parts: u8,
}

/// One entry as carried on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireEntry<'a> {
    /// Registration code.
    pub code: u8,
    /// Node the entry originates from.
    pub origin: u32,
    /// Boot epoch of the origin when it produced this entry.
    pub incarnation: u32,
    /// Per-origin, per-code version; higher wins within an incarnation.
    pub version: u64,
    /// Remaining relay hops.
    pub ttl: u8,
    /// Module payload.
    pub data: &'a [u8],
}

/// A decoded, authenticated datagram borrowing from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Header.
    pub header: Header,
    /// Present when `header.flags & FLAG_SNAPSHOT`.
    pub snapshot: Option<SnapshotHeader>,
    /// Entries in wire order.
    pub entries: Vec<WireEntry<'a>>,
    /// The MAC verified under the rotation key, not the signing key.
    pub rotation_key: bool,
}

/// Keyed MAC over datagrams: signs with the pool key, accepts the pool key
/// and, during a rotation, a second key.
#[derive(Clone)]
pub struct Authenticator {
    mac: HmacSha256,
    rotation: Option<HmacSha256>,
    key_id: KeyId,
    rotation_id: Option<KeyId>,
}

/// A short public name of a key (the first 4 bytes of a domain-separated
/// SHA-256 of it, in hex), so operators can compare which key each server
/// signs with without showing the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 4]);

impl KeyId {
    /// The id of `key`.
    pub fn of(key: &[u8]) -> KeyId {
        use sha2::Digest;
        let mut h = Sha256::new();
        h.update(b"headroom pool key id\0");
        h.update(key);
        let d = h.finalize();
        KeyId([d[0], d[1], d[2], d[3]])
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material; the ids are public.
        write!(f, "Authenticator(key {}", self.key_id)?;
        if let Some(r) = self.rotation_id {
            write!(f, ", rotation key {r}")?;
        }
        f.write_str(")")
    }
}

impl Authenticator {
    /// Builds an authenticator from the pool key (any length; HMAC hashes
    /// long keys down).
    pub fn new(key: &[u8]) -> Self {
        Self::with_rotation(key, None)
    }

    /// Signs with `key`; accepts `key` and `rotation` (a key rotation: the
    /// next key before this server signs with it, or the previous one after).
    pub fn with_rotation(key: &[u8], rotation: Option<&[u8]>) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let hmac = |k: &[u8]| HmacSha256::new_from_slice(k).expect("HMAC accepts any key length");
        Self {
            mac: hmac(key),
            rotation: rotation.filter(|r| *r != key).map(hmac),
            key_id: KeyId::of(key),
            rotation_id: rotation.filter(|r| *r != key).map(KeyId::of),
        }
    }

    /// The id of the key it signs with.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The id of the rotation key, when one is accepted.
    pub fn rotation_id(&self) -> Option<KeyId> {
        self.rotation_id
    }

    /// Truncated MAC of `bytes` (what [`Builder::finish`] appends). Public so
    /// fuzzers and tests can sign arbitrary bodies and reach the parser.
    pub fn tag(&self, bytes: &[u8]) -> [u8; MAC_LEN] {
        let mut m = self.mac.clone();
        m.update(bytes);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// `Some(false)`: verified under the signing key, `Some(true)`: under
    /// the rotation key, `None`: under neither.
    fn verify(&self, bytes: &[u8], tag: &[u8]) -> Option<bool> {
        let ok = |mac: &HmacSha256| {
            let mut m = mac.clone();
            m.update(bytes);
            m.verify_truncated_left(tag).is_ok()
        };
        if ok(&self.mac) {
            Some(false)
        } else if self.rotation.as_ref().is_some_and(ok) {
            Some(true)
        } else {
            None
        }
    }
}

/// Incremental datagram builder that enforces the MTU and the entry limit.
#[derive(Debug)]
pub struct Builder {
    buf: Vec<u8>,
    count: usize,
    mtu: usize,
}

impl Builder {
    /// Starts a datagram; `mtu` is the maximum total UDP payload size.
    pub fn new(header: &Header, snapshot: Option<SnapshotHeader>, mtu: usize) -> Self {
        let mut buf = Vec::with_capacity(mtu.min(65_507));
        buf.extend_from_slice(&MAGIC.to_be_bytes());
        buf.push(VERSION);
        let flags = if snapshot.is_some() {
            header.flags | FLAG_SNAPSHOT
        } else {
            header.flags & !FLAG_SNAPSHOT
        };
        buf.push(flags);
        buf.extend_from_slice(&header.sender.to_be_bytes());
        buf.extend_from_slice(&header.epoch.to_be_bytes());
        buf.extend_from_slice(&header.seq.to_be_bytes());
        buf.extend_from_slice(&header.timestamp_ms.to_be_bytes());
        buf.push(0); // entry count, patched in finish()
        if let Some(s) = snapshot {
            buf.extend_from_slice(&s.id.to_be_bytes());
            buf.push(s.code);
            buf.push(s.part);
            buf.push(s.parts);
        }
        Self { buf, count: 0, mtu }
    }

    /// Bytes an entry with `data_len` bytes of payload takes on the wire.
    pub fn entry_size(data_len: usize) -> usize {
        ENTRY_HEADER_LEN + data_len
    }

    /// Number of entries added so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no entry was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether an entry of `data_len` bytes still fits.
    pub fn fits(&self, data_len: usize) -> bool {
        self.count < MAX_ENTRIES
            && data_len <= u16::MAX as usize
            && self.buf.len() + Self::entry_size(data_len) + MAC_LEN <= self.mtu
    }

    /// Appends an entry if it fits; returns whether it was added.
    pub fn push(&mut self, e: &WireEntry<'_>) -> bool {
        if !self.fits(e.data.len()) {
            return false;
        }
        self.buf.push(e.code);
        self.buf.extend_from_slice(&e.origin.to_be_bytes());
        self.buf.extend_from_slice(&e.incarnation.to_be_bytes());
        self.buf.extend_from_slice(&e.version.to_be_bytes());
        self.buf.push(e.ttl);
        self.buf
            .extend_from_slice(&(e.data.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(e.data);
        self.count += 1;
        true
    }

    /// Patches the count and appends the MAC.
    pub fn finish(mut self, auth: &Authenticator) -> Vec<u8> {
        self.buf[HEADER_LEN - 1] = self.count as u8;
        let tag = auth.tag(&self.buf);
        self.buf.extend_from_slice(&tag);
        self.buf
    }
}

/// Bounds-checked big-endian reader.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.b.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }
}

/// Decodes and authenticates a datagram. Never panics on any input.
pub fn decode<'a>(bytes: &'a [u8], auth: &Authenticator) -> Result<Datagram<'a>, WireError> {
    if bytes.len() < HEADER_LEN + MAC_LEN {
        return Err(WireError::Truncated);
    }
    let (body, tag) = bytes.split_at(bytes.len() - MAC_LEN);
    let mut r = Reader { b: body, pos: 0 };
    if r.u16()? != MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(WireError::UnknownVersion(version));
    }
    let Some(rotation_key) = auth.verify(body, tag) else {
        return Err(WireError::BadMac);
    };
    let flags = r.u8()?;
    if flags & !KNOWN_FLAGS != 0 || flags & KNOWN_FLAGS == KNOWN_FLAGS {
        return Err(WireError::Malformed);
    }
    let header = Header {
        flags,
        sender: r.u32()?,
        epoch: r.u32()?,
        seq: r.u64()?,
        timestamp_ms: r.u64()?,
    };
    let count = r.u8()? as usize;
    let snapshot = if flags & FLAG_SNAPSHOT != 0 {
        let s = SnapshotHeader {
            id: r.u32()?,
            code: r.u8()?,
            part: r.u8()?,
            parts: r.u8()?,
        };
        if s.parts == 0 || s.part >= s.parts || s.parts > 64 {
            return Err(WireError::Malformed);
        }
        Some(s)
    } else {
        None
    };
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let code = r.u8()?;
        let origin = r.u32()?;
        let incarnation = r.u32()?;
        let version = r.u64()?;
        let ttl = r.u8()?;
        let len = r.u16()? as usize;
        let data = r.take(len)?;
        entries.push(WireEntry {
            code,
            origin,
            incarnation,
            version,
            ttl,
            data,
        });
    }
    if r.pos != body.len() {
        return Err(WireError::Malformed);
    }
    Ok(Datagram {
        header,
        snapshot,
        entries,
        rotation_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    fn sample(auth: &Authenticator) -> Vec<u8> {
        let h = Header {
            flags: 0,
            sender: 7,
            epoch: 3,
            seq: 42,
            timestamp_ms: 1234,
        };
        let mut b = Builder::new(&h, None, 1400);
        for i in 0..5u32 {
            assert!(b.push(&WireEntry {
                code: 1,
                origin: i,
                incarnation: 1,
                version: u64::from(i) * 10,
                ttl: 3,
                data: &[i as u8; 9],
            }));
        }
        b.finish(auth)
    }

    #[test]
    fn roundtrip() {
        let auth = Authenticator::new(b"k");
        let bytes = sample(&auth);
        let d = decode(&bytes, &auth).unwrap();
        assert_eq!(d.header.sender, 7);
        assert_eq!(d.header.seq, 42);
        assert_eq!(d.entries.len(), 5);
        assert_eq!(d.entries[4].version, 40);
        assert_eq!(d.entries[4].data, &[4u8; 9]);
    }

    #[test]
    fn snapshot_roundtrip() {
        let auth = Authenticator::new(b"k");
        let h = Header {
            flags: 0,
            sender: 1,
            epoch: 1,
            seq: 1,
            timestamp_ms: 0,
        };
        let s = SnapshotHeader {
            id: 9,
            code: 4,
            part: 1,
            parts: 2,
        };
        let bytes = Builder::new(&h, Some(s), 1400).finish(&auth);
        let d = decode(&bytes, &auth).unwrap();
        assert_eq!(d.snapshot, Some(s));
        assert!(d.entries.is_empty());
    }

    #[test]
    fn wrong_key_and_tamper_rejected() {
        let auth = Authenticator::new(b"k");
        let bytes = sample(&auth);
        assert_eq!(
            decode(&bytes, &Authenticator::new(b"other")),
            Err(WireError::BadMac)
        );
        let mut t = bytes.clone();
        t[HEADER_LEN + 3] ^= 1;
        assert_eq!(decode(&t, &auth), Err(WireError::BadMac));
        let mut v = bytes;
        v[2] = 9;
        assert_eq!(decode(&v, &auth), Err(WireError::UnknownVersion(9)));
    }

    #[test]
    fn builder_respects_mtu_and_count() {
        let auth = Authenticator::new(b"k");
        let h = Header {
            flags: 0,
            sender: 1,
            epoch: 1,
            seq: 1,
            timestamp_ms: 0,
        };
        let mut b = Builder::new(&h, None, 200);
        let mut n = 0;
        while b.push(&WireEntry {
            code: 1,
            origin: 1,
            incarnation: 1,
            version: 1,
            ttl: 0,
            data: &[0; 10],
        }) {
            n += 1;
        }
        assert_eq!(n, (200 - HEADER_LEN - MAC_LEN) / 30);
        assert!(b.finish(&auth).len() <= 200);
        let mut b = Builder::new(&h, None, 65_000);
        let e = WireEntry {
            code: 1,
            origin: 1,
            incarnation: 1,
            version: 1,
            ttl: 0,
            data: &[],
        };
        while b.push(&e) {}
        assert_eq!(b.len(), MAX_ENTRIES);
        assert_eq!(decode(&b.finish(&auth), &auth).unwrap().entries.len(), 255);
    }

    /// Runs the decoder over random bytes, truncations and bit flips of a
    /// valid datagram (with the MAC recomputed so the parser itself is
    /// exercised). It must never panic; the fuzz target does the same at
    /// scale.
    #[test]
    fn decoder_survives_garbage() {
        let auth = Authenticator::new(b"k");
        let good = sample(&auth);
        let mut rng = SmallRng::seed_from_u64(1);
        for len in 0..good.len() {
            assert!(decode(&good[..len], &auth).is_err());
        }
        for _ in 0..20_000 {
            let len = rng.gen_range(0..200);
            let v: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = decode(&v, &auth);
            // Mutate the body of a valid datagram and re-sign it.
            let mut m = good[..good.len() - MAC_LEN].to_vec();
            let i = rng.gen_range(0..m.len());
            m[i] = rng.gen();
            if rng.gen_bool(0.3) {
                m.truncate(rng.gen_range(0..m.len()));
            }
            let tag = auth.tag(&m);
            m.extend_from_slice(&tag);
            let _ = decode(&m, &auth);
        }
    }
}
