//! The command lines of `headroomd` and `headroomctl`: one definition that
//! the binaries parse with and `headroom-docgen` renders into the man pages
//! and shell completions, so the shipped documentation is the real CLI.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::history::Resolution;

/// The configuration file the package installs and the unit starts with.
pub const DEFAULT_CONFIG: &str = "/etc/headroom/headroom.toml";
/// The control socket of the reference configuration.
pub const DEFAULT_SOCKET: &str = "/run/headroom/headroomd.sock";
/// The environment variable holding the log filter.
pub const LOG_ENV: &str = "HEADROOM_LOG";

/// Environment variables headroomd reads: (name, meaning). Rendered into
/// `--help` and the man page's ENVIRONMENT section.
pub const HEADROOMD_ENV: &[(&str, &str)] = &[
    (
        LOG_ENV,
        "Log filter, default \"info\". A level (error, warn, info, debug, trace) or \
         comma-separated target=level directives, e.g. \"info,headroom_control=debug\".",
    ),
    (
        "NOTIFY_SOCKET",
        "Set by systemd (Type=notify): headroomd reports READY=1 once XDP is attached and the \
         workers run, RELOADING=1 around reloads and STOPPING=1 on shutdown.",
    ),
    (
        "WATCHDOG_USEC",
        "Set by systemd (WatchdogSec=): the control loop sends WATCHDOG=1 every half of it, so \
         a hung control thread gets the service restarted.",
    ),
];

/// Files headroomd uses: (path, meaning), for the man page's FILES section.
pub const HEADROOMD_FILES: &[(&str, &str)] = &[
    (
        DEFAULT_CONFIG,
        "Configuration (reference with every key documented in the package's copy).",
    ),
    (
        "/etc/headroom/pool.key",
        "Pool key of the reference configuration: mode 600, the same on every server of the pool.",
    ),
    (DEFAULT_SOCKET, "Control socket headroomctl talks to."),
    (
        "/var/lib/headroom",
        "State directory (systemd StateDirectory=).",
    ),
];

fn env_help() -> String {
    let mut s = String::from("Environment:\n");
    for (name, meaning) in HEADROOMD_ENV {
        s.push_str(&format!("  {name}\n      {meaning}\n"));
    }
    s
}

/// How log lines are written (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, fields.
    Json,
}

/// The Headroom dataplane daemon.
///
/// Steers traffic between the outer and inner interfaces through pinned
/// AF_XDP workers, shares pipes and CPU with the other servers of the pool
/// and enforces their policies. Configured by one TOML file; controlled with
/// headroomctl, SIGHUP (reload) and SIGTERM (stop).
#[derive(Parser, Debug)]
#[command(name = "headroomd", version = headroom_buildinfo::LONG_VERSION, after_help = env_help())]
pub struct HeadroomdArgs {
    /// Configuration file.
    #[arg(short, long, default_value = DEFAULT_CONFIG, value_name = "FILE")]
    pub config: PathBuf,
    /// Only parse and validate the configuration file (and the files it
    /// names, such as the pool key), then exit: 0 when valid, 2 when not.
    #[arg(long, value_name = "FILE")]
    pub check_config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
}

/// Command-line client of headroomd.
#[derive(Parser, Debug)]
#[command(name = "headroomctl", version = headroom_buildinfo::LONG_VERSION)]
pub struct CtlArgs {
    /// Control socket of the daemon (`[control] socket` in its
    /// configuration); accepted anywhere on the command line.
    #[arg(short, long, global = true, default_value = DEFAULT_SOCKET, value_name = "PATH")]
    pub socket: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub cmd: CtlCmd,
}

/// headroomctl's commands.
#[derive(Subcommand, Debug)]
pub enum CtlCmd {
    /// Show the daemon's status.
    Status {
        /// Print the raw JSON document.
        #[arg(long)]
        json: bool,
        /// Show one server of the pool in detail, from its gossiped summary
        /// (any server can answer for any other).
        #[arg(long, value_name = "ID")]
        node: Option<u16>,
    },
    /// Re-read the configuration file (same as SIGHUP and `systemctl reload
    /// headroomd`) and print what changed; exits 1 when the file is rejected
    /// (the running configuration stays in force).
    Reload,
    /// Put this server's host stack behind headroomd: the NIC ([interfaces]
    /// outer) joins a fail-open bridge, the host's addresses, routes and
    /// MAC move to a veth end ([deploy] host) whose peer is [interfaces]
    /// inner. Idempotent; prints the steps and checks the result.
    Attach(DeployArgs),
    /// Undo `attach`: the host stack back onto the NIC, exactly as it was.
    /// headroomd must not be running.
    Detach(DeployArgs),
    /// The pool policy: one document (jobs, pipes, bookings, VIPs,
    /// triggers) that every server of the pool runs the same version of.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Print one entity's recorded series, one row per step: a job's
    /// traffic, CPU, memory, connections and pipe use; a pipe's; a VIP's
    /// connections and placements; a node's CPU, headroom and exchange
    /// traffic. Any server answers for the pool (others' data at 1 min
    /// resolution, also for servers that have since died).
    History {
        /// JOB (or job/NAME), pipe/NAME, vip/NAME or node/N.
        entity: String,
        /// How far back ("90s", "1h", "7days").
        #[arg(long, default_value = "1h", value_parser = duration, value_name = "DURATION")]
        since: Duration,
        /// Time between rows ("1s", "1m", "1h"); rounded to a whole
        /// multiple of the tier read.
        #[arg(long, default_value = "1m", value_parser = duration, value_name = "DURATION")]
        step: Duration,
        /// Comma-separated values with a header row.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every trigger of the pool policy: its state (idle, pending, waiting
    /// for its cooldown, firing), for how long, episodes fired and when it
    /// last fired; the overlay in force (variant, failure policies) and the
    /// next schedule boundary. Any server answers; the master evaluates.
    Triggers {
        /// JSON.
        #[arg(long)]
        json: bool,
    },
    /// What fired, what ran and the outcome (exit status, HTTP status,
    /// output), oldest first, from this server's journal in its history
    /// store (earlier runs included): every server has the pool's firings
    /// and resolutions; the actions' outcomes are on the server that was
    /// master when they ran.
    Events {
        /// How far back ("90s", "1h", "7days").
        #[arg(long, default_value = "1h", value_parser = duration, value_name = "DURATION")]
        since: Duration,
        /// JSON, one entry per line.
        #[arg(long)]
        json: bool,
    },
    /// Per job: p50/p95/p99/max of each resource, a histogram of its
    /// utilisation, time above and below its policy, squeezed periods
    /// (demand above grant) and breaches; per pipe its top consumers.
    Report {
        /// How far back.
        #[arg(long, default_value = "24h", value_parser = duration, value_name = "DURATION")]
        since: Duration,
        /// Points read: 1s (this server only), 1m or 1h (the whole pool).
        #[arg(long, default_value = "1m", value_parser = resolution, value_name = "RES")]
        resolution: Resolution,
        /// JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replay the recorded demand under a policy (the allocator and CPU
    /// policy code the daemons run): per job the predicted grant,
    /// shortfall and time squeezed, and whether the pool fits on the
    /// servers left.
    WhatIf {
        /// Policy file to replay under (default: the policy in force).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Take server N out of the pool (repeatable).
        #[arg(long = "without-node", value_name = "N")]
        without_node: Vec<u32>,
        /// How far back.
        #[arg(long, default_value = "7days", value_parser = duration, value_name = "DURATION")]
        since: Duration,
        /// Points replayed: 1m or 1h (the pool), 1s (this server only).
        #[arg(long, default_value = "1m", value_parser = resolution, value_name = "RES")]
        resolution: Resolution,
        /// JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a policy file with bookings and CPU shares suggested from the
    /// observed use (decaying histograms), each value's basis as a comment
    /// and a backtest: how often it would have been met over the window.
    Suggest {
        /// How far back.
        #[arg(long, default_value = "7days", value_parser = duration, value_name = "DURATION")]
        since: Duration,
        /// Percentile of use each value covers ("p95", "p99", "50").
        #[arg(long, default_value = "p95", value_parser = percentile, value_name = "PN")]
        target: f64,
        /// Added on top ("10%").
        #[arg(long, default_value = "5%", value_parser = percent, value_name = "PCT")]
        margin: f64,
        /// Weight of a point halves this much older ("2days"; "off": all
        /// points weigh the same).
        #[arg(long, default_value = "2days", value_parser = half_life, value_name = "DURATION")]
        half_life: Duration,
        /// Points read: 1m or 1h (the pool), 1s (this server only).
        #[arg(long, default_value = "1m", value_parser = resolution, value_name = "RES")]
        resolution: Resolution,
        /// JSON (the suggestion with its bases) instead of the policy file.
        #[arg(long)]
        json: bool,
    },
    /// Print a `[[user]]` entry for the console's users file (`[console]
    /// users`): the password, read from standard input, as an argon2 hash.
    /// Append it to the file; the console re-reads it at the next login.
    ConsoleUser {
        /// Login name.
        name: String,
        /// "viewer" (sees everything) or "admin" (also applies policies and rolls back).
        #[arg(long, default_value = "viewer", value_parser = role)]
        role: headroom_console::users::Role,
    },
}

fn role(s: &str) -> Result<headroom_console::users::Role, String> {
    match s {
        "viewer" => Ok(headroom_console::users::Role::Viewer),
        "admin" => Ok(headroom_console::users::Role::Admin),
        _ => Err("must be viewer or admin".into()),
    }
}

/// A duration as the configuration writes them ("90s", "1h 30m", "7days").
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. \"90s\", \"1h\", \"7days\")"))
}

fn resolution(s: &str) -> Result<Resolution, String> {
    Resolution::parse(s)
}

/// "p95", "95" or "99.9" -> 95.0.
fn percentile(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .strip_prefix('p')
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("invalid percentile {s:?}: expected e.g. p95"))?;
    if !(v > 0.0 && v <= 100.0) {
        return Err(format!("percentile {v} is outside 0..100"));
    }
    Ok(v)
}

/// "10%" -> 0.10.
fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .strip_suffix('%')
        .ok_or_else(|| format!("invalid margin {s:?}: expected a percentage, e.g. 10%"))?
        .trim()
        .parse()
        .map_err(|_| format!("invalid margin {s:?}: expected a percentage, e.g. 10%"))?;
    if !(0.0..=1000.0).contains(&v) {
        return Err(format!("margin {v}% is outside 0..1000%"));
    }
    Ok(v / 100.0)
}

/// A half-life; "off" is zero: no decay.
fn half_life(s: &str) -> Result<Duration, String> {
    if s == "off" || s == "none" {
        return Ok(Duration::ZERO);
    }
    duration(s)
}

/// `headroomctl policy` commands (on any server of the pool).
#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Print the active version (or version N) as a policy file, its
    /// version, author and message as comments on top.
    Show {
        /// The version to print (`policy history` lists them).
        #[arg(long, value_name = "N")]
        version: Option<u64>,
    },
    /// Print what FILE would change on this server, without applying it.
    Diff {
        /// Policy file (TOML: [[job]], [[pipe]], [[vip]], ...).
        file: PathBuf,
    },
    /// Validate FILE and make it the pool's next version: prints the
    /// version and waits until it is active on every server, or names the
    /// servers that refused it or did not answer (exit 1). An invalid file
    /// changes nothing anywhere (exit 2).
    Apply {
        /// Policy file.
        file: PathBuf,
        /// Why (kept in `policy history`).
        #[arg(short, long, default_value = "")]
        message: String,
    },
    /// Versions: number, time, server, user, kind, status and message.
    History,
    /// Publish version N's content again as the next version.
    Rollback {
        /// The version to return to.
        version: u64,
        /// Why (kept in `policy history`).
        #[arg(short, long, default_value = "")]
        message: String,
    },
}

/// Options of `attach` and `detach`.
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// Configuration file naming the interfaces ([interfaces], [deploy]).
    #[arg(short, long, default_value = DEFAULT_CONFIG, value_name = "FILE")]
    pub config: PathBuf,
    /// Print the plan (or, when there is nothing to do, the checks) and
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// For the command-line tools, never the daemon (a control client that
/// hangs up must not kill it): a closed stdout ends the process quietly, as
/// it ends `ls | head`, instead of a panic in `println!`.
pub fn exit_quietly_on_closed_pipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: called first in main, before any thread exists; the default
    // disposition installs no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_lines_are_well_formed() {
        HeadroomdArgs::command().debug_assert();
        CtlArgs::command().debug_assert();
    }

    #[test]
    fn history_options_parse_human_units_and_say_what_is_wrong() {
        assert_eq!(duration("7days").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(duration("soon").unwrap_err().contains("7days"));
        assert_eq!(percentile("p95").unwrap(), 95.0);
        assert_eq!(percentile("99.9").unwrap(), 99.9);
        assert!(percentile("p101").is_err());
        assert!((percent("10%").unwrap() - 0.10).abs() < 1e-12);
        assert!(percent("10").unwrap_err().contains("10%"));
        assert_eq!(half_life("off").unwrap(), Duration::ZERO);
        assert!(resolution("5m").unwrap_err().contains("1s"));
        let a = CtlArgs::try_parse_from([
            "headroomctl",
            "suggest",
            "--since",
            "1h",
            "--target",
            "p99",
            "--margin",
            "10%",
        ])
        .unwrap();
        assert!(matches!(a.cmd, CtlCmd::Suggest { target, .. } if target == 99.0));
    }

    #[test]
    fn help_documents_the_log_variable() {
        let help = HeadroomdArgs::command().render_long_help().to_string();
        assert!(
            help.contains(LOG_ENV) && help.contains("--log-format"),
            "{help}"
        );
    }
}
