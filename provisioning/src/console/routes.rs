//! The operator API's route table and request parsing: which endpoint a
//! method and path name, path parameters (percent-decoded: a device id
//! `1312345678/cpe-01` travels as `1312345678%2Fcpe-01`) and query
//! parameters. Pure; fed untrusted request lines (see `fuzz/`).

use std::collections::HashMap;

use percent_encoding::percent_decode_str;

/// Every endpoint of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// POST /api/v1/session: sign in.
    Login,
    /// DELETE /api/v1/session: sign out.
    Logout,
    /// GET /api/v1/devices: a page of the fleet.
    Devices,
    /// GET /api/v1/devices/{id}: one device with its recent heartbeats.
    Device,
    /// POST /api/v1/devices/{id}/commands: queue a command (heartbeat, diagnosis).
    QueueCommand,
    /// GET /api/v1/devices/{id}/incidents: diagnosis results.
    Incidents,
    /// GET /api/v1/alerts.
    Alerts,
    /// POST /api/v1/alerts/{id}/acknowledge.
    AcknowledgeAlert,
    /// POST /api/v1/cases: ① open a case.
    OpenCase,
    /// GET /api/v1/cases/{id}.
    Case,
    /// POST /api/v1/cases/{id}/hearing: ②.
    Hearing,
    /// POST /api/v1/cases/{id}/report: ③.
    Report,
    /// POST /api/v1/cases/{id}/recommend: ④.
    Recommend,
    /// POST /api/v1/cases/{id}/check: ⑤.
    Check,
    /// GET /api/v1/orders.
    Orders,
    /// GET /api/v1/orders/{id}.
    Order,
    /// GET /api/v1/orders/{id}/verify: audit re-verification.
    VerifyOrder,
    /// POST /api/v1/orders/stop: ⑥.
    Stop,
    /// POST /api/v1/orders/resume.
    Resume,
    /// GET /api/v1/devices/{id}/series?hours=N: the device's graph (retention, issue 10).
    Series,
    /// GET /api/v1/openapi.json.
    OpenApi,
    /// GET /metrics: Prometheus text exposition.
    Metrics,
    /// GET /api/v1/session: who is signed in and what their role allows (web console).
    Session,
    /// GET /api/v1/devices/{id}/case: the device's latest §2.2 case (web console).
    DeviceCase,
}

/// The route table: method, path pattern (`{name}` is one segment), endpoint.
pub const ROUTES: &[(&str, &str, Endpoint)] = &[
    ("POST", "/api/v1/session", Endpoint::Login),
    ("DELETE", "/api/v1/session", Endpoint::Logout),
    ("GET", "/api/v1/devices", Endpoint::Devices),
    ("GET", "/api/v1/devices/{id}", Endpoint::Device),
    ("POST", "/api/v1/devices/{id}/commands", Endpoint::QueueCommand),
    ("GET", "/api/v1/devices/{id}/incidents", Endpoint::Incidents),
    ("GET", "/api/v1/alerts", Endpoint::Alerts),
    ("POST", "/api/v1/alerts/{id}/acknowledge", Endpoint::AcknowledgeAlert),
    ("POST", "/api/v1/cases", Endpoint::OpenCase),
    ("GET", "/api/v1/cases/{id}", Endpoint::Case),
    ("POST", "/api/v1/cases/{id}/hearing", Endpoint::Hearing),
    ("POST", "/api/v1/cases/{id}/report", Endpoint::Report),
    ("POST", "/api/v1/cases/{id}/recommend", Endpoint::Recommend),
    ("POST", "/api/v1/cases/{id}/check", Endpoint::Check),
    ("GET", "/api/v1/orders", Endpoint::Orders),
    ("POST", "/api/v1/orders/stop", Endpoint::Stop),
    ("POST", "/api/v1/orders/resume", Endpoint::Resume),
    ("GET", "/api/v1/orders/{id}", Endpoint::Order),
    ("GET", "/api/v1/orders/{id}/verify", Endpoint::VerifyOrder),
    // Retention (issue 10): graphs read at the resolution retention keeps.
    ("GET", "/api/v1/devices/{id}/series", Endpoint::Series),
    ("GET", "/api/v1/openapi.json", Endpoint::OpenApi),
    ("GET", "/metrics", Endpoint::Metrics),
    // Web console: what the pages need beyond the CLI's views.
    ("GET", "/api/v1/session", Endpoint::Session),
    ("GET", "/api/v1/devices/{id}/case", Endpoint::DeviceCase),
];

/// A request matched to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// The `{id}` segment, decoded, if the pattern has one.
    pub id: Option<String>,
    /// Query parameters, decoded (the last of a repeated name wins).
    pub query: HashMap<String, String>,
}

/// Why a request names no endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// No pattern has this path.
    UnknownPath,
    /// The path exists with other methods (for `Allow`).
    Method(Vec<&'static str>),
    /// A path segment is not valid percent-encoded UTF-8.
    BadEncoding,
}

/// The endpoint for `method` and `path_and_query`.
pub fn route(method: &str, path_and_query: &str) -> Result<Matched, NoRoute> {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let segments: Vec<&str> = path.split('/').collect();
    let mut allowed = Vec::new();
    for &(m, pattern, endpoint) in ROUTES {
        let Some(id) = match_pattern(pattern, &segments)? else { continue };
        if m == method {
            return Ok(Matched { endpoint, id, query: parse_query(query) });
        }
        allowed.push(m);
    }
    if allowed.is_empty() {
        Err(NoRoute::UnknownPath)
    } else {
        Err(NoRoute::Method(allowed))
    }
}

/// `Some(id)` if the segments fit the pattern (`Some(None)` without `{id}`).
#[allow(clippy::option_option)]
fn match_pattern(pattern: &str, segments: &[&str]) -> Result<Option<Option<String>>, NoRoute> {
    let parts: Vec<&str> = pattern.split('/').collect();
    if parts.len() != segments.len() {
        return Ok(None);
    }
    let mut id = None;
    for (part, segment) in parts.iter().zip(segments) {
        if part.starts_with('{') {
            let decoded = percent_decode_str(segment).decode_utf8().map_err(|_| NoRoute::BadEncoding)?;
            if decoded.is_empty() {
                return Ok(None);
            }
            id = Some(decoded.into_owned());
        } else if part != segment {
            return Ok(None);
        }
    }
    Ok(Some(id))
}

fn parse_query(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_travel_percent_encoded() {
        let m = route("GET", "/api/v1/devices/1312345678%2Fcpe-01").unwrap();
        assert_eq!((m.endpoint, m.id.as_deref()), (Endpoint::Device, Some("1312345678/cpe-01")));
        let m = route("POST", "/api/v1/devices/1312345678%2Fcpe-01/commands").unwrap();
        assert_eq!(m.endpoint, Endpoint::QueueCommand);
        assert_eq!(route("GET", "/api/v1/devices/1312345678/cpe-01"), Err(NoRoute::UnknownPath));
        assert_eq!(route("GET", "/api/v1/devices/%FF"), Err(NoRoute::BadEncoding));
    }

    #[test]
    fn queries_methods_and_fixed_paths() {
        let m = route("GET", "/api/v1/devices?search=1312&filter=down&limit=50&search=13%2012").unwrap();
        assert_eq!(m.query.get("search").map(String::as_str), Some("13 12"));
        assert_eq!(m.query.get("limit").map(String::as_str), Some("50"));
        assert_eq!(route("POST", "/api/v1/orders/stop").unwrap().endpoint, Endpoint::Stop);
        assert_eq!(route("GET", "/api/v1/orders/7").unwrap().id.as_deref(), Some("7"));
        assert_eq!(route("PUT", "/api/v1/session"), Err(NoRoute::Method(vec!["POST", "DELETE", "GET"])));
        assert_eq!(route("GET", "/api/v1/nothing"), Err(NoRoute::UnknownPath));
        assert_eq!(route("GET", "/api/v1/devices/"), Err(NoRoute::UnknownPath));
    }
}
