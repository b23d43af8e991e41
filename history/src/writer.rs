//! The writer thread: the only thread that touches the store for writing.
//!
//! The control thread calls [`History::record`] once a second; it puts the sample on a
//! bounded channel with `try_send` and returns at once. A full channel drops the sample and
//! counts it (counters lose nothing: the next sample's delta covers the gap). The writer turns
//! samples into points ([`Recorder`]), keeps them in a bounded backlog and writes the backlog
//! in one transaction. When the store fails — a full disk, a read-only or vanished directory,
//! a lock held by another process, a corrupt file — the error is logged (on change, and once
//! a minute while it lasts), counted per kind and shown in [`HistoryStatus`]; the connection
//! is closed and reopened with backoff until writing works again, and the backlog is then
//! written, so a short outage loses nothing. A corrupt file is moved aside (renamed to
//! `<path>.corrupt-<unix time>`) with an error log and a new one is started.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use headroom_clock::Timestamp;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::{Deserialize, Serialize};

use crate::journal::EventRow;
use crate::recorder::{Batch, Recorder, RecorderStats};
use crate::sample::{NodeSample, NodeSummary};
use crate::store::{Fault, Store, StoreError, StoreOptions, StoreStats};
use crate::time::WallTime;

/// Settings of the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryOptions {
    /// This node's id.
    pub node: u32,
    /// The store.
    pub store: StoreOptions,
    /// Capacity of the channel, in samples and summaries.
    pub queue: usize,
    /// How much data to keep in memory while the store fails, in seconds of samples.
    pub backlog: Duration,
    /// First retry after a failure; doubles up to `retry_max`.
    pub retry_min: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
}

impl HistoryOptions {
    /// From the node's `[history]` section.
    pub fn from_config(node: u32, c: &headroom_config::history::HistoryConfig) -> Self {
        HistoryOptions {
            node,
            store: StoreOptions::from_config(c),
            queue: c.queue,
            backlog: c.backlog,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// Whether the store is being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreState {
    /// Not opened yet.
    #[default]
    Starting,
    /// Writing.
    Ok,
    /// Failing; data waits in the backlog.
    Failing,
    /// The writer has stopped.
    Stopped,
}

/// Times each kind of fault happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    /// No space left.
    pub disk_full: u64,
    /// Read-only file or directory.
    pub read_only: u64,
    /// Locked by another process.
    pub locked: u64,
    /// Corrupt file.
    pub corrupt: u64,
    /// Written by a newer version.
    pub too_new: u64,
    /// Other errors.
    pub io: u64,
}

impl FaultCounts {
    fn add(&mut self, f: Fault) {
        let c = match f {
            Fault::DiskFull => &mut self.disk_full,
            Fault::ReadOnly => &mut self.read_only,
            Fault::Locked => &mut self.locked,
            Fault::Corrupt => &mut self.corrupt,
            Fault::TooNew => &mut self.too_new,
            Fault::Io => &mut self.io,
        };
        *c += 1;
    }

    /// Times `f` happened.
    pub fn get(&self, f: Fault) -> u64 {
        match f {
            Fault::DiskFull => self.disk_full,
            Fault::ReadOnly => self.read_only,
            Fault::Locked => self.locked,
            Fault::Corrupt => self.corrupt,
            Fault::TooNew => self.too_new,
            Fault::Io => self.io,
        }
    }
}

/// The history's part of the daemon's status document (and its metrics).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryStatus {
    /// The database file.
    pub path: String,
    /// Whether it is being written.
    pub state: StoreState,
    /// The current fault, while failing.
    pub fault: Option<Fault>,
    /// The last error, with what to do about it.
    pub last_error: Option<String>,
    /// When the last error happened.
    pub last_error_at: Option<WallTime>,
    /// Samples accepted onto the channel.
    pub samples_queued: u64,
    /// Samples dropped because the channel was full.
    pub samples_dropped_queue_full: u64,
    /// Summaries accepted.
    pub summaries_queued: u64,
    /// Summaries dropped because the channel was full.
    pub summaries_dropped_queue_full: u64,
    /// Points waiting in memory for the store.
    pub backlog_points: u64,
    /// Journal entries accepted.
    #[serde(default)]
    pub journal_queued: u64,
    /// Journal entries dropped because the channel was full (the master's memory journal
    /// still shows them until it restarts).
    #[serde(default)]
    pub journal_dropped_queue_full: u64,
    /// Journal entries waiting in memory for the store.
    #[serde(default)]
    pub journal_backlog: u64,
    /// Journal entries dropped because their backlog was full while the store failed.
    #[serde(default)]
    pub journal_dropped_backlog_full: u64,
    /// Points dropped because the backlog was full while the store failed.
    pub points_dropped_backlog_full: u64,
    /// Failures by kind (write attempts and opens).
    pub faults: FaultCounts,
    /// Times writing resumed after a failure.
    pub recoveries: u64,
    /// Corrupt files moved aside.
    pub corrupt_files_moved: u64,
    /// Where the last corrupt file went.
    pub last_corrupt_file: Option<String>,
    /// The store's counters (of the current file since it was opened).
    pub store: StoreStats,
    /// The recorder's counters.
    pub recorder: RecorderStats,
}

enum Msg {
    Sample(Box<NodeSample>),
    Summary(u32, WallTime, Box<NodeSummary>),
    Journal(Box<EventRow>),
    Flush(Sender<()>),
    Stop,
}

struct Shared {
    status: Mutex<HistoryStatus>,
    samples_queued: AtomicU64,
    samples_dropped: AtomicU64,
    summaries_queued: AtomicU64,
    summaries_dropped: AtomicU64,
    journal_queued: AtomicU64,
    journal_dropped: AtomicU64,
}

/// The producer's handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct History {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").finish_non_exhaustive()
    }
}

impl History {
    /// Hands one second's sample to the writer; false if it was dropped (channel full).
    pub fn record(&self, s: NodeSample) -> bool {
        match self.tx.try_send(Msg::Sample(Box::new(s))) {
            Ok(()) => {
                self.shared.samples_queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.samples_dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Hands pool member `node`'s summary, received at `at`, to the writer; false if dropped.
    pub fn record_summary(&self, node: u32, at: WallTime, s: NodeSummary) -> bool {
        match self.tx.try_send(Msg::Summary(node, at, Box::new(s))) {
            Ok(()) => {
                self.shared.summaries_queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.shared
                    .summaries_dropped
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Hands a journal entry to the writer; false if dropped (channel full).
    pub fn record_journal(&self, e: EventRow) -> bool {
        let (ok, n) = match self.tx.try_send(Msg::Journal(Box::new(e))) {
            Ok(()) => (true, &self.shared.journal_queued),
            Err(_) => (false, &self.shared.journal_dropped),
        };
        n.fetch_add(1, Ordering::Relaxed);
        ok
    }

    /// The current status.
    pub fn status(&self) -> HistoryStatus {
        let mut s = self
            .shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        s.samples_queued = self.shared.samples_queued.load(Ordering::Relaxed);
        s.samples_dropped_queue_full = self.shared.samples_dropped.load(Ordering::Relaxed);
        s.summaries_queued = self.shared.summaries_queued.load(Ordering::Relaxed);
        s.summaries_dropped_queue_full = self.shared.summaries_dropped.load(Ordering::Relaxed);
        s.journal_queued = self.shared.journal_queued.load(Ordering::Relaxed);
        s.journal_dropped_queue_full = self.shared.journal_dropped.load(Ordering::Relaxed);
        s
    }

    /// Waits until the writer has handled everything sent before and tried to write it
    /// (for shutdown and tests; not for the control thread). False on timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = bounded(1);
        if self.tx.send_timeout(Msg::Flush(tx), timeout).is_err() {
            return false;
        }
        rx.recv_timeout(timeout).is_ok()
    }
}

/// The running writer thread.
#[derive(Debug)]
pub struct Writer {
    handle: Option<JoinHandle<()>>,
    history: History,
}

impl Writer {
    /// Writes what is left and stops the thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = self.history.tx.send(Msg::Stop);
            let _ = h.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Starts the writer thread; returns the producer's handle and the thread.
pub fn spawn(opts: HistoryOptions) -> std::io::Result<(History, Writer)> {
    let (tx, rx) = bounded(opts.queue.max(1));
    let shared = Arc::new(Shared {
        status: Mutex::new(HistoryStatus {
            path: opts.store.path.display().to_string(),
            ..Default::default()
        }),
        samples_queued: AtomicU64::new(0),
        samples_dropped: AtomicU64::new(0),
        summaries_queued: AtomicU64::new(0),
        summaries_dropped: AtomicU64::new(0),
        journal_queued: AtomicU64::new(0),
        journal_dropped: AtomicU64::new(0),
    });
    let history = History { tx, shared };
    let shared = history.shared.clone();
    let handle = std::thread::Builder::new()
        .name("headroom-history".into())
        .spawn(move || WriterLoop::new(opts, shared).run(rx))?;
    Ok((
        history.clone(),
        Writer {
            handle: Some(handle),
            history,
        },
    ))
}

/// Batches per transaction when catching up.
const MAX_BATCHES_PER_WRITE: usize = 600;
/// Journal entries held while the store fails (the oldest go first, counted).
pub const JOURNAL_BACKLOG: usize = 4096;
/// While a fault lasts, it is logged again this often.
const RELOG: Duration = Duration::from_secs(60);

struct WriterLoop {
    opts: HistoryOptions,
    shared: Arc<Shared>,
    recorder: Recorder,
    store: Option<Store>,
    backlog: VecDeque<Batch>,
    backlog_points: usize,
    journal: VecDeque<EventRow>,
    peak_sample_points: usize,
    retry_at: Timestamp,
    retry_wait: Duration,
    /// Batches per transaction: halved after a write that found the disk
    /// full (a large transaction's journal may not fit where single
    /// seconds do), doubled back after each success.
    batch_limit: usize,
    last_log: Option<(Fault, Timestamp)>,
    status: HistoryStatus,
}

impl WriterLoop {
    fn new(opts: HistoryOptions, shared: Arc<Shared>) -> Self {
        let status = shared.status.lock().map(|s| s.clone()).unwrap_or_default();
        WriterLoop {
            recorder: Recorder::new(opts.node),
            retry_wait: opts.retry_min,
            opts,
            shared,
            store: None,
            backlog: VecDeque::new(),
            backlog_points: 0,
            journal: VecDeque::new(),
            peak_sample_points: 0,
            retry_at: Timestamp::now(),
            batch_limit: MAX_BATCHES_PER_WRITE,
            last_log: None,
            status,
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        self.try_open();
        self.publish();
        loop {
            let wait =
                if self.store.is_none() || !self.backlog.is_empty() || !self.journal.is_empty() {
                    self.retry_at.saturating_duration_since(Timestamp::now())
                } else {
                    Duration::from_secs(3600)
                };
            let mut flushes = Vec::new();
            let mut stop = false;
            match rx.recv_timeout(wait) {
                Ok(m) => {
                    stop |= self.handle(m, &mut flushes);
                    // Take whatever else is waiting: one transaction for all of it.
                    while let Ok(m) = rx.try_recv() {
                        stop |= self.handle(m, &mut flushes);
                        if stop {
                            break;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            self.write_backlog(!flushes.is_empty() || stop);
            self.publish();
            for f in flushes {
                let _ = f.send(());
            }
            if stop {
                break;
            }
        }
        self.status.state = StoreState::Stopped;
        self.publish();
    }

    fn handle(&mut self, m: Msg, flushes: &mut Vec<Sender<()>>) -> bool {
        match m {
            Msg::Sample(s) => {
                let b = self.recorder.handle_sample(&s);
                self.peak_sample_points = self.peak_sample_points.max(b.points.len());
                self.push(b);
            }
            Msg::Summary(node, at, s) => {
                let b = self.recorder.handle_summary(node, at, &s);
                self.push(b);
            }
            Msg::Journal(e) => {
                if self.journal.len() >= JOURNAL_BACKLOG {
                    self.journal.pop_front();
                    self.status.journal_dropped_backlog_full += 1;
                }
                self.journal.push_back(*e);
            }
            Msg::Flush(tx) => flushes.push(tx),
            Msg::Stop => return true,
        }
        false
    }

    /// Bounds the backlog to `backlog` seconds of samples (plus as much again for summaries).
    fn push(&mut self, b: Batch) {
        if b.points.is_empty() && b.new_series.is_empty() {
            return;
        }
        self.backlog_points += b.points.len();
        self.backlog.push_back(b);
        let limit =
            (self.opts.backlog.as_secs() as usize).max(1) * self.peak_sample_points.max(100) * 2;
        while self.backlog_points > limit && self.backlog.len() > 1 {
            let old = self.backlog.pop_front().expect("not empty");
            self.backlog_points -= old.points.len();
            self.status.points_dropped_backlog_full += old.points.len() as u64;
        }
    }

    fn try_open(&mut self) {
        if self.store.is_some() || Timestamp::now() < self.retry_at {
            return;
        }
        match Store::open(self.opts.store.clone()) {
            Ok(s) => {
                tracing::info!(path = %self.opts.store.path.display(), "history store open");
                self.store = Some(s);
                if self.status.state == StoreState::Starting {
                    self.status.state = StoreState::Ok;
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn write_backlog(&mut self, now: bool) {
        if now {
            self.retry_at = self.retry_at.min(Timestamp::now());
        }
        self.try_open();
        if !self.write_journal() {
            return;
        }
        while !self.backlog.is_empty() {
            let Some(store) = self.store.as_mut() else {
                return;
            };
            let n = self.backlog.len().min(self.batch_limit);
            let (a, b) = self.backlog.as_slices();
            let res = if a.len() >= n {
                store.write(&a[..n], &self.recorder)
            } else {
                let v: Vec<Batch> = a.iter().chain(b.iter()).take(n).cloned().collect();
                store.write(&v, &self.recorder)
            };
            match res {
                Ok(()) => {
                    for _ in 0..n {
                        let b = self.backlog.pop_front().expect("counted");
                        self.backlog_points -= b.points.len();
                    }
                    self.status.store = store.stats();
                    if self.status.state == StoreState::Failing {
                        self.status.recoveries += 1;
                        tracing::info!(
                            path = %self.opts.store.path.display(),
                            "history store writable again; backlog written"
                        );
                    }
                    self.status.state = StoreState::Ok;
                    self.status.fault = None;
                    self.batch_limit = (self.batch_limit * 2).min(MAX_BATCHES_PER_WRITE);
                    self.retry_wait = self.opts.retry_min;
                    self.last_log = None;
                }
                Err(e) => {
                    if e.fault == Fault::DiskFull {
                        self.batch_limit = (n / 2).max(1);
                    }
                    self.fail(e);
                    return;
                }
            }
        }
    }

    /// Stores the waiting journal entries; false when the store failed.
    fn write_journal(&mut self) -> bool {
        if self.journal.is_empty() {
            return true;
        }
        let Some(store) = self.store.as_mut() else {
            return false;
        };
        match store.write_journal(self.journal.make_contiguous()) {
            Ok(()) => {
                self.journal.clear();
                self.status.store = store.stats();
                true
            }
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    fn fail(&mut self, e: StoreError) {
        let now = Timestamp::now();
        self.status.faults.add(e.fault);
        self.status.state = StoreState::Failing;
        self.status.fault = Some(e.fault);
        self.status.last_error = Some(format!("{} ({})", e.message, e.fault.hint()));
        self.status.last_error_at = Some(WallTime::now());
        let relog = match self.last_log {
            Some((f, at)) => f != e.fault || now.duration_since(at) >= RELOG,
            None => true,
        };
        if relog {
            tracing::warn!(
                fault = ?e.fault,
                backlog_points = self.backlog_points,
                "history store failing: {}; {} (packets keep flowing; retrying)",
                e.message,
                e.fault.hint()
            );
            self.last_log = Some((e.fault, now));
        }
        // Close the connection: the next attempt starts from a fresh open.
        self.store = None;
        if e.fault == Fault::Corrupt {
            self.move_aside();
            self.retry_at = now;
            return;
        }
        self.retry_at = now + self.retry_wait;
        self.retry_wait = (self.retry_wait * 2).min(self.opts.retry_max);
    }

    fn move_aside(&mut self) {
        let path = &self.opts.store.path;
        let to = aside_name(path, WallTime::now());
        match std::fs::rename(path, &to) {
            Ok(()) => {
                for ext in ["-wal", "-shm"] {
                    let mut side = path.clone().into_os_string();
                    side.push(ext);
                    let mut side_to = to.clone().into_os_string();
                    side_to.push(ext);
                    let _ = std::fs::rename(&side, &side_to);
                }
                tracing::error!(
                    file = %path.display(),
                    moved_to = %to.display(),
                    "history database is corrupt: moved it aside and started a new one"
                );
                self.status.corrupt_files_moved += 1;
                self.status.last_corrupt_file = Some(to.display().to_string());
            }
            Err(e) => {
                let e = StoreError::from_io(
                    &format!(
                        "moving corrupt {} aside to {}",
                        path.display(),
                        to.display()
                    ),
                    e,
                );
                tracing::error!("{}", e.message);
                self.status.faults.add(e.fault);
                self.status.last_error = Some(e.message);
                self.retry_at = Timestamp::now() + self.retry_wait;
                self.retry_wait = (self.retry_wait * 2).min(self.opts.retry_max);
            }
        }
    }

    fn publish(&mut self) {
        self.status.backlog_points = self.backlog_points as u64;
        self.status.journal_backlog = self.journal.len() as u64;
        self.status.recorder = self.recorder.stats();
        if let Ok(mut s) = self.shared.status.lock() {
            *s = self.status.clone();
        }
    }
}

/// `<path>.corrupt-<unix seconds>`.
pub fn aside_name(path: &Path, at: WallTime) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".corrupt-{}", crate::time::secs(at)));
    PathBuf::from(s)
}
