//! The alert policy: what the carrier raises and clears when something
//! happens to a device, as a pure function from what happened to
//! [`Action`]s (as [`crate::compliance::flow`] returns refusals). The server
//! carries the actions out (store, then deliver); nothing here touches the
//! store, the network or the clock.
//!
//! | what happened | actions |
//! |---|---|
//! | a silent device marked down | raise `down` (warning) |
//! | a down device reports again | clear `down`; raise and clear `recovered` (a notice) |
//! | a threshold rises | raise `threshold:<metric>` at the new level |
//! | a threshold falls | clear `threshold:<metric>`, raise it again unless back to normal |
//! | an uplink failover | raise `failover` (caution) |
//! | a device refuses an order | raise `order-refused` (warning) |
//! | a renewal asks for another device identity | raise `enrol-refused` (warning) |

use std::time::Duration;

use cpe_protocol::{Event, Level};

/// Alert kind of a silent device.
pub const DOWN: &str = "down";
/// Alert kind of a device that reports again.
pub const RECOVERED: &str = "recovered";
/// Alert kind of an uplink failover.
pub const FAILOVER: &str = "failover";
/// Alert kind of a refused order.
pub const ORDER_REFUSED: &str = "order-refused";
/// Alert kind of a renewal refused because it asked for another identity.
pub const ENROL_REFUSED: &str = "enrol-refused";

/// What happened to a device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Happened<'a> {
    /// No heartbeat for `silent_after`: the device is now down.
    WentSilent {
        /// The silence limit.
        silent_after: Duration,
    },
    /// The device was down and reported again.
    Recovered,
    /// The device reported an event.
    Event(&'a Event),
    /// The device refused an order (its first acknowledgement).
    OrderRefused {
        /// Order kind as stored.
        kind: &'a str,
        /// Order id.
        id: u64,
        /// Its sequence number.
        sequence: u64,
        /// The device's reason.
        detail: &'a str,
    },
    /// A renewal CSR asked for another device identity than the client
    /// certificate's (impersonation of a sibling unit, or another institution).
    EnrolRefused {
        /// The identity the CSR asked for.
        asked: &'a str,
    },
}

/// One thing the server does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Clear the device's open alerts of `kind`.
    Clear {
        /// Alert kind.
        kind: String,
    },
    /// Record and deliver an alert.
    Raise {
        /// Alert kind.
        kind: String,
        /// Its level.
        level: Level,
        /// Text for the operator (English / Japanese).
        message: String,
    },
}

fn raise(kind: impl Into<String>, level: Level, message: String) -> Action {
    Action::Raise { kind: kind.into(), level, message }
}

fn clear(kind: impl Into<String>) -> Action {
    Action::Clear { kind: kind.into() }
}

/// The actions for what happened, in the order they are carried out.
pub fn actions(happened: &Happened<'_>) -> Vec<Action> {
    match happened {
        Happened::WentSilent { silent_after } => vec![raise(
            DOWN,
            Level::Warning,
            format!("no heartbeat for {} s / 死活監視: 応答なし", silent_after.as_secs()),
        )],
        // "recovered" is a notice, not a condition: it closes at once.
        Happened::Recovered => vec![
            clear(DOWN),
            raise(RECOVERED, Level::Normal, "heartbeats resumed / 死活監視: 復旧".into()),
            clear(RECOVERED),
        ],
        Happened::Event(Event::Threshold { metric, from, to, value }) => {
            let kind = format!("threshold:{metric}");
            let mut out = Vec::new();
            if *to == Level::Normal || to < from {
                out.push(clear(kind.clone()));
            }
            if *to != Level::Normal {
                out.push(raise(
                    kind,
                    *to,
                    format!("{metric} {} → {} ({value:.1})", from.as_str(), to.as_str()),
                ));
            }
            out
        }
        Happened::Event(Event::Failover { from, to }) => {
            let name = |u: &Option<String>| u.clone().unwrap_or_else(|| "none".into());
            vec![raise(
                FAILOVER,
                Level::Caution,
                format!("uplink failover {} → {} / 回線切替", name(from), name(to)),
            )]
        }
        Happened::Event(Event::Started { .. }) => Vec::new(),
        Happened::OrderRefused { kind, id, sequence, detail } => vec![raise(
            ORDER_REFUSED,
            Level::Warning,
            format!("device refused {kind} order {id} (sequence {sequence}): {detail} / 命令拒否"),
        )],
        Happened::EnrolRefused { asked } => vec![raise(
            ENROL_REFUSED,
            Level::Warning,
            format!(
                "renewal refused: the CSR asked for {asked}, not this device's identity / \
                 証明書更新を拒否: CSR が別の装置 {asked} を求めました"
            ),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold(from: Level, to: Level) -> Event {
        Event::Threshold { metric: "cpu".into(), from, to, value: 91.25 }
    }

    fn kinds(actions: &[Action]) -> Vec<(&'static str, &str)> {
        actions
            .iter()
            .map(|a| match a {
                Action::Clear { kind } => ("clear", kind.as_str()),
                Action::Raise { kind, .. } => ("raise", kind.as_str()),
            })
            .collect()
    }

    #[test]
    fn silence_raises_down_and_recovery_closes_it_with_a_notice() {
        let down = actions(&Happened::WentSilent { silent_after: Duration::from_mins(3) });
        assert_eq!(
            down,
            [Action::Raise {
                kind: DOWN.into(),
                level: Level::Warning,
                message: "no heartbeat for 180 s / 死活監視: 応答なし".into()
            }]
        );
        let back = actions(&Happened::Recovered);
        assert_eq!(kinds(&back), [("clear", DOWN), ("raise", RECOVERED), ("clear", RECOVERED)]);
        assert!(matches!(&back[1], Action::Raise { level: Level::Normal, .. }));
    }

    #[test]
    fn thresholds_raise_on_the_way_up_and_clear_on_the_way_down() {
        let up = actions(&Happened::Event(&threshold(Level::Normal, Level::Caution)));
        assert_eq!(
            up,
            [Action::Raise {
                kind: "threshold:cpu".into(),
                level: Level::Caution,
                message: "cpu normal → caution (91.2)".into()
            }]
        );
        let higher = actions(&Happened::Event(&threshold(Level::Caution, Level::Warning)));
        assert_eq!(kinds(&higher), [("raise", "threshold:cpu")]);
        let lower = actions(&Happened::Event(&threshold(Level::Warning, Level::Caution)));
        assert_eq!(kinds(&lower), [("clear", "threshold:cpu"), ("raise", "threshold:cpu")]);
        assert!(matches!(&lower[1], Action::Raise { level: Level::Caution, .. }));
        let normal = actions(&Happened::Event(&threshold(Level::Caution, Level::Normal)));
        assert_eq!(kinds(&normal), [("clear", "threshold:cpu")]);
    }

    #[test]
    fn a_renewal_for_another_identity_raises_enrol_refused() {
        let refused = actions(&Happened::EnrolRefused { asked: "1312345678/ward2" });
        assert_eq!(kinds(&refused), [("raise", ENROL_REFUSED)]);
        assert!(
            matches!(&refused[0], Action::Raise { level: Level::Warning, message, .. } if message.contains("1312345678/ward2"))
        );
    }

    #[test]
    fn failover_refusal_and_start() {
        let failover = Event::Failover { from: Some("wan0".into()), to: None };
        assert_eq!(
            actions(&Happened::Event(&failover)),
            [Action::Raise {
                kind: FAILOVER.into(),
                level: Level::Caution,
                message: "uplink failover wan0 → none / 回線切替".into()
            }]
        );
        let started = Event::Started { agent_version: "1.0".into() };
        assert!(actions(&Happened::Event(&started)).is_empty());
        let refused = Happened::OrderRefused { kind: "stop", id: 7, sequence: 3, detail: "expired" };
        assert_eq!(
            actions(&refused),
            [Action::Raise {
                kind: ORDER_REFUSED.into(),
                level: Level::Warning,
                message: "device refused stop order 7 (sequence 3): expired / 命令拒否".into()
            }]
        );
    }
}
