//! The pool policy on this node: which document the node runs, how a
//! candidate is checked before the node stages it, and the models the CLI
//! renders (`policy apply`, `show`, `history`).
//!
//! The distribution itself is `headroom_control::policy::PolicyNode`, which
//! rides the pool's exchange ([`crate::pool`]). This module holds what only
//! a server can judge: a version is acceptable here when the node file
//! composed with it validates ([`Config::with_policy`]) and everything it
//! changes applies live.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use headroom_config::{Config, ConfigChanges};
use headroom_control::policy::{
    ApplyResult, HistoryEntry, HistoryStatus, Kind, VersionId, VersionMeta,
};
use serde::{Deserialize, Serialize};

/// What a node's check of a policy document compares against: the node file
/// and the configuration in force.
#[derive(Debug, Clone)]
pub struct Composer {
    /// The node file as last read (its policy sections are the initial policy).
    pub node: Config,
    /// The configuration in force (the node file composed with the active policy).
    pub active: Config,
    /// Whether the process scheduler runs (decided at start).
    pub cpu_scheduling: bool,
}

impl Composer {
    /// The configuration `doc` gives this node, or why the node cannot run
    /// it (as operators read it: `file:line: field: message`, or the fields
    /// that only change at a restart). `name` names the document in errors.
    pub fn check(&self, doc: &[u8], name: &str) -> Result<(Config, ConfigChanges), String> {
        let text = std::str::from_utf8(doc)
            .map_err(|e| format!("{name}: not UTF-8 text (byte {})", e.valid_up_to()))?;
        let new = self
            .node
            .with_policy(text, Path::new(name))
            .map_err(|e| e.to_string())?;
        // Triggers' commands run on whichever node is master: each node
        // refuses a version naming one it lacks (the rollout names them).
        headroom_config::triggers::check_commands_present(&new, text, Path::new(name))
            .map_err(|e| format!("node {}: {e}", self.node.node.id))?;
        let changes = live_changes(&self.active, &new, self.cpu_scheduling);
        if !changes.restart_required.is_empty() {
            return Err(format!(
                "node {}: {name}: {} only change(s) at a restart of headroomd",
                self.node.node.id,
                changes.restart_required.join(", ")
            ));
        }
        Ok((new, changes))
    }
}

/// What `new` changes against `active`, with what only a start applies in
/// `restart_required` (also process rules when the process scheduler did
/// not start).
pub fn live_changes(active: &Config, new: &Config, cpu_scheduling: bool) -> ConfigChanges {
    let mut changes = ConfigChanges::between(active, new);
    if !cpu_scheduling && crate::cpu_scheduling(new) {
        changes
            .restart_required
            .push("process rules (no job had any at start: process detection is off)".into());
    }
    changes
}

/// The composer shared between the agent and the validator it hands the
/// policy state machine (both on the control thread).
pub type SharedComposer = Arc<Mutex<Composer>>;

/// Locks `c` (a poisoned lock still holds a consistent composer: every
/// write replaces a field whole).
pub fn lock(c: &SharedComposer) -> std::sync::MutexGuard<'_, Composer> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// The answer to `policy apply` / `policy rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PolicyAnswer {
    /// "done", "refused", "lost" or "timed_out".
    pub outcome: String,
    /// The version it became ("v4").
    pub version: Option<String>,
    /// Nodes that run it.
    pub active_nodes: u32,
    /// Nodes that refused it (they keep their previous version), with why.
    pub rejected: Vec<(u16, String)>,
    /// Live nodes that did not answer in time.
    pub stragglers: Vec<u16>,
    /// The master's time from starting the rollout to its report, ms.
    pub took_ms: u32,
    /// What went wrong (refused, lost, timed out).
    pub message: Option<String>,
    /// What the new version changes on the node it was applied on.
    pub changes: Option<ConfigChanges>,
}

impl PolicyAnswer {
    /// The answer for `result`.
    pub fn from_result(result: &ApplyResult, changes: Option<ConfigChanges>) -> Self {
        let mut a = PolicyAnswer {
            changes,
            ..Default::default()
        };
        match result {
            ApplyResult::Done(r) => {
                a.outcome = "done".into();
                a.version = Some(r.version.to_string());
                a.active_nodes = r.active;
                a.rejected = r
                    .rejected
                    .iter()
                    .map(|(n, w)| (*n as u16, w.clone()))
                    .collect();
                a.stragglers = r.stragglers.iter().map(|n| *n as u16).collect();
                a.took_ms = r.took_ms;
            }
            ApplyResult::Refused(why) => {
                a.outcome = "refused".into();
                a.message = Some(why.clone());
            }
            ApplyResult::Lost { id, winner } => {
                a.outcome = "lost".into();
                a.version = Some(id.to_string());
                a.message = Some(format!(
                    "{} was dropped when a partition healed: the pool runs {} (see `policy history`)",
                    id.long(),
                    winner.long()
                ));
            }
            ApplyResult::TimedOut { id, pending } => {
                a.outcome = "timed_out".into();
                a.version = id.map(|v| v.to_string());
                a.stragglers = pending.iter().map(|n| *n as u16).collect();
                a.message = Some(format!(
                    "not active everywhere in time; nodes not running it yet: {}",
                    nodes(&a.stragglers)
                ));
            }
        }
        a
    }

    /// Whether the version runs on every live node.
    pub fn complete(&self) -> bool {
        self.outcome == "done" && self.rejected.is_empty() && self.stragglers.is_empty()
    }

    /// What `headroomctl policy apply` prints.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        match self.outcome.as_str() {
            "done" => {
                let v = self.version.as_deref().unwrap_or("?");
                s += &format!(
                    "{v} active on {} node(s) ({} ms)\n",
                    self.active_nodes, self.took_ms
                );
                for (n, why) in &self.rejected {
                    s += &format!("  node {n} refused {v} and keeps its previous version: {why}\n");
                }
                if !self.stragglers.is_empty() {
                    s += &format!("  not yet running {v}: {}\n", nodes(&self.stragglers));
                }
            }
            _ => {
                s += &format!(
                    "not applied: {}\n",
                    self.message.as_deref().unwrap_or(&self.outcome)
                );
            }
        }
        if let Some(c) = self.changes.as_ref().filter(|_| self.outcome == "done") {
            let lines = c.applied();
            if lines.is_empty() {
                s += "  no changes\n";
            }
            for l in lines {
                s += &format!("  {l}\n");
            }
        }
        s
    }
}

fn nodes(ids: &[u16]) -> String {
    ids.iter()
        .map(|n| format!("node {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One version, as `policy show` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyVersion {
    /// "v3".
    pub version: String,
    /// "v3 (term 1 of node 1)".
    pub id: String,
    /// Node it was applied on.
    pub author: u16,
    /// The author's wall clock at apply, ms since the Unix epoch.
    pub author_ms: u64,
    /// Who applied it.
    pub user: String,
    /// `--message`.
    pub message: String,
    /// "apply", "rollback to v2", "initial", "merge".
    pub kind: String,
    /// The document.
    pub document: String,
}

impl PolicyVersion {
    /// The view of `meta` with `doc`.
    pub fn new(meta: &VersionMeta, doc: &[u8]) -> Self {
        PolicyVersion {
            version: meta.id.to_string(),
            id: meta.id.long(),
            author: meta.author as u16,
            author_ms: meta.author_ms,
            user: meta.user.clone(),
            message: meta.message.clone(),
            kind: kind(Some(&meta.kind)),
            document: String::from_utf8_lossy(doc).into_owned(),
        }
    }
}

/// One line of `policy history`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyHistoryRow {
    /// "v3".
    pub version: String,
    /// Node it was applied on.
    pub author: u16,
    /// The author's wall clock, ms since the Unix epoch.
    pub time_ms: u64,
    /// Who.
    pub user: String,
    /// `--message`.
    pub message: String,
    /// What produced it.
    pub kind: String,
    /// "published", "active", "lost to v5", "failed".
    pub status: String,
}

impl PolicyHistoryRow {
    /// The row of `h`; `active` is the version this node runs.
    pub fn new(h: &HistoryEntry, active: Option<VersionId>) -> Self {
        PolicyHistoryRow {
            version: h.id.to_string(),
            author: h.author as u16,
            time_ms: h.author_ms,
            user: h.user.clone(),
            message: h.message.clone(),
            kind: kind(h.kind.as_ref()),
            status: match h.status {
                HistoryStatus::Published if Some(h.id) == active => "active".into(),
                HistoryStatus::Published => "published".into(),
                HistoryStatus::Lost { by } => format!("lost to {by}"),
                HistoryStatus::Failed => "failed (no node could stage it)".into(),
            },
        }
    }
}

fn kind(k: Option<&Kind>) -> String {
    match k {
        Some(Kind::Apply) => "apply".into(),
        Some(Kind::Rollback { to }) => format!("rollback to v{to}"),
        Some(Kind::Initial) => "initial (node file)".into(),
        Some(Kind::Merge) => "merge after a partition".into(),
        None => "unknown".into(),
    }
}

/// `policy history` as text: one line per version, newest last.
pub fn render_history(rows: &[PolicyHistoryRow]) -> String {
    if rows.is_empty() {
        return "no policy versions yet\n".into();
    }
    let mut s = format!(
        "{:<8} {:<20} {:<6} {:<10} {:<22} {:<22} {}\n",
        "VERSION", "TIME (UTC)", "NODE", "USER", "KIND", "STATUS", "MESSAGE"
    );
    for r in rows {
        s += &format!(
            "{:<8} {:<20} {:<6} {:<10} {:<22} {:<22} {}\n",
            r.version,
            utc(r.time_ms),
            r.author,
            r.user,
            r.kind,
            r.status,
            r.message
        );
    }
    s
}

/// "2026-12-02 17:05:10" for ms since the Unix epoch.
pub fn utc(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(
            || format!("{ms} ms"),
            |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_times_render_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_796_231_110_000), "2026-12-02 17:05:10");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
