//! Per-segment cost of the response-time tracker: what the pipeline adds per
//! TCP frame of a measured job (`cargo bench -p headroom-dataplane --bench response`).

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion};
use headroom_config::net::Direction;
use headroom_dataplane::{
    classifier::{FlowKey, JobId},
    packet::{build, parse_frame, tcp::flags},
    response::{ResponseConfig, ResponseTracker, TcpMeta},
};

fn bench(c: &mut Criterion) {
    let mut rt = ResponseTracker::new(ResponseConfig {
        capacity: 65_536,
        idle_timeout_ns: 60_000_000_000,
    });
    let job = JobId(1);
    rt.set_measured(&[job]);
    // 10 000 open connections, so probes miss the cache as in a busy worker.
    let key = |i: u32| {
        FlowKey::v4(
            6,
            Ipv4Addr::from(0x0ac8_0200 + i),
            Ipv4Addr::new(10, 200, 1, 1),
            40_000,
            80,
        )
    };
    for i in 0..10_000 {
        let syn = TcpMeta {
            flags: flags::SYN,
            seq: 1,
            ack: 0,
            payload_len: 0,
        };
        rt.on_segment(0, Direction::Inbound, &key(i), job, &syn);
        let synack = TcpMeta {
            flags: flags::SYN | flags::ACK,
            seq: 1,
            ack: 2,
            payload_len: 0,
        };
        rt.on_segment(1, Direction::Outbound, &key(i).reversed(), job, &synack);
    }
    let mut seq = 2u32;
    let mut i = 0u32;
    c.bench_function("on_segment request+reply (2 segments)", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            let req = TcpMeta {
                flags: flags::ACK | flags::PSH,
                seq,
                ack: 2,
                payload_len: 100,
            };
            rt.on_segment(
                10,
                Direction::Inbound,
                black_box(&key(i)),
                job,
                black_box(&req),
            );
            let rep = TcpMeta {
                flags: flags::ACK | flags::PSH,
                seq,
                ack: seq + 100,
                payload_len: 1000,
            };
            rt.on_segment(
                20,
                Direction::Outbound,
                black_box(&key(i).reversed()),
                job,
                black_box(&rep),
            );
            seq = seq.wrapping_add(1000);
        })
    });
    c.bench_function("on_segment job not measured", |b| {
        let req = TcpMeta {
            flags: flags::ACK,
            seq: 1,
            ack: 2,
            payload_len: 100,
        };
        b.iter(|| {
            rt.on_segment(
                10,
                Direction::Inbound,
                black_box(&key(1)),
                JobId(2),
                black_box(&req),
            )
        })
    });
    let frame = build::tcp4(
        Ipv4Addr::new(10, 200, 2, 1),
        40_000,
        Ipv4Addr::new(10, 200, 1, 1),
        80,
        flags::ACK,
        &[0u8; 100],
    );
    let info = parse_frame(&frame).unwrap();
    c.bench_function("TcpMeta::from_frame", |b| {
        b.iter(|| TcpMeta::from_frame(black_box(&frame), black_box(&info)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
