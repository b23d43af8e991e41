//! The cgroup backend, for both hierarchy versions: Headroom's parent
//! cgroup, one child per job, processes moved one at a time through
//! `cgroup.procs` and restored to their original cgroups. What differs
//! between the versions (controller discovery, file names and units) lives
//! in [`super::cgroup_v1`] and [`super::cgroup_v2`].

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::state::{self, CgroupState, Owner, PlacedRecord, Recovery};
use super::{cgroup_v1, cgroup_v2, BackendError, BackendKind, CpuBackend, JobSettings};

/// cgroup hierarchy version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Legacy per-controller hierarchy.
    V1,
    /// Unified hierarchy.
    V2,
}

#[derive(Debug, Default)]
pub(super) struct JobCg {
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
    pub(super) parent_created: bool,
    parent_shares: Option<u64>,
    pub(super) jobs: BTreeMap<String, JobCg>,
    placed: HashMap<u32, Placed>,
    /// Where what this backend created and moved is recorded (see
    /// [`super::state`]); none: nothing is recorded.
    state_file: Option<PathBuf>,
    /// Whether the record is behind.
    dirty: bool,
}

/// CFS period of the caps, µs.
pub(super) const PERIOD_US: u64 = 100_000;

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
            CgroupVersion::V1 => cgroup_v1::has_cpu_controller(&b.mount),
            CgroupVersion::V2 => cgroup_v2::has_cpu_controller(&b.mount),
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
            state_file: None,
            dirty: false,
        })
    }

    /// The record of what this backend holds now.
    fn state(&self) -> CgroupState {
        let pid = std::process::id();
        let owner = state::owner_of(&self.proc_root, pid).unwrap_or(Owner { pid, start_time: 0 });
        let mut st = CgroupState::new(
            state::boot_id(&self.proc_root),
            owner,
            self.mount.clone(),
            self.parent.clone(),
        );
        for (name, j) in &self.jobs {
            st.jobs.insert(name.clone(), j.fallback_original.clone());
        }
        for (pid, p) in &self.placed {
            st.placed.insert(
                *pid,
                PlacedRecord {
                    job: p.job.clone(),
                    original: p.original.clone(),
                },
            );
        }
        st
    }

    /// Takes over the parent cgroup a previous headroomd left (see
    /// [`CpuBackend::recover`]).
    fn adopt(&mut self, prev: &CgroupState, keep: &[&str]) -> Result<Recovery, BackendError> {
        let p = self.parent_path();
        let mut rec = Recovery {
            previous_owner: Some(prev.owner.pid),
            ..Recovery::default()
        };
        self.parent_created = true;
        self.parent_shares = None;
        let mut dirs: Vec<(String, PathBuf)> = fs::read_dir(&p)
            .map_err(io_err("readdir", &p))?
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        dirs.sort();
        for (job, dir) in dirs {
            let fallback = prev.jobs.get(&job).cloned().flatten();
            self.jobs.insert(
                job.clone(),
                JobCg {
                    fallback_original: fallback.clone(),
                    applied: None,
                },
            );
            let procs = self.read_procs(&dir);
            for &pid in &procs {
                let original = prev
                    .placed
                    .get(&pid)
                    .filter(|r| r.job == job)
                    .map(|r| r.original.clone())
                    .or_else(|| fallback.clone())
                    .unwrap_or_else(|| "/".into());
                self.placed.insert(
                    pid,
                    Placed {
                        job: job.clone(),
                        original,
                    },
                );
            }
            if keep.contains(&job.as_str()) {
                rec.processes_adopted += procs.len();
                rec.jobs_adopted.push(job);
            } else {
                rec.processes_restored += procs.len();
                self.remove_job(&job)?;
                rec.jobs_removed.push(job);
            }
        }
        // Nothing is placed in the parent itself; whatever is goes back.
        for pid in self.read_procs(&p) {
            let original = prev.placed.get(&pid).map_or("/", |r| r.original.as_str());
            self.restore_to(pid, original)?;
            rec.processes_restored += 1;
        }
        self.dirty = true;
        Ok(rec)
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

    pub(super) fn write(&self, path: &Path, content: &str) -> Result<(), BackendError> {
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
            cgroup_v2::enable_cpu(self, &self.mount)?;
        }
        fs::create_dir(&p).map_err(io_err("mkdir", &p))?;
        self.parent_created = true;
        self.dirty = true;
        if self.version == CgroupVersion::V2 {
            cgroup_v2::enable_cpu(self, &p)?;
        }
        tracing::info!(cgroup = %p.display(), "created headroom cpu cgroup");
        Ok(())
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
            CgroupVersion::V2 => cgroup_v2::is_cpu_line(id, ctrls),
            CgroupVersion::V1 => cgroup_v1::is_cpu_line(id, ctrls),
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
            CgroupVersion::V1 => cgroup_v1::set_parent_shares(self, &p, shares)?,
            CgroupVersion::V2 => cgroup_v2::set_parent_shares(self, &p, shares)?,
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
            self.dirty = true;
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
            CgroupVersion::V1 => cgroup_v1::apply_job(self, &dir, s.weight, quota)?,
            CgroupVersion::V2 => cgroup_v2::apply_job(self, &dir, s.weight, quota)?,
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
        self.dirty = true;
        Ok(())
    }

    fn release(&mut self, pid: u32) -> Result<(), BackendError> {
        let Some(p) = self.placed.remove(&pid) else {
            return Ok(());
        };
        self.dirty = true;
        self.restore_to(pid, &p.original)
    }

    fn forget(&mut self, pid: u32) {
        if self.placed.remove(&pid).is_some() {
            self.dirty = true;
        }
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
        self.dirty = true;
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
        match first_err {
            None => {
                // Nothing left to take over: no record either.
                if let Some(f) = &self.state_file {
                    match fs::remove_file(f) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(BackendError::Io {
                                op: "remove",
                                path: f.clone(),
                                source,
                            })
                        }
                    }
                }
                self.dirty = false;
                Ok(())
            }
            Some(e) => {
                // What is left stays recorded for the next start.
                let _ = self.save_state();
                Err(e)
            }
        }
    }

    fn recover(&mut self, state_file: &Path, keep: &[&str]) -> Result<Recovery, BackendError> {
        self.state_file = Some(state_file.to_path_buf());
        let p = self.parent_path();
        if self.parent_created || !p.is_dir() {
            return Ok(Recovery::default());
        }
        let boot = state::boot_id(&self.proc_root);
        let prev = CgroupState::read(state_file)?
            .filter(|st| st.describes(&boot, &self.mount, &self.parent));
        let Some(prev) = prev else {
            return Err(BackendError::Unclaimed {
                path: p,
                state: state_file.to_path_buf(),
            });
        };
        if state::is_running(&self.proc_root, prev.owner) {
            return Err(BackendError::ParentInUse {
                path: p,
                pid: prev.owner.pid,
            });
        }
        let rec = self.adopt(&prev, keep)?;
        self.save_state()?;
        tracing::warn!(
            cgroup = %p.display(),
            previous_pid = prev.owner.pid,
            jobs_adopted = ?rec.jobs_adopted,
            jobs_removed = ?rec.jobs_removed,
            processes_adopted = rec.processes_adopted,
            processes_restored = rec.processes_restored,
            "took over the cgroups of a headroomd that did not shut down"
        );
        Ok(rec)
    }

    fn save_state(&mut self) -> Result<(), BackendError> {
        let Some(f) = &self.state_file else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        self.state().write(f)?;
        self.dirty = false;
        Ok(())
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
