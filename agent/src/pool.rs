//! This node's seat in the pool: the information exchange (authenticated
//! with the pool key), membership, and the registrations the agent's modules
//! publish through it. Sans-IO like the exchange itself: the runtime owns
//! the UDP socket, hands received datagrams to [`Pool::handle_datagram`] and
//! sends what [`Pool::poll_transmit`] returns.

use std::net::SocketAddr;

use headroom_clock::Timestamp;
use headroom_config::{parse_peer, Config};
use headroom_control::{
    exchange::{
        wire::KeyId, Event, Exchange, ExchangeConfig, ExchangeError, MemberState, NodeId,
        Registration, Transmit,
    },
    policy::{PolicyConfig, PolicyError, PolicyEvent, PolicyNode, Validator},
};

use crate::status::{ExchangeStatus, MemberStatus};

/// Registration code of the per-pipe bandwidth demand (every tick).
pub const CODE_BANDWIDTH: u8 = 1;
/// Registration code of the pool CPU state (low frequency).
pub const CODE_CPU: u8 = 2;

/// A membership state as the status shows it.
pub(crate) fn state_name(st: MemberState) -> &'static str {
    match st {
        MemberState::Alive => "alive",
        MemberState::Suspect => "suspect",
        MemberState::Failed => "failed",
        MemberState::Left => "left",
    }
}

/// What joining the pool takes besides the config (read by the runtime).
#[derive(Debug, Clone)]
pub struct PoolSetup {
    /// The pool key.
    pub key: Vec<u8>,
    /// During a key rotation, the second key accepted (never signed with).
    pub rotation_key: Option<Vec<u8>>,
    /// Boot epoch (grows across restarts, see `exchange::udp::boot_epoch`).
    pub epoch: u32,
    /// Seed of the exchange's randomness (peer choice, back-off).
    pub rng_seed: u64,
    /// Wall clock at the agent's start, ms since the Unix epoch (recorded
    /// in the policy history for humans; never used for ordering).
    pub wall_ms: u64,
    /// The policy state this node persisted before (None: none yet).
    pub policy_state: Option<Vec<u8>>,
    /// The node file's policy sections as a document (see
    /// `headroom_config::initial_policy`): used only if the pool has none.
    pub initial_policy: Option<Vec<u8>>,
}

/// Why joining the pool failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The exchange refused a registration.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// The policy state machine could not start.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// The exchange and what it knows of the pool.
#[derive(Debug)]
pub struct Pool {
    exchange: Exchange,
    policy: PolicyNode,
    advertise: SocketAddr,
    started: Timestamp,
    wall_ms: u64,
    membership_events: u64,
    failures: u64,
    /// Persisted policy state that did not decode (this node started empty).
    pub policy_restore_error: Option<String>,
}

impl Pool {
    /// Joins the pool described by `cfg` (None when no pool key is configured:
    /// the node then runs alone). `initial` is the node file's policy (used
    /// only if the pool has none); `validator` checks every version before
    /// this node stages it.
    pub fn new(
        cfg: &Config,
        setup: Option<PoolSetup>,
        initial: Option<Vec<u8>>,
        validator: Box<dyn Validator + Send>,
        now: Timestamp,
    ) -> Result<Option<Pool>, PoolError> {
        let (Some(_), Some(setup)) = (&cfg.exchange.key_file, setup) else {
            return Ok(None);
        };
        let advertise = SocketAddr::from((cfg.node.address, cfg.exchange.port));
        let mut ec = ExchangeConfig::new(u32::from(cfg.node.id), setup.epoch, advertise);
        ec.seeds = cfg
            .exchange
            .peers
            .iter()
            .filter_map(|p| parse_peer(p).ok())
            .filter(|(id, _)| *id != cfg.node.id)
            .map(|(_, a)| a)
            .collect();
        ec.tick = cfg.control.high_freq_interval;
        ec.mtu = usize::from(cfg.exchange.mtu);
        let dead = cfg.exchange.failure_timeout;
        ec.dead_after = dead;
        ec.loss_grace = dead;
        ec.suspect_after = dead.mul_f64(2.0 / 3.0);
        ec.heartbeat_interval = dead / 4;
        ec.rng_seed = setup.rng_seed;
        let mut exchange = Exchange::new(ec, &setup.key, now);
        exchange.set_keys(&setup.key, setup.rotation_key.as_deref());
        let automation =
            crate::automation::codes().map(|c| (c, 5, crate::automation::AUTOMATION_MAX));
        for (code, period_ticks, max_size) in [(CODE_BANDWIDTH, 1, 1200), (CODE_CPU, 5, 1200)]
            .into_iter()
            .chain(automation)
        {
            exchange.register(
                code,
                Registration {
                    period_ticks,
                    max_size,
                    flags: 0,
                },
            )?;
        }
        use headroom_control::policy::summary;
        exchange.register(
            summary::SUMMARY_CODE,
            summary::registration(
                cfg.control.low_freq_interval,
                cfg.control.high_freq_interval,
                summary::SUMMARY_MAX,
            ),
        )?;
        let mut pc = PolicyConfig::new(u32::from(cfg.node.id), setup.epoch);
        pc.initial = initial;
        if cfg
            .exchange
            .peers
            .iter()
            .all(|p| parse_peer(p).is_ok_and(|(id, _)| id == cfg.node.id))
        {
            // Alone: no member's persisted version to wait for.
            pc.join_grace = std::time::Duration::ZERO;
        }
        let mut policy = PolicyNode::new(pc, validator, &mut exchange, now)?;
        let mut policy_restore_error = None;
        if let Some(bytes) = &setup.policy_state {
            if let Err(e) = policy.restore(bytes) {
                tracing::error!(error = %e, "persisted policy state not used; starting without it");
                policy_restore_error = Some(e.to_string());
            }
        }
        Ok(Some(Pool {
            exchange,
            policy,
            advertise,
            started: now,
            wall_ms: setup.wall_ms,
            membership_events: 0,
            failures: 0,
            policy_restore_error,
        }))
    }

    /// The address the exchange runs on (the runtime binds it).
    pub fn advertise(&self) -> SocketAddr {
        self.advertise
    }

    /// A received datagram (drops are counted inside the exchange).
    pub fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, bytes: &[u8]) {
        if let Err(e) = self.exchange.handle_datagram(now, from, bytes) {
            tracing::trace!(%from, error = %e, "exchange datagram dropped");
        }
        self.take_events();
        self.poll_policy(now);
    }

    /// This node's wall clock at `now`, ms since the Unix epoch.
    pub fn wall_ms(&self, now: Timestamp) -> u64 {
        self.wall_ms + (now - self.started).as_millis() as u64
    }

    fn poll_policy(&mut self, now: Timestamp) {
        let wall = self.wall_ms(now);
        self.policy.poll(now, wall, &mut self.exchange);
    }

    /// Runs the exchange's timers and the policy's; returns whether
    /// membership changed.
    pub fn handle_timeout(&mut self, now: Timestamp) -> bool {
        self.exchange.handle_timeout(now);
        let changed = self.take_events();
        self.poll_policy(now);
        changed
    }

    /// The policy state machine (apply, rollback, history, versions).
    pub fn policy(&self) -> &PolicyNode {
        &self.policy
    }

    /// Submits `doc` as the pool's next policy version (see
    /// `PolicyNode::apply`).
    pub fn policy_apply(
        &mut self,
        now: Timestamp,
        doc: &[u8],
        user: &str,
        message: &str,
    ) -> Result<headroom_control::policy::ReqId, PolicyError> {
        let wall = self.wall_ms(now);
        let r = self.policy.apply(now, wall, doc, user, message);
        self.poll_policy(now);
        r
    }

    /// Publishes version `seq`'s content as the next version.
    pub fn policy_rollback(
        &mut self,
        now: Timestamp,
        seq: u64,
        user: &str,
        message: &str,
    ) -> Result<headroom_control::policy::ReqId, PolicyError> {
        let wall = self.wall_ms(now);
        let r = self.policy.rollback(now, wall, seq, user, message);
        self.poll_policy(now);
        r
    }

    /// The next policy event.
    pub fn poll_policy_event(&mut self) -> Option<PolicyEvent> {
        self.policy.poll_event()
    }

    /// The policy state to persist, when it changed.
    pub fn take_policy_persist(&mut self) -> Option<Vec<u8>> {
        self.policy.take_persist()
    }

    /// Every member with its latest gossiped summary.
    pub fn summaries(&self, now: Timestamp) -> Vec<headroom_control::policy::summary::PoolNode> {
        use headroom_control::policy::summary;
        summary::pool_view(&self.exchange, summary::SUMMARY_CODE, now)
    }

    /// Every live node's policy state.
    pub fn policy_pool(&self) -> Vec<headroom_control::policy::NodePolicy> {
        self.policy.pool(&self.exchange)
    }

    fn take_events(&mut self) -> bool {
        let mut changed = false;
        while let Some(ev) = self.exchange.poll_event() {
            self.policy.on_exchange_event(&ev);
            match ev {
                Event::Joined(n) => tracing::info!(node = n, "node joined"),
                Event::Left(n) => tracing::info!(node = n, "node left"),
                Event::Failed(n) => {
                    self.failures += 1;
                    tracing::warn!(node = n, "node failed");
                }
                Event::MasterChanged(n) => tracing::info!(node = n, "new master"),
                _ => continue,
            }
            self.membership_events += 1;
            changed = true;
        }
        changed
    }

    /// The next time [`Pool::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match (self.exchange.poll_timeout(), self.policy.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.exchange.poll_transmit()
    }

    /// Publishes this node's entry for `code`.
    pub fn publish(&mut self, now: Timestamp, code: u8, bytes: &[u8]) {
        if let Err(e) = self.exchange.set_local(now, code, bytes) {
            tracing::error!(code, error = %e, "entry not published");
        }
    }

    /// The latest entries of the other live nodes for `code`.
    pub fn peer_entries(&self, code: u8) -> impl Iterator<Item = (NodeId, &[u8])> + '_ {
        let me = self.exchange.node_id();
        self.exchange
            .entries(code)
            .filter(move |e| e.node != me)
            .map(|e| (e.node, e.data))
    }

    /// Where the pool's datagrams come from (seeds and known members), for
    /// the receive pre-filter.
    pub fn sources(&self) -> Vec<SocketAddr> {
        self.exchange.sources()
    }

    /// The runtime lost received exchange datagrams (kernel drops, a full
    /// queue): failures are held back while that lasts.
    pub fn note_receive_loss(&mut self, now: Timestamp) {
        self.exchange.note_receive_loss(now);
    }

    /// The exchange's master (lowest live id).
    pub fn master(&self) -> NodeId {
        self.exchange.master()
    }

    /// Live node ids (this one included), ascending.
    pub fn live_nodes(&self) -> Vec<NodeId> {
        self.exchange.live_nodes()
    }

    /// Announces a graceful leave (sent with the next transmits).
    pub fn leave(&mut self, now: Timestamp) {
        self.exchange.leave(now);
    }

    /// Replaces the pool keys (a reload re-read the files). Returns what
    /// changed ("signs with 1a2b3c4d (was 5e6f7a8b); accepts also none
    /// (was 1a2b3c4d)"), or None when the keys are the same.
    pub fn set_keys(&mut self, key: &[u8], rotation: Option<&[u8]>) -> Option<String> {
        let before = self.exchange.key_ids();
        let show = |id: Option<KeyId>| id.map_or("none".to_string(), |k| k.to_string());
        let after = (
            KeyId::of(key),
            rotation.map(KeyId::of).filter(|r| *r != KeyId::of(key)),
        );
        if before == after {
            return None;
        }
        self.exchange.set_keys(key, rotation);
        let mut parts = Vec::new();
        if before.0 != after.0 {
            parts.push(format!("signs with {} (was {})", after.0, before.0));
        }
        if before.1 != after.1 {
            parts.push(format!(
                "accepts also {} (was {})",
                show(after.1),
                show(before.1)
            ));
        }
        tracing::info!(key = %after.0, rotation_key = %show(after.1), "pool keys replaced");
        Some(parts.join("; "))
    }

    /// Status and counters.
    pub fn status(&self) -> ExchangeStatus {
        let ex = &self.exchange;
        let s = ex.stats();
        let other_key = ex.peers_on_rotation_key();
        let mut members: Vec<MemberStatus> = ex
            .members()
            .map(|(id, st, addr)| MemberStatus {
                id,
                rotation_key: other_key.contains(&id),
                state: state_name(st).into(),
                addr: addr.to_string(),
            })
            .collect();
        members.push(MemberStatus {
            id: ex.node_id(),
            state: "self".into(),
            addr: String::new(),
            rotation_key: false,
        });
        members.sort_by_key(|m| m.id);
        ExchangeStatus {
            master: ex.master(),
            datagrams_sent: s.datagrams_sent,
            datagrams_received: s.datagrams_received,
            datagrams_accepted: s.datagrams_accepted,
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            bad_mac: s.bad_mac,
            replayed: s.replayed,
            malformed: s.malformed + s.truncated + s.bad_magic + s.unknown_version,
            membership_events: self.membership_events,
            failures: self.failures,
            failures_held: s.failures_held,
            receive: None,
            live_nodes: ex.live_nodes().len(),
            members,
            key_id: ex.key_ids().0.to_string(),
            rotation_key_id: ex.key_ids().1.map(|k| k.to_string()),
            rotation_key_verified: s.rotation_key_verified,
        }
    }
}
