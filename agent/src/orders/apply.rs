//! The apply pipeline: signed order bytes in, a new durable state, the
//! firewall in line with it, an audit record and a signed receipt out.
//!
//! ```text
//! load state ─ verify (pure) ─┬─ refused: audit, return the refusal; NOTHING else changes
//!                             └─ accepted: next_state (pure) ─ sign receipt ─ persist ─ enforce ─ audit
//! ```
//! The new state (sequence, floor, service state, receipt) is written
//! durably **before** the firewall changes, so a power cut between the two
//! leaves a state that `cpe-agent apply-state` enforces at the next boot, and
//! the order can never be applied twice. If enforcement fails after the
//! state was persisted, the pipeline says so ([`ApplyError::Enforce`]); the
//! daemon keeps reconciling the firewall with the state.
//!
//! The state is saved before the audit record is written, so a crash in
//! between leaves an applied order without a record. [`reconcile_audit`]
//! closes that window: at start (`apply-state`, the daemon) and before each
//! apply, under the state lock, an applied sequence newer than the newest
//! order record gets one, marked `"recovered": true`.
//!
//! Every side effect is behind a narrow interface (the [`StateStore`]'s
//! `Storage`, [`Firewall`], [`AuditSink`], the [`ReceiptSigner`]) and the
//! clock is injected, so tests drive every refusal class and prove that
//! nothing changed.

use cpe_common::durable::Storage;
use cpe_protocol::order::{decode_signed, OrderKind, OrderTarget};
use cpe_protocol::receipt::{
    decode_receipt, EnforcementReceipt, ReceiptClock, ServiceState, SignedReceipt, RECEIPT_VERSION,
};

use super::firewall::{enforce, BlockPlan, Firewall, FirewallError};
use super::kind_name;
use super::receipt::ReceiptSigner;
use super::state::{KeyRecord, OrderState, ServiceRecord, StateError, StateStore};
use super::verify::{
    trusted_key, verify, ClockReading, ClockState, FloorSource, Refusal, Refused, TimeFloor, Verified,
    VerifyContext,
};
use crate::audit::{AuditKind, AuditLog};
use cpe_common::hex::encode as hex;

/// Where order decisions are recorded.
pub trait AuditSink {
    /// Appends one record; an error is logged, never undoes enforcement.
    fn append(&self, kind: AuditKind, at_unix: i64, detail: serde_json::Value) -> Result<(), String>;
    /// The sequence of the newest [`AuditKind::Order`] record kept, if any.
    fn last_order_sequence(&self) -> Result<Option<u64>, String>;
}

impl AuditSink for AuditLog {
    fn append(&self, kind: AuditKind, at_unix: i64, detail: serde_json::Value) -> Result<(), String> {
        AuditLog::append(self, kind, at_unix, detail).map_err(|e| e.to_string())
    }

    fn last_order_sequence(&self) -> Result<Option<u64>, String> {
        let detail = self.last_of_kind(AuditKind::Order).map_err(|e| e.to_string())?;
        Ok(detail.and_then(|d| d["sequence"].as_u64()))
    }
}

/// Everything the pipeline needs besides the state store and the bytes.
pub struct ApplyEnv<'a> {
    /// This device, as orders name it.
    pub device: &'a OrderTarget,
    /// The injected clock reading.
    pub clock: ClockReading,
    /// Times known to have passed from trusted sources (build time,
    /// certificate `not_before`, the carrier's time); raise the floor.
    pub floor_candidates: &'a [(FloorSource, i64)],
    /// The provisioned order keys (`[orders] keys`), used only when no state exists yet.
    pub initial_keys: &'a [[u8; 32]],
    /// The interfaces a suspension blocks.
    pub plan: &'a BlockPlan,
    /// The firewall.
    pub firewall: &'a dyn Firewall,
    /// Signs receipts (`None`: no identity installed, no receipt).
    pub signer: Option<&'a ReceiptSigner>,
    /// The audit log.
    pub audit: &'a dyn AuditSink,
}

/// An order applied and enforced.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The verified order.
    pub verified: Verified,
    /// The state now persisted and enforced.
    pub state: OrderState,
    /// The signed receipt (`None` when no identity could sign it).
    pub receipt: Option<SignedReceipt>,
    /// Why there is no receipt, if there is none.
    pub receipt_problem: Option<String>,
}

/// Why an order was not (completely) applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The verifier refused the order; nothing changed.
    #[error("order refused [{}]: {}", .0.refusal.class(), .0.refusal)]
    Refused(Refused),
    /// The very order applied last came again (its acknowledgement was lost
    /// and the carrier redelivered it): nothing changed, and its stored
    /// receipt answers it, so the carrier records it as applied, not refused.
    #[error("order {sequence} was already applied; its receipt is sent again")]
    AlreadyApplied {
        /// The order's sequence number.
        sequence: u64,
        /// The receipt signed when it was applied.
        receipt: Box<SignedReceipt>,
    },
    /// The state could not be read or written; nothing changed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The state was persisted but the firewall could not be made to match.
    #[error("order {sequence} recorded, but enforcement failed: {error}; the agent retries (cpe-agent apply-state)")]
    Enforce {
        /// The order's sequence number (now the last applied one).
        sequence: u64,
        /// What failed.
        error: FirewallError,
    },
}

impl ApplyError {
    /// A stable class name: the refusal class, `state` or `enforcement_failed`.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Refused(r) => r.refusal.class(),
            Self::AlreadyApplied { .. } => "already_applied",
            Self::State(_) => "state",
            Self::Enforce { .. } => "enforcement_failed",
        }
    }
}

/// The floor as the verifier sees it: the persisted one raised by the
/// current trusted candidates.
pub fn effective_floor(state: &OrderState, candidates: &[(FloorSource, i64)]) -> TimeFloor {
    candidates.iter().fold(state.time_floor, |floor, (source, at)| floor.advance(*source, *at))
}

/// The state after applying `verified` (pure). A notice or drill never
/// lifts a suspension; only a resume does.
pub fn next_state(current: &OrderState, verified: &Verified, floor: TimeFloor) -> OrderState {
    let order = &verified.order;
    let mut next = current.clone();
    next.last_sequence = order.sequence;
    next.time_floor = floor.advance(FloorSource::AcceptedOrder, order.issued_at);
    next.last_clock = Some(verified.time.state);
    let shown = |state: ServiceState, deadline: Option<i64>, drill: bool| ServiceRecord {
        state,
        order_id: Some(order.id),
        sequence: Some(order.sequence),
        reason_ja: order.reason_ja.clone(),
        reason_en: order.reason_en.clone(),
        since: Some(verified.time.at),
        deadline,
        drill,
    };
    let suspended = current.service.state == ServiceState::Suspended;
    match &order.kind {
        OrderKind::Stop => next.service = shown(ServiceState::Suspended, None, false),
        OrderKind::Resume => next.service = shown(ServiceState::Normal, None, false),
        OrderKind::Notice if !suspended => {
            next.service = shown(ServiceState::Recommendation, order.deadline, false);
        }
        OrderKind::Drill if !suspended => next.service = shown(ServiceState::Drill, None, true),
        OrderKind::Notice | OrderKind::Drill => {}
        OrderKind::KeyRotation { new_key, retire } => {
            for key in &mut next.keys {
                if retire.contains(&trusted_key(key.public_key, false).id) {
                    key.retired = true;
                }
            }
            if !next.keys.iter().any(|k| &k.public_key == new_key) {
                next.keys.push(KeyRecord { public_key: *new_key, retired: false });
            }
        }
    }
    next
}

fn receipt_for(
    device: &OrderTarget,
    verified: &Verified,
    next: &OrderState,
    floor: TimeFloor,
) -> EnforcementReceipt {
    EnforcementReceipt {
        version: RECEIPT_VERSION,
        device: device.clone(),
        order_id: verified.order.id,
        sequence: verified.order.sequence,
        order_hash: verified.order_hash,
        applied_at: verified.time.at,
        device_clock: verified.time.reading.now,
        time_floor: floor.at,
        clock: match verified.time.state {
            ClockState::Trusted => ReceiptClock::Trusted,
            ClockState::Untrusted => ReceiptClock::Untrusted,
        },
        resulting_state: next.service.state,
        drill: matches!(verified.order.kind, OrderKind::Drill),
    }
}

fn clock_name(state: ClockState) -> &'static str {
    match state {
        ClockState::Trusted => "trusted",
        ClockState::Untrusted => "untrusted",
    }
}

fn record(audit: &dyn AuditSink, kind: AuditKind, at: i64, detail: serde_json::Value) {
    if let Err(e) = audit.append(kind, at, detail) {
        tracing::error!(error = %e, ?kind, "could not write the audit log");
    }
}

/// Writes the audit record of the last applied order if the crash window
/// (state saved, record not yet written) lost it: when the newest order
/// record in the log is older than `state.last_sequence`. The record is
/// marked `"recovered": true` and carries what the state still knows (the
/// receipt's order id, hash and time when it is that order's). Call it with
/// the state lock held. Returns whether a record was written. If rotation
/// has dropped every order record, the last order is recorded again as
/// recovered (once: afterwards the log has a record of it).
pub fn reconcile_audit(state: &OrderState, audit: &dyn AuditSink, at_unix: i64) -> bool {
    if state.last_sequence == 0 {
        return false;
    }
    let recorded = match audit.last_order_sequence() {
        Ok(recorded) => recorded,
        Err(e) => {
            tracing::error!(error = %e, "could not read the audit log to reconcile it with the order state");
            return false;
        }
    };
    if recorded.is_some_and(|s| s >= state.last_sequence) {
        return false;
    }
    let sequence = state.last_sequence;
    let receipt = state
        .last_receipt
        .as_ref()
        .and_then(|r| decode_receipt(&r.receipt_bytes).ok())
        .filter(|r| r.sequence == sequence);
    let mut detail = serde_json::json!({
        "recovered": true,
        "sequence": sequence,
        "note": "applied before a crash that lost its audit record; recorded at the next start",
        "state": state.service.state.as_str(),
        "drill": state.service.drill,
    });
    if let Some(receipt) = &receipt {
        detail["order_id"] = receipt.order_id.into();
        detail["order_hash"] = hex(&receipt.order_hash).into();
        detail["judged_at"] = receipt.applied_at.into();
    } else if state.service.sequence == Some(sequence) {
        detail["order_id"] = state.service.order_id.into();
    }
    tracing::warn!(sequence, "order applied without an audit record (crash); recorded as recovered");
    record(audit, AuditKind::Order, at_unix, detail);
    true
}

/// Loads the state, or makes the initial one for a device that has applied
/// no order yet (not written until an order is applied).
pub fn load_or_initial<S: Storage>(
    store: &StateStore<S>,
    initial_keys: &[[u8; 32]],
    floor_candidates: &[(FloorSource, i64)],
) -> Result<OrderState, StateError> {
    let loaded = store.load()?;
    if let Some(problem) = &loaded.recovered_from_previous {
        tracing::error!(path = %store.path().display(), %problem, "order state damaged; using the previous good version");
    }
    Ok(loaded.state.unwrap_or_else(|| {
        let fresh = OrderState::initial(initial_keys, TimeFloor::from_build_time(0));
        let floor = effective_floor(&fresh, floor_candidates);
        OrderState { time_floor: floor, ..fresh }
    }))
}

/// The stored receipt of the last applied order when `signed` is that very
/// order again (a replay with the same sequence and the same order hash, so
/// bytes this device verified before), else `None`.
fn redelivered_receipt(current: &OrderState, signed: &[u8], refusal: &Refusal) -> Option<SignedReceipt> {
    let Refusal::Replay { sequence, .. } = refusal else { return None };
    let stored = current.last_receipt.as_ref()?;
    let receipt = decode_receipt(&stored.receipt_bytes).ok()?;
    let envelope = decode_signed(signed).ok()?;
    let hash = ring::digest::digest(&ring::digest::SHA256, &envelope.order_bytes);
    (receipt.sequence == *sequence
        && *sequence == current.last_sequence
        && receipt.order_hash == hash.as_ref())
    .then(|| stored.clone())
}

/// Records a refused order in the audit log and says why it was refused;
/// the last applied order come again gets its stored receipt instead.
fn refusal(current: &OrderState, signed: &[u8], refused: Refused, audit: &dyn AuditSink) -> ApplyError {
    if let Some(receipt) = redelivered_receipt(current, signed, &refused.refusal) {
        let sequence = current.last_sequence;
        tracing::info!(sequence, "order redelivered after a lost acknowledgement; receipt sent again");
        record(
            audit,
            AuditKind::OrderRefused,
            refused.time.at,
            serde_json::json!({ "class": "already_applied", "sequence": sequence }),
        );
        return ApplyError::AlreadyApplied { sequence, receipt: Box::new(receipt) };
    }
    tracing::warn!(class = refused.refusal.class(), reason = %refused.refusal, "order refused");
    record(
        audit,
        AuditKind::OrderRefused,
        refused.time.at,
        serde_json::json!({
            "class": refused.refusal.class(),
            "reason": refused.refusal.to_string(),
            "clock": clock_name(refused.time.state),
            "judged_at": refused.time.at,
            "device_clock": refused.time.reading.now,
            "time_floor": refused.time.floor,
            "last_sequence": current.last_sequence,
        }),
    );
    ApplyError::Refused(refused)
}

/// Verifies and applies one signed order. See the module documentation.
pub fn apply_order<S: Storage>(
    store: &StateStore<S>,
    signed: &[u8],
    env: &ApplyEnv<'_>,
) -> Result<Applied, ApplyError> {
    let _lock = store.lock()?;
    let current = load_or_initial(store, env.initial_keys, env.floor_candidates)?;
    reconcile_audit(&current, env.audit, env.clock.now);
    let floor = effective_floor(&current, env.floor_candidates);
    let keys = current.trusted_keys();
    let ctx = VerifyContext {
        device: env.device,
        keys: &keys,
        last_applied_sequence: current.last_sequence,
        clock: env.clock,
        time_floor: floor.at,
    };
    let verified = match verify(signed, &ctx) {
        Ok(v) => v,
        Err(refused) => return Err(refusal(&current, signed, refused, env.audit)),
    };

    let mut next = next_state(&current, &verified, floor);
    let (receipt, receipt_problem) = match env.signer {
        Some(receipt_signer) => {
            match receipt_signer.sign(&receipt_for(env.device, &verified, &next, next.time_floor)) {
                Ok(receipt) => (Some(receipt), None),
                Err(e) => (None, Some(e.to_string())),
            }
        }
        None => (None, Some("no institution certificate is installed to sign the receipt".to_owned())),
    };
    next.last_receipt.clone_from(&receipt);
    if let Err(e) = store.save(&next) {
        // A failure after the rename (the directory fsync) leaves the new
        // state in place: then it is enforced like any persisted state.
        let landed = store.load().ok().and_then(|l| l.state).is_some_and(|s| s == next);
        if !landed {
            return Err(e.into());
        }
        tracing::warn!(error = %e, "order state written but its directory not synced; enforcing it");
    }

    let order = &verified.order;
    let at = verified.time.at;
    let mut detail = serde_json::json!({
            "order_id": order.id,
            "sequence": order.sequence,
            "kind": kind_name(&order.kind),
            "key_id": hex(&verified.key_id),
            "order_hash": hex(&verified.order_hash),
            "clock": clock_name(verified.time.state),
            "judged_at": at,
            "device_clock": verified.time.reading.now,
            "time_floor": next.time_floor.at,
            "state": next.service.state.as_str(),
            "drill": next.service.drill,
            "reason_ja": order.reason_ja,
            "reason_en": order.reason_en,
    });
    if let OrderKind::KeyRotation { new_key, retire } = &order.kind {
        detail["new_key_id"] = hex(&trusted_key(*new_key, false).id).into();
        detail["retired_key_ids"] = retire.iter().map(|id| hex(id)).collect::<Vec<_>>().into();
    }
    record(env.audit, AuditKind::Order, at, detail);
    let blocked = next.service.blocks_forwarding();
    let enforced = enforce(env.firewall, env.plan, blocked);
    record(
        env.audit,
        AuditKind::Enforcement,
        at,
        serde_json::json!({
            "sequence": order.sequence,
            "blocked": blocked,
            "ok": enforced.is_ok(),
            "error": enforced.as_ref().err().map(ToString::to_string),
        }),
    );
    enforced.map_err(|error| ApplyError::Enforce { sequence: order.sequence, error })?;
    tracing::info!(
        sequence = order.sequence,
        kind = kind_name(&order.kind),
        state = next.service.state.as_str(),
        "order applied"
    );
    Ok(Applied { verified, state: next, receipt, receipt_problem })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::Path;

    use cpe_common::durable::{FaultyStorage, OsStorage};
    use cpe_protocol::order::{encode_signed, signed_message, Order, SignedOrder, ORDER_VERSION};
    use cpe_protocol::receipt::{decode_receipt, receipt_signed_message};
    use cpe_provision::order_keys::{sign, OrderSigningKey};
    use ring::signature::{Ed25519KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
    use rustls::pki_types::PrivateKeyDer;

    use super::*;
    use crate::orders::firewall::fake::{Call, FakeFirewall};
    use crate::orders::verify::TimeBasis;

    const DAY: i64 = 86_400;
    /// 2027-01-01T00:00:00Z: the build time in these tests.
    const BUILD: i64 = 1_798_761_600;
    const T: i64 = BUILD + 10 * DAY;
    const Y2090: i64 = 3_786_912_000;

    #[derive(Default)]
    struct Recorder(RefCell<Vec<(AuditKind, serde_json::Value)>>);

    impl AuditSink for Recorder {
        fn append(&self, kind: AuditKind, _at: i64, detail: serde_json::Value) -> Result<(), String> {
            self.0.borrow_mut().push((kind, detail));
            Ok(())
        }

        fn last_order_sequence(&self) -> Result<Option<u64>, String> {
            let log = self.0.borrow();
            Ok(log
                .iter()
                .rev()
                .find(|(k, _)| *k == AuditKind::Order)
                .and_then(|(_, d)| d["sequence"].as_u64()))
        }
    }

    impl Recorder {
        fn events(&self) -> Vec<AuditKind> {
            self.0.borrow().iter().map(|(e, _)| *e).collect()
        }
    }

    fn device() -> OrderTarget {
        OrderTarget { institution_code: "1312345678".into(), device: "main".into() }
    }

    fn order(kind: OrderKind, sequence: u64, issued_at: i64) -> Order {
        Order {
            version: ORDER_VERSION,
            id: 100 + sequence,
            target: device(),
            kind,
            sequence,
            issued_at,
            not_before: issued_at,
            expires_at: issued_at + DAY,
            reason_ja: "是正されませんでした".into(),
            reason_en: "not corrected".into(),
            deadline: None,
        }
    }

    fn signed(o: &Order, key: &OrderSigningKey) -> Vec<u8> {
        encode_signed(&sign(o, key).unwrap()).unwrap()
    }

    /// Signs arbitrary bytes as order bytes (for signed garbage).
    fn signed_raw(order_bytes: Vec<u8>, key: &OrderSigningKey) -> Vec<u8> {
        let pair = Ed25519KeyPair::from_pkcs8(key.pkcs8_der()).unwrap();
        let signature = pair.sign(&signed_message(&order_bytes)).as_ref().to_vec();
        encode_signed(&SignedOrder { key_id: key.key_id(), order_bytes, signature }).unwrap()
    }

    fn trusted(now: i64) -> ClockReading {
        ClockReading { now, state: ClockState::Trusted }
    }

    fn untrusted(now: i64) -> ClockReading {
        ClockReading { now, state: ClockState::Untrusted }
    }

    struct World {
        dir: tempfile::TempDir,
        key: OrderSigningKey,
        firewall: FakeFirewall,
        audit: Recorder,
        signer: ReceiptSigner,
        device_public: Vec<u8>,
        plan: BlockPlan,
    }

    impl World {
        fn new() -> Self {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let der = PrivateKeyDer::try_from(pair.serialize_der()).unwrap();
            Self {
                dir: tempfile::tempdir().unwrap(),
                key: OrderSigningKey::generate().unwrap(),
                firewall: FakeFirewall::default(),
                audit: Recorder::default(),
                signer: ReceiptSigner::new(&der).unwrap(),
                device_public: pair.public_key_raw().to_vec(),
                plan: BlockPlan { lan: vec!["br-lan".into()], wan: vec!["wan0".into()], notice: Vec::new() },
            }
        }

        fn store(&self) -> StateStore<OsStorage> {
            StateStore::new(OsStorage, self.dir.path())
        }

        fn apply_with<S: Storage>(
            &self,
            store: &StateStore<S>,
            bytes: &[u8],
            clock: ClockReading,
        ) -> Result<Applied, ApplyError> {
            let dev = device();
            let env = ApplyEnv {
                device: &dev,
                clock,
                floor_candidates: &[(FloorSource::BuildTime, BUILD)],
                initial_keys: &[self.key.public_key()],
                plan: &self.plan,
                firewall: &self.firewall,
                signer: Some(&self.signer),
                audit: &self.audit,
            };
            apply_order(store, bytes, &env)
        }

        fn apply(&self, bytes: &[u8], clock: ClockReading) -> Result<Applied, ApplyError> {
            self.apply_with(&self.store(), bytes, clock)
        }

        fn files(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
            let read = |p: &Path| std::fs::read(p).ok();
            (read(&self.store().path()), read(&self.store().previous_path()))
        }

        fn state(&self) -> OrderState {
            self.store().load().unwrap().state.unwrap()
        }

        fn check_receipt(&self, receipt: &SignedReceipt) -> EnforcementReceipt {
            assert_eq!(receipt.scheme, 0x0403);
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.device_public)
                .verify(&receipt_signed_message(&receipt.receipt_bytes), &receipt.signature)
                .unwrap();
            decode_receipt(&receipt.receipt_bytes).unwrap()
        }
    }

    #[test]
    fn stop_is_persisted_enforced_audited_and_receipted() {
        let w = World::new();
        let bytes = signed(&order(OrderKind::Stop, 1, T), &w.key);
        let applied = w.apply(&bytes, trusted(T + 30)).unwrap();
        assert_eq!(applied.state, w.state(), "the returned state is the persisted one");
        let state = w.state();
        assert_eq!(state.last_sequence, 1);
        assert_eq!(state.service.state, ServiceState::Suspended);
        assert_eq!(state.service.since, Some(T + 30));
        assert_eq!(state.time_floor, TimeFloor { at: T, source: FloorSource::AcceptedOrder });
        assert_eq!(state.last_clock, Some(ClockState::Trusted));
        assert_eq!(state.keys.len(), 1, "the provisioned key was taken on first use");
        assert!(w.firewall.blocked());
        assert_eq!(w.audit.events(), vec![AuditKind::Order, AuditKind::Enforcement]);
        let receipt = w.check_receipt(applied.receipt.as_ref().unwrap());
        assert_eq!(receipt.sequence, 1);
        assert_eq!(receipt.order_id, 101);
        assert_eq!(receipt.order_hash, applied.verified.order_hash);
        assert_eq!(receipt.resulting_state, ServiceState::Suspended);
        assert_eq!(receipt.clock, ReceiptClock::Trusted);
        assert_eq!(receipt.applied_at, T + 30);
        assert!(!receipt.drill);
        assert_eq!(state.last_receipt, applied.receipt);
    }

    #[test]
    fn resume_lifts_the_block_and_an_old_stop_replayed_after_it_changes_nothing() {
        let w = World::new();
        let stop = signed(&order(OrderKind::Stop, 1, T), &w.key);
        w.apply(&stop, trusted(T + 1)).unwrap();
        let applied =
            w.apply(&signed(&order(OrderKind::Resume, 2, T + 60), &w.key), trusted(T + 61)).unwrap();
        assert_eq!(w.state().service.state, ServiceState::Normal);
        assert_eq!(w.firewall.calls.borrow().last(), Some(&Call::Remove));
        assert_eq!(w.check_receipt(applied.receipt.as_ref().unwrap()).resulting_state, ServiceState::Normal);
        let before = (w.files(), w.firewall.calls.borrow().len());
        let err = w.apply(&stop, trusted(T + 120)).unwrap_err();
        assert_eq!(err.class(), "replay");
        assert_eq!((w.files(), w.firewall.calls.borrow().len()), before);
        assert_eq!(w.state().service.state, ServiceState::Normal);
    }

    #[test]
    fn the_last_order_redelivered_gets_its_receipt_again_and_changes_nothing() {
        let w = World::new();
        let stop = signed(&order(OrderKind::Stop, 1, T), &w.key);
        let applied = w.apply(&stop, trusted(T + 1)).unwrap();
        let before = (w.files(), w.firewall.calls.borrow().len());
        match w.apply(&stop, trusted(T + 200)).unwrap_err() {
            ApplyError::AlreadyApplied { sequence, receipt } => {
                assert_eq!(sequence, 1);
                assert_eq!(Some(*receipt), applied.receipt, "the receipt signed when it was applied");
            }
            other => panic!("expected already_applied, got {other}"),
        }
        assert_eq!((w.files(), w.firewall.calls.borrow().len()), before, "nothing changed");
        assert_eq!(w.audit.events().last(), Some(&AuditKind::OrderRefused));
        // A different order with the same (used) sequence is a replay, not a redelivery.
        let other_stop = signed(&order(OrderKind::Drill, 1, T), &w.key);
        assert_eq!(w.apply(&other_stop, trusted(T + 201)).unwrap_err().class(), "replay");
        // Once a later order is applied, the old one is a plain replay.
        w.apply(&signed(&order(OrderKind::Resume, 2, T + 60), &w.key), trusted(T + 61)).unwrap();
        assert_eq!(w.apply(&stop, trusted(T + 202)).unwrap_err().class(), "replay");
    }

    /// Every refusal class through the pipeline: state file bytes, previous
    /// version, firewall calls and sequence unchanged; the refusal audited.
    #[test]
    fn every_refusal_class_changes_nothing() {
        let w = World::new();
        let other = OrderSigningKey::generate().unwrap();
        // Establish state: sequence 3, suspended, then rotate so `retired` is retired.
        let retired = OrderSigningKey::generate().unwrap();
        w.apply(&signed(&order(OrderKind::Stop, 1, T), &w.key), trusted(T)).unwrap();
        let add = OrderKind::KeyRotation { new_key: retired.public_key(), retire: vec![] };
        w.apply(&signed(&order(add, 2, T), &w.key), trusted(T)).unwrap();
        let drop = OrderKind::KeyRotation { new_key: w.key.public_key(), retire: vec![retired.key_id()] };
        w.apply(&signed(&order(drop, 3, T), &w.key), trusted(T)).unwrap();
        assert_eq!(w.state().last_sequence, 3);

        let good = signed(&order(OrderKind::Resume, 4, T + 60), &w.key);
        let mut bad_signature = decode_signed(&good).unwrap();
        bad_signature.signature[0] ^= 1;
        let mut v2 = order(OrderKind::Resume, 4, T);
        v2.version = 2;
        let drill = order(OrderKind::Drill, 4, T);
        let mut unknown_kind = postcard::to_stdvec(&drill).unwrap();
        let tag_at = 1 + 1 + postcard::to_stdvec(&drill.target).unwrap().len();
        assert_eq!(unknown_kind[tag_at], 4);
        unknown_kind[tag_at] = 7;
        let mut elsewhere = order(OrderKind::Resume, 4, T);
        elsewhere.target.device = "cpe-2".into();
        let mut scheduled = order(OrderKind::Resume, 4, T);
        scheduled.not_before = T + DAY / 2;

        let cases: Vec<(&str, Vec<u8>, ClockReading)> = vec![
            ("too_large", vec![0; 9000], trusted(T + 60)),
            ("truncated", good[..good.len() - 3].to_vec(), trusted(T + 60)),
            ("garbage", vec![0xff; 40], trusted(T + 60)),
            ("unknown_version", signed_raw(postcard::to_stdvec(&v2).unwrap(), &w.key), trusted(T + 60)),
            ("unknown_kind", signed_raw(unknown_kind, &w.key), trusted(T + 60)),
            ("unknown_key", signed(&order(OrderKind::Resume, 4, T), &other), trusted(T + 60)),
            ("retired_key", signed(&order(OrderKind::Resume, 4, T), &retired), trusted(T + 60)),
            ("bad_signature", encode_signed(&bad_signature).unwrap(), trusted(T + 60)),
            ("wrong_device", signed(&elsewhere, &w.key), trusted(T + 60)),
            ("replay", signed(&order(OrderKind::Resume, 3, T), &w.key), trusted(T + 60)),
            ("expired", signed(&order(OrderKind::Resume, 4, T), &w.key), trusted(T + DAY + 1)),
            ("not_yet_valid", signed(&scheduled, &w.key), trusted(T + 60)),
        ];
        for (class, bytes, clock) in cases {
            let files = w.files();
            let calls = w.firewall.calls.borrow().len();
            let audited = w.audit.0.borrow().len();
            let err = w.apply(&bytes, clock).unwrap_err();
            assert_eq!(err.class(), class, "{err}");
            assert!(matches!(err, ApplyError::Refused(_)));
            assert_eq!(w.files(), files, "{class}: state files unchanged");
            assert_eq!(w.firewall.calls.borrow().len(), calls, "{class}: firewall untouched");
            assert_eq!(w.state().last_sequence, 3, "{class}");
            assert_eq!(w.state().service.state, ServiceState::Suspended, "{class}");
            let log = w.audit.0.borrow();
            assert_eq!(log.len(), audited + 1, "{class}: one audit record");
            assert_eq!(log[audited].0, AuditKind::OrderRefused);
            assert_eq!(log[audited].1["class"], class);
            assert_eq!(log[audited].1["clock"], "trusted");
        }
        // The good one still applies afterwards.
        w.apply(&good, trusted(T + 60)).unwrap();
        assert_eq!(w.state().service.state, ServiceState::Normal);
    }

    #[test]
    fn stop_takes_effect_on_an_untrusted_1970_clock() {
        let w = World::new();
        let applied = w.apply(&signed(&order(OrderKind::Stop, 1, T), &w.key), untrusted(0)).unwrap();
        assert_eq!(applied.verified.time.basis, TimeBasis::IssuedAt);
        let receipt = w.check_receipt(applied.receipt.as_ref().unwrap());
        assert_eq!(receipt.clock, ReceiptClock::Untrusted);
        assert_eq!(receipt.applied_at, T);
        assert_eq!(receipt.device_clock, 0);
        assert_eq!(w.state().last_clock, Some(ClockState::Untrusted));
        assert!(w.firewall.blocked());
        // An order that expired before the persisted floor is refused even on a 1970 clock.
        let stale = signed(&order(OrderKind::Resume, 2, T - 2 * DAY), &w.key);
        let err = w.apply(&stale, untrusted(0)).unwrap_err();
        assert_eq!(err.class(), "expired");
        assert!(w.firewall.blocked());
    }

    #[test]
    fn far_future_clock_does_not_lock_out_resume() {
        let w = World::new();
        w.apply(&signed(&order(OrderKind::Stop, 1, T), &w.key), trusted(T)).unwrap();
        for (seq, clock) in [(2, trusted(Y2090)), (4, untrusted(Y2090))] {
            w.apply(&signed(&order(OrderKind::Stop, seq, T + 60), &w.key), trusted(T + 60)).unwrap();
            assert!(w.firewall.blocked());
            let resume = signed(&order(OrderKind::Resume, seq + 1, T + 120), &w.key);
            let applied = w.apply(&resume, clock).unwrap();
            assert_eq!(applied.verified.time.state, ClockState::Untrusted);
            assert_eq!(w.state().service.state, ServiceState::Normal);
            assert!(!w.firewall.blocked());
            // The floor did not follow the wild clock.
            assert_eq!(w.state().time_floor.at, T + 120);
        }
    }

    #[test]
    fn notice_shows_a_deadline_but_never_lifts_a_suspension() {
        let w = World::new();
        let mut notice = order(OrderKind::Notice, 1, T);
        notice.deadline = Some(T + 14 * DAY);
        let applied = w.apply(&signed(&notice, &w.key), trusted(T)).unwrap();
        assert_eq!(applied.state.service.state, ServiceState::Recommendation);
        assert_eq!(applied.state.service.deadline, Some(T + 14 * DAY));
        assert!(!w.firewall.blocked());
        w.apply(&signed(&order(OrderKind::Stop, 2, T), &w.key), trusted(T)).unwrap();
        for (seq, kind) in [(3, OrderKind::Notice), (4, OrderKind::Drill)] {
            let applied = w.apply(&signed(&order(kind, seq, T), &w.key), trusted(T)).unwrap();
            assert_eq!(applied.state.service.state, ServiceState::Suspended);
            assert_eq!(applied.state.service.sequence, Some(2));
            assert!(w.firewall.blocked());
        }
    }

    #[test]
    fn drill_is_acknowledged_as_enforced_without_blocking() {
        let w = World::new();
        let applied = w.apply(&signed(&order(OrderKind::Drill, 1, T), &w.key), trusted(T)).unwrap();
        assert_eq!(applied.state.service.state, ServiceState::Drill);
        assert!(applied.state.service.drill);
        assert_eq!(w.firewall.calls.borrow().as_slice(), &[Call::Remove]);
        let receipt = w.check_receipt(applied.receipt.as_ref().unwrap());
        assert!(receipt.drill);
        assert_eq!(receipt.resulting_state, ServiceState::Drill);
        assert_eq!(w.audit.0.borrow()[0].1["drill"], true);
    }

    #[test]
    fn key_rotation_trusts_the_new_key_and_retires_the_old() {
        let w = World::new();
        let new = OrderSigningKey::generate().unwrap();
        let rotation = OrderKind::KeyRotation { new_key: new.public_key(), retire: vec![w.key.key_id()] };
        w.apply(&signed(&order(rotation, 1, T), &w.key), trusted(T)).unwrap();
        let keys = w.state().keys;
        assert_eq!(keys.len(), 2);
        let audited = w.audit.0.borrow()[0].1.clone();
        assert_eq!(audited["new_key_id"], hex(&new.key_id()));
        assert_eq!(audited["retired_key_ids"], serde_json::json!([hex(&w.key.key_id())]));
        assert!(keys[0].retired && !keys[1].retired);
        assert_eq!(
            w.apply(&signed(&order(OrderKind::Stop, 2, T), &w.key), trusted(T)).unwrap_err().class(),
            "retired_key"
        );
        w.apply(&signed(&order(OrderKind::Stop, 2, T), &new), trusted(T)).unwrap();
        assert!(w.firewall.blocked());
    }

    /// Every sequence of stops, resumes and key rotations (signed by any of
    /// three carrier keys, rotating to any of them, retiring any subset of
    /// them), explored as the closure of the reachable key and service
    /// states, so sequences of any length are covered. In every reachable
    /// state a key is active and a resume is accepted, and no transition
    /// re-activated a retired key.
    #[test]
    fn every_rotation_sequence_leaves_a_resume_possible() {
        let keys: Vec<OrderSigningKey> = (0..3).map(|_| OrderSigningKey::generate().unwrap()).collect();
        let ids: Vec<_> = keys.iter().map(OrderSigningKey::key_id).collect();
        let mut kinds = vec![OrderKind::Stop, OrderKind::Resume];
        for new in &keys {
            for mask in 0..8u8 {
                let retire =
                    ids.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, id)| *id).collect();
                kinds.push(OrderKind::KeyRotation { new_key: new.public_key(), retire });
            }
        }
        let dev = device();
        let apply = |state: &OrderState, kind: &OrderKind, by: &OrderSigningKey| -> Option<OrderState> {
            let bytes = signed(&order(kind.clone(), state.last_sequence + 1, T), by);
            let trusted_keys = state.trusted_keys();
            let ctx = VerifyContext {
                device: &dev,
                keys: &trusted_keys,
                last_applied_sequence: state.last_sequence,
                clock: trusted(T),
                time_floor: state.time_floor.at,
            };
            let verified = verify(&bytes, &ctx).ok()?;
            Some(next_state(state, &verified, state.time_floor))
        };
        let shape = |s: &OrderState| {
            let mut k: Vec<_> = s.keys.iter().map(|k| (k.public_key, k.retired)).collect();
            k.sort_unstable();
            (k, s.service.state.as_str())
        };
        let initial = OrderState::initial(&[keys[0].public_key()], TimeFloor::from_build_time(BUILD));
        let mut seen = std::collections::HashSet::from([shape(&initial)]);
        let mut todo = vec![initial];
        let mut transitions = 0;
        while let Some(state) = todo.pop() {
            assert!(state.keys.iter().any(|k| !k.retired), "no active key left: {:?}", shape(&state));
            let resumed = keys.iter().find_map(|k| apply(&state, &OrderKind::Resume, k));
            assert_eq!(
                resumed.map(|s| s.service.state),
                Some(ServiceState::Normal),
                "no resume accepted in {:?}",
                shape(&state)
            );
            for by in &keys {
                for kind in &kinds {
                    let Some(next) = apply(&state, kind, by) else { continue };
                    transitions += 1;
                    for retired in state.keys.iter().filter(|k| k.retired) {
                        assert!(
                            next.keys.iter().any(|k| k.public_key == retired.public_key && k.retired),
                            "{kind:?} re-activated a retired key"
                        );
                    }
                    if seen.insert(shape(&next)) {
                        todo.push(next);
                    }
                }
            }
        }
        assert!(seen.len() >= 20 && transitions > 300, "{} states, {transitions} transitions", seen.len());
    }

    /// The rotation that stranded a suspended router: signed back to a
    /// retired key while suspended. Refused, nothing changed, resumable.
    #[test]
    fn a_rotation_back_to_a_retired_key_is_refused_and_the_router_stays_resumable() {
        let w = World::new();
        let second = OrderSigningKey::generate().unwrap();
        w.apply(&signed(&order(OrderKind::Stop, 1, T), &w.key), trusted(T)).unwrap();
        let forward = OrderKind::KeyRotation { new_key: second.public_key(), retire: vec![w.key.key_id()] };
        w.apply(&signed(&order(forward, 2, T), &w.key), trusted(T)).unwrap();
        let back = OrderKind::KeyRotation { new_key: w.key.public_key(), retire: vec![second.key_id()] };
        let before = w.files();
        let err = w.apply(&signed(&order(back, 3, T), &second), trusted(T)).unwrap_err();
        assert_eq!(err.class(), "unsafe_key_rotation", "{err}");
        assert!(err.to_string().contains("never re-activated"), "{err}");
        assert_eq!(w.files(), before, "nothing changed");
        w.apply(&signed(&order(OrderKind::Resume, 3, T), &second), trusted(T)).unwrap();
        assert!(!w.firewall.blocked());
    }

    /// The crash window of issue 19: the state is saved, then the process
    /// dies (a panic here, a SIGKILL in the field) before the audit record.
    #[test]
    fn an_order_applied_just_before_a_crash_is_audited_as_recovered_at_the_next_start() {
        struct KilledBeforeTheRecord;
        impl AuditSink for KilledBeforeTheRecord {
            fn append(&self, kind: AuditKind, _: i64, _: serde_json::Value) -> Result<(), String> {
                assert_ne!(kind, AuditKind::Order, "killed before the order record");
                Ok(())
            }
            fn last_order_sequence(&self) -> Result<Option<u64>, String> {
                Ok(None)
            }
        }
        let w = World::new();
        let stop = signed(&order(OrderKind::Stop, 1, T), &w.key);
        let dev = device();
        let public = [w.key.public_key()];
        let crashing = ApplyEnv {
            device: &dev,
            clock: trusted(T),
            floor_candidates: &[],
            initial_keys: &public,
            plan: &w.plan,
            firewall: &w.firewall,
            signer: Some(&w.signer),
            audit: &KilledBeforeTheRecord,
        };
        let store = w.store();
        let crashed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply_order(&store, &stop, &crashing)));
        assert!(crashed.is_err(), "the apply died in the window");
        let state = w.state();
        assert_eq!(state.last_sequence, 1, "the state was saved");

        let log = AuditLog::new(w.dir.path());
        assert_eq!(log.last_order_sequence().unwrap(), None, "no record of it");
        assert!(reconcile_audit(&state, &log, T + 5));
        let recovered = log.last_of_kind(AuditKind::Order).unwrap().unwrap();
        assert_eq!(recovered["recovered"], true);
        assert_eq!(recovered["sequence"], 1);
        assert_eq!(recovered["order_id"], 101);
        assert_eq!(recovered["state"], "suspended");
        let receipt = decode_receipt(&state.last_receipt.unwrap().receipt_bytes).unwrap();
        assert_eq!(recovered["order_hash"], hex(&receipt.order_hash));
        // Once recorded, a later start writes nothing more.
        assert!(!reconcile_audit(&w.state(), &log, T + 6));
        // An apply reconciles first too: a crash-lost record is written before the next order's.
        let second = AuditLog::new(&w.dir.path().join("other"));
        let env = ApplyEnv { audit: &second, ..crashing };
        apply_order(&store, &signed(&order(OrderKind::Resume, 2, T), &w.key), &env).unwrap();
        let exported = w.dir.path().join("export");
        second.export(&OsStorage, &exported, T).unwrap();
        let text = std::fs::read_to_string(&exported).unwrap();
        let recovered_at = text.find("\"recovered\":true").expect("recovered record");
        assert!(recovered_at < text.find("\"sequence\":2").unwrap(), "{text}");
    }

    #[test]
    fn the_state_is_durable_before_enforcement() {
        let mut w = World::new();
        w.firewall.fail = true;
        let err = w.apply(&signed(&order(OrderKind::Stop, 1, T), &w.key), trusted(T)).unwrap_err();
        assert!(matches!(err, ApplyError::Enforce { sequence: 1, .. }), "{err}");
        assert_eq!(w.state().service.state, ServiceState::Suspended, "apply-state will enforce it");
        assert_eq!(w.state().last_sequence, 1);
        assert_eq!(w.audit.0.borrow().last().unwrap().1["ok"], false);
    }

    /// A fault at every storage step of an apply: either nothing changed
    /// and nothing was enforced, or the state that landed is enforced.
    #[test]
    fn a_failed_state_write_enforces_nothing_or_the_state_that_landed() {
        let w = World::new();
        w.apply(&signed(&order(OrderKind::Notice, 1, T), &w.key), trusted(T)).unwrap();
        let before = w.state();
        let stop = signed(&order(OrderKind::Stop, 2, T), &w.key);
        let (mut refused, mut applied) = (0, 0);
        for step in 0..12 {
            w.store().save(&before).unwrap();
            let calls = w.firewall.calls.borrow().len();
            let store = StateStore::new(FaultyStorage::new(OsStorage, Some(step)), w.dir.path());
            match w.apply_with(&store, &stop, trusted(T)) {
                Err(ApplyError::State(_)) => {
                    refused += 1;
                    assert_eq!(w.state(), before, "step {step}: nothing changed");
                    assert_eq!(w.firewall.calls.borrow().len(), calls, "step {step}: nothing enforced");
                }
                Ok(done) => {
                    applied += 1;
                    assert_eq!(w.state(), done.state, "step {step}");
                    assert_eq!(w.state().last_sequence, 2, "step {step}");
                    assert!(w.firewall.blocked(), "step {step}: what landed is enforced");
                }
                Err(other) => panic!("step {step}: {other}"),
            }
        }
        assert!(refused >= 5 && applied >= 2, "refused {refused}, applied {applied}");
    }

    #[test]
    fn concurrent_applies_of_one_order_apply_it_once() {
        let w = World::new();
        let stop = signed(&order(OrderKind::Stop, 1, T), &w.key);
        let public = [w.key.public_key()];
        let (dir, plan) = (w.dir.path().to_owned(), w.plan.clone());
        let applied = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let (firewall, audit, dev) = (FakeFirewall::default(), Recorder::default(), device());
                        let env = ApplyEnv {
                            device: &dev,
                            clock: trusted(T),
                            floor_candidates: &[],
                            initial_keys: &public,
                            plan: &plan,
                            firewall: &firewall,
                            signer: None,
                            audit: &audit,
                        };
                        apply_order(&StateStore::new(OsStorage, &dir), &stop, &env)
                            .map(|_| ())
                            .map_err(|e| e.class())
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect::<Vec<_>>()
        });
        assert_eq!(applied.iter().filter(|r| r.is_ok()).count(), 1, "{applied:?}");
        assert!(applied.iter().all(|r| *r == Ok(()) || *r == Err("replay")), "{applied:?}");
    }

    #[test]
    fn without_an_identity_the_order_applies_without_a_receipt() {
        let w = World::new();
        let dev = device();
        let env = ApplyEnv {
            device: &dev,
            clock: trusted(T),
            floor_candidates: &[],
            initial_keys: &[w.key.public_key()],
            plan: &w.plan,
            firewall: &w.firewall,
            signer: None,
            audit: &w.audit,
        };
        let applied = apply_order(&w.store(), &signed(&order(OrderKind::Stop, 1, T), &w.key), &env).unwrap();
        assert!(applied.receipt.is_none());
        assert!(applied.receipt_problem.unwrap().contains("certificate"));
        assert!(w.firewall.blocked());
    }

    #[test]
    fn next_state_is_pure_and_keeps_the_floor_monotonic() {
        let w = World::new();
        let state = OrderState::initial(
            &[w.key.public_key()],
            TimeFloor { at: T + DAY, source: FloorSource::CarrierSigned },
        );
        let store = w.store();
        store.save(&state).unwrap();
        // Issued before the floor but still valid: the floor stays.
        let mut o = order(OrderKind::Stop, 1, T);
        o.expires_at = T + 3 * DAY;
        let applied = w.apply(&signed(&o, &w.key), untrusted(0)).unwrap();
        assert_eq!(applied.state.time_floor, TimeFloor { at: T + DAY, source: FloorSource::CarrierSigned });
    }
}
