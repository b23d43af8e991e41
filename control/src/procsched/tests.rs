//! Scheduler tests against a fake `/proc` and a fake cgroup v2 tree.

use super::scan::tests::FakeProc;
use super::*;
use headroom_config::process::{CpuShare, ProcessRule};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

struct Fixture {
    fp: FakeProc,
    cg: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let fp = FakeProc::new(&format!("sched-{tag}"));
        let cg = fp.root.join("cgroupfs");
        fs::create_dir_all(cg.join("user.slice")).unwrap();
        fs::write(cg.join("cgroup.controllers"), "cpu memory\n").unwrap();
        Fixture { fp, cg }
    }

    fn add(&self, pid: u32, comm: &str, ppid: u32, start: u64, ticks: u64) {
        self.fp
            .add(pid, comm, ppid, start, ticks, &[comm, "--serve"], 1000, &[]);
        fs::write(
            self.fp.root.join(pid.to_string()).join("cgroup"),
            "0::/user.slice\n",
        )
        .unwrap();
    }

    fn scheduler(&self, jobs: &[ProcessJob]) -> ProcessScheduler {
        let backend =
            CgroupBackend::simulated(CgroupVersion::V2, &self.cg, "hr", &self.fp.root).unwrap();
        ProcessScheduler::new(jobs, Box::new(backend))
            .unwrap()
            .with_scanner(Scanner::with_root(&self.fp.root))
            .with_local_cores(2.0)
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.cg.join(rel)).unwrap_or_default()
    }
}

fn job(name: &str, comm: &str, share: Option<CpuShare>) -> ProcessJob {
    ProcessJob {
        name: name.into(),
        rules: vec![ProcessRule {
            name: Some(comm.into()),
            ..Default::default()
        }],
        include_children: true,
        cpu: share.map(|share| CpuPolicy {
            share,
            cap_percent: None,
        }),
    }
}

#[test]
fn end_to_end_on_fake_system() {
    let f = Fixture::new("e2e");
    f.add(1, "init", 0, 1, 0);
    f.add(100, "web", 1, 10, 0);
    f.add(101, "helper", 100, 11, 0);
    f.add(200, "batch", 1, 20, 0);
    f.add(300, "sshd", 1, 30, 0);
    let jobs = vec![
        job("web", "web", Some(CpuShare::ServerPercent(75.0))),
        job("batch", "batch", Some(CpuShare::ServerPercent(25.0))),
        job("mon", "sshd", None),
    ];
    let mut s = f.scheduler(&jobs);
    let t0 = Timestamp::now();
    let r = s.tick(t0, &[]).unwrap();
    assert_eq!(r.new_processes, 5);
    assert_eq!(r.moved, 3);
    assert_eq!(s.job_of(101), Some("web"), "child joins its parent's job");
    assert_eq!(s.job_of(300), Some("mon"));
    assert_eq!(s.job_of(1), None);
    assert_eq!(f.read("hr/web/cpu.weight"), "7500");
    assert_eq!(f.read("hr/batch/cpu.weight"), "2500");
    assert_eq!(f.read("hr/web/cgroup.procs"), "100\n101\n");
    assert_eq!(f.read("hr/batch/cgroup.procs"), "200\n");
    assert!(
        !f.cg.join("hr/mon").exists(),
        "jobs without policy are not enforced"
    );

    // CPU accounting: web burns 100 ticks (1 s at 100 Hz) in 1 s.
    f.add(100, "web", 1, 10, 100);
    let r = s.tick(t0 + Duration::from_secs(1), &[]).unwrap();
    assert_eq!(r.moved, 0, "already placed processes are not moved again");
    let snap = s.snapshot();
    let web = &snap.jobs[0];
    assert_eq!(web.pids, vec![100, 101]);
    let hz = sysconf(nix::unistd::SysconfVar::CLK_TCK, 100) as f64;
    assert!(
        (web.cores_used - 100.0 / hz).abs() < 1e-9,
        "{}",
        web.cores_used
    );
    assert_eq!(web.rss_bytes, 2 * 77 * s.page_size);
    assert!((snap.booked_percent - 100.0).abs() < 1e-9);
    assert_eq!(snap.unmanaged.processes, 1);
    assert!(!snap.insufficient_resources);

    // Pool entry reflects local demand.
    let e = PoolCpuState::decode(&s.local_pool_entry()).unwrap();
    assert_eq!(e.cores_available, 2.0);
    assert_eq!(e.jobs.len(), 3);
    assert!(s.decode_peer_entry(b"junk").is_none());
    assert_eq!(s.snapshot().stats.entry_decode_errors, 1);

    // Process exit is noticed and forgotten.
    f.fp.remove(200);
    let r = s.tick(t0 + Duration::from_secs(2), &[]).unwrap();
    assert_eq!(r.exited_processes, 1);
    assert_eq!(s.job_of(200), None);

    // Reload: web now matches "helper" only, batch removed.
    let jobs2 = vec![
        job("web", "helper", Some(CpuShare::ServerPercent(50.0))),
        job("other", "web", Some(CpuShare::ServerPercent(10.0))),
    ];
    s.reload(&jobs2).unwrap();
    assert!(
        !f.cg.join("hr/batch").exists(),
        "removed job's cgroup is gone"
    );
    let r = s.tick(t0 + Duration::from_secs(3), &[]).unwrap();
    assert_eq!(s.job_of(100), Some("other"));
    assert_eq!(s.job_of(101), Some("web"));
    assert_eq!(
        r.moved, 1,
        "101 stays in web (now by its own rule), 100 moves to other"
    );
    assert_eq!(f.read("hr/other/cgroup.procs"), "100\n");
    assert_eq!(f.read("hr/web/cpu.weight"), "5000");

    // Invalid reload keeps the old config.
    let bad = vec![job("a/b", "x", None)];
    assert!(matches!(s.reload(&bad), Err(ProcSchedError::Config(_))));
    assert_eq!(s.job_of(100), Some("other"));
    assert_eq!(s.snapshot().stats.reload_errors, 1);

    s.shutdown().unwrap();
    assert!(!f.cg.join("hr").exists());
    let restored = f.read("user.slice/cgroup.procs");
    for pid in ["100", "101"] {
        assert!(
            restored.lines().any(|l| l == pid),
            "{pid} restored: {restored:?}"
        );
    }
    assert!(matches!(
        s.tick(Timestamp::now(), &[]),
        Err(ProcSchedError::ShutDown)
    ));
}

#[test]
fn insufficient_resources_alarm_raised_retried_and_cleared() {
    let f = Fixture::new("insuff");
    f.add(10, "a", 1, 10, 0);
    f.add(20, "b", 1, 20, 0);
    let jobs = vec![
        job("a", "a", Some(CpuShare::ServerPercent(80.0))),
        job("b", "b", Some(CpuShare::ServerPercent(60.0))),
    ];
    let mut s = f.scheduler(&jobs);
    let t0 = Timestamp::now();
    assert!(s.tick(t0, &[]).unwrap().insufficient);
    assert!(
        s.tick(t0 + Duration::from_secs(1), &[])
            .unwrap()
            .insufficient
    );
    let snap = s.snapshot();
    assert!(snap.insufficient_resources);
    assert!(snap.insufficient_reason.unwrap().contains("140.0%"));
    assert_eq!(snap.stats.insufficient_alarms, 1, "raised once");
    assert_eq!(snap.stats.insufficient_ticks, 2, "re-checked every tick");
    // What is possible is applied: 80:60 scaled to 100 %.
    assert_eq!(f.read("hr/a/cpu.weight"), "5714");
    assert_eq!(f.read("hr/b/cpu.weight"), "4286");
    // b exits: bookings now fit, alarm clears.
    f.fp.remove(20);
    assert!(
        !s.tick(t0 + Duration::from_secs(2), &[])
            .unwrap()
            .insufficient
    );
    assert!(!s.snapshot().insufficient_resources);
    assert_eq!(f.read("hr/a/cpu.weight"), "8000");
}

#[test]
fn pool_policy_uses_peer_demand() {
    let f = Fixture::new("pool");
    f.add(10, "a", 1, 10, 0);
    let jobs = vec![job("a", "a", Some(CpuShare::PoolCores(1.0)))];
    let mut s = f.scheduler(&jobs);
    let t0 = Timestamp::now();
    f.add(10, "a", 1, 10, 0);
    s.tick(t0, &[]).unwrap();
    // Alone in the pool: the whole core here = 50 % of 2 cores.
    assert_eq!(f.read("hr/a/cpu.weight"), "5000");
    // A peer with the same (idle) demand: half a core here.
    let peer = PoolCpuState {
        cores_available: 2.0,
        jobs: vec![JobDemand {
            job: "a".into(),
            demand_cores: 0.0,
            granted_cores: 0.5,
            wants_more: false,
        }],
    };
    s.tick(t0 + Duration::from_secs(1), std::slice::from_ref(&peer))
        .unwrap();
    assert_eq!(f.read("hr/a/cpu.weight"), "2500");
    assert_eq!(s.snapshot().jobs[0].pool_instances, 2);
    // The peer fails (drops out of the view): re-split over the survivor.
    s.tick(t0 + Duration::from_secs(2), &[]).unwrap();
    assert_eq!(f.read("hr/a/cpu.weight"), "5000");
}

#[test]
fn stray_child_forked_inside_job_cgroup_is_returned() {
    let f = Fixture::new("stray");
    f.add(400, "solo", 1, 40, 0);
    let mut solo = job("solo", "solo", Some(CpuShare::ServerPercent(30.0)));
    solo.include_children = false;
    let mut s = f.scheduler(&[solo]);
    let t0 = Timestamp::now();
    assert_eq!(s.tick(t0, &[]).unwrap().moved, 1);
    // The child is forked after the move: the kernel put it in the job's
    // cgroup, but it belongs to no job.
    f.add(401, "worker", 400, 41, 0);
    fs::write(f.fp.root.join("401/cgroup"), "0::/hr/solo\n").unwrap();
    let r = s.tick(t0 + Duration::from_secs(1), &[]).unwrap();
    assert_eq!(r.released, 1);
    assert_eq!(s.job_of(401), None);
    assert_eq!(f.read("user.slice/cgroup.procs"), "401\n");
    assert_eq!(s.snapshot().stats.strays_released, 1);
    s.shutdown().unwrap();
}

#[test]
fn monitor_only_measures_and_moves_every_process_back() {
    let f = Fixture::new("monitor");
    f.add(1, "init", 0, 1, 0);
    f.add(100, "web", 1, 10, 0);
    let jobs = vec![job("web", "web", Some(CpuShare::ServerPercent(75.0)))];
    let mut s = f.scheduler(&jobs);
    let t0 = Timestamp::now();
    s.tick(t0, &[]).unwrap();
    assert_eq!(f.read("hr/web/cgroup.procs"), "100\n");
    // Enforcement off: the process goes back, its use is still measured
    // and its target still computed.
    s.set_enforce(false);
    f.add(100, "web", 1, 10, 50);
    let r = s.tick(t0 + Duration::from_secs(1), &[]).unwrap();
    assert_eq!(r.released, 1);
    assert!(f
        .read("user.slice/cgroup.procs")
        .lines()
        .any(|l| l == "100"));
    let snap = s.snapshot();
    assert_eq!(snap.jobs[0].pids, vec![100]);
    assert!(snap.jobs[0].cores_used > 0.0);
    assert!(snap.jobs[0].target_percent > 0.0);
    // On again: placed again.
    s.set_enforce(true);
    let r = s.tick(t0 + Duration::from_secs(2), &[]).unwrap();
    assert_eq!((r.moved, s.job_of(100)), (1, Some("web")));
}

#[test]
fn exits_are_counted_per_job_with_the_last_name_and_survive_reload() {
    let f = Fixture::new("exits");
    f.add(1, "init", 0, 1, 0);
    f.add(10, "web", 1, 10, 0);
    f.add(11, "web", 1, 11, 0);
    f.add(20, "other", 1, 20, 0);
    let jobs = vec![job("web", "web", None)];
    let mut s = f.scheduler(&jobs);
    let t0 = Timestamp::now();
    s.tick(t0, &[]).unwrap();
    let exits = |s: &ProcessScheduler| s.snapshot().jobs[0].exits.clone();
    assert_eq!(exits(&s), JobExits::default());
    // A job process exits; an unmanaged one does not count.
    f.fp.remove(10);
    f.fp.remove(20);
    s.tick(t0 + Duration::from_secs(1), &[]).unwrap();
    let e = exits(&s);
    assert_eq!((e.count, e.last_pid, e.last_comm.as_str()), (1, 10, "web"));
    // Pid reuse: the old process exited even though the pid is back.
    f.add(11, "web", 1, 99, 0);
    s.tick(t0 + Duration::from_secs(2), &[]).unwrap();
    assert_eq!(exits(&s).count, 2);
    // A reload keeps the count (a trigger would otherwise see it go back).
    s.reload(&jobs).unwrap();
    assert_eq!(exits(&s).count, 2);
    f.fp.remove(11);
    s.tick(t0 + Duration::from_secs(3), &[]).unwrap();
    let e = exits(&s);
    assert_eq!((e.count, e.last_pid), (3, 11));
}
