//! `headroom-lab`: builds network-namespace labs and runs the demo.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

mod bench_deploy;
mod bench_policy;
mod bench_tcp;
mod console;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use headroom::{
    ctl::{call, Request, Response},
    status::Status,
};
use headroom_lab::{traffic, Lab, ServerConfig};

mod soak;

/// Network-namespace labs for Headroom: a switch, servers (each one
/// namespace, put behind headroomd's interfaces like a real server) and
/// clients.
#[derive(Parser, Debug)]
#[command(name = "headroom-lab", version = headroom_buildinfo::LONG_VERSION)]
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
    /// Pacing accuracy: one server whose pipe is set to each rate in turn, a
    /// UDP flood well above it, achieved vs target over 1 s windows and the
    /// largest burst; writes a Markdown table under perf/results/.
    BenchPacing {
        /// Pipe capacities to test, Mbit/s.
        #[arg(long, value_delimiter = ',', default_value = "1,10,50,100,200")]
        rates: Vec<f64>,
        /// Seconds measured per rate (after one second of warm-up).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
        seconds: u64,
        /// Directory for the report.
        #[arg(long, default_value = "perf/results")]
        out: PathBuf,
        /// The daemon's `[workers] fast_path` setting (paced flows always go
        /// through the workers; the setting shows that pacing holds with it on).
        #[arg(long, default_value = "off", value_parser = ["on", "off", "auto"])]
        fast_path: String,
    },
    /// Deployment disruption: pings every 1 ms and a TCP stream while
    /// `headroomctl attach` and `detach` run in turn; writes a Markdown
    /// table under perf/results/.
    BenchDeploy {
        /// Attach/detach rounds.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
        rounds: u64,
        /// Directory for the report.
        #[arg(long, default_value = "perf/results")]
        out: PathBuf,
    },
    /// TCP through headroomd vs through the fail-open bridge (headroomd
    /// stopped), interleaved: iperf3 both directions, 1 and 8 streams, per
    /// MTU and worker count; writes a Markdown table under perf/results/.
    BenchTcp {
        /// MTUs to run at.
        #[arg(long, value_delimiter = ',', default_value = "1500,9000")]
        mtu: Vec<u32>,
        /// Worker counts to run with (cores 0..n-1).
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        workers: Vec<usize>,
        /// Queues of the server's NIC and veth pair.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
        queues: u32,
        /// Seconds per iperf3 transfer.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
        seconds: u64,
        /// Rounds (each path once per round).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=20))]
        rounds: u64,
        /// Directory for the report.
        #[arg(long, default_value = "perf/results")]
        out: PathBuf,
    },
    /// Pool policy rollout: time from `policy apply` to active on every
    /// server of a 3-server lab, over N applies; writes a Markdown table
    /// under perf/results/.
    BenchPolicy {
        /// Applies to time.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
        applies: u64,
        /// Directory for the report.
        #[arg(long, default_value = "perf/results")]
        out: PathBuf,
    },
    /// Run the demo: a 3-server lab, headroomd everywhere, real traffic, a report.
    Demo {
        /// Bytes each TCP transfer carries.
        #[arg(long, default_value_t = 4_000_000)]
        tcp_bytes: u64,
        /// UDP datagrams sent to each server.
        #[arg(long, default_value_t = 2000)]
        udp_datagrams: u64,
        /// Port on the host's 127.0.0.1 that reaches server 1's web console.
        #[arg(long, default_value_t = 7948)]
        console_port: u16,
        /// Keep the lab, its console and steady traffic up after the report,
        /// until Ctrl-C.
        #[arg(long)]
        hold: bool,
    },
    /// Soak (perf/soak.sh): a 3-server pool under mixed TCP and UDP for a
    /// long time, with periodic reloads and peer restarts; reports RSS
    /// slopes, frame-ledger violations, job counter exactness and false
    /// failures under perf/results/<date>/soak.md. Exits 1 on a problem.
    Soak {
        /// Seconds of traffic.
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(10..=7 * 86_400))]
        duration: u64,
        /// Seconds between `headroomctl reload`s (of every daemon).
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
        reload_every: u64,
        /// Seconds between peer restarts (servers 2 and 3 in turn).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(5..))]
        restart_every: u64,
        /// Seconds between RSS and status samples.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        sample_every: u64,
        /// Seconds of each daemon's life left out of its RSS slope.
        #[arg(long, default_value_t = 300)]
        warmup: u64,
        /// Namespace prefix (`headroom-lab down --name NAME` removes a
        /// leftover lab).
        #[arg(long, default_value = "hrsoak")]
        name: String,
        /// Directory for the report.
        #[arg(long, default_value = "perf/results")]
        out: PathBuf,
        /// The daemons' `[workers] fast_path` setting.
        #[arg(long, default_value = "auto", value_parser = ["on", "off", "auto"])]
        fast_path: String,
        /// Copy every daemon's log (one per life) into this directory at
        /// the end.
        #[arg(long)]
        logs: Option<PathBuf>,
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
            console_port,
            hold,
        } => demo(tcp_bytes, udp_datagrams, console_port, hold),
        Cmd::BenchTcp {
            mtu,
            workers,
            queues,
            seconds,
            rounds,
            out,
        } => sibling("headroomd").and_then(|d| {
            bench_tcp::run(&d, &mtu, &workers, queues, seconds, rounds as usize, &out)
        }),
        Cmd::BenchPolicy { applies, out } => {
            sibling("headroomd").and_then(|d| bench_policy::run(&d, applies as usize, &out))
        }
        Cmd::BenchDeploy { rounds, out } => {
            sibling("headroomctl").and_then(|ctl| bench_deploy::run(&ctl, rounds as usize, &out))
        }
        Cmd::BenchPacing {
            rates,
            seconds,
            out,
            fast_path,
        } => bench_pacing(&rates, seconds, &out, &fast_path),
        Cmd::Soak {
            duration,
            reload_every,
            restart_every,
            sample_every,
            warmup,
            name,
            out,
            fast_path,
            logs,
        } => sibling("headroomd").and_then(|d| {
            let ctl = sibling("headroomctl")?;
            let opts = soak::Opts {
                duration,
                reload_every,
                restart_every,
                sample_every,
                warmup,
                name,
                out,
                fast_path,
                logs,
            };
            soak::run(&d, &ctl, &opts)
        }),
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
            "server {}: ns {} ({} on {}; headroomd between {} and {}, fail-open bridge {})",
            s.id, s.ns, s.host_ip, s.host_if, s.nic, s.inner, s.bridge
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

fn demo(tcp_bytes: u64, udp_datagrams: u64, console_port: u16, hold: bool) -> Result<()> {
    let headroomd = sibling("headroomd")?;
    let headroomctl = sibling("headroomctl")?;
    println!("== building a lab: 3 servers (each put behind headroomd like a real server), 2 clients, one switch");
    let mut lab = Lab::up(3, 2)?;
    let dir = std::env::temp_dir().join(format!("{}-demo", lab.tag));
    std::fs::create_dir_all(&dir)?;
    let policy = include_str!("../../../../config/demo.toml");
    let key = dir.join("pool.key");
    let mut key_bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key_bytes)?;
    headroom_config::write_key_file(&key, &key_bytes)?;
    let login = console::users(&headroomctl, &dir)?;
    let mut sockets = Vec::new();
    let servers = lab.servers.clone();
    for (i, s) in servers.iter().enumerate() {
        let sock = dir.join(format!("s{}.sock", s.id));
        let cfg = ServerConfig::new(s, &sock)
            .pool(s, &servers, &key)
            .merge(policy)?
            .director_hosts(&servers)?
            // Each server's scheduler sees its own namespace's processes
            // (the lab's servers share one kernel).
            .merge(&format!(
                "[cpu]\ncgroup_parent = \"{}-demo-n{}\"\nscope = \"netns\"\n",
                lab.tag, s.id
            ))?
            .merge(if i == 0 { &login.config } else { "" })?
            .render();
        sockets.push(lab.start_headroomd(&headroomd, i, &dir, &cfg)?);
    }
    println!("== headroomd running on every server (XDP + AF_XDP workers between outer and inner)");
    // A taken port only costs the demo its console, not the rest.
    let forward = match console::open(&lab, console_port) {
        Ok(f) => {
            println!(
                "== web console (served by server 1, any server can): http://{}/  user {}, password {}",
                f.listen, login.user, login.password
            );
            println!(
                "   it is up while the demo runs; `scripts/demo.sh --hold` keeps the lab up until Ctrl-C"
            );
            Some(f)
        }
        Err(e) => {
            println!("== web console: not reachable from this machine: {e:#}");
            None
        }
    };

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
        let tcp: Vec<String> = tcp.iter().map(|b| b.to_string()).collect();
        println!(
            "server {} host stack received: TCP {} bytes, UDP {n} datagrams ({b} bytes)",
            i + 1,
            tcp.join(" + ")
        );
    }
    vip_phase(&lab, &sockets)?;
    cpu_phase(&lab, &sockets)?;
    pipe_phase(&lab, &sockets)?;
    history_phase(&sockets)?;
    std::thread::sleep(Duration::from_millis(300));
    println!();
    println!("== what each headroomd counted over the whole demo: frames per job as classified on arrival");
    println!("   (\"in\" = from the network, \"out\" = from the host; \"default\" holds ARP and unmatched");
    println!(
        "   traffic; \"out\" counts what the host offered, before the pacer dropped its excess)"
    );
    for (i, sock) in sockets.iter().enumerate() {
        let st = status(sock)?;
        println!("== server {} ({})", i + 1, st.node_name);
        for w in &st.workers {
            let core = w
                .core
                .map_or("unpinned".to_string(), |c| format!("core {c}"));
            let paced = w
                .drops
                .iter()
                .find(|d| d.0 == "pacer_queue_full")
                .map_or(0, |d| d.1);
            println!(
                "worker {} ({core}, queues {:?}): received {} frames from the network, {} from the host; sent {} to the \
                 network, {} to the host; {paced} dropped by the pacer; UMEM frames accounted {}/{}",
                w.index,
                w.queues_outer,
                w.rx_packets[0],
                w.rx_packets[1],
                w.tx_packets[0],
                w.tx_packets[1],
                w.frames_accounted,
                w.frames_total
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
    if hold {
        if let Some(f) = &forward {
            println!(
                "\n== console: http://{}/  user {}, password {}",
                f.listen, login.user, login.password
            );
        }
        console::hold(&lab)?;
    }
    drop(forward);
    println!("\n== tearing the lab down");
    // SIGTERM, so every headroomd puts its processes back and removes its
    // cgroups (the lab's teardown would SIGKILL them).
    for s in lab.servers.clone() {
        if let Some(c) = lab.child(&format!("headroomd-{}", s.id)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Writes a benchmark's Markdown report to `out/<date>/name`.
fn write_report(out: &Path, name: &str, md: &str) -> Result<()> {
    let date = std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let dir = out.join(date);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Bytes beyond `bps`'s allowance in the worst 1 ms window of `arrivals`
/// (time, wire bytes), sorted by time.
fn largest_burst(arrivals: &[(Instant, usize)], bps: f64) -> f64 {
    let allowance = bps / 8.0 / 1000.0;
    let (mut worst, mut j, mut in_win) = (0.0f64, 0usize, 0usize);
    for i in 0..arrivals.len() {
        while j < arrivals.len() && arrivals[j].0 < arrivals[i].0 + Duration::from_millis(1) {
            in_win += arrivals[j].1;
            j += 1;
        }
        worst = worst.max(in_win as f64 - allowance);
        in_win -= arrivals[i].1;
    }
    worst.max(0.0)
}

fn bench_pacing(rates: &[f64], seconds: u64, out: &Path, fast_path: &str) -> Result<()> {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    let headroomd = sibling("headroomd")?;
    let mut rows = Vec::new();
    for &mbit in rates {
        if !(mbit > 0.0 && mbit <= 10_000.0) {
            bail!("rate {mbit} Mbit/s is outside (0, 10000]");
        }
        let mut lab = Lab::up(1, 1)?;
        let dir = std::env::temp_dir().join(format!("{}-pacing", lab.tag));
        std::fs::create_dir_all(&dir)?;
        let s = lab.servers[0].clone();
        let c = lab.clients[0].clone();
        let sock = dir.join("s1.sock");
        let cfg = ServerConfig::new(&s, &sock)
            .merge(&format!(
                r#"
[workers]
fast_path = "{fast_path}"
[[pipe]]
name = "uplink"
capacity = "{mbit}Mbit"
remote = "10.200.2.0/24"
[[job]]
name = "flood"
[[job.flow]]
protocol = "udp"
local_port = "7001"
[[job]]
name = "transfer"
[[job.flow]]
protocol = "tcp"
remote_port = "9002"
"#
            ))?
            .render();
        lab.start_headroomd(&headroomd, 0, &dir, &cfg)?;
        let log: traffic::ArrivalLog = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let sinks = traffic::arrival_log(&c.ns, &[9001], log.clone(), stop.clone());
        // Offer 1.5x the pipe in 1400-byte datagrams so it is always congested.
        let dst = SocketAddr::from((c.ip, 9001));
        let flood = traffic::udp_flood(&s.host_ns, 7001, dst, mbit * 1.5e6, 1400, stop.clone());
        let t0 = Instant::now() + Duration::from_secs(1);
        std::thread::sleep(Duration::from_secs(1 + seconds) + Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let _ = flood.join();
        for h in sinks {
            let _ = h.join();
        }
        let target = mbit * 1e6;
        let windows: Vec<f64> = (0..seconds)
            .map(|k| {
                let a = t0 + Duration::from_secs(k);
                traffic::wire_rate(&log, a, a + Duration::from_secs(1), |_, _| true)
            })
            .collect();
        let arrivals: Vec<(Instant, usize)> = {
            let l = log
                .lock()
                .map_err(|_| anyhow::anyhow!("arrival log poisoned"))?;
            l.iter()
                .filter(|a| a.0 >= t0)
                .map(|a| (a.0, a.3 + 42))
                .collect()
        };
        let burst = largest_burst(&arrivals, target);
        let mean = windows.iter().sum::<f64>() / windows.len() as f64;
        let (lo, hi) = windows
            .iter()
            .fold((f64::MAX, 0.0f64), |(a, b), &w| (a.min(w), b.max(w)));
        let err = (mean / target - 1.0) * 100.0;
        println!(
            "target {mbit:>8.1} Mbit/s: achieved {:>8.3} (1 s windows {:.3}..{:.3}), error {err:+.2}%, largest burst {burst:.0} bytes",
            mean / 1e6,
            lo / 1e6,
            hi / 1e6,
        );
        // TCP through the same pipe, alone: goodput, and what the pacer's
        // queue cost the sender (retransmissions; reordering it detected).
        let bytes = ((mbit * 1e6 / 8.0) * seconds as f64 * 0.8) as u64;
        let sink = traffic::tcp_sink_checked(&c.ns, 9002, 1)?;
        let before = traffic::tcp_counters(&s.host_ns)?;
        let t = Instant::now();
        traffic::tcp_send(&s.host_ns, SocketAddr::from((c.ip, 9002)), bytes)?
            .context("TCP through the pipe")?;
        let got = sink
            .join()
            .map_err(|_| anyhow::anyhow!("TCP sink panicked"))?;
        let secs = t.elapsed().as_secs_f64();
        let cost = traffic::tcp_counters(&s.host_ns)?.since(&before);
        if got.len() != 1 || got[0].bytes != bytes || got[0].corrupt != 0 {
            bail!("TCP transfer through the pipe incomplete or corrupt: {got:?}");
        }
        let tcp = (
            bytes as f64 * 8.0 / secs / 1e6,
            cost.retrans_segs,
            cost.out_segs,
            cost.reorder,
        );
        println!(
            "  TCP alone: {:.3} Mbit/s goodput, {} of {} segments retransmitted, {} reordering events",
            tcp.0, tcp.1, tcp.2, tcp.3
        );
        rows.push((mbit, mean / 1e6, lo / 1e6, hi / 1e6, err, burst, tcp));
        drop(lab);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let date = std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let dir = out.join(date);
    std::fs::create_dir_all(&dir)?;
    let cmdline: Vec<String> = std::env::args().collect();
    let mut md = format!(
        "# Pacing accuracy\n\nCommand: `{}` (kernel {}, {} build)\n\n\
         One server, one job flooding UDP at 1.5x the pipe in 1400-byte datagrams. Rates are on the wire \
         (Ethernet + IP + UDP) as the receiving client saw them, over consecutive 1 s windows after 1 s of \
         warm-up. Largest burst: the most bytes beyond the rate's allowance in any 1 ms window. Then one \
         TCP transfer alone through the same pipe: goodput at the receiver, segments the sender \
         retransmitted of those it sent, and reordering the sender detected.\n\n\
         | target Mbit/s | achieved Mbit/s | min 1 s window | max 1 s window | error | largest burst (bytes) \
         | TCP goodput Mbit/s | TCP retransmitted / sent | TCP reordering |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        cmdline.join(" "),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        if cfg!(debug_assertions) { "debug" } else { "release" },
    );
    for (t, m, lo, hi, e, b, (g, re, sent, ro)) in &rows {
        md.push_str(&format!(
            "| {t} | {m:.3} | {lo:.3} | {hi:.3} | {e:+.2}% | {b:.0} | {g:.3} | {re} / {sent} | {ro} |\n"
        ));
    }
    let path = dir.join("pacing.md");
    std::fs::write(&path, md)?;
    println!("report: {}", path.display());
    Ok(())
}

/// Every server pushes two jobs towards client 2 through the shared uplink
/// (30 Mbit/s for the whole pool): "export" is booked 70%, "bulk" has no
/// booking. Each offers 20 Mbit/s per server, 120 Mbit/s in all.
fn pipe_phase(lab: &Lab, sockets: &[PathBuf]) -> Result<()> {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Formed: every server sees every other and enforces the pool's
        // policy (it grants no bandwidth before it runs the current version).
        let formed = sockets.iter().all(|s| {
            status(s).ok().is_some_and(|st| {
                st.policy.is_some_and(|p| p.enforcing)
                    && st.exchange.is_some_and(|e| e.live_nodes == sockets.len())
            })
        });
        if formed {
            break;
        }
        if Instant::now() > deadline {
            bail!("the pool did not form");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "\n== pool formed ({} servers); each server now sends two jobs to client 2 through the",
        sockets.len()
    );
    println!("   shared 30 Mbit/s uplink: export (booked 70%) and bulk (no booking), 20 Mbit/s each per server");
    let client = &lab.clients[1];
    let log: traffic::ArrivalLog = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sinks = traffic::arrival_log(&client.ns, &[9001, 9002], log.clone(), stop.clone());
    let mut floods = Vec::new();
    for s in &lab.servers {
        for (sport, dport) in [(7001u16, 9001u16), (5002, 9002)] {
            let dst = SocketAddr::from((client.ip, dport));
            floods.push(traffic::udp_flood(
                &s.host_ns,
                sport,
                dst,
                20e6,
                1000,
                stop.clone(),
            ));
        }
    }
    let t0 = Instant::now() + Duration::from_secs(1);
    std::thread::sleep(Duration::from_secs(4));
    let st: Vec<Status> = sockets.iter().filter_map(|s| status(s).ok()).collect();
    println!("   received by client 2 over 3 s (Mbit/s on the wire), policy v1 (the node files'):");
    let before = split_table(lab, &log, t0, "export's booking: 21.00");
    println!("   export gets its 21 Mbit/s booking plus part of the 9 Mbit/s left, which both jobs' unbooked");
    println!("   demand shares; every server computed its own credit from the demands all servers gossiped.");
    for (i, s) in st.iter().enumerate() {
        for p in &s.pipes {
            println!(
                "   server {} pipe {}: credit {} B per 20 ms interval (= {:.2} Mbit/s), {} servers sharing",
                i + 1,
                p.name,
                p.node_credit,
                p.node_credit as f64 * 8.0 / 0.02 / 1e6,
                p.nodes
            );
        }
    }

    // One policy for the pool: applied on server 3, active everywhere at once.
    // The policy in force is server 3's node file's policy sections (the
    // demo policy plus the lab's [director] hosts).
    let node_file = sockets[sockets.len() - 1].with_extension("toml");
    let node_src = std::fs::read_to_string(&node_file)
        .with_context(|| format!("reading {}", node_file.display()))?;
    let doc = headroom_config::initial_policy(&node_src)
        .context("the demo policy has policy sections")?
        .replace("rate = \"70%\"", "rate = \"30%\"");
    println!("\n== policy apply on server 3: export's booking 70% -> 30% (headroomctl policy apply FILE)");
    let applied = Instant::now();
    let answer = call(
        &sockets[sockets.len() - 1],
        &Request::PolicyApply {
            file: "demo-policy.toml".into(),
            document: doc,
            user: "demo".into(),
            message: "less for export".into(),
        },
    )?;
    match answer {
        Response::PolicyApplied(a) => {
            for l in a.render_text().lines() {
                println!("   {l}");
            }
            println!(
                "   (answered after {:.0} ms: the version is active on every server)",
                applied.elapsed().as_secs_f64() * 1e3
            );
        }
        Response::Error { message } => bail!("policy apply: {message}"),
        other => bail!("unexpected answer {other:?}"),
    }
    let t2 = Instant::now() + Duration::from_secs(1);
    std::thread::sleep(Duration::from_secs(4));
    println!("   received by client 2 over 3 s (Mbit/s on the wire), policy v2:");
    let after = split_table(lab, &log, t2, "export's booking: 9.00");
    println!(
        "   export {:.2} -> {:.2} Mbit/s, bulk {:.2} -> {:.2} Mbit/s",
        before.0, after.0, before.1, after.1
    );
    stop.store(true, Ordering::Relaxed);
    for h in floods {
        let _ = h.join();
    }
    for h in sinks {
        let _ = h.join();
    }
    println!("\n== the pool from server 1 (headroomctl status):");
    if let Some(first) = sockets.first() {
        for l in status(first)?.render_text().lines() {
            println!("   {l}");
        }
    }
    Ok(())
}

/// What the pool's history recorded during the demo, as server 1 reports it.
fn history_phase(sockets: &[PathBuf]) -> Result<()> {
    let Some(first) = sockets.first() else {
        return Ok(());
    };
    let st = status(first)?;
    let Some(h) = &st.history else {
        return Ok(());
    };
    println!(
        "\n== history: every server records 1 s points (and the pool's summaries) in {}",
        h.path.rsplit('/').next().unwrap_or("history.db")
    );
    println!("   headroomctl report --since 10m --resolution 1s, on server 1 (its own jobs, 1 s points):");
    let report = match call(
        first,
        &Request::Report {
            since_secs: 600,
            resolution: headroom::history::Resolution::Second,
        },
    )? {
        Response::Report(r) => r,
        Response::Error { message } => bail!("report: {message}"),
        other => bail!("unexpected answer {other:?}"),
    };
    let rate = |v: f64| format!("{:.2}", v * 8e-6);
    println!(
        "   {:<10} {:>14} {:>14} {:>14} {:>10} {:>10}",
        "job", "out mean Mb/s", "out p95 Mb/s", "out max Mb/s", "squeezed", "breached"
    );
    for j in &report.jobs {
        let Some(out) = j
            .resources
            .iter()
            .find(|r| r.metric == headroom_history::series::Metric::BytesOut)
        else {
            continue;
        };
        println!(
            "   {:<10} {:>14} {:>14} {:>14} {:>9}s {:>9}s",
            j.job,
            rate(out.mean),
            rate(out.p95),
            rate(out.max),
            j.squeezed_secs,
            j.breach_secs
        );
    }
    println!(
        "   (the whole report: headroomctl report; also history JOB --step 10s, what-if, suggest)"
    );
    Ok(())
}

/// Two jobs' CPU shares on server 1: a busy loop in each, on one core.
fn cpu_phase(lab: &Lab, sockets: &[PathBuf]) -> Result<()> {
    let s = &lab.servers[0];
    let spawn = |job: &str| -> Result<std::process::Child> {
        // Both on core 0 (the workers run on core 1), so they compete.
        let mut cmd = lab.command(&s.ns, "taskset");
        cmd.args([
            "-c",
            "0",
            "sh",
            "-c",
            "while :; do :; done",
            &format!("hrdemo-{job}"),
        ])
        .stdout(std::process::Stdio::null());
        Ok(cmd.spawn()?)
    };
    let mut loops = vec![spawn("web")?, spawn("bulk")?];
    println!("\n== CPU: one busy loop of job web (server_percent 70) and one of bulk (30) on one core of server 1");
    std::thread::sleep(Duration::from_secs(5));
    let st = status(&sockets[0])?;
    for l in &mut loops {
        let _ = l.kill();
        let _ = l.wait();
    }
    match st.cpu {
        Some(cpu) => {
            for j in cpu
                .jobs
                .iter()
                .filter(|j| j.name == "web" || j.name == "bulk")
            {
                println!(
                    "   job {:<5} processes {:?}: target {:.0}% of the server, using {:.2} cores",
                    j.name, j.pids, j.target_percent, j.cores_used
                );
            }
            let used = |n: &str| {
                cpu.jobs
                    .iter()
                    .find(|j| j.name == n)
                    .map_or(0.0, |j| j.cores_used)
            };
            let (w, b) = (used("web"), used("bulk"));
            if w + b > 0.0 {
                println!(
                    "   on their shared core: web {:.0}%, bulk {:.0}% (enforced by {})",
                    100.0 * w / (w + b),
                    100.0 * b / (w + b),
                    cpu.backend
                );
            }
        }
        None => println!("   (no CPU status: process detection is off on this server)"),
    }
    Ok(())
}

/// The demo's VIP (config/demo.toml): one address for the pool.
const DEMO_VIP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 200, 100, 1);

/// One VIP served by all three servers: 300 connections from 50 client
/// addresses, answered by whichever server the owner placed each on.
fn vip_phase(lab: &Lab, sockets: &[PathBuf]) -> Result<()> {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut apps = Vec::new();
    for s in &lab.servers {
        // The host accepts the VIP (on lo) but never answers ARP for it:
        // only the owner's headroomd does.
        lab.ip(
            &s.host_ns,
            &["addr", "add", &format!("{DEMO_VIP}/32"), "dev", "lo"],
        )?;
        for k in ["all", s.host_if.as_str()] {
            headroom_lab::sysctl(&s.host_ns, &format!("ipv4/conf/{k}/arp_ignore"), "1")?;
            headroom_lab::sysctl(&s.host_ns, &format!("ipv4/conf/{k}/arp_announce"), "2")?;
        }
        apps.push(traffic::id_server(&s.host_ns, 8000, s.id, stop.clone())?);
    }
    let client = &lab.clients[0];
    let sources: Vec<std::net::Ipv4Addr> = (1..=50)
        .map(|i| std::net::Ipv4Addr::new(10, 200, 3, i))
        .collect();
    for a in &sources {
        lab.ip(
            &client.ns,
            &["addr", "add", &format!("{a}/16"), "dev", "eth0"],
        )?;
    }
    // Ready: every server sees all three and knows their MACs.
    let deadline = Instant::now() + Duration::from_secs(20);
    let owner = loop {
        let ready: Vec<Option<u32>> = sockets
            .iter()
            .map(|s| {
                let st = status(s).ok()?;
                let d = st.director?;
                let v = d.services.iter().find(|v| v.name == "web-vip")?;
                (d.ready && d.nodes.iter().all(|n| n.mac.is_some()) && v.serving.len() == 3)
                    .then_some(v.owner)
                    .flatten()
            })
            .collect();
        if let Some(Some(o)) = ready.first().filter(|_| ready.iter().all(Option::is_some)) {
            break *o;
        }
        if Instant::now() > deadline {
            bail!("the VIP's director did not get ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("\n== one VIP for the pool: {DEMO_VIP}:8000, owned by server {owner} (it alone answers ARP)");
    let dst = SocketAddr::from((DEMO_VIP, 8000));
    let mut all = Vec::new();
    for round in 0..6 {
        let _ = round;
        all.extend(traffic::id_requests(&client.ns, dst, sources.clone())?);
    }
    stop.store(true, Ordering::Relaxed);
    for h in apps {
        let _ = h.join();
    }
    let failed = all.iter().filter(|r| r.is_err()).count();
    let mut per = [0usize; 4];
    for id in all.iter().flatten() {
        if let Some(c) = per.get_mut(usize::from(*id)) {
            *c += 1;
        }
    }
    println!(
        "   {} connections from {} client addresses: server 1 {}, server 2 {}, server 3 {}; {failed} failed",
        all.len(),
        sources.len(),
        per[1],
        per[2],
        per[3]
    );
    if let Some(Err(e)) = all.iter().find(|r| r.is_err()) {
        println!("   first failure: {e}");
    }
    // The owner's counters come with its workers' next reports.
    std::thread::sleep(Duration::from_secs(1));
    if let Ok(st) = status(&sockets[owner as usize - 1]) {
        if let Some(v) = st
            .director
            .as_ref()
            .and_then(|d| d.services.iter().find(|v| v.name == "web-vip"))
        {
            println!(
                "   the owner's placements per server: {}",
                v.placements
                    .iter()
                    .map(|(n, c)| format!("server {n} {c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}

/// Prints export's and bulk's rates per server over the 3 s from `t0`;
/// returns the pool's (export, bulk) in Mbit/s.
fn split_table(lab: &Lab, log: &traffic::ArrivalLog, t0: Instant, booking: &str) -> (f64, f64) {
    let t1 = t0 + Duration::from_secs(3);
    println!(
        "   {:<8} {:>8} {:>8} {:>8}",
        "server", "export", "bulk", "total"
    );
    let mut sums = (0.0, 0.0);
    for s in &lab.servers {
        let octet = s.host_ip.octets()[3];
        let e = traffic::wire_rate(log, t0, t1, |p, o| p == 9001 && o == octet) / 1e6;
        let b = traffic::wire_rate(log, t0, t1, |p, o| p == 9002 && o == octet) / 1e6;
        sums = (sums.0 + e, sums.1 + b);
        println!("   {:<8} {e:>8.2} {b:>8.2} {:>8.2}", s.id, e + b);
    }
    println!(
        "   {:<8} {:>8.2} {:>8.2} {:>8.2}   (pipe: 30.00; {booking})",
        "pool",
        sums.0,
        sums.1,
        sums.0 + sums.1
    );
    sums
}
