//! The simulator's TOML configuration: listeners, server certificate names, reception timing,
//! the reception window, when the notice phases run by themselves, the fault plan in force at
//! start and the offices to register at start.
//!
//! Invariants: unknown keys are rejected everywhere (`deny_unknown_fields`, fault kinds by
//! name); a config that passes [`SimConfig::validate`] has a loopback control listener, valid
//! 事業所番号 (check digit), `KJ` user IDs, well-formed fingerprints, a well-formed window, a
//! well-formed notice schedule and a valid fault plan (off unless a `[faults]` table turns it
//! on), so the rest of the crate never re-checks them. Relative `state_dir` paths are resolved against the config file's
//! directory by [`SimConfig::load`].

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::faults::{FaultPlan, FaultPlanError};
use crate::ids;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Directory holding certificates, keys, `sim.redb` and `listen.json`.
    pub state_dir: PathBuf,
    /// Address of the mutual-TLS gateway listener (port 0 = any free port).
    #[serde(default = "default_gateway_listen")]
    pub gateway_listen: SocketAddr,
    /// Address of the plain-HTTP control listener; must be a loopback address.
    #[serde(default = "default_control_listen")]
    pub control_listen: SocketAddr,
    /// Subject alternative names of the server certificate (IP literals become IP SANs).
    #[serde(default = "default_server_names")]
    pub server_names: Vec<String>,
    /// Simulated time between 到達 and the moment the 受付 result is revealed.
    #[serde(default = "default_reception_delay_ms")]
    pub reception_delay_ms: u64,
    /// Largest accepted claim body in bytes (413 `too_large` above it).
    #[serde(default = "default_max_claim_bytes")]
    pub max_claim_bytes: u64,
    /// The monthly reception window (JST).
    #[serde(default)]
    pub window: WindowConfig,
    /// When the month-end and payment phases run on the simulator clock (`[notices]`).
    #[serde(default)]
    pub notices: NoticesConfig,
    /// The fault plan in force at start (`[faults]`; off by default). `POST /sim/faults`
    /// replaces it until the process ends.
    #[serde(default)]
    pub faults: FaultPlan,
    /// Offices registered (or updated) at every start.
    #[serde(default)]
    pub offices: Vec<OfficeConfig>,
}

/// The monthly reception window, in JST (fixed +09:00).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// First day of the window (00:00 JST). Days past the end of a month mean its last day.
    pub open_day: u8,
    /// Day on which the window closes at `close_time`.
    pub close_day: u8,
    /// `HH:MM` on `close_day`; `24:00` means the next day 00:00.
    pub close_time: String,
    /// `HH:MM` on `close_day` until which a submission may be withdrawn.
    pub withdraw_close_time: String,
}

/// A day of the month in the notice schedule: `"last"` or a day 1..=28 (valid in every month).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayOfMonth {
    /// The month's last day.
    Last,
    /// This day (1..=28 once validated).
    Day(u8),
}

impl DayOfMonth {
    /// The day in a month of `days` days.
    pub fn in_month(self, days: i8) -> i8 {
        match self {
            DayOfMonth::Last => days,
            DayOfMonth::Day(d) => i8::try_from(d).unwrap_or(days).min(days),
        }
    }
}

impl Serialize for DayOfMonth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DayOfMonth::Last => s.serialize_str("last"),
            DayOfMonth::Day(d) => s.serialize_u8(*d),
        }
    }
}

impl<'de> Deserialize<'de> for DayOfMonth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DayOfMonth, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) if t == "last" => Ok(DayOfMonth::Last),
            Raw::Number(n) => u8::try_from(n).map(DayOfMonth::Day).map_err(|_| {
                serde::de::Error::custom(format!("day {n} is not \"last\" or a day 1..=28"))
            }),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "{t:?} is not \"last\" or a day 1..=28"
            ))),
        }
    }
}

/// When the notice phases run by themselves, in JST: the month-end phase of processing month
/// M at `month_end_day` of M, `month_end_time`; the payment phase of M at `payment_day` of
/// M+1, `payment_time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoticesConfig {
    /// Run due phases by themselves when the simulator clock passes their time.
    pub auto: bool,
    /// Day of month M of the month-end phase: `"last"` or 1..=28.
    pub month_end_day: DayOfMonth,
    /// `HH:MM` on `month_end_day` (`24:00` = the next day 00:00).
    pub month_end_time: String,
    /// Day of month M+1 of the payment phase for M: `"last"` or 1..=28.
    pub payment_day: DayOfMonth,
    /// `HH:MM` on `payment_day`.
    pub payment_time: String,
}

impl Default for NoticesConfig {
    fn default() -> Self {
        NoticesConfig {
            auto: true,
            month_end_day: DayOfMonth::Last,
            month_end_time: "17:00".to_owned(),
            payment_day: DayOfMonth::Day(15),
            payment_time: "17:00".to_owned(),
        }
    }
}

impl NoticesConfig {
    /// Minutes after 00:00 of `month_end_day` at which the month-end phase runs.
    pub fn month_end_minutes(&self) -> Result<u32, ConfigError> {
        parse_hhmm(&self.month_end_time).ok_or_else(|| ConfigError::BadNoticeTime {
            field: "month_end_time",
            value: self.month_end_time.clone(),
        })
    }

    /// Minutes after 00:00 of `payment_day` at which the payment phase runs.
    pub fn payment_minutes(&self) -> Result<u32, ConfigError> {
        parse_hhmm(&self.payment_time).ok_or_else(|| ConfigError::BadNoticeTime {
            field: "payment_time",
            value: self.payment_time.clone(),
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (field, day) in [
            ("month_end_day", self.month_end_day),
            ("payment_day", self.payment_day),
        ] {
            if let DayOfMonth::Day(value) = day
                && !(1..=28).contains(&value)
            {
                return Err(ConfigError::BadNoticeDay { field, value });
            }
        }
        self.month_end_minutes()?;
        self.payment_minutes()?;
        Ok(())
    }
}

/// One office (事業所) known to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficeConfig {
    /// 10-digit 事業所番号 with a valid check digit.
    pub office_number: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Federation user ID (`KJ…`); several offices may share one (agent ID).
    pub user_id: String,
    /// Password of the user ID.
    pub password: String,
    /// Hex SHA-256 of the DER of every client certificate allowed for this office. Empty: the
    /// simulator issues one (`clients/<office_number>.pem`).
    #[serde(default)]
    pub certificate_fingerprints: Vec<String>,
}

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("control_listen {0} is not a loopback address (the control API has no authentication)")]
    ControlNotLoopback(SocketAddr),
    #[error("server_names must name at least one host")]
    NoServerNames,
    #[error("server_names contains an empty name")]
    EmptyServerName,
    #[error("max_claim_bytes must be at least 1")]
    ZeroMaxClaimBytes,
    #[error("window.{field} = {value} is not a day of the month (1..=31)")]
    BadDay { field: &'static str, value: u8 },
    #[error("window.open_day {open} is after window.close_day {close}")]
    OpenAfterClose { open: u8, close: u8 },
    #[error("window.{field} = {value:?} is not a time HH:MM between 00:00 and 24:00")]
    BadTime { field: &'static str, value: String },
    #[error("notices.{field} = {value} is not \"last\" or a day 1..=28")]
    BadNoticeDay { field: &'static str, value: u8 },
    #[error("notices.{field} = {value:?} is not a time HH:MM between 00:00 and 24:00")]
    BadNoticeTime { field: &'static str, value: String },
    #[error("office_number {0:?} is not 10 digits with a valid check digit")]
    BadOfficeNumber(String),
    #[error("office {0} is configured twice")]
    DuplicateOffice(String),
    #[error(
        "office {office}: user_id {user_id:?} must start with \"KJ\" (printable ASCII, no ':')"
    )]
    BadUserId { office: String, user_id: String },
    #[error("office {0}: password must not be empty")]
    EmptyPassword(String),
    #[error("office {office}: certificate fingerprint {fingerprint:?} is not 64 hex digits")]
    BadFingerprint { office: String, fingerprint: String },
    #[error("faults: {0}")]
    Faults(#[from] FaultPlanError),
}

fn default_gateway_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 8443))
}

fn default_control_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 8444))
}

fn default_server_names() -> Vec<String> {
    vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
}

fn default_reception_delay_ms() -> u64 {
    2000
}

fn default_max_claim_bytes() -> u64 {
    10 * 1024 * 1024
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            open_day: 1,
            close_day: 10,
            close_time: "24:00".to_owned(),
            withdraw_close_time: "24:00".to_owned(),
        }
    }
}

impl WindowConfig {
    /// Minutes after 00:00 of `close_day` at which the window closes (1440 for `24:00`).
    pub fn close_minutes(&self) -> Result<u32, ConfigError> {
        parse_time_of_day("close_time", &self.close_time)
    }

    /// Minutes after 00:00 of `close_day` at which withdrawals stop.
    pub fn withdraw_close_minutes(&self) -> Result<u32, ConfigError> {
        parse_time_of_day("withdraw_close_time", &self.withdraw_close_time)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [("open_day", self.open_day), ("close_day", self.close_day)] {
            if !(1..=31).contains(&value) {
                return Err(ConfigError::BadDay { field, value });
            }
        }
        if self.open_day > self.close_day {
            return Err(ConfigError::OpenAfterClose {
                open: self.open_day,
                close: self.close_day,
            });
        }
        self.close_minutes()?;
        self.withdraw_close_minutes()?;
        Ok(())
    }
}

/// Parses `HH:MM` (00:00..=24:00) into minutes after midnight.
fn parse_time_of_day(field: &'static str, value: &str) -> Result<u32, ConfigError> {
    parse_hhmm(value).ok_or_else(|| ConfigError::BadTime {
        field,
        value: value.to_owned(),
    })
}

/// `HH:MM` (00:00..=24:00) as minutes after midnight.
fn parse_hhmm(value: &str) -> Option<u32> {
    let (h, m) = value.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

impl SimConfig {
    /// A configuration with every default and the given state directory.
    pub fn new(state_dir: impl Into<PathBuf>) -> SimConfig {
        SimConfig {
            state_dir: state_dir.into(),
            gateway_listen: default_gateway_listen(),
            control_listen: default_control_listen(),
            server_names: default_server_names(),
            reception_delay_ms: default_reception_delay_ms(),
            max_claim_bytes: default_max_claim_bytes(),
            window: WindowConfig::default(),
            notices: NoticesConfig::default(),
            faults: FaultPlan::default(),
            offices: Vec::new(),
        }
    }

    /// Reads TOML, rejects unknown keys, resolves a relative `state_dir` against the config
    /// file's directory and validates the result.
    pub fn load(path: &Path) -> anyhow::Result<SimConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config = SimConfig::from_toml(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        if config.state_dir.is_relative() {
            let base = path.parent().unwrap_or_else(|| Path::new("."));
            config.state_dir = base.join(&config.state_dir);
        }
        Ok(config)
    }

    /// Parses and validates TOML text (relative paths are left as they are).
    pub fn from_toml(text: &str) -> anyhow::Result<SimConfig> {
        let config: SimConfig = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Serialises back to TOML.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string_pretty(self).context("cannot serialise the simulator config to TOML")
    }

    /// Checks every rule stated in the module documentation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.control_listen.ip().is_loopback() {
            return Err(ConfigError::ControlNotLoopback(self.control_listen));
        }
        if self.server_names.is_empty() {
            return Err(ConfigError::NoServerNames);
        }
        if self.server_names.iter().any(|n| n.trim().is_empty()) {
            return Err(ConfigError::EmptyServerName);
        }
        if self.max_claim_bytes == 0 {
            return Err(ConfigError::ZeroMaxClaimBytes);
        }
        self.window.validate()?;
        self.notices.validate()?;
        self.faults.validate()?;
        let mut seen = BTreeSet::new();
        for office in &self.offices {
            office.validate()?;
            if !seen.insert(office.office_number.as_str()) {
                return Err(ConfigError::DuplicateOffice(office.office_number.clone()));
            }
        }
        Ok(())
    }
}

impl OfficeConfig {
    /// Checks the office number, user ID, password and fingerprints.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !ids::is_valid_office_number(&self.office_number) {
            return Err(ConfigError::BadOfficeNumber(self.office_number.clone()));
        }
        if !ids::is_valid_user_id(&self.user_id) {
            return Err(ConfigError::BadUserId {
                office: self.office_number.clone(),
                user_id: self.user_id.clone(),
            });
        }
        if self.password.is_empty() {
            return Err(ConfigError::EmptyPassword(self.office_number.clone()));
        }
        if let Some(bad) = self
            .certificate_fingerprints
            .iter()
            .find(|f| !ids::is_valid_fingerprint(f))
        {
            return Err(ConfigError::BadFingerprint {
                office: self.office_number.clone(),
                fingerprint: bad.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultKind;

    const FULL: &str = r#"
state_dir = "sim-state"
gateway_listen = "127.0.0.1:0"
control_listen = "127.0.0.1:0"
server_names = ["localhost", "127.0.0.1"]
reception_delay_ms = 50
max_claim_bytes = 1000

[window]
open_day = 1
close_day = 10
close_time = "23:30"
withdraw_close_time = "20:00"

[notices]
auto = false
month_end_day = "last"
month_end_time = "16:00"
payment_day = 14
payment_time = "17:30"

[faults]
seed = 7
rate = 0.25
kinds = ["http_503", "lost_response"]
timeout_ms = 300
slow_ms = 200

[[offices]]
office_number = "1379999996"
name = "デモ訪問介護ステーション"
user_id = "KJ00000001"
password = "secret"
"#;

    #[test]
    fn parses_a_full_config() {
        let c = SimConfig::from_toml(FULL).unwrap();
        assert_eq!(c.reception_delay_ms, 50);
        assert_eq!(c.window.close_minutes().unwrap(), 23 * 60 + 30);
        assert_eq!(c.window.withdraw_close_minutes().unwrap(), 20 * 60);
        assert_eq!(c.offices.len(), 1);
        assert!(c.offices[0].certificate_fingerprints.is_empty());
        assert_eq!(
            c.faults,
            FaultPlan {
                seed: 7,
                rate: 0.25,
                kinds: vec![FaultKind::Http503, FaultKind::LostResponse],
                timeout_ms: 300,
                slow_ms: 200,
            }
        );
    }

    #[test]
    fn the_notice_schedule_parses_and_is_checked() {
        let c = SimConfig::from_toml(FULL).unwrap();
        assert!(!c.notices.auto);
        assert_eq!(c.notices.month_end_day, DayOfMonth::Last);
        assert_eq!(c.notices.month_end_minutes().unwrap(), 16 * 60);
        assert_eq!(c.notices.payment_day, DayOfMonth::Day(14));
        assert_eq!(c.notices.payment_minutes().unwrap(), 17 * 60 + 30);
        let d = SimConfig::from_toml("state_dir = \"x\"\n").unwrap().notices;
        assert_eq!(d, NoticesConfig::default());
        assert!(d.auto);
        assert_eq!(d.payment_day, DayOfMonth::Day(15));
        let c = SimConfig::from_toml(
            "state_dir = \"x\"\n[notices]\nmonth_end_day = 28\npayment_day = \"last\"\n",
        )
        .unwrap();
        assert_eq!(c.notices.month_end_day, DayOfMonth::Day(28));
        assert_eq!(c.notices.payment_day, DayOfMonth::Last);
        assert_eq!(DayOfMonth::Last.in_month(30), 30);
        assert_eq!(DayOfMonth::Day(15).in_month(28), 15);
        for bad in [
            "month_end_day = 29\n",
            "month_end_day = 0\n",
            "month_end_day = -1\n",
            "month_end_day = \"first\"\n",
            "payment_day = 31\n",
            "payment_time = \"7:00\"\n",
            "month_end_time = \"24:30\"\n",
            "month_end_time = \"+1:00\"\n",
            "colour = 1\n",
        ] {
            assert!(
                SimConfig::from_toml(&format!("state_dir = \"x\"\n[notices]\n{bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn faults_are_off_by_default_and_checked() {
        let c = SimConfig::from_toml("state_dir = \"x\"\n").unwrap();
        assert!(!c.faults.is_on());
        assert_eq!(c.faults.timeout_ms, 30_000);
        assert_eq!(c.faults.slow_ms, 1_500);
        assert_eq!(c.faults.kinds, FaultKind::ALL.to_vec());
        // An integer rate is fine; partial tables take the defaults.
        let c = SimConfig::from_toml("state_dir = \"x\"\n[faults]\nrate = 1\n").unwrap();
        assert!(c.faults.is_on());
        for bad in [
            "[faults]\nrate = 1.5\n",
            "[faults]\nrate = -0.5\n",
            "[faults]\nrate = 0.5\nkinds = []\n",
            "[faults]\nkinds = [\"http_502\"]\n",
            "[faults]\ncolour = 1\n",
            "[faults]\nslow_ms = 3600001\n",
        ] {
            assert!(
                SimConfig::from_toml(&format!("state_dir = \"x\"\n{bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_state_dir_is_required() {
        let c = SimConfig::from_toml("state_dir = \"x\"\n").unwrap();
        assert_eq!(c, SimConfig::new("x"));
        assert!(SimConfig::from_toml("").is_err());
    }

    #[test]
    fn unknown_keys_are_rejected_at_every_level() {
        assert!(SimConfig::from_toml("state_dir = \"x\"\nfoo = 1\n").is_err());
        assert!(SimConfig::from_toml("state_dir = \"x\"\n[window]\nopen = 1\n").is_err());
        let office = "state_dir = \"x\"\n[[offices]]\noffice_number = \"1379999996\"\n\
                      user_id = \"KJ1\"\npassword = \"p\"\ncolour = \"red\"\n";
        assert!(SimConfig::from_toml(office).is_err());
    }

    #[test]
    fn toml_round_trips() {
        let c = SimConfig::from_toml(FULL).unwrap();
        let again = SimConfig::from_toml(&c.to_toml().unwrap()).unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn validation_rules() {
        let base = SimConfig::from_toml(FULL).unwrap();

        let mut c = base.clone();
        c.control_listen = "0.0.0.0:8444".parse().unwrap();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ControlNotLoopback(_))
        ));

        let mut c = base.clone();
        c.offices[0].office_number = "1379999997".into();
        assert!(matches!(c.validate(), Err(ConfigError::BadOfficeNumber(_))));

        let mut c = base.clone();
        c.offices[0].user_id = "XX0001".into();
        assert!(matches!(c.validate(), Err(ConfigError::BadUserId { .. })));

        let mut c = base.clone();
        c.offices.push(c.offices[0].clone());
        assert!(matches!(c.validate(), Err(ConfigError::DuplicateOffice(_))));

        let mut c = base.clone();
        c.offices[0].certificate_fingerprints = vec!["abc".into()];
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BadFingerprint { .. })
        ));

        for bad in ["24:01", "25:00", "9:00", "10:60", "", "1000"] {
            let mut c = base.clone();
            c.window.close_time = bad.into();
            assert!(
                matches!(c.validate(), Err(ConfigError::BadTime { .. })),
                "{bad}"
            );
        }

        let mut c = base.clone();
        c.window.open_day = 11;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::OpenAfterClose { .. })
        ));

        let mut c = base;
        c.window.close_day = 32;
        assert!(matches!(c.validate(), Err(ConfigError::BadDay { .. })));
    }

    #[test]
    fn relative_state_dir_is_resolved_against_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.toml");
        std::fs::write(&path, "state_dir = \"state\"\n").unwrap();
        let c = SimConfig::load(&path).unwrap();
        assert_eq!(c.state_dir, dir.path().join("state"));

        std::fs::write(&path, "state_dir = \"/abs/state\"\n").unwrap();
        assert_eq!(
            SimConfig::load(&path).unwrap().state_dir,
            Path::new("/abs/state")
        );
    }

    #[test]
    fn the_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("federation-sim.example.toml");
        let c = SimConfig::load(&path).unwrap();
        assert_eq!(
            c.state_dir,
            Path::new(env!("CARGO_MANIFEST_DIR")).join("sim-state")
        );
        assert!(!c.offices.is_empty());
    }
}
