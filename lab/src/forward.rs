//! A TCP port on the host forwarded into a lab namespace, so a browser on
//! the machine reaches a service that listens on a lab server's loopback
//! (the demo's web console). The accept loop runs in the caller's
//! namespace; each connection's far end is opened from a thread that
//! entered `ns` (a socket keeps the namespace it was made in), then two
//! threads copy bytes until either side closes.

use std::{
    io,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::{ns::run_in_ns, LabError};

/// A running forward; dropping it stops accepting (open connections finish).
pub struct Forward {
    /// The host-side address it listens on.
    pub listen: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Forwards TCP connections to `listen` (in this namespace) to `to` inside
/// namespace `ns`.
pub fn forward_tcp(listen: SocketAddr, ns: &str, to: SocketAddr) -> Result<Forward, LabError> {
    let io_err = |what: String| move |source| LabError::Spawn { cmd: what, source };
    let listener = TcpListener::bind(listen).map_err(io_err(format!("listen on {listen}")))?;
    listener
        .set_nonblocking(true)
        .map_err(io_err(format!("listen on {listen}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (ns, flag) = (ns.to_string(), stop.clone());
    let thread = std::thread::Builder::new()
        .name("lab-forward".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((near, _)) => {
                        let ns = ns.clone();
                        std::thread::spawn(move || {
                            let far = run_in_ns(&ns, move || {
                                TcpStream::connect_timeout(&to, Duration::from_secs(5))
                            });
                            if let (Ok(Ok(far)), Ok(())) = (far, near.set_nonblocking(false)) {
                                splice(near, far);
                            }
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })
        .map_err(io_err("spawn the forward thread".into()))?;
    Ok(Forward {
        listen,
        stop,
        thread: Some(thread),
    })
}

/// Copies both ways until each side has closed its half.
fn splice(a: TcpStream, b: TcpStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let mut a = a;
        let mut b = b;
        let _ = io::copy(&mut a, &mut b);
        let _ = b.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut b2, &mut a2);
    let _ = a2.shutdown(Shutdown::Write);
    let _ = up.join();
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
