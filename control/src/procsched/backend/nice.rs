//! The nice backend, the last resort: `setpriority` on every thread of a
//! job's processes (no caps). The priority calls come from `rustix` (`nix`
//! does not wrap them).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::PathBuf;

use rustix::process::{getpriority_process, setpriority_process, Pid};

use super::super::policy::kernel_weight_to_nice;
use super::{BackendError, BackendKind, CpuBackend, JobSettings};

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

/// `PRIO_PROCESS` with a thread id addresses that one thread on Linux.
fn thread(tid: u32) -> Option<Pid> {
    i32::try_from(tid).ok().and_then(Pid::from_raw)
}

pub(super) fn get_nice(tid: u32) -> Result<i32, BackendError> {
    getpriority_process(thread(tid)).map_err(|e| BackendError::Priority {
        op: "getpriority",
        pid: tid,
        source: e.into(),
    })
}

fn set_nice(tid: u32, nice: i32) -> Result<(), BackendError> {
    setpriority_process(thread(tid), nice).map_err(|e| BackendError::Priority {
        op: "setpriority",
        pid: tid,
        source: e.into(),
    })
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
