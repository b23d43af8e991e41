//! Response-time goals of jobs (goal mode).
//!
//! A job may state how fast it should answer, how much that matters, and
//! whether its resources are fixed (`booked`) or moved by the goal loop to
//! meet the goal (`goal`):
//!
//! ```toml
//! [[job]]
//! name = "web"
//! mode = "goal"                                 # default "booked"
//! goal = { percentile = 90, within = "50ms" }   # 90 % of requests within 50 ms
//! importance = 4                                # 1 (least) ..= 5 (most), default 3
//! cpu = { server_percent = 30 }                 # the starting share the loop moves
//!
//! [[job]]
//! name = "api"
//! mode = "goal"
//! goal = { average = "20ms" }                   # mean response time at most 20 ms
//! ```
//!
//! Response times are measured passively by the workers (first request byte
//! in to first reply byte out, per TCP turn) on the server that answers.
//! A *booked* job keeps exactly the CPU share and pipe bookings its policy
//! gives; its goal, if any, is measured and reported only. *Goal* jobs share
//! what booked jobs leave: the loop moves CPU share, pipe booking and VIP
//! placement between them, from jobs beating their goals (or less
//! important) to jobs missing theirs.

use std::time::Duration;

use serde::Deserialize;

use crate::locate::Seg;

/// Shortest goal time: the measurement's resolution is 1 µs, but a goal
/// below 100 µs is below what a worker's batching can time.
pub const MIN_GOAL_TIME: Duration = Duration::from_micros(100);
/// Longest goal time: the histograms' range (134 s) with margin.
pub const MAX_GOAL_TIME: Duration = Duration::from_secs(120);
/// Default importance.
pub const DEFAULT_IMPORTANCE: u8 = 3;

/// How a job's resources are managed.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The policy's CPU share and bookings, exactly (the default).
    #[default]
    Booked,
    /// Resources follow the goal, within what booked jobs leave.
    Goal,
}

/// A response-time goal.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "RawGoal")]
pub enum Goal {
    /// `percentile` % of the requests answered within `within`.
    Percentile {
        /// The share of requests, percent, in [1, 100).
        percentile: f64,
        /// The bound.
        within: Duration,
    },
    /// Mean response time at most `average`.
    Average {
        /// The bound on the mean.
        average: Duration,
    },
}

impl Goal {
    /// The goal's time bound.
    pub fn time(&self) -> Duration {
        match *self {
            Goal::Percentile { within, .. } => within,
            Goal::Average { average } => average,
        }
    }
}

impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Goal::Percentile { percentile, within } => {
                write!(
                    f,
                    "{percentile}% within {}",
                    humantime::format_duration(*within)
                )
            }
            Goal::Average { average } => {
                write!(f, "average {}", humantime::format_duration(*average))
            }
        }
    }
}

/// The TOML form before its shape is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGoal {
    percentile: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    within: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    average: Option<Duration>,
}

impl TryFrom<RawGoal> for Goal {
    type Error = String;

    fn try_from(r: RawGoal) -> Result<Self, String> {
        const SHAPE: &str =
            "a goal is { percentile = 90, within = \"50ms\" } or { average = \"20ms\" }";
        match (r.percentile, r.within, r.average) {
            (Some(percentile), Some(within), None) => Ok(Goal::Percentile { percentile, within }),
            (None, None, Some(average)) => Ok(Goal::Average { average }),
            (Some(_), None, None) => Err(format!("percentile needs within: {SHAPE}")),
            (None, Some(_), None) => Err(format!("within needs percentile: {SHAPE}")),
            _ => Err(format!(
                "set either percentile and within, or average: {SHAPE}"
            )),
        }
    }
}

/// Default importance (for `#[serde(default = ..)]`).
pub fn default_importance() -> u8 {
    DEFAULT_IMPORTANCE
}

/// The goal fields of one job, as the schema hands them over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobGoal<'a> {
    pub goal: Option<&'a Goal>,
    pub importance: u8,
    pub mode: Mode,
    pub cpu: Option<&'a crate::process::CpuPolicy>,
}

/// Checks the goal fields of job `index`; the error is the field path under
/// `job[index]` and a message that says how to fix it.
pub(crate) fn validate_job(index: usize, j: JobGoal<'_>) -> Result<(), (Vec<Seg>, String)> {
    use Seg::{Index as I, Key as K};
    let at = |f: &'static str| vec![K("job"), I(index), K(f)];
    if !(1..=5).contains(&j.importance) {
        return Err((
            at("importance"),
            format!(
                "{} must be 1 (least important) ..= 5 (most important)",
                j.importance
            ),
        ));
    }
    if let Some(g) = j.goal {
        if let Goal::Percentile { percentile, .. } = g {
            if !(percentile.is_finite() && (1.0..100.0).contains(percentile)) {
                return Err((
                    at("goal"),
                    format!("percentile = {percentile} must be at least 1 and below 100 (e.g. 90, 99.9)"),
                ));
            }
        }
        let t = g.time();
        if !(MIN_GOAL_TIME..=MAX_GOAL_TIME).contains(&t) {
            return Err((
                at("goal"),
                format!(
                    "{} is outside {}..={}: response times are measured in that range",
                    humantime::format_duration(t),
                    humantime::format_duration(MIN_GOAL_TIME),
                    humantime::format_duration(MAX_GOAL_TIME)
                ),
            ));
        }
    }
    if j.mode == Mode::Goal {
        if j.goal.is_none() {
            return Err((
                at("mode"),
                "mode = \"goal\" needs a goal, e.g. goal = { percentile = 90, within = \"50ms\" }"
                    .into(),
            ));
        }
        if let Some(cpu) = j.cpu {
            if !matches!(cpu.share, crate::process::CpuShare::ServerPercent(_)) {
                return Err((
                    at("cpu"),
                    "the goal loop sets a goal-mode job's share on each server: give its starting \
                     share as cpu = { server_percent = N } (cap_percent is kept), or use mode = \"booked\""
                        .into(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{Config, ConfigError};

    use super::*;

    const BASE: &str = "[node]\nid = 1\naddress = \"10.0.0.1\"\n[interfaces]\nouter = \"eth0\"\ninner = \"eth1\"\n";

    fn parse(jobs: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}{jobs}"), Path::new("t.toml"))
    }

    fn err(jobs: &str) -> String {
        parse(jobs).unwrap_err().to_string()
    }

    #[test]
    fn goals_parse() {
        let c = parse(
            "[[job]]\nname = \"web\"\nmode = \"goal\"\ngoal = { percentile = 90, within = \"50ms\" }\nimportance = 5\n\
             cpu = { server_percent = 30, cap_percent = 80 }\n\
             [[job]]\nname = \"api\"\ngoal = { average = \"20ms\" }\n[[job]]\nname = \"plain\"\n",
        )
        .unwrap();
        let web = &c.jobs[0];
        assert_eq!(web.mode, Mode::Goal);
        assert_eq!(web.importance, 5);
        assert_eq!(
            web.goal,
            Some(Goal::Percentile {
                percentile: 90.0,
                within: Duration::from_millis(50)
            })
        );
        assert_eq!(web.goal.unwrap().to_string(), "90% within 50ms");
        let api = &c.jobs[1];
        assert_eq!(
            (api.mode, api.importance),
            (Mode::Booked, DEFAULT_IMPORTANCE)
        );
        assert_eq!(api.goal.unwrap().to_string(), "average 20ms");
        assert_eq!(c.jobs[2].goal, None);
    }

    #[test]
    fn bad_goals_say_where_and_how() {
        let e = err("[[job]]\nname = \"web\"\n\nimportance = 7\n");
        assert_eq!(
            e,
            "t.toml:10: job[0].importance: 7 must be 1 (least important) ..= 5 (most important)"
        );
        let e = err("[[job]]\nname = \"web\"\nmode = \"goal\"\n");
        assert!(
            e.starts_with("t.toml:9: job[0].mode: mode = \"goal\" needs a goal"),
            "{e}"
        );
        let e = err("[[job]]\nname = \"web\"\ngoal = { percentile = 100, within = \"50ms\" }\n");
        assert!(
            e.starts_with("t.toml:9: job[0].goal: percentile = 100 must be"),
            "{e}"
        );
        let e = err("[[job]]\nname = \"web\"\ngoal = { average = \"10us\" }\n");
        assert!(
            e.starts_with("t.toml:9: job[0].goal: 10us is outside 100us..=2m"),
            "{e}"
        );
        let e = err("[[job]]\nname = \"web\"\nmode = \"goal\"\ngoal = { average = \"10ms\" }\ncpu = { pool_percent = 10 }\n");
        assert!(
            e.starts_with("t.toml:11: job[0].cpu: the goal loop sets"),
            "{e}"
        );
        // Shape errors come from the parser, with line and column.
        let e = err("[[job]]\nname = \"web\"\ngoal = { percentile = 90 }\n");
        assert!(
            e.starts_with("t.toml:9:") && e.contains("percentile needs within"),
            "{e}"
        );
        let e = err("[[job]]\nname = \"web\"\ngoal = { average = \"20ms\", within = \"5ms\" }\n");
        assert!(
            e.contains("set either percentile and within, or average"),
            "{e}"
        );
        let e = err("[[job]]\nname = \"web\"\ngoal = { average = \"fast\" }\n");
        assert!(e.starts_with("t.toml:9:"), "{e}");
        let e = err("[[job]]\nname = \"web\"\nmode = \"best\"\n");
        assert!(e.starts_with("t.toml:9:") && e.contains("booked"), "{e}");
    }
}
