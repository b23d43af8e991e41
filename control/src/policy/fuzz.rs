//! Fuzz bodies, shared by the cargo-fuzz targets (`control/fuzz`) and the
//! unit tests that run them over a corpus and random input. None may panic.

use std::time::Duration;

use headroom_clock::Timestamp;

use super::summary::NodeSummary;
use super::transfer::Transfers;
use super::version::{decode_draft, decode_record};
use super::wire::{Beacon, Msg};
use super::{persist, PolicyConfig, PolicyNode};
use crate::exchange::wire::{WireEntry, FLAG_DIRECT};
use crate::exchange::{Exchange, ExchangeConfig};
use crate::sim::{addr_of, forge, heartbeat};

const KEY: &[u8] = b"policy fuzz key";

/// Every policy decoder on the same bytes; a decoded chunk is fed into a
/// transfer expecting it.
pub fn decoders(data: &[u8]) {
    let _ = decode_record(data);
    let _ = decode_draft(data);
    let _ = Beacon::decode(data);
    let _ = persist::decode(data);
    if let Ok(Msg::Chunk {
        hash,
        total,
        chunk_size,
        index,
        data,
    }) = Msg::decode(data)
    {
        let now = Timestamp::ZERO;
        let mut t = Transfers::new(chunk_size as usize);
        if t.want(now, hash, total as usize, 1) {
            let _ = t.on_chunk(now, hash, total, chunk_size, index, &data);
        }
    }
}

/// Node summary decoder.
pub fn summary(data: &[u8]) {
    if let Ok(s) = NodeSummary::decode(data) {
        // A decoded summary re-encodes within budget.
        assert!(s.encode(super::summary::SUMMARY_MAX).len() <= super::summary::SUMMARY_MAX);
    }
}

/// A datagram from node 2 carrying one entry, signed with the pool key.
fn datagram(flags: u8, seq: u64, entry: WireEntry<'_>) -> Vec<u8> {
    forge(KEY, flags, 2, 1, seq, &[entry])
}

/// The whole node: `data` split at 0xFF bytes into direct messages from a
/// live peer (node 2) to node 1, signed with the pool key so they reach the
/// policy parser and state machine; odd pieces go in as node 2's beacon.
pub fn node(data: &[u8]) {
    let t0 = Timestamp::ZERO;
    let mut ex = Exchange::new(ExchangeConfig::new(1, 1, addr_of(1)), KEY, t0);
    let mut cfg = PolicyConfig::new(1, 1);
    cfg.join_grace = Duration::ZERO;
    let Ok(mut pol) = PolicyNode::new(cfg, Box::new(|_: &[u8]| Ok(())), &mut ex, t0) else {
        return;
    };
    let hb = heartbeat(KEY, 2, 1);
    let _ = ex.handle_datagram(t0, addr_of(2), &hb);
    for (i, piece) in data.split(|b| *b == 0xff).enumerate() {
        let now = t0 + Duration::from_millis(7 * i as u64);
        let seq = 2 + i as u64;
        let d = if i % 5 == 4 {
            datagram(
                0,
                seq,
                WireEntry {
                    code: super::POLICY_CODE,
                    origin: 2,
                    incarnation: 1,
                    version: seq,
                    ttl: 0,
                    data: piece,
                },
            )
        } else {
            datagram(
                FLAG_DIRECT,
                seq,
                WireEntry {
                    code: super::POLICY_CODE,
                    origin: 2,
                    incarnation: 1,
                    version: 0,
                    ttl: 0,
                    data: piece,
                },
            )
        };
        let _ = ex.handle_datagram(now, addr_of(2), &d);
        while let Some(ev) = ex.poll_event() {
            pol.on_exchange_event(&ev);
        }
        ex.handle_timeout(now);
        pol.poll(now, 0, &mut ex);
        while ex.poll_transmit().is_some() {}
        while pol.poll_event().is_some() {}
        let _ = pol.take_persist();
    }
}
