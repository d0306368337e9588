//! The admin UI's alert screens over the store: a person's own alert preferences (address,
//! groups, digest, language) on the account page, and the alerts page (the current alerts of
//! the offices the viewer may see; for the administrator also the delivery log, the configured
//! destinations and the test button).
//!
//! Invariant: a viewer sees only alerts about offices they may see (the administrator also the
//! appliance's own), and a person changes only their own preferences.

use std::collections::BTreeSet;
use std::sync::Arc;

use admin_ui::{
    AlertGroupChoice, AlertPrefsForm, AlertPrefsView, AlertRow, AlertsView, BackendError,
    DeliveryRow, TestAlertRow,
};

use crate::accounts::{Account, Corporation, Role};
use crate::alerts::dispatch::Senders;
use crate::alerts::kinds::{self, Group};
use crate::alerts::outbox::{DeliveryState, Phase};
use crate::config::{AlertSettings, Language};
use crate::store::Store;
use crate::timefmt::jst_minutes;

/// What the alert screens need besides the store.
#[derive(Debug, Clone)]
pub struct AlertDesk {
    /// The `[alerts]` settings.
    pub settings: AlertSettings,
    /// The senders, for the test button.
    pub senders: Senders,
    /// The admin UI's address, for links in the test message.
    pub base_url: String,
}

impl AlertDesk {
    /// The desk for `settings`, linking to `base_url`.
    pub fn new(settings: &AlertSettings, base_url: &str) -> anyhow::Result<Arc<AlertDesk>> {
        Ok(Arc::new(AlertDesk {
            settings: settings.clone(),
            senders: Senders::new(settings)?,
            base_url: settings
                .admin_url
                .clone()
                .unwrap_or_else(|| base_url.trim_end_matches('/').to_owned()),
        }))
    }
}

fn language_name(l: Language) -> &'static str {
    match l {
        Language::Ja => "ja",
        Language::En => "en",
        Language::Both => "both",
    }
}

/// The groups a role may choose: the office's work for office people, and also the
/// appliance's own for the administrator.
fn groups_for(role: Role) -> Vec<Group> {
    Group::ALL
        .into_iter()
        .filter(|g| {
            role == Role::SystemAdmin || g.default_for_office_people() || *g == Group::Certificate
        })
        .collect()
}

/// The account page's alert section.
pub fn prefs_view(account: &Account, settings: Option<&AlertSettings>) -> AlertPrefsView {
    let p = &account.alerts;
    AlertPrefsView {
        email: p.email.clone().unwrap_or_default(),
        groups: groups_for(account.role)
            .into_iter()
            .map(|g| AlertGroupChoice {
                value: g.as_str().to_owned(),
                ja: g.label_ja().to_owned(),
                en: g.label_en().to_owned(),
                checked: p.wants(account.role, g),
            })
            .collect(),
        digest: p.digest,
        language: language_name(
            p.language
                .or(settings.map(|s| s.language))
                .unwrap_or(Language::Ja),
        )
        .to_owned(),
        mail_configured: settings.is_some_and(|s| s.mail.is_some()),
        digest_at: settings
            .map(|s| format!("{:02}:{:02}", s.digest_at_jst.0, s.digest_at_jst.1))
            .unwrap_or_else(|| "08:00".into()),
    }
}

/// Validates and applies the posted preferences to `account`.
pub fn apply_prefs(account: &mut Account, form: AlertPrefsForm) -> Result<(), BackendError> {
    let email = form.email.trim().to_owned();
    if !email.is_empty() && email.parse::<lettre::Address>().is_err() {
        return Err(BackendError::Invalid {
            code: Some(admin_ui::help::code::ALERTS_EMAIL_INVALID),
            message_ja: format!(
                "「{email}」はメールアドレスとして正しくありません。例: jimu@example.jp"
            ),
            message_en: format!(
                "\"{email}\" is not a valid e-mail address (e.g. jimu@example.jp)."
            ),
        });
    }
    let allowed = groups_for(account.role);
    let mut groups = BTreeSet::new();
    for g in &form.groups {
        let group = Group::from_name(g)
            .filter(|g| allowed.contains(g))
            .ok_or_else(|| BackendError::Invalid {
                code: Some(admin_ui::help::code::ALERTS_GROUP_INVALID),
                message_ja: format!("通知の種類「{g}」は選べません。"),
                message_en: format!("\"{g}\" is not an alert group you can choose."),
            })?;
        groups.insert(group);
    }
    let language = match form.language.as_str() {
        "" => None,
        other => Some(Language::parse(other).ok_or_else(|| BackendError::Invalid {
            code: Some(admin_ui::help::code::ALERTS_LANGUAGE_INVALID),
            message_ja: "言語は日本語・English・両方から選んでください。".into(),
            message_en: "Choose Japanese, English or both.".into(),
        })?),
    };
    account.alerts.email = (!email.is_empty()).then_some(email);
    account.alerts.groups = Some(groups);
    account.alerts.digest = form.digest;
    account.alerts.language = language;
    Ok(())
}

/// The alerts page for `viewer`.
pub fn alerts_view(
    store: &Store,
    viewer: &Account,
    corps: &[Corporation],
    settings: Option<&AlertSettings>,
) -> Result<AlertsView, crate::store::StoreError> {
    let names: std::collections::BTreeMap<String, String> = store
        .office_records()?
        .into_iter()
        .map(|o| (o.office_number, o.name))
        .collect();
    let is_admin = viewer.role == Role::SystemAdmin;
    let mut current = Vec::new();
    for a in crate::alerts::current(store)?.into_iter().rev() {
        let seen: Vec<&String> = a
            .offices
            .iter()
            .filter(|o| viewer.may_see(o, corps))
            .collect();
        let all = seen.len() == a.offices.len();
        if (a.offices.is_empty() && !is_admin) || (!a.offices.is_empty() && seen.is_empty()) {
            continue;
        }
        let kind = kinds::kind(&a.kind);
        let offices = seen
            .iter()
            .map(|o| match names.get(*o) {
                Some(n) => format!("{n}（{o}）"),
                None => (*o).clone(),
            })
            .collect::<Vec<_>>()
            .join("、");
        current.push(AlertRow {
            title_ja: kind.map_or(a.kind.clone(), |k| k.title_ja.to_owned()),
            title_en: kind.map_or(a.kind.clone(), |k| k.title_en.to_owned()),
            severity: a.severity.clone(),
            offices,
            // Another corporation's offices are not named: the kind's general advice instead.
            message_ja: if all {
                a.message_ja.clone()
            } else {
                kind.map_or("", |k| k.todo_ja).to_owned()
            },
            message_en: if all {
                a.message_en.clone()
            } else {
                kind.map_or("", |k| k.todo_en).to_owned()
            },
            raised_at: jst_minutes(a.raised_at),
            link: kind.map_or("/", |k| k.page).to_owned(),
        });
    }
    let mut view = AlertsView {
        current,
        mail_configured: settings.is_some_and(|s| s.mail.is_some()),
        ..AlertsView::default()
    };
    if is_admin {
        view.deliveries = store
            .recent_deliveries(200)?
            .into_iter()
            .map(|d| {
                let kind = kinds::kind(&d.message.kind);
                let resolved = d.message.phase == Phase::Resolved;
                let (state_ja, state_en) = match d.state {
                    DeliveryState::Sent => ("送信済み".to_owned(), "sent".to_owned()),
                    DeliveryState::GaveUp => (
                        format!("届けられませんでした（{} 回）", d.attempts),
                        format!("gave up after {} tries", d.attempts),
                    ),
                    DeliveryState::Pending if d.attempts > 0 => (
                        format!("再送待ち（{} 回失敗）", d.attempts),
                        format!("retrying ({} failed)", d.attempts),
                    ),
                    DeliveryState::Pending if d.digest => (
                        "まとめて送る待ち".to_owned(),
                        "waiting for the digest".to_owned(),
                    ),
                    DeliveryState::Pending => ("送信待ち".to_owned(), "pending".to_owned()),
                };
                DeliveryRow {
                    at: jst_minutes(d.sent_at.unwrap_or(d.created_at)),
                    what_ja: format!(
                        "{}{}",
                        if resolved { "【解決】" } else { "" },
                        kind.map_or(d.message.kind.as_str(), |k| k.title_ja)
                    ),
                    what_en: format!(
                        "{}{}",
                        if resolved { "[resolved] " } else { "" },
                        kind.map_or(d.message.kind.as_str(), |k| k.title_en)
                    ),
                    destination: d.destination.label(),
                    state: d.state.as_str().to_owned(),
                    state_ja,
                    state_en,
                    error: d.last_error.clone().unwrap_or_default(),
                    error_help: d.last_error_code.as_deref().map(admin_ui::help::href),
                }
            })
            .collect();
        if let Some(s) = settings {
            view.webhooks = s.webhooks.iter().map(|w| w.name.clone()).collect();
            view.recipients = s
                .recipients
                .iter()
                .map(|r| format!("{} <{}>", r.name, r.email))
                .collect();
        }
    }
    Ok(view)
}

/// Sends the test alert for `viewer` (the administrator): to every configured destination,
/// the administrators' addresses, and the viewer's own.
pub async fn send_test(
    desk: &AlertDesk,
    viewer: &Account,
    accounts: &[Account],
) -> Vec<TestAlertRow> {
    let own: Vec<(String, String)> = viewer
        .alerts
        .email
        .iter()
        .map(|e| (viewer.display_name.clone(), e.clone()))
        .collect();
    let to = crate::alerts::trial::destinations(&desk.settings, accounts, &own);
    let who = format!("{}（{}）", viewer.display_name, viewer.id);
    crate::alerts::trial::send(&desk.senders, to, &who, &desk.base_url)
        .await
        .into_iter()
        .map(|o| {
            let (error, error_help) = match o.result {
                Ok(()) => (String::new(), None),
                Err(e) => (e.text, Some(e.code.href())),
            };
            TestAlertRow {
                destination: o.destination.label(),
                ok: error_help.is_none(),
                error,
                error_help,
            }
        })
        .collect()
}
