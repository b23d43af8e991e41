//! Wire encoding of the policy protocol: direct messages (one per exchange
//! direct datagram) and the gossiped per-node *beacon*.
//!
//! ```text
//! message = version u8 (1) | tag u8 | fields (big endian)
//!   1 Submit       req | draft hash[32] | draft len u32 | initial u8
//!   2 SubmitReply  req | outcome u8 | ...
//!   3 Announce     version | record hash[32] | record len u32 | stage u8
//!   4 StageReply   version | status u8 | reason str8 / ahead version
//!   5 Activate     version
//!   6 ActiveAck    version
//!   7 Fetch        hash[32] | chunk_size u16 | n u8 | index u16 * n
//!   8 Chunk        hash[32] | total u32 | chunk_size u16 | index u16 | data
//!   9 Pull         version
//!  10 Lost         n u8 | LostRef * n
//!  11 LostAck      n u8 | version * n
//! version = term n u32 | term node u32 | term epoch u32 | seq u64
//! req     = node u32 | epoch u32 | n u32
//! ```
//! Decoders never panic: every length and count is checked, strings are
//! bounded UTF-8, trailing bytes are refused.

use super::codec::{truncate_utf8, DecodeError, Reader, Writer};
use super::version::{Hash, LostRef, ReqId, VersionId};
use crate::exchange::NodeId;

/// Encoding version of messages and beacons.
pub const MSG_VERSION: u8 = 1;
/// Bytes a [`Msg::Chunk`] adds around its data.
pub const CHUNK_OVERHEAD: usize = 1 + 1 + 32 + 4 + 2 + 2;
/// Most chunk indices one fetch asks for.
pub const MAX_FETCH: usize = 64;
/// Longest reason string carried in a message.
pub const MAX_REASON: usize = 200;
/// Longest rejection reason in a beacon.
pub const BEACON_REASON: usize = 96;
/// Largest beacon encoding (the registration's `max_size`).
pub const BEACON_MAX: usize = 2 + 4 * COMPACT_MAX + 4 + 1 + BEACON_REASON;
/// Largest compact version id (varint n, varint node, epoch u32, varint seq).
const COMPACT_MAX: usize = 5 + 5 + 4 + 10;

/// A reference to a chunked blob (draft or version record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRef {
    /// SHA-256 of the blob.
    pub hash: Hash,
    /// Length in bytes.
    pub len: u32,
}

impl BlobRef {
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.hash).u32(self.len);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            hash: r.array("blob hash")?,
            len: r.u32("blob length")?,
        })
    }
}

fn read_bool(r: &mut Reader<'_>, what: &'static str) -> Result<bool, DecodeError> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Invalid(what)),
    }
}

/// The result of a rollout as carried to the requester (bounded to one
/// datagram: lists are cut and the cut counted in `omitted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The version rolled out.
    pub version: VersionId,
    /// Nodes that run it.
    pub active: u32,
    /// Nodes whose validation refused it (they keep their previous version).
    pub rejected: Vec<(NodeId, String)>,
    /// Live nodes that neither staged nor refused it before the timeout.
    pub stragglers: Vec<NodeId>,
    /// Entries left out of `rejected` and `stragglers` to fit a datagram.
    pub omitted: u32,
    /// Master's time from starting the rollout to this report, ms.
    pub took_ms: u32,
}

impl Report {
    /// Cuts the lists until the encoded message fits `room` bytes.
    pub fn fit(&mut self, req: ReqId, room: usize) {
        loop {
            let m = Msg::SubmitReply {
                req,
                outcome: Outcome::Done(self.clone()),
            };
            if m.encode().len() <= room {
                return;
            }
            if self.stragglers.pop().is_none() && self.rejected.pop().is_none() {
                return;
            }
            self.omitted += 1;
        }
    }
}

/// The master's answer to a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Received; waiting for the document or for the previous rollout.
    Queued,
    /// Numbered; the rollout is under way.
    Assigned(VersionId),
    /// Not accepted (invalid at the master, pool already has a policy for an
    /// initial one, rollback target unknown ...).
    Refused(String),
    /// The receiver is not master; retry at this node.
    NotMaster(NodeId),
    /// Rollout finished.
    Done(Report),
}

/// A node's answer to a stage request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageStatus {
    /// Validated and ready to activate.
    Staged,
    /// The node's validation refused it.
    Rejected(String),
    /// The node already runs a higher version.
    Ahead(VersionId),
}

/// One direct message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Requester to master: number and roll out the draft blob.
    Submit {
        /// Request id.
        req: ReqId,
        /// The draft record (fetched from the requester).
        draft: BlobRef,
        /// It is a node file's initial policy (refused at once if the pool
        /// has a policy or another initial one is queued).
        initial: bool,
    },
    /// Master to requester.
    SubmitReply {
        /// Request id.
        req: ReqId,
        /// Outcome.
        outcome: Outcome,
    },
    /// A version record is available from the sender; with `stage` (only
    /// from the master) the receiver must stage it and reply.
    Announce {
        /// Version.
        id: VersionId,
        /// Its record.
        record: BlobRef,
        /// Stage request.
        stage: bool,
    },
    /// Node to master.
    StageReply {
        /// Version.
        id: VersionId,
        /// Status.
        status: StageStatus,
    },
    /// Master to node: activate the staged version now.
    Activate {
        /// Version.
        id: VersionId,
    },
    /// Node to master: running it.
    ActiveAck {
        /// Version.
        id: VersionId,
    },
    /// Ask for chunks of a blob.
    Fetch {
        /// Blob.
        hash: Hash,
        /// Chunk size the indices are in.
        chunk_size: u16,
        /// Chunk indices.
        indices: Vec<u16>,
    },
    /// One chunk of a blob.
    Chunk {
        /// Blob.
        hash: Hash,
        /// Blob length.
        total: u32,
        /// Chunk size of the layout.
        chunk_size: u16,
        /// Index.
        index: u16,
        /// Bytes.
        data: Vec<u8>,
    },
    /// Ask a holder to announce a version (catch-up).
    Pull {
        /// Version.
        id: VersionId,
    },
    /// Node to master: versions this node held were dropped by a merge.
    Lost {
        /// The lost versions.
        refs: Vec<LostRef>,
    },
    /// Master to node: recorded.
    LostAck {
        /// The versions recorded.
        ids: Vec<VersionId>,
    },
}

fn write_reason(w: &mut Writer, s: &str) {
    w.str8(truncate_utf8(s, MAX_REASON));
}

impl Msg {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(MSG_VERSION);
        match self {
            Msg::Submit {
                req,
                draft,
                initial,
            } => {
                w.u8(1);
                req.write(&mut w);
                draft.write(&mut w);
                w.u8(u8::from(*initial));
            }
            Msg::SubmitReply { req, outcome } => {
                w.u8(2);
                req.write(&mut w);
                match outcome {
                    Outcome::Queued => {
                        w.u8(0);
                    }
                    Outcome::Assigned(v) => {
                        w.u8(1);
                        v.write(&mut w);
                    }
                    Outcome::Refused(r) => {
                        w.u8(2);
                        write_reason(&mut w, r);
                    }
                    Outcome::NotMaster(n) => {
                        w.u8(3).u32(*n);
                    }
                    Outcome::Done(rep) => {
                        w.u8(4);
                        rep.version.write(&mut w);
                        w.u32(rep.active).u32(rep.omitted).u32(rep.took_ms);
                        let rej = &rep.rejected[..rep.rejected.len().min(255)];
                        w.u8(rej.len() as u8);
                        for (n, r) in rej {
                            w.u32(*n);
                            write_reason(&mut w, r);
                        }
                        let st = &rep.stragglers[..rep.stragglers.len().min(255)];
                        w.u8(st.len() as u8);
                        for n in st {
                            w.u32(*n);
                        }
                    }
                }
            }
            Msg::Announce { id, record, stage } => {
                w.u8(3);
                id.write(&mut w);
                record.write(&mut w);
                w.u8(u8::from(*stage));
            }
            Msg::StageReply { id, status } => {
                w.u8(4);
                id.write(&mut w);
                match status {
                    StageStatus::Staged => {
                        w.u8(0);
                    }
                    StageStatus::Rejected(r) => {
                        w.u8(1);
                        write_reason(&mut w, r);
                    }
                    StageStatus::Ahead(v) => {
                        w.u8(2);
                        v.write(&mut w);
                    }
                }
            }
            Msg::Activate { id } => {
                w.u8(5);
                id.write(&mut w);
            }
            Msg::ActiveAck { id } => {
                w.u8(6);
                id.write(&mut w);
            }
            Msg::Fetch {
                hash,
                chunk_size,
                indices,
            } => {
                let ix = &indices[..indices.len().min(MAX_FETCH)];
                w.u8(7).bytes(hash).u16(*chunk_size).u8(ix.len() as u8);
                for i in ix {
                    w.u16(*i);
                }
            }
            Msg::Chunk {
                hash,
                total,
                chunk_size,
                index,
                data,
            } => {
                w.u8(8)
                    .bytes(hash)
                    .u32(*total)
                    .u16(*chunk_size)
                    .u16(*index)
                    .bytes(data);
            }
            Msg::Pull { id } => {
                w.u8(9);
                id.write(&mut w);
            }
            Msg::Lost { refs } => {
                let refs = &refs[..refs.len().min(255)];
                w.u8(10).u8(refs.len() as u8);
                for r in refs {
                    r.write(&mut w);
                }
            }
            Msg::LostAck { ids } => {
                let ids = &ids[..ids.len().min(255)];
                w.u8(11).u8(ids.len() as u8);
                for v in ids {
                    v.write(&mut w);
                }
            }
        }
        w.into_vec()
    }

    /// Decodes a message. Never panics.
    pub fn decode(b: &[u8]) -> Result<Msg, DecodeError> {
        let mut r = Reader::new(b);
        let v = r.u8("message version")?;
        if v != MSG_VERSION {
            return Err(DecodeError::UnknownVersion(v));
        }
        let m = match r.u8("message tag")? {
            1 => Msg::Submit {
                req: ReqId::read(&mut r)?,
                draft: BlobRef::read(&mut r)?,
                initial: read_bool(&mut r, "initial")?,
            },
            2 => {
                let req = ReqId::read(&mut r)?;
                let outcome = match r.u8("outcome")? {
                    0 => Outcome::Queued,
                    1 => Outcome::Assigned(VersionId::read(&mut r)?),
                    2 => Outcome::Refused(r.str8(MAX_REASON, "reason")?),
                    3 => Outcome::NotMaster(r.u32("master")?),
                    4 => {
                        let version = VersionId::read(&mut r)?;
                        let active = r.u32("active count")?;
                        let omitted = r.u32("omitted")?;
                        let took_ms = r.u32("took")?;
                        let n = r.u8("rejected count")?;
                        let mut rejected = Vec::new();
                        for _ in 0..n {
                            rejected.push((r.u32("node")?, r.str8(MAX_REASON, "reason")?));
                        }
                        let n = r.u8("straggler count")?;
                        let mut stragglers = Vec::new();
                        for _ in 0..n {
                            stragglers.push(r.u32("node")?);
                        }
                        Outcome::Done(Report {
                            version,
                            active,
                            rejected,
                            stragglers,
                            omitted,
                            took_ms,
                        })
                    }
                    _ => return Err(DecodeError::Invalid("outcome")),
                };
                Msg::SubmitReply { req, outcome }
            }
            3 => Msg::Announce {
                id: VersionId::read(&mut r)?,
                record: BlobRef::read(&mut r)?,
                stage: read_bool(&mut r, "stage")?,
            },
            4 => {
                let id = VersionId::read(&mut r)?;
                let status = match r.u8("stage status")? {
                    0 => StageStatus::Staged,
                    1 => StageStatus::Rejected(r.str8(MAX_REASON, "reason")?),
                    2 => StageStatus::Ahead(VersionId::read(&mut r)?),
                    _ => return Err(DecodeError::Invalid("stage status")),
                };
                Msg::StageReply { id, status }
            }
            5 => Msg::Activate {
                id: VersionId::read(&mut r)?,
            },
            6 => Msg::ActiveAck {
                id: VersionId::read(&mut r)?,
            },
            7 => {
                let hash = r.array("hash")?;
                let chunk_size = r.u16("chunk size")?;
                let n = r.u8("index count")? as usize;
                if n == 0 || n > MAX_FETCH || chunk_size == 0 {
                    return Err(DecodeError::Invalid("fetch"));
                }
                let mut indices = Vec::with_capacity(n);
                for _ in 0..n {
                    indices.push(r.u16("index")?);
                }
                Msg::Fetch {
                    hash,
                    chunk_size,
                    indices,
                }
            }
            8 => {
                let hash = r.array("hash")?;
                let total = r.u32("total")?;
                let chunk_size = r.u16("chunk size")?;
                let index = r.u16("index")?;
                let data = r.rest().to_vec();
                if chunk_size == 0 || data.is_empty() || data.len() > chunk_size as usize {
                    return Err(DecodeError::Invalid("chunk"));
                }
                Msg::Chunk {
                    hash,
                    total,
                    chunk_size,
                    index,
                    data,
                }
            }
            9 => Msg::Pull {
                id: VersionId::read(&mut r)?,
            },
            10 => {
                let n = r.u8("lost count")?;
                let mut refs = Vec::new();
                for _ in 0..n {
                    refs.push(LostRef::read(&mut r)?);
                }
                Msg::Lost { refs }
            }
            11 => {
                let n = r.u8("id count")?;
                let mut ids = Vec::new();
                for _ in 0..n {
                    ids.push(VersionId::read(&mut r)?);
                }
                Msg::LostAck { ids }
            }
            _ => return Err(DecodeError::Invalid("message tag")),
        };
        r.finish()?;
        Ok(m)
    }
}

/// The master's part of its beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterBeacon {
    /// The version the master declared active pool-wide.
    pub pool_active: Option<VersionId>,
    /// The master has seen every live member's state and has nothing newer
    /// to roll out: nodes running `pool_active` are current.
    pub settled: bool,
}

/// What every node gossips about its policy state (small, in every node's
/// exchange entry): the pool's view of each node's active version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Beacon {
    /// Version the node enforces.
    pub active: Option<VersionId>,
    /// First 4 bytes of the active document's hash (tells versions with the
    /// same content apart in status).
    pub active_hash: [u8; 4],
    /// Highest complete version record the node holds.
    pub have: Option<VersionId>,
    /// Last version the node's validation refused, with the reason.
    pub rejected: Option<(VersionId, String)>,
    /// The node runs the pool's current version (or keeps its previous one
    /// after refusing it).
    pub current: bool,
    /// Present in the master's beacon.
    pub master: Option<MasterBeacon>,
}

const B_CURRENT: u8 = 0x01;
const B_MASTER: u8 = 0x02;
const B_SETTLED: u8 = 0x04;
const B_REJECTED: u8 = 0x08;
const B_ACTIVE: u8 = 0x10;
/// `have` present and different from `active`.
const B_HAVE: u8 = 0x20;
const B_POOL: u8 = 0x40;
const B_KNOWN: u8 = 0x7f;

/// Compact version id for beacons (every node's changes at once compete
/// with heartbeats for datagram space): varints, epoch fixed.
fn write_compact(w: &mut Writer, v: VersionId) {
    w.varint(u64::from(v.term.n))
        .varint(u64::from(v.term.node))
        .u32(v.term.epoch)
        .varint(v.seq);
}

fn read_compact(r: &mut Reader<'_>) -> Result<VersionId, DecodeError> {
    let n =
        u32::try_from(r.varint("beacon term")?).map_err(|_| DecodeError::Invalid("beacon term"))?;
    let node =
        u32::try_from(r.varint("beacon node")?).map_err(|_| DecodeError::Invalid("beacon node"))?;
    let epoch = r.u32("beacon epoch")?;
    let seq = r.varint("beacon seq")?;
    if seq == 0 {
        return Err(DecodeError::Invalid("beacon seq"));
    }
    Ok(VersionId {
        term: super::version::Term { n, node, epoch },
        seq,
    })
}

impl Beacon {
    /// Encodes (at most [`BEACON_MAX`] bytes; about 20 for a node running
    /// the version it holds).
    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0;
        if self.current {
            flags |= B_CURRENT;
        }
        if let Some(m) = &self.master {
            flags |= B_MASTER;
            if m.settled {
                flags |= B_SETTLED;
            }
            if m.pool_active.is_some() {
                flags |= B_POOL;
            }
        }
        if self.rejected.is_some() {
            flags |= B_REJECTED;
        }
        if self.active.is_some() {
            flags |= B_ACTIVE;
        }
        let have = self.have.filter(|h| Some(*h) != self.active);
        if have.is_some() {
            flags |= B_HAVE;
        }
        let mut w = Writer::new();
        w.u8(MSG_VERSION).u8(flags);
        if let Some(a) = self.active {
            write_compact(&mut w, a);
            w.bytes(&self.active_hash);
        }
        if let Some(h) = have {
            write_compact(&mut w, h);
        }
        if let Some(p) = self.master.and_then(|m| m.pool_active) {
            write_compact(&mut w, p);
        }
        if let Some((v, why)) = &self.rejected {
            write_compact(&mut w, *v);
            w.str8(truncate_utf8(why, BEACON_REASON));
        }
        w.into_vec()
    }

    /// Decodes a beacon. Never panics.
    pub fn decode(b: &[u8]) -> Result<Beacon, DecodeError> {
        let mut r = Reader::new(b);
        let v = r.u8("beacon version")?;
        if v != MSG_VERSION {
            return Err(DecodeError::UnknownVersion(v));
        }
        let flags = r.u8("beacon flags")?;
        if flags & !B_KNOWN != 0 || (flags & (B_SETTLED | B_POOL) != 0 && flags & B_MASTER == 0) {
            return Err(DecodeError::Invalid("beacon flags"));
        }
        let (active, active_hash) = if flags & B_ACTIVE != 0 {
            (Some(read_compact(&mut r)?), r.array("active hash")?)
        } else {
            (None, [0; 4])
        };
        let have = if flags & B_HAVE != 0 {
            Some(read_compact(&mut r)?)
        } else {
            active
        };
        let master = if flags & B_MASTER != 0 {
            Some(MasterBeacon {
                pool_active: if flags & B_POOL != 0 {
                    Some(read_compact(&mut r)?)
                } else {
                    None
                },
                settled: flags & B_SETTLED != 0,
            })
        } else {
            None
        };
        let rejected = if flags & B_REJECTED != 0 {
            Some((read_compact(&mut r)?, r.str8(BEACON_REASON, "reason")?))
        } else {
            None
        };
        r.finish()?;
        Ok(Beacon {
            active,
            active_hash,
            have,
            rejected,
            current: flags & B_CURRENT != 0,
            master,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::version::Term;

    pub(crate) fn sample_messages() -> Vec<Msg> {
        let v = VersionId {
            term: Term {
                n: 3,
                node: 1,
                epoch: 7,
            },
            seq: 12,
        };
        let req = ReqId {
            node: 4,
            epoch: 9,
            n: 2,
        };
        let blob = BlobRef {
            hash: [7; 32],
            len: 5000,
        };
        vec![
            Msg::Submit {
                req,
                draft: blob,
                initial: true,
            },
            Msg::SubmitReply {
                req,
                outcome: Outcome::Queued,
            },
            Msg::SubmitReply {
                req,
                outcome: Outcome::Assigned(v),
            },
            Msg::SubmitReply {
                req,
                outcome: Outcome::Refused("pipes.wan: booked 120% > 100%".into()),
            },
            Msg::SubmitReply {
                req,
                outcome: Outcome::NotMaster(2),
            },
            Msg::SubmitReply {
                req,
                outcome: Outcome::Done(Report {
                    version: v,
                    active: 125,
                    rejected: vec![(7, "rule 3: unknown interface eth9".into())],
                    stragglers: vec![40, 41],
                    omitted: 0,
                    took_ms: 87,
                }),
            },
            Msg::Announce {
                id: v,
                record: blob,
                stage: true,
            },
            Msg::StageReply {
                id: v,
                status: StageStatus::Staged,
            },
            Msg::StageReply {
                id: v,
                status: StageStatus::Rejected("bad".into()),
            },
            Msg::StageReply {
                id: v,
                status: StageStatus::Ahead(v),
            },
            Msg::Activate { id: v },
            Msg::ActiveAck { id: v },
            Msg::Fetch {
                hash: [1; 32],
                chunk_size: 1293,
                indices: vec![0, 5, 9],
            },
            Msg::Chunk {
                hash: [1; 32],
                total: 3000,
                chunk_size: 1293,
                index: 2,
                data: vec![9; 414],
            },
            Msg::Pull { id: v },
            Msg::Lost {
                refs: vec![LostRef {
                    id: v,
                    author: 3,
                    author_ms: 99,
                    user: "carol".into(),
                    message: "x".into(),
                }],
            },
            Msg::LostAck { ids: vec![v, v] },
        ]
    }

    #[test]
    fn messages_roundtrip() {
        for m in sample_messages() {
            let b = m.encode();
            assert_eq!(Msg::decode(&b).unwrap(), m, "{m:?}");
            for n in 0..b.len() {
                // Every strict prefix fails, except a chunk cut inside its data.
                if !matches!(m, Msg::Chunk { .. }) || n < CHUNK_OVERHEAD + 1 {
                    assert!(Msg::decode(&b[..n]).is_err(), "{m:?} prefix {n}");
                }
            }
            let mut long = b.clone();
            long.push(0);
            if !matches!(m, Msg::Chunk { .. }) {
                assert_eq!(Msg::decode(&long), Err(DecodeError::Trailing));
            }
        }
    }

    #[test]
    fn chunk_overhead_is_exact() {
        let m = Msg::Chunk {
            hash: [0; 32],
            total: 1,
            chunk_size: 100,
            index: 0,
            data: vec![1; 100],
        };
        assert_eq!(m.encode().len(), CHUNK_OVERHEAD + 100);
    }

    #[test]
    fn report_fits_small_datagrams() {
        let v = VersionId {
            term: Term::default(),
            seq: 1,
        };
        let req = ReqId::default();
        let mut rep = Report {
            version: v,
            active: 10,
            rejected: (0..50).map(|n| (n, "x".repeat(150))).collect(),
            stragglers: (0..200).collect(),
            omitted: 0,
            took_ms: 1,
        };
        rep.fit(req, 447);
        let b = Msg::SubmitReply {
            req,
            outcome: Outcome::Done(rep.clone()),
        }
        .encode();
        assert!(b.len() <= 447);
        assert_eq!(
            rep.omitted as usize,
            250 - rep.rejected.len() - rep.stragglers.len()
        );
    }

    #[test]
    fn beacon_roundtrip_and_bound() {
        let v = VersionId {
            term: Term {
                n: 1,
                node: 2,
                epoch: 3,
            },
            seq: 4,
        };
        let full = Beacon {
            active: Some(v),
            active_hash: [3; 4],
            have: Some(v),
            rejected: Some((v, "é".repeat(200))),
            current: true,
            master: Some(MasterBeacon {
                pool_active: Some(v),
                settled: true,
            }),
        };
        let b = full.encode();
        assert!(b.len() <= BEACON_MAX);
        let back = Beacon::decode(&b).unwrap();
        assert_eq!(back.active, Some(v));
        assert!(back.rejected.as_ref().unwrap().1.len() <= BEACON_REASON);
        let empty = Beacon::default();
        assert_eq!(Beacon::decode(&empty.encode()).unwrap(), empty);
        let typical = Beacon {
            active: Some(v),
            active_hash: [1; 4],
            have: Some(v),
            current: true,
            ..Beacon::default()
        };
        let t = typical.encode();
        assert!(t.len() <= 20, "{}", t.len());
        assert_eq!(Beacon::decode(&t).unwrap(), typical);
        let worst = Beacon {
            active: Some(VersionId {
                term: Term {
                    n: u32::MAX,
                    node: u32::MAX,
                    epoch: u32::MAX,
                },
                seq: u64::MAX,
            }),
            ..full.clone()
        };
        assert!(worst.encode().len() <= BEACON_MAX);
        for n in 0..b.len() {
            assert!(Beacon::decode(&b[..n]).is_err());
        }
    }
}
