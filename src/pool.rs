//! This node's seat in the pool: the information exchange over UDP on the
//! node address (authenticated with the pool key), membership, and the
//! registrations other modules publish through it.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use headroom_config::{parse_peer, Config};
use headroom_control::exchange::{
    udp::{boot_epoch, load_key, UdpExchange},
    Event, Exchange, ExchangeConfig, MemberState, Registration,
};
use serde::{Deserialize, Serialize};

/// Registration code of the per-pipe bandwidth demand (every tick).
pub const CODE_BANDWIDTH: u8 = 1;
/// Registration code of the pool CPU state (low frequency).
pub const CODE_CPU: u8 = 2;

/// The exchange and what it knows of the pool.
pub struct Pool {
    udp: UdpExchange,
    events: Vec<Event>,
    /// Membership changes since the last `take_membership_change`.
    changed: bool,
}

/// One member in the status document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Node id.
    pub id: u32,
    /// "alive", "suspect", "failed", "left" ("self" for this node).
    pub state: String,
    /// Exchange address.
    pub addr: String,
}

/// Exchange counters in the status document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExchangeStatus {
    /// Master (lowest live id).
    pub master: u32,
    /// Datagrams sent / received / accepted.
    pub datagrams_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Datagrams that passed authentication and parsing.
    pub datagrams_accepted: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Datagrams dropped: wrong MAC (wrong key or forged).
    pub bad_mac: u64,
    /// Datagrams dropped: replayed.
    pub replayed: u64,
    /// Datagrams dropped: malformed, truncated, bad magic or version.
    pub malformed: u64,
    /// Members.
    pub members: Vec<MemberStatus>,
}

impl Pool {
    /// Joins the pool described by `cfg` (None when no pool key is configured:
    /// the node then runs alone).
    pub fn start(cfg: &Config, now: Instant) -> Result<Option<Pool>> {
        let Some(key_file) = &cfg.exchange.key_file else {
            return Ok(None);
        };
        let key = load_key(key_file)
            .with_context(|| format!("reading the pool key {}", key_file.display()))?;
        let advertise = SocketAddr::from((cfg.node.address, cfg.exchange.port));
        let mut ec = ExchangeConfig::new(cfg.node.id as u32, boot_epoch(), advertise);
        ec.seeds = cfg
            .exchange
            .peers
            .iter()
            .filter_map(|p| parse_peer(p).ok())
            .filter(|(id, _)| *id != cfg.node.id)
            .map(|(_, a)| a)
            .collect();
        ec.tick = Duration::from_millis(cfg.control.high_freq_ms as u64);
        ec.mtu = cfg.exchange.mtu as usize;
        let dead = Duration::from_millis(cfg.exchange.failure_timeout_ms as u64);
        ec.dead_after = dead;
        ec.suspect_after = dead.mul_f64(2.0 / 3.0);
        ec.heartbeat_interval = dead / 4;
        ec.rng_seed = rand_seed();
        let mut ex = Exchange::new(ec, &key, now);
        ex.register(
            CODE_BANDWIDTH,
            Registration {
                period_ticks: 1,
                max_size: 1200,
                flags: 0,
            },
        )?;
        ex.register(
            CODE_CPU,
            Registration {
                period_ticks: 5,
                max_size: 1200,
                flags: 0,
            },
        )?;
        let udp = UdpExchange::bind(advertise, ex)
            .with_context(|| format!("binding the exchange socket {advertise}"))?;
        tracing::info!(%advertise, seeds = cfg.exchange.peers.len(), "joined the exchange");
        Ok(Some(Pool {
            udp,
            events: Vec::new(),
            changed: true,
        }))
    }

    /// Receives, runs timers, sends; returns how long until it needs a pass.
    pub fn poll(&mut self, now: Instant) -> Duration {
        let wait = self.udp.poll(now, &mut self.events);
        for ev in self.events.drain(..) {
            match ev {
                Event::Joined(n) => tracing::info!(node = n, "node joined"),
                Event::Left(n) => tracing::info!(node = n, "node left"),
                Event::Failed(n) => tracing::warn!(node = n, "node failed"),
                Event::MasterChanged(n) => tracing::info!(node = n, "new master"),
                _ => continue,
            }
            metrics::counter!("headroom_membership_events_total").increment(1);
            self.changed = true;
        }
        wait
    }

    /// Whether membership changed since the last call.
    pub fn take_membership_change(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Publishes this node's entry for `code`.
    pub fn publish(&mut self, now: Instant, code: u8, bytes: &[u8]) {
        if let Err(e) = self.udp.exchange_mut().set_local(now, code, bytes) {
            tracing::error!(code, error = %e, "entry not published");
        }
        self.udp.flush();
    }

    /// The latest entries of the other live nodes for `code`.
    pub fn peer_entries(&self, code: u8) -> Vec<(u32, Vec<u8>)> {
        let me = self.udp.exchange().node_id();
        self.udp
            .exchange()
            .entries(code)
            .filter(|e| e.node != me)
            .map(|e| (e.node, e.data.to_vec()))
            .collect()
    }

    /// Live node ids (this one included), ascending.
    pub fn live_nodes(&self) -> Vec<u32> {
        self.udp.exchange().live_nodes()
    }

    /// Announces a graceful leave.
    pub fn leave(&mut self, now: Instant) {
        self.udp.leave(now);
    }

    /// Status and counters.
    pub fn status(&self) -> ExchangeStatus {
        let ex = self.udp.exchange();
        let s = ex.stats();
        let mut members: Vec<MemberStatus> = ex
            .members()
            .map(|(id, st, addr)| MemberStatus {
                id,
                state: match st {
                    MemberState::Alive => "alive",
                    MemberState::Suspect => "suspect",
                    MemberState::Failed => "failed",
                    MemberState::Left => "left",
                }
                .into(),
                addr: addr.to_string(),
            })
            .collect();
        members.push(MemberStatus {
            id: ex.node_id(),
            state: "self".into(),
            addr: String::new(),
        });
        members.sort_by_key(|m| m.id);
        ExchangeStatus {
            master: ex.master(),
            datagrams_sent: s.datagrams_sent,
            datagrams_received: s.datagrams_received,
            datagrams_accepted: s.datagrams_accepted,
            bytes_sent: s.bytes_sent,
            bad_mac: s.bad_mac,
            replayed: s.replayed,
            malformed: s.malformed + s.truncated + s.bad_magic + s.unknown_version,
            members,
        }
    }

    /// Exports the exchange counters as metrics.
    pub fn export_metrics(&self) {
        let st = self.status();
        let c = |name: &'static str, v: u64| {
            metrics::counter!("headroom_exchange_datagrams_total", "kind" => name).absolute(v)
        };
        c("sent", st.datagrams_sent);
        c("received", st.datagrams_received);
        c("accepted", st.datagrams_accepted);
        c("bad_mac", st.bad_mac);
        c("replayed", st.replayed);
        c("malformed", st.malformed);
        metrics::gauge!("headroom_pool_live_nodes").set(self.live_nodes().len() as f64);
    }
}

fn rand_seed() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        return crate::now_seed();
    }
    u64::from_ne_bytes(b)
}
