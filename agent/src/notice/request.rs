//! The notice page's request reader: a pure function from the bytes of one
//! request head to what the client asks ([`Ask`]), fuzzed
//! (`fuzz/fuzz_targets/notice_request.rs`). Every path shows the page
//! (staff type whatever the poster says, and during a suspension any web
//! address is redirected here); only `POST /self-check` changes anything
//! and `GET /self-check/status` answers the progress script.
//!
//! Headers are read strictly: a line without a colon, a header that is not
//! UTF-8, a bad `Content-Length` or any `Transfer-Encoding` on a POST is a
//! malformed request, never a guess.

/// The path of the self-check button's form (POST) and its status (GET).
pub const SELF_CHECK_PATH: &str = "/self-check";

/// The path the progress script polls.
pub const STATUS_PATH: &str = "/self-check/status";

/// Largest POST body accepted (the form sends `run=1`).
pub const MAX_BODY: usize = 1024;

/// What a request head asks of the page (see [`parse_request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// `GET` (or `HEAD`: the same answer without the body) of any path but
    /// [`STATUS_PATH`].
    Page {
        /// `HEAD`.
        head_only: bool,
    },
    /// `GET` [`STATUS_PATH`]: the self-check's progress as JSON.
    Status,
    /// `POST` [`SELF_CHECK_PATH`]: run the self-check.
    StartSelfCheck {
        /// Whether `Origin` (or, without it, `Referer`) names the host the
        /// request was sent to ([`same_origin`]).
        same_origin: bool,
        /// The body's length (`Content-Length`), at most [`MAX_BODY`].
        body_len: usize,
    },
    /// A POST body larger than [`MAX_BODY`].
    BodyTooLarge,
    /// Any other method, or POST to another path.
    WrongMethod,
    /// The head did not end within the size bound.
    TooLarge,
    /// Not an HTTP/1.x request.
    Malformed,
}

/// The headers the page looks at.
#[derive(Debug, Default)]
struct Headers<'a> {
    host: Option<&'a str>,
    origin: Option<&'a str>,
    referer: Option<&'a str>,
    content_length: Option<usize>,
    chunked: bool,
}

fn read_headers<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Option<Headers<'a>> {
    let mut headers = Headers::default();
    for line in lines {
        let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "host" if headers.host.is_none() => headers.host = Some(value),
            "host" => return None,
            "origin" => headers.origin = Some(value),
            "referer" => headers.referer = Some(value),
            "content-length" => {
                let length = value.parse().ok()?;
                if headers.content_length.is_some_and(|l| l != length) {
                    return None;
                }
                headers.content_length = Some(length);
            }
            "transfer-encoding" => headers.chunked = true,
            _ => {}
        }
    }
    Some(headers)
}

/// Reads a complete request head (pure).
pub fn parse_request(head: &[u8]) -> Ask {
    let mut lines = head.split(|b| *b == b'\n');
    let line = lines.next().unwrap_or_default();
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
    let Some(headers) = read_headers(lines) else { return Ask::Malformed };
    let path = target.split(['?', '#']).next().unwrap_or_default();
    match method {
        "GET" if path == STATUS_PATH => Ask::Status,
        "GET" => Ask::Page { head_only: false },
        "HEAD" => Ask::Page { head_only: true },
        "POST" if path == SELF_CHECK_PATH => {
            if headers.chunked {
                return Ask::Malformed;
            }
            let body_len = headers.content_length.unwrap_or(0);
            if body_len > MAX_BODY {
                return Ask::BodyTooLarge;
            }
            Ask::StartSelfCheck {
                same_origin: same_origin(headers.host, headers.origin, headers.referer),
                body_len,
            }
        }
        _ => Ask::WrongMethod,
    }
}

/// `host[:port]` of an `http://` URL, lower-cased, without a default `:80`.
fn http_authority(url: &str) -> Option<String> {
    let scheme = url.get(..7)?;
    if !scheme.eq_ignore_ascii_case("http://") {
        return None;
    }
    let rest = &url[7..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    normal_host(authority)
}

/// A `Host` value lower-cased, without a default `:80`; `None` when empty
/// or carrying user information.
fn normal_host(host: &str) -> Option<String> {
    if host.is_empty() || host.contains('@') || host.contains(char::is_whitespace) {
        return None;
    }
    let host = host.to_ascii_lowercase();
    Some(host.strip_suffix(":80").map(str::to_owned).unwrap_or(host))
}

/// The same-origin rule of the self-check button: the request must name
/// its host (`Host`), and its `Origin` must be `http://` that host; a
/// browser that sends no `Origin` must send a `Referer` on that host. An
/// opaque origin (`null`), another host or port, `https://` (the page is
/// plain HTTP) or neither header is refused, so a page elsewhere cannot make
/// a clinic browser press the button.
pub fn same_origin(host: Option<&str>, origin: Option<&str>, referer: Option<&str>) -> bool {
    let Some(host) = host.and_then(normal_host) else { return false };
    match (origin, referer) {
        (Some(origin), _) => http_authority(origin).is_some_and(|a| a == host),
        (None, Some(referer)) => http_authority(referer).is_some_and(|a| a == host),
        (None, None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &str) -> Ask {
        parse_request(format!("POST /self-check HTTP/1.1\r\n{headers}\r\n").as_bytes())
    }

    #[test]
    fn request_lines_are_read_strictly() {
        let page = Ask::Page { head_only: false };
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: cpe\r\n\r\n"), page);
        assert_eq!(parse_request(b"GET /anything?x=1 HTTP/1.0\n\n"), page);
        assert_eq!(
            parse_request(b"GET /self-check HTTP/1.1\r\n\r\n"),
            page,
            "the form's path shows the page"
        );
        assert_eq!(parse_request(b"GET /self-check/status?t=1 HTTP/1.1\r\n\r\n"), Ask::Status);
        assert_eq!(parse_request(b"HEAD / HTTP/1.1\r\n\r\n"), Ask::Page { head_only: true });
        assert_eq!(parse_request(b"POST / HTTP/1.1\r\n\r\n"), Ask::WrongMethod);
        assert_eq!(parse_request(b"PUT /self-check HTTP/1.1\r\n\r\n"), Ask::WrongMethod);
        for bad in [
            &b""[..],
            b"GET\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET  / HTTP/1.1\r\n",
            b"\xff\xfe",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n",
        ] {
            assert_eq!(parse_request(bad), Ask::Malformed, "{bad:?}");
        }
    }

    #[test]
    fn self_check_posts_carry_their_origin_and_a_bounded_body() {
        let ok = |body_len| Ask::StartSelfCheck { same_origin: true, body_len };
        assert_eq!(post("Host: 192.168.1.1\r\nOrigin: http://192.168.1.1\r\nContent-Length: 5\r\n"), ok(5));
        assert_eq!(post("host: CPE:80\r\nreferer: http://cpe/?x\r\n"), ok(0));
        assert_eq!(
            post("Host: cpe\r\nOrigin: http://evil.example\r\nContent-Length: 5\r\n"),
            Ask::StartSelfCheck { same_origin: false, body_len: 5 }
        );
        assert_eq!(post("Host: cpe\r\nContent-Length: 1025\r\n"), Ask::BodyTooLarge);
        assert_eq!(post("Host: cpe\r\nContent-Length: x\r\n"), Ask::Malformed);
        assert_eq!(post("Host: cpe\r\nContent-Length: 1\r\nContent-Length: 2\r\n"), Ask::Malformed);
        assert_eq!(post("Host: cpe\r\nTransfer-Encoding: chunked\r\n"), Ask::Malformed);
    }

    #[test]
    fn same_origin_needs_the_pages_own_host() {
        let h = Some("192.168.1.1:8080");
        assert!(same_origin(h, Some("http://192.168.1.1:8080"), None));
        assert!(same_origin(h, None, Some("http://192.168.1.1:8080/")));
        assert!(same_origin(Some("Example.COM"), Some("HTTP://example.com:80"), None), "case, default port");
        // A redirected web address (suspension DNAT) is its own origin.
        assert!(same_origin(
            Some("news.example"),
            Some("http://news.example"),
            Some("http://news.example/a")
        ));
        for (host, origin, referer) in [
            (h, None, None),
            (None, Some("http://192.168.1.1:8080"), None),
            (h, Some("null"), Some("http://192.168.1.1:8080/")),
            (h, Some("http://192.168.1.1"), None),
            (h, Some("https://192.168.1.1:8080"), None),
            (h, Some("http://192.168.1.1:8080.evil.example"), None),
            (h, Some("http://evil.example"), Some("http://192.168.1.1:8080/")),
            (h, None, Some("http://192.168.1.1:8080@evil.example/")),
            (h, None, Some("/relative")),
            (Some(""), Some("http://"), None),
        ] {
            assert!(!same_origin(host, origin, referer), "{host:?} {origin:?} {referer:?}");
        }
    }
}
