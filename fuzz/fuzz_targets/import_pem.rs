//! PEM bundles (certificates and keys) as `cpe-agent cert import` reads them.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(material) = cpe_agent::identity::material::read_pem(data) {
        common::check(material);
    }
    let _ = cpe_agent::identity::material::read_key_file(data);
});
