//! The demo's web console: server 1 serves it on its loopback, the lab
//! forwards the host's `127.0.0.1:PORT` into server 1's namespace, and an
//! admin login is made with `headroomctl console-user`, as an operator
//! would.

use std::{
    io::Write,
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context, Result};
use headroom_lab::{forward_tcp, traffic, Forward, Lab};

/// The console's address inside server 1's namespace.
pub const INSIDE: &str = "127.0.0.1:7948";

/// A login and the `[console]` section that serves it.
pub struct Console {
    pub user: &'static str,
    pub password: String,
    pub config: String,
}

/// Writes a users file with one admin (a random password) into `dir`.
pub fn users(ctl: &Path, dir: &Path) -> Result<Console> {
    let mut raw = [0u8; 6];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut raw)?;
    let password: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut child = Command::new(ctl)
        .args(["console-user", "admin", "--role", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", ctl.display()))?;
    writeln!(child.stdin.take().expect("piped stdin"), "{password}")?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("headroomctl console-user failed: {}", out.status);
    }
    let file = dir.join("console-users.toml");
    std::fs::write(&file, &out.stdout)?;
    Ok(Console {
        user: "admin",
        password,
        config: format!(
            "[console]\nlisten = \"{INSIDE}\"\nusers = \"{}\"\n",
            file.display()
        ),
    })
}

/// Forwards the host's 127.0.0.1:`port` to the console in server 1.
pub fn open(lab: &Lab, port: u16) -> Result<Forward> {
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    forward_tcp(listen, &lab.servers[0].ns, INSIDE.parse()?).with_context(|| {
        format!("forwarding {listen} to the console (is the port taken? try --console-port)")
    })
}

/// Keeps the lab up with steady traffic (5 and 2 Mbit/s of `export` from
/// servers 1 and 3) until SIGINT or SIGTERM.
pub fn hold(lab: &Lab) -> Result<()> {
    let quit = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, quit.clone())?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let to = SocketAddr::from((lab.clients[1].ip, 9001));
    let senders = [(0, 5e6), (2, 2e6)].map(|(i, bps)| {
        traffic::udp_flood(&lab.servers[i].host_ns, 7001, to, bps, 1000, stop.clone())
    });
    println!("   holding the lab with steady traffic; Ctrl-C tears it down");
    while !quit.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.join();
    }
    Ok(())
}
