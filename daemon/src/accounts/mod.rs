//! Accounts: the people who use the appliance and what each may see. Roles follow
//! architecture.md: the system administrator (everything), a corporation (法人ID: all offices
//! of the corporation), an office (事業所ID: its own office) and staff (職員ID: the offices
//! granted to them). Passwords (`password`) and login protection (`guard`) live in submodules.
//!
//! Invariant (architecture invariant 7, "every page checks who is asking"): whether an account
//! may see an office is decided in one place, [`Account::may_see`], from the account and the
//! corporation records alone; callers never decide it from what a request says about itself.

pub mod guard;
pub mod login;
pub mod manage;
pub mod offices;
pub mod password;
pub mod secrets;
pub mod sessions;

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What an account is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// システム管理者: everything, including system settings and every account.
    SystemAdmin,
    /// 法人ID: every office of its corporation.
    Corporation,
    /// 事業所ID: its own office.
    Office,
    /// 職員ID: the offices granted to it; no account management.
    Staff,
}

impl Role {
    /// Japanese label.
    pub fn label_ja(self) -> &'static str {
        match self {
            Role::SystemAdmin => "システム管理者",
            Role::Corporation => "法人",
            Role::Office => "事業所",
            Role::Staff => "職員",
        }
    }
}

/// A corporation (法人) and its offices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Corporation {
    /// Its ID (also the login ID of its corporation account).
    pub id: String,
    /// 法人名.
    pub name: String,
    /// 事業所番号 of its offices.
    pub offices: BTreeSet<String>,
}

/// One login account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Login ID (compared case-insensitively; stored as first written).
    pub id: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// What it is.
    pub role: Role,
    /// For corporation accounts, and for office and staff accounts of a corporation.
    pub corporation: Option<String>,
    /// For office accounts: the office.
    pub office_number: Option<String>,
    /// For staff: the offices granted.
    #[serde(default)]
    pub grants: BTreeSet<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// The password was set by someone else (first start, reset): change it at the next login.
    pub must_change_password: bool,
    /// Failures and lockout.
    #[serde(default)]
    pub lockout: guard::Lockout,
    /// A disabled account cannot log in (accounts are never deleted: the audit log names them).
    #[serde(default)]
    pub disabled: bool,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its password was last set.
    pub password_changed_at: Timestamp,
    /// Its e-mail address and which alerts it wants.
    #[serde(default)]
    pub alerts: crate::alerts::routing::AlertPrefs,
}

impl Account {
    /// An account with no password, for tests of who sees what.
    #[cfg(test)]
    pub(crate) fn for_tests(id: &str, role: Role) -> Account {
        let now = Timestamp::now();
        Account {
            id: id.into(),
            display_name: id.into(),
            role,
            corporation: None,
            office_number: None,
            grants: BTreeSet::new(),
            password_hash: String::new(),
            must_change_password: false,
            lockout: guard::Lockout::default(),
            disabled: false,
            created_at: now,
            password_changed_at: now,
            alerts: Default::default(),
        }
    }

    /// Whether this account may see (and, by its role, work on) `office`.
    pub fn may_see(&self, office: &str, corporations: &[Corporation]) -> bool {
        match self.role {
            Role::SystemAdmin => true,
            Role::Corporation => self.corporation.as_deref().is_some_and(|c| {
                corporations
                    .iter()
                    .any(|corp| corp.id == c && corp.offices.contains(office))
            }),
            Role::Office => self.office_number.as_deref() == Some(office),
            Role::Staff => self.grants.contains(office),
        }
    }

    /// Whether this account may manage `other` (reset its password, unlock it, grant offices):
    /// the administrator anyone; a corporation or office account the staff (and, for a
    /// corporation, the office accounts) whose offices all lie within what it sees; staff no one.
    pub fn may_manage(&self, other: &Account, corporations: &[Corporation]) -> bool {
        if self.id.eq_ignore_ascii_case(&other.id) {
            return false;
        }
        let within = |offices: Vec<&String>| offices.iter().all(|o| self.may_see(o, corporations));
        match (self.role, other.role) {
            (Role::SystemAdmin, _) => true,
            (Role::Corporation, Role::Office) => {
                other.corporation == self.corporation
                    && within(other.office_number.iter().collect())
            }
            (Role::Corporation | Role::Office, Role::Staff) => {
                !other.grants.is_empty() && within(other.grants.iter().collect())
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(
        id: &str,
        role: Role,
        corp: Option<&str>,
        office: Option<&str>,
        grants: &[&str],
    ) -> Account {
        let mut a = Account::for_tests(id, role);
        a.corporation = corp.map(Into::into);
        a.office_number = office.map(Into::into);
        a.grants = grants.iter().map(|s| (*s).to_owned()).collect();
        a
    }

    #[test]
    fn each_role_sees_its_offices_only() {
        let corps = vec![
            Corporation {
                id: "sakura".into(),
                name: "社会福祉法人さくら会".into(),
                offices: ["1379999996".to_owned(), "1379999988".to_owned()].into(),
            },
            Corporation {
                id: "momiji".into(),
                name: "株式会社もみじ".into(),
                offices: ["1310000017".to_owned()].into(),
            },
        ];
        let admin = account("admin", Role::SystemAdmin, None, None, &[]);
        let corp = account("sakura", Role::Corporation, Some("sakura"), None, &[]);
        let office = account(
            "sakura-home",
            Role::Office,
            Some("sakura"),
            Some("1379999996"),
            &[],
        );
        let staff = account("clerk", Role::Staff, Some("sakura"), None, &["1379999988"]);
        let other = account(
            "momiji-home",
            Role::Office,
            Some("momiji"),
            Some("1310000017"),
            &[],
        );
        for o in ["1379999996", "1379999988", "1310000017"] {
            assert!(admin.may_see(o, &corps));
        }
        assert!(corp.may_see("1379999988", &corps) && !corp.may_see("1310000017", &corps));
        assert!(office.may_see("1379999996", &corps) && !office.may_see("1379999988", &corps));
        assert!(staff.may_see("1379999988", &corps) && !staff.may_see("1379999996", &corps));
        assert!(!other.may_see("1379999996", &corps));
        // A corporation claimed by an account but not holding the office does not help.
        let forged = account(
            "x",
            Role::Corporation,
            Some("momiji"),
            Some("1379999996"),
            &[],
        );
        assert!(!forged.may_see("1379999996", &corps));

        assert!(admin.may_manage(&corp, &corps));
        assert!(corp.may_manage(&office, &corps) && corp.may_manage(&staff, &corps));
        assert!(!corp.may_manage(&other, &corps));
        assert!(!office.may_manage(&staff, &corps)); // the clerk works for another office
        assert!(!staff.may_manage(&office, &corps));
        assert!(!corp.may_manage(&corp, &corps));
        assert!(!corp.may_manage(&admin, &corps));
    }
}
