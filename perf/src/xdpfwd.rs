//! Baseline raw AF_XDP L2 forwarder between two interfaces: one thread,
//! shared UMEM, batch 64, rings 2048, 4096-byte frames, need_wakeup and
//! poll(), no classification (the same sizes as Headroom's workers).

use std::{
    num::NonZeroU32,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use serde::Serialize;
use xsk_rs::{
    config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
    CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem,
};

use crate::{
    bpf::{BpfError, SinkProg, SINK_XSK},
    netdev, signal,
};

/// Batch size.
pub const BATCH: usize = 64;
/// Ring sizes.
pub const RING: u32 = 2048;
/// UMEM frames (two interfaces' fill and completion rings' worth).
pub const FRAMES: u32 = 8192;

/// Errors running the forwarder.
#[derive(Debug, thiserror::Error)]
pub enum FwdError {
    /// Device lookup failed.
    #[error(transparent)]
    Netdev(#[from] netdev::NetdevError),
    /// XDP program load/attach failed.
    #[error(transparent)]
    Bpf(#[from] BpfError),
    /// AF_XDP setup failed.
    #[error("AF_XDP setup on {0}: {1}")]
    Xsk(String, String),
    /// poll() or a wakeup failed.
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
}

/// Forwarder counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FwdStats {
    /// Frames forwarded a -> b.
    pub a_to_b: u64,
    /// Frames forwarded b -> a.
    pub b_to_a: u64,
    /// Frames dropped because the transmit ring was full.
    pub tx_full_drops: u64,
    /// Run time.
    pub elapsed_us: u64,
    /// Kernel AF_XDP socket statistics per port (a, b).
    pub sockets: Vec<XskStats>,
}

/// Kernel statistics of one AF_XDP socket (XDP_STATISTICS).
#[derive(Debug, Clone, Default, Serialize)]
pub struct XskStats {
    /// Interface.
    pub dev: String,
    /// Frames dropped by the kernel for other reasons (e.g. no fill frame).
    pub rx_dropped: u64,
    /// Frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was found empty.
    pub rx_fill_ring_empty: u64,
    /// Invalid tx descriptors.
    pub tx_invalid: u64,
}

struct Port {
    name: String,
    tx: TxQueue,
    rx: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
    _prog: SinkProg,
    /// Frames on the tx ring not yet completed.
    outstanding: u64,
}

fn open_port(umem: &Umem, name: &str) -> Result<Port, FwdError> {
    let e = |m: &dyn std::fmt::Display| FwdError::Xsk(name.to_owned(), m.to_string());
    let ring = QueueSize::new(RING).map_err(|x| e(&crate::cli::error_chain(&x)))?;
    let cfg = SocketConfig::builder()
        .rx_queue_size(ring)
        .tx_queue_size(ring)
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP | BindFlags::XDP_COPY)
        .build();
    let iface: Interface = name.parse().map_err(|x| e(&crate::cli::error_chain(&x)))?;
    let prog = SinkProg::attach(netdev::ifindex(name)?, SINK_XSK, 2 /* XDP_PASS */)?;
    // SAFETY: each (interface, queue 0) pair is bound once from this UMEM,
    // and INHIBIT_PROG_LOAD is set as shared UMEM requires.
    let (tx, rx, fqcq) = crate::xsk::bind_retry(|| unsafe { Socket::new(cfg, umem, &iface, 0) })
        .map_err(|x| e(&crate::cli::error_chain(&x)))?;
    let (fq, cq) = fqcq.ok_or_else(|| e(&"no fill/completion queue for this device"))?;
    prog.insert_xsk(0, rx.fd().as_raw_fd())?;
    Ok(Port {
        name: name.to_owned(),
        tx,
        rx,
        fq,
        cq,
        _prog: prog,
        outstanding: 0,
    })
}

/// Forwards between `a` and `b` until `duration` passes or a signal arrives.
pub fn run(a: &str, b: &str, duration: Option<Duration>) -> Result<FwdStats, FwdError> {
    let e = |m: &dyn std::fmt::Display| FwdError::Xsk(a.to_owned(), m.to_string());
    let ring = QueueSize::new(RING).map_err(|x| e(&crate::cli::error_chain(&x)))?;
    let umem_cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(4096).map_err(|x| e(&crate::cli::error_chain(&x)))?)
        .fill_queue_size(ring)
        .comp_queue_size(ring)
        .build()
        .map_err(|x| e(&crate::cli::error_chain(&x)))?;
    let frames = NonZeroU32::new(FRAMES).ok_or_else(|| e(&"zero frames"))?;
    let (umem, mut free) =
        Umem::new(umem_cfg, frames, false).map_err(|x| e(&crate::cli::error_chain(&x)))?;
    let mut ports = [open_port(&umem, a)?, open_port(&umem, b)?];
    for p in ports.iter_mut() {
        let n = free.len() - RING as usize;
        // SAFETY: the frames come from this UMEM's free list; the fill ring
        // is empty and holds RING entries.
        let got = unsafe { p.fq.produce(&free[n..]) };
        if got != RING as usize {
            return Err(FwdError::Xsk(
                p.name.clone(),
                "could not fill the fill ring".into(),
            ));
        }
        free.truncate(n);
    }
    eprintln!("xdpfwd: ready, forwarding {a} <-> {b}");
    let mut st = FwdStats::default();
    let mut batch = vec![FrameDesc::default(); BATCH];
    let mut comp = vec![FrameDesc::default(); BATCH];
    let start = Instant::now();
    let mut pfds = [
        libc::pollfd {
            fd: ports[0].rx.fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: ports[1].rx.fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let mut iter: u32 = 0;
    loop {
        iter = iter.wrapping_add(1);
        if iter & 1023 == 0 && (signal::stopped() || duration.is_some_and(|d| start.elapsed() >= d))
        {
            break;
        }
        let mut work = 0;
        for dir in 0..2 {
            let (src, dst) = if dir == 0 { (0, 1) } else { (1, 0) };
            // completions on the egress side go back to the free list
            // SAFETY: `comp` is only overwritten with frames of this UMEM.
            let c = unsafe { ports[dst].cq.consume(&mut comp) };
            free.extend_from_slice(&comp[..c]);
            ports[dst].outstanding -= (c as u64).min(ports[dst].outstanding);
            // SAFETY: as above for `batch`.
            let n = unsafe { ports[src].rx.consume(&mut batch) };
            if n > 0 {
                work += n;
                let room = ports[dst].tx.nb_free(n as u32) as usize;
                let fwd = n.min(room);
                // SAFETY: the frames were received, so user space owns them;
                // nb_free guaranteed room for `fwd` entries.
                let sent = unsafe { ports[dst].tx.produce(&batch[..fwd]) };
                let sent = if sent == fwd { fwd } else { 0 };
                // frames not sent return to the free list
                free.extend_from_slice(&batch[sent..n]);
                st.tx_full_drops += (n - sent) as u64;
                ports[dst].outstanding += sent as u64;
                if dir == 0 {
                    st.a_to_b += sent as u64;
                } else {
                    st.b_to_a += sent as u64;
                }
            }
            // copy mode transmits at most 32 frames per wakeup: kick the
            // kernel until what is outstanding has gone (or it stops asking)
            for _ in 0..ports[dst].outstanding.div_ceil(32).min(BATCH as u64 / 16) {
                if !ports[dst].tx.needs_wakeup() {
                    break;
                }
                ports[dst]
                    .tx
                    .wakeup()
                    .map_err(|x| FwdError::Io("tx wakeup", x))?;
            }
            // refill the ingress fill ring from the free list
            let want = ports[src].fq.nb_free(RING) as usize;
            let k = want.min(free.len());
            if k > 0 {
                let from = free.len() - k;
                // SAFETY: user-space-owned frames of this UMEM; room checked.
                let got = unsafe { ports[src].fq.produce(&free[from..]) };
                if got == k {
                    free.truncate(from);
                }
            }
        }
        if work == 0 && ports.iter().all(|p| p.outstanding == 0) {
            // nothing arrived: sleep in poll(), which also wakes the kernel
            // (need_wakeup on the fill rings)
            // SAFETY: `pfds` is a valid array of two pollfd structures.
            let r = unsafe { libc::poll(pfds.as_mut_ptr(), 2, 100) };
            if r < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(FwdError::Io("poll", err));
                }
            }
            if signal::stopped() || duration.is_some_and(|d| start.elapsed() >= d) {
                break;
            }
        }
        // (no fill-ring wakeup while busy: copy-mode receive takes frames
        // from the fill ring in the driver's XDP path; poll() above covers
        // the idle case)
    }
    st.elapsed_us = start.elapsed().as_micros() as u64;
    for p in &ports {
        if let Ok(x) = p.rx.fd().xdp_statistics() {
            st.sockets.push(XskStats {
                dev: p.name.clone(),
                rx_dropped: x.rx_dropped(),
                rx_ring_full: x.rx_ring_full(),
                rx_fill_ring_empty: x.rx_fill_ring_empty_descs(),
                tx_invalid: x.tx_invalid_descs(),
            });
        }
    }
    Ok(st)
}
