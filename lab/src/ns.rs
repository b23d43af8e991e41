//! Running things in network namespaces: commands, threads, cleanup.

use std::process::{Command, Output, Stdio};

use crate::LabError;

/// Runs a command, failing on a non-zero exit.
pub fn run(cmd: &[&str]) -> Result<Output, LabError> {
    let line = cmd.join(" ");
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            cmd: line.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Failed {
            cmd: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Runs `f` on a thread that has entered network namespace `ns`, so
/// sockets (std, netlink) and `/proc/sys/net` inside `f` are that
/// namespace's.
pub fn run_in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LabError> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).map_err(|source| LabError::Spawn {
        cmd: format!("open {path}"),
        source,
    })?;
    let handle = std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| e.to_string())?;
        Ok::<T, String>(f())
    });
    match handle.join() {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(LabError::Failed {
            cmd: format!("setns {ns}"),
            status: "error".into(),
            stderr: e,
        }),
        Err(_) => Err(LabError::Failed {
            cmd: format!("thread in {ns}"),
            status: "panicked".into(),
            stderr: String::new(),
        }),
    }
}

/// Writes a `/proc/sys/net/...` setting (`key` like
/// `ipv6/conf/all/disable_ipv6`) inside namespace `ns`.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), LabError> {
    let path = format!("/proc/sys/net/{key}");
    let v = value.to_string();
    let p = path.clone();
    run_in_ns(ns, move || std::fs::write(&p, v))?.map_err(|source| LabError::Spawn {
        cmd: format!("write {value} to {path} in {ns}"),
        source,
    })
}

/// Kills every process running in namespace `ns`.
pub(crate) fn kill_ns_pids(ns: &str) {
    if let Ok(out) = run(&["ip", "netns", "pids", ns]) {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}
