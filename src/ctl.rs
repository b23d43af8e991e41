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
}

/// A response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Response {
    /// Status document.
    Status(Box<crate::status::Status>),
    /// Reload applied.
    Reloaded,
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
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut resp = String::new();
    BufReader::new(s).read_line(&mut resp)?;
    Ok(serde_json::from_str(&resp)?)
}
