//! What a node persists: the latest versions it holds (complete records,
//! so it can serve them and roll back after a restart), its active version,
//! its last refusal, the history and its own master term. The I/O layer
//! writes the bytes atomically (temp file + rename); a checksum catches a
//! corrupt file, which [`decode`] refuses with a clear error.
//!
//! ```text
//! magic "HRPOLICY" | version u8 (1) | node u32
//! | term flag u8 [n u32 node u32 epoch u32] | active version (zeros = none)
//! | rejected flag u8 [version, reason str8]
//! | history count u16, entries | record count u16, (len u32, record) *
//! | sha256[32] of everything before
//! ```

use super::codec::{DecodeError, Reader, Writer};
use super::history::HistoryEntry;
use super::version::{content_hash, decode_record, Term, VersionId};
use super::wire::MAX_REASON;
use crate::exchange::NodeId;

const MAGIC: &[u8; 8] = b"HRPOLICY";
const VERSION: u8 = 1;
/// Most records in a persisted state.
pub const MAX_RECORDS: usize = 64;
/// Most history entries in a persisted state.
pub const MAX_HISTORY: usize = 4096;

/// The persisted state of one node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Persisted {
    /// Node that wrote it.
    pub node: NodeId,
    /// Its current term as master, if it ever numbered versions.
    pub term: Option<Term>,
    /// The version it enforced.
    pub active: Option<VersionId>,
    /// Its last refusal.
    pub rejected: Option<(VersionId, String)>,
    /// History, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Version records (each checked on decode).
    pub records: Vec<Vec<u8>>,
}

/// Encodes the state.
pub fn encode(p: &Persisted) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(MAGIC).u8(VERSION).u32(p.node);
    match p.term {
        Some(t) => {
            w.u8(1).u32(t.n).u32(t.node).u32(t.epoch);
        }
        None => {
            w.u8(0);
        }
    }
    VersionId::write_opt(p.active, &mut w);
    match &p.rejected {
        Some((v, why)) => {
            w.u8(1);
            v.write(&mut w);
            w.str8(super::codec::truncate_utf8(why, MAX_REASON));
        }
        None => {
            w.u8(0);
        }
    }
    let hist = &p.history[p.history.len().saturating_sub(MAX_HISTORY)..];
    w.u16(hist.len() as u16);
    for h in hist {
        h.write(&mut w);
    }
    let recs = &p.records[..p.records.len().min(MAX_RECORDS)];
    w.u16(recs.len() as u16);
    for r in recs {
        w.u32(r.len() as u32).bytes(r);
    }
    let sum = content_hash(&w.buf);
    w.bytes(&sum);
    w.into_vec()
}

/// Decodes and checks persisted state. Never panics.
pub fn decode(b: &[u8]) -> Result<Persisted, DecodeError> {
    if b.len() < MAGIC.len() + 32 {
        return Err(DecodeError::Truncated("persisted state"));
    }
    let (body, sum) = b.split_at(b.len() - 32);
    if &b[..MAGIC.len()] != MAGIC {
        return Err(DecodeError::Invalid("magic (not a policy state file)"));
    }
    if content_hash(body) != sum {
        return Err(DecodeError::Invalid("checksum (file corrupt)"));
    }
    let mut r = Reader::new(body);
    r.take(MAGIC.len(), "magic")?;
    let v = r.u8("state version")?;
    if v != VERSION {
        return Err(DecodeError::UnknownVersion(v));
    }
    let node = r.u32("node")?;
    let term = match r.u8("term flag")? {
        0 => None,
        1 => Some(Term {
            n: r.u32("term")?,
            node: r.u32("term")?,
            epoch: r.u32("term")?,
        }),
        _ => return Err(DecodeError::Invalid("term flag")),
    };
    let active = VersionId::read_opt(&mut r)?;
    let rejected = match r.u8("rejected flag")? {
        0 => None,
        1 => Some((VersionId::read(&mut r)?, r.str8(MAX_REASON, "reason")?)),
        _ => return Err(DecodeError::Invalid("rejected flag")),
    };
    let n = r.u16("history count")? as usize;
    if n > MAX_HISTORY {
        return Err(DecodeError::Invalid("history count"));
    }
    let mut history = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        history.push(HistoryEntry::read(&mut r)?);
    }
    let n = r.u16("record count")? as usize;
    if n > MAX_RECORDS {
        return Err(DecodeError::Invalid("record count"));
    }
    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.u32("record length")? as usize;
        let rec = r.take(len, "record")?;
        decode_record(rec)?;
        records.push(rec.to_vec());
    }
    r.finish()?;
    Ok(Persisted {
        node,
        term,
        active,
        rejected,
        history,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::version::tests::{meta, term};
    use crate::policy::version::{encode_record, LostRef};

    pub(crate) fn sample() -> Persisted {
        let v1 = VersionId {
            term: term(1, 1),
            seq: 1,
        };
        let v2 = VersionId {
            term: term(1, 1),
            seq: 2,
        };
        let m1 = meta(v1, None, b"[jobs.a]\n");
        let m2 = meta(v2, Some(&m1), b"[jobs.b]\n");
        let mut lost = HistoryEntry::lost(
            &LostRef {
                id: VersionId {
                    term: term(1, 4),
                    seq: 2,
                },
                author: 4,
                author_ms: 5,
                user: "eve".into(),
                message: "m".into(),
            },
            v2,
        );
        lost.in_merge = true;
        Persisted {
            node: 3,
            term: Some(term(1, 3)),
            active: Some(v2),
            rejected: Some((v1, "rule 2: no such interface".into())),
            history: vec![
                HistoryEntry::published(&m1),
                lost,
                HistoryEntry::published(&m2),
            ],
            records: vec![
                encode_record(&m1, b"[jobs.a]\n"),
                encode_record(&m2, b"[jobs.b]\n"),
            ],
        }
    }

    #[test]
    fn roundtrip_and_corruption() {
        let p = sample();
        let b = encode(&p);
        assert_eq!(decode(&b).unwrap(), p);
        for n in 0..b.len() {
            assert!(decode(&b[..n]).is_err());
        }
        let mut bad = b.clone();
        bad[20] ^= 1;
        assert_eq!(
            decode(&bad),
            Err(DecodeError::Invalid("checksum (file corrupt)"))
        );
        assert_eq!(
            decode(&[0u8; 64]),
            Err(DecodeError::Invalid("magic (not a policy state file)"))
        );
        assert_eq!(
            decode(&encode(&Persisted::default())).unwrap(),
            Persisted::default()
        );
    }
}
