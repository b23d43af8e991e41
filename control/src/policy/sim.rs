//! Deterministic simulation of a pool running the exchange and the policy
//! state machine: simulated network (loss, delay and so reordering,
//! partitions), per-node clocks that disagree (each node's monotonic clock
//! has its own offset and rate, and its wall clock its own skew), kill,
//! restart from the node's persisted bytes, and a validator per node that
//! tests can make refuse documents.
//!
//! Each node's `Timestamp`s are its own: `local = base + offset + t * rate`
//! for global simulated time `t`, so no two nodes agree on "now". A run is
//! a pure function of its seed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use headroom_clock::Timestamp;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::summary::{self, NodeSummary, SUMMARY_CODE};
use super::{PolicyConfig, PolicyError, PolicyEvent, PolicyNode, ReqId, VersionId};
use crate::exchange::{Event, Exchange, ExchangeConfig, NodeId};
use crate::sim::net::{Network, Step};
use crate::sim::{addr_of, SimConfig, Simulation, SIM_KEY};

/// Wall-clock ms of global time 0 (2023-11-14).
const WALL_BASE_MS: u64 = 1_700_000_000_000;

/// Pool, network and clock parameters.
#[derive(Debug, Clone)]
pub struct PolicySimConfig {
    /// Nodes, seed, loss, delays, seeds, exchange tick.
    pub net: SimConfig,
    /// Monotonic clock offsets are uniform in `[0, max_offset)`.
    pub max_offset: Duration,
    /// Clock rates are uniform in `[1 - max_drift, 1 + max_drift]`.
    pub max_drift: f64,
    /// Wall clocks are off by up to this many ms either way.
    pub max_wall_skew_ms: u64,
    /// Adjusts each node's policy config before it starts.
    pub tweak: fn(&mut PolicyConfig),
    /// Adjusts each node's exchange config before it starts.
    pub exchange_tweak: fn(&mut ExchangeConfig),
    /// Initial policy of every node's node file.
    pub initial: Option<Vec<u8>>,
    /// Register node summaries ([`SUMMARY_CODE`], re-sent every 2 s).
    pub summaries: bool,
    /// Also publish an 8-byte [`crate::sim::DEMAND`] entry per node, as the
    /// bandwidth allocator does (a baseline to compare bandwidth with).
    pub demand: bool,
}

fn no_tweak(_: &mut PolicyConfig) {}

impl PolicySimConfig {
    /// `nodes` nodes with the exchange defaults of [`SimConfig::new`] (1%
    /// loss, 0.2-2 ms delay, 100 ms ticks), clocks up to an hour apart with
    /// up to 1% drift, wall clocks up to 10 minutes apart.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            net: SimConfig::new(nodes, seed),
            max_offset: Duration::from_secs(3600),
            max_drift: 0.01,
            max_wall_skew_ms: 600_000,
            tweak: no_tweak,
            exchange_tweak: |_| {},
            initial: None,
            summaries: false,
            demand: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Clock {
    offset: Duration,
    rate: f64,
    wall_skew_ms: i64,
}

struct SimNode {
    ex: Exchange,
    pol: PolicyNode,
}

/// The simulation.
pub struct PolicySim {
    /// Parameters.
    pub cfg: PolicySimConfig,
    base: Timestamp,
    now: Duration,
    net: Network,
    nodes: Vec<Option<SimNode>>,
    clocks: Vec<Clock>,
    epochs: Vec<u32>,
    /// What each node last asked to persist (survives kill and restart).
    pub disks: Vec<Option<Vec<u8>>>,
    /// Byte strings each node's validator refuses (substring match).
    refuse: Vec<Arc<Mutex<Vec<Vec<u8>>>>>,
    wakes: Vec<Option<Duration>>,
    /// Policy events per node (index id-1) with the global time they surfaced.
    pub events: Vec<Vec<(Duration, PolicyEvent)>>,
    /// Membership events per node (index id-1): joins, failures, leaves,
    /// master changes, with the global time they surfaced.
    pub membership: Vec<Vec<(Duration, Event)>>,
    /// Datagrams delivered (after loss and partitions).
    pub delivered: u64,
}

impl std::fmt::Debug for PolicySim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySim")
            .field("nodes", &self.cfg.net.nodes)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// The validator of simulated node `id`: refuses documents containing
/// "invalid" (everywhere) or any of the node's own refusal markers.
fn validator(id: NodeId, refuse: Arc<Mutex<Vec<Vec<u8>>>>) -> Box<dyn super::Validator + Send> {
    Box::new(move |doc: &[u8]| {
        let has = |pat: &[u8]| !pat.is_empty() && doc.windows(pat.len()).any(|w| w == pat);
        if has(b"invalid") {
            return Err("policy.toml:1: jobs: invalid document".into());
        }
        let refuse = refuse.lock().expect("not poisoned");
        for p in refuse.iter() {
            if has(p) {
                return Err(format!(
                    "policy.toml:2: rules: node {id} cannot compile {:?}",
                    String::from_utf8_lossy(p)
                ));
            }
        }
        Ok(())
    })
}

impl PolicySim {
    /// Starts every node at global time 0 (each at its own local time).
    pub fn new(cfg: PolicySimConfig) -> Self {
        let n = cfg.net.nodes;
        let mut rng = SmallRng::seed_from_u64(cfg.net.seed ^ 0x000c_10c4);
        let clocks = (0..n)
            .map(|_| Clock {
                offset: cfg.max_offset.mul_f64(rng.gen::<f64>()),
                rate: 1.0 + cfg.max_drift * (2.0 * rng.gen::<f64>() - 1.0),
                wall_skew_ms: rng
                    .gen_range(-(cfg.max_wall_skew_ms as i64)..=cfg.max_wall_skew_ms as i64),
            })
            .collect();
        let mut sim = Self {
            base: Timestamp::ZERO,
            now: Duration::ZERO,
            net: Network::new(&cfg.net, rng.gen()),
            nodes: (0..n).map(|_| None).collect(),
            clocks,
            epochs: vec![1; n],
            disks: vec![None; n],
            refuse: (0..n).map(|_| Arc::default()).collect(),
            wakes: vec![None; n],
            events: vec![Vec::new(); n],
            membership: vec![Vec::new(); n],
            delivered: 0,
            cfg,
        };
        for id in 1..=n as NodeId {
            sim.start(id).expect("start");
        }
        sim
    }

    fn idx(id: NodeId) -> usize {
        (id - 1) as usize
    }

    /// Node `id`'s monotonic clock at global time `t`.
    fn local(&self, id: NodeId, t: Duration) -> Timestamp {
        let c = self.clocks[Self::idx(id)];
        self.base + c.offset + t.mul_f64(c.rate)
    }

    /// The first global time at which node `id`'s clock reads `at`.
    fn global(&self, id: NodeId, at: Timestamp) -> Duration {
        let c = self.clocks[Self::idx(id)];
        let d = at.saturating_duration_since(self.base + c.offset);
        let mut t = Duration::from_secs_f64(d.as_secs_f64() / c.rate);
        while self.local(id, t) < at {
            t += Duration::from_micros(1);
        }
        t
    }

    fn wall_ms(&self, id: NodeId) -> u64 {
        let skew = self.clocks[Self::idx(id)].wall_skew_ms;
        (WALL_BASE_MS + self.now.as_millis() as u64).saturating_add_signed(skew)
    }

    fn start(&mut self, id: NodeId) -> Result<(), PolicyError> {
        let i = Self::idx(id);
        let net = &self.cfg.net;
        let mut c = ExchangeConfig::new(id, self.epochs[i], addr_of(id));
        c.tick = net.tick;
        c.seeds = (1..=net.seeds.min(net.nodes) as NodeId)
            .map(addr_of)
            .collect();
        c.rng_seed = net.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ u64::from(id) << 32
            ^ u64::from(self.epochs[i]);
        (self.cfg.exchange_tweak)(&mut c);
        let now = self.local(id, self.now);
        let mut ex = Exchange::new(c, SIM_KEY, now);
        if self.cfg.demand {
            let reg = crate::exchange::Registration {
                period_ticks: 1,
                max_size: 8,
                flags: 0,
            };
            ex.register(crate::sim::DEMAND, reg)?;
            ex.set_local(now, crate::sim::DEMAND, &u64::from(id).to_be_bytes())?;
        }
        if self.cfg.summaries {
            let reg = summary::registration(Duration::from_secs(2), net.tick, summary::SUMMARY_MAX);
            ex.register(SUMMARY_CODE, reg)?;
        }
        let mut pc = PolicyConfig::new(id, self.epochs[i]);
        pc.initial = self.cfg.initial.clone();
        (self.cfg.tweak)(&mut pc);
        let mut pol = PolicyNode::new(pc, validator(id, self.refuse[i].clone()), &mut ex, now)?;
        if let Some(b) = &self.disks[i] {
            pol.restore(b)?;
        }
        self.nodes[i] = Some(SimNode { ex, pol });
        self.process(id, |_, _| {});
        Ok(())
    }

    /// Makes node `id`'s validator refuse documents containing `marker`.
    pub fn refuse(&mut self, id: NodeId, marker: &[u8]) {
        self.refuse[Self::idx(id)]
            .lock()
            .expect("not poisoned")
            .push(marker.to_vec());
    }

    /// Node `id`'s policy state machine, if running.
    pub fn node(&self, id: NodeId) -> Option<&PolicyNode> {
        self.nodes[Self::idx(id)].as_ref().map(|n| &n.pol)
    }

    /// Node `id`'s exchange, if running.
    pub fn exchange(&self, id: NodeId) -> Option<&Exchange> {
        self.nodes[Self::idx(id)].as_ref().map(|n| &n.ex)
    }

    /// Ids of running nodes.
    pub fn running(&self) -> Vec<NodeId> {
        (1..=self.cfg.net.nodes as NodeId)
            .filter(|id| self.nodes[Self::idx(*id)].is_some())
            .collect()
    }

    /// Node `id`'s active version.
    pub fn active(&self, id: NodeId) -> Option<VersionId> {
        self.node(id).and_then(|p| p.active().map(|(m, _)| m.id))
    }

    /// Whether every running node (except `skip`) runs `v`.
    pub fn all_active(&self, v: VersionId, skip: &[NodeId]) -> bool {
        self.running()
            .iter()
            .filter(|id| !skip.contains(id))
            .all(|id| self.active(*id) == Some(v))
    }

    /// Whether every running node's membership view is the running set.
    pub fn membership_converged(&self) -> bool {
        let running = self.running();
        running.iter().all(|id| {
            self.exchange(*id)
                .is_some_and(|ex| ex.live_nodes() == running)
        })
    }

    /// Whether every running node is current.
    pub fn all_current(&self) -> bool {
        self.running()
            .iter()
            .all(|id| self.node(*id).is_some_and(|p| p.is_current()))
    }

    /// `apply` on node `id` (at its local time and wall clock).
    pub fn apply(
        &mut self,
        id: NodeId,
        doc: &[u8],
        user: &str,
        message: &str,
    ) -> Result<ReqId, PolicyError> {
        let (now, wall) = (self.local(id, self.now), self.wall_ms(id));
        let n = self.nodes[Self::idx(id)].as_mut().expect("running");
        let r = n.pol.apply(now, wall, doc, user, message);
        self.process(id, |_, _| {});
        r
    }

    /// `rollback` on node `id`.
    pub fn rollback(&mut self, id: NodeId, seq: u64, user: &str) -> Result<ReqId, PolicyError> {
        let (now, wall) = (self.local(id, self.now), self.wall_ms(id));
        let n = self.nodes[Self::idx(id)].as_mut().expect("running");
        let r = n.pol.rollback(now, wall, seq, user, "rollback");
        self.process(id, |_, _| {});
        r
    }

    /// Publishes node `id`'s summary (needs `summaries` in the config).
    pub fn set_summary(&mut self, id: NodeId, s: &NodeSummary) {
        let now = self.local(id, self.now);
        let b = s.encode(summary::SUMMARY_MAX);
        self.process(id, |n, _| {
            let _ = n.ex.set_local(now, SUMMARY_CODE, &b);
        });
    }

    /// Whether every running node sees every running node's summary with
    /// `pred` true.
    pub fn summaries_seen(&self, pred: impl Fn(NodeId, &NodeSummary) -> bool) -> bool {
        let running = self.running();
        running.iter().all(|id| {
            let ex = self.exchange(*id).expect("running");
            let now = self.local(*id, self.now);
            let view = summary::pool_view(ex, SUMMARY_CODE, now);
            running.iter().all(|r| {
                view.iter()
                    .find(|p| p.node == *r)
                    .and_then(|p| p.summary.as_ref())
                    .is_some_and(|s| pred(*r, s))
            })
        })
    }

    /// Kills node `id` abruptly; its disk survives.
    pub fn kill(&mut self, id: NodeId) {
        self.nodes[Self::idx(id)] = None;
        self.wakes[Self::idx(id)] = None;
    }

    /// Kills node `id` and loses the datagrams it sent that are still in
    /// flight (a crash in the middle of a fan-out).
    pub fn crash(&mut self, id: NodeId) {
        self.kill(id);
        self.net.drop_from(addr_of(id));
    }

    /// Restarts node `id` (new boot epoch) from its disk.
    pub fn restart(&mut self, id: NodeId) -> Result<(), PolicyError> {
        self.epochs[Self::idx(id)] += 1;
        self.start(id)
    }

    /// Assigns partition groups (index id-1).
    pub fn partition(&mut self, groups: Vec<u8>) {
        self.net.partition(groups);
    }

    /// Heals all partitions.
    pub fn heal(&mut self) {
        self.net.heal();
    }

    /// Bytes sent by all running nodes' exchanges so far (gossip and direct).
    pub fn bytes_sent(&self) -> u64 {
        self.nodes
            .iter()
            .flatten()
            .map(|n| n.ex.stats().bytes_sent)
            .sum()
    }

    /// Runs `f` on node `id` at its local time, then the policy pass, and
    /// moves its output onto the wire and into the logs.
    fn process(&mut self, id: NodeId, f: impl FnOnce(&mut SimNode, Timestamp)) {
        let i = Self::idx(id);
        let now_l = self.local(id, self.now);
        let wall = self.wall_ms(id);
        let Some(n) = self.nodes[i].as_mut() else {
            return;
        };
        f(n, now_l);
        while let Some(ev) = n.ex.poll_event() {
            if !matches!(ev, Event::ViewChanged(_) | Event::SnapshotReady(_)) {
                self.membership[i].push((self.now, ev));
            }
            n.pol.on_exchange_event(&ev);
        }
        n.pol.poll(now_l, wall, &mut n.ex);
        while let Some(e) = n.pol.poll_event() {
            self.events[i].push((self.now, e));
        }
        if let Some(b) = n.pol.take_persist() {
            self.disks[i] = Some(b);
        }
        let mut out = Vec::new();
        while let Some(t) = n.ex.poll_transmit() {
            out.push(t);
        }
        let wake = [n.ex.poll_timeout(), n.pol.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        self.wakes[i] = wake.map(|w| self.global(id, w).max(self.now));
        let from = addr_of(id);
        for t in out {
            self.net.send(self.now, from, t.dst, t.bytes);
        }
    }

    /// Global times at which running nodes activated `v` (one per node).
    pub fn activations(&self, v: VersionId) -> Vec<(NodeId, Duration)> {
        let mut out = Vec::new();
        for (i, evs) in self.events.iter().enumerate() {
            if let Some((t, _)) = evs
                .iter()
                .find(|(_, e)| matches!(e, PolicyEvent::Activated { id, .. } if *id == v))
            {
                out.push((i as NodeId + 1, *t));
            }
        }
        out
    }

    /// `Failed` events seen since `since` (a false failure is a bug here).
    pub fn failures_since(&self, since: Duration) -> Vec<(NodeId, NodeId)> {
        let mut v = Vec::new();
        for (i, evs) in self.membership.iter().enumerate() {
            for (t, e) in evs {
                if let Event::Failed(n) = e {
                    if *t >= since {
                        v.push((i as NodeId + 1, *n));
                    }
                }
            }
        }
        v
    }

    /// Sends raw bytes to node `to` as if from `from`'s address.
    pub fn inject(&mut self, to: NodeId, from: NodeId, bytes: &[u8]) {
        let a = addr_of(from);
        self.process(to, |n, now| {
            let _ = n.ex.handle_datagram(now, a, bytes);
        });
    }

    /// Events of node `id` matching `f`.
    pub fn events_of<'a>(
        &'a self,
        id: NodeId,
        f: impl Fn(&PolicyEvent) -> bool + 'a,
    ) -> impl Iterator<Item = &'a PolicyEvent> + 'a {
        self.events[Self::idx(id)]
            .iter()
            .map(|(_, e)| e)
            .filter(move |e| f(e))
    }

    /// The version an apply request was numbered as, from the requester's events.
    pub fn assigned(&self, id: NodeId, req: ReqId) -> Option<VersionId> {
        self.events_of(id, |_| true).find_map(|e| match e {
            PolicyEvent::ApplyAssigned { req: r, id } if *r == req => Some(*id),
            _ => None,
        })
    }

    /// The result of an apply request, from the requester's events.
    pub fn result(&self, id: NodeId, req: ReqId) -> Option<&super::ApplyResult> {
        self.events_of(id, |_| true).find_map(|e| match e {
            PolicyEvent::ApplyFinished { req: r, result } if *r == req => Some(result),
            _ => None,
        })
    }
}

impl Simulation for PolicySim {
    /// Current global simulated time.
    fn now(&self) -> Duration {
        self.now
    }

    /// Runs until global time `until`.
    fn run_until(&mut self, until: Duration) {
        loop {
            let timeout = self
                .wakes
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.map(|w| (w, i as NodeId + 1)))
                .min();
            let Some((at, step)) = self.net.next_step(timeout, until) else {
                break;
            };
            self.now = self.now.max(at);
            match step {
                Step::Deliver(p) => {
                    if self.nodes[Self::idx(p.to)].is_some() {
                        self.delivered += 1;
                        self.process(p.to, |n, now| {
                            let _ = n.ex.handle_datagram(now, p.from, &p.bytes);
                        });
                    }
                }
                Step::Timeout(id) => self.process(id, |n, now| n.ex.handle_timeout(now)),
            }
        }
        self.now = self.now.max(until);
    }
}
