//! Judgements of the path beyond the device: reachability, loss, latency
//! and jitter of echo series, the path MTU, the active uplink and the four
//! steps of the carrier exchange.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::{skipped, Judged};
use crate::config::DiagnoseConfig;
use crate::diagnose::exchange::{ConnectFailure, Exchange, ExchangeOutcome};
use crate::diagnose::observe::RouteV4;
use crate::diagnose::probes::{PingOutcome, Probes};
use crate::diagnose::run::plan::RunInput;
use crate::diagnose::{CheckStatus, Evidence};
use crate::metrics::to_f64;

fn loss_pct(outcome: &PingOutcome) -> f64 {
    let sent = outcome.sent.max(1);
    to_f64(u64::from(sent).saturating_sub(outcome.received() as u64)) * 100.0 / to_f64(u64::from(sent))
}

fn ms(us: u64) -> f64 {
    to_f64(us) / 1000.0
}

fn ping_evidence(outcome: &PingOutcome, target: &str) -> Evidence {
    let mut e = Evidence::new(String::new())
        .with("target", target)
        .with("sent", outcome.sent.to_string())
        .with("received", outcome.received().to_string())
        .with("loss_pct", format!("{:.0}", loss_pct(outcome)));
    if !outcome.rtts_us.is_empty() {
        let avg = outcome.rtts_us.iter().sum::<u64>() / outcome.rtts_us.len() as u64;
        e = e.with("rtt_avg_ms", format!("{:.1}", ms(avg)));
    }
    if let Some(error) = &outcome.error {
        e = e.with("error", error.clone());
    }
    e
}

/// Reachability: any answer is ok; none fails; a probe that could not send at all is skipped.
pub fn judge_reachable(outcome: &PingOutcome, target: &str) -> Judged {
    let e = ping_evidence(outcome, target);
    if outcome.sent == 0 {
        let why = outcome.error.clone().unwrap_or_else(|| "nothing was sent".into());
        if why.contains("ICMP socket") {
            return (CheckStatus::Skipped, Evidence { text: why, ..e });
        }
        return (CheckStatus::Failed, Evidence { text: format!("cannot send to {target}: {why}"), ..e });
    }
    if outcome.received() == 0 {
        (
            CheckStatus::Failed,
            Evidence { text: format!("no echo reply from {target} ({} sent)", outcome.sent), ..e },
        )
    } else {
        let text = format!("{target} answers ({}/{} replies)", outcome.received(), outcome.sent);
        (CheckStatus::Ok, Evidence { text, ..e })
    }
}

pub fn judge_active<P: Probes>(probes: &P, input: &RunInput, route: Option<&RouteV4>) -> Judged {
    let Some(route) = route else {
        return (
            CheckStatus::Failed,
            Evidence::new("no uplink carries a default route").with("active", "none"),
        );
    };
    let role = if input.primary.as_deref() == Some(route.iface.as_str()) {
        "primary"
    } else if input.backup.as_deref() == Some(route.iface.as_str()) {
        "backup"
    } else {
        "other"
    };
    let e = Evidence::new(String::new()).with("active", role).with("iface", route.iface.clone());
    match probes.interface(&route.iface) {
        Some(s) if s.oper_up && s.carrier => (
            CheckStatus::Ok,
            Evidence { text: format!("traffic leaves over the {role} uplink {}", route.iface), ..e },
        ),
        Some(s) => (
            CheckStatus::Failed,
            Evidence {
                text: format!(
                    "the default route uses {} ({role}) but it has no link (operstate {})",
                    route.iface, s.operstate
                ),
                ..e
            },
        ),
        None => (
            CheckStatus::Failed,
            Evidence { text: format!("the default route uses {}, which does not exist", route.iface), ..e },
        ),
    }
}

pub fn judge_quality(
    outcome: &PingOutcome,
    target: &str,
    settings: &DiagnoseConfig,
) -> (Judged, Judged, Judged) {
    if outcome.sent == 0 {
        let why = outcome.error.clone().unwrap_or_else(|| "nothing was sent".into());
        let status = if why.contains("ICMP socket") { CheckStatus::Skipped } else { CheckStatus::Failed };
        let e = ping_evidence(outcome, target);
        return ((status, Evidence { text: why.clone(), ..e }), skipped(why.clone()), skipped(why));
    }
    let loss = loss_pct(outcome);
    let e = ping_evidence(outcome, target);
    let loss_status = if loss >= settings.loss_fail_pct {
        CheckStatus::Failed
    } else if loss >= settings.loss_warn_pct && loss > 0.0 {
        CheckStatus::Warning
    } else {
        CheckStatus::Ok
    };
    let loss_judged = (
        loss_status,
        Evidence {
            text: format!("{loss:.0}% loss to {target} ({}/{} replies)", outcome.received(), outcome.sent),
            ..e
        },
    );
    if outcome.rtts_us.is_empty() {
        let why = format!("no reply from {target}");
        return (loss_judged, skipped(why.clone()), skipped(why));
    }
    let n = outcome.rtts_us.len() as u64;
    let avg = ms(outcome.rtts_us.iter().sum::<u64>() / n);
    let min = ms(outcome.rtts_us.iter().copied().min().unwrap_or(0));
    let max = ms(outcome.rtts_us.iter().copied().max().unwrap_or(0));
    let latency_status = if avg >= settings.latency_fail_ms {
        CheckStatus::Failed
    } else if avg >= settings.latency_warn_ms {
        CheckStatus::Warning
    } else {
        CheckStatus::Ok
    };
    let latency = (
        latency_status,
        Evidence::new(format!("round trip to {target}: avg {avg:.1} ms (min {min:.1}, max {max:.1})"))
            .with("target", target)
            .with("rtt_avg_ms", format!("{avg:.1}"))
            .with("rtt_min_ms", format!("{min:.1}"))
            .with("rtt_max_ms", format!("{max:.1}")),
    );
    let diffs: Vec<u64> = outcome.rtts_us.windows(2).map(|w| w[0].abs_diff(w[1])).collect();
    let jitter = if diffs.is_empty() {
        skipped("one reply only: no jitter")
    } else {
        let j = ms(diffs.iter().sum::<u64>() / diffs.len() as u64);
        let status = if j >= settings.jitter_warn_ms { CheckStatus::Warning } else { CheckStatus::Ok };
        (
            status,
            Evidence::new(format!("jitter {j:.1} ms to {target}"))
                .with("target", target)
                .with("jitter_ms", format!("{j:.1}")),
        )
    };
    (loss_judged, latency, jitter)
}

/// Seven sizes evenly between the largest size that passed and the
/// smallest larger one that did not, when they are more than 8 bytes apart.
pub fn mtu_refinement(outcomes: &[(u32, PingOutcome)]) -> Option<Vec<u32>> {
    let passed = outcomes.iter().filter(|(_, o)| o.received() > 0).map(|(s, _)| *s).max()?;
    let failed = outcomes.iter().filter(|(s, o)| *s > passed && o.received() == 0).map(|(s, _)| *s).min()?;
    let gap = failed - passed;
    (gap > 8).then(|| {
        let mut sizes: Vec<u32> =
            (1..8).map(|k| passed + gap * k / 8).filter(|s| *s > passed && *s < failed).collect();
        sizes.dedup();
        sizes
    })
}

/// The IP packet sizes probed with "don't fragment", largest first: the
/// expected MTU, the usual tunnel overheads below it, and common floors.
pub fn mtu_ladder(expected: u32) -> Vec<u32> {
    let mut sizes: Vec<u32> = [0, 8, 20, 40, 80]
        .iter()
        .map(|d| expected.saturating_sub(*d))
        .chain([1280, 1000, 576])
        .filter(|s| *s <= expected && *s >= 576)
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.dedup();
    sizes
}

pub fn judge_mtu(outcomes: &[(u32, PingOutcome)], expected: u32, target: &str) -> Judged {
    let largest_ok = outcomes.iter().filter(|(_, o)| o.received() > 0).map(|(s, _)| *s).max();
    let announced = outcomes.iter().find_map(|(_, o)| o.too_big_mtu);
    let local = outcomes.iter().any(|(_, o)| o.local_too_big);
    let mut e =
        Evidence::new(String::new()).with("target", target).with("expected_mtu", expected.to_string());
    if let Some(mtu) = announced {
        e = e.with("too_big_mtu", mtu.to_string());
    }
    let Some(found) = largest_ok else {
        let why = outcomes
            .iter()
            .find_map(|(_, o)| o.error.clone())
            .unwrap_or_else(|| format!("{target} answers no echo"));
        return (CheckStatus::Skipped, Evidence { text: format!("path MTU unknown: {why}"), ..e });
    };
    e = e.with("mtu_found", found.to_string());
    if found >= expected {
        return (
            CheckStatus::Ok,
            Evidence { text: format!("{expected}-byte packets pass unfragmented to {target}"), ..e },
        );
    }
    if let Some(size) =
        outcomes.iter().filter(|(s, o)| *s > found && o.received() == 0).map(|(s, _)| *s).min()
    {
        e = e.with("mtu_lost_from", size.to_string());
    }
    if announced.is_some() || local {
        let text =
            format!("path MTU {found} is below {expected}, but the path says so (PMTU discovery works)");
        (CheckStatus::Warning, Evidence { text, ..e }.with("black_hole", "false"))
    } else {
        let text = format!(
            "MTU black hole: {found}-byte DF packets pass but larger ones up to {expected} vanish without an ICMP error"
        );
        (CheckStatus::Failed, Evidence { text, ..e }.with("black_hole", "true"))
    }
}

#[allow(clippy::too_many_lines)] // one arm per way the exchange can end
/// Maps a carrier exchange to `[uplink.tcp_connect, uplink.tls_handshake,
/// carrier.certificate_accepted, carrier.status]`.
pub fn judge_exchange(x: &Exchange, addr: SocketAddr, now_unix: i64) -> [Judged; 4] {
    let mut base = Evidence::new(String::new()).with("address", addr.to_string());
    if let Some(ms) = x.connect_ms {
        base = base.with("connect_ms", ms.to_string());
    }
    let tcp_ok = |text: String| (CheckStatus::Ok, Evidence { text, ..base.clone() });
    let mut tls_e = Evidence::new(String::new()).with("address", addr.to_string());
    if let Some(ms) = x.handshake_ms {
        tls_e = tls_e.with("handshake_ms", ms.to_string());
    }
    if let Some(v) = &x.tls_version {
        tls_e = tls_e.with("tls_version", v.clone());
    }
    let tls_ok = (
        CheckStatus::Ok,
        Evidence {
            text: "TLS handshake completed; the carrier's certificate is valid".into(),
            ..tls_e.clone()
        },
    );
    let connected = format!("connected to {addr}");
    match &x.outcome {
        ExchangeOutcome::NotConnected(ConnectFailure::Refused) => [
            (
                CheckStatus::Ok,
                Evidence { text: format!("{addr} answered with a reset: the path works"), ..base.clone() }
                    .with("refused", "true"),
            ),
            skipped("the carrier refused the connection"),
            skipped("the carrier refused the connection"),
            (
                CheckStatus::Failed,
                Evidence::new(format!("connection refused by {addr}: the carrier server is not running"))
                    .with("address", addr.to_string())
                    .with("refused", "true"),
            ),
        ],
        ExchangeOutcome::NotConnected(failure) => {
            let why = match failure {
                ConnectFailure::Timeout => "no answer (timeout)".to_owned(),
                ConnectFailure::Other(e) => e.clone(),
                ConnectFailure::Refused => "refused".to_owned(),
            };
            [
                (
                    CheckStatus::Failed,
                    Evidence { text: format!("cannot connect to {addr}: {why}"), ..base.clone() }
                        .with("error", why),
                ),
                skipped("not connected"),
                skipped("not connected"),
                skipped("not connected"),
            ]
        }
        ExchangeOutcome::NoTls(why) => {
            [tcp_ok(connected), skipped(why.clone()), skipped(why.clone()), skipped(why.clone())]
        }
        ExchangeOutcome::ServerCertificate(why) => [
            tcp_ok(connected),
            (
                CheckStatus::Failed,
                Evidence {
                    text: format!("the server's certificate is not accepted: {why}"),
                    ..tls_e.clone()
                }
                .with("error", why.clone()),
            ),
            skipped("no trusted TLS session"),
            skipped("no trusted TLS session"),
        ],
        ExchangeOutcome::CertificateRefused { alert } => [
            tcp_ok(connected),
            tls_ok,
            (
                CheckStatus::Failed,
                Evidence::new(format!("the carrier refused the institution certificate (TLS alert {alert})"))
                    .with("alert", alert.clone()),
            ),
            skipped("the carrier refused the institution certificate"),
        ],
        ExchangeOutcome::TlsBroken(why) => [
            tcp_ok(connected),
            (
                CheckStatus::Failed,
                Evidence { text: format!("the TLS handshake broke off: {why}"), ..tls_e.clone() }
                    .with("error", why.clone()),
            ),
            skipped("no TLS session"),
            skipped("no TLS session"),
        ],
        ExchangeOutcome::NoAnswer(why) => [
            tcp_ok(connected),
            tls_ok,
            skipped("no HTTP answer"),
            (
                CheckStatus::Failed,
                Evidence::new(format!("no answer to GET /v1/ping: {why}")).with("error", why.clone()),
            ),
        ],
        ExchangeOutcome::Answered { status, pong, message } => {
            let http = status.to_string();
            if *status == 401 || *status == 403 {
                return [
                    tcp_ok(connected),
                    tls_ok,
                    (
                        CheckStatus::Failed,
                        Evidence::new(format!("the carrier answered {status}: {message}"))
                            .with("http_status", http),
                    ),
                    skipped("the carrier refused the institution certificate"),
                ];
            }
            let accepted =
                (CheckStatus::Ok, Evidence::new("the carrier accepted the institution certificate"));
            let status_judged = match pong {
                Some(p) if *status == 200 => {
                    let skew = now_unix - p.server_unix;
                    (
                        CheckStatus::Ok,
                        Evidence::new(format!("the carrier answers (device {})", p.device_id))
                            .with("http_status", http)
                            .with("device_id", p.device_id.clone())
                            .with("server_unix", p.server_unix.to_string())
                            .with("clock_skew_s", skew.to_string()),
                    )
                }
                _ => {
                    let mut text = String::new();
                    let _ = write!(text, "the carrier answered {status}");
                    if !message.is_empty() {
                        let _ = write!(text, ": {message}");
                    }
                    (CheckStatus::Failed, Evidence::new(text).with("http_status", http))
                }
            };
            [tcp_ok(connected), tls_ok, accepted, status_judged]
        }
    }
}
