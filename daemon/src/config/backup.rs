//! The `[backup]` section: schedule, drills, alert ages, the encryption key file, and the sites
//! (`[[backup.sites]]`), each a directory or an S3-compatible bucket with its own retention.
//! Parsed like the rest of the config: unknown keys rejected, units in key names, credentials
//! only by `*_file`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Secret, invalid, read_secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackup {
    #[serde(default = "d_interval_minutes")]
    interval_minutes: u64,
    #[serde(default = "d_true")]
    after_account_change: bool,
    #[serde(default = "d_drill_interval_hours")]
    drill_interval_hours: u64,
    #[serde(default = "d_max_copy_age_hours")]
    max_copy_age_hours: u64,
    #[serde(default = "d_max_drill_age_hours")]
    max_drill_age_hours: u64,
    key_file: Option<PathBuf>,
    work_dir: Option<PathBuf>,
    #[serde(default)]
    sites: Vec<RawSite>,
}

impl Default for RawBackup {
    fn default() -> Self {
        RawBackup {
            interval_minutes: d_interval_minutes(),
            after_account_change: true,
            drill_interval_hours: d_drill_interval_hours(),
            max_copy_age_hours: d_max_copy_age_hours(),
            max_drill_age_hours: d_max_drill_age_hours(),
            key_file: None,
            work_dir: None,
            sites: Vec::new(),
        }
    }
}

fn d_interval_minutes() -> u64 {
    60
}
fn d_true() -> bool {
    true
}
fn d_drill_interval_hours() -> u64 {
    24
}
fn d_max_copy_age_hours() -> u64 {
    26
}
fn d_max_drill_age_hours() -> u64 {
    8 * 24
}
fn d_keep_hourly() -> u32 {
    24
}
fn d_keep_daily() -> u32 {
    14
}
fn d_keep_weekly() -> u32 {
    8
}
fn d_keep_monthly() -> u32 {
    24
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    name: String,
    kind: String,
    /// directory
    path: Option<PathBuf>,
    /// s3
    endpoint: Option<String>,
    bucket: Option<String>,
    #[serde(default)]
    prefix: String,
    #[serde(default = "d_region")]
    region: String,
    #[serde(default)]
    path_style: bool,
    credentials_file: Option<PathBuf>,
    encrypt: Option<bool>,
    #[serde(default = "d_keep_hourly")]
    keep_hourly: u32,
    #[serde(default = "d_keep_daily")]
    keep_daily: u32,
    #[serde(default = "d_keep_weekly")]
    keep_weekly: u32,
    #[serde(default = "d_keep_monthly")]
    keep_monthly: u32,
}

fn d_region() -> String {
    "us-east-1".into()
}

/// Validated backup settings.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// A backup runs this often (and on demand).
    pub interval: Duration,
    /// A backup also runs shortly after accounts or offices change.
    pub after_account_change: bool,
    /// A restore drill runs this often, rotating through the sites (0: never).
    pub drill_interval: Duration,
    /// An alert is raised when a site's newest verified copy is older than this.
    pub max_copy_age: Duration,
    /// An alert is raised when a site's last good drill is older than this.
    pub max_drill_age: Duration,
    /// The encryption key of off-site copies (made at set-up when missing).
    pub key_file: PathBuf,
    /// Where snapshots are written before they are uploaded (on the store's disk).
    pub work_dir: PathBuf,
    /// The sites, in order of preference for restore.
    pub sites: Vec<SiteSettings>,
}

impl BackupSettings {
    /// Whether any site encrypts (so a key is needed).
    pub fn needs_key(&self) -> bool {
        self.sites.iter().any(|s| s.encrypt)
    }
}

/// How many copies a site keeps per period; the newest verified copy is kept regardless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The newest copy of each of the last N hours.
    pub hourly: u32,
    /// Days.
    pub daily: u32,
    /// ISO weeks.
    pub weekly: u32,
    /// Months.
    pub monthly: u32,
}

/// One backup site.
#[derive(Debug, Clone)]
pub struct SiteSettings {
    /// Its name, as the UI and the commands show it (letters, digits, `-`, `_`).
    pub name: String,
    /// Where it is.
    pub location: SiteLocation,
    /// Whether copies are encrypted with the backup key before they leave the appliance.
    pub encrypt: bool,
    /// Retention.
    pub retention: Retention,
}

/// Where a site's copies live.
#[derive(Debug, Clone)]
pub enum SiteLocation {
    /// A directory: a local disk, a USB disk or a NAS mount.
    Directory {
        /// The directory.
        path: PathBuf,
    },
    /// An S3-compatible bucket.
    S3 {
        /// `http(s)://host:port` of the service.
        endpoint: String,
        /// Bucket.
        bucket: String,
        /// Key prefix inside the bucket (may be empty).
        prefix: String,
        /// Region name (most S3-compatible services accept any).
        region: String,
        /// Path-style addressing (`endpoint/bucket/key`), which most non-AWS services need.
        path_style: bool,
        /// Access key ID.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: Secret,
    },
}

fn valid_site_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads an S3 credentials file: `access_key_id = …` and `secret_access_key = …` lines (the
/// AWS credentials-file keys; `aws_` prefixes and a `[section]` line are accepted).
fn read_credentials(key: &str, path: &Path) -> Result<(String, Secret), ConfigError> {
    let text = read_secret(key, path)?;
    let (mut id, mut secret) = (None, None);
    for line in text.expose().lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(invalid(
                key,
                format!(
                    "{} の行「{line}」は「名前 = 値」の形ではありません (expected name = value)",
                    path.display()
                ),
            ));
        };
        match k.trim().trim_start_matches("aws_") {
            "access_key_id" => id = Some(v.trim().to_owned()),
            "secret_access_key" => secret = Some(v.trim().to_owned()),
            other => {
                return Err(invalid(
                    key,
                    format!(
                        "{} に知らない項目「{other}」があります (unknown key)",
                        path.display()
                    ),
                ));
            }
        }
    }
    match (id, secret) {
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
            Ok((id, Secret::new(secret)))
        }
        _ => Err(invalid(
            key,
            format!(
                "{} には access_key_id と secret_access_key の両方が必要です (both keys are needed)",
                path.display()
            ),
        )),
    }
}

pub(super) fn validate(
    raw: RawBackup,
    state_dir: &Path,
    abs: &dyn Fn(&Path) -> PathBuf,
) -> Result<BackupSettings, ConfigError> {
    if raw.interval_minutes == 0 {
        return Err(invalid(
            "backup.interval_minutes",
            "1 以上にしてください (must be at least 1)",
        ));
    }
    let mut sites: Vec<SiteSettings> = Vec::new();
    for (i, s) in raw.sites.into_iter().enumerate() {
        let key = |k: &str| format!("backup.sites[{i}].{k}");
        if !valid_site_name(&s.name) {
            return Err(invalid(
                key("name"),
                "英数字と - _ で 32 文字までにしてください (letters, digits, - and _, up to 32)",
            ));
        }
        if sites.iter().any(|o| o.name == s.name) {
            return Err(invalid(
                key("name"),
                format!("「{}」は二度使われています (used twice)", s.name),
            ));
        }
        let (location, default_encrypt) = match s.kind.as_str() {
            "directory" => {
                let Some(path) = s.path else {
                    return Err(invalid(
                        key("path"),
                        "directory の保存先にはフォルダー (path) が必要です (a directory site needs path)",
                    ));
                };
                if s.endpoint.is_some() || s.bucket.is_some() || s.credentials_file.is_some() {
                    return Err(invalid(
                        key("kind"),
                        "endpoint / bucket / credentials_file は s3 の保存先の項目です (those keys are for kind = \"s3\")",
                    ));
                }
                (SiteLocation::Directory { path: abs(&path) }, false)
            }
            "s3" => {
                let (Some(endpoint), Some(bucket), Some(creds)) =
                    (s.endpoint, s.bucket, s.credentials_file)
                else {
                    return Err(invalid(
                        key("kind"),
                        "s3 の保存先には endpoint, bucket, credentials_file が必要です (an s3 site needs endpoint, bucket and credentials_file)",
                    ));
                };
                let uri: http::Uri = endpoint.parse().map_err(|e| {
                    invalid(
                        key("endpoint"),
                        format!("URL として読めません (not a URL): {e}"),
                    )
                })?;
                if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
                    return Err(invalid(
                        key("endpoint"),
                        "https://ホスト名:ポート の形で指定してください (must be https://host[:port])",
                    ));
                }
                if s.path.is_some() {
                    return Err(invalid(
                        key("path"),
                        "path は directory の保存先の項目です (path is for kind = \"directory\")",
                    ));
                }
                let (access_key_id, secret_access_key) =
                    read_credentials(&key("credentials_file"), &abs(&creds))?;
                (
                    SiteLocation::S3 {
                        endpoint: endpoint.trim_end_matches('/').to_owned(),
                        bucket,
                        prefix: s.prefix.trim_matches('/').to_owned(),
                        region: s.region,
                        path_style: s.path_style,
                        access_key_id,
                        secret_access_key,
                    },
                    true,
                )
            }
            other => {
                return Err(invalid(
                    key("kind"),
                    format!(
                        "「{other}」は使えません。\"directory\" か \"s3\" にしてください (must be \"directory\" or \"s3\")"
                    ),
                ));
            }
        };
        let retention = Retention {
            hourly: s.keep_hourly,
            daily: s.keep_daily,
            weekly: s.keep_weekly,
            monthly: s.keep_monthly,
        };
        sites.push(SiteSettings {
            name: s.name,
            location,
            encrypt: s.encrypt.unwrap_or(default_encrypt),
            retention,
        });
    }
    Ok(BackupSettings {
        interval: Duration::from_secs(raw.interval_minutes.saturating_mul(60)),
        after_account_change: raw.after_account_change,
        drill_interval: Duration::from_secs(raw.drill_interval_hours.saturating_mul(3600)),
        max_copy_age: Duration::from_secs(raw.max_copy_age_hours.max(1).saturating_mul(3600)),
        max_drill_age: Duration::from_secs(raw.max_drill_age_hours.max(1).saturating_mul(3600)),
        key_file: raw
            .key_file
            .map(|p| abs(&p))
            .unwrap_or_else(|| state_dir.join("backup.key")),
        work_dir: raw
            .work_dir
            .map(|p| abs(&p))
            .unwrap_or_else(|| state_dir.join("backup-work")),
        sites,
    })
}
