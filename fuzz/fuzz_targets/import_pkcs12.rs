//! PKCS#12 archives. The seeds are protected with the password "fuzz"; with
//! the MAC in the way, mutations mostly exercise the outer DER structure and
//! MAC-less archives, which is where hostile files attack.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(material) = cpe_agent::identity::material::read_pkcs12(data, Some("fuzz")) {
        common::check(material);
    }
    let _ = cpe_agent::identity::material::read_pkcs12(data, None);
});
