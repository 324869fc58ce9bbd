//! Issue 19, item 3: the carrier server ran out of connections. 2,000 idle
//! TCP connections, or 1,100 idle authenticated ones, made a real router's
//! request time out, and the server never raised its open-file limit.
//!
//! Here a real `cpe-provision serve` starts with the soft open-file limit of
//! a default systemd service (1024, under a larger hard limit); an attacker
//! on loopback (127.0.0.2–127.0.0.7) opens 3,000 idle TCP connections and
//! 1,100 idle authenticated TLS connections (another institution's valid
//! certificate), and holds them. Meanwhile the router (127.0.0.1, its own
//! certificate, a new connection per request) must be served, and a real
//! `cpe-agent run` with that certificate keeps reporting. Afterwards
//! the server must have closed every attacker connection by itself (the
//! handshake and idle deadlines). The figures are printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpe_e2e::{binary, FakeSystem, Proc};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const IDLE_TCP: usize = 3000;
const IDLE_TLS: usize = 1100;
const HANDSHAKE_TIMEOUT_S: u64 = 10;
const IDLE_TIMEOUT_S: u64 = 10;
const MAX_CONNECTIONS: usize = 2000;

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

async fn connect_from(source: IpAddr, server: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(source, 0)).ok()?;
    tokio::time::timeout(Duration::from_secs(5), socket.connect(server)).await.ok()?.ok()
}

/// How many files the process `pid` has open (its sockets included).
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Whether the server still holds `stream` open (nothing to read, no EOF).
fn still_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

fn client_tls(dir: &std::path::Path, name: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(dir.join("ca/ca.pem")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join(format!("{name}.crt.pem")))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key.pem"))).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

/// `count` router requests, each on a new connection; their latencies.
/// Every one must be answered 200.
async fn router_requests(
    router: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    count: usize,
    log: impl Fn() -> String,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for _ in 0..count {
        let asked = Instant::now();
        let answer = ping(router, loopback(1), addr).await;
        assert_eq!(answer.map(|(status, _)| status), Some(200), "the router was not served\n{}", log());
        latencies.push(asked.elapsed());
    }
    latencies.sort();
    latencies
}

/// One authenticated request (`/v1/ping`) on a new connection from
/// `source`; the connection is returned open (keep-alive) with the status.
async fn ping(
    tls: &Arc<rustls::ClientConfig>,
    source: IpAddr,
    server: SocketAddr,
) -> Option<(u16, tokio_rustls::client::TlsStream<TcpStream>)> {
    let tcp = connect_from(source, server).await?;
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let exchange = async {
        let mut stream = connector.connect(name, tcp).await.ok()?;
        stream.write_all(b"GET /v1/ping HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.ok()?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        // The reply is small: its headers and body arrive together.
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        // "HTTP/1.1 200 OK\r\n…" (the body after the headers is binary).
        let status_line = head.split(|b| *b == b'\r').next()?;
        let status = std::str::from_utf8(status_line).ok()?.split(' ').nth(1)?.parse().ok()?;
        Some((status, stream))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange).await.ok()?
}

/// The test PKI (router and attacker certificates) in `d` and a
/// `cpe-provision serve` with short deadlines, started under the soft
/// open-file limit of a default systemd service (1024) below `hard`: the
/// server must raise it itself.
fn start_server(d: &std::path::Path, hard: u64, unit: &str) -> (Proc, SocketAddr) {
    cpe_e2e::carrier_pki(d, &["localhost", "127.0.0.1"]).unwrap();
    cpe_e2e::issue_pkcs12(d, "1312345678", unit, "router", &[]).unwrap();
    cpe_e2e::issue_pkcs12(d, "2712345678", "attacker", "attacker", &[]).unwrap();
    let database = format!("sqlite:{}", d.join("carrier.db").display());
    let (handshake, idle, max) =
        (HANDSHAKE_TIMEOUT_S.to_string(), IDLE_TIMEOUT_S.to_string(), MAX_CONNECTIONS.to_string());
    let limits = ["--handshake-timeout", &handshake, "--idle-timeout", &idle, "--max-connections", &max];
    let mut extra = limits.to_vec();
    extra.extend(["--max-connections-per-address", "1000", "--log-format", "json"]);
    let args = cpe_e2e::serve_args(d, "127.0.0.1:0", &database, &extra);
    setrlimit(Resource::RLIMIT_NOFILE, 1024, hard).unwrap();
    let spawned = Proc::spawn("cpe-provision", &args, &d.join("server.log"));
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let mut server = spawned.unwrap();
    let line = server.read_line_starting("listening on ").unwrap_or_else(|| {
        panic!("no start: {}", std::fs::read_to_string(d.join("server.log")).unwrap_or_default())
    });
    let port: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
    (server, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A real `cpe-agent run` with the router's certificate (imported from its
/// PKCS#12), reporting every second to the server on `port`, reading a
/// fake `/proc` and `/sys`.
fn start_agent(d: &std::path::Path, port: u16) -> (Proc, FakeSystem) {
    let system = FakeSystem::start(&d.join("root"), 10).unwrap();
    let config = format!(
        "state_dir = \"state\"\ntrust_anchors = [\"ca/ca.pem\"]\ninstitution_code = \"1312345678\"\n\
         [carrier]\nurl = \"https://127.0.0.1:{port}\"\nca = \"ca/ca.pem\"\ninterval_s = 1\nsample_s = 1\n\
         long_poll_s = 1\nbackoff_max_s = 1\n[system]\nproc_root = \"root/proc\"\nsys_root = \"root/sys\"\n"
    );
    std::fs::write(d.join("agent.toml"), config).unwrap();
    let path = |name: &str| d.join(name).to_string_lossy().into_owned();
    let import = std::process::Command::new(binary("cpe-agent"))
        .args(["--config", &path("agent.toml"), "cert", "import", &path("router.p12")])
        .args(["--password-file", &path("pw")])
        .output()
        .unwrap();
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let args = vec!["--config".to_owned(), path("agent.toml"), "run".to_owned()];
    (Proc::spawn("cpe-agent", &args, &d.join("agent.log")).unwrap(), system)
}

/// Seconds since the carrier last heard from `device`, if it knows it.
fn last_seen_ago_s(d: &std::path::Path, device: &str) -> Option<i64> {
    let database = format!("sqlite:{}", d.join("carrier.db").display());
    let out = cpe_e2e::provision(&["devices", "--json", "--database", &database]).ok()?;
    let devices: serde_json::Value = serde_json::from_str(&out).ok()?;
    devices.as_array()?.iter().find(|v| v["id"] == device)?["last_seen_ago_s"].as_i64()
}

/// The attacker's idle TCP connections (never a TLS byte), 1000 per
/// address from 127.0.0.2 on.
async fn open_idle_tcp(addr: SocketAddr) -> Vec<TcpStream> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..IDLE_TCP {
        let source = loopback(2 + u8::try_from(i / 1000).unwrap());
        tasks.spawn(async move { connect_from(source, addr).await });
    }
    let mut idle = Vec::new();
    while let Some(done) = tasks.join_next().await {
        idle.extend(done.unwrap());
    }
    idle
}

/// The attacker's idle authenticated connections (one ping each, then
/// silence), 400 per address from 127.0.0.5 on.
async fn open_idle_tls(
    attacker: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> Vec<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..IDLE_TLS {
        let (tls, source) = (attacker.clone(), loopback(5 + u8::try_from(i / 400).unwrap()));
        tasks.spawn(async move { ping(&tls, source, addr).await });
    }
    let mut idle = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Some((200, stream)) = done.unwrap() {
            idle.push(stream);
        }
    }
    idle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_is_served_while_an_attacker_holds_thousands_of_connections() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(hard >= 8192, "this test needs a hard open-file limit of at least 8192 (ulimit -Hn is {hard})");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let unit = cpe_e2e::unique_unit("router");
    let device = format!("1312345678/{unit}");
    let (mut server, addr) = start_server(d, hard, &unit);
    let log = || std::fs::read_to_string(d.join("server.log")).unwrap_or_default();
    let pid = server.child.id();
    let baseline = open_files(pid);

    let started = Instant::now();
    let idle_tcp = open_idle_tcp(addr).await;
    // The router, while the idle TCP connections are held.
    let router = client_tls(d, "router");
    let during_tcp = router_requests(&router, addr, 5, log).await;
    // And a real agent, reporting every second through the rest of the attack.
    let (mut agent, _system) = start_agent(d, addr.port());
    let idle_tls = open_idle_tls(&client_tls(d, "attacker"), addr).await;
    let opened = (idle_tcp.len(), idle_tls.len());
    let attack_took = started.elapsed();

    // The router, while the attacker holds what it could open.
    let latencies = router_requests(&router, addr, 20, log).await;
    let server_files = open_files(pid);
    let agent_heard = last_seen_ago_s(d, &device);
    let held = (
        idle_tcp.iter().filter(|s| still_open(s)).count(),
        idle_tls.iter().filter(|s| still_open(s.get_ref().0)).count(),
    );
    println!(
        "router /v1/ping while {} idle TCP connections were held: max {:.1} ms (5 requests, all 200)",
        idle_tcp.len(),
        during_tcp[4].as_secs_f64() * 1000.0
    );
    println!(
        "attacker opened {} idle TCP and {} idle authenticated connections in {:.1} s; \
         {} and {} of them look open to it while the router asked (the TCP ones include connections \
         the kernel completed but the server never accepted); the server had {server_files} files open \
         ({baseline} before the attack); router /v1/ping on a new connection: \
         median {:.1} ms, max {:.1} ms (20 requests, all 200)",
        opened.0,
        opened.1,
        attack_took.as_secs_f64(),
        held.0,
        held.1,
        latencies[10].as_secs_f64() * 1000.0,
        latencies[19].as_secs_f64() * 1000.0
    );
    let agent_log = || std::fs::read_to_string(d.join("agent.log")).unwrap_or_default();
    println!("cpe-agent run during the attack: the carrier last heard from it {agent_heard:?} s before");
    assert!(agent_heard.is_some_and(|s| s <= 3), "the agent was not served\n{}\n{}", agent_log(), log());
    assert!(opened.0 >= IDLE_TCP / 2 && opened.1 >= 8, "the attack itself failed: {opened:?}");
    assert!(
        server_files <= baseline + MAX_CONNECTIONS,
        "the server held {server_files} files, more than --max-connections {MAX_CONNECTIONS} allow"
    );
    assert!(held.1 <= 8, "more than --max-connections-per-device (8) authenticated ones held: {held:?}");

    // The deadlines close everything the attacker holds, by themselves.
    tokio::time::sleep(Duration::from_secs(HANDSHAKE_TIMEOUT_S.max(IDLE_TIMEOUT_S) + 2)).await;
    let files_after = open_files(pid);
    let tls_after = idle_tls.iter().filter(|s| still_open(s.get_ref().0)).count();
    println!(
        "{} s later: the server has {files_after} files open, {tls_after} authenticated attacker connections open",
        HANDSHAKE_TIMEOUT_S.max(IDLE_TIMEOUT_S) + 2
    );
    assert_eq!(tls_after, 0, "the server kept idle authenticated connections past its idle deadline");
    assert!(
        files_after <= baseline + 8,
        "the server kept {files_after} files ({baseline} before the attack)"
    );
    let raised = format!("\"soft\":{hard}");
    assert!(log().contains(&raised), "the open-file limit was not raised to {hard}:\n{}", log());
    assert_eq!(agent.terminate(Duration::from_secs(10)), Some(0), "{}", agent_log());
    assert_eq!(server.terminate(Duration::from_secs(10)), Some(0), "{}", log());
}

/// Issue 15: a reconnecting router resumes its TLS session (a ticket, no
/// full handshake) with the same identity; a device flooding the server with
/// requests is answered 429 beyond its request rate while the router is
/// still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_resume_and_a_flooding_device_is_slowed_not_the_others() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let unit = cpe_e2e::unique_unit("router");
    let (mut server, addr) = start_server(d, hard, &unit);
    let log = || std::fs::read_to_string(d.join("server.log")).unwrap_or_default();

    let router = client_tls(d, "router");
    let (status, first) = ping(&router, loopback(1), addr).await.unwrap();
    assert_eq!((status, first.get_ref().1.handshake_kind()), (200, Some(rustls::HandshakeKind::Full)));
    drop(first);
    let (status, again) = ping(&router, loopback(1), addr).await.unwrap();
    assert_eq!(
        (status, again.get_ref().1.handshake_kind()),
        (200, Some(rustls::HandshakeKind::Resumed)),
        "the reconnect did not resume its session\n{}",
        log()
    );
    drop(again);

    // The attacker's device: 150 requests as fast as it can (the default
    // rate: 10 a second, bursts of 60).
    let attacker = client_tls(d, "attacker");
    let started = Instant::now();
    let (mut answered, mut slowed) = (0usize, 0usize);
    for _ in 0..150 {
        match ping(&attacker, loopback(5), addr).await.map(|(status, _)| status) {
            Some(200) => answered += 1,
            Some(429) => slowed += 1,
            other => panic!("unexpected answer to the flooding device: {other:?}\n{}", log()),
        }
    }
    let took = started.elapsed().as_secs_f64();
    let latencies = router_requests(&router, addr, 5, log).await;
    println!(
        "flooding device: {answered} requests served, {slowed} answered 429 in {took:.1} s; \
         the router meanwhile: max {:.1} ms (5 requests, all 200)",
        latencies[4].as_secs_f64() * 1000.0
    );
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let allowed = 60 + (10.0 * took).ceil() as usize + 1;
    assert!(
        slowed > 0 && answered <= allowed,
        "served {answered} (at most {allowed} allowed), 429: {slowed}"
    );
    assert!(log().contains("too many requests from this device"), "the refusals were not logged\n{}", log());
    assert_eq!(server.terminate(Duration::from_secs(10)), Some(0), "{}", log());
}
