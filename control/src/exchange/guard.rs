//! The exchange's pre-filter: cheap checks that run on every received
//! datagram before the MAC is computed, so a flood of forged datagrams costs
//! a few comparisons each instead of an HMAC, and cannot crowd out the
//! datagrams of real members.
//!
//! In order, a datagram is rejected when
//! 1. its length cannot be an exchange datagram (shorter than a header and
//!    MAC, longer than the MTU, or shorter than its declared entry count
//!    needs),
//! 2. its magic, version or flags are not ours,
//! 3. its source is not a pool source (a configured peer or a known member)
//!    and the join budget is spent: an unknown source may send
//!    `join_rate` datagrams per second (burst `join_burst`), and all unknown
//!    sources together `join_rate_total`, so a new server can still join
//!    while a forger from one address gets a trickle through to the MAC,
//! 4. a pool source exceeds `member_rate` datagrams per second (burst
//!    `member_burst`), far above what the exchange sends.
//!
//! Sans-IO like the exchange: time is a parameter, every rejection is
//! counted in [`GuardStats`].

use headroom_clock::Timestamp;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::wire::{
    self, ENTRY_HEADER_LEN, FLAG_SNAPSHOT, HEADER_LEN, MAC_LEN, SNAPSHOT_HEADER_LEN,
};

/// Limits of the pre-filter. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    /// Largest datagram accepted (the exchange's MTU).
    pub mtu: usize,
    /// Datagrams per second one pool source may send (default 2000; the
    /// exchange sends about 10-30 per second per peer).
    pub member_rate: f64,
    /// Burst of a pool source (default 2000).
    pub member_burst: f64,
    /// Datagrams per second one unknown source may send (default 20).
    pub join_rate: f64,
    /// Burst of an unknown source (default 40).
    pub join_burst: f64,
    /// Datagrams per second of all unknown sources together (default 200).
    pub join_rate_total: f64,
    /// Unknown sources tracked at most (default 4096); beyond that only the
    /// total join budget applies to new ones.
    pub max_tracked: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            mtu: 1400,
            member_rate: 2000.0,
            member_burst: 2000.0,
            join_rate: 20.0,
            join_burst: 40.0,
            join_rate_total: 200.0,
            max_tracked: 4096,
        }
    }
}

/// Counters of the pre-filter, one per rejection reason. All monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuardStats {
    /// Datagrams that passed the pre-filter (handed to the MAC check).
    pub passed: u64,
    /// Rejected: shorter than a header and MAC, or than its entry count needs.
    pub bad_length: u64,
    /// Rejected: longer than the MTU (or truncated by the receive buffer).
    pub oversize: u64,
    /// Rejected: wrong magic, version or flags.
    pub bad_header: u64,
    /// Rejected: unknown source over its own join budget.
    pub join_limited: u64,
    /// Rejected: unknown source while all unknown sources spent the total budget.
    pub join_total_limited: u64,
    /// Rejected: a pool source over its rate.
    pub member_limited: u64,
}

impl GuardStats {
    /// Every rejected datagram.
    pub fn rejected(&self) -> u64 {
        self.bad_length
            + self.oversize
            + self.bad_header
            + self.join_limited
            + self.join_total_limited
            + self.member_limited
    }
}

/// Why the pre-filter rejected a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Length impossible for an exchange datagram.
    BadLength,
    /// Longer than the MTU.
    Oversize,
    /// Wrong magic, version or flags.
    BadHeader,
    /// Unknown source over its join budget.
    JoinLimited,
    /// Unknown sources over the total join budget.
    JoinTotalLimited,
    /// Pool source over its rate.
    MemberLimited,
}

/// A token bucket refilled continuously.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

impl Bucket {
    fn full(burst: f64, now: Timestamp) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    fn take(&mut self, now: Timestamp, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Refilled to the brim by now: forgetting it loses nothing.
    fn idle(&self, now: Timestamp, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + dt * rate >= burst
    }
}

/// The pre-filter's state.
#[derive(Debug)]
pub struct Guard {
    cfg: GuardConfig,
    /// Configured peers and known members.
    pool: HashSet<SocketAddr>,
    members: HashMap<SocketAddr, Bucket>,
    unknown: HashMap<SocketAddr, Bucket>,
    total: Bucket,
    next_sweep: Timestamp,
    stats: GuardStats,
}

impl Guard {
    /// A pre-filter that knows no pool source yet.
    pub fn new(cfg: GuardConfig, now: Timestamp) -> Self {
        let total = Bucket::full(cfg.join_rate_total, now);
        Self {
            cfg,
            pool: HashSet::new(),
            members: HashMap::new(),
            unknown: HashMap::new(),
            total,
            next_sweep: now,
            stats: GuardStats::default(),
        }
    }

    /// Replaces the set of pool sources (configured peers and the
    /// addresses of known members).
    pub fn set_pool(&mut self, sources: impl IntoIterator<Item = SocketAddr>) {
        self.pool = sources.into_iter().collect();
        let pool = &self.pool;
        self.members.retain(|a, _| pool.contains(a));
    }

    /// Whether `from` is a pool source.
    pub fn is_pool(&self, from: &SocketAddr) -> bool {
        self.pool.contains(from)
    }

    /// Counters.
    pub fn stats(&self) -> &GuardStats {
        &self.stats
    }

    /// Counts a datagram rejected as oversize by the driver (truncated by
    /// its receive buffer).
    pub fn count_oversize(&mut self) {
        self.stats.oversize += 1;
    }

    /// Checks one datagram of `len` bytes starting with `head` (at least the
    /// fixed header when the datagram is that long).
    pub fn check(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), Rejection> {
        let r = self.judge(now, from, bytes);
        let c = match r {
            Ok(()) => &mut self.stats.passed,
            Err(Rejection::BadLength) => &mut self.stats.bad_length,
            Err(Rejection::Oversize) => &mut self.stats.oversize,
            Err(Rejection::BadHeader) => &mut self.stats.bad_header,
            Err(Rejection::JoinLimited) => &mut self.stats.join_limited,
            Err(Rejection::JoinTotalLimited) => &mut self.stats.join_total_limited,
            Err(Rejection::MemberLimited) => &mut self.stats.member_limited,
        };
        *c += 1;
        r
    }

    fn judge(&mut self, now: Timestamp, from: SocketAddr, b: &[u8]) -> Result<(), Rejection> {
        if b.len() > self.cfg.mtu {
            return Err(Rejection::Oversize);
        }
        if b.len() < HEADER_LEN + MAC_LEN {
            return Err(Rejection::BadLength);
        }
        let flags = b[3];
        if u16::from_be_bytes([b[0], b[1]]) != wire::MAGIC
            || b[2] != wire::VERSION
            || flags & !wire::KNOWN_FLAGS != 0
            || flags & wire::KNOWN_FLAGS == wire::KNOWN_FLAGS
        {
            return Err(Rejection::BadHeader);
        }
        let snap = if flags & FLAG_SNAPSHOT != 0 {
            SNAPSHOT_HEADER_LEN
        } else {
            0
        };
        let count = usize::from(b[HEADER_LEN - 1]);
        if b.len() < HEADER_LEN + snap + count * ENTRY_HEADER_LEN + MAC_LEN {
            return Err(Rejection::BadLength);
        }
        let cfg = &self.cfg;
        if self.pool.contains(&from) {
            let bucket = self
                .members
                .entry(from)
                .or_insert_with(|| Bucket::full(cfg.member_burst, now));
            return if bucket.take(now, cfg.member_rate, cfg.member_burst) {
                Ok(())
            } else {
                Err(Rejection::MemberLimited)
            };
        }
        if now >= self.next_sweep {
            // Forget sources whose buckets are full again: memory stays
            // bounded by the sources of the last few seconds.
            self.next_sweep = now + Duration::from_secs(1);
            let (rate, burst) = (cfg.join_rate, cfg.join_burst);
            self.unknown.retain(|_, b| !b.idle(now, rate, burst));
        }
        let tracked = self.unknown.len();
        let own = match self.unknown.get_mut(&from) {
            Some(b) => b.take(now, cfg.join_rate, cfg.join_burst),
            None if tracked < cfg.max_tracked => {
                let mut b = Bucket::full(cfg.join_burst, now);
                let ok = b.take(now, cfg.join_rate, cfg.join_burst);
                self.unknown.insert(from, b);
                ok
            }
            None => true,
        };
        if !own {
            return Err(Rejection::JoinLimited);
        }
        if !self
            .total
            .take(now, cfg.join_rate_total, cfg.join_rate_total)
        {
            return Err(Rejection::JoinTotalLimited);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::{Authenticator, Builder, Header};
    use super::*;

    fn datagram() -> Vec<u8> {
        datagram_with(0)
    }

    fn datagram_with(flags: u8) -> Vec<u8> {
        let h = Header {
            flags,
            sender: 1,
            epoch: 1,
            seq: 1,
            timestamp_ms: 0,
        };
        Builder::new(&h, None, 1400).finish(&Authenticator::new(b"k"))
    }

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7946))
    }

    #[test]
    fn malformed_headers_rejected_by_reason() {
        let t = Timestamp::from_duration(Duration::from_secs(1));
        let mut g = Guard::new(GuardConfig::default(), t);
        g.set_pool([addr(1)]);
        let ok = datagram();
        assert_eq!(g.check(t, addr(1), &ok), Ok(()));
        assert_eq!(g.check(t, addr(1), &ok[..20]), Err(Rejection::BadLength));
        assert_eq!(
            g.check(t, addr(1), &vec![0; 1401]),
            Err(Rejection::Oversize)
        );
        let mut bad = ok.clone();
        bad[2] = 9;
        assert_eq!(g.check(t, addr(1), &bad), Err(Rejection::BadHeader));
        let mut bad = ok.clone();
        bad[0] = 0;
        assert_eq!(g.check(t, addr(1), &bad), Err(Rejection::BadHeader));
        let mut bad = ok.clone();
        bad[3] = 0x80;
        assert_eq!(g.check(t, addr(1), &bad), Err(Rejection::BadHeader));
        // A direct message (policy distribution, goal reports) passes; a
        // datagram claiming to be direct and a snapshot part does not.
        let direct = datagram_with(wire::FLAG_DIRECT);
        assert_eq!(g.check(t, addr(1), &direct), Ok(()));
        let mut bad = direct.clone();
        bad[3] |= FLAG_SNAPSHOT;
        assert_eq!(g.check(t, addr(1), &bad), Err(Rejection::BadHeader));
        // Declares 3 entries but carries none.
        let mut bad = ok.clone();
        bad[HEADER_LEN - 1] = 3;
        assert_eq!(g.check(t, addr(1), &bad), Err(Rejection::BadLength));
        let s = g.stats();
        assert_eq!(
            (s.passed, s.bad_length, s.oversize, s.bad_header),
            (2, 2, 1, 4)
        );
        assert_eq!(s.rejected(), 7);
    }

    /// A forger at 100k datagrams/s from one address gets `join_rate`
    /// through; a newcomer from another address still joins, and members
    /// are not limited at their normal rate.
    #[test]
    fn flood_from_one_source_leaves_members_and_joiners_through() {
        let t0 = Timestamp::from_duration(Duration::from_secs(1));
        let mut g = Guard::new(GuardConfig::default(), t0);
        g.set_pool([addr(1), addr(2)]);
        let dg = datagram();
        let forger = SocketAddr::from(([10, 9, 9, 9], 4444));
        let mut forged_passed = 0;
        let mut member_passed = 0;
        let mut joiner_passed = 0;
        // 10 s in 10 µs steps: forger every step, members every 10 ms,
        // a joiner every 100 ms.
        for step in 0..1_000_000u64 {
            let now = t0 + Duration::from_micros(10 * step);
            forged_passed += u64::from(g.check(now, forger, &dg).is_ok());
            if step % 1000 == 0 {
                member_passed += u64::from(g.check(now, addr(1), &dg).is_ok());
                member_passed += u64::from(g.check(now, addr(2), &dg).is_ok());
            }
            if step % 10_000 == 0 {
                joiner_passed += u64::from(g.check(now, addr(3), &dg).is_ok());
            }
        }
        assert_eq!(member_passed, 2000, "members limited");
        assert_eq!(joiner_passed, 100, "joiner starved");
        // Burst plus 20/s for 10 s.
        assert!((200..=241).contains(&forged_passed), "{forged_passed}");
        assert_eq!(g.stats().join_limited, 1_000_000 - forged_passed);
        // Once a member, the joiner's address is a pool source.
        g.set_pool([addr(1), addr(2), addr(3)]);
        assert!(g.is_pool(&addr(3)));
    }

    #[test]
    fn many_forged_sources_share_the_total_budget_and_memory_is_bounded() {
        let t0 = Timestamp::from_duration(Duration::from_secs(1));
        let cfg = GuardConfig {
            max_tracked: 1000,
            ..GuardConfig::default()
        };
        let mut g = Guard::new(cfg, t0);
        g.set_pool([addr(1)]);
        let dg = datagram();
        let mut passed = 0u64;
        // 1 s of 100k datagrams/s, each from a new source.
        for i in 0..100_000u32 {
            let now = t0 + Duration::from_micros(10 * u64::from(i));
            let from = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 1));
            passed += u64::from(g.check(now, from, &dg).is_ok());
            assert!(g.unknown.len() <= 1000);
        }
        assert!((200..=401).contains(&passed), "{passed}");
        assert!(g.stats().join_total_limited > 99_000);
        // Members are untouched by the unknown sources' budget.
        assert_eq!(g.check(t0 + Duration::from_secs(1), addr(1), &dg), Ok(()));
        // Idle sources are forgotten.
        g.check(t0 + Duration::from_secs(10), addr(9), &dg).unwrap();
        assert_eq!(g.unknown.len(), 1);
    }

    #[test]
    fn member_over_its_rate_is_limited() {
        let t0 = Timestamp::from_duration(Duration::from_secs(1));
        let mut g = Guard::new(GuardConfig::default(), t0);
        g.set_pool([addr(1)]);
        let dg = datagram();
        let passed = (0..10_000)
            .filter(|_| g.check(t0, addr(1), &dg).is_ok())
            .count();
        assert_eq!(passed, 2000);
        assert_eq!(g.stats().member_limited, 8000);
        // Refills at member_rate.
        assert!(g
            .check(t0 + Duration::from_millis(10), addr(1), &dg)
            .is_ok());
    }
}
