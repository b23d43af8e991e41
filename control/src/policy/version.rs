//! Versions of the pool policy: identity, ordering, metadata, lineage and
//! the self-contained *record* (metadata plus document bytes) that is
//! transferred, stored and persisted as one unit.
//!
//! # Identity and order
//! A version is `(term, seq)`. A [`Term`] belongs to one master incarnation
//! (`n`, master id, master boot epoch): only that master numbers versions in
//! it, one after the other, so two sides of a partition can never publish
//! the same version with different content. `seq` is the number operators
//! see (`v12`); a new version gets one more than the highest seq its master
//! has seen anywhere, so numbers keep growing across terms. Versions are
//! ordered by term first, then seq: after a partition heals the pool
//! converges on the highest, i.e. the side whose master started the newer
//! term (ties of `n` broken by master id, then epoch).
//!
//! # Lineage
//! Every version lists the terms of its ancestry with the last seq it took
//! from each ([`Lineage`]), so any node can tell whether a version it holds
//! is an ancestor of another (superseded normally) or a sibling that lost a
//! partition merge (reported, see [`Kind::Merge`]).

use std::fmt;

use sha2::{Digest, Sha256};

use super::codec::{truncate_utf8, DecodeError, Reader, Writer};
use crate::exchange::NodeId;

/// Largest policy document (TOML text) accepted, in bytes.
pub const MAX_DOCUMENT: usize = 256 * 1024;
/// Largest `user` of an apply.
pub const MAX_USER: usize = 64;
/// Largest `--message` of an apply.
pub const MAX_MESSAGE: usize = 1024;
/// Terms remembered in a version's lineage (older ones are elided).
pub const MAX_LINEAGE: usize = 16;
/// Lost versions one merge version can report.
pub const MAX_LOST: usize = 32;
/// `user` and `message` as kept in a [`LostRef`].
pub const LOST_USER: usize = 32;
/// See [`LOST_USER`].
pub const LOST_MESSAGE: usize = 64;
/// Largest record (metadata plus document).
pub const MAX_RECORD: usize = MAX_DOCUMENT + 16 * 1024;

/// Encoding version of records.
const RECORD_VERSION: u8 = 1;
const TYPE_VERSION: u8 = 1;
const TYPE_DRAFT: u8 = 2;

/// SHA-256 of a document or record.
pub type Hash = [u8; 32];

/// Content hash of `bytes`.
pub fn content_hash(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// First 6 bytes of a hash in hex, for humans.
pub fn short_hash(h: &Hash) -> String {
    h[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// A master's term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Term {
    /// Grows by one over the highest term a new master has seen.
    pub n: u32,
    /// The master that owns the term.
    pub node: NodeId,
    /// The master's boot epoch (a restarted master never reuses a term).
    pub epoch: u32,
}

/// Identity of a published version, ordered by `(term, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionId {
    /// Term of the master that numbered it.
    pub term: Term,
    /// Number shown to operators, at least 1.
    pub seq: u64,
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.seq)
    }
}

impl VersionId {
    /// "v12 (term 3 of node 1)".
    pub fn long(&self) -> String {
        format!(
            "v{} (term {} of node {})",
            self.seq, self.term.n, self.term.node
        )
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u32(self.term.n)
            .u32(self.term.node)
            .u32(self.term.epoch)
            .u64(self.seq);
    }

    /// Writes `None` as all zeros (seq 0 is never a version).
    pub(crate) fn write_opt(v: Option<VersionId>, w: &mut Writer) {
        match v {
            Some(v) => v.write(w),
            None => {
                w.u32(0).u32(0).u32(0).u64(0);
            }
        }
    }

    pub(crate) fn read_opt(r: &mut Reader<'_>) -> Result<Option<VersionId>, DecodeError> {
        let term = Term {
            n: r.u32("version term")?,
            node: r.u32("version term")?,
            epoch: r.u32("version term")?,
        };
        let seq = r.u64("version seq")?;
        Ok((seq != 0).then_some(VersionId { term, seq }))
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<VersionId, DecodeError> {
        Self::read_opt(r)?.ok_or(DecodeError::Invalid("version seq"))
    }

    /// Encoded size.
    pub const LEN: usize = 20;
}

/// Identifies one apply request pool-wide (retransmissions and a master
/// failover never number it twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReqId {
    /// Requesting node.
    pub node: NodeId,
    /// Its boot epoch.
    pub epoch: u32,
    /// Counter within the epoch.
    pub n: u32,
}

impl ReqId {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.u32(self.node).u32(self.epoch).u32(self.n);
    }
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            node: r.u32("request id")?,
            epoch: r.u32("request id")?,
            n: r.u32("request id")?,
        })
    }
}

/// What produced a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `policy apply`.
    Apply,
    /// `policy rollback N`: N's content as a new version.
    Rollback {
        /// The seq rolled back to.
        to: u64,
    },
    /// A node file's initial policy, used because the pool had none.
    Initial,
    /// Published by the master after a partition heal: the winner's content,
    /// listing the versions of the other side that were dropped.
    Merge,
}

impl Kind {
    fn write(&self, w: &mut Writer) {
        match self {
            Kind::Apply => w.u8(0),
            Kind::Rollback { to } => w.u8(1).u64(*to),
            Kind::Initial => w.u8(2),
            Kind::Merge => w.u8(3),
        };
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8("kind")? {
            0 => Kind::Apply,
            1 => Kind::Rollback {
                to: r.u64("rollback seq")?,
            },
            2 => Kind::Initial,
            3 => Kind::Merge,
            _ => return Err(DecodeError::Invalid("kind")),
        })
    }

    /// Short name for history output.
    pub fn name(&self) -> String {
        match self {
            Kind::Apply => "apply".into(),
            Kind::Rollback { to } => format!("rollback to v{to}"),
            Kind::Initial => "initial".into(),
            Kind::Merge => "partition merge".into(),
        }
    }
}

/// A version that lost a partition merge, as reported in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostRef {
    /// The lost version.
    pub id: VersionId,
    /// Node the change was applied on.
    pub author: NodeId,
    /// Wall-clock time on the author node, ms since the Unix epoch.
    pub author_ms: u64,
    /// User (truncated to [`LOST_USER`] bytes).
    pub user: String,
    /// Message (truncated to [`LOST_MESSAGE`] bytes).
    pub message: String,
}

impl LostRef {
    /// The audit reference of a version.
    pub fn of(m: &VersionMeta) -> Self {
        Self {
            id: m.id,
            author: m.author,
            author_ms: m.author_ms,
            user: truncate_utf8(&m.user, LOST_USER).to_owned(),
            message: truncate_utf8(&m.message, LOST_MESSAGE).to_owned(),
        }
    }
    /// Largest encoding.
    pub const MAX_LEN: usize = VersionId::LEN + 4 + 8 + 1 + LOST_USER + 1 + LOST_MESSAGE;

    pub(crate) fn write(&self, w: &mut Writer) {
        self.id.write(w);
        w.u32(self.author)
            .u64(self.author_ms)
            .str8(truncate_utf8(&self.user, LOST_USER))
            .str8(truncate_utf8(&self.message, LOST_MESSAGE));
    }
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: VersionId::read(r)?,
            author: r.u32("lost author")?,
            author_ms: r.u64("lost time")?,
            user: r.str8(LOST_USER, "lost user")?,
            message: r.str8(LOST_MESSAGE, "lost message")?,
        })
    }
}

/// The terms a version descends through, oldest first, each with the last
/// seq taken from it. Within one term versions form a single chain (one
/// master numbers them in order), so this decides ancestry exactly unless
/// the list was truncated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lineage {
    /// (term, last seq of that term in the ancestry), terms increasing.
    pub segments: Vec<(Term, u64)>,
    /// Older terms were dropped to stay within [`MAX_LINEAGE`].
    pub truncated: bool,
}

impl Lineage {
    /// The lineage of a child `id` of a parent with lineage `parent`.
    pub fn child(parent: Option<&Lineage>, id: VersionId) -> Lineage {
        let mut l = parent.cloned().unwrap_or_default();
        match l.segments.last_mut() {
            Some((t, s)) if *t == id.term => *s = id.seq,
            _ => l.segments.push((id.term, id.seq)),
        }
        if l.segments.len() > MAX_LINEAGE {
            let drop = l.segments.len() - MAX_LINEAGE;
            l.segments.drain(..drop);
            l.truncated = true;
        }
        l
    }

    /// Whether `v` is this version or one of its ancestors. Versions older
    /// than a truncated lineage count as ancestors (never reported lost).
    pub fn includes(&self, v: VersionId) -> bool {
        if self
            .segments
            .iter()
            .any(|(t, s)| *t == v.term && v.seq <= *s)
        {
            return true;
        }
        self.truncated && self.segments.first().is_some_and(|(t, _)| v.term < *t)
    }

    fn write(&self, w: &mut Writer) {
        w.u8(self.segments.len() as u8 | if self.truncated { 0x80 } else { 0 });
        for (t, s) in &self.segments {
            VersionId { term: *t, seq: *s }.write(w);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let b = r.u8("lineage")?;
        let n = (b & 0x7f) as usize;
        if n == 0 || n > MAX_LINEAGE {
            return Err(DecodeError::Invalid("lineage length"));
        }
        let mut segments = Vec::with_capacity(n);
        for _ in 0..n {
            let v = VersionId::read(r)?;
            if segments
                .last()
                .is_some_and(|(t, _): &(Term, u64)| *t >= v.term)
            {
                return Err(DecodeError::Invalid("lineage order"));
            }
            segments.push((v.term, v.seq));
        }
        Ok(Self {
            segments,
            truncated: b & 0x80 != 0,
        })
    }
}

/// Everything about a version except its document bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMeta {
    /// Identity.
    pub id: VersionId,
    /// The pool's version it replaced (None for the first).
    pub parent: Option<VersionId>,
    /// Hash of the document bytes.
    pub doc_hash: Hash,
    /// Length of the document.
    pub doc_len: u32,
    /// The apply request it came from.
    pub req: ReqId,
    /// What produced it.
    pub kind: Kind,
    /// Node the change was applied on.
    pub author: NodeId,
    /// Wall-clock time on the author node (ms since the Unix epoch), as that
    /// node saw it: informational, never used for ordering.
    pub author_ms: u64,
    /// Who applied it (as the CLI reported).
    pub user: String,
    /// `--message`.
    pub message: String,
    /// Ancestry.
    pub lineage: Lineage,
    /// For [`Kind::Merge`]: the versions of the losing side.
    pub lost: Vec<LostRef>,
}

/// An apply request's descriptive part, sent with the document to the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// What kind of version it asks for.
    pub kind: Kind,
    /// Requesting node.
    pub author: NodeId,
    /// Wall-clock ms on the requesting node.
    pub author_ms: u64,
    /// User.
    pub user: String,
    /// Message.
    pub message: String,
}

fn check_text(user: &str, message: &str) -> Result<(), DecodeError> {
    if user.len() > MAX_USER {
        return Err(DecodeError::Invalid("user"));
    }
    if message.len() > MAX_MESSAGE {
        return Err(DecodeError::Invalid("message"));
    }
    Ok(())
}

/// Encodes a version record: metadata followed by the document.
pub fn encode_record(meta: &VersionMeta, doc: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(RECORD_VERSION).u8(TYPE_VERSION);
    meta.id.write(&mut w);
    VersionId::write_opt(meta.parent, &mut w);
    w.bytes(&meta.doc_hash).u32(meta.doc_len);
    meta.req.write(&mut w);
    meta.kind.write(&mut w);
    w.u32(meta.author)
        .u64(meta.author_ms)
        .str8(truncate_utf8(&meta.user, MAX_USER))
        .str16(truncate_utf8(&meta.message, MAX_MESSAGE));
    meta.lineage.write(&mut w);
    let lost = &meta.lost[..meta.lost.len().min(MAX_LOST)];
    w.u8(lost.len() as u8);
    for l in lost {
        l.write(&mut w);
    }
    w.bytes(doc);
    w.into_vec()
}

fn read_header(r: &mut Reader<'_>, ty: u8) -> Result<(), DecodeError> {
    let v = r.u8("record version")?;
    if v != RECORD_VERSION {
        return Err(DecodeError::UnknownVersion(v));
    }
    if r.u8("record type")? != ty {
        return Err(DecodeError::Invalid("record type"));
    }
    Ok(())
}

/// Decodes and checks a version record (document hash and length, field
/// bounds, lineage consistent with the id). Never panics.
pub fn decode_record(bytes: &[u8]) -> Result<(VersionMeta, &[u8]), DecodeError> {
    if bytes.len() > MAX_RECORD {
        return Err(DecodeError::Invalid("record size"));
    }
    let mut r = Reader::new(bytes);
    read_header(&mut r, TYPE_VERSION)?;
    let id = VersionId::read(&mut r)?;
    let parent = VersionId::read_opt(&mut r)?;
    if parent.is_some_and(|p| p >= id) {
        return Err(DecodeError::Invalid("parent"));
    }
    let doc_hash = r.array::<32>("document hash")?;
    let doc_len = r.u32("document length")?;
    let req = ReqId::read(&mut r)?;
    let kind = Kind::read(&mut r)?;
    let author = r.u32("author")?;
    let author_ms = r.u64("time")?;
    let user = r.str8(MAX_USER, "user")?;
    let message = r.str16(MAX_MESSAGE, "message")?;
    check_text(&user, &message)?;
    let lineage = Lineage::read(&mut r)?;
    if lineage.segments.last() != Some(&(id.term, id.seq)) {
        return Err(DecodeError::Invalid("lineage head"));
    }
    let n = r.u8("lost count")? as usize;
    if n > MAX_LOST {
        return Err(DecodeError::Invalid("lost count"));
    }
    let mut lost = Vec::with_capacity(n);
    for _ in 0..n {
        lost.push(LostRef::read(&mut r)?);
    }
    let doc = r.rest();
    if doc.len() != doc_len as usize || doc.len() > MAX_DOCUMENT {
        return Err(DecodeError::Invalid("document length"));
    }
    if content_hash(doc) != doc_hash {
        return Err(DecodeError::Invalid("document hash"));
    }
    Ok((
        VersionMeta {
            id,
            parent,
            doc_hash,
            doc_len,
            req,
            kind,
            author,
            author_ms,
            user,
            message,
            lineage,
            lost,
        },
        doc,
    ))
}

/// Encodes an apply request's draft record.
pub fn encode_draft(d: &Draft, doc: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(RECORD_VERSION).u8(TYPE_DRAFT);
    d.kind.write(&mut w);
    w.u32(d.author)
        .u64(d.author_ms)
        .str8(truncate_utf8(&d.user, MAX_USER))
        .str16(truncate_utf8(&d.message, MAX_MESSAGE))
        .bytes(doc);
    w.into_vec()
}

/// Decodes a draft record. Never panics.
pub fn decode_draft(bytes: &[u8]) -> Result<(Draft, &[u8]), DecodeError> {
    if bytes.len() > MAX_RECORD {
        return Err(DecodeError::Invalid("record size"));
    }
    let mut r = Reader::new(bytes);
    read_header(&mut r, TYPE_DRAFT)?;
    let kind = Kind::read(&mut r)?;
    if kind == Kind::Merge {
        return Err(DecodeError::Invalid("kind"));
    }
    let author = r.u32("author")?;
    let author_ms = r.u64("time")?;
    let user = r.str8(MAX_USER, "user")?;
    let message = r.str16(MAX_MESSAGE, "message")?;
    let doc = r.rest();
    if doc.len() > MAX_DOCUMENT {
        return Err(DecodeError::Invalid("document length"));
    }
    Ok((
        Draft {
            kind,
            author,
            author_ms,
            user,
            message,
        },
        doc,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn term(n: u32, node: NodeId) -> Term {
        Term { n, node, epoch: 1 }
    }

    pub(crate) fn meta(id: VersionId, parent: Option<&VersionMeta>, doc: &[u8]) -> VersionMeta {
        VersionMeta {
            id,
            parent: parent.map(|p| p.id),
            doc_hash: content_hash(doc),
            doc_len: doc.len() as u32,
            req: ReqId {
                node: 3,
                epoch: 1,
                n: 1,
            },
            kind: Kind::Apply,
            author: 3,
            author_ms: 1_700_000_000_000,
            user: "alice".into(),
            message: "gold 70 / bronze 30".into(),
            lineage: Lineage::child(parent.map(|p| &p.lineage), id),
            lost: Vec::new(),
        }
    }

    #[test]
    fn order_is_term_then_seq() {
        let a = VersionId {
            term: term(5, 1),
            seq: 13,
        };
        let b = VersionId {
            term: term(6, 9),
            seq: 11,
        };
        let c = VersionId {
            term: term(6, 2),
            seq: 20,
        };
        assert!(b > a && c > a && b > c);
        assert_eq!(a.to_string(), "v13");
    }

    #[test]
    fn lineage_decides_ancestry() {
        let t5 = term(5, 1);
        let t6 = term(6, 9);
        let v = |t, seq| VersionId { term: t, seq };
        let root = meta(v(t5, 10), None, b"a");
        let a11 = meta(v(t5, 11), Some(&root), b"b");
        let a12 = meta(v(t5, 12), Some(&a11), b"c");
        let b11 = meta(v(t6, 11), Some(&root), b"d");
        let b12 = meta(v(t6, 12), Some(&b11), b"e");
        assert!(b12.lineage.includes(root.id));
        assert!(b12.lineage.includes(b11.id));
        assert!(!b12.lineage.includes(a11.id));
        assert!(!b12.lineage.includes(a12.id));
        assert!(a12.lineage.includes(a11.id) && a12.lineage.includes(root.id));
        assert_eq!(b12.lineage.segments, vec![(t5, 10), (t6, 12)]);
        // A long chain of terms is truncated; ancient versions count as ancestors.
        let mut m = root.clone();
        for n in 0..40u32 {
            let id = v(term(10 + n, 2), 100 + u64::from(n));
            m = meta(id, Some(&m), b"x");
        }
        assert!(m.lineage.truncated && m.lineage.segments.len() == MAX_LINEAGE);
        assert!(m.lineage.includes(a12.id));
        assert!(m.lineage.includes(v(term(45, 2), 135)));
        assert!(!m.lineage.includes(v(term(45, 2), 136)));
    }

    #[test]
    fn record_roundtrip_and_checks() {
        let doc = b"[jobs.gold]\nweight = 70\n";
        let id = VersionId {
            term: term(2, 1),
            seq: 4,
        };
        let mut m = meta(id, None, doc);
        m.kind = Kind::Merge;
        m.lost.push(LostRef::of(&meta(
            VersionId {
                term: term(1, 4),
                seq: 3,
            },
            None,
            b"q",
        )));
        let rec = encode_record(&m, doc);
        let (back, d) = decode_record(&rec).unwrap();
        assert_eq!(back, m);
        assert_eq!(d, doc);
        // Any change to the document breaks the hash; truncation is caught.
        let mut bad = rec.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(
            decode_record(&bad).unwrap_err(),
            DecodeError::Invalid("document hash")
        );
        for n in 0..rec.len() - doc.len() {
            assert!(decode_record(&rec[..n]).is_err(), "prefix {n}");
        }
        let d = Draft {
            kind: Kind::Rollback { to: 3 },
            author: 2,
            author_ms: 5,
            user: "bob".into(),
            message: "back".into(),
        };
        let rec = encode_draft(&d, doc);
        assert_eq!(decode_draft(&rec).unwrap(), (d, &doc[..]));
    }

    #[test]
    fn oversize_fields_are_truncated_on_encode() {
        let id = VersionId {
            term: term(1, 1),
            seq: 1,
        };
        let mut m = meta(id, None, b"x");
        m.user = "u".repeat(500);
        m.message = "é".repeat(MAX_MESSAGE);
        let (back, _) = decode_record(&encode_record(&m, b"x")).unwrap();
        assert_eq!(back.user.len(), MAX_USER);
        assert!(back.message.len() <= MAX_MESSAGE);
    }
}
