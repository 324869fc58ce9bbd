//! What each role may do: one table, pure.
//!
//! Roles are ordered ([`Role::Viewer`] < [`Role::Operator`] <
//! [`Role::Compliance`]) and each [`Action`] names the least role that may
//! take it, so a compliance officer can also run a diagnosis during a case,
//! while only `compliance` can cause an order (stop, resume, notice, key
//! rotation) to be signed or take a §2.2 step.

use crate::store::Role;

/// Something an operator asks the console or the API to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read devices, alerts, commands, cases, orders, audits, metrics.
    View,
    /// Acknowledge an alert.
    AcknowledgeAlert,
    /// Queue a command (heartbeat now, remote diagnosis).
    QueueCommand,
    /// Record maintenance or an incident.
    RecordIncident,
    /// Take a step of the §2.2 case flow (①–⑤).
    CaseStep,
    /// Cause an order to be signed: stop, resume, drill, key rotation.
    SignOrder,
}

impl Action {
    /// Every action.
    pub const ALL: [Self; 6] = [
        Self::View,
        Self::AcknowledgeAlert,
        Self::QueueCommand,
        Self::RecordIncident,
        Self::CaseStep,
        Self::SignOrder,
    ];

    /// The least role that may take this action.
    pub fn least_role(self) -> Role {
        match self {
            Self::View => Role::Viewer,
            Self::AcknowledgeAlert | Self::QueueCommand | Self::RecordIncident => Role::Operator,
            Self::CaseStep | Self::SignOrder => Role::Compliance,
        }
    }

    /// For messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::View => "view the fleet",
            Self::AcknowledgeAlert => "acknowledge alerts",
            Self::QueueCommand => "queue commands to devices",
            Self::RecordIncident => "record maintenance and incidents",
            Self::CaseStep => "take steps of a compliance case",
            Self::SignOrder => "cause a stop, resume or other signed order",
        }
    }
}

/// Whether `role` may take `action`.
pub fn allows(role: Role, action: Action) -> bool {
    role >= action.least_role()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_compliance_causes_signed_orders() {
        let signers: Vec<Role> = Role::ALL.into_iter().filter(|&r| allows(r, Action::SignOrder)).collect();
        assert_eq!(signers, [Role::Compliance]);
        assert!(!allows(Role::Operator, Action::CaseStep));
    }

    #[test]
    fn everyone_views_and_viewers_change_nothing() {
        for role in Role::ALL {
            assert!(allows(role, Action::View));
        }
        let viewer: Vec<Action> = Action::ALL.into_iter().filter(|&a| allows(Role::Viewer, a)).collect();
        assert_eq!(viewer, [Action::View]);
        for a in [Action::AcknowledgeAlert, Action::QueueCommand, Action::RecordIncident] {
            assert!(allows(Role::Operator, a) && allows(Role::Compliance, a), "{a:?}");
        }
    }
}
