//! The login desk: one place that decides a login attempt. Throttling comes first, then the
//! account's lockout, then the password (argon2id, on a blocking thread, at most
//! [`MAX_CONCURRENT_HASHES`] at a time so that a flood of logins cannot starve the relay), and
//! every outcome is written to the audit log. A failure is logged as one line that fail2ban
//! can match: `login failed address=<ip> user=<id> reason=<why>`.
//!
//! Invariants: a throttled or locked attempt never computes a hash; an unknown ID costs the
//! same hash as a known one (so timing does not tell which IDs exist), and every refusal looks
//! the same to the person trying (the audit log keeps the real reason).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use super::Account;
use super::guard::{GuardSettings, Refusal, Throttle};
use super::password::{self, Verified};
use crate::store::{NewAudit, Put, Store, StoreError};

/// What an unknown ID's password is checked against, so that it costs exactly what a real
/// account's check costs (timing does not tell which IDs exist). A fixed argon2id hash with the
/// current parameters: computing one at start-up would cost every daemon 19 MiB of memory that
/// the allocator keeps; nothing can log in with it, since it belongs to no account.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$Ow5efXTqjztBZyxj2ik4Cg$QFHRqKELAcxaBl7SMmg2XvgyDsQ9BRGPAnBrLVPXCQ0";

/// Password hashes computed at once (each takes 19 MiB and one core for ~50 ms).
pub const MAX_CONCURRENT_HASHES: usize = 1;

/// Why a login was refused (the person sees [`LoginRefusal::message_ja`] and the English).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    /// Too many attempts; try again after this long.
    Throttled(Duration),
    /// Wrong ID or password, a locked or disabled account: the same answer for all.
    Denied,
}

impl LoginRefusal {
    /// Its entry in the message catalogue.
    pub fn code(&self) -> admin_ui::help::Code {
        match self {
            LoginRefusal::Throttled(_) => admin_ui::help::code::ACCOUNTS_LOGIN_THROTTLED,
            LoginRefusal::Denied => admin_ui::help::code::ACCOUNTS_LOGIN_DENIED,
        }
    }

    /// What the login page says.
    pub fn message_ja(&self) -> String {
        match self {
            LoginRefusal::Throttled(d) => format!(
                "ログインの試行が多すぎます。{} 秒後にもう一度お試しください。",
                d.as_secs().max(1)
            ),
            LoginRefusal::Denied => "IDまたはパスワードが違うか、アカウントがロックされています。続けて間違えると一定時間ロックされます。ロックの解除は管理者に依頼してください。".into(),
        }
    }

    /// The same in English.
    pub fn message_en(&self) -> String {
        match self {
            LoginRefusal::Throttled(d) => format!(
                "Too many attempts. Try again in {} s.",
                d.as_secs().max(1)
            ),
            LoginRefusal::Denied => "Wrong ID or password, or the account is locked. Repeated failures lock it for a while; an administrator can unlock it.".into(),
        }
    }
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// The account, as stored after the login.
    pub account: Account,
    /// The password must be changed before anything else.
    pub must_change_password: bool,
}

/// What went wrong beyond a refusal.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] password::HashError),
    /// The hashing task failed.
    #[error("password check failed: {0}")]
    Task(String),
}

/// Decides login attempts.
#[derive(Debug, Clone)]
pub struct LoginDesk {
    store: Store,
    settings: GuardSettings,
    throttle: Arc<Mutex<Throttle>>,
    hashing: Arc<Semaphore>,
    /// A hash to verify against when the ID is unknown (same cost as a real one).
    decoy: Arc<String>,
}

impl LoginDesk {
    /// A desk over the store's accounts.
    pub fn new(store: Store, settings: GuardSettings) -> Result<LoginDesk, LoginError> {
        Ok(LoginDesk {
            store,
            settings,
            throttle: Arc::new(Mutex::new(Throttle::new(settings))),
            hashing: Arc::new(Semaphore::new(MAX_CONCURRENT_HASHES)),
            decoy: Arc::new(DECOY_HASH.to_owned()),
        })
    }

    async fn verify(&self, password: String, hash: String) -> Result<Verified, LoginError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|e| LoginError::Task(e.to_string()))?;
        tokio::task::spawn_blocking(move || password::verify(&password, &hash))
            .await
            .map_err(|e| LoginError::Task(e.to_string()))?
            .map_err(LoginError::from)
    }

    fn audit(
        &self,
        action: &str,
        id: &str,
        address: IpAddr,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.store.audit(NewAudit {
            actor: Some(id.to_owned()),
            address: Some(address.to_string()),
            action: action.into(),
            target: Some(id.to_owned()),
            detail: detail.into(),
        })?;
        Ok(())
    }

    /// Decides one attempt.
    pub async fn login(
        &self,
        id: &str,
        password: &str,
        address: IpAddr,
    ) -> Result<Result<LoggedIn, LoginRefusal>, LoginError> {
        let id = id.trim();
        let now = Timestamp::now();
        let throttled = self
            .throttle
            .lock()
            .map_err(|e| LoginError::Task(e.to_string()))?
            .attempt(address, id, tokio::time::Instant::now());
        if let Err(r) = throttled {
            let wait = match r {
                Refusal::ThrottledAddress(d) | Refusal::ThrottledId(d) => d,
            };
            warn!(%address, user = %id, reason = "throttled", "ログインの試行が続いたため、しばらく受け付けません (login failed address={address} user={id} reason=throttled)");
            return Ok(Err(LoginRefusal::Throttled(wait)));
        }
        let account = if id.is_empty() || password.len() > password::MAX_LENGTH * 4 {
            None
        } else {
            self.store.account(id)?
        };
        let Some(mut account) = account else {
            // Same work as for a real account, so timing does not reveal which IDs exist.
            let _ = self
                .verify(password.to_owned(), (*self.decoy).clone())
                .await?;
            self.fail(id, address, "unknown_id")?;
            return Ok(Err(LoginRefusal::Denied));
        };
        if account.disabled {
            self.fail(&account.id, address, "disabled")?;
            return Ok(Err(LoginRefusal::Denied));
        }
        if account.lockout.is_locked(now) {
            self.fail(&account.id, address, "locked")?;
            return Ok(Err(LoginRefusal::Denied));
        }
        match self
            .verify(password.to_owned(), account.password_hash.clone())
            .await?
        {
            Verified::No => {
                let locked = account.lockout.failed(now, &self.settings);
                let audit = NewAudit {
                    actor: Some(account.id.clone()),
                    address: Some(address.to_string()),
                    action: if locked { "lockout" } else { "login_failed" }.into(),
                    target: Some(account.id.clone()),
                    detail: format!(
                        "連続 {} 回失敗 / {} failures in a row",
                        account.lockout.failures, account.lockout.failures
                    ),
                };
                let id = account.id.clone();
                self.store.put_account(account, Put::Replace, Some(audit))?;
                warn!(%address, user = %id, reason = "bad_password", "パスワードが違うため、ログインできませんでした (login failed address={address} user={id} reason=bad_password)");
                if locked {
                    warn!(%address, user = %id, "ログインの失敗が続いたため、このアカウントをロックしました (account locked after repeated failures)");
                }
                Ok(Err(LoginRefusal::Denied))
            }
            verified => {
                if let Verified::YesRehash(new) = verified {
                    account.password_hash = new;
                }
                account.lockout.clear();
                let must_change_password = account.must_change_password;
                let audit = NewAudit {
                    actor: Some(account.id.clone()),
                    address: Some(address.to_string()),
                    action: "login".into(),
                    target: Some(account.id.clone()),
                    detail: String::new(),
                };
                self.store
                    .put_account(account.clone(), Put::Replace, Some(audit))?;
                info!(%address, user = %account.id, "login");
                Ok(Ok(LoggedIn {
                    account,
                    must_change_password,
                }))
            }
        }
    }

    fn fail(&self, id: &str, address: IpAddr, reason: &str) -> Result<(), StoreError> {
        warn!(%address, user = %id, reason, "ログインできませんでした (login failed address={address} user={id} reason={reason})");
        self.audit("login_failed", id, address, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{Role, guard::Lockout};

    fn account(id: &str, pw: &str) -> Account {
        let now = Timestamp::now();
        Account {
            id: id.into(),
            display_name: id.into(),
            role: Role::Office,
            corporation: None,
            office_number: Some("1379999996".into()),
            grants: Default::default(),
            password_hash: password::hash(pw).unwrap(),
            must_change_password: true,
            lockout: Lockout::default(),
            disabled: false,
            created_at: now,
            password_changed_at: now,
            alerts: Default::default(),
        }
    }

    #[tokio::test]
    async fn logins_lock_after_repeated_failures_and_everything_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        store
            .put_account(account("sakura", "blue-kettle-42"), Put::New, None)
            .unwrap();
        let settings = GuardSettings {
            per_address_burst: 100,
            per_id_burst: 100,
            lockout_after: 3,
            ..GuardSettings::default()
        };
        let desk = LoginDesk::new(store.clone(), settings).unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let ok = desk
            .login("SAKURA", "blue-kettle-42", ip)
            .await
            .unwrap()
            .unwrap();
        assert!(ok.must_change_password);
        assert_eq!(
            desk.login("nobody", "x", ip).await.unwrap().unwrap_err(),
            LoginRefusal::Denied
        );
        for _ in 0..3 {
            assert!(desk.login("sakura", "wrong", ip).await.unwrap().is_err());
        }
        // Locked: even the right password is refused, without a hash being computed.
        assert!(
            desk.login("sakura", "blue-kettle-42", ip)
                .await
                .unwrap()
                .is_err()
        );
        assert!(
            store
                .account("sakura")
                .unwrap()
                .unwrap()
                .lockout
                .locked_until
                .is_some()
        );
        let actions: Vec<String> = store
            .audit_log(20)
            .unwrap()
            .into_iter()
            .rev()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            actions,
            [
                "login",
                "login_failed",
                "login_failed",
                "login_failed",
                "lockout",
                "login_failed"
            ]
        );
        // No password in the audit log.
        let log = format!("{:?}", store.audit_log(20).unwrap());
        assert!(!log.contains("blue-kettle") && !log.contains("wrong"));
    }

    #[test]
    fn the_decoy_costs_what_a_real_hash_costs() {
        // Same parameters as every new hash (else an unknown ID would answer faster).
        let real = password::hash("any password at all").unwrap();
        let params = |h: &str| h.split('$').nth(3).map(str::to_owned);
        assert_eq!(params(DECOY_HASH), params(&real));
        assert_eq!(password::verify("decoy", DECOY_HASH).unwrap(), Verified::No);
    }

    #[tokio::test]
    async fn a_flood_is_throttled_before_any_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let desk = LoginDesk::new(store.clone(), GuardSettings::default()).unwrap();
        let ip: IpAddr = "192.0.2.8".parse().unwrap();
        let mut throttled = 0;
        for n in 0..50 {
            if let Err(LoginRefusal::Throttled(_)) =
                desk.login(&format!("u{n}"), "x", ip).await.unwrap()
            {
                throttled += 1;
            }
        }
        assert_eq!(throttled, 40);
        // Only the ten admitted attempts were audited; the throttled ones never reached an account.
        assert_eq!(store.audit_log(100).unwrap().len(), 10);
    }
}
