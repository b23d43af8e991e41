//! The agent in simulated time: whole pools of agents over a simulated,
//! lossy network, with real pacers offered simulated traffic. No sockets,
//! no clock: every run is a function of its seed.

use std::{collections::BTreeMap, net::Ipv4Addr, net::SocketAddr, path::Path, time::Duration};

use headroom_clock::Timestamp;
use headroom_config::Config;
use headroom_control::health::probe::{ProbeFailure, ProbeResult};
use headroom_dataplane::pacer::{Admit, Pacer};
use rand::{rngs::SmallRng, Rng, SeedableRng};

use super::*;

const STEP: Duration = Duration::from_millis(1);
const PKT: u32 = 1500;
/// 100 Mbit/s over a 20 ms interval.
const CAP: f64 = 100e6 / 8.0 * 0.02;
const KEY: &[u8] = b"simulated pool key, 32 bytes...!";

fn address(id: u16) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, (id >> 8) as u8, id as u8)
}

fn host(id: u16) -> Ipv4Addr {
    Ipv4Addr::new(10, 2, (id >> 8) as u8, id as u8)
}

fn host_mac(id: u16) -> [u8; 6] {
    [2, 0, 0, 0, (id >> 8) as u8, id as u8]
}

/// The config of node `id` in a pool of `n`: `extra` appended.
fn config(id: u16, n: u16, extra: &str) -> Config {
    let peers: Vec<String> = (1..=n.min(3))
        .map(|p| format!("\"{p}@{}:7946\"", address(p)))
        .collect();
    let src = format!(
        r#"
[node]
id = {id}
address = "{addr}"
[interfaces]
outer = "outer"
inner = "inner"
[control]
socket = "/nonexistent/sock"
high_freq_interval = "20ms"
low_freq_interval = "1s"
[exchange]
key_file = "/nonexistent/pool.key"
peers = [{peers}]
failure_timeout = "600ms"
{extra}"#,
        addr = address(id),
        peers = peers.join(", "),
    );
    Config::parse(&src, Path::new("sim.toml")).expect("valid simulated config")
}

const PIPE: &str = r#"
[[pipe]]
name = "uplink"
capacity = "100Mbit"
[[job]]
name = "web"
[[job.booking]]
pipe = "uplink"
rate = "60%"
[[job]]
name = "bulk"
[[job.booking]]
pipe = "uplink"
rate = "40%"
"#;

/// One simulated server: its agent, its worker's pacer and its traffic.
struct Node {
    agent: Agent,
    pacer: Option<Pacer<u16>>,
    alive: bool,
    /// (job id, offered bit/s).
    offered: Vec<(u16, f64)>,
    owed: Vec<f64>,
    /// Frames the agent had sent, with when.
    frames: Vec<(Timestamp, Vec<u8>)>,
    /// Probes the agent asked for: (node probed, token).
    probes: Vec<(NodeId, u64)>,
    /// Neighbour table this node's kernel has.
    neighbours: Vec<(Ipv4Addr, [u8; 6])>,
    resolve_requests: Vec<Ipv4Addr>,
    /// Peer CPU entries each process-scheduler tick was given.
    cpu_ticks: Vec<Vec<Vec<u8>>>,
    /// The policy state last persisted.
    persisted: Option<Vec<u8>>,
    /// Answers to this node's policy applies.
    answers: Vec<(ReqId, PolicyAnswer)>,
    /// Trigger actions the agent asked the executor to run.
    actions: Vec<headroom_control::triggers::ActionRequest>,
    /// Journal entries the agent handed to the history store.
    journaled: Vec<crate::automation::EventRow>,
    /// What this node's process scheduler reports at each tick.
    cpu: ProcSchedSnapshot,
}

struct Sim {
    now: Timestamp,
    rng: SmallRng,
    loss: f64,
    nodes: Vec<Node>,
    by_addr: BTreeMap<SocketAddr, usize>,
    /// (delivery time, destination, source, payload).
    inflight: Vec<(Timestamp, usize, SocketAddr, Vec<u8>)>,
    /// Bytes sent per job, per 20 ms interval.
    sent: Vec<BTreeMap<u16, f64>>,
    /// Whether probes of a node's instance succeed.
    healthy: BTreeMap<NodeId, bool>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        Sim {
            now: Timestamp::ZERO,
            rng: SmallRng::seed_from_u64(seed),
            loss: 0.01,
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            inflight: Vec::new(),
            sent: Vec::new(),
            healthy: BTreeMap::new(),
        }
    }

    /// Starts node `id` of a pool of `n` with [`config`]`(id, n, extra)`
    /// now, its policy sections as the node file's initial policy.
    fn add(&mut self, id: u16, n: u16, extra: &str) -> usize {
        let initial = headroom_config::initial_policy(extra);
        self.add_with(config(id, n, extra), initial.as_deref(), None)
    }

    /// Starts a node with `cfg`, the node file's `initial` policy and the
    /// policy `state` it persisted before.
    fn add_with(&mut self, cfg: Config, initial: Option<&str>, state: Option<Vec<u8>>) -> usize {
        let seed = self.rng.gen();
        let addr = SocketAddr::from((cfg.node.address, cfg.exchange.port));
        let setup = AgentSetup {
            workers: 1,
            pool: Some(PoolSetup {
                key: KEY.to_vec(),
                rotation_key: None,
                epoch: 1 + self.nodes.len() as u32,
                rng_seed: seed,
                wall_ms: 1_796_231_110_000 + self.now.as_nanos() / 1_000_000,
                policy_state: state,
                initial_policy: initial.map(|s| s.as_bytes().to_vec()),
            }),
            wall_ms: 1_796_231_110_000 + self.now.as_nanos() / 1_000_000,
        };
        let agent = Agent::new(cfg, "sim.toml", self.now, setup).expect("agent starts");
        assert_eq!(agent.exchange_addr(), Some(addr));
        let pacer = agent.worker_pacer(0).expect("pacer");
        self.by_addr.insert(addr, self.nodes.len());
        self.nodes.push(Node {
            agent,
            pacer,
            alive: true,
            offered: Vec::new(),
            owed: Vec::new(),
            frames: Vec::new(),
            probes: Vec::new(),
            neighbours: Vec::new(),
            resolve_requests: Vec::new(),
            cpu_ticks: Vec::new(),
            cpu: cpu_snapshot(),
            persisted: None,
            answers: Vec::new(),
            actions: Vec::new(),
            journaled: Vec::new(),
        });
        self.nodes.len() - 1
    }

    fn offer(&mut self, n: usize, job: &str, bps: f64) {
        let id = self.nodes[n].agent.jobs.lookup(job).expect("job");
        self.nodes[n].offered.push((id, bps));
        self.nodes[n].owed.push(0.0);
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    fn step(&mut self) {
        let now = self.now;
        let interval = (now.as_nanos() / 20_000_000) as usize;
        if self.sent.len() <= interval {
            self.sent.resize(interval + 1, BTreeMap::new());
        }
        // Deliver what is due.
        let (due, later): (Vec<_>, Vec<_>) =
            self.inflight.drain(..).partition(|(at, ..)| *at <= now);
        self.inflight = later;
        for (_, dst, from, bytes) in due {
            if self.nodes[dst].alive {
                self.nodes[dst].agent.handle_datagram(now, from, &bytes);
            }
        }
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                continue;
            }
            self.nodes[i].agent.handle_tick(now);
            self.carry_out(i);
            self.traffic(i, interval);
        }
        self.now += STEP;
    }

    /// What the runtime would do with the agent's commands and transmits.
    fn carry_out(&mut self, i: usize) {
        let now = self.now;
        loop {
            let node = &mut self.nodes[i];
            if let Some(c) = node.agent.poll_command() {
                match c {
                    Command::ReadNeighbours => {
                        let table = node.neighbours.clone();
                        node.agent.handle_neighbours(now, &table);
                    }
                    Command::CpuTick { peers, .. } => {
                        // This node's entry: its id, as the scheduler's would be.
                        let entry = node.agent.config().node.id.to_be_bytes();
                        node.cpu_ticks.push(peers);
                        node.agent.handle_cpu(now, &entry, &node.cpu);
                    }
                    Command::PersistPolicy(b) => node.persisted = Some(b),
                    Command::PolicyAnswer { req, answer } => node.answers.push((req, *answer)),
                    Command::RunAction(a) => node.actions.push(*a),
                    Command::Journal(r) => node.journaled.push(*r),
                    Command::SetRules(_) | Command::CpuReload { .. } => {}
                }
                continue;
            }
            let Some(t) = node.agent.poll_transmit() else {
                break;
            };
            match t {
                Transmit::Datagram { to, payload } => {
                    let from = node.agent.exchange_addr().expect("in a pool");
                    let Some(&dst) = self.by_addr.get(&to) else {
                        continue;
                    };
                    if self.rng.gen::<f64>() < self.loss {
                        continue;
                    }
                    let delay = Duration::from_micros(self.rng.gen_range(200..2000));
                    self.inflight.push((now + delay, dst, from, payload));
                }
                Transmit::Frame { payload } => node.frames.push((now, payload)),
                Transmit::ResolveNeighbour { to } => node.resolve_requests.push(to),
                Transmit::Probe {
                    node: probed,
                    request,
                } => {
                    node.probes.push((probed, request.token));
                    let ok = *self.healthy.get(&probed).unwrap_or(&true);
                    let r = ProbeResult {
                        token: request.token,
                        outcome: if ok {
                            Ok(())
                        } else {
                            Err(ProbeFailure::Status(500))
                        },
                    };
                    node.agent.handle_probe_result(now, probed, &r);
                }
            }
        }
    }

    /// Offers this step's packets to node `i`'s pacer and releases what it
    /// lets go.
    fn traffic(&mut self, i: usize, interval: usize) {
        let now_ns = self.now.as_nanos();
        let node = &mut self.nodes[i];
        let Some(pacer) = &mut node.pacer else {
            return;
        };
        let sent = &mut self.sent[interval];
        for (k, &(job, bps)) in node.offered.iter().enumerate() {
            node.owed[k] += bps / 8.0 * STEP.as_secs_f64();
            while node.owed[k] >= f64::from(PKT) {
                node.owed[k] -= f64::from(PKT);
                if let Admit::Send(j) = pacer.admit(now_ns, 0, job, PKT, job) {
                    *sent.entry(j).or_default() += f64::from(PKT);
                }
            }
        }
        pacer.poll_release(now_ns, usize::MAX, |j| {
            *sent.entry(j).or_default() += f64::from(PKT)
        });
    }

    fn kill(&mut self, n: usize) {
        self.nodes[n].alive = false;
    }

    /// Mean bytes per interval of `job` (all jobs: None) over `range`.
    fn mean(&self, job: Option<u16>, range: std::ops::Range<usize>) -> f64 {
        let n = range.len() as f64;
        self.sent[range]
            .iter()
            .map(|m| match job {
                Some(j) => m.get(&j).copied().unwrap_or(0.0),
                None => m.values().sum(),
            })
            .sum::<f64>()
            / n
    }

    fn status(&self, n: usize) -> Status {
        self.nodes[n]
            .agent
            .status(self.now, DataplaneView::default())
    }
}

/// What a process scheduler with nothing to do reports.
fn cpu_snapshot() -> ProcSchedSnapshot {
    ProcSchedSnapshot {
        backend: headroom_control::procsched::BackendKind::Nice,
        backend_description: "simulated".into(),
        local_cores: 2.0,
        pool_cores: 4.0,
        jobs: Vec::new(),
        unmanaged: Default::default(),
        booked_percent: 0.0,
        insufficient_resources: false,
        insufficient_reason: None,
        stats: Default::default(),
    }
}

fn assert_within(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= want * tol,
        "{what}: got {got:.0}, want {want:.0} +- {:.0}%",
        tol * 100.0
    );
}

/// A pool of `n` agents where every node floods one of two booked jobs:
/// the pool forms, and the pipe is shared by booking pool-wide.
fn pool_shares_the_pipe_by_booking(n: u16, seed: u64) {
    let mut sim = Sim::new(seed);
    for id in 1..=n {
        let i = sim.add(id, n, PIPE);
        // Twice the pipe in all, half of it for each job.
        let job = if id % 2 == 1 { "web" } else { "bulk" };
        let share = if id % 2 == 1 { n.div_ceil(2) } else { n / 2 };
        sim.offer(i, job, 100e6 / f64::from(share));
        // Unsynchronised high-frequency ticks.
        sim.now += Duration::from_micros(317);
    }
    // Grants start once the pool runs its first policy version (~1.6 s).
    sim.run_for(Duration::from_millis(4500));
    for i in 0..sim.nodes.len() {
        let ex = sim.status(i).exchange.expect("in a pool");
        assert_eq!(
            ex.live_nodes,
            usize::from(n),
            "node {} sees {:?}",
            i + 1,
            ex.members
        );
        assert_eq!(ex.bad_mac, 0);
    }
    let web = sim.nodes[0].agent.jobs.lookup("web").unwrap();
    let bulk = sim.nodes[0].agent.jobs.lookup("bulk").unwrap();
    // The last second: every node has everyone's demand.
    let steady = 175..225;
    assert_within("pipe", sim.mean(None, steady.clone()), CAP, 0.03);
    assert_within("web", sim.mean(Some(web), steady.clone()), 0.6 * CAP, 0.05);
    assert_within(
        "bulk",
        sim.mean(Some(bulk), steady.clone()),
        0.4 * CAP,
        0.05,
    );
    let st = sim.status(0);
    assert_eq!(
        st.pipes[0].nodes,
        usize::from(n),
        "every node's demand allocated"
    );
    assert_eq!(st.pipe_entries_rejected, 0);
}

#[test]
fn three_nodes_share_the_pipe_by_booking() {
    pool_shares_the_pipe_by_booking(3, 1);
}

#[test]
fn sixteen_nodes_share_the_pipe_by_booking() {
    pool_shares_the_pipe_by_booking(16, 2);
}

#[test]
fn sixty_four_nodes_share_the_pipe_by_booking() {
    pool_shares_the_pipe_by_booking(64, 3);
}

#[test]
fn a_dead_nodes_share_goes_to_the_survivors() {
    let mut sim = Sim::new(4);
    for id in 1..=3 {
        let i = sim.add(id, 3, PIPE);
        sim.offer(i, "web", 100e6);
    }
    // Grants start once the pool runs its first policy version (~1.6 s).
    sim.run_for(Duration::from_millis(3500));
    assert_within("pipe, 3 nodes", sim.mean(None, 135..175), CAP, 0.03);
    sim.kill(2);
    sim.run_for(Duration::from_secs(2));
    // 600 ms to detect, then the two survivors fill the pipe.
    assert_within("pipe, 2 nodes", sim.mean(None, 225..275), CAP, 0.03);
    let st = sim.status(0);
    assert_eq!(st.exchange.unwrap().live_nodes, 2);
    assert_eq!(st.pipes[0].nodes, 2);
}

fn director(hosts: &[(u16, bool)], health: bool) -> String {
    let mut s = String::from("[director]\ngratuitous_arp_interval = \"100ms\"\n");
    for &(id, with_mac) in hosts {
        s += &format!(
            "[[director.hosts]]\nnode = {id}\naddress = \"{}\"\n",
            host(id)
        );
        if with_mac {
            let m = host_mac(id);
            s += &format!(
                "mac = \"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"\n",
                m[0], m[1], m[2], m[3], m[4], m[5]
            );
        }
    }
    s += "[[vip]]\nname = \"web\"\nvip = \"10.9.0.1\"\nprotocol = \"tcp\"\nports = [80]\nmembers = [1, 2, 3]\ngratuitous_arp_count = 3\n";
    if health {
        s += "health_check = { kind = \"tcp\", port = 80, interval = \"100ms\", timeout = \"50ms\", rise = 2, fall = 2 }\n";
    }
    s
}

/// (sender MAC, sender IP) of a gratuitous ARP.
fn garp(frame: &[u8]) -> ([u8; 6], Ipv4Addr) {
    assert_eq!(frame[12..14], [0x08, 0x06], "an ARP frame");
    let mut mac = [0; 6];
    mac.copy_from_slice(&frame[22..28]);
    (
        mac,
        Ipv4Addr::new(frame[28], frame[29], frame[30], frame[31]),
    )
}

#[test]
fn vip_owner_announces_and_a_survivor_takes_over() {
    let vip = Ipv4Addr::new(10, 9, 0, 1);
    let hosts = [(1, true), (2, true), (3, true)];
    let mut sim = Sim::new(5);
    // Node 1 (the owner-to-be) starts late: until the pool has converged
    // (or a failure timeout has passed) nodes 2 and 3 keep the static view
    // and must not claim its VIP.
    sim.add(2, 3, &director(&hosts, false));
    sim.add(3, 3, &director(&hosts, false));
    sim.run_for(Duration::from_millis(300));
    sim.add(1, 3, &director(&hosts, false));
    sim.run_for(Duration::from_secs(2));
    let (n2, n1) = (0, 2);
    assert!(
        sim.nodes[n2].frames.is_empty(),
        "node 2 announced a VIP it does not own"
    );
    let st = sim.status(n1).director.expect("director");
    assert_eq!(st.owned_vips, vec![vip.to_string()]);
    assert_eq!(st.service("web").unwrap().owner, Some(1));
    assert!(st.alive == vec![1, 2, 3], "{:?}", st.alive);
    let f = &sim.nodes[n1].frames;
    assert_eq!(f.len(), 3, "gratuitous_arp_count announcements");
    assert!(f.iter().all(|(_, fr)| garp(fr) == (host_mac(1), vip)));
    assert!(f[1].0 - f[0].0 >= Duration::from_millis(100), "spaced");
    assert_eq!(st.counter("arp_announced"), 3);

    sim.kill(n1);
    let died = sim.now;
    sim.run_for(Duration::from_secs(2));
    let st = sim.status(n2).director.unwrap();
    assert_eq!(st.service("web").unwrap().owner, Some(2));
    assert_eq!(st.owned_vips, vec![vip.to_string()]);
    let f = &sim.nodes[n2].frames;
    assert_eq!(f.len(), 3);
    assert!(f.iter().all(|(_, fr)| garp(fr) == (host_mac(2), vip)));
    // Within the failure timeout plus a tick or two of gossip.
    assert!(
        f[0].0 - died < Duration::from_millis(900),
        "{:?}",
        f[0].0 - died
    );
    assert!(sim.nodes[1].frames.is_empty(), "node 3 never owned it");
}

#[test]
fn host_macs_come_from_the_neighbour_table() {
    let hosts = [(1, true), (2, false), (3, false)];
    let mut sim = Sim::new(6);
    let a = sim.add(1, 1, &director(&hosts, false));
    sim.run_for(Duration::from_millis(500));
    // Nothing known yet: the kernel is asked to resolve both, repeatedly.
    let asked = &sim.nodes[a].resolve_requests;
    assert!(
        asked.contains(&host(2)) && asked.contains(&host(3)),
        "{asked:?}"
    );
    let st = sim.status(a).director.unwrap();
    assert!(st.nodes.iter().all(|n| n.node == 1 || n.mac.is_none()));
    // Node 2's entry appears in the kernel's table.
    sim.nodes[a].neighbours.push((host(2), host_mac(2)));
    let before = sim.status(a).director.unwrap().tables_published;
    sim.run_for(Duration::from_millis(500));
    let st = sim.status(a).director.unwrap();
    let n2 = st.nodes.iter().find(|n| n.node == 2).unwrap();
    assert_eq!(n2.mac.as_deref(), Some("02:00:00:00:00:02"));
    assert!(
        st.tables_published > before,
        "tables rebuilt with the new peer"
    );
    sim.nodes[a].resolve_requests.clear();
    sim.run_for(Duration::from_millis(500));
    assert!(!sim.nodes[a].resolve_requests.contains(&host(2)));
    assert!(sim.nodes[a].resolve_requests.contains(&host(3)));
}

#[test]
fn failing_health_checks_take_a_member_out_of_service() {
    let hosts = [(1, true), (2, true), (3, true)];
    let mut sim = Sim::new(7);
    for id in 1..=3 {
        sim.add(id, 3, &director(&hosts, true));
    }
    sim.healthy.insert(3, false);
    sim.run_for(Duration::from_secs(2));
    let st = sim.status(0).director.unwrap();
    let web = st.service("web").unwrap();
    assert_eq!(web.serving, vec![1, 2], "node 3 fails its checks");
    assert_eq!(web.unhealthy, vec![3]);
    // Every node probes every member's instance.
    let probed: std::collections::BTreeSet<NodeId> =
        sim.nodes[0].probes.iter().map(|p| p.0).collect();
    assert_eq!(probed.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    sim.healthy.insert(3, true);
    sim.run_for(Duration::from_secs(1));
    let st = sim.status(0).director.unwrap();
    assert_eq!(st.service("web").unwrap().serving, vec![1, 2, 3]);
    assert!(st.service("web").unwrap().unhealthy.is_empty());
}

#[test]
fn reload_applies_rules_and_bookings_and_rejects_bad_files() {
    let mut sim = Sim::new(8);
    // A pool without a policy: the node file's sections are in force and
    // a reload changes them (with one, `policy apply` does).
    let a = sim.add_with(config(1, 1, PIPE), None, None);
    sim.run_for(Duration::from_millis(100));
    let agent = &mut sim.nodes[a].agent;
    let extra = format!("{PIPE}[[job]]\nname = \"new\"\n[[job.flow]]\nprotocol = \"udp\"\n");
    let changes = agent.reload(Ok(config(1, 1, &extra))).unwrap();
    assert_eq!(changes.jobs_added, ["new"]);
    assert!(changes.restart_required.is_empty(), "{changes}");
    let rules = match agent.poll_command() {
        Some(Command::SetRules(r)) => r,
        other => panic!("expected the new rules, got {other:?}"),
    };
    assert!(Arc::ptr_eq(&rules, &agent.rules()));
    assert_eq!(
        agent.jobs.lookup("new"),
        Some(3),
        "a new job gets the next id"
    );
    let err = Config::parse("[node]\nid = 0\n", Path::new("bad.toml"));
    let msg = agent.reload(err).unwrap_err();
    assert!(msg.starts_with("bad.toml:"), "{msg}");
    assert!(agent.poll_command().is_none(), "nothing applied");
    let st = agent.status(sim.now, DataplaneView::default());
    assert_eq!((st.reloads_ok, st.reloads_failed), (1, 1));
    assert_eq!(st.last_reload_error.as_deref(), Some(msg.as_str()));
    assert_eq!(st.job("new").map(|j| j.packets_in), Some(0));
    // Removed again: it stays in the status, marked, with its totals (the
    // metrics keep them too) until a restart.
    let changes = agent.reload(Ok(config(1, 1, PIPE))).unwrap();
    assert_eq!(changes.jobs_removed, ["new"]);
    let st = agent.status(sim.now, DataplaneView::default());
    let gone = st.job("new").expect("a removed job stays in the status");
    assert!(gone.removed, "{gone:?}");
    assert!(st.render_text().contains("new (removed)"));
    assert!(agent.job_ids().contains(&3), "its counters are still read");
}

#[test]
fn a_reload_that_needs_a_restart_is_refused_whole() {
    let mut sim = Sim::new(9);
    // A pool without a policy: the node file's sections are in force and
    // a reload changes them (with one, `policy apply` does).
    let a = sim.add_with(config(1, 1, PIPE), None, None);
    sim.run_for(Duration::from_millis(100));
    let agent = &mut sim.nodes[a].agent;
    let before = agent.config().clone();
    let mut new = config(1, 1, &format!("{PIPE}[[job]]\nname = \"late\"\n"));
    new.workers.batch_size += 1;
    new.control.low_freq_interval *= 2;
    let msg = agent.reload(Ok(new)).unwrap_err();
    assert!(
        msg.contains("workers.batch_size, control.low_freq_interval")
            && msg.contains("nothing changed"),
        "{msg}"
    );
    // Nothing of it applied: not the job, not the fields.
    assert_eq!(agent.config(), &before);
    assert!(agent.poll_command().is_none(), "nothing applied");
    let st = agent.status(sim.now, DataplaneView::default());
    assert_eq!((st.reloads_ok, st.reloads_failed), (0, 1));
    assert!(st.job("late").is_none());
    assert_eq!(st.last_reload_error.as_deref(), Some(msg.as_str()));
}

#[test]
fn pool_keys_rotate_through_reloads_and_the_status_names_who_signs_with_which() {
    const NEXT: &[u8] = b"the next simulated pool key....!";
    let mut sim = Sim::new(10);
    for id in 1..=3 {
        sim.add(id, 3, PIPE);
    }
    sim.run_for(Duration::from_secs(1));
    let id = |k: &[u8]| headroom_control::exchange::wire::KeyId::of(k).to_string();
    let ex = |sim: &Sim, n: usize| sim.status(n).exchange.unwrap();
    assert_eq!(ex(&sim, 0).key_id, id(KEY));
    assert_eq!(ex(&sim, 0).rotation_key_id, None);
    // Step 1: every node accepts the next key.
    for n in 0..3 {
        let line = sim.nodes[n].agent.set_pool_keys(KEY, Some(NEXT));
        assert_eq!(line, Some(format!("accepts also {} (was none)", id(NEXT))));
        assert_eq!(sim.nodes[n].agent.set_pool_keys(KEY, Some(NEXT)), None);
        sim.run_for(Duration::from_secs(1));
    }
    // Step 2: node 1 signs with it; the others see it on their rotation key.
    let line = sim.nodes[0].agent.set_pool_keys(NEXT, Some(KEY));
    assert_eq!(
        line,
        Some(format!(
            "signs with {} (was {}); accepts also {} (was {})",
            id(NEXT),
            id(KEY),
            id(KEY),
            id(NEXT)
        ))
    );
    sim.run_for(Duration::from_secs(1));
    for n in 1..3 {
        let e = ex(&sim, n);
        let on_other: Vec<u32> = e
            .members
            .iter()
            .filter(|m| m.rotation_key)
            .map(|m| m.id)
            .collect();
        assert_eq!(on_other, [1], "node {}", n + 1);
        assert_eq!(e.live_nodes, 3);
        assert!(e.rotation_key_verified > 0);
        assert!(sim.status(n).render_text().contains(&format!(
            "key rotation: signs with key {}, accepts also key {}",
            id(KEY),
            id(NEXT)
        )));
    }
    let e = ex(&sim, 0);
    let on_other: Vec<u32> = e
        .members
        .iter()
        .filter(|m| m.rotation_key)
        .map(|m| m.id)
        .collect();
    assert_eq!(on_other, [2, 3]);
    assert_eq!(e.bad_mac, 0);
}

#[test]
fn status_sums_the_workers_reports() {
    let mut cfg = config(1, 1, PIPE);
    cfg.exchange.key_file = None;
    let setup = AgentSetup {
        workers: 2,
        pool: None,
        wall_ms: 1_796_231_110_000,
    };
    let mut agent = Agent::new(cfg, "one.toml", Timestamp::ZERO, setup).unwrap();
    let web = agent.jobs.lookup("web").unwrap();
    for index in 0..2 {
        let mut r = Report {
            index,
            stats: Default::default(),
            sockets: Default::default(),
            ledger: Default::default(),
            pipeline: Default::default(),
        };
        r.stats.rx_packets = [10, 20];
        r.stats.drop_pacer = 3;
        r.pipeline.classifier.flows = 5;
        r.pipeline.classifier.jobs = vec![(
            JobId(web),
            JobCounters {
                packets_in: 7,
                bytes_in: 700,
                ..Default::default()
            },
        )];
        agent.handle_report(r);
    }
    let workers = (0..2)
        .map(|index| WorkerStatus {
            index,
            ..Default::default()
        })
        .collect();
    let dp = DataplaneView {
        workers,
        fast_jobs: vec![(web, [(1, 100), (2, 200)])],
        ..Default::default()
    };
    let st = agent.status(Timestamp::from_nanos(2_500_000_000), dp);
    assert_eq!(st.uptime_secs, 2.5);
    assert_eq!(st.flows, 10);
    // The workers' counts plus what the fast path forwarded.
    assert_eq!(st.job("web").unwrap().packets_in, 15);
    assert_eq!(st.job("web").unwrap().bytes_in, 1500);
    assert_eq!(st.job("web").unwrap().packets_out, 2);
    assert_eq!(st.job("bulk").unwrap().packets_in, 0);
    assert_eq!(st.workers[1].rx_packets, [10, 20]);
    assert!(st.workers[1]
        .drops
        .contains(&("pacer_queue_full".into(), 3)));
    assert!(st.exchange.is_none(), "no pool key: alone");
    assert_eq!(st.pipes.len(), 1);
    // What headroomctl prints.
    let text = st.render_text();
    assert!(
        text.starts_with("node 1 (node-1), up 2.5s, config one.toml\n"),
        "{text}"
    );
    assert!(
        text.contains("\nweb                            15           1500"),
        "{text}"
    );
    assert!(
        text.contains("pipe uplink (outbound): 100000000 bit/s shared by 1 server(s)"),
        "{text}"
    );
}

#[test]
fn cpu_entries_travel_through_the_pool() {
    let cpu = "[[job]]\nname = \"batch\"\ncpu = { server_percent = 20 }\n[[job.process]]\nname = \"batch*\"\n";
    let mut sim = Sim::new(9);
    for id in 1..=2 {
        let i = sim.add(id, 2, cpu);
        assert!(sim.nodes[i].agent.cpu_scheduling());
    }
    // No CPU share is set before the pool runs its policy (~1.6 s).
    while !sim.nodes.iter().all(|n| n.agent.enforcing()) {
        sim.step();
    }
    assert!(sim.nodes.iter().all(|n| n.cpu_ticks.is_empty()));
    sim.run_for(Duration::from_millis(3500));
    for (i, other) in [(0, 2u16), (1, 1)] {
        let ticks = &sim.nodes[i].cpu_ticks;
        assert!(
            (3..=4).contains(&ticks.len()),
            "one scheduler tick per low-frequency interval: {}",
            ticks.len()
        );
        assert_eq!(
            ticks.last().unwrap(),
            &vec![other.to_be_bytes().to_vec()],
            "the other node's entry"
        );
    }
    assert!(sim.status(0).cpu.is_some());
}

/// The rate `job` books on the first pipe in `agent`'s configuration.
fn booked(agent: &Agent, job: &str) -> String {
    agent
        .config()
        .jobs
        .iter()
        .find(|j| j.name == job)
        .map(|j| j.bookings[0].rate.to_string())
        .unwrap_or_default()
}

#[test]
fn a_policy_applied_on_one_node_runs_everywhere_and_survives_a_restart() {
    let initial = headroom_config::initial_policy(PIPE).unwrap();
    let next = initial
        .replace("\"60%\"", "\"75%\"")
        .replace("\"40%\"", "\"25%\"");
    for n in [3u16, 16] {
        let mut sim = Sim::new(u64::from(n));
        for id in 1..=n {
            sim.add_with(config(id, n, PIPE), Some(&initial), None);
            sim.now += Duration::from_micros(317);
        }
        sim.run_for(Duration::from_secs(3));
        for i in 0..sim.nodes.len() {
            let p = sim.status(i).policy.expect("policy status");
            assert_eq!(p.active.as_deref(), Some("v1"), "node {} {p:?}", i + 1);
            assert!(p.enforcing);
            assert_eq!(p.nodes.len(), usize::from(n));
        }
        // An invalid document is refused where it is applied; nothing moves.
        let last = sim.nodes.len() - 1;
        let now = sim.now;
        let bad = next.replace("pipe = \"uplink\"", "pipe = \"nope\"");
        let err = sim.nodes[last]
            .agent
            .policy_apply(now, &bad, "bad.toml", "root", "")
            .unwrap_err();
        assert!(
            err.starts_with("bad.toml:") && err.contains("job[0].booking[0].pipe"),
            "{err}"
        );
        // The last node applies 75 / 25.
        let req = sim.nodes[last]
            .agent
            .policy_apply(now, &next, "p.toml", "root", "more web")
            .expect("valid");
        sim.run_for(Duration::from_secs(2));
        let (r, answer) = sim.nodes[last].answers.pop().expect("answered");
        assert_eq!(r, req);
        assert!(answer.complete(), "{answer:?}");
        assert_eq!(answer.version.as_deref(), Some("v2"));
        assert_eq!(answer.active_nodes, u32::from(n));
        for node in &sim.nodes {
            assert_eq!(booked(&node.agent, "web"), "75%");
            assert_eq!(booked(&node.agent, "bulk"), "25%");
        }
        // A reload re-reads the node file only: its sections (60 / 40)
        // are not the pool's policy, and the reload says so.
        let changes = sim.nodes[0].agent.reload(Ok(config(1, n, PIPE))).unwrap();
        assert!(changes.notes[0].contains("the pool runs v2"), "{changes:?}");
        assert_eq!(booked(&sim.nodes[0].agent, "web"), "75%");
        let hist = sim.nodes[0].agent.policy_history().unwrap();
        assert_eq!(hist.len(), 2, "{hist:?}");
        assert_eq!(
            (hist[1].user.as_str(), hist[1].message.as_str()),
            ("root", "more web")
        );
        assert_eq!(hist[1].author, n);
        // Node 2 restarts from its node file (60 / 40) and persisted state:
        // it starts on v2 and enforces nothing until the pool confirms it.
        let state = sim.nodes[1].persisted.clone().expect("persisted");
        sim.nodes[1].alive = false;
        let i = sim.add_with(config(2, n, PIPE), Some(&initial), Some(state));
        let addr = sim.nodes[i].agent.exchange_addr().unwrap();
        sim.by_addr.insert(addr, i);
        assert_eq!(booked(&sim.nodes[i].agent, "web"), "75%");
        assert!(!sim.nodes[i].agent.enforcing());
        sim.run_for(Duration::from_secs(3));
        assert!(sim.nodes[i].agent.enforcing());
        assert_eq!(booked(&sim.nodes[i].agent, "web"), "75%");
        let st = sim.status(i);
        let p = st.policy.unwrap();
        assert_eq!(p.active.as_deref(), Some("v2"), "{p:?}");
        // Every member's summary reached the restarted node.
        assert_eq!(st.pool.len(), usize::from(n), "{:?}", st.pool);
        let fresh = st
            .pool
            .iter()
            .filter(|m| m.state == "alive" && m.policy.as_deref() == Some("v2"))
            .count();
        assert_eq!(fresh, usize::from(n), "{:?}", st.pool);
    }
}

/// Nodes the first VIP service's Maglev table places `n` hashes on, as
/// node `i`'s workers would.
fn placements(sim: &Sim, i: usize, n: u64) -> BTreeMap<NodeId, u64> {
    let t = sim.nodes[i].agent.director_cell().expect("director").load();
    let mut m = BTreeMap::new();
    for h in 0..n {
        let hash = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        if let Some(node) = t.services[0].maglev.lookup(hash) {
            *m.entry(node).or_default() += 1;
        }
    }
    m
}

#[test]
fn a_policy_drains_and_re_weights_a_vip_member_live() {
    let hosts = [(1, true), (2, true), (3, true)];
    let base = director(&hosts, false);
    let mut sim = Sim::new(21);
    for id in 1..=3 {
        sim.add(id, 3, &base);
    }
    sim.run_for(Duration::from_secs(3));
    let before = placements(&sim, 0, 30_000);
    assert_eq!(before.len(), 3, "{before:?}");
    // Node 2 drained (weight 0), node 3 weighted 2: applied on node 3.
    let initial = headroom_config::initial_policy(&base).unwrap();
    let drained = initial.replace(
        "members = [1, 2, 3]",
        "members = [1, 2, 3]\nweights = [{ node = 2, weight = 0 }, { node = 3, weight = 2 }]",
    );
    let now = sim.now;
    let req = sim.nodes[2]
        .agent
        .policy_apply(now, &drained, "drain.toml", "root", "drain node 2")
        .expect("valid");
    sim.run_for(Duration::from_secs(2));
    let (r, answer) = sim.nodes[2].answers.pop().expect("answered");
    assert_eq!(r, req);
    assert!(answer.complete(), "{answer:?}");
    let c = answer.changes.unwrap();
    assert_eq!(c.vips, ["web: changed"]);
    for i in 0..3 {
        let after = placements(&sim, i, 30_000);
        assert!(
            !after.contains_key(&2),
            "node {} still places on 2: {after:?}",
            i + 1
        );
        let (a, b) = (after[&1] as f64, after[&3] as f64);
        assert!((b / a - 2.0).abs() < 0.2, "weights 1:2, got {after:?}");
        // Established flows on node 2 stay: it still serves.
        let t = sim.nodes[i].agent.director_cell().unwrap().load();
        assert!(t.services[0].serves(2));
    }
}

// ------------------------------------------------------------ automation

const SQUEEZE: &str = r#"
[[trigger]]
name = "bulk-squeezed"
condition = "squeezed(bulk, pipe=uplink)"
for = "2s"
cooldown = "1s"
action = [{ log = {} }]
"#;

/// Each action of `trigger` the nodes' agents released: (node index, what
/// `f` takes from its event).
fn fired<T>(
    sim: &Sim,
    trigger: &str,
    f: impl Fn(&headroom_control::triggers::TriggerEvent) -> T,
) -> Vec<(usize, T)> {
    sim.nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.actions.iter().map(move |a| (i, &a.event)))
        .filter(|(_, e)| e.trigger == trigger)
        .map(|(i, e)| (i, f(e)))
        .collect()
}

fn actions(sim: &Sim, trigger: &str) -> Vec<(usize, u64)> {
    fired(sim, trigger, |e| e.episode)
}

fn trigger_state(sim: &Sim, n: usize, trigger: &str) -> String {
    let st = sim.status(n).automation.expect("automation status");
    st.triggers
        .iter()
        .find(|t| t.name == trigger)
        .map(|t| t.state.clone())
        .unwrap_or_default()
}

/// A squeezed job fires once for the pool (on the master), a master dying
/// mid-episode does not fire it again, and the next episode fires once.
/// `padding` more (idle) triggers with long names make the failover record
/// larger than one exchange entry: it travels in parts.
fn squeeze_fires_once_per_episode(n: u16, seed: u64, padding: usize) {
    let mut sim = Sim::new(seed);
    let mut extra = format!("{PIPE}{SQUEEZE}");
    for i in 0..padding {
        extra.push_str(&format!(
            "[[trigger]]\nname = \"an-idle-trigger-with-a-long-name-{i:03}\"\n\
             condition = \"instances_changed(web)\"\naction = [{{ log = {{}} }}]\n"
        ));
    }
    for id in 1..=n {
        let i = sim.add(id, n, &extra);
        sim.offer(i, "web", 100e6);
        sim.offer(i, "bulk", 100e6);
    }
    // Policy current at ~1.6 s, summaries every 1 s, `for` 2 s.
    sim.run_for(Duration::from_secs(8));
    assert_eq!(
        actions(&sim, "bulk-squeezed"),
        vec![(0, 1)],
        "fired once, on the master"
    );
    for i in 0..n as usize {
        assert_eq!(
            trigger_state(&sim, i, "bulk-squeezed"),
            "firing",
            "node {i}'s view"
        );
    }
    // The master dies mid-episode: its successor continues it silently.
    sim.kill(0);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(
        actions(&sim, "bulk-squeezed"),
        vec![(0, 1)],
        "not fired again"
    );
    let st = sim.status(1).automation.unwrap();
    assert!(st.evaluating, "node 2 evaluates now");
    let counter = |k: &str| st.counters.iter().find(|(c, _)| c == k).map(|c| c.1);
    assert_eq!(counter("episodes_continued"), Some(1));
    assert!(
        counter("records_received") > Some(0),
        "it held records as standby"
    );
    assert_eq!(counter("records_malformed"), Some(0));
    assert_eq!(counter("records_too_large"), Some(0));
    // The squeeze ends (bulk within its booking): resolved.
    for i in 1..n as usize {
        let bulk = sim.nodes[i].agent.jobs.lookup("bulk").unwrap();
        for (j, bps) in &mut sim.nodes[i].offered {
            if *j == bulk {
                *bps = 1e6;
            }
        }
    }
    sim.run_for(Duration::from_secs(6));
    assert_eq!(trigger_state(&sim, 1, "bulk-squeezed"), "idle");
    // A second episode fires once, on the new master.
    for i in 1..n as usize {
        let bulk = sim.nodes[i].agent.jobs.lookup("bulk").unwrap();
        for (j, bps) in &mut sim.nodes[i].offered {
            if *j == bulk {
                *bps = 100e6;
            }
        }
    }
    sim.run_for(Duration::from_secs(8));
    assert_eq!(actions(&sim, "bulk-squeezed"), vec![(0, 1), (1, 2)]);
    // What each node's history store gets: every episode's firing exactly
    // once, journaled by the master that fired it or, on a standby, from
    // the master's record ("seen_in": "record").
    let firings = |i: usize| -> Vec<(u64, bool)> {
        sim.nodes[i]
            .journaled
            .iter()
            .filter(|r| r.entry["trigger"] == "bulk-squeezed" && r.entry["state"] == "firing")
            .map(|r| {
                (
                    r.entry["episode"].as_u64().unwrap_or(0),
                    r.entry["fields"]["seen_in"] == "record",
                )
            })
            .collect()
    };
    assert_eq!(firings(0), vec![(1, false)], "the first master");
    assert_eq!(firings(1), vec![(1, true), (2, false)], "the second master");
    for i in 2..n as usize {
        assert_eq!(firings(i), vec![(1, true), (2, true)], "standby {i}");
    }
    let st = sim.status(1).automation.unwrap();
    let split = st
        .counters
        .iter()
        .find(|(c, _)| c == "records_split")
        .map(|c| c.1);
    assert_eq!(split > Some(0), padding > 0, "records in parts: {split:?}");
}

#[test]
fn three_nodes_fire_a_squeeze_trigger_once_per_episode() {
    squeeze_fires_once_per_episode(3, 11, 0);
}

#[test]
fn three_nodes_fire_once_per_episode_with_a_record_in_parts() {
    squeeze_fires_once_per_episode(3, 14, 40);
}

#[test]
fn sixteen_nodes_fire_a_squeeze_trigger_once_per_episode() {
    squeeze_fires_once_per_episode(16, 12, 0);
}

const FAILURE: &str = r#"
[[pipe]]
name = "uplink"
capacity = "100Mbit"
[[job]]
name = "web"
[[job.booking]]
pipe = "uplink"
rate = "60%"
[[job]]
name = "bulk"
on_node_failure = { booking = [{ pipe = "uplink", rate = "10%" }] }
[[job.booking]]
pipe = "uplink"
rate = "40%"
"#;

/// A lost node puts the failure policies in force on every survivor.
#[test]
fn a_lost_node_switches_every_survivor_to_the_failure_policy() {
    let mut sim = Sim::new(13);
    for id in 1..=4 {
        let i = sim.add(id, 4, FAILURE);
        sim.offer(i, "web", 100e6);
        sim.offer(i, "bulk", 100e6);
    }
    sim.run_for(Duration::from_secs(4));
    assert_within("pipe, 4 nodes", sim.mean(None, 150..200), CAP, 0.03);
    for i in 0..4 {
        assert_eq!(
            booked(&sim.nodes[i].agent, "bulk"),
            "40%",
            "node {i} before"
        );
    }
    sim.kill(3);
    // 600 ms to declare it failed, then the next evaluation (1 s) and gossip.
    sim.run_for(Duration::from_secs(3));
    for i in 0..3 {
        assert_eq!(
            booked(&sim.nodes[i].agent, "bulk"),
            "10%",
            "node {i} degraded"
        );
        let st = sim.status(i).automation.unwrap();
        assert!(
            st.overlay.node_failure,
            "node {i} reports the failure policies"
        );
    }
    assert_within(
        "pipe, 3 nodes degraded",
        sim.mean(None, 300..350),
        CAP,
        0.03,
    );
    let web = sim.nodes[0].agent.jobs.lookup("web");
    // Bulk booked 10 %: web has its 60 % and most of the spare (0.6 before).
    assert!(
        sim.mean(web, 300..350) > 0.7 * CAP,
        "web {}",
        sim.mean(web, 300..350)
    );
}

/// A schedule boundary switches every node to its variant.
#[test]
fn a_schedule_boundary_switches_every_node_to_its_variant() {
    // The sim's wall clock starts at 1_796_231_110 s: second 10 of a minute.
    let extra = format!(
        "{PIPE}{}",
        r#"
[[variant]]
name = "shift"
job = [{ name = "bulk", booking = [{ pipe = "uplink", rate = "70%" }] }, { name = "web", booking = [{ pipe = "uplink", rate = "30%" }] }]
[[schedule]]
name = "shift"
variant = "shift"
second = 18
[[schedule]]
name = "back"
second = 40
"#
    );
    let mut sim = Sim::new(14);
    for id in 1..=3 {
        sim.add(id, 3, &extra);
    }
    sim.run_for(Duration::from_secs(5));
    for i in 0..3 {
        assert_eq!(
            booked(&sim.nodes[i].agent, "bulk"),
            "40%",
            "node {i} before the boundary"
        );
    }
    sim.run_for(Duration::from_secs(5));
    for i in 0..3 {
        assert_eq!(
            booked(&sim.nodes[i].agent, "bulk"),
            "70%",
            "node {i} after the boundary"
        );
        let st = sim.status(i).automation.unwrap();
        assert_eq!(st.overlay.variant.as_deref(), Some("shift"), "node {i}");
    }
    sim.run_for(Duration::from_secs(23));
    for i in 0..3 {
        assert_eq!(
            booked(&sim.nodes[i].agent, "bulk"),
            "40%",
            "node {i} back on base"
        );
    }
}

const EXITS: &str = r#"
[[job]]
name = "batch"
[[job.process]]
name = "batch*"
[[trigger]]
name = "batch-exited"
condition = "process_exited(batch)"
action = [{ log = {} }]
"#;

/// Node `i`'s scheduler reports `count` exits of batch, the latest `pid`.
fn exits(sim: &mut Sim, i: usize, count: u64, pid: u32) {
    sim.nodes[i].cpu.jobs = vec![headroom_control::procsched::JobSnapshot {
        name: "batch".into(),
        policy: None,
        pids: Vec::new(),
        cores_used: 0.0,
        cpu_seconds: 0.0,
        rss_bytes: 0,
        target_percent: 0.0,
        requested_percent: 0.0,
        weight: 0,
        cap_cores: None,
        pool_instances: 0,
        pool_demand_cores: 0.0,
        exits: headroom_control::procsched::JobExits {
            count,
            last_pid: pid,
            last_comm: "batch-w".into(),
        },
    }];
}

fn exit_events(sim: &Sim) -> Vec<(usize, String)> {
    fired(sim, "batch-exited", |e| {
        let f = |k: &str| {
            e.fields
                .iter()
                .find(|(n, _)| n == k)
                .map_or("", |(_, v)| v.as_str())
        };
        format!(
            "node {} pid {} {} x{}",
            f("nodes"),
            f("pids"),
            f("processes"),
            f("count")
        )
    })
}

/// A process exiting on any member fires the master's trigger once, from
/// that member's gossiped exit count; a new master does not replay exits
/// the old one handled, and fires for the next ones.
fn exits_fire_pool_wide(n: u16, seed: u64) {
    let mut sim = Sim::new(seed);
    for id in 1..=n {
        let i = sim.add(id, n, EXITS);
        exits(&mut sim, i, 0, 0);
    }
    sim.run_for(Duration::from_secs(5));
    assert!(exit_events(&sim).is_empty(), "{:?}", exit_events(&sim));
    let k = n as usize - 1;
    exits(&mut sim, k, 1, 4242);
    sim.run_for(Duration::from_secs(4));
    assert_eq!(
        exit_events(&sim),
        vec![(0, format!("node {n} pid 4242 batch-w x1"))],
        "once, on the master, naming the member"
    );
    // The master dies; the new one has tracked the counts all along.
    sim.kill(0);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(exit_events(&sim).len(), 1, "nothing replayed");
    exits(&mut sim, k, 3, 4300);
    sim.run_for(Duration::from_secs(4));
    assert_eq!(
        exit_events(&sim)[1..],
        [(1, format!("node {n} pid 4300 batch-w x2"))],
        "the new master fires for the next exits"
    );
}

#[test]
fn three_nodes_fire_process_exits_pool_wide() {
    exits_fire_pool_wide(3, 21);
}

#[test]
fn thirty_two_nodes_fire_process_exits_pool_wide() {
    exits_fire_pool_wide(32, 22);
}
