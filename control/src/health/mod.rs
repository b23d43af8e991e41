//! Health checks of the local application instance behind each VIP service.
//!
//! Each node probes its own instance (a TCP connect or an HTTP GET to
//! `127.0.0.1:port`) and gossips one [`HealthEntry`] per service; the director
//! leaves unhealthy (service, node) pairs out of its Maglev tables.
//!
//! * [`HealthTracker`]: rise/fall state machine, time as a parameter.
//! * [`HealthMonitor`]: the trackers of one node's checks, sans-IO: it says
//!   which probes to start ([`HealthMonitor::poll_probe`]) and takes their
//!   results ([`HealthMonitor::handle_result`]).
//! * [`probe::Prober`]: the I/O side, run by the daemon: blocking probes on
//!   helper threads so the control loop never blocks.
//! * [`encode_entries`] / [`decode_entries`]: the gossiped per-node entry.

pub mod probe;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use headroom_clock::Timestamp;
use headroom_config::vip::{HealthCheck, HealthKind, VipService};
use thiserror::Error;

use probe::{ProbeKind, ProbeRequest, ProbeResult};

/// Index of a VIP service in the configured list.
pub type ServiceIdx = u16;

/// Timing and thresholds of one health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthParams {
    /// Consecutive successes to become healthy.
    pub rise: u32,
    /// Consecutive failures to become unhealthy.
    pub fall: u32,
    /// Time between probe starts.
    pub interval: Duration,
    /// Probe timeout; a probe whose result has not arrived by then (plus one
    /// interval of grace) counts as failed.
    pub timeout: Duration,
}

impl From<&HealthCheck> for HealthParams {
    fn from(h: &HealthCheck) -> Self {
        HealthParams {
            rise: h.rise.max(1),
            fall: h.fall.max(1),
            interval: h.interval,
            timeout: h.timeout,
        }
    }
}

/// A health state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Became healthy (`rise` consecutive successes).
    Up,
    /// Became unhealthy (`fall` consecutive failures).
    Down,
}

/// Result of [`HealthTracker::poll`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// A probe must be started now.
    pub start_probe: bool,
    /// The outstanding probe was declared lost.
    pub lost: bool,
    /// State change caused by the lost probe.
    pub transition: Option<Transition>,
}

/// Rise/fall health state machine of one check. Starts unhealthy: an
/// instance receives new flows only after `rise` successful probes.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    params: HealthParams,
    healthy: bool,
    ok_run: u32,
    fail_run: u32,
    next_probe: Timestamp,
    in_flight_since: Option<Timestamp>,
}

impl HealthTracker {
    /// Tracker whose first probe is due at `now`.
    pub fn new(params: HealthParams, now: Timestamp) -> Self {
        HealthTracker {
            params,
            healthy: false,
            ok_run: 0,
            fail_run: 0,
            next_probe: now,
            in_flight_since: None,
        }
    }

    /// Current state.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Whether a probe is outstanding.
    pub fn in_flight(&self) -> bool {
        self.in_flight_since.is_some()
    }

    /// Earliest time [`HealthTracker::poll`] can have something to do.
    pub fn next_event(&self) -> Timestamp {
        match self.in_flight_since {
            Some(t) => self.lost_deadline(t),
            None => self.next_probe,
        }
    }

    fn lost_deadline(&self, started: Timestamp) -> Timestamp {
        started + self.params.timeout + self.params.interval
    }

    /// Advances time: reports whether a probe must be started now (the
    /// tracker then considers it in flight) and whether an outstanding probe
    /// was declared lost (its result never arrived; counted as a failure).
    pub fn poll(&mut self, now: Timestamp) -> PollOutcome {
        let mut out = PollOutcome::default();
        if let Some(started) = self.in_flight_since {
            if now < self.lost_deadline(started) {
                return out;
            }
            out.lost = true;
            out.transition = self.record(false);
        }
        if now >= self.next_probe {
            self.in_flight_since = Some(now);
            self.next_probe = now + self.params.interval;
            out.start_probe = true;
        }
        out
    }

    /// Records the result of the outstanding probe.
    pub fn on_result(&mut self, _now: Timestamp, ok: bool) -> Option<Transition> {
        // A late result of a probe already counted as lost is ignored.
        self.in_flight_since?;
        self.record(ok)
    }

    fn record(&mut self, ok: bool) -> Option<Transition> {
        self.in_flight_since = None;
        if ok {
            self.fail_run = 0;
            self.ok_run = self.ok_run.saturating_add(1);
            if !self.healthy && self.ok_run >= self.params.rise {
                self.healthy = true;
                return Some(Transition::Up);
            }
        } else {
            self.ok_run = 0;
            self.fail_run = self.fail_run.saturating_add(1);
            if self.healthy && self.fail_run >= self.params.fall {
                self.healthy = false;
                return Some(Transition::Down);
            }
        }
        None
    }
}

/// Gossiped health of one service on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthEntry {
    /// VIP service index.
    pub service: ServiceIdx,
    /// Whether the local instance passes its health check (services without
    /// a check are always healthy).
    pub healthy: bool,
    /// Headroom weight of the node for this service (supplied by the lead).
    pub weight: u16,
}

/// Version byte of the health entry list encoding.
pub const HEALTH_CODEC_VERSION: u8 = 1;
/// Encoded size of one entry.
pub const ENTRY_LEN: usize = 6;

/// Health entry decoding failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HealthCodecError {
    /// Input shorter than its header or count says.
    #[error("truncated health entry list")]
    Truncated,
    /// Unknown encoding version.
    #[error("unsupported health encoding version {0}")]
    BadVersion(u8),
    /// Bytes after the last entry.
    #[error("trailing bytes after health entries")]
    Trailing,
    /// Reserved flag bits or reserved byte set.
    #[error("reserved bits set in health entry")]
    Reserved,
    /// More entries than the count field can express.
    #[error("too many health entries")]
    TooMany,
}

/// Encodes entries: `[version=1][count: u16 BE]` then per entry
/// `[service: u16 BE][flags: bit 0 = healthy][reserved = 0][weight: u16 BE]`.
pub fn encode_entries(entries: &[HealthEntry], out: &mut Vec<u8>) -> Result<(), HealthCodecError> {
    let count = u16::try_from(entries.len()).map_err(|_| HealthCodecError::TooMany)?;
    out.push(HEALTH_CODEC_VERSION);
    out.extend_from_slice(&count.to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.service.to_be_bytes());
        out.push(u8::from(e.healthy));
        out.push(0);
        out.extend_from_slice(&e.weight.to_be_bytes());
    }
    Ok(())
}

/// Decodes what [`encode_entries`] wrote; never panics.
pub fn decode_entries(buf: &[u8]) -> Result<Vec<HealthEntry>, HealthCodecError> {
    let [version, c0, c1, rest @ ..] = buf else {
        return Err(HealthCodecError::Truncated);
    };
    if *version != HEALTH_CODEC_VERSION {
        return Err(HealthCodecError::BadVersion(*version));
    }
    let count = usize::from(u16::from_be_bytes([*c0, *c1]));
    let need = count * ENTRY_LEN;
    if rest.len() < need {
        return Err(HealthCodecError::Truncated);
    }
    if rest.len() > need {
        return Err(HealthCodecError::Trailing);
    }
    rest.chunks_exact(ENTRY_LEN)
        .map(|c| {
            if c[2] & !1 != 0 || c[3] != 0 {
                return Err(HealthCodecError::Reserved);
            }
            Ok(HealthEntry {
                service: u16::from_be_bytes([c[0], c[1]]),
                healthy: c[2] & 1 == 1,
                weight: u16::from_be_bytes([c[4], c[5]]),
            })
        })
        .collect()
}

/// A health change reported by [`HealthMonitor::tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthChange {
    /// Service index.
    pub service: ServiceIdx,
    /// New state.
    pub transition: Transition,
}

/// Health monitor counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthStats {
    /// Probes handed to the prober.
    pub probes_started: u64,
    /// Probe results that succeeded.
    pub probes_ok: u64,
    /// Probe results that failed.
    pub probes_failed: u64,
    /// Probes whose result never arrived in time (counted as failures).
    pub probes_lost: u64,
    /// Probes the prober could not accept (queue full).
    pub submit_failures: u64,
}

#[derive(Debug)]
struct Check {
    service: ServiceIdx,
    request: ProbeRequest,
    tracker: HealthTracker,
    /// Token of the outstanding probe (late results of lost probes differ).
    pending: Option<u64>,
}

/// Health checks of one node's instances, driven by the control loop
/// (sans-IO: the caller runs the probes it asks for and hands back their
/// results).
#[derive(Debug)]
pub struct HealthMonitor {
    checks: Vec<Check>,
    services: usize,
    seq: u64,
    stats: HealthStats,
    /// Probes to start, oldest first.
    due: VecDeque<ProbeRequest>,
}

impl HealthMonitor {
    /// Monitor for every service with a health check; probes target
    /// `target_ip:port` (normally 127.0.0.1). The first probes are due at `now`.
    pub fn new(services: &[VipService], target_ip: Ipv4Addr, now: Timestamp) -> Self {
        let checks = services
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let hc = s.health_check.as_ref()?;
                let service = u16::try_from(i).ok()?;
                let addr = SocketAddr::V4(SocketAddrV4::new(target_ip, hc.port));
                let kind = match hc.kind {
                    HealthKind::Tcp => ProbeKind::Tcp,
                    HealthKind::Http => ProbeKind::Http {
                        path: hc.path.clone(),
                        host: s.vip.to_string(),
                    },
                };
                Some(Check {
                    service,
                    request: ProbeRequest {
                        token: u64::from(service),
                        addr,
                        kind,
                        timeout: hc.timeout,
                    },
                    tracker: HealthTracker::new(HealthParams::from(hc), now),
                    pending: None,
                })
            })
            .collect();
        HealthMonitor {
            checks,
            services: services.len(),
            seq: 0,
            stats: HealthStats::default(),
            due: VecDeque::new(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &HealthStats {
        &self.stats
    }

    /// Advances time: declares overdue probes lost and queues the probes that
    /// are due (taken with [`HealthMonitor::poll_probe`]). Returns the state
    /// changes.
    pub fn handle_timeout(&mut self, now: Timestamp) -> Vec<HealthChange> {
        let mut changes = Vec::new();
        for c in &mut self.checks {
            let p = c.tracker.poll(now);
            if p.lost {
                self.stats.probes_lost += 1;
            }
            if let Some(t) = p.transition {
                changes.push(HealthChange {
                    service: c.service,
                    transition: t,
                });
            }
            if p.start_probe {
                self.seq += 1;
                c.request.token = (self.seq << 16) | u64::from(c.service);
                c.pending = Some(c.request.token);
                self.due.push_back(c.request.clone());
            }
        }
        changes
    }

    /// The next probe to start, if one is due.
    pub fn poll_probe(&mut self) -> Option<ProbeRequest> {
        let r = self.due.pop_front()?;
        self.stats.probes_started += 1;
        Some(r)
    }

    /// The result of a probe [`HealthMonitor::poll_probe`] handed out.
    /// [`probe::ProbeFailure::NotStarted`] (the prober refused it) counts as
    /// a failed probe and as a submit failure. Results of unknown or lost
    /// probes are ignored.
    pub fn handle_result(&mut self, now: Timestamp, r: &ProbeResult) -> Option<HealthChange> {
        let c = self
            .checks
            .iter_mut()
            .find(|c| c.pending.is_some() && c.pending == Some(r.token))?;
        c.pending = None;
        match r.outcome {
            Ok(()) => self.stats.probes_ok += 1,
            Err(probe::ProbeFailure::NotStarted) => {
                self.stats.probes_started = self.stats.probes_started.saturating_sub(1);
                self.stats.submit_failures += 1;
            }
            Err(_) => self.stats.probes_failed += 1,
        }
        c.tracker
            .on_result(now, r.outcome.is_ok())
            .map(|transition| HealthChange {
                service: c.service,
                transition,
            })
    }

    /// Whether `service` is healthy locally (no check configured: healthy).
    pub fn is_healthy(&self, service: ServiceIdx) -> bool {
        self.checks
            .iter()
            .find(|c| c.service == service)
            .is_none_or(|c| c.tracker.is_healthy())
    }

    /// Entries to gossip: one per configured service, with the node's
    /// headroom weight.
    pub fn entries(&self, weight: u16) -> Vec<HealthEntry> {
        (0..self.services)
            .filter_map(|i| u16::try_from(i).ok())
            .map(|service| HealthEntry {
                service,
                healthy: self.is_healthy(service),
                weight,
            })
            .collect()
    }

    /// Earliest time `handle_timeout` has timed work to do.
    pub fn next_event(&self) -> Option<Timestamp> {
        self.checks.iter().map(|c| c.tracker.next_event()).min()
    }
}

#[cfg(test)]
mod tests;
