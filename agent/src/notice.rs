//! The notice page (guideline §2.2 ⑦, §1.1.2(4)): a small HTTP page on the
//! LAN address that tells clinic staff, Japanese first and then English,
//! whether the network service is normal, under a corrective
//! recommendation (with its deadline), suspended by a carrier order, or in a
//! drill; why and since when; whom to call; the last self-diagnosis verdict
//! and a health summary.
//!
//! [`render`] is a pure function from a [`NoticeView`] to HTML, with every
//! value HTML-escaped. [`serve`] is a tiny HTTP/1.1 responder started by
//! `cpe-agent run` on `[notice] listen`; it reads the order state and
//! `<state_dir>/diagnosis/last.json` on every request, so the page is never
//! stale, whichever process (daemon or `cpe-agent orders apply`) applied
//! the last order. One request per connection, its head bounded to 8 KiB
//! and 10 s: a notice page needs no more, and a general HTTP server would
//! cost the router's binary more than the page itself. The page is served
//! to the LAN by the CPE itself (input
//! traffic), so a suspension, which blocks only forwarding, never hides it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpe_protocol::receipt::ServiceState;
use cpe_protocol::Health;
use tokio::net::TcpListener;

use crate::orders::state::{ServiceRecord, StateStore};

/// Largest diagnosis file read.
const MAX_DIAGNOSIS_BYTES: u64 = 256 * 1024;

/// Most connections served at once (a clinic has a handful of terminals).
const MAX_CONNECTIONS: usize = 16;

/// The latest heartbeat figures, shared with the daemon's sampler.
pub type HealthSlot = Arc<Mutex<Option<Health>>>;

/// The last self-diagnosis verdict, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnosisSummary {
    /// The faulty segment (`terminal`, `lan`, `device`, `uplink`, `carrier`, `none`, `suspended`).
    pub segment: String,
    /// The verdict summary.
    pub summary: String,
    /// When the run started (RFC 3339), if given.
    pub started_at: Option<String>,
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct NoticeView {
    /// The service state and its order.
    pub service: ServiceRecord,
    /// `None` when the order state could not be read.
    pub state_problem: Option<String>,
    /// The carrier's contact, Japanese.
    pub contact_ja: String,
    /// The carrier's contact, English.
    pub contact_en: String,
    /// The last diagnosis.
    pub diagnosis: Option<DiagnosisSummary>,
    /// The latest health figures.
    pub health: Option<Health>,
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
fn date(unix: i64, japanese: bool) -> String {
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

fn headline(service: &ServiceRecord, japanese: bool) -> (&'static str, String) {
    let deadline = service.deadline.map(|d| date(d, japanese));
    match (service.state, japanese) {
        (ServiceState::Normal, true) => {
            ("normal", "ネットワークサービスは通常どおりご利用いただけます。".into())
        }
        (ServiceState::Normal, false) => ("normal", "The network service is operating normally.".into()),
        (ServiceState::Recommendation, true) => (
            "recommendation",
            format!(
                "接続ルールについて是正勧告が出ています。期限: {}",
                deadline.unwrap_or_else(|| "（指定なし）".into())
            ),
        ),
        (ServiceState::Recommendation, false) => (
            "recommendation",
            format!(
                "A corrective recommendation about the connection rules is in force. Deadline: {}",
                deadline.unwrap_or_else(|| "(none given)".into())
            ),
        ),
        (ServiceState::Suspended, true) => {
            ("suspended", "通信事業者の命令により、ネットワークサービスを停止しています。".into())
        }
        (ServiceState::Suspended, false) => {
            ("suspended", "The network service is suspended by order of the carrier.".into())
        }
        (ServiceState::Drill, true) => {
            ("drill", "【訓練】これは停止の訓練です。通信は遮断されていません。".into())
        }
        (ServiceState::Drill, false) => {
            ("drill", "[DRILL] This is a suspension drill. Traffic is not blocked.".into())
        }
    }
}

fn health_line(health: &Health, japanese: bool) -> String {
    let mut parts = Vec::new();
    let days = health.uptime_s / 86_400;
    let hours = (health.uptime_s % 86_400) / 3600;
    if japanese {
        parts.push(format!("稼働 {days} 日 {hours} 時間"));
        parts.push(format!("CPU {:.0}%", health.cpu_pct));
        parts.push(format!("メモリ {:.0}%", health.mem_pct));
        if let Some(t) = health.temperature_c {
            parts.push(format!("温度 {t:.0}℃"));
        }
        parts.push(format!("使用回線 {}", health.active_uplink.as_deref().unwrap_or("なし")));
        if let Some(end) = health.cert_not_after {
            parts.push(format!("証明書有効期限 {}", date(end, true)));
        }
    } else {
        parts.push(format!("up {days} d {hours} h"));
        parts.push(format!("CPU {:.0}%", health.cpu_pct));
        parts.push(format!("memory {:.0}%", health.mem_pct));
        if let Some(t) = health.temperature_c {
            parts.push(format!("temperature {t:.0} °C"));
        }
        parts.push(format!("uplink {}", health.active_uplink.as_deref().unwrap_or("none")));
        if let Some(end) = health.cert_not_after {
            parts.push(format!("certificate valid until {}", date(end, false)));
        }
    }
    escape(&parts.join(" / "))
}

/// One `<dt>`/`<dd>` pair; `value_html` is already escaped.
fn row(label: &str, class: &str, value_html: &str) -> String {
    format!("<dt>{label}</dt><dd class=\"{class}\">{value_html}</dd>\n")
}

fn section(view: &NoticeView, japanese: bool) -> String {
    let (lang, title) =
        if japanese { ("ja", "回線サービスのお知らせ") } else { ("en", "Network service notice") };
    let label = |ja: &'static str, en: &'static str| if japanese { ja } else { en };
    let (class, text) = match &view.state_problem {
        Some(_) => (
            "unknown",
            label(
                "サービスの状態を確認できません。お問い合わせ先にご連絡ください。",
                "The service state cannot be determined; please contact the carrier.",
            )
            .to_owned(),
        ),
        None => headline(&view.service, japanese),
    };
    let mut rows = Vec::new();
    if let Some(problem) = &view.state_problem {
        rows.push(row(label("状態を読み取れません", "State unreadable"), "problem", &escape(problem)));
    }
    let reason = if japanese { &view.service.reason_ja } else { &view.service.reason_en };
    if view.service.state != ServiceState::Normal && !reason.is_empty() {
        rows.push(row(label("理由", "Reason"), "reason", &escape(reason)));
    }
    if let Some(since) = view.service.since {
        rows.push(row(label("日時", "Since"), "since", &escape(&date(since, japanese))));
    }
    if let (Some(id), Some(seq)) = (view.service.order_id, view.service.sequence) {
        rows.push(row(label("命令番号", "Order"), "order", &format!("{id} (#{seq})")));
    }
    let contact = if japanese { &view.contact_ja } else { &view.contact_en };
    if !contact.is_empty() {
        rows.push(row(label("お問い合わせ先", "Contact"), "contact", &escape(contact)));
    }
    let diagnosis = view.diagnosis.as_ref().map_or_else(
        || label("まだありません", "none yet").to_owned(),
        |d| {
            let at = d.started_at.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
            escape(&format!("{}: {}{at}", d.segment, d.summary))
        },
    );
    rows.push(row(label("最新の自己診断", "Last self-diagnosis"), "diagnosis", &diagnosis));
    let health = view
        .health
        .as_ref()
        .map_or_else(|| label("集計中", "not yet measured").to_owned(), |h| health_line(h, japanese));
    rows.push(row(label("装置の状態", "Device health"), "health", &health));
    format!(
        "<section lang=\"{lang}\">\n<h1>{title}</h1>\n<p class=\"state {class}\" id=\"state-{lang}\">{}</p>\n<dl>\n{}</dl>\n</section>\n",
        escape(&text),
        rows.concat()
    )
}

/// The whole page: Japanese section first, then English.
pub fn render(view: &NoticeView) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"ja\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>回線サービスのお知らせ / Network service notice</title>\n</head>\n<body>\n{}<hr>\n{}</body>\n</html>\n",
        section(view, true),
        section(view, false)
    )
}

/// Reads `<state_dir>/diagnosis/last.json` (the `cpe-agent diagnose --json`
/// document); `None` if absent, too large or not of that shape.
pub fn read_diagnosis(state_dir: &Path) -> Option<DiagnosisSummary> {
    use std::io::Read;
    let file = std::fs::File::open(state_dir.join("diagnosis").join("last.json")).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_DIAGNOSIS_BYTES).read_to_end(&mut bytes).ok()?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let verdict = doc.get("verdict")?;
    Some(DiagnosisSummary {
        segment: verdict.get("segment")?.as_str()?.to_owned(),
        summary: verdict.get("summary")?.as_str()?.to_owned(),
        started_at: doc.get("started_at").and_then(|v| v.as_str()).map(str::to_owned),
    })
}

/// What the server reads the page from.
#[derive(Debug, Clone)]
pub struct NoticeSource {
    /// The agent's state directory.
    pub state_dir: PathBuf,
    /// The carrier's contact, Japanese.
    pub contact_ja: String,
    /// The carrier's contact, English.
    pub contact_en: String,
    /// The latest heartbeat figures.
    pub health: HealthSlot,
}

impl NoticeSource {
    /// The view now.
    pub fn view(&self) -> NoticeView {
        let (service, state_problem) =
            match StateStore::new(cpe_common::durable::OsStorage, &self.state_dir).load() {
                Ok(loaded) => (loaded.state.map_or_else(ServiceRecord::normal, |s| s.service), None),
                Err(e) => (ServiceRecord::normal(), Some(e.to_string())),
            };
        NoticeView {
            service,
            state_problem,
            contact_ja: self.contact_ja.clone(),
            contact_en: self.contact_en.clone(),
            diagnosis: read_diagnosis(&self.state_dir),
            health: self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
        }
    }
}

/// Largest request head read; a longer one is answered 431.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// How long a client may take to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request head asks of the page (see [`parse_request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// `GET` (or `HEAD`: the same answer without the body).
    Page {
        /// `HEAD`.
        head_only: bool,
    },
    /// Any other method.
    WrongMethod,
    /// The head did not end within [`MAX_REQUEST_HEAD`] bytes.
    TooLarge,
    /// Not an HTTP request line.
    Malformed,
}

/// Reads the request line of a complete request head (pure). Every path
/// shows the page: staff type whatever the poster says.
pub fn parse_request(head: &[u8]) -> Ask {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line).unwrap_or_default().trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ask::Malformed;
    };
    if target.is_empty() || !version.starts_with("HTTP/1.") {
        return Ask::Malformed;
    }
    match method {
        "GET" => Ask::Page { head_only: false },
        "HEAD" => Ask::Page { head_only: true },
        _ => Ask::WrongMethod,
    }
}

/// The whole HTTP/1.1 response to `ask` (the connection is closed after it).
fn respond(ask: Ask, source: &NoticeSource) -> Vec<u8> {
    let (status, content_type, body) = match ask {
        Ask::Page { .. } => ("200 OK", "text/html; charset=utf-8", render(&source.view())),
        Ask::WrongMethod => ("405 Method Not Allowed", "text/plain; charset=utf-8", "GET only\n".to_owned()),
        Ask::TooLarge => (
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            "request too large\n".to_owned(),
        ),
        Ask::Malformed => ("400 Bad Request", "text/plain; charset=utf-8", "bad request\n".to_owned()),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if ask != (Ask::Page { head_only: true }) {
        response.extend_from_slice(body.as_bytes());
    }
    response
}

/// Reads one request head (bounded in size and time), answers it, closes.
async fn handle(mut stream: tokio::net::TcpStream, source: &NoticeSource) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 1024];
    let ask = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break parse_request(&head);
        }
        if head.len() >= MAX_REQUEST_HEAD {
            break Ask::TooLarge;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    };
    let _ = stream.write_all(&respond(ask, source)).await;
    let _ = stream.shutdown().await;
}

/// Serves the page on every address until the future is dropped. An
/// address that cannot be bound yet (the LAN bridge is not up) is logged
/// and retried every 5 seconds, so the agent never fails to start for it.
pub async fn serve(addresses: Vec<SocketAddr>, source: NoticeSource) {
    let source = Arc::new(source);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut serving = tokio::task::JoinSet::new();
    for address in addresses {
        let source = source.clone();
        let slots = slots.clone();
        serving.spawn(async move {
            let listener = loop {
                match TcpListener::bind(address).await {
                    Ok(listener) => break listener,
                    Err(e) => {
                        tracing::warn!(%address, error = %e, "notice page not served yet; retrying in 5 s (check [notice] listen)");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            };
            tracing::info!(%address, "notice page served");
            accept(&listener, &source, &slots).await;
        });
    }
    while serving.join_next().await.is_some() {}
}

async fn accept(listener: &TcpListener, source: &Arc<NoticeSource>, slots: &Arc<tokio::sync::Semaphore>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let source = source.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(REQUEST_TIMEOUT, handle(stream, &source)).await.is_err() {
                tracing::debug!(%peer, "notice request timed out");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::state::OrderState;
    use crate::orders::verify::TimeFloor;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn suspended() -> ServiceRecord {
        ServiceRecord {
            state: ServiceState::Suspended,
            order_id: Some(77),
            sequence: Some(3),
            reason_ja: "不正な接続 <script>alert(1)</script>".into(),
            reason_en: "Unauthorised device & \"proxy\"".into(),
            since: Some(1_800_000_000),
            deadline: None,
            drill: false,
        }
    }

    fn view(service: ServiceRecord) -> NoticeView {
        NoticeView {
            service,
            state_problem: None,
            contact_ja: "サポート 0120-000-000".into(),
            contact_en: "Support +81-120-000-000".into(),
            diagnosis: None,
            health: None,
        }
    }

    #[test]
    fn japanese_first_everything_escaped() {
        let html = render(&view(suspended()));
        let ja = html.find("ネットワークサービスを停止しています").unwrap();
        let en = html.find("suspended by order of the carrier").unwrap();
        assert!(ja < en);
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !html.contains("<script>"));
        assert!(html.contains("Unauthorised device &amp; &quot;proxy&quot;"));
        assert!(html.contains("2027-01-15 17:00 JST") && html.contains("2027-01-15 08:00 UTC"), "{html}");
        assert!(html.contains("サポート 0120-000-000") && html.contains("77 (#3)"));
        assert!(html.contains("まだありません") && html.contains("none yet"));
    }

    #[test]
    fn every_state_has_its_headline() {
        let mut rec = ServiceRecord { deadline: Some(1_800_000_000), ..suspended() };
        rec.state = ServiceState::Recommendation;
        let html = render(&view(rec.clone()));
        assert!(html.contains("是正勧告") && html.contains("Deadline: 2027-01-15 08:00 UTC"));
        rec.state = ServiceState::Drill;
        assert!(render(&view(rec)).contains("[DRILL]"));
        let html = render(&view(ServiceRecord::normal()));
        assert!(html.contains("class=\"state normal\"") && !html.contains("class=\"reason\""));
    }

    #[test]
    fn request_lines_are_read_strictly() {
        let page = Ask::Page { head_only: false };
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: cpe\r\n\r\n"), page);
        assert_eq!(parse_request(b"GET /anything?x=1 HTTP/1.0\n\n"), page);
        assert_eq!(parse_request(b"HEAD / HTTP/1.1\r\n\r\n"), Ask::Page { head_only: true });
        assert_eq!(parse_request(b"POST / HTTP/1.1\r\n\r\n"), Ask::WrongMethod);
        for bad in [&b""[..], b"GET\r\n\r\n", b"GET / SPDY/3\r\n\r\n", b"GET  / HTTP/1.1\r\n", b"\xff\xfe"] {
            assert_eq!(parse_request(bad), Ask::Malformed, "{bad:?}");
        }
        let source = NoticeSource {
            state_dir: PathBuf::from("/nonexistent"),
            contact_ja: String::new(),
            contact_en: String::new(),
            health: Arc::default(),
        };
        let head = String::from_utf8(respond(Ask::Page { head_only: true }, &source)).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
        let length: usize =
            head.split("Content-Length: ").nth(1).unwrap().split('\r').next().unwrap().parse().unwrap();
        assert!(length > 0, "HEAD announces the page's length without sending it");
        let too_large = String::from_utf8(respond(Ask::TooLarge, &source)).unwrap();
        assert!(too_large.starts_with("HTTP/1.1 431") && too_large.ends_with("request too large\n"));
    }

    #[test]
    fn diagnosis_file_is_read_tolerantly() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_diagnosis(dir.path()), None);
        std::fs::create_dir(dir.path().join("diagnosis")).unwrap();
        let file = dir.path().join("diagnosis/last.json");
        for garbage in [&b"\xff\x00"[..], b"[]", b"{\"verdict\": {\"segment\": 3}}", b"{\"verdict\":"] {
            std::fs::write(&file, garbage).unwrap();
            assert_eq!(read_diagnosis(dir.path()), None);
        }
        std::fs::write(&file, r#"{"started_at":"2026-11-25T10:00:00Z","verdict":{"segment":"uplink","summary":"回線断","hint":"x"}}"#).unwrap();
        let d = read_diagnosis(dir.path()).unwrap();
        assert_eq!((d.segment.as_str(), d.summary.as_str()), ("uplink", "回線断"));
        assert_eq!(d.started_at.as_deref(), Some("2026-11-25T10:00:00Z"));
    }

    async fn get(addr: SocketAddr, method: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("{method} / HTTP/1.1\r\nHost: cpe\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        text
    }

    #[test]
    fn serves_the_current_state_over_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let health: HealthSlot = Arc::default();
        let source = NoticeSource {
            state_dir: dir.path().to_owned(),
            contact_ja: "窓口".into(),
            contact_en: "desk".into(),
            health: health.clone(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // A port that was free a moment ago, taken before the server starts:
        // the server retries until it can bind it.
        let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = blocker.local_addr().unwrap();
        runtime.block_on(async {
            let server = tokio::spawn(serve(vec![addr], source));
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(blocker);
            let page = loop {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    break get(addr, "GET").await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert!(page.starts_with("HTTP/1.1 200"), "{page}");
            assert!(page.contains("text/html; charset=utf-8") && page.contains("state normal"));
            assert!(page.contains("集計中"));

            let mut state = OrderState::initial(&[], TimeFloor::from_build_time(0));
            state.service = suspended();
            StateStore::new(cpe_common::durable::OsStorage, dir.path()).save(&state).unwrap();
            *health.lock().unwrap() = Some(Health {
                cpu_pct: 12.4,
                mem_pct: 40.0,
                active_uplink: Some("wan0".into()),
                ..Health::default()
            });
            let page = get(addr, "GET").await;
            assert!(
                page.contains("state suspended")
                    && page.contains("CPU 12%")
                    && page.contains("使用回線 wan0")
            );
            assert!(get(addr, "POST").await.starts_with("HTTP/1.1 405"));

            std::fs::write(StateStore::new(cpe_common::durable::OsStorage, dir.path()).path(), b"x").unwrap();
            std::fs::remove_file(StateStore::new(cpe_common::durable::OsStorage, dir.path()).previous_path())
                .ok();
            let page = get(addr, "GET").await;
            assert!(page.starts_with("HTTP/1.1 200") && page.contains("状態を読み取れません"), "{page}");
            server.abort();
        });
    }
}
