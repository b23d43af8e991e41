use std::time::Duration;

use proptest::prelude::*;

use super::*;

#[test]
fn buckets_tile_the_range() {
    assert_eq!(BUCKETS, 736);
    assert_eq!(bucket_low(0), 0);
    for i in 0..BUCKETS {
        let (lo, hi) = (bucket_low(i), bucket_low(i + 1));
        assert!(hi > lo, "bucket {i}");
        assert_eq!(bucket_of(lo), i, "low edge of {i}");
        assert_eq!(bucket_of(hi - 1), i, "high edge of {i}");
        // Resolution: a bucket is at most 1/32 of its lower bound wide
        // (one microsecond in the linear part).
        assert!(
            bucket_width(i) == 1 || bucket_width(i) * 32 <= lo,
            "width of {i}"
        );
    }
    assert_eq!(bucket_low(BUCKETS), 1 << 27);
    assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    assert_eq!(bucket_of(1 << 27), BUCKETS - 1);
    // The 20 ms test's resolution.
    assert_eq!(bucket_width(bucket_of(20_000)), 512);
    assert_eq!(bucket_width(bucket_of(50_000)), 1024);
}

#[test]
fn quantiles_mean_and_fractions() {
    let mut h = Histogram::new();
    assert_eq!(h.quantile(0.5), None);
    assert_eq!(h.mean(), None);
    assert_eq!(h.fraction_within(Duration::from_secs(1)), 0.0);
    // 10 000 values evenly over 10..30 ms.
    for i in 0..10_000u64 {
        h.record_us(10_000 + i * 2);
    }
    assert_eq!(h.count(), 10_000);
    for (q, want) in [(0.5, 20_000.0), (0.9, 28_000.0), (0.1, 12_000.0)] {
        let got = h.quantile(q).unwrap().as_nanos() as f64 / 1000.0;
        assert!((got - want).abs() <= 512.0, "q{q}: {got} vs {want}");
    }
    assert_eq!(h.mean(), Some(Duration::from_nanos(19_999_000)));
    let f = h.fraction_within(Duration::from_millis(20));
    assert!((f - 0.5).abs() < 0.02, "{f}");
    assert_eq!(h.fraction_within(Duration::from_millis(40)), 1.0);
    assert_eq!(h.fraction_within(Duration::from_millis(5)), 0.0);
    // A constant is answered within its bucket.
    let mut c = Histogram::new();
    for _ in 0..100 {
        c.record(Duration::from_millis(20));
    }
    let m = c.quantile(0.5).unwrap();
    assert!(
        m.abs_diff(Duration::from_millis(20)) < Duration::from_micros(512),
        "{m:?}"
    );
    // Huge values saturate into the last bucket instead of wrapping.
    c.record(Duration::from_secs(100_000));
    assert_eq!(c.bucket(BUCKETS - 1), 1);
    assert_eq!(c.quantile(1.0), Some(Duration::from_micros(1 << 27)));
}

#[test]
fn merge_and_since() {
    let mut a = Histogram::new();
    let mut b = Histogram::new();
    for i in 0..100 {
        a.record_us(1000 + i);
        b.record_us(50_000 + i);
    }
    let snap = a.clone();
    a.record_us(7);
    let d = a.since(&snap);
    assert_eq!((d.count(), d.sum_us(), d.bucket(7)), (1, 7, 1));
    let mut m = a.clone();
    m.merge(&b);
    assert_eq!(m.count(), 201);
    assert_eq!(m.sum_us(), a.sum_us() + b.sum_us());
    // A restarted source: the newer copy holds less; all of it is new.
    let restarted = b.since(&a);
    assert_eq!(restarted, b);
    let mut e = m.clone();
    e.clear();
    assert!(e.is_empty() && e.buckets().next().is_none());
}

#[test]
fn wire_round_trip_and_sizes() {
    let mut h = Histogram::new();
    for i in 0..1000u64 {
        h.record_us(18_000 + (i * 37) % 4000);
    }
    let mut out = Vec::new();
    h.encode(&mut out);
    assert!(out.len() < 40, "{} bytes", out.len());
    assert_eq!(Histogram::decode(&out).unwrap(), h);
    // An exponential-ish spread over many octaves.
    let mut wide = Histogram::new();
    let mut x = 1u64;
    for _ in 0..20_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        wide.record_us((-(1.0 - u).ln() * 20_000.0) as u64);
    }
    let mut full = Vec::new();
    wide.encode(&mut full);
    assert_eq!(Histogram::decode(&full).unwrap(), wide);
    let mut small = Vec::new();
    let shift = wide.encode_within(120, &mut small).unwrap();
    assert!(shift > 0 && small.len() <= 120, "{shift} {}", small.len());
    let coarse = Histogram::decode(&small).unwrap();
    assert_eq!(coarse.count(), wide.count());
    let (a, b) = (wide.quantile(0.9).unwrap(), coarse.quantile(0.9).unwrap());
    let rel = a.abs_diff(b).as_secs_f64() / a.as_secs_f64();
    assert!(
        rel < 0.5_f64.powi(SUB_BITS as i32 - i32::from(shift)),
        "{a:?} {b:?}"
    );
    // Nothing fits a 3-byte budget.
    let mut none = vec![9];
    assert_eq!(wide.encode_within(3, &mut none), None);
    assert_eq!(none, [9]);
    // Empty.
    let mut e = Vec::new();
    Histogram::new().encode(&mut e);
    assert_eq!(e, [WIRE_VERSION, 0, 0, 0]);
    assert!(Histogram::decode(&e).unwrap().is_empty());
}

#[test]
fn malformed_wire_is_rejected() {
    use DecodeError as E;
    assert_eq!(Histogram::decode(&[]), Err(E::Truncated));
    assert_eq!(Histogram::decode(&[2, 0, 0, 0]), Err(E::Version(2)));
    assert_eq!(Histogram::decode(&[1, 6, 0, 0]), Err(E::Shift(6)));
    assert_eq!(Histogram::decode(&[1, 0, 1, 0]), Err(E::Counts));
    assert_eq!(Histogram::decode(&[1, 0, 1, 0, 0, 0]), Err(E::Counts));
    assert_eq!(
        Histogram::decode(&[1, 0, 1, 0, 0xe0, 0x05, 1]),
        Err(E::Index)
    );
    assert_eq!(Histogram::decode(&[1, 0, 1, 0, 3]), Err(E::Truncated));
    assert_eq!(
        Histogram::decode(&[1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        Err(E::Varint)
    );
    // Two runs whose counts overflow the total.
    let mut b = vec![1, 0];
    put_varint(&mut b, 5);
    put_varint(&mut b, 0);
    put_varint(&mut b, 0);
    put_varint(&mut b, u64::MAX);
    put_varint(&mut b, 0);
    put_varint(&mut b, 9);
    assert_eq!(Histogram::decode(&b), Err(E::Counts));
}

fn from_values(v: &[u32]) -> Histogram {
    let mut h = Histogram::new();
    for &x in v {
        h.record_us(u64::from(x));
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Every quantile lies within one bucket of the exact order statistic.
    #[test]
    fn quantile_within_a_bucket(mut v in proptest::collection::vec(0u32..200_000_000, 1..400), q in 0.0f64..=1.0) {
        let h = from_values(&v);
        v.sort_unstable();
        let k = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        let exact = u64::from(v[k]).min((1 << 27) - 1);
        let got = h.quantile(q).unwrap().as_micros() as u64;
        let slack = bucket_width(bucket_of(exact)) + 1;
        // Interpolation may land in a neighbouring bucket's range only by
        // the width of the bucket it came from.
        let lo = bucket_low(bucket_of(u64::from(v[k.saturating_sub(1)]).min((1 << 27) - 1)));
        prop_assert!(got + slack >= lo.min(exact), "q{} got {} exact {}", q, got, exact);
        prop_assert!(got <= bucket_low(bucket_of(exact) + 1) + slack, "q{} got {} exact {}", q, got, exact);
    }

    /// Merging is addition; `since` undoes a merge; the wire form round-trips.
    #[test]
    fn merge_since_wire(a in proptest::collection::vec(any::<u32>(), 0..200), b in proptest::collection::vec(any::<u32>(), 0..200), budget in 8usize..400) {
        let (ha, hb) = (from_values(&a), from_values(&b));
        let mut ab = ha.clone();
        ab.merge(&hb);
        let all: Vec<u32> = a.iter().chain(&b).copied().collect();
        prop_assert_eq!(&ab, &from_values(&all));
        prop_assert_eq!(ab.since(&ha), hb.clone());
        let mut out = Vec::new();
        ab.encode(&mut out);
        prop_assert_eq!(Histogram::decode(&out).unwrap(), ab.clone());
        let mut small = Vec::new();
        if let Some(_shift) = ab.encode_within(budget, &mut small) {
            prop_assert!(small.len() <= budget);
            let c = Histogram::decode(&small).unwrap();
            prop_assert_eq!(c.count(), ab.count());
            prop_assert_eq!(c.sum_us(), ab.sum_us());
        }
        fuzz_decode(&out);
        fuzz_decode(&small);
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        fuzz_decode(&data);
        let mut d = vec![WIRE_VERSION, 0];
        d.extend_from_slice(&data);
        fuzz_decode(&d);
    }
}
