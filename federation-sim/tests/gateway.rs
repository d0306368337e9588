//! End-to-end tests of the simulator in-process: `Simulator::serve` on 127.0.0.1:0, spoken to
//! over real mutual TLS (hyper client + tokio-rustls, HTTP/1.1 and HTTP/2) and plain HTTP for
//! the control API (helpers in `common`).

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpStream;

use common::*;

#[tokio::test]
async fn submit_replay_mismatch_lookup_and_reception() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    let body = example();

    let (status, receipt) = sim.gateway(post_claim("key-1", &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    assert_eq!(receipt["status"], "arrived");
    assert_eq!(receipt["idempotency_key"], "key-1");
    assert_eq!(receipt["arrival_errors"], json!([]));
    let receipt_id = receipt["receipt_id"].as_str().unwrap().to_owned();
    assert!(receipt_id.starts_with("R20250603-"), "{receipt_id}");
    assert!(
        receipt["arrived_at"]
            .as_str()
            .unwrap()
            .starts_with("2025-06-03T10:00")
    );
    assert!(receipt["arrived_at"].as_str().unwrap().ends_with("+09:00"));

    // Same key, same body: the original receipt, counted.
    let (status, again) = sim.gateway(post_claim("key-1", &body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, receipt);
    let received = sim.received().await;
    assert_eq!(received.len(), 1);
    let e = entry(&received, "key-1");
    assert_eq!(e["presented"], 2);
    assert_eq!(e["receipt_id"], receipt_id.as_str());
    assert_eq!(e["sha256"], hex::encode(Sha256::digest(&body)));
    assert_eq!(e["office_number"], "1379999996");
    assert_eq!(e["file_name"], "KK250601.CSV");
    assert_eq!(e["status"], "arrived");
    assert_eq!(e["reception_mark"], Value::Null);

    // Same key, different body: 422, counted, nothing new recorded.
    let other = cp932(&EXAMPLE.replace("3,6\r\n", "3,6\r\n2,7\r\n"));
    let (status, err) = sim.gateway(post_claim("key-1", &other)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["code"], "idempotency_mismatch");
    let received = sim.received().await;
    assert_eq!(received.len(), 1);
    assert_eq!(entry(&received, "key-1")["presented"], 3);

    // Lookup by key.
    let (status, found) = sim.gateway(get("/v1/claims?idempotency_key=key-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found, receipt);
    let (status, err) = sim.gateway(get("/v1/claims?idempotency_key=nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["code"], "not_found");

    // Pending until the reception phase runs.
    let (status, st) = sim.gateway(get(&format!("/v1/claims/{receipt_id}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(st["status"], "arrived");
    assert_eq!(st["reception_mark"], Value::Null);
    let (status, adv) = sim
        .control(
            Method::POST,
            "/sim/advance",
            Some(json!({"phase": "reception"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(adv["finalised"], 1);
    let (_, st) = sim.gateway(get(&format!("/v1/claims/{receipt_id}"))).await;
    assert_eq!(st["status"], "accepted", "{st}");
    assert_eq!(st["reception_mark"], "○");
    assert_eq!(st["errors"], json!([]));
    assert_eq!(st["receipt_id"], receipt_id.as_str());
    assert!(st["updated_at"].as_str().unwrap().ends_with("+09:00"));
    assert_eq!(entry(&sim.received().await, "key-1")["status"], "accepted");

    // Another user ID cannot see it.
    let req = Request::builder()
        .uri(format!("/v1/claims/{receipt_id}"))
        .header("host", "localhost")
        .header("authorization", basic("KJ00000002", "other"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _) = sim.gateway_as(Some("1379999988"), req).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);

    sim.stop().await;
}

#[tokio::test]
async fn reception_result_is_revealed_after_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.reception_delay_ms = 300;
    let sim = Running::start(c, Some(IN_WINDOW)).await;

    let (status, receipt) = sim.gateway(post_claim("k-delay", &example())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, bad) = sim
        .gateway(post_claim(
            "k-month",
            &cp932(&EXAMPLE.replace(",7,202506,1", ",7,202505,1")),
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{bad}");

    let path = format!("/v1/claims/{}", receipt["receipt_id"].as_str().unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, st) = sim.gateway(get(&path)).await;
        if st["status"] == "accepted" {
            assert_eq!(st["reception_mark"], "○");
            break;
        }
        assert_eq!(st["status"], "arrived");
        assert!(
            tokio::time::Instant::now() < deadline,
            "never accepted: {st}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The background finaliser decided the other one too: wrong 処理対象年月 → ×.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = sim.received().await;
    assert_eq!(entry(&received, "k-month")["status"], "rejected");
    assert_eq!(entry(&received, "k-month")["reception_mark"], "×");
    let (_, st) = sim
        .gateway(get(&format!(
            "/v1/claims/{}",
            bad["receipt_id"].as_str().unwrap()
        )))
        .await;
    assert_eq!(st["status"], "rejected");
    assert_eq!(st["errors"][0]["code"], "processing_month_mismatch");
    assert_eq!(st["errors"][0]["record_no"], 1);

    // Moving the clock back does not un-decide a revealed result.
    let (status, _) = sim
        .control(
            Method::POST,
            "/sim/clock",
            Some(json!({"now": "2025-06-01T00:00:00+09:00"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, st) = sim.gateway(get(&path)).await;
    assert_eq!(st["status"], "accepted");

    sim.stop().await;
}

#[tokio::test]
async fn returns_and_arrival_failures_over_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;

    let returns = cp932(&EXAMPLE.replace(
        "2,4,\"7131\",02,202505,1379999996,00139998",
        "2,4,\"7131\",02,202505,1379999996,00139997",
    ));
    let (status, r) = sim.gateway(post_claim("k-returns", &returns)).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // An 8.3 violation: recorded, but 到達 failed.
    let req = {
        let body = example();
        let mut req = post_claim("k-name2", &body);
        req.headers_mut()
            .insert("x-file-name", "FAR-TOO-LONG.CSV".parse().unwrap());
        req
    };
    let (status, failed2) = sim.gateway(req).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(failed2["status"], "arrival_failed");
    assert_eq!(failed2["arrival_errors"][0]["code"], "bad_file_name");

    sim.control(
        Method::POST,
        "/sim/advance",
        Some(json!({"phase": "reception"})),
    )
    .await;
    let (_, st) = sim
        .gateway(get(&format!(
            "/v1/claims/{}",
            r["receipt_id"].as_str().unwrap()
        )))
        .await;
    assert_eq!(st["status"], "accepted_with_returns");
    assert_eq!(st["reception_mark"], "△");
    assert_eq!(st["errors"][0]["code"], "bad_insurer_number");
    assert_eq!(st["errors"][0]["record_no"], 4);

    let (_, st) = sim
        .gateway(get(&format!(
            "/v1/claims/{}",
            failed2["receipt_id"].as_str().unwrap()
        )))
        .await;
    assert_eq!(st["status"], "rejected");
    assert_eq!(st["reception_mark"], Value::Null);
    assert_eq!(st["errors"][0]["code"], "bad_file_name");

    sim.stop().await;
}

/// Files from `federation_sim::generate` for the processing month the gateway reports are
/// accepted with ○ over the wire, in both quoting styles.
#[tokio::test]
async fn generated_claims_are_accepted_in_both_styles() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    let (status, health) = sim.gateway(get("/v1/health")).await;
    assert_eq!(status, StatusCode::OK);
    let month = health["reception_window"]["processing_month"]
        .as_str()
        .unwrap();
    let processing_month = federation_sim::Month::parse(month).unwrap();

    let mut receipts = Vec::new();
    for style in [federation_sim::Style::Honobono, federation_sim::Style::Qkan] {
        let files = federation_sim::generate(&federation_sim::GenOptions {
            office: "1379999996".into(),
            processing_month,
            members: 50,
            style,
            seed: 11,
            service_month: None,
            insured_numbers: None,
        })
        .unwrap();
        for file in files {
            let key = format!("gen-{}", file.name);
            let mut req = post_claim(&key, &file.bytes);
            req.headers_mut()
                .insert("x-file-name", file.name.parse().unwrap());
            let (status, receipt) = sim.gateway(req).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
            assert_eq!(receipt["status"], "arrived", "{}: {receipt}", file.name);
            receipts.push((
                file.name,
                receipt["receipt_id"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let (_, adv) = sim
        .control(
            Method::POST,
            "/sim/advance",
            Some(json!({"phase": "reception"})),
        )
        .await;
    assert_eq!(adv["finalised"], 4);
    for (name, receipt_id) in receipts {
        let (_, st) = sim.gateway(get(&format!("/v1/claims/{receipt_id}"))).await;
        assert_eq!(st["status"], "accepted", "{name}: {st}");
        assert_eq!(st["reception_mark"], "○");
        assert_eq!(st["errors"], json!([]));
    }
    sim.stop().await;
}

#[tokio::test]
async fn http2_works_over_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    let stream = sim.connect(Some("1379999996"), &[b"h2"]).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let url = format!("https://localhost:{}", sim.listening.gateway_addr.port());
    let body = example();
    let mut req = post_claim("k-h2", &body);
    *req.uri_mut() = format!("{url}/v1/claims").parse().unwrap();
    req.headers_mut().remove("host");
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let health = Request::builder()
        .uri(format!("{url}/v1/health"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(health).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(sender);
    sim.stop().await;
}

#[tokio::test]
async fn a_connection_without_a_client_certificate_fails() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    // With TLS 1.3 the client may finish its side before the server's alert arrives, so the
    // failure can surface at the handshake or at the first request; either way no response.
    let result = sim.gateway_as(None, get("/v1/health")).await;
    assert!(result.is_err(), "expected a failure, got {result:?}");
    // The same request with a certificate works.
    let (status, health) = sim.gateway(get("/v1/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    sim.stop().await;
}

#[tokio::test]
async fn authentication_and_certificate_checks() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    let body = example();

    let mut req = post_claim("k", &body);
    req.headers_mut()
        .insert("authorization", basic(USER, "wrong").parse().unwrap());
    let (status, err) = sim.gateway(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["error"]["code"], "bad_credentials");

    let mut req = post_claim("k", &body);
    req.headers_mut().remove("authorization");
    let (status, err) = sim.gateway(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["error"]["code"], "bad_credentials");

    // Office 1379999988's certificate is not allowed for KJ00000001.
    let (status, err) = sim
        .gateway_as(Some("1379999988"), post_claim("k", &body))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["error"]["code"], "certificate_not_allowed");

    // None of these were recorded.
    assert!(sim.received().await.is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn request_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_claim_bytes = 2000;
    let sim = Running::start(c, Some(IN_WINDOW)).await;
    let body = example();

    let mut req = post_claim("k", &body);
    req.headers_mut().remove("idempotency-key");
    let (status, err) = sim.gateway(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["code"], "missing_idempotency_key");

    let mut req = post_claim("k", &body);
    req.headers_mut().remove("content-digest");
    let (status, err) = sim.gateway(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["code"], "missing_content_digest");

    let mut req = post_claim("k", &body);
    req.headers_mut()
        .insert("content-digest", digest(b"other").parse().unwrap());
    let (status, err) = sim.gateway(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["code"], "digest_mismatch");

    let mut req = post_claim("k", &body);
    req.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    let (status, err) = sim.gateway(req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(err["error"]["code"], "unsupported_media_type");

    let big = vec![b'1'; 2001];
    let (status, err) = sim.gateway(post_claim("k-big", &big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(err["error"]["code"], "too_large");

    let (status, err) = sim.gateway(get("/v1/nothing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["code"], "not_found");
    let mut req = get("/v1/health");
    *req.method_mut() = Method::PUT;
    let (status, err) = sim.gateway(req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(err["error"]["code"], "method_not_allowed");

    assert!(sim.received().await.is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn outside_the_window_is_refused_and_health_shows_the_next_window() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some("2025-06-15T12:00:00+09:00")).await;
    let (status, err) = sim.gateway(post_claim("k-late", &example())).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"]["code"], "outside_reception_window");
    assert_eq!(err["next_window_opens_at"], "2025-07-01T00:00:00+09:00");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("受付期間外")
    );

    let (status, health) = sim.gateway(get("/v1/health")).await;
    assert_eq!(status, StatusCode::OK);
    let w = &health["reception_window"];
    assert_eq!(w["open"], false);
    assert_eq!(w["processing_month"], "202507");
    assert_eq!(w["opens_at"], "2025-07-01T00:00:00+09:00");
    assert_eq!(w["closes_at"], "2025-07-11T00:00:00+09:00");
    assert_eq!(w["withdraw_until"], "2025-07-11T00:00:00+09:00");
    assert!(
        health["now"]
            .as_str()
            .unwrap()
            .starts_with("2025-06-15T12:00")
    );
    assert!(sim.received().await.is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn withdrawal_until_the_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    let (_, a) = sim.gateway(post_claim("k-a", &example())).await;
    let (_, b) = sim.gateway(post_claim("k-b", &example())).await;
    let delete = |id: &str| {
        Request::builder()
            .method(Method::DELETE)
            .uri(format!("/v1/claims/{id}"))
            .header("host", "localhost")
            .header("authorization", basic(USER, PASSWORD))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (status, w) = sim.gateway(delete(a["receipt_id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(w["status"], "withdrawn");
    let (_, st) = sim
        .gateway(get(&format!(
            "/v1/claims/{}",
            a["receipt_id"].as_str().unwrap()
        )))
        .await;
    assert_eq!(st["status"], "withdrawn");

    sim.control(
        Method::POST,
        "/sim/clock",
        Some(json!({"now": "2025-06-11T00:00:00+09:00"})),
    )
    .await;
    let (status, err) = sim.gateway(delete(b["receipt_id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"]["code"], "withdraw_closed");
    let (status, _) = sim.gateway(delete("R20250603-999999")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    sim.stop().await;
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let body = example();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    let (status, receipt) = sim.gateway(post_claim("k-restart", &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = sim.gateway(post_claim("k-restart", &body)).await;
    assert_eq!(status, StatusCode::OK);
    let ca_before = std::fs::read(&sim.ca).unwrap();
    let identity_before = sim.identity("1379999996");
    let cert_before = std::fs::read(&identity_before.0).unwrap();
    let listen_json: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("listen.json")).unwrap()).unwrap();
    assert_eq!(
        listen_json["gateway_url"],
        sim.listening.gateway_url.as_str()
    );
    assert_eq!(
        listen_json["control_url"],
        sim.listening.control_url.as_str()
    );
    sim.stop().await;

    // Open the same directory again (no clock given: the virtual clock was persisted).
    let sim = Running::start(config(dir.path()), None).await;
    assert_eq!(std::fs::read(&sim.ca).unwrap(), ca_before);
    assert_eq!(sim.identity("1379999996"), identity_before);
    assert_eq!(std::fs::read(&identity_before.0).unwrap(), cert_before);
    let (_, clock) = sim.control(Method::GET, "/sim/clock", None).await;
    assert_eq!(clock["virtual"], true);
    assert!(
        clock["now"]
            .as_str()
            .unwrap()
            .starts_with("2025-06-03T10:0")
    );

    let received = sim.received().await;
    assert_eq!(received.len(), 1);
    assert_eq!(entry(&received, "k-restart")["presented"], 2);
    assert_eq!(
        entry(&received, "k-restart")["receipt_id"],
        receipt["receipt_id"]
    );

    let (status, again) = sim.gateway(post_claim("k-restart", &body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, receipt);
    assert_eq!(entry(&sim.received().await, "k-restart")["presented"], 3);

    // The counter continues.
    let (_, next) = sim.gateway(post_claim("k-next", &body)).await;
    assert_eq!(next["receipt_id"], "R20250603-000002");
    sim.stop().await;
}

#[tokio::test]
async fn control_api() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), None).await;

    let (status, clock) = sim.control(Method::GET, "/sim/clock", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(clock["virtual"], false);
    let (status, clock) = sim
        .control(
            Method::POST,
            "/sim/clock",
            Some(json!({"now": "2026-12-03T10:00:00+09:00"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(clock["virtual"], true);
    assert!(
        clock["now"]
            .as_str()
            .unwrap()
            .starts_with("2026-12-03T10:00:0")
    );
    let (status, clock) = sim
        .control(Method::POST, "/sim/clock", Some(json!({"real": true})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(clock["virtual"], false);

    for bad in [
        json!({"now": "yesterday"}),
        json!({}),
        json!({"now": "2026-12-03T10:00:00+09:00", "real": true}),
        json!({"later": 1}),
    ] {
        let (status, err) = sim
            .control(Method::POST, "/sim/clock", Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {err}");
    }

    let (status, offices) = sim.control(Method::GET, "/sim/offices", None).await;
    assert_eq!(status, StatusCode::OK);
    let offices = offices.as_array().unwrap();
    assert_eq!(offices.len(), 2);
    assert!(offices.iter().all(|o| o.get("password").is_none()));
    assert_eq!(
        offices[0]["certificate_fingerprints"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let (status, reg) = sim
        .control(
            Method::POST,
            "/sim/offices",
            Some(json!({"office_number": "1210600472", "name": "新規", "user_id": "KJ00000001", "password": "secret"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reg}");
    assert_eq!(reg["office_number"], "1210600472");
    assert!(Path::new(reg["client_cert_path"].as_str().unwrap()).exists());
    assert!(Path::new(reg["client_key_path"].as_str().unwrap()).exists());
    assert_eq!(reg["fingerprint"].as_str().unwrap().len(), 64);

    let (status, err) = sim
        .control(
            Method::POST,
            "/sim/offices",
            Some(json!({"office_number": "1210600473", "user_id": "KJ1", "password": "p"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["code"], "invalid_office");
    let (status, _) = sim
        .control(
            Method::POST,
            "/sim/offices",
            Some(json!({"office_number": "1210600472", "user_id": "XX1", "password": "p"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Nothing was submitted: the month end runs and issues nothing.
    let (status, run) = sim
        .control(
            Method::POST,
            "/sim/advance",
            Some(json!({"phase": "month_end", "processing_month": "202611"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["processing_month"], "202611");
    assert_eq!(run["notices"], json!([]));
    let (status, err) = sim
        .control(
            Method::POST,
            "/sim/advance",
            Some(json!({"phase": "payment", "processing_month": "2026-11"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["code"], "bad_month");
    let (status, _) = sim
        .control(
            Method::POST,
            "/sim/advance",
            Some(json!({"phase": "payday"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, err) = sim.control(Method::GET, "/sim/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["code"], "not_found");
    let (status, _) = sim.control(Method::DELETE, "/sim/received", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // Malformed JSON.
    let tcp = TcpStream::connect(sim.listening.control_addr)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::POST)
        .uri("/sim/clock")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::from_static(b"{not json")))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "bad_json");

    sim.stop().await;
}

#[tokio::test]
async fn a_registered_office_can_submit_with_its_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Running::start(config(dir.path()), Some(IN_WINDOW)).await;
    // An agent user ID covering a second office: register 1210600472 under KJ00000001 too.
    let (status, reg) = sim
        .control(
            Method::POST,
            "/sim/offices",
            Some(json!({"office_number": "1210600472", "name": "追加", "user_id": USER, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut sim = sim;
    sim.identities.push((
        "1210600472".into(),
        (
            PathBuf::from(reg["client_cert_path"].as_str().unwrap()),
            PathBuf::from(reg["client_key_path"].as_str().unwrap()),
        ),
    ));
    let body = cp932(&EXAMPLE.replace("1,1,0,4,711,0,0,1379999996", "1,1,0,4,711,0,0,1210600472"));
    let (status, receipt) = sim
        .gateway_as(Some("1210600472"), post_claim("k-agent", &body))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    sim.control(
        Method::POST,
        "/sim/advance",
        Some(json!({"phase": "reception"})),
    )
    .await;
    let received = sim.received().await;
    assert_eq!(entry(&received, "k-agent")["office_number"], "1210600472");
    assert_eq!(entry(&received, "k-agent")["status"], "accepted");
    sim.stop().await;
}
