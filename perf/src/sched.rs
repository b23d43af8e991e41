//! CPU time from per-thread `se.sum_exec_runtime` (/proc/PID/task/TID/sched)
//! and memory from /proc/PID/status: /proc/stat and time(1) under-report
//! softirq work in the lab guests.

use std::fs;

/// `se.sum_exec_runtime` of one task in nanoseconds.
pub fn task_runtime_ns(pid: i32, tid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/task/{tid}/sched")).ok()?;
    parse_sum_exec(&s)
}

/// Parses the `se.sum_exec_runtime : 1234.567890` line (milliseconds).
pub fn parse_sum_exec(s: &str) -> Option<u64> {
    let line = s
        .lines()
        .find(|l| l.trim_start().starts_with("se.sum_exec_runtime"))?;
    let v = line.split(':').nth(1)?.trim();
    let (ms, frac) = v.split_once('.').unwrap_or((v, "0"));
    let ms: u64 = ms.parse().ok()?;
    let mut f = frac.to_owned();
    f.truncate(6);
    while f.len() < 6 {
        f.push('0');
    }
    let ns: u64 = f.parse().ok()?;
    Some(ms * 1_000_000 + ns)
}

/// Sum of `se.sum_exec_runtime` over all threads of `pid`.
pub fn process_runtime_ns(pid: i32) -> u64 {
    let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter_map(|tid| task_runtime_ns(pid, tid))
        .sum()
}

/// Sum over a set of kernel threads (single-threaded tasks).
pub fn threads_runtime_ns(pids: &[i32]) -> u64 {
    pids.iter().filter_map(|&p| task_runtime_ns(p, p)).sum()
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sched() {
        let s = "foo (1, #threads: 1)\n-----\nse.exec_start  :  1.0\nse.sum_exec_runtime                          :          1234.567890\n";
        assert_eq!(parse_sum_exec(s), Some(1_234_567_890));
        assert!(process_runtime_ns(std::process::id() as i32) > 0);
        assert!(rss_kib(std::process::id() as i32).is_some());
    }
}
