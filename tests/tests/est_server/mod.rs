//! A small EST server (RFC 7030) for the tests: a certification body that
//! offers `simpleenroll` / `simplereenroll` over TLS with mandatory client
//! certificates. It signs with a test CA directory (`cpe-provision` library)
//! and answers base64 PKCS#7 certs-only made by `openssl crl2pkcs7`, an
//! encoder independent of the carrier's parser. It records every request
//! (operation and client certificate subject) for the test to check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

/// One request the server answered.
#[derive(Debug, Clone)]
pub struct EstSeen {
    /// The path, e.g. `/.well-known/est/simplereenroll`.
    pub path: String,
    /// Subject of the client certificate the caller presented.
    pub client_subject: String,
    /// The HTTP status answered.
    pub status: u16,
}

/// The running server; stopped when dropped.
pub struct EstServer {
    /// `https://127.0.0.1:PORT/.well-known/est`.
    pub url: String,
    seen: Arc<Mutex<Vec<EstSeen>>>,
    /// Answer this many requests with 503 first (the body is "down").
    pub unavailable: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    port: u16,
}

struct Body {
    ca_dir: PathBuf,
    work: PathBuf,
    tls: Arc<rustls::ServerConfig>,
}

impl EstServer {
    /// Serves on 127.0.0.1 with `cert`/`key`, accepting clients whose
    /// certificate chains to `client_ca`; signs with the CA in `ca_dir`.
    pub fn start(ca_dir: &Path, cert: &Path, key: &Path, client_ca: &Path, work: &Path) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(client_ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap();
        let chain: Vec<_> = CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect();
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
            .unwrap();
        let body = Arc::new(Body { ca_dir: ca_dir.to_owned(), work: work.to_owned(), tls: Arc::new(tls) });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen, stop, unavailable) =
            (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));
        let (seen2, stop2, unavailable2) = (seen.clone(), stop.clone(), unavailable.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (body, seen, unavailable) = (body.clone(), seen2.clone(), unavailable2.clone());
                std::thread::spawn(move || {
                    if let Some(answered) = serve_one(&body, stream, &unavailable) {
                        seen.lock().unwrap().push(answered);
                    }
                });
            }
        });
        Self { url: format!("https://127.0.0.1:{port}/.well-known/est"), seen, unavailable, stop, port }
    }

    /// The requests answered so far.
    pub fn seen(&self) -> Vec<EstSeen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for EstServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_one(body: &Body, tcp: TcpStream, unavailable: &AtomicU32) -> Option<EstSeen> {
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10))).ok()?;
    let conn = rustls::ServerConnection::new(body.tls.clone()).ok()?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut reader = BufReader::new(&mut tls);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut request_body = vec![0; length];
    reader.read_exact(&mut request_body).ok()?;
    drop(reader);
    let client_subject = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c.subject().to_string()))
        .unwrap_or_default();
    let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let (status, content_type, answer) =
        if unavailable.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            (503, "text/plain", b"body under maintenance".to_vec())
        } else if path == "/.well-known/est/simplereenroll" || path == "/.well-known/est/simpleenroll" {
            match sign(body, &request_body) {
                Ok(pkcs7) => (200, "application/pkcs7-mime; smime-type=certs-only", pkcs7),
                Err(e) => (400, "text/plain", e.into_bytes()),
            }
        } else {
            (404, "text/plain", b"no such EST operation".to_vec())
        };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.len()
    );
    tls.write_all(head.as_bytes()).ok()?;
    tls.write_all(&answer).ok()?;
    tls.flush().ok()?;
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Some(EstSeen { path, client_subject, status })
}

/// Signs the base64 PKCS#10 `request`; the answer is base64 PKCS#7 certs-only.
fn sign(body: &Body, request: &[u8]) -> Result<Vec<u8>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let text: Vec<u8> = request.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let der = b64.decode(text).map_err(|e| format!("not base64: {e}"))?;
    let csr_pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
    let ca = cpe_provision::CertificationBody::load(&body.ca_dir).map_err(|e| e.to_string())?;
    let start = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let validity = cpe_provision::Validity::new(start, 825).map_err(|e| e.to_string())?;
    let signed = ca.sign_csr(&csr_pem, validity, None).map_err(|e| e.to_string())?;
    let chain = body.work.join(format!("est-{}.pem", signed.serial_hex()));
    std::fs::write(&chain, &signed.chain_pem).map_err(|e| e.to_string())?;
    let out = Command::new("openssl")
        .args(["crl2pkcs7", "-nocrl", "-certfile"])
        .arg(&chain)
        .args(["-outform", "DER"])
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!("openssl crl2pkcs7: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(b64.encode(out.stdout).into_bytes())
}
