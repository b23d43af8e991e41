//! The console's view of the daemon: each call is a control request sent on
//! the same channel as the control socket's, answered by the control thread
//! (history queries by their own thread), so the console never touches the
//! agent or the dataplane.

use std::time::Duration;

use crossbeam_channel::Sender;
use headroom_console::{Backend, BackendError};

use crate::{
    ctl::{Request, Response},
    history::Resolution,
};

/// A control request with the channel its answer comes back on.
pub type CtlMsg = (Request, Sender<Response>);

/// [`Backend`] over the control thread's request channel.
pub struct CtlBackend {
    tx: Sender<CtlMsg>,
}

impl CtlBackend {
    /// Requests go to `tx`.
    pub fn new(tx: Sender<CtlMsg>) -> CtlBackend {
        CtlBackend { tx }
    }

    fn ask(&self, req: Request) -> Result<Response, BackendError> {
        let (rtx, rrx) = crossbeam_channel::bounded(1);
        let within = req.answer_within();
        self.tx
            .send((req, rtx))
            .map_err(|_| "headroomd is stopping".to_string())?;
        match rrx.recv_timeout(within) {
            Ok(Response::Error { message }) => Err(message),
            Ok(r) => Ok(r),
            Err(_) => Err("headroomd did not answer in time".into()),
        }
    }
}

fn resolution(since: Duration) -> Resolution {
    // One node's seconds for short windows; the pool's minutes beyond.
    if since <= Duration::from_secs(3600) {
        Resolution::Second
    } else {
        Resolution::Minute
    }
}

fn unexpected(r: Response) -> BackendError {
    format!("unexpected answer from headroomd: {r:?}")
}

impl Backend for CtlBackend {
    fn events(&self, since: Duration) -> Result<Vec<headroom_history::EventRow>, BackendError> {
        match self.ask(Request::Events {
            since_secs: since.as_secs(),
        })? {
            Response::Events { rows, .. } => Ok(rows),
            r => Err(unexpected(r)),
        }
    }

    fn status(&self) -> Result<headroom_agent::status::Status, BackendError> {
        match self.ask(Request::Status)? {
            Response::Status(s) => Ok(*s),
            r => Err(unexpected(r)),
        }
    }

    fn history(
        &self,
        selector: &str,
        since: Duration,
        step: Duration,
    ) -> Result<headroom_history::query::HistoryTable, BackendError> {
        match self.ask(Request::History {
            selector: selector.into(),
            since_secs: since.as_secs(),
            step_secs: step.as_secs().max(1),
        })? {
            Response::History(t) => Ok(*t),
            r => Err(unexpected(r)),
        }
    }

    fn report(&self, since: Duration) -> Result<headroom_history::report::Report, BackendError> {
        match self.ask(Request::Report {
            since_secs: since.as_secs(),
            resolution: resolution(since),
        })? {
            Response::Report(r) => Ok(*r),
            r => Err(unexpected(r)),
        }
    }

    fn policy_show(
        &self,
        version: Option<u64>,
    ) -> Result<headroom_agent::policy::PolicyVersion, BackendError> {
        match self.ask(Request::PolicyShow { version })? {
            Response::PolicyVersion(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }

    fn policy_history(
        &self,
    ) -> Result<Vec<headroom_agent::policy::PolicyHistoryRow>, BackendError> {
        match self.ask(Request::PolicyHistory)? {
            Response::PolicyHistory { rows } => Ok(rows),
            r => Err(unexpected(r)),
        }
    }

    fn policy_diff(
        &self,
        file: &str,
        document: &str,
    ) -> Result<headroom_config::ConfigChanges, BackendError> {
        match self.ask(Request::PolicyDiff {
            file: file.into(),
            document: document.into(),
        })? {
            Response::PolicyDiff { changes } => Ok(changes),
            r => Err(unexpected(r)),
        }
    }

    fn policy_apply(
        &self,
        file: &str,
        document: &str,
        user: &str,
        message: &str,
    ) -> Result<headroom_agent::policy::PolicyAnswer, BackendError> {
        match self.ask(Request::PolicyApply {
            file: file.into(),
            document: document.into(),
            user: user.into(),
            message: message.into(),
        })? {
            Response::PolicyApplied(a) => Ok(a),
            r => Err(unexpected(r)),
        }
    }

    fn policy_rollback(
        &self,
        version: u64,
        user: &str,
        message: &str,
    ) -> Result<headroom_agent::policy::PolicyAnswer, BackendError> {
        match self.ask(Request::PolicyRollback {
            version,
            user: user.into(),
            message: message.into(),
        })? {
            Response::PolicyApplied(a) => Ok(a),
            r => Err(unexpected(r)),
        }
    }

    fn what_if(
        &self,
        document: Option<&str>,
        without_nodes: &[u32],
        since: Duration,
    ) -> Result<headroom_history::whatif::WhatIfReport, BackendError> {
        match self.ask(Request::WhatIf {
            file: document.map(|_| headroom_console::pages::POLICY_FILE.to_string()),
            document: document.map(str::to_string),
            without_nodes: without_nodes.to_vec(),
            since_secs: since.as_secs(),
            resolution: resolution(since),
        })? {
            Response::WhatIf(w) => Ok(*w),
            r => Err(unexpected(r)),
        }
    }

    fn suggest(
        &self,
        since: Duration,
        options: &headroom_history::suggest::SuggestOptions,
    ) -> Result<(headroom_history::suggest::Suggestion, String), BackendError> {
        match self.ask(Request::Suggest {
            since_secs: since.as_secs(),
            options: options.clone(),
            resolution: resolution(since),
        })? {
            Response::Suggestion { suggestion, policy } => Ok((*suggestion, policy)),
            r => Err(unexpected(r)),
        }
    }
}
