//! `headroomctl`: talks to a running headroomd.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use headroom::{
    ctl::{call, Request, Response},
    status::Status,
};

/// Command-line client of headroomd.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Control socket of the daemon.
    #[arg(short, long, default_value = "/run/headroom/headroomd.sock")]
    socket: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show the daemon's status.
    Status {
        /// Print the raw JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Re-read the configuration file (same as SIGHUP) and report the outcome.
    Reload,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let req = match args.cmd {
        Cmd::Status { .. } => Request::Status,
        Cmd::Reload => Request::Reload,
    };
    match call(&args.socket, &req) {
        Ok(Response::Status(st)) => {
            if matches!(args.cmd, Cmd::Status { json: true }) {
                println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
            } else {
                print_status(&st);
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Reloaded) => {
            println!("reloaded");
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

fn print_status(st: &Status) {
    println!(
        "node {} ({}), up {:.1}s, config {}",
        st.node_id, st.node_name, st.uptime_secs, st.config_file
    );
    println!(
        "reloads: {} ok, {} rejected",
        st.reloads_ok, st.reloads_failed
    );
    if let Some(e) = &st.last_reload_error {
        println!("  last rejected reload: {e}");
    }
    for i in &st.interfaces {
        let v: Vec<String> = i
            .verdicts
            .iter()
            .filter(|v| v.1 > 0)
            .map(|(n, p, _)| format!("{n}={p}"))
            .collect();
        println!(
            "interface {} ({}, xdp {}): {}",
            i.name,
            i.role,
            i.xdp_mode,
            v.join(" ")
        );
    }
    for w in &st.workers {
        println!(
            "worker {} {} queue {} zero-copy {}/{}: rx {}/{} tx {}/{} pkts (outer/inner), frames {}/{} accounted, violations {}",
            w.index,
            w.core.map_or("unpinned".to_string(), |c| format!("core {c}")),
            w.queue,
            w.zero_copy[0],
            w.zero_copy[1],
            w.rx_packets[0], w.rx_packets[1], w.tx_packets[0], w.tx_packets[1],
            w.frames_accounted, w.frames_total, w.frame_violations
        );
        let d: Vec<String> = w
            .drops
            .iter()
            .filter(|d| d.1 > 0)
            .map(|(n, c)| format!("{n}={c}"))
            .collect();
        if !d.is_empty() {
            println!("  drops: {}", d.join(" "));
        }
    }
    println!(
        "{:<20} {:>12} {:>14} {:>12} {:>14} {:>8}",
        "job", "pkts in", "bytes in", "pkts out", "bytes out", "flows"
    );
    for j in &st.jobs {
        println!(
            "{:<20} {:>12} {:>14} {:>12} {:>14} {:>8}",
            j.name, j.packets_in, j.bytes_in, j.packets_out, j.bytes_out, j.flows
        );
    }
    if let Some(ex) = &st.exchange {
        let m: Vec<String> = ex
            .members
            .iter()
            .map(|m| format!("{}:{}", m.id, m.state))
            .collect();
        println!(
            "pool: master {}, members [{}]; datagrams sent {} received {} accepted {}, dropped: bad key {} replayed {} malformed {}",
            ex.master,
            m.join(" "),
            ex.datagrams_sent,
            ex.datagrams_received,
            ex.datagrams_accepted,
            ex.bad_mac,
            ex.replayed,
            ex.malformed
        );
    }
    for p in &st.pipes {
        println!(
            "pipe {}: {} bit/s shared by {} server(s); this server's credit {} B + {} B immediate per interval",
            p.name, p.capacity_bps, p.nodes, p.node_credit, p.immediate
        );
        for (job, credit, sent, queued, dropped) in &p.jobs {
            println!("  {job:<18} credit {credit:>9} B  sent {sent:>9} B  queued {queued:>8} B  dropped {dropped:>8} B");
        }
    }
    if let Some(cpu) = &st.cpu {
        println!(
            "cpu: {} ({} local cores, {} in the pool){}",
            cpu.backend,
            cpu.local_cores,
            cpu.pool_cores,
            cpu.insufficient_resources
                .as_ref()
                .map(|r| format!(", INSUFFICIENT RESOURCES: {r}"))
                .unwrap_or_default()
        );
        println!(
            "{:<20} {:>6} {:>10} {:>10} {:>8} {:>8} {:>9}",
            "job", "procs", "cores", "rss MiB", "target%", "weight", "instances"
        );
        for j in &cpu.jobs {
            println!(
                "{:<20} {:>6} {:>10.3} {:>10.1} {:>8.1} {:>8} {:>9}",
                j.name,
                j.pids.len(),
                j.cores_used,
                j.rss_bytes as f64 / 1048576.0,
                j.target_percent,
                j.weight,
                j.pool_instances
            );
            if !j.pids.is_empty() {
                let shown: Vec<String> = j.pids.iter().take(16).map(|p| p.to_string()).collect();
                let more = j.pids.len().saturating_sub(16);
                let tail = if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                };
                println!("{:<20} processes: {}{tail}", "", shown.join(" "));
            }
        }
        println!(
            "{:<20} {:>6} {:>10.3}",
            "(unmanaged)", cpu.unmanaged_processes, cpu.unmanaged_cores
        );
    }
    // Flow director.
    if let Some(d) = &st.director {
        let mut out = String::new();
        headroom::director_ctl::render_text(d, &mut out);
        print!("{out}");
    }
}
