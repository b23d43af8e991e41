//! Schedules: which variant the calendar selects, as a pure function of
//! wall-clock UTC time and the pool's time zone.
//!
//! A *boundary* is a moment a schedule's calendar matches; from it the pool
//! runs that schedule's variant until the next boundary of any schedule.
//! Civil times are mapped to instants monotonically, so boundaries keep
//! their order across daylight-saving changes: a time in a skipped hour
//! takes effect when the clock jumps (the transition instant), a time in a
//! repeated hour counts once, at its first occurrence. Boundaries at the
//! same instant are ordered by civil time, then by file order (later wins).
//!
//! Only the master evaluates schedules; it records the boundary it applied
//! ([`Boundary`], part of the failover record). Clocks of nodes differ by
//! up to `schedule_tolerance`: a new master whose clock is behind keeps a
//! boundary its predecessor applied if that boundary is at most the
//! tolerance ahead of its own clock, so the pool never switches back and
//! forth around a boundary ([`Schedules::decide`]).

use std::time::Duration;

use headroom_clock::WallTime;
use headroom_config::{cron::Calendar, Config};
use jiff::{
    civil::{Date, DateTime},
    tz::{AmbiguousOffset, TimeZone},
};
use serde::{Deserialize, Serialize};

/// How far a search for a boundary looks (29 years: every weekday and
/// leap-day combination recurs within 28).
const SEARCH_DAYS: i32 = 29 * 366;

/// One moment a schedule selects its variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boundary {
    /// The instant, whole seconds since the Unix epoch (UTC).
    pub unix_secs: i64,
    /// The schedule's name.
    pub schedule: String,
    /// Its variant (None: the base policy).
    pub variant: Option<String>,
}

impl Boundary {
    /// The instant as wall-clock time.
    pub fn at(&self) -> WallTime {
        WallTime::from_unix_nanos((self.unix_secs.max(0) as u64).saturating_mul(1_000_000_000))
    }
}

/// What the calendar selects at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The boundary in force (None: no schedule has matched yet, the base runs).
    pub current: Option<Boundary>,
    /// The next boundary, if any within the search horizon.
    pub next: Option<Boundary>,
}

impl Decision {
    /// The variant to run (None: the base policy).
    pub fn variant(&self) -> Option<&str> {
        self.current.as_ref().and_then(|b| b.variant.as_deref())
    }
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    variant: Option<String>,
    cal: Calendar,
}

/// The compiled schedules of a policy.
#[derive(Debug, Clone)]
pub struct Schedules {
    entries: Vec<Entry>,
    tz: TimeZone,
    tolerance: Duration,
}

fn to_wall(ts: jiff::Timestamp) -> i64 {
    ts.as_second()
}

fn weekday(d: Date) -> u8 {
    d.weekday().to_sunday_zero_offset() as u8
}

impl Schedules {
    /// Compiles the schedules of `cfg` (validated: errors only on a config
    /// that skipped validation).
    pub fn new(cfg: &Config) -> Result<Self, String> {
        let tz = TimeZone::get(&cfg.pool.timezone)
            .map_err(|e| format!("pool.timezone {:?}: {e}", cfg.pool.timezone))?;
        let entries = cfg
            .schedules
            .iter()
            .map(|s| {
                Ok(Entry {
                    name: s.name.clone(),
                    variant: s.variant.clone().filter(|v| v != "base"),
                    cal: s
                        .calendar()
                        .map_err(|(f, m)| format!("schedule {:?}: {f}: {m}", s.name))?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            entries,
            tz,
            tolerance: cfg.pool.schedule_tolerance,
        })
    }

    /// Whether there are schedules at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The instant of a civil time: unambiguous as is, in a gap at the
    /// transition, in a fold at the first occurrence (monotone in `dt`).
    fn instant(&self, dt: DateTime) -> Option<i64> {
        let amb = self.tz.to_ambiguous_timestamp(dt);
        let ts = match amb.offset() {
            AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok()?,
            AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok()?,
            AmbiguousOffset::Gap { after, .. } => {
                let early = after.to_timestamp(dt).ok()?;
                self.tz.following(early).next()?.timestamp()
            }
        };
        Some(to_wall(ts))
    }

    fn civil(&self, unix_secs: i64) -> Option<DateTime> {
        let ts = jiff::Timestamp::from_second(unix_secs).ok()?;
        Some(self.tz.to_datetime(ts))
    }

    /// Latest moment of `e` at or before `t` on date `d`, with its civil time.
    fn last_on(&self, e: &Entry, d: Date, t: i64) -> Option<(i64, DateTime)> {
        let c = &e.cal;
        let at = |h: u8, m: u8, s: u8| {
            let dt = d.at(h as i8, m as i8, s as i8, 0);
            self.instant(dt).map(|i| (i, dt))
        };
        let (m0, s0) = (c.minute.iter().next()?, c.second.iter().next()?);
        for h in c.hour.iter().rev() {
            if at(h, m0, s0)?.0 > t {
                continue;
            }
            for m in c.minute.iter().rev() {
                if at(h, m, s0)?.0 > t {
                    continue;
                }
                for s in c.second.iter().rev() {
                    let x = at(h, m, s)?;
                    if x.0 <= t {
                        return Some(x);
                    }
                }
            }
        }
        None
    }

    /// Earliest moment of `e` after `t` on date `d`.
    fn next_on(&self, e: &Entry, d: Date, t: i64) -> Option<(i64, DateTime)> {
        let c = &e.cal;
        let at = |h: u8, m: u8, s: u8| {
            let dt = d.at(h as i8, m as i8, s as i8, 0);
            self.instant(dt).map(|i| (i, dt))
        };
        let (m1, s1) = (c.minute.iter().next_back()?, c.second.iter().next_back()?);
        for h in c.hour.iter() {
            if at(h, m1, s1)?.0 <= t {
                continue;
            }
            for m in c.minute.iter() {
                if at(h, m, s1)?.0 <= t {
                    continue;
                }
                for s in c.second.iter() {
                    let x = at(h, m, s)?;
                    if x.0 > t {
                        return Some(x);
                    }
                }
            }
        }
        None
    }

    fn matches(e: &Entry, d: Date) -> bool {
        e.cal
            .matches_date(d.month() as u8, d.day() as u8, weekday(d))
    }

    fn last_of(&self, e: &Entry, t: i64) -> Option<(i64, DateTime)> {
        // The civil date of t, and the day after (a fold can put early
        // civil times of the next day before t only in odd zones).
        let mut d = self.civil(t)?.date().tomorrow().ok()?;
        for _ in 0..SEARCH_DAYS {
            if Self::matches(e, d) {
                if let Some(x) = self.last_on(e, d, t) {
                    return Some(x);
                }
            }
            d = d.yesterday().ok()?;
        }
        None
    }

    fn next_of(&self, e: &Entry, t: i64) -> Option<(i64, DateTime)> {
        let mut d = self.civil(t)?.date().yesterday().ok()?;
        for _ in 0..SEARCH_DAYS {
            if Self::matches(e, d) {
                if let Some(x) = self.next_on(e, d, t) {
                    return Some(x);
                }
            }
            d = d.tomorrow().ok()?;
        }
        None
    }

    fn boundary(&self, i: usize, unix_secs: i64) -> Boundary {
        Boundary {
            unix_secs,
            schedule: self.entries[i].name.clone(),
            variant: self.entries[i].variant.clone(),
        }
    }

    /// The boundary in force at `t` (the latest at or before it).
    pub fn current(&self, t: WallTime) -> Option<Boundary> {
        let t = t.as_unix_secs() as i64;
        let best = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| self.last_of(e, t).map(|(s, dt)| (s, dt, i)))
            .max()?;
        Some(self.boundary(best.2, best.0))
    }

    /// The first boundary after `t`.
    pub fn next(&self, t: WallTime) -> Option<Boundary> {
        let t = t.as_unix_secs() as i64;
        let all: Vec<(i64, DateTime, usize)> = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| self.next_of(e, t).map(|(s, dt)| (s, dt, i)))
            .collect();
        let first = all.iter().map(|x| x.0).min()?;
        // Of boundaries at the same instant, the one then in force.
        let best = all.into_iter().filter(|x| x.0 == first).max()?;
        Some(self.boundary(best.2, best.0))
    }

    /// What the master runs at its wall time `now`, given the boundary the
    /// pool last applied (from the failover record): a boundary applied by
    /// a master whose clock was ahead is kept while it is within the
    /// tolerance of `now`, instead of reverting to the one before it.
    pub fn decide(&self, now: WallTime, applied: Option<&Boundary>) -> Decision {
        let mut current = self.current(now);
        if let Some(a) = applied {
            let ahead = a.unix_secs > current.as_ref().map_or(i64::MIN, |c| c.unix_secs);
            let within = (a.at() - now) <= self.tolerance;
            if ahead && within && self.entries.iter().any(|e| e.name == a.schedule) {
                current = Some(a.clone());
            }
        }
        let from = match &current {
            Some(c) if c.at() > now => c.at(),
            _ => now,
        };
        Decision {
            next: self.next(from),
            current,
        }
    }
}
