//! cgroup v2 (the unified hierarchy): `cpu.weight` (1..=10000) for
//! weights, `cpu.max` for caps. The `cpu` controller must be enabled in
//! the `cgroup.subtree_control` of the mount root and of Headroom's parent:
//! the only files outside its own cgroups the backend writes (and leaves
//! enabled).

use std::{fs, path::Path};

use super::super::policy::v1_shares_to_v2_weight;
use super::{cgroup::CgroupBackend, cgroup::PERIOD_US, BackendError};

/// Whether `mount` is a v2 hierarchy offering the cpu controller.
pub(super) fn has_cpu_controller(mount: &Path) -> bool {
    fs::read_to_string(mount.join("cgroup.controllers"))
        .map(|s| s.split_whitespace().any(|c| c == "cpu"))
        .unwrap_or(false)
}

/// Whether a `/proc/PID/cgroup` line (`id:controllers:path`) is the
/// unified hierarchy's.
pub(super) fn is_cpu_line(id: &str, controllers: &str) -> bool {
    id == "0" && controllers.is_empty()
}

/// Enables the cpu controller for the children of `dir`.
pub(super) fn enable_cpu(b: &CgroupBackend, dir: &Path) -> Result<(), BackendError> {
    let f = dir.join("cgroup.subtree_control");
    let cur = fs::read_to_string(&f).unwrap_or_default();
    if cur.split_whitespace().any(|c| c == "cpu") {
        return Ok(());
    }
    b.write(&f, "+cpu")
}

/// Weight of Headroom's parent cgroup against the rest of the server (v1
/// share units, converted).
pub(super) fn set_parent_shares(
    b: &CgroupBackend,
    parent: &Path,
    shares: u64,
) -> Result<(), BackendError> {
    b.write(
        &parent.join("cpu.weight"),
        &v1_shares_to_v2_weight(shares).to_string(),
    )
}

/// A job's weight and cap (quota per period, µs).
pub(super) fn apply_job(
    b: &CgroupBackend,
    dir: &Path,
    weight: u32,
    quota: Option<u64>,
) -> Result<(), BackendError> {
    b.write(&dir.join("cpu.weight"), &weight.clamp(1, 10000).to_string())?;
    let q = quota.map_or("max".to_string(), |q| q.to_string());
    b.write(&dir.join("cpu.max"), &format!("{q} {PERIOD_US}"))
}
