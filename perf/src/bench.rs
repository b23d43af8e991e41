//! Benchmark runner: per scenario (DUT kind, frame size, flows) a zero-loss
//! throughput binary search (RFC 2544 style), loss at the maximum offered
//! rate, latency at 10/50/90% of the zero-loss rate, CPU time per packet
//! from per-thread `se.sum_exec_runtime`, and the DUT's RSS.

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    packet::fmt_mac,
    pktgen::{Engine, GenReport},
    sched,
    sink::{SinkMode, SinkReport},
    topo::{self, Placement, TopoError, Topology},
};

/// Device under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DutKind {
    /// Raw AF_XDP L2 forwarder (`xdpfwd`).
    Xdpfwd,
    /// XDP_REDIRECT via devmap (`xdpfwd --devmap`).
    Redirect,
    /// Linux bridge.
    Bridge,
    /// Kernel IPv4 forwarding.
    KernelFwd,
    /// Headroom's daemon: `--headroomd-bin BIN --headroomd-config FILE`.
    Headroomd,
}

/// Runner parameters.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Where pktgen, sink and xdpfwd live.
    pub bin_dir: PathBuf,
    /// Placement.
    pub placement: Placement,
    /// Trial length.
    pub trial: Duration,
    /// Stop the search when (hi - lo) / hi is below this.
    pub resolution: f64,
    /// Maximum search steps after the max-rate trial.
    pub max_steps: u32,
    /// Loss ratio still counted as zero loss.
    pub loss_tolerance: f64,
    /// Generator engine.
    pub engine: Engine,
    /// Sink mode.
    pub sink_mode: SinkMode,
    /// Latency trial load points (fractions of the zero-loss rate).
    pub latency_points: Vec<f64>,
    /// headroomd binary.
    pub headroomd_bin: Option<PathBuf>,
    /// headroomd configuration template.
    pub headroomd_config: Option<PathBuf>,
    /// headroomd: send to the DUT's MAC (routing) instead of the sink's (L2).
    pub headroomd_l3: bool,
    /// How long to wait for a DUT to print "ready".
    pub dut_ready_timeout: Duration,
    /// Repeat a trial once when the generator fell short of the rate.
    pub retry_short: bool,
}

/// Errors running a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Topology setup failed.
    #[error(transparent)]
    Topo(#[from] TopoError),
    /// A tool could not be started.
    #[error("starting {0}: {1}")]
    Spawn(String, std::io::Error),
    /// A tool failed or printed no JSON result.
    #[error("{0} failed: {1}")]
    Tool(String, String),
    /// The DUT exited or never became ready.
    #[error("DUT {0}: {1}")]
    Dut(String, String),
    /// headroomd options missing.
    #[error("the headroomd DUT needs --headroomd-bin and --headroomd-config")]
    HeadroomdArgs,
    /// Writing results failed.
    #[error("writing {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// One trial.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// Requested rate (0: unlimited).
    pub rate: u64,
    /// Frames sent.
    pub sent: u64,
    /// Frames received by the sink.
    pub received: u64,
    /// Offered rate achieved by the generator.
    pub offered_pps: u64,
    /// sent - received, as a fraction of sent.
    pub loss_ratio: f64,
    /// Latency p50/p99/max (ns).
    pub lat_ns: [u64; 3],
    /// DUT process CPU time during the trial (ns).
    pub dut_cpu_ns: u64,
    /// napi/* and ksoftirqd/* CPU time during the trial (ns).
    pub kthread_cpu_ns: u64,
}

/// Latency at one load point.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyPoint {
    /// Fraction of the zero-loss rate.
    pub load: f64,
    /// Rate used.
    pub rate: u64,
    /// p50 (ns).
    pub p50_ns: u64,
    /// p99 (ns).
    pub p99_ns: u64,
    /// max (ns).
    pub max_ns: u64,
    /// Loss ratio seen in that trial.
    pub loss_ratio: f64,
}

/// Result of a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// DUT.
    pub dut: DutKind,
    /// Placement.
    pub placement: Placement,
    /// Frame size without FCS.
    pub size: usize,
    /// Flows.
    pub flows: u32,
    /// Zero-loss throughput (pps).
    pub zero_loss_pps: u64,
    /// Same in Gb/s of frames with FCS.
    pub zero_loss_gbps: f64,
    /// Maximum offered rate (pps).
    pub max_offered_pps: u64,
    /// Received rate at the maximum offered rate.
    pub max_received_pps: u64,
    /// Loss ratio at the maximum offered rate.
    pub loss_at_max: f64,
    /// Latency at the load points.
    pub latency: Vec<LatencyPoint>,
    /// DUT process CPU per packet at the zero-loss rate (ns).
    pub dut_cpu_ns_per_pkt: f64,
    /// napi/ksoftirqd CPU per packet at the zero-loss rate (ns).
    pub kthread_cpu_ns_per_pkt: f64,
    /// DUT process RSS (KiB), 0 without a process.
    pub dut_rss_kib: u64,
    /// All trials, in order.
    pub trials: Vec<Trial>,
    /// Trials whose generator fell short of the requested rate even after a
    /// retry (a busy machine): the figures are less trustworthy.
    pub warnings: Vec<String>,
}

/// A child process killed (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Proc {
    /// Spawns `args` with stderr lines forwarded to a channel.
    pub fn spawn(name: &str, args: &[String]) -> Result<Proc, BenchError> {
        let mut child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| BenchError::Spawn(name.to_owned(), e))?;
        let (tx, rx) = mpsc::channel();
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || {
                for l in BufReader::new(err).lines().map_while(Result::ok) {
                    let _ = tx.send(l);
                }
            });
        }
        let stdout = child.stdout.take().map(|out| {
            std::thread::spawn(move || {
                let mut s = String::new();
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    s.push_str(&l);
                    s.push('\n');
                }
                s
            })
        });
        Ok(Proc {
            name: name.to_owned(),
            child: Some(child),
            lines: rx,
            stdout,
        })
    }

    /// Process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Waits for a stderr line containing `pat`; Ok(false) on timeout.
    pub fn wait_line(&mut self, pat: &str, timeout: Duration) -> Result<bool, BenchError> {
        let end = Instant::now() + timeout;
        let mut seen = String::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(l) if l.contains(pat) => return Ok(true),
                Ok(l) => {
                    seen.push_str(&l);
                    seen.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(BenchError::Tool(
                        self.name.clone(),
                        format!("exited before becoming ready: {}", seen.trim()),
                    ));
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    let rest: Vec<String> = self.lines.try_iter().collect();
                    return Err(BenchError::Tool(
                        self.name.clone(),
                        format!(
                            "exited ({st}) before becoming ready: {}{}",
                            seen.trim(),
                            rest.join("\n")
                        ),
                    ));
                }
            }
        }
    }

    /// Waits for exit and returns stdout; error on failure status.
    pub fn finish(mut self) -> Result<String, BenchError> {
        let st = self.child.take().map(|mut c| c.wait());
        let out = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let err: Vec<String> = self.lines.try_iter().collect();
        match st {
            Some(Ok(s)) if s.success() => Ok(out),
            Some(Ok(s)) => Err(BenchError::Tool(
                self.name.clone(),
                format!("{s}: {}", err.join("\n")),
            )),
            Some(Err(e)) => Err(BenchError::Tool(self.name.clone(), e.to_string())),
            None => Ok(out),
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(2);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn last_json<T: serde::de::DeserializeOwned>(tool: &str, out: &str) -> Result<T, BenchError> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| BenchError::Tool(tool.into(), format!("no JSON result in output: {out}")))?;
    serde_json::from_str(line)
        .map_err(|e| BenchError::Tool(tool.into(), format!("bad JSON result: {e}")))
}

struct Scenario<'a> {
    cfg: &'a BenchConfig,
    topo: Topology,
    dut: DutKind,
    size: usize,
    flows: u32,
    dut_proc: Option<Proc>,
    dst_mac: [u8; 6],
    rss: u64,
    warnings: Vec<String>,
}

fn ns_exec(ns: &str, cpu: usize, bin: &Path, args: &[String]) -> Vec<String> {
    let mut v: Vec<String> = ["ip", "netns", "exec", ns, "taskset", "-c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.push(cpu.to_string());
    v.push(bin.display().to_string());
    v.extend_from_slice(args);
    v
}

fn kthread_pids() -> Vec<i32> {
    topo::kthreads(|c| c.starts_with("napi/") || c.starts_with("ksoftirqd/"))
}

impl Scenario<'_> {
    fn tool(&self, name: &str) -> PathBuf {
        self.cfg.bin_dir.join(name)
    }

    fn setup_dut(&mut self) -> Result<(), BenchError> {
        let t = &self.topo;
        let s = |x: &str| x.to_string();
        self.dst_mac = t.sink_mac;
        match self.dut {
            DutKind::Xdpfwd | DutKind::Redirect => {
                let mut args = vec![s("-a"), t.dut_in.clone(), s("-b"), t.dut_out.clone()];
                if self.dut == DutKind::Redirect {
                    args.push(s("--devmap"));
                }
                let cmd = ns_exec(&t.dut_ns, 1, &self.tool("xdpfwd"), &args);
                let mut p = Proc::spawn("xdpfwd", &cmd)?;
                if !p.wait_line("ready", self.cfg.dut_ready_timeout)? {
                    return Err(BenchError::Dut("xdpfwd".into(), "not ready in time".into()));
                }
                self.dut_proc = Some(p);
            }
            DutKind::Bridge => {
                t.setup_bridge()?;
                t.gro(&t.dut_ns, &t.dut_in, true)?;
            }
            DutKind::KernelFwd => {
                t.setup_routing()?;
                t.gro(&t.dut_ns, &t.dut_in, true)?;
                self.dst_mac = t.dut_in_mac;
            }
            DutKind::Headroomd => {
                let (Some(bin), Some(tmpl)) = (&self.cfg.headroomd_bin, &self.cfg.headroomd_config)
                else {
                    return Err(BenchError::HeadroomdArgs);
                };
                t.setup_routing()?;
                let text =
                    fs::read_to_string(tmpl).map_err(|e| BenchError::Write(tmpl.clone(), e))?;
                let rendered = render_config(&text, t);
                let path = std::env::temp_dir()
                    .join(format!("headroomd-bench-{}.conf", std::process::id()));
                fs::write(&path, rendered).map_err(|e| BenchError::Write(path.clone(), e))?;
                let cmd = ns_exec(
                    &t.dut_ns,
                    1,
                    bin,
                    &[s("--config"), path.display().to_string()],
                );
                let mut p = Proc::spawn("headroomd", &cmd)?;
                // headroomd may not announce readiness: settle instead
                let _ = p.wait_line("ready", self.cfg.dut_ready_timeout)?;
                if !p.alive() {
                    return Err(BenchError::Dut(
                        "headroomd".into(),
                        "exited during startup".into(),
                    ));
                }
                if self.cfg.headroomd_l3 {
                    self.dst_mac = t.dut_in_mac;
                }
                self.dut_proc = Some(p);
            }
        }
        if self.cfg.placement == Placement::A {
            t.thread_and_pin_dut_napi(1)?;
        }
        Ok(())
    }

    /// A rate-limited trial, repeated once when the generator offered less
    /// than 90% of the rate (it was starved of CPU).
    fn paced_trial(&mut self, rate: u64) -> Result<Trial, BenchError> {
        let tr = self.trial(rate)?;
        if (tr.offered_pps as f64) >= 0.9 * rate as f64 {
            return Ok(tr);
        }
        if !self.cfg.retry_short {
            self.warnings.push(format!(
                "{:?} {}B {} flows: generator offered {} of {rate} pps",
                self.dut, self.size, self.flows, tr.offered_pps
            ));
            return Ok(tr);
        }
        eprintln!(
            "bench:   generator offered {} of {rate} pps: retrying the trial",
            tr.offered_pps
        );
        let tr = self.trial(rate)?;
        if (tr.offered_pps as f64) < 0.9 * rate as f64 {
            self.warnings.push(format!(
                "{:?} {}B {} flows: generator offered {} of {rate} pps",
                self.dut, self.size, self.flows, tr.offered_pps
            ));
        }
        Ok(tr)
    }

    fn trial(&mut self, rate: u64) -> Result<Trial, BenchError> {
        let t = &self.topo;
        let s = |x: &str| x.to_string();
        let mode = match self.cfg.sink_mode {
            SinkMode::Afxdp => "afxdp",
            SinkMode::Xdp => "xdp",
            SinkMode::Udp => "udp",
        };
        let mut sink_args = vec![
            s("-i"),
            t.sink_if.clone(),
            s("-m"),
            s(mode),
            s("--json"),
            s("-q"),
            s("400ms"),
        ];
        sink_args.extend([
            s("-d"),
            format!(
                "{}",
                (self.cfg.trial + Duration::from_secs(3)).as_secs_f64()
            ),
        ]);
        if self.cfg.sink_mode == SinkMode::Xdp {
            sink_args.extend([s("--flows"), self.flows.to_string()]);
        }
        if self.cfg.sink_mode == SinkMode::Udp {
            sink_args.extend([s("--bind"), format!("{}:9", topo::SINK_IP)]);
        }
        let mut sink = Proc::spawn(
            "sink",
            &ns_exec(&t.sink_ns, 0, &self.tool("sink"), &sink_args),
        )?;
        if !sink.wait_line("ready", Duration::from_secs(10))? {
            return Err(BenchError::Tool("sink".into(), "not ready in time".into()));
        }
        let engine = match self.cfg.engine {
            Engine::Live => "live",
            Engine::Afxdp => "afxdp",
        };
        let gen_args = vec![
            s("-i"),
            t.gen_if.clone(),
            s("-e"),
            s(engine),
            s("-s"),
            self.size.to_string(),
            s("--flows"),
            self.flows.to_string(),
            s("--dst-mac"),
            fmt_mac(&self.dst_mac),
            s("--src-ip"),
            s(topo::GEN_IP),
            s("--dst-ip"),
            s(topo::SINK_IP),
            s("-d"),
            format!("{}", self.cfg.trial.as_secs_f64()),
            s("-r"),
            rate.to_string(),
            s("--json"),
        ];
        let kt = kthread_pids();
        let dut_pid = self.dut_proc.as_ref().map(|p| p.pid());
        let dut0 = dut_pid.map(sched::process_runtime_ns).unwrap_or(0);
        let k0 = sched::threads_runtime_ns(&kt);
        let gen = Proc::spawn(
            "pktgen",
            &ns_exec(&t.gen_ns, 0, &self.tool("pktgen"), &gen_args),
        )?;
        let gen_out = gen.finish()?;
        let dut1 = dut_pid.map(sched::process_runtime_ns).unwrap_or(0);
        let k1 = sched::threads_runtime_ns(&kt);
        if let Some(p) = dut_pid {
            self.rss = self.rss.max(sched::rss_kib(p).unwrap_or(0));
        }
        let g: GenReport = last_json("pktgen", &gen_out)?;
        let sk: SinkReport = last_json("sink", &sink.finish()?)?;
        if let Some(p) = self.dut_proc.as_mut() {
            if !p.alive() {
                return Err(BenchError::Dut(
                    format!("{:?}", self.dut),
                    "exited during a trial".into(),
                ));
            }
        }
        let lost = g.sent.saturating_sub(sk.received);
        Ok(Trial {
            rate,
            sent: g.sent,
            received: sk.received,
            offered_pps: g.pps,
            loss_ratio: if g.sent > 0 {
                lost as f64 / g.sent as f64
            } else {
                1.0
            },
            lat_ns: [sk.lat_p50_ns, sk.lat_p99_ns, sk.lat_max_ns],
            dut_cpu_ns: dut1.saturating_sub(dut0),
            kthread_cpu_ns: k1.saturating_sub(k0),
        })
    }

    fn run(&mut self) -> Result<ScenarioResult, BenchError> {
        self.setup_dut()?;
        let cfg = self.cfg;
        let mut trials = Vec::new();
        let max = self.trial(0)?;
        eprintln!(
            "bench: {:?} {}B {} flows: max offered {} pps, received {} pps-equivalent, loss {:.4}%",
            self.dut,
            self.size,
            self.flows,
            max.offered_pps,
            rx_pps(&max),
            max.loss_ratio * 100.0
        );
        trials.push(max.clone());
        let mut best: Option<Trial> = None;
        if max.loss_ratio <= cfg.loss_tolerance {
            best = Some(max.clone());
        } else {
            let mut lo = 0u64;
            let mut hi = max.offered_pps;
            // first guess: what the DUT delivered at the maximum rate
            let mut rate = rx_pps(&max).clamp(1, hi.max(1));
            for _ in 0..cfg.max_steps {
                let tr = self.paced_trial(rate)?;
                let pass = tr.loss_ratio <= cfg.loss_tolerance && tr.sent > 0;
                eprintln!(
                    "bench:   rate {rate} pps (offered {}): loss {:.4}% -> {}",
                    tr.offered_pps,
                    tr.loss_ratio * 100.0,
                    if pass { "pass" } else { "fail" }
                );
                trials.push(tr.clone());
                if pass {
                    lo = rate;
                    if best.as_ref().is_none_or_lower(tr.offered_pps) {
                        best = Some(tr);
                    }
                } else {
                    hi = rate;
                }
                if hi == 0 || (hi - lo) as f64 / hi as f64 <= cfg.resolution {
                    break;
                }
                rate = (lo + hi) / 2;
                // rate 0 means unlimited; below ~100 frames a trial says nothing
                if rate == 0 || (rate as f64) * cfg.trial.as_secs_f64() < 100.0 {
                    break;
                }
            }
        }
        // RFC 2544 reports the offered rate: what the generator really sent
        // (a paced generator starved of CPU falls short of the request)
        let zl = best.as_ref().map(|b| b.offered_pps).unwrap_or(0);
        let mut latency = Vec::new();
        if zl > 0 {
            for &p in &cfg.latency_points {
                let r = ((zl as f64) * p).max(1.0) as u64;
                let tr = self.paced_trial(r)?;
                latency.push(LatencyPoint {
                    load: p,
                    rate: r,
                    p50_ns: tr.lat_ns[0],
                    p99_ns: tr.lat_ns[1],
                    max_ns: tr.lat_ns[2],
                    loss_ratio: tr.loss_ratio,
                });
                trials.push(tr);
            }
        }
        let per = |b: &Option<Trial>, f: fn(&Trial) -> u64| {
            b.as_ref()
                .filter(|t| t.received > 0)
                .map(|t| f(t) as f64 / t.received as f64)
                .unwrap_or(0.0)
        };
        Ok(ScenarioResult {
            dut: self.dut,
            placement: cfg.placement,
            size: self.size,
            flows: self.flows,
            zero_loss_pps: zl,
            zero_loss_gbps: zl as f64 * (self.size as f64 + 4.0) * 8.0 / 1e9,
            max_offered_pps: max.offered_pps,
            max_received_pps: rx_pps(&max),
            loss_at_max: max.loss_ratio,
            latency,
            dut_cpu_ns_per_pkt: per(&best, |t| t.dut_cpu_ns),
            kthread_cpu_ns_per_pkt: per(&best, |t| t.kthread_cpu_ns),
            dut_rss_kib: self.rss,
            trials,
            warnings: self.warnings.clone(),
        })
    }
}

trait LowerThan {
    fn is_none_or_lower(&self, pps: u64) -> bool;
}

impl LowerThan for Option<&Trial> {
    fn is_none_or_lower(&self, pps: u64) -> bool {
        match self {
            None => true,
            Some(t) => t.offered_pps < pps,
        }
    }
}

fn rx_pps(t: &Trial) -> u64 {
    if t.sent == 0 {
        return 0;
    }
    (t.offered_pps as f64 * t.received as f64 / t.sent as f64) as u64
}

/// Replaces `{{DUT_IN}}`, `{{DUT_OUT}}`, `{{DUT_IN_MAC}}`, `{{DUT_OUT_MAC}}`,
/// `{{GEN_MAC}}`, `{{SINK_MAC}}`, `{{GEN_IP}}`, `{{SINK_IP}}` in a headroomd
/// configuration template.
pub fn render_config(text: &str, t: &Topology) -> String {
    text.replace("{{DUT_IN}}", &t.dut_in)
        .replace("{{DUT_OUT}}", &t.dut_out)
        .replace("{{DUT_IN_MAC}}", &fmt_mac(&t.dut_in_mac))
        .replace("{{DUT_OUT_MAC}}", &fmt_mac(&t.dut_out_mac))
        .replace("{{GEN_MAC}}", &fmt_mac(&t.gen_mac))
        .replace("{{SINK_MAC}}", &fmt_mac(&t.sink_mac))
        .replace("{{GEN_IP}}", topo::GEN_IP)
        .replace("{{SINK_IP}}", topo::SINK_IP)
}

/// Runs one scenario in a fresh topology (torn down on return, also on error).
pub fn run_scenario(
    cfg: &BenchConfig,
    idx: usize,
    dut: DutKind,
    size: usize,
    flows: u32,
) -> Result<ScenarioResult, BenchError> {
    let tag = format!("{}x{idx}", std::process::id());
    let topo = Topology::create(&tag)?;
    let mut sc = Scenario {
        cfg,
        topo,
        dut,
        size,
        flows,
        dut_proc: None,
        dst_mac: [0xff; 6],
        rss: 0,
        warnings: Vec::new(),
    };
    let r = sc.run();
    // stop the DUT before its namespace goes away
    drop(sc.dut_proc.take());
    r
}

/// Civil date and time (UTC) for result paths: ("YYYY-MM-DD", "HHMMSS").
pub fn utc_stamp() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

/// Markdown report.
pub fn markdown(
    command: &str,
    kernel: &str,
    results: &[ScenarioResult],
    failures: &[String],
) -> String {
    let mut s = String::new();
    s.push_str("# Headroom bench results\n\n");
    s.push_str(&format!("Command: `{command}`\n\nKernel: {kernel}\n\n"));
    s.push_str("Throughput: RFC 2544 style zero-loss binary search; Gb/s counts frames with FCS. Latency p50/p99/max in µs at 10/50/90% of the zero-loss rate. CPU: ns per received packet at the zero-loss rate, DUT process threads / napi+ksoftirqd threads (se.sum_exec_runtime; softirq work done in a sender's context is not included).\n\n");
    s.push_str("| DUT | placement | size | flows | zero-loss Mpps | Gb/s | max offered Mpps | received at max Mpps | loss at max | latency @10% | latency @50% | latency @90% | CPU ns/pkt (DUT / kthreads) | DUT RSS MiB |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in results {
        let lat = |p: f64| {
            r.latency
                .iter()
                .find(|l| (l.load - p).abs() < 1e-9)
                .map(|l| format!("{}/{}/{}", us(l.p50_ns), us(l.p99_ns), us(l.max_ns)))
                .unwrap_or_else(|| "-".into())
        };
        s.push_str(&format!(
            "| {:?} | {:?} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2}% | {} | {} | {} | {:.0} / {:.0} | {:.1} |\n",
            r.dut,
            r.placement,
            r.size,
            r.flows,
            r.zero_loss_pps as f64 / 1e6,
            r.zero_loss_gbps,
            r.max_offered_pps as f64 / 1e6,
            r.max_received_pps as f64 / 1e6,
            r.loss_at_max * 100.0,
            lat(0.1),
            lat(0.5),
            lat(0.9),
            r.dut_cpu_ns_per_pkt,
            r.kthread_cpu_ns_per_pkt,
            r.dut_rss_kib as f64 / 1024.0
        ));
    }
    let warnings: Vec<&String> = results.iter().flat_map(|r| r.warnings.iter()).collect();
    if !warnings.is_empty() {
        s.push_str("\nWarnings (the generator fell short of the requested rate twice; the machine was busy):\n\n");
        for w in warnings {
            s.push_str(&format!("- {w}\n"));
        }
    }
    if !failures.is_empty() {
        s.push_str("\nFailed scenarios:\n\n");
        for f in failures {
            s.push_str(&format!("- {f}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_shape() {
        let (d, t) = utc_stamp();
        assert_eq!(d.len(), 10);
        assert_eq!(t.len(), 6);
        assert!(d.starts_with("20"));
    }
}
