//! A credit bucket that workers spend from concurrently without locks.
//!
//! Credit is *earned* continuously at the granted rate and *spent* by sending. Both are kept as
//! cumulative byte counts: `earned(t) = base + rate * (t - t0)` is a piecewise-linear function
//! the control thread re-anchors at every grant, `spent` only grows. Tokens are
//! `earned - spent`, capped at `burst` (lazily: a spend first lifts `spent` to
//! `earned - burst`), so credit not used within the burst window is lost and a burst never
//! exceeds `burst` plus one packet. A packet may go whenever tokens are positive, so the
//! bucket can go up to one packet below zero: that is the debt, automatically paid by the
//! next credit earned.
//!
//! The rate parameters are written only by the control thread (every interval) and read by
//! workers on every packet, through a two-slot sequence lock: the writer fills the slot
//! readers are not using and then flips to it, so a reader never waits for a writer that was
//! preempted in the middle of an update.

use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering::*};

/// Fixed-point shift of the rate (bytes per nanosecond in 24.40: up to 16 TB/s). Rates and
/// earned bytes are rounded to nearest, so a whole interval earns exactly the grant.
const FP_SHIFT: u32 = 40;
const FP_HALF: u128 = 1 << (FP_SHIFT - 1);

/// Rate parameters of one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Params {
    /// Bytes earned up to `t0`.
    pub base: u64,
    /// Time the parameters took effect (ns).
    pub t0: u64,
    /// Rate in bytes per nanosecond, 24.40 fixed point.
    pub rate_fp: u64,
    /// Largest number of tokens kept.
    pub burst: u64,
}

impl Params {
    /// Cumulative bytes earned at `now`; times before `t0` count as `t0`.
    #[inline]
    pub fn earned(&self, now: u64) -> u64 {
        let dt = now.saturating_sub(self.t0);
        let inc = (u128::from(self.rate_fp) * u128::from(dt) + FP_HALF) >> FP_SHIFT;
        self.base
            .saturating_add(u64::try_from(inc).unwrap_or(u64::MAX))
    }
}

/// Rate in 24.40 bytes per nanosecond of `bytes` per `interval_ns`, rounded to nearest.
pub(crate) fn rate_fp(bytes: u64, interval_ns: u64) -> u64 {
    if interval_ns == 0 {
        return 0;
    }
    let i = u128::from(interval_ns);
    u64::try_from(((u128::from(bytes) << FP_SHIFT) + i / 2) / i).unwrap_or(u64::MAX)
}

#[derive(Debug, Default)]
struct Slot {
    seq: AtomicU64,
    base: AtomicU64,
    t0: AtomicU64,
    rate_fp: AtomicU64,
    burst: AtomicU64,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    current: AtomicUsize,
    slots: [Slot; 2],
    spent: AtomicU64,
}

impl Bucket {
    /// Current parameters (any thread).
    #[inline]
    pub fn params(&self) -> Params {
        loop {
            let slot = &self.slots[self.current.load(Acquire) & 1];
            let s1 = slot.seq.load(Acquire);
            if s1 & 1 == 1 {
                // The writer has come round to this slot again; the other one is current.
                std::hint::spin_loop();
                continue;
            }
            let p = Params {
                base: slot.base.load(Relaxed),
                t0: slot.t0.load(Relaxed),
                rate_fp: slot.rate_fp.load(Relaxed),
                burst: slot.burst.load(Relaxed),
            };
            fence(Acquire);
            if slot.seq.load(Relaxed) == s1 {
                return p;
            }
        }
    }

    /// Publishes new parameters. Only one thread (the control thread) may call this.
    pub fn publish(&self, p: Params) {
        let next = (self.current.load(Relaxed) & 1) ^ 1;
        let slot = &self.slots[next];
        let s = slot.seq.load(Relaxed);
        slot.seq.store(s.wrapping_add(1), Relaxed);
        fence(Release);
        slot.base.store(p.base, Relaxed);
        slot.t0.store(p.t0, Relaxed);
        slot.rate_fp.store(p.rate_fp, Relaxed);
        slot.burst.store(p.burst, Relaxed);
        slot.seq.store(s.wrapping_add(2), Release);
        self.current.store(next, Release);
    }

    /// Spends `len` bytes at `now` if there is at least one byte of credit. Lock-free: one
    /// compare-and-swap, retried only when another worker spent in between.
    #[inline]
    pub fn try_spend(&self, now: u64, len: u64) -> bool {
        let p = self.params();
        let earned = p.earned(now);
        let floor = earned.saturating_sub(p.burst);
        let mut spent = self.spent.load(Relaxed);
        loop {
            let from = spent.max(floor);
            if from >= earned {
                return false;
            }
            match self
                .spent
                .compare_exchange_weak(spent, from + len, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(s) => spent = s,
            }
        }
    }

    /// Earliest time at or after `now` when a spend can succeed, `None` if never at the
    /// current rate.
    pub fn ready_at(&self, now: u64) -> Option<u64> {
        let p = self.params();
        let spent = self.spent.load(Relaxed);
        if p.earned(now) > spent {
            return Some(now);
        }
        if p.rate_fp == 0 {
            return None;
        }
        // Smallest dt with base + round(rate * dt) >= spent + 1.
        let need =
            (u128::from(spent + 1 - p.base.min(spent + 1)) << FP_SHIFT).saturating_sub(FP_HALF);
        let dt = need.div_ceil(u128::from(p.rate_fp));
        let t = u128::from(p.t0) + dt;
        Some(u64::try_from(t).unwrap_or(u64::MAX).max(now))
    }

    /// Bytes spent beyond what was earned by `now` (control thread).
    pub fn debt(&self, now: u64) -> u64 {
        self.spent
            .load(Relaxed)
            .saturating_sub(self.params().earned(now))
    }

    /// Re-anchors the earned curve at `now` with a new rate and burst, keeping at most `carry`
    /// unspent bytes from before (control thread). Debt is always kept. Dropping old tokens
    /// keeps an idle bucket from holding a burst's worth of credit granted long ago.
    pub fn set_rate(&self, now: u64, rate_fp: u64, burst: u64, carry: u64) {
        let p = self.params();
        // A spend racing with this only makes the new anchor slightly generous or strict.
        let base = p
            .earned(now)
            .min(self.spent.load(Relaxed).saturating_add(carry));
        self.publish(Params {
            base,
            t0: now.max(p.t0),
            rate_fp,
            burst,
        });
    }

    /// Credits `bytes` at once, to pay off debt (control thread).
    pub fn forgive(&self, bytes: u64) {
        let mut p = self.params();
        p.base = p.base.saturating_add(bytes);
        self.publish(p);
    }

    /// Bytes earned over `ns` nanoseconds at the current rate.
    #[inline]
    pub fn bytes_over(&self, ns: u64) -> u64 {
        let inc = (u128::from(self.params().rate_fp) * u128::from(ns)) >> FP_SHIFT;
        u64::try_from(inc).unwrap_or(u64::MAX)
    }

    /// Cumulative bytes earned by `now`.
    pub fn earned(&self, now: u64) -> u64 {
        self.params().earned(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(bytes_per_ms: u64, burst: u64) -> Bucket {
        let b = Bucket::default();
        b.publish(Params {
            base: 0,
            t0: 0,
            rate_fp: rate_fp(bytes_per_ms, 1_000_000),
            burst,
        });
        b
    }

    #[test]
    fn earns_at_rate_and_caps_tokens_at_burst() {
        // 1000 bytes per ms, burst 3000: after 10 ms idle only 3000 bytes can go.
        let b = bucket(1000, 3000);
        let now = 10_000_000;
        let mut sent = 0;
        while b.try_spend(now, 100) {
            sent += 100;
        }
        assert_eq!(sent, 3000);
        // Half a millisecond later 500 more bytes were earned.
        let mut more = 0;
        while b.try_spend(now + 500_000, 100) {
            more += 100;
        }
        assert_eq!(more, 500);
    }

    #[test]
    fn overshoot_is_one_packet_of_debt() {
        let b = bucket(1000, 10_000);
        // 1 ms: 1000 bytes earned; a 1500-byte packet goes, leaving 500 bytes of debt.
        assert!(b.try_spend(1_000_000, 1500));
        assert!(!b.try_spend(1_000_000, 1));
        assert_eq!(b.debt(1_000_000), 500);
        // Debt is paid by what is earned next: ready again once 501 more bytes are earned
        // (earned bytes are rounded to nearest: 500.5 us).
        let t = b.ready_at(1_000_000).unwrap();
        assert_eq!(t, 1_500_500);
        assert!(!b.try_spend(t - 1, 1));
        assert!(b.try_spend(t, 1));
    }

    #[test]
    fn rate_change_keeps_earned_continuous_and_forgive_pays_debt() {
        let b = bucket(1000, 1 << 40);
        b.set_rate(2_000_000, rate_fp(4000, 1_000_000), 1 << 40, u64::MAX);
        // 2 ms at 1000/ms + 1 ms at 4000/ms.
        assert_eq!(b.earned(3_000_000), 6000);
        assert!(b.try_spend(3_000_000, 7000));
        assert_eq!(b.debt(3_000_000), 1000);
        b.forgive(600);
        assert_eq!(b.debt(3_000_000), 400);
        b.set_rate(3_000_000, 0, 1 << 40, u64::MAX);
        assert_eq!(b.ready_at(3_000_000), None);
    }

    #[test]
    fn regrant_keeps_debt_but_at_most_carry_of_unspent_credit() {
        let b = bucket(1000, 1 << 40);
        // 5 ms idle: 5000 bytes unspent; a new grant carries over only 1200 of them.
        b.set_rate(5_000_000, rate_fp(1000, 1_000_000), 1 << 40, 1200);
        let mut sent = 0;
        while b.try_spend(5_000_000, 100) {
            sent += 100;
        }
        assert_eq!(sent, 1200);
        // Debt survives a re-grant with no carry at all.
        assert!(b.try_spend(6_000_000, 1500));
        assert_eq!(b.debt(6_000_000), 500);
        b.set_rate(6_000_000, rate_fp(1000, 1_000_000), 1 << 40, 0);
        assert_eq!(b.debt(6_000_000), 500);
    }

    #[test]
    fn readers_see_consistent_parameters_while_written() {
        // Every published Params has base == t0 == rate_fp == burst; a torn read would not.
        let b = std::sync::Arc::new(Bucket::default());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (b, stop) = (b.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Relaxed) || reads < 1000 {
                    let p = b.params();
                    assert!(
                        p.base == p.t0 && p.t0 == p.rate_fp && p.rate_fp == p.burst,
                        "{p:?}"
                    );
                    reads += 1;
                }
                reads
            })
        };
        for i in 0..200_000u64 {
            b.publish(Params {
                base: i,
                t0: i,
                rate_fp: i,
                burst: i,
            });
        }
        stop.store(true, Relaxed);
        assert!(reader.join().unwrap() >= 1000);
    }
}
