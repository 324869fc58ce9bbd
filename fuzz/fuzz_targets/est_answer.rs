//! A certification body's EST answer as the carrier receives it: a PKCS#7
//! certs-only message (RFC 7030 §4.2.3), the bytes after base64 decoding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(certs) = cpe_provision::pki::pkcs7::certificates(data) {
        assert!(!certs.is_empty() && certs.len() <= cpe_provision::pki::pkcs7::MAX_CERTIFICATES);
    }
});
