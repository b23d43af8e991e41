//! Process detection rules and CPU policies of a job.
//!
//! A job's process section says which operating-system processes belong to
//! the job (its *process rules*) and how much CPU the job is entitled to (its
//! *CPU policy*). The process scheduler in `headroom-control` applies both on
//! every low-frequency tick.
//!
//! Example (TOML):
//!
//! ```toml
//! [[job]]
//! name = "web"
//! include_children = true
//! cpu = { server_percent = 40, cap_percent = 60 }
//!
//! [[job.rules]]
//! name = "nginx*"
//! uid = 33
//!
//! [[job.rules]]
//! cmdline = "/usr/bin/python3 -m web.app*"
//! env = ["APP_ROLE=frontend"]
//! ```
//!
//! Globs (used by `name`, `cmdline`, `parent` and environment values) support
//! `*` (any run of characters, including none), `?` (exactly one character),
//! `[abc]`, `[a-z]`, `[!a-z]` (one character in / not in the set) and `\x`
//! (the character `x` literally). A pattern without those characters is an
//! exact match.

use serde::Deserialize;
use thiserror::Error;

/// Errors found while validating process rules and CPU policies.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ProcessConfigError {
    /// A job name is empty, too long, or contains characters other than
    /// ASCII letters, digits, `_`, `-` and `.` (job names become cgroup
    /// directory names).
    #[error(
        "invalid job name {0:?}: use 1-64 characters from [A-Za-z0-9_.-], not \".\" or \"..\""
    )]
    InvalidJobName(String),
    /// Two jobs have the same name.
    #[error("duplicate job name {0:?}")]
    DuplicateJobName(String),
    /// A process rule has no field at all and would match every process.
    #[error("job {job:?}: process rule #{index} has no fields and would match every process")]
    EmptyRule {
        /// Job containing the rule.
        job: String,
        /// Zero-based index of the rule within the job.
        index: usize,
    },
    /// A glob pattern is malformed (unterminated `[...]` or trailing `\`).
    #[error("invalid glob pattern {pattern:?}: {reason}")]
    InvalidGlob {
        /// The offending pattern.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `env` entry is empty or has an empty variable name.
    #[error("invalid env rule {0:?}: expected \"KEY\" or \"KEY=VALUE-GLOB\"")]
    InvalidEnvRule(String),
    /// A CPU policy sets none or more than one of `server_percent`,
    /// `pool_percent` and `pool_cores`.
    #[error(
        "cpu policy must set exactly one of server_percent, pool_percent, pool_cores (found {0})"
    )]
    PolicyKind(usize),
    /// A percentage is not a finite number in (0, 100].
    #[error("{field} = {value} is out of range: expected a number in (0, 100]")]
    PercentOutOfRange {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: f64,
    },
    /// `pool_cores` is not a finite number greater than zero.
    #[error("pool_cores = {0} is out of range: expected a number > 0")]
    CoresOutOfRange(f64),
}

/// One process detection rule. Every field that is present must match the
/// process (logical AND); absent fields match anything. A rule must have at
/// least one field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRule {
    /// Process name (the kernel's `comm`, at most 15 characters, as shown
    /// in `/proc/PID/comm`): exact text or glob.
    #[serde(default)]
    pub name: Option<String>,
    /// Glob over the command line: the process's arguments joined with
    /// single spaces (`/proc/PID/cmdline`). Kernel threads have none.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Real user id of the process.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Real group id of the process.
    #[serde(default)]
    pub gid: Option<u32>,
    /// Session id (`sid`) of the process.
    #[serde(default)]
    pub session: Option<u32>,
    /// Environment conditions, all of which must hold. Each entry is
    /// either `"KEY"` (the variable is set, to any value) or
    /// `"KEY=VALUE"`, where `VALUE` is exact text or a glob over the
    /// variable's value. Read from `/proc/PID/environ` (the environment the
    /// process was started with).
    #[serde(default)]
    pub env: Vec<String>,
    /// Name (`comm`) of the parent process: exact text or glob.
    #[serde(default)]
    pub parent: Option<String>,
}

impl ProcessRule {
    /// True when the rule has no field at all.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.cmdline.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.session.is_none()
            && self.env.is_empty()
            && self.parent.is_none()
    }

    /// Checks glob syntax and env entries.
    pub fn validate(&self) -> Result<(), ProcessConfigError> {
        for pat in [&self.name, &self.cmdline, &self.parent]
            .into_iter()
            .flatten()
        {
            Glob::new(pat)?;
        }
        for e in &self.env {
            let (key, value) = split_env_rule(e);
            if key.is_empty() {
                return Err(ProcessConfigError::InvalidEnvRule(e.clone()));
            }
            if let Some(v) = value {
                Glob::new(v)?;
            }
        }
        Ok(())
    }
}

/// Splits an env rule into its key and optional value pattern.
pub fn split_env_rule(rule: &str) -> (&str, Option<&str>) {
    match rule.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (rule, None),
    }
}

/// How much CPU a job is entitled to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CpuShare {
    /// Percentage of each server's CPU (all cores together) given to the
    /// job's instance on that server.
    ServerPercent(f64),
    /// Percentage of the whole pool's CPU (sum over live servers), split
    /// across the job's instances in proportion to their current demand.
    PoolPercent(f64),
    /// Number of cores of the pool, split across the job's instances in
    /// proportion to their current demand.
    PoolCores(f64),
}

/// CPU policy of a job. In TOML, exactly one of `server_percent`,
/// `pool_percent` or `pool_cores`, plus an optional `cap_percent`:
/// `cpu = { server_percent = 40 }`, `cpu = { pool_cores = 1.5, cap_percent = 80 }`.
///
/// The share is a guarantee under contention (a weight); it is
/// work-conserving: a job may use idle CPU beyond its share unless a cap is
/// set.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "RawCpuPolicy")]
pub struct CpuPolicy {
    /// The entitlement.
    pub share: CpuShare,
    /// Hard upper limit on the job's CPU use on each server, in percent of
    /// that server's CPU (all cores), enforced with CFS bandwidth control.
    /// Absent: no limit.
    pub cap_percent: Option<f64>,
}

/// Wire form of [`CpuPolicy`] before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCpuPolicy {
    /// See [`CpuShare::ServerPercent`].
    server_percent: Option<f64>,
    /// See [`CpuShare::PoolPercent`].
    pool_percent: Option<f64>,
    /// See [`CpuShare::PoolCores`].
    pool_cores: Option<f64>,
    /// See [`CpuPolicy::cap_percent`].
    cap_percent: Option<f64>,
}

fn check_percent(field: &'static str, value: f64) -> Result<f64, ProcessConfigError> {
    if value.is_finite() && value > 0.0 && value <= 100.0 {
        Ok(value)
    } else {
        Err(ProcessConfigError::PercentOutOfRange { field, value })
    }
}

impl TryFrom<RawCpuPolicy> for CpuPolicy {
    type Error = ProcessConfigError;

    fn try_from(raw: RawCpuPolicy) -> Result<Self, Self::Error> {
        let n = [raw.server_percent, raw.pool_percent, raw.pool_cores]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if n != 1 {
            return Err(ProcessConfigError::PolicyKind(n));
        }
        let share = if let Some(p) = raw.server_percent {
            CpuShare::ServerPercent(check_percent("server_percent", p)?)
        } else if let Some(p) = raw.pool_percent {
            CpuShare::PoolPercent(check_percent("pool_percent", p)?)
        } else {
            let c = raw.pool_cores.unwrap_or(0.0);
            if !(c.is_finite() && c > 0.0) {
                return Err(ProcessConfigError::CoresOutOfRange(c));
            }
            CpuShare::PoolCores(c)
        };
        let cap_percent = match raw.cap_percent {
            Some(c) => Some(check_percent("cap_percent", c)?),
            None => None,
        };
        Ok(CpuPolicy { share, cap_percent })
    }
}

fn default_true() -> bool {
    true
}

/// The process part of a job definition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessJob {
    /// Job name, unique in the configuration; 1-64 characters from
    /// `[A-Za-z0-9_.-]` (it names the job's cgroup).
    pub name: String,
    /// Process rules; a process belongs to the job if any rule matches
    /// (logical OR between rules). When several jobs match a process, the
    /// first job in configuration order wins.
    #[serde(default)]
    pub rules: Vec<ProcessRule>,
    /// Children (and further descendants) of a process matched by this job
    /// join the job even if they match no rule themselves. A process that
    /// matches a rule of its own is placed by that rule instead. Default:
    /// true.
    #[serde(default = "default_true")]
    pub include_children: bool,
    /// CPU policy. Absent: the job's processes are detected and monitored
    /// but get no CPU entitlement (they keep their normal scheduling).
    #[serde(default)]
    pub cpu: Option<CpuPolicy>,
}

impl ProcessJob {
    /// Validates name, rules and globs.
    pub fn validate(&self) -> Result<(), ProcessConfigError> {
        validate_job_name(&self.name)?;
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.is_empty() {
                return Err(ProcessConfigError::EmptyRule {
                    job: self.name.clone(),
                    index,
                });
            }
            rule.validate()?;
        }
        Ok(())
    }
}

/// Checks that a job name is usable as a cgroup directory name.
pub fn validate_job_name(name: &str) -> Result<(), ProcessConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ProcessConfigError::InvalidJobName(name.to_string()))
    }
}

/// Validates a list of jobs: each job, and unique names.
pub fn validate_jobs(jobs: &[ProcessJob]) -> Result<(), ProcessConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    for job in jobs {
        job.validate()?;
        if !seen.insert(job.name.as_str()) {
            return Err(ProcessConfigError::DuplicateJobName(job.name.clone()));
        }
    }
    Ok(())
}

/// A compiled glob pattern (see the module documentation for the syntax),
/// matched by `globset`. The pattern is translated first so the syntax stays
/// the documented one: runs of `*` are one `*` (globset gives `**` a path
/// meaning), `{` and `}` are literal (globset alternation), and `*` crosses
/// `/` (command lines are not paths).
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    literal: bool,
    matcher: globset::GlobMatcher,
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.pattern == other.pattern
    }
}

impl Eq for Glob {}

impl Glob {
    /// Compiles a pattern.
    pub fn new(pattern: &str) -> Result<Glob, ProcessConfigError> {
        let err = |reason| ProcessConfigError::InvalidGlob {
            pattern: pattern.to_string(),
            reason,
        };
        let chars: Vec<char> = pattern.chars().collect();
        let mut out = String::with_capacity(pattern.len() + 4);
        let mut literal = true;
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    literal = false;
                    if !out.ends_with('*') || out.ends_with("\\*") {
                        out.push('*');
                    }
                }
                '?' => {
                    literal = false;
                    out.push('?');
                }
                '\\' => {
                    i += 1;
                    let c = *chars.get(i).ok_or_else(|| err("trailing backslash"))?;
                    out.push('\\');
                    out.push(c);
                }
                '{' | '}' => {
                    out.push('\\');
                    out.push(chars[i]);
                }
                '[' => {
                    literal = false;
                    // Copied as is up to its `]` (a `]` right after `[`,
                    // `[!` or `[^` is a member).
                    let mut j = i + 1;
                    if matches!(chars.get(j), Some('!') | Some('^')) {
                        j += 1;
                    }
                    j += 1;
                    while chars.get(j).is_some_and(|&c| c != ']') {
                        j += 1;
                    }
                    if j >= chars.len() {
                        return Err(err("unterminated character class"));
                    }
                    out.extend(&chars[i..=j]);
                    i = j;
                }
                c => out.push(c),
            }
            i += 1;
        }
        let glob = globset::GlobBuilder::new(&out)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| {
                err(match e.kind() {
                    globset::ErrorKind::InvalidRange(..) => "reversed range in character class",
                    globset::ErrorKind::UnclosedClass => "unterminated character class",
                    globset::ErrorKind::DanglingEscape => "trailing backslash",
                    _ => "malformed pattern",
                })
            })?;
        Ok(Glob {
            pattern: pattern.to_string(),
            literal,
            matcher: glob.compile_matcher(),
        })
    }

    /// True when the pattern has no wildcard (it is an exact match).
    pub fn is_literal(&self) -> bool {
        self.literal
    }

    /// Matches the whole of `text` against the pattern.
    pub fn matches(&self, text: &str) -> bool {
        self.matcher.is_match(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        job: Vec<ProcessJob>,
    }

    fn parse(s: &str) -> Result<Vec<ProcessJob>, String> {
        let d: Doc = toml::from_str(s).map_err(|e| e.to_string())?;
        validate_jobs(&d.job).map_err(|e| e.to_string())?;
        Ok(d.job)
    }

    #[test]
    fn parses_full_job() {
        let jobs = parse(
            r#"
            [[job]]
            name = "web"
            cpu = { server_percent = 40, cap_percent = 60 }
            [[job.rules]]
            name = "nginx*"
            cmdline = "nginx: worker*"
            uid = 33
            gid = 33
            session = 7
            env = ["ROLE=front*", "DEBUG"]
            parent = "nginx"
            [[job]]
            name = "batch"
            include_children = false
            cpu = { pool_cores = 1.5 }
            [[job.rules]]
            name = "make"
            "#,
        )
        .unwrap();
        assert_eq!(jobs.len(), 2);
        assert!(jobs[0].include_children);
        assert!(!jobs[1].include_children);
        assert_eq!(
            jobs[0].cpu,
            Some(CpuPolicy {
                share: CpuShare::ServerPercent(40.0),
                cap_percent: Some(60.0)
            })
        );
        assert_eq!(jobs[1].cpu.unwrap().share, CpuShare::PoolCores(1.5));
        assert_eq!(jobs[0].rules[0].env.len(), 2);
        assert_eq!(jobs[0].rules[0].session, Some(7));
    }

    #[test]
    fn rejects_bad_policies_and_fields() {
        let base = |cpu: &str| format!("[[job]]\nname = \"a\"\ncpu = {cpu}\n");
        assert!(parse(&base("{ pool_percent = 40 }")).is_ok());
        for bad in [
            "{ }",
            "{ server_percent = 40, pool_percent = 10 }",
            "{ server_percent = 0 }",
            "{ server_percent = 101 }",
            "{ pool_cores = -1 }",
            "{ server_percent = 50, cap_percent = 0 }",
            "{ server_percent = 50, bogus = 1 }",
        ] {
            assert!(parse(&base(bad)).is_err(), "{bad} accepted");
        }
        assert!(parse("[[job]]\nname = \"a\"\nbogus = 1\n").is_err());
        assert!(parse("[[job]]\nname = \"a\"\n[[job.rules]]\nnam = \"x\"\n").is_err());
    }

    #[test]
    fn rejects_bad_jobs() {
        assert!(matches!(
            parse("[[job]]\nname = \"a/b\"\n"),
            Err(e) if e.contains("invalid job name")
        ));
        assert!(parse("[[job]]\nname = \"..\"\n").is_err());
        assert!(parse("[[job]]\nname = \"a\"\n[[job]]\nname = \"a\"\n")
            .unwrap_err()
            .contains("duplicate"));
        assert!(parse("[[job]]\nname = \"a\"\n[[job.rules]]\n")
            .unwrap_err()
            .contains("no fields"));
        assert!(parse("[[job]]\nname = \"a\"\n[[job.rules]]\nname = \"[ab\"\n").is_err());
        assert!(parse("[[job]]\nname = \"a\"\n[[job.rules]]\nenv = [\"=x\"]\n").is_err());
    }

    #[test]
    fn glob_matching() {
        let m = |p: &str, t: &str| Glob::new(p).unwrap().matches(t);
        assert!(m("nginx", "nginx"));
        assert!(!m("nginx", "nginx2"));
        assert!(m("ngin?", "nginx"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXXbYYbc"));
        assert!(!m("a*b*c", "aXXbYYbd"));
        assert!(m("*.py", "app.py"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("[!a-c]x", "dx"));
        assert!(m("[]]", "]"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("**a", "ba"));
        assert!(Glob::new("abc").unwrap().is_literal());
        assert!(!Glob::new("a*").unwrap().is_literal());
        assert!(Glob::new("ab\\").is_err());
        assert!(Glob::new("[a").is_err());
        assert!(Glob::new("[z-a]").is_err());
        // Not globset's syntax: braces are literal, `*` crosses `/`.
        assert!(m("a{b,c}", "a{b,c}") && !m("a{b,c}", "ab"));
        assert!(m(
            "/usr/bin/python3 -m web.app*",
            "/usr/bin/python3 -m web.app --port 80"
        ));
        assert!(m("*--serve*", "/opt/app/bin/app --serve"));
        assert!(m("\\**", "*abc") && !m("\\**", "abc"));
    }
}
