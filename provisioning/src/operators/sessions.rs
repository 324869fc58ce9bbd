//! Session tokens of the operator console and API.
//!
//! A token is 32 bytes from the system's RNG, written as 64 lowercase hex
//! digits. The console keeps it in a cookie that scripts cannot read and
//! that is sent only over TLS and only to this site ([`cookie`]); API
//! clients send the same token as `Authorization: Bearer`. The store keeps
//! only its SHA-256 ([`token_hash`]): tokens are random and long, so a fast
//! hash is enough, and a copy of the database opens no session.

use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};

use super::OperatorError;

/// Name of the console's session cookie.
pub const COOKIE_NAME: &str = "cpe_session";

/// How long a session lasts from login (one working shift and a half).
pub const SESSION_LIFETIME_MS: i64 = 12 * 60 * 60 * 1000;

/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// A session token (the secret the operator's browser or client holds).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(***)")
    }
}

impl SessionToken {
    /// A new random token.
    pub fn generate() -> Result<Self, OperatorError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        SystemRandom::new().fill(&mut bytes).map_err(|_| OperatorError::Random)?;
        Ok(Self(hex(&bytes)))
    }

    /// A token as a client presented it; `None` unless it has the shape of
    /// one (so that nothing else is hashed and looked up).
    pub fn parse(text: &str) -> Option<Self> {
        let shaped =
            text.len() == TOKEN_BYTES * 2 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        shaped.then(|| Self(text.to_owned()))
    }

    /// The token's text, to hand to the client once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// What the store keeps of a token: its SHA-256, lowercase hex.
pub fn token_hash(token: &SessionToken) -> String {
    hex(digest(&SHA256, token.0.as_bytes()).as_ref())
}

/// The `Set-Cookie` value that gives the console its session.
pub fn cookie(token: &SessionToken, max_age_ms: i64) -> String {
    format!(
        "{COOKIE_NAME}={}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        token.0,
        max_age_ms.max(0) / 1000
    )
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_parse_back() {
        let a = SessionToken::generate().unwrap();
        let b = SessionToken::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(SessionToken::parse(a.expose()), Some(a.clone()));
        assert_ne!(token_hash(&a), token_hash(&b));
        assert_eq!(token_hash(&a).len(), 64);
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn only_token_shaped_text_parses() {
        assert!(SessionToken::parse("").is_none());
        assert!(SessionToken::parse(&"A".repeat(64)).is_none());
        assert!(SessionToken::parse(&"a".repeat(63)).is_none());
        assert!(SessionToken::parse(&"é".repeat(32)).is_none());
        assert!(SessionToken::parse(&"0".repeat(64)).is_some());
    }

    #[test]
    fn cookie_is_http_only_secure_and_strict() {
        let t = SessionToken::parse(&"0".repeat(64)).unwrap();
        let c = cookie(&t, SESSION_LIFETIME_MS);
        assert!(c.starts_with(&format!("{COOKIE_NAME}={}", "0".repeat(64))), "{c}");
        for attribute in ["; HttpOnly", "; Secure", "; SameSite=Strict", "; Path=/", "; Max-Age=43200"] {
            assert!(c.contains(attribute), "{c} lacks {attribute}");
        }
    }
}
