//! The command lines of `headroomd` and `headroomctl`: one definition that
//! the binaries parse with and `headroom-docgen` renders into the man pages
//! and shell completions, so the shipped documentation is the real CLI.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
    fn help_documents_the_log_variable() {
        let help = HeadroomdArgs::command().render_long_help().to_string();
        assert!(
            help.contains(LOG_ENV) && help.contains("--log-format"),
            "{help}"
        );
    }
}
