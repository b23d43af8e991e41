//! AF_XDP workers: one thread per configured core, pinned, each owning the
//! sockets of the receive queues it serves on both interfaces (every queue
//! of both interfaces is served by some worker).
//!
//! The loop per iteration: take completions back, top up fill rings, receive
//! a batch from each socket, assemble multi-buffer packets, run every packet
//! through the [`Pipeline`] (classify, direct, pace) as one [`Frame`], put it
//! in the TX backlog of the side it leaves by, transmit what the TX rings
//! have room for, wake the kernel where the rings ask for it, and sleep in
//! poll() when idle. Nothing on this path locks, allocates or makes a syscall
//! besides ring wakeups. A TCP aggregate longer than the egress is cut into
//! segments here (the pipeline asks for it), each of which goes through the
//! pipeline again.

pub mod chain;
pub mod ledger;
pub mod ports;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, Sender};
pub use xsk_rs::FrameDesc;
use xsk_rs::Umem;

use crate::frame::Frame;
use crate::pacer::{Admit, Pacer};
use crate::packet::{parse_packet, segment::TcpSegmenter};

use chain::{Chains, CONTD, MAX_BUFS};
use ledger::{FrameLedger, LedgerSnapshot, Place};
use ports::{CopyPolicy, Port, RingSpec, RX_OFFSET};

use crate::xdp::AttachMode;

/// Which interface a frame arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The network side (towards the switch).
    Outer = 0,
    /// The host side (towards the server's stack).
    Inner = 1,
}

impl Side {
    /// The other interface.
    #[inline]
    pub fn other(self) -> Side {
        match self {
            Side::Outer => Side::Inner,
            Side::Inner => Side::Outer,
        }
    }
}

/// Why the worker dropped a frame (each has a counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Policy said so (e.g. an intercepted ARP frame).
    Policy,
    /// The pacer's queue for the job was full.
    PacerQueueFull,
    /// The frame could not be rewritten (e.g. encapsulation over MTU).
    Rewrite,
    /// Longer than the interface it leaves by, and not a TCP segment that
    /// can be cut to size.
    TooBig,
}

/// What to do with a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Transmit on the other interface.
    Forward,
    /// Transmit back out of the interface it came from (e.g. an ARP answer
    /// or an encapsulated frame to another server).
    Bounce,
    /// Return the frame to the free list.
    Drop(DropReason),
    /// Transmit on the outer interface when `job`'s credit on `pipe`
    /// allows: now, later (held in the pacer's queue), or never (dropped,
    /// counted) if its queue is full.
    Pace {
        /// Pipe index.
        pipe: u16,
        /// Job slot.
        job: u16,
    },
    /// Cut this TCP packet into segments of at most `max_l3` bytes of IP
    /// packet and run each through the pipeline (the packet itself is not
    /// accounted: its segments are).
    Segment {
        /// Largest IP packet per segment.
        max_l3: u16,
    },
}

/// A flow the pipeline found nothing to do for per packet: its next frames
/// may take the XDP fast path (see [`crate::xdp::fastpath`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPathRequest {
    /// The flow as the XDP program keys it.
    pub key: crate::xdp::abi::HrFlowKey,
    /// Its job.
    pub job: u16,
    /// The decision generation it was made under.
    pub gen: u32,
    /// What the fast path does with it (`HR_FP_*`).
    pub action: u8,
    /// `HR_FP_ENCAP`: the outer headers.
    pub encap: crate::xdp::abi::HrEncap,
}

/// The per-packet logic a worker runs. One instance per worker thread.
pub trait Pipeline: Send + 'static {
    /// Command type sent by the control thread (rule swaps etc.).
    type Command: Send + 'static;
    /// Report type published periodically.
    type Report: Send + 'static;
    /// Handles one packet in place. The frame may be rewritten, resized, or
    /// have headers pushed into its headroom or pulled off.
    fn on_frame(&mut self, now_ns: u64, side: Side, frame: &mut Frame<'_>) -> Action;
    /// After [`Pipeline::on_frame`] returned [`Action::Forward`] or
    /// [`Action::Bounce`]: whether the frame's flow may take the fast path
    /// from now on.
    fn take_fast_path(&mut self) -> Option<FastPathRequest> {
        None
    }
    /// Applies a command between batches (so a batch sees one rule set).
    fn on_command(&mut self, cmd: Self::Command);
    /// Periodic housekeeping (expiry) and the report to publish.
    fn tick(&mut self, now_ns: u64) -> Self::Report;
}

/// Errors setting up or running a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// UMEM or socket setup failed.
    #[error("worker setup: {0}")]
    Setup(String),
    /// The thread could not be spawned.
    #[error("spawning worker thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Per-worker counters (cumulative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Packets received, per side (outer, inner); a multi-buffer packet is one.
    pub rx_packets: [u64; 2],
    /// Bytes received, per side.
    pub rx_bytes: [u64; 2],
    /// Multi-buffer packets received, per side (included in `rx_packets`).
    pub rx_multi_buffer: [u64; 2],
    /// Packets put on the TX ring, per side.
    pub tx_packets: [u64; 2],
    /// Bytes put on the TX ring, per side.
    pub tx_bytes: [u64; 2],
    /// Packets dropped by policy.
    pub drop_policy: u64,
    /// Packets dropped because a pacer queue was full.
    pub drop_pacer: u64,
    /// Packets dropped because a rewrite failed.
    pub drop_rewrite: u64,
    /// Packets longer than their egress that could not be segmented.
    pub drop_too_big: u64,
    /// Packets spanning more buffers than a worker takes ([`MAX_BUFS`]).
    pub drop_too_many_buffers: u64,
    /// Aggregates that could not be segmented for want of free frames.
    pub drop_no_frames: u64,
    /// Packets dropped because a TX backlog was full.
    pub drop_tx_full: u64,
    /// Aggregates cut into segments, and the segments made of them.
    pub segmented: u64,
    /// Segments made from aggregates.
    pub segments_made: u64,
    /// Fast-path entries written (a flow's first frames, or after eviction).
    pub fast_installs: u64,
    /// Fast-path entries the kernel refused (the flow stays on the slow path).
    pub fast_install_errors: u64,
    /// Times receive was throttled because the peer TX ring was full.
    pub tx_ring_full: u64,
    /// Times a fill ring could not be topped up (free list empty).
    pub fill_starved: u64,
    /// TX wakeup syscalls.
    pub tx_wakeups: u64,
    /// Fill-ring wakeup polls.
    pub fill_wakeups: u64,
    /// Idle poll() calls.
    pub idle_polls: u64,
    /// Loop iterations.
    pub iterations: u64,
}

/// Kernel-side socket statistics (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Frames the kernel dropped for reasons other than ring space.
    pub rx_dropped: u64,
    /// Invalid RX descriptors.
    pub rx_invalid_descs: u64,
    /// Invalid TX descriptors.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was empty on a wakeup.
    pub tx_ring_empty_descs: u64,
}

impl SocketStats {
    fn add(&mut self, o: &SocketStats) {
        self.rx_dropped += o.rx_dropped;
        self.rx_invalid_descs += o.rx_invalid_descs;
        self.tx_invalid_descs += o.tx_invalid_descs;
        self.rx_ring_full += o.rx_ring_full;
        self.rx_fill_ring_empty_descs += o.rx_fill_ring_empty_descs;
        self.tx_ring_empty_descs += o.tx_ring_empty_descs;
    }
}

/// What a worker publishes to the control thread.
#[derive(Debug)]
pub struct WorkerReport<R> {
    /// Worker index.
    pub index: usize,
    /// Counters.
    pub stats: WorkerStats,
    /// Kernel socket statistics per side (summed over the side's queues).
    pub sockets: [SocketStats; 2],
    /// Frame accounting.
    pub ledger: LedgerSnapshot,
    /// The pipeline's report.
    pub pipeline: R,
}

/// The receive queues one worker serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerQueues {
    /// Queues of the outer interface.
    pub outer: Vec<u32>,
    /// Queues of the inner interface.
    pub inner: Vec<u32>,
}

/// Everything needed to start one worker.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Worker index (0..).
    pub index: usize,
    /// Core to pin to (None = unpinned).
    pub core: Option<usize>,
    /// Queues served on each interface (at least one each: the worker
    /// transmits on its first socket of a side).
    pub queues: WorkerQueues,
    /// Outer interface.
    pub outer: String,
    /// Inner interface.
    pub inner: String,
    /// Frames per batch.
    pub batch: u32,
    /// Ring geometry.
    pub rings: RingSpec,
    /// Zero-copy policy.
    pub copy: CopyPolicy,
    /// How the XDP program is attached (sockets must match).
    pub mode: AttachMode,
    /// Take multi-buffer packets (`XDP_USE_SG`; the XDP program is
    /// frags-aware).
    pub multi_buffer: bool,
    /// Idle poll timeout.
    pub poll_timeout_ms: u32,
    /// Report period.
    pub publish_interval: Duration,
}

/// One bound socket of a running worker, for the XDP socket map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundSocket {
    /// Its interface.
    pub side: Side,
    /// Its queue.
    pub queue: u32,
    /// Its file descriptor.
    pub fd: i32,
    /// Whether it is bound in zero-copy mode.
    pub zero_copy: bool,
}

/// A running worker.
pub struct WorkerHandle<C> {
    /// Commands to the worker.
    pub commands: Sender<C>,
    /// Its sockets.
    pub sockets: Vec<BoundSocket>,
    /// Queues served.
    pub queues: WorkerQueues,
    thread: Option<JoinHandle<()>>,
}

impl<C> WorkerHandle<C> {
    /// Waits for the thread to end (after the stop flag was set).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Whether the sockets of `side` are zero-copy (all of them).
    pub fn zero_copy(&self, side: Side) -> bool {
        self.sockets
            .iter()
            .filter(|s| s.side == side)
            .all(|s| s.zero_copy)
    }
}

/// Opens the worker's sockets (on the caller's thread, so setup errors are
/// reported synchronously) and starts its thread.
/// A frame the pacer holds, and the interface it leaves by.
#[derive(Debug, Clone, Copy)]
pub struct Paced {
    /// Its first buffer.
    pub desc: FrameDesc,
    /// Where it goes once it has credit.
    pub to: Side,
}

/// The fast-path flow tables of the two interfaces (outer, inner).
pub type FastPathMaps = [crate::xdp::fastpath::FlowMap; 2];

pub fn spawn<P: Pipeline>(
    spec: WorkerSpec,
    pipeline: P,
    pacer: Option<Pacer<Paced>>,
    fast: Option<FastPathMaps>,
    reports: Sender<WorkerReport<P::Report>>,
    stop: Arc<AtomicBool>,
) -> Result<WorkerHandle<P::Command>, WorkerError> {
    if spec.queues.outer.is_empty() || spec.queues.inner.is_empty() {
        return Err(WorkerError::Setup(format!(
            "worker {} serves no queue on {}: every worker needs one queue on each interface",
            spec.index,
            if spec.queues.outer.is_empty() {
                &spec.outer
            } else {
                &spec.inner
            }
        )));
    }
    let (umem, frames) = ports::create_umem(&spec.rings)?;
    let mut ports = Vec::new();
    for (side, ifname, queues) in [
        (Side::Outer, &spec.outer, &spec.queues.outer),
        (Side::Inner, &spec.inner, &spec.queues.inner),
    ] {
        for &q in queues {
            ports.push(ports::open_port(
                &umem,
                side,
                ifname,
                q,
                &spec.rings,
                spec.mode,
                spec.copy,
                spec.multi_buffer,
            )?);
        }
    }
    let sockets = ports
        .iter()
        .map(|p| BoundSocket {
            side: p.side,
            queue: p.queue,
            fd: p.raw_fd(),
            zero_copy: p.zero_copy,
        })
        .collect();
    let (tx, rx) = crossbeam_channel::bounded(16);
    let queues = spec.queues.clone();
    let thread = std::thread::Builder::new()
        .name(format!("hr-worker-{}", spec.index))
        .spawn(move || {
            if let Some(core) = spec.core {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    tracing::warn!(core, "could not pin worker");
                }
            }
            let mut w = Worker::new(spec, umem, frames, ports, pipeline, pacer, rx, reports);
            w.fast = fast;
            w.run(&stop);
        })
        .map_err(WorkerError::Spawn)?;
    Ok(WorkerHandle {
        commands: tx,
        sockets,
        queues,
        thread: Some(thread),
    })
}

/// A packet being assembled from RX descriptors (multi-buffer).
#[derive(Debug, Clone, Copy)]
struct Pending {
    first: FrameDesc,
    last: FrameDesc,
    bufs: usize,
    len: usize,
}

struct Worker<P: Pipeline> {
    spec: WorkerSpec,
    umem: Umem,
    ports: Vec<Port>,
    /// Index in `ports` of the socket each side transmits on.
    tx_port: [usize; 2],
    /// Fill-ring occupancy each port is kept at.
    fill_target: usize,
    free: Vec<FrameDesc>,
    ledger: FrameLedger,
    chains: Chains,
    pending: Vec<Option<Pending>>,
    rx_descs: Vec<FrameDesc>,
    /// Descriptors waiting for room in each side's TX ring, whole packets in
    /// order (every buffer but a packet's last carries `CONTD`).
    backlog: [Vec<FrameDesc>; 2],
    backlog_cap: usize,
    segments: Vec<FrameDesc>,
    /// Frames released by the pacer in one call (kept to reuse its capacity).
    paced: Vec<Paced>,
    pipeline: P,
    pacer: Option<Pacer<Paced>>,
    fast: Option<FastPathMaps>,
    commands: Receiver<P::Command>,
    reports: Sender<WorkerReport<P::Report>>,
    stats: WorkerStats,
}

impl<P: Pipeline> Worker<P> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        spec: WorkerSpec,
        umem: Umem,
        frames: Vec<FrameDesc>,
        ports: Vec<Port>,
        pipeline: P,
        pacer: Option<Pacer<Paced>>,
        commands: Receiver<P::Command>,
        reports: Sender<WorkerReport<P::Report>>,
    ) -> Self {
        let batch = spec.batch as usize;
        let frame_size = spec.rings.frame_size as usize;
        let n = frames.len();
        let ledger = FrameLedger::new(n, frame_size, ports.len());
        let tx_port = [Side::Outer, Side::Inner].map(|side| {
            ports
                .iter()
                .position(|p| p.side == side)
                .expect("spawn checked: a socket on each side")
        });
        // Half the frames are lent to the kernel for receive, spread over
        // the sockets; the other half carry packets in flight (TX rings,
        // backlogs, pacer queues, segments).
        let fill_target = (spec.rings.fill as usize).min(n / (2 * ports.len())).max(1);
        let ring = spec.rings.ring as usize;
        Self {
            rx_descs: vec![FrameDesc::default(); batch],
            backlog: [Vec::with_capacity(4 * ring), Vec::with_capacity(4 * ring)],
            backlog_cap: 2 * ring,
            segments: Vec::with_capacity(64),
            paced: Vec::with_capacity(64),
            pending: vec![None; ports.len()],
            chains: Chains::new(n, frame_size),
            free: frames,
            ledger,
            tx_port,
            fill_target,
            spec,
            umem,
            ports,
            pipeline,
            pacer,
            fast: None,
            commands,
            reports,
            stats: WorkerStats::default(),
        }
    }

    #[inline]
    fn now_ns(&self) -> u64 {
        crate::clock::now_ns()
    }

    fn run(&mut self, stop: &AtomicBool) {
        let mut next_publish = Instant::now();
        let mut completions = vec![FrameDesc::default(); self.spec.rings.fill as usize];
        while !stop.load(Ordering::Relaxed) {
            self.stats.iterations += 1;
            while let Ok(cmd) = self.commands.try_recv() {
                self.pipeline.on_command(cmd);
            }
            for p in 0..self.ports.len() {
                self.reap(p, &mut completions);
                self.refill(p);
            }
            let now = self.now_ns();
            let mut work = 0;
            for p in 0..self.ports.len() {
                work += self.receive(now, p);
            }
            work += self.release(now);
            for s in [Side::Outer, Side::Inner] {
                self.transmit(s);
            }
            if !self.ledger.check() {
                debug_assert!(
                    false,
                    "frame ledger out of balance: {:?}",
                    self.ledger.snapshot()
                );
            }
            if Instant::now() >= next_publish {
                next_publish = Instant::now() + self.spec.publish_interval;
                self.publish();
            }
            if work == 0 {
                self.idle();
            }
        }
        self.publish();
    }

    /// Takes transmitted frames back from port `p`'s completion ring.
    fn reap(&mut self, p: usize, scratch: &mut [FrameDesc]) {
        let port = &mut self.ports[p];
        // SAFETY: the descriptors come from this socket's completion ring and
        // belong to this worker's UMEM; the kernel is done with them.
        let n = unsafe { port.cq.consume(scratch) };
        if n > 0 {
            self.ledger.moved_many(
                scratch[..n].iter().map(|d| d.addr()),
                n,
                Place::Tx(p as u8),
                Place::Free,
            );
            for d in &mut scratch[..n] {
                d.set_options(0);
            }
            self.free.extend_from_slice(&scratch[..n]);
        }
    }

    /// Tops up port `p`'s fill ring from the free list.
    fn refill(&mut self, p: usize) {
        let target = self.fill_target;
        let have = self.ledger.count(Place::Fill(p as u8));
        if have >= target {
            return;
        }
        let port = &mut self.ports[p];
        let room = port.fq.nb_free((target - have) as u32) as usize;
        let n = room.min(target - have).min(self.free.len());
        if n == 0 {
            if self.free.is_empty() {
                self.stats.fill_starved += 1;
            }
            return;
        }
        let start = self.free.len() - n;
        // SAFETY: these frames are on our free list: neither the kernel nor
        // any other ring holds them. `nb_free` guaranteed room for all `n`.
        let produced = unsafe { port.fq.produce(&self.free[start..]) };
        if produced == n {
            self.ledger.moved_many(
                self.free[start..].iter().map(|d| d.addr()),
                n,
                Place::Free,
                Place::Fill(p as u8),
            );
            self.free.truncate(start);
        }
        if port.fq.needs_wakeup() {
            self.stats.fill_wakeups += 1;
            let _ = port.fq.wakeup(port.rx.fd_mut(), 0);
        }
    }

    /// Room left in `side`'s TX ring beyond its backlog.
    #[inline]
    fn tx_room(&mut self, side: Side) -> usize {
        let p = self.tx_port[side as usize];
        let room = self.ports[p].tx.nb_free(self.spec.rings.ring) as usize;
        room.saturating_sub(self.backlog[side as usize].len())
    }

    /// Receives and processes one batch from port `p`; returns descriptors
    /// received.
    fn receive(&mut self, now: u64, p: usize) -> usize {
        let side = self.ports[p].side;
        // Only take as many buffers as the peer TX ring (beyond its backlog)
        // can hold: excess stays in the RX ring, where the kernel counts it,
        // rather than being dropped here.
        let budget = (self.spec.batch as usize).min(self.tx_room(side.other()));
        if budget == 0 {
            self.stats.tx_ring_full += 1;
            return 0;
        }
        // SAFETY: `rx_descs` are scratch descriptors overwritten by the ring.
        let n = unsafe { self.ports[p].rx.consume(&mut self.rx_descs[..budget]) };
        if n == 0 {
            return 0;
        }
        self.ledger.moved_many(
            self.rx_descs[..n].iter().map(|d| d.addr()),
            n,
            Place::Fill(p as u8),
            Place::Held,
        );
        for i in 0..n {
            let d = self.rx_descs[i];
            let len = d.lengths().data();
            let more = d.options() & CONTD != 0;
            let pk = match self.pending[p].take() {
                None => Pending {
                    first: d,
                    last: d,
                    bufs: 1,
                    len,
                },
                Some(mut pk) => {
                    self.chains.link(&pk.last, d);
                    pk.last = d;
                    pk.bufs += 1;
                    pk.len += len;
                    pk
                }
            };
            if more {
                // The rest of the packet follows (maybe in the next batch).
                self.pending[p] = Some(pk);
                continue;
            }
            self.stats.rx_packets[side as usize] += 1;
            self.stats.rx_bytes[side as usize] += pk.len as u64;
            if pk.bufs > 1 {
                self.stats.rx_multi_buffer[side as usize] += 1;
            }
            if pk.bufs > MAX_BUFS {
                self.stats.drop_too_many_buffers += 1;
                self.free_packet(pk.first);
                continue;
            }
            self.process(now, side, pk.first);
        }
        n
    }

    /// Runs one packet through the pipeline and acts on the verdict.
    fn process(&mut self, now: u64, side: Side, first: FrameDesc) {
        let frame_size = self.spec.rings.frame_size as usize;
        let mut bufs = [FrameDesc::default(); MAX_BUFS];
        let nbufs = self.chains.collect(first, &mut bufs);
        let mut tail_store: [&[u8]; MAX_BUFS] = [&[]; MAX_BUFS];
        for (slot, d) in tail_store.iter_mut().zip(&bufs[1..nbufs]) {
            // SAFETY: the continuation buffers are held by this worker (in no
            // ring) and only read while the frame lives; the first buffer,
            // the only one written, is a different UMEM frame.
            *slot = unsafe { self.umem.data(d) }.contents();
        }
        let mut desc = first;
        let head_len = desc.lengths().data();
        // SAFETY: `first` came from an RX ring (or the free list, for a
        // segment) and is held by this worker alone; the tail slices above
        // point into other frames.
        let (buf, offset) = unsafe { ports::frame_buffer(&self.umem, &mut desc, frame_size) };
        let tail = &tail_store[..nbufs - 1];
        let Some(mut frame) = Frame::new(buf, offset, head_len, tail) else {
            self.stats.drop_rewrite += 1;
            self.free_packet(first);
            return;
        };
        let action = self.pipeline.on_frame(now, side, &mut frame);
        let (start, len, total) = (frame.start(), frame.head_len(), frame.len());
        if let Action::Segment { max_l3 } = action {
            self.segment(now, side, first, nbufs, usize::from(max_l3));
            return;
        }
        if start != offset {
            desc.set_addr(desc.addr() - offset + start);
        }
        if len != head_len || start != offset {
            // SAFETY: the frame is still held by this worker alone.
            unsafe { self.umem.data_mut(&mut desc) }
                .cursor()
                .set_pos(len);
        }
        match action {
            Action::Forward => {
                self.offer_fast_path(side, now);
                self.enqueue(side.other(), desc)
            }
            Action::Bounce => {
                self.offer_fast_path(side, now);
                self.enqueue(side, desc)
            }
            Action::Pace { pipe, job } => {
                // Paced frames leave by the other interface, whichever the
                // pipe's direction: outbound to the network, inbound to the host.
                let to = side.other();
                match self.pacer.as_mut() {
                    Some(p) => {
                        match p.admit(now, pipe as usize, job, total as u32, Paced { desc, to }) {
                            Admit::Send(f) => self.enqueue(f.to, f.desc),
                            Admit::Queued => {}
                            Admit::Dropped(f) => {
                                self.stats.drop_pacer += 1;
                                self.free_packet(f.desc);
                            }
                        }
                    }
                    None => self.enqueue(to, desc),
                }
            }
            Action::Drop(reason) => {
                match reason {
                    DropReason::Policy => self.stats.drop_policy += 1,
                    DropReason::PacerQueueFull => self.stats.drop_pacer += 1,
                    DropReason::Rewrite => self.stats.drop_rewrite += 1,
                    DropReason::TooBig => self.stats.drop_too_big += 1,
                }
                self.free_packet(desc);
            }
            Action::Segment { .. } => unreachable!("handled above"),
        }
    }

    /// Writes the fast-path entry the pipeline asked for, if any, into the
    /// table of the interface the frame came in by.
    fn offer_fast_path(&mut self, side: Side, now: u64) {
        let Some(maps) = &self.fast else { return };
        let Some(r) = self.pipeline.take_fast_path() else {
            return;
        };
        let e = crate::xdp::abi::HrFlowEntry {
            gen: r.gen,
            job: r.job,
            action: r.action,
            flags: 0,
            last_seen_ns: now,
            encap: r.encap,
        };
        match maps[side as usize].install(&r.key, &e) {
            Ok(()) => self.stats.fast_installs += 1,
            Err(_) => self.stats.fast_install_errors += 1,
        }
    }

    /// Cuts the TCP packet starting at `first` (`nbufs` buffers) into
    /// segments of at most `max_l3` bytes of IP packet, each in a fresh
    /// frame, runs them through the pipeline, and frees the original.
    fn segment(&mut self, now: u64, side: Side, first: FrameDesc, nbufs: usize, max_l3: usize) {
        let frame_size = self.spec.rings.frame_size as usize;
        let mut bufs = [FrameDesc::default(); MAX_BUFS];
        self.chains.collect(first, &mut bufs);
        let mut parts: [&[u8]; MAX_BUFS] = [&[]; MAX_BUFS];
        for (slot, d) in parts.iter_mut().zip(&bufs[..nbufs]) {
            // SAFETY: all the packet's buffers are held by this worker and
            // only read here; segments are written into other, free frames.
            *slot = unsafe { self.umem.data(d) }.contents();
        }
        let (head, tail) = (parts[0], &parts[1..nbufs]);
        let total = head.len() + tail.iter().map(|t| t.len()).sum::<usize>();
        let plan = parse_packet(head, total)
            .ok()
            .and_then(|info| TcpSegmenter::new(head, &info, max_l3, frame_size - RX_OFFSET).ok());
        let Some(plan) = plan else {
            self.stats.drop_too_big += 1;
            self.free_packet(first);
            return;
        };
        let k = plan.count();
        if k > self.free.len() {
            self.stats.drop_no_frames += 1;
            self.free_packet(first);
            return;
        }
        self.segments.clear();
        for i in 0..k {
            let mut d = self.free.pop().expect("checked above");
            self.ledger.moved(d.addr(), Place::Free, Place::Held);
            d.set_addr(d.addr() - d.addr() % frame_size + RX_OFFSET);
            d.set_options(0);
            // SAFETY: `d` was on the free list: no ring and no other
            // reference holds it; the packet's own buffers are other frames.
            let (buf, off) = unsafe { ports::frame_buffer(&self.umem, &mut d, frame_size) };
            let n = plan.write(i, head, tail, &mut buf[off..]);
            // SAFETY: as above.
            unsafe { self.umem.data_mut(&mut d) }.cursor().set_pos(n);
            self.segments.push(d);
        }
        self.stats.segmented += 1;
        self.stats.segments_made += k as u64;
        self.free_packet(first);
        let segs = std::mem::take(&mut self.segments);
        for &d in &segs {
            self.process(now, side, d);
        }
        self.segments = segs;
    }

    /// Returns every buffer of the packet starting at `first` to the free list.
    fn free_packet(&mut self, first: FrameDesc) {
        let (chains, ledger, free) = (&mut self.chains, &mut self.ledger, &mut self.free);
        chains.drain(first, |mut d| {
            ledger.moved(d.addr(), Place::Held, Place::Free);
            d.set_options(0);
            free.push(d);
        });
    }

    /// Appends the packet starting at `first` to `side`'s TX backlog (or
    /// drops it, counted, if the backlog is full).
    fn enqueue(&mut self, side: Side, first: FrameDesc) {
        let s = side as usize;
        if self.backlog[s].len() >= self.backlog_cap {
            self.stats.drop_tx_full += 1;
            self.free_packet(first);
            return;
        }
        let (chains, backlog) = (&mut self.chains, &mut self.backlog[s]);
        chains.drain(first, |d| backlog.push(d));
    }

    /// Hands packets whose credit has arrived from the pacer's queues to the
    /// TX backlogs they leave by, as many as the rings have room for.
    fn release(&mut self, now: u64) -> usize {
        if self.pacer.as_ref().is_none_or(|p| p.queued() == 0) {
            return 0;
        }
        let max = self
            .tx_room(Side::Outer)
            .min(self.tx_room(Side::Inner))
            .min(self.spec.batch as usize);
        let mut out = std::mem::take(&mut self.paced);
        out.clear();
        let n = match self.pacer.as_mut() {
            Some(p) => p.poll_release(now, max, |d| out.push(d)),
            None => 0,
        };
        for &f in &out {
            self.enqueue(f.to, f.desc);
        }
        self.paced = out;
        n
    }

    /// Puts as much of `side`'s backlog on its TX ring as fits (whole
    /// packets only) and wakes the kernel.
    fn transmit(&mut self, side: Side) {
        let s = side as usize;
        if self.backlog[s].is_empty() {
            return;
        }
        let p = self.tx_port[s];
        let port = &mut self.ports[p];
        let room = port.tx.nb_free(self.backlog[s].len() as u32) as usize;
        let backlog = &self.backlog[s];
        // Cut at a packet boundary: the last descriptor sent has no CONTD.
        let mut n = room.min(backlog.len());
        while n > 0 && backlog[n - 1].options() & CONTD != 0 {
            n -= 1;
        }
        if n > 0 {
            // SAFETY: the frames are held by this worker (received, built or
            // released by the pacer), in no ring; `nb_free` guaranteed room.
            let produced = unsafe { port.tx.produce(&backlog[..n]) };
            if produced == n {
                for d in &backlog[..n] {
                    if d.options() & CONTD == 0 {
                        self.stats.tx_packets[s] += 1;
                    }
                    self.stats.tx_bytes[s] += d.lengths().data() as u64;
                }
                self.ledger.moved_many(
                    backlog[..n].iter().map(|d| d.addr()),
                    n,
                    Place::Held,
                    Place::Tx(p as u8),
                );
                self.backlog[s].drain(..n);
            }
        }
        if port.tx.needs_wakeup() {
            // In copy mode one sendto() transmits at most 32 frames
            // (the kernel's TX batch): kick once per 32 so a batch does not
            // linger in the ring until the next loop iteration.
            for _ in 0..n.div_ceil(32).max(1) {
                self.stats.tx_wakeups += 1;
                if port.tx.wakeup().is_err() {
                    break;
                }
            }
        }
    }

    /// Nothing arrived: wait in poll() on every socket, briefly if frames
    /// are still in flight on a TX ring or waiting in a backlog.
    fn idle(&mut self) {
        self.stats.idle_polls += 1;
        let mut in_flight = !self.backlog[0].is_empty() || !self.backlog[1].is_empty();
        for p in 0..self.ports.len() {
            if self.ledger.count(Place::Tx(p as u8)) > 0 {
                in_flight = true;
                let _ = self.ports[p].tx.wakeup();
            }
        }
        let mut timeout_ns: u64 = if in_flight {
            1_000_000
        } else {
            self.spec.poll_timeout_ms as u64 * 1_000_000
        };
        if let Some(p) = &self.pacer {
            let now = self.now_ns();
            if let Some(t) = p.next_release_time(now) {
                // Sleep no longer than until the next queued frame may leave:
                // ppoll has nanosecond resolution, so paced traffic neither
                // oversleeps its credit nor spins.
                timeout_ns = timeout_ns.min(t.saturating_sub(now));
            }
        }
        let mut fds: Vec<libc::pollfd> = Vec::new();
        fds.extend(self.ports.iter().map(|p| libc::pollfd {
            fd: p.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        let ts = libc::timespec {
            tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs and
        // `ts` a valid timespec for the duration of the call; a null sigmask
        // keeps the thread's mask.
        unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
    }

    fn publish(&mut self) {
        let now = self.now_ns();
        let pipeline = self.pipeline.tick(now);
        let mut sockets = [SocketStats::default(); 2];
        for p in &self.ports {
            sockets[p.side as usize].add(&socket_stats(p));
        }
        let report = WorkerReport {
            index: self.spec.index,
            stats: self.stats,
            sockets,
            ledger: self.ledger.snapshot(),
            pipeline,
        };
        // Reports are cumulative: if the control thread is behind, dropping
        // one loses nothing.
        let _ = self.reports.try_send(report);
    }
}

fn socket_stats(p: &Port) -> SocketStats {
    match p.rx.fd().xdp_statistics() {
        Ok(s) => SocketStats {
            rx_dropped: s.rx_dropped(),
            rx_invalid_descs: s.rx_invalid_descs(),
            tx_invalid_descs: s.tx_invalid_descs(),
            rx_ring_full: s.rx_ring_full(),
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs(),
            tx_ring_empty_descs: s.tx_ring_empty_descs(),
        },
        Err(_) => SocketStats::default(),
    }
}
