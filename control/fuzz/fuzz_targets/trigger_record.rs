//! Raw bytes as a trigger failover record: must never panic; a record
//! that decodes re-encodes to bytes that decode to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| headroom_control::triggers::record::fuzz(data));
