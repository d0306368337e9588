//! Intake in the two harder places: a folder on a network mount, where inotify sees nothing
//! (`intake.mode = "poll"`), and a folder crowded with 100 000 files that cannot be taken yet,
//! where a claim renamed in must still go out at once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::time::{Duration, Instant};

use tests::{Env, EnvOptions, sha256_hex, write_slowly};

const T: Duration = Duration::from_secs(60);

#[test]
fn poll_mode_takes_files_renamed_in_and_written_in_place() {
    let mut env = Env::with_options(EnvOptions {
        intake_mode: "poll",
        rescan_interval_secs: 1,
        ..EnvOptions::default()
    });
    env.start_daemon();
    let renamed = env.claim(&["0000500001"], 51);
    env.drop_atomic("KP000001.CSV", &renamed);
    let in_place = env.claim(&["0000500002"], 52);
    let cut = in_place.len() / 2;
    write_slowly(
        &env.drop_dir.join("KP000002.CSV"),
        &in_place,
        &[cut],
        Duration::from_millis(300),
    );
    for bytes in [&renamed, &in_place] {
        let entry = env.wait_state(&sha256_hex(bytes), "accepted", T);
        assert_eq!(entry["attempts"], 1, "{entry}");
    }
    assert!(env.daemon().log_text().contains("Poll"), "{}", env.logs());
}

#[test]
fn a_folder_crowded_with_100_000_waiting_files_does_not_hold_up_a_new_claim() {
    let mut env = Env::with_options(EnvOptions {
        // The crowd never completes during the test: it stays "being written".
        incomplete_grace_secs: 3600,
        ..EnvOptions::default()
    });
    // 100 000 files a writer has not finished: the start of a claim without its end record.
    let partial = {
        let full = env.claim(&["0000500003"], 53);
        full[..full.len() / 2].to_vec()
    };
    for n in 0..100_000u32 {
        std::fs::write(env.drop_dir.join(format!("W{n:07}.CSV")), &partial).unwrap();
    }
    env.start_daemon();
    // Let intake list them all and start looking at them.
    std::thread::sleep(Duration::from_secs(3));

    let bytes = env.claim(&["0000500004"], 54);
    let sha = sha256_hex(&bytes);
    let dropped = Instant::now();
    env.drop_atomic("KC000001.CSV", &bytes);
    env.wait_state(&sha, "accepted", T);
    let took = dropped.elapsed();
    eprintln!("a claim renamed into a folder of 100 000 waiting files was accepted in {took:?}");
    // The crowd is untouched: still there, none taken or refused.
    let left = std::fs::read_dir(&env.drop_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('W')
        })
        .count();
    assert_eq!(left, 100_000);
    assert_eq!(env.status().len(), 1, "only the new claim was taken");
    let status = env.daemon().terminate();
    assert!(
        status.success(),
        "stops cleanly: {status:?}\n{}",
        env.logs()
    );
}
