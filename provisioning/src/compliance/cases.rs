//! The operator's case use cases (§2.2 ①–⑤): open a case, record the
//! hearing, the report to the platform operator, the corrective
//! recommendation (with its signed notice order) and the check. Each checks
//! the flow rules of [`super::flow`] and records the step; the CLI (and later
//! the console) only parses and renders.
//!
//! A step recorded on a case is checked against the trail again inside the
//! recording transaction, so that two operators acting at once cannot both
//! take a step the flow allows once.

use cpe_protocol::order::OrderKind;

use super::error::ComplianceError;
use super::flow::{self, Refusal, Step, Trail};
use super::orders::{case_rule, issue, unknown_device, Actor, OrderSpec, ReasonText, Signing};
use crate::clock::unix_ms;
use crate::store::{CaseDetail, Database, IssuedOrder, NewCaseEvent};

/// A case by id.
pub async fn load(db: &Database, case_id: u64) -> Result<CaseDetail, ComplianceError> {
    db.case(case_id).await?.ok_or(ComplianceError::NoCase { case_id })
}

/// ① Opens a case for a device with the fact found; refused while the
/// device's latest case is not closed.
pub async fn open(db: &Database, device: &str, fact: &str, actor: &Actor) -> Result<u64, ComplianceError> {
    let latest = db.latest_case(device).await?;
    flow::may_open(device, latest.as_ref().map(Trail::of).as_ref())?;
    let owned = device.to_owned();
    let rule = case_rule(move |latest| flow::may_open(&owned, Some(latest)));
    db.open_case_if(device, actor.event(Step::Fact, fact), rule).await.map_err(unknown_device)
}

/// Records `event` on case `case_id` if `rule` allows it, checked before and
/// inside the recording transaction.
async fn record(
    db: &Database,
    case_id: u64,
    event: NewCaseEvent,
    rule: impl Fn(&Trail) -> Result<(), Refusal> + Send + Sync + 'static,
) -> Result<(), ComplianceError> {
    rule(&Trail::of(&load(db, case_id).await?))?;
    match db.add_case_event_if(case_id, event, case_rule(rule)).await? {
        Some(_) => Ok(()),
        None => Err(ComplianceError::NoCase { case_id }),
    }
}

/// What became of the hearing (②).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hearing {
    /// Held: what the institution said.
    Held(String),
    /// Skipped because the matter is urgent: why it cannot wait.
    SkippedUrgent(String),
}

/// ② Records the hearing of the institution, or that it was skipped as
/// urgent; returns the step recorded.
pub async fn hear(
    db: &Database,
    case_id: u64,
    hearing: Hearing,
    actor: &Actor,
) -> Result<Step, ComplianceError> {
    let (step, text, justification) = match hearing {
        Hearing::Held(summary) => (Step::Hearing, summary, None),
        Hearing::SkippedUrgent(j) => (Step::HearingSkipped, "hearing skipped: urgent".to_owned(), Some(j)),
    };
    let mut event = actor.event(step, &text);
    event.justification = justification;
    let empty_justification = event.justification.as_deref().is_some_and(|j| j.trim().is_empty());
    record(db, case_id, event, move |trail| {
        flow::may_hear(trail)?;
        if empty_justification {
            return Err(Refusal::EmptyJustification);
        }
        Ok(())
    })
    .await?;
    Ok(step)
}

/// ③ Records the report to the platform operator (`to`: to whom).
pub async fn report(
    db: &Database,
    case_id: u64,
    to: &str,
    text: &str,
    actor: &Actor,
) -> Result<(), ComplianceError> {
    let mut event = actor.event(Step::Report, text);
    event.recipient = Some(to.to_owned());
    record(db, case_id, event, flow::may_report).await
}

/// ④ Issues a corrective recommendation with a deadline: recorded on the
/// case, and shown on the device by a signed notice order.
pub async fn recommend(
    db: &Database,
    case_id: u64,
    deadline: time::OffsetDateTime,
    text: &ReasonText,
    signing: &Signing,
    actor: &Actor,
) -> Result<(CaseDetail, IssuedOrder), ComplianceError> {
    let case = load(db, case_id).await?;
    let deadline_ms = unix_ms(deadline);
    let now_ms = unix_ms(actor.now);
    flow::may_recommend(&Trail::of(&case), deadline_ms, now_ms)?;
    let reason = text.resolve(None).ok_or(ComplianceError::NoRecommendation)?;
    let key = signing.keys.current()?;
    let mut event = actor.event(Step::Recommend, &reason.1);
    event.deadline_ms = Some(deadline_ms);
    let spec = OrderSpec {
        device: case.case.device_id.clone(),
        case_id: Some(case_id),
        kind: OrderKind::Notice,
        reason,
        deadline: Some(deadline.unix_timestamp()),
        justification: None,
        valid_days: signing.valid_days,
    };
    let rule = case_rule(move |trail| flow::may_recommend(trail, deadline_ms, now_ms));
    let issued = issue(db, key, spec, actor, Some(event), Some(rule)).await?;
    Ok((case, issued))
}

/// ⑤ Records whether the violation was found corrected (`note`: how it was checked).
pub async fn check(
    db: &Database,
    case_id: u64,
    corrected: bool,
    note: &str,
    actor: &Actor,
) -> Result<(), ComplianceError> {
    let now_ms = unix_ms(actor.now);
    let mut event = actor.event(Step::Check, note);
    event.corrected = Some(corrected);
    record(db, case_id, event, move |trail| flow::may_check(trail, corrected, now_ms)).await
}
