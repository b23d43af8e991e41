//! Per-packet costs of the worker's hot pieces:
//! `cargo bench -p headroom-dataplane --bench hot_paths`.

use std::{hint::black_box, net::Ipv4Addr, sync::Arc};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use headroom_config::net::{Direction, FlowRule};
use headroom_dataplane::{
    classifier::{Classifier, FlowKey, JobId, RuleSet},
    pacer::{bench_fixture, Admit},
    packet::{build, parse_frame},
};

fn rules() -> Arc<RuleSet> {
    let rule = |s: &str| -> FlowRule { toml::from_str(s).expect("rule") };
    Arc::new(RuleSet::compile(&[
        (
            JobId(1),
            vec![rule("protocol = \"tcp\"\nlocal_port = \"80\"")],
        ),
        (JobId(2), vec![rule("remote = \"192.168.0.0/16\"")]),
        (JobId(3), vec![rule("protocol = \"udp\"")]),
    ]))
}

fn parser(c: &mut Criterion) {
    let tcp = build::tcp4(
        Ipv4Addr::new(10, 0, 0, 1),
        40000,
        Ipv4Addr::new(10, 0, 0, 2),
        80,
        0x10,
        &[0u8; 18],
    );
    let udp = build::udp4(
        Ipv4Addr::new(10, 0, 0, 1),
        40000,
        Ipv4Addr::new(10, 0, 0, 2),
        5001,
        &[0u8; 18],
    );
    let mut g = c.benchmark_group("parse_frame");
    g.throughput(Throughput::Elements(1));
    g.bench_function("tcp4", |b| b.iter(|| parse_frame(black_box(&tcp))));
    g.bench_function("udp4", |b| b.iter(|| parse_frame(black_box(&udp))));
    g.finish();
}

fn classifier(c: &mut Criterion) {
    let mut g = c.benchmark_group("classifier");
    g.throughput(Throughput::Elements(1));
    for flows in [1u32, 1024, 100_000] {
        let mut cl = Classifier::new(1 << 17, u64::MAX, rules());
        let keys: Vec<FlowKey> = (0..flows)
            .map(|i| {
                FlowKey::v4(
                    17,
                    Ipv4Addr::from(0x0b00_0000 + i),
                    Ipv4Addr::new(10, 0, 0, 1),
                    40000,
                    5001,
                )
            })
            .collect();
        for k in &keys {
            cl.classify(0, k, Direction::Inbound, 64);
        }
        let mut i = 0usize;
        g.bench_function(format!("known_flow/{flows}"), |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                cl.classify(1, black_box(&keys[i]), Direction::Inbound, 64)
            })
        });
    }
    g.finish();
}

fn pacer(c: &mut Criterion) {
    let mut g = c.benchmark_group("pacer");
    g.throughput(Throughput::Elements(1));
    // A pipe far above the offered load: every admit spends credit and sends.
    let (_ctl, mut p) = bench_fixture(1_000_000_000_000).expect("fixture");
    let mut now = 1u64;
    g.bench_function("admit_send", |b| {
        b.iter(|| {
            now += 10;
            match p.admit(now, 0, 0, 64, 7u32) {
                Admit::Send(x) => x,
                _ => 0,
            }
        })
    });
    g.finish();
}

criterion_group!(benches, parser, classifier, pacer);
criterion_main!(benches);
