//! Frame ownership accounting.
//!
//! Every UMEM frame is, at any instant, in exactly one place: the worker's
//! free list, the fill ring of one of its sockets (lent to the kernel for
//! receive), the TX ring of one of its sockets (lent to the kernel for
//! transmit), or held by the worker (in hand during a batch, part of a
//! multi-buffer packet, waiting in a TX backlog, or queued by the pacer). The ledger counts each place; the
//! invariant `sum == total` is checked after every loop iteration. Debug
//! builds also track each frame's owner and catch a frame being handed out
//! twice (double ownership) or returned by the kernel when it was never lent.

/// Where a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Place {
    /// On the worker's free list.
    Free,
    /// In the fill ring of the worker's socket (port) number N.
    Fill(u8),
    /// In the TX ring of port N, until its completion.
    Tx(u8),
    /// Held by the worker (in a batch, or queued by the pacer).
    Held,
}

/// A violation of the ownership rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// The frame index.
    pub frame: usize,
    /// Where the ledger thought it was.
    pub was: Place,
    /// Where it was expected to be for this move.
    pub expected: Place,
}

/// Counts frames per place (and, in debug builds, tracks each frame).
#[derive(Debug)]
pub struct FrameLedger {
    total: usize,
    // Only per-frame tracking (debug builds) needs the frame size.
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    frame_size: usize,
    free: usize,
    fill: Vec<usize>,
    tx: Vec<usize>,
    held: usize,
    violations: u64,
    #[cfg(debug_assertions)]
    owner: Vec<Place>,
}

impl FrameLedger {
    /// All `total` frames start on the free list; `ports` sockets have a
    /// fill and a TX ring each.
    pub fn new(total: usize, frame_size: usize, ports: usize) -> Self {
        Self {
            total,
            frame_size,
            free: total,
            fill: vec![0; ports],
            tx: vec![0; ports],
            held: 0,
            violations: 0,
            #[cfg(debug_assertions)]
            owner: vec![Place::Free; total],
        }
    }

    /// Records that the frame at UMEM address `addr` moves `from` -> `to`.
    #[inline]
    pub fn moved(&mut self, addr: usize, from: Place, to: Place) {
        #[cfg(debug_assertions)]
        {
            let idx = addr / self.frame_size;
            match self.owner.get_mut(idx) {
                Some(slot) if *slot == from => *slot = to,
                Some(slot) => {
                    self.violations += 1;
                    tracing::error!(frame = idx, was = ?*slot, expected = ?from, "frame ownership violation");
                    *slot = to;
                }
                None => self.violations += 1,
            }
        }
        #[cfg(not(debug_assertions))]
        let _ = addr;
        *self.slot(from) -= 1;
        *self.slot(to) += 1;
    }

    /// Records a batch move of `n` frames without per-frame tracking (release
    /// builds) or with it (debug builds, via `addrs`).
    #[inline]
    pub fn moved_many(
        &mut self,
        addrs: impl Iterator<Item = usize>,
        n: usize,
        from: Place,
        to: Place,
    ) {
        #[cfg(debug_assertions)]
        {
            let mut seen = 0;
            for a in addrs {
                self.moved(a, from, to);
                seen += 1;
            }
            debug_assert_eq!(seen, n);
        }
        #[cfg(not(debug_assertions))]
        {
            let _ = addrs;
            *self.slot(from) -= n;
            *self.slot(to) += n;
        }
    }

    fn slot(&mut self, p: Place) -> &mut usize {
        match p {
            Place::Free => &mut self.free,
            Place::Fill(s) => &mut self.fill[s as usize],
            Place::Tx(s) => &mut self.tx[s as usize],
            Place::Held => &mut self.held,
        }
    }

    /// Frames in `p`.
    pub fn count(&self, p: Place) -> usize {
        match p {
            Place::Free => self.free,
            Place::Fill(s) => self.fill.get(s as usize).copied().unwrap_or(0),
            Place::Tx(s) => self.tx.get(s as usize).copied().unwrap_or(0),
            Place::Held => self.held,
        }
    }

    /// Checks `sum == total`; counts and returns false on a violation.
    pub fn check(&mut self) -> bool {
        let sum =
            self.free + self.fill.iter().sum::<usize>() + self.tx.iter().sum::<usize>() + self.held;
        let ok = sum == self.total && self.violations == 0;
        if sum != self.total {
            self.violations += 1;
        }
        ok
    }

    /// Total frames.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Ownership violations seen so far (must stay 0).
    pub fn violations(&self) -> u64 {
        self.violations
    }

    /// A snapshot for reports.
    pub fn snapshot(&self) -> LedgerSnapshot {
        LedgerSnapshot {
            total: self.total,
            free: self.free,
            fill: self.fill.iter().sum(),
            tx: self.tx.iter().sum(),
            held: self.held,
            violations: self.violations,
        }
    }
}

/// Frame accounting as published by a worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerSnapshot {
    /// Frames in the worker's UMEM.
    pub total: usize,
    /// On the free list.
    pub free: usize,
    /// In the fill rings of all the worker's sockets.
    pub fill: usize,
    /// In the TX rings awaiting completion.
    pub tx: usize,
    /// Held by the worker (in hand, TX backlogs, pacer queues).
    pub held: usize,
    /// Ownership violations (0 unless there is a bug).
    pub violations: u64,
}

impl LedgerSnapshot {
    /// Whether every frame is accounted for.
    pub fn balanced(&self) -> bool {
        self.accounted() == self.total && self.violations == 0
    }

    /// Frames found in some place (equals `total` unless there is a bug).
    pub fn accounted(&self) -> usize {
        self.free + self.fill + self.tx + self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_keep_the_sum() {
        let mut l = FrameLedger::new(8, 4096, 2);
        l.moved(0, Place::Free, Place::Fill(0));
        l.moved(4096, Place::Free, Place::Fill(1));
        l.moved(0, Place::Fill(0), Place::Held);
        l.moved(0, Place::Held, Place::Tx(1));
        assert!(l.check());
        assert_eq!(l.count(Place::Tx(1)), 1);
        assert_eq!(l.count(Place::Free), 6);
        l.moved(0, Place::Tx(1), Place::Free);
        assert!(l.check());
        assert!(l.snapshot().balanced());
    }

    #[cfg(debug_assertions)]
    #[test]
    fn double_ownership_is_caught() {
        let mut l = FrameLedger::new(4, 2048, 2);
        l.moved(0, Place::Free, Place::Fill(0));
        // The same frame handed to a TX ring while the kernel still owns it.
        l.moved(0, Place::Free, Place::Tx(0));
        assert_eq!(l.violations(), 1);
        assert!(!l.check());
    }

    #[test]
    fn lost_frame_is_caught() {
        let mut l = FrameLedger::new(4, 2048, 2);
        l.free -= 1; // simulate a frame dropped on the floor
        assert!(!l.check());
        assert!(l.violations() > 0);
    }
}
