//! Crash recovery: headroomd killed with SIGKILL leaves its job cgroups (with
//! the processes it moved still in them), its state file and its control
//! socket file; the XDP links close with the process (fail open). The next
//! start takes the cgroups over: a job still configured keeps its cgroup and
//! its process (never moved out), a job no longer configured has its cgroup
//! removed and its process returned to where it came from, and a clean
//! shutdown afterwards restores every process to the cgroup it had before
//! the first run and leaves nothing behind. A third headroomd started while
//! the second serves is refused before it touches anything.
//!
//! Needs root and the cgroup v1 cpu controller at `/sys/fs/cgroup/cpu`.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::*;
use headroom_control::procsched::{backend::parse_proc_cgroup, CgroupVersion};
use headroom_lab::{Lab, INNER, NIC as OUTER};

const CPU_MOUNT: &str = "/sys/fs/cgroup/cpu";

/// A `sleep` that a process rule finds by an environment marker; killed on
/// drop.
struct Sleeper(Child);

impl Sleeper {
    fn spawn(marker: &str) -> Sleeper {
        Sleeper(
            Command::new("sleep")
                .arg("600")
                .env(marker, "1")
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn sleep"),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The cpu-hierarchy cgroup of `pid`.
fn cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read cgroup");
    parse_proc_cgroup(&text, CgroupVersion::V1).expect("cpu line")
}

/// Removes the parent cgroup if a failed run left it (processes go to the
/// root of the hierarchy).
struct CgroupCleanup(PathBuf);

impl Drop for CgroupCleanup {
    fn drop(&mut self) {
        if !self.0.exists() {
            return;
        }
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&self.0)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|d| d.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        dirs.push(self.0.clone());
        for d in dirs {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines() {
                let _ = std::fs::write(Path::new(CPU_MOUNT).join("cgroup.procs"), pid);
            }
            let _ = std::fs::remove_dir(&d);
        }
    }
}

#[test]
fn a_restart_after_sigkill_takes_over_the_cgroups_and_leaves_nothing_behind() {
    assert!(
        Path::new(CPU_MOUNT).join("cpu.shares").exists(),
        "needs the cgroup v1 cpu controller at {CPU_MOUNT}"
    );
    let mut lab = Lab::up(1, 0).expect("lab");
    let dir = TempDir::new(&format!("{}-crash", lab.tag));
    let s = lab.servers[0].clone();
    let parent = format!("{}-crash", lab.tag);
    let parent_dir = Path::new(CPU_MOUNT).join(&parent);
    let _cleanup = CgroupCleanup(parent_dir.clone());
    let state_dir = dir.path("state");
    let state_file = state_dir.join(format!("cpu-{parent}.json"));
    let tag = lab.tag.replace('-', "_");
    let (web_marker, batch_marker) = (format!("HR_CR_WEB_{tag}"), format!("HR_CR_BATCH_{tag}"));
    let mut web = Sleeper::spawn(&web_marker);
    let mut batch = Sleeper::spawn(&batch_marker);
    let (web_home, batch_home) = (cgroup_of(web.pid()), cgroup_of(batch.pid()));
    let job = |name: &str, marker: &str| {
        format!(
            "[[job]]\nname = \"{name}\"\ncpu = {{ server_percent = 20 }}\n\
             [[job.process]]\nenv = [\"{marker}=1\"]\n"
        )
    };
    let cpu = format!(
        "[cpu]\nbackend = \"cgroup-v1\"\ncgroup_parent = \"{parent}\"\nstate_dir = \"{}\"\n",
        state_dir.display()
    );
    let socket = dir.path(&format!("s{}.sock", s.id));
    let config = |jobs: &str| server_config(&s, &socket, &format!("{jobs}{cpu}"));
    let in_job = |pid: u32, job: &str| cgroup_of(pid) == format!("/{parent}/{job}");

    // First run: both processes moved into their job cgroups and recorded.
    let both = format!("{}{}", job("web", &web_marker), job("batch", &batch_marker));
    start_headroomd(&mut lab, &dir, 0, &config(&both));
    assert!(
        wait_for(Duration::from_secs(15), || {
            (in_job(web.pid(), "web") && in_job(batch.pid(), "batch")).then_some(())
        })
        .is_some(),
        "not moved: web in {}, batch in {}",
        cgroup_of(web.pid()),
        cgroup_of(batch.pid())
    );
    let recorded = wait_for(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&state_file).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let placed = v["placed"].as_object()?.clone();
        (placed.len() == 2).then_some(v)
    })
    .expect("the state file records both processes");
    assert_eq!(
        recorded["placed"][web.pid().to_string()]["original"],
        web_home.as_str()
    );

    // SIGKILL: no clean-up runs.
    let mut d = lab.forget(&format!("headroomd-{}", s.id)).unwrap();
    d.kill().unwrap();
    d.wait().unwrap();
    // What it leaves: the cgroups with the processes in them, the state
    // file, the socket file. What it does not: XDP (its links closed with it).
    assert!(in_job(web.pid(), "web") && in_job(batch.pid(), "batch"));
    assert!(state_file.exists() && socket.exists());
    assert!(!xdp_attached(&lab, &s.ns, OUTER) && !xdp_attached(&lab, &s.ns, INNER));
    assert!(web.running() && batch.running());

    // Second run, without the batch job: web's cgroup adopted with its
    // process left in place, batch's removed and its process sent home.
    let sock = start_headroomd(&mut lab, &dir, 0, &config(&job("web", &web_marker)));
    assert!(xdp_attached(&lab, &s.ns, OUTER) && xdp_attached(&lab, &s.ns, INNER));
    let listed = wait_for(Duration::from_secs(15), || {
        let cpu = status(&sock).cpu?;
        cpu.jobs
            .iter()
            .any(|j| j.name == "web" && j.pids == [web.pid()])
            .then_some(())
    });
    assert!(listed.is_some(), "{:?}", status(&sock).cpu);
    assert!(in_job(web.pid(), "web"), "web left its cgroup");
    assert_eq!(cgroup_of(batch.pid()), batch_home);
    assert!(!parent_dir.join("batch").exists());
    let log = std::fs::read_to_string(dir.path(&format!("s{}.log", s.id))).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("took over the cgroups of a headroomd that did not shut down"))
        .unwrap_or_else(|| panic!("no take-over line in\n{log}"));
    assert!(
        line.contains("processes_adopted=1")
            && line.contains("processes_restored=1")
            && line.contains("jobs_removed=[\"batch\"]"),
        "{line}"
    );
    assert!(
        log.contains("removed the control socket a previous headroomd left"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(&state_file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map(|v| v["placed"].as_object().map_or(0, |p| p.len())),
        Some(1)
    );

    // A third headroomd on the same socket is refused before it attaches.
    let third = lab
        .command(&s.ns, HEADROOMD)
        .arg("--config")
        .arg(dir.path(&format!("s{}.toml", s.id)))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&third.stderr);
    assert!(!third.status.success(), "{err}");
    assert!(
        err.contains("another headroomd answers on the control socket"),
        "{err}"
    );
    assert!(
        status(&sock).workers.len() == 1,
        "the running one is unharmed"
    );

    // A clean stop restores web's process to where it was before the first
    // run (recorded by the killed one) and leaves nothing behind.
    let pid =
        nix::unistd::Pid::from_raw(lab.child(&format!("headroomd-{}", s.id)).unwrap().id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let st = lab
        .child(&format!("headroomd-{}", s.id))
        .unwrap()
        .wait()
        .unwrap();
    assert!(st.success(), "{st}");
    assert_eq!(cgroup_of(web.pid()), web_home);
    assert!(!parent_dir.exists(), "parent cgroup left");
    assert!(!state_file.exists(), "state file left");
    assert!(!socket.exists(), "socket file left");
    assert!(web.running() && batch.running(), "a process died");
}
