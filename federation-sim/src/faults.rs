//! Fault injection on the gateway (federation-api.md "Faults", `POST /sim/faults`): the fault
//! plan ([`FaultPlan`]), the seeded decision whether and how one request or connection fails
//! ([`decide`]), the counters of injected faults, and carrying a decision out around the
//! gateway handler ([`apply`]).
//!
//! Invariants: a decision is a pure function of (seed, a stable identity, how many times that
//! identity was seen) — never of thread scheduling, of the clock or of the order in which
//! unrelated requests arrive — so the same plan and the same sequence of requests per identity
//! give the same faults on every run. Only the mutual-TLS gateway (`/v1`) is ever faulted, never
//! the control API. No fault changes what the gateway records: a faulted request records
//! nothing, except `slow` and `lost_response`, which record exactly what a fault-free request
//! would before their response is delayed or dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, RETRY_AFTER};
use http::{Method, Request, StatusCode};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::reply::{self, ApiError, Resp};

/// Longest accepted `timeout_ms` / `slow_ms` (one hour).
pub const MAX_DELAY_MS: u64 = 3_600_000;

/// One kind of fault (the names of federation-api.md, used in the config and the control API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    /// `500 internal_error`; nothing recorded.
    #[serde(rename = "http_500")]
    Http500,
    /// `503 service_unavailable`, with `Retry-After: 1` for half of the decisions; nothing
    /// recorded.
    #[serde(rename = "http_503")]
    Http503,
    /// The connection is dropped before the request body is read; no response.
    #[serde(rename = "reset_before_body")]
    ResetBeforeBody,
    /// The body is read, nothing is recorded, the connection is dropped; no response.
    #[serde(rename = "reset_after_body")]
    ResetAfterBody,
    /// The body is read, nothing is recorded, the connection is held for `timeout_ms` and then
    /// dropped; no response.
    #[serde(rename = "timeout")]
    Timeout,
    /// Handled normally, the response is sent `slow_ms` late.
    #[serde(rename = "slow")]
    Slow,
    /// The TCP connection is closed at accept time, before the TLS handshake.
    #[serde(rename = "tls_handshake")]
    TlsHandshake,
    /// Handled normally (a submission is recorded and committed), then the connection is
    /// dropped instead of sending the response.
    #[serde(rename = "lost_response")]
    LostResponse,
}

impl FaultKind {
    /// Every kind, in the canonical order (the order a decision picks from).
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Http500,
        FaultKind::Http503,
        FaultKind::ResetBeforeBody,
        FaultKind::ResetAfterBody,
        FaultKind::Timeout,
        FaultKind::Slow,
        FaultKind::TlsHandshake,
        FaultKind::LostResponse,
    ];

    /// The wire name (`http_500`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Http500 => "http_500",
            FaultKind::Http503 => "http_503",
            FaultKind::ResetBeforeBody => "reset_before_body",
            FaultKind::ResetAfterBody => "reset_after_body",
            FaultKind::Timeout => "timeout",
            FaultKind::Slow => "slow",
            FaultKind::TlsHandshake => "tls_handshake",
            FaultKind::LostResponse => "lost_response",
        }
    }

    /// The kind with this wire name.
    pub fn parse(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether this kind can hit a connection (at accept time) rather than a request.
    fn scope(self) -> Scope {
        match self {
            FaultKind::TlsHandshake => Scope::Connection,
            _ => Scope::Request,
        }
    }

    fn index(self) -> usize {
        FaultKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or_default()
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a decision is about: an accepted connection (only `tls_handshake` applies) or one HTTP
/// request on an established connection (every other kind applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Connection,
    Request,
}

/// The fault plan: the `[faults]` table of the config and the body of `POST /sim/faults`.
/// Off by default (`rate = 0`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultPlan {
    /// Seed of every decision.
    pub seed: u64,
    /// Probability (0..=1) that a request (or a connection, for `tls_handshake`) is faulted.
    pub rate: f64,
    /// The kinds to pick from (uniformly, among those that apply). Order and duplicates do not
    /// matter.
    pub kinds: Vec<FaultKind>,
    /// How long a `timeout` holds the connection before dropping it.
    pub timeout_ms: u64,
    /// How late a `slow` response is sent.
    pub slow_ms: u64,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            seed: 0,
            rate: 0.0,
            kinds: FaultKind::ALL.to_vec(),
            timeout_ms: 30_000,
            slow_ms: 1_500,
        }
    }
}

// `rate` is compared bit for bit so that the plan (and the config holding it) can be `Eq`.
impl PartialEq for FaultPlan {
    fn eq(&self, other: &Self) -> bool {
        self.seed == other.seed
            && self.rate.to_bits() == other.rate.to_bits()
            && self.kinds == other.kinds
            && self.timeout_ms == other.timeout_ms
            && self.slow_ms == other.slow_ms
    }
}

impl Eq for FaultPlan {}

/// Why a fault plan is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultPlanError {
    #[error("rate {0} is not a probability between 0 and 1")]
    RateOutOfRange(String),
    #[error("rate is above 0 but kinds is empty")]
    NoKinds,
    #[error("{field} = {value} is above the limit of {MAX_DELAY_MS} ms")]
    DelayTooLong { field: &'static str, value: u64 },
}

impl FaultPlan {
    /// Whether any request or connection can be faulted.
    pub fn is_on(&self) -> bool {
        self.rate > 0.0 && !self.kinds.is_empty()
    }

    /// Checks the rate and the delays (kinds are checked by parsing).
    pub fn validate(&self) -> Result<(), FaultPlanError> {
        if !(self.rate.is_finite() && (0.0..=1.0).contains(&self.rate)) {
            return Err(FaultPlanError::RateOutOfRange(self.rate.to_string()));
        }
        if self.rate > 0.0 && self.kinds.is_empty() {
            return Err(FaultPlanError::NoKinds);
        }
        for (field, value) in [("timeout_ms", self.timeout_ms), ("slow_ms", self.slow_ms)] {
            if value > MAX_DELAY_MS {
                return Err(FaultPlanError::DelayTooLong { field, value });
            }
        }
        Ok(())
    }

    /// The same plan with `kinds` in canonical order and without duplicates.
    pub fn normalized(mut self) -> FaultPlan {
        self.kinds.sort();
        self.kinds.dedup();
        self
    }
}

/// One decided fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// For `http_503`: whether the response carries `Retry-After: 1`.
    pub retry_after: bool,
    /// For `timeout` and `slow`: how long (from the plan); zero otherwise.
    pub delay: Duration,
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A 64-bit draw for one purpose of one decision.
fn draw(seed: u64, identity: &str, n: u64, purpose: u64) -> u64 {
    let h = splitmix64(seed);
    let h = splitmix64(h ^ fnv1a64(identity.as_bytes()));
    let h = splitmix64(h ^ n);
    splitmix64(h ^ purpose)
}

const DRAW_FAULT: u64 = 1;
const DRAW_KIND: u64 = 2;
const DRAW_RETRY_AFTER: u64 = 3;

/// The decision for the `n`-th sighting (1-based) of `identity` under `plan`: with probability
/// `rate` a fault, its kind picked uniformly from the plan's kinds that apply to `scope` (in
/// canonical order). Pure: the same arguments always give the same answer.
///
/// Identities used by the gateway: `claim <user_id> <idempotency key>` for `POST /v1/claims`
/// (with `n` = the key's presentation count), `<METHOD> <path and query>` for every other
/// request (with a per-identity counter), `connection gateway` for accepted connections (with
/// the listener's connection counter).
pub fn decide(plan: &FaultPlan, scope: Scope, identity: &str, n: u64) -> Option<Fault> {
    if !plan.is_on() {
        return None;
    }
    let mut kinds: Vec<FaultKind> = plan
        .kinds
        .iter()
        .copied()
        .filter(|k| k.scope() == scope)
        .collect();
    kinds.sort();
    kinds.dedup();
    if kinds.is_empty() {
        return None;
    }
    // 53 random bits as a uniform value in [0, 1).
    let u = (draw(plan.seed, identity, n, DRAW_FAULT) >> 11) as f64 / (1u64 << 53) as f64;
    if u >= plan.rate {
        return None;
    }
    let len = kinds.len() as u64;
    let kind = kinds[(draw(plan.seed, identity, n, DRAW_KIND) % len) as usize];
    let delay = match kind {
        FaultKind::Timeout => Duration::from_millis(plan.timeout_ms),
        FaultKind::Slow => Duration::from_millis(plan.slow_ms),
        _ => Duration::ZERO,
    };
    Some(Fault {
        kind,
        retry_after: kind == FaultKind::Http503
            && draw(plan.seed, identity, n, DRAW_RETRY_AFTER) & 1 == 0,
        delay,
    })
}

/// The plan in force and what it has done since it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultStatus {
    pub plan: FaultPlan,
    /// Injected faults per kind, every kind listed (canonical order).
    pub injected: Vec<(FaultKind, u64)>,
    /// Of the injected `http_503`, how many carried `Retry-After`.
    pub http_503_with_retry_after: u64,
    /// Requests decided on (faulted or not) since the plan was set.
    pub requests: u64,
    /// Connections decided on since the plan was set.
    pub connections: u64,
}

#[derive(Debug)]
struct Inner {
    plan: FaultPlan,
    injected: [u64; 8],
    http_503_with_retry_after: u64,
    requests: u64,
    connections: u64,
    /// Per-identity request counters (every request but `POST /v1/claims` with a key).
    seen: HashMap<String, u64>,
}

impl Inner {
    fn new(plan: FaultPlan) -> Inner {
        Inner {
            plan,
            injected: [0; 8],
            http_503_with_retry_after: 0,
            requests: 0,
            connections: 0,
            seen: HashMap::new(),
        }
    }

    fn count(&mut self, fault: Option<Fault>) -> Option<Fault> {
        if let Some(f) = fault {
            self.injected[f.kind.index()] += 1;
            if f.retry_after {
                self.http_503_with_retry_after += 1;
            }
        }
        fault
    }
}

/// The fault state of a running simulator: the plan and its counters. Setting a plan resets
/// the counters; with the plan off nothing is counted.
#[derive(Debug)]
pub(crate) struct Faults {
    inner: Mutex<Inner>,
}

impl Faults {
    pub(crate) fn new(plan: FaultPlan) -> Faults {
        Faults {
            inner: Mutex::new(Inner::new(plan.normalized())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the plan (validated) and resets every counter.
    pub(crate) fn set(&self, plan: FaultPlan) -> Result<(), FaultPlanError> {
        plan.validate()?;
        let plan = plan.normalized();
        tracing::info!(
            seed = plan.seed,
            rate = plan.rate,
            kinds = ?plan.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            timeout_ms = plan.timeout_ms,
            slow_ms = plan.slow_ms,
            "fault plan set"
        );
        *self.lock() = Inner::new(plan);
        Ok(())
    }

    pub(crate) fn status(&self) -> FaultStatus {
        let inner = self.lock();
        FaultStatus {
            plan: inner.plan.clone(),
            injected: FaultKind::ALL
                .iter()
                .map(|k| (*k, inner.injected[k.index()]))
                .collect(),
            http_503_with_retry_after: inner.http_503_with_retry_after,
            requests: inner.requests,
            connections: inner.connections,
        }
    }

    /// Decides for the next accepted gateway connection (call in accept order).
    pub(crate) fn on_connection(&self) -> Option<Fault> {
        let mut inner = self.lock();
        if !inner.plan.is_on() {
            return None;
        }
        inner.connections += 1;
        let fault = decide(
            &inner.plan,
            Scope::Connection,
            "connection gateway",
            inner.connections,
        );
        inner.count(fault)
    }

    /// Decides for a `POST /v1/claims` whose key has now been presented `presentation` times.
    pub(crate) fn on_submission(
        &self,
        user_id: &str,
        key: &str,
        presentation: u64,
    ) -> Option<Fault> {
        let mut inner = self.lock();
        if !inner.plan.is_on() {
            return None;
        }
        inner.requests += 1;
        let identity = format!("claim {user_id} {key}");
        let fault = decide(&inner.plan, Scope::Request, &identity, presentation);
        inner.count(fault)
    }

    /// Decides for any other gateway request, identified by method, path and query.
    pub(crate) fn on_request(&self, method: &Method, target: &str) -> Option<Fault> {
        let mut inner = self.lock();
        if !inner.plan.is_on() {
            return None;
        }
        inner.requests += 1;
        let identity = format!("{method} {target}");
        let seen = inner.seen.entry(identity.clone()).or_insert(0);
        *seen += 1;
        let n = *seen;
        let fault = decide(&inner.plan, Scope::Request, &identity, n);
        inner.count(fault)
    }
}

/// What the gateway does with a request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Send this response.
    Respond(Resp),
    /// Close the connection without sending anything more.
    Drop,
}

/// Waits `delay`, or less if the simulator is shutting down.
async fn pause(delay: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Carries out `fault` (if any) around `handler`, the fault-free handling of `req`. The body is
/// read at most up to `body_limit` bytes where a fault reads it without handling the request.
pub(crate) async fn apply<B, F, Fut>(
    fault: Option<Fault>,
    req: Request<B>,
    body_limit: u64,
    shutdown: &CancellationToken,
    handler: F,
) -> Outcome
where
    B: hyper::body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display,
    F: FnOnce(Request<B>) -> Fut,
    Fut: Future<Output = Resp>,
{
    let Some(fault) = fault else {
        return Outcome::Respond(handler(req).await);
    };
    match fault.kind {
        FaultKind::Http500 => Outcome::Respond(
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "内部エラーが発生しました (internal error; injected by federation-sim)",
            )
            .into_response(),
        ),
        FaultKind::Http503 => {
            let mut err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "ただいま混み合っています (service unavailable; injected by federation-sim)",
            );
            if fault.retry_after {
                err = err.with_header(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Outcome::Respond(err.into_response())
        }
        FaultKind::ResetBeforeBody => Outcome::Drop,
        FaultKind::ResetAfterBody => {
            // Whatever the body turns out to be (complete, too large, broken), nothing is kept.
            let _ = reply::read_body(req.into_body(), body_limit).await;
            Outcome::Drop
        }
        FaultKind::Timeout => {
            let _ = reply::read_body(req.into_body(), body_limit).await;
            pause(fault.delay, shutdown).await;
            Outcome::Drop
        }
        FaultKind::Slow => {
            let resp = handler(req).await;
            pause(fault.delay, shutdown).await;
            Outcome::Respond(resp)
        }
        FaultKind::LostResponse => {
            let _ = handler(req).await;
            Outcome::Drop
        }
        // Decided at accept time only; a request never gets it.
        FaultKind::TlsHandshake => Outcome::Respond(handler(req).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seed: u64, rate: f64, kinds: &[FaultKind]) -> FaultPlan {
        FaultPlan {
            seed,
            rate,
            kinds: kinds.to_vec(),
            ..FaultPlan::default()
        }
    }

    #[test]
    fn names_round_trip() {
        for k in FaultKind::ALL {
            assert_eq!(FaultKind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::json!(k.as_str())
            );
        }
        assert_eq!(FaultKind::parse("http500"), None);
    }

    #[test]
    fn off_by_default_and_at_rate_zero() {
        let p = FaultPlan::default();
        assert!(!p.is_on());
        assert!(p.validate().is_ok());
        for n in 1..100 {
            assert_eq!(decide(&p, Scope::Request, "x", n), None);
        }
    }

    #[test]
    fn decisions_are_pure_and_seeded() {
        let p = plan(7, 0.5, &FaultKind::ALL);
        let run = |p: &FaultPlan| {
            (1..200)
                .map(|n| decide(p, Scope::Request, "claim KJ1 key-1", n))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(&p), run(&p));
        assert_ne!(run(&p), run(&plan(8, 0.5, &FaultKind::ALL)));
        // The order of kinds does not matter.
        let mut reversed = FaultKind::ALL.to_vec();
        reversed.reverse();
        assert_eq!(run(&p), run(&plan(7, 0.5, &reversed)));
    }

    #[test]
    fn rate_and_kinds_are_respected() {
        let p = plan(1, 0.3, &FaultKind::ALL);
        let decisions: Vec<Fault> = (1..=10_000)
            .filter_map(|n| decide(&p, Scope::Request, "GET /v1/health", n))
            .collect();
        assert!(
            (2_700..3_300).contains(&decisions.len()),
            "{}",
            decisions.len()
        );
        assert!(decisions.iter().all(|f| f.kind != FaultKind::TlsHandshake));
        for kind in FaultKind::ALL {
            let c = decisions.iter().filter(|f| f.kind == kind).count();
            if kind == FaultKind::TlsHandshake {
                assert_eq!(c, 0);
            } else {
                // 7 request kinds share ~3000 decisions.
                assert!((300..560).contains(&c), "{kind}: {c}");
            }
        }
        let with = decisions
            .iter()
            .filter(|f| f.kind == FaultKind::Http503 && f.retry_after)
            .count();
        let all_503 = decisions
            .iter()
            .filter(|f| f.kind == FaultKind::Http503)
            .count();
        assert!(
            with * 3 > all_503 && with * 3 < all_503 * 2,
            "{with}/{all_503}"
        );
        assert!(
            decisions
                .iter()
                .all(|f| !f.retry_after || f.kind == FaultKind::Http503)
        );

        let conn: Vec<Fault> = (1..=1_000)
            .filter_map(|n| decide(&p, Scope::Connection, "connection gateway", n))
            .collect();
        assert!(conn.iter().all(|f| f.kind == FaultKind::TlsHandshake));
        assert!((230..370).contains(&conn.len()), "{}", conn.len());

        let only_conn = plan(1, 1.0, &[FaultKind::TlsHandshake]);
        assert_eq!(decide(&only_conn, Scope::Request, "x", 1), None);
        let always = plan(1, 1.0, &[FaultKind::Slow]);
        let f = decide(&always, Scope::Request, "x", 1).unwrap();
        assert_eq!(f.kind, FaultKind::Slow);
        assert_eq!(f.delay, Duration::from_millis(1_500));
    }

    #[test]
    fn validation() {
        assert!(plan(0, 1.0, &[FaultKind::Http500]).validate().is_ok());
        for bad in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                plan(0, bad, &[FaultKind::Http500]).validate(),
                Err(FaultPlanError::RateOutOfRange(_))
            ));
        }
        assert_eq!(plan(0, 0.5, &[]).validate(), Err(FaultPlanError::NoKinds));
        assert!(plan(0, 0.0, &[]).validate().is_ok());
        let mut p = plan(0, 0.5, &[FaultKind::Timeout]);
        p.timeout_ms = MAX_DELAY_MS + 1;
        assert!(matches!(
            p.validate(),
            Err(FaultPlanError::DelayTooLong {
                field: "timeout_ms",
                ..
            })
        ));
    }

    #[test]
    fn counters_follow_the_plan() {
        let faults = Faults::new(FaultPlan::default());
        assert_eq!(faults.on_request(&Method::GET, "/v1/health"), None);
        assert_eq!(faults.status().requests, 0, "nothing is counted while off");
        faults
            .set(plan(3, 1.0, &[FaultKind::Http500, FaultKind::TlsHandshake]))
            .unwrap();
        assert_eq!(
            faults
                .on_request(&Method::GET, "/v1/health")
                .map(|f| f.kind),
            Some(FaultKind::Http500)
        );
        assert_eq!(
            faults.on_connection().map(|f| f.kind),
            Some(FaultKind::TlsHandshake)
        );
        assert_eq!(
            faults.on_submission("KJ1", "k", 1).map(|f| f.kind),
            Some(FaultKind::Http500)
        );
        let s = faults.status();
        assert_eq!((s.requests, s.connections), (2, 1));
        assert_eq!(s.injected[0], (FaultKind::Http500, 2));
        assert_eq!(s.injected[6], (FaultKind::TlsHandshake, 1));
        assert!(faults.set(plan(3, 2.0, &[])).is_err());
        assert_eq!(
            faults.status().requests,
            2,
            "a refused plan changes nothing"
        );
        faults.set(FaultPlan::default()).unwrap();
        assert_eq!(faults.status().requests, 0);
    }
}
