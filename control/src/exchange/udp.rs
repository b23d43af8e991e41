//! The exchange's I/O: a non-blocking UDP socket ([`ExchangeSocket`]) whose
//! datagrams are fed into the state machine and which writes its transmits
//! out, the pool key, the boot epoch, and [`UdpExchange`], the two together
//! for an exchange run on its own.

use headroom_clock::{Timestamp, WallTime};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use super::guard::{Guard, GuardConfig, GuardStats};
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
    let since = WallTime::now().since_unix_epoch();
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

/// The exchange's non-blocking UDP socket: what a driver needs to move
/// datagrams between the network and an [`Exchange`] (or anything that
/// owns one, like the daemon's agent).
#[derive(Debug)]
pub struct ExchangeSocket {
    socket: UdpSocket,
    buf: Vec<u8>,
    stats: UdpStats,
}

impl ExchangeSocket {
    /// Binds `bind`, non-blocking.
    pub fn bind(bind: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket,
            buf: vec![0; RECV_BUF],
            stats: UdpStats::default(),
        })
    }

    /// Local socket address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Socket counters.
    pub fn stats(&self) -> &UdpStats {
        &self.stats
    }

    /// Hands every datagram waiting in the socket to `handle`, without
    /// blocking.
    pub fn receive(&mut self, mut handle: impl FnMut(SocketAddr, &[u8])) {
        loop {
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, from)) => handle(from, &self.buf[..n]),
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
    }

    /// Sends one datagram (a full socket buffer drops it, counted).
    pub fn send(&mut self, dst: SocketAddr, bytes: &[u8]) {
        match self.socket.send_to(bytes, dst) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.stats.send_would_block += 1;
            }
            Err(e) => {
                self.stats.send_errors += 1;
                tracing::debug!(%dst, error = %e, "exchange send failed");
            }
        }
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

    /// Moves receiving to a thread of its own ([`Receiver`]): the socket is
    /// drained as fast as datagrams arrive, pre-filtered by a [`Guard`], and
    /// what passes is queued for the owner. This socket keeps sending.
    pub fn spawn_receiver(&self, guard: GuardConfig, queue: usize) -> io::Result<Receiver> {
        Receiver::spawn(self.socket.try_clone()?, guard, queue)
    }
}

/// Receive buffer asked for on the exchange socket (`SO_RCVBUFFORCE`, or
/// `SO_RCVBUF` capped by `net.core.rmem_max` without `CAP_NET_ADMIN`): about
/// 40 ms of a 100k datagrams/s flood, so a scheduling hiccup of the receive
/// thread does not overflow it.
pub const RECEIVE_BUFFER: usize = 8 << 20;

/// Datagrams taken per `recvmmsg` call.
const BATCH: usize = 64;
/// Largest datagram the receive thread keeps (bigger ones are truncated and
/// rejected as oversize).
const SLOT: usize = 2048;

/// What the receive thread counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiverStats {
    /// Pre-filter verdicts.
    pub guard: GuardStats,
    /// Datagrams the kernel dropped because the receive buffer was full
    /// (`SO_RXQ_OVFL`; counted when the next datagram arrives).
    pub kernel_drops: u64,
    /// Datagrams that passed the pre-filter but found the queue to the
    /// owner full.
    pub queue_full: u64,
    /// `recvmmsg` failures other than `WouldBlock`.
    pub recv_errors: u64,
    /// Receive buffer the kernel granted, in bytes.
    pub receive_buffer: u64,
}

#[derive(Debug, Default)]
struct Shared {
    /// New pool sources for the guard, taken by the thread.
    pool: Option<Vec<SocketAddr>>,
    stats: ReceiverStats,
}

/// The exchange's receive thread: drains the socket in batches, rejects
/// before the MAC what cannot be ours ([`Guard`]), and queues the rest
/// (source, bytes) for the thread that owns the [`Exchange`].
#[derive(Debug)]
pub struct Receiver {
    shared: std::sync::Arc<std::sync::Mutex<Shared>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    rx: crossbeam_channel::Receiver<(SocketAddr, Vec<u8>)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn spawn(socket: UdpSocket, cfg: GuardConfig, queue: usize) -> io::Result<Self> {
        use nix::sys::socket::{getsockopt, setsockopt, sockopt};
        use std::sync::{atomic::AtomicBool, Arc, Mutex};
        if setsockopt(&socket, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
            setsockopt(&socket, sockopt::RcvBuf, &RECEIVE_BUFFER).map_err(io::Error::from)?;
        }
        setsockopt(&socket, sockopt::RxqOvfl, &1).map_err(io::Error::from)?;
        let granted = getsockopt(&socket, sockopt::RcvBuf).map_err(io::Error::from)?;
        let shared = Arc::new(Mutex::new(Shared {
            pool: None,
            stats: ReceiverStats {
                receive_buffer: granted as u64,
                ..ReceiverStats::default()
            },
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::bounded(queue.max(1));
        let (sh, st) = (shared.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("exchange-rx".into())
            .spawn(move || receive_loop(&socket, cfg, &sh, &st, &tx))?;
        Ok(Self {
            shared,
            stop,
            rx,
            thread: Some(thread),
        })
    }

    /// The queue of datagrams that passed the pre-filter.
    pub fn queue(&self) -> &crossbeam_channel::Receiver<(SocketAddr, Vec<u8>)> {
        &self.rx
    }

    /// Replaces the pool sources (configured peers, known members).
    pub fn set_pool(&self, sources: Vec<SocketAddr>) {
        if let Ok(mut s) = self.shared.lock() {
            s.pool = Some(sources);
        }
    }

    /// The thread's counters.
    pub fn stats(&self) -> ReceiverStats {
        self.shared
            .lock()
            .map(|s| s.stats.clone())
            .unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn to_std(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

fn receive_loop(
    socket: &UdpSocket,
    cfg: GuardConfig,
    shared: &std::sync::Mutex<Shared>,
    stop: &std::sync::atomic::AtomicBool,
    tx: &crossbeam_channel::Sender<(SocketAddr, Vec<u8>)>,
) {
    use nix::sys::socket::{
        recvmmsg, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
    };
    use std::io::IoSliceMut;
    use std::os::fd::{AsFd, AsRawFd};
    let mut guard = Guard::new(cfg, Timestamp::now());
    let mut bufs = vec![[0u8; SLOT]; BATCH];
    let mut headers =
        MultiHeaders::<SockaddrStorage>::preallocate(BATCH, Some(nix::cmsg_space!(u32)));
    let mut got: Vec<(Option<SocketAddr>, usize, bool)> = Vec::with_capacity(BATCH);
    let mut overflow: u32 = 0;
    let mut local = ReceiverStats::default();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        got.clear();
        let r = {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map(|msgs| {
                for m in msgs {
                    if let Ok(cmsgs) = m.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::RxqOvfl(n) = c {
                                overflow = overflow.max(n);
                            }
                        }
                    }
                    let trunc = m.flags.contains(MsgFlags::MSG_TRUNC);
                    got.push((m.address.as_ref().and_then(to_std), m.bytes, trunc));
                }
            })
        };
        let now = Timestamp::now();
        match r {
            Ok(()) => {}
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            // ICMP port unreachable from a dead peer surfaces here on Linux.
            Err(nix::errno::Errno::ECONNREFUSED) => {}
            Err(e) => {
                local.recv_errors += 1;
                tracing::debug!(error = %e, "exchange recvmmsg failed");
            }
        }
        for (i, (from, n, trunc)) in got.iter().enumerate() {
            let Some(from) = from else { continue };
            if *trunc {
                guard.count_oversize();
                continue;
            }
            let bytes = &bufs[i][..*n];
            if guard.check(now, *from, bytes).is_ok() {
                if let Err(crossbeam_channel::TrySendError::Full(_)) =
                    tx.try_send((*from, bytes.to_vec()))
                {
                    local.queue_full += 1;
                }
            }
        }
        // Publish counters and take new pool sources once per batch.
        if let Ok(mut s) = shared.lock() {
            if let Some(pool) = s.pool.take() {
                guard.set_pool(pool);
            }
            s.stats.guard = guard.stats().clone();
            s.stats.kernel_drops = u64::from(overflow);
            s.stats.queue_full = local.queue_full;
            s.stats.recv_errors = local.recv_errors;
        }
        if got.len() < BATCH {
            // Drained: sleep until readable (bounded, to notice `stop`).
            let mut fds = [nix::poll::PollFd::new(
                socket.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
        }
    }
}

/// Owns the socket and the state machine: an exchange on its own.
#[derive(Debug)]
pub struct UdpExchange {
    socket: ExchangeSocket,
    exchange: Exchange,
}

impl UdpExchange {
    /// Binds `bind` (non-blocking) and wraps `exchange`.
    pub fn bind(bind: SocketAddr, exchange: Exchange) -> io::Result<Self> {
        Ok(Self {
            socket: ExchangeSocket::bind(bind)?,
            exchange,
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
        self.socket.stats()
    }

    /// One non-blocking pass: drain the socket, run due timers, send, and
    /// return the events produced. Returns how long the caller may sleep
    /// before the next pass (until the state machine's next timeout).
    pub fn poll(&mut self, now: Timestamp, events: &mut Vec<Event>) -> Duration {
        let ex = &mut self.exchange;
        self.socket.receive(|from, bytes| {
            // Drops are counted inside the state machine.
            if let Err(e) = ex.handle_datagram(now, from, bytes) {
                tracing::trace!(%from, error = %e, "exchange datagram dropped");
            }
        });
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
            self.socket.send(t.dst, &t.bytes);
        }
    }

    /// Announces a graceful leave and flushes it.
    pub fn leave(&mut self, now: Timestamp) {
        self.exchange.leave(now);
        self.flush();
    }

    /// Blocks until the socket is readable or `timeout` passes.
    pub fn wait(&self, timeout: Duration) -> io::Result<()> {
        self.socket.wait(timeout)
    }

    /// Raw socket fd, for integration into an external poll loop.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ExchangeConfig, Registration};
    use super::*;

    #[test]
    fn key_loading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, b"0123456789abcdef0123\n").unwrap();
        assert_eq!(load_key(&p).unwrap(), b"0123456789abcdef0123");
        std::fs::write(&p, b"short\n").unwrap();
        assert_eq!(load_key(&p).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(load_key(&dir.path().join("missing")).is_err());
        assert!(boot_epoch() > 1_700_000_000);
    }

    /// The receive thread admits a pool source, rate-limits a stranger
    /// before the MAC and counts every verdict.
    #[test]
    fn receiver_prefilters_on_its_thread() {
        let sock = ExchangeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = sock.local_addr().unwrap();
        let rx = sock.spawn_receiver(GuardConfig::default(), 64).unwrap();
        assert!(rx.stats().receive_buffer > 0);
        let member = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_pool(vec![member.local_addr().unwrap()]);
        let h = super::super::wire::Header {
            flags: 0,
            sender: 2,
            epoch: 1,
            seq: 1,
            timestamp_ms: 0,
        };
        let dg = super::super::wire::Builder::new(&h, None, 1400)
            .finish(&super::super::wire::Authenticator::new(b"k"));
        // Let the thread take the pool before anything arrives.
        let deadline = Timestamp::now() + Duration::from_secs(5);
        while rx.shared.lock().unwrap().pool.is_some() {
            assert!(Timestamp::now() < deadline, "pool not taken");
            std::thread::sleep(Duration::from_millis(5));
        }
        for _ in 0..200 {
            stranger.send_to(&dg, to).unwrap();
        }
        stranger.send_to(b"short", to).unwrap();
        member.send_to(&dg, to).unwrap();
        let deadline = Timestamp::now() + Duration::from_secs(5);
        while rx.stats().guard.passed + rx.stats().guard.rejected() < 202 {
            assert!(
                Timestamp::now() < deadline,
                "not all seen: {:?}",
                rx.stats()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let st = rx.stats();
        // The stranger's burst (40, plus 20/s while it sends) passes, the
        // rest is limited.
        assert!((150..=160).contains(&st.guard.join_limited), "{st:?}");
        assert_eq!(st.guard.bad_length, 1);
        assert_eq!(st.guard.passed, 201 - st.guard.join_limited);
        let got: Vec<_> = rx.queue().try_iter().collect();
        assert_eq!(got.len() as u64, st.guard.passed);
        assert!(got
            .iter()
            .any(|(from, _)| *from == member.local_addr().unwrap()));
        assert!(got.iter().all(|(_, b)| *b == dg));
    }

    /// Three instances on 127.0.0.1 with distinct ports converge on each
    /// other's entries, then a graceful leave is seen by the others.
    #[test]
    fn three_nodes_over_loopback() {
        let start = Timestamp::now();
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
        let deadline = Timestamp::now() + Duration::from_secs(10);
        while !converged(&nodes) {
            assert!(Timestamp::now() < deadline, "no convergence over UDP");
            for n in nodes.iter_mut() {
                n.poll(Timestamp::now(), &mut events);
            }
            nodes[0].wait(Duration::from_millis(2)).unwrap();
        }
        assert!(events.contains(&Event::Joined(1)));
        let leaver = nodes.pop().unwrap();
        let mut leaver = leaver;
        leaver.leave(Timestamp::now());
        events.clear();
        let deadline = Timestamp::now() + Duration::from_secs(5);
        while !nodes
            .iter()
            .all(|n| n.exchange().live_nodes() == vec![1, 2])
        {
            assert!(Timestamp::now() < deadline, "leave not seen over UDP");
            for n in nodes.iter_mut() {
                n.poll(Timestamp::now(), &mut events);
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
