//! Cost of one allocation round: `cargo bench -p headroom-control --bench allocator`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use headroom_control::allocator::{
    allocate, node_demand, JobBooking, JobDemand, NodePipeDemand, PipeSpec, Rate,
};

fn allocator(c: &mut Criterion) {
    let pipe = PipeSpec::new(1_000_000_000, 50, 20_000_000).expect("pipe");
    let bookings: Vec<JobBooking> = (1..=8)
        .map(|j| JobBooking {
            job: j,
            booked: Rate::Bps(50_000_000),
            cap: None,
        })
        .collect();
    let local: Vec<JobDemand> = (1..=8)
        .map(|j| JobDemand {
            job: j,
            queued: 100_000,
            arrived: 200_000,
            debt: 0,
        })
        .collect();
    let mut g = c.benchmark_group("allocator");
    for nodes in [3usize, 16, 128] {
        let mine = node_demand(&pipe, &bookings, &local);
        let peers: Vec<NodePipeDemand> = (1..nodes).map(|_| mine.node.clone()).collect();
        g.bench_function(format!("allocate/{nodes}_nodes_8_jobs"), |b| {
            b.iter(|| allocate(black_box(&pipe), &bookings, black_box(&peers), &mine))
        });
    }
    g.bench_function("node_demand/8_jobs", |b| {
        b.iter(|| node_demand(black_box(&pipe), &bookings, black_box(&local)))
    });
    g.finish();
}

criterion_group!(benches, allocator);
criterion_main!(benches);
