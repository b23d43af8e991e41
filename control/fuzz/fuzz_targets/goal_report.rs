//! Fuzz the goal loop's node report decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    headroom_control::goal::wire::fuzz_decode(data);
});
