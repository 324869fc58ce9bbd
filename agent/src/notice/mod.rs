//! The notice page (guideline §2.2 ⑦, §1.1.2(4), §1.3.2 ④): the clinic's
//! own help desk on its LAN. It tells staff, Japanese first and then
//! English, whether the network service is normal, under a corrective
//! recommendation (with its deadline), suspended by a carrier order, in a
//! drill, or cut off (line or carrier unreachable); why and since when;
//! whom to call; the last self-diagnosis with what to do; and it lets them
//! run the self-check themselves.
//!
//! - [`admission`]: the pure per-client and total connection limits.
//! - [`page`]: the pure renderer and the headline's rules.
//! - [`request`]: the pure, fuzzed request reader and the same-origin rule.
//! - [`selfcheck`]: the button's gate (LAN clients, one at a time, once a
//!   minute) and its runner.
//! - [`link`]: the daemon's record of its channel to the carrier.
//!
//! [`serve`] is a tiny HTTP/1.1 responder started by `cpe-agent run` on
//! `[notice] listen`; it reads the order state and
//! `<state_dir>/diagnosis/last.json` on every request, so the page is never
//! stale, whichever process (daemon or `cpe-agent orders apply`) applied
//! the last order. One request per connection, its head bounded to 8 KiB,
//! its body to 1 KiB, both to [`REQUEST_DEADLINE`] (a terminal sends its
//! request at once; a client that dribbles it is cut off), the answer to
//! [`ANSWER_DEADLINE`]; slots per client and in all are limited by
//! [`admission`], so hostile LAN hosts cannot deny the page to the others.
//! A notice page needs no more, and a general HTTP server would cost the
//! router's binary more than the page itself. The page is served to the
//! LAN by the CPE itself (input traffic), so a suspension, which blocks
//! only forwarding, never hides it; during a suspension the firewall also
//! sends LAN HTTP for any address here ([`crate::orders::firewall`]).

pub mod admission;
pub mod link;
pub mod page;
pub mod request;
pub mod selfcheck;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpe_protocol::Health;
use tokio::net::TcpListener;

pub use link::{LinkSlot, LinkState};
pub use page::{render, NoticeView, ShownDiagnosis};
pub use request::{parse_request, same_origin, Ask};
pub use selfcheck::SelfCheck;

use crate::diagnose::DiagnosisReport;
use crate::orders::state::{ServiceRecord, StateStore};
use selfcheck::{Pressed, Refusal, Status};

/// Largest diagnosis file read.
const MAX_DIAGNOSIS_BYTES: u64 = 256 * 1024;

/// The latest heartbeat figures, shared with the daemon's sampler.
pub type HealthSlot = Arc<Mutex<Option<Health>>>;

/// Reads `<state_dir>/diagnosis/last.json` (the `cpe-agent diagnose --json`
/// document); `None` if absent, too large or not of that shape.
pub fn read_diagnosis(state_dir: &Path) -> Option<DiagnosisReport> {
    use std::io::Read;
    let file = std::fs::File::open(state_dir.join("diagnosis").join("last.json")).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_DIAGNOSIS_BYTES).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
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
    /// The daemon's record of its channel to the carrier.
    pub link: LinkSlot,
    /// The self-check button; `None`: the page has none.
    pub self_check: Option<Arc<SelfCheck>>,
}

fn lock<T: Clone>(slot: &Mutex<T>) -> T {
    slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

impl NoticeSource {
    /// The view now.
    pub fn view(&self) -> NoticeView {
        let (service, state_problem) =
            match StateStore::new(cpe_common::durable::OsStorage, &self.state_dir).load() {
                Ok(loaded) => (loaded.state.map_or_else(ServiceRecord::normal, |s| s.service), None),
                Err(e) => (ServiceRecord::normal(), Some(e.to_string())),
            };
        let diagnosis =
            read_diagnosis(&self.state_dir).map(|report| ShownDiagnosis::from_report(&report, &service));
        NoticeView {
            service,
            state_problem,
            contact_ja: self.contact_ja.clone(),
            contact_en: self.contact_en.clone(),
            diagnosis,
            health: lock(&self.health),
            link: lock(&self.link),
            self_check: self.self_check.as_ref().map(|s| s.status()),
            self_check_interval: self.self_check.as_ref().map_or(selfcheck::MIN_INTERVAL, |s| s.interval()),
            now: crate::clock::now().unix_timestamp(),
        }
    }
}

/// Largest request head read; a longer one is answered 431.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// How long a client may take to send its request (head and body), from
/// the moment it is accepted.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(3);

/// How long a client may take to read the answer.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(5);

/// Bytes read from the socket at a time (the head grows in a `Vec` only as
/// far as the client sends it).
const READ_CHUNK: usize = 512;

/// One response: status line, content type, extra headers, body.
struct Response {
    status: &'static str,
    content_type: &'static str,
    extra: String,
    body: String,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            extra: String::new(),
            body: body.to_owned(),
        }
    }

    fn html(status: &'static str, body: String) -> Self {
        Self { status, content_type: "text/html; charset=utf-8", extra: String::new(), body }
    }

    fn bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
             Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'\r\n\
             X-Content-Type-Options: nosniff\r\n{}Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            self.extra
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// The self-check's status as the progress script reads it.
fn status_json(status: Option<Status>) -> String {
    let value = match status {
        None => serde_json::json!({ "state": "absent" }),
        Some(Status::Idle) => serde_json::json!({ "state": "idle" }),
        Some(Status::Running { checks_done, elapsed }) => serde_json::json!({
            "state": "running", "checks_done": checks_done, "elapsed_s": elapsed.as_secs(),
        }),
        Some(Status::Done { id, segment, took }) => serde_json::json!({
            "state": "done", "id": id, "segment": segment, "took_ms": u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        }),
        Some(Status::Failed { error }) => serde_json::json!({ "state": "failed", "error": error }),
    };
    value.to_string()
}

/// The answer to a press of the button by `peer`.
fn press(source: &NoticeSource, peer: IpAddr, same_origin: bool) -> Response {
    let forbidden = |ja: &str, en: &str| Response::html("403 Forbidden", page::message(ja, en));
    let Some(self_check) = &source.self_check else {
        return Response::text("404 Not Found", "no self-check here\n");
    };
    if !same_origin {
        return forbidden(
            "このページ以外からの自己診断の要求は受け付けません。お知らせのページのボタンを押してください。",
            "A self-check request from outside this page is refused; press the button on the notice page.",
        );
    }
    match self_check.press(peer) {
        Pressed::Started | Pressed::Refused(Refusal::Busy) => Response {
            status: "303 See Other",
            content_type: "text/plain; charset=utf-8",
            extra: "Location: /\r\n".into(),
            body: "self-check running; see /\n".into(),
        },
        Pressed::Refused(Refusal::TooSoon { wait }) => {
            let s = wait.as_secs().max(1);
            let interval = self_check.interval();
            let mut response = Response::html(
                "429 Too Many Requests",
                page::message(
                    &format!(
                        "自己診断は{}実行できます。{s} 秒後にもう一度お試しください。",
                        page::at_most(interval, crate::lang::Lang::Ja)
                    ),
                    &format!(
                        "The self-check runs {}; try again in {s} s.",
                        page::at_most(interval, crate::lang::Lang::En)
                    ),
                ),
            );
            response.extra = format!("Retry-After: {s}\r\n");
            response
        }
        Pressed::NotLan => forbidden(
            "自己診断は院内LANの端末からのみ実行できます。",
            "The self-check can be run from a terminal on the clinic LAN only.",
        ),
    }
}

/// The whole HTTP/1.1 response to `ask` from `peer` (the connection is
/// closed after it).
fn respond(ask: Ask, peer: IpAddr, source: &NoticeSource) -> Vec<u8> {
    let response = match ask {
        Ask::Page { .. } => Response::html("200 OK", render(&source.view())),
        Ask::Status => Response {
            status: "200 OK",
            content_type: "application/json",
            extra: String::new(),
            body: status_json(source.self_check.as_ref().map(|s| s.status())),
        },
        Ask::StartSelfCheck { same_origin, .. } => press(source, peer, same_origin),
        Ask::WrongMethod => Response::text("405 Method Not Allowed", "GET, or POST /self-check\n"),
        Ask::BodyTooLarge => Response::text("413 Content Too Large", "request body too large\n"),
        Ask::TooLarge => Response::text("431 Request Header Fields Too Large", "request too large\n"),
        Ask::Malformed => Response::text("400 Bad Request", "bad request\n"),
    };
    response.bytes(ask == Ask::Page { head_only: true })
}

/// The end of the head in `bytes` (index past the blank line), if there.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reads one request head and its (bounded) body; `None` when the client
/// closed or failed first.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Ask> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let mut chunk = [0_u8; READ_CHUNK];
    let (ask, end) = loop {
        if let Some(end) = head_end(&bytes) {
            break (parse_request(&bytes[..end]), end);
        }
        if bytes.len() >= MAX_REQUEST_HEAD {
            break (Ask::TooLarge, bytes.len());
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    };
    // Read the (bounded) body, so closing does not reset the connection
    // under the answer; its content is not needed.
    if let Ask::StartSelfCheck { body_len, .. } = ask {
        let mut have = bytes.len() - end;
        drop(bytes);
        while have < body_len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => have += n,
            }
        }
    }
    Some(ask)
}

/// Reads one request within [`REQUEST_DEADLINE`], answers it within
/// [`ANSWER_DEADLINE`], closes.
async fn handle(mut stream: tokio::net::TcpStream, peer: SocketAddr, source: &NoticeSource) {
    use tokio::io::AsyncWriteExt;
    let ask = match tokio::time::timeout(REQUEST_DEADLINE, read_request(&mut stream)).await {
        Ok(Some(ask)) => ask,
        Ok(None) => return,
        Err(_) => {
            tracing::debug!(%peer, "notice request not sent in time; closed");
            return;
        }
    };
    let answer = respond(ask, peer.ip(), source);
    let written = tokio::time::timeout(ANSWER_DEADLINE, async {
        let _ = stream.write_all(&answer).await;
        let _ = stream.shutdown().await;
    });
    if written.await.is_err() {
        tracing::debug!(%peer, "notice answer not read in time; closed");
    }
}

/// The connection slots of every listening address, shared.
type Slots = Arc<Mutex<admission::Admission>>;

/// A slot held by one connection, given back when dropped.
struct Slot {
    slots: Slots,
    client: admission::Client,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).release(self.client);
    }
}

/// Serves the page on every address until the future is dropped. An
/// address that cannot be bound yet (the LAN bridge is not up) is logged
/// and retried every 5 seconds, so the agent never fails to start for it.
pub async fn serve(addresses: Vec<SocketAddr>, source: NoticeSource) {
    let source = Arc::new(source);
    let slots: Slots = Arc::new(Mutex::new(admission::Admission::default()));
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

/// Accepts without ever waiting for a slot: a connection over a limit is
/// closed at once, so the accept queue keeps moving under attack.
async fn accept(listener: &TcpListener, source: &Arc<NoticeSource>, slots: &Slots) {
    let mut refused: u64 = 0;
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let admitted = slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).admit(peer.ip());
        let client = match admitted {
            Ok(client) => client,
            Err(why) => {
                refused += 1;
                if refused.is_power_of_two() {
                    tracing::warn!(%peer, reason = ?why, refused, "notice page connection refused (per-client or total limit); a LAN host may be flooding the page");
                }
                drop(stream);
                continue;
            }
        };
        let slot = Slot { slots: slots.clone(), client };
        let source = source.clone();
        tokio::spawn(async move {
            handle(stream, peer, &source).await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests;
