//! The admin UI's home page over the real daemon: the reception window the gateway reported
//! (days and hours left on its clock), each office's files of the month and the federation's
//! answers, and the appliance's disks and memory — counted from the store for the offices the
//! account may see, and nothing of the others.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::time::Duration;

use tests::{CARE_OFFICE, Env, PLAN_OFFICE, sha256_hex};

const T: Duration = Duration::from_secs(60);

/// The text of the table row of an office on the home page.
fn office_row(page: &str, office: &str) -> Option<String> {
    let at = page.find(&format!("<a href=\"/submissions?office={office}\">"))?;
    let end = page[at..].find("</tr>")? + at;
    Some(page[at..end].to_owned())
}

/// The numbers in a row's cells, in order.
fn cells(row: &str) -> Vec<String> {
    row.split("<td>")
        .skip(1)
        .map(|c| {
            c.chars()
                .skip_while(|ch| !ch.is_ascii_digit())
                .take_while(char::is_ascii_digit)
                .collect()
        })
        .collect()
}

#[test]
fn the_home_page_counts_what_each_visible_office_sent_and_what_came_back() {
    let mut env = Env::new();
    env.start_daemon();
    let _ = env.admin_url();

    let accepted = env.claim(&["1000000017"], 1);
    // A claim of the same month with a single quote in an item: refused by the checker.
    let refused = env.refused_claim(&["1000000025"], 2);
    env.drop_atomic("KK01.CSV", &accepted);
    env.drop_atomic("KK02.CSV", &refused);
    env.wait_state(&sha256_hex(&accepted), "accepted", T);
    env.wait_state(&sha256_hex(&refused), "refused", T);

    let one_time = env.add_user(&["--id", "clerk", "--role", "staff", "--grant", CARE_OFFICE]);
    let mut b = env.browser();
    b.first_login("clerk", &one_time, "haru-no-hi-pass-2026");
    let home = b.get("/");
    assert_eq!(home.status, 200);
    let page = home.text();

    // The window, on the gateway's clock (2026-12-03 10:00 JST when the test began, running
    // since; it closes on the 11th, 00:00): 7 days and 13 hours and some minutes left.
    assert!(page.contains("受付中"), "{page}");
    assert!(page.contains("処理対象年月 202612"), "{page}");
    assert!(page.contains("あと 7日 13時間"), "{page}");
    assert!(page.contains("2026年12月11日 00:00"), "{page}");

    // This office: two files, one accepted, one refused by the checker.
    let row = office_row(&page, CARE_OFFICE).expect("a row for the granted office");
    let c = cells(&row);
    // files, accepted, with returns, rejected, arrived, queued, held, refused, attention
    assert_eq!(
        &c[..9],
        ["2", "1", "0", "0", "0", "0", "0", "1", "0"],
        "{row}"
    );
    // The other office is not the clerk's: no row, no figure.
    assert!(office_row(&page, PLAN_OFFICE).is_none());

    // The chart has this month's bar with the one file sent.
    assert!(page.contains("202612: 送信 1 件、返戻 0 件。"), "{page}");
    // The machine: disk figures and the version are real readings, not placeholders.
    assert!(!page.contains("不明"), "{page}");
    assert!(page.contains(env!("CARGO_PKG_VERSION")));
    assert!(page.contains(" GB（") || page.contains(" MB（"), "{page}");

    // /healthz answers anyone; /metrics answers loopback (the scraper on the appliance).
    let mut visitor = env.browser();
    let h = visitor.get("/healthz");
    assert_eq!(h.status, 200, "{}", h.text());
    let v: serde_json::Value = serde_json::from_str(&h.text()).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let m = visitor.get("/metrics");
    assert_eq!(m.status, 200);
    let text = m.text();
    for line in [
        "kaigo_relay_submissions{state=\"accepted\"} 1",
        "kaigo_relay_submissions{state=\"refused\"} 1",
        "kaigo_relay_submissions{state=\"queued\"} 0",
        "kaigo_relay_relay_attempts_total{action=\"send\",answered=\"true\"} 1",
        "kaigo_relay_relay_errors_total 0",
        "kaigo_relay_notices 0",
        "kaigo_relay_window_open 1",
        "# TYPE kaigo_relay_relay_attempts_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    assert!(text.contains(&format!(
        "kaigo_relay_certificate_expiry_timestamp_seconds{{office=\"{CARE_OFFICE}\"}}"
    )));
    assert!(text.contains("kaigo_relay_disk_free_bytes{volume=\"state\"}"));

    // The certificate page offers the appliance's own CA, byte for byte, with its fingerprint.
    let ca = visitor.get("/certificate/kaigo-relay-ca.crt");
    assert_eq!(ca.status, 200);
    let on_disk = std::fs::read(env.state_dir().join("admin-tls").join("ca.pem")).unwrap();
    assert_eq!(ca.text().as_bytes(), on_disk.as_slice());
    let page = visitor.get("/certificate").text();
    let fingerprint = page
        .split("<code class=\"fingerprint\">")
        .nth(1)
        .and_then(|r| r.split("</code>").next())
        .expect("a fingerprint");
    // The same fingerprint openssl (and Windows' and macOS's certificate dialogs) shows.
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(env.state_dir().join("admin-tls").join("ca.pem"))
        .output()
        .expect("the openssl command (apt-get install -y openssl; .ci/run does it)");
    let openssl = String::from_utf8(out.stdout).unwrap();
    let expected = openssl.trim().rsplit('=').next().unwrap();
    assert_eq!(fingerprint, expected, "{openssl}");
}
