//! Carrying out the alert policy ([`crate::alerts::policy`]): each
//! [`Action`] in order — clear in the store, or record in the store and then
//! hand to delivery. A store failure is logged and never fails the request
//! that caused it.

use super::State;
use crate::alerts::{actions, Action, Alert, Happened};
use crate::pki::validity::rfc3339;
use crate::store::NewAlert;

/// What the policy says to do about `happened` to `device`, done.
pub(super) async fn carry_out(state: &State, device: &str, happened: &Happened<'_>, now: i64) {
    for action in actions(happened) {
        match action {
            Action::Clear { kind } => {
                if let Err(e) = state.db.clear_alerts(device, &kind, now).await {
                    tracing::error!(device, kind, error = %e, "could not clear alerts");
                }
            }
            Action::Raise { kind, level, message } => {
                let new = NewAlert {
                    device_id: device.to_owned(),
                    kind,
                    level: level.as_str().to_owned(),
                    message,
                    at_ms: now,
                };
                match state.db.raise_alert(new.clone()).await {
                    Ok(id) => state.alerts.raise(Alert {
                        id,
                        device_id: new.device_id,
                        kind: new.kind,
                        level: new.level,
                        message: new.message,
                        at: rfc3339(
                            time::OffsetDateTime::from_unix_timestamp(now / 1000)
                                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                        ),
                    }),
                    Err(e) => {
                        tracing::error!(device, kind = new.kind, error = %e, "could not record an alert");
                    }
                }
            }
        }
    }
}
