//! Packet generator engines: AF_XDP transmit (copy mode, batches,
//! need_wakeup) and XDP live frames (BPF_PROG_RUN with
//! BPF_F_TEST_XDP_LIVE_FRAMES), plus the Linux-pktgen-shaped report.

use std::{
    num::NonZeroU32,
    thread,
    time::{Duration, Instant},
};

use serde::Serialize;
use xsk_rs::{
    config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
    FrameDesc, Socket, Umem,
};

use crate::{
    bpf::{BpfError, PgConfig, PktgenProg},
    netdev::{self, now_ns},
    packet::{flow_tuple, Template, TemplateSpec},
    signal,
};

/// Which engine generates frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// AF_XDP socket transmit (copy mode on veth).
    Afxdp,
    /// XDP program run in live-frames mode (BPF_PROG_RUN).
    Live,
}

/// Generator run parameters.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Device to transmit on.
    pub dev: String,
    /// Engine.
    pub engine: Engine,
    /// Frames.
    pub spec: TemplateSpec,
    /// Frames to send in total (0: unlimited).
    pub count: u64,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Total rate limit in packets per second (0: unlimited).
    pub rate: u64,
    /// AF_XDP batch / live-frames kernel batch size.
    pub burst: u32,
    /// Generator threads.
    pub threads: usize,
    /// CPUs to pin threads to (thread i on cpus[i % len]).
    pub cpus: Vec<usize>,
    /// First AF_XDP queue (thread i uses queue + i).
    pub queue: u32,
    /// Live frames: redirect to this device instead of XDP_TX.
    pub redirect_dev: Option<String>,
    /// Live frames: frames per BPF_PROG_RUN call (0: automatic).
    pub chunk: u64,
    /// Live frames with a rate: how much lost sending time (preemption,
    /// gaps between calls) may be caught up by sending back to back.
    pub catch_up: Duration,
}

/// Errors running the generator.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// Device lookup failed.
    #[error(transparent)]
    Netdev(#[from] netdev::NetdevError),
    /// Loading or running the XDP generator failed.
    #[error(transparent)]
    Bpf(#[from] BpfError),
    /// Creating the AF_XDP socket or UMEM failed.
    #[error("AF_XDP setup on {dev} queue {queue}: {msg}")]
    Xsk {
        /// Device.
        dev: String,
        /// Queue.
        queue: u32,
        /// What failed.
        msg: String,
    },
    /// Transmitting failed.
    #[error("AF_XDP transmit on {0}: {1}")]
    Tx(String, std::io::Error),
    /// A thread could not be pinned to the requested CPU.
    #[error("pinning a generator thread to CPU {0}: {1}")]
    Pin(usize, nix::Error),
    /// A generator thread panicked.
    #[error("generator thread panicked")]
    ThreadPanic,
}

/// Result of a generator run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct GenReport {
    /// Engine used.
    pub engine: Engine,
    /// Device.
    pub dev: String,
    /// Frame size without FCS.
    pub size: usize,
    /// Frames handed to the device.
    pub sent: u64,
    /// Transmit errors (AF_XDP: frames not completed; live frames: failed runs).
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed_us: u64,
    /// Time spent sleeping for the rate limit (summed over threads / threads).
    pub idle_us: u64,
    /// Packets per second.
    pub pps: u64,
    /// Bits per second (frame bytes without FCS).
    pub bps: u64,
    /// Threads.
    pub threads: usize,
    /// Distinct flows.
    pub flows: u32,
    /// Requested rate limit (0: none).
    pub rate_limit: u64,
}

impl GenReport {
    /// Linux pktgen's result text.
    pub fn pktgen_text(&self) -> String {
        format!(
            "Result: OK: {}(c{}+d{}) usec, {} ({}byte,0frags)\n  {}pps {}Mb/sec ({}bps) errors: {}",
            self.elapsed_us,
            self.elapsed_us.saturating_sub(self.idle_us),
            self.idle_us,
            self.sent,
            self.size,
            self.pps,
            self.bps / 1_000_000,
            self.bps,
            self.errors
        )
    }
}

/// Flows of thread `t` of `n` when there are `total` flows: (base, count).
pub fn thread_flows(total: u32, t: usize, n: usize) -> (u32, u32) {
    let total = total.max(1) as u64;
    let (t, n) = (t as u64, n as u64);
    if total < n {
        // more threads than flows: flow ids stay distinct, tuples repeat
        return ((t) as u32, 1);
    }
    let base = total * t / n;
    let end = total * (t + 1) / n;
    (base as u32, (end - base) as u32)
}

/// Token-bucket pacer shared by both engines.
#[derive(Debug)]
struct Pacer {
    rate: u64,
    start: Instant,
    idle: Duration,
}

impl Pacer {
    fn new(rate: u64) -> Pacer {
        Pacer {
            rate,
            start: Instant::now(),
            idle: Duration::ZERO,
        }
    }
    /// Waits until `sent` frames are due.
    fn wait(&mut self, sent: u64) {
        if self.rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(sent as f64 / self.rate as f64);
        loop {
            let el = self.start.elapsed();
            if el >= due || signal::stopped() {
                return;
            }
            let w = due - el;
            let t0 = Instant::now();
            if w > Duration::from_micros(200) {
                thread::sleep(w - Duration::from_micros(100));
            } else {
                std::hint::spin_loop();
            }
            self.idle += t0.elapsed();
        }
    }
}

struct ThreadOut {
    sent: u64,
    errors: u64,
    idle: Duration,
    /// Sending time, setup (program load, socket bind) excluded.
    active: Duration,
}

/// Runs the generator and returns its report.
pub fn run(cfg: &GenConfig) -> Result<GenReport, GenError> {
    let ifindex = netdev::ifindex(&cfg.dev)?;
    let redirect = match &cfg.redirect_dev {
        Some(d) => netdev::ifindex(d)?,
        None => 0,
    };
    let template = Template::new(&cfg.spec);
    let total_flows = (cfg.spec.src_ip_cnt * cfg.spec.src_port_cnt).max(1);
    let n = cfg.threads.max(1);
    let start = Instant::now();
    let outs: Vec<Result<ThreadOut, GenError>> = thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|t| {
                let template = &template;
                s.spawn(move || {
                    if !cfg.cpus.is_empty() {
                        let cpu = cfg.cpus[t % cfg.cpus.len()];
                        if let Err(e) = netdev::pin_to_cpu(cpu) {
                            signal::request_stop();
                            return Err(GenError::Pin(cpu, e));
                        }
                    }
                    let (flow_base, flow_count) = thread_flows(total_flows, t, n);
                    let count = if cfg.count == 0 {
                        0
                    } else {
                        cfg.count / n as u64 + u64::from((t as u64) < cfg.count % n as u64)
                    };
                    let rate = if cfg.rate == 0 {
                        0
                    } else {
                        (cfg.rate / n as u64).max(1)
                    };
                    let r = match cfg.engine {
                        Engine::Live => {
                            let pc = PgConfig {
                                flow_base,
                                flow_count,
                                total_flows,
                                ip_min: u32::from(cfg.spec.src_ip_min),
                                ip_cnt: cfg.spec.src_ip_cnt.max(1),
                                port_min: u32::from(cfg.spec.src_port_min),
                                port_cnt: cfg.spec.src_port_cnt.max(1),
                                redirect_ifindex: redirect,
                                rate,
                                max_lag: (rate as f64 * cfg.catch_up.as_secs_f64()) as u64,
                                max_frames: count,
                            };
                            run_live(cfg, template, &pc, ifindex)
                        }
                        Engine::Afxdp => {
                            run_afxdp(cfg, template, t, flow_base, flow_count, count, rate)
                        }
                    };
                    if r.is_err() {
                        signal::request_stop();
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(GenError::ThreadPanic)))
            .collect()
    });
    let wall = start.elapsed();
    let mut sent = 0;
    let mut errors = 0;
    let mut idle = Duration::ZERO;
    let mut elapsed = Duration::ZERO;
    for o in outs {
        let o = o?;
        sent += o.sent;
        errors += o.errors;
        idle += o.idle;
        elapsed = elapsed.max(o.active);
    }
    if elapsed.is_zero() {
        elapsed = wall;
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    let pps = (sent as f64 / secs) as u64;
    Ok(GenReport {
        engine: cfg.engine,
        dev: cfg.dev.clone(),
        size: template.frame.len(),
        sent,
        errors,
        elapsed_us: elapsed.as_micros() as u64,
        idle_us: (idle / n as u32).as_micros() as u64,
        pps,
        bps: pps * template.frame.len() as u64 * 8,
        threads: n,
        flows: total_flows,
        rate_limit: cfg.rate,
    })
}

/// Target length of one BPF_PROG_RUN call.
const CALL_SECS: f64 = 1.0;

fn run_live(
    cfg: &GenConfig,
    t: &Template,
    pc: &PgConfig,
    ifindex: u32,
) -> Result<ThreadOut, GenError> {
    let prog = PktgenProg::new(t, pc)?;
    let batch = cfg.burst.clamp(1, 256);
    let paced = pc.rate > 0;
    let count = pc.max_frames;
    let start = Instant::now();
    let mut built: u64 = 0;
    let mut iterations: u64 = 0;
    let mut iter_rate: f64 = 0.0; // program runs per second
    let debug = std::env::var_os("HEADROOM_PKTGEN_DEBUG").is_some();
    let (mut first_ns, mut last_ns) = (0u64, 0u64);
    let mut chunk: u64 = if cfg.chunk > 0 { cfg.chunk } else { 1 << 14 };
    loop {
        if signal::stopped() || (count > 0 && built >= count) {
            break;
        }
        let mut n = chunk;
        if count > 0 {
            if !paced {
                n = n.min(count - built);
            } else if iter_rate > 0.0 {
                // runs after the last frame only burn time: size the call
                // to the frames left at the paced rate
                let left = (count - built) as f64 / pc.rate as f64;
                n = n.min((iter_rate * left * 1.05) as u64 + 256);
            }
        }
        if let Some(d) = cfg.duration {
            let el = start.elapsed();
            if el >= d {
                break;
            }
            if iter_rate > 0.0 {
                // end the last call on time
                let left = (d - el).as_secs_f64().min(CALL_SECS);
                n = n.min(((iter_rate * left) as u64).max(64));
            }
        }
        let t0 = Instant::now();
        prog.run(ifindex, n.min(u64::from(u32::MAX >> 1)) as u32, batch)?;
        let took = t0.elapsed().as_secs_f64().max(1e-6);
        iterations += n;
        iter_rate = n as f64 / took;
        let (b, f, l) = prog.progress()?;
        built = b;
        (first_ns, last_ns) = (f, l);
        if debug {
            eprintln!("pktgen: call of {n} runs took {took:.4} s, {built} frames built");
        }
        if cfg.chunk == 0 {
            // big calls: each call waits on RCU twice, and nothing is sent
            // meanwhile (tens of ms on a busy machine)
            chunk = ((iter_rate * CALL_SECS) as u64).clamp(1 << 12, 1 << 26);
        }
    }
    // sending time: from the first to the latest frame (one interval more),
    // without program load and the RCU waits of the last call
    let active = if built > 1 && last_ns > first_ns {
        Duration::from_nanos(last_ns - first_ns).mul_f64(built as f64 / (built - 1) as f64)
    } else {
        start.elapsed()
    };
    // runs that returned XDP_DROP while waiting for the pacing schedule
    let idle = if paced && iterations > 0 {
        active.mul_f64(iterations.saturating_sub(built) as f64 / iterations as f64)
    } else {
        Duration::ZERO
    };
    Ok(ThreadOut {
        sent: built,
        errors: 0,
        idle,
        active,
    })
}

const AFXDP_FRAMES: u32 = 4096;
const AFXDP_RING: u32 = 2048;

fn xsk_err(cfg: &GenConfig, queue: u32, msg: impl std::fmt::Display) -> GenError {
    GenError::Xsk {
        dev: cfg.dev.clone(),
        queue,
        msg: msg.to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_afxdp(
    cfg: &GenConfig,
    t: &Template,
    thread_idx: usize,
    flow_base: u32,
    flow_count: u32,
    count: u64,
    rate: u64,
) -> Result<ThreadOut, GenError> {
    let queue = cfg.queue + thread_idx as u32;
    let ring =
        QueueSize::new(AFXDP_RING).map_err(|e| xsk_err(cfg, queue, crate::cli::error_chain(&e)))?;
    let umem_cfg = UmemConfig::builder()
        .frame_size(
            FrameSize::new(4096).map_err(|e| xsk_err(cfg, queue, crate::cli::error_chain(&e)))?,
        )
        .fill_queue_size(ring)
        .comp_queue_size(ring)
        .build()
        .map_err(|e| xsk_err(cfg, queue, crate::cli::error_chain(&e)))?;
    let frames = NonZeroU32::new(AFXDP_FRAMES).ok_or_else(|| xsk_err(cfg, queue, "zero frames"))?;
    let (umem, mut free) = Umem::new(umem_cfg, frames, false)
        .map_err(|e| xsk_err(cfg, queue, crate::cli::error_chain(&e)))?;
    let sock_cfg = SocketConfig::builder()
        .rx_queue_size(ring)
        .tx_queue_size(ring)
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP | BindFlags::XDP_COPY)
        .build();
    let iface: Interface = cfg
        .dev
        .parse()
        .map_err(|e| xsk_err(cfg, queue, crate::cli::error_chain(&e)))?;
    // SAFETY: this UMEM is not shared with any other socket.
    let (mut tx, _rx, fq_cq) =
        crate::xsk::bind_retry(|| unsafe { Socket::new(sock_cfg, &umem, &iface, queue) })
            .map_err(|e| xsk_err(cfg, queue, crate::cli::error_chain(&e)))?;
    let (_fq, mut cq) = fq_cq.ok_or_else(|| xsk_err(cfg, queue, "no completion queue"))?;

    // Pre-write the template so that only variable fields change per frame.
    let len = t.frame.len();
    let tuples: Vec<(u32, u16)> = (0..flow_count)
        .map(|i| flow_tuple(&cfg.spec, flow_base + i))
        .collect();
    let burst = cfg.burst.clamp(1, AFXDP_RING) as usize;
    let mut batch: Vec<FrameDesc> = Vec::with_capacity(burst);
    let mut comp: Vec<FrameDesc> = vec![FrameDesc::default(); AFXDP_RING as usize];
    let mut pacer = Pacer::new(rate);
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut completed: u64 = 0;
    let mut flow_idx: u32 = 0;
    let mut seqs: Vec<u32> = vec![0; flow_count.max(1) as usize];
    loop {
        // SAFETY: the descriptors in `comp` are only overwritten, and the
        // frames they name belong to this UMEM.
        let c = unsafe { cq.consume(&mut comp) };
        free.extend_from_slice(&comp[..c]);
        completed += c as u64;
        let done = signal::stopped()
            || (count > 0 && sent >= count)
            || cfg.duration.is_some_and(|d| start.elapsed() >= d);
        if done {
            break;
        }
        let mut want = burst.min(free.len());
        if count > 0 {
            want = want.min((count - sent) as usize);
        }
        want = want.min(tx.nb_free(want as u32) as usize);
        if want == 0 {
            if tx.needs_wakeup() {
                tx.wakeup().map_err(|e| GenError::Tx(cfg.dev.clone(), e))?;
            }
            continue;
        }
        let now = now_ns();
        batch.clear();
        for _ in 0..want {
            let Some(mut d) = free.pop() else { break };
            let (ip, port) = tuples[flow_idx as usize];
            let flow = (flow_base + flow_idx) as u16;
            let seq = seqs[flow_idx as usize];
            seqs[flow_idx as usize] = seq.wrapping_add(1);
            flow_idx += 1;
            if flow_idx >= flow_count.max(1) {
                flow_idx = 0;
            }
            // SAFETY: `d` came from this UMEM's free list, so the kernel does
            // not own the frame while it is written.
            let mut data = unsafe { umem.data_mut(&mut d) };
            data.cursor().set_pos(len);
            t.write(data.contents_mut(), ip, port, flow, seq, now);
            batch.push(d);
        }
        // SAFETY: all descriptors are frames of this UMEM that user space
        // owns; `nb_free` guaranteed room for the whole batch.
        let p = unsafe { tx.produce(&batch) };
        if p != batch.len() {
            // cannot happen after nb_free; return the frames rather than leak
            free.extend_from_slice(&batch);
            continue;
        }
        sent += p as u64;
        // copy mode transmits at most 32 frames per wakeup: kick until the
        // batch is on its way, or frames queue up in the ring (latency)
        for _ in 0..p.div_ceil(32) {
            if !tx.needs_wakeup() {
                break;
            }
            tx.wakeup().map_err(|e| GenError::Tx(cfg.dev.clone(), e))?;
        }
        pacer.wait(sent);
    }
    let active = start.elapsed();
    // drain completions for a moment so errors reflect frames really lost
    let drain_end = Instant::now() + Duration::from_millis(200);
    while completed < sent && Instant::now() < drain_end {
        if tx.needs_wakeup() {
            let _ = tx.wakeup();
        }
        // SAFETY: as above.
        let c = unsafe { cq.consume(&mut comp) };
        completed += c as u64;
        if c == 0 {
            thread::sleep(Duration::from_micros(200));
        }
    }
    Ok(ThreadOut {
        sent,
        errors: sent - completed.min(sent),
        idle: pacer.idle,
        active,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_split_across_threads() {
        let mut all = Vec::new();
        for t in 0..3 {
            let (b, c) = thread_flows(10, t, 3);
            all.extend(b..b + c);
        }
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(thread_flows(1, 1, 2), (1, 1));
    }

    #[test]
    fn report_text_shape() {
        let r = GenReport {
            engine: Engine::Live,
            dev: "veth0".into(),
            size: 60,
            sent: 1000,
            errors: 0,
            elapsed_us: 1000,
            idle_us: 10,
            pps: 1_000_000,
            bps: 480_000_000,
            threads: 1,
            flows: 1,
            rate_limit: 0,
        };
        let s = r.pktgen_text();
        assert!(s.starts_with("Result: OK: 1000(c990+d10) usec, 1000 (60byte,0frags)\n  1000000pps 480Mb/sec (480000000bps) errors: 0"));
    }
}
