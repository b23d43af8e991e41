//! Triggers, schedules, policy variants and failure policies: how the pool
//! reacts to conditions and to time on its own.
//!
//! ```toml
//! [pool]
//! timezone = "Europe/Paris"          # schedules are read in this zone
//!
//! [[variant]]                         # a named overlay of the base policy
//! name = "night"
//! job = [{ name = "batch", cpu = { pool_percent = 60 }, booking = [{ pipe = "wan", rate = "60%" }] }]
//!
//! [[schedule]]                        # from 22:00 on weekdays, run "night"
//! name = "night"
//! variant = "night"
//! hour = 22
//! day_of_week = "mon-fri"
//!
//! [[trigger]]
//! name = "batch-squeezed"
//! condition = "squeezed(batch, pipe=wan)"
//! for = "30s"
//! cooldown = "10m"
//! action = [
//!   { log = {} },
//!   { command = { argv = ["/usr/local/bin/page", "net"], timeout = "10s" } },
//!   { webhook = { url = "https://hooks.example.com/headroom", token = "hooks" } },
//! ]
//!
//! [[job]]
//! name = "batch"
//! on_node_failure = { cpu = { pool_percent = 20 } }
//!
//! [actions]                           # node file: what the pool's policy may run here
//! allowed_commands = ["/usr/local/bin/page"]
//! allowed_webhooks = ["hooks.example.com"]
//! secrets = { hooks = "s3cret" }
//! ```
//!
//! Conditions are a small expression language with one parser
//! ([`Condition::parse`]); calendar fields are parsed by [`crate::cron`].
//! Validation reports `file:line: field: message` like the rest of the file.

use std::{collections::HashMap, fmt, path::Path, time::Duration};

use serde::Deserialize;

use crate::{
    cron::{Calendar, CronSet, CronText, Field},
    error::ConfigError,
    locate::{line_of, render, Seg},
    process::{CpuPolicy, CpuShare},
    BookingConfig, Config, Rate,
};

// ---------------------------------------------------------------- schema

/// `[pool]`: pool-wide settings of the policy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    /// IANA time zone schedules are read in (e.g. "Europe/Paris").
    pub timezone: String,
    /// Largest wall-clock difference between nodes that schedules tolerate:
    /// a new master whose clock is behind by up to this much does not undo
    /// a boundary the previous master already crossed.
    #[serde(with = "humantime_serde")]
    pub schedule_tolerance: Duration,
    /// How long every lost node must be back before the jobs' normal
    /// policies are restored (a bouncing node does not flap the pool).
    #[serde(with = "humantime_serde")]
    pub restore_after: Duration,
    /// `"on"`: pace pipes and set CPU shares. `"off"` (monitor-only): classify,
    /// account, record history and direct VIPs, but pace nothing and leave
    /// every process in its own cgroup. Switchable live with `policy apply`.
    pub enforcement: Enforcement,
}

/// `[pool] enforcement`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Enforce bookings and CPU policies.
    #[default]
    On,
    /// Monitor only: measure and record what the policy would do.
    Off,
}

impl Enforcement {
    /// True for `On`.
    pub fn is_on(self) -> bool {
        self == Enforcement::On
    }
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_on() { "on" } else { "off" })
    }
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            enforcement: Enforcement::On,
            timezone: "UTC".into(),
            schedule_tolerance: Duration::from_secs(2),
            restore_after: Duration::from_secs(10),
        }
    }
}

/// `[actions]` of the node file: what a policy arriving from the pool may
/// make this node do, and the secrets it may reference by name.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsConfig {
    /// Executables (absolute paths) a trigger's `command` may run.
    pub allowed_commands: Vec<String>,
    /// Hosts (`"host"` or `"host:port"`) a trigger's `webhook` may post to.
    pub allowed_webhooks: Vec<String>,
    /// Secrets by name (bearer tokens of webhooks).
    pub secrets: HashMap<String, String>,
    /// Actions running at once on this node.
    pub workers: usize,
    /// Actions waiting for a worker; beyond it new ones are recorded as dropped.
    pub queue: usize,
}

impl fmt::Debug for ActionsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        let mut names: Vec<&String> = self.secrets.keys().collect();
        names.sort();
        f.debug_struct("ActionsConfig")
            .field("allowed_commands", &self.allowed_commands)
            .field("allowed_webhooks", &self.allowed_webhooks)
            .field("secrets", &names)
            .field("workers", &self.workers)
            .field("queue", &self.queue)
            .finish()
    }
}

impl Default for ActionsConfig {
    fn default() -> Self {
        Self {
            allowed_commands: Vec::new(),
            allowed_webhooks: Vec::new(),
            secrets: HashMap::new(),
            workers: 4,
            queue: 64,
        }
    }
}

impl ActionsConfig {
    /// Whether `argv0` may be run.
    pub fn allows_command(&self, argv0: &str) -> bool {
        self.allowed_commands.iter().any(|c| c == argv0)
    }

    /// Whether a webhook to `host` (lower case) on `port` may be posted.
    pub fn allows_webhook(&self, host: &str, port: u16) -> bool {
        self.allowed_webhooks
            .iter()
            .any(|a| match split_host_port(a) {
                Some((h, p)) => h.eq_ignore_ascii_case(host) && p.is_none_or(|p| p == port),
                None => false,
            })
    }
}

/// `"host"`, `"host:port"` or `"[v6]:port"`.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, tail) = rest.split_once(']')?;
        return match tail.strip_prefix(':') {
            Some(p) => Some((h, Some(p.parse().ok()?))),
            None if tail.is_empty() => Some((h, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, Some(p.parse().ok()?))),
        _ => Some((s, None)),
    }
}

/// `[[trigger]]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Unique name (events and metrics carry it).
    pub name: String,
    /// The condition, e.g. `"squeezed(batch, pipe=wan)"` (see [`Condition`]).
    pub condition: String,
    /// How long the condition must hold before the trigger fires.
    #[serde(rename = "for", default, with = "humantime_serde")]
    pub hold: Duration,
    /// After firing, how long before a new episode may fire.
    #[serde(default, with = "humantime_serde")]
    pub cooldown: Duration,
    /// What to do when it fires, in order.
    #[serde(default, rename = "action")]
    pub actions: Vec<Action>,
}

impl TriggerConfig {
    /// The parsed condition (validation has already checked it).
    pub fn parsed_condition(&self) -> Result<Condition, String> {
        Condition::parse(&self.condition)
    }
}

/// One action of a trigger.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A structured log line (`{ log = {} }`).
    Log(LogAction),
    /// Run a program (no shell) with the event in its environment.
    Command(CommandAction),
    /// POST the event as JSON.
    Webhook(WebhookAction),
    /// Switch the pool to a named variant while the trigger fires.
    Variant(String),
    /// Move a job's booking or CPU share by a bounded step.
    Adjust(AdjustAction),
}

impl Action {
    /// Short name for events and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Log(_) => "log",
            Action::Command(_) => "command",
            Action::Webhook(_) => "webhook",
            Action::Variant(_) => "variant",
            Action::Adjust(_) => "adjust",
        }
    }
}

/// Severity of a log action.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Informational.
    Info,
    /// Needs attention (default).
    #[default]
    Warn,
    /// Something is broken.
    Error,
}

/// `{ log = { level = "warn", message = "..." } }`
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogAction {
    /// Severity.
    pub level: LogLevel,
    /// Text added to the event's fields.
    pub message: Option<String>,
}

/// `{ command = { argv = ["/usr/local/bin/x", "arg"], timeout = "10s" } }`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandAction {
    /// Program (absolute path, in the node's `allowed_commands`) and arguments.
    pub argv: Vec<String>,
    /// Killed (with its process group) after this long.
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_command_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `{ webhook = { url = "https://...", token = "name", timeout = "5s", retries = 3 } }`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookAction {
    /// `http://` or `https://` URL whose host the node's `allowed_webhooks` lists.
    pub url: String,
    /// Name of a secret in the node's `[actions] secrets`, sent as a bearer token.
    #[serde(default)]
    pub token: Option<String>,
    /// Timeout of each attempt.
    #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts after the first one fails.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry; doubled before each further one.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> Duration {
    Duration::from_secs(1)
}

/// `{ adjust = { job = "batch", booking = { pipe = "wan", step = "+5%", limit = "40%" } } }`
/// or `{ adjust = { job = "batch", cpu = { step = 5, limit = 60 } } }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdjustAction {
    /// The job.
    pub job: String,
    /// Move its booking on a pipe.
    #[serde(default)]
    pub booking: Option<BookingStep>,
    /// Move its CPU share.
    #[serde(default)]
    pub cpu: Option<CpuStep>,
}

/// A bounded step of a booking.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BookingStep {
    /// The pipe of the booking.
    pub pipe: String,
    /// Signed step: `"+5%"` of the pipe, `"-2Mbit"`.
    pub step: StepRate,
    /// The booking never goes past this (above for a positive step, below for a negative one).
    pub limit: Rate,
}

/// A bounded step of a CPU share, in the unit of the job's policy
/// (percent for `server_percent`/`pool_percent`, cores for `pool_cores`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CpuStep {
    /// Signed step.
    pub step: f64,
    /// Bound (above for a positive step, below for a negative one).
    pub limit: f64,
}

/// A signed rate: `"+5%"`, `"-2Mbit"`, `"5%"` (positive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRate {
    /// Direction.
    pub negative: bool,
    /// Magnitude.
    pub rate: Rate,
}

impl StepRate {
    /// Signed bits/s given the pipe's capacity.
    pub fn bps(&self, capacity: u64) -> i128 {
        let v = i128::from(self.rate.bps(capacity));
        if self.negative {
            -v
        } else {
            v
        }
    }
}

impl<'de> Deserialize<'de> for StepRate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim();
        let (negative, rest) = match t.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let rate: Rate = rest.parse().map_err(serde::de::Error::custom)?;
        Ok(StepRate { negative, rate })
    }
}

/// `[[schedule]]`: from each moment its calendar matches, the pool runs
/// `variant` (the base policy when absent), until another schedule's moment.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Unique name.
    pub name: String,
    /// Variant selected (absent: the base policy).
    #[serde(default)]
    pub variant: Option<String>,
    /// 0-59. Unwritten fields finer than the finest written time field are
    /// 0, coarser ones `*`: `hour = 22` alone means 22:00:00 every day.
    #[serde(default)]
    pub second: Option<CronText>,
    /// 0-59.
    #[serde(default)]
    pub minute: Option<CronText>,
    /// 0-23.
    #[serde(default)]
    pub hour: Option<CronText>,
    /// 1-31 (default `*`).
    #[serde(default)]
    pub day_of_month: Option<CronText>,
    /// 1-12 or jan-dec (default `*`).
    #[serde(default)]
    pub month: Option<CronText>,
    /// 0-7 or mon-sun, 0 and 7 Sunday (default `*`).
    #[serde(default)]
    pub day_of_week: Option<CronText>,
}

impl ScheduleConfig {
    /// Compiles the calendar; `Err((field key, message))`.
    pub fn calendar(&self) -> Result<Calendar, (&'static str, String)> {
        let time = [
            (Field::Hour, &self.hour),
            (Field::Minute, &self.minute),
            (Field::Second, &self.second),
        ];
        let Some(finest) = time.iter().rposition(|(_, t)| t.is_some()) else {
            return Err((
                "hour",
                "a schedule needs at least one of hour, minute or second".into(),
            ));
        };
        let mut sets = [CronSet::all(Field::Hour); 3];
        for (i, (f, t)) in time.iter().enumerate() {
            sets[i] = match t {
                Some(t) => CronSet::parse(*f, &t.0).map_err(|m| (f.key(), m))?,
                None if i > finest => CronSet::only(0),
                None => CronSet::all(*f),
            };
        }
        let date = |f: Field, t: &Option<CronText>| match t {
            Some(t) => CronSet::parse(f, &t.0).map_err(|m| (f.key(), m)),
            None => Ok(CronSet::all(f)),
        };
        Ok(Calendar {
            hour: sets[0],
            minute: sets[1],
            second: sets[2],
            day_of_month: date(Field::DayOfMonth, &self.day_of_month)?,
            month: date(Field::Month, &self.month)?,
            day_of_week: date(Field::DayOfWeek, &self.day_of_week)?,
        })
    }
}

/// `[[variant]]`: a named overlay of parts of the base policy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    /// Unique name (not "base").
    pub name: String,
    /// Jobs whose bookings or CPU policy change.
    #[serde(default, rename = "job")]
    pub jobs: Vec<VariantJob>,
    /// Pipes whose capacity changes.
    #[serde(default, rename = "pipe")]
    pub pipes: Vec<VariantPipe>,
}

/// A job's part of a variant.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VariantJob {
    /// An existing job.
    pub name: String,
    /// Replaces its CPU policy.
    #[serde(default)]
    pub cpu: Option<CpuPolicy>,
    /// Replace its bookings on the same pipes (or add bookings).
    #[serde(default, rename = "booking")]
    pub bookings: Vec<BookingConfig>,
}

/// A pipe's part of a variant.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VariantPipe {
    /// An existing pipe.
    pub name: String,
    /// New capacity.
    #[serde(default)]
    pub capacity: Option<Rate>,
    /// New immediate share, percent.
    #[serde(default)]
    pub immediate_share: Option<u8>,
}

/// A job's `on_node_failure`: its policy while the pool has lost nodes.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct FailurePolicy {
    /// CPU policy while nodes are lost.
    #[serde(default)]
    pub cpu: Option<CpuPolicy>,
    /// Bookings while nodes are lost (replacing those on the same pipes).
    #[serde(default)]
    pub booking: Vec<BookingConfig>,
}

// ------------------------------------------------------------ conditions

/// How a value compares with a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `>`
    Above,
    /// `>=`
    AtLeast,
    /// `<`
    Below,
    /// `<=`
    AtMost,
}

impl Cmp {
    /// `value OP level`.
    pub fn holds(self, value: f64, level: f64) -> bool {
        match self {
            Cmp::Above => value > level,
            Cmp::AtLeast => value >= level,
            Cmp::Below => value < level,
            Cmp::AtMost => value <= level,
        }
    }
    fn symbol(self) -> &'static str {
        match self {
            Cmp::Above => ">",
            Cmp::AtLeast => ">=",
            Cmp::Below => "<",
            Cmp::AtMost => "<=",
        }
    }
}

/// Where a job is squeezed or resources are short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// Any pipe or the CPU.
    Any,
    /// One pipe.
    Pipe(String),
    /// The CPU.
    Cpu,
}

/// A trigger's condition over the pool's live state.
///
/// ```text
/// squeezed(JOB[, pipe=PIPE | cpu][, by=N%])  demand above grant (by more than N%)
/// utilisation(PIPE) > N%                      also >=, <, <=
/// node_failed[(NODE)]                         a node is lost (state)
/// node_joined[(NODE)]                         a node joined (event)
/// pool_cores < N                              cores of the live pool; also >, >=, <=
/// insufficient_resources[(cpu | pipe=PIPE)]   the bookings cannot be met
/// vip_owner_changed[(VIP)]                    a VIP moved to another owner (event)
/// vip_unhealthy[(VIP[, node=NODE])]           a VIP member fails its health check
/// instances_changed(JOB)                      the job's instance count changed (event)
/// process_exited(JOB)                         a process of the job exited (event)
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Demand above grant.
    Squeezed {
        /// The job.
        job: String,
        /// Where.
        on: Resource,
        /// Margin, percent of the grant.
        by_percent: f64,
    },
    /// A pipe's use of its capacity.
    Utilisation {
        /// The pipe.
        pipe: String,
        /// Comparison.
        cmp: Cmp,
        /// Level, percent.
        percent: f64,
    },
    /// A node (or any) is lost.
    NodeFailed {
        /// The node.
        node: Option<u32>,
    },
    /// A node (or any) joined.
    NodeJoined {
        /// The node.
        node: Option<u32>,
    },
    /// Cores of the live pool.
    PoolCores {
        /// Comparison.
        cmp: Cmp,
        /// Level.
        cores: f64,
    },
    /// The bookings cannot be met.
    InsufficientResources {
        /// Where.
        on: Resource,
    },
    /// A VIP's owner changed.
    VipOwnerChanged {
        /// The VIP service (any when absent).
        vip: Option<String>,
    },
    /// A VIP member is unhealthy.
    VipUnhealthy {
        /// The VIP service (any when absent).
        vip: Option<String>,
        /// The member (any when absent).
        node: Option<u32>,
    },
    /// A job's instance count changed.
    InstancesChanged {
        /// The job.
        job: String,
    },
    /// A process of a job exited.
    ProcessExited {
        /// The job.
        job: String,
    },
}

const CONDITIONS: &str = "squeezed(JOB[, pipe=PIPE | cpu][, by=N%]), utilisation(PIPE) > N%, \
    node_failed[(NODE)], node_joined[(NODE)], pool_cores < N, \
    insufficient_resources[(cpu | pipe=PIPE)], vip_owner_changed[(VIP)], \
    vip_unhealthy[(VIP[, node=NODE])], instances_changed(JOB), process_exited(JOB)";

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    LParen,
    RParen,
    Comma,
    Eq,
    Op(Cmp),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Tok::LParen),
            ')' => out.push(Tok::RParen),
            ',' => out.push(Tok::Comma),
            '=' => out.push(Tok::Eq),
            '>' | '<' => {
                let eq = it.next_if(|(_, c)| *c == '=').is_some();
                out.push(Tok::Op(match (c, eq) {
                    ('>', false) => Cmp::Above,
                    ('>', true) => Cmp::AtLeast,
                    ('<', false) => Cmp::Below,
                    _ => Cmp::AtMost,
                }));
            }
            '"' => {
                let mut w = String::new();
                loop {
                    match it.next() {
                        Some((_, '"')) => break,
                        Some((_, ch)) => w.push(ch),
                        None => return Err(format!("unterminated quote at {}", i + 1)),
                    }
                }
                out.push(Tok::Word(w));
            }
            c if c.is_ascii_alphanumeric() || "_.-%".contains(c) => {
                let mut w = String::from(c);
                while let Some((_, ch)) =
                    it.next_if(|(_, ch)| ch.is_ascii_alphanumeric() || "_.-%".contains(*ch))
                {
                    w.push(ch);
                }
                out.push(Tok::Word(w));
            }
            c => return Err(format!("unexpected {c:?} at {}", i + 1)),
        }
    }
    Ok(out)
}

/// Arguments of a call: positional words and `key=value` pairs.
struct Args {
    positional: Vec<String>,
    named: Vec<(String, String)>,
}

impl Args {
    fn take(&mut self, key: &str) -> Option<String> {
        let i = self.named.iter().position(|(k, _)| k == key)?;
        Some(self.named.remove(i).1)
    }
    fn done(self, what: &str) -> Result<(), String> {
        if let Some(p) = self.positional.first() {
            return Err(format!("{what}: unexpected argument {p:?}"));
        }
        if let Some((k, _)) = self.named.first() {
            return Err(format!("{what}: unknown argument {k:?}"));
        }
        Ok(())
    }
    fn first(&mut self) -> Option<String> {
        (!self.positional.is_empty()).then(|| self.positional.remove(0))
    }
    fn is_empty(&self) -> bool {
        self.positional.is_empty() && self.named.is_empty()
    }
}

fn parse_percent(w: &str) -> Result<f64, String> {
    let n = w.strip_suffix('%').unwrap_or(w);
    match n.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{w:?} is not a percentage like 90%")),
    }
}

fn parse_node(w: &str) -> Result<u32, String> {
    w.parse::<u32>()
        .ok()
        .filter(|&n| (1..=65535).contains(&n))
        .ok_or_else(|| format!("{w:?} is not a node id (1-65535)"))
}

impl Condition {
    /// Parses a condition (see the type's documentation for the language).
    pub fn parse(s: &str) -> Result<Condition, String> {
        if s.len() > 1024 {
            return Err("is longer than 1024 characters".into());
        }
        let toks = lex(s)?;
        let mut it = toks.into_iter().peekable();
        let Some(Tok::Word(name)) = it.next() else {
            return Err(format!("is empty: expected one of {CONDITIONS}"));
        };
        let mut args = Args {
            positional: Vec::new(),
            named: Vec::new(),
        };
        let called = it.next_if_eq(&Tok::LParen).is_some();
        if called {
            loop {
                match it.next() {
                    Some(Tok::RParen) if args.is_empty() => break,
                    Some(Tok::Word(w)) => {
                        if it.next_if_eq(&Tok::Eq).is_some() {
                            match it.next() {
                                Some(Tok::Word(v)) => args.named.push((w, v)),
                                _ => return Err(format!("{name}: {w}= needs a value")),
                            }
                        } else {
                            args.positional.push(w);
                        }
                    }
                    _ => return Err(format!("{name}: expected an argument or \")\"")),
                }
                match it.next() {
                    Some(Tok::Comma) => {}
                    Some(Tok::RParen) => break,
                    _ => return Err(format!("{name}: expected \",\" or \")\"")),
                }
            }
        }
        let cmp = match it.next() {
            None => None,
            Some(Tok::Op(op)) => match it.next() {
                Some(Tok::Word(w)) => Some((op, w)),
                _ => return Err(format!("{name}: {} needs a level", op.symbol())),
            },
            Some(t) => return Err(format!("{name}: unexpected {t:?} after the condition")),
        };
        if let Some(t) = it.next() {
            return Err(format!("{name}: unexpected {t:?} at the end"));
        }
        let need_cmp = |what: &str| {
            cmp.clone().ok_or_else(|| {
                format!("{what} needs a comparison, e.g. \"{what} > 90%\" or \"< 10%\"")
            })
        };
        let no_cmp = |c: Condition| match &cmp {
            Some((op, _)) => Err(format!(
                "{name} is true or false: it takes no comparison ({})",
                op.symbol()
            )),
            None => Ok(c),
        };
        let job = |args: &mut Args| {
            args.first()
                .ok_or_else(|| format!("{name} needs a job, e.g. {name}(batch)"))
        };
        match name.as_str() {
            "squeezed" => {
                let job = job(&mut args)?;
                let pipe = args.take("pipe");
                let cpu = args.positional.iter().position(|p| p == "cpu");
                let on = match (pipe, cpu) {
                    (Some(_), Some(_)) => {
                        return Err("squeezed: give pipe=PIPE or cpu, not both".into())
                    }
                    (Some(p), None) => Resource::Pipe(p),
                    (None, Some(i)) => {
                        args.positional.remove(i);
                        Resource::Cpu
                    }
                    (None, None) => Resource::Any,
                };
                let by_percent = args
                    .take("by")
                    .map(|b| parse_percent(&b))
                    .transpose()?
                    .unwrap_or(0.0);
                args.done("squeezed")?;
                no_cmp(Condition::Squeezed {
                    job,
                    on,
                    by_percent,
                })
            }
            "utilisation" | "utilization" => {
                let pipe = args
                    .first()
                    .ok_or("utilisation needs a pipe, e.g. utilisation(wan) > 90%")?;
                args.done("utilisation")?;
                let (cmp, level) = need_cmp("utilisation(PIPE)")?;
                Ok(Condition::Utilisation {
                    pipe,
                    cmp,
                    percent: parse_percent(&level)?,
                })
            }
            "node_failed" | "node_joined" => {
                let node = args
                    .first()
                    .or_else(|| args.take("node"))
                    .map(|n| parse_node(&n))
                    .transpose()?;
                args.done(&name)?;
                no_cmp(if name == "node_failed" {
                    Condition::NodeFailed { node }
                } else {
                    Condition::NodeJoined { node }
                })
            }
            "pool_cores" => {
                if called {
                    args.done("pool_cores")?;
                }
                let (cmp, level) = need_cmp("pool_cores")?;
                let cores = level
                    .parse::<f64>()
                    .ok()
                    .filter(|c| c.is_finite() && *c >= 0.0)
                    .ok_or_else(|| format!("{level:?} is not a number of cores"))?;
                Ok(Condition::PoolCores { cmp, cores })
            }
            "insufficient_resources" => {
                let on = match (args.take("pipe"), args.first()) {
                    (Some(p), None) => Resource::Pipe(p),
                    (None, Some(c)) if c == "cpu" => Resource::Cpu,
                    (None, None) => Resource::Any,
                    _ => {
                        return Err(
                            "insufficient_resources takes cpu or pipe=PIPE (or nothing)".into()
                        )
                    }
                };
                args.done(&name)?;
                no_cmp(Condition::InsufficientResources { on })
            }
            "vip_owner_changed" => {
                let vip = args.first();
                args.done(&name)?;
                no_cmp(Condition::VipOwnerChanged { vip })
            }
            "vip_unhealthy" => {
                let vip = args.first();
                let node = args.take("node").map(|n| parse_node(&n)).transpose()?;
                args.done(&name)?;
                no_cmp(Condition::VipUnhealthy { vip, node })
            }
            "instances_changed" => {
                let job = job(&mut args)?;
                args.done(&name)?;
                no_cmp(Condition::InstancesChanged { job })
            }
            "process_exited" => {
                let job = job(&mut args)?;
                args.done(&name)?;
                no_cmp(Condition::ProcessExited { job })
            }
            other => Err(format!(
                "unknown condition {other:?}: expected one of {CONDITIONS}"
            )),
        }
    }

    /// Whether this is an event (true at the moment it is seen) rather than
    /// a state (true while it lasts). Events fire at once: `for` does not apply.
    pub fn is_event(&self) -> bool {
        matches!(
            self,
            Condition::NodeJoined { .. }
                | Condition::VipOwnerChanged { .. }
                | Condition::InstancesChanged { .. }
                | Condition::ProcessExited { .. }
        )
    }

    /// The condition's name (`squeezed`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Condition::Squeezed { .. } => "squeezed",
            Condition::Utilisation { .. } => "utilisation",
            Condition::NodeFailed { .. } => "node_failed",
            Condition::NodeJoined { .. } => "node_joined",
            Condition::PoolCores { .. } => "pool_cores",
            Condition::InsufficientResources { .. } => "insufficient_resources",
            Condition::VipOwnerChanged { .. } => "vip_owner_changed",
            Condition::VipUnhealthy { .. } => "vip_unhealthy",
            Condition::InstancesChanged { .. } => "instances_changed",
            Condition::ProcessExited { .. } => "process_exited",
        }
    }
}

impl fmt::Display for Condition {
    /// The canonical text (parses back to the same condition).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = |s: &str| {
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-%".contains(c))
            {
                s.to_string()
            } else {
                format!("\"{s}\"")
            }
        };
        match self {
            Condition::Squeezed {
                job,
                on,
                by_percent,
            } => {
                write!(f, "squeezed({}", q(job))?;
                match on {
                    Resource::Any => {}
                    Resource::Pipe(p) => write!(f, ", pipe={}", q(p))?,
                    Resource::Cpu => write!(f, ", cpu")?,
                }
                if *by_percent > 0.0 {
                    write!(f, ", by={by_percent}%")?;
                }
                write!(f, ")")
            }
            Condition::Utilisation { pipe, cmp, percent } => {
                write!(f, "utilisation({}) {} {percent}%", q(pipe), cmp.symbol())
            }
            Condition::NodeFailed { node } | Condition::NodeJoined { node } => {
                write!(f, "{}", self.name())?;
                match node {
                    Some(n) => write!(f, "({n})"),
                    None => Ok(()),
                }
            }
            Condition::PoolCores { cmp, cores } => write!(f, "pool_cores {} {cores}", cmp.symbol()),
            Condition::InsufficientResources { on } => match on {
                Resource::Any => write!(f, "insufficient_resources"),
                Resource::Cpu => write!(f, "insufficient_resources(cpu)"),
                Resource::Pipe(p) => write!(f, "insufficient_resources(pipe={})", q(p)),
            },
            Condition::VipOwnerChanged { vip } => match vip {
                Some(v) => write!(f, "vip_owner_changed({})", q(v)),
                None => write!(f, "vip_owner_changed"),
            },
            Condition::VipUnhealthy { vip, node } => match (vip, node) {
                (None, None) => write!(f, "vip_unhealthy"),
                (Some(v), None) => write!(f, "vip_unhealthy({})", q(v)),
                (Some(v), Some(n)) => write!(f, "vip_unhealthy({}, node={n})", q(v)),
                (None, Some(n)) => write!(f, "vip_unhealthy(node={n})"),
            },
            Condition::InstancesChanged { job } => write!(f, "instances_changed({})", q(job)),
            Condition::ProcessExited { job } => write!(f, "process_exited({})", q(job)),
        }
    }
}

// --------------------------------------------------------------- overlay

/// A change a trigger's `adjust` made to a job (absolute value, kept until
/// the policy document changes).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adjustment {
    /// The job.
    pub job: String,
    /// What was moved.
    pub target: AdjustTarget,
    /// New value: bits/s for a booking, the share's number for CPU.
    pub value: f64,
}

/// What an adjustment moves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AdjustTarget {
    /// The booking on this pipe.
    Booking(String),
    /// The CPU share.
    Cpu,
}

/// What is laid over the base policy to get the effective one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overlay<'a> {
    /// Active variant (None: base).
    pub variant: Option<&'a str>,
    /// The pool has lost nodes: jobs' `on_node_failure` apply.
    pub node_failure: bool,
    /// Trigger adjustments, applied last.
    pub adjustments: &'a [Adjustment],
}

fn replace_bookings(into: &mut Vec<BookingConfig>, from: &[BookingConfig]) {
    for b in from {
        match into.iter_mut().find(|x| x.pipe == b.pipe) {
            Some(x) => *x = b.clone(),
            None => into.push(b.clone()),
        }
    }
}

fn set_share(p: &mut CpuPolicy, v: f64) {
    p.share = match p.share {
        CpuShare::ServerPercent(_) => CpuShare::ServerPercent(v.clamp(0.01, 100.0)),
        CpuShare::PoolPercent(_) => CpuShare::PoolPercent(v.clamp(0.01, 100.0)),
        CpuShare::PoolCores(_) => CpuShare::PoolCores(v.max(0.01)),
    };
}

/// The number of a CPU share, in its own unit.
pub fn share_value(s: CpuShare) -> f64 {
    match s {
        CpuShare::ServerPercent(v) | CpuShare::PoolPercent(v) | CpuShare::PoolCores(v) => v,
    }
}

impl Config {
    /// The effective policy: the base with the variant, then the failure
    /// policies, then the adjustments laid over it. Unknown names are
    /// ignored (validation rejects them). An adjusted booking that would
    /// overbook its pipe is lowered to what is left of the capacity.
    pub fn compose(&self, o: &Overlay<'_>) -> Config {
        let mut c = self.clone();
        if let Some(v) = o
            .variant
            .and_then(|n| self.variants.iter().find(|v| v.name == n))
        {
            for vp in &v.pipes {
                if let Some(p) = c.pipes.iter_mut().find(|p| p.name == vp.name) {
                    if let Some(cap) = vp.capacity {
                        p.capacity = cap;
                    }
                    if let Some(s) = vp.immediate_share {
                        p.immediate_share = s;
                    }
                }
            }
            for vj in &v.jobs {
                if let Some(j) = c.jobs.iter_mut().find(|j| j.name == vj.name) {
                    if vj.cpu.is_some() {
                        j.cpu = vj.cpu;
                    }
                    replace_bookings(&mut j.bookings, &vj.bookings);
                }
            }
        }
        if o.node_failure {
            for j in &mut c.jobs {
                if let Some(f) = j.on_node_failure.clone() {
                    if f.cpu.is_some() {
                        j.cpu = f.cpu;
                    }
                    replace_bookings(&mut j.bookings, &f.booking);
                }
            }
        }
        for a in o.adjustments {
            let Some(ji) = c.jobs.iter().position(|j| j.name == a.job) else {
                continue;
            };
            match &a.target {
                AdjustTarget::Cpu => {
                    if let Some(p) = c.jobs[ji].cpu.as_mut() {
                        set_share(p, a.value);
                    }
                }
                AdjustTarget::Booking(pipe) => {
                    let Some(cap) = c.pipes.iter().find(|p| &p.name == pipe) else {
                        continue;
                    };
                    let cap = cap.capacity.bps(0);
                    let others: u64 = c
                        .jobs
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != ji)
                        .flat_map(|(_, j)| j.bookings.iter())
                        .filter(|b| &b.pipe == pipe)
                        .map(|b| b.rate.bps(cap))
                        .sum();
                    let room = cap.saturating_sub(others);
                    if let Some(b) = c.jobs[ji].bookings.iter_mut().find(|b| &b.pipe == pipe) {
                        let mut v = (a.value.max(0.0) as u64).min(room);
                        if let Some(cap_rate) = b.cap {
                            v = v.min(cap_rate.bps(cap));
                        }
                        b.rate = Rate::Bps(v);
                    }
                }
            }
        }
        c
    }
}

// ------------------------------------------------------------ validation

type Invalid = (Vec<Seg>, String);

fn check_name(
    path: Vec<Seg>,
    name: &str,
    seen: &mut Vec<String>,
    what: &str,
) -> Result<(), Invalid> {
    if name.is_empty() || name.len() > 64 {
        return Err((path, format!("{what} name must be 1-64 characters")));
    }
    if seen.iter().any(|s| s == name) {
        return Err((path, format!("duplicate {what} name {name:?}")));
    }
    seen.push(name.to_string());
    Ok(())
}

/// A webhook URL: (lower-case host, port), or what is wrong.
pub fn webhook_target(url: &str) -> Result<(String, u16), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{url:?} has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((
        host.to_ascii_lowercase(),
        uri.port_u16().unwrap_or(default_port),
    ))
}

fn cpu_limit_ok(share: CpuShare, limit: f64) -> bool {
    match share {
        CpuShare::PoolCores(_) => limit.is_finite() && limit > 0.0,
        _ => limit.is_finite() && limit > 0.0 && limit <= 100.0,
    }
}

/// Checks triggers, schedules, variants and failure policies against the
/// rest of the policy (names they refer to, bounds). The node allowlist is
/// checked separately ([`check_allowlist`]): the policy travels the pool.
pub(crate) fn validate_policy(cfg: &Config) -> Result<(), Invalid> {
    use Seg::{Index as I, Key as K};
    if jiff::tz::TimeZone::get(&cfg.pool.timezone).is_err() {
        return Err((
            vec![K("pool"), K("timezone")],
            format!(
                "unknown time zone {:?}: use an IANA name such as \"UTC\" or \"Europe/Paris\"",
                cfg.pool.timezone
            ),
        ));
    }
    if cfg.pool.schedule_tolerance > Duration::from_secs(300) {
        return Err((
            vec![K("pool"), K("schedule_tolerance")],
            "must be at most 5m (nodes' clocks should be synchronised)".into(),
        ));
    }
    let job = |n: &str| cfg.jobs.iter().find(|j| j.name == n);
    let pipe = |n: &str| cfg.pipes.iter().find(|p| p.name == n);
    let vip = |n: &str| cfg.vips.iter().any(|v| v.name == n);
    let mut seen = Vec::new();
    for (i, v) in cfg.variants.iter().enumerate() {
        check_name(
            vec![K("variant"), I(i), K("name")],
            &v.name,
            &mut seen,
            "variant",
        )?;
        if v.name == "base" {
            return Err((
                vec![K("variant"), I(i), K("name")],
                "\"base\" names the policy without a variant".into(),
            ));
        }
        for (k, vj) in v.jobs.iter().enumerate() {
            if job(&vj.name).is_none() {
                return Err((
                    vec![K("variant"), I(i), K("job"), I(k), K("name")],
                    format!("no job named {:?}", vj.name),
                ));
            }
            for (b, bk) in vj.bookings.iter().enumerate() {
                if pipe(&bk.pipe).is_none() {
                    return Err((
                        vec![
                            K("variant"),
                            I(i),
                            K("job"),
                            I(k),
                            K("booking"),
                            I(b),
                            K("pipe"),
                        ],
                        format!("no pipe named {:?}", bk.pipe),
                    ));
                }
            }
        }
        for (k, vp) in v.pipes.iter().enumerate() {
            if pipe(&vp.name).is_none() {
                return Err((
                    vec![K("variant"), I(i), K("pipe"), I(k), K("name")],
                    format!("no pipe named {:?}", vp.name),
                ));
            }
            if let Some(c) = vp.capacity {
                if !matches!(c, Rate::Bps(b) if b >= 8000) {
                    return Err((
                        vec![K("variant"), I(i), K("pipe"), I(k), K("capacity")],
                        "must be an absolute rate of at least 8kbit".into(),
                    ));
                }
            }
            if vp.immediate_share.is_some_and(|s| s > 100) {
                return Err((
                    vec![K("variant"), I(i), K("pipe"), I(k), K("immediate_share")],
                    "must be 0..=100".into(),
                ));
            }
        }
    }
    for (i, j) in cfg.jobs.iter().enumerate() {
        if let Some(f) = &j.on_node_failure {
            for (b, bk) in f.booking.iter().enumerate() {
                if pipe(&bk.pipe).is_none() {
                    return Err((
                        vec![
                            K("job"),
                            I(i),
                            K("on_node_failure"),
                            K("booking"),
                            I(b),
                            K("pipe"),
                        ],
                        format!("no pipe named {:?}", bk.pipe),
                    ));
                }
            }
        }
    }
    // Every combination the pool can run must fit its pipes.
    let variants = std::iter::once(None).chain(cfg.variants.iter().map(|v| Some(v.name.as_str())));
    for (vi, variant) in variants.enumerate() {
        for failure in [false, true] {
            let c = cfg.compose(&Overlay {
                variant,
                node_failure: failure,
                adjustments: &[],
            });
            for p in &c.pipes {
                let cap = p.capacity.bps(0);
                let booked = c.booked_on(p);
                if booked > cap {
                    let path = match variant {
                        Some(_) => vec![K("variant"), I(vi - 1)],
                        None => vec![K("job")],
                    };
                    let when = match (variant, failure) {
                        (Some(v), false) => format!("in variant {v:?}"),
                        (Some(v), true) => format!("in variant {v:?} with on_node_failure"),
                        (None, _) => "with on_node_failure".into(),
                    };
                    return Err((
                        path,
                        format!(
                            "{when}, bookings on pipe {:?} add up to {booked} bit/s, more than its capacity {cap} bit/s",
                            p.name
                        ),
                    ));
                }
            }
        }
    }
    let variant_known = |n: &str| n == "base" || cfg.variants.iter().any(|v| v.name == n);
    let mut seen = Vec::new();
    for (i, s) in cfg.schedules.iter().enumerate() {
        check_name(
            vec![K("schedule"), I(i), K("name")],
            &s.name,
            &mut seen,
            "schedule",
        )?;
        if let Some(v) = &s.variant {
            if !variant_known(v) {
                return Err((
                    vec![K("schedule"), I(i), K("variant")],
                    format!("no variant named {v:?} (declare it with [[variant]])"),
                ));
            }
        }
        let cal = s
            .calendar()
            .map_err(|(f, m)| (vec![K("schedule"), I(i), K(f)], m))?;
        if !matches_some_date(&cal) {
            return Err((
                vec![K("schedule"), I(i), K("day_of_month")],
                "day_of_month, month and day_of_week never match together (e.g. 30 February)"
                    .into(),
            ));
        }
    }
    let mut seen = Vec::new();
    for (i, t) in cfg.triggers.iter().enumerate() {
        let at = |k: &'static str| vec![K("trigger"), I(i), K(k)];
        check_name(at("name"), &t.name, &mut seen, "trigger")?;
        let cond = Condition::parse(&t.condition).map_err(|m| (at("condition"), m))?;
        let no_job = |n: &str| (at("condition"), format!("no job named {n:?}"));
        let no_pipe = |n: &str| (at("condition"), format!("no pipe named {n:?}"));
        let missing = match &cond {
            Condition::Squeezed { job: j, on, .. } => {
                if job(j).is_none() {
                    Some(no_job(j))
                } else if let Resource::Pipe(p) = on {
                    pipe(p).is_none().then(|| no_pipe(p))
                } else {
                    None
                }
            }
            Condition::Utilisation { pipe: p, .. }
            | Condition::InsufficientResources {
                on: Resource::Pipe(p),
            } => pipe(p).is_none().then(|| no_pipe(p)),
            Condition::VipOwnerChanged { vip: Some(v) }
            | Condition::VipUnhealthy { vip: Some(v), .. } => {
                (!vip(v)).then(|| (at("condition"), format!("no VIP service named {v:?}")))
            }
            Condition::InstancesChanged { job: j } | Condition::ProcessExited { job: j } => {
                job(j).is_none().then(|| no_job(j))
            }
            _ => None,
        };
        if let Some(e) = missing {
            return Err(e);
        }
        if cond.is_event() && !t.hold.is_zero() {
            return Err((
                at("for"),
                format!(
                    "{} is an event, true only when it happens: remove `for` (use `cooldown` to limit how often it fires)",
                    cond.name()
                ),
            ));
        }
        if t.hold > Duration::from_secs(86_400) || t.cooldown > Duration::from_secs(7 * 86_400) {
            return Err((
                at(if t.hold > Duration::from_secs(86_400) {
                    "for"
                } else {
                    "cooldown"
                }),
                "`for` must be at most 1day and `cooldown` at most 7days".into(),
            ));
        }
        if t.actions.is_empty() {
            return Err((
                at("name"),
                format!(
                    "trigger {:?} has no action: add at least one, e.g. action = [{{ log = {{}} }}]",
                    t.name
                ),
            ));
        }
        if t.actions.len() > 16 {
            return Err((at("action"), "at most 16 actions per trigger".into()));
        }
        for (a, act) in t.actions.iter().enumerate() {
            let path = |k: &'static str| vec![K("trigger"), I(i), K("action"), I(a), K(k)];
            match act {
                Action::Log(_) => {}
                Action::Command(c) => {
                    let Some(argv0) = c.argv.first() else {
                        return Err((path("command"), "argv must name a program".into()));
                    };
                    if !argv0.starts_with('/') {
                        return Err((
                            path("command"),
                            format!(
                                "{argv0:?} must be an absolute path (no shell, no PATH search)"
                            ),
                        ));
                    }
                    if c.timeout.is_zero() || c.timeout > Duration::from_secs(3600) {
                        return Err((path("command"), "timeout must be 1ms..=1h".into()));
                    }
                }
                Action::Webhook(w) => {
                    webhook_target(&w.url).map_err(|m| (path("webhook"), m))?;
                    if w.timeout.is_zero() || w.timeout > Duration::from_secs(300) {
                        return Err((path("webhook"), "timeout must be 1ms..=5m".into()));
                    }
                    if w.retries > 10 || w.backoff > Duration::from_secs(300) {
                        return Err((
                            path("webhook"),
                            "retries must be at most 10 and backoff at most 5m".into(),
                        ));
                    }
                }
                Action::Variant(v) => {
                    if !variant_known(v) {
                        return Err((
                            path("variant"),
                            format!("no variant named {v:?} (declare it with [[variant]])"),
                        ));
                    }
                }
                Action::Adjust(adj) => {
                    let Some(j) = job(&adj.job) else {
                        return Err((path("adjust"), format!("no job named {:?}", adj.job)));
                    };
                    match (&adj.booking, &adj.cpu) {
                        (Some(b), None) => {
                            let Some(p) = pipe(&b.pipe) else {
                                return Err((
                                    path("adjust"),
                                    format!("no pipe named {:?}", b.pipe),
                                ));
                            };
                            if !j.bookings.iter().any(|x| x.pipe == b.pipe) {
                                return Err((
                                    path("adjust"),
                                    format!(
                                        "job {:?} has no booking on pipe {:?} to adjust",
                                        j.name, b.pipe
                                    ),
                                ));
                            }
                            let cap = p.capacity.bps(0);
                            if b.step.bps(cap) == 0 {
                                return Err((path("adjust"), "step must not be zero".into()));
                            }
                            if b.limit.bps(cap) > cap {
                                return Err((
                                    path("adjust"),
                                    "limit is above the pipe's capacity".into(),
                                ));
                            }
                        }
                        (None, Some(s)) => {
                            let Some(policy) = j.cpu else {
                                return Err((
                                    path("adjust"),
                                    format!("job {:?} has no CPU policy to adjust", j.name),
                                ));
                            };
                            if s.step == 0.0 || !s.step.is_finite() {
                                return Err((path("adjust"), "step must not be zero".into()));
                            }
                            if !cpu_limit_ok(policy.share, s.limit) {
                                return Err((
                                    path("adjust"),
                                    "limit must be a share the job's CPU policy can take (percent 0-100, or cores)".into(),
                                ));
                            }
                        }
                        _ => {
                            return Err((
                                path("adjust"),
                                "give exactly one of booking = {..} or cpu = {..}".into(),
                            ))
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether some date of a full 28-year weekday cycle matches the calendar.
fn matches_some_date(cal: &Calendar) -> bool {
    let mut d = jiff::civil::date(2001, 1, 1);
    for _ in 0..28 * 366 {
        let wd = d.weekday().to_sunday_zero_offset() as u8;
        if cal.matches_date(d.month() as u8, d.day() as u8, wd) {
            return true;
        }
        match d.tomorrow() {
            Ok(n) => d = n,
            Err(_) => return false,
        }
    }
    false
}

/// Checks the policy's commands and webhooks against a node file's
/// `[actions]` (each node checks the pool's policy against its own).
pub(crate) fn check_allowlist(cfg: &Config, node: &ActionsConfig) -> Result<(), Invalid> {
    use Seg::{Index as I, Key as K};
    for (i, c) in node.allowed_commands.iter().enumerate() {
        if !c.starts_with('/') {
            return Err((
                vec![K("actions"), K("allowed_commands"), I(i)],
                format!("{c:?} must be an absolute path"),
            ));
        }
    }
    for (i, w) in node.allowed_webhooks.iter().enumerate() {
        if w.contains('/') || split_host_port(w).is_none_or(|(h, _)| h.is_empty()) {
            return Err((
                vec![K("actions"), K("allowed_webhooks"), I(i)],
                format!("{w:?} must be a host or host:port, e.g. \"hooks.example.com\" or \"127.0.0.1:9000\""),
            ));
        }
    }
    if !(1..=64).contains(&node.workers) {
        return Err((vec![K("actions"), K("workers")], "must be 1..=64".into()));
    }
    if !(1..=100_000).contains(&node.queue) {
        return Err((vec![K("actions"), K("queue")], "must be 1..=100000".into()));
    }
    for (i, t) in cfg.triggers.iter().enumerate() {
        for (a, act) in t.actions.iter().enumerate() {
            let path = |k: &'static str| vec![K("trigger"), I(i), K("action"), I(a), K(k)];
            match act {
                Action::Command(c) => {
                    let argv0 = c.argv.first().map(String::as_str).unwrap_or("");
                    if !node.allows_command(argv0) {
                        return Err((
                            path("command"),
                            format!("{argv0:?} is not in this node's [actions] allowed_commands"),
                        ));
                    }
                }
                Action::Webhook(w) => {
                    let (host, port) = webhook_target(&w.url).map_err(|m| (path("webhook"), m))?;
                    if !node.allows_webhook(&host, port) {
                        return Err((
                            path("webhook"),
                            format!("host {host}:{port} is not in this node's [actions] allowed_webhooks"),
                        ));
                    }
                    if let Some(s) = &w.token {
                        if !node.secrets.contains_key(s) {
                            return Err((
                                path("webhook"),
                                format!("no secret named {s:?} in this node's [actions] secrets"),
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn located(src: &str, file: &Path, (path, message): Invalid) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_owned(),
        line: line_of(src, &path),
        field: render(&path),
        message,
    }
}

/// Checks a pool policy (`policy`, parsed from `src` of `file`) against a
/// node file's `[actions]`: what `policy apply` runs on every node.
pub fn check_against_node(
    policy: &Config,
    src: &str,
    file: &Path,
    node: &ActionsConfig,
) -> Result<(), ConfigError> {
    check_allowlist(policy, node).map_err(|e| located(src, file, e))
}

/// Checks that every command the policy names exists here and is
/// executable (a node lacking it is named by `policy apply`).
pub fn check_commands_present(policy: &Config, src: &str, file: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    use Seg::{Index as I, Key as K};
    for (i, t) in policy.triggers.iter().enumerate() {
        for (a, act) in t.actions.iter().enumerate() {
            let Action::Command(c) = act else { continue };
            let argv0 = c.argv.first().map(String::as_str).unwrap_or("");
            let ok = std::fs::metadata(argv0)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false);
            if !ok {
                let path = vec![K("trigger"), I(i), K("action"), I(a), K("command")];
                return Err(located(
                    src,
                    file,
                    (
                        path,
                        format!("{argv0:?} does not exist or is not executable on this node"),
                    ),
                ));
            }
        }
    }
    Ok(())
}
