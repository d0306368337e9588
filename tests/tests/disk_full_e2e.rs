//! A low and a full state volume: the daemon's store lives on a small tmpfs.
//!
//! - Low: free space falls below `disk.min_free_mib`. The disk guard pauses intake before the
//!   disk is full — the files wait in the drop folder untouched, one alert says why — and when
//!   space returns the alert is resolved and every file is sent exactly once.
//! - Full (the guard switched off, the last line of defence): the tmpfs is filled to the last
//!   byte while claims are dropped. Intake must stop cleanly (nothing half-recorded, nothing
//!   sent), the daemon must stay up, and when space returns every file is sent exactly once.
//!
//! Needs root (to mount the tmpfs), as CI and the development machines run; without it the test
//! fails and says so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tests::{Env, EnvOptions, sha256_hex, status_alerts, status_json};

const T: Duration = Duration::from_secs(60);

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs for the state volume and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros until the volume is full; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler.bin");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    // Small writes squeeze out the last partial block.
    while f.write_all(&[0u8; 64]).is_ok() {}
    let _ = f.sync_all();
    path
}

#[test]
fn a_full_state_volume_stops_intake_cleanly_and_it_resumes_when_space_returns() {
    let mut env = Env::with_options(EnvOptions {
        rescan_interval_secs: 1,
        // The guard would pause intake long before the disk is full (the test below): switched
        // off here to prove that a full disk loses nothing either.
        extra_toml: "[disk]\nmin_free_mib = 0\n".into(),
        ..EnvOptions::default()
    });
    let state = env.dir.path().join("state");
    let _tmpfs = Tmpfs::mount(&state, "8m");
    env.start_daemon();

    // Before: a file goes through as usual.
    let first = env.claim(&["0000400001"], 41);
    let first_sha = sha256_hex(&first);
    env.drop_atomic("KD000000.CSV", &first);
    env.wait_state(&first_sha, "accepted", T);

    // The state volume fills up; claims dropped now cannot be committed.
    let filler = fill(&state);
    let mut shas = Vec::new();
    for n in 1..=5u32 {
        let bytes = env.claim(&[format!("{:010}", 400_100 + n).as_str()], 41 + n);
        shas.push(sha256_hex(&bytes));
        env.drop_atomic(&format!("KD{n:06}.CSV"), &bytes);
    }
    // Intake tries (and logs why it cannot) at least twice over the next few seconds.
    env.wait_for("intake to report the full disk", T, |env| {
        let log = std::fs::read_to_string(env.dir.path().join("daemon-1.log")).unwrap_or_default();
        (log.matches("could not take files from the drop folder")
            .count()
            >= 2)
            .then_some(())
    });
    // A file leaves the drop folder only after its record is committed: the redb file may
    // still have had room for the first one's record, but not for the rest.
    let still_there = (1..=5u32)
        .filter(|n| env.drop_dir.join(format!("KD{n:06}.CSV")).exists())
        .count();
    assert!(
        still_there >= 4,
        "files wait in the drop folder\n{}",
        env.logs()
    );
    for n in 1..=5u32 {
        let name = format!("KD{n:06}.CSV");
        assert!(
            env.drop_dir.join(&name).exists() || env.drop_dir.join("送信済").join(&name).exists(),
            "{name} is in the drop folder or, committed, in 送信済/"
        );
    }
    assert_eq!(env.received().len(), 1, "nothing new was sent");
    assert!(
        env.daemon().wait_exit(Duration::from_millis(10)).is_none(),
        "the daemon is still running\n{}",
        env.logs()
    );

    // Space returns: every file is taken and sent, exactly once.
    std::fs::remove_file(&filler).unwrap();
    for sha in &shas {
        env.wait_state(sha, "accepted", T);
    }
    let received = env.received();
    assert_eq!(received.len(), 6, "{received:?}");
    for sha in shas.iter().chain([&first_sha]) {
        assert_eq!(
            received
                .iter()
                .filter(|r| r["sha256"] == sha.as_str())
                .count(),
            1,
            "{sha} recorded once"
        );
    }
    for n in 1..=5u32 {
        assert!(!env.drop_dir.join(format!("KD{n:06}.CSV")).exists());
        assert!(env.drop_dir.join(format!("送信済/KD{n:06}.CSV")).exists());
    }
    let status = env.daemon().terminate();
    assert!(status.success(), "{}", env.logs());
}

/// Writes a ballast file that leaves about `leave` bytes free on the volume of `dir`.
fn ballast(dir: &Path, leave: u64) -> PathBuf {
    let (free, _) = kaigo_relay::disk_guard::free_space(dir).unwrap();
    assert!(free > leave, "the tmpfs has {free} bytes free");
    let path = dir.join("ballast.bin");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 1 << 20];
    let mut left = free - leave;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
    path
}

#[test]
fn a_low_state_volume_pauses_intake_with_one_alert_and_it_resumes_when_space_returns() {
    let mut env = Env::with_options(EnvOptions {
        rescan_interval_secs: 1,
        extra_toml: "[disk]\nmin_free_mib = 24\ncheck_interval_secs = 1\n".into(),
        ..EnvOptions::default()
    });
    let state = env.dir.path().join("state");
    let _tmpfs = Tmpfs::mount(&state, "64m");
    env.start_daemon();

    let first = env.claim(&["0000400001"], 41);
    let first_sha = sha256_hex(&first);
    env.drop_atomic("KD000000.CSV", &first);
    env.wait_state(&first_sha, "accepted", T);
    assert!(status_alerts(&env.daemon_config).unwrap().is_empty());

    // 12 MiB left: below the 24 MiB limit, yet far from full.
    let ballast = ballast(&state, 12 << 20);
    let alert = env.wait_for("the disk alert", T, |env| {
        status_alerts(&env.daemon_config)
            .ok()?
            .into_iter()
            .find(|a| a["key"] == "disk_low/state")
    });
    assert_eq!(alert["severity"], "error");
    let ja = alert["message_ja"].as_str().unwrap();
    assert!(
        ja.contains("受付") && ja.contains("残っていて"),
        "says intake waits and nothing is lost: {ja}"
    );
    assert!(
        alert["message_en"]
            .as_str()
            .unwrap()
            .contains("nothing is lost")
    );

    let mut shas = Vec::new();
    for n in 1..=3u32 {
        let bytes = env.claim(&[format!("{:010}", 400_200 + n).as_str()], 41 + n);
        shas.push(sha256_hex(&bytes));
        env.drop_atomic(&format!("KD{n:06}.CSV"), &bytes);
    }
    // Several rescans and stability checks pass; nothing is taken.
    std::thread::sleep(Duration::from_secs(5));
    for n in 1..=3u32 {
        assert!(
            env.drop_dir.join(format!("KD{n:06}.CSV")).exists(),
            "KD{n:06}.CSV waits in the drop folder\n{}",
            env.logs()
        );
    }
    let recorded = status_json(&env.daemon_config).unwrap();
    assert_eq!(recorded.len(), 1, "nothing new was recorded: {recorded:?}");
    assert_eq!(env.received().len(), 1, "nothing new was sent");
    let log = env.logs();
    assert_eq!(
        log.matches("intake and the notice mirror are paused")
            .count(),
        1,
        "one ERROR line for the condition, not one per look\n{log}"
    );
    assert!(
        !log.contains("could not take files from the drop folder"),
        "the guard acted before any write failed\n{log}"
    );
    let alerts = status_alerts(&env.daemon_config).unwrap();
    assert_eq!(alerts.len(), 1, "one alert for one condition: {alerts:?}");
    assert_eq!(alerts[0]["raised_at"], alert["raised_at"]);

    // Space returns: the alert is resolved and each file is sent exactly once.
    std::fs::remove_file(&ballast).unwrap();
    for sha in &shas {
        env.wait_state(sha, "accepted", T);
    }
    assert!(status_alerts(&env.daemon_config).unwrap().is_empty());
    assert!(env.logs().contains("intake and the notice mirror resume"));
    let received = env.received();
    assert_eq!(received.len(), 4, "{received:?}");
    for sha in shas.iter().chain([&first_sha]) {
        assert_eq!(
            received
                .iter()
                .filter(|r| r["sha256"] == sha.as_str())
                .count(),
            1,
            "{sha} sent once"
        );
    }
    let status = env.daemon().terminate();
    assert!(status.success(), "{}", env.logs());
}
