//! The decision whether certificate material may become the device identity.
//!
//! A pure function of the material, the trust anchors, the policy and the
//! current time: no I/O, no clock reads. Each way a certificate can be wrong
//! has its own [`ValidationError`] variant with an English and a Japanese
//! explanation that says what to do, because the person reading it is a
//! field engineer or clinic staff member holding a file from the
//! certification body. Nothing is stored unless this returns an identity.

use cpe_common::hex::encode as hex;
use cpe_common::institution::{CodeField, InstitutionCode, SERIAL_NUMBER_OID_ARCS};
use ring::digest;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{self, Oid};
use x509_parser::public_key::PublicKey;

use super::material::Material;

/// What an acceptable identity must satisfy besides chaining to an anchor.
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    /// The certification body's CA certificates (DER).
    pub trust_anchors: &'a [CertificateDer<'static>],
    /// The code this device was provisioned for.
    pub institution_code: &'a InstitutionCode,
    /// Which subject attribute carries the code.
    pub code_field: CodeField,
    /// When this agent was built: a clock earlier than this is unset, not a
    /// sign that the certificate is not yet valid.
    pub build_time: OffsetDateTime,
}

/// An identity that passed every check, ready to be stored.
#[derive(Debug)]
pub struct ValidIdentity {
    /// Leaf first, then the other certificates of the file.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key matching the leaf.
    pub key: PrivateKeyDer<'static>,
    /// What the leaf says, for status and logs.
    pub info: CertInfo,
}

/// The facts about a leaf certificate shown by `cert status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject distinguished name (RFC 4514 style).
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, colon-separated hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub fingerprint_sha256: String,
    /// The institution code the certificate carries, if any.
    pub institution_code: Option<InstitutionCode>,
    /// Key algorithm and size, e.g. `ecdsa-p256`, `rsa-2048`, `ed25519`.
    pub key_type: String,
}

/// Why material was refused. Every variant says what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// No certificate in the file.
    #[error("the file holds no certificate; import the file that contains the institution certificate")]
    NoCertificate,
    /// A certificate could not be parsed.
    #[error("certificate {index} in the file is damaged ({detail}); copy the file again from the original")]
    CorruptCertificate {
        /// Position in the file, from 0.
        index: usize,
        /// Parser message.
        detail: String,
    },
    /// No private key was given and none is pending from `cert csr`.
    #[error("no private key: the file has none and no key is pending from `cpe-agent cert csr`; give the key with --key, or import the PKCS#12 file that contains it")]
    NoPrivateKey,
    /// The private key cannot be used (damaged or unsupported type).
    #[error("the private key cannot be read ({detail}); supported keys are ECDSA P-256/P-384, RSA 2048-4096 and Ed25519")]
    UnusableKey {
        /// Reason from the key loader.
        detail: String,
    },
    /// The private key belongs to no certificate of the file.
    #[error("the private key does not belong to the certificate; the key and the certificate come from different issuances, find the matching pair")]
    KeyMismatch,
    /// RSA key shorter than 2048 bits.
    #[error("the certificate has a weak {bits}-bit RSA key; at least 2048 bits are required, ask the certification body for a new certificate")]
    WeakKey {
        /// Key length in bits.
        bits: usize,
    },
    /// Key algorithm or size outside what the device supports.
    #[error("unsupported key type {key_type}; supported are ECDSA P-256/P-384, RSA 2048-4096 and Ed25519")]
    UnsupportedKeyType {
        /// What was found.
        key_type: String,
    },
    /// A certificate of the chain is signed with SHA-1 or MD5.
    #[error("certificate {subject:?} is signed with {algorithm}, which is no longer accepted; ask the certification body for a certificate signed with SHA-256 or better")]
    WeakSignature {
        /// Subject of the offending certificate.
        subject: String,
        /// The weak algorithm.
        algorithm: &'static str,
    },
    /// The device clock is earlier than the build, so validity cannot be judged.
    #[error("the device clock says {now}, before this software was built ({build_time}): the clock is not set; set the time (NTP) and import again")]
    ClockUnset {
        /// The clock reading (RFC 3339).
        now: String,
        /// The build time (RFC 3339).
        build_time: String,
    },
    /// Past `not_after`.
    #[error("certificate {subject:?} expired on {not_after}; ask the certification body for a renewed certificate")]
    Expired {
        /// Subject of the expired certificate.
        subject: String,
        /// Its end of validity (RFC 3339).
        not_after: String,
    },
    /// Before `not_before`.
    #[error(
        "certificate {subject:?} is valid only from {not_before}; wait until then or check the device clock"
    )]
    NotYetValid {
        /// Subject of the certificate.
        subject: String,
        /// Its start of validity (RFC 3339).
        not_before: String,
    },
    /// No clientAuth extended key usage.
    #[error("the certificate is not for client authentication (no clientAuth extended key usage); ask the certification body for an institution client certificate")]
    MissingClientAuth,
    /// Key usage present but does not allow signatures, or the leaf is a CA.
    #[error("the certificate's key usage does not allow client authentication ({detail}); ask the certification body for an institution client certificate")]
    WrongKeyUsage {
        /// What is wrong.
        detail: String,
    },
    /// The subject carries no institution code.
    #[error(
        "the certificate carries no institution code in its {field}; it is not an institution certificate"
    )]
    InstitutionCodeMissing {
        /// Where it was looked for.
        field: &'static str,
    },
    /// The subject carries another institution's code.
    #[error("the certificate is for institution {found}, but this device is provisioned for {expected}; import the certificate of institution {expected}")]
    InstitutionCodeMismatch {
        /// The configured code.
        expected: String,
        /// The code in the certificate.
        found: String,
    },
    /// No trust anchor is configured.
    #[error("no trust anchor is configured; list the certification body's CA certificates in `trust_anchors` of the agent configuration")]
    NoTrustAnchors,
    /// A configured trust anchor cannot be used.
    #[error("trust anchor {index} cannot be used ({detail}); check the files listed in `trust_anchors`")]
    BadTrustAnchor {
        /// Position in the configured list.
        index: usize,
        /// Parser message.
        detail: String,
    },
    /// A subject or issuer attribute holds a control character (NUL
    /// included) or a bidirectional override, which viewers show differently.
    #[error("the certificate's {name} attribute {attribute} contains a {found}; such a certificate could display as another institution's, so it is refused: ask the certification body for a correctly issued certificate")]
    ControlCharacter {
        /// `subject` or `issuer`.
        name: &'static str,
        /// The attribute (`CN`, `OU`, … or its OID).
        attribute: String,
        /// The character and its position.
        found: String,
    },
    /// The chain does not lead to a configured trust anchor.
    #[error("the certificate does not chain to a configured certification body ({detail}); check that it was issued by the certification body in `trust_anchors`, and that intermediate certificates are in the file")]
    UntrustedChain {
        /// What the path builder reported.
        detail: String,
    },
}

impl ValidationError {
    /// A stable identifier for scripts and JSON (`snake_case`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoCertificate => "no_certificate",
            Self::CorruptCertificate { .. } => "corrupt_certificate",
            Self::NoPrivateKey => "no_private_key",
            Self::UnusableKey { .. } => "unusable_key",
            Self::KeyMismatch => "key_mismatch",
            Self::WeakKey { .. } => "weak_key",
            Self::UnsupportedKeyType { .. } => "unsupported_key_type",
            Self::WeakSignature { .. } => "weak_signature",
            Self::ClockUnset { .. } => "clock_unset",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::MissingClientAuth => "missing_client_auth",
            Self::WrongKeyUsage { .. } => "wrong_key_usage",
            Self::InstitutionCodeMissing { .. } => "institution_code_missing",
            Self::InstitutionCodeMismatch { .. } => "institution_code_mismatch",
            Self::ControlCharacter { .. } => "control_character",
            Self::NoTrustAnchors => "no_trust_anchors",
            Self::BadTrustAnchor { .. } => "bad_trust_anchor",
            Self::UntrustedChain { .. } => "untrusted_chain",
        }
    }

    /// The explanation in Japanese, for clinic staff.
    pub fn ja(&self) -> String {
        match self {
            Self::NoCertificate => "ファイルに証明書が含まれていません。機関証明書を含むファイルを指定してください。".into(),
            Self::CorruptCertificate { index, detail } => format!("ファイル内の証明書 {index} が破損しています（{detail}）。元のファイルをもう一度コピーしてください。"),
            Self::NoPrivateKey => "秘密鍵がありません。--key で鍵を指定するか、鍵を含む PKCS#12 ファイルを取り込んでください。".into(),
            Self::UnusableKey { detail } => format!("秘密鍵を読み取れません（{detail}）。対応する鍵は ECDSA P-256/P-384、RSA 2048〜4096、Ed25519 です。"),
            Self::KeyMismatch => "秘密鍵が証明書と一致しません。同じ発行の証明書と鍵の組を指定してください。".into(),
            Self::WeakKey { bits } => format!("証明書の RSA 鍵が {bits} ビットで弱すぎます（2048 ビット以上が必要）。認証局に新しい証明書を依頼してください。"),
            Self::UnsupportedKeyType { key_type } => format!("対応していない鍵種別です（{key_type}）。ECDSA P-256/P-384、RSA 2048〜4096、Ed25519 に対応しています。"),
            Self::WeakSignature { subject, algorithm } => format!("証明書 {subject} は {algorithm} で署名されており、受け付けられません。SHA-256 以上で署名された証明書を認証局に依頼してください。"),
            Self::ClockUnset { now, build_time } => format!("装置の時計が {now} を示しており、ソフトウェアの作成日時 {build_time} より前です。時計が未設定です。時刻（NTP）を合わせてから再度取り込んでください。"),
            Self::Expired { subject, not_after } => format!("証明書 {subject} は {not_after} に有効期限が切れています。認証局に更新後の証明書を依頼してください。"),
            Self::NotYetValid { subject, not_before } => format!("証明書 {subject} は {not_before} から有効になります。その時刻まで待つか、装置の時計を確認してください。"),
            Self::MissingClientAuth => "クライアント認証用の証明書ではありません（拡張鍵用途 clientAuth がありません）。機関のクライアント証明書を認証局に依頼してください。".into(),
            Self::WrongKeyUsage { detail } => format!("証明書の鍵用途がクライアント認証を許していません（{detail}）。機関のクライアント証明書を認証局に依頼してください。"),
            Self::InstitutionCodeMissing { field } => format!("証明書の {field} に医療機関コードがありません。機関証明書ではありません。"),
            Self::InstitutionCodeMismatch { expected, found } => format!("証明書は医療機関コード {found} のものですが、この装置は {expected} 用に設定されています。{expected} の証明書を取り込んでください。"),
            Self::ControlCharacter { name, attribute, found } => format!("証明書の {name} の {attribute} に制御文字（{found}）が含まれています。別の機関の証明書のように表示されるおそれがあるため受け付けません。正しく発行された証明書を認証局に依頼してください。"),
            Self::NoTrustAnchors => "トラストアンカーが設定されていません。設定ファイルの trust_anchors に認証局の CA 証明書を指定してください。".into(),
            Self::BadTrustAnchor { index, detail } => format!("トラストアンカー {index} を使用できません（{detail}）。trust_anchors のファイルを確認してください。"),
            Self::UntrustedChain { detail } => format!("証明書が設定された認証局につながりません（{detail}）。trust_anchors の認証局が発行した証明書か、中間証明書がファイルに含まれているかを確認してください。"),
        }
    }
}

/// Checks `material` (with `pending_key` standing in for a missing key) and
/// returns the identity to store, or the first reason to refuse it.
///
/// The order of checks puts the cheapest and most specific first, so that the
/// error names the real problem: a key that does not match is reported as
/// such, not as a chain failure.
pub fn validate(
    material: Material,
    pending_key: Option<PrivateKeyDer<'static>>,
    policy: &Policy<'_>,
    now: OffsetDateTime,
) -> Result<ValidIdentity, ValidationError> {
    if material.certs.is_empty() {
        return Err(ValidationError::NoCertificate);
    }
    for (index, der) in material.certs.iter().enumerate() {
        parse(der).map_err(|detail| ValidationError::CorruptCertificate { index, detail })?;
    }
    let key = material.key.or(pending_key).ok_or(ValidationError::NoPrivateKey)?;
    let key_spki = public_key_of(&key).map_err(|unusable| {
        // ring refuses RSA keys under 2048 bits outright; name the real problem.
        material
            .certs
            .iter()
            .filter_map(|der| parse(der).ok())
            .filter(|cert| !cert.is_ca())
            .find_map(|cert| match key_type_of(&cert) {
                Err(weak @ ValidationError::WeakKey { .. }) => Some(weak),
                _ => None,
            })
            .unwrap_or(unusable)
    })?;
    let leaf_index = material
        .certs
        .iter()
        .position(|der| parse(der).is_ok_and(|c| c.public_key().raw == key_spki.as_slice()))
        .ok_or(ValidationError::KeyMismatch)?;
    let mut chain = material.certs;
    let leaf_der = chain.remove(leaf_index);
    chain.insert(0, leaf_der);

    let leaf = parse(&chain[0]).map_err(|detail| ValidationError::CorruptCertificate { index: 0, detail })?;
    let key_type = key_type_of(&leaf)?;
    check_displayed_text(&leaf)?;
    for der in &chain {
        let cert = parse(der).map_err(|detail| ValidationError::CorruptCertificate { index: 0, detail })?;
        check_signature_algorithm(&cert)?;
    }
    check_time(&leaf, policy.build_time, now)?;
    check_usage(&leaf)?;
    let found = institution_code_of(&leaf, policy.code_field)
        .ok_or(ValidationError::InstitutionCodeMissing { field: field_name(policy.code_field) })?;
    if &found != policy.institution_code {
        return Err(ValidationError::InstitutionCodeMismatch {
            expected: policy.institution_code.to_string(),
            found: found.to_string(),
        });
    }
    check_chain(&chain, policy.trust_anchors, now)?;
    let info = cert_info(&chain[0], policy.code_field)
        .map_err(|detail| ValidationError::CorruptCertificate { index: 0, detail })?;
    debug_assert_eq!(info.key_type, key_type);
    Ok(ValidIdentity { chain, key, info })
}

/// Reads the status facts of a leaf certificate.
pub fn cert_info(der: &CertificateDer<'_>, code_field: CodeField) -> Result<CertInfo, String> {
    let cert = parse(der)?;
    let validity = cert.validity();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        fingerprint_sha256: hex(digest::digest(&digest::SHA256, der.as_ref()).as_ref()),
        institution_code: institution_code_of(&cert, code_field),
        key_type: key_type_of(&cert).unwrap_or_else(|e| match e {
            ValidationError::WeakKey { bits } => format!("rsa-{bits}"),
            ValidationError::UnsupportedKeyType { key_type } => key_type,
            other => other.code().to_owned(),
        }),
    })
}

/// The institution code carried by `cert` under `field` (serialNumber first,
/// then a 10-digit run in the common name).
pub fn institution_code_of(cert: &X509Certificate<'_>, field: CodeField) -> Option<InstitutionCode> {
    let subject = cert.subject();
    if field == CodeField::SerialNumber {
        let oid = Oid::from(&SERIAL_NUMBER_OID_ARCS).ok()?;
        if let Some(code) = subject
            .iter_by_oid(&oid)
            .filter_map(|attr| attr.as_str().ok())
            .find_map(|value| value.trim().parse::<InstitutionCode>().ok())
        {
            return Some(code);
        }
    }
    subject.iter_common_name().filter_map(|attr| attr.as_str().ok()).find_map(InstitutionCode::find_in)
}

/// Refuses control characters in the leaf's subject and issuer attributes:
/// `cert status` shows them, and the code and unit are matched on them.
fn check_displayed_text(cert: &X509Certificate<'_>) -> Result<(), ValidationError> {
    for (name, dn) in [("subject", cert.subject()), ("issuer", cert.issuer())] {
        for attr in dn.iter_attributes() {
            let Ok(text) = attr.as_str() else { continue };
            if let Some(found) = cpe_common::text::first_control(text) {
                return Err(ValidationError::ControlCharacter {
                    name,
                    attribute: attribute_name(attr.attr_type()),
                    found: found.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// The short name of a subject attribute type (`CN`, `OU`, …), else its OID.
fn attribute_name(oid: &Oid<'_>) -> String {
    let id = oid.to_id_string();
    match id.as_str() {
        "2.5.4.3" => "CN (commonName)".into(),
        "2.5.4.5" => "serialNumber".into(),
        "2.5.4.6" => "C (country)".into(),
        "2.5.4.10" => "O (organisation)".into(),
        "2.5.4.11" => "OU (unit)".into(),
        _ => id,
    }
}

fn field_name(field: CodeField) -> &'static str {
    match field {
        CodeField::SerialNumber => "subject serialNumber or common name",
        CodeField::CommonName => "subject common name",
    }
}

fn parse<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, String> {
    match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing bytes after the certificate".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The SubjectPublicKeyInfo (DER) of `key`, proving on the way that the key
/// can be loaded by the TLS stack that will use it.
fn public_key_of(key: &PrivateKeyDer<'_>) -> Result<Vec<u8>, ValidationError> {
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| ValidationError::UnusableKey { detail: e.to_string() })?;
    signing_key
        .public_key()
        .map(|spki| spki.as_ref().to_vec())
        .ok_or_else(|| ValidationError::UnusableKey { detail: "public key not derivable".into() })
}

fn key_type_of(cert: &X509Certificate<'_>) -> Result<String, ValidationError> {
    let spki = cert.public_key();
    let algorithm = &spki.algorithm.algorithm;
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            match bits {
                0..2048 => Err(ValidationError::WeakKey { bits }),
                2048..=4096 => Ok(format!("rsa-{bits}")),
                _ => Err(ValidationError::UnsupportedKeyType { key_type: format!("rsa-{bits}") }),
            }
        }
        Ok(PublicKey::EC(_)) => {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
            match curve {
                Some(c) if c == oid_registry::OID_EC_P256 => Ok("ecdsa-p256".into()),
                Some(c) if c == oid_registry::OID_NIST_EC_P384 => Ok("ecdsa-p384".into()),
                other => Err(ValidationError::UnsupportedKeyType {
                    key_type: format!(
                        "ecdsa curve {}",
                        other.map_or_else(|| "unknown".into(), |c| c.to_id_string())
                    ),
                }),
            }
        }
        _ if *algorithm == oid_registry::OID_SIG_ED25519 => Ok("ed25519".into()),
        _ => Err(ValidationError::UnsupportedKeyType { key_type: algorithm.to_id_string() }),
    }
}

/// Signature algorithms refused anywhere in the chain, by OID.
const WEAK_SIGNATURES: [(&str, &str); 6] = [
    ("1.2.840.113549.1.1.5", "SHA-1"), // sha1WithRSAEncryption
    ("1.3.14.3.2.29", "SHA-1"),        // sha1WithRSA (OIW)
    ("1.2.840.10045.4.1", "SHA-1"),    // ecdsa-with-SHA1
    ("1.2.840.10040.4.3", "SHA-1"),    // dsa-with-sha1
    ("1.2.840.113549.1.1.4", "MD5"),   // md5WithRSAEncryption
    ("1.2.840.113549.1.1.2", "MD2"),   // md2WithRSAEncryption
];

fn check_signature_algorithm(cert: &X509Certificate<'_>) -> Result<(), ValidationError> {
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    match WEAK_SIGNATURES.iter().find(|(weak, _)| *weak == oid) {
        Some((_, algorithm)) => {
            Err(ValidationError::WeakSignature { subject: cert.subject().to_string(), algorithm })
        }
        None => Ok(()),
    }
}

fn check_time(
    cert: &X509Certificate<'_>,
    build_time: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), ValidationError> {
    if now < build_time {
        return Err(ValidationError::ClockUnset { now: rfc3339(now), build_time: rfc3339(build_time) });
    }
    let validity = cert.validity();
    let subject = cert.subject().to_string();
    if now > validity.not_after.to_datetime() {
        return Err(ValidationError::Expired {
            subject,
            not_after: rfc3339(validity.not_after.to_datetime()),
        });
    }
    if now < validity.not_before.to_datetime() {
        return Err(ValidationError::NotYetValid {
            subject,
            not_before: rfc3339(validity.not_before.to_datetime()),
        });
    }
    Ok(())
}

fn check_usage(cert: &X509Certificate<'_>) -> Result<(), ValidationError> {
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.value.client_auth || eku.value.any => {}
        Ok(_) => return Err(ValidationError::MissingClientAuth),
        Err(e) => {
            return Err(ValidationError::WrongKeyUsage {
                detail: format!("extended key usage unreadable: {e}"),
            })
        }
    }
    if cert.is_ca() {
        return Err(ValidationError::WrongKeyUsage { detail: "it is a CA certificate".into() });
    }
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.digital_signature() => Err(ValidationError::WrongKeyUsage {
            detail: format!("key usage is {} without digitalSignature", ku.value),
        }),
        Ok(_) => Ok(()),
        Err(e) => Err(ValidationError::WrongKeyUsage { detail: format!("key usage unreadable: {e}") }),
    }
}

fn check_chain(
    chain: &[CertificateDer<'static>],
    anchors: &[CertificateDer<'static>],
    now: OffsetDateTime,
) -> Result<(), ValidationError> {
    if anchors.is_empty() {
        return Err(ValidationError::NoTrustAnchors);
    }
    let anchors = anchors
        .iter()
        .enumerate()
        .map(|(index, der)| {
            webpki::anchor_from_trusted_cert(der)
                .map(|a| a.to_owned())
                .map_err(|e| ValidationError::BadTrustAnchor { index, detail: e.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| ValidationError::CorruptCertificate { index: 0, detail: e.to_string() })?;
    let seconds = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds));
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &chain[1..],
        time,
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| match e {
        webpki::Error::CertExpired { .. } => ValidationError::Expired {
            subject: "an intermediate certificate".into(),
            not_after: "(see the chain)".into(),
        },
        webpki::Error::CertNotValidYet { .. } => ValidationError::NotYetValid {
            subject: "an intermediate certificate".into(),
            not_before: "(see the chain)".into(),
        },
        webpki::Error::UnknownIssuer => ValidationError::UntrustedChain { detail: "issuer unknown".into() },
        other => ValidationError::UntrustedChain { detail: format!("{other:?}") },
    })
}

/// Formats `t` as RFC 3339 in UTC.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
