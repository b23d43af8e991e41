//! System tests of the process scheduler on the real cgroup v1 cpu
//! controller: real CPU-burning processes pinned to one core, real ticks.
//!
//! Needs root and `/sys/fs/cgroup/cpu` (cgroup v1 cpu controller). Without
//! them the tests fail with a clear message, unless
//! `HEADROOM_SKIP_CGROUP_TESTS=1` is set, in which case they are skipped
//! with a note on stderr.

use headroom_clock::Timestamp;
use headroom_config::process::{CpuPolicy, CpuShare, ProcessJob, ProcessRule};
use headroom_control::procsched::backend::parse_proc_cgroup;
use headroom_control::procsched::scan::parse_stat;
use headroom_control::procsched::{
    detect_backend, BackendChoice, BackendKind, CgroupBackend, CgroupVersion, ProcessScheduler,
};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

const CPU_MOUNT: &str = "/sys/fs/cgroup/cpu";
const SKIP_VAR: &str = "HEADROOM_SKIP_CGROUP_TESTS";

/// Tests pin burners to the same core: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Returns false (skip) only when explicitly asked to; otherwise panics
/// with the reason the test cannot run.
fn preflight(test: &str) -> bool {
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        eprintln!("{test}: SKIPPED because {SKIP_VAR}=1");
        return false;
    }
    let root = nix::unistd::geteuid().is_root();
    assert!(
        root,
        "{test}: needs root to create cgroups under {CPU_MOUNT} (set {SKIP_VAR}=1 to skip)"
    );
    assert!(
        Path::new(CPU_MOUNT).join("cpu.shares").exists(),
        "{test}: no cgroup v1 cpu controller at {CPU_MOUNT} (set {SKIP_VAR}=1 to skip)"
    );
    true
}

fn pinned_core() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
}

/// A CPU-burning shell (and whatever it forks), pinned to one core, killed
/// with its whole process group on drop.
struct Burner {
    child: Child,
}

impl Burner {
    /// Runs `script` under `/bin/sh -c` with `tag` as `$0` (so the tag
    /// appears in the command line), pinned to `pinned_core()`.
    fn spawn(script: &str, tag: &str) -> Burner {
        // taskset pins itself, then execs the shell (same pid).
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg(pinned_core().to_string())
            .arg("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg(tag)
            .process_group(0);
        Burner {
            child: cmd.spawn().expect("spawn /bin/sh burner"),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        let pg = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(pg, Signal::SIGCONT);
        let _ = killpg(pg, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

const LOOP: &str = "while :; do :; done";

fn ticks_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s))
        .map_or(0, |s| s.cpu_ticks)
}

fn clk_tck() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64
}

/// CPU seconds used by each group of pids over `secs` seconds.
fn measure(groups: &[&[u32]], secs: f64) -> (Vec<f64>, f64) {
    let sum = |g: &[u32]| g.iter().map(|p| ticks_of(*p)).sum::<u64>();
    let before: Vec<u64> = groups.iter().map(|g| sum(g)).collect();
    let t0 = Timestamp::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let wall = (Timestamp::now() - t0).as_secs_f64();
    let used = groups
        .iter()
        .zip(before)
        .map(|(g, b)| sum(g).saturating_sub(b) as f64 / clk_tck())
        .collect();
    (used, wall)
}

fn cpu_cgroup(pid: u32) -> String {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    parse_proc_cgroup(&text, CgroupVersion::V1).expect("cpu hierarchy line")
}

fn children_of(ppid: u32) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(st) = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
        {
            if st.ppid == ppid {
                v.push(pid);
            }
        }
    }
    v
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Waits until `parent` has a child that has exec'd (its command line no
/// longer carries `tag`), and returns it.
fn exec_child(parent: u32, tag: &str) -> u32 {
    let deadline = Timestamp::now() + Duration::from_secs(10);
    loop {
        if let Some(c) = children_of(parent).into_iter().find(|c| {
            let cl = cmdline(*c);
            !cl.is_empty() && !cl.contains(tag)
        }) {
            return c;
        }
        assert!(
            Timestamp::now() < deadline,
            "child of {parent} never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn job(name: &str, tag: &str, percent: f64, include_children: bool) -> ProcessJob {
    ProcessJob {
        name: name.into(),
        rules: vec![ProcessRule {
            cmdline: Some(format!("* {tag}")),
            ..Default::default()
        }],
        include_children,
        cpu: Some(CpuPolicy {
            share: CpuShare::ServerPercent(percent),
            cap_percent: None,
        }),
    }
}

fn parent_name(test: &str) -> String {
    format!("headroom-cputest-{}-{test}", std::process::id())
}

fn scheduler(jobs: &[ProcessJob], parent: &str) -> ProcessScheduler {
    let backend =
        CgroupBackend::new(CgroupVersion::V1, CPU_MOUNT, parent).expect("cgroup v1 backend");
    ProcessScheduler::new(jobs, Box::new(backend)).expect("scheduler")
}

fn procs_of(parent: &str, job: &str) -> Vec<u32> {
    std::fs::read_to_string(
        PathBuf::from(CPU_MOUNT)
            .join(parent)
            .join(job)
            .join("cgroup.procs"),
    )
    .unwrap_or_default()
    .lines()
    .filter_map(|l| l.trim().parse().ok())
    .collect()
}

fn read_cg(parent: &str, rel: &str) -> String {
    std::fs::read_to_string(PathBuf::from(CPU_MOUNT).join(parent).join(rel))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// After shutdown: no Headroom cgroup is left and every process is back.
fn assert_restored(parent: &str, originals: &[(u32, String)]) {
    assert!(
        !PathBuf::from(CPU_MOUNT).join(parent).exists(),
        "cgroup {parent} still exists after shutdown"
    );
    for (pid, orig) in originals {
        assert_eq!(
            &cpu_cgroup(*pid),
            orig,
            "pid {pid} not restored to its original cgroup"
        );
    }
}

#[test]
fn cpu_shares_split_75_25_and_idle_job_yields() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !preflight("cpu_shares_split_75_25_and_idle_job_yields") {
        return;
    }
    let me = std::process::id();
    let (tag_a, tag_b) = (
        format!("hr-cpu-{me}-split-a"),
        format!("hr-cpu-{me}-split-b"),
    );
    let a = Burner::spawn(LOOP, &tag_a);
    let b = Burner::spawn(LOOP, &tag_b);
    let originals = vec![
        (a.pid(), cpu_cgroup(a.pid())),
        (b.pid(), cpu_cgroup(b.pid())),
    ];
    let parent = parent_name("split");
    let jobs = vec![
        job("high", &tag_a, 75.0, true),
        job("low", &tag_b, 25.0, true),
    ];
    let mut s = scheduler(&jobs, &parent);
    assert_eq!(s.backend_kind(), BackendKind::CgroupV1);

    let t0 = Timestamp::now();
    let r = s.tick(t0, &[]).expect("tick");
    assert_eq!(r.moved, 2, "both burners moved");
    assert_eq!(procs_of(&parent, "high"), vec![a.pid()]);
    assert_eq!(procs_of(&parent, "low"), vec![b.pid()]);
    assert_eq!(read_cg(&parent, "high/cpu.shares"), "76800");
    assert_eq!(read_cg(&parent, "low/cpu.shares"), "25600");

    std::thread::sleep(Duration::from_millis(500));
    let (used, wall) = measure(&[&[a.pid()], &[b.pid()]], 5.0);
    let total = used[0] + used[1];
    let share_a = used[0] / total;
    eprintln!(
        "75/25 split over {wall:.2} s on core {}: high {:.2} s, low {:.2} s -> {:.1}% / {:.1}% (core busy {:.1}%)",
        pinned_core(),
        used[0],
        used[1],
        share_a * 100.0,
        (1.0 - share_a) * 100.0,
        total / wall * 100.0
    );
    assert!(
        total > 0.5 * wall,
        "burners got too little CPU to judge ({total:.2} s of {wall:.2} s)"
    );
    assert!(
        (share_a - 0.75).abs() <= 0.05,
        "split {:.1}% not within 5 points of 75%",
        share_a * 100.0
    );

    // The monitoring view agrees on who is who.
    let t1 = t0 + Duration::from_secs_f64(0.5 + wall);
    s.tick(t1, &[]).expect("tick");
    let snap = s.snapshot();
    assert_eq!(snap.jobs[0].pids, vec![a.pid()]);
    assert!(
        snap.jobs[0].cores_used > 0.4,
        "monitored cores {}",
        snap.jobs[0].cores_used
    );
    assert!((snap.booked_percent - 100.0).abs() < 1e-6);

    // Stop the 25 % job: the 75 % job takes (nearly) the whole core.
    kill(Pid::from_raw(b.pid() as i32), Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (used, wall) = measure(&[&[a.pid()], &[b.pid()]], 3.0);
    eprintln!(
        "low job stopped: high used {:.1}% of the core, low {:.1}%",
        used[0] / wall * 100.0,
        used[1] / wall * 100.0
    );
    assert!(
        used[0] / wall >= 0.85,
        "high job got only {:.1}% of the core",
        used[0] / wall * 100.0
    );
    assert!(used[1] < 0.05);
    kill(Pid::from_raw(b.pid() as i32), Signal::SIGCONT).unwrap();

    s.shutdown().expect("shutdown");
    assert_restored(&parent, &originals);
}

#[test]
fn cpu_children_join_their_parents_job() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !preflight("cpu_children_join_their_parents_job") {
        return;
    }
    let me = std::process::id();
    let (tag_k, tag_n) = (format!("hr-cpu-{me}-kids"), format!("hr-cpu-{me}-nokids"));
    let script = format!("/bin/sh -c '{LOOP}' & {LOOP}");
    let with = Burner::spawn(&script, &tag_k);
    let without = Burner::spawn(&script, &tag_n);
    let child_with = exec_child(with.pid(), &tag_k);
    let child_without = exec_child(without.pid(), &tag_n);
    let originals: Vec<(u32, String)> = [with.pid(), without.pid(), child_with, child_without]
        .iter()
        .map(|p| (*p, cpu_cgroup(*p)))
        .collect();
    let parent = parent_name("kids");
    let jobs = vec![
        job("kids", &tag_k, 50.0, true),
        job("nokids", &tag_n, 30.0, false),
    ];
    let mut s = scheduler(&jobs, &parent);
    s.tick(Timestamp::now(), &[]).expect("tick");

    let mut in_kids = procs_of(&parent, "kids");
    in_kids.sort_unstable();
    let mut want = vec![with.pid(), child_with];
    want.sort_unstable();
    eprintln!(
        "kids job cgroup: {in_kids:?} (parent {}, child {child_with})",
        with.pid()
    );
    assert_eq!(
        in_kids,
        want,
        "the child (cmdline {:?}) joined its parent's job",
        cmdline(child_with)
    );
    assert_eq!(s.job_of(child_with), Some("kids"));
    assert_eq!(procs_of(&parent, "nokids"), vec![without.pid()]);
    assert_eq!(s.job_of(child_without), None, "include_children = false");
    assert_eq!(
        cpu_cgroup(child_without),
        originals[3].1,
        "unmatched child is not moved"
    );

    // A child forked *after* its parent was moved starts inside the job
    // cgroup (the kernel's inheritance); with include_children = false the
    // next tick returns it to the parent's original cgroup.
    let late_script = format!("sleep 2; /bin/sh -c '{LOOP}' late-child & {LOOP}");
    let tag_l = format!("hr-cpu-{me}-late");
    let late = Burner::spawn(&late_script, &tag_l);
    let late_orig = cpu_cgroup(late.pid());
    // Its `sleep` child carries the parent's command line until it execs:
    // tick only once it has, so the rule cannot match it in between.
    let deadline = Timestamp::now() + Duration::from_secs(15);
    while !children_of(late.pid())
        .into_iter()
        .any(|c| cmdline(c).starts_with("sleep"))
    {
        assert!(Timestamp::now() < deadline, "sleep child never exec'd");
        std::thread::sleep(Duration::from_millis(10));
    }
    s.reload(&[
        job("kids", &tag_k, 50.0, true),
        job("nokids", &tag_n, 30.0, false),
        job("late", &tag_l, 10.0, false),
    ])
    .expect("reload");
    s.tick(Timestamp::now(), &[]).expect("tick");
    assert_eq!(procs_of(&parent, "late"), vec![late.pid()]);
    let deadline = Timestamp::now() + Duration::from_secs(15);
    let late_child = loop {
        if let Some(c) = children_of(late.pid())
            .into_iter()
            // After its exec only: until then the child shows (and is) a
            // copy of its parent, which the rule rightly matches.
            .find(|c| cmdline(*c).contains("done late-child"))
        {
            break c;
        }
        assert!(Timestamp::now() < deadline, "late child never appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        cpu_cgroup(late_child),
        format!("/{parent}/late"),
        "precondition: the kernel placed the late child in the job cgroup"
    );
    // Detection settles within one more tick after an exec (a process seen
    // between fork and exec is re-read while young).
    s.tick(Timestamp::now(), &[]).expect("tick");
    s.tick(Timestamp::now(), &[]).expect("tick");
    assert_eq!(
        s.job_of(late_child),
        None,
        "late child {late_child} cmdline {:?}",
        cmdline(late_child)
    );
    assert_eq!(
        cpu_cgroup(late_child),
        late_orig,
        "stray child returned to the original cgroup"
    );
    eprintln!(
        "late child {late_child} of an include_children=false job returned to {:?}",
        cpu_cgroup(late_child)
    );

    let mut originals = originals;
    originals.push((late.pid(), late_orig.clone()));
    originals.push((late_child, late_orig));
    s.shutdown().expect("shutdown");
    assert_restored(&parent, &originals);
}

#[test]
fn cpu_reload_moves_processes_and_removes_jobs() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !preflight("cpu_reload_moves_processes_and_removes_jobs") {
        return;
    }
    let me = std::process::id();
    let (t1, t2) = (
        format!("hr-cpu-{me}-reload-1"),
        format!("hr-cpu-{me}-reload-2"),
    );
    let p1 = Burner::spawn(LOOP, &t1);
    let p2 = Burner::spawn(LOOP, &t2);
    let originals = vec![
        (p1.pid(), cpu_cgroup(p1.pid())),
        (p2.pid(), cpu_cgroup(p2.pid())),
    ];
    let parent = parent_name("reload");
    let mut s = scheduler(
        &[job("x", &t1, 60.0, true), job("y", &t2, 40.0, true)],
        &parent,
    );
    let t0 = Timestamp::now();
    s.tick(t0, &[]).expect("tick");
    assert_eq!(procs_of(&parent, "x"), vec![p1.pid()]);
    assert_eq!(procs_of(&parent, "y"), vec![p2.pid()]);

    // Swap the rules.
    s.reload(&[job("x", &t2, 60.0, true), job("y", &t1, 40.0, true)])
        .expect("reload");
    s.tick(t0 + Duration::from_secs(1), &[]).expect("tick");
    assert_eq!(procs_of(&parent, "x"), vec![p2.pid()]);
    assert_eq!(procs_of(&parent, "y"), vec![p1.pid()]);
    assert_eq!(cpu_cgroup(p1.pid()), format!("/{parent}/y"));

    // Drop job y: its process goes back where it came from, its cgroup goes.
    s.reload(&[job("x", &t2, 60.0, true)]).expect("reload");
    assert!(!PathBuf::from(CPU_MOUNT).join(&parent).join("y").exists());
    assert_eq!(cpu_cgroup(p1.pid()), originals[0].1);
    s.tick(t0 + Duration::from_secs(2), &[]).expect("tick");
    assert_eq!(procs_of(&parent, "x"), vec![p2.pid()]);
    assert_eq!(s.job_of(p1.pid()), None);
    eprintln!(
        "reload: swapped and removed jobs; p1 back in {:?}",
        cpu_cgroup(p1.pid())
    );

    s.shutdown().expect("shutdown");
    assert_restored(&parent, &originals);
}

#[test]
fn cpu_backend_autodetect_reports_cgroup() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !preflight("cpu_backend_autodetect_reports_cgroup") {
        return;
    }
    let parent = parent_name("detect");
    let b = detect_backend(&BackendChoice::Auto, &parent).expect("backend");
    eprintln!("auto-detected backend: {:?}: {}", b.kind(), b.describe());
    assert_ne!(
        b.kind(),
        BackendKind::Nice,
        "a cgroup cpu controller is mounted"
    );
    drop(b);
    assert!(
        !PathBuf::from(CPU_MOUNT).join(&parent).exists(),
        "nothing created before use"
    );
}

#[test]
fn cpu_cap_limits_a_job_below_a_free_core() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !preflight("cpu_cap_limits_a_job_below_a_free_core") {
        return;
    }
    let me = std::process::id();
    let tag = format!("hr-cpu-{me}-cap");
    let p = Burner::spawn(LOOP, &tag);
    let originals = vec![(p.pid(), cpu_cgroup(p.pid()))];
    let parent = parent_name("cap");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    // A cap of half a core, expressed in percent of the server. The share
    // is high so that other work on the core (a shared build machine) does
    // not hold the job below its cap.
    let mut j = job("capped", &tag, 90.0, true);
    j.cpu = Some(CpuPolicy {
        share: CpuShare::ServerPercent(90.0),
        cap_percent: Some(50.0 / cores),
    });
    let mut s = scheduler(&[j], &parent).with_local_cores(cores);
    s.tick(Timestamp::now(), &[]).expect("tick");
    assert_eq!(read_cg(&parent, "capped/cpu.cfs_quota_us"), "50000");
    assert_eq!(read_cg(&parent, "capped/cpu.cfs_period_us"), "100000");
    std::thread::sleep(Duration::from_millis(300));
    let (used, wall) = measure(&[&[p.pid()]], 3.0);
    let frac = used[0] / wall;
    eprintln!("capped at 0.5 core: used {:.1}% of a core", frac * 100.0);
    assert!(
        (0.40..=0.60).contains(&frac),
        "capped job used {:.1}% of a core",
        frac * 100.0
    );
    s.shutdown().expect("shutdown");
    assert_restored(&parent, &originals);
}

#[test]
fn cpu_booked_share_holds_against_an_unmanaged_process() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !preflight("cpu_booked_share_holds_against_an_unmanaged_process") {
        return;
    }
    let me = std::process::id();
    let (tag_j, tag_u) = (
        format!("hr-cpu-{me}-booked"),
        format!("hr-cpu-{me}-unmanaged"),
    );
    let j = Burner::spawn(LOOP, &tag_j);
    let u = Burner::spawn(LOOP, &tag_u);
    let originals = vec![
        (j.pid(), cpu_cgroup(j.pid())),
        (u.pid(), cpu_cgroup(u.pid())),
    ];
    let parent = parent_name("booked");
    let mut s = scheduler(&[job("booked", &tag_j, 25.0, true)], &parent);
    s.tick(Timestamp::now(), &[]).expect("tick");
    assert_eq!(procs_of(&parent, "booked"), vec![j.pid()]);
    assert_eq!(
        cpu_cgroup(u.pid()),
        originals[1].1,
        "unmanaged process is not moved"
    );
    // 25 % booked: parent weight 1024 * 25 / 75 against a nice-0 task.
    assert_eq!(read_cg(&parent, "cpu.shares"), "341");
    std::thread::sleep(Duration::from_millis(300));
    let (used, wall) = measure(&[&[j.pid()], &[u.pid()]], 5.0);
    let share = used[0] / (used[0] + used[1]);
    eprintln!(
        "25% job vs one unmanaged busy loop over {wall:.2} s: job {:.1}% / unmanaged {:.1}%",
        share * 100.0,
        (1.0 - share) * 100.0
    );
    assert!(
        (share - 0.25).abs() <= 0.05,
        "job got {:.1}% against the unmanaged loop",
        share * 100.0
    );
    s.shutdown().expect("shutdown");
    assert_restored(&parent, &originals);
}
