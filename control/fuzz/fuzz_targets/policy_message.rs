//! Raw bytes into every policy decoder (direct messages, chunks into a
//! transfer, version records, drafts, beacons, persisted state): must never
//! panic.
#![no_main]

use headroom_control::policy::{fuzz, wire::Msg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Msg::decode(data);
    fuzz::decoders(data);
});
