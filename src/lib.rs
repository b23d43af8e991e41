//! Headroom: the daemon, its control protocol, and the namespace lab used by
//! the demo, the system tests and the benchmarks.

pub mod bandwidth;
pub mod ctl;
pub mod daemon;
pub mod lab;
pub mod pool;
pub mod status;

/// A seed from the wall clock (fallback when /dev/urandom is unreadable).
pub(crate) fn now_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}
