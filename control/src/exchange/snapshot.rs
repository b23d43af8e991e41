//! Frozen snapshots: the master periodically sends a consistent copy of each
//! [`NEEDS_SNAPSHOT`](super::NEEDS_SNAPSHOT) registration; receivers install
//! it only from the node they consider master.

use super::*;

impl Exchange {
    pub(super) fn send_snapshots(&mut self, now: Timestamp) {
        let codes: Vec<u8> = self
            .regs
            .iter()
            .filter(|(_, rs)| rs.reg.flags & NEEDS_SNAPSHOT != 0)
            .map(|(c, _)| *c)
            .collect();
        let dsts: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|m| m.state.is_live())
            .map(|m| m.addr)
            .collect();
        for code in codes {
            self.snapshot_id = self.snapshot_id.wrapping_add(1);
            let frozen: BTreeMap<NodeId, (u64, Vec<u8>)> = self
                .entries(code)
                .map(|e| (e.node, (e.version, e.data.to_vec())))
                .collect();
            let incs: HashMap<NodeId, u32> = self
                .entries(code)
                .map(|e| (e.node, e.incarnation))
                .collect();
            // Split into parts that each fit one datagram.
            let room = self
                .cfg
                .mtu
                .saturating_sub(wire::HEADER_LEN + wire::SNAPSHOT_HEADER_LEN + wire::MAC_LEN);
            let mut parts: Vec<Vec<NodeId>> = vec![Vec::new()];
            let mut used = 0;
            for (n, (_, d)) in &frozen {
                let sz = Builder::entry_size(d.len());
                let last = parts.last_mut().expect("non-empty");
                if !last.is_empty() && (used + sz > room || last.len() == wire::MAX_ENTRIES) {
                    parts.push(Vec::new());
                    used = 0;
                }
                parts.last_mut().expect("non-empty").push(*n);
                used += sz;
            }
            if parts.len() > 64 {
                // Too large to freeze in one snapshot; the live view still works.
                continue;
            }
            let nparts = parts.len() as u8;
            for (i, part) in parts.iter().enumerate() {
                let header = self.next_header(now);
                let sh = SnapshotHeader {
                    id: self.snapshot_id,
                    code,
                    part: i as u8,
                    parts: nparts,
                };
                let mut b = Builder::new(&header, Some(sh), self.cfg.mtu);
                for n in part {
                    let (v, d) = &frozen[n];
                    b.push(&WireEntry {
                        code,
                        origin: *n,
                        incarnation: incs[n],
                        version: *v,
                        ttl: 0,
                        data: d,
                    });
                }
                let bytes = b.finish(&self.auth);
                for dst in &dsts {
                    self.queue(*dst, bytes.clone());
                }
            }
            self.snapshots.insert(
                code,
                Snapshot {
                    master: self.cfg.node_id,
                    id: self.snapshot_id,
                    entries: frozen,
                },
            );
            self.events.push_back(Event::SnapshotReady(code));
        }
    }

    pub(super) fn handle_snapshot(
        &mut self,
        sender: NodeId,
        sh: SnapshotHeader,
        entries: &[WireEntry<'_>],
    ) {
        // Only the node we consider master may freeze a view; an outsider
        // (even with the key) cannot move it without being the lowest live id.
        let is_snap_reg = self
            .regs
            .get(&sh.code)
            .is_some_and(|rs| rs.reg.flags & NEEDS_SNAPSHOT != 0);
        if sender != self.master || !is_snap_reg || entries.iter().any(|e| e.code != sh.code) {
            self.stats.snapshot_rejected += 1;
            return;
        }
        let p = self.pending.entry(sh.code).or_insert(PendingSnapshot {
            master: sender,
            id: sh.id,
            parts: sh.parts,
            got: 0,
            entries: BTreeMap::new(),
        });
        if p.master != sender || p.id != sh.id || p.parts != sh.parts {
            *p = PendingSnapshot {
                master: sender,
                id: sh.id,
                parts: sh.parts,
                got: 0,
                entries: BTreeMap::new(),
            };
        }
        p.got |= 1 << sh.part;
        for e in entries {
            p.entries.insert(e.origin, (e.version, e.data.to_vec()));
        }
        if p.got.count_ones() == u32::from(p.parts) {
            let p = self.pending.remove(&sh.code).expect("present");
            self.snapshots.insert(
                sh.code,
                Snapshot {
                    master: p.master,
                    id: p.id,
                    entries: p.entries,
                },
            );
            self.stats.snapshots_installed += 1;
            self.events.push_back(Event::SnapshotReady(sh.code));
        }
    }
}
