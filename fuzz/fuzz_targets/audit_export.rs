//! Audit-log export files as an auditor receives them (`cpe-agent log
//! verify FILE`): arbitrary bytes into `cpe_agent::audit::verify_export`.
//! It must never panic, and whatever it accepts must be self-consistent:
//! the header's entry count and head match what was checked.
#![no_main]

use cpe_agent::audit::verify_export;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(verified) = verify_export(data) {
        let counted: u64 = verified.kinds.iter().map(|(_, n)| n).sum();
        assert_eq!(counted, verified.summary.entries);
        assert_eq!(verified.summary.last_index.is_some(), verified.summary.entries > 0);
    }
});
