//! cgroup v1 (the `cpu` controller's own hierarchy): `cpu.shares`
//! (2..=262144) for weights, `cpu.cfs_quota_us` / `cpu.cfs_period_us` for
//! caps.

use std::path::Path;

use super::super::policy::v2_weight_to_v1_shares;
use super::{cgroup::CgroupBackend, cgroup::PERIOD_US, BackendError};

/// Whether `mount` is a v1 hierarchy with the cpu controller.
pub(super) fn has_cpu_controller(mount: &Path) -> bool {
    mount.join("cpu.shares").exists()
}

/// Whether a `/proc/PID/cgroup` line (`id:controllers:path`) is the cpu
/// hierarchy's.
pub(super) fn is_cpu_line(_id: &str, controllers: &str) -> bool {
    controllers.split(',').any(|c| c == "cpu")
}

/// Weight of Headroom's parent cgroup against the rest of the server.
pub(super) fn set_parent_shares(
    b: &CgroupBackend,
    parent: &Path,
    shares: u64,
) -> Result<(), BackendError> {
    b.write(&parent.join("cpu.shares"), &shares.to_string())
}

/// A job's weight (v2 units, converted) and cap (quota per period, µs).
pub(super) fn apply_job(
    b: &CgroupBackend,
    dir: &Path,
    weight: u32,
    quota: Option<u64>,
) -> Result<(), BackendError> {
    b.write(
        &dir.join("cpu.shares"),
        &v2_weight_to_v1_shares(weight).to_string(),
    )?;
    b.write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
    let q = quota.map_or("-1".to_string(), |q| q.to_string());
    b.write(&dir.join("cpu.cfs_quota_us"), &q)
}
