//! The audit trail: every version this node has seen, and what became of it.

use super::codec::{DecodeError, Reader, Writer};
use super::version::{
    Hash, Kind, LostRef, ReqId, VersionId, VersionMeta, LOST_MESSAGE, LOST_USER, MAX_MESSAGE,
    MAX_USER,
};
use crate::exchange::NodeId;

/// What became of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryStatus {
    /// Published by a master; part of the pool's lineage (or the newest).
    Published,
    /// Lost a partition merge to `by` (never active after the merge).
    Lost {
        /// The version that won.
        by: VersionId,
    },
    /// No node could stage it (every validation refused it).
    Failed,
}

/// One line of `policy history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Version.
    pub id: VersionId,
    /// Node it was applied on.
    pub author: NodeId,
    /// Wall-clock time on that node, ms since the Unix epoch.
    pub author_ms: u64,
    /// User.
    pub user: String,
    /// `--message`.
    pub message: String,
    /// What produced it (None when only known from a merge's lost list).
    pub kind: Option<Kind>,
    /// Document hash (None when only known from a merge's lost list).
    pub doc_hash: Option<Hash>,
    /// The apply request (None when only known from a merge's lost list).
    pub req: Option<ReqId>,
    /// Status.
    pub status: HistoryStatus,
    /// A merge version lists it as lost (the loss is in the pool's record).
    pub in_merge: bool,
}

impl HistoryEntry {
    /// Entry for a published version.
    pub fn published(m: &VersionMeta) -> Self {
        Self {
            id: m.id,
            author: m.author,
            author_ms: m.author_ms,
            user: m.user.clone(),
            message: m.message.clone(),
            kind: Some(m.kind),
            doc_hash: Some(m.doc_hash),
            req: Some(m.req),
            status: HistoryStatus::Published,
            in_merge: false,
        }
    }

    /// Entry for a version only known as lost.
    pub fn lost(r: &LostRef, by: VersionId) -> Self {
        Self {
            id: r.id,
            author: r.author,
            author_ms: r.author_ms,
            user: r.user.clone(),
            message: r.message.clone(),
            kind: None,
            doc_hash: None,
            req: None,
            status: HistoryStatus::Lost { by },
            in_merge: false,
        }
    }

    /// The audit reference of this entry.
    pub fn lost_ref(&self) -> LostRef {
        LostRef {
            id: self.id,
            author: self.author,
            author_ms: self.author_ms,
            user: super::codec::truncate_utf8(&self.user, LOST_USER).to_owned(),
            message: super::codec::truncate_utf8(&self.message, LOST_MESSAGE).to_owned(),
        }
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        self.id.write(w);
        w.u32(self.author)
            .u64(self.author_ms)
            .str8(&self.user)
            .str16(&self.message);
        match self.kind {
            None => {
                w.u8(0xff);
            }
            Some(Kind::Apply) => {
                w.u8(0);
            }
            Some(Kind::Rollback { to }) => {
                w.u8(1).u64(to);
            }
            Some(Kind::Initial) => {
                w.u8(2);
            }
            Some(Kind::Merge) => {
                w.u8(3);
            }
        }
        match &self.doc_hash {
            Some(h) => w.u8(1).bytes(h),
            None => w.u8(0),
        };
        match &self.req {
            Some(r) => {
                w.u8(1);
                r.write(w);
            }
            None => {
                w.u8(0);
            }
        }
        match self.status {
            HistoryStatus::Published => {
                w.u8(0);
            }
            HistoryStatus::Lost { by } => {
                w.u8(1);
                by.write(w);
            }
            HistoryStatus::Failed => {
                w.u8(2);
            }
        }
        w.u8(u8::from(self.in_merge));
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = VersionId::read(r)?;
        let author = r.u32("history author")?;
        let author_ms = r.u64("history time")?;
        let user = r.str8(MAX_USER, "history user")?;
        let message = r.str16(MAX_MESSAGE, "history message")?;
        let kind = match r.u8("history kind")? {
            0xff => None,
            0 => Some(Kind::Apply),
            1 => Some(Kind::Rollback {
                to: r.u64("history rollback")?,
            }),
            2 => Some(Kind::Initial),
            3 => Some(Kind::Merge),
            _ => return Err(DecodeError::Invalid("history kind")),
        };
        let doc_hash = match r.u8("history hash")? {
            0 => None,
            1 => Some(r.array("history hash")?),
            _ => return Err(DecodeError::Invalid("history hash")),
        };
        let req = match r.u8("history request")? {
            0 => None,
            1 => Some(ReqId::read(r)?),
            _ => return Err(DecodeError::Invalid("history request")),
        };
        let status = match r.u8("history status")? {
            0 => HistoryStatus::Published,
            1 => HistoryStatus::Lost {
                by: VersionId::read(r)?,
            },
            2 => HistoryStatus::Failed,
            _ => return Err(DecodeError::Invalid("history status")),
        };
        let in_merge = match r.u8("history merge flag")? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::Invalid("history merge flag")),
        };
        Ok(Self {
            id,
            author,
            author_ms,
            user,
            message,
            kind,
            doc_hash,
            req,
            status,
            in_merge,
        })
    }
}
