//! The web console's files, compiled into the binary: plain HTML, CSS and
//! ES modules from `web/` (no build step, no framework, nothing fetched
//! from a CDN or the internet), served on the operator listener next to
//! the API they call with `fetch` (same origin, the session cookie).
//!
//! Also owns the security headers every reply of the listener carries
//! ([`secure`]): a Content-Security-Policy that allows only this origin's
//! own scripts, styles and connections (no inline script, no `eval`, no
//! framing), `X-Frame-Options: DENY`, `nosniff`, no referrer, and no
//! caching of API answers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::Response;

/// The console's policy: only this origin, no inline script or style
/// attribute, no plugins, no framing, forms post only here.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Path it is served at.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Every file of the console (`/` is the page; the rest are its modules).
pub const ASSETS: &[Asset] = &[
    Asset { path: "/", content_type: HTML, body: include_str!("web/index.html") },
    Asset { path: "/console/console.css", content_type: CSS, body: include_str!("web/console.css") },
    Asset { path: "/console/icon.svg", content_type: SVG, body: include_str!("web/icon.svg") },
    Asset { path: "/console/app.js", content_type: JS, body: include_str!("web/app.js") },
    Asset { path: "/console/api.js", content_type: JS, body: include_str!("web/api.js") },
    Asset { path: "/console/dom.js", content_type: JS, body: include_str!("web/dom.js") },
    Asset { path: "/console/i18n.js", content_type: JS, body: include_str!("web/i18n.js") },
    Asset { path: "/console/graph.js", content_type: JS, body: include_str!("web/graph.js") },
    Asset { path: "/console/login.js", content_type: JS, body: include_str!("web/login.js") },
    Asset { path: "/console/fleet.js", content_type: JS, body: include_str!("web/fleet.js") },
    Asset { path: "/console/device.js", content_type: JS, body: include_str!("web/device.js") },
    Asset { path: "/console/alerts.js", content_type: JS, body: include_str!("web/alerts.js") },
    Asset { path: "/console/case.js", content_type: JS, body: include_str!("web/case.js") },
];

/// The file served at `path` (without query), for `GET` or `HEAD`.
pub fn asset(method: &str, path: &str) -> Option<&'static Asset> {
    if method != "GET" && method != "HEAD" {
        return None;
    }
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

/// The reply carrying `asset` (revalidated on every load: a new binary
/// serves new files at the same paths).
pub fn reply(asset: &Asset) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(asset.body.as_bytes())));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Adds the security headers to a reply of the operator listener; API
/// answers (anything without its own `Cache-Control`) are never cached.
pub fn secure(headers: &mut HeaderMap) {
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        for a in ASSETS.iter().filter(|a| a.content_type == JS || a.content_type == HTML) {
            for import in imports(a.body) {
                let served = format!("/console/{}", import.trim_start_matches("./"));
                assert!(
                    ASSETS.iter().any(|b| b.path == served),
                    "{} imports {import}, which is not in ASSETS",
                    a.path
                );
            }
        }
    }

    /// `from './x.js'` and `src="/console/x.js"` targets.
    fn imports(text: &str) -> Vec<&str> {
        let mut found = Vec::new();
        for marker in ["from './", "import('./", "src=\"/console/", "href=\"/console/"] {
            let mut rest = text;
            while let Some(at) = rest.find(marker) {
                let after = &rest[at + marker.len()..];
                let end = after.find(['\'', '"']).unwrap_or(after.len());
                found.push(&after[..end]);
                rest = &after[end..];
            }
        }
        found
    }

    #[test]
    fn no_inline_script_or_style_attribute_anywhere() {
        for a in ASSETS {
            if a.content_type == HTML {
                assert!(!a.body.contains("<script>"), "{}: inline script", a.path);
                assert!(!a.body.contains(" style=\""), "{}: inline style", a.path);
                let handler = a.body.match_indices(" on").any(|(at, _)| {
                    let name: String =
                        a.body[at + 3..].chars().take_while(char::is_ascii_lowercase).collect();
                    !name.is_empty() && a.body[at + 3 + name.len()..].starts_with('=')
                });
                assert!(!handler, "{}: inline event handler", a.path);
            }
            assert!(!a.body.contains("innerHTML"), "{}: innerHTML (use dom.js)", a.path);
            assert!(!a.body.contains("eval("), "{}: eval", a.path);
        }
    }

    #[test]
    fn assets_are_found_by_path_and_method() {
        assert_eq!(asset("GET", "/").map(|a| a.content_type), Some(HTML));
        assert_eq!(asset("GET", "/index.html").map(|a| a.path), Some("/"));
        assert_eq!(asset("HEAD", "/console/app.js").map(|a| a.content_type), Some(JS));
        assert!(asset("POST", "/").is_none());
        assert!(asset("GET", "/console/../api/v1/devices").is_none());
        assert!(asset("GET", "/api/v1/devices").is_none());
    }

    #[test]
    fn security_headers_are_set_and_api_answers_are_not_cached() {
        let mut headers = HeaderMap::new();
        secure(&mut headers);
        assert_eq!(headers[X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        let csp = headers[CONTENT_SECURITY_POLICY].to_str().unwrap_or_default();
        assert!(csp.contains("script-src 'self';") && !csp.contains("unsafe"), "{csp}");
        let mut page = reply(&ASSETS[0]);
        secure(page.headers_mut());
        assert_eq!(page.headers()[CACHE_CONTROL], "no-cache");
    }
}
