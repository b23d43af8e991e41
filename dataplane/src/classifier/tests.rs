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
    let mut c = Classifier::new(1000, 10, Arc::new(RuleSet::empty()));
    c.set_expiry_scan_budget(100);
    for p in 0..1000u16 {
        c.classify(0, &inbound_tcp([2, 2, 2, 2], p, 80), IN, 1);
    }
    // Keep every other flow fresh.
    for p in (0..1000u16).step_by(2) {
        c.classify(100, &inbound_tcp([2, 2, 2, 2], p, 80), IN, 1);
    }
    let mut total = 0;
    let mut calls = 0;
    while total < 500 {
        let n = c.expire(105);
        assert!(n <= 100, "a call examines at most the budget");
        total += n;
        calls += 1;
        assert!(calls < 50);
    }
    assert_eq!(total, 500);
    assert_eq!(c.len(), 500);
    assert!(
        c.flows().all(|(k, _)| k.dst_port() % 2 == 0),
        "only fresh (even) flows remain"
    );
    for p in (0..1000u16).step_by(2) {
        assert!(c.lookup(&inbound_tcp([2, 2, 2, 2], p, 80), IN).is_some());
    }
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

/// Rough per-packet cost of the hot path (run with `--release -- --ignored --nocapture`).
#[test]
#[ignore]
fn micro_check_classify_cost() {
    let rs = rules(&[
        (1, &["local_port = 80"]),
        (2, &["remote = \"192.168.0.0/16\""]),
        (3, &["protocol = \"udp\""]),
    ]);
    let mut c = Classifier::new(1 << 16, u64::MAX, rs);
    let keys: Vec<FlowKey> = (0..10_000u32)
        .map(|i| {
            FlowKey::v4(
                6,
                Ipv4Addr::from(0x0b00_0000 + i),
                v4([10, 0, 0, 1]),
                (i % 60000) as u16,
                80,
            )
        })
        .collect();
    let n = 10_000_000u64;
    let t = std::time::Instant::now();
    let mut acc = 0u64;
    for i in 0..n {
        acc += c
            .classify(i, &keys[(i as usize * 7919) % keys.len()], IN, 64)
            .0 as u64;
    }
    let dt = t.elapsed();
    println!(
        "classify: {:.1} ns/packet over {} flows (acc {acc})",
        dt.as_nanos() as f64 / n as f64,
        keys.len()
    );
    let frames: Vec<Vec<u8>> = crate::packet::build::sample_frames()
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    let t = std::time::Instant::now();
    let mut ok = 0u64;
    for i in 0..n {
        ok += crate::packet::parse_frame(&frames[i as usize % frames.len()]).is_ok() as u64;
    }
    println!(
        "parse_frame: {:.1} ns/frame ({ok} ok)",
        t.elapsed().as_nanos() as f64 / n as f64
    );
}
