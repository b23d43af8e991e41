//! Deterministic network simulation for the exchange: simulated time, a
//! seeded RNG, loss, delay (and hence reordering), partitions, node kill and
//! restart, and datagram capture / injection for attack tests.
//!
//! Every node is a real [`Exchange`] state machine; only the network and the
//! clock are simulated, so a run is a pure function of its seed.
//!
//! Measured with `cargo run --release -p headroom-control --example
//! exchange_sizing` (default config: 100 ms tick, 1400-byte MTU, 1% loss,
//! 0.2-2 ms delay, seed 42; one 8-byte value per node):
//!
//! | nodes | join | one change everywhere | all change at once | idle B/node/s | busy B/node/s | kill detected by all |
//! |---|---|---|---|---|---|---|
//! | 3 | 120 ms | 100 ms | 100 ms | 3.5 k | 4.5 k | 1.54 s |
//! | 16 | 190 ms | 130 ms | 200 ms | 19 k | 38 k | 1.52 s |
//! | 64 | 700 ms | 220 ms | 410 ms | 44 k | 96 k | 1.55 s |
//! | 128 | 740 ms | 160 ms | 810 ms | 74 k | 111 k | 1.76 s |
//!
//! "busy" = every node changes its value every tick (MTU-bound at 128).
//! No false failure in any run.

pub mod net;

use headroom_clock::Timestamp;
use std::net::SocketAddr;
use std::time::Duration;

use crate::exchange::wire::{Authenticator, Builder, Header, WireEntry};
use crate::exchange::{Event, Exchange, ExchangeConfig, NodeId, Registration};
pub use net::{addr_of, id_of};
use net::{Network, Step};

/// Pool key used by simulated nodes.
pub const SIM_KEY: &[u8] = b"simulated pool key";
/// Registration code used for the per-node demand value.
pub const DEMAND: u8 = 1;
/// Registration code used for snapshot tests.
pub const FROZEN: u8 = 2;

/// A well-formed datagram signed with `key`, claiming `sender` in boot
/// epoch `epoch` (for tests and fuzzing that forge or inject traffic).
pub fn forge(
    key: &[u8],
    flags: u8,
    sender: NodeId,
    epoch: u32,
    seq: u64,
    entries: &[WireEntry<'_>],
) -> Vec<u8> {
    let h = Header {
        flags,
        sender,
        epoch,
        seq,
        timestamp_ms: 0,
    };
    let mut b = Builder::new(&h, None, 65_000);
    for e in entries {
        assert!(b.push(e), "forged entries fit in one datagram");
    }
    b.finish(&Authenticator::new(key))
}

/// Simulated node `id`'s heartbeat (epoch 1, incarnation 1, address
/// [`addr_of`]) signed with `key`: makes `id` a live member to the receiver.
pub fn heartbeat(key: &[u8], id: NodeId, seq: u64) -> Vec<u8> {
    let member = crate::exchange::encode_member(addr_of(id), false);
    let entry = WireEntry {
        code: crate::exchange::MEMBERSHIP_CODE,
        origin: id,
        incarnation: 1,
        version: 1,
        ttl: 0,
        data: &member,
    };
    forge(key, 0, id, 1, seq, &[entry])
}

/// Simulated time, shared by the simulations of this crate: only
/// [`Simulation::run_until`] advances it.
pub trait Simulation {
    /// Simulated time since the start.
    fn now(&self) -> Duration;

    /// Runs until simulated time `until`.
    fn run_until(&mut self, until: Duration);

    /// Runs for `d` more simulated time.
    fn run_for(&mut self, d: Duration) {
        let t = self.now() + d;
        self.run_until(t);
    }

    /// Runs in steps of `step` until `pred` holds or `limit` elapses; returns
    /// the time it took, or `None` on timeout.
    fn run_until_pred(
        &mut self,
        step: Duration,
        limit: Duration,
        mut pred: impl FnMut(&Self) -> bool,
    ) -> Option<Duration>
    where
        Self: Sized,
    {
        let start = self.now();
        while self.now() - start <= limit {
            if pred(self) {
                return Some(self.now() - start);
            }
            self.run_for(step);
        }
        None
    }
}

/// Network and pool parameters.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of nodes (ids 1..=n).
    pub nodes: usize,
    /// RNG seed for the network (nodes derive theirs from it).
    pub seed: u64,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Minimum one-way delay.
    pub min_delay: Duration,
    /// Maximum one-way delay (uniform in between, which reorders).
    pub max_delay: Duration,
    /// How many of the first nodes every node uses as seeds.
    pub seeds: usize,
    /// Exchange tick.
    pub tick: Duration,
}

impl SimConfig {
    /// `nodes` nodes, 1% loss, 0.2-2 ms delay, 3 seeds, 100 ms ticks.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seed,
            loss: 0.01,
            min_delay: Duration::from_micros(200),
            max_delay: Duration::from_millis(2),
            seeds: 3,
            tick: Duration::from_millis(100),
        }
    }
}

/// A datagram captured on the simulated wire.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Sender address.
    pub from: SocketAddr,
    /// Destination node.
    pub to: NodeId,
    /// Payload.
    pub bytes: Vec<u8>,
}

/// The simulation.
#[derive(Debug)]
pub struct Sim {
    /// Parameters.
    pub cfg: SimConfig,
    base: Timestamp,
    now: Duration,
    net: Network,
    nodes: Vec<Option<Exchange>>,
    epochs: Vec<u32>,
    /// Events per node (index id-1) with the simulated time they surfaced.
    pub events: Vec<Vec<(Duration, Event)>>,
    /// When set, every delivered datagram is recorded here.
    pub capture: Option<Vec<Captured>>,
    /// Optional hook to adjust each node's config before it starts.
    tweak: fn(&mut ExchangeConfig),
}

fn no_tweak(_: &mut ExchangeConfig) {}

impl Sim {
    /// Starts all nodes at time 0, each registering [`DEMAND`] (8 bytes) and
    /// [`FROZEN`] (8 bytes, `NEEDS_SNAPSHOT`).
    pub fn new(cfg: SimConfig) -> Self {
        Self::with_tweak(cfg, no_tweak)
    }

    /// Like [`Sim::new`] with a per-node config hook.
    pub fn with_tweak(cfg: SimConfig, tweak: fn(&mut ExchangeConfig)) -> Self {
        let n = cfg.nodes;
        let mut sim = Self {
            base: Timestamp::ZERO,
            now: Duration::ZERO,
            net: Network::new(&cfg, cfg.seed),
            nodes: (0..n).map(|_| None).collect(),
            epochs: vec![1; n],
            events: vec![Vec::new(); n],
            capture: None,
            tweak,
            cfg,
        };
        for id in 1..=n as NodeId {
            sim.start(id);
        }
        sim
    }

    fn start(&mut self, id: NodeId) {
        let i = (id - 1) as usize;
        let mut c = ExchangeConfig::new(id, self.epochs[i], addr_of(id));
        c.tick = self.cfg.tick;
        c.seeds = (1..=self.cfg.seeds.min(self.cfg.nodes) as NodeId)
            .map(addr_of)
            .collect();
        c.rng_seed = self.cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ u64::from(id) << 32
            ^ u64::from(self.epochs[i]);
        (self.tweak)(&mut c);
        let now = self.instant();
        let mut ex = Exchange::new(c, SIM_KEY, now);
        let reg = Registration {
            period_ticks: 1,
            max_size: 8,
            flags: 0,
        };
        ex.register(DEMAND, reg).expect("register");
        ex.register(
            FROZEN,
            Registration {
                flags: crate::exchange::NEEDS_SNAPSHOT,
                ..reg
            },
        )
        .expect("register");
        self.nodes[i] = Some(ex);
    }

    /// Current simulated time as a `Timestamp`.
    pub fn instant(&self) -> Timestamp {
        self.base + self.now
    }

    /// Node `id`, if running.
    pub fn node(&self, id: NodeId) -> Option<&Exchange> {
        self.nodes[(id - 1) as usize].as_ref()
    }

    /// Ids of running nodes.
    pub fn running(&self) -> Vec<NodeId> {
        (1..=self.cfg.nodes as NodeId)
            .filter(|id| self.node(*id).is_some())
            .collect()
    }

    /// Sets node `id`'s demand value.
    pub fn set_demand(&mut self, id: NodeId, v: u64) {
        self.set(id, DEMAND, v);
    }

    /// Sets node `id`'s value for `code`.
    pub fn set(&mut self, id: NodeId, code: u8, v: u64) {
        let now = self.instant();
        if let Some(ex) = self.nodes[(id - 1) as usize].as_mut() {
            ex.set_local(now, code, &v.to_be_bytes())
                .expect("set_local");
        }
        self.drain(id);
    }

    /// Sum of `code` values as seen by node `id`.
    pub fn sum_seen(&self, id: NodeId, code: u8) -> u64 {
        self.node(id).map_or(0, |ex| {
            ex.entries(code)
                .map(|e| u64::from_be_bytes(e.data.try_into().unwrap_or([0; 8])))
                .sum()
        })
    }

    /// Replaces node `id`'s pool keys, as a reload does
    /// ([`Exchange::set_keys`]).
    pub fn set_keys(&mut self, id: NodeId, key: &[u8], rotation: Option<&[u8]>) {
        if let Some(ex) = self.nodes[(id - 1) as usize].as_mut() {
            ex.set_keys(key, rotation);
        }
    }

    /// Kills node `id` abruptly (no leave).
    pub fn kill(&mut self, id: NodeId) {
        self.nodes[(id - 1) as usize] = None;
    }

    /// Gracefully stops node `id`.
    pub fn leave(&mut self, id: NodeId) {
        let now = self.instant();
        if let Some(ex) = self.nodes[(id - 1) as usize].as_mut() {
            ex.leave(now);
        }
        self.drain(id);
        self.nodes[(id - 1) as usize] = None;
    }

    /// Restarts node `id` with a higher boot epoch.
    pub fn restart(&mut self, id: NodeId) {
        self.epochs[(id - 1) as usize] += 1;
        self.start(id);
    }

    /// Assigns partition groups (index id-1). All zeros = healed.
    pub fn partition(&mut self, groups: Vec<u8>) {
        self.net.partition(groups);
    }

    /// Heals all partitions.
    pub fn heal(&mut self) {
        self.net.heal();
    }

    /// Delivers `bytes` to node `to` as if sent from `from`, at the current time.
    pub fn inject(&mut self, to: NodeId, from: SocketAddr, bytes: &[u8]) {
        let now = self.instant();
        if let Some(ex) = self.nodes[(to - 1) as usize].as_mut() {
            let _ = ex.handle_datagram(now, from, bytes);
        }
        self.drain(to);
    }

    /// Moves a node's transmits onto the wire and its events into the log.
    fn drain(&mut self, id: NodeId) {
        let i = (id - 1) as usize;
        let Some(ex) = self.nodes[i].as_mut() else {
            return;
        };
        while let Some(ev) = ex.poll_event() {
            self.events[i].push((self.now, ev));
        }
        let from = addr_of(id);
        while let Some(t) = ex.poll_transmit() {
            self.net.send(self.now, from, t.dst, t.bytes);
        }
    }

    fn next_timeout(&self) -> Option<(Duration, NodeId)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                n.as_ref()?
                    .poll_timeout()
                    .map(|t| (t.saturating_duration_since(self.base), i as NodeId + 1))
            })
            .min()
    }

    /// True when every running node sees exactly the running nodes as live.
    pub fn membership_converged(&self) -> bool {
        let running = self.running();
        running
            .iter()
            .all(|id| self.node(*id).is_some_and(|ex| ex.live_nodes() == running))
    }

    /// True when every running node's view of `code` equals `expect(id)` for
    /// every running node id.
    pub fn view_converged(&self, code: u8, expect: impl Fn(NodeId) -> u64) -> bool {
        let running = self.running();
        running.iter().all(|id| {
            let Some(ex) = self.node(*id) else {
                return false;
            };
            let mut seen: Vec<(NodeId, u64)> = ex
                .entries(code)
                .map(|e| {
                    (
                        e.node,
                        u64::from_be_bytes(e.data.try_into().unwrap_or([0; 8])),
                    )
                })
                .collect();
            seen.sort_unstable();
            seen.len() == running.len()
                && seen
                    .iter()
                    .zip(&running)
                    .all(|((n, v), r)| n == r && *v == expect(*r))
        })
    }

    /// Total bytes sent by all running nodes so far.
    pub fn bytes_sent(&self) -> u64 {
        self.nodes
            .iter()
            .flatten()
            .map(|ex| ex.stats().bytes_sent)
            .sum()
    }
}

impl Simulation for Sim {
    /// Current simulated time since start.
    fn now(&self) -> Duration {
        self.now
    }

    /// Runs until simulated time `until`.
    fn run_until(&mut self, until: Duration) {
        while let Some((at, step)) = self.net.next_step(self.next_timeout(), until) {
            self.now = self.now.max(at);
            match step {
                Step::Deliver(p) => {
                    let i = (p.to - 1) as usize;
                    if self.nodes[i].is_none() {
                        continue;
                    }
                    if let Some(c) = self.capture.as_mut() {
                        c.push(Captured {
                            from: p.from,
                            to: p.to,
                            bytes: p.bytes.clone(),
                        });
                    }
                    let now = self.instant();
                    if let Some(ex) = self.nodes[i].as_mut() {
                        let _ = ex.handle_datagram(now, p.from, &p.bytes);
                    }
                    self.drain(p.to);
                }
                Step::Timeout(id) => {
                    let now = self.instant();
                    if let Some(ex) = self.nodes[(id - 1) as usize].as_mut() {
                        ex.handle_timeout(now);
                    }
                    self.drain(id);
                }
            }
        }
        self.now = self.now.max(until);
    }
}

/// Result of [`measure`].
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    /// Nodes.
    pub nodes: usize,
    /// Time from start until every node saw every other node live.
    pub join: Duration,
    /// Time from every node changing its demand at once until every node saw
    /// every new value.
    pub converge_all: Duration,
    /// Same when a single node changes its value.
    pub converge_one: Duration,
    /// Mean bytes sent per node per second while every node changes its
    /// value every tick.
    pub bytes_per_node_s_busy: f64,
    /// Mean bytes sent per node per second with unchanged values.
    pub bytes_per_node_s_idle: f64,
    /// `Failed` events seen although no node failed (must be 0).
    pub false_failures: usize,
    /// After killing one node: time until the last survivor declared it failed.
    pub detection: Duration,
}

/// Measures convergence and bandwidth for `n` nodes with the default config
/// (1% loss, 0.2-2 ms delay); `settle` is waited between phases, `window`
/// is the bandwidth measurement window.
pub fn measure(n: usize, seed: u64, settle: Duration, window: Duration) -> Option<Sizing> {
    let mut sim = Sim::new(SimConfig::new(n, seed));
    let step = Duration::from_millis(10);
    let join = sim.run_until_pred(step, Duration::from_secs(20), |s| s.membership_converged())?;
    // Let the join burst settle.
    sim.run_for(settle);
    let ids = sim.running();
    for &id in &ids {
        sim.set_demand(id, u64::from(id) * 10);
    }
    let converge_all = sim.run_until_pred(step, Duration::from_secs(10), |s| {
        s.view_converged(DEMAND, |id| u64::from(id) * 10)
    })?;
    sim.run_for(settle);
    sim.set_demand(n as NodeId, 1);
    let converge_one = sim.run_until_pred(step, Duration::from_secs(10), |s| {
        s.view_converged(DEMAND, |id| {
            if id == n as NodeId {
                1
            } else {
                u64::from(id) * 10
            }
        })
    })?;
    sim.run_for(settle);
    let b0 = sim.bytes_sent();
    sim.run_for(window);
    let idle = (sim.bytes_sent() - b0) as f64 / n as f64 / window.as_secs_f64();
    let b0 = sim.bytes_sent();
    let t_end = sim.now() + window;
    let mut round = 0u64;
    while sim.now() < t_end {
        round += 1;
        for &id in &ids {
            sim.set_demand(id, round * 1000 + u64::from(id));
        }
        sim.run_for(sim.cfg.tick);
    }
    let busy = (sim.bytes_sent() - b0) as f64 / n as f64 / window.as_secs_f64();
    let false_failures = sim
        .events
        .iter()
        .flatten()
        .filter(|(_, e)| matches!(e, Event::Failed(_)))
        .count();
    let victim = (n as NodeId).div_ceil(2);
    sim.kill(victim);
    let killed_at = sim.now();
    sim.run_until_pred(step, Duration::from_secs(5), |s| s.membership_converged())?;
    let detection = sim
        .events
        .iter()
        .flatten()
        .filter(|(t, e)| *e == Event::Failed(victim) && *t >= killed_at)
        .map(|(t, _)| *t - killed_at)
        .max()?;
    Some(Sizing {
        nodes: n,
        join,
        converge_all,
        converge_one,
        bytes_per_node_s_busy: busy,
        bytes_per_node_s_idle: idle,
        false_failures,
        detection,
    })
}

#[cfg(test)]
mod tests;
