//! Passwords: argon2id hashes with the OWASP parameters (19 MiB, 2 passes, 1 lane), verified
//! with the parameters stored in each hash and upgraded at the next login when they are weaker
//! than today's; the minimum policy a new password must meet; and random passwords for the
//! first administrator and the demo.
//!
//! Invariant: a password never leaves this module except as a PHC hash string; the policy's
//! messages name the rule, never the password.

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP Password Storage Cheat Sheet, argon2id: m = 19 MiB, t = 2, p = 1.
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Passes.
pub const ITERATIONS: u32 = 2;
/// Lanes.
pub const LANES: u32 = 1;

/// Shortest password accepted.
pub const MIN_LENGTH: usize = 10;
/// Longest password accepted (argon2 takes any length; this bounds the work per request).
pub const MAX_LENGTH: usize = 256;

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// What went wrong with a hash.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The stored hash cannot be read.
    #[error("the stored password hash is unreadable")]
    Unreadable,
    /// argon2 failed.
    #[error("password hashing failed: {0}")]
    Argon2(String),
}

/// Hashes a password with a fresh salt; the PHC string holds the algorithm and parameters.
pub fn hash(password: &str) -> Result<String, HashError> {
    hasher()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

/// The outcome of checking a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Wrong password.
    No,
    /// Right password; the hash is current.
    Yes,
    /// Right password; store this new hash (the old one had weaker parameters).
    YesRehash(String),
}

/// Checks `password` against a stored PHC hash, with the parameters stored in it.
pub fn verify(password: &str, stored: &str) -> Result<Verified, HashError> {
    let parsed = PasswordHash::new(stored).map_err(|_| HashError::Unreadable)?;
    // The parameters come from the hash itself, so an old hash still verifies.
    if Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Ok(Verified::No);
    }
    if is_current(&parsed) {
        Ok(Verified::Yes)
    } else {
        Ok(Verified::YesRehash(hash(password)?))
    }
}

fn is_current(h: &PasswordHash) -> bool {
    let number = |name: &str| {
        h.params
            .get_str(name)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    };
    h.algorithm.as_str() == "argon2id"
        && number("m") >= MEMORY_KIB
        && number("t") >= ITERATIONS
        && number("p") >= LANES
}

/// Why a new password is refused, in Japanese and English.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("パスワードは {MIN_LENGTH} 文字以上にしてください (at least {MIN_LENGTH} characters)")]
    TooShort,
    #[error("パスワードは {MAX_LENGTH} 文字以下にしてください (at most {MAX_LENGTH} characters)")]
    TooLong,
    #[error("ログインIDを含むパスワードは使えません (the password must not contain the login ID)")]
    ContainsId,
    #[error(
        "同じ文字や連続した文字だけのパスワードは使えません (not one character repeated or a simple sequence)"
    )]
    Trivial,
    #[error("よく使われるパスワードは使えません (this password is too common)")]
    Common,
    #[error("今のパスワードと同じです (the new password is the same as the current one)")]
    Unchanged,
}

impl PolicyError {
    /// Its entry in the message catalogue.
    pub fn code(&self) -> admin_ui::help::Code {
        use admin_ui::help::code;
        match self {
            PolicyError::TooShort => code::ACCOUNTS_PASSWORD_TOO_SHORT,
            PolicyError::TooLong => code::ACCOUNTS_PASSWORD_TOO_LONG,
            PolicyError::ContainsId => code::ACCOUNTS_PASSWORD_CONTAINS_ID,
            PolicyError::Trivial => code::ACCOUNTS_PASSWORD_TRIVIAL,
            PolicyError::Common => code::ACCOUNTS_PASSWORD_COMMON,
            PolicyError::Unchanged => code::ACCOUNTS_PASSWORD_UNCHANGED,
        }
    }
}

/// Runs of a keyboard or of the alphabet and digits (each written out long enough to hold any
/// password of ordinary length that is just a piece of it).
const SEQUENCES: &[&str] = &[
    "0123456789012345678901234567890123456789",
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
    "qwertyuiopasdfghjklzxcvbnmqwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p1qaz2wsx3edc",
];

/// Passwords that lead every leaked-password list, and what Japanese offices are known to use.
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password123",
    "passw0rd",
    "1234567890",
    "0123456789",
    "qwertyuiop",
    "1q2w3e4r5t",
    "abc1234567",
    "iloveyou12",
    "kaigo12345",
    "kaigokaigo",
    "kokuho1234",
    "kokuhoren1",
    "administrator",
    "admin12345",
    "welcome123",
    "letmein123",
    "sakura1234",
    "tokyo12345",
];

/// Checks a new password against the minimum policy (NIST SP 800-63B style: length, no
/// trivial or common values, not the ID; no composition rules, which only make people write
/// passwords down).
pub fn check_policy(id: &str, password: &str) -> Result<(), PolicyError> {
    let chars: Vec<char> = password.chars().collect();
    if chars.len() < MIN_LENGTH {
        return Err(PolicyError::TooShort);
    }
    if chars.len() > MAX_LENGTH {
        return Err(PolicyError::TooLong);
    }
    let lower = password.to_lowercase();
    if !id.is_empty() && lower.contains(&id.to_lowercase()) {
        return Err(PolicyError::ContainsId);
    }
    let distinct: std::collections::HashSet<char> = chars.iter().copied().collect();
    let reversed: String = lower.chars().rev().collect();
    let in_sequence = SEQUENCES
        .iter()
        .any(|s| s.contains(lower.as_str()) || s.contains(reversed.as_str()));
    if distinct.len() < 4 || in_sequence {
        return Err(PolicyError::Trivial);
    }
    if COMMON.contains(&lower.as_str()) {
        return Err(PolicyError::Common);
    }
    Ok(())
}

/// A random password for a first login or the demo: 16 characters drawn without bias from an
/// alphabet without look-alikes (no 0/O, 1/l/I), about 93 bits.
pub fn generate() -> Result<String, RandomUnavailable> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    // Bytes below the largest multiple of the alphabet's size keep every character equally likely.
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut out = String::with_capacity(16);
    while out.len() < 16 {
        let mut bytes = [0u8; 32];
        random_bytes(&mut bytes)?;
        for b in bytes.iter().filter(|&&b| b < limit) {
            if out.len() < 16 {
                out.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// The operating system's random number generator failed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("乱数を作れません (the system random number generator failed)")]
pub struct RandomUnavailable;

/// Fills `buf` from the operating system's CSPRNG (through ring, the TLS provider already in use).
pub fn random_bytes(buf: &mut [u8]) -> Result<(), RandomUnavailable> {
    use ring::rand::SecureRandom as _;
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| RandomUnavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_weak_parameters_are_upgraded() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_eq!(verify("correct horse battery", &h).unwrap(), Verified::Yes);
        assert_eq!(verify("wrong horse battery", &h).unwrap(), Verified::No);
        // A hash made with weaker parameters still verifies, and is replaced.
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"correct horse battery")
        .unwrap()
        .to_string();
        match verify("correct horse battery", &weak).unwrap() {
            Verified::YesRehash(new) => {
                assert!(new.contains("m=19456,t=2,p=1"));
                assert_eq!(
                    verify("correct horse battery", &new).unwrap(),
                    Verified::Yes
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            verify("x", "not a hash"),
            Err(HashError::Unreadable)
        ));
    }

    #[test]
    fn the_policy_refuses_short_trivial_common_and_id_passwords() {
        assert_eq!(check_policy("staff01", "short"), Err(PolicyError::TooShort));
        assert_eq!(
            check_policy("staff01", "aaaaaaaaaaaa"),
            Err(PolicyError::Trivial)
        );
        assert_eq!(
            check_policy("staff01", "123456789012"),
            Err(PolicyError::Trivial)
        );
        assert_eq!(
            check_policy("staff01", "Password123"),
            Err(PolicyError::Common)
        );
        assert_eq!(
            check_policy("staff01", "my-STAFF01-pw"),
            Err(PolicyError::ContainsId)
        );
        assert_eq!(
            check_policy("staff01", &"x".repeat(300)),
            Err(PolicyError::TooLong)
        );
        assert!(check_policy("staff01", "さくらの花が咲く四月").is_ok());
        assert!(check_policy("staff01", "blue-kettle-42").is_ok());
        assert_eq!(
            check_policy("staff01", "asdfghjklzx"),
            Err(PolicyError::Trivial)
        );
        assert_eq!(
            check_policy("staff01", "9876543210"),
            Err(PolicyError::Trivial)
        );
        assert_eq!(
            check_policy("staff01", "abababababab"),
            Err(PolicyError::Trivial)
        );
    }

    #[test]
    fn generated_passwords_pass_the_policy_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.chars().count(), 16);
        assert_ne!(a, b);
        assert!(check_policy("admin", &a).is_ok());
    }
}
