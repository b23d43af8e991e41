//! Raw bytes into the node summary decoder: must never panic, and what
//! decodes re-encodes within the byte budget.
#![no_main]

use headroom_control::policy::fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz::summary(data);
});
