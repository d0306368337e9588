//! The control API (`/sim/...`): plain HTTP on the loopback control listener, no
//! authentication, JSON in and out. Tests and `kaigo-relay demo` use it to move the clock,
//! register offices, read the accounting of received submissions and run phases.
//!
//! Invariants: the listener is loopback-only (enforced by config validation); `/sim/received`
//! lists every recorded submission exactly once, in arrival order, with how many requests
//! presented its idempotency key; the office password is never returned.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::clock::{format_jst, format_jst_ms};
use crate::config::OfficeConfig;
use crate::reply::{self, ApiError, ReadBody, Resp, blocking, json_response};
use crate::sim::{Core, RegisterError};
use crate::state::OfficeRecord;

/// Largest accepted control request body.
const MAX_BODY: u64 = 1024 * 1024;

/// Handles one control request. Never fails: every error is a JSON response.
pub async fn handle<B>(core: Arc<Core>, req: Request<B>) -> Resp
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display,
{
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = route(&core, req)
        .await
        .unwrap_or_else(ApiError::into_response);
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "control request");
    resp
}

async fn route<B>(core: &Arc<Core>, req: Request<B>) -> Result<Resp, ApiError>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display,
{
    let path = req.uri().path().trim_end_matches('/').to_owned();
    match (path.as_str(), req.method().clone()) {
        ("/sim/clock", Method::GET) => Ok(clock_json(core)),
        ("/sim/clock", Method::POST) => set_clock(core, read_json(req).await?).await,
        ("/sim/clock", _) => Err(ApiError::method_not_allowed("GET, POST")),
        ("/sim/received", Method::GET) => received(core).await,
        ("/sim/received", _) => Err(ApiError::method_not_allowed("GET")),
        ("/sim/offices", Method::GET) => Ok(json_response(
            StatusCode::OK,
            &Value::Array(
                core.offices()
                    .iter()
                    .map(|o| office_json(core, o))
                    .collect(),
            ),
        )),
        ("/sim/offices", Method::POST) => register(core, read_json(req).await?).await,
        ("/sim/offices", _) => Err(ApiError::method_not_allowed("GET, POST")),
        ("/sim/advance", Method::POST) => advance(core, read_json(req).await?).await,
        ("/sim/advance", _) => Err(ApiError::method_not_allowed("POST")),
        _ => Err(ApiError::not_found()),
    }
}

async fn read_json<T: DeserializeOwned, B>(req: Request<B>) -> Result<T, ApiError>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display,
{
    let body = match reply::read_body(req.into_body(), MAX_BODY).await? {
        ReadBody::Complete(b) => b,
        ReadBody::TooLarge => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "リクエストが大きすぎます (request body too large)",
            ));
        }
    };
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "bad_json",
            format!("JSON を解釈できません (invalid JSON request: {e})"),
        )
    })
}

fn clock_json(core: &Core) -> Resp {
    json_response(
        StatusCode::OK,
        &json!({"now": format_jst(core.clock.now()), "virtual": core.clock.is_virtual()}),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockRequest {
    now: Option<String>,
    real: Option<bool>,
}

async fn set_clock(core: &Arc<Core>, req: ClockRequest) -> Result<Resp, ApiError> {
    let target = match (req.now, req.real) {
        (Some(now), None) => Some(now.parse::<jiff::Timestamp>().map_err(|e| {
            ApiError::bad_request(
                "bad_time",
                format!(
                    "時刻を解釈できません。RFC 3339 で指定してください \
                     (now must be an RFC 3339 time with an offset: {e})"
                ),
            )
        })?),
        (None, Some(true)) => None,
        _ => {
            return Err(ApiError::bad_request(
                "bad_request",
                "{\"now\": \"…\"} または {\"real\": true} を指定してください \
                 (send either {\"now\": \"<RFC 3339>\"} or {\"real\": true})",
            ));
        }
    };
    blocking(core, move |c| c.set_clock(target)).await?;
    Ok(clock_json(core))
}

async fn received(core: &Arc<Core>) -> Result<Resp, ApiError> {
    let subs = blocking(core, |c| c.received()).await?;
    let list: Vec<Value> = subs
        .iter()
        .map(|s| {
            json!({
                "receipt_id": s.receipt_id,
                "idempotency_key": s.idempotency_key,
                "sha256": s.sha256,
                "office_number": s.office_number,
                "file_name": s.file_name,
                "presented": s.presented,
                "status": s.status(),
                "reception_mark": s.reception_mark(),
                "arrived_at": format_jst_ms(s.arrived_at_ms),
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(list)))
}

fn office_json(core: &Core, o: &OfficeRecord) -> Value {
    let paths = core.client_paths(&o.office_number);
    json!({
        "office_number": o.office_number,
        "name": o.name,
        "user_id": o.user_id,
        "certificate_fingerprints": o.allowed_fingerprints(),
        "client_cert_path": paths.as_ref().map(|p| p.0.display().to_string()),
        "client_key_path": paths.as_ref().map(|p| p.1.display().to_string()),
    })
}

async fn register(core: &Arc<Core>, office: OfficeConfig) -> Result<Resp, ApiError> {
    let core2 = Arc::clone(core);
    let result = tokio::task::spawn_blocking(move || core2.register_office(&office))
        .await
        .map_err(ApiError::internal)?;
    let record = match result {
        Ok(record) => record,
        Err(RegisterError::Invalid(e)) => {
            return Err(ApiError::bad_request(
                "invalid_office",
                format!("事業所の登録内容が正しくありません (invalid office: {e})"),
            ));
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let paths = core.client_paths(&record.office_number);
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "office_number": record.office_number,
            "client_cert_path": paths.as_ref().map(|p| p.0.display().to_string()),
            "client_key_path": paths.as_ref().map(|p| p.1.display().to_string()),
            "fingerprint": record.issued.as_ref().map(|i| &i.fingerprint),
            "certificate_fingerprints": record.allowed_fingerprints(),
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceRequest {
    phase: String,
}

async fn advance(core: &Arc<Core>, req: AdvanceRequest) -> Result<Resp, ApiError> {
    match req.phase.as_str() {
        "reception" => {
            let n = blocking(core, |c| c.finalise_all()).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"phase": "reception", "finalised": n}),
            ))
        }
        "month_end" | "payment" => Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            format!(
                "フェーズ「{}」はまだ実装されていません (phase not implemented yet)",
                req.phase
            ),
        )),
        other => Err(ApiError::bad_request(
            "unknown_phase",
            format!(
                "フェーズ「{other}」は不明です (unknown phase; use reception, month_end or payment)"
            ),
        )),
    }
}
