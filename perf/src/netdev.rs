//! Network device helpers: index, MAC address, monotonic clock.

use std::{fs, io};

/// Errors looking up a network device.
#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    /// The interface does not exist in this network namespace.
    #[error("interface {0:?} not found in this network namespace (run the tool where the device is, e.g. under `ip netns exec`)")]
    NotFound(String),
    /// The interface's MAC address could not be read.
    #[error("reading the MAC address of {0}: {1}")]
    Mac(String, io::Error),
}

/// Interface index of `name`.
pub fn ifindex(name: &str) -> Result<u32, NetdevError> {
    nix::net::if_::if_nametoindex(name).map_err(|_| NetdevError::NotFound(name.to_owned()))
}

/// MAC address of `name` (from sysfs).
pub fn mac(name: &str) -> Result<[u8; 6], NetdevError> {
    let s = fs::read_to_string(format!("/sys/class/net/{name}/address"))
        .map_err(|e| NetdevError::Mac(name.to_owned(), e))?;
    crate::packet::parse_mac(s.trim()).map_err(|e| {
        NetdevError::Mac(
            name.to_owned(),
            io::Error::new(io::ErrorKind::InvalidData, e),
        )
    })
}

/// CLOCK_MONOTONIC in nanoseconds (the clock bpf_ktime_get_ns() reads).
#[inline]
pub fn now_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .unwrap_or_else(|_| nix::sys::time::TimeSpec::new(0, 0));
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> nix::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
}

/// Number of CPUs this process may run on.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
