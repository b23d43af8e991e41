//! Packet sink: counts generator frames arriving on an interface (AF_XDP
//! receive, in-kernel XDP accounting, or a UDP socket) and reports loss,
//! reordering, duplicates and one-way latency.

use std::{
    net::{SocketAddr, UdpSocket},
    num::NonZeroU32,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use serde::Serialize;
use xsk_rs::{
    config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
    FrameDesc, Socket, Umem,
};

use crate::{
    bpf::{BpfError, SinkProg, SINK_COUNT, SINK_XSK},
    hist::Histogram,
    netdev::{self, now_ns},
    packet::{parse_frame, parse_payload, Probe},
    signal,
};

/// How the sink receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SinkMode {
    /// AF_XDP socket (copy mode) behind the sink's own XDP program.
    Afxdp,
    /// Accounting inside the XDP program, frames dropped there (highest rates;
    /// duplicates are counted as reordered).
    Xdp,
    /// A plain UDP socket, for traffic that went through a host stack.
    Udp,
}

/// Sink run parameters.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Interface (afxdp, xdp modes).
    pub dev: String,
    /// Mode.
    pub mode: SinkMode,
    /// UDP mode: address to bind.
    pub bind: SocketAddr,
    /// AF_XDP queue.
    pub queue: u32,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many valid frames (0: no limit).
    pub count: u64,
    /// Stop when nothing arrived for this long after the first frame.
    pub quiet: Option<Duration>,
    /// Flows to read back in xdp mode (flow ids 0..flows).
    pub flows: u32,
}

/// Errors running the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Device lookup failed.
    #[error(transparent)]
    Netdev(#[from] netdev::NetdevError),
    /// The sink's XDP program failed.
    #[error(transparent)]
    Bpf(#[from] BpfError),
    /// AF_XDP setup failed.
    #[error("AF_XDP setup on {0}: {1}")]
    Xsk(String, String),
    /// Socket I/O failed.
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
}

/// Sink result.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct SinkReport {
    /// Mode.
    pub mode: String,
    /// Interface or bound address.
    pub dev: String,
    /// Valid generator frames received.
    pub received: u64,
    /// Frames without the generator magic.
    pub invalid: u64,
    /// Bytes of valid frames.
    pub bytes: u64,
    /// Frames missing from per-flow sequences.
    pub lost: u64,
    /// Frames that arrived after a higher sequence of their flow.
    pub reordered: u64,
    /// Frames received twice (AF_XDP / UDP modes).
    pub duplicates: u64,
    /// Flows with at least one frame.
    pub flows_seen: u64,
    /// Time between first and last valid frame.
    pub active_us: u64,
    /// Received rate over the active period.
    pub pps: u64,
    /// Latency median (ns).
    pub lat_p50_ns: u64,
    /// Latency 99th percentile (ns).
    pub lat_p99_ns: u64,
    /// Latency maximum (ns).
    pub lat_max_ns: u64,
    /// Wall time of the run.
    pub elapsed_us: u64,
}

impl SinkReport {
    /// Human-readable summary.
    pub fn text(&self) -> String {
        format!(
            "sink {} {}: received {} ({} pps over {} us), lost {}, reordered {}, duplicates {}, invalid {}, flows {}\n  latency p50 {} ns, p99 {} ns, max {} ns",
            self.mode,
            self.dev,
            self.received,
            self.pps,
            self.active_us,
            self.lost,
            self.reordered,
            self.duplicates,
            self.invalid,
            self.flows_seen,
            self.lat_p50_ns,
            self.lat_p99_ns,
            self.lat_max_ns
        )
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct FlowState {
    seen: bool,
    highest: u64,
    window: u64, // bit i: highest - i received
    received: u64,
    dups: u64,
}

/// Per-flow sequence accounting and latency, no allocation per frame.
#[derive(Debug)]
pub struct Tracker {
    flows: Vec<FlowState>,
    hist: Histogram,
    received: u64,
    invalid: u64,
    bytes: u64,
    reordered: u64,
    first_ns: u64,
    last_ns: u64,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            flows: vec![FlowState::default(); 65536],
            hist: Histogram::default(),
            received: 0,
            invalid: 0,
            bytes: 0,
            reordered: 0,
            first_ns: 0,
            last_ns: 0,
        }
    }
}

impl Tracker {
    /// Accounts one frame (or datagram); `p` is `None` for foreign traffic.
    #[inline]
    pub fn record(&mut self, p: Option<Probe>, len: usize, now: u64) {
        let Some(p) = p else {
            self.invalid += 1;
            return;
        };
        self.received += 1;
        self.bytes += len as u64;
        if self.first_ns == 0 {
            self.first_ns = now;
        }
        self.last_ns = now;
        self.hist.record(now.saturating_sub(p.send_ns));
        let f = &mut self.flows[p.flow as usize];
        f.received += 1;
        if !f.seen {
            f.seen = true;
            f.highest = u64::from(p.seq);
            f.window = 1;
            return;
        }
        // extend the 32-bit sequence to the one nearest the highest seen
        let hi = f.highest;
        let mut ext = (hi & !0xffff_ffff) | u64::from(p.seq);
        if ext + (1 << 31) < hi {
            ext += 1 << 32;
        } else if ext > hi + (1 << 31) && ext >= 1 << 32 {
            ext -= 1 << 32;
        }
        if ext > hi {
            let shift = ext - hi;
            f.window = if shift >= 64 { 0 } else { f.window << shift };
            f.window |= 1;
            f.highest = ext;
        } else {
            let back = hi - ext;
            self.reordered += 1;
            if back < 64 {
                if f.window & (1 << back) != 0 {
                    f.dups += 1;
                    self.reordered -= 1;
                } else {
                    f.window |= 1 << back;
                }
            }
        }
    }

    /// Builds the report.
    pub fn report(&self, mode: &str, dev: &str, elapsed: Duration) -> SinkReport {
        let mut expected = 0;
        let mut dups = 0;
        let mut seen = 0;
        for f in self.flows.iter().filter(|f| f.seen) {
            seen += 1;
            expected += f.highest + 1;
            dups += f.dups;
        }
        let unique = self.received - dups;
        let active = self.last_ns.saturating_sub(self.first_ns);
        SinkReport {
            mode: mode.into(),
            dev: dev.into(),
            received: self.received,
            invalid: self.invalid,
            bytes: self.bytes,
            lost: expected.saturating_sub(unique),
            reordered: self.reordered,
            duplicates: dups,
            flows_seen: seen,
            active_us: active / 1000,
            pps: if active > 0 {
                ((self.received.saturating_sub(1)) as f64 * 1e9 / active as f64) as u64
            } else {
                0
            },
            lat_p50_ns: self.hist.quantile(0.5),
            lat_p99_ns: self.hist.quantile(0.99),
            lat_max_ns: self.hist.max(),
            elapsed_us: elapsed.as_micros() as u64,
        }
    }
}

/// Stop-condition bookkeeping shared by the modes.
struct Stopper<'a> {
    cfg: &'a SinkConfig,
    start: Instant,
    last_rx: Option<Instant>,
}

impl Stopper<'_> {
    fn done(&mut self, received: u64, got_now: bool) -> bool {
        let now = Instant::now();
        if got_now {
            self.last_rx = Some(now);
        }
        signal::stopped()
            || (self.cfg.count > 0 && received >= self.cfg.count)
            || self.cfg.duration.is_some_and(|d| now - self.start >= d)
            || matches!((self.cfg.quiet, self.last_rx), (Some(q), Some(l)) if now - l >= q)
    }
}

/// Prints the readiness line the bench runner waits for.
fn ready(what: &str) {
    eprintln!("sink: ready on {what}");
}

/// Runs the sink until a stop condition holds.
pub fn run(cfg: &SinkConfig) -> Result<SinkReport, SinkError> {
    match cfg.mode {
        SinkMode::Afxdp => run_afxdp(cfg),
        SinkMode::Xdp => run_xdp(cfg),
        SinkMode::Udp => run_udp(cfg),
    }
}

fn run_xdp(cfg: &SinkConfig) -> Result<SinkReport, SinkError> {
    let ifindex = netdev::ifindex(&cfg.dev)?;
    let prog = SinkProg::attach(ifindex, SINK_COUNT, 1)?;
    ready(&cfg.dev);
    let mut st = Stopper {
        cfg,
        start: Instant::now(),
        last_rx: None,
    };
    let mut last_valid = 0;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let s = prog.stats(1)?;
        let got = s.valid != last_valid;
        last_valid = s.valid;
        if st.done(s.valid, got) {
            break;
        }
    }
    let s = prog.stats(cfg.flows.max(1))?;
    let mut h = Histogram::default();
    for (i, n) in s.hist.iter().enumerate() {
        h.add_bucket(i, *n);
    }
    let active = s.last_ns.saturating_sub(s.first_ns);
    Ok(SinkReport {
        mode: "xdp".into(),
        dev: cfg.dev.clone(),
        received: s.valid,
        invalid: s.rx - s.valid,
        bytes: s.bytes,
        lost: s.expected.saturating_sub(s.valid - s.late),
        reordered: s.late,
        duplicates: 0,
        flows_seen: s.flows_seen,
        active_us: active / 1000,
        pps: if active > 0 {
            (s.valid.saturating_sub(1) as f64 * 1e9 / active as f64) as u64
        } else {
            0
        },
        lat_p50_ns: h.quantile(0.5),
        lat_p99_ns: h.quantile(0.99),
        lat_max_ns: h.max(),
        elapsed_us: st.start.elapsed().as_micros() as u64,
    })
}

fn run_udp(cfg: &SinkConfig) -> Result<SinkReport, SinkError> {
    let sock = UdpSocket::bind(cfg.bind).map_err(|e| SinkError::Io("binding the UDP socket", e))?;
    // Best effort: without CAP_NET_ADMIN the default buffer stays.
    let _ =
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::RcvBufForce, &(32 << 20));
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| SinkError::Io("setting a read timeout", e))?;
    ready(&cfg.bind.to_string());
    let mut tr = Tracker::default();
    let mut st = Stopper {
        cfg,
        start: Instant::now(),
        last_rx: None,
    };
    let mut buf = vec![0u8; 65536];
    loop {
        let got = match sock.recv(&mut buf) {
            Ok(n) => {
                tr.record(parse_payload(&buf[..n]), n + 42, now_ns());
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                false
            }
            Err(e) => return Err(SinkError::Io("receiving", e)),
        };
        if st.done(tr.received, got) {
            break;
        }
    }
    Ok(tr.report("udp", &cfg.bind.to_string(), st.start.elapsed()))
}

fn run_afxdp(cfg: &SinkConfig) -> Result<SinkReport, SinkError> {
    let e = |m: &dyn std::fmt::Display| SinkError::Xsk(cfg.dev.clone(), m.to_string());
    let ifindex = netdev::ifindex(&cfg.dev)?;
    let ring = QueueSize::new(2048).map_err(|x| e(&crate::cli::error_chain(&x)))?;
    let umem_cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(4096).map_err(|x| e(&crate::cli::error_chain(&x)))?)
        .fill_queue_size(ring)
        .comp_queue_size(ring)
        .build()
        .map_err(|x| e(&crate::cli::error_chain(&x)))?;
    let frames = NonZeroU32::new(4096).ok_or_else(|| e(&"zero frames"))?;
    let (umem, descs) =
        Umem::new(umem_cfg, frames, false).map_err(|x| e(&crate::cli::error_chain(&x)))?;
    let sock_cfg = SocketConfig::builder()
        .rx_queue_size(ring)
        .tx_queue_size(ring)
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP | BindFlags::XDP_COPY)
        .build();
    let iface: Interface = cfg
        .dev
        .parse()
        .map_err(|x| e(&crate::cli::error_chain(&x)))?;
    let prog = SinkProg::attach(ifindex, SINK_XSK, 1)?;
    // SAFETY: this UMEM is not shared with any other socket.
    let (_tx, mut rx, fq_cq) =
        crate::xsk::bind_retry(|| unsafe { Socket::new(sock_cfg, &umem, &iface, cfg.queue) })
            .map_err(|x| e(&crate::cli::error_chain(&x)))?;
    let (mut fq, _cq) = fq_cq.ok_or_else(|| e(&"no fill queue"))?;
    prog.insert_xsk(cfg.queue, rx.fd().as_raw_fd())?;
    // SAFETY: the first 2048 frames belong to this UMEM and are owned by user
    // space; the fill ring has room for exactly that many.
    let filled = unsafe { fq.produce(&descs[..2048]) };
    if filled != 2048 {
        return Err(e(&"could not fill the fill ring"));
    }
    ready(&cfg.dev);
    let mut tr = Tracker::default();
    let mut st = Stopper {
        cfg,
        start: Instant::now(),
        last_rx: None,
    };
    let mut batch = vec![FrameDesc::default(); 64];
    loop {
        // SAFETY: the descriptors are only overwritten by frames of this UMEM.
        let n = unsafe { rx.poll_and_consume(&mut batch, 50) }
            .map_err(|x| SinkError::Io("polling the AF_XDP socket", x))?;
        if n > 0 {
            let now = now_ns();
            for d in &batch[..n] {
                // SAFETY: the kernel handed this frame to user space on the
                // rx ring; it is read before going back to the fill ring.
                let data = unsafe { umem.data(d) };
                let f = data.contents();
                tr.record(parse_frame(f), f.len(), now);
            }
            // SAFETY: these frames were just consumed from rx, so the fill
            // ring has room for them and the kernel does not own them.
            let p = unsafe { fq.produce(&batch[..n]) };
            debug_assert_eq!(p, n);
            if fq.needs_wakeup() {
                let _ = fq.wakeup(rx.fd_mut(), 0);
            }
        }
        if st.done(tr.received, n > 0) {
            break;
        }
    }
    Ok(tr.report("afxdp", &cfg.dev, st.start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(flow: u16, seq: u32) -> Option<Probe> {
        Some(Probe {
            flow,
            seq,
            send_ns: 0,
        })
    }

    #[test]
    fn loss_reorder_duplicates() {
        let mut t = Tracker::default();
        for s in [0, 1, 3, 2, 2, 6] {
            t.record(p(1, s), 60, 10);
        }
        t.record(p(2, 0), 60, 10);
        t.record(None, 60, 10);
        let r = t.report("t", "d", Duration::ZERO);
        assert_eq!(r.received, 7);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.reordered, 1);
        assert_eq!(r.lost, 2); // 4 and 5
        assert_eq!(r.invalid, 1);
        assert_eq!(r.flows_seen, 2);
    }

    #[test]
    fn sequence_wraps() {
        let mut t = Tracker::default();
        for s in [u32::MAX - 1, u32::MAX, 0, 1] {
            t.record(p(0, s), 60, 1);
        }
        let r = t.report("t", "d", Duration::ZERO);
        assert_eq!(r.reordered, 0);
        assert_eq!(r.duplicates, 0);
    }
}
