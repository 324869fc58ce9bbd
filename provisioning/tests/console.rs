//! The operator API end to end: `console::run` on 127.0.0.1:0 over TLS, a
//! real HTTPS client, operators of each role, and the OpenAPI document
//! checked against the route table both ways.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;

use cpe_provision::compliance::order_keys::KeyStore;
use cpe_provision::console::{self, routes, ConsoleConfig};
use cpe_provision::operators;
use cpe_provision::pki::validity::Validity;
use cpe_provision::store::{Database, DeviceSeen, IngestRecord, NewAlert, ReportKind, Role};
use cpe_provision::CertificationBody;
use reqwest::{Client, Method, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

const PASSWORD: &str = "long enough password";
const DEVICE: &str = "1312345678/cpe-01";
const DEVICE_IN_PATH: &str = "1312345678%2Fcpe-01";

struct Api {
    base: String,
    client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), console::ConsoleError>>,
    db: Database,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let ca = CertificationBody::generate(
            "Test CA",
            Validity::new(now - time::Duration::days(1), 365).unwrap(),
        )
        .unwrap();
        let server = ca.issue_server(&["127.0.0.1".to_owned()], &Validity::new(now, 30).unwrap()).unwrap();
        let keys = dir.path().join("keys");
        KeyStore::new(&keys).init().unwrap();
        let db =
            Database::open(&format!("sqlite:{}", dir.path().join("carrier.db").display())).await.unwrap();
        let now_ms = cpe_provision::clock::now_ms();
        for (i, id) in [DEVICE, "1312345678/cpe-02", "1398765432/cpe-01"].into_iter().enumerate() {
            let seen = DeviceSeen {
                id: id.into(),
                institution_code: id[..10].into(),
                cert_not_after: Some(now_ms / 1000 + 86_400 * 300),
            };
            let heartbeat = IngestRecord {
                seq: 1,
                at_unix_ms: now_ms,
                kind: ReportKind::Heartbeat,
                body: vec![1],
                summary_json: "{}".into(),
                health_json: Some(format!(r#"{{"cpu_pct":{i}}}"#)),
                incident: None,
            };
            db.ingest(&seen, vec![heartbeat], now_ms).await.unwrap();
        }
        db.raise_alert(NewAlert {
            device_id: DEVICE.into(),
            kind: "threshold".into(),
            level: "warning".into(),
            message: "cpu".into(),
            at_ms: now_ms,
        })
        .await
        .unwrap();
        for (name, role) in [("yamada", Role::Viewer), ("sato", Role::Operator), ("kato", Role::Compliance)] {
            operators::add(&db, name, role, PASSWORD, now_ms).await.unwrap();
        }
        let config = ConsoleConfig {
            tls_chain: CertificateDer::pem_slice_iter(server.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap(),
            tls_key: PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap(),
            order_keys: Some(keys),
            order_valid_days: 7,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(console::run(listener, config, db.clone(), async {
            let _ = stopped.await;
        }));
        let root = reqwest::Certificate::from_pem(ca.ca_cert_pem().as_bytes()).unwrap();
        let client = Client::builder().use_rustls_tls().add_root_certificate(root).build().unwrap();
        Self { base, client, stop: Some(stop), task, db, _dir: dir }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn login(&self, name: &str) -> String {
        let (status, body) = self
            .call(Method::POST, "/api/v1/session", None, Some(json!({"name": name, "password": PASSWORD})))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_sessions_and_errors_through_the_api() {
    let api = Api::start().await;
    // Sign-in: wrong password, then the token and an HttpOnly, Secure, strict cookie.
    let (status, body) = api
        .call(Method::POST, "/api/v1/session", None, Some(json!({"name": "kato", "password": "wrong"})))
        .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthenticated")));
    let resp = api
        .client
        .post(format!("{}/api/v1/session", api.base))
        .body(json!({"name": "sato", "password": PASSWORD}).to_string())
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["cpe_session=", "HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let sato: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let sato = sato["token"].as_str().unwrap().to_owned();
    let viewer = api.login("yamada").await;

    // Reading needs a session; bad input is 400, unknown objects 404.
    let (status, _) = api.call(Method::GET, "/api/v1/devices", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, page) = api
        .call(Method::GET, "/api/v1/devices?search=1312345678&sort=id&desc=true", Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 2);
    assert_eq!(page["rows"][0]["id"], "1312345678/cpe-02");
    for bad in ["limit=0", "limit=x", "filter=sideways", "sort=colour", "desc=maybe"] {
        let (status, body) =
            api.call(Method::GET, &format!("/api/v1/devices?{bad}"), Some(&viewer), None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request")),
            "{bad}: {body}"
        );
    }
    let (status, detail) =
        api.call(Method::GET, &format!("/api/v1/devices/{DEVICE_IN_PATH}"), Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["recent_reports"][0]["kind"], "heartbeat");
    let (status, body) =
        api.call(Method::GET, "/api/v1/devices/1312345678%2Fnone", Some(&viewer), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

    // Acknowledging needs role operator and records the operator's name.
    let (_, alerts) = api.call(Method::GET, "/api/v1/alerts", Some(&viewer), None).await;
    let alert = alerts[0]["id"].as_i64().unwrap();
    let ack = format!("/api/v1/alerts/{alert}/acknowledge");
    let (status, body) = api.call(Method::POST, &ack, Some(&viewer), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    assert_eq!((body["role"].as_str(), body["required_role"].as_str()), (Some("viewer"), Some("operator")));
    let (status, body) = api.call(Method::POST, &ack, Some(&sato), None).await;
    assert_eq!((status, body["acknowledged_by"].as_str()), (StatusCode::OK, Some("sato")), "{body}");
    let (status, _) = api.call(Method::POST, "/api/v1/alerts/999999/acknowledge", Some(&sato), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.call(Method::POST, "/api/v1/alerts/abc/acknowledge", Some(&sato), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The browser's cookie works only from the console's own origin.
    let with_cookie = |origin: Option<String>| {
        let mut req =
            api.client.post(format!("{}{ack}", api.base)).header("cookie", format!("cpe_session={sato}"));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req
    };
    let resp = with_cookie(None).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = with_cookie(Some("https://evil.example".into())).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = with_cookie(Some(api.base.clone())).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // A remote diagnosis is queued by an operator.
    let commands = format!("/api/v1/devices/{DEVICE_IN_PATH}/commands");
    let (status, body) =
        api.call(Method::POST, &commands, Some(&sato), Some(json!({"kind": "diagnose"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["command_id"].is_u64());
    let (status, _) = api.call(Method::POST, &commands, Some(&sato), Some(json!({"kind": "reboot"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) =
        api.call(Method::POST, &commands, Some(&sato), Some(json!({"kind": "diagnose", "x": 1}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unknown fields are refused");
    let (_, detail) =
        api.call(Method::GET, &format!("/api/v1/devices/{DEVICE_IN_PATH}"), Some(&sato), None).await;
    assert_eq!(detail["recent_commands"][0]["requested_by"], "sato", "{detail}");

    api.stop().await;
}

/// What the web console's pages ask beyond the CLI's views, and the pages
/// themselves with the security headers (on the API's answers too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_and_what_they_ask() {
    let api = Api::start().await;
    let (viewer, sato) = (api.login("yamada").await, api.login("sato").await);
    // The console asks who is signed in and what the role allows.
    let (status, me) = api.call(Method::GET, "/api/v1/session", Some(&viewer), None).await;
    assert_eq!(
        (status, me["operator"].as_str(), me["role"].as_str()),
        (StatusCode::OK, Some("yamada"), Some("viewer"))
    );
    assert_eq!(
        (me["may"]["acknowledge_alert"].as_bool(), me["may"]["sign_order"].as_bool()),
        (Some(false), Some(false))
    );
    let (_, me) = api.call(Method::GET, "/api/v1/session", Some(&sato), None).await;
    assert_eq!(
        (me["may"]["acknowledge_alert"].as_bool(), me["may"]["case_step"].as_bool()),
        (Some(true), Some(false))
    );
    let (status, body) =
        api.call(Method::GET, &format!("/api/v1/devices/{DEVICE_IN_PATH}/case"), Some(&viewer), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "no case yet");

    // The web console's page and modules, with the security headers on
    // them and on the API's answers.
    for path in ["/", "/console/app.js", "/api/v1/session"] {
        let resp = api.client.get(format!("{}{path}", api.base)).bearer_auth(&viewer).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let headers = resp.headers();
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert!(headers["content-security-policy"].to_str().unwrap().contains("script-src 'self'"), "{path}");
        let text = resp.text().await.unwrap();
        assert!(!text.is_empty(), "{path}");
    }
    let page = api.client.get(format!("{}/", api.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<script type=\"module\" src=\"/console/app.js\">"), "{page}");

    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_compliance_signs_a_stop_and_the_trail_names_the_operator() {
    let api = Api::start().await;
    let (viewer, sato, kato) = (api.login("yamada").await, api.login("sato").await, api.login("kato").await);
    // Only compliance causes a stop order to be signed; refusals change nothing.
    let (status, body) = api
        .call(Method::POST, "/api/v1/cases", Some(&sato), Some(json!({"device": DEVICE, "fact": "x"})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, case) = api
        .call(Method::POST, "/api/v1/cases", Some(&kato), Some(json!({"device": DEVICE, "fact": "malware"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{case}");
    let case_id = case["case_id"].as_u64().unwrap();
    let stop = json!({"device": DEVICE, "reason": "停止 / stopped", "justification": "ongoing attack"});
    for who in [&viewer, &sato] {
        let (status, body) =
            api.call(Method::POST, "/api/v1/orders/stop", Some(who), Some(stop.clone())).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{body}");
    }
    assert!(api.db.orders(Some(DEVICE), 10).await.unwrap().is_empty());
    let (status, issued) =
        api.call(Method::POST, "/api/v1/orders/stop", Some(&kato), Some(stop.clone())).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let (status, body) = api.call(Method::POST, "/api/v1/orders/stop", Some(&kato), Some(stop)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("refused")), "{body}");
    let (_, trail) = api.call(Method::GET, &format!("/api/v1/cases/{case_id}"), Some(&viewer), None).await;
    let (_, latest) =
        api.call(Method::GET, &format!("/api/v1/devices/{DEVICE_IN_PATH}/case"), Some(&viewer), None).await;
    assert_eq!(latest, trail, "the device's latest case is this one");
    let operators: Vec<&str> =
        trail["events"].as_array().unwrap().iter().map(|e| e["operator"].as_str().unwrap()).collect();
    assert_eq!(operators, ["kato", "kato"], "{trail}");
    let order_id = issued["order_id"].as_u64().unwrap();
    let (status, order) =
        api.call(Method::GET, &format!("/api/v1/orders/{order_id}"), Some(&viewer), None).await;
    assert_eq!((status, order["operator"].as_str()), (StatusCode::OK, Some("kato")), "{order}");
    let (status, checks) =
        api.call(Method::GET, &format!("/api/v1/orders/{order_id}/verify"), Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK, "{checks}");
    assert!(checks.as_array().unwrap().iter().all(|c| c["result"] != "failed"), "{checks}");

    // Signing out ends the session.
    let (status, _) = api.call(Method::DELETE, "/api/v1/session", Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.call(Method::GET, "/api/v1/alerts", Some(&viewer), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api.call(Method::PUT, "/api/v1/session", None, None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method")));
    api.stop().await;
}

/// The `(METHOD, /path/{param})` pairs of the OpenAPI document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_routes() {
    let api = Api::start().await;
    let (status, doc) = api.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    let routes: BTreeSet<(String, String)> =
        routes::ROUTES.iter().map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned())).collect();
    assert_eq!(documented(&doc), routes, "every route is documented and every documented route exists");

    // Every documented route answers (no "no_route"/"method" refusal), as compliance.
    let token = api.login("kato").await;
    for (method, path) in documented(&doc) {
        let concrete = path.replace("{id}", if path.contains("devices/") { DEVICE_IN_PATH } else { "1" });
        let body = (method == "POST").then(|| json!({}));
        let (status, reply) =
            api.call(Method::from_bytes(method.as_bytes()).unwrap(), &concrete, Some(&token), body).await;
        let code = reply["error"].as_str().unwrap_or_default();
        assert!(code != "no_route" && code != "method", "{method} {concrete}: {status} {reply}");
        assert!(!status.is_server_error(), "{method} {concrete}: {status} {reply}");
    }
    api.stop().await;
}

/// `promtool check metrics` on the exposition; under CI=true a missing
/// promtool (Debian package `prometheus`, installed by scripts/setup.sh) fails.
fn promtool_check(text: &str) {
    use std::io::Write as _;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "promtool is needed under CI: {e}");
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED promtool check: promtool not found ({e}); bash scripts/setup.sh installs it"
            );
            return;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_that_promtool_accepts() {
    let api = Api::start().await;
    let resp = api.client.get(format!("{}/metrics", api.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.unwrap();
    for line in [
        "cpe_devices{state=\"up\"} 3",
        "cpe_devices{state=\"down\"} 0",
        "cpe_devices_alerting 1",
        "cpe_devices_suspended 0",
        "cpe_alerts_open{kind=\"threshold\",level=\"warning\"} 1",
        "# TYPE cpe_ingest_duration_seconds histogram",
        "# TYPE cpe_reports_ingested_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("cpe_build_info{version=\"") && l.ends_with("} 1")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("cpe_newest_report_age_seconds{state=\"up\"} ")), "{text}");
    promtool_check(&text);

    // A queued command and a stop order show up by state.
    let (sato, kato) = (api.login("sato").await, api.login("kato").await);
    let commands = format!("/api/v1/devices/{DEVICE_IN_PATH}/commands");
    api.call(Method::POST, &commands, Some(&sato), Some(json!({"kind": "report-now"}))).await;
    api.call(Method::POST, "/api/v1/cases", Some(&kato), Some(json!({"device": DEVICE, "fact": "x"}))).await;
    let stop = json!({"device": DEVICE, "reason": "停止", "justification": "urgent"});
    let (status, _) = api.call(Method::POST, "/api/v1/orders/stop", Some(&kato), Some(stop)).await;
    assert_eq!(status, StatusCode::OK);
    let text = api.client.get(format!("{}/metrics", api.base)).send().await.unwrap().text().await.unwrap();
    for line in ["cpe_commands{state=\"queued\"} 2", "cpe_orders{state=\"queued\"} 1"] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    promtool_check(&text);
    api.stop().await;
}

/// Retention (issue 10): a device's graph over the API, in exactly the
/// shape the console draws, for a viewer; bad windows 400, unknown devices 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_series_over_the_api() {
    use cpe_protocol::{Health, InterfaceStats, Payload, Record};
    let api = Api::start().await;
    let now_ms = cpe_provision::clock::now_ms();
    let seen = DeviceSeen { id: DEVICE.into(), institution_code: DEVICE[..10].into(), cert_not_after: None };
    let records: Vec<IngestRecord> = (0..3u8)
        .map(|i| {
            let health = Health {
                cpu_pct: f32::from(i) * 10.0,
                mem_pct: 50.0,
                interfaces: vec![InterfaceStats {
                    name: "wan0".into(),
                    rx_bps: 2000.0,
                    tx_bps: 500.0,
                    ..InterfaceStats::default()
                }],
                ..Health::default()
            };
            let at_unix_ms = now_ms - 3_600_000 + i64::from(i) * 60_000;
            cpe_provision::server::ingest_record(&Record {
                seq: 10 + u64::from(i),
                at_unix_ms,
                payload: Payload::Heartbeat(health),
            })
        })
        .collect();
    api.db.ingest(&seen, records, now_ms).await.unwrap();
    let viewer = api.login("yamada").await;
    let path = format!("/api/v1/devices/{DEVICE_IN_PATH}/series");
    let (status, series) = api.call(Method::GET, &path, Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK, "{series}");
    assert_eq!(series["resolution_s"], 60);
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 3, "{series}");
    let first = points[0].as_object().unwrap();
    assert_eq!(first.keys().collect::<Vec<_>>(), ["at_unix_ms", "cpu_pct", "lines", "mem_pct"]);
    assert_eq!(points[1]["cpu_pct"], 10.0);
    assert_eq!(points[1]["lines"], json!([{"name": "wan0", "rx_bps": 2000.0, "tx_bps": 500.0}]));
    let (status, week) = api.call(Method::GET, &format!("{path}?hours=168"), Some(&viewer), None).await;
    assert_eq!((status, &week["resolution_s"]), (StatusCode::OK, &json!(420)), "{week}");
    for bad in ["hours=0", "hours=721", "hours=x"] {
        let (status, body) = api.call(Method::GET, &format!("{path}?{bad}"), Some(&viewer), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _) =
        api.call(Method::GET, "/api/v1/devices/1312345678%2Fnone/series", Some(&viewer), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.call(Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    api.stop().await;
}
