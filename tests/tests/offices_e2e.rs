//! Offices registered on the appliance (`kaigo-relay office add|end|list`) rather than in the
//! config file, through the running daemon: the simulator registers a third office and issues
//! its certificate, the office is added with a PKCS#12 bundle made by `openssl`, the daemon
//! starts its pipeline again with it and sends that office's claims; the passwords are sealed
//! in the store (never in clear in the file), the office survives a restart, and once ended
//! its claims for the month are refused with the reason. `user passwd --password-stdin` sets
//! a password that must be changed at the next login.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use federation_sim::{GenOptions, Month, Style, generate};
use serde_json::{Value, json};
use tests::{CARE_OFFICE, Env, bins, http_json, relay_ok};

const T: Duration = Duration::from_secs(60);

/// The office `number` as `office list --json` shows it.
fn listed_office(env: &Env, number: &str) -> Value {
    let list: Value = serde_json::from_str(&cli(env, &["office", "list", "--json"])).unwrap();
    list["offices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["office_number"] == number)
        .unwrap_or_else(|| panic!("{number} not in {list}"))
        .clone()
}

fn cli(env: &Env, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", env.daemon_config.to_str().unwrap()]);
    String::from_utf8(relay_ok(all).stdout).unwrap()
}

fn new_office_number() -> String {
    let body = "137999997";
    format!(
        "{body}{}",
        kaigo_relay::claim::mod10_check_digit(body).unwrap()
    )
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command (apt-get install -y openssl; .ci/run does it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn drop_claims(env: &Env, office: &str, prefix: char, seed: u64) -> Vec<String> {
    let files = generate(&GenOptions {
        office: office.into(),
        processing_month: Month::parse("202612").unwrap(),
        members: 2,
        style: Style::Qkan,
        seed,
        service_month: None,
        insured_numbers: None,
    })
    .unwrap();
    let mut shas = Vec::new();
    for f in files {
        shas.push(tests::sha256_hex(&f.bytes));
        env.drop_atomic(&format!("{prefix}{}", &f.name[1..]), &f.bytes);
    }
    shas
}

#[test]
fn an_office_added_on_the_appliance_is_sent_for_survives_a_restart_and_ends() {
    let mut env = Env::new();
    env.start_daemon();
    let _ = env.admin_url();
    let number = new_office_number();

    // The federation registers the office and issues its certificate.
    let reg = http_json(
        "POST",
        &format!("{}/sim/offices", env.control_url),
        Some(&json!({
            "office_number": number,
            "name": "テスト通所介護",
            "user_id": "KJ10000003",
            "password": "fed-pass-Three3",
            "certificate_fingerprints": [],
        })),
    );
    let cert = reg["client_cert_path"].as_str().unwrap().to_owned();
    let key = reg["client_key_path"].as_str().unwrap().to_owned();
    let dir = env.dir.path().to_owned();
    let p12 = dir.join("third.p12");
    openssl(&[
        "pkcs12",
        "-export",
        "-in",
        &cert,
        "-inkey",
        &key,
        "-out",
        p12.to_str().unwrap(),
        "-passout",
        "pass:bundle-Phrase-9",
    ]);
    std::fs::write(dir.join("third.password"), "fed-pass-Three3\n").unwrap();
    std::fs::write(dir.join("third.p12pass"), "bundle-Phrase-9\n").unwrap();

    // A wrong passphrase is refused before anything is stored.
    std::fs::write(dir.join("wrong.p12pass"), "not-the-phrase\n").unwrap();
    let refused = Command::new(&bins().relay)
        .args(["office", "add", "--config"])
        .arg(&env.daemon_config)
        .args([
            "--number",
            &number,
            "--name",
            "テスト通所介護",
            "--user-id",
            "KJ10000003",
        ])
        .arg("--password-file")
        .arg(dir.join("third.password"))
        .arg("--p12")
        .arg(&p12)
        .arg("--p12-password-file")
        .arg(dir.join("wrong.p12pass"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("電子証明書"), "{why}");
    // Every refusal names its catalogue entry, which `explain` prints.
    assert!(
        why.contains("kaigo-relay explain offices.certificate"),
        "{why}"
    );
    // A bad check digit, too.
    let bad_number = format!("{}{}", &number[..9], (number.as_bytes()[9] - b'0' + 1) % 10);
    let refused = Command::new(&bins().relay)
        .args(["office", "add", "--config"])
        .arg(&env.daemon_config)
        .args([
            "--number",
            &bad_number,
            "--name",
            "x",
            "--user-id",
            "KJ10000003",
        ])
        .arg("--password-file")
        .arg(dir.join("third.password"))
        .arg("--p12")
        .arg(&p12)
        .arg("--p12-password-file")
        .arg(dir.join("third.p12pass"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("kaigo-relay explain offices.invalid"), "{why}");

    let added = cli(
        &env,
        &[
            "office",
            "add",
            "--number",
            &number,
            "--name",
            "テスト通所介護",
            "--user-id",
            "KJ10000003",
            "--password-file",
            dir.join("third.password").to_str().unwrap(),
            "--p12",
            p12.to_str().unwrap(),
            "--p12-password-file",
            dir.join("third.p12pass").to_str().unwrap(),
        ],
    );
    assert!(added.contains(&number), "{added}");
    // The same number again is refused, and the code it names explains itself.
    let again = Command::new(&bins().relay)
        .args(["office", "add", "--config"])
        .arg(&env.daemon_config)
        .args([
            "--number",
            &number,
            "--name",
            "x",
            "--user-id",
            "KJ10000003",
        ])
        .arg("--password-file")
        .arg(dir.join("third.password"))
        .arg("--p12")
        .arg(&p12)
        .arg("--p12-password-file")
        .arg(dir.join("third.p12pass"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    let why = String::from_utf8_lossy(&again.stderr);
    assert!(why.contains("kaigo-relay explain offices.exists"), "{why}");
    let explained = relay_ok(["explain", "offices.exists"]);
    let text = String::from_utf8(explained.stdout).unwrap();
    let entry = admin_ui::help::find("offices.exists").unwrap();
    assert!(
        text.contains(entry.title_ja) && text.contains(entry.remedy_en.lines().next().unwrap()),
        "{text}"
    );
    let unknown = Command::new(&bins().relay)
        .args(["explain", "offices.no_such_thing"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    let list: Value = serde_json::from_str(&cli(&env, &["office", "list", "--json"])).unwrap();
    let offices = list["offices"].as_array().unwrap();
    assert_eq!(offices.len(), 3, "{list}");
    let third = offices
        .iter()
        .find(|o| o["office_number"] == number.as_str())
        .unwrap();
    assert_eq!(third["managed_by_config"], false);
    assert_eq!(third["status"], "active");
    assert!(third["certificate_expires"].as_str().is_some(), "{third}");
    assert!(
        !list.to_string().contains("fed-pass"),
        "no password in the list"
    );

    // The daemon picked it up without a restart: its claims go through.
    let shas = drop_claims(&env, &number, 'C', 3);
    for sha in &shas {
        env.wait_state(sha, "accepted", T);
    }
    let log = std::fs::read_to_string(dir.join("daemon-1.log")).unwrap();
    assert!(
        log.contains("the offices changed"),
        "the pipeline started again"
    );

    // The federation password is changed at the federation: claims stop with a reason, and
    // `office update` gives the appliance the new one (no re-registration, nothing else
    // touched); the stopped claim then goes through when sent again.
    http_json(
        "POST",
        &format!("{}/sim/offices", env.control_url),
        Some(&json!({
            "office_number": number,
            "name": "テスト通所介護",
            "user_id": "KJ10000003",
            "password": "fed-pass-Four4",
            "certificate_fingerprints": [],
        })),
    );
    let stuck = drop_claims(&env, &number, 'E', 5);
    for sha in &stuck {
        env.wait_state(sha, "failed_needs_attention", T);
    }
    std::fs::write(dir.join("fourth.password"), "fed-pass-Four4\n").unwrap();
    // A certificate half given is refused before anything changes.
    let half = Command::new(&bins().relay)
        .args(["office", "update", "--config"])
        .arg(&env.daemon_config)
        .args(["--number", &number, "--p12"])
        .arg(&p12)
        .output()
        .unwrap();
    assert!(!half.status.success());
    // The password, and the certificate switched from the PKCS#12 bundle to its PEM pair.
    let updated = cli(
        &env,
        &[
            "office",
            "update",
            "--number",
            &number,
            "--password-file",
            dir.join("fourth.password").to_str().unwrap(),
            "--cert",
            &cert,
            "--key",
            &key,
        ],
    );
    assert!(updated.contains(&number), "{updated}");
    // A config-file office is changed in the config file, not here.
    let refused = Command::new(&bins().relay)
        .args(["office", "update", "--config"])
        .arg(&env.daemon_config)
        .args(["--number", CARE_OFFICE])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("kaigo-relay explain offices.managed_by_config"),
        "{why}"
    );
    // The clerk sends the stopped claims again from their pages; now they go through.
    let first = env.add_user(&["--id", "jimu", "--role", "staff", "--grant", &number]);
    let mut clerk = env.browser();
    assert_eq!(clerk.login("jimu", &first).status, 303);
    let token = clerk.csrf();
    let changed = clerk.post(
        "/account/password",
        &[
            ("old_password", &first),
            ("new_password", "yuuhi-no-oka-42"),
            ("new_password_confirm", "yuuhi-no-oka-42"),
            ("csrf_token", &token),
        ],
    );
    assert_eq!(changed.status, 303, "{}", changed.text());
    for sha in &stuck {
        let sub = env.wait_state(sha, "failed_needs_attention", T);
        let id = sub["id"].as_str().unwrap().to_owned();
        let token = clerk.csrf();
        let resent = clerk.post(
            &format!("/submissions/{id}/resend"),
            &[("csrf_token", &token)],
        );
        assert!(resent.status < 400, "{}", resent.text());
        env.wait_state(sha, "accepted", T);
    }
    let third = listed_office(&env, &number);
    assert_eq!(third["managed_by_config"], false, "{third}");
    assert!(third["certificate_expires"].as_str().is_some(), "{third}");

    // Sealed at rest: neither secret is in the store file, and both are in the key's keeping.
    env.daemon().terminate();
    let store = std::fs::read(env.state_dir().join("kaigo-relay.redb")).unwrap();
    for secret in [
        "fed-pass-Three3",
        "fed-pass-Four4",
        "bundle-Phrase-9",
        "pw-care-1",
    ] {
        assert!(
            !store.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} in clear in the store"
        );
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(env.state_dir().join("secret.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // After a restart the office is still sent for, from the store.
    env.start_daemon();
    let _ = env.admin_url();
    let more = drop_claims(&env, &number, 'D', 4);
    for sha in &more {
        env.wait_state(sha, "accepted", T);
    }

    // Ended from this month: its next claims are refused, with the reason; the others go on.
    let ended = cli(
        &env,
        &["office", "end", "--number", &number, "--from", "202612"],
    );
    assert!(ended.contains("202612"), "{ended}");
    let late = drop_claims(&env, &number, 'E', 5);
    let refused = env.wait_state(&late[0], "refused", T);
    assert!(
        refused["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().contains("office")),
        "{refused}"
    );
    let still = env.claim(&["0000900001"], 91);
    let sha = tests::sha256_hex(&still);
    env.drop_atomic("KK261291.CSV", &still);
    env.wait_state(&sha, "accepted", T);
    let third = listed_office(&env, &number);
    assert_eq!(third["status"], "ended");
    assert_eq!(third["ended_from_month"], "202612");
    // The plain list says from when, as the Offices page does.
    let plain = cli(&env, &["office", "list"]);
    let line = plain
        .lines()
        .find(|l| l.starts_with(number.as_str()))
        .unwrap_or_else(|| panic!("{number} not listed:\n{plain}"));
    assert!(
        line.contains("終了（202612 から） / ended from 202612"),
        "{line}"
    );

    // An office of the config file is not changed here.
    let out = Command::new(&bins().relay)
        .args(["office", "end", "--config"])
        .arg(&env.daemon_config)
        .args(["--number", CARE_OFFICE, "--from", "202701"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("設定ファイル"));

    // user passwd --password-stdin: set by an administrator, so it must be changed at login.
    cli(
        &env,
        &[
            "user",
            "add",
            "--id",
            "clerk9",
            "--role",
            "staff",
            "--grant",
            CARE_OFFICE,
        ],
    );
    let mut child = Command::new(&bins().relay)
        .args(["user", "passwd", "--config"])
        .arg(&env.daemon_config)
        .args(["--id", "clerk9", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hanami-no-kisetsu\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hanami"));
    let mut b = env.browser();
    let page = b.login("clerk9", "hanami-no-kisetsu");
    assert_eq!(page.status, 303);
    assert_eq!(
        page.header("location").as_deref(),
        Some("/account/password")
    );
}
