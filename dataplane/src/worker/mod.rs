//! AF_XDP workers: one thread per configured core, pinned, each owning the
//! sockets of its queue on both interfaces.
//!
//! The loop per iteration: take completions back, top up fill rings, receive
//! a batch from each side, run every frame through the [`Pipeline`]
//! (classify, direct, pace), transmit the batch on the other side, wake the
//! kernel where the rings ask for it, and sleep in poll() when idle. Nothing
//! on this path locks, allocates or makes a syscall besides ring wakeups.

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
pub use xsk_rs::umem::frame::DataMut;
pub use xsk_rs::FrameDesc;
use xsk_rs::Umem;

use crate::pacer::{Admit, Pacer};

use ledger::{FrameLedger, LedgerSnapshot, Place};
use ports::{CopyPolicy, Port, RingSpec};

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
}

/// The per-packet logic a worker runs. One instance per worker thread.
pub trait Pipeline: Send + 'static {
    /// Command type sent by the control thread (rule swaps etc.).
    type Command: Send + 'static;
    /// Report type published periodically.
    type Report: Send + 'static;
    /// Handles one frame in place. The frame may be rewritten or resized
    /// through `data` (its cursor grows it up to the UMEM frame size).
    fn on_frame(&mut self, now_ns: u64, side: Side, data: &mut DataMut<'_>) -> Action;
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
    /// Frames received, per side (outer, inner).
    pub rx_packets: [u64; 2],
    /// Bytes received, per side.
    pub rx_bytes: [u64; 2],
    /// Frames put on the TX ring, per side.
    pub tx_packets: [u64; 2],
    /// Bytes put on the TX ring, per side.
    pub tx_bytes: [u64; 2],
    /// Frames dropped by policy.
    pub drop_policy: u64,
    /// Frames dropped because a pacer queue was full.
    pub drop_pacer: u64,
    /// Frames dropped because a rewrite failed.
    pub drop_rewrite: u64,
    /// Frames dropped because the TX ring had no room (only bounced
    /// frames can hit this: forwarded batches are sized to the free room).
    pub drop_tx_full: u64,
    /// Times receive was throttled because the peer TX ring was full.
    pub tx_ring_full: u64,
    /// Times the fill ring could not be topped up (free list empty).
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

/// What a worker publishes to the control thread.
#[derive(Debug)]
pub struct WorkerReport<R> {
    /// Worker index.
    pub index: usize,
    /// Counters.
    pub stats: WorkerStats,
    /// Kernel socket statistics per side.
    pub sockets: [SocketStats; 2],
    /// Frame accounting.
    pub ledger: LedgerSnapshot,
    /// The pipeline's report.
    pub pipeline: R,
}

/// Everything needed to start one worker.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Worker index (0..).
    pub index: usize,
    /// Core to pin to (None = unpinned).
    pub core: Option<usize>,
    /// Queue on both interfaces.
    pub queue: u32,
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
    /// Idle poll timeout.
    pub poll_timeout_ms: u32,
    /// Report period.
    pub publish_interval: Duration,
}

/// A running worker.
pub struct WorkerHandle<C> {
    /// Commands to the worker.
    pub commands: Sender<C>,
    /// Socket fds per side (for the XSKMAP).
    pub fds: [i32; 2],
    /// Whether each side is zero-copy.
    pub zero_copy: [bool; 2],
    /// Queue served.
    pub queue: u32,
    thread: Option<JoinHandle<()>>,
}

impl<C> WorkerHandle<C> {
    /// Waits for the thread to end (after the stop flag was set).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens the worker's sockets (on the caller's thread, so setup errors are
/// reported synchronously) and starts its thread.
pub fn spawn<P: Pipeline>(
    spec: WorkerSpec,
    pipeline: P,
    pacer: Option<Pacer<FrameDesc>>,
    reports: Sender<WorkerReport<P::Report>>,
    stop: Arc<AtomicBool>,
) -> Result<WorkerHandle<P::Command>, WorkerError> {
    let (umem, frames) = ports::create_umem(&spec.rings)?;
    let outer = ports::open_port(
        &umem,
        &spec.outer,
        spec.queue,
        &spec.rings,
        spec.mode,
        spec.copy,
    )?;
    let inner = ports::open_port(
        &umem,
        &spec.inner,
        spec.queue,
        &spec.rings,
        spec.mode,
        spec.copy,
    )?;
    let fds = [outer.raw_fd(), inner.raw_fd()];
    let zero_copy = [outer.zero_copy, inner.zero_copy];
    let (tx, rx) = crossbeam_channel::bounded(16);
    let queue = spec.queue;
    let thread = std::thread::Builder::new()
        .name(format!("hr-worker-{}", spec.index))
        .spawn(move || {
            if let Some(core) = spec.core {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    tracing::warn!(core, "could not pin worker");
                }
            }
            let mut w = Worker::new(
                spec,
                umem,
                frames,
                [outer, inner],
                pipeline,
                pacer,
                rx,
                reports,
            );
            w.run(&stop);
        })
        .map_err(WorkerError::Spawn)?;
    Ok(WorkerHandle {
        commands: tx,
        fds,
        zero_copy,
        queue,
        thread: Some(thread),
    })
}

struct Worker<P: Pipeline> {
    spec: WorkerSpec,
    umem: Umem,
    ports: [Port; 2],
    free: Vec<FrameDesc>,
    ledger: FrameLedger,
    rx_descs: Vec<FrameDesc>,
    tx_batch: [Vec<FrameDesc>; 2],
    pipeline: P,
    pacer: Option<Pacer<FrameDesc>>,
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
        ports: [Port; 2],
        pipeline: P,
        pacer: Option<Pacer<FrameDesc>>,
        commands: Receiver<P::Command>,
        reports: Sender<WorkerReport<P::Report>>,
    ) -> Self {
        let batch = spec.batch as usize;
        let ledger = FrameLedger::new(frames.len(), spec.rings.frame_size as usize);
        Self {
            rx_descs: vec![FrameDesc::default(); batch],
            tx_batch: [Vec::with_capacity(2 * batch), Vec::with_capacity(2 * batch)],
            free: frames,
            ledger,
            spec,
            umem,
            ports,
            pipeline,
            pacer,
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
            for s in 0..2 {
                self.reap(s, &mut completions);
                self.refill(s);
            }
            let now = self.now_ns();
            let mut work = 0;
            for side in [Side::Outer, Side::Inner] {
                work += self.receive(now, side);
            }
            work += self.release(now);
            for s in 0..2 {
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

    /// Takes transmitted frames back from the completion ring.
    fn reap(&mut self, s: usize, scratch: &mut [FrameDesc]) {
        let port = &mut self.ports[s];
        // SAFETY: the descriptors come from this socket's completion ring and
        // belong to this worker's UMEM; the kernel is done with them.
        let n = unsafe { port.cq.consume(scratch) };
        if n > 0 {
            self.ledger.moved_many(
                scratch[..n].iter().map(|d| d.addr()),
                n,
                Place::Tx(s as u8),
                Place::Free,
            );
            self.free.extend_from_slice(&scratch[..n]);
        }
    }

    /// Tops up the fill ring of side `s` from the free list.
    fn refill(&mut self, s: usize) {
        let target = self.spec.rings.fill as usize;
        let have = self.ledger.count(Place::Fill(s as u8));
        if have >= target {
            return;
        }
        let port = &mut self.ports[s];
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
                Place::Fill(s as u8),
            );
            self.free.truncate(start);
        }
        if port.fq.needs_wakeup() {
            self.stats.fill_wakeups += 1;
            let _ = port.fq.wakeup(port.rx.fd_mut(), 0);
        }
    }

    /// Receives and processes one batch from `side`; returns frames received.
    fn receive(&mut self, now: u64, side: Side) -> usize {
        let s = side as usize;
        let o = side.other() as usize;
        // Only take as many frames as the peer TX ring (plus what is already
        // batched for it) can hold: excess stays in the RX ring, where the
        // kernel counts it, rather than being dropped here.
        let want = self.spec.batch as usize;
        let room = self.ports[o].tx.nb_free(self.spec.rings.ring) as usize;
        let budget = want.min(room.saturating_sub(self.tx_batch[o].len()));
        if budget == 0 {
            self.stats.tx_ring_full += 1;
            return 0;
        }
        // SAFETY: `rx_descs` are scratch descriptors overwritten by the ring.
        let n = unsafe { self.ports[s].rx.consume(&mut self.rx_descs[..budget]) };
        if n == 0 {
            return 0;
        }
        self.ledger.moved_many(
            self.rx_descs[..n].iter().map(|d| d.addr()),
            n,
            Place::Fill(s as u8),
            Place::Held,
        );
        for i in 0..n {
            let mut desc = self.rx_descs[i];
            // SAFETY: the frame came from our RX ring, so the kernel has
            // handed it back; it is in no other ring and no other reference
            // to its memory exists while we process it.
            let mut data = unsafe { self.umem.data_mut(&mut desc) };
            let frame_len = data.contents().len();
            self.stats.rx_packets[s] += 1;
            self.stats.rx_bytes[s] += frame_len as u64;
            let action = self.pipeline.on_frame(now, side, &mut data);
            match action {
                Action::Forward => self.tx_batch[o].push(desc),
                Action::Pace { pipe, job } => {
                    let len = desc.lengths().data() as u32;
                    match self.pacer.as_mut() {
                        Some(p) => match p.admit(now, pipe as usize, job, len, desc) {
                            Admit::Send(d) => self.tx_batch[Side::Outer as usize].push(d),
                            Admit::Queued => {}
                            Admit::Dropped(d) => {
                                self.stats.drop_pacer += 1;
                                self.ledger.moved(d.addr(), Place::Held, Place::Free);
                                self.free.push(d);
                            }
                        },
                        None => self.tx_batch[Side::Outer as usize].push(desc),
                    }
                }
                Action::Bounce => self.tx_batch[s].push(desc),
                Action::Drop(reason) => {
                    match reason {
                        DropReason::Policy => self.stats.drop_policy += 1,
                        DropReason::PacerQueueFull => self.stats.drop_pacer += 1,
                        DropReason::Rewrite => self.stats.drop_rewrite += 1,
                    }
                    self.ledger.moved(desc.addr(), Place::Held, Place::Free);
                    self.free.push(desc);
                }
            }
        }
        n
    }

    /// Hands frames whose credit has arrived from the pacer's queues to the
    /// outer TX batch, as many as the ring has room for.
    fn release(&mut self, now: u64) -> usize {
        let Some(p) = self.pacer.as_mut() else {
            return 0;
        };
        if p.queued() == 0 {
            return 0;
        }
        let o = Side::Outer as usize;
        let room = (self.ports[o].tx.nb_free(self.spec.rings.ring) as usize)
            .saturating_sub(self.tx_batch[o].len());
        let max = room.min(self.spec.batch as usize);
        let batch = &mut self.tx_batch[o];
        p.poll_release(now, max, |d| batch.push(d))
    }

    /// Puts the batch for side `s` on its TX ring and wakes the kernel.
    fn transmit(&mut self, s: usize) {
        if self.tx_batch[s].is_empty() {
            return;
        }
        let port = &mut self.ports[s];
        let len = self.tx_batch[s].len();
        let room = port.tx.nb_free(len as u32) as usize;
        if room < len {
            // Only bounced frames can overflow (forwarding was sized to the
            // room): return the excess to the free list, counted.
            for d in self.tx_batch[s].drain(room..) {
                self.stats.drop_tx_full += 1;
                self.ledger.moved(d.addr(), Place::Held, Place::Free);
                self.free.push(d);
            }
        }
        let batch = &self.tx_batch[s];
        let queued = batch.len();
        if !batch.is_empty() {
            // SAFETY: the frames are held by this worker (received or
            // bounced), not in any ring; `nb_free` guaranteed room for all.
            let produced = unsafe { port.tx.produce(batch) };
            if produced == batch.len() {
                for d in batch {
                    self.stats.tx_packets[s] += 1;
                    self.stats.tx_bytes[s] += d.lengths().data() as u64;
                }
                self.ledger.moved_many(
                    batch.iter().map(|d| d.addr()),
                    batch.len(),
                    Place::Held,
                    Place::Tx(s as u8),
                );
                self.tx_batch[s].clear();
            }
        }
        if port.tx.needs_wakeup() {
            // In copy mode one sendto() transmits at most 32 frames
            // (the kernel's TX batch): kick once per 32 so a batch does not
            // linger in the ring until the next loop iteration.
            for _ in 0..queued.div_ceil(32).max(1) {
                self.stats.tx_wakeups += 1;
                if port.tx.wakeup().is_err() {
                    break;
                }
            }
        }
    }

    /// Nothing arrived: wait in poll() on both sockets, briefly if frames
    /// are still in flight on a TX ring.
    fn idle(&mut self) {
        self.stats.idle_polls += 1;
        let in_flight = self.ledger.count(Place::Tx(0)) + self.ledger.count(Place::Tx(1));
        if in_flight > 0 {
            for s in 0..2 {
                if self.ledger.count(Place::Tx(s as u8)) > 0 {
                    let _ = self.ports[s].tx.wakeup();
                }
            }
        }
        let mut timeout_ns: u64 = if in_flight > 0 {
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
        let mut fds = [
            libc::pollfd {
                fd: self.ports[0].raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.ports[1].raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ts = libc::timespec {
            tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: `fds` is a valid array of two pollfd structs and `ts` a valid
        // timespec for the duration of the call; a null sigmask keeps the
        // thread's mask.
        unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
    }

    fn publish(&mut self) {
        let now = self.now_ns();
        let pipeline = self.pipeline.tick(now);
        let sockets = [socket_stats(&self.ports[0]), socket_stats(&self.ports[1])];
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
