//! Request lines operators' clients send to the operator API
//! (`cpe_provision::console::routes::route`): any method and target, never
//! a panic; a matched request names a route of the table with that method.
#![no_main]

use cpe_provision::console::routes::{route, ROUTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (method, target) = text.split_once(' ').unwrap_or(("GET", text));
    if let Ok(matched) = route(method, target) {
        assert!(ROUTES.iter().any(|&(m, _, e)| m == method && e == matched.endpoint));
    }
});
