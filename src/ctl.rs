//! The local control protocol between `headroomctl` and `headroomd`: one
//! request line over a Unix socket, one JSON response.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// A request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// The status document.
    Status,
    /// Re-read the config file (like SIGHUP) and say whether it was applied.
    Reload,
    /// Make `document` the pool's next policy version; answered once it is
    /// active everywhere (or with the nodes that are not).
    #[serde(rename = "policy_apply")]
    PolicyApply {
        /// The file the document was read from (named in errors).
        file: String,
        /// The policy document (TOML).
        document: String,
        /// Who applies it (for the history).
        user: String,
        /// `--message`.
        message: String,
    },
    /// Publish version `version`'s content as the next version.
    #[serde(rename = "policy_rollback")]
    PolicyRollback {
        /// The version number (`policy history` lists them).
        version: u64,
        /// Who.
        user: String,
        /// `--message`.
        message: String,
    },
    /// The active policy version, or version `version`.
    #[serde(rename = "policy_show")]
    PolicyShow {
        /// The version number (None: the active one).
        version: Option<u64>,
    },
    /// The policy history.
    #[serde(rename = "policy_history")]
    PolicyHistory,
    /// What `document` would change on this node.
    #[serde(rename = "policy_diff")]
    PolicyDiff {
        /// The file the document was read from.
        file: String,
        /// The policy document.
        document: String,
    },
    /// One entity's recorded series.
    History {
        /// JOB, job/NAME, pipe/NAME, vip/NAME or node/N.
        selector: String,
        /// Window: this far back from now, seconds.
        since_secs: u64,
        /// Step between rows, seconds.
        step_secs: u64,
    },
    /// Every trigger's state, the overlay in force and the schedule.
    Triggers,
    /// The event journal: what fired, what ran, the outcome.
    Events {
        /// Window: this far back from now, seconds.
        since_secs: u64,
    },
    /// Per job distributions, time above/below policy, squeezed periods.
    Report {
        /// Window, seconds back from now.
        since_secs: u64,
        /// Tier read.
        #[serde(default)]
        resolution: crate::history::Resolution,
    },
    /// Replays recorded demand under a policy.
    #[serde(rename = "what_if")]
    WhatIf {
        /// The policy file (None: the policy in force).
        file: Option<String>,
        /// Its content.
        document: Option<String>,
        /// Nodes taken out of the pool.
        without_nodes: Vec<u32>,
        /// Window, seconds back from now.
        since_secs: u64,
        /// Tier read.
        #[serde(default)]
        resolution: crate::history::Resolution,
    },
    /// A policy from the observed use.
    Suggest {
        /// Window, seconds back from now.
        since_secs: u64,
        /// Options.
        options: headroom_history::suggest::SuggestOptions,
        /// Tier read.
        #[serde(default)]
        resolution: crate::history::Resolution,
    },
}

impl Request {
    /// Whether the request changes the daemon (only root may send it; the
    /// `[control] group` may send the others).
    pub fn mutates(&self) -> bool {
        match self {
            Request::Status
            | Request::Triggers
            | Request::Events { .. }
            | Request::PolicyShow { .. }
            | Request::PolicyHistory
            | Request::PolicyDiff { .. }
            | Request::History { .. }
            | Request::Report { .. }
            | Request::WhatIf { .. }
            | Request::Suggest { .. } => false,
            Request::Reload | Request::PolicyApply { .. } | Request::PolicyRollback { .. } => true,
        }
    }

    /// The command's name, as `headroomctl` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Reload => "reload",
            Request::PolicyApply { .. } => "policy apply",
            Request::PolicyRollback { .. } => "policy rollback",
            Request::PolicyShow { .. } => "policy show",
            Request::PolicyHistory => "policy history",
            Request::PolicyDiff { .. } => "policy diff",
            Request::History { .. } => "history",
            Request::Triggers => "triggers",
            Request::Events { .. } => "events",
            Request::Report { .. } => "report",
            Request::WhatIf { .. } => "what-if",
            Request::Suggest { .. } => "suggest",
        }
    }

    /// How long the daemon may take to answer: a rollout waits for every
    /// node (the policy's apply timeout is 10 s).
    pub fn answer_within(&self) -> Duration {
        match self {
            Request::PolicyApply { .. } | Request::PolicyRollback { .. } => Duration::from_secs(15),
            // Weeks of points read and replayed.
            Request::Report { .. } | Request::WhatIf { .. } | Request::Suggest { .. } => {
                Duration::from_secs(60)
            }
            _ => Duration::from_secs(8),
        }
    }
}

/// A response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Response {
    /// Status document.
    Status(Box<crate::status::Status>),
    /// Reload applied: what changed, and what waits for a restart.
    Reloaded {
        /// The difference between the old and the new configuration.
        changes: headroom_config::ConfigChanges,
    },
    /// A policy apply or rollback finished.
    #[serde(rename = "policy_applied")]
    PolicyApplied(headroom_agent::policy::PolicyAnswer),
    /// A policy version.
    #[serde(rename = "policy_version")]
    PolicyVersion(headroom_agent::policy::PolicyVersion),
    /// The policy history, oldest first.
    #[serde(rename = "policy_history")]
    PolicyHistory {
        /// One row per version.
        rows: Vec<headroom_agent::policy::PolicyHistoryRow>,
    },
    /// What a policy document would change on this node.
    #[serde(rename = "policy_diff")]
    PolicyDiff {
        /// The changes.
        changes: headroom_config::ConfigChanges,
    },
    /// Recorded series.
    History(Box<headroom_history::query::HistoryTable>),
    /// A report.
    Report(Box<headroom_history::report::Report>),
    /// A what-if replay.
    #[serde(rename = "what_if")]
    WhatIf(Box<headroom_history::whatif::WhatIfReport>),
    /// A suggested policy.
    Suggestion {
        /// Per job, with each value's basis.
        suggestion: Box<headroom_history::suggest::Suggestion>,
        /// The policy in force with the suggestion merged in.
        policy: String,
    },
    /// The automation's state.
    Triggers(Box<headroom_agent::automation::AutomationStatus>),
    /// Journal entries, oldest first.
    Events {
        /// The node that evaluates for the pool (its journal has the
        /// firings and the actions' outcomes).
        master: Option<u32>,
        /// This node.
        node: u32,
        /// The entries.
        rows: Vec<headroom_agent::automation::EventRow>,
    },
    /// The request failed.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// Errors talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The socket could not be reached (is headroomd running?).
    #[error("connecting to {path}: {source} (is headroomd running?)")]
    Connect {
        /// The socket path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange failed midway.
    #[error("talking to headroomd: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon's answer was not understood.
    #[error("unexpected answer from headroomd: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Sends one request and reads the response.
pub fn call(socket: &Path, req: &Request) -> Result<Response, CtlError> {
    let mut s = UnixStream::connect(socket).map_err(|source| CtlError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    s.set_read_timeout(Some(req.answer_within() + Duration::from_secs(2)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut resp = String::new();
    BufReader::new(s).read_line(&mut resp)?;
    Ok(serde_json::from_str(&resp)?)
}

/// Longest request line the daemon reads; longer ones are answered with an
/// error and the connection is closed.
/// (A policy document may be 256 KiB, JSON-escaped in the request.)
pub const MAX_REQUEST: u64 = 1024 * 1024;

/// How long a connection may take to send its request line (or to read the
/// response) before it is closed.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; more are answered with an error at once.
pub const MAX_CLIENTS: usize = 16;

/// Mode of the control socket, set explicitly (not from the umask): only
/// the daemon's user (root) may connect.
pub const SOCKET_MODE: u32 = 0o600;

/// Mode of the control socket with a `[control] group`: its members may
/// connect (and run read-only commands).
pub const GROUP_SOCKET_MODE: u32 = 0o660;

/// Binds the control socket at `path`: [`SOCKET_MODE`], or
/// [`GROUP_SOCKET_MODE`] owned by `group` (a numeric group id).
pub fn bind(path: &Path, group: Option<u32>) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    let mode = match group {
        Some(gid) => {
            std::os::unix::fs::chown(path, None, Some(gid))?;
            GROUP_SOCKET_MODE
        }
        None => SOCKET_MODE,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Whether the peer of `conn` may send `req`: anyone who could connect may
/// read; changing the daemon takes root (or the daemon's own user).
fn allowed(conn: &UnixStream, req: &Request) -> Result<(), String> {
    if !req.mutates() {
        return Ok(());
    }
    let uid = nix::sys::socket::getsockopt(conn, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| format!("reading the caller's credentials: {e}"))?
        .uid();
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return Ok(());
    }
    tracing::warn!(
        uid,
        command = req.name(),
        "control request refused: not root"
    );
    Err(format!(
        "`{}` changes headroomd: run it as root (uid {uid} may only read, e.g. `status`)",
        req.name()
    ))
}

/// Serves `listener` on a thread of its own, each connection on a thread of
/// its own (at most [`MAX_CLIENTS`]) so an idle or slow client delays
/// nobody else: one request line of at most [`MAX_REQUEST`] bytes within
/// [`CONNECTION_TIMEOUT`], answered by `handle`.
pub fn serve(
    listener: std::os::unix::net::UnixListener,
    handle: impl Fn(Request) -> Response + Send + Sync + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let handle = Arc::new(handle);
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("hr-ctl".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(CONNECTION_TIMEOUT));
                let _ = conn.set_write_timeout(Some(CONNECTION_TIMEOUT));
                if active.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                    active.fetch_sub(1, Ordering::AcqRel);
                    respond(
                        &mut conn,
                        &Response::Error {
                            message: format!("too many control clients (at most {MAX_CLIENTS})"),
                        },
                    );
                    continue;
                }
                let (h, a) = (handle.clone(), active.clone());
                let spawned = std::thread::Builder::new()
                    .name("hr-ctl-conn".into())
                    .spawn(move || {
                        serve_one(conn, &*h);
                        a.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })
}

fn respond(conn: &mut UnixStream, resp: &Response) {
    let mut out = serde_json::to_string(resp).unwrap_or_else(|_| "{}".into());
    out.push('\n');
    let _ = conn.write_all(out.as_bytes());
}

fn serve_one(mut conn: UnixStream, handle: &dyn Fn(Request) -> Response) {
    use std::io::Read;
    let Ok(reader) = conn.try_clone() else {
        return;
    };
    let mut line = String::new();
    // One byte more than allowed tells an oversize request from a full one.
    let mut bounded = BufReader::new(reader.take(MAX_REQUEST + 1));
    if bounded.read_line(&mut line).is_err() {
        return;
    }
    let resp = if line.len() as u64 > MAX_REQUEST {
        Response::Error {
            message: format!("request longer than {MAX_REQUEST} bytes"),
        }
    } else {
        match serde_json::from_str::<Request>(&line) {
            Ok(req) => match allowed(&conn, &req) {
                Ok(()) => handle(req),
                Err(message) => Response::Error { message },
            },
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
        }
    };
    respond(&mut conn, &resp);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(dir: &tempfile::TempDir) -> std::path::PathBuf {
        let path = dir.path().join("ctl.sock");
        let l = bind(&path, None).unwrap();
        serve(l, |req| match req {
            Request::Reload => Response::Reloaded {
                changes: Default::default(),
            },
            _ => Response::Error {
                message: "status".into(),
            },
        })
        .unwrap();
        path
    }

    #[test]
    fn socket_mode_is_explicit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // A permissive umask must not leak into the socket's mode.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let path = serving(&dir);
        nix::sys::stat::umask(old);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, SOCKET_MODE);
    }

    #[test]
    fn idle_clients_do_not_block_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = serving(&dir);
        // Three connections that never send a request.
        let idle: Vec<UnixStream> = (0..3)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let t = std::time::Instant::now();
        assert!(matches!(
            call(&path, &Request::Reload).unwrap(),
            Response::Reloaded { .. }
        ));
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "answered after {:?}",
            t.elapsed()
        );
        // An idle connection is closed after the timeout.
        let mut s = &idle[0];
        s.set_read_timeout(Some(CONNECTION_TIMEOUT * 2)).unwrap();
        let mut buf = [0u8; 1];
        use std::io::Read;
        assert_eq!(s.read(&mut buf).unwrap(), 0, "idle connection not closed");
    }

    #[test]
    fn oversize_and_bad_requests_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = serving(&dir);
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // No newline within the bound: refused without reading it all.
        let big = vec![b'x'; MAX_REQUEST as usize + 10];
        let _ = s.write_all(&big);
        let mut resp = String::new();
        BufReader::new(&s).read_line(&mut resp).unwrap();
        assert!(resp.contains("request longer than"), "{resp}");
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{\"cmd\":\"nope\"}\n").unwrap();
        let mut resp = String::new();
        BufReader::new(&s).read_line(&mut resp).unwrap();
        assert!(resp.contains("bad request"), "{resp}");
    }
}
