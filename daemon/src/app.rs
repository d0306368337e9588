//! The running appliance: opens the store, makes the first system administrator, starts the
//! control socket and the admin UI, and runs the pipeline (intake, the relay, the deadline
//! watch, the withdraw desk, the notice mirror and the returns linker) for the offices of the
//! config file and the store, starting it again when those change; on shutdown it drains
//! everything within a bounded grace period.
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
use tracing::{error, info, warn};

use crate::config::Settings;
use crate::deadline::DeadlineWatch;
use crate::disk_guard::{DiskGate, DiskGuard};
use crate::federation::{GatewayClient, GatewayWindow};
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

/// Shows the first administrator password once on the console, when there is one (stderr is a
/// terminal); it is always in a file only the service's user can read. Under systemd stderr is
/// the journal, a log: there only where the file is goes, never the password.
fn announce_first_admin(password: &str, file: &std::path::Path) {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        info!(file = %file.display(), "system administrator created; its one-time password is in the file (and nowhere else)");
        return;
    }
    eprintln!(
        "\n================================================================\n\
         管理画面のシステム管理者を作成しました / system administrator created\n\
         ID: {}\n\
         初期パスワード / first password: {password}\n\
         最初のログインで変更してください。この表示は一度だけです（{} にも保存）。\n\
         Change it at the first login. Shown once; also saved in {}.\n\
         ================================================================\n",
        crate::accounts::manage::ADMIN_ID,
        file.display(),
        file.display()
    );
    info!(file = %file.display(), "system administrator created with a one-time password");
}

/// The stages that work with the offices (intake, relay, deadline watch, withdraw desk, notice
/// mirror, returns linker). When the offices change (registered or ended in the UI or with
/// `kaigo-relay office`), they are drained and started again with the new list; the store is
/// the truth, so nothing is lost between the two runs.
struct Pipeline {
    settings: Settings,
    store: Store,
    key: Arc<crate::accounts::secrets::SecretKey>,
    changed: Arc<Notify>,
    /// The gateway's window, kept across pipeline restarts (the admin UI reads it).
    window: watch::Sender<Option<GatewayWindow>>,
    /// The intake's scans, for the service watchdog.
    heartbeat: crate::service::Heartbeat,
    /// Closed while the store's disk is nearly full.
    disk: DiskGate,
    /// Wakes the relay (a file queued by intake, or sent again from the admin UI); kept
    /// across pipeline restarts so the admin UI's handle stays the live one.
    relay_wakeup: Arc<Notify>,
}

impl Pipeline {
    /// The offices to work with now: the config file's (each must load, or the daemon stops,
    /// as a bad config does) and the registered ones whose certificates load (one that does
    /// not is left out, with an error a person must act on).
    fn offices(&self) -> anyhow::Result<Vec<crate::config::OfficeSettings>> {
        let records = self.store.office_records()?;
        let (offices, problems) = crate::accounts::offices::effective_offices(
            &self.settings.offices,
            &records,
            &self.key,
        );
        for (number, e) in problems {
            error!(code = %admin_ui::help::code::OFFICES_UNUSABLE, office = %number, error = %e, "登録された事業所の設定が使えません。直すまで、この事業所の請求ファイルは送信しません (a registered office cannot be used; it is not sent for until this is fixed)");
        }
        if offices.is_empty() {
            return Ok(offices);
        }
        let roots = match crate::transport::load_roots(&self.settings.gateway.ca_file) {
            Ok(roots) => roots,
            // Only registered offices: the appliance keeps running (UI, mirror of nothing,
            // backups) and says what to fix. A config-file office makes it a config error.
            Err(e) if self.settings.offices.is_empty() => {
                error!(
                    ca_file = %self.settings.gateway.ca_file.display(),
                    error = format!("{e:#}"),
                    "ゲートウェイの CA 証明書を読めないため、どの事業所の送信も始めません (the gateway CA cannot be read; no office is sent for until it is in place)"
                );
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut usable = Vec::with_capacity(offices.len());
        for o in offices {
            let from_config = self
                .settings
                .offices
                .iter()
                .any(|c| c.office_number == o.office_number);
            match crate::transport::tls_config(roots.clone(), &self.settings.gateway.pin_sha256, &o)
            {
                Ok(_) => usable.push(o),
                Err(e) if from_config => return Err(e),
                Err(e) => {
                    error!(code = %admin_ui::help::code::OFFICES_UNUSABLE, office = %o.office_number, error = format!("{e:#}"), "登録された事業所のクライアント証明書が使えません。直すまで、この事業所の請求ファイルは送信しません (the client certificate of a registered office cannot be used; it is not sent for until this is fixed)")
                }
            }
        }
        Ok(usable)
    }

    async fn supervise(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            let mut settings = self.settings.clone();
            settings.offices = self.offices()?;
            let token = shutdown.child_token();
            let mut stages = if settings.offices.is_empty() {
                warn!(
                    "事業所がまだ登録されていません。登録するまで、投入フォルダーのファイルは受け付けません (no office is registered yet: nothing is taken from the drop folder until one is (kaigo-relay office add, or [[offices]] in the config file))"
                );
                JoinSet::new()
            } else {
                start_pipeline(
                    &settings,
                    &self.store,
                    &self.window,
                    &self.heartbeat,
                    &self.disk,
                    &self.relay_wakeup,
                    token.clone(),
                )?
            };
            let reload = tokio::select! {
                _ = shutdown.cancelled() => false,
                _ = self.changed.notified() => true,
                Some(done) = stages.join_next() => {
                    let (stage, result) = done.context("a stage panicked")?;
                    token.cancel();
                    drain(&mut stages, settings.relay.shutdown_grace).await;
                    return match result {
                        Ok(()) if shutdown.is_cancelled() => Ok(()),
                        Ok(()) => Err(anyhow::anyhow!("stage {stage} stopped unexpectedly")),
                        Err(e) => Err(e.context(format!("stage {stage} failed"))),
                    };
                }
            };
            token.cancel();
            drain(&mut stages, settings.relay.shutdown_grace).await;
            if !reload {
                return Ok(());
            }
            info!("the offices changed; the pipeline starts again with them");
        }
    }
}

async fn drain(stages: &mut JoinSet<(&'static str, anyhow::Result<()>)>, grace: Duration) {
    let all = async {
        while let Some(done) = stages.join_next().await {
            if let Ok((stage, Err(e))) = done {
                error!(
                    stage,
                    error = format!("{e:#}"),
                    "停止の途中で内部の処理が失敗しました (stage failed while stopping)"
                );
            }
        }
    };
    if tokio::time::timeout(grace + Duration::from_secs(2), all)
        .await
        .is_err()
    {
        error!(
            "内部の処理が時間内に止まらなかったため、打ち切ります (stages did not stop in time; aborting them)"
        );
        stages.abort_all();
    }
}

/// Starts the stages that work with `settings.offices`.
fn start_pipeline(
    settings: &Settings,
    store: &Store,
    window_tx: &watch::Sender<Option<GatewayWindow>>,
    heartbeat: &crate::service::Heartbeat,
    disk: &DiskGate,
    wakeup: &Arc<Notify>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinSet<(&'static str, anyhow::Result<()>)>> {
    let store = store.clone();
    let gateway = Arc::new(GatewayClient::new(settings)?);
    let (window_tx, window_rx) = (window_tx.clone(), window_tx.subscribe());
    let wakeup = wakeup.clone();
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
        heartbeat: heartbeat.clone(),
        disk: disk.clone(),
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
        disk: disk.clone(),
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
        notes: crate::intake::NoteWriter::start(store.clone(), settings.intake.drop_dir.clone())
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
    tasks.spawn(async move {
        (
            "returns",
            crate::returns::run(store, returns_hint, RETURNS_LINK_INTERVAL, token).await,
        )
    });
    info!(offices = settings.offices.len(), "pipeline started");
    Ok(tasks)
}

/// A started appliance.
#[derive(Debug)]
pub struct App {
    /// The store (shared with the stages).
    pub store: Store,
    /// Where the admin UI answers (`https://…/`), when it is enabled.
    pub admin_url: Option<String>,
    /// Wakes the backup schedule for a run now (SIGUSR1).
    backup_now: Arc<Notify>,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    shutdown: CancellationToken,
    grace: Duration,
}

/// The file in the state folder that says where the admin UI answers (for scripts and tests
/// when the port is chosen by the system).
pub const ADMIN_URL_FILE: &str = "admin-url";

impl App {
    /// Opens everything and starts the stages. Errors here are configuration or environment
    /// problems (unreadable certificate, store locked by another process…).
    pub fn start(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<App> {
        std::fs::create_dir_all(&settings.state_dir).with_context(|| crate::explain::Coded {
            code: admin_ui::help::code::SYSTEM_STATE_DIR,
            text: format!(
                "状態フォルダー {} を作成できません (cannot create the state directory)",
                settings.state_dir.display()
            ),
        })?;
        let store_path = settings.store_path();
        match crate::backup::apply_pending_restore(&settings.backup, &store_path) {
            Ok(None) => {}
            Ok(Some(r)) => warn!(
                site = %r.site,
                seq = r.seq,
                kept_aside = ?r.kept_aside,
                "管理画面で選んだバックアップからデータベースを復元しました (the store was restored from a backup chosen in the admin UI)"
            ),
            Err(e) => error!(
                error = format!("{e:#}"),
                "準備済みの復元をデータベースに反映できませんでした (the staged restore was not applied)"
            ),
        }
        let store = open_store_waiting(&store_path).with_context(|| {
            format!(
                "データベース {} を開けません (cannot open the store)",
                store_path.display()
            )
        })?;
        let key = Arc::new(
            crate::accounts::secrets::SecretKey::load_or_create(&settings.state_dir)
                .context("cannot load the key that seals the offices' passwords")?,
        );
        let now = jiff::Timestamp::now();
        crate::accounts::offices::sync_config_offices(&store, &settings.offices, now)
            .context("cannot record the config file's offices in the store")?;
        if let Some((password, file)) =
            crate::accounts::manage::ensure_admin(&store, &settings.state_dir, now)
                .context("cannot create the system administrator")?
        {
            announce_first_admin(&password, &file);
        }
        Intake::prepare_folders(&settings.intake.drop_dir)?;
        let (guard, disk) = DiskGuard::new(
            store.clone(),
            settings.intake.drop_dir.clone(),
            settings.state_dir.clone(),
            settings.disk,
        );

        let backups = crate::backup::Backups::new(store.clone(), settings.backup.clone())
            .context("バックアップの準備ができません (cannot prepare the backups)")?;
        let backup_now = Arc::new(Notify::new());

        let offices_changed = Arc::new(Notify::new());
        let (window, _) = watch::channel(None);
        let mut tasks = JoinSet::new();
        let token = shutdown.child_token();
        tasks.spawn(async move { ("disk", guard.run(token).await) });
        {
            let (token, state_dir, backups, now) = (
                shutdown.child_token(),
                settings.state_dir.clone(),
                backups.clone(),
                backup_now.clone(),
            );
            tasks.spawn(
                async move { ("backup", backups.run_schedule(state_dir, now, token).await) },
            );
        }
        let relay_wakeup = Arc::new(Notify::new());
        let token = shutdown.child_token();
        let (status_store, state_dir) = (store.clone(), settings.state_dir.clone());
        let control = crate::listing::Control {
            store: store.clone(),
            state_dir: settings.state_dir.clone(),
            key: key.clone(),
            offices_changed: Some(offices_changed.clone()),
        };
        tasks.spawn(async move {
            (
                "status",
                crate::status::serve(status_store, state_dir, control, token).await,
            )
        });
        let admin_url = if settings.admin.enabled {
            let (url, server) = crate::admin::start(
                &settings,
                &store,
                offices_changed.clone(),
                relay_wakeup.clone(),
                window.subscribe(),
                (backups.clone(), backup_now.clone(), shutdown.clone()),
            )?;
            let token = shutdown.child_token();
            tasks.spawn(async move { ("admin", server.run(token).await) });
            Some(url)
        } else {
            None
        };
        {
            let base_url = settings
                .alerts
                .admin_url
                .clone()
                .or_else(|| admin_url.clone())
                .unwrap_or_else(|| format!("https://{}", settings.admin.listen));
            let dispatcher =
                crate::alerts::dispatch::Dispatcher::new(store.clone(), &settings, base_url)
                    .context("通知の送信の準備ができません (cannot prepare alert delivery)")?;
            let token = shutdown.child_token();
            tasks.spawn(async move { ("alerts", dispatcher.run(token).await) });
        }
        let heartbeat = crate::service::Heartbeat::default();
        {
            let (token, store, heartbeat) =
                (shutdown.child_token(), store.clone(), heartbeat.clone());
            let rescan = settings.intake.rescan_interval;
            tasks.spawn(async move {
                (
                    "watchdog",
                    crate::service::watchdog(store, heartbeat, rescan, token).await,
                )
            });
        }
        let token = shutdown.child_token();
        let pipeline = Pipeline {
            settings: settings.clone(),
            store: store.clone(),
            key,
            changed: offices_changed,
            window,
            heartbeat,
            disk,
            relay_wakeup,
        };
        tasks.spawn(async move { ("pipeline", pipeline.supervise(token).await) });
        info!(
            config = %settings.config_path.display(),
            drop_dir = %settings.intake.drop_dir.display(),
            gateway = %settings.gateway.url,
            admin_url = admin_url.as_deref().unwrap_or("(disabled)"),
            "kaigo-relay running"
        );
        Ok(App {
            store,
            admin_url,
            backup_now,
            tasks,
            shutdown,
            // The pipeline drains within the relay's grace; the supervisor adds a little.
            grace: settings.relay.shutdown_grace + Duration::from_secs(2),
        })
    }

    /// Starts a backup now (what SIGUSR1 asks for).
    pub fn backup_now(&self) -> Arc<Notify> {
        self.backup_now.clone()
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
                    error!(error = format!("{err:#}"), "エラーのため kaigo-relay を停止します (stopping kaigo-relay)");
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
                        "停止の途中で内部の処理が失敗しました (stage failed while stopping)"
                    );
                }
            }
        };
        if tokio::time::timeout(self.grace + Duration::from_secs(2), drain)
            .await
            .is_err()
        {
            error!(
                "内部の処理が時間内に止まらなかったため、打ち切ります (stages did not stop in time; aborting them)"
            );
            self.tasks.abort_all();
        }
        // Everything the daemon has shown is made durable before it says it stopped: a stage's
        // thread may hold the store past the runtime, and the process does not wait for it.
        if let Err(e) = self.store.sync().await {
            warn!(error = %e, "停止するときに最後の書き込みをディスクに確定できませんでした。次の起動時にゲートウェイに問い合わせて確かめます (the last writes could not be made durable at the stop; the gateway is asked again at the next start)");
        }
        info!("kaigo-relay stopped");
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
