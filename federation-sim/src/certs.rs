//! The simulator's small PKI, made with rcgen: a CA (`ca.pem`/`ca.key`), the gateway's server
//! certificate (`server.pem`/`server.key`, SANs from `server_names`) and client certificates
//! (`clients/<office_number>.pem`/`.key`, CN = office number, client-auth EKU), all signed by
//! the CA; plus the rustls server configuration that requires a client certificate chaining to
//! that CA.
//!
//! Invariants: existing keys and certificates are never replaced (a restart keeps the CA and
//! every issued certificate valid; only a server certificate whose names changed is re-signed,
//! with the same key). Private keys are written with mode 0600. Every file is written to a
//! temporary name, synced and renamed, so a crash never leaves half a PEM file. All TLS uses the
//! ring provider explicitly.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest as _, Sha256};

/// A failure while making, reading or loading certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: not a usable PEM file: {source}")]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("state directory is inconsistent: {0}")]
    Inconsistent(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Lowercase hex SHA-256 of a certificate's DER.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The fingerprint of the first certificate in a PEM file.
pub fn fingerprint_of_pem_file(path: &Path) -> Result<String, CertError> {
    let cert = CertificateDer::from_pem_file(path).map_err(|source| CertError::Pem {
        path: path.to_owned(),
        source,
    })?;
    Ok(fingerprint(&cert))
}

/// Writes `contents` to `path` atomically (temporary file, fsync, rename) with `mode`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(contents).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Paths of a certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub fingerprint: String,
}

/// The simulator CA, able to issue certificates.
#[derive(Debug)]
pub struct CertAuthority {
    dir: PathBuf,
    params: CertificateParams,
    key: KeyPair,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "kaigo-relay federation-sim");
    dn.push(DnType::CommonName, "federation-sim CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn read_key(path: &Path) -> Result<KeyPair, CertError> {
    let pem = fs::read_to_string(path).map_err(io_err(path))?;
    Ok(KeyPair::from_pem(&pem)?)
}

impl CertAuthority {
    /// Path of the CA certificate in `dir`.
    pub fn ca_cert_path(dir: &Path) -> PathBuf {
        dir.join("ca.pem")
    }

    /// Path of the server certificate in `dir`.
    pub fn server_cert_path(dir: &Path) -> PathBuf {
        dir.join("server.pem")
    }

    /// Path of the server key in `dir`.
    pub fn server_key_path(dir: &Path) -> PathBuf {
        dir.join("server.key")
    }

    /// Paths of an office's client certificate and key in `dir`.
    pub fn client_paths(dir: &Path, office_number: &str) -> (PathBuf, PathBuf) {
        let clients = dir.join("clients");
        (
            clients.join(format!("{office_number}.pem")),
            clients.join(format!("{office_number}.key")),
        )
    }

    /// Loads the CA of `dir`, creating it if the directory has none.
    pub fn load_or_create(dir: &Path) -> Result<CertAuthority, CertError> {
        let cert_path = Self::ca_cert_path(dir);
        let key_path = dir.join("ca.key");
        let params = ca_params();
        let key = if key_path.exists() {
            read_key(&key_path)?
        } else if cert_path.exists() {
            return Err(CertError::Inconsistent(format!(
                "{} exists but {} is missing",
                cert_path.display(),
                key_path.display()
            )));
        } else {
            let key = KeyPair::generate()?;
            write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            tracing::info!(path = %key_path.display(), "generated the simulator CA key");
            key
        };
        if !cert_path.exists() {
            let cert = params.self_signed(&key)?;
            write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
            tracing::info!(path = %cert_path.display(), "wrote the simulator CA certificate");
        }
        Ok(CertAuthority {
            dir: dir.to_owned(),
            params,
            key,
        })
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    fn key_at(path: &Path) -> Result<KeyPair, CertError> {
        if path.exists() {
            read_key(path)
        } else {
            let key = KeyPair::generate()?;
            write_atomic(path, key.serialize_pem().as_bytes(), 0o600)?;
            Ok(key)
        }
    }

    /// Makes sure a server certificate exists; re-signs it (same key) when `reissue` is set.
    pub fn ensure_server(&self, names: &[String], reissue: bool) -> Result<(), CertError> {
        let cert_path = Self::server_cert_path(&self.dir);
        let key = Self::key_at(&Self::server_key_path(&self.dir))?;
        if cert_path.exists() && !reissue {
            return Ok(());
        }
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "kaigo-relay federation-sim");
        dn.push(DnType::CommonName, "federation-sim gateway");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer())?;
        write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
        tracing::info!(path = %cert_path.display(), ?names, "issued the server certificate");
        Ok(())
    }

    /// Returns the office's client certificate, issuing it if there is none yet.
    pub fn ensure_client(&self, office_number: &str) -> Result<CertFiles, CertError> {
        let (cert_path, key_path) = Self::client_paths(&self.dir, office_number);
        let clients = self.dir.join("clients");
        fs::create_dir_all(&clients).map_err(io_err(&clients))?;
        if !(cert_path.exists() && key_path.exists()) {
            let key = Self::key_at(&key_path)?;
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, "kaigo-relay federation-sim");
            dn.push(DnType::CommonName, office_number);
            params.distinguished_name = dn;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let cert = params.signed_by(&key, &self.issuer())?;
            write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
            tracing::info!(office_number, path = %cert_path.display(), "issued a client certificate");
        }
        Ok(CertFiles {
            fingerprint: fingerprint_of_pem_file(&cert_path)?,
            cert: cert_path,
            key: key_path,
        })
    }
}

/// The gateway's rustls configuration: server certificate from `dir`, client certificates
/// required and verified against the simulator CA, ALPN `h2` and `http/1.1`.
pub fn server_tls_config(dir: &Path) -> Result<rustls::ServerConfig, CertError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pem_err = |path: &Path| {
        let path = path.to_owned();
        move |source| CertError::Pem { path, source }
    };
    let ca_path = CertAuthority::ca_cert_path(dir);
    let ca = CertificateDer::from_pem_file(&ca_path).map_err(pem_err(&ca_path))?;
    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let cert_path = CertAuthority::server_cert_path(dir);
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .map_err(pem_err(&cert_path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(&cert_path))?;
    let key_path = CertAuthority::server_key_path(dir);
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(pem_err(&key_path))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn certificates_are_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertAuthority::load_or_create(dir.path()).unwrap();
        ca.ensure_server(&["localhost".into(), "127.0.0.1".into()], false)
            .unwrap();
        let client = ca.ensure_client("1379999996").unwrap();
        let ca_pem = fs::read(dir.path().join("ca.pem")).unwrap();
        let server_pem = fs::read(dir.path().join("server.pem")).unwrap();

        for key in ["ca.key", "server.key", "clients/1379999996.key"] {
            let mode = fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }

        let again = CertAuthority::load_or_create(dir.path()).unwrap();
        again.ensure_server(&["localhost".into()], false).unwrap();
        assert_eq!(again.ensure_client("1379999996").unwrap(), client);
        assert_eq!(fs::read(dir.path().join("ca.pem")).unwrap(), ca_pem);
        assert_eq!(fs::read(dir.path().join("server.pem")).unwrap(), server_pem);
        assert_eq!(client.fingerprint.len(), 64);

        // Re-signing keeps the key.
        let key = fs::read(dir.path().join("server.key")).unwrap();
        again.ensure_server(&["example.test".into()], true).unwrap();
        assert_ne!(fs::read(dir.path().join("server.pem")).unwrap(), server_pem);
        assert_eq!(fs::read(dir.path().join("server.key")).unwrap(), key);

        let _ = rustls::crypto::ring::default_provider().install_default();
        server_tls_config(dir.path()).unwrap();
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        CertAuthority::load_or_create(dir.path()).unwrap();
        fs::remove_file(dir.path().join("ca.key")).unwrap();
        assert!(matches!(
            CertAuthority::load_or_create(dir.path()),
            Err(CertError::Inconsistent(_))
        ));
    }
}
