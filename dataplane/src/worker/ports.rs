//! AF_XDP socket setup: one UMEM per worker shared by its two sockets (the
//! worker's queue on the outer and on the inner interface), so forwarding a
//! frame from one side to the other moves a descriptor, never the bytes.

use std::{num::NonZeroU32, os::fd::AsRawFd, str::FromStr, thread, time::Duration};

use xsk_rs::{
    config::{
        BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig, XdpFlags,
    },
    CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem,
};

use super::WorkerError;
use crate::xdp::AttachMode;

/// Zero-copy policy for socket binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyPolicy {
    /// Try zero-copy, fall back to copy.
    Auto,
    /// Zero-copy or fail.
    ZeroCopy,
    /// Copy mode only.
    Copy,
}

/// Ring geometry for one worker.
#[derive(Debug, Clone, Copy)]
pub struct RingSpec {
    /// RX/TX ring size.
    pub ring: u32,
    /// Fill/completion ring size.
    pub fill: u32,
    /// UMEM frame size.
    pub frame_size: u32,
    /// UMEM frames.
    pub frame_count: u32,
}

/// One side (interface) of a worker: its socket's four rings.
pub struct Port {
    /// Interface name.
    pub ifname: String,
    /// Transmit ring.
    pub tx: TxQueue,
    /// Receive ring.
    pub rx: RxQueue,
    /// Fill ring (frames lent to the kernel for receive).
    pub fq: FillQueue,
    /// Completion ring (transmitted frames coming back).
    pub cq: CompQueue,
    /// Whether the socket is bound in zero-copy mode.
    pub zero_copy: bool,
}

impl Port {
    /// The socket's file descriptor.
    pub fn raw_fd(&self) -> i32 {
        self.rx.fd().as_raw_fd()
    }
}

/// Creates the worker's UMEM and its frame descriptors.
pub fn create_umem(r: &RingSpec) -> Result<(Umem, Vec<FrameDesc>), WorkerError> {
    let cfg = UmemConfig::builder()
        .frame_size(
            FrameSize::new(r.frame_size)
                .map_err(|e| WorkerError::Setup(format!("frame size: {e}")))?,
        )
        .fill_queue_size(
            QueueSize::new(r.fill).map_err(|e| WorkerError::Setup(format!("fill size: {e}")))?,
        )
        .comp_queue_size(
            QueueSize::new(r.fill).map_err(|e| WorkerError::Setup(format!("comp size: {e}")))?,
        )
        .build()
        .map_err(|e| WorkerError::Setup(format!("umem config: {e}")))?;
    let count = NonZeroU32::new(r.frame_count)
        .ok_or_else(|| WorkerError::Setup("frame_count is 0".into()))?;
    Umem::new(cfg, count, false).map_err(|e| WorkerError::Setup(format!("creating UMEM: {e}")))
}

/// Binds a socket to (`ifname`, `queue`) on `umem`.
pub fn open_port(
    umem: &Umem,
    ifname: &str,
    queue: u32,
    r: &RingSpec,
    mode: AttachMode,
    copy: CopyPolicy,
) -> Result<Port, WorkerError> {
    let iface = Interface::from_str(ifname)
        .map_err(|e| WorkerError::Setup(format!("interface {ifname}: {e}")))?;
    let attempts: &[(BindFlags, bool)] = match copy {
        CopyPolicy::Auto => &[
            (BindFlags::XDP_ZEROCOPY, true),
            (BindFlags::XDP_COPY, false),
        ],
        CopyPolicy::ZeroCopy => &[(BindFlags::XDP_ZEROCOPY, true)],
        CopyPolicy::Copy => &[(BindFlags::XDP_COPY, false)],
    };
    let xdp_flags = match mode {
        AttachMode::Native => XdpFlags::XDP_FLAGS_DRV_MODE,
        AttachMode::Generic => XdpFlags::XDP_FLAGS_SKB_MODE,
    };
    let ring = QueueSize::new(r.ring).map_err(|e| WorkerError::Setup(format!("ring size: {e}")))?;
    let mut last_err = String::new();
    for &(bind, zc) in attempts {
        let cfg = SocketConfig::builder()
            .rx_queue_size(ring)
            .tx_queue_size(ring)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .xdp_flags(xdp_flags)
            .bind_flags(bind | BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        // A socket from a previous run may still be tearing down (the kernel
        // releases it asynchronously): EBUSY is retried for a while.
        for attempt in 0..40 {
            // SAFETY: every socket on this UMEM is bound to a distinct
            // (interface, queue) pair and INHIBIT_PROG_LOAD is set, which is
            // what `Socket::new` requires for sharing a UMEM.
            match unsafe { Socket::new(cfg, umem, &iface, queue) } {
                Ok((tx, rx, Some((fq, cq)))) => {
                    let zero_copy = is_zero_copy(rx.fd().as_raw_fd()).unwrap_or(zc);
                    return Ok(Port {
                        ifname: ifname.to_string(),
                        tx,
                        rx,
                        fq,
                        cq,
                        zero_copy,
                    });
                }
                Ok((_, _, None)) => {
                    return Err(WorkerError::Setup(format!(
                        "{ifname} queue {queue} is already bound on this UMEM"
                    )));
                }
                Err(e) => {
                    let busy = e.to_string().contains("busy") || e.to_string().contains("EBUSY");
                    last_err = format!("{e}");
                    if busy && attempt < 39 {
                        thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    break;
                }
            }
        }
    }
    Err(WorkerError::Setup(format!(
        "binding AF_XDP socket on {ifname} queue {queue}: {last_err}"
    )))
}

/// Asks the kernel whether the socket ended up in zero-copy mode: a socket
/// sharing a UMEM inherits the binding of the first one, whatever its own
/// flags said.
fn is_zero_copy(fd: i32) -> Option<bool> {
    const SOL_XDP: libc::c_int = 283;
    const XDP_OPTIONS: libc::c_int = 8;
    const XDP_OPTIONS_ZEROCOPY: u32 = 1;
    let mut opts: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: `opts` and `len` are valid for writes of the sizes passed.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            (&mut opts as *mut u32).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(opts & XDP_OPTIONS_ZEROCOPY != 0)
}
