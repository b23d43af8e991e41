//! The per-node state machine: versions held, staging and activation,
//! requests of local applies, transfers, beacons, persistence. The master's
//! extra duties are in `master.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use headroom_clock::Timestamp;

use super::history::{HistoryEntry, HistoryStatus};
use super::master::Master;
use super::persist::{self, Persisted};
use super::transfer::{chunk_count, chunk_of, ChunkOutcome, Transfers};
use super::version::{
    content_hash, decode_draft, decode_record, encode_draft, Draft, Hash, Kind, LostRef, ReqId,
    Term, VersionId, VersionMeta, MAX_DOCUMENT, MAX_MESSAGE, MAX_USER,
};
use super::wire::{
    Beacon, BlobRef, MasterBeacon, Msg, Outcome, Report, StageStatus, BEACON_MAX, CHUNK_OVERHEAD,
};
use super::{
    ApplyResult, NodePolicy, PolicyConfig, PolicyError, PolicyEvent, PolicyStats, Validator,
};
use crate::exchange::{Event, Exchange, NodeId, Registration};

/// Smallest direct payload the protocol needs (a Done report, a lost
/// report, chunks of a useful size).
const MIN_DIRECT: usize = 400;
/// Least time between two readings of the peers' beacons.
const REFRESH_EVERY: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub(super) struct Stored {
    pub(super) meta: VersionMeta,
    pub(super) record: Arc<[u8]>,
    pub(super) hash: Hash,
}

impl Stored {
    pub(super) fn doc(&self) -> &[u8] {
        &self.record[self.record.len() - self.meta.doc_len as usize..]
    }
    pub(super) fn blob(&self) -> BlobRef {
        BlobRef {
            hash: self.hash,
            len: self.record.len() as u32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqState {
    /// Not yet acknowledged by a master.
    Waiting,
    /// The master has it queued.
    Queued,
    /// Numbered.
    Assigned(VersionId),
}

#[derive(Debug)]
struct Request {
    draft: BlobRef,
    state: ReqState,
    next_send: Timestamp,
    started: Timestamp,
    initial: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Initial {
    /// No initial policy, or it was resolved.
    Idle,
    /// Configured, not yet submitted.
    Unsent,
    /// Submitted as this request.
    Pending(ReqId),
}

/// What a completed blob is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Record(VersionId),
    Draft,
}

/// One node's policy state machine. See the module docs for the protocol.
pub struct PolicyNode {
    pub(super) cfg: PolicyConfig,
    validator: Box<dyn Validator + Send>,
    pub(super) start: Timestamp,
    /// Largest direct payload of the exchange.
    pub(super) room: usize,
    pub(super) transfers: Transfers,
    pub(super) purposes: HashMap<Hash, Purpose>,
    pub(super) records: BTreeMap<VersionId, Stored>,
    by_hash: HashMap<Hash, VersionId>,
    pub(super) history: BTreeMap<VersionId, HistoryEntry>,
    pub(super) active: Option<VersionId>,
    validated: BTreeMap<VersionId, Result<(), String>>,
    rejected: Option<(VersionId, String)>,
    /// Versions announced to us that we are fetching.
    wanted: BTreeMap<VersionId, BlobRef>,
    /// Stage requests waiting for the record: version -> master that asked.
    stage_for: BTreeMap<VersionId, NodeId>,
    /// Draft records: our own (served to the master) and received (master).
    pub(super) drafts: HashMap<Hash, Arc<[u8]>>,
    requests: BTreeMap<ReqId, Request>,
    req_n: u32,
    initial: Initial,
    pub(super) master: Option<Master>,
    pub(super) beacons: BTreeMap<NodeId, Beacon>,
    /// (incarnation, version, refresh generation) of each beacon decoded,
    /// to skip unchanged ones.
    beacon_versions: HashMap<NodeId, (u32, u64, u64)>,
    refresh_gen: u64,
    view_dirty: bool,
    /// Beacon changes arrive in bursts: re-read them at most every
    /// [`REFRESH_EVERY`].
    next_refresh: Timestamp,
    /// Catch-up pull: version and when it may be sent again.
    pull: Option<(VersionId, Timestamp)>,
    /// Lost versions to report to the master.
    pub(super) lost_out: BTreeMap<VersionId, LostRef>,
    lost_next: Timestamp,
    pub(super) term: Option<Term>,
    current: bool,
    in_sync: bool,
    persist_dirty: bool,
    pub(super) events: VecDeque<PolicyEvent>,
    pub(super) stats: PolicyStats,
    wake: Timestamp,
}

impl std::fmt::Debug for PolicyNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyNode")
            .field("node", &self.cfg.node_id)
            .field("active", &self.active)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl PolicyNode {
    /// Creates the state machine and registers its code with the exchange.
    /// `validator` checks every document before this node stages it.
    pub fn new(
        cfg: PolicyConfig,
        validator: Box<dyn Validator + Send>,
        ex: &mut Exchange,
        now: Timestamp,
    ) -> Result<Self, PolicyError> {
        let room = ex.max_direct_len();
        if room < MIN_DIRECT {
            return Err(PolicyError::MtuTooSmall(room));
        }
        ex.register(
            cfg.code,
            Registration {
                period_ticks: 1,
                max_size: BEACON_MAX,
                flags: 0,
            },
        )?;
        let initial = if cfg.initial.is_some() {
            Initial::Unsent
        } else {
            Initial::Idle
        };
        Ok(Self {
            validator,
            start: now,
            room,
            transfers: Transfers::new(room - CHUNK_OVERHEAD),
            purposes: HashMap::new(),
            records: BTreeMap::new(),
            by_hash: HashMap::new(),
            history: BTreeMap::new(),
            active: None,
            validated: BTreeMap::new(),
            rejected: None,
            wanted: BTreeMap::new(),
            stage_for: BTreeMap::new(),
            drafts: HashMap::new(),
            requests: BTreeMap::new(),
            req_n: 0,
            initial,
            master: None,
            beacons: BTreeMap::new(),
            beacon_versions: HashMap::new(),
            refresh_gen: 0,
            view_dirty: true,
            next_refresh: now,
            pull: None,
            lost_out: BTreeMap::new(),
            lost_next: now,
            term: None,
            current: false,
            in_sync: false,
            persist_dirty: false,
            events: VecDeque::new(),
            stats: PolicyStats::default(),
            wake: now,
            cfg,
        })
    }

    /// Loads persisted state (call once, before the first `poll`). The
    /// restored active version is not enforced until [`Self::is_current`].
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), PolicyError> {
        let p = persist::decode(bytes)?;
        if p.node != self.cfg.node_id {
            return Err(PolicyError::WrongNode(p.node, self.cfg.node_id));
        }
        for h in p.history {
            self.history.insert(h.id, h);
        }
        for rec in p.records {
            if let Ok((meta, _)) = decode_record(&rec) {
                let hash = content_hash(&rec);
                self.by_hash.insert(hash, meta.id);
                self.history
                    .entry(meta.id)
                    .or_insert_with(|| HistoryEntry::published(&meta));
                self.records.insert(
                    meta.id,
                    Stored {
                        meta,
                        record: rec.into(),
                        hash,
                    },
                );
            }
        }
        self.term = p.term;
        if let Some(a) = p.active.filter(|a| self.records.contains_key(a)) {
            self.active = Some(a);
            self.validated.insert(a, Ok(()));
        }
        if let Some((v, why)) = p.rejected {
            self.validated.insert(v, Err(why.clone()));
            self.rejected = Some((v, why));
        }
        if !self.records.is_empty() {
            // The pool had a policy: the node file's initial one is moot.
            self.initial = Initial::Idle;
        }
        Ok(())
    }

    /// Feed every exchange event here (cheap: marks the view for re-reading).
    pub fn on_exchange_event(&mut self, ev: &Event) {
        match ev {
            Event::ViewChanged(c) if *c == self.cfg.code => self.view_dirty = true,
            Event::Joined(_) | Event::Left(_) | Event::Failed(_) | Event::MasterChanged(_) => {
                self.view_dirty = true
            }
            _ => {}
        }
    }

    /// Submits `doc` as the pool's next policy version. Validates it
    /// locally first (an invalid document changes nothing anywhere).
    /// `wall_ms` is this node's wall clock (ms since the Unix epoch), kept
    /// in the history. Progress comes as [`PolicyEvent::ApplyAssigned`] and
    /// [`PolicyEvent::ApplyFinished`].
    pub fn apply(
        &mut self,
        now: Timestamp,
        wall_ms: u64,
        doc: &[u8],
        user: &str,
        message: &str,
    ) -> Result<ReqId, PolicyError> {
        self.submit(now, wall_ms, doc, user, message, Kind::Apply, false)
    }

    /// Publishes the content of version `seq` as a new version.
    pub fn rollback(
        &mut self,
        now: Timestamp,
        wall_ms: u64,
        seq: u64,
        user: &str,
        message: &str,
    ) -> Result<ReqId, PolicyError> {
        let id = self
            .history
            .values()
            .rev()
            .filter(|h| h.id.seq == seq)
            // Prefer the version of the pool's lineage over a lost sibling.
            .max_by_key(|h| h.status == HistoryStatus::Published)
            .map(|h| h.id)
            .ok_or(PolicyError::UnknownVersion(seq))?;
        let doc = self
            .records
            .get(&id)
            .map(|s| s.doc().to_vec())
            .ok_or(PolicyError::NotRetained(seq))?;
        self.submit(
            now,
            wall_ms,
            &doc,
            user,
            message,
            Kind::Rollback { to: seq },
            false,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        now: Timestamp,
        wall_ms: u64,
        doc: &[u8],
        user: &str,
        message: &str,
        kind: Kind,
        initial: bool,
    ) -> Result<ReqId, PolicyError> {
        if doc.len() > MAX_DOCUMENT {
            return Err(PolicyError::TooLarge {
                len: doc.len(),
                max: MAX_DOCUMENT,
            });
        }
        if user.len() > MAX_USER {
            return Err(PolicyError::UserTooLong);
        }
        if message.len() > MAX_MESSAGE {
            return Err(PolicyError::MessageTooLong);
        }
        self.validator.validate(doc).map_err(PolicyError::Invalid)?;
        let draft = Draft {
            kind,
            author: self.cfg.node_id,
            author_ms: wall_ms,
            user: user.into(),
            message: message.into(),
        };
        let rec = encode_draft(&draft, doc);
        let blob = BlobRef {
            hash: content_hash(&rec),
            len: rec.len() as u32,
        };
        self.drafts.insert(blob.hash, rec.into());
        self.req_n += 1;
        let req = ReqId {
            node: self.cfg.node_id,
            epoch: self.cfg.epoch,
            n: self.req_n,
        };
        self.requests.insert(
            req,
            Request {
                draft: blob,
                state: ReqState::Waiting,
                next_send: now,
                started: now,
                initial,
            },
        );
        self.wake = now;
        Ok(req)
    }

    /// Next time `poll` must be called (it may be called earlier).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        Some(self.wake)
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<PolicyEvent> {
        self.events.pop_front()
    }

    /// Bytes to persist (atomically) when the state changed since the last call.
    pub fn take_persist(&mut self) -> Option<Vec<u8>> {
        if !std::mem::take(&mut self.persist_dirty) {
            return None;
        }
        Some(persist::encode(&self.persisted()))
    }

    fn persisted(&self) -> Persisted {
        Persisted {
            node: self.cfg.node_id,
            term: self.term,
            active: self.active,
            rejected: self.rejected.clone(),
            history: self.history.values().cloned().collect(),
            records: self.records.values().map(|s| s.record.to_vec()).collect(),
        }
    }

    /// Whether this node has run the pool's current version at least once
    /// (hold the first grant until then). Stays true afterwards.
    pub fn is_current(&self) -> bool {
        self.current
    }

    /// Whether this node runs the pool's current version right now.
    pub fn in_sync(&self) -> bool {
        self.in_sync
    }

    /// The active version's metadata and document.
    pub fn active(&self) -> Option<(&VersionMeta, &[u8])> {
        let s = self.records.get(&self.active?)?;
        Some((&s.meta, s.doc()))
    }

    /// The active document.
    pub fn active_document(&self) -> Option<&[u8]> {
        self.active().map(|(_, d)| d)
    }

    /// A retained version by seq (the lineage's one if two share the seq).
    pub fn version(&self, seq: u64) -> Option<(&VersionMeta, &[u8])> {
        self.records
            .values()
            .rev()
            .filter(|s| s.meta.id.seq == seq)
            .max_by_key(|s| {
                self.history
                    .get(&s.meta.id)
                    .is_some_and(|h| h.status == HistoryStatus::Published)
            })
            .map(|s| (&s.meta, s.doc()))
    }

    /// History, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &HistoryEntry> {
        self.history.values()
    }

    /// The last refusal of this node's validator.
    pub fn rejected(&self) -> Option<&(VersionId, String)> {
        self.rejected.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> &PolicyStats {
        &self.stats
    }

    /// Every live node's policy state (from the beacons; this node's own).
    pub fn pool(&self, ex: &Exchange) -> Vec<NodePolicy> {
        let me = self.cfg.node_id;
        let mut v: Vec<NodePolicy> = ex
            .live_nodes()
            .into_iter()
            .map(|n| {
                if n == me {
                    NodePolicy {
                        node: n,
                        active: self.active,
                        rejected: self.rejected.clone(),
                        current: self.in_sync,
                    }
                } else {
                    let b = self.beacons.get(&n);
                    NodePolicy {
                        node: n,
                        active: b.and_then(|b| b.active),
                        rejected: b.and_then(|b| b.rejected.clone()),
                        current: b.is_some_and(|b| b.current),
                    }
                }
            })
            .collect();
        v.sort_by_key(|p| p.node);
        v
    }

    /// The version the master declared active, and whether it is settled.
    pub fn pool_target(&self, ex: &Exchange) -> Option<MasterBeacon> {
        if ex.master() == self.cfg.node_id {
            return self.master.as_ref().map(|m| MasterBeacon {
                pool_active: m.pool_active,
                settled: m.settled,
            });
        }
        self.beacons.get(&ex.master()).and_then(|b| b.master)
    }

    /// Processes received messages, runs timers, publishes the beacon.
    /// Call after every exchange pass and when `poll_timeout` expires; then
    /// flush the exchange's transmits.
    pub fn poll(&mut self, now: Timestamp, wall_ms: u64, ex: &mut Exchange) {
        let me = self.cfg.node_id;
        if ex.master() == me {
            if self.master.is_none() {
                self.master = Some(Master::new(now, self.active));
            }
        } else {
            self.master = None;
        }
        let mut input = false;
        while let Some(m) = ex.poll_direct(self.cfg.code) {
            input = true;
            match Msg::decode(&m.data) {
                Ok(msg) => self.handle_msg(now, ex, m.from, msg),
                Err(_) => self.stats.messages_malformed += 1,
            }
        }
        // Nothing arrived, the view is unchanged (or was read very recently)
        // and no timer is due: the state cannot have changed.
        let refresh = self.view_dirty && now >= self.next_refresh;
        if !input && !refresh && now < self.wake {
            if self.view_dirty {
                self.wake = self.wake.min(self.next_refresh);
            }
            return;
        }
        if refresh {
            self.view_dirty = false;
            self.next_refresh = now + REFRESH_EVERY;
            self.refresh_beacons(ex);
        }
        if self.master.is_some() {
            self.master_poll(now, wall_ms, ex);
        }
        self.follow(now, ex);
        self.drive_initial(now, wall_ms);
        self.drive_requests(now, ex);
        self.drive_transfers(now, ex);
        self.drive_lost(now, ex);
        self.update_sync(ex);
        self.publish_beacon(now, ex);
        self.gc();
        self.wake = self.next_wake(now);
        if self.view_dirty {
            self.wake = self.wake.min(self.next_refresh);
        }
    }

    fn next_wake(&self, now: Timestamp) -> Timestamp {
        let rt = self.cfg.retransmit;
        let mut w = now + Duration::from_millis(500);
        let busy = !self.requests.is_empty()
            || !self.transfers.is_empty()
            || !self.lost_out.is_empty()
            || !self.stage_for.is_empty()
            || self.pull.is_some()
            || !self.in_sync;
        if busy {
            w = w.min(now + rt);
        }
        for r in self.requests.values() {
            w = w.min(r.next_send.max(now));
        }
        if let Some(m) = &self.master {
            w = w.min(m.next_wake(now, self.start + self.cfg.join_grace, rt));
        }
        w
    }

    fn refresh_beacons(&mut self, ex: &Exchange) {
        let me = self.cfg.node_id;
        self.refresh_gen += 1;
        let g = self.refresh_gen;
        let mut n = 0;
        for e in ex.entries(self.cfg.code) {
            if e.node == me {
                continue;
            }
            n += 1;
            match self.beacon_versions.get_mut(&e.node) {
                Some(x) if (x.0, x.1) == (e.incarnation, e.version) => {
                    x.2 = g;
                    continue;
                }
                _ => {}
            }
            self.beacon_versions
                .insert(e.node, (e.incarnation, e.version, g));
            match Beacon::decode(e.data) {
                Ok(b) => {
                    self.beacons.insert(e.node, b);
                }
                Err(_) => {
                    self.stats.beacons_malformed += 1;
                    self.beacons.remove(&e.node);
                }
            }
        }
        if n != self.beacon_versions.len() || n != self.beacons.len() {
            self.beacon_versions.retain(|_, x| x.2 == g);
            let v = &self.beacon_versions;
            self.beacons.retain(|k, _| v.contains_key(k));
        }
    }

    fn publish_beacon(&mut self, now: Timestamp, ex: &mut Exchange) {
        let active_hash = self
            .active
            .and_then(|a| self.records.get(&a))
            .map(|s| {
                let mut h = [0u8; 4];
                h.copy_from_slice(&s.meta.doc_hash[..4]);
                h
            })
            .unwrap_or_default();
        let b = Beacon {
            active: self.active,
            active_hash,
            have: self.records.keys().next_back().copied(),
            rejected: self.rejected.clone(),
            current: self.in_sync,
            master: self.master.as_ref().map(|m| MasterBeacon {
                pool_active: m.pool_active,
                settled: m.settled,
            }),
        };
        // Unchanged bytes are a no-op in the exchange.
        let _ = ex.set_local(now, self.cfg.code, &b.encode());
    }

    pub(super) fn send(&mut self, now: Timestamp, ex: &mut Exchange, to: NodeId, m: &Msg) {
        if to == self.cfg.node_id {
            return;
        }
        if ex.send_direct(now, to, self.cfg.code, &m.encode()).is_err() {
            self.stats.send_failed += 1;
        }
    }

    /// Sends the whole blob unasked if it is small (`push_chunks`).
    pub(super) fn push_blob(
        &mut self,
        now: Timestamp,
        ex: &mut Exchange,
        to: NodeId,
        hash: Hash,
        blob: &[u8],
    ) {
        let cs = self.transfers.chunk_size();
        let n = chunk_count(blob.len(), cs);
        if n > self.cfg.push_chunks {
            return;
        }
        for i in 0..n {
            let data = chunk_of(blob, cs, i).unwrap_or_default().to_vec();
            let m = Msg::Chunk {
                hash,
                total: blob.len() as u32,
                chunk_size: cs as u16,
                index: i as u16,
                data,
            };
            self.send(now, ex, to, &m);
        }
    }

    /// Datagrams a push of `len` bytes takes (0 when not pushed).
    pub(super) fn push_cost(&self, len: usize) -> usize {
        let n = chunk_count(len, self.transfers.chunk_size());
        if n > self.cfg.push_chunks {
            0
        } else {
            n
        }
    }

    fn handle_msg(&mut self, now: Timestamp, ex: &mut Exchange, from: NodeId, msg: Msg) {
        match msg {
            Msg::Submit {
                req,
                draft,
                initial,
            } => self.on_submit(now, ex, from, req, draft, initial),
            Msg::SubmitReply { req, outcome } => self.on_reply(now, ex, req, outcome),
            Msg::Announce { id, record, stage } => {
                if stage && from != ex.master() {
                    self.stats.messages_unexpected += 1;
                    return;
                }
                self.on_announce(now, ex, from, id, record, stage);
            }
            Msg::StageReply { id, status } => self.on_stage_reply(now, ex, from, id, status),
            Msg::Activate { id } => {
                if from != ex.master() {
                    self.stats.messages_unexpected += 1;
                    return;
                }
                if self.active < Some(id) && self.staged_ok(id) {
                    self.activate(id);
                }
                if self.active >= Some(id) {
                    self.send(now, ex, from, &Msg::ActiveAck { id });
                }
            }
            Msg::ActiveAck { id } => self.on_active_ack(from, id),
            Msg::Fetch {
                hash,
                chunk_size,
                indices,
            } => self.serve(now, ex, from, hash, chunk_size as usize, &indices),
            Msg::Chunk {
                hash,
                total,
                chunk_size,
                index,
                data,
            } => {
                match self
                    .transfers
                    .on_chunk(now, hash, total, chunk_size, index, &data)
                {
                    ChunkOutcome::Ignored => self.stats.chunks_ignored += 1,
                    ChunkOutcome::Stored => {}
                    ChunkOutcome::Corrupt => {
                        // Fetch it again from scratch (from the next source).
                        self.stats.blobs_corrupt += 1;
                        self.purposes.remove(&hash);
                        self.wanted.retain(|_, b| b.hash != hash);
                    }
                    ChunkOutcome::Complete(b) => self.on_blob(now, ex, hash, b),
                }
            }
            Msg::Pull { id } => {
                let Some(s) = self.records.get(&id) else {
                    self.stats.fetch_unserved += 1;
                    return;
                };
                let (blob, record) = (s.blob(), s.record.clone());
                self.send(
                    now,
                    ex,
                    from,
                    &Msg::Announce {
                        id,
                        record: blob,
                        stage: false,
                    },
                );
                self.push_blob(now, ex, from, blob.hash, &record);
            }
            Msg::Lost { refs } => self.on_lost_report(now, ex, from, refs),
            Msg::LostAck { ids } => {
                for id in ids {
                    self.lost_out.remove(&id);
                }
            }
        }
    }

    fn serve(
        &mut self,
        now: Timestamp,
        ex: &mut Exchange,
        to: NodeId,
        hash: Hash,
        cs: usize,
        indices: &[u16],
    ) {
        let blob = match self.by_hash.get(&hash) {
            Some(id) => self.records.get(id).map(|s| s.record.clone()),
            None => self.drafts.get(&hash).cloned(),
        };
        let Some(blob) = blob else {
            self.stats.fetch_unserved += 1;
            return;
        };
        if cs + CHUNK_OVERHEAD > self.room {
            self.stats.fetch_unserved += 1;
            return;
        }
        for &i in indices {
            let Some(data) = chunk_of(&blob, cs, i as usize) else {
                self.stats.fetch_unserved += 1;
                continue;
            };
            let m = Msg::Chunk {
                hash,
                total: blob.len() as u32,
                chunk_size: cs as u16,
                index: i,
                data: data.to_vec(),
            };
            self.send(now, ex, to, &m);
        }
    }

    fn on_announce(
        &mut self,
        now: Timestamp,
        ex: &mut Exchange,
        from: NodeId,
        id: VersionId,
        record: BlobRef,
        stage: bool,
    ) {
        if stage {
            if let Some(a) = self.active.filter(|a| *a > id) {
                let m = Msg::StageReply {
                    id,
                    status: StageStatus::Ahead(a),
                };
                self.send(now, ex, from, &m);
                return;
            }
        }
        if self.records.contains_key(&id) {
            if stage {
                let status = self.stage(id);
                self.send(now, ex, from, &Msg::StageReply { id, status });
            }
            return;
        }
        if stage {
            self.stage_for.insert(id, from);
        }
        self.want_record(now, id, record, from);
    }

    /// Starts fetching version `id`'s record from `from` (and other holders).
    pub(super) fn want_record(
        &mut self,
        now: Timestamp,
        id: VersionId,
        record: BlobRef,
        from: NodeId,
    ) {
        if self.records.contains_key(&id) {
            return;
        }
        if let Some(prev) = self.wanted.get(&id) {
            if *prev != record {
                // Two different records claim the same id: keep the first;
                // only a key holder sending garbage can cause this.
                self.stats.records_invalid += 1;
                return;
            }
        }
        if !self
            .transfers
            .want(now, record.hash, record.len as usize, from)
        {
            self.stats.transfers_refused += 1;
            return;
        }
        // Every node that runs or holds exactly this version can serve it.
        let holders: Vec<NodeId> = self
            .beacons
            .iter()
            .filter(|(_, b)| b.active == Some(id) || b.have == Some(id))
            .map(|(n, _)| *n)
            .collect();
        for h in holders {
            self.transfers
                .want(now, record.hash, record.len as usize, h);
        }
        self.wanted.insert(id, record);
        self.purposes.insert(record.hash, Purpose::Record(id));
    }

    fn on_blob(&mut self, now: Timestamp, ex: &mut Exchange, hash: Hash, bytes: Vec<u8>) {
        match self.purposes.remove(&hash) {
            Some(Purpose::Record(id)) => {
                self.wanted.remove(&id);
                match decode_record(&bytes) {
                    Ok((meta, _)) if meta.id == id => {
                        self.add_record(meta, bytes.into(), hash);
                        if let Some(to) = self.stage_for.remove(&id) {
                            if to == ex.master() {
                                let status = self.stage(id);
                                self.send(now, ex, to, &Msg::StageReply { id, status });
                            }
                        }
                        if let Some(m) = self.master.as_mut() {
                            m.pulling = None;
                        }
                    }
                    _ => {
                        self.stats.records_invalid += 1;
                        self.stage_for.remove(&id);
                    }
                }
            }
            Some(Purpose::Draft) => {
                if decode_draft(&bytes).is_ok() {
                    self.drafts.insert(hash, bytes.into());
                } else {
                    self.stats.drafts_invalid += 1;
                }
            }
            None => {}
        }
    }

    /// Stores a complete, verified record; updates history, detects losses.
    pub(super) fn add_record(&mut self, meta: VersionMeta, record: Arc<[u8]>, hash: Hash) {
        let id = meta.id;
        if self.records.contains_key(&id) {
            return;
        }
        let head = self
            .history
            .values()
            .filter(|h| h.status == HistoryStatus::Published)
            .map(|h| h.id)
            .filter(|h| *h != id)
            .max();
        let mut newly_lost: Vec<(LostRef, bool)> = Vec::new();
        let entry = self
            .history
            .entry(id)
            .or_insert_with(|| HistoryEntry::published(&meta));
        if entry.kind.is_none() {
            // Known only from a merge's list so far: keep its status.
            let status = entry.status;
            let in_merge = entry.in_merge;
            *entry = HistoryEntry::published(&meta);
            entry.status = status;
            entry.in_merge = in_merge;
        }
        match head {
            Some(h) if h > id => {
                let sibling = self
                    .records
                    .get(&h)
                    .is_some_and(|s| !s.meta.lineage.includes(id));
                let e = self.history.get_mut(&id).expect("inserted");
                if sibling && e.status == HistoryStatus::Published {
                    e.status = HistoryStatus::Lost { by: h };
                    newly_lost.push((e.lost_ref(), true));
                }
            }
            _ => {
                for e in self.history.values_mut() {
                    if e.id != id
                        && e.status == HistoryStatus::Published
                        && !meta.lineage.includes(e.id)
                    {
                        e.status = HistoryStatus::Lost { by: id };
                        newly_lost.push((e.lost_ref(), true));
                    }
                }
            }
        }
        for r in &meta.lost {
            let e = self
                .history
                .entry(r.id)
                .or_insert_with(|| HistoryEntry::lost(r, id));
            e.in_merge = true;
            if e.status == HistoryStatus::Published {
                e.status = HistoryStatus::Lost { by: id };
                newly_lost.push((e.lost_ref(), false));
            }
        }
        self.by_hash.insert(hash, id);
        self.records.insert(id, Stored { meta, record, hash });
        self.persist_dirty = true;
        if newly_lost.is_empty() {
            return;
        }
        self.stats.versions_lost += newly_lost.len() as u64;
        let winner = match self.history.get(&newly_lost[0].0.id).map(|e| e.status) {
            Some(HistoryStatus::Lost { by }) => by,
            _ => id,
        };
        for (r, report) in &newly_lost {
            if *report && !self.history.get(&r.id).is_some_and(|e| e.in_merge) {
                self.lost_out.insert(r.id, r.clone());
            }
            // A local apply that was numbered as a lost version.
            let req = self
                .requests
                .iter()
                .find(|(_, q)| q.state == ReqState::Assigned(r.id))
                .map(|(k, _)| *k);
            if let Some(req) = req {
                self.finish(req, ApplyResult::Lost { id: r.id, winner });
            }
        }
        self.events.push_back(PolicyEvent::Lost {
            lost: newly_lost.into_iter().map(|(r, _)| r).collect(),
            winner,
        });
    }

    /// Validates `id` (cached) and says what to tell the master.
    pub(super) fn stage(&mut self, id: VersionId) -> StageStatus {
        if let Some(a) = self.active.filter(|a| *a > id) {
            return StageStatus::Ahead(a);
        }
        if self.active == Some(id) {
            return StageStatus::Staged;
        }
        if !self.validated.contains_key(&id) {
            let Some(s) = self.records.get(&id) else {
                return StageStatus::Rejected("record not held".into());
            };
            let r = self.validator.validate(s.doc());
            if let Err(why) = &r {
                self.stats.versions_rejected += 1;
                self.rejected = Some((id, why.clone()));
                self.persist_dirty = true;
                self.events.push_back(PolicyEvent::Rejected {
                    id,
                    reason: why.clone(),
                });
            }
            self.validated.insert(id, r);
        }
        match &self.validated[&id] {
            Ok(()) => StageStatus::Staged,
            Err(why) => StageStatus::Rejected(why.clone()),
        }
    }

    pub(super) fn staged_ok(&self, id: VersionId) -> bool {
        self.records.contains_key(&id) && matches!(self.validated.get(&id), Some(Ok(())))
    }

    /// Switches to `id` (staged, newer than the active one).
    pub(super) fn activate(&mut self, id: VersionId) {
        if self.active >= Some(id) || !self.staged_ok(id) {
            return;
        }
        let previous = self.active.replace(id);
        if self.rejected.as_ref().is_some_and(|(r, _)| *r < id) {
            // Running something newer: the old refusal is history.
            self.rejected = None;
        }
        self.stats.activations += 1;
        self.persist_dirty = true;
        self.events
            .push_back(PolicyEvent::Activated { id, previous });
    }

    /// Catch-up: run the version the master declared, fetching it if needed.
    fn follow(&mut self, now: Timestamp, ex: &mut Exchange) {
        let Some(mb) = self.pool_target(ex) else {
            return;
        };
        let Some(t) = mb.pool_active else {
            return;
        };
        if self.active >= Some(t) || matches!(self.validated.get(&t), Some(Err(_))) {
            self.pull = None;
            return;
        }
        if self.records.contains_key(&t) {
            if self.stage(t) == StageStatus::Staged {
                self.activate(t);
            }
            self.pull = None;
            return;
        }
        if self.wanted.contains_key(&t) {
            return;
        }
        let due = match self.pull {
            Some((v, at)) if v == t => now >= at,
            _ => true,
        };
        if !due {
            return;
        }
        // Ask the master first, then any holder in turn.
        let master = ex.master();
        let mut holders: Vec<NodeId> = self
            .beacons
            .iter()
            .filter(|(n, b)| **n != master && (b.active == Some(t) || b.have == Some(t)))
            .map(|(n, _)| *n)
            .collect();
        holders.insert(0, master);
        let k =
            self.stats.activations as usize + now.duration_since(self.start).as_millis() as usize;
        let to = if matches!(self.pull, Some((v, _)) if v == t) {
            holders[k % holders.len()]
        } else {
            master
        };
        self.send(now, ex, to, &Msg::Pull { id: t });
        self.pull = Some((t, now + self.cfg.retransmit * 2));
    }

    fn drive_initial(&mut self, now: Timestamp, wall_ms: u64) {
        if self.initial != Initial::Unsent {
            return;
        }
        if !self.records.is_empty() || !self.history.is_empty() {
            // The pool has a policy: the node file's is not used.
            self.initial = Initial::Idle;
            return;
        }
        let pool_empty = self
            .beacons
            .values()
            .all(|b| b.have.is_none() && b.master.is_none_or(|m| m.pool_active.is_none()));
        if !pool_empty {
            return;
        }
        let Some(doc) = self.cfg.initial.clone() else {
            return;
        };
        match self.submit(
            now,
            wall_ms,
            &doc,
            "node file",
            "initial policy from the node file",
            Kind::Initial,
            true,
        ) {
            Ok(req) => self.initial = Initial::Pending(req),
            Err(e) => {
                self.initial = Initial::Idle;
                self.events.push_back(PolicyEvent::InitialIgnored {
                    reason: e.to_string(),
                });
            }
        }
    }

    fn drive_requests(&mut self, now: Timestamp, ex: &mut Exchange) {
        let me = self.cfg.node_id;
        let master = ex.master();
        let keys: Vec<ReqId> = self.requests.keys().copied().collect();
        for req in keys {
            let (state, started, draft, due, initial) = {
                let r = &self.requests[&req];
                (r.state, r.started, r.draft, now >= r.next_send, r.initial)
            };
            if now.saturating_duration_since(started) >= self.cfg.apply_timeout {
                let id = match state {
                    ReqState::Assigned(v) => Some(v),
                    _ => None,
                };
                let pending = match id {
                    Some(v) => self.not_running(ex, v),
                    None => ex.live_nodes(),
                };
                self.finish(req, ApplyResult::TimedOut { id, pending });
                continue;
            }
            if let ReqState::Assigned(v) = state {
                // Finished according to every live node's beacon (covers a
                // master that failed before it reported).
                if self.not_running(ex, v).is_empty() {
                    let rep = self.report_from_beacons(ex, v, now - started);
                    self.finish(req, ApplyResult::Done(rep));
                    continue;
                }
            }
            if !due {
                continue;
            }
            let period = match state {
                ReqState::Waiting => self.cfg.retransmit,
                ReqState::Queued => self.cfg.retransmit * 4,
                ReqState::Assigned(_) => self.cfg.retransmit * 5,
            };
            if let Some(r) = self.requests.get_mut(&req) {
                r.next_send = now + period;
            }
            if master == me {
                self.on_submit(now, ex, me, req, draft, initial);
            } else {
                let m = Msg::Submit {
                    req,
                    draft,
                    initial,
                };
                self.send(now, ex, master, &m);
                if state == ReqState::Waiting {
                    if let Some(d) = self.drafts.get(&draft.hash).cloned() {
                        self.push_blob(now, ex, master, draft.hash, &d);
                    }
                }
            }
        }
    }

    /// Live nodes (this one included) neither running `v` (or newer) nor
    /// having refused it.
    fn not_running(&self, ex: &Exchange, v: VersionId) -> Vec<NodeId> {
        let me = self.cfg.node_id;
        ex.live_nodes()
            .into_iter()
            .filter(|n| {
                if *n == me {
                    return self.active < Some(v)
                        && !matches!(self.validated.get(&v), Some(Err(_)));
                }
                match self.beacons.get(n) {
                    Some(b) => {
                        b.active < Some(v) && b.rejected.as_ref().is_none_or(|(r, _)| *r != v)
                    }
                    None => true,
                }
            })
            .collect()
    }

    pub(super) fn report_from_beacons(
        &self,
        ex: &Exchange,
        v: VersionId,
        took: Duration,
    ) -> Report {
        let me = self.cfg.node_id;
        let mut active = 0;
        let mut rejected = Vec::new();
        let mut stragglers = Vec::new();
        for n in ex.live_nodes() {
            let (a, rej) = if n == me {
                (self.active, self.rejected.clone().filter(|(r, _)| *r == v))
            } else {
                let b = self.beacons.get(&n);
                (
                    b.and_then(|b| b.active),
                    b.and_then(|b| b.rejected.clone()).filter(|(r, _)| *r == v),
                )
            };
            if a >= Some(v) {
                active += 1;
            } else if let Some((_, why)) = rej {
                rejected.push((n, why));
            } else {
                stragglers.push(n);
            }
        }
        Report {
            version: v,
            active,
            rejected,
            stragglers,
            omitted: 0,
            took_ms: took.as_millis().min(u128::from(u32::MAX)) as u32,
        }
    }

    pub(super) fn finish(&mut self, req: ReqId, result: ApplyResult) {
        let Some(r) = self.requests.remove(&req) else {
            return;
        };
        self.drafts.remove(&r.draft.hash);
        if r.initial {
            self.initial = Initial::Idle;
            if let ApplyResult::Refused(reason) = result {
                self.events
                    .push_back(PolicyEvent::InitialIgnored { reason });
                return;
            }
        }
        self.events
            .push_back(PolicyEvent::ApplyFinished { req, result });
    }

    /// A master's answer to one of our submissions (or our own, locally).
    pub(super) fn on_reply(&mut self, now: Timestamp, ex: &mut Exchange, req: ReqId, o: Outcome) {
        let Some(r) = self.requests.get_mut(&req) else {
            return;
        };
        match o {
            Outcome::Queued => {
                if r.state == ReqState::Waiting {
                    r.state = ReqState::Queued;
                    r.next_send = now + self.cfg.retransmit * 4;
                }
            }
            Outcome::Assigned(v) => {
                if r.state != ReqState::Assigned(v) {
                    r.state = ReqState::Assigned(v);
                    r.next_send = now + self.cfg.retransmit * 5;
                    self.events
                        .push_back(PolicyEvent::ApplyAssigned { req, id: v });
                }
            }
            Outcome::NotMaster(m) => {
                r.next_send = now;
                if m != ex.master() {
                    self.stats.messages_unexpected += 1;
                }
            }
            Outcome::Refused(why) => self.finish(req, ApplyResult::Refused(why)),
            Outcome::Done(rep) => {
                if r.state != ReqState::Assigned(rep.version) {
                    self.events.push_back(PolicyEvent::ApplyAssigned {
                        req,
                        id: rep.version,
                    });
                }
                self.finish(req, ApplyResult::Done(rep));
            }
        }
    }

    fn drive_transfers(&mut self, now: Timestamp, ex: &mut Exchange) {
        if self.transfers.is_empty() {
            return;
        }
        let expired = self.transfers.expire(now, self.cfg.transfer_timeout);
        if expired > 0 {
            self.stats.transfers_expired += expired as u64;
            let transfers = &self.transfers;
            self.purposes.retain(|h, _| transfers.wants(h));
            let purposes = &self.purposes;
            self.wanted.retain(|_, b| purposes.contains_key(&b.hash));
            let wanted = &self.wanted;
            let records = &self.records;
            self.stage_for
                .retain(|v, _| wanted.contains_key(v) || records.contains_key(v));
        }
        let live = ex.live_nodes();
        let reqs = self
            .transfers
            .poll(now, self.cfg.retransmit, self.cfg.fetch_window, |n| {
                live.binary_search(&n).is_ok()
            });
        for (to, m) in reqs {
            self.send(now, ex, to, &m);
        }
    }

    fn drive_lost(&mut self, now: Timestamp, ex: &mut Exchange) {
        if self.lost_out.is_empty() || now < self.lost_next {
            return;
        }
        self.lost_next = now + self.cfg.retransmit * 4;
        let refs: Vec<LostRef> = self.lost_out.values().cloned().collect();
        let master = ex.master();
        if master == self.cfg.node_id {
            self.on_lost_report(now, ex, master, refs);
            return;
        }
        let per = ((self.room - 4) / LostRef::MAX_LEN).max(1);
        for part in refs.chunks(per) {
            self.send(
                now,
                ex,
                master,
                &Msg::Lost {
                    refs: part.to_vec(),
                },
            );
        }
    }

    fn update_sync(&mut self, ex: &Exchange) {
        let Some(mb) = self.pool_target(ex) else {
            self.in_sync = false;
            return;
        };
        let initial_pending = matches!(self.initial, Initial::Pending(_) | Initial::Unsent)
            && mb.pool_active.is_none();
        // Runs what the master declared (a rollout in progress does not
        // make the others out of sync; it makes the beacons flap for nothing).
        self.in_sync = match mb.pool_active {
            None => mb.settled && !initial_pending,
            Some(t) => self.active >= Some(t) || matches!(self.validated.get(&t), Some(Err(_))),
        };
        // The first time, the master must also have settled: after a
        // restart it may still be finding a newer version among the members.
        if self.in_sync && mb.settled && !self.current {
            self.current = true;
            self.events.push_back(PolicyEvent::Current {
                active: self.active,
            });
        }
    }

    /// Drops records, validations and drafts nobody needs any more.
    fn gc(&mut self) {
        let keep_n = self.cfg.keep_versions.max(1);
        if self.records.len() > keep_n {
            let mut keep: BTreeSet<VersionId> = self
                .history
                .values()
                .rev()
                .filter(|h| {
                    h.status == HistoryStatus::Published && self.records.contains_key(&h.id)
                })
                .take(keep_n)
                .map(|h| h.id)
                .collect();
            keep.extend(self.active);
            keep.extend(self.records.keys().next_back().copied());
            keep.extend(self.stage_for.keys().copied());
            if let Some(m) = &self.master {
                keep.extend(m.pool_active);
                keep.extend(m.rollout_id());
            }
            let before = self.records.len();
            self.records.retain(|id, _| keep.contains(id));
            if self.records.len() != before {
                let records = &self.records;
                self.by_hash.retain(|_, id| records.contains_key(id));
                self.validated.retain(|id, _| records.contains_key(id));
                self.persist_dirty = true;
            }
        }
        let cap = self.cfg.history_len.max(keep_n);
        while self.history.len() > cap {
            self.history.pop_first();
            self.persist_dirty = true;
        }
        let mut live_drafts: BTreeSet<Hash> =
            self.requests.values().map(|r| r.draft.hash).collect();
        if let Some(m) = &self.master {
            live_drafts.extend(m.queued_drafts());
        }
        self.drafts.retain(|h, _| live_drafts.contains(h));
    }
}
