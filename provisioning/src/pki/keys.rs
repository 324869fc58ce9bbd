//! Subject keys: which key types `cert issue` generates, which existing keys
//! it accepts, and how a public key is classified to choose key usages and to
//! refuse weak keys.
//!
//! Keys are generated with `ring` (through rcgen). `ring` cannot generate RSA
//! keys and the `rsa` crate is not a dependency of this workspace, so the RSA
//! key types are recognised but refused with
//! [`ProvisionError::RsaKeyGenerationUnsupported`], which tells the operator to
//! generate the key with openssl and pass it with `--key-file` (or sign a CSR
//! made with it). Signing with a given RSA key works.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::pki::error::{ProvisionError, Result};

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// A key type `cert issue` can be asked to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyType {
    /// ECDSA on NIST P-256 (the default; what CPE secure elements support best).
    #[default]
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA 2048 (not generated here, see the module documentation).
    Rsa2048,
    /// RSA 3072 (not generated here).
    Rsa3072,
    /// RSA 4096 (not generated here).
    Rsa4096,
}

impl KeyType {
    /// Every key type, in the order of [`KeyType::NAMES`].
    pub const ALL: [Self; 6] =
        [Self::EcdsaP256, Self::EcdsaP384, Self::Ed25519, Self::Rsa2048, Self::Rsa3072, Self::Rsa4096];

    /// The command-line names of the key types.
    pub const NAMES: [&'static str; 6] =
        ["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa2048", "rsa3072", "rsa4096"];

    /// The command-line name (`ecdsa-p256`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::EcdsaP256 => Self::NAMES[0],
            Self::EcdsaP384 => Self::NAMES[1],
            Self::Ed25519 => Self::NAMES[2],
            Self::Rsa2048 => Self::NAMES[3],
            Self::Rsa3072 => Self::NAMES[4],
            Self::Rsa4096 => Self::NAMES[5],
        }
    }

    /// Generates a key of this type.
    pub fn generate(self) -> Result<KeyPair> {
        let alg = match self {
            Self::EcdsaP256 => &PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &PKCS_ECDSA_P384_SHA384,
            Self::Ed25519 => &PKCS_ED25519,
            Self::Rsa2048 => return Err(ProvisionError::RsaKeyGenerationUnsupported { bits: 2048 }),
            Self::Rsa3072 => return Err(ProvisionError::RsaKeyGenerationUnsupported { bits: 3072 }),
            Self::Rsa4096 => return Err(ProvisionError::RsaKeyGenerationUnsupported { bits: 4096 }),
        };
        let generation_failed = |e: rcgen::Error| ProvisionError::KeyGeneration { detail: e.to_string() };
        let key = KeyPair::generate_for(alg).map_err(generation_failed)?;
        if self != Self::Ed25519 {
            return Ok(key);
        }
        // ring writes Ed25519 keys as PKCS#8 v2 (with the public key), which
        // OpenSSL 3.0 cannot read (in PEM or inside PKCS#12). Hand out the
        // v1 form, which every reader (ring, rustls, OpenSSL) accepts.
        let v1 = ed25519_pkcs8_v1(key.serialized_der()).ok_or_else(|| ProvisionError::KeyGeneration {
            detail: "unexpected Ed25519 PKCS#8 layout".into(),
        })?;
        let converted = KeyPair::try_from(v1.as_slice()).map_err(generation_failed)?;
        if converted.public_key_raw() == key.public_key_raw() {
            Ok(converted)
        } else {
            Err(ProvisionError::KeyGeneration { detail: "Ed25519 PKCS#8 conversion changed the key".into() })
        }
    }
}

/// DER prefix of an Ed25519 PKCS#8 v1 key (RFC 8410): version 0, algorithm
/// id-Ed25519, and the 32-byte seed as an OCTET STRING in an OCTET STRING.
const ED25519_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// The PKCS#8 v1 form of a v2 Ed25519 key as ring writes it (same fields
/// with version 1 and a trailing `[1]` public key, RFC 5958), or `None` for any other
/// layout.
fn ed25519_pkcs8_v1(v2: &[u8]) -> Option<Vec<u8>> {
    const V2_HEADER: [u8; 4] = [0x30, 0x51, 0x02, 0x01];
    // [1] IMPLICIT BIT STRING, 33 bytes: no unused bits, 32-byte key.
    const PUBLIC_KEY_FIELD: [u8; 3] = [0x81, 0x21, 0x00];
    let body = v2.strip_prefix(&V2_HEADER[..])?.strip_prefix(&[0x01][..])?;
    let rest = body.strip_prefix(&ED25519_V1_PREFIX[5..])?;
    let (seed, public) = (rest.get(..32)?, rest.get(32..)?);
    if public.len() != PUBLIC_KEY_FIELD.len() + 32 || !public.starts_with(&PUBLIC_KEY_FIELD) {
        return None;
    }
    let mut v1 = ED25519_V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    Some(v1)
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`KeyType`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key type {given:?}; use one of ecdsa-p256, ecdsa-p384, ed25519, rsa2048, rsa3072, rsa4096")]
pub struct UnknownKeyType {
    /// The rejected input.
    pub given: String,
}

impl FromStr for KeyType {
    type Err = UnknownKeyType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| UnknownKeyType { given: s.to_owned() })
    }
}

/// Where the subject key of an issued certificate comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Generate a fresh key of this type.
    Generate(KeyType),
    /// Use this existing unencrypted PKCS#8 private key (DER), e.g. an RSA key
    /// made with openssl.
    Pkcs8Der(Vec<u8>),
}

impl Default for KeySource {
    fn default() -> Self {
        Self::Generate(KeyType::default())
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Generate(t) => f.debug_tuple("Generate").field(t).finish(),
            Self::Pkcs8Der(_) => f.write_str("Pkcs8Der(<secret>)"),
        }
    }
}

impl KeySource {
    /// Reads an unencrypted PKCS#8 PEM key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem_text: &str) -> Result<Self> {
        let block = pem::parse(pem_text)
            .map_err(|e| ProvisionError::UnsupportedKey { detail: format!("not a PEM file: {e}") })?;
        if block.tag() != "PRIVATE KEY" {
            return Err(ProvisionError::UnsupportedKey {
                detail: format!("the PEM block is {:?}, not \"PRIVATE KEY\"", block.tag()),
            });
        }
        Ok(Self::Pkcs8Der(block.into_contents()))
    }

    /// The key pair: generated, or parsed and checked.
    pub(crate) fn key_pair(&self) -> Result<KeyPair> {
        match self {
            Self::Generate(key_type) => key_type.generate(),
            Self::Pkcs8Der(der) => {
                let key = KeyPair::try_from(der.as_slice())
                    .map_err(|e| ProvisionError::UnsupportedKey { detail: e.to_string() })?;
                classify_spki(&key.subject_public_key_info())
                    .map_err(|detail| ProvisionError::UnsupportedKey { detail })?;
                Ok(key)
            }
        }
    }
}

/// The family of a public key, as far as certificate contents depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// ECDSA on a named curve.
    Ec,
    /// Ed25519.
    Ed25519,
    /// RSA with at least [`MIN_RSA_BITS`] bits.
    Rsa,
}

/// Classifies a DER SubjectPublicKeyInfo, refusing unknown types and RSA keys
/// under [`MIN_RSA_BITS`]. The error is a detail for the caller's message.
pub(crate) fn classify_spki(spki_der: &[u8]) -> std::result::Result<KeyKind, String> {
    let (rest, spki) =
        SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| format!("unreadable public key: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the public key".into());
    }
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            if bits < MIN_RSA_BITS {
                Err(format!("RSA key of {bits} bits; at least {MIN_RSA_BITS} are required"))
            } else {
                Ok(KeyKind::Rsa)
            }
        }
        Ok(PublicKey::EC(_)) => Ok(KeyKind::Ec),
        Ok(PublicKey::Unknown(_)) if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            Ok(KeyKind::Ed25519)
        }
        Ok(_) => Err(format!("unsupported key algorithm {}", spki.algorithm.algorithm.to_id_string())),
        Err(e) => Err(format!("unreadable public key: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn generated_ed25519_keys_are_pkcs8_v1() {
        let key = KeyType::Ed25519.generate().unwrap();
        let der = key.serialized_der();
        assert_eq!(der.len(), 48);
        assert_eq!(der[..16], ED25519_V1_PREFIX);
        assert_eq!(ed25519_pkcs8_v1(der), None, "already v1");
    }

    #[test]
    fn names_round_trip() {
        for t in KeyType::ALL {
            assert_eq!(t.name().parse::<KeyType>().unwrap(), t);
        }
        assert!("dsa".parse::<KeyType>().is_err());
    }

    #[test]
    fn generates_ec_and_ed25519_but_refuses_rsa_with_a_hint() {
        for t in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Ed25519] {
            let key = t.generate().unwrap();
            let kind = classify_spki(&key.subject_public_key_info()).unwrap();
            let expected = if t == KeyType::Ed25519 { KeyKind::Ed25519 } else { KeyKind::Ec };
            assert_eq!(kind, expected);
        }
        let err = KeyType::Rsa3072.generate().unwrap_err();
        assert!(matches!(err, ProvisionError::RsaKeyGenerationUnsupported { bits: 3072 }));
        assert!(err.to_string().contains("csr sign"));
    }

    #[test]
    fn pkcs8_pem_of_another_kind_is_refused() {
        let err = KeySource::from_pkcs8_pem(
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("openssl pkcs8"), "{err}");
        let key = KeyType::EcdsaP256.generate().unwrap();
        let source = KeySource::from_pkcs8_pem(&key.serialize_pem()).unwrap();
        assert_eq!(source, KeySource::Pkcs8Der(key.serialize_der()));
        assert_eq!(format!("{source:?}"), "Pkcs8Der(<secret>)");
    }
}
