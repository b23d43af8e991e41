//! The record that lets a restarted headroomd take over what a previous one
//! left behind when it died without shutting down (SIGKILL, a crash, the
//! watchdog): which cgroups it created, which processes it moved and where
//! each came from.
//!
//! The cgroup backend rewrites the record after every tick that changed
//! something (atomically: a temporary file renamed over the old one) and
//! removes it after a clean shutdown. A record names its writer by pid,
//! process start time and boot id, so a later start can tell "the previous
//! run is dead" from "another headroomd is running" and from "a record of an
//! earlier boot" (whose cgroups are gone with that boot).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BackendError;
use crate::procsched::scan::parse_stat;

/// Layout version of the record.
const VERSION: u32 = 1;

/// A running process, told apart from a later one that reuses its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// Start time (clock ticks after boot, `/proc/PID/stat` field 22).
    pub start_time: u64,
}

/// What one headroomd's cgroup backend created and moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupState {
    /// Layout version.
    pub version: u32,
    /// `/proc/sys/kernel/random/boot_id` when written.
    pub boot_id: String,
    /// The headroomd that wrote it.
    pub owner: Owner,
    /// The hierarchy's mount point.
    pub mount: PathBuf,
    /// Headroom's parent cgroup, relative to the mount.
    pub parent: String,
    /// Each job cgroup with the original cgroup of its first process (the
    /// fallback for processes forked inside the job cgroup).
    pub jobs: BTreeMap<String, Option<String>>,
    /// Each moved process: its job and the cgroup it came from.
    pub placed: BTreeMap<u32, PlacedRecord>,
}

/// One moved process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedRecord {
    /// Its job.
    pub job: String,
    /// Its cgroup before it was moved, relative to the mount.
    pub original: String,
}

/// What a start took over from a previous run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The previous run's pid, when its cgroups were found.
    pub previous_owner: Option<u32>,
    /// Job cgroups kept (the job is still configured with a CPU policy).
    pub jobs_adopted: Vec<String>,
    /// Job cgroups removed (the job is gone or lost its CPU policy).
    pub jobs_removed: Vec<String>,
    /// Processes left where they were, in an adopted job cgroup.
    pub processes_adopted: usize,
    /// Processes moved back to their original cgroups.
    pub processes_restored: usize,
}

impl CgroupState {
    /// A new record of `owner` for `parent` under `mount`.
    pub fn new(boot_id: String, owner: Owner, mount: PathBuf, parent: String) -> Self {
        CgroupState {
            version: VERSION,
            boot_id,
            owner,
            mount,
            parent,
            jobs: BTreeMap::new(),
            placed: BTreeMap::new(),
        }
    }

    /// Reads `path`: `Ok(None)` when there is none, an error when it cannot
    /// be read or parsed (it is not guessed at).
    pub fn read(path: &Path) -> Result<Option<CgroupState>, BackendError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(BackendError::Io {
                    op: "read",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| BackendError::Io {
                op: "parse",
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })
    }

    /// Writes the record to `path` atomically (a temporary file beside it,
    /// synced, renamed over it), creating the directory if needed.
    pub fn write(&self, path: &Path) -> Result<(), BackendError> {
        let io = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| BackendError::Io {
                op,
                path: p,
                source,
            }
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io("mkdir", dir))?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let text = serde_json::to_string_pretty(self).map_err(|e| BackendError::Io {
            op: "encode",
            path: path.to_path_buf(),
            source: io::Error::other(e),
        })?;
        let mut f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io("write", &tmp))?;
        fs::rename(&tmp, path).map_err(io("rename", path))
    }

    /// Whether the record describes `parent` under `mount` in this boot.
    pub fn describes(&self, boot_id: &str, mount: &Path, parent: &str) -> bool {
        self.version == VERSION
            && self.boot_id == boot_id
            && self.mount == mount
            && self.parent == parent
    }
}

/// This boot's id (empty where `proc_root` has none, as in tests).
pub fn boot_id(proc_root: &Path) -> String {
    fs::read_to_string(proc_root.join("sys/kernel/random/boot_id"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The process `pid` as it runs now, if it does.
pub fn owner_of(proc_root: &Path, pid: u32) -> Option<Owner> {
    let stat = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    Some(Owner {
        pid,
        start_time: parse_stat(&stat)?.start_time,
    })
}

/// Whether `owner` still runs (the same process, not a later one with its
/// pid).
pub fn is_running(proc_root: &Path, owner: Owner) -> bool {
    owner_of(proc_root, owner.pid) == Some(owner)
}
