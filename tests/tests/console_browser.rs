//! The carrier's web console (issue 10) in a real browser: a real
//! `cpe-provision serve --operator-listen` on loopback over a seeded store
//! (10,000 devices, 24 h of heartbeats of one of them on two lines with a
//! two-hour silence, its last
//! diagnosis, an open alert, a §2.2 case with a recommendation), operators
//! of the three roles, and Debian's Chromium, headless, driven by
//! `tests/browser/console.mjs`. The script signs in, finds the device by its
//! institution code, counts the points of its graphs, acknowledges the
//! alert, switches to English and back, has a viewer refused a stop and
//! compliance record a check; this test compares what the page showed with
//! what was seeded and with what the API says. Screenshots:
//! `target/console-screenshots/`. Skipped (said so) without chromium, node,
//! playwright-core or the Japanese fonts, except under CI=true, where that
//! fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::time::Duration;

use cpe_e2e::{carrier_pki, provision, serve_args, Proc};
use cpe_protocol::{Health, Incident, InterfaceStats, Payload, Record};
use cpe_provision::compliance::cases::{self, Hearing};
use cpe_provision::compliance::order_keys::KeyStore;
use cpe_provision::compliance::orders::{Actor, ReasonText, Signing};
use cpe_provision::server::ingest_record;
use cpe_provision::store::{Database, DeviceSeen, NewAlert};
use serde_json::{json, Value};

const CODE: &str = "1312345678";
const DEVICE: &str = "1312345678/cpe-01";
const PASSWORD: &str = "long enough password";
const MINUTE_MS: i64 = 60_000;
/// Five-minute steps in the last 24 h: the device sends a heartbeat at each,
/// except during [`SILENCE`].
const STEPS_IN_DAY: i64 = 288;
/// Of them, the newest that also carry the backup line `lte0`.
const LTE_BEATS: i64 = 144;
/// A two-hour silence in the older half of the day: heartbeats `k` (5-minute
/// steps back from now) in this range were never sent.
const SILENCE: std::ops::Range<i64> = 200..224;
/// Devices that only reported once (up), and those silent for two hours (down).
/// With the device, a fleet of 10,000: the console must stay fast at that size.
const OTHERS_UP: u32 = 9_979;
const OTHERS_DOWN: u32 = 20;

fn health(cpu: f32, mem: f32, lte: bool) -> Health {
    let line = |name: &str, rx: f64| InterfaceStats {
        name: name.into(),
        up: true,
        carrier: true,
        rx_bps: rx,
        tx_bps: rx / 4.0,
        ..InterfaceStats::default()
    };
    let mut interfaces = vec![line("wan0", 2_000_000.0 + f64::from(cpu) * 10_000.0)];
    if lte {
        interfaces.push(line("lte0", 150_000.0));
    }
    Health {
        uptime_s: 3600,
        cpu_pct: cpu,
        mem_pct: mem,
        interfaces,
        active_uplink: Some("wan0".into()),
        agent_version: "0.1.0".into(),
        ..Health::default()
    }
}

fn diagnosis_json(now_ms: i64) -> String {
    json!({
        "id": format!("diag-{now_ms:013}-0000beef"),
        "started_at": "2026-01-01T00:00:00Z",
        "duration_ms": 2300,
        "verdict": {"segment": "lan", "summary": "The LAN is at fault: no ARP reply from the gateway",
                    "hint": "Check the LAN cable of the reception PC and the switch."},
        "checks": [
            {"name": "terminal.icmp@reception-pc", "segment": "terminal", "status": "skipped",
             "evidence": {"text": {"ja": "LAN の異常のため未実施", "en": "not run: the LAN failed"}, "values": {}},
             "duration_ms": 0},
            {"name": "lan.link@lan1", "segment": "lan", "status": "failed",
             "evidence": {"text": {"ja": "192.0.2.1 から ARP の応答がありません（3 回）",
                                   "en": "no ARP reply from 192.0.2.1 after 3 tries"},
                          "values": {"tries": "3"}},
             "duration_ms": 1500},
            {"name": "device.cpu", "segment": "device", "status": "ok",
             "evidence": {"text": {"ja": "CPU 使用率 12%", "en": "CPU at 12%"}, "values": {}},
             "duration_ms": 5},
        ]
    })
    .to_string()
}

/// Heartbeats of the device in the last 24 h.
const BEATS_IN_DAY: i64 = STEPS_IN_DAY - (SILENCE.end - SILENCE.start);

/// The store the console shows, written through the library as the server
/// would have written it.
async fn seed(database: &str, keys: &Path, now_ms: i64) -> (i64, u64) {
    let db = Database::open(database).await.unwrap();
    let cert = Some(now_ms / 1000 + 86_400 * 300);
    let seen =
        |id: &str| DeviceSeen { id: id.into(), institution_code: id[..10].into(), cert_not_after: cert };
    // The device: one heartbeat 25 h ago (outside the graph), then one every
    // 5 minutes over the last 24 h, then its diagnosis.
    let mut records = vec![Record {
        seq: 1,
        at_unix_ms: now_ms - 25 * 60 * MINUTE_MS,
        payload: Payload::Heartbeat(health(99.0, 99.0, true)),
    }];
    for k in (0..STEPS_IN_DAY).rev().filter(|k| !SILENCE.contains(k)) {
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let cpu = 20.0 + (k % 12) as f32 * 5.0;
        records.push(Record {
            seq: records.len() as u64 + 1,
            at_unix_ms: now_ms - k * 5 * MINUTE_MS - 1000,
            payload: Payload::Heartbeat(health(cpu, 40.0, k < LTE_BEATS)),
        });
    }
    records.push(Record {
        seq: records.len() as u64 + 1,
        at_unix_ms: now_ms - 500,
        payload: Payload::Incident(Incident {
            id: format!("diag-{now_ms:013}-0000beef"),
            command_id: None,
            segment: "lan".into(),
            summary: "The LAN is at fault".into(),
            report_json: diagnosis_json(now_ms),
        }),
    });
    db.ingest(&seen(DEVICE), records.iter().map(ingest_record).collect(), now_ms).await.unwrap();
    // The rest of the fleet (other institution codes), some silent.
    let mut fleet = tokio::task::JoinSet::new();
    for i in 0..OTHERS_UP + OTHERS_DOWN {
        let (db, id) = (db.clone(), format!("{}/cpe-01", 2_000_000_000 + i));
        let device = seen(&id);
        let at = if i < OTHERS_UP { now_ms - 1000 } else { now_ms - 120 * MINUTE_MS };
        let beat = Record { seq: 1, at_unix_ms: at, payload: Payload::Heartbeat(health(10.0, 20.0, false)) };
        // At once: the store's writer commits them in groups, as it does a fleet's reports.
        fleet.spawn(async move { db.ingest(&device, vec![ingest_record(&beat)], at).await.map(drop) });
    }
    while let Some(stored) = fleet.join_next().await {
        stored.unwrap().unwrap();
    }
    let silent = db.mark_silent(now_ms - 60 * MINUTE_MS, now_ms).await.unwrap();
    assert_eq!(silent.len(), OTHERS_DOWN as usize, "{silent:?}");
    let alert = db
        .raise_alert(NewAlert {
            device_id: DEVICE.into(),
            kind: "threshold".into(),
            level: "caution".into(),
            message: "cpu normal → caution (91.2)".into(),
            at_ms: now_ms - 10 * MINUTE_MS,
        })
        .await
        .unwrap();
    // A case up to ④, the recommendation due in three days.
    let keystore = KeyStore::new(keys);
    keystore.init().unwrap();
    let actor = Actor { operator: "kato".into(), now: time::OffsetDateTime::now_utc() };
    let case = cases::open(&db, DEVICE, "不審な通信を検知 / suspicious traffic seen", &actor).await.unwrap();
    cases::hear(&db, case, Hearing::Held("院長より聴取 / heard the director".into()), &actor).await.unwrap();
    cases::report(&db, case, "platform-ops", "報告済み / reported", &actor).await.unwrap();
    let text = ReasonText {
        both: None,
        ja: Some("端末の更新をお願いします".into()),
        en: Some("Please update the terminal".into()),
    };
    let signing = Signing { keys: keystore, valid_days: 7 };
    cases::recommend(&db, case, actor.now + time::Duration::days(3), &text, &signing, &actor).await.unwrap();
    (alert, case)
}

fn field<'a>(seen: &'a Value, name: &str) -> &'a str {
    seen[name].as_str().unwrap_or_else(|| panic!("{name} missing in {seen}"))
}

/// The API as a bearer client sees it.
struct Api {
    base: String,
    client: reqwest::Client,
    token: String,
}

impl Api {
    async fn sign_in(base: &str, ca_pem: &[u8], name: &str) -> Self {
        let root = reqwest::Certificate::from_pem(ca_pem).unwrap();
        let client = reqwest::Client::builder().use_rustls_tls().add_root_certificate(root).build().unwrap();
        let login = client
            .post(format!("{base}/api/v1/session"))
            .body(json!({"name": name, "password": PASSWORD}).to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let login: Value = serde_json::from_str(&login).unwrap();
        Self { base: base.to_owned(), client, token: field(&login, "token").to_owned() }
    }

    async fn get(&self, path: &str) -> Value {
        let resp =
            self.client.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        serde_json::from_str(&resp.text().await.unwrap()).unwrap()
    }
}

#[test]
fn web_console_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("browser/console.mjs");
    if let Some(reason) = cpe_e2e::browser_unavailable(&script) {
        cpe_e2e::skip_or_fail("console_browser", &reason);
        return;
    }
    let shots = root.parent().unwrap().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    carrier_pki(d, &["127.0.0.1"]).unwrap();
    let database = format!("sqlite:{}", d.join("carrier.db").display());
    let keys = d.join("order-keys");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let now_ms = cpe_provision::clock::now_ms();
    let (alert, case) = runtime.block_on(seed(&database, &keys, now_ms));
    let password_file = d.join("operator-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    for (name, role) in [("yamada", "viewer"), ("sato", "operator"), ("kato", "compliance")] {
        let pw = password_file.to_string_lossy();
        provision(&[
            "operator",
            "add",
            name,
            "--role",
            role,
            "--password-file",
            &pw,
            "--database",
            &database,
        ])
        .unwrap();
    }
    let keys_arg = keys.to_string_lossy().into_owned();
    let args = serve_args(
        d,
        "127.0.0.1:0",
        &database,
        &["--operator-listen", "127.0.0.1:0", "--order-keys", &keys_arg, "--silent-after", "86400"],
    );
    let log = d.join("server.log");
    let mut server = Proc::spawn("cpe-provision", &args, &log).unwrap();
    let Some(addr) = server.read_line_starting("operator API listening on ") else {
        panic!("the operator listener did not start\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    };
    let base = format!("https://{addr}");

    let step = json!({
        "url": format!("{base}/"), "shots": shots, "password": PASSWORD,
        "operator": "sato", "viewer": "yamada", "compliance": "kato",
        "code": CODE, "device": DEVICE, "alert": alert, "case": case,
    });
    let out = std::process::Command::new("node").arg(&script).arg(step.to_string()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium run failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let seen: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    println!("chromium saw: {seen}");

    let ca_pem = std::fs::read(d.join("ca/ca.pem")).unwrap();
    runtime.block_on(async {
        let api = Api::sign_in(&base, &ca_pem, "yamada").await;
        fleet_and_device_as_seeded(&seen, &api, alert, case).await;
        languages_case_and_roles(&seen, &api, case).await;
    });
    println!(
        "console screenshots in {}; with {} devices, in Chromium on this machine (debug build): fleet page \
         (counts + first page) {} ms, next page {} ms, search by code {} ms (250 ms of it the typing \
         pause), device page with its 24 h graphs {} ms",
        shots.display(),
        1 + OTHERS_UP + OTHERS_DOWN,
        seen["fleet_load_ms"],
        seen["next_page_ms"],
        seen["search_ms"],
        seen["device_load_ms"]
    );
    assert_eq!(
        server.terminate(Duration::from_secs(10)),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// The sign-in page, the fleet, the device page and the acknowledgement as
/// the browser saw them, against what was seeded and what the API says.
async fn fleet_and_device_as_seeded(seen: &Value, api: &Api, alert: i64, case: u64) {
    // Nothing broke in the page: no script error, no CSP violation.
    assert_eq!(seen["errors"], json!([]), "{seen}");
    assert_eq!(seen["status"], 200);
    assert_eq!(seen["frame_options"], "DENY");
    assert!(field(seen, "csp").contains("script-src 'self'"), "{seen}");
    assert_eq!(seen["cookie_visible_to_scripts"], false, "the session cookie is HttpOnly");
    assert_eq!(seen["cookie_http_only"], true);
    // Japanese first; a wrong password is said in words.
    assert_eq!(seen["html_lang"], "ja");
    assert_eq!(seen["login_title"], "サインイン");
    assert_eq!(seen["japanese_font"], true, "Noto Sans CJK JP is used: no tofu");
    assert!(field(seen, "bad_login").contains("パスワードが違います"), "{seen}");

    // Fleet counts: as seeded, and as the API counts them.
    let total = |filter: &'static str| {
        let api = &api;
        async move { api.get(&format!("/api/v1/devices?limit=1&filter={filter}")).await["total"].clone() }
    };
    let all = u64::from(1 + OTHERS_UP + OTHERS_DOWN);
    assert_eq!(seen["counts"]["all"], all, "{seen}");
    assert_eq!(seen["counts"]["up"], u64::from(1 + OTHERS_UP));
    assert_eq!(seen["counts"]["down"], u64::from(OTHERS_DOWN));
    assert_eq!(seen["counts"]["alerting"], 1);
    assert_eq!(seen["counts"]["suspended"], 0);
    for filter in ["up", "down", "alerting", "suspended"] {
        assert_eq!(seen["counts"][filter], total(filter).await, "{filter}");
    }
    // One page of 50 at a time, paged on the server.
    assert_eq!(seen["first_page_rows"], 50, "{seen}");
    let grouped = format!("{},{:03}", all / 1000, all % 1000);
    assert!(field(seen, "first_page_status").contains(&grouped), "{seen}");
    assert!(field(seen, "second_page_status").contains("51"), "{seen}");
    // Filtered by state on the server: the silent ones, all shown as down.
    let down = seen["down_rows"].as_array().unwrap();
    assert_eq!(down.len(), OTHERS_DOWN as usize, "{seen}");
    assert!(down.iter().all(|state| state == "応答なし"), "{seen}");
    assert!(field(seen, "down_status").starts_with(&format!("{OTHERS_DOWN} 台中")), "{seen}");
    // Found by its institution code.
    assert_eq!(seen["search_rows"], json!([DEVICE]), "{seen}");

    // The graph: one vertex per heartbeat of the last 24 h, as the API's series says.
    let series = api.get("/api/v1/devices/1312345678%2Fcpe-01/series?hours=24").await;
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), usize::try_from(BEATS_IN_DAY).unwrap(), "the API's series: {series}");
    assert_eq!(seen["cpu_vertices"], BEATS_IN_DAY, "{seen}");
    assert_eq!(seen["mem_vertices"], BEATS_IN_DAY, "{seen}");
    assert_eq!(seen["cpu_runs"], 2, "the two-hour silence breaks the line: {seen}");
    let lines: Vec<&str> = seen["line_charts"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(lines.len(), 2, "{seen}");
    assert!(lines[0].contains("lte0") && lines[1].contains("wan0"), "{lines:?}");
    assert_eq!(seen["line_rx_vertices"], json!([LTE_BEATS, BEATS_IN_DAY]), "{seen}");
    // The diagnosis check by check, evidence in the page's language.
    let checks = seen["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 3, "{seen}");
    assert_eq!(
        (checks[1]["name"].as_str(), checks[1]["status"].as_str()),
        (Some("lan.link@lan1"), Some("異常"))
    );
    assert!(checks[1]["evidence"].as_str().unwrap().contains("ARP の応答がありません"), "{seen}");
    assert!(field(seen, "verdict_ja").contains("院内 LAN"), "{seen}");
    assert!(field(seen, "verdict_ja").contains("Check the LAN cable"), "the agent's hint: {seen}");
    assert!(seen["checks_en"][1].as_str().unwrap().contains("no ARP reply"), "{seen}");
    assert!(field(seen, "verdict_en").contains("Verdict: LAN"), "{seen}");
    // The notice order of the recommendation, and the case it belongs to.
    assert!(field(seen, "orders_ja").contains("是正勧告の通知"), "{seen}");
    assert!(field(seen, "case_link").contains(&case.to_string()), "{seen}");

    // Acknowledged in the page, and so in the store.
    assert!(field(seen, "acknowledged").contains("sato"), "{seen}");
    assert!(field(seen, "alerts_page_ack").contains("sato"), "{seen}");
    let alerts = api.get("/api/v1/alerts?all=true").await;
    let stored = alerts.as_array().unwrap().iter().find(|a| a["id"] == alert).unwrap();
    assert_eq!(stored["acknowledged_by"], "sato", "{stored}");
}

/// English and back, the case page for an operator and for compliance, and
/// the viewer's refused stop.
async fn languages_case_and_roles(seen: &Value, api: &Api, case: u64) {
    // English, remembered across a reload; Japanese again after the switch back.
    assert_eq!(seen["html_lang_en"], "en");
    assert_eq!(seen["japanese_left_in_english"], json!([]), "{seen}");
    assert_eq!(seen["lang_after_reload"], "en");
    assert_eq!(seen["title_after_reload"], format!("Device {DEVICE} up"));
    assert!(
        seen["japanese_headings"].as_u64().unwrap() * 2 > seen["chrome_strings"].as_u64().unwrap(),
        "{seen}"
    );
    assert_eq!(seen["untranslated"], json!([]), "{seen}");

    // The case as an operator: the trail, a running countdown, no forms.
    assert_eq!(seen["trail"], json!(["fact", "hearing", "report", "recommend"]), "{seen}");
    assert_eq!(seen["flow_done"], json!(["fact", "hearing", "report", "recommend"]), "{seen}");
    let (c1, c2) = (field(seen, "countdown_1"), field(seen, "countdown_2"));
    assert!(c1.contains("是正期限まで") && c1.contains("2日"), "{c1}");
    assert_ne!(c1, c2, "the countdown runs");
    assert_eq!(seen["operator_step_forms"], 0, "{seen}");
    assert!(field(seen, "operator_steps_note").contains("compliance"), "{seen}");

    // A viewer is refused the stop, in words; nothing was signed.
    assert_eq!(seen["viewer_stop_status"], "403", "{seen}");
    let refusal = field(seen, "viewer_stop_message");
    assert!(
        refusal.contains("権限がない") && refusal.contains("compliance") && refusal.contains("viewer"),
        "{refusal}"
    );
    let orders = api.get("/api/v1/orders?device=1312345678%2Fcpe-01").await;
    let kinds: Vec<&str> = orders.as_array().unwrap().iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(kinds, ["notice"], "only the recommendation's notice: {orders}");

    // Compliance: the forms; the flow refuses an early "not corrected"; "corrected" is recorded.
    assert!(seen["compliance_step_forms"].as_array().unwrap().len() >= 5, "{seen}");
    assert!(field(seen, "early_check_refusal").contains("手続きの順序に合わない"), "{seen}");
    assert_eq!(
        seen["trail_after_check"],
        json!(["fact", "hearing", "report", "recommend", "check"]),
        "{seen}"
    );
    assert!(field(seen, "countdown_after_check").contains("確認済み"), "{seen}");
    let trail = api.get(&format!("/api/v1/cases/{case}")).await;
    let last = trail["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["step"].as_str(), last["operator"].as_str(), last["corrected"].as_bool()),
        (Some("check"), Some("kato"), Some(true))
    );
}
