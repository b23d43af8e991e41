//! Thin UDP driver around [`Exchange`]: a non-blocking socket, fed into the
//! state machine, and the state machine's transmits written out.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{Event, Exchange};

/// Largest datagram we accept (bigger ones are truncated by the kernel and
/// then fail authentication).
const RECV_BUF: usize = 65_536;

/// Shortest pool key accepted by [`load_key`].
pub const MIN_KEY_LEN: usize = 16;

/// Reads the pool key from `path` (raw bytes; one trailing newline is
/// stripped so `openssl rand -hex 32 > key` works). Rejects short keys.
pub fn load_key(path: &std::path::Path) -> io::Result<Vec<u8>> {
    let mut key = std::fs::read(path)?;
    if key.last() == Some(&b'\n') {
        key.pop();
        if key.last() == Some(&b'\r') {
            key.pop();
        }
    }
    if key.len() < MIN_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "pool key in {} is {} bytes, need at least {MIN_KEY_LEN}",
                path.display(),
                key.len()
            ),
        ));
    }
    Ok(key)
}

/// A boot epoch that grows across restarts: wall-clock seconds since the
/// Unix epoch (as u32, valid until 2106).
///
/// Blocks until the next whole second so that a process restarted within
/// the same second still gets a strictly larger epoch than its predecessor
/// (which only started sending after that boundary). A node whose clock
/// steps back between restarts is rejected as a replay by its peers until
/// its clock passes the previous epoch.
pub fn boot_epoch() -> u32 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    std::thread::sleep(Duration::from_secs(secs + 1).saturating_sub(since));
    secs.min(u64::from(u32::MAX)).max(1) as u32
}

/// Counters of the driver (socket level; protocol counters live in
/// [`super::ExchangeStats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// `send_to` failures other than `WouldBlock` (datagram dropped).
    pub send_errors: u64,
    /// Datagrams not sent because the socket buffer was full.
    pub send_would_block: u64,
    /// `recv_from` failures other than `WouldBlock`.
    pub recv_errors: u64,
}

/// Owns the socket and the state machine.
#[derive(Debug)]
pub struct UdpExchange {
    socket: UdpSocket,
    exchange: Exchange,
    buf: Vec<u8>,
    stats: UdpStats,
}

impl UdpExchange {
    /// Binds `bind` (non-blocking) and wraps `exchange`.
    pub fn bind(bind: SocketAddr, exchange: Exchange) -> io::Result<Self> {
        let socket = UdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket,
            exchange,
            buf: vec![0; RECV_BUF],
            stats: UdpStats::default(),
        })
    }

    /// Local socket address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The state machine (for `entries`, `set_local`, `register`, ...).
    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    /// Mutable access to the state machine.
    pub fn exchange_mut(&mut self) -> &mut Exchange {
        &mut self.exchange
    }

    /// Driver counters.
    pub fn stats(&self) -> &UdpStats {
        &self.stats
    }

    /// One non-blocking pass: drain the socket, run due timers, send, and
    /// return the events produced. Returns how long the caller may sleep
    /// before the next pass (until the state machine's next timeout).
    pub fn poll(&mut self, now: Instant, events: &mut Vec<Event>) -> Duration {
        loop {
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    // Drops are counted inside the state machine.
                    if let Err(e) = self.exchange.handle_datagram(now, from, &self.buf[..n]) {
                        tracing::trace!(%from, error = %e, "exchange datagram dropped");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP port unreachable from a dead peer surfaces here on Linux.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => {
                    self.stats.recv_errors += 1;
                    tracing::debug!(error = %e, "exchange recv failed");
                    break;
                }
            }
        }
        self.exchange.handle_timeout(now);
        self.flush();
        while let Some(ev) = self.exchange.poll_event() {
            events.push(ev);
        }
        self.exchange
            .poll_timeout()
            .map_or(Duration::from_millis(100), |t| {
                t.saturating_duration_since(now)
            })
    }

    /// Sends everything queued by the state machine.
    pub fn flush(&mut self) {
        while let Some(t) = self.exchange.poll_transmit() {
            match self.socket.send_to(&t.bytes, t.dst) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.send_would_block += 1;
                }
                Err(e) => {
                    self.stats.send_errors += 1;
                    tracing::debug!(dst = %t.dst, error = %e, "exchange send failed");
                }
            }
        }
    }

    /// Announces a graceful leave and flushes it.
    pub fn leave(&mut self, now: Instant) {
        self.exchange.leave(now);
        self.flush();
    }

    /// Blocks until the socket is readable or `timeout` passes; a daemon
    /// that has its own poll loop registers [`Self::raw_fd`] instead.
    pub fn wait(&self, timeout: Duration) -> io::Result<()> {
        use std::os::fd::AsFd;
        let fd = self.socket.as_fd();
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        let ms = timeout.as_millis().min(u128::from(u16::MAX)) as u16;
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// Raw socket fd, for integration into an external poll loop.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.socket.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ExchangeConfig, Registration};
    use super::*;

    /// Three instances on 127.0.0.1 with distinct ports converge on each
    /// other's entries, then a graceful leave is seen by the others.
    #[test]
    fn key_loading() {
        let dir = std::env::temp_dir().join(format!("hr-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("key");
        std::fs::write(&p, b"0123456789abcdef0123\n").unwrap();
        assert_eq!(load_key(&p).unwrap(), b"0123456789abcdef0123");
        std::fs::write(&p, b"short\n").unwrap();
        assert_eq!(load_key(&p).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(load_key(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(boot_epoch() > 1_700_000_000);
    }

    #[test]
    fn three_nodes_over_loopback() {
        let start = Instant::now();
        let sockets: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
        drop(sockets);
        let mut nodes: Vec<UdpExchange> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut cfg = ExchangeConfig::new(i as u32 + 1, 1, *a);
                cfg.tick = Duration::from_millis(20);
                cfg.seeds = vec![addrs[0]];
                let mut ex = Exchange::new(cfg, b"pool key", start);
                ex.register(
                    7,
                    Registration {
                        period_ticks: 1,
                        max_size: 8,
                        flags: 0,
                    },
                )
                .unwrap();
                ex.set_local(start, 7, &(i as u64 * 100).to_be_bytes())
                    .unwrap();
                UdpExchange::bind(*a, ex).unwrap()
            })
            .collect();
        let converged = |nodes: &[UdpExchange]| {
            nodes.iter().all(|n| {
                let sum: u64 = n
                    .exchange()
                    .entries(7)
                    .map(|e| u64::from_be_bytes(e.data.try_into().unwrap()))
                    .sum();
                n.exchange().live_nodes().len() == 3 && sum == 300
            })
        };
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !converged(&nodes) {
            assert!(Instant::now() < deadline, "no convergence over UDP");
            for n in nodes.iter_mut() {
                n.poll(Instant::now(), &mut events);
            }
            nodes[0].wait(Duration::from_millis(2)).unwrap();
        }
        assert!(events.contains(&Event::Joined(1)));
        let leaver = nodes.pop().unwrap();
        let mut leaver = leaver;
        leaver.leave(Instant::now());
        events.clear();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !nodes
            .iter()
            .all(|n| n.exchange().live_nodes() == vec![1, 2])
        {
            assert!(Instant::now() < deadline, "leave not seen over UDP");
            for n in nodes.iter_mut() {
                n.poll(Instant::now(), &mut events);
            }
            nodes[0].wait(Duration::from_millis(2)).unwrap();
        }
        assert!(events.contains(&Event::Left(3)));
        assert!(!events.iter().any(|e| matches!(e, Event::Failed(_))));
        for n in &nodes {
            assert_eq!(n.exchange().stats().bad_mac, 0);
        }
    }
}
