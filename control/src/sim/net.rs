//! The simulated wire shared by the simulations: seeded loss, a uniform
//! one-way delay (and so reordering) and partitions, over the addresses of
//! [`addr_of`]. A run is a pure function of the seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::SimConfig;
use crate::exchange::NodeId;

/// Address of simulated node `id`.
pub fn addr_of(id: NodeId) -> SocketAddr {
    let [_, _, hi, lo] = id.to_be_bytes();
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, hi, lo), 7000))
}

/// The node an address of [`addr_of`] belongs to.
pub fn id_of(addr: SocketAddr) -> Option<NodeId> {
    match addr {
        SocketAddr::V4(a) if a.port() == 7000 => {
            let o = a.ip().octets();
            Some(u32::from(o[2]) << 8 | u32::from(o[3]))
        }
        _ => None,
    }
}

/// A datagram on the wire.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct InFlight {
    /// Arrival time.
    pub at: Duration,
    order: u64,
    /// Sender address.
    pub from: SocketAddr,
    /// Destination node.
    pub to: NodeId,
    /// Payload.
    pub bytes: Vec<u8>,
}

/// What [`Network::next_step`] found.
#[derive(Debug)]
pub enum Step {
    /// A datagram reaches its destination.
    Deliver(InFlight),
    /// A node's timeout expires.
    Timeout(NodeId),
}

/// Loss, delay and partitions between `nodes` nodes (ids 1..=nodes).
#[derive(Debug)]
pub struct Network {
    nodes: usize,
    loss: f64,
    min_delay: Duration,
    max_delay: Duration,
    rng: SmallRng,
    /// Partition group per node; datagrams cross only within a group.
    groups: Vec<u8>,
    queue: BinaryHeap<Reverse<InFlight>>,
    order: u64,
}

impl Network {
    /// The network of `cfg` (nodes, loss, delays), its RNG seeded with `seed`.
    pub fn new(cfg: &SimConfig, seed: u64) -> Self {
        Self {
            nodes: cfg.nodes,
            loss: cfg.loss,
            min_delay: cfg.min_delay,
            max_delay: cfg.max_delay,
            rng: SmallRng::seed_from_u64(seed),
            groups: vec![0; cfg.nodes],
            queue: BinaryHeap::new(),
            order: 0,
        }
    }

    /// Puts a datagram sent at `now` on the wire, unless it is lost or its
    /// destination is not a simulated node.
    pub fn send(&mut self, now: Duration, from: SocketAddr, dst: SocketAddr, bytes: Vec<u8>) {
        let Some(to) = id_of(dst) else { return };
        if to == 0 || to as usize > self.nodes {
            return;
        }
        if self.rng.gen_bool(self.loss) {
            return;
        }
        let span = self.max_delay.saturating_sub(self.min_delay);
        let delay = self.min_delay + span.mul_f64(self.rng.gen::<f64>());
        self.order += 1;
        self.queue.push(Reverse(InFlight {
            at: now + delay,
            order: self.order,
            from,
            to,
            bytes,
        }));
    }

    /// The next thing to happen no later than `until`: the next datagram to
    /// arrive, or the earliest node timeout `timeout` (time, node) if that is
    /// sooner. Datagrams a partition stops are dropped on the way. None when
    /// nothing is due by `until`.
    pub fn next_step(
        &mut self,
        timeout: Option<(Duration, NodeId)>,
        until: Duration,
    ) -> Option<(Duration, Step)> {
        loop {
            let pkt = self.next_at();
            let due = match (pkt, timeout) {
                (Some(p), Some((t, _))) => p.min(t),
                (Some(p), None) => p,
                (None, Some((t, _))) => t,
                (None, None) => return None,
            };
            if due > until {
                return None;
            }
            if pkt == Some(due) {
                let (p, same_side) = self.pop().expect("peeked");
                if same_side {
                    return Some((due, Step::Deliver(p)));
                }
            } else if let Some((_, id)) = timeout {
                return Some((due, Step::Timeout(id)));
            }
        }
    }

    /// When the next datagram arrives.
    pub fn next_at(&self) -> Option<Duration> {
        self.queue.peek().map(|Reverse(p)| p.at)
    }

    /// The next datagram, and whether it reaches its destination (false:
    /// a partition is in the way).
    pub fn pop(&mut self) -> Option<(InFlight, bool)> {
        let Reverse(p) = self.queue.pop()?;
        let side = |id: NodeId| self.groups[(id - 1) as usize];
        let crosses = match id_of(p.from) {
            Some(f) if f >= 1 && f as usize <= self.nodes => side(f) == side(p.to),
            _ => true,
        };
        Some((p, crosses))
    }

    /// Assigns partition groups (index id-1). All zeros = healed.
    pub fn partition(&mut self, groups: Vec<u8>) {
        assert_eq!(groups.len(), self.nodes);
        self.groups = groups;
    }

    /// Heals all partitions.
    pub fn heal(&mut self) {
        self.groups = vec![0; self.nodes];
    }

    /// Loses every datagram from `from` still on the wire.
    pub fn drop_from(&mut self, from: SocketAddr) {
        let q = std::mem::take(&mut self.queue);
        self.queue = q.into_iter().filter(|Reverse(p)| p.from != from).collect();
    }
}
