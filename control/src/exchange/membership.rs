//! Membership: heartbeats (the node's own code-0 entry), suspicion and
//! failure by heartbeat age, tombstones, graceful leaves, probing of seeds and
//! failed nodes (partition healing), and the master (lowest live id).

use super::*;

pub(crate) fn encode_member(addr: SocketAddr, leaving: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(MEMBER_ENTRY_MAX);
    v.push(if leaving { MEMBER_LEAVING } else { 0 });
    match addr.ip() {
        IpAddr::V4(ip) => {
            v.push(4);
            v.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            v.push(6);
            v.extend_from_slice(&ip.octets());
        }
    }
    v.extend_from_slice(&addr.port().to_be_bytes());
    v
}

pub(super) fn decode_member(b: &[u8]) -> Option<(bool, SocketAddr)> {
    let (&flags, rest) = b.split_first()?;
    let (&fam, rest) = rest.split_first()?;
    let (ip, rest): (IpAddr, &[u8]) = match fam {
        4 if rest.len() == 6 => {
            let o: [u8; 4] = rest[..4].try_into().ok()?;
            (Ipv4Addr::from(o).into(), &rest[4..])
        }
        6 if rest.len() == 18 => {
            let o: [u8; 16] = rest[..16].try_into().ok()?;
            (Ipv6Addr::from(o).into(), &rest[16..])
        }
        _ => return None,
    };
    let port = u16::from_be_bytes([rest[0], rest[1]]);
    Some((flags & MEMBER_LEAVING != 0, SocketAddr::new(ip, port)))
}

impl Exchange {
    pub(super) fn live_count(&self) -> usize {
        self.members.values().filter(|m| m.state.is_live()).count()
    }

    pub(super) fn bump_heartbeat(&mut self, now: Timestamp, leaving: bool) {
        let ttl = self.ttl();
        let sends = self.cfg.own_sends.max(1);
        let id = self.cfg.node_id;
        let epoch = self.cfg.epoch;
        let up = self.uptime_ms(now);
        let data = encode_member(self.cfg.advertise, leaving);
        let rs = self.regs.get_mut(&MEMBERSHIP_CODE).expect("membership reg");
        let version = rs
            .entries
            .get(&id)
            .map_or(up.max(1), |e| up.max(e.version + 1));
        rs.entries.insert(
            id,
            Stored {
                incarnation: epoch,
                version,
                data,
                hops: ttl,
                sends_left: sends,
                updated: now,
            },
        );
        self.next_hb = now + self.cfg.heartbeat_interval;
    }

    /// A seed or failed node that is not currently live, so partitions heal
    /// even when every peer on the other side has been declared failed.
    pub(super) fn pick_probe(&mut self) -> Option<SocketAddr> {
        let live: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|m| m.state.is_live())
            .map(|m| m.addr)
            .collect();
        let cands: Vec<SocketAddr> = self
            .cfg
            .seeds
            .iter()
            .copied()
            .chain(
                self.members
                    .values()
                    .filter(|m| m.state == MemberState::Failed)
                    .map(|m| m.addr),
            )
            .filter(|a| *a != self.cfg.advertise && !live.contains(a))
            .collect();
        cands.choose(&mut self.rng).copied()
    }

    pub(super) fn check_members(&mut self, now: Timestamp) {
        let mut failed = Vec::new();
        let mut expired = Vec::new();
        // Losing datagrams here recently: the silence may be ours.
        let lossy = self
            .last_loss
            .is_some_and(|t| now.saturating_duration_since(t) < self.cfg.dead_after);
        let grace = if lossy {
            self.cfg.loss_grace
        } else {
            Duration::ZERO
        };
        for (n, m) in self.members.iter_mut() {
            match m.state {
                MemberState::Alive | MemberState::Suspect => {
                    let silent = now.saturating_duration_since(m.last_heard);
                    if silent >= self.cfg.dead_after && silent < self.cfg.dead_after + grace {
                        m.state = MemberState::Suspect;
                        self.stats.failures_held += 1;
                    } else if silent >= self.cfg.dead_after {
                        m.state = MemberState::Failed;
                        m.until = now + self.cfg.tombstone_for;
                        failed.push(*n);
                    } else if silent >= self.cfg.suspect_after {
                        m.state = MemberState::Suspect;
                    }
                }
                MemberState::Failed | MemberState::Left => {
                    if now >= m.until {
                        expired.push(*n);
                    }
                }
            }
        }
        for n in failed {
            self.drop_entries_of(n, false);
            self.events.push_back(Event::Failed(n));
        }
        for n in expired {
            self.members.remove(&n);
            self.replay.remove(&n);
            self.drop_entries_of(n, true);
        }
        // Entries relayed for an origin whose heartbeat never arrived (or
        // whose member record expired) would otherwise stay forever.
        let (id, horizon) = (self.cfg.node_id, self.cfg.tombstone_for);
        let members = &self.members;
        for rs in self.regs.values_mut() {
            rs.entries.retain(|n, e| {
                *n == id
                    || members.contains_key(n)
                    || now.saturating_duration_since(e.updated) < horizon
            });
        }
    }

    /// Removes a node's module entries (and its membership entry if `all`).
    pub(super) fn drop_entries_of(&mut self, n: NodeId, all: bool) {
        for (code, rs) in self.regs.iter_mut() {
            if *code == MEMBERSHIP_CODE && !all {
                continue;
            }
            rs.entries.remove(&n);
        }
        self.mark_all_dirty();
    }

    /// Updates the member table for a newer heartbeat; false = reject entry.
    pub(super) fn apply_membership(
        &mut self,
        now: Timestamp,
        e: &WireEntry<'_>,
        leaving: bool,
        addr: SocketAddr,
    ) -> bool {
        let dead_ms = self.cfg.dead_after.as_millis() as u64;
        let tomb = now + self.cfg.tombstone_for;
        let n = e.origin;
        match self.members.get_mut(&n) {
            None => {
                if self.members.len() >= self.cfg.max_nodes {
                    self.stats.too_many_nodes += 1;
                    return false;
                }
                let state = if leaving {
                    MemberState::Left
                } else {
                    MemberState::Alive
                };
                self.members.insert(
                    n,
                    Member {
                        epoch: e.incarnation,
                        hb_version: e.version,
                        addr,
                        last_heard: now,
                        state,
                        until: tomb,
                    },
                );
                if !leaving {
                    self.events.push_back(Event::Joined(n));
                    self.mark_all_dirty();
                }
                true
            }
            Some(m) => {
                let restarted = e.incarnation > m.epoch;
                match m.state {
                    MemberState::Alive | MemberState::Suspect => {
                        if restarted {
                            // Module entries of the old incarnation are obsolete.
                            for (code, rs) in self.regs.iter_mut() {
                                if *code != MEMBERSHIP_CODE {
                                    rs.entries.remove(&n);
                                }
                            }
                        }
                        m.epoch = e.incarnation;
                        m.hb_version = e.version;
                        m.addr = addr;
                        m.last_heard = now;
                        if leaving {
                            m.state = MemberState::Left;
                            m.until = tomb;
                            self.events.push_back(Event::Left(n));
                            self.drop_entries_of(n, false);
                        } else {
                            m.state = MemberState::Alive;
                        }
                        if restarted {
                            // Restarted before we noticed it was gone: its
                            // state is new, so report it like a fresh join.
                            if !leaving {
                                self.events.push_back(Event::Joined(n));
                            }
                            self.mark_all_dirty();
                        }
                        true
                    }
                    MemberState::Failed | MemberState::Left => {
                        let resurrect = !leaving
                            && (restarted
                                || (m.state == MemberState::Failed
                                    && e.incarnation == m.epoch
                                    && e.version > m.hb_version.saturating_add(dead_ms)));
                        if !resurrect {
                            self.stats.tombstoned_entries += 1;
                            return false;
                        }
                        if restarted {
                            for (code, rs) in self.regs.iter_mut() {
                                if *code != MEMBERSHIP_CODE {
                                    rs.entries.remove(&n);
                                }
                            }
                        }
                        m.epoch = e.incarnation;
                        m.hb_version = e.version;
                        m.addr = addr;
                        m.last_heard = now;
                        m.state = MemberState::Alive;
                        self.events.push_back(Event::Joined(n));
                        self.mark_all_dirty();
                        true
                    }
                }
            }
        }
    }
}
