//! Passive response times: a job with a goal, a real TCP server in the
//! host's namespace that sleeps a known time before each reply, and a
//! client that times every request itself. headroomd's workers see only
//! the frames, yet their median must be within 2 ms of the client's, every
//! request must be counted once and answered, and every connection's setup
//! timed.

mod common;

use std::{net::SocketAddr, time::Duration};

use common::{slow::*, *};
use headroom_lab::Lab;

const PORT: u16 = 8080;
const SLEEP: Duration = Duration::from_millis(20);
const CONNECTIONS: usize = 4;
const REQUESTS: usize = 25;

const JOB: &str = r#"
[[job]]
name = "api"
goal = { percentile = 90, within = "50ms" }
[[job.flow]]
protocol = "tcp"
local_port = "8080"
"#;

#[test]
fn measured_median_is_within_2ms_of_the_clients() {
    let mut lab = Lab::up(1, 1).expect("lab");
    let dir = TempDir::new(&format!("{}-response", lab.tag));
    let s = lab.servers[0].clone();
    let c = lab.clients[0].clone();
    let sock = dir.path("s1.sock");
    let sock = start_headroomd(&mut lab, &dir, 0, &server_config(&s, &sock, JOB));
    let srv = SlowServer::start(&s.host_ns, PORT, SLEEP);
    let times = timed_requests(
        &c.ns,
        SocketAddr::from((s.host_ip, PORT)),
        CONNECTIONS,
        REQUESTS,
    );
    drop(srv);
    let n = (CONNECTIONS * REQUESTS) as u64;
    let client_p50 = median(times);

    let mut last = None;
    let r = wait_for(Duration::from_secs(10), || {
        let r = status(&sock).job("api")?.response.clone()?;
        last = Some(r.clone());
        (r.answered == n && r.setups == CONNECTIONS as u64).then_some(r)
    })
    .unwrap_or_else(|| panic!("not every request measured: {last:?}"));
    let p50 = r.p50_ms.expect("a median");
    eprintln!(
        "client median {client_p50:.2} ms, headroomd median {p50:.2} ms (p90 {:?}, p99 {:?}), index {:?}, setup p50 {:?} ms",
        r.p90_ms, r.p99_ms, r.index, r.setup_p50_ms
    );
    assert_eq!(r.requests, n, "{r:?}");
    assert_eq!(r.unanswered, 0, "{r:?}");
    assert!(
        (p50 - client_p50).abs() <= 2.0,
        "median {p50:.2} ms, the client's {client_p50:.2} ms"
    );
    assert!(
        p50 >= SLEEP.as_secs_f64() * 1e3,
        "the server sleeps {SLEEP:?} before each reply"
    );
    // 90 % within 50 ms: about 20/50.
    let index = r.index.expect("an index");
    assert!((0.35..1.0).contains(&index), "index {index}");
    // headroomd's own memory, next to what SQLite holds of it.
    let m = status(&sock).memory.expect("memory in the status");
    assert!(m.rss_bytes > 4 << 20, "{m:?}");
    assert!(m.sqlite_bytes > 0 && m.sqlite_bytes < m.rss_bytes, "{m:?}");
    let (_, text, _) = headroomctl(&sock, &["status"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("response api:"))
        .unwrap_or_else(|| panic!("no response line in\n{text}"));
    assert!(line.contains("goal 90% within 50ms"), "{line}");
    assert!(text.contains("memory: resident "), "{text}");
}
