//! Signed compliance orders as the agent receives them over the command
//! channel: arbitrary bytes into `cpe_agent::orders::verify` with a fixed
//! context (one trusted key, a fixed device, a trusted clock). Decoding,
//! key lookup, signature check and the time rules must never panic, and
//! anything accepted must be signed by the trusted key for this device with
//! a sequence above the last applied one, judged at a sane time.
//!
//! Seeds (`fuzz/seeds/order/`) are valid orders under this context, written
//! by `CPE_ORDER_SEEDS_DIR=fuzz/seeds/order cargo test -p cpe-agent --test orders`.
#![no_main]

use cpe_agent::orders::{trusted_key, verify, ClockReading, ClockState, VerifyContext};
use cpe_protocol::order::OrderTarget;
use libfuzzer_sys::fuzz_target;

/// Public key of the test seed `[7; 32]` (see `agent/tests/orders.rs`).
const KEY: [u8; 32] = [
    0xea, 0x4a, 0x6c, 0x63, 0xe2, 0x9c, 0x52, 0x0a, 0xbe, 0xf5, 0x50, 0x7b, 0x13, 0x2e, 0xc5, 0xf9, 0x95, 0x47,
    0x76, 0xae, 0xbe, 0xbe, 0x7b, 0x92, 0x42, 0x1e, 0xea, 0x69, 0x14, 0x46, 0xd2, 0x2c,
];
const NOW: i64 = 1_800_000_000;
const FLOOR: i64 = 1_798_761_600;

fuzz_target!(|data: &[u8]| {
    let device = OrderTarget { institution_code: "1312345678".into(), device: "cpe-1".into() };
    let keys = [trusted_key(KEY, false), trusted_key([1; 32], true)];
    for state in [ClockState::Trusted, ClockState::Untrusted] {
        let ctx = VerifyContext {
            device: &device,
            keys: &keys,
            last_applied_sequence: 0,
            clock: ClockReading { now: NOW, state },
            time_floor: FLOOR,
        };
        match verify(data, &ctx) {
            Ok(v) => {
                assert_eq!(v.key_id, keys[0].id);
                assert_eq!(v.order.target, device);
                assert!(v.order.sequence > 0);
                assert!(v.time.at >= FLOOR);
                assert!(v.order.not_before <= v.time.at && v.time.at < v.order.expires_at);
            }
            Err(refused) => {
                let _ = refused.refusal.class();
                let _ = refused.to_string();
            }
        }
    }
});
