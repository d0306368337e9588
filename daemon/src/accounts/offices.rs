//! The offices this appliance sends for, as registered in the store: 事業所番号 (check digit
//! verified), name, federation user ID (`KJ…`) and its password (sealed, see `secrets`), the
//! client certificate (a reference to its files) and its expiry, the corporation, and the
//! standing (active, or ended from a processing month, with a successor number).
//!
//! Offices come from two places: `[[offices]]` in the config file (their password stays in the
//! file named there; the store keeps a copy of everything but the secret, for the UI and the
//! audit log) and `kaigo-relay office add` or the admin UI (the store holds them, the password
//! sealed). The offices the pipeline works with are both together; an office number in the
//! config file wins over a registered one.
//!
//! Invariants: a registered office's client certificate has been loaded once (certificate and
//! key match, the PKCS#12 passphrase opens it) before the record is stored; no secret is stored
//! in clear; an office is never deleted, only ended (its history stays).

use std::collections::BTreeMap;
use std::path::PathBuf;

use admin_ui::help::{Code, code};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::secrets::{Sealed, SecretError, SecretKey};
use crate::claim::{FederationUserId, Month, OfficeNumber};
use crate::config::{ClientIdentity, OfficeSettings, Secret};
use crate::store::{NewAudit, Put, Store, StoreError};

/// The client certificate of an office, by reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClientRef {
    /// PEM certificate (chain) and key files.
    Pem {
        /// The certificate file.
        cert_file: PathBuf,
        /// The key file.
        key_file: PathBuf,
    },
    /// A PKCS#12 bundle and its passphrase (sealed; `None` for config-managed offices).
    Pkcs12 {
        /// The bundle.
        file: PathBuf,
        /// The passphrase.
        password: Option<Sealed>,
    },
}

/// What the client certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    /// Subject (distinguished name).
    pub subject: String,
    /// Not valid after.
    pub not_after: Timestamp,
}

/// One office, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfficeRecord {
    /// 事業所番号.
    pub office_number: String,
    /// 事業所名.
    pub name: String,
    /// Federation user ID (KJ…).
    pub federation_user_id: String,
    /// Its password, sealed; `None` when the config file holds it.
    pub federation_password: Option<Sealed>,
    /// The client certificate.
    pub client: ClientRef,
    /// Subject and expiry of the client certificate, read when it was registered or the
    /// daemon last started.
    pub certificate: Option<CertificateInfo>,
    /// The corporation it belongs to.
    pub corporation: Option<String>,
    /// First processing month in which it no longer sends.
    pub ended_from_month: Option<Month>,
    /// The number that replaced it.
    pub successor: Option<String>,
    /// Managed in the config file (read-only here).
    pub managed_by_config: bool,
    /// Registered.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// An office to register.
#[derive(Debug, Clone)]
pub struct NewOffice {
    /// 事業所番号.
    pub office_number: String,
    /// 事業所名.
    pub name: String,
    /// Federation user ID.
    pub federation_user_id: String,
    /// Its password.
    pub federation_password: String,
    /// PEM pair, or PKCS#12 bundle with its passphrase.
    pub client: NewClient,
    /// The corporation, if any.
    pub corporation: Option<String>,
}

/// The certificate of an office to register.
#[derive(Debug, Clone)]
pub enum NewClient {
    /// PEM files.
    Pem {
        /// Certificate.
        cert_file: PathBuf,
        /// Key.
        key_file: PathBuf,
    },
    /// PKCS#12 file and passphrase.
    Pkcs12 {
        /// Bundle.
        file: PathBuf,
        /// Passphrase.
        password: String,
    },
}

/// Why an office cannot be registered or changed; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum OfficeError {
    /// A field is wrong (and its catalogue entry).
    #[error("{1}")]
    Invalid(Code, String),
    /// The office number is registered already.
    #[error("事業所番号 {0} は既に登録されています (already registered)")]
    Exists(String),
    /// No such office.
    #[error("事業所番号 {0} は登録されていません (not registered)")]
    Unknown(String),
    /// The office is managed in the config file.
    #[error(
        "事業所 {0} は設定ファイルの [[offices]] で管理されています。設定ファイルで変更してください (managed in the config file; change it there)"
    )]
    ManagedByConfig(String),
    /// The certificate does not load.
    #[error("電子証明書を使えません (the client certificate cannot be used): {0}")]
    Certificate(String),
    /// Sealing failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OfficeError {
    /// Its entry in the message catalogue (`None` for a store failure, which is the
    /// system's, not the office's).
    pub fn code(&self) -> Option<Code> {
        Some(match self {
            OfficeError::Invalid(c, _) => *c,
            OfficeError::Exists(_) => code::OFFICES_EXISTS,
            OfficeError::Unknown(_) => code::OFFICES_UNKNOWN,
            OfficeError::ManagedByConfig(_) => code::OFFICES_MANAGED_BY_CONFIG,
            OfficeError::Certificate(_) => code::OFFICES_CERTIFICATE,
            OfficeError::Secret(SecretError::KeyFile { .. } | SecretError::KeyLength(_)) => {
                code::OFFICES_SECRET_KEY
            }
            OfficeError::Secret(SecretError::Open) => code::OFFICES_SECRET_OPEN,
            OfficeError::Secret(SecretError::Random(_)) => code::SYSTEM_RANDOM_UNAVAILABLE,
            OfficeError::Store(_) => return None,
        })
    }
}

/// Subject and expiry of an office's client certificate (the first certificate of its chain),
/// loading it exactly as the gateway client will.
pub fn certificate_info(office: &OfficeSettings) -> anyhow::Result<CertificateInfo> {
    let (certs, _key) = crate::transport::client_identity(office)?;
    let first = certs
        .first()
        .ok_or_else(|| anyhow::anyhow!("証明書がありません (no certificate)"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref())
        .map_err(|e| anyhow::anyhow!("証明書を読めません (unreadable certificate): {e}"))?;
    let not_after = Timestamp::from_second(cert.validity().not_after.timestamp())?;
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        not_after,
    })
}

impl OfficeRecord {
    /// The record of a config-managed office (no secret in it).
    pub fn from_config(o: &OfficeSettings, now: Timestamp) -> OfficeRecord {
        let client = match &o.client_identity {
            ClientIdentity::Pem {
                cert_file,
                key_file,
            } => ClientRef::Pem {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            },
            ClientIdentity::Pkcs12 { file, .. } => ClientRef::Pkcs12 {
                file: file.clone(),
                password: None,
            },
        };
        OfficeRecord {
            office_number: o.office_number.to_string(),
            name: o.name.clone(),
            federation_user_id: o.federation_user_id.as_str().to_owned(),
            federation_password: None,
            client,
            certificate: certificate_info(o).ok(),
            corporation: None,
            ended_from_month: o.ended_from_month,
            successor: None,
            managed_by_config: true,
            created_at: now,
            updated_at: now,
        }
    }

    /// The settings the pipeline needs, with the secrets opened.
    pub fn to_settings(&self, key: &SecretKey) -> Result<OfficeSettings, OfficeError> {
        let office_number: OfficeNumber =
            self.office_number
                .parse()
                .map_err(|e: crate::claim::IdError| {
                    OfficeError::Invalid(code::OFFICES_INVALID, e.to_string())
                })?;
        let federation_user_id: FederationUserId =
            self.federation_user_id
                .parse()
                .map_err(|e: crate::claim::IdError| {
                    OfficeError::Invalid(code::OFFICES_INVALID, e.to_string())
                })?;
        let sealed = self
            .federation_password
            .as_ref()
            .ok_or_else(|| OfficeError::ManagedByConfig(self.office_number.clone()))?;
        let password = key.open(&self.office_number, sealed)?;
        let client_identity = match &self.client {
            ClientRef::Pem {
                cert_file,
                key_file,
            } => ClientIdentity::Pem {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            },
            ClientRef::Pkcs12 { file, password } => {
                let sealed = password
                    .as_ref()
                    .ok_or_else(|| OfficeError::ManagedByConfig(self.office_number.clone()))?;
                ClientIdentity::Pkcs12 {
                    file: file.clone(),
                    password: Secret::new(key.open(&p12_context(&self.office_number), sealed)?),
                }
            }
        };
        Ok(OfficeSettings {
            office_number,
            name: self.name.clone(),
            federation_user_id,
            federation_password: Secret::new(password),
            client_identity,
            ended_from_month: self.ended_from_month,
        })
    }
}

/// The associated data of a PKCS#12 passphrase (distinct from the federation password's).
fn p12_context(office: &str) -> String {
    format!("{office}/pkcs12")
}

/// Registers an office: checks the number and user ID, loads the certificate as the gateway
/// client will, seals the secrets, and stores it with an audit entry naming `actor`.
pub fn register(
    store: &Store,
    key: &SecretKey,
    new: NewOffice,
    actor: &str,
    now: Timestamp,
) -> Result<OfficeRecord, OfficeError> {
    let number: OfficeNumber =
        new.office_number
            .trim()
            .parse()
            .map_err(|e: crate::claim::IdError| {
                OfficeError::Invalid(code::OFFICES_INVALID, e.to_string())
            })?;
    let user: FederationUserId =
        new.federation_user_id
            .trim()
            .parse()
            .map_err(|e: crate::claim::IdError| {
                OfficeError::Invalid(code::OFFICES_INVALID, e.to_string())
            })?;
    if new.name.trim().is_empty() {
        return Err(OfficeError::Invalid(
            code::OFFICES_NAME_MISSING,
            "事業所名を入れてください (the name is empty)".into(),
        ));
    }
    if new.federation_password.is_empty() {
        return Err(OfficeError::Invalid(
            code::OFFICES_PASSWORD_MISSING,
            "国保連の請求用パスワードを入れてください (the federation password is empty)".into(),
        ));
    }
    if let Some(existing) = store.office_record(&number.to_string())? {
        return Err(if existing.managed_by_config {
            OfficeError::ManagedByConfig(existing.office_number)
        } else {
            OfficeError::Exists(existing.office_number)
        });
    }
    if let Some(c) = &new.corporation
        && !store.corporations()?.iter().any(|corp| &corp.id == c)
    {
        return Err(OfficeError::Invalid(
            code::OFFICES_CORPORATION_UNKNOWN,
            format!("法人 {c} は登録されていません (no such corporation)"),
        ));
    }
    let n = number.to_string();
    let (client, identity) = sealed_client(key, &n, new.client)?;
    let settings = OfficeSettings {
        office_number: number.clone(),
        name: new.name.trim().to_owned(),
        federation_user_id: user.clone(),
        federation_password: Secret::new(new.federation_password.clone()),
        client_identity: identity,
        ended_from_month: None,
    };
    let certificate = checked_certificate(&settings)?;
    let record = OfficeRecord {
        office_number: n.clone(),
        name: settings.name.clone(),
        federation_user_id: user.as_str().to_owned(),
        federation_password: Some(key.seal(&n, &new.federation_password)?),
        client,
        certificate: Some(certificate),
        corporation: new.corporation,
        ended_from_month: None,
        successor: None,
        managed_by_config: false,
        created_at: now,
        updated_at: now,
    };
    store
        .put_office(
            record.clone(),
            Put::New,
            Some(NewAudit {
                actor: Some(actor.to_owned()),
                action: "office_added".into(),
                target: Some(n.clone()),
                detail: format!(
                    "{}（{}）証明書 {} / certificate until {}",
                    record.name,
                    record.federation_user_id,
                    record
                        .certificate
                        .as_ref()
                        .map(|c| c.subject.as_str())
                        .unwrap_or(""),
                    record
                        .certificate
                        .as_ref()
                        .map(|c| crate::timefmt::jst_minutes(c.not_after))
                        .unwrap_or_default()
                ),
                ..NewAudit::default()
            }),
        )
        .map_err(|e| match e {
            StoreError::Exists(n) => OfficeError::Exists(n),
            other => OfficeError::Store(other),
        })?;
    Ok(record)
}

/// The stored form of a new certificate (its passphrase sealed) and the form the gateway
/// client uses.
fn sealed_client(
    key: &SecretKey,
    office: &str,
    client: NewClient,
) -> Result<(ClientRef, ClientIdentity), OfficeError> {
    Ok(match client {
        NewClient::Pem {
            cert_file,
            key_file,
        } => (
            ClientRef::Pem {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            },
            ClientIdentity::Pem {
                cert_file,
                key_file,
            },
        ),
        NewClient::Pkcs12 { file, password } => (
            ClientRef::Pkcs12 {
                file: file.clone(),
                password: Some(key.seal(&p12_context(office), &password)?),
            },
            ClientIdentity::Pkcs12 {
                file,
                password: Secret::new(password),
            },
        ),
    })
}

/// The certificate's subject and expiry, once it is proven to work as the gateway client
/// will use it (a pair that does not match fails here, not at the first send).
fn checked_certificate(settings: &OfficeSettings) -> Result<CertificateInfo, OfficeError> {
    crate::transport::tls_config(rustls::RootCertStore::empty(), &[], settings)
        .map_err(|e| OfficeError::Certificate(format!("{e:#}")))?;
    certificate_info(settings).map_err(|e| OfficeError::Certificate(format!("{e:#}")))
}

/// The office registered on the appliance as `number` (one in the config file is changed
/// there, not by a command).
fn registered(store: &Store, number: &str) -> Result<OfficeRecord, OfficeError> {
    let record = store
        .office_record(number.trim())?
        .ok_or_else(|| OfficeError::Unknown(number.trim().to_owned()))?;
    if record.managed_by_config {
        return Err(OfficeError::ManagedByConfig(record.office_number));
    }
    Ok(record)
}

/// What `office update` changes of a registered office; `None` keeps it.
#[derive(Debug, Clone, Default)]
pub struct OfficeUpdate {
    /// A new federation password.
    pub federation_password: Option<String>,
    /// A new certificate.
    pub client: Option<NewClient>,
}

/// Changes the federation password or the certificate of an office registered on the
/// appliance, or (with neither) reads its certificate again where it is, after the files were
/// replaced in place. The certificate is proven to work before anything is stored, and its
/// expiry (which the expiry alert reads) is read again.
pub fn update(
    store: &Store,
    key: &SecretKey,
    number: &str,
    change: OfficeUpdate,
    actor: &str,
    now: Timestamp,
) -> Result<OfficeRecord, OfficeError> {
    let mut record = registered(store, number)?;
    if change.federation_password.as_deref() == Some("") {
        return Err(OfficeError::Invalid(
            code::OFFICES_PASSWORD_MISSING,
            "国保連の請求用パスワードを入れてください (the federation password is empty)".into(),
        ));
    }
    let mut settings = record.to_settings(key)?;
    let mut what = Vec::new();
    if let Some(client) = change.client {
        let (stored, identity) = sealed_client(key, &record.office_number, client)?;
        settings.client_identity = identity;
        record.client = stored;
        what.push("証明書を更新 / certificate replaced");
    } else {
        what.push("証明書を読み直し / certificate read again");
    }
    if let Some(p) = &change.federation_password {
        settings.federation_password = Secret::new(p.clone());
        record.federation_password = Some(key.seal(&record.office_number, p)?);
        what.push("国保連のパスワードを変更 / federation password changed");
    }
    let certificate = checked_certificate(&settings)?;
    let detail = format!(
        "{}。証明書 {} / certificate until {}",
        what.join("、"),
        certificate.subject,
        crate::timefmt::jst_minutes(certificate.not_after)
    );
    record.certificate = Some(certificate);
    record.updated_at = now;
    let n = record.office_number.clone();
    store.put_office(
        record.clone(),
        Put::Replace,
        Some(NewAudit {
            actor: Some(actor.to_owned()),
            action: "office_updated".into(),
            target: Some(n),
            detail,
            ..NewAudit::default()
        }),
    )?;
    Ok(record)
}

/// Ends an office from a processing month (no sending, no notice polling after its last
/// payment notices; its history stays), optionally naming its successor number.
pub fn end(
    store: &Store,
    number: &str,
    from: Month,
    successor: Option<String>,
    actor: &str,
    now: Timestamp,
) -> Result<OfficeRecord, OfficeError> {
    let mut record = registered(store, number)?;
    if let Some(s) = &successor {
        let n: OfficeNumber = s.trim().parse().map_err(|e: crate::claim::IdError| {
            OfficeError::Invalid(code::OFFICES_INVALID, e.to_string())
        })?;
        if n.to_string() == record.office_number {
            return Err(OfficeError::Invalid(
                code::OFFICES_SUCCESSOR_SAME,
                "後継の事業所番号が同じ番号です (the successor is the same number)".into(),
            ));
        }
        record.successor = Some(n.to_string());
    }
    record.ended_from_month = Some(from);
    record.updated_at = now;
    let detail = format!(
        "{} から終了 / ended from {from}{}",
        from.to_japanese(),
        record
            .successor
            .as_ref()
            .map(|s| format!("（後継 {s}）"))
            .unwrap_or_default()
    );
    store.put_office(
        record.clone(),
        Put::Replace,
        Some(NewAudit {
            actor: Some(actor.to_owned()),
            action: "office_ended".into(),
            target: Some(record.office_number.clone()),
            detail,
            ..NewAudit::default()
        }),
    )?;
    Ok(record)
}

/// Writes the config file's offices into the store (without their secrets), so that the UI and
/// the audit log know them; refreshes their certificate expiry. Returns how many changed.
pub fn sync_config_offices(
    store: &Store,
    config: &[OfficeSettings],
    now: Timestamp,
) -> Result<usize, StoreError> {
    let existing: BTreeMap<String, OfficeRecord> = store
        .office_records()?
        .into_iter()
        .map(|r| (r.office_number.clone(), r))
        .collect();
    let mut changed = 0;
    for o in config {
        let mut record = OfficeRecord::from_config(o, now);
        if let Some(old) = existing.get(&record.office_number) {
            record.created_at = old.created_at;
            record.corporation = old.corporation.clone();
            record.successor = old.successor.clone();
            let mut same = record.clone();
            same.updated_at = old.updated_at;
            if &same == old {
                continue;
            }
        }
        let audit = NewAudit {
            actor: None,
            action: "office_synced_from_config".into(),
            target: Some(record.office_number.clone()),
            detail: format!(
                "設定ファイルの事業所 {} / office from the config file",
                record.name
            ),
            ..NewAudit::default()
        };
        store.put_office(record, Put::Replace, Some(audit))?;
        changed += 1;
    }
    Ok(changed)
}

/// The offices the pipeline works with: the config file's, then the registered ones whose
/// numbers the config file does not hold. A registered office whose secrets do not open is
/// left out and named in the second list, with the reason.
pub fn effective_offices(
    config: &[OfficeSettings],
    records: &[OfficeRecord],
    key: &SecretKey,
) -> (Vec<OfficeSettings>, Vec<(String, OfficeError)>) {
    let mut out: Vec<OfficeSettings> = config.to_vec();
    let mut problems = Vec::new();
    for r in records.iter().filter(|r| !r.managed_by_config) {
        if config
            .iter()
            .any(|c| c.office_number.to_string() == r.office_number)
        {
            continue;
        }
        match r.to_settings(key) {
            Ok(s) => out.push(s),
            Err(e) => problems.push((r.office_number.clone(), e)),
        }
    }
    (out, problems)
}
