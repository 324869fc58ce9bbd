//! Signing enforcement receipts with the device's institution-certificate
//! key, through rustls' signing API (the same code path the TLS client
//! identity uses, so every key type the device can import can sign).

use std::sync::Arc;

use cpe_protocol::receipt::{encode_receipt, receipt_signed_message, EnforcementReceipt, SignedReceipt};
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::SigningKey;
use rustls::SignatureScheme;

/// Schemes offered to the key, most preferred first (one per key type).
const SCHEMES: [SignatureScheme; 5] = [
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA256,
];

/// Why a receipt could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptSignError {
    /// The key is not one rustls can sign with.
    #[error("the device key cannot sign receipts: {0}; re-import the institution certificate")]
    Key(String),
    /// The receipt could not be encoded.
    #[error("cannot encode the receipt: {0}")]
    Encode(String),
    /// Signing failed.
    #[error("signing the receipt failed: {0}")]
    Sign(String),
}

/// Signs receipts with one private key.
#[derive(Debug, Clone)]
pub struct ReceiptSigner {
    key: Arc<dyn SigningKey>,
}

impl ReceiptSigner {
    /// A signer for the device's private key.
    pub fn new(key: &PrivateKeyDer<'_>) -> Result<Self, ReceiptSignError> {
        let key = rustls::crypto::ring::sign::any_supported_type(key)
            .map_err(|e| ReceiptSignError::Key(e.to_string()))?;
        Ok(Self { key })
    }

    /// Encodes `receipt` and signs exactly those bytes.
    pub fn sign(&self, receipt: &EnforcementReceipt) -> Result<SignedReceipt, ReceiptSignError> {
        let receipt_bytes = encode_receipt(receipt).map_err(|e| ReceiptSignError::Encode(e.to_string()))?;
        let signer = self
            .key
            .choose_scheme(&SCHEMES)
            .ok_or_else(|| ReceiptSignError::Key(format!("no scheme among {SCHEMES:?} fits the key")))?;
        let signature = signer
            .sign(&receipt_signed_message(&receipt_bytes))
            .map_err(|e| ReceiptSignError::Sign(e.to_string()))?;
        Ok(SignedReceipt { receipt_bytes, scheme: u16::from(signer.scheme()), signature })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpe_protocol::order::OrderTarget;
    use cpe_protocol::receipt::{decode_receipt, ReceiptClock, ServiceState, RECEIPT_VERSION};
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ED25519};

    pub(crate) fn receipt() -> EnforcementReceipt {
        EnforcementReceipt {
            version: RECEIPT_VERSION,
            device: OrderTarget { institution_code: "1312345678".into(), device: "main".into() },
            order_id: 1,
            sequence: 1,
            order_hash: [3; 32],
            applied_at: 1_800_000_000,
            device_clock: 5,
            time_floor: 1_799_000_000,
            clock: ReceiptClock::Untrusted,
            resulting_state: ServiceState::Suspended,
            drill: false,
        }
    }

    fn sign_with(alg: &'static rcgen::SignatureAlgorithm) -> (SignedReceipt, Vec<u8>) {
        let pair = rcgen::KeyPair::generate_for(alg).unwrap();
        let der = PrivateKeyDer::try_from(pair.serialize_der()).unwrap();
        let signed = ReceiptSigner::new(&der).unwrap().sign(&receipt()).unwrap();
        (signed, pair.public_key_raw().to_vec())
    }

    #[test]
    fn p256_receipts_verify_over_the_exact_bytes() {
        let (signed, public) = sign_with(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(signed.scheme, 0x0403);
        assert_eq!(decode_receipt(&signed.receipt_bytes).unwrap(), receipt());
        let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &public);
        key.verify(&receipt_signed_message(&signed.receipt_bytes), &signed.signature).unwrap();
        let mut tampered = signed.receipt_bytes.clone();
        tampered[3] ^= 1;
        assert!(key.verify(&receipt_signed_message(&tampered), &signed.signature).is_err());
    }

    #[test]
    fn ed25519_receipts_verify() {
        let (signed, public) = sign_with(&rcgen::PKCS_ED25519);
        assert_eq!(signed.scheme, 0x0807);
        UnparsedPublicKey::new(&ED25519, &public)
            .verify(&receipt_signed_message(&signed.receipt_bytes), &signed.signature)
            .unwrap();
    }
}
