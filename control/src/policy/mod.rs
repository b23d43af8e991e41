//! Pool-wide policy: one versioned document, distributed by the exchange,
//! staged on every live node and activated pool-wide at one moment.
//!
//! A deterministic, sans-IO state machine like the exchange it rides on: no
//! sockets and no clock inside. The driver calls [`PolicyNode::poll`] with
//! the exchange after every exchange pass and whenever
//! [`PolicyNode::poll_timeout`] expires, forwards exchange events to
//! [`PolicyNode::on_exchange_event`], reacts to [`PolicyNode::poll_event`],
//! and writes [`PolicyNode::take_persist`] atomically when it returns bytes.
//!
//! # Driving it
//! ```text
//! let mut ex = Exchange::new(exchange_cfg, &key, now);          // as today
//! let mut pc = PolicyConfig::new(node_id, epoch);              // same epoch as the exchange
//! pc.initial = node_file.initial_policy;                       // used only if the pool has none
//! if no_seeds { pc.join_grace = Duration::ZERO }               // a single server needs no wait
//! let mut pol = PolicyNode::new(pc, Box::new(|doc: &[u8]| compile(doc)), &mut ex, now)?;
//! if let Ok(bytes) = fs::read(state_path) { pol.restore(&bytes)? }   // error: log, count, start empty
//! loop {
//!     let sleep = udp.poll(now, &mut events);                   // exchange pass
//!     for ev in &events { pol.on_exchange_event(ev) }
//!     pol.poll(now, wall_ms, udp.exchange_mut());               // policy pass
//!     udp.flush();                                              // send what it queued
//!     while let Some(ev) = pol.poll_event() {
//!         match ev {
//!             PolicyEvent::Current { .. } => start_granting(),   // hold the first grant until here
//!             PolicyEvent::Activated { .. } => apply_live(pol.active_document()),
//!             PolicyEvent::ApplyFinished { req, result } => answer_cli(req, result),
//!             PolicyEvent::Rejected { .. } | PolicyEvent::Lost { .. } => log_and_count(ev),
//!             _ => {}
//!         }
//!     }
//!     if let Some(bytes) = pol.take_persist() { atomic_write(state_path, &bytes) }
//!     sleep until min(sleep, pol.poll_timeout() - now);
//! }
//! // CLI: pol.apply(now, wall_ms, &doc, user, msg) / pol.rollback(..., n, ...) -> ReqId,
//! //      pol.history(), pol.version(n), pol.pool(&ex) (every node's version), pol.stats()
//! ```
//!
//! # The document
//! The policy is opaque here: the TOML text of the pool policy, checked by a
//! [`Validator`] the daemon supplies (parse and compile, as for a reload).
//! A version's *record* (its [`VersionMeta`] plus the document) is the unit
//! that is transferred, stored and persisted; documents up to
//! [`MAX_DOCUMENT`] (256 KiB) are chunked to the exchange MTU.
//!
//! # Protocol
//! * Every node gossips a small [`Beacon`] through its exchange entry: the
//!   version it runs, the highest it holds, its last refusal and, from the
//!   master, the version declared active pool-wide and whether the master
//!   is *settled*. That is how every node sees every node's version.
//! * Latency-critical steps use exchange direct messages (one authenticated
//!   datagram to one node, retransmitted every `retransmit` until answered):
//!   1. `apply` on any node sends `Submit` (plus the document's first
//!      chunks) to the master, which fetches the rest.
//!   2. The master (lowest live id) serialises submissions: it numbers one
//!      as the next version under its term (see [`version`]), validates it,
//!      and sends `Announce(stage)` to every live member.
//!   3. Each node fetches the record, runs its validator and answers
//!      `Staged` or `Rejected(reason)`.
//!   4. Once every live member answered, or after `stage_timeout`, the
//!      master declares the version active (beacon) and sends `Activate`
//!      to every node that staged it; they switch on receipt and acknowledge.
//!      After `activate_timeout` it reports: nodes running it, refusals by
//!      node and reason, stragglers by node id. Nothing waits forever.
//! * A node whose master declares a newer version than it runs (a joiner, a
//!   restarted node, a straggler) pulls it, validates and activates it.
//! * A node that refuses a version keeps its previous one and reports why.
//! * If the master fails mid-rollout, the next master (once the failure is
//!   detected, `dead_after`) rolls out the highest version any member holds;
//!   measured 1.6-1.8 s from the crash to the requester's answer.
//!
//! No clocks are compared between nodes: all timeouts are local durations,
//! activation happens on receipt of the master's message, and the wall time
//! recorded in the history is the author's own, for humans only.
//!
//! # Partitions
//! Each side has its own master, which starts a new term before numbering,
//! so the sides never publish the same version with different content. On
//! heal every node converges on the highest version (term, then seq). A
//! node that held versions of the losing side detects it from the winner's
//! lineage, raises [`PolicyEvent::Lost`] and reports them to the master,
//! which publishes a *merge* version (the winner's content, listing the lost
//! versions with author, user and message): the loss is in every node's
//! history, never silent.
//!
//! # Joining and restarting
//! [`PolicyNode::is_current`] stays false until the node runs the version
//! its master declared and the master is settled (it has seen every live
//! member's beacon and has nothing newer to roll out). The daemon holds its
//! first grant until then. A master waits `join_grace` after its own start
//! before it is settled, so a full-pool restart converges on the highest
//! persisted version before anyone enforces.
//!
//! # Tested limits and figures
//! Simulation tests (`cargo test -p headroom-control --lib policy::`) run
//! 3, 16, 64, 128 and 256 nodes with 1% loss, 0.2-2 ms delay, clock
//! offsets up to an hour (a day in one test) and rate drift up to 1% (5%),
//! wall clocks up to 10 minutes apart: concurrent applies, applies on both
//! sides of a partition then heal, master failover while staging and while
//! activating, a node refusing a version, nodes restarting and joining
//! mid-rollout, a full-pool restart from persisted state, a 256 KiB
//! document, forged and misdirected messages. Documents up to
//! [`MAX_DOCUMENT`] = 256 KiB (203 chunks at the default 1400-byte MTU, 645
//! at the smallest allowed, 512); one byte more is refused.
//!
//! Measured with `cargo run --release -p headroom-control --example
//! policy_rollout` (seed 42; 20 applies of a ~300-byte policy, each from a
//! random non-master node; "spread" is first to last node switching;
//! bytes are everything the exchange sends, with one 8-byte allocator entry
//! per node as the baseline):
//!
//! | nodes | apply to active everywhere, median / max | spread median / max | idle B/node/s without / with policy | B/node per apply |
//! |---|---|---|---|---|
//! | 16 | 11 / 86 ms | 1.6 / 1.9 ms | 19.2 k / 20.4 k | 4.8 k |
//! | 64 | 58 / 109 ms | 1.9 / 51 ms | 43.9 k / 46.5 k | 18.2 k |
//! | 128 | 58 / 115 ms | 1.9 / 2.0 ms | 74.0 k / 75.7 k | 14.7 k |
//! | 256 | 60 / 114 ms | 1.9 / 51 ms | 125 k / 125 k (MTU-bound) | 1.4 k (MTU-bound) |
//!
//! (100 ms exchange tick. At the daemon's 20 ms tick, `--tick-ms 20`: 12 /
//! 62, 58 / 109, 58 / 66 and 61 / 156 ms; idle 169 k / 184 k B/node/s and
//! 53 k B/node per apply at 128 nodes.) The median at 64+ nodes is one
//! `retransmit` (50 ms): with 1% loss some node's stage exchange is almost
//! always lost once; a max spread of 50 ms is a node whose two `Activate`
//! copies were both lost. The bytes per apply are mostly every node's
//! beacon changing at once and flooding. A 256 KiB document is active
//! everywhere in 204 / 302 / 374 ms (median of 3) at 16 / 64 / 128 nodes.
//!
//! Known limits: the first datagrams of a master's fan-out can overtake
//! each other enough to fall out of the receivers' 128-wide replay window
//! (40 of ~10 000 direct datagrams over 20 applies at 128 nodes): counted as
//! `replayed` by the exchange and repaired by retransmission. A full-pool
//! restart converges on the highest persisted version if the master sees
//! its holder within `join_grace`; a holder joining later brings its
//! version live (no node enforces anything before the master settled).

mod codec;
pub mod fuzz;
pub mod history;
mod master;
mod node;
pub mod persist;
pub mod sim;
pub mod summary;
pub mod transfer;
pub mod version;
pub mod wire;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use codec::{truncate_utf8, DecodeError};
pub use history::{HistoryEntry, HistoryStatus};
pub use node::PolicyNode;
pub use version::{
    Hash, Kind, LostRef, ReqId, Term, VersionId, VersionMeta, MAX_DOCUMENT, MAX_MESSAGE, MAX_USER,
};
pub use wire::{Beacon, Report};

use crate::exchange::NodeId;

/// Default registration code of the policy beacon and messages (the daemon
/// uses 1 for bandwidth and 2 for CPU).
pub const POLICY_CODE: u8 = 3;

/// The daemon's check of a document: parse and compile it as it would for
/// enforcement. `Err` carries the error as operators should read it
/// (`file:line: field: message`).
pub trait Validator {
    /// Checks `doc`.
    fn validate(&mut self, doc: &[u8]) -> Result<(), String>;
}

impl<F: FnMut(&[u8]) -> Result<(), String>> Validator for F {
    fn validate(&mut self, doc: &[u8]) -> Result<(), String> {
        self(doc)
    }
}

/// Tunables. [`PolicyConfig::new`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// This node's id (the exchange's).
    pub node_id: NodeId,
    /// Boot epoch (the exchange's): makes request ids and terms unique
    /// across restarts.
    pub epoch: u32,
    /// Exchange registration code for beacons and direct messages.
    pub code: u8,
    /// Retransmission interval of every unanswered message (50 ms).
    pub retransmit: Duration,
    /// How long the master waits for every live member to stage (1 s).
    pub stage_timeout: Duration,
    /// How long the master waits for activation acknowledgements (1 s).
    pub activate_timeout: Duration,
    /// After its start, how long a master waits before it is settled, so it
    /// sees the members' versions after a restart (1.5 s; 0 without seeds).
    pub join_grace: Duration,
    /// How long a requester waits for its apply to finish (10 s).
    pub apply_timeout: Duration,
    /// A transfer without progress for this long is dropped (10 s).
    pub transfer_timeout: Duration,
    /// Chunks in flight per transfer (32).
    pub fetch_window: usize,
    /// Blobs of at most this many chunks are pushed with their announcement
    /// (no fetch round trip for typical policies; 4 = 5 KiB at MTU 1400).
    pub push_chunks: usize,
    /// Datagrams the master sends at once when fanning out; the rest follow
    /// 1 ms apart (bounds the burst the UDP socket must absorb).
    pub burst: usize,
    /// Copies of each first `Activate` (2: a single loss does not delay a
    /// node's switch by a whole `retransmit`, keeping activation one moment).
    pub activate_copies: usize,
    /// Version records kept for rollback and for serving others (8).
    pub keep_versions: usize,
    /// History entries kept (256).
    pub history_len: usize,
    /// The node file's policy, used only if the pool has none.
    pub initial: Option<Vec<u8>>,
}

impl PolicyConfig {
    /// Defaults for node `node_id` in boot epoch `epoch`.
    pub fn new(node_id: NodeId, epoch: u32) -> Self {
        Self {
            node_id,
            epoch,
            code: POLICY_CODE,
            retransmit: Duration::from_millis(50),
            stage_timeout: Duration::from_secs(1),
            activate_timeout: Duration::from_secs(1),
            join_grace: Duration::from_millis(1500),
            apply_timeout: Duration::from_secs(10),
            transfer_timeout: Duration::from_secs(10),
            fetch_window: 32,
            push_chunks: 4,
            burst: 256,
            activate_copies: 2,
            keep_versions: 8,
            history_len: 256,
            initial: None,
        }
    }
}

/// What an apply request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyResult {
    /// Rolled out (see the report for refusals and stragglers).
    Done(Report),
    /// Not accepted; nothing changed anywhere.
    Refused(String),
    /// Published, then dropped by a partition merge in favour of `winner`.
    Lost {
        /// The version it was numbered as.
        id: VersionId,
        /// The version that won.
        winner: VersionId,
    },
    /// No final answer within `apply_timeout`.
    TimedOut {
        /// The version it was numbered as, if it was.
        id: Option<VersionId>,
        /// Live nodes not yet running it (from their beacons).
        pending: Vec<NodeId>,
    },
}

/// Something the daemon must react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyEvent {
    /// First time this node runs the pool's current version: it may start
    /// enforcing (grant bandwidth, set CPU shares).
    Current {
        /// The version (None: the pool has no policy).
        active: Option<VersionId>,
    },
    /// This node now runs `id`: apply [`PolicyNode::active_document`] live.
    Activated {
        /// New version.
        id: VersionId,
        /// Version it replaced.
        previous: Option<VersionId>,
    },
    /// This node's validator refused `id`; it keeps its previous version.
    Rejected {
        /// Version.
        id: VersionId,
        /// The validator's error.
        reason: String,
    },
    /// A local apply was numbered by the master. Comes again with a higher
    /// version if the master failed before any other node received the
    /// first (the next master numbers the request anew).
    ApplyAssigned {
        /// Request.
        req: ReqId,
        /// Its version.
        id: VersionId,
    },
    /// A local apply finished.
    ApplyFinished {
        /// Request.
        req: ReqId,
        /// Result.
        result: ApplyResult,
    },
    /// Versions this node held lost a partition merge (audit: log them).
    Lost {
        /// The lost versions.
        lost: Vec<LostRef>,
        /// The version that won.
        winner: VersionId,
    },
    /// Master only: a rollout finished.
    RolloutFinished(Report),
    /// The node file's initial policy was not used (the pool has a policy,
    /// another node's initial one was used, or it does not validate).
    InitialIgnored {
        /// Why.
        reason: String,
    },
}

/// Errors of the local API.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// The document exceeds [`MAX_DOCUMENT`].
    #[error("policy document is {len} bytes, the limit is {max} bytes (256 KiB)")]
    TooLarge {
        /// Size.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The validator refused the document.
    #[error("{0}")]
    Invalid(String),
    /// `user` longer than [`MAX_USER`].
    #[error("user name longer than {MAX_USER} bytes")]
    UserTooLong,
    /// `--message` longer than [`MAX_MESSAGE`].
    #[error("message longer than {MAX_MESSAGE} bytes")]
    MessageTooLong,
    /// Rollback to a version this node never saw.
    #[error("no version v{0} in this node's history")]
    UnknownVersion(u64),
    /// Rollback to a version whose document this node no longer keeps.
    #[error("the document of v{0} is no longer kept on this node (only the last versions are)")]
    NotRetained(u64),
    /// The exchange MTU leaves too little room for policy messages.
    #[error("exchange MTU too small for policy messages ({0} bytes of payload, need 400)")]
    MtuTooSmall(usize),
    /// Registering with the exchange failed.
    #[error(transparent)]
    Exchange(#[from] crate::exchange::ExchangeError),
    /// The persisted state could not be read.
    #[error("policy state: {0}")]
    Persist(#[from] DecodeError),
    /// The persisted state belongs to another node.
    #[error("policy state was written by node {0}, this is node {1}")]
    WrongNode(NodeId, NodeId),
}

/// Counters. All monotonic; every drop has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// Direct messages that did not decode.
    pub messages_malformed: u64,
    /// Messages valid but not acceptable from this sender in this role
    /// (stage or activate from a node we do not consider master, ...).
    pub messages_unexpected: u64,
    /// Direct sends the exchange refused (peer no longer live).
    pub send_failed: u64,
    /// Chunks not wanted or not matching the transfer.
    pub chunks_ignored: u64,
    /// Completed blobs whose hash did not match.
    pub blobs_corrupt: u64,
    /// Version records that did not decode or did not match their announcement.
    pub records_invalid: u64,
    /// Drafts that did not decode.
    pub drafts_invalid: u64,
    /// Fetches for blobs this node does not hold (or in another layout).
    pub fetch_unserved: u64,
    /// Transfers refused (impossible size or too many at once).
    pub transfers_refused: u64,
    /// Transfers dropped for lack of progress.
    pub transfers_expired: u64,
    /// Peer beacons that did not decode.
    pub beacons_malformed: u64,
    /// Versions this node's validator refused.
    pub versions_rejected: u64,
    /// Versions this node activated.
    pub activations: u64,
    /// Master: versions numbered.
    pub versions_published: u64,
    /// Master: submissions refused.
    pub submissions_refused: u64,
    /// Master: rollouts finished.
    pub rollouts: u64,
    /// Versions recorded as lost in a partition merge.
    pub versions_lost: u64,
}

/// One node's policy state as the pool sees it (for status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePolicy {
    /// Node.
    pub node: NodeId,
    /// Version it runs.
    pub active: Option<VersionId>,
    /// Its last refusal.
    pub rejected: Option<(VersionId, String)>,
    /// It runs the pool's current version.
    pub current: bool,
}
