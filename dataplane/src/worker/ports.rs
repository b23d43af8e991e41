//! AF_XDP socket setup: one UMEM per worker shared by all its sockets (one
//! per receive queue it serves, on the outer and on the inner interface), so
//! forwarding a frame from one side to the other moves a descriptor, never
//! the bytes. Also the one place that turns a descriptor into the bytes of
//! its UMEM frame ([`frame_buffer`]).

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

/// One socket of a worker (an interface's receive queue): its four rings.
pub struct Port {
    /// Interface name.
    pub ifname: String,
    /// Which side the interface is.
    pub side: super::Side,
    /// Queue id it is bound to.
    pub queue: u32,
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

/// Binds a socket to (`ifname`, `queue`) on `umem`; with `multi_buffer` it
/// takes packets spanning several frames (`XDP_USE_SG`).
#[allow(clippy::too_many_arguments)]
pub fn open_port(
    umem: &Umem,
    side: super::Side,
    ifname: &str,
    queue: u32,
    r: &RingSpec,
    mode: AttachMode,
    copy: CopyPolicy,
    multi_buffer: bool,
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
            .bind_flags(
                bind | BindFlags::XDP_USE_NEED_WAKEUP
                    | if multi_buffer {
                        BindFlags::XDP_USE_SG
                    } else {
                        BindFlags::empty()
                    },
            )
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
                        side,
                        queue,
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

/// Bytes a received packet starts into its UMEM frame: the kernel leaves
/// `XDP_PACKET_HEADROOM` (256) in front of every received buffer, in copy and
/// zero-copy mode alike (no frame headroom is configured), and the Headroom XDP
/// program never moves the packet start. Frames the worker builds itself
/// (segments) start there too.
pub const RX_OFFSET: usize = 256;

/// The whole UMEM frame that descriptor `desc` points into, and the offset of
/// the descriptor's data in it.
///
/// # Safety
/// The frame must be held exclusively by the caller (taken from an RX or
/// completion ring or the free list, and in no ring now), and no other
/// reference to its bytes may exist while the returned slice lives.
// Exclusivity is per frame (the ledger's ownership), not per UMEM: as with
// `Umem::data_mut`, a shared borrow of the UMEM hands out one frame mutably.
#[allow(clippy::mut_from_ref)]
pub unsafe fn frame_buffer<'a>(
    umem: &'a Umem,
    desc: &mut FrameDesc,
    frame_size: usize,
) -> (&'a mut [u8], usize) {
    let offset = desc.addr() % frame_size;
    // SAFETY: the caller holds the frame exclusively (this function's
    // contract); `data_mut` points at `desc.addr()` inside the UMEM mapping.
    let mut data = unsafe { umem.data_mut(desc) };
    let ptr = data.contents_mut().as_mut_ptr();
    // SAFETY: UMEM frames are `frame_size`-aligned (aligned mode), so the
    // frame starts `offset` bytes before the descriptor's address and spans
    // `frame_size` bytes, all inside the one contiguous UMEM mapping that
    // `umem` keeps alive for 'a. The caller's exclusive hold on the frame
    // means nothing else reads or writes these bytes meanwhile.
    let buf = unsafe { std::slice::from_raw_parts_mut(ptr.sub(offset), frame_size) };
    (buf, offset)
}
