//! The page's rendering rules and its server over loopback.

use std::time::{Duration, Instant};

use cpe_protocol::receipt::ServiceState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::page::{headline, Headline, Outage};
use super::selfcheck::Runner;
use super::*;
use crate::diagnose::{checks, CheckResult, CheckStatus, Evidence, ReportVerdict, Segment, VerdictSegment};
use crate::orders::state::OrderState;
use crate::orders::verify::TimeFloor;

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
        link: LinkState::default(),
        self_check: None,
        self_check_interval: selfcheck::MIN_INTERVAL,
        now: 1_800_000_000,
    }
}

/// A report as `cpe-agent diagnose` stores it (English), with the gateway
/// ping failed.
fn uplink_report(started_at: &str) -> DiagnosisReport {
    let checks = vec![
        CheckResult::new(
            checks::LAN_LINK,
            Segment::Lan,
            CheckStatus::Ok,
            Evidence::new("リンクしています", "up"),
            1,
        ),
        CheckResult::new(
            checks::UPLINK_GATEWAY_ICMP,
            Segment::Uplink,
            CheckStatus::Failed,
            Evidence::new("応答がありません", "no reply"),
            1,
        ),
    ];
    let (report, _) = DiagnosisReport::build(
        "diag-1",
        time::OffsetDateTime::parse(started_at, &time::format_description::well_known::Rfc3339).unwrap(),
        5,
        checks,
        None,
        crate::lang::Lang::En,
    )
    .unwrap();
    report
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
    assert!(html.contains("<html lang=\"ja\">") && html.contains("<section lang=\"en\">"));
    assert!(html.contains("<meta charset=\"utf-8\">") && html.contains("Noto Sans CJK JP"));
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing loaded from outside");
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
    let mut v = view(ServiceRecord::normal());
    v.health = Some(Health { cpu_pct: f32::NAN, mem_pct: 7.0, ..Health::default() });
    let html = render(&v);
    assert!(!html.contains("NaN") && html.contains("メモリ 7%"), "no sample, no figure: {html}");
    let mut unreadable = view(suspended());
    unreadable.state_problem = Some("damaged".into());
    assert_eq!(headline(&unreadable), Headline::Unknown);
}

#[test]
fn the_headline_tells_the_outage_the_daemon_and_the_diagnosis_know_of() {
    let report = uplink_report("2027-01-15T08:00:00Z"); // = 1_800_000_000
    let mut v = view(ServiceRecord::normal());
    v.now = 1_800_000_100;
    for (at, error) in
        [(1_799_999_000, "connection refused"), (1_799_999_010, "x"), (1_799_999_030, "timed out")]
    {
        v.link.failed(at, error);
    }
    assert_eq!(headline(&v), Headline::Outage(Outage::Channel { since: 1_799_999_000 }));
    let html = render(&v);
    assert!(html.contains("2027-01-15 16:43 JST から通信事業者に接続できません"), "{html}");
    assert!(
        html.contains("起動後まだ通信できていません（3 回失敗）") && html.contains("(latest: timed out)")
    );
    assert!(!html[..html.find("<section lang=\"en\">").unwrap()].contains("timed out"), "English only below");

    // The channel works again, but the line was diagnosed down after the last delivery.
    v.link.delivered(1_799_999_900);
    v.diagnosis = Some(ShownDiagnosis::from_report(&report, &v.service));
    assert_eq!(headline(&v), Headline::Outage(Outage::Diagnosed { segment: Segment::Uplink }));
    assert!(render(&v).contains("回線の障害により"));
    // A report delivered after the diagnosis disproves it.
    v.link.delivered(1_800_000_050);
    assert_eq!(headline(&v), Headline::Normal);
    // A drill, a recommendation and a suspension outrank it, in this order.
    v.link = LinkState::default();
    v.service.state = ServiceState::Drill;
    assert!(matches!(headline(&v), Headline::Outage(_)), "a real outage outranks a drill");
    v.service.state = ServiceState::Recommendation;
    assert_eq!(headline(&v), Headline::Recommendation);
    v.service.state = ServiceState::Suspended;
    assert_eq!(headline(&v), Headline::Suspended);

    // A fault in the clinic leads for an hour.
    let mut v = view(ServiceRecord::normal());
    v.link.delivered(1_800_000_500);
    v.diagnosis = Some(ShownDiagnosis {
        segment: VerdictSegment::Lan,
        ..ShownDiagnosis::from_report(&report, &v.service)
    });
    v.now = 1_800_000_000 + 3599;
    assert_eq!(headline(&v), Headline::Outage(Outage::Diagnosed { segment: Segment::Lan }));
    v.now += 1;
    assert_eq!(headline(&v), Headline::Normal);
}

#[test]
fn the_last_diagnosis_reads_in_japanese_with_its_hint() {
    let report = uplink_report("2027-01-15T08:00:00Z");
    assert!(report.verdict.summary.starts_with("Fault in the uplink"), "stored in English");
    let mut v = view(ServiceRecord::normal());
    v.diagnosis = Some(ShownDiagnosis::from_report(&report, &v.service));
    let html = render(&v);
    let (ja, en) = html.split_at(html.find("<section lang=\"en\">").unwrap());
    assert!(ja.contains("<dd class=\"verdict uplink\">回線</dd>"), "{ja}");
    assert!(ja.contains("回線に障害があります（uplink.gateway_icmp）"), "{ja}");
    assert!(ja.contains("<li>ゲートウェイへの ping（uplink.gateway_icmp）</li>"), "{ja}");
    let hint = crate::diagnose::hint_for(checks::UPLINK_GATEWAY_ICMP, Segment::Uplink);
    assert!(ja.contains(&format!("<dd class=\"hint\">{}</dd>", page::escape(&hint.ja))), "{ja}");
    assert!(ja.contains("2027-01-15 17:00 JST (diag-1)"));
    assert!(!ja.contains("Fault in the"), "no English on the Japanese half");
    assert!(en.contains("Fault in the uplink") && en.contains(&page::escape(&hint.en)));

    // A suspension verdict names the order and, while it is in force, its reasons.
    let mut service = suspended();
    service.reason_ja = "未是正".into();
    let checks = vec![CheckResult::new(
        checks::DEVICE_SUSPENSION,
        Segment::Device,
        CheckStatus::Warning,
        Evidence::new(
            "停止命令（番号 77）によりサービスが停止されています: x",
            "service suspended by order 77: x",
        )
        .with("order", "77"),
        1,
    )];
    let suspension =
        crate::diagnose::Suspension { order: 77, reason_ja: "未是正".into(), reason_en: "x".into() };
    let (stored, _) = DiagnosisReport::build(
        "diag-2",
        time::OffsetDateTime::UNIX_EPOCH,
        1,
        checks,
        Some(&suspension),
        crate::lang::Lang::En,
    )
    .unwrap();
    let shown = ShownDiagnosis::from_report(&stored, &service);
    assert_eq!(shown.segment, VerdictSegment::Suspended);
    assert!(
        shown.summary.ja.contains("停止命令（番号 77）") && shown.summary.ja.contains("未是正"),
        "{shown:?}"
    );
    let resumed = ShownDiagnosis::from_report(&stored, &ServiceRecord::normal());
    assert!(resumed.summary.ja.contains("番号 77") && resumed.summary.ja.contains("（記録なし）"));
    // A stored verdict the checks do not give keeps its segment.
    let mut odd = uplink_report("2027-01-15T08:00:00Z");
    odd.verdict = ReportVerdict {
        segment: VerdictSegment::Carrier,
        summary: "older agent".into(),
        hint: "call".into(),
    };
    let shown = ShownDiagnosis::from_report(&odd, &ServiceRecord::normal());
    assert_eq!((shown.segment, shown.summary.en.as_str()), (VerdictSegment::Carrier, "older agent"));
    assert_eq!(shown.hint.ja, crate::diagnose::verdict::segment_hint(Segment::Carrier).ja);
}

#[test]
fn the_self_check_shows_its_progress_and_result() {
    let mut v = view(ServiceRecord::normal());
    v.self_check = Some(Status::Idle);
    let html = render(&v);
    assert!(
        html.contains("<form method=\"post\" action=\"/self-check\">")
            && html.contains(">自己診断を実行</button>")
    );
    assert!(!html.contains("<script>") && !html.contains("refresh"), "no script unless running");
    assert!(html.contains("（1分に1回まで）") && html.contains("(once a minute at most)"));
    v.self_check_interval = Duration::from_secs(5);
    assert!(render(&v).contains("（5秒に1回まで）") && render(&v).contains("(once every 5 s at most)"));
    v.self_check = Some(Status::Running { checks_done: 4, elapsed: Duration::from_secs(2) });
    let html = render(&v);
    assert!(html.contains("確認済み <span class=\"done\">4</span> 項目") && html.contains(" disabled>"));
    assert!(html.contains("<script>") && html.contains("/self-check/status"));
    assert!(
        html.contains("<noscript><meta http-equiv=\"refresh\" content=\"3\"></noscript>"),
        "works without JS"
    );
    v.self_check =
        Some(Status::Done { id: "diag-9".into(), segment: "none".into(), took: Duration::from_secs(7) });
    assert!(render(&v).contains("自己診断が完了しました（所要 7 秒、diag-9）"));
    v.self_check = Some(Status::Failed { error: "no <privileges>".into() });
    let html = render(&v);
    assert!(
        html.contains("自己診断を実行できませんでした")
            && html.contains("could not run: no &lt;privileges&gt;")
    );
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
    let report = uplink_report("2026-11-25T10:00:00Z");
    std::fs::write(&file, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    assert_eq!(read_diagnosis(dir.path()), Some(report));
}

fn source(dir: &Path, self_check: Option<Arc<SelfCheck>>) -> NoticeSource {
    NoticeSource {
        state_dir: dir.to_owned(),
        contact_ja: "窓口".into(),
        contact_en: "desk".into(),
        health: HealthSlot::default(),
        link: LinkSlot::default(),
        self_check,
    }
}

#[test]
fn head_answers_announce_the_length_without_the_body() {
    let source = source(Path::new("/nonexistent"), None);
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let head = String::from_utf8(respond(Ask::Page { head_only: true }, peer, &source)).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    assert!(head.contains("frame-ancestors 'none'"));
    let length: usize =
        head.split("Content-Length: ").nth(1).unwrap().split('\r').next().unwrap().parse().unwrap();
    assert!(length > 0);
    let too_large = String::from_utf8(respond(Ask::TooLarge, peer, &source)).unwrap();
    assert!(too_large.starts_with("HTTP/1.1 431") && too_large.ends_with("request too large\n"));
    let absent = String::from_utf8(respond(Ask::Status, peer, &source)).unwrap();
    assert!(absent.ends_with("{\"state\":\"absent\"}"), "{absent}");
}

async fn request(addr: SocketAddr, text: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

async fn get(addr: SocketAddr, method: &str) -> String {
    request(addr, &format!("{method} / HTTP/1.1\r\nHost: cpe\r\nConnection: close\r\n\r\n")).await
}

fn post(addr: SocketAddr, origin: &str) -> String {
    format!(
        "POST /self-check HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\nrun=1"
    )
}

#[test]
fn serves_the_current_state_over_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let source = source(dir.path(), None);
    let health = source.health.clone();
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
            page.contains("state suspended") && page.contains("CPU 12%") && page.contains("使用回線 wan0")
        );
        assert!(get(addr, "PUT").await.starts_with("HTTP/1.1 405"));
        assert!(
            request(addr, &post(addr, &format!("http://{addr}"))).await.starts_with("HTTP/1.1 404"),
            "no button"
        );

        std::fs::write(StateStore::new(cpe_common::durable::OsStorage, dir.path()).path(), b"x").unwrap();
        std::fs::remove_file(StateStore::new(cpe_common::durable::OsStorage, dir.path()).previous_path())
            .ok();
        let page = get(addr, "GET").await;
        assert!(page.starts_with("HTTP/1.1 200") && page.contains("状態を読み取れません"), "{page}");
        server.abort();
    });
}

/// The button over loopback, with `lo` as the LAN (a fixture route for
/// 127.0.0.0/8) and a runner that waits for the test's signal.
#[test]
fn the_button_runs_once_a_minute_for_same_origin_lan_clients() {
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    std::fs::create_dir_all(proc_root.join("net")).unwrap();
    std::fs::write(
        proc_root.join("net/route"),
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
         lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n",
    )
    .unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (release_in, runs_in) = (release.clone(), runs.clone());
    let runner: Runner = Arc::new(move |progress| {
        let (release, runs) = (release_in.clone(), runs_in.clone());
        Box::pin(async move {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let check = CheckResult::new(
                checks::LAN_LINK,
                Segment::Lan,
                CheckStatus::Ok,
                Evidence::new("リンクしています", "up"),
                1,
            );
            progress(&check);
            release.notified().await;
            Ok(uplink_report("2027-01-15T08:00:00Z"))
        })
    });
    let lan_button =
        Arc::new(SelfCheck::new(runner.clone(), selfcheck::MIN_INTERVAL, vec!["lo".into()], &proc_root));
    let wan_button =
        Arc::new(SelfCheck::new(runner, selfcheck::MIN_INTERVAL, vec!["br-lan".into()], &proc_root));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let wan_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    runtime.block_on(async {
        let server = tokio::spawn(serve(vec![addr], source(dir.path(), Some(lan_button.clone()))));
        let other = tokio::spawn(serve(vec![wan_addr], source(dir.path(), Some(wan_button))));
        while tokio::net::TcpStream::connect(addr).await.is_err()
            || tokio::net::TcpStream::connect(wan_addr).await.is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let origin = format!("http://{addr}");
        // No state change from a GET, nor from another origin or outside the LAN.
        assert!(request(addr, &format!("GET /self-check HTTP/1.1\r\nHost: {addr}\r\n\r\n"))
            .await
            .contains("state normal"));
        let cross = request(addr, &post(addr, "http://evil.example")).await;
        assert!(cross.starts_with("HTTP/1.1 403") && cross.contains("このページ以外からの"), "{cross}");
        let outside = request(wan_addr, &post(wan_addr, &format!("http://{wan_addr}"))).await;
        assert!(
            outside.starts_with("HTTP/1.1 403") && outside.contains("院内LANの端末からのみ"),
            "{outside}"
        );
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);

        let started = Instant::now();
        let accepted = request(addr, &post(addr, &origin)).await;
        assert!(
            accepted.starts_with("HTTP/1.1 303 See Other") && accepted.contains("Location: /\r\n"),
            "{accepted}"
        );
        let status = request(addr, &format!("GET /self-check/status HTTP/1.1\r\nHost: {addr}\r\n\r\n")).await;
        assert!(status.contains("\"state\":\"running\"") && status.contains("\"checks_done\":1"), "{status}");
        let page = get(addr, "GET").await;
        assert!(page.contains("自己診断を実行中です") && page.contains(" disabled>"));
        // A second press while it runs shows the run; nothing new starts.
        assert!(request(addr, &post(addr, &origin)).await.starts_with("HTTP/1.1 303"));
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);

        release.notify_one();
        let done = loop {
            let status =
                request(addr, &format!("GET /self-check/status HTTP/1.1\r\nHost: {addr}\r\n\r\n")).await;
            if !status.contains("running") {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(done.contains("\"state\":\"done\"") && done.contains("\"segment\":\"uplink\""), "{done}");
        let too_soon = request(addr, &post(addr, &origin)).await;
        assert!(too_soon.starts_with("HTTP/1.1 429") && too_soon.contains("Retry-After: "), "{too_soon}");
        assert!(too_soon.contains("1分に1回まで"));
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        server.abort();
        other.abort();
    });
}

/// A connection from `from` (a loopback address) to `to`.
async fn connect_from(from: std::net::Ipv4Addr, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut byte = [0_u8; 1];
    matches!(tokio::time::timeout(within, stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

#[test]
fn slow_and_flooding_clients_are_cut_off_and_do_not_deny_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let attacker = std::net::Ipv4Addr::new(127, 0, 0, 66);
    runtime.block_on(async {
        let _server = tokio::spawn(serve(vec![addr], source(dir.path(), None)));
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The attacker's first connections take its share of slots and
        // dribble a head; every one beyond that is closed at once.
        let mut held = Vec::new();
        for _ in 0..admission::PER_CLIENT {
            let mut stream = connect_from(attacker, addr).await;
            stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            held.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        for _ in 0..50 {
            let mut extra = connect_from(attacker, addr).await;
            assert!(closed_within(&mut extra, Duration::from_millis(500)).await, "over the per-client limit");
        }
        let started = Instant::now();
        let page = get(addr, "GET").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        // The head deadline cuts the slow ones off, and their slots return.
        let cut = Instant::now();
        for stream in &mut held {
            assert!(
                closed_within(stream, REQUEST_DEADLINE + Duration::from_secs(1)).await,
                "slow head cut off"
            );
        }
        assert!(cut.elapsed() <= REQUEST_DEADLINE + Duration::from_millis(500), "{:?}", cut.elapsed());
        let mut again = connect_from(attacker, addr).await;
        again.write_all(b"GET / HTTP/1.1\r\nHost: cpe\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        again.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "the attacker's slots came back: {answer}");
    });
}
