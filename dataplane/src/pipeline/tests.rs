//! The pipeline over frames built in plain buffers: classification, pacing
//! decisions, partial checksums, oversized packets, ARP answers, VIP
//! encapsulation and decapsulation.

use std::{net::Ipv4Addr, sync::Arc};

use headroom_config::{
    net::FlowRule,
    vip::{DirectorSettings, PortRange, VipProtocol, VipService},
};

use super::*;
use crate::{
    classifier::JobId,
    director::{
        maglev::DEFAULT_TABLE_SIZE,
        path::{Peer, Peers},
        DirectorTables, PoolView, TableCell,
    },
    packet::{
        arp::ArpRepr,
        build,
        checksum::{fold, pseudo_header_v4},
        ethernet::EthernetAddress,
        parse_frame,
        tcp::TcpSegment,
    },
};

const HEADROOM: usize = 256;
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn rules() -> Arc<RuleSet> {
    let rule = |s: &str| -> FlowRule { toml::from_str(s).expect("rule") };
    Arc::new(RuleSet::compile(&[
        (
            JobId(1),
            vec![rule("protocol = \"tcp\"\nlocal_port = \"80\"")],
        ),
        (JobId(2), vec![rule("protocol = \"udp\"")]),
    ]))
}

fn pipeline(pacing: PacingRules) -> HeadroomPipeline {
    HeadroomPipeline::new(&PipelineConfig::new(1024, u64::MAX, pacing), rules())
}

/// Runs `f` (placed at HEADROOM in a 4 KiB buffer) through `p` from `side`;
/// returns the action and the frame's bytes afterwards.
fn run(p: &mut HeadroomPipeline, side: Side, f: &[u8]) -> (Action, Vec<u8>) {
    let mut buf = vec![0u8; 4096];
    buf[HEADROOM..HEADROOM + f.len()].copy_from_slice(f);
    let mut frame = Frame::single(&mut buf, HEADROOM, f.len()).unwrap();
    let a = p.on_frame(0, side, &mut frame);
    (a, frame.data().to_vec())
}

fn job(r: &Report, id: u16) -> crate::classifier::JobCounters {
    r.classifier
        .jobs
        .iter()
        .find(|(j, _)| j.0 == id)
        .map(|(_, c)| *c)
        .unwrap_or_default()
}

#[test]
fn frames_are_classified_into_their_jobs_and_forwarded() {
    let mut p = pipeline(PacingRules::default());
    let web = build::tcp4(CLIENT, 40000, HOST, 80, 0x02, &[]);
    let dns = build::udp4(HOST, 53, CLIENT, 5353, &[1; 30]);
    assert_eq!(run(&mut p, Side::Outer, &web).0, Action::Forward);
    assert_eq!(run(&mut p, Side::Inner, &dns).0, Action::Forward);
    let r = p.tick(0);
    assert_eq!(
        (job(&r, 1).packets_in, job(&r, 1).bytes_in),
        (1, web.len() as u64)
    );
    assert_eq!(job(&r, 2).packets_out, 1);
    assert_eq!(r.parsed, 2);
}

#[test]
fn outbound_frames_on_a_pipe_are_paced_inbound_ones_are_not() {
    let mut p = pipeline(PacingRules {
        pipes: vec![PipeMatch::outbound(Some("192.0.2.0/24".parse().unwrap()))],
        job_slots: 4,
    });
    let reply = build::tcp4(HOST, 80, CLIENT, 40000, 0x12, &[]);
    assert_eq!(
        run(&mut p, Side::Inner, &reply).0,
        Action::Pace { pipe: 0, job: 1 }
    );
    let other = build::tcp4(HOST, 80, Ipv4Addr::new(198, 51, 100, 1), 40000, 0x12, &[]);
    assert_eq!(run(&mut p, Side::Inner, &other).0, Action::Forward);
    let inbound = build::tcp4(CLIENT, 40000, HOST, 80, 0x10, &[]);
    assert_eq!(run(&mut p, Side::Outer, &inbound).0, Action::Forward);
}

#[test]
fn pipes_pace_the_directions_they_carry_matched_by_the_remote_end() {
    let remote: Option<IpPrefix> = Some("192.0.2.0/24".parse().unwrap());
    let download = build::tcp4(CLIENT, 40000, HOST, 80, 0x10, &[7; 100]);
    let upload = build::tcp4(HOST, 80, CLIENT, 40000, 0x10, &[7; 100]);
    let elsewhere = build::tcp4(Ipv4Addr::new(198, 51, 100, 1), 40000, HOST, 80, 0x10, &[]);
    let with = |direction| {
        pipeline(PacingRules {
            pipes: vec![PipeMatch { remote, direction }],
            job_slots: 4,
        })
    };

    let mut inbound = with(PipeDirection::Inbound);
    assert_eq!(
        run(&mut inbound, Side::Outer, &download).0,
        Action::Pace { pipe: 0, job: 1 }
    );
    assert_eq!(run(&mut inbound, Side::Inner, &upload).0, Action::Forward);
    assert_eq!(
        run(&mut inbound, Side::Outer, &elsewhere).0,
        Action::Forward
    );

    let mut both = with(PipeDirection::Both);
    assert_eq!(
        run(&mut both, Side::Outer, &download).0,
        Action::Pace { pipe: 0, job: 1 }
    );
    assert_eq!(
        run(&mut both, Side::Inner, &upload).0,
        Action::Pace { pipe: 0, job: 1 }
    );

    // A download pipe and an upload pipe for the same remote network: each
    // direction on its own pipe.
    let mut two = pipeline(PacingRules {
        pipes: vec![
            PipeMatch {
                remote,
                direction: PipeDirection::Outbound,
            },
            PipeMatch {
                remote,
                direction: PipeDirection::Inbound,
            },
        ],
        job_slots: 4,
    });
    assert_eq!(
        run(&mut two, Side::Inner, &upload).0,
        Action::Pace { pipe: 0, job: 1 }
    );
    assert_eq!(
        run(&mut two, Side::Outer, &download).0,
        Action::Pace { pipe: 1, job: 1 }
    );
}

#[test]
fn partial_checksums_are_completed_on_the_way() {
    let mut p = pipeline(PacingRules::default());
    let good = build::tcp4(HOST, 80, CLIENT, 40000, 0x18, &[9; 500]);
    let mut partial = good.clone();
    let l4 = parse_frame(&good).unwrap().l4_offset.unwrap() as usize;
    let ps = fold(pseudo_header_v4(
        HOST.octets(),
        CLIENT.octets(),
        6,
        (good.len() - l4) as u16,
    ));
    partial[l4 + 16..l4 + 18].copy_from_slice(&ps.to_be_bytes());
    let (a, out) = run(&mut p, Side::Inner, &partial);
    assert_eq!(a, Action::Forward);
    assert_eq!(out, good);
    let t = TcpSegment::new_checked(&out[l4..]).unwrap();
    assert_eq!(
        t.checksum(),
        TcpSegment::new_checked(&good[l4..]).unwrap().checksum()
    );
    assert_eq!(p.tick(0).checksums_completed, [0, 1]);
}

#[test]
fn packets_longer_than_the_egress_are_cut_or_dropped() {
    let mut p = pipeline(PacingRules::default());
    let big_tcp = build::tcp4(CLIENT, 40000, HOST, 80, 0x10, &[1; 3000]);
    assert_eq!(
        run(&mut p, Side::Outer, &big_tcp).0,
        Action::Segment { max_l3: 1500 }
    );
    let big_udp = build::udp4(CLIENT, 40000, HOST, 53, &[1; 3000]);
    assert_eq!(
        run(&mut p, Side::Outer, &big_udp).0,
        Action::Drop(DropReason::TooBig)
    );
    let r = p.tick(0);
    assert_eq!((r.segmented, r.too_big), ([1, 0], [1, 0]));
    // Neither is accounted (the segments will be).
    assert_eq!(job(&r, 1).packets_in + job(&r, 2).packets_in, 0);
}

/// A pipeline on node `local` of a 2-node pool with one TCP VIP on port 80.
fn director_pipeline(local: u32) -> HeadroomPipeline {
    let svc = VipService {
        name: "web".into(),
        vip: VIP,
        protocol: VipProtocol::Tcp,
        ports: vec![PortRange {
            first: 80,
            last: 80,
        }],
        members: vec![],
        weights: vec![],
        placement: Default::default(),
        sticky_timeout: std::time::Duration::ZERO,
        gratuitous_arp_count: 3,
        health_check: None,
    };
    let pool = PoolView {
        alive: vec![1, 2],
        ..PoolView::default()
    };
    let peers = [1u32, 2].map(|n| Peer {
        node: n,
        ip: Ipv4Addr::new(172, 16, 0, n as u8),
        mac: [2, 0, 0, 0, 0, n as u8],
    });
    let tables = DirectorTables::build(&[svc], &pool, local, DEFAULT_TABLE_SIZE)
        .unwrap()
        .with_peers(Peers::new(
            Ipv4Addr::new(172, 16, 0, local as u8),
            [2, 0, 0, 0, 0, local as u8],
            &peers,
        ));
    let cell = Arc::new(TableCell::new(tables));
    pipeline(PacingRules::default()).with_director(director_stage::DirectorStage::new(
        cell,
        &DirectorSettings::default(),
    ))
}

#[test]
fn the_vip_owner_answers_arp_and_encapsulates_remote_flows() {
    let mut owner = director_pipeline(1);
    let req = build::arp_frame(
        Some(5),
        &ArpRepr::request(
            EthernetAddress([0, 0x11, 0x22, 0x33, 0x44, 0x55]),
            CLIENT,
            VIP,
        ),
    );
    let (a, reply) = run(&mut owner, Side::Outer, &req);
    assert_eq!(a, Action::Bounce, "the owner answers");
    let info = parse_frame(&reply).unwrap();
    assert_eq!(info.vlan, Some(5), "on the request's VLAN");
    assert_eq!(&reply[6..12], &MAC, "with its own MAC");

    // Flows to the VIP: some stay, the rest leave encapsulated to node 2,
    // whose pipeline delivers them to its host.
    let mut node2 = director_pipeline(2);
    let (mut local, mut remote) = (0, 0);
    for sport in 1000..1100 {
        let syn = build::tcp4(CLIENT, sport, VIP, 80, 0x02, &[]);
        match run(&mut owner, Side::Outer, &syn) {
            (Action::Forward, out) => {
                local += 1;
                assert_eq!(out, syn);
            }
            (Action::Bounce, out) => {
                remote += 1;
                assert_eq!(out.len(), 14 + 36 + 40);
                assert_eq!(&out[0..6], &[2, 0, 0, 0, 0, 2]);
                let (a, host) = run(&mut node2, Side::Outer, &out);
                assert_eq!(a, Action::Forward, "decapsulated for the host");
                assert_eq!(host[14..], syn[14..54]);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(local > 20 && remote > 20, "{local} {remote}");
    // The decapsulated packets are accounted as what the host sees.
    let r = node2.tick(0);
    assert_eq!(job(&r, 1).packets_in, remote);
    let d = r.director.unwrap();
    assert_eq!(d.path.decapsulated, remote);
}

/// A TCP/IPv4 frame with sequence and acknowledgement numbers set.
fn tcp_seq(
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = build::tcp4(src, sport, dst, dport, flags, payload);
    // Ethernet 14 + IPv4 20: the TCP header's sequence and ack numbers.
    f[38..42].copy_from_slice(&seq.to_be_bytes());
    f[42..46].copy_from_slice(&ack.to_be_bytes());
    f
}

#[test]
fn jobs_with_a_goal_are_timed_and_kept_off_the_fast_path() {
    use crate::packet::tcp::flags::{ACK, PSH, SYN};
    let measured = Arc::new(RuleSet::clone(&rules()).with_measured(&[JobId(1)]));
    let cfg = PipelineConfig {
        fast_path: true,
        ..PipelineConfig::new(1024, u64::MAX, PacingRules::default())
    };
    let mut p = HeadroomPipeline::new(&cfg, measured);
    let ms = 1_000_000u64;
    let (client, host) = ((CLIENT, 40000), (HOST, 80));
    let mut at = |now: u64, side: Side, f: Vec<u8>| {
        let mut buf = vec![0u8; 4096];
        buf[HEADROOM..HEADROOM + f.len()].copy_from_slice(&f);
        let mut frame = Frame::single(&mut buf, HEADROOM, f.len()).unwrap();
        assert_eq!(p.on_frame(now, side, &mut frame), Action::Forward);
        assert!(p.take_fast_path().is_none(), "a timed flow was offered");
    };
    at(0, Side::Outer, tcp_seq(client, host, SYN, 100, 0, &[]));
    at(
        ms,
        Side::Inner,
        tcp_seq(host, client, SYN | ACK, 500, 101, &[]),
    );
    at(
        2 * ms,
        Side::Outer,
        tcp_seq(client, host, ACK | PSH, 101, 501, b"GET / HTTP/1.0\r\n"),
    );
    at(
        22 * ms,
        Side::Inner,
        tcp_seq(host, client, ACK | PSH, 501, 117, b"HTTP/1.0 200 OK\r\n"),
    );
    // Another job's flow still takes the fast path.
    let dns = build::udp4(HOST, 53, CLIENT, 5353, &[1; 30]);
    run(&mut p, Side::Inner, &dns);
    assert!(
        p.take_fast_path().is_some(),
        "an untimed flow was not offered"
    );
    let r = p.tick(30 * ms).response.expect("a response report");
    let web = r.job(JobId(1)).expect("job 1 measured");
    assert_eq!(
        (web.requests, web.response.count(), web.setup.count()),
        (1, 1, 1)
    );
    let rt = web.response.quantile(0.5).unwrap().as_secs_f64() * 1e3;
    assert!((19.0..=21.0).contains(&rt), "response time {rt} ms");
    let setup = web.setup.quantile(0.5).unwrap().as_secs_f64() * 1e3;
    assert!((0.9..=1.1).contains(&setup), "setup time {setup} ms");
    assert!(r.job(JobId(2)).is_none(), "job 2 has no goal");
}
