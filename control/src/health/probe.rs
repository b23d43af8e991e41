//! Blocking health probes run on helper threads.
//!
//! The control loop submits [`ProbeRequest`]s and collects [`ProbeResult`]s
//! without blocking; a small fixed pool of threads performs the connects
//! (each bounded by the probe's timeout), so one hanging instance cannot
//! delay the others' probes beyond the pool size.

use headroom_clock::Timestamp;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use thiserror::Error;

/// What to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// TCP connect.
    Tcp,
    /// HTTP/1.0 GET; a 2xx status line is success.
    Http {
        /// Request path.
        path: String,
        /// Host header value.
        host: String,
    },
}

/// One probe to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    /// Caller token, echoed in the result.
    pub token: u64,
    /// Target address.
    pub addr: SocketAddr,
    /// Probe kind.
    pub kind: ProbeKind,
    /// Overall deadline of the probe.
    pub timeout: Duration,
}

/// Why a probe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProbeFailure {
    /// The deadline passed.
    #[error("probe timed out")]
    Timeout,
    /// Connection refused or unreachable.
    #[error("connect failed: {0:?}")]
    Connect(std::io::ErrorKind),
    /// Read or write error after connecting.
    #[error("i/o error: {0:?}")]
    Io(std::io::ErrorKind),
    /// The reply is not an HTTP status line.
    #[error("malformed HTTP response")]
    BadResponse,
    /// HTTP status outside 2xx.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The probe never ran: the prober's queue was full or its threads are
    /// gone (reported by the caller that tried to submit it).
    #[error("probe not started (prober busy or stopped)")]
    NotStarted,
}

/// Result of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// Token of the request.
    pub token: u64,
    /// Success or the failure reason.
    pub outcome: Result<(), ProbeFailure>,
}

/// Error submitting a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SubmitError {
    /// The request queue is full.
    #[error("probe queue full")]
    Full,
    /// The helper threads are gone.
    #[error("prober stopped")]
    Stopped,
}

/// Status code of an HTTP/1.x status line at the start of `buf`.
pub fn parse_status_line(buf: &[u8]) -> Result<u16, ProbeFailure> {
    let line_end = buf
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or(ProbeFailure::BadResponse)?;
    let line = &buf[..line_end];
    let rest = line
        .strip_prefix(b"HTTP/1.")
        .ok_or(ProbeFailure::BadResponse)?;
    match rest {
        [minor, b' ', a, b, c, tail @ ..]
            if minor.is_ascii_digit()
                && [a, b, c].iter().all(|d| d.is_ascii_digit())
                && (tail.is_empty() || tail[0] == b' ') =>
        {
            Ok(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => Err(ProbeFailure::BadResponse),
    }
}

fn io_failure(e: &std::io::Error) -> ProbeFailure {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ProbeFailure::Timeout,
        k => ProbeFailure::Io(k),
    }
}

/// Runs one probe on the calling thread (blocking, bounded by its timeout).
pub fn run_probe(req: &ProbeRequest) -> Result<(), ProbeFailure> {
    let deadline = Timestamp::now() + req.timeout;
    let remaining = || {
        deadline
            .checked_duration_since(Timestamp::now())
            .filter(|d| !d.is_zero())
            .ok_or(ProbeFailure::Timeout)
    };
    let mut s =
        TcpStream::connect_timeout(&req.addr, remaining()?).map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ProbeFailure::Timeout,
            k => ProbeFailure::Connect(k),
        })?;
    let ProbeKind::Http { path, host } = &req.kind else {
        return Ok(());
    };
    let _ = s.set_nodelay(true);
    s.set_write_timeout(Some(remaining()?))
        .map_err(|e| io_failure(&e))?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: headroom-health\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .map_err(|e| io_failure(&e))?;
    let mut buf = [0u8; 512];
    let mut got = 0;
    loop {
        s.set_read_timeout(Some(remaining()?))
            .map_err(|e| io_failure(&e))?;
        let n = s.read(&mut buf[got..]).map_err(|e| io_failure(&e))?;
        got += n;
        if buf[..got].windows(2).any(|w| w == b"\r\n") {
            break;
        }
        if n == 0 || got == buf.len() {
            return Err(ProbeFailure::BadResponse);
        }
    }
    match parse_status_line(&buf[..got])? {
        200..=299 => Ok(()),
        code => Err(ProbeFailure::Status(code)),
    }
}

/// Pool of probe threads.
#[derive(Debug)]
pub struct Prober {
    requests: Option<SyncSender<ProbeRequest>>,
    results: Receiver<ProbeResult>,
    threads: Vec<JoinHandle<()>>,
}

impl Prober {
    /// Starts `threads` helper threads (at least one) with a request queue of
    /// `queue` entries.
    pub fn spawn(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (req_tx, req_rx) = mpsc::sync_channel::<ProbeRequest>(queue.max(1));
        let (res_tx, res_rx) = mpsc::channel();
        let req_rx = Arc::new(Mutex::new(req_rx));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&req_rx);
            let tx = res_tx.clone();
            let h = std::thread::Builder::new()
                .name(format!("health-probe-{i}"))
                .spawn(move || loop {
                    let next = rx.lock().map(|r| r.recv());
                    let Ok(Ok(req)) = next else {
                        return;
                    };
                    let outcome = run_probe(&req);
                    if tx
                        .send(ProbeResult {
                            token: req.token,
                            outcome,
                        })
                        .is_err()
                    {
                        return;
                    }
                })?;
            handles.push(h);
        }
        Ok(Prober {
            requests: Some(req_tx),
            results: res_rx,
            threads: handles,
        })
    }

    /// Queues a probe without blocking.
    pub fn submit(&self, req: ProbeRequest) -> Result<(), SubmitError> {
        let tx = self.requests.as_ref().ok_or(SubmitError::Stopped)?;
        tx.try_send(req).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Full,
            TrySendError::Disconnected(_) => SubmitError::Stopped,
        })
    }

    /// A finished probe, if any (never blocks).
    pub fn try_recv(&self) -> Option<ProbeResult> {
        self.results.try_recv().ok()
    }

    /// Waits up to `timeout` for a finished probe (for tests and shutdown).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<ProbeResult> {
        self.results.recv_timeout(timeout).ok()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        // Closing the queue stops the threads once their current probe ends
        // (bounded by its timeout).
        self.requests = None;
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}
