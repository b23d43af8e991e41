//! What the console asks of headroomd. The daemon implements it over the
//! same request channel as the control socket, so the console thread never
//! touches the dataplane or the agent directly; tests implement it with
//! fixed data.

use std::time::Duration;

use headroom_agent::{
    policy::{PolicyAnswer, PolicyHistoryRow, PolicyVersion},
    status::Status,
};
use headroom_config::ConfigChanges;
use headroom_history::{
    query::HistoryTable,
    report::Report,
    suggest::{SuggestOptions, Suggestion},
    whatif::WhatIfReport,
};

/// A failed request: the daemon's message, shown to the operator as is.
pub type BackendError = String;

/// The daemon, as the console sees it. Every call blocks (the console runs
/// it on a blocking thread) and answers within the control protocol's time.
pub trait Backend: Send + Sync + 'static {
    /// This node's status document (with the pool's summaries).
    fn status(&self) -> Result<Status, BackendError>;
    /// One entity's recorded series (`job/NAME`, `pipe/NAME`, `vip/NAME`, `node/N`).
    fn history(
        &self,
        selector: &str,
        since: Duration,
        step: Duration,
    ) -> Result<HistoryTable, BackendError>;
    /// The per-job report over `since`.
    fn report(&self, since: Duration) -> Result<Report, BackendError>;
    /// The active policy version, or version `version`.
    fn policy_show(&self, version: Option<u64>) -> Result<PolicyVersion, BackendError>;
    /// The policy history, oldest first.
    fn policy_history(&self) -> Result<Vec<PolicyHistoryRow>, BackendError>;
    /// The trigger journal over `since`, oldest first (`headroomctl events`).
    fn events(&self, since: Duration) -> Result<Vec<headroom_history::EventRow>, BackendError>;
    /// What `document` would change (errors name `file:line`).
    fn policy_diff(&self, file: &str, document: &str) -> Result<ConfigChanges, BackendError>;
    /// Applies `document` to the pool; answered once every node runs it.
    fn policy_apply(
        &self,
        file: &str,
        document: &str,
        user: &str,
        message: &str,
    ) -> Result<PolicyAnswer, BackendError>;
    /// Publishes version `version`'s content again.
    fn policy_rollback(
        &self,
        version: u64,
        user: &str,
        message: &str,
    ) -> Result<PolicyAnswer, BackendError>;
    /// Replays recorded demand under `document` (None: the policy in force)
    /// without `without_nodes`.
    fn what_if(
        &self,
        document: Option<&str>,
        without_nodes: &[u32],
        since: Duration,
    ) -> Result<WhatIfReport, BackendError>;
    /// A policy from the observed use: the suggestion and the merged document.
    fn suggest(
        &self,
        since: Duration,
        options: &SuggestOptions,
    ) -> Result<(Suggestion, String), BackendError>;
}
