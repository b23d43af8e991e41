use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;
use crate::packet::tcp::flags::{ACK, FIN, PSH, RST, SYN};

const MS: u64 = 1_000_000;
const WEB: JobId = JobId(1);

fn tracker(capacity: usize) -> ResponseTracker {
    let mut rt = ResponseTracker::new(ResponseConfig {
        capacity,
        idle_timeout_ns: 60_000 * MS,
    });
    rt.set_measured(&[WEB]);
    rt
}

/// The client's view of a connection (wire key client -> server).
fn client(port: u16) -> FlowKey {
    FlowKey::v4(
        6,
        Ipv4Addr::new(10, 200, 2, 1),
        Ipv4Addr::new(10, 200, 1, 1),
        port,
        80,
    )
}

/// One segment on the wire, as the generator and the tests describe it.
#[derive(Debug, Clone, Copy)]
struct Seg {
    t: u64,
    inbound: bool,
    seg: TcpMeta,
}

/// Builds a connection's segments with correct sequence numbers.
struct Script {
    segs: Vec<Seg>,
    cseq: u32,
    sseq: u32,
}

impl Script {
    fn new(isn_c: u32, isn_s: u32) -> Self {
        Self {
            segs: Vec::new(),
            cseq: isn_c,
            sseq: isn_s,
        }
    }
    fn push(&mut self, t: u64, inbound: bool, flags: u8, len: u32) -> Seg {
        let (seq, ack) = if inbound {
            (self.cseq, self.sseq)
        } else {
            (self.sseq, self.cseq)
        };
        let s = Seg {
            t,
            inbound,
            seg: TcpMeta {
                flags,
                seq,
                ack,
                payload_len: len,
            },
        };
        let adv = len + u32::from(flags & (SYN | FIN) != 0);
        if inbound {
            self.cseq = self.cseq.wrapping_add(adv);
        } else {
            self.sseq = self.sseq.wrapping_add(adv);
        }
        self.segs.push(s);
        s
    }
    fn handshake(&mut self, t: u64, server_delay: u64) {
        self.push(t, true, SYN, 0);
        self.push(t + server_delay, false, SYN | ACK, 0);
        self.push(t + server_delay + MS, true, ACK, 0);
    }
}

fn feed(rt: &mut ResponseTracker, key: FlowKey, segs: &[Seg]) {
    for s in segs {
        let (k, d) = if s.inbound {
            (key, Direction::Inbound)
        } else {
            (key.reversed(), Direction::Outbound)
        };
        rt.on_segment(s.t, d, &k, WEB, &s.seg);
    }
}

fn samples_ms(rt: &ResponseTracker) -> (u64, u64, u64) {
    let j = rt.job(WEB).unwrap();
    (j.response.count(), j.requests, j.unanswered)
}

#[test]
fn one_request_with_setup_time() {
    let mut rt = tracker(16);
    let mut s = Script::new(1000, 5000);
    s.handshake(0, 3 * MS);
    s.push(10 * MS, true, ACK | PSH, 300);
    s.push(10 * MS, true, ACK | PSH, 200); // the request's second segment
    s.push(11 * MS, false, ACK, 0); // the server's ACK: no data
    s.push(30 * MS, false, ACK | PSH, 1448);
    s.push(30 * MS + 10_000, false, ACK | PSH, 1448);
    s.push(31 * MS, true, ACK, 0);
    feed(&mut rt, client(40_000), &s.segs);
    let j = rt.job(WEB).unwrap();
    assert_eq!(j.setup.count(), 1);
    let setup = j.setup.quantile(0.5).unwrap().as_micros() as i64;
    assert!((setup - 3000).abs() <= 32, "{setup}");
    assert_eq!((j.response.count(), j.requests, j.unanswered), (1, 1, 0));
    let r = j.response.quantile(0.5).unwrap().as_micros() as i64;
    assert!((r - 20_000).abs() <= 512, "{r}");
    assert_eq!(rt.len(), 1);
}

#[test]
fn keep_alive_requests_and_close() {
    let mut rt = tracker(16);
    let mut s = Script::new(u32::MAX - 100, 7); // the client's sequence wraps
    s.handshake(0, MS);
    let mut t = 10 * MS;
    for i in 0..5u64 {
        s.push(t, true, ACK | PSH, 400);
        s.push(t + (10 + i) * MS, false, ACK | PSH, 2000);
        s.push(t + (11 + i) * MS, true, ACK, 0);
        t += 100 * MS;
    }
    s.push(t, true, ACK | FIN, 0);
    s.push(t + MS, false, ACK | FIN, 0);
    feed(&mut rt, client(40_001), &s.segs);
    let j = rt.job(WEB).unwrap();
    assert_eq!((j.response.count(), j.requests, j.unanswered), (5, 5, 0));
    // 10, 11, .., 14 ms.
    let mean = j.response.mean().unwrap().as_micros() as i64;
    assert!((mean - 12_000).abs() <= 10, "{mean}");
    assert_eq!(rt.len(), 0, "FINs both ways free the entry");
}

#[test]
fn retransmissions_do_not_start_or_close_turns() {
    let mut rt = tracker(16);
    let mut s = Script::new(100, 200);
    // The first SYN is dropped by the server (full listen queue); the
    // client retransmits after 1 s: the setup time counts from the first.
    s.push(0, true, SYN, 0);
    s.cseq = 100;
    s.push(1000 * MS, true, SYN, 0);
    s.push(1000 * MS + 100_000, false, SYN | ACK, 0);
    s.push(1001 * MS, true, ACK, 0);
    let req = s.push(1010 * MS, true, ACK | PSH, 100);
    // The request retransmitted before the reply: the same turn.
    s.segs.push(Seg {
        t: 1210 * MS,
        ..req
    });
    let rep = s.push(1230 * MS, false, ACK | PSH, 100);
    // Both retransmitted after the reply began.
    s.segs.push(Seg {
        t: 1240 * MS,
        ..req
    });
    s.segs.push(Seg {
        t: 1440 * MS,
        ..rep
    });
    // The next request.
    s.push(1500 * MS, true, ACK | PSH, 100);
    s.push(1505 * MS, false, ACK | PSH, 100);
    feed(&mut rt, client(40_002), &s.segs);
    let j = rt.job(WEB).unwrap();
    let setup = j.setup.quantile(0.5).unwrap().as_millis();
    assert!((995..=1010).contains(&setup), "{setup}");
    assert_eq!((j.response.count(), j.requests, j.unanswered), (2, 2, 0));
    // 220 ms (from the first copy of the request) and 5 ms.
    let lo = j.response.quantile(0.0).unwrap().as_micros();
    let hi = j.response.quantile(1.0).unwrap().as_micros();
    assert!((4_800..=5_200).contains(&lo), "{lo}");
    assert!((216_000..=224_000).contains(&hi), "{hi}");
    let st = rt.snapshot().stats;
    assert_eq!((st.syn_retransmits, st.retransmits), (1, 3));
}

#[test]
fn half_close_reset_and_reuse() {
    let mut rt = tracker(16);
    // The client sends its request with FIN (half-close); the reply is timed.
    let mut s = Script::new(1, 1);
    s.handshake(0, MS);
    s.push(5 * MS, true, ACK | PSH | FIN, 50);
    s.push(25 * MS, false, ACK | PSH, 500);
    s.push(26 * MS, false, ACK | FIN, 0);
    feed(&mut rt, client(40_003), &s.segs);
    assert_eq!(samples_ms(&rt), (1, 1, 0));
    assert_eq!(rt.len(), 0);
    // A request the server resets: unanswered, entry freed.
    let mut s = Script::new(1, 1);
    s.handshake(0, MS);
    s.push(5 * MS, true, ACK | PSH, 50);
    s.push(6 * MS, false, RST, 0);
    feed(&mut rt, client(40_004), &s.segs);
    assert_eq!(samples_ms(&rt), (1, 2, 1));
    assert_eq!(rt.len(), 0);
    // A new SYN on a tuple with a waiting request: the old turn is
    // unanswered, the new connection is timed from its own SYN.
    let mut s = Script::new(1, 1);
    s.handshake(0, MS);
    s.push(5 * MS, true, ACK | PSH, 50);
    let mut s2 = Script::new(90_000, 1);
    s2.handshake(100 * MS, 2 * MS);
    s2.push(110 * MS, true, ACK | PSH, 50);
    s2.push(112 * MS, false, ACK | PSH, 50);
    s.segs.extend(s2.segs);
    feed(&mut rt, client(40_005), &s.segs);
    assert_eq!(samples_ms(&rt), (2, 4, 2));
    assert_eq!(rt.job(WEB).unwrap().setup.count(), 4);
}

#[test]
fn replies_elsewhere_are_not_measured() {
    let mut rt = tracker(16);
    // Direct server return, this node forwards: SYN in, no SYN-ACK here, then
    // the client's ACK and request.
    let mut s = Script::new(1, 1);
    s.push(0, true, SYN, 0);
    s.sseq = s.sseq.wrapping_add(1);
    s.push(MS, true, ACK, 0);
    s.push(2 * MS, true, ACK | PSH, 100);
    feed(&mut rt, client(40_006), &s.segs);
    let st = rt.snapshot().stats;
    assert_eq!((st.tracked, st.replies_unseen, st.connections), (1, 1, 0));
    assert_eq!(samples_ms(&rt), (0, 0, 0));
    // A connection the host opened (SYN outbound) and one already open when
    // the tracker started (no SYN seen) are not tracked.
    let mut s = Script::new(1, 1);
    s.push(0, false, SYN, 0);
    s.push(MS, true, SYN | ACK, 0);
    s.push(2 * MS, false, ACK | PSH, 10);
    s.push(3 * MS, true, ACK | PSH, 10);
    feed(&mut rt, client(40_007), &s.segs);
    let mut s = Script::new(1, 1);
    s.push(0, true, ACK | PSH, 10);
    s.push(MS, false, ACK | PSH, 10);
    feed(&mut rt, client(40_008), &s.segs);
    let st = rt.snapshot().stats;
    // The DSR connection's request after it was dropped, and 4 + 2 here.
    assert_eq!(
        (st.tracked, st.untracked_segments, st.connections),
        (1, 7, 0)
    );
    // Jobs not measured are ignored outright.
    let mut s = Script::new(1, 1);
    s.handshake(0, MS);
    for x in &s.segs {
        rt.on_segment(x.t, Direction::Inbound, &client(40_009), JobId(2), &x.seg);
    }
    assert_eq!(rt.snapshot().stats.untracked_segments, 7);
}

#[test]
fn table_bound_expiry_and_measured_set() {
    let mut rt = tracker(2);
    for port in 0..3 {
        let mut s = Script::new(1, 1);
        s.handshake(0, MS);
        s.push(5 * MS, true, ACK | PSH, 10);
        feed(&mut rt, client(41_000 + port), &s.segs);
    }
    let st = rt.snapshot().stats;
    assert_eq!(
        (st.tracked, st.table_full, st.connections, st.capacity),
        (2, 1, 2, 2)
    );
    // Idle connections go; their waiting turns are unanswered.
    assert_eq!(rt.expire(30_000 * MS), 0);
    assert_eq!(rt.expire(61_000 * MS), 2);
    assert_eq!(rt.expire(61_500 * MS), 0, "at most one sweep a second");
    assert_eq!(samples_ms(&rt), (0, 2, 2));
    assert!(rt.is_empty());
    // Changing the measured set keeps the counts of jobs that stay.
    rt.set_measured(&[JobId(3), WEB]);
    assert_eq!(samples_ms(&rt), (0, 2, 2));
    assert!(rt.measures(JobId(3)) && !rt.measures(JobId(2)));
    rt.set_measured(&[]);
    assert!(!rt.measures(WEB));
    assert!(rt.snapshot().jobs.is_empty());
}

#[test]
fn reports_merge_across_workers() {
    let mut a = tracker(8);
    let mut b = tracker(8);
    b.set_measured(&[WEB, JobId(4)]);
    for (rt, port, d) in [(&mut a, 1, 10), (&mut b, 2, 30)] {
        let mut s = Script::new(1, 1);
        s.handshake(0, MS);
        s.push(5 * MS, true, ACK | PSH, 10);
        s.push((5 + d) * MS, false, ACK | PSH, 10);
        feed(rt, client(port), &s.segs);
    }
    let mut r = a.snapshot();
    let before = r.clone();
    r.merge(&b.snapshot());
    assert_eq!(r.jobs.len(), 2);
    let web = r.job(WEB).unwrap();
    assert_eq!(
        (web.response.count(), web.requests, web.setup.count()),
        (2, 2, 2)
    );
    assert_eq!(r.stats.tracked, 2);
    let d = web.since(before.job(WEB).unwrap());
    assert_eq!((d.response.count(), d.requests), (1, 1));
    assert!(d.response.quantile(0.5).unwrap().as_millis() >= 29);
}

#[test]
fn reads_real_frames() {
    use crate::packet::{build, parse_frame};
    let (c, h) = (Ipv4Addr::new(10, 200, 2, 1), Ipv4Addr::new(10, 200, 1, 1));
    let mut f = build::tcp4(c, 40_000, h, 80, ACK | PSH, b"GET / HTTP/1.1\r\n\r\n");
    let info = parse_frame(&f).unwrap();
    let l4 = usize::from(info.l4_offset.unwrap());
    let mut t = TcpSegment::new_checked(&mut f[l4..]).unwrap();
    t.set_seq(77);
    t.set_ack(99);
    let m = TcpMeta::from_frame(&f, &info).unwrap();
    assert_eq!(
        m,
        TcpMeta {
            flags: ACK | PSH,
            seq: 77,
            ack: 99,
            payload_len: 18
        }
    );
    // Padded to 60 bytes: the padding is not payload.
    let syn = build::tcp4(c, 40_000, h, 80, SYN, b"");
    let m = TcpMeta::from_frame(&syn, &parse_frame(&syn).unwrap()).unwrap();
    assert_eq!((m.flags, m.payload_len), (SYN, 0));
    let v6 = build::tcp6(
        "fd00::1".parse().unwrap(),
        1,
        "fd00::2".parse().unwrap(),
        80,
        ACK,
        b"abc",
    );
    assert_eq!(
        TcpMeta::from_frame(&v6, &parse_frame(&v6).unwrap())
            .unwrap()
            .payload_len,
        3
    );
    let udp = build::udp4(c, 1, h, 2, b"x");
    assert_eq!(TcpMeta::from_frame(&udp, &parse_frame(&udp).unwrap()), None);
}

/// A random conversation: turns of request and reply segments, pure ACKs,
/// and retransmitted copies of earlier segments at random later times.
/// Returns the segments in time order and each turn's true response time.
fn conversation(turns: &[(u8, u8, u16, u16)], dups: &[(u16, u16)]) -> (Vec<Seg>, Vec<u64>) {
    let mut s = Script::new(0xfff0_0000, 0x8000_0000);
    s.handshake(0, MS);
    let mut t = 2 * MS;
    let mut want = Vec::new();
    for &(req_segs, rep_segs, think, serve) in turns {
        t += u64::from(think) * 10_000 + 1;
        let start = t;
        for _ in 0..=req_segs % 4 {
            s.push(t, true, ACK | PSH, 100);
            t += 1000;
        }
        t += u64::from(serve) * 10_000 + 1;
        want.push(t - start);
        for _ in 0..=rep_segs % 4 {
            s.push(t, false, ACK | PSH, 1000);
            t += 1000;
        }
        s.push(t, true, ACK, 0);
    }
    let mut segs = s.segs.clone();
    let n = segs.len();
    for &(which, delay) in dups {
        let orig = s.segs[3 + usize::from(which) % (n - 3)];
        segs.push(Seg {
            t: orig.t + u64::from(delay) * 1000 + 1,
            ..orig
        });
    }
    segs.sort_by_key(|x| x.t);
    (segs, want)
}

/// The frames an XDP fast path that keeps per-flow turn marks would hand to
/// the workers: SYN, FIN and RST segments, and the first new data segment
/// after the direction of new data changed. Everything else it forwards.
fn edges(segs: &[Seg]) -> Vec<Seg> {
    let (mut next_in, mut next_out, mut last_in): (Option<u32>, Option<u32>, Option<bool>) =
        (None, None, None);
    let mut out = Vec::new();
    for s in segs {
        let m = s.seg;
        if m.flags & (SYN | FIN | RST) != 0 {
            out.push(*s);
            let next = m.seq.wrapping_add(1);
            if s.inbound {
                next_in = Some(next);
            } else {
                next_out = Some(next);
            }
            continue;
        }
        if m.payload_len == 0 {
            continue;
        }
        let mark = if s.inbound {
            &mut next_in
        } else {
            &mut next_out
        };
        let end = m.seq.wrapping_add(m.payload_len);
        if mark.is_none_or(|x| seq_after(end, x)) {
            *mark = Some(end);
            if last_in != Some(s.inbound) {
                last_in = Some(s.inbound);
                out.push(*s);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Every turn is measured once, at its true response time (within the
    /// histogram's resolution), whatever the retransmissions, and feeding
    /// only the turn edges gives the same measurements as every frame.
    #[test]
    fn turns_measured_exactly(
        turns in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u16>(), 0u16..10_000), 1..12),
        dups in proptest::collection::vec((any::<u16>(), 0u16..300), 0..6),
    ) {
        let (segs, want) = conversation(&turns, &dups);
        let mut full = tracker(4);
        feed(&mut full, client(50_000), &segs);
        let mut edge = tracker(4);
        feed(&mut edge, client(50_000), &edges(&segs));
        let mut exact = Histogram::new();
        for &w in &want {
            exact.record_ns(w);
        }
        for rt in [&full, &edge] {
            let j = rt.job(WEB).unwrap();
            prop_assert_eq!(j.requests, want.len() as u64);
            prop_assert_eq!(j.unanswered, 0);
            prop_assert_eq!(j.response.count(), want.len() as u64);
            // Same buckets as the true times: each sample exact to 1 µs.
            prop_assert_eq!(&j.response, &exact);
        }
    }
}

#[test]
fn fuzz_body_over_random_input() {
    let mut x = 0x1234_5678_9abc_def0u64;
    for len in 0..400 {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fuzz_segments(&data);
    }
    for (_, f) in crate::packet::build::sample_frames() {
        fuzz_segments(&f);
    }
}
