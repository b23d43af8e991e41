//! Gossip: which entries a datagram carries (own changed entries, relays
//! with hops left, round-robin over registrations so truncation starves
//! nobody), to which mates, and how received entries are applied.

use super::membership::decode_member;
use super::*;

pub(super) fn ceil_log2(n: usize) -> usize {
    (usize::BITS - n.saturating_sub(1).leading_zeros()) as usize
}

impl Exchange {
    pub(super) fn ttl(&self) -> u8 {
        if self.cfg.ttl != 0 {
            return self.cfg.ttl;
        }
        // Each node relays a given version at most once (only when it is new
        // to it), so a generous TTL costs little and rides out lost relays.
        let n = self.live_count() + 1;
        (ceil_log2(n) + 3).clamp(4, 32) as u8
    }

    pub(super) fn fanout(&self) -> usize {
        if self.cfg.fanout != 0 {
            return self.cfg.fanout;
        }
        ceil_log2(self.live_count() + 1) + 1
    }

    pub(super) fn mark_dirty(&mut self, code: u8) {
        self.dirty[(code / 64) as usize] |= 1 << (code % 64);
    }

    /// Marks every registration changed; called on every roster change.
    pub(super) fn mark_all_dirty(&mut self) {
        self.roster_changed = true;
        let codes: Vec<u8> = self.regs.keys().copied().collect();
        for c in codes {
            self.mark_dirty(c);
        }
    }

    /// Turns dirty codes into one `ViewChanged` each and checks the master.
    pub(super) fn flush_dirty(&mut self) {
        for code in self.regs.keys() {
            let bit = 1u64 << (code % 64);
            let w = &mut self.dirty[(code / 64) as usize];
            if *w & bit != 0 {
                *w &= !bit;
                if *code != MEMBERSHIP_CODE {
                    self.events.push_back(Event::ViewChanged(*code));
                }
            }
        }
        if !std::mem::take(&mut self.roster_changed) {
            return;
        }
        let master = self
            .members
            .iter()
            .filter(|(_, m)| m.state.is_live())
            .map(|(n, _)| *n)
            .chain(std::iter::once(self.cfg.node_id))
            .min()
            .unwrap_or(self.cfg.node_id);
        if master != self.master {
            self.master = master;
            self.events.push_back(Event::MasterChanged(master));
        }
    }

    pub(super) fn queue(&mut self, dst: SocketAddr, bytes: Vec<u8>) {
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.transmits.push_back(Transmit { dst, bytes });
    }

    pub(super) fn next_header(&mut self, now: Timestamp) -> Header {
        self.seq += 1;
        Header {
            flags: 0,
            sender: self.cfg.node_id,
            epoch: self.cfg.epoch,
            seq: self.seq,
            timestamp_ms: self.uptime_ms(now),
        }
    }

    /// Builds one gossip datagram: our heartbeat first, then due entries,
    /// registrations interleaved round-robin from a rotating start and
    /// entries in random order (ours first within a registration).
    pub(super) fn build_gossip(&mut self, now: Timestamp) -> Option<Vec<u8>> {
        let id = self.cfg.node_id;
        let header = self.next_header(now);
        let mut b = Builder::new(&header, None, self.cfg.mtu);
        // Our heartbeat is in every datagram so a direct receiver always
        // learns we are alive; it is relayed only while it has sends left.
        {
            let rs = self.regs.get_mut(&MEMBERSHIP_CODE)?;
            let e = rs.entries.get_mut(&id)?;
            let relay = e.sends_left > 0;
            b.push(&WireEntry {
                code: MEMBERSHIP_CODE,
                origin: id,
                incarnation: e.incarnation,
                version: e.version,
                ttl: if relay { e.hops } else { 0 },
                data: &e.data,
            });
            if relay {
                e.sends_left -= 1;
            }
        }
        let mut lists: Vec<(u8, Vec<NodeId>)> = Vec::new();
        for (code, rs) in &self.regs {
            let mut own = false;
            let mut v: Vec<NodeId> = rs
                .entries
                .iter()
                .filter(|(n, e)| e.sends_left > 0 && !(*code == MEMBERSHIP_CODE && **n == id))
                .map(|(n, _)| *n)
                .filter(|n| {
                    if *n == id {
                        own = true;
                        false
                    } else {
                        true
                    }
                })
                .collect();
            if v.is_empty() && !own {
                continue;
            }
            v.sort_unstable();
            v.shuffle(&mut self.rng);
            if own {
                v.insert(0, id);
            }
            lists.push((*code, v));
        }
        if !lists.is_empty() {
            let start = self.rr % lists.len();
            lists.rotate_left(start);
        }
        self.rr = self.rr.wrapping_add(1);
        let mut idx = vec![0usize; lists.len()];
        let mut progress = true;
        while progress && b.len() < wire::MAX_ENTRIES {
            progress = false;
            for (li, (code, nodes)) in lists.iter().enumerate() {
                let Some(&n) = nodes.get(idx[li]) else {
                    continue;
                };
                idx[li] += 1;
                progress = true;
                let Some(e) = self
                    .regs
                    .get_mut(code)
                    .and_then(|rs| rs.entries.get_mut(&n))
                else {
                    continue;
                };
                let pushed = b.push(&WireEntry {
                    code: *code,
                    origin: n,
                    incarnation: e.incarnation,
                    version: e.version,
                    ttl: e.hops,
                    data: &e.data,
                });
                if pushed {
                    e.sends_left -= 1;
                } else {
                    self.stats.entries_deferred += 1;
                }
            }
        }
        self.add_filler(&mut b);
        Some(b.finish(&self.auth))
    }

    /// Adds up to `fill_entries` random settled module entries of live
    /// nodes (TTL 0: receivers keep them if newer, never relay them).
    pub(super) fn add_filler(&mut self, b: &mut Builder) {
        if self.cfg.fill_entries == 0 {
            return;
        }
        let id = self.cfg.node_id;
        let members = &self.members;
        let mut pool: Vec<(u8, NodeId)> = self
            .regs
            .iter()
            .filter(|(c, _)| **c != MEMBERSHIP_CODE)
            .flat_map(|(c, rs)| {
                rs.entries
                    .iter()
                    .filter(|(_, e)| e.sends_left == 0)
                    .map(move |(n, _)| (*c, *n))
            })
            .filter(|(_, n)| *n == id || members.get(n).is_some_and(|m| m.state.is_live()))
            .collect();
        pool.sort_unstable();
        let k = self.cfg.fill_entries.min(pool.len());
        let (picked, _) = pool.partial_shuffle(&mut self.rng, k);
        for (code, n) in picked.iter() {
            let Some(e) = self.regs.get(code).and_then(|rs| rs.entries.get(n)) else {
                continue;
            };
            if !b.push(&WireEntry {
                code: *code,
                origin: *n,
                incarnation: e.incarnation,
                version: e.version,
                ttl: 0,
                data: &e.data,
            }) {
                break;
            }
        }
    }

    pub(super) fn apply_entry(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        sender: NodeId,
        e: &WireEntry<'_>,
    ) {
        if e.origin == self.cfg.node_id {
            self.stats.self_origin_entries += 1;
            return;
        }
        let Some(rs) = self.regs.get(&e.code) else {
            self.stats.unknown_code += 1;
            return;
        };
        if e.data.len() > rs.reg.max_size {
            self.stats.oversize_entries += 1;
            return;
        }
        let newer = match rs.entries.get(&e.origin) {
            Some(s) => (e.incarnation, e.version) > (s.incarnation, s.version),
            None => true,
        };
        if e.code == MEMBERSHIP_CODE {
            let Some((leaving, mut addr)) = decode_member(e.data) else {
                self.stats.malformed_entries += 1;
                return;
            };
            if addr.ip().is_unspecified() && e.origin == sender {
                addr = from;
            }
            if !newer {
                self.stats.not_newer_entries += 1;
                return;
            }
            if !self.apply_membership(now, e, leaving, addr) {
                return;
            }
        } else {
            match self.members.get(&e.origin) {
                Some(m) if !m.state.is_live() && e.incarnation <= m.epoch => {
                    self.stats.tombstoned_entries += 1;
                    return;
                }
                None if !self.regs[&e.code].entries.contains_key(&e.origin)
                    && self.regs[&e.code].entries.len() >= self.cfg.max_nodes =>
                {
                    self.stats.too_many_nodes += 1;
                    return;
                }
                _ => {}
            }
            if !newer {
                self.stats.not_newer_entries += 1;
                return;
            }
        }
        let relay = e.ttl > 0;
        let rs = self.regs.get_mut(&e.code).expect("checked above");
        rs.entries.insert(
            e.origin,
            Stored {
                incarnation: e.incarnation,
                version: e.version,
                data: e.data.to_vec(),
                hops: e.ttl.saturating_sub(1),
                sends_left: if relay { self.cfg.relay_sends } else { 0 },
                updated: now,
            },
        );
        self.stats.entries_applied += 1;
        self.mark_dirty(e.code);
    }
}
