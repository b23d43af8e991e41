//! Raw bytes into the datagram decoder: must never panic.
#![no_main]

use headroom_control::exchange::wire::{decode, Authenticator};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let auth = Authenticator::new(b"fuzz key");
    let _ = decode(data, &auth);
});
