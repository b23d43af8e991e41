//! CPU enforcement backends: the seam between policy and the kernel.
//!
//! * [`CgroupBackend`] with [`CgroupVersion::V2`]: `cpu.weight` (1..=10000)
//!   and `cpu.max` for caps, where the v2 hierarchy has the `cpu` controller.
//! * [`CgroupBackend`] with [`CgroupVersion::V1`]: `cpu.shares` (2..=262144)
//!   and `cpu.cfs_quota_us` / `cpu.cfs_period_us` for caps.
//! * [`NiceBackend`]: `setpriority` on every thread, the last resort (no
//!   caps).
//!
//! The cgroup backend creates one parent cgroup (refusing to start if it
//! already exists, so it never adopts a cgroup it did not create) and one
//! child per job. Only processes of jobs with a CPU policy are moved, one at
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

use super::policy::{kernel_weight_to_nice, v1_shares_to_v2_weight, v2_weight_to_v1_shares};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
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
}

/// cgroup hierarchy version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Legacy per-controller hierarchy.
    V1,
    /// Unified hierarchy.
    V2,
}

#[derive(Debug, Default)]
struct JobCg {
    /// Original cgroup of the first process placed (fallback for
    /// processes forked inside the job cgroup).
    fallback_original: Option<String>,
    applied: Option<(u32, Option<u64>)>,
}

#[derive(Debug)]
struct Placed {
    job: String,
    original: String,
}

/// Enforcement through a cgroup `cpu` controller.
#[derive(Debug)]
pub struct CgroupBackend {
    version: CgroupVersion,
    mount: PathBuf,
    parent: String,
    proc_root: PathBuf,
    simulated: bool,
    parent_created: bool,
    parent_shares: Option<u64>,
    jobs: BTreeMap<String, JobCg>,
    placed: HashMap<u32, Placed>,
}

const PERIOD_US: u64 = 100_000;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackendError + 'a {
    move |source| BackendError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl CgroupBackend {
    /// A backend on a real cgroup mount. `parent` is the name of the
    /// cgroup Headroom creates directly under the mount (e.g.
    /// `headroom`). Fails if the hierarchy has no cpu controller.
    pub fn new(
        version: CgroupVersion,
        mount: impl Into<PathBuf>,
        parent: &str,
    ) -> Result<Self, BackendError> {
        let b = Self::build(version, mount.into(), parent, PathBuf::from("/proc"), false)?;
        let probe = match version {
            CgroupVersion::V1 => b.mount.join("cpu.shares").exists(),
            CgroupVersion::V2 => fs::read_to_string(b.mount.join("cgroup.controllers"))
                .map(|s| s.split_whitespace().any(|c| c == "cpu"))
                .unwrap_or(false),
        };
        if !probe {
            return Err(BackendError::NoCpuController(b.mount.clone()));
        }
        Ok(b)
    }

    /// A backend on a plain directory standing in for a cgroup mount, with a
    /// fake proc root (tests).
    pub fn simulated(
        version: CgroupVersion,
        mount: impl Into<PathBuf>,
        parent: &str,
        proc_root: impl Into<PathBuf>,
    ) -> Result<Self, BackendError> {
        Self::build(version, mount.into(), parent, proc_root.into(), true)
    }

    fn build(
        version: CgroupVersion,
        mount: PathBuf,
        parent: &str,
        proc_root: PathBuf,
        simulated: bool,
    ) -> Result<Self, BackendError> {
        if headroom_config::process::validate_job_name(parent).is_err() {
            return Err(BackendError::InvalidParentName(parent.to_string()));
        }
        Ok(CgroupBackend {
            version,
            mount,
            parent: parent.to_string(),
            proc_root,
            simulated,
            parent_created: false,
            parent_shares: None,
            jobs: BTreeMap::new(),
            placed: HashMap::new(),
        })
    }

    /// Removes a parent cgroup left behind by a Headroom instance that
    /// died without shutting down (for example after SIGKILL), so that
    /// [`ParentExists`](BackendError::ParentExists) does not block the next
    /// start. The original cgroups of its processes are unknown: they are
    /// moved to the root of the hierarchy. Only call this on an explicit
    /// operator request or when the name is known to be Headroom's own.
    /// Returns the number of processes moved.
    pub fn reclaim_stale_parent(&self) -> Result<usize, BackendError> {
        let p = self.parent_path();
        if self.parent_created || !p.is_dir() {
            return Ok(0);
        }
        let mut moved = 0;
        let rd = fs::read_dir(&p).map_err(io_err("readdir", &p))?;
        for ent in rd.flatten() {
            let dir = ent.path();
            if !dir.is_dir() {
                continue;
            }
            for pid in self.read_procs(&dir) {
                match self.move_pid(&self.mount, pid) {
                    Ok(()) => moved += 1,
                    Err(BackendError::ProcessGone(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            self.remove_dir(&dir)?;
        }
        for pid in self.read_procs(&p) {
            match self.move_pid(&self.mount, pid) {
                Ok(()) => moved += 1,
                Err(BackendError::ProcessGone(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.remove_dir(&p)?;
        tracing::warn!(cgroup = %p.display(), moved, "reclaimed stale headroom cgroup");
        Ok(moved)
    }

    fn remove_dir(&self, dir: &Path) -> Result<(), BackendError> {
        let r = if self.simulated {
            fs::remove_dir_all(dir)
        } else {
            fs::remove_dir(dir)
        };
        r.map_err(io_err("rmdir", dir))
    }

    /// Path of Headroom's parent cgroup.
    pub fn parent_path(&self) -> PathBuf {
        self.mount.join(&self.parent)
    }

    /// Path of a job's cgroup.
    pub fn job_path(&self, job: &str) -> PathBuf {
        self.parent_path().join(job)
    }

    fn cg_path(&self, rel: &str) -> PathBuf {
        self.mount.join(rel.trim_start_matches('/'))
    }

    fn write(&self, path: &Path, content: &str) -> Result<(), BackendError> {
        let mut f = if self.simulated {
            fs::OpenOptions::new()
                .create(true)
                .append(path.ends_with("cgroup.procs"))
                .truncate(!path.ends_with("cgroup.procs"))
                .write(true)
                .open(path)
        } else {
            fs::OpenOptions::new().write(true).open(path)
        }
        .map_err(io_err("open", path))?;
        let data = if self.simulated && path.ends_with("cgroup.procs") {
            format!("{content}\n")
        } else {
            content.to_string()
        };
        f.write_all(data.as_bytes()).map_err(io_err("write", path))
    }

    fn move_pid(&self, dir: &Path, pid: u32) -> Result<(), BackendError> {
        match self.write(&dir.join("cgroup.procs"), &pid.to_string()) {
            Err(BackendError::Io { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {
                Err(BackendError::ProcessGone(pid))
            }
            r => r,
        }
    }

    fn ensure_parent(&mut self) -> Result<(), BackendError> {
        if self.parent_created {
            return Ok(());
        }
        let p = self.parent_path();
        if p.exists() {
            return Err(BackendError::ParentExists(p));
        }
        if self.version == CgroupVersion::V2 {
            self.enable_cpu(&self.mount.clone())?;
        }
        fs::create_dir(&p).map_err(io_err("mkdir", &p))?;
        self.parent_created = true;
        if self.version == CgroupVersion::V2 {
            self.enable_cpu(&p)?;
        }
        tracing::info!(cgroup = %p.display(), "created headroom cpu cgroup");
        Ok(())
    }

    fn enable_cpu(&self, dir: &Path) -> Result<(), BackendError> {
        let f = dir.join("cgroup.subtree_control");
        let cur = fs::read_to_string(&f).unwrap_or_default();
        if cur.split_whitespace().any(|c| c == "cpu") {
            return Ok(());
        }
        self.write(&f, "+cpu")
    }

    /// The current cgroup (path relative to the mount) of a process in this
    /// backend's hierarchy.
    pub fn current_cgroup(&self, pid: u32) -> Result<String, BackendError> {
        let path = self.proc_root.join(pid.to_string()).join("cgroup");
        let text = fs::read_to_string(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) {
                BackendError::ProcessGone(pid)
            } else {
                BackendError::Io {
                    op: "read",
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        parse_proc_cgroup(&text, self.version).ok_or(BackendError::Io {
            op: "parse",
            path,
            source: io::Error::new(io::ErrorKind::InvalidData, "no cpu hierarchy line"),
        })
    }

    fn is_ours(&self, rel: &str) -> bool {
        let ours = format!("/{}", self.parent);
        rel == ours || rel.starts_with(&format!("{ours}/"))
    }

    fn read_procs(&self, dir: &Path) -> Vec<u32> {
        let mut v: Vec<u32> = fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn restore_to(&self, pid: u32, original: &str) -> Result<(), BackendError> {
        let mut dir = self.cg_path(original);
        if !dir.is_dir() || self.is_ours(original) {
            dir = self.mount.clone();
        }
        match self.move_pid(&dir, pid) {
            Err(BackendError::ProcessGone(_)) => Ok(()),
            r => r,
        }
    }
}

/// Extracts the cgroup path of the cpu hierarchy from `/proc/PID/cgroup`.
pub fn parse_proc_cgroup(text: &str, version: CgroupVersion) -> Option<String> {
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let hit = match version {
            CgroupVersion::V2 => id == "0" && ctrls.is_empty(),
            CgroupVersion::V1 => ctrls.split(',').any(|c| c == "cpu"),
        };
        if hit {
            return Some(path.to_string());
        }
    }
    None
}

impl CpuBackend for CgroupBackend {
    fn kind(&self) -> BackendKind {
        match self.version {
            CgroupVersion::V1 => BackendKind::CgroupV1,
            CgroupVersion::V2 => BackendKind::CgroupV2,
        }
    }

    fn describe(&self) -> String {
        format!(
            "cgroup {} cpu controller at {}",
            match self.version {
                CgroupVersion::V1 => "v1",
                CgroupVersion::V2 => "v2",
            },
            self.parent_path().display()
        )
    }

    fn set_parent_shares(&mut self, shares: u64) -> Result<(), BackendError> {
        self.ensure_parent()?;
        if self.parent_shares == Some(shares) {
            return Ok(());
        }
        let p = self.parent_path();
        match self.version {
            CgroupVersion::V1 => self.write(&p.join("cpu.shares"), &shares.to_string())?,
            CgroupVersion::V2 => self.write(
                &p.join("cpu.weight"),
                &v1_shares_to_v2_weight(shares).to_string(),
            )?,
        }
        self.parent_shares = Some(shares);
        Ok(())
    }

    fn apply_job(&mut self, job: &str, s: &JobSettings) -> Result<(), BackendError> {
        self.ensure_parent()?;
        let dir = self.job_path(job);
        if !self.jobs.contains_key(job) {
            fs::create_dir(&dir).map_err(io_err("mkdir", &dir))?;
            self.jobs.insert(job.to_string(), JobCg::default());
            tracing::info!(job, cgroup = %dir.display(), "created job cgroup");
        }
        let quota = s
            .cap_cores
            .filter(|c| c.is_finite() && *c > 0.0)
            .map(|c| ((c * PERIOD_US as f64) as u64).max(1000));
        let want = (s.weight, quota);
        if self.jobs.get(job).and_then(|j| j.applied) == Some(want) {
            return Ok(());
        }
        match self.version {
            CgroupVersion::V1 => {
                self.write(
                    &dir.join("cpu.shares"),
                    &v2_weight_to_v1_shares(s.weight).to_string(),
                )?;
                self.write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                let q = quota.map_or("-1".to_string(), |q| q.to_string());
                self.write(&dir.join("cpu.cfs_quota_us"), &q)?;
            }
            CgroupVersion::V2 => {
                self.write(
                    &dir.join("cpu.weight"),
                    &s.weight.clamp(1, 10000).to_string(),
                )?;
                let q = quota.map_or("max".to_string(), |q| q.to_string());
                self.write(&dir.join("cpu.max"), &format!("{q} {PERIOD_US}"))?;
            }
        }
        if let Some(j) = self.jobs.get_mut(job) {
            j.applied = Some(want);
        }
        Ok(())
    }

    fn place(&mut self, job: &str, pid: u32, ancestors: &[u32]) -> Result<(), BackendError> {
        if !self.jobs.contains_key(job) {
            return Err(BackendError::UnknownJob(job.to_string()));
        }
        if self.placed.get(&pid).is_some_and(|p| p.job == job) {
            return Ok(());
        }
        let original = match self.placed.get(&pid) {
            Some(p) => p.original.clone(),
            None => {
                let cur = self.current_cgroup(pid)?;
                if self.is_ours(&cur) {
                    ancestors
                        .iter()
                        .find_map(|a| self.placed.get(a).map(|p| p.original.clone()))
                        .or_else(|| self.jobs.get(job).and_then(|j| j.fallback_original.clone()))
                        .unwrap_or_else(|| "/".to_string())
                } else {
                    cur
                }
            }
        };
        self.move_pid(&self.job_path(job), pid)?;
        if let Some(j) = self.jobs.get_mut(job) {
            j.fallback_original.get_or_insert_with(|| original.clone());
        }
        tracing::debug!(pid, job, original = %original, "moved process into job cgroup");
        self.placed.insert(
            pid,
            Placed {
                job: job.to_string(),
                original,
            },
        );
        Ok(())
    }

    fn release(&mut self, pid: u32) -> Result<(), BackendError> {
        let Some(p) = self.placed.remove(&pid) else {
            return Ok(());
        };
        self.restore_to(pid, &p.original)
    }

    fn forget(&mut self, pid: u32) {
        self.placed.remove(&pid);
    }

    fn release_inherited(&mut self, pid: u32, ancestors: &[u32]) -> Result<bool, BackendError> {
        if self.placed.contains_key(&pid) {
            return Ok(false);
        }
        let Some(original) = ancestors
            .iter()
            .find_map(|a| self.placed.get(a).map(|p| p.original.clone()))
        else {
            return Ok(false);
        };
        if !self.is_ours(&self.current_cgroup(pid)?) {
            return Ok(false);
        }
        self.restore_to(pid, &original)?;
        Ok(true)
    }

    fn placed_job(&self, pid: u32) -> Option<&str> {
        self.placed.get(&pid).map(|p| p.job.as_str())
    }

    fn remove_job(&mut self, job: &str) -> Result<(), BackendError> {
        let Some(jcg) = self.jobs.get(job) else {
            return Ok(());
        };
        let fallback = jcg.fallback_original.clone().unwrap_or_else(|| "/".into());
        let dir = self.job_path(job);
        let mut first_err = None;
        let attempts = if self.simulated { 1 } else { 20 };
        for attempt in 0..attempts {
            for pid in self.read_procs(&dir) {
                let original = match self.placed.get(&pid) {
                    Some(p) if p.job == job => p.original.clone(),
                    _ => fallback.clone(),
                };
                if let Err(e) = self.restore_to(pid, &original) {
                    tracing::warn!(pid, job, error = %e, "could not restore process cgroup");
                    first_err.get_or_insert(e);
                }
            }
            let r = if self.simulated {
                fs::remove_dir_all(&dir)
            } else {
                fs::remove_dir(&dir)
            };
            match r {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if attempt + 1 < attempts && e.raw_os_error() == Some(libc::EBUSY) => {
                    // A process forked while we were moving; try again.
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => {
                    first_err.get_or_insert(BackendError::Io {
                        op: "rmdir",
                        path: dir.clone(),
                        source: e,
                    });
                    break;
                }
            }
        }
        self.placed.retain(|_, p| p.job != job);
        self.jobs.remove(job);
        tracing::info!(job, "removed job cgroup");
        first_err.map_or(Ok(()), Err)
    }

    fn shutdown(&mut self) -> Result<(), BackendError> {
        let mut first_err = None;
        let jobs: Vec<String> = self.jobs.keys().cloned().collect();
        for j in jobs {
            if let Err(e) = self.remove_job(&j) {
                first_err.get_or_insert(e);
            }
        }
        if self.parent_created {
            let p = self.parent_path();
            let r = if self.simulated {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_dir(&p)
            };
            match r {
                Ok(()) => self.parent_created = false,
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.parent_created = false,
                Err(e) => {
                    first_err.get_or_insert(BackendError::Io {
                        op: "rmdir",
                        path: p,
                        source: e,
                    });
                }
            }
            self.parent_shares = None;
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for CgroupBackend {
    fn drop(&mut self) {
        if self.parent_created {
            if let Err(e) = self.shutdown() {
                tracing::warn!(error = %e, "cgroup cleanup on drop failed");
            }
        }
    }
}

/// Enforcement through nice values (no caps; per-thread priorities).
///
/// A job's kernel weight is divided evenly over its processes and each
/// thread gets the nice value whose weight is closest. Original nice
/// values are restored on release, job removal and shutdown.
#[derive(Debug)]
pub struct NiceBackend {
    proc_root: PathBuf,
    jobs: BTreeMap<String, JobSettings>,
    /// pid -> (job, original nice of the process's main thread)
    placed: HashMap<u32, (String, i32)>,
}

fn get_nice(tid: u32) -> Result<i32, BackendError> {
    // SAFETY: getpriority has no memory-safety preconditions; errno is
    // thread-local and is cleared first because -1 is a valid result.
    let (v, err) = unsafe {
        *libc::__errno_location() = 0;
        let v = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        (v, *libc::__errno_location())
    };
    if v == -1 && err != 0 {
        return Err(BackendError::Priority {
            op: "getpriority",
            pid: tid,
            source: io::Error::from_raw_os_error(err),
        });
    }
    Ok(v)
}

fn set_nice(tid: u32, nice: i32) -> Result<(), BackendError> {
    // SAFETY: setpriority has no memory-safety preconditions.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if r != 0 {
        return Err(BackendError::Priority {
            op: "setpriority",
            pid: tid,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

impl NiceBackend {
    /// A nice backend reading thread lists from `/proc`.
    pub fn new() -> NiceBackend {
        NiceBackend {
            proc_root: PathBuf::from("/proc"),
            jobs: BTreeMap::new(),
            placed: HashMap::new(),
        }
    }

    fn threads(&self, pid: u32) -> Vec<u32> {
        let mut v: Vec<u32> = fs::read_dir(self.proc_root.join(pid.to_string()).join("task"))
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if v.is_empty() {
            v.push(pid);
        }
        v
    }

    fn set_all(&self, pid: u32, nice: i32) -> Result<(), BackendError> {
        for tid in self.threads(pid) {
            match set_nice(tid, nice) {
                Err(e) if e.is_gone() && tid != pid => {}
                r => r?,
            }
        }
        Ok(())
    }

    fn job_nice(&self, job: &str) -> Option<i32> {
        let s = self.jobs.get(job)?;
        let n = self
            .placed
            .values()
            .filter(|(j, _)| j == job)
            .count()
            .max(1) as u64;
        Some(kernel_weight_to_nice(s.kernel_weight / n))
    }

    fn reapply(&self, job: &str) -> Result<(), BackendError> {
        let Some(nice) = self.job_nice(job) else {
            return Ok(());
        };
        for (pid, (j, _)) in &self.placed {
            if j == job {
                match self.set_all(*pid, nice) {
                    Err(e) if e.is_gone() => {}
                    r => r?,
                }
            }
        }
        Ok(())
    }
}

impl Default for NiceBackend {
    fn default() -> Self {
        NiceBackend::new()
    }
}

impl CpuBackend for NiceBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Nice
    }

    fn describe(&self) -> String {
        "setpriority (nice) per thread; caps not enforced".into()
    }

    fn set_parent_shares(&mut self, _shares: u64) -> Result<(), BackendError> {
        Ok(())
    }

    fn apply_job(&mut self, job: &str, s: &JobSettings) -> Result<(), BackendError> {
        if self.jobs.get(job) == Some(s) {
            return Ok(());
        }
        self.jobs.insert(job.to_string(), *s);
        self.reapply(job)
    }

    fn place(&mut self, job: &str, pid: u32, _ancestors: &[u32]) -> Result<(), BackendError> {
        if !self.jobs.contains_key(job) {
            return Err(BackendError::UnknownJob(job.to_string()));
        }
        if self.placed.get(&pid).is_some_and(|(j, _)| j == job) {
            return Ok(());
        }
        let old_job = self.placed.get(&pid).map(|(j, _)| j.clone());
        let original = match self.placed.get(&pid) {
            Some((_, o)) => *o,
            None => get_nice(pid).map_err(|e| {
                if e.is_gone() {
                    BackendError::ProcessGone(pid)
                } else {
                    e
                }
            })?,
        };
        self.placed.insert(pid, (job.to_string(), original));
        self.reapply(job)?;
        if let Some(o) = old_job {
            self.reapply(&o)?;
        }
        Ok(())
    }

    fn release(&mut self, pid: u32) -> Result<(), BackendError> {
        let Some((job, original)) = self.placed.remove(&pid) else {
            return Ok(());
        };
        match self.set_all(pid, original) {
            Err(e) if e.is_gone() => {}
            r => r?,
        }
        self.reapply(&job)
    }

    fn forget(&mut self, pid: u32) {
        self.placed.remove(&pid);
    }

    fn release_inherited(&mut self, pid: u32, ancestors: &[u32]) -> Result<bool, BackendError> {
        if self.placed.contains_key(&pid) {
            return Ok(false);
        }
        let Some(original) = ancestors
            .iter()
            .find_map(|a| self.placed.get(a).map(|(_, o)| *o))
        else {
            return Ok(false);
        };
        match self.set_all(pid, original) {
            Err(e) if e.is_gone() => Err(BackendError::ProcessGone(pid)),
            Err(e) => Err(e),
            Ok(()) => Ok(true),
        }
    }

    fn placed_job(&self, pid: u32) -> Option<&str> {
        self.placed.get(&pid).map(|(j, _)| j.as_str())
    }

    fn remove_job(&mut self, job: &str) -> Result<(), BackendError> {
        let pids: Vec<u32> = self
            .placed
            .iter()
            .filter(|(_, (j, _))| j == job)
            .map(|(p, _)| *p)
            .collect();
        let mut first_err = None;
        for pid in pids {
            if let Some((_, original)) = self.placed.remove(&pid) {
                match self.set_all(pid, original) {
                    Err(e) if !e.is_gone() => {
                        first_err.get_or_insert(e);
                    }
                    _ => {}
                }
            }
        }
        self.jobs.remove(job);
        first_err.map_or(Ok(()), Err)
    }

    fn shutdown(&mut self) -> Result<(), BackendError> {
        let mut first_err = None;
        let jobs: Vec<String> = self.jobs.keys().cloned().collect();
        for j in jobs {
            if let Err(e) = self.remove_job(&j) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for NiceBackend {
    fn drop(&mut self) {
        if !self.placed.is_empty() {
            let _ = self.shutdown();
        }
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

/// Unescapes the octal escapes (`\040`) of `/proc/self/mountinfo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Cgroup mounts found in a mountinfo text: (v2 mounts, v1 mounts with the
/// cpu controller).
pub fn cgroup_mounts(mountinfo: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut v2 = Vec::new();
    let mut v1 = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mnt) = pre.split_whitespace().nth(4) else {
            continue;
        };
        let mut post = post.split_whitespace();
        let fstype = post.next().unwrap_or("");
        let _source = post.next();
        let opts = post.next().unwrap_or("");
        match fstype {
            "cgroup2" => v2.push(PathBuf::from(unescape_mount(mnt))),
            "cgroup" if opts.split(',').any(|o| o == "cpu") => {
                v1.push(PathBuf::from(unescape_mount(mnt)))
            }
            _ => {}
        }
    }
    (v2, v1)
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
mod tests {
    use super::*;

    struct Tree {
        root: PathBuf,
    }
    impl Tree {
        fn new(tag: &str) -> Tree {
            let root =
                std::env::temp_dir().join(format!("headroom-fakecg-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("cg/user.slice")).unwrap();
            fs::create_dir_all(root.join("proc")).unwrap();
            fs::write(
                root.join("cg/cgroup.controllers"),
                "cpuset cpu io memory pids\n",
            )
            .unwrap();
            fs::write(root.join("cg/cgroup.subtree_control"), "").unwrap();
            Tree { root }
        }
        fn cg(&self) -> PathBuf {
            self.root.join("cg")
        }
        fn set_proc_cgroup(&self, pid: u32, path: &str) {
            let d = self.root.join("proc").join(pid.to_string());
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("cgroup"), format!("0::{path}\n")).unwrap();
        }
        fn read(&self, rel: &str) -> String {
            fs::read_to_string(self.cg().join(rel)).unwrap_or_default()
        }
    }
    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    #[test]
    fn v2_backend_on_fake_tree() {
        let t = Tree::new("v2");
        let mut b = CgroupBackend::simulated(
            CgroupVersion::V2,
            t.cg(),
            "headroom-test",
            t.root.join("proc"),
        )
        .unwrap();
        assert_eq!(b.kind(), BackendKind::CgroupV2);
        let s = JobSettings {
            weight: 7500,
            cap_cores: Some(1.5),
            kernel_weight: 3072,
        };
        b.apply_job("web", &s).unwrap();
        assert_eq!(t.read("cgroup.subtree_control"), "+cpu");
        assert_eq!(t.read("headroom-test/cgroup.subtree_control"), "+cpu");
        assert_eq!(t.read("headroom-test/web/cpu.weight"), "7500");
        assert_eq!(t.read("headroom-test/web/cpu.max"), "150000 100000");
        b.apply_job(
            "web",
            &JobSettings {
                cap_cores: None,
                ..s
            },
        )
        .unwrap();
        assert_eq!(t.read("headroom-test/web/cpu.max"), "max 100000");
        b.set_parent_shares(3072).unwrap();
        assert_eq!(t.read("headroom-test/cpu.weight"), "300");

        // Process 100 lives in /user.slice; its child 101 was forked
        // inside the job cgroup and inherits the original.
        t.set_proc_cgroup(100, "/user.slice");
        t.set_proc_cgroup(101, "/headroom-test/web");
        b.place("web", 100, &[]).unwrap();
        b.place("web", 101, &[100]).unwrap();
        assert_eq!(b.placed_job(100), Some("web"));
        assert_eq!(t.read("headroom-test/web/cgroup.procs"), "100\n101\n");
        assert!(matches!(
            b.place("nope", 100, &[]),
            Err(BackendError::UnknownJob(_))
        ));
        // Gone process: clear error.
        assert!(b.place("web", 999, &[]).unwrap_err().is_gone());

        // 102 was forked inside the job cgroup but belongs to no job.
        t.set_proc_cgroup(102, "/headroom-test/web");
        assert!(b.release_inherited(102, &[100]).unwrap());
        assert_eq!(t.read("user.slice/cgroup.procs"), "102\n");
        t.set_proc_cgroup(102, "/user.slice");
        assert!(
            !b.release_inherited(102, &[100]).unwrap(),
            "already outside"
        );
        assert!(
            !b.release_inherited(103, &[55]).unwrap(),
            "no placed ancestor"
        );

        // Release one process: back to its original.
        b.release(100).unwrap();
        assert_eq!(t.read("user.slice/cgroup.procs"), "102\n100\n");
        assert_eq!(b.placed_job(100), None);

        // Removing the job restores everything listed in the job cgroup.
        b.remove_job("web").unwrap();
        assert_eq!(t.read("user.slice/cgroup.procs"), "102\n100\n100\n101\n");
        assert!(!t.cg().join("headroom-test/web").exists());

        b.apply_job("batch", &s).unwrap();
        b.shutdown().unwrap();
        assert!(!t.cg().join("headroom-test").exists());
        assert!(
            t.cg().join("user.slice").exists(),
            "foreign cgroups untouched"
        );
    }

    #[test]
    fn refuses_existing_parent() {
        let t = Tree::new("exists");
        fs::create_dir_all(t.cg().join("someone-else")).unwrap();
        let mut b = CgroupBackend::simulated(
            CgroupVersion::V2,
            t.cg(),
            "someone-else",
            t.root.join("proc"),
        )
        .unwrap();
        let s = JobSettings {
            weight: 100,
            cap_cores: None,
            kernel_weight: 1024,
        };
        assert!(matches!(
            b.apply_job("j", &s),
            Err(BackendError::ParentExists(_))
        ));
        drop(b);
        assert!(t.cg().join("someone-else").exists());
        assert!(
            CgroupBackend::simulated(CgroupVersion::V2, t.cg(), "../x", t.root.join("proc"))
                .is_err()
        );
    }

    #[test]
    fn reclaims_stale_parent() {
        let t = Tree::new("stale");
        {
            let mut b =
                CgroupBackend::simulated(CgroupVersion::V2, t.cg(), "hr", t.root.join("proc"))
                    .unwrap();
            let s = JobSettings {
                weight: 100,
                cap_cores: None,
                kernel_weight: 1024,
            };
            b.apply_job("j", &s).unwrap();
            t.set_proc_cgroup(5, "/");
            b.place("j", 5, &[]).unwrap();
            // Simulate a crash: forget about the cgroups without cleanup.
            b.parent_created = false;
            b.jobs.clear();
        }
        assert!(t.cg().join("hr/j").exists());
        let b =
            CgroupBackend::simulated(CgroupVersion::V2, t.cg(), "hr", t.root.join("proc")).unwrap();
        assert_eq!(b.reclaim_stale_parent().unwrap(), 1);
        assert!(!t.cg().join("hr").exists());
        assert_eq!(t.read("cgroup.procs"), "5\n");
        assert_eq!(b.reclaim_stale_parent().unwrap(), 0);
    }

    #[test]
    fn v1_files_on_fake_tree() {
        let t = Tree::new("v1");
        let mut b =
            CgroupBackend::simulated(CgroupVersion::V1, t.cg(), "hr", t.root.join("proc")).unwrap();
        b.apply_job(
            "a",
            &JobSettings {
                weight: 2500,
                cap_cores: Some(0.5),
                kernel_weight: 1,
            },
        )
        .unwrap();
        assert_eq!(t.read("hr/a/cpu.shares"), "25600");
        assert_eq!(t.read("hr/a/cpu.cfs_quota_us"), "50000");
        assert_eq!(t.read("hr/a/cpu.cfs_period_us"), "100000");
        assert_eq!(
            t.read("cgroup.subtree_control"),
            "",
            "v1 does not touch subtree_control"
        );
        let d = t.root.join("proc/7");
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("cgroup"),
            "3:cpuset:/\n2:cpu,cpuacct:/user.slice\n0::/\n",
        )
        .unwrap();
        b.place("a", 7, &[]).unwrap();
        drop(b); // Drop restores and removes.
        assert_eq!(t.read("user.slice/cgroup.procs"), "7\n");
        assert!(!t.cg().join("hr").exists());
    }

    #[test]
    fn parse_helpers() {
        let txt = "12:cpu,cpuacct:/a/b\n1:name=systemd:/\n0::/user.slice\n";
        assert_eq!(
            parse_proc_cgroup(txt, CgroupVersion::V1).as_deref(),
            Some("/a/b")
        );
        assert_eq!(
            parse_proc_cgroup(txt, CgroupVersion::V2).as_deref(),
            Some("/user.slice")
        );
        assert_eq!(parse_proc_cgroup("garbage", CgroupVersion::V1), None);
        let mi = "30 1 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                  31 1 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                  32 1 0:28 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n\
                  33 1 0:29 / /mnt/a\\040b rw - cgroup cgroup rw,cpu,cpuacct\n";
        let (v2, v1) = cgroup_mounts(mi);
        assert_eq!(v2, vec![PathBuf::from("/sys/fs/cgroup/unified")]);
        assert_eq!(
            v1,
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu"),
                PathBuf::from("/mnt/a b")
            ]
        );
    }

    #[test]
    fn nice_backend_on_own_child() {
        // A short-lived child of the test process: raising its nice value
        // needs no privilege.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut b = NiceBackend::new();
        let orig = get_nice(pid).unwrap();
        b.apply_job(
            "low",
            &JobSettings {
                weight: 100,
                cap_cores: None,
                kernel_weight: 110,
            },
        )
        .unwrap();
        b.place("low", pid, &[]).unwrap();
        assert_eq!(get_nice(pid).unwrap(), 10.max(orig));
        let restored = b.shutdown();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            restored.unwrap();
            assert_eq!(get_nice(pid).unwrap(), orig);
        } else {
            // Lowering a nice value needs privilege: a clear error, no panic.
            assert!(restored.is_err() || orig >= 10);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
