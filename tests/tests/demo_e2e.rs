//! `kaigo-relay demo`: on a fresh folder it shows the sample files going through within
//! seconds, on any day of the month; `--setup-only` prepares two separate processes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tests::{Proc, bins, http_json, wait_until};

const DONE: &str = "すべてのサンプルファイルの処理が終わりました";

fn read_demo_json(dir: &Path) -> Value {
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("demo.json")).unwrap()).unwrap();
    for key in [
        "drop_dir",
        "daemon_config",
        "sim_config",
        "sim_control_url",
        "processing_month",
        "offices",
    ] {
        assert!(!v[key].is_null(), "demo.json lacks {key}: {v}");
    }
    let offices = v["offices"].as_array().unwrap();
    assert_eq!(offices.len(), 2);
    for o in offices {
        let n = o["office_number"].as_str().unwrap();
        assert!(n.parse::<kaigo_relay::claim::OfficeNumber>().is_ok(), "{n}");
        assert!(!o["name"].as_str().unwrap().is_empty());
    }
    v
}

fn status(config: &str) -> Vec<Value> {
    tests::status_json(Path::new(config)).unwrap()
}

fn count(subs: &[Value], state: &str) -> usize {
    subs.iter().filter(|s| s["state"] == state).count()
}

fn run_demo_until_done(dir: &Path, log: &str) -> (Proc, Value) {
    let mut cmd = Command::new(&bins().relay);
    cmd.args(["demo", "--dir"]).arg(dir);
    let demo = Proc::spawn("kaigo-relay demo", cmd, dir.parent().unwrap().join(log));
    let finished = wait_until(Duration::from_secs(60), || {
        demo.log_text().contains(DONE).then_some(())
    });
    assert!(
        finished.is_some(),
        "the demo did not finish its samples:\n{}",
        demo.log_text()
    );
    let info = read_demo_json(dir);
    (demo, info)
}

#[test]
fn the_demo_sends_its_samples_through_and_can_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let (mut demo, info) = run_demo_until_done(&dir, "demo-1.log");
    let text = demo.log_text();
    assert!(
        text.contains(info["drop_dir"].as_str().unwrap()),
        "prints the drop folder:\n{text}"
    );
    assert!(text.contains("受付結果: 受付済 ○"), "{text}");
    assert!(
        text.contains(".エラー.txt"),
        "points at the reason file:\n{text}"
    );

    let received = http_json(
        "GET",
        &format!("{}/sim/received", info["sim_control_url"].as_str().unwrap()),
        None,
    );
    let received = received.as_array().unwrap();
    assert_eq!(received.len(), 3, "{received:?}");
    assert!(
        received
            .iter()
            .all(|r| r["presented"] == 1 && r["reception_mark"] == "○")
    );

    let status_code = demo.terminate();
    assert!(
        status_code.success(),
        "{status_code:?}\n{}",
        demo.log_text()
    );
    let config = info["daemon_config"].as_str().unwrap().to_owned();
    let subs = status(&config);
    assert_eq!(
        (
            count(&subs, "accepted"),
            count(&subs, "refused"),
            subs.len()
        ),
        (3, 1, 4),
        "{subs:?}"
    );
    let drop = Path::new(info["drop_dir"].as_str().unwrap());
    let mut sent: Vec<String> = std::fs::read_dir(drop.join("送信済"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    sent.sort();
    assert_eq!(
        sent.len(),
        6,
        "three files and their result notes: {sent:?}"
    );
    assert_eq!(
        sent.iter().filter(|n| n.ends_with(".結果.txt")).count(),
        3,
        "{sent:?}"
    );
    assert_eq!(
        std::fs::read_dir(drop.join("エラー")).unwrap().count(),
        2,
        "file and its reason"
    );

    // A second run reuses the folder (same certificates, passwords, simulator state) and
    // drops new samples, which are not mistaken for duplicates of the first ones.
    let (mut again, info2) = run_demo_until_done(&dir, "demo-2.log");
    assert_eq!(info2["daemon_config"], info["daemon_config"]);
    assert!(again.terminate().success(), "{}", again.log_text());
    let subs = status(&config);
    assert_eq!(
        (
            count(&subs, "accepted"),
            count(&subs, "refused"),
            count(&subs, "duplicate")
        ),
        (6, 2, 0),
        "{subs:?}"
    );
}

#[test]
fn setup_only_prepares_two_separate_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = tests::relay_ok([
        std::ffi::OsStr::new("demo"),
        "--setup-only".as_ref(),
        "--dir".as_ref(),
        dir.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("federation-sim serve --config"), "{stdout}");
    let info = read_demo_json(&dir);
    let drop = Path::new(info["drop_dir"].as_str().unwrap());
    assert_eq!(
        std::fs::read_dir(drop)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_file())
            .count(),
        4,
        "the samples wait in the drop folder"
    );

    let mut sim_cmd = Command::new(&bins().sim);
    sim_cmd
        .args(["serve", "--config"])
        .arg(info["sim_config"].as_str().unwrap());
    let _sim = Proc::spawn("federation-sim", sim_cmd, tmp.path().join("sim.log"));
    let mut relay_cmd = Command::new(&bins().relay);
    relay_cmd
        .args(["run", "--config"])
        .arg(info["daemon_config"].as_str().unwrap());
    let mut relay = Proc::spawn("kaigo-relay", relay_cmd, tmp.path().join("relay.log"));

    let config = info["daemon_config"].as_str().unwrap().to_owned();
    let done = wait_until(Duration::from_secs(60), || {
        let subs = status(&config);
        (count(&subs, "accepted") == 3 && count(&subs, "refused") == 1).then_some(subs)
    });
    assert!(done.is_some(), "samples not through:\n{}", relay.log_text());
    let received = http_json(
        "GET",
        &format!("{}/sim/received", info["sim_control_url"].as_str().unwrap()),
        None,
    );
    assert_eq!(received.as_array().unwrap().len(), 3);
    assert!(relay.terminate().success(), "{}", relay.log_text());
}
