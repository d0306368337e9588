//! Shared helpers of the in-process simulator tests: a simulator on 127.0.0.1:0 spoken to over
//! real mutual TLS (hyper client + tokio-rustls) and plain HTTP for the control API.

// Helpers outside #[test] functions are test code too; not every test file uses every helper.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use federation_sim::{Listening, OfficeConfig, SimConfig, Simulator};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub const EXAMPLE: &str = "1,1,0,4,711,0,0,1379999996,0,7,202506,1\r\n\
2,2,\"7111\",202505,1379999996,1,0,01,1,2000,22800,20520,0,2280,0,0,0,0,0,0\r\n\
2,3,\"7131\",01,202505,1379999996,00139998,\"0000123456\",,,,,,,19400101,2,22,,20240401,20260331,1,1379999988,,,,,,,,,90,,,,2000,20520,2280,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\r\n\
2,4,\"7131\",02,202505,1379999996,00139998,\"0000123456\",11,1111,250,8,0,0,0,2000,0,0,0,\"\"\r\n\
2,5,\"7131\",10,202505,1379999996,00139998,\"0000123456\",11,8,2000,2000,0,,,2000,1140,20520,2280,0,0,0,0,0,0,0,0,0,,,,,,,,,,,,\r\n\
3,6\r\n";

pub const IN_WINDOW: &str = "2025-06-03T10:00:00+09:00";
pub const USER: &str = "KJ00000001";
pub const PASSWORD: &str = "secret";

pub fn cp932(s: &str) -> Vec<u8> {
    let (bytes, _, had_errors) = encoding_rs::SHIFT_JIS.encode(s);
    assert!(!had_errors);
    bytes.into_owned()
}

pub fn example() -> Vec<u8> {
    cp932(EXAMPLE)
}

pub fn config(dir: &Path) -> SimConfig {
    let mut c = SimConfig::new(dir);
    c.gateway_listen = "127.0.0.1:0".parse().unwrap();
    c.control_listen = "127.0.0.1:0".parse().unwrap();
    c.reception_delay_ms = 600_000;
    c.offices = vec![
        OfficeConfig {
            office_number: "1379999996".into(),
            name: "デモ訪問介護ステーション".into(),
            user_id: USER.into(),
            password: PASSWORD.into(),
            certificate_fingerprints: vec![],
        },
        OfficeConfig {
            office_number: "1379999988".into(),
            name: "デモ居宅介護支援事業所".into(),
            user_id: "KJ00000002".into(),
            password: "other".into(),
            certificate_fingerprints: vec![],
        },
    ];
    c
}

pub struct Running {
    pub listening: Listening,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub ca: PathBuf,
    /// Client identities by office number.
    pub identities: Vec<(String, (PathBuf, PathBuf))>,
}

impl Running {
    /// A fresh mutual-TLS connection to the gateway with `office`'s certificate (none: no
    /// client certificate) offering `alpn`; `Err` starts with `handshake:` when the TLS
    /// handshake failed.
    pub async fn connect(
        &self,
        office: Option<&str>,
        alpn: &[&[u8]],
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let tls = tokio_rustls::TlsConnector::from(self.tls(office, alpn));
        let tcp = TcpStream::connect(self.listening.gateway_addr)
            .await
            .map_err(|e| e.to_string())?;
        tls.connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))
    }

    pub async fn start(config: SimConfig, clock: Option<&str>) -> Running {
        let sim = Simulator::open(config.clone()).unwrap();
        if let Some(now) = clock {
            sim.set_clock(now.parse().unwrap()).unwrap();
        }
        let ca = sim.ca_cert_path();
        let identities = config
            .offices
            .iter()
            .filter_map(|o| {
                sim.client_identity(&o.office_number)
                    .map(|id| (o.office_number.clone(), id))
            })
            .collect();
        let shutdown = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(sim.serve(shutdown.clone(), Some(tx)));
        let listening = rx.await.unwrap();
        Running {
            listening,
            shutdown,
            task,
            ca,
            identities,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve returns within the grace period")
            .unwrap()
            .unwrap();
    }

    pub fn identity(&self, office: &str) -> (PathBuf, PathBuf) {
        self.identities
            .iter()
            .find(|(o, _)| o == office)
            .map(|(_, id)| id.clone())
            .unwrap()
    }

    pub fn tls(&self, office: Option<&str>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&self.ca).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match office {
            Some(office) => {
                let (cert, key) = self.identity(office);
                builder
                    .with_client_auth_cert(
                        vec![CertificateDer::from_pem_file(cert).unwrap()],
                        PrivateKeyDer::from_pem_file(key).unwrap(),
                    )
                    .unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// One request over a fresh mutual-TLS connection with office 1379999996's certificate.
    pub async fn gateway(&self, req: Request<Full<Bytes>>) -> (StatusCode, Value) {
        self.gateway_as(Some("1379999996"), req).await.unwrap()
    }

    pub async fn gateway_as(
        &self,
        office: Option<&str>,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Value), String> {
        let stream = self.connect(office, &[b"http/1.1"]).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap()))
    }

    pub async fn control(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let tcp = TcpStream::connect(self.listening.control_addr)
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    pub async fn received(&self) -> Vec<Value> {
        let (status, body) = self.control(Method::GET, "/sim/received", None).await;
        assert_eq!(status, StatusCode::OK);
        body.as_array().unwrap().clone()
    }
}

pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
}

pub fn digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", BASE64.encode(Sha256::digest(body)))
}

pub fn post_claim(key: &str, body: &[u8]) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::POST)
        .uri("/v1/claims")
        .header("host", "localhost")
        .header("authorization", basic(USER, PASSWORD))
        .header("idempotency-key", key)
        .header("x-file-name", "KK250601.CSV")
        .header("content-type", "text/csv; charset=Shift_JIS")
        .header("content-digest", digest(body))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap()
}

pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("host", "localhost")
        .header("authorization", basic(USER, PASSWORD))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

pub fn entry<'a>(received: &'a [Value], key: &str) -> &'a Value {
    received
        .iter()
        .find(|e| e["idempotency_key"] == key)
        .unwrap_or_else(|| panic!("no entry for {key} in {received:?}"))
}

/// A whole exchange as the client saw it.
#[derive(Debug)]
pub struct Exchange {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Value,
    /// From the request being sent (after the TLS handshake) to the end of the body.
    pub elapsed: Duration,
}

/// What a raw client read before the server closed the connection.
#[derive(Debug)]
pub struct Raw {
    /// Decrypted application bytes (HTTP) received.
    pub bytes: Vec<u8>,
    /// How the read ended, if not with a clean TLS close.
    pub error: Option<String>,
    /// From the request being written to the connection's end.
    pub elapsed: Duration,
}

impl Running {
    /// One request over a fresh HTTP/1.1 mutual-TLS connection (office 1379999996); `Err`
    /// starts with `handshake:` when the TLS handshake failed, otherwise it is the HTTP error
    /// (e.g. the connection closed before a response).
    pub async fn exchange(&self, req: Request<Full<Bytes>>) -> Result<Exchange, String> {
        let stream = self.connect(Some("1379999996"), &[b"http/1.1"]).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let start = std::time::Instant::now();
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Exchange {
            status,
            headers,
            body: serde_json::from_slice(&body).unwrap(),
            elapsed: start.elapsed(),
        })
    }

    /// Writes `request` as is over a fresh mutual-TLS connection and reads until the server
    /// closes it (at most 10 s).
    pub async fn raw(&self, request: &[u8]) -> Raw {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = self
            .connect(Some("1379999996"), &[b"http/1.1"])
            .await
            .unwrap();
        let start = std::time::Instant::now();
        stream.write_all(request).await.unwrap();
        stream.flush().await.unwrap();
        let mut bytes = Vec::new();
        let result = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
            .await
            .expect("the server closes the connection within 10 s");
        Raw {
            bytes,
            error: result.err().map(|e| e.to_string()),
            elapsed: start.elapsed(),
        }
    }

    /// `POST /sim/faults`.
    pub async fn set_faults(&self, plan: Value) -> Value {
        let (status, body) = self
            .control(Method::POST, "/sim/faults", Some(plan.clone()))
            .await;
        assert_eq!(status, StatusCode::OK, "{plan}: {body}");
        body
    }

    /// `GET /sim/faults`.
    pub async fn faults(&self) -> Value {
        let (status, body) = self.control(Method::GET, "/sim/faults", None).await;
        assert_eq!(status, StatusCode::OK);
        body
    }
}

/// The raw HTTP/1.1 bytes of a claim submission (`Connection: close`); with `with_body` false
/// only the head is written (it still announces the body's `Content-Length`).
pub fn raw_post_claim(key: &str, body: &[u8], with_body: bool) -> Vec<u8> {
    let mut out = format!(
        "POST /v1/claims HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\
         Idempotency-Key: {key}\r\nX-File-Name: KK250601.CSV\r\n\
         Content-Type: text/csv; charset=Shift_JIS\r\nContent-Digest: {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        basic(USER, PASSWORD),
        digest(body),
        body.len()
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body);
    }
    out
}

/// The raw HTTP/1.1 bytes of a GET (`Connection: close`).
pub fn raw_get(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic(USER, PASSWORD)
    )
    .into_bytes()
}
