//! Calendar fields of a `[[schedule]]`, written like cron's, down to the
//! second: `"*"`, `"5"`, `"1-5"`, `"*/15"`, `"8-18/2"`, lists `"0,30"`,
//! month names (`jan`..`dec`) and day names (`mon`..`sun`, or 0-7 with 0
//! and 7 both Sunday). A field is the set of values it matches; a moment
//! matches a schedule when every field matches it (day of month *and* day
//! of week, unlike classic cron's "either").
//!
//! This is the one parser of these fields: validation and the schedule
//! evaluator (`headroom_control::triggers::schedule`) both call it.

use std::fmt;

use serde::Deserialize;

/// Which calendar field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// 0-59.
    Second,
    /// 0-59.
    Minute,
    /// 0-23.
    Hour,
    /// 1-31.
    DayOfMonth,
    /// 1-12 or `jan`..`dec`.
    Month,
    /// 0-7 (0 and 7 are Sunday) or `mon`..`sun`.
    DayOfWeek,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Field {
    /// Smallest and largest value written.
    pub fn range(self) -> (u8, u8) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
        }
    }

    /// The key in the file.
    pub fn key(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day_of_month",
            Field::Month => "month",
            Field::DayOfWeek => "day_of_week",
        }
    }

    fn value(self, t: &str) -> Result<u8, String> {
        let lower = t.to_ascii_lowercase();
        let named = match self {
            Field::Month => MONTHS.iter().position(|m| *m == lower).map(|i| i as u8 + 1),
            Field::DayOfWeek => DAYS.iter().position(|d| *d == lower).map(|i| i as u8),
            _ => None,
        };
        let (lo, hi) = self.range();
        let v = match named {
            Some(v) => v,
            None => t.parse::<u8>().map_err(|_| {
                let names = match self {
                    Field::Month => " or a month name (jan..dec)",
                    Field::DayOfWeek => " or a day name (mon..sun)",
                    _ => "",
                };
                format!("{t:?} is not a number {lo}-{hi}{names}")
            })?,
        };
        if !(lo..=hi).contains(&v) {
            return Err(format!("{v} is outside {lo}-{hi}"));
        }
        Ok(v)
    }
}

/// The values a field matches (bit v set = value v matches).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CronSet(u64);

impl fmt::Debug for CronSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl CronSet {
    /// Every value of `field`.
    pub fn all(field: Field) -> CronSet {
        let (lo, hi) = field.range();
        let hi = if field == Field::DayOfWeek { 6 } else { hi };
        CronSet((lo..=hi).fold(0, |m, v| m | 1 << v))
    }

    /// Exactly `v`.
    pub fn only(v: u8) -> CronSet {
        CronSet(1 << v)
    }

    /// Whether `v` matches.
    pub fn contains(self, v: u8) -> bool {
        v < 64 && self.0 & (1 << v) != 0
    }

    /// Matching values, ascending.
    pub fn iter(self) -> impl DoubleEndedIterator<Item = u8> {
        (0u8..64).filter(move |&v| self.contains(v))
    }

    /// Parses the text of `field` (see the module documentation).
    pub fn parse(field: Field, text: &str) -> Result<CronSet, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("is empty: write \"*\" for every value".into());
        }
        if text.len() > 256 {
            return Err("is longer than 256 characters".into());
        }
        let (lo, hi) = field.range();
        let mut set = 0u64;
        for part in text.split(',') {
            let part = part.trim();
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => {
                    let step: u8 = s
                        .trim()
                        .parse()
                        .ok()
                        .filter(|&s| s > 0)
                        .ok_or_else(|| format!("step {s:?} in {part:?} must be 1-{hi}"))?;
                    (r.trim(), step)
                }
                None => (part, 1),
            };
            let (a, b) = if range == "*" {
                (lo, hi)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (field.value(a.trim())?, field.value(b.trim())?);
                if a > b {
                    return Err(format!("range {range:?} runs backwards"));
                }
                (a, b)
            } else {
                let a = field.value(range)?;
                // "5/15" means from 5 to the end in steps of 15, as in cron.
                (a, if step > 1 { hi } else { a })
            };
            let mut v = a;
            while v <= b {
                set |= 1 << v;
                v = match v.checked_add(step) {
                    Some(n) => n,
                    None => break,
                };
            }
        }
        if field == Field::DayOfWeek && set & (1 << 7) != 0 {
            set = (set & !(1 << 7)) | 1;
        }
        Ok(CronSet(set))
    }
}

/// A field as written: a string (`"1-5"`) or a bare integer (`22`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronText(pub String);

impl<'de> Deserialize<'de> for CronText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        Ok(CronText(match Raw::deserialize(d)? {
            Raw::Int(i) => i.to_string(),
            Raw::Str(s) => s,
        }))
    }
}

/// The compiled calendar of a schedule: every field a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Calendar {
    /// Seconds.
    pub second: CronSet,
    /// Minutes.
    pub minute: CronSet,
    /// Hours.
    pub hour: CronSet,
    /// Days of the month.
    pub day_of_month: CronSet,
    /// Months.
    pub month: CronSet,
    /// Days of the week, 0 = Sunday.
    pub day_of_week: CronSet,
}

impl Calendar {
    /// Whether a civil date matches the date fields (`weekday` 0 = Sunday).
    pub fn matches_date(&self, month: u8, day: u8, weekday: u8) -> bool {
        self.month.contains(month)
            && self.day_of_month.contains(day)
            && self.day_of_week.contains(weekday)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(f: Field, s: &str) -> Vec<u8> {
        CronSet::parse(f, s).unwrap().iter().collect()
    }

    #[test]
    fn fields_parse_like_cron() {
        assert_eq!(p(Field::Second, "0"), vec![0]);
        assert_eq!(p(Field::Minute, "*/15"), vec![0, 15, 30, 45]);
        assert_eq!(p(Field::Hour, "8-18/4"), vec![8, 12, 16]);
        assert_eq!(p(Field::Hour, "22,6"), vec![6, 22]);
        assert_eq!(p(Field::Minute, "50/5"), vec![50, 55]);
        assert_eq!(p(Field::DayOfWeek, "mon-fri"), vec![1, 2, 3, 4, 5]);
        assert_eq!(p(Field::DayOfWeek, "sat,7"), vec![0, 6]);
        assert_eq!(p(Field::DayOfWeek, "*"), vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(p(Field::Month, "Jan,jul-aug"), vec![1, 7, 8]);
        assert_eq!(p(Field::DayOfMonth, "*").len(), 31);
    }

    #[test]
    fn bad_fields_say_what_is_wrong() {
        for (f, s, want) in [
            (Field::Hour, "24", "outside 0-23"),
            (Field::Minute, "", "empty"),
            (Field::Minute, "*/0", "step"),
            (Field::Hour, "9-5", "backwards"),
            (Field::Month, "smarch", "month name"),
            (Field::DayOfMonth, "0", "outside 1-31"),
            (Field::Second, "1-", "not a number"),
        ] {
            let e = CronSet::parse(f, s).unwrap_err();
            assert!(e.contains(want), "{s:?}: {e}");
        }
    }
}
