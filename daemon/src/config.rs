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
    offices: Vec<RawOffice>,
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
}

impl Default for RawRelay {
    fn default() -> Self {
        Self {
            max_concurrent_sends: defaults::max_concurrent_sends(),
            retry_initial_ms: defaults::retry_initial_ms(),
            retry_max_secs: defaults::retry_max_secs(),
            shutdown_grace_secs: defaults::shutdown_grace_secs(),
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
    client_cert_file: PathBuf,
    client_key_file: PathBuf,
    #[serde(default)]
    ended_from_month: Option<crate::claim::Month>,
}

mod defaults {
    pub fn rescan_interval_secs() -> u64 {
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
        4
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
    /// The offices this appliance sends for.
    pub offices: Vec<OfficeSettings>,
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
    /// Client certificate (PEM) for mutual TLS.
    pub client_cert_file: PathBuf,
    /// Its private key (PEM).
    pub client_key_file: PathBuf,
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
        };

        if raw.offices.is_empty() {
            return Err(invalid(
                "offices",
                "送信する事業所を 1 つ以上 [[offices]] に登録してください (register at least one office)",
            ));
        }
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
            let password_path = abs(&o.federation_password_file);
            let password = std::fs::read_to_string(&password_path).map_err(|e| {
                invalid(
                    key("federation_password_file"),
                    format!(
                        "{} を読めません (cannot read): {e}",
                        password_path.display()
                    ),
                )
            })?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            if password.is_empty() {
                return Err(invalid(
                    key("federation_password_file"),
                    format!("{} が空です (is empty)", password_path.display()),
                ));
            }
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
                federation_password: Secret(password),
                client_cert_file: abs(&o.client_cert_file),
                client_key_file: abs(&o.client_key_file),
                ended_from_month: o.ended_from_month,
            });
        }

        Ok(Settings {
            config_path: path.to_owned(),
            state_dir: abs(&raw.state_dir),
            intake,
            gateway,
            relay,
            offices,
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
                MINIMAL.split("[[offices]]").next().unwrap().to_owned(),
                "offices",
            ),
        ];
        for (text, needle) in cases {
            let err = Settings::from_toml(&text, &path).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
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
        let text = example.replace(
            "/etc/kaigo-relay/secrets/1379999996.password",
            pw.to_str().unwrap(),
        );
        let s = Settings::from_toml(&text, &path).unwrap();
        assert_eq!(s.offices.len(), 1);
        assert_eq!(s.intake.drop_dir, PathBuf::from("/srv/kaigo-relay/drop"));
    }
}
