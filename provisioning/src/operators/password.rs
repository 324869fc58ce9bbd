//! Operator passwords: Argon2id hashes in the PHC string format.
//!
//! Argon2id with the crate's default parameters (19 MiB, 2 passes, 1 lane:
//! the OWASP recommendation), a 16-byte salt from the system's RNG (ring),
//! so that a stolen database costs an attacker memory-hard work per guess.
//! The PHC string carries its parameters, so hashes made with other
//! parameters later still verify.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ring::rand::{SecureRandom, SystemRandom};

use super::OperatorError;

/// Shortest password accepted (NIST SP 800-63B asks for at least 8; an
/// operator who can cut a clinic off gets more).
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Longest password accepted (bounds the work of hashing bad input).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Whether `password` is acceptable as a new password.
pub fn check_new(password: &str) -> Result<(), OperatorError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(OperatorError::WeakPassword { chars });
    }
    Ok(())
}

/// The PHC string of `password` with a fresh salt.
pub fn hash(password: &str) -> Result<String, OperatorError> {
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).map_err(|_| OperatorError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| OperatorError::Hashing(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| OperatorError::Hashing(e.to_string()))
}

/// Whether `password` matches the PHC string `phc` (an unreadable stored
/// hash matches nothing).
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterY", &a));
        assert!(!verify("correct horse battery", "not a phc string"));
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert!(matches!(check_new("elevenchars"), Err(OperatorError::WeakPassword { chars: 11 })));
        assert!(check_new("twelve chars").is_ok());
        assert!(check_new("パスワードは十二文字以上です").is_ok());
        assert!(check_new(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }
}
