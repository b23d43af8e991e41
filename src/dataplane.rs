//! The dataplane of one server as the daemon starts it: the XDP program on
//! both interfaces (and the fast path's settings), the receive queues
//! assigned to the pinned AF_XDP workers, the workers, and their teardown.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use headroom_agent::{
    status::{InterfaceStatus, WorkerStatus},
    DataplaneView, Report,
};
use headroom_clock::Timestamp;
use headroom_config::{Bypass, Config, XdpMode, ZeroCopy};
use headroom_dataplane::{
    classifier::RuleSet,
    director::TableCell,
    pacer::Pacer,
    pipeline::{
        self, director_stage::DirectorStage, HeadroomPipeline, PacingRules, PipelineConfig,
    },
    worker::{
        self,
        chain::MAX_BUFS,
        ports::{CopyPolicy, RingSpec, RX_OFFSET},
        Side, WorkerHandle, WorkerQueues, WorkerSpec,
    },
    xdp::{netdev::Netdev, AttachMode, ModePolicy, XdpProgram, XdpSettings},
};

/// The dataplane of one server: XDP programs and workers.
pub struct Dataplane {
    /// One program per interface (outer, inner): each has its own socket map.
    xdp: [XdpProgram; 2],
    modes: [AttachMode; 2],
    /// What the interfaces looked like at start (outer, inner).
    netdevs: [Netdev; 2],
    /// Queues served per interface (outer, inner).
    served: [Vec<u32>; 2],
    /// XDP settings of each program (outer, inner).
    settings: std::cell::RefCell<[XdpSettings; 2]>,
    fast: crate::fast_path::FastPathCtl,
    workers: Vec<WorkerHandle<pipeline::Command>>,
    cores: Vec<Option<usize>>,
    stop: Arc<AtomicBool>,
}

/// The interfaces as found at start, the queues of each worker, and the
/// queues served per interface.
struct QueuePlan {
    netdevs: [Netdev; 2],
    workers: Vec<WorkerQueues>,
    served: [Vec<u32>; 2],
}

/// Reads both interfaces and assigns their receive queues to the workers;
/// refuses a configuration that leaves a queue unserved (unless allowed) or
/// a worker without a queue on an interface, saying how to fix it.
fn plan_queues(cfg: &Config) -> Result<QueuePlan> {
    let w = &cfg.workers;
    let names = [cfg.interfaces.outer.as_str(), cfg.interfaces.inner.as_str()];
    let mut devs = Vec::new();
    let mut plans = Vec::new();
    for name in names {
        let dev = Netdev::read(name).with_context(|| {
            format!("interface {name:?} (check [interfaces] and that it exists in this network namespace)")
        })?;
        if !dev.channels_known {
            tracing::warn!(
                interface = name,
                "the driver does not report its channels: assuming one receive queue"
            );
        }
        let plan = w.assign_queues(dev.rx_queues);
        if let Some(i) = plan.iter().position(Vec::is_empty) {
            anyhow::bail!(
                "{name} has {} receive queue(s) for {} workers, so worker {i} (core {}) would serve none: \
                 use at most {} cores in [workers] cores, or give {name} more queues \
                 (`ethtool -L {name} combined {}`; a veth takes `numrxqueues`/`numtxqueues` when created)",
                dev.rx_queues,
                w.cores.len(),
                w.cores[i],
                dev.rx_queues.max(1),
                w.cores.len()
            );
        }
        let served: Vec<u32> = plan.iter().flatten().copied().collect();
        let unserved: Vec<u32> = (0..dev.rx_queues).filter(|q| !served.contains(q)).collect();
        if !unserved.is_empty() {
            if !w.allow_unserved_queues {
                anyhow::bail!(
                    "[workers] queues leaves receive queue(s) {unserved:?} of {name} unserved \
                     ({name} has {} queues): their frames would pass the workers by, \
                     unclassified and unpaced. Leave `queues` out to serve every queue, \
                     or set allow_unserved_queues = true",
                    dev.rx_queues
                );
            }
            tracing::warn!(
                interface = name,
                ?unserved,
                "receive queues without a worker: their frames bypass Headroom (allow_unserved_queues)"
            );
        }
        devs.push(dev);
        plans.push(plan);
    }
    let inner_plan = plans.pop().expect("two interfaces");
    let outer_plan = plans.pop().expect("two interfaces");
    let served = [
        outer_plan.iter().flatten().copied().collect(),
        inner_plan.iter().flatten().copied().collect(),
    ];
    let queues = outer_plan
        .into_iter()
        .zip(inner_plan)
        .map(|(outer, inner)| WorkerQueues { outer, inner })
        .collect();
    let inner = devs.pop().expect("two interfaces");
    let outer = devs.pop().expect("two interfaces");
    Ok(QueuePlan {
        netdevs: [outer, inner],
        workers: queues,
        served,
    })
}

impl Dataplane {
    /// Attaches XDP to both interfaces and starts the workers (steering is
    /// switched on once every socket is registered). `director` is the cell
    /// the agent publishes the director tables through, if VIP services are
    /// configured.
    pub fn start(
        cfg: &Config,
        rules: Arc<RuleSet>,
        pacing: PacingRules,
        mut pacers: Vec<Option<Pacer<worker::Paced>>>,
        reports: Sender<Report>,
        director: Option<&Arc<TableCell>>,
    ) -> Result<Self> {
        let policy = match cfg.interfaces.xdp_mode {
            XdpMode::Auto => ModePolicy::Auto,
            XdpMode::Native => ModePolicy::Native,
            XdpMode::Generic => ModePolicy::Generic,
        };
        let QueuePlan {
            netdevs,
            workers: queues,
            served,
        } = plan_queues(cfg)?;
        let w = &cfg.workers;
        let fast = crate::fast_path::FastPathCtl::new(w.fast_path, &netdevs);
        let settings = [0usize, 1].map(|s| XdpSettings {
            node_ip4: Some(cfg.node.address),
            exchange_port: cfg.exchange.port,
            bypass_address: cfg.node.bypass == Bypass::Address,
            // Longer packets than a worker takes pass to the kernel path
            // (counted as pass_too_big) rather than being dropped unseen.
            max_len: (MAX_BUFS as u32) * (w.frame_size - RX_OFFSET as u32),
            fast_path: fast.direction(s).on,
            // The host side always may; the network side if it is virtual.
            complete_csum: s == 1 || netdevs[0].may_carry_partial_checksums(),
            fp_gen: fast.generation(),
            egress_mtu: netdevs[1 - s].mtu,
            underlay_mtu: u32::from(cfg.director.underlay_mtu),
            // Set with the director's tables (its underlay address and the
            // host MAC are known once resolved).
            local_ip4: None,
            encap_port: cfg.director.encap_port,
            host_mac: [0; 6],
        });
        let names = [cfg.interfaces.outer.as_str(), cfg.interfaces.inner.as_str()];
        let mut progs = Vec::new();
        let mut modes = Vec::new();
        for (s, name) in names.into_iter().enumerate() {
            let mut p =
                XdpProgram::load_with(w.fast_path_flows).context("loading the XDP program")?;
            // Steering stays off until every socket is registered, so no
            // frame is redirected to a queue nobody serves yet.
            p.configure(false, &settings[s])?;
            let mode = p.attach(name, policy)?;
            tracing::info!(interface = name, mode = mode.as_str(), "XDP attached");
            modes.push(mode);
            progs.push(p);
        }
        let modes = [modes[0], modes[1]];
        let xdp: [XdpProgram; 2] = progs
            .try_into()
            .map_err(|_| anyhow::anyhow!("two programs expected"))?;
        for (s, p) in xdp.iter().enumerate() {
            let index = |n: &str| {
                nix::net::if_::if_nametoindex(n).with_context(|| format!("interface {n}"))
            };
            p.set_egress(index(names[1 - s])?, index(names[s])?)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let copy = match w.zero_copy {
            ZeroCopy::Auto => CopyPolicy::Auto,
            ZeroCopy::On => CopyPolicy::ZeroCopy,
            ZeroCopy::Off => CopyPolicy::Copy,
        };
        // Frames received on a side leave by the other one.
        let egress_mtu = [netdevs[1].mtu, netdevs[0].mtu].map(|m| m.min(u16::MAX as u32) as u16);
        let complete_checksums = [netdevs[0].may_carry_partial_checksums(), true];
        let mut workers = Vec::new();
        let mut cores = Vec::new();
        for (i, (&core, queues)) in w.cores.iter().zip(queues).enumerate() {
            let core = if core < num_cores() { Some(core) } else { None };
            if core.is_none() {
                tracing::warn!(core = w.cores[i], "no such core: worker runs unpinned");
            }
            // Each served queue gets its own fill ring: the UMEM grows with
            // the queues a worker serves so every ring stays as deep as with
            // one queue.
            let per_side = queues.outer.len().max(queues.inner.len()) as u32;
            let frame_count = w.frame_count.saturating_mul(per_side);
            tracing::info!(
                worker = i,
                frames = frame_count,
                umem_mib = (frame_count as u64 * w.frame_size as u64) >> 20,
                "UMEM"
            );
            let spec = WorkerSpec {
                index: i,
                core,
                queues,
                outer: cfg.interfaces.outer.clone(),
                inner: cfg.interfaces.inner.clone(),
                batch: w.batch_size,
                rings: RingSpec {
                    ring: w.ring_size,
                    fill: w.fill_size,
                    frame_size: w.frame_size,
                    frame_count,
                },
                copy,
                mode: modes[0],
                multi_buffer: true,
                poll_timeout_ms: w.poll_timeout.as_millis() as u32,
                publish_interval: w.publish_interval,
            };
            let pcfg = PipelineConfig {
                egress_mtu,
                complete_checksums,
                fast_path: fast.any_on(),
                ..PipelineConfig::new(
                    cfg.classifier.flow_capacity,
                    cfg.classifier.idle_timeout.as_nanos() as u64,
                    pacing.clone(),
                )
            };
            let mut pipeline = HeadroomPipeline::new(&pcfg, rules.clone());
            if let Some(cell) = director {
                // flow director hook
                pipeline =
                    pipeline.with_director(DirectorStage::new(Arc::clone(cell), &cfg.director));
            }
            let pacer = pacers.get_mut(i).and_then(Option::take);
            let maps = if fast.any_on() {
                Some([xdp[0].flow_map()?, xdp[1].flow_map()?])
            } else {
                None
            };
            let h = worker::spawn(spec, pipeline, pacer, maps, reports.clone(), stop.clone())
                .with_context(|| format!("starting worker {i}"))?;
            for s in &h.sockets {
                xdp[s.side as usize].register_socket(s.queue, s.fd)?;
            }
            tracing::info!(
                worker = i,
                outer_queues = ?h.queues.outer,
                inner_queues = ?h.queues.inner,
                ?core,
                zero_copy = h.zero_copy(Side::Outer) && h.zero_copy(Side::Inner),
                "worker started"
            );
            workers.push(h);
            cores.push(core);
        }
        for (s, p) in xdp.iter().enumerate() {
            p.configure(true, &settings[s])?;
        }
        if let Some(cell) = director {
            fast.set_tables(cell.generation());
        }
        Ok(Self {
            xdp,
            modes,
            netdevs,
            served,
            settings: std::cell::RefCell::new(settings),
            fast,
            workers,
            cores,
            stop,
        })
    }

    /// Sends `cmd()` to every worker (each applies it between batches).
    pub fn broadcast(&self, cmd: impl Fn() -> pipeline::Command) {
        for (i, w) in self.workers.iter().enumerate() {
            if w.commands.send(cmd()).is_err() {
                tracing::error!(worker = i, "worker is gone; command not delivered");
            }
        }
    }

    /// Receive-queue counts now, where they differ from start (`ethtool -L`
    /// while running: the new queues are served after a restart).
    pub fn queue_changes(&self) -> [Option<u32>; 2] {
        self.netdevs.clone().map(|d| match Netdev::read(&d.name) {
            Ok(now) if now.rx_queues != d.rx_queues => Some(now.rx_queues),
            _ => None,
        })
    }

    /// Rewrites both programs' settings from the fast-path state.
    pub fn reconfigure(&self) {
        for (s, p) in self.xdp.iter().enumerate() {
            let settings = XdpSettings {
                fast_path: self.fast.direction(s).on,
                fp_gen: self.fast.generation(),
                ..self.settings.borrow()[s]
            };
            if let Err(e) = p.configure(true, &settings) {
                tracing::error!(error = %e, "updating the XDP configuration");
            }
        }
    }

    /// New rules are in force: fast-path decisions made under the old ones
    /// are stale (their flows go through a worker once and are decided again).
    pub fn new_rules(&self) {
        self.fast.new_rules();
        self.reconfigure();
    }

    /// New director tables were published: VIP decisions made under the old
    /// ones are stale; the fast path learns the pool's underlay addresses
    /// (it decapsulates only from those) and this node's address and host MAC.
    pub fn new_tables(&self, cell: &TableCell) {
        if !self.fast.set_tables(cell.generation()) {
            return;
        }
        let t = cell.load();
        let peers = t.peers.underlay_ips();
        for (s, p) in self.xdp.iter().enumerate() {
            if let Err(e) = p.set_peers(&peers) {
                tracing::error!(error = %e, "updating the fast path's pool addresses");
            }
            let mut st = self.settings.borrow_mut();
            st[s].local_ip4 =
                (t.peers.local_ip != std::net::Ipv4Addr::UNSPECIFIED).then_some(t.peers.local_ip);
            st[s].host_mac = t.peers.local_mac;
        }
        self.reconfigure();
    }

    /// Stops steering, then the workers.
    pub fn shutdown(self) {
        // Stop steering first: frames fall through to the kernel path while
        // the workers drain and exit.
        for (s, p) in self.xdp.iter().enumerate() {
            let _ = p.configure(false, &self.settings.borrow()[s]);
        }
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.join();
        }
    }
}

impl Dataplane {
    /// Re-reads the interfaces' queue counts: a change while running
    /// (`ethtool -L`) leaves new queues unserved or served queues gone until
    /// a restart, so it is reported loudly (log, status, metric). `watch`
    /// holds the counts that differed at the previous call.
    pub fn watch_queues(&self, watch: &mut [Option<u32>; 2]) {
        let now = self.queue_changes();
        for (i, (&was, &is)) in watch.iter().zip(&now).enumerate() {
            if is != was {
                let d = &self.netdevs[i];
                match is {
                    Some(n) => tracing::error!(
                        interface = %d.name,
                        at_start = d.rx_queues,
                        now = n,
                        "receive queue count changed while running: restart headroomd to serve every queue"
                    ),
                    None => {
                        tracing::info!(interface = %d.name, "receive queue count back to its value at start")
                    }
                }
            }
        }
        *watch = now;
    }

    /// Watches the fast path's redirect errors (`xsk_drops`: AF_XDP drops
    /// per receiving side, discounted) and turns a failing direction off.
    pub fn watch_fast_path(&self, xsk_drops: [u64; 2]) {
        if self.fast.watch(xsk_drops) {
            self.reconfigure();
        }
    }

    /// Removes fast-path entries no frame has used for `idle` (the
    /// classifier's idle timeout) and counts the rest, when due.
    pub fn sweep_fast_path(&self, now: Timestamp, idle: Duration) {
        if !self.fast.any_on() || !self.fast.sweep_due(now, idle) {
            return;
        }
        let idle_ns = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
        for (s, xdp) in self.xdp.iter().enumerate() {
            match xdp.flow_map() {
                Ok(m) => self.fast.swept(s, m.sweep(now.as_nanos(), idle_ns)),
                Err(e) => tracing::warn!(error = %e, "fast-path table not swept"),
            }
        }
    }

    /// What the agent's status needs from the dataplane, read now: the
    /// interfaces (XDP verdicts, fast path), each worker's placement, and
    /// what the fast path forwarded for `jobs`. `changed` as left by
    /// [`Dataplane::watch_queues`].
    pub fn view(&self, cfg: &Config, changed: [Option<u32>; 2], jobs: &[u16]) -> DataplaneView {
        let roles = ["outer", "inner"];
        let names = [&cfg.interfaces.outer, &cfg.interfaces.inner];
        let interfaces = (0..2)
            .map(|i| InterfaceStatus {
                name: names[i].clone(),
                role: roles[i].into(),
                xdp_mode: self.modes[i].as_str().into(),
                driver: self.netdevs[i].driver.clone(),
                mtu: self.netdevs[i].mtu,
                rx_queues: self.netdevs[i].rx_queues,
                served_queues: self.served[i].clone(),
                rx_queues_now: changed[i],
                completes_checksums: i == 1 || self.netdevs[0].may_carry_partial_checksums(),
                fast_path: self.fast.direction(i).on,
                fast_path_off_reason: self.fast.direction(i).reason,
                fast_path_entries: self.fast.direction(i).entries,
                fast_path_capacity: u64::from(cfg.workers.fast_path_flows),
                fast_path_expired: self.fast.direction(i).expired,
                fast_path_encapsulated: self.xdp[i]
                    .fast_director()
                    .map(|c| c.0.packets)
                    .unwrap_or(0),
                fast_path_decapsulated: self.xdp[i]
                    .fast_director()
                    .map(|c| c.1.packets)
                    .unwrap_or(0),
                fast_path_checksums_completed: self.xdp[i]
                    .fast_checksums_completed()
                    .map(|c| c.packets)
                    .unwrap_or(0),
                fast_path_misses: self.xdp[i]
                    .fast_misses()
                    .map(|v| {
                        v.into_iter()
                            .map(|(n, c)| (n.to_string(), c.packets))
                            .collect()
                    })
                    .unwrap_or_default(),
                verdicts: self.xdp[i]
                    .named_verdicts()
                    .map(|v| {
                        v.into_iter()
                            .map(|(n, c)| (n.to_string(), c.packets, c.bytes))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        let workers = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, h)| WorkerStatus {
                index: i,
                core: self.cores[i],
                queues_outer: h.queues.outer.clone(),
                queues_inner: h.queues.inner.clone(),
                zero_copy: [h.zero_copy(Side::Outer), h.zero_copy(Side::Inner)],
                ..Default::default()
            })
            .collect();
        // Frames the fast path forwarded were counted by the XDP programs:
        // outer's are inbound, inner's outbound.
        let fast_jobs = jobs
            .iter()
            .map(|&id| {
                let [o, i] = [0, 1].map(|s| self.xdp[s].fast_job(id).unwrap_or_default());
                (id, [(o.packets, o.bytes), (i.packets, i.bytes)])
            })
            .collect();
        DataplaneView {
            interfaces,
            workers,
            fast_jobs,
            fast_director: self.xdp[0]
                .fast_director()
                .ok()
                .map(|(enc, dec)| (enc.packets, dec.packets)),
        }
    }

    /// Workers running.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }
}

fn num_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
