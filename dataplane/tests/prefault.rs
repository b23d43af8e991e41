//! The flow table is resident from the start: its pages are written when the
//! classifier is built, not one by one on the packet path as new flows land
//! in them (which also made headroomd's resident size creep up for an hour).
//! Alone in its own test binary, so no other test's allocations move the
//! process's resident size meanwhile.

use std::sync::Arc;

use headroom_dataplane::classifier::{Classifier, RuleSet};

fn resident_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("resident pages");
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    pages * page / 1024
}

#[test]
fn the_flow_table_is_resident_once_built() {
    let before = resident_kib();
    let c = Classifier::new(65_536, 1_000, Arc::new(RuleSet::empty()));
    let grown = resident_kib().saturating_sub(before);
    let table = c.table_bytes() as u64 / 1024;
    assert!(c.is_empty());
    // Unfaulted, only the control bytes (about 1 %) would be resident.
    assert!(
        grown * 10 >= table * 9,
        "resident grew {grown} KiB for a {table} KiB table"
    );
}
