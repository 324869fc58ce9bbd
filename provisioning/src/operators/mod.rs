//! Operators of the carrier console and API: identities, roles, passwords
//! and sessions.
//!
//! **Why passwords and server-side sessions** (and not operator client
//! certificates): the console is used from an operations centre's ordinary
//! browsers, where installing and renewing a client certificate per person
//! is a burden that ends in shared certificates; a password hashed with
//! Argon2id ([`password`]) plus a random session token ([`sessions`]) that
//! the server can revoke at once (disable, password change, logout) gives
//! per-person accountability with nothing to install. API clients use the
//! same token as `Authorization: Bearer`. Operators are a table of their
//! own: no institution or device certificate is ever an operator, and the
//! operator listener does not ask for client certificates at all.
//!
//! Every change an operator makes goes through [`SignedIn::act`], which
//! checks the role ([`roles`]) and yields the [`Actor`] that the use cases
//! record in the trail tables — the same `operator` column the CLI's
//! `--operator` fills — so the name recorded is always the one signed in.
//!
//! The use cases here (`add`, `list`, `disable`, `set_password`, `login`,
//! `authenticate`, `logout`) take the time from the caller.

pub mod password;
pub mod roles;
pub mod sessions;

use std::sync::OnceLock;

use serde::Serialize;
use time::OffsetDateTime;

use crate::compliance::orders::Actor;
use crate::store::{Database, DbError, NewSession, OperatorRow, Role};
pub use roles::Action;
pub use sessions::SessionToken;

/// Longest operator name.
pub const MAX_NAME_CHARS: usize = 64;

/// Why an operator use case did not happen (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// A name that cannot be an operator's.
    #[error(
        "operator name {0:?} is not usable: use 1 to {MAX_NAME_CHARS} letters, digits, '.', '_', '-' or '@' \
         (for example the person's login name)"
    )]
    BadName(String),
    /// The name is taken.
    #[error("an operator named {0:?} exists already; see `cpe-provision operator list`")]
    Exists(String),
    /// No such operator.
    #[error("no operator named {0:?}; see `cpe-provision operator list`")]
    Unknown(String),
    /// The operator is disabled already.
    #[error("operator {0:?} is disabled already")]
    AlreadyDisabled(String),
    /// A new password that is too short or too long.
    #[error(
        "the password has {chars} characters: use at least {min} and at most {max} bytes \
         (パスワードは{min}文字以上にしてください)",
        min = password::MIN_PASSWORD_CHARS,
        max = password::MAX_PASSWORD_BYTES
    )]
    WeakPassword {
        /// Characters given.
        chars: usize,
    },
    /// Wrong name or password, or a disabled operator (not told apart, so
    /// that names cannot be probed).
    #[error("wrong operator name or password (名前またはパスワードが違います)")]
    BadCredentials,
    /// No valid session: none given, expired, ended, or the operator was
    /// disabled or changed its password since.
    #[error("not signed in, or the session has ended: sign in again (ログインしてください)")]
    Unauthenticated,
    /// The role does not allow the action.
    #[error(
        "operator {name:?} has role {role}, which may not {what}; it needs role {needed} \
         (この操作の権限がありません)",
        what = action.describe(),
        needed = action.least_role()
    )]
    Forbidden {
        /// Who asked.
        name: String,
        /// Their role.
        role: Role,
        /// What they asked.
        action: Action,
    },
    /// The system's random number generator failed.
    #[error("the system random number generator failed; check the host's entropy source")]
    Random,
    /// Hashing a password failed.
    #[error("could not hash the password: {0}")]
    Hashing(String),
    /// The store.
    #[error(transparent)]
    Store(#[from] DbError),
}

/// An operator as listed (no password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorInfo {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Created at, Unix ms.
    pub created_at_ms: i64,
    /// Password last set at, Unix ms.
    pub password_changed_at_ms: i64,
    /// Disabled at, Unix ms.
    pub disabled_at_ms: Option<i64>,
}

impl From<OperatorRow> for OperatorInfo {
    fn from(r: OperatorRow) -> Self {
        Self {
            name: r.name,
            role: r.role,
            created_at_ms: r.created_at_ms,
            password_changed_at_ms: r.password_changed_at_ms,
            disabled_at_ms: r.disabled_at_ms,
        }
    }
}

/// An operator with a valid session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
}

impl SignedIn {
    /// Whether the role allows `action`.
    pub fn may(&self, action: Action) -> bool {
        roles::allows(self.role, action)
    }

    /// The [`Actor`] that records this operator's `action` at `now`, if the
    /// role allows it.
    pub fn act(&self, action: Action, now: OffsetDateTime) -> Result<Actor, OperatorError> {
        if self.may(action) {
            Ok(Actor { operator: self.name.clone(), now })
        } else {
            Err(OperatorError::Forbidden { name: self.name.clone(), role: self.role, action })
        }
    }
}

/// A session just opened: the token goes to the client once.
#[derive(Debug, Clone)]
pub struct Session {
    /// The secret.
    pub token: SessionToken,
    /// Who.
    pub operator: SignedIn,
    /// Valid before, Unix ms.
    pub expires_at_ms: i64,
}

/// Whether `name` can be an operator's name.
pub fn check_name(name: &str) -> Result<(), OperatorError> {
    let ok = (1..=MAX_NAME_CHARS).contains(&name.chars().count())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(OperatorError::BadName(name.to_owned()))
    }
}

/// Adds an operator with `role` and `password`.
pub async fn add(
    db: &Database,
    name: &str,
    role: Role,
    password: &str,
    now_ms: i64,
) -> Result<(), OperatorError> {
    check_name(name)?;
    password::check_new(password)?;
    let hash = password::hash(password)?;
    if db.add_operator(name, role, &hash, now_ms).await? {
        Ok(())
    } else {
        Err(OperatorError::Exists(name.to_owned()))
    }
}

/// Every operator, by name.
pub async fn list(db: &Database) -> Result<Vec<OperatorInfo>, OperatorError> {
    Ok(db.operators().await?.into_iter().map(OperatorInfo::from).collect())
}

/// Disables an operator: it can no longer sign in and its sessions end.
pub async fn disable(db: &Database, name: &str, now_ms: i64) -> Result<(), OperatorError> {
    if db.disable_operator(name, now_ms).await? {
        return Ok(());
    }
    match db.operator(name).await? {
        Some(_) => Err(OperatorError::AlreadyDisabled(name.to_owned())),
        None => Err(OperatorError::Unknown(name.to_owned())),
    }
}

/// Sets a new password; the operator's sessions end.
pub async fn set_password(
    db: &Database,
    name: &str,
    password: &str,
    now_ms: i64,
) -> Result<(), OperatorError> {
    password::check_new(password)?;
    let hash = password::hash(password)?;
    if db.set_operator_password(name, &hash, now_ms).await? {
        Ok(())
    } else {
        Err(OperatorError::Unknown(name.to_owned()))
    }
}

/// A hash that matches no password, verified when the name is unknown so
/// that a wrong name takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| password::hash("decoy password, never valid").unwrap_or_default())
}

/// Signs in: checks the password of an enabled operator and opens a session
/// of [`sessions::SESSION_LIFETIME_MS`].
pub async fn login(db: &Database, name: &str, password: &str, now_ms: i64) -> Result<Session, OperatorError> {
    let row = if check_name(name).is_ok() { db.operator(name).await? } else { None };
    let Some(row) = row else {
        let _ = password::verify(password, decoy_hash());
        return Err(OperatorError::BadCredentials);
    };
    if !password::verify(password, &row.password_hash) || row.disabled_at_ms.is_some() {
        return Err(OperatorError::BadCredentials);
    }
    let token = SessionToken::generate()?;
    let expires_at_ms = now_ms.saturating_add(sessions::SESSION_LIFETIME_MS);
    db.open_session(NewSession {
        token_hash: sessions::token_hash(&token),
        operator: row.name.clone(),
        created_at_ms: now_ms,
        expires_at_ms,
    })
    .await?;
    Ok(Session { token, operator: SignedIn { name: row.name, role: row.role }, expires_at_ms })
}

/// The operator of a session token as a client presented it (cookie or
/// bearer), if the session is valid at `now_ms`.
pub async fn authenticate(db: &Database, presented: &str, now_ms: i64) -> Result<SignedIn, OperatorError> {
    let token = SessionToken::parse(presented).ok_or(OperatorError::Unauthenticated)?;
    let row = db.session_operator(&sessions::token_hash(&token), now_ms).await?;
    row.map(|r| SignedIn { name: r.name, role: r.role }).ok_or(OperatorError::Unauthenticated)
}

/// Ends a session (signing out); ending an unknown or malformed one is not an error.
pub async fn logout(db: &Database, presented: &str) -> Result<(), OperatorError> {
    if let Some(token) = SessionToken::parse(presented) {
        db.close_session(&sessions::token_hash(&token)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_login_names() {
        for good in ["sato", "t.suzuki", "noc-01", "ops_a@carrier"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "佐藤", "x;drop", &"a".repeat(MAX_NAME_CHARS + 1)] {
            assert!(matches!(check_name(bad), Err(OperatorError::BadName(_))), "{bad}");
        }
    }

    #[test]
    fn acting_needs_the_role_and_records_the_signed_in_name() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let viewer = SignedIn { name: "yamada".into(), role: Role::Viewer };
        let err = viewer.act(Action::SignOrder, now).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("yamada") && err.contains("compliance"), "{err}");
        let officer = SignedIn { name: "kato".into(), role: Role::Compliance };
        assert_eq!(officer.act(Action::SignOrder, now).ok().map(|a| a.operator), Some("kato".to_owned()));
    }
}
