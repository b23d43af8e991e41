//! Triggers, failure policies and schedules on a three-server lab with real
//! traffic: a squeezed job's trigger runs its command once per episode and
//! posts one webhook per episode to a receiver in a client namespace; a
//! failing action is recorded and blocks nothing; a killed server puts the
//! failure policy in force on the survivors and its return restores it; a
//! schedule boundary a few seconds ahead switches the bookings on every
//! node; bad definitions are refused at `policy apply` with file and line;
//! a job's process exiting on one server fires the master's trigger once,
//! naming that server and the process.

mod common;

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::*;
use headroom::{
    ctl::{call, Request, Response},
    status::Status,
};
use headroom_lab::{
    traffic::{arrival_log, udp_flood, wire_rate, ArrivalLog},
    Lab,
};

const HOOK_PORT: u16 = 9088;
const PAYLOAD: usize = 1000;

/// The policy: gold 60 % / bronze 40 % of a 20 Mbit/s pipe to the first
/// client (the webhook receiver, the second client, is off the pipe: a
/// saturated pipe leaves unbooked traffic nothing), bronze's squeeze
/// trigger with a command, a webhook and a command that overruns its
/// timeout; gold drops to 30 % while a node is lost; a job "worker" of
/// the processes marked with `marker` in their environment, whose exits
/// run `exit_hook`.
fn policy(
    hook: &Path,
    slow: &Path,
    url: &str,
    remote: Ipv4Addr,
    exit_hook: &Path,
    marker: &str,
) -> String {
    format!(
        r#"
[pool]
restore_after = "3s"

[[pipe]]
name = "uplink"
capacity = "20Mbit"
remote = "{remote}/32"

[[job]]
name = "gold"
on_node_failure = {{ booking = [{{ pipe = "uplink", rate = "30%" }}] }}
[[job.flow]]
protocol = "udp"
local_port = "7001"
[[job.booking]]
pipe = "uplink"
rate = "60%"

[[job]]
name = "bronze"
[[job.flow]]
protocol = "udp"
local_port = "7002"
[[job.booking]]
pipe = "uplink"
rate = "40%"

[[trigger]]
name = "bronze-squeezed"
condition = "squeezed(bronze, pipe=uplink)"
for = "3s"
cooldown = "2s"
action = [
  {{ log = {{}} }},
  {{ command = {{ argv = ["{hook}", "squeezed"], timeout = "5s" }} }},
  {{ webhook = {{ url = "{url}", timeout = "2s", retries = 2 }} }},
  {{ command = {{ argv = ["{slow}"], timeout = "1s" }} }},
]

[[job]]
name = "worker"
[[job.process]]
env = ["HEADROOM_TEST_EXIT={marker}"]

[[trigger]]
name = "worker-exited"
condition = "process_exited(worker)"
action = [ {{ command = {{ argv = ["{exit_hook}"], timeout = "5s" }} }} ]
"#,
        hook = hook.display(),
        slow = slow.display(),
        exit_hook = exit_hook.display(),
    )
}

/// A webhook receiver in namespace `ns`: every POST body, answered 200.
struct Receiver {
    bodies: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(ns: &str, port: u16) -> Receiver {
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s, ns) = (bodies.clone(), stop.clone(), ns.to_string());
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let _ = headroom_lab::run_in_ns(&ns, move || {
                let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind receiver");
                l.set_nonblocking(true).unwrap();
                let _ = ready_tx.send(());
                while !s.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((c, _)) => {
                            if let Some(body) = serve(c) {
                                b.lock().unwrap().push(body);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
        });
        ready
            .recv_timeout(Duration::from_secs(5))
            .expect("receiver listening");
        Receiver {
            bodies,
            stop,
            thread: Some(thread),
        }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one HTTP request, answers 200; the body of a POST.
fn serve(mut c: std::net::TcpStream) -> Option<String> {
    c.set_nonblocking(false).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = c.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = c.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    head.starts_with("post ")
        .then(|| String::from_utf8_lossy(&buf[head_end..]).into_owned())
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The hook's runs: one file per run, with its environment.
fn runs(dir: &Path) -> Vec<String> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v.iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

fn triggers(sock: &Path) -> headroom_agent::automation::AutomationStatus {
    match call(sock, &Request::Triggers).expect("control socket") {
        Response::Triggers(t) => *t,
        other => panic!("unexpected answer {other:?}"),
    }
}

fn trigger_state(sock: &Path) -> String {
    triggers(sock)
        .triggers
        .iter()
        .find(|t| t.name == "bronze-squeezed")
        .map(|t| t.state.clone())
        .unwrap_or_default()
}

fn overlay(st: &Status) -> headroom_agent::automation::OverlayState {
    st.automation.as_ref().expect("automation").overlay.clone()
}

/// Gold's and bronze's rates at the client over the last `window`, from
/// servers `from` (a killed server's traffic crosses its fail-open bridge
/// unpaced).
fn rates(log: &ArrivalLog, window: Duration, from: &[u8]) -> (f64, f64) {
    let b = Instant::now();
    let a = b - window;
    (
        wire_rate(log, a, b, |p, o| p == 9001 && from.contains(&o)),
        wire_rate(log, a, b, |p, o| p == 9002 && from.contains(&o)),
    )
}

#[test]
fn triggers_failure_policies_and_schedules_act_on_the_pool() {
    let mut lab = Lab::up(3, 2).expect("lab");
    let dir = TempDir::new(&format!("{}-triggers", lab.tag));
    let key = dir.path("pool.key");
    headroom_config::write_key_file(&key, b"0123456789abcdef0123456789abcdef").unwrap();
    let client = lab.clients[0].clone();
    let runs_dir = dir.path("runs");
    std::fs::create_dir_all(&runs_dir).unwrap();
    let hook = dir.path("hook");
    // A clean environment: only PATH and HEADROOM_* (the file is per run).
    script(
        &hook,
        &format!(
            "env | grep '^HEADROOM_' | sort > {}/run-$HEADROOM_EPISODE-$$\necho \"arg $1\" >> {}/run-$HEADROOM_EPISODE-$$",
            runs_dir.display(),
            runs_dir.display()
        ),
    );
    let slow = dir.path("slow");
    script(&slow, "sleep 30");
    let hooks = lab.clients[1].clone();
    let url = format!("http://{}:{HOOK_PORT}/hook", hooks.ip);
    let exit_dir = dir.path("exits");
    std::fs::create_dir_all(&exit_dir).unwrap();
    let exit_hook = dir.path("exit-hook");
    script(
        &exit_hook,
        &format!(
            "env | grep '^HEADROOM_' | sort > {}/run-$$",
            exit_dir.display()
        ),
    );
    let marker = lab.tag.clone();
    let doc = policy(&hook, &slow, &url, client.ip, &exit_hook, &marker);
    let mut socks = Vec::new();
    let mut configs = Vec::new();
    for i in 0..3 {
        let s = lab.servers[i].clone();
        // Each server detects the processes of its own namespace only (the
        // lab's servers share this kernel); nice: nothing is enforced.
        let extra = format!(
            "\n[exchange]\nkey_file = \"{key}\"\npeers = [{peers}]\nfailure_timeout = \"1500ms\"\n\
             [cpu]\nbackend = \"nice\"\nscope = \"netns\"\ncgroup_parent = \"{tag}-trg-n{id}\"\nstate_dir = \"{state}\"\n\
             [actions]\nallowed_commands = [\"{hook}\", \"{slow}\", \"{exit_hook}\", \"/nonexistent/hook\"]\nallowed_webhooks = [\"{host}:{HOOK_PORT}\"]\n{doc}",
            key = key.display(),
            peers = exchange_peers(&lab),
            tag = lab.tag,
            id = s.id,
            state = dir.path(&format!("state-s{}", s.id)).display(),
            hook = hook.display(),
            slow = slow.display(),
            exit_hook = exit_hook.display(),
            host = hooks.ip,
        );
        let sock = dir.path(&format!("s{}.sock", s.id));
        let cfg = server_config(&s, &sock, &extra);
        socks.push(start_headroomd(&mut lab, &dir, i, &cfg));
        configs.push(cfg);
    }
    wait_pool_ready(&socks, 3);
    let receiver = Receiver::start(&hooks.ns, HOOK_PORT);

    // Bad definitions are refused at apply, with file, line and field.
    let base = headroom_config::initial_policy(&configs[0]).expect("initial policy");
    for (what, bad, want) in [
        (
            "unknown condition",
            base.replace("squeezed(bronze, pipe=uplink)", "hungry(bronze)"),
            "condition",
        ),
        (
            "missing action",
            format!("{base}\n[[trigger]]\nname = \"silent\"\ncondition = \"node_failed\"\n"),
            "no action",
        ),
        (
            "absent command",
            base.replace(&slow.display().to_string(), "/nonexistent/hook"),
            "does not exist",
        ),
    ] {
        let f = dir.path("bad.toml");
        std::fs::write(&f, &bad).unwrap();
        let (code, out, err) =
            headroomctl(&socks[1], &["policy", "apply", &f.display().to_string()]);
        eprintln!("{what}: exit {code}: {}{}", out.trim(), err.trim());
        assert_ne!(code, 0, "{what} accepted");
        let msg = format!("{out}{err}");
        assert!(msg.contains("bad.toml:"), "{what}: no file:line in {msg}");
        assert!(msg.contains(want), "{what}: {msg}");
    }
    for s in &socks {
        assert_eq!(
            status(s).policy.and_then(|p| p.active).as_deref(),
            Some("v1"),
            "a bad policy changed the pool"
        );
    }

    // A worker process on server 2 exits: the master (server 1) fires once,
    // naming server 2 and the process (from server 2's gossiped summary).
    let s2 = lab.servers[1].clone();
    let mut cmd = lab.command(&s2.ns, "sleep");
    cmd.arg("600").env("HEADROOM_TEST_EXIT", &marker);
    let victim = lab.spawn("exit-victim", cmd).expect("spawn the worker");
    let pid = victim.id();
    wait_for(Duration::from_secs(15), || {
        let st = status(&socks[1]);
        st.cpu?
            .jobs
            .iter()
            .any(|j| j.name == "worker" && j.pids.contains(&pid))
            .then_some(())
    })
    .expect("server 2 detects the worker process");
    let _ = victim.kill();
    let _ = victim.wait();
    let killed = Instant::now();
    let exited = wait_for(Duration::from_secs(15), || {
        (!runs(&exit_dir).is_empty()).then(Instant::now)
    })
    .unwrap_or_else(|| {
        panic!(
            "no process-exit event; events:\n{}",
            headroomctl(&socks[0], &["events"]).1
        )
    });
    eprintln!(
        "process exit on server 2: the master's command ran {:.1} s after the kill",
        (exited - killed).as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    let r = runs(&exit_dir);
    assert_eq!(r.len(), 1, "one run per exit: {r:?}");
    for want in [
        "HEADROOM_TRIGGER=worker-exited".to_string(),
        "HEADROOM_JOB=worker".into(),
        "HEADROOM_NODES=2".into(),
        format!("HEADROOM_PIDS={pid}"),
        "HEADROOM_PROCESSES=sleep".into(),
        "HEADROOM_COUNT=1".into(),
        "HEADROOM_NODE=1".into(),
    ] {
        assert!(r[0].contains(&want), "{want} missing from {}", r[0]);
    }

    // Traffic: both jobs offer 12 Mbit/s on every server, 72 for a 20 Mbit/s pipe.
    let log: ArrivalLog = Arc::default();
    let stop_sink = Arc::new(AtomicBool::new(false));
    let sinks = arrival_log(&client.ns, &[9001, 9002], log.clone(), stop_sink.clone());
    let mut senders = Vec::new();
    let start_bronze = |senders: &mut Vec<_>, stop: &Arc<AtomicBool>| {
        for s in &lab.servers {
            senders.push(udp_flood(
                &s.host_ns,
                7002,
                SocketAddr::from((client.ip, 9002)),
                12e6,
                PAYLOAD,
                stop.clone(),
            ));
        }
    };
    let stop_gold = Arc::new(AtomicBool::new(false));
    for s in &lab.servers {
        senders.push(udp_flood(
            &s.host_ns,
            7001,
            SocketAddr::from((client.ip, 9001)),
            12e6,
            PAYLOAD,
            stop_gold.clone(),
        ));
    }
    let stop_bronze1 = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    start_bronze(&mut senders, &stop_bronze1);

    // Episode 1: fires after `for`, once for the pool.
    let fired = wait_for(Duration::from_secs(25), || {
        (!runs(&runs_dir).is_empty()).then(Instant::now)
    })
    .expect("the trigger's command ran");
    eprintln!(
        "episode 1: command ran {:.1} s after bronze started (for = 3 s)",
        (fired - t0).as_secs_f64()
    );
    assert!(
        fired - t0 >= Duration::from_secs(3),
        "fired before its `for`"
    );
    let posted = wait_for(Duration::from_secs(10), || {
        (!receiver.bodies().is_empty()).then_some(())
    });
    assert!(
        posted.is_some(),
        "no webhook POST arrived; events:\n{}",
        headroomctl(&socks[0], &["events"]).1
    );
    // While the slow command runs (1 s timeout) the control loop answers.
    let t = Instant::now();
    let st = status(&socks[0]);
    eprintln!(
        "status answered in {:.0} ms with an action running",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(st.automation.as_ref().map(|a| a.evaluating), Some(true));
    std::thread::sleep(Duration::from_secs(4));
    let r = runs(&runs_dir);
    assert_eq!(r.len(), 1, "one run per episode: {r:?}");
    for want in [
        "HEADROOM_TRIGGER=bronze-squeezed",
        "HEADROOM_EPISODE=1",
        "HEADROOM_STATE=firing",
        "HEADROOM_JOB=bronze",
        "HEADROOM_NODE=1",
        "arg squeezed",
    ] {
        assert!(r[0].contains(want), "{want} missing from {}", r[0]);
    }
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1, "one POST per episode: {bodies:?}");
    let ev: serde_json::Value = serde_json::from_str(&bodies[0]).expect("JSON event");
    assert_eq!(ev["trigger"], "bronze-squeezed");
    assert_eq!(ev["episode"], 1);
    for s in &socks {
        assert_eq!(trigger_state(s), "firing", "every node's view");
    }

    // The squeeze ends: resolved. Then a second episode fires once more.
    stop_bronze1.store(true, Ordering::Relaxed);
    wait_for(Duration::from_secs(15), || {
        (trigger_state(&socks[0]) == "idle").then_some(())
    })
    .expect("resolved once bronze stopped");
    let stop_bronze2 = Arc::new(AtomicBool::new(false));
    start_bronze(&mut senders, &stop_bronze2);
    wait_for(Duration::from_secs(25), || {
        (runs(&runs_dir).len() >= 2 && receiver.bodies().len() >= 2).then_some(())
    })
    .expect("episode 2 fired");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(&runs_dir).len(), 2, "{:?}", runs(&runs_dir));
    assert_eq!(receiver.bodies().len(), 2, "{:?}", receiver.bodies());
    assert!(runs(&runs_dir)[1].contains("HEADROOM_EPISODE=2"));

    // The journal: what fired, what ran, the outcome.
    let (code, out, err) = headroomctl(&socks[0], &["events", "--since", "10m"]);
    eprintln!("headroomctl events:\n{out}{err}");
    assert_eq!(code, 0);
    for want in [
        "bronze-squeezed#1 pending",
        "bronze-squeezed#1 firing",
        "bronze-squeezed#1 resolved",
        "bronze-squeezed#2 firing",
        "timed_out",
    ] {
        assert!(out.contains(want), "events lack {want:?}");
    }
    let hook_s = hook.display().to_string();
    let ok = |kind: &str, target: &str| {
        out.lines()
            .filter(|l| l.contains(&format!(" {kind} {target} ok in ")))
            .count()
    };
    assert_eq!(ok("command", &hook_s), 2, "the hook's two runs recorded ok");
    assert_eq!(ok("webhook", &url), 2, "the two POSTs recorded ok");
    // A standby's journal has the same episodes, from the master's record.
    let (code, out, err) = headroomctl(&socks[1], &["events", "--since", "10m"]);
    eprintln!("headroomctl events (server 2):\n{out}{err}");
    assert_eq!(code, 0);
    for ep in [1, 2] {
        let n = out
            .lines()
            .filter(|l| {
                l.contains(&format!("bronze-squeezed#{ep} firing on node 1"))
                    && l.contains("seen_in=record")
            })
            .count();
        assert_eq!(n, 1, "server 2 journals episode {ep} once");
    }
    let (code, out, _) = headroomctl(&socks[2], &["triggers"]);
    eprintln!("headroomctl triggers (server 3):\n{out}");
    assert_eq!(code, 0);
    assert!(
        out.contains("bronze-squeezed") && out.contains("evaluated by server 1"),
        "{out}"
    );

    // A server dies: the survivors run gold's failure policy.
    let mut d = lab.forget("headroomd-3").expect("daemon 3");
    d.kill().unwrap();
    d.wait().unwrap();
    let killed = Instant::now();
    let degraded = wait_for(Duration::from_secs(15), || {
        socks[..2]
            .iter()
            .all(|s| overlay(&status(s)).node_failure)
            .then(Instant::now)
    })
    .expect("failure policies in force on both survivors");
    eprintln!(
        "failure policy on both survivors {:.1} s after the kill (failure timeout 1.5 s, evaluation every 2 s)",
        (degraded - killed).as_secs_f64()
    );
    for s in &socks[..2] {
        let st = status(s);
        let gold = st.pipes[0].jobs.iter().find(|j| j.0 == "gold").cloned();
        eprintln!("server {}: pipe jobs {:?}", st.node_id, st.pipes[0].jobs);
        assert!(gold.is_some());
    }
    std::thread::sleep(Duration::from_secs(3));
    let (g, b) = rates(&log, Duration::from_secs(2), &[1, 2]);
    eprintln!(
        "degraded: gold {:.2}, bronze {:.2} Mbit/s",
        g / 1e6,
        b / 1e6
    );
    // Gold booked 30 % (was 60 %): bronze's 40 % now outweighs it.
    assert!(
        g < b,
        "gold {g} should be below bronze {b} under the failure policy"
    );
    // It returns: normal policies after `restore_after` (3 s).
    socks[2] = start_headroomd(&mut lab, &dir, 2, &configs[2]);
    let restored = wait_for(Duration::from_secs(25), || {
        socks
            .iter()
            .all(|s| !overlay(&status(s)).node_failure)
            .then(Instant::now)
    })
    .expect("normal policies restored on all three");
    eprintln!(
        "restored {:.1} s after the restart",
        (restored - degraded).as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    let (g, b) = rates(&log, Duration::from_secs(2), &[1, 2, 3]);
    eprintln!(
        "restored: gold {:.2}, bronze {:.2} Mbit/s",
        g / 1e6,
        b / 1e6
    );
    assert!(g > b, "gold {g} back above bronze {b}");

    // A schedule a few seconds ahead: "shift" gives bronze 70 %.
    let now_s = headroom_clock::WallTime::now().as_unix_millis() / 1000;
    let at = (now_s + 8) % 60;
    let scheduled = format!(
        "{base}\n[[variant]]\nname = \"shift\"\njob = [{{ name = \"gold\", booking = [{{ pipe = \"uplink\", rate = \"20%\" }}] }}, {{ name = \"bronze\", booking = [{{ pipe = \"uplink\", rate = \"70%\" }}] }}]\n\
         [[schedule]]\nname = \"shift\"\nvariant = \"shift\"\nsecond = {at}\n\
         [[schedule]]\nname = \"back\"\nsecond = {back}\n",
        back = (at + 30) % 60
    );
    let f = dir.path("scheduled.toml");
    std::fs::write(&f, &scheduled).unwrap();
    let (code, out, err) = headroomctl(
        &socks[0],
        &[
            "policy",
            "apply",
            &f.display().to_string(),
            "-m",
            "shift at :{at}",
        ],
    );
    eprintln!("{out}{err}");
    assert_eq!(code, 0, "{out}{err}");
    let boundary = Instant::now()
        + Duration::from_millis(
            ((now_s + 8) * 1000).saturating_sub(headroom_clock::WallTime::now().as_unix_millis()),
        );
    std::thread::sleep(
        boundary
            .saturating_duration_since(Instant::now())
            .saturating_sub(Duration::from_secs(2)),
    );
    let (g, b) = rates(&log, Duration::from_secs(2), &[1, 2, 3]);
    eprintln!(
        "before the boundary: gold {:.2}, bronze {:.2} Mbit/s",
        g / 1e6,
        b / 1e6
    );
    assert!(g > b, "the schedule switched early");
    for s in &socks {
        assert_eq!(overlay(&status(s)).variant, None);
    }
    let switched = wait_for(Duration::from_secs(10), || {
        socks
            .iter()
            .all(|s| overlay(&status(s)).variant.as_deref() == Some("shift"))
            .then(Instant::now)
    })
    .expect("every node on the shift variant");
    eprintln!(
        "all three on \"shift\" {:+.2} s from the boundary",
        switched.duration_since(boundary).as_secs_f64()
            - boundary.saturating_duration_since(switched).as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    let (g, b) = rates(&log, Duration::from_secs(2), &[1, 2, 3]);
    eprintln!(
        "after the boundary: gold {:.2}, bronze {:.2} Mbit/s",
        g / 1e6,
        b / 1e6
    );
    // Bronze booked 70 % (with its part of the 10 % spare), gold 20 %.
    let share = b / (g + b);
    assert!(
        (0.70..=0.86).contains(&share),
        "bronze share {share:.3}, booked 70 %"
    );

    stop_gold.store(true, Ordering::Relaxed);
    stop_bronze2.store(true, Ordering::Relaxed);
    stop_sink.store(true, Ordering::Relaxed);
    for h in senders {
        let _ = h.join();
    }
    for h in sinks {
        let _ = h.join();
    }

    // The journal is in the history store: server 1's earlier run's
    // firings and outcomes are still there after a restart (its memory
    // journal starts empty).
    let mut d = lab.forget("headroomd-1").expect("daemon 1");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    d.wait().unwrap();
    socks[0] = start_headroomd(&mut lab, &dir, 0, &configs[0]);
    let (code, out, err) = headroomctl(&socks[0], &["events", "--since", "10m", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON entry per line"))
        .collect();
    let firing: Vec<u64> = rows
        .iter()
        .filter(|r| r["trigger"] == "bronze-squeezed" && r["state"] == "firing")
        .map(|r| r["episode"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        firing,
        vec![1, 2],
        "each firing once, from the store: {out}"
    );
    let hook_runs = rows
        .iter()
        .filter(|r| {
            r["entry"] == "action" && r["target"] == hook_s.as_str() && r["outcome"] == "ok"
        })
        .count();
    assert_eq!(hook_runs, 2, "the hook's runs, from the store: {out}");
    let (_, st, _) = headroomctl(&socks[0], &["status"]);
    eprintln!(
        "after the restart, server 1's history: {}",
        st.lines()
            .find(|l| l.starts_with("history:"))
            .unwrap_or("?")
    );
}
