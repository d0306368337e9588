//! Backups through the real daemon, a real S3-compatible server (moto) on loopback and two
//! directory sites: a backup while claims keep arriving, verification of every site, a restore
//! that finds one changed byte in the first site's copy and falls back to the next site, and a
//! restored store that holds exactly what the snapshot's manifest says; then a backup killed with
//! SIGKILL between a copy's object and its manifest, which leaves the live store intact and no
//! copy counted complete (the next run removes the leftover); and one killed right after its
//! snapshot, which leaves nothing on any site.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tests::{Env, S3Server, bins, sha256_hex, status_json};

const T: Duration = Duration::from_secs(90);
const BUCKET: &str = "kaigo-backups";

fn relay(args: &[&str], config: &Path) -> (bool, Value, String) {
    let out = Command::new(&bins().relay)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run kaigo-relay");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.success(), json, format!("{stdout}\n{stderr}"))
}

/// Runs `kaigo-relay backup run` with a failpoint armed at `point` and checks that it died there.
fn backup_killed_at(config: &Path, point: &str) {
    let out = Command::new(&bins().relay)
        .args(["backup", "run", "--config"])
        .arg(config)
        .env("KAIGO_RELAY_FAILPOINTS", format!("{point}=1"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("failpoint {point} hit: SIGKILL")),
        "{stderr}"
    );
    assert!(!out.status.success(), "killed at {point}: {:?}", out.status);
}

fn names(subs: &[Value]) -> BTreeSet<String> {
    subs.iter()
        .map(|s| s["file_name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn backup_under_writes_restore_with_fallback_and_a_killed_run() {
    let mut env = Env::new();
    let root = env.dir.path().to_owned();
    let s3 = S3Server::start(&root, BUCKET);
    std::fs::write(
        root.join("s3.credentials"),
        "[default]\naws_access_key_id = test\naws_secret_access_key = test-secret\n",
    )
    .unwrap();
    let mut cfg = std::fs::OpenOptions::new()
        .append(true)
        .open(&env.daemon_config)
        .unwrap();
    writeln!(
        cfg,
        r#"
[backup]
interval_minutes = 600
drill_interval_hours = 0

[[backup.sites]]
name = "local"
kind = "directory"
path = "backup-local"

[[backup.sites]]
name = "nas"
kind = "directory"
path = "backup-nas"

[[backup.sites]]
name = "cloud"
kind = "s3"
endpoint = "{}"
bucket = "{BUCKET}"
prefix = "office/kaigo-relay"
path_style = true
credentials_file = "s3.credentials"
"#,
        s3.endpoint
    )
    .unwrap();
    drop(cfg);
    let config = env.daemon_config.clone();
    env.start_daemon();

    // Six claims recorded before the backup…
    let first: Vec<Vec<u8>> = (0..6u32)
        .map(|i| env.claim(&[&format!("10000{:05}", 100 + i)], 10 + i))
        .collect();
    for (i, bytes) in first.iter().enumerate() {
        env.drop_atomic(&format!("KKA{i}.CSV"), bytes);
    }
    for bytes in &first {
        env.wait_for("the claim recorded", T, |env| {
            env.status()
                .iter()
                .any(|s| s["sha256"] == sha256_hex(bytes))
                .then_some(())
        });
    }
    // …and ten more arriving while it runs.
    let later: Vec<(String, Vec<u8>)> = (0..10u32)
        .map(|i| {
            (
                format!("KKB{i}.CSV"),
                env.claim(&[&format!("10000{:05}", 200 + i)], 30 + i),
            )
        })
        .collect();
    let drop_dir = env.drop_dir.clone();
    let dropper = {
        let later = later.clone();
        std::thread::spawn(move || {
            for (name, bytes) in later {
                let tmp = drop_dir.join(format!(".{name}.part"));
                std::fs::write(&tmp, &bytes).unwrap();
                std::fs::rename(&tmp, drop_dir.join(&name)).unwrap();
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    // The daemon holds the store, so the command asks it to run the backup.
    std::thread::sleep(Duration::from_millis(900));
    let (ok, run, text) = relay(&["backup", "run", "--json"], &config);
    dropper.join().unwrap();
    assert!(ok, "backup run failed: {text}\n{}", env.logs());
    let seq = run["seq"].as_u64().unwrap();
    assert_eq!(run["reason"], "command", "{run}");
    let sites: Vec<&Value> = run["sites"].as_array().unwrap().iter().collect();
    assert_eq!(sites.len(), 3, "{run}");
    for s in &sites {
        assert_eq!(s["ok"], true, "{run}");
    }
    assert!(
        env.logs().contains("copy written and read back"),
        "the daemon ran it"
    );
    for (_, bytes) in &later {
        env.wait_for("the later claim recorded", T, |env| {
            env.status()
                .iter()
                .any(|s| s["sha256"] == sha256_hex(bytes))
                .then_some(())
        });
    }

    // The off-site copy is encrypted; the objects are in the bucket under the prefix.
    let keys = s3.keys(BUCKET);
    let object = format!("office/kaigo-relay/copies/{seq:010}/store.redb.enc");
    assert!(keys.contains(&object), "{keys:?}");
    assert!(keys.contains(&format!(
        "office/kaigo-relay/copies/{seq:010}/manifest.json"
    )));

    // Every site's copy downloads, matches its manifest and opens.
    let (ok, verified, text) = relay(&["backup", "verify", "--json"], &config);
    assert!(ok, "{text}");
    assert_eq!(verified.as_array().unwrap().len(), 3);
    let (ok, listed, text) = relay(&["backup", "list", "--json"], &config);
    assert!(ok, "{text}");
    let local = &listed.as_array().unwrap()[0];
    assert_eq!(local["site"], "local");
    let manifest = local["copies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["seq"] == seq)
        .map(|c| c["manifest"].clone())
        .unwrap();
    assert_eq!(
        manifest["encryption"],
        Value::Null,
        "local copies are plain"
    );
    let submissions_in_copy = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "submissions")
        .unwrap()["rows"]
        .as_u64()
        .unwrap();

    // Stop the daemon; the live store now has all sixteen claims.
    env.daemon().terminate();
    let live = status_json(&config).unwrap();
    assert_eq!(live.len(), 16, "{live:?}");

    // A restore refuses while the daemon runs (checked with a second daemon start later); here
    // one byte of the local copy is changed, and the restore falls back to the NAS copy.
    let local_object = root.join(format!("backup-local/copies/{seq:010}/store.redb"));
    let mut bytes = std::fs::read(&local_object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&local_object, &bytes).unwrap();
    let (ok, restored, text) = relay(&["restore", "--site", "local", "--json"], &config);
    assert!(ok, "restore failed: {text}");
    assert_eq!(restored["site"], "nas", "{restored}");
    assert_eq!(restored["seq"], seq);
    let skipped = restored["skipped"].as_array().unwrap();
    assert_eq!(skipped[0][0], "local", "{restored}");
    assert!(
        skipped[0][1].as_str().unwrap().contains("SHA-256"),
        "{restored}"
    );
    let aside = restored["kept_aside"].as_str().unwrap();
    assert!(Path::new(aside).exists(), "the live store was kept aside");

    // The restored store holds what the snapshot held: every claim recorded before the
    // backup, only claims that were dropped, and as many as the manifest counted.
    let back = status_json(&config).unwrap();
    assert_eq!(back.len() as u64, submissions_in_copy);
    let back_names = names(&back);
    for i in 0..6 {
        assert!(
            back_names.contains(&format!("KKA{i}.CSV")),
            "{back_names:?}"
        );
    }
    assert!(back_names.is_subset(&names(&live)));

    // The encrypted S3 copy restores as well.
    let (ok, restored, text) = relay(&["restore", "--site", "cloud", "--json"], &config);
    assert!(ok, "{text}");
    assert_eq!(restored["site"], "cloud");
    assert!(restored["skipped"].as_array().unwrap().is_empty());
    assert_eq!(
        status_json(&config).unwrap().len() as u64,
        submissions_in_copy
    );

    // SIGKILL right after the snapshot, before any site is written: no site holds anything
    // newer than the last complete copy, and the live store is intact.
    let before = status_json(&config).unwrap();
    backup_killed_at(&config, "backup.after_snapshot");
    let (ok, listed, text) = relay(&["backup", "list", "--json"], &config);
    assert!(ok, "{text}");
    for site in listed.as_array().unwrap() {
        let newest = site["copies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["seq"].as_u64().unwrap())
            .max();
        assert_eq!(
            newest,
            Some(seq),
            "nothing written after the snapshot: {site}"
        );
    }
    assert_eq!(status_json(&config).unwrap(), before);

    // SIGKILL between a copy's object and its manifest (the daemon stopped: the command runs
    // the backup itself).
    backup_killed_at(&config, "backup.after_object");
    let (ok, listed, text) = relay(&["backup", "list", "--json"], &config);
    assert!(ok, "{text}");
    let incomplete: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|site| site["copies"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["manifest"].is_null())
        .map(|c| c["seq"].as_u64().unwrap())
        .collect();
    // The sites are written at once, so each may hold the object; none has the manifest.
    assert!(
        !incomplete.is_empty() && incomplete.iter().all(|n| *n == seq + 1),
        "objects without their manifest: {listed}"
    );
    for site in listed.as_array().unwrap() {
        let newest_complete = site["copies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| !c["manifest"].is_null())
            .map(|c| c["seq"].as_u64().unwrap())
            .max();
        assert_eq!(
            newest_complete,
            Some(seq),
            "no copy counted complete: {site}"
        );
    }
    // The live store is intact.
    assert_eq!(status_json(&config).unwrap(), before);
    // The next run succeeds and removes the leftover.
    let (ok, run, text) = relay(&["backup", "run", "--json"], &config);
    assert!(ok, "{text}");
    assert_eq!(run["seq"], seq + 2);
    let (_, listed, _) = relay(&["backup", "list", "--json"], &config);
    for site in listed.as_array().unwrap() {
        assert!(
            site["copies"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| !c["manifest"].is_null()),
            "{site}"
        );
    }

    // Restore refuses while the daemon has the store open.
    env.start_daemon();
    let _ = env.admin_url();
    let (ok, _, text) = relay(&["restore"], &config);
    assert!(!ok);
    assert!(text.contains("動作中"), "{text}");

    // The same from the admin UI: one more claim, then the newest NAS copy put back. The copy
    // is verified first, the daemon restarts by itself and puts it in place.
    let extra = env.claim(&["1000000301"], 60);
    env.drop_atomic("KKC0.CSV", &extra);
    env.wait_for("the extra claim recorded", T, |env| {
        env.status()
            .iter()
            .any(|s| s["sha256"] == sha256_hex(&extra))
            .then_some(())
    });
    let with_extra = status_json(&config).unwrap().len();
    let one_time = env.add_user(&["--id", "boss", "--role", "system_admin"]);
    let mut b = env.browser();
    b.first_login("boss", &one_time, "natsu-no-yoru-pass-2026");
    let page = b.get("/backups");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("cloud") && page.text().contains("暗号化"));
    let token = b.csrf();
    let page = b.post(
        "/backups/restore",
        &[("csrf_token", &token), ("site", "nas"), ("confirm", "1")],
    );
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.text().contains("装置を再起動しています"),
        "{}",
        page.text()
    );
    env.wait_for("the daemon restarted with the copy", T, |env| {
        env.logs()
            .contains("the store was restored from a backup chosen in the admin UI")
            .then_some(())
    });
    let after = tests::wait_until(T, || {
        status_json(&config)
            .ok()
            .filter(|s| s.len() + 1 == with_extra)
    });
    assert!(
        after.is_some(),
        "the restored store lacks the extra claim\n{}",
        env.logs()
    );
    assert!(
        !names(&after.unwrap()).contains("KKC0.CSV"),
        "the copy predates the extra claim"
    );
}

/// A copy larger than one upload part goes to S3 as a multipart upload: every part but the last
/// must be at least 5 MiB or a real S3 service refuses the upload (`EntityTooSmall`), which a
/// small test store never shows. 25 MiB of random bytes make three parts.
#[test]
fn a_copy_larger_than_one_part_goes_up_in_parts_s3_accepts() {
    kaigo_relay::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path(), BUCKET);
    let site = kaigo_relay::backup::Site::new(&kaigo_relay::config::SiteSettings {
        name: "s3".into(),
        location: kaigo_relay::config::SiteLocation::S3 {
            endpoint: s3.endpoint.clone(),
            bucket: BUCKET.into(),
            prefix: "big".into(),
            region: "us-east-1".into(),
            path_style: true,
            access_key_id: "test".into(),
            secret_access_key: kaigo_relay::config::Secret::new("test-secret".into()),
        },
        encrypt: false,
        retention: kaigo_relay::config::Retention {
            hourly: 0,
            daily: 0,
            weekly: 0,
            monthly: 0,
        },
    })
    .unwrap();
    let local = dir.path().join("big.bin");
    let mut bytes = vec![0u8; 25 * 1024 * 1024 + 12_345];
    fastrand::Rng::with_seed(8).fill(&mut bytes);
    std::fs::write(&local, &bytes).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sent = rt
        .block_on(site.put_file("copies/big.bin", &local))
        .expect("a multipart upload that S3 accepts");
    assert_eq!(sent.size, bytes.len() as u64);
    assert_eq!(sent.sha256, sha256_hex(&bytes));
    let back = dir.path().join("back.bin");
    let got = rt
        .block_on(site.get_file_progress("copies/big.bin", &back, &|_| {}))
        .unwrap();
    assert_eq!(got, sent);
    assert!(
        std::fs::read(&back).unwrap() == bytes,
        "the bytes came back changed"
    );
    assert_eq!(s3.keys(BUCKET), vec!["big/copies/big.bin".to_owned()]);
}
