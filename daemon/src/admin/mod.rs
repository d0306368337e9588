//! The admin UI's backend: implements `admin_ui::Backend` over the store, the login desk and
//! the sessions, and serves the UI over HTTPS.
//!
//! Invariant (architecture invariant 7): every call resolves the principal's account from the
//! store afresh and decides with `Account::may_see` / `may_manage` whether it may; an office,
//! submission, notice or return item the principal may not see answers `NotFound`, exactly
//! like one that does not exist.

mod alerts_page;
pub mod backend;
mod backups_page;
pub mod dashboard;
pub mod metrics;
pub mod tls;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::store::Store;

/// The admin UI, bound and ready to serve.
pub struct AdminServer {
    ui: admin_ui::AdminUi<backend::AdminBackend>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("listener", &self.listener.local_addr().ok())
            .finish()
    }
}

impl AdminServer {
    /// Serves until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        admin_ui::serve(self.ui, self.listener, self.tls, shutdown).await
    }
}

/// Binds the admin UI's port, loads (or makes) its certificate, and writes where it answers to
/// `state_dir/admin-url`. Returns that URL and the server. Must run inside the runtime.
pub fn start(
    settings: &Settings,
    store: &Store,
    offices_changed: Arc<Notify>,
    relay_wakeup: Arc<Notify>,
    window: tokio::sync::watch::Receiver<Option<crate::federation::GatewayWindow>>,
    backups: (
        crate::backup::Backups,
        Arc<Notify>,
        tokio_util::sync::CancellationToken,
    ),
) -> anyhow::Result<(String, AdminServer)> {
    let a = &settings.admin;
    let tls = tls::load_or_create(&settings.state_dir, a)?;
    let std_listener = std::net::TcpListener::bind(a.listen).with_context(|| {
        format!(
            "管理画面のポート {} を開けません（他のプログラムが使っていないか確認してください） (cannot listen on admin.listen)",
            a.listen
        )
    })?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let host = if local.ip().is_unspecified() || local.ip().is_loopback() {
        "localhost".to_owned()
    } else {
        match local.ip() {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        }
    };
    let url = format!("https://{host}:{}/", local.port());
    let desk = crate::accounts::login::LoginDesk::new(store.clone(), a.guard)
        .context("cannot prepare the login checks")?;
    let mut surroundings = dashboard::Surroundings::new(
        window,
        settings.intake.drop_dir.clone(),
        settings.state_dir.clone(),
        a.metrics_token.clone(),
    );
    if let Some(file) = &tls.ca_file {
        surroundings.ca = Some(ca_certificate(file, &tls.names)?);
    }
    surroundings.relay_wakeup = relay_wakeup;
    let backend = backend::AdminBackend::new(
        store.clone(),
        desk,
        a.sessions,
        offices_changed,
        surroundings,
    )
    .with_backups(backups.0, backups.1, backups.2)
    .with_alerts(
        alerts_page::AlertDesk::new(&settings.alerts, &url)
            .context("通知の送信の準備ができません (cannot prepare alert delivery)")?,
    );
    let ui = admin_ui::AdminUi::new(Arc::new(backend))?;
    let url_file = settings.state_dir.join(crate::app::ADMIN_URL_FILE);
    std::fs::write(&url_file, format!("{url}\n"))
        .with_context(|| format!("cannot write {}", url_file.display()))?;
    tracing::info!(
        %url,
        ca = %tls.ca_file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(own certificate)".into()),
        "admin UI listening"
    );
    Ok((
        url,
        AdminServer {
            ui,
            listener,
            tls: tls.config,
        },
    ))
}

/// The local CA as the certificate page offers it: PEM and the SHA-256 fingerprint of its DER.
fn ca_certificate(
    file: &std::path::Path,
    names: &[String],
) -> anyhow::Result<admin_ui::CaCertificate> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    use sha2::Digest as _;
    let pem = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let der = CertificateDer::from_pem_slice(&pem)
        .with_context(|| format!("{} holds no certificate", file.display()))?;
    let digest = sha2::Sha256::digest(der.as_ref());
    let fingerprint_sha256 = digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(admin_ui::CaCertificate {
        pem,
        fingerprint_sha256,
        server_names: names.to_vec(),
    })
}
