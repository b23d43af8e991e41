//! Fuzz bodies of the trigger and schedule parsers, shared by the
//! cargo-fuzz target (`config/fuzz`) and the unit tests that run them over
//! a corpus and random input. None may panic.

use std::path::Path;

use crate::{
    cron::{CronSet, Field},
    triggers::Condition,
    Config,
};

const FIELDS: [Field; 6] = [
    Field::Second,
    Field::Minute,
    Field::Hour,
    Field::DayOfMonth,
    Field::Month,
    Field::DayOfWeek,
];

/// Arbitrary bytes as a condition, as every calendar field, and as a whole
/// policy document. A condition that parses prints back to text that
/// parses to the same condition.
pub fn triggers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Condition::parse(text) {
        let printed = c.to_string();
        let again = Condition::parse(&printed)
            .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?} fails: {e}"));
        assert_eq!(again, c, "{text:?} -> {printed:?}");
    }
    for f in FIELDS {
        if let Ok(set) = CronSet::parse(f, text) {
            let (lo, hi) = f.range();
            assert!(set.iter().all(|v| v >= lo && v <= hi));
        }
    }
    let _ = Config::parse(text, Path::new("fuzz.toml"));
}
