//! Bytes signed with the pool key, so the fuzzer gets past the MAC and
//! exercises the parser and the state machine: must never panic.
#![no_main]

use headroom_clock::Timestamp;
use std::time::Duration;

use headroom_control::exchange::wire::Authenticator;
use headroom_control::exchange::{Exchange, ExchangeConfig, Registration, NEEDS_SNAPSHOT};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz key";

fuzz_target!(|data: &[u8]| {
    let now = Timestamp::now();
    let mut ex = Exchange::new(
        ExchangeConfig::new(5, 1, "127.0.0.1:7000".parse().unwrap()),
        KEY,
        now,
    );
    let reg = Registration {
        period_ticks: 1,
        max_size: 16,
        flags: 0,
    };
    ex.register(1, reg).unwrap();
    ex.register(
        2,
        Registration {
            flags: NEEDS_SNAPSHOT,
            ..reg
        },
    )
    .unwrap();
    let auth = Authenticator::new(KEY);
    // Split the input into several datagrams at 0xFF bytes.
    for (i, chunk) in data.split(|b| *b == 0xff).enumerate() {
        let mut d = chunk.to_vec();
        let tag = auth.tag(&d);
        d.extend_from_slice(&tag);
        let t = now + Duration::from_millis(37 * i as u64);
        let _ = ex.handle_datagram(t, "127.0.0.1:7001".parse().unwrap(), &d);
        ex.handle_timeout(t);
        while ex.poll_transmit().is_some() {}
        while ex.poll_event().is_some() {}
    }
});
