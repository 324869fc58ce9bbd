//! The page itself: a pure function from a [`NoticeView`] to HTML, every
//! value HTML-escaped. Japanese first, then English, each part wholly in
//! its language (`lang` set on each, so Japanese glyphs are chosen for the
//! Japanese half), one small inline style sheet, and a script only while a
//! self-check runs (it polls the progress; without it a `<noscript>`
//! refresh does the same). No resource from outside.
//!
//! The headline tells the truth from everything the device knows
//! ([`headline`]), in this order: the service state cannot be read /
//! suspended / corrective recommendation with its deadline / (planned
//! maintenance: its place is marked, it lands with its own issue) / the
//! line or the carrier unreachable (the daemon's own delivery record, the
//! last diagnosis) / drill / normal.
//!
//! The last diagnosis is shown as the field engineer sees it (verdict
//! segment, failed checks, hint) in both languages: the stored report is in
//! English, so the verdict is judged again from its checks
//! ([`crate::diagnose::verdict()`], pure), which gives the Japanese texts.

use std::fmt::Write as _;

use cpe_protocol::receipt::ServiceState;
use cpe_protocol::Health;
use time::format_description::well_known::Rfc3339;

use super::link::LinkState;
use super::request::{SELF_CHECK_PATH, STATUS_PATH};
use super::selfcheck::Status;
use crate::diagnose::report::{check_label, verdict_label};
use crate::diagnose::{
    self, checks, verdict::segment_hint, DiagnosisReport, Segment, Suspension, Text, VerdictSegment,
};
use crate::lang::Lang;
use crate::orders::state::ServiceRecord;

/// A diagnosis fault in the clinic (terminal, LAN, the CPE) leads the
/// headline for this long after the run; an uplink or carrier fault leads
/// it until a report reaches the carrier again.
pub const LOCAL_FAULT_SHOWN_S: i64 = 3600;

/// The last diagnosis as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownDiagnosis {
    /// The report's id.
    pub id: String,
    /// When it started (Unix seconds), if readable.
    pub started_at: Option<i64>,
    /// The verdict segment.
    pub segment: VerdictSegment,
    /// What was found, both languages.
    pub summary: Text,
    /// What to do, both languages.
    pub hint: Text,
    /// The failed checks of the faulty segment (ids).
    pub failed: Vec<String>,
}

impl ShownDiagnosis {
    /// The report (English, as stored) in both languages: the verdict is
    /// judged again from its checks. A suspension verdict is judged with the
    /// order it names (from the `device.suspension` evidence) and, when that
    /// order is still in force, its reasons. Should the judgement differ from
    /// the stored one (a report of another agent version), the stored
    /// segment stands with its segment's general hint.
    pub fn from_report(report: &DiagnosisReport, service: &ServiceRecord) -> Self {
        let stored = report.verdict.segment;
        let suspension = (stored == VerdictSegment::Suspended).then(|| {
            let order = report
                .checks
                .iter()
                .find(|c| c.base_name() == checks::DEVICE_SUSPENSION)
                .and_then(|c| c.evidence.values.get("order"))
                .and_then(|o| o.parse().ok())
                .or(service.order_id)
                .unwrap_or_default();
            let current = service.blocks_forwarding() && service.order_id == Some(order);
            let (ja, en) = if current {
                (service.reason_ja.clone(), service.reason_en.clone())
            } else {
                ("（記録なし）".to_owned(), "(not recorded)".to_owned())
            };
            Suspension { order, reason_ja: ja, reason_en: en }
        });
        let judged = diagnose::verdict(&report.checks, suspension.as_ref());
        let (summary, hint, failed) = if judged.segment == stored {
            (judged.summary, judged.hint, judged.failed_checks)
        } else {
            let failed: Vec<String> = report
                .checks
                .iter()
                .filter(|c| c.status == diagnose::CheckStatus::Failed && stored.fault() == Some(c.segment))
                .map(|c| c.name.clone())
                .collect();
            let label = |lang| verdict_label(stored, lang);
            let summary = Text::new(format!("判定: {}", label(Lang::Ja)), report.verdict.summary.clone());
            let hint = stored.fault().map_or_else(
                || Text::new("", report.verdict.hint.clone()),
                |s| Text::new(segment_hint(s).ja, report.verdict.hint.clone()),
            );
            (summary, hint, failed)
        };
        let started_at = time::OffsetDateTime::parse(&report.started_at, &Rfc3339)
            .ok()
            .map(time::OffsetDateTime::unix_timestamp);
        Self { id: report.id.clone(), started_at, segment: stored, summary, hint, failed }
    }
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct NoticeView {
    /// The service state and its order.
    pub service: ServiceRecord,
    /// Why the order state could not be read, if it could not.
    pub state_problem: Option<String>,
    /// The carrier's contact, Japanese.
    pub contact_ja: String,
    /// The carrier's contact, English.
    pub contact_en: String,
    /// The last diagnosis.
    pub diagnosis: Option<ShownDiagnosis>,
    /// The latest health figures.
    pub health: Option<Health>,
    /// The daemon's record of its channel to the carrier.
    pub link: LinkState,
    /// The self-check button's state; `None`: no button.
    pub self_check: Option<Status>,
    /// Least time between two self-checks.
    pub self_check_interval: std::time::Duration,
    /// Now (Unix seconds).
    pub now: i64,
}

/// Why the line or the carrier is taken to be unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// The daemon's reports have not reached the carrier since `since`.
    Channel {
        /// The first failed delivery (Unix seconds).
        since: i64,
    },
    /// The last diagnosis found a fault in `segment`, not disproved since.
    Diagnosed {
        /// The faulty segment.
        segment: Segment,
    },
}

/// What the headline says, in priority order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headline {
    /// The order state cannot be read.
    Unknown,
    /// Suspended by a carrier order.
    Suspended,
    /// A corrective recommendation is in force.
    Recommendation,
    // Planned maintenance (in progress or announced) takes its place here
    // when the incidents-and-maintenance issue lands.
    /// The line or the carrier is unreachable, or the clinic's side is faulty.
    Outage(Outage),
    /// A suspension drill.
    Drill,
    /// Normal.
    Normal,
}

impl Headline {
    /// The CSS class (and test hook) of the headline.
    pub const fn class(self) -> &'static str {
        match self {
            Headline::Unknown => "unknown",
            Headline::Suspended => "suspended",
            Headline::Recommendation => "recommendation",
            Headline::Outage(_) => "outage",
            Headline::Drill => "drill",
            Headline::Normal => "normal",
        }
    }
}

/// The outage the device knows of, if any: the daemon's channel down
/// ([`LinkState::down`]), else a fault in the last diagnosis — an uplink or
/// carrier fault until a report reaches the carrier after it, a fault in the
/// clinic (terminal, LAN, the CPE) for [`LOCAL_FAULT_SHOWN_S`].
pub fn outage(link: &LinkState, diagnosis: Option<&ShownDiagnosis>, now: i64) -> Option<Outage> {
    if let Some(since) = link.down() {
        return Some(Outage::Channel { since });
    }
    let diagnosis = diagnosis?;
    let segment = diagnosis.segment.fault()?;
    let at = diagnosis.started_at?;
    let standing = match segment {
        Segment::Uplink | Segment::Carrier => link.last_delivered.is_none_or(|d| d < at),
        Segment::Terminal | Segment::Lan | Segment::Device => now.saturating_sub(at) < LOCAL_FAULT_SHOWN_S,
    };
    standing.then_some(Outage::Diagnosed { segment })
}

/// The headline of `view` (see the module documentation for the order).
pub fn headline(view: &NoticeView) -> Headline {
    if view.state_problem.is_some() {
        return Headline::Unknown;
    }
    match view.service.state {
        ServiceState::Suspended => return Headline::Suspended,
        ServiceState::Recommendation => return Headline::Recommendation,
        ServiceState::Drill | ServiceState::Normal => {}
    }
    // Planned maintenance goes here (see [`Headline`]).
    if let Some(outage) = outage(&view.link, view.diagnosis.as_ref(), view.now) {
        return Headline::Outage(outage);
    }
    if view.service.state == ServiceState::Drill {
        Headline::Drill
    } else {
        Headline::Normal
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Unix seconds as `2026-04-01 09:00 JST` (Japanese) or `2026-04-01 00:00 UTC`.
pub fn date(unix: i64, lang: Lang) -> String {
    let japanese = lang == Lang::Ja;
    let offset = if japanese { 9 * 3600 } else { 0 };
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(unix.saturating_add(offset)) else {
        return unix.to_string();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} {}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        if japanese { "JST" } else { "UTC" }
    )
}

fn headline_text(view: &NoticeView, headline: Headline, lang: Lang) -> String {
    let ja = lang == Lang::Ja;
    let deadline = view.service.deadline.map(|d| date(d, lang));
    match (headline, ja) {
        (Headline::Unknown, true) => "サービスの状態を確認できません。お問い合わせ先にご連絡ください。".into(),
        (Headline::Unknown, false) => "The service state cannot be determined; please contact the carrier.".into(),
        (Headline::Suspended, true) => "通信事業者の命令により、ネットワークサービスを停止しています。".into(),
        (Headline::Suspended, false) => "The network service is suspended by order of the carrier.".into(),
        (Headline::Recommendation, true) => format!(
            "接続ルールについて是正勧告が出ています。期限: {}",
            deadline.unwrap_or_else(|| "（指定なし）".into())
        ),
        (Headline::Recommendation, false) => format!(
            "A corrective recommendation about the connection rules is in force. Deadline: {}",
            deadline.unwrap_or_else(|| "(none given)".into())
        ),
        (Headline::Outage(Outage::Channel { since }), true) => format!(
            "{} から通信事業者に接続できません。回線または通信事業者側の障害の可能性があります。",
            date(since, lang)
        ),
        (Headline::Outage(Outage::Channel { since }), false) => format!(
            "The device cannot reach the carrier since {}: the line or the carrier may be down.",
            date(since, lang)
        ),
        (Headline::Outage(Outage::Diagnosed { segment }), true) => match segment {
            Segment::Uplink | Segment::Carrier => format!(
                "{}の障害により、ネットワークサービスをご利用いただけない可能性があります（自己診断の結果）。",
                segment.label(lang)
            ),
            _ => format!("自己診断で{}に問題が見つかりました。下の「対処」をご覧ください。", segment.label(lang)),
        },
        (Headline::Outage(Outage::Diagnosed { segment }), false) => match segment {
            Segment::Uplink | Segment::Carrier => format!(
                "The network service may be unavailable: the self-check found a fault in the {}.",
                segment.label(lang)
            ),
            _ => format!("The self-check found a problem in the {}; see the next step below.", segment.label(lang)),
        },
        (Headline::Drill, true) => "【訓練】これは停止の訓練です。通信は遮断されていません。".into(),
        (Headline::Drill, false) => "[DRILL] This is a suspension drill. Traffic is not blocked.".into(),
        (Headline::Normal, true) => "ネットワークサービスは通常どおりご利用いただけます。".into(),
        (Headline::Normal, false) => "The network service is operating normally.".into(),
    }
}

fn health_line(health: &Health, lang: Lang) -> String {
    let ja = lang == Lang::Ja;
    let mut parts = Vec::new();
    let days = health.uptime_s / 86_400;
    let hours = (health.uptime_s % 86_400) / 3600;
    let uplink = health.active_uplink.as_deref();
    // An interval without a sample averages to NaN: say nothing rather than "NaN%".
    let (cpu, mem) = (health.cpu_pct.is_finite(), health.mem_pct.is_finite());
    if ja {
        parts.push(format!("稼働 {days} 日 {hours} 時間"));
        if cpu {
            parts.push(format!("CPU {:.0}%", health.cpu_pct));
        }
        if mem {
            parts.push(format!("メモリ {:.0}%", health.mem_pct));
        }
        if let Some(t) = health.temperature_c {
            parts.push(format!("温度 {t:.0}℃"));
        }
        parts.push(format!("使用回線 {}", uplink.unwrap_or("なし")));
        if let Some(end) = health.cert_not_after {
            parts.push(format!("証明書有効期限 {}", date(end, lang)));
        }
    } else {
        parts.push(format!("up {days} d {hours} h"));
        if cpu {
            parts.push(format!("CPU {:.0}%", health.cpu_pct));
        }
        if mem {
            parts.push(format!("memory {:.0}%", health.mem_pct));
        }
        if let Some(t) = health.temperature_c {
            parts.push(format!("temperature {t:.0} °C"));
        }
        parts.push(format!("uplink {}", uplink.unwrap_or("none")));
        if let Some(end) = health.cert_not_after {
            parts.push(format!("certificate valid until {}", date(end, lang)));
        }
    }
    escape(&parts.join(" / "))
}

/// One `<dt>`/`<dd>` pair; `value_html` is already escaped.
fn row(out: &mut String, label: &str, class: &str, value_html: &str) {
    let _ = writeln!(out, "<dt>{label}</dt><dd class=\"{class}\">{value_html}</dd>");
}

fn channel_line(link: &LinkState, lang: Lang) -> Option<String> {
    let ja = lang == Lang::Ja;
    let last = link.last_delivered.map(|d| date(d, lang));
    if link.failures == 0 {
        return None;
    }
    Some(match (ja, last) {
        (true, Some(last)) => format!("最後に通信できた日時 {last}、その後 {} 回失敗", link.failures),
        (true, None) => format!("起動後まだ通信できていません（{} 回失敗）", link.failures),
        (false, last) => format!(
            "last report delivered {}; {} failed attempts since{}",
            last.unwrap_or_else(|| "never since start".into()),
            link.failures,
            link.last_error.as_deref().map(|e| format!(" (latest: {e})")).unwrap_or_default()
        ),
    })
}

fn diagnosis_block(out: &mut String, diagnosis: Option<&ShownDiagnosis>, lang: Lang) {
    let ja = lang == Lang::Ja;
    let label = |j: &'static str, e: &'static str| if ja { j } else { e };
    let _ = writeln!(out, "<h2>{}</h2>", label("最新の自己診断", "Last self-diagnosis"));
    let Some(d) = diagnosis else {
        let _ = writeln!(out, "<p class=\"diagnosis none-yet\">{}</p>", label("まだありません", "none yet"));
        return;
    };
    let _ = writeln!(out, "<dl class=\"diagnosis\" id=\"diagnosis-{}\">", lang.code());
    let segment = d.segment.as_str();
    row(
        out,
        label("判定", "Verdict"),
        &format!("verdict {segment}"),
        &escape(verdict_label(d.segment, lang)),
    );
    row(out, label("内容", "Finding"), "summary", &escape(d.summary.get(lang)));
    if !d.failed.is_empty() {
        let items = d.failed.iter().fold(String::new(), |mut items, name| {
            let _ = write!(items, "<li>{}</li>", escape(&check_label(name, lang)));
            items
        });
        row(out, label("失敗した確認項目", "Failed checks"), "failed", &format!("<ul>{items}</ul>"));
    }
    if !d.hint.get(lang).is_empty() {
        row(out, label("対処", "Next step"), "hint", &escape(d.hint.get(lang)));
    }
    let at = d.started_at.map(|t| date(t, lang)).unwrap_or_default();
    row(out, label("実施日時", "Run at"), "run-at", &escape(&format!("{at} ({})", d.id)));
    out.push_str("</dl>\n");
}

/// 「1分に1回まで」 / "once a minute at most" for `interval`.
pub fn at_most(interval: std::time::Duration, lang: Lang) -> String {
    let s = interval.as_secs().max(1);
    match (lang, s.is_multiple_of(60)) {
        (Lang::Ja, true) => format!("{}分に1回まで", s / 60),
        (Lang::Ja, false) => format!("{s}秒に1回まで"),
        (Lang::En, true) if s == 60 => "once a minute at most".to_owned(),
        (Lang::En, true) => format!("once every {} minutes at most", s / 60),
        (Lang::En, false) => format!("once every {s} s at most"),
    }
}

fn self_check_block(out: &mut String, status: &Status, interval: std::time::Duration, lang: Lang) {
    let ja = lang == Lang::Ja;
    let label = |j: &'static str, e: &'static str| if ja { j } else { e };
    let _ = writeln!(out, "<h2>{}</h2>", label("自己診断", "Self-check"));
    let _ = writeln!(
        out,
        "<p>{}</p>",
        if ja {
            format!(
                "端末・院内LAN・この機器・回線・通信事業者を順に確認し、結果を通信事業者にも送ります（{}）。",
                at_most(interval, lang)
            )
        } else {
            format!(
                "Checks the terminals, the clinic LAN, this device, the line and the carrier in turn, and \
                 sends the result to the carrier too ({}).",
                at_most(interval, lang)
            )
        }
    );
    let running = matches!(status, Status::Running { .. });
    match status {
        Status::Idle => {}
        Status::Running { checks_done, elapsed } => {
            let s = elapsed.as_secs();
            let text = if ja {
                format!(
                    "自己診断を実行中です… 確認済み <span class=\"done\">{checks_done}</span> 項目（経過 <span class=\"elapsed\">{s}</span> 秒）"
                )
            } else {
                format!(
                    "Self-check running… <span class=\"done\">{checks_done}</span> checks done (<span class=\"elapsed\">{s}</span> s)"
                )
            };
            let _ = writeln!(
                out,
                "<p class=\"progress\" id=\"progress-{}\">{text}</p><progress></progress>",
                lang.code()
            );
        }
        Status::Done { id, took, .. } => {
            let s = took.as_secs();
            let text = if ja {
                format!("自己診断が完了しました（所要 {s} 秒、{}）。結果は下の「最新の自己診断」のとおりです。通信事業者にも送られます（回線が使えないときは復旧後に送られます）。", escape(id))
            } else {
                format!("The self-check finished ({s} s, {}). Its result is under \"Last self-diagnosis\" below; it goes to the carrier too (once the line works, if it is down).", escape(id))
            };
            let _ = writeln!(out, "<p class=\"result\" id=\"result-{}\">{text}</p>", lang.code());
        }
        Status::Failed { error } => {
            let text = if ja {
                "自己診断を実行できませんでした。しばらくしてからもう一度お試しいただくか、お問い合わせ先にご連絡ください。".to_owned()
            } else {
                format!(
                    "The self-check could not run: {}. Try again later or contact the carrier.",
                    escape(error)
                )
            };
            let _ = writeln!(out, "<p class=\"result failed\" id=\"result-{}\">{text}</p>", lang.code());
        }
    }
    let _ = writeln!(
        out,
        "<form method=\"post\" action=\"{SELF_CHECK_PATH}\"><button type=\"submit\" name=\"run\" value=\"1\"{}>{}</button></form>",
        if running { " disabled" } else { "" },
        label("自己診断を実行", "Run the self-check")
    );
}

fn section(out: &mut String, view: &NoticeView, headline: Headline, lang: Lang) {
    let ja = lang == Lang::Ja;
    let label = |j: &'static str, e: &'static str| if ja { j } else { e };
    let code = lang.code();
    let _ = writeln!(out, "<section lang=\"{code}\">");
    let _ = writeln!(out, "<h1>{}</h1>", label("回線サービスのお知らせ", "Network service notice"));
    let _ = writeln!(
        out,
        "<p class=\"state {}\" id=\"state-{code}\">{}</p>",
        headline.class(),
        escape(&headline_text(view, headline, lang))
    );
    out.push_str("<dl>\n");
    if let Some(problem) = &view.state_problem {
        row(out, label("状態を読み取れません", "State unreadable"), "problem", &escape(problem));
    }
    let reason = if ja { &view.service.reason_ja } else { &view.service.reason_en };
    if view.service.state != ServiceState::Normal && !reason.is_empty() {
        row(out, label("理由", "Reason"), "reason", &escape(reason));
    }
    // When and by which order the state began (a normal state after a
    // resume needs neither).
    let ordered = view.service.state != ServiceState::Normal;
    if let (Some(since), true) = (view.service.since, ordered) {
        row(out, label("日時", "Since"), "since", &escape(&date(since, lang)));
    }
    if let (Some(id), Some(seq), true) = (view.service.order_id, view.service.sequence, ordered) {
        row(out, label("命令番号", "Order"), "order", &format!("{id} (#{seq})"));
    }
    if let Some(line) = channel_line(&view.link, lang) {
        row(out, label("通信事業者との通信", "Channel to the carrier"), "channel", &escape(&line));
    }
    let contact = if ja { &view.contact_ja } else { &view.contact_en };
    if !contact.is_empty() {
        row(out, label("お問い合わせ先", "Contact"), "contact", &escape(contact));
    }
    let health = view
        .health
        .as_ref()
        .map_or_else(|| label("集計中", "not yet measured").to_owned(), |h| health_line(h, lang));
    row(out, label("装置の状態", "Device health"), "health", &health);
    out.push_str("</dl>\n");
    if let Some(status) = &view.self_check {
        self_check_block(out, status, view.self_check_interval, lang);
    }
    diagnosis_block(out, view.diagnosis.as_ref(), lang);
    out.push_str("</section>\n");
}

/// The style sheet: one column readable on a phone, a Japanese font stack
/// (the `lang` attributes pick Japanese glyphs), a coloured headline.
const STYLE: &str = "body{margin:0;background:#f5f5f2;color:#1a1a1a;line-height:1.6;\
font-family:\"Noto Sans CJK JP\",\"Noto Sans JP\",\"Hiragino Kaku Gothic ProN\",\"Hiragino Sans\",\
\"Yu Gothic UI\",\"Yu Gothic\",Meiryo,system-ui,sans-serif}\
main{max-width:42rem;margin:0 auto;padding:1rem}\
section{background:#fff;border-radius:.5rem;padding:1rem 1.25rem;margin:0 0 1rem}\
section[lang=en]{font-size:.95rem}\
h1{font-size:1.3rem;margin:0 0 .75rem}h2{font-size:1.1rem;margin:1.25rem 0 .5rem}\
.state{font-size:1.15rem;font-weight:700;padding:.75rem 1rem;border-radius:.4rem;border-left:.5rem solid}\
.normal{background:#e8f5e9;border-color:#2e7d32}.drill{background:#e3f2fd;border-color:#1565c0}\
.recommendation{background:#fff8e1;border-color:#f9a825}.outage{background:#fff3e0;border-color:#ef6c00}\
.suspended,.unknown{background:#ffebee;border-color:#c62828}\
dt{font-weight:700;margin-top:.5rem}dd{margin:0 0 0 1rem;overflow-wrap:anywhere}dd ul{margin:0;padding-left:1.2rem}\
.hint{font-weight:700}.result{padding:.5rem .75rem;background:#eef;border-radius:.4rem}.failed.result{background:#ffebee}\
button{font:inherit;font-size:1.05rem;padding:.7rem 1.5rem;min-height:3rem;border:0;border-radius:.4rem;\
background:#1565c0;color:#fff;cursor:pointer}button:disabled{background:#90a4ae}progress{width:100%}\
@media(max-width:30rem){main{padding:.5rem}section{padding:.75rem}button{width:100%}}";

/// The progress script (only while a self-check runs): polls the status,
/// updates the counters, reloads the page when the run has ended.
const PROGRESS_SCRIPT: &str = "(function(){function t(){fetch(\"STATUS\",{cache:\"no-store\"})\
.then(function(r){return r.json()}).then(function(s){if(s.state!==\"running\"){location.replace(location.href);return}\
document.querySelectorAll(\".done\").forEach(function(e){e.textContent=s.checks_done});\
document.querySelectorAll(\".elapsed\").forEach(function(e){e.textContent=s.elapsed_s});setTimeout(t,1000)},\
function(){setTimeout(t,2000)})}setTimeout(t,1000)})();";

/// The whole page: Japanese section first, then English.
pub fn render(view: &NoticeView) -> String {
    let headline = headline(view);
    let running = matches!(view.self_check, Some(Status::Running { .. }));
    let mut out = String::with_capacity(8 * 1024);
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"ja\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>回線サービスのお知らせ / Network service notice</title>\n",
    );
    if running {
        out.push_str("<noscript><meta http-equiv=\"refresh\" content=\"3\"></noscript>\n");
    }
    let _ = write!(out, "<style>{STYLE}</style>\n</head>\n<body>\n<main>\n");
    section(&mut out, view, headline, Lang::Ja);
    section(&mut out, view, headline, Lang::En);
    out.push_str("</main>\n");
    if running {
        let _ = writeln!(out, "<script>{}</script>", PROGRESS_SCRIPT.replace("STATUS", STATUS_PATH));
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// A short page in both languages for an answer other than the notice
/// (a refused self-check), with a link back to the page.
pub fn message(ja: &str, en: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"ja\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>回線サービスのお知らせ / Network service notice</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <section lang=\"ja\"><p class=\"result failed\">{}</p><p><a href=\"/\">お知らせに戻る</a></p></section>\n\
         <section lang=\"en\"><p class=\"result failed\">{}</p><p><a href=\"/\">Back to the notice</a></p></section>\n\
         </main>\n</body>\n</html>\n",
        escape(ja),
        escape(en)
    )
}
