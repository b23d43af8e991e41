//! `[history]`: the node's embedded monitoring history (see the `headroom-history` crate).
//! Durations are written like `"24h"`, `"30days"`, `"2years"`; sizes like `"4GiB"`, `"500MB"`.

use std::{path::PathBuf, time::Duration};

pub use bytesize::ByteSize;
use serde::Deserialize;

/// `[history]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Record history at all.
    pub enabled: bool,
    /// The SQLite database file (its directory is created if missing).
    /// Empty in the file: `history.db` in `[cpu] state_dir` (filled in by
    /// `Config::parse`).
    pub path: PathBuf,
    /// How long one-second points are kept.
    #[serde(with = "humantime_serde")]
    pub retention_1s: Duration,
    /// How long one-minute points are kept.
    #[serde(with = "humantime_serde")]
    pub retention_1m: Duration,
    /// How long one-hour points are kept.
    #[serde(with = "humantime_serde")]
    pub retention_1h: Duration,
    /// Largest size of the database; beyond it the oldest data of the largest tier is dropped.
    pub max_size: ByteSize,
    /// Samples waiting for the writer thread; a full queue drops the sample (counted).
    pub queue: usize,
    /// How much recent data the writer keeps in memory while the store cannot be written.
    #[serde(with = "humantime_serde")]
    pub backlog: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            enabled: true,
            path: PathBuf::new(),
            retention_1s: Duration::from_secs(86_400),
            retention_1m: Duration::from_secs(30 * 86_400),
            retention_1h: Duration::from_secs(730 * 86_400),
            max_size: ByteSize(4 << 30),
            queue: 120,
            backlog: Duration::from_secs(600),
        }
    }
}

impl HistoryConfig {
    /// Checks the section: (field, message) of the first problem.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.path.as_os_str().is_empty() || self.path.ends_with("..") {
            return Err(("path", "must name a file".into()));
        }
        if self.retention_1s < Duration::from_secs(120) {
            return Err(("retention_1s", "must be at least 2min".into()));
        }
        if self.retention_1m < self.retention_1s {
            return Err(("retention_1m", "must be at least retention_1s".into()));
        }
        if self.retention_1h < self.retention_1m {
            return Err(("retention_1h", "must be at least retention_1m".into()));
        }
        if self.max_size.0 < 1 << 20 {
            return Err(("max_size", "must be at least 1MiB".into()));
        }
        if !(1..=100_000).contains(&self.queue) {
            return Err(("queue", "must be 1..=100000 samples".into()));
        }
        if self.backlog > Duration::from_secs(86_400) {
            return Err(("backlog", "must be at most 24h".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let size = |s: &str| toml::from_str::<HistoryConfig>(&format!("max_size = {s}"));
        assert_eq!(size("\"4GiB\"").unwrap().max_size.0, 4 << 30);
        assert_eq!(size("\"500 MB\"").unwrap().max_size.0, 500_000_000);
        assert_eq!(size("\"1.5KiB\"").unwrap().max_size.0, 1536);
        assert_eq!(size("2097152").unwrap().max_size.0, 2 << 20);
        assert!(size("\"4 parsecs\"").is_err());
        assert!(size("\"\"").is_err());
    }

    #[test]
    fn section_parses_and_validates() {
        let c: HistoryConfig = toml::from_str(
            "path = \"/h.db\"\nretention_1s = \"6h\"\nmax_size = \"64MiB\"\nbacklog = \"5min\"",
        )
        .unwrap();
        assert_eq!(c.retention_1s, Duration::from_secs(6 * 3600));
        assert_eq!(c.max_size.0, 64 << 20);
        assert!(c.validate().is_ok());
        let default = HistoryConfig {
            path: "/var/lib/headroom/history.db".into(),
            ..Default::default()
        };
        assert!(default.validate().is_ok());
        let bad = HistoryConfig {
            retention_1m: Duration::from_secs(3600),
            ..default.clone()
        };
        assert_eq!(bad.validate().unwrap_err().0, "retention_1m");
        assert!(toml::from_str::<HistoryConfig>("retention_1s = \"soon\"").is_err());
        assert!(toml::from_str::<HistoryConfig>("colour = 1").is_err());
    }
}
