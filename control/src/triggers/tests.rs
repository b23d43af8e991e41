//! Triggers, schedules and failure policies in simulated time.

use std::path::Path;
use std::time::Duration;

use headroom_clock::{Timestamp, WallTime};
use headroom_config::{process::CpuShare, triggers::Action, Config, Rate};
use rand::{rngs::SmallRng, Rng, SeedableRng};

use super::*;

const BASE: &str = r#"
[node]
id = 1
address = "10.0.0.1"
[interfaces]
outer = "eth0"
inner = "eth1"
[actions]
allowed_commands = ["/bin/true"]
allowed_webhooks = ["127.0.0.1"]
[pool]
timezone = "Europe/Paris"
schedule_tolerance = "2s"
restore_after = "10s"
[[pipe]]
name = "wan"
capacity = "100Mbit"
[[job]]
name = "web"
booking = [{ pipe = "wan", rate = "50%" }]
cpu = { pool_percent = 50 }
[[job]]
name = "batch"
booking = [{ pipe = "wan", rate = "20%" }]
cpu = { pool_percent = 30 }
on_node_failure = { cpu = { pool_percent = 10 }, booking = [{ pipe = "wan", rate = "5%" }] }
[[variant]]
name = "night"
job = [{ name = "batch", booking = [{ pipe = "wan", rate = "40%" }] }, { name = "web", booking = [{ pipe = "wan", rate = "30%" }] }]
[[variant]]
name = "degraded"
job = [{ name = "batch", cpu = { pool_percent = 5 } }]
"#;

/// The test policy: BASE plus `extra`.
fn policy(extra: &str) -> Config {
    Config::parse(&format!("{BASE}{extra}"), Path::new("policy.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

const SQUEEZE: &str = r#"
[[trigger]]
name = "batch-squeezed"
condition = "squeezed(batch, pipe=wan)"
for = "30s"
cooldown = "5m"
action = [{ log = {} }, { command = { argv = ["/bin/true"] } }, { webhook = { url = "http://127.0.0.1:9/x" } }]
"#;

fn secs(s: u64) -> Timestamp {
    Timestamp::from_duration(Duration::from_secs(s))
}

/// 2026-03-02 (a Monday) 12:00:00 UTC plus `s` seconds.
fn wall(s: u64) -> WallTime {
    WallTime::from_unix_nanos((1_772_452_800 + s) * 1_000_000_000)
}

fn squeezed(on: bool) -> PoolSnapshot {
    PoolSnapshot {
        nodes: (1..=3).map(|id| NodeState { id, cores: 2.0 }).collect(),
        pipe_jobs: vec![PipeJob {
            job: "batch".into(),
            pipe: "wan".into(),
            demand_bps: if on { 40_000_000 } else { 10_000_000 },
            grant_bps: 20_000_000,
        }],
        ..Default::default()
    }
}

fn auto(cfg: &Config) -> Automation {
    let mut c = AutomationConfig::new(1);
    c.require_commit = false;
    Automation::new(c, cfg, 1, Timestamp::ZERO).unwrap()
}

fn drain(a: &mut Automation) -> (Vec<TriggerEvent>, Vec<ActionRequest>, Vec<AutomationEvent>) {
    let mut t = Vec::new();
    let mut e = Vec::new();
    while let Some(ev) = a.poll_event() {
        match &ev {
            AutomationEvent::Trigger(x) => t.push(x.clone()),
            _ => e.push(ev),
        }
    }
    let mut acts = Vec::new();
    while let Some(x) = a.poll_action() {
        acts.push(x);
    }
    (t, acts, e)
}

fn states(ev: &[TriggerEvent]) -> Vec<(&str, u64)> {
    ev.iter().map(|e| (e.state.name(), e.episode)).collect()
}

/// Runs `a` over `s` seconds, one snapshot every 2 s, `on(t)` saying
/// whether the condition holds; returns the trigger events and actions.
fn run(
    a: &mut Automation,
    from: u64,
    to: u64,
    on: impl Fn(u64) -> bool,
) -> (Vec<(u64, TriggerEvent)>, Vec<ActionRequest>) {
    let mut evs = Vec::new();
    let mut acts = Vec::new();
    let mut t = from;
    while t < to {
        a.handle_snapshot(secs(t), wall(t), &squeezed(on(t)));
        let (e, x, _) = drain(a);
        evs.extend(e.into_iter().map(|e| (t, e)));
        acts.extend(x);
        t += 2;
    }
    (evs, acts)
}

#[test]
fn pending_then_firing_then_resolved() {
    let cfg = policy(SQUEEZE);
    let mut a = auto(&cfg);
    let (evs, acts) = run(&mut a, 0, 120, |t| (10..80).contains(&t));
    let seen: Vec<(u64, &str, u64)> = evs
        .iter()
        .map(|(t, e)| (*t, e.state.name(), e.episode))
        .collect();
    assert_eq!(
        seen,
        [(10, "pending", 1), (40, "firing", 1), (80, "resolved", 1)]
    );
    // One run of each action, with the event's fields.
    assert_eq!(
        acts.iter().map(|r| r.action.kind()).collect::<Vec<_>>(),
        ["log", "command", "webhook"]
    );
    let ev = &acts[1].event;
    assert_eq!(ev.trigger, "batch-squeezed");
    let env = ev.env();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("HEADROOM_STATE"), Some("firing"));
    assert_eq!(get("HEADROOM_EPISODE"), Some("1"));
    assert_eq!(get("HEADROOM_PIPE"), Some("wan"));
    assert_eq!(get("HEADROOM_DEMAND_BPS"), Some("40000000"));
    assert_eq!(get("HEADROOM_TIME"), Some("2026-03-02T12:00:40Z"));
    assert_eq!(a.stats().fired, 1);
    assert_eq!(a.stats().resolved, 1);
    assert_eq!(a.triggers(secs(120))[0].state, "idle");
    assert_eq!(a.triggers(secs(120))[0].episodes, 1);
}

#[test]
fn for_not_yet_met_never_fires() {
    let cfg = policy(SQUEEZE);
    let mut a = auto(&cfg);
    // Holds 28 s of the 30 s `for`, three times.
    let (evs, acts) = run(&mut a, 0, 300, |t| (2..30).contains(&(t % 100)));
    assert!(
        evs.iter().all(|(_, e)| e.state == EventState::Pending),
        "{evs:?}"
    );
    assert_eq!(evs.len(), 3);
    assert!(acts.is_empty());
    // The deadline a driver waits for is the end of `for`.
    a.handle_snapshot(secs(300), wall(300), &squeezed(true));
    assert_eq!(a.poll_timeout(), Some(secs(330)));
    a.handle_timeout(secs(330), wall(330));
    let (e, x, _) = drain(&mut a);
    assert_eq!(states(&e), [("pending", 1), ("firing", 1)]);
    assert_eq!(x.len(), 3);
}

#[test]
fn cooldown_delays_the_next_episode() {
    let cfg = policy(SQUEEZE);
    let mut a = auto(&cfg);
    // Episode 1 fires at 30; clears at 60; holds again from 100 (for met at
    // 130, inside the 5 min cooldown of 30): waits until 330.
    let (evs, acts) = run(&mut a, 0, 400, |t| !(60..100).contains(&t));
    let seen: Vec<(u64, &str, u64)> = evs
        .iter()
        .map(|(t, e)| (*t, e.state.name(), e.episode))
        .collect();
    assert_eq!(
        seen,
        [
            (0, "pending", 1),
            (30, "firing", 1),
            (60, "resolved", 1),
            (100, "pending", 2),
            (130, "suppressed", 2),
            (330, "firing", 2)
        ]
    );
    assert_eq!(acts.len(), 6);
    assert_eq!(a.triggers(secs(400))[0].state, "firing");
}

#[test]
fn flapping_fires_once_per_episode() {
    let flap = SQUEEZE
        .replace("for = \"30s\"", "for = \"0s\"")
        .replace("\"5m\"", "\"1m\"");
    let cfg = policy(&flap);
    let mut a = auto(&cfg);
    // True 4 s, false 2 s, for 10 minutes: 100 episodes begin, the cooldown
    // lets one fire per minute, and each fires its actions once.
    let (evs, acts) = run(&mut a, 0, 600, |t| t % 6 < 4);
    let fired = evs
        .iter()
        .filter(|(_, e)| e.state == EventState::Firing)
        .count();
    assert_eq!(
        fired,
        10,
        "{:?}",
        states(&evs.iter().map(|e| e.1.clone()).collect::<Vec<_>>())
    );
    assert_eq!(acts.len(), 3 * fired);
    let mut eps: Vec<u64> = acts.iter().map(|a| a.event.episode).collect();
    eps.dedup();
    assert_eq!(eps, (1..=10).collect::<Vec<_>>());
    // With `for` longer than the runs, nothing fires at all.
    let cfg = policy(&SQUEEZE.replace("\"30s\"", "\"5s\""));
    let mut a = auto(&cfg);
    let (evs, acts) = run(&mut a, 0, 600, |t| t % 6 < 4);
    assert!(acts.is_empty());
    assert!(evs.iter().all(|(_, e)| e.state == EventState::Pending));
}

#[test]
fn events_fire_when_seen_and_respect_the_cooldown() {
    let cfg = policy(
        r#"
[[trigger]]
name = "exits"
condition = "process_exited(batch)"
cooldown = "10s"
action = [{ log = {} }]
[[trigger]]
name = "joins"
condition = "node_joined"
action = [{ log = {} }]
"#,
    );
    let mut a = auto(&cfg);
    let mut snap = squeezed(false);
    a.handle_snapshot(secs(0), wall(0), &snap);
    snap.exits = vec![ProcessExit {
        job: "batch".into(),
        node: 2,
        pid: 77,
        comm: "worker".into(),
        count: 1,
    }];
    a.handle_snapshot(secs(2), wall(2), &snap);
    a.handle_snapshot(secs(4), wall(4), &snap);
    a.handle_timeout(secs(5), wall(5));
    a.handle_snapshot(secs(14), wall(14), &snap);
    let (e, x, _) = drain(&mut a);
    assert_eq!(
        states(&e),
        [("firing", 1), ("suppressed", 2), ("firing", 2)],
        "{e:?}"
    );
    assert_eq!(x.len(), 2);
    assert!(x[0].event.fields.contains(&("pids".into(), "77".into())));
    // A node joining fires once; the first snapshot is only a baseline.
    snap.exits.clear();
    snap.nodes.push(NodeState { id: 4, cores: 2.0 });
    a.handle_snapshot(secs(16), wall(16), &snap);
    a.handle_snapshot(secs(18), wall(18), &snap);
    let (e, _, _) = drain(&mut a);
    assert_eq!(states(&e), [("firing", 1)]);
    assert_eq!(e[0].trigger, "joins");
    assert_eq!(e[0].fields, [("nodes".to_string(), "4".to_string())]);
    assert_eq!(a.triggers(secs(18))[1].state, "idle");
}

#[test]
fn conditions_over_the_snapshot() {
    let cfg = policy(
        r#"
[[trigger]]
name = "hot"
condition = "utilisation(wan) > 90%"
action = [{ log = {} }]
[[trigger]]
name = "small"
condition = "pool_cores < 5"
action = [{ log = {} }]
[[trigger]]
name = "short"
condition = "insufficient_resources(pipe=wan)"
action = [{ log = {} }]
[[trigger]]
name = "cpu"
condition = "squeezed(web, cpu, by=10%)"
action = [{ log = {} }]
[[trigger]]
name = "instances"
condition = "instances_changed(web)"
action = [{ log = {} }]
"#,
    );
    let mut a = auto(&cfg);
    let mut s = squeezed(false);
    s.pipes = vec![PipeState {
        name: "wan".into(),
        capacity_bps: 100_000_000,
        sent_bps: 95_000_000,
    }];
    s.jobs = vec![JobState {
        job: "web".into(),
        instances: 2,
        cpu_demand_cores: 1.05,
        cpu_grant_cores: 1.0,
    }];
    a.handle_snapshot(secs(0), wall(0), &s);
    let (e, _, _) = drain(&mut a);
    assert_eq!(
        e.iter().map(|e| e.trigger.as_str()).collect::<Vec<_>>(),
        ["hot"]
    );
    assert!(e[0]
        .fields
        .contains(&("utilisation_percent".into(), "95.0".into())));
    s.nodes.pop();
    s.alarms = vec![Alarm::InsufficientBandwidth { pipe: "wan".into() }];
    s.jobs[0].cpu_demand_cores = 1.2;
    s.jobs[0].instances = 3;
    a.handle_snapshot(secs(2), wall(2), &s);
    let (e, _, _) = drain(&mut a);
    assert_eq!(
        e.iter().map(|e| e.trigger.as_str()).collect::<Vec<_>>(),
        ["small", "short", "cpu", "instances"]
    );
    assert!(e[3].fields.contains(&("to".into(), "3".into())));
}

/// A pool of `n` nodes in which the master runs the automation and every
/// other node keeps the records it publishes (a share of them lost).
struct Pool {
    cfg: Config,
    standbys: Vec<Standby>,
    live: Vec<bool>,
    master: usize,
    auto: Automation,
    ran: Vec<(usize, ActionRequest)>,
    events: Vec<(usize, TriggerEvent)>,
    rng: SmallRng,
    loss: f64,
}

impl Pool {
    fn new(n: usize, cfg: Config, loss: f64) -> Self {
        Pool {
            auto: Automation::new(AutomationConfig::new(1), &cfg, 1, Timestamp::ZERO).unwrap(),
            cfg,
            standbys: (0..n).map(|_| Standby::new()).collect(),
            live: vec![true; n],
            master: 0,
            ran: Vec::new(),
            events: Vec::new(),
            rng: SmallRng::seed_from_u64(n as u64),
            loss,
        }
    }

    fn successor(&self) -> Option<usize> {
        (0..self.live.len()).find(|&i| i != self.master && self.live[i])
    }

    /// One evaluation by the master, then publication of its record; the
    /// successor's receipt commits it.
    fn tick(&mut self, t: u64, snap: &PoolSnapshot) {
        let now = secs(t);
        self.auto.handle_snapshot(now, wall(t), snap);
        let bytes = self.auto.record(now).encode();
        let seq = self.auto.seq();
        let succ = self.successor();
        for i in 0..self.live.len() {
            if i == self.master || !self.live[i] || self.rng.gen_bool(self.loss) {
                continue;
            }
            self.standbys[i]
                .on_record(now, self.master as u32 + 1, &bytes)
                .unwrap();
            if Some(i) == succ {
                self.auto.on_record_committed(now, seq);
            }
        }
        while let Some(r) = self.auto.poll_action() {
            self.ran.push((self.master, r));
        }
        while let Some(e) = self.auto.poll_event() {
            if let AutomationEvent::Trigger(e) = e {
                self.events.push((self.master, e));
            }
        }
    }

    /// The master dies; the successor takes over from its standby record.
    fn fail_master(&mut self, t: u64) {
        self.live[self.master] = false;
        let next = self.successor_after_failure();
        let rec = self.standbys[next].current(secs(t));
        self.auto = Automation::take_over(
            AutomationConfig::new(next as u32 + 1),
            &self.cfg,
            1,
            secs(t),
            rec,
        )
        .unwrap();
        self.master = next;
        for s in &mut self.standbys {
            s.set_master(next as u32 + 1);
        }
    }

    fn successor_after_failure(&self) -> usize {
        (0..self.live.len()).find(|&i| self.live[i]).unwrap()
    }
}

#[test]
fn failover_mid_episode_never_fires_twice() {
    for n in [3, 16, 64, 256] {
        let cfg = policy(SQUEEZE);
        let mut pool = Pool::new(n, cfg, 0.3);
        let on = |t: u64| (10..200).contains(&t);
        let mut t = 0;
        while t < 300 {
            // The master fails while the episode fires, twice.
            if t == 60 || t == 120 {
                pool.fail_master(t);
            }
            pool.tick(t, &squeezed(on(t)));
            t += 2;
        }
        let fired: Vec<_> = pool
            .events
            .iter()
            .filter(|(_, e)| e.state == EventState::Firing)
            .collect();
        assert_eq!(fired.len(), 1, "n={n}: {:?}", pool.events);
        assert_eq!(pool.ran.len(), 3, "n={n}");
        let resolved: Vec<_> = pool
            .events
            .iter()
            .filter(|(_, e)| e.state == EventState::Resolved)
            .collect();
        assert_eq!(resolved.len(), 1, "n={n}");
        // Resolved by the third master, episode 1 continued.
        assert_eq!((resolved[0].0, resolved[0].1.episode), (2, 1), "n={n}");
        assert_eq!(pool.auto.stats().episodes_continued, 1);
    }
}

#[test]
fn a_master_dying_before_its_firing_is_committed_never_acted() {
    let cfg = policy(SQUEEZE);
    // No record reaches anyone: the firing is never committed.
    let mut pool = Pool::new(3, cfg, 1.0);
    for t in (0..42).step_by(2) {
        pool.tick(t, &squeezed(t >= 10));
    }
    // Fired at 40 on node 0 but its actions are held.
    assert_eq!(pool.events.last().unwrap().1.state, EventState::Firing);
    assert!(pool.ran.is_empty());
    pool.loss = 0.0;
    pool.fail_master(42);
    for t in (42..120).step_by(2) {
        pool.tick(t, &squeezed(true));
    }
    // Node 1 did not know the episode, saw it pending from 42 and fired it
    // once at 72; only its actions ran.
    assert_eq!(pool.ran.len(), 3);
    assert!(pool
        .ran
        .iter()
        .all(|(m, r)| *m == 1 && r.event.episode == 1));
    // Held actions of an uncommitted firing go out after the commit timeout.
    let mut a = Automation::new(
        AutomationConfig::new(1),
        &policy(SQUEEZE),
        1,
        Timestamp::ZERO,
    )
    .unwrap();
    a.handle_snapshot(secs(0), wall(0), &squeezed(true));
    a.handle_snapshot(secs(30), wall(30), &squeezed(true));
    assert!(a.poll_action().is_none());
    assert_eq!(a.poll_timeout(), Some(secs(35)));
    a.handle_timeout(secs(35), wall(35));
    assert!(a.poll_action().is_some());
    assert_eq!(a.stats().commit_timeouts, 3);
}

#[test]
fn the_record_round_trips_and_rejects_garbage() {
    let cfg = policy(SQUEEZE);
    let mut a = auto(&cfg);
    run(&mut a, 0, 50, |_| true);
    let r = a.record(secs(50));
    let b = r.encode();
    assert!(b.len() < 200, "{} bytes", b.len());
    assert_eq!(FailoverRecord::decode(&b).unwrap(), r);
    assert_eq!(
        FailoverRecord::decode(&[]),
        Err(RecordError::Malformed("empty".into()))
    );
    assert_eq!(
        FailoverRecord::decode(&[9, 1]),
        Err(RecordError::Version(9))
    );
    let mut rng = SmallRng::seed_from_u64(7);
    let mut s = Standby::new();
    for i in 0..20_000 {
        let mut m = b.clone();
        if i % 2 == 0 {
            let p = rng.gen_range(0..m.len());
            m[p] = rng.gen();
            m.truncate(rng.gen_range(1..=m.len()));
        } else {
            m = (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect();
            m.insert(0, RECORD_VERSION_FOR_TESTS);
        }
        record::fuzz(&m);
        let _ = s.on_record(secs(1), 1, &m);
    }
    assert!(s.malformed > 0);
}

const RECORD_VERSION_FOR_TESTS: u8 = record::RECORD_VERSION;

// ------------------------------------------------------------- schedules

const NIGHT: &str = r#"
[[schedule]]
name = "night"
variant = "night"
hour = 22
[[schedule]]
name = "day"
hour = 6
"#;

fn at(s: &str) -> WallTime {
    let ts: jiff::Timestamp = s.parse().unwrap();
    WallTime::from_unix_nanos(ts.as_nanosecond() as u64)
}

fn unix(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_second()
}

#[test]
fn schedules_select_by_local_time() {
    let s = Schedules::new(&policy(NIGHT)).unwrap();
    // Paris is UTC+1 in March: 22:00 local is 21:00Z.
    let d = s.decide(at("2026-03-02T20:59:59Z"), None);
    assert_eq!(d.variant(), None);
    assert_eq!(d.current.as_ref().unwrap().schedule, "day");
    assert_eq!(
        d.next.as_ref().unwrap().unix_secs,
        unix("2026-03-02T21:00:00Z")
    );
    let d = s.decide(at("2026-03-02T21:00:00Z"), None);
    assert_eq!(d.variant(), Some("night"));
    assert_eq!(
        d.next.as_ref().unwrap().unix_secs,
        unix("2026-03-03T05:00:00Z")
    );
    // Summer: UTC+2.
    assert_eq!(
        s.next(at("2026-07-01T00:00:00Z")).unwrap().unix_secs,
        unix("2026-07-01T04:00:00Z")
    );
    // Weekdays only, every 15 minutes from 8 to 18.
    let p = policy(
        "[[schedule]]\nname = \"w\"\nvariant = \"night\"\nminute = \"*/15\"\nhour = \"8-18\"\nday_of_week = \"mon-fri\"\n",
    );
    let s = Schedules::new(&p).unwrap();
    // Saturday 2026-03-07 10:00 local: the last was Friday 18:45 local.
    let c = s.current(at("2026-03-07T09:00:00Z")).unwrap();
    assert_eq!(c.unix_secs, unix("2026-03-06T17:45:00Z"));
    assert_eq!(
        s.next(at("2026-03-07T09:00:00Z")).unwrap().unix_secs,
        unix("2026-03-09T07:00:00Z")
    );
}

#[test]
fn daylight_saving_changes_keep_boundaries_in_order_and_once() {
    // Europe/Paris: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00.
    let p = policy("[[schedule]]\nname = \"half\"\nvariant = \"night\"\nminute = 30\nhour = 2\n[[schedule]]\nname = \"three\"\nhour = 3\nminute = 15\n");
    let s = Schedules::new(&p).unwrap();
    // 02:30 does not exist on 29 March: it takes effect at the jump (01:00Z).
    let b = s.next(at("2026-03-29T00:00:00Z")).unwrap();
    assert_eq!(
        (b.schedule.as_str(), b.unix_secs),
        ("half", unix("2026-03-29T01:00:00Z"))
    );
    // ... and 03:15 CEST (01:15Z) still follows it.
    let b = s.next(b.at()).unwrap();
    assert_eq!(
        (b.schedule.as_str(), b.unix_secs),
        ("three", unix("2026-03-29T01:15:00Z"))
    );
    // 02:30 happens twice on 25 October: it counts once, the first time (00:30Z).
    let b = s.next(at("2026-10-25T00:00:00Z")).unwrap();
    assert_eq!(
        (b.schedule.as_str(), b.unix_secs),
        ("half", unix("2026-10-25T00:30:00Z"))
    );
    let b = s.next(b.at()).unwrap();
    assert_eq!(
        (b.schedule.as_str(), b.unix_secs),
        ("three", unix("2026-10-25T02:15:00Z"))
    );
    // Every 10 minutes across both nights: strictly increasing, 10 min apart
    // except where an hour is skipped or repeated.
    let p = policy("[[schedule]]\nname = \"ten\"\nminute = \"*/10\"\n");
    let s = Schedules::new(&p).unwrap();
    for (from, skipped, repeated) in [
        ("2026-03-28T23:00:00Z", 1, 0),
        ("2026-10-24T23:00:00Z", 0, 1),
    ] {
        let mut t = at(from);
        let mut gaps = Vec::new();
        for _ in 0..30 {
            let b = s.next(t).unwrap();
            gaps.push((b.at() - t).as_secs());
            t = b.at();
        }
        let first = gaps.remove(0);
        assert_eq!(first, 600);
        // Spring: 02:00-02:50 collapse onto the jump instant, so one step
        // of 10 min and then nothing for the skipped times; the next
        // boundary after the jump is 03:10 local.
        let long = gaps.iter().filter(|&&g| g == 70 * 60).count();
        let ten = gaps.iter().filter(|&&g| g == 600).count();
        assert!(gaps.iter().all(|&g| g > 0), "{gaps:?}");
        if skipped == 1 {
            // 01:50 -> 02:xx (= 03:00, the jump) -> 03:10: all 10 min.
            assert_eq!(ten, gaps.len(), "{gaps:?}");
        }
        if repeated == 1 {
            // 02:50 CEST -> 03:00 CET is 70 minutes (the repeated hour is skipped).
            assert_eq!(long, 1, "{gaps:?}");
        }
    }
}

#[test]
fn skewed_clocks_agree_on_the_variant_at_the_boundary() {
    let cfg = policy(NIGHT);
    let boundary = unix("2026-03-02T21:00:00Z");
    let tol = cfg.pool.schedule_tolerance;
    let mut rng = SmallRng::seed_from_u64(3);
    for n in [3usize, 16, 64] {
        // Clock offsets within ±tolerance/2 (so any two differ by ≤ tolerance).
        let half = tol.as_millis() as i64 / 2;
        let mut offsets: Vec<i64> = (0..n).map(|_| rng.gen_range(-half..=half)).collect();
        // The first master runs ahead, its successor behind: at the first
        // failover (true time B - 0.5 s) the pool has switched, and the new
        // master's own clock says the boundary is 1.5 s away.
        offsets[0] = half;
        offsets[1] = -half;
        let wall_of = |i: usize, true_ms: i64| {
            WallTime::from_unix_nanos(((true_ms + offsets[i]) * 1_000_000) as u64)
        };
        let mut pool = Pool::new(n, cfg.clone(), 0.0);
        let start = (boundary - 10) * 1000;
        let mut variants = Vec::new();
        let mut step = 0;
        let mut true_ms = start;
        while true_ms < (boundary + 10) * 1000 {
            // Masters fail one after the other around the boundary.
            let live = pool.live.iter().filter(|l| **l).count();
            if [95, 99, 100, 101, 104].contains(&step) && live > 1 {
                let t = step as u64;
                pool.live[pool.master] = false;
                let next = pool.successor_after_failure();
                let rec = pool.standbys[next].current(secs(t));
                pool.auto = Automation::take_over(
                    AutomationConfig::new(next as u32 + 1),
                    &cfg,
                    1,
                    secs(t),
                    rec,
                )
                .unwrap();
                pool.master = next;
                for s in &mut pool.standbys {
                    s.set_master(next as u32 + 1);
                }
            }
            let now = secs(step as u64);
            let w = wall_of(pool.master, true_ms);
            pool.auto.handle_timeout(now, w);
            let bytes = pool.auto.record(now).encode();
            for i in 0..n {
                if pool.live[i] && i != pool.master {
                    pool.standbys[i]
                        .on_record(now, pool.master as u32 + 1, &bytes)
                        .unwrap();
                }
            }
            variants.push((true_ms, pool.auto.active_variant().map(str::to_string)));
            true_ms += 100;
            step += 1;
        }
        // The pool switches once, never back, within the skew of the boundary.
        let switches: Vec<_> = variants.windows(2).filter(|w| w[0].1 != w[1].1).collect();
        assert_eq!(switches.len(), 1, "n={n}: {switches:?}");
        let t = switches[0][1].0;
        let skew = tol.as_millis() as i64 / 2;
        assert!(
            (t - boundary * 1000).abs() <= skew + 100,
            "n={n}: switched at {t}"
        );
        assert_eq!(variants.last().unwrap().1.as_deref(), Some("night"));
        // Any node deciding alone, at any true moment outside the skew
        // window, names the same variant as every other node.
        let s = Schedules::new(&cfg).unwrap();
        for (tm, _) in variants.iter().step_by(5) {
            if (tm - boundary * 1000).abs() <= skew {
                continue;
            }
            let views: Vec<_> = (0..n)
                .map(|i| s.decide(wall_of(i, *tm), None).current)
                .collect();
            assert!(views.windows(2).all(|w| w[0] == w[1]), "n={n} at {tm}");
        }
    }
    // A new master whose clock is behind keeps the boundary its predecessor
    // applied (within the tolerance) instead of reverting.
    let s = Schedules::new(&cfg).unwrap();
    let applied = s.current(at("2026-03-02T21:00:00Z")).unwrap();
    let behind = at("2026-03-02T20:59:59Z");
    assert_eq!(s.decide(behind, Some(&applied)).variant(), Some("night"));
    assert_eq!(s.decide(behind, None).variant(), None);
    let far_behind = at("2026-03-02T20:59:00Z");
    assert_eq!(s.decide(far_behind, Some(&applied)).variant(), None);
}

#[test]
fn trigger_variants_override_schedules_while_firing() {
    let cfg = policy(&format!(
        "{NIGHT}[[trigger]]\nname = \"lost\"\ncondition = \"node_failed\"\naction = [{{ variant = \"degraded\" }}]\n"
    ));
    let mut a = auto(&cfg);
    let mut s = squeezed(false);
    // 2026-03-02 12:00Z: day.
    a.handle_snapshot(secs(0), wall(0), &s);
    assert_eq!(a.active_variant(), None);
    s.nodes.retain(|n| n.id != 3);
    s.failed = vec![3];
    a.handle_snapshot(secs(2), wall(2), &s);
    assert_eq!(a.active_variant(), Some("degraded"));
    let (_, _, eff) = drain(&mut a);
    assert!(matches!(
        eff.last(),
        Some(AutomationEvent::Effective { variant: Some(v), node_failure: true, .. }) if v == "degraded"
    ));
    // Node 3 returns: the trigger resolves at once, the failure policy
    // lasts restore_after more.
    s.failed.clear();
    s.nodes.push(NodeState { id: 3, cores: 2.0 });
    a.handle_snapshot(secs(4), wall(4), &s);
    assert_eq!(a.active_variant(), None);
    assert!(a.failure().degraded);
}

#[test]
fn failure_policy_on_node_loss_and_restore() {
    let cfg = policy("");
    let mut pool = Pool::new(5, cfg, 0.0);
    let batch = |c: &Config| c.jobs.iter().find(|j| j.name == "batch").unwrap().clone();
    let mut snap = PoolSnapshot {
        nodes: (1..=5).map(|id| NodeState { id, cores: 2.0 }).collect(),
        ..Default::default()
    };
    pool.tick(0, &snap);
    assert!(!pool.auto.failure().degraded);
    assert_eq!(
        batch(&pool.auto.effective_policy()).cpu.unwrap().share,
        CpuShare::PoolPercent(30.0)
    );
    // Node 4 fails.
    snap.nodes.retain(|n| n.id != 4);
    snap.failed = vec![4];
    pool.tick(2, &snap);
    let eff = pool.auto.effective_policy();
    assert_eq!(batch(&eff).cpu.unwrap().share, CpuShare::PoolPercent(10.0));
    assert_eq!(batch(&eff).bookings[0].rate, Rate::Percent(5.0));
    assert_eq!(pool.auto.failure().lost, [4]);
    // The exchange forgets the tombstone; the pool still misses node 4,
    // also after the master itself fails.
    snap.failed.clear();
    pool.tick(40, &snap);
    assert!(pool.auto.failure().degraded);
    pool.fail_master(42);
    snap.nodes.retain(|n| n.id != 1);
    snap.failed = vec![1];
    pool.tick(42, &snap);
    assert_eq!(pool.auto.failure().lost, [1, 4]);
    // Node 4 comes back, bounces, comes back: restored restore_after after
    // the last return, not before.
    snap.failed.clear();
    snap.nodes.push(NodeState { id: 4, cores: 2.0 });
    snap.nodes.push(NodeState { id: 1, cores: 2.0 });
    pool.tick(50, &snap);
    assert_eq!(pool.auto.failure().restore_at, Some(secs(60)));
    snap.nodes.retain(|n| n.id != 4);
    snap.failed = vec![4];
    pool.tick(52, &snap);
    assert_eq!(pool.auto.failure().restore_at, None);
    snap.failed.clear();
    snap.nodes.push(NodeState { id: 4, cores: 2.0 });
    pool.tick(54, &snap);
    pool.tick(62, &snap);
    assert!(pool.auto.failure().degraded);
    pool.tick(64, &snap);
    assert!(!pool.auto.failure().degraded);
    assert_eq!(
        batch(&pool.auto.effective_policy()).cpu.unwrap().share,
        CpuShare::PoolPercent(30.0)
    );
    // A node that leaves gracefully is not a failure.
    snap.nodes.retain(|n| n.id != 5);
    snap.left = vec![5];
    pool.tick(66, &snap);
    assert!(!pool.auto.failure().degraded);
}

#[test]
fn adjustments_move_by_bounded_steps() {
    let cfg = policy(
        r#"
[[trigger]]
name = "grow"
condition = "squeezed(batch, pipe=wan)"
action = [{ adjust = { job = "batch", booking = { pipe = "wan", step = "+4%", limit = "30%" } } },
          { adjust = { job = "web", cpu = { step = -15, limit = 40 } } }]
"#,
    );
    let mut a = auto(&cfg);
    let (_, acts) = run(&mut a, 0, 40, |t| t % 4 == 0);
    assert!(
        acts.is_empty(),
        "adjust is applied by the automation itself"
    );
    let eff = a.effective_policy();
    let batch = eff.jobs.iter().find(|j| j.name == "batch").unwrap();
    // 20% + 4% per episode, 10 episodes, never past 30%.
    assert_eq!(batch.bookings[0].rate, Rate::Bps(30_000_000));
    let web = eff.jobs.iter().find(|j| j.name == "web").unwrap();
    assert_eq!(web.cpu.unwrap().share, CpuShare::PoolPercent(40.0));
    // A new policy version drops them.
    a.reconfigure(secs(40), &cfg, 2).unwrap();
    assert!(a.adjustments().is_empty());
    let _ = Action::Variant(String::new());
}

#[test]
fn timeouts_before_any_snapshot_evaluate_only_schedules() {
    let cfg = policy(&format!(
        "{NIGHT}[[trigger]]\nname = \"small\"\ncondition = \"pool_cores < 4\"\naction = [{{ log = {{}} }}]\n"
    ));
    let mut a = auto(&cfg);
    a.handle_timeout(secs(0), at("2026-03-02T21:30:00Z"));
    let (t, _, eff) = drain(&mut a);
    assert!(t.is_empty(), "{t:?}");
    assert!(
        matches!(&eff[..], [AutomationEvent::Effective { variant: Some(v), cause: Cause::Start, .. }] if v == "night")
    );
    assert_eq!(a.poll_wall_timeout(), Some(at("2026-03-03T05:00:00Z")));
    // A new document keeps the state of unchanged triggers by name.
    a.handle_snapshot(secs(2), wall(2), &PoolSnapshot::default());
    assert_eq!(a.triggers(secs(2))[0].state, "firing");
    a.reconfigure(secs(3), &cfg, 2).unwrap();
    assert_eq!(a.triggers(secs(3))[0].state, "firing");
    assert_eq!(a.triggers(secs(3))[0].episodes, 1);
    let changed = policy(&format!(
        "{NIGHT}[[trigger]]\nname = \"small\"\ncondition = \"pool_cores < 2\"\naction = [{{ log = {{}} }}]\n"
    ));
    a.reconfigure(secs(4), &changed, 3).unwrap();
    assert_eq!(a.triggers(secs(4))[0].state, "idle");
    assert_eq!(a.triggers(secs(4))[0].episodes, 1);
}

#[test]
fn standbys_keep_only_the_current_masters_record() {
    let cfg = policy(SQUEEZE);
    let mut old = auto(&cfg);
    run(&mut old, 0, 50, |_| true);
    let old_rec = old.record(secs(50));
    // A new master that had no record starts its own count at 1.
    let fresh = auto(&cfg).record(secs(50));
    assert!(fresh.seq < old_rec.seq);
    let mut s = Standby::new();
    s.set_master(1);
    s.on_record(secs(50), 1, &old_rec.encode()).unwrap();
    s.set_master(2);
    s.on_record(secs(51), 2, &fresh.encode()).unwrap();
    assert_eq!(s.current(secs(51)).unwrap().seq, fresh.seq);
    // A late datagram of the failed master changes nothing.
    s.on_record(secs(52), 1, &old_rec.encode()).unwrap();
    assert_eq!(
        (s.current(secs(52)).unwrap().seq, s.not_master),
        (fresh.seq, 1)
    );
    // Reordered records of one master: the newer stays.
    let mut newer = fresh.clone();
    newer.seq += 5;
    s.on_record(secs(53), 2, &newer.encode()).unwrap();
    s.on_record(secs(53), 2, &fresh.encode()).unwrap();
    assert_eq!((s.current(secs(53)).unwrap().seq, s.stale), (newer.seq, 1));
    // Ages advance with the receiver's own clock.
    let mut s = Standby::new();
    s.on_record(secs(50), 1, &old_rec.encode()).unwrap();
    let f = s.current(secs(60)).unwrap();
    let fired = old_rec.triggers[0].fired_ago_ms.unwrap();
    assert_eq!(f.triggers[0].fired_ago_ms, Some(fired + 10_000));
    assert!(matches!(
        (old_rec.triggers[0].phase, f.triggers[0].phase),
        (record::PhaseRecord::Firing { firing_ms: a, .. }, record::PhaseRecord::Firing { firing_ms: b, .. }) if b == a + 10_000
    ));
}
