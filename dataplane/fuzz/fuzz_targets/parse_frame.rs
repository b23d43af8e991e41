//! Fuzz `parse_frame` and every packet view's accessors and setters on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    headroom_dataplane::packet::fuzz_parse(data);
});
