//! A failover record larger than one exchange entry travels in parts.
//!
//! An exchange entry must fit one datagram beside the exchange's headers,
//! so one entry holds [`AUTOMATION_MAX`] bytes. A record that fits (the
//! common case: a dozen triggers) goes inline under [`CODE_AUTOMATION`] as
//! before. A larger one is cut into up to [`PARTS`] parts, each published
//! under its own code ([`PART_CODE`] + i), and the entry under
//! [`CODE_AUTOMATION`] becomes a head naming them:
//!
//! ```text
//! inline = TAG_RECORD u8 | record
//! head   = TAG_SPLIT u8 | seq u64 | parts u8 | len u32 | digest [8]   (little endian)
//! part   = seq u64 | bytes                                            (under PART_CODE + i)
//! digest = the first 8 bytes of SHA-256 over the whole record
//! ```
//!
//! A standby joins the master's parts once every one carries the head's
//! sequence and the digest matches; until then it waits (the parts travel
//! as separate entries and arrive in any order). The digest also rejects
//! parts a node left from an earlier stint as master under the same
//! sequence.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use super::{AUTOMATION_MAX, CODE_AUTOMATION, TAG_RECORD};

/// Head tag: the record is in parts.
pub(super) const TAG_SPLIT: u8 = 3;
/// Exchange code of the first part (the next [`PARTS`] codes are parts).
pub const PART_CODE: u8 = 16;
/// Most parts of one record.
pub const PARTS: usize = 8;
/// Bytes of a record per part.
const CHUNK: usize = AUTOMATION_MAX - 8;
/// Largest record that can be published: 8 parts of 1016 bytes.
pub const RECORD_MAX: usize = PARTS * CHUNK;
const HEAD_LEN: usize = 1 + 8 + 1 + 4 + 8;

/// Parts to publish: (exchange code, entry).
pub type Parts = Vec<(u8, Vec<u8>)>;

fn digest(record: &[u8]) -> [u8; 8] {
    let d = Sha256::digest(record);
    let mut out = [0; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// What to publish for `record` (sequence `seq`): the entry under
/// [`CODE_AUTOMATION`] and the parts, by code. None when it exceeds
/// [`RECORD_MAX`].
pub fn split(seq: u64, record: &[u8]) -> Option<(Vec<u8>, Parts)> {
    if record.len() < AUTOMATION_MAX {
        let mut head = vec![TAG_RECORD];
        head.extend_from_slice(record);
        return Some((head, Vec::new()));
    }
    if record.len() > RECORD_MAX {
        return None;
    }
    let chunks: Vec<&[u8]> = record.chunks(CHUNK).collect();
    let mut head = Vec::with_capacity(HEAD_LEN);
    head.push(TAG_SPLIT);
    head.extend(seq.to_le_bytes());
    head.push(chunks.len() as u8);
    head.extend((record.len() as u32).to_le_bytes());
    head.extend(digest(record));
    let parts = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut p = Vec::with_capacity(8 + c.len());
            p.extend(seq.to_le_bytes());
            p.extend_from_slice(c);
            (PART_CODE + i as u8, p)
        })
        .collect();
    Some((head, parts))
}

/// What a master's entry under [`CODE_AUTOMATION`] gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined<'a> {
    /// A whole record (its encoding).
    Record(Cow<'a, [u8]>),
    /// A head whose parts have not all arrived.
    Waiting,
    /// Not a record (an acknowledgement).
    NotRecord,
    /// A head or parts that cannot be right.
    Malformed(&'static str),
}

/// Joins `entry` with the same node's parts (`part(code)`).
pub fn join<'a>(entry: &'a [u8], part: impl Fn(u8) -> Option<&'a [u8]>) -> Joined<'a> {
    match entry.first() {
        Some(&TAG_RECORD) => return Joined::Record(Cow::Borrowed(&entry[1..])),
        Some(&TAG_SPLIT) => {}
        _ => return Joined::NotRecord,
    }
    if entry.len() != HEAD_LEN {
        return Joined::Malformed("record head length");
    }
    let seq = &entry[1..9];
    let n = usize::from(entry[9]);
    let len = u32::from_le_bytes(entry[10..14].try_into().unwrap_or_default()) as usize;
    if n == 0 || n > PARTS || len > n * CHUNK || len <= (n - 1) * CHUNK {
        return Joined::Malformed("record part count");
    }
    let mut record = Vec::with_capacity(len);
    for i in 0..n {
        let Some(p) = part(PART_CODE + i as u8) else {
            return Joined::Waiting;
        };
        if p.len() < 8 || &p[..8] != seq {
            // Not yet the parts of this sequence.
            return Joined::Waiting;
        }
        record.extend_from_slice(&p[8..]);
    }
    if record.len() != len {
        return Joined::Malformed("record parts length");
    }
    if digest(&record)[..] != entry[14..] {
        return Joined::Malformed("record digest");
    }
    Joined::Record(Cow::Owned(record))
}

/// The exchange codes a pool registers for records: the head's and the
/// parts'.
pub fn codes() -> impl Iterator<Item = u8> {
    std::iter::once(CODE_AUTOMATION).chain((0..PARTS as u8).map(|i| PART_CODE + i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(parts: &'a [(u8, Vec<u8>)]) -> impl Fn(u8) -> Option<&'a [u8]> {
        move |c| parts.iter().find(|(k, _)| *k == c).map(|(_, b)| &b[..])
    }

    #[test]
    fn small_records_stay_inline_and_large_ones_round_trip() {
        let small = vec![7u8; AUTOMATION_MAX - 1];
        let (head, parts) = split(1, &small).unwrap();
        assert!(parts.is_empty() && head.len() == AUTOMATION_MAX);
        assert_eq!(
            join(&head, |_| None),
            Joined::Record(Cow::Borrowed(&small[..]))
        );
        for len in [AUTOMATION_MAX, 3 * CHUNK, 3 * CHUNK + 1, RECORD_MAX] {
            let rec: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let (head, parts) = split(9, &rec).unwrap();
            assert_eq!(parts.len(), len.div_ceil(CHUNK), "{len}");
            assert!(parts.iter().all(|(_, p)| p.len() <= AUTOMATION_MAX));
            assert_eq!(join(&head, lookup(&parts)), Joined::Record(Cow::Owned(rec)));
        }
        assert_eq!(split(1, &vec![0; RECORD_MAX + 1]), None);
    }

    #[test]
    fn a_standby_waits_for_every_part_of_the_same_sequence() {
        let rec = vec![5u8; 2 * CHUNK + 10];
        let (head, mut parts) = split(4, &rec).unwrap();
        let missing = parts.pop().unwrap();
        assert_eq!(join(&head, lookup(&parts)), Joined::Waiting);
        // The last part of an older sequence: still waiting.
        let (_, old) = split(3, &rec).unwrap();
        parts.push(old[2].clone());
        assert_eq!(join(&head, lookup(&parts)), Joined::Waiting);
        parts.pop();
        parts.push(missing);
        assert!(matches!(join(&head, lookup(&parts)), Joined::Record(_)));
        // Same sequence, other content (an earlier stint as master).
        let (_, other) = split(4, &vec![6u8; 2 * CHUNK + 10]).unwrap();
        parts[0] = other[0].clone();
        assert_eq!(
            join(&head, lookup(&parts)),
            Joined::Malformed("record digest")
        );
    }

    #[test]
    fn garbage_heads_are_refused_without_panicking() {
        assert_eq!(join(&[], |_| None), Joined::NotRecord);
        assert_eq!(join(&[2, 0, 0], |_| None), Joined::NotRecord);
        let (head, parts) = split(4, &vec![1u8; 3 * CHUNK]).unwrap();
        for n in 1..head.len() {
            assert_eq!(
                join(&head[..n], lookup(&parts)),
                Joined::Malformed("record head length")
            );
        }
        let mut bad = head.clone();
        bad[9] = 0;
        assert_eq!(
            join(&bad, lookup(&parts)),
            Joined::Malformed("record part count")
        );
        bad[9] = 200;
        assert_eq!(
            join(&bad, lookup(&parts)),
            Joined::Malformed("record part count")
        );
        let mut bad = head.clone();
        bad[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            join(&bad, lookup(&parts)),
            Joined::Malformed("record part count")
        );
        let mut rng = 0x9e37_79b9_u32;
        for _ in 0..20_000 {
            let mut b = head.clone();
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            let i = rng as usize % b.len();
            b[i] = (rng >> 8) as u8;
            let _ = join(&b, lookup(&parts));
        }
    }
}
