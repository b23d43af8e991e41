//! Fuzz the response-time tracker with arbitrary segment sequences and frames.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    headroom_dataplane::response::fuzz_segments(data);
});
