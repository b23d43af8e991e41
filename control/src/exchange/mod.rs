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
//! let mut ex = Exchange::new(ExchangeConfig { seeds, .. }, &key, Instant::now());
//! ex.register(CODE, Registration { period_ticks: 1, max_size: 64, flags: 0 })?;
//! let mut udp = UdpExchange::bind(bind_addr, ex)?;
//! loop {
//!     udp.exchange_mut().set_local(now, CODE, &my_demand)?;   // when it changes
//!     let sleep = udp.poll(Instant::now(), &mut events);       // recv, timers, send
//!     for ev in events.drain(..) { /* ViewChanged / Joined / Failed ...: re-run allocator */ }
//!     udp.wait(sleep)?;                                          // or the daemon's own poll
//! }
//! udp.leave(Instant::now());                                     // on shutdown
//! ```
//!
//! # Security
//! Every datagram carries an HMAC-SHA256 (truncated to 16 bytes) with the
//! pool key; datagrams that do not verify are counted and dropped before any
//! parsing of entries. Replays are rejected per sender with a sliding window
//! over (boot epoch, sequence).

pub mod replay;
pub mod udp;
pub mod wire;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

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
    pub updated: Instant,
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

/// Counters of the exchange. All monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Datagrams handed to the driver for sending.
    pub datagrams_sent: u64,
    /// Bytes handed to the driver for sending.
    pub bytes_sent: u64,
    /// Datagrams received (before any check).
    pub datagrams_received: u64,
    /// Bytes received (before any check).
    pub bytes_received: u64,
    /// Datagrams that passed every check.
    pub datagrams_accepted: u64,
    /// Dropped: shorter than declared / than a header.
    pub truncated: u64,
    /// Dropped: wrong magic.
    pub bad_magic: u64,
    /// Dropped: unknown wire version.
    pub unknown_version: u64,
    /// Dropped: MAC did not verify (wrong key, spoofing, tampering).
    pub bad_mac: u64,
    /// Dropped: authenticated but structurally invalid.
    pub malformed: u64,
    /// Dropped: sequence replayed or outside the window.
    pub replayed: u64,
    /// Dropped: from an older boot epoch of the sender.
    pub stale_epoch: u64,
    /// Dropped: sender id equals ours.
    pub from_self: u64,
    /// Dropped: node table full.
    pub too_many_nodes: u64,
    /// Entries skipped: code not registered here.
    pub unknown_code: u64,
    /// Entries skipped: larger than the registration's max size.
    pub oversize_entries: u64,
    /// Entries skipped: membership payload unparseable.
    pub malformed_entries: u64,
    /// Entries skipped: not newer than what we hold.
    pub not_newer_entries: u64,
    /// Entries skipped: origin tombstoned (failed / left).
    pub tombstoned_entries: u64,
    /// Entries skipped: claim to originate from us.
    pub self_origin_entries: u64,
    /// Entries applied (newer versions stored).
    pub entries_applied: u64,
    /// Entries that did not fit in a datagram when they were due.
    pub entries_deferred: u64,
    /// Snapshot parts from a node we do not consider master.
    pub snapshot_rejected: u64,
    /// Snapshots completed and installed.
    pub snapshots_installed: u64,
}

impl ExchangeStats {
    /// Publishes every counter through the `metrics` facade as
    /// `headroom_exchange_<name>` (absolute values; call periodically).
    pub fn record(&self) {
        let all: [(&'static str, u64); 24] = [
            ("datagrams_sent", self.datagrams_sent),
            ("bytes_sent", self.bytes_sent),
            ("datagrams_received", self.datagrams_received),
            ("bytes_received", self.bytes_received),
            ("datagrams_accepted", self.datagrams_accepted),
            ("truncated", self.truncated),
            ("bad_magic", self.bad_magic),
            ("unknown_version", self.unknown_version),
            ("bad_mac", self.bad_mac),
            ("malformed", self.malformed),
            ("replayed", self.replayed),
            ("stale_epoch", self.stale_epoch),
            ("from_self", self.from_self),
            ("too_many_nodes", self.too_many_nodes),
            ("unknown_code", self.unknown_code),
            ("oversize_entries", self.oversize_entries),
            ("malformed_entries", self.malformed_entries),
            ("not_newer_entries", self.not_newer_entries),
            ("tombstoned_entries", self.tombstoned_entries),
            ("self_origin_entries", self.self_origin_entries),
            ("entries_applied", self.entries_applied),
            ("entries_deferred", self.entries_deferred),
            ("snapshot_rejected", self.snapshot_rejected),
            ("snapshots_installed", self.snapshots_installed),
        ];
        for (name, v) in all {
            metrics::counter!(format!("headroom_exchange_{name}")).absolute(v);
        }
    }
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
    updated: Instant,
}

#[derive(Debug)]
struct OwnState {
    backoff_k: u32,
    next_retx: Instant,
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
    last_heard: Instant,
    state: MemberState,
    /// When a tombstone expires.
    until: Instant,
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
    rng: SmallRng,
    start: Instant,
    next_tick: Instant,
    tick_no: u64,
    next_snapshot_tick: u64,
    seq: u64,
    next_hb: Instant,
    next_probe: Instant,
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
}

fn encode_member(addr: SocketAddr, leaving: bool) -> Vec<u8> {
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

fn decode_member(b: &[u8]) -> Option<(bool, SocketAddr)> {
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

fn ceil_log2(n: usize) -> usize {
    (usize::BITS - n.saturating_sub(1).leading_zeros()) as usize
}

impl Exchange {
    /// Creates the state machine with the pool key. `now` is the driver's
    /// current time; the first tick is at a random phase within one tick so
    /// nodes started together do not send in lock-step.
    pub fn new(mut cfg: ExchangeConfig, key: &[u8], now: Instant) -> Self {
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
    pub fn set_local(&mut self, now: Instant, code: u8, bytes: &[u8]) -> Result<(), ExchangeError> {
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

    /// Current master (lowest live id).
    pub fn master(&self) -> NodeId {
        self.master
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.cfg.node_id
    }

    /// Counters.
    pub fn stats(&self) -> &ExchangeStats {
        &self.stats
    }

    /// Announces a graceful leave to every live peer. After this the state
    /// machine stops ticking and ignores input; flush `poll_transmit` before
    /// closing the socket.
    pub fn leave(&mut self, now: Instant) {
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
    pub fn poll_timeout(&self) -> Option<Instant> {
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

    fn ttl(&self) -> u8 {
        if self.cfg.ttl != 0 {
            return self.cfg.ttl;
        }
        // Each node relays a given version at most once (only when it is new
        // to it), so a generous TTL costs little and rides out lost relays.
        let n = self.live_count() + 1;
        (ceil_log2(n) + 3).clamp(4, 32) as u8
    }

    fn fanout(&self) -> usize {
        if self.cfg.fanout != 0 {
            return self.cfg.fanout;
        }
        ceil_log2(self.live_count() + 1) + 1
    }

    fn live_count(&self) -> usize {
        self.members.values().filter(|m| m.state.is_live()).count()
    }

    fn mark_dirty(&mut self, code: u8) {
        self.dirty[(code / 64) as usize] |= 1 << (code % 64);
    }

    /// Marks every registration changed; called on every roster change.
    fn mark_all_dirty(&mut self) {
        self.roster_changed = true;
        let codes: Vec<u8> = self.regs.keys().copied().collect();
        for c in codes {
            self.mark_dirty(c);
        }
    }

    /// Turns dirty codes into one `ViewChanged` each and checks the master.
    fn flush_dirty(&mut self) {
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

    fn uptime_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_millis() as u64
    }

    fn bump_heartbeat(&mut self, now: Instant, leaving: bool) {
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

    fn queue(&mut self, dst: SocketAddr, bytes: Vec<u8>) {
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.transmits.push_back(Transmit { dst, bytes });
    }

    fn next_header(&mut self, now: Instant) -> Header {
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
    fn build_gossip(&mut self, now: Instant) -> Option<Vec<u8>> {
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
    fn add_filler(&mut self, b: &mut Builder) {
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

    /// Advances timers. Call when `poll_timeout` expires (calling earlier is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
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

    /// A seed or failed node that is not currently live, so partitions heal
    /// even when every peer on the other side has been declared failed.
    fn pick_probe(&mut self) -> Option<SocketAddr> {
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

    fn check_members(&mut self, now: Instant) {
        let mut failed = Vec::new();
        let mut expired = Vec::new();
        for (n, m) in self.members.iter_mut() {
            match m.state {
                MemberState::Alive | MemberState::Suspect => {
                    let silent = now.saturating_duration_since(m.last_heard);
                    if silent >= self.cfg.dead_after {
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
    fn drop_entries_of(&mut self, n: NodeId, all: bool) {
        for (code, rs) in self.regs.iter_mut() {
            if *code == MEMBERSHIP_CODE && !all {
                continue;
            }
            rs.entries.remove(&n);
        }
        self.mark_all_dirty();
    }

    fn send_snapshots(&mut self, now: Instant) {
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

    /// Processes one received datagram. Every drop is counted; the error is
    /// returned for logging only.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
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
        // A fresh authenticated datagram is direct proof the sender is up,
        // even when its heartbeat version has not advanced yet.
        if let Some(m) = self.members.get_mut(&h.sender) {
            if m.state.is_live() && h.epoch == m.epoch {
                m.last_heard = now;
                m.state = MemberState::Alive;
            }
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

    fn handle_snapshot(&mut self, sender: NodeId, sh: SnapshotHeader, entries: &[WireEntry<'_>]) {
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

    fn apply_entry(&mut self, now: Instant, from: SocketAddr, sender: NodeId, e: &WireEntry<'_>) {
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

    /// Updates the member table for a newer heartbeat; false = reject entry.
    fn apply_membership(
        &mut self,
        now: Instant,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_codec() {
        let a: SocketAddr = "10.1.2.3:4567".parse().unwrap();
        assert_eq!(decode_member(&encode_member(a, true)), Some((true, a)));
        let b: SocketAddr = "[fe80::1]:9".parse().unwrap();
        assert_eq!(decode_member(&encode_member(b, false)), Some((false, b)));
        assert_eq!(decode_member(&[0, 4, 1, 2]), None);
        assert_eq!(decode_member(&[]), None);
    }

    #[test]
    fn local_api_errors() {
        let now = Instant::now();
        let mut ex = Exchange::new(
            ExchangeConfig::new(1, 1, "127.0.0.1:1".parse().unwrap()),
            b"k",
            now,
        );
        let reg = Registration {
            period_ticks: 1,
            max_size: 8,
            flags: 0,
        };
        assert_eq!(ex.register(0, reg), Err(ExchangeError::ReservedCode(0)));
        ex.register(3, reg).unwrap();
        assert_eq!(
            ex.register(3, reg),
            Err(ExchangeError::AlreadyRegistered(3))
        );
        assert_eq!(
            ex.register(
                4,
                Registration {
                    max_size: 5000,
                    ..reg
                }
            ),
            Err(ExchangeError::InvalidRegistration(4))
        );
        assert_eq!(
            ex.set_local(now, 9, b"x"),
            Err(ExchangeError::UnknownCode(9))
        );
        assert!(matches!(
            ex.set_local(now, 3, &[0; 9]),
            Err(ExchangeError::EntryTooLarge { .. })
        ));
        ex.set_local(now, 3, b"abc").unwrap();
        assert_eq!(ex.poll_event(), Some(Event::ViewChanged(3)));
        // Unchanged value: no new version, no event.
        ex.set_local(now, 3, b"abc").unwrap();
        assert_eq!(ex.poll_event(), None);
        let v: Vec<_> = ex.entries(3).map(|e| (e.node, e.data.to_vec())).collect();
        assert_eq!(v, vec![(1, b"abc".to_vec())]);
    }

    /// Signed random and mutated datagrams into the full state machine (the
    /// `handle_datagram` fuzz target in miniature): no panic, every datagram
    /// is either accepted or counted under exactly one drop reason.
    #[test]
    fn state_machine_survives_signed_garbage() {
        use rand::rngs::SmallRng;
        let key = b"k";
        let auth = Authenticator::new(key);
        let t0 = Instant::now();
        let mut ex = Exchange::new(
            ExchangeConfig::new(5, 1, "127.0.0.1:7000".parse().unwrap()),
            key,
            t0,
        );
        let reg = Registration {
            period_ticks: 1,
            max_size: 16,
            flags: 0,
        };
        ex.register(1, reg).unwrap();
        ex.register(
            2,
            Registration {
                flags: NEEDS_SNAPSHOT,
                ..reg
            },
        )
        .unwrap();
        // A valid datagram from node 2 to mutate.
        let h = Header {
            flags: 0,
            sender: 2,
            epoch: 1,
            seq: 1,
            timestamp_ms: 0,
        };
        let member = encode_member("127.0.0.1:7002".parse().unwrap(), false);
        let mut b = Builder::new(&h, None, 1400);
        b.push(&WireEntry {
            code: 0,
            origin: 2,
            incarnation: 1,
            version: 10,
            ttl: 3,
            data: &member,
        });
        b.push(&WireEntry {
            code: 1,
            origin: 3,
            incarnation: 1,
            version: 1,
            ttl: 3,
            data: &[1; 8],
        });
        let good = b.finish(&auth);
        let body = &good[..good.len() - wire::MAC_LEN];
        let mut rng = SmallRng::seed_from_u64(3);
        let from: SocketAddr = "127.0.0.1:7002".parse().unwrap();
        for i in 0..20_000u64 {
            let mut m = if rng.gen_bool(0.5) {
                body.to_vec()
            } else {
                (0..rng.gen_range(0..120)).map(|_| rng.gen()).collect()
            };
            for _ in 0..rng.gen_range(0..4) {
                if !m.is_empty() {
                    let j = rng.gen_range(0..m.len());
                    m[j] = rng.gen();
                }
            }
            let tag = auth.tag(&m);
            m.extend_from_slice(&tag);
            let now = t0 + Duration::from_millis(i);
            let _ = ex.handle_datagram(now, from, &m);
            ex.handle_timeout(now);
            while ex.poll_transmit().is_some() {}
            while ex.poll_event().is_some() {}
        }
        let s = ex.stats();
        let dropped = s.truncated
            + s.bad_magic
            + s.unknown_version
            + s.bad_mac
            + s.malformed
            + s.replayed
            + s.stale_epoch
            + s.from_self
            + s.too_many_nodes;
        assert_eq!(s.datagrams_received, 20_000);
        assert_eq!(s.datagrams_accepted + dropped, s.datagrams_received);
        assert!(s.datagrams_accepted > 0 && s.malformed > 0 && s.bad_magic > 0);
    }

    /// More due entries than fit in one MTU: every datagram interleaves the
    /// registrations, and the leftovers go out on the following ticks.
    #[test]
    fn truncation_is_fair_across_registrations() {
        let key = b"k";
        let auth = Authenticator::new(key);
        let t0 = Instant::now();
        let mut cfg = ExchangeConfig::new(1, 1, "10.0.0.1:7000".parse().unwrap());
        cfg.fill_entries = 0;
        let mut ex = Exchange::new(cfg, key, t0);
        let reg = Registration {
            period_ticks: 1,
            max_size: 100,
            flags: 0,
        };
        ex.register(1, reg).unwrap();
        ex.register(2, reg).unwrap();
        let h = Header {
            flags: 0,
            sender: 2,
            epoch: 1,
            seq: 1,
            timestamp_ms: 0,
        };
        let member = encode_member("10.0.0.2:7000".parse().unwrap(), false);
        let mut b = Builder::new(&h, None, 65_000);
        b.push(&WireEntry {
            code: 0,
            origin: 2,
            incarnation: 1,
            version: 1,
            ttl: 0,
            data: &member,
        });
        let data = [7u8; 100];
        for code in [1u8, 2] {
            for origin in 3..13 {
                b.push(&WireEntry {
                    code,
                    origin,
                    incarnation: 1,
                    version: 1,
                    ttl: 3,
                    data: &data,
                });
            }
        }
        let from: SocketAddr = "10.0.0.2:7000".parse().unwrap();
        ex.handle_datagram(t0, from, &b.finish(&auth)).unwrap();
        let mut seen: HashMap<(u8, NodeId), usize> = HashMap::new();
        for tick in 0..4u32 {
            let now = t0 + Duration::from_millis(100) * (tick + 1);
            ex.handle_timeout(now);
            let mut first = true;
            while let Some(t) = ex.poll_transmit() {
                assert!(t.bytes.len() <= 1400);
                let d = wire::decode(&t.bytes, &auth).unwrap();
                if !first {
                    continue; // same datagram to other mates
                }
                first = false;
                let per_code = |c| d.entries.iter().filter(|e| e.code == c).count();
                if tick == 0 {
                    // Full datagram, both registrations, neither starved.
                    assert!(per_code(1) >= 4 && per_code(2) >= 4, "{:?}", d.entries);
                    assert!(per_code(1).abs_diff(per_code(2)) <= 1);
                }
                for e in d.entries.iter().filter(|e| e.code != 0) {
                    *seen.entry((e.code, e.origin)).or_default() += 1;
                }
            }
        }
        // Every relayed entry went out exactly once (relay_sends = 1).
        assert_eq!(seen.len(), 20);
        assert!(seen.values().all(|n| *n == 1));
        assert!(ex.stats().entries_deferred > 0);
    }

    /// Entries for an origin that never joined are forgotten after the
    /// tombstone horizon instead of accumulating.
    #[test]
    fn orphan_entries_expire() {
        let key = b"k";
        let auth = Authenticator::new(key);
        let t0 = Instant::now();
        let mut cfg = ExchangeConfig::new(1, 1, "10.0.0.1:7000".parse().unwrap());
        cfg.tombstone_for = Duration::from_secs(5);
        let mut ex = Exchange::new(cfg, key, t0);
        let reg = Registration {
            period_ticks: 1,
            max_size: 8,
            flags: 0,
        };
        ex.register(1, reg).unwrap();
        let h = Header {
            flags: 0,
            sender: 2,
            epoch: 1,
            seq: 1,
            timestamp_ms: 0,
        };
        let mut b = Builder::new(&h, None, 1400);
        b.push(&WireEntry {
            code: 1,
            origin: 77,
            incarnation: 1,
            version: 1,
            ttl: 0,
            data: &[1],
        });
        ex.handle_datagram(t0, "10.0.0.2:7000".parse().unwrap(), &b.finish(&auth))
            .unwrap();
        let stored = |ex: &Exchange| ex.regs[&1].entries.contains_key(&77);
        assert!(stored(&ex));
        // Not live, so not in the view.
        assert_eq!(ex.entries(1).count(), 0);
        let mut t = t0;
        while t < t0 + Duration::from_secs(4) {
            t += Duration::from_millis(100);
            ex.handle_timeout(t);
        }
        assert!(stored(&ex));
        while t < t0 + Duration::from_secs(6) {
            t += Duration::from_millis(100);
            ex.handle_timeout(t);
        }
        assert!(!stored(&ex));
    }

    #[test]
    fn ceil_log2_values() {
        assert_eq!(ceil_log2(1), 0);
        assert_eq!(ceil_log2(2), 1);
        assert_eq!(ceil_log2(3), 2);
        assert_eq!(ceil_log2(128), 7);
        assert_eq!(ceil_log2(129), 8);
    }
}
