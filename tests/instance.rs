//! One headroomd per interface: a second daemon configured with the
//! interfaces of a running one fails at start, naming the holder, and
//! leaves it serving; once the first is killed, the lock goes with it.

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
    let cfg = dir.path("second.toml");
    std::fs::write(&cfg, server_config(&s, &second, "")).unwrap();
    let mut child = lab
        .command(&s.ns, HEADROOMD)
        .args(["--config", &cfg.display().to_string()])
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
