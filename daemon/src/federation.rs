//! The federation gateway client: the only module that knows the wire protocol of
//! federation-api.md. HTTPS with mutual TLS (hyper over rustls, the office's client
//! certificate, the gateway verified against the configured CA only and optionally pinned),
//! pooled connections, directly or through an HTTP `CONNECT` proxy; the connection below HTTP is
//! `transport`'s.
//!
//! Invariant: every failure is classified for the relay. `NotSent` means the request certainly
//! did not reach the gateway (it could not connect, the proxy refused the tunnel, the gateway's
//! certificate failed the CA check or the pin); `Unknown` means it may have: the relay must
//! ask the gateway by idempotency key before sending again. Permanent refusals (401, 403, 413,
//! 415, 422) are never retried blindly. Secrets never appear in errors or logs.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::claim::{Month, OfficeNumber};
use crate::config::{Secret, Settings};
pub use crate::transport::load_roots;
use crate::transport::{GatewayConnector, error_chain, explain_connect_failure, tls_config};

/// Largest response body read from the gateway.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Largest notice body downloaded (a printable PDF form can be large).
pub const MAX_NOTICE_BYTES: usize = 64 << 20;

/// How a gateway call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// Could not connect (DNS, TCP, TLS handshake): the request was not sent. Retry later.
    #[error("not sent: {detail}")]
    NotSent {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// The request may or may not have reached the gateway (timeout, reset, 5xx, 429, garbled
    /// response). Ask by idempotency key before sending again.
    #[error("outcome unknown: {detail}")]
    Unknown {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// 409 outside_reception_window.
    #[error("outside the reception window (next opens {next_opens_at:?})")]
    OutsideWindow { next_opens_at: Option<String> },
    /// A refusal a person must resolve: bad credentials, certificate not allowed, too large…
    #[error("refused by the gateway: HTTP {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// No such receipt.
    #[error("not found")]
    NotFound,
    /// The office has no client configured.
    #[error("office {0} is not configured")]
    UnknownOffice(String),
}

impl GatewayError {
    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::NotSent { retry_after, .. }
            | GatewayError::Unknown { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An error item in a gateway response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WireIssue {
    /// Record number, when given.
    #[serde(default)]
    pub record_no: Option<u32>,
    /// Code.
    pub code: String,
    /// Message.
    #[serde(default)]
    pub message: String,
}

/// The receipt of `POST /v1/claims` (and of the lookup by idempotency key).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WireReceipt {
    /// 受付番号.
    pub receipt_id: String,
    /// The key it was recorded under.
    pub idempotency_key: String,
    /// When it arrived (RFC 3339).
    pub arrived_at: String,
    /// `arrived` or `arrival_failed`.
    pub status: String,
    /// 到達 errors.
    #[serde(default)]
    pub arrival_errors: Vec<WireIssue>,
}

/// The reception status of `GET /v1/claims/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WireStatus {
    /// 受付番号.
    pub receipt_id: String,
    /// arrived | accepted | accepted_with_returns | rejected | withdrawn.
    pub status: String,
    /// ○ △ × or null.
    #[serde(default)]
    pub reception_mark: Option<String>,
    /// Reasons.
    #[serde(default)]
    pub errors: Vec<WireIssue>,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

#[derive(Debug, Deserialize)]
struct WireHealth {
    now: String,
    reception_window: WireWindow,
}

#[derive(Debug, Deserialize)]
struct WireWindow {
    open: bool,
    processing_month: String,
    opens_at: String,
    closes_at: String,
    withdraw_until: String,
}

#[derive(Debug, Deserialize)]
struct WireErrorBody {
    error: WireErrorInner,
}

#[derive(Debug, Deserialize)]
struct WireErrorInner {
    code: String,
    #[serde(default)]
    message: String,
}

/// The reception window and processing month, as the gateway (the authority) reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayWindow {
    /// The gateway's clock when it answered.
    pub gateway_now: Timestamp,
    /// Whether claims are being received now.
    pub open: bool,
    /// The processing month of the current window (or of the next one, when closed).
    pub processing_month: Month,
    /// When that window opens.
    pub opens_at: Timestamp,
    /// The first instant it is closed.
    pub closes_at: Timestamp,
    /// Until when a file sent in it may be withdrawn.
    pub withdraw_until: Timestamp,
}

/// What the relay needs from a gateway. One implementation per gateway protocol.
pub trait GatewayApi: Send + Sync + 'static {
    /// The reception window.
    fn window(&self) -> impl Future<Output = Result<GatewayWindow, GatewayError>> + Send;
    /// Sends one claim file under its idempotency key.
    fn submit(
        &self,
        office: &OfficeNumber,
        idempotency_key: &str,
        file_name: &str,
        body: Bytes,
    ) -> impl Future<Output = Result<WireReceipt, GatewayError>> + Send;
    /// Asks whether a submission with this key was recorded.
    fn find_by_key(
        &self,
        office: &OfficeNumber,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Option<WireReceipt>, GatewayError>> + Send;
    /// The 受付 status of a receipt.
    fn status(
        &self,
        office: &OfficeNumber,
        receipt_id: &str,
    ) -> impl Future<Output = Result<WireStatus, GatewayError>> + Send;
    /// Withdraws (取消) a submission by its receipt. After the withdraw cut-off the gateway
    /// refuses with `409 withdraw_closed`.
    fn withdraw(
        &self,
        office: &OfficeNumber,
        receipt_id: &str,
    ) -> impl Future<Output = Result<(), GatewayError>> + Send;
}

/// One notice as `GET /v1/notices` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WireNotice {
    pub notice_id: String,
    pub office_number: String,
    pub kind_id: String,
    #[serde(default)]
    pub title: String,
    pub processing_month: String,
    #[serde(default)]
    pub issued_at: String,
    pub media_type: String,
    pub size: u64,
    pub sha256: String,
}

/// One page of `GET /v1/notices`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WireNoticePage {
    pub notices: Vec<WireNotice>,
    pub next_cursor: String,
}

/// A downloaded notice body, before verification.
#[derive(Debug, Clone)]
pub struct NoticeContent {
    pub bytes: Bytes,
    /// The `Content-Digest` header as sent.
    pub content_digest: Option<String>,
}

/// What the mirror needs from a gateway: the notice list and the notice bodies, per federation
/// user ID.
pub trait NoticeSource: Send + Sync + 'static {
    /// Lists notices after `cursor` (from the start when `None`).
    fn list_notices(
        &self,
        user_id: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<WireNoticePage, GatewayError>> + Send;
    /// Downloads one notice.
    fn notice_content(
        &self,
        user_id: &str,
        notice_id: &str,
    ) -> impl Future<Output = Result<NoticeContent, GatewayError>> + Send;
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<GatewayConnector>, Full<Bytes>>;

struct OfficeClient {
    authorization: HeaderValue,
    client: HttpsClient,
}

/// The HTTPS client of federation-api.md v1.
pub struct GatewayClient {
    base: String,
    request_timeout: Duration,
    offices: HashMap<OfficeNumber, Arc<OfficeClient>>,
    /// The client of the first office of each federation user ID (notices are listed per ID).
    users: HashMap<String, Arc<OfficeClient>>,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayClient")
            .field("base", &self.base)
            .field("offices", &self.offices.len())
            .finish()
    }
}

fn basic_auth(user: &str, password: &Secret) -> anyhow::Result<HeaderValue> {
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()));
    let mut v = HeaderValue::from_str(&format!("Basic {token}")).context("authorization header")?;
    v.set_sensitive(true);
    Ok(v)
}

impl GatewayClient {
    /// Builds one pooled HTTPS client per office from the settings (CA, pins, proxy, client
    /// certificates and keys, credentials). Fails with a clear message when a file is missing or
    /// unusable.
    pub fn new(settings: &Settings) -> anyhow::Result<GatewayClient> {
        let g = &settings.gateway;
        let roots = load_roots(&g.ca_file)?;
        let connector = GatewayConnector::new(g.connect_timeout, g.proxy.as_ref())?;
        if let Some(proxy) = &g.proxy {
            tracing::info!(
                proxy = %proxy.url,
                credentials = proxy.credentials.is_some(),
                "the gateway is reached through an HTTP CONNECT proxy"
            );
        }
        if !g.pin_sha256.is_empty() {
            tracing::info!(
                pins = g.pin_sha256.len(),
                "the gateway's certificate is pinned"
            );
        }
        let mut offices = HashMap::new();
        let mut users = HashMap::new();
        for office in &settings.offices {
            let tls = tls_config(roots.clone(), &g.pin_sha256, office)?;
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_only()
                .enable_http1()
                .enable_http2()
                .wrap_connector(connector.clone());
            let client = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .build(https);
            let office_client = Arc::new(OfficeClient {
                authorization: basic_auth(
                    office.federation_user_id.as_str(),
                    &office.federation_password,
                )?,
                client,
            });
            users
                .entry(office.federation_user_id.as_str().to_owned())
                .or_insert_with(|| office_client.clone());
            offices.insert(office.office_number.clone(), office_client);
        }
        let base = g.url.to_string().trim_end_matches('/').to_owned();
        Ok(GatewayClient {
            base,
            request_timeout: g.request_timeout,
            offices,
            users,
        })
    }

    fn office(&self, n: &OfficeNumber) -> Result<Arc<OfficeClient>, GatewayError> {
        self.offices
            .get(n)
            .cloned()
            .ok_or_else(|| GatewayError::UnknownOffice(n.to_string()))
    }

    fn any_office(&self) -> Result<Arc<OfficeClient>, GatewayError> {
        self.offices
            .values()
            .next()
            .cloned()
            .ok_or_else(|| GatewayError::UnknownOffice("(none)".into()))
    }

    async fn call(
        &self,
        office: &OfficeClient,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), GatewayError> {
        self.call_limited(office, request, MAX_RESPONSE_BYTES).await
    }

    async fn call_limited(
        &self,
        office: &OfficeClient,
        request: Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), GatewayError> {
        let work = async {
            let response = office.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    // A proxy refusal or a pin mismatch is named as such; anything else with
                    // its whole chain of causes.
                    let detail = explain_connect_failure(&e).unwrap_or_else(|| error_chain(&e));
                    GatewayError::NotSent {
                        detail,
                        retry_after: None,
                    }
                } else {
                    GatewayError::Unknown {
                        detail: error_chain(&e),
                        retry_after: None,
                    }
                }
            })?;
            let (parts, body) = response.into_parts();
            let bytes = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| GatewayError::Unknown {
                    detail: format!("reading the response: {e}"),
                    retry_after: None,
                })?
                .to_bytes();
            Ok((parts.status, parts.headers, bytes))
        };
        match tokio::time::timeout(self.request_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(GatewayError::Unknown {
                detail: format!("no response within {} s", self.request_timeout.as_secs()),
                retry_after: None,
            }),
        }
    }

    fn request(&self, office: &OfficeClient, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header(header::AUTHORIZATION, office.authorization.clone())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("kaigo-relay/", env!("CARGO_PKG_VERSION")),
            )
    }
}

fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Maps a non-success response to the error the relay acts on.
fn classify(status: StatusCode, headers: &http::HeaderMap, body: &[u8]) -> GatewayError {
    let parsed: Option<WireErrorInner> = serde_json::from_slice::<WireErrorBody>(body)
        .ok()
        .map(|b| b.error);
    let (code, message) = match parsed {
        Some(e) => (e.code, e.message),
        None => (
            status
                .canonical_reason()
                .unwrap_or("error")
                .to_lowercase()
                .replace(' ', "_"),
            String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        ),
    };
    match status.as_u16() {
        409 if code == "outside_reception_window" => {
            let next = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| {
                    v.get("next_window_opens_at")
                        .or_else(|| v.get("error").and_then(|e| e.get("next_window_opens_at")))
                        .and_then(|x| x.as_str().map(str::to_owned))
                });
            GatewayError::OutsideWindow {
                next_opens_at: next,
            }
        }
        404 => GatewayError::NotFound,
        408 | 429 | 500..=599 => GatewayError::Unknown {
            detail: format!("HTTP {} {code}: {message}", status.as_u16()),
            retry_after: retry_after(headers),
        },
        s => GatewayError::Refused {
            status: s,
            code,
            message,
        },
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, GatewayError> {
    serde_json::from_slice(body).map_err(|e| GatewayError::Unknown {
        detail: format!("unexpected response from the gateway: {e}"),
        retry_after: None,
    })
}

fn parse_time(field: &str, s: &str) -> Result<Timestamp, GatewayError> {
    s.parse().map_err(|e| GatewayError::Unknown {
        detail: format!("gateway sent an unreadable {field} \"{s}\": {e}"),
        retry_after: None,
    })
}

fn build(req: http::request::Builder, body: Bytes) -> Result<Request<Full<Bytes>>, GatewayError> {
    req.body(Full::new(body))
        .map_err(|e| GatewayError::NotSent {
            detail: format!("could not build the request: {e}"),
            retry_after: None,
        })
}

/// `sha-256=:<base64>:` (RFC 9530).
pub fn content_digest(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl GatewayApi for GatewayClient {
    async fn window(&self) -> Result<GatewayWindow, GatewayError> {
        let office = self.any_office()?;
        let req = build(
            self.request(&office, Method::GET, "/v1/health"),
            Bytes::new(),
        )?;
        let (status, headers, body) = self.call(&office, req).await?;
        if !status.is_success() {
            return Err(classify(status, &headers, &body));
        }
        let h: WireHealth = parse_json(&body)?;
        let w = h.reception_window;
        Ok(GatewayWindow {
            gateway_now: parse_time("now", &h.now)?,
            open: w.open,
            processing_month: w
                .processing_month
                .parse()
                .map_err(|_| GatewayError::Unknown {
                    detail: format!(
                        "gateway sent an unreadable processing_month \"{}\"",
                        w.processing_month
                    ),
                    retry_after: None,
                })?,
            opens_at: parse_time("opens_at", &w.opens_at)?,
            closes_at: parse_time("closes_at", &w.closes_at)?,
            withdraw_until: parse_time("withdraw_until", &w.withdraw_until)?,
        })
    }

    async fn submit(
        &self,
        office_number: &OfficeNumber,
        idempotency_key: &str,
        file_name: &str,
        body: Bytes,
    ) -> Result<WireReceipt, GatewayError> {
        let office = self.office(office_number)?;
        let file_name = HeaderValue::from_str(file_name).map_err(|_| GatewayError::Refused {
            status: 0,
            code: "file_name_not_ascii".into(),
            message: "ファイル名に半角英数字以外が含まれています (the file name must be ASCII)"
                .into(),
        })?;
        let req = self
            .request(&office, Method::POST, "/v1/claims")
            .header(header::CONTENT_TYPE, "text/csv; charset=Shift_JIS")
            .header("Idempotency-Key", idempotency_key)
            .header("X-File-Name", file_name)
            .header("Content-Digest", content_digest(&body));
        let req = build(req, body)?;
        let (status, headers, body) = self.call(&office, req).await?;
        if status == StatusCode::ACCEPTED || status == StatusCode::OK {
            let receipt: WireReceipt = parse_json(&body)?;
            if receipt.idempotency_key != idempotency_key {
                return Err(GatewayError::Unknown {
                    detail: format!(
                        "the gateway answered for key {} instead of {idempotency_key}",
                        receipt.idempotency_key
                    ),
                    retry_after: None,
                });
            }
            return Ok(receipt);
        }
        Err(classify(status, &headers, &body))
    }

    async fn find_by_key(
        &self,
        office_number: &OfficeNumber,
        idempotency_key: &str,
    ) -> Result<Option<WireReceipt>, GatewayError> {
        let office = self.office(office_number)?;
        let path = format!(
            "/v1/claims?idempotency_key={}",
            query_escape(idempotency_key)
        );
        let req = build(self.request(&office, Method::GET, &path), Bytes::new())?;
        let (status, headers, body) = self.call(&office, req).await?;
        match status {
            StatusCode::OK => Ok(Some(parse_json(&body)?)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(classify(status, &headers, &body)),
        }
    }

    async fn status(
        &self,
        office_number: &OfficeNumber,
        receipt_id: &str,
    ) -> Result<WireStatus, GatewayError> {
        let office = self.office(office_number)?;
        let path = format!("/v1/claims/{}", query_escape(receipt_id));
        let req = build(self.request(&office, Method::GET, &path), Bytes::new())?;
        let (status, headers, body) = self.call(&office, req).await?;
        if status == StatusCode::OK {
            return parse_json(&body);
        }
        Err(classify(status, &headers, &body))
    }

    async fn withdraw(
        &self,
        office_number: &OfficeNumber,
        receipt_id: &str,
    ) -> Result<(), GatewayError> {
        let office = self.office(office_number)?;
        let path = format!("/v1/claims/{}", query_escape(receipt_id));
        let req = build(self.request(&office, Method::DELETE, &path), Bytes::new())?;
        let (status, headers, body) = self.call(&office, req).await?;
        if status.is_success() {
            return Ok(());
        }
        Err(classify(status, &headers, &body))
    }
}

impl GatewayClient {
    fn user(&self, user_id: &str) -> Result<Arc<OfficeClient>, GatewayError> {
        self.users
            .get(user_id)
            .cloned()
            .ok_or_else(|| GatewayError::UnknownOffice(user_id.to_owned()))
    }
}

impl NoticeSource for GatewayClient {
    async fn list_notices(
        &self,
        user_id: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<WireNoticePage, GatewayError> {
        let office = self.user(user_id)?;
        let path = match cursor {
            Some(c) => format!("/v1/notices?after={}&limit={limit}", query_escape(c)),
            None => format!("/v1/notices?limit={limit}"),
        };
        let req = build(self.request(&office, Method::GET, &path), Bytes::new())?;
        let (status, headers, body) = self.call(&office, req).await?;
        if status == StatusCode::OK {
            return parse_json(&body);
        }
        Err(classify(status, &headers, &body))
    }

    async fn notice_content(
        &self,
        user_id: &str,
        notice_id: &str,
    ) -> Result<NoticeContent, GatewayError> {
        let office = self.user(user_id)?;
        let path = format!("/v1/notices/{}/content", query_escape(notice_id));
        let req = build(self.request(&office, Method::GET, &path), Bytes::new())?;
        let (status, headers, body) = self.call_limited(&office, req, MAX_NOTICE_BYTES).await?;
        if status == StatusCode::OK {
            return Ok(NoticeContent {
                bytes: body,
                content_digest: headers
                    .get("content-digest")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            });
        }
        Err(classify(status, &headers, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_digest_is_rfc9530() {
        // SHA-256 of the empty string.
        assert_eq!(
            content_digest(b""),
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
        );
    }

    #[test]
    fn responses_are_classified_for_the_relay() {
        let h = http::HeaderMap::new();
        let body = br#"{"error":{"code":"bad_credentials","message":"x"}}"#;
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &h, body),
            GatewayError::Refused { status: 401, ref code, .. } if code == "bad_credentials"
        ));
        let body = br#"{"error":{"code":"outside_reception_window","message":"x"},"next_window_opens_at":"2027-01-01T00:00:00+09:00"}"#;
        match classify(StatusCode::CONFLICT, &h, body) {
            GatewayError::OutsideWindow { next_opens_at } => {
                assert_eq!(next_opens_at.as_deref(), Some("2027-01-01T00:00:00+09:00"))
            }
            other => panic!("{other:?}"),
        }
        let mut h503 = http::HeaderMap::new();
        h503.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        let e = classify(StatusCode::SERVICE_UNAVAILABLE, &h503, b"busy");
        assert!(matches!(e, GatewayError::Unknown { .. }));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, &h, b""),
            GatewayError::NotFound
        ));
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("0193-ab_c.~"), "0193-ab_c.~");
        assert_eq!(query_escape("a b&c"), "a%20b%26c");
    }
}
