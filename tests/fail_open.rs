//! Fail-open: when headroomd dies (kill -9) its XDP links close with the
//! process, the program detaches and the kernel path carries traffic again.

mod common;

use std::time::Duration;

use common::*;
use headroom_lab::Lab;

#[test]
fn kill_9_fails_open_within_a_second() {
    let mut lab = Lab::up(1, 1).expect("lab");
    let dir = TempDir::new(&format!("{}-failopen", lab.tag));
    let s = lab.servers[0].clone();
    let c = lab.clients[0].clone();
    let sock = dir.path("s1.sock");
    let cfg = server_config(&s, &sock, "");
    let sock = start_headroomd(&mut lab, &dir, 0, &cfg);
    assert!(xdp_attached(&lab, &s.ns, &s.nic) && xdp_attached(&lab, &s.ns, &s.inner));

    // 100 pings/s for 4 s with receive timestamps; headroomd is killed
    // after ~1.5 s.
    let ping = in_ns(&lab, &c.ns, "ping")
        .args(["-D", "-n", "-i", "0.01", "-c", "400", "-W", "1"])
        .arg(s.host_ip.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ping");
    // Kill only once the pings demonstrably go through the workers (a
    // loaded machine may start ping late), and with replies still to come.
    let through_workers = || -> u64 { status(&sock).workers.iter().map(|w| w.rx_packets[0]).sum() };
    let seen = wait_for(Duration::from_secs(2), || {
        (through_workers() >= 50).then_some(())
    });
    assert!(
        seen.is_some(),
        "traffic did not pass through the workers: {} frames",
        through_workers()
    );
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut d = lab.forget("headroomd-1").expect("daemon child");
    d.kill().expect("kill -9");
    d.wait().expect("reap");

    let out = ping.wait_with_output().expect("ping output");
    let text = String::from_utf8_lossy(&out.stdout);
    let stamps: Vec<f64> = text
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    assert!(stamps.len() > 100, "too few replies:\n{text}");
    let after = stamps.iter().filter(|&&t| t > killed_at).count();
    assert!(
        after > 100,
        "traffic did not resume after the kill ({after} replies after)"
    );
    let max_gap = stamps.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    eprintln!(
        "replies {} (after kill {after}), longest gap {max_gap:.3}s",
        stamps.len()
    );
    assert!(max_gap < 1.0, "traffic stopped for {max_gap:.3}s");
    assert!(
        !xdp_attached(&lab, &s.ns, &s.nic),
        "XDP program still attached to the NIC (outer)"
    );
    assert!(
        !xdp_attached(&lab, &s.ns, &s.inner),
        "XDP program still attached to inner"
    );
}
