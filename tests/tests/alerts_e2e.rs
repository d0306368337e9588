//! Alerts end to end: a real SMTP submission server (aiosmtpd with STARTTLS and AUTH) and an
//! HTTPS webhook receiver on loopback, a daemon that refuses a claim file, one whose
//! certificate alerts are raised while the mail server is down, and `kaigo-relay alert test`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde_json::Value;
use tests::alert_sinks::{Sink, SinkCerts, free_port};
use tests::{CARE_OFFICE, Env, EnvOptions, PLAN_OFFICE, bins, sha256_hex, wait_until};

const T: Duration = Duration::from_secs(60);
const SECRET: &str = "webhook-secret-for-tests-0123456789";

/// The `[alerts]` section for receivers on these ports.
fn alerts_toml(smtp_port: u16, hook_port: u16, extra: &str) -> String {
    format!(
        r#"
[alerts]
admin_url = "https://relay.example.local:8443"
retry_initial_secs = 1
retry_max_secs = 2
{extra}
[alerts.mail]
server = "127.0.0.1"
port = {smtp_port}
security = "starttls"
username = "relay"
password_file = "certs/smtp.password"
from = "kaigo-relay <relay@example.jp>"
ca_file = "certs/sink-ca.pem"
timeout_secs = 5

[[alerts.recipient]]
name = "本部 事務"
email = "honbu@example.jp"

[[alerts.webhook]]
name = "chat"
url = "https://127.0.0.1:{hook_port}/hooks/kaigo"
secret_file = "certs/webhook.secret"
ca_file = "certs/sink-ca.pem"
timeout_secs = 5
"#
    )
}

struct Setup {
    env: Env,
    certs: SinkCerts,
    smtp_port: u16,
    hook_port: u16,
}

fn setup(extra: &str) -> Setup {
    setup_with(extra, "")
}

/// `extra` goes into `[alerts]`, `sections` after it.
fn setup_with(extra: &str, sections: &str) -> Setup {
    let (smtp_port, hook_port) = (free_port(), free_port());
    let env = Env::with_options(EnvOptions {
        extra_toml: format!("{}\n{sections}", alerts_toml(smtp_port, hook_port, extra)),
        ..EnvOptions::default()
    });
    let certs = SinkCerts::make(&env.dir.path().join("certs"));
    std::fs::write(env.dir.path().join("certs/smtp.password"), "smtp-pass-42\n").unwrap();
    std::fs::write(
        env.dir.path().join("certs/webhook.secret"),
        format!("{SECRET}\n"),
    )
    .unwrap();
    Setup {
        env,
        certs,
        smtp_port,
        hook_port,
    }
}

impl Setup {
    fn smtp(&self) -> Sink {
        Sink::start(
            "smtp",
            self.smtp_port,
            &self.env.dir.path().join("mail"),
            &self.certs,
            ("relay", "smtp-pass-42"),
        )
    }

    fn webhook(&self) -> Sink {
        Sink::start(
            "webhook",
            self.hook_port,
            &self.env.dir.path().join("hook"),
            &self.certs,
            ("", ""),
        )
    }
}

/// Runs `kaigo-relay alert test` with `extra` arguments: its exit code and what it printed.
fn alert_test(env: &Env, extra: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(&bins().relay)
        .args(["alert", "test", "--config"])
        .arg(&env.daemon_config)
        .args(extra)
        .output()
        .expect("run kaigo-relay alert test");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn header<'a>(v: &'a Value, name: &str) -> &'a str {
    v["headers"][name].as_str().unwrap_or_default()
}

/// Checks the webhook's signature as a receiver would.
fn assert_signed(req: &Value) {
    let ts = header(req, "x-kaigo-relay-timestamp");
    let sig = header(req, "x-kaigo-relay-signature");
    let body = req["body"].as_str().unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(sig, want, "signature over timestamp.body");
    let age = jiff::Timestamp::now().as_second() - ts.parse::<i64>().unwrap();
    assert!((0..300).contains(&age), "the timestamp is now ({age} s)");
    // A tampered body does not verify.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body} ").as_bytes());
    assert_ne!(
        sig,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
}

fn wait_count(sink: &Sink, n: usize, what: &str, logs: impl Fn() -> String) -> Vec<Value> {
    wait_until(T, || {
        let r = sink.received();
        (r.len() >= n).then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: fewer than {n} received: {:?}\n{}",
            sink.received(),
            logs()
        )
    })
}

#[test]
fn a_refused_claim_reaches_mail_and_webhook_once_in_japanese_with_a_link_and_a_signature() {
    let mut s = setup("");
    let smtp = s.smtp();
    let hook = s.webhook();
    s.env.start_daemon();

    let insured = "1000000025";
    let refused = s.env.refused_claim(&[insured], 2);
    s.env.drop_atomic("KK02.CSV", &refused);
    let sub = s.env.wait_state(&sha256_hex(&refused), "refused", T);
    let id = sub["id"].as_str().unwrap().to_owned();

    let mails = wait_count(&smtp, 1, "mail", || s.env.logs());
    let m = &mails[0];
    assert_eq!(m["tls"], true, "sent after STARTTLS");
    assert_eq!(m["login"], "relay", "authenticated");
    assert_eq!(m["mail_from"], "relay@example.jp");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["honbu@example.jp"]));
    let subject = m["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("[kaigo-relay] 【要対応】請求ファイルにエラーがあり送信していません"),
        "{subject}"
    );
    assert!(
        subject.contains("テスト訪問介護"),
        "the office's name: {subject}"
    );
    assert!(
        m["raw_headers"]
            .as_str()
            .unwrap()
            .contains("Subject: [kaigo-relay] =?utf-8?b?"),
        "the subject is RFC 2047 encoded: {}",
        m["raw_headers"]
    );
    assert_eq!(m["content_type"], "text/plain");
    assert_eq!(m["charset"], "utf-8");
    assert!(header(m, "to").contains("honbu@example.jp"));
    assert!(header(m, "message-id").ends_with("@example.jp>"));
    assert!(!header(m, "date").is_empty());
    assert_eq!(header(m, "x-kaigo-relay-kind"), "claim_refused");
    assert_eq!(header(m, "auto-submitted"), "auto-generated");
    let body = m["body"].as_str().unwrap();
    assert!(
        body.contains(&format!("事業所: テスト訪問介護（{CARE_OFFICE}）")),
        "{body}"
    );
    assert!(body.contains("「KK02.CSV」にエラーが"), "{body}");
    assert!(body.contains("請求ソフトで直して"), "what to do: {body}");
    assert!(
        body.contains(&format!(
            "https://relay.example.local:8443/submissions/{id}"
        )),
        "a link to the submission: {body}"
    );
    assert!(
        !body.contains(insured),
        "no insured number in the mail: {body}"
    );
    assert!(!body.contains("English"), "Japanese only by default");

    let hooks = wait_count(&hook, 1, "webhook", || s.env.logs());
    let h = &hooks[0];
    assert_eq!(h["path"], "/hooks/kaigo");
    assert_signed(h);
    assert!(header(h, "content-type").starts_with("application/json"));
    assert_eq!(header(h, "x-kaigo-relay-event"), "claim_refused");
    let doc: Value = serde_json::from_str(h["body"].as_str().unwrap()).unwrap();
    assert_eq!(doc["delivery_id"], header(h, "x-kaigo-relay-delivery"));
    assert_eq!(doc["kind"], "claim_refused");
    assert_eq!(doc["group"], "claims");
    assert_eq!(doc["phase"], "event");
    assert_eq!(doc["offices"][0]["number"], CARE_OFFICE);
    assert_eq!(doc["offices"][0]["name"], "テスト訪問介護");
    assert_eq!(
        doc["url"],
        format!("https://relay.example.local:8443/submissions/{id}")
    );
    assert!(doc["text"].as_str().unwrap().contains("【要対応】"));
    assert!(!h["body"].as_str().unwrap().contains(insured));

    // The refusal is not told again, however many passes the dispatcher makes.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(smtp.received().len(), 1, "one mail for one refusal");
    assert_eq!(hook.received().len(), 1, "one webhook for one refusal");
}

#[test]
fn alerts_raised_while_the_mail_server_is_down_are_delivered_once_when_it_returns() {
    // Every certificate is "about to expire" with a warning period this long: a condition
    // that persists, one per office, raised at start.
    let mut s = setup("certificate_warning_days = 1000000");
    let hook = s.webhook();
    s.env.start_daemon();
    let hooks = wait_count(&hook, 2, "webhook", || {
        format!(
            "alerts: {:?}\n{}",
            tests::status_alerts(&s.env.daemon_config),
            s.env.logs()
        )
    });
    assert!(
        hooks
            .iter()
            .all(|h| header(h, "x-kaigo-relay-event") == "certificate_expiring")
    );
    // Mail is failing and being retried.
    wait_until(T, || {
        (s.env
            .logs()
            .matches("alert delivery failed; will retry")
            .count()
            >= 2)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no retry seen\n{}", s.env.logs()));
    // A crash while the server is down loses nothing.
    s.env.daemon().kill9();
    s.env.start_daemon();
    std::thread::sleep(Duration::from_secs(2));
    let smtp = s.smtp();
    let mails = wait_count(&smtp, 2, "mail", || s.env.logs());
    let mut offices: Vec<String> = mails
        .iter()
        .map(|m| {
            let body = m["body"].as_str().unwrap();
            assert!(
                m["subject"]
                    .as_str()
                    .unwrap()
                    .contains("クライアント証明書の有効期限が近づいています"),
                "{}",
                m["subject"]
            );
            assert!(body.contains("/offices"), "{body}");
            if body.contains(CARE_OFFICE) {
                CARE_OFFICE
            } else {
                PLAN_OFFICE
            }
            .to_owned()
        })
        .collect();
    offices.sort();
    assert_eq!(
        offices,
        vec![PLAN_OFFICE.to_owned(), CARE_OFFICE.to_owned()]
    );
    // The condition persists through many passes and another restart: still one message each.
    std::thread::sleep(Duration::from_secs(5));
    s.env.daemon().terminate();
    s.env.start_daemon();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        smtp.received().len(),
        2,
        "one mail per condition, not per poll"
    );
    let phases: Vec<String> = hook
        .received()
        .iter()
        .map(|h| {
            let doc: Value = serde_json::from_str(h["body"].as_str().unwrap()).unwrap();
            format!("{} {} {}", doc["phase"], doc["key"], doc["at"])
        })
        .collect();
    assert_eq!(
        phases.len(),
        2,
        "one webhook per condition, not per poll: {phases:?}"
    );
    let status = tests::status_alerts(&s.env.daemon_config).unwrap();
    assert_eq!(
        status
            .iter()
            .filter(|a| a["kind"] == "certificate_expiring")
            .count(),
        2,
        "{status:?}"
    );
}

#[test]
fn the_alert_test_command_reports_each_destination() {
    let s = setup("");
    let smtp = s.smtp();
    let hook = s.webhook();
    let run = |extra: &[&str]| alert_test(&s.env, extra);
    let (code, out) = run(&["--to", "kanri@example.jp"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("✓ mail:kanri@example.jp"), "{out}");
    assert!(out.contains("✓ mail:honbu@example.jp"), "{out}");
    assert!(out.contains("✓ webhook:chat"), "{out}");
    let mails = smtp.received();
    assert_eq!(mails.len(), 2);
    assert!(mails.iter().all(|m| {
        m["subject"]
            .as_str()
            .unwrap()
            .contains("【テスト】テスト通知")
    }));
    let hooks = hook.received();
    assert_eq!(hooks.len(), 1);
    assert_signed(&hooks[0]);
    assert_eq!(header(&hooks[0], "x-kaigo-relay-event"), "test");

    // A receiver that answers 503: the command says which and exits 1.
    std::fs::write(s.env.dir.path().join("hook/FAIL"), "").unwrap();
    let (code, out) = run(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("✗ webhook:chat"), "{out}");
    assert!(out.contains("503"), "{out}");
    assert!(out.contains("✓ mail:honbu@example.jp"), "{out}");
}

#[test]
fn a_clerk_who_registers_an_address_in_the_ui_hears_of_their_office_only() {
    let mut s = setup("");
    let smtp = s.smtp();
    let _hook = s.webhook();
    s.env.start_daemon();
    let _ = s.env.admin_url();
    // Two clerks, one per office, each registering an address on their account page.
    for (id, office, pw, mail) in [
        (
            "care-clerk",
            CARE_OFFICE,
            "haru-no-hi-pass-2026",
            "care@example.jp",
        ),
        (
            "plan-clerk",
            PLAN_OFFICE,
            "aki-no-yo-pass-2026",
            "plan@example.jp",
        ),
    ] {
        let one_time = s
            .env
            .add_user(&["--id", id, "--role", "staff", "--grant", office]);
        let mut b = s.env.browser();
        b.first_login(id, &one_time, pw);
        let token = b.csrf();
        let bad = b.post(
            "/account/alerts",
            &[("csrf_token", &token), ("email", "care at example")],
        );
        assert_eq!(bad.status, 422, "a malformed address is refused");
        assert!(bad.text().contains("メールアドレスとして正しくありません"));
        let saved = b.post(
            "/account/alerts",
            &[
                ("csrf_token", &token),
                ("email", mail),
                ("group", "claims"),
                ("group", "returns"),
                ("language", "both"),
            ],
        );
        assert_eq!(saved.status, 303, "{}", saved.text());
        let page = b.get("/account?alerts=1");
        assert!(page.text().contains("通知の設定を保存しました"));
        assert_eq!(page.input_values("email"), vec![mail.to_owned()]);
        let alerts = b.get("/alerts");
        assert_eq!(alerts.status, 200);
    }

    // A refused file of the care office.
    let refused = s.env.refused_claim(&["1000000033"], 3);
    s.env.drop_atomic("KK03.CSV", &refused);
    s.env.wait_state(&sha256_hex(&refused), "refused", T);
    let mails = wait_count(&smtp, 2, "mail", || s.env.logs());
    std::thread::sleep(Duration::from_secs(4));
    let mails = if smtp.received().len() > mails.len() {
        smtp.received()
    } else {
        mails
    };
    let mut to: Vec<String> = mails
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_owned())
        .collect();
    to.sort();
    assert_eq!(
        to,
        vec!["care@example.jp".to_owned(), "honbu@example.jp".to_owned()],
        "the care office's clerk and the head office; not the other office's clerk"
    );
    let clerk = mails
        .iter()
        .find(|m| m["rcpt_tos"][0] == "care@example.jp")
        .unwrap();
    let body = clerk["body"].as_str().unwrap();
    assert!(body.contains("---- English ----"), "both languages: {body}");
    assert!(body.contains("The claim file \"KK03.CSV\" has"), "{body}");
    assert!(
        header(clerk, "to").contains("care-clerk"),
        "{}",
        header(clerk, "to")
    );

    // The administrator's alerts page keeps the delivery log; a clerk's has none.
    let out = tests::relay_ok([
        "user",
        "reset-admin",
        "--config",
        s.env.daemon_config.to_str().unwrap(),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let pw = text
        .lines()
        .find_map(|l| {
            l.split_once("new password: ")
                .map(|(_, p)| p.trim().to_owned())
        })
        .expect("reset-admin prints the new password");
    let mut admin = s.env.browser();
    admin.first_login("admin", &pw, "kanri-sha-pass-2026");
    let page = admin.get("/alerts").text();
    assert!(page.contains("mail:care@example.jp"), "{page}");
    assert!(page.contains("webhook:chat"), "{page}");
    assert!(page.contains("送信済み"), "{page}");
    assert!(page.contains("テスト通知を送る"), "{page}");
    // The button sends a test to every destination at once and shows each outcome.
    let before = smtp.received().len();
    let token = admin.csrf();
    let tested = admin.post("/alerts/test", &[("csrf_token", &token)]);
    assert_eq!(tested.status, 200);
    let text = tested.text();
    assert!(text.contains("テスト通知を送りました"), "{text}");
    assert!(
        text.contains("mail:honbu@example.jp") && text.contains("webhook:chat"),
        "{text}"
    );
    let tests_sent: Vec<Value> = smtp.received().split_off(before);
    assert_eq!(
        tests_sent.len(),
        1,
        "the head office (the administrator has no address)"
    );
    assert!(
        tests_sent[0]["subject"]
            .as_str()
            .unwrap()
            .contains("【テスト】テスト通知")
    );
    let body = tests_sent[0]["body"].as_str().unwrap();
    assert!(
        body.contains("テスト通知です") && body.contains("（admin）"),
        "{body}"
    );
}

#[test]
fn new_returns_and_the_payment_notices_are_told_once_with_counts_only() {
    // The mirror keeps polling every second, as in the days after a submission.
    let mut s = setup_with(
        "",
        "[mirror]\nidle_interval_minutes = 1\nafter_submission_interval_secs = 1\nafter_submission_minutes = 600",
    );
    let hook = s.webhook();
    s.env.start_daemon();
    // …7 is returned by the simulator's month-end rules.
    let claim = s.env.claim(&["1000000017", "1000000041"], 1);
    s.env.drop_atomic("KK01.CSV", &claim);
    let sha = sha256_hex(&claim);
    s.env.wait_for("the claim accepted", T, |env| {
        env.status()
            .iter()
            .find(|x| x["sha256"] == sha.as_str())
            .filter(|x| x["state"] == "accepted" || x["state"] == "accepted_with_returns")
            .map(|_| ())
    });
    let advance = |phase: &str| {
        let v = tests::http_json(
            "POST",
            &format!("{}/sim/advance", s.env.control_url),
            Some(&serde_json::json!({ "phase": phase })),
        );
        assert_eq!(v["phase"], phase, "{v}");
    };
    let kinds = |kind: &str| -> Vec<Value> {
        hook.received()
            .into_iter()
            .filter(|h| header(h, "x-kaigo-relay-event") == kind)
            .collect()
    };
    advance("month_end");
    let returns = wait_until(T, || Some(kinds("returns_new")).filter(|v| !v.is_empty()))
        .unwrap_or_else(|| panic!("no returns_new: {:?}\n{}", hook.received(), s.env.logs()));
    let doc: Value = serde_json::from_str(returns[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(doc["offices"][0]["number"], CARE_OFFICE);
    assert!(
        doc["text"].as_str().unwrap().contains("1 件の返戻"),
        "{doc}"
    );
    assert_eq!(doc["url"], "https://relay.example.local:8443/returns");
    let raw = returns[0]["body"].as_str().unwrap();
    assert!(!raw.contains("1000000017"), "no insured number: {raw}");
    advance("payment");
    wait_until(T, || {
        Some(kinds("payment_notice")).filter(|v| !v.is_empty())
    })
    .unwrap_or_else(|| panic!("no payment_notice: {:?}\n{}", hook.received(), s.env.logs()));
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        kinds("returns_new").len(),
        1,
        "one returns list, one message"
    );
    let out = tests::relay_ok([
        "notices",
        "--json",
        "--config",
        s.env.daemon_config.to_str().unwrap(),
    ]);
    let notices: Value = serde_json::from_slice(&out.stdout).unwrap();
    let payment_notices = notices["notices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| {
            n["office_number"] == CARE_OFFICE
                && matches!(
                    n["kind_id"].as_str().unwrap_or_default(),
                    "7513" | "7521" | "7541" | "7611" | "7621" | "7631"
                )
        })
        .count();
    assert!(
        payment_notices >= 2,
        "the payment cycle brought {payment_notices} notices"
    );
    let payments = kinds("payment_notice");
    assert_eq!(
        payments.len(),
        1,
        "one message per office and month, however many payment notices: {payments:?}"
    );
    for h in hook.received() {
        assert_signed(&h);
    }
}

#[test]
fn a_digest_recipient_gets_one_message_with_everything_at_its_hour() {
    // The digest goes out at the start of the minute after next (JST), so that both refusals
    // below are in it.
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(120))
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::fixed(jiff::tz::offset(9)));
    let mut s = setup_with(
        &format!("digest_at_jst = \"{:02}:{:02}\"", at.hour(), at.minute()),
        "",
    );
    // The head office takes its alerts as a digest.
    let cfg = std::fs::read_to_string(&s.env.daemon_config).unwrap();
    let cfg = cfg.replace(
        "email = \"honbu@example.jp\"\n",
        "email = \"honbu@example.jp\"\ndigest = true\n",
    );
    std::fs::write(&s.env.daemon_config, cfg).unwrap();
    let smtp = s.smtp();
    let hook = s.webhook();
    s.env.start_daemon();
    for (name, no) in [("KK04.CSV", 4), ("KK05.CSV", 5)] {
        let b = s.env.refused_claim(&["1000000058"], no);
        s.env.drop_atomic(name, &b);
        s.env.wait_state(&sha256_hex(&b), "refused", T);
    }
    // The webhook is immediate; the mail waits for the digest.
    wait_count(&hook, 2, "webhook", || s.env.logs());
    assert!(
        smtp.received().is_empty(),
        "nothing before the digest's hour"
    );
    let mails = wait_until(Duration::from_secs(200), || {
        Some(smtp.received()).filter(|m| !m.is_empty())
    })
    .unwrap_or_else(|| panic!("no digest\n{}", s.env.logs()));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(smtp.received().len(), 1, "one digest");
    let m = &mails[0];
    assert_eq!(m["subject"], "[kaigo-relay] 通知のまとめ（2 件）");
    let body = m["body"].as_str().unwrap();
    assert!(
        body.contains("1. 【要対応】請求ファイルにエラーがあり送信していません"),
        "{body}"
    );
    assert!(
        body.contains("2. 【要対応】請求ファイルにエラーがあり送信していません"),
        "{body}"
    );
    assert!(
        body.contains("「KK04.CSV」") && body.contains("「KK05.CSV」"),
        "{body}"
    );
}

#[test]
fn mail_goes_over_implicit_tls_too_and_a_wrong_password_is_reported() {
    let s = setup("");
    let cfg = std::fs::read_to_string(&s.env.daemon_config).unwrap();
    std::fs::write(
        &s.env.daemon_config,
        cfg.replace("security = \"starttls\"", "security = \"tls\""),
    )
    .unwrap();
    let smtps = Sink::start(
        "smtps",
        s.smtp_port,
        &s.env.dir.path().join("mail"),
        &s.certs,
        ("relay", "smtp-pass-42"),
    );
    let _hook = s.webhook();
    let run = || alert_test(&s.env, &[]);
    let (code, out) = run();
    assert_eq!(code, Some(0), "{out}");
    let mails = smtps.received();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["tls"], true, "implicit TLS");
    assert_eq!(mails[0]["login"], "relay");
    // A wrong password: the server refuses AUTH and the command says so.
    std::fs::write(s.env.dir.path().join("certs/smtp.password"), "wrong\n").unwrap();
    let (code, out) = run();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("✗ mail:honbu@example.jp"), "{out}");
    assert!(
        out.contains("535") || out.to_lowercase().contains("auth"),
        "{out}"
    );
    assert_eq!(
        smtps.received().len(),
        1,
        "nothing accepted without the password"
    );
}
