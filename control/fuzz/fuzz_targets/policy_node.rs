//! Signed direct messages and beacons from a live peer into a policy node
//! (split at 0xFF bytes), so the fuzzer exercises the parser and the state
//! machine behind the MAC: must never panic.
#![no_main]

use headroom_control::policy::fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz::node(data);
});
