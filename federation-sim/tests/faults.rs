//! Fault injection over the wire (federation-api.md "Faults", README "Faults"): every kind as a
//! client sees it (status, `Retry-After`, a connection closed without a single response byte,
//! a failed handshake, a delay), what the gateway records under each, the `presented`
//! accounting, determinism (same seed and keys → same faults, whatever the concurrency), the
//! config's `[faults]` table and the validation of `POST /sim/faults`.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use federation_sim::{FaultKind, FaultPlan};
use http::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use common::*;

/// Small delays keep the file fast.
const DELAY_MS: u64 = 300;

fn only(kind: &str) -> Value {
    json!({"seed": 1, "rate": 1, "kinds": [kind], "timeout_ms": DELAY_MS, "slow_ms": DELAY_MS})
}

fn injected(faults: &Value, kind: &str) -> u64 {
    faults["injected"][kind].as_u64().unwrap()
}

/// Asserts that a raw exchange ended without any HTTP response byte.
fn assert_no_response(raw: &Raw, what: &str) {
    assert!(
        raw.bytes.is_empty(),
        "{what}: expected no response bytes, got {:?}",
        String::from_utf8_lossy(&raw.bytes)
    );
}

#[tokio::test]
async fn http_500_and_503_record_nothing_and_count_the_presentation() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    let body = example();

    sim.set_faults(only("http_500")).await;
    let x = sim.exchange(post_claim("k-5xx", &body)).await.unwrap();
    assert_eq!(x.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(x.body["error"]["code"], "internal_error");
    assert!(x.headers.get("retry-after").is_none());
    assert!(sim.received().await.is_empty(), "a 500 records nothing");
    let x = sim.exchange(get("/v1/health")).await.unwrap();
    assert_eq!(x.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(injected(&sim.faults().await, "http_500"), 2);

    // 503: with Retry-After: 1 for some decisions, without for the others.
    sim.set_faults(only("http_503")).await;
    let (mut with, mut without) = (0, 0);
    for _ in 0..12 {
        let x = sim.exchange(post_claim("k-5xx", &body)).await.unwrap();
        assert_eq!(x.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(x.body["error"]["code"], "service_unavailable");
        match x.headers.get("retry-after") {
            Some(v) => {
                assert_eq!(v, "1");
                with += 1;
            }
            None => without += 1,
        }
    }
    assert!(with > 0 && without > 0, "{with} with, {without} without");
    let f = sim.faults().await;
    assert_eq!(injected(&f, "http_503"), 12);
    assert_eq!(f["http_503_with_retry_after"], with);
    assert_eq!(
        injected(&f, "http_500"),
        0,
        "a new plan resets the counters"
    );
    assert!(sim.received().await.is_empty(), "a 503 records nothing");

    // Off again: recorded once, and every presentation of the key was counted (1 + 12 + this).
    sim.set_faults(json!({"rate": 0})).await;
    let x = sim.exchange(post_claim("k-5xx", &body)).await.unwrap();
    assert_eq!(x.status, StatusCode::ACCEPTED);
    let received = sim.received().await;
    assert_eq!(received.len(), 1);
    assert_eq!(entry(&received, "k-5xx")["presented"], 14);
    sim.stop().await;
}

#[tokio::test]
async fn resets_close_the_connection_without_a_response() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    let body = example();

    // The raw client does see a response when there is one.
    let raw = sim.raw(&raw_get("/v1/health")).await;
    assert!(raw.bytes.starts_with(b"HTTP/1.1 200"), "{raw:?}");

    // reset_before_body: only the head is sent; the server closes without waiting for the
    // body it announced.
    sim.set_faults(only("reset_before_body")).await;
    let raw = sim.raw(&raw_post_claim("k-reset", &body, false)).await;
    assert_no_response(&raw, "reset_before_body");
    assert!(raw.elapsed < Duration::from_secs(5), "{raw:?}");
    let raw = sim.raw(&raw_get("/v1/health")).await;
    assert_no_response(&raw, "reset_before_body on a GET");
    let err = sim
        .exchange(post_claim("k-reset", &body))
        .await
        .unwrap_err();
    assert!(!err.starts_with("handshake"), "{err}");
    assert!(sim.received().await.is_empty());
    assert_eq!(injected(&sim.faults().await, "reset_before_body"), 3);

    // reset_after_body: the whole request is sent and read; nothing recorded, no response.
    sim.set_faults(only("reset_after_body")).await;
    let raw = sim.raw(&raw_post_claim("k-reset", &body, true)).await;
    assert_no_response(&raw, "reset_after_body");
    let raw = sim
        .raw(&raw_get("/v1/claims?idempotency_key=k-reset"))
        .await;
    assert_no_response(&raw, "reset_after_body on a GET");
    assert!(sim.received().await.is_empty());
    assert_eq!(injected(&sim.faults().await, "reset_after_body"), 2);

    // The key was presented 3 times (GETs do not present it); the fourth is recorded.
    sim.set_faults(json!({"rate": 0})).await;
    let x = sim.exchange(post_claim("k-reset", &body)).await.unwrap();
    assert_eq!(x.status, StatusCode::ACCEPTED);
    assert_eq!(entry(&sim.received().await, "k-reset")["presented"], 4);
    sim.stop().await;
}

#[tokio::test]
async fn timeout_holds_the_connection_then_drops_it() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    sim.set_faults(only("timeout")).await;
    let raw = sim
        .raw(&raw_post_claim("k-timeout", &example(), true))
        .await;
    assert_no_response(&raw, "timeout");
    assert!(
        raw.elapsed >= Duration::from_millis(DELAY_MS),
        "dropped after {:?}",
        raw.elapsed
    );
    assert!(raw.elapsed < Duration::from_secs(5), "{raw:?}");
    let raw = sim.raw(&raw_get("/v1/health")).await;
    assert_no_response(&raw, "timeout on a GET");
    assert!(raw.elapsed >= Duration::from_millis(DELAY_MS));
    assert!(sim.received().await.is_empty(), "a timeout records nothing");
    assert_eq!(injected(&sim.faults().await, "timeout"), 2);
    sim.stop().await;
}

#[tokio::test]
async fn slow_responses_arrive_late_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    sim.set_faults(only("slow")).await;
    let x = sim
        .exchange(post_claim("k-slow", &example()))
        .await
        .unwrap();
    assert_eq!(x.status, StatusCode::ACCEPTED, "{}", x.body);
    assert!(
        x.elapsed >= Duration::from_millis(DELAY_MS),
        "{:?}",
        x.elapsed
    );
    let x = sim.exchange(get("/v1/health")).await.unwrap();
    assert_eq!(x.status, StatusCode::OK);
    assert!(
        x.elapsed >= Duration::from_millis(DELAY_MS),
        "{:?}",
        x.elapsed
    );
    let received = sim.received().await;
    assert_eq!(received.len(), 1);
    assert_eq!(entry(&received, "k-slow")["presented"], 1);
    assert_eq!(injected(&sim.faults().await, "slow"), 2);

    // Without the fault the same requests are fast.
    sim.set_faults(json!({"rate": 0})).await;
    let x = sim
        .exchange(post_claim("k-slow", &example()))
        .await
        .unwrap();
    assert_eq!(x.status, StatusCode::OK);
    assert!(
        x.elapsed < Duration::from_millis(DELAY_MS),
        "{:?}",
        x.elapsed
    );
    sim.stop().await;
}

#[tokio::test]
async fn tls_handshake_faults_refuse_new_connections_only() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;

    // A keep-alive connection established while faults are off.
    let stream = sim
        .connect(Some("1379999996"), &[b"http/1.1"])
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);

    sim.set_faults(only("tls_handshake")).await;
    for _ in 0..3 {
        let err = sim.exchange(get("/v1/health")).await.unwrap_err();
        assert!(err.starts_with("handshake"), "{err}");
    }
    // Requests on the established connection are not affected (tls_handshake is the only
    // kind, and it applies to connections only).
    let resp = sender.send_request(get("/v1/health")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let f = sim.faults().await;
    assert_eq!(injected(&f, "tls_handshake"), 3);
    assert_eq!(f["connections"], 3);
    assert_eq!(f["requests"], 1);

    sim.set_faults(json!({"rate": 0})).await;
    let x = sim.exchange(get("/v1/health")).await.unwrap();
    assert_eq!(x.status, StatusCode::OK);
    sim.stop().await;
}

#[tokio::test]
async fn a_lost_response_is_recorded_and_reconciled_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    let body = example();

    sim.set_faults(only("lost_response")).await;
    let raw = sim.raw(&raw_post_claim("k-lost", &body, true)).await;
    assert_no_response(&raw, "lost_response");
    // Recorded and committed exactly as without the fault.
    let received = sim.received().await;
    assert_eq!(received.len(), 1);
    let recorded = entry(&received, "k-lost").clone();
    assert_eq!(recorded["presented"], 1);
    assert_eq!(recorded["status"], "arrived");
    // A GET's response is lost too.
    let raw = sim.raw(&raw_get("/v1/claims?idempotency_key=k-lost")).await;
    assert_no_response(&raw, "lost_response on a GET");

    // Over HTTP/2 the whole connection goes.
    let stream = sim.connect(Some("1379999996"), &[b"h2"]).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = post_claim("k-lost-h2", &body);
    *req.uri_mut() = format!(
        "https://localhost:{}/v1/claims",
        sim.listening.gateway_addr.port()
    )
    .parse()
    .unwrap();
    req.headers_mut().remove("host");
    assert!(sender.send_request(req).await.is_err());
    assert_eq!(sim.received().await.len(), 2);

    // The client reconciles: the lookup by key finds the original receipt, and a re-POST
    // gets the same receipt with 200, never a second submission.
    sim.set_faults(json!({"rate": 0})).await;
    let found = sim
        .exchange(get("/v1/claims?idempotency_key=k-lost"))
        .await
        .unwrap();
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.body["receipt_id"], recorded["receipt_id"]);
    assert_eq!(found.body["idempotency_key"], "k-lost");
    assert_eq!(found.body["arrived_at"], recorded["arrived_at"]);
    let again = sim.exchange(post_claim("k-lost", &body)).await.unwrap();
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, found.body);
    let received = sim.received().await;
    assert_eq!(received.len(), 2);
    assert_eq!(entry(&received, "k-lost")["presented"], 2);
    assert_eq!(entry(&received, "k-lost-h2")["presented"], 1);
    sim.stop().await;
}

/// How a client saw one request.
async fn outcome(sim: &Running, req: http::Request<http_body_util::Full<bytes::Bytes>>) -> String {
    match sim.exchange(req).await {
        Ok(x) => {
            let retry = x
                .headers
                .get("retry-after")
                .map(|v| format!(" retry-after {}", v.to_str().unwrap()))
                .unwrap_or_default();
            format!("{}{retry}", x.status.as_u16())
        }
        Err(e) if e.starts_with("handshake") => "handshake failed".to_owned(),
        Err(_) => "dropped".to_owned(),
    }
}

/// Up to three POSTs of the key (until one is answered 2xx), then a lookup by key.
async fn run_key(sim: &Running, key: String) -> (String, Vec<String>) {
    let body = example();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let o = outcome(sim, post_claim(&key, &body)).await;
        let done = o.starts_with('2');
        seen.push(o);
        if done {
            break;
        }
    }
    seen.push(outcome(sim, get(&format!("/v1/claims?idempotency_key={key}"))).await);
    (key, seen)
}

fn plan(kinds: &[&str]) -> Value {
    json!({"seed": 7, "rate": 0.5, "kinds": kinds, "timeout_ms": 60, "slow_ms": 60})
}

/// What must be equal between two runs of the same plan and the same keys.
async fn summary(sim: &Running) -> (Value, Vec<(Value, Value, Value)>) {
    let mut f = sim.faults().await;
    f.as_object_mut().unwrap().remove("connections");
    let mut received: Vec<_> = sim
        .received()
        .await
        .into_iter()
        .map(|e| {
            (
                e["idempotency_key"].clone(),
                e["presented"].clone(),
                e["sha256"].clone(),
            )
        })
        .collect();
    received.sort_by_key(|e| e.0.to_string());
    (f, received)
}

#[tokio::test]
async fn the_same_seed_and_keys_give_the_same_faults() {
    const ALL: [&str; 8] = [
        "http_500",
        "http_503",
        "reset_before_body",
        "reset_after_body",
        "timeout",
        "slow",
        "tls_handshake",
        "lost_response",
    ];
    let keys: Vec<String> = (0..12).map(|i| format!("det-{i:02}")).collect();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
        sim.set_faults(plan(&ALL)).await;
        let mut outcomes = Vec::new();
        for key in &keys {
            outcomes.push(run_key(&sim, key.clone()).await);
        }
        let f = sim.faults().await;
        runs.push((outcomes, summary(&sim).await, f));
        sim.stop().await;
    }
    assert_eq!(runs[0].0, runs[1].0, "per-key outcomes");
    assert_eq!(runs[0].1, runs[1].1, "fault counters and accounting");
    assert_eq!(runs[0].2, runs[1].2, "including the connection counter");
    // The plan really did fault, with several kinds.
    let f = &runs[0].2;
    let kinds_seen = ALL.iter().filter(|k| injected(f, k) > 0).count();
    assert!(kinds_seen >= 4, "{f}");
    assert!(injected(f, "tls_handshake") > 0, "{f}");

    // Another seed gives other faults.
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    let mut other = plan(&ALL);
    other["seed"] = json!(8);
    sim.set_faults(other).await;
    let mut outcomes = Vec::new();
    for key in &keys {
        outcomes.push(run_key(&sim, key.clone()).await);
    }
    assert_ne!(outcomes, runs[0].0);
    sim.stop().await;
}

/// Request faults do not depend on the order in which concurrent requests arrive: every key
/// sent at once gives the same per-key outcomes as the keys one after the other.
#[tokio::test]
async fn request_faults_do_not_depend_on_concurrency() {
    let kinds = [
        "http_500",
        "http_503",
        "reset_before_body",
        "reset_after_body",
        "timeout",
        "slow",
        "lost_response",
    ];
    let keys: Vec<String> = (0..16).map(|i| format!("conc-{i:02}")).collect();

    let dir = tempfile::tempdir().unwrap();
    let sequential = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    sequential.set_faults(plan(&kinds)).await;
    let mut expected = Vec::new();
    for key in &keys {
        expected.push(run_key(&sequential, key.clone()).await);
    }
    let expected_summary = summary(&sequential).await;
    sequential.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let concurrent = std::sync::Arc::new(Running::start(config(dir.path()), Some(IN_WINDOW)).await);
    concurrent.set_faults(plan(&kinds)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for key in keys.iter().rev() {
        let (sim, key) = (std::sync::Arc::clone(&concurrent), key.clone());
        tasks.spawn(async move { run_key(&sim, key).await });
    }
    let mut got = tasks.join_all().await;
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(summary(&concurrent).await, expected_summary);
    let sim = std::sync::Arc::into_inner(concurrent).unwrap();
    sim.stop().await;
}

#[tokio::test]
async fn rate_zero_turns_every_fault_off() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    sim.set_faults(json!({"seed": 3, "rate": 1, "timeout_ms": 50, "slow_ms": 50}))
        .await;
    let f = sim.faults().await;
    assert_eq!(f["active"], true);
    assert_eq!(
        f["kinds"].as_array().unwrap().len(),
        8,
        "every kind by default"
    );
    assert_ne!(outcome(&sim, get("/v1/health")).await, "200");

    let f = sim.set_faults(json!({"rate": 0})).await;
    assert_eq!(f["active"], false);
    assert_eq!(f["rate"], 0.0);
    assert_eq!(
        f["timeout_ms"], 30_000,
        "omitted fields take their defaults"
    );
    assert_eq!(f["slow_ms"], 1_500);
    for i in 0..10 {
        let key = format!("off-{i}");
        assert_eq!(outcome(&sim, post_claim(&key, &example())).await, "202");
        assert_eq!(outcome(&sim, get("/v1/health")).await, "200");
    }
    let f = sim.faults().await;
    assert_eq!(f["requests"], 0);
    assert_eq!(f["connections"], 0);
    assert!(FaultKind::ALL.iter().all(|k| injected(&f, k.as_str()) == 0));
    assert!(sim.received().await.iter().all(|e| e["presented"] == 1));
    sim.stop().await;
}

#[tokio::test]
async fn bad_plans_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    let good = sim.set_faults(only("http_500")).await;
    for (bad, code) in [
        (json!({"rate": 1.5}), "invalid_fault_plan"),
        (json!({"rate": -0.1}), "invalid_fault_plan"),
        (json!({"seed": 1}), "invalid_fault_plan"),
        (json!({"rate": 0.5, "kinds": []}), "invalid_fault_plan"),
        (
            json!({"rate": 0.5, "timeout_ms": 3_600_001}),
            "invalid_fault_plan",
        ),
        (
            json!({"rate": 0.5, "kinds": ["http_500", "http_502"]}),
            "unknown_fault_kind",
        ),
        (json!({"rate": 0.5, "colour": "red"}), "bad_json"),
        (json!({"rate": "often"}), "bad_json"),
    ] {
        let (status, err) = sim
            .control(Method::POST, "/sim/faults", Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {err}");
        assert_eq!(err["error"]["code"], code, "{bad}: {err}");
        assert!(err["error"]["message"].is_string());
    }
    assert_eq!(sim.faults().await, good);
    let (status, _) = sim.control(Method::DELETE, "/sim/faults", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    sim.stop().await;
}

#[tokio::test]
async fn the_config_can_start_with_faults_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.faults = FaultPlan {
        seed: 5,
        rate: 1.0,
        kinds: vec![FaultKind::Http500],
        timeout_ms: 100,
        slow_ms: 100,
    };
    let sim = Running::start(c, Some(IN_WINDOW)).await;
    let f = sim.faults().await;
    assert_eq!(f["active"], true);
    assert_eq!(f["seed"], 5);
    assert_eq!(f["kinds"], json!(["http_500"]));
    assert_eq!(f["timeout_ms"], 100);
    assert_eq!(outcome(&sim, get("/v1/health")).await, "500");
    assert_eq!(
        outcome(&sim, post_claim("k-config", &example())).await,
        "500"
    );
    // The control API is never faulted.
    assert!(sim.received().await.is_empty());
    assert_eq!(injected(&sim.faults().await, "http_500"), 2);
    sim.stop().await;
}
