//! `headroom-lab bench-deploy`: the one-time disruption of putting a
//! server's host stack behind headroomd and back. A client pings the server
//! every millisecond and streams TCP to it while `headroomctl attach` and
//! `headroomctl detach` run in turn; the longest gap between ping replies
//! and between TCP reads around each command is the disruption, beside the
//! longest gap in quiet periods (the noise floor).

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::Stdio,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context, Result};
use headroom_lab::{run_in_ns, Lab, ServerConfig};

/// Seconds since the epoch (ping -D prints the same clock).
fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One command run: what, when it started and ended (wall clock), its time.
struct Op {
    what: &'static str,
    start: f64,
    end: f64,
}

/// Longest gap between consecutive stamps that overlaps [from, to].
fn longest_gap(stamps: &[f64], from: f64, to: f64) -> f64 {
    stamps
        .windows(2)
        .filter(|w| w[1] >= from && w[0] <= to)
        .map(|w| w[1] - w[0])
        .fold(0.0, f64::max)
}

pub fn run(headroomctl: &Path, rounds: usize, out: &Path) -> Result<()> {
    let lab = Lab::builder().servers(1).clients(1).attached(false).up()?;
    let s = lab.servers[0].clone();
    let c = lab.clients[0].clone();
    let dir = std::env::temp_dir().join(format!("{}-deploy-gap", lab.tag));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("s1.toml");
    std::fs::write(&cfg, ServerConfig::new(&s, &dir.join("s1.sock")).render())?;

    // TCP: the server reads and stamps every read; the client writes.
    let stop = Arc::new(AtomicBool::new(false));
    let reads: Arc<Mutex<Vec<f64>>> = Arc::default();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let rx = {
        let (stop, reads, ns) = (stop.clone(), reads.clone(), s.ns.clone());
        std::thread::spawn(move || {
            run_in_ns(&ns, move || -> std::io::Result<u64> {
                let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 5201))?;
                let _ = ready_tx.send(());
                let (mut conn, _) = l.accept()?;
                conn.set_read_timeout(Some(Duration::from_millis(100)))?;
                let mut buf = vec![0u8; 1 << 16];
                let mut total = 0u64;
                let mut local = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match conn.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            total += n as u64;
                            local.push(wall());
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(e) => return Err(e),
                    }
                }
                reads.lock().expect("reads").extend(local);
                Ok(total)
            })
        })
    };
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("TCP receiver did not start")?;
    let dst = SocketAddr::from((s.host_ip, 5201));
    let tx = {
        let (stop, ns) = (stop.clone(), c.ns.clone());
        std::thread::spawn(move || {
            run_in_ns(&ns, move || -> std::io::Result<u64> {
                let mut conn = TcpStream::connect_timeout(&dst, Duration::from_secs(5))?;
                // Small writes, so a gap in reads is a gap on the wire.
                let chunk = vec![0x5au8; 1400];
                let mut sent = 0u64;
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    conn.write_all(&chunk)?;
                    sent += chunk.len() as u64;
                    // ~100 Mbit/s: steady, far from any limit of the path.
                    let due = Duration::from_secs_f64(sent as f64 * 8.0 / 100e6);
                    if let Some(d) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(d);
                    }
                }
                Ok(sent)
            })
        })
    };
    // Into a file: a pipe nobody reads until the end would fill and stall ping.
    let ping_log = dir.join("ping.log");
    let mut ping = lab
        .command(&c.ns, "ping")
        .args(["-D", "-n", "-i", "0.001", "-W", "1"])
        .arg(s.host_ip.to_string())
        .stdout(std::fs::File::create(&ping_log)?)
        .stderr(Stdio::null())
        .spawn()
        .context("ping")?;
    std::thread::sleep(Duration::from_millis(1000));

    let mut ops = Vec::new();
    let ctl = |what: &str| -> Result<(f64, f64)> {
        let start = wall();
        let o = lab
            .command(&s.ns, &headroomctl.display().to_string())
            .args([what, "-c"])
            .arg(&cfg)
            .output()?;
        let end = wall();
        if !o.status.success() {
            bail!(
                "headroomctl {what}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok((start, end))
    };
    for _ in 0..rounds {
        let (start, end) = ctl("attach")?;
        ops.push(Op {
            what: "attach",
            start,
            end,
        });
        std::thread::sleep(Duration::from_millis(1500));
        let (start, end) = ctl("detach")?;
        ops.push(Op {
            what: "detach",
            start,
            end,
        });
        std::thread::sleep(Duration::from_millis(1500));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(ping.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    ping.wait()?;
    let sent = tx
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))???;
    let got = rx
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))???;
    let text = std::fs::read_to_string(&ping_log)?;
    let mut replies: Vec<(f64, u64)> = text
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| {
            let t = l.strip_prefix('[')?.split(']').next()?.parse().ok()?;
            let seq = l
                .split("icmp_seq=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            Some((t, seq))
        })
        .collect();
    replies.sort_by(|a, b| a.0.total_cmp(&b.0));
    let stamps: Vec<f64> = replies.iter().map(|r| r.0).collect();
    let reads = reads.lock().expect("reads").clone();
    if stamps.len() < 100 || reads.len() < 100 {
        bail!(
            "too little traffic: {} ping replies, {} TCP reads",
            stamps.len(),
            reads.len()
        );
    }
    let lost = |from: f64, to: f64| -> u64 {
        let seqs: Vec<u64> = replies
            .iter()
            .filter(|r| r.0 >= from && r.0 <= to)
            .map(|r| r.1)
            .collect();
        match (seqs.iter().min(), seqs.iter().max()) {
            (Some(a), Some(b)) => (b - a + 1).saturating_sub(seqs.len() as u64),
            _ => 0,
        }
    };

    let mut md = String::new();
    let cmdline: Vec<String> = std::env::args().collect();
    md.push_str(&format!(
        "# Deployment disruption\n\nCommand: `{}`\n\n\
         One lab server (a namespace playing a real server: its address on a veth to the switch) and one \
         client. The client pings the server every 1 ms and streams TCP to it at 100 Mbit/s in 1400-byte \
         writes while `headroomctl attach` and `headroomctl detach` run in turn, {rounds} times each, \
         1.5 s apart; headroomd is not running, so traffic crosses the fail-open bridge while attached. \
         For each command: its run time, the longest gap between ping replies and between TCP reads in \
         the window from its start to 1 s after its end, and the pings lost there. The quiet rows are \
         the same measures over the 1 s before each command (the noise floor).\n\n\
         | command | runs | run time, ms (median / max) | longest ping gap, ms (median / max) | pings lost (max) | longest TCP gap, ms (median / max) |\n\
         |---|---|---|---|---|---|\n",
        cmdline.join(" ")
    ));
    let med = |mut v: Vec<f64>| -> (f64, f64) {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], *v.last().unwrap_or(&0.0))
    };
    for what in ["attach", "detach", "quiet"] {
        let windows: Vec<(f64, f64, f64)> = ops
            .iter()
            .filter(|o| o.what == what || what == "quiet")
            .map(|o| {
                if what == "quiet" {
                    (o.start - 1.0, o.start - 0.01, 0.0)
                } else {
                    (o.start, o.end + 1.0, o.end - o.start)
                }
            })
            .collect();
        let run = med(windows.iter().map(|w| w.2 * 1e3).collect());
        let pg = med(windows
            .iter()
            .map(|w| longest_gap(&stamps, w.0, w.1) * 1e3)
            .collect());
        let tg = med(windows
            .iter()
            .map(|w| longest_gap(&reads, w.0, w.1) * 1e3)
            .collect());
        let lost = windows.iter().map(|w| lost(w.0, w.1)).max().unwrap_or(0);
        let run = if what == "quiet" {
            "-".to_string()
        } else {
            format!("{:.1} / {:.1}", run.0, run.1)
        };
        let line = format!(
            "| {what} | {} | {run} | {:.1} / {:.1} | {lost} | {:.1} / {:.1} |\n",
            windows.len(),
            pg.0,
            pg.1,
            tg.0,
            tg.1
        );
        print!("{line}");
        md.push_str(&line);
    }
    md.push_str(&format!(
        "\nTCP: {:.1} MB sent, {:.1} MB received, the connection survived every command.\n",
        sent as f64 / 1e6,
        got as f64 / 1e6
    ));
    crate::write_report(out, "deploy-gap.md", &md)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
