//! The appliance as systemd runs it, through a real `kaigo-relay run` process: readiness and
//! watchdog notices on a real notify socket; SIGHUP reloads the configuration (a bad one is
//! refused and the running one stays); SIGUSR1 starts a backup; SIGTERM drains, leaving no
//! submission half sent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use tests::{Env, EnvOptions, sha256_hex};

const T: Duration = Duration::from_secs(30);

/// The service manager's side of `NOTIFY_SOCKET`: every datagram the daemon sends, in order.
struct Manager {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Manager {
    fn bind(env: &Env) -> (Manager, String) {
        let path = env.dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        (
            Manager {
                socket,
                seen: Vec::new(),
            },
            path.to_str().unwrap().to_owned(),
        )
    }

    /// Reads datagrams until one holds `line` (a whole line such as `READY=1`); returns how many
    /// datagrams came before it since the last call.
    fn wait_line(&mut self, env: &Env, line: &str) -> Vec<String> {
        let start = Instant::now();
        let mut before = Vec::new();
        let mut buf = [0u8; 4096];
        while start.elapsed() < T {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.lines().any(|l| l == line) {
                    return before;
                }
                before.push(msg);
            }
        }
        panic!(
            "no {line} from the daemon; seen {:?}\n{}",
            self.seen,
            env.logs()
        );
    }
}

/// Each file reached the federation exactly once.
fn assert_each_received_once(env: &Env, files: &[&[u8]]) {
    let received = env.received();
    for bytes in files {
        let sha = sha256_hex(bytes);
        let n = received
            .iter()
            .filter(|r| r["sha256"] == sha.as_str())
            .count();
        assert_eq!(n, 1, "{sha}");
    }
}

fn write_config(env: &Env, edit: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(&env.daemon_config).unwrap();
    std::fs::write(&env.daemon_config, edit(text)).unwrap();
}

fn signal(env: &mut Env, sig: Signal) {
    let pid = rustix::process::Pid::from_raw(env.daemon().id() as i32).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

#[test]
fn readiness_watchdog_and_sighup_reload_with_a_bad_config_refused() {
    let mut env = Env::new();
    let (mut manager, socket) = Manager::bind(&env);
    // A 1.5 s watchdog: the daemon pings about every half second while it is well.
    env.start_daemon_with_env(&[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "1500000")]);
    manager.wait_line(&env, "READY=1");
    for _ in 0..3 {
        manager.wait_line(&env, "WATCHDOG=1");
    }

    let first = env.claim(&["0000100001"], 1);
    env.drop_atomic("KK261201.CSV", &first);
    env.wait_state(&sha256_hex(&first), "accepted", T);

    // A configuration with an unknown key is refused: the daemon says so and goes on with the
    // running one (same drop folder, still relaying, still pinging).
    let good = std::fs::read_to_string(&env.daemon_config).unwrap();
    write_config(&env, |t| format!("drop_dir_typo = \"x\"\n{t}"));
    signal(&mut env, Signal::HUP);
    env.wait_for("the refused reload in the log", T, |env| {
        env.logs().contains("not reloaded").then_some(())
    });
    // (`kaigo-relay status`, which the checks below use, reads the file too.)
    std::fs::write(&env.daemon_config, &good).unwrap();
    let second = env.claim(&["0000100002"], 2);
    env.drop_atomic("KK261202.CSV", &second);
    env.wait_state(&sha256_hex(&second), "accepted", T);
    let between = manager.wait_line(&env, "WATCHDOG=1");
    assert!(
        !manager.seen.iter().any(|m| m.contains("RELOADING=1")),
        "a refused reload is no reload: {between:?}"
    );

    // A good change applies: the drop folder moves; systemd hears RELOADING=1, then READY=1.
    std::fs::write(
        &env.daemon_config,
        good.replace("drop_dir = \"drop\"", "drop_dir = \"drop2\""),
    )
    .unwrap();
    signal(&mut env, Signal::HUP);
    manager.wait_line(&env, "RELOADING=1");
    manager.wait_line(&env, "READY=1");
    let drop2 = env.dir.path().join("drop2");
    let third = env.claim(&["0000100003"], 3);
    std::fs::write(drop2.join(".KK261203.CSV.part"), &third).unwrap();
    std::fs::rename(drop2.join(".KK261203.CSV.part"), drop2.join("KK261203.CSV")).unwrap();
    env.wait_state(&sha256_hex(&third), "accepted", T);
    assert!(drop2.join("送信済/KK261203.CSV").exists());
    manager.wait_line(&env, "WATCHDOG=1");

    // Each claim reached the federation once, across the reload.
    assert_each_received_once(&env, &[&first, &second, &third]);

    let status = env.daemon().terminate();
    assert!(status.success(), "{status:?}\n{}", env.logs());
    manager.wait_line(&env, "STOPPING=1");
}

#[test]
fn sigusr1_starts_a_backup_now() {
    let mut env = Env::new();
    write_config(&env, |t| {
        format!(
            "{t}\n[backup]\ninterval_minutes = 600\ndrill_interval_hours = 0\n\n[[backup.sites]]\nname = \"local\"\nkind = \"directory\"\npath = \"backup-local\"\n"
        )
    });
    env.start_daemon();
    let copies = env.dir.path().join("backup-local/copies");
    // A copy is complete once its manifest is written (last). Retention keeps one copy per
    // hour, so the second replaces the first: the sequence number tells them apart.
    let complete = |seq: u32| copies.join(format!("{seq:010}/manifest.json")).exists();
    // The schedule's first run comes a few seconds after the start; the next not for ten hours.
    env.wait_for("the first scheduled copy", T, |_| complete(1).then_some(()));
    signal(&mut env, Signal::USR1);
    env.wait_for("a second copy, started by SIGUSR1", T, |_| {
        complete(2).then_some(())
    });
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copies.join("0000000002/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["seq"], 2, "{manifest}");
    assert!(env.logs().contains("SIGUSR1"), "{}", env.logs());
    let status = env.daemon().terminate();
    assert!(status.success(), "{status:?}\n{}", env.logs());
}

#[test]
fn sigterm_drains_and_leaves_no_submission_half_sent() {
    // The federation takes its time over each 受付, and the relay sends a few at once.
    let mut env = Env::with_options(EnvOptions {
        reception_delay_ms: 2000,
        ..EnvOptions::default()
    });
    env.start_daemon();
    let claims: Vec<Vec<u8>> = (1..=6)
        .map(|i| env.claim(&[&format!("00001000{i:02}")], 10 + i))
        .collect();
    for (i, bytes) in claims.iter().enumerate() {
        env.drop_atomic(&format!("KK2612{:02}.CSV", 10 + i), bytes);
    }
    // Stop while they are in flight: at least one was taken in, not all are settled.
    env.wait_for("the claims to be taken in", T, |env| {
        (env.status().len() >= claims.len()).then_some(())
    });
    let started = Instant::now();
    let status = env.daemon().terminate();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}\n{}", env.logs());
    // shutdown_grace_secs is 5 in the test config; the drain is bounded by it (and a margin).
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");
    let settled = tests::status_json(&env.daemon_config).unwrap();
    assert_eq!(settled.len(), claims.len());
    for s in &settled {
        assert_ne!(
            s["state"], "sending",
            "a graceful stop leaves nothing mid-send: {s}"
        );
    }
    // After a restart every claim is accepted, each received by the federation exactly once.
    env.start_daemon();
    for bytes in &claims {
        env.wait_state(&sha256_hex(bytes), "accepted", T);
    }
    let all: Vec<&[u8]> = claims.iter().map(Vec::as_slice).collect();
    assert_each_received_once(&env, &all);
    let status = env.daemon().terminate();
    assert!(status.success());
}
