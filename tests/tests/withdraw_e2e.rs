//! Withdraw (取消) through real processes: `kaigo-relay withdraw` hands the request to the running
//! daemon (which holds the store) or does it itself when the daemon is stopped; the gateway
//! withdraws the submission, the store records it, and the same bytes may then be sent again.
//! Past the withdraw cut-off the federation refuses, and the clerk is told why.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tests::{Env, bins, sha256_hex};

const T: Duration = Duration::from_secs(30);

fn withdraw(env: &Env, receipt: &str) -> (bool, Value) {
    let out = Command::new(&bins().relay)
        .args(["withdraw", "--json", "--config"])
        .arg(&env.daemon_config)
        .arg(receipt)
        .output()
        .expect("run kaigo-relay withdraw");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "withdraw printed no JSON ({e}): {text}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            env.logs()
        )
    });
    (out.status.success(), v)
}

fn sim_status(env: &Env, receipt: &str) -> String {
    env.received()
        .into_iter()
        .find(|r| r["receipt_id"] == receipt)
        .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

#[test]
fn withdraw_through_the_running_daemon_and_directly_then_resend() {
    let mut env = Env::new();
    env.start_daemon();
    let bytes = env.claim(&["0000300001"], 31);
    let sha = sha256_hex(&bytes);
    env.drop_atomic("KW000001.CSV", &bytes);
    let entry = env.wait_state(&sha, "accepted", T);
    let receipt = entry["receipt_id"].as_str().unwrap().to_owned();

    // The daemon is running: the command hands the request over and prints the answer.
    let (ok, answer) = withdraw(&env, &receipt);
    assert!(ok, "{answer}\n{}", env.logs());
    assert_eq!(answer["withdrawn"], true);
    assert_eq!(answer["file_name"], "KW000001.CSV");
    assert!(
        answer["message_ja"]
            .as_str()
            .unwrap()
            .contains("取り消しました")
    );
    assert_eq!(sim_status(&env, &receipt), "withdrawn");
    let entry = env.wait_state(&sha, "withdrawn", T);
    assert!(
        entry["note_ja"].as_str().unwrap().contains("取消済み"),
        "{entry}"
    );

    // Withdrawing again is harmless.
    let (ok, again) = withdraw(&env, &receipt);
    assert!(ok, "{again}");
    assert!(
        again["message_ja"]
            .as_str()
            .unwrap()
            .contains("すでに取消済み")
    );

    // The same bytes dropped again are sent again (not refused as a duplicate).
    env.drop_atomic("KW000001.CSV", &bytes);
    let resent = env.wait_for("the resend to be accepted", T, |env| {
        env.status()
            .into_iter()
            .find(|s| s["sha256"] == sha.as_str() && s["state"] == "accepted")
    });
    let second = resent["receipt_id"].as_str().unwrap().to_owned();
    assert_ne!(second, receipt);
    let at_sim: Vec<Value> = env
        .received()
        .into_iter()
        .filter(|r| r["sha256"] == sha.as_str())
        .collect();
    assert_eq!(at_sim.len(), 2, "{at_sim:?}");

    // With the daemon stopped, the command withdraws by itself.
    let status = env.daemon().terminate();
    assert!(status.success(), "{}", env.logs());
    let (ok, answer) = withdraw(&env, &second);
    assert!(ok, "{answer}");
    assert_eq!(sim_status(&env, &second), "withdrawn");
    let states: Vec<String> = env
        .status()
        .iter()
        .filter(|s| s["sha256"] == sha.as_str())
        .map(|s| s["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, vec!["withdrawn", "withdrawn"]);

    // An unknown receipt: a clear refusal, exit status 1.
    let (ok, answer) = withdraw(&env, "R999999999");
    assert!(!ok);
    assert!(
        answer["message_ja"]
            .as_str()
            .unwrap()
            .contains("記録にありません")
    );

    // Past the withdraw cut-off the federation refuses, and nothing changes.
    env.start_daemon();
    let bytes = env.claim(&["0000300002"], 32);
    let sha = sha256_hex(&bytes);
    env.drop_atomic("KW000002.CSV", &bytes);
    let entry = env.wait_state(&sha, "accepted", T);
    let third = entry["receipt_id"].as_str().unwrap().to_owned();
    env.set_sim_clock("2026-12-11T09:00:00+09:00");
    let (ok, answer) = withdraw(&env, &third);
    assert!(!ok, "{answer}");
    assert!(
        answer["message_ja"]
            .as_str()
            .unwrap()
            .contains("取消の受付期限"),
        "{answer}"
    );
    assert_eq!(sim_status(&env, &third), "accepted");
    let entry = env.wait_state(&sha, "accepted", T);
    assert_eq!(entry["state"], "accepted");

    // Every withdrawal, done or refused, is in the audit log.
    env.daemon().terminate();
    let store =
        kaigo_relay::store::Store::open_read_only(&env.state_dir().join("kaigo-relay.redb"))
            .unwrap();
    let actions: Vec<String> = store
        .audit_log(100)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.iter().filter(|a| *a == "withdrawn").count() >= 2,
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a == "withdraw_refused"),
        "{actions:?}"
    );
}
