//! The clock the workers and the control thread share: `headroom_clock`'s
//! [`Timestamp`] on CLOCK_MONOTONIC. Pacer credits are set by one and spent by
//! the others, so both must read the same time base; the per-frame code
//! passes its raw nanoseconds.

pub use headroom_clock::Timestamp;

/// Nanoseconds on CLOCK_MONOTONIC (`Timestamp::now().as_nanos()`), for the
/// per-frame code.
#[inline]
pub fn now_ns() -> u64 {
    Timestamp::now().as_nanos()
}
