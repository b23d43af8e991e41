//! `headroomctl`: talks to a running headroomd, and puts the host stack
//! behind it (`attach`) and back (`detach`).

use std::process::ExitCode;

use clap::Parser;
use headroom::{
    cli::{CtlArgs, CtlCmd, DeployArgs},
    ctl::{call, Request, Response},
};

fn main() -> ExitCode {
    headroom::cli::exit_quietly_on_closed_pipe();
    let args = CtlArgs::parse();
    let req = match args.cmd {
        CtlCmd::Status { .. } => Request::Status,
        CtlCmd::Reload => Request::Reload,
        CtlCmd::Attach(d) => return deploy(&d, true),
        CtlCmd::Detach(d) => return deploy(&d, false),
    };
    match call(&args.socket, &req) {
        Ok(Response::Status(st)) => {
            if matches!(args.cmd, CtlCmd::Status { json: true }) {
                println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
            } else {
                print!("{}", st.render_text());
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Reloaded { changes }) => {
            print!("{}", changes.render_text());
            ExitCode::SUCCESS
        }
        Ok(Response::Error { message }) => {
            eprintln!("headroomctl: {message}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("headroomctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `attach` / `detach`: acts on the kernel directly, not through headroomd.
fn deploy(args: &DeployArgs, attach: bool) -> ExitCode {
    let cfg = match headroom_config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("headroomctl: {e}");
            return ExitCode::from(2);
        }
    };
    let spec = headroom_deploy::Spec::from_config(&cfg);
    let (verb, run): (&str, fn(_, _) -> _) = if attach {
        ("attach", headroom_deploy::attach)
    } else {
        ("detach", headroom_deploy::detach)
    };
    match run(&spec, args.dry_run) {
        Ok(r) => {
            if r.plan.is_empty() {
                let state = if attach { "attached" } else { "not attached" };
                println!("{}: {state}; nothing to do", spec.nic);
            } else if args.dry_run {
                println!(
                    "{verb} {} would take {} steps:",
                    spec.nic,
                    r.plan.steps.len()
                );
                print!("{}", r.plan);
            } else {
                print!("{}", r.plan);
                println!(
                    "{verb}ed {} in {:.1} ms ({} steps)",
                    spec.nic,
                    r.elapsed.as_secs_f64() * 1e3,
                    r.plan.steps.len()
                );
            }
            for c in &r.checks {
                println!("{c}");
            }
            if r.checks.iter().any(|c| !c.ok) {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("headroomctl {verb}: {e}");
            ExitCode::FAILURE
        }
    }
}
