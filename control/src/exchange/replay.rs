//! Per-sender replay protection: (boot epoch, sequence) with a sliding window.

/// Width of the sliding window in sequence numbers.
pub const WINDOW: u64 = 128;

/// Outcome of checking a (epoch, seq) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Fresh: accept (the window has been updated).
    Fresh,
    /// Epoch older than the newest one seen from this sender.
    StaleEpoch,
    /// Sequence already seen, or older than the window.
    Replayed,
}

/// Sliding replay window for one sender.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    epoch: u32,
    /// Highest sequence accepted in `epoch`.
    top: u64,
    /// Bit i set = `top - i` was accepted.
    bits: u128,
    seeded: bool,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// An empty window that accepts anything first.
    pub fn new() -> Self {
        Self {
            epoch: 0,
            top: 0,
            bits: 0,
            seeded: false,
        }
    }

    /// Checks and, if fresh, records `(epoch, seq)`.
    pub fn check(&mut self, epoch: u32, seq: u64) -> Verdict {
        if !self.seeded || epoch > self.epoch {
            // First datagram, or the sender restarted: start a new window.
            self.seeded = true;
            self.epoch = epoch;
            self.top = seq;
            self.bits = 1;
            return Verdict::Fresh;
        }
        if epoch < self.epoch {
            return Verdict::StaleEpoch;
        }
        if seq > self.top {
            let shift = seq - self.top;
            self.bits = if shift >= WINDOW {
                0
            } else {
                self.bits << shift
            };
            self.bits |= 1;
            self.top = seq;
            return Verdict::Fresh;
        }
        let back = self.top - seq;
        if back >= WINDOW {
            return Verdict::Replayed;
        }
        let mask = 1u128 << back;
        if self.bits & mask != 0 {
            return Verdict::Replayed;
        }
        self.bits |= mask;
        Verdict::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_semantics() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(1, 10), Verdict::Fresh);
        assert_eq!(w.check(1, 10), Verdict::Replayed);
        assert_eq!(w.check(1, 12), Verdict::Fresh);
        // Reordered but inside the window: accepted once.
        assert_eq!(w.check(1, 11), Verdict::Fresh);
        assert_eq!(w.check(1, 11), Verdict::Replayed);
        assert_eq!(w.check(1, 12 + WINDOW), Verdict::Fresh);
        // 12 has fallen out of the window.
        assert_eq!(w.check(1, 12), Verdict::Replayed);
        // Older boot epoch is rejected, newer resets.
        assert_eq!(w.check(0, 1_000_000), Verdict::StaleEpoch);
        assert_eq!(w.check(2, 0), Verdict::Fresh);
        assert_eq!(w.check(1, 5_000), Verdict::StaleEpoch);
        assert_eq!(w.check(2, 0), Verdict::Replayed);
    }

    #[test]
    fn huge_jump_does_not_overflow() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(1, 0), Verdict::Fresh);
        assert_eq!(w.check(1, u64::MAX), Verdict::Fresh);
        assert_eq!(w.check(1, 0), Verdict::Replayed);
        assert_eq!(w.check(1, u64::MAX - 1), Verdict::Fresh);
    }
}
