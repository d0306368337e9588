//! HTTPS for the admin UI from the first start: unless `admin.cert_file`/`key_file` name an own
//! certificate, the appliance keeps a local CA (`admin-tls/ca.pem`, for browsers to trust) and
//! a server certificate it signs for the appliance's names and addresses (`localhost`, the host
//! name, 127.0.0.1, ::1, the LAN address, `admin.server_names`).
//!
//! Invariants: the CA key is made once and never replaced (a browser that trusts the CA keeps
//! trusting every later server certificate); the server certificate is re-issued (same CA)
//! when its names change or fewer than `RENEW_BEFORE_DAYS` days are left; private keys are
//! written with mode 0600 through a temporary file and a rename, never half-written.

use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::AdminSettings;

/// Folder of the generated certificates, inside the state folder.
pub const TLS_DIR: &str = "admin-tls";
/// The local CA certificate (what a browser is told to trust).
pub const CA_FILE: &str = "ca.pem";
/// How long a generated server certificate is valid.
const SERVER_VALID_DAYS: i64 = 397;
/// Re-issued when fewer days than this are left.
pub const RENEW_BEFORE_DAYS: i64 = 30;

/// The server's TLS configuration and where its CA certificate is (when generated).
#[derive(Debug)]
pub struct AdminTls {
    /// rustls configuration (ALPN is set by the server).
    pub config: Arc<rustls::ServerConfig>,
    /// The local CA certificate, when the appliance made its own.
    pub ca_file: Option<PathBuf>,
    /// The names the server certificate is valid for.
    pub names: Vec<String>,
}

/// Loads the configured certificate, or makes (or renews) the appliance's own.
pub fn load_or_create(state_dir: &Path, settings: &AdminSettings) -> anyhow::Result<AdminTls> {
    let (chain, key, ca_file, names) = match &settings.certificate {
        Some((cert, key)) => {
            let chain = read_chain(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
                format!(
                    "管理画面の秘密鍵 {} を読めません (cannot read admin.key_file)",
                    key.display()
                )
            })?;
            (chain, key, None, Vec::new())
        }
        None => {
            let dir = state_dir.join(TLS_DIR);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let names = server_names(settings);
            ensure_generated(&dir, &names)?;
            let chain = read_chain(&dir.join("server.pem"))?;
            let key = PrivateKeyDer::from_pem_file(dir.join("server.key"))
                .context("cannot read the generated server key")?;
            (chain, key, Some(dir.join(CA_FILE)), names)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context(
            "管理画面の証明書と秘密鍵が対になっていません (admin certificate and key do not match)",
        )?;
    Ok(AdminTls {
        config: Arc::new(config),
        ca_file,
        names,
    })
}

fn read_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("証明書 {} を読めません (cannot read)", path.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} に証明書がありません (no certificate)", path.display());
    }
    Ok(chain)
}

/// The names of this machine a browser on the LAN may use.
fn server_names(settings: &AdminSettings) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_owned());
            if !host.contains('.') {
                names.push(format!("{host}.local"));
            }
        }
    }
    if let Some(ip) = lan_address() {
        names.push(ip.to_string());
    }
    if !settings.listen.ip().is_unspecified() {
        names.push(settings.listen.ip().to_string());
    }
    names.extend(settings.server_names.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.to_ascii_lowercase()));
    names
}

/// The address of the interface that would carry traffic to a LAN peer (found by "connecting"
/// a UDP socket, which sends nothing).
fn lan_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.168.0.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn write_private(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "kaigo-relay");
    dn.push(DnType::CommonName, "kaigo-relay local CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time_now();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(20 * 365);
    params
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// What the names file records next to the server certificate.
fn names_line(names: &[String]) -> String {
    names.join("\n")
}

fn ensure_generated(dir: &Path, names: &[String]) -> anyhow::Result<()> {
    let ca_key_path = dir.join("ca.key");
    let ca_path = dir.join(CA_FILE);
    let ca_key = if ca_key_path.exists() {
        KeyPair::from_pem(&std::fs::read_to_string(&ca_key_path)?)
            .context("cannot read the local CA key")?
    } else {
        let key = KeyPair::generate()?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes(), 0o600)?;
        key
    };
    let params = ca_params();
    if !ca_path.exists() {
        let cert = params.self_signed(&ca_key)?;
        write_private(&ca_path, cert.pem().as_bytes(), 0o644)?;
        tracing::info!(path = %ca_path.display(), "made the admin UI's local CA");
    }
    let server = dir.join("server.pem");
    let names_file = dir.join("server.names");
    let recorded = std::fs::read_to_string(&names_file).unwrap_or_default();
    let days_left = server_days_left(&server);
    let renew = !server.exists()
        || recorded != names_line(names)
        || days_left.is_none_or(|d| d < RENEW_BEFORE_DAYS);
    if !renew {
        return Ok(());
    }
    let key_path = dir.join("server.key");
    let key = if key_path.exists() {
        KeyPair::from_pem(&std::fs::read_to_string(&key_path)?)
            .context("cannot read the server key")?
    } else {
        let key = KeyPair::generate()?;
        write_private(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        key
    };
    let mut sp = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "kaigo-relay");
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    sp.distinguished_name = dn;
    sp.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time_now();
    sp.not_before = now - time::Duration::days(1);
    sp.not_after = now + time::Duration::days(SERVER_VALID_DAYS);
    let issuer = Issuer::from_params(&params, &ca_key);
    let cert = sp.signed_by(&key, &issuer)?;
    write_private(&server, cert.pem().as_bytes(), 0o644)?;
    write_private(&names_file, names_line(names).as_bytes(), 0o644)?;
    tracing::info!(?names, "issued the admin UI's server certificate");
    Ok(())
}

/// Days until the certificate in `path` expires, if it can be read.
pub fn server_days_left(path: &Path) -> Option<i64> {
    let der = CertificateDer::from_pem_file(path).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let left = cert.validity().not_after.timestamp() - time_now().unix_timestamp();
    Some(left / 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AdminSettings {
        AdminSettings {
            enabled: true,
            listen: "127.0.0.1:0".parse().unwrap(),
            certificate: None,
            server_names: vec!["kaigo.office.lan".into()],
            sessions: Default::default(),
            guard: Default::default(),
            metrics_token: None,
        }
    }

    #[test]
    fn the_local_ca_is_kept_and_the_server_certificate_names_the_appliance() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), &settings()).unwrap();
        let ca = std::fs::read(first.ca_file.as_ref().unwrap()).unwrap();
        assert!(first.names.contains(&"localhost".to_owned()));
        assert!(first.names.contains(&"kaigo.office.lan".to_owned()));
        let days = server_days_left(&dir.path().join(TLS_DIR).join("server.pem")).unwrap();
        assert!(
            (SERVER_VALID_DAYS - 2..=SERVER_VALID_DAYS).contains(&days),
            "{days}"
        );
        // New names: a new server certificate from the same CA.
        let mut more = settings();
        more.server_names.push("kaigo2.office.lan".into());
        let second = load_or_create(dir.path(), &more).unwrap();
        assert_eq!(std::fs::read(second.ca_file.as_ref().unwrap()).unwrap(), ca);
        let pem = std::fs::read_to_string(dir.path().join(TLS_DIR).join("server.pem")).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let san = format!(
            "{:?}",
            cert.subject_alternative_name().unwrap().unwrap().value
        );
        assert!(san.contains("kaigo2.office.lan"), "{san}");
        use std::os::unix::fs::PermissionsExt as _;
        for key in ["ca.key", "server.key"] {
            let mode = std::fs::metadata(dir.path().join(TLS_DIR).join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
}
