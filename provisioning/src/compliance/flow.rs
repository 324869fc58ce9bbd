//! The guideline §2.2 compliance flow as pure rules: given a case's trail
//! and the time, may the carrier take the next step?
//!
//! ① fact (`case open`) → ② hearing (skipped only when urgent) → ③ report to
//! the platform operator → ④ corrective recommendation with a deadline →
//! ⑤ check after the deadline → ⑥ stop order → ⑦ the device's notice; the
//! service resumes once correction is confirmed. An urgent stop (with a
//! written justification) may skip ②–⑤.
//!
//! Nothing here reads a clock or a database: the use cases of
//! [`super::cases`] and [`super::orders`] load the trail, ask these functions,
//! and record the step only when they allow it (and ask again inside the
//! recording transaction). Every
//! [`Refusal`] says why and which command to run instead.

use serde::Serialize;

use crate::clock::rfc3339_ms;
use crate::store::CaseDetail;
pub use crate::store::Step;

/// What the rules need of one trail entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrailEvent {
    /// The step.
    pub step: Step,
    /// When it was recorded, Unix ms.
    pub at_ms: i64,
    /// For [`Step::Recommend`]: the deadline, Unix ms.
    pub deadline_ms: Option<i64>,
    /// For [`Step::Check`]: whether the violation was found corrected.
    pub corrected: Option<bool>,
}

/// A case's trail, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trail {
    /// The case id (for messages).
    pub case_id: u64,
    /// The events, oldest first.
    pub events: Vec<TrailEvent>,
}

impl Trail {
    /// The trail of a stored case, which the rules judge.
    pub fn of(case: &CaseDetail) -> Self {
        Self {
            case_id: case.case.id,
            events: case
                .events
                .iter()
                .map(|e| TrailEvent {
                    step: e.step,
                    at_ms: e.at_ms,
                    deadline_ms: e.deadline_ms,
                    corrected: e.corrected,
                })
                .collect(),
        }
    }
}

/// Why a step is not allowed now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// ① while the device's latest case is not closed.
    #[error(
        "{device} already has open case {case} ({state}); continue it (`cpe-provision case show {case}`)"
    )]
    CaseOpen {
        /// The device.
        device: String,
        /// Its open case.
        case: u64,
        /// Where that case stands ([`CaseState::label`]).
        state: &'static str,
    },
    /// The service was resumed: the case is over.
    #[error("case {case} is closed (the service was resumed); open a new case with `cpe-provision case open --device ID --fact \"…\"`")]
    Closed {
        /// Case id.
        case: u64,
    },
    /// ② has not happened.
    #[error("case {case} has no hearing yet (§2.2 ②); record it with `cpe-provision case hearing --case {case} --summary \"…\"`, or when the matter is urgent `--skip-urgent --justification \"…\"`")]
    NoHearing {
        /// Case id.
        case: u64,
    },
    /// ③ has not happened.
    #[error("case {case} has not been reported to the platform operator yet (§2.2 ③); record it with `cpe-provision case report --case {case} --to \"platform operator\" --text \"…\"`")]
    NoReport {
        /// Case id.
        case: u64,
    },
    /// ④ has not happened.
    #[error("case {case} has no corrective recommendation (§2.2 ④); issue one with `cpe-provision case recommend --case {case} --deadline RFC3339 --text \"…\"`, or for an urgent stop give --urgent --justification \"…\"")]
    NoRecommendation {
        /// Case id.
        case: u64,
    },
    /// A recommendation deadline must lie in the future.
    #[error("the deadline {} is not in the future; give a later --deadline (RFC 3339, e.g. 2026-06-01T00:00:00Z)", rfc3339_ms(*deadline_ms))]
    DeadlinePassed {
        /// The deadline given, Unix ms.
        deadline_ms: i64,
    },
    /// ⑥ before the deadline of ④.
    #[error("case {case}: the corrective recommendation's deadline {} has not passed; the institution may still correct. Check after the deadline (`cpe-provision case check --case {case} --corrected yes|no`), or for an urgent stop give --urgent --justification \"…\"", rfc3339_ms(*deadline_ms))]
    BeforeDeadline {
        /// Case id.
        case: u64,
        /// The deadline, Unix ms.
        deadline_ms: i64,
    },
    /// ⑥ without a ⑤ that found the violation uncorrected.
    #[error("case {case}: no check after the deadline found the violation uncorrected (§2.2 ⑤); record one with `cpe-provision case check --case {case} --corrected no`, or for an urgent stop give --urgent --justification \"…\"")]
    NoFailedCheck {
        /// Case id.
        case: u64,
    },
    /// A check needs something to check.
    #[error("case {case} has neither a corrective recommendation nor a stop to check; issue the recommendation first with `cpe-provision case recommend --case {case} --deadline RFC3339 --text \"…\"`")]
    NothingToCheck {
        /// Case id.
        case: u64,
    },
    /// "Not corrected" before the deadline is premature.
    #[error("case {case}: the deadline {} has not passed, so the violation cannot be found uncorrected yet; check again after the deadline (a correction may be recorded at any time with --corrected yes)", rfc3339_ms(*deadline_ms))]
    CheckBeforeDeadline {
        /// Case id.
        case: u64,
        /// The deadline, Unix ms.
        deadline_ms: i64,
    },
    /// A second stop while one is in force.
    #[error("case {case} already has a stop order in force; see `cpe-provision order list --device ID`, or lift it with `cpe-provision order resume`")]
    AlreadyStopped {
        /// Case id.
        case: u64,
    },
    /// Resume without anything in force.
    #[error(
        "case {case} has no stop order or corrective recommendation in force; there is nothing to resume"
    )]
    NothingToResume {
        /// Case id.
        case: u64,
    },
    /// Resume without a confirmed correction.
    #[error("case {case}: no check has confirmed the correction; record one with `cpe-provision case check --case {case} --corrected yes`, or give --justification \"…\" to resume anyway")]
    NotCorrected {
        /// Case id.
        case: u64,
    },
    /// An empty justification.
    #[error("the justification is empty; say in --justification why this cannot wait for the normal flow")]
    EmptyJustification,
}

/// Where a case stands, derived from its trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CaseState {
    /// ② happened or was skipped as urgent.
    pub heard: bool,
    /// ③ happened.
    pub reported: bool,
    /// The latest recommendation's deadline, Unix ms.
    pub deadline_ms: Option<i64>,
    /// The latest check: when, and whether corrected.
    pub last_check: Option<(i64, bool)>,
    /// Whether a stop is in force or the case is over.
    pub phase: Phase,
}

/// Where the service of a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// No stop in force.
    #[default]
    Open,
    /// A stop is in force (the last stop came after the last resume).
    Stopped,
    /// The service was resumed: the case is over.
    Closed,
}

impl CaseState {
    /// Folds the trail.
    pub fn of(trail: &Trail) -> Self {
        let mut state = Self::default();
        for e in &trail.events {
            match e.step {
                Step::Fact => {}
                Step::Hearing | Step::HearingSkipped => state.heard = true,
                Step::Report => state.reported = true,
                Step::Recommend => state.deadline_ms = e.deadline_ms.or(state.deadline_ms),
                Step::Check => state.last_check = e.corrected.map(|c| (e.at_ms, c)),
                Step::Stop => state.phase = Phase::Stopped,
                Step::Resume => state.phase = Phase::Closed,
            }
        }
        state
    }

    /// A short English label: `open`, `recommended`, `suspended`, `closed`.
    pub fn label(&self) -> &'static str {
        match self.phase {
            Phase::Closed => "closed",
            Phase::Stopped => "suspended",
            Phase::Open if self.deadline_ms.is_some() => "recommended",
            Phase::Open => "open",
        }
    }

    /// A stop is in force.
    pub fn stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// The service was resumed: the case is over.
    pub fn closed(&self) -> bool {
        self.phase == Phase::Closed
    }
}

fn open(trail: &Trail) -> Result<CaseState, Refusal> {
    let state = CaseState::of(trail);
    if state.closed() {
        return Err(Refusal::Closed { case: trail.case_id });
    }
    Ok(state)
}

/// ① needs the device's latest case, if any, to be closed.
pub fn may_open(device: &str, latest: Option<&Trail>) -> Result<(), Refusal> {
    match latest {
        Some(trail) if !CaseState::of(trail).closed() => Err(Refusal::CaseOpen {
            device: device.to_owned(),
            case: trail.case_id,
            state: CaseState::of(trail).label(),
        }),
        _ => Ok(()),
    }
}

/// ② may be recorded (or skipped as urgent) while the case is open.
pub fn may_hear(trail: &Trail) -> Result<(), Refusal> {
    open(trail).map(drop)
}

/// ③ needs ②.
pub fn may_report(trail: &Trail) -> Result<(), Refusal> {
    let state = open(trail)?;
    if !state.heard {
        return Err(Refusal::NoHearing { case: trail.case_id });
    }
    Ok(())
}

/// ④ needs ② and ③, and a deadline after `now_ms`.
pub fn may_recommend(trail: &Trail, deadline_ms: i64, now_ms: i64) -> Result<(), Refusal> {
    let state = open(trail)?;
    if !state.heard {
        return Err(Refusal::NoHearing { case: trail.case_id });
    }
    if !state.reported {
        return Err(Refusal::NoReport { case: trail.case_id });
    }
    if deadline_ms <= now_ms {
        return Err(Refusal::DeadlinePassed { deadline_ms });
    }
    Ok(())
}

/// ⑤ needs a recommendation or a stop; "not corrected" only after the deadline
/// (while no stop is in force).
pub fn may_check(trail: &Trail, corrected: bool, now_ms: i64) -> Result<(), Refusal> {
    let state = open(trail)?;
    match state.deadline_ms {
        None if !state.stopped() => Err(Refusal::NothingToCheck { case: trail.case_id }),
        Some(deadline_ms) if !corrected && !state.stopped() && now_ms < deadline_ms => {
            Err(Refusal::CheckBeforeDeadline { case: trail.case_id, deadline_ms })
        }
        _ => Ok(()),
    }
}

/// On what grounds a stop was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopBasis {
    /// The full flow: the deadline passed and a check found no correction.
    FailedCheck,
    /// Urgent, with a justification.
    Urgent,
}

/// ⑥: the full flow (deadline passed, a later check found the violation
/// uncorrected) or an urgent justification; never while a stop is in force.
pub fn may_stop(
    trail: &Trail,
    now_ms: i64,
    urgent_justification: Option<&str>,
) -> Result<StopBasis, Refusal> {
    let case = trail.case_id;
    let state = open(trail)?;
    if state.stopped() {
        return Err(Refusal::AlreadyStopped { case });
    }
    if let Some(justification) = urgent_justification {
        if justification.trim().is_empty() {
            return Err(Refusal::EmptyJustification);
        }
        return Ok(StopBasis::Urgent);
    }
    if !state.heard {
        return Err(Refusal::NoHearing { case });
    }
    if !state.reported {
        return Err(Refusal::NoReport { case });
    }
    let Some(deadline_ms) = state.deadline_ms else { return Err(Refusal::NoRecommendation { case }) };
    if now_ms < deadline_ms {
        return Err(Refusal::BeforeDeadline { case, deadline_ms });
    }
    match state.last_check {
        Some((at, false)) if at >= deadline_ms => Ok(StopBasis::FailedCheck),
        _ => Err(Refusal::NoFailedCheck { case }),
    }
}

/// Lifting a stop (or a recommendation notice) needs the latest check to have
/// found the violation corrected, or a justification.
pub fn may_resume(trail: &Trail, justification: Option<&str>) -> Result<(), Refusal> {
    let case = trail.case_id;
    let state = open(trail)?;
    if !state.stopped() && state.deadline_ms.is_none() {
        return Err(Refusal::NothingToResume { case });
    }
    if let Some(j) = justification {
        if j.trim().is_empty() {
            return Err(Refusal::EmptyJustification);
        }
        return Ok(());
    }
    match state.last_check {
        Some((_, true)) => Ok(()),
        _ => Err(Refusal::NotCorrected { case }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const T0: i64 = 1_777_636_800_000;

    fn ev(step: Step, at_ms: i64) -> TrailEvent {
        TrailEvent { step, at_ms, deadline_ms: None, corrected: None }
    }

    fn trail(events: Vec<TrailEvent>) -> Trail {
        Trail { case_id: 4, events }
    }

    fn recommended(deadline: i64) -> Vec<TrailEvent> {
        vec![
            ev(Step::Fact, T0),
            ev(Step::Hearing, T0 + 1),
            ev(Step::Report, T0 + 2),
            TrailEvent { deadline_ms: Some(deadline), ..ev(Step::Recommend, T0 + 3) },
        ]
    }

    fn check(at: i64, corrected: bool) -> TrailEvent {
        TrailEvent { corrected: Some(corrected), ..ev(Step::Check, at) }
    }

    #[test]
    fn steps_round_trip() {
        for step in Step::ALL {
            assert_eq!(step.as_str().parse::<Step>(), Ok(step));
        }
        assert!("sideways".parse::<Step>().is_err());
    }

    #[test]
    fn each_step_needs_the_previous_ones() {
        let fact = trail(vec![ev(Step::Fact, T0)]);
        assert_eq!(may_hear(&fact), Ok(()));
        assert_eq!(may_report(&fact), Err(Refusal::NoHearing { case: 4 }));
        assert_eq!(may_recommend(&fact, T0 + DAY, T0), Err(Refusal::NoHearing { case: 4 }));
        let heard = trail(vec![ev(Step::Fact, T0), ev(Step::HearingSkipped, T0)]);
        assert_eq!(may_report(&heard), Ok(()));
        assert_eq!(may_recommend(&heard, T0 + DAY, T0), Err(Refusal::NoReport { case: 4 }));
        let reported = trail(vec![ev(Step::Fact, T0), ev(Step::Hearing, T0), ev(Step::Report, T0)]);
        assert_eq!(may_recommend(&reported, T0 + DAY, T0), Ok(()));
        assert_eq!(may_recommend(&reported, T0, T0), Err(Refusal::DeadlinePassed { deadline_ms: T0 }));
        assert_eq!(may_check(&reported, true, T0), Err(Refusal::NothingToCheck { case: 4 }));
        assert_eq!(may_stop(&reported, T0, None), Err(Refusal::NoRecommendation { case: 4 }));
        assert_eq!(may_stop(&fact, T0, None), Err(Refusal::NoHearing { case: 4 }));
        assert_eq!(may_stop(&heard, T0, None), Err(Refusal::NoReport { case: 4 }));
    }

    #[test]
    fn stop_needs_the_deadline_passed_and_a_failed_check_after_it() {
        let deadline = T0 + 7 * DAY;
        let t = trail(recommended(deadline));
        assert_eq!(
            may_stop(&t, deadline - 1, None),
            Err(Refusal::BeforeDeadline { case: 4, deadline_ms: deadline })
        );
        assert_eq!(may_stop(&t, deadline, None), Err(Refusal::NoFailedCheck { case: 4 }));
        // "Not corrected" cannot be recorded before the deadline; "corrected" can.
        assert_eq!(
            may_check(&t, false, deadline - 1),
            Err(Refusal::CheckBeforeDeadline { case: 4, deadline_ms: deadline })
        );
        assert_eq!(may_check(&t, true, deadline - 1), Ok(()));
        assert_eq!(may_check(&t, false, deadline), Ok(()));
        // A failed check recorded before the deadline (not possible through
        // may_check, but the rule must not rely on that) does not count.
        let mut early = recommended(deadline);
        early.push(check(deadline - 1, false));
        assert_eq!(may_stop(&trail(early), deadline + 1, None), Err(Refusal::NoFailedCheck { case: 4 }));
        let mut failed = recommended(deadline);
        failed.push(check(deadline + 5, false));
        assert_eq!(may_stop(&trail(failed.clone()), deadline + 6, None), Ok(StopBasis::FailedCheck));
        // Corrected after all: no stop.
        failed.push(check(deadline + 7, true));
        assert_eq!(may_stop(&trail(failed), deadline + 8, None), Err(Refusal::NoFailedCheck { case: 4 }));
    }

    #[test]
    fn urgent_stop_skips_the_flow_but_needs_a_justification() {
        let fact = trail(vec![ev(Step::Fact, T0)]);
        assert_eq!(may_stop(&fact, T0, Some("ransomware spreading to the platform")), Ok(StopBasis::Urgent));
        assert_eq!(may_stop(&fact, T0, Some("  ")), Err(Refusal::EmptyJustification));
        let before_deadline = trail(recommended(T0 + DAY));
        assert_eq!(may_stop(&before_deadline, T0 + 10, Some("attack")), Ok(StopBasis::Urgent));
    }

    #[test]
    fn one_stop_at_a_time_and_resume_closes_the_case() {
        let mut events = vec![ev(Step::Fact, T0), ev(Step::Stop, T0 + 1)];
        let stopped = trail(events.clone());
        assert_eq!(CaseState::of(&stopped).label(), "suspended");
        assert_eq!(may_stop(&stopped, T0 + 2, Some("again")), Err(Refusal::AlreadyStopped { case: 4 }));
        assert_eq!(may_resume(&stopped, None), Err(Refusal::NotCorrected { case: 4 }));
        assert_eq!(may_resume(&stopped, Some("")), Err(Refusal::EmptyJustification));
        assert_eq!(may_resume(&stopped, Some("platform operator asked to restore")), Ok(()));
        // After a stop, a check may say "not corrected" at any time, then "corrected".
        assert_eq!(may_check(&stopped, false, T0 + 2), Ok(()));
        events.push(check(T0 + 3, false));
        assert_eq!(may_resume(&trail(events.clone()), None), Err(Refusal::NotCorrected { case: 4 }));
        events.push(check(T0 + 4, true));
        assert_eq!(may_resume(&trail(events.clone()), None), Ok(()));
        events.push(ev(Step::Resume, T0 + 5));
        let closed = trail(events);
        assert_eq!(CaseState::of(&closed).label(), "closed");
        assert_eq!(may_resume(&closed, None), Err(Refusal::Closed { case: 4 }));
        assert_eq!(may_stop(&closed, T0 + 6, Some("x")), Err(Refusal::Closed { case: 4 }));
        assert_eq!(may_hear(&closed), Err(Refusal::Closed { case: 4 }));
        assert_eq!(may_open("d", Some(&closed)), Ok(()));
        assert_eq!(may_open("d", None), Ok(()));
        let open = trail(recommended(T0 + DAY));
        assert_eq!(
            may_open("d", Some(&open)),
            Err(Refusal::CaseOpen { device: "d".into(), case: 4, state: "recommended" })
        );
    }

    #[test]
    fn resume_needs_something_in_force() {
        let fact = trail(vec![ev(Step::Fact, T0)]);
        assert_eq!(may_resume(&fact, Some("why")), Err(Refusal::NothingToResume { case: 4 }));
        // A recommendation notice may be lifted once corrected.
        let mut events = recommended(T0 + DAY);
        assert_eq!(may_resume(&trail(events.clone()), None), Err(Refusal::NotCorrected { case: 4 }));
        events.push(check(T0 + 10, true));
        let t = trail(events);
        assert_eq!(CaseState::of(&t).label(), "recommended");
        assert_eq!(may_resume(&t, None), Ok(()));
    }

    #[test]
    fn refusals_say_what_to_do() {
        let text = Refusal::BeforeDeadline { case: 4, deadline_ms: T0 }.to_string();
        assert!(text.contains("2026-05-01T12:00:00Z") && text.contains("--urgent"), "{text}");
        assert!(Refusal::NoFailedCheck { case: 4 }
            .to_string()
            .contains("case check --case 4 --corrected no"));
    }
}
