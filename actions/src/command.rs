//! Commands: no shell, a clean environment with the event, a process
//! group of their own killed at the timeout, bounded captured output.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use headroom_config::triggers::CommandAction;
use headroom_control::triggers::TriggerEvent;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use wait_timeout::ChildExt;

use crate::{ActionRecord, ExecutorConfig, Outcome};

/// `PATH` of commands (nothing of the daemon's environment is passed on).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long output readers may take after the command ended (a daemonised
/// grandchild holding the pipe open does not hold the worker).
const DRAIN: Duration = Duration::from_secs(1);

/// Reads a pipe to its end, keeping the first `max` bytes.
fn reader(mut r: impl Read + Send + 'static, max: usize) -> JoinHandle<(Vec<u8>, u64)> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut dropped = 0u64;
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = max.saturating_sub(kept.len()).min(n);
                    kept.extend_from_slice(&buf[..room]);
                    dropped += (n - room) as u64;
                }
            }
        }
        (kept, dropped)
    })
}

fn join_bounded(h: JoinHandle<(Vec<u8>, u64)>) -> Option<(Vec<u8>, u64)> {
    let deadline = headroom_clock::Timestamp::now() + DRAIN;
    while !h.is_finished() {
        if headroom_clock::Timestamp::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    h.join().ok()
}

pub(crate) fn run(
    cfg: &ExecutorConfig,
    c: &CommandAction,
    e: &TriggerEvent,
    rec: &mut ActionRecord,
) {
    let Some((argv0, args)) = c.argv.split_first() else {
        rec.outcome = Outcome::Refused;
        rec.error = Some("empty argv".into());
        return;
    };
    if !cfg.node.allows_command(argv0) {
        rec.outcome = Outcome::Refused;
        rec.error = Some(format!(
            "{argv0:?} is not in this node's [actions] allowed_commands"
        ));
        return;
    }
    let mut cmd = Command::new(argv0);
    cmd.args(args)
        .env_clear()
        .env("PATH", PATH)
        .envs(e.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir("/")
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(err) => {
            rec.outcome = Outcome::Failed;
            rec.error = Some(format!("cannot start {argv0}: {err}"));
            return;
        }
    };
    let pgid = Pid::from_raw(child.id() as i32);
    let out = child.stdout.take().map(|p| reader(p, cfg.max_output));
    let err = child.stderr.take().map(|p| reader(p, cfg.max_output));
    let status = match child.wait_timeout(c.timeout) {
        Ok(Some(s)) => Some(s),
        Ok(None) => None,
        Err(err) => {
            rec.error = Some(format!("waiting for {argv0}: {err}"));
            None
        }
    };
    // Kill the whole group in any case: the command may have left children.
    let _ = killpg(pgid, Signal::SIGKILL);
    let status = match status {
        Some(s) => s,
        None => {
            rec.outcome = Outcome::TimedOut;
            rec.error.get_or_insert_with(|| {
                format!("killed after {}", humantime::format_duration(c.timeout))
            });
            match child.wait() {
                Ok(s) => s,
                Err(_) => return,
            }
        }
    };
    rec.exit_code = status.code();
    rec.signal = status.signal();
    for (h, into) in [(out, &mut rec.stdout), (err, &mut rec.stderr)] {
        if let Some(h) = h {
            match join_bounded(h) {
                Some((bytes, dropped)) => {
                    *into = String::from_utf8_lossy(&bytes).into_owned();
                    rec.output_truncated += dropped;
                }
                None => {
                    rec.error.get_or_insert_with(|| {
                        "output still open after the command ended (a child left running?)".into()
                    });
                }
            }
        }
    }
    if rec.outcome == Outcome::Ok && !status.success() {
        rec.outcome = Outcome::Failed;
        rec.error = Some(match (status.code(), status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "failed".into(),
        });
    }
}
