//! A known-latency HTTP server and a client that times its own requests:
//! the reference the passive response-time measurement is checked against.
//!
//! [`SlowServer`] answers every HTTP/1.1 request (keep-alive or not) after
//! sleeping a fixed time, so the server-side response time is known.
//! [`get_many`] sends requests one after another (each on a new connection,
//! or all on one keep-alive connection) and records, per request, the time
//! from writing it to reading the reply's first byte: the client's view of
//! what the workers time between the request's first byte arriving and the
//! reply's first byte leaving (plus the network both ways). A system test
//! runs the server in a server's host namespace (e.g. with `lab::run_in_ns`,
//! or the `slowhttp` binary) and the client in a client namespace, then
//! compares the client's median with the job's histogram median.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes of every reply body.
pub const BODY: &[u8] = b"headroom slowhttp\n";

/// A server that answers each request after `delay` (stops on drop).
#[derive(Debug)]
pub struct SlowServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl SlowServer {
    /// Listens on `addr` (port 0: any) in the calling thread's network
    /// namespace and serves each connection on its own thread.
    pub fn start(addr: SocketAddr, delay: Duration) -> io::Result<SlowServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), served.clone());
        let thread = std::thread::Builder::new()
            .name("slowhttp".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (s, n) = (s.clone(), n.clone());
                            let _ = std::thread::Builder::new()
                                .name("slowhttp-conn".into())
                                .spawn(move || {
                                    let _ = serve(conn, delay, &s, &n);
                                });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })?;
        Ok(SlowServer {
            addr,
            stop,
            served,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request head; false on a clean end of the connection.
fn read_head(r: &mut impl BufRead) -> io::Result<bool> {
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return if first {
                Ok(false)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        first = false;
        if line == "\r\n" || line == "\n" {
            return Ok(true);
        }
    }
}

fn serve(
    conn: TcpStream,
    delay: Duration,
    stop: &AtomicBool,
    served: &AtomicU64,
) -> io::Result<()> {
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    while !stop.load(Ordering::Relaxed) && read_head(&mut r)? {
        std::thread::sleep(delay);
        // One write: the reply's first segment carries its first byte.
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
            BODY.len()
        )
        .into_bytes();
        reply.extend_from_slice(BODY);
        // Counted before the write, so a client that has read its reply
        // always sees it counted.
        served.fetch_add(1, Ordering::Relaxed);
        w.write_all(&reply)?;
    }
    Ok(())
}

/// How [`get_many`] connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    /// A new connection per request (`Connection: close`).
    PerRequest,
    /// One keep-alive connection for all requests.
    KeepAlive,
}

/// Sends `n` requests to `addr` one after another and returns each one's
/// time from writing the request to reading the reply's first byte. Stops
/// at the first error.
pub fn get_many(
    addr: SocketAddr,
    n: usize,
    how: Connections,
    timeout: Duration,
) -> io::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    let connect = || -> io::Result<(TcpStream, BufReader<TcpStream>)> {
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(timeout))?;
        let r = BufReader::new(s.try_clone()?);
        Ok((s, r))
    };
    let mut conn = None;
    for _ in 0..n {
        if conn.is_none() || how == Connections::PerRequest {
            conn = Some(connect()?);
        }
        let (w, r) = conn.as_mut().expect("connected above");
        let close = if how == Connections::PerRequest {
            "Connection: close\r\n"
        } else {
            ""
        };
        let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n{close}\r\n");
        let t0 = Instant::now();
        w.write_all(req.as_bytes())?;
        r.fill_buf()?;
        out.push(t0.elapsed());
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v
                    .trim()
                    .parse()
                    .map_err(|_| io::Error::other("bad Content-Length"))?;
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
    }
    Ok(out)
}

/// The median of `v` (None when empty).
pub fn median(v: &[Duration]) -> Option<Duration> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_with_its_delay_both_ways() {
        let srv =
            SlowServer::start("127.0.0.1:0".parse().unwrap(), Duration::from_millis(20)).unwrap();
        for how in [Connections::KeepAlive, Connections::PerRequest] {
            let t = get_many(srv.addr(), 10, how, Duration::from_secs(5)).unwrap();
            assert_eq!(t.len(), 10);
            // Never faster than the sleep; a loaded machine may be slower.
            assert!(t.iter().all(|d| *d >= Duration::from_millis(20)), "{t:?}");
            assert!(median(&t).unwrap() < Duration::from_secs(1));
        }
        assert_eq!(srv.served(), 20);
        drop(srv);
        assert_eq!(median(&[]), None);
    }
}
