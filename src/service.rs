//! The daemon's side of systemd's service protocol (sd_notify(3)): READY=1
//! once the dataplane forwards, RELOADING=1 / READY=1 around a reload,
//! STOPPING=1 on shutdown, and WATCHDOG=1 keep-alives from the control loop,
//! so a hung control thread gets the service restarted. Without
//! `NOTIFY_SOCKET` in the environment (not started by systemd) it sends
//! nothing.

use std::time::Duration;

use headroom_clock::Timestamp;
use sd_notify::NotifyState;

/// When the next keep-alive is due: every half of the manager's timeout, as
/// sd_watchdog_enabled(3) advises. Time is passed in.
#[derive(Debug, Clone)]
pub struct Watchdog {
    every: Duration,
    next: Timestamp,
}

impl Watchdog {
    /// A watchdog for the manager's `timeout`, first due at `now`.
    pub fn new(timeout: Duration, now: Timestamp) -> Self {
        Self {
            every: (timeout / 2).max(Duration::from_millis(1)),
            next: now,
        }
    }

    /// The interval between keep-alives.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// Whether a keep-alive is due at `now`; if so the next one is scheduled.
    /// A late loop sends one keep-alive, not a burst.
    pub fn poll(&mut self, now: Timestamp) -> bool {
        if now < self.next {
            return false;
        }
        self.next += self.every;
        if self.next <= now {
            self.next = now + self.every;
        }
        true
    }
}

/// The notifications of one daemon.
#[derive(Debug)]
pub struct Service {
    watchdog: Option<Watchdog>,
    failed_sends: u64,
}

impl Service {
    /// From the environment systemd sets (`NOTIFY_SOCKET`, `WATCHDOG_USEC`,
    /// `WATCHDOG_PID`).
    pub fn from_env(now: Timestamp) -> Self {
        let watchdog = std::env::var_os("NOTIFY_SOCKET")
            .and(sd_notify::watchdog_enabled())
            .map(|timeout| Watchdog::new(timeout, now));
        if let Some(w) = &watchdog {
            tracing::info!(
                every_ms = w.every().as_millis() as u64,
                "systemd watchdog keep-alives on"
            );
        }
        Self {
            watchdog,
            failed_sends: 0,
        }
    }

    fn send(&mut self, states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            self.failed_sends += 1;
            // The first failure says why; the rest would repeat it.
            if self.failed_sends == 1 {
                tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
            }
        }
    }

    /// The dataplane forwards: XDP attached, workers running, control socket
    /// up. `status` is what `systemctl status` shows.
    pub fn ready(&mut self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A reload starts (what systemd's ExecReload waits on).
    pub fn reloading(&mut self) {
        match NotifyState::monotonic_usec_now() {
            Ok(t) => self.send(&[NotifyState::Reloading, t]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// The reload finished, applied or rejected: back to serving.
    pub fn reloaded(&mut self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// Shutdown starts.
    pub fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Called every control-loop iteration: sends WATCHDOG=1 when due.
    pub fn keep_alive(&mut self, now: Timestamp) {
        if self.watchdog.as_mut().is_some_and(|w| w.poll(now)) {
            self.send(&[NotifyState::Watchdog]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Watchdog;
    use headroom_clock::Timestamp;
    use std::time::Duration;

    #[test]
    fn keep_alives_come_every_half_timeout_and_never_in_bursts() {
        let t0 = Timestamp::from_duration(Duration::from_secs(100));
        let ms = |n| t0 + Duration::from_millis(n);
        let mut w = Watchdog::new(Duration::from_secs(10), t0);
        assert_eq!(w.every(), Duration::from_secs(5));
        // Due at once, then every 5 s; a loop iterating every 20 ms sends one
        // per interval.
        let sent: Vec<u64> = (0..=1000)
            .map(|i| i * 20)
            .filter(|&t| w.poll(ms(t)))
            .collect();
        assert_eq!(sent, [0, 5000, 10000, 15000, 20000]);
        // A control loop stalled for 12 s sends one keep-alive when it
        // resumes, not the two it missed, and the next comes 5 s later.
        assert!(w.poll(ms(32_000)));
        assert!(!w.poll(ms(32_001)));
        assert!(!w.poll(ms(36_999)));
        assert!(w.poll(ms(37_000)));
    }
}
