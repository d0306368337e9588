//! Sessions: opaque random tokens (256 bits) handed to the browser in a cookie and stored only
//! as their SHA-256, with an idle and an absolute timeout, the client's address and browser for
//! the "my sessions" list, and the synchronizer CSRF token of the session's forms.
//!
//! Invariants: the store never holds a token, only its hash, so a copy of the store (a backup)
//! cannot be used to log in; an expired session is refused and removed when it is seen; a
//! password change or reset revokes every other session of the account.

use std::time::Duration;

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::password::{RandomUnavailable, random_bytes};
use crate::store::{Store, StoreError};

/// Timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// Ended after this long without a request.
    pub idle: Duration,
    /// Ended this long after login, however active.
    pub absolute: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3600),
        }
    }
}

/// One session, as stored (under the hash of its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// SHA-256 (hex) of the token: the key, and how the list names it.
    pub token_hash: String,
    /// The account.
    pub account_id: String,
    /// The office the user is working on (corporation accounts switch between offices).
    pub current_office: Option<String>,
    /// Login time.
    pub created_at: Timestamp,
    /// Last request.
    pub last_seen_at: Timestamp,
    /// Client address at login.
    pub address: String,
    /// Browser at login.
    pub user_agent: String,
    /// The synchronizer token every form of this session carries.
    pub csrf_token: String,
}

/// Why a session is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// No such session (never issued, logged out, revoked).
    Unknown,
    /// Idle too long.
    Idle,
    /// Too old.
    Expired,
}

/// SHA-256 hex of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_token() -> Result<String, RandomUnavailable> {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Random(#[from] RandomUnavailable),
}

/// Starts a session; returns the token for the cookie (shown once, never stored) and the record.
pub fn issue(
    store: &Store,
    account_id: &str,
    address: &str,
    user_agent: &str,
    now: Timestamp,
) -> Result<(String, Session), SessionError> {
    let token = random_token()?;
    let session = Session {
        token_hash: token_hash(&token),
        account_id: account_id.to_owned(),
        current_office: None,
        created_at: now,
        last_seen_at: now,
        address: address.to_owned(),
        user_agent: user_agent.chars().take(200).collect(),
        csrf_token: random_token()?,
    };
    store.put_session(session.clone())?;
    Ok((token, session))
}

/// The session a cookie's token names, if it is still valid at `now`; the last-seen time is
/// moved on (written at most once a minute). An expired session is removed.
pub fn check(
    store: &Store,
    token: &str,
    now: Timestamp,
    s: &SessionSettings,
) -> Result<Result<Session, Invalid>, StoreError> {
    let hash = token_hash(token);
    let Some(mut session) = store.session(&hash)? else {
        return Ok(Err(Invalid::Unknown));
    };
    let since = |t: Timestamp| now.duration_since(t);
    let over = |d: SignedDuration, limit: Duration| {
        d > SignedDuration::try_from(limit).unwrap_or(SignedDuration::MAX)
    };
    let invalid = if over(since(session.created_at), s.absolute) {
        Some(Invalid::Expired)
    } else if over(since(session.last_seen_at), s.idle) {
        Some(Invalid::Idle)
    } else {
        None
    };
    if let Some(why) = invalid {
        store.remove_sessions(vec![hash])?;
        return Ok(Err(why));
    }
    if since(session.last_seen_at) > SignedDuration::from_secs(60) {
        session.last_seen_at = now;
        store.put_session(session.clone())?;
    }
    Ok(Ok(session))
}

/// Ends every session of an account except `keep` (a password change keeps the session that
/// made it); returns how many ended.
pub fn revoke_others(
    store: &Store,
    account_id: &str,
    keep: Option<&str>,
) -> Result<usize, StoreError> {
    let ended: Vec<String> = store
        .sessions_of(account_id)?
        .into_iter()
        .map(|s| s.token_hash)
        .filter(|h| Some(h.as_str()) != keep)
        .collect();
    let n = ended.len();
    store.remove_sessions(ended)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_time_out_and_only_hashes_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        let s = SessionSettings::default();
        let t0: Timestamp = "2026-12-03T09:00:00+09:00".parse().unwrap();
        let (token, session) = issue(&store, "sakura", "192.0.2.1", "Firefox", t0).unwrap();
        assert_eq!(token.len(), 43);
        assert_ne!(session.csrf_token, token);
        let at = |mins: i64| t0 + SignedDuration::from_mins(mins);
        assert!(check(&store, &token, at(29), &s).unwrap().is_ok());
        // Activity keeps it alive…
        for m in (58..=11 * 60).step_by(29) {
            assert!(
                check(&store, &token, at(m), &s).unwrap().is_ok(),
                "at {m} min"
            );
        }
        // …until the absolute limit.
        assert_eq!(
            check(&store, &token, at(12 * 60 + 1), &s).unwrap(),
            Err(Invalid::Expired)
        );
        assert_eq!(
            check(&store, &token, at(12 * 60 + 2), &s).unwrap(),
            Err(Invalid::Unknown)
        );
        // Idle for 31 minutes: ended.
        let (idle, _) = issue(&store, "sakura", "192.0.2.1", "Firefox", t0).unwrap();
        assert_eq!(
            check(&store, &idle, at(31), &s).unwrap(),
            Err(Invalid::Idle)
        );
        assert_eq!(
            check(&store, "forged", t0, &s).unwrap(),
            Err(Invalid::Unknown)
        );
        drop(store);
        // The token itself is nowhere in the file.
        let bytes = std::fs::read(&path).unwrap();
        let (live, _) = {
            let store = Store::open(&path).unwrap();
            issue(&store, "sakura", "192.0.2.1", "Firefox", t0).unwrap()
        };
        let bytes_after = std::fs::read(&path).unwrap();
        for (file, tok) in [(&bytes, &token), (&bytes_after, &live)] {
            assert!(!file.windows(tok.len()).any(|w| w == tok.as_bytes()));
        }
    }

    #[test]
    fn a_password_change_revokes_the_other_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let now = Timestamp::now();
        let s = SessionSettings::default();
        let (a, keep) = issue(&store, "sakura", "192.0.2.1", "PC 1", now).unwrap();
        let (b, _) = issue(&store, "Sakura", "192.0.2.2", "PC 2", now).unwrap();
        let (c, _) = issue(&store, "momiji", "192.0.2.3", "PC 3", now).unwrap();
        assert_eq!(
            revoke_others(&store, "SAKURA", Some(&keep.token_hash)).unwrap(),
            1
        );
        assert!(check(&store, &a, now, &s).unwrap().is_ok());
        assert_eq!(check(&store, &b, now, &s).unwrap(), Err(Invalid::Unknown));
        assert!(check(&store, &c, now, &s).unwrap().is_ok());
    }
}
