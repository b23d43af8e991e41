//! Incremental `/proc` scanner.
//!
//! Each scan lists the numeric entries of `/proc` and reads
//! `/proc/PID/stat` for each. A pid is identified by `(pid, start time)`
//! (field 22 of `stat`), so a reused pid is seen as a new process. Only new
//! processes are read in full (`cmdline`, `status` for uid/gid, `environ`);
//! for known ones the `stat` line gives CPU time, RSS, parent and the
//! current `comm`. A known process whose `comm` changed (it called `exec`)
//! is read in full again and reported as changed if anything differs; so is
//! every process once more on the scan after it first appeared, and on every
//! scan while it is younger than [`YOUNG_SECS`]: a child first seen between
//! `fork` and `exec` still shows its parent's command line, and on a loaded
//! machine that window can span scans. An `exec` later in life that keeps
//! the same `comm` is not noticed. Processes that exit
//! while being read are skipped and counted.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Processes younger than this (seconds) are re-read in full on every scan.
pub const YOUNG_SECS: u64 = 5;

/// Kernel thread flag in `/proc/PID/stat` field 9 (`PF_KTHREAD`).
const PF_KTHREAD: u64 = 0x0020_0000;

/// What the scanner knows about one process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcInfo {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks after boot (stat field 22).
    pub start_time: u64,
    /// Process name (`comm`).
    pub comm: String,
    /// Arguments joined with single spaces.
    pub cmdline: String,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Session id.
    pub sid: u32,
    /// Parent pid.
    pub ppid: u32,
    /// Environment at exec time (empty if unreadable).
    pub env: Vec<(String, String)>,
    /// Kernel thread: never matched, never moved.
    pub kernel_thread: bool,
    /// User + system CPU time, clock ticks.
    pub cpu_ticks: u64,
    /// CPU ticks at the previous scan (equal to `cpu_ticks` on the first).
    pub prev_cpu_ticks: u64,
    /// Resident set size, pages.
    pub rss_pages: u64,
    /// Read in full again on the scan after the first one, to catch a
    /// process first seen between `fork` and `exec` (when it still shows its
    /// parent's command line).
    pub verified: bool,
}

impl ProcInfo {
    /// CPU ticks consumed since the previous scan.
    pub fn delta_ticks(&self) -> u64 {
        self.cpu_ticks.saturating_sub(self.prev_cpu_ticks)
    }

    /// Value of an environment variable.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Fields parsed from one `stat` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatLine {
    /// `comm` (between the outer parentheses).
    pub comm: String,
    /// Parent pid (field 4).
    pub ppid: u32,
    /// Session id (field 6).
    pub sid: u32,
    /// Kernel flags (field 9).
    pub flags: u64,
    /// utime + stime (fields 14 + 15).
    pub cpu_ticks: u64,
    /// Start time (field 22).
    pub start_time: u64,
    /// RSS pages (field 24).
    pub rss_pages: u64,
}

/// Parses `/proc/PID/stat`. The `comm` may contain spaces and
/// parentheses, so it is delimited by the first `(` and the last `)`.
pub fn parse_stat(s: &str) -> Option<StatLine> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = s[open + 1..close].to_string();
    let rest: Vec<&str> = s[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state).
    let field = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    Some(StatLine {
        comm,
        ppid: u32::try_from(field(4)?).ok()?,
        sid: u32::try_from(field(6)?).ok()?,
        flags: field(9)?,
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        start_time: field(22)?,
        rss_pages: rest.get(24 - 3)?.parse::<i64>().ok()?.max(0) as u64,
    })
}

/// Parses the real uid and gid from `/proc/PID/status`.
pub fn parse_status_ids(s: &str) -> Option<(u32, u32)> {
    let mut uid = None;
    let mut gid = None;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("Uid:") {
            uid = v.split_whitespace().next()?.parse().ok();
        } else if let Some(v) = line.strip_prefix("Gid:") {
            gid = v.split_whitespace().next()?.parse().ok();
        }
    }
    Some((uid?, gid?))
}

/// Joins NUL-separated `cmdline` arguments with spaces.
pub fn parse_cmdline(raw: &[u8]) -> String {
    raw.split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits NUL-separated `KEY=VALUE` entries.
pub fn parse_environ(raw: &[u8]) -> Vec<(String, String)> {
    raw.split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| {
            let s = String::from_utf8_lossy(a);
            match s.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (s.into_owned(), String::new()),
            }
        })
        .collect()
}

/// Scanner counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Completed scans.
    pub scans: u64,
    /// Processes seen for the first time (including reused pids).
    pub new_processes: u64,
    /// Known processes that disappeared.
    pub exited_processes: u64,
    /// Known pids found with a different start time (pid reuse).
    pub pid_reuse: u64,
    /// Processes that vanished while being read and were skipped.
    pub races: u64,
    /// `stat`/`status` files that could not be parsed.
    pub parse_errors: u64,
    /// Known processes found to have called `exec` (re-read and
    /// re-classified).
    pub execs: u64,
    /// `environ` files that could not be read (treated as empty).
    pub environ_unreadable: u64,
}

/// Result of one scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanDelta {
    /// Pids of processes that are new (or reused) in this scan.
    pub new: Vec<u32>,
    /// Known processes that exec'd (their `comm` changed) and were re-read.
    pub changed: Vec<u32>,
    /// Pids of processes that disappeared (or whose pid was reused).
    pub exited: Vec<u32>,
    /// Their names (`comm`), in the order of `exited`: the trigger event
    /// names the process, and it is gone from `/proc` by now.
    pub exited_comm: Vec<String>,
}

/// Incremental `/proc` scanner.
#[derive(Debug)]
pub struct Scanner {
    root: PathBuf,
    procs: HashMap<u32, ProcInfo>,
    stats: ScanStats,
    /// Only processes in the network namespace with this inode.
    netns: Option<u64>,
}

enum ReadErr {
    Gone,
    Parse,
}

fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH))
        || e.kind() == io::ErrorKind::NotFound
}

impl Scanner {
    /// Scanner over `/proc`.
    pub fn new() -> Scanner {
        Scanner::with_root("/proc")
    }

    /// Scanner over another directory laid out like `/proc` (tests).
    pub fn with_root(root: impl Into<PathBuf>) -> Scanner {
        Scanner {
            root: root.into(),
            procs: HashMap::new(),
            stats: ScanStats::default(),
            netns: None,
        }
    }

    /// Sees only processes in the network namespace whose inode is `ino`
    /// (`stat -L -c %i /proc/self/ns/net`).
    pub fn only_netns(mut self, ino: u64) -> Scanner {
        self.netns = Some(ino);
        self
    }

    /// Whether process `dir` is in scope (and still there).
    fn in_scope(&self, dir: &Path) -> Result<bool, io::Error> {
        use std::os::unix::fs::MetadataExt;
        match self.netns {
            None => Ok(true),
            Some(want) => Ok(fs::metadata(dir.join("ns/net"))?.ino() == want),
        }
    }

    /// Start time (clock ticks since boot) after which a process counts as
    /// young, from `uptime` under the proc root; None if unreadable.
    fn young_threshold(&self) -> Option<u64> {
        let up = fs::read_to_string(self.root.join("uptime")).ok()?;
        let secs: f64 = up.split_whitespace().next()?.parse().ok()?;
        let hz = super::sysconf(nix::unistd::SysconfVar::CLK_TCK, 100) as f64;
        Some(((secs - YOUNG_SECS as f64).max(0.0) * hz) as u64)
    }

    /// The proc root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Known processes.
    pub fn processes(&self) -> &HashMap<u32, ProcInfo> {
        &self.procs
    }

    /// One process.
    pub fn get(&self, pid: u32) -> Option<&ProcInfo> {
        self.procs.get(&pid)
    }

    /// Counters.
    pub fn stats(&self) -> &ScanStats {
        &self.stats
    }

    fn read_full(&mut self, pid: u32, st: StatLine) -> Result<ProcInfo, ReadErr> {
        let dir = self.root.join(pid.to_string());
        let map = |e: io::Error| {
            if is_gone(&e) {
                ReadErr::Gone
            } else {
                ReadErr::Parse
            }
        };
        let cmdline = parse_cmdline(&fs::read(dir.join("cmdline")).map_err(map)?);
        let status = fs::read_to_string(dir.join("status")).map_err(map)?;
        let (uid, gid) = parse_status_ids(&status).ok_or(ReadErr::Parse)?;
        let env = match fs::read(dir.join("environ")) {
            Ok(raw) => parse_environ(&raw),
            Err(e) if is_gone(&e) => return Err(ReadErr::Gone),
            Err(_) => {
                self.stats.environ_unreadable += 1;
                Vec::new()
            }
        };
        Ok(ProcInfo {
            pid,
            start_time: st.start_time,
            comm: st.comm,
            cmdline,
            uid,
            gid,
            sid: st.sid,
            ppid: st.ppid,
            env,
            kernel_thread: st.flags & PF_KTHREAD != 0,
            cpu_ticks: st.cpu_ticks,
            prev_cpu_ticks: st.cpu_ticks,
            rss_pages: st.rss_pages,
            verified: false,
        })
    }

    /// Scans once. Fails only if the proc root itself cannot be listed.
    pub fn scan(&mut self) -> io::Result<ScanDelta> {
        let mut delta = ScanDelta::default();
        let mut seen: Vec<u32> = Vec::with_capacity(self.procs.len() + 16);
        // Processes started after this (in clock ticks since boot) are young.
        let young_after = self.young_threshold();
        for ent in fs::read_dir(&self.root)? {
            let Ok(ent) = ent else { continue };
            let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            match self.in_scope(&ent.path()) {
                Ok(true) => {}
                // Out of scope, or gone: not seen (an exit if it was known).
                Ok(false) => continue,
                Err(e) if is_gone(&e) => {
                    self.stats.races += 1;
                    continue;
                }
                Err(_) => {
                    self.stats.parse_errors += 1;
                    continue;
                }
            }
            let stat = match fs::read_to_string(ent.path().join("stat")) {
                Ok(s) => s,
                Err(e) if is_gone(&e) => {
                    self.stats.races += 1;
                    continue;
                }
                Err(_) => {
                    self.stats.parse_errors += 1;
                    continue;
                }
            };
            let Some(st) = parse_stat(&stat) else {
                self.stats.parse_errors += 1;
                continue;
            };
            if let Some(known) = self.procs.get_mut(&pid) {
                if known.start_time == st.start_time {
                    known.prev_cpu_ticks = known.cpu_ticks;
                    known.cpu_ticks = st.cpu_ticks;
                    known.rss_pages = st.rss_pages;
                    known.ppid = st.ppid;
                    known.sid = st.sid;
                    let young = young_after.is_some_and(|t| st.start_time > t);
                    if known.comm != st.comm || !known.verified || young {
                        let prev = known.cpu_ticks;
                        let prev_prev = known.prev_cpu_ticks;
                        let old = known.clone();
                        match self.read_full(pid, st) {
                            Ok(mut info) => {
                                info.prev_cpu_ticks = prev_prev;
                                info.cpu_ticks = prev;
                                info.verified = true;
                                let same = info.comm == old.comm
                                    && info.cmdline == old.cmdline
                                    && info.uid == old.uid
                                    && info.gid == old.gid
                                    && info.env == old.env;
                                self.procs.insert(pid, info);
                                if !same {
                                    self.stats.execs += 1;
                                    delta.changed.push(pid);
                                }
                            }
                            Err(ReadErr::Gone) => {
                                self.stats.races += 1;
                                continue;
                            }
                            Err(ReadErr::Parse) => {
                                self.stats.parse_errors += 1;
                                continue;
                            }
                        }
                    }
                    seen.push(pid);
                    continue;
                }
                // Same pid, different process.
                self.stats.pid_reuse += 1;
                self.stats.exited_processes += 1;
                let old = self.procs.remove(&pid);
                delta.exited.push(pid);
                delta
                    .exited_comm
                    .push(old.map(|p| p.comm).unwrap_or_default());
            }
            match self.read_full(pid, st) {
                Ok(info) => {
                    self.procs.insert(pid, info);
                    self.stats.new_processes += 1;
                    delta.new.push(pid);
                    seen.push(pid);
                }
                Err(ReadErr::Gone) => self.stats.races += 1,
                Err(ReadErr::Parse) => self.stats.parse_errors += 1,
            }
        }
        let seen: std::collections::HashSet<u32> = seen.into_iter().collect();
        let gone: Vec<u32> = self
            .procs
            .keys()
            .copied()
            .filter(|p| !seen.contains(p))
            .collect();
        for pid in gone {
            let old = self.procs.remove(&pid);
            self.stats.exited_processes += 1;
            delta.exited.push(pid);
            delta
                .exited_comm
                .push(old.map(|p| p.comm).unwrap_or_default());
        }
        self.stats.scans += 1;
        Ok(delta)
    }
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fake `/proc` in a temp dir, removed on drop.
    pub(crate) struct FakeProc {
        pub root: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl FakeProc {
        pub fn new(tag: &str) -> FakeProc {
            let dir = tempfile::Builder::new()
                .prefix(&format!("headroom-fakeproc-{tag}-"))
                .tempdir()
                .unwrap();
            FakeProc {
                root: dir.path().to_path_buf(),
                _dir: dir,
            }
        }

        #[allow(clippy::too_many_arguments)]
        pub fn add(
            &self,
            pid: u32,
            comm: &str,
            ppid: u32,
            start: u64,
            ticks: u64,
            argv: &[&str],
            uid: u32,
            env: &[&str],
        ) {
            let d = self.root.join(pid.to_string());
            fs::create_dir_all(&d).unwrap();
            let stat = format!(
                "{pid} ({comm}) S {ppid} {pid} {sid} 0 -1 4194304 0 0 0 0 {ticks} 0 0 0 20 0 1 0 {start} 1000 77 0",
                sid = pid
            );
            fs::write(d.join("stat"), stat).unwrap();
            fs::write(d.join("cmdline"), argv.join("\0")).unwrap();
            fs::write(
                d.join("status"),
                format!("Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t0\t0\t0\n"),
            )
            .unwrap();
            fs::write(d.join("environ"), env.join("\0")).unwrap();
        }

        pub fn remove(&self, pid: u32) {
            fs::remove_dir_all(self.root.join(pid.to_string())).unwrap();
        }
    }

    #[test]
    fn parse_stat_tricky_comm() {
        let s = "42 (a) b (c)) R 1 42 7 0 -1 2097152 0 0 0 0 5 6 0 0 20 0 1 0 999 100 33 18446744073709551615";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.comm, "a) b (c)");
        assert_eq!(st.ppid, 1);
        assert_eq!(st.sid, 7);
        assert_eq!(st.flags & PF_KTHREAD, PF_KTHREAD);
        assert_eq!(st.cpu_ticks, 11);
        assert_eq!(st.start_time, 999);
        assert_eq!(st.rss_pages, 33);
        assert!(parse_stat("").is_none());
        assert!(parse_stat("1 (x) R 1").is_none());
        assert!(parse_stat("1 )x( R").is_none());
    }

    #[test]
    fn parse_helpers() {
        assert_eq!(
            parse_cmdline(b"sh\0-c\0while :; do :; done\0"),
            "sh -c while :; do :; done"
        );
        assert_eq!(
            parse_environ(b"A=1\0B=x=y\0C\0"),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x=y".into()),
                ("C".into(), String::new())
            ]
        );
        assert_eq!(
            parse_status_ids("Uid:\t5\t6\t7\t8\nGid:\t9\t1\t1\t1\n"),
            Some((5, 9))
        );
        assert_eq!(parse_status_ids("Uid:\t5\n"), None);
    }

    #[test]
    fn incremental_scan_reuse_and_exit() {
        let fp = FakeProc::new("scan");
        fp.add(10, "init", 0, 1, 0, &["init"], 0, &[]);
        fp.add(20, "web", 10, 100, 50, &["web", "-p"], 33, &["ROLE=front"]);
        fs::create_dir_all(fp.root.join("self")).unwrap();
        let mut s = Scanner::with_root(&fp.root);
        let d = s.scan().unwrap();
        assert_eq!(d.new.len(), 2);
        let p = s.get(20).unwrap();
        assert_eq!(p.cmdline, "web -p");
        assert_eq!(p.uid, 33);
        assert_eq!(p.env_var("ROLE"), Some("front"));
        assert_eq!(p.delta_ticks(), 0);
        // Second scan: verified once more (it exec'd since: same comm, new
        // command line).
        fp.add(
            20,
            "web",
            10,
            100,
            60,
            &["web", "--exec'd"],
            33,
            &["ROLE=front"],
        );
        let d = s.scan().unwrap();
        assert_eq!(d.changed, vec![20]);
        assert_eq!(s.get(20).unwrap().cmdline, "web --exec'd");
        assert_eq!(s.get(20).unwrap().delta_ticks(), 10);
        // CPU advances; verified process only updated.
        fp.add(20, "web", 10, 100, 90, &["CHANGED"], 33, &[]);
        let d = s.scan().unwrap();
        assert!(d.new.is_empty() && d.exited.is_empty() && d.changed.is_empty());
        assert_eq!(s.get(20).unwrap().delta_ticks(), 30);
        assert_eq!(
            s.get(20).unwrap().cmdline,
            "web --exec'd",
            "known pids are not re-read"
        );
        // exec: comm changes -> re-read.
        fp.add(20, "worker", 10, 100, 100, &["worker"], 33, &[]);
        let d = s.scan().unwrap();
        assert_eq!(d.changed, vec![20]);
        assert_eq!(s.get(20).unwrap().cmdline, "worker");
        assert_eq!(s.get(20).unwrap().delta_ticks(), 10);
        // pid reuse: new start time.
        fp.add(20, "other", 10, 500, 1, &["other"], 0, &[]);
        let d = s.scan().unwrap();
        assert_eq!(d.exited, vec![20]);
        assert_eq!(d.new, vec![20]);
        assert_eq!(s.stats().pid_reuse, 1);
        // exit
        fp.remove(20);
        let d = s.scan().unwrap();
        assert_eq!(d.exited, vec![20]);
        assert!(s.get(20).is_none());
        // broken stat: parse error, no panic
        fs::create_dir_all(fp.root.join("30")).unwrap();
        fs::write(fp.root.join("30/stat"), "garbage").unwrap();
        // vanished mid-read: stat present, cmdline missing
        fs::create_dir_all(fp.root.join("31")).unwrap();
        fs::write(
            fp.root.join("31/stat"),
            "31 (x) S 1 31 31 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 1 1 0",
        )
        .unwrap();
        s.scan().unwrap();
        assert_eq!(s.stats().parse_errors, 1);
        assert_eq!(s.stats().races, 1);
        assert!(s.get(30).is_none() && s.get(31).is_none());
    }

    #[test]
    fn real_proc_sees_self() {
        let mut s = Scanner::new();
        s.scan().unwrap();
        let me = s.get(std::process::id()).expect("own process");
        assert!(!me.kernel_thread);
        assert!(!me.cmdline.is_empty());
        // kthreadd (pid 2) is a kernel thread when visible.
        if let Some(k) = s.get(2) {
            assert!(k.kernel_thread);
        }
    }
}
