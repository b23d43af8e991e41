//! The one clock of Headroom.
//!
//! [`Timestamp`] is a point on `CLOCK_MONOTONIC` in nanoseconds. The workers
//! and the control thread share it (pacer credits are set by one and spent
//! by the others, so both read the same time base), and every state machine
//! takes it as a parameter (`handle_*(now, ..)`): only the runtime reads the
//! clock ([`Timestamp::now`]); simulations start at [`Timestamp::ZERO`] and
//! advance it. Intervals are [`std::time::Duration`].
//!
//! Nothing pool-wide may depend on synchronised clocks: a `Timestamp` means
//! nothing on another node. Where wall-clock time is really needed (the boot
//! epoch of the exchange, history timestamps, schedules, logs) it is the
//! separate, explicit [`WallTime`] (UTC).
//!
//! The per-frame code of the dataplane passes the raw nanoseconds
//! ([`Timestamp::as_nanos`]) of the same clock, to keep its hot path free of
//! conversions.

use std::{
    fmt,
    ops::{Add, AddAssign, Sub, SubAssign},
    time::Duration,
};

/// A point on `CLOCK_MONOTONIC`, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Timestamp {
    /// The origin simulations start from.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The latest representable time (584 years of uptime).
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// Reads `CLOCK_MONOTONIC` (through the vDSO: no system call).
    #[inline]
    pub fn now() -> Timestamp {
        match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
            Ok(ts) => Timestamp(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64),
            // Cannot fail for CLOCK_MONOTONIC on Linux.
            Err(_) => Timestamp::ZERO,
        }
    }

    /// The time `ns` nanoseconds after the clock's origin.
    #[inline]
    pub const fn from_nanos(ns: u64) -> Timestamp {
        Timestamp(ns)
    }

    /// Nanoseconds since the clock's origin.
    #[inline]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time `d` after the clock's origin (for simulations).
    pub fn from_duration(d: Duration) -> Timestamp {
        Timestamp(nanos(d))
    }

    /// Time since the clock's origin.
    pub fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    #[inline]
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Same as [`Timestamp::saturating_duration_since`] (as `Instant` does).
    #[inline]
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        self.saturating_duration_since(earlier)
    }

    /// Time from `earlier` to `self`, or None if `earlier` is later.
    pub fn checked_duration_since(self, earlier: Timestamp) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_nanos)
    }

    /// `self + d`, or None past [`Timestamp::MAX`].
    pub fn checked_add(self, d: Duration) -> Option<Timestamp> {
        u64::try_from(d.as_nanos())
            .ok()
            .and_then(|n| self.0.checked_add(n))
            .map(Timestamp)
    }

    /// `self - d`, or None before the origin.
    pub fn checked_sub(self, d: Duration) -> Option<Timestamp> {
        u64::try_from(d.as_nanos())
            .ok()
            .and_then(|n| self.0.checked_sub(n))
            .map(Timestamp)
    }

    /// `self + d`, at most [`Timestamp::MAX`].
    #[inline]
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos(d)))
    }

    /// `self - d`, at least [`Timestamp::ZERO`].
    #[inline]
    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(nanos(d)))
    }
}

/// Saturating, like the rest of the type: time never wraps.
impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    #[inline]
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Timestamp {
    #[inline]
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    #[inline]
    fn sub(self, d: Duration) -> Timestamp {
        self.saturating_sub(d)
    }
}

impl SubAssign<Duration> for Timestamp {
    #[inline]
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

/// The time between two timestamps (zero if `rhs` is later).
impl Sub<Timestamp> for Timestamp {
    type Output = Duration;
    #[inline]
    fn sub(self, rhs: Timestamp) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}s",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

/// Wall-clock time (UTC), in nanoseconds since the Unix epoch. Only for what
/// must mean the same across restarts or to people (the exchange's boot
/// epoch, history, schedules, logs): it can step, so no timer runs on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallTime(u64);

impl WallTime {
    /// The Unix epoch.
    pub const UNIX_EPOCH: WallTime = WallTime(0);

    /// Reads the system's wall clock (the Unix epoch if it is set before it).
    pub fn now() -> WallTime {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        WallTime(nanos(d))
    }

    /// The time `ns` nanoseconds after the Unix epoch.
    pub const fn from_unix_nanos(ns: u64) -> WallTime {
        WallTime(ns)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_unix_nanos(self) -> u64 {
        self.0
    }

    /// Whole seconds since the Unix epoch.
    pub const fn as_unix_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// Time since the Unix epoch.
    pub fn since_unix_epoch(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// The time `s` seconds after the Unix epoch.
    pub const fn from_unix_secs(s: u64) -> WallTime {
        WallTime(s.saturating_mul(1_000_000_000))
    }

    /// The time `ms` milliseconds after the Unix epoch.
    pub const fn from_unix_millis(ms: u64) -> WallTime {
        WallTime(ms.saturating_mul(1_000_000))
    }

    /// Whole milliseconds since the Unix epoch.
    pub const fn as_unix_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// Seconds since the Unix epoch, rounded to the nearest second.
    pub const fn nearest_unix_sec(self) -> u64 {
        self.0.saturating_add(500_000_000) / 1_000_000_000
    }

    /// RFC 3339 in UTC with second precision: `2026-12-01T10:00:00Z`.
    pub fn rfc3339(self) -> String {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(self.as_unix_secs());
        humantime::format_rfc3339_seconds(t).to_string()
    }

    /// Parses an RFC 3339 time in UTC (`2026-12-01T10:00:00Z`; times before
    /// the Unix epoch are refused).
    pub fn parse_rfc3339(s: &str) -> Result<WallTime, String> {
        let t = humantime::parse_rfc3339_weak(s.trim())
            .map_err(|e| format!("invalid time {s:?}: {e} (expected e.g. 2026-12-01T10:00:00Z)"))?;
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| WallTime(nanos(d)))
            .map_err(|_| format!("invalid time {s:?}: before 1970"))
    }
}

/// Serialized as whole milliseconds since the Unix epoch (an integer).
impl serde::Serialize for WallTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.as_unix_millis())
    }
}

impl<'de> serde::Deserialize<'de> for WallTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<WallTime, D::Error> {
        <u64 as serde::Deserialize>::deserialize(d).map(WallTime::from_unix_millis)
    }
}

/// RFC 3339, as [`WallTime::rfc3339`].
impl fmt::Display for WallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

impl Sub<Duration> for WallTime {
    type Output = WallTime;
    /// The Unix epoch at the earliest.
    fn sub(self, d: Duration) -> WallTime {
        WallTime(self.0.saturating_sub(nanos(d)))
    }
}

impl Add<Duration> for WallTime {
    type Output = WallTime;
    fn add(self, d: Duration) -> WallTime {
        WallTime(self.0.saturating_add(nanos(d)))
    }
}

impl Sub<WallTime> for WallTime {
    type Output = Duration;
    /// Zero if `rhs` is later.
    fn sub(self, rhs: WallTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(rhs.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_orders() {
        let t = Timestamp::from_nanos(1_500_000_000);
        assert_eq!(
            t + Duration::from_millis(500),
            Timestamp::from_nanos(2_000_000_000)
        );
        assert_eq!(t - Duration::from_secs(9), Timestamp::ZERO);
        assert_eq!(Timestamp::MAX + Duration::from_secs(1), Timestamp::MAX);
        assert_eq!(t - Timestamp::ZERO, Duration::from_millis(1500));
        assert_eq!(Timestamp::ZERO - t, Duration::ZERO);
        assert_eq!(Timestamp::ZERO.checked_duration_since(t), None);
        assert_eq!(t.checked_sub(Duration::from_secs(2)), None);
        assert_eq!(Timestamp::MAX.checked_add(Duration::from_nanos(1)), None);
        assert!(Timestamp::ZERO < t);
        assert_eq!(t.to_string(), "1.500000000s");
        assert_eq!(Timestamp::from_duration(t.as_duration()), t);
    }

    #[test]
    fn the_clock_is_monotonic_and_wall_time_is_after_2023() {
        let a = Timestamp::now();
        let b = Timestamp::now();
        assert!(a > Timestamp::ZERO && b >= a);
        assert!(WallTime::now().as_unix_secs() > 1_700_000_000);
        let w = WallTime::from_unix_nanos(5);
        assert_eq!((w + Duration::from_nanos(5)) - w, Duration::from_nanos(5));
    }

    #[test]
    fn wall_time_units_and_rfc3339() {
        let t = WallTime::from_unix_millis(1_764_583_200_499);
        assert_eq!(t.as_unix_secs(), 1_764_583_200);
        assert_eq!(t.nearest_unix_sec(), 1_764_583_200);
        assert_eq!(
            WallTime::from_unix_millis(1_764_583_200_500).nearest_unix_sec(),
            1_764_583_201
        );
        assert_eq!(t.as_unix_millis(), 1_764_583_200_499);
        assert_eq!(t.to_string(), "2025-12-01T10:00:00Z");
        assert_eq!(
            WallTime::parse_rfc3339("2025-12-01T10:00:00Z").unwrap(),
            WallTime::from_unix_secs(1_764_583_200)
        );
        assert!(WallTime::parse_rfc3339("yesterday")
            .unwrap_err()
            .contains("expected"));
        assert!(WallTime::parse_rfc3339("1969-12-31T23:59:59Z").is_err());
        assert_eq!(
            WallTime::from_unix_secs(5) - Duration::from_secs(9),
            WallTime::UNIX_EPOCH
        );
    }
}
