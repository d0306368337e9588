//! Relay throughput: how many claim files per second kaigo-relay carries from the drop folder to
//! a stored receipt, next to what the gateway itself takes from a plain client. Run with
//! `cargo bench -p tests --bench relay_throughput [-- --files N]` (release build; N defaults to
//! 10 000; `-- --help` lists the other options).
//!
//! One run:
//! 1. **Before any clock starts**, N distinct valid claim files (`Env::claim`, a few KB each)
//!    are written to a staging folder next to the drop folder (same filesystem, so moving one
//!    in is a rename).
//! 2. **Direct limit.** For each concurrency (1, the daemon's `max_concurrent_sends`, and a
//!    higher one) a fresh federation-sim takes the same N files from an in-process keep-alive
//!    client built exactly like the daemon's (its `transport::tls_config` and
//!    `GatewayConnector`, wrapped by hyper-rustls with HTTP/1.1 and HTTP/2, hyper-util's pooled
//!    client; the office's client certificate, Basic credentials, fresh `Idempotency-Key`s,
//!    `Content-Digest`, `X-File-Name`). Every answer must be a 202 `arrived`.
//! 3. **End to end.** Another fresh simulator and the daemon (the daemon's default log level,
//!    the production intake settings and status poll interval); once a warm-up file has its
//!    receipt (window read, TLS up), all N staged files are renamed into the drop folder as fast
//!    as possible, each rename timed. The bench waits for every file at the gateway (counting
//!    `/sim/received`, cheap) and then reads `status --json` once. Meanwhile the daemon's RSS is
//!    sampled from `/proc` every 200 ms.
//!
//! Times per file, all on this machine's clock: rename → `taken_at` (intake's stamp, taken
//! just **before** the store commit), rename → durable commit (the time of the daemon's
//! `file taken and queued` log line, written right after the commit returned; the status
//! output has no commit time), rename → `receipt_stored_at`. Targets are printed, not asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a failed step stops the run

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{self, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use kaigo_relay::config::Settings;
use kaigo_relay::federation::content_digest;
use kaigo_relay::transport::{GatewayConnector, load_roots, tls_config};
use serde_json::Value;
use tests::{CARE_OFFICE, Env, EnvOptions, Proc, bins, sha256_hex, status_json};

const USAGE: &str = "\
cargo bench -p tests --bench relay_throughput -- [OPTIONS]

  --files N              claim files per run (default 10000)
  --members K            insured persons per file, ~410 bytes each (default 8: ~3.3 KiB files)
  --high C               the higher direct-client concurrency (default 16)
  --status-poll-secs S   the daemon's gateway.status_poll_interval_secs (default 300, the
                         production default; the harness's own config says 1)
  --rust-log SPEC        RUST_LOG for the daemon (default: unset, the daemon's default level)
  --deadline-secs S      how long to wait for every receipt (default 1800)
  --rate R               drop R files per second, evenly paced, instead of all at once
                         (latency below capacity rather than the queue of one burst)
  --no-direct            skip the direct-limit runs
  --no-e2e               skip the end-to-end run";

#[derive(Debug, Clone)]
struct Args {
    files: usize,
    members: usize,
    high: usize,
    status_poll_secs: u64,
    rust_log: Option<String>,
    deadline: Duration,
    direct: bool,
    e2e: bool,
    rate: Option<u64>,
}

fn usage_exit(problem: &str) -> ! {
    eprintln!("relay_throughput: {problem}\n\n{USAGE}");
    std::process::exit(64)
}

fn parse_args() -> Args {
    let mut a = Args {
        files: 10_000,
        members: 8,
        high: 16,
        status_poll_secs: 300,
        rust_log: None,
        deadline: Duration::from_secs(1800),
        direct: true,
        e2e: true,
        rate: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .unwrap_or_else(|| usage_exit(&format!("{key} needs a value")))
        };
        let mut number = |min: u64| -> u64 {
            let v = value();
            match v.parse::<u64>() {
                Ok(n) if n >= min => n,
                _ => usage_exit(&format!("{key}: \"{v}\" is not a number >= {min}")),
            }
        };
        match key.as_str() {
            "--bench" => {} // cargo bench passes it to every bench binary
            "--files" => a.files = number(1) as usize,
            "--members" => a.members = number(1) as usize,
            "--high" => a.high = number(1) as usize,
            "--status-poll-secs" => a.status_poll_secs = number(1),
            "--deadline-secs" => a.deadline = Duration::from_secs(number(1)),
            "--rust-log" => a.rust_log = Some(value()),
            "--no-direct" => a.direct = false,
            "--no-e2e" => a.e2e = false,
            "--rate" => a.rate = Some(number(1)),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => usage_exit(&format!("unknown argument {other}")),
        }
    }
    a
}

/// One staged claim file.
struct Staged {
    name: String,
    bytes: Bytes,
}

/// N distinct valid claim files of the care office for the harness's processing month.
fn make_files(env: &Env, n: usize, members: usize) -> Vec<Staged> {
    let files: Vec<Staged> = (0..n)
        .map(|i| {
            let insured: Vec<String> = (0..members)
                .map(|j| format!("{:010}", 1_000_000 + i * members + j))
                .collect();
            let refs: Vec<&str> = insured.iter().map(String::as_str).collect();
            Staged {
                name: format!("T{i:07}.CSV"),
                bytes: Bytes::from(env.claim(&refs, 100 + i as u32)),
            }
        })
        .collect();
    let mut shas: Vec<String> = files.iter().map(|f| sha256_hex(&f.bytes)).collect();
    shas.sort();
    shas.dedup();
    assert_eq!(shas.len(), n, "the staged files are distinct");
    files
}

// ---------------------------------------------------------------- /proc

/// user + system CPU seconds of a process (or `self`).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    cpu_of_stat(&stat)
}

fn cpu_of_stat(stat: &str) -> f64 {
    // Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0 // USER_HZ is 100 on Linux
}

/// A `kB` line of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// /proc/PID/io as name → value.
fn proc_io(pid: u32) -> HashMap<String, u64> {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// CPU seconds of every live thread: tid → (name, seconds).
fn thread_cpu(pid: u32) -> HashMap<String, (String, f64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let tid = entry.file_name().to_string_lossy().into_owned();
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        out.insert(tid, (comm.trim().to_owned(), cpu_of_stat(&stat)));
    }
    out
}

/// Samples VmRSS every 200 ms on a thread until stopped; answers the largest value seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(u64, usize)>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut max, mut samples) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                if let Some(kib) = status_kib(pid, "VmRSS") {
                    max = max.max(kib);
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (max, samples)
        });
        RssSampler { stop, handle }
    }

    fn finish(self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("sampler")
    }
}

// ---------------------------------------------------------------- statistics

fn pct(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// p50 / p90 / p99 / max of `v`, in ms.
fn row(name: &str, mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return format!("  {name:<34} n/a");
    }
    v.sort_by(f64::total_cmp);
    format!(
        "  {name:<34} {:>9.1} {:>9.1} {:>9.1} {:>9.1}   (n={})",
        pct(&v, 0.5),
        pct(&v, 0.9),
        pct(&v, 0.99),
        v[v.len() - 1],
        v.len()
    )
}

fn ts(v: &Value) -> Option<Timestamp> {
    v.as_str()?.parse().ok()
}

fn ms(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------- direct limit

#[derive(Debug, Clone)]
struct DirectResult {
    concurrency: usize,
    secs: f64,
    rate: f64,
    client_cpu: f64,
    sim_cpu: f64,
    version: hyper::Version,
}

type GatewayHttp = Client<hyper_rustls::HttpsConnector<GatewayConnector>, Full<Bytes>>;

/// The daemon's client for the care office, built from the daemon config the harness wrote.
fn gateway_client(settings: &Settings) -> (GatewayHttp, HeaderValue, String) {
    let office = settings
        .offices
        .iter()
        .find(|o| o.office_number.as_str() == CARE_OFFICE)
        .expect("the care office is configured");
    let g = &settings.gateway;
    let roots = load_roots(&g.ca_file).expect("gateway CA");
    let tls = tls_config(roots, &g.pin_sha256, office).expect("TLS config of the office");
    let tcp = GatewayConnector::new(g.connect_timeout, g.proxy.as_ref()).expect("connector");
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https);
    let token = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        office.federation_user_id.as_str(),
        office.federation_password.expose()
    ));
    let mut auth = HeaderValue::from_str(&format!("Basic {token}")).expect("header");
    auth.set_sensitive(true);
    let base = g.url.to_string().trim_end_matches('/').to_owned();
    (client, auth, base)
}

/// `GET /v1/health`: the JSON and the HTTP version the connection negotiated.
async fn health(client: &GatewayHttp, auth: &HeaderValue, base: &str) -> (Value, hyper::Version) {
    let req = hyper::Request::get(format!("{base}/v1/health"))
        .header(header::AUTHORIZATION, auth.clone())
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client.request(req).await.expect("GET /v1/health");
    let version = resp.version();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (serde_json::from_slice(&body).expect("health JSON"), version)
}

/// POSTs every file once (fresh keys) with `concurrency` requests in flight to a fresh simulator.
fn direct_limit(files: &Arc<Vec<Staged>>, concurrency: usize) -> DirectResult {
    let env = Env::new();
    let settings = Settings::load(&env.daemon_config).expect("daemon config");
    let (client, auth, base) = gateway_client(&settings);
    let sim_pid = env.sim.id().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tag = format!(
        "bench-c{concurrency}-{}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let (secs, cpu_client, cpu_sim, failures, version) = rt.block_on(async {
        let (h, version) = health(&client, &auth, &base).await;
        let w = &h["reception_window"];
        assert_eq!(w["open"], true, "the simulator's window must be open: {h}");
        assert_eq!(
            w["processing_month"],
            env.month.to_string(),
            "the files are for the simulator's processing month: {h}"
        );
        // Warm the pool: as many requests at once as there will be in flight.
        let mut warm = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (c, a, b) = (client.clone(), auth.clone(), base.clone());
            warm.spawn(async move { health(&c, &a, &b).await });
        }
        while warm.join_next().await.is_some() {}

        let cpu0 = (cpu_secs("self"), cpu_secs(&sim_pid));
        let start = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let url: hyper::Uri = format!("{base}/v1/claims").parse().expect("url");
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (client, auth, url, next, files, tag) = (
                client.clone(),
                auth.clone(),
                url.clone(),
                next.clone(),
                files.clone(),
                tag.clone(),
            );
            workers.spawn(async move {
                let mut failures = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = files.get(i) else { break };
                    let req = hyper::Request::post(url.clone())
                        .header(header::AUTHORIZATION, auth.clone())
                        .header(header::ACCEPT, "application/json")
                        .header(header::CONTENT_TYPE, "text/csv; charset=Shift_JIS")
                        .header("Idempotency-Key", format!("{tag}-{i:07}"))
                        .header("X-File-Name", f.name.as_str())
                        .header("Content-Digest", content_digest(&f.bytes))
                        .body(Full::new(f.bytes.clone()))
                        .expect("request");
                    match client.request(req).await {
                        Ok(resp) => {
                            let status = resp.status();
                            let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                            let ok = status == hyper::StatusCode::ACCEPTED
                                && body.as_ref().is_ok_and(|b| {
                                    serde_json::from_slice::<Value>(b)
                                        .is_ok_and(|v| v["status"] == "arrived")
                                });
                            if !ok {
                                failures.push(format!(
                                    "{}: HTTP {status} {:?}",
                                    f.name,
                                    body.map(|b| String::from_utf8_lossy(&b).into_owned())
                                ));
                            }
                        }
                        Err(e) => failures.push(format!("{}: {e:?}", f.name)),
                    }
                }
                failures
            });
        }
        let mut failures = Vec::new();
        while let Some(done) = workers.join_next().await {
            failures.extend(done.expect("worker"));
        }
        let secs = start.elapsed().as_secs_f64();
        (
            secs,
            cpu_secs("self") - cpu0.0,
            cpu_secs(&sim_pid) - cpu0.1,
            failures,
            version,
        )
    });
    assert!(
        failures.is_empty(),
        "{} of {} direct uploads failed, e.g. {}\n{}",
        failures.len(),
        files.len(),
        failures[0],
        env.logs()
    );
    let recorded = env.received().len();
    assert_eq!(recorded, files.len(), "the simulator recorded every upload");
    DirectResult {
        concurrency,
        secs,
        rate: files.len() as f64 / secs,
        client_cpu: cpu_client,
        sim_cpu: cpu_sim,
        version,
    }
}

// ---------------------------------------------------------------- end to end

#[derive(Debug, Default)]
struct E2eResult {
    rate: f64,
    span_secs: f64,
    rename_secs: f64,
    to_taken: Vec<f64>,
    to_commit: Vec<f64>,
    to_receipt: Vec<f64>,
    taken_to_commit: Vec<f64>,
    commit_to_receipt: Vec<f64>,
    commit_gaps: Vec<f64>,
    intake_rate: f64,
    commit_source: &'static str,
    send_ms: Vec<f64>,
    idle_rss_kib: u64,
    max_rss_kib: u64,
    rss_samples: usize,
    hwm_kib: u64,
    daemon_cpu: f64,
    sim_cpu: f64,
    threads: Vec<(String, f64)>,
    io: Vec<(String, u64)>,
    attempts: u64,
    log_lines: usize,
    log_bytes: u64,
    overflow_rescans: usize,
    logs_dir: std::path::PathBuf,
}

/// Copies both logs of the end-to-end run to `target/relay_throughput/` (the temporary folder
/// goes with the run) and answers that folder.
fn keep_logs(daemon_log: &Path, sim_log: &Path) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("bench executable path");
    // target/<profile>/deps/<bench> → target
    let target = exe.ancestors().nth(3).expect("target directory");
    let dir = target.join("relay_throughput");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::copy(daemon_log, dir.join("daemon.log"));
    let _ = std::fs::copy(sim_log, dir.join("federation-sim.log"));
    dir
}

/// `type device (mount point)` of the filesystem holding `path`, from /proc/self/mounts.
fn filesystem_of(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dev, point, fstype) = (*f.first()?, *f.get(1)?, *f.get(2)?);
            path.starts_with(point)
                .then(|| (point.len(), format!("{fstype} {dev} (mounted on {point})")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s)
        .unwrap_or_else(|| "unknown".into())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Removes terminal colour sequences (the daemon's log goes to a file with ANSI colours).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    line[start..].split([' ', '}', ',']).next()
}

/// From the daemon's log: when each submission's intake commit returned, and each send's
/// duration.
fn parse_log(text: &str) -> (HashMap<String, Timestamp>, Vec<f64>, usize) {
    let mut commits = HashMap::new();
    let mut sends = Vec::new();
    let mut overflows = 0;
    for raw in text.lines() {
        let line = strip_ansi(raw);
        let Some(at) = line
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<Timestamp>().ok())
        else {
            continue;
        };
        if line.contains("file taken and queued") {
            if let Some(id) = field(&line, "submission") {
                commits.insert(id.to_owned(), at);
            }
        } else if line.contains("sent; receipt stored") {
            if let Some(d) = field(&line, "duration_ms").and_then(|d| d.parse::<f64>().ok()) {
                sends.push(d);
            }
        } else if line.contains("overflowed") {
            overflows += 1;
        }
    }
    (commits, sends, overflows)
}

fn end_to_end(env: &mut Env, files: &[Staged], staging: &Path, args: &Args) -> E2eResult {
    let n = files.len();
    // The production status poll interval, so that 受付 polling of arrived files does not
    // compete with sending during the run (the harness's config polls every second).
    let config = std::fs::read_to_string(&env.daemon_config).expect("daemon config");
    let poll = format!("status_poll_interval_secs = {}", args.status_poll_secs);
    if config.contains("status_poll_interval_secs = 1\n") {
        let config = config.replace("status_poll_interval_secs = 1\n", &format!("{poll}\n"));
        std::fs::write(&env.daemon_config, config).expect("write daemon config");
    } else {
        eprintln!(
            "note: the harness's daemon config changed; status_poll_interval_secs left as is"
        );
    }

    let mut cmd = Command::new(&bins().relay);
    cmd.args(["run", "--config"]).arg(&env.daemon_config);
    cmd.env_remove("KAIGO_RELAY_FAILPOINTS");
    match &args.rust_log {
        Some(spec) => cmd.env("RUST_LOG", spec),
        None => cmd.env_remove("RUST_LOG"),
    };
    let log = env.dir.path().join("daemon-bench.log");
    env.daemon = Some(Proc::spawn("kaigo-relay", cmd, log.clone()));
    let pid = env.daemon.as_ref().expect("daemon").id();
    let sim_pid = env.sim.id();
    let fail = |what: &str| -> ! {
        let kept = keep_logs(&log, &env.sim.log);
        panic!(
            "{what}\n---- daemon log (tail) ----\n{}\n---- sim log (tail) ----\n{}\n(both logs: {})",
            tail(&log, 60),
            tail(&env.sim.log, 20),
            kept.display()
        )
    };

    // Ready: a warm-up file has its receipt stored (the window is known, a connection is up).
    let warm = env.claim(&["0999999999"], 1);
    env.drop_atomic("WARMUP.CSV", &warm);
    let ready = tests::wait_until(Duration::from_secs(120), || {
        status_json(&env.daemon_config)
            .ok()?
            .iter()
            .any(|s| s["file_name"] == "WARMUP.CSV" && !s["receipt_stored_at"].is_null())
            .then_some(())
    });
    if ready.is_none() {
        fail("the daemon did not relay the warm-up file within 120 s");
    }
    std::thread::sleep(Duration::from_millis(500));

    let idle_rss_kib = status_kib(pid, "VmRSS").unwrap_or(0);
    let threads0 = thread_cpu(pid);
    let io0 = proc_io(pid);
    let cpu0 = (cpu_secs(&pid.to_string()), cpu_secs(&sim_pid.to_string()));
    let log_bytes0 = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let sampler = RssSampler::start(pid);

    // The burst: every staged file renamed in, as fast as possible (or paced at --rate).
    let mut renamed = Vec::with_capacity(n);
    let burst = Instant::now();
    for (i, f) in files.iter().enumerate() {
        if let Some(rate) = args.rate {
            let due = burst + Duration::from_secs_f64(i as f64 / rate as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        std::fs::rename(staging.join(&f.name), env.drop_dir.join(&f.name)).expect("rename in");
        renamed.push(SystemTime::now());
    }
    let rename_secs = burst.elapsed().as_secs_f64();
    eprintln!(
        "renamed {n} files into the drop folder in {:.0} ms",
        rename_secs * 1000.0
    );

    // Every file at the gateway (plus the warm-up file).
    let deadline = Instant::now() + args.deadline;
    let mut last_report = Instant::now();
    loop {
        let got = env.received().len().saturating_sub(1);
        if got >= n {
            break;
        }
        if Instant::now() >= deadline {
            fail(&format!(
                "only {got} of {n} files reached the gateway within {:?}",
                args.deadline
            ));
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let t = burst.elapsed().as_secs_f64();
            eprintln!(
                "  {t:>6.1} s: {got}/{n} at the gateway ({:.1} files/s), daemon VmRSS {:.1} MiB",
                got as f64 / t,
                mib(status_kib(pid, "VmRSS").unwrap_or(0))
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // ... and every receipt committed by the daemon: status read once (again only if a receipt
    // was not yet committed when it was read).
    let by_name: HashMap<String, Value> = loop {
        let status = status_json(&env.daemon_config).unwrap_or_else(|e| fail(&e));
        let by_name: HashMap<String, Value> = status
            .into_iter()
            .filter_map(|s| Some((s["file_name"].as_str()?.to_owned(), s)))
            .collect();
        let missing = files
            .iter()
            .filter(|f| {
                by_name
                    .get(&f.name)
                    .is_none_or(|s| s["receipt_stored_at"].is_null())
            })
            .count();
        if missing == 0 {
            break by_name;
        }
        if Instant::now() >= deadline {
            fail(&format!("{missing} files have no stored receipt"));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let (max_rss_kib, rss_samples) = sampler.finish();
    let hwm_kib = status_kib(pid, "VmHWM").unwrap_or(0);
    let daemon_cpu = cpu_secs(&pid.to_string()) - cpu0.0;
    let sim_cpu = cpu_secs(&sim_pid.to_string()) - cpu0.1;
    let io1 = proc_io(pid);
    let mut io: Vec<(String, u64)> = ["syscw", "write_bytes", "syscr", "read_bytes"]
        .iter()
        .map(|k| {
            let (before, after) = (io0.get(*k).copied(), io1.get(*k).copied());
            let d = after.unwrap_or(0).saturating_sub(before.unwrap_or(0));
            ((*k).to_owned(), d)
        })
        .collect();
    io.retain(|(_, v)| *v > 0);
    let mut per_name: HashMap<String, f64> = HashMap::new();
    for (tid, (name, secs)) in thread_cpu(pid) {
        let before = threads0.get(&tid).map_or(0.0, |t| t.1);
        *per_name.entry(name).or_default() += secs - before;
    }
    let mut threads: Vec<(String, f64)> = per_name.into_iter().filter(|t| t.1 > 0.0).collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));

    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let log_bytes = std::fs::metadata(&log)
        .map(|m| m.len())
        .unwrap_or(0)
        .saturating_sub(log_bytes0);
    let log_lines = log_text[(log_bytes0 as usize).min(log_text.len())..]
        .lines()
        .count();
    let (commits, send_ms, overflow_rescans) = parse_log(&log_text);
    let logs_dir = keep_logs(&log, &env.sim.log);

    let mut r = E2eResult {
        rename_secs,
        send_ms,
        idle_rss_kib,
        max_rss_kib,
        rss_samples,
        hwm_kib,
        daemon_cpu,
        sim_cpu,
        threads,
        io,
        log_lines,
        log_bytes,
        overflow_rescans,
        logs_dir,
        ..E2eResult::default()
    };
    let first_rename = Timestamp::try_from(renamed[0]).expect("time");
    let mut last_receipt = first_rename;
    let mut wrong = Vec::new();
    let mut commit_times = Vec::new();
    for (f, t) in files.iter().zip(&renamed) {
        let s = &by_name[&f.name];
        let state = s["state"].as_str().unwrap_or("");
        if !matches!(state, "arrived" | "accepted" | "accepted_with_returns") {
            wrong.push(format!("{} is {state}: {}", f.name, s["note_en"]));
        }
        r.attempts += s["attempts"].as_u64().unwrap_or(0);
        let t = Timestamp::try_from(*t).expect("time");
        if let Some(taken) = ts(&s["taken_at"]) {
            r.to_taken.push(ms(t, taken));
        }
        let receipt = ts(&s["receipt_stored_at"]).expect("receipt_stored_at");
        if let Some(c) = s["id"].as_str().and_then(|id| commits.get(id)) {
            r.to_commit.push(ms(t, *c));
            if let Some(taken) = ts(&s["taken_at"]) {
                r.taken_to_commit.push(ms(taken, *c));
            }
            r.commit_to_receipt.push(ms(*c, receipt));
            commit_times.push(*c);
        }
        r.to_receipt.push(ms(t, receipt));
        last_receipt = last_receipt.max(receipt);
    }
    if !wrong.is_empty() {
        fail(&format!(
            "{} files did not arrive as expected, e.g. {}",
            wrong.len(),
            wrong[0]
        ));
    }
    r.commit_source = if r.to_commit.len() == n {
        "log \"file taken and queued\""
    } else {
        "n/a (log line not found)"
    };
    commit_times.sort();
    r.commit_gaps = commit_times.windows(2).map(|w| ms(w[0], w[1])).collect();
    if let Some(last) = commit_times.last() {
        r.intake_rate = commit_times.len() as f64 / (ms(first_rename, *last) / 1000.0);
    }
    r.span_secs = ms(first_rename, last_receipt) / 1000.0;
    r.rate = n as f64 / r.span_secs;
    let received = env.received();
    let presented: u64 = received
        .iter()
        .map(|x| x["presented"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        received.len(),
        n + 1,
        "every file recorded once at the gateway"
    );
    assert_eq!(presented, n as u64 + 1, "every file presented once");
    r
}

// ---------------------------------------------------------------- main

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn main() {
    kaigo_relay::install_crypto_provider();
    let args = parse_args();
    let n = args.files;

    // The end-to-end environment first: its folder holds the staging folder, on the drop
    // folder's filesystem. Production intake settings (config/kaigo-relay.example.toml).
    let mut env = Env::with_options(EnvOptions {
        settle_interval_ms: 500,
        rescan_interval_secs: 10,
        incomplete_grace_secs: 120,
        reception_delay_ms: 1000,
        health_refresh_secs: 3600,
        ..EnvOptions::default()
    });
    let staging = env.dir.path().join("staging");
    std::fs::create_dir_all(&staging).expect("staging folder");
    let t = Instant::now();
    let files = make_files(&env, n, args.members);
    for f in &files {
        std::fs::write(staging.join(&f.name), &f.bytes).expect("stage");
    }
    let _ = Command::new("sync").status(); // staged bytes on disk before any clock starts
    let total_bytes: usize = files.iter().map(|f| f.bytes.len()).sum();
    let mean_kb = total_bytes as f64 / n as f64 / 1024.0;
    eprintln!(
        "staged {n} files ({} insured each, {mean_kb:.1} KiB mean) in {:.1} s",
        args.members,
        t.elapsed().as_secs_f64()
    );
    let filesystem = filesystem_of(&env.drop_dir);
    let default_concurrency = Settings::load(&env.daemon_config)
        .expect("daemon config")
        .relay
        .max_concurrent_sends;

    let files = Arc::new(files);
    let mut direct = Vec::new();
    if args.direct {
        let mut levels = vec![1, default_concurrency, args.high];
        levels.sort_unstable();
        levels.dedup();
        for c in levels {
            let r = direct_limit(&files, c);
            eprintln!(
                "direct, concurrency {c}: {:.1} files/s ({:.2} s)",
                r.rate, r.secs
            );
            direct.push(r);
        }
    }
    let e2e = args
        .e2e
        .then(|| end_to_end(&mut env, &files, &staging, &args));

    // ---------------------------------------------------------------- the report
    println!();
    println!(
        "relay_throughput: {n} claim files, {} insured each, {mean_kb:.1} KiB mean; daemon max_concurrent_sends = {default_concurrency}; {} CPUs",
        args.members,
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!("drop folder, staging folder and store on: {filesystem}");
    if !direct.is_empty() {
        println!();
        println!(
            "Direct limit (fresh federation-sim per row; the daemon's TLS client, keep-alive, 202 for every file)"
        );
        println!(
            "  {:<22} {:>10} {:>9} {:>16} {:>16}   protocol",
            "concurrency", "files/s", "wall s", "client CPU ms/f", "sim CPU ms/f"
        );
        for d in &direct {
            let label = if d.concurrency == default_concurrency {
                format!("{} (daemon default)", d.concurrency)
            } else {
                d.concurrency.to_string()
            };
            println!(
                "  {label:<22} {:>10.1} {:>9.2} {:>16.3} {:>16.3}   {:?}",
                d.rate,
                d.secs,
                d.client_cpu * 1000.0 / n as f64,
                d.sim_cpu * 1000.0 / n as f64,
                d.version
            );
        }
    }
    let at_default = direct
        .iter()
        .find(|d| d.concurrency == default_concurrency)
        .map(|d| d.rate);
    let best = direct
        .iter()
        .max_by(|a, b| a.rate.total_cmp(&b.rate))
        .map(|d| (d.rate, d.concurrency));
    if let Some(e) = &e2e {
        println!();
        println!("End to end (rename into the drop folder -> receipt stored by the daemon)");
        println!(
            "  throughput                         {:.1} files/s  (N / (last receipt - first rename) = {n} / {:.2} s); renames took {:.0} ms",
            e.rate,
            e.span_secs,
            e.rename_secs * 1000.0
        );
        if let Some(rate) = args.rate {
            println!(
                "  (files paced at {rate} files/s: throughput follows the arrival rate; the ratio to the direct limit below is not a capacity figure)"
            );
        }
        println!(
            "  {:<34} {:>9} {:>9} {:>9} {:>9}",
            "latency, ms", "p50", "p90", "p99", "max"
        );
        println!(
            "{}",
            row("rename -> taken_at (pre-commit)", e.to_taken.clone())
        );
        println!("{}", row("rename -> durable commit", e.to_commit.clone()));
        println!("{}", row("rename -> receipt stored", e.to_receipt.clone()));
        println!("  of which");
        println!(
            "{}",
            row("  taken_at -> commit returned", e.taken_to_commit.clone())
        );
        println!(
            "{}",
            row("  commit -> receipt stored", e.commit_to_receipt.clone())
        );
        println!(
            "{}",
            row("  intake: gap between commits", e.commit_gaps.clone())
        );
        println!("{}", row("  relay: send duration (log)", e.send_ms.clone()));
        if e.intake_rate > 0.0 {
            println!(
                "  intake alone                       {:.1} files/s committed (N / (last commit - first rename))",
                e.intake_rate
            );
        }
        println!("  (durable commit time from: {})", e.commit_source);
        println!(
            "  daemon memory                      peak VmHWM {:.1} MiB; max sampled VmRSS {:.1} MiB ({} samples at 200 ms); idle before the burst {:.1} MiB",
            mib(e.hwm_kib),
            mib(e.max_rss_kib),
            e.rss_samples,
            mib(e.idle_rss_kib)
        );
        println!(
            "  CPU during the run                 daemon {:.2} s ({:.3} ms/file), federation-sim {:.2} s ({:.3} ms/file), over {:.2} s of wall time",
            e.daemon_cpu,
            e.daemon_cpu * 1000.0 / n as f64,
            e.sim_cpu,
            e.sim_cpu * 1000.0 / n as f64,
            e.span_secs
        );
        let threads: Vec<String> = e
            .threads
            .iter()
            .take(6)
            .map(|(name, s)| format!("{name} {s:.2} s"))
            .collect();
        println!(
            "  daemon CPU by thread               {}",
            threads.join(", ")
        );
        let io: Vec<String> =
            e.io.iter()
                .map(|(k, v)| format!("{k} {:.1}/file", *v as f64 / n as f64))
                .collect();
        println!("  daemon I/O                         {}", io.join(", "));
        println!(
            "  daemon log                         {} lines, {:.1} KiB during the run ({:.2} lines/file); {} event-queue overflow rescans",
            e.log_lines,
            e.log_bytes as f64 / 1024.0,
            e.log_lines as f64 / n as f64,
            e.overflow_rescans
        );
        println!(
            "  sends                              {} attempts for {n} files",
            e.attempts
        );
        println!(
            "  logs of this run                   {}",
            e.logs_dir.display()
        );

        println!();
        println!("Targets (printed, not asserted)");
        match at_default {
            Some(d) => {
                let ratio = e.rate / d;
                println!(
                    "  end to end >= 0.8 x direct @ {default_concurrency}       {:.1} / {:.1} = {:.2}   {}",
                    e.rate,
                    d,
                    ratio,
                    verdict(ratio >= 0.8)
                );
            }
            None => println!("  end to end >= 0.8 x direct          (direct not measured)"),
        }
        if let Some((b, c)) = best {
            let ratio = e.rate / b;
            println!(
                "  end to end vs best direct          {:.1} / {:.1} (@ {c}) = {:.2}   {}",
                e.rate,
                b,
                ratio,
                verdict(ratio >= 0.8)
            );
        }
        if e.to_commit.is_empty() {
            println!(
                "  p99 rename -> commit < 50 ms        n/a (no commit times in the daemon log)"
            );
        } else {
            let mut v = e.to_commit.clone();
            v.sort_by(f64::total_cmp);
            let p99 = pct(&v, 0.99);
            println!(
                "  p99 rename -> commit < 50 ms        {p99:.1} ms   {}",
                verdict(p99 < 50.0)
            );
        }
        println!(
            "  peak RSS < 64 MiB                   {:.1} MiB   {}",
            mib(e.hwm_kib),
            verdict(mib(e.hwm_kib) < 64.0)
        );
    }
    let mut cmd = format!("cargo bench -p tests --bench relay_throughput -- --files {n}");
    if args.members != 8 {
        cmd.push_str(&format!(" --members {}", args.members));
    }
    if args.high != 16 {
        cmd.push_str(&format!(" --high {}", args.high));
    }
    if args.status_poll_secs != 300 {
        cmd.push_str(&format!(" --status-poll-secs {}", args.status_poll_secs));
    }
    if let Some(spec) = &args.rust_log {
        cmd.push_str(&format!(" --rust-log '{spec}'"));
    }
    if !args.direct {
        cmd.push_str(" --no-direct");
    }
    if !args.e2e {
        cmd.push_str(" --no-e2e");
    }
    if let Some(rate) = args.rate {
        cmd.push_str(&format!(" --rate {rate}"));
    }
    println!();
    println!("Reproduce: {cmd}");
}
