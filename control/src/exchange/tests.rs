//! Unit tests of the exchange state machine (multi-node behaviour is
//! tested in simulation, see `crate::sim`).

use super::gossip::ceil_log2;
use super::membership::{decode_member, encode_member};
use super::*;

#[test]
fn member_codec() {
    let a: SocketAddr = "10.1.2.3:4567".parse().unwrap();
    assert_eq!(decode_member(&encode_member(a, true)), Some((true, a)));
    let b: SocketAddr = "[fe80::1]:9".parse().unwrap();
    assert_eq!(decode_member(&encode_member(b, false)), Some((false, b)));
    assert_eq!(decode_member(&[0, 4, 1, 2]), None);
    assert_eq!(decode_member(&[]), None);
}

#[test]
fn local_api_errors() {
    let now = Timestamp::now();
    let mut ex = Exchange::new(
        ExchangeConfig::new(1, 1, "127.0.0.1:1".parse().unwrap()),
        b"k",
        now,
    );
    let reg = Registration {
        period_ticks: 1,
        max_size: 8,
        flags: 0,
    };
    assert_eq!(ex.register(0, reg), Err(ExchangeError::ReservedCode(0)));
    ex.register(3, reg).unwrap();
    assert_eq!(
        ex.register(3, reg),
        Err(ExchangeError::AlreadyRegistered(3))
    );
    assert_eq!(
        ex.register(
            4,
            Registration {
                max_size: 5000,
                ..reg
            }
        ),
        Err(ExchangeError::InvalidRegistration(4))
    );
    assert_eq!(
        ex.set_local(now, 9, b"x"),
        Err(ExchangeError::UnknownCode(9))
    );
    assert!(matches!(
        ex.set_local(now, 3, &[0; 9]),
        Err(ExchangeError::EntryTooLarge { .. })
    ));
    ex.set_local(now, 3, b"abc").unwrap();
    assert_eq!(ex.poll_event(), Some(Event::ViewChanged(3)));
    // Unchanged value: no new version, no event.
    ex.set_local(now, 3, b"abc").unwrap();
    assert_eq!(ex.poll_event(), None);
    let v: Vec<_> = ex.entries(3).map(|e| (e.node, e.data.to_vec())).collect();
    assert_eq!(v, vec![(1, b"abc".to_vec())]);
}

/// Signed random and mutated datagrams into the full state machine (the
/// `handle_datagram` fuzz target in miniature): no panic, every datagram
/// is either accepted or counted under exactly one drop reason.
#[test]
fn state_machine_survives_signed_garbage() {
    use rand::rngs::SmallRng;
    let key = b"k";
    let auth = Authenticator::new(key);
    let t0 = Timestamp::now();
    let mut ex = Exchange::new(
        ExchangeConfig::new(5, 1, "127.0.0.1:7000".parse().unwrap()),
        key,
        t0,
    );
    let reg = Registration {
        period_ticks: 1,
        max_size: 16,
        flags: 0,
    };
    ex.register(1, reg).unwrap();
    ex.register(
        2,
        Registration {
            flags: NEEDS_SNAPSHOT,
            ..reg
        },
    )
    .unwrap();
    // A valid datagram from node 2 to mutate.
    let h = Header {
        flags: 0,
        sender: 2,
        epoch: 1,
        seq: 1,
        timestamp_ms: 0,
    };
    let member = encode_member("127.0.0.1:7002".parse().unwrap(), false);
    let mut b = Builder::new(&h, None, 1400);
    b.push(&WireEntry {
        code: 0,
        origin: 2,
        incarnation: 1,
        version: 10,
        ttl: 3,
        data: &member,
    });
    b.push(&WireEntry {
        code: 1,
        origin: 3,
        incarnation: 1,
        version: 1,
        ttl: 3,
        data: &[1; 8],
    });
    let good = b.finish(&auth);
    let body = &good[..good.len() - wire::MAC_LEN];
    let mut rng = SmallRng::seed_from_u64(3);
    let from: SocketAddr = "127.0.0.1:7002".parse().unwrap();
    for i in 0..20_000u64 {
        let mut m = if rng.gen_bool(0.5) {
            body.to_vec()
        } else {
            (0..rng.gen_range(0..120)).map(|_| rng.gen()).collect()
        };
        for _ in 0..rng.gen_range(0..4) {
            if !m.is_empty() {
                let j = rng.gen_range(0..m.len());
                m[j] = rng.gen();
            }
        }
        let tag = auth.tag(&m);
        m.extend_from_slice(&tag);
        let now = t0 + Duration::from_millis(i);
        let _ = ex.handle_datagram(now, from, &m);
        ex.handle_timeout(now);
        while ex.poll_transmit().is_some() {}
        while ex.poll_event().is_some() {}
    }
    let s = ex.stats();
    let dropped = s.truncated
        + s.bad_magic
        + s.unknown_version
        + s.bad_mac
        + s.malformed
        + s.replayed
        + s.stale_epoch
        + s.from_self
        + s.too_many_nodes;
    assert_eq!(s.datagrams_received, 20_000);
    assert_eq!(s.datagrams_accepted + dropped, s.datagrams_received);
    assert!(s.datagrams_accepted > 0 && s.malformed > 0 && s.bad_magic > 0);
}

/// More due entries than fit in one MTU: every datagram interleaves the
/// registrations, and the leftovers go out on the following ticks.
#[test]
fn truncation_is_fair_across_registrations() {
    let key = b"k";
    let auth = Authenticator::new(key);
    let t0 = Timestamp::now();
    let mut cfg = ExchangeConfig::new(1, 1, "10.0.0.1:7000".parse().unwrap());
    cfg.fill_entries = 0;
    let mut ex = Exchange::new(cfg, key, t0);
    let reg = Registration {
        period_ticks: 1,
        max_size: 100,
        flags: 0,
    };
    ex.register(1, reg).unwrap();
    ex.register(2, reg).unwrap();
    let h = Header {
        flags: 0,
        sender: 2,
        epoch: 1,
        seq: 1,
        timestamp_ms: 0,
    };
    let member = encode_member("10.0.0.2:7000".parse().unwrap(), false);
    let mut b = Builder::new(&h, None, 65_000);
    b.push(&WireEntry {
        code: 0,
        origin: 2,
        incarnation: 1,
        version: 1,
        ttl: 0,
        data: &member,
    });
    let data = [7u8; 100];
    for code in [1u8, 2] {
        for origin in 3..13 {
            b.push(&WireEntry {
                code,
                origin,
                incarnation: 1,
                version: 1,
                ttl: 3,
                data: &data,
            });
        }
    }
    let from: SocketAddr = "10.0.0.2:7000".parse().unwrap();
    ex.handle_datagram(t0, from, &b.finish(&auth)).unwrap();
    let mut seen: HashMap<(u8, NodeId), usize> = HashMap::new();
    for tick in 0..4u32 {
        let now = t0 + Duration::from_millis(100) * (tick + 1);
        ex.handle_timeout(now);
        let mut first = true;
        while let Some(t) = ex.poll_transmit() {
            assert!(t.bytes.len() <= 1400);
            let d = wire::decode(&t.bytes, &auth).unwrap();
            if !first {
                continue; // same datagram to other mates
            }
            first = false;
            let per_code = |c| d.entries.iter().filter(|e| e.code == c).count();
            if tick == 0 {
                // Full datagram, both registrations, neither starved.
                assert!(per_code(1) >= 4 && per_code(2) >= 4, "{:?}", d.entries);
                assert!(per_code(1).abs_diff(per_code(2)) <= 1);
            }
            for e in d.entries.iter().filter(|e| e.code != 0) {
                *seen.entry((e.code, e.origin)).or_default() += 1;
            }
        }
    }
    // Every relayed entry went out exactly once (relay_sends = 1).
    assert_eq!(seen.len(), 20);
    assert!(seen.values().all(|n| *n == 1));
    assert!(ex.stats().entries_deferred > 0);
}

/// Entries for an origin that never joined are forgotten after the
/// tombstone horizon instead of accumulating.
#[test]
fn orphan_entries_expire() {
    let key = b"k";
    let auth = Authenticator::new(key);
    let t0 = Timestamp::now();
    let mut cfg = ExchangeConfig::new(1, 1, "10.0.0.1:7000".parse().unwrap());
    cfg.tombstone_for = Duration::from_secs(5);
    let mut ex = Exchange::new(cfg, key, t0);
    let reg = Registration {
        period_ticks: 1,
        max_size: 8,
        flags: 0,
    };
    ex.register(1, reg).unwrap();
    let h = Header {
        flags: 0,
        sender: 2,
        epoch: 1,
        seq: 1,
        timestamp_ms: 0,
    };
    let mut b = Builder::new(&h, None, 1400);
    b.push(&WireEntry {
        code: 1,
        origin: 77,
        incarnation: 1,
        version: 1,
        ttl: 0,
        data: &[1],
    });
    ex.handle_datagram(t0, "10.0.0.2:7000".parse().unwrap(), &b.finish(&auth))
        .unwrap();
    let stored = |ex: &Exchange| ex.regs[&1].entries.contains_key(&77);
    assert!(stored(&ex));
    // Not live, so not in the view.
    assert_eq!(ex.entries(1).count(), 0);
    let mut t = t0;
    while t < t0 + Duration::from_secs(4) {
        t += Duration::from_millis(100);
        ex.handle_timeout(t);
    }
    assert!(stored(&ex));
    while t < t0 + Duration::from_secs(6) {
        t += Duration::from_millis(100);
        ex.handle_timeout(t);
    }
    assert!(!stored(&ex));
}

#[test]
fn ceil_log2_values() {
    assert_eq!(ceil_log2(1), 0);
    assert_eq!(ceil_log2(2), 1);
    assert_eq!(ceil_log2(3), 2);
    assert_eq!(ceil_log2(128), 7);
    assert_eq!(ceil_log2(129), 8);
}

/// A peer that falls silent while this node reports receive losses stays
/// suspect for `loss_grace` longer; without losses, or past the grace, it
/// is declared failed as usual.
#[test]
fn receive_losses_hold_failures_back() {
    let key = b"k";
    let auth = Authenticator::new(key);
    let t0 = Timestamp::from_duration(Duration::from_secs(10));
    let heartbeat = |seq: u64| {
        let h = Header {
            flags: 0,
            sender: 2,
            epoch: 1,
            seq,
            timestamp_ms: 0,
        };
        let member = encode_member("10.0.0.2:7000".parse().unwrap(), false);
        let mut b = Builder::new(&h, None, 1400);
        b.push(&WireEntry {
            code: 0,
            origin: 2,
            incarnation: 1,
            version: seq,
            ttl: 0,
            data: &member,
        });
        b.finish(&auth)
    };
    let from: SocketAddr = "10.0.0.2:7000".parse().unwrap();
    // Time of the failure with and without losses reported while silent.
    let failed_at = |lossy: bool| {
        let cfg = ExchangeConfig::new(1, 1, "10.0.0.1:7000".parse().unwrap());
        let mut ex = Exchange::new(cfg, key, t0);
        ex.handle_datagram(t0, from, &heartbeat(1)).unwrap();
        for ms in (100..10_000u64).step_by(100) {
            let now = t0 + Duration::from_millis(ms);
            if lossy && ms <= 2000 {
                ex.note_receive_loss(now);
            }
            ex.handle_timeout(now);
            while ex.poll_transmit().is_some() {}
            while let Some(ev) = ex.poll_event() {
                if ev == Event::Failed(2) {
                    return (ms, ex.stats().failures_held);
                }
            }
        }
        panic!("never failed");
    };
    // dead_after 1.5 s.
    assert_eq!(failed_at(false), (1500, 0));
    // Held until dead_after + loss_grace (3 s), then failed.
    let (ms, held) = failed_at(true);
    assert_eq!(ms, 3000);
    assert!(held >= 10, "{held}");
}
