//! Managing accounts: creating them, resetting and setting passwords, unlocking, granting
//! offices, disabling, and the system administrator of the first start. The admin UI (as the
//! logged-in person) and the command line (`kaigo-relay user …`, run by whoever may read the
//! config and state folder, which is the system administrator's power) call the same functions.
//!
//! Invariants: who may do what is decided here from the acting account and the stored
//! corporations ([`Account::may_manage`], [`Account::may_see`]), never from the request; a
//! password set by someone else must be changed at the next login; every change is audited
//! in the same transaction as the account; setting or resetting a password ends the account's
//! other sessions; accounts are never deleted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use admin_ui::help::{Code, code};
use jiff::Timestamp;

use super::password::{self, PolicyError, RandomUnavailable};
use super::{Account, Corporation, Role, guard::Lockout, sessions};
use crate::store::{NewAudit, Put, Store, StoreError};

/// The ID of the system administrator made at the first start.
pub const ADMIN_ID: &str = "admin";
/// Where the first (or reset) administrator password is written, inside the state folder
/// (mode 0600), besides being printed once.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password.txt";

/// Who is acting.
#[derive(Debug, Clone)]
pub enum Actor {
    /// The command line on the appliance itself (full rights).
    Cli,
    /// A logged-in person, from this address.
    Person {
        /// Their account as stored.
        account: Box<Account>,
        /// Their address.
        address: Option<String>,
    },
}

impl Actor {
    /// How the audit log names the actor.
    pub fn name(&self) -> String {
        match self {
            Actor::Cli => "cli".into(),
            Actor::Person { account, .. } => account.id.clone(),
        }
    }

    fn address(&self) -> Option<String> {
        match self {
            Actor::Cli => None,
            Actor::Person { address, .. } => address.clone(),
        }
    }

    /// Whether the actor may see an office.
    pub fn may_see(&self, office: &str, corps: &[Corporation]) -> bool {
        match self {
            Actor::Cli => true,
            Actor::Person { account, .. } => account.may_see(office, corps),
        }
    }

    /// Whether the actor may manage `other`.
    pub fn may_manage(&self, other: &Account, corps: &[Corporation]) -> bool {
        match self {
            Actor::Cli => true,
            Actor::Person { account, .. } => account.may_manage(other, corps),
        }
    }

    fn is_admin(&self) -> bool {
        match self {
            Actor::Cli => true,
            Actor::Person { account, .. } => account.role == Role::SystemAdmin,
        }
    }

    fn corporation(&self) -> Option<String> {
        match self {
            Actor::Cli => None,
            Actor::Person { account, .. } => account.corporation.clone(),
        }
    }

    fn audit(&self, action: &str, target: &str, detail: String) -> NewAudit {
        NewAudit {
            actor: Some(self.name()),
            address: self.address(),
            action: action.into(),
            target: Some(target.to_owned()),
            detail,
        }
    }
}

/// Why an account operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The actor may not do this.
    #[error("この操作をする権限がありません (not allowed)")]
    Forbidden,
    /// No such account (or not one the actor may see).
    #[error("アカウント {0} はありません (no such account)")]
    NotFound(String),
    /// The input is wrong.
    #[error("{ja} ({en})")]
    Invalid {
        /// Its entry in the message catalogue.
        code: Code,
        /// Japanese.
        ja: String,
        /// English.
        en: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] password::HashError),
    /// No randomness.
    #[error(transparent)]
    Random(#[from] RandomUnavailable),
}

fn invalid(code: Code, ja: impl Into<String>, en: impl Into<String>) -> ManageError {
    ManageError::Invalid {
        code,
        ja: ja.into(),
        en: en.into(),
    }
}

impl From<PolicyError> for ManageError {
    fn from(e: PolicyError) -> Self {
        let text = e.to_string();
        // The policy's messages are "日本語 (English)".
        match text.rsplit_once(" (") {
            Some((ja, en)) => invalid(e.code(), ja, en.trim_end_matches(')')),
            None => invalid(e.code(), text.clone(), text),
        }
    }
}

/// A new account, as the form or the command line gives it.
#[derive(Debug, Clone, Default)]
pub struct NewAccountSpec {
    /// Login ID.
    pub id: String,
    /// Display name (defaults to the ID).
    pub display_name: String,
    /// Role.
    pub role: Option<Role>,
    /// Office accounts: the office.
    pub office: Option<String>,
    /// Staff: offices granted.
    pub grants: BTreeSet<String>,
    /// Office and staff accounts of a corporation: which (the acting corporation's own by
    /// default; only the administrator names another).
    pub corporation: Option<String>,
    /// Corporation accounts: the corporation's name.
    pub corporation_name: Option<String>,
    /// Corporation accounts: its offices.
    pub corporation_offices: BTreeSet<String>,
}

/// Checks a login ID: 3–32 characters of ASCII letters, digits, `.`, `_`, `-`.
pub fn check_id(id: &str) -> Result<(), ManageError> {
    let ok = (3..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            code::ACCOUNTS_ID_INVALID,
            "IDは半角英数字と「.」「_」「-」で 3〜32 文字にしてください",
            "the ID must be 3 to 32 ASCII letters, digits, '.', '_' or '-'",
        ))
    }
}

fn registered_offices(store: &Store) -> Result<BTreeSet<String>, StoreError> {
    Ok(store
        .office_records()?
        .into_iter()
        .map(|o| o.office_number)
        .collect())
}

/// Creates an account with a generated first password (returned, to be shown once).
pub fn create(
    store: &Store,
    actor: &Actor,
    spec: NewAccountSpec,
    now: Timestamp,
) -> Result<(Account, String), ManageError> {
    let id = spec.id.trim().to_owned();
    check_id(&id)?;
    let role = spec.role.ok_or_else(|| {
        invalid(
            code::ACCOUNTS_ROLE_MISSING,
            "種類を選んでください",
            "choose the kind of account",
        )
    })?;
    let corps = store.corporations()?;
    let offices = registered_offices(store)?;
    let unknown = |o: &String| !offices.contains(o);
    let display_name = if spec.display_name.trim().is_empty() {
        id.clone()
    } else {
        spec.display_name.trim().to_owned()
    };
    let mut account = Account {
        id: id.clone(),
        display_name,
        role,
        corporation: None,
        office_number: None,
        grants: BTreeSet::new(),
        password_hash: String::new(),
        must_change_password: true,
        lockout: Lockout::default(),
        disabled: false,
        created_at: now,
        password_changed_at: now,
        alerts: Default::default(),
    };
    let mut new_corporation = None;
    match role {
        Role::SystemAdmin => {
            if !actor.is_admin() {
                return Err(ManageError::Forbidden);
            }
        }
        Role::Corporation => {
            if !actor.is_admin() {
                return Err(ManageError::Forbidden);
            }
            if corps.iter().any(|c| c.id.eq_ignore_ascii_case(&id)) {
                return Err(invalid(
                    code::ACCOUNTS_CORPORATION_EXISTS,
                    format!("法人 {id} は既にあります"),
                    format!("corporation {id} exists already"),
                ));
            }
            if let Some(o) = spec.corporation_offices.iter().find(|o| unknown(o)) {
                return Err(invalid(
                    code::ACCOUNTS_OFFICE_NOT_REGISTERED,
                    format!("事業所番号 {o} は登録されていません"),
                    format!("office {o} is not registered"),
                ));
            }
            if let Some(o) = spec
                .corporation_offices
                .iter()
                .find(|o| corps.iter().any(|c| c.offices.contains(*o)))
            {
                return Err(invalid(
                    code::ACCOUNTS_OFFICE_IN_OTHER_CORPORATION,
                    format!("事業所 {o} は既に別の法人に属しています"),
                    format!("office {o} already belongs to another corporation"),
                ));
            }
            let name = spec
                .corporation_name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .unwrap_or(account.display_name.as_str())
                .to_owned();
            new_corporation = Some(Corporation {
                id: id.clone(),
                name,
                offices: spec.corporation_offices.clone(),
            });
            account.corporation = Some(id.clone());
        }
        Role::Office => {
            let office = spec
                .office
                .as_deref()
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .ok_or_else(|| {
                    invalid(
                        code::ACCOUNTS_OFFICE_MISSING,
                        "事業所を選んでください",
                        "choose the office",
                    )
                })?
                .to_owned();
            if unknown(&office) {
                return Err(invalid(
                    code::ACCOUNTS_OFFICE_NOT_REGISTERED,
                    format!("事業所番号 {office} は登録されていません"),
                    format!("office {office} is not registered"),
                ));
            }
            account.corporation = corps
                .iter()
                .find(|c| c.offices.contains(&office))
                .map(|c| c.id.clone());
            account.office_number = Some(office);
        }
        Role::Staff => {
            if spec.grants.is_empty() {
                return Err(invalid(
                    code::ACCOUNTS_GRANTS_EMPTY,
                    "職員IDには見られる事業所を 1 つ以上選んでください",
                    "grant at least one office to a staff ID",
                ));
            }
            if let Some(o) = spec.grants.iter().find(|o| unknown(o)) {
                return Err(invalid(
                    code::ACCOUNTS_OFFICE_NOT_REGISTERED,
                    format!("事業所番号 {o} は登録されていません"),
                    format!("office {o} is not registered"),
                ));
            }
            account.grants = spec.grants.clone();
            account.corporation = spec.corporation.clone().or_else(|| actor.corporation());
        }
    }
    if !actor.is_admin() && !actor.may_manage(&account, &corps) {
        return Err(ManageError::Forbidden);
    }
    let first = password::generate()?;
    account.password_hash = password::hash(&first)?;
    if let Some(c) = new_corporation {
        store.put_corporation(
            c,
            Some(actor.audit(
                "corporation_created",
                &id,
                "法人を登録 / corporation created".into(),
            )),
        )?;
    }
    let detail = format!(
        "{}（{}）を作成 / created",
        account.display_name,
        account.role.label_ja()
    );
    store
        .put_account(
            account.clone(),
            Put::New,
            Some(actor.audit("account_created", &id, detail)),
        )
        .map_err(|e| match e {
            StoreError::Exists(id) => invalid(
                code::ACCOUNTS_ID_TAKEN,
                format!("ID {id} は既に使われています"),
                format!("the ID {id} is taken"),
            ),
            other => ManageError::Store(other),
        })?;
    Ok((account, first))
}

/// The account `id` if the actor may manage it.
fn managed(store: &Store, actor: &Actor, id: &str) -> Result<Account, ManageError> {
    let account = store
        .account(id.trim())?
        .ok_or_else(|| ManageError::NotFound(id.trim().to_owned()))?;
    let corps = store.corporations()?;
    if actor.may_manage(&account, &corps) {
        Ok(account)
    } else {
        // Not "forbidden": an account one may not manage is one one does not see.
        Err(ManageError::NotFound(id.trim().to_owned()))
    }
}

/// Sets a new generated password that must be changed at the next login, lifts any lockout
/// and ends every session of the account. Returns the password, to be shown once.
pub fn reset_password(
    store: &Store,
    actor: &Actor,
    id: &str,
    now: Timestamp,
) -> Result<(Account, String), ManageError> {
    let mut account = managed(store, actor, id)?;
    let fresh = password::generate()?;
    account.password_hash = password::hash(&fresh)?;
    account.must_change_password = true;
    account.password_changed_at = now;
    account.lockout.clear();
    let target = account.id.clone();
    store.put_account(
        account.clone(),
        Put::Replace,
        Some(actor.audit(
            "password_reset",
            &target,
            "パスワードを再設定（次回ログイン時に変更） / password reset".into(),
        )),
    )?;
    sessions::revoke_others(store, &target, None)?;
    Ok((account, fresh))
}

/// Sets a password chosen by a person (`user passwd` on the command line, or the user's own
/// change after the old password was verified). `must_change` is set when someone else chose
/// it. Every session of the account but `keep_session` ends.
pub fn set_password(
    store: &Store,
    actor: &Actor,
    id: &str,
    new_password: &str,
    must_change: bool,
    keep_session: Option<&str>,
    now: Timestamp,
) -> Result<Account, ManageError> {
    let mut account = match actor {
        Actor::Person { account, .. } if account.id.eq_ignore_ascii_case(id.trim()) => store
            .account(&account.id)?
            .ok_or_else(|| ManageError::NotFound(id.to_owned()))?,
        _ => managed(store, actor, id)?,
    };
    password::check_policy(&account.id, new_password)?;
    if password::verify(new_password, &account.password_hash)? != password::Verified::No {
        return Err(invalid(
            code::ACCOUNTS_PASSWORD_UNCHANGED,
            "今のパスワードとは違うパスワードにしてください",
            "choose a password different from the current one",
        ));
    }
    account.password_hash = password::hash(new_password)?;
    account.must_change_password = must_change;
    account.password_changed_at = now;
    account.lockout.clear();
    let target = account.id.clone();
    let detail = if must_change {
        "パスワードを設定（次回ログイン時に変更） / password set"
    } else {
        "パスワードを変更 / password changed"
    };
    store.put_account(
        account.clone(),
        Put::Replace,
        Some(actor.audit("password_changed", &target, detail.into())),
    )?;
    sessions::revoke_others(store, &target, keep_session)?;
    Ok(account)
}

/// Lifts a lockout.
pub fn unlock(store: &Store, actor: &Actor, id: &str) -> Result<Account, ManageError> {
    let mut account = managed(store, actor, id)?;
    account.lockout.clear();
    let target = account.id.clone();
    store.put_account(
        account.clone(),
        Put::Replace,
        Some(actor.audit("unlocked", &target, "ロックを解除 / unlocked".into())),
    )?;
    Ok(account)
}

/// Sets the offices a staff account may see.
pub fn set_grants(
    store: &Store,
    actor: &Actor,
    id: &str,
    grants: BTreeSet<String>,
) -> Result<Account, ManageError> {
    let mut account = managed(store, actor, id)?;
    if account.role != Role::Staff {
        return Err(invalid(
            code::ACCOUNTS_GRANTS_STAFF_ONLY,
            "事業所の割り当ては職員IDだけに設定できます",
            "only staff IDs have granted offices",
        ));
    }
    if grants.is_empty() {
        return Err(invalid(
            code::ACCOUNTS_GRANTS_EMPTY,
            "事業所を 1 つ以上選んでください",
            "grant at least one office",
        ));
    }
    let corps = store.corporations()?;
    let offices = registered_offices(store)?;
    if let Some(o) = grants
        .iter()
        .find(|o| !offices.contains(*o) || !actor.may_see(o, &corps))
    {
        return Err(invalid(
            code::ACCOUNTS_GRANT_NOT_ALLOWED,
            format!("事業所 {o} は割り当てられません"),
            format!("office {o} cannot be granted"),
        ));
    }
    let before = account.grants.clone();
    account.grants = grants;
    let target = account.id.clone();
    let detail = format!(
        "割り当て {} → {} / grants changed",
        before.into_iter().collect::<Vec<_>>().join(","),
        account.grants.iter().cloned().collect::<Vec<_>>().join(",")
    );
    store.put_account(
        account.clone(),
        Put::Replace,
        Some(actor.audit("grants_changed", &target, detail)),
    )?;
    Ok(account)
}

/// Disables (or enables) an account; disabling ends its sessions.
pub fn set_disabled(
    store: &Store,
    actor: &Actor,
    id: &str,
    disabled: bool,
) -> Result<Account, ManageError> {
    let mut account = managed(store, actor, id)?;
    account.disabled = disabled;
    let target = account.id.clone();
    let (action, detail) = if disabled {
        ("account_disabled", "無効化 / disabled")
    } else {
        ("account_enabled", "有効化 / enabled")
    };
    store.put_account(
        account.clone(),
        Put::Replace,
        Some(actor.audit(action, &target, detail.into())),
    )?;
    if disabled {
        sessions::revoke_others(store, &target, None)?;
    }
    Ok(account)
}

/// The first start: when the store has no system administrator, makes `admin` with a random
/// password that must be changed at the first login, writes it to `state_dir/`
/// [`INITIAL_PASSWORD_FILE`] (mode 0600) and returns it (the caller prints it once). Nothing
/// happens when an administrator exists.
pub fn ensure_admin(
    store: &Store,
    state_dir: &Path,
    now: Timestamp,
) -> Result<Option<(String, PathBuf)>, ManageError> {
    if store
        .accounts()?
        .iter()
        .any(|a| a.role == Role::SystemAdmin)
    {
        return Ok(None);
    }
    let first = password::generate()?;
    let account = Account {
        id: ADMIN_ID.into(),
        display_name: "システム管理者".into(),
        role: Role::SystemAdmin,
        corporation: None,
        office_number: None,
        grants: BTreeSet::new(),
        password_hash: password::hash(&first)?,
        must_change_password: true,
        lockout: Lockout::default(),
        disabled: false,
        created_at: now,
        password_changed_at: now,
        alerts: Default::default(),
    };
    let path = write_password_file(state_dir, ADMIN_ID, &first)?;
    store.put_account(
        account,
        Put::New,
        Some(NewAudit {
            actor: None,
            action: "account_created".into(),
            target: Some(ADMIN_ID.into()),
            detail: "初回起動で作成（初期パスワードは一度だけ表示） / created at first start"
                .into(),
            ..NewAudit::default()
        }),
    )?;
    Ok(Some((first, path)))
}

/// `kaigo-relay user reset-admin`: a new random password for the system administrator
/// (`admin`, made again if it was removed or disabled), to be changed at the next login; its
/// lockout lifted and its sessions ended. Returns the ID, the password and the file it was
/// also written to.
pub fn reset_admin(
    store: &Store,
    state_dir: &Path,
    now: Timestamp,
) -> Result<(String, String, PathBuf), ManageError> {
    let existing = store
        .accounts()?
        .into_iter()
        .find(|a| a.role == Role::SystemAdmin && a.id.eq_ignore_ascii_case(ADMIN_ID))
        .or(store
            .accounts()?
            .into_iter()
            .find(|a| a.role == Role::SystemAdmin));
    let fresh = password::generate()?;
    let mut account = match existing {
        Some(a) => a,
        None => Account {
            id: ADMIN_ID.into(),
            display_name: "システム管理者".into(),
            role: Role::SystemAdmin,
            corporation: None,
            office_number: None,
            grants: BTreeSet::new(),
            password_hash: String::new(),
            must_change_password: true,
            lockout: Lockout::default(),
            disabled: false,
            created_at: now,
            password_changed_at: now,
            alerts: Default::default(),
        },
    };
    account.password_hash = password::hash(&fresh)?;
    account.must_change_password = true;
    account.disabled = false;
    account.password_changed_at = now;
    account.lockout.clear();
    let id = account.id.clone();
    let path = write_password_file(state_dir, &id, &fresh)?;
    store.put_account(
        account,
        Put::Replace,
        Some(NewAudit {
            actor: Some("cli".into()),
            action: "admin_reset".into(),
            target: Some(id.clone()),
            detail: "reset-admin でパスワードを再設定 / password reset from the command line"
                .into(),
            ..NewAudit::default()
        }),
    )?;
    sessions::revoke_others(store, &id, None)?;
    Ok((id, fresh, path))
}

/// Writes the one-time administrator password next to the store, readable by the service's
/// user only (replacing an older one).
fn write_password_file(state_dir: &Path, id: &str, pw: &str) -> Result<PathBuf, ManageError> {
    let path = state_dir.join(INITIAL_PASSWORD_FILE);
    let _ = std::fs::remove_file(&path);
    let text = format!(
        "kaigo-relay 管理画面のシステム管理者 / system administrator of the admin UI\r\nID: {id}\r\nパスワード / password: {pw}\r\n最初のログインで変更してください。変更後このファイルは不要です（削除してください）。\r\nChange it at the first login; then delete this file.\r\n"
    );
    super::secrets::write_new_private(&path, text.as_bytes()).map_err(|e| {
        ManageError::Store(StoreError::NotCommitted(format!(
            "cannot write {}: {e}",
            path.display()
        )))
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::offices::{ClientRef, OfficeRecord};

    fn office(store: &Store, number: &str) {
        let now = Timestamp::now();
        store
            .put_office(
                OfficeRecord {
                    office_number: number.into(),
                    name: format!("事業所{number}"),
                    federation_user_id: "KJ00000001".into(),
                    federation_password: None,
                    client: ClientRef::Pem {
                        cert_file: "c.pem".into(),
                        key_file: "k.pem".into(),
                    },
                    certificate: None,
                    corporation: None,
                    ended_from_month: None,
                    successor: None,
                    managed_by_config: true,
                    created_at: now,
                    updated_at: now,
                },
                Put::New,
                None,
            )
            .unwrap();
    }

    fn person(store: &Store, id: &str) -> Actor {
        Actor::Person {
            account: Box::new(store.account(id).unwrap().unwrap()),
            address: Some("192.0.2.1".into()),
        }
    }

    #[test]
    fn each_role_creates_only_what_it_may_and_passwords_are_one_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let now = Timestamp::now();
        for n in ["1310000011", "1310000029", "1310000037"] {
            office(&store, n);
        }
        let (pw, file) = ensure_admin(&store, dir.path(), now).unwrap().unwrap();
        assert!(std::fs::read_to_string(&file).unwrap().contains(&pw));
        assert!(ensure_admin(&store, dir.path(), now).unwrap().is_none());
        let admin = person(&store, ADMIN_ID);
        let (corp, _) = create(
            &store,
            &admin,
            NewAccountSpec {
                id: "sakura".into(),
                role: Some(Role::Corporation),
                corporation_name: Some("社会福祉法人さくら会".into()),
                corporation_offices: ["1310000011".to_owned(), "1310000029".to_owned()].into(),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert!(corp.must_change_password);
        let corp = person(&store, "sakura");
        // A corporation makes office and staff accounts of its own offices only.
        create(
            &store,
            &corp,
            NewAccountSpec {
                id: "sakura-home".into(),
                role: Some(Role::Office),
                office: Some("1310000011".into()),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert!(matches!(
            create(
                &store,
                &corp,
                NewAccountSpec {
                    id: "other-home".into(),
                    role: Some(Role::Office),
                    office: Some("1310000037".into()),
                    ..Default::default()
                },
                now
            ),
            Err(ManageError::Forbidden)
        ));
        assert!(matches!(
            create(
                &store,
                &corp,
                NewAccountSpec {
                    id: "boss".into(),
                    role: Some(Role::SystemAdmin),
                    ..Default::default()
                },
                now
            ),
            Err(ManageError::Forbidden)
        ));
        let office_acct = person(&store, "sakura-home");
        let (clerk, first) = create(
            &store,
            &office_acct,
            NewAccountSpec {
                id: "clerk1".into(),
                role: Some(Role::Staff),
                grants: ["1310000011".to_owned()].into(),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert_eq!(clerk.corporation.as_deref(), Some("sakura"));
        assert!(matches!(
            set_grants(
                &store,
                &office_acct,
                "clerk1",
                ["1310000029".to_owned()].into()
            ),
            Err(ManageError::Invalid { .. })
        ));
        // The same ID again, in another case.
        assert!(matches!(
            create(
                &store,
                &office_acct,
                NewAccountSpec {
                    id: "CLERK1".into(),
                    role: Some(Role::Staff),
                    grants: ["1310000011".to_owned()].into(),
                    ..Default::default()
                },
                now
            ),
            Err(ManageError::Invalid { .. })
        ));
        // Staff manage no one; a reset gives a new one-time password and ends sessions.
        let staff = person(&store, "clerk1");
        assert!(matches!(
            reset_password(&store, &staff, "sakura-home", now),
            Err(ManageError::NotFound(_))
        ));
        sessions::issue(&store, "clerk1", "192.0.2.9", "test", now).unwrap();
        let (_, again) = reset_password(&store, &office_acct, "clerk1", now).unwrap();
        assert_ne!(again, first);
        assert!(store.sessions_of("clerk1").unwrap().is_empty());
        // Setting one's own password checks the policy and clears must-change.
        assert!(matches!(
            set_password(&store, &staff, "clerk1", "short", false, None, now),
            Err(ManageError::Invalid { .. })
        ));
        let changed =
            set_password(&store, &staff, "clerk1", "blue-kettle-42", false, None, now).unwrap();
        assert!(!changed.must_change_password);
        // reset-admin works even when the administrator was disabled.
        set_disabled(&store, &Actor::Cli, ADMIN_ID, true).unwrap();
        let (id, pw2, _) = reset_admin(&store, dir.path(), now).unwrap();
        assert_eq!(id, ADMIN_ID);
        let a = store.account(ADMIN_ID).unwrap().unwrap();
        assert!(!a.disabled && a.must_change_password);
        assert_eq!(
            password::verify(&pw2, &a.password_hash).unwrap(),
            password::Verified::Yes
        );
        // Nothing in the audit log holds a password.
        let log = format!("{:?}", store.audit_log(100).unwrap());
        for secret in [
            pw.as_str(),
            first.as_str(),
            again.as_str(),
            pw2.as_str(),
            "blue-kettle-42",
        ] {
            assert!(!log.contains(secret));
        }
    }
}
