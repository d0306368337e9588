//! Crash recovery: the daemon killed with SIGKILL at every state transition (the failpoints of
//! `kaigo_relay::failpoint`, except the mirror's, which `notices_e2e` covers) and at random moments of a 1 000-file burst, restarted each time.
//! Afterwards every file is recorded at the federation exactly once, none is missing, every
//! file is archived in `送信済/` exactly once, and nothing is left in the drop folder or sent to
//! `エラー/` (a file taken twice would show up there as a duplicate).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::collections::{BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use kaigo_relay::failpoint::{ENV_VAR, POINTS};
use kaigo_relay::intake::{ERROR_DIR, RESULT_SUFFIX, SENT_DIR};
use serde_json::{Value, json};
use tests::{Env, EnvOptions, http_json, sha256_hex};

/// A file the test dropped.
#[derive(Debug, Clone)]
struct Dropped {
    name: String,
    sha: String,
}

fn options() -> EnvOptions {
    EnvOptions {
        // 受付 results come quickly, so that every file reaches `accepted` fast.
        reception_delay_ms: 50,
        ..EnvOptions::default()
    }
}

/// A distinct valid claim file: its own insured person and file number.
fn make_file(env: &Env, n: u32) -> (String, Vec<u8>) {
    let insured = format!("{:010}", 800_000 + n);
    let bytes = env.claim(&[insured.as_str()], 10 + n);
    (format!("KC{n:06}.CSV"), bytes)
}

/// Waits until the running daemon's log contains `line`.
fn wait_log(env: &Env, what: &str, line: &str) {
    env.wait_for(what, Duration::from_secs(30), |env| {
        let log = env
            .daemon
            .as_ref()
            .map(|d| d.log_text())
            .unwrap_or_default();
        log.contains(line).then_some(())
    });
}

/// Waits until the running daemon has read the reception window (its intake can check files).
fn wait_window(env: &Env) {
    wait_log(
        env,
        "the daemon to read the reception window",
        "reception window from the gateway",
    );
}

/// Starts the daemon and waits until it holds the store. `status` must not run before: after a
/// crash it recovers the store itself when no daemon has it open, and a daemon starting during
/// that recovery finds the store taken and exits (see the report of issue 4).
fn restart(env: &mut Env) {
    env.start_daemon();
    wait_log(env, "the daemon to open the store", "kaigo-relay running");
}

fn set_faults(env: &Env, plan: &Value) {
    let v = http_json(
        "POST",
        &format!("{}/sim/faults", env.control_url),
        Some(plan),
    );
    assert!(v.get("active").is_some(), "{v}");
}

/// `/sim/received` counted by SHA-256, and the sum of the presentations.
fn received_by_sha(env: &Env) -> (HashMap<String, usize>, usize, u64) {
    let received = env.received();
    let mut per_sha: HashMap<String, usize> = HashMap::new();
    for r in &received {
        *per_sha
            .entry(r["sha256"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let presented = received
        .iter()
        .map(|r| r["presented"].as_u64().unwrap_or(0))
        .sum();
    (per_sha, received.len(), presented)
}

/// Whether every dropped file has exactly one submission, in state `accepted`, and nothing else
/// is in the store; `Err` says what is not there yet.
fn all_accepted(status: &[Value], files: &[Dropped]) -> Result<(), String> {
    let mut by_sha: HashMap<&str, Vec<&Value>> = HashMap::new();
    for s in status {
        by_sha
            .entry(s["sha256"].as_str().unwrap_or(""))
            .or_default()
            .push(s);
    }
    let mut waiting = 0;
    for f in files {
        match by_sha.get(f.sha.as_str()).map(Vec::as_slice) {
            Some([one]) if one["state"] == "accepted" => {}
            Some([_]) | None => waiting += 1,
            Some(many) => return Err(format!("{} has {} records: {many:?}", f.name, many.len())),
        }
    }
    if status.len() > files.len() {
        return Err(format!(
            "{} records for {} files",
            status.len(),
            files.len()
        ));
    }
    if waiting > 0 {
        return Err(format!("{waiting} of {} not accepted yet", files.len()));
    }
    Ok(())
}

/// Waits until every file is accepted. `status` reads the whole store, so it is asked at most
/// every `every` (a 1 000-file store in a debug build is not free to read on two cores).
fn wait_all_accepted(env: &Env, files: &[Dropped], timeout: Duration, every: Duration) {
    let mut last: Option<Instant> = None;
    let mut why = String::new();
    let done = tests::wait_until(timeout, || {
        if last.is_some_and(|t| t.elapsed() < every) {
            return None;
        }
        last = Some(Instant::now());
        match all_accepted(&env.status(), files) {
            Ok(()) => Some(()),
            Err(e) if e.contains("records") => panic!("{e}\n{}", env.logs()),
            Err(e) => {
                why = e;
                None
            }
        }
    });
    if done.is_none() {
        panic!(
            "timed out after {timeout:?} waiting for every file to be accepted: {why}\n{}",
            env.logs()
        );
    }
}

/// The invariants after recovery: one record per file at the federation and nothing else; one
/// submission per file, accepted, archived under its own name in `送信済/` with its result
/// note; nothing left in the drop folder, nothing in `エラー/`.
fn assert_exactly_once(env: &Env, files: &[Dropped]) {
    let (per_sha, total, _) = received_by_sha(env);
    for f in files {
        assert_eq!(
            per_sha.get(&f.sha),
            Some(&1),
            "{} ({}) is recorded once at the federation\n{}",
            f.name,
            f.sha,
            env.logs()
        );
    }
    assert_eq!(
        total,
        files.len(),
        "nothing else was recorded\n{}",
        env.logs()
    );

    let status = env.status();
    all_accepted(&status, files).unwrap_or_else(|e| panic!("{e}\n{}", env.logs()));
    for s in &status {
        let name = s["file_name"].as_str().unwrap();
        assert_eq!(
            s["moved_to"].as_str(),
            Some(format!("{SENT_DIR}/{name}").as_str()),
            "the store knows where {name} went: {s}\n{}",
            env.logs()
        );
    }

    let root = files_in(&env.drop_dir);
    assert!(root.is_empty(), "left in the drop folder: {root:?}");
    let errors = files_in(&env.drop_dir.join(ERROR_DIR));
    assert!(errors.is_empty(), "in {ERROR_DIR}/: {errors:?}");
    let sent = files_in(&env.drop_dir.join(SENT_DIR));
    let archived: BTreeSet<&String> = sent
        .iter()
        // Not the result notes, nor a note's temporary file a crash left behind.
        .filter(|n| !n.ends_with(RESULT_SUFFIX) && !n.starts_with('.'))
        .collect();
    let want: BTreeSet<&String> = files.iter().map(|f| &f.name).collect();
    assert_eq!(
        archived, want,
        "every file archived once under its own name"
    );
    // Every archived file's result note shows its 受付 result: a note left one step behind by a
    // crash between a commit and its rewrite is brought up to date when the daemon starts.
    let behind = |files: &[Dropped]| -> Vec<String> {
        let mut behind = Vec::new();
        for f in files {
            let note = env
                .drop_dir
                .join(SENT_DIR)
                .join(format!("{}{RESULT_SUFFIX}", f.name));
            let text = std::fs::read_to_string(&note).unwrap_or_default();
            if !text.contains("受付結果: ○") {
                let state = text
                    .lines()
                    .find(|l| l.starts_with("State: "))
                    .unwrap_or("(no note)")
                    .to_owned();
                behind.push(format!("{} ({state})", f.name));
            }
        }
        behind
    };
    let settled = tests::wait_until(Duration::from_secs(30), || {
        behind(files).is_empty().then_some(())
    });
    assert!(
        settled.is_some(),
        "result notes not showing the 受付 result after recovery: {:?}",
        behind(files)
    );
}

/// Names of the regular files in `dir` (not folders).
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Points the daemon reaches only after a send whose outcome is unknown: the gateway records
/// every submission and loses the response, so the relay fails the try and then reconciles.
fn needs_gateway_faults(point: &str) -> bool {
    matches!(
        point,
        "relay.before_reconcile" | "relay.after_failed_try_commit"
    )
}

#[test]
fn every_failpoint() {
    const FILES_PER_ROUND: u32 = 5;
    // The 2nd hit: one file has already passed the point when the daemon dies at it.
    const HIT: u32 = 2;
    let started = Instant::now();
    let mut env = Env::with_options(options());
    let mut files: Vec<Dropped> = Vec::new();
    let mut next = 0u32;
    // The mirror's points are hit by notices, not by files: `notices_e2e` kills the daemon at
    // each of them during a mirror run. The backup's are hit by a backup run: `backup_e2e`
    // kills `kaigo-relay backup run` at each of them.
    let points: Vec<&str> = POINTS
        .iter()
        .copied()
        .filter(|p| !p.starts_with("mirror.") && !p.starts_with("backup."))
        .collect();
    assert_eq!(points.len(), POINTS.len() - 4);
    for point in points.iter().copied() {
        let round = Instant::now();
        let spec = format!("{point}={HIT}");
        env.start_daemon_with_env(&[(ENV_VAR, spec.as_str())]);
        wait_window(&env);
        let faults = needs_gateway_faults(point);
        if faults {
            set_faults(
                &env,
                &json!({"seed": 1, "rate": 1.0, "kinds": ["lost_response"]}),
            );
        }
        for _ in 0..FILES_PER_ROUND {
            let (name, bytes) = make_file(&env, next);
            next += 1;
            files.push(Dropped {
                name: name.clone(),
                sha: sha256_hex(&bytes),
            });
            env.drop_atomic(&name, &bytes);
        }
        let status = env.daemon().wait_exit(Duration::from_secs(60));
        let log = env.daemon().log_text();
        let Some(status) = status else {
            panic!("the daemon did not die at {spec}\n{}", env.logs());
        };
        assert_eq!(
            status.signal(),
            Some(9),
            "killed by SIGKILL at {spec}: {status:?}\n{}",
            env.logs()
        );
        assert!(
            log.contains(&format!("failpoint {point} hit: SIGKILL")),
            "the log shows the failpoint {point}\n{log}"
        );
        if faults {
            set_faults(&env, &json!({"rate": 0.0}));
        }
        restart(&mut env);
        wait_all_accepted(&env, &files, Duration::from_secs(60), Duration::ZERO);
        assert_exactly_once(&env, &files);
        let stopped = env.daemon().terminate();
        assert!(stopped.success(), "clean stop after {point}: {stopped:?}");
        eprintln!(
            "{point}: died at hit {HIT}, recovered, {} files exactly once ({} ms)",
            files.len(),
            round.elapsed().as_millis()
        );
    }
    let (_, total, presented) = received_by_sha(&env);
    eprintln!(
        "every failpoint: {} points, {total} files, {presented} presentations, {:.1} s",
        points.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn random_sigkill_during_1000_file_burst() {
    const FILES: u32 = 1000;
    let seed = std::env::var("KAIGO_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("crash seed {seed} (repeat with KAIGO_CRASH_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut env = Env::with_options(options());
    env.start_daemon();
    wait_window(&env);

    // Written beside the drop folder first, then renamed in all at once.
    let staging = env.dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let mut files = Vec::new();
    for n in 0..FILES {
        let (name, bytes) = make_file(&env, n);
        std::fs::write(staging.join(&name), &bytes).unwrap();
        files.push(Dropped {
            name,
            sha: sha256_hex(&bytes),
        });
    }
    let started = Instant::now();
    for f in &files {
        std::fs::rename(staging.join(&f.name), env.drop_dir.join(&f.name)).unwrap();
    }

    let kills = rng.usize(8..=12);
    let mut moments = Vec::new();
    for _ in 0..kills {
        // When to crash is the random part; nothing is asserted from the passing of time.
        std::thread::sleep(Duration::from_millis(rng.u64(200..=1500)));
        moments.push(started.elapsed().as_millis());
        let status = env
            .daemon()
            .signal_and_wait(rustix::process::Signal::KILL, Duration::from_secs(10));
        assert_eq!(
            status.and_then(|s| s.signal()),
            Some(9),
            "the daemon was running until killed: {status:?}\n{}",
            env.logs()
        );
        env.start_daemon();
    }
    wait_log(&env, "the daemon to open the store", "kaigo-relay running");
    let (_, at_last_kill, _) = received_by_sha(&env);
    eprintln!(
        "{kills} kills at {moments:?} ms; {at_last_kill} of {FILES} recorded at the federation by the last"
    );
    env.wait_for(
        "every file recorded at the federation",
        Duration::from_secs(600),
        |env| (env.received().len() >= FILES as usize).then_some(()),
    );
    wait_all_accepted(
        &env,
        &files,
        Duration::from_secs(300),
        Duration::from_secs(1),
    );
    let elapsed = started.elapsed();
    assert_exactly_once(&env, &files);
    let (_, total, presented) = received_by_sha(&env);
    assert_eq!(total, FILES as usize);
    eprintln!(
        "burst: {FILES} files, {kills} kills, {:.1} s from drop to all accepted, {presented} presentations, seed {seed}",
        elapsed.as_secs_f64()
    );
}
