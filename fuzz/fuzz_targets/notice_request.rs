//! Request heads a LAN client sends to the notice page
//! (`cpe_agent::notice::parse_request`): any bytes, never a panic; only a
//! well-formed GET or HEAD request line is answered with the page.
#![no_main]

use cpe_agent::notice::{parse_request, Ask};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ask::Page { .. } = parse_request(data) {
        assert!(data.starts_with(b"GET ") || data.starts_with(b"HEAD "));
    }
});
