//! CPU enforcement backends: the seam between policy and the kernel.
//!
//! * [`CgroupBackend`] with [`CgroupVersion::V2`]: `cpu.weight` (1..=10000)
//!   and `cpu.max` for caps, where the v2 hierarchy has the `cpu` controller.
//! * [`CgroupBackend`] with [`CgroupVersion::V1`]: `cpu.shares` (2..=262144)
//!   and `cpu.cfs_quota_us` / `cpu.cfs_period_us` for caps.
//! * [`NiceBackend`]: `setpriority` on every thread, the last resort (no
//!   caps).
//!
//! The cgroup backend creates one parent cgroup and one child per job. It
//! never adopts a cgroup it did not create: a parent that exists at start
//! is taken over only when the state file ([`state`]) says a previous
//! headroomd of this boot created it and that headroomd no longer runs. Only processes of jobs with a CPU policy are moved, one at
//! a time through `cgroup.procs`; each process's original cgroup is recorded
//! and restored when the process leaves its job, when its job is removed
//! and on shutdown. Children forked inside a job cgroup inherit the original
//! of their nearest placed ancestor (or of the job's first process).
//! Enabling the v2 `cpu` controller requires writing `+cpu` to the
//! `cgroup.subtree_control` of the mount root; that is the only file outside
//! its own cgroups that the backend writes, and it is left enabled.
//!
//! [`CgroupBackend::simulated`] runs the same code against a plain
//! directory (files are created on write, `cgroup.procs` writes are
//! appended, directories removed recursively) so the logic is testable
//! without root.
//!
//! Modules: [`cgroup`] (both versions), [`cgroup_v1`] and [`cgroup_v2`]
//! (what differs), [`nice`], [`mounts`] (finding the hierarchies).

mod cgroup;
mod cgroup_v1;
mod cgroup_v2;
mod mounts;
mod nice;
pub mod state;

pub use cgroup::{parse_proc_cgroup, CgroupBackend, CgroupVersion};
pub use mounts::cgroup_mounts;
pub use nice::NiceBackend;
pub use state::Recovery;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Which backend is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// cgroup v2 `cpu` controller.
    CgroupV2,
    /// cgroup v1 `cpu` controller.
    CgroupV1,
    /// `setpriority` nice values.
    Nice,
}

/// Backend errors.
#[derive(Debug, Error)]
pub enum BackendError {
    /// A file-system operation on a cgroup or proc file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// Path involved.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The parent cgroup already exists; Headroom does not adopt cgroups it
    /// did not create (remove it, or configure another name).
    #[error("cgroup {0} already exists; refusing to adopt a cgroup Headroom did not create")]
    ParentExists(PathBuf),
    /// The parent cgroup exists at start and the state file does not say
    /// that a previous headroomd of this boot created it.
    #[error(
        "cgroup {path} already exists and {state} does not record it as left by a previous \
         headroomd; if no headroomd runs, move its processes out (echo PID > \
         <mount>/cgroup.procs) and rmdir its job cgroups and then it, or set [cpu] \
         cgroup_parent to another name"
    )]
    Unclaimed {
        /// The parent cgroup.
        path: PathBuf,
        /// The state file consulted.
        state: PathBuf,
    },
    /// The parent cgroup belongs to a headroomd that is still running.
    #[error("cgroup {path} is in use by a running headroomd (pid {pid})")]
    ParentInUse {
        /// The parent cgroup.
        path: PathBuf,
        /// The running owner.
        pid: u32,
    },
    /// The requested cgroup hierarchy has no `cpu` controller.
    #[error("no cpu controller in the cgroup hierarchy at {0}")]
    NoCpuController(PathBuf),
    /// The parent cgroup name is not a simple relative name.
    #[error("invalid parent cgroup name {0:?}")]
    InvalidParentName(String),
    /// The job has not been configured with `apply_job`.
    #[error("job {0:?} is not known to the backend")]
    UnknownJob(String),
    /// The process no longer exists.
    #[error("process {0} is gone")]
    ProcessGone(u32),
    /// `setpriority`/`getpriority` failed.
    #[error("{op} on pid {pid}: {source}")]
    Priority {
        /// `getpriority` or `setpriority`.
        op: &'static str,
        /// Thread id.
        pid: u32,
        /// Underlying error.
        source: io::Error,
    },
}

impl BackendError {
    /// True when the error only means a process exited.
    pub fn is_gone(&self) -> bool {
        match self {
            BackendError::ProcessGone(_) => true,
            BackendError::Priority { source, .. } => source.raw_os_error() == Some(libc::ESRCH),
            _ => false,
        }
    }
}

/// What to enforce for one job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobSettings {
    /// cgroup v2 weight (1..=10000) relative to the other jobs.
    pub weight: u32,
    /// Hard cap in cores, if any.
    pub cap_cores: Option<f64>,
    /// Total kernel load weight of the job against a nice-0 task (1024),
    /// used by the nice backend.
    pub kernel_weight: u64,
}

/// The enforcement seam.
pub trait CpuBackend: Send + std::fmt::Debug {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// Human-readable description (backend and location).
    fn describe(&self) -> String;
    /// Sets the weight of Headroom's parent against the rest of the server
    /// (v1 share units; see `policy`).
    fn set_parent_shares(&mut self, shares: u64) -> Result<(), BackendError>;
    /// Creates the job's container if needed and applies its settings.
    fn apply_job(&mut self, job: &str, settings: &JobSettings) -> Result<(), BackendError>;
    /// Moves a process into the job. `ancestors` lists the pids of its
    /// ancestors, nearest first, for inheriting an original placement.
    fn place(&mut self, job: &str, pid: u32, ancestors: &[u32]) -> Result<(), BackendError>;
    /// Returns a process to where it was before it was placed.
    fn release(&mut self, pid: u32) -> Result<(), BackendError>;
    /// Forgets a process that exited.
    fn forget(&mut self, pid: u32);
    /// A process that belongs to no enforced job but descends from a placed
    /// one inherited its placement at fork (a child of a job without
    /// `include_children`): return it to the nearest placed ancestor's
    /// original placement. Returns true if it was moved.
    fn release_inherited(&mut self, pid: u32, ancestors: &[u32]) -> Result<bool, BackendError>;
    /// The job a process is placed in, if any.
    fn placed_job(&self, pid: u32) -> Option<&str>;
    /// Releases all of the job's processes and removes its container.
    fn remove_job(&mut self, job: &str) -> Result<(), BackendError>;
    /// Removes every job and the parent; restores every process.
    fn shutdown(&mut self) -> Result<(), BackendError>;
    /// Called once at start, before the first tick: from now on, what the
    /// backend creates and moves is recorded in `state_file`, and what a
    /// previous headroomd left there (it died without shutting down) is
    /// taken over: the job cgroups of `jobs` (the jobs with a CPU policy)
    /// are kept with their processes, the others are removed and their
    /// processes restored. Backends that leave nothing behind do nothing.
    fn recover(&mut self, _state_file: &Path, _jobs: &[&str]) -> Result<Recovery, BackendError> {
        Ok(Recovery::default())
    }
    /// Brings the state file up to date (after each tick and reload).
    fn save_state(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
}

/// Which backend to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChoice {
    /// cgroup v2 if a v2 hierarchy has the cpu controller, else cgroup v1
    /// if a v1 cpu hierarchy is mounted, else nice.
    Auto,
    /// cgroup v2 at the given mount.
    CgroupV2(PathBuf),
    /// cgroup v1 at the given mount of the cpu controller.
    CgroupV1(PathBuf),
    /// nice values.
    Nice,
}

/// Builds the backend for `choice`; `parent` names Headroom's cgroup.
pub fn detect_backend(
    choice: &BackendChoice,
    parent: &str,
) -> Result<Box<dyn CpuBackend>, BackendError> {
    match choice {
        BackendChoice::CgroupV2(m) => {
            Ok(Box::new(CgroupBackend::new(CgroupVersion::V2, m, parent)?))
        }
        BackendChoice::CgroupV1(m) => {
            Ok(Box::new(CgroupBackend::new(CgroupVersion::V1, m, parent)?))
        }
        BackendChoice::Nice => Ok(Box::new(NiceBackend::new())),
        BackendChoice::Auto => {
            let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let (v2, v1) = cgroup_mounts(&mi);
            for m in v2 {
                if let Ok(b) = CgroupBackend::new(CgroupVersion::V2, &m, parent) {
                    return Ok(Box::new(b));
                }
            }
            for m in v1 {
                if let Ok(b) = CgroupBackend::new(CgroupVersion::V1, &m, parent) {
                    return Ok(Box::new(b));
                }
            }
            Ok(Box::new(NiceBackend::new()))
        }
    }
}

#[cfg(test)]
mod tests;
