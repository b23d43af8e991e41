//! The one monotonic clock the workers and the control thread share: pacer
//! credits are set by one and spent by the others, so both must read the
//! same time base (CLOCK_MONOTONIC, in ns).

/// Nanoseconds on CLOCK_MONOTONIC.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime(CLOCK_MONOTONIC)
    // goes through the vDSO and cannot fail with a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
