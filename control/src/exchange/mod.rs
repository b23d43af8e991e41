//! Pool-wide information exchange and membership (the "shepherd").
//!
//! A deterministic, sans-IO state machine: no sockets and no clock inside.
//! The driver (see [`udp`]) feeds it datagrams with [`Exchange::handle_datagram`],
//! calls [`Exchange::handle_timeout`] when [`Exchange::poll_timeout`] expires,
//! sends everything [`Exchange::poll_transmit`] returns and reacts to
//! [`Exchange::poll_event`].
//!
//! # Protocol
//! Every node keeps, per registration code, the latest entry of every node.
//! Each entry is tagged with its origin, the origin's boot epoch
//! (incarnation) and a per-origin version; a higher `(incarnation, version)`
//! wins. Once per tick a node builds one datagram from the entries it still
//! has to spread (its own changed entries, and entries it recently learned
//! with hops left) and sends it to a random subset of live peers ("mates").
//! Entries are relayed while their TTL lasts. Because the transport is lossy,
//! a node re-sends its own entries with a randomised exponential back-off
//! (capped by `max_backoff`, which also bounds how long a healed partition or
//! a newcomer waits for a full view).
//!
//! Datagrams are bounded by the MTU and by 255 entries. Registrations are
//! visited round-robin with a rotating start and entries are picked in random
//! order, so truncation never systematically starves a registration or node.
//!
//! # Membership
//! Registration code 0 is reserved for membership: each node's own code-0
//! entry is its heartbeat (version = its uptime in ms, bumped every
//! `heartbeat_interval`) and carries its advertised address. A node whose
//! heartbeat has not advanced for `suspect_after` is suspected, after
//! `dead_after` it is declared failed, its entries are dropped and it is
//! tombstoned for `tombstone_for` so stale relays cannot resurrect it. It
//! comes back only with a higher boot epoch (restart) or with a heartbeat
//! produced at least `dead_after` after the last one seen (it was partitioned,
//! not dead). A graceful leave is a heartbeat with the leaving flag, sent
//! directly to every live peer and relayed.
//!
//! The master is the lowest live node id. For registrations flagged
//! [`NEEDS_SNAPSHOT`] it periodically sends a frozen, consistent copy of the
//! registration's entries to every live node; receivers accept it only from
//! the node they themselves consider master.
//!
//! # Timers (defaults, see [`ExchangeConfig`])
//! | timer | default | why |
//! |---|---|---|
//! | `tick` | 100 ms | one datagram to `fanout` mates per tick |
//! | `heartbeat_interval` | 500 ms | new heartbeat version, relayed pool-wide |
//! | `suspect_after` | 1.0 s | about two missed heartbeat versions |
//! | `dead_after` | 1.5 s | declared failed; detection within 2 s |
//! | `max_backoff` | 1 s | cap of own-entry retransmission back-off |
//! | `probe_interval` | 1 s | seeds / failed nodes probed (partition healing) |
//! | `tombstone_for` | 30 s | stale relays cannot resurrect a failed node |
//! | `snapshot_every_ticks` | 10 | master's frozen snapshots |
//!
//! Detection time of a killed node is `dead_after` minus the age of its last
//! heartbeat plus its propagation delay and up to one tick: measured in
//! simulation 1.1-1.8 s (3-128 nodes, 1-10% loss, worst survivor), with no
//! false failures. Bandwidth grows with pool size because every heartbeat
//! version reaches every node: about 74 kB/s sent per node at 128 nodes with
//! unchanged values, MTU-bound at about 111 kB/s when every node changes its
//! value every tick. Larger pools should raise `tick` and
//! `heartbeat_interval` (and the detection timers with them).
//!
//! # Driving it
//! ```text
//! let mut ex = Exchange::new(ExchangeConfig { seeds, .. }, &key, Timestamp::now());
//! ex.register(CODE, Registration { period_ticks: 1, max_size: 64, flags: 0 })?;
//! let mut udp = UdpExchange::bind(bind_addr, ex)?;
//! loop {
//!     udp.exchange_mut().set_local(now, CODE, &my_demand)?;   // when it changes
//!     let sleep = udp.poll(Timestamp::now(), &mut events);       // recv, timers, send
//!     for ev in events.drain(..) { /* ViewChanged / Joined / Failed ...: re-run allocator */ }
//!     udp.wait(sleep)?;                                          // or the daemon's own poll
//! }
//! udp.leave(Timestamp::now());                                     // on shutdown
//! ```
//!
//! # Security
//! Every datagram carries an HMAC-SHA256 (truncated to 16 bytes) with the
//! pool key; datagrams that do not verify are counted and dropped before any
//! parsing of entries. Replays are rejected per sender with a sliding window
//! over (boot epoch, sequence).
//!
//! # Key rotation
//! [`Exchange::set_keys`] replaces the keys at once (a reload): the one it
//! signs with and, during a rotation, a second one it accepts too. A pool
//! moves from key A to key B one server at a time, never splitting: every
//! server first accepts B (signs A, accepts B), then every server signs B
//! (accepts A), then every server drops A. At each step every server
//! accepts what every other one signs. [`Exchange::peers_on_rotation_key`]
//! names the peers whose last datagram verified only under the rotation key
//! (they sign with the other key), so a step is known to be complete.

//! Before the MAC, the driver's receive thread ([`udp::Receiver`]) drains
//! the socket in batches and rejects what cannot be the pool's
//! ([`guard`]): impossible lengths, foreign headers, sources that are
//! neither seeds nor known members beyond a small join budget, and pool
//! sources far over the exchange's own rate. A forged flood from a few
//! addresses thus costs a comparison per datagram and cannot push the
//! members' datagrams out of the socket. Datagrams lost anyway (kernel
//! receive-buffer drops, a full queue) are reported with
//! [`Exchange::note_receive_loss`]; while they last a silent member stays
//! suspect for `loss_grace` longer before it is declared failed.

pub mod direct;
mod gossip;
pub mod guard;
mod membership;
pub mod replay;
mod snapshot;
mod stats;
pub mod udp;
pub mod wire;

pub(crate) use membership::encode_member;

pub use stats::ExchangeStats;

use headroom_clock::Timestamp;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use thiserror::Error;

use replay::{ReplayWindow, Verdict};
use wire::{Authenticator, Builder, Header, SnapshotHeader, WireEntry, WireError};

/// Node identifier, from configuration.
pub type NodeId = u32;

/// Registration code reserved for membership heartbeats.
pub const MEMBERSHIP_CODE: u8 = 0;

/// Registration flag: the master periodically sends a frozen, consistent
/// snapshot of this registration to every node.
pub const NEEDS_SNAPSHOT: u8 = 0x01;

/// Membership entry flag: the node is leaving gracefully.
const MEMBER_LEAVING: u8 = 0x01;
/// Maximum size of a membership entry (flags, family, IPv6, port).
const MEMBER_ENTRY_MAX: usize = 1 + 1 + 16 + 2;

/// How a module takes part in the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    /// Base retransmission period of this module's own entry, in ticks. An
    /// unchanged entry is re-sent after `period * 2^k` ticks (randomised,
    /// capped by `max_backoff`), k growing with each retransmission.
    pub period_ticks: u32,
    /// Largest entry a node may publish; larger received entries are dropped.
    pub max_size: usize,
    /// `NEEDS_SNAPSHOT` or 0.
    pub flags: u8,
}

/// Tunables. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ExchangeConfig {
    /// This node's id (unique in the pool).
    pub node_id: NodeId,
    /// Boot epoch: must grow across restarts (e.g. wall-clock seconds at start
    /// or a persisted counter). Older epochs are rejected as replays.
    pub epoch: u32,
    /// Address other nodes should send to (must not be unspecified).
    pub advertise: SocketAddr,
    /// Seed peers contacted to join, and probed to heal partitions.
    pub seeds: Vec<SocketAddr>,
    /// High-frequency exchange interval.
    pub tick: Duration,
    /// Maximum UDP payload per datagram (clamped to 256..=65507).
    pub mtu: usize,
    /// Mates per datagram; 0 = ceil(log2 n) + 1.
    pub fanout: usize,
    /// Relay hops of a fresh entry; 0 = ceil(log2 n) + 3 (at least 4).
    pub ttl: u8,
    /// How many of our datagrams carry an entry we relay.
    pub relay_sends: u8,
    /// How many of our datagrams carry our own changed entry.
    pub own_sends: u8,
    /// Random already-spread module entries added to every datagram (with
    /// TTL 0) as push anti-entropy: repairs losses a relay missed, and feeds
    /// restarted nodes and healed partitions without waiting for owners.
    pub fill_entries: usize,
    /// Cap of the retransmission back-off of our own entries.
    pub max_backoff: Duration,
    /// Heartbeat (membership entry) refresh interval.
    pub heartbeat_interval: Duration,
    /// Heartbeat silence after which a node is suspected.
    pub suspect_after: Duration,
    /// Heartbeat silence after which a node is declared failed.
    pub dead_after: Duration,
    /// How long failed / left nodes stay tombstoned.
    pub tombstone_for: Duration,
    /// Extra silence tolerated while this node itself is losing datagrams
    /// (the driver reports kernel receive drops with
    /// [`Exchange::note_receive_loss`]): a peer silent for `dead_after` is
    /// then kept suspect, not failed, until it has been silent for
    /// `dead_after + loss_grace`, because its heartbeats may be among the
    /// datagrams dropped here. Default: `dead_after`.
    pub loss_grace: Duration,
    /// Mean interval between probes of seeds and failed nodes.
    pub probe_interval: Duration,
    /// Master sends snapshots every this many ticks.
    pub snapshot_every_ticks: u32,
    /// Bound on tracked nodes (memory bound against a misbehaving key holder).
    pub max_nodes: usize,
    /// RNG seed (the driver passes a random one; simulations a fixed one).
    pub rng_seed: u64,
}

impl ExchangeConfig {
    /// Defaults for `node_id` advertising `advertise`.
    pub fn new(node_id: NodeId, epoch: u32, advertise: SocketAddr) -> Self {
        Self {
            node_id,
            epoch,
            advertise,
            seeds: Vec::new(),
            tick: Duration::from_millis(100),
            mtu: 1400,
            fanout: 0,
            ttl: 0,
            relay_sends: 1,
            own_sends: 2,
            fill_entries: 8,
            max_backoff: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(500),
            suspect_after: Duration::from_millis(1000),
            dead_after: Duration::from_millis(1500),
            tombstone_for: Duration::from_secs(30),
            loss_grace: Duration::from_millis(1500),
            probe_interval: Duration::from_secs(1),
            snapshot_every_ticks: 10,
            max_nodes: 4096,
            rng_seed: u64::from(node_id) ^ 0x5eed,
        }
    }
}

/// Errors of the local API.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    /// Code 0 is reserved for membership.
    #[error("registration code {0} is reserved")]
    ReservedCode(u8),
    /// The code is already registered.
    #[error("registration code {0} already registered")]
    AlreadyRegistered(u8),
    /// The code was never registered.
    #[error("registration code {0} is not registered")]
    UnknownCode(u8),
    /// `max_size` is zero or cannot fit in one datagram, or period is zero.
    #[error("invalid registration for code {0}")]
    InvalidRegistration(u8),
    /// A direct message for a node that is not a live member.
    #[error("node {0} is not a live member")]
    UnknownNode(NodeId),
    /// The entry is larger than the registration's `max_size`.
    #[error("entry of {len} bytes exceeds max {max} for code {code}")]
    EntryTooLarge {
        /// Registration code.
        code: u8,
        /// Offered size.
        len: usize,
        /// Registered maximum.
        max: usize,
    },
}

/// Why a received datagram was dropped (each is also counted in [`ExchangeStats`]).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// Decoding or authentication failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Sequence already seen or too old.
    #[error("replayed datagram")]
    Replayed,
    /// From an older boot epoch of the sender.
    #[error("datagram from a stale epoch")]
    StaleEpoch,
    /// Claims to come from this node's own id.
    #[error("datagram claims our own node id")]
    FromSelf,
    /// Too many distinct senders tracked.
    #[error("too many nodes")]
    TooManyNodes,
    /// This node has left the pool.
    #[error("node has left")]
    Left,
}

/// Liveness of a pool member as seen locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Heartbeat is current.
    Alive,
    /// Heartbeat silent for `suspect_after`; still counted live.
    Suspect,
    /// Declared failed; tombstoned.
    Failed,
    /// Left gracefully; tombstoned.
    Left,
}

impl MemberState {
    /// Counted as a live pool member.
    pub fn is_live(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }
}

/// Something the owner must react to (e.g. re-run the allocator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A node joined (or came back).
    Joined(NodeId),
    /// A node left gracefully.
    Left(NodeId),
    /// A node was declared failed.
    Failed(NodeId),
    /// The master (lowest live id) changed.
    MasterChanged(NodeId),
    /// The view of a registration changed (entry added, updated or removed).
    ViewChanged(u8),
    /// A new frozen snapshot of a registration is available.
    SnapshotReady(u8),
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dst: SocketAddr,
    /// Payload.
    pub bytes: Vec<u8>,
}

/// One node's latest entry as returned by [`Exchange::entries`].
#[derive(Debug, Clone, Copy)]
pub struct EntryView<'a> {
    /// Origin node.
    pub node: NodeId,
    /// Entry bytes.
    pub data: &'a [u8],
    /// Origin's boot epoch.
    pub incarnation: u32,
    /// Origin's version of the entry.
    pub version: u64,
    /// Local time the entry was last updated.
    pub updated: Timestamp,
}

/// A frozen snapshot of a registration, identical on every node that has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Master that produced it.
    pub master: NodeId,
    /// Master's snapshot id.
    pub id: u32,
    /// node -> (version, data).
    pub entries: BTreeMap<NodeId, (u64, Vec<u8>)>,
}

#[derive(Debug)]
struct Stored {
    incarnation: u32,
    version: u64,
    data: Vec<u8>,
    /// TTL to put on the wire when we send it.
    hops: u8,
    /// How many more of our datagrams carry it.
    sends_left: u8,
    updated: Timestamp,
}

#[derive(Debug)]
struct OwnState {
    backoff_k: u32,
    next_retx: Timestamp,
}

#[derive(Debug)]
struct RegState {
    reg: Registration,
    entries: HashMap<NodeId, Stored>,
    own: Option<OwnState>,
}

#[derive(Debug)]
struct Member {
    epoch: u32,
    hb_version: u64,
    addr: SocketAddr,
    last_heard: Timestamp,
    state: MemberState,
    /// When a tombstone expires.
    until: Timestamp,
}

#[derive(Debug)]
struct PendingSnapshot {
    master: NodeId,
    id: u32,
    parts: u8,
    got: u64,
    entries: BTreeMap<NodeId, (u64, Vec<u8>)>,
}

/// The exchange + membership state machine of one node.
#[derive(Debug)]
pub struct Exchange {
    cfg: ExchangeConfig,
    auth: Authenticator,
    /// Peers whose last accepted datagram verified under the rotation key.
    on_rotation_key: HashMap<NodeId, bool>,
    rng: SmallRng,
    start: Timestamp,
    next_tick: Timestamp,
    tick_no: u64,
    next_snapshot_tick: u64,
    seq: u64,
    next_hb: Timestamp,
    next_probe: Timestamp,
    regs: BTreeMap<u8, RegState>,
    members: BTreeMap<NodeId, Member>,
    replay: HashMap<NodeId, ReplayWindow>,
    snapshots: HashMap<u8, Snapshot>,
    pending: HashMap<u8, PendingSnapshot>,
    snapshot_id: u32,
    rr: usize,
    master: NodeId,
    left: bool,
    dirty: [u64; 4],
    /// Set on membership changes so the master is recomputed only then.
    roster_changed: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: ExchangeStats,
    /// Received direct messages (see [`direct`]).
    direct: direct::Inbox,
    /// When the driver last reported datagrams lost on receive.
    last_loss: Option<Timestamp>,
}

impl Exchange {
    /// Creates the state machine with the pool key. `now` is the driver's
    /// current time; the first tick is at a random phase within one tick so
    /// nodes started together do not send in lock-step.
    pub fn new(mut cfg: ExchangeConfig, key: &[u8], now: Timestamp) -> Self {
        // Room for headers, a heartbeat and at least a few entries; no more
        // than a UDP datagram can carry.
        cfg.mtu = cfg.mtu.clamp(256, 65_507);
        let mut rng = SmallRng::seed_from_u64(cfg.rng_seed);
        let phase = cfg.tick.mul_f64(rng.gen::<f64>());
        let mut regs = BTreeMap::new();
        regs.insert(
            MEMBERSHIP_CODE,
            RegState {
                reg: Registration {
                    period_ticks: 1,
                    max_size: MEMBER_ENTRY_MAX,
                    flags: 0,
                },
                entries: HashMap::new(),
                own: None,
            },
        );
        let mut ex = Self {
            auth: Authenticator::new(key),
            on_rotation_key: HashMap::new(),
            rng,
            start: now,
            next_tick: now + phase,
            tick_no: 0,
            next_snapshot_tick: 0,
            seq: 0,
            next_hb: now,
            next_probe: now + cfg.probe_interval,
            regs,
            members: BTreeMap::new(),
            replay: HashMap::new(),
            snapshots: HashMap::new(),
            pending: HashMap::new(),
            snapshot_id: 0,
            rr: 0,
            master: cfg.node_id,
            left: false,
            dirty: [0; 4],
            roster_changed: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: ExchangeStats::default(),
            direct: direct::Inbox::default(),
            last_loss: None,
            cfg,
        };
        ex.bump_heartbeat(now, false);
        ex
    }

    /// Registers a module's code. Code 0 is reserved.
    pub fn register(&mut self, code: u8, reg: Registration) -> Result<(), ExchangeError> {
        if code == MEMBERSHIP_CODE {
            return Err(ExchangeError::ReservedCode(code));
        }
        if self.regs.contains_key(&code) {
            return Err(ExchangeError::AlreadyRegistered(code));
        }
        let room = self
            .cfg
            .mtu
            .saturating_sub(wire::HEADER_LEN + wire::SNAPSHOT_HEADER_LEN + wire::MAC_LEN)
            .saturating_sub(2 * wire::ENTRY_HEADER_LEN + MEMBER_ENTRY_MAX);
        if reg.max_size == 0 || reg.max_size > room || reg.period_ticks == 0 {
            return Err(ExchangeError::InvalidRegistration(code));
        }
        self.regs.insert(
            code,
            RegState {
                reg,
                entries: HashMap::new(),
                own: None,
            },
        );
        Ok(())
    }

    /// Sets this node's current entry for `code`. Only a changed value is
    /// (re)spread; an unchanged one is refreshed by back-off retransmission.
    pub fn set_local(
        &mut self,
        now: Timestamp,
        code: u8,
        bytes: &[u8],
    ) -> Result<(), ExchangeError> {
        if code == MEMBERSHIP_CODE {
            return Err(ExchangeError::ReservedCode(code));
        }
        let ttl = self.ttl();
        let own_sends = self.cfg.own_sends.max(1);
        let tick = self.cfg.tick;
        let id = self.cfg.node_id;
        let epoch = self.cfg.epoch;
        let r: f64 = self.rng.gen_range(0.5..1.5);
        let rs = self
            .regs
            .get_mut(&code)
            .ok_or(ExchangeError::UnknownCode(code))?;
        if bytes.len() > rs.reg.max_size {
            return Err(ExchangeError::EntryTooLarge {
                code,
                len: bytes.len(),
                max: rs.reg.max_size,
            });
        }
        let version = match rs.entries.get(&id) {
            Some(e) if e.data == bytes => return Ok(()),
            Some(e) => e.version + 1,
            None => 1,
        };
        rs.entries.insert(
            id,
            Stored {
                incarnation: epoch,
                version,
                data: bytes.to_vec(),
                hops: ttl,
                sends_left: own_sends,
                updated: now,
            },
        );
        rs.own = Some(OwnState {
            backoff_k: 0,
            next_retx: now + (tick * rs.reg.period_ticks).mul_f64(r),
        });
        self.mark_dirty(code);
        self.flush_dirty();
        Ok(())
    }

    /// Latest entry of every live node (including this one) for `code`.
    pub fn entries(&self, code: u8) -> impl Iterator<Item = EntryView<'_>> + '_ {
        let id = self.cfg.node_id;
        self.regs
            .get(&code)
            .into_iter()
            .flat_map(|rs| rs.entries.iter())
            .filter(move |(n, _)| {
                **n == id || self.members.get(n).is_some_and(|m| m.state.is_live())
            })
            .map(|(n, e)| EntryView {
                node: *n,
                data: &e.data,
                incarnation: e.incarnation,
                version: e.version,
                updated: e.updated,
            })
    }

    /// Latest frozen snapshot of a `NEEDS_SNAPSHOT` registration.
    pub fn snapshot(&self, code: u8) -> Option<&Snapshot> {
        self.snapshots.get(&code)
    }

    /// Live node ids including this one, ascending.
    pub fn live_nodes(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, m)| m.state.is_live())
            .map(|(n, _)| *n)
            .collect();
        v.push(self.cfg.node_id);
        v.sort_unstable();
        v
    }

    /// Every known member (other than this node) with its state and address.
    pub fn members(&self) -> impl Iterator<Item = (NodeId, MemberState, SocketAddr)> + '_ {
        self.members.iter().map(|(n, m)| (*n, m.state, m.addr))
    }

    /// Replaces the pool keys (a reload): datagrams are signed with `key`
    /// from now on, and accepted under `key` or `rotation`. Membership,
    /// entries and replay windows are kept.
    pub fn set_keys(&mut self, key: &[u8], rotation: Option<&[u8]>) {
        self.auth = Authenticator::with_rotation(key, rotation);
        self.on_rotation_key.clear();
    }

    /// The ids of the key datagrams are signed with and of the rotation key.
    pub fn key_ids(&self) -> (wire::KeyId, Option<wire::KeyId>) {
        (self.auth.key_id(), self.auth.rotation_id())
    }

    /// Live peers whose last accepted datagram verified under the rotation
    /// key, not the signing key: they sign with the other key of the
    /// rotation. Ascending.
    pub fn peers_on_rotation_key(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .on_rotation_key
            .iter()
            .filter(|(n, r)| **r && self.members.get(n).is_some_and(|m| m.state.is_live()))
            .map(|(n, _)| *n)
            .collect();
        v.sort_unstable();
        v
    }

    /// Addresses datagrams of the pool come from: the seeds and every
    /// known member (failed ones included, so a healed partition is not
    /// treated as strangers). What the receive pre-filter admits freely.
    pub fn sources(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self.cfg.seeds.clone();
        v.extend(self.members.values().map(|m| m.addr));
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Current master (lowest live id).
    pub fn master(&self) -> NodeId {
        self.master
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.cfg.node_id
    }

    /// The driver lost received datagrams at `now` (kernel receive-buffer
    /// drops, a full queue): heartbeats may be among them, so failures are
    /// held back by `loss_grace` for the next `dead_after`.
    pub fn note_receive_loss(&mut self, now: Timestamp) {
        self.last_loss = Some(self.last_loss.map_or(now, |t| t.max(now)));
    }

    /// Counters.
    pub fn stats(&self) -> &ExchangeStats {
        &self.stats
    }

    /// Announces a graceful leave to every live peer. After this the state
    /// machine stops ticking and ignores input; flush `poll_transmit` before
    /// closing the socket.
    pub fn leave(&mut self, now: Timestamp) {
        if self.left {
            return;
        }
        self.bump_heartbeat(now, true);
        let dsts: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|m| m.state.is_live())
            .map(|m| m.addr)
            .collect();
        if let Some(bytes) = self.build_gossip(now) {
            for dst in dsts {
                self.queue(dst, bytes.clone());
            }
        }
        self.left = true;
    }

    /// Next time `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        (!self.left).then_some(self.next_tick)
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn uptime_ms(&self, now: Timestamp) -> u64 {
        now.saturating_duration_since(self.start).as_millis() as u64
    }

    /// Advances timers. Call when `poll_timeout` expires (calling earlier is harmless).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.left || now < self.next_tick {
            return;
        }
        self.tick_no += 1;
        self.check_members(now);
        if now >= self.next_hb {
            self.bump_heartbeat(now, false);
        }
        // One random factor for all registrations per tick; the ranges
        // differ per registration, so their retransmissions drift apart.
        let r: f64 = self.rng.gen_range(0.5..1.5);
        let ttl = self.ttl();
        let (tick, cap, id) = (self.cfg.tick, self.cfg.max_backoff, self.cfg.node_id);
        for (code, rs) in self.regs.iter_mut() {
            if *code == MEMBERSHIP_CODE {
                continue;
            }
            let Some(own) = rs.own.as_mut() else { continue };
            let Some(e) = rs.entries.get_mut(&id) else {
                continue;
            };
            if e.sends_left == 0 && now >= own.next_retx {
                e.sends_left = 1;
                e.hops = ttl;
                own.backoff_k = (own.backoff_k + 1).min(16);
                let base = (tick * rs.reg.period_ticks).saturating_mul(1 << own.backoff_k);
                own.next_retx = now + base.min(cap).mul_f64(r);
            }
        }
        if self.master == id
            && self.cfg.snapshot_every_ticks > 0
            && self.tick_no >= self.next_snapshot_tick
        {
            self.next_snapshot_tick = self.tick_no + u64::from(self.cfg.snapshot_every_ticks);
            self.send_snapshots(now);
        }
        if let Some(bytes) = self.build_gossip(now) {
            let mut live: Vec<SocketAddr> = self
                .members
                .values()
                .filter(|m| m.state.is_live())
                .map(|m| m.addr)
                .collect();
            let dsts: Vec<SocketAddr> = if live.is_empty() {
                // Joining (or alone): knock on every seed.
                self.cfg
                    .seeds
                    .iter()
                    .copied()
                    .filter(|a| *a != self.cfg.advertise)
                    .collect()
            } else {
                let k = self.fanout().min(live.len());
                live.partial_shuffle(&mut self.rng, k).0.to_vec()
            };
            let probe = if now >= self.next_probe {
                self.next_probe = now + self.cfg.probe_interval.mul_f64(r);
                self.pick_probe()
            } else {
                None
            };
            for dst in dsts.into_iter().chain(probe) {
                self.queue(dst, bytes.clone());
            }
        }
        self.flush_dirty();
        self.next_tick += self.cfg.tick;
        if self.next_tick <= now {
            self.next_tick = now + self.cfg.tick;
        }
    }

    /// Processes one received datagram. Every drop is counted; the error is
    /// returned for logging only.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), RecvError> {
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        if self.left {
            return Err(RecvError::Left);
        }
        let dg = match wire::decode(bytes, &self.auth) {
            Ok(d) => d,
            Err(e) => {
                let c = match e {
                    WireError::Truncated => &mut self.stats.truncated,
                    WireError::BadMagic => &mut self.stats.bad_magic,
                    WireError::UnknownVersion(_) => &mut self.stats.unknown_version,
                    WireError::BadMac => &mut self.stats.bad_mac,
                    WireError::Malformed => &mut self.stats.malformed,
                };
                *c += 1;
                return Err(e.into());
            }
        };
        let h = dg.header;
        if dg.rotation_key {
            self.stats.rotation_key_verified += 1;
        }
        if h.sender == self.cfg.node_id {
            self.stats.from_self += 1;
            return Err(RecvError::FromSelf);
        }
        if !self.replay.contains_key(&h.sender) && self.replay.len() >= self.cfg.max_nodes {
            self.stats.too_many_nodes += 1;
            return Err(RecvError::TooManyNodes);
        }
        match self
            .replay
            .entry(h.sender)
            .or_default()
            .check(h.epoch, h.seq)
        {
            Verdict::Fresh => {}
            Verdict::Replayed => {
                self.stats.replayed += 1;
                return Err(RecvError::Replayed);
            }
            Verdict::StaleEpoch => {
                self.stats.stale_epoch += 1;
                return Err(RecvError::StaleEpoch);
            }
        }
        self.stats.datagrams_accepted += 1;
        self.on_rotation_key.insert(h.sender, dg.rotation_key);
        // A fresh authenticated datagram is direct proof the sender is up,
        // even when its heartbeat version has not advanced yet.
        if let Some(m) = self.members.get_mut(&h.sender) {
            if m.state.is_live() && h.epoch == m.epoch {
                m.last_heard = now;
                m.state = MemberState::Alive;
            }
        }
        if h.flags & wire::FLAG_DIRECT != 0 {
            self.handle_direct(h.sender, h.epoch, &dg.entries);
            return Ok(());
        }
        // Membership entries first so data from a (re)joining node is not
        // dropped as tombstoned when its heartbeat is in the same datagram.
        for e in dg.entries.iter().filter(|e| e.code == MEMBERSHIP_CODE) {
            self.apply_entry(now, from, h.sender, e);
        }
        for e in dg.entries.iter().filter(|e| e.code != MEMBERSHIP_CODE) {
            self.apply_entry(now, from, h.sender, e);
        }
        if let Some(sh) = dg.snapshot {
            self.handle_snapshot(h.sender, sh, &dg.entries);
        }
        self.flush_dirty();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
