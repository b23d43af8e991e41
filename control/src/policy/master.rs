//! The master's duties: serialise submissions into versions under its term,
//! roll each out (stage everywhere, then activate), converge the pool on the
//! highest version after a heal or failover, and publish merge versions that
//! record what a heal dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use headroom_clock::Timestamp;

use super::history::HistoryStatus;
use super::node::{PolicyNode, Purpose};
use super::version::{
    content_hash, decode_draft, encode_record, Draft, Hash, Kind, Lineage, LostRef, ReqId, Term,
    VersionId, VersionMeta, MAX_LOST, MAX_MESSAGE,
};
use super::wire::{BlobRef, Msg, Outcome, Report, StageStatus};
use super::PolicyEvent;
use crate::exchange::{Exchange, NodeId};

/// Submissions a master holds at once.
const MAX_QUEUE: usize = 64;
/// Finished rollouts remembered to answer repeated submissions.
const MAX_REPORTS: usize = 32;

#[derive(Debug)]
pub(super) struct Queued {
    req: ReqId,
    from: NodeId,
    draft: BlobRef,
    received: Timestamp,
    initial: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Staging,
    Activating,
}

#[derive(Debug)]
pub(super) struct Rollout {
    id: VersionId,
    blob: BlobRef,
    req: Option<(ReqId, NodeId)>,
    started: Timestamp,
    phase: Phase,
    deadline: Timestamp,
    replies: BTreeMap<NodeId, StageStatus>,
    acked: BTreeSet<NodeId>,
    next_send: BTreeMap<NodeId, Timestamp>,
    /// Nodes sent at least one `Activate`.
    activate_sent: BTreeSet<NodeId>,
}

/// State only the master keeps.
#[derive(Debug)]
pub(super) struct Master {
    /// Seen every live member's beacon (after `join_grace` from start).
    ready: bool,
    ready_at: Option<Timestamp>,
    /// Nothing to roll out, nothing queued: see [`super::wire::MasterBeacon`].
    pub(super) settled: bool,
    /// The version declared active pool-wide.
    pub(super) pool_active: Option<VersionId>,
    queue: VecDeque<Queued>,
    rollout: Option<Rollout>,
    reports: VecDeque<(ReqId, Report)>,
    /// Versions no node could stage: not rolled out again by this master.
    failed: BTreeSet<VersionId>,
    /// Highest version a node said it runs (`Ahead`).
    higher: Option<VersionId>,
    /// Lost versions not yet listed by a merge version.
    merge_pending: BTreeMap<VersionId, LostRef>,
    /// Pulling the record of a version to roll out: (version, next pull, since).
    pub(super) pulling: Option<(VersionId, Timestamp, Timestamp)>,
}

impl Master {
    pub(super) fn new(_now: Timestamp, active: Option<VersionId>) -> Self {
        Self {
            ready: false,
            ready_at: None,
            settled: false,
            pool_active: active,
            queue: VecDeque::new(),
            rollout: None,
            reports: VecDeque::new(),
            failed: BTreeSet::new(),
            higher: None,
            merge_pending: BTreeMap::new(),
            pulling: None,
        }
    }

    pub(super) fn rollout_id(&self) -> Option<VersionId> {
        self.rollout.as_ref().map(|r| r.id)
    }

    pub(super) fn queued_drafts(&self) -> impl Iterator<Item = Hash> + '_ {
        self.queue.iter().map(|q| q.draft.hash)
    }

    pub(super) fn next_wake(
        &self,
        now: Timestamp,
        grace_end: Timestamp,
        rt: Duration,
    ) -> Timestamp {
        let mut w = now + rt.max(Duration::from_millis(1)) * 10;
        if !self.ready {
            w = w
                .min(grace_end.max(now + Duration::from_millis(1)))
                .min(now + rt);
        }
        if let Some(r) = &self.rollout {
            w = w.min(r.deadline).min(now + rt);
            for t in r.next_send.values().filter(|t| **t > now) {
                w = w.min(*t);
            }
        }
        if !self.queue.is_empty() || self.pulling.is_some() || !self.merge_pending.is_empty() {
            w = w.min(now + rt);
        }
        w
    }
}

impl PolicyNode {
    fn reply(&mut self, now: Timestamp, ex: &mut Exchange, to: NodeId, req: ReqId, o: Outcome) {
        if to == self.cfg.node_id {
            self.on_reply(now, ex, req, o);
        } else {
            let o = match o {
                Outcome::Done(mut rep) => {
                    rep.fit(req, self.room);
                    Outcome::Done(rep)
                }
                o => o,
            };
            self.send(now, ex, to, &Msg::SubmitReply { req, outcome: o });
        }
    }

    pub(super) fn on_submit(
        &mut self,
        now: Timestamp,
        ex: &mut Exchange,
        from: NodeId,
        req: ReqId,
        draft: BlobRef,
        initial: bool,
    ) {
        let Some(mut m) = self.master.take() else {
            let master = ex.master();
            self.reply(now, ex, from, req, Outcome::NotMaster(master));
            return;
        };
        let known = self
            .history
            .values()
            .find(|e| e.req == Some(req))
            .map(|e| (e.id, e.status));
        let outcome = if let Some((_, rep)) = m.reports.iter().find(|(r, _)| *r == req) {
            Outcome::Done(rep.clone())
        } else if let Some((id, status)) = known {
            match status {
                _ if m.rollout_id() == Some(id) => Outcome::Assigned(id),
                HistoryStatus::Published => {
                    Outcome::Done(self.report_from_beacons(ex, id, Duration::ZERO))
                }
                HistoryStatus::Lost { by } => {
                    Outcome::Refused(format!("{id} was dropped by a partition merge for {by}"))
                }
                HistoryStatus::Failed => Outcome::Refused(format!("no node could stage {id}")),
            }
        } else if m.queue.iter().any(|q| q.req == req) {
            Outcome::Queued
        } else if initial && (m.pool_active.is_some() || !self.history.is_empty()) {
            self.stats.submissions_refused += 1;
            let v = m.pool_active.map_or("a policy".into(), |v| v.to_string());
            Outcome::Refused(format!(
                "the pool already runs {v}: this node file's initial policy is not used"
            ))
        } else if initial && m.queue.iter().any(|q| q.initial) {
            self.stats.submissions_refused += 1;
            Outcome::Refused(
                "another node's initial policy is being used: this node file's is not".into(),
            )
        } else if m.queue.len() >= MAX_QUEUE {
            self.stats.submissions_refused += 1;
            Outcome::Refused("too many applies pending at the master; retry".into())
        } else {
            m.queue.push_back(Queued {
                req,
                from,
                draft,
                received: now,
                initial,
            });
            if !self.drafts.contains_key(&draft.hash) {
                self.want_draft(now, draft, from);
            }
            Outcome::Queued
        };
        self.master = Some(m);
        self.reply(now, ex, from, req, outcome);
    }

    fn want_draft(&mut self, now: Timestamp, draft: BlobRef, from: NodeId) {
        if self
            .transfers
            .want(now, draft.hash, draft.len as usize, from)
        {
            self.purposes.insert(draft.hash, Purpose::Draft);
        } else {
            self.stats.transfers_refused += 1;
        }
    }

    pub(super) fn on_stage_reply(
        &mut self,
        now: Timestamp,
        ex: &mut Exchange,
        from: NodeId,
        id: VersionId,
        status: StageStatus,
    ) {
        let Some(m) = self.master.as_mut() else {
            self.stats.messages_unexpected += 1;
            return;
        };
        if let StageStatus::Ahead(v) = status {
            m.higher = m.higher.max(Some(v));
        }
        let Some(r) = m.rollout.as_mut().filter(|r| r.id == id) else {
            return;
        };
        let first = r.replies.insert(from, status.clone()).is_none();
        let activate_now = first && r.phase == Phase::Activating && status == StageStatus::Staged;
        if activate_now {
            r.next_send.insert(from, now + self.cfg.retransmit);
            r.activate_sent.insert(from);
            for _ in 0..self.cfg.activate_copies.max(1) {
                self.send(now, ex, from, &Msg::Activate { id });
            }
        }
    }

    pub(super) fn on_active_ack(&mut self, from: NodeId, id: VersionId) {
        let Some(m) = self.master.as_mut() else {
            self.stats.messages_unexpected += 1;
            return;
        };
        if let Some(r) = m.rollout.as_mut().filter(|r| r.id == id) {
            r.acked.insert(from);
        }
    }

    pub(super) fn on_lost_report(
        &mut self,
        now: Timestamp,
        ex: &mut Exchange,
        from: NodeId,
        refs: Vec<LostRef>,
    ) {
        let Some(m) = self.master.as_mut() else {
            self.stats.messages_unexpected += 1;
            return;
        };
        let by = m.pool_active;
        let mut recorded = Vec::new();
        for r in refs {
            let e = self
                .history
                .entry(r.id)
                .or_insert_with(|| super::HistoryEntry::lost(&r, by.unwrap_or(r.id)));
            if e.status == HistoryStatus::Published {
                if let Some(by) = by.filter(|b| *b != r.id) {
                    e.status = HistoryStatus::Lost { by };
                }
            }
            if e.in_merge {
                recorded.push(r.id);
            } else {
                m.merge_pending.insert(r.id, r);
            }
        }
        // Acknowledged only once a merge version lists them, so a master
        // failing before its merge does not lose the report.
        if from == self.cfg.node_id {
            for id in &recorded {
                self.lost_out.remove(id);
            }
        } else if !recorded.is_empty() {
            self.send(now, ex, from, &Msg::LostAck { ids: recorded });
        }
    }

    /// The highest version known anywhere (held here, or run or held by a
    /// live member), skipping versions this master saw fail everywhere.
    fn best_version(&self, m: &Master) -> Option<VersionId> {
        self.records
            .keys()
            .copied()
            .chain(
                self.beacons
                    .values()
                    .flat_map(|b| [b.have, b.active])
                    .flatten(),
            )
            .chain(m.higher)
            .filter(|v| !m.failed.contains(v))
            .max()
    }

    /// Highest term and seq seen anywhere (numbering must exceed both).
    fn max_seen(&self, m: &Master) -> (Term, u64) {
        let ids = self
            .history
            .keys()
            .copied()
            .chain(self.records.keys().copied())
            .chain(m.pool_active)
            .chain(m.higher)
            .chain(
                self.beacons
                    .values()
                    .flat_map(|b| {
                        [
                            b.active,
                            b.have,
                            b.rejected.as_ref().map(|r| r.0),
                            b.master.and_then(|x| x.pool_active),
                        ]
                    })
                    .flatten(),
            );
        let mut term = Term::default();
        let mut seq = 0;
        for v in ids {
            term = term.max(v.term);
            seq = seq.max(v.seq);
        }
        (term, seq)
    }

    pub(super) fn master_poll(&mut self, now: Timestamp, wall_ms: u64, ex: &mut Exchange) {
        let Some(mut m) = self.master.take() else {
            return;
        };
        let me = self.cfg.node_id;
        if !m.ready
            && now >= self.start + self.cfg.join_grace
            && ex
                .live_nodes()
                .iter()
                .all(|n| *n == me || self.beacons.contains_key(n))
        {
            m.ready = true;
            m.ready_at = Some(now);
        }
        if m.ready {
            if m.rollout.is_some() {
                self.rollout_step(&mut m, now, ex);
            }
            if m.rollout.is_none() {
                self.master_next(&mut m, now, wall_ms, ex);
            }
        }
        let target = self.best_version(&m);
        m.settled = m.ready
            && m.rollout.is_none()
            && m.queue.is_empty()
            && target <= m.pool_active
            && (m.pool_active.is_some()
                || m.ready_at.is_some_and(|t| now >= t + self.cfg.join_grace));
        self.master = Some(m);
    }

    /// Picks the next rollout: catch up with the highest version, record a
    /// merge, or number the next submission.
    fn master_next(&mut self, m: &mut Master, now: Timestamp, wall_ms: u64, ex: &mut Exchange) {
        let rt = self.cfg.retransmit;
        let target = self.best_version(m);
        if let Some(t) = target.filter(|t| Some(*t) > m.pool_active) {
            if self.records.contains_key(&t) {
                m.pulling = None;
                self.start_rollout(m, now, ex, t, None);
                return;
            }
            let since = match m.pulling {
                Some((v, _, since)) if v == t => since,
                _ => now,
            };
            if now.saturating_duration_since(since) >= self.cfg.transfer_timeout {
                // Its holders do not answer: give up on it, keep serving.
                m.failed.insert(t);
                m.pulling = None;
                return;
            }
            let due = m.pulling.is_none_or(|(v, at, _)| v != t || now >= at);
            if due {
                let holders: Vec<NodeId> = self
                    .beacons
                    .iter()
                    .filter(|(_, b)| b.have == Some(t) || b.active == Some(t))
                    .map(|(n, _)| *n)
                    .collect();
                if !holders.is_empty() {
                    let k = now.saturating_duration_since(since).as_millis() as usize
                        / rt.as_millis().max(1) as usize;
                    let to = holders[k % holders.len()];
                    self.send(now, ex, to, &Msg::Pull { id: t });
                }
                m.pulling = Some((t, now + rt * 2, since));
            }
            return;
        }
        m.pulling = None;
        if !m.merge_pending.is_empty() {
            if let Some(pa) = m.pool_active.filter(|p| self.records.contains_key(p)) {
                self.publish_merge(m, now, wall_ms, ex, pa);
                return;
            }
        }
        // Time out submissions whose document never arrived; keep fetching
        // the others.
        let mut k = 0;
        while k < m.queue.len() {
            let q = &m.queue[k];
            if self.drafts.contains_key(&q.draft.hash) {
                k += 1;
                continue;
            }
            if now.saturating_duration_since(q.received) >= self.cfg.transfer_timeout {
                let q = m.queue.remove(k).expect("index checked");
                self.stats.submissions_refused += 1;
                let why = format!("the document transfer from node {} timed out", q.from);
                self.reply(now, ex, q.from, q.req, Outcome::Refused(why));
                continue;
            }
            let (draft, from) = (q.draft, q.from);
            if !self.transfers.wants(&draft.hash) {
                self.want_draft(now, draft, from);
            }
            k += 1;
        }
        // Number the oldest submission whose document is complete (a large
        // document still in transfer does not hold up a small one).
        while let Some(k) = m
            .queue
            .iter()
            .position(|q| self.drafts.contains_key(&q.draft.hash))
        {
            let q = m.queue.remove(k).expect("position is valid");
            let bytes = self.drafts[&q.draft.hash].clone();
            let checked = match decode_draft(&bytes) {
                Err(e) => Err(format!("malformed request: {e}")),
                Ok((d, doc)) => self.check_draft(m, &d, doc).map(|()| (d, doc.to_vec())),
            };
            match checked {
                Err(why) => {
                    self.stats.submissions_refused += 1;
                    self.reply(now, ex, q.from, q.req, Outcome::Refused(why));
                }
                Ok((d, doc)) => {
                    let id = self.number(m, now, ex, q.req, &d, &doc, Vec::new());
                    self.reply(now, ex, q.from, q.req, Outcome::Assigned(id));
                    self.start_rollout(m, now, ex, id, Some((q.req, q.from)));
                    return;
                }
            }
        }
    }

    fn check_draft(&self, m: &Master, d: &Draft, doc: &[u8]) -> Result<(), String> {
        let current = m
            .pool_active
            .and_then(|p| self.records.get(&p))
            .map(|s| (s.meta.id, s.meta.doc_hash));
        match d.kind {
            Kind::Initial if current.is_some() || !self.history.is_empty() => {
                let v = current.map_or("a policy".into(), |(v, _)| v.to_string());
                Err(format!(
                    "the pool already runs {v}: this node file's initial policy is not used"
                ))
            }
            Kind::Apply | Kind::Rollback { .. }
                if current.is_some_and(|(_, h)| h == content_hash(doc)) =>
            {
                let (v, _) = current.expect("checked");
                Err(format!(
                    "unchanged: the document is identical to the active {v}"
                ))
            }
            _ => Ok(()),
        }
    }

    /// Numbers a new version (starting a new term if another master's term
    /// is as high as ours), stores its record and returns its id.
    #[allow(clippy::too_many_arguments)]
    fn number(
        &mut self,
        m: &mut Master,
        _now: Timestamp,
        _ex: &mut Exchange,
        req: ReqId,
        d: &Draft,
        doc: &[u8],
        lost: Vec<LostRef>,
    ) -> VersionId {
        let me = self.cfg.node_id;
        let (max_term, max_seq) = self.max_seen(m);
        let term = match self.term {
            Some(t) if t.node == me && t.epoch == self.cfg.epoch && t >= max_term => t,
            _ => Term {
                n: max_term.n + 1,
                node: me,
                epoch: self.cfg.epoch,
            },
        };
        self.term = Some(term);
        let id = VersionId {
            term,
            seq: max_seq + 1,
        };
        let parent = m.pool_active;
        let parent_lineage = parent
            .and_then(|p| self.records.get(&p))
            .map(|s| &s.meta.lineage);
        let mut lineage = Lineage::child(parent_lineage, id);
        if parent.is_some() && parent_lineage.is_none() {
            // Ancestry unknown: never report older versions as lost.
            lineage.truncated = true;
        }
        let meta = VersionMeta {
            id,
            parent,
            doc_hash: content_hash(doc),
            doc_len: doc.len() as u32,
            req,
            kind: d.kind,
            author: d.author,
            author_ms: d.author_ms,
            user: d.user.clone(),
            message: d.message.clone(),
            lineage,
            lost,
        };
        let record = encode_record(&meta, doc);
        let hash = content_hash(&record);
        self.add_record(meta, record.into(), hash);
        self.stats.versions_published += 1;
        id
    }

    fn publish_merge(
        &mut self,
        m: &mut Master,
        now: Timestamp,
        wall_ms: u64,
        ex: &mut Exchange,
        winner: VersionId,
    ) {
        let refs: Vec<LostRef> = m.merge_pending.values().take(MAX_LOST).cloned().collect();
        for r in &refs {
            m.merge_pending.remove(&r.id);
        }
        let mut message = format!("partition merge: kept {winner}, dropped");
        for r in &refs {
            let line = format!(
                " {} ({} on node {}: {:?})",
                r.id, r.user, r.author, r.message
            );
            if message.len() + line.len() > MAX_MESSAGE {
                message.push_str(" ...");
                break;
            }
            message.push_str(&line);
        }
        let doc = self.records[&winner].doc().to_vec();
        let d = Draft {
            kind: Kind::Merge,
            author: self.cfg.node_id,
            author_ms: wall_ms,
            user: "headroom".into(),
            message,
        };
        let req = ReqId {
            node: self.cfg.node_id,
            epoch: self.cfg.epoch,
            n: 0,
        };
        let id = self.number(m, now, ex, req, &d, &doc, refs);
        self.start_rollout(m, now, ex, id, None);
    }

    fn start_rollout(
        &mut self,
        m: &mut Master,
        now: Timestamp,
        ex: &mut Exchange,
        id: VersionId,
        req: Option<(ReqId, NodeId)>,
    ) {
        let me = self.cfg.node_id;
        let Some(blob) = self.records.get(&id).map(|s| s.blob()) else {
            return;
        };
        let per_node = 1 + self.push_cost(blob.len as usize);
        let per_batch = (self.cfg.burst / per_node).max(1);
        let next_send = ex
            .live_nodes()
            .into_iter()
            .filter(|n| *n != me)
            .enumerate()
            .map(|(k, n)| (n, now + Duration::from_millis((k / per_batch) as u64)))
            .collect();
        let mut replies = BTreeMap::new();
        replies.insert(me, self.stage(id));
        m.rollout = Some(Rollout {
            id,
            blob,
            req,
            started: now,
            phase: Phase::Staging,
            deadline: now + self.cfg.stage_timeout,
            replies,
            acked: BTreeSet::new(),
            next_send,
            activate_sent: BTreeSet::new(),
        });
        self.rollout_step(m, now, ex);
    }

    fn rollout_step(&mut self, m: &mut Master, now: Timestamp, ex: &mut Exchange) {
        let me = self.cfg.node_id;
        let rt = self.cfg.retransmit;
        let live = ex.live_nodes();
        loop {
            let Some(r) = m.rollout.as_mut() else {
                return;
            };
            match r.phase {
                Phase::Staging => {
                    let pending: Vec<NodeId> = live
                        .iter()
                        .copied()
                        .filter(|n| *n != me && !r.replies.contains_key(n))
                        .collect();
                    if pending.is_empty() || now >= r.deadline {
                        let staged: Vec<NodeId> = r
                            .replies
                            .iter()
                            .filter(|(_, s)| **s == StageStatus::Staged)
                            .map(|(n, _)| *n)
                            .collect();
                        if staged.is_empty() {
                            let id = r.id;
                            if let Some(e) = self.history.get_mut(&id) {
                                e.status = HistoryStatus::Failed;
                            }
                            m.failed.insert(id);
                            self.finish_rollout(m, now, ex);
                            return;
                        }
                        let id = r.id;
                        m.pool_active = m.pool_active.max(Some(id));
                        r.phase = Phase::Activating;
                        r.deadline = now + self.cfg.activate_timeout;
                        r.next_send = staged
                            .iter()
                            .copied()
                            .filter(|n| *n != me)
                            .enumerate()
                            .map(|(k, n)| {
                                (
                                    n,
                                    now + Duration::from_millis((k / self.cfg.burst.max(1)) as u64),
                                )
                            })
                            .collect();
                        if staged.contains(&me) {
                            self.activate(id);
                        }
                        continue;
                    }
                    let (id, blob) = (r.id, r.blob);
                    let due: Vec<NodeId> = pending
                        .into_iter()
                        .filter(|n| r.next_send.get(n).is_none_or(|t| now >= *t))
                        .collect();
                    for n in &due {
                        r.next_send.insert(*n, now + rt);
                    }
                    let record = self.records.get(&id).map(|s| s.record.clone());
                    for n in due {
                        let msg = Msg::Announce {
                            id,
                            record: blob,
                            stage: true,
                        };
                        self.send(now, ex, n, &msg);
                        if let Some(rec) = &record {
                            self.push_blob(now, ex, n, blob.hash, rec);
                        }
                    }
                    return;
                }
                Phase::Activating => {
                    let pending: Vec<NodeId> = live
                        .iter()
                        .copied()
                        .filter(|n| {
                            *n != me
                                && r.replies.get(n) == Some(&StageStatus::Staged)
                                && !r.acked.contains(n)
                        })
                        .collect();
                    if pending.is_empty() || now >= r.deadline {
                        self.finish_rollout(m, now, ex);
                        return;
                    }
                    let id = r.id;
                    let due: Vec<NodeId> = pending
                        .into_iter()
                        .filter(|n| r.next_send.get(n).is_none_or(|t| now >= *t))
                        .collect();
                    let copies = self.cfg.activate_copies.max(1);
                    let mut sends = Vec::new();
                    for n in due {
                        r.next_send.insert(n, now + rt);
                        let k = if r.activate_sent.insert(n) { copies } else { 1 };
                        sends.push((n, k));
                    }
                    for (n, k) in sends {
                        for _ in 0..k {
                            self.send(now, ex, n, &Msg::Activate { id });
                        }
                    }
                    return;
                }
            }
        }
    }

    fn finish_rollout(&mut self, m: &mut Master, now: Timestamp, ex: &mut Exchange) {
        let Some(r) = m.rollout.take() else {
            return;
        };
        let me = self.cfg.node_id;
        let mut active = 0;
        let mut rejected = Vec::new();
        let mut stragglers = Vec::new();
        for n in ex.live_nodes() {
            match r.replies.get(&n) {
                _ if n == me && self.active >= Some(r.id) => active += 1,
                Some(StageStatus::Staged) if n == me || r.acked.contains(&n) => active += 1,
                Some(StageStatus::Ahead(_)) => active += 1,
                Some(StageStatus::Rejected(why)) => rejected.push((n, why.clone())),
                _ => stragglers.push(n),
            }
        }
        let report = Report {
            version: r.id,
            active,
            rejected,
            stragglers,
            omitted: 0,
            took_ms: now
                .saturating_duration_since(r.started)
                .as_millis()
                .min(u128::from(u32::MAX)) as u32,
        };
        self.stats.rollouts += 1;
        self.events
            .push_back(PolicyEvent::RolloutFinished(report.clone()));
        if let Some((req, from)) = r.req {
            if m.reports.len() >= MAX_REPORTS {
                m.reports.pop_front();
            }
            m.reports.push_back((req, report.clone()));
            self.reply(now, ex, from, req, Outcome::Done(report));
        }
    }
}
