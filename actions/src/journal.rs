//! The memory journal: trigger events and action records in arrival order,
//! bounded (the oldest go first; a counter says how many). The history
//! store keeps every entry for `headroomctl events`; this copy answers for
//! the current run while the store lags or is off.

use std::collections::VecDeque;

use headroom_clock::WallTime;
use headroom_control::triggers::TriggerEvent;
use serde::Serialize;

use crate::{event_json, ActionRecord};

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A trigger changed state.
    Trigger(TriggerEvent),
    /// An action finished (or was dropped or refused).
    Action(ActionRecord),
}

impl Entry {
    /// Wall-clock time, ms since the Unix epoch.
    pub fn unix_ms(&self) -> u64 {
        match self {
            Entry::Trigger(e) => e.unix_ms,
            Entry::Action(a) => a.started_unix_ms,
        }
    }

    /// One line for `headroomctl events`: time, trigger and episode, then
    /// what happened.
    pub fn line(&self) -> String {
        let time = |ms: u64| WallTime::from_unix_millis(ms).rfc3339();
        match self {
            Entry::Trigger(e) => {
                let fields: Vec<String> =
                    e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "{} {}#{} {} on node {}: {} {}",
                    time(e.unix_ms),
                    e.trigger,
                    e.episode,
                    e.state.name(),
                    e.node,
                    e.condition,
                    fields.join(" ")
                )
                .trim_end()
                .to_string()
            }
            Entry::Action(a) => {
                let mut s = format!(
                    "{} {}#{} {} {} {} in {} ms",
                    time(a.started_unix_ms),
                    a.trigger,
                    a.episode,
                    a.kind,
                    a.target,
                    a.outcome.name(),
                    a.duration_ms
                );
                if a.attempts > 1 {
                    s.push_str(&format!(", {} attempts", a.attempts));
                }
                if let Some(c) = a.exit_code {
                    s.push_str(&format!(", exit {c}"));
                }
                if let Some(h) = a.http_status {
                    s.push_str(&format!(", HTTP {h}"));
                }
                if let Some(e) = &a.error {
                    s.push_str(&format!(": {e}"));
                }
                s
            }
        }
    }

    /// JSON for `headroomctl events --json` (`entry` is "trigger" or "action").
    pub fn to_json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Tagged<'a, T> {
            entry: &'static str,
            #[serde(flatten)]
            body: &'a T,
        }
        match self {
            Entry::Trigger(e) => {
                let mut v = event_json(e);
                v["entry"] = "trigger".into();
                v
            }
            Entry::Action(a) => serde_json::to_value(Tagged {
                entry: "action",
                body: a,
            })
            .unwrap_or_default(),
        }
    }
}

/// A bounded journal.
#[derive(Debug, Clone)]
pub struct Journal {
    entries: VecDeque<Entry>,
    max: usize,
    /// Entries dropped to stay within `max`.
    pub dropped: u64,
}

impl Journal {
    /// Keeps at most `max` entries.
    pub fn new(max: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            max: max.max(1),
            dropped: 0,
        }
    }

    /// Appends an entry.
    pub fn push(&mut self, e: Entry) {
        if self.entries.len() >= self.max {
            self.entries.pop_front();
            self.dropped += 1;
        }
        self.entries.push_back(e);
    }

    /// Entries at or after `unix_ms`, oldest first.
    pub fn since(&self, unix_ms: u64) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.unix_ms() >= unix_ms)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
