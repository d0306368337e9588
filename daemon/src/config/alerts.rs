//! The `[alerts]` section: the language of messages, the admin UI address their links point
//! to, the rate limit, retries and the daily digest time, the mail server
//! (`[alerts.mail]`), webhooks (`[[alerts.webhook]]`) and recipients who are not accounts
//! (`[[alerts.recipient]]`). Parsed like the rest of the config: unknown keys rejected, units in
//! key names, the SMTP password and webhook secrets only by `*_file`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Secret, invalid, read_secret};
use crate::alerts::kinds::Group;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    #[serde(default = "d_language")]
    language: String,
    #[serde(default)]
    admin_url: Option<String>,
    #[serde(default = "d_max_per_hour")]
    max_per_destination_per_hour: u32,
    #[serde(default = "d_retry_initial_secs")]
    retry_initial_secs: u64,
    #[serde(default = "d_retry_max_secs")]
    retry_max_secs: u64,
    #[serde(default = "d_give_up_after_hours")]
    give_up_after_hours: u64,
    #[serde(default = "d_digest_at_jst")]
    digest_at_jst: String,
    #[serde(default = "d_certificate_warning_days")]
    certificate_warning_days: u32,
    #[serde(default)]
    mail: Option<RawMail>,
    #[serde(default)]
    webhook: Vec<RawWebhook>,
    #[serde(default)]
    recipient: Vec<RawRecipient>,
}

impl Default for RawAlerts {
    fn default() -> Self {
        RawAlerts {
            language: d_language(),
            admin_url: None,
            max_per_destination_per_hour: d_max_per_hour(),
            retry_initial_secs: d_retry_initial_secs(),
            retry_max_secs: d_retry_max_secs(),
            give_up_after_hours: d_give_up_after_hours(),
            digest_at_jst: d_digest_at_jst(),
            certificate_warning_days: d_certificate_warning_days(),
            mail: None,
            webhook: Vec::new(),
            recipient: Vec::new(),
        }
    }
}

fn d_language() -> String {
    "ja".into()
}
fn d_max_per_hour() -> u32 {
    12
}
fn d_retry_initial_secs() -> u64 {
    30
}
fn d_retry_max_secs() -> u64 {
    1800
}
fn d_give_up_after_hours() -> u64 {
    72
}
fn d_digest_at_jst() -> String {
    "08:00".into()
}
fn d_certificate_warning_days() -> u32 {
    30
}
fn d_smtp_timeout_secs() -> u64 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMail {
    server: String,
    port: Option<u16>,
    #[serde(default = "d_security")]
    security: String,
    username: Option<String>,
    password_file: Option<PathBuf>,
    from: String,
    ca_file: Option<PathBuf>,
    #[serde(default = "d_smtp_timeout_secs")]
    timeout_secs: u64,
}

fn d_security() -> String {
    "starttls".into()
}

/// The scope keys shared by webhooks and recipients (not a serde `flatten`, which would
/// defeat `deny_unknown_fields`).
struct RawScope {
    offices: Vec<String>,
    corporation: Option<String>,
    groups: Option<Vec<String>>,
    digest: bool,
    language: Option<String>,
}

macro_rules! raw_scope {
    ($r:expr) => {
        RawScope {
            offices: $r.offices,
            corporation: $r.corporation,
            groups: $r.groups,
            digest: $r.digest,
            language: $r.language,
        }
    };
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: String,
    url: String,
    secret_file: PathBuf,
    ca_file: Option<PathBuf>,
    #[serde(default = "d_smtp_timeout_secs")]
    timeout_secs: u64,
    #[serde(default)]
    offices: Vec<String>,
    corporation: Option<String>,
    groups: Option<Vec<String>>,
    #[serde(default)]
    digest: bool,
    language: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipient {
    name: String,
    email: String,
    #[serde(default)]
    offices: Vec<String>,
    corporation: Option<String>,
    groups: Option<Vec<String>>,
    #[serde(default)]
    digest: bool,
    language: Option<String>,
}

/// The language of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    /// Japanese.
    Ja,
    /// English.
    En,
    /// Japanese, then English.
    Both,
}

impl Language {
    /// `ja`, `en` or `both`.
    pub fn parse(s: &str) -> Option<Language> {
        match s {
            "ja" => Some(Language::Ja),
            "en" => Some(Language::En),
            "both" => Some(Language::Both),
            _ => None,
        }
    }

    /// Whether Japanese text is included.
    pub fn has_ja(self) -> bool {
        self != Language::En
    }

    /// Whether English text is included.
    pub fn has_en(self) -> bool {
        self != Language::Ja
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailSecurity {
    /// Submission (587) upgraded with STARTTLS; refused when the server does not offer it.
    StartTls,
    /// Implicit TLS (465).
    Tls,
    /// Plain SMTP: only to a mail server on this machine (127.0.0.1 / ::1 / localhost).
    None,
}

/// The mail server that sends alerts.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// Host name (checked against its certificate).
    pub server: String,
    /// Port (587 for STARTTLS, 465 for TLS, 25 for plain by default).
    pub port: u16,
    /// STARTTLS, implicit TLS or (local only) none.
    pub security: MailSecurity,
    /// SMTP AUTH user and password, when the server wants them.
    pub credentials: Option<(String, Secret)>,
    /// `From:`, e.g. `kaigo-relay <relay@example.jp>`.
    pub from: String,
    /// An extra CA to trust (a private mail server); the system's roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// Connection and command timeout.
    pub timeout: Duration,
}

/// Whom a webhook or config recipient hears about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Only alerts about these offices (empty: every office and the appliance itself).
    pub offices: BTreeSet<String>,
    /// Only alerts about this corporation's offices.
    pub corporation: Option<String>,
    /// Only these groups (`None`: every group).
    pub groups: Option<BTreeSet<Group>>,
    /// Collect into one message a day instead of one message each.
    pub digest: bool,
    /// The language of its messages (`None`: `alerts.language`).
    pub language: Option<Language>,
}

impl Scope {
    /// Whether the scope covers the whole appliance (no office or corporation limit).
    pub fn is_everything(&self) -> bool {
        self.offices.is_empty() && self.corporation.is_none()
    }
}

/// A webhook: HTTPS POST of a JSON body signed with HMAC-SHA256.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Its name (shown in the UI and logs; part of the delivery's destination).
    pub name: String,
    /// `https://…`.
    pub url: http::Uri,
    /// The HMAC key.
    pub secret: Secret,
    /// An extra CA to trust; the system's roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// Request timeout.
    pub timeout: Duration,
    /// What it hears about.
    pub scope: Scope,
}

/// A mail recipient who is not an account (a head-office mailbox).
#[derive(Debug, Clone)]
pub struct RecipientSettings {
    /// Name shown in the UI and the `To:` header.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// What it hears about.
    pub scope: Scope,
}

/// Validated alert settings.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Default language of messages.
    pub language: Language,
    /// The admin UI's address for links (`https://relay.example.local:8443`); `None`: made
    /// from the host name and the admin port.
    pub admin_url: Option<String>,
    /// At most this many messages to one destination per hour; beyond, they are combined.
    pub max_per_destination_per_hour: u32,
    /// First retry delay after a failed delivery.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// A delivery still failing after this long is given up (and logged as an error).
    pub give_up_after: Duration,
    /// When the daily digest is sent (JST hour, minute).
    pub digest_at_jst: (i8, i8),
    /// A certificate expiring within this many days raises an alert.
    pub certificate_warning_days: u32,
    /// The mail server (`None`: no e-mail is sent; the alerts still show in the UI).
    pub mail: Option<MailSettings>,
    /// Webhooks.
    pub webhooks: Vec<WebhookSettings>,
    /// Recipients who are not accounts.
    pub recipients: Vec<RecipientSettings>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            language: Language::Ja,
            admin_url: None,
            max_per_destination_per_hour: d_max_per_hour(),
            retry_initial: Duration::from_secs(d_retry_initial_secs()),
            retry_max: Duration::from_secs(d_retry_max_secs()),
            give_up_after: Duration::from_secs(d_give_up_after_hours() * 3600),
            digest_at_jst: (8, 0),
            certificate_warning_days: d_certificate_warning_days(),
            mail: None,
            webhooks: Vec::new(),
            recipients: Vec::new(),
        }
    }
}

fn language(key: &str, s: &str) -> Result<Language, ConfigError> {
    Language::parse(s).ok_or_else(|| {
        invalid(
            key,
            "ja、en、both のどれかにしてください (use ja, en or both)",
        )
    })
}

fn scope(key: &str, raw: RawScope) -> Result<Scope, ConfigError> {
    let mut offices = BTreeSet::new();
    for o in raw.offices {
        let n: crate::claim::OfficeNumber = o.parse().map_err(|_| {
            invalid(
                format!("{key}.offices"),
                format!("事業所番号 {o} は10桁の数字ではありません (not a 10-digit office number)"),
            )
        })?;
        offices.insert(n.to_string());
    }
    let groups = match raw.groups {
        None => None,
        Some(list) => {
            let mut set = BTreeSet::new();
            for g in list {
                set.insert(Group::from_name(&g).ok_or_else(|| {
                    invalid(
                        format!("{key}.groups"),
                        format!(
                            "「{g}」は通知の種類ではありません。次から選んでください (not a group; use one of): {}",
                            Group::ALL.map(|g| g.as_str()).join(", ")
                        ),
                    )
                })?);
            }
            Some(set)
        }
    };
    let language = match raw.language {
        None => None,
        Some(l) => Some(language(&format!("{key}.language"), &l)?),
    };
    Ok(Scope {
        offices,
        corporation: raw.corporation.filter(|c| !c.trim().is_empty()),
        groups,
        digest: raw.digest,
        language,
    })
}

/// Whether `host` names this machine.
fn is_local(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn validate(
    raw: RawAlerts,
    abs: &dyn Fn(&Path) -> PathBuf,
) -> Result<AlertSettings, ConfigError> {
    let lang = language("alerts.language", &raw.language)?;
    if let Some(url) = &raw.admin_url {
        let ok = url
            .parse::<http::Uri>()
            .ok()
            .is_some_and(|u| u.scheme_str() == Some("https") && u.host().is_some());
        if !ok {
            return Err(invalid(
                "alerts.admin_url",
                "「https://kaigo-relay.local:8443」のように https の URL で書いてください (write an https URL)",
            ));
        }
    }
    if raw.max_per_destination_per_hour == 0 {
        return Err(invalid(
            "alerts.max_per_destination_per_hour",
            "1 以上にしてください (must be at least 1)",
        ));
    }
    let digest_at_jst = super::parse_hh_mm(&raw.digest_at_jst).ok_or_else(|| {
        invalid(
            "alerts.digest_at_jst",
            "「08:00」のように 時:分 で書いてください (write it as HH:MM)",
        )
    })?;
    let retry_initial = super::secs("alerts.retry_initial_secs", raw.retry_initial_secs, 1)?;
    let retry_max = super::secs("alerts.retry_max_secs", raw.retry_max_secs, 1)?.max(retry_initial);
    let give_up_after = super::secs(
        "alerts.give_up_after_hours",
        raw.give_up_after_hours.saturating_mul(3600),
        3600,
    )?;

    let mail = match raw.mail {
        None => None,
        Some(m) => {
            let security = match m.security.as_str() {
                "starttls" => MailSecurity::StartTls,
                "tls" => MailSecurity::Tls,
                "none" => MailSecurity::None,
                _ => {
                    return Err(invalid(
                        "alerts.mail.security",
                        "starttls、tls、none のどれかにしてください (use starttls, tls or none)",
                    ));
                }
            };
            if m.server.trim().is_empty() {
                return Err(invalid(
                    "alerts.mail.server",
                    "メールサーバーの名前を入れてください (the server is empty)",
                ));
            }
            if security == MailSecurity::None && !is_local(&m.server) {
                return Err(invalid(
                    "alerts.mail.security",
                    "暗号化なし (none) はこの装置の中のメールサーバー (127.0.0.1) にだけ使えます。starttls か tls にしてください (plain SMTP only to a server on this machine; use starttls or tls)",
                ));
            }
            let port = m.port.unwrap_or(match security {
                MailSecurity::StartTls => 587,
                MailSecurity::Tls => 465,
                MailSecurity::None => 25,
            });
            let credentials = match (m.username, m.password_file) {
                (None, None) => None,
                (Some(u), Some(p)) => {
                    Some((u, read_secret("alerts.mail.password_file", &abs(&p))?))
                }
                _ => {
                    return Err(invalid(
                        "alerts.mail.username",
                        "username と password_file は両方とも書いてください (give both username and password_file)",
                    ));
                }
            };
            if m.from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(invalid(
                    "alerts.mail.from",
                    "「kaigo-relay <relay@example.jp>」のようにメールアドレスを書いてください (not a mail address)",
                ));
            }
            Some(MailSettings {
                server: m.server,
                port,
                security,
                credentials,
                from: m.from,
                ca_file: m.ca_file.map(|p| abs(&p)),
                timeout: super::secs("alerts.mail.timeout_secs", m.timeout_secs, 1)?,
            })
        }
    };

    let mut webhooks: Vec<WebhookSettings> = Vec::new();
    for (i, w) in raw.webhook.into_iter().enumerate() {
        let key = format!("alerts.webhook[{i}]");
        if w.name.trim().is_empty() || webhooks.iter().any(|o| o.name == w.name) {
            return Err(invalid(
                format!("{key}.name"),
                "Webhook ごとに別の名前を付けてください (each webhook needs its own name)",
            ));
        }
        let url: http::Uri = w
            .url
            .parse()
            .ok()
            .filter(|u: &http::Uri| u.scheme_str() == Some("https") && u.host().is_some())
            .ok_or_else(|| {
                invalid(
                    format!("{key}.url"),
                    "https:// で始まる URL を書いてください (write an https URL)",
                )
            })?;
        webhooks.push(WebhookSettings {
            secret: read_secret(&format!("{key}.secret_file"), &abs(&w.secret_file))?,
            name: w.name,
            url,
            ca_file: w.ca_file.map(|p| abs(&p)),
            timeout: super::secs(&format!("{key}.timeout_secs"), w.timeout_secs, 1)?,
            scope: scope(&key, raw_scope!(w))?,
        });
    }

    let mut recipients = Vec::new();
    for (i, r) in raw.recipient.into_iter().enumerate() {
        let key = format!("alerts.recipient[{i}]");
        if r.email.parse::<lettre::Address>().is_err() {
            return Err(invalid(
                format!("{key}.email"),
                format!(
                    "{} はメールアドレスではありません (not a mail address)",
                    r.email
                ),
            ));
        }
        recipients.push(RecipientSettings {
            name: r.name,
            email: r.email,
            scope: scope(&key, raw_scope!(r))?,
        });
    }
    if mail.is_none() && !recipients.is_empty() {
        return Err(invalid(
            "alerts.mail",
            "alerts.recipient にメールを送るには [alerts.mail] でメールサーバーを設定してください (recipients need [alerts.mail])",
        ));
    }

    Ok(AlertSettings {
        language: lang,
        admin_url: raw.admin_url.map(|u| u.trim_end_matches('/').to_owned()),
        max_per_destination_per_hour: raw.max_per_destination_per_hour,
        retry_initial,
        retry_max,
        give_up_after,
        digest_at_jst,
        certificate_warning_days: raw.certificate_warning_days,
        mail,
        webhooks,
        recipients,
    })
}
