//! Storage of the console's operators and their sessions.
//!
//! An operator row holds the name (what the trail tables record as
//! `operator`), the role, the Argon2 hash of the password (PHC string) and
//! when it was created, last changed its password and was disabled. A
//! session row holds the SHA-256 of the session token, never the token.
//! [`Database::session_operator`] returns an operator only for a session that
//! has not expired, of an operator that is still enabled and has not changed
//! its password since the session was opened: disabling an operator or
//! changing a password ends every session at once, in one statement.
//!
//! What a role may do is decided above the store (`crate::operators`).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::{Database, DbError};

/// What an operator may do, from least to most: each role includes the
/// rights of the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also commands, diagnosis, alert acknowledgement, incidents.
    Operator,
    /// Also the §2.2 case flow and stop / resume orders.
    Compliance,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Self; 3] = [Self::Viewer, Self::Operator, Self::Compliance];

    /// `viewer`, `operator` or `compliance`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Compliance => "compliance",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = DbError;
    fn from_str(s: &str) -> Result<Self, DbError> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| DbError::OutOfRange { what: "operator role", value: s.to_owned() })
    }
}

/// A stored operator.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct OperatorRow {
    /// Login name, recorded in the trail tables.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Argon2 PHC string; never shown.
    #[serde(skip)]
    pub password_hash: String,
    /// Created at, Unix ms.
    pub created_at_ms: i64,
    /// Password last set at, Unix ms.
    pub password_changed_at_ms: i64,
    /// Disabled at, Unix ms; `None` while enabled.
    pub disabled_at_ms: Option<i64>,
}

impl fmt::Debug for OperatorRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorRow")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("created_at_ms", &self.created_at_ms)
            .field("password_changed_at_ms", &self.password_changed_at_ms)
            .field("disabled_at_ms", &self.disabled_at_ms)
            .finish_non_exhaustive()
    }
}

/// A session to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// SHA-256 of the token, lowercase hex.
    pub token_hash: String,
    /// The operator's name.
    pub operator: String,
    /// Opened at, Unix ms.
    pub created_at_ms: i64,
    /// Valid before, Unix ms.
    pub expires_at_ms: i64,
}

impl Database {
    /// Stores a new operator; `false` if the name is taken (nothing changed).
    pub async fn add_operator(
        &self,
        name: &str,
        role: Role,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        dispatch!(self, db => db.add_operator(name, role, hash, now_ms).await)
    }

    /// Every operator, by name.
    pub async fn operators(&self) -> Result<Vec<OperatorRow>, DbError> {
        dispatch!(self, db => db.operators().await)
    }

    /// One operator.
    pub async fn operator(&self, name: &str) -> Result<Option<OperatorRow>, DbError> {
        dispatch!(self, db => db.operator(name.to_owned()).await)
    }

    /// Disables an enabled operator (its sessions end); `false` if there is
    /// no enabled operator of that name.
    pub async fn disable_operator(&self, name: &str, now_ms: i64) -> Result<bool, DbError> {
        dispatch!(self, db => db.disable_operator(name.to_owned(), now_ms).await)
    }

    /// Replaces an operator's password hash (its sessions end); `false` if
    /// there is no operator of that name.
    pub async fn set_operator_password(
        &self,
        name: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        dispatch!(self, db => db.set_operator_password(name, hash, now_ms).await)
    }

    /// Stores a new session (and forgets the sessions that have expired).
    pub async fn open_session(&self, session: NewSession) -> Result<(), DbError> {
        dispatch!(self, db => db.open_session(session).await)
    }

    /// The operator of the session whose token hashes to `token_hash`, if
    /// it is valid at `now_ms` (see the module doc).
    pub async fn session_operator(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<OperatorRow>, DbError> {
        dispatch!(self, db => db.session_operator(token_hash.to_owned(), now_ms).await)
    }

    /// Ends a session; `false` if there was none.
    pub async fn close_session(&self, token_hash: &str) -> Result<bool, DbError> {
        dispatch!(self, db => db.close_session(token_hash.to_owned()).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_are_ordered() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().ok(), Some(r));
        }
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Compliance);
        assert!("admin".parse::<Role>().is_err());
    }

    #[test]
    fn debug_never_shows_the_hash() {
        let row = OperatorRow {
            name: "sato".into(),
            role: Role::Viewer,
            password_hash: "$argon2id$secret".into(),
            created_at_ms: 0,
            password_changed_at_ms: 0,
            disabled_at_ms: None,
        };
        assert!(!format!("{row:?}").contains("argon2id"));
        assert!(!serde_json::to_string(&row).unwrap_or_default().contains("argon2id"));
    }
}
