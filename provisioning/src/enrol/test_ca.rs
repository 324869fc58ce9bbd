//! The test-CA backend: the carrier signs renewal requests itself with a CA
//! of its own ([`CertificationBody`]). For labs and demos: in production the
//! carrier holds no certification-body key, and what it signed would not be
//! an institution certificate.

use crate::pki::ca::CertificationBody;
use crate::pki::validity::Validity;

use super::{EnrolError, EnrolmentRequest, Issued};

/// How far before "now" a renewed certificate's validity starts, for
/// devices whose clock is a little behind.
const BACKDATE: time::Duration = time::Duration::minutes(5);

/// Signs renewal requests with a test CA.
#[derive(Debug)]
pub struct TestCaSigner {
    ca: CertificationBody,
    days: u32,
}

impl TestCaSigner {
    /// A signer issuing certificates valid `days` days with `ca`.
    pub fn new(ca: CertificationBody, days: u32) -> Self {
        Self { ca, days }
    }

    pub(super) fn enrol(&self, request: &EnrolmentRequest<'_>) -> Result<Issued, EnrolError> {
        let start = time::OffsetDateTime::now_utc() - BACKDATE;
        let validity = Validity::new(start, self.days).map_err(|e| EnrolError::Refused(e.to_string()))?;
        let signed = self
            .ca
            .sign_csr(request.csr_pem, validity, Some(request.institution_code))
            .map_err(EnrolError::from_csr)?;
        Ok(Issued { serial_hex: signed.serial_hex(), chain_pem: signed.chain_pem, leaf_der: signed.cert_der })
    }
}
