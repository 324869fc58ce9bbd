//! The agent's persisted order state (`<state_dir>/orders/state.json`) as
//! read at boot by `cpe-agent apply-state`, after flash damage or a hand
//! edit: parsing must never panic, and whatever parses must render and parse
//! back to the same state (so a save never turns a readable state into an
//! unreadable one).
//!
//! Seeds (`fuzz/seeds/order_state/`) are valid state files; the agent's
//! unit tests check that they parse.
#![no_main]

use cpe_agent::orders::state::{parse_state, render_state};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = parse_state(data) {
        let rendered = render_state(&state).expect("a parsed state renders");
        assert_eq!(parse_state(&rendered).expect("a rendered state parses"), state);
        let _ = state.trusted_keys();
        let _ = state.service.blocks_forwarding();
    }
});
