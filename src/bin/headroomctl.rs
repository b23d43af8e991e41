//! `headroomctl`: talks to a running headroomd, and puts the host stack
//! behind it (`attach`) and back (`detach`).

use std::process::ExitCode;

use clap::Parser;
use headroom::{
    cli::{CtlArgs, CtlCmd, DeployArgs, PolicyCmd},
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
        CtlCmd::ConsoleUser { ref name, role } => return console_user(name, role),
        CtlCmd::Policy(ref p) => match policy_request(p) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("headroomctl: {e}");
                return ExitCode::from(2);
            }
        },
        CtlCmd::History {
            ref entity,
            since,
            step,
            ..
        } => Request::History {
            selector: entity.clone(),
            since_secs: since.as_secs(),
            step_secs: step.as_secs(),
        },
        CtlCmd::Triggers { .. } => Request::Triggers,
        CtlCmd::Events { since, .. } => Request::Events {
            since_secs: since.as_secs(),
        },
        CtlCmd::Report {
            since, resolution, ..
        } => Request::Report {
            since_secs: since.as_secs(),
            resolution,
        },
        CtlCmd::WhatIf {
            ref policy,
            ref without_node,
            since,
            resolution,
            ..
        } => {
            let document = match policy {
                Some(f) => match std::fs::read_to_string(f) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        eprintln!("headroomctl: reading {}: {e}", f.display());
                        return ExitCode::from(2);
                    }
                },
                None => None,
            };
            Request::WhatIf {
                file: policy.as_ref().map(|f| f.display().to_string()),
                document,
                without_nodes: without_node.clone(),
                since_secs: since.as_secs(),
                resolution,
            }
        }
        CtlCmd::Suggest {
            since,
            target,
            margin,
            half_life,
            resolution,
            ..
        } => Request::Suggest {
            since_secs: since.as_secs(),
            options: headroom_history::suggest::SuggestOptions {
                percentile: target,
                margin,
                half_life: (!half_life.is_zero()).then_some(half_life),
            },
            resolution,
        },
    };
    let json = matches!(
        args.cmd,
        CtlCmd::History { json: true, .. }
            | CtlCmd::Report { json: true, .. }
            | CtlCmd::WhatIf { json: true, .. }
            | CtlCmd::Suggest { json: true, .. }
            | CtlCmd::Triggers { json: true, .. }
            | CtlCmd::Events { json: true, .. }
    );

    match call(&args.socket, &req) {
        Ok(Response::Status(st)) => {
            let CtlCmd::Status { json, node } = args.cmd else {
                return ExitCode::FAILURE;
            };
            match node {
                Some(id) => {
                    let Some(n) = st.pool.iter().find(|n| n.node == id) else {
                        let known: Vec<String> =
                            st.pool.iter().map(|n| n.node.to_string()).collect();
                        eprintln!(
                            "headroomctl: node {id} is not in the pool as server {} sees it (members: {})",
                            st.node_id,
                            if known.is_empty() { "none: it runs alone".into() } else { known.join(", ") }
                        );
                        return ExitCode::FAILURE;
                    };
                    if json {
                        println!("{}", serde_json::to_string_pretty(n).unwrap_or_default());
                    } else {
                        print!("{}", headroom::status::render_pool(std::slice::from_ref(n)));
                    }
                }
                None if json => {
                    println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default())
                }
                None => print!("{}", st.render_text()),
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Reloaded { changes }) => {
            print!("{}", changes.render_text());
            ExitCode::SUCCESS
        }
        Ok(Response::PolicyApplied(a)) => {
            print!("{}", a.render_text());
            if a.complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok(Response::PolicyVersion(v)) => {
            println!("# {}: {}", v.id, v.kind);
            println!(
                "# applied on node {} by {} at {} UTC{}",
                v.author,
                if v.user.is_empty() { "?" } else { &v.user },
                headroom_agent::policy::utc(v.author_ms),
                if v.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", v.message)
                }
            );
            print!("{}", v.document);
            if !v.document.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Ok(Response::PolicyHistory { rows }) => {
            print!("{}", headroom_agent::policy::render_history(&rows));
            ExitCode::SUCCESS
        }
        Ok(Response::PolicyDiff { changes }) => {
            let lines = changes.applied();
            if lines.is_empty() {
                println!("no changes");
            }
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Ok(Response::History(t)) => {
            if json {
                println!("{}", t.to_json());
            } else if matches!(args.cmd, CtlCmd::History { csv: true, .. }) {
                print!("{}", t.to_csv());
            } else {
                print!("{}", t.to_text());
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Triggers(t)) => {
            if json {
                println!("{}", pretty(&*t));
            } else {
                print!("{}", t.render_text());
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Events { master, node, rows }) => {
            if json {
                for r in &rows {
                    println!("{}", r.entry);
                }
            } else {
                if master.is_some_and(|m| m != node) {
                    println!(
                        "# server {node}'s journal: the pool's firings (from the master's record, marked seen_in=record); what the actions did is in the journal of the server that ran them (server {} evaluates now)",
                        master.unwrap_or_default()
                    );
                }
                if rows.is_empty() {
                    println!("no events in the window");
                }
                for r in &rows {
                    println!("{}", r.line);
                }
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Report(r)) => {
            if json {
                println!("{}", pretty(&*r));
            } else {
                print!("{}", headroom_history::report::render_text(&r));
            }
            ExitCode::SUCCESS
        }
        Ok(Response::WhatIf(r)) => {
            if json {
                println!("{}", pretty(&*r));
            } else {
                print!("{}", headroom_history::whatif::render_text(&r));
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Suggestion { suggestion, policy }) => {
            if json {
                println!("{}", pretty(&*suggestion));
            } else {
                // One valid policy file: the bases as comments on top.
                for line in headroom_history::suggest::render_toml(&suggestion).lines() {
                    match line.strip_prefix('#') {
                        Some(c) => println!("#{c}"),
                        None if line.is_empty() => println!("#"),
                        None => println!("#   {line}"),
                    }
                }
                println!();
                print!("{policy}");
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Error { message }) => {
            eprintln!("headroomctl: {message}");
            // A refused policy changed nothing: tell scripts it was the input.
            if matches!(
                args.cmd,
                CtlCmd::Policy(PolicyCmd::Apply { .. } | PolicyCmd::Diff { .. })
            ) {
                return ExitCode::from(2);
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("headroomctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn pretty(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The request of a `policy` command (files are read here: the daemon may
/// not see the caller's files).
fn policy_request(cmd: &PolicyCmd) -> Result<Request, String> {
    let read = |f: &std::path::Path| {
        std::fs::read_to_string(f).map_err(|e| format!("{}: cannot read: {e}", f.display()))
    };
    Ok(match cmd {
        PolicyCmd::Show { version } => Request::PolicyShow { version: *version },
        PolicyCmd::History => Request::PolicyHistory,
        PolicyCmd::Diff { file } => Request::PolicyDiff {
            file: file.display().to_string(),
            document: read(file)?,
        },
        PolicyCmd::Apply { file, message } => Request::PolicyApply {
            file: file.display().to_string(),
            document: read(file)?,
            user: user(),
            message: message.clone(),
        },
        PolicyCmd::Rollback { version, message } => Request::PolicyRollback {
            version: *version,
            user: user(),
            message: message.clone(),
        },
    })
}

/// Who runs the command: the sudo caller if any, else the user.
fn user() -> String {
    if let Ok(u) = std::env::var("SUDO_USER") {
        if !u.is_empty() {
            return u;
        }
    }
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name)
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

/// `console-user NAME --role R`: reads the password from standard input
/// (its first line) and prints the users-file entry.
fn console_user(name: &str, role: headroom_console::users::Role) -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("headroomctl: reading the password from standard input: {e}");
        return ExitCode::from(2);
    }
    let password = line.trim_end_matches(['\n', '\r']);
    if password.len() < 8 {
        eprintln!(
            "headroomctl: the password must have at least 8 characters (give it on standard input)"
        );
        return ExitCode::from(2);
    }
    print!("{}", headroom_console::users::entry(name, role, password));
    ExitCode::SUCCESS
}
