//! The operator's order use cases (§2.2 ⑥, resume, drills, key rotation):
//! the template every signed order follows, and one function per use case
//! that checks the flow rules, signs with the carrier's order key and has
//! the store issue the order in one transaction.
//!
//! The flow rule of a stop or a resume is checked twice: first on the trail
//! as read (so that a refusal is reported before the key is touched), then
//! inside the issuing transaction on the trail as it stands there, so that
//! two operators acting at once cannot both stop one device.

use std::sync::Arc;

use cpe_protocol::order::{Order, OrderKind, ORDER_VERSION};
use time::OffsetDateTime;

use super::error::ComplianceError;
use super::flow::{self, Refusal, Step, Trail};
use super::order_keys::{order_signer, KeyStore, OrderSigningKey};
use crate::clock::unix_ms;
use crate::store::orders::target_of;
use crate::store::{CaseDetail, CaseRule, Database, DbError, IssuedOrder, NewCaseEvent, NewOrder, OrderRow};

/// Default validity of an order, days: long enough for a device that is
/// offline over a long weekend, short enough that a lost order dies.
pub const DEFAULT_ORDER_DAYS: u32 = 7;

/// Default validity of key-rotation orders, days: a device that is offline
/// for long must still be able to apply the rotation, or it could verify no
/// later order (a late rotation is harmless: it only adds the new key and
/// retires the old one, and its sequence number stops replays).
pub const ROTATION_ORDER_DAYS: u32 = 365;

/// How far before "now" an order becomes valid, seconds, so that a device
/// whose trusted clock is a little behind still accepts it.
const NOT_BEFORE_BACKDATE_S: i64 = 300;

/// The reason shown on the device when a resume gives none.
pub const RESUME_REASON: (&str, &str) =
    ("是正が確認されたため、サービスを再開しました", "service resumed: the correction was confirmed");
/// The reason shown on the device when a drill gives none.
pub const DRILL_REASON: (&str, &str) =
    ("停止訓練です（実際の通信は止まっていません）", "suspension drill: no traffic is blocked");
/// The reason of key-rotation orders.
pub const ROTATION_REASON: (&str, &str) = ("命令署名鍵の更新", "order-signing key rotation");

/// The text an order shows on the device, in Japanese and English.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReasonText {
    /// For both languages, unless one is given below.
    pub both: Option<String>,
    /// Japanese (shown first on the device's notice page).
    pub ja: Option<String>,
    /// English.
    pub en: Option<String>,
}

impl ReasonText {
    /// The Japanese and English texts, `default` filling what is not given;
    /// `None` unless both are non-blank.
    pub fn resolve(&self, default: Option<(&str, &str)>) -> Option<(String, String)> {
        let ja = self.ja.clone().or_else(|| self.both.clone()).or(default.map(|d| d.0.to_owned()));
        let en = self.en.clone().or_else(|| self.both.clone()).or(default.map(|d| d.1.to_owned()));
        match (ja, en) {
            (Some(ja), Some(en)) if !ja.trim().is_empty() && !en.trim().is_empty() => Some((ja, en)),
            _ => None,
        }
    }
}

/// Who acts and when: recorded with every step and order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The operator's name.
    pub operator: String,
    /// The time of the step.
    pub now: OffsetDateTime,
}

impl Actor {
    /// A trail entry of `step` with `text`, by this operator, now.
    pub fn event(&self, step: Step, text: &str) -> NewCaseEvent {
        NewCaseEvent {
            step,
            operator: self.operator.clone(),
            text: text.to_owned(),
            deadline_ms: None,
            corrected: None,
            justification: None,
            recipient: None,
            at_ms: unix_ms(self.now),
        }
    }
}

/// What an order says, before the store gives it an id and sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSpec {
    /// Target device.
    pub device: String,
    /// Its case, if any.
    pub case_id: Option<u64>,
    /// What to do.
    pub kind: OrderKind,
    /// Shown on the device (Japanese, English).
    pub reason: (String, String),
    /// A recommendation's deadline, Unix seconds.
    pub deadline: Option<i64>,
    /// Why an urgent or justified step cannot wait.
    pub justification: Option<String>,
    /// Days the order stays valid.
    pub valid_days: u32,
}

/// The order every use case signs: valid from a little before `now` for
/// `valid_days`; its id and sequence are set by the issuing transaction.
pub fn template(spec: OrderSpec, actor: &Actor) -> NewOrder {
    let issued_at = actor.now.unix_timestamp();
    let expires_at = issued_at.saturating_add(i64::from(spec.valid_days) * 86_400);
    NewOrder {
        order: Order {
            version: ORDER_VERSION,
            id: 0,
            target: target_of(&spec.device),
            kind: spec.kind,
            sequence: 0,
            issued_at,
            not_before: issued_at - NOT_BEFORE_BACKDATE_S,
            expires_at,
            reason_ja: spec.reason.0,
            reason_en: spec.reason.1,
            deadline: spec.deadline,
        },
        case_id: spec.case_id,
        operator: actor.operator.clone(),
        justification: spec.justification,
        now_ms: unix_ms(actor.now),
    }
}

/// Issues `spec` signed with `key`, recording `event` on its case; `rule`,
/// when given, is checked on the case inside the issuing transaction.
pub async fn issue(
    db: &Database,
    key: OrderSigningKey,
    spec: OrderSpec,
    actor: &Actor,
    event: Option<NewCaseEvent>,
    rule: Option<Arc<CaseRule>>,
) -> Result<IssuedOrder, ComplianceError> {
    let new = template(spec, actor);
    let issued = match rule {
        Some(rule) => db.issue_case_order(new, event, order_signer(key), rule).await,
        None => db.issue_order(new, event, order_signer(key)).await,
    };
    issued.map_err(unknown_device)
}

/// The store's "unknown device" in the operator's words.
pub(crate) fn unknown_device(e: DbError) -> ComplianceError {
    match e {
        DbError::UnknownDevice(device) => ComplianceError::UnknownDevice(device),
        other => other.into(),
    }
}

/// A flow rule as the store checks it inside a transaction.
pub fn case_rule(rule: impl Fn(&Trail) -> Result<(), Refusal> + Send + Sync + 'static) -> Arc<CaseRule> {
    Arc::new(move |case: &CaseDetail| rule(&Trail::of(case)).map_err(Into::into))
}

/// The device's latest case.
pub(crate) async fn device_case(db: &Database, device: &str) -> Result<CaseDetail, ComplianceError> {
    db.latest_case(device).await?.ok_or_else(|| ComplianceError::NoDeviceCase { device: device.to_owned() })
}

/// One stored order.
pub async fn load(db: &Database, id: u64) -> Result<OrderRow, ComplianceError> {
    db.order(id).await?.ok_or(ComplianceError::NoOrder(id))
}

/// How an order is signed and how long it is valid.
#[derive(Debug)]
pub struct Signing {
    /// The order-key directory.
    pub keys: KeyStore,
    /// Days the order stays valid.
    pub valid_days: u32,
}

/// ⑥ Suspend the device's network service: a signed stop order on its
/// latest case, allowed by [`flow::may_stop`] (the full flow, or urgent with
/// a justification).
pub async fn stop(
    db: &Database,
    device: &str,
    reason: &ReasonText,
    urgent_justification: Option<String>,
    signing: &Signing,
    actor: &Actor,
) -> Result<IssuedOrder, ComplianceError> {
    let case = device_case(db, device).await?;
    let now_ms = unix_ms(actor.now);
    flow::may_stop(&Trail::of(&case), now_ms, urgent_justification.as_deref())?;
    let reason = reason.resolve(None).ok_or(ComplianceError::NoReason)?;
    let key = signing.keys.current()?;
    let mut event = actor.event(Step::Stop, &reason.1);
    event.justification.clone_from(&urgent_justification);
    let rule_justification = urgent_justification.clone();
    let rule = case_rule(move |trail| flow::may_stop(trail, now_ms, rule_justification.as_deref()).map(drop));
    let spec = OrderSpec {
        device: device.to_owned(),
        case_id: Some(case.case.id),
        kind: OrderKind::Stop,
        reason,
        deadline: None,
        justification: urgent_justification,
        valid_days: signing.valid_days,
    };
    issue(db, key, spec, actor, Some(event), Some(rule)).await
}

/// Lift the suspension (or the recommendation notice) of the device's latest
/// case: a signed resume order, allowed by [`flow::may_resume`] (a check that
/// found the violation corrected, or a justification). Closes the case.
pub async fn resume(
    db: &Database,
    device: &str,
    reason: &ReasonText,
    justification: Option<String>,
    signing: &Signing,
    actor: &Actor,
) -> Result<(u64, IssuedOrder), ComplianceError> {
    let case = device_case(db, device).await?;
    flow::may_resume(&Trail::of(&case), justification.as_deref())?;
    let reason = reason.resolve(Some(RESUME_REASON)).ok_or(ComplianceError::NoReason)?;
    let key = signing.keys.current()?;
    let mut event = actor.event(Step::Resume, &reason.1);
    event.justification.clone_from(&justification);
    let rule_justification = justification.clone();
    let rule = case_rule(move |trail| flow::may_resume(trail, rule_justification.as_deref()));
    let spec = OrderSpec {
        device: device.to_owned(),
        case_id: Some(case.case.id),
        kind: OrderKind::Resume,
        reason,
        deadline: None,
        justification,
        valid_days: signing.valid_days,
    };
    let issued = issue(db, key, spec, actor, Some(event), Some(rule)).await?;
    Ok((case.case.id, issued))
}

/// A drill (§1.3.4): the device shows the notice and acknowledges as if
/// suspended, without blocking anything. Needs no case.
pub async fn drill(
    db: &Database,
    device: &str,
    reason: &ReasonText,
    signing: &Signing,
    actor: &Actor,
) -> Result<IssuedOrder, ComplianceError> {
    let reason = reason.resolve(Some(DRILL_REASON)).ok_or(ComplianceError::NoReason)?;
    let key = signing.keys.current()?;
    let spec = OrderSpec {
        device: device.to_owned(),
        case_id: None,
        kind: OrderKind::Drill,
        reason,
        deadline: None,
        justification: None,
        valid_days: signing.valid_days,
    };
    issue(db, key, spec, actor, None, None).await
}

/// What a finished key rotation did.
#[derive(Debug)]
pub struct Rotation {
    /// The key that signed the rotation orders (now retired).
    pub old: OrderSigningKey,
    /// The new current key.
    pub new: OrderSigningKey,
    /// Devices that got a rotation order.
    pub queued: usize,
}

/// Replace the order-signing key: a key-rotation order signed by the old key
/// is queued for every known device (`on_queued` hears of each), then the
/// new key becomes current and the old public key is kept as retired.
pub async fn rotate_keys(
    db: &Database,
    keys: &KeyStore,
    valid_days: u32,
    actor: &Actor,
    mut on_queued: impl FnMut(&str, &IssuedOrder),
) -> Result<Rotation, ComplianceError> {
    let devices = db.devices().await?;
    let (old, new) = keys.begin_rotation()?;
    let mut queued = 0usize;
    for device in &devices {
        let spec = OrderSpec {
            device: device.id.clone(),
            case_id: None,
            kind: OrderKind::KeyRotation { new_key: new.public_key(), retire: vec![old.key_id()] },
            reason: (ROTATION_REASON.0.to_owned(), ROTATION_REASON.1.to_owned()),
            deadline: None,
            justification: None,
            valid_days,
        };
        let key = OrderSigningKey::from_pkcs8(old.pkcs8_der())?;
        let issued = issue(db, key, spec, actor, None, None).await.map_err(|source| {
            ComplianceError::RotationUnfinished {
                device: device.id.clone(),
                queued,
                total: devices.len(),
                source: Box::new(source),
            }
        })?;
        on_queued(&device.id, &issued);
        queued += 1;
    }
    keys.finish_rotation(&new)?;
    Ok(Rotation { old, new, queued })
}
