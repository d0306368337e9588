//! The gateway API of federation-api.md v1 (`/v1/...`), served over mutual TLS by `server`.
//!
//! Invariants: every `/v1` request except `/v1/health` is authenticated (Basic user ID and
//! password, then the client certificate's fingerprint must be allowed for that user ID) before
//! anything else happens. `POST /v1/claims` counts the key's presentation and looks the key up
//! before reading the body or any other check on it, so a retry of a recorded submission always
//! gets the original receipt (200) or `idempotency_mismatch` (422); a new submission is
//! committed to the store before its 202 is sent. [`respond`] decides each request's fault from
//! its identity (the key and its presentation count for `POST /v1/claims`, method + path +
//! query otherwise) and lets `faults::apply` carry it out around the fault-free rules, which
//! never know about faults. `/v1/notices` lists and serves only notices of the authenticated
//! user ID's offices; any other notice ID is answered exactly like an unknown one (404).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::claims::{Arrival, Withdrawal};
use crate::clock::{format_jst, format_jst_ms};
use crate::faults::{self, Outcome};
use crate::reply::{self, ApiError, ReadBody, Resp, blocking, json_response};
use crate::sim::{Core, UserView};
use crate::state::{NoticeMeta, Recorded, Submission, notice_seq};

/// What the TLS layer learnt about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: std::net::SocketAddr,
    /// Lowercase hex SHA-256 of the presented end-entity certificate's DER.
    pub fingerprint: Option<String>,
}

/// Longest accepted `Idempotency-Key`.
const MAX_KEY_LEN: usize = 200;
/// Notices per `GET /v1/notices` page without `limit`.
const DEFAULT_NOTICE_LIMIT: u64 = 100;
/// Largest page; larger `limit` values are clamped to it.
const MAX_NOTICE_LIMIT: u64 = 1000;

/// Handles one gateway request, with the fault (if any) the plan decides for it. Every error
/// is a JSON response; [`Outcome::Drop`] asks the connection to be closed without one.
pub(crate) async fn respond<B>(
    core: Arc<Core>,
    peer: Peer,
    req: Request<B>,
    shutdown: &CancellationToken,
) -> Outcome
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display,
{
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
    let limit = core.config.max_claim_bytes;
    let is_submission = method == Method::POST && path.trim_end_matches('/') == "/v1/claims";
    let admitted = if is_submission {
        Some(admit(&core, &peer, req.headers()).await)
    } else {
        None
    };
    let (fault, outcome) = match admitted {
        Some(Ok(admitted)) => {
            let fault = core.faults.on_submission(
                &admitted.user.user_id,
                &admitted.key,
                admitted.presentation,
            );
            let c = Arc::clone(&core);
            let handler = move |req| async move {
                submit(&c, admitted, req)
                    .await
                    .unwrap_or_else(ApiError::into_response)
            };
            (
                fault,
                faults::apply(fault, req, limit, shutdown, handler).await,
            )
        }
        // A POST /v1/claims refused before its key was counted: faulted like any request.
        Some(Err(refused)) => {
            let fault = core.faults.on_request(&method, &target);
            let handler = move |_req| async move { refused.into_response() };
            (
                fault,
                faults::apply(fault, req, limit, shutdown, handler).await,
            )
        }
        None => {
            let fault = core.faults.on_request(&method, &target);
            let (c, p) = (Arc::clone(&core), peer.clone());
            let handler = move |req| async move {
                route(&c, &p, req)
                    .await
                    .unwrap_or_else(ApiError::into_response)
            };
            (
                fault,
                faults::apply(fault, req, limit, shutdown, handler).await,
            )
        }
    };
    let fault_kind = fault.map(|f| f.kind.as_str());
    match &outcome {
        Outcome::Respond(resp) => tracing::info!(
            %method,
            %path,
            status = resp.status().as_u16(),
            fault = fault_kind,
            peer = %peer.addr,
            "gateway request"
        ),
        Outcome::Drop => tracing::info!(
            %method,
            %path,
            fault = fault_kind,
            peer = %peer.addr,
            "gateway request: connection dropped without a response"
        ),
    }
    outcome
}

async fn route<B>(core: &Arc<Core>, peer: &Peer, req: Request<B>) -> Result<Resp, ApiError>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display,
{
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segments.as_slice() {
        ["v1", "health"] => match *req.method() {
            Method::GET | Method::HEAD => health(core),
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        ["v1", "claims"] => match *req.method() {
            Method::POST => {
                let admitted = admit(core, peer, req.headers()).await?;
                submit(core, admitted, req).await
            }
            Method::GET => {
                let user = authorize(core, peer, req.headers())?;
                by_key(core, &user, req.uri().query()).await
            }
            _ => Err(ApiError::method_not_allowed("GET, POST")),
        },
        ["v1", "claims", receipt_id] => {
            let receipt_id = (*receipt_id).to_owned();
            match *req.method() {
                Method::GET => {
                    let user = authorize(core, peer, req.headers())?;
                    status(core, &user, receipt_id).await
                }
                Method::DELETE => {
                    let user = authorize(core, peer, req.headers())?;
                    withdraw(core, &user, receipt_id).await
                }
                _ => Err(ApiError::method_not_allowed("GET, DELETE")),
            }
        }
        ["v1", "notices"] => match *req.method() {
            Method::GET => {
                let user = authorize(core, peer, req.headers())?;
                list_notices(core, &user, req.uri().query()).await
            }
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        ["v1", "notices", notice_id, "content"] => {
            let notice_id = (*notice_id).to_owned();
            match *req.method() {
                Method::GET => {
                    let user = authorize(core, peer, req.headers())?;
                    notice_content(core, &user, notice_id).await
                }
                _ => Err(ApiError::method_not_allowed("GET")),
            }
        }
        _ => Err(ApiError::not_found()),
    }
}

fn bad_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "bad_credentials",
        "利用者IDまたはパスワードが正しくありません (bad user ID or password)",
    )
    .with_header(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"federation-sim\", charset=\"UTF-8\""),
    )
}

/// Basic credentials, then the client certificate.
fn authorize(core: &Core, peer: &Peer, headers: &HeaderMap) -> Result<UserView, ApiError> {
    let value = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(bad_credentials)?;
    let (scheme, encoded) = value.trim().split_once(' ').ok_or_else(bad_credentials)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad_credentials());
    }
    let decoded = BASE64
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad_credentials)?;
    let (user_id, password) = decoded.split_once(':').ok_or_else(bad_credentials)?;
    let user = core
        .authenticate(user_id, password)
        .ok_or_else(bad_credentials)?;
    let allowed = peer
        .fingerprint
        .as_ref()
        .is_some_and(|f| user.fingerprints.contains(f));
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "certificate_not_allowed",
            "この電子証明書はこの利用者IDで使えません \
             (the client certificate is not allowed for this user ID)",
        ));
    }
    Ok(user)
}

fn health(core: &Core) -> Result<Resp, ApiError> {
    let now = core.clock.now();
    let status = core.window.status(now).map_err(ApiError::internal)?;
    let t = status.times;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "now": format_jst(now),
            "reception_window": {
                "open": status.open,
                "processing_month": status.processing_month().to_string(),
                "opens_at": format_jst(t.opens_at),
                "closes_at": format_jst(t.closes_at),
                "withdraw_until": format_jst(t.withdraw_until),
            },
        }),
    ))
}

/// The POST receipt (also the answer of `GET /v1/claims?idempotency_key=`).
pub fn receipt_json(sub: &Submission) -> Value {
    json!({
        "receipt_id": sub.receipt_id,
        "idempotency_key": sub.idempotency_key,
        "arrived_at": format_jst_ms(sub.arrived_at_ms),
        "status": if sub.arrival_failed() { "arrival_failed" } else { "arrived" },
        "arrival_errors": sub.arrival_errors.iter()
            .map(|e| json!({"code": e.code, "message": e.message}))
            .collect::<Vec<_>>(),
    })
}

/// The reception status (`GET /v1/claims/{receipt_id}`).
pub fn status_json(sub: &Submission) -> Value {
    json!({
        "receipt_id": sub.receipt_id,
        "status": sub.status(),
        "reception_mark": sub.reception_mark(),
        "errors": sub.errors().iter()
            .map(|e| json!({"record_no": e.record_no, "code": e.code, "message": e.message}))
            .collect::<Vec<_>>(),
        "updated_at": format_jst_ms(sub.updated_at_ms),
    })
}

/// One notice as `GET /v1/notices` (and `GET /sim/notices`) list it.
pub fn notice_json(n: &NoticeMeta) -> Value {
    json!({
        "notice_id": n.notice_id,
        "office_number": n.office_number,
        "kind_id": n.kind_id,
        "title": n.title,
        "processing_month": n.processing_month,
        "issued_at": n.issued_at,
        "media_type": n.media_type,
        "size": n.size,
        "sha256": n.sha256,
    })
}

/// A non-negative decimal query value; `Err(())` if present but malformed.
fn decimal_param(query: Option<&str>, name: &str) -> Result<Option<u64>, ()> {
    match reply::query_param(query, name) {
        None => Ok(None),
        Some(Some(v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse().map(Some).map_err(|_| ())
        }
        Some(_) => Err(()),
    }
}

/// `GET /v1/notices?after=<cursor>&limit=<n>`: the user's notices after the cursor, oldest
/// first. The cursor is the decimal sequence number of the last notice returned (`0` = the
/// start); an empty page returns the cursor given.
async fn list_notices(
    core: &Arc<Core>,
    user: &UserView,
    query: Option<&str>,
) -> Result<Resp, ApiError> {
    let after = decimal_param(query, "after")
        .map_err(|()| {
            ApiError::bad_request(
                "bad_cursor",
                "after の値が正しくありません。next_cursor の値を指定してください \
                 (after must be a next_cursor value returned earlier)",
            )
        })?
        .unwrap_or(0);
    let limit = match decimal_param(query, "limit") {
        Ok(None) => DEFAULT_NOTICE_LIMIT,
        Ok(Some(n)) if n >= 1 => n.min(MAX_NOTICE_LIMIT),
        _ => {
            return Err(ApiError::bad_request(
                "bad_limit",
                format!(
                    "limit は 1 以上の整数です (limit must be an integer of at least 1; \
                     values above {MAX_NOTICE_LIMIT} are clamped)"
                ),
            ));
        }
    };
    let offices = user.offices.clone();
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let list = blocking(core, move |c| {
        c.state
            .notices_after(after, limit, |n| offices.contains(&n.office_number))
    })
    .await?;
    let next = list.last().map_or(after, |n| n.seq);
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "notices": list.iter().map(notice_json).collect::<Vec<_>>(),
            "next_cursor": next.to_string(),
        }),
    ))
}

/// `GET /v1/notices/{notice_id}/content`: the bytes with `Content-Type`, `Content-Digest` and
/// `Content-Length`; 404 for unknown notices and notices of other user IDs' offices.
async fn notice_content(
    core: &Arc<Core>,
    user: &UserView,
    notice_id: String,
) -> Result<Resp, ApiError> {
    let Some(seq) = notice_seq(&notice_id) else {
        return Err(ApiError::not_found());
    };
    let found = blocking(core, move |c| c.state.notice(seq)).await?;
    let (meta, body) = match found {
        Some((meta, body))
            if meta.notice_id == notice_id && user.offices.contains(&meta.office_number) =>
        {
            (meta, body)
        }
        _ => return Err(ApiError::not_found()),
    };
    let digest = format!("sha-256=:{}:", BASE64.encode(Sha256::digest(&body)));
    let len = body.len();
    let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(&meta.media_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&digest) {
        headers.insert("content-digest", v);
    }
    Ok(resp)
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers.get("idempotency-key").ok_or_else(|| {
        ApiError::bad_request(
            "missing_idempotency_key",
            "Idempotency-Key ヘッダーが必要です (the Idempotency-Key header is required)",
        )
    })?;
    let key = value.to_str().unwrap_or("").trim();
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!(
                "Idempotency-Key は {MAX_KEY_LEN} 文字以内の半角英数記号です \
                 (the Idempotency-Key must be 1–{MAX_KEY_LEN} visible ASCII characters)"
            ),
        ));
    }
    Ok(key.to_owned())
}

/// The answer to a request whose key is already recorded.
fn replay(existing: &Submission, sha256: Option<&str>) -> Result<Resp, ApiError> {
    if sha256 == Some(existing.sha256.as_str()) {
        tracing::info!(
            receipt_id = %existing.receipt_id,
            idempotency_key = %existing.idempotency_key,
            presented = existing.presented,
            "idempotent replay: returning the original receipt"
        );
        Ok(json_response(StatusCode::OK, &receipt_json(existing)))
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_mismatch",
            "同じ Idempotency-Key で異なる内容が送られました \
             (the Idempotency-Key was already used with a different body)",
        )
        .with_field("receipt_id", json!(existing.receipt_id)))
    }
}

/// Parses `Content-Digest` (RFC 9530) and returns the sha-256 value's bytes.
fn content_digest(headers: &HeaderMap) -> Result<Vec<u8>, ApiError> {
    let missing = || {
        ApiError::bad_request(
            "missing_content_digest",
            "Content-Digest ヘッダー (sha-256) が必要です \
             (a Content-Digest header with sha-256 is required)",
        )
    };
    let value = headers
        .get("content-digest")
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| invalid_digest())?;
    for member in value.split(',') {
        let Some((alg, rest)) = member.trim().split_once('=') else {
            return Err(invalid_digest());
        };
        if !alg.trim().eq_ignore_ascii_case("sha-256") {
            continue;
        }
        let b64 = rest
            .trim()
            .strip_prefix(':')
            .and_then(|r| r.strip_suffix(':'))
            .ok_or_else(invalid_digest)?;
        return BASE64.decode(b64).map_err(|_| invalid_digest());
    }
    Err(missing())
}

fn invalid_digest() -> ApiError {
    ApiError::bad_request(
        "invalid_content_digest",
        "Content-Digest ヘッダーの形式が正しくありません \
         (Content-Digest must look like sha-256=:<base64>:)",
    )
}

fn is_csv(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"))
}

/// A `POST /v1/claims` that passed authentication and the key check, its presentation
/// counted.
#[derive(Debug)]
struct Admitted {
    user: UserView,
    key: String,
    /// How many times the key has now been presented (this request included).
    presentation: u64,
    /// The submission already recorded under the key.
    existing: Option<Submission>,
}

/// Steps 1–2 of `POST /v1/claims`, then counts the presentation and looks the key up.
async fn admit(core: &Arc<Core>, peer: &Peer, headers: &HeaderMap) -> Result<Admitted, ApiError> {
    let user = authorize(core, peer, headers)?;
    let key = idempotency_key(headers)?;
    let (user_id, k) = (user.user_id.clone(), key.clone());
    let presentation = blocking(core, move |c| c.state.present(&user_id, &k)).await?;
    Ok(Admitted {
        user,
        key,
        presentation: presentation.count,
        existing: presentation.existing,
    })
}

async fn submit<B>(core: &Arc<Core>, admitted: Admitted, req: Request<B>) -> Result<Resp, ApiError>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display,
{
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let Admitted {
        user,
        key,
        existing,
        ..
    } = admitted;

    let declared_too_large = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > core.config.max_claim_bytes);
    let body = if declared_too_large {
        ReadBody::TooLarge
    } else {
        reply::read_body(body, core.config.max_claim_bytes).await?
    };
    let sha256 = match &body {
        ReadBody::Complete(bytes) => Some(hex::encode(Sha256::digest(bytes))),
        ReadBody::TooLarge => None,
    };

    // Idempotency first: a recorded key decides the answer whatever else the request says.
    if let Some(existing) = existing {
        return replay(&existing, sha256.as_deref());
    }

    let bytes = match body {
        ReadBody::Complete(bytes) => {
            let expected = content_digest(&headers)?;
            if Sha256::digest(&bytes).as_slice() != expected.as_slice() {
                return Err(ApiError::bad_request(
                    "digest_mismatch",
                    "Content-Digest が本文と一致しません (Content-Digest does not match the body)",
                ));
            }
            if !is_csv(&headers) {
                return Err(unsupported_media_type());
            }
            bytes
        }
        ReadBody::TooLarge => {
            if !is_csv(&headers) {
                return Err(unsupported_media_type());
            }
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "ファイルが大きすぎます (the claim exceeds {} bytes)",
                    core.config.max_claim_bytes
                ),
            ));
        }
    };

    let now = core.clock.now();
    let window = core.window.status(now).map_err(ApiError::internal)?;
    if !window.open {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "outside_reception_window",
            "受付期間外です (outside the reception window)",
        )
        .with_field(
            "next_window_opens_at",
            json!(format_jst(window.times.opens_at)),
        ));
    }

    let file_name = headers.get("x-file-name").map(|v| {
        v.to_str()
            .map(str::to_owned)
            .unwrap_or_else(|_| String::new())
    });
    let sha = sha256.unwrap_or_default();
    let processing_month = window.processing_month().to_string();
    let recorded = blocking(core, move |c| {
        c.record_arrival(&Arrival {
            user: &user,
            idempotency_key: &key,
            file_name: file_name.as_deref(),
            body: &bytes,
            sha256: &sha,
            arrived_at: now,
            processing_month,
        })
        .map(|r| (r, sha))
    })
    .await?;
    match recorded {
        (Recorded::New(sub), _) => Ok(json_response(StatusCode::ACCEPTED, &receipt_json(&sub))),
        // A concurrent request with the same key won the race.
        (Recorded::Existing(sub), sha) => replay(&sub, Some(&sha)),
    }
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Content-Type は text/csv にしてください (Content-Type must be text/csv)",
    )
}

async fn by_key(core: &Arc<Core>, user: &UserView, query: Option<&str>) -> Result<Resp, ApiError> {
    let key = match reply::query_param(query, "idempotency_key") {
        Some(Some(k)) if !k.is_empty() => k,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_idempotency_key",
                "idempotency_key の値が正しくありません (bad idempotency_key value)",
            ));
        }
        None => {
            return Err(ApiError::bad_request(
                "missing_idempotency_key",
                "idempotency_key パラメーターが必要です (the idempotency_key parameter is required)",
            ));
        }
    };
    let user_id = user.user_id.clone();
    match blocking(core, move |c| c.state.find_by_key(&user_id, &key)).await? {
        Some(sub) => Ok(json_response(StatusCode::OK, &receipt_json(&sub))),
        None => Err(ApiError::not_found()),
    }
}

async fn status(core: &Arc<Core>, user: &UserView, receipt_id: String) -> Result<Resp, ApiError> {
    let user_id = user.user_id.clone();
    match blocking(core, move |c| c.claim_for_user(&user_id, &receipt_id)).await? {
        Some(sub) => Ok(json_response(StatusCode::OK, &status_json(&sub))),
        None => Err(ApiError::not_found()),
    }
}

async fn withdraw(core: &Arc<Core>, user: &UserView, receipt_id: String) -> Result<Resp, ApiError> {
    let user_id = user.user_id.clone();
    match blocking(core, move |c| c.withdraw(&user_id, &receipt_id)).await? {
        Withdrawal::Withdrawn(sub) => Ok(json_response(
            StatusCode::OK,
            &json!({"receipt_id": sub.receipt_id, "status": "withdrawn"}),
        )),
        Withdrawal::Closed => Err(ApiError::new(
            StatusCode::CONFLICT,
            "withdraw_closed",
            "取消期限を過ぎています (the withdrawal cut-off has passed)",
        )),
        Withdrawal::NotFound => Err(ApiError::not_found()),
    }
}
