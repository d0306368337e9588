//! The relay against a failing gateway: with federation-sim's seeded faults at rate 0.3 over
//! every kind (500, 503 with and without Retry-After, resets before and after the body,
//! response timeouts, slow responses, TLS handshake failures, and responses lost after the
//! gateway recorded the file), every dropped file is recorded at the federation exactly once and
//! ends accepted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use tests::{Env, http_json, sha256_hex};

const FILES: usize = 500;

#[test]
fn with_faults_at_rate_0_3_every_file_arrives_exactly_once() {
    let mut env = Env::new();
    let plan = http_json(
        "POST",
        &format!("{}/sim/faults", env.control_url),
        Some(&json!({"seed": 7, "rate": 0.3, "timeout_ms": 2000, "slow_ms": 300})),
    );
    assert_eq!(plan["active"], true, "{plan}");
    env.start_daemon();
    let mut shas = Vec::new();
    for n in 0..FILES {
        let insured = format!("{:010}", 700_000 + n);
        let bytes = env.claim(&[insured.as_str()], 10 + n as u32);
        shas.push(sha256_hex(&bytes));
        env.drop_atomic(&format!("KF{n:06}.CSV"), &bytes);
    }
    env.wait_for("every file accepted", Duration::from_secs(240), |env| {
        let done = env
            .status()
            .iter()
            .filter(|s| s["state"] == "accepted")
            .count();
        (done == FILES).then_some(())
    });
    let received = env.received();
    let mut per_sha: HashMap<String, usize> = HashMap::new();
    for r in &received {
        *per_sha
            .entry(r["sha256"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for sha in &shas {
        assert_eq!(per_sha.get(sha), Some(&1), "{sha} recorded once");
    }
    assert_eq!(received.len(), FILES, "nothing else was recorded");
    let faults = http_json("GET", &format!("{}/sim/faults", env.control_url), None);
    let injected: u64 = faults["injected"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(injected > 0, "faults were injected: {faults}");
    for kind in [
        "http_500",
        "http_503",
        "reset_before_body",
        "reset_after_body",
        "timeout",
        "slow",
        "tls_handshake",
        "lost_response",
    ] {
        assert!(
            faults["injected"][kind].as_u64().unwrap() > 0,
            "{kind} was exercised: {faults}"
        );
    }
    eprintln!("faults injected: {}", faults["injected"]);
    let presented: u64 = received
        .iter()
        .map(|r| r["presented"].as_u64().unwrap())
        .sum();
    eprintln!("{FILES} files, {presented} presentations");
}
