//! Wall-clock time (UTC) of history points.
//!
//! History is the one part of Headroom that needs calendar time: an operator asks for "the last
//! 24 hours" and reads dates in a report. Points therefore carry wall-clock UTC timestamps
//! ([`WallTime`], the clock crate's), unlike the pool's logic, which runs on the monotonic clock
//! and never compares clocks between servers. Nothing here reads a clock; only the I/O layer
//! calls [`WallTime::now`].
//!
//! The store keeps times as signed seconds (SQLite integers): [`secs`] and [`from_secs`]
//! convert.

use std::time::Duration;

pub use headroom_clock::WallTime;

/// Whole seconds since the epoch of `t`, as the store keeps them.
pub fn secs(t: WallTime) -> i64 {
    i64::try_from(t.as_unix_secs()).unwrap_or(i64::MAX)
}

/// Milliseconds since the epoch of `t`.
pub fn millis(t: WallTime) -> i64 {
    i64::try_from(t.as_unix_millis()).unwrap_or(i64::MAX)
}

/// Seconds since the epoch of `t`, rounded to the nearest second (how samples are binned: a
/// sample taken a few milliseconds early or late still lands in its own second).
pub fn nearest_sec(t: WallTime) -> i64 {
    i64::try_from(t.nearest_unix_sec()).unwrap_or(i64::MAX)
}

/// The time `s` stored seconds after the epoch (the epoch for negative ones).
pub fn from_secs(s: i64) -> WallTime {
    WallTime::from_unix_secs(u64::try_from(s).unwrap_or(0))
}

/// A duration as Headroom writes them (`1h 1m`), to the second.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_seconds_and_durations() {
        let t = WallTime::from_unix_millis(1_764_583_200_499);
        assert_eq!(secs(t), 1_764_583_200);
        assert_eq!(millis(t), 1_764_583_200_499);
        assert_eq!(
            nearest_sec(WallTime::from_unix_millis(1_764_583_200_500)),
            1_764_583_201
        );
        assert_eq!(from_secs(-5), WallTime::UNIX_EPOCH);
        assert_eq!(from_secs(1_764_583_200).rfc3339(), "2025-12-01T10:00:00Z");
        assert_eq!(format_duration(Duration::from_secs(3660)), "1h 1m");
    }
}
