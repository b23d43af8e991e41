//! Runs the actions of firing triggers: structured log lines, commands and
//! webhooks, each on a worker thread so the control loop never waits.
//!
//! [`Executor::submit`] takes an [`ActionRequest`] from the automation
//! (`headroom_control::triggers`) and returns at once; the outcome comes
//! back as an [`ActionRecord`] from [`Executor::try_result`], for the event
//! journal ([`Journal`], what `headroomctl events` lists). A full queue
//! records the action as dropped instead of waiting.
//!
//! * **Commands** run without a shell: `argv` as given, a clean environment
//!   (`PATH` and the event's `HEADROOM_*` variables only), no stdin, in a
//!   process group of their own that is killed (SIGKILL) at the timeout.
//!   Exit status and the first [`ExecutorConfig::max_output`] bytes of
//!   stdout and stderr are recorded.
//! * **Webhooks** POST the event as JSON with a timeout per attempt and
//!   retries with doubling back-off; a bearer token comes from a secret of
//!   the node file; no redirects and no proxy from the environment (the
//!   allowlist names the host that receives the event).
//!
//! The node's allowlist is checked again here, whatever the policy says.

mod command;
mod journal;
mod webhook;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TryRecvError, TrySendError};
use headroom_clock::{Timestamp, WallTime};
use headroom_config::triggers::{Action, ActionsConfig, LogLevel};
use headroom_control::triggers::{ActionRequest, TriggerEvent};
use serde::Serialize;

pub use journal::{Entry, Journal};

/// Executor settings (from the node file's `[actions]`).
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Allowlists and secrets.
    pub node: ActionsConfig,
    /// Bytes of stdout and of stderr kept per command (4 KiB).
    pub max_output: usize,
}

impl ExecutorConfig {
    /// Settings of a node file's `[actions]`.
    pub fn new(node: &ActionsConfig) -> Self {
        Self {
            node: node.clone(),
            max_output: 4096,
        }
    }
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done (exit 0, 2xx, logged).
    Ok,
    /// Ran and failed (non-zero exit, signal, HTTP error, no answer).
    Failed,
    /// Killed at its timeout.
    TimedOut,
    /// Not allowed by this node's `[actions]` (or an unknown secret).
    Refused,
    /// The queue was full.
    Dropped,
    /// The executor shut down before it ran.
    Cancelled,
}

impl Outcome {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Refused => "refused",
            Outcome::Dropped => "dropped",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// What ran and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionRecord {
    /// Executor-assigned id (submission order).
    pub id: u64,
    /// Trigger.
    pub trigger: String,
    /// Episode.
    pub episode: u64,
    /// Position of the action in the trigger's list.
    pub index: usize,
    /// "log", "command" or "webhook".
    pub kind: &'static str,
    /// The program or URL.
    pub target: String,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// Result.
    pub outcome: Outcome,
    /// Webhook attempts made (1 for commands and logs).
    pub attempts: u32,
    /// Exit code of a command.
    pub exit_code: Option<i32>,
    /// Signal that ended a command.
    pub signal: Option<i32>,
    /// HTTP status of the last attempt.
    pub http_status: Option<u16>,
    /// Start of stdout (lossy UTF-8).
    pub stdout: String,
    /// Start of stderr (lossy UTF-8).
    pub stderr: String,
    /// Output bytes not kept.
    pub output_truncated: u64,
    /// What went wrong, for humans.
    pub error: Option<String>,
}

impl ActionRecord {
    fn new(id: u64, req: &ActionRequest, target: String) -> Self {
        Self {
            id,
            trigger: req.event.trigger.clone(),
            episode: req.event.episode,
            index: req.index,
            kind: req.action.kind(),
            target,
            started_unix_ms: WallTime::now().as_unix_millis(),
            duration_ms: 0,
            outcome: Outcome::Ok,
            attempts: 1,
            exit_code: None,
            signal: None,
            http_status: None,
            stdout: String::new(),
            stderr: String::new(),
            output_truncated: 0,
            error: None,
        }
    }
}

/// Counters. All monotonic.
#[derive(Debug, Default)]
pub struct ExecutorStats {
    /// Actions accepted.
    pub submitted: AtomicUsize,
    /// Actions dropped (queue full).
    pub dropped: AtomicUsize,
    /// Actions refused by the allowlist.
    pub refused: AtomicUsize,
    /// Actions that failed or timed out.
    pub failed: AtomicUsize,
    /// Actions done.
    pub ok: AtomicUsize,
}

struct Job {
    id: u64,
    req: ActionRequest,
}

/// The event as a webhook body and as a journal entry.
pub fn event_json(e: &TriggerEvent) -> serde_json::Value {
    let fields: serde_json::Map<String, serde_json::Value> = e
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "trigger": e.trigger,
        "episode": e.episode,
        "state": e.state.name(),
        "condition": e.condition,
        "time": e.time(),
        "unix_ms": e.unix_ms,
        "node": e.node,
        "fields": fields,
    })
}

/// Runs actions on worker threads (see the crate documentation).
pub struct Executor {
    jobs: Option<Sender<Job>>,
    results_tx: Sender<ActionRecord>,
    results: Receiver<ActionRecord>,
    stop: Sender<()>,
    workers: Vec<JoinHandle<()>>,
    next_id: u64,
    stats: Arc<ExecutorStats>,
    cfg: Arc<ExecutorConfig>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("workers", &self.workers.len())
            .field("next_id", &self.next_id)
            .finish()
    }
}

impl Executor {
    /// Starts `cfg.node.workers` worker threads.
    pub fn new(cfg: ExecutorConfig) -> Self {
        let (jobs, rx) = bounded::<Job>(cfg.node.queue.max(1));
        let (results_tx, results) = unbounded();
        // Dropping the sender wakes every sleeping retry at once.
        let (stop, stop_rx) = bounded::<()>(0);
        let cfg = Arc::new(cfg);
        let stats = Arc::new(ExecutorStats::default());
        let workers = (0..cfg.node.workers.max(1))
            .map(|i| {
                let (rx, tx, stop_rx) = (rx.clone(), results_tx.clone(), stop_rx.clone());
                let (cfg, stats) = (cfg.clone(), stats.clone());
                std::thread::Builder::new()
                    .name(format!("headroom-action-{i}"))
                    .spawn(move || {
                        for job in rx.iter() {
                            let rec = if stop_rx.try_recv() == Err(TryRecvError::Disconnected) {
                                let mut r = ActionRecord::new(job.id, &job.req, String::new());
                                r.outcome = Outcome::Cancelled;
                                r
                            } else {
                                run(&cfg, &stop_rx, job.id, &job.req)
                            };
                            let counter = match rec.outcome {
                                Outcome::Ok => &stats.ok,
                                Outcome::Refused => &stats.refused,
                                _ => &stats.failed,
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                            let _ = tx.send(rec);
                        }
                    })
                    .expect("spawning an action worker")
            })
            .collect();
        Self {
            jobs: Some(jobs),
            results_tx,
            results,
            stop,
            workers,
            next_id: 1,
            stats,
            cfg,
        }
    }

    /// Queues an action and returns its id at once; a full queue records
    /// it as dropped.
    pub fn submit(&mut self, req: ActionRequest) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let Some(jobs) = &self.jobs else {
            return id;
        };
        match jobs.try_send(Job { id, req }) {
            Ok(()) => {
                self.stats.submitted.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                let mut r = ActionRecord::new(id, &job.req, target_of(&job.req.action));
                r.outcome = Outcome::Dropped;
                r.attempts = 0;
                r.error = Some(format!(
                    "{} actions already waiting ([actions] queue)",
                    self.cfg.node.queue
                ));
                let _ = self.results_tx.send(r);
            }
        }
        id
    }

    /// The next finished action, if any.
    pub fn try_result(&self) -> Option<ActionRecord> {
        self.results.try_recv().ok()
    }

    /// Waits up to `timeout` for the next finished action (tests, shutdown).
    pub fn wait_result(&self, timeout: Duration) -> Option<ActionRecord> {
        self.results.recv_timeout(timeout).ok()
    }

    /// Counters.
    pub fn stats(&self) -> &ExecutorStats {
        &self.stats
    }

    /// Stops: queued actions are recorded as cancelled, retries stop
    /// waiting, running commands finish or reach their timeout.
    pub fn shutdown(mut self) -> Vec<ActionRecord> {
        self.stop_workers();
        let mut out = Vec::new();
        while let Ok(r) = self.results.try_recv() {
            out.push(r);
        }
        out
    }

    fn stop_workers(&mut self) {
        self.jobs = None;
        let (dead, _) = bounded(0);
        drop(std::mem::replace(&mut self.stop, dead));
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

fn target_of(a: &Action) -> String {
    match a {
        Action::Command(c) => c.argv.first().cloned().unwrap_or_default(),
        Action::Webhook(w) => w.url.clone(),
        _ => String::new(),
    }
}

fn run(cfg: &ExecutorConfig, stop: &Receiver<()>, id: u64, req: &ActionRequest) -> ActionRecord {
    let mut rec = ActionRecord::new(id, req, target_of(&req.action));
    let start = Timestamp::now();
    match &req.action {
        Action::Log(l) => log(&req.event, l.level, l.message.as_deref()),
        Action::Command(c) => command::run(cfg, c, &req.event, &mut rec),
        Action::Webhook(w) => webhook::run(cfg, stop, w, &req.event, &mut rec),
        other => {
            rec.outcome = Outcome::Refused;
            rec.error = Some(format!(
                "{} actions are applied by the automation, not run",
                other.kind()
            ));
        }
    }
    rec.duration_ms = u64::try_from((Timestamp::now() - start).as_millis()).unwrap_or(u64::MAX);
    rec
}

fn log(e: &TriggerEvent, level: LogLevel, message: Option<&str>) {
    let fields = e
        .fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let msg = message.unwrap_or("trigger fired");
    match level {
        LogLevel::Info => {
            tracing::info!(trigger = %e.trigger, episode = e.episode, state = e.state.name(), condition = %e.condition, %fields, "{msg}")
        }
        LogLevel::Warn => {
            tracing::warn!(trigger = %e.trigger, episode = e.episode, state = e.state.name(), condition = %e.condition, %fields, "{msg}")
        }
        LogLevel::Error => {
            tracing::error!(trigger = %e.trigger, episode = e.episode, state = e.state.name(), condition = %e.condition, %fields, "{msg}")
        }
    }
}
