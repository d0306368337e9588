//! The running appliance: opens the store, builds the gateway client, starts intake, the
//! relay, the deadline watch, the withdraw desk, the notice mirror and the returns linker, and on shutdown drains them within a bounded grace period.
//!
//! Invariant: every long-running stage gets a child of one shutdown token; if any stage fails,
//! the others are stopped too and the error is returned (systemd restarts the service), so the
//! daemon never runs half-alive with a dead stage.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::Settings;
use crate::deadline::DeadlineWatch;
use crate::federation::GatewayClient;
use crate::intake::Intake;
use crate::relay::Relay;
use crate::store::Store;
use crate::withdraw::WithdrawDesk;

/// Opens the store as its writer. A `status` command may hold the file for a moment (it repairs
/// a file left by a crash when no daemon has it open), so "already open" is retried for 10 s.
fn open_store_waiting(path: &std::path::Path) -> Result<Store, crate::store::StoreError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(path) {
            Err(crate::store::StoreError::AlreadyOpen) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// How often open returns are matched against new submissions even without a hint.
const RETURNS_LINK_INTERVAL: Duration = Duration::from_secs(300);

/// A started appliance.
#[derive(Debug)]
pub struct App {
    /// The store (shared with the stages).
    pub store: Store,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    shutdown: CancellationToken,
    grace: Duration,
}

impl App {
    /// Opens everything and starts the stages. Errors here are configuration or environment
    /// problems (unreadable certificate, store locked by another process…).
    pub fn start(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<App> {
        std::fs::create_dir_all(&settings.state_dir).with_context(|| {
            format!(
                "状態フォルダー {} を作成できません (cannot create the state directory)",
                settings.state_dir.display()
            )
        })?;
        let store_path = settings.store_path();
        let store = open_store_waiting(&store_path).with_context(|| {
            format!(
                "データベース {} を開けません (cannot open the store)",
                store_path.display()
            )
        })?;
        let gateway = Arc::new(GatewayClient::new(&settings)?);
        Intake::prepare_folders(&settings.intake.drop_dir)?;

        let (window_tx, window_rx) = watch::channel(None);
        let wakeup = Arc::new(Notify::new());
        let deadline = DeadlineWatch {
            store: store.clone(),
            offices: settings.office_standings(),
            window: window_rx.clone(),
            lead: settings.relay.window_closing_alert,
        };
        let intake = Intake {
            settings: settings.intake.clone(),
            store: store.clone(),
            offices: Arc::new(settings.office_standings()),
            window: window_rx,
            relay_wakeup: wakeup.clone(),
        };
        let desk = WithdrawDesk {
            store: store.clone(),
            gateway: gateway.clone(),
            dir: settings.state_dir.join(crate::withdraw::REQUESTS_DIR),
        };
        let sent = Arc::new(Notify::new());
        let returns_hint = Arc::new(Notify::new());
        let mirror = crate::mirror::Mirror {
            gateway: gateway.clone(),
            store: store.clone(),
            settings: settings.mirror.clone(),
            users: crate::mirror::UserPlan::from_offices(&settings.offices),
            sent: sent.clone(),
            returns_hint: returns_hint.clone(),
        };
        let relay = Relay {
            sent,
            gateway,
            store: store.clone(),
            settings: settings.relay.clone(),
            gateway_settings: settings.gateway.clone(),
            wakeup,
            window: window_tx,
            drop_dir: settings.intake.drop_dir.clone(),
            breaker: Default::default(),
            slots: crate::relay::RequestSlots::new(settings.relay.max_concurrent_sends),
            notes: crate::intake::NoteWriter::start(
                store.clone(),
                settings.intake.drop_dir.clone(),
            )
            .context("cannot start the result-note writer")?,
        };
        let mut tasks = JoinSet::new();
        let token = shutdown.child_token();
        tasks.spawn(async move { ("intake", intake.run(token).await) });
        let token = shutdown.child_token();
        tasks.spawn(async move { ("relay", relay.run(token).await) });
        let token = shutdown.child_token();
        tasks.spawn(async move { ("deadline", deadline.run(token).await) });
        let token = shutdown.child_token();
        tasks.spawn(async move { ("withdraw", desk.run(token).await) });
        let token = shutdown.child_token();
        tasks.spawn(async move { ("mirror", mirror.run(token).await) });
        let token = shutdown.child_token();
        let returns_store = store.clone();
        tasks.spawn(async move {
            (
                "returns",
                crate::returns::run(returns_store, returns_hint, RETURNS_LINK_INTERVAL, token)
                    .await,
            )
        });
        let token = shutdown.child_token();
        let (status_store, state_dir) = (store.clone(), settings.state_dir.clone());
        tasks.spawn(async move {
            (
                "status",
                crate::status::serve(status_store, state_dir, token).await,
            )
        });
        info!(
            config = %settings.config_path.display(),
            drop_dir = %settings.intake.drop_dir.display(),
            gateway = %settings.gateway.url,
            offices = settings.offices.len(),
            "kaigo-relay running"
        );
        Ok(App {
            store,
            tasks,
            shutdown,
            grace: settings.relay.shutdown_grace,
        })
    }

    /// Waits until shutdown (or until a stage fails), then drains.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut failure = None;
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => {}
            Some(done) = self.tasks.join_next() => {
                let (stage, result) = done.context("a stage panicked")?;
                let err = match result {
                    // A stage that saw the shutdown first and stopped cleanly is no failure.
                    Ok(()) if self.shutdown.is_cancelled() => None,
                    Ok(()) => Some(anyhow::anyhow!("stage {stage} stopped unexpectedly")),
                    Err(e) => Some(e.context(format!("stage {stage} failed"))),
                };
                if let Some(err) = err {
                    error!(error = format!("{err:#}"), "stopping kaigo-relay");
                    failure = Some(err);
                }
                self.shutdown.cancel();
            }
        }
        let drain = async {
            while let Some(done) = self.tasks.join_next().await {
                if let Ok((stage, Err(e))) = done {
                    error!(
                        stage,
                        error = format!("{e:#}"),
                        "stage failed while stopping"
                    );
                }
            }
        };
        if tokio::time::timeout(self.grace + Duration::from_secs(2), drain)
            .await
            .is_err()
        {
            error!("stages did not stop in time; aborting them");
            self.tasks.abort_all();
        }
        info!("kaigo-relay stopped");
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
