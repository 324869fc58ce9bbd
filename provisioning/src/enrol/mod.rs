//! Enrolment: who turns a device's renewal request into an institution
//! certificate. The server's `POST /v1/enrol` ([`crate::server`]) checks the
//! request against the device's mutual-TLS identity and hands it to the one
//! [`Enroller`] the carrier runs with:
//!
//! - [`test_ca`]: the carrier signs with a test CA of its own — for labs and
//!   demos only; a certificate the carrier signs is not an institution
//!   certificate (guideline §2.3: the certification body 機関認証主体 issues those).
//! - [`est`]: the carrier is an EST client (RFC 7030) of a certification
//!   body that offers EST; the body issues the certificate.
//!
//! Errors say whether asking again later can help ([`EnrolError::is_retryable`]):
//! the device keeps its current identity either way and tries again at its
//! next renewal attempt.

pub mod est;
pub mod test_ca;

use cpe_common::institution::InstitutionCode;

use crate::pki::csr::{check_csr, CheckedCsr};
use crate::pki::error::ProvisionError;

/// A renewal request as the server received it, and whose it is.
#[derive(Debug, Clone, Copy)]
pub struct EnrolmentRequest<'a> {
    /// The PEM CSR made on the device (untrusted).
    pub csr_pem: &'a str,
    /// The institution code of the device's current (verified) certificate:
    /// a device may only ask for a certificate of its own institution.
    pub institution_code: &'a InstitutionCode,
    /// Device id, for logs.
    pub device: &'a str,
}

impl EnrolmentRequest<'_> {
    /// The request, checked: its self-signature verifies and its subject
    /// names the device's own institution.
    pub fn checked(&self) -> Result<CheckedCsr, EnrolError> {
        check_csr(self.csr_pem, Some(self.institution_code)).map_err(EnrolError::from_csr)
    }
}

/// A certificate issued for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Leaf first, then the chain the issuer returned (PEM).
    pub chain_pem: String,
    /// The leaf (DER): the server reads the device identity from it.
    pub leaf_der: Vec<u8>,
    /// The leaf's serial number (lowercase hex), for logs.
    pub serial_hex: String,
}

/// Why no certificate was issued.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// The request itself is not acceptable (bad CSR, another institution's
    /// code, refused by the body); asking again with it does not help.
    #[error("renewal refused: {0}")]
    Refused(String),
    /// The CSR names another institution than the device's certificate.
    #[error("renewal refused: the CSR names institution {0}, not the device's own")]
    OtherInstitution(InstitutionCode),
    /// The issuer could not be reached or has not issued yet; asking again
    /// later may succeed.
    #[error("the certification body is not available now ({0}); the device will ask again")]
    Unavailable(String),
    /// The issuer answered something this carrier cannot use (unreadable
    /// answer, a certificate for another key); an operator must look.
    #[error("the certification body's answer is unusable: {0}")]
    BadAnswer(String),
}

impl EnrolError {
    /// A refused CSR; another institution's code is told apart (the server
    /// alerts on it).
    pub(crate) fn from_csr(e: ProvisionError) -> Self {
        match e {
            ProvisionError::CodeMismatch { found, .. } => Self::OtherInstitution(found),
            other => Self::Refused(other.to_string()),
        }
    }

    /// Whether asking again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// The enrolment backend the server runs with.
#[derive(Debug)]
pub enum Enroller {
    /// A test CA held by the carrier (labs and demos).
    TestCa(Box<test_ca::TestCaSigner>),
    /// A certification body reached over EST.
    Est(est::EstClient),
}

impl Enroller {
    /// Turns `request` into a certificate, or says why not.
    pub async fn enrol(&self, request: &EnrolmentRequest<'_>) -> Result<Issued, EnrolError> {
        match self {
            Self::TestCa(signer) => signer.enrol(request),
            Self::Est(client) => client.enrol(request).await,
        }
    }

    /// What the server logs at start: which backend issues renewals.
    pub fn describe(&self) -> String {
        match self {
            Self::TestCa(_) => "test CA held by this server (labs and demos only)".to_owned(),
            Self::Est(client) => format!("EST at {}", client.base_url()),
        }
    }
}
