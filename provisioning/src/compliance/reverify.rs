//! Re-verification of a stored order for an auditor (`cpe-provision order
//! verify N`): long after the fact, prove from the store alone and the
//! carrier's public order keys (current and retired) that the order the
//! device received was signed by the carrier, says what the record says, and
//! that the device's receipt — signed with the key of the certificate it
//! presented, which is stored with the receipt — acknowledges exactly it.

use cpe_protocol::order::{decode_order, decode_signed, signed_message};
use ring::signature::{UnparsedPublicKey, ED25519};
use serde::Serialize;

use cpe_common::hex::encode as hex;

use super::error::ComplianceError;
use super::order_keys::{parse_public_key, KeyInfo, KeyStore};
use super::receipts::{order_hash, verify_receipt, ExpectedOrder};
use crate::store::{Database, OrderEvidence, OrderRow};

/// One check of an audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditCheck {
    /// What was checked.
    pub name: &'static str,
    /// `ok`, `failed` or `skipped`.
    pub result: &'static str,
    /// The evidence.
    pub detail: String,
}

/// Re-verifies stored order `id` against the public keys (current and
/// retired) of the key directory `keys`.
pub async fn verify_stored(
    db: &Database,
    id: u64,
    keys: &KeyStore,
) -> Result<Vec<AuditCheck>, ComplianceError> {
    let (Some(order), Some(evidence)) = (db.order(id).await?, db.order_evidence(id).await?) else {
        return Err(ComplianceError::NoOrder(id));
    };
    Ok(audit_order(&order, &evidence, &keys.list()?))
}

fn check(name: &'static str, ok: bool, detail: String) -> AuditCheck {
    AuditCheck { name, result: if ok { "ok" } else { "failed" }, detail }
}

/// Checks the stored order `row` against its `evidence` and the carrier's
/// public order keys. The audit passes when no check has `failed`.
pub fn audit_order(row: &OrderRow, evidence: &OrderEvidence, keys: &[KeyInfo]) -> Vec<AuditCheck> {
    let mut checks = Vec::new();
    let signed = match decode_signed(&evidence.signed) {
        Ok(signed) => signed,
        Err(e) => return vec![check("order signature", false, format!("stored order unreadable: {e}"))],
    };
    let key_id = hex(&signed.key_id);
    let key = keys.iter().find(|k| k.key_id == key_id);
    let verified = key.and_then(|k| parse_public_key(&k.public_key)).is_some_and(|public| {
        UnparsedPublicKey::new(&ED25519, public)
            .verify(&signed_message(&signed.order_bytes), &signed.signature)
            .is_ok()
    });
    checks.push(match key {
        None => check(
            "order signature",
            false,
            format!("signed by key {key_id}, which is not in the key directory"),
        ),
        Some(k) if verified => {
            check("order signature", true, format!("valid under the {} key {key_id}", k.status))
        }
        Some(_) => check("order signature", false, format!("does not verify under key {key_id}")),
    });
    let order = match decode_order(&signed.order_bytes) {
        Ok(order) => order,
        Err(e) => {
            checks.push(check("order content", false, format!("signed bytes unreadable: {e}")));
            return checks;
        }
    };
    let hash = order_hash(&signed.order_bytes);
    let matches = order.id == row.id
        && order.sequence == row.sequence
        && order.target == row.target()
        && hash.as_slice() == row.order_hash.as_slice()
        && order.issued_at == row.issued_at
        && order.expires_at == row.expires_at
        && order.reason_en == row.reason_en
        && order.reason_ja == row.reason_ja;
    checks.push(check(
        "order content",
        matches,
        if matches {
            format!(
                "order {} sequence {} for {}, hash {}",
                order.id,
                order.sequence,
                row.device_id,
                hex(&hash)
            )
        } else {
            "the signed order differs from the record".to_owned()
        },
    ));
    checks.push(match (row.state(), &evidence.receipt, &evidence.receipt_cert) {
        ("applied", Some(receipt), Some(cert)) => {
            let expected = ExpectedOrder {
                order_id: order.id,
                sequence: order.sequence,
                target: order.target,
                order_hash: hash,
            };
            match verify_receipt(cert, receipt, &expected) {
                Ok(r) => check(
                    "device receipt",
                    true,
                    format!(
                        "signed by the device certificate; applied at unix {} ({:?} clock), state {}{}",
                        r.applied_at,
                        r.clock,
                        r.resulting_state.as_str(),
                        if r.drill { ", drill" } else { "" }
                    ),
                ),
                Err(e) => check("device receipt", false, e.to_string()),
            }
        }
        ("applied", _, _) => {
            check("device receipt", false, "applied, but the receipt evidence is missing".into())
        }
        (state, _, _) => {
            AuditCheck { name: "device receipt", result: "skipped", detail: format!("order is {state}") }
        }
    });
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::order_keys::{sign, OrderSigningKey};
    use crate::store::ReceiptFields;
    use cpe_protocol::order::{encode_signed, Order, OrderKind, OrderTarget, ORDER_VERSION};
    use cpe_protocol::receipt::{
        encode_receipt, receipt_signed_message, EnforcementReceipt, ReceiptClock, ServiceState,
        SignedReceipt, RECEIPT_VERSION,
    };
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    fn order() -> Order {
        Order {
            version: ORDER_VERSION,
            id: 5,
            target: OrderTarget { institution_code: "1312345678".into(), device: "main".into() },
            kind: OrderKind::Stop,
            sequence: 2,
            issued_at: 1_800_000_000,
            not_before: 1_799_999_700,
            expires_at: 1_800_604_800,
            reason_ja: "停止".into(),
            reason_en: "stop".into(),
            deadline: None,
        }
    }

    fn row(order_bytes: &[u8]) -> OrderRow {
        OrderRow {
            id: 5,
            device_id: "1312345678/main".into(),
            case_id: Some(1),
            command_id: Some(3),
            kind: "stop".into(),
            sequence: 2,
            key_id: String::new(),
            issued_at: 1_800_000_000,
            not_before: 1_799_999_700,
            expires_at: 1_800_604_800,
            deadline: None,
            reason_ja: "停止".into(),
            reason_en: "stop".into(),
            operator: "tanaka".into(),
            justification: None,
            created_at_ms: 0,
            order_hash: order_hash(order_bytes).to_vec(),
            delivered_at_ms: Some(1),
            deliveries: 1,
            outcome: Some("applied".into()),
            outcome_at_ms: Some(2),
            detail: None,
            receipt: Some(ReceiptFields {
                applied_at: 1_800_000_001,
                device_clock: 1_800_000_001,
                time_floor: 1_800_000_000,
                clock: "trusted".into(),
                resulting_state: "suspended".into(),
                drill: false,
                scheme: 0x0403,
            }),
        }
    }

    fn info(key: &OrderSigningKey, status: &'static str) -> KeyInfo {
        KeyInfo { key_id: hex(&key.key_id()), public_key: hex(&key.public_key()), status }
    }

    fn evidence(key: &OrderSigningKey) -> (OrderRow, OrderEvidence) {
        let signed = sign(&order(), key).unwrap();
        let device_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["d".into()]).unwrap().self_signed(&device_key).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &device_key.serialize_der(),
            &SystemRandom::new(),
        )
        .unwrap();
        let receipt = EnforcementReceipt {
            version: RECEIPT_VERSION,
            device: order().target,
            order_id: 5,
            sequence: 2,
            order_hash: order_hash(&signed.order_bytes),
            applied_at: 1_800_000_001,
            device_clock: 1_800_000_001,
            time_floor: 1_800_000_000,
            clock: ReceiptClock::Trusted,
            resulting_state: ServiceState::Suspended,
            drill: false,
        };
        let receipt_bytes = encode_receipt(&receipt).unwrap();
        let signature = pair
            .sign(&SystemRandom::new(), &receipt_signed_message(&receipt_bytes))
            .unwrap()
            .as_ref()
            .to_vec();
        let evidence = OrderEvidence {
            signed: encode_signed(&signed).unwrap(),
            receipt: Some(SignedReceipt { receipt_bytes, scheme: 0x0403, signature }),
            receipt_cert: Some(cert.der().to_vec()),
        };
        (row(&signed.order_bytes), evidence)
    }

    fn results(checks: &[AuditCheck]) -> Vec<&'static str> {
        checks.iter().map(|c| c.result).collect()
    }

    #[test]
    fn a_genuine_order_and_receipt_pass_even_under_a_retired_key() {
        let old = OrderSigningKey::generate().unwrap();
        let new = OrderSigningKey::generate().unwrap();
        let (row, evidence) = evidence(&old);
        let checks = audit_order(&row, &evidence, &[info(&new, "current"), info(&old, "retired")]);
        assert_eq!(results(&checks), ["ok", "ok", "ok"], "{checks:?}");
        assert!(checks[0].detail.contains("retired key"), "{checks:?}");
    }

    #[test]
    fn unknown_keys_altered_records_and_altered_receipts_fail() {
        let key = OrderSigningKey::generate().unwrap();
        let other = OrderSigningKey::generate().unwrap();
        let (row, evidence) = evidence(&key);
        assert_eq!(results(&audit_order(&row, &evidence, &[info(&other, "current")]))[0], "failed");
        // The record was edited after the fact.
        let mut edited = row.clone();
        edited.reason_en = "something else".into();
        assert_eq!(
            results(&audit_order(&edited, &evidence, &[info(&key, "current")])),
            ["ok", "failed", "ok"]
        );
        // The stored receipt was altered.
        let mut tampered = evidence.clone();
        if let Some(r) = tampered.receipt.as_mut() {
            r.receipt_bytes[3] ^= 1;
        }
        assert_eq!(results(&audit_order(&row, &tampered, &[info(&key, "current")])), ["ok", "ok", "failed"]);
        // A key with the right id but another public key does not verify.
        let mut wrong = info(&key, "current");
        wrong.public_key = hex(&other.public_key());
        assert_eq!(results(&audit_order(&row, &evidence, &[wrong]))[0], "failed");
        // Not applied: the receipt check is skipped.
        let mut queued = row;
        queued.outcome = None;
        queued.delivered_at_ms = None;
        assert_eq!(
            results(&audit_order(&queued, &evidence, &[info(&key, "current")])),
            ["ok", "ok", "skipped"]
        );
    }
}
