//! The simulator as a whole: [`Simulator`] (the public handle: open, clock, fault plan,
//! certificates, serve) and the shared [`Core`] that the gateway, the control API, the
//! background finaliser and the notice scheduler work on — configuration, window rule, state
//! store, clock, fault plan, CA, the office registry and the notice-phase bookkeeping.
//!
//! Invariants: `Simulator::open` is idempotent (a second open of the same state directory keeps
//! the CA, every issued certificate, every office and every submission); the in-memory office
//! registry is only changed after the state store has committed the change, so it never claims
//! more than a restart would restore.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context as _;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::certs::{CertAuthority, CertError};
use crate::clock::{Clock, format_jst};
use crate::config::{ConfigError, OfficeConfig, SimConfig};
use crate::faults::{FaultPlan, FaultPlanError, FaultStatus, Faults};
use crate::phases::Phase;
use crate::state::{IssuedCert, OfficeRecord, State, StateError};
use crate::window::{Month, Window};

/// Where the two listeners ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    pub gateway_addr: SocketAddr,
    pub control_addr: SocketAddr,
    /// `https://127.0.0.1:PORT`
    pub gateway_url: String,
    /// `http://127.0.0.1:PORT`
    pub control_url: String,
}

/// Why an office could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// The offices of one authenticated user ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    pub user_id: String,
    /// 事業所番号 of every office with this user ID.
    pub offices: Vec<String>,
    /// Every certificate fingerprint allowed for any of those offices.
    pub fingerprints: BTreeSet<String>,
}

/// State shared by every task of a running simulator.
#[derive(Debug)]
pub struct Core {
    pub config: SimConfig,
    pub window: Window,
    pub state: State,
    pub clock: Clock,
    /// The fault plan in force and its counters (in memory: a start uses the config's plan).
    pub(crate) faults: Faults,
    ca: Mutex<CertAuthority>,
    offices: RwLock<BTreeMap<String, OfficeRecord>>,
    /// Submissions whose 受付 result is still hidden: seq → due time (ms).
    pub(crate) pending: Mutex<BTreeMap<u64, i64>>,
    /// Processing months with at least one recorded submission (the months phases run for).
    pub(crate) review_months: Mutex<BTreeSet<Month>>,
    /// Phases that have run, as their markers in the store say (a cache for the scheduler).
    pub(crate) phases_done: Mutex<BTreeSet<(Month, Phase)>>,
    /// Serialises phase runs.
    pub(crate) phase_lock: Mutex<()>,
}

impl Core {
    /// Registers or updates an office (validated). Without configured fingerprints the office
    /// gets a client certificate issued by the simulator CA (an existing one is reused).
    pub fn register_office(&self, office: &OfficeConfig) -> Result<OfficeRecord, RegisterError> {
        office.validate()?;
        let previous = self.office(&office.office_number);
        let mut fingerprints: Vec<String> = Vec::new();
        for f in &office.certificate_fingerprints {
            let f = f.to_ascii_lowercase();
            if !fingerprints.contains(&f) {
                fingerprints.push(f);
            }
        }
        let issued = if fingerprints.is_empty() {
            let ca = self.ca.lock().unwrap_or_else(|e| e.into_inner());
            let files = ca.ensure_client(&office.office_number)?;
            Some(IssuedCert {
                fingerprint: files.fingerprint,
            })
        } else {
            previous.and_then(|p| p.issued)
        };
        let record = OfficeRecord {
            office_number: office.office_number.clone(),
            name: office.name.clone(),
            user_id: office.user_id.clone(),
            password: office.password.clone(),
            certificate_fingerprints: fingerprints,
            issued,
        };
        self.state.put_office(&record)?;
        self.offices
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record.office_number.clone(), record.clone());
        tracing::info!(
            office_number = %record.office_number,
            user_id = %record.user_id,
            "registered office"
        );
        Ok(record)
    }

    /// Paths of the client certificate and key issued for an office, if one was issued.
    pub fn client_paths(&self, office_number: &str) -> Option<(PathBuf, PathBuf)> {
        self.office(office_number)?.issued?;
        Some(CertAuthority::client_paths(
            &self.config.state_dir,
            office_number,
        ))
    }

    /// One registered office.
    pub fn office(&self, office_number: &str) -> Option<OfficeRecord> {
        self.offices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(office_number)
            .cloned()
    }

    /// Every registered office, ordered by office number.
    pub fn offices(&self) -> Vec<OfficeRecord> {
        self.offices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Checks HTTP Basic credentials: some office with this user ID has this password.
    pub fn authenticate(&self, user_id: &str, password: &str) -> Option<UserView> {
        let offices = self.offices.read().unwrap_or_else(|e| e.into_inner());
        let mine: Vec<&OfficeRecord> = offices.values().filter(|o| o.user_id == user_id).collect();
        if !mine.iter().any(|o| o.password == password) {
            return None;
        }
        Some(UserView {
            user_id: user_id.to_owned(),
            offices: mine.iter().map(|o| o.office_number.clone()).collect(),
            fingerprints: mine.iter().flat_map(|o| o.allowed_fingerprints()).collect(),
        })
    }

    /// Sets (`Some`) or clears (`None`, real time) the virtual clock; persisted first.
    pub fn set_clock(&self, now: Option<Timestamp>) -> Result<(), StateError> {
        let setting = now.map(Clock::setting_for);
        self.state.set_clock(setting)?;
        self.clock.apply(setting);
        tracing::info!(
            now = now.map(format_jst).as_deref().unwrap_or("real time"),
            "clock set"
        );
        Ok(())
    }
}

/// The federation gateway simulator (see the crate documentation).
#[derive(Debug)]
pub struct Simulator {
    core: Arc<Core>,
}

impl Simulator {
    /// Opens (or creates) the state directory: on a new directory generates the CA, the server
    /// certificate, and one client certificate per configured office that has no
    /// certificate_fingerprints; registers/updates the configured offices. Idempotent: a second
    /// open of the same dir keeps the same CA/certs and all received submissions.
    pub fn open(mut config: SimConfig) -> anyhow::Result<Simulator> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        config
            .validate()
            .context("invalid simulator configuration")?;
        let window = Window::new(&config.window).context("invalid reception window")?;
        std::fs::create_dir_all(&config.state_dir).with_context(|| {
            format!(
                "cannot create state directory {}",
                config.state_dir.display()
            )
        })?;
        // Every path the simulator reports (certificates, listen.json) is absolute.
        config.state_dir = std::path::absolute(&config.state_dir)
            .with_context(|| format!("cannot resolve {}", config.state_dir.display()))?;
        let dir = config.state_dir.clone();
        let state = State::open(&dir.join("sim.redb"))
            .with_context(|| format!("cannot open {}", dir.join("sim.redb").display()))?;
        let ca = CertAuthority::load_or_create(&dir).context("cannot set up the simulator CA")?;
        let stored_names = state.server_names()?;
        let reissue = stored_names.as_ref() != Some(&config.server_names);
        ca.ensure_server(&config.server_names, reissue)
            .context("cannot issue the server certificate")?;
        if reissue {
            state.set_server_names(&config.server_names)?;
        }
        let clock = Clock::new(state.clock()?);
        let offices = state
            .offices()?
            .into_iter()
            .map(|o| (o.office_number.clone(), o))
            .collect();
        let submissions = state.submissions()?;
        let pending = submissions
            .iter()
            .filter(|s| s.is_pending())
            .map(|s| (s.seq, s.reception_due_ms))
            .collect();
        let review_months = submissions
            .iter()
            .filter_map(|s| Month::parse(&s.processing_month))
            .collect();
        drop(submissions);
        let phases_done = state
            .phase_markers()?
            .iter()
            .filter_map(|m| Phase::from_marker(m))
            .map(|(phase, month)| (month, phase))
            .collect();
        let faults = Faults::new(config.faults.clone());
        let core = Core {
            config,
            window,
            state,
            clock,
            faults,
            ca: Mutex::new(ca),
            offices: RwLock::new(offices),
            pending: Mutex::new(pending),
            review_months: Mutex::new(review_months),
            phases_done: Mutex::new(phases_done),
            phase_lock: Mutex::new(()),
        };
        for office in &core.config.offices {
            core.register_office(office)
                .with_context(|| format!("cannot register office {}", office.office_number))?;
        }
        tracing::info!(state_dir = %dir.display(), "simulator state opened");
        Ok(Simulator {
            core: Arc::new(core),
        })
    }

    /// The configuration the simulator was opened with.
    pub fn config(&self) -> &SimConfig {
        &self.core.config
    }

    #[cfg(test)]
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// `state_dir/ca.pem`: the CA that signs the server and client certificates.
    pub fn ca_cert_path(&self) -> PathBuf {
        CertAuthority::ca_cert_path(&self.core.config.state_dir)
    }

    /// PEM cert and key paths of the client certificate issued for this office, if any.
    pub fn client_identity(&self, office_number: &str) -> Option<(PathBuf, PathBuf)> {
        self.core.client_paths(office_number)
    }

    /// Sets the virtual clock (persisted); it then runs on at real speed from there.
    pub fn set_clock(&self, now: Timestamp) -> anyhow::Result<()> {
        self.core
            .set_clock(Some(now))
            .context("cannot persist the clock setting")
    }

    /// Returns to real time (persisted).
    pub fn use_real_clock(&self) -> anyhow::Result<()> {
        self.core
            .set_clock(None)
            .context("cannot persist the clock setting")
    }

    /// Replaces the fault plan (as `POST /sim/faults` does) and resets the fault counters.
    pub fn set_faults(&self, plan: FaultPlan) -> Result<(), FaultPlanError> {
        self.core.faults.set(plan)
    }

    /// The fault plan in force and the faults injected since it was set (as `GET /sim/faults`).
    pub fn faults(&self) -> FaultStatus {
        self.core.faults.status()
    }

    /// Binds both listeners, writes `state_dir/listen.json`, prints the listening line, sends
    /// [`Listening`] on `ready`, then serves until `shutdown` is cancelled (graceful, bounded).
    pub async fn serve(
        self,
        shutdown: CancellationToken,
        ready: Option<tokio::sync::oneshot::Sender<Listening>>,
    ) -> anyhow::Result<()> {
        crate::server::serve(self.core, shutdown, ready).await
    }
}
