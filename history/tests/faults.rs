//! The writer against a broken store, for real: a read-only bind mount over its directory,
//! a full tmpfs, a lock held by another process's connection, corrupt files. Each time the
//! producer keeps going, the fault shows in the status with a counter, and once the condition
//! clears the writer recovers and writes what it held, losing nothing.
//!
//! Mounts happen in a private mount namespace of a thread the test starts (`unshare`), so
//! they vanish with it whatever happens; needs root, like the other system tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use headroom_history::synth::{Shape, Synth, SynthJob};
use headroom_history::writer::{HistoryOptions, StoreState};
use headroom_history::{
    spawn, EntityKind, EventRow, Fault, History, Metric, Reader, SeriesKey, Tier,
};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

const T0: i64 = 1_764_583_200;
const RATE: u64 = 625_000;
const WAIT: Duration = Duration::from_secs(60);

fn options(path: &Path) -> HistoryOptions {
    let mut o = HistoryOptions::from_config(
        1,
        &headroom_config::history::HistoryConfig {
            path: path.to_path_buf(),
            ..Default::default()
        },
    );
    o.retry_min = Duration::from_millis(10);
    o.retry_max = Duration::from_millis(50);
    o.backlog = Duration::from_secs(3600);
    o
}

fn synth(jobs: usize) -> Synth {
    let mut list = vec![SynthJob::new(
        "steady",
        Shape::Steady(RATE as f64),
        "uplink",
    )];
    for i in 1..jobs {
        list.push(SynthJob::new(
            &format!("filler{i}"),
            Shape::Daily {
                mean: 1e6,
                amplitude: 0.5,
                noise: 0.5,
            },
            "uplink",
        ));
    }
    Synth::new(4.0, list, T0 - 1)
}

/// Feeds seconds `from..to`; every record() call must return (it never blocks).
fn feed(h: &History, s: &mut Synth, from: i64, to: i64) {
    for t in from..to {
        assert!(
            h.record(s.sample(t)),
            "sample {t} dropped with a roomy queue"
        );
        if (t - from) % 60 == 59 {
            assert!(h.flush(WAIT));
        }
    }
    assert!(h.flush(WAIT));
}

/// The steady job's bytes over `[from, to)` as stored, and the seconds covered.
fn stored(path: &Path, from: i64, to: i64) -> (i64, usize) {
    let r = Reader::open(path).unwrap();
    let key = SeriesKey::new(1, EntityKind::Job, "steady", "", Metric::BytesOut);
    let id = r
        .series()
        .unwrap()
        .into_iter()
        .find(|(_, k)| *k == key)
        .unwrap()
        .0;
    let pts = r
        .points(Tier::Sec, &[id], from, to)
        .unwrap()
        .remove(&id)
        .unwrap();
    (pts.iter().map(|(_, p)| p.sum).sum(), pts.len())
}

/// Runs `f` on a thread in a private mount namespace.
fn in_mount_ns(f: impl FnOnce() + Send + 'static) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (mount namespaces)"
    );
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .expect("making / private");
        f()
    })
    .join()
    .expect("the test thread failed");
}

/// Unmounts on drop (also when an assertion fails), before the temp dir is removed.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

#[test]
fn read_only_directory_then_writable() {
    in_mount_ns(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("history.db");
        // The daemon starts while the directory is mounted read-only.
        mount(
            Some(&dir),
            &dir,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let guard = Mounted(dir.clone());
        mount(
            None::<&str>,
            &dir,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .unwrap();
        let (h, w) = spawn(options(&path)).unwrap();
        let mut s = synth(3);
        feed(&h, &mut s, T0, T0 + 90);
        // Journal entries while the store fails wait with the points.
        for i in 0..3u64 {
            assert!(h.record_journal(EventRow {
                unix_ms: (T0 as u64 + 10 * i) * 1000,
                node: 1,
                line: format!("squeezed#{i} firing"),
                entry: serde_json::json!({ "entry": "trigger", "episode": i }),
            }));
        }
        assert!(h.flush(WAIT));
        let st = h.status();
        assert_eq!((st.journal_queued, st.journal_backlog), (3, 3), "{st:?}");
        assert_eq!(st.state, StoreState::Failing, "{st:?}");
        assert_eq!(st.fault, Some(Fault::ReadOnly), "{st:?}");
        assert!(st.faults.read_only >= 1);
        assert!(
            st.last_error.as_deref().unwrap().contains("writable"),
            "{st:?}"
        );
        assert!(st.backlog_points > 0);
        assert_eq!(st.samples_queued, 90);
        // The mount goes away: the writer opens the file and writes everything it held.
        drop(guard);
        assert!(h.flush(WAIT));
        let st = h.status();
        assert_eq!(st.state, StoreState::Ok, "{st:?}");
        assert_eq!(st.recoveries, 1);
        assert_eq!(st.backlog_points, 0);
        assert_eq!(st.points_dropped_backlog_full, 0);
        assert_eq!((st.journal_backlog, st.store.journal_written), (0, 3));
        feed(&h, &mut s, T0 + 90, T0 + 150);
        w.stop();
        assert_eq!(stored(&path, T0, T0 + 150), (RATE as i64 * 150, 150));
        let rows = Reader::open(&path).unwrap().journal(0).unwrap();
        let lines: Vec<&str> = rows.iter().map(|r| r.line.as_str()).collect();
        assert_eq!(
            lines,
            [
                "squeezed#0 firing",
                "squeezed#1 firing",
                "squeezed#2 firing"
            ]
        );
        assert_eq!(rows[2].entry["episode"], 2);
    });
}

#[test]
fn full_tmpfs_then_grown() {
    in_mount_ns(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=384k"),
        )
        .unwrap();
        let _guard = Mounted(dir.clone());
        let path = dir.join("history.db");
        let (h, w) = spawn(options(&path)).unwrap();
        let mut s = synth(30);
        let mut t = T0;
        while h.status().fault != Some(Fault::DiskFull) {
            assert!(
                t < T0 + 4 * 3600,
                "the tmpfs never filled: {:?}",
                h.status()
            );
            feed(&h, &mut s, t, t + 60);
            t += 60;
        }
        // Still full: samples are accepted and held.
        feed(&h, &mut s, t, t + 60);
        t += 60;
        let st = h.status();
        assert_eq!(st.state, StoreState::Failing);
        assert!(st.faults.disk_full >= 1, "{st:?}");
        assert!(
            st.last_error.as_deref().unwrap().contains("free space"),
            "{st:?}"
        );
        // The operator grows the file system.
        mount(
            None::<&str>,
            &dir,
            None::<&str>,
            MsFlags::MS_REMOUNT,
            Some("size=64m"),
        )
        .unwrap();
        assert!(h.flush(WAIT));
        let st = h.status();
        assert_eq!(st.state, StoreState::Ok, "{st:?}");
        assert!(st.recoveries >= 1);
        assert_eq!(st.backlog_points, 0);
        feed(&h, &mut s, t, t + 60);
        t += 60;
        w.stop();
        assert_eq!(
            stored(&path, T0, t),
            (RATE as i64 * (t - T0), (t - T0) as usize)
        );
    });
}

#[test]
fn locked_by_another_process_then_released() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("history.db");
    let (h, w) = spawn(options(&path)).unwrap();
    let mut s = synth(3);
    feed(&h, &mut s, T0, T0 + 30);
    assert_eq!(h.status().state, StoreState::Ok);
    // Another writer holds the write lock.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    feed(&h, &mut s, T0 + 30, T0 + 40);
    let st = h.status();
    assert_eq!(st.fault, Some(Fault::Locked), "{st:?}");
    assert!(st.faults.locked >= 1);
    // While the writer waits on the lock, the producer is never held up: what does not fit
    // in the queue is dropped and counted.
    let before = h.status();
    let mut accepted = 0u64;
    for t in T0 + 40..T0 + 40 + 5000 {
        if h.record(s.sample(t)) {
            accepted += 1;
        }
    }
    let after = h.status();
    let dropped = after.samples_dropped_queue_full - before.samples_dropped_queue_full;
    assert_eq!(accepted + dropped, 5000);
    assert!(
        dropped > 0,
        "a 120-slot queue took 5000 samples while the writer was stuck"
    );
    other.execute_batch("ROLLBACK").unwrap();
    drop(other);
    assert!(h.flush(WAIT));
    let st = h.status();
    assert_eq!(st.state, StoreState::Ok, "{st:?}");
    assert!(st.recoveries >= 1);
    // Dropped samples lose no bytes: the next sample's delta covers the gap.
    let end = T0 + 40 + 5000;
    feed(&h, &mut s, end, end + 1);
    w.stop();
    assert_eq!(stored(&path, T0, end + 1).0, RATE as i64 * (end + 1 - T0));
}

#[test]
fn garbage_file_is_moved_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("history.db");
    std::fs::write(&path, vec![0x5au8; 64 * 1024]).unwrap();
    let (h, w) = spawn(options(&path)).unwrap();
    let mut s = synth(3);
    feed(&h, &mut s, T0, T0 + 120);
    let st = h.status();
    assert_eq!(st.state, StoreState::Ok, "{st:?}");
    assert_eq!(st.corrupt_files_moved, 1);
    assert!(st.faults.corrupt >= 1);
    let aside = PathBuf::from(st.last_corrupt_file.clone().unwrap());
    assert_eq!(std::fs::read(&aside).unwrap(), vec![0x5au8; 64 * 1024]);
    w.stop();
    assert_eq!(stored(&path, T0, T0 + 120), (RATE as i64 * 120, 120));
}

#[test]
fn damaged_pages_are_found_at_open_and_moved_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("history.db");
    let (h, w) = spawn(options(&path)).unwrap();
    let mut s = synth(10);
    feed(&h, &mut s, T0, T0 + 600);
    w.stop();
    // Damage pages in the middle of the file (as a failing disk would).
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 64 * 4096, "{} bytes", bytes.len());
    let mid = bytes.len() / 2 / 4096 * 4096;
    bytes[mid..mid + 8 * 4096]
        .iter_mut()
        .for_each(|b| *b = 0xa5);
    std::fs::write(&path, &bytes).unwrap();
    assert!(Reader::open(&path)
        .and_then(|r| {
            let ids: Vec<i64> = r.series()?.into_iter().map(|(i, _)| i).collect();
            r.points(Tier::Sec, &ids, T0, T0 + 600).map(|_| ())
        })
        .is_err());

    let (h, w) = spawn(options(&path)).unwrap();
    let mut s = synth(10);
    s.restart(T0 + 599);
    feed(&h, &mut s, T0 + 600, T0 + 700);
    let st = h.status();
    assert_eq!(st.state, StoreState::Ok, "{st:?}");
    assert_eq!(st.corrupt_files_moved, 1, "{st:?}");
    w.stop();
    let (sum, n) = stored(&path, T0, T0 + 700);
    assert_eq!(n, 100);
    assert_eq!(sum, RATE as i64 * 100);
}
