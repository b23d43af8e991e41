//! Per-packet costs of the worker's hot pieces:
//! `cargo bench -p headroom-dataplane --bench hot_paths`.

use std::{hint::black_box, net::Ipv4Addr, sync::Arc};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use headroom_config::net::{Direction, FlowRule};
use headroom_dataplane::{
    classifier::{Classifier, FlowKey, JobId, RuleSet},
    pacer::{bench_fixture, Admit},
    packet::{build, parse_frame, partial_checksum, segment::TcpSegmenter},
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

/// Completing a partial checksum (a full-size TCP segment from a stack with
/// checksum offload on) and cutting a 64 KB aggregate into MTU segments.
fn offload(c: &mut Criterion) {
    let seg = build::tcp4(
        Ipv4Addr::new(10, 0, 0, 1),
        40000,
        Ipv4Addr::new(10, 0, 0, 2),
        80,
        0x10,
        &[7u8; 1448],
    );
    let info = parse_frame(&seg).expect("parses");
    let l4 = info.l4_offset.expect("tcp") as usize;
    let mut g = c.benchmark_group("partial_checksum");
    g.throughput(Throughput::Bytes(seg.len() as u64));
    g.bench_function("complete_1448", |b| {
        let mut f = seg.clone();
        b.iter(|| {
            // Reset the field to a pseudo-header-only value each time.
            f[l4 + 16..l4 + 18].copy_from_slice(&[0, 0]);
            let pseudo = headroom_dataplane::packet::checksum::pseudo_header_v4(
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                6,
                (f.len() - l4) as u16,
            );
            let p = headroom_dataplane::packet::checksum::fold(pseudo);
            f[l4 + 16..l4 + 18].copy_from_slice(&p.to_be_bytes());
            partial_checksum::complete(black_box(&mut f), &[], &info)
        })
    });
    g.bench_function("check_only_1448", |b| {
        b.iter(|| partial_checksum::is_partial(black_box(&seg), &info))
    });
    g.finish();
    let agg = build::tcp4(
        Ipv4Addr::new(10, 0, 0, 1),
        40000,
        Ipv4Addr::new(10, 0, 0, 2),
        80,
        0x10,
        &vec![7u8; 64_000],
    );
    let ainfo = parse_frame(&agg).expect("parses");
    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Bytes(agg.len() as u64));
    g.bench_function("tcp4_64k_to_1500", |b| {
        let mut out = vec![0u8; 3840];
        b.iter(|| {
            let s = TcpSegmenter::new(&agg, &ainfo, 1500, 3840).expect("tcp");
            for i in 0..s.count() {
                black_box(s.write(i, &agg, &[], &mut out));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, parser, classifier, pacer, offload);
criterion_main!(benches);
