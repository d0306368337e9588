//! Login cost on the appliance: the real daemon (release build) and its admin UI over HTTPS on
//! loopback. Run with `cargo bench -p tests --bench login [-- --secs S] [--clients C]`.
//!
//! Reports:
//! 1. **Login latency**, one browser at a time: the whole form round trip (GET /login for the
//!    CSRF cookie, POST /login with an argon2id verification, 303 with the session cookie).
//! 2. **Sustained login rate** with C browsers logging in as fast as they can (throttling
//!    raised out of the way, so every attempt costs a hash), and the rate of refused
//!    attempts under the default throttle (which never reach the hash).
//! 3. **The rest of the daemon meanwhile**: the latency of an ordinary signed-in page (GET /) and
//!    of claim files from rename to stored receipt, measured without and during the flood.
//!    The daemon verifies at most one password at a time (`MAX_CONCURRENT_HASHES`), so a
//!    flood takes one core and leaves the other to intake, the relay and the UI.
//!
//! Figures are printed, never asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a failed step stops the run

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use tests::browser::Browser;
use tests::{Env, EnvOptions, sha256_hex};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn line(name: &str, mut v: Vec<f64>) {
    let n = v.len();
    let (p50, p99) = (pct(&mut v, 0.5), pct(&mut v, 0.99));
    println!(
        "  {name:<46} n={n:<5} p50 {p50:>8.1} ms   p99 {p99:>8.1} ms   max {:>8.1} ms",
        v[n - 1]
    );
}

/// A staff account whose one-time password has been changed to `password` in the UI, as a
/// person would at first login.
fn add_account(env: &Env, id: &str, password: &str) {
    let one_time = env.add_user(&["--id", id, "--role", "staff", "--grant", tests::CARE_OFFICE]);
    env.browser().first_login(id, &one_time, password);
}

/// rename → receipt stored, for `n` files dropped one after another.
fn drop_latencies(env: &Env, n: usize, base: u32) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..n {
        let no = base + i as u32;
        let bytes = env.claim(&[&format!("{:010}", 4_000_000 + no)], no);
        let sha = sha256_hex(&bytes);
        let at = SystemTime::now();
        env.drop_atomic(&format!("L{no:07}.CSV"), &bytes);
        let e = env.wait_for("a receipt", Duration::from_secs(60), |env| {
            env.status()
                .into_iter()
                .find(|s| s["sha256"] == sha.as_str() && !s["receipt_stored_at"].is_null())
        });
        let stored: Timestamp = e["receipt_stored_at"].as_str().unwrap().parse().unwrap();
        let from = Timestamp::try_from(at).unwrap();
        out.push(stored.duration_since(from).as_secs_f64() * 1000.0);
    }
    out
}

/// A signed-in page: the overview, which reads the session, the account and the offices' counts
/// from the store.
fn page_latencies(b: &mut Browser, password: &str, n: usize) -> Vec<f64> {
    assert_eq!(b.login("bench", password).status, 303);
    (0..n)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(b.get("/").status, 200);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

fn main() {
    let secs = arg("--secs", 15);
    let clients = arg("--clients", 16) as usize;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);

    // Part 1 and 2 and 3: throttling out of the way, so that every attempt is a hash.
    let mut env = Env::with_options(EnvOptions {
        admin_toml: "login_burst_per_address = 1000000\nlogin_burst_per_id = 1000000\nlogin_refill_per_address_secs = 1\nlogin_refill_per_id_secs = 1".into(),
        ..EnvOptions::default()
    });
    env.start_daemon();
    let _ = env.admin_url();
    let password = "yuki-no-hi-pass-2026";
    add_account(&env, "bench", password);
    // Warm up TLS and the store.
    let mut b = env.browser();
    assert_eq!(b.login("bench", password).status, 303);
    println!("login benchmark: {cpus} CPUs, {clients} browsers for the flood, {secs} s each");
    println!("\nOne browser at a time (GET /login + POST /login with argon2id m=19 MiB t=2 p=1)");
    let mut lat = Vec::new();
    for _ in 0..40 {
        let t = Instant::now();
        let p = b.login("bench", password);
        assert_eq!(p.status, 303);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    line("successful login (form round trip)", lat.clone());
    let mut wrong = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(b.login("bench", "not-the-password").status, 401);
        wrong.push(t.elapsed().as_secs_f64() * 1000.0);
        // Not into a lockout: a success clears the failure count.
        if wrong.len() % 5 == 0 {
            assert_eq!(b.login("bench", password).status, 303);
        }
    }
    line("wrong password (same hash cost)", wrong);
    let mut unknown = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(b.login("no-such-id", "whatever-pass").status, 401);
        unknown.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    line("unknown ID (decoy hash, same cost)", unknown);

    println!("\nThe rest of the daemon, idle");
    let idle_pages = page_latencies(&mut b, password, 200);
    line("GET / (signed-in overview)", idle_pages);
    let idle_drops = drop_latencies(&env, 10, 100);
    line("claim file: rename -> receipt stored", idle_drops);

    println!("\nFlood: {clients} browsers logging in without pause for {secs} s");
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let url = env.admin_url();
    let ca = env.state_dir().join("admin-tls").join("ca.pem");
    let mut threads = Vec::new();
    for _ in 0..clients {
        let (stop, done, url, ca) = (stop.clone(), done.clone(), url.clone(), ca.clone());
        threads.push(std::thread::spawn(move || {
            let mut b = Browser::new(&url, &ca);
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let s = b.login("bench", "yuki-no-hi-pass-2026").status;
                assert_eq!(s, 303);
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                done.fetch_add(1, Ordering::Relaxed);
            }
            lat
        }));
    }
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let before = done.load(Ordering::Relaxed);
    let flood_pages = page_latencies(&mut b, password, 200);
    let flood_drops = drop_latencies(&env, 10, 200);
    let left = Duration::from_secs(secs).saturating_sub(started.elapsed());
    std::thread::sleep(left);
    let elapsed = started.elapsed().as_secs_f64();
    let logins = done.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    let mut flood_lat = Vec::new();
    for t in threads {
        flood_lat.extend(t.join().unwrap());
    }
    println!(
        "  sustained: {:.1} logins/s ({logins} in {elapsed:.1} s)",
        logins as f64 / elapsed
    );
    line("login latency under the flood", flood_lat);
    line("GET / (signed-in overview) during the flood", flood_pages);
    line("claim file: rename -> receipt stored, during", flood_drops);
    env.daemon().terminate();

    // Refused attempts under the default throttle: no hash at all.
    let mut env = Env::new();
    env.start_daemon();
    let _ = env.admin_url();
    let mut b = env.browser();
    let mut throttled = 0u64;
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_secs(5) {
        let s = b.login("someone", "guess-guess-guess").status;
        n += 1;
        if s == 429 {
            throttled += 1;
        }
    }
    println!(
        "\nDefault throttle (10 per address, 5 per ID in a burst): {:.0} attempts/s from one address, {throttled} of {n} refused with 429 before any hash",
        n as f64 / t.elapsed().as_secs_f64()
    );
    println!(
        "\nReproduce: cargo bench -p tests --bench login -- --secs {secs} --clients {clients}"
    );
}
