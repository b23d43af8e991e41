//! Traffic helpers that run inside namespaces (used by the demo, the tests
//! and the benchmarks).

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::{run_in_ns, LabError};

/// A UDP receiver in `ns` on `port`: counts datagrams and bytes until
/// `quiet` passes with nothing arriving (after at least one arrived, or
/// `first_timeout` with none).
pub fn udp_sink(
    ns: &str,
    port: u16,
    quiet: Duration,
    first_timeout: Duration,
) -> Result<std::thread::JoinHandle<(u64, u64)>, LabError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_string();
    let h = std::thread::spawn(move || {
        run_in_ns(&ns, move || {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind udp sink");
            big_receive_buffer(&s);
            let _ = tx.send(());
            let mut buf = [0u8; 65536];
            let (mut n, mut bytes) = (0u64, 0u64);
            s.set_read_timeout(Some(first_timeout)).ok();
            while let Ok(len) = s.recv(&mut buf) {
                n += 1;
                bytes += len as u64;
                s.set_read_timeout(Some(quiet)).ok();
            }
            (n, bytes)
        })
        .unwrap_or((0, 0))
    });
    let _ = rx.recv_timeout(Duration::from_secs(5));
    Ok(h)
}

/// A sink must never be the bottleneck of a measurement: 8 MiB of
/// receive buffer, forced past `rmem_max` (root only; best effort).
fn big_receive_buffer(s: &UdpSocket) {
    let _ = nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::RcvBufForce, &(8 << 20));
}

/// Sends `count` datagrams of `size` payload bytes from `ns` to `dst`,
/// at most `pps` per second (0 = as fast as possible).
pub fn udp_send(
    ns: &str,
    dst: SocketAddr,
    count: u64,
    size: usize,
    pps: u64,
) -> Result<u64, LabError> {
    run_in_ns(ns, move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind udp sender");
        let payload = vec![0xa5u8; size];
        let start = std::time::Instant::now();
        let mut sent = 0;
        for i in 0..count {
            if pps > 0 {
                let due = start + Duration::from_secs_f64(i as f64 / pps as f64);
                if let Some(d) = due.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(d);
                }
            }
            if s.send_to(&payload, dst).is_ok() {
                sent += 1;
            }
        }
        sent
    })
}

/// Byte `i` of the stream [`tcp_send`] writes: a pattern the receiving
/// end checks, so a corrupted or misordered byte anywhere is seen.
#[inline]
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 ^ (i as u8)
}

/// Bytes one connection delivered, and how many of them differed from
/// the pattern [`tcp_send`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Bytes read until the peer closed.
    pub bytes: u64,
    /// Bytes that were not the pattern's.
    pub corrupt: u64,
}

/// A TCP server in `ns` on `port` that accepts `conns` connections and
/// returns the bytes read from each (sorted by arrival).
pub fn tcp_sink(
    ns: &str,
    port: u16,
    conns: usize,
) -> Result<std::thread::JoinHandle<Vec<u64>>, LabError> {
    let h = tcp_sink_checked(ns, port, conns)?;
    Ok(std::thread::spawn(move || {
        h.join()
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.bytes)
            .collect()
    }))
}

/// [`tcp_sink`] that also checks every byte against the pattern
/// [`tcp_send`] writes. Connections are served concurrently.
pub fn tcp_sink_checked(
    ns: &str,
    port: u16,
    conns: usize,
) -> Result<std::thread::JoinHandle<Vec<Received>>, LabError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_string();
    let h = std::thread::spawn(move || {
        run_in_ns(&ns, move || {
            let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind tcp sink");
            let _ = tx.send(());
            let mut readers = Vec::new();
            for _ in 0..conns {
                let Ok((mut c, _)) = l.accept() else { break };
                readers.push(std::thread::spawn(move || {
                    c.set_read_timeout(Some(Duration::from_secs(20))).ok();
                    let mut buf = vec![0u8; 65536];
                    let mut r = Received::default();
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        for (k, b) in buf[..n].iter().enumerate() {
                            if *b != pattern_byte(r.bytes + k as u64) {
                                r.corrupt += 1;
                            }
                        }
                        r.bytes += n as u64;
                    }
                    r
                }));
            }
            readers
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
    });
    let _ = rx.recv_timeout(Duration::from_secs(5));
    Ok(h)
}

/// Connects from `ns` to `dst` and writes `bytes` bytes of the pattern
/// ([`pattern_byte`]).
pub fn tcp_send(ns: &str, dst: SocketAddr, bytes: u64) -> Result<std::io::Result<u64>, LabError> {
    run_in_ns(ns, move || {
        let mut c = TcpStream::connect_timeout(&dst, Duration::from_secs(5))?;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < bytes {
            let n = (bytes - sent).min(chunk.len() as u64) as usize;
            for (k, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern_byte(sent + k as u64);
            }
            c.write_all(&chunk[..n])?;
            sent += n as u64;
        }
        c.shutdown(std::net::Shutdown::Write)?;
        // Wait for the peer to close so every byte was delivered.
        let mut b = [0u8; 1];
        let _ = c.read(&mut b);
        Ok(bytes)
    })
}

/// One arrival: (time, destination port, last octet of the source IPv4 address, bytes).
pub type Arrival = (std::time::Instant, u16, u8, usize);
/// A shared arrival log.
pub type ArrivalLog = std::sync::Arc<std::sync::Mutex<Vec<Arrival>>>;

/// Sends `payload`-byte datagrams from `ns` (source port `src_port`) to
/// `dst` at `bps` (counting Ethernet/IPv4/UDP headers) until `stop`.
pub fn udp_flood(
    ns: &str,
    src_port: u16,
    dst: SocketAddr,
    bps: f64,
    payload: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        run_in_ns(&ns, move || {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, src_port)).expect("bind flood sender");
            let buf = vec![0x11u8; payload];
            let gap = Duration::from_secs_f64((payload + 42) as f64 * 8.0 / bps);
            let start = std::time::Instant::now();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let due = start + gap * i;
                if let Some(d) = due.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(d);
                }
                let _ = s.send_to(&buf, dst);
                i += 1;
            }
            i as u64
        })
        .unwrap_or(0)
    })
}

/// Logs every datagram arriving in `ns` on `ports` until `stop`.
pub fn arrival_log(
    ns: &str,
    ports: &[u16],
    log: ArrivalLog,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    ports
        .iter()
        .map(|&port| {
            let (ns, log, stop) = (ns.to_string(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                let _ = run_in_ns(&ns, move || {
                    let s =
                        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind arrival log");
                    big_receive_buffer(&s);
                    let mut buf = [0u8; 65536];
                    // Arrivals are batched to keep the lock off the receive
                    // path, but never held back for more than 20 ms: readers
                    // measure while the log is still being written.
                    let mut local = Vec::with_capacity(1 << 12);
                    let mut flushed = std::time::Instant::now();
                    s.set_read_timeout(Some(Duration::from_millis(10))).ok();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Ok((n, from)) = s.recv_from(&mut buf) {
                            let octet = match from.ip() {
                                std::net::IpAddr::V4(a) => a.octets()[3],
                                _ => 0,
                            };
                            local.push((std::time::Instant::now(), port, octet, n));
                        }
                        if !local.is_empty() && flushed.elapsed() >= Duration::from_millis(20) {
                            log.lock().expect("log lock").append(&mut local);
                            flushed = std::time::Instant::now();
                        }
                    }
                    log.lock().expect("log lock").append(&mut local);
                });
            })
        })
        .collect()
}

/// Bit rate on the wire (payload + 42 header bytes) of the arrivals in
/// [from, to) that match `f`.
pub fn wire_rate(
    log: &ArrivalLog,
    from: std::time::Instant,
    to: std::time::Instant,
    f: impl Fn(u16, u8) -> bool,
) -> f64 {
    let l = log.lock().expect("log lock");
    let bytes: usize = l
        .iter()
        .filter(|(t, p, o, _)| *t >= from && *t < to && f(*p, *o))
        .map(|a| a.3 + 42)
        .sum();
    bytes as f64 * 8.0 / (to - from).as_secs_f64()
}

/// A namespace's TCP counters from the kernel's MIB: what a transfer cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// Segments sent (`Tcp: OutSegs`, retransmissions excluded).
    pub out_segs: u64,
    /// Segments retransmitted (`Tcp: RetransSegs`).
    pub retrans_segs: u64,
    /// Reordering the senders detected (`TcpExt: TCPSACKReorder`,
    /// `TCPTSReorder`, `TCPRenoReorder`).
    pub reorder: u64,
}

impl TcpCounters {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &TcpCounters) -> TcpCounters {
        TcpCounters {
            out_segs: self.out_segs.saturating_sub(earlier.out_segs),
            retrans_segs: self.retrans_segs.saturating_sub(earlier.retrans_segs),
            reorder: self.reorder.saturating_sub(earlier.reorder),
        }
    }
}

/// The values of the `prefix:` lines (a header line of names, then one of
/// values) of a /proc/net/snmp or /proc/net/netstat text.
fn mib(text: &str, prefix: &str) -> std::collections::HashMap<String, u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return Default::default();
    };
    names
        .split_whitespace()
        .skip(1)
        .zip(values.split_whitespace().skip(1))
        .filter_map(|(n, v)| Some((n.to_string(), v.parse().ok()?)))
        .collect()
}

/// The TCP counters of `ns`, read from inside it (`/proc/thread-self/net`:
/// `/proc/net` follows the process's namespace, not the thread's).
pub fn tcp_counters(ns: &str) -> Result<TcpCounters, LabError> {
    run_in_ns(ns, || {
        let read = |f: &str| std::fs::read_to_string(format!("/proc/thread-self/net/{f}"));
        let snmp = read("snmp").unwrap_or_default();
        let netstat = read("netstat").unwrap_or_default();
        let tcp = mib(&snmp, "Tcp:");
        let ext = mib(&netstat, "TcpExt:");
        let get =
            |m: &std::collections::HashMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
        TcpCounters {
            out_segs: get(&tcp, "OutSegs"),
            retrans_segs: get(&tcp, "RetransSegs"),
            reorder: ["TCPSACKReorder", "TCPTSReorder", "TCPRenoReorder"]
                .iter()
                .map(|k| get(&ext, k))
                .sum(),
        }
    })
}

/// A TCP server in `ns` on `port` that answers every connection with
/// `server=<id>` and closes it (the demo's VIP members), until `stop`.
pub fn id_server(
    ns: &str,
    port: u16,
    id: u16,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<u64>, LabError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_string();
    let h = std::thread::spawn(move || {
        run_in_ns(&ns, move || {
            let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind id server");
            l.set_nonblocking(true).expect("nonblocking listener");
            let _ = tx.send(());
            let mut served = 0;
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.write_all(format!("server={id}\n").as_bytes());
                        served += 1;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            served
        })
        .unwrap_or_default()
    });
    let _ = rx.recv_timeout(Duration::from_secs(5));
    Ok(h)
}

/// From `ns`, one TCP connection to `dst` from each of `sources` (local
/// addresses of `ns`): the id each answered with ([`id_server`]).
pub fn id_requests(
    ns: &str,
    dst: SocketAddr,
    sources: Vec<Ipv4Addr>,
) -> Result<Vec<Result<u16, String>>, LabError> {
    run_in_ns(ns, move || {
        sources
            .into_iter()
            .map(|src| {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .map_err(|e| e.to_string())?;
                s.bind(&SocketAddr::from((src, 0)).into())
                    .map_err(|e| format!("bind {src}: {e}"))?;
                s.connect_timeout(&dst.into(), Duration::from_secs(5))
                    .map_err(|e| format!("connect from {src}: {e}"))?;
                let mut c: std::net::TcpStream = s.into();
                c.set_read_timeout(Some(Duration::from_secs(5)))
                    .map_err(|e| e.to_string())?;
                let mut line = String::new();
                c.read_to_string(&mut line)
                    .map_err(|e| format!("read from {src}: {e}"))?;
                line.trim()
                    .strip_prefix("server=")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("bad answer {line:?}"))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mib_lines_are_read_by_name() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm OutSegs RetransSegs\nTcp: 1 120 7\n";
        let m = mib(text, "Tcp:");
        assert_eq!(m.get("OutSegs"), Some(&120));
        assert_eq!(m.get("RetransSegs"), Some(&7));
        assert!(mib(text, "Udp:").is_empty());
    }
}
