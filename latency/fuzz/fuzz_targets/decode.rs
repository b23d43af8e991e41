//! Fuzz the histogram wire decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    headroom_latency::fuzz_decode(data);
});
