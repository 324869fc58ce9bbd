//! The pure verifier of compliance orders: bytes in, a decision out.
//!
//! This module owns the rules that decide whether a signed order may be
//! applied. It reads no file and no clock: the caller passes this device's
//! identity, the trusted order keys, the last applied sequence number, a
//! [`ClockReading`] and the persisted [`TimeFloor`]. A refusal changes
//! nothing; the caller records and reports it.
//!
//! # Order of checks
//!
//! 1. Envelope decode (size limits) → [`Refusal::TooLarge`],
//!    [`Refusal::Truncated`], [`Refusal::Garbage`].
//! 2. Key lookup by id → [`Refusal::UnknownKey`].
//! 3. Ed25519 signature over the exact received bytes (with the domain
//!    prefix) → [`Refusal::BadSignature`]. Nothing inside the order is
//!    parsed before this.
//! 4. Retired key (genuinely signed by a key the carrier retired: worth an
//!    alert) → [`Refusal::RetiredKey`].
//! 5. Order decode → [`Refusal::UnknownVersion`], [`Refusal::UnknownKind`],
//!    [`Refusal::Truncated`], [`Refusal::Garbage`].
//! 6. Target → [`Refusal::WrongDevice`].
//! 7. Sequence strictly above the last applied one → [`Refusal::Replay`].
//!    This, not time, is what orders and de-duplicates orders: an old stop
//!    replayed after a resume is refused whatever the clock says.
//! 8. Validity window against the judged time → [`Refusal::NotYetValid`],
//!    [`Refusal::Expired`]; on an untrusted clock, an issue time more than
//!    [`MAX_UNTRUSTED_ISSUE_AGE_SECS`] below the floor → [`Refusal::Stale`].
//! 9. Key rotation → [`Refusal::UnsafeKeyRotation`] when it would re-activate
//!    a retired key or retire its own new key.
//!
//! # Keys and resumability
//!
//! A suspended device must always stay resumable by the carrier. So every
//! accepted key rotation leaves its new key active: a rotation naming a
//! retired key as the new one is refused (a retired key may be compromised;
//! it is never re-activated silently), and so is one that retires its own
//! new key. The device therefore always has at least one active key. And the
//! sequence number [`u64::MAX`] is refused ([`Refusal::SequenceExhausted`]),
//! because no order could follow it, not even a resume.
//!
//! # Time rules
//!
//! A router has no RTC: it may boot in 1970 or be pushed far ahead. The
//! verifier never trusts the clock further than it can check it, and every
//! decision carries a [`TimeJudgement`] saying which clock state and which
//! time it judged against.
//!
//! - **Lower bound.** `lower = max(time_floor, order.issued_at)`. The floor
//!   only ever holds times from trusted sources, and `issued_at` is signed by
//!   the carrier, so the true time is at least `lower` once the signature
//!   has been verified.
//! - **Trusted clock.** A clock reported [`ClockState::Trusted`] is used if
//!   it is plausible: not behind the floor and not more than
//!   [`MAX_CLOCK_LEAD_SECS`] ahead of `lower`. The judged time is then
//!   `max(now, lower)` (a trusted clock a few seconds behind the carrier does
//!   not make a fresh order "not yet valid").
//! - **Untrusted or implausible clock.** The order is judged against
//!   `lower`, and the decision records [`ClockState::Untrusted`]. So a stop
//!   issued after the floor takes effect on a device that believes it is
//!   1970, and a clock that jumped to 2090 cannot expire a resume: both are
//!   judged against the carrier's own signed issue time.
//! - **The price**, accepted on purpose: with an untrusted clock, expiry is
//!   judged against a lower bound of the true time, so an order delivered
//!   late may still be applied. It must still be genuinely signed for this
//!   device and carry a sequence above every order applied so far, so no
//!   replay becomes possible; and once the clock is trusted again, or the
//!   floor has moved past it, it expires normally. To bound how late, an
//!   order judged on an untrusted clock whose issue time lies more than
//!   [`MAX_UNTRUSTED_ISSUE_AGE_SECS`] below the floor is refused as stale
//!   (the floor is only raised by trusted times, so a fresh order is never
//!   that far below it).
//! - A scheduled order (`not_before` after `issued_at`) on an untrusted
//!   clock stays "not yet valid" until the clock is trusted or the floor
//!   (e.g. a later carrier-signed timestamp) reaches `not_before`.

use cpe_common::hex::encode as hex;
use cpe_protocol::order::{
    decode_order, decode_signed, signed_message, KeyId, Order, OrderDecodeError, OrderKind, OrderTarget,
};
use ring::signature::{UnparsedPublicKey, ED25519};

/// How far (seconds) a "trusted" clock may run ahead of the lower bound
/// `max(time_floor, issued_at)` before it is treated as untrusted: 30 days.
/// Orders are short-lived (hours to days), so a clock this far ahead of the
/// carrier's signed issue time is far more likely wrong (a bad RTC, a spoofed
/// time server) than an order delivered a month late.
pub const MAX_CLOCK_LEAD_SECS: i64 = 30 * 86_400;

/// How far (seconds) below the trusted-time floor the issue time of an order
/// judged on an untrusted clock may lie: 30 days. Orders are valid 7 days by
/// default (at most 365), and the floor only holds times known to have
/// passed, so an order issued this long before it was kept back, not
/// delivered late by a slow line.
pub const MAX_UNTRUSTED_ISSUE_AGE_SECS: i64 = 30 * 86_400;

/// Whether the device's clock is believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockState {
    /// Synchronised (e.g. NTS/NTP) or confirmed by the carrier.
    Trusted,
    /// Not (yet) synchronised: after boot without RTC, after a jump.
    Untrusted,
}

/// One reading of the device clock, injected by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockReading {
    /// The clock's idea of now (unix seconds).
    pub now: i64,
    /// Whether it is believed.
    pub state: ClockState,
}

/// What the judged time was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBasis {
    /// The device clock.
    Clock,
    /// The persisted trusted-time floor.
    Floor,
    /// The order's carrier-signed `issued_at`.
    IssuedAt,
}

/// Which clock state and which time a decision was judged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeJudgement {
    /// The clock reading as given.
    pub reading: ClockReading,
    /// The time floor as given.
    pub floor: i64,
    /// The clock state the decision used: [`ClockState::Trusted`] only if the
    /// reading was trusted *and* plausible (see the module's time rules).
    pub state: ClockState,
    /// The time validity was judged against (unix seconds).
    pub at: i64,
    /// Where `at` came from.
    pub basis: TimeBasis,
}

/// Judges time for an order issued at `issued_at` (`None` when the order
/// could not be read): the module's time rules in one function.
pub fn judge_time(reading: ClockReading, floor: i64, issued_at: Option<i64>) -> TimeJudgement {
    let (lower, lower_basis) = match issued_at {
        Some(issued) if issued > floor => (issued, TimeBasis::IssuedAt),
        _ => (floor, TimeBasis::Floor),
    };
    let plausible = reading.state == ClockState::Trusted
        && reading.now >= floor
        && reading.now <= lower.saturating_add(MAX_CLOCK_LEAD_SECS);
    if plausible {
        if reading.now >= lower {
            TimeJudgement {
                reading,
                floor,
                state: ClockState::Trusted,
                at: reading.now,
                basis: TimeBasis::Clock,
            }
        } else {
            TimeJudgement { reading, floor, state: ClockState::Trusted, at: lower, basis: lower_basis }
        }
    } else {
        TimeJudgement { reading, floor, state: ClockState::Untrusted, at: lower, basis: lower_basis }
    }
}

/// What raised the time floor last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FloorSource {
    /// The build time of this firmware.
    BuildTime,
    /// A timestamp signed by the carrier (e.g. in a server response).
    CarrierSigned,
    /// The `issued_at` of the last accepted order.
    AcceptedOrder,
    /// The `not_before` of the device certificate.
    CertificateNotBefore,
}

/// The trusted-time floor: the latest time known to have passed, from
/// trusted sources only. The device's own clock is never a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeFloor {
    /// The floor (unix seconds).
    pub at: i64,
    /// What set it.
    pub source: FloorSource,
}

impl TimeFloor {
    /// The floor of a fresh device: its build time.
    pub fn from_build_time(build_time: i64) -> Self {
        Self { at: build_time, source: FloorSource::BuildTime }
    }

    /// Raises the floor to `candidate` from `source` if it is later; a floor
    /// never goes back.
    #[must_use]
    pub fn advance(self, source: FloorSource, candidate: i64) -> Self {
        if candidate > self.at {
            Self { at: candidate, source }
        } else {
            self
        }
    }
}

/// The latest of `floor` and `candidate`: a floor never goes back.
pub fn advance(floor: i64, candidate: i64) -> i64 {
    floor.max(candidate)
}

/// An order public key this device was provisioned with or was given by a
/// key-rotation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// [`cpe_protocol::order::KeyId`] of `public_key`.
    pub id: KeyId,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// Retired by a key-rotation order: orders signed by it are refused.
    pub retired: bool,
}

/// Makes a [`TrustedKey`], computing its id (first 8 bytes of SHA-256).
pub fn trusted_key(public_key: [u8; 32], retired: bool) -> TrustedKey {
    let digest = ring::digest::digest(&ring::digest::SHA256, &public_key);
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest.as_ref()[..8]);
    TrustedKey { id, public_key, retired }
}

/// Everything the verifier judges against.
#[derive(Debug, Clone, Copy)]
pub struct VerifyContext<'a> {
    /// This device.
    pub device: &'a OrderTarget,
    /// Trusted order keys, retired ones included (so they can be named).
    pub keys: &'a [TrustedKey],
    /// The sequence number of the last applied order (0 if none).
    pub last_applied_sequence: u64,
    /// The injected clock reading.
    pub clock: ClockReading,
    /// The persisted trusted-time floor (unix seconds).
    pub time_floor: i64,
}

/// An order that may be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The decoded order.
    pub order: Order,
    /// The key that signed it.
    pub key_id: KeyId,
    /// SHA-256 of the exact signed order bytes (for the enforcement receipt).
    pub order_hash: [u8; 32],
    /// Which clock state and time the decision used.
    pub time: TimeJudgement,
}

impl Verified {
    /// The clock state the decision used.
    pub fn decision_clock_state(&self) -> ClockState {
        self.time.state
    }
}

/// Why an order was refused. One variant per class of the issue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The input exceeds a size limit.
    #[error("order of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Size found.
        len: usize,
        /// Limit.
        limit: usize,
    },
    /// The input ended early.
    #[error("truncated order")]
    Truncated,
    /// The input is not an order.
    #[error("malformed order: {detail}")]
    Garbage {
        /// Decoder message.
        detail: String,
    },
    /// A correctly signed order of a version this build does not accept.
    #[error("order version {got} is not supported")]
    UnknownVersion {
        /// Version found.
        got: u16,
    },
    /// A correctly signed order of a kind this build does not know.
    #[error("order kind tag {tag} is not known")]
    UnknownKind {
        /// Postcard variant tag found.
        tag: u32,
    },
    /// No trusted key has this id.
    #[error("order signed by unknown key {}", hex(key_id))]
    UnknownKey {
        /// The id the envelope claims.
        key_id: KeyId,
    },
    /// Correctly signed by a key the carrier has retired.
    #[error("order signed by retired key {}", hex(key_id))]
    RetiredKey {
        /// The retired key's id.
        key_id: KeyId,
    },
    /// The signature does not verify under the named key.
    #[error("bad order signature for key {}", hex(key_id))]
    BadSignature {
        /// The id the envelope claims.
        key_id: KeyId,
    },
    /// The order is for another device.
    #[error("order for another device ({}/{})", target.institution_code, target.device)]
    WrongDevice {
        /// The order's target.
        target: OrderTarget,
    },
    /// The sequence number is not above the last applied one.
    #[error("order sequence {sequence} is not above the last applied {last} (replay)")]
    Replay {
        /// The order's sequence.
        sequence: u64,
        /// The last applied sequence.
        last: u64,
    },
    /// Expired at the judged time.
    #[error("order expired at {expires_at} (judged at {at})")]
    Expired {
        /// The order's expiry.
        expires_at: i64,
        /// The judged time.
        at: i64,
    },
    /// Not yet valid at the judged time.
    #[error("order not valid before {not_before} (judged at {at})")]
    NotYetValid {
        /// The order's start of validity.
        not_before: i64,
        /// The judged time.
        at: i64,
    },
    /// Judged on an untrusted clock, issued far below the trusted-time floor.
    #[error(
        "order issued at {issued_at}, more than {MAX_UNTRUSTED_ISSUE_AGE_SECS} s before the trusted-time \
         floor {floor}, and the clock is not trusted; the carrier must issue a fresh order"
    )]
    Stale {
        /// The order's issue time.
        issued_at: i64,
        /// The floor it was judged against.
        floor: i64,
    },
    /// A key rotation that would leave the device without a usable key or
    /// trust a key the carrier retired.
    #[error("unsafe key rotation: {problem}; the carrier must rotate to a fresh key")]
    UnsafeKeyRotation {
        /// What is wrong with it.
        problem: RotationProblem,
    },
    /// The largest sequence number: no order (not even a resume) could follow it.
    #[error("order sequence {} leaves no room for a later order (a resume); refused", u64::MAX)]
    SequenceExhausted,
}

/// Why a key rotation is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RotationProblem {
    /// The new key was retired earlier (it may be compromised).
    #[error("the new key {} was retired and is never re-activated", hex(.0))]
    ReactivatesRetiredKey(KeyId),
    /// The rotation retires its own new key, leaving it unusable.
    #[error("the rotation retires its own new key {}", hex(.0))]
    RetiresItsNewKey(KeyId),
}

impl Refusal {
    /// A stable class name for logs and reports.
    pub fn class(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Truncated => "truncated",
            Self::Garbage { .. } => "garbage",
            Self::UnknownVersion { .. } => "unknown_version",
            Self::UnknownKind { .. } => "unknown_kind",
            Self::UnknownKey { .. } => "unknown_key",
            Self::RetiredKey { .. } => "retired_key",
            Self::BadSignature { .. } => "bad_signature",
            Self::WrongDevice { .. } => "wrong_device",
            Self::Replay { .. } => "replay",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::Stale { .. } => "stale",
            Self::UnsafeKeyRotation { .. } => "unsafe_key_rotation",
            Self::SequenceExhausted => "sequence_exhausted",
        }
    }
}

impl From<OrderDecodeError> for Refusal {
    fn from(e: OrderDecodeError) -> Self {
        match e {
            OrderDecodeError::TooLarge { len, limit } => Self::TooLarge { len, limit },
            OrderDecodeError::Truncated => Self::Truncated,
            OrderDecodeError::Garbage { detail } => Self::Garbage { detail },
            OrderDecodeError::UnknownVersion { got } => Self::UnknownVersion { got },
            OrderDecodeError::UnknownKind { tag } => Self::UnknownKind { tag },
        }
    }
}

/// A refusal with the clock state and time the decision was made under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{refusal}")]
pub struct Refused {
    /// Why.
    pub refusal: Refusal,
    /// Which clock state and time the decision used (judged without the
    /// order's `issued_at` if the order could not be read).
    pub time: TimeJudgement,
}

/// Why a rotation to `new_key` retiring `retire` must not be applied to a
/// device trusting `keys`, if it must not (see the module's keys rules).
pub fn rotation_problem(keys: &[TrustedKey], new_key: [u8; 32], retire: &[KeyId]) -> Option<RotationProblem> {
    let new_id = trusted_key(new_key, false).id;
    if keys.iter().any(|k| k.retired && k.public_key == new_key) {
        return Some(RotationProblem::ReactivatesRetiredKey(new_id));
    }
    retire.contains(&new_id).then_some(RotationProblem::RetiresItsNewKey(new_id))
}

/// Decides whether the signed order in `signed` may be applied on this
/// device. Pure: no I/O, no clock; never panics on any input.
pub fn verify(signed: &[u8], ctx: &VerifyContext<'_>) -> Result<Verified, Refused> {
    let early = |refusal: Refusal| Refused { refusal, time: judge_time(ctx.clock, ctx.time_floor, None) };

    let envelope = decode_signed(signed).map_err(|e| early(e.into()))?;
    let key_id = envelope.key_id;
    let candidates: Vec<&TrustedKey> = ctx.keys.iter().filter(|k| k.id == key_id).collect();
    if candidates.is_empty() {
        return Err(early(Refusal::UnknownKey { key_id }));
    }
    let message = signed_message(&envelope.order_bytes);
    let key = candidates
        .into_iter()
        .find(|k| {
            UnparsedPublicKey::new(&ED25519, &k.public_key).verify(&message, &envelope.signature).is_ok()
        })
        .ok_or_else(|| early(Refusal::BadSignature { key_id }))?;
    if key.retired {
        return Err(early(Refusal::RetiredKey { key_id }));
    }

    let order = decode_order(&envelope.order_bytes).map_err(|e| early(e.into()))?;
    let time = judge_time(ctx.clock, ctx.time_floor, Some(order.issued_at));
    let refuse = |refusal: Refusal| Refused { refusal, time };

    if &order.target != ctx.device {
        return Err(refuse(Refusal::WrongDevice { target: order.target }));
    }
    if order.sequence <= ctx.last_applied_sequence {
        return Err(refuse(Refusal::Replay { sequence: order.sequence, last: ctx.last_applied_sequence }));
    }
    if order.sequence == u64::MAX {
        return Err(refuse(Refusal::SequenceExhausted));
    }
    if order.not_before > time.at {
        return Err(refuse(Refusal::NotYetValid { not_before: order.not_before, at: time.at }));
    }
    if order.expires_at <= time.at {
        return Err(refuse(Refusal::Expired { expires_at: order.expires_at, at: time.at }));
    }
    if time.state == ClockState::Untrusted
        && order.issued_at < ctx.time_floor.saturating_sub(MAX_UNTRUSTED_ISSUE_AGE_SECS)
    {
        return Err(refuse(Refusal::Stale { issued_at: order.issued_at, floor: ctx.time_floor }));
    }
    if let OrderKind::KeyRotation { new_key, retire } = &order.kind {
        if let Some(problem) = rotation_problem(ctx.keys, *new_key, retire) {
            return Err(refuse(Refusal::UnsafeKeyRotation { problem }));
        }
    }

    let digest = ring::digest::digest(&ring::digest::SHA256, &envelope.order_bytes);
    let mut order_hash = [0u8; 32];
    order_hash.copy_from_slice(digest.as_ref());
    Ok(Verified { order, key_id, order_hash, time })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpe_protocol::order::{encode_signed, OrderKind, SignedOrder, ORDER_VERSION};
    use ring::signature::{Ed25519KeyPair, KeyPair};

    const DAY: i64 = 86_400;
    /// 2027-01-01T00:00:00Z: the floor (e.g. build time) in these tests.
    const FLOOR: i64 = 1_798_761_600;
    /// 2090-01-01T00:00:00Z.
    const Y2090: i64 = 3_786_912_000;

    fn pair(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    fn key(seed: u8, retired: bool) -> TrustedKey {
        trusted_key(pair(seed).public_key().as_ref().try_into().unwrap(), retired)
    }

    fn device() -> OrderTarget {
        OrderTarget { institution_code: "1312345678".into(), device: "cpe-1".into() }
    }

    fn order(kind: OrderKind, sequence: u64, issued_at: i64) -> Order {
        Order {
            version: ORDER_VERSION,
            id: sequence.saturating_mul(10),
            target: device(),
            kind,
            sequence,
            issued_at,
            not_before: issued_at,
            expires_at: issued_at + DAY,
            reason_ja: "是正されなかったため停止".into(),
            reason_en: "not corrected".into(),
            deadline: None,
        }
    }

    fn sign_bytes(order_bytes: Vec<u8>, seed: u8) -> Vec<u8> {
        let p = pair(seed);
        let signature = p.sign(&signed_message(&order_bytes)).as_ref().to_vec();
        let key_id = key(seed, false).id;
        encode_signed(&SignedOrder { key_id, order_bytes, signature }).unwrap()
    }

    fn sign(o: &Order, seed: u8) -> Vec<u8> {
        sign_bytes(postcard::to_stdvec(o).unwrap(), seed)
    }

    fn trusted(now: i64) -> ClockReading {
        ClockReading { now, state: ClockState::Trusted }
    }

    fn untrusted(now: i64) -> ClockReading {
        ClockReading { now, state: ClockState::Untrusted }
    }

    fn run(bytes: &[u8], keys: &[TrustedKey], last: u64, clock: ClockReading) -> Result<Verified, Refused> {
        let dev = device();
        verify(
            bytes,
            &VerifyContext { device: &dev, keys, last_applied_sequence: last, clock, time_floor: FLOOR },
        )
    }

    fn refusal(bytes: &[u8], keys: &[TrustedKey], last: u64, clock: ClockReading) -> Refusal {
        run(bytes, keys, last, clock).unwrap_err().refusal
    }

    #[test]
    fn accepts_a_valid_stop_on_a_trusted_clock() {
        let issued = FLOOR + 10 * DAY;
        let v = run(&sign(&order(OrderKind::Stop, 1, issued), 1), &[key(1, false)], 0, trusted(issued + 60))
            .unwrap();
        assert_eq!(v.order.kind, OrderKind::Stop);
        assert_eq!(v.key_id, key(1, false).id);
        assert_eq!(v.decision_clock_state(), ClockState::Trusted);
        assert_eq!(v.time.basis, TimeBasis::Clock);
        assert_eq!(v.time.at, issued + 60);
        let bytes = postcard::to_stdvec(&order(OrderKind::Stop, 1, issued)).unwrap();
        assert_eq!(v.order_hash.as_slice(), ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
    }

    #[test]
    fn garbage_truncated_and_oversized_are_refused() {
        let keys = [key(1, false)];
        let good = sign(&order(OrderKind::Stop, 1, FLOOR + DAY), 1);
        assert_eq!(refusal(&good[..good.len() - 1], &keys, 0, trusted(FLOOR + DAY)), Refusal::Truncated);
        assert_eq!(refusal(&[], &keys, 0, trusted(FLOOR)), Refusal::Truncated);
        assert!(matches!(refusal(&[0xff; 20], &keys, 0, trusted(FLOOR)), Refusal::Garbage { .. }));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(refusal(&trailing, &keys, 0, trusted(FLOOR)), Refusal::Garbage { .. }));
        assert!(matches!(refusal(&vec![0; 9000], &keys, 0, trusted(FLOOR)), Refusal::TooLarge { .. }));
        // Correctly signed bytes that are not an order.
        let signed_garbage = sign_bytes(vec![1, 0xff, 0xff, 0xff], 1);
        assert!(matches!(
            refusal(&signed_garbage, &keys, 0, trusted(FLOOR)),
            Refusal::Truncated | Refusal::Garbage { .. }
        ));
    }

    #[test]
    fn unknown_version_and_kind_are_distinct() {
        let keys = [key(1, false)];
        let mut o = order(OrderKind::Stop, 1, FLOOR + DAY);
        o.version = 2;
        assert_eq!(refusal(&sign(&o, 1), &keys, 0, trusted(FLOOR + DAY)), Refusal::UnknownVersion { got: 2 });

        let o = order(OrderKind::Drill, 1, FLOOR + DAY);
        let mut bytes = postcard::to_stdvec(&o).unwrap();
        let at = 1 + 1 + postcard::to_stdvec(&o.target).unwrap().len();
        assert_eq!(bytes[at], 4);
        bytes[at] = 5;
        assert_eq!(
            refusal(&sign_bytes(bytes, 1), &keys, 0, trusted(FLOOR + DAY)),
            Refusal::UnknownKind { tag: 5 }
        );
    }

    #[test]
    fn unknown_key_bad_signature_and_retired_key() {
        let o = order(OrderKind::Stop, 1, FLOOR + DAY);
        let now = trusted(FLOOR + DAY);
        // Signed by key 2, device trusts only key 1.
        assert_eq!(
            refusal(&sign(&o, 2), &[key(1, false)], 0, now),
            Refusal::UnknownKey { key_id: key(2, false).id }
        );
        // Claims key 1's id but signed by key 2.
        let mut env = decode_signed(&sign(&o, 2)).unwrap();
        env.key_id = key(1, false).id;
        let forged = encode_signed(&env).unwrap();
        assert_eq!(
            refusal(&forged, &[key(1, false)], 0, now),
            Refusal::BadSignature { key_id: key(1, false).id }
        );
        // A retired key with a good signature.
        assert_eq!(
            refusal(&sign(&o, 1), &[key(1, true)], 0, now),
            Refusal::RetiredKey { key_id: key(1, false).id }
        );
        // A retired key with a bad signature is a bad signature, not a retired key.
        assert_eq!(
            refusal(&forged, &[key(1, true)], 0, now),
            Refusal::BadSignature { key_id: key(1, false).id }
        );
        // An empty signature.
        env.signature.clear();
        let empty = encode_signed(&env).unwrap();
        assert_eq!(
            refusal(&empty, &[key(1, false)], 0, now),
            Refusal::BadSignature { key_id: key(1, false).id }
        );
    }

    #[test]
    fn wrong_device_is_refused() {
        let now = trusted(FLOOR + DAY);
        let mut o = order(OrderKind::Stop, 1, FLOOR + DAY);
        o.target.device = "cpe-2".into();
        assert!(matches!(refusal(&sign(&o, 1), &[key(1, false)], 0, now), Refusal::WrongDevice { .. }));
        let mut o = order(OrderKind::Stop, 1, FLOOR + DAY);
        o.target.institution_code = "1399999999".into();
        let r = refusal(&sign(&o, 1), &[key(1, false)], 0, now);
        assert_eq!(r, Refusal::WrongDevice { target: o.target });
        assert_eq!(r.class(), "wrong_device");
    }

    #[test]
    fn sequence_must_be_strictly_above_the_last_applied() {
        let keys = [key(1, false)];
        let issued = FLOOR + DAY;
        let now = trusted(issued + 1);
        let o = sign(&order(OrderKind::Stop, 5, issued), 1);
        assert_eq!(refusal(&o, &keys, 5, now), Refusal::Replay { sequence: 5, last: 5 });
        assert_eq!(refusal(&o, &keys, 9, now), Refusal::Replay { sequence: 5, last: 9 });
        assert!(run(&o, &keys, 4, now).is_ok());
    }

    #[test]
    fn old_stop_replayed_after_resume_is_refused() {
        let keys = [key(1, false)];
        let t = FLOOR + DAY;
        let stop = sign(&order(OrderKind::Stop, 1, t), 1);
        let resume = sign(&order(OrderKind::Resume, 2, t + 3600), 1);
        assert!(run(&stop, &keys, 0, trusted(t + 10)).is_ok());
        assert!(run(&resume, &keys, 1, trusted(t + 3700)).is_ok());
        // Still within the stop's validity window, on any clock.
        for clock in [trusted(t + 3800), untrusted(0), untrusted(Y2090)] {
            assert_eq!(refusal(&stop, &keys, 2, clock), Refusal::Replay { sequence: 1, last: 2 });
        }
    }

    #[test]
    fn expired_and_not_yet_valid_on_a_trusted_clock() {
        let keys = [key(1, false)];
        let t = FLOOR + DAY;
        let o = sign(&order(OrderKind::Stop, 1, t), 1);
        assert_eq!(
            refusal(&o, &keys, 0, trusted(t + DAY)),
            Refusal::Expired { expires_at: t + DAY, at: t + DAY }
        );
        let mut scheduled = order(OrderKind::Stop, 1, t);
        scheduled.not_before = t + 3600;
        let s = sign(&scheduled, 1);
        assert_eq!(
            refusal(&s, &keys, 0, trusted(t + 60)),
            Refusal::NotYetValid { not_before: t + 3600, at: t + 60 }
        );
        assert!(run(&s, &keys, 0, trusted(t + 3600)).is_ok());
    }

    #[test]
    fn stop_takes_effect_on_an_untrusted_1970_clock() {
        let t = FLOOR + 40 * DAY;
        let v = run(&sign(&order(OrderKind::Stop, 1, t), 1), &[key(1, false)], 0, untrusted(0)).unwrap();
        assert_eq!(v.decision_clock_state(), ClockState::Untrusted);
        assert_eq!(v.time.basis, TimeBasis::IssuedAt);
        assert_eq!(v.time.at, t);
        assert_eq!(v.time.reading, untrusted(0));
        // A clock that claims to be trusted but is behind the floor is not believed either.
        let v = run(&sign(&order(OrderKind::Stop, 1, t), 1), &[key(1, false)], 0, trusted(0)).unwrap();
        assert_eq!(v.decision_clock_state(), ClockState::Untrusted);
    }

    #[test]
    fn far_future_clock_does_not_block_resume() {
        let t = FLOOR + 40 * DAY;
        let resume = sign(&order(OrderKind::Resume, 2, t), 1);
        for clock in [untrusted(Y2090), trusted(Y2090), trusted(t + MAX_CLOCK_LEAD_SECS + 1)] {
            let v = run(&resume, &[key(1, false)], 1, clock).unwrap();
            assert_eq!(v.decision_clock_state(), ClockState::Untrusted, "{clock:?}");
            assert_eq!(v.time.at, t);
            assert_eq!(v.time.basis, TimeBasis::IssuedAt);
        }
        // Within the lead a trusted clock is believed, and the order is expired.
        assert!(matches!(
            refusal(&resume, &[key(1, false)], 1, trusted(t + MAX_CLOCK_LEAD_SECS)),
            Refusal::Expired { .. }
        ));
    }

    #[test]
    fn untrusted_clock_judges_against_the_floor() {
        let keys = [key(1, false)];
        // An order that expired before the floor: expired even on a 1970 clock.
        let old = sign(&order(OrderKind::Stop, 1, FLOOR - 2 * DAY), 1);
        let r = run(&old, &keys, 0, untrusted(0)).unwrap_err();
        assert_eq!(r.refusal, Refusal::Expired { expires_at: FLOOR - DAY, at: FLOOR });
        assert_eq!(r.time.basis, TimeBasis::Floor);
        assert_eq!(r.time.state, ClockState::Untrusted);
        // A scheduled order waits for a trusted clock or a later floor.
        let mut scheduled = order(OrderKind::Stop, 1, FLOOR + DAY);
        scheduled.not_before = FLOOR + 2 * DAY;
        assert!(matches!(refusal(&sign(&scheduled, 1), &keys, 0, untrusted(0)), Refusal::NotYetValid { .. }));
    }

    fn public(seed: u8) -> [u8; 32] {
        pair(seed).public_key().as_ref().try_into().unwrap()
    }

    #[test]
    fn unsafe_key_rotations_are_refused() {
        let t = FLOOR + DAY;
        let rotation =
            |new_key, retire: Vec<KeyId>| sign(&order(OrderKind::KeyRotation { new_key, retire }, 1, t), 1);
        // Back to a key the carrier retired earlier.
        let back = rotation(public(2), vec![key(1, false).id]);
        assert_eq!(
            refusal(&back, &[key(1, false), key(2, true)], 0, trusted(t)),
            Refusal::UnsafeKeyRotation { problem: RotationProblem::ReactivatesRetiredKey(key(2, false).id) }
        );
        // Retiring its own new key (with the old one: no key would be left).
        let own = rotation(public(2), vec![key(1, false).id, key(2, false).id]);
        let r = refusal(&own, &[key(1, false)], 0, trusted(t));
        assert_eq!(
            r,
            Refusal::UnsafeKeyRotation { problem: RotationProblem::RetiresItsNewKey(key(2, false).id) }
        );
        assert_eq!(r.class(), "unsafe_key_rotation");
        // A plain rotation, and one that keeps an active key as the "new" one.
        assert!(run(&rotation(public(2), vec![key(1, false).id]), &[key(1, false)], 0, trusted(t)).is_ok());
        assert!(run(&rotation(public(1), vec![]), &[key(1, false)], 0, trusted(t)).is_ok());
    }

    #[test]
    fn the_last_sequence_number_is_refused_so_a_resume_can_follow() {
        let t = FLOOR + DAY;
        let stop = sign(&order(OrderKind::Stop, u64::MAX, t), 1);
        let r = refusal(&stop, &[key(1, false)], 0, trusted(t));
        assert_eq!((r.class(), r), ("sequence_exhausted", Refusal::SequenceExhausted));
        assert!(
            run(&sign(&order(OrderKind::Stop, u64::MAX - 1, t), 1), &[key(1, false)], 0, trusted(t)).is_ok()
        );
    }

    #[test]
    fn untrusted_clock_refuses_an_order_issued_far_below_the_floor() {
        let keys = [key(1, false)];
        let mut old = order(OrderKind::Stop, 1, FLOOR - MAX_UNTRUSTED_ISSUE_AGE_SECS - 1);
        old.expires_at = FLOOR + 300 * DAY;
        let old = sign(&old, 1);
        let r = refusal(&old, &keys, 0, untrusted(0));
        assert_eq!(r, Refusal::Stale { issued_at: FLOOR - MAX_UNTRUSTED_ISSUE_AGE_SECS - 1, floor: FLOOR });
        assert_eq!(r.class(), "stale");
        // A trusted clock judges its validity window as usual.
        assert!(run(&old, &keys, 0, trusted(FLOOR + DAY)).is_ok());
        // Just within the bound, an untrusted clock still accepts it.
        let mut recent = order(OrderKind::Stop, 1, FLOOR - MAX_UNTRUSTED_ISSUE_AGE_SECS);
        recent.expires_at = FLOOR + DAY;
        assert!(run(&sign(&recent, 1), &keys, 0, untrusted(0)).is_ok());
    }

    #[test]
    fn trusted_clock_slightly_behind_issue_time_is_not_not_yet_valid() {
        let t = FLOOR + DAY;
        let v = run(&sign(&order(OrderKind::Stop, 1, t), 1), &[key(1, false)], 0, trusted(t - 5)).unwrap();
        assert_eq!(v.decision_clock_state(), ClockState::Trusted);
        assert_eq!(v.time.at, t);
        assert_eq!(v.time.basis, TimeBasis::IssuedAt);
    }

    #[test]
    fn early_refusals_record_the_clock_too() {
        let r = run(&[], &[key(1, false)], 0, untrusted(5)).unwrap_err();
        assert_eq!(r.time.state, ClockState::Untrusted);
        assert_eq!(r.time.at, FLOOR);
        assert_eq!(r.time.basis, TimeBasis::Floor);
        assert_eq!(r.time.reading, untrusted(5));
    }

    #[test]
    fn time_floor_only_moves_forward() {
        assert_eq!(advance(10, 5), 10);
        assert_eq!(advance(10, 15), 15);
        let f = TimeFloor::from_build_time(100);
        let f = f.advance(FloorSource::CertificateNotBefore, 50);
        assert_eq!(f, TimeFloor { at: 100, source: FloorSource::BuildTime });
        let f = f.advance(FloorSource::CarrierSigned, 200).advance(FloorSource::AcceptedOrder, 300);
        assert_eq!(f, TimeFloor { at: 300, source: FloorSource::AcceptedOrder });
        let f = f.advance(FloorSource::CarrierSigned, 299);
        assert_eq!(f.at, 300);
    }

    #[test]
    fn judge_time_does_not_overflow() {
        let j = judge_time(trusted(i64::MAX), i64::MAX - 1, Some(i64::MAX));
        assert_eq!(j.at, i64::MAX);
        let j = judge_time(trusted(i64::MIN), i64::MIN, Some(i64::MIN));
        assert_eq!(j.state, ClockState::Trusted);
    }
}
