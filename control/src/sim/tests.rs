use std::time::Duration;

use super::*;
use crate::exchange::wire::{KeyId, WireEntry};
use crate::exchange::{Event, MemberState};

const STEP: Duration = Duration::from_millis(10);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn demand(id: NodeId) -> u64 {
    u64::from(id) * 7 + 3
}

/// Starts `n` nodes, waits for membership and sets every demand.
fn converged_pool(cfg: SimConfig) -> Sim {
    let mut sim = Sim::new(cfg);
    sim.run_until_pred(STEP, Duration::from_secs(10), |s| s.membership_converged())
        .expect("membership converges");
    for id in sim.running() {
        sim.set_demand(id, demand(id));
    }
    sim.run_until_pred(STEP, Duration::from_secs(5), |s| {
        s.view_converged(DEMAND, demand)
    })
    .expect("views converge");
    sim
}

fn failed_events(sim: &Sim) -> Vec<(NodeId, Duration, NodeId)> {
    let mut v = Vec::new();
    for (i, evs) in sim.events.iter().enumerate() {
        for (t, e) in evs {
            if let Event::Failed(n) = e {
                v.push((i as NodeId + 1, *t, *n));
            }
        }
    }
    v
}

#[test]
fn views_and_sums_converge_with_loss_and_reordering() {
    for (n, seed) in [(3, 1), (16, 2), (64, 3)] {
        let mut cfg = SimConfig::new(n, seed);
        cfg.loss = 0.05;
        cfg.max_delay = ms(30); // far beyond min delay: heavy reordering
        let mut sim = converged_pool(cfg);
        let expect: u64 = (1..=n as NodeId).map(demand).sum();
        for id in sim.running() {
            assert_eq!(sim.sum_seen(id, DEMAND), expect, "n={n} node {id}");
        }
        // A later change spreads too and the derived value agrees again.
        sim.set_demand(2, 1_000);
        let t = sim
            .run_until_pred(STEP, Duration::from_secs(3), |s| {
                s.view_converged(DEMAND, |id| if id == 2 { 1_000 } else { demand(id) })
            })
            .expect("update converges");
        assert!(t <= ms(1000), "n={n}: update took {t:?}");
        let sums: Vec<u64> = sim
            .running()
            .iter()
            .map(|id| sim.sum_seen(*id, DEMAND))
            .collect();
        assert!(sums.iter().all(|s| *s == expect - demand(2) + 1_000));
        assert!(failed_events(&sim).is_empty(), "false failure at n={n}");
    }
}

#[test]
fn sizing_128_nodes() {
    let s = measure(128, 7, ms(500), ms(500)).expect("128 nodes converge");
    println!("{s:?}");
    // One node's change reaches all 128 within ~2 intervals; a burst of
    // changes from every node at once is bounded by the MTU.
    assert!(s.converge_one <= ms(300), "{s:?}");
    assert!(s.converge_all <= ms(2000), "{s:?}");
    assert!(s.bytes_per_node_s_busy < 150_000.0, "{s:?}");
    assert!(s.bytes_per_node_s_idle < 100_000.0, "{s:?}");
    assert_eq!(s.false_failures, 0, "{s:?}");
    assert!(s.detection <= ms(2000), "{s:?}");
}

#[test]
fn killed_node_is_dropped_by_all_within_detection_time() {
    let mut cfg = SimConfig::new(16, 11);
    cfg.loss = 0.05;
    let mut sim = converged_pool(cfg);
    sim.run_for(Duration::from_secs(2));
    let killed_at = sim.now();
    sim.kill(5);
    sim.run_for(Duration::from_secs(3));
    let fails = failed_events(&sim);
    let survivors: Vec<NodeId> = sim.running();
    let mut worst = Duration::ZERO;
    for id in &survivors {
        let t = fails
            .iter()
            .find(|(by, _, n)| by == id && *n == 5)
            .map(|(_, t, _)| *t - killed_at)
            .unwrap_or_else(|| panic!("node {id} never detected the failure"));
        worst = worst.max(t);
    }
    println!("worst detection time: {worst:?}");
    assert!(worst <= Duration::from_secs(2), "{worst:?}");
    assert!(
        fails.iter().all(|(_, _, n)| *n == 5),
        "false positives: {fails:?}"
    );
    assert!(sim.membership_converged());
    let expect: u64 = survivors.iter().map(|id| demand(*id)).sum();
    for id in &survivors {
        assert_eq!(sim.sum_seen(*id, DEMAND), expect);
        assert_eq!(sim.node(*id).unwrap().master(), 1);
    }
}

#[test]
fn killed_master_moves_master_and_restart_rejoins() {
    let mut sim = converged_pool(SimConfig::new(8, 12));
    sim.kill(1);
    sim.run_until_pred(STEP, Duration::from_secs(3), |s| s.membership_converged())
        .expect("failure detected");
    for id in sim.running() {
        assert_eq!(sim.node(id).unwrap().master(), 2);
    }
    // Stale relays of node 1 must not resurrect it while it is down.
    sim.run_for(Duration::from_secs(2));
    assert!(sim.membership_converged());
    sim.restart(1);
    sim.set_demand(1, 4242);
    sim.run_until_pred(STEP, Duration::from_secs(3), |s| {
        s.membership_converged()
            && s.view_converged(DEMAND, |id| if id == 1 { 4242 } else { demand(id) })
    })
    .expect("restarted node rejoins with its new value");
    for id in 2..=8 {
        assert!(sim.events[(id - 1) as usize]
            .iter()
            .any(|(_, e)| *e == Event::MasterChanged(1)));
    }
}

#[test]
fn graceful_leave_is_seen_by_all() {
    let mut sim = converged_pool(SimConfig::new(16, 13));
    let t0 = sim.now();
    sim.leave(9);
    let took = sim
        .run_until_pred(STEP, Duration::from_secs(1), |s| s.membership_converged())
        .expect("leave seen");
    println!("leave seen by all after {took:?}");
    sim.run_for(Duration::from_secs(3));
    for id in sim.running() {
        let evs = &sim.events[(id - 1) as usize];
        assert!(evs.iter().any(|(t, e)| *e == Event::Left(9) && *t >= t0));
        let st = sim
            .node(id)
            .unwrap()
            .members()
            .find(|m| m.0 == 9)
            .unwrap()
            .1;
        assert_eq!(st, MemberState::Left);
    }
    assert!(failed_events(&sim).is_empty());
}

#[test]
fn partition_heals() {
    let mut cfg = SimConfig::new(16, 14);
    cfg.loss = 0.02;
    let mut sim = converged_pool(cfg);
    // Nodes 1..=8 vs 9..=16; seeds (1..=3) are all on one side.
    sim.partition((0..16).map(|i| u8::from(i >= 8)).collect());
    sim.run_for(Duration::from_secs(4));
    for id in 1..=8 {
        assert_eq!(
            sim.node(id).unwrap().live_nodes(),
            (1..=8).collect::<Vec<_>>()
        );
    }
    for id in 9..=16 {
        assert_eq!(
            sim.node(id).unwrap().live_nodes(),
            (9..=16).collect::<Vec<_>>()
        );
        assert_eq!(sim.node(id).unwrap().master(), 9);
    }
    // Each side changes values while split.
    sim.set_demand(3, 333);
    sim.set_demand(12, 1212);
    sim.heal();
    let expect = |id: NodeId| match id {
        3 => 333,
        12 => 1212,
        _ => demand(id),
    };
    let took = sim
        .run_until_pred(STEP, Duration::from_secs(8), |s| {
            s.membership_converged() && s.view_converged(DEMAND, expect)
        })
        .expect("partition heals");
    println!("partition healed after {took:?}");
    let total: u64 = (1..=16).map(expect).sum();
    for id in sim.running() {
        assert_eq!(sim.sum_seen(id, DEMAND), total);
        assert_eq!(sim.node(id).unwrap().master(), 1);
    }
}

#[test]
fn master_snapshot_is_identical_everywhere() {
    let mut sim = converged_pool(SimConfig::new(12, 15));
    for id in sim.running() {
        sim.set(id, FROZEN, u64::from(id) + 100);
    }
    sim.run_for(Duration::from_secs(3));
    let master_snap = sim.node(1).unwrap().snapshot(FROZEN).unwrap().clone();
    // During start-up every node briefly believes it is master, so a few
    // early snapshots are rightly rejected; none once membership settled.
    let rejected_before = sim.node(5).unwrap().stats().snapshot_rejected;
    assert_eq!(master_snap.master, 1);
    assert_eq!(master_snap.entries.len(), 12);
    // Next snapshot round: every node installs exactly the master's copy.
    sim.run_until_pred(STEP, Duration::from_secs(3), |s| {
        let m = s.node(1).unwrap().snapshot(FROZEN).unwrap();
        m.id > master_snap.id
            && s.running()
                .iter()
                .all(|id| s.node(*id).unwrap().snapshot(FROZEN) == Some(m))
    })
    .expect("snapshots agree");
    let snap = sim.node(5).unwrap().snapshot(FROZEN).unwrap();
    for (n, (_, d)) in &snap.entries {
        assert_eq!(d.as_slice(), &(u64::from(*n) + 100).to_be_bytes());
    }
    assert_eq!(
        sim.node(5).unwrap().stats().snapshot_rejected,
        rejected_before
    );
}

#[test]
fn spoofed_datagrams_are_counted_and_change_nothing() {
    let mut sim = converged_pool(SimConfig::new(6, 16));
    let before: Vec<(Vec<NodeId>, u64, NodeId)> = sim
        .running()
        .iter()
        .map(|id| {
            let ex = sim.node(*id).unwrap();
            (ex.live_nodes(), sim.sum_seen(*id, DEMAND), ex.master())
        })
        .collect();
    // A forged heartbeat for a new lowest id (would become master) and a
    // forged demand entry for node 4, with a wrong key, from a plausible source.
    let member = [0u8, 4, 10, 0, 0, 99, 0x1b, 0x58];
    let val = u64::MAX.to_be_bytes();
    let bad = forge(
        b"wrong key",
        0,
        0,
        9,
        1,
        &[
            WireEntry {
                code: 0,
                origin: 0,
                incarnation: 9,
                version: u64::MAX,
                ttl: 5,
                data: &member,
            },
            WireEntry {
                code: DEMAND,
                origin: 4,
                incarnation: 1,
                version: u64::MAX,
                ttl: 5,
                data: &val,
            },
        ],
    );
    for id in sim.running() {
        for k in 0..5 {
            sim.inject(id, addr_of(1), &bad);
            // Tampered copies of a genuine datagram fail too.
            let mut t = bad.clone();
            t[10 + k] ^= 0xff;
            sim.inject(id, addr_of(2), &t);
        }
    }
    sim.run_for(Duration::from_secs(2));
    for (i, id) in sim.running().iter().enumerate() {
        let ex = sim.node(*id).unwrap();
        assert_eq!(ex.stats().bad_mac, 10, "node {id}");
        assert_eq!(
            (ex.live_nodes(), sim.sum_seen(*id, DEMAND), ex.master()),
            before[i]
        );
        assert!(!sim.events[i].iter().any(|(_, e)| *e == Event::Joined(0)));
    }
}

#[test]
fn replayed_datagrams_are_rejected() {
    let mut sim = converged_pool(SimConfig::new(4, 17));
    sim.capture = Some(Vec::new());
    sim.set_demand(2, 111);
    sim.run_for(ms(500));
    // Capture genuine datagrams from node 2 that carried the value 111.
    let old: Vec<Captured> = sim
        .capture
        .take()
        .unwrap()
        .into_iter()
        .filter(|c| c.from == addr_of(2))
        .collect();
    assert!(!old.is_empty());
    sim.set_demand(2, 222);
    sim.run_until_pred(STEP, Duration::from_secs(2), |s| {
        s.view_converged(DEMAND, |id| if id == 2 { 222 } else { demand(id) })
    })
    .expect("new value spreads");
    let replayed_before: u64 = sim
        .running()
        .iter()
        .map(|id| sim.node(*id).unwrap().stats().replayed)
        .sum();
    // Replay every captured datagram to its original receiver and to others.
    for c in &old {
        for to in [1, 3, 4] {
            sim.inject(to, c.from, &c.bytes);
        }
    }
    let replayed_after: u64 = sim
        .running()
        .iter()
        .map(|id| sim.node(*id).unwrap().stats().replayed)
        .sum();
    assert!(replayed_after - replayed_before >= old.len() as u64);
    assert!(sim.view_converged(DEMAND, |id| if id == 2 { 222 } else { demand(id) }));
    // A genuine datagram from an older boot epoch of node 2 is refused too.
    let stale = forge(SIM_KEY, 0, 2, 0, u64::MAX, &[]);
    sim.inject(1, addr_of(2), &stale);
    assert_eq!(sim.node(1).unwrap().stats().stale_epoch, 1);
}

#[test]
fn simulation_is_deterministic() {
    let run = || {
        let mut cfg = SimConfig::new(8, 99);
        cfg.loss = 0.1;
        let mut sim = Sim::new(cfg);
        sim.run_for(Duration::from_secs(2));
        sim.kill(3);
        sim.run_for(Duration::from_secs(3));
        (sim.bytes_sent(), sim.events.clone())
    };
    assert_eq!(run(), run());
}

#[test]
fn fast_restart_replaces_old_incarnation() {
    let mut sim = converged_pool(SimConfig::new(8, 18));
    let t0 = sim.now();
    // Restarted well before anyone could declare it failed.
    sim.kill(4);
    sim.run_for(ms(200));
    sim.restart(4);
    sim.set_demand(4, 9_999);
    sim.run_until_pred(STEP, Duration::from_secs(3), |s| {
        s.view_converged(DEMAND, |id| if id == 4 { 9_999 } else { demand(id) })
    })
    .expect("new incarnation's value everywhere");
    for id in sim.running().into_iter().filter(|id| *id != 4) {
        let evs = &sim.events[(id - 1) as usize];
        assert!(evs.iter().any(|(t, e)| *t > t0 && *e == Event::Joined(4)));
        let e = sim
            .node(id)
            .unwrap()
            .entries(DEMAND)
            .find(|e| e.node == 4)
            .unwrap();
        assert_eq!(e.incarnation, 2);
    }
    assert!(failed_events(&sim).is_empty());
}

/// Every membership change any node saw (anything but `ViewChanged` of
/// entries): a rotation must not cause one.
fn membership_events(sim: &Sim) -> Vec<(NodeId, Duration, Event)> {
    let mut v = Vec::new();
    for (i, evs) in sim.events.iter().enumerate() {
        for (t, e) in evs {
            if matches!(e, Event::Failed(_) | Event::Left(_) | Event::Joined(_)) {
                v.push((i as NodeId + 1, *t, *e));
            }
        }
    }
    v
}

#[test]
fn the_pool_key_rotates_one_server_at_a_time_without_a_split() {
    const NEXT: &[u8] = b"the next simulated pool key";
    for (n, seed) in [(3, 31), (5, 32), (8, 33)] {
        let mut cfg = SimConfig::new(n, seed);
        cfg.loss = 0.02;
        let mut sim = converged_pool(cfg);
        let before = membership_events(&sim).len();
        let all: Vec<NodeId> = sim.running();
        let expect: u64 = all.iter().map(|&id| demand(id)).sum();
        let (a, b) = (KeyId::of(SIM_KEY), KeyId::of(NEXT));
        // After each server's reload, a few seconds of gossip (more than
        // dead_after) in which every server must keep every other one and
        // the pool-wide view.
        let steady = |sim: &mut Sim, what: &str| {
            for _ in 0..30 {
                sim.run_for(ms(100));
                assert!(sim.membership_converged(), "n={n} {what}: membership lost");
            }
            for id in sim.running() {
                assert_eq!(
                    sim.sum_seen(id, DEMAND),
                    expect,
                    "n={n} {what}: node {id}'s view"
                );
            }
        };
        // 1. Every server accepts the next key, still signing with the old.
        for &id in &all {
            sim.set_keys(id, SIM_KEY, Some(NEXT));
            steady(&mut sim, &format!("node {id} accepts the next key"));
        }
        assert!(all
            .iter()
            .all(|&id| sim.node(id).unwrap().key_ids() == (a, Some(b))));
        // 2. Every server signs with the next key, still accepting the old.
        for (k, &id) in all.iter().enumerate() {
            sim.set_keys(id, NEXT, Some(SIM_KEY));
            steady(&mut sim, &format!("node {id} signs with the next key"));
            // The servers that switched see the others on the rotation key
            // (still signing with the old one), and the others see them.
            let (done, todo) = all.split_at(k + 1);
            for &x in done {
                assert_eq!(
                    sim.node(x).unwrap().peers_on_rotation_key(),
                    todo,
                    "n={n} node {x}"
                );
            }
            for &x in todo {
                assert_eq!(
                    sim.node(x).unwrap().peers_on_rotation_key(),
                    done,
                    "n={n} node {x}"
                );
            }
        }
        // 3. Every server drops the old key.
        for &id in &all {
            sim.set_keys(id, NEXT, None);
            steady(&mut sim, &format!("node {id} drops the old key"));
        }
        let bad: Vec<u64> = all
            .iter()
            .map(|&id| sim.node(id).unwrap().stats().bad_mac)
            .collect();
        assert!(
            bad.iter().all(|&b| b == 0),
            "n={n}: datagrams refused {bad:?}"
        );
        let rotated: u64 = all
            .iter()
            .map(|&id| sim.node(id).unwrap().stats().rotation_key_verified)
            .sum();
        assert!(rotated > 0, "n={n}: the rotation key was never needed");
        assert!(all
            .iter()
            .all(|&id| sim.node(id).unwrap().peers_on_rotation_key().is_empty()));
        assert_eq!(
            membership_events(&sim).len(),
            before,
            "n={n}: {:?}",
            &membership_events(&sim)[before..]
        );
    }
}

#[test]
fn a_server_that_switches_keys_without_the_rotation_window_splits_the_pool() {
    // The control: what the window prevents.
    let mut sim = converged_pool(SimConfig::new(3, 34));
    sim.set_keys(3, b"the next simulated pool key", None);
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.node(1).unwrap().live_nodes(), [1, 2]);
    assert_eq!(sim.node(3).unwrap().live_nodes(), [3]);
    assert!(sim.node(1).unwrap().stats().bad_mac > 0);
    assert!(failed_events(&sim)
        .iter()
        .any(|&(at, _, gone)| at == 1 && gone == 3));
}
