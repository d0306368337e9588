//! `kaigo-relay support-bundle` against a running daemon, a stopped one and a config that does
//! not load: the bundle is a real `.tar.gz` (unpacked with `tar`), holds what its manifest
//! says, and never a secret (the federation passwords, a metrics token) or a claim's content.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tests::{CARE_OFFICE, Env, EnvOptions, bins, sha256_hex};

const T: Duration = Duration::from_secs(60);
const TOKEN: &str = "metrics-token-never-leaves-2026";

fn bundle(env: &Env, config: &Path, name: &str) -> (PathBuf, String) {
    let out = env.dir.path().join(name);
    let run = Command::new(&bins().relay)
        .args(["support-bundle", "--config"])
        .arg(config)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "support-bundle: {said}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(said.contains(&out.display().to_string()), "{said}");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "owner only");
    let unpacked = env.dir.path().join(format!("{name}.d"));
    std::fs::create_dir_all(&unpacked).unwrap();
    let tar = Command::new("tar")
        .arg("-xzf")
        .arg(&out)
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let stem = name.strip_suffix(".tar.gz").unwrap();
    (unpacked.join(stem), said)
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every byte of every file of the bundle, to look for what must not be there.
fn all_text(dir: &Path) -> String {
    let mut s = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        s.push_str(&String::from_utf8_lossy(
            &std::fs::read(e.unwrap().path()).unwrap(),
        ));
    }
    s
}

#[test]
fn a_support_bundle_holds_version_config_health_and_log_and_no_secret() {
    let mut env = Env::with_options(EnvOptions {
        admin_toml: "metrics_token_file = \"certs/metrics.token\"".into(),
        ..EnvOptions::default()
    });
    std::fs::write(env.dir.path().join("certs/metrics.token"), TOKEN).unwrap();
    env.start_daemon();
    env.admin_url();
    let bytes = env.claim(&["0000700001"], 71);
    let sha = sha256_hex(&bytes);
    env.drop_atomic("KD000001.CSV", &bytes);
    env.wait_state(&sha, "accepted", T);
    let secrets = ["pw-care-1", "pw-plan-2", TOKEN, "0000700001"];

    // 1. With the daemon running.
    let (dir, said) = bundle(&env, &env.daemon_config, "running.tar.gz");
    let manifest = read(&dir, "MANIFEST.txt");
    for name in [
        "version.txt",
        "config.toml",
        "check-config.txt",
        "health.json",
        "recent.log",
    ] {
        assert!(dir.join(name).is_file(), "{name} in the bundle: {said}");
        assert!(
            manifest.contains(name),
            "{name} in the manifest:\n{manifest}"
        );
    }
    assert!(
        manifest.contains("journal.log"),
        "the journal is listed (or why it is missing)"
    );
    assert!(read(&dir, "version.txt").contains(env!("CARGO_PKG_VERSION")));
    let config = read(&dir, "config.toml");
    assert!(
        config.contains("certs/metrics.token"),
        "paths stay:\n{config}"
    );
    assert!(config.parse::<toml::Table>().is_ok(), "{config}");
    assert!(read(&dir, "check-config.txt").contains("config and certificates OK"));
    let health: Value = serde_json::from_str(&read(&dir, "health.json")).unwrap();
    assert_eq!(health["daemon"]["running"], true, "{health:#}");
    assert!(
        health["daemon"]["rss_bytes"].as_u64().unwrap() > 0,
        "{health:#}"
    );
    assert_eq!(health["submissions"]["total"], 1, "{health:#}");
    assert_eq!(
        health["submissions"]["by_state"]["accepted"], 1,
        "{health:#}"
    );
    assert_eq!(
        health["submissions"]["by_office"][CARE_OFFICE]["accepted"], 1,
        "{health:#}"
    );
    assert!(health["disks"]["state"]["free_bytes"].as_u64().unwrap() > 0);
    let recent = read(&dir, "recent.log");
    assert!(recent.contains("kaigo-relay running"), "{recent}");
    let everything = all_text(&dir);
    for secret in secrets {
        assert!(
            !everything.contains(secret),
            "{secret} is not in the bundle"
        );
    }
    // A second bundle under the same name is refused, and the first stays.
    let again = Command::new(&bins().relay)
        .args(["support-bundle", "--config"])
        .arg(&env.daemon_config)
        .arg("--output")
        .arg(env.dir.path().join("running.tar.gz"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--output"));

    // 2. With the daemon stopped: the store is read directly, and the manifest says why there
    //    is no recent log.
    assert!(env.daemon().terminate().success());
    let (dir, _) = bundle(&env, &env.daemon_config, "stopped.tar.gz");
    let health: Value = serde_json::from_str(&read(&dir, "health.json")).unwrap();
    assert_eq!(health["daemon"]["running"], false, "{health:#}");
    assert_eq!(health["submissions"]["by_state"]["accepted"], 1);
    assert!(!dir.join("recent.log").exists());
    assert!(read(&dir, "MANIFEST.txt").contains("the daemon is not running"));

    // 3. A config that does not load (a typo'd key) is still bundled, redacted, with the error.
    let broken = env.dir.path().join("broken.toml");
    let text = std::fs::read_to_string(&env.daemon_config).unwrap();
    std::fs::write(
        &broken,
        format!("{text}\n[admin2]\nmetrics_token = \"{TOKEN}\"\n"),
    )
    .unwrap();
    let (dir, _) = bundle(&env, &broken, "broken.tar.gz");
    let check = read(&dir, "check-config.txt");
    assert!(
        check.contains("does not load") && check.contains("admin2"),
        "{check}"
    );
    assert!(read(&dir, "config.toml").contains("***"));
    let everything = all_text(&dir);
    for secret in secrets {
        assert!(
            !everything.contains(secret),
            "{secret} is not in the bundle"
        );
    }
}
