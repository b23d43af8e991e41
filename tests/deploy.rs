//! Deployment on a real server: `headroomctl attach` moves a server's host
//! stack (address, secondary address, IPv6 address, default route, a route
//! in another table, a static neighbour) behind headroomd, traffic flows
//! through the workers while attached, and `headroomctl detach` puts back
//! exactly what was there; then headroomd does the same by itself
//! (`[deploy] attach_on_start`) and reverts on a clean stop.

mod common;

use std::time::Duration;

use common::*;
use headroom_lab::{Lab, Server, ServerConfig};

const HEADROOMCTL: &str = env!("CARGO_BIN_EXE_headroomctl");

/// What the host's network looks like, read with `ip -j` (not with the code
/// under test): the NIC's MAC, MTU and master, its addresses with their
/// flags, every route of every table, the static neighbours, the NIC's
/// offloads, and which headroom interfaces exist.
fn snapshot(lab: &Lab, s: &Server) -> String {
    // A link-local address is tentative for a second after IPv6 comes back
    // on an interface (duplicate detection): compare settled states.
    wait_for(Duration::from_secs(5), || {
        let out = lab.ip(&s.ns, &["-6", "addr", "show", "tentative"]).ok()?;
        out.stdout.is_empty().then_some(())
    })
    .expect("IPv6 duplicate detection finished");
    let json = |args: &[&str]| -> serde_json::Value {
        let out = lab.ip(&s.ns, args).expect("ip -j");
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let link = json(&["-j", "link", "show", "dev", &s.nic]);
    let l = &link[0];
    let mut addrs: Vec<String> = json(&["-j", "addr", "show", "dev", &s.nic])[0]["addr_info"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            let mut a = a.clone();
            // Lifetimes count down; the rest must be identical.
            a.as_object_mut().map(|o| {
                o.remove("valid_life_time");
                o.remove("preferred_life_time")
            });
            a.to_string()
        })
        .collect();
    addrs.sort();
    let mut routes: Vec<String> = ["-4", "-6"]
        .iter()
        .flat_map(|f| {
            json(&[f, "-j", "route", "show", "table", "all"])
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|r| r.to_string())
        .collect();
    routes.sort();
    let neigh = json(&["-j", "neigh", "show", "nud", "permanent"]);
    let offloads = lab
        .exec(&s.ns, &["ethtool", "-k", &s.nic])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let ours: Vec<String> = [&s.inner, &s.host_if, &s.bridge]
        .iter()
        .filter(|d| lab.ip(&s.ns, &["link", "show", "dev", d]).is_ok())
        .map(|d| d.to_string())
        .collect();
    format!(
        "mac {} mtu {} master {}\naddrs {addrs:#?}\nroutes {routes:#?}\nneigh {neigh}\nours {ours:?}\n{offloads}",
        l["address"], l["mtu"], l["master"]
    )
}

/// Equal, or the differing lines.
fn assert_same(now: &str, want: &str, what: &str) {
    if now != want {
        let a: Vec<&str> = want.lines().collect();
        let b: Vec<&str> = now.lines().collect();
        let gone: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
        let new: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).collect();
        panic!("{what}:\n  was: {gone:#?}\n  now: {new:#?}");
    }
}

fn headroomctl(lab: &Lab, s: &Server, args: &[&str]) -> (bool, String) {
    let out = lab
        .command(&s.ns, HEADROOMCTL)
        .args(args)
        .output()
        .expect("run headroomctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Pings the server from the client 100 times at 100/s: replies received.
fn ping(lab: &Lab, from: &str, to: std::net::Ipv4Addr) -> usize {
    let out = lab
        .command(from, "ping")
        .args(["-n", "-q", "-i", "0.01", "-c", "100", "-W", "1"])
        .arg(to.to_string())
        .output()
        .expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(", ")
        .find_map(|p| p.strip_suffix(" received")?.parse().ok())
        .unwrap_or(0)
}

/// A lab server that is a plain server: more than one address, IPv6, a
/// default route, a policy table, a static neighbour.
fn real_server() -> (Lab, Server) {
    let lab = Lab::builder()
        .servers(1)
        .clients(1)
        .attached(false)
        .up()
        .expect("lab");
    let s = lab.servers[0].clone();
    let c = &lab.clients[0];
    for k in ["all", "default", s.nic.as_str()] {
        headroom_lab::sysctl(&s.ns, &format!("ipv6/conf/{k}/disable_ipv6"), "0").unwrap();
    }
    for args in [
        vec!["addr", "add", "10.200.0.101/16", "dev", &s.nic],
        vec!["addr", "add", "fd00:200::1/64", "dev", &s.nic, "nodad"],
        vec!["route", "add", "default", "via", &c.ip.to_string()],
        vec![
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            &c.ip.to_string(),
            "src",
            &s.host_ip.to_string(),
            "table",
            "100",
        ],
        vec![
            "-6",
            "route",
            "add",
            "2001:db8::/32",
            "via",
            "fd00:200::2",
            "metric",
            "7",
        ],
        vec![
            "neigh",
            "replace",
            "10.200.9.9",
            "lladdr",
            "02:00:00:00:09:09",
            "dev",
            &s.nic,
            "nud",
            "permanent",
        ],
    ] {
        lab.ip(&s.ns, &args).unwrap_or_else(|e| panic!("{e}"));
    }
    (lab, s)
}

fn through_workers(sock: &std::path::Path) -> (u64, u64) {
    let st = status(sock);
    let rx: u64 = st
        .workers
        .iter()
        .map(|w| w.rx_packets[0] + w.rx_packets[1])
        .sum();
    let redirect = st
        .interfaces
        .iter()
        .flat_map(|i| i.verdicts.iter())
        .filter(|v| v.0 == "redirect")
        .map(|v| v.1)
        .sum();
    (rx, redirect)
}

#[test]
fn attach_and_detach_keep_the_host_intact_and_traffic_goes_through_the_workers() {
    let (mut lab, s) = real_server();
    let client = lab.clients[0].clone();
    let dir = TempDir::new(&format!("{}-deploy", lab.tag));
    let sock = dir.path("s1.sock");
    let cfg_text = ServerConfig::new(&s, &sock).render();
    let cfg = dir.path("s1.toml");
    std::fs::write(&cfg, &cfg_text).unwrap();
    let cfg_arg = cfg.display().to_string();
    let before = snapshot(&lab, &s);
    assert_eq!(
        ping(&lab, &client.ns, s.host_ip),
        100,
        "server unreachable before attach"
    );

    // A dry run prints the plan and changes nothing.
    let (ok, plan) = headroomctl(&lab, &s, &["attach", "--dry-run", "-c", &cfg_arg]);
    assert!(ok, "{plan}");
    assert!(
        plan.contains("join bridge hr-bridge") && plan.contains("add address 10.200.0.1/16"),
        "{plan}"
    );
    assert_same(&snapshot(&lab, &s), &before, "dry run changed something");

    let (ok, out) = headroomctl(&lab, &s, &["attach", "-c", &cfg_arg]);
    assert!(ok, "attach failed:\n{out}");
    assert!(!out.contains("FAIL"), "{out}");
    let (ok, again) = headroomctl(&lab, &s, &["attach", "-c", &cfg_arg]);
    assert!(
        ok && again.contains("nothing to do"),
        "second attach:\n{again}"
    );
    // The fail-open bridge carries the host before headroomd runs.
    assert_eq!(
        ping(&lab, &client.ns, s.host_ip),
        100,
        "no traffic over the bridge"
    );
    // Only the host end answers ARP for the host's address: the bridge,
    // which sees the broadcast too, keeps quiet.
    let host_mac = headroom_lab::mac_of(&s.ns, &s.host_if).unwrap();
    let replies =
        headroom_lab::arp_probe(&client.ns, client.ip, s.host_ip, Duration::from_millis(300))
            .unwrap();
    assert_eq!(replies, [host_mac], "ARP replies for the host's address");

    let sock = start_headroomd(&mut lab, &dir, 0, &cfg_text);
    let (rx0, redirect0) = through_workers(&sock);
    assert_eq!(
        ping(&lab, &client.ns, s.host_ip),
        100,
        "no traffic through headroomd"
    );
    assert_eq!(
        ping(&lab, &client.ns, "10.200.0.101".parse().unwrap()),
        100,
        "secondary address"
    );
    // 200 pings each way (100 per address): 400 frames received by the
    // workers (requests on the NIC, replies on inner), each redirected by
    // the XDP program of its interface.
    let (rx, redirect) = wait_for(Duration::from_secs(3), || {
        let (rx, redirect) = through_workers(&sock);
        (rx >= rx0 + 400 && redirect >= redirect0 + 400).then_some((rx, redirect))
    })
    .unwrap_or_else(|| {
        panic!(
            "pings did not pass through the workers: {:?}",
            through_workers(&sock)
        )
    });
    eprintln!(
        "through the workers: {} frames, {} redirects",
        rx - rx0,
        redirect - redirect0
    );

    // Detach refuses while headroomd holds the interfaces.
    let (ok, out) = headroomctl(&lab, &s, &["detach", "-c", &cfg_arg]);
    assert!(!ok && out.contains("headroomd is running"), "{out}");
    stop_headroomd(&mut lab);

    let (ok, out) = headroomctl(&lab, &s, &["detach", "-c", &cfg_arg]);
    assert!(ok, "detach failed:\n{out}");
    assert_same(
        &snapshot(&lab, &s),
        &before,
        "detach did not restore the host",
    );
    let (ok, again) = headroomctl(&lab, &s, &["detach", "-c", &cfg_arg]);
    assert!(
        ok && again.contains("nothing to do"),
        "second detach:\n{again}"
    );
    assert_eq!(
        ping(&lab, &client.ns, s.host_ip),
        100,
        "unreachable after detach"
    );

    // headroomd attaches by itself at start and reverts on a clean stop.
    let own = ServerConfig::new(&s, &sock)
        .merge("[deploy]\nattach_on_start = true\n")
        .unwrap()
        .render();
    let sock = start_headroomd(&mut lab, &dir, 0, &own);
    assert!(xdp_attached(&lab, &s.ns, &s.nic) && xdp_attached(&lab, &s.ns, &s.inner));
    let (rx0, _) = through_workers(&sock);
    assert_eq!(
        ping(&lab, &client.ns, s.host_ip),
        100,
        "no traffic through headroomd"
    );
    wait_for(Duration::from_secs(3), || {
        (through_workers(&sock).0 >= rx0 + 200).then_some(())
    })
    .expect("pings through the workers after attach_on_start");
    stop_headroomd(&mut lab);
    assert_same(
        &snapshot(&lab, &s),
        &before,
        "headroomd did not revert on stop",
    );
}

/// SIGTERM (a clean stop) and wait for the daemon to exit.
fn stop_headroomd(lab: &mut Lab) {
    let mut d = lab.forget("headroomd-1").expect("daemon child");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let st = d.wait().expect("wait for headroomd");
    assert!(st.success(), "headroomd exited with {st}");
}

#[test]
fn attach_refuses_a_nic_it_does_not_understand() {
    let (lab, s) = real_server();
    let dir = TempDir::new(&format!("{}-deploy-refuse", lab.tag));
    let cfg = dir.path("s1.toml");
    std::fs::write(&cfg, ServerConfig::new(&s, &dir.path("s.sock")).render()).unwrap();
    let cfg = cfg.display().to_string();
    // The NIC is already a port of someone else's bridge.
    lab.ip(&s.ns, &["link", "add", "br9", "type", "bridge"])
        .unwrap();
    lab.ip(&s.ns, &["link", "set", &s.nic, "master", "br9"])
        .unwrap();
    let before = snapshot(&lab, &s);
    let (ok, out) = headroomctl(&lab, &s, &["attach", "-c", &cfg]);
    assert!(!ok && out.contains("eth0 is a port of br9"), "{out}");
    assert_same(
        &snapshot(&lab, &s),
        &before,
        "a refused attach changed something",
    );
    // A bridge of that name that headroom did not make is not taken over,
    // nor removed.
    lab.ip(&s.ns, &["link", "set", &s.nic, "nomaster"]).unwrap();
    lab.ip(&s.ns, &["link", "set", "br9", "name", &s.bridge])
        .unwrap();
    let (ok, out) = headroomctl(&lab, &s, &["attach", "-c", &cfg]);
    assert!(!ok && out.contains("not made by headroom"), "{out}");
    let (ok, out) = headroomctl(&lab, &s, &["detach", "-c", &cfg]);
    assert!(!ok && out.contains("not made by headroom"), "{out}");
}
