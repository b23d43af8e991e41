//! Direct messages: one authenticated datagram from this node to one live
//! member, for modules whose latency target a gossip round cannot meet
//! (the policy rollout: request, stage, activate, acknowledge).
//!
//! A direct datagram carries the normal header (sender, epoch, replay
//! sequence, MAC) with [`wire::FLAG_DIRECT`] and exactly one entry: the
//! module's registration code, this node as origin and its boot epoch, and
//! the payload. It is neither stored nor relayed: the receiver queues the
//! payload per code for [`Exchange::poll_direct`]. Delivery is best effort
//! like any UDP datagram; the module retransmits.

use headroom_clock::Timestamp;
use std::collections::{HashMap, VecDeque};

use super::wire::{self, Builder, WireEntry};
use super::{Exchange, ExchangeError, NodeId, MEMBERSHIP_CODE};

/// Messages held per registration code before new ones are dropped (a
/// module that stops polling cannot grow memory without bound).
pub const INBOX_LIMIT: usize = 4096;

/// One received direct message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectMessage {
    /// Sending node (authenticated by the pool key).
    pub from: NodeId,
    /// The sender's boot epoch.
    pub epoch: u32,
    /// Payload.
    pub data: Vec<u8>,
}

/// Counters of direct messages. All monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectStats {
    /// Direct datagrams queued for sending.
    pub sent: u64,
    /// Bytes of direct datagrams queued for sending.
    pub bytes_sent: u64,
    /// Direct messages delivered to a module inbox.
    pub received: u64,
    /// Not sent: destination unknown or not live.
    pub unknown_destination: u64,
    /// Dropped on receipt: code not registered here, membership code, or
    /// origin differing from the authenticated sender.
    pub rejected: u64,
    /// Dropped on receipt: the inbox of the code was full.
    pub inbox_full: u64,
}

/// Per-code queues of received direct messages.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    queues: HashMap<u8, VecDeque<DirectMessage>>,
    pub(super) stats: DirectStats,
}

impl Exchange {
    /// Largest payload [`Exchange::send_direct`] accepts with this MTU.
    pub fn max_direct_len(&self) -> usize {
        self.cfg
            .mtu
            .saturating_sub(wire::HEADER_LEN + wire::ENTRY_HEADER_LEN + wire::MAC_LEN)
    }

    /// Queues one datagram carrying `data` for node `to` (which must be a
    /// live member: its address comes from membership). `code` must be a
    /// registered module code. Sent with the next `poll_transmit`.
    pub fn send_direct(
        &mut self,
        now: Timestamp,
        to: NodeId,
        code: u8,
        data: &[u8],
    ) -> Result<(), ExchangeError> {
        if code == MEMBERSHIP_CODE {
            return Err(ExchangeError::ReservedCode(code));
        }
        if !self.regs.contains_key(&code) {
            return Err(ExchangeError::UnknownCode(code));
        }
        let max = self.max_direct_len();
        if data.len() > max {
            return Err(ExchangeError::EntryTooLarge {
                code,
                len: data.len(),
                max,
            });
        }
        let Some(addr) = self
            .members
            .get(&to)
            .filter(|m| m.state.is_live())
            .map(|m| m.addr)
        else {
            self.direct.stats.unknown_destination += 1;
            return Err(ExchangeError::UnknownNode(to));
        };
        let mut header = self.next_header(now);
        header.flags |= wire::FLAG_DIRECT;
        let mut b = Builder::new(&header, None, self.cfg.mtu);
        let pushed = b.push(&WireEntry {
            code,
            origin: self.cfg.node_id,
            incarnation: self.cfg.epoch,
            version: 0,
            ttl: 0,
            data,
        });
        debug_assert!(pushed, "size checked against max_direct_len");
        let bytes = b.finish(&self.auth);
        self.direct.stats.sent += 1;
        self.direct.stats.bytes_sent += bytes.len() as u64;
        self.queue(addr, bytes);
        Ok(())
    }

    /// Next received direct message for `code`, oldest first.
    pub fn poll_direct(&mut self, code: u8) -> Option<DirectMessage> {
        self.direct.queues.get_mut(&code)?.pop_front()
    }

    /// Direct message counters.
    pub fn direct_stats(&self) -> &DirectStats {
        &self.direct.stats
    }

    /// Queues the entries of an authenticated, fresh direct datagram.
    pub(super) fn handle_direct(&mut self, sender: NodeId, epoch: u32, entries: &[WireEntry<'_>]) {
        for e in entries {
            let ok = e.code != MEMBERSHIP_CODE
                && e.origin == sender
                && e.incarnation == epoch
                && self.regs.contains_key(&e.code);
            if !ok {
                self.direct.stats.rejected += 1;
                continue;
            }
            let q = self.direct.queues.entry(e.code).or_default();
            if q.len() >= INBOX_LIMIT {
                self.direct.stats.inbox_full += 1;
                continue;
            }
            q.push_back(DirectMessage {
                from: sender,
                epoch,
                data: e.data.to_vec(),
            });
            self.direct.stats.received += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{ExchangeConfig, Registration};
    use crate::sim::{addr_of, forge, heartbeat};

    const KEY: &[u8] = b"direct test key";

    fn node(id: NodeId, now: Timestamp) -> Exchange {
        let mut ex = Exchange::new(ExchangeConfig::new(id, 1, addr_of(id)), KEY, now);
        ex.register(
            3,
            Registration {
                period_ticks: 1,
                max_size: 64,
                flags: 0,
            },
        )
        .unwrap();
        ex
    }

    /// Two nodes that know each other as live.
    fn pair() -> (Exchange, Exchange, Timestamp) {
        let t = Timestamp::ZERO;
        let mut a = node(1, t);
        let mut b = node(2, t);
        a.handle_datagram(t, addr_of(2), &heartbeat(KEY, 2, 0))
            .unwrap();
        b.handle_datagram(t, addr_of(1), &heartbeat(KEY, 1, 0))
            .unwrap();
        assert_eq!(a.live_nodes(), [1, 2]);
        assert_eq!(b.live_nodes(), [1, 2]);
        (a, b, t)
    }

    #[test]
    fn direct_message_roundtrip_and_errors() {
        let (mut a, mut b, t) = pair();
        while a.poll_transmit().is_some() {}
        let max = a.max_direct_len();
        assert_eq!(max, 1400 - 29 - 20 - 16);
        a.send_direct(t, 2, 3, b"hello").unwrap();
        let tx = a.poll_transmit().unwrap();
        assert_eq!(tx.dst, addr_of(2));
        assert!(a.poll_transmit().is_none());
        // Not stored as a gossip entry, delivered once.
        let from = addr_of(1);
        b.handle_datagram(t, from, &tx.bytes).unwrap();
        let m = b.poll_direct(3).unwrap();
        assert_eq!((m.from, m.epoch, m.data.as_slice()), (1, 1, &b"hello"[..]));
        assert!(b.poll_direct(3).is_none());
        assert_eq!(b.entries(3).count(), 0);
        // A replay of the same datagram is refused by the replay window.
        assert!(b.handle_datagram(t, from, &tx.bytes).is_err());
        assert!(b.poll_direct(3).is_none());
        assert_eq!(b.direct_stats().received, 1);
        // Local errors.
        assert_eq!(
            a.send_direct(t, 9, 3, b"x"),
            Err(ExchangeError::UnknownNode(9))
        );
        assert_eq!(
            a.send_direct(t, 2, 4, b"x"),
            Err(ExchangeError::UnknownCode(4))
        );
        assert_eq!(
            a.send_direct(t, 2, 0, b"x"),
            Err(ExchangeError::ReservedCode(0))
        );
        assert!(matches!(
            a.send_direct(t, 2, 3, &vec![0; max + 1]),
            Err(ExchangeError::EntryTooLarge { .. })
        ));
        a.send_direct(t, 2, 3, &vec![7; max]).unwrap();
        let tx = a.poll_transmit().unwrap();
        assert_eq!(tx.bytes.len(), 1400);
        b.handle_datagram(t, from, &tx.bytes).unwrap();
        assert_eq!(b.poll_direct(3).unwrap().data.len(), max);
        assert_eq!(a.direct_stats().unknown_destination, 1);
    }

    #[test]
    fn direct_entries_must_match_the_sender() {
        let (_, mut b, t) = pair();
        // Claims another origin, then an unregistered code, then a good one.
        let entries: Vec<WireEntry> = [(3u8, 7u32), (9, 1), (0, 1), (3, 1)]
            .into_iter()
            .map(|(code, origin)| WireEntry {
                code,
                origin,
                incarnation: 1,
                version: 0,
                ttl: 0,
                data: b"m",
            })
            .collect();
        let d = forge(KEY, wire::FLAG_DIRECT, 1, 1, 2_000_000, &entries);
        b.handle_datagram(t, addr_of(1), &d).unwrap();
        assert_eq!(b.direct_stats().rejected, 3);
        assert_eq!(b.poll_direct(3).unwrap().from, 1);
        assert!(b.poll_direct(3).is_none());
        // Nothing leaked into the gossip view.
        assert_eq!(b.entries(3).count(), 0);
    }
}
