//! `headroom-lab`: builds network-namespace labs and runs the demo.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use headroom::{
    ctl::{call, Request, Response},
    lab::{traffic, Lab},
    status::Status,
};

/// Network-namespace labs for Headroom: a switch, servers (NIC + host
/// namespaces) and clients.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Build a lab and leave it running (remove it with `down`).
    Up {
        /// Name prefix of every namespace.
        #[arg(long, default_value = "hrlab")]
        name: String,
        /// Number of servers.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=200))]
        servers: u16,
        /// Number of clients.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=200))]
        clients: u16,
    },
    /// Remove a lab built with `up`.
    Down {
        /// Name prefix given to `up`.
        #[arg(long, default_value = "hrlab")]
        name: String,
    },
    /// Run the demo: a 3-server lab, headroomd everywhere, real traffic, a report.
    Demo {
        /// Bytes each TCP transfer carries.
        #[arg(long, default_value_t = 4_000_000)]
        tcp_bytes: u64,
        /// UDP datagrams sent to each server.
        #[arg(long, default_value_t = 2000)]
        udp_datagrams: u64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let r = match args.cmd {
        Cmd::Up {
            name,
            servers,
            clients,
        } => up(&name, servers, clients),
        Cmd::Down { name } => Lab::down_tagged(&name)
            .map(|n| println!("removed {n} namespaces"))
            .map_err(Into::into),
        Cmd::Demo {
            tcp_bytes,
            udp_datagrams,
        } => demo(tcp_bytes, udp_datagrams),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("headroom-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn up(name: &str, servers: u16, clients: u16) -> Result<()> {
    let lab = Lab::up_tagged(name, servers, clients)?;
    for s in &lab.servers {
        println!(
            "server {}: ns {} (outer/inner, node {}), host ns {} ({})",
            s.id, s.ns, s.node_ip, s.host_ns, s.host_ip
        );
    }
    for c in &lab.clients {
        println!("client {}: ns {} ({})", c.id, c.ns, c.ip);
    }
    lab.keep();
    Ok(())
}

/// The daemon binary next to this one.
fn sibling(bin: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let p = me
        .parent()
        .context("executable has no directory")?
        .join(bin);
    if !p.exists() {
        bail!(
            "{} not found: build with `cargo build --release --bins`",
            p.display()
        );
    }
    Ok(p)
}

fn status(sock: &Path) -> Result<Status> {
    match call(sock, &Request::Status)? {
        Response::Status(s) => Ok(*s),
        other => bail!("unexpected answer {other:?}"),
    }
}

fn demo(tcp_bytes: u64, udp_datagrams: u64) -> Result<()> {
    let headroomd = sibling("headroomd")?;
    println!("== building a lab: 3 servers (NIC + host namespaces), 2 clients, one switch");
    let mut lab = Lab::up(3, 2)?;
    let dir = std::env::temp_dir().join(format!("{}-demo", lab.tag));
    std::fs::create_dir_all(&dir)?;
    let template = include_str!("../../config/demo.toml");
    let mut sockets = Vec::new();
    for s in lab.servers.clone() {
        let sock = dir.join(format!("s{}.sock", s.id));
        let cfg = template
            .replace("@ID@", &s.id.to_string())
            .replace("@ADDRESS@", &s.node_ip.to_string())
            .replace("@SOCKET@", &sock.display().to_string());
        let path = dir.join(format!("s{}.toml", s.id));
        std::fs::write(&path, cfg)?;
        let log = std::fs::File::create(dir.join(format!("s{}.log", s.id)))?;
        let mut cmd = lab.command(&s.ns, headroomd.to_str().context("path")?);
        cmd.arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log);
        lab.spawn(&format!("headroomd-{}", s.id), cmd)?;
        sockets.push(sock);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, sock) in sockets.iter().enumerate() {
        while status(sock).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join(format!("s{}.log", i + 1)))
                    .unwrap_or_default();
                bail!("headroomd on server {} did not start:\n{log}", i + 1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    println!("== headroomd running on every server (XDP + AF_XDP workers between outer and inner)");

    let servers = lab.servers.clone();
    let clients = lab.clients.clone();
    let mut tcp_sinks = Vec::new();
    let mut udp_sinks = Vec::new();
    for s in &servers {
        tcp_sinks.push(traffic::tcp_sink(&s.host_ns, 8080, 1)?);
        udp_sinks.push(traffic::udp_sink(
            &s.host_ns,
            5001,
            Duration::from_millis(500),
            Duration::from_secs(10),
        )?);
    }
    for s in &servers {
        let dst = SocketAddr::from((s.host_ip, 8080));
        let t = Instant::now();
        traffic::tcp_send(&clients[0].ns, dst, tcp_bytes)?
            .with_context(|| format!("TCP to {dst}"))?;
        println!(
            "client {} -> server {} TCP:8080  {} bytes in {:.0} ms",
            clients[0].id,
            s.id,
            tcp_bytes,
            t.elapsed().as_secs_f64() * 1e3
        );
        let dst = SocketAddr::from((s.host_ip, 5001));
        let sent = traffic::udp_send(&clients[1].ns, dst, udp_datagrams, 512, 20_000)?;
        println!(
            "client {} -> server {} UDP:5001  {sent} datagrams of 512 bytes",
            clients[1].id, s.id
        );
    }
    for (i, (t, u)) in tcp_sinks.into_iter().zip(udp_sinks).enumerate() {
        let tcp = t.join().unwrap_or_default();
        let (n, b) = u.join().unwrap_or((0, 0));
        println!(
            "server {} host stack received: TCP {:?} bytes, UDP {n} datagrams ({b} bytes)",
            i + 1,
            tcp
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    println!();
    for (i, sock) in sockets.iter().enumerate() {
        let st = status(sock)?;
        println!("== server {} ({}): what headroomd saw", i + 1, st.node_name);
        for w in &st.workers {
            println!(
                "worker {} (core {:?}, queue {}): rx outer {} / inner {} frames, tx outer {} / inner {}, frames accounted {}/{}",
                w.index, w.core, w.queue, w.rx_packets[0], w.rx_packets[1], w.tx_packets[0], w.tx_packets[1],
                w.frames_accounted, w.frames_total
            );
        }
        println!(
            "  {:<10} {:>10} {:>12} {:>10} {:>12} {:>6}",
            "job", "pkts in", "bytes in", "pkts out", "bytes out", "flows"
        );
        for j in &st.jobs {
            println!(
                "  {:<10} {:>10} {:>12} {:>10} {:>12} {:>6}",
                j.name, j.packets_in, j.bytes_in, j.packets_out, j.bytes_out, j.flows
            );
        }
    }
    println!("\n== tearing the lab down");
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
