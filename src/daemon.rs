//! `headroomd`: attaches the XDP program to both interfaces, starts the
//! pinned AF_XDP workers, and runs the control thread (timers, reports,
//! reloads, status, metrics) until SIGTERM/SIGINT.

use std::{
    os::unix::net::UnixListener,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use crossbeam_channel::{select, Receiver, Sender};
use headroom_config::{Config, CpuBackendChoice, XdpMode, ZeroCopy};
use headroom_control::procsched::{detect_backend, BackendChoice, ProcessScheduler};
use headroom_dataplane::{
    classifier::{JobCounters, JobId, RuleSet},
    pipeline::{self, HeadroomPipeline, PipelineConfig},
    worker::{self, ports::CopyPolicy, ports::RingSpec, WorkerHandle, WorkerReport, WorkerSpec},
    xdp::{AttachMode, ModePolicy, XdpProgram},
};

use headroom_control::allocator::wire::{self, PipeEntry};
use headroom_dataplane::{clock, pacer::Pacer, pipeline::PacingRules, worker::FrameDesc};

use crate::{
    bandwidth::Bandwidth,
    ctl::{Request, Response},
    pool::{Pool, CODE_BANDWIDTH, CODE_CPU},
    status::{CpuJobStatus, CpuStatus, InterfaceStatus, JobStatus, Status, WorkerStatus},
};

type Report = WorkerReport<pipeline::Report>;

/// The dataplane of one server: XDP programs and workers.
struct Dataplane {
    /// One program per interface (outer, inner): each has its own socket map.
    xdp: [XdpProgram; 2],
    modes: [AttachMode; 2],
    workers: Vec<WorkerHandle<pipeline::Command>>,
    cores: Vec<Option<usize>>,
    stop: Arc<AtomicBool>,
}

impl Dataplane {
    fn start(
        cfg: &Config,
        rules: Arc<RuleSet>,
        pacing: PacingRules,
        mut pacers: Vec<Option<Pacer<FrameDesc>>>,
        reports: Sender<Report>,
        director: Option<&crate::director_ctl::DirectorCtl>,
    ) -> Result<Self> {
        let policy = match cfg.interfaces.xdp_mode {
            XdpMode::Auto => ModePolicy::Auto,
            XdpMode::Native => ModePolicy::Native,
            XdpMode::Generic => ModePolicy::Generic,
        };
        let names = [cfg.interfaces.outer.as_str(), cfg.interfaces.inner.as_str()];
        let mut progs = Vec::new();
        let mut modes = Vec::new();
        for name in names {
            let mut p = XdpProgram::load().context("loading the XDP program")?;
            // Steering stays off until every socket is registered, so no
            // frame is redirected to a queue nobody serves yet.
            p.configure(false, Some(cfg.node.address))?;
            let mode = p.attach(name, policy)?;
            tracing::info!(interface = name, mode = mode.as_str(), "XDP attached");
            modes.push(mode);
            progs.push(p);
        }
        let modes = [modes[0], modes[1]];
        let xdp: [XdpProgram; 2] = progs
            .try_into()
            .map_err(|_| anyhow::anyhow!("two programs expected"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let w = &cfg.workers;
        let copy = match w.zero_copy {
            ZeroCopy::Auto => CopyPolicy::Auto,
            ZeroCopy::On => CopyPolicy::ZeroCopy,
            ZeroCopy::Off => CopyPolicy::Copy,
        };
        let mut workers = Vec::new();
        let mut cores = Vec::new();
        for (i, &core) in w.cores.iter().enumerate() {
            let core = if core < num_cores() { Some(core) } else { None };
            if core.is_none() {
                tracing::warn!(core = w.cores[i], "no such core: worker runs unpinned");
            }
            let spec = WorkerSpec {
                index: i,
                core,
                queue: w.queue_of(i),
                outer: cfg.interfaces.outer.clone(),
                inner: cfg.interfaces.inner.clone(),
                batch: w.batch_size,
                rings: RingSpec {
                    ring: w.ring_size,
                    fill: w.fill_size,
                    frame_size: w.frame_size,
                    frame_count: w.frame_count,
                },
                copy,
                mode: modes[0],
                poll_timeout_ms: w.poll_timeout_ms,
                publish_interval: Duration::from_millis(w.publish_interval_ms as u64),
            };
            let pcfg = PipelineConfig {
                flow_capacity: cfg.classifier.flow_capacity,
                idle_timeout_ns: cfg.classifier.idle_timeout_secs * 1_000_000_000,
                pacing: pacing.clone(),
            };
            let mut pipeline = HeadroomPipeline::new(&pcfg, rules.clone());
            if let Some(d) = director {
                pipeline = pipeline.with_director(d.stage()); // flow director hook
            }
            let pacer = pacers.get_mut(i).and_then(Option::take);
            let h = worker::spawn(spec, pipeline, pacer, reports.clone(), stop.clone())
                .with_context(|| format!("starting worker {i}"))?;
            for (prog, fd) in xdp.iter().zip(h.fds) {
                prog.register_socket(h.queue, fd)?;
            }
            tracing::info!(worker = i, queue = h.queue, ?core, zero_copy = ?h.zero_copy, "worker started");
            workers.push(h);
            cores.push(core);
        }
        for p in &xdp {
            p.configure(true, Some(cfg.node.address))?;
        }
        Ok(Self {
            xdp,
            modes,
            workers,
            cores,
            stop,
        })
    }

    /// Sends `cmd()` to every worker (each applies it between batches).
    fn broadcast(&self, cmd: impl Fn() -> pipeline::Command) {
        for w in &self.workers {
            if w.commands.send(cmd()).is_err() {
                tracing::error!(queue = w.queue, "worker is gone; command not delivered");
            }
        }
    }

    fn shutdown(self, cfg: &Config) {
        // Stop steering first: frames fall through to the kernel path while
        // the workers drain and exit.
        for p in &self.xdp {
            let _ = p.configure(false, Some(cfg.node.address));
        }
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.join();
        }
    }
}

fn num_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Stable job ids by name: a job keeps its id across reloads (so its
/// cumulative counters stay its own) and ids are never reused.
#[derive(Debug, Default)]
struct JobRegistry {
    ids: Vec<(String, JobId)>,
}

impl JobRegistry {
    fn id(&mut self, name: &str) -> JobId {
        if name == headroom_config::DEFAULT_JOB {
            return JobId::DEFAULT;
        }
        if let Some((_, id)) = self.ids.iter().find(|(n, _)| n == name) {
            return *id;
        }
        let id = JobId(self.ids.len() as u16 + 1);
        self.ids.push((name.to_string(), id));
        id
    }

    /// The name of a job id.
    fn name_of(&self, id: u16) -> Option<&str> {
        if id == 0 {
            return Some(headroom_config::DEFAULT_JOB);
        }
        self.ids
            .iter()
            .find(|(_, j)| j.0 == id)
            .map(|(n, _)| n.as_str())
    }

    /// The id of a known job name.
    fn lookup(&self, name: &str) -> Option<u16> {
        if name == headroom_config::DEFAULT_JOB {
            return Some(0);
        }
        self.ids.iter().find(|(n, _)| n == name).map(|(_, j)| j.0)
    }

    /// Compiles the config's flow rules with stable ids.
    fn rules(&mut self, cfg: &Config) -> Arc<RuleSet> {
        let jobs: Vec<(JobId, Vec<headroom_config::net::FlowRule>)> = cfg
            .jobs
            .iter()
            .map(|j| (self.id(&j.name), j.flow_rules.clone()))
            .collect();
        Arc::new(RuleSet::compile(&jobs))
    }
}

/// Starts the process scheduler when some job has process rules.
fn start_procsched(cfg: &Config) -> Result<Option<ProcessScheduler>> {
    if !cfg.cpu.enabled || cfg.jobs.iter().all(|j| j.process_rules.is_empty()) {
        return Ok(None);
    }
    let choice = match cfg.cpu.backend {
        CpuBackendChoice::Auto => BackendChoice::Auto,
        CpuBackendChoice::CgroupV1 => BackendChoice::CgroupV1("/sys/fs/cgroup/cpu".into()),
        CpuBackendChoice::CgroupV2 => BackendChoice::CgroupV2("/sys/fs/cgroup".into()),
        CpuBackendChoice::Nice => BackendChoice::Nice,
    };
    let backend =
        detect_backend(&choice, &cfg.cpu.cgroup_parent).context("setting up CPU enforcement")?;
    let jobs: Vec<_> = cfg.jobs.iter().map(|j| j.process_job()).collect();
    let ps = ProcessScheduler::new(&jobs, backend).context("starting the process scheduler")?;
    tracing::info!(backend = ?ps.backend_kind(), "process scheduler running");
    Ok(Some(ps))
}

/// The control thread's view of the dataplane.
struct Control {
    jobs: JobRegistry,
    procsched: Option<ProcessScheduler>,
    bandwidth: Option<Bandwidth>,
    pool: Option<Pool>,
    cfg: Config,
    path: PathBuf,
    started: Instant,
    reports: Vec<Option<Report>>,
    reloads_ok: u64,
    reloads_failed: u64,
    last_reload_error: Option<String>,
    /// Flow director (VIP services), if configured.
    director: Option<crate::director_ctl::DirectorCtl>,
}

impl Control {
    fn reload(&mut self, dp: &Dataplane) -> Result<(), String> {
        match Config::load(&self.path) {
            Ok(new) => {
                if new.interfaces != self.cfg.interfaces
                    || new.workers != self.cfg.workers
                    || new.node != self.cfg.node
                {
                    tracing::warn!(
                        "[node], [interfaces] and [workers] changes take effect on restart only"
                    );
                }
                if new.vips != self.cfg.vips || new.director != self.cfg.director {
                    // Flow director hook.
                    tracing::warn!("[[vip]] and [director] changes take effect on restart only");
                }
                let rules = self.jobs.rules(&new);
                dp.broadcast(|| pipeline::Command::SetRules(rules.clone()));
                if new
                    .pipes
                    .iter()
                    .map(|p| (&p.name, p.capacity, p.remote))
                    .ne(self
                        .cfg
                        .pipes
                        .iter()
                        .map(|p| (&p.name, p.capacity, p.remote)))
                {
                    tracing::warn!(
                        "pipe changes take effect on restart only; bookings are applied now"
                    );
                }
                if let Some(bw) = &mut self.bandwidth {
                    let jobs = &mut self.jobs;
                    bw.set_bookings(&new, |n| jobs.id(n).0);
                }
                if let Some(ps) = &mut self.procsched {
                    let jobs: Vec<_> = new.jobs.iter().map(|j| j.process_job()).collect();
                    if let Err(e) = ps.reload(&jobs) {
                        tracing::error!(error = %e, "process rules not applied");
                    }
                }
                self.cfg = new;
                self.reloads_ok += 1;
                self.last_reload_error = None;
                metrics::counter!("headroom_reloads_total", "result" => "ok").increment(1);
                tracing::info!(file = %self.path.display(), "configuration reloaded");
                Ok(())
            }
            Err(e) => {
                self.reloads_failed += 1;
                let msg = e.to_string();
                self.last_reload_error = Some(msg.clone());
                metrics::counter!("headroom_reloads_total", "result" => "rejected").increment(1);
                tracing::error!(error = %msg, "configuration rejected; the previous one stays in force");
                Err(msg)
            }
        }
    }

    /// Exchange and allocation (seed [0174] lines 8-20): publish this node's
    /// demand on every pipe, then compute its grants from everyone's.
    /// Flow director: live membership (when the exchange runs), then its
    /// timers (health, MACs, tables, gratuitous ARP).
    fn director_tick(&mut self, now: Instant) {
        if let Some(d) = &mut self.director {
            if let Some(pool) = &self.pool {
                d.on_live_nodes(now, &pool.live_nodes());
            }
            d.tick(now);
        }
    }

    fn high_frequency(&mut self, now: Instant) {
        if let Some(pool) = &mut self.pool {
            pool.poll(now);
        }
        let Some(bw) = &mut self.bandwidth else {
            return;
        };
        let now_ns = clock::now_ns();
        let jobs = &self.jobs;
        let entry = bw.measure(now_ns, |id| jobs.name_of(id));
        let peers: Vec<Vec<PipeEntry>> = match &mut self.pool {
            Some(pool) => {
                pool.publish(now, CODE_BANDWIDTH, &entry);
                pool.peer_entries(CODE_BANDWIDTH)
                    .into_iter()
                    .filter_map(|(node, bytes)| match wire::decode(&bytes) {
                        Ok(e) => Some(e),
                        Err(e) => {
                            metrics::counter!("headroom_bandwidth_entries_rejected_total")
                                .increment(1);
                            tracing::debug!(node, error = %e, "bandwidth entry rejected");
                            None
                        }
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        bw.allocate(now_ns, &peers, |n| jobs.lookup(n));
    }

    /// Membership, process detection and sampling (seed [0179]-[0182]).
    fn low_frequency(&mut self, now: Instant) {
        if let Some(ps) = &mut self.procsched {
            let peers: Vec<_> = match &self.pool {
                Some(pool) => pool
                    .peer_entries(CODE_CPU)
                    .into_iter()
                    .filter_map(|(_, bytes)| ps.decode_peer_entry(&bytes))
                    .collect(),
                None => Vec::new(),
            };
            if let Err(e) = ps.tick(now, &peers) {
                tracing::warn!(error = %e, "process scheduler tick");
            }
            ps.publish_metrics();
            if let Some(pool) = &mut self.pool {
                pool.publish(now, CODE_CPU, &ps.local_pool_entry());
            }
        }
        if let Some(pool) = &self.pool {
            pool.export_metrics();
        }
    }

    fn status(&self, dp: &Dataplane) -> Status {
        let mut st = Status {
            node_id: self.cfg.node.id,
            node_name: self.cfg.node_name(),
            config_file: self.path.display().to_string(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            reloads_ok: self.reloads_ok,
            reloads_failed: self.reloads_failed,
            last_reload_error: self.last_reload_error.clone(),
            ..Default::default()
        };
        let roles = ["outer", "inner"];
        let names = [&self.cfg.interfaces.outer, &self.cfg.interfaces.inner];
        for i in 0..2 {
            st.interfaces.push(InterfaceStatus {
                name: names[i].clone(),
                role: roles[i].into(),
                xdp_mode: dp.modes[i].as_str().into(),
                verdicts: dp.xdp[i]
                    .named_verdicts()
                    .map(|v| {
                        v.into_iter()
                            .map(|(n, c)| (n.to_string(), c.packets, c.bytes))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        for (i, h) in dp.workers.iter().enumerate() {
            let mut ws = WorkerStatus {
                index: i,
                core: dp.cores[i],
                queue: h.queue,
                zero_copy: h.zero_copy,
                ..Default::default()
            };
            if let Some(r) = &self.reports[i] {
                let s = &r.stats;
                ws.rx_packets = s.rx_packets;
                ws.rx_bytes = s.rx_bytes;
                ws.tx_packets = s.tx_packets;
                ws.tx_bytes = s.tx_bytes;
                ws.drops = vec![
                    ("policy".into(), s.drop_policy),
                    ("pacer_queue_full".into(), s.drop_pacer),
                    ("rewrite".into(), s.drop_rewrite),
                    ("tx_full".into(), s.drop_tx_full),
                ];
                let k = &r.sockets;
                ws.socket = vec![
                    ("rx_dropped".into(), k[0].rx_dropped, k[1].rx_dropped),
                    ("rx_ring_full".into(), k[0].rx_ring_full, k[1].rx_ring_full),
                    (
                        "rx_fill_ring_empty".into(),
                        k[0].rx_fill_ring_empty_descs,
                        k[1].rx_fill_ring_empty_descs,
                    ),
                    (
                        "rx_invalid_descs".into(),
                        k[0].rx_invalid_descs,
                        k[1].rx_invalid_descs,
                    ),
                    (
                        "tx_invalid_descs".into(),
                        k[0].tx_invalid_descs,
                        k[1].tx_invalid_descs,
                    ),
                    (
                        "tx_ring_empty".into(),
                        k[0].tx_ring_empty_descs,
                        k[1].tx_ring_empty_descs,
                    ),
                ];
                let l = &r.ledger;
                ws.frames_total = l.total;
                ws.frames_accounted = l.free + l.fill[0] + l.fill[1] + l.tx[0] + l.tx[1] + l.held;
                ws.frame_violations = l.violations;
                ws.rules_generation = r.pipeline.classifier.rules_generation;
                ws.parse_errors = r.pipeline.parse_errors;
            }
            st.workers.push(ws);
        }
        let mut per_job: Vec<(JobId, JobCounters)> = Vec::new();
        for r in self.reports.iter().flatten() {
            st.flows += r.pipeline.classifier.flows as u64;
            for (id, c) in &r.pipeline.classifier.jobs {
                match per_job.iter_mut().find(|(j, _)| j == id) {
                    Some((_, acc)) => acc.merge(c),
                    None => per_job.push((*id, *c)),
                }
            }
        }
        let nodes = self
            .pool
            .as_ref()
            .map(|p| p.live_nodes().len())
            .unwrap_or(1);
        st.pipes = self
            .bandwidth
            .as_ref()
            .map(|bw| bw.status(|id| self.jobs.name_of(id), nodes))
            .unwrap_or_default();
        st.exchange = self.pool.as_ref().map(|p| p.status());
        st.cpu = self.procsched.as_ref().map(|ps| {
            let snap = ps.snapshot();
            CpuStatus {
                backend: format!("{:?} {}", snap.backend, snap.backend_description),
                local_cores: snap.local_cores,
                pool_cores: snap.pool_cores,
                insufficient_resources: snap
                    .insufficient_resources
                    .then(|| snap.insufficient_reason.clone().unwrap_or_default()),
                jobs: snap
                    .jobs
                    .iter()
                    .map(|j| CpuJobStatus {
                        name: j.name.clone(),
                        pids: j.pids.clone(),
                        cores_used: j.cores_used,
                        rss_bytes: j.rss_bytes,
                        target_percent: j.target_percent,
                        weight: j.weight,
                        pool_instances: j.pool_instances,
                    })
                    .collect(),
                unmanaged_processes: snap.unmanaged.processes,
                unmanaged_cores: snap.unmanaged.cores_used,
            }
        });
        st.jobs = self
            .cfg
            .job_names()
            .into_iter()
            .map(|name| {
                let id = if name == headroom_config::DEFAULT_JOB {
                    JobId::DEFAULT
                } else {
                    self.jobs
                        .ids
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, id)| *id)
                        .unwrap_or(JobId::DEFAULT)
                };
                let c = per_job
                    .iter()
                    .find(|(j, _)| *j == id)
                    .map(|(_, c)| *c)
                    .unwrap_or_default();
                JobStatus {
                    name,
                    packets_in: c.packets_in,
                    bytes_in: c.bytes_in,
                    packets_out: c.packets_out,
                    bytes_out: c.bytes_out,
                    flows: c.active_flows,
                }
            })
            .collect();
        // Flow director hook.
        st.director = self.director.as_ref().map(|d| {
            d.status(
                self.reports
                    .iter()
                    .flatten()
                    .filter_map(|r| r.pipeline.director.as_ref()),
            )
        });
        st
    }

    fn export_metrics(&self, st: &Status) {
        for w in &st.workers {
            let idx = w.index.to_string();
            for (s, side) in ["outer", "inner"].iter().enumerate() {
                let l = |n: &'static str| {
                    [
                        ("worker", idx.clone()),
                        ("side", side.to_string()),
                        ("name", n.to_string()),
                    ]
                };
                metrics::counter!("headroom_worker_rx_packets_total", &l("rx")[..2])
                    .absolute(w.rx_packets[s]);
                metrics::counter!("headroom_worker_rx_bytes_total", &l("rx")[..2])
                    .absolute(w.rx_bytes[s]);
                metrics::counter!("headroom_worker_tx_packets_total", &l("tx")[..2])
                    .absolute(w.tx_packets[s]);
                metrics::counter!("headroom_worker_tx_bytes_total", &l("tx")[..2])
                    .absolute(w.tx_bytes[s]);
                for (name, o, i) in &w.socket {
                    let v = if s == 0 { *o } else { *i };
                    metrics::counter!("headroom_xsk_socket_total", "worker" => idx.clone(), "side" => side.to_string(), "stat" => name.clone()).absolute(v);
                }
            }
            for (reason, n) in &w.drops {
                metrics::counter!("headroom_worker_drops_total", "worker" => idx.clone(), "reason" => reason.clone()).absolute(*n);
            }
            metrics::gauge!("headroom_worker_frames_accounted", "worker" => idx.clone())
                .set(w.frames_accounted as f64);
            metrics::counter!("headroom_worker_frame_violations_total", "worker" => idx.clone())
                .absolute(w.frame_violations);
        }
        for i in &st.interfaces {
            for (v, p, b) in &i.verdicts {
                metrics::counter!("headroom_xdp_verdict_packets_total", "interface" => i.name.clone(), "verdict" => v.clone()).absolute(*p);
                metrics::counter!("headroom_xdp_verdict_bytes_total", "interface" => i.name.clone(), "verdict" => v.clone()).absolute(*b);
            }
        }
        for j in &st.jobs {
            metrics::counter!("headroom_job_packets_total", "job" => j.name.clone(), "direction" => "in").absolute(j.packets_in);
            metrics::counter!("headroom_job_packets_total", "job" => j.name.clone(), "direction" => "out").absolute(j.packets_out);
            metrics::counter!("headroom_job_bytes_total", "job" => j.name.clone(), "direction" => "in").absolute(j.bytes_in);
            metrics::counter!("headroom_job_bytes_total", "job" => j.name.clone(), "direction" => "out").absolute(j.bytes_out);
        }
        metrics::gauge!("headroom_flows").set(st.flows as f64);
        if let Some(d) = &st.director {
            crate::director_ctl::export_metrics(d);
        }
    }
}

type CtlMsg = (Request, Sender<Response>);

/// Serves the control socket on its own thread.
fn serve_control_socket(path: &Path, tx: Sender<CtlMsg>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding control socket {}", path.display()))?;
    std::thread::Builder::new()
        .name("hr-ctl".into())
        .spawn(move || {
            use std::io::{BufRead, BufReader, Write};
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                let Ok(reader) = conn.try_clone() else {
                    continue;
                };
                if BufReader::new(reader).read_line(&mut line).is_err() {
                    continue;
                }
                let resp = match serde_json::from_str::<Request>(&line) {
                    Ok(req) => {
                        let (rtx, rrx) = crossbeam_channel::bounded(1);
                        if tx.send((req, rtx)).is_err() {
                            break;
                        }
                        rrx.recv_timeout(Duration::from_secs(8))
                            .unwrap_or(Response::Error {
                                message: "daemon did not answer".into(),
                            })
                    }
                    Err(e) => Response::Error {
                        message: format!("bad request: {e}"),
                    },
                };
                let mut out = serde_json::to_string(&resp).unwrap_or_else(|_| "{}".into());
                out.push('\n');
                let _ = conn.write_all(out.as_bytes());
            }
        })?;
    Ok(())
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config_path: &Path) -> Result<()> {
    let cfg = Config::load(config_path)?;
    // Files the config names are checked before anything is attached.
    cfg.check_files(config_path)?;
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
    }

    let (report_tx, report_rx) = crossbeam_channel::bounded::<Report>(256);
    let mut jobs = JobRegistry::default();
    let rules = jobs.rules(&cfg);
    let workers = cfg.workers.cores.len();
    let bandwidth = Bandwidth::new(&cfg, workers, |n| jobs.id(n).0)?;
    let (pacing, pacers) = match &bandwidth {
        Some(bw) => (
            Bandwidth::pacing_rules(&cfg, bw.job_slots),
            (0..workers)
                .map(|i| bw.worker_pacer(i).map(Some))
                .collect::<Result<Vec<_>>>()?,
        ),
        None => (PacingRules::default(), (0..workers).map(|_| None).collect()),
    };
    let director = crate::director_ctl::DirectorCtl::new(&cfg);
    let dp = Dataplane::start(&cfg, rules, pacing, pacers, report_tx, director.as_ref())?;
    let pool = Pool::start(&cfg, Instant::now())?;
    let (ctl_tx, ctl_rx) = crossbeam_channel::bounded::<CtlMsg>(16);
    serve_control_socket(&cfg.control.socket, ctl_tx)?;
    tracing::info!(node = cfg.node.id, socket = %cfg.control.socket.display(), "headroomd ready");

    let procsched = start_procsched(&cfg)?;
    let mut ctl = Control {
        jobs,
        procsched,
        bandwidth,
        pool,
        reports: (0..dp.workers.len()).map(|_| None).collect(),
        cfg,
        path: config_path.to_owned(),
        started: Instant::now(),
        reloads_ok: 0,
        reloads_failed: 0,
        last_reload_error: None,
        director,
    };
    control_loop(&mut ctl, &dp, &report_rx, &ctl_rx, &stop, &hup);

    let socket = ctl.cfg.control.socket.clone();
    if let Some(pool) = &mut ctl.pool {
        pool.leave(Instant::now());
    }
    if let Some(ps) = &mut ctl.procsched {
        if let Err(e) = ps.shutdown() {
            tracing::error!(error = %e, "restoring processes and cgroups");
        }
    }
    dp.shutdown(&ctl.cfg);
    let _ = std::fs::remove_file(socket);
    tracing::info!("headroomd stopped");
    Ok(())
}

fn control_loop(
    ctl: &mut Control,
    dp: &Dataplane,
    reports: &Receiver<Report>,
    requests: &Receiver<CtlMsg>,
    stop: &AtomicBool,
    hup: &AtomicBool,
) {
    let hf = Duration::from_millis(ctl.cfg.control.high_freq_ms as u64);
    let lf = Duration::from_millis(ctl.cfg.control.low_freq_ms as u64);
    let mut next_hf = Instant::now() + hf;
    let mut next_lf = Instant::now() + lf;
    let mut next_metrics = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // With neither a pool nor pipes the high-frequency tick has nothing
        // to do: sleep until reports or requests arrive (bounded for signals).
        let wait = if ctl.pool.is_none() && ctl.bandwidth.is_none() {
            Duration::from_millis(100)
        } else {
            next_hf
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(20))
        };
        select! {
            recv(reports) -> r => if let Ok(r) = r {
                let i = r.index;
                if let Some(slot) = ctl.reports.get_mut(i) { *slot = Some(r); }
            },
            recv(requests) -> m => if let Ok((req, reply)) = m {
                let resp = match req {
                    Request::Status => Response::Status(Box::new(ctl.status(dp))),
                    Request::Reload => match ctl.reload(dp) {
                        Ok(()) => Response::Reloaded,
                        Err(message) => Response::Error { message },
                    },
                };
                let _ = reply.send(resp);
            },
            default(wait) => {},
        }
        if hup.swap(false, Ordering::Relaxed) {
            let _ = ctl.reload(dp);
        }
        let now = Instant::now();
        if now >= next_hf {
            next_hf += hf;
            if next_hf < now {
                next_hf = now + hf;
            }
            ctl.high_frequency(now);
            ctl.director_tick(now); // flow director hook
        } else if let Some(pool) = &mut ctl.pool {
            // Datagrams between ticks are taken in promptly.
            pool.poll(now);
        }
        if now >= next_lf {
            next_lf = now + lf;
            ctl.low_frequency(now);
        }
        if now >= next_metrics {
            next_metrics = now + Duration::from_secs(1);
            let st = ctl.status(dp);
            ctl.export_metrics(&st);
        }
    }
}
