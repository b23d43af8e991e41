//! headroomd as the systemd unit runs it, without systemd (it is not PID 1
//! here): the capability bounding set is the unit's own
//! (`packaging/headroomd.service`, applied with setpriv), and the service
//! protocol goes to a `NOTIFY_SOCKET` this test reads.
//!
//! * READY=1 comes only once XDP is attached to both interfaces and the
//!   worker runs; WATCHDOG=1 every half of `WATCHDOG_USEC` from the control
//!   loop; RELOADING=1 then READY=1 around each reload; STOPPING=1 on SIGTERM.
//! * With the unit's capabilities alone, the dataplane forwards, the pool
//!   key is read, the process scheduler finds another user's process by its
//!   environment and moves it into a job cgroup.
//! * One capability less (CAP_NET_ADMIN) and headroomd fails before READY=1,
//!   so the bounding set really is what the daemon runs with.
//! * The metrics endpoint serves every family with its HELP and TYPE.
//! * `headroomctl reload` prints what changed, or refuses a start-only change,
//!   and refuses a pool key others can read; every log line is JSON.

mod common;

use std::{
    os::unix::{fs::PermissionsExt, net::UnixDatagram},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use headroom_lab::{Lab, INNER, NIC as OUTER};

const UNIT: &str = include_str!("../packaging/headroomd.service");

/// The unit's `CapabilityBoundingSet=` as setpriv's `--bounding-set`.
fn unit_caps(without: Option<&str>) -> String {
    let line = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet=");
    let mut arg = String::from("-all");
    for cap in line.split_whitespace().filter(|c| Some(*c) != without) {
        arg.push_str(",+");
        arg.push_str(&cap.trim_start_matches("CAP_").to_ascii_lowercase());
    }
    arg
}

/// The notification datagrams headroomd sends.
struct Notifications {
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl Notifications {
    fn bind(path: &Path) -> Self {
        let sock = UnixDatagram::bind(path).expect("bind NOTIFY_SOCKET");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Notifications {
            sock,
            seen: Vec::new(),
        }
    }

    /// The next datagram within `timeout`.
    fn next(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(m.clone());
                return Some(m);
            }
        }
        None
    }

    /// Waits for a datagram holding `state` (e.g. "READY=1"), returning the
    /// ones before it.
    fn until(&mut self, state: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(m) if m.lines().any(|l| l == state) => return before,
                Some(m) => before.push(m),
                None => panic!("no {state} within {timeout:?}; got {:?}", self.seen),
            }
        }
    }
}

fn has(m: &str, state: &str) -> bool {
    m.lines().any(|l| l == state)
}

/// A process of another user (nobody) that a process rule matches by its
/// environment; killed on drop.
struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET /metrics on 127.0.0.1:7947 inside `ns` (after the first render).
fn scrape_metrics(ns: &str) -> String {
    use std::io::{Read, Write};
    let get = || {
        let mut c = std::net::TcpStream::connect("127.0.0.1:7947").ok()?;
        c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        c.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut page = String::new();
        c.read_to_string(&mut page).ok()?;
        page.contains("headroom_uptime_seconds").then_some(page)
    };
    wait_for(Duration::from_secs(10), || {
        headroom_lab::run_in_ns(ns, get).ok().flatten()
    })
    .expect("the metrics endpoint answers")
}

fn ctl(socket: &Path, cmd: &str) -> std::process::Output {
    Command::new(HEADROOMCTL)
        .arg("--socket")
        .arg(socket)
        .arg(cmd)
        .output()
        .expect("run headroomctl")
}

#[test]
fn runs_as_the_unit_runs_it() {
    let mut lab = Lab::up(1, 1).expect("lab");
    let dir = TempDir::new(&format!("{}-unit", lab.tag));
    let s = lab.servers[0].clone();
    let client = lab.clients[0].clone();
    let key = dir.path("pool.key");
    headroom_config::write_key_file(&key, b"unit-test-pool-key-0123456789abc").unwrap();
    let marker = format!("HR_UNIT_{}", lab.tag.replace('-', "_"));
    let parent = format!("{}-unit", lab.tag);
    let sleeper = Sleeper(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(["sleep", "300"])
            .env(&marker, "1")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn a process as nobody"),
    );
    let socket = dir.path("s.sock");
    let job = |extra: &str| {
        format!(
            r#"
[exchange]
port = 7946
peers = ["{id}@{ip}:7946"]
key_file = "{key}"

[[pipe]]
name = "uplink"
capacity = "100Mbit"

[[job]]
name = "sleeper"
cpu = {{ server_percent = 20 }}
[[job.process]]
env = ["{marker}=1"]
[[job.booking]]
pipe = "uplink"
rate = "10Mbit"
{extra}
[cpu]
cgroup_parent = "{parent}"
state_dir = "{state}"

[metrics]
listen = "127.0.0.1:7947"
"#,
            id = s.id,
            ip = s.node_ip,
            key = key.display(),
            state = dir.path("state").display(),
        )
    };
    let cfg_path = dir.path("s.toml");
    std::fs::write(&cfg_path, server_config(&s, &socket, &job(""))).unwrap();
    let notify_path = dir.path("notify.sock");
    let mut notes = Notifications::bind(&notify_path);
    // The lab owns the daemons (kills them if the test fails).
    let start = |lab: &mut Lab, caps: String, name: &str, log: &str| {
        let mut cmd = lab.command(&s.ns, "setpriv");
        cmd.arg(format!("--bounding-set={caps}"))
            .args(["--inh-caps=-all", "--no-new-privs", "--", HEADROOMD])
            .arg("--config")
            .arg(&cfg_path)
            .args(["--log-format", "json"])
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "1000000")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path(log)).unwrap());
        lab.spawn(name, cmd).expect("start headroomd");
    };

    // One capability less: fails before READY=1, saying why.
    start(
        &mut lab,
        unit_caps(Some("CAP_NET_ADMIN")),
        "hd-nocap",
        "nocap.log",
    );
    let st = lab.child("hd-nocap").unwrap().wait().unwrap();
    assert!(!st.success(), "headroomd ran without CAP_NET_ADMIN");
    let log = std::fs::read_to_string(dir.path("nocap.log")).unwrap();
    assert!(log.contains("headroomd failed"), "{log}");
    assert!(
        notes.next(Duration::from_millis(200)).is_none(),
        "{:?}",
        notes.seen
    );

    // The unit's capabilities: READY=1 once XDP and the worker are up.
    start(&mut lab, unit_caps(None), "hd", "d.log");
    let before = notes.until("READY=1", Duration::from_secs(20));
    assert!(before.is_empty(), "sent before READY=1: {before:?}");
    assert!(xdp_attached(&lab, &s.ns, OUTER) && xdp_attached(&lab, &s.ns, INNER));
    let st = status(&socket);
    assert_eq!(st.workers.len(), 1);
    assert!(notes.seen[0].contains(&format!("STATUS=node 1: {OUTER} <-> {INNER}, 1 worker(s)")));

    // Keep-alives every 500 ms: about 6 in 3 s; never a burst.
    let t0 = Instant::now();
    let mut pings = 0;
    while t0.elapsed() < Duration::from_secs(3) {
        if let Some(m) = notes.next(Duration::from_millis(200)) {
            assert!(has(&m, "WATCHDOG=1"), "unexpected {m:?}");
            pings += 1;
        }
    }
    assert!((3..=8).contains(&pings), "{pings} keep-alives in 3 s");

    // The dataplane forwards and the pool key was read (the exchange runs).
    let ping = in_ns(&lab, &client.ns, "ping")
        .args(["-c", "3", "-i", "0.2", "-W", "2", &s.host_ip.to_string()])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let st = status(&socket);
    assert!(
        st.workers[0].rx_packets[0] >= 3,
        "{:?}",
        st.workers[0].rx_packets
    );
    assert_eq!(st.exchange.as_ref().map(|e| e.master), Some(1));

    // The metrics endpoint, as Prometheus scrapes it: every family with its
    // HELP and TYPE, the build and the worker's frames among them.
    let page = scrape_metrics(&s.ns);
    let types: Vec<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(types.len() >= 20, "{page}");
    for name in &types {
        assert!(
            page.lines().any(|l| l
                .strip_prefix("# HELP ")
                .is_some_and(|h| h.starts_with(&format!("{name} ")))),
            "{name} has no HELP:\n{page}"
        );
    }
    assert!(
        page.contains(&format!(
            "headroom_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            headroom_buildinfo::VERSION,
            headroom_buildinfo::COMMIT
        )),
        "{page}"
    );
    assert!(
        page.contains("# TYPE headroom_worker_rx_packets_total counter"),
        "{page}"
    );

    // Another user's process, found by its environment, in the job cgroup.
    let pid = sleeper.0.id();
    let found = wait_for(Duration::from_secs(10), || {
        let st = status(&socket);
        let cpu = st.cpu?;
        cpu.jobs
            .iter()
            .any(|j| j.name == "sleeper" && j.pids.contains(&pid))
            .then_some(())
    });
    assert!(found.is_some(), "{:?}", status(&socket).cpu);
    let in_cgroup = || {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_default()
            .contains(&format!("/{parent}/"))
    };
    assert!(wait_for(Duration::from_secs(10), || in_cgroup().then_some(())).is_some());

    // Reload: the node file now adds a job, but the pool runs a policy of
    // its own (v1, this file's initial sections): the reload says so and
    // changes nothing of the policy.
    let extra = "[[job]]\nname = \"extra\"\n[[job.flow]]\nprotocol = \"udp\"\nlocal_port = \"9\"\n";
    let with_extra = server_config(&s, &socket, &job(extra));
    std::fs::write(&cfg_path, &with_extra).unwrap();
    let out = ctl(&socket, "reload");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("note: the node file's policy sections are not used: the pool runs v1"),
        "{text}"
    );
    assert!(status(&socket).job("extra").is_none());
    let skipped = notes.until("RELOADING=1", Duration::from_secs(5));
    assert!(skipped.iter().all(|m| has(m, "WATCHDOG=1")), "{skipped:?}");
    let between = notes.until("READY=1", Duration::from_secs(5));
    assert!(between.iter().all(|m| has(m, "WATCHDOG=1")), "{between:?}");
    let reloading = notes.seen.iter().find(|m| has(m, "RELOADING=1")).unwrap();
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");

    // `policy apply` adds it, live.
    let policy = headroom_config::initial_policy(&with_extra).unwrap();
    let policy_file = dir.path("policy.toml");
    std::fs::write(&policy_file, &policy).unwrap();
    let (code, out, err) = headroomctl(
        &socket,
        &["policy", "apply", &policy_file.display().to_string()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("v2 active on 1 node(s)") && out.contains("jobs added: extra"),
        "{out}"
    );
    assert!(status(&socket).job("extra").is_some());

    // A pipe's capacity changes live; adding a pipe (start-only: the
    // workers' pacing rules) is refused whole, named.
    let bigger = policy.replace("\"100Mbit\"", "\"200Mbit\"");
    std::fs::write(&policy_file, &bigger).unwrap();
    let (code, out, err) = headroomctl(
        &socket,
        &["policy", "apply", &policy_file.display().to_string()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("pipe uplink: capacity 100Mbit -> 200Mbit"),
        "{out}"
    );
    assert_eq!(status(&socket).pipes[0].capacity_bps, 200_000_000);
    let added = format!("{bigger}\n[[pipe]]\nname = \"wan\"\ncapacity = \"10Mbit\"\n");
    std::fs::write(&policy_file, added).unwrap();
    let (code, out, err) = headroomctl(
        &socket,
        &["policy", "apply", &policy_file.display().to_string()],
    );
    assert_eq!(code, 2, "accepted a start-only change: {out}{err}");
    assert!(
        err.contains("pipe wan: added") && err.contains("restart"),
        "{err}"
    );
    let st = status(&socket);
    assert_eq!((st.reloads_ok, st.reloads_failed), (1, 0));
    assert_eq!(st.pipes.len(), 1);
    assert_eq!(st.policy.unwrap().active.as_deref(), Some("v3"));

    // A key others can read is refused on reload too; nothing changes.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = ctl(&socket, "reload");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted a world-readable key");
    assert!(
        err.contains(&format!("chmod 600 {}", key.display())),
        "{err}"
    );
    assert_eq!(status(&socket).reloads_failed, 1);
    notes.until("RELOADING=1", Duration::from_secs(5));
    notes.until("READY=1", Duration::from_secs(5));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A key rotation's first step by reload: the next key accepted beside
    // the pool key, named by its id (never its bytes).
    let next = dir.path("pool.key.new");
    headroom_config::write_key_file(&next, b"unit-test-next-pool-key-01234567").unwrap();
    let rotating = std::fs::read_to_string(&cfg_path).unwrap().replace(
        &format!("key_file = \"{}\"\n", key.display()),
        &format!(
            "key_file = \"{}\"\nrotation_key_file = \"{}\"\n",
            key.display(),
            next.display()
        ),
    );
    std::fs::write(&cfg_path, rotating).unwrap();
    let out = ctl(&socket, "reload");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let next_id = headroom_control::exchange::wire::KeyId::of(b"unit-test-next-pool-key-01234567");
    assert!(
        text.contains(&format!("pool keys: accepts also {next_id} (was none)")),
        "{text}"
    );
    assert!(!text.contains("not applied until"), "{text}");
    assert_eq!(
        status(&socket).exchange.unwrap().rotation_key_id,
        Some(next_id.to_string())
    );
    notes.until("RELOADING=1", Duration::from_secs(5));
    notes.until("READY=1", Duration::from_secs(5));

    // SIGTERM: STOPPING=1, a clean exit, the process back out of the job cgroup.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lab.child("hd").unwrap().id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    notes.until("STOPPING=1", Duration::from_secs(10));
    let st = lab.child("hd").unwrap().wait().unwrap();
    assert!(st.success(), "{st}");
    assert!(!in_cgroup(), "the process stayed in the job cgroup");
    assert!(!Path::new("/sys/fs/cgroup/cpu").join(&parent).exists());
    assert!(
        !dir.path("state")
            .join(format!("cpu-{parent}.json"))
            .exists(),
        "a clean stop removes the cgroup record"
    );

    // Every log line is one JSON object; the start and reload lines say
    // what an operator needs.
    let log = std::fs::read_to_string(dir.path("d.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |msg: &str| {
        lines
            .iter()
            .find(|v| v["fields"]["message"] == msg)
            .unwrap_or_else(|| panic!("no {msg:?} line in {log}"))
    };
    let started = &find("headroomd starting")["fields"];
    assert_eq!(started["version"], headroom_buildinfo::VERSION);
    assert_eq!(started["commit"], headroom_buildinfo::COMMIT);
    assert_eq!(started["config"], cfg_path.display().to_string());
    let reloaded = find("configuration reloaded")["fields"]["changes"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(reloaded, "no changes");
    let activated = &lines
        .iter()
        .find(|v| {
            v["fields"]["message"] == "policy activated"
                && v["fields"]["version"]
                    .as_str()
                    .is_some_and(|x| x.starts_with("v2 "))
        })
        .unwrap_or_else(|| panic!("no v2 activation in {log}"))["fields"];
    assert!(
        activated["changes"]
            .as_str()
            .unwrap()
            .contains("jobs added: extra"),
        "{activated}"
    );
    find("headroomd stopped");
    drop(sleeper);
}
