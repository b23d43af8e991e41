//! The backends on fake trees (no root needed) and mountinfo parsing.

use super::nice::get_nice;
use super::*;

struct Tree {
    root: PathBuf,
    _dir: tempfile::TempDir,
}
impl Tree {
    fn new(tag: &str) -> Tree {
        let dir = tempfile::Builder::new()
            .prefix(&format!("headroom-fakecg-{tag}-"))
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("cg/user.slice")).unwrap();
        fs::create_dir_all(root.join("proc")).unwrap();
        fs::write(
            root.join("cg/cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(root.join("cg/cgroup.subtree_control"), "").unwrap();
        Tree { root, _dir: dir }
    }
    fn cg(&self) -> PathBuf {
        self.root.join("cg")
    }
    fn set_proc_cgroup(&self, pid: u32, path: &str) {
        let d = self.root.join("proc").join(pid.to_string());
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("cgroup"), format!("0::{path}\n")).unwrap();
    }
    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.cg().join(rel)).unwrap_or_default()
    }
}
#[test]
fn v2_backend_on_fake_tree() {
    let t = Tree::new("v2");
    let mut b = CgroupBackend::simulated(
        CgroupVersion::V2,
        t.cg(),
        "headroom-test",
        t.root.join("proc"),
    )
    .unwrap();
    assert_eq!(b.kind(), BackendKind::CgroupV2);
    let s = JobSettings {
        weight: 7500,
        cap_cores: Some(1.5),
        kernel_weight: 3072,
    };
    b.apply_job("web", &s).unwrap();
    assert_eq!(t.read("cgroup.subtree_control"), "+cpu");
    assert_eq!(t.read("headroom-test/cgroup.subtree_control"), "+cpu");
    assert_eq!(t.read("headroom-test/web/cpu.weight"), "7500");
    assert_eq!(t.read("headroom-test/web/cpu.max"), "150000 100000");
    b.apply_job(
        "web",
        &JobSettings {
            cap_cores: None,
            ..s
        },
    )
    .unwrap();
    assert_eq!(t.read("headroom-test/web/cpu.max"), "max 100000");
    b.set_parent_shares(3072).unwrap();
    assert_eq!(t.read("headroom-test/cpu.weight"), "300");

    // Process 100 lives in /user.slice; its child 101 was forked
    // inside the job cgroup and inherits the original.
    t.set_proc_cgroup(100, "/user.slice");
    t.set_proc_cgroup(101, "/headroom-test/web");
    b.place("web", 100, &[]).unwrap();
    b.place("web", 101, &[100]).unwrap();
    assert_eq!(b.placed_job(100), Some("web"));
    assert_eq!(t.read("headroom-test/web/cgroup.procs"), "100\n101\n");
    assert!(matches!(
        b.place("nope", 100, &[]),
        Err(BackendError::UnknownJob(_))
    ));
    // Gone process: clear error.
    assert!(b.place("web", 999, &[]).unwrap_err().is_gone());

    // 102 was forked inside the job cgroup but belongs to no job.
    t.set_proc_cgroup(102, "/headroom-test/web");
    assert!(b.release_inherited(102, &[100]).unwrap());
    assert_eq!(t.read("user.slice/cgroup.procs"), "102\n");
    t.set_proc_cgroup(102, "/user.slice");
    assert!(
        !b.release_inherited(102, &[100]).unwrap(),
        "already outside"
    );
    assert!(
        !b.release_inherited(103, &[55]).unwrap(),
        "no placed ancestor"
    );

    // Release one process: back to its original.
    b.release(100).unwrap();
    assert_eq!(t.read("user.slice/cgroup.procs"), "102\n100\n");
    assert_eq!(b.placed_job(100), None);

    // Removing the job restores everything listed in the job cgroup.
    b.remove_job("web").unwrap();
    assert_eq!(t.read("user.slice/cgroup.procs"), "102\n100\n100\n101\n");
    assert!(!t.cg().join("headroom-test/web").exists());

    b.apply_job("batch", &s).unwrap();
    b.shutdown().unwrap();
    assert!(!t.cg().join("headroom-test").exists());
    assert!(
        t.cg().join("user.slice").exists(),
        "foreign cgroups untouched"
    );
}

#[test]
fn refuses_existing_parent() {
    let t = Tree::new("exists");
    fs::create_dir_all(t.cg().join("someone-else")).unwrap();
    let mut b = CgroupBackend::simulated(
        CgroupVersion::V2,
        t.cg(),
        "someone-else",
        t.root.join("proc"),
    )
    .unwrap();
    let s = JobSettings {
        weight: 100,
        cap_cores: None,
        kernel_weight: 1024,
    };
    assert!(matches!(
        b.apply_job("j", &s),
        Err(BackendError::ParentExists(_))
    ));
    drop(b);
    assert!(t.cg().join("someone-else").exists());
    assert!(
        CgroupBackend::simulated(CgroupVersion::V2, t.cg(), "../x", t.root.join("proc")).is_err()
    );
}

#[test]
fn reclaims_stale_parent() {
    let t = Tree::new("stale");
    {
        let mut b =
            CgroupBackend::simulated(CgroupVersion::V2, t.cg(), "hr", t.root.join("proc")).unwrap();
        let s = JobSettings {
            weight: 100,
            cap_cores: None,
            kernel_weight: 1024,
        };
        b.apply_job("j", &s).unwrap();
        t.set_proc_cgroup(5, "/");
        b.place("j", 5, &[]).unwrap();
        // Simulate a crash: forget about the cgroups without cleanup.
        b.parent_created = false;
        b.jobs.clear();
    }
    assert!(t.cg().join("hr/j").exists());
    let b = CgroupBackend::simulated(CgroupVersion::V2, t.cg(), "hr", t.root.join("proc")).unwrap();
    assert_eq!(b.reclaim_stale_parent().unwrap(), 1);
    assert!(!t.cg().join("hr").exists());
    assert_eq!(t.read("cgroup.procs"), "5\n");
    assert_eq!(b.reclaim_stale_parent().unwrap(), 0);
}

fn settings() -> JobSettings {
    JobSettings {
        weight: 100,
        cap_cores: None,
        kernel_weight: 1024,
    }
}

/// A backend that recorded two jobs' processes and then died (no shutdown).
fn crashed_run(t: &Tree, state: &Path) {
    let mut b =
        CgroupBackend::simulated(CgroupVersion::V2, t.cg(), "hr", t.root.join("proc")).unwrap();
    assert_eq!(
        b.recover(state, &["web", "batch"]).unwrap(),
        Recovery::default()
    );
    b.apply_job("web", &settings()).unwrap();
    b.apply_job("batch", &settings()).unwrap();
    t.set_proc_cgroup(5, "/user.slice");
    t.set_proc_cgroup(6, "/");
    b.place("web", 5, &[]).unwrap();
    b.place("batch", 6, &[]).unwrap();
    b.save_state().unwrap();
    // SIGKILL: nothing of the backend's own clean-up runs.
    std::mem::forget(b);
}

#[test]
fn a_restart_adopts_what_a_killed_run_left_and_removes_what_is_no_longer_configured() {
    let t = Tree::new("adopt");
    let state = t.root.join("state/cpu-hr.json");
    crashed_run(&t, &state);
    let rec = state::CgroupState::read(&state).unwrap().unwrap();
    assert_eq!(rec.placed[&5].original, "/user.slice");
    assert_eq!(rec.owner.pid, std::process::id());

    // The new run keeps web (still configured with a CPU policy), not batch.
    let mut b =
        CgroupBackend::simulated(CgroupVersion::V2, t.cg(), "hr", t.root.join("proc")).unwrap();
    let r = b.recover(&state, &["web"]).unwrap();
    assert_eq!(
        r,
        Recovery {
            previous_owner: Some(std::process::id()),
            jobs_adopted: vec!["web".into()],
            jobs_removed: vec!["batch".into()],
            processes_adopted: 1,
            processes_restored: 1,
        }
    );
    assert_eq!(b.placed_job(5), Some("web"));
    assert_eq!(b.placed_job(6), None);
    assert!(!t.cg().join("hr/batch").exists());
    assert_eq!(
        t.read("cgroup.procs"),
        "6\n",
        "batch's process back where it came from"
    );
    // Placing the adopted process again moves nothing; settings are applied
    // again (the adopted cgroup's are not trusted).
    b.place("web", 5, &[]).unwrap();
    assert_eq!(t.read("hr/web/cgroup.procs"), "5\n");
    fs::remove_file(t.cg().join("hr/web/cpu.weight")).unwrap();
    b.apply_job("web", &settings()).unwrap();
    assert_eq!(t.read("hr/web/cpu.weight"), "100");
    // A clean shutdown restores the adopted process to its original cgroup
    // (recorded by the killed run) and removes the record.
    b.shutdown().unwrap();
    assert_eq!(t.read("user.slice/cgroup.procs"), "5\n");
    assert!(!t.cg().join("hr").exists());
    assert!(!state.exists());
}

#[test]
fn a_restart_refuses_cgroups_it_has_no_record_of_or_that_a_running_headroomd_holds() {
    let t = Tree::new("refuse");
    let state = t.root.join("state/cpu-hr.json");
    let backend =
        || CgroupBackend::simulated(CgroupVersion::V2, t.cg(), "hr", t.root.join("proc")).unwrap();
    // No record: someone else's cgroup.
    fs::create_dir_all(t.cg().join("hr/web")).unwrap();
    let e = backend().recover(&state, &["web"]).unwrap_err();
    assert!(matches!(e, BackendError::Unclaimed { .. }), "{e}");
    assert!(e.to_string().contains("does not record it"), "{e}");
    assert!(t.cg().join("hr/web").exists(), "untouched");
    fs::remove_dir_all(t.cg().join("hr")).unwrap();

    crashed_run(&t, &state);
    // A record of another boot: its cgroups went with that boot.
    let mut rec = state::CgroupState::read(&state).unwrap().unwrap();
    let good = rec.clone();
    rec.boot_id = "another-boot".into();
    rec.write(&state).unwrap();
    assert!(matches!(
        backend().recover(&state, &["web"]),
        Err(BackendError::Unclaimed { .. })
    ));
    // The recorded owner still runs (same pid, same start time).
    good.write(&state).unwrap();
    let d = t.root.join("proc").join(good.owner.pid.to_string());
    fs::create_dir_all(&d).unwrap();
    let stat = |start: u64| {
        format!(
            "{} (headroomd) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0",
            good.owner.pid
        )
    };
    fs::write(d.join("stat"), stat(good.owner.start_time)).unwrap();
    let e = backend().recover(&state, &["web"]).unwrap_err();
    assert!(
        matches!(e, BackendError::ParentInUse { pid, .. } if pid == good.owner.pid),
        "{e}"
    );
    // The pid now belongs to a later process: the owner is gone.
    fs::write(d.join("stat"), stat(good.owner.start_time + 1)).unwrap();
    let mut b = backend();
    assert_eq!(b.recover(&state, &["web"]).unwrap().jobs_adopted, ["web"]);
    b.shutdown().unwrap();
}

#[test]
fn the_record_follows_every_change_and_a_clean_shutdown_removes_it() {
    let t = Tree::new("record");
    let state = t.root.join("cpu-hr.json");
    let mut b =
        CgroupBackend::simulated(CgroupVersion::V2, t.cg(), "hr", t.root.join("proc")).unwrap();
    b.recover(&state, &["web"]).unwrap();
    b.save_state().unwrap();
    assert!(!state.exists(), "nothing created, nothing recorded");
    b.apply_job("web", &settings()).unwrap();
    t.set_proc_cgroup(7, "/user.slice");
    b.place("web", 7, &[]).unwrap();
    b.save_state().unwrap();
    let rec = state::CgroupState::read(&state).unwrap().unwrap();
    assert_eq!(rec.jobs.keys().collect::<Vec<_>>(), ["web"]);
    assert_eq!(rec.placed[&7].job, "web");
    b.release(7).unwrap();
    b.save_state().unwrap();
    assert!(state::CgroupState::read(&state)
        .unwrap()
        .unwrap()
        .placed
        .is_empty());
    b.shutdown().unwrap();
    assert!(!state.exists());
}

#[test]
fn v1_files_on_fake_tree() {
    let t = Tree::new("v1");
    let mut b =
        CgroupBackend::simulated(CgroupVersion::V1, t.cg(), "hr", t.root.join("proc")).unwrap();
    b.apply_job(
        "a",
        &JobSettings {
            weight: 2500,
            cap_cores: Some(0.5),
            kernel_weight: 1,
        },
    )
    .unwrap();
    assert_eq!(t.read("hr/a/cpu.shares"), "25600");
    assert_eq!(t.read("hr/a/cpu.cfs_quota_us"), "50000");
    assert_eq!(t.read("hr/a/cpu.cfs_period_us"), "100000");
    assert_eq!(
        t.read("cgroup.subtree_control"),
        "",
        "v1 does not touch subtree_control"
    );
    let d = t.root.join("proc/7");
    fs::create_dir_all(&d).unwrap();
    fs::write(
        d.join("cgroup"),
        "3:cpuset:/\n2:cpu,cpuacct:/user.slice\n0::/\n",
    )
    .unwrap();
    b.place("a", 7, &[]).unwrap();
    drop(b); // Drop restores and removes.
    assert_eq!(t.read("user.slice/cgroup.procs"), "7\n");
    assert!(!t.cg().join("hr").exists());
}

#[test]
fn parse_helpers() {
    let txt = "12:cpu,cpuacct:/a/b\n1:name=systemd:/\n0::/user.slice\n";
    assert_eq!(
        parse_proc_cgroup(txt, CgroupVersion::V1).as_deref(),
        Some("/a/b")
    );
    assert_eq!(
        parse_proc_cgroup(txt, CgroupVersion::V2).as_deref(),
        Some("/user.slice")
    );
    assert_eq!(parse_proc_cgroup("garbage", CgroupVersion::V1), None);
    let mi = "30 1 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
              31 1 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
              32 1 0:28 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n\
              33 1 0:29 / /mnt/a\\040b rw - cgroup cgroup rw,cpu,cpuacct\n";
    let (v2, v1) = cgroup_mounts(mi);
    assert_eq!(v2, vec![PathBuf::from("/sys/fs/cgroup/unified")]);
    assert_eq!(
        v1,
        vec![
            PathBuf::from("/sys/fs/cgroup/cpu"),
            PathBuf::from("/mnt/a b")
        ]
    );
}

#[test]
fn nice_backend_on_own_child() {
    // A short-lived child of the test process: raising its nice value
    // needs no privilege.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut b = NiceBackend::new();
    let orig = get_nice(pid).unwrap();
    b.apply_job(
        "low",
        &JobSettings {
            weight: 100,
            cap_cores: None,
            kernel_weight: 110,
        },
    )
    .unwrap();
    b.place("low", pid, &[]).unwrap();
    assert_eq!(get_nice(pid).unwrap(), 10.max(orig));
    let restored = b.shutdown();
    if nix::unistd::geteuid().is_root() {
        restored.unwrap();
        assert_eq!(get_nice(pid).unwrap(), orig);
    } else {
        // Lowering a nice value needs privilege: a clear error, no panic.
        assert!(restored.is_err() || orig >= 10);
    }
    let _ = child.kill();
    let _ = child.wait();
}
