//! Simulation tests of the policy distribution (see `sim.rs`): every node
//! is a real exchange plus a real policy state machine; the network loses
//! 1% of datagrams and delays them 0.2-2 ms; every node's clock has its own
//! offset (up to an hour) and rate (up to 1% off), and its wall clock its
//! own skew (up to 10 minutes).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::sim::{PolicySim, PolicySimConfig};
use super::*;
use crate::exchange::wire::{WireEntry, FLAG_DIRECT};
use crate::exchange::NodeId;
use crate::sim::Simulation;

/// Runs `f` over `n` mutations of `seed` (bit flips, byte changes,
/// truncations, insertions) and random byte strings.
pub(crate) fn fuzz_bytes(seed: &[u8], n: usize, rng_seed: u64, mut f: impl FnMut(&[u8])) {
    let mut rng = SmallRng::seed_from_u64(rng_seed);
    for _ in 0..n {
        let mut m = if rng.gen_bool(0.8) && !seed.is_empty() {
            seed.to_vec()
        } else {
            (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect()
        };
        for _ in 0..rng.gen_range(0..4) {
            if m.is_empty() {
                break;
            }
            let i = rng.gen_range(0..m.len());
            match rng.gen_range(0..4) {
                0 => m[i] ^= 1 << rng.gen_range(0..8),
                1 => m[i] = rng.gen(),
                2 => m.truncate(i),
                _ => m.insert(i, rng.gen()),
            }
        }
        f(&m);
    }
}

const STEP: Duration = Duration::from_millis(10);

fn secs(v: u64) -> Duration {
    Duration::from_secs(v)
}

fn doc(tag: &str) -> Vec<u8> {
    format!("# {tag}\n[jobs.gold]\nweight = 70\n[jobs.bronze]\nweight = 30\n").into_bytes()
}

/// A formed pool: every node runs the initial policy (v1) and is current.
fn pool(n: usize, seed: u64) -> PolicySim {
    let mut cfg = PolicySimConfig::new(n, seed);
    cfg.initial = Some(doc("initial"));
    pool_with(cfg)
}

fn pool_with(cfg: PolicySimConfig) -> PolicySim {
    let mut sim = PolicySim::new(cfg);
    sim.run_until_pred(STEP, secs(20), |s| {
        s.membership_converged() && s.all_current() && {
            let v = s.active(1);
            v.is_some() && s.running().iter().all(|id| s.active(*id) == v)
        }
    })
    .expect("pool forms, runs one version, every node current");
    sim
}

/// Waits for the result of `req` on node `id`.
fn wait(sim: &mut PolicySim, id: NodeId, req: ReqId, limit: Duration) -> ApplyResult {
    sim.run_until_pred(STEP, limit, |s| s.result(id, req).is_some())
        .unwrap_or_else(|| panic!("apply {req:?} on node {id} did not finish"));
    sim.result(id, req).cloned().expect("finished")
}

fn done(r: ApplyResult) -> Report {
    match r {
        ApplyResult::Done(rep) => rep,
        other => panic!("expected Done, got {other:?}"),
    }
}

fn current_event(sim: &PolicySim, id: NodeId, after: Duration) -> Option<Option<VersionId>> {
    sim.events[(id - 1) as usize]
        .iter()
        .filter(|(t, _)| *t >= after)
        .find_map(|(_, e)| match e {
            PolicyEvent::Current { active } => Some(*active),
            _ => None,
        })
}

/// No two nodes hold the same version id with different content.
fn assert_ids_unique(sim: &PolicySim) {
    let mut seen: BTreeMap<VersionId, Hash> = BTreeMap::new();
    for id in sim.running() {
        for h in sim.node(id).unwrap().history() {
            if let Some(hash) = h.doc_hash {
                let prev = seen.insert(h.id, hash);
                assert!(
                    prev.is_none_or(|p| p == hash),
                    "{} published with two contents",
                    h.id.long()
                );
            }
        }
    }
}

/// One apply on the last node (never the master) of a formed pool; checks
/// the report, that every node runs it, the history, and returns the time
/// from apply to active on every node.
fn apply_everywhere(sim: &mut PolicySim, tag: &str) -> (VersionId, Duration) {
    let n = sim.running().len();
    let author = *sim.running().last().unwrap();
    let t0 = sim.now();
    let before = sim.active(1).unwrap();
    let req = sim.apply(author, &doc(tag), "alice", tag).unwrap();
    let rep = done(wait(sim, author, req, secs(5)));
    let v = rep.version;
    assert!(v > before && v.seq > before.seq, "{v:?} after {before:?}");
    assert_eq!(rep.active as usize, n, "{rep:?}");
    assert!(
        rep.rejected.is_empty() && rep.stragglers.is_empty(),
        "{rep:?}"
    );
    sim.run_until_pred(STEP, secs(2), |s| s.all_active(v, &[]))
        .expect("every node runs it");
    let acts = sim.activations(v);
    assert_eq!(acts.len(), n, "one activation per node");
    let last = acts.iter().map(|(_, t)| *t).max().unwrap();
    for id in sim.running() {
        let p = sim.node(id).unwrap();
        assert_eq!(p.active_document(), Some(&doc(tag)[..]));
        let h = p.history().find(|h| h.id == v).expect("in history");
        assert_eq!(
            (h.author, h.user.as_str(), h.message.as_str()),
            (author, "alice", tag)
        );
        assert_eq!(h.status, HistoryStatus::Published);
    }
    (v, last - t0)
}

#[test]
fn apply_reaches_every_node_3_16_64() {
    for (n, seed) in [(3usize, 1u64), (16, 2), (64, 3)] {
        let mut sim = pool(n, seed);
        let since = sim.now();
        let mut worst = Duration::ZERO;
        for k in 0..3 {
            let (_, took) = apply_everywhere(&mut sim, &format!("change {k}"));
            worst = worst.max(took);
        }
        println!("{n} nodes: apply to active everywhere, worst of 3: {worst:?}");
        assert!(worst < Duration::from_millis(500), "{n} nodes: {worst:?}");
        assert!(sim.failures_since(since).is_empty(), "false failures");
        assert_ids_unique(&sim);
    }
}

#[test]
fn history_keeps_each_authors_own_wall_clock() {
    let mut sim = pool(3, 4);
    let (v, _) = apply_everywhere(&mut sim, "x");
    // Wall clocks are skewed per node: the history keeps the author's, the
    // same on every node, and ordering never used it.
    let times: Vec<u64> = sim
        .running()
        .iter()
        .map(|id| {
            sim.node(*id)
                .unwrap()
                .history()
                .find(|h| h.id == v)
                .unwrap()
                .author_ms
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] == w[1]));
    let initial = sim.node(1).unwrap().history().next().unwrap().clone();
    assert_eq!(initial.kind, Some(Kind::Initial));
    assert_eq!(initial.user, "node file");
}

#[test]
fn concurrent_applies_yield_consecutive_versions() {
    let mut sim = pool(16, 5);
    let since = sim.now();
    let base = sim.active(1).unwrap();
    let ra = sim.apply(5, &doc("from five"), "alice", "a").unwrap();
    let rb = sim.apply(9, &doc("from nine"), "bob", "b").unwrap();
    let a = done(wait(&mut sim, 5, ra, secs(5)));
    let b = done(wait(&mut sim, 9, rb, secs(5)));
    let mut seqs = [a.version.seq, b.version.seq];
    seqs.sort_unstable();
    assert_eq!(seqs, [base.seq + 1, base.seq + 2]);
    assert_eq!(a.active, 16);
    assert_eq!(b.active, 16);
    let last = a.version.max(b.version);
    sim.run_until_pred(STEP, secs(2), |s| s.all_active(last, &[]))
        .expect("all run the later one");
    // Every node saw both, in the same order, under the same ids.
    let hist: Vec<Vec<VersionId>> = sim
        .running()
        .iter()
        .map(|id| sim.node(*id).unwrap().history().map(|h| h.id).collect())
        .collect();
    assert!(hist.windows(2).all(|w| w[0] == w[1]), "{hist:?}");
    assert!(sim.failures_since(since).is_empty());
    assert_ids_unique(&sim);
}

#[test]
fn invalid_document_changes_nothing() {
    let mut sim = pool(3, 6);
    let v = sim.active(1).unwrap();
    let sent = sim.exchange(3).unwrap().direct_stats().sent;
    let err = sim.apply(3, b"invalid = [", "eve", "oops").unwrap_err();
    assert_eq!(
        err.to_string(),
        "policy.toml:1: jobs: invalid document",
        "the validator's message, as operators read it"
    );
    sim.run_for(secs(1));
    assert_eq!(sim.exchange(3).unwrap().direct_stats().sent, sent);
    assert!(sim.all_active(v, &[]));
    let too_big = vec![b'#'; MAX_DOCUMENT + 1];
    assert!(matches!(
        sim.apply(3, &too_big, "eve", ""),
        Err(PolicyError::TooLarge { .. })
    ));
    // Applying the active document again is refused as unchanged.
    let same = sim.node(2).unwrap().active_document().unwrap().to_vec();
    let req = sim.apply(2, &same, "eve", "again").unwrap();
    match wait(&mut sim, 2, req, secs(3)) {
        ApplyResult::Refused(why) => assert!(why.starts_with("unchanged"), "{why}"),
        r => panic!("{r:?}"),
    }
    assert!(sim.all_active(v, &[]));
}

#[test]
fn rejecting_node_is_reported_and_keeps_its_version() {
    let mut sim = pool(16, 7);
    let v1 = sim.active(1).unwrap();
    sim.refuse(7, b"feature-x");
    let mut d = doc("x");
    d.extend_from_slice(b"# feature-x\n");
    let req = sim.apply(12, &d, "carol", "needs feature x").unwrap();
    let rep = done(wait(&mut sim, 12, req, secs(5)));
    assert_eq!(rep.active, 15, "{rep:?}");
    assert_eq!(rep.rejected.len(), 1);
    assert_eq!(rep.rejected[0].0, 7);
    assert!(
        rep.rejected[0].1.contains("node 7 cannot compile"),
        "{rep:?}"
    );
    assert!(rep.stragglers.is_empty());
    assert!(sim.all_active(rep.version, &[7]));
    assert_eq!(sim.active(7), Some(v1));
    assert!(
        sim.node(7).unwrap().in_sync(),
        "keeping the previous version is in sync"
    );
    assert!(sim
        .events_of(
            7,
            |e| matches!(e, PolicyEvent::Rejected { id, .. } if *id == rep.version)
        )
        .next()
        .is_some());
    // Every node's status shows node 7's version and refusal by name.
    sim.run_until_pred(STEP, secs(3), |s| {
        let p = s.node(2).unwrap().pool(s.exchange(2).unwrap());
        let n7 = p.iter().find(|p| p.node == 7).unwrap();
        n7.active == Some(v1) && n7.rejected.as_ref().is_some_and(|r| r.0 == rep.version)
    })
    .expect("node 7's refusal visible from node 2");
    // The next version it can compile, it runs.
    let (v3, _) = apply_everywhere(&mut sim, "y");
    assert_eq!(sim.active(7), Some(v3));
}

#[test]
fn a_version_every_node_refuses_fails_and_changes_nothing() {
    let mut sim = pool(3, 8);
    let v1 = sim.active(1).unwrap();
    for id in 1..=3 {
        sim.refuse(id, b"unsupported");
    }
    // The requester's own validator refuses it first: nothing is sent.
    assert!(matches!(
        sim.apply(2, b"# unsupported\n", "dan", ""),
        Err(PolicyError::Invalid(_))
    ));
    // Accepted by the requester, then refused at staging by every node
    // (its own included: the validator changed in between).
    let req = sim.apply(2, b"# needs-x\n", "dan", "x").unwrap();
    for id in 1..=3 {
        sim.refuse(id, b"needs-x");
    }
    let rep = done(wait(&mut sim, 2, req, secs(5)));
    assert_eq!(rep.active, 0, "{rep:?}");
    assert_eq!(
        rep.rejected.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    sim.run_for(secs(2));
    assert!(sim.all_active(v1, &[]));
    let h = sim.node(1).unwrap().history().last().unwrap().clone();
    assert_eq!((h.id, h.status), (rep.version, HistoryStatus::Failed));
    assert!(sim.all_current());
    // The pool goes on: the next version is numbered after the failed one.
    let (v3, _) = apply_everywhere(&mut sim, "after failure");
    assert_eq!(v3.seq, rep.version.seq + 1);
}

#[test]
fn rollback_publishes_an_old_version_as_new() {
    let mut sim = pool(3, 9);
    let (v2, _) = apply_everywhere(&mut sim, "two");
    let (_v3, _) = apply_everywhere(&mut sim, "three");
    let req = sim.rollback(2, v2.seq, "erin").unwrap();
    let rep = done(wait(&mut sim, 2, req, secs(5)));
    let v4 = rep.version;
    assert_eq!(v4.seq, v2.seq + 2);
    sim.run_until_pred(STEP, secs(2), |s| s.all_active(v4, &[]))
        .unwrap();
    for id in sim.running() {
        let p = sim.node(id).unwrap();
        assert_eq!(p.active_document(), Some(&doc("two")[..]));
        let h = p.history().last().unwrap();
        assert_eq!(h.kind, Some(Kind::Rollback { to: v2.seq }));
        assert_eq!(h.user, "erin");
    }
    assert!(matches!(
        sim.rollback(2, 99, "erin"),
        Err(PolicyError::UnknownVersion(99))
    ));
}

#[test]
fn large_document_is_chunked_and_limit_is_exact() {
    let mut sim = pool(16, 10);
    let mut big = Vec::with_capacity(MAX_DOCUMENT);
    let mut rng = SmallRng::seed_from_u64(1);
    while big.len() < MAX_DOCUMENT {
        big.extend_from_slice(format!("# filler line {}\n", rng.gen::<u64>()).as_bytes());
    }
    big.truncate(MAX_DOCUMENT);
    let t0 = sim.now();
    let req = sim.apply(9, &big, "frank", "256 KiB").unwrap();
    let rep = done(wait(&mut sim, 9, req, secs(10)));
    assert_eq!(rep.active, 16, "{rep:?}");
    sim.run_until_pred(STEP, secs(2), |s| s.all_active(rep.version, &[]))
        .unwrap();
    println!("256 KiB to 16 nodes: {:?}", sim.now() - t0);
    for id in sim.running() {
        assert_eq!(sim.node(id).unwrap().active_document(), Some(&big[..]));
    }
    // 203 chunks at MTU 1400 through the windowed fetch.
    let chunk = sim.exchange(9).unwrap().max_direct_len() - wire::CHUNK_OVERHEAD;
    assert!(big.len().div_ceil(chunk) > 200);
    big.push(b'\n');
    assert!(matches!(
        sim.apply(9, &big, "frank", ""),
        Err(PolicyError::TooLarge { len, max }) if len == MAX_DOCUMENT + 1 && max == MAX_DOCUMENT
    ));
}

#[test]
fn partition_both_sides_apply_then_heal_converges_and_reports_the_loss() {
    for (n, seed) in [(16usize, 11u64), (64, 21)] {
        partition_then_heal(n, seed);
    }
}

fn partition_then_heal(n: usize, seed: u64) {
    let mut sim = pool(n, seed);
    let v1 = sim.active(1).unwrap();
    let half = n as NodeId / 2;
    let side_a: Vec<NodeId> = (1..=half).collect();
    let side_b: Vec<NodeId> = (half + 1..=n as NodeId).collect();
    // Two halves, masters 1 and half + 1.
    sim.partition((0..n).map(|i| u8::from(i >= n / 2)).collect());
    sim.run_until_pred(STEP, secs(6), |s| {
        side_a
            .iter()
            .all(|id| s.exchange(*id).unwrap().live_nodes() == side_a)
            && side_b
                .iter()
                .all(|id| s.exchange(*id).unwrap().live_nodes() == side_b)
    })
    .expect("the sides see each other fail");
    let (author_a, author_b) = (4, half + 4);
    let ra = sim
        .apply(author_a, &doc("side a"), "alice", "gold 70")
        .unwrap();
    let rb = sim
        .apply(author_b, &doc("side b"), "bob", "gold 60")
        .unwrap();
    let a = done(wait(&mut sim, author_a, ra, secs(5))).version;
    let b = done(wait(&mut sim, author_b, rb, secs(5))).version;
    // Same number, different terms: never the same id with two contents.
    assert_eq!(a.seq, v1.seq + 1);
    assert_eq!(b.seq, v1.seq + 1);
    assert_ne!(a, b);
    assert_eq!(a.term.node, 1);
    assert_eq!(b.term.node, half + 1);
    assert!(b > a, "the side whose master started the newer term wins");
    assert!(side_a.iter().all(|id| sim.active(*id) == Some(a)));
    assert!(side_b.iter().all(|id| sim.active(*id) == Some(b)));
    assert_ids_unique(&sim);
    sim.heal();
    let healed_at = sim.now();
    // Converges on b's content, then on the merge version recording a.
    sim.run_until_pred(STEP, secs(15), |s| {
        let m = s.active(1);
        m > Some(b)
            && s.running().iter().all(|id| s.active(*id) == m)
            && s.node(1).unwrap().active().unwrap().0.kind == Kind::Merge
            && s.all_current()
    })
    .expect("pool converges on one version after heal");
    println!(
        "{n} nodes: converged {:?} after heal",
        sim.now() - healed_at
    );
    let merge = sim.active(1).unwrap();
    for id in sim.running() {
        let p = sim.node(id).unwrap();
        assert_eq!(p.active_document(), Some(&doc("side b")[..]), "node {id}");
        let lost = p
            .history()
            .find(|h| h.id == a)
            .expect("lost version in history");
        assert!(
            matches!(lost.status, HistoryStatus::Lost { .. }),
            "node {id}: {lost:?}"
        );
        assert!(lost.in_merge);
        assert_eq!((lost.author, lost.user.as_str()), (author_a, "alice"));
        let m = p.history().find(|h| h.id == merge).unwrap();
        assert!(
            m.message.contains("dropped") && m.message.contains("alice"),
            "{}",
            m.message
        );
    }
    // Side A's nodes raised the audit event; the author learned its change lost.
    for &id in &side_a {
        assert!(
            sim.events_of(
                id,
                |e| matches!(e, PolicyEvent::Lost { lost, .. } if lost.iter().any(|l| l.id == a))
            )
            .next()
            .is_some(),
            "node {id} reported the loss"
        );
    }
    // One merge, not one per reporting node.
    let merges = sim
        .node(1)
        .unwrap()
        .history()
        .filter(|h| h.kind == Some(Kind::Merge))
        .count();
    assert_eq!(merges, 1);
    assert_ids_unique(&sim);
}

/// Kills the master while a rollout is in the given phase; the next master
/// finishes it and the requester gets its answer.
#[test]
fn master_failover_mid_rollout() {
    for (n, phase, seed) in [
        (3usize, "staging", 12u64),
        (16, "staging", 22),
        (16, "activating", 13),
        (64, "staging", 23),
        (64, "activating", 24),
    ] {
        let author = n as NodeId;
        let mut sim = pool(n, seed);
        let req = sim.apply(author, &doc(phase), "gina", phase).unwrap();
        let cut = sim
            .run_until_pred(Duration::from_micros(200), secs(3), |s| {
                let v = s.assigned(author, req);
                match (phase, v) {
                    // Numbered and being staged, nobody switched yet.
                    ("staging", Some(v)) => {
                        s.activations(v).is_empty()
                            && s.node(1)
                                .unwrap()
                                .pool_target(s.exchange(1).unwrap())
                                .is_some_and(|t| t.pool_active < Some(v))
                    }
                    // Some nodes besides the master switched, not all.
                    ("activating", Some(v)) => (2..n).contains(&s.activations(v).len()),
                    _ => false,
                }
            })
            .expect("reached the phase");
        let v = sim.assigned(author, req).unwrap();
        // It dies mid-send: what it had not yet delivered is lost too.
        sim.crash(1);
        println!(
            "{n} nodes, {phase}: killed master at {cut:?}, {} active",
            sim.activations(v).len()
        );
        let held = sim
            .running()
            .iter()
            .any(|id| sim.node(*id).unwrap().history().any(|h| h.id == v));
        let t0 = sim.now();
        sim.run_until_pred(STEP, secs(8), |s| {
            s.result(author, req).is_some()
                && s.membership_converged()
                && match s.result(author, req) {
                    Some(ApplyResult::Done(rep)) => s.all_active(rep.version, &[]),
                    _ => true,
                }
        })
        .unwrap_or_else(|| panic!("{n} nodes, {phase}: new master finishes the rollout"));
        let rep = done(sim.result(author, req).cloned().unwrap());
        println!(
            "{n} nodes, {phase}: {} finished {:?} after the kill",
            rep.version,
            sim.now() - t0
        );
        if held {
            // A survivor held the version: the new master finishes it.
            assert_eq!(rep.version, v);
        } else {
            // It died with the master: the request is numbered again.
            assert!(rep.version > v, "{:?}", rep.version);
        }
        for id in sim.running() {
            assert_eq!(sim.exchange(id).unwrap().master(), 2);
        }
        // Still one version number for the request, everywhere.
        assert_eq!(
            sim.node(2)
                .unwrap()
                .history()
                .filter(|h| h.message == phase)
                .count(),
            1
        );
        assert_ids_unique(&sim);
    }
}

#[test]
fn restarted_and_new_nodes_are_current_before_enforcing() {
    for (n, seed) in [(16usize, 14u64), (64, 25)] {
        restart_and_join_mid_rollout(n, seed);
    }
}

fn restart_and_join_mid_rollout(n: usize, seed: u64) {
    let mut sim = pool(n, seed);
    let (old, new) = (n as NodeId - 4, n as NodeId);
    // Node `old` is down for a change; node `new` is wiped (a new server).
    sim.kill(old);
    sim.kill(new);
    sim.disks[n - 1] = None;
    sim.run_for(secs(3));
    let req = sim.apply(3, &doc("while down"), "hank", "").unwrap();
    let v2 = done(wait(&mut sim, 3, req, secs(5))).version;
    // Start another rollout and bring both back in the middle of it.
    let req = sim.apply(5, &doc("mid rollout"), "hank", "").unwrap();
    sim.run_for(Duration::from_millis(3));
    let back = sim.now();
    sim.restart(old).unwrap();
    sim.restart(new).unwrap();
    // The restarted node restored v1 from disk but is not current with it.
    assert!(!sim.node(old).unwrap().is_current());
    assert!(sim.active(old) < Some(v2));
    assert!(sim.active(new).is_none());
    let v3 = done(wait(&mut sim, 5, req, secs(5))).version;
    sim.run_until_pred(STEP, secs(8), |s| s.all_active(v3, &[]) && s.all_current())
        .expect("both catch up");
    for id in [old, new] {
        let first = current_event(&sim, id, back).expect("became current");
        assert!(
            first >= Some(v2),
            "node {id} was current first with {first:?}"
        );
        // It never enforced anything older than the pool's version: its
        // first Current came with (at least) the version active then.
        assert_eq!(sim.active(id), Some(v3));
    }
}

#[test]
fn full_restart_converges_on_the_highest_persisted_version() {
    for (n, seed) in [(3usize, 26u64), (16, 15), (64, 27)] {
        full_restart(n, seed);
    }
}

fn full_restart(n: usize, seed: u64) {
    let mut sim = pool(n, seed);
    // Node 1 (the next master) misses the last change: its disk is older.
    let (v2, _) = apply_everywhere(&mut sim, "two");
    sim.kill(1);
    sim.run_for(secs(3));
    let author = n as NodeId;
    let req = sim.apply(author, &doc("three"), "ivan", "").unwrap();
    let v3 = done(wait(&mut sim, author, req, secs(5))).version;
    assert!(v3 > v2);
    for id in 2..=n as NodeId {
        sim.kill(id);
    }
    sim.run_for(secs(2));
    let t0 = sim.now();
    for id in 1..=n as NodeId {
        sim.restart(id).unwrap();
    }
    assert_eq!(sim.active(1), Some(v2));
    sim.run_until_pred(STEP, secs(10), |s| {
        s.membership_converged() && s.all_active(v3, &[]) && s.all_current()
    })
    .expect("converges on v3");
    println!(
        "{n} nodes, full restart: converged on {v3} after {:?}",
        sim.now() - t0
    );
    for id in 1..=n as NodeId {
        // Nobody (node 1 least) was current with the older version.
        assert_eq!(current_event(&sim, id, t0), Some(Some(v3)), "node {id}");
    }
    // No new version was numbered to get there.
    assert!(sim.node(1).unwrap().history().all(|h| h.id <= v3));
}

#[test]
fn forged_and_misdirected_policy_messages_change_nothing() {
    let mut sim = pool(6, 16);
    let v1 = sim.active(1).unwrap();
    let (v2, _) = apply_everywhere(&mut sim, "real");
    // A fake "activate v1 / stage a fake version" from a node holding the
    // wrong key, then the same from a key holder that is not master.
    let fake = VersionId {
        term: Term {
            n: 99,
            node: 4,
            epoch: 1,
        },
        seq: 99,
    };
    let msgs = [
        wire::Msg::Activate { id: v1 },
        wire::Msg::Announce {
            id: fake,
            record: wire::BlobRef {
                hash: [1; 32],
                len: 100,
            },
            stage: true,
        },
    ];
    let frame = |key: &[u8], sender: NodeId, seq: u64, data: &[u8]| {
        let entry = WireEntry {
            code: POLICY_CODE,
            origin: sender,
            incarnation: 1,
            version: 0,
            ttl: 0,
            data,
        };
        crate::sim::forge(key, FLAG_DIRECT, sender, 1, seq, &[entry])
    };
    for to in 2..=6 {
        for (k, m) in msgs.iter().enumerate() {
            let bad = frame(b"wrong key", 1, 1 << 40 | k as u64, &m.encode());
            sim.inject(to, 1, &bad);
        }
    }
    for to in 2..=6 {
        assert_eq!(sim.exchange(to).unwrap().stats().bad_mac, 2, "node {to}");
    }
    // From node 3 (genuine key, not master): refused by role.
    let before: u64 = (4..=6)
        .map(|id| sim.node(id).unwrap().stats().messages_unexpected)
        .sum();
    for to in 4..=6 {
        for (k, m) in msgs.iter().enumerate() {
            let d = frame(crate::sim::SIM_KEY, 3, 1 << 41 | k as u64, &m.encode());
            sim.inject(to, 3, &d);
        }
    }
    let after: u64 = (4..=6)
        .map(|id| sim.node(id).unwrap().stats().messages_unexpected)
        .sum();
    assert_eq!(after - before, 6);
    sim.run_for(secs(1));
    assert!(sim.all_active(v2, &[]));
}

#[test]
fn large_pools_128_and_256() {
    for (n, seed) in [(128usize, 17u64), (256, 18)] {
        let mut sim = pool(n, seed);
        let since = sim.now();
        let (_, took) = apply_everywhere(&mut sim, "one");
        // Concurrent applies, one node refusing, one restarting mid-rollout.
        sim.refuse(n as NodeId / 2, b"feature-y");
        let mut y = doc("y");
        y.extend_from_slice(b"# feature-y\n");
        let ra = sim.apply(3, &y, "a", "").unwrap();
        let rb = sim.apply(n as NodeId - 1, &doc("z"), "b", "").unwrap();
        sim.run_for(Duration::from_millis(2));
        sim.restart(n as NodeId - 5).unwrap();
        let a = done(wait(&mut sim, 3, ra, secs(10)));
        let b = done(wait(&mut sim, n as NodeId - 1, rb, secs(10)));
        assert_eq!(a.version.seq.abs_diff(b.version.seq), 1);
        // The refusing node is reported by name, whichever came first.
        assert_eq!(
            a.rejected.iter().map(|r| r.0).collect::<Vec<_>>(),
            [n as NodeId / 2]
        );
        let last = a.version.max(b.version);
        // If the refused version is the last, that node keeps the other.
        let refuser = if last == a.version {
            vec![n as NodeId / 2]
        } else {
            vec![]
        };
        sim.run_until_pred(STEP, secs(5), |s| {
            s.all_active(last, &refuser) && s.all_current()
        })
        .expect("all on the last version");
        if last == a.version {
            assert_eq!(sim.active(n as NodeId / 2), Some(b.version));
        }
        println!("{n} nodes: one apply active everywhere in {took:?}");
        assert!(took < Duration::from_millis(500), "{n}: {took:?}");
        let fails = sim.failures_since(since);
        assert!(
            fails.iter().all(|(_, f)| *f == n as NodeId - 5),
            "only the restarted node may be seen failing: {fails:?}"
        );
        assert_ids_unique(&sim);
    }
}

#[test]
fn simulation_is_deterministic() {
    let run = || {
        let mut sim = pool(8, 19);
        let r = sim.apply(4, &doc("d"), "j", "").unwrap();
        wait(&mut sim, 4, r, secs(5));
        sim.kill(1);
        sim.run_for(secs(3));
        (sim.bytes_sent(), sim.events.clone())
    };
    assert_eq!(run(), run());
}

#[test]
fn extreme_clock_drift_still_rolls_out() {
    let mut cfg = PolicySimConfig::new(16, 20);
    cfg.initial = Some(doc("initial"));
    cfg.max_drift = 0.05;
    cfg.max_offset = Duration::from_secs(86_400);
    let mut sim = pool_with(cfg);
    for k in 0..3 {
        apply_everywhere(&mut sim, &format!("drift {k}"));
    }
}

#[test]
fn fuzz_decoders_over_corpus_and_random_input() {
    use super::version::tests::meta;
    let mut corpus: Vec<Vec<u8>> = wire::tests::sample_messages()
        .iter()
        .map(|m| m.encode())
        .collect();
    let v = VersionId {
        term: Term {
            n: 1,
            node: 1,
            epoch: 1,
        },
        seq: 1,
    };
    let m = meta(v, None, b"[jobs.a]\n");
    corpus.push(version::encode_record(&m, b"[jobs.a]\n"));
    corpus.push(persist::encode(&persist::Persisted {
        node: 1,
        records: vec![version::encode_record(&m, b"[jobs.a]\n")],
        history: vec![HistoryEntry::published(&m)],
        ..Default::default()
    }));
    corpus.push(
        Beacon {
            active: Some(v),
            have: Some(v),
            ..Default::default()
        }
        .encode(),
    );
    for (i, c) in corpus.iter().enumerate() {
        fuzz_bytes(c, 3_000, i as u64, |b| {
            let _ = wire::Msg::decode(b);
            fuzz::decoders(b);
        });
    }
}

#[test]
fn fuzz_node_over_corpus_and_random_input() {
    let corpus: Vec<u8> = wire::tests::sample_messages()
        .iter()
        .flat_map(|m| {
            let mut b = m.encode();
            b.push(0xff);
            b
        })
        .collect();
    fuzz::node(&corpus);
    fuzz_bytes(&corpus, 300, 7, fuzz::node);
}
