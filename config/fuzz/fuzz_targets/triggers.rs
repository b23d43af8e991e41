//! Raw bytes into the trigger condition, calendar field and policy
//! document parsers: must never panic; conditions print back to themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| headroom_config::fuzz::triggers(data));
