//! Shared helpers for the system tests: a lab plus headroomd instances
//! started in it, with status queries through the real control socket.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use headroom::{
    ctl::{call, Request, Response},
    lab::{Lab, Server},
    status::Status,
};

/// Path of the daemon binary built for these tests.
pub const HEADROOMD: &str = env!("CARGO_BIN_EXE_headroomd");

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The minimal config of a lab server; `extra` is appended verbatim.
pub fn server_config(s: &Server, socket: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[node]
id = {id}
address = "{ip}"

[interfaces]
outer = "outer"
inner = "inner"

[workers]
cores = [1]
frame_count = 4096
fill_size = 1024
ring_size = 1024

[control]
socket = "{sock}"
high_freq_ms = 20
low_freq_ms = 500
{extra}
"#,
        id = s.id,
        ip = s.node_ip,
        sock = socket.display(),
    )
}

/// Starts headroomd for server `idx` (0-based) with `config`; waits until
/// its control socket answers. The lab owns the process.
pub fn start_headroomd(lab: &mut Lab, dir: &TempDir, idx: usize, config: &str) -> PathBuf {
    lab.start_headroomd(std::path::Path::new(HEADROOMD), idx, &dir.0, config)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The daemon's status.
pub fn status(socket: &std::path::Path) -> Status {
    match call(socket, &Request::Status).expect("control socket") {
        Response::Status(s) => *s,
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether an XDP program is attached to `dev` in `ns`.
pub fn xdp_attached(lab: &Lab, ns: &str, dev: &str) -> bool {
    let out = lab
        .ip(ns, &["link", "show", "dev", dev])
        .expect("ip link show");
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

/// Runs a command in `ns` and returns stdout, panicking with stderr on failure.
pub fn sh(lab: &Lab, ns: &str, script: &str) -> String {
    let out = lab
        .command(ns, "sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `Command` for a program in `ns`.
pub fn in_ns(lab: &Lab, ns: &str, program: &str) -> Command {
    lab.command(ns, program)
}
