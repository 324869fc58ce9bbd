//! Rendering for the operator CLI: devices, one device (with its service
//! state, latest diagnosis and orders), alerts, compliance cases, orders,
//! incidents and order keys — as aligned text tables or as JSON with stable
//! keys.
//!
//! Pure functions of the rows and of `now_ms` (passed in, never read here),
//! so the output is deterministic and tested below. Times are shown in UTC as
//! RFC 3339 (seconds), followed by how long ago; certificate expiry as a date
//! with the days left. JSON carries both the RFC 3339 text and the raw
//! Unix milliseconds, and JSON text stored in the database (health, report
//! summaries) is embedded as JSON, not as a string.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use time::macros::format_description;
use time::OffsetDateTime;

use cpe_common::hex::encode as hex;
use cpe_provision::clock::rfc3339_ms;
use cpe_provision::compliance::order_keys::KeyInfo;
use cpe_provision::expiry::{CertExpiry, ExpiryReport};
use cpe_provision::operators::OperatorInfo;
use cpe_provision::pki::validity::rfc3339;
use cpe_provision::store::{
    AlertRow, CaseDetail, CaseEventRow, CommandRow, DeviceDetail, DeviceRow, IncidentRow, OrderRow, ReportRow,
};

const MS_PER_DAY: i64 = 86_400_000;

/// `2026-05-01` for Unix seconds (UTC).
pub fn date_s(s: i64) -> String {
    let fmt = format_description!("[year]-[month]-[day]");
    OffsetDateTime::from_unix_timestamp(s)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| format!("@{s}s"))
}

/// How long before `now_ms` `then_ms` was: `42s ago` below two minutes,
/// then `17m ago`, `5h ago`, `3d ago`; `in 5s` if it is in the future (clock skew).
pub fn ago(then_ms: i64, now_ms: i64) -> String {
    let delta_s = now_ms.saturating_sub(then_ms).div_euclid(1000);
    if delta_s < 0 {
        return format!("in {}", span(delta_s.saturating_neg()));
    }
    format!("{} ago", span(delta_s))
}

fn span(s: i64) -> String {
    match s {
        ..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Whole days from `now_ms` until `not_after_s` (negative once expired).
pub fn days_left(not_after_s: i64, now_ms: i64) -> i64 {
    not_after_s.saturating_mul(1000).saturating_sub(now_ms).div_euclid(MS_PER_DAY)
}

/// `2027-03-01 (302d left)`, `2025-01-01 (EXPIRED 12d ago)`, or `-`.
pub fn cert_expiry(not_after_s: Option<i64>, now_ms: i64) -> String {
    let Some(na) = not_after_s else { return "-".into() };
    let days = days_left(na, now_ms);
    if na.saturating_mul(1000) <= now_ms {
        format!(
            "{} (EXPIRED {}d ago)",
            date_s(na),
            now_ms.saturating_sub(na.saturating_mul(1000)) / MS_PER_DAY
        )
    } else {
        format!("{} ({days}d left)", date_s(na))
    }
}

/// Columns a string takes in a terminal: East Asian wide characters count two.
pub fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            let c = c as u32;
            let wide = matches!(c,
                0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
                | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60
                | 0xFFE0..=0xFFE6 | 0x1F300..=0x1F64F | 0x20000..=0x3FFFD);
            if wide {
                2
            } else {
                1
            }
        })
        .sum()
}

/// An aligned table: a header row, then the rows; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| display_width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(display_width(cell));
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i].saturating_sub(display_width(cell)) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serialising these plain structs cannot fail.
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

/// One line for a JSON object of metrics: its scalar fields as `key=value`,
/// arrays as `key=[N]`, nested objects as `key={..}`; other text unchanged.
pub fn json_line(text: &str) -> String {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else { return text.to_owned() };
    let parts: Vec<String> = map
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            Value::Array(a) => format!("{k}=[{}]", a.len()),
            Value::Object(_) => format!("{k}={{..}}"),
            other => format!("{k}={other}"),
        })
        .collect();
    parts.join(" ")
}

/// Stored JSON text as a JSON value (kept as a string if it is not JSON).
fn embedded(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

#[derive(Serialize)]
struct DeviceJson<'a> {
    id: &'a str,
    institution_code: &'a str,
    state: &'static str,
    state_since: String,
    first_seen: String,
    last_seen: String,
    last_seen_ms: i64,
    last_seen_ago_s: i64,
    cert_not_after: Option<String>,
    cert_days_left: Option<i64>,
    open_alerts: u64,
    suspension: Option<&'a str>,
}

impl<'a> DeviceJson<'a> {
    fn new(row: &'a DeviceRow, now_ms: i64) -> Self {
        Self {
            id: &row.id,
            institution_code: &row.institution_code,
            state: row.state.as_str(),
            state_since: rfc3339_ms(row.state_since_ms),
            first_seen: rfc3339_ms(row.first_seen_ms),
            last_seen: rfc3339_ms(row.last_seen_ms),
            last_seen_ms: row.last_seen_ms,
            last_seen_ago_s: now_ms.saturating_sub(row.last_seen_ms).div_euclid(1000),
            cert_not_after: row.cert_not_after.map(|s| rfc3339_ms(s.saturating_mul(1000))),
            cert_days_left: row.cert_not_after.map(|s| days_left(s, now_ms)),
            open_alerts: row.open_alerts,
            suspension: row.suspension.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct AlertJson<'a> {
    id: i64,
    device_id: &'a str,
    kind: &'a str,
    level: &'a str,
    message: &'a str,
    raised_at: String,
    raised_at_ms: i64,
    cleared_at: Option<String>,
    cleared_at_ms: Option<i64>,
    acknowledged_at: Option<String>,
    acknowledged_by: Option<&'a str>,
}

impl<'a> AlertJson<'a> {
    fn new(a: &'a AlertRow) -> Self {
        Self {
            id: a.id,
            device_id: &a.device_id,
            kind: &a.kind,
            level: &a.level,
            message: &a.message,
            raised_at: rfc3339_ms(a.raised_at_ms),
            raised_at_ms: a.raised_at_ms,
            cleared_at: a.cleared_at_ms.map(rfc3339_ms),
            cleared_at_ms: a.cleared_at_ms,
            acknowledged_at: a.acknowledged_at_ms.map(rfc3339_ms),
            acknowledged_by: a.acknowledged_by.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct ReportJson<'a> {
    seq: u64,
    kind: &'static str,
    recorded_at: String,
    received_at: String,
    summary: Value,
    #[serde(skip)]
    _row: std::marker::PhantomData<&'a ()>,
}

#[derive(Serialize)]
struct CommandJson<'a> {
    id: u64,
    kind: &'a str,
    created_at: String,
    delivered_at: Option<String>,
    deliveries: u32,
    acked_at: Option<String>,
    ok: Option<bool>,
    detail: Option<&'a str>,
    requested_by: Option<&'a str>,
}

#[derive(Serialize)]
struct DeviceDetailJson<'a> {
    device: DeviceJson<'a>,
    /// Service state per the newest applied order (`normal` when none).
    service: &'a str,
    last_health: Option<Value>,
    latest_incident: Option<IncidentJson<'a>>,
    recent_reports: Vec<ReportJson<'a>>,
    open_alerts: Vec<AlertJson<'a>>,
    recent_commands: Vec<CommandJson<'a>>,
    recent_orders: Vec<OrderJson<'a>>,
}

/// `2026-05-01T12:00:00Z` for Unix seconds.
fn rfc3339_s(s: i64) -> String {
    rfc3339_ms(s.saturating_mul(1000))
}

#[derive(Serialize)]
struct ReceiptJson<'a> {
    applied_at: String,
    device_clock: String,
    time_floor: String,
    clock: &'a str,
    resulting_state: &'a str,
    drill: bool,
    scheme: String,
}

#[derive(Serialize)]
struct OrderJson<'a> {
    id: u64,
    device_id: &'a str,
    case_id: Option<u64>,
    command_id: Option<u64>,
    kind: &'a str,
    sequence: u64,
    state: &'static str,
    key_id: &'a str,
    issued_at: String,
    not_before: String,
    expires_at: String,
    deadline: Option<String>,
    reason_ja: &'a str,
    reason_en: &'a str,
    operator: &'a str,
    justification: Option<&'a str>,
    created_at: String,
    order_hash: String,
    delivered_at: Option<String>,
    deliveries: u32,
    acknowledged_at: Option<String>,
    detail: Option<&'a str>,
    receipt: Option<ReceiptJson<'a>>,
}

impl<'a> OrderJson<'a> {
    fn new(o: &'a OrderRow) -> Self {
        Self {
            id: o.id,
            device_id: &o.device_id,
            case_id: o.case_id,
            command_id: o.command_id,
            kind: &o.kind,
            sequence: o.sequence,
            state: o.state(),
            key_id: &o.key_id,
            issued_at: rfc3339_s(o.issued_at),
            not_before: rfc3339_s(o.not_before),
            expires_at: rfc3339_s(o.expires_at),
            deadline: o.deadline.map(rfc3339_s),
            reason_ja: &o.reason_ja,
            reason_en: &o.reason_en,
            operator: &o.operator,
            justification: o.justification.as_deref(),
            created_at: rfc3339_ms(o.created_at_ms),
            order_hash: hex(&o.order_hash),
            delivered_at: o.delivered_at_ms.map(rfc3339_ms),
            deliveries: o.deliveries,
            acknowledged_at: o.outcome_at_ms.map(rfc3339_ms),
            detail: o.detail.as_deref(),
            receipt: o.receipt.as_ref().map(|r| ReceiptJson {
                applied_at: rfc3339_s(r.applied_at),
                device_clock: rfc3339_s(r.device_clock),
                time_floor: rfc3339_s(r.time_floor),
                clock: &r.clock,
                resulting_state: &r.resulting_state,
                drill: r.drill,
                scheme: format!("0x{:04x}", r.scheme),
            }),
        }
    }
}

#[derive(Serialize)]
struct IncidentJson<'a> {
    seq: u64,
    id: &'a str,
    command_id: Option<u64>,
    segment: &'a str,
    summary: &'a str,
    recorded_at: String,
    received_at: String,
    report: Value,
}

impl<'a> IncidentJson<'a> {
    fn new(i: &'a IncidentRow) -> Self {
        Self {
            seq: i.seq,
            id: &i.incident_id,
            command_id: i.command_id,
            segment: &i.segment,
            summary: &i.summary,
            recorded_at: rfc3339_ms(i.recorded_at_ms),
            received_at: rfc3339_ms(i.received_at_ms),
            report: embedded(&i.report_json),
        }
    }
}

/// The service state text of a device: `normal`, or e.g. `suspended (order 5)`.
fn service(row: &DeviceRow) -> &str {
    row.suspension.as_deref().unwrap_or("normal")
}

/// The check lines of a diagnosis report (`cpe-agent diagnose --json`):
/// status, segment/name and evidence of each check.
fn diagnosis_checks(report_json: &str) -> Vec<Vec<String>> {
    let report = embedded(report_json);
    let Some(checks) = report.get("checks").and_then(Value::as_array) else { return Vec::new() };
    let field = |c: &Value, k: &str| match c.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    checks
        .iter()
        .map(|c| {
            vec![
                field(c, "status"),
                format!("{}/{}", field(c, "segment"), field(c, "name")),
                field(c, "evidence"),
            ]
        })
        .collect()
}

/// `cert expiry`: certificates per month of expiry, then the devices at each
/// alert threshold and the expired ones (text), or the report as JSON.
pub fn render_expiry(report: &ExpiryReport, at: OffsetDateTime, json: bool) -> String {
    if json {
        return to_json(report);
    }
    let mut out = format!("certificates by month of expiry / 有効期限の月別 (as of {})\n", rfc3339(at));
    let months: Vec<Vec<String>> =
        report.by_month.iter().map(|(m, n)| vec![m.clone(), n.to_string()]).collect();
    out.push_str(&table(&["MONTH", "CERTIFICATES"], &months));
    let line = |out: &mut String, e: &CertExpiry| {
        let _ = writeln!(
            out,
            "  {}  {} ({} days left / 残り{}日)",
            e.device,
            date_s(e.not_after),
            e.days_left,
            e.days_left
        );
    };
    for bucket in &report.due {
        let _ = writeln!(
            out,
            "within {} days / 残り{}日以内: {} devices",
            bucket.within_days,
            bucket.within_days,
            bucket.devices.len()
        );
        bucket.devices.iter().for_each(|e| line(&mut out, e));
    }
    let _ = writeln!(out, "expired / 期限切れ: {} devices", report.expired.len());
    report.expired.iter().for_each(|e| line(&mut out, e));
    if !report.unknown.is_empty() {
        let _ = writeln!(out, "certificate not seen yet / 証明書未確認: {}", report.unknown.join(", "));
    }
    out
}

/// The device list: a table (id, state, last seen, certificate expiry, open
/// alerts, suspension) or a JSON array.
pub fn render_devices(rows: &[DeviceRow], now_ms: i64, json: bool) -> String {
    if json {
        return to_json(&rows.iter().map(|r| DeviceJson::new(r, now_ms)).collect::<Vec<_>>());
    }
    if rows.is_empty() {
        return "no devices have reported yet\n".into();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.state.as_str().to_owned(),
                format!("{} ({})", rfc3339_ms(r.last_seen_ms), ago(r.last_seen_ms, now_ms)),
                cert_expiry(r.cert_not_after, now_ms),
                r.open_alerts.to_string(),
                r.suspension.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out =
        table(&["DEVICE", "STATE", "LAST SEEN", "CERTIFICATE EXPIRES", "ALERTS", "SUSPENSION"], &cells);
    let down = rows.iter().filter(|r| r.state == cpe_provision::store::DeviceState::Down).count();
    let _ = writeln!(out, "{} devices, {} up, {down} down", rows.len(), rows.len() - down);
    out
}

fn report_cells(r: &ReportRow) -> Vec<String> {
    vec![
        r.seq.to_string(),
        rfc3339_ms(r.recorded_at_ms),
        rfc3339_ms(r.received_at_ms),
        r.kind.as_str().to_owned(),
        r.summary.clone(),
    ]
}

fn command_cells(c: &CommandRow, now_ms: i64) -> Vec<String> {
    let delivered = match c.delivered_at_ms {
        Some(t) => format!("{} (x{})", ago(t, now_ms), c.deliveries),
        None => "pending".into(),
    };
    let result = match (c.acked_at_ms, c.ok) {
        (Some(_), Some(true)) => "ok".into(),
        (Some(_), _) => "failed".into(),
        (None, _) => "-".into(),
    };
    vec![
        c.id.to_string(),
        c.kind.clone(),
        rfc3339_ms(c.created_at_ms),
        delivered,
        result,
        c.detail.clone().unwrap_or_default(),
    ]
}

fn alert_cells(a: &AlertRow) -> Vec<String> {
    vec![
        a.id.to_string(),
        a.device_id.clone(),
        a.kind.clone(),
        a.level.clone(),
        rfc3339_ms(a.raised_at_ms),
        a.cleared_at_ms.map_or_else(|| "open".into(), rfc3339_ms),
        a.message.clone(),
    ]
}

const ALERT_HEADERS: [&str; 7] = ["ID", "DEVICE", "KIND", "LEVEL", "RAISED", "CLEARED", "MESSAGE"];

fn device_detail_json(detail: &DeviceDetail, now_ms: i64) -> String {
    let row = &detail.row;
    let value = DeviceDetailJson {
        device: DeviceJson::new(row, now_ms),
        service: service(row),
        last_health: row.last_health.as_deref().map(embedded),
        latest_incident: detail.latest_incident.as_ref().map(IncidentJson::new),
        recent_orders: detail.recent_orders.iter().map(OrderJson::new).collect(),
        recent_reports: detail
            .recent_reports
            .iter()
            .map(|r| ReportJson {
                seq: r.seq,
                kind: r.kind.as_str(),
                recorded_at: rfc3339_ms(r.recorded_at_ms),
                received_at: rfc3339_ms(r.received_at_ms),
                summary: embedded(&r.summary),
                _row: std::marker::PhantomData,
            })
            .collect(),
        open_alerts: detail.open_alerts.iter().map(AlertJson::new).collect(),
        recent_commands: detail
            .recent_commands
            .iter()
            .map(|c| CommandJson {
                id: c.id,
                kind: &c.kind,
                created_at: rfc3339_ms(c.created_at_ms),
                delivered_at: c.delivered_at_ms.map(rfc3339_ms),
                deliveries: c.deliveries,
                acked_at: c.acked_at_ms.map(rfc3339_ms),
                ok: c.ok,
                detail: c.detail.as_deref(),
                requested_by: c.requested_by.as_deref(),
            })
            .collect(),
    };
    to_json(&value)
}

/// One device: its fields, last health, recent reports, open alerts and
/// recent commands; or one JSON object.
pub fn render_device(detail: &DeviceDetail, now_ms: i64, json: bool) -> String {
    let row = &detail.row;
    if json {
        return device_detail_json(detail, now_ms);
    }
    let fields = [
        ("device", row.id.clone()),
        ("institution", row.institution_code.clone()),
        (
            "state",
            format!(
                "{} since {} ({})",
                row.state,
                rfc3339_ms(row.state_since_ms),
                ago(row.state_since_ms, now_ms)
            ),
        ),
        ("first seen", rfc3339_ms(row.first_seen_ms)),
        ("last seen", format!("{} ({})", rfc3339_ms(row.last_seen_ms), ago(row.last_seen_ms, now_ms))),
        ("certificate", cert_expiry(row.cert_not_after, now_ms)),
        ("service", service(row).to_owned()),
        ("open alerts", row.open_alerts.to_string()),
        ("last health", row.last_health.as_deref().map_or_else(|| "-".into(), json_line)),
        (
            "diagnosis",
            detail.latest_incident.as_ref().map_or_else(
                || "-".into(),
                |i| {
                    format!(
                        "{}: {} ({}, {})",
                        i.segment,
                        i.summary,
                        rfc3339_ms(i.received_at_ms),
                        ago(i.received_at_ms, now_ms)
                    )
                },
            ),
        ),
    ];
    let mut out = String::new();
    for (k, v) in fields {
        let _ = writeln!(out, "{k:<13}{v}");
    }
    let mut section = |title: &str, body: String| {
        out.push('\n');
        out.push_str(title);
        out.push('\n');
        for line in body.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    };
    if let Some(incident) = &detail.latest_incident {
        let checks = diagnosis_checks(&incident.report_json);
        if !checks.is_empty() {
            section("latest diagnosis checks", table(&["STATUS", "CHECK", "EVIDENCE"], &checks));
        }
    }
    let orders: Vec<Vec<String>> = detail.recent_orders.iter().map(order_cells).collect();
    if !orders.is_empty() {
        section("recent orders (newest first)", table(&ORDER_HEADERS, &orders));
    }
    let reports: Vec<Vec<String>> = detail.recent_reports.iter().map(report_cells).collect();
    section(
        "recent reports (newest first)",
        if reports.is_empty() {
            "none".into()
        } else {
            table(&["SEQ", "RECORDED", "RECEIVED", "KIND", "SUMMARY"], &reports)
        },
    );
    let alerts: Vec<Vec<String>> = detail.open_alerts.iter().map(alert_cells).collect();
    section("open alerts", if alerts.is_empty() { "none".into() } else { table(&ALERT_HEADERS, &alerts) });
    let commands: Vec<Vec<String>> =
        detail.recent_commands.iter().map(|c| command_cells(c, now_ms)).collect();
    section(
        "recent commands (newest first)",
        if commands.is_empty() {
            "none".into()
        } else {
            table(&["ID", "KIND", "CREATED", "DELIVERED", "RESULT", "DETAIL"], &commands)
        },
    );
    out
}

const ORDER_HEADERS: [&str; 8] = ["ID", "DEVICE", "KIND", "SEQ", "STATE", "ISSUED", "EXPIRES", "REASON"];

fn order_cells(o: &OrderRow) -> Vec<String> {
    let state = match (o.state(), &o.receipt) {
        ("applied", Some(r)) => {
            format!("applied → {}{}", r.resulting_state, if r.drill { " (drill)" } else { "" })
        }
        ("refused", _) => format!("refused: {}", o.detail.as_deref().unwrap_or("-")),
        (state, _) => state.to_owned(),
    };
    vec![
        o.id.to_string(),
        o.device_id.clone(),
        o.kind.clone(),
        o.sequence.to_string(),
        state,
        rfc3339_s(o.issued_at),
        rfc3339_s(o.expires_at),
        o.reason_en.clone(),
    ]
}

/// Orders as a table or a JSON array.
pub fn render_orders(rows: &[OrderRow], json: bool) -> String {
    if json {
        return to_json(&rows.iter().map(OrderJson::new).collect::<Vec<_>>());
    }
    if rows.is_empty() {
        return "no orders\n".into();
    }
    table(&ORDER_HEADERS, &rows.iter().map(order_cells).collect::<Vec<_>>())
}

/// One order: every field, its delivery and the verified receipt.
pub fn render_order(o: &OrderRow, json: bool) -> String {
    if json {
        return to_json(&OrderJson::new(o));
    }
    let j = OrderJson::new(o);
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut fields = vec![
        ("order", o.id.to_string()),
        ("device", o.device_id.clone()),
        ("kind", o.kind.clone()),
        ("sequence", o.sequence.to_string()),
        ("state", o.state().to_owned()),
        ("case", opt(o.case_id.map(|c| c.to_string()))),
        ("issued by", o.operator.clone()),
        ("issued at", j.issued_at.clone()),
        ("valid", format!("{} to {}", j.not_before, j.expires_at)),
        ("deadline", opt(j.deadline.clone())),
        ("reason (ja)", o.reason_ja.clone()),
        ("reason (en)", o.reason_en.clone()),
        ("justification", opt(o.justification.clone())),
        ("signing key", o.key_id.clone()),
        ("order hash", j.order_hash.clone()),
        ("command", opt(o.command_id.map(|c| c.to_string()))),
        ("delivered", opt(j.delivered_at.clone().map(|d| format!("{d} (x{})", o.deliveries)))),
        ("acknowledged", opt(j.acknowledged_at.clone())),
        ("device detail", opt(o.detail.clone())),
    ];
    if let Some(r) = &j.receipt {
        fields.extend([
            ("applied at", r.applied_at.clone()),
            ("clock", format!("{} (device clock {}, time floor {})", r.clock, r.device_clock, r.time_floor)),
            (
                "result",
                format!("{}{}", r.resulting_state, if r.drill { " (drill: nothing blocked)" } else { "" }),
            ),
            ("receipt", format!("signature verified (scheme {})", r.scheme)),
        ]);
    }
    let mut out = String::new();
    for (k, v) in fields {
        let _ = writeln!(out, "{k:<15}{v}");
    }
    out
}

fn event_details(e: &CaseEventRow) -> String {
    let mut parts = vec![e.text.clone()];
    if let Some(to) = &e.recipient {
        parts.push(format!("to: {to}"));
    }
    if let Some(d) = e.deadline_ms {
        parts.push(format!("deadline {}", rfc3339_ms(d)));
    }
    if let Some(c) = e.corrected {
        parts.push(if c { "corrected".into() } else { "NOT corrected".into() });
    }
    if let Some(j) = &e.justification {
        parts.push(format!("justification: {j}"));
    }
    if let Some(o) = e.order_id {
        parts.push(format!("order {o}"));
    }
    parts.retain(|p| !p.is_empty());
    parts.join("; ")
}

#[derive(Serialize)]
struct CaseEventJson<'a> {
    id: u64,
    step: &'static str,
    at: String,
    at_ms: i64,
    operator: &'a str,
    text: &'a str,
    recipient: Option<&'a str>,
    deadline: Option<String>,
    corrected: Option<bool>,
    justification: Option<&'a str>,
    order_id: Option<u64>,
}

#[derive(Serialize)]
struct CaseJson<'a> {
    id: u64,
    device_id: &'a str,
    opened_at: String,
    status: &'static str,
    trail: Vec<CaseEventJson<'a>>,
    orders: Vec<OrderJson<'a>>,
}

/// A case's whole trail (who, when, what, why) and its orders.
pub fn render_case(detail: &CaseDetail, json: bool) -> String {
    let status =
        cpe_provision::compliance::flow::CaseState::of(&cpe_provision::compliance::flow::Trail::of(detail))
            .label();
    if json {
        return to_json(&CaseJson {
            id: detail.case.id,
            device_id: &detail.case.device_id,
            opened_at: rfc3339_ms(detail.case.opened_at_ms),
            status,
            trail: detail
                .events
                .iter()
                .map(|e| CaseEventJson {
                    id: e.id,
                    step: e.step.as_str(),
                    at: rfc3339_ms(e.at_ms),
                    at_ms: e.at_ms,
                    operator: &e.operator,
                    text: &e.text,
                    recipient: e.recipient.as_deref(),
                    deadline: e.deadline_ms.map(rfc3339_ms),
                    corrected: e.corrected,
                    justification: e.justification.as_deref(),
                    order_id: e.order_id,
                })
                .collect(),
            orders: detail.orders.iter().map(OrderJson::new).collect(),
        });
    }
    let mut out = String::new();
    let _ = writeln!(out, "case         {}", detail.case.id);
    let _ = writeln!(out, "device       {}", detail.case.device_id);
    let _ = writeln!(out, "opened       {}", rfc3339_ms(detail.case.opened_at_ms));
    let _ = writeln!(out, "status       {status}");
    out.push_str("\ntrail\n");
    let cells: Vec<Vec<String>> = detail
        .events
        .iter()
        .map(|e| vec![rfc3339_ms(e.at_ms), e.step.as_str().to_owned(), e.operator.clone(), event_details(e)])
        .collect();
    for line in table(&["WHEN", "STEP", "WHO", "WHAT / WHY"], &cells).lines() {
        let _ = writeln!(out, "  {line}");
    }
    if !detail.orders.is_empty() {
        out.push_str("\norders\n");
        for line in render_orders(&detail.orders, false).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// Incident records (self-diagnosis results), newest first.
pub fn render_incidents(rows: &[IncidentRow], json: bool) -> String {
    if json {
        return to_json(&rows.iter().map(IncidentJson::new).collect::<Vec<_>>());
    }
    if rows.is_empty() {
        return "no incident records\n".into();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|i| {
            vec![
                i.seq.to_string(),
                rfc3339_ms(i.received_at_ms),
                i.segment.clone(),
                i.command_id.map_or_else(|| "-".into(), |c| c.to_string()),
                i.incident_id.clone(),
                i.summary.clone(),
            ]
        })
        .collect();
    table(&["SEQ", "RECEIVED", "SEGMENT", "COMMAND", "ID", "SUMMARY"], &cells)
}

/// The checks of `order verify`: a table, or a JSON object with `passed`.
pub fn render_audit(
    order_id: u64,
    checks: &[cpe_provision::compliance::reverify::AuditCheck],
    json: bool,
) -> String {
    let passed = checks.iter().all(|c| c.result != "failed");
    if json {
        return to_json(&serde_json::json!({ "order": order_id, "passed": passed, "checks": checks }));
    }
    let cells: Vec<Vec<String>> =
        checks.iter().map(|c| vec![c.name.to_owned(), c.result.to_owned(), c.detail.clone()]).collect();
    let mut out = table(&["CHECK", "RESULT", "EVIDENCE"], &cells);
    let _ = writeln!(out, "order {order_id}: {}", if passed { "verified" } else { "VERIFICATION FAILED" });
    out
}

/// Order-signing keys: current first, then retired.
pub fn render_keys(keys: &[KeyInfo], json: bool) -> String {
    if json {
        return to_json(&keys);
    }
    let cells: Vec<Vec<String>> =
        keys.iter().map(|k| vec![k.status.to_owned(), k.key_id.clone(), k.public_key.clone()]).collect();
    let mut out = table(&["STATUS", "KEY ID", "PUBLIC KEY (Ed25519, hex)"], &cells);
    if let Some(current) = keys.iter().find(|k| k.status == "current") {
        let _ = writeln!(out, "\nagent configuration:\n[orders]\nkeys = [\"{}\"]", current.public_key);
    }
    out
}

/// Alerts as a table (id, device, kind, level, raised, cleared or `open`,
/// message) or a JSON array.
pub fn render_alerts(rows: &[AlertRow], json: bool) -> String {
    if json {
        return to_json(&rows.iter().map(AlertJson::new).collect::<Vec<_>>());
    }
    if rows.is_empty() {
        return "no alerts\n".into();
    }
    let cells: Vec<Vec<String>> = rows.iter().map(alert_cells).collect();
    table(&ALERT_HEADERS, &cells)
}

const OPERATOR_HEADERS: [&str; 4] = ["NAME", "ROLE", "PASSWORD SET", "STATE"];

/// `operator list`.
pub fn render_operators(rows: &[OperatorInfo], json: bool) -> String {
    if json {
        return to_json(&rows);
    }
    if rows.is_empty() {
        return "no operators; add one with `cpe-provision operator add NAME --role viewer --password-file FILE`\n"
            .into();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|o| {
            vec![
                o.name.clone(),
                o.role.to_string(),
                rfc3339_ms(o.password_changed_at_ms),
                o.disabled_at_ms.map_or_else(|| "enabled".into(), |t| format!("disabled {}", rfc3339_ms(t))),
            ]
        })
        .collect();
    table(&OPERATOR_HEADERS, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpe_provision::store::{DeviceState, ReportKind};

    // 2026-05-01T12:00:00Z
    const NOW: i64 = 1_777_636_800_000;

    fn device(id: &str, state: DeviceState, last_seen_ms: i64) -> DeviceRow {
        DeviceRow {
            id: id.into(),
            institution_code: "1312345678".into(),
            first_seen_ms: NOW - 10 * MS_PER_DAY,
            last_seen_ms,
            state,
            state_since_ms: last_seen_ms,
            cert_not_after: Some(NOW / 1000 + 302 * 86_400 + 3600),
            last_health: Some(
                r#"{"cpu_pct":12.5,"active_uplink":"wan0","interfaces":[{},{}],"temperature_c":null}"#.into(),
            ),
            suspension: None,
            open_alerts: 0,
        }
    }

    fn alert(id: i64, cleared: Option<i64>) -> AlertRow {
        AlertRow {
            id,
            device_id: "1312345678/cpe-01".into(),
            kind: "down".into(),
            level: "warning".into(),
            message: "no report for 300 s".into(),
            raised_at_ms: NOW - 60_000,
            cleared_at_ms: cleared,
            acknowledged_at_ms: None,
            acknowledged_by: None,
        }
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339_ms(NOW), "2026-05-01T12:00:00Z");
        assert_eq!(rfc3339_ms(NOW + 999), "2026-05-01T12:00:00Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339_ms(i64::MAX), format!("@{}ms", i64::MAX));
        assert_eq!(ago(NOW - 42_000, NOW), "42s ago");
        assert_eq!(ago(NOW - 119_999, NOW), "119s ago");
        assert_eq!(ago(NOW - 17 * 60_000, NOW), "17m ago");
        assert_eq!(ago(NOW - 5 * 3_600_000, NOW), "5h ago");
        assert_eq!(ago(NOW - 3 * MS_PER_DAY, NOW), "3d ago");
        assert_eq!(ago(NOW + 5_000, NOW), "in 5s");
        assert_eq!(cert_expiry(None, NOW), "-");
        assert_eq!(cert_expiry(Some(NOW / 1000 + 302 * 86_400 + 10), NOW), "2027-02-27 (302d left)");
        assert_eq!(cert_expiry(Some(NOW / 1000 - 12 * 86_400 - 10), NOW), "2026-04-19 (EXPIRED 12d ago)");
        assert_eq!(days_left(NOW / 1000 - 1, NOW), -1);
        assert_eq!(display_width("abc"), 3);
        assert_eq!(display_width("警告"), 4);
    }

    #[test]
    fn device_table() {
        let mut down = device("1312345678/cpe-02", DeviceState::Down, NOW - 17 * 60_000);
        down.open_alerts = 2;
        down.suspension = Some("order 7".into());
        down.cert_not_after = None;
        let rows = vec![device("1312345678/cpe-01", DeviceState::Up, NOW - 42_000), down];
        let text = render_devices(&rows, NOW, false);
        let expected = "\
DEVICE             STATE  LAST SEEN                       CERTIFICATE EXPIRES     ALERTS  SUSPENSION
1312345678/cpe-01  up     2026-05-01T11:59:18Z (42s ago)  2027-02-27 (302d left)  0       -
1312345678/cpe-02  down   2026-05-01T11:43:00Z (17m ago)  -                       2       order 7
2 devices, 1 up, 1 down
";
        assert_eq!(text, expected);
        assert_eq!(render_devices(&[], NOW, false), "no devices have reported yet\n");
    }

    #[test]
    fn device_json_has_stable_keys() {
        let rows = vec![device("1312345678/cpe-01", DeviceState::Up, NOW - 42_000)];
        let text = render_devices(&rows, NOW, true);
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let obj = v.get(0).and_then(Value::as_object).cloned().unwrap_or_default();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut expected = vec![
            "id",
            "institution_code",
            "state",
            "state_since",
            "first_seen",
            "last_seen",
            "last_seen_ms",
            "last_seen_ago_s",
            "cert_not_after",
            "cert_days_left",
            "open_alerts",
            "suspension",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(obj["state"], "up");
        assert_eq!(obj["last_seen"], "2026-05-01T11:59:18Z");
        assert_eq!(obj["last_seen_ago_s"], 42);
        assert_eq!(obj["cert_days_left"], 302);
        assert_eq!(obj["suspension"], Value::Null);
        // Key order in the text is the declared one, the same on every run.
        assert!(text.find("\"id\"") < text.find("\"state\""));
        assert_eq!(render_devices(&[], NOW, true), "[]\n");
    }

    fn detail() -> DeviceDetail {
        let mut row = device("1312345678/cpe-01", DeviceState::Up, NOW - 5_000);
        row.open_alerts = 1;
        DeviceDetail {
            row,
            recent_reports: vec![ReportRow {
                seq: 7,
                recorded_at_ms: NOW - 6_000,
                received_at_ms: NOW - 5_000,
                kind: ReportKind::Heartbeat,
                summary: r#"{"cpu":12.5}"#.into(),
            }],
            open_alerts: vec![alert(3, None)],
            recent_commands: vec![
                CommandRow {
                    id: 2,
                    kind: "diagnose".into(),
                    created_at_ms: NOW - 30_000,
                    delivered_at_ms: None,
                    deliveries: 0,
                    acked_at_ms: None,
                    ok: None,
                    detail: None,
                    requested_by: None,
                },
                CommandRow {
                    id: 1,
                    kind: "report-now".into(),
                    created_at_ms: NOW - 90_000,
                    delivered_at_ms: Some(NOW - 80_000),
                    deliveries: 2,
                    acked_at_ms: Some(NOW - 79_000),
                    ok: Some(true),
                    detail: Some("sent".into()),
                    requested_by: Some("sato".into()),
                },
            ],
            recent_orders: Vec::new(),
            latest_incident: None,
        }
    }

    #[test]
    fn one_device_text() {
        let text = render_device(&detail(), NOW, false);
        assert!(text.starts_with("device       1312345678/cpe-01\n"), "{text}");
        assert!(text.contains("state        up since 2026-05-01T11:59:55Z (5s ago)\n"), "{text}");
        assert!(text.contains("certificate  2027-02-27 (302d left)\n"), "{text}");
        assert!(text.contains("last health  active_uplink=wan0 cpu_pct=12.5 interfaces=[2]\n"), "{text}");
        assert!(
            text.contains("  7    2026-05-01T11:59:54Z  2026-05-01T11:59:55Z  heartbeat  {\"cpu\":12.5}\n"),
            "{text}"
        );
        assert!(text.contains("open alerts\n  ID  DEVICE"), "{text}");
        assert!(text.contains("  2   diagnose    2026-05-01T11:59:30Z  pending       -\n"), "{text}");
        assert!(
            text.contains("  1   report-now  2026-05-01T11:58:30Z  80s ago (x2)  ok      sent\n"),
            "{text}"
        );
        let mut empty = detail();
        empty.recent_reports.clear();
        empty.open_alerts.clear();
        empty.recent_commands.clear();
        let text = render_device(&empty, NOW, false);
        assert_eq!(text.matches("  none\n").count(), 3, "{text}");
    }

    #[test]
    fn one_device_json() {
        let v: Value = serde_json::from_str(&render_device(&detail(), NOW, true)).unwrap_or(Value::Null);
        assert_eq!(v["device"]["id"], "1312345678/cpe-01");
        assert_eq!(v["last_health"]["cpu_pct"], 12.5);
        assert_eq!(v["recent_reports"][0]["summary"]["cpu"], 12.5);
        assert_eq!(v["recent_reports"][0]["kind"], "heartbeat");
        assert_eq!(v["open_alerts"][0]["cleared_at"], Value::Null);
        assert_eq!(v["recent_commands"][1]["ok"], true);
        assert_eq!(v["recent_commands"][0]["delivered_at"], Value::Null);
    }

    #[test]
    fn alerts_table_and_json() {
        let rows = vec![alert(4, Some(NOW)), alert(3, None)];
        let text = render_alerts(&rows, false);
        let expected = "\
ID  DEVICE             KIND  LEVEL    RAISED                CLEARED               MESSAGE
4   1312345678/cpe-01  down  warning  2026-05-01T11:59:00Z  2026-05-01T12:00:00Z  no report for 300 s
3   1312345678/cpe-01  down  warning  2026-05-01T11:59:00Z  open                  no report for 300 s
";
        assert_eq!(text, expected);
        assert_eq!(render_alerts(&[], false), "no alerts\n");
        let v: Value = serde_json::from_str(&render_alerts(&rows, true)).unwrap_or(Value::Null);
        assert_eq!(v[0]["cleared_at"], "2026-05-01T12:00:00Z");
        assert_eq!(v[1]["cleared_at_ms"], Value::Null);
        assert_eq!(v[1]["raised_at_ms"], NOW - 60_000);
    }

    #[test]
    fn json_lines() {
        assert_eq!(
            json_line(r#"{"b":1,"a":"x","c":{"d":1},"e":[1,2,3],"f":null,"g":true}"#),
            "a=x b=1 c={..} e=[3] g=true"
        );
        assert_eq!(json_line("not json"), "not json");
        assert_eq!(json_line("[1,2]"), "[1,2]");
    }

    #[test]
    fn wide_characters_align() {
        let mut a = alert(1, None);
        a.level = "警告".into();
        let text = render_alerts(&[a, alert(2, None)], false);
        let col = |l: &str, word: &str| l.find(word).map(|i| display_width(&l[..i]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(col(lines[0], "RAISED"), col(lines[1], "2026"), "{text}");
        assert_eq!(col(lines[1], "2026"), col(lines[2], "2026"), "{text}");
    }

    fn order_row(id: u64, kind: &str, applied: bool) -> OrderRow {
        OrderRow {
            id,
            device_id: "1312345678/cpe-01".into(),
            case_id: Some(4),
            command_id: Some(9),
            kind: kind.into(),
            sequence: id,
            key_id: "0011223344556677".into(),
            issued_at: NOW / 1000,
            not_before: NOW / 1000 - 300,
            expires_at: NOW / 1000 + 7 * 86_400,
            deadline: None,
            reason_ja: "停止".into(),
            reason_en: "stop".into(),
            operator: "tanaka".into(),
            justification: Some("exfiltration".into()),
            created_at_ms: NOW,
            order_hash: vec![0xab; 32],
            delivered_at_ms: Some(NOW + 1000),
            deliveries: 1,
            outcome: applied.then(|| "applied".into()),
            outcome_at_ms: applied.then_some(NOW + 2000),
            detail: applied.then(|| "blocked".into()),
            receipt: applied.then(|| cpe_provision::store::ReceiptFields {
                applied_at: NOW / 1000 + 2,
                device_clock: 100,
                time_floor: NOW / 1000,
                clock: "untrusted".into(),
                resulting_state: "suspended".into(),
                drill: false,
                scheme: 0x0403,
            }),
        }
    }

    #[test]
    fn orders_table_json_and_detail() {
        let rows = vec![order_row(2, "stop", true), order_row(1, "notice", false)];
        let text = render_orders(&rows, false);
        let expected = "\
ID  DEVICE             KIND    SEQ  STATE                ISSUED                EXPIRES               REASON
2   1312345678/cpe-01  stop    2    applied → suspended  2026-05-01T12:00:00Z  2026-05-08T12:00:00Z  stop
1   1312345678/cpe-01  notice  1    delivered            2026-05-01T12:00:00Z  2026-05-08T12:00:00Z  stop
";
        assert_eq!(text, expected);
        assert_eq!(render_orders(&[], false), "no orders\n");
        let v: Value = serde_json::from_str(&render_orders(&rows, true)).unwrap_or(Value::Null);
        assert_eq!(v[0]["state"], "applied");
        assert_eq!(v[0]["order_hash"], "ab".repeat(32));
        assert_eq!(v[0]["receipt"]["applied_at"], "2026-05-01T12:00:02Z");
        assert_eq!(v[0]["receipt"]["scheme"], "0x0403");
        assert_eq!(v[1]["receipt"], Value::Null);
        let one = render_order(&rows[0], false);
        assert!(one.contains("state          applied\n"), "{one}");
        assert!(one.contains("clock          untrusted (device clock 1970-01-01T00:01:40Z"), "{one}");
        assert!(one.contains("justification  exfiltration\n"), "{one}");
        let mut refused = order_row(3, "resume", false);
        refused.outcome = Some("refused".into());
        refused.detail = Some("expired".into());
        assert!(render_orders(&[refused], false).contains("refused: expired"));
    }

    #[test]
    fn case_trail_text_and_json() {
        use cpe_provision::store::Step;
        let event = |id: u64, step: Step, text: &str| CaseEventRow {
            id,
            step,
            at_ms: NOW + i64::try_from(id).unwrap_or(0) * 1000,
            operator: "sato".into(),
            text: text.into(),
            deadline_ms: None,
            corrected: None,
            justification: None,
            recipient: None,
            order_id: None,
        };
        let mut report = event(2, Step::Report, "by phone");
        report.recipient = Some("platform operator".into());
        let mut check = event(3, Step::Check, "");
        check.corrected = Some(false);
        let detail = CaseDetail {
            case: cpe_provision::store::CaseRow {
                id: 4,
                device_id: "1312345678/cpe-01".into(),
                opened_at_ms: NOW,
            },
            events: vec![event(1, Step::Fact, "VPN found"), report, check],
            orders: vec![order_row(2, "stop", true)],
        };
        let text = render_case(&detail, false);
        assert!(text.starts_with("case         4\ndevice       1312345678/cpe-01\n"), "{text}");
        assert!(text.contains("status       open\n"), "{text}");
        assert!(
            text.contains("2026-05-01T12:00:02Z  report  sato  by phone; to: platform operator\n"),
            "{text}"
        );
        assert!(text.contains("check   sato  NOT corrected\n"), "{text}");
        assert!(text.contains("orders\n  ID"), "{text}");
        let v: Value = serde_json::from_str(&render_case(&detail, true)).unwrap_or(Value::Null);
        assert_eq!(v["trail"][1]["recipient"], "platform operator");
        assert_eq!(v["trail"][2]["corrected"], false);
        assert_eq!(v["orders"][0]["id"], 2);
    }

    fn incident(seq: u64) -> IncidentRow {
        IncidentRow {
            seq,
            incident_id: format!("d-{seq}"),
            command_id: Some(7),
            segment: "uplink".into(),
            summary: "gateway unreachable".into(),
            report_json: r#"{"checks":[{"name":"gw","segment":"uplink","status":"failed","evidence":"3/3 lost"},{"name":"link","segment":"lan","status":"ok","evidence":null}]}"#.into(),
            recorded_at_ms: NOW - 1000,
            received_at_ms: NOW,
        }
    }

    #[test]
    fn incidents_and_latest_diagnosis_on_the_device() {
        let text = render_incidents(&[incident(3)], false);
        assert!(
            text.contains("3    2026-05-01T12:00:00Z  uplink   7        d-3  gateway unreachable"),
            "{text}"
        );
        assert_eq!(render_incidents(&[], false), "no incident records\n");
        let v: Value = serde_json::from_str(&render_incidents(&[incident(3)], true)).unwrap_or(Value::Null);
        assert_eq!(v[0]["report"]["checks"][0]["evidence"], "3/3 lost");
        assert_eq!(diagnosis_checks("not json"), Vec::<Vec<String>>::new());
        let mut d = detail();
        d.latest_incident = Some(incident(3));
        d.row.suspension = Some("suspended (order 2)".into());
        d.recent_orders = vec![order_row(2, "stop", true)];
        let text = render_device(&d, NOW, false);
        assert!(text.contains("service      suspended (order 2)\n"), "{text}");
        assert!(
            text.contains("diagnosis    uplink: gateway unreachable (2026-05-01T12:00:00Z, 0s ago)\n"),
            "{text}"
        );
        assert!(text.contains("  failed  uplink/gw  3/3 lost\n  ok      lan/link\n"), "{text}");
        assert!(text.contains("recent orders (newest first)\n"), "{text}");
        let v: Value = serde_json::from_str(&render_device(&d, NOW, true)).unwrap_or(Value::Null);
        assert_eq!(v["service"], "suspended (order 2)");
        assert_eq!(v["latest_incident"]["segment"], "uplink");
        assert_eq!(v["recent_orders"][0]["state"], "applied");
        let plain: Value = serde_json::from_str(&render_device(&detail(), NOW, true)).unwrap_or(Value::Null);
        assert_eq!((plain["service"].as_str(), &plain["latest_incident"]), (Some("normal"), &Value::Null));
    }

    #[test]
    fn keys_table_ends_with_the_agent_configuration() {
        let keys = vec![
            KeyInfo { key_id: "aa".into(), public_key: "11".repeat(32), status: "current" },
            KeyInfo { key_id: "bb".into(), public_key: "22".repeat(32), status: "retired" },
        ];
        let text = render_keys(&keys, false);
        assert!(text.starts_with("STATUS   KEY ID  PUBLIC KEY"), "{text}");
        assert!(text.ends_with(&format!("[orders]\nkeys = [\"{}\"]\n", "11".repeat(32))), "{text}");
        let v: Value = serde_json::from_str(&render_keys(&keys, true)).unwrap_or(Value::Null);
        assert_eq!(v[1]["status"], "retired");
    }
}
