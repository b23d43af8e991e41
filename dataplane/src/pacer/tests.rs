use super::*;
use headroom_clock::Timestamp;

/// The simulated time `ns` after start.
fn ts(ns: u64) -> Timestamp {
    Timestamp::from_nanos(ns)
}

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const T: u64 = 20 * MS;

fn config(jobs: u16, workers: usize, queue_limit_pkts: usize) -> PacerConfig {
    PacerConfig {
        pipes: vec![PacerPipeConfig {
            jobs,
            interval_ns: T,
            queue_limit_pkts,
            queue_limit_bytes: queue_limit_pkts as u64 * 1514,
            // Only the packet and byte limits here; the delay limit has its own test.
            max_queue_delay_ns: 0,
            min_queue_bytes: 0,
            initial_immediate_bps: 0,
        }],
        workers,
        ..PacerConfig::default()
    }
}

/// Bytes per 20 ms interval at `bps`.
fn per_interval(bps: u64) -> u64 {
    bps / 8 * T / SEC
}

fn credit(job: u16, bytes: u64) -> JobCredit {
    JobCredit {
        job,
        credit_bytes: bytes,
        immediate_allowance: None,
    }
}

/// A saturating source paced at `bps` for `duration`: the queue is kept topped up, the worker
/// wakes at `next_release_time` (or every `tick`, whichever is first) and grants are
/// re-applied every interval. Returns bytes sent in `[0, duration)` and the largest number of
/// bytes released in one `poll_release`.
fn run_saturated(bps: u64, pkt: u32, duration: u64) -> (u64, u64) {
    let mut control = PacerControl::new(config(1, 1, 256)).unwrap();
    let mut pacer: Pacer<u64> = control.worker(0).unwrap();
    let tick = 50_000;
    let (mut now, mut next_grant, mut sent, mut max_burst, mut seq) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    while now < duration {
        if now >= next_grant {
            control
                .set_grants(0, ts(now), 0, &[credit(0, per_interval(bps))])
                .unwrap();
            next_grant += T;
        }
        while pacer.queued() < 200 {
            assert!(matches!(
                pacer.admit(now, 0, 0, pkt, seq),
                Admit::Queued | Admit::Send(_)
            ));
            seq += 1;
        }
        let mut burst = 0;
        pacer.poll_release(now, usize::MAX, |_| burst += u64::from(pkt));
        sent += burst;
        max_burst = max_burst.max(burst);
        let wake = pacer.next_release_time(now).unwrap_or(u64::MAX);
        assert!(wake >= now);
        // Wake when credit arrives, but at most every 10 us (as a worker batching its ring
        // would), and at least every tick.
        now = wake.max(now + 10_000).min(now + tick).min(next_grant);
    }
    (sent, max_burst)
}

#[test]
fn rate_is_accurate_from_1_mbit_to_10_gbit() {
    for bps in [
        1_000_000,
        10_000_000,
        100_000_000,
        1_000_000_000,
        10_000_000_000,
    ] {
        for pkt in [1514u32, 64] {
            // Above 500k packets per second (1 Gbit/s of 64-byte packets, 10 Gbit/s of full
            // frames) 100 ms hold plenty of packets and keep the debug-build test fast.
            let pps = bps / 8 / u64::from(pkt);
            let duration = if pps > 500_000 { SEC / 10 } else { SEC };
            let (sent, max_burst) = run_saturated(bps, pkt, duration);
            let want = (bps / 8) as f64 * duration as f64 / SEC as f64;
            let err = (sent as f64 - want).abs() / want;
            assert!(
                err <= 0.01,
                "{bps} bit/s, {pkt} B: sent {sent}, want {want}, error {err}"
            );
            // Bursts: 1 ms of credit (or the 3028-byte minimum) plus one packet.
            let burst = (bps / 8 / 1000).max(3028) + u64::from(pkt);
            assert!(
                max_burst <= burst,
                "{bps} bit/s, {pkt} B: burst {max_burst} > {burst}"
            );
        }
    }
}

#[test]
fn bytes_in_any_window_stay_within_rate_plus_burst() {
    // 100 Mbit/s = 12_500 bytes per ms; burst 1 ms. Released packets are timestamped and every
    // window of 2 ms holds at most 2 ms of credit + the burst + one packet.
    let mut control = PacerControl::new(config(1, 1, 4096)).unwrap();
    let mut pacer: Pacer<u64> = control.worker(0).unwrap();
    control
        .set_grants(0, ts(0), 0, &[credit(0, per_interval(100_000_000))])
        .unwrap();
    let mut times = Vec::new();
    let mut now = 0;
    // Idle for 5 ms, then a 3000-packet burst arrives at once: 1 ms of credit (12_500
    // bytes, 9 packets) goes at once, the rest is queued.
    now += 5 * MS;
    for i in 0..3000 {
        if let Admit::Send(_) = pacer.admit(now, 0, 0, 1514, i) {
            times.push(now);
        }
    }
    assert_eq!(times.len(), 9);
    while now < 60 * MS {
        if now % T == 0 {
            control
                .set_grants(0, ts(now), 0, &[credit(0, per_interval(100_000_000))])
                .unwrap();
        }
        pacer.poll_release(now, usize::MAX, |_| times.push(now));
        now += 10_000;
    }
    // 55 ms at 12_500 bytes per ms: 454 packets after the first 9.
    assert!(times.len() >= 9 + 454, "{}", times.len());
    let window = 2 * MS;
    let limit = 2 * 12_500 + 12_500 + 1514;
    for (i, &t) in times.iter().enumerate() {
        let n = times[i..].iter().take_while(|&&u| u < t + window).count() as u64;
        assert!(n * 1514 <= limit, "{n} packets within 2 ms of {t}");
    }
}

#[test]
fn under_credit_nothing_is_queued() {
    // 1 Gbit/s granted, 500 Mbit/s offered evenly: every packet goes straight through.
    let mut control = PacerControl::new(config(1, 1, 64)).unwrap();
    let mut pacer: Pacer<u32> = control.worker(0).unwrap();
    let gap = 1514 * 8 * SEC / 500_000_000; // 24.2 us between packets
    let mut now = 0;
    let mut samples = Vec::new();
    for i in 0..20_000u32 {
        if now % T < gap {
            control.sample(0, ts(now), &mut samples).unwrap();
            control
                .set_grants(0, ts(now), 0, &[credit(0, per_interval(1_000_000_000))])
                .unwrap();
        }
        // The first packet at t = 0 has no credit yet: the burst allowance is earned at once.
        now += gap;
        assert_eq!(
            pacer.admit(now, 0, 0, 1514, i),
            Admit::Send(i),
            "packet {i} at {now}"
        );
    }
    assert_eq!(pacer.stats().queued, 0);
    assert_eq!(pacer.stats().sent_direct, 20_000);
    control.sample(0, ts(now), &mut samples).unwrap();
    assert_eq!((samples[0].queued_bytes, samples[0].dropped_pkts), (0, 0));
}

#[test]
fn queue_is_bounded_and_drops_are_counted() {
    let mut control = PacerControl::new(config(2, 1, 8)).unwrap();
    let mut pacer: Pacer<u32> = control.worker(0).unwrap();
    // No credit at all: 8 packets queue, the next 5 are dropped and handed back.
    for i in 0..13u32 {
        let r = pacer.admit(1000, 0, 1, 1000, i);
        if i < 8 {
            assert_eq!(r, Admit::Queued);
        } else {
            assert_eq!(r, Admit::Dropped(i));
        }
    }
    let mut samples = Vec::new();
    control.sample(0, ts(1000), &mut samples).unwrap();
    let s = samples[1];
    assert_eq!(
        (
            s.queued_pkts,
            s.queued_bytes,
            s.dropped_pkts,
            s.dropped_bytes
        ),
        (8, 8000, 5, 5000)
    );
    assert_eq!(s.arrived_bytes, 13_000);
    assert_eq!(pacer.stats().dropped_queue_full, 5);
    assert_eq!(pacer.next_release_time(1000), None);
    // A grant releases them in order.
    control
        .set_grants(0, ts(1000), 0, &[credit(1, 1_000_000)])
        .unwrap();
    let mut out = Vec::new();
    pacer.poll_release(1000 + MS, usize::MAX, |i| out.push(i));
    assert_eq!(out, (0..8).collect::<Vec<_>>());
    control.sample(0, ts(1000 + MS), &mut samples).unwrap();
    assert_eq!(
        (
            samples[1].queued_pkts,
            samples[1].sent_pkts,
            samples[1].arrived_bytes
        ),
        (0, 8, 0)
    );
}

#[test]
fn queue_delay_limit_follows_the_rate() {
    let mut cfg = config(1, 1, 1000);
    cfg.pipes[0].max_queue_delay_ns = 10 * MS;
    cfg.pipes[0].min_queue_bytes = 3000;
    let mut control = PacerControl::new(cfg).unwrap();
    let mut pacer: Pacer<u32> = control.worker(0).unwrap();
    // No credit yet: only the minimum, 3000 bytes, may wait.
    assert_eq!(pacer.admit(0, 0, 0, 1500, 0), Admit::Queued);
    assert_eq!(pacer.admit(0, 0, 0, 1500, 1), Admit::Queued);
    assert_eq!(pacer.admit(0, 0, 0, 1500, 2), Admit::Dropped(2));
    assert_eq!(pacer.stats().dropped_queue_delay, 1);
    // 200_000 bytes per 20 ms is 100_000 bytes per 10 ms: 66 packets of 1500 may wait.
    control
        .set_grants(0, ts(0), 0, &[credit(0, 200_000)])
        .unwrap();
    let queued = (3..200)
        .filter(|&i| pacer.admit(0, 0, 0, 1500, i) == Admit::Queued)
        .count();
    assert_eq!(queued, 66 - 2);
    assert_eq!(pacer.stats().dropped_queue_full, 0);
    let mut s = Vec::new();
    control.sample(0, ts(0), &mut s).unwrap();
    assert_eq!(s[0].dropped_pkts, 1 + 197 - 64);
}

#[test]
fn byte_limit_bounds_the_queue() {
    let mut cfg = config(1, 1, 100);
    cfg.pipes[0].queue_limit_bytes = 3000;
    let control = PacerControl::new(cfg).unwrap();
    let mut pacer: Pacer<u32> = control.worker(0).unwrap();
    assert_eq!(pacer.admit(0, 0, 0, 1500, 0), Admit::Queued);
    assert_eq!(pacer.admit(0, 0, 0, 1500, 1), Admit::Queued);
    assert_eq!(pacer.admit(0, 0, 0, 1, 2), Admit::Dropped(2));
}

#[test]
fn queued_traffic_keeps_its_order() {
    let mut control = PacerControl::new(config(1, 1, 16)).unwrap();
    let mut pacer: Pacer<u32> = control.worker(0).unwrap();
    assert_eq!(pacer.admit(0, 0, 0, 1000, 0), Admit::Queued);
    control
        .set_grants(0, ts(0), 0, &[credit(0, 1_000_000)])
        .unwrap();
    // Credit is there now, but packet 0 is still queued: packet 1 must wait behind it.
    assert_eq!(pacer.admit(MS, 0, 0, 100, 1), Admit::Queued);
    let mut out = Vec::new();
    assert_eq!(pacer.poll_release(MS, 1, |i| out.push(i)), 1);
    assert_eq!(pacer.poll_release(MS, 10, |i| out.push(i)), 1);
    assert_eq!(out, vec![0, 1]);
    assert_eq!(pacer.admit(MS, 0, 0, 100, 2), Admit::Send(2));
}

#[test]
fn next_release_time_is_when_credit_arrives() {
    let mut control = PacerControl::new(config(1, 1, 16)).unwrap();
    let mut pacer: Pacer<u32> = control.worker(0).unwrap();
    // 20_000 bytes per 20 ms = 1 byte per us.
    control
        .set_grants(0, ts(0), 0, &[credit(0, 20_000)])
        .unwrap();
    // At 1 ms there are 1000 bytes: a 1500-byte packet goes, 500 bytes of debt.
    assert_eq!(pacer.admit(MS, 0, 0, 1500, 0), Admit::Send(0));
    assert_eq!(pacer.admit(MS, 0, 0, 1500, 1), Admit::Queued);
    // Credit is positive again once 501 more bytes are earned: at about 1.501 ms.
    let t = pacer.next_release_time(MS).unwrap();
    assert!(t.abs_diff(MS + 501_000) <= 1000, "{t}");
    assert_eq!(pacer.poll_release(t - 1, 10, drop), 0);
    assert_eq!(pacer.poll_release(t, 10, drop), 1);
}

#[test]
fn immediate_credit_after_own_credit_and_within_cap() {
    let mut control = PacerControl::new(config(2, 1, 64)).unwrap();
    let mut pacer: Pacer<u32> = control.worker(0).unwrap();
    // Job 0: no own credit, allowance 3000 bytes; job 1: nothing granted, no cap.
    // Immediate: 2_000_000 bytes per interval = 100 bytes per us; burst 1 ms = 100_000 bytes.
    let jobs = [JobCredit {
        job: 0,
        credit_bytes: 0,
        immediate_allowance: Some(3000),
    }];
    control.set_grants(0, ts(0), 2_000_000, &jobs).unwrap();
    let now = 2 * MS;
    let sent0 = (0..10)
        .filter(|&i| matches!(pacer.admit(now, 0, 0, 1000, i), Admit::Send(_)))
        .count();
    // 3000 bytes of allowance: three 1000-byte packets (the third takes it to exactly 0).
    assert_eq!(sent0, 3);
    let sent1 = (0..200)
        .filter(|&i| matches!(pacer.admit(now, 0, 1, 1000, i), Admit::Send(_)))
        .count();
    // 100_000 bytes of burst, 3000 used by job 0: 97 packets, the 97th reaching exactly 0.
    assert_eq!(sent1, 97);
    assert_eq!(pacer.stats().sent_immediate, 100);
    let mut samples = Vec::new();
    control.sample(0, ts(now), &mut samples).unwrap();
    assert_eq!(
        (
            samples[0].sent_immediate_bytes,
            samples[1].sent_immediate_bytes
        ),
        (3000, 97_000)
    );
}

#[test]
fn debt_is_paid_by_unused_immediate_credit() {
    let mut control = PacerControl::new(config(2, 1, 64)).unwrap();
    let mut pacer: Pacer<u32> = control.worker(0).unwrap();
    let mut samples = Vec::new();
    control.sample(0, ts(0), &mut samples).unwrap();
    // Job 0 gets 1000 bytes per interval, and the node 100_000 bytes of immediate credit.
    control
        .set_grants(0, ts(0), 100_000, &[credit(0, 1000)])
        .unwrap();
    // At the end of the interval job 0 has 1000 bytes and sends 1500: 500 owed, none of it
    // on immediate credit (its own credit covered the packet).
    assert_eq!(pacer.admit(T, 0, 0, 1500, 0), Admit::Send(0));
    assert_eq!(control.stats().debt_forgiven_bytes, 0);
    // The 100_000 immediate bytes of the interval went unused: the 500 are forgiven at the
    // exchange, before they would be reported.
    control.sample(0, ts(T), &mut samples).unwrap();
    assert_eq!(control.stats().debt_forgiven_bytes, 500);
    assert_eq!(
        (samples[0].debt_bytes, samples[0].sent_immediate_bytes),
        (0, 0)
    );
}

#[test]
fn debt_without_spare_credit_is_paid_by_the_next_grant() {
    let mut control = PacerControl::new(config(1, 1, 64)).unwrap();
    let mut pacer: Pacer<u32> = control.worker(0).unwrap();
    control.set_grants(0, ts(0), 0, &[credit(0, 1000)]).unwrap();
    assert_eq!(pacer.admit(T, 0, 0, 1500, 0), Admit::Send(0));
    // No immediate credit was granted, so nothing pays the debt but the next grant.
    let mut samples = Vec::new();
    control.sample(0, ts(T), &mut samples).unwrap();
    assert_eq!(samples[0].debt_bytes, 500);
    control.set_grants(0, ts(T), 0, &[credit(0, 1000)]).unwrap();
    // Half an interval later 500 bytes are earned: just paid off, not yet sendable; one more
    // byte takes 20 us at 1000 bytes per 20 ms.
    assert_eq!(pacer.admit(T + T / 2, 0, 0, 1, 1), Admit::Queued);
    let t = pacer.next_release_time(T + T / 2).unwrap();
    assert!(t.abs_diff(T + T / 2 + 20_000) <= 10_000, "{t}");
    assert_eq!(pacer.poll_release(t - 1, 1, drop), 0);
    assert_eq!(pacer.poll_release(t, 1, drop), 1);
}

#[test]
fn bad_input_is_counted_not_fatal() {
    let mut control = PacerControl::new(config(2, 1, 4)).unwrap();
    let mut pacer: Pacer<u32> = control.worker(0).unwrap();
    assert_eq!(pacer.admit(0, 1, 0, 100, 7), Admit::Dropped(7));
    assert_eq!(pacer.admit(0, 0, 2, 100, 8), Admit::Dropped(8));
    assert_eq!(pacer.stats().dropped_bad_index, 2);
    assert_eq!(
        control.set_grants(0, ts(0), 0, &[credit(2, 1)]),
        Err(PacerError::UnknownJob { pipe: 0, job: 2 })
    );
    assert_eq!(
        control.set_grants(3, ts(0), 0, &[]),
        Err(PacerError::UnknownPipe(3))
    );
    assert_eq!(control.stats().grants_rejected, 2);
    let mut s = Vec::new();
    assert_eq!(
        control.sample(1, ts(0), &mut s),
        Err(PacerError::UnknownPipe(1))
    );
    assert_eq!(
        control.worker::<u32>(0).err(),
        Some(PacerError::WorkerTaken(0))
    );
    assert_eq!(
        control.worker::<u32>(1).err(),
        Some(PacerError::WorkerOutOfRange {
            worker: 1,
            workers: 1
        })
    );
    drop(pacer);
    assert!(control.worker::<u32>(0).is_ok());
}

#[test]
fn config_validation() {
    let mut c = config(1, 1, 4);
    c.workers = 0;
    assert_eq!(PacerControl::new(c).err(), Some(PacerError::NoWorkers));
    let mut c = config(0, 1, 4);
    assert_eq!(
        PacerControl::new(c.clone()).err(),
        Some(PacerError::NoJobs(0))
    );
    c.pipes.clear();
    assert_eq!(PacerControl::new(c).err(), Some(PacerError::NoPipes));
    let mut c = config(1, 1, 0);
    assert_eq!(
        PacerControl::new(c.clone()).err(),
        Some(PacerError::ZeroQueueLimit(0))
    );
    c.pipes[0].interval_ns = 0;
    assert_eq!(
        PacerControl::new(c).err(),
        Some(PacerError::ZeroInterval(0))
    );
}

#[test]
fn drain_hands_back_queued_items() {
    let mut control = PacerControl::new(config(1, 1, 8)).unwrap();
    let mut pacer: Pacer<u32> = control.worker(0).unwrap();
    for i in 0..3 {
        let _ = pacer.admit(0, 0, 0, 100, i);
    }
    let mut back = Vec::new();
    pacer.drain(|i| back.push(i));
    assert_eq!(back, vec![0, 1, 2]);
    let mut s = Vec::new();
    control.sample(0, ts(0), &mut s).unwrap();
    assert_eq!((s[0].queued_pkts, s[0].dropped_pkts), (0, 3));
}

#[test]
fn concurrent_workers_never_overspend_by_more_than_a_packet_each() {
    // Frozen clock, 20M bytes of own credit (burst large enough to hold it) and 10M of
    // immediate credit; two threads released together spend 1500-byte packets until refused.
    const OWN: u64 = 20_000_000;
    const IMM: u64 = 10_000_000;
    for round in 0..10 {
        let mut cfg = config(1, 2, 16);
        cfg.min_burst_bytes = 100_000_000;
        let mut control = PacerControl::new(cfg).unwrap();
        control
            .set_grants(0, ts(0), IMM, &[credit(0, OWN)])
            .unwrap();
        let now = T; // one interval: exactly the granted credit has been earned
        let start = std::sync::Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|w| {
                let mut pacer: Pacer<u32> = control.worker(w).unwrap();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    let mut sent = 0u64;
                    let mut i = 0;
                    while let Admit::Send(_) = pacer.admit(now, 0, 0, 1500, i) {
                        sent += 1500;
                        i += 1;
                    }
                    sent
                })
            })
            .collect();
        let per_thread: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let total: u64 = per_thread.iter().sum();
        assert!(
            total >= OWN + IMM,
            "round {round}: credit left unused: {total}"
        );
        assert!(
            total <= OWN + IMM + 2 * 1500,
            "round {round}: overspent: {total} ({per_thread:?})"
        );
        let mut s = Vec::new();
        control.sample(0, ts(now), &mut s).unwrap();
        assert_eq!(s[0].sent_bytes, total);
    }
}

#[test]
fn bench_fixture_sends_at_rate() {
    let (_control, mut pacer) = bench_fixture(1_000_000_000).unwrap();
    // 1 Gbit/s = 125 bytes per us: at 1 ms, 125_000 bytes (within the 1 ms burst).
    let sent = (0..200)
        .filter(|&i| matches!(pacer.admit(MS, 0, 0, 1000, i), Admit::Send(_)))
        .count();
    assert_eq!(sent, 125);
}

/// One interval of a random scenario: grants, then packets offered at random times.
#[derive(Debug, Clone)]
struct Step {
    own: [u64; 2],
    immediate: u64,
    allowance: Option<u64>,
    /// (offset within the interval, job, length) of each offered packet.
    packets: Vec<(u64, u16, u32)>,
}

fn arb_step() -> impl proptest::strategy::Strategy<Value = Vec<Step>> {
    use proptest::prelude::*;
    let packet = (0..T, 0u16..2, 64u32..=1514);
    let step = (
        // Grants mostly below the offered load (about 240k bytes per interval), so credit runs
        // out and the bound is tested.
        [0u64..100_000, 0u64..100_000],
        0u64..100_000,
        proptest::option::of(0u64..50_000),
        proptest::collection::vec(packet, 0..300),
    )
        .prop_map(|(own, immediate, allowance, mut packets)| {
            packets.sort_unstable();
            Step {
                own,
                immediate,
                allowance,
                packets,
            }
        });
    proptest::collection::vec(step, 1..12)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Whatever the grants and traffic: every packet is accounted for exactly once, queues
    /// stay within their limits, and the pacer never sends more than it was granted (own
    /// plus immediate credit) beyond one packet per bucket and the carried-over burst.
    #[test]
    fn never_sends_more_than_granted(steps in arb_step()) {
        let mut cfg = config(2, 1, 32);
        cfg.pipes[0].max_queue_delay_ns = 5 * MS;
        cfg.pipes[0].min_queue_bytes = 4000;
        let mut control = PacerControl::new(cfg).unwrap();
        let mut pacer: Pacer<u32> = control.worker(0).unwrap();
        let (mut granted, mut sent, mut offered, mut dropped, mut id) = (0u64, 0u64, 0u64, 0u64, 0u32);
        let mut samples = Vec::new();
        // Deltas summed over all samples: sent, dropped, arrived.
        let mut seen = [0u64; 3];
        let mut add = |samples: &[JobSample]| {
            for s in samples {
                seen[0] += s.sent_bytes;
                seen[1] += s.dropped_bytes;
                seen[2] += s.arrived_bytes;
            }
        };
        for (k, step) in steps.iter().enumerate() {
            let start = k as u64 * T;
            control.sample(0, ts(start), &mut samples).unwrap();
            add(&samples);
            let jobs = [
                JobCredit { job: 0, credit_bytes: step.own[0], immediate_allowance: step.allowance },
                JobCredit { job: 1, credit_bytes: step.own[1], immediate_allowance: None },
            ];
            control.set_grants(0, ts(start), step.immediate, &jobs).unwrap();
            granted += step.own[0] + step.own[1] + step.immediate;
            for &(at, job, len) in &step.packets {
                let now = start + at;
                pacer.poll_release(now, usize::MAX, |_| ());
                offered += u64::from(len);
                match pacer.admit(now, 0, job, len, id) {
                    Admit::Send(i) => { proptest::prop_assert_eq!(i, id); sent += u64::from(len); }
                    Admit::Queued => {}
                    Admit::Dropped(i) => { proptest::prop_assert_eq!(i, id); dropped += u64::from(len); }
                }
                id += 1;
            }
            pacer.poll_release(start + T - 1, usize::MAX, |_| ());
            proptest::prop_assert!(pacer.queued() <= 2 * 32);
        }
        let end = steps.len() as u64 * T;
        control.sample(0, ts(end), &mut samples).unwrap();
        add(&samples);
        let [total_sent, dropped_all, arrived] = seen;
        let queued: u64 = samples.iter().map(|s| s.queued_bytes).sum();
        // Conservation, as seen by the control thread's counters.
        proptest::prop_assert_eq!(arrived, offered);
        proptest::prop_assert_eq!(total_sent + queued + dropped_all, offered);
        proptest::prop_assert!(total_sent >= sent);
        proptest::prop_assert_eq!(dropped_all, dropped);
        for s in &samples {
            // Per job and worker the byte limit is 32 * 1514, the delay floor 4000 bytes.
            proptest::prop_assert!(s.queued_pkts <= 32 && s.queued_bytes <= 32 * 1514);
        }
        // Credit: three buckets, each at most one packet over.
        proptest::prop_assert!(
            total_sent <= granted + 3 * 1514,
            "sent {} > granted {}", total_sent, granted
        );
    }
}
