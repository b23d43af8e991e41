//! The executor for real: commands that write their environment, hang,
//! flood their output or are not allowed; webhooks to receivers on
//! loopback that answer, fail or never answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headroom_actions::{Entry, Executor, ExecutorConfig, Journal, Outcome};
use headroom_config::triggers::{Action, ActionsConfig, CommandAction, LogAction, WebhookAction};
use headroom_control::triggers::{ActionRequest, EventState, TriggerEvent};

/// A directory removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "headroom-actions-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
    /// An executable shell script.
    fn script(&self, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = self.0.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn event() -> TriggerEvent {
    TriggerEvent {
        trigger: "batch-squeezed".into(),
        episode: 7,
        state: EventState::Firing,
        condition: "squeezed(batch, pipe=wan)".into(),
        unix_ms: 1_772_452_840_000,
        node: 2,
        fields: vec![
            ("job".into(), "batch".into()),
            ("pipe".into(), "wan".into()),
            ("demand_bps".into(), "40000000".into()),
        ],
    }
}

fn request(action: Action) -> ActionRequest {
    ActionRequest {
        index: 0,
        event: event(),
        action,
    }
}

fn command(argv: &[&str], timeout: Duration) -> ActionRequest {
    request(Action::Command(CommandAction {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        timeout,
    }))
}

fn executor(commands: &[&str], webhooks: &[&str]) -> Executor {
    let node = ActionsConfig {
        allowed_commands: commands.iter().map(|s| s.to_string()).collect(),
        allowed_webhooks: webhooks.iter().map(|s| s.to_string()).collect(),
        secrets: [("hooks".to_string(), "t0ken".to_string())].into(),
        workers: 2,
        queue: 8,
    };
    Executor::new(ExecutorConfig::new(&node))
}

fn alive(pid: i32) -> bool {
    // Signal 0: exists (zombies reaped by init count as gone).
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn a_command_gets_the_event_in_its_environment() {
    let tmp = Tmp::new("env");
    let out = tmp.0.join("env.txt");
    let s = tmp.script("dump", "env > \"$1\"; echo done; echo warn >&2");
    let mut ex = executor(&[&s], &[]);
    ex.submit(command(
        &[&s, out.to_str().unwrap()],
        Duration::from_secs(10),
    ));
    let r = ex.wait_result(Duration::from_secs(20)).expect("a record");
    assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
    assert_eq!(
        (r.exit_code, r.stdout.as_str(), r.stderr.as_str()),
        (Some(0), "done\n", "warn\n")
    );
    let env = std::fs::read_to_string(&out).unwrap();
    for line in [
        "HEADROOM_TRIGGER=batch-squeezed",
        "HEADROOM_EPISODE=7",
        "HEADROOM_STATE=firing",
        "HEADROOM_CONDITION=squeezed(batch, pipe=wan)",
        "HEADROOM_TIME=2026-03-02T12:00:40Z",
        "HEADROOM_NODE=2",
        "HEADROOM_JOB=batch",
        "HEADROOM_PIPE=wan",
        "HEADROOM_DEMAND_BPS=40000000",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing from\n{env}");
    }
    // Nothing of the daemon's environment (cargo runs tests with CARGO_*).
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
    assert!(!env.contains("CARGO_"), "{env}");
    assert_eq!(
        (r.trigger.as_str(), r.episode, r.kind),
        ("batch-squeezed", 7, "command")
    );
}

#[test]
fn a_hanging_command_is_killed_with_its_children_at_the_timeout() {
    let tmp = Tmp::new("hang");
    let pids = tmp.0.join("pids");
    let s = tmp.script(
        "hang",
        &format!(
            "sleep 60 & echo $! > {0}; echo $$ >> {0}; exec sleep 60",
            pids.display()
        ),
    );
    let mut ex = executor(&[&s], &[]);
    let start = Instant::now();
    ex.submit(command(&[&s], Duration::from_millis(300)));
    let r = ex.wait_result(Duration::from_secs(30)).expect("a record");
    assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
    assert_eq!(r.signal, Some(9));
    assert!(r.error.as_deref().unwrap().contains("killed after 300ms"));
    // Well before the 60 s the command would take.
    assert!(start.elapsed() < Duration::from_secs(20));
    let pids: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(pids.iter().all(|&p| !alive(p)), "left running: {pids:?}");
}

#[test]
fn output_is_bounded_and_failures_recorded() {
    let tmp = Tmp::new("out");
    let s = tmp.script("flood", "head -c 1000000 /dev/zero | tr '\\0' x; exit 3");
    let mut ex = executor(&[&s], &[]);
    ex.submit(command(&[&s], Duration::from_secs(20)));
    let r = ex.wait_result(Duration::from_secs(30)).unwrap();
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.stdout.len(), 4096);
    assert_eq!(r.output_truncated, 1_000_000 - 4096);
    assert_eq!(r.error.as_deref(), Some("exit status 3"));
    // Not in the allowlist: refused, never started.
    let marker = tmp.0.join("ran");
    let other = tmp.script("other", &format!("touch {}", marker.display()));
    ex.submit(command(&[&other], Duration::from_secs(5)));
    let r = ex.wait_result(Duration::from_secs(30)).unwrap();
    assert_eq!(r.outcome, Outcome::Refused);
    assert!(r.error.unwrap().contains("allowed_commands"));
    assert!(!marker.exists());
    // A program that does not exist.
    let mut ex = executor(&["/nonexistent/headroom-x"], &[]);
    ex.submit(command(
        &["/nonexistent/headroom-x"],
        Duration::from_secs(5),
    ));
    let r = ex.wait_result(Duration::from_secs(30)).unwrap();
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(r.error.unwrap().contains("cannot start"));
}

/// What a loopback receiver saw.
#[derive(Default)]
struct Seen {
    posts: Vec<(String, String)>,
}

/// An HTTP receiver on 127.0.0.1 answering every request with `status`
/// (or never answering when `status` is 0). Stops when dropped.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s2, st2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !st2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        if let Some(c) = serve(c, status, &s2) {
                            held.push(c);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Receiver {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }
    fn posts(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().posts.clone()
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

/// Reads one request; answers it unless `status` is 0 (then returns the
/// connection to keep it open, unanswered).
fn serve(c: TcpStream, status: u16, seen: &Mutex<Seen>) -> Option<TcpStream> {
    c.set_nonblocking(false).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(c.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut len = 0;
    let mut auth = String::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "authorization" => auth = v.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    assert!(line.starts_with("POST /hook "), "{line}");
    seen.lock()
        .unwrap()
        .posts
        .push((auth, String::from_utf8_lossy(&body).into_owned()));
    if status == 0 {
        return Some(c);
    }
    let mut c = c;
    let _ = write!(
        c,
        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    None
}

fn webhook(url: &str, retries: u32, timeout: Duration) -> ActionRequest {
    request(Action::Webhook(WebhookAction {
        url: url.into(),
        token: Some("hooks".into()),
        timeout,
        retries,
        backoff: Duration::from_millis(50),
    }))
}

#[test]
fn a_webhook_posts_the_event_once() {
    let rx = Receiver::start(200);
    let mut ex = executor(&[], &["127.0.0.1"]);
    ex.submit(webhook(&rx.url(), 3, Duration::from_secs(5)));
    let r = ex.wait_result(Duration::from_secs(30)).unwrap();
    assert_eq!(
        (r.outcome, r.attempts, r.http_status),
        (Outcome::Ok, 1, Some(200)),
        "{r:?}"
    );
    let posts = rx.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].0, "Bearer t0ken");
    let body: serde_json::Value = serde_json::from_str(&posts[0].1).unwrap();
    assert_eq!(body["trigger"], "batch-squeezed");
    assert_eq!(body["episode"], 7);
    assert_eq!(body["state"], "firing");
    assert_eq!(body["time"], "2026-03-02T12:00:40Z");
    assert_eq!(body["fields"]["pipe"], "wan");
    assert_eq!(body["fields"]["demand_bps"], "40000000");
}

#[test]
fn a_failing_receiver_is_retried_then_recorded_as_failed() {
    let rx = Receiver::start(503);
    let mut ex = executor(&[], &[&format!("127.0.0.1:{}", rx.port)]);
    ex.submit(webhook(&rx.url(), 2, Duration::from_secs(5)));
    let r = ex.wait_result(Duration::from_secs(30)).unwrap();
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!((r.attempts, r.http_status), (3, Some(503)));
    assert_eq!(r.error.as_deref(), Some("HTTP 503 (after 3 attempts)"));
    assert_eq!(rx.posts().len(), 3);
    // A receiver that never answers: each attempt times out.
    let silent = Receiver::start(0);
    let mut ex = executor(&[], &["127.0.0.1"]);
    ex.submit(webhook(&silent.url(), 1, Duration::from_millis(300)));
    let r = ex.wait_result(Duration::from_secs(30)).unwrap();
    assert_eq!((r.outcome, r.attempts), (Outcome::Failed, 2), "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("no answer"), "{r:?}");
    assert_eq!(silent.posts().len(), 2);
    // A host the node does not allow: refused, nothing sent.
    let mut ex = executor(&[], &["hooks.example.com"]);
    ex.submit(webhook(&rx.url(), 0, Duration::from_secs(1)));
    let r = ex.wait_result(Duration::from_secs(30)).unwrap();
    assert_eq!((r.outcome, r.attempts), (Outcome::Refused, 0));
    assert_eq!(rx.posts().len(), 3);
}

#[test]
fn submit_never_waits_and_a_full_queue_drops() {
    let tmp = Tmp::new("queue");
    let s = tmp.script("slow", "sleep 60");
    let node = ActionsConfig {
        allowed_commands: vec![s.clone()],
        workers: 1,
        queue: 2,
        ..Default::default()
    };
    let mut ex = Executor::new(ExecutorConfig::new(&node));
    for _ in 0..10 {
        ex.submit(command(&[&s], Duration::from_millis(500)));
    }
    // One running, two queued, the rest dropped at once (well before the
    // first could time out).
    let mut dropped = 0;
    while let Some(r) = ex.try_result() {
        assert_eq!(r.outcome, Outcome::Dropped);
        dropped += 1;
    }
    assert!((7..=8).contains(&dropped), "{dropped}");
    // The journal of everything.
    let mut journal = Journal::new(5);
    journal.push(Entry::Trigger(event()));
    let mut outcomes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while outcomes.len() < 10 - dropped && Instant::now() < deadline {
        if let Some(r) = ex.wait_result(Duration::from_millis(100)) {
            outcomes.push(r.outcome);
            journal.push(Entry::Action(r));
        }
    }
    assert!(outcomes.contains(&Outcome::TimedOut), "{outcomes:?}");
    assert_eq!(journal.len(), outcomes.len() + 1);
    let json = journal.since(0).last().unwrap().to_json();
    assert_eq!(
        (json["entry"].as_str(), json["kind"].as_str()),
        (Some("action"), Some("command"))
    );
    assert_eq!(
        journal.since(0).next().unwrap().to_json()["entry"],
        "trigger"
    );
    assert_eq!(
        journal.since(0).next().unwrap().line(),
        "2026-03-02T12:00:40Z batch-squeezed#7 firing on node 2: squeezed(batch, pipe=wan) \
         job=batch pipe=wan demand_bps=40000000"
    );
    let last = journal.since(0).last().unwrap().line();
    assert!(
        last.contains("batch-squeezed#7 command") && last.contains("timed_out"),
        "{last}"
    );
    assert!(ex.shutdown().is_empty());
    // A log action is recorded like the others.
    let mut ex = executor(&[], &[]);
    ex.submit(request(Action::Log(LogAction::default())));
    let r = ex.wait_result(Duration::from_secs(30)).unwrap();
    assert_eq!((r.kind, r.outcome), ("log", Outcome::Ok));
}
