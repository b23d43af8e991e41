//! The daemon's side of the monitoring history: the writer thread fed once a
//! second from the status (and once a minute with the peers' summaries), and
//! the queries `headroomctl history | report | what-if | suggest` send,
//! each answered on a thread of its own so the control thread never waits
//! for SQLite.

use std::path::PathBuf;
use std::time::Duration;

use headroom_agent::history::{node_sample, SummaryLog};
use headroom_agent::status::Status;
use headroom_clock::Timestamp;
use headroom_config::Config;
use headroom_control::policy::summary::PoolNode;
use headroom_history::query::{self, Dataset, HistoryQuery};
use headroom_history::{
    report, suggest, time, whatif, History, HistoryOptions, HistoryStatus, Reader, Selector, Tier,
    WallTime, Writer,
};
use serde::{Deserialize, Serialize};

use crate::ctl::Response;

/// How long shutdown waits for the writer to store what is queued.
const FLUSH_ON_STOP: Duration = Duration::from_secs(5);

/// Recording this node's history.
pub struct Recording {
    history: History,
    writer: Writer,
    run: u64,
    started: WallTime,
    summaries: SummaryLog,
    path: PathBuf,
}

impl Recording {
    /// Starts the writer thread (None when `[history] enabled = false`). A
    /// store that cannot be opened is not an error here: the writer retries
    /// and says why in the status.
    pub fn start(cfg: &Config) -> std::io::Result<Option<Recording>> {
        if !cfg.history.enabled {
            return Ok(None);
        }
        let opts = HistoryOptions::from_config(u32::from(cfg.node.id), &cfg.history);
        let (history, writer) = headroom_history::spawn(opts)?;
        let started = WallTime::now();
        Ok(Some(Recording {
            history,
            writer,
            // Counters restart from zero with every run.
            run: started.as_unix_millis(),
            started,
            summaries: SummaryLog::default(),
            path: cfg.history.path.clone(),
        }))
    }

    /// Hands this second's sample and the peers' summaries that arrived
    /// since the last call to the writer; never blocks.
    pub fn record(&mut self, now: Timestamp, st: &Status, cfg: &Config, pool: Vec<PoolNode>) {
        let at = WallTime::now();
        self.history
            .record(node_sample(st, cfg, at, self.run, self.started));
        for (node, s) in self.summaries.due(now, u32::from(st.node_id), pool) {
            self.history.record_summary(node, at, s);
        }
    }

    /// Hands a journal entry to the writer; never blocks (a full queue is
    /// counted, and the memory journal still has the entry).
    pub fn journal(&self, row: headroom_history::EventRow) {
        self.history.record_journal(row);
    }

    /// The writer's status.
    pub fn status(&self) -> HistoryStatus {
        self.history.status()
    }

    /// The queries' view of the store.
    pub fn queries(&self) -> Queries {
        Queries {
            path: self.path.clone(),
        }
    }

    /// Stores what is queued and stops the writer.
    pub fn stop(self) {
        if !self.history.flush(FLUSH_ON_STOP) {
            tracing::warn!(
                "history: the writer did not finish in time; the last seconds may be missing"
            );
        }
        self.writer.stop();
    }
}

/// Which points a query reads: the 1 s tier holds this node's own series
/// only; the 1 min and 1 h tiers also the pool members' summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    /// 1 s points: this node only.
    #[serde(rename = "1s")]
    Second,
    /// 1 min points: the whole pool.
    #[default]
    #[serde(rename = "1m")]
    Minute,
    /// 1 h points: the whole pool.
    #[serde(rename = "1h")]
    Hour,
}

impl Resolution {
    fn tier(self) -> Tier {
        match self {
            Resolution::Second => Tier::Sec,
            Resolution::Minute => Tier::Min,
            Resolution::Hour => Tier::Hour,
        }
    }

    /// Parses `1s`, `1m` or `1h`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "1s" => Ok(Resolution::Second),
            "1m" | "1min" => Ok(Resolution::Minute),
            "1h" => Ok(Resolution::Hour),
            _ => Err(format!(
                "invalid resolution {s:?}: expected 1s (this node), 1m or 1h (the pool)"
            )),
        }
    }
}

/// A history query, ready to run off the control thread.
#[derive(Debug)]
pub enum Query {
    /// `headroomctl events`.
    Events {
        /// From this time, ms since the epoch.
        since_ms: u64,
        /// The master now (for the answer).
        master: Option<u32>,
        /// This node.
        node: u32,
        /// The memory journal's entries since `since_ms` (some not stored yet).
        memory: Vec<headroom_history::EventRow>,
    },
    /// `headroomctl history`.
    Series {
        /// JOB, pipe/NAME, vip/NAME, node/N.
        selector: String,
        /// Window length, back from now.
        since: Duration,
        /// Step between rows.
        step: Duration,
    },
    /// `headroomctl report`.
    Report {
        /// Window length.
        since: Duration,
        /// Tier read.
        resolution: Resolution,
    },
    /// `headroomctl what-if`.
    WhatIf {
        /// The policy to replay under (composed with this node's file).
        policy: Box<Config>,
        /// Options.
        options: whatif::WhatIfOptions,
        /// Window length.
        since: Duration,
        /// Tier read.
        resolution: Resolution,
    },
    /// `headroomctl suggest`.
    Suggest {
        /// The policy document the suggestion is merged into.
        document: String,
        /// Pipe capacities of the policy in force, bit/s.
        capacities: Vec<(String, u64)>,
        /// Options.
        options: suggest::SuggestOptions,
        /// Window length.
        since: Duration,
        /// Tier read.
        resolution: Resolution,
    },
}

/// Reads the store for queries.
#[derive(Debug, Clone)]
pub struct Queries {
    path: PathBuf,
}

impl Queries {
    /// Runs `q` on a thread of its own and sends the answer to `reply`.
    pub fn spawn(&self, q: Query, reply: crossbeam_channel::Sender<Response>) {
        let me = self.clone();
        let failed = reply.clone();
        let spawned = std::thread::Builder::new()
            .name("hr-query".into())
            .spawn(move || {
                let _ = reply.send(me.run(q));
            });
        if let Err(e) = spawned {
            let _ = failed.send(Response::Error {
                message: format!("history query not started: {e}"),
            });
        }
    }

    /// Answers `q` (blocking: SQLite reads).
    pub fn run(&self, q: Query) -> Response {
        match self.answer(q) {
            Ok(r) => r,
            Err(message) => Response::Error { message },
        }
    }

    fn reader(&self) -> Result<Reader, String> {
        Reader::open(&self.path).map_err(|e| {
            format!(
                "history {}: {e} (`headroomctl status` shows the writer's state)",
                self.path.display()
            )
        })
    }

    fn dataset(&self, since: Duration, res: Resolution) -> Result<Dataset, String> {
        let r = self.reader()?;
        let to = time::secs(WallTime::now()) + 1;
        let from = to - i64::try_from(since.as_secs()).unwrap_or(i64::MAX / 2);
        Dataset::load(&r, &Selector::default(), res.tier(), from, to).map_err(|e| e.to_string())
    }

    fn answer(&self, q: Query) -> Result<Response, String> {
        Ok(match q {
            Query::Events {
                since_ms,
                master,
                node,
                memory,
            } => {
                let stored = self
                    .reader()?
                    .journal(since_ms)
                    .map_err(|e| e.to_string())?;
                Response::Events {
                    master,
                    node,
                    rows: headroom_history::journal::merge(stored, memory),
                }
            }
            Query::Series {
                selector,
                since,
                step,
            } => {
                let selector = Selector::parse(&selector)?;
                let r = self.reader()?;
                let now = WallTime::now();
                let since = WallTime::from_unix_millis(
                    now.as_unix_millis()
                        .saturating_sub(u64::try_from(since.as_millis()).unwrap_or(u64::MAX)),
                );
                let table = query::history(
                    &r,
                    &HistoryQuery {
                        selector,
                        since,
                        until: None,
                        step,
                    },
                )
                .map_err(|e| e.to_string())?;
                Response::History(Box::new(table))
            }
            Query::Report { since, resolution } => {
                Response::Report(Box::new(report::report(&self.dataset(since, resolution)?)))
            }
            Query::WhatIf {
                policy,
                options,
                since,
                resolution,
            } => {
                let p = whatif::WhatIfPolicy::from_config(&policy)?;
                let ds = self.dataset(since, resolution)?;
                Response::WhatIf(Box::new(whatif::what_if(&ds, &p, &options)))
            }
            Query::Suggest {
                document,
                capacities,
                options,
                since,
                resolution,
            } => {
                let ds = self.dataset(since, resolution)?;
                let s = suggest::suggest(&ds, &capacities, &options);
                let policy = suggest::apply_to(&document, &s)?;
                Response::Suggestion {
                    suggestion: Box::new(s),
                    policy,
                }
            }
        })
    }
}
