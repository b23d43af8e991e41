//! `headroom-lab bench-tcp`: TCP through headroomd against TCP through the
//! fail-open bridge with headroomd stopped, in one run, interleaved. iperf3
//! between a client and a lab server's host stack, both directions, one and
//! eight streams, at each MTU and worker count asked for, on interfaces with
//! several queues.

use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use headroom::ctl::{call, Request, Response};
use headroom_lab::{Lab, ServerConfig};

/// One iperf3 transfer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Transfer {
    /// Host -> client (iperf3 -R) or client -> host.
    to_client: bool,
    streams: u32,
}

impl Transfer {
    fn name(&self) -> String {
        format!(
            "{} -P {}",
            if self.to_client {
                "host->client"
            } else {
                "client->host"
            },
            self.streams
        )
    }
}

/// Gbit/s received in one iperf3 run; 0 when no transfer completed (the
/// reason goes to stderr and into the report's notes).
fn iperf(
    lab: &Lab,
    client_ns: &str,
    server: &str,
    t: Transfer,
    secs: u64,
    notes: &mut Vec<String>,
) -> f64 {
    match iperf_once(lab, client_ns, server, t, secs) {
        Ok(g) => g,
        Err(e) => {
            let n = format!("{}: no transfer completed: {e:#}", t.name());
            eprintln!("{n}");
            notes.push(n);
            0.0
        }
    }
}

fn iperf_once(lab: &Lab, client_ns: &str, server: &str, t: Transfer, secs: u64) -> Result<f64> {
    // `timeout` bounds a transfer whose path stalls after connecting.
    let mut cmd = lab.command(client_ns, "timeout");
    cmd.args([
        &(secs + 10).to_string(),
        "iperf3",
        "--connect-timeout",
        "3000",
    ]);
    cmd.args([
        "-c",
        server,
        "-J",
        "-t",
        &secs.to_string(),
        "-P",
        &t.streams.to_string(),
    ]);
    if t.to_client {
        cmd.arg("-R");
    }
    let out = cmd
        .output()
        .context("iperf3 (installed by scripts/install-deps.sh)")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("iperf3 output: {}", String::from_utf8_lossy(&out.stderr)))?;
    if let Some(e) = v.get("error") {
        bail!("iperf3 {}: {e}", t.name());
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .context("iperf3 reported no received rate")
}

/// Frames the XDP programs passed because no socket served their queue,
/// and frames the workers received.
fn bypassed(sock: &Path) -> (u64, u64) {
    let Ok(Response::Status(st)) = call(sock, &Request::Status) else {
        return (0, 0);
    };
    let no_xsk = st
        .interfaces
        .iter()
        .flat_map(|i| i.verdicts.iter())
        .filter(|v| v.0 == "pass_no_xsk")
        .map(|v| v.1)
        .sum();
    let rx = st
        .workers
        .iter()
        .map(|w| w.rx_packets[0] + w.rx_packets[1])
        .sum();
    (no_xsk, rx)
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    headroomd: &Path,
    mtus: &[u32],
    workers: &[usize],
    queues: u32,
    secs: u64,
    rounds: usize,
    out: &Path,
) -> Result<()> {
    let transfers: Vec<Transfer> = [false, true]
        .iter()
        .flat_map(|&to_client| [1, 8].map(|streams| Transfer { to_client, streams }))
        .collect();
    let mut rows = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for &mtu in mtus {
        for &n in workers {
            let mut lab = Lab::builder()
                .servers(1)
                .clients(1)
                .mtu(mtu)
                .queues(queues)
                .up()?;
            let s = lab.servers[0].clone();
            let c = lab.clients[0].clone();
            let dir = std::env::temp_dir().join(format!("{}-bench-tcp", lab.tag));
            std::fs::create_dir_all(&dir)?;
            let sock = dir.join("s1.sock");
            let cores: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            let cfg = ServerConfig::new(&s, &sock)
                .merge(&format!(
                    "[workers]\ncores = [{}]\nframe_count = 8192\nfill_size = 4096\nring_size = 2048\n",
                    cores.join(", ")
                ))?
                .render();
            let server: Child = lab
                .command(&s.ns, "iperf3")
                .args(["-s"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("iperf3 -s")?;
            lab.spawn_adopt("iperf3-server", server);
            std::thread::sleep(Duration::from_millis(300));
            let host = s.host_ip.to_string();
            // (transfer, through headroomd?) -> rates, plus the bypassed share.
            let mut rates: Vec<(Transfer, bool, Vec<f64>)> = Vec::new();
            let mut share = (0u64, 0u64);
            for round in 0..rounds {
                // Alternate which path goes first, so drift hits both alike.
                let order = if round % 2 == 0 {
                    [true, false]
                } else {
                    [false, true]
                };
                for through in order {
                    if through {
                        lab.start_headroomd(headroomd, 0, &dir, &cfg)?;
                    }
                    for t in &transfers {
                        let g = iperf(&lab, &c.ns, &host, *t, secs, &mut notes);
                        eprintln!(
                            "MTU {mtu}, {n} worker(s), {}: {} {g:.2} Gbit/s",
                            t.name(),
                            if through { "headroomd" } else { "bridge" }
                        );
                        match rates.iter_mut().find(|r| r.0 == *t && r.1 == through) {
                            Some(r) => r.2.push(g),
                            None => rates.push((*t, through, vec![g])),
                        }
                    }
                    if through {
                        let (no_xsk, rx) = bypassed(&sock);
                        share = (share.0 + no_xsk, share.1 + rx);
                        let mut d = lab.forget("headroomd-1").context("daemon")?;
                        nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(d.id() as i32),
                            nix::sys::signal::Signal::SIGTERM,
                        )?;
                        d.wait()?;
                    }
                }
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
            for t in &transfers {
                let get = |through: bool| {
                    rates
                        .iter()
                        .find(|r| r.0 == *t && r.1 == through)
                        .map(|r| mean(&r.2))
                        .unwrap_or(0.0)
                };
                let (h, b) = (get(true), get(false));
                let bypass = share.0 as f64 * 100.0 / (share.0 + share.1).max(1) as f64;
                rows.push((mtu, n, t.name(), h, b, bypass));
            }
            drop(lab);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let cmdline: Vec<String> = std::env::args().collect();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut md = format!(
        "# TCP through headroomd vs the fail-open bridge\n\nCommand: `{}` (kernel {})\n\n\
         One lab server (its NIC and veth pair with {queues} queues each, Linux's default offloads) and one \
         client on the lab switch. iperf3, {secs} s per transfer, {rounds} rounds; in each round every \
         transfer runs through headroomd (workers on cores 0..n-1) and then through the fail-open \
         bridge with headroomd stopped (the order alternates by round). Rates are the means of the \
         rounds, as received. \"bypassed\" is the share of frames the XDP programs passed to the \
         kernel because no socket served their queue (`pass_no_xsk`), of all frames steered.\n\n\
         | MTU | workers | transfer | headroomd, Gbit/s | bridge, Gbit/s | ratio | bypassed |\n\
         |---|---|---|---|---|---|---|\n",
        cmdline.join(" "),
        kernel.trim()
    );
    println!(
        "\n| MTU | workers | transfer | headroomd Gbit/s | bridge Gbit/s | ratio | bypassed |"
    );
    for (mtu, n, t, h, b, bypass) in &rows {
        let ratio = if *b > 0.0 { h / b } else { 0.0 };
        let line = format!("| {mtu} | {n} | {t} | {h:.2} | {b:.2} | {ratio:.2} | {bypass:.0}% |\n");
        print!("{line}");
        md.push_str(&line);
    }
    if !notes.is_empty() {
        md.push_str("\nTransfers that did not complete (counted as 0 in the means):\n\n");
        for n in &notes {
            md.push_str(&format!("- {n}\n"));
        }
    }
    let date = std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let dir: PathBuf = out.join(date);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("tcp.md");
    std::fs::write(&path, md)?;
    println!("wrote {}", path.display());
    Ok(())
}
