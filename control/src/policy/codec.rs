//! Bounds-checked big-endian writer and reader shared by the policy wire
//! messages, version records, persisted state and node summaries. The
//! reader never panics: every length is checked before use.

use thiserror::Error;

/// Why bytes could not be decoded. The string names the field.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Input ends before the field.
    #[error("truncated at {0}")]
    Truncated(&'static str),
    /// Encoding version this node does not understand.
    #[error("unknown encoding version {0}")]
    UnknownVersion(u8),
    /// A field holds an impossible value.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// Bytes left after the last field.
    #[error("trailing bytes")]
    Trailing,
}

/// Append-only big-endian writer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self::default()
    }
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    /// LEB128 unsigned varint (1 byte below 128, at most 10).
    pub(crate) fn varint(&mut self, mut v: u64) -> &mut Self {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(b);
                return self;
            }
            self.buf.push(b | 0x80);
        }
    }
    /// String with a u8 length; callers bound it beforehand.
    pub(crate) fn str8(&mut self, s: &str) -> &mut Self {
        let s = truncate_utf8(s, u8::MAX as usize);
        self.u8(s.len() as u8).bytes(s.as_bytes())
    }
    /// String with a u16 length.
    pub(crate) fn str16(&mut self, s: &str) -> &mut Self {
        let s = truncate_utf8(s, u16::MAX as usize);
        self.u16(s.len() as u16).bytes(s.as_bytes())
    }
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }
    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// Longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Bounds-checked reader.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Self { b, pos: 0 }
    }
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(DecodeError::Truncated(what))?;
        let s = self
            .b
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated(what))?;
        self.pos = end;
        Ok(s)
    }
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let s = self.take(2, what)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8(what)?;
            let part = u64::from(b & 0x7f);
            if i == 9 && part > 1 {
                return Err(DecodeError::Invalid(what));
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Invalid(what))
    }
    fn utf8(&mut self, n: usize, max: usize, what: &'static str) -> Result<String, DecodeError> {
        if n > max {
            return Err(DecodeError::Invalid(what));
        }
        let s = self.take(n, what)?;
        std::str::from_utf8(s)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Invalid(what))
    }
    /// A u8-length UTF-8 string of at most `max` bytes.
    pub(crate) fn str8(&mut self, max: usize, what: &'static str) -> Result<String, DecodeError> {
        let n = self.u8(what)? as usize;
        self.utf8(n, max, what)
    }
    /// A u16-length UTF-8 string of at most `max` bytes.
    pub(crate) fn str16(&mut self, max: usize, what: &'static str) -> Result<String, DecodeError> {
        let n = self.u16(what)? as usize;
        self.utf8(n, max, what)
    }
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.b[self.pos..];
        self.pos = self.b.len();
        s
    }
    pub(crate) fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.b.len() {
            Ok(())
        } else {
            Err(DecodeError::Trailing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_roundtrip_and_limits() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut w = Writer::new();
            w.varint(v);
            let b = w.into_vec();
            let mut r = Reader::new(&b);
            assert_eq!(r.varint("v").unwrap(), v);
            r.finish().unwrap();
        }
        // 11 continuation bytes and an overflowing 10th byte are refused.
        assert!(Reader::new(&[0xff; 11]).varint("v").is_err());
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert!(Reader::new(&over).varint("v").is_err());
        assert_eq!(
            Reader::new(&[0x80]).varint("v"),
            Err(DecodeError::Truncated("v"))
        );
    }

    #[test]
    fn strings_are_bounded_and_utf8() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        let mut w = Writer::new();
        w.str8("abc");
        let b = w.into_vec();
        assert_eq!(Reader::new(&b).str8(3, "s").unwrap(), "abc");
        assert_eq!(Reader::new(&b).str8(2, "s"), Err(DecodeError::Invalid("s")));
        assert_eq!(
            Reader::new(&[2, 0xff, 0xfe]).str8(8, "s"),
            Err(DecodeError::Invalid("s"))
        );
    }
}
