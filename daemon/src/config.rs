//! Configuration: the TOML file is read into raw serde structs that reject unknown keys, then
//! validated into typed settings (durations, URLs, office numbers, loaded secrets).
//!
//! Invariant: nothing past `Settings::load` sees an unvalidated value. Relative paths are
//! resolved against the directory of the config file, durations carry their unit in the key name
//! (`_secs`, `_ms`), and secrets are read from `*_file` paths, never written in the TOML itself.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::claim::{FederationUserId, OfficeNumber};

mod alerts;
mod backup;
pub use alerts::{
    AlertSettings, Language, MailSecurity, MailSettings, RecipientSettings, Scope, WebhookSettings,
};
pub use backup::{BackupSettings, Retention, SiteLocation, SiteSettings};

/// Why a configuration was refused; each message names the key and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("設定ファイル {path} を読めません (cannot read the config file): {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, a wrong type or an unknown key.
    #[error("設定ファイル {path} の書き方に誤りがあります (invalid config): {message}")]
    Parse { path: PathBuf, message: String },
    /// A value that parsed but is not acceptable.
    #[error("設定 {key} が正しくありません (invalid setting {key}): {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: PathBuf,
    intake: RawIntake,
    gateway: RawGateway,
    #[serde(default)]
    relay: RawRelay,
    #[serde(default)]
    mirror: RawMirror,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    offices: Vec<RawOffice>,
    #[serde(default)]
    backup: backup::RawBackup,
    #[serde(default)]
    disk: RawDisk,
    #[serde(default)]
    alerts: alerts::RawAlerts,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    #[serde(default = "defaults::min_free_mib")]
    min_free_mib: u64,
    #[serde(default = "defaults::disk_check_interval_secs")]
    check_interval_secs: u64,
}

impl Default for RawDisk {
    fn default() -> Self {
        RawDisk {
            min_free_mib: defaults::min_free_mib(),
            check_interval_secs: defaults::disk_check_interval_secs(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    #[serde(default = "defaults::admin_enabled")]
    enabled: bool,
    #[serde(default = "defaults::admin_listen")]
    listen: String,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    server_names: Vec<String>,
    #[serde(default = "defaults::session_idle_minutes")]
    session_idle_minutes: u64,
    #[serde(default = "defaults::session_absolute_hours")]
    session_absolute_hours: u64,
    #[serde(default = "defaults::lockout_after_failures")]
    lockout_after_failures: u32,
    #[serde(default = "defaults::lockout_minutes")]
    lockout_minutes: u64,
    #[serde(default = "defaults::login_burst_per_address")]
    login_burst_per_address: u32,
    #[serde(default = "defaults::login_refill_per_address_secs")]
    login_refill_per_address_secs: u64,
    #[serde(default = "defaults::login_burst_per_id")]
    login_burst_per_id: u32,
    #[serde(default = "defaults::login_refill_per_id_secs")]
    login_refill_per_id_secs: u64,
    #[serde(default)]
    metrics_token_file: Option<PathBuf>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            enabled: defaults::admin_enabled(),
            listen: defaults::admin_listen(),
            cert_file: None,
            key_file: None,
            server_names: Vec::new(),
            session_idle_minutes: defaults::session_idle_minutes(),
            session_absolute_hours: defaults::session_absolute_hours(),
            lockout_after_failures: defaults::lockout_after_failures(),
            lockout_minutes: defaults::lockout_minutes(),
            login_burst_per_address: defaults::login_burst_per_address(),
            login_refill_per_address_secs: defaults::login_refill_per_address_secs(),
            login_burst_per_id: defaults::login_burst_per_id(),
            login_refill_per_id_secs: defaults::login_refill_per_id_secs(),
            metrics_token_file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMirror {
    #[serde(default = "defaults::mirror_enabled")]
    enabled: bool,
    #[serde(default = "defaults::idle_interval_minutes")]
    idle_interval_minutes: u64,
    #[serde(default = "defaults::after_submission_interval_secs")]
    after_submission_interval_secs: u64,
    #[serde(default = "defaults::after_submission_minutes")]
    after_submission_minutes: u64,
    #[serde(default = "defaults::catch_up_at_jst")]
    catch_up_at_jst: String,
    #[serde(default = "defaults::page_size")]
    page_size: u32,
    #[serde(default = "defaults::returns_notices_grace_hours")]
    returns_notices_grace_hours: u64,
    #[serde(default = "defaults::payment_notices_due_day")]
    payment_notices_due_day: u8,
}

impl Default for RawMirror {
    fn default() -> Self {
        Self {
            enabled: defaults::mirror_enabled(),
            idle_interval_minutes: defaults::idle_interval_minutes(),
            after_submission_interval_secs: defaults::after_submission_interval_secs(),
            after_submission_minutes: defaults::after_submission_minutes(),
            catch_up_at_jst: defaults::catch_up_at_jst(),
            page_size: defaults::page_size(),
            returns_notices_grace_hours: defaults::returns_notices_grace_hours(),
            payment_notices_due_day: defaults::payment_notices_due_day(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntake {
    drop_dir: PathBuf,
    #[serde(default)]
    mode: IntakeMode,
    #[serde(default = "defaults::rescan_interval_secs")]
    rescan_interval_secs: u64,
    #[serde(default = "defaults::settle_interval_ms")]
    settle_interval_ms: u64,
    #[serde(default = "defaults::incomplete_grace_secs")]
    incomplete_grace_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    url: String,
    ca_file: PathBuf,
    #[serde(default = "defaults::connect_timeout_secs")]
    connect_timeout_secs: u64,
    #[serde(default = "defaults::request_timeout_secs")]
    request_timeout_secs: u64,
    #[serde(default = "defaults::health_refresh_secs")]
    health_refresh_secs: u64,
    #[serde(default = "defaults::status_poll_interval_secs")]
    status_poll_interval_secs: u64,
    #[serde(default)]
    proxy_url: Option<String>,
    #[serde(default)]
    proxy_user: Option<String>,
    #[serde(default)]
    proxy_password_file: Option<PathBuf>,
    #[serde(default)]
    pin_sha256: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    #[serde(default = "defaults::max_concurrent_sends")]
    max_concurrent_sends: usize,
    #[serde(default = "defaults::retry_initial_ms")]
    retry_initial_ms: u64,
    #[serde(default = "defaults::retry_max_secs")]
    retry_max_secs: u64,
    #[serde(default = "defaults::shutdown_grace_secs")]
    shutdown_grace_secs: u64,
    #[serde(default = "defaults::window_closing_alert_hours")]
    window_closing_alert_hours: u64,
}

impl Default for RawRelay {
    fn default() -> Self {
        Self {
            max_concurrent_sends: defaults::max_concurrent_sends(),
            retry_initial_ms: defaults::retry_initial_ms(),
            retry_max_secs: defaults::retry_max_secs(),
            shutdown_grace_secs: defaults::shutdown_grace_secs(),
            window_closing_alert_hours: defaults::window_closing_alert_hours(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffice {
    office_number: String,
    name: String,
    federation_user_id: String,
    federation_password_file: PathBuf,
    #[serde(default)]
    client_cert_file: Option<PathBuf>,
    #[serde(default)]
    client_key_file: Option<PathBuf>,
    #[serde(default)]
    client_p12_file: Option<PathBuf>,
    #[serde(default)]
    client_p12_password_file: Option<PathBuf>,
    #[serde(default)]
    ended_from_month: Option<crate::claim::Month>,
}

mod defaults {
    pub fn admin_enabled() -> bool {
        true
    }
    pub fn admin_listen() -> String {
        "0.0.0.0:8443".into()
    }
    pub fn session_idle_minutes() -> u64 {
        30
    }
    pub fn session_absolute_hours() -> u64 {
        12
    }
    pub fn lockout_after_failures() -> u32 {
        10
    }
    pub fn lockout_minutes() -> u64 {
        30
    }
    pub fn login_burst_per_address() -> u32 {
        10
    }
    pub fn login_refill_per_address_secs() -> u64 {
        6
    }
    pub fn login_burst_per_id() -> u32 {
        5
    }
    pub fn login_refill_per_id_secs() -> u64 {
        12
    }
    pub fn rescan_interval_secs() -> u64 {
        10
    }
    pub fn min_free_mib() -> u64 {
        512
    }
    pub fn disk_check_interval_secs() -> u64 {
        10
    }
    pub fn settle_interval_ms() -> u64 {
        500
    }
    pub fn incomplete_grace_secs() -> u64 {
        120
    }
    pub fn connect_timeout_secs() -> u64 {
        10
    }
    pub fn request_timeout_secs() -> u64 {
        60
    }
    pub fn health_refresh_secs() -> u64 {
        3600
    }
    pub fn status_poll_interval_secs() -> u64 {
        300
    }
    pub fn max_concurrent_sends() -> usize {
        8
    }
    pub fn retry_initial_ms() -> u64 {
        1000
    }
    pub fn retry_max_secs() -> u64 {
        300
    }
    pub fn shutdown_grace_secs() -> u64 {
        10
    }
    pub fn window_closing_alert_hours() -> u64 {
        48
    }
    pub fn mirror_enabled() -> bool {
        true
    }
    pub fn idle_interval_minutes() -> u64 {
        60
    }
    pub fn after_submission_interval_secs() -> u64 {
        60
    }
    pub fn after_submission_minutes() -> u64 {
        30
    }
    pub fn catch_up_at_jst() -> String {
        "09:30".into()
    }
    pub fn page_size() -> u32 {
        100
    }
    pub fn returns_notices_grace_hours() -> u64 {
        24
    }
    pub fn payment_notices_due_day() -> u8 {
        20
    }
}

/// How intake learns of new files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntakeMode {
    /// inotify events for speed plus the periodic rescan for correctness.
    #[default]
    Watch,
    /// The periodic rescan only: for drop folders on network mounts, where inotify sees nothing.
    Poll,
}

/// A secret read from a file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Secret {
    /// A secret read from somewhere other than a file of the config (the store, a prompt).
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// A secret made in a test, not read from a file.
    #[cfg(test)]
    pub(crate) fn for_tests(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Validated settings of the daemon.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the config file was read from.
    pub config_path: PathBuf,
    /// Directory of the store and other state.
    pub state_dir: PathBuf,
    /// The drop folder.
    pub intake: IntakeSettings,
    /// The federation gateway.
    pub gateway: GatewaySettings,
    /// Sending and retries.
    pub relay: RelaySettings,
    /// Notice mirror.
    pub mirror: MirrorSettings,
    /// The admin web UI.
    pub admin: AdminSettings,
    /// The offices of the config file (`[[offices]]`); offices registered on the appliance
    /// (`kaigo-relay office add`) are in the store, and the pipeline works with both.
    pub offices: Vec<OfficeSettings>,
    /// Backups: schedule, drills and sites.
    pub backup: BackupSettings,
    /// The low-disk guard of the drop and state volumes.
    pub disk: crate::disk_guard::DiskSettings,
    /// Alert delivery: mail, webhooks, recipients, limits.
    pub alerts: AlertSettings,
}

/// Admin web UI settings.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Whether the UI is served.
    pub enabled: bool,
    /// Address and port (HTTPS).
    pub listen: std::net::SocketAddr,
    /// An own server certificate and key (PEM); without them the appliance makes its own
    /// local CA and server certificate in the state folder.
    pub certificate: Option<(PathBuf, PathBuf)>,
    /// Extra DNS names (or addresses) for the generated server certificate.
    pub server_names: Vec<String>,
    /// Session timeouts.
    pub sessions: crate::accounts::sessions::SessionSettings,
    /// Login throttling and lockout.
    pub guard: crate::accounts::guard::GuardSettings,
    /// The bearer token that lets a scraper elsewhere on the LAN read `/metrics` (from
    /// loopback it needs none).
    pub metrics_token: Option<Secret>,
}

/// Drop-folder settings.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    /// The shared folder billing software writes into.
    pub drop_dir: PathBuf,
    /// Events plus rescan, or rescan only.
    pub mode: IntakeMode,
    /// How often the whole folder is listed.
    pub rescan_interval: Duration,
    /// The interval between two size/mtime checks of a file being written in place.
    pub settle_interval: Duration,
    /// How long a file that starts like a claim but has no end record may stay unchanged before
    /// it is taken anyway (and reported as cut short).
    pub incomplete_grace: Duration,
}

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Base URL, `https://host:port`.
    pub url: http::Uri,
    /// CA bundle that signs the gateway's certificate.
    pub ca_file: PathBuf,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// How often the reception window is re-read (at most hourly).
    pub health_refresh: Duration,
    /// How often an arrived submission's 受付 result is asked for.
    pub status_poll_interval: Duration,
    /// The outbound HTTP CONNECT proxy, when the office reaches the gateway through one.
    pub proxy: Option<ProxySettings>,
    /// SHA-256 digests of the SubjectPublicKeyInfo the gateway's certificate must carry (RFC 7469
    /// style); empty means no pinning, only the CA check.
    pub pin_sha256: Vec<[u8; 32]>,
}

/// An outbound HTTP CONNECT proxy between this appliance and the gateway.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// `http://host:port` (no credentials in it).
    pub url: http::Uri,
    /// Basic credentials, when the proxy asks for them.
    pub credentials: Option<ProxyCredentials>,
}

/// The proxy's basic credentials.
#[derive(Debug, Clone)]
pub struct ProxyCredentials {
    /// User name.
    pub user: String,
    /// Password, read from `proxy_password_file`.
    pub password: Secret,
}

/// Where an office's client certificate (電子証明書) and key come from.
#[derive(Debug, Clone)]
pub enum ClientIdentity {
    /// A PEM certificate (chain) and a PEM private key.
    Pem {
        /// `client_cert_file`.
        cert_file: PathBuf,
        /// `client_key_file`.
        key_file: PathBuf,
    },
    /// A PKCS#12 bundle (.p12 / .pfx) and its passphrase.
    Pkcs12 {
        /// `client_p12_file`.
        file: PathBuf,
        /// The passphrase, read from `client_p12_password_file`.
        password: Secret,
    },
}

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Sends in flight at once.
    pub max_concurrent_sends: usize,
    /// First retry delay after a transient failure (doubled each time, with jitter).
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace: Duration,
    /// How long before the reception window closes the offices that have sent nothing are
    /// named in an alert (0: never).
    pub window_closing_alert: Duration,
}

/// Notice mirror settings.
#[derive(Debug, Clone)]
pub struct MirrorSettings {
    /// Whether notices are polled at all.
    pub enabled: bool,
    /// Poll interval when nothing was sent lately.
    pub idle_interval: Duration,
    /// Poll interval for a while after a submission (results and notices come soon after).
    pub after_submission_interval: Duration,
    /// How long after a submission the short interval holds.
    pub after_submission_for: Duration,
    /// A daily catch-up poll at this time of day, JST (hours, minutes).
    pub catch_up_at_jst: (i8, i8),
    /// Notices asked for per page.
    pub page_size: u32,
    /// Hours after the end of the 審査 month before missing 返戻系 notices raise an alert.
    pub returns_notices_grace: Duration,
    /// Day of the month after the 審査 month from which missing 支払系 notices raise an alert.
    pub payment_notices_due_day: u8,
}

/// One office this appliance sends for.
#[derive(Debug, Clone)]
pub struct OfficeSettings {
    /// 事業所番号.
    pub office_number: OfficeNumber,
    /// The office's name, as clerks know it.
    pub name: String,
    /// The federation user ID (KJ…).
    pub federation_user_id: FederationUserId,
    /// Its password, read from `federation_password_file`.
    pub federation_password: Secret,
    /// The client certificate and key for mutual TLS (PEM pair or PKCS#12 bundle).
    pub client_identity: ClientIdentity,
    /// The first processing month in which the office no longer sends (closed or renumbered);
    /// `None` while active. Files for it from that month on are refused.
    pub ended_from_month: Option<crate::claim::Month>,
}

impl Settings {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Validates config text as if read from `path` (relative paths resolve against its
    /// directory).
    pub fn from_toml(text: &str, path: &Path) -> Result<Settings, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let abs = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };

        let i = raw.intake;
        let settle_interval = ms("intake.settle_interval_ms", i.settle_interval_ms, 50)?;
        let intake = IntakeSettings {
            drop_dir: abs(&i.drop_dir),
            mode: i.mode,
            rescan_interval: secs("intake.rescan_interval_secs", i.rescan_interval_secs, 1)?,
            settle_interval,
            incomplete_grace: secs("intake.incomplete_grace_secs", i.incomplete_grace_secs, 1)?,
        };

        let g = raw.gateway;
        let url: http::Uri = g
            .url
            .parse()
            .map_err(|e| invalid("gateway.url", format!("URL として読めません: {e}")))?;
        if url.scheme_str() != Some("https") || url.host().is_none() {
            return Err(invalid(
                "gateway.url",
                "https://ホスト名:ポート の形で指定してください。連合会への送信は相互 TLS のみです (must be https://host:port)",
            ));
        }
        let health_refresh = secs("gateway.health_refresh_secs", g.health_refresh_secs, 1)?;
        if health_refresh > Duration::from_secs(3600) {
            return Err(invalid(
                "gateway.health_refresh_secs",
                "受付期間は少なくとも 1 時間ごとに確認します。3600 以下にしてください (at most 3600)",
            ));
        }
        let proxy = proxy_settings(
            g.proxy_url.as_deref(),
            g.proxy_user,
            g.proxy_password_file.as_deref().map(&abs),
        )?;
        let pin_sha256 = match g.pin_sha256 {
            None => Vec::new(),
            Some(pins) => pins_from(&pins)?,
        };
        let gateway = GatewaySettings {
            url,
            ca_file: abs(&g.ca_file),
            connect_timeout: secs("gateway.connect_timeout_secs", g.connect_timeout_secs, 1)?,
            request_timeout: secs("gateway.request_timeout_secs", g.request_timeout_secs, 1)?,
            health_refresh,
            status_poll_interval: secs(
                "gateway.status_poll_interval_secs",
                g.status_poll_interval_secs,
                1,
            )?,
            proxy,
            pin_sha256,
        };

        let r = raw.relay;
        if r.max_concurrent_sends == 0 {
            return Err(invalid(
                "relay.max_concurrent_sends",
                "1 以上にしてください (must be at least 1)",
            ));
        }
        let relay = RelaySettings {
            max_concurrent_sends: r.max_concurrent_sends,
            retry_initial: ms("relay.retry_initial_ms", r.retry_initial_ms, 10)?,
            retry_max: secs("relay.retry_max_secs", r.retry_max_secs, 1)?,
            shutdown_grace: secs("relay.shutdown_grace_secs", r.shutdown_grace_secs, 1)?,
            window_closing_alert: Duration::from_secs(
                r.window_closing_alert_hours.min(24 * 31) * 3600,
            ),
        };

        let m = raw.mirror;
        let catch_up_at_jst = parse_hh_mm(&m.catch_up_at_jst).ok_or_else(|| {
            invalid(
                "mirror.catch_up_at_jst",
                "「09:30」のように 時:分 で書いてください (write it as HH:MM, e.g. \"09:30\")",
            )
        })?;
        if !(1..=1000).contains(&m.page_size) {
            return Err(invalid(
                "mirror.page_size",
                "1〜1000 にしてください (must be 1 to 1000)",
            ));
        }
        if !(1..=28).contains(&m.payment_notices_due_day) {
            return Err(invalid(
                "mirror.payment_notices_due_day",
                "1〜28 にしてください (must be 1 to 28)",
            ));
        }
        let mirror = MirrorSettings {
            enabled: m.enabled,
            idle_interval: secs(
                "mirror.idle_interval_minutes",
                m.idle_interval_minutes.saturating_mul(60),
                60,
            )?,
            after_submission_interval: secs(
                "mirror.after_submission_interval_secs",
                m.after_submission_interval_secs,
                1,
            )?,
            after_submission_for: Duration::from_secs(
                m.after_submission_minutes.saturating_mul(60),
            ),
            catch_up_at_jst,
            page_size: m.page_size,
            returns_notices_grace: Duration::from_secs(
                m.returns_notices_grace_hours.min(24 * 28) * 3600,
            ),
            payment_notices_due_day: m.payment_notices_due_day,
        };

        let backup = backup::validate(raw.backup, &abs(&raw.state_dir), &abs)?;
        let alerts = alerts::validate(raw.alerts, &abs)?;

        let a = raw.admin;
        let listen: std::net::SocketAddr = a.listen.parse().map_err(|_| {
            invalid(
                "admin.listen",
                "「0.0.0.0:8443」のように アドレス:ポート で書いてください (write it as address:port)",
            )
        })?;
        let certificate = match (a.cert_file, a.key_file) {
            (Some(c), Some(k)) => Some((abs(&c), abs(&k))),
            (None, None) => None,
            (c, _) => {
                return Err(invalid(
                    if c.is_none() {
                        "admin.cert_file"
                    } else {
                        "admin.key_file"
                    },
                    "独自の証明書を使うときは cert_file と key_file の両方を指定してください (give both cert_file and key_file, or neither)",
                ));
            }
        };
        for (key, v) in [
            ("admin.login_burst_per_address", a.login_burst_per_address),
            ("admin.login_burst_per_id", a.login_burst_per_id),
        ] {
            if v == 0 {
                return Err(invalid(key, "1 以上にしてください (must be at least 1)"));
            }
        }
        if a.lockout_after_failures == 0 {
            return Err(invalid(
                "admin.lockout_after_failures",
                "1 以上にしてください (must be at least 1)",
            ));
        }
        let metrics_token = match &a.metrics_token_file {
            Some(f) => {
                let token = read_secret("admin.metrics_token_file", &abs(f))?;
                if token.expose().len() < 16 {
                    return Err(invalid(
                        "admin.metrics_token_file",
                        "トークンは 16 文字以上にしてください (the token must be at least 16 characters)",
                    ));
                }
                Some(token)
            }
            None => None,
        };
        let admin = AdminSettings {
            metrics_token,
            enabled: a.enabled,
            listen,
            certificate,
            server_names: a.server_names,
            sessions: crate::accounts::sessions::SessionSettings {
                idle: secs(
                    "admin.session_idle_minutes",
                    a.session_idle_minutes.saturating_mul(60),
                    60,
                )?,
                absolute: secs(
                    "admin.session_absolute_hours",
                    a.session_absolute_hours.saturating_mul(3600),
                    3600,
                )?,
            },
            guard: crate::accounts::guard::GuardSettings {
                lockout_after: a.lockout_after_failures,
                lockout_for: secs(
                    "admin.lockout_minutes",
                    a.lockout_minutes.saturating_mul(60),
                    60,
                )?,
                per_address_burst: a.login_burst_per_address,
                per_address_refill: secs(
                    "admin.login_refill_per_address_secs",
                    a.login_refill_per_address_secs,
                    1,
                )?,
                per_id_burst: a.login_burst_per_id,
                per_id_refill: secs(
                    "admin.login_refill_per_id_secs",
                    a.login_refill_per_id_secs,
                    1,
                )?,
            },
        };
        let mut seen = HashSet::new();
        let mut offices = Vec::with_capacity(raw.offices.len());
        for (n, o) in raw.offices.into_iter().enumerate() {
            let key = |k: &str| format!("offices[{n}].{k}");
            let office_number: OfficeNumber = o
                .office_number
                .parse()
                .map_err(|e: crate::claim::IdError| invalid(key("office_number"), e.to_string()))?;
            if !seen.insert(office_number.clone()) {
                return Err(invalid(
                    key("office_number"),
                    format!(
                        "事業所番号 {office_number} が 2 回登録されています (registered twice)"
                    ),
                ));
            }
            let federation_user_id: FederationUserId =
                o.federation_user_id
                    .parse()
                    .map_err(|e: crate::claim::IdError| {
                        invalid(key("federation_user_id"), e.to_string())
                    })?;
            let password = read_secret(
                &key("federation_password_file"),
                &abs(&o.federation_password_file),
            )?;
            let client_identity = match (
                o.client_cert_file,
                o.client_key_file,
                o.client_p12_file,
                o.client_p12_password_file,
            ) {
                (Some(cert), Some(k), None, None) => ClientIdentity::Pem {
                    cert_file: abs(&cert),
                    key_file: abs(&k),
                },
                (None, None, Some(file), Some(pw)) => ClientIdentity::Pkcs12 {
                    file: abs(&file),
                    password: read_secret(&key("client_p12_password_file"), &abs(&pw))?,
                },
                (None, None, None, None) => {
                    return Err(invalid(
                        key("client_cert_file"),
                        "電子証明書を指定してください。PEM なら client_cert_file と client_key_file、PKCS#12 なら client_p12_file と client_p12_password_file です (no client certificate: give client_cert_file + client_key_file, or client_p12_file + client_p12_password_file)",
                    ));
                }
                (cert, _, None, None) => {
                    let missing = if cert.is_none() {
                        "client_cert_file"
                    } else {
                        "client_key_file"
                    };
                    return Err(invalid(
                        key(missing),
                        "PEM の電子証明書には client_cert_file と client_key_file の両方が必要です (a PEM certificate needs both client_cert_file and client_key_file)",
                    ));
                }
                (None, None, p12, _) => {
                    let missing = if p12.is_none() {
                        "client_p12_file"
                    } else {
                        "client_p12_password_file"
                    };
                    return Err(invalid(
                        key(missing),
                        "PKCS#12 の電子証明書には client_p12_file と client_p12_password_file（パスフレーズのファイル）の両方が必要です (a PKCS#12 certificate needs both client_p12_file and client_p12_password_file)",
                    ));
                }
                _ => {
                    return Err(invalid(
                        key("client_p12_file"),
                        "電子証明書は PEM（client_cert_file と client_key_file）か PKCS#12（client_p12_file と client_p12_password_file）のどちらか一方だけを指定してください (give either the PEM pair or the PKCS#12 pair, not both)",
                    ));
                }
            };
            if o.name.trim().is_empty() {
                return Err(invalid(
                    key("name"),
                    "事業所名を入れてください (name is empty)",
                ));
            }
            offices.push(OfficeSettings {
                office_number,
                name: o.name,
                federation_user_id,
                federation_password: password,
                client_identity,
                ended_from_month: o.ended_from_month,
            });
        }

        let disk = crate::disk_guard::DiskSettings {
            min_free_bytes: raw
                .disk
                .min_free_mib
                .checked_mul(1 << 20)
                .ok_or_else(|| invalid("disk.min_free_mib", "大きすぎます (too large)"))?,
            check_interval: secs("disk.check_interval_secs", raw.disk.check_interval_secs, 1)?,
        };
        Ok(Settings {
            config_path: path.to_owned(),
            state_dir: abs(&raw.state_dir),
            intake,
            gateway,
            relay,
            mirror,
            admin,
            offices,
            backup,
            disk,
            alerts,
        })
    }

    /// The store file.
    pub fn store_path(&self) -> PathBuf {
        self.state_dir.join("kaigo-relay.redb")
    }

    /// The settings of one office.
    pub fn office(&self, n: &OfficeNumber) -> Option<&OfficeSettings> {
        self.offices.iter().find(|o| &o.office_number == n)
    }

    /// The registered offices and their standing, for the claim checker.
    pub fn office_standings(
        &self,
    ) -> std::collections::BTreeMap<OfficeNumber, crate::claim::OfficeStanding> {
        self.offices
            .iter()
            .map(|o| {
                (
                    o.office_number.clone(),
                    crate::claim::OfficeStanding {
                        name: o.name.clone(),
                        ended_from: o.ended_from_month,
                    },
                )
            })
            .collect()
    }
}

/// Reads a secret from a file (one line; the trailing newline is not part of it).
fn read_secret(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            key,
            format!("{} を読めません (cannot read): {e}", path.display()),
        )
    })?;
    let secret = text.trim_end_matches(['\r', '\n']).to_owned();
    if secret.is_empty() {
        return Err(invalid(
            key,
            format!("{} が空です (is empty)", path.display()),
        ));
    }
    Ok(Secret(secret))
}

/// Validates the `gateway.proxy_*` keys.
fn proxy_settings(
    url: Option<&str>,
    user: Option<String>,
    password_file: Option<PathBuf>,
) -> Result<Option<ProxySettings>, ConfigError> {
    let Some(url) = url else {
        if user.is_some() || password_file.is_some() {
            return Err(invalid(
                "gateway.proxy_url",
                "proxy_user / proxy_password_file を使うには proxy_url も指定してください (proxy credentials given without proxy_url)",
            ));
        }
        return Ok(None);
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| invalid("gateway.proxy_url", format!("URL として読めません: {e}")))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(invalid(
            "gateway.proxy_url",
            "http://ホスト名:ポート の形で指定してください (must be http://host:port; the proxy is reached in plain HTTP and the gateway's TLS runs through its CONNECT tunnel)",
        ));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(invalid(
            "gateway.proxy_url",
            "URL に利用者名やパスワードを書かないでください。proxy_user と proxy_password_file を使います (no credentials in the URL: use proxy_user and proxy_password_file)",
        ));
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(invalid(
            "gateway.proxy_url",
            "ホスト名とポートだけを指定してください (only scheme, host and port: no path or query)",
        ));
    }
    let credentials = match (user, password_file) {
        (None, None) => None,
        (Some(user), Some(file)) => {
            if user.is_empty() || user.contains(':') {
                return Err(invalid(
                    "gateway.proxy_user",
                    "空でなく「:」を含まない利用者名にしてください (must be non-empty, without ':')",
                ));
            }
            Some(ProxyCredentials {
                user,
                password: read_secret("gateway.proxy_password_file", &file)?,
            })
        }
        (Some(_), None) => {
            return Err(invalid(
                "gateway.proxy_password_file",
                "proxy_user にはパスワードのファイル proxy_password_file も必要です (proxy_user needs proxy_password_file)",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "gateway.proxy_user",
                "proxy_password_file には利用者名 proxy_user も必要です (proxy_password_file needs proxy_user)",
            ));
        }
    };
    Ok(Some(ProxySettings {
        url: uri,
        credentials,
    }))
}

/// Validates `gateway.pin_sha256`: each entry is the base64 of a 32-byte SHA-256.
fn pins_from(pins: &[String]) -> Result<Vec<[u8; 32]>, ConfigError> {
    use base64::Engine as _;
    if pins.is_empty() {
        return Err(invalid(
            "gateway.pin_sha256",
            "空の一覧ではゲートウェイにつながりません。固定しないなら項目ごと消してください (an empty list would refuse every gateway: remove the key to turn pinning off)",
        ));
    }
    pins.iter()
        .enumerate()
        .map(|(n, pin)| {
            base64::engine::general_purpose::STANDARD
                .decode(pin.trim())
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| {
                    invalid(
                        format!("gateway.pin_sha256[{n}]"),
                        format!(
                            "\"{pin}\" は SHA-256 の base64（44 文字）ではありません (not the base64 of a SHA-256 digest, 44 characters)"
                        ),
                    )
                })
        })
        .collect()
}

/// `HH:MM` (00:00–23:59).
fn parse_hh_mm(s: &str) -> Option<(i8, i8)> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m) && s.trim().len() == 5).then_some((h, m))
}

fn secs(key: &str, v: u64, min: u64) -> Result<Duration, ConfigError> {
    if v < min {
        return Err(invalid(
            key,
            format!("{min} 以上にしてください (must be at least {min})"),
        ));
    }
    Ok(Duration::from_secs(v))
}

fn ms(key: &str, v: u64, min: u64) -> Result<Duration, ConfigError> {
    if v < min {
        return Err(invalid(
            key,
            format!("{min} 以上にしてください (must be at least {min})"),
        ));
    }
    Ok(Duration::from_millis(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_password(dir: &Path) {
        std::fs::write(dir.join("pw"), "s3cret\n").unwrap();
    }

    const MINIMAL: &str = r#"
state_dir = "state"
[intake]
drop_dir = "drop"
[gateway]
url = "https://127.0.0.1:8443"
ca_file = "ca.pem"
[[offices]]
office_number = "1379999996"
name = "テスト事業所"
federation_user_id = "KJ00000001"
federation_password_file = "pw"
client_cert_file = "c.pem"
client_key_file = "c.key"
"#;

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let dir = tempfile::tempdir().unwrap();
        write_password(dir.path());
        let path = dir.path().join("k.toml");
        let s = Settings::from_toml(MINIMAL, &path).unwrap();
        assert_eq!(s.state_dir, dir.path().join("state"));
        assert_eq!(s.intake.drop_dir, dir.path().join("drop"));
        assert_eq!(s.intake.mode, IntakeMode::Watch);
        assert_eq!(s.intake.rescan_interval, Duration::from_secs(10));
        assert_eq!(s.gateway.health_refresh, Duration::from_secs(3600));
        assert_eq!(s.offices[0].federation_password.expose(), "s3cret");
        assert_eq!(
            format!("{:?}", s.offices[0].federation_password),
            "Secret(***)"
        );
    }

    #[test]
    fn the_metrics_token_is_read_from_its_file_and_must_be_long() {
        let dir = tempfile::tempdir().unwrap();
        write_password(dir.path());
        let path = dir.path().join("k.toml");
        let with = MINIMAL.replace(
            "[gateway]",
            "[admin]\nmetrics_token_file = \"metrics.token\"\n\n[gateway]",
        );
        std::fs::write(dir.path().join("metrics.token"), "short\n").unwrap();
        let e = Settings::from_toml(&with, &path).unwrap_err().to_string();
        assert!(
            e.contains("admin.metrics_token_file") && e.contains("16"),
            "{e}"
        );
        std::fs::write(dir.path().join("metrics.token"), "0123456789abcdef-long\n").unwrap();
        let s = Settings::from_toml(&with, &path).unwrap();
        assert_eq!(
            s.admin.metrics_token.as_ref().map(Secret::expose),
            Some("0123456789abcdef-long")
        );
        assert!(!format!("{:?}", s.admin).contains("0123456789abcdef"));
        let without = Settings::from_toml(MINIMAL, &path).unwrap();
        assert!(without.admin.metrics_token.is_none());
    }

    #[test]
    fn an_ended_office_is_read_with_its_month() {
        let dir = tempfile::tempdir().unwrap();
        write_password(dir.path());
        let path = dir.path().join("k.toml");
        let ended = format!("{MINIMAL}ended_from_month = \"202704\"\n");
        let s = Settings::from_toml(&ended, &path).unwrap();
        assert_eq!(
            s.offices[0].ended_from_month,
            Some("202704".parse().unwrap())
        );
        let standing = s.office_standings();
        assert_eq!(
            standing[&s.offices[0].office_number].ended_from,
            Some("202704".parse().unwrap())
        );
        let bad = format!("{MINIMAL}ended_from_month = \"2027-04\"\n");
        let e = Settings::from_toml(&bad, &path).unwrap_err().to_string();
        assert!(e.contains("ended_from_month") || e.contains("年月"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_key_named() {
        let dir = tempfile::tempdir().unwrap();
        write_password(dir.path());
        let path = dir.path().join("k.toml");
        let cases = [
            (
                MINIMAL.replace("[intake]", "[intake]\nrescan_interval = 5"),
                "rescan_interval",
            ),
            (MINIMAL.replace("https://127", "http://127"), "gateway.url"),
            (MINIMAL.replace("1379999996", "1379999990"), "office_number"),
            (
                MINIMAL.replace("KJ00000001", "XX00000001"),
                "federation_user_id",
            ),
            (
                MINIMAL.replace("\"pw\"", "\"missing\""),
                "federation_password_file",
            ),
            (
                MINIMAL.replace("[gateway]", "[gateway]\nhealth_refresh_secs = 7200"),
                "health_refresh_secs",
            ),
            (
                MINIMAL
                    .replace("mode", "x")
                    .replace("[intake]", "[intake]\nmode = \"fast\""),
                "mode",
            ),
            (
                MINIMAL.replace("[gateway]", "[admin]\nlisten = \"8443\"\n\n[gateway]"),
                "admin.listen",
            ),
            (
                MINIMAL.replace(
                    "[gateway]",
                    "[admin]\ncert_file = \"admin.pem\"\n\n[gateway]",
                ),
                "admin.key_file",
            ),
        ];
        for (text, needle) in cases {
            let err = Settings::from_toml(&text, &path).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        // Offices may all be registered on the appliance instead of in the file.
        let none = MINIMAL.split("[[offices]]").next().unwrap().to_owned();
        let s = Settings::from_toml(&none, &path).unwrap();
        assert!(s.offices.is_empty());
        assert_eq!(s.admin.listen.port(), 8443);
        assert_eq!(s.admin.guard.lockout_after, 10);
    }

    #[test]
    fn the_client_certificate_is_a_pem_pair_or_a_pkcs12_bundle_never_both_or_neither() {
        let dir = tempfile::tempdir().unwrap();
        write_password(dir.path());
        std::fs::write(dir.path().join("p12pw"), "pass phrase\n").unwrap();
        let path = dir.path().join("k.toml");

        let s = Settings::from_toml(MINIMAL, &path).unwrap();
        match &s.offices[0].client_identity {
            ClientIdentity::Pem {
                cert_file,
                key_file,
            } => {
                assert_eq!(cert_file, &dir.path().join("c.pem"));
                assert_eq!(key_file, &dir.path().join("c.key"));
            }
            other => panic!("{other:?}"),
        }

        let pem_lines = "client_cert_file = \"c.pem\"\nclient_key_file = \"c.key\"\n";
        let p12_lines = "client_p12_file = \"office.p12\"\nclient_p12_password_file = \"p12pw\"\n";
        let p12 = MINIMAL.replace(pem_lines, p12_lines);
        let s = Settings::from_toml(&p12, &path).unwrap();
        match &s.offices[0].client_identity {
            ClientIdentity::Pkcs12 { file, password } => {
                assert_eq!(file, &dir.path().join("office.p12"));
                assert_eq!(password.expose(), "pass phrase");
                assert_eq!(format!("{password:?}"), "Secret(***)");
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{s:?}").contains("pass phrase"), "never in Debug");

        let cases = [
            (
                MINIMAL.replace(pem_lines, ""),
                "client_cert_file",
                "no client certificate",
            ),
            (
                MINIMAL.replace(pem_lines, &format!("{pem_lines}{p12_lines}")),
                "client_p12_file",
                "not both",
            ),
            (
                MINIMAL.replace(pem_lines, "client_cert_file = \"c.pem\"\n"),
                "client_key_file",
                "needs both",
            ),
            (
                MINIMAL.replace(pem_lines, "client_key_file = \"c.key\"\n"),
                "client_cert_file",
                "needs both",
            ),
            (
                MINIMAL.replace(pem_lines, "client_p12_file = \"office.p12\"\n"),
                "client_p12_password_file",
                "needs both",
            ),
            (
                MINIMAL.replace(pem_lines, "client_p12_password_file = \"p12pw\"\n"),
                "client_p12_file",
                "needs both",
            ),
            (
                MINIMAL.replace(
                    pem_lines,
                    "client_p12_file = \"office.p12\"\nclient_p12_password_file = \"absent\"\n",
                ),
                "client_p12_password_file",
                "cannot read",
            ),
            (
                MINIMAL.replace(
                    pem_lines,
                    &format!("client_cert_file = \"c.pem\"\n{p12_lines}"),
                ),
                "client_p12_file",
                "not both",
            ),
        ];
        for (text, key, english) in cases {
            let err = Settings::from_toml(&text, &path).unwrap_err().to_string();
            assert!(err.contains(&format!("offices[0].{key}")), "{key}: {err}");
            assert!(err.contains(english), "{key}: {err}");
            assert!(
                err.contains("電子証明書") || err.contains("読めません"),
                "Japanese: {err}"
            );
        }
    }

    #[test]
    fn proxy_and_pin_keys_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        write_password(dir.path());
        std::fs::write(dir.path().join("proxypw"), "pr0xy\n").unwrap();
        let path = dir.path().join("k.toml");
        let s = Settings::from_toml(MINIMAL, &path).unwrap();
        assert!(s.gateway.proxy.is_none());
        assert!(s.gateway.pin_sha256.is_empty());

        let pin = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let with = |lines: &str| MINIMAL.replace("[gateway]\n", &format!("[gateway]\n{lines}"));
        let s = Settings::from_toml(
            &with(&format!(
                "proxy_url = \"http://127.0.0.1:8888\"\nproxy_user = \"relay\"\nproxy_password_file = \"proxypw\"\npin_sha256 = [\"{pin}\"]\n"
            )),
            &path,
        )
        .unwrap();
        let proxy = s.gateway.proxy.as_ref().unwrap();
        assert_eq!(proxy.url, "http://127.0.0.1:8888");
        let c = proxy.credentials.as_ref().unwrap();
        assert_eq!((c.user.as_str(), c.password.expose()), ("relay", "pr0xy"));
        assert!(!format!("{s:?}").contains("pr0xy"), "never in Debug");
        assert_eq!(s.gateway.pin_sha256.len(), 1);
        assert_eq!(s.gateway.pin_sha256[0][..4], [0xe3, 0xb0, 0xc4, 0x42]);

        // A proxy without credentials.
        let s =
            Settings::from_toml(&with("proxy_url = \"http://proxy.lan:3128\"\n"), &path).unwrap();
        assert!(s.gateway.proxy.unwrap().credentials.is_none());

        let cases = [
            (
                "proxy_url = \"https://127.0.0.1:8888\"\n",
                "gateway.proxy_url",
                "http://host:port",
            ),
            (
                "proxy_url = \"127.0.0.1:8888\"\n",
                "gateway.proxy_url",
                "http://host:port",
            ),
            (
                "proxy_url = \"http://u:p@127.0.0.1:8888\"\n",
                "gateway.proxy_url",
                "no credentials in the URL",
            ),
            (
                "proxy_url = \"http://127.0.0.1:8888\"\nproxy_user = \"relay\"\n",
                "gateway.proxy_password_file",
                "needs proxy_password_file",
            ),
            (
                "proxy_url = \"http://127.0.0.1:8888\"\nproxy_password_file = \"proxypw\"\n",
                "gateway.proxy_user",
                "needs proxy_user",
            ),
            (
                "proxy_url = \"http://127.0.0.1:8888\"\nproxy_user = \"relay\"\nproxy_password_file = \"nope\"\n",
                "gateway.proxy_password_file",
                "cannot read",
            ),
            (
                "proxy_user = \"relay\"\nproxy_password_file = \"proxypw\"\n",
                "gateway.proxy_url",
                "without proxy_url",
            ),
            (
                "proxy_url = \"http://127.0.0.1:8888\"\nproxy_user = \"a:b\"\nproxy_password_file = \"proxypw\"\n",
                "gateway.proxy_user",
                "without ':'",
            ),
            ("proxy_host = \"x\"\n", "proxy_host", "unknown field"),
            ("pin_sha256 = []\n", "gateway.pin_sha256", "remove the key"),
            (
                "pin_sha256 = [\"abc\"]\n",
                "gateway.pin_sha256[0]",
                "not the base64",
            ),
            (
                "pin_sha256 = \"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"\n",
                "pin_sha256",
                "sequence",
            ),
        ];
        for (lines, key, english) in cases {
            let err = Settings::from_toml(&with(lines), &path)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{lines}: {err}");
            assert!(err.contains(english), "{lines}: {err}");
            assert!(!err.contains("pr0xy"), "{err}");
        }
    }

    #[test]
    fn the_alerts_section_is_checked_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        write_password(dir.path());
        let path = dir.path().join("k.toml");
        let good = format!(
            "{MINIMAL}\n[alerts]\nlanguage = \"both\"\ndigest_at_jst = \"07:30\"\n[alerts.mail]\nserver = \"smtp.example.jp\"\nusername = \"relay\"\npassword_file = \"pw\"\nfrom = \"kaigo-relay <relay@example.jp>\"\n[[alerts.recipient]]\nname = \"本部\"\nemail = \"honbu@example.jp\"\ncorporation = \"C1\"\ngroups = [\"returns\", \"payment\"]\ndigest = true\n[[alerts.webhook]]\nname = \"chat\"\nurl = \"https://hooks.example.jp/x\"\nsecret_file = \"pw\"\noffices = [\"1379999996\"]\n"
        );
        let s = Settings::from_toml(&good, &path).unwrap();
        let a = &s.alerts;
        assert_eq!(a.language, Language::Both);
        assert_eq!(a.digest_at_jst, (7, 30));
        let mail = a.mail.as_ref().unwrap();
        assert_eq!((mail.port, mail.security), (587, MailSecurity::StartTls));
        assert_eq!(mail.credentials.as_ref().unwrap().1.expose(), "s3cret");
        assert!(a.recipients[0].scope.digest);
        assert_eq!(a.recipients[0].scope.corporation.as_deref(), Some("C1"));
        assert_eq!(a.webhooks[0].secret.expose(), "s3cret");
        assert!(!a.webhooks[0].scope.is_everything());
        // Without the section: no mail, Japanese, the defaults.
        let d = Settings::from_toml(MINIMAL, &path).unwrap().alerts;
        assert!(d.mail.is_none() && d.webhooks.is_empty());
        assert_eq!(d.max_per_destination_per_hour, 12);

        let bad = |extra: &str| {
            Settings::from_toml(&format!("{MINIMAL}\n{extra}"), &path)
                .unwrap_err()
                .to_string()
        };
        let mail = "[alerts.mail]\nserver = \"smtp.example.jp\"\nfrom = \"r@example.jp\"\n";
        for (extra, key, english) in [
            ("[alerts]\nlanguag = \"ja\"\n", "languag", "unknown field"),
            (
                "[alerts]\nlanguage = \"fr\"\n",
                "alerts.language",
                "use ja, en or both",
            ),
            (
                "[alerts.mail]\nserver = \"smtp.example.jp\"\nsecurity = \"none\"\nfrom = \"r@example.jp\"\n",
                "alerts.mail.security",
                "only to a server on this machine",
            ),
            (
                "[alerts.mail]\nserver = \"smtp.example.jp\"\nusername = \"u\"\nfrom = \"r@example.jp\"\n",
                "alerts.mail.username",
                "give both",
            ),
            (
                "[alerts.mail]\nserver = \"smtp.example.jp\"\nfrom = \"not an address\"\n",
                "alerts.mail.from",
                "not a mail address",
            ),
            (
                "[[alerts.recipient]]\nname = \"x\"\nemail = \"x@example.jp\"\n",
                "alerts.mail",
                "recipients need [alerts.mail]",
            ),
            (
                &format!("{mail}[[alerts.recipient]]\nname = \"x\"\nemail = \"x@\"\n"),
                "alerts.recipient[0].email",
                "not a mail address",
            ),
            (
                &format!(
                    "{mail}[[alerts.recipient]]\nname = \"x\"\nemail = \"x@example.jp\"\ngroups = [\"everything\"]\n"
                ),
                "alerts.recipient[0].groups",
                "not a group",
            ),
            (
                &format!(
                    "{mail}[[alerts.recipient]]\nname = \"x\"\nemail = \"x@example.jp\"\ncolour = \"red\"\n"
                ),
                "colour",
                "unknown field",
            ),
            (
                "[[alerts.webhook]]\nname = \"w\"\nurl = \"http://hooks.example.jp\"\nsecret_file = \"pw\"\n",
                "alerts.webhook[0].url",
                "https URL",
            ),
            (
                "[[alerts.webhook]]\nname = \"w\"\nurl = \"https://h.example.jp\"\nsecret_file = \"missing\"\n",
                "alerts.webhook[0].secret_file",
                "cannot read",
            ),
            (
                "[[alerts.webhook]]\nname = \"w\"\nurl = \"https://h.example.jp\"\nsecret_file = \"pw\"\noffices = [\"123\"]\n",
                "alerts.webhook[0].offices",
                "not a 10-digit office number",
            ),
        ] {
            let err = bad(extra);
            assert!(err.contains(key), "{extra}: {err}");
            assert!(err.contains(english), "{extra}: {err}");
        }
    }

    #[test]
    fn the_example_config_parses() {
        let example = include_str!("../../config/kaigo-relay.example.toml");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kaigo-relay.toml");
        // The example names absolute paths under /etc; point the password file at a real one.
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "x\n").unwrap();
        // As installed, no office is configured (they are registered in the UI).
        let installed = Settings::from_toml(example, &path).unwrap();
        assert!(installed.offices.is_empty());
        // The commented office block parses once its lines are uncommented.
        let office_keys = [
            "[[offices]]",
            "office_number =",
            "name =",
            "federation_user_id =",
            "federation_password_file =",
            "client_cert_file =",
            "client_key_file =",
        ];
        let start = example.find("\n# [[offices]]\n").unwrap();
        let block: String = example[start..]
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if office_keys.iter().any(|k| rest.starts_with(k)) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!("{}{block}\n", &example[..start]).replace(
            "/etc/kaigo-relay/secrets/1379999996.password",
            pw.to_str().unwrap(),
        );
        let s = Settings::from_toml(&text, &path).unwrap();
        assert_eq!(s.offices.len(), 1);
        assert_eq!(s.intake.drop_dir, PathBuf::from("/srv/kaigo-relay/drop"));
        assert_eq!(s.mirror.catch_up_at_jst, (9, 30));
        assert_eq!(s.mirror.idle_interval, Duration::from_secs(3600));
        assert_eq!(s.backup.sites.len(), 1);
        assert_eq!(s.backup.sites[0].retention.daily, 14);
        assert!(!s.backup.sites[0].encrypt);
        assert_eq!(s.backup.interval, Duration::from_secs(3600));
        // The commented S3 site parses too, with its credentials file.
        let creds = dir.path().join("s3.credentials");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = AKIA\naws_secret_access_key = s3cr3t\n",
        )
        .unwrap();
        let start = text.find("# [[backup.sites]]").unwrap();
        let end =
            start + text[start..].find("# encrypt = true").unwrap() + "# encrypt = true".len();
        let block: String = text[start..end]
            .lines()
            .map(|l| l.trim_start_matches("# "))
            .collect::<Vec<_>>()
            .join("\n");
        let s3 = format!("{}{block}{}", &text[..start], &text[end..]).replace(
            "/etc/kaigo-relay/secrets/s3.credentials",
            creds.to_str().unwrap(),
        );
        let s = Settings::from_toml(&s3, &path).unwrap();
        assert_eq!(s.backup.sites.len(), 2);
        assert!(s.backup.sites[1].encrypt, "s3 sites encrypt by default");
        assert!(
            !format!("{:?}", s.backup.sites[1]).contains("s3cr3t"),
            "the secret is not printed"
        );
        // A typo in a site is refused.
        let typo = text.replace("keep_weekly = 8", "keep_weakly = 8");
        assert!(Settings::from_toml(&typo, &path).is_err());
        // Bad mirror settings name their key.
        for (bad, key) in [
            ("catch_up_at_jst = \"09:30\"", "catch_up_at_jst = \"9:3\""),
            ("page_size = 100", "page_size = 0"),
            (
                "payment_notices_due_day = 20",
                "payment_notices_due_day = 31",
            ),
        ] {
            let text = text.replace(bad, key);
            let e = Settings::from_toml(&text, &path).unwrap_err().to_string();
            assert!(e.contains("mirror."), "{e}");
        }
    }
}
