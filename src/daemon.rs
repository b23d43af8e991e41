//! `headroomd`'s runtime: the I/O around the agent. It attaches the
//! dataplane, runs the control thread (the agent plus the sockets, files,
//! threads and clock it must not touch itself) and tears everything down on
//! SIGTERM/SIGINT.
//!
//! The control thread wakes for a worker report, a control request or the
//! agent's next timer (at most every 100 ms, for signals), then feeds the
//! agent what arrived (datagrams, probe results) and carries out what it
//! asks for (commands, transmits).

use std::{
    collections::HashMap,
    io::BufRead,
    net::{Ipv4Addr, UdpSocket},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{Context, Result};
use crossbeam_channel::{select, Receiver, Sender};
use headroom_actions::{Executor, ExecutorConfig};
use headroom_agent::{pool::PoolSetup, Agent, AgentSetup, Command, Report, Transmit};
use headroom_clock::Timestamp;
use headroom_config::{vip::parse_mac, Config, ConfigChanges, CpuBackendChoice};
use headroom_control::{
    exchange::guard::GuardConfig,
    exchange::udp::{boot_epoch, load_key, ExchangeSocket, Receiver as ExchangeReceiver},
    health::probe::{ProbeFailure, ProbeResult, Prober},
    procsched::{detect_backend, BackendChoice, ProcessScheduler},
};
use headroom_dataplane::{director::NodeId, pipeline};

use crate::{
    ctl::{Request, Response},
    dataplane::Dataplane,
    packet::PacketSocket,
    service::Service,
};

/// Longest the control thread sleeps (signals are checked on wake-up).
const MAX_WAIT: Duration = Duration::from_millis(100);

/// How often the exchange's receive pre-filter learns the pool's sources
/// (seeds and known members).
const SOURCES_INTERVAL: Duration = Duration::from_millis(200);

/// Pre-filtered exchange datagrams queued for the control thread at most
/// (more are dropped and counted as `queue_full`).
const EXCHANGE_QUEUE: usize = 4096;

/// Starts the process scheduler when the agent says it has work.
fn start_procsched(cfg: &Config) -> Result<ProcessScheduler> {
    let choice = match cfg.cpu.backend {
        CpuBackendChoice::Auto => BackendChoice::Auto,
        CpuBackendChoice::CgroupV1 => BackendChoice::CgroupV1("/sys/fs/cgroup/cpu".into()),
        CpuBackendChoice::CgroupV2 => BackendChoice::CgroupV2("/sys/fs/cgroup".into()),
        CpuBackendChoice::Nice => BackendChoice::Nice,
    };
    let backend =
        detect_backend(&choice, &cfg.cpu.cgroup_parent).context("setting up CPU enforcement")?;
    let jobs: Vec<_> = cfg.jobs.iter().map(|j| j.process_job()).collect();
    let mut ps = ProcessScheduler::new(&jobs, backend).context("starting the process scheduler")?;
    if cfg.cpu.scope == headroom_config::CpuScope::Netns {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata("/proc/self/ns/net")
            .context("reading this network namespace (/proc/self/ns/net) for [cpu] scope")?
            .ino();
        ps = ps.with_scanner(headroom_control::procsched::scan::Scanner::new().only_netns(ino));
    }
    let state = cfg.cpu.state_file();
    ps.recover(&state).with_context(|| {
        format!(
            "taking over what a previous headroomd left ({})",
            state.display()
        )
    })?;
    tracing::info!(backend = ?ps.backend_kind(), "process scheduler running");
    Ok(ps)
}

/// The pool key and, during a key rotation, the rotation key.
type PoolKeys = (Vec<u8>, Option<Vec<u8>>);

/// The pool keys, when a pool key is configured.
fn pool_keys(cfg: &Config) -> Result<Option<PoolKeys>> {
    let Some(key_file) = &cfg.exchange.key_file else {
        return Ok(None);
    };
    let read =
        |f: &Path| load_key(f).with_context(|| format!("reading the pool key {}", f.display()));
    let rotation = match &cfg.exchange.rotation_key_file {
        Some(f) => Some(read(f)?),
        None => None,
    };
    Ok(Some((read(key_file)?, rotation)))
}

/// The pool keys, boot epoch, a random seed, the policy state persisted
/// before and the node file's initial policy, when a pool key is configured.
fn pool_setup(cfg: &Config, config_path: &Path) -> Result<Option<PoolSetup>> {
    let Some((key, rotation_key)) = pool_keys(cfg)? else {
        return Ok(None);
    };
    let state = policy_state_file(cfg);
    let policy_state = match std::fs::read(&state) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::error!(file = %state.display(), error = %e, "policy state not read; starting without it");
            None
        }
    };
    let src = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    Ok(Some(PoolSetup {
        key,
        rotation_key,
        epoch: boot_epoch(),
        rng_seed: rand_seed(),
        wall_ms: headroom_clock::WallTime::now().as_unix_nanos() / 1_000_000,
        policy_state,
        initial_policy: headroom_config::initial_policy(&src).map(String::into_bytes),
    }))
}

/// This process's resident set, bytes (0 if /proc cannot be read).
fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    pages * page
}

/// Where this node keeps the latest pool policy it has seen.
fn policy_state_file(cfg: &Config) -> std::path::PathBuf {
    cfg.cpu
        .state_dir
        .join(format!("policy-node{}.state", cfg.node.id))
}

/// Writes `bytes` to `path` atomically (a crash leaves the old content or
/// the new, never a mix).
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut f = tempfile::NamedTempFile::new_in(dir)?;
    f.write_all(bytes)?;
    f.as_file().sync_all()?;
    f.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn rand_seed() -> u64 {
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
    {
        Ok(()) => u64::from_ne_bytes(b),
        Err(_) => headroom_clock::WallTime::now().as_unix_nanos(),
    }
}

/// Complete entries of the kernel's IPv4 neighbour table, and this server's
/// own IPv4 addresses with the MAC of the interface carrying each: a host
/// address of this very server (the node address on a real server) is never
/// in the neighbour table.
fn read_neighbours() -> Vec<(Ipv4Addr, [u8; 6])> {
    let mut table = read_arp_table();
    match headroom_deploy::io::local_macs() {
        Ok(local) => table.extend(local.into_iter().map(|(ip, m)| (ip, m.0))),
        Err(e) => tracing::debug!(error = %e, "reading this server's addresses"),
    }
    table
}

/// Complete entries of the kernel's IPv4 neighbour table.
fn read_arp_table() -> Vec<(Ipv4Addr, [u8; 6])> {
    let Ok(f) = std::fs::File::open("/proc/net/arp") else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .skip(1)
        .map_while(Result::ok)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let ip: Ipv4Addr = cols.first()?.parse().ok()?;
            let flags = u32::from_str_radix(cols.get(2)?.trim_start_matches("0x"), 16).ok()?;
            let mac = parse_mac(cols.get(3)?)?;
            (flags & 0x2 != 0 && mac != [0; 6]).then_some((ip, mac))
        })
        .collect()
}

use crate::console::CtlMsg;

/// Makes sure no other headroomd serves the control socket `path`, and
/// removes the socket file a headroomd that did not shut down left (before
/// anything is attached). Refuses a path that is not a socket.
fn claim_control_socket(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("checking {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        anyhow::bail!(
            "control socket {} exists and is not a socket; remove it or set [control] socket",
            path.display()
        );
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        anyhow::bail!(
            "another headroomd answers on the control socket {}; stop it first \
             (headroomctl --socket {} status shows it)",
            path.display(),
            path.display()
        );
    }
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    tracing::info!(socket = %path.display(), "removed the control socket a previous headroomd left");
    Ok(())
}

/// Serves the control socket on its own thread.
fn serve_control_socket(path: &Path, group: Option<u32>, tx: Sender<CtlMsg>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let listener = crate::ctl::bind(path, group)
        .with_context(|| format!("binding control socket {}", path.display()))?;
    // Requests reach the control thread one at a time; each connection
    // waits on its own thread, so a slow client holds up nobody else.
    crate::ctl::serve(listener, move |req| {
        let (rtx, rrx) = crossbeam_channel::bounded(1);
        let within = req.answer_within();
        if tx.send((req, rtx)).is_err() {
            return Response::Error {
                message: "daemon is stopping".into(),
            };
        }
        rrx.recv_timeout(within).unwrap_or(Response::Error {
            message: "daemon did not answer".into(),
        })
    })?;
    Ok(())
}

/// The control thread: the agent and the I/O it asks for.
struct Runtime<'a> {
    agent: Agent,
    dp: &'a Dataplane,
    path: &'a Path,
    exchange: Option<ExchangeSocket>,
    /// The exchange socket's receive thread (pre-filtered datagrams).
    exchange_rx: Option<ExchangeReceiver>,
    procsched: Option<ProcessScheduler>,
    /// Gratuitous ARPs leave through it (opened on the first one).
    frames: Option<PacketSocket>,
    /// Where datagrams that make the kernel resolve a neighbour leave from.
    nudge: Option<UdpSocket>,
    /// One probe thread per probed node, so a hanging instance delays only
    /// its own node's probes.
    probers: HashMap<NodeId, Prober>,
    /// Receive-queue counts that changed since start (outer, inner).
    queue_watch: [Option<u32>; 2],
    /// systemd's notifications (readiness, reloads, watchdog).
    service: &'a mut Service,
    /// The VIPs the fail-open guard drops (see `vip_guard`).
    guarded: Vec<std::net::Ipv4Addr>,
    /// What `systemctl status` shows while serving (what a reload cannot
    /// change).
    serving: String,
    /// Clients waiting for their `policy apply` / `rollback` to finish.
    pending: HashMap<headroom_control::policy::ReqId, Sender<Response>>,
    /// Where the policy state is persisted.
    policy_state: std::path::PathBuf,
    /// The monitoring history (None: `[history] enabled = false`).
    recording: Option<crate::history::Recording>,
    /// Runs trigger actions (commands, webhooks) off the control thread.
    actions: Executor,
}

impl Runtime<'_> {
    /// Feeds the agent what arrived and runs its timers.
    fn poll(&mut self, now: Timestamp) {
        if let Some(rx) = &self.exchange_rx {
            for (from, bytes) in rx.queue().try_iter() {
                self.agent.handle_datagram(now, from, &bytes);
            }
        }
        for (&node, p) in &self.probers {
            while let Some(r) = p.try_recv() {
                self.agent.handle_probe_result(now, node, &r);
            }
        }
        while let Some(r) = self.actions.try_result() {
            self.agent.handle_action_record(r);
        }
        self.agent.handle_tick(now);
        self.carry_out(now);
        if let Some(cell) = self.agent.director_cell() {
            // New tables: the fast path's VIP decisions and pool addresses.
            self.dp.new_tables(cell);
        }
    }

    /// Runs the agent's commands and sends its transmits (which commands
    /// may add to).
    fn carry_out(&mut self, now: Timestamp) {
        while let Some(c) = self.agent.poll_command() {
            self.command(now, c);
        }
        while let Some(t) = self.agent.poll_transmit() {
            self.transmit(now, t);
        }
    }

    fn command(&mut self, now: Timestamp, c: Command) {
        match c {
            Command::SetRules(rules) => {
                self.dp
                    .broadcast(|| pipeline::Command::SetRules(Arc::clone(&rules)));
                // Fast-path decisions made under the old rules are stale.
                self.dp.new_rules();
                // New rules come with every configuration applied (reload
                // or policy version): its VIPs may have changed.
                self.guarded = guard_vips(self.agent.config(), Some(&self.guarded));
            }
            Command::CpuTick { peers, enforce } => {
                let Some(ps) = &mut self.procsched else {
                    return;
                };
                ps.set_enforce(enforce);
                let peers: Vec<_> = peers
                    .iter()
                    .filter_map(|b| ps.decode_peer_entry(b))
                    .collect();
                if let Err(e) = ps.tick(now, &peers) {
                    tracing::warn!(error = %e, "process scheduler tick");
                }
                let entry = ps.local_pool_entry();
                let snap = ps.snapshot();
                crate::metrics::render_procsched(&snap);
                self.agent.handle_cpu(now, &entry, &snap);
            }
            Command::CpuReload { jobs } => {
                if let Some(ps) = &mut self.procsched {
                    if let Err(e) = ps.reload(&jobs) {
                        tracing::error!(error = %e, "process rules not applied");
                    }
                }
            }
            Command::ReadNeighbours => {
                let table = read_neighbours();
                self.agent.handle_neighbours(now, &table);
            }
            Command::PolicyAnswer { req, answer } => {
                if let Some(reply) = self.pending.remove(&req) {
                    let _ = reply.send(Response::PolicyApplied(*answer));
                }
            }
            Command::RunAction(req) => {
                self.actions.submit(*req);
            }
            Command::Journal(row) => {
                if let Some(r) = &self.recording {
                    r.journal(*row);
                }
            }
            Command::PersistPolicy(bytes) => {
                if let Err(e) = write_atomic(&self.policy_state, &bytes) {
                    tracing::error!(file = %self.policy_state.display(), error = %e,
                        "policy state not persisted (a restart would wait for the pool's version)");
                }
            }
        }
    }

    fn transmit(&mut self, now: Timestamp, t: Transmit) {
        let failed = match &t {
            Transmit::Datagram { to, payload } => {
                if let Some(sock) = &mut self.exchange {
                    sock.send(*to, payload);
                }
                false
            }
            Transmit::Frame { payload } => {
                let outer = &self.agent.config().interfaces.outer;
                if self.frames.is_none() {
                    match PacketSocket::open(outer, None) {
                        Ok(s) => self.frames = Some(s),
                        Err(e) => {
                            tracing::error!(error = %e, interface = %outer, "no packet socket for gratuitous ARP")
                        }
                    }
                }
                match self.frames.as_ref().map(|s| s.send(payload)) {
                    Some(Ok(())) => false,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, interface = %outer, "gratuitous ARP not sent");
                        true
                    }
                    None => true,
                }
            }
            Transmit::ResolveNeighbour { to } => {
                if self.nudge.is_none() {
                    self.nudge = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok();
                }
                if let Some(s) = &self.nudge {
                    let _ = s.send_to(&[0], (*to, 9));
                }
                false
            }
            Transmit::Probe { node, request } => {
                let prober = match self.probers.entry(*node) {
                    std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
                    std::collections::hash_map::Entry::Vacant(v) => match Prober::spawn(1, 16) {
                        Ok(p) => Some(v.insert(p)),
                        Err(e) => {
                            tracing::error!(error = %e, "starting health probes");
                            None
                        }
                    },
                };
                if prober.is_none_or(|p| p.submit(request.clone()).is_err()) {
                    let r = ProbeResult {
                        token: request.token,
                        outcome: Err(ProbeFailure::NotStarted),
                    };
                    self.agent.handle_probe_result(now, *node, &r);
                }
                false
            }
        };
        if failed {
            self.agent.handle_transmit_failed(&t);
        }
    }

    /// Answers `req` now, or keeps `reply` until the agent answers it
    /// (policy apply and rollback).
    fn request(&mut self, now: Timestamp, req: Request, reply: Sender<Response>) {
        let pending = |r: Result<headroom_control::policy::ReqId, String>| match r {
            Ok(id) => Err(id),
            Err(message) => Ok(Response::Error { message }),
        };
        let answer = match req {
            Request::Status => Ok(Response::Status(Box::new(self.status(now)))),
            Request::Reload => Ok(match self.reload(now) {
                Ok(changes) => Response::Reloaded { changes },
                Err(message) => Response::Error { message },
            }),
            Request::PolicyApply {
                file,
                document,
                user,
                message,
            } => pending(
                self.agent
                    .policy_apply(now, &document, &file, &user, &message),
            ),
            Request::PolicyRollback {
                version,
                user,
                message,
            } => pending(self.agent.policy_rollback(now, version, &user, &message)),
            Request::Triggers => Ok(Response::Triggers(Box::new(
                self.agent.automation_status(now),
            ))),
            Request::Events { since_secs } => {
                let since = headroom_clock::WallTime::now()
                    .as_unix_millis()
                    .saturating_sub(since_secs.saturating_mul(1000));
                let master = self.agent.automation_status(now).master;
                let node = u32::from(self.agent.config().node.id);
                let memory = self.agent.events(since);
                match &self.recording {
                    // The store has earlier runs too; it is read on a
                    // thread of its own and what it lacks comes from memory.
                    Some(r) => {
                        r.queries().spawn(
                            crate::history::Query::Events {
                                since_ms: since,
                                master,
                                node,
                                memory,
                            },
                            reply,
                        );
                        return;
                    }
                    None => Ok(Response::Events {
                        master,
                        node,
                        rows: memory,
                    }),
                }
            }
            Request::PolicyShow { version } => Ok(match self.agent.policy_show(version) {
                Ok(v) => Response::PolicyVersion(v),
                Err(message) => Response::Error { message },
            }),
            Request::PolicyHistory => Ok(match self.agent.policy_history() {
                Ok(rows) => Response::PolicyHistory { rows },
                Err(message) => Response::Error { message },
            }),
            Request::PolicyDiff { file, document } => {
                Ok(match self.agent.policy_diff(&document, &file) {
                    Ok(changes) => Response::PolicyDiff { changes },
                    Err(message) => Response::Error { message },
                })
            }
            Request::History { .. }
            | Request::Report { .. }
            | Request::WhatIf { .. }
            | Request::Suggest { .. } => {
                match (self.history_query(req), &self.recording) {
                    (Ok(q), Some(r)) => {
                        // Answered by the query's own thread.
                        r.queries().spawn(q, reply);
                        return;
                    }
                    (Err(message), _) => Ok(Response::Error { message }),
                    (Ok(_), None) => Ok(Response::Error {
                        message: "history is off on this node ([history] enabled = false)".into(),
                    }),
                }
            }
        };
        match answer {
            Ok(resp) => {
                let _ = reply.send(resp);
            }
            Err(id) => {
                self.pending.insert(id, reply);
            }
        }
        self.carry_out(now);
    }

    /// A history request with what it needs from the control thread (the
    /// policy to replay, the document to merge a suggestion into).
    fn history_query(&self, req: Request) -> Result<crate::history::Query, String> {
        use crate::history::Query;
        let secs = Duration::from_secs;
        Ok(match req {
            Request::History {
                selector,
                since_secs,
                step_secs,
            } => Query::Series {
                selector,
                since: secs(since_secs),
                step: secs(step_secs.max(1)),
            },
            Request::Report {
                since_secs,
                resolution,
            } => Query::Report {
                since: secs(since_secs),
                resolution,
            },
            Request::WhatIf {
                file,
                document,
                without_nodes,
                since_secs,
                resolution,
            } => {
                let policy = match (document, file) {
                    (Some(doc), file) => self
                        .agent
                        .policy_compose(&doc, file.as_deref().unwrap_or("policy"))?,
                    (None, _) => self.agent.config().clone(),
                };
                Query::WhatIf {
                    policy: Box::new(policy),
                    options: headroom_history::whatif::WhatIfOptions { without_nodes },
                    since: secs(since_secs),
                    resolution,
                }
            }
            Request::Suggest {
                since_secs,
                options,
                resolution,
            } => {
                let cfg = self.agent.config();
                let document = match self.agent.policy_document() {
                    Some(d) => d,
                    // Alone (or before the pool has a version): the node
                    // file's own policy sections.
                    None => {
                        let src = std::fs::read_to_string(self.path)
                            .map_err(|e| format!("reading {}: {e}", self.path.display()))?;
                        headroom_config::policy::initial_policy(&src).unwrap_or_default()
                    }
                };
                Query::Suggest {
                    document,
                    capacities: cfg
                        .pipes
                        .iter()
                        .map(|p| (p.name.clone(), p.capacity.bps(0)))
                        .collect(),
                    options,
                    since: secs(since_secs),
                    resolution,
                }
            }
            other => return Err(format!("`{}` is not a history request", other.name())),
        })
    }

    /// A reload (control socket or SIGHUP) between RELOADING=1 and READY=1.
    fn reload(&mut self, now: Timestamp) -> Result<ConfigChanges, String> {
        self.service.reloading();
        let before = self.agent.config().actions.clone();
        let mut r = self.agent.reload(Config::load_checked(self.path));
        if let Ok(changes) = &mut r {
            let after = &self.agent.config().actions;
            if *after != before {
                // The old executor finishes what it runs on its own thread.
                let old =
                    std::mem::replace(&mut self.actions, Executor::new(ExecutorConfig::new(after)));
                std::thread::spawn(move || {
                    for rec in old.shutdown() {
                        tracing::info!(trigger = %rec.trigger, outcome = rec.outcome.name(), "action of the previous [actions] settings");
                    }
                });
                changes
                    .notes
                    .push("[actions]: allowlists and secrets replaced".into());
            }
            // The key files are read again whatever their names: rotating
            // keys may replace a file's content.
            match pool_keys(self.agent.config()) {
                Ok(Some((key, rotation))) => {
                    changes
                        .pool_keys
                        .extend(self.agent.set_pool_keys(&key, rotation.as_deref()));
                }
                Ok(None) => {}
                Err(e) => {
                    let msg = crate::error_report::one_line(&e);
                    tracing::error!(error = %msg, "pool keys not re-read; the previous ones stay");
                    changes
                        .pool_keys
                        .push(format!("not re-read ({msg}); the previous ones stay"));
                }
            }
            if !changes.pool_keys.is_empty() {
                tracing::info!(changes = %changes.pool_keys.join("; "), "pool keys reloaded");
            }
        }
        // An applied reload's SetRules refreshes the VIP guard (see command()).
        self.carry_out(now);
        self.service.reloaded(&self.serving);
        r
    }

    fn status(&self, now: Timestamp) -> headroom_agent::status::Status {
        let cfg = self.agent.config();
        let view = self.dp.view(cfg, self.queue_watch, &self.agent.job_ids());
        let mut st = self.agent.status(now, view);
        if let (Some(ex), Some(rx)) = (st.exchange.as_mut(), &self.exchange_rx) {
            ex.receive = Some(rx.stats());
        }
        st.history = self.recording.as_ref().map(|r| r.status());
        st.memory = Some(headroom_agent::status::MemoryStatus {
            rss_bytes: resident_bytes(),
            sqlite_bytes: headroom_history::sqlite_memory_bytes(),
        });
        st
    }

    fn run(
        &mut self,
        reports: &Receiver<Report>,
        requests: &Receiver<CtlMsg>,
        stop: &AtomicBool,
        hup: &AtomicBool,
    ) {
        let mut next_metrics = Timestamp::now();
        let low = self.agent.config().control.low_freq_interval;
        let mut next_watch = Timestamp::now() + low;
        let mut next_sources = Timestamp::now();
        let mut losses = 0;
        let never = crossbeam_channel::never();
        let datagrams = self
            .exchange_rx
            .as_ref()
            .map_or(&never, |r| r.queue())
            .clone();
        while !stop.load(Ordering::Relaxed) {
            // Awake for the one-second sample too (history bins by second).
            let wait = self
                .agent
                .poll_timeout()
                .min(next_metrics)
                .saturating_duration_since(Timestamp::now())
                .min(MAX_WAIT);
            select! {
                recv(reports) -> r => if let Ok(r) = r {
                    self.agent.handle_report(r);
                },
                recv(requests) -> m => if let Ok((req, reply)) = m {
                    self.request(Timestamp::now(), req, reply);
                },
                recv(datagrams) -> d => if let Ok((from, bytes)) = d {
                    self.agent.handle_datagram(Timestamp::now(), from, &bytes);
                },
                default(wait) => {},
            }
            let now = Timestamp::now();
            self.service.keep_alive(now);
            if hup.swap(false, Ordering::Relaxed) {
                let _ = self.reload(now);
            }
            self.poll(now);
            if now >= next_sources {
                // A joiner is admitted by the join budget until it is a
                // member; then its datagrams pass freely.
                next_sources = now + SOURCES_INTERVAL;
                if let Some(rx) = &self.exchange_rx {
                    rx.set_pool(self.agent.exchange_sources());
                    // Datagrams lost before they were judged: a silent
                    // member may be one whose heartbeats were among them.
                    let st = rx.stats();
                    let lost = st.kernel_drops + st.queue_full;
                    if lost > losses {
                        losses = lost;
                        self.agent.note_exchange_loss(now);
                    }
                }
            }
            if now >= next_watch {
                next_watch = now + low;
                self.dp.watch_queues(&mut self.queue_watch);
                self.dp.watch_fast_path(self.agent.rx_socket_drops());
                self.dp
                    .sweep_fast_path(now, self.agent.config().classifier.idle_timeout);
            }
            if now >= next_metrics {
                // On a one-second grid (history bins samples by second).
                next_metrics += Duration::from_secs(1);
                if next_metrics <= now {
                    next_metrics = now + Duration::from_secs(1);
                }
                let st = self.status(now);
                crate::metrics::render(&st);
                if let Some(r) = &mut self.recording {
                    r.record(
                        now,
                        &st,
                        self.agent.config(),
                        self.agent.pool_summaries(now),
                    );
                }
            }
        }
    }
}

/// What `systemctl status` shows while serving.
fn serving(cfg: &Config, workers: usize) -> String {
    format!(
        "node {}: {} <-> {}, {workers} worker(s)",
        cfg.node.id, cfg.interfaces.outer, cfg.interfaces.inner
    )
}

/// Runs the daemon until SIGTERM or SIGINT, telling `service` (systemd)
/// when it is ready, reloading, alive and stopping.
pub fn run(config_path: &Path, service: &mut Service) -> Result<()> {
    // Files the config names are checked before anything is attached.
    let cfg = Config::load_checked(config_path)?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let here = cfg.machine_problems(config_path);
    if !here.is_empty() {
        let all: Vec<String> = here.iter().map(|e| e.to_string()).collect();
        anyhow::bail!("{}", all.join("; "));
    }
    claim_control_socket(&cfg.control.socket)?;
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;

    if let Some(addr) = cfg.metrics.listen {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .with_context(|| format!("starting the metrics endpoint on {addr}"))?;
        crate::metrics::describe();
    }

    let workers = cfg.workers.cores.len();
    let setup = AgentSetup {
        workers,
        pool: pool_setup(&cfg, config_path)?,
        wall_ms: headroom_clock::WallTime::now().as_unix_millis(),
    };
    let policy_state = policy_state_file(&cfg);
    let agent = Agent::new(
        cfg,
        config_path.display().to_string(),
        Timestamp::now(),
        setup,
    )?;
    // The node file composed with the policy this node persisted (if any).
    let cfg = agent.config().clone();
    // Before anything is attached or moved: one daemon per interface.
    let _lock = crate::instance_lock::acquire(&cfg, agent.cpu_scheduling())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pacers = (0..workers)
        .map(|i| agent.worker_pacer(i))
        .collect::<Result<Vec<_>, _>>()?;
    let (report_tx, report_rx) = crossbeam_channel::bounded::<Report>(256);
    let deployed = attach_on_start(&cfg)?;
    let dp = Dataplane::start(
        &cfg,
        agent.rules(),
        agent.pacing_rules(),
        pacers,
        report_tx,
        agent.director_cell(),
    )?;
    let guarded = guard_vips(&cfg, None);
    let (exchange, exchange_rx) = match agent.exchange_addr() {
        Some(addr) => {
            let s = ExchangeSocket::bind(addr)
                .with_context(|| format!("binding the exchange socket {addr}"))?;
            let guard = GuardConfig {
                mtu: usize::from(cfg.exchange.mtu),
                ..GuardConfig::default()
            };
            let rx = s
                .spawn_receiver(guard, EXCHANGE_QUEUE)
                .context("starting the exchange receive thread")?;
            rx.set_pool(agent.exchange_sources());
            let granted = rx.stats().receive_buffer;
            tracing::info!(advertise = %addr, seeds = cfg.exchange.peers.len(), receive_buffer = granted, "joined the exchange");
            (Some(s), Some(rx))
        }
        None => (None, None),
    };
    let (ctl_tx, ctl_rx) = crossbeam_channel::bounded::<CtlMsg>(16);
    let group = cfg
        .control_group()
        .map_err(|e| anyhow::anyhow!("[control] group: {e}"))?;
    let console = match cfg.console.listen {
        Some(_) => Some(
            headroom_console::Console::start(
                &cfg.console,
                std::sync::Arc::new(crate::console::CtlBackend::new(ctl_tx.clone())),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        None => None,
    };
    serve_control_socket(&cfg.control.socket, group, ctl_tx)?;
    let procsched = if agent.cpu_scheduling() {
        Some(start_procsched(&cfg)?)
    } else {
        None
    };
    let recording =
        crate::history::Recording::start(&cfg).context("starting the history writer thread")?;
    tracing::info!(node = cfg.node.id, socket = %cfg.control.socket.display(), "headroomd ready");
    let serving = serving(&cfg, workers);
    service.ready(&serving);
    let mut rt = Runtime {
        agent,
        dp: &dp,
        path: config_path,
        exchange,
        exchange_rx,
        procsched,
        frames: None,
        nudge: None,
        probers: HashMap::new(),
        queue_watch: [None, None],
        service,
        serving,
        guarded,
        pending: HashMap::new(),
        policy_state,
        recording,
        actions: Executor::new(ExecutorConfig::new(&cfg.actions)),
    };
    rt.run(&report_rx, &ctl_rx, &stop, &hup);
    rt.service.stopping();

    rt.agent.leave(Timestamp::now());
    rt.carry_out(Timestamp::now());
    if let Some(ps) = &mut rt.procsched {
        if let Err(e) = ps.shutdown() {
            tracing::error!(error = %e, "restoring processes and cgroups");
        }
    }
    if let Some(r) = rt.recording.take() {
        r.stop();
    }
    if let Some(c) = console {
        c.stop();
    }
    drop(rt);
    dp.shutdown();
    detach_on_stop(deployed);
    let _ = std::fs::remove_file(&cfg.control.socket);
    tracing::info!("headroomd stopped");
    Ok(())
}

/// Installs the fail-open VIP guard for the config's VIPs if they differ
/// from `installed` (`None` at start: whatever a previous run left is
/// replaced); returns what is installed now. A guard that cannot be
/// installed is logged with its fix; headroomd runs on without it.
fn guard_vips(cfg: &Config, installed: Option<&[std::net::Ipv4Addr]>) -> Vec<std::net::Ipv4Addr> {
    let want = crate::vip_guard::vips(cfg);
    if installed == Some(want.as_slice()) {
        return want;
    }
    match crate::vip_guard::install(&cfg.interfaces.outer, &want) {
        Ok(()) => {
            if !want.is_empty() {
                tracing::info!(vips = ?want, outer = %cfg.interfaces.outer, "fail-open VIP guard installed");
            }
            want
        }
        // Without VIPs there is nothing to guard: a missing nft is no news.
        Err(crate::vip_guard::GuardError::Spawn(_)) if want.is_empty() => want,
        Err(e) => {
            tracing::warn!(error = %e, "fail-open VIP guard not installed");
            installed.map_or_else(Vec::new, <[_]>::to_vec)
        }
    }
}

/// `[deploy] attach_on_start`: puts the host stack behind headroomd before
/// the XDP programs attach (a no-op when it already is). Returns what to
/// detach on a clean stop.
fn attach_on_start(cfg: &Config) -> Result<Option<headroom_deploy::Spec>> {
    if !cfg.deploy.attach_on_start {
        return Ok(None);
    }
    let spec = headroom_deploy::Spec::from_config(cfg);
    let r = headroom_deploy::attach(&spec, false)
        .with_context(|| format!("attaching the host stack on {}", spec.nic))?;
    tracing::info!(
        nic = %spec.nic,
        host = %spec.host,
        steps = r.plan.steps.len(),
        ms = r.elapsed.as_secs_f64() * 1e3,
        "host stack behind headroomd"
    );
    Ok(cfg.deploy.detach_on_stop.then_some(spec))
}

/// After the XDP programs are gone: the host stack back onto the NIC.
fn detach_on_stop(spec: Option<headroom_deploy::Spec>) {
    let Some(spec) = spec else { return };
    match headroom_deploy::detach(&spec, false) {
        Ok(r) => {
            tracing::info!(nic = %spec.nic, steps = r.plan.steps.len(), "host stack back on the NIC")
        }
        Err(e) => tracing::error!(nic = %spec.nic, error = %e, "detaching the host stack"),
    }
}
