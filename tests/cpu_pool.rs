//! A pool-wide CPU policy across two servers, end to end through headroomd:
//! process detection, the pool CPU entries gossiped through the exchange,
//! the split of `pool_percent` over the job's instances by demand, its
//! enforcement with cgroup v1 weights (measured from /proc), a `kill -9`
//! under traffic and a restart after which pool, enforcement and split come
//! back, a graceful shutdown that restores every process, and the
//! survivor's re-split.
//!
//! Both lab servers run on this one machine and share its /proc and its
//! cgroup hierarchy, so each daemon detects only its own server's processes
//! (the rule names the server) and has its own parent cgroup (named after
//! the lab tag and the node id). Each server's processes are pinned to a
//! core of their own, as if the servers were separate machines:
//!
//! * server 1 (busy): three busy loops, plus one unmanaged busy loop on the
//!   same core, so the job's weight decides what it gets;
//! * server 2 (light): one process busy 10 % of the time, alone on its core,
//!   so it uses what it needs whatever its weight.
//!
//! The job's pool-wide entitlement (50 % of the pool's 4 cores) is split by
//! demand: the busy instance gets the larger target, and enforcement gives
//! it that fraction of its core against the unmanaged loop.
//!
//! Needs root and the cgroup v1 cpu controller at `/sys/fs/cgroup/cpu`;
//! `HEADROOM_SKIP_CGROUP_TESTS=1` skips it with a note.

mod common;

use std::{
    net::SocketAddr,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::*;
use headroom::{
    ctl::{call, Request, Response},
    status::CpuJobStatus,
};
use headroom_control::procsched::{backend::parse_proc_cgroup, scan::parse_stat, CgroupVersion};
use headroom_lab::{traffic::udp_flood, Lab};
use nix::{
    sys::signal::{kill, killpg, Signal},
    unistd::Pid,
};

const SKIP_VAR: &str = "HEADROOM_SKIP_CGROUP_TESTS";
const JOB: &str = "batch";
const LOOP: &str = "while :; do :; done";
/// Busy 10 ms, asleep 90 ms: about 0.1 of a core when it runs alone.
const LIGHT: &str = "while (1) { my $t = time; 1 while time - $t < 0.01; sleep 0.09 }";

/// A process pinned to one core, killed with its process group on drop.
struct Burner {
    child: Child,
}

impl Burner {
    /// Spawns `cmd` pinned to `core` in network namespace `ns` (the lab
    /// server it belongs to: `[cpu] scope = "netns"` keeps each server's
    /// scheduler to its own processes on the shared kernel).
    fn spawn(mut cmd: Command, core: usize, ns: &str) -> Burner {
        use std::os::fd::AsRawFd;
        let mut set = nix::sched::CpuSet::new();
        set.set(core).expect("cpu set");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0);
        let netns = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
        let fd = netns.as_raw_fd();
        // SAFETY: the closure only makes the setns and sched_setaffinity
        // system calls on a descriptor and a CpuSet prepared before fork
        // (the descriptor stays open until spawn returns); it allocates
        // nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                nix::sched::sched_setaffinity(Pid::from_raw(0), &set).map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().expect("spawn burner");
        drop(netns);
        Burner { child }
    }

    /// `/bin/sh -c LOOP tag`: the tag ends the command line.
    fn busy(tag: &str, core: usize, ns: &str) -> Burner {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(LOOP).arg(tag);
        Self::spawn(cmd, core, ns)
    }

    /// `perl ... -e LIGHT tag`: busy a fifth of the time.
    fn light(tag: &str, core: usize, ns: &str) -> Burner {
        let mut cmd = Command::new("perl");
        cmd.arg("-MTime::HiRes=time,sleep")
            .arg("-e")
            .arg(LIGHT)
            .arg(tag);
        Self::spawn(cmd, core, ns)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        let pg = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(pg, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Removes the daemons' parent cgroups if a failed run left them behind
/// (a killed daemon cannot clean up): remaining tasks go to the root.
fn preflight() -> bool {
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        eprintln!("cpu_pool: SKIPPED because {SKIP_VAR}=1");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "needs root to create cgroups under {CPU_MOUNT} (set {SKIP_VAR}=1 to skip)"
    );
    assert!(
        Path::new(CPU_MOUNT).join("cpu.shares").exists(),
        "no cgroup v1 cpu controller at {CPU_MOUNT} (set {SKIP_VAR}=1 to skip)"
    );
    assert!(
        std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2,
        "needs two cores"
    );
    true
}

fn cpu_cgroup(pid: u32) -> String {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    parse_proc_cgroup(&text, CgroupVersion::V1).expect("cpu hierarchy line")
}

fn ticks_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s))
        .map_or(0, |s| s.cpu_ticks)
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// Cores used by each group of pids over `secs` seconds (from /proc).
fn measure(groups: &[&[u32]], secs: f64) -> Vec<f64> {
    let sum = |g: &[u32]| g.iter().map(|p| ticks_of(*p)).sum::<u64>();
    let before: Vec<u64> = groups.iter().map(|g| sum(g)).collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let wall = t0.elapsed().as_secs_f64();
    groups
        .iter()
        .zip(before)
        .map(|(g, b)| sum(g).saturating_sub(b) as f64 / clk_tck() / wall)
        .collect()
}

fn cpu_job(sock: &Path) -> Option<CpuJobStatus> {
    status(sock).cpu?.jobs.into_iter().find(|j| j.name == JOB)
}

fn live_members(sock: &Path) -> usize {
    status(sock).exchange.map_or(0, |e| {
        e.members
            .iter()
            .filter(|m| m.state == "alive" || m.state == "self")
            .count()
    })
}

/// Like `common::start_headroomd`, but the daemon enters only the server's
/// network namespace: `ip netns exec` also remounts /sys, which hides the
/// cgroup hierarchy the CPU enforcement needs.
fn start_daemon(lab: &mut Lab, dir: &TempDir, idx: usize, config: &str) -> PathBuf {
    use std::os::fd::AsRawFd;
    let s = lab.servers[idx].clone();
    let cfg = dir.path(&format!("s{}.toml", s.id));
    std::fs::write(&cfg, config).expect("write config");
    let socket = dir.path(&format!("s{}.sock", s.id));
    let log_path = dir.path(&format!("s{}.log", s.id));
    let log = std::fs::File::create(&log_path).expect("log file");
    let netns = std::fs::File::open(format!("/run/netns/{}", s.ns)).expect("open netns");
    let mut cmd = Command::new(HEADROOMD);
    cmd.arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let fd = netns.as_raw_fd();
    // SAFETY: the closure only makes the setns system call on a file
    // descriptor opened before fork (and kept open until spawn returns).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let name = format!("headroomd-{}", s.id);
    lab.spawn(&name, cmd).expect("spawn headroomd");
    drop(netns);
    let up = wait_for(Duration::from_secs(20), || {
        if let Ok(Response::Status(_)) = call(&socket, &Request::Status) {
            return Some(true);
        }
        match lab.child(&name).map(|c| c.try_wait()) {
            Some(Ok(Some(_))) => Some(false),
            _ => None,
        }
    });
    if up != Some(true) {
        panic!(
            "headroomd {} did not come up:\n{}",
            s.id,
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }
    socket
}

fn config_extra(key: &Path, peers: &str, parent: &str, rule_tag: &str) -> String {
    format!(
        r#"
[exchange]
key_file = "{key}"
peers = [{peers}]
failure_timeout = "1500ms"

[cpu]
backend = "cgroup-v1"
cgroup_parent = "{parent}"
state_dir = "{state}"
scope = "netns"

[[job]]
name = "{JOB}"
cpu = {{ pool_percent = 50 }}
[[job.process]]
cmdline = "* {rule_tag}"
"#,
        key = key.display(),
        state = key.with_file_name(format!("state-{parent}")).display(),
    )
}

/// Frames received on the outer interface (all workers).
fn outer_rx(sock: &Path) -> u64 {
    status(sock).workers.iter().map(|w| w.rx_packets[0]).sum()
}

/// The split by demand, settled and measured over 3 s: asserts it follows
/// demand and is enforced against the unmanaged loop; returns the targets
/// (busy, light), in percent of a server.
fn check_split(
    socks: &[PathBuf; 2],
    busy: &[u32],
    light_pid: u32,
    unmanaged_pid: u32,
    busy_core: usize,
    t_pool: Instant,
    label: &str,
) -> (f64, f64) {
    // The split by demand settles within some ticks (500 ms each); the
    // busy instance overtakes the light one's head start.
    let mut trail = Vec::new();
    let settled = wait_for(Duration::from_secs(15), || {
        let a = cpu_job(&socks[0])?;
        let b = cpu_job(&socks[1])?;
        std::thread::sleep(Duration::from_millis(1000));
        let a2 = cpu_job(&socks[0])?;
        let b2 = cpu_job(&socks[1])?;
        trail.push(format!(
            "{:.1}s {:.0}/{:.0}",
            t_pool.elapsed().as_secs_f64(),
            a2.target_percent,
            b2.target_percent
        ));
        ((a.target_percent - a2.target_percent).abs() < 8.0
            && (b.target_percent - b2.target_percent).abs() < 8.0
            && a2.target_percent > b2.target_percent)
            .then_some(())
    });
    eprintln!("targets busy/light {label}: {}", trail.join(", "));
    let (a0, b0) = (cpu_job(&socks[0]).unwrap(), cpu_job(&socks[1]).unwrap());
    assert!(
        settled.is_some(),
        "pool split did not settle with the busy server ahead: {a0:?} / {b0:?}"
    );

    // Measure over 3 s; targets are averaged over the window.
    let used = measure(&[busy, &[light_pid], &[unmanaged_pid]], 3.0);
    let (a1, b1) = (cpu_job(&socks[0]).unwrap(), cpu_job(&socks[1]).unwrap());
    let (ta, tb) = (
        (a0.target_percent + a1.target_percent) / 2.0,
        (b0.target_percent + b1.target_percent) / 2.0,
    );
    let (ua, ub, uu) = (used[0], used[1], used[2]);
    eprintln!(
        "targets: busy server {ta:.1}% (weight {}, {} instances), light server {tb:.1}% (weight {}, {} instances)",
        a1.weight, a1.pool_instances, b1.weight, b1.pool_instances
    );
    eprintln!(
        "daemons measured: busy {:.2} cores, light {:.2} cores",
        a1.cores_used, b1.cores_used
    );
    eprintln!(
        "/proc over 3 s: busy instance {ua:.2} cores, light instance {ub:.2} cores, unmanaged {uu:.2} cores; \
         busy share of the pool job {:.1}% (target split {:.1}%), busy vs unmanaged on core {busy_core}: {:.1}% (target {ta:.1}%)",
        ua / (ua + ub) * 100.0,
        ta / (ta + tb) * 100.0,
        ua / (ua + uu) * 100.0
    );
    for j in [&a1, &b1] {
        assert_eq!(j.pool_instances, 2, "{j:?}");
        assert!(
            (j.weight as f64 - j.target_percent * 100.0).abs() <= 1.0,
            "weight is not the target: {j:?}"
        );
    }
    // 50 % of a 4-core pool is 2 cores: the two targets (each in percent of
    // a 2-core server) add up to 100 %.
    assert!(
        (ta + tb - 100.0).abs() <= 15.0,
        "targets {ta:.1}% + {tb:.1}% do not add up to the pool's 2 cores"
    );
    assert!(
        ta >= tb + 20.0,
        "busy server's target {ta:.1}% not well above the light one's {tb:.1}%"
    );
    // Split by demand: the busy instance's share of the targets is its
    // share of the job's CPU.
    assert!(ua + ub > 0.5, "the job got too little CPU to judge");
    assert!(
        (ta / (ta + tb) - ua / (ua + ub)).abs() <= 0.12,
        "target split {:.1}% does not follow the measured demand split {:.1}%",
        ta / (ta + tb) * 100.0,
        ua / (ua + ub) * 100.0
    );
    // Enforcement: against one unmanaged busy loop on its core, the busy
    // instance gets its target fraction of that core.
    assert!(
        ua + uu > 0.5,
        "core {busy_core} too busy elsewhere to judge"
    );
    assert!(
        (ua / (ua + uu) - ta / 100.0).abs() <= 0.12,
        "busy instance got {:.1}% of core {busy_core} against the unmanaged loop, target {ta:.1}%",
        ua / (ua + uu) * 100.0
    );
    assert!(ua > ub, "busy instance measured below the light one");
    (ta, tb)
}

#[test]
fn pool_cpu_policy_split_by_demand_across_two_servers() {
    if !preflight() {
        return;
    }
    // Drop order (reverse of declaration): burners, then the lab (daemons),
    // then leftover cgroups.
    let mut cleanup = CgroupCleanup(Vec::new());
    let mut lab = Lab::up(2, 0).expect("lab");
    let dir = TempDir::new(&format!("{}-cpupool", lab.tag));
    let tag = lab.tag.clone();
    let parents: Vec<String> = lab
        .servers
        .iter()
        .map(|s| format!("{tag}-cpu-n{}", s.id))
        .collect();
    cleanup.0 = parents.clone();
    let (busy_core, light_core) = (0, 1);
    let tag_of = |id: u16| format!("hrburn-{tag}-s{id}");

    let mut burners = Vec::new();
    let mut busy = Vec::new();
    for _ in 0..3 {
        let b = Burner::busy(&tag_of(1), busy_core, &lab.servers[0].ns);
        busy.push(b.pid());
        burners.push(b);
    }
    let light = Burner::light(&tag_of(2), light_core, &lab.servers[1].ns);
    let light_pid = light.pid();
    burners.push(light);
    let unmanaged = Burner::busy(
        &format!("hrburn-{tag}-unmanaged"),
        busy_core,
        &lab.servers[0].ns,
    );
    let unmanaged_pid = unmanaged.pid();
    burners.push(unmanaged);
    busy.sort_unstable();
    let originals: Vec<(u32, String)> = busy
        .iter()
        .chain([&light_pid, &unmanaged_pid])
        .map(|p| (*p, cpu_cgroup(*p)))
        .collect();

    let key = dir.path("pool.key");
    headroom_config::write_key_file(&key, b"0123456789abcdef0123456789abcdef").unwrap();
    let peers: Vec<String> = lab
        .servers
        .iter()
        .map(|s| format!("\"{}@{}:7946\"", s.id, s.node_ip))
        .collect();
    let peers = peers.join(", ");
    let start = |lab: &mut Lab, i: usize| {
        let s = lab.servers[i].clone();
        let sock = dir.path(&format!("s{}.sock", s.id));
        // One policy for the pool: the same rule on both servers, each
        // matching its own processes (its network namespace).
        let extra = config_extra(&key, &peers, &parents[i], &format!("hrburn-{tag}-s*"));
        start_daemon(lab, &dir, i, &server_config(&s, &sock, &extra))
    };
    // The light server starts first and runs alone for a while: its
    // instance then holds the whole policy of its one-server pool (1 core
    // of 2), and the busy instance starts from behind.
    let sock2 = start(&mut lab, 1);
    let alone = wait_for(Duration::from_secs(10), || {
        let j = cpu_job(&sock2)?;
        (j.pids == [light_pid] && j.pool_instances == 1 && j.target_percent > 0.0).then_some(j)
    })
    .unwrap_or_else(|| panic!("server 2 alone: {:?}", cpu_job(&sock2)));
    eprintln!(
        "server 2 alone: target {:.1}%, {} instance",
        alone.target_percent, alone.pool_instances
    );
    assert!(
        (alone.target_percent - 50.0).abs() <= 1.0,
        "alone, the instance should get 50% of its 2-core pool: {alone:?}"
    );
    let sock1 = start(&mut lab, 0);
    let socks = [sock1, sock2];
    for sock in &socks {
        wait_for(Duration::from_secs(10), || {
            (live_members(sock) == 2).then_some(())
        })
        .expect("pool of 2 formed");
    }
    let t_pool = Instant::now();

    // Detection and enforcement: each daemon holds its own processes in
    // its own cgroup and sees the job's two instances.
    let want_pids = [busy.clone(), vec![light_pid]];
    for i in 0..2 {
        let cg = Path::new(CPU_MOUNT).join(&parents[i]).join(JOB);
        let j = wait_for(Duration::from_secs(10), || {
            let j = cpu_job(&socks[i])?;
            (j.pids == want_pids[i] && j.pool_instances == 2 && procs_in(&cg) == want_pids[i])
                .then_some(j)
        })
        .unwrap_or_else(|| {
            panic!(
                "server {}: job not detected/enforced with 2 instances: {:?}, cgroup {:?}",
                i + 1,
                cpu_job(&socks[i]),
                procs_in(&cg)
            )
        });
        let cpu = status(&socks[i]).cpu.expect("cpu status");
        eprintln!("server {}: {} | {j:?}", i + 1, cpu.backend);
        assert!(
            cpu.backend.contains(&format!("{CPU_MOUNT}/{}", parents[i])),
            "server {} enforces elsewhere: {}",
            i + 1,
            cpu.backend
        );
        // The pool's cores come from both servers' gossiped entries.
        assert_eq!(cpu.pool_cores, 2.0 * cpu.local_cores, "server {}", i + 1);
    }
    assert_eq!(cpu_cgroup(unmanaged_pid), originals[4].1, "unmanaged moved");

    let (_, tb) = check_split(
        &socks,
        &busy,
        light_pid,
        unmanaged_pid,
        busy_core,
        t_pool,
        "after the pool formed",
    );

    // kill -9 of server 1's daemon under traffic (server 2's host sends to
    // server 1's through both daemons' workers), then a restart: the pool
    // and the enforcement come back, and the split is measured again.
    let stop_flood = Arc::new(AtomicBool::new(false));
    let flood = udp_flood(
        &lab.servers[1].ns,
        7600,
        SocketAddr::from((lab.servers[0].host_ip, 7601)),
        5e6,
        1000,
        stop_flood.clone(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let rx_before = outer_rx(&socks[0]);
    assert!(rx_before > 0, "no traffic through server 1 before the kill");
    let mut d1 = lab.forget("headroomd-1").expect("daemon 1");
    d1.kill().expect("kill -9 headroomd 1");
    let _ = d1.wait();
    let t_kill = Instant::now();
    // The cgroup and its processes stay behind (enforcement pauses).
    assert_eq!(
        procs_in(&Path::new(CPU_MOUNT).join(&parents[0]).join(JOB)),
        busy,
        "a killed daemon's job cgroup keeps its processes"
    );
    let sock1 = start(&mut lab, 0);
    let cg1 = Path::new(CPU_MOUNT).join(&parents[0]).join(JOB);
    wait_for(Duration::from_secs(15), || {
        let j = cpu_job(&sock1)?;
        (live_members(&sock1) == 2
            && live_members(&socks[1]) == 2
            && j.pids == busy
            && j.pool_instances == 2
            && j.weight > 0
            && procs_in(&cg1) == busy
            && outer_rx(&sock1) > 0)
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "after kill -9 and restart: pool {} / {}, job {:?}, cgroup {:?}",
            live_members(&sock1),
            live_members(&socks[1]),
            cpu_job(&sock1),
            procs_in(&cg1)
        )
    });
    eprintln!(
        "kill -9 of headroomd 1 under traffic: pool, enforcement and traffic back {:.1} s after the kill",
        t_kill.elapsed().as_secs_f64()
    );
    let socks = [sock1, socks[1].clone()];
    check_split(
        &socks,
        &busy,
        light_pid,
        unmanaged_pid,
        busy_core,
        t_kill,
        "after kill -9 and restart",
    );
    stop_flood.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert!(sent > 0);

    // Server 1's daemon stops gracefully: its processes go back, its
    // cgroups go, and the survivor takes the whole pool policy.
    let pid1 = lab.child("headroomd-1").expect("daemon 1").id();
    kill(Pid::from_raw(pid1 as i32), Signal::SIGTERM).expect("SIGTERM");
    let t_stop = Instant::now();
    let exit = wait_for(Duration::from_secs(10), || {
        lab.child("headroomd-1")?.try_wait().ok()?
    })
    .expect("headroomd 1 exits on SIGTERM");
    eprintln!(
        "headroomd 1 stopped after {:.0} ms ({exit})",
        t_stop.elapsed().as_secs_f64() * 1e3
    );
    assert!(exit.success(), "headroomd 1 exit status {exit}");
    assert!(
        !Path::new(CPU_MOUNT).join(&parents[0]).exists(),
        "cgroup {} left behind",
        parents[0]
    );
    for (pid, orig) in &originals {
        if busy.contains(pid) {
            assert_eq!(&cpu_cgroup(*pid), orig, "pid {pid} not restored");
        }
    }
    assert_eq!(
        procs_in(&Path::new(CPU_MOUNT).join(&parents[1]).join(JOB)),
        vec![light_pid],
        "the survivor's enforcement was disturbed"
    );
    let after = wait_for(Duration::from_secs(8), || {
        let j = cpu_job(&socks[1])?;
        (j.pool_instances == 1).then_some(j)
    })
    .unwrap_or_else(|| {
        panic!(
            "survivor still counts 2 instances: {:?}",
            cpu_job(&socks[1])
        )
    });
    let st = status(&socks[1]);
    let cpu = st.cpu.expect("cpu status");
    eprintln!(
        "survivor after server 1 left: target {:.1}% (was {tb:.1}%), weight {}, {} instance(s), pool {} cores",
        after.target_percent, after.weight, after.pool_instances, cpu.pool_cores
    );
    assert_eq!(
        cpu.pool_cores, cpu.local_cores,
        "pool still counts server 1"
    );
    let m1 = st
        .exchange
        .and_then(|e| e.members.into_iter().find(|m| m.id == 1))
        .map(|m| m.state);
    assert_eq!(m1.as_deref(), Some("left"), "server 1 left gracefully");
    // Alone, the instance gets 50 % of the remaining 2-core pool: 1 core.
    assert!(
        (after.target_percent - 50.0).abs() <= 1.0,
        "survivor's target {:.1}% is not the whole 1-core policy",
        after.target_percent
    );
    assert!(
        after.target_percent > tb + 10.0,
        "survivor's target did not grow"
    );

    // The survivor stops too: everything is back where it was.
    let pid2 = lab.child("headroomd-2").expect("daemon 2").id();
    kill(Pid::from_raw(pid2 as i32), Signal::SIGTERM).expect("SIGTERM");
    let exit = wait_for(Duration::from_secs(10), || {
        lab.child("headroomd-2")?.try_wait().ok()?
    })
    .expect("headroomd 2 exits on SIGTERM");
    assert!(exit.success(), "headroomd 2 exit status {exit}");
    for p in &parents {
        assert!(
            !Path::new(CPU_MOUNT).join(p).exists(),
            "cgroup {p} left behind"
        );
    }
    for (pid, orig) in &originals {
        assert_eq!(&cpu_cgroup(*pid), orig, "pid {pid} not restored");
    }
    drop(burners);
}
