use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use headroom_config::net::{Direction, FlowRule};

use super::*;

const IN: Direction = Direction::Inbound;
const OUT: Direction = Direction::Outbound;

fn rule(toml_text: &str) -> FlowRule {
    toml::from_str(toml_text).unwrap()
}

fn v4(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

/// Local host 10.0.0.1; a packet arriving from `remote:rport` to local port `lport`.
fn inbound_tcp(remote: [u8; 4], rport: u16, lport: u16) -> FlowKey {
    FlowKey::v4(6, v4(remote), v4([10, 0, 0, 1]), rport, lport)
}

fn rules(jobs: &[(u16, &[&str])]) -> Arc<RuleSet> {
    let compiled: Vec<(JobId, Vec<FlowRule>)> = jobs
        .iter()
        .map(|(j, rs)| (JobId(*j), rs.iter().map(|r| rule(r)).collect()))
        .collect();
    Arc::new(RuleSet::compile(&compiled))
}

#[test]
fn empty_rule_set_is_default() {
    let rs = RuleSet::empty();
    assert!(rs.is_empty());
    assert_eq!(rs.jobs(), &[JobId::DEFAULT]);
    let k = inbound_tcp([1, 2, 3, 4], 5555, 80).local_remote(IN);
    assert_eq!(rs.classify(&k, IN), JobId::DEFAULT);
}

#[test]
fn empty_rule_matches_everything() {
    let rs = rules(&[(3, &[""])]);
    let k = FlowKey::v6(47, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 0, 0);
    assert_eq!(rs.classify(&k, OUT), JobId(3));
    assert_eq!(
        rs.classify(&inbound_tcp([1, 1, 1, 1], 1, 1).local_remote(IN), IN),
        JobId(3)
    );
}

#[test]
fn each_field_matches() {
    let rs = rules(&[
        (1, &["local = \"10.0.0.0/24\"\nprotocol = \"udp\""]),
        (2, &["local_port = \"8000-8100\""]),
        (3, &["remote = \"192.168.0.0/16\""]),
        (4, &["remote_port = 5432"]),
        (5, &["protocol = \"icmp\""]),
        (6, &["direction = \"out\""]),
    ]);
    let c = |k: FlowKey, dir: Direction| rs.classify(&k.local_remote(dir), dir);
    // local prefix + protocol
    assert_eq!(
        c(
            FlowKey::v4(17, v4([9, 9, 9, 9]), v4([10, 0, 0, 7]), 1, 2),
            IN
        ),
        JobId(1)
    );
    assert_eq!(
        c(
            FlowKey::v4(17, v4([9, 9, 9, 9]), v4([10, 0, 1, 7]), 1, 2),
            IN
        ),
        JobId::DEFAULT
    );
    // local port (inbound: dst port is local)
    assert_eq!(c(inbound_tcp([9, 9, 9, 9], 40000, 8050), IN), JobId(2));
    assert_eq!(
        c(inbound_tcp([9, 9, 9, 9], 8050, 40000), IN),
        JobId::DEFAULT
    );
    // remote prefix
    assert_eq!(c(inbound_tcp([192, 168, 3, 4], 1, 2), IN), JobId(3));
    // remote port (outbound: dst port is remote)
    assert_eq!(
        c(
            FlowKey::v4(6, v4([10, 0, 0, 1]), v4([8, 8, 8, 8]), 33000, 5432),
            OUT
        ),
        JobId(4)
    );
    // protocol
    assert_eq!(
        c(
            FlowKey::v4(1, v4([8, 8, 8, 8]), v4([10, 0, 0, 1]), 7, 7),
            IN
        ),
        JobId(5)
    );
    // direction
    assert_eq!(
        c(
            FlowKey::v4(6, v4([10, 0, 0, 1]), v4([8, 8, 8, 8]), 1, 2),
            OUT
        ),
        JobId(6)
    );
    assert_eq!(
        c(
            FlowKey::v4(6, v4([8, 8, 8, 8]), v4([10, 0, 0, 1]), 2, 1),
            IN
        ),
        JobId::DEFAULT
    );
}

#[test]
fn port_rules_never_match_portless_protocols() {
    let rs = rules(&[(1, &["local_port = \"0-65535\""])]);
    let icmp = FlowKey::v4(1, v4([1, 1, 1, 1]), v4([10, 0, 0, 1]), 0, 0);
    assert_eq!(rs.classify(&icmp.local_remote(IN), IN), JobId::DEFAULT);
    let udp = FlowKey::v4(17, v4([1, 1, 1, 1]), v4([10, 0, 0, 1]), 0, 0);
    assert_eq!(rs.classify(&udp.local_remote(IN), IN), JobId(1));
}

#[test]
fn precedence_is_config_order() {
    // Job 7 comes first in the file, so its broad rule wins over job 2's specific one.
    let rs = rules(&[(7, &["protocol = \"tcp\""]), (2, &["local_port = 80"])]);
    assert_eq!(rs.jobs(), &[JobId(0), JobId(7), JobId(2)]);
    assert_eq!(rs.max_job(), JobId(7));
    assert_eq!(
        rs.classify(&inbound_tcp([1, 1, 1, 1], 1, 80).local_remote(IN), IN),
        JobId(7)
    );
    // Within a job, rules in order; across jobs, first job first.
    let rs = rules(&[
        (2, &["local_port = 80", "protocol = \"udp\""]),
        (7, &["local_port = 80"]),
    ]);
    assert_eq!(
        rs.classify(&inbound_tcp([1, 1, 1, 1], 1, 80).local_remote(IN), IN),
        JobId(2)
    );
    let udp = FlowKey::v4(17, v4([1, 1, 1, 1]), v4([10, 0, 0, 1]), 1, 81);
    assert_eq!(rs.classify(&udp.local_remote(IN), IN), JobId(2));
    assert_eq!(rs.len(), 3);
}

#[test]
fn ipv6_rules() {
    let rs = rules(&[
        (1, &["local = \"2001:db8::/32\"\nremote = \"::/0\""]),
        (2, &["remote = \"0.0.0.0/0\""]),
    ]);
    let local: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let peer: Ipv6Addr = "2001:db9::9".parse().unwrap();
    let k = FlowKey::v6(6, peer, local, 1, 2);
    assert_eq!(rs.classify(&k.local_remote(IN), IN), JobId(1));
    // The v4 catch-all never matches v6, and the v6 one never matches v4.
    let k = FlowKey::v6(6, local, peer, 1, 2);
    assert_eq!(rs.classify(&k.local_remote(IN), IN), JobId::DEFAULT);
    assert_eq!(
        rs.classify(&inbound_tcp([1, 1, 1, 1], 1, 2).local_remote(IN), IN),
        JobId(2)
    );
}

#[test]
fn both_directions_share_a_flow_and_counters_are_exact() {
    let mut c = Classifier::new(16, 1_000, rules(&[(1, &["local_port = 80"])]));
    let k_in = inbound_tcp([1, 1, 1, 1], 5000, 80);
    let k_out = k_in.reversed();
    assert_eq!(c.classify(10, &k_in, IN, 100), JobId(1));
    assert_eq!(c.classify(11, &k_out, OUT, 1500), JobId(1));
    assert_eq!(c.classify(12, &k_out, OUT, 1500), JobId(1));
    assert_eq!(c.len(), 1);
    let e = c.lookup(&k_in, IN).unwrap();
    assert_eq!(e, c.lookup(&k_out, OUT).unwrap());
    assert_eq!(
        (e.packets_in, e.bytes_in, e.packets_out, e.bytes_out),
        (1, 100, 2, 3000)
    );
    assert_eq!((e.first_seen, e.last_seen, e.origin), (10, 12, IN));
    let (k, _) = c.flows().next().unwrap();
    assert_eq!(k.src_port(), 80, "table keys are local -> remote");
    // Another flow to the default job, and unkeyed traffic.
    c.classify(13, &inbound_tcp([1, 1, 1, 1], 5000, 22), IN, 60);
    c.classify_unkeyed(IN, 42);
    c.classify_unkeyed(OUT, 42);
    let s = c.snapshot();
    assert_eq!(
        *s.job(JobId(1)).unwrap(),
        JobCounters {
            packets_in: 1,
            bytes_in: 100,
            packets_out: 2,
            bytes_out: 3000,
            active_flows: 1
        }
    );
    assert_eq!(
        *s.job(JobId::DEFAULT).unwrap(),
        JobCounters {
            packets_in: 2,
            bytes_in: 102,
            packets_out: 1,
            bytes_out: 42,
            active_flows: 1
        }
    );
    assert_eq!(
        (s.flows, s.created, s.unkeyed, s.table_full, s.expired),
        (2, 2, 2, 0, 0)
    );
    assert_eq!(s.jobs.len(), 2);
    assert_eq!(s.jobs[0].0, JobId::DEFAULT);
}

#[test]
fn direction_rule_uses_flow_origin() {
    let mut c = Classifier::new(16, 1_000, rules(&[(1, &["direction = \"in\""])]));
    let k = inbound_tcp([1, 1, 1, 1], 5000, 80);
    // Opened by the host (first packet outbound): not job 1, for both directions.
    assert_eq!(c.classify(0, &k.reversed(), OUT, 1), JobId::DEFAULT);
    assert_eq!(c.classify(1, &k, IN, 1), JobId::DEFAULT);
    // Opened from the network.
    let k2 = inbound_tcp([1, 1, 1, 1], 5001, 80);
    assert_eq!(c.classify(2, &k2, IN, 1), JobId(1));
    assert_eq!(c.classify(3, &k2.reversed(), OUT, 1), JobId(1));
}

#[test]
fn expiry_removes_idle_flows_only() {
    let mut c = Classifier::new(100, 1_000, Arc::new(RuleSet::empty()));
    for p in 0..50u16 {
        c.classify(0, &inbound_tcp([1, 1, 1, 1], p, 80), IN, 1);
    }
    for p in 0..10u16 {
        c.classify(900, &inbound_tcp([1, 1, 1, 1], p, 80), IN, 1);
    }
    assert_eq!(c.expire(999), 0);
    assert_eq!(c.expire(1_000), 40);
    assert_eq!(c.len(), 10);
    for p in 0..50u16 {
        assert_eq!(
            c.lookup(&inbound_tcp([1, 1, 1, 1], p, 80), IN).is_some(),
            p < 10,
            "port {p}"
        );
    }
    assert_eq!(c.snapshot().expired, 40);
    assert_eq!(c.job_counters(JobId::DEFAULT).active_flows, 10);
    // Lookups still work after the swap-removes, and new flows reuse space.
    for p in 100..190u16 {
        c.classify(2_000, &inbound_tcp([1, 1, 1, 1], p, 80), IN, 1);
    }
    assert_eq!(c.len(), 100);
    assert_eq!(c.snapshot().table_full, 0);
    assert_eq!(c.expire_all(2_500), 10);
    assert_eq!(c.expire_all(3_000), 90);
    assert!(c.is_empty());
    assert_eq!(c.job_counters(JobId::DEFAULT).active_flows, 0);
}

#[test]
fn expiry_is_amortised() {
    // 65536 flows of capacity: 16 shards of ~4096; the default budget scans one per call.
    let mut c = Classifier::new(65536, 10, Arc::new(RuleSet::empty()));
    assert_eq!(c.shard_count(), 16);
    for p in 0..2000u16 {
        c.classify(0, &inbound_tcp([2, 2, 2, 2], p, 80), IN, 1);
    }
    // Keep every other flow fresh.
    for p in (0..2000u16).step_by(2) {
        c.classify(100, &inbound_tcp([2, 2, 2, 2], p, 80), IN, 1);
    }
    let mut total = 0;
    for call in 0..16 {
        let n = c.expire(105);
        // ~1000 / 16 = 62 expected per shard; one shard never holds half the table.
        assert!(
            n < 500,
            "call {call} removed {n}: a call examines one shard"
        );
        total += n;
    }
    assert_eq!(total, 1000, "one sweep of all shards examines every flow");
    assert_eq!(c.expire(105), 0);
    assert_eq!(c.len(), 1000);
    assert!(
        c.flows().all(|(k, _)| k.dst_port() % 2 == 0),
        "only fresh (even) flows remain"
    );
    for p in (0..2000u16).step_by(2) {
        assert!(c.lookup(&inbound_tcp([2, 2, 2, 2], p, 80), IN).is_some());
    }
    // An explicit budget of 4 shards' worth sweeps the table in 4 calls.
    c.set_expiry_scan_budget(4 * 4096);
    for _ in 0..4 {
        c.expire(1_000);
    }
    assert!(c.is_empty());
    // A budget of 0 sweeps everything in one call.
    for p in 0..100u16 {
        c.classify(2_000, &inbound_tcp([2, 2, 2, 2], p, 80), IN, 1);
    }
    c.set_expiry_scan_budget(0);
    assert_eq!(c.expire(3_000), 100);
    assert!(c.is_empty());
    // The default sweeps big tables in 16 calls: 128 Ki flows = 32 shards, 2 per call.
    let mut big = Classifier::new(1 << 17, 10, Arc::new(RuleSet::empty()));
    assert_eq!(big.shard_count(), 32);
    // Varied addresses, as real flows have (5000 ports of one address hash
    // into too few shards for some seeds of the table's random hasher).
    for p in 0..5000u16 {
        let src = [3, (p % 7) as u8, (p >> 8) as u8, p as u8];
        big.classify(0, &inbound_tcp(src, 1024 + p, 80), IN, 1);
    }
    let removed: Vec<usize> = (0..16).map(|_| big.expire(100)).collect();
    assert_eq!(removed.iter().sum::<usize>(), 5000);
    assert!(removed.iter().all(|&n| n > 0 && n < 1500), "{removed:?}");
    // Small tables have one shard.
    assert_eq!(
        Classifier::new(100, 1, Arc::new(RuleSet::empty())).shard_count(),
        1
    );
}

#[test]
fn reload_remaps_lazily() {
    let mut c = Classifier::new(16, 1_000_000, rules(&[(1, &["local_port = 80"])]));
    let web = inbound_tcp([1, 1, 1, 1], 5000, 80);
    let ssh = inbound_tcp([1, 1, 1, 1], 5000, 22);
    assert_eq!(c.classify(0, &web, IN, 10), JobId(1));
    assert_eq!(c.classify(0, &ssh, IN, 10), JobId::DEFAULT);
    // New config: port 80 moves to job 9, ssh to job 2.
    c.set_rules(rules(&[
        (2, &["local_port = 22"]),
        (9, &["local_port = 80"]),
    ]));
    assert_eq!(c.generation(), 1);
    // Not yet touched: old job still recorded.
    assert_eq!(c.lookup(&web, IN).unwrap().job, JobId(1));
    assert_eq!(c.classify(1, &web.reversed(), OUT, 20), JobId(9));
    assert_eq!(c.classify(1, &ssh, IN, 30), JobId(2));
    let e = c.lookup(&web, IN).unwrap();
    assert_eq!(
        (e.job, e.rules_generation, e.packets_in, e.packets_out),
        (JobId(9), 1, 1, 1)
    );
    let s = c.snapshot();
    assert_eq!(s.remapped, 2);
    assert_eq!(s.rules_generation, 1);
    // Counts before the reload stay with the old job; after, with the new one.
    assert_eq!(s.job(JobId(1)).unwrap().bytes_in, 10);
    assert_eq!(s.job(JobId(1)).unwrap().active_flows, 0);
    assert_eq!(s.job(JobId(9)).unwrap().bytes_out, 20);
    assert_eq!(s.job(JobId(9)).unwrap().active_flows, 1);
    assert_eq!(s.job(JobId(2)).unwrap().bytes_in, 30);
    assert_eq!(s.job(JobId::DEFAULT).unwrap().bytes_in, 10);
    assert_eq!(s.job(JobId::DEFAULT).unwrap().active_flows, 0);
    // Job 1 is gone from the config but keeps its history in the snapshot, after the
    // configured jobs.
    assert_eq!(
        s.jobs.iter().map(|(j, _)| j.0).collect::<Vec<_>>(),
        vec![0, 2, 9, 1]
    );
    // Packets total is conserved.
    let total: u64 = s
        .jobs
        .iter()
        .map(|(_, c)| c.packets_in + c.packets_out)
        .sum();
    assert_eq!(total, 4);
}

#[test]
fn table_full_still_counts() {
    let mut c = Classifier::new(2, 1_000, rules(&[(1, &["remote = \"1.0.0.0/8\""])]));
    for p in 0..5u16 {
        assert_eq!(
            c.classify(0, &inbound_tcp([1, 1, 1, 1], p, 80), IN, 100),
            JobId(1)
        );
    }
    c.classify(0, &inbound_tcp([2, 2, 2, 2], 1, 80), IN, 7);
    let s = c.snapshot();
    assert_eq!(s.flows, 2);
    assert_eq!(s.table_full, 4);
    assert_eq!(s.created, 2);
    assert_eq!(s.job(JobId(1)).unwrap().packets_in, 5);
    assert_eq!(s.job(JobId(1)).unwrap().bytes_in, 500);
    assert_eq!(s.job(JobId::DEFAULT).unwrap().bytes_in, 7);
    // Existing flows keep being tracked.
    c.classify(1, &inbound_tcp([1, 1, 1, 1], 0, 80), IN, 1);
    assert_eq!(
        c.lookup(&inbound_tcp([1, 1, 1, 1], 0, 80), IN)
            .unwrap()
            .packets_in,
        2
    );
    assert_eq!(c.capacity(), 2);
}

#[test]
fn classify_from_parsed_frames() {
    use crate::packet::{build, parse_frame};
    let mut c = Classifier::new(
        16,
        1_000,
        rules(&[(4, &["local_port = 53\nprotocol = \"udp\""])]),
    );
    let q = build::udp4(v4([10, 0, 0, 9]), 40000, v4([10, 0, 0, 1]), 53, b"q");
    let r = build::udp4(v4([10, 0, 0, 1]), 53, v4([10, 0, 0, 9]), 40000, b"answer");
    let fq = parse_frame(&q).unwrap().flow.unwrap();
    let fr = parse_frame(&r).unwrap().flow.unwrap();
    assert_eq!(c.classify(0, &fq, IN, q.len() as u32), JobId(4));
    assert_eq!(c.classify(0, &fr, OUT, r.len() as u32), JobId(4));
    assert_eq!(c.len(), 1);
    let j = c.job_counters(JobId(4));
    assert_eq!(
        (j.packets_in, j.packets_out, j.bytes_in, j.bytes_out),
        (1, 1, 60, 60)
    );
}

mod model {
    //! The classifier against a naive model under random operations.
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Packet {
            flow: u8,
            inbound: bool,
            bytes: u16,
            dt: u8,
        },
        Unkeyed {
            inbound: bool,
            bytes: u16,
        },
        Expire {
            dt: u8,
        },
        Reload(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u8..40, any::<bool>(), any::<u16>(), 0u8..20)
                .prop_map(|(flow, inbound, bytes, dt)| Op::Packet { flow, inbound, bytes, dt }),
            1 => (any::<bool>(), any::<u16>()).prop_map(|(inbound, bytes)| Op::Unkeyed { inbound, bytes }),
            1 => (0u8..40).prop_map(|dt| Op::Expire { dt }),
            1 => (0u8..3).prop_map(Op::Reload),
        ]
    }

    /// Rule sets the model can evaluate: by remote port parity / range.
    fn rule_set(which: u8) -> Arc<RuleSet> {
        match which {
            0 => rules(&[
                (1, &["remote_port = \"0-10\""]),
                (2, &["protocol = \"udp\""]),
            ]),
            1 => rules(&[(3, &["remote_port = \"5-30\""])]),
            _ => rules(&[(2, &["direction = \"out\""]), (4, &[""])]),
        }
    }

    fn model_job(which: u8, key: &FlowKey, origin: Direction) -> JobId {
        let rp = key.dst_port();
        match which {
            0 if rp <= 10 => JobId(1),
            0 if key.protocol() == 17 => JobId(2),
            1 if (5..=30).contains(&rp) => JobId(3),
            2 if origin == OUT => JobId(2),
            2 => JobId(4),
            _ => JobId::DEFAULT,
        }
    }

    /// Wire key of model flow `f` for a packet in `dir` (local host 10.0.0.1).
    fn wire_key(f: u8, dir: Direction) -> FlowKey {
        let proto = [17, 6, 6][(f % 3) as usize];
        let local = FlowKey::v4(
            proto,
            v4([10, 0, 0, 1]),
            v4([9, 9, 9, f]),
            1000 + f as u16,
            f as u16,
        );
        match dir {
            Direction::Outbound => local,
            Direction::Inbound => local.reversed(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 1..200), cap in 1usize..30) {
            const TIMEOUT: u64 = 50;
            let mut rules_now = 0u8;
            let mut c = Classifier::new(cap, TIMEOUT, rule_set(0));
            // model: oriented key -> (job, origin, generation, pin, bin, pout, bout, last)
            let mut flows: HashMap<FlowKey, (JobId, Direction, u64, [u64; 4], u64)> = HashMap::new();
            let mut jobs: HashMap<JobId, [u64; 4]> = HashMap::new();
            let mut gen = 0u64;
            let mut now = 0u64;
            let (mut full, mut expired) = (0u64, 0u64);
            for op in ops {
                match op {
                    Op::Packet { flow, inbound, bytes, dt } => {
                        now += dt as u64;
                        let dir = if inbound { IN } else { OUT };
                        let wk = wire_key(flow, dir);
                        let ok = wk.local_remote(dir);
                        let job = if let Some(e) = flows.get_mut(&ok) {
                            if e.2 != gen {
                                e.0 = model_job(rules_now, &ok, e.1);
                                e.2 = gen;
                            }
                            e.4 = now;
                            let d = dir.index() * 2;
                            e.3[d] += 1;
                            e.3[d + 1] += bytes as u64;
                            e.0
                        } else {
                            let j = model_job(rules_now, &ok, dir);
                            if flows.len() < cap {
                                let mut cnt = [0u64; 4];
                                cnt[dir.index() * 2] = 1;
                                cnt[dir.index() * 2 + 1] = bytes as u64;
                                flows.insert(ok, (j, dir, gen, cnt, now));
                            } else {
                                full += 1;
                            }
                            j
                        };
                        let jc = jobs.entry(job).or_default();
                        jc[dir.index() * 2] += 1;
                        jc[dir.index() * 2 + 1] += bytes as u64;
                        prop_assert_eq!(c.classify(now, &wk, dir, bytes as u32), job);
                    }
                    Op::Unkeyed { inbound, bytes } => {
                        let dir = if inbound { IN } else { OUT };
                        let jc = jobs.entry(JobId::DEFAULT).or_default();
                        jc[dir.index() * 2] += 1;
                        jc[dir.index() * 2 + 1] += bytes as u64;
                        prop_assert_eq!(c.classify_unkeyed(dir, bytes as u32), JobId::DEFAULT);
                    }
                    Op::Expire { dt } => {
                        // Small tables have one shard, so expire() sweeps everything.
                        now += dt as u64;
                        let before = flows.len();
                        flows.retain(|_, e| now - e.4 < TIMEOUT);
                        expired += (before - flows.len()) as u64;
                        prop_assert_eq!(c.expire(now), before - flows.len());
                    }
                    Op::Reload(w) => {
                        rules_now = w;
                        gen += 1;
                        c.set_rules(rule_set(w));
                    }
                }
                prop_assert_eq!(c.len(), flows.len());
            }
            for (k, e) in &flows {
                let got = c.lookup(k, OUT).expect("flow present");
                prop_assert_eq!(got.origin, e.1);
                prop_assert_eq!([got.packets_in, got.bytes_in, got.packets_out, got.bytes_out], e.3);
                prop_assert_eq!(got.last_seen, e.4);
                if got.rules_generation == gen {
                    prop_assert_eq!(got.job, e.0);
                }
            }
            prop_assert_eq!(c.flows().count(), flows.len());
            let s = c.snapshot();
            prop_assert_eq!(s.table_full, full);
            prop_assert_eq!(s.expired, expired);
            for (j, cnt) in &jobs {
                let got = s.job(*j).copied().unwrap_or_default();
                prop_assert_eq!([got.packets_in, got.bytes_in, got.packets_out, got.bytes_out], *cnt, "job {}", j);
            }
            let active: u64 = s.jobs.iter().map(|(_, c)| c.active_flows).sum();
            prop_assert_eq!(active, flows.len() as u64);
        }
    }
}

#[test]
fn the_memory_budget_counts_the_flow_table_as_allocated() {
    use headroom_config::machine as m;
    assert_eq!(std::mem::size_of::<Slot>() as u64, m::FLOW_SLOT_BYTES);
    assert_eq!(SHARD_TARGET, m::FLOW_SHARD_TARGET);
    assert_eq!(MAX_SHARDS, m::FLOW_MAX_SHARDS);
    for cap in [1, 15, 100, 4096, 4097, 65536, 100_000, 1 << 20] {
        let c = Classifier::new(cap, 1_000, Arc::new(RuleSet::empty()));
        // Prefaulted at start (see `prefault`): empty, and never grown.
        assert!(c.is_empty(), "capacity {cap}");
        let (real, est) = (c.table_bytes() as u64, m::flow_table_bytes(cap));
        // hashbrown's control groups are 16 bytes with SSE2, 8 elsewhere:
        // the estimate takes the larger.
        let slack = 8 * c.shard_count() as u64;
        if cfg!(target_arch = "x86_64") {
            assert_eq!(real, est, "capacity {cap}");
        } else {
            assert!(
                est >= real && est - real <= slack,
                "capacity {cap}: {real} vs {est}"
            );
        }
    }
}
