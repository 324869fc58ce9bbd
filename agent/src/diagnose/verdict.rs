//! The verdict: a pure function from check results (and a suspension in
//! force) to the segment at fault, with a summary and a next-step hint in
//! Japanese and English.
//!
//! This module owns the isolation rules of guideline §1.3.2 step ④ and the
//! hint catalogue (who to call). It reads nothing and keeps no state, so
//! every rule is unit-tested without a network; see [`verdict()`].

use std::fmt::Write as _;

use super::{base_name, checks, CheckResult, CheckStatus, Segment, Suspension, Text, VerdictSegment};
use crate::lang::Lang;

/// The outcome of a diagnosis run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The faulty segment, `None` (healthy) or `Suspended`.
    pub segment: VerdictSegment,
    /// What was found, one or two sentences.
    pub summary: Text,
    /// What to do next: who to call, what to check.
    pub hint: Text,
    /// Names of the failed checks **in the faulty segment**, in input order
    /// (under a suspension: every failed check).
    pub failed_checks: Vec<String>,
    /// Names of failed checks outside the faulty segment (further along the
    /// path, or terminal checks behind a failed LAN): probably consequences
    /// of the fault, listed as evidence, never the verdict.
    pub other_failed: Vec<String>,
    /// Names of every check that ended as a warning (including a per-line
    /// uplink failure downgraded because the other line carries traffic).
    pub warnings: Vec<String>,
    /// Path segments up to the verdict (all five when nothing failed) in
    /// which no check ran to `ok` / `warning` / `failed`: not verified.
    pub unverified: Vec<Segment>,
}

impl Verdict {
    /// True when a path segment is at fault.
    pub fn is_fault(&self) -> bool {
        self.segment.fault().is_some()
    }

    /// True when not a single check ran (all skipped, or none given) and
    /// no suspension is in force: the diagnosis could not run.
    pub fn ran_nothing(&self) -> bool {
        self.segment == VerdictSegment::None && self.unverified.len() == Segment::PATH.len()
    }

    /// The exit code of `cpe-agent diagnose` for this verdict:
    ///
    /// - [`super::EXIT_HEALTHY`] (0): segment `none`, at least one check ran
    ///   (warnings allowed).
    /// - [`super::EXIT_FAULT`] (1): a faulty segment was named, **or service
    ///   is suspended**. A suspension is not a fault to repair, but the
    ///   institution's traffic does not flow, so a script testing `diagnose`
    ///   must not read it as healthy; the printed segment `suspended` tells
    ///   the two apart.
    /// - [`super::EXIT_COULD_NOT_RUN`] (2): no check ran at all.
    pub fn exit_code(&self) -> u8 {
        if self.ran_nothing() {
            super::EXIT_COULD_NOT_RUN
        } else if self.segment == VerdictSegment::None {
            super::EXIT_HEALTHY
        } else {
            super::EXIT_FAULT
        }
    }
}

/// True for a per-line uplink check (`uplink.primary.*`, `uplink.backup.*`).
fn is_per_line(name: &str) -> bool {
    let base = base_name(name);
    base.starts_with("uplink.primary.") || base.starts_with("uplink.backup.")
}

/// The status the verdict uses for `check`: a failed per-line uplink check
/// counts as a warning while some uplink carries traffic.
fn effective(check: &CheckResult, some_uplink_active: bool) -> CheckStatus {
    if check.status == CheckStatus::Failed
        && check.segment == Segment::Uplink
        && some_uplink_active
        && is_per_line(&check.name)
    {
        CheckStatus::Warning
    } else {
        check.status
    }
}

fn join(names: &[String]) -> String {
    names.join(", ")
}

fn labels(segments: &[Segment], lang: Lang, sep: &str) -> String {
    segments.iter().map(|s| s.label(lang)).collect::<Vec<_>>().join(sep)
}

/// Decides where the fault is.
///
/// Rules, in order:
///
/// 1. **Suspension.** With `suspension` given, the verdict is `suspended`
///    ("suspended by order N", with the order's reason), whatever the checks
///    say: the stop order explains a loss of service and nothing is to be
///    repaired on site. Failed checks are still listed in `failed_checks`
///    as evidence.
/// 2. **Backup uplink.** A failed per-line check (`uplink.primary.*`,
///    `uplink.backup.*`) counts as a *warning* when [`checks::UPLINK_ACTIVE`]
///    is `ok` (traffic flows over the other line): redundancy is lost, but
///    service is not. If `uplink.active` is failed, skipped or absent, the
///    per-line failure stands.
/// 3. **First failure wins.** The segments are walked terminal → LAN →
///    device → uplink → carrier; the first segment with a failed check is
///    the verdict. Its failed checks are `failed_checks`; failures elsewhere
///    are `other_failed` (probably consequences).
///
///    One exception, because every probe starts on the CPE: terminal
///    probes cross the LAN, so when the LAN segment has a failed check too,
///    the terminal failures are counted as its consequences and the verdict
///    is `lan` (a LAN interface down also silences the terminals behind
///    it). Every other pair of segments is judged strictly in path order.
/// 4. **Warnings never fault.** They are listed in `warnings` and named in
///    the summary; when nothing failed, the hint is that of the most basic
///    warning (catalogue order), prefixed by "nothing is urgent".
/// 5. **Skipped proves nothing.** A skipped check is neither health nor
///    fault. A segment whose checks are all skipped (or that has none, e.g.
///    no terminal configured, or `--segment uplink`) is passed over: a
///    failure in a later segment is still named, and the earlier segment is
///    reported as `unverified` in the verdict and its summary. This is sound
///    because every probe starts on the CPE: an unverified terminal or LAN
///    cannot make an uplink or carrier probe fail.
/// 6. **Healthy.** No failure: segment `none`. If no check ran at all, the
///    verdict is still `none`, the summary says nothing was verified, and
///    [`Verdict::exit_code`] is 2 (could not run).
///
/// The hint is the one for the most basic failed check in the faulty
/// segment: the earliest in the catalogue's dependency order
/// ([`checks::ALL`]; among equals, the first in input order), so an MTU
/// black hole is named even when the TLS handshake failed with it. Hints
/// are keyed by the name before `@` ([`hint_for`]), else the segment's.
pub fn verdict(checks: &[CheckResult], suspension: Option<&Suspension>) -> Verdict {
    let some_uplink_active =
        checks.iter().any(|c| base_name(&c.name) == checks::UPLINK_ACTIVE && c.status == CheckStatus::Ok);
    let status = |c: &CheckResult| effective(c, some_uplink_active);

    let warnings: Vec<String> =
        checks.iter().filter(|c| status(c) == CheckStatus::Warning).map(|c| c.name.clone()).collect();

    if let Some(order) = suspension {
        let failed_checks: Vec<String> =
            checks.iter().filter(|c| status(c) == CheckStatus::Failed).map(|c| c.name.clone()).collect();
        return suspended(order, failed_checks, warnings);
    }

    let failed_in =
        |segment: Segment| checks.iter().any(|c| c.segment == segment && status(c) == CheckStatus::Failed);
    let mut unverified = Vec::new();
    for segment in Segment::PATH {
        let in_segment = || checks.iter().filter(move |c| c.segment == segment);
        let failed: Vec<&CheckResult> = in_segment().filter(|c| status(c) == CheckStatus::Failed).collect();
        let explained_by_lan = segment == Segment::Terminal && failed_in(Segment::Lan);
        let basic = failed.iter().min_by_key(|c| checks::rank(&c.name));
        if let (Some(first), false) = (basic, explained_by_lan) {
            let failed_checks: Vec<String> = failed.iter().map(|c| c.name.clone()).collect();
            let other_failed: Vec<String> = checks
                .iter()
                .filter(|c| c.segment != segment && status(c) == CheckStatus::Failed)
                .map(|c| c.name.clone())
                .collect();
            let hint = hint_for_check(first, segment);
            return fault(segment, failed_checks, other_failed, warnings, unverified, hint);
        }
        if !in_segment().any(|c| status(c) != CheckStatus::Skipped) {
            unverified.push(segment);
        }
    }
    healthy(checks, warnings, unverified)
}

fn suspended(order: &Suspension, failed_checks: Vec<String>, warnings: Vec<String>) -> Verdict {
    let n = order.order;
    let mut ja = format!(
        "通信事業者の停止命令（番号 {n}）によりサービスが停止されています。理由: {}。障害ではありません。",
        order.reason_ja
    );
    let mut en = format!("Service is suspended by order {n}: {}. This is not a fault.", order.reason_en);
    if !failed_checks.is_empty() {
        let names = join(&failed_checks);
        let _ = write!(ja, "失敗した確認項目（停止の影響の可能性あり）: {names}。");
        let _ = write!(en, " Failed checks (possibly caused by the suspension): {names}.");
    }
    Verdict {
        segment: VerdictSegment::Suspended,
        summary: Text::new(ja, en),
        hint: Text::new(
            format!(
                "機器の修理や再起動は不要です。停止命令 {n} の内容について通信事業者にお問い合わせください。\
                 是正が確認され再開命令が届くとサービスは自動的に再開します。"
            ),
            format!(
                "Do not repair or restart anything. Contact the carrier about order {n}; service resumes \
                 by itself when the carrier sends a resume order once the matter is corrected."
            ),
        ),
        failed_checks,
        other_failed: Vec::new(),
        warnings,
        unverified: Vec::new(),
    }
}

fn fault(
    segment: Segment,
    failed_checks: Vec<String>,
    other_failed: Vec<String>,
    warnings: Vec<String>,
    unverified: Vec<Segment>,
    hint: Text,
) -> Verdict {
    let names = join(&failed_checks);
    let mut ja = format!("{}に障害があります（{names}）。", segment.label(Lang::Ja));
    let mut en = format!("Fault in the {}: {names}.", segment.label(Lang::En));
    if !unverified.is_empty() {
        let _ = write!(ja, "未確認の区間: {}。", labels(&unverified, Lang::Ja, "、"));
        let _ = write!(en, " Not verified: {}.", labels(&unverified, Lang::En, ", "));
    }
    if !other_failed.is_empty() {
        let later = join(&other_failed);
        let _ = write!(ja, "この障害の影響と思われる他の失敗: {later}。");
        let _ = write!(en, " Other checks also failed, probably as a consequence: {later}.");
    }
    if !warnings.is_empty() {
        let w = join(&warnings);
        let _ = write!(ja, "注意: {w}。");
        let _ = write!(en, " Warnings: {w}.");
    }
    Verdict {
        segment: segment.into(),
        summary: Text::new(ja, en),
        hint,
        failed_checks,
        other_failed,
        warnings,
        unverified,
    }
}

fn healthy(checks: &[CheckResult], warnings: Vec<String>, unverified: Vec<Segment>) -> Verdict {
    let nothing_ran = unverified.len() == Segment::PATH.len();
    let (mut ja, mut en) = if nothing_ran {
        (
            String::from("実行できた確認項目がなく、何も確認できませんでした。"),
            String::from("No check could run; nothing was verified."),
        )
    } else {
        (String::from("障害は見つかりませんでした。"), String::from("No fault found."))
    };
    if !nothing_ran && !unverified.is_empty() {
        let _ = write!(ja, "未確認の区間: {}。", labels(&unverified, Lang::Ja, "、"));
        let _ = write!(en, " Not verified: {}.", labels(&unverified, Lang::En, ", "));
    }
    if !warnings.is_empty() {
        let w = join(&warnings);
        let _ = write!(ja, "注意: {w}。");
        let _ = write!(en, " Warnings: {w}.");
    }
    let hint = if nothing_ran {
        Text::new(
            "設定（端末・回線・通信事業者の宛先）と実行権限を確認し、もう一度実行してください。解決しない場合は通信事業者にお問い合わせください。",
            "Check the configuration (terminals, uplinks, carrier address) and that diagnose runs with the \
             needed privileges, then run it again; if that does not help, contact the carrier.",
        )
    } else if let Some(first) = warnings.iter().min_by_key(|w| checks::rank(w)) {
        let specific = match checks.iter().find(|c| &c.name == first) {
            Some(check) => hint_for_check(check, check.segment),
            None => hint_for(first, checks::segment_of(first).unwrap_or(Segment::Device)),
        };
        Text::new(
            format!("通信は正常ですが注意点があります。急ぎの対応は不要です。{}", specific.ja),
            format!("Service works, but with a warning; nothing is urgent. {}", specific.en),
        )
    } else {
        Text::new(
            "対応は不要です。接続できない場合は、この診断結果（ID）を添えて通信事業者にお問い合わせください。",
            "Nothing to do. If the institution still cannot connect, contact the carrier with this \
             diagnosis id.",
        )
    };
    Verdict {
        segment: VerdictSegment::None,
        summary: Text::new(ja, en),
        hint,
        failed_checks: Vec::new(),
        other_failed: Vec::new(),
        warnings,
        unverified,
    }
}

/// The next-step hint for a failing (or warning) check: specific to its
/// catalogue name (the part before `@`) where the catalogue has one, else
/// the segment's general hint.
#[allow(clippy::too_many_lines)] // a catalogue: one arm per check, two languages each
pub fn hint_for(name: &str, segment: Segment) -> Text {
    let (ja, en) = match base_name(name) {
        checks::TERMINAL_ICMP | checks::TERMINAL_NEIGHBOUR => (
            "端末が応答しません。端末の電源が入っているか、LANケーブルが差し込まれているかを確認してください。\
             それでも応答しない場合は、医療機関のPC・端末の保守業者にご連絡ください。",
            "The terminal does not answer. Check that it is powered on and its LAN cable is plugged in; \
             if it still does not answer, call the clinic's PC vendor.",
        ),
        checks::TERMINAL_SUBNET => (
            "端末のIPアドレスが院内LANの範囲外です。端末を「IPアドレスを自動的に取得する」設定にするか、\
             PC・端末の保守業者にネットワーク設定の修正を依頼してください。",
            "The terminal's IP address is outside the clinic LAN's range. Set the terminal to obtain an \
             address automatically (DHCP), or ask the clinic's PC vendor to correct its network settings.",
        ),
        checks::TERMINAL_DUPLICATE_IP => (
            "同じIPアドレスを複数の機器が使っています（重複したMACアドレスは証跡を参照）。\
             PC・端末の保守業者に、機器ごとに別のアドレスを割り当てるよう依頼してください。",
            "Two devices use the same IP address (the MAC addresses are in the evidence). Ask the clinic's \
             PC vendor to give each device its own address.",
        ),
        checks::TERMINAL_DHCP_LEASE => (
            "端末がルーターからIPアドレスを受け取っていません。端末を再起動し、解決しない場合は\
             PC・端末の保守業者にご連絡ください。",
            "The terminal holds no address from the router. Restart the terminal; if that does not help, \
             call the clinic's PC vendor.",
        ),
        checks::LAN_LINK => (
            "ルーターのLAN側ポートがリンクダウンしています。LANケーブルと、ルーターと端末の間のハブ\
             （電源・リンクランプ）を確認し、ケーブルを交換してください。解決しない場合はLAN配線の業者にご連絡ください。",
            "The router's LAN port is down. Check the LAN cable and the hub/switch between the router and \
             the terminals (power, link lamps) and replace the cable; if that does not help, call the LAN \
             cabling contractor.",
        ),
        checks::LAN_ERRORS | checks::LAN_SPEED_DUPLEX => (
            "LAN側でエラーや速度低下が起きています。ケーブルの損傷やハブの故障が考えられます。LANケーブルを交換し、\
             続く場合はLAN配線の業者にご連絡ください。",
            "Errors or a degraded link on the LAN port: a damaged cable or a faulty hub. Replace the LAN \
             cable; if it continues, call the LAN cabling contractor.",
        ),
        checks::DEVICE_CERTIFICATE => (
            "機関認証（電子証明書）がないか、有効期限が切れています。更新済みの証明書を取り込む\
             （cpe-agent cert import）か、通信事業者に更新を依頼してください。期限切れの場合は機関認証主体への再発行申請が必要です。",
            "The institution certificate is missing or expired. Import the renewed certificate \
             (cpe-agent cert import) or ask the carrier to renew it; an expired certificate must be \
             re-issued by the certification body.",
        ),
        checks::DEVICE_CLOCK => (
            "ルーターの時計が正しくないため、証明書を検証できません。ルーターを再起動してください。\
             解決しない場合は通信事業者に機器の交換をご依頼ください。",
            "The router's clock is wrong, so certificates cannot be verified. Restart the router; if the \
             clock stays wrong, ask the carrier to replace the device.",
        ),
        checks::DEVICE_FIREWALL => (
            "ファイアウォールの設定が想定と異なります。ルーターを再起動して設定を適用し直してください。\
             続く場合は改ざんや故障の可能性があるため、通信事業者にご連絡ください。",
            "The firewall ruleset is not the expected one. Restart the router so the agent reapplies it; \
             if it persists the device may have been tampered with or be faulty: contact the carrier.",
        ),
        checks::UPLINK_ACTIVE
        | checks::UPLINK_PRIMARY_LINK
        | checks::UPLINK_PRIMARY_ADDRESS
        | checks::UPLINK_BACKUP_LINK
        | checks::UPLINK_BACKUP_ADDRESS
        | checks::UPLINK_DEFAULT_ROUTE => (
            "回線がつながっていません。ルーターとONU・モデムの間のケーブル、ONU・モデムの電源とランプを確認し、\
             ONU・モデムを再起動してください。解決しない場合は回線事業者にご連絡ください。",
            "The access line is down. Check the cable between the router and the ONU/modem and that the \
             ONU/modem is powered (lamps), and restart it; if the line stays down, call the line provider.",
        ),
        checks::UPLINK_GATEWAY_ARP | checks::UPLINK_GATEWAY_ICMP => (
            "回線事業者のゲートウェイが応答しません。ONU・モデムを再起動し、解決しない場合は回線事業者にご連絡ください。",
            "The line provider's gateway does not answer. Restart the ONU/modem; if it still does not \
             answer, call the line provider.",
        ),
        checks::UPLINK_DNS => (
            "通信事業者のサーバ名を名前解決できません。ルーターを再起動し、解決しない場合は回線事業者\
             （DNS）にご連絡ください。",
            "The carrier server's name does not resolve. Restart the router; if it persists, call the line \
             provider (DNS service).",
        ),
        checks::UPLINK_TCP_CONNECT => (
            "回線経由で通信事業者のサーバに接続できません。証跡を添えて回線事業者にご連絡ください。",
            "The carrier server cannot be reached over the line. Call the line provider and give them the \
             evidence.",
        ),
        checks::UPLINK_TLS_HANDSHAKE => (
            "通信事業者との暗号化接続が途中で失敗しています。経路上の機器が通信を妨げている可能性があります。\
             通信事業者の運用センター（NOC）にご連絡ください。",
            "The encrypted connection to the carrier breaks during the handshake; something on the path \
             may interfere. Call the carrier's NOC.",
        ),
        checks::UPLINK_PATH_MTU => (
            "大きなパケットが回線上で破棄されています（MTUブラックホール）。証跡の経路MTUを添えて回線事業者に\
             ご連絡ください。通信事業者は機器のMTUを下げて回避できます。",
            "Large packets are dropped on the line (MTU black hole). Call the line provider with the path \
             MTU from the evidence; the carrier can lower the device's MTU as a workaround.",
        ),
        checks::UPLINK_LOSS | checks::UPLINK_LATENCY | checks::UPLINK_JITTER => (
            "回線の品質が低下しています（パケット損失・遅延）。証跡の数値を添えて回線事業者にご連絡ください。",
            "The line is degraded (packet loss / latency). Call the line provider with the figures from \
             the evidence.",
        ),
        checks::CARRIER_STATUS => (
            "回線は正常ですが、通信事業者のサーバが応答しません。この診断のIDを添えて通信事業者の運用センター\
             （NOC）にご連絡ください。",
            "The line works but the carrier's server does not answer. Call the carrier's NOC and give them \
             this diagnosis id.",
        ),
        checks::CARRIER_CERTIFICATE_ACCEPTED => (
            "通信事業者がこの医療機関の証明書を受け付けませんでした（失効・未登録・期限切れなど）。\
             通信事業者の運用センター（NOC）にご連絡ください。証明書の再登録が必要な場合があります。",
            "The carrier refused this institution's certificate (revoked, unregistered or expired on its \
             side). Call the carrier's NOC; the certificate may need to be registered again.",
        ),
        checks::CARRIER_PLATFORM => (
            "通信事業者の先にある相互接続基盤が応答しません。通信事業者の運用センター（NOC）にご連絡ください。\
             通信事業者から基盤の運用者へ連絡されます。",
            "The platform one hop beyond the carrier does not answer. Call the carrier's NOC; they escalate \
             to the platform operator.",
        ),
        _ => return segment_hint(segment),
    };
    Text::new(ja, en)
}

/// The hint for a failed check: its name's ([`hint_for`]), except for a
/// carrier certificate from an unknown issuer (`interception_suspected`),
/// a security fault with its own hint, and a DNS answer outside the
/// carrier's known addresses (`wrong_address`), a terminal at the router's
/// own address (`conflict_with=router`), and echo filtered on a
/// path that carries TCP (`echo_filtered`: nothing to repair).
fn hint_for_check(check: &CheckResult, segment: Segment) -> Text {
    if check.evidence.values.get("echo_filtered").is_some_and(|v| v == "true") {
        return Text::new(
            "経路上で ping（ICMP）が遮断されていますが、通信事業者への接続は正常です。修理は不要です。\
             ping を診断に使う場合は、回線事業者に ICMP の扱いをご確認ください。",
            "Ping (ICMP) is filtered on the path, but connections to the carrier work: nothing to repair. \
             If ping is needed for diagnosis, ask the line provider how it treats ICMP.",
        );
    }
    if check.evidence.values.get("conflict_with").is_some_and(|v| v == "router") {
        return Text::new(
            "端末にルーター自身の IP アドレスが設定されています。このままでは端末もほかの端末も通信できません。\
             端末の IP アドレスを、LAN の範囲内でルーターや他の端末と重ならないものに変更するか DHCP に戻してください。\
             分からない場合は医療機関のPC・端末の保守業者にご連絡ください。",
            "The terminal is configured with the router's own IP address, which breaks its traffic and the \
             other terminals'. Give it a free address in the LAN range (or set it back to DHCP); if unsure, \
             call the clinic's PC vendor.",
        );
    }
    if check.evidence.values.contains_key("wrong_address") {
        return Text::new(
            "DNS が通信事業者のサーバ名に誤ったアドレスを返しています（DNS の乗っ取り、または古い記録）。\
             ルーターの DNS 設定が変えられていないか確認し、証跡のアドレスを添えて回線事業者（DNS）と\
             通信事業者の運用センター（NOC）にご連絡ください。",
            "DNS answers a wrong address for the carrier server's name (a hijacked resolver or a stale \
             record). Check that the router's DNS settings were not changed, then call the line provider \
             (DNS service) and the carrier's NOC with the addresses from the evidence.",
        );
    }
    if check.evidence.values.get("interception_suspected").is_some_and(|v| v == "true") {
        return Text::new(
            "通信事業者のものではない証明書が返されました。経路上で通信が傍受・改ざんされている可能性があり、\
             機関証明書やこのルーターの問題ではありません。回線はそのまま使わず、この診断のIDを添えて\
             通信事業者の運用センター（NOC）に直ちにご連絡ください。通信事業者が回線事業者と調査します。",
            "A certificate that is not the carrier's came back: the connection may be intercepted or \
             tampered with on the path. It is not the institution certificate nor this router. Do not rely \
             on the line; call the carrier's NOC at once with this diagnosis id; the carrier investigates \
             with the line provider.",
        );
    }
    hint_for(&check.name, segment)
}

/// The general hint for a faulty segment, used when the failing check has
/// no specific one.
pub fn segment_hint(segment: Segment) -> Text {
    let (ja, en) = match segment {
        Segment::Terminal => (
            "端末に問題があります。端末を再起動し、解決しない場合は医療機関のPC・端末の保守業者にご連絡ください。",
            "The terminal has a problem. Restart it; if that does not help, call the clinic's PC vendor.",
        ),
        Segment::Lan => (
            "院内LANに問題があります。LANケーブルとハブを確認し、解決しない場合はLAN配線の業者にご連絡ください。",
            "The clinic LAN has a problem. Check the LAN cables and hubs; if that does not help, call the \
             LAN cabling contractor.",
        ),
        Segment::Device => (
            "ネットワーク機器（このルーター）に問題があります。ルーターを再起動し、解決しない場合は\
             通信事業者に機器の交換をご依頼ください。",
            "The network device (this router) has a problem. Restart it; if the problem returns, ask the \
             carrier to replace the device.",
        ),
        Segment::Uplink => (
            "回線に問題があります。ONU・モデムを再起動し、解決しない場合は回線事業者にご連絡ください。",
            "The access line has a problem. Restart the ONU/modem; if that does not help, call the line \
             provider.",
        ),
        Segment::Carrier => (
            "通信事業者側に問題があります。この診断のIDを添えて通信事業者の運用センター（NOC）にご連絡ください。",
            "The problem is on the carrier's side. Call the carrier's NOC with this diagnosis id.",
        ),
    };
    Text::new(ja, en)
}
