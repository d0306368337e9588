//! Who hears of what. Accounts with an e-mail address hear of the offices their role lets them
//! see (an office's clerks of that office, a corporation of its offices, the administrator of
//! everything, including the appliance itself), for the groups they chose or their role's
//! default; configured recipients and webhooks hear of their scope (offices, a corporation, or
//! everything) and groups.
//!
//! Invariant: a recipient is never told of an office it may not see: when a message concerns
//! more offices than the recipient sees, its delivery is restricted to those it does and uses
//! the kind's general text instead of the message's detail.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::kinds::{self, Group};
use super::outbox::{Delivery, Destination, Message, Phase};
use crate::accounts::{Account, Corporation, Role};
use crate::config::{AlertSettings, Language, Scope};

/// An account's alert preferences (set on its account page).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertPrefs {
    /// Where to send; no mail without it.
    #[serde(default)]
    pub email: Option<String>,
    /// The groups chosen (`None`: the role's default).
    #[serde(default)]
    pub groups: Option<BTreeSet<Group>>,
    /// One message a day instead of one each.
    #[serde(default)]
    pub digest: bool,
    /// The language (`None`: `alerts.language`).
    #[serde(default)]
    pub language: Option<Language>,
}

impl AlertPrefs {
    /// Whether an account of `role` with these preferences hears of `group`.
    pub fn wants(&self, role: Role, group: Group) -> bool {
        match &self.groups {
            Some(g) => g.contains(&group),
            None => role == Role::SystemAdmin || group.default_for_office_people(),
        }
    }
}

/// What the dispatcher knows of people when routing.
#[derive(Debug)]
pub struct Directory<'a> {
    /// Every account.
    pub accounts: &'a [Account],
    /// Every corporation.
    pub corporations: &'a [Corporation],
}

/// The offices of `msg` a scope sees: `Some(all)` for an unlimited scope, `None` when it sees
/// none of them (or the message is about the appliance and the scope is limited).
fn scope_sees(scope: &Scope, msg: &Message, corporations: &[Corporation]) -> Option<Vec<String>> {
    if scope.is_everything() {
        return Some(msg.offices.clone());
    }
    if msg.offices.is_empty() {
        return None;
    }
    let corp: BTreeSet<&String> = scope
        .corporation
        .as_ref()
        .and_then(|c| corporations.iter().find(|k| &k.id == c))
        .map(|k| k.offices.iter().collect())
        .unwrap_or_default();
    let seen: Vec<String> = msg
        .offices
        .iter()
        .filter(|o| scope.offices.contains(*o) || corp.contains(o))
        .cloned()
        .collect();
    (!seen.is_empty()).then_some(seen)
}

fn restriction(msg: &Message, seen: Vec<String>) -> Option<Vec<String>> {
    (seen.len() < msg.offices.len()).then_some(seen)
}

/// The deliveries of `msg`: one per destination (an address reached both as an account and as
/// a recipient gets one delivery, the less restricted).
pub fn route(
    msg: &Message,
    settings: &AlertSettings,
    people: &Directory<'_>,
    now: Timestamp,
) -> Vec<Delivery> {
    let group = kinds::group_of(&msg.kind);
    let mut out: BTreeMap<Destination, Delivery> = BTreeMap::new();
    let mut add = |d: Delivery| match out.get(&d.destination) {
        Some(existing) if existing.restricted_to.is_none() => {}
        _ => {
            out.insert(d.destination.clone(), d);
        }
    };
    if settings.mail.is_some() {
        for a in people.accounts {
            let Some(email) = a.alerts.email.as_ref().filter(|e| !e.is_empty()) else {
                continue;
            };
            if a.disabled || !a.alerts.wants(a.role, group) {
                continue;
            }
            let restricted = if msg.offices.is_empty() {
                if a.role != Role::SystemAdmin {
                    continue;
                }
                None
            } else {
                let seen: Vec<String> = msg
                    .offices
                    .iter()
                    .filter(|o| a.may_see(o, people.corporations))
                    .cloned()
                    .collect();
                if seen.is_empty() {
                    continue;
                }
                restriction(msg, seen)
            };
            add(Delivery::new(
                msg.clone(),
                Destination::Mail {
                    address: email.clone(),
                    name: a.display_name.clone(),
                },
                a.alerts.language.unwrap_or(settings.language),
                a.alerts.digest && msg.phase != Phase::Test,
                restricted,
                now,
            ));
        }
        for r in &settings.recipients {
            if r.scope.groups.as_ref().is_some_and(|g| !g.contains(&group)) {
                continue;
            }
            let Some(seen) = scope_sees(&r.scope, msg, people.corporations) else {
                continue;
            };
            add(Delivery::new(
                msg.clone(),
                Destination::Mail {
                    address: r.email.clone(),
                    name: r.name.clone(),
                },
                r.scope.language.unwrap_or(settings.language),
                r.scope.digest && msg.phase != Phase::Test,
                restriction(msg, seen),
                now,
            ));
        }
    }
    for w in &settings.webhooks {
        if w.scope.groups.as_ref().is_some_and(|g| !g.contains(&group)) {
            continue;
        }
        let Some(seen) = scope_sees(&w.scope, msg, people.corporations) else {
            continue;
        };
        add(Delivery::new(
            msg.clone(),
            Destination::Webhook {
                name: w.name.clone(),
            },
            w.scope.language.unwrap_or(settings.language),
            w.scope.digest && msg.phase != Phase::Test,
            restriction(msg, seen),
            now,
        ));
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RecipientSettings;

    fn account(id: &str, role: Role, office: Option<&str>, corp: Option<&str>) -> Account {
        let mut a = Account::for_tests(id, role);
        a.office_number = office.map(str::to_owned);
        a.corporation = corp.map(str::to_owned);
        a.alerts.email = Some(format!("{id}@example.jp"));
        a
    }

    fn msg(kind: &str, offices: &[&str]) -> Message {
        Message::new(
            "k",
            Phase::Raised,
            kind,
            "error",
            offices.iter().map(|s| s.to_string()).collect(),
            "詳細".into(),
            "detail".into(),
            None,
            Timestamp::now(),
        )
    }

    fn settings() -> AlertSettings {
        AlertSettings {
            mail: Some(crate::config::MailSettings {
                server: "127.0.0.1".into(),
                port: 25,
                security: crate::config::MailSecurity::None,
                credentials: None,
                from: "r <r@example.jp>".into(),
                ca_file: None,
                timeout: std::time::Duration::from_secs(5),
            }),
            ..AlertSettings::default()
        }
    }

    fn to(ds: &[Delivery]) -> Vec<(String, Option<Vec<String>>)> {
        ds.iter()
            .map(|d| (d.destination.label(), d.restricted_to.clone()))
            .collect()
    }

    #[test]
    fn each_person_hears_of_what_they_may_see() {
        let corps = vec![Corporation {
            id: "C1".into(),
            name: "法人".into(),
            offices: ["1310000001".to_string(), "1310000002".to_string()].into(),
        }];
        let accounts = vec![
            account("admin", Role::SystemAdmin, None, None),
            account("corp", Role::Corporation, None, Some("C1")),
            account("o1", Role::Office, Some("1310000001"), Some("C1")),
            account("o3", Role::Office, Some("1310000003"), None),
        ];
        let people = Directory {
            accounts: &accounts,
            corporations: &corps,
        };
        let s = settings();
        let now = Timestamp::now();

        // A window alert for offices 1 and 3.
        let d = route(
            &msg("window_closing", &["1310000001", "1310000003"]),
            &s,
            &people,
            now,
        );
        assert_eq!(
            to(&d),
            vec![
                ("mail:admin@example.jp".into(), None),
                (
                    "mail:corp@example.jp".into(),
                    Some(vec!["1310000001".into()])
                ),
                ("mail:o1@example.jp".into(), Some(vec!["1310000001".into()])),
                ("mail:o3@example.jp".into(), Some(vec!["1310000003".into()])),
            ]
        );
        // The appliance itself: the administrator only.
        let d = route(&msg("disk_low", &[]), &s, &people, now);
        assert_eq!(to(&d), vec![("mail:admin@example.jp".into(), None)]);
        // Backup is not an office default.
        let d = route(&msg("backup_stale", &[]), &s, &people, now);
        assert_eq!(to(&d).len(), 1);
    }

    #[test]
    fn choices_scopes_and_duplicates() {
        let mut o1 = account("o1", Role::Office, Some("1310000001"), None);
        o1.alerts.groups = Some([Group::Returns].into());
        let mut off = account("off", Role::Office, Some("1310000001"), None);
        off.disabled = true;
        let accounts = vec![o1, off];
        let people = Directory {
            accounts: &accounts,
            corporations: &[],
        };
        let mut s = settings();
        s.recipients = vec![
            RecipientSettings {
                name: "本部".into(),
                email: "o1@example.jp".into(),
                scope: Scope::default(),
            },
            RecipientSettings {
                name: "2".into(),
                email: "two@example.jp".into(),
                scope: Scope {
                    offices: ["1310000002".to_string()].into(),
                    groups: Some([Group::Claims].into()),
                    ..Scope::default()
                },
            },
        ];
        let now = Timestamp::now();
        // o1 chose returns only; the head office recipient hears everything under o1's address.
        let d = route(&msg("claim_refused", &["1310000001"]), &s, &people, now);
        assert_eq!(to(&d), vec![("mail:o1@example.jp".into(), None)]);
        assert_eq!(
            d[0].destination,
            Destination::Mail {
                address: "o1@example.jp".into(),
                name: "本部".into()
            }
        );
        let d = route(&msg("claim_refused", &["1310000002"]), &s, &people, now);
        assert_eq!(
            to(&d),
            vec![
                ("mail:o1@example.jp".into(), None),
                ("mail:two@example.jp".into(), None)
            ]
        );
        let d = route(&msg("returns_new", &["1310000002"]), &s, &people, now);
        assert_eq!(to(&d), vec![("mail:o1@example.jp".into(), None)]);
        // Without a mail server, no mail deliveries at all.
        s.mail = None;
        s.recipients.clear();
        assert!(route(&msg("claim_refused", &["1310000001"]), &s, &people, now).is_empty());
    }
}
