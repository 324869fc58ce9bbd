//! Request heads a LAN client sends to the notice page
//! (`cpe_agent::notice::parse_request`) and the self-check's same-origin
//! rule (`cpe_agent::notice::same_origin`): any bytes, never a panic; only
//! a well-formed GET or HEAD is answered with the page, only a POST to
//! /self-check with a bounded body can start the self-check, and only a
//! request naming its host can pass the same-origin rule.
#![no_main]

use cpe_agent::notice::request::{MAX_BODY, SELF_CHECK_PATH, STATUS_PATH};
use cpe_agent::notice::{parse_request, same_origin, Ask};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ask::Page { .. } => assert!(data.starts_with(b"GET ") || data.starts_with(b"HEAD ")),
        Ask::Status => assert!(data.starts_with(format!("GET {STATUS_PATH}").as_bytes())),
        Ask::StartSelfCheck { same_origin, body_len } => {
            assert!(data.starts_with(format!("POST {SELF_CHECK_PATH}").as_bytes()));
            assert!(body_len <= MAX_BODY);
            if same_origin {
                let lower = data.to_ascii_lowercase();
                assert!(lower.windows(5).any(|w| w == b"host:"));
            }
        }
        _ => {}
    }
    // The same rule on arbitrary header values: split the input in three.
    if let Ok(text) = std::str::from_utf8(data) {
        let mut parts = text.splitn(3, '\n');
        let (host, origin, referer) = (parts.next(), parts.next(), parts.next());
        if same_origin(host, origin, referer) {
            assert!(host.is_some_and(|h| !h.is_empty()));
            assert!(origin.or(referer).is_some_and(|u| u.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://"))));
        }
    }
});
