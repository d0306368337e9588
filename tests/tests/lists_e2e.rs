//! The admin UI's lists over the real daemon and simulator: filters by state, month, kind and
//! unread (read marks are the account's own), the returns list exported as CP932 for Excel
//! and as UTF-8 with the 種別 of each row, and a claim withdrawn (取消) from its page — the
//! withdrawal reaches the gateway through the daemon's withdraw desk and is recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::io::Write as _;
use std::time::Duration;

use serde_json::json;
use tests::{CARE_OFFICE, Env, http_json, sha256_hex};

const T: Duration = Duration::from_secs(60);

/// How many rows the page's list table has (rows link to a detail page).
fn rows(page: &str, link: &str) -> usize {
    page.matches(&format!("<a href=\"{link}")).count()
}

#[test]
fn filters_unread_marks_export_and_a_withdrawal_from_the_page() {
    let mut env = Env::new();
    // Poll for notices every second while claims are being sent.
    let mut cfg = std::fs::OpenOptions::new()
        .append(true)
        .open(&env.daemon_config)
        .unwrap();
    writeln!(
        cfg,
        "\n[mirror]\nidle_interval_minutes = 1\nafter_submission_interval_secs = 1\nafter_submission_minutes = 600"
    )
    .unwrap();
    drop(cfg);
    env.start_daemon();
    let _ = env.admin_url();

    // One claim with a statement the simulator returns (…7), one refused by the checker.
    let returned = env.claim(&["1000000017"], 1);
    let refused = env.refused_claim(&["1000000025"], 2);
    env.drop_atomic("KK01.CSV", &returned);
    env.drop_atomic("KK02.CSV", &refused);
    env.wait_state(&sha256_hex(&refused), "refused", T);
    env.wait_for("the claim accepted", T, |env| {
        env.status()
            .iter()
            .find(|s| s["sha256"] == sha256_hex(&returned))
            .filter(|s| s["state"] == "accepted" || s["state"] == "accepted_with_returns")
            .map(|_| ())
    });
    let v = http_json(
        "POST",
        &format!("{}/sim/advance", env.control_url),
        Some(&json!({"phase": "month_end"})),
    );
    assert_eq!(v["phase"], "month_end", "{v}");

    let one_time = env.add_user(&["--id", "clerk", "--role", "staff", "--grant", CARE_OFFICE]);
    let mut b = env.browser();
    b.first_login("clerk", &one_time, "haru-no-hi-pass-2026");

    // Submissions by state.
    let base = format!("/submissions?office={CARE_OFFICE}");
    let all = b.get(&base).text();
    assert_eq!(rows(&all, "/submissions/"), 2, "{all}");
    let only_refused = b.get(&format!("{base}&status=refused")).text();
    assert_eq!(rows(&only_refused, "/submissions/"), 1);
    assert!(only_refused.contains("KK02.CSV") && !only_refused.contains("KK01.CSV"));
    let none = b.get(&format!("{base}&month=202501")).text();
    assert_eq!(rows(&none, "/submissions/"), 0);
    assert!(none.contains("条件に合う送信はありません"));

    // Notices: the month-end ones arrive; all unread; opening one marks it read for this
    // account only.
    let notices = format!("/notices?office={CARE_OFFICE}");
    let list = env.wait_for("the month-end 7411 in the list", T, |_| {
        let page = b.get(&format!("{notices}&kind=7411")).text();
        page.contains("<td>7411").then_some(page)
    });
    let first_7411 = {
        let at = list.find("<td>7411").expect("a 7411 row");
        let href = list[at..].find("href=\"/notices/").unwrap() + at + "href=\"/notices/".len();
        let end = list[href..].find('"').unwrap() + href;
        list[href..end].to_owned()
    };
    assert!(
        !list.contains("<td>7211"),
        "the kind filter keeps only 7411"
    );
    let unread_before = b.get(&format!("{notices}&unread=1")).text();
    assert!(unread_before.contains(&format!("/notices/{first_7411}\"")));
    assert_eq!(b.get(&format!("/notices/{first_7411}")).status, 200);
    let unread_after = b.get(&format!("{notices}&unread=1")).text();
    assert!(
        !unread_after.contains(&format!("/notices/{first_7411}\"")),
        "opened: no longer unread"
    );
    let admin_pw = env.add_user(&["--id", "boss", "--role", "system_admin"]);
    let mut other = env.browser();
    other.first_login("boss", &admin_pw, "natsu-no-hi-pass-2026");
    assert!(
        other
            .get(&format!("{notices}&unread=1"))
            .text()
            .contains(&format!("/notices/{first_7411}\"")),
        "still unread for another account"
    );

    // Returns: the exported CSV holds the returned statement, as CP932 and as UTF-8.
    let returns = env.wait_for("the return in the list", T, |_| {
        let page = b.get(&format!("/returns?office={CARE_OFFICE}")).text();
        page.contains("1000000017").then_some(page)
    });
    assert!(returns.contains("請求明細書"), "the 種別 column");
    let csv = b.get(&format!("/returns/export?office={CARE_OFFICE}"));
    assert_eq!(csv.status, 200);
    assert_eq!(
        csv.header("content-type").as_deref(),
        Some("text/csv; charset=Shift_JIS")
    );
    let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&csv.bytes);
    assert!(!bad);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("事業所番号,審査月,種別"), "{text}");
    assert!(
        lines.iter().any(|l| l.contains("1000000017")
            && l.contains("請求明細書")
            && l.starts_with(CARE_OFFICE)),
        "{text}"
    );
    let utf8 = b.get(&format!(
        "/returns/export?office={CARE_OFFICE}&encoding=utf8"
    ));
    assert!(utf8.bytes.starts_with(b"\xEF\xBB\xBF"));
    assert_eq!(
        String::from_utf8_lossy(&utf8.bytes[3..]),
        text,
        "the same rows in both encodings"
    );

    // Withdraw the accepted claim from its page: not without the tick, then done.
    let sub = env
        .status()
        .into_iter()
        .find(|s| s["sha256"] == sha256_hex(&returned))
        .unwrap();
    let id = sub["id"].as_str().unwrap().to_owned();
    let page = b.get(&format!("/submissions/{id}")).text();
    assert!(
        page.contains(&format!("action=\"/submissions/{id}/withdraw\"")),
        "{page}"
    );
    let token = b.csrf();
    let refused_post = b.post(
        &format!("/submissions/{id}/withdraw"),
        &[("csrf_token", &token)],
    );
    assert_eq!(refused_post.status, 422);
    let done = b.post(
        &format!("/submissions/{id}/withdraw"),
        &[("csrf_token", &token), ("confirm", "1")],
    );
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(
        done.text().contains("class=\"message info\""),
        "{}",
        done.text()
    );
    env.wait_state(&sha256_hex(&returned), "withdrawn", T);
    let again = b.get(&format!("/submissions/{id}")).text();
    assert!(
        !again.contains("/withdraw\""),
        "a withdrawn claim offers no second withdrawal"
    );
    let receipt = sub["receipt_id"].as_str().unwrap().to_owned();
    let at_gateway: Vec<String> = env
        .received()
        .into_iter()
        .filter(|r| r["receipt_id"] == receipt.as_str())
        .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        at_gateway,
        vec!["withdrawn"],
        "the gateway has it withdrawn"
    );
    // Audited.
    let audit = other.get("/audit").text();
    assert!(audit.contains("submission_withdrawn"), "{audit}");
}
