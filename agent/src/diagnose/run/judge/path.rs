//! Judgements of the path beyond the device: reachability, loss, latency
//! and jitter of echo series, the path MTU, the active uplink and the four
//! steps of the carrier exchange.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::{skipped, Judged};
use crate::config::DiagnoseConfig;
use crate::diagnose::exchange::{ConnectFailure, Exchange, ExchangeOutcome};
use crate::diagnose::observe::RouteV4;
use crate::diagnose::probes::{PingOutcome, Probes};
use crate::diagnose::run::plan::RunInput;
use crate::diagnose::{CheckStatus, Evidence, Text};
use crate::metrics::to_f64;

fn loss_pct(outcome: &PingOutcome) -> f64 {
    let sent = outcome.sent.max(1);
    to_f64(u64::from(sent).saturating_sub(outcome.received() as u64)) * 100.0 / to_f64(u64::from(sent))
}

fn ms(us: u64) -> f64 {
    to_f64(us) / 1000.0
}

fn ping_evidence(outcome: &PingOutcome, target: &str) -> Evidence {
    let mut e = Evidence::default()
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

/// Why an echo series sent nothing: skipped when this system offers no ICMP
/// socket (the probe cannot run, which proves nothing), else failed.
fn not_sent(outcome: &PingOutcome) -> (CheckStatus, Text) {
    match &outcome.error {
        Some(why) if why.contains("ICMP socket") => (
            CheckStatus::Skipped,
            Text::new(format!("この環境では ICMP ソケットを使えません（{why}）"), why.clone()),
        ),
        Some(why) => (CheckStatus::Failed, Text::new(format!("送信に失敗しました（{why}）"), why.clone())),
        None => (CheckStatus::Failed, Text::new("何も送信されませんでした", "nothing was sent")),
    }
}

/// `uplink.dns` with an answer: ok, unless the carrier's known addresses
/// are configured and the answer lies outside them (`wrong_address=true`:
/// failed when no answer is known, a warning when only some are).
pub fn judge_resolved(e: Evidence, host: &str, addrs: &[SocketAddr], known: &[IpAddr]) -> Judged {
    let list = addrs.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(",");
    let e = e.with("addresses", list.clone());
    let unknown: Vec<String> =
        addrs.iter().map(SocketAddr::ip).filter(|ip| !known.contains(ip)).map(|ip| ip.to_string()).collect();
    if known.is_empty() || unknown.is_empty() {
        return (
            CheckStatus::Ok,
            e.saying(format!("{host} のアドレスは {list} です"), format!("{host} resolves to {list}")),
        );
    }
    let expected = known.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let e = e.with("expected", expected.clone()).with("wrong_address", unknown.join(","));
    if unknown.len() == addrs.len() {
        (
            CheckStatus::Failed,
            e.saying(
                format!(
                    "{host} の名前解決の答え {list} は通信事業者の既知のアドレス {expected} ではありません。DNS の乗っ取りか古い記録の疑いがあります"
                ),
                format!(
                    "{host} resolves to {list}, not the carrier's known {expected}: a hijacked resolver or a stale record"
                ),
            ),
        )
    } else {
        (
            CheckStatus::Warning,
            e.saying(
                format!("{host} の名前解決の答えに、通信事業者の既知のアドレス {expected} 以外（{}）が含まれています", unknown.join(", ")),
                format!("{host} also resolves to {} outside the carrier's known {expected}", unknown.join(", ")),
            ),
        )
    }
}

/// Reachability: any answer is ok; none fails; a probe that could not send at all is skipped.
pub fn judge_reachable(outcome: &PingOutcome, target: &str) -> Judged {
    let e = ping_evidence(outcome, target);
    if outcome.sent == 0 {
        let (status, unsent) = not_sent(outcome);
        return (
            status,
            e.saying(
                format!("{target} へ ping を送れません: {}", unsent.ja),
                format!("cannot send to {target}: {}", unsent.en),
            ),
        );
    }
    let (received, sent) = (outcome.received(), outcome.sent);
    if received == 0 {
        (
            CheckStatus::Failed,
            e.saying(
                format!("{target} から ping の応答がありません（{sent} 回送信）"),
                format!("no echo reply from {target} ({sent} sent)"),
            ),
        )
    } else {
        (
            CheckStatus::Ok,
            e.saying(
                format!("{target} は応答しています（{sent} 回中 {received} 回）"),
                format!("{target} answers ({received}/{sent} replies)"),
            ),
        )
    }
}

pub fn judge_active<P: Probes>(probes: &P, input: &RunInput, route: Option<&RouteV4>) -> Judged {
    let Some(route) = route else {
        return (
            CheckStatus::Failed,
            Evidence::new("デフォルトルートを持つ回線がありません", "no uplink carries a default route")
                .with("active", "none"),
        );
    };
    let role = if input.primary.as_deref() == Some(route.iface.as_str()) {
        "primary"
    } else if input.backup.as_deref() == Some(route.iface.as_str()) {
        "backup"
    } else {
        "other"
    };
    let role_ja = match role {
        "primary" => "主回線",
        "backup" => "予備回線",
        _ => "設定外の回線",
    };
    let e = Evidence::default().with("active", role).with("iface", route.iface.clone());
    let iface = &route.iface;
    match probes.interface(iface) {
        Some(s) if s.oper_up && s.carrier => (
            CheckStatus::Ok,
            e.saying(
                format!("通信は{role_ja} {iface} を通っています"),
                format!("traffic leaves over the {role} uplink {iface}"),
            ),
        ),
        Some(s) => (
            CheckStatus::Failed,
            e.saying(
                format!(
                    "デフォルトルートは{role_ja} {iface} を使っていますが、リンクしていません（状態 {}）",
                    s.operstate
                ),
                format!(
                    "the default route uses {iface} ({role}) but it has no link (operstate {})",
                    s.operstate
                ),
            ),
        ),
        None => (
            CheckStatus::Failed,
            e.saying(
                format!("デフォルトルートが存在しないインターフェース {iface} を使っています"),
                format!("the default route uses {iface}, which does not exist"),
            ),
        ),
    }
}

pub fn judge_quality(
    outcome: &PingOutcome,
    target: &str,
    settings: &DiagnoseConfig,
) -> (Judged, Judged, Judged) {
    if outcome.sent == 0 {
        let (status, why) = not_sent(outcome);
        let e = ping_evidence(outcome, target);
        let unmeasured = || skipped(why.ja.clone(), why.en.clone());
        return ((status, e.saying(why.ja.clone(), why.en.clone())), unmeasured(), unmeasured());
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
    let (received, sent) = (outcome.received(), outcome.sent);
    let loss_judged = (
        loss_status,
        e.saying(
            format!("{target} へのパケット損失は {loss:.0}% です（{sent} 回中 {received} 回応答）"),
            format!("{loss:.0}% loss to {target} ({received}/{sent} replies)"),
        ),
    );
    if outcome.rtts_us.is_empty() {
        let unmeasured =
            || skipped(format!("{target} から応答がないため測れません"), format!("no reply from {target}"));
        return (loss_judged, unmeasured(), unmeasured());
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
        Evidence::new(
            format!("{target} までの往復時間は平均 {avg:.1} ms です（最小 {min:.1}、最大 {max:.1}）"),
            format!("round trip to {target}: avg {avg:.1} ms (min {min:.1}, max {max:.1})"),
        )
        .with("target", target)
        .with("rtt_avg_ms", format!("{avg:.1}"))
        .with("rtt_min_ms", format!("{min:.1}"))
        .with("rtt_max_ms", format!("{max:.1}")),
    );
    let diffs: Vec<u64> = outcome.rtts_us.windows(2).map(|w| w[0].abs_diff(w[1])).collect();
    let jitter = if diffs.is_empty() {
        skipped("応答が 1 回だけのため、揺らぎは測れません", "one reply only: no jitter")
    } else {
        let j = ms(diffs.iter().sum::<u64>() / diffs.len() as u64);
        let status = if j >= settings.jitter_warn_ms { CheckStatus::Warning } else { CheckStatus::Ok };
        (
            status,
            Evidence::new(
                format!("{target} までの揺らぎは {j:.1} ms です"),
                format!("jitter {j:.1} ms to {target}"),
            )
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
    let mut e = Evidence::default().with("target", target).with("expected_mtu", expected.to_string());
    if let Some(mtu) = announced {
        e = e.with("too_big_mtu", mtu.to_string());
    }
    let Some(found) = largest_ok else {
        let unknown = match outcomes.iter().find_map(|(_, o)| o.error.clone()) {
            Some(why) => {
                e.saying(format!("経路 MTU は不明です（{why}）"), format!("path MTU unknown: {why}"))
            }
            None => e.saying(
                format!("{target} が ping に応答しないため、経路 MTU は不明です"),
                format!("path MTU unknown: {target} answers no echo"),
            ),
        };
        return (CheckStatus::Skipped, unknown);
    };
    e = e.with("mtu_found", found.to_string());
    if found >= expected {
        return (
            CheckStatus::Ok,
            e.saying(
                format!("{expected} バイトのパケットが分割されずに {target} まで届きます"),
                format!("{expected}-byte packets pass unfragmented to {target}"),
            ),
        );
    }
    if let Some(size) =
        outcomes.iter().filter(|(s, o)| *s > found && o.received() == 0).map(|(s, _)| *s).min()
    {
        e = e.with("mtu_lost_from", size.to_string());
    }
    if announced.is_some() || local {
        let e = e.saying(
            format!("経路 MTU は {found} で {expected} より小さいものの、経路がそれを通知しています（経路 MTU 探索は機能しています）"),
            format!("path MTU {found} is below {expected}, but the path says so (PMTU discovery works)"),
        );
        (CheckStatus::Warning, e.with("black_hole", "false"))
    } else {
        let e = e.saying(
            format!(
                "MTU ブラックホール: {found} バイトの分割禁止パケットは届きますが、{expected} バイトまでの大きなパケットは ICMP のエラーもなく消えます"
            ),
            format!(
                "MTU black hole: {found}-byte DF packets pass but larger ones up to {expected} vanish without an ICMP error"
            ),
        );
        (CheckStatus::Failed, e.with("black_hole", "true"))
    }
}

/// The carrier's TLS certificate did not verify against the carrier CA the
/// device trusts. One from an unknown issuer, or naming the carrier's CA
/// without its signature, is what an intercepting box on the path (or a
/// rogue server behind a hijacked address) presents:
/// `interception_suspected=true`, a security fault of the line or the
/// carrier, never the institution's certificate.
fn server_certificate_rejected(e: Evidence, why: &str) -> Evidence {
    let e = e.with("error", why);
    if why.contains("UnknownIssuer") || why.contains("BadSignature") {
        e.saying(
            format!(
                "サーバの証明書が、通信事業者の認証局ではない発行者のものです（{why}）。経路上で通信が傍受されている疑いがあります"
            ),
            format!("the server's certificate is from an issuer other than the carrier's CA ({why}): interception suspected"),
        )
        .with("interception_suspected", "true")
    } else {
        e.saying(
            format!("サーバの証明書を受け入れられません: {why}"),
            format!("the server's certificate is not accepted: {why}"),
        )
    }
}

#[allow(clippy::too_many_lines)] // one arm per way the exchange can end
/// Maps a carrier exchange to `[uplink.tcp_connect, uplink.tls_handshake,
/// carrier.certificate_accepted, carrier.status]`.
pub fn judge_exchange(x: &Exchange, addr: SocketAddr, now_unix: i64) -> [Judged; 4] {
    let mut base = Evidence::default().with("address", addr.to_string());
    if let Some(ms) = x.connect_ms {
        base = base.with("connect_ms", ms.to_string());
    }
    let connected = (
        CheckStatus::Ok,
        base.clone().saying(format!("{addr} に接続しました"), format!("connected to {addr}")),
    );
    let mut tls_e = Evidence::default().with("address", addr.to_string());
    if let Some(ms) = x.handshake_ms {
        tls_e = tls_e.with("handshake_ms", ms.to_string());
    }
    if let Some(v) = &x.tls_version {
        tls_e = tls_e.with("tls_version", v.clone());
    }
    let tls_ok = (
        CheckStatus::Ok,
        tls_e.clone().saying(
            "TLS ハンドシェイクが完了し、通信事業者の証明書は有効です",
            "TLS handshake completed; the carrier's certificate is valid",
        ),
    );
    let cert_refused = || {
        skipped(
            "通信事業者が機関証明書を受け付けませんでした",
            "the carrier refused the institution certificate",
        )
    };
    match &x.outcome {
        ExchangeOutcome::NotConnected(ConnectFailure::Refused) => {
            let refused = || skipped("通信事業者が接続を拒否しました", "the carrier refused the connection");
            [
                (
                    CheckStatus::Ok,
                    base.clone()
                        .saying(
                            format!("{addr} が接続を拒否（リセット）しました。経路は通じています"),
                            format!("{addr} answered with a reset: the path works"),
                        )
                        .with("refused", "true"),
                ),
                refused(),
                refused(),
                (
                    CheckStatus::Failed,
                    Evidence::new(
                        format!("{addr} が接続を拒否しました。通信事業者のサーバが動いていません"),
                        format!("connection refused by {addr}: the carrier server is not running"),
                    )
                    .with("address", addr.to_string())
                    .with("refused", "true"),
                ),
            ]
        }
        ExchangeOutcome::NotConnected(failure) => {
            let (why_ja, why) = match failure {
                ConnectFailure::Timeout => {
                    base = base.with("syn", "unanswered");
                    ("応答がありません（時間切れ）".to_owned(), "no answer (timeout)".to_owned())
                }
                ConnectFailure::Other(e) => (e.clone(), e.clone()),
                ConnectFailure::Refused => ("拒否されました".to_owned(), "refused".to_owned()),
            };
            let unconnected = || skipped("接続できていません", "not connected");
            [
                (
                    CheckStatus::Failed,
                    base.clone()
                        .saying(
                            format!("{addr} に接続できません: {why_ja}"),
                            format!("cannot connect to {addr}: {why}"),
                        )
                        .with("error", why),
                ),
                unconnected(),
                unconnected(),
                unconnected(),
            ]
        }
        ExchangeOutcome::NoTls(why) => {
            let no_tls = || skipped(format!("TLS を始められません: {why}"), why.clone());
            [connected, no_tls(), no_tls(), no_tls()]
        }
        ExchangeOutcome::ServerCertificate(why) => {
            let untrusted = || skipped("信頼できる TLS 接続がありません", "no trusted TLS session");
            [
                connected,
                (CheckStatus::Failed, server_certificate_rejected(tls_e.clone(), why)),
                untrusted(),
                untrusted(),
            ]
        }
        ExchangeOutcome::CertificateRefused { alert } => [
            connected,
            tls_ok,
            (
                CheckStatus::Failed,
                Evidence::new(
                    format!("通信事業者が機関証明書を受け付けませんでした（TLS アラート {alert}）"),
                    format!("the carrier refused the institution certificate (TLS alert {alert})"),
                )
                .with("alert", alert.clone()),
            ),
            cert_refused(),
        ],
        ExchangeOutcome::TlsBroken(why) => {
            let no_session = || skipped("TLS 接続がありません", "no TLS session");
            [
                connected,
                (
                    CheckStatus::Failed,
                    tls_e
                        .clone()
                        .saying(
                            format!("TLS ハンドシェイクが途中で切れました: {why}"),
                            format!("the TLS handshake broke off: {why}"),
                        )
                        .with("error", why.clone()),
                ),
                no_session(),
                no_session(),
            ]
        }
        ExchangeOutcome::NoAnswer(why) => [
            connected,
            tls_ok,
            skipped("HTTP の応答がありません", "no HTTP answer"),
            (
                CheckStatus::Failed,
                Evidence::new(
                    format!("GET /v1/ping に応答がありません: {why}"),
                    format!("no answer to GET /v1/ping: {why}"),
                )
                .with("error", why.clone()),
            ),
        ],
        ExchangeOutcome::Answered { status, pong, message } => {
            let http = status.to_string();
            if *status == 401 || *status == 403 {
                return [
                    connected,
                    tls_ok,
                    (
                        CheckStatus::Failed,
                        Evidence::new(
                            format!("通信事業者が {status} を返しました（認証拒否）: {message}"),
                            format!("the carrier answered {status}: {message}"),
                        )
                        .with("http_status", http),
                    ),
                    cert_refused(),
                ];
            }
            let accepted = (
                CheckStatus::Ok,
                Evidence::new(
                    "通信事業者が機関証明書を受け付けました",
                    "the carrier accepted the institution certificate",
                ),
            );
            let status_judged = match pong {
                Some(p) if *status == 200 => {
                    let skew = now_unix - p.server_unix;
                    (
                        CheckStatus::Ok,
                        Evidence::new(
                            format!("通信事業者が応答しています（機器 {}）", p.device_id),
                            format!("the carrier answers (device {})", p.device_id),
                        )
                        .with("http_status", http)
                        .with("device_id", p.device_id.clone())
                        .with("server_unix", p.server_unix.to_string())
                        .with("clock_skew_s", skew.to_string()),
                    )
                }
                _ => {
                    let (mut ja, mut en) = (format!("通信事業者が {status} を返しました"), String::new());
                    let _ = write!(en, "the carrier answered {status}");
                    if !message.is_empty() {
                        let _ = write!(ja, ": {message}");
                        let _ = write!(en, ": {message}");
                    }
                    (CheckStatus::Failed, Evidence::new(ja, en).with("http_status", http))
                }
            };
            [connected, tls_ok, accepted, status_judged]
        }
    }
}
