//! The one error type of the library, [`ProvisionError`].
//!
//! Every message says what went wrong and what the operator can do next, so
//! that the CLI can print it as is. Variants carry the facts (paths, codes,
//! dates) so that a server built on the library can map them to its own
//! responses.

use std::io;
use std::path::PathBuf;

use cpe_common::institution::InstitutionCode;
use time::OffsetDateTime;

use crate::pki::validity::rfc3339;

/// Result of the provisioning library.
pub type Result<T, E = ProvisionError> = std::result::Result<T, E>;

/// Why a provisioning operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// `ca init` found a CA in the directory and `force` was not given.
    #[error("a CA already exists in {}; pass --force to replace it (certificates issued by the old CA will no longer verify against the new one)", dir.display())]
    CaExists {
        /// The CA directory.
        dir: PathBuf,
    },

    /// A CA file is missing.
    #[error("no CA found: {} does not exist; create a test CA with `cpe-provision ca init --dir {}`", path.display(), dir.display())]
    CaMissing {
        /// The CA directory.
        dir: PathBuf,
        /// The missing file.
        path: PathBuf,
    },

    /// A CA file exists but cannot be used.
    #[error("the CA file {} is not usable ({detail}); restore it from a backup or re-create the CA with `cpe-provision ca init --force` (certificates it issued will stop verifying)", path.display())]
    CaInvalid {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// `ca.key` and `ca.pem` do not belong together.
    #[error("ca.key in {} is not the key of ca.pem; restore the matching pair from a backup or re-create the CA with `cpe-provision ca init --force`", dir.display())]
    CaKeyMismatch {
        /// The CA directory.
        dir: PathBuf,
    },

    /// A file could not be read or written.
    #[error("could not {action} {}: {source}; check that the path exists and that you may access it", path.display())]
    Io {
        /// What was being done (`"read"`, `"write"`, `"create directory"`).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },

    /// The requested validity period is not representable or not sensible.
    #[error("invalid validity period: {detail}; give --days between 1 and {max_days} and an RFC 3339 --not-before such as 2025-04-01T00:00:00Z", max_days = crate::pki::validity::MAX_DAYS)]
    InvalidValidity {
        /// What is wrong.
        detail: String,
    },

    /// The certificate would still be valid after its CA expired.
    #[error("the certificate would expire at {} but the CA expires at {}; use fewer --days or an earlier --not-before, or re-create the CA with more --days", rfc3339(*not_after), rfc3339(*ca_not_after))]
    OutlivesCa {
        /// Requested end of validity.
        not_after: OffsetDateTime,
        /// End of validity of the CA.
        ca_not_after: OffsetDateTime,
    },

    /// RSA keys cannot be generated with the `ring` backend.
    #[error("RSA key generation is not supported by cpe-provision; generate the key with openssl (`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:{bits} -out key.pem`) and use `cert issue --key-file key.pem`, or create a CSR with it and use `csr sign`")]
    RsaKeyGenerationUnsupported {
        /// Requested RSA modulus size.
        bits: u32,
    },

    /// Key generation failed (random number generator or library failure).
    #[error("could not generate the key ({detail}); retry, and check that the system random number generator works")]
    KeyGeneration {
        /// The underlying failure.
        detail: String,
    },

    /// A given private key cannot be used for a certificate.
    #[error("the private key is not usable ({detail}); give an unencrypted PKCS#8 PEM key (\"BEGIN PRIVATE KEY\"; convert with `openssl pkcs8 -topk8 -nocrypt`) of type ECDSA P-256/P-384, Ed25519 or RSA with at least 2048 bits")]
    UnsupportedKey {
        /// What is wrong with the key.
        detail: String,
    },

    /// The institution or CA name cannot go into a certificate subject.
    #[error("the name {name:?} {reason}; give a shorter plain name without a 10-digit number (the institution code is added automatically)")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it is rejected.
        reason: String,
    },

    /// The device id is not a short printable identifier.
    #[error("the device id {id:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ : -; use the id printed on the device label")]
    InvalidDeviceId {
        /// The rejected id.
        id: String,
    },

    /// Building or signing the certificate failed.
    #[error("could not build or sign the certificate ({detail}); check the CA files and the request")]
    Signing {
        /// The underlying failure.
        detail: String,
    },

    /// The input is not a readable PEM certificate request.
    #[error("the CSR cannot be read ({detail}); give the PEM file written by `cpe-agent cert csr` (it starts with -----BEGIN CERTIFICATE REQUEST-----)")]
    CsrUnreadable {
        /// What the parser found.
        detail: String,
    },

    /// The CSR's self-signature does not verify (no proof of key possession).
    #[error("the CSR's signature does not verify ({detail}): the file was altered or is damaged; create a new CSR on the device with `cpe-agent cert csr`")]
    CsrBadSignature {
        /// What the verifier reported.
        detail: String,
    },

    /// The CSR subject cannot be copied into a certificate.
    #[error("the CSR subject cannot be used ({detail}); create the CSR with one attribute per name component and standard string types")]
    CsrSubject {
        /// What is wrong with the subject.
        detail: String,
    },

    /// A subject attribute holds a control character (NUL included) or a
    /// bidirectional override: viewers would show it as another name.
    #[error("subject attribute {attribute} contains a {found}; such a name displays as another one, so it is refused: create the CSR (or certificate) with printable text only")]
    ControlCharacter {
        /// The attribute type (OID).
        attribute: String,
        /// The character and its position.
        found: String,
    },

    /// The CSR's public key is of an unsupported type or too weak.
    #[error("the CSR's public key is not acceptable ({detail}); create the CSR with an ECDSA P-256/P-384, Ed25519 or RSA (at least 2048 bits) key")]
    CsrKey {
        /// What is wrong with the key.
        detail: String,
    },

    /// The CSR subject carries no institution code.
    #[error("the CSR subject carries no institution code; create the CSR again with the 10-digit code in the serialNumber attribute (or inside the common name): on the device, set institution_code in the agent configuration and run `cpe-agent cert csr` again")]
    NoInstitutionCode,

    /// The CSR's serialNumber attribute is not a valid institution code.
    #[error("the CSR's serialNumber attribute {value:?} is not a 10-digit institution code; create the CSR again with the code printed on the institution's registration")]
    BadSerialNumber {
        /// The attribute value as found.
        value: String,
    },

    /// The CSR subject names two different institution codes.
    #[error("the CSR's serialNumber says {serial_number} but its common name contains {common_name}; create the CSR again with one consistent institution code")]
    ConflictingCodes {
        /// Code in the serialNumber attribute.
        serial_number: InstitutionCode,
        /// Code found in the common name.
        common_name: InstitutionCode,
    },

    /// The CSR is for another institution than the operator expected.
    #[error("the CSR is for institution {found}, not {expected}; check that you are signing the request of the right institution")]
    CodeMismatch {
        /// The code the operator gave.
        expected: InstitutionCode,
        /// The code in the CSR.
        found: InstitutionCode,
    },

    /// An empty PKCS#12 password was given.
    #[error("the PKCS#12 password is empty; write a non-empty password into the password file (one line)")]
    EmptyPassword,

    /// The password file cannot be used.
    #[error("the password file {} cannot be used ({detail}); give a UTF-8 text file that holds the password on one line", path.display())]
    PasswordFile {
        /// The password file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// Building the PKCS#12 archive failed.
    #[error("could not build the PKCS#12 file ({detail}); check the issued key and certificates")]
    Pkcs12 {
        /// The underlying failure.
        detail: String,
    },
}

impl ProvisionError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io { action, path: path.into(), source }
    }

    pub(crate) fn signing(err: impl std::fmt::Display) -> Self {
        Self::Signing { detail: err.to_string() }
    }
}
