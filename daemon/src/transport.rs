//! The gateway connection below HTTP, for `federation`'s client: the TCP leg (direct, or through
//! an outbound HTTP `CONNECT` proxy with optional basic credentials, using hyper-util's own
//! `Tunnel`) and the TLS configuration (the gateway verified against the configured CA and,
//! optionally, pinned by the SHA-256 of its certificate's SubjectPublicKeyInfo; the office's
//! client certificate from PEM files or from a PKCS#12 bundle).
//!
//! Invariants: everything here happens before a byte of a request reaches the gateway, so each
//! failure is one the client reports as "not sent"; each is named for a person in Japanese then
//! English (a proxy's refusal by its HTTP status, a pin mismatch with the key the gateway showed,
//! a PKCS#12 problem with the office and file). Secrets (the proxy password, the PKCS#12
//! passphrase) never appear in errors, logs or `Debug` output.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use http::{HeaderValue, Uri};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower_service::Service;

use crate::config::{ClientIdentity, OfficeSettings, ProxySettings, Secret};

type BoxError = Box<dyn StdError + Send + Sync>;

/// How much of a proxy's answer to `CONNECT` is kept to name its status.
const HEAD_LIMIT: usize = 256;

/// Reads the CA bundle the gateway's certificate must chain to.
pub fn load_roots(ca_file: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file).with_context(|| {
        format!(
            "CA 証明書 {} を読めません (cannot read the gateway CA)",
            ca_file.display()
        )
    })?;
    for cert in certs {
        let cert =
            cert.with_context(|| format!("{} は PEM 証明書ではありません", ca_file.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("{} の証明書を使えません", ca_file.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!(
            "{} に証明書がありません (no certificate in the gateway CA file)",
            ca_file.display()
        );
    }
    Ok(roots)
}

/// The rustls client configuration of one office: its client certificate, the gateway checked
/// against `roots` and, when `pins` is not empty, pinned.
pub fn tls_config(
    roots: RootCertStore,
    pins: &[[u8; 32]],
    office: &OfficeSettings,
) -> anyhow::Result<rustls::ClientConfig> {
    let (certs, key) = client_identity(office)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let builder = if pins.is_empty() {
        builder.with_root_certificates(roots)
    } else {
        let verifier = PinnedServerVerifier::new(roots, pins.to_vec(), provider)?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    };
    let config = builder.with_client_auth_cert(certs, key).with_context(|| {
        format!(
            "事業所 {} の電子証明書と秘密鍵が対になっていません (certificate and key do not match)",
            office.office_number
        )
    })?;
    Ok(config)
}

/// The office's client certificate chain and private key, from PEM files or a PKCS#12 bundle.
pub fn client_identity(
    office: &OfficeSettings,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    match &office.client_identity {
        ClientIdentity::Pem {
            cert_file,
            key_file,
        } => pem_identity(office, cert_file, key_file),
        ClientIdentity::Pkcs12 { file, password } => Ok(pkcs12_identity(
            &office.office_number.to_string(),
            file,
            password,
        )?),
    }
}

fn pem_identity(
    office: &OfficeSettings,
    cert_file: &Path,
    key_file: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "事業所 {} の電子証明書 {} を読めません (cannot read the client certificate)",
                office.office_number,
                cert_file.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "事業所 {} の電子証明書ファイル {} に証明書がありません",
            office.office_number,
            cert_file.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key_file).with_context(|| {
        format!(
            "事業所 {} の秘密鍵 {} を読めません (cannot read the client key)",
            office.office_number,
            key_file.display()
        )
    })?;
    Ok((certs, key))
}

/// Why an office's PKCS#12 bundle could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs12Error {
    /// The file could not be read.
    #[error(
        "事業所 {office} の電子証明書 {file} を読めません (cannot read the PKCS#12 file): {source}"
    )]
    Read {
        office: String,
        file: String,
        #[source]
        source: io::Error,
    },
    /// The integrity check failed: the passphrase is not the one the bundle was made with.
    #[error(
        "事業所 {office} の電子証明書 {file} のパスフレーズが違います。client_p12_password_file を確かめてください (wrong passphrase for the PKCS#12 file)"
    )]
    WrongPassphrase { office: String, file: String },
    /// The contents could not be decrypted.
    #[error(
        "事業所 {office} の電子証明書 {file} を復号できません。パスフレーズが違うか、ファイルが壊れています (cannot decrypt the PKCS#12 file: wrong passphrase or damaged file)"
    )]
    Undecryptable { office: String, file: String },
    /// Not DER, or not a PFX structure.
    #[error(
        "事業所 {office} の電子証明書 {file} は PKCS#12（.p12 / .pfx）ファイルではないか、壊れています (not a PKCS#12 file, or damaged)"
    )]
    NotPkcs12 { office: String, file: String },
    /// An algorithm this reader does not know.
    #[error(
        "事業所 {office} の電子証明書 {file} は対応していない方式で作られています (unsupported PKCS#12 encryption or MAC): {what}"
    )]
    Unsupported {
        office: String,
        file: String,
        what: String,
    },
    /// No private key inside.
    #[error(
        "事業所 {office} の電子証明書 {file} に秘密鍵が入っていません (no private key in the PKCS#12 file)"
    )]
    NoKey { office: String, file: String },
    /// No certificate inside.
    #[error(
        "事業所 {office} の電子証明書 {file} に証明書が入っていません (no certificate in the PKCS#12 file)"
    )]
    NoCertificate { office: String, file: String },
}

/// Reads a PKCS#12 bundle: the private key, its certificate first, then the others in the bundle
/// (the chain, for the gateway to build the path).
pub fn pkcs12_identity(
    office: &str,
    file: &Path,
    password: &Secret,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Pkcs12Error> {
    use p12_keystore::error::Error as E;
    let (o, f) = (office.to_owned(), file.display().to_string());
    let data = std::fs::read(file).map_err(|source| Pkcs12Error::Read {
        office: o.clone(),
        file: f.clone(),
        source,
    })?;
    let archive = p12_keystore::Pkcs12Archive::from_pkcs12(&data, password.expose()).map_err(
        |e| match e {
            E::MacError(_) => Pkcs12Error::WrongPassphrase {
                office: o.clone(),
                file: f.clone(),
            },
            E::UnpadError | E::Pkcs5Error(_) | E::InvalidData | E::InvalidPrivateKey => {
                Pkcs12Error::Undecryptable {
                    office: o.clone(),
                    file: f.clone(),
                }
            }
            E::UnsupportedEncryptionScheme
            | E::UnsupportedMacAlgorithm
            | E::UnsupportedCertificateType => Pkcs12Error::Unsupported {
                office: o.clone(),
                file: f.clone(),
                what: e.to_string(),
            },
            _ => Pkcs12Error::NotPkcs12 {
                office: o.clone(),
                file: f.clone(),
            },
        },
    )?;
    // The key whose certificate is in the bundle (matched by localKeyId), else the first one.
    let matched = archive.keys.iter().find_map(|k| {
        let id = k.local_key_id.as_ref()?;
        let i = archive
            .certs
            .iter()
            .position(|c| c.local_key_id.as_deref() == Some(id.0.as_slice()))?;
        Some((k, i))
    });
    let (key, leaf) = match matched {
        Some((k, i)) => (k, i),
        None => {
            let Some(k) = archive.keys.first() else {
                return Err(Pkcs12Error::NoKey { office: o, file: f });
            };
            // No link: the end of the chain, a certificate that issued none of the others.
            let leaf = archive
                .certs
                .iter()
                .position(|c| {
                    !archive
                        .certs
                        .iter()
                        .any(|other| other.cert.issuer() == c.cert.subject() && other != c)
                })
                .ok_or(Pkcs12Error::NoCertificate {
                    office: o.clone(),
                    file: f.clone(),
                })?;
            (k, leaf)
        }
    };
    let mut certs = vec![CertificateDer::from(
        archive.certs[leaf].cert.as_der().to_vec(),
    )];
    certs.extend(
        archive
            .certs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != leaf)
            .map(|(_, c)| CertificateDer::from(c.cert.as_der().to_vec())),
    );
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key.as_der().to_vec()));
    Ok((certs, key))
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo (the RFC 7469 pin), or `None` when the
/// certificate cannot be parsed.
pub fn spki_sha256(cert_der: &[u8]) -> Option<[u8; 32]> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(Sha256::digest(cert.tbs_certificate.subject_pki.raw).into())
}

/// The gateway presented a certificate whose key is not among `gateway.pin_sha256`.
#[derive(Debug, thiserror::Error)]
#[error(
    "ゲートウェイの証明書の公開鍵が gateway.pin_sha256 のどれとも一致しないため、接続を中止しました (the gateway's certificate does not match gateway.pin_sha256; its key is {seen}; nothing was sent)"
)]
pub struct PinMismatch {
    /// The base64 SHA-256 of the SPKI the gateway presented (public information).
    pub seen: String,
}

/// The normal WebPKI check against the configured CA, plus: the end-entity certificate's SPKI
/// SHA-256 must be one of the pins.
#[derive(Debug)]
pub struct PinnedServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    pins: Vec<[u8; 32]>,
}

impl PinnedServerVerifier {
    /// A verifier for the gateway: chains to `roots`, and its key is one of `pins`.
    pub fn new(
        roots: RootCertStore,
        pins: Vec<[u8; 32]>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> anyhow::Result<PinnedServerVerifier> {
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .context("gateway certificate verifier")?;
        Ok(PinnedServerVerifier { inner, pins })
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let Some(seen) = spki_sha256(end_entity) else {
            return Err(CertificateError::BadEncoding.into());
        };
        if self.pins.contains(&seen) {
            return Ok(verified);
        }
        let seen = base64::engine::general_purpose::STANDARD.encode(seen);
        tracing::warn!(
            server = ?server_name,
            presented_pin = %seen,
            "ゲートウェイの証明書が pin_sha256 と一致しません。送信しません (gateway certificate does not match pin_sha256; not sending)"
        );
        Err(CertificateError::Other(OtherError(Arc::new(PinMismatch { seen }))).into())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Why the proxy did not open a tunnel to the gateway. The request was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// No TCP connection to the proxy.
    #[error("プロキシ {proxy} に接続できません (cannot reach the proxy): {cause}")]
    Unreachable { proxy: String, cause: String },
    /// 407 (or 401, as some proxies answer) although credentials were sent.
    #[error(
        "プロキシ {proxy} が認証情報を受け付けませんでした。gateway.proxy_user と proxy_password_file を確かめてください (proxy refused the credentials: HTTP {status})"
    )]
    CredentialsRefused { proxy: String, status: u16 },
    /// 407 (or 401) and no credentials configured.
    #[error(
        "プロキシ {proxy} が認証を求めています。gateway.proxy_user と proxy_password_file を設定してください (the proxy requires credentials: HTTP {status})"
    )]
    CredentialsRequired { proxy: String, status: u16 },
    /// 403: the proxy's policy does not allow this destination.
    #[error(
        "プロキシ {proxy} が {target} への接続を許可していません。プロキシの設定を確かめてください (the proxy forbids the CONNECT to {target}: HTTP 403)"
    )]
    Forbidden { proxy: String, target: String },
    /// 500 (tinyproxy's "Unable to connect"), 502, 503, 504: the proxy could not reach the
    /// gateway.
    #[error(
        "プロキシ {proxy} からゲートウェイ {target} につながりません (the proxy could not reach the gateway {target}: HTTP {status})"
    )]
    GatewayUnreachable {
        proxy: String,
        target: String,
        status: u16,
    },
    /// Any other non-200 answer.
    #[error(
        "プロキシ {proxy} が {target} への接続を断りました (the proxy refused the CONNECT to {target}: HTTP {status})"
    )]
    Refused {
        proxy: String,
        target: String,
        status: u16,
    },
    /// The connection broke before an answer.
    #[error(
        "プロキシ {proxy} が CONNECT に応答しないまま接続が切れました (the proxy closed the connection without answering the CONNECT): {cause}"
    )]
    NoAnswer { proxy: String, cause: String },
    /// An answer that is not HTTP.
    #[error("プロキシ {proxy} の応答を読めません (unreadable answer from the proxy): {cause}")]
    Garbled { proxy: String, cause: String },
    /// No answer in time.
    #[error(
        "プロキシ {proxy} が {secs} 秒以内に CONNECT に応答しませんでした (the proxy did not answer the CONNECT within {secs} s)"
    )]
    Timeout { proxy: String, secs: u64 },
}

/// A failure of the TCP leg to the gateway.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Direct connection failed (DNS, TCP).
    #[error(transparent)]
    Direct(BoxError),
    /// The proxy did not open the tunnel.
    #[error(transparent)]
    Proxy(ProxyError),
}

/// The proxy as the connector uses it.
#[derive(Clone)]
struct Proxy {
    uri: Uri,
    /// For messages: `http://host:port`, never credentials.
    name: String,
    authorization: Option<HeaderValue>,
}

/// The TCP leg to the gateway: a direct connection, or a `CONNECT` tunnel through the proxy.
/// hyper-rustls wraps it for TLS.
#[derive(Clone)]
pub struct GatewayConnector {
    http: HttpConnector,
    connect_timeout: Duration,
    proxy: Option<Proxy>,
}

impl std::fmt::Debug for GatewayConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConnector")
            .field("proxy", &self.proxy.as_ref().map(|p| p.name.as_str()))
            .field(
                "proxy_credentials",
                &self
                    .proxy
                    .as_ref()
                    .is_some_and(|p| p.authorization.is_some()),
            )
            .finish()
    }
}

impl GatewayConnector {
    /// A connector with this TCP connect timeout, through `proxy` when given.
    pub fn new(
        connect_timeout: Duration,
        proxy: Option<&ProxySettings>,
    ) -> anyhow::Result<GatewayConnector> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let proxy =
            match proxy {
                None => None,
                Some(p) => {
                    let authorization =
                        match &p.credentials {
                            None => None,
                            Some(c) => {
                                let token = base64::engine::general_purpose::STANDARD
                                    .encode(format!("{}:{}", c.user, c.password.expose()));
                                let mut v = HeaderValue::from_str(&format!("Basic {token}"))
                                    .context("proxy authorization header")?;
                                v.set_sensitive(true);
                                Some(v)
                            }
                        };
                    Some(Proxy {
                        name: p.url.to_string().trim_end_matches('/').to_owned(),
                        uri: p.url.clone(),
                        authorization,
                    })
                }
            };
        Ok(GatewayConnector {
            http,
            connect_timeout,
            proxy,
        })
    }
}

/// What the TCP leg saw of the proxy's answer, to name a refusal by its status.
#[derive(Debug, Default)]
struct Exchange {
    connected: bool,
    head: Vec<u8>,
}

impl Exchange {
    /// The status code of the proxy's answer, once its status line is complete.
    fn status(&self) -> Option<u16> {
        let end = self.head.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&self.head[..end]).ok()?;
        let mut parts = line.split(' ');
        let version = parts.next()?;
        if !version.starts_with("HTTP/") {
            return None;
        }
        let code = parts.next()?;
        if code.len() != 3 {
            return None;
        }
        code.parse().ok()
    }
}

/// The TCP connector under the tunnel (and of direct connections), noting what the proxy says.
#[derive(Clone)]
struct Tcp {
    http: HttpConnector,
    exchange: Option<Arc<Mutex<Exchange>>>,
}

impl Service<Uri> for Tcp {
    type Response = TokioIo<Recorded>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TokioIo<Recorded>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.http.call(dst);
        let exchange = self.exchange.clone();
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            if let Some(x) = &exchange
                && let Ok(mut x) = x.lock()
            {
                x.connected = true;
            }
            Ok(TokioIo::new(Recorded {
                tcp,
                head: exchange,
            }))
        })
    }
}

/// A TCP stream that, through a proxy, keeps the first bytes the proxy answers (up to the end
/// of its status line); otherwise a plain stream.
#[derive(Debug)]
pub struct Recorded {
    tcp: TcpStream,
    head: Option<Arc<Mutex<Exchange>>>,
}

impl Connection for Recorded {
    fn connected(&self) -> Connected {
        self.tcp.connected()
    }
}

impl AsyncRead for Recorded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if let Some(shared) = &this.head {
            let new = &buf.filled()[before..];
            let done = match shared.lock() {
                Ok(mut x) => {
                    let room = HEAD_LIMIT.saturating_sub(x.head.len());
                    x.head.extend_from_slice(&new[..new.len().min(room)]);
                    x.head.len() >= HEAD_LIMIT || x.head.windows(2).any(|w| w == b"\r\n")
                }
                Err(_) => true,
            };
            if done {
                this.head = None;
            }
        }
        polled
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

impl Service<Uri> for GatewayConnector {
    type Response = TokioIo<Recorded>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<TokioIo<Recorded>, ConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.http
            .poll_ready(cx)
            .map_err(|e| ConnectError::Direct(e.into()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let Some(proxy) = self.proxy.clone() else {
            let connecting = Tcp {
                http: self.http.clone(),
                exchange: None,
            }
            .call(dst);
            return Box::pin(async move { connecting.await.map_err(ConnectError::Direct) });
        };
        let exchange = Arc::new(Mutex::new(Exchange::default()));
        let mut tunnel = Tunnel::new(
            proxy.uri.clone(),
            Tcp {
                http: self.http.clone(),
                exchange: Some(exchange.clone()),
            },
        );
        if let Some(auth) = &proxy.authorization {
            tunnel = tunnel.with_auth(auth.clone());
        }
        let target = dst.authority().map(|a| a.to_string()).unwrap_or_default();
        let timeout = self.connect_timeout;
        let tunneling = tunnel.call(dst);
        Box::pin(async move {
            let outcome = tokio::time::timeout(timeout, tunneling).await;
            let error = match outcome {
                Ok(Ok(io)) => return Ok(io),
                Ok(Err(e)) => proxy_error(&proxy, &target, &exchange, &e),
                Err(_) => ProxyError::Timeout {
                    proxy: proxy.name.clone(),
                    secs: timeout.as_secs(),
                },
            };
            tracing::debug!(error = %error, "proxy tunnel to the gateway failed");
            Err(ConnectError::Proxy(error))
        })
    }
}

/// Names a failed tunnel by what the proxy said (hyper-util's error only says "unsuccessful").
fn proxy_error(
    proxy: &Proxy,
    target: &str,
    exchange: &Mutex<Exchange>,
    e: &(dyn StdError + 'static),
) -> ProxyError {
    let name = proxy.name.clone();
    let target = target.to_owned();
    let cause = error_chain(e);
    let (connected, status, answered) = match exchange.lock() {
        Ok(x) => (x.connected, x.status(), !x.head.is_empty()),
        Err(_) => (true, None, false),
    };
    if !connected {
        return ProxyError::Unreachable { proxy: name, cause };
    }
    match status {
        Some(status @ (401 | 407)) if proxy.authorization.is_some() => {
            ProxyError::CredentialsRefused {
                proxy: name,
                status,
            }
        }
        Some(status @ (401 | 407)) => ProxyError::CredentialsRequired {
            proxy: name,
            status,
        },
        Some(403) => ProxyError::Forbidden {
            proxy: name,
            target,
        },
        Some(status @ (500 | 502..=504)) => ProxyError::GatewayUnreachable {
            proxy: name,
            target,
            status,
        },
        Some(status) => ProxyError::Refused {
            proxy: name,
            target,
            status,
        },
        None if answered => ProxyError::Garbled { proxy: name, cause },
        None => ProxyError::NoAnswer { proxy: name, cause },
    }
}

/// An error and its causes, `: `-separated.
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// For a failed connection to the gateway: the message of a proxy refusal or a pin mismatch
/// found among the causes (including errors wrapped in `io::Error`), if there is one.
pub fn explain_connect_failure(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut stack: Vec<&(dyn StdError + 'static)> = vec![e];
    let mut seen = 0;
    while let Some(e) = stack.pop() {
        seen += 1;
        if seen > 64 {
            break;
        }
        if let Some(ConnectError::Proxy(p)) = e.downcast_ref::<ConnectError>() {
            return Some(p.to_string());
        }
        if let Some(p) = e.downcast_ref::<PinMismatch>() {
            return Some(p.to_string());
        }
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner)))) =
            e.downcast_ref::<rustls::Error>()
        {
            stack.push(&**inner);
        }
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            stack.push(inner);
        }
        if let Some(inner) = e.source() {
            stack.push(inner);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::claim::OfficeNumber;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, PublicKeyData as _,
    };
    use std::path::PathBuf;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    struct Pki {
        ca_der: CertificateDer<'static>,
        server: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
        server_spki: [u8; 32],
        client_pem: (String, String),
        client_der: (Vec<u8>, Vec<u8>),
        ca_cert_der: Vec<u8>,
    }

    fn pki() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_params(&ca_params, &ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut sp = CertificateParams::new(vec!["localhost".into()]).unwrap();
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = sp.signed_by(&server_key, &issuer).unwrap();
        let server_spki: [u8; 32] = Sha256::digest(server_key.subject_public_key_info()).into();

        let client_key = KeyPair::generate().unwrap();
        let mut cp = CertificateParams::default();
        cp.distinguished_name.push(DnType::CommonName, "1379999996");
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = cp.signed_by(&client_key, &issuer).unwrap();
        Pki {
            ca_der: ca.der().clone(),
            server: (
                vec![server.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            ),
            server_spki,
            client_pem: (client.pem(), client_key.serialize_pem()),
            client_der: (client.der().to_vec(), client_key.serialize_der()),
            ca_cert_der: ca.der().to_vec(),
        }
    }

    fn office(identity: ClientIdentity) -> OfficeSettings {
        OfficeSettings {
            office_number: "1379999996".parse::<OfficeNumber>().unwrap(),
            name: "テスト".into(),
            federation_user_id: "KJ00000001".parse().unwrap(),
            federation_password: Secret::for_tests("pw"),
            client_identity: identity,
            ended_from_month: None,
        }
    }

    /// A PKCS#12 bundle written with the crate's own writer, as a `.p12` export would be.
    fn p12_bundle(p: &Pki, password: &str, legacy: bool) -> Vec<u8> {
        use p12_keystore::{
            Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
            PrivateKeyChain,
        };
        let chain = PrivateKeyChain::new(
            b"k1".to_vec(),
            PrivateKey::from_der(&p.client_der.1).unwrap(),
            [
                Certificate::from_der(&p.client_der.0).unwrap(),
                Certificate::from_der(&p.ca_cert_der).unwrap(),
            ],
        );
        let mut ks = KeyStore::new();
        ks.add_entry("office", KeyStoreEntry::PrivateKeyChain(chain));
        let w = ks.writer(password);
        let w = if legacy {
            w.encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
                .mac_algorithm(MacAlgorithm::HmacSha1)
        } else {
            w
        };
        w.write().unwrap()
    }

    #[test]
    fn a_pkcs12_bundle_gives_the_same_identity_as_the_pem_files() {
        let p = pki();
        let dir = tempfile::tempdir().unwrap();
        let pem_cert = dir.path().join("c.pem");
        let pem_key = dir.path().join("c.key");
        std::fs::write(&pem_cert, &p.client_pem.0).unwrap();
        std::fs::write(&pem_key, &p.client_pem.1).unwrap();
        let (pem_certs, pem_key_der) = client_identity(&office(ClientIdentity::Pem {
            cert_file: pem_cert,
            key_file: pem_key,
        }))
        .unwrap();
        for legacy in [false, true] {
            let file = dir.path().join(format!("c-{legacy}.p12"));
            std::fs::write(&file, p12_bundle(&p, "pass phrase", legacy)).unwrap();
            let o = office(ClientIdentity::Pkcs12 {
                file,
                password: Secret::for_tests("pass phrase"),
            });
            let (certs, key) = client_identity(&o).unwrap();
            assert_eq!(certs[0], pem_certs[0], "the office's certificate first");
            assert_eq!(certs.len(), 2, "and the CA from the bundle");
            assert_eq!(key.secret_der(), pem_key_der.secret_der());
            let roots = root_store(&p);
            tls_config(roots, &[], &o).unwrap();
        }
    }

    fn root_store(p: &Pki) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(p.ca_der.clone()).unwrap();
        roots
    }

    #[test]
    fn pkcs12_problems_name_the_office_and_file_in_japanese_then_english() {
        let p = pki();
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.p12");
        std::fs::write(&good, p12_bundle(&p, "right", false)).unwrap();
        let not_p12 = dir.path().join("cert.pem");
        std::fs::write(&not_p12, &p.client_pem.0).unwrap();
        let cases: [(PathBuf, &str, &str); 3] = [
            (good.clone(), "Xq9-typo-Zz", "wrong passphrase"),
            (not_p12, "right", "not a PKCS#12 file"),
            (dir.path().join("missing.p12"), "right", "cannot read"),
        ];
        for (file, password, english) in cases {
            let e = pkcs12_identity("1379999996", &file, &Secret::for_tests(password))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("事業所 1379999996 の電子証明書"), "{e}");
            assert!(e.contains(&file.display().to_string()), "{e}");
            assert!(e.contains(english), "{e}");
            assert!(
                !e.contains("Xq9-typo-Zz"),
                "the passphrase is never shown: {e}"
            );
            assert!(
                e.find(english).unwrap() > e.find("電子証明書").unwrap(),
                "Japanese first, then English: {e}"
            );
        }

        // A bundle with only certificates (a trust store) has no key.
        let mut ks = p12_keystore::KeyStore::new();
        ks.add_entry(
            "ca",
            p12_keystore::KeyStoreEntry::Certificate(
                p12_keystore::Certificate::from_der(&p.ca_cert_der).unwrap(),
            ),
        );
        let certs_only = dir.path().join("certs-only.p12");
        std::fs::write(&certs_only, ks.writer("right").write().unwrap()).unwrap();
        let e =
            pkcs12_identity("1379999996", &certs_only, &Secret::for_tests("right")).unwrap_err();
        assert!(matches!(e, Pkcs12Error::NoKey { .. }), "{e}");
        assert!(e.to_string().contains("no private key"), "{e}");
    }

    /// A TLS server on loopback with the test PKI's server certificate; answers each
    /// connection's handshake and closes.
    async fn tls_server(p: &Pki) -> std::net::SocketAddr {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(p.server.0.clone(), p.server.1.clone_key())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = tls.write_all(b"hello").await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        addr
    }

    async fn handshake(
        p: &Pki,
        pins: Vec<[u8; 32]>,
        addr: std::net::SocketAddr,
    ) -> Result<(), io::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = PinnedServerVerifier::new(root_store(p), pins, provider.clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await?;
        assert_eq!(got, b"hello");
        Ok(())
    }

    #[tokio::test]
    async fn the_pin_verifier_accepts_the_pinned_key_and_refuses_any_other() {
        let p = pki();
        let addr = tls_server(&p).await;
        assert_eq!(
            spki_sha256(&p.server.0[0]),
            Some(p.server_spki),
            "the pin is the SHA-256 of the certificate's SubjectPublicKeyInfo"
        );
        handshake(&p, vec![p.server_spki], addr)
            .await
            .expect("the right pin is accepted");
        handshake(&p, vec![[7; 32], p.server_spki], addr)
            .await
            .expect("any of several pins");

        let e = handshake(&p, vec![[7; 32]], addr).await.unwrap_err();
        let message = explain_connect_failure(&e).expect("the pin mismatch is found");
        assert!(
            message.starts_with("ゲートウェイの証明書の公開鍵"),
            "{message}"
        );
        assert!(
            message.contains(&base64::engine::general_purpose::STANDARD.encode(p.server_spki)),
            "names the key the gateway showed: {message}"
        );
        assert!(
            message.contains("does not match gateway.pin_sha256"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn the_pin_does_not_replace_the_ca_check() {
        let p = pki();
        let other = pki();
        let addr = tls_server(&p).await;
        // Right pin, but the CA configured is another one: still refused, by the CA check.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            PinnedServerVerifier::new(root_store(&other), vec![p.server_spki], provider.clone())
                .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let e = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("invalid peer certificate"), "{e}");
        assert!(explain_connect_failure(&e).is_none());
    }

    /// A loopback listener that answers the first request on each connection with `answer`,
    /// the way an HTTP proxy answers `CONNECT`.
    async fn answering(answer: &'static [u8]) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = tcp.read(&mut buf).await;
                    let _ = tcp.write_all(answer).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        addr
    }

    async fn tunnel_error(proxy_addr: std::net::SocketAddr, with_credentials: bool) -> ProxyError {
        let settings = ProxySettings {
            url: format!("http://{proxy_addr}").parse().unwrap(),
            credentials: with_credentials.then(|| crate::config::ProxyCredentials {
                user: "relay".into(),
                password: Secret::for_tests("hunter2-secret"),
            }),
        };
        let mut c = GatewayConnector::new(Duration::from_secs(2), Some(&settings)).unwrap();
        match c.call("https://gateway.test:8443".parse().unwrap()).await {
            Ok(_) => panic!("the tunnel opened"),
            Err(ConnectError::Proxy(p)) => p,
            Err(other) => panic!("{other}"),
        }
    }

    #[tokio::test]
    async fn each_proxy_refusal_is_named_by_its_status() {
        let a407 = answering(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        let e = tunnel_error(a407, true).await;
        assert!(matches!(e, ProxyError::CredentialsRefused { .. }), "{e}");
        assert!(
            e.to_string().contains("proxy refused the credentials"),
            "{e}"
        );
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = tunnel_error(a407, false).await;
        assert!(matches!(e, ProxyError::CredentialsRequired { .. }), "{e}");

        let a403 = answering(b"HTTP/1.0 403 Access violation\r\nContent-Length: 0\r\n\r\n").await;
        let e = tunnel_error(a403, true).await;
        assert!(
            matches!(&e, ProxyError::Forbidden { target, .. } if target == "gateway.test:8443"),
            "{e}"
        );
        // tinyproxy answers wrong credentials with 401.
        let a401 = answering(b"HTTP/1.0 401 Unauthorized\r\n\r\n").await;
        let e = tunnel_error(a401, true).await;
        assert!(
            matches!(e, ProxyError::CredentialsRefused { status: 401, .. }),
            "{e}"
        );
        let a418 = answering(b"HTTP/1.1 418 I'm a teapot\r\n\r\n").await;
        let e = tunnel_error(a418, true).await;
        assert!(matches!(e, ProxyError::Refused { status: 418, .. }), "{e}");
        let a502 = answering(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        let e = tunnel_error(a502, false).await;
        assert!(
            matches!(e, ProxyError::GatewayUnreachable { status: 502, .. }),
            "{e}"
        );
        let garbled = answering(b"SSH-2.0-OpenSSH\r\n").await;
        let e = tunnel_error(garbled, false).await;
        assert!(matches!(e, ProxyError::Garbled { .. }), "{e}");
        let silent = answering(b"").await;
        let e = tunnel_error(silent, false).await;
        assert!(matches!(e, ProxyError::NoAnswer { .. }), "{e}");

        // Nobody listening: the proxy cannot be reached.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = tunnel_error(closed, false).await;
        assert!(matches!(e, ProxyError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("cannot reach the proxy"), "{e}");
    }
}
