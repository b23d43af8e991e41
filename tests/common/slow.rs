//! A request/response server that sleeps a known time before each reply,
//! and a client that times every request itself: the reference for the
//! workers' passive response-time measurement.

use std::{
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use headroom_lab::run_in_ns;

/// Answers every line on `port` in `ns` with `done\n` after `sleep`, on
/// every connection, until dropped.
pub struct SlowServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SlowServer {
    /// Listens (returns once it does).
    pub fn start(ns: &str, port: u16, sleep: Duration) -> SlowServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (ns, flag) = (ns.to_string(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            run_in_ns(&ns, move || {
                let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind");
                l.set_nonblocking(true).unwrap();
                ready_tx.send(()).unwrap();
                let mut conns: Vec<JoinHandle<()>> = Vec::new();
                while !flag.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((c, _)) => conns.push(std::thread::spawn(move || serve(c, sleep))),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                for c in conns {
                    let _ = c.join();
                }
            })
            .expect("server namespace");
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server listening");
        SlowServer {
            stop,
            thread: Some(thread),
        }
    }
}

fn serve(c: TcpStream, sleep: Duration) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_nodelay(true);
    let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
    let Ok(mut w) = c.try_clone() else { return };
    let mut r = BufReader::new(c);
    let mut line = String::new();
    while r.read_line(&mut line).is_ok_and(|n| n > 0) {
        std::thread::sleep(sleep);
        if w.write_all(b"done\n").is_err() {
            return;
        }
        line.clear();
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

/// `requests` requests on each of `connections` connections from `ns` to
/// `dst`, one after another; each request's round trip as the client sees
/// it, ms.
pub fn timed_requests(ns: &str, dst: SocketAddr, connections: usize, requests: usize) -> Vec<f64> {
    run_in_ns(ns, move || {
        let mut times = Vec::new();
        for _ in 0..connections {
            let c = TcpStream::connect_timeout(&dst, Duration::from_secs(5)).expect("connect");
            c.set_nodelay(true).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut w = c.try_clone().unwrap();
            let mut r = BufReader::new(c);
            let mut line = String::new();
            for _ in 0..requests {
                let t = Instant::now();
                w.write_all(b"GET\n").unwrap();
                line.clear();
                r.read_line(&mut line).expect("reply");
                times.push(t.elapsed().as_secs_f64() * 1e3);
                assert_eq!(line, "done\n");
            }
        }
        times
    })
    .expect("client namespace")
}

/// The median of `v`.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
