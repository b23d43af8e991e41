//! AF_XDP helpers shared by the generator, sink and forwarder.

use std::{
    error::Error,
    time::{Duration, Instant},
};

/// Whether an error (or one of its sources) is EBUSY.
fn is_ebusy(e: &(dyn Error + 'static)) -> bool {
    let mut cur: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.raw_os_error() == Some(libc::EBUSY) {
                return true;
            }
        }
        cur = c.source();
    }
    false
}

/// Runs `bind` until it succeeds or fails with something other than EBUSY:
/// the kernel releases a previous socket on the same queue asynchronously.
pub fn bind_retry<T, E: Error + 'static>(mut bind: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        match bind() {
            Err(e) if is_ebusy(&e) && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(50))
            }
            r => return r,
        }
    }
}
