//! One headroomd per interface and per history file: a second daemon
//! configured with the interfaces (or the history database) of a running
//! one fails at start, naming the holder, and leaves it serving; once the
//! first is killed, the lock goes with it.

mod common;

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use common::*;
use headroom_lab::Lab;

#[test]
fn a_second_daemon_on_the_same_interfaces_is_refused() {
    let mut lab = Lab::up(1, 0).expect("lab");
    let dir = TempDir::new(&format!("{}-instance", lab.tag));
    let s = lab.servers[0].clone();
    // The lab waits on `s<id>.sock`.
    let first = dir.path(&format!("s{}.sock", s.id));
    let second = dir.path("second.sock");
    start_headroomd(&mut lab, &dir, 0, &server_config(&s, &first, ""));

    // The same interfaces, another socket: refused before it attaches.
    let err = refused(
        &lab,
        &s.ns,
        &dir.path("second.toml"),
        &server_config(&s, &second, ""),
    );
    assert!(
        err.contains("another headroomd (pid ")
            && err.contains(&format!(
                "uses interface {} in this network namespace",
                s.nic
            )),
        "{err}"
    );
    assert!(!second.exists(), "the refused daemon left its socket");
    // The first one is untouched.
    assert!(xdp_attached(&lab, &s.ns, &s.nic));
    assert_eq!(status(&first).node_id, s.id);

    // Killed, it leaves no lock behind: a new daemon starts.
    let mut d = lab.forget("headroomd-1").expect("first daemon");
    d.kill().unwrap();
    let _ = d.wait();
    start_headroomd(&mut lab, &dir, 0, &server_config(&s, &first, ""));
    assert_eq!(status(&first).node_id, s.id);
}

/// Starts headroomd with `config` in `ns` and returns its standard error
/// once it has exited 1 (it must not keep running).
fn refused(lab: &Lab, ns: &str, file: &std::path::Path, config: &str) -> String {
    std::fs::write(file, config).unwrap();
    let mut child = lab
        .command(ns, HEADROOMD)
        .args(["--config", &file.display().to_string()])
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the second headroomd");
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the second headroomd kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(code, Some(1), "{err}");
    err
}

#[test]
fn a_second_daemon_on_the_same_history_file_is_refused() {
    let mut lab = Lab::up(2, 0).expect("lab");
    let dir = TempDir::new(&format!("{}-instance-history", lab.tag));
    let db = dir.path("shared-history.db");
    let history = format!("\n[history]\npath = \"{}\"\n", db.display());
    let (s1, s2) = (lab.servers[0].clone(), lab.servers[1].clone());
    let first = dir.path(&format!("s{}.sock", s1.id));
    start_headroomd(&mut lab, &dir, 0, &server_config(&s1, &first, &history));
    // Other interfaces, the same history file: refused.
    let second = dir.path(&format!("s{}.sock", s2.id));
    let err = refused(
        &lab,
        &s2.ns,
        &dir.path("second.toml"),
        &server_config(&s2, &second, &history),
    );
    assert!(
        err.contains("another headroomd (pid ")
            && err.contains(&format!("uses the history database {}", db.display())),
        "{err}"
    );
    assert!(!second.exists(), "the refused daemon left its socket");
    assert_eq!(status(&first).node_id, s1.id);
}
