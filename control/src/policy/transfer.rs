//! Chunked, content-addressed blob transfer over direct messages.
//!
//! A blob (a draft or a version record) is named by its SHA-256 and cut
//! into chunks of `chunk_size` bytes, the receiver's layout (its MTU minus
//! headers; every pool member normally has the same). The receiver pulls
//! missing chunks with windowed [`Msg::Fetch`] requests, rotating over the
//! nodes known to hold the blob, and re-requests a chunk not received after
//! `retransmit`. Senders may push the first chunks unasked (small policies
//! then need no round trip). A completed blob is checked against its hash;
//! a mismatch (only possible from a key holder sending garbage) discards it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use headroom_clock::Timestamp;

use super::version::{content_hash, Hash, MAX_RECORD};
use super::wire::{Msg, MAX_FETCH};
use crate::exchange::NodeId;

/// Most blobs in transfer at once (memory bound against a misbehaving peer).
pub const MAX_TRANSFERS: usize = 16;

/// Number of chunks of a blob.
pub fn chunk_count(len: usize, chunk_size: usize) -> usize {
    len.div_ceil(chunk_size.max(1))
}

/// Chunk `index` of `blob` in layout `chunk_size`.
pub fn chunk_of(blob: &[u8], chunk_size: usize, index: usize) -> Option<&[u8]> {
    let start = index.checked_mul(chunk_size)?;
    if start >= blob.len() {
        return None;
    }
    Some(&blob[start..(start + chunk_size).min(blob.len())])
}

/// Outcome of a received chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Not wanted, wrong layout or out of range (counted by the caller).
    Ignored,
    /// Stored; more to come (or a duplicate).
    Stored,
    /// The blob is complete and its hash verified.
    Complete(Vec<u8>),
    /// The blob completed but its hash did not match; discarded.
    Corrupt,
}

#[derive(Debug)]
struct Blob {
    len: usize,
    chunks: Vec<Option<Vec<u8>>>,
    missing: usize,
    inflight: BTreeMap<u16, Timestamp>,
    sources: Vec<NodeId>,
    next_source: usize,
    last_progress: Timestamp,
}

/// The blobs this node is receiving.
#[derive(Debug)]
pub struct Transfers {
    chunk_size: usize,
    blobs: HashMap<Hash, Blob>,
}

impl Transfers {
    /// Receiver layout `chunk_size` (>= 1).
    pub fn new(chunk_size: usize) -> Self {
        Self {
            chunk_size: chunk_size.clamp(1, u16::MAX as usize),
            blobs: HashMap::new(),
        }
    }

    /// This node's chunk size.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Starts (or adds a source to) the transfer of `hash`. False when the
    /// length is impossible or too many transfers run.
    pub fn want(&mut self, now: Timestamp, hash: Hash, len: usize, source: NodeId) -> bool {
        if len == 0 || len > MAX_RECORD || chunk_count(len, self.chunk_size) > u16::MAX as usize {
            return false;
        }
        if let Some(b) = self.blobs.get_mut(&hash) {
            if b.len != len {
                return false;
            }
            if !b.sources.contains(&source) {
                b.sources.push(source);
            }
            return true;
        }
        if self.blobs.len() >= MAX_TRANSFERS {
            return false;
        }
        let n = chunk_count(len, self.chunk_size);
        self.blobs.insert(
            hash,
            Blob {
                len,
                chunks: vec![None; n],
                missing: n,
                inflight: BTreeMap::new(),
                sources: vec![source],
                next_source: 0,
                last_progress: now,
            },
        );
        true
    }

    /// Whether `hash` is being received.
    pub fn wants(&self, hash: &Hash) -> bool {
        self.blobs.contains_key(hash)
    }

    /// Stops receiving `hash`.
    pub fn cancel(&mut self, hash: &Hash) {
        self.blobs.remove(hash);
    }

    /// Stores a received chunk.
    pub fn on_chunk(
        &mut self,
        now: Timestamp,
        hash: Hash,
        total: u32,
        chunk_size: u16,
        index: u16,
        data: &[u8],
    ) -> ChunkOutcome {
        let cs = self.chunk_size;
        let Some(b) = self.blobs.get_mut(&hash) else {
            return ChunkOutcome::Ignored;
        };
        let i = index as usize;
        let expect = match chunk_of_len(b.len, cs, i) {
            Some(n) => n,
            None => return ChunkOutcome::Ignored,
        };
        if total as usize != b.len || chunk_size as usize != cs || data.len() != expect {
            return ChunkOutcome::Ignored;
        }
        b.inflight.remove(&index);
        if b.chunks[i].is_some() {
            return ChunkOutcome::Stored;
        }
        b.chunks[i] = Some(data.to_vec());
        b.missing -= 1;
        b.last_progress = now;
        if b.missing > 0 {
            return ChunkOutcome::Stored;
        }
        let b = self.blobs.remove(&hash).expect("present");
        let mut out = Vec::with_capacity(b.len);
        for c in b.chunks.into_iter().flatten() {
            out.extend_from_slice(&c);
        }
        if content_hash(&out) == hash {
            ChunkOutcome::Complete(out)
        } else {
            ChunkOutcome::Corrupt
        }
    }

    /// Fetch requests due now: per blob, up to `window` chunks in flight,
    /// each re-requested `retransmit` after it was asked for, from the next
    /// live source in turn.
    pub fn poll(
        &mut self,
        now: Timestamp,
        retransmit: Duration,
        window: usize,
        is_live: impl Fn(NodeId) -> bool,
    ) -> Vec<(NodeId, Msg)> {
        let mut out = Vec::new();
        let cs = self.chunk_size as u16;
        let mut hashes: Vec<Hash> = self.blobs.keys().copied().collect();
        hashes.sort_unstable();
        for hash in hashes {
            let b = self.blobs.get_mut(&hash).expect("listed");
            b.inflight
                .retain(|_, at| now.saturating_duration_since(*at) < retransmit);
            let room = window.max(1).saturating_sub(b.inflight.len());
            if room == 0 {
                continue;
            }
            let live: Vec<NodeId> = b.sources.iter().copied().filter(|n| is_live(*n)).collect();
            if live.is_empty() {
                continue;
            }
            let src = live[b.next_source % live.len()];
            b.next_source = b.next_source.wrapping_add(1);
            let indices: Vec<u16> = (0..b.chunks.len())
                .filter(|i| b.chunks[*i].is_none() && !b.inflight.contains_key(&(*i as u16)))
                .take(room.min(MAX_FETCH))
                .map(|i| i as u16)
                .collect();
            if indices.is_empty() {
                continue;
            }
            for i in &indices {
                b.inflight.insert(*i, now);
            }
            out.push((
                src,
                Msg::Fetch {
                    hash,
                    chunk_size: cs,
                    indices,
                },
            ));
        }
        out
    }

    /// Drops transfers without progress for `timeout`; returns how many.
    pub fn expire(&mut self, now: Timestamp, timeout: Duration) -> usize {
        let before = self.blobs.len();
        self.blobs
            .retain(|_, b| now.saturating_duration_since(b.last_progress) < timeout);
        before - self.blobs.len()
    }

    /// Whether any transfer is running.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}

fn chunk_of_len(len: usize, cs: usize, i: usize) -> Option<usize> {
    let start = i.checked_mul(cs)?;
    (start < len).then(|| (len - start).min(cs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_reassembles_from_any_order_and_verifies() {
        let t = Timestamp::ZERO;
        let blob: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let h = content_hash(&blob);
        let mut tr = Transfers::new(1000);
        assert!(tr.want(t, h, blob.len(), 2));
        let reqs = tr.poll(t, Duration::from_millis(50), 4, |_| true);
        assert_eq!(reqs.len(), 1);
        let Msg::Fetch { indices, .. } = &reqs[0].1 else {
            panic!()
        };
        assert_eq!(indices, &[0, 1, 2, 3]);
        // Nothing new until the window frees or the retransmit time passes.
        assert!(tr
            .poll(t, Duration::from_millis(50), 4, |_| true)
            .is_empty());
        let later = t + Duration::from_millis(60);
        assert_eq!(
            tr.poll(later, Duration::from_millis(50), 4, |_| true).len(),
            1
        );
        let mut order: Vec<usize> = (0..10).rev().collect();
        order.swap(3, 7);
        let mut done = None;
        for i in order {
            let c = chunk_of(&blob, 1000, i).unwrap();
            match tr.on_chunk(t, h, blob.len() as u32, 1000, i as u16, c) {
                ChunkOutcome::Complete(b) => done = Some(b),
                o => assert_eq!(o, ChunkOutcome::Stored),
            }
        }
        assert_eq!(done.unwrap(), blob);
        assert!(tr.is_empty());
        // Unwanted, wrong layout, wrong length and out-of-range chunks.
        assert_eq!(
            tr.on_chunk(t, h, 10_000, 1000, 0, &blob[..1000]),
            ChunkOutcome::Ignored
        );
        assert!(tr.want(t, h, blob.len(), 2));
        assert_eq!(
            tr.on_chunk(t, h, 10_000, 999, 0, &blob[..999]),
            ChunkOutcome::Ignored
        );
        assert_eq!(
            tr.on_chunk(t, h, 10_000, 1000, 0, &blob[..10]),
            ChunkOutcome::Ignored
        );
        assert_eq!(
            tr.on_chunk(t, h, 10_000, 1000, 10, &blob[..1000]),
            ChunkOutcome::Ignored
        );
        assert_eq!(
            tr.on_chunk(t, h, 9_999, 1000, 0, &blob[..1000]),
            ChunkOutcome::Ignored
        );
    }

    #[test]
    fn corrupt_blob_is_discarded_and_sources_rotate() {
        let t = Timestamp::ZERO;
        let blob = vec![5u8; 2500];
        let h = content_hash(&blob);
        let mut tr = Transfers::new(1000);
        assert!(tr.want(t, h, 2500, 2));
        assert!(tr.want(t, h, 2500, 3));
        assert!(!tr.want(t, h, 2501, 3));
        let srcs: Vec<NodeId> = (0..4)
            .flat_map(|k| {
                tr.poll(
                    t + Duration::from_millis(100 * k),
                    Duration::from_millis(50),
                    8,
                    |_| true,
                )
            })
            .map(|(n, _)| n)
            .collect();
        assert_eq!(srcs, vec![2, 3, 2, 3]);
        // Sources that are not live are skipped.
        let only3 = tr.poll(
            t + Duration::from_secs(1),
            Duration::from_millis(50),
            8,
            |n| n == 3,
        );
        assert_eq!(only3[0].0, 3);
        for i in 0..3u16 {
            let mut c = chunk_of(&blob, 1000, i as usize).unwrap().to_vec();
            c[0] ^= 1;
            let o = tr.on_chunk(t, h, 2500, 1000, i, &c);
            if i == 2 {
                assert_eq!(o, ChunkOutcome::Corrupt);
            }
        }
        assert!(tr.is_empty());
        assert!(!tr.want(t, h, MAX_RECORD + 1, 2));
        assert!(!tr.want(t, h, 0, 2));
    }

    #[test]
    fn stalled_transfers_expire_and_count_is_bounded() {
        let t = Timestamp::ZERO;
        let mut tr = Transfers::new(100);
        for i in 0..MAX_TRANSFERS as u8 {
            assert!(tr.want(t, [i; 32], 10, 1));
        }
        assert!(!tr.want(t, [200; 32], 10, 1));
        assert_eq!(
            tr.expire(t + Duration::from_secs(11), Duration::from_secs(10)),
            16
        );
        assert!(tr.want(t, [200; 32], 10, 1));
    }
}
