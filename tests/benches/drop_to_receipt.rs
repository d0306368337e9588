//! Drop-to-receipt latency on loopback: real `federation-sim` and `kaigo-relay` processes, real
//! mutual TLS, the production default intake settings. Run with
//! `cargo bench -p tests --bench drop_to_receipt` (release build).
//!
//! Measured per file, on one machine clock: from the moment the bench renames (or finishes
//! writing) the file in the drop folder, to the moment the daemon committed the gateway's
//! receipt (`receipt_stored_at` in `status --json`), and the intake part of it (`taken_at`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use serde_json::Value;
use tests::{Env, EnvOptions, sha256_hex};

const FILES: usize = 20;

fn ms_between(from: SystemTime, to: &Value) -> f64 {
    let to: Timestamp = to.as_str().expect("timestamp").parse().expect("RFC 3339");
    let from = Timestamp::try_from(from).expect("time");
    to.duration_since(from).as_secs_f64() * 1000.0
}

fn stats(name: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "{name:<44} n={:<3} median {:>7.1} ms   p90 {:>7.1} ms   min {:>7.1} ms   max {:>7.1} ms   mean {:>7.1} ms",
        v.len(),
        pct(0.5),
        pct(0.9),
        v[0],
        v[v.len() - 1],
        mean
    );
}

fn wait_received(env: &Env, shas: &[String]) {
    env.wait_for("receipts", Duration::from_secs(120), |env| {
        let got = env.received();
        shas.iter()
            .all(|s| got.iter().any(|r| r["sha256"] == s.as_str()))
            .then_some(())
    });
}

fn entries(env: &Env, shas: &[String]) -> Vec<Value> {
    let status = env.status();
    shas.iter()
        .map(|s| {
            status
                .iter()
                .find(|e| e["sha256"] == s.as_str() && !e["receipt_stored_at"].is_null())
                .cloned()
                .unwrap_or_else(|| panic!("no receipt for {s}"))
        })
        .collect()
}

fn main() {
    // Production defaults for intake (config/kaigo-relay.example.toml).
    let mut env = Env::with_options(EnvOptions {
        settle_interval_ms: 500,
        rescan_interval_secs: 10,
        incomplete_grace_secs: 120,
        reception_delay_ms: 1000,
        health_refresh_secs: 3600,
        ..EnvOptions::default()
    });
    env.start_daemon();
    // Warm-up: the window is fetched, the TLS connection is up.
    let warm = env.claim(&["0000999999"], 1);
    env.drop_atomic("WARMUP.CSV", &warm);
    wait_received(&env, &[sha256_hex(&warm)]);

    let mut file_no = 10;
    let mut next = |env: &Env| {
        file_no += 1;
        let insured = format!("{:010}", 700_000 + file_no);
        env.claim(&[&insured, "0000123456"], file_no)
    };

    // 1. Renamed into the folder (the preferred signal), one at a time.
    let mut drops = Vec::new();
    let mut shas = Vec::new();
    for i in 0..FILES {
        let bytes = next(&env);
        let sha = sha256_hex(&bytes);
        let t0 = SystemTime::now();
        env.drop_atomic(&format!("KR{i:06}.CSV"), &bytes);
        wait_received(&env, std::slice::from_ref(&sha));
        drops.push(t0);
        shas.push(sha);
    }
    let e = entries(&env, &shas);
    stats(
        "rename-in: drop -> taken (committed)",
        drops
            .iter()
            .zip(&e)
            .map(|(t, e)| ms_between(*t, &e["taken_at"]))
            .collect(),
    );
    stats(
        "rename-in: drop -> receipt stored",
        drops
            .iter()
            .zip(&e)
            .map(|(t, e)| ms_between(*t, &e["receipt_stored_at"]))
            .collect(),
    );

    // 2. Written in place (one write, then close): close-write + two stable checks.
    let mut drops = Vec::new();
    let mut shas = Vec::new();
    for i in 0..FILES {
        let bytes = next(&env);
        let sha = sha256_hex(&bytes);
        std::fs::write(env.drop_dir.join(format!("KW{i:06}.CSV")), &bytes).expect("write");
        let t0 = SystemTime::now();
        wait_received(&env, std::slice::from_ref(&sha));
        drops.push(t0);
        shas.push(sha);
    }
    let e = entries(&env, &shas);
    stats(
        "in place: write done -> receipt stored",
        drops
            .iter()
            .zip(&e)
            .map(|(t, e)| ms_between(*t, &e["receipt_stored_at"]))
            .collect(),
    );

    // 3. A burst: 20 files renamed in at once.
    let files: Vec<Vec<u8>> = (0..FILES).map(|_| next(&env)).collect();
    let shas: Vec<String> = files.iter().map(|b| sha256_hex(b)).collect();
    let t0 = SystemTime::now();
    let clock = Instant::now();
    for (i, bytes) in files.iter().enumerate() {
        env.drop_atomic(&format!("KB{i:06}.CSV"), bytes);
    }
    wait_received(&env, &shas);
    let wall = clock.elapsed();
    let e = entries(&env, &shas);
    stats(
        "burst of 20: drop -> receipt stored",
        e.iter()
            .map(|e| ms_between(t0, &e["receipt_stored_at"]))
            .collect(),
    );
    println!(
        "burst of 20: all receipts at the gateway after {:.0} ms ({:.1} files/s)",
        wall.as_secs_f64() * 1000.0,
        FILES as f64 / wall.as_secs_f64()
    );
    let received = env.received();
    assert_eq!(received.len(), 3 * FILES + 1, "every file exactly once");
    assert!(received.iter().all(|r| r["presented"] == 1));
    println!(
        "exactly once: {} submissions recorded by the gateway, each presented once",
        received.len()
    );
}
