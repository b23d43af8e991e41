//! The packed form of a closed period of one series (a "chunk"), as stored in SQLite.
//!
//! SQLite keeps the rows and the transactions; one row per point would cost ~40 bytes per
//! point and a B-tree insert per point, so closed periods are packed like the chunks of
//! Prometheus or Gorilla: the points of one series in one period, as small deltas. Format 1:
//!
//! | field | encoding |
//! |---|---|
//! | format | 1 byte, 1 |
//! | points `n` | LEB128 varint, 1..=span |
//! | per point: slot | varint: slots after the previous point's slot + 1 (the first: slot index) |
//! | per point: count and flag | varint `count << 1 \| same`, `count >= 1`; `same` = min, max and sum are equal |
//! | per point: sum | zig-zag varint, delta from the previous point's sum |
//! | per point unless `same`: min, max | zig-zag varints, deltas from the previous point's min and max |
//!
//! A steady series at one-second resolution costs 3-4 bytes per point. [`decode`] rejects
//! anything else with an error and never panics (it has a fuzz target).

use thiserror::Error;

use crate::point::Point;

/// Format byte of chunks written by this build.
pub const FORMAT: u8 = 1;

/// A chunk that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    /// The data ended inside a field.
    #[error("chunk truncated at byte {0}")]
    Truncated(usize),
    /// Unknown format byte.
    #[error("chunk format {0} is not supported (expected {FORMAT})")]
    Format(u8),
    /// A varint longer than 64 bits.
    #[error("chunk has an overlong number at byte {0}")]
    Overlong(usize),
    /// A point outside the chunk's period, a zero count or too many points.
    #[error("chunk has an invalid point at byte {0}")]
    Invalid(usize),
    /// Bytes after the last point.
    #[error("chunk has {0} trailing bytes")]
    Trailing(usize),
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Packs `points` — (slot, point) with strictly increasing slots below `span` — into a chunk.
pub fn encode(points: &[(u32, Point)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + points.len() * 4);
    out.push(FORMAT);
    put_varint(&mut out, points.len() as u64);
    let (mut next_slot, mut sum, mut min, mut max) = (0u32, 0i64, 0i64, 0i64);
    for (slot, p) in points {
        debug_assert!(*slot >= next_slot, "slots must increase");
        put_varint(&mut out, u64::from(slot.saturating_sub(next_slot)));
        next_slot = slot + 1;
        let same = p.min == p.sum && p.max == p.sum;
        put_varint(&mut out, (u64::from(p.count) << 1) | u64::from(same));
        put_varint(&mut out, zigzag(p.sum.wrapping_sub(sum)));
        sum = p.sum;
        if !same {
            put_varint(&mut out, zigzag(p.min.wrapping_sub(min)));
            put_varint(&mut out, zigzag(p.max.wrapping_sub(max)));
        }
        min = p.min;
        max = p.max;
    }
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, ChunkError> {
        let start = self.pos;
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(ChunkError::Truncated(self.pos))?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(ChunkError::Overlong(start));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ChunkError::Overlong(start))
    }
}

/// Unpacks a chunk of a period with `span` slots into (slot, point) pairs, appending to `out`.
pub fn decode(buf: &[u8], span: u32, out: &mut Vec<(u32, Point)>) -> Result<(), ChunkError> {
    let mut r = Reader { buf, pos: 0 };
    let format = *buf.first().ok_or(ChunkError::Truncated(0))?;
    if format != FORMAT {
        return Err(ChunkError::Format(format));
    }
    r.pos = 1;
    let n = r.varint()?;
    if n == 0 || n > u64::from(span) {
        return Err(ChunkError::Invalid(1));
    }
    let (mut next_slot, mut sum, mut min, mut max) = (0u64, 0i64, 0i64, 0i64);
    for _ in 0..n {
        let at = r.pos;
        let slot = next_slot.saturating_add(r.varint()?);
        if slot >= u64::from(span) {
            return Err(ChunkError::Invalid(at));
        }
        next_slot = slot + 1;
        let cf = r.varint()?;
        let count = u32::try_from(cf >> 1).map_err(|_| ChunkError::Invalid(at))?;
        if count == 0 {
            return Err(ChunkError::Invalid(at));
        }
        sum = sum.wrapping_add(unzigzag(r.varint()?));
        if cf & 1 == 1 {
            min = sum;
            max = sum;
        } else {
            min = min.wrapping_add(unzigzag(r.varint()?));
            max = max.wrapping_add(unzigzag(r.varint()?));
        }
        out.push((
            slot as u32,
            Point {
                sum,
                count,
                min,
                max,
            },
        ));
    }
    if r.pos != buf.len() {
        return Err(ChunkError::Trailing(buf.len() - r.pos));
    }
    Ok(())
}

/// The body of the fuzz target `fuzz/fuzz_targets/chunk_decode.rs`, also run by the unit
/// tests over random input and mutations of valid chunks: the first byte is the span, the
/// rest a chunk; decoding never panics, and what decodes re-encodes to the same points.
pub fn fuzz_body(data: &[u8]) {
    let span = u32::from(data.first().copied().unwrap_or(60)).max(1);
    let mut out = Vec::new();
    if decode(data.get(1..).unwrap_or(&[]), span, &mut out).is_ok() {
        let mut again = Vec::new();
        decode(&encode(&out), span, &mut again).unwrap();
        assert_eq!(again, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(points: &[(u32, Point)], span: u32) {
        let enc = encode(points);
        let mut dec = Vec::new();
        decode(&enc, span, &mut dec).unwrap();
        assert_eq!(dec, points);
    }

    #[test]
    fn steady_second_points_are_small() {
        let pts: Vec<(u32, Point)> = (0..60).map(|s| (s, Point::single(625_000))).collect();
        let enc = encode(&pts);
        round_trip(&pts, 60);
        // 3 bytes per point after the first (slot gap 0, count and flag, sum delta 0).
        assert_eq!(enc.len(), 2 + 5 + 59 * 3);
    }

    #[test]
    fn rejects_bad_chunks() {
        let pts = vec![(3, Point::over(100, 2)), (7, Point::single(-5))];
        let enc = encode(&pts);
        round_trip(&pts, 60);
        let mut out = Vec::new();
        assert_eq!(decode(&[], 60, &mut out), Err(ChunkError::Truncated(0)));
        assert_eq!(decode(&[2, 1], 60, &mut out), Err(ChunkError::Format(2)));
        assert!(matches!(
            decode(&enc, 5, &mut out),
            Err(ChunkError::Invalid(_))
        ));
        assert!(matches!(
            decode(&enc[..enc.len() - 1], 60, &mut out),
            Err(ChunkError::Truncated(_))
        ));
        let mut long = enc.clone();
        long.push(0);
        assert_eq!(decode(&long, 60, &mut out), Err(ChunkError::Trailing(1)));
        let overlong = [
            1u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ];
        assert!(matches!(
            decode(&overlong, 60, &mut out),
            Err(ChunkError::Overlong(_))
        ));
        // A zero count.
        assert!(matches!(
            decode(&[1, 1, 0, 1, 0], 60, &mut out),
            Err(ChunkError::Invalid(_))
        ));
    }

    proptest! {
        #[test]
        fn any_points_round_trip(raw in proptest::collection::btree_map(0u32..3600, (any::<i64>(), 1u32..=u32::MAX >> 1, any::<i64>(), any::<i64>()), 1..200)) {
            let pts: Vec<(u32, Point)> = raw.into_iter().map(|(s, (sum, count, min, max))| (s, Point { sum, count, min, max })).collect();
            round_trip(&pts, 3600);
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            fuzz_body(&data);
        }
    }

    #[test]
    fn corpus_mutations_never_panic() {
        let corpus = [
            encode(&[(0, Point::single(1))]),
            encode(&[(5, Point::over(1 << 40, 3)), (59, Point::single(i64::MIN))]),
            encode(
                &(0..60)
                    .map(|s| (s, Point::single(s as i64 * 7)))
                    .collect::<Vec<_>>(),
            ),
        ];
        for c in &corpus {
            let mut data = vec![60u8];
            data.extend_from_slice(c);
            fuzz_body(&data);
            for i in 1..data.len() {
                for b in [0u8, 1, 0x7f, 0x80, 0xff] {
                    let mut m = data.clone();
                    m[i] = b;
                    fuzz_body(&m);
                    fuzz_body(&m[..i]);
                }
            }
        }
    }
}
