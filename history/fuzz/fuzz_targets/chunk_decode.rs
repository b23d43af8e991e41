//! Raw bytes into the chunk decoder: never panics; what decodes re-encodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| headroom_history::chunk::fuzz_body(data));
