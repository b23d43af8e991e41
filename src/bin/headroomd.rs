//! `headroomd`: the Headroom daemon.

use std::{io::Write, process::ExitCode};

use clap::Parser;
use headroom::{
    cli::{HeadroomdArgs, LogFormat},
    error_report::one_line,
    service::Service,
};
use headroom_buildinfo::{COMMIT, VERSION};

fn main() -> ExitCode {
    let args = HeadroomdArgs::parse();
    headroom::logging::init(args.log_format);
    if let Some(path) = args.check_config {
        return match headroom_config::Config::load_checked(&path) {
            Ok(cfg) => {
                for w in &cfg.warnings {
                    eprintln!("warning: {w}");
                }
                // A closed stdout is no error of the config's.
                let _ = writeln!(
                    std::io::stdout(),
                    "{}: OK (node {}, {} jobs, {} pipes)",
                    path.display(),
                    cfg.node.id,
                    cfg.jobs.len(),
                    cfg.pipes.len()
                );
                // Checked for another machine, a file can be valid and
                // still not start here: say what, without failing.
                let here = cfg.machine_problems(&path);
                if !here.is_empty() {
                    eprintln!("valid, but on this machine headroomd would not start:");
                    for p in &here {
                        eprintln!("  {p}");
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    tracing::info!(
        version = VERSION,
        commit = COMMIT,
        config = %args.config.display(),
        "headroomd starting"
    );
    let mut service = Service::from_env(headroom_clock::Timestamp::now());
    match headroom::daemon::run(&args.config, &mut service) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Said once: as a JSON line when logs are JSON, else plainly.
            let msg = one_line(&e);
            match args.log_format {
                LogFormat::Json => tracing::error!(error = %msg, "headroomd failed"),
                LogFormat::Text => eprintln!("headroomd: {msg}"),
            }
            ExitCode::FAILURE
        }
    }
}
