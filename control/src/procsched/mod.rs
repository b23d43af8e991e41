//! The process scheduler: application detection and CPU shares.
//!
//! On every low-frequency tick of the control thread, [`ProcessScheduler::tick`]
//! 1. scans `/proc` incrementally ([`scan`]),
//! 2. assigns new processes to jobs by their process rules ([`detect`]),
//! 3. measures each job's CPU (cores used over the tick) and memory,
//! 4. computes this server's per-job CPU targets from the job policies, the
//!    local demand and the other nodes' [`PoolCpuState`] entries ([`policy`]),
//!    raising the *insufficient resources* alarm when bookings exceed what
//!    exists (re-checked on every tick),
//! 5. enforces the targets through a [`CpuBackend`] ([`backend`]): cgroup v2,
//!    cgroup v1 or nice.
//!
//! Only processes of jobs with a CPU policy are moved; unmanaged processes
//! and kernel threads are never touched. Every moved process is returned to
//! its original cgroup when it leaves its job, when its job disappears on
//! [`ProcessScheduler::reload`] and on [`ProcessScheduler::shutdown`].
//!
//! What the cgroup backend created and moved is recorded in a state file
//! ([`backend::state`]), so that after a headroomd that died without
//! shutting down, [`ProcessScheduler::recover`] at the next start takes its
//! cgroups over instead of refusing them or losing where processes came
//! from.
//!
//! # Driving it from the daemon
//!
//! ```text
//! let backend = detect_backend(&BackendChoice::Auto, "headroom")?; // log backend.describe()
//! let mut ps = ProcessScheduler::new(&jobs, backend)?;
//! ps.recover(Path::new("/var/lib/headroom/cpu-headroom.json"))?; // before the first tick
//! // every low-frequency tick (a few seconds), on the control thread:
//! let peers: Vec<PoolCpuState> = live_peer_entries      // bytes gossiped by the *other* live nodes
//!     .iter()
//!     .filter_map(|b| ps.decode_peer_entry(b))
//!     .collect();
//! if let Err(e) = ps.tick(Timestamp::now(), &peers) { tracing::warn!(%e, "process scheduler") }
//! publish(ps.snapshot());                            // metrics, status
//! registration.cpu_entry = ps.local_pool_entry();      // gossip this node's entry
//! // on configuration reload: ps.reload(&new_jobs)?;  on exit: ps.shutdown()?;
//! ```

pub mod backend;
pub mod detect;
pub mod entry;
pub mod policy;
pub mod scan;

pub use backend::{
    detect_backend, BackendChoice, BackendError, BackendKind, CgroupBackend, CgroupVersion,
    CpuBackend, JobSettings, NiceBackend, Recovery,
};
pub use entry::{EntryError, JobDemand, PoolCpuState};

use detect::{classify, Assignment, CompiledJob, Via};
use headroom_clock::Timestamp;
use headroom_config::process::{CpuPolicy, ProcessConfigError, ProcessJob};
use nix::unistd::SysconfVar;
use policy::{JobInput, PolicyOutcome};
use scan::{ScanStats, Scanner};
use std::collections::{HashMap, HashSet};
use thiserror::Error;

/// Errors of the process scheduler.
#[derive(Debug, Error)]
pub enum ProcSchedError {
    /// The job configuration is invalid; the previous one stays in force.
    #[error("invalid process job configuration: {0}")]
    Config(#[from] ProcessConfigError),
    /// `/proc` could not be listed.
    #[error("scanning processes failed: {0}")]
    Scan(std::io::Error),
    /// Enforcement failed for at least one job or process (the rest of the
    /// tick was carried out; `count` failures, the first one given).
    #[error("cpu enforcement failed {count} time(s), first: {first}")]
    Enforce {
        /// Number of failures in this call.
        count: usize,
        /// The first failure.
        first: BackendError,
    },
    /// What a previous headroomd left could not be taken over.
    #[error("{0}")]
    Recover(BackendError),
    /// The scheduler was shut down.
    #[error("process scheduler is shut down")]
    ShutDown,
}

/// Counters of the process scheduler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcSchedStats {
    /// Ticks run.
    pub ticks: u64,
    /// Scanner counters (new, exited, reused pids, races, parse errors).
    pub scan: ScanStats,
    /// Processes moved into a job's cgroup (or re-prioritised).
    pub moves: u64,
    /// Processes returned to their original placement.
    pub releases: u64,
    /// Processes that belong to no enforced job but were forked inside a
    /// job's cgroup, returned to their ancestors' original placement.
    pub strays_released: u64,
    /// Processes that exited while being moved or released.
    pub move_races: u64,
    /// Enforcement operations that failed.
    pub backend_errors: u64,
    /// Times the insufficient-resources alarm was raised (transitions
    /// from clear to raised).
    pub insufficient_alarms: u64,
    /// Ticks during which the insufficient-resources alarm was active.
    pub insufficient_ticks: u64,
    /// Successful reloads.
    pub reloads: u64,
    /// Rejected reloads (invalid configuration).
    pub reload_errors: u64,
    /// Peer pool entries that could not be decoded.
    pub entry_decode_errors: u64,
    /// Processes found in the job cgroups of a previous headroomd that did
    /// not shut down, and left there ([`ProcessScheduler::recover`]).
    pub recovered_processes: u64,
}

/// Per-job monitoring and enforcement state.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSnapshot {
    /// Job name.
    pub name: String,
    /// The job's CPU policy.
    pub policy: Option<CpuPolicy>,
    /// Pids of the job's processes on this server (its instance).
    pub pids: Vec<u32>,
    /// CPU used over the last tick, in cores.
    pub cores_used: f64,
    /// Total CPU time of the current processes, seconds.
    pub cpu_seconds: f64,
    /// Resident memory of the processes, bytes.
    pub rss_bytes: u64,
    /// Target share of this server, percent (after any scaling).
    pub target_percent: f64,
    /// Share requested by the policy on this server, percent.
    pub requested_percent: f64,
    /// cgroup v2 weight applied (v1 shares = weight * 1024 / 100).
    pub weight: u32,
    /// Cap in cores, if any.
    pub cap_cores: Option<f64>,
    /// Instances of the job in the pool (pool policies).
    pub pool_instances: usize,
    /// Sum of the effective demand of all instances, cores.
    pub pool_demand_cores: f64,
    /// Its processes that exited here.
    pub exits: JobExits,
}

/// Processes that belong to no job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnmanagedSnapshot {
    /// Number of user processes (kernel threads excluded).
    pub processes: usize,
    /// CPU used over the last tick, in cores.
    pub cores_used: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Share of the server left to them, percent.
    pub left_percent: f64,
    /// That share divided equally among them, percent each ([0095]).
    pub percent_each: f64,
}

/// Everything the operator sees about the process scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcSchedSnapshot {
    /// Enforcement backend.
    pub backend: BackendKind,
    /// Backend description (e.g. the cgroup path).
    pub backend_description: String,
    /// Cores of this server.
    pub local_cores: f64,
    /// Cores of the live pool.
    pub pool_cores: f64,
    /// One entry per configured job, in configuration order.
    pub jobs: Vec<JobSnapshot>,
    /// Unmanaged processes.
    pub unmanaged: UnmanagedSnapshot,
    /// Sum of the jobs' targets, percent of this server.
    pub booked_percent: f64,
    /// The insufficient-resources alarm is raised.
    pub insufficient_resources: bool,
    /// Why, when raised.
    pub insufficient_reason: Option<String>,
    /// Counters.
    pub stats: ProcSchedStats,
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// New processes seen.
    pub new_processes: usize,
    /// Processes that exited.
    pub exited_processes: usize,
    /// Processes moved into jobs.
    pub moved: usize,
    /// Processes released from jobs.
    pub released: usize,
    /// The insufficient-resources alarm is raised.
    pub insufficient: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cores: f64,
    cpu_ticks_total: u64,
    rss_pages: u64,
    count: usize,
}

/// The process scheduler (see the module documentation).
#[derive(Debug)]
pub struct ProcessScheduler {
    jobs: Vec<CompiledJob>,
    backend: Box<dyn CpuBackend>,
    scanner: Scanner,
    assign: HashMap<u32, Assignment>,
    local_cores: f64,
    clk_tck: f64,
    page_size: u64,
    self_pid: u32,
    last_tick: Option<Timestamp>,
    usage: Vec<Usage>,
    unmanaged: Usage,
    outcome: Option<PolicyOutcome>,
    insufficient: bool,
    stats: ProcSchedStats,
    shut_down: bool,
    /// Whether ticks enforce (false: monitor-only, see [`Self::set_enforce`]).
    enforce: bool,
    /// Per job name: processes of it that exited here (kept across reloads).
    exits: HashMap<String, JobExits>,
}

/// Processes of one job that exited on this server since the scheduler
/// started: a count that only grows, and the latest one, so the pool's
/// master can turn a change of the count into a trigger event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobExits {
    /// Processes that exited.
    pub count: u64,
    /// The latest one's pid.
    pub last_pid: u32,
    /// The latest one's name (`comm`).
    pub last_comm: String,
}

/// A positive `sysconf` value, or `default`.
pub(crate) fn sysconf(var: nix::unistd::SysconfVar, default: i64) -> i64 {
    match nix::unistd::sysconf(var) {
        Ok(Some(v)) if v > 0 => v,
        _ => default,
    }
}

fn compile(jobs: &[ProcessJob]) -> Result<Vec<CompiledJob>, ProcessConfigError> {
    headroom_config::process::validate_jobs(jobs)?;
    jobs.iter().map(CompiledJob::new).collect()
}

impl ProcessScheduler {
    /// Creates a scheduler for `jobs` (configuration order = precedence)
    /// enforcing through `backend`. Nothing is touched until the first tick.
    pub fn new(jobs: &[ProcessJob], backend: Box<dyn CpuBackend>) -> Result<Self, ProcSchedError> {
        let jobs = compile(jobs)?;
        Ok(ProcessScheduler {
            usage: vec![Usage::default(); jobs.len()],
            jobs,
            backend,
            scanner: Scanner::new(),
            assign: HashMap::new(),
            local_cores: sysconf(SysconfVar::_NPROCESSORS_ONLN, 1) as f64,
            clk_tck: sysconf(SysconfVar::CLK_TCK, 100) as f64,
            page_size: sysconf(SysconfVar::PAGE_SIZE, 4096) as u64,
            self_pid: std::process::id(),
            last_tick: None,
            unmanaged: Usage::default(),
            outcome: None,
            insufficient: false,
            stats: ProcSchedStats::default(),
            shut_down: false,
            exits: HashMap::new(),
            enforce: true,
        })
    }

    /// Uses another proc root (tests with a fake `/proc`).
    pub fn with_scanner(mut self, scanner: Scanner) -> Self {
        self.scanner = scanner;
        self
    }

    /// Overrides the number of cores this server contributes.
    pub fn with_local_cores(mut self, cores: f64) -> Self {
        if cores.is_finite() && cores > 0.0 {
            self.local_cores = cores;
        }
        self
    }

    /// The enforcement backend in use.
    pub fn backend_kind(&self) -> BackendKind {
        self.backend.kind()
    }

    /// Job name a process is assigned to, if any.
    pub fn job_of(&self, pid: u32) -> Option<&str> {
        self.assign
            .get(&pid)
            .map(|a| self.jobs[a.job].config.name.as_str())
    }

    fn ancestors(&self, pid: u32) -> Vec<u32> {
        let mut v = Vec::new();
        let mut cur = self.scanner.get(pid).map(|p| p.ppid);
        while let Some(p) = cur {
            if p <= 1 || v.len() >= 64 || v.contains(&p) {
                break;
            }
            v.push(p);
            cur = self.scanner.get(p).map(|i| i.ppid);
        }
        v
    }

    /// Monitor-only when false: ticks still detect, measure and compute
    /// every job's target, but set no shares, and the next tick moves every
    /// process Headroom placed back where it was.
    pub fn set_enforce(&mut self, on: bool) {
        if self.enforce != on {
            tracing::info!(enforce = on, "cpu enforcement switched");
        }
        self.enforce = on;
    }

    /// One low-frequency tick: scan, detect, measure, compute, enforce.
    ///
    /// `pool_view` holds the decoded [`PoolCpuState`] entries of the
    /// **other** live nodes (not this one). On enforcement failures the
    /// tick still completes and the first failure is returned; the
    /// caller logs it and keeps ticking.
    pub fn tick(
        &mut self,
        now: Timestamp,
        pool_view: &[PoolCpuState],
    ) -> Result<TickReport, ProcSchedError> {
        if self.shut_down {
            return Err(ProcSchedError::ShutDown);
        }
        let mut report = TickReport::default();
        let delta = self.scanner.scan().map_err(ProcSchedError::Scan)?;
        self.stats.ticks += 1;
        report.new_processes = delta.new.len();
        report.exited_processes = delta.exited.len();
        for (i, pid) in delta.exited.iter().enumerate() {
            if let Some(a) = self.assign.get(pid) {
                let e = self
                    .exits
                    .entry(self.jobs[a.job].config.name.clone())
                    .or_default();
                e.count += 1;
                e.last_pid = *pid;
                e.last_comm = delta.exited_comm.get(i).cloned().unwrap_or_default();
            }
            if !delta.new.contains(pid) {
                self.assign.remove(pid);
            }
            self.backend.forget(*pid);
        }
        let mut fresh = delta.new.clone();
        fresh.extend(&delta.changed);
        classify(
            &self.jobs,
            self.scanner.processes(),
            &fresh,
            &mut self.assign,
            &HashMap::new(),
        );
        self.assign.remove(&self.self_pid);
        let fresh: HashSet<u32> = fresh.into_iter().collect();
        let new_set: HashSet<u32> = delta.new.iter().copied().collect();

        // Measure.
        let dt = self
            .last_tick
            .map(|t| now.saturating_duration_since(t).as_secs_f64())
            .filter(|d| *d > 0.0);
        self.last_tick = Some(now);
        let mut usage = vec![Usage::default(); self.jobs.len()];
        let mut unmanaged = Usage::default();
        for p in self.scanner.processes().values() {
            let u = match self.assign.get(&p.pid) {
                Some(a) => &mut usage[a.job],
                None if p.kernel_thread => continue,
                None => &mut unmanaged,
            };
            // New processes contribute from their second scan on.
            let d = if new_set.contains(&p.pid) {
                0
            } else {
                p.delta_ticks()
            };
            if let Some(dt) = dt {
                u.cores += d as f64 / self.clk_tck / dt;
            }
            u.cpu_ticks_total += p.cpu_ticks;
            u.rss_pages += p.rss_pages;
            u.count += 1;
        }

        // Compute.
        let inputs: Vec<JobInput> = self
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let granted = self
                    .outcome
                    .as_ref()
                    .and_then(|o| o.jobs.get(i))
                    .filter(|t| t.name == j.config.name)
                    .map_or(0.0, |t| t.percent * self.local_cores / 100.0);
                JobInput {
                    name: j.config.name.clone(),
                    share: j.config.cpu.map(|c| c.share),
                    cap_percent: j.config.cpu.and_then(|c| c.cap_percent),
                    present: usage[i].count > 0,
                    used_cores: usage[i].cores,
                    wants_more: granted > 0.0 && usage[i].cores >= 0.9 * granted,
                }
            })
            .collect();
        let outcome = policy::compute(self.local_cores, &inputs, pool_view);
        if outcome.insufficient {
            self.stats.insufficient_ticks += 1;
            if !self.insufficient {
                self.stats.insufficient_alarms += 1;
                tracing::warn!(
                    reason = outcome.insufficient_reason.as_deref().unwrap_or(""),
                    "insufficient resources: cpu policies cannot all be met"
                );
            }
        } else if self.insufficient {
            tracing::info!("insufficient resources alarm cleared: cpu policies met");
        }
        self.insufficient = outcome.insufficient;
        report.insufficient = outcome.insufficient;

        // Enforce.
        let mut errors: Vec<BackendError> = Vec::new();
        let enforced: Vec<bool> = self
            .jobs
            .iter()
            .zip(&usage)
            .map(|(j, u)| self.enforce && j.config.cpu.is_some() && u.count > 0)
            .collect();
        let mut ready = vec![false; self.jobs.len()];
        if enforced.iter().any(|e| *e) {
            let shares = policy::parent_shares_for_booked(outcome.booked_percent);
            if let Err(e) = self.backend.set_parent_shares(shares) {
                errors.push(e);
            }
            for (i, t) in outcome.jobs.iter().enumerate() {
                if !enforced[i] {
                    continue;
                }
                let settings = JobSettings {
                    weight: t.weight,
                    cap_cores: t.cap_cores,
                    kernel_weight: if outcome.booked_percent > 0.0 {
                        (shares as f64 * t.percent / outcome.booked_percent).round() as u64
                    } else {
                        1024
                    },
                };
                match self.backend.apply_job(&t.name, &settings) {
                    Ok(()) => ready[i] = true,
                    Err(e) => errors.push(e),
                }
            }
        }
        let mut pids: Vec<u32> = self.scanner.processes().keys().copied().collect();
        pids.sort_by_key(|p| self.scanner.get(*p).map(|i| i.start_time));
        for pid in pids {
            let want = self
                .assign
                .get(&pid)
                .map(|a| a.job)
                .filter(|j| enforced[*j]);
            let have = self.backend.placed_job(pid).map(str::to_string);
            match want {
                Some(j) => {
                    let name = self.jobs[j].config.name.clone();
                    if have.as_deref() == Some(name.as_str()) || !ready[j] {
                        continue;
                    }
                    let anc = self.ancestors(pid);
                    match self.backend.place(&name, pid, &anc) {
                        Ok(()) => {
                            self.stats.moves += 1;
                            report.moved += 1;
                        }
                        Err(e) if e.is_gone() => self.stats.move_races += 1,
                        Err(e) => errors.push(e),
                    }
                }
                None if have.is_none() && fresh.contains(&pid) => {
                    if self.scanner.get(pid).is_none_or(|p| p.kernel_thread) {
                        continue;
                    }
                    let anc = self.ancestors(pid);
                    match self.backend.release_inherited(pid, &anc) {
                        Ok(true) => {
                            self.stats.strays_released += 1;
                            report.released += 1;
                        }
                        Ok(false) => {}
                        Err(e) if e.is_gone() => self.stats.move_races += 1,
                        Err(e) => errors.push(e),
                    }
                }
                None if have.is_some() => match self.backend.release(pid) {
                    Ok(()) => {
                        self.stats.releases += 1;
                        report.released += 1;
                    }
                    Err(e) if e.is_gone() => self.stats.move_races += 1,
                    Err(e) => errors.push(e),
                },
                None => {}
            }
        }

        self.usage = usage;
        self.unmanaged = unmanaged;
        self.outcome = Some(outcome);
        self.stats.scan = self.scanner.stats().clone();
        if let Err(e) = self.backend.save_state() {
            errors.push(e);
        }
        self.finish(errors).map(|()| report)
    }

    fn finish(&mut self, mut errors: Vec<BackendError>) -> Result<(), ProcSchedError> {
        self.stats.backend_errors += errors.len() as u64;
        for e in &errors {
            tracing::warn!(error = %e, "cpu enforcement failed");
        }
        if errors.is_empty() {
            Ok(())
        } else {
            let count = errors.len();
            Err(ProcSchedError::Enforce {
                count,
                first: errors.swap_remove(0),
            })
        }
    }

    /// Replaces the job definitions. On an invalid configuration the old one
    /// stays and an error is returned. Jobs that disappear (or lose their CPU
    /// policy) have their processes restored and their cgroup removed at
    /// once; all processes are classified again, and the next tick moves
    /// them to their new jobs.
    pub fn reload(&mut self, jobs: &[ProcessJob]) -> Result<(), ProcSchedError> {
        if self.shut_down {
            return Err(ProcSchedError::ShutDown);
        }
        let new = match compile(jobs) {
            Ok(n) => n,
            Err(e) => {
                self.stats.reload_errors += 1;
                tracing::warn!(error = %e, "process job reload rejected");
                return Err(e.into());
            }
        };
        let mut errors = Vec::new();
        for old in &self.jobs {
            let keeps = new
                .iter()
                .any(|n| n.config.name == old.config.name && n.config.cpu.is_some());
            if old.config.cpu.is_some() && !keeps {
                if let Err(e) = self.backend.remove_job(&old.config.name) {
                    errors.push(e);
                }
            }
        }
        let previous: HashMap<u32, (String, Via)> = self
            .assign
            .iter()
            .map(|(pid, a)| (*pid, (self.jobs[a.job].config.name.clone(), a.via)))
            .collect();
        self.jobs = new;
        self.assign.clear();
        let pids: Vec<u32> = self.scanner.processes().keys().copied().collect();
        classify(
            &self.jobs,
            self.scanner.processes(),
            &pids,
            &mut self.assign,
            &previous,
        );
        self.assign.remove(&self.self_pid);
        self.usage = vec![Usage::default(); self.jobs.len()];
        self.outcome = None;
        self.stats.reloads += 1;
        tracing::info!(jobs = self.jobs.len(), "process jobs reloaded");
        if let Err(e) = self.backend.save_state() {
            errors.push(e);
        }
        self.finish(errors)
    }

    /// Called once at start, before the first tick: records what the backend
    /// creates and moves in `state_file` from now on, and takes over what a
    /// previous headroomd that did not shut down left there (see
    /// [`CpuBackend::recover`]): the cgroups of jobs that still have a CPU
    /// policy are kept with their processes (the first tick re-applies
    /// their settings and releases processes that no longer match), the
    /// others are removed and their processes restored. Fails when another
    /// headroomd runs with the same cgroups, or when the parent cgroup
    /// exists with no record of a previous run.
    pub fn recover(&mut self, state_file: &std::path::Path) -> Result<Recovery, ProcSchedError> {
        let keep: Vec<&str> = self
            .jobs
            .iter()
            .filter(|j| j.config.cpu.is_some())
            .map(|j| j.config.name.as_str())
            .collect();
        let r = self
            .backend
            .recover(state_file, &keep)
            .map_err(ProcSchedError::Recover)?;
        self.stats.recovered_processes += r.processes_adopted as u64;
        self.stats.releases += r.processes_restored as u64;
        Ok(r)
    }

    /// Restores every process and removes every Headroom cgroup. Further
    /// ticks fail with [`ProcSchedError::ShutDown`].
    pub fn shutdown(&mut self) -> Result<(), ProcSchedError> {
        if self.shut_down {
            return Ok(());
        }
        self.shut_down = true;
        let r = self.backend.shutdown();
        self.assign.clear();
        match r {
            Ok(()) => Ok(()),
            Err(e) => self.finish(vec![e]),
        }
    }

    /// Decodes a peer's gossiped entry, counting failures.
    pub fn decode_peer_entry(&mut self, bytes: &[u8]) -> Option<PoolCpuState> {
        match PoolCpuState::decode(bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                self.stats.entry_decode_errors += 1;
                tracing::warn!(error = %e, "ignoring undecodable pool cpu entry");
                None
            }
        }
    }

    /// This node's entry for the exchange, as a struct.
    pub fn local_pool_state(&self) -> PoolCpuState {
        let jobs = self
            .jobs
            .iter()
            .enumerate()
            .filter(|(i, _)| self.usage.get(*i).is_some_and(|u| u.count > 0))
            .map(|(i, j)| {
                let granted = self
                    .outcome
                    .as_ref()
                    .and_then(|o| o.jobs.get(i))
                    .map_or(0.0, |t| t.percent * self.local_cores / 100.0);
                let used = self.usage[i].cores;
                JobDemand {
                    job: j.config.name.clone(),
                    demand_cores: used as f32,
                    granted_cores: granted as f32,
                    wants_more: granted > 0.0 && used >= 0.9 * granted,
                }
            })
            .collect();
        PoolCpuState {
            cores_available: self.local_cores as f32,
            jobs,
        }
    }

    /// This node's entry for the exchange, encoded (see [`entry`]).
    pub fn local_pool_entry(&self) -> Vec<u8> {
        self.local_pool_state().encode()
    }

    /// Monitoring snapshot.
    pub fn snapshot(&self) -> ProcSchedSnapshot {
        let mut pids: Vec<Vec<u32>> = vec![Vec::new(); self.jobs.len()];
        for (pid, a) in &self.assign {
            pids[a.job].push(*pid);
        }
        let jobs = self
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let u = self.usage.get(i).copied().unwrap_or_default();
                let t = self.outcome.as_ref().and_then(|o| o.jobs.get(i));
                let mut p = std::mem::take(&mut pids[i]);
                p.sort_unstable();
                JobSnapshot {
                    name: j.config.name.clone(),
                    policy: j.config.cpu,
                    pids: p,
                    cores_used: u.cores,
                    cpu_seconds: u.cpu_ticks_total as f64 / self.clk_tck,
                    rss_bytes: u.rss_pages * self.page_size,
                    target_percent: t.map_or(0.0, |t| t.percent),
                    requested_percent: t.map_or(0.0, |t| t.requested_percent),
                    weight: t.map_or(0, |t| t.weight),
                    cap_cores: t.and_then(|t| t.cap_cores),
                    pool_instances: t.map_or(0, |t| t.instances),
                    pool_demand_cores: t.map_or(0.0, |t| t.pool_demand_cores),
                    exits: self.exits.get(&j.config.name).cloned().unwrap_or_default(),
                }
            })
            .collect();
        let left = self.outcome.as_ref().map_or(100.0, |o| o.unmanaged_percent);
        ProcSchedSnapshot {
            backend: self.backend.kind(),
            backend_description: self.backend.describe(),
            local_cores: self.local_cores,
            pool_cores: self
                .outcome
                .as_ref()
                .map_or(self.local_cores, |o| o.pool_cores),
            jobs,
            unmanaged: UnmanagedSnapshot {
                processes: self.unmanaged.count,
                cores_used: self.unmanaged.cores,
                rss_bytes: self.unmanaged.rss_pages * self.page_size,
                left_percent: left,
                percent_each: if self.unmanaged.count > 0 {
                    left / self.unmanaged.count as f64
                } else {
                    0.0
                },
            },
            booked_percent: self.outcome.as_ref().map_or(0.0, |o| o.booked_percent),
            insufficient_resources: self.insufficient,
            insufficient_reason: self
                .outcome
                .as_ref()
                .and_then(|o| o.insufficient_reason.clone()),
            stats: self.stats.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
