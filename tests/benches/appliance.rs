//! The appliance at rest and at start (issue 9), with the real daemon (release build) and the
//! federation simulator as processes.
//!
//! `cargo bench -p tests --bench appliance [-- --offices 10] [--idle-minutes 10]
//! [--warmup-secs 60] [--sample-secs 5] [--notices 1000000] [--store-offices 200] [--starts 3]
//! [--keep-store DIR] [--skip-idle] [--skip-startup]` (`--keep-store`: keep the filled store in
//! DIR and use it again on the next run instead of filling for six minutes)
//!
//! 1. **Idle.** The daemon with `--offices` offices configured (each with its certificate and
//!    federation user at the simulator), the product's default intervals (rescan 10 s, mirror
//!    idle 60 min, window refresh 1 h) and `RUST_LOG=info`, as the package runs it. After
//!    `--warmup-secs` (start-up and the mirror's first pass over every office) it samples RSS
//!    every `--sample-secs` for `--idle-minutes` and reports its CPU over the window (utime +
//!    stime from /proc, as a share of one core), RSS first/mean/max/last and VmHWM.
//!    Targets: under 30 MB RSS, under 0.5 % of one core.
//! 2. **Start-up.** A store filled with `--notices` notices over `--store-offices` offices
//!    (through the store API the mirror uses, before the daemon first opens it), then
//!    `--starts` starts: the time from spawning the process to `READY=1` on `NOTIFY_SOCKET`
//!    (the store open, the admin UI listening) and to the first stage log line, RSS at
//!    READY, and the time a SIGTERM stop takes. As root, the last start runs with the page
//!    cache dropped first (a start after a reboot).
//!
//! Figures are printed, never asserted; benches are not run in CI.

#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a failed step stops the run

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kaigo_relay::bench_support::{NoticeFill, office_number};
use kaigo_relay::claim::Month;
use kaigo_relay::config::Settings;
use kaigo_relay::store::Store;
use tests::measure::{arg, clock_ticks, flag, mib, proc_ticks, status_kib};
use tests::{CARE_OFFICE, Env, EnvOptions, PLAN_OFFICE};

const TARGET_RSS_MB: f64 = 30.0;
const TARGET_CPU_PERCENT: f64 = 0.5;

/// The product's defaults where the harness shortens them for tests.
fn product_intervals(extra_offices: usize) -> EnvOptions {
    EnvOptions {
        rescan_interval_secs: 10,
        settle_interval_ms: 500,
        incomplete_grace_secs: 120,
        health_refresh_secs: 3600,
        extra_offices,
        ..EnvOptions::default()
    }
}

fn idle(offices: usize, minutes: u64, warmup: u64, sample: u64) {
    let mut env = Env::with_options(product_intervals(offices.saturating_sub(2)));
    env.start_daemon_with_env(&[("RUST_LOG", "info")]);
    let url = env.admin_url();
    let pid = env.daemon().id();
    eprintln!("idle: {offices} offices, admin UI at {url}; warming up {warmup} s…");
    std::thread::sleep(Duration::from_secs(warmup));
    let log = env.logs();
    let pipeline_starts = log.matches("pipeline started").count();
    let hz = clock_ticks();
    let t0 = Instant::now();
    let ticks0 = proc_ticks(pid);
    let window = Duration::from_secs(minutes * 60);
    let mut rss: Vec<u64> = Vec::new();
    while t0.elapsed() < window {
        rss.push(status_kib(pid, "VmRSS:").unwrap_or(0));
        std::thread::sleep(Duration::from_secs(sample).min(window.saturating_sub(t0.elapsed())));
    }
    rss.push(status_kib(pid, "VmRSS:").unwrap_or(0));
    let ticks = proc_ticks(pid) - ticks0;
    let secs = t0.elapsed().as_secs_f64();
    let cpu_percent = ticks as f64 / hz / secs * 100.0;
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let mean = rss.iter().sum::<u64>() / rss.len().max(1) as u64;
    let max = rss.iter().copied().max().unwrap_or(0);
    let mb = |kib: u64| kib as f64 * 1024.0 / 1e6;
    let log = env.logs();
    let problems = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .count();
    println!("## idle, {offices} offices, {minutes} min after {warmup} s warm-up");
    println!(
        "cpu: {ticks} ticks in {secs:.0} s = {cpu_percent:.3} % of one core (target < {TARGET_CPU_PERCENT} %)"
    );
    println!(
        "rss: first {:.1} MiB, mean {:.1} MiB, max {:.1} MiB ({:.1} MB; target < {TARGET_RSS_MB} MB), last {:.1} MiB; VmHWM {:.1} MiB; {threads} threads",
        mib(rss[0]),
        mib(mean),
        mib(max),
        mb(max),
        mib(*rss.last().unwrap_or(&0)),
        mib(hwm)
    );
    println!(
        "log: pipeline started {pipeline_starts}× (1 expected), {problems} WARN/ERROR lines, {} lines in all",
        log.lines().count()
    );
    let status = env.daemon().terminate();
    assert!(status.success(), "the daemon stopped badly\n{}", env.logs());
}

/// Waits for `READY=1` on `socket`; the time it came.
fn wait_ready(socket: &UnixDatagram, timeout: Duration) -> Option<Instant> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < timeout {
        if let Ok(n) = socket.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
        {
            return Some(Instant::now());
        }
    }
    None
}

fn drop_page_cache() -> bool {
    rustix::fs::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn startup(total: u64, store_offices: usize, starts: u64, keep: Option<PathBuf>) {
    let mut env = Env::new();
    let store_path = Settings::load(&env.daemon_config)
        .expect("the harness's daemon config")
        .store_path();
    std::fs::create_dir_all(env.state_dir()).expect("state dir");
    let mut numbers: Vec<String> = vec![CARE_OFFICE.into(), PLAN_OFFICE.into()];
    numbers.extend((2..store_offices.max(2)).map(office_number));
    let plan = NoticeFill {
        total,
        offices: numbers,
        first_month: "201601".parse::<Month>().expect("month"),
    };
    let kept = keep
        .as_ref()
        .map(|dir| dir.join(format!("store-{total}-{store_offices}.redb")));
    let how = match kept.as_ref().filter(|k| k.is_file()) {
        Some(k) => {
            eprintln!(
                "start-up: copying the store filled earlier ({})…",
                k.display()
            );
            std::fs::copy(k, &store_path).expect("copy the kept store");
            "copied from --keep-store".to_owned()
        }
        None => {
            eprintln!("start-up: filling the store with {total} notices…");
            let filled = {
                let store = Store::open(&store_path).expect("open the store");
                plan.fill(&store, |n, elapsed| {
                    eprintln!("  {n} notices, {:.0}/s", n as f64 / elapsed.as_secs_f64());
                })
                .expect("fill the store")
            };
            if let Some(k) = &kept {
                std::fs::create_dir_all(k.parent().expect("a folder")).expect("--keep-store");
                std::fs::copy(&store_path, k).expect("keep the store");
            }
            format!("filled in {:.0} s", filled.elapsed.as_secs_f64())
        }
    };
    let notices = Store::open_read_only(&store_path)
        .and_then(|s| s.notice_count())
        .expect("count the notices");
    let store_mib = std::fs::metadata(&store_path).map_or(0.0, |m| m.len() as f64 / 1048576.0);
    println!("## start-up, {notices} notices ({store_mib:.0} MiB store, {how})");
    let sock_path = env.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&sock_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let sock = sock_path.to_str().expect("UTF-8 path").to_owned();
    let mut buf = [0u8; 4096];
    for n in 1..=starts {
        // What the last run said after its READY (STOPPING=1…) is not this run's.
        while socket.recv(&mut buf).is_ok() {}
        let cold = n == starts && n > 1 && drop_page_cache();
        let spawned = Instant::now();
        env.start_daemon_with_env(&[("NOTIFY_SOCKET", &sock), ("RUST_LOG", "info")]);
        let Some(ready) = wait_ready(&socket, Duration::from_secs(300)) else {
            panic!("no READY=1 in 300 s\n{}", env.logs());
        };
        let to_ready = ready - spawned;
        let pid = env.daemon().id();
        let rss = status_kib(pid, "VmRSS:").unwrap_or(0);
        // Let the stages start, then stop the daemon as systemd does.
        std::thread::sleep(Duration::from_secs(2));
        let stopping = Instant::now();
        let status = env.daemon().terminate();
        let stop = stopping.elapsed();
        assert!(status.success(), "the daemon stopped badly\n{}", env.logs());
        if stop > Duration::from_secs(2) {
            let log = std::fs::read_to_string(env.dir.path().join(format!("daemon-{n}.log")))
                .unwrap_or_default();
            println!("  slow stop; the run's log:\n{log}");
        }
        println!(
            "start {n}{}: READY after {:.0} ms, RSS at READY {:.1} MiB, SIGTERM stop {:.0} ms",
            if cold { " (page cache dropped)" } else { "" },
            to_ready.as_secs_f64() * 1000.0,
            mib(rss),
            stop.as_secs_f64() * 1000.0
        );
    }
}

fn main() {
    let offices = arg("--offices", 10).max(2) as usize;
    let minutes = arg("--idle-minutes", 10);
    let warmup = arg("--warmup-secs", 60);
    let sample = arg("--sample-secs", 5).max(1);
    let total = arg("--notices", 1_000_000);
    let store_offices = arg("--store-offices", 200) as usize;
    let starts = arg("--starts", 3).max(1);
    let keep = tests::measure::arg_str("--keep-store").map(PathBuf::from);
    if !flag("--skip-idle") {
        idle(offices, minutes, warmup, sample);
    }
    if !flag("--skip-startup") {
        startup(total, store_offices, starts, keep);
    }
}
