//! The admin UI under load with a large store: the real daemon (release build) over a store
//! pre-filled with 1 000 000 notices across 200 offices (ten years of monthly notices, through
//! the store API the mirror uses: `kaigo_relay::bench_support`), hammered by `wrk` over HTTPS
//! on loopback with a signed-in session.
//!
//! `cargo bench -p tests --bench ui_load [-- --notices N] [--offices K] [--connections C]
//! [--threads T] [--duration S] [--single S] [--paced-rate R] [--timeout S] [--max-rss-mib M]
//! [--wrk PATH]` (defaults: 1 000 000 notices, 200 offices, 200 connections, 2 threads, 15 s,
//! 5 s with one connection first, paced at 1000 req/s, wrk timeout 30 s, wrk stopped if the
//! daemon passes 8192 MiB RSS).
//!
//! Needs `wrk` on the PATH (Debian: `apt-get install wrk`); benches are not run in CI.
//!
//! Two of the offices are the harness's configured ones (`CARE_OFFICE`, `PLAN_OFFICE`), so a
//! corporation account over both sees ~5000 notices each; the other offices' notices are in the
//! store (and its indexes and return items) but not visible to the account.
//!
//! For each page (the dashboard `GET /`, the notice list of one office, and the same list for
//! one month when the page takes `?month=`) it runs wrk first with one connection (the page's
//! service time; also the warm-up), then with the full load twice: paced (each connection
//! waits a random 0–2× its share between its requests so that all together ask about `R` pages a
//! second, out of step, as browsers do: a wrk script's `delay()`; the latency is each request's own, the wait not counted) and closed
//! loop (every connection always busy: the throughput limit). It reports requests/s, latency
//! p50/p75/p90/p99/max from wrk, the daemon's CPU and peak RSS (VmHWM, reset before each run
//! when the kernel allows, and sampled) and the machine's CPU (wrk shares the cores). Before each
//! run it waits for the daemon to be idle again (answers to connections wrk abandoned), and says
//! how long that took. It checks that the answers were the signed-in 200 page: wrk's
//! non-2xx/3xx and socket error counts (timeouts included) must be zero and the bytes per answer
//! must match a 200 probed with the same request (a 303 to /login would not be counted by wrk).
//! A run with errors is reported as INVALID, never as a figure.
//!
//! Target (issue 7): dashboard p99 under 20 ms at 200 concurrent connections on 2 cores.
//! Figures are printed, never asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a failed step stops the run

use std::process::Command;
use std::time::{Duration, Instant};

use kaigo_relay::bench_support::{NoticeFill, office_number};
use kaigo_relay::claim::Month;
use kaigo_relay::config::Settings;
use kaigo_relay::store::Store;
use tests::measure::{arg, arg_str, clock_ticks, machine_ticks, mib, proc_ticks, status_kib};
use tests::{CARE_OFFICE, Env, PLAN_OFFICE};

const SESSION_COOKIE: &str = "__Host-kaigo_session";
const TARGET_P99_MS: f64 = 20.0;
const TARGET_CONNECTIONS: u64 = 200;

// ---- wrk's output ------------------------------------------------------------------------

/// What one wrk run reported.
#[derive(Debug, Default)]
struct WrkRun {
    requests: u64,
    secs: f64,
    read_bytes: f64,
    rps: f64,
    /// p50, p75, p90, p99 in ms.
    pct: [f64; 4],
    max_ms: f64,
    /// connect, read, write, timeout.
    socket_errors: [u64; 4],
    non_2xx_3xx: u64,
}

/// `123.45us`, `1.23ms`, `2.00s`, `1.00m`, `1.00h` → ms.
fn wrk_ms(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (v, unit) = s.split_at(split);
    let v: f64 = v.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        "h" => v * 3_600_000.0,
        _ => return None,
    })
}

/// `123.00B`, `12.34KB`, `1.00MB`, `1.00GB`, `1.00TB` → bytes.
fn wrk_bytes(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (v, unit) = s.split_at(split);
    let v: f64 = v.parse().ok()?;
    let k = 1024.0;
    Some(match unit {
        "B" => v,
        "KB" => v * k,
        "MB" => v * k * k,
        "GB" => v * k * k * k,
        "TB" => v * k * k * k * k,
        _ => return None,
    })
}

fn parse_wrk(out: &str) -> Option<WrkRun> {
    let mut r = WrkRun::default();
    let mut seen = [false; 4];
    let mut in_dist = false;
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Latency", _avg, _stdev, max, ..] => r.max_ms = wrk_ms(max)?,
            ["Latency", "Distribution"] => in_dist = true,
            [p, v] if in_dist && p.ends_with('%') => {
                let i = ["50%", "75%", "90%", "99%"].iter().position(|x| x == p)?;
                r.pct[i] = wrk_ms(v)?;
                seen[i] = true;
            }
            [n, "requests", "in", secs, read, "read"] => {
                in_dist = false;
                r.requests = n.parse().ok()?;
                r.secs = wrk_ms(secs.trim_end_matches(','))? / 1000.0;
                r.read_bytes = wrk_bytes(read)?;
            }
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                let nums: Vec<u64> = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse().ok())
                    .collect();
                for (i, n) in nums.into_iter().take(4).enumerate() {
                    r.socket_errors[i] = n;
                }
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx_3xx = n.parse().ok()?,
            ["Requests/sec:", v] => r.rps = v.parse().ok()?,
            _ => {}
        }
    }
    (seen.iter().all(|s| *s) && r.requests > 0).then_some(r)
}

// ---- the daemon's process and the machine -----------------------------------------------

/// Resets the process's VmHWM to its current RSS (`clear_refs` 5); false when not allowed.
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// `text` without ANSI colour sequences (the daemon colours its log).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The daemon log's ERROR and WARN lines, without their timestamps, most frequent first.
fn log_problems(log: &str) -> (usize, Vec<(usize, String)>) {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut n = 0;
    let log = strip_ansi(log);
    for line in log.lines() {
        let Some(at) = line.find(" ERROR ").or_else(|| line.find(" WARN ")) else {
            continue;
        };
        n += 1;
        let mut msg: String = line[at + 1..].chars().take(200).collect();
        // One line per kind of message, not per request.
        if let Some(i) = msg.find("request_id") {
            msg.truncate(i);
        }
        *counts.entry(msg).or_default() += 1;
    }
    let mut top: Vec<(usize, String)> = counts.into_iter().map(|(m, c)| (c, m)).collect();
    top.sort_by_key(|t| std::cmp::Reverse(t.0));
    top.truncate(5);
    (n, top)
}

// ---- the pages ---------------------------------------------------------------------------

/// One answer probed as wrk asks: HTTP/1.1 over TLS (no ALPN), `Host` and the session cookie
/// only.
#[derive(Debug)]
struct Probe {
    status: u16,
    bytes: usize,
    rows: usize,
    location: Option<String>,
    /// The page's `<title>`, to say what an error page was.
    title: String,
}

fn probe(url: &str, ca: &std::path::Path, cookie: &str, path: &str) -> Probe {
    use rustls::pki_types::ServerName;
    use std::io::{Read as _, Write as _};
    let addr = url.trim_start_matches("https://").trim_end_matches('/');
    let tls = tests::browser::client_tls(ca);
    let name = ServerName::try_from("127.0.0.1").expect("IP name");
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(tls), name).expect("TLS");
    let tcp = match std::net::TcpStream::connect(addr) {
        Ok(t) => t,
        Err(e) => {
            return Probe {
                status: 0,
                bytes: 0,
                rows: 0,
                location: None,
                title: format!("cannot connect: {e}"),
            };
        }
    };
    let mut s = rustls::StreamOwned::new(conn, tcp);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {SESSION_COOKIE}={cookie}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    // The server may close without close_notify after Connection: close.
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let location = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_owned())
    });
    let title = body
        .split_once("<title>")
        .and_then(|(_, t)| t.split_once("</title>"))
        .map_or(String::new(), |(t, _)| t.trim().to_owned());
    Probe {
        status,
        bytes: body.len(),
        // One download link per notice row.
        rows: body.matches("/original\"").count(),
        location,
        title,
    }
}

/// A page to load.
struct Target {
    label: String,
    path: String,
    dashboard: bool,
}

/// What every run shares.
struct Load {
    wrk: String,
    /// `https://host:port`, no trailing slash.
    base: String,
    ca: std::path::PathBuf,
    cookie: String,
    timeout: u64,
    pid: u32,
    tck: f64,
    /// The daemon is killed when its RSS passes this (the machine is shared).
    max_rss_kib: u64,
    /// RLIMIT_AS of the daemon.
    max_vm_bytes: u64,
}

/// One wrk run against one page.
struct Measured {
    connections: u64,
    secs: u64,
    /// Requests per second over all connections when paced (each connection waits between
    /// its requests, as browsers do); `None`: closed loop (every connection always busy).
    paced: Option<u64>,
    run: Option<WrkRun>,
    raw: String,
    before: Probe,
    after: Probe,
    daemon_cpu_pct: f64,
    machine_busy_pct: f64,
    peak_rss_kib: Option<u64>,
    peak_since_start: bool,
    rss_after_kib: Option<u64>,
    /// Why wrk was stopped early.
    aborted: Option<String>,
    /// How long the daemon stayed busy after wrk stopped (answers nobody waits for any more).
    drain: Duration,
    /// How the daemon ended, when it did not survive the run.
    died: Option<String>,
    /// Its last log lines then.
    died_log: Vec<String>,
}

impl Measured {
    /// Why the run's figures cannot be trusted, if they cannot.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(how) = &self.died {
            out.push(format!("THE DAEMON DIED ({how})"));
        }
        if let Some(why) = &self.aborted {
            out.push(format!("stopped early: {why}"));
        }
        for (when, p) in [("before", &self.before), ("after", &self.after)] {
            if p.status != 200 {
                out.push(format!(
                    "probe {when} the run answered {} {:?}{}",
                    p.status,
                    p.title,
                    p.location
                        .as_deref()
                        .map(|l| format!(" -> {l}"))
                        .unwrap_or_default()
                ));
            }
        }
        let Some(r) = &self.run else {
            out.push("wrk's output could not be read (or no request completed)".into());
            return out;
        };
        if r.non_2xx_3xx > 0 {
            out.push(format!("{} non-2xx/3xx answers", r.non_2xx_3xx));
        }
        let [c, rd, w, t] = r.socket_errors;
        if c + rd + w + t > 0 {
            out.push(format!(
                "socket errors: connect {c}, read {rd}, write {w}, timeout {t}"
            ));
        }
        // A redirect (to /login or the password form) is a 3xx wrk counts as fine: the bytes per
        // answer give it away (the body of the 200 page is many kilobytes, a 303 has none).
        let per = r.read_bytes / r.requests as f64;
        if self.before.status == 200 && per < 0.9 * self.before.bytes as f64 {
            out.push(format!(
                "{per:.0} bytes per answer, the 200 page has {} bytes of body: not every answer was the page",
                self.before.bytes
            ));
        }
        out
    }

    fn print(&self, cpus: usize) {
        let problems = self.problems();
        println!(
            "  {} connection{}, {} s{}:",
            self.connections,
            if self.connections == 1 { "" } else { "s" },
            self.secs,
            match self.paced {
                Some(rate) => format!(
                    ", paced at {rate} req/s in all (each connection one request every {:.0} ms)",
                    self.connections as f64 * 1000.0 / rate as f64
                ),
                None => ", closed loop".into(),
            }
        );
        if !problems.is_empty() {
            println!("    INVALID RUN: {}", problems.join("; "));
        }
        for l in &self.died_log {
            println!("    daemon log: {l}");
        }
        match &self.run {
            Some(r) => {
                let [p50, p75, p90, p99] = r.pct;
                println!(
                    "    {}{:.1} req/s ({} answers in {:.1} s), {:.1} KiB per answer (200 page body: {:.1} KiB, {} notice rows)",
                    if problems.is_empty() {
                        ""
                    } else {
                        "[invalid] "
                    },
                    r.rps,
                    r.requests,
                    r.secs,
                    r.read_bytes / r.requests as f64 / 1024.0,
                    self.before.bytes as f64 / 1024.0,
                    self.before.rows
                );
                println!(
                    "    latency: p50 {p50:.2} ms, p75 {p75:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
                    r.max_ms
                );
                let [c, rd, w, t] = r.socket_errors;
                println!(
                    "    errors: non-2xx/3xx {}, socket connect {c} read {rd} write {w} timeout {t}",
                    r.non_2xx_3xx
                );
            }
            None => println!("    wrk said:\n{}", self.raw),
        }
        println!(
            "    daemon: {:.0}% CPU (of {}%), peak RSS {:.1} MiB{}, RSS after {:.1} MiB; machine busy {:.0}% (daemon + wrk + others); daemon busy {:.1} s after wrk stopped",
            self.daemon_cpu_pct,
            cpus * 100,
            mib(self.peak_rss_kib.unwrap_or(0)),
            if self.peak_since_start {
                " (since start: VmHWM could not be reset)"
            } else {
                " during the run"
            },
            mib(self.rss_after_kib.unwrap_or(0)),
            self.machine_busy_pct,
            self.drain.as_secs_f64()
        );
    }
}

/// SIGINT: wrk stops and prints what it measured so far; SIGKILL if it does not within 5 s.
fn stop_wrk(child: &mut std::process::Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
    }
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
}

impl Load {
    /// Waits (up to 3 minutes) until the daemon uses under 5% of a CPU over half a second.
    /// Stops the daemon when it passes [`Load::max_rss_kib`] (the machine is shared): a
    /// backstop behind the address-space limit [`Load::guard`] sets. Returns why it did.
    fn over_memory(&self) -> Option<String> {
        let rss = status_kib(self.pid, "VmRSS:").unwrap_or(0);
        if rss <= self.max_rss_kib {
            return None;
        }
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        Some(format!(
            "the daemon's RSS reached {:.0} MiB (--max-rss-mib {:.0}): the bench killed it",
            mib(rss),
            mib(self.max_rss_kib)
        ))
    }

    /// Caps the daemon's address space at `--max-vm-mib` (an allocation beyond it fails and
    /// the daemon aborts, instead of the machine's OOM killer choosing among everyone's
    /// processes), and makes it the OOM killer's first choice anyway.
    fn guard(&self) -> String {
        let mut out = Vec::new();
        let limit = rustix::process::Rlimit {
            current: Some(self.max_vm_bytes),
            maximum: Some(self.max_vm_bytes),
        };
        match rustix::process::Pid::from_raw(self.pid as i32)
            .map(|pid| rustix::process::prlimit(Some(pid), rustix::process::Resource::As, limit))
        {
            Some(Ok(_)) => out.push(format!(
                "address space capped at {:.0} MiB",
                self.max_vm_bytes as f64 / 1048576.0
            )),
            Some(Err(e)) => out.push(format!("address space NOT capped ({e})")),
            None => out.push("address space NOT capped (no pid)".into()),
        }
        if std::fs::write(format!("/proc/{}/oom_score_adj", self.pid), "1000").is_ok() {
            out.push("oom_score_adj 1000".into());
        }
        out.join(", ")
    }

    /// Waits (up to 3 minutes) until the daemon uses under 5% of a CPU over half a second
    /// (answers to connections wrk abandoned), watching its memory meanwhile.
    fn drain(&self) -> (Duration, Option<String>) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(180) {
            let t0 = proc_ticks(self.pid);
            for _ in 0..10 {
                std::thread::sleep(Duration::from_millis(50));
                if let Some(why) = self.over_memory() {
                    return (started.elapsed(), Some(why));
                }
            }
            if ((proc_ticks(self.pid).saturating_sub(t0)) as f64 / self.tck) < 0.025 {
                break;
            }
        }
        (started.elapsed(), None)
    }

    /// One wrk run, with the daemon's CPU and memory around it.
    fn measure(
        &self,
        path: &str,
        threads: u64,
        connections: u64,
        secs: u64,
        paced: Option<u64>,
    ) -> Measured {
        let _ = self.drain(); // nothing in flight from the last run
        // Pacing: wrk calls the script's delay() before each request of a connection.
        let script = paced.map(|rate| {
            let gap_ms = (connections as f64 * 1000.0 / rate.max(1) as f64).round() as u64;
            let path = std::env::temp_dir().join(format!("ui_load_paced_{gap_ms}.lua"));
            // A wait drawn uniformly from 0..2×gap: the mean gap, and connections that do not
            // all ask at the same instant (browsers are not synchronised; a fixed wait keeps
            // all 200 in step and measures one 200-request burst after another).
            std::fs::write(
                &path,
                format!(
                    "math.randomseed(os.time() + math.floor(os.clock() * 1000000))\n\
                     function delay()\n  return math.random(0, {})\nend\n",
                    gap_ms * 2
                ),
            )
            .expect("write the wrk script");
            path
        });
        let before = probe(&self.base, &self.ca, &self.cookie, path);
        let reset = reset_peak_rss(self.pid);
        let (p0, (m_busy0, m_total0)) = (proc_ticks(self.pid), machine_ticks());
        let started = Instant::now();
        let mut child = Command::new(&self.wrk)
            .args([
                "-t",
                &threads.min(connections).to_string(),
                "-c",
                &connections.to_string(),
                "-d",
                &format!("{secs}s"),
                "--timeout",
                &format!("{}s", self.timeout),
                "--latency",
                "-H",
                &format!("Cookie: {SESSION_COOKIE}={}", self.cookie),
                &format!("{}{path}", self.base),
            ])
            .args(
                script
                    .iter()
                    .flat_map(|p| ["-s".to_owned(), p.display().to_string()]),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (install it: apt-get install wrk)",
                    self.wrk
                )
            });
        let mut aborted = None;
        let mut sampled_peak = 0u64;
        loop {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            sampled_peak = sampled_peak.max(status_kib(self.pid, "VmRSS:").unwrap_or(0));
            if let Some(why) = self.over_memory() {
                aborted = Some(format!(
                    "{why} after {:.1} s",
                    started.elapsed().as_secs_f64()
                ));
                stop_wrk(&mut child);
                break;
            }
            if started.elapsed() > Duration::from_secs(secs + self.timeout + 30) {
                aborted = Some("wrk did not finish".into());
                stop_wrk(&mut child);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("wrk's output");
        let (p1, (m_busy1, m_total1)) = (proc_ticks(self.pid), machine_ticks());
        let wall = started.elapsed().as_secs_f64().max(0.001);
        let peak = Some(
            status_kib(self.pid, "VmHWM:")
                .unwrap_or(0)
                .max(sampled_peak),
        );
        let rss_after = status_kib(self.pid, "VmRSS:");
        let (drain, killed) = self.drain();
        if aborted.is_none() {
            aborted = killed.map(|why| format!("{why} while it finished the abandoned requests"));
        }
        let after = probe(&self.base, &self.ca, &self.cookie, path);
        let mut raw = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            raw.push_str(&format!(
                "\n[wrk exited with {}] {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Measured {
            connections,
            secs,
            paced,
            run: parse_wrk(&raw),
            raw,
            before,
            after,
            daemon_cpu_pct: (p1 - p0) as f64 / self.tck / wall * 100.0,
            machine_busy_pct: (m_busy1 - m_busy0) as f64 / (m_total1 - m_total0).max(1) as f64
                * 100.0,
            peak_rss_kib: peak,
            peak_since_start: !reset,
            rss_after_kib: rss_after,
            aborted,
            drain,
            died: None,
            died_log: Vec::new(),
        }
    }
}

fn main() {
    let total = arg("--notices", 1_000_000);
    let offices = arg("--offices", 200).max(2) as usize;
    let connections = arg("--connections", TARGET_CONNECTIONS);
    let threads = arg("--threads", 2);
    let secs = arg("--duration", 15);
    let single = arg("--single", 5);
    // 200 browsers each asking for a page every 200 ms; 0: closed loop only.
    let paced_rate = arg("--paced-rate", 1000);
    let timeout = arg("--timeout", 30);
    let max_rss_mib = arg("--max-rss-mib", 6144);
    let max_vm_mib = arg("--max-vm-mib", 8192);
    let wrk = arg_str("--wrk").unwrap_or_else(|| "wrk".into());
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);

    if let Err(e) = Command::new(&wrk).arg("-v").output() {
        panic!(
            "cannot run {wrk}: {e}; install it (Debian: apt-get install wrk) or pass --wrk PATH"
        );
    }

    // 1. The environment, and the store filled before the daemon first opens it.
    let mut env = Env::new();
    let store_path = Settings::load(&env.daemon_config)
        .expect("the harness's daemon config")
        .store_path();
    std::fs::create_dir_all(env.state_dir()).expect("state dir");
    let mut numbers: Vec<String> = vec![CARE_OFFICE.into(), PLAN_OFFICE.into()];
    numbers.extend((2..offices).map(office_number));
    let first: Month = "201601".parse().expect("month");
    let plan = NoticeFill {
        total,
        offices: numbers,
        first_month: first,
    };
    eprintln!(
        "filling {} with {total} notices over {offices} offices ({} months)…",
        store_path.display(),
        plan.months()
    );
    let (filled, care_notices, care_month_notices, month) = {
        let store = Store::open(&store_path).expect("open the store");
        let filled = plan
            .fill(&store, |n, elapsed| {
                eprintln!("  {n} notices, {:.0}/s", n as f64 / elapsed.as_secs_f64());
            })
            .expect("fill the store");
        let month = filled.last_full_month.unwrap_or(first);
        let care = store.notices_of(CARE_OFFICE, None).expect("list").len();
        let care_month = store
            .notices_of(CARE_OFFICE, Some(month))
            .expect("list")
            .len();
        (filled, care, care_month, month)
    };
    let store_mib = std::fs::metadata(&store_path).map_or(0.0, |m| m.len() as f64 / 1048576.0);

    // 2. The daemon, and a corporation account over both configured offices.
    let started = Instant::now();
    env.start_daemon();
    let url = env.admin_url();
    let ready = started.elapsed();
    let pid = env.daemon().id();
    let rss_idle = status_kib(pid, "VmRSS:");
    let id = "bench-corp";
    let password = "ume-no-hana-pass-2026";
    let one_time = env.add_user(&[
        "--id",
        id,
        "--role",
        "corporation",
        "--corporation-name",
        "社会福祉法人ベンチ会",
        "--corporation-office",
        CARE_OFFICE,
        "--corporation-office",
        PLAN_OFFICE,
    ]);
    let mut b = env.browser();
    b.first_login(id, &one_time, password);
    let mut load = Load {
        wrk,
        base: url.trim_end_matches('/').to_owned(),
        ca: env.state_dir().join("admin-tls").join("ca.pem"),
        cookie: b
            .cookie(SESSION_COOKIE)
            .expect("a session cookie after the password change")
            .to_owned(),
        timeout,
        pid,
        tck: clock_ticks(),
        max_rss_kib: max_rss_mib * 1024,
        max_vm_bytes: max_vm_mib * 1024 * 1024,
    };
    let guarded = load.guard();

    // 3. The pages: each first with one connection (its service time, and a warm-up), then
    //    with the full load.
    let list = format!("/notices?office={CARE_OFFICE}");
    let list_month = format!("{list}&month={month}");
    let mut targets = vec![
        Target {
            label: "GET / (dashboard)".into(),
            path: "/".into(),
            dashboard: true,
        },
        Target {
            label: format!("GET {list} (notice list)"),
            path: list.clone(),
            dashboard: false,
        },
    ];
    let all = probe(&load.base, &load.ca, &load.cookie, &list);
    let one = probe(&load.base, &load.ca, &load.cookie, &list_month);
    let month_filter = one.status == 200 && one.rows != all.rows;
    if month_filter {
        targets.push(Target {
            label: format!("GET {list_month} (one month)"),
            path: list_month.clone(),
            dashboard: false,
        });
    }

    let mut results = Vec::new();
    let mut restarts: Vec<String> = Vec::new();
    for t in &targets {
        let mut runs = Vec::new();
        if single > 0 {
            eprintln!("wrk {} with 1 connection, {single} s…", t.path);
            runs.push(load.measure(&t.path, 1, 1, single, None));
        }
        if paced_rate > 0 {
            eprintln!(
                "wrk {} with {connections} connections paced at {paced_rate} req/s, {secs} s…",
                t.path
            );
            runs.push(load.measure(&t.path, threads, connections, secs, Some(paced_rate)));
        }
        eprintln!("wrk {} with {connections} connections, {secs} s…", t.path);
        runs.push(load.measure(&t.path, threads, connections, secs, None));
        if let Some(m) = runs.last_mut()
            && let Some(status) = env.daemon().wait_exit(Duration::from_millis(200))
        {
            // Dead: say how, and start it again on the same store for the next page.
            let log = strip_ansi(&env.daemon().log_text());
            let lines: Vec<&str> = log.lines().collect();
            m.died_log = lines[lines.len().saturating_sub(3)..]
                .iter()
                .map(|l| l.chars().take(240).collect())
                .collect();
            m.died = Some(status.to_string());
            restarts.push(format!(
                "after {} with {connections} connections: {status}",
                t.label
            ));
            eprintln!("the daemon died ({status}); restarting it");
            env.start_daemon();
            // The store is checked after a crash before the UI listens: give it time.
            let started = Instant::now();
            let file = env.state_dir().join(kaigo_relay::app::ADMIN_URL_FILE);
            while !file.exists() && started.elapsed() < Duration::from_secs(600) {
                std::thread::sleep(Duration::from_millis(200));
            }
            let url = env.admin_url();
            eprintln!("  up again after {:.1} s", started.elapsed().as_secs_f64());
            load.base = url.trim_end_matches('/').to_owned();
            load.pid = env.daemon().id();
            let _ = load.guard();
            let mut b = env.browser();
            assert_eq!(b.login(id, password).status, 303, "log in again");
            load.cookie = b.cookie(SESSION_COOKIE).expect("session").to_owned();
        }
        results.push((t, runs));
    }
    let peak_overall = status_kib(load.pid, "VmHWM:");
    env.daemon().terminate();
    // Every daemon's log (one per start).
    let mut logs = String::new();
    for n in 1..=(1 + restarts.len()) {
        let path = env.dir.path().join(format!("daemon-{n}.log"));
        logs.push_str(&std::fs::read_to_string(path).unwrap_or_default());
    }
    let (log_lines, log_top) = log_problems(&logs);

    // 4. The report.
    println!(
        "\nui_load: the admin UI under load, kaigo-relay (release) on {cpus} CPUs, wrk on the same machine"
    );
    println!(
        "  store: {} notices over {offices} offices, {} months from {first} ({} pages, one commit each), {store_mib:.1} MiB",
        filled.notices, filled.months, filled.pages
    );
    println!(
        "  fill: {:.1} s ({:.0} notices/s), before the daemon started; daemon ready {:.1} s after start, idle RSS {:.1} MiB",
        filled.elapsed.as_secs_f64(),
        filled.notices as f64 / filled.elapsed.as_secs_f64(),
        ready.as_secs_f64(),
        mib(rss_idle.unwrap_or(0))
    );
    println!(
        "  account: {id} (corporation over {CARE_OFFICE} and {PLAN_OFFICE}); {CARE_OFFICE} has {care_notices} notices, {care_month_notices} of them in {month}"
    );
    println!(
        "  wrk: {threads} threads, {connections} connections for {secs} s per page, after {single} s with 1 connection; timeout {timeout} s; HTTP/1.1 keep-alive over TLS"
    );
    println!(
        "  daemon guard: {guarded}; killed above {max_rss_mib} MiB RSS (the machine is shared)"
    );
    println!(
        "  notice list rows on the page: {} for all months{}",
        all.rows,
        if month_filter {
            format!(", {} for {month}", one.rows)
        } else {
            format!(
                "; ?month= is not taken by the page (it showed {} rows, status {}): not measured",
                one.rows, one.status
            )
        }
    );
    for (t, runs) in &results {
        println!("\n{}", t.label);
        for m in runs {
            m.print(cpus);
        }
    }
    println!(
        "\n  daemon peak RSS over the whole bench: {:.1} MiB{}",
        mib(peak_overall.unwrap_or(0)),
        if restarts.is_empty() {
            String::new()
        } else {
            " (of the last daemon)".into()
        }
    );
    for r in &restarts {
        println!("  DAEMON DIED and was restarted on the same store {r}");
    }
    println!("  daemon log: {log_lines} ERROR/WARN lines");
    for (n, msg) in &log_top {
        println!("    {n:>7} x {msg}");
    }

    println!("\nTarget (issue 7)");
    let what = format!(
        "  dashboard p99 < {TARGET_P99_MS:.0} ms at {TARGET_CONNECTIONS} connections on 2 cores:"
    );
    let loaded = results
        .iter()
        .filter(|(t, _)| t.dashboard)
        .flat_map(|(_, runs)| runs.iter().filter(|m| m.connections > 1));
    for m in loaded {
        let what = format!(
            "{what} {}",
            match m.paced {
                Some(rate) => format!("paced at {rate} req/s:"),
                None => "closed loop:".into(),
            }
        );
        let problems = m.problems();
        match &m.run {
            _ if !problems.is_empty() => println!(
                "{what} NOT met (the run was invalid: {}; p99 of what completed: {})",
                problems[0],
                m.run
                    .as_ref()
                    .map_or("none".into(), |r| format!("{:.2} ms", r.pct[3]))
            ),
            Some(_) if connections != TARGET_CONNECTIONS => {
                println!("{what} not evaluated (this run used {connections} connections)")
            }
            Some(r) if r.pct[3] < TARGET_P99_MS => {
                println!("{what} met (p99 {:.2} ms, {cpus} CPUs)", r.pct[3])
            }
            Some(r) => println!("{what} NOT met (p99 {:.2} ms, {cpus} CPUs)", r.pct[3]),
            None => println!("{what} NOT met (no figures)"),
        }
    }
    println!(
        "  (wrk keeps every connection busy: mean latency = connections / req/s, so p99 < {TARGET_P99_MS:.0} ms at {TARGET_CONNECTIONS} connections needs well over {:.0} req/s)",
        TARGET_CONNECTIONS as f64 / (TARGET_P99_MS / 1000.0)
    );
    if cpus != 2 {
        println!("  note: this machine has {cpus} CPUs, the target is for 2");
    }
    println!("\nReproduce: cargo bench -p tests --bench ui_load");
    println!(
        "       or: cargo bench -p tests --bench ui_load -- --notices {total} --offices {offices} --connections {connections} --threads {threads} --duration {secs} --single {single} --paced-rate {paced_rate}"
    );
}
