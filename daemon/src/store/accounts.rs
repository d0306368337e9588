//! The store's account tables: login accounts (by lower-cased ID), corporations, the offices
//! registered on the appliance, sessions and the audit log.
//!
//! Invariants: the audit log is append-only: this module has no call that changes or removes an
//! entry, and each entry's sequence number is taken in the transaction that writes it, so the
//! numbers have no gaps and no repeats. Accounts are never deleted (they are disabled), so every
//! ID the audit log names can still be looked up.

use jiff::Timestamp;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, read_table};
use crate::accounts::offices::OfficeRecord;
use crate::accounts::sessions::Session;
use crate::accounts::{Account, Corporation};

macro_rules! db_err {
    ($e:expr) => {
        $e.map_err(|e| StoreError::Db(e.into()))
    };
}

pub(super) const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
pub(super) const CORPORATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("corporations");
pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_log");
/// 事業所番号 → the office's record (secrets sealed).
pub(super) const OFFICES: TableDefinition<&str, &[u8]> = TableDefinition::new("offices");
/// SHA-256 of a session token → the session.
pub(super) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its number, from 1, without gaps.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// Who (login ID), if anyone was logged in.
    pub actor: Option<String>,
    /// From which address.
    pub address: Option<String>,
    /// What: `login`, `login_failed`, `lockout`, `password_changed`, `account_created`…
    pub action: String,
    /// On what (an account ID, an office number, a notice ID…).
    pub target: Option<String>,
    /// Details for people (never a password or a secret).
    pub detail: String,
}

/// An entry to append (the store numbers and dates it).
#[derive(Debug, Clone, Default)]
pub struct NewAudit {
    pub actor: Option<String>,
    pub address: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub detail: String,
}

fn key(id: &str) -> String {
    id.to_lowercase()
}

fn json<T: Serialize>(id: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|source| StoreError::Record {
        id: id.to_owned(),
        source,
    })
}

fn unjson<T: for<'de> Deserialize<'de>>(id: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Record {
        id: id.to_owned(),
        source,
    })
}

fn append_in(txn: &redb::WriteTransaction, e: NewAudit, at: Timestamp) -> Result<u64, StoreError> {
    let mut t = db_err!(txn.open_table(AUDIT))?;
    let seq = db_err!(t.last())?.map_or(1, |(k, _)| k.value() + 1);
    let entry = AuditEntry {
        seq,
        at,
        actor: e.actor,
        address: e.address,
        action: e.action,
        target: e.target,
        detail: e.detail,
    };
    let bytes = json(&seq.to_string(), &entry)?;
    db_err!(t.insert(seq, bytes.as_slice()))?;
    Ok(seq)
}

/// Whether creating an account may replace an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Only if no account has this ID (case-insensitively).
    New,
    /// Replace the stored one (an update).
    Replace,
}

impl Store {
    /// Stores an account and its audit entry in one transaction. With [`Put::New`] an existing
    /// ID is refused (`StoreError::Exists`), whatever its case.
    pub fn put_account(
        &self,
        account: Account,
        mode: Put,
        audit: Option<NewAudit>,
    ) -> Result<(), StoreError> {
        let bytes = json(&account.id, &account)?;
        self.write(move |txn| {
            let k = key(&account.id);
            {
                let mut t = db_err!(txn.open_table(ACCOUNTS))?;
                if mode == Put::New && db_err!(t.get(k.as_str()))?.is_some() {
                    return Err(StoreError::Exists(account.id.clone()));
                }
                db_err!(t.insert(k.as_str(), bytes.as_slice()))?;
            }
            if let Some(a) = audit {
                append_in(txn, a, Timestamp::now())?;
            }
            Ok(())
        })
    }

    /// One account, by login ID (any case).
    pub fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, ACCOUNTS)? else {
            return Ok(None);
        };
        db_err!(t.get(key(id).as_str()))?
            .map(|v| unjson(id, v.value()))
            .transpose()
    }

    /// Every account, by lower-cased ID.
    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, ACCOUNTS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(t.iter())? {
            let (k, v) = db_err!(entry)?;
            out.push(unjson(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Stores a corporation.
    pub fn put_corporation(
        &self,
        c: Corporation,
        audit: Option<NewAudit>,
    ) -> Result<(), StoreError> {
        let bytes = json(&c.id, &c)?;
        self.write(move |txn| {
            {
                let mut t = db_err!(txn.open_table(CORPORATIONS))?;
                db_err!(t.insert(c.id.as_str(), bytes.as_slice()))?;
            }
            if let Some(a) = audit {
                append_in(txn, a, Timestamp::now())?;
            }
            Ok(())
        })
    }

    /// Every corporation.
    pub fn corporations(&self) -> Result<Vec<Corporation>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, CORPORATIONS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(t.iter())? {
            let (k, v) = db_err!(entry)?;
            out.push(unjson(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Stores an office's record, adds it to its corporation's offices (when it names one
    /// that exists), and appends the audit entry, in one transaction. With [`Put::New`] an
    /// office number already registered is refused.
    pub fn put_office(
        &self,
        office: OfficeRecord,
        mode: Put,
        audit: Option<NewAudit>,
    ) -> Result<(), StoreError> {
        let bytes = json(&office.office_number, &office)?;
        self.write(move |txn| {
            {
                let mut t = db_err!(txn.open_table(OFFICES))?;
                if mode == Put::New && db_err!(t.get(office.office_number.as_str()))?.is_some() {
                    return Err(StoreError::Exists(office.office_number.clone()));
                }
                db_err!(t.insert(office.office_number.as_str(), bytes.as_slice()))?;
            }
            if let Some(corp_id) = &office.corporation {
                let mut t = db_err!(txn.open_table(CORPORATIONS))?;
                let current = db_err!(t.get(corp_id.as_str()))?
                    .map(|v| unjson::<Corporation>(corp_id, v.value()))
                    .transpose()?;
                if let Some(mut corp) = current
                    && corp.offices.insert(office.office_number.clone())
                {
                    let cb = json(&corp.id, &corp)?;
                    db_err!(t.insert(corp_id.as_str(), cb.as_slice()))?;
                }
            }
            if let Some(a) = audit {
                append_in(txn, a, Timestamp::now())?;
            }
            Ok(())
        })
    }

    /// One registered office.
    pub fn office_record(&self, number: &str) -> Result<Option<OfficeRecord>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, OFFICES)? else {
            return Ok(None);
        };
        db_err!(t.get(number))?
            .map(|v| unjson(number, v.value()))
            .transpose()
    }

    /// Every registered office, by number.
    pub fn office_records(&self) -> Result<Vec<OfficeRecord>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, OFFICES)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(t.iter())? {
            let (k, v) = db_err!(entry)?;
            out.push(unjson(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Stores (or updates) a session under its token hash.
    pub fn put_session(&self, session: Session) -> Result<(), StoreError> {
        let bytes = json(&session.token_hash, &session)?;
        self.write(move |txn| {
            let mut t = db_err!(txn.open_table(SESSIONS))?;
            db_err!(t.insert(session.token_hash.as_str(), bytes.as_slice()))?;
            Ok(())
        })
    }

    /// The session with this token hash.
    pub fn session(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, SESSIONS)? else {
            return Ok(None);
        };
        db_err!(t.get(token_hash))?
            .map(|v| unjson(token_hash, v.value()))
            .transpose()
    }

    /// Every session of an account (any case of its ID).
    pub fn sessions_of(&self, account_id: &str) -> Result<Vec<Session>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, SESSIONS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(t.iter())? {
            let (k, v) = db_err!(entry)?;
            let s: Session = unjson(k.value(), v.value())?;
            if s.account_id.eq_ignore_ascii_case(account_id) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Ends sessions by token hash.
    pub fn remove_sessions(&self, token_hashes: Vec<String>) -> Result<(), StoreError> {
        if token_hashes.is_empty() {
            return Ok(());
        }
        self.write(move |txn| {
            let mut t = db_err!(txn.open_table(SESSIONS))?;
            for h in &token_hashes {
                db_err!(t.remove(h.as_str()))?;
            }
            Ok(())
        })
    }

    /// Appends an audit entry; returns its number.
    pub fn audit(&self, e: NewAudit) -> Result<u64, StoreError> {
        self.write(move |txn| append_in(txn, e, Timestamp::now()))
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, AUDIT)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(t.iter())?.rev().take(limit) {
            let (k, v) = db_err!(entry)?;
            out.push(unjson(&k.value().to_string(), v.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{Role, guard::Lockout};

    fn admin(id: &str) -> Account {
        let now = Timestamp::now();
        Account {
            id: id.into(),
            display_name: "管理者".into(),
            role: Role::SystemAdmin,
            corporation: None,
            office_number: None,
            grants: Default::default(),
            password_hash: "$argon2id$x".into(),
            must_change_password: true,
            lockout: Lockout::default(),
            disabled: false,
            created_at: now,
            password_changed_at: now,
            alerts: Default::default(),
        }
    }

    #[test]
    fn accounts_are_unique_regardless_of_case_and_the_audit_log_only_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            let created = NewAudit {
                action: "account_created".into(),
                target: Some("Admin".into()),
                ..NewAudit::default()
            };
            store
                .put_account(admin("Admin"), Put::New, Some(created))
                .unwrap();
            assert!(matches!(
                store.put_account(admin("admin"), Put::New, None),
                Err(StoreError::Exists(_))
            ));
            assert_eq!(store.account("ADMIN").unwrap().unwrap().id, "Admin");
            let mut changed = admin("Admin");
            changed.must_change_password = false;
            store.put_account(changed, Put::Replace, None).unwrap();
            assert!(
                !store
                    .account("admin")
                    .unwrap()
                    .unwrap()
                    .must_change_password
            );
            store
                .audit(NewAudit {
                    action: "login".into(),
                    actor: Some("Admin".into()),
                    ..NewAudit::default()
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store
                .audit(NewAudit {
                    action: "login_failed".into(),
                    ..NewAudit::default()
                })
                .unwrap(),
            3
        );
        let log = store.audit_log(10).unwrap();
        let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 2, 1]);
        assert_eq!(log[2].action, "account_created");
        assert_eq!(store.accounts().unwrap().len(), 1);
    }
}
