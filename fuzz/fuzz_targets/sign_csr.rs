//! Certificate requests as the carrier receives them from devices
//! (`cpe-provision csr sign`, later the enrolment endpoint).
#![no_main]

use std::sync::OnceLock;

use cpe_provision::CertificationBody;
use cpe_provision::Validity;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

fn body() -> Option<&'static CertificationBody> {
    static BODY: OnceLock<Option<CertificationBody>> = OnceLock::new();
    BODY.get_or_init(|| {
        let validity = Validity::new(OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000), 3650).ok()?;
        CertificationBody::generate("Fuzz CA", validity).ok()
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some(body) = body() else { return };
    let Ok(validity) = Validity::new(OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_001), 30) else { return };
    let _ = body.sign_csr(&String::from_utf8_lossy(data), validity, None);
});
