//! DER certificates and DER key files as `cpe-agent cert import` reads them.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cpe_agent::identity::material::detect_format(data);
    if let Ok(material) = cpe_agent::identity::material::read_der(data) {
        common::check(material);
    }
    let _ = cpe_agent::identity::material::read_key_file(data);
});
