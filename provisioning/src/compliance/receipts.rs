//! Verification of the devices' signed enforcement receipts.
//!
//! A receipt is the device's proof, for an auditor, that it applied an order
//! at a given time under a given clock state. The carrier accepts it only if
//! (1) its signature verifies under the public key of the client certificate
//! of the very TLS connection that delivered it, with the signature scheme
//! it names (any scheme the ring provider verifies: ECDSA P-256/P-384,
//! Ed25519, RSA), and (2) after decoding, it speaks of the order the
//! acknowledgement names: same order id, same sequence number, same target
//! device, and the SHA-256 of the exact order bytes the carrier signed.
//! Anything else is rejected and nothing is recorded.

use cpe_protocol::order::OrderTarget;
use cpe_protocol::receipt::{
    check_signed_receipt, decode_receipt, receipt_signed_message, EnforcementReceipt, ReceiptError,
    SignedReceipt,
};
use rustls::pki_types::CertificateDer;

/// What the carrier knows of the order a receipt must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedOrder {
    /// The carrier's order id.
    pub order_id: u64,
    /// The order's sequence number.
    pub sequence: u64,
    /// The device it was issued for.
    pub target: OrderTarget,
    /// SHA-256 of the signed order bytes.
    pub order_hash: [u8; 32],
}

/// Why a receipt was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptRejection {
    /// Size limits of the envelope.
    #[error("receipt refused: {0}")]
    Envelope(ReceiptError),
    /// A signature scheme the carrier does not verify.
    #[error("receipt refused: signature scheme 0x{0:04x} is not supported")]
    UnknownScheme(u16),
    /// The client certificate cannot be parsed for verification.
    #[error("receipt refused: the client certificate cannot verify signatures ({0})")]
    Certificate(String),
    /// The signature does not verify under the connection's certificate.
    #[error("receipt refused: its signature does not verify under this device's certificate")]
    BadSignature,
    /// The signed bytes are not a receipt.
    #[error("receipt refused: {0}")]
    Decode(ReceiptError),
    /// The receipt speaks of another order or device.
    #[error("receipt refused: it does not match the order ({0})")]
    Mismatch(&'static str),
}

/// SHA-256 of order bytes (the order hash receipts quote).
pub fn order_hash(order_bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, order_bytes);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// Verifies `signed` against the client certificate `cert_der` and the order
/// it must acknowledge; returns the decoded receipt.
pub fn verify_receipt(
    cert_der: &[u8],
    signed: &SignedReceipt,
    expected: &ExpectedOrder,
) -> Result<EnforcementReceipt, ReceiptRejection> {
    check_signed_receipt(signed).map_err(ReceiptRejection::Envelope)?;
    let provider = rustls::crypto::ring::default_provider();
    let scheme = rustls::SignatureScheme::from(signed.scheme);
    let algorithms = provider
        .signature_verification_algorithms
        .mapping
        .iter()
        .find(|(s, _)| *s == scheme)
        .map(|(_, algs)| *algs)
        .ok_or(ReceiptRejection::UnknownScheme(signed.scheme))?;
    let der = CertificateDer::from(cert_der);
    let cert =
        webpki::EndEntityCert::try_from(&der).map_err(|e| ReceiptRejection::Certificate(e.to_string()))?;
    let message = receipt_signed_message(&signed.receipt_bytes);
    if !algorithms.iter().any(|alg| cert.verify_signature(*alg, &message, &signed.signature).is_ok()) {
        return Err(ReceiptRejection::BadSignature);
    }
    let receipt = decode_receipt(&signed.receipt_bytes).map_err(ReceiptRejection::Decode)?;
    if receipt.order_id != expected.order_id {
        return Err(ReceiptRejection::Mismatch("order id"));
    }
    if receipt.sequence != expected.sequence {
        return Err(ReceiptRejection::Mismatch("sequence number"));
    }
    if receipt.device != expected.target {
        return Err(ReceiptRejection::Mismatch("device"));
    }
    if receipt.order_hash != expected.order_hash {
        return Err(ReceiptRejection::Mismatch("order hash"));
    }
    Ok(receipt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpe_protocol::receipt::{encode_receipt, ReceiptClock, ServiceState, RECEIPT_VERSION};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    struct Device {
        cert_der: Vec<u8>,
        key: EcdsaKeyPair,
    }

    fn device() -> Device {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["device".into()]).unwrap();
        let cert = params.self_signed(&key_pair).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &key_pair.serialize_der(),
            &SystemRandom::new(),
        )
        .unwrap();
        Device { cert_der: cert.der().to_vec(), key }
    }

    fn target() -> OrderTarget {
        OrderTarget { institution_code: "1312345678".into(), device: "main".into() }
    }

    fn expected() -> ExpectedOrder {
        ExpectedOrder { order_id: 9, sequence: 3, target: target(), order_hash: order_hash(b"order bytes") }
    }

    fn receipt() -> EnforcementReceipt {
        EnforcementReceipt {
            version: RECEIPT_VERSION,
            device: target(),
            order_id: 9,
            sequence: 3,
            order_hash: order_hash(b"order bytes"),
            applied_at: 1_800_000_000,
            device_clock: 1_800_000_000,
            time_floor: 1_799_000_000,
            clock: ReceiptClock::Trusted,
            resulting_state: ServiceState::Suspended,
            drill: false,
        }
    }

    fn sign(device: &Device, receipt: &EnforcementReceipt) -> SignedReceipt {
        let receipt_bytes = encode_receipt(receipt).unwrap();
        let signature = device
            .key
            .sign(&SystemRandom::new(), &receipt_signed_message(&receipt_bytes))
            .unwrap()
            .as_ref()
            .to_vec();
        SignedReceipt { receipt_bytes, scheme: 0x0403, signature }
    }

    #[test]
    fn a_receipt_signed_by_the_connection_certificate_is_accepted() {
        let d = device();
        let got = verify_receipt(&d.cert_der, &sign(&d, &receipt()), &expected()).unwrap();
        assert_eq!(got, receipt());
    }

    #[test]
    fn forged_altered_or_mismatched_receipts_are_rejected() {
        let d = device();
        let other = device();
        // Signed by another key than the connection's certificate.
        let forged = sign(&other, &receipt());
        assert_eq!(verify_receipt(&d.cert_der, &forged, &expected()), Err(ReceiptRejection::BadSignature));
        // Bytes altered after signing.
        let mut altered = sign(&d, &receipt());
        let last = altered.receipt_bytes.len() - 1;
        altered.receipt_bytes[last] ^= 1;
        assert_eq!(verify_receipt(&d.cert_der, &altered, &expected()), Err(ReceiptRejection::BadSignature));
        // Unknown scheme.
        let mut scheme = sign(&d, &receipt());
        scheme.scheme = 0x7777;
        assert_eq!(
            verify_receipt(&d.cert_der, &scheme, &expected()),
            Err(ReceiptRejection::UnknownScheme(0x7777))
        );
        // Well signed, but about another order.
        for (field, change) in [
            (
                "order id",
                Box::new(|r: &mut EnforcementReceipt| r.order_id = 10)
                    as Box<dyn Fn(&mut EnforcementReceipt)>,
            ),
            ("sequence number", Box::new(|r: &mut EnforcementReceipt| r.sequence = 2)),
            ("device", Box::new(|r: &mut EnforcementReceipt| r.device.device = "other".into())),
            ("order hash", Box::new(|r: &mut EnforcementReceipt| r.order_hash[0] ^= 1)),
        ] {
            let mut r = receipt();
            change(&mut r);
            assert_eq!(
                verify_receipt(&d.cert_der, &sign(&d, &r), &expected()),
                Err(ReceiptRejection::Mismatch(field))
            );
        }
        // Garbage certificate.
        assert!(matches!(
            verify_receipt(b"nope", &sign(&d, &receipt()), &expected()),
            Err(ReceiptRejection::Certificate(_))
        ));
    }
}
