//! SIGINT/SIGTERM handling: a flag the run loops poll (set by
//! `signal-hook`'s handler).

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, OnceLock,
};

fn flag() -> &'static Arc<AtomicBool> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Installs handlers that set the stop flag on SIGINT and SIGTERM.
pub fn install() {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(flag()));
    }
}

/// Whether a stop was requested.
#[inline]
pub fn stopped() -> bool {
    flag().load(Ordering::Relaxed)
}

/// Requests a stop (e.g. from another thread).
pub fn request_stop() {
    flag().store(true, Ordering::Relaxed);
}
