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
    // Requests already under way when it opened fail (the gateway resets them) within
    // moments; count from a second later.
    std::thread::sleep(Duration::from_secs(1));
    let at_open = sim_requests(&env);
    let opened_after = began.elapsed();
    std::thread::sleep(OUTAGE.saturating_sub(opened_after));
    let during = sim_requests(&env);
    let while_open = during - at_open;
    eprintln!(
        "requests during a {OUTAGE:?} outage: {during} ({at_open} until a second after the breaker opened, {while_open} in the {:?} after)",
        OUTAGE.saturating_sub(opened_after)
    );
    assert!(during > 0, "the relay did try");
    // Until it opens: at most BREAKER_TRIP_AFTER (5) failure events, each at most the 8 upload
    // slots and the 8 poll slots (an upload whose outcome is unknown is first looked up by key)
    // at once, plus the 8 in flight as it opens: 88 (35 to 55 measured, all within half a
    // second). Without a breaker each of the 50 files retries on its own schedule (from 200 ms,
    // doubling): some 6 tries each in 15 s, 300 requests, and more the longer it lasts.
    assert!(at_open <= 88, "{at_open} requests until the breaker opened");
    // While it is open: one probe per pause (2, 4, 8 s), the notice mirror's retries (5, 10 s)
    // and perhaps one health refresh: a handful, not a storm.
    assert!(
        while_open <= 10,
        "{while_open} requests reached the gateway while the breaker was open"
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
