//! The whole path through real processes: a claim dropped in the folder reaches federation-sim
//! over mutual TLS exactly once, with its receipt and 受付 result in `status --json`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::time::Duration;

use serde_json::Value;
use tests::{Env, EnvOptions, sha256_hex, write_slowly};

const T: Duration = Duration::from_secs(30);

fn received_with(env: &Env, sha: &str) -> Vec<Value> {
    env.received()
        .into_iter()
        .filter(|r| r["sha256"] == sha)
        .collect()
}

#[test]
fn a_dropped_claim_reaches_the_federation_exactly_once() {
    let mut env = Env::new();
    env.start_daemon();
    let bytes = env.claim(&["0000100001", "0000100002"], 1);
    let sha = sha256_hex(&bytes);
    env.drop_atomic("KK261201.CSV", &bytes);

    let entry = env.wait_state(&sha, "accepted", T);
    let receipt = entry["receipt_id"].as_str().expect("receipt id").to_owned();
    assert!(receipt.starts_with('R'), "{entry}");
    assert_eq!(entry["reception_mark"], "○");
    assert_eq!(entry["office_number"], tests::CARE_OFFICE);
    assert_eq!(entry["file_name"], "KK261201.CSV");
    assert_eq!(entry["attempts"], 1);
    assert_eq!(entry["moved_to"], "送信済/KK261201.CSV");

    let at_sim = received_with(&env, &sha);
    assert_eq!(at_sim.len(), 1, "{at_sim:?}");
    assert_eq!(at_sim[0]["receipt_id"], receipt.as_str());
    assert_eq!(
        at_sim[0]["idempotency_key"], entry["id"],
        "the idempotency key is the submission id"
    );
    assert_eq!(at_sim[0]["presented"], 1);
    assert_eq!(at_sim[0]["office_number"], tests::CARE_OFFICE);

    // Next to the archived copy, a note tells a clerk in Explorer where the claim stands.
    let result_path = env.drop_dir.join("送信済/KK261201.CSV.結果.txt");
    let note = env.wait_for("the result file to show ○", T, |_| {
        std::fs::read_to_string(&result_path)
            .ok()
            .filter(|t| t.contains("受付結果: ○"))
    });
    assert!(note.starts_with('\u{feff}'), "UTF-8 with BOM for Notepad");
    assert!(note.contains(&format!("受付番号: {receipt}")), "{note}");
    assert!(note.contains("受付済 ○"), "{note}");
    assert!(note.contains("Reception result: ○"), "{note}");
    assert!(!note.replace("\r\n", "").contains('\n'), "CRLF only");

    // The file left the drop folder only for 送信済/, byte for byte.
    assert!(!env.drop_dir.join("KK261201.CSV").exists());
    assert_eq!(
        std::fs::read(env.drop_dir.join("送信済/KK261201.CSV")).unwrap(),
        bytes
    );

    // While it runs, the daemon answers `status` on its socket (it holds the store alone).
    let socket = env.dir.path().join("state/control.sock");
    assert!(socket.exists(), "{}", socket.display());
    let status = env.daemon().terminate();
    assert!(
        status.success(),
        "graceful stop: {status:?}\n{}",
        env.logs()
    );
    // Stopped, it has removed its socket, and `status` reads the store itself.
    assert!(!socket.exists());
    let after = env.status();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["state"], "accepted");
    assert_eq!(after[0]["receipt_id"], receipt.as_str());
}

#[test]
fn a_file_written_slowly_in_chunks_is_not_sent_half_written() {
    // A short settle interval, so each pause below is long enough for a half-written file to
    // look stable: only the end-record rule keeps it from being taken.
    let mut env = Env::with_options(EnvOptions {
        settle_interval_ms: 100,
        ..EnvOptions::default()
    });
    env.start_daemon();
    let bytes = env.claim(&["0000200001", "0000200002", "0000200003"], 2);
    let sha = sha256_hex(&bytes);
    let text = std::str::from_utf8(&bytes).unwrap();
    // Cut after whole records (where a naive "size is stable" rule is fooled) and mid-record.
    let after_first_record = text.find("\r\n").unwrap() + 2;
    let mid_record = text.len() / 2;
    let before_end_record = text.rfind("3,").unwrap();
    write_slowly(
        &env.drop_dir.join("KK261202.CSV"),
        &bytes,
        &[after_first_record, mid_record, before_end_record],
        Duration::from_millis(800),
    );

    let entry = env.wait_state(&sha, "accepted", T);
    assert_eq!(entry["errors"], serde_json::json!([]));
    let all = env.status();
    assert_eq!(
        all.len(),
        1,
        "exactly one submission, never a partial one: {all:?}"
    );
    let at_sim = env.received();
    assert_eq!(at_sim.len(), 1, "{at_sim:?}");
    assert_eq!(at_sim[0]["sha256"], sha.as_str(), "the whole file was sent");
    assert!(!env.drop_dir.join("エラー/KK261202.CSV").exists());
}

#[test]
fn a_file_dropped_twice_is_sent_once_and_the_copy_reported_as_a_duplicate() {
    let mut env = Env::new();
    env.start_daemon();
    let bytes = env.claim(&["0000300001"], 3);
    let sha = sha256_hex(&bytes);
    env.drop_atomic("KK261203.CSV", &bytes);
    let first = env.wait_state(&sha, "accepted", T);

    // The same bytes again, under the same name and under another one.
    env.drop_atomic("KK261203.CSV", &bytes);
    env.drop_atomic("KK261204.CSV", &bytes);
    let dups = env.wait_for("two duplicates", T, |env| {
        let d: Vec<Value> = env
            .status()
            .into_iter()
            .filter(|s| s["state"] == "duplicate" && !s["moved_to"].is_null())
            .collect();
        // Recorded, then moved: both committed.
        (d.len() == 2).then_some(d)
    });
    for d in &dups {
        assert_eq!(d["duplicate_of"], first["id"], "{d}");
        assert_eq!(d["errors"], serde_json::json!(["intake.duplicate"]));
        assert!(d["receipt_id"].is_null());
        assert_eq!(d["attempts"], 0);
        assert!(
            d["moved_to"].as_str().unwrap().starts_with("エラー/"),
            "{d}"
        );
    }
    // Exactly one submission at the federation, presented once.
    let at_sim = received_with(&env, &sha);
    assert_eq!(at_sim.len(), 1, "{at_sim:?}");
    assert_eq!(at_sim[0]["presented"], 1);
    assert_eq!(env.received().len(), 1);

    // The clerk sees why, next to the copy, in Japanese and English.
    let reason =
        std::fs::read_to_string(env.drop_dir.join("エラー/KK261204.CSV.エラー.txt")).unwrap();
    assert!(reason.starts_with('\u{feff}'), "UTF-8 with BOM for Notepad");
    assert!(reason.contains("同じ内容のファイル"), "{reason}");
    assert!(
        reason.contains("KK261203.CSV"),
        "names the original: {reason}"
    );
    assert!(reason.contains("not sent"), "{reason}");
    assert!(env.drop_dir.join("エラー/KK261203.CSV").exists());
    assert!(env.drop_dir.join("送信済/KK261203.CSV").exists());
}

#[test]
fn a_bad_file_goes_to_the_error_folder_with_its_reasons_and_is_never_sent() {
    let mut env = Env::new();
    env.start_daemon();
    let good = String::from_utf8(env.claim(&["0000400001"], 4)).unwrap();
    let bad = good
        .replacen(",0,4,711,", ",0,9,711,", 1)
        .replace("\r\n", "\n");
    env.drop_atomic("KK261209.CSV", bad.as_bytes());
    let entry = env.wait_state(&sha256_hex(bad.as_bytes()), "refused", T);
    let errors: Vec<&str> = entry["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors, vec!["file.line_ending", "control.record_count"]);
    assert!(env.received().is_empty(), "nothing reached the federation");
    let reason =
        std::fs::read_to_string(env.drop_dir.join("エラー/KK261209.CSV.エラー.txt")).unwrap();
    assert!(reason.contains("レコード件数"), "{reason}");
    assert!(reason.contains("CRLF"), "{reason}");
    assert_eq!(
        std::fs::read(env.drop_dir.join("エラー/KK261209.CSV")).unwrap(),
        bad.as_bytes(),
        "kept byte for byte"
    );
}

#[test]
fn after_a_crash_nothing_is_lost_and_nothing_is_sent_twice() {
    let mut env = Env::new();
    env.start_daemon();
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            (
                format!("KKC{i:05}.CSV"),
                env.claim(&[&format!("{:010}", 500_000 + i)], 100 + i),
            )
        })
        .collect();
    for (name, bytes) in &files[..6] {
        env.drop_atomic(name, bytes);
    }
    // Kill it in the middle of work: some files taken, some sending, some not yet seen.
    std::thread::sleep(Duration::from_millis(150));
    env.daemon().kill9();
    for (name, bytes) in &files[6..] {
        env.drop_atomic(name, bytes);
    }
    // status works on the store a crash left behind.
    let _ = env.status();
    env.start_daemon();
    for (_, bytes) in &files {
        env.wait_state(&sha256_hex(bytes), "accepted", T);
    }
    let received = env.received();
    assert_eq!(received.len(), files.len(), "{received:?}");
    for (name, bytes) in &files {
        let sha = sha256_hex(bytes);
        assert_eq!(
            received_with(&env, &sha).len(),
            1,
            "{name} recorded exactly once"
        );
        assert!(
            env.drop_dir.join("送信済").join(name).exists(),
            "{name} in 送信済/"
        );
    }
    assert_eq!(
        env.status().len(),
        files.len(),
        "one submission per file, no duplicates"
    );
}

#[test]
fn a_bad_config_exits_64_and_names_the_setting() {
    let env = Env::new();
    let text = std::fs::read_to_string(&env.daemon_config).unwrap();
    let bad = env.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        text.replace("[intake]", "[intake]\nwatch_interval = 3"),
    )
    .unwrap();
    for cmd in ["run", "check-config"] {
        let out = std::process::Command::new(&tests::bins().relay)
            .args([cmd, "--config"])
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("watch_interval") && err.contains("設定"),
            "{cmd}: {err}"
        );
    }
    let out = tests::relay_ok([
        std::ffi::OsStr::new("check-config"),
        "--config".as_ref(),
        env.daemon_config.as_os_str(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("設定は正しく読めました"));
}

#[test]
fn a_file_dropped_outside_the_window_is_held_then_sent_when_it_opens() {
    let mut env = Env::with_options(EnvOptions {
        health_refresh_secs: 1,
        ..EnvOptions::default()
    });
    // After the 10th the window is closed; billing software stamps the next processing month.
    env.set_sim_clock("2026-12-15T10:00:00+09:00");
    env.month = "202701".parse().unwrap();
    env.start_daemon();
    let bytes = env.claim(&["0000600001"], 6);
    let sha = sha256_hex(&bytes);
    env.drop_atomic("KK270101.CSV", &bytes);

    let held = env.wait_state(&sha, "held", T);
    let note = held["note_ja"].as_str().unwrap();
    assert!(
        note.contains("受付期間外") && note.contains("2027年1月1日 00:00"),
        "{note}"
    );
    assert_eq!(held["attempts"], 0, "nothing is sent to a closed window");
    std::thread::sleep(Duration::from_secs(2));
    assert!(env.received().is_empty());

    // The gateway's clock reaches the next window: the daemon learns it from /v1/health.
    env.set_sim_clock("2027-01-01T00:00:05+09:00");
    let sent = env.wait_state(&sha, "accepted", T);
    assert_eq!(sent["attempts"], 1);
    let at_sim = received_with(&env, &sha);
    assert_eq!(at_sim.len(), 1);
    assert_eq!(at_sim[0]["presented"], 1);
}

#[test]
fn a_long_file_name_is_sent_under_a_generated_8_3_name_and_both_are_kept() {
    let mut env = Env::new();
    env.start_daemon();
    let bytes = env.claim(&["0000500001"], 5);
    let sha = sha256_hex(&bytes);
    let long = "訪問介護 12月分 請求データ.csv";
    env.drop_atomic(long, &bytes);
    let entry = env.wait_state(&sha, "accepted", T);
    assert_eq!(entry["file_name"], long);
    let send_name = entry["send_name"]
        .as_str()
        .expect("a generated name")
        .to_owned();
    assert!(
        send_name.len() == 12 && send_name.starts_with('K') && send_name.ends_with(".CSV"),
        "{send_name}"
    );
    assert_eq!(entry["warnings"], serde_json::json!(["file.name_replaced"]));
    let at_sim = received_with(&env, &sha);
    assert_eq!(at_sim.len(), 1, "{at_sim:?}");
    assert_eq!(at_sim[0]["file_name"], send_name.as_str(), "{at_sim:?}");
    assert_eq!(
        std::fs::read(env.drop_dir.join("送信済").join(long)).unwrap(),
        bytes,
        "the clerk's copy keeps its own name"
    );
    let note =
        std::fs::read_to_string(env.drop_dir.join("送信済").join(format!("{long}.結果.txt")))
            .unwrap();
    assert!(
        note.contains(&format!("送信時の名前: {send_name}")),
        "{note}"
    );
}

#[test]
fn a_disability_claim_is_refused_with_the_reason_and_never_sent() {
    let mut env = Env::new();
    env.start_daemon();
    let month = env.month.to_string();
    let shogai = format!(
        "1,1,0,1,J11,0,1379999996,0,7,{month},\r\n2,2,\"J111\",01,{},139998,1379999996,1,0\r\n3,3\r\n",
        env.month.previous()
    );
    env.drop_atomic("KJ261201.CSV", shogai.as_bytes());
    let entry = env.wait_state(&sha256_hex(shogai.as_bytes()), "refused", T);
    assert_eq!(entry["errors"], serde_json::json!(["shogai.refused"]));
    assert!(env.received().is_empty(), "nothing reached the federation");
    let reason =
        std::fs::read_to_string(env.drop_dir.join("エラー/KJ261201.CSV.エラー.txt")).unwrap();
    assert!(reason.starts_with('\u{feff}'), "UTF-8 with BOM for Notepad");
    assert!(reason.contains("障害福祉サービス"), "{reason}");
    assert!(reason.contains("介護給付費の請求だけ"), "{reason}");
    assert!(
        reason.contains("long-term-care (介護) claims only"),
        "{reason}"
    );
    assert!(reason.contains("\r\n"), "CRLF for Notepad");
}
