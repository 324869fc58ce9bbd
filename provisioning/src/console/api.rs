//! The operator API's handlers: each parses its request, checks who is
//! signed in and what their role allows, calls the one library use case
//! the CLI calls too, and renders its result as JSON. Nothing here decides
//! anything the library does not.
//!
//! Errors are JSON `{"error": CODE, "message": TEXT}`: 400 bad input, 401
//! not signed in, 403 role or cross-site request, 404 unknown object, 409
//! refused by the §2.2 flow, 503 when the store or the order keys are not
//! available. A refused request changed nothing.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, ORIGIN, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::routes::{Endpoint, Matched};
use crate::clock::unix_ms;
use crate::compliance::cases::{self, Hearing};
use crate::compliance::order_keys::KeyStore;
use crate::compliance::orders::{self, ReasonText, Signing};
use crate::compliance::{reverify, ComplianceError};
use crate::devices::{self, DeviceError};
use crate::operators::{self, sessions, Action, OperatorError, SignedIn};
use crate::store::{Database, DbError, DeviceFilter, DeviceQuery, DeviceSort, Role};

/// A reply.
pub(super) type Reply = Response<Full<Bytes>>;

/// Largest request body (JSON of one step).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Default page size of the device list.
const DEFAULT_PAGE: u32 = 50;

/// Default window of a device's graph, hours.
const DEFAULT_SERIES_HOURS: u32 = 24;

/// What the handlers share.
pub(super) struct State {
    pub(super) db: Database,
    /// Order-key directory; `None` refuses the steps that sign orders.
    pub(super) order_keys: Option<PathBuf>,
    /// Days a signed order stays valid.
    pub(super) order_valid_days: u32,
}

/// A refused request.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// A role refusal: the asker's role and the least role the action needs
    /// (the console words its refusal from them).
    roles: Option<(Role, Role)>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), roles: None }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(super) fn reply(&self) -> Reply {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            role: Option<Role>,
            #[serde(skip_serializing_if = "Option::is_none")]
            required_role: Option<Role>,
        }
        json(
            self.status,
            &Body {
                error: self.code,
                message: &self.message,
                role: self.roles.map(|(role, _)| role),
                required_role: self.roles.map(|(_, required)| required),
            },
        )
    }
}

fn store_error(e: &DbError) -> ApiError {
    match e {
        DbError::UnknownDevice(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        DbError::OutOfRange { .. } => ApiError::bad(e.to_string()),
        _ if e.is_retryable() => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
        _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

impl From<OperatorError> for ApiError {
    fn from(e: OperatorError) -> Self {
        let (status, code) = match &e {
            OperatorError::BadCredentials | OperatorError::Unauthenticated => {
                (StatusCode::UNAUTHORIZED, "unauthenticated")
            }
            OperatorError::Forbidden { role, action, .. } => {
                let mut refused = Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string());
                refused.roles = Some((*role, action.least_role()));
                return refused;
            }
            OperatorError::Store(db) => return store_error(db),
            _ => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<DeviceError> for ApiError {
    fn from(e: DeviceError) -> Self {
        match &e {
            DeviceError::Unknown(_) | DeviceError::UnknownAlert(_) => {
                Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            DeviceError::PageSize(_) | DeviceError::SeriesHours(_) => Self::bad(e.to_string()),
            DeviceError::Store(db) => store_error(db),
            DeviceError::Encode(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }
}

impl From<ComplianceError> for ApiError {
    fn from(e: ComplianceError) -> Self {
        match &e {
            ComplianceError::Refused(_) => Self::new(StatusCode::CONFLICT, "refused", e.to_string()),
            ComplianceError::NoCase { .. }
            | ComplianceError::NoDeviceCase { .. }
            | ComplianceError::UnknownDevice(_)
            | ComplianceError::NoOrder(_) => Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            ComplianceError::NoReason | ComplianceError::NoRecommendation => Self::bad(e.to_string()),
            ComplianceError::Store(db) => store_error(db),
            ComplianceError::Keys(_) | ComplianceError::OrderKey(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "order_keys", e.to_string())
            }
            ComplianceError::RotationUnfinished { .. } => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

/// A JSON reply.
pub(super) fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn ok<T: Serialize>(value: &T) -> Result<Reply, ApiError> {
    let bytes = serde_json::to_vec(value).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("could not render the reply: {e}"),
        )
    })?;
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// The session token a request carries, and whether it came in the cookie.
fn presented_token(headers: &HeaderMap) -> Option<(String, bool)> {
    if let Some(bearer) =
        headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some((bearer.trim().to_owned(), false));
    }
    headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(
        |pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == sessions::COOKIE_NAME).then(|| (value.to_owned(), true))
        },
    )
}

/// A browser's state-changing request must come from this site: its
/// `Origin` must be `https://` + its `Host` (CSRF; the cookie is
/// SameSite=Strict too). Bearer clients are not browsers and are exempt.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    matches!((host, origin), (Some(h), Some(o)) if o.strip_prefix("https://") == Some(h))
}

async fn signed_in(state: &State, req: &Request<Incoming>, now_ms: i64) -> Result<SignedIn, ApiError> {
    let (token, from_cookie) = presented_token(req.headers()).ok_or(OperatorError::Unauthenticated)?;
    if from_cookie && req.method() != Method::GET && !same_origin(req.headers()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "a request that changes something must come from the console's own pages (Origin does not match Host)",
        ));
    }
    Ok(operators::authenticate(&state.db, &token, now_ms).await?)
}

async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let bytes = match Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body exceeds {MAX_BODY_BYTES} bytes"),
            ))
        }
        Err(e) => return Err(ApiError::bad(format!("could not read the body: {e}"))),
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad(format!("the body is not the JSON expected: {e}")))
}

fn query_num<T: std::str::FromStr>(m: &Matched, name: &str, default: T) -> Result<T, ApiError> {
    match m.query.get(name) {
        None => Ok(default),
        Some(v) => {
            v.parse().map_err(|_| ApiError::bad(format!("query parameter {name}={v:?} is not a number")))
        }
    }
}

fn query_bool(m: &Matched, name: &str) -> Result<bool, ApiError> {
    match m.query.get(name).map(String::as_str) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(v) => Err(ApiError::bad(format!("query parameter {name}={v:?}: use true or false"))),
    }
}

fn id_param(m: &Matched) -> Result<&str, ApiError> {
    m.id.as_deref().ok_or_else(|| ApiError::bad("the path lacks its id"))
}

fn numeric_id<T: std::str::FromStr>(m: &Matched) -> Result<T, ApiError> {
    let id = id_param(m)?;
    id.parse().map_err(|_| ApiError::bad(format!("{id:?} is not a number")))
}

fn signing(state: &State) -> Result<Signing, ApiError> {
    let dir = state.order_keys.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "order_keys",
            "this server was started without --order-keys, so it cannot sign orders",
        )
    })?;
    Ok(Signing { keys: KeyStore::new(dir), valid_days: state.order_valid_days })
}

fn key_store(state: &State) -> Result<KeyStore, ApiError> {
    signing(state).map(|s| s.keys)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    name: String,
    password: String,
}

#[derive(Serialize)]
struct LoginReply<'a> {
    operator: &'a str,
    role: Role,
    token: &'a str,
    expires_at_ms: i64,
}

/// `GET /api/v1/session`: who is signed in and which actions their role
/// allows, so the console offers only what the server will do.
#[derive(Serialize)]
struct SessionReply<'a> {
    operator: &'a str,
    role: Role,
    may: std::collections::BTreeMap<&'static str, bool>,
}

impl<'a> SessionReply<'a> {
    fn of(who: &'a SignedIn) -> Self {
        let may = Action::ALL
            .into_iter()
            .filter_map(|action| {
                let name = match action {
                    Action::View => return None,
                    Action::AcknowledgeAlert => "acknowledge_alert",
                    Action::QueueCommand => "queue_command",
                    Action::RecordIncident => "record_incident",
                    Action::CaseStep => "case_step",
                    Action::SignOrder => "sign_order",
                };
                Some((name, who.may(action)))
            })
            .collect();
        Self { operator: &who.name, role: who.role, may }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    kind: String,
}

#[derive(Serialize)]
struct CommandReply {
    command_id: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenCaseBody {
    device: String,
    fact: String,
}

#[derive(Serialize)]
struct CaseReply {
    case_id: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HearingBody {
    summary: Option<String>,
    skip_urgent_justification: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    to: String,
    text: String,
}

/// Text in both languages, or one text for both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecommendBody {
    deadline: String,
    text: Option<String>,
    text_ja: Option<String>,
    text_en: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    corrected: bool,
    note: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderBody {
    device: String,
    reason: Option<String>,
    reason_ja: Option<String>,
    reason_en: Option<String>,
    /// Stop: why the hearing could wait no longer (urgent stop); resume:
    /// why the service resumes without a confirmed correction.
    justification: Option<String>,
}

impl OrderBody {
    fn reason(&self) -> ReasonText {
        ReasonText { both: self.reason.clone(), ja: self.reason_ja.clone(), en: self.reason_en.clone() }
    }
}

fn device_query(m: &Matched) -> Result<DeviceQuery, ApiError> {
    let filter =
        match m.query.get("filter").map(String::as_str) {
            None | Some("") => None,
            Some(f) => Some(DeviceFilter::ALL.into_iter().find(|x| x.as_str() == f).ok_or_else(|| {
                ApiError::bad(format!("filter={f:?}: use up, down, suspended or alerting"))
            })?),
        };
    let sort = match m.query.get("sort").map(String::as_str) {
        None | Some("") => DeviceSort::Id,
        Some(s) => DeviceSort::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| {
            ApiError::bad(format!("sort={s:?}: use id, last_seen, cert_not_after or state"))
        })?,
    };
    Ok(DeviceQuery {
        search: m.query.get("search").cloned().unwrap_or_default(),
        filter,
        sort,
        descending: query_bool(m, "desc")?,
        limit: query_num(m, "limit", DEFAULT_PAGE)?,
        offset: query_num(m, "offset", 0)?,
    })
}

/// A reply of `content_type`.
fn text(content_type: &'static str, body: String) -> Reply {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// `GET /metrics`.
async fn metrics(state: &State, now_ms: i64) -> Result<Reply, ApiError> {
    let fleet = state.db.fleet_metrics().await.map_err(|e| store_error(&e))?;
    let exposition = crate::metrics::render(&fleet, &crate::metrics::INGEST, now_ms);
    Ok(text("text/plain; version=0.0.4; charset=utf-8", exposition))
}

/// Serves one matched request.
pub(super) async fn serve(state: &State, m: Matched, req: Request<Incoming>) -> Result<Reply, ApiError> {
    let now = OffsetDateTime::now_utc();
    let now_ms = unix_ms(now);
    match m.endpoint {
        Endpoint::OpenApi => return Ok(text("application/json", super::OPENAPI.to_owned())),
        Endpoint::Metrics => return metrics(state, now_ms).await,
        Endpoint::Login => {
            let login: LoginBody = body(req).await?;
            let session = operators::login(&state.db, &login.name, &login.password, now_ms).await?;
            let mut resp = json(
                StatusCode::OK,
                &LoginReply {
                    operator: &session.operator.name,
                    role: session.operator.role,
                    token: session.token.expose(),
                    expires_at_ms: session.expires_at_ms,
                },
            );
            let cookie = sessions::cookie(&session.token, session.expires_at_ms - now_ms);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(SET_COOKIE, v);
            }
            tracing::info!(operator = %session.operator.name, "operator signed in");
            return Ok(resp);
        }
        _ => {}
    }
    let who = signed_in(state, &req, now_ms).await?;
    let db = &state.db;
    match m.endpoint {
        Endpoint::OpenApi | Endpoint::Metrics | Endpoint::Login => Err(ApiError::bad("handled above")),
        Endpoint::Logout => {
            if let Some((token, _)) = presented_token(req.headers()) {
                operators::logout(db, &token).await?;
            }
            let mut resp = json(StatusCode::OK, &serde_json::json!({ "signed_out": who.name }));
            if let Some(t) = sessions::SessionToken::parse(&"0".repeat(64)) {
                if let Ok(v) = HeaderValue::from_str(&sessions::cookie(&t, 0)) {
                    resp.headers_mut().insert(SET_COOKIE, v);
                }
            }
            Ok(resp)
        }
        // Anyone signed in may see their own session.
        Endpoint::Session => ok(&SessionReply::of(&who)),
        Endpoint::Devices => {
            who.act(Action::View, now)?;
            ok(&devices::page(db, &device_query(&m)?).await?)
        }
        Endpoint::Device => {
            who.act(Action::View, now)?;
            ok(&devices::detail(db, id_param(&m)?).await?)
        }
        // Retention (issue 10): a device's graph.
        Endpoint::Series => {
            who.act(Action::View, now)?;
            let (from, to) = devices::last_hours(query_num(&m, "hours", DEFAULT_SERIES_HOURS)?, now_ms)?;
            ok(&devices::series(db, id_param(&m)?, from, to).await?)
        }
        Endpoint::Incidents => {
            who.act(Action::View, now)?;
            ok(&devices::incidents(db, id_param(&m)?, query_num(&m, "limit", 20)?).await?)
        }
        Endpoint::QueueCommand => {
            let actor = who.act(Action::QueueCommand, now)?;
            let command: CommandBody = body(req).await?;
            let kind = match command.kind.as_str() {
                "report-now" => cpe_protocol::CommandKind::ReportNow,
                "diagnose" => cpe_protocol::CommandKind::Diagnose,
                other => return Err(ApiError::bad(format!("kind {other:?}: use report-now or diagnose"))),
            };
            let command_id =
                devices::push_command(db, id_param(&m)?, &kind, Some(&actor.operator), now_ms).await?;
            ok(&CommandReply { command_id })
        }
        Endpoint::Alerts => {
            who.act(Action::View, now)?;
            ok(&db
                .alerts(!query_bool(&m, "all")?, query_num(&m, "limit", 500)?)
                .await
                .map_err(|e| store_error(&e))?)
        }
        Endpoint::AcknowledgeAlert => {
            let actor = who.act(Action::AcknowledgeAlert, now)?;
            ok(&devices::acknowledge_alert(db, numeric_id(&m)?, &actor.operator, now_ms).await?)
        }
        Endpoint::OpenCase
        | Endpoint::Case
        | Endpoint::Hearing
        | Endpoint::Report
        | Endpoint::Recommend
        | Endpoint::Check
        | Endpoint::Orders
        | Endpoint::Order
        | Endpoint::VerifyOrder
        | Endpoint::Stop
        | Endpoint::Resume
        | Endpoint::DeviceCase => compliance(state, &who, &m, req, now).await,
    }
}

/// The §2.2 case flow and orders.
async fn compliance(
    state: &State,
    who: &SignedIn,
    m: &Matched,
    req: Request<Incoming>,
    now: OffsetDateTime,
) -> Result<Reply, ApiError> {
    let db = &state.db;
    match m.endpoint {
        Endpoint::OpenCase => {
            let actor = who.act(Action::CaseStep, now)?;
            let open: OpenCaseBody = body(req).await?;
            ok(&CaseReply { case_id: cases::open(db, &open.device, &open.fact, &actor).await? })
        }
        Endpoint::Case => {
            who.act(Action::View, now)?;
            ok(&cases::load(db, numeric_id(m)?).await?)
        }
        Endpoint::Hearing => {
            let actor = who.act(Action::CaseStep, now)?;
            let case_id = numeric_id(m)?;
            let hearing = match body::<HearingBody>(req).await? {
                HearingBody { summary: Some(s), skip_urgent_justification: None } => Hearing::Held(s),
                HearingBody { summary: None, skip_urgent_justification: Some(j) } => {
                    Hearing::SkippedUrgent(j)
                }
                _ => return Err(ApiError::bad("give either summary or skip_urgent_justification")),
            };
            cases::hear(db, case_id, hearing, &actor).await?;
            ok(&cases::load(db, case_id).await?)
        }
        Endpoint::Report => {
            let actor = who.act(Action::CaseStep, now)?;
            let case_id = numeric_id(m)?;
            let report: ReportBody = body(req).await?;
            cases::report(db, case_id, &report.to, &report.text, &actor).await?;
            ok(&cases::load(db, case_id).await?)
        }
        Endpoint::Recommend => {
            let actor = who.act(Action::SignOrder, now)?;
            let case_id = numeric_id(m)?;
            let r: RecommendBody = body(req).await?;
            let deadline = crate::pki::validity::parse_rfc3339(&r.deadline)
                .map_err(|e| ApiError::bad(format!("deadline {:?}: {e}", r.deadline)))?;
            let text = ReasonText { both: r.text, ja: r.text_ja, en: r.text_en };
            let (case, issued) =
                cases::recommend(db, case_id, deadline, &text, &signing(state)?, &actor).await?;
            ok(&serde_json::json!({ "case": case, "order": issued }))
        }
        Endpoint::Check => {
            let actor = who.act(Action::CaseStep, now)?;
            let case_id = numeric_id(m)?;
            let check: CheckBody = body(req).await?;
            cases::check(db, case_id, check.corrected, &check.note, &actor).await?;
            ok(&cases::load(db, case_id).await?)
        }
        Endpoint::DeviceCase => {
            who.act(Action::View, now)?;
            ok(&orders::device_case(db, id_param(m)?).await?)
        }
        Endpoint::Orders => {
            who.act(Action::View, now)?;
            let device = m.query.get("device").map(String::as_str);
            ok(&db.orders(device, query_num(m, "limit", 100)?).await.map_err(|e| store_error(&e))?)
        }
        Endpoint::Order => {
            who.act(Action::View, now)?;
            ok(&orders::load(db, numeric_id(m)?).await?)
        }
        Endpoint::VerifyOrder => {
            who.act(Action::View, now)?;
            ok(&reverify::verify_stored(db, numeric_id(m)?, &key_store(state)?).await?)
        }
        Endpoint::Stop => {
            let actor = who.act(Action::SignOrder, now)?;
            let o: OrderBody = body(req).await?;
            let signing = signing(state)?;
            ok(&orders::stop(db, &o.device, &o.reason(), o.justification.clone(), &signing, &actor).await?)
        }
        Endpoint::Resume => {
            let actor = who.act(Action::SignOrder, now)?;
            let o: OrderBody = body(req).await?;
            let signing = signing(state)?;
            let (case_id, order) =
                orders::resume(db, &o.device, &o.reason(), o.justification.clone(), &signing, &actor).await?;
            ok(&serde_json::json!({ "closed_case_id": case_id, "order": order }))
        }
        _ => Err(ApiError::bad("not a compliance endpoint")),
    }
}
