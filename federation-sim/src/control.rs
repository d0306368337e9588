//! The control API (`/sim/...`): plain HTTP on the loopback control listener, no
//! authentication, JSON in and out. Tests and `kaigo-relay demo` use it to move the clock,
//! register offices, read the accounting of received submissions, run phases, read every
//! notice and every returned/held/assessed statement, and set the fault plan.
//!
//! Invariants: the listener is loopback-only (enforced by config validation) and is never
//! faulted; `/sim/received` lists every recorded submission exactly once, in arrival order,
//! with how many requests presented its idempotency key; the office password is never
//! returned; a fault plan is only replaced by a valid one (a refused plan changes nothing).

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::clock::{format_jst, format_jst_ms};
use crate::config::OfficeConfig;
use crate::faults::{FaultKind, FaultPlan, FaultPlanError};
use crate::gateway::notice_json;
use crate::phases::Phase;
use crate::reply::{self, ApiError, ReadBody, Resp, blocking, json_response};
use crate::review::Decision;
use crate::sim::{Core, RegisterError};
use crate::state::OfficeRecord;
use crate::window::Month;

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
        ("/sim/notices", Method::GET) => notices(core).await,
        ("/sim/notices", _) => Err(ApiError::method_not_allowed("GET")),
        ("/sim/returns", Method::GET) => returns(core).await,
        ("/sim/returns", _) => Err(ApiError::method_not_allowed("GET")),
        ("/sim/faults", Method::GET) => Ok(faults_json(core)),
        ("/sim/faults", Method::POST) => set_faults(core, read_json(req).await?),
        ("/sim/faults", _) => Err(ApiError::method_not_allowed("GET, POST")),
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
    /// `YYYYMM` for `month_end` / `payment`; default: the 審査月 of the clock.
    processing_month: Option<String>,
}

async fn advance(core: &Arc<Core>, req: AdvanceRequest) -> Result<Resp, ApiError> {
    let phase = match req.phase.as_str() {
        "reception" => {
            let n = blocking(core, |c| c.finalise_all()).await?;
            return Ok(json_response(
                StatusCode::OK,
                &json!({"phase": "reception", "finalised": n}),
            ));
        }
        other => Phase::parse(other).ok_or_else(|| {
            ApiError::bad_request(
                "unknown_phase",
                format!(
                    "フェーズ「{other}」は不明です \
                     (unknown phase; use reception, month_end or payment)"
                ),
            )
        })?,
    };
    let month = match req.processing_month.as_deref() {
        Some(text) => Some(Month::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "bad_month",
                format!(
                    "処理対象年月「{text}」が正しくありません (processing_month must be YYYYMM)"
                ),
            )
        })?),
        None => None,
    };
    let run = blocking(core, move |c| {
        let now = c.clock.now();
        let month = match month {
            Some(m) => m,
            None => c.review_month(now)?,
        };
        c.run_phase(phase, month, now)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "phase": run.phase.as_str(),
            "processing_month": run.month.to_string(),
            "already_done": run.already_done,
            "finalised": run.finalised,
            "notices": run.issued.iter().map(|n| json!({
                "notice_id": n.notice_id,
                "office_number": n.office_number,
                "kind_id": n.kind_id,
                "title": n.title,
            })).collect::<Vec<_>>(),
        }),
    ))
}

/// `GET /sim/notices`: every notice of every office, in issue order.
async fn notices(core: &Arc<Core>) -> Result<Resp, ApiError> {
    let list = blocking(core, |c| c.state.notices_after(0, usize::MAX, |_| true)).await?;
    Ok(json_response(
        StatusCode::OK,
        &Value::Array(list.iter().map(notice_json).collect()),
    ))
}

/// `GET /sim/returns`: every statement a month-end run returned, held or assessed, ordered by
/// (processing month, office, arrival, position in the file).
async fn returns(core: &Arc<Core>) -> Result<Resp, ApiError> {
    let reviews = blocking(core, |c| c.state.reviews(None)).await?;
    let mut list = Vec::new();
    for (month, _, reviewed) in &reviews {
        for r in reviewed {
            let outcome = match r.decision {
                Decision::Accepted => continue,
                Decision::Returned => "returned",
                Decision::Held => "held",
                Decision::Assessed => "assessed",
            };
            list.push(json!({
                "processing_month": month,
                "office_number": r.office_number,
                "receipt_id": r.receipt_id,
                "id": r.id,
                "kind": r.kind.as_str(),
                "insurer_number": r.insurer,
                "insured_number": r.insured,
                "service_month": r.service_month,
                "outcome": outcome,
                "reason_code": r.reason_code,
                "held": r.decision == Decision::Held,
                "content": r.content,
                "units": r.units,
                "adjustment": r.adjustment,
                "resubmission": r.resubmission,
            }));
        }
    }
    Ok(json_response(StatusCode::OK, &Value::Array(list)))
}

/// `POST /sim/faults`: a whole new plan; omitted fields take their defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsRequest {
    seed: Option<u64>,
    rate: Option<f64>,
    kinds: Option<Vec<String>>,
    timeout_ms: Option<u64>,
    slow_ms: Option<u64>,
}

fn invalid_plan(detail: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(
        "invalid_fault_plan",
        format!("障害設定が正しくありません (invalid fault plan: {detail})"),
    )
}

fn set_faults(core: &Core, req: FaultsRequest) -> Result<Resp, ApiError> {
    let defaults = FaultPlan::default();
    let rate = req
        .rate
        .ok_or_else(|| invalid_plan("rate is required; {\"rate\": 0} turns faults off"))?;
    let kinds = match req.kinds {
        None => defaults.kinds,
        Some(names) => names
            .iter()
            .map(|name| {
                FaultKind::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = FaultKind::ALL.iter().map(|k| k.as_str()).collect();
                    ApiError::bad_request(
                        "unknown_fault_kind",
                        format!(
                            "障害の種類「{name}」は不明です (unknown fault kind; use {})",
                            known.join(", ")
                        ),
                    )
                    .with_field("kind", json!(name))
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let plan = FaultPlan {
        seed: req.seed.unwrap_or(defaults.seed),
        rate,
        kinds,
        timeout_ms: req.timeout_ms.unwrap_or(defaults.timeout_ms),
        slow_ms: req.slow_ms.unwrap_or(defaults.slow_ms),
    };
    core.faults
        .set(plan)
        .map_err(|e: FaultPlanError| invalid_plan(e))?;
    Ok(faults_json(core))
}

/// `GET /sim/faults`: the plan in force and what it has injected since it was set.
fn faults_json(core: &Core) -> Resp {
    let status = core.faults.status();
    let injected: serde_json::Map<String, Value> = status
        .injected
        .iter()
        .map(|(kind, n)| (kind.as_str().to_owned(), json!(n)))
        .collect();
    let plan = &status.plan;
    json_response(
        StatusCode::OK,
        &json!({
            "seed": plan.seed,
            "rate": plan.rate,
            "kinds": plan.kinds,
            "timeout_ms": plan.timeout_ms,
            "slow_ms": plan.slow_ms,
            "active": plan.is_on(),
            "injected": injected,
            "http_503_with_retry_after": status.http_503_with_retry_after,
            "requests": status.requests,
            "connections": status.connections,
        }),
    )
}
