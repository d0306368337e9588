//! The circuit breaker against a gateway that is down: while every request fails, the relay
//! stops hammering it (a handful of probes instead of every file retrying on its own), and when
//! the gateway comes back every file goes through, each exactly once, without waiting for the
//! files' own long backoffs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::time::{Duration, Instant};

use serde_json::json;
use tests::{Env, http_json, sha256_hex};

const FILES: usize = 50;
const OUTAGE: Duration = Duration::from_secs(15);

fn sim_requests(env: &Env) -> u64 {
    let f = http_json("GET", &format!("{}/sim/faults", env.control_url), None);
    f["requests"].as_u64().unwrap()
}

#[test]
fn a_gateway_that_is_down_gets_probes_not_a_storm_and_recovery_is_prompt() {
    let mut env = Env::new();
    env.start_daemon();
    // The gateway is up at first: one file goes through (and the relay knows the window).
    let first = env.claim(&["0000799999"], 9);
    env.drop_atomic("KB_FIRST.CSV", &first);
    env.wait_state(&sha256_hex(&first), "accepted", Duration::from_secs(60));
    // Then it goes down.
    let down = json!({"seed": 1, "rate": 1.0, "kinds": ["reset_before_body"]});
    let plan = http_json(
        "POST",
        &format!("{}/sim/faults", env.control_url),
        Some(&down),
    );
    assert_eq!(plan["active"], true, "{plan}");
    let mut shas = vec![sha256_hex(&first)];
    for n in 0..FILES {
        let insured = format!("{:010}", 800_000 + n);
        let bytes = env.claim(&[insured.as_str()], 10 + n as u32);
        shas.push(sha256_hex(&bytes));
        env.drop_atomic(&format!("KB{n:06}.CSV"), &bytes);
    }
    let began = Instant::now();
    env.wait_for("the breaker opens", Duration::from_secs(30), |env| {
        env.logs()
            .contains("the gateway keeps failing; pausing all requests")
            .then_some(())
    });
    std::thread::sleep(OUTAGE.saturating_sub(began.elapsed()));
    let during = sim_requests(&env);
    // Without the breaker each of the 50 files retries on its own schedule (from 200 ms,
    // doubling): some 6 tries each in 15 s, 300 requests. With it, a few before it opens and
    // then one probe per pause (2, 4, 8 s); 24 were measured.
    eprintln!("requests during a {OUTAGE:?} outage: {during}");
    assert!(during > 0, "the relay did try");
    assert!(
        during <= 60,
        "{during} requests reached a gateway that was down for {OUTAGE:?}"
    );

    let up = json!({"seed": 1, "rate": 0.0});
    http_json(
        "POST",
        &format!("{}/sim/faults", env.control_url),
        Some(&up),
    );
    let back = Instant::now();
    // The next probe is at most one pause (16 s here, 120 s at most) away.
    env.wait_for("every file arrives", Duration::from_secs(60), |env| {
        let done = env
            .status()
            .iter()
            .filter(|s| s["state"] == "arrived" || s["state"] == "accepted")
            .count();
        (done == FILES + 1).then_some(())
    });
    eprintln!(
        "all {FILES} arrived {:?} after the gateway came back",
        back.elapsed()
    );
    assert!(
        env.logs()
            .contains("the gateway answers again; sending resumes")
    );
    let received = env.received();
    assert_eq!(received.len(), FILES + 1, "each file recorded once");
    for sha in &shas {
        let n = received
            .iter()
            .filter(|r| r["sha256"] == sha.as_str())
            .count();
        assert_eq!(n, 1, "{sha} recorded once");
    }
}
