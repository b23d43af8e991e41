//! `headroomd`: the Headroom daemon.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;

/// Headroom dataplane daemon: steers traffic between the outer and inner
/// interfaces through pinned AF_XDP workers and enforces pool-wide policies.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/headroom/headroom.toml")]
    config: PathBuf,
    /// Only parse and validate the configuration file, then exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HEADROOM_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    if let Some(path) = args.check_config {
        return match headroom_config::Config::load(&path)
            .and_then(|c| c.check_files(&path).map(|()| c))
        {
            Ok(cfg) => {
                println!(
                    "{}: OK (node {}, {} jobs, {} pipes)",
                    path.display(),
                    cfg.node.id,
                    cfg.jobs.len(),
                    cfg.pipes.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    match headroom::daemon::run(&args.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("headroomd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
