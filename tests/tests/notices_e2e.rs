//! Notices and returns through real processes: claims go through the simulator, its month-end
//! and payment phases issue notices by the documented rules, the daemon mirrors every one once
//! with the simulator's bytes, turns the 7411 rows into return items, links a resubmission in
//! the next month to them and resolves them when the next 返戻一覧 does not return them again.
//! Killing the daemon at the mirror's commit boundaries loses and doubles nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::time::Duration;

use federation_sim::{GenOptions, Month, Style, generate};
use serde_json::{Value, json};
use tests::{CARE_OFFICE, Env, EnvOptions, http_json, relay_ok, sha256_hex};

const T: Duration = Duration::from_secs(60);

/// Ten people whose 被保険者番号 end in 0–9: by the simulator's rules `…7` is returned (事由 B),
/// `…9` held (保留), `…8` assessed (査定), `…5` corrected at payment (過誤).
fn insured() -> Vec<u64> {
    (0..10).map(|i| 1_000_000_010 + i).collect()
}

fn drop_generated(
    env: &Env,
    month: &str,
    service_month: Option<&str>,
    people: Vec<u64>,
    seed: u64,
) {
    let files = generate(&GenOptions {
        office: CARE_OFFICE.into(),
        processing_month: Month::parse(month).unwrap(),
        members: people.len() as u32,
        style: Style::Honobono,
        seed,
        service_month: service_month.map(|m| Month::parse(m).unwrap()),
        insured_numbers: Some(people),
    })
    .unwrap();
    for f in files {
        env.drop_atomic(&f.name, &f.bytes);
    }
}

fn cli(env: &Env, args: &[&str]) -> Value {
    let mut all = vec![
        args[0],
        "--json",
        "--config",
        env.daemon_config.to_str().unwrap(),
    ];
    all.extend_from_slice(&args[1..]);
    let out = relay_ok(all);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn sim(env: &Env, path: &str) -> Value {
    http_json("GET", &format!("{}{path}", env.control_url), None)
}

fn advance(env: &Env, phase: &str) -> Value {
    let v = http_json(
        "POST",
        &format!("{}/sim/advance", env.control_url),
        Some(&json!({ "phase": phase })),
    );
    assert_eq!(v["phase"], phase, "{v}");
    v
}

/// Waits until the daemon holds exactly the simulator's notices, then checks each one's
/// metadata and that no ID is stored twice.
fn wait_mirrored(env: &Env) -> Vec<Value> {
    let expected = sim(env, "/sim/notices").as_array().cloned().unwrap();
    assert!(!expected.is_empty());
    let ours = env.wait_for("every notice to be mirrored", T, |env| {
        let v = cli(env, &["notices"]);
        let list = v["notices"].as_array().cloned().unwrap_or_default();
        (list.len() >= expected.len()).then_some(list)
    });
    let ids: BTreeSet<&str> = ours
        .iter()
        .map(|n| n["notice_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), ours.len(), "a notice is stored twice");
    assert_eq!(ours.len(), expected.len(), "{ours:?}\n{expected:?}");
    let by_id: BTreeMap<&str, &Value> = ours
        .iter()
        .map(|n| (n["notice_id"].as_str().unwrap(), n))
        .collect();
    for e in &expected {
        let n = by_id[e["notice_id"].as_str().unwrap()];
        for field in [
            "office_number",
            "kind_id",
            "processing_month",
            "media_type",
            "sha256",
            "size",
        ] {
            assert_eq!(n[field], e[field], "{field} of {}", e["notice_id"]);
        }
    }
    ours
}

fn returns(env: &Env) -> Value {
    cli(env, &["returns"])
}

fn items_of<'a>(doc: &'a Value, insured: &str) -> Vec<&'a Value> {
    doc["returns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["insured_number"] == insured)
        .collect()
}

#[test]
fn notices_are_mirrored_once_and_returns_close_themselves() {
    let mut env = Env::with_options(EnvOptions {
        health_refresh_secs: 1,
        ..EnvOptions::default()
    });
    // Poll every second while claims are being sent; pages of three notices, so that a
    // month's notices take several pages (and commits).
    let mut cfg = std::fs::OpenOptions::new()
        .append(true)
        .open(&env.daemon_config)
        .unwrap();
    writeln!(
        cfg,
        "\n[mirror]\nidle_interval_minutes = 1\nafter_submission_interval_secs = 1\nafter_submission_minutes = 600\npage_size = 3"
    )
    .unwrap();
    drop(cfg);
    env.start_daemon();

    // December: both files (711 and 821) of ten people.
    drop_generated(&env, "202612", None, insured(), 5);
    env.wait_for("both claims to be accepted", T, |env| {
        let s = env.status();
        (s.len() == 2 && s.iter().all(|s| s["state"] == "accepted")).then_some(())
    });
    let issued = advance(&env, "month_end");
    assert_eq!(issued["processing_month"], "202612", "{issued}");
    let kinds: BTreeSet<&str> = issued["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind_id"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["7211", "7311", "7411", "TXT1"]));
    let ours = wait_mirrored(&env);

    // Bytes identical to the simulator's: the original download, and the UTF-8 one.
    let returns_list = ours.iter().find(|n| n["kind_id"] == "7411").unwrap();
    let id = returns_list["notice_id"].as_str().unwrap();
    let out = env.dir.path().join("7411.csv");
    relay_ok([
        "notices",
        "--config",
        env.daemon_config.to_str().unwrap(),
        "--get",
        id,
        "--output",
        out.to_str().unwrap(),
    ]);
    let original = std::fs::read(&out).unwrap();
    assert_eq!(sha256_hex(&original), returns_list["sha256"]);
    let utf8 = relay_ok([
        "notices",
        "--config",
        env.daemon_config.to_str().unwrap(),
        "--get",
        id,
        "--utf8",
    ])
    .stdout;
    let text = String::from_utf8(utf8).unwrap();
    assert!(
        text.starts_with('\u{feff}') && text.contains(",7411,D1,"),
        "{text}"
    );
    assert!(text.contains("保留"), "{text}");

    // The returns are exactly the simulator's returned and held statements.
    let expected: BTreeSet<(String, String, String, String, bool)> = sim(&env, "/sim/returns")
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] != "assessed")
        .map(|r| {
            (
                r["insured_number"].as_str().unwrap().to_owned(),
                r["service_month"].as_str().unwrap().to_owned(),
                r["kind"].as_str().unwrap().to_owned(),
                r["reason_code"].as_str().unwrap().to_owned(),
                r["held"].as_bool().unwrap(),
            )
        })
        .collect();
    let doc = returns(&env);
    let got: BTreeSet<(String, String, String, String, bool)> = doc["returns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["insured_number"].as_str().unwrap().to_owned(),
                r["service_month"].as_str().unwrap().to_owned(),
                r["form"].as_str().unwrap().to_owned(),
                r["reason_code"].as_str().unwrap().to_owned(),
                r["held"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(doc["returns"].as_array().unwrap().len(), expected.len());
    // As the documented rules predict: …17 returned for 資格 (B) on its statement and its
    // 給付管理票, …19 held, …18 assessed (7311, shown with the returns).
    let seventeen = items_of(&doc, "1000000017");
    assert_eq!(seventeen.len(), 2, "{doc}");
    assert!(
        seventeen
            .iter()
            .all(|r| r["reason_code"] == "B" && r["status"] == "open")
    );
    assert!(seventeen.iter().all(|r| {
        r["insurer_number"].as_str().is_some_and(|s| !s.is_empty())
            && r["content"].as_str().is_some_and(|s| s.contains("ASB1"))
    }));
    let nineteen = items_of(&doc, "1000000019");
    assert!(!nineteen.is_empty() && nineteen.iter().all(|r| r["held"] == true));
    assert!(
        doc["assessments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["row"]["insured_number"] == "1000000018"),
        "{doc}"
    );

    // Payment, mirrored across crashes: the daemon is killed before the first page's commit,
    // then right after it; the third start finishes. Nothing lost, nothing twice.
    env.daemon().terminate();
    let paid = advance(&env, "payment");
    let kinds: BTreeSet<&str> = paid["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["7513", "7521", "7611", "7621", "PDF1"])
    );
    let mirror_points: Vec<&str> = kaigo_relay::failpoint::POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("mirror."))
        .collect();
    assert_eq!(
        mirror_points,
        ["mirror.before_page_commit", "mirror.after_page_commit"]
    );
    for point in ["mirror.before_page_commit=1", "mirror.after_page_commit=1"] {
        env.start_daemon_with_env(&[("KAIGO_RELAY_FAILPOINTS", point)]);
        let exit = env.daemon().wait_exit(T);
        assert!(
            exit.is_some_and(|s| !s.success()),
            "{point} did not fire\n{}",
            env.logs()
        );
        let name = point.split('=').next().unwrap();
        assert!(
            env.logs().contains(&format!("failpoint {name} hit")),
            "{}",
            env.logs()
        );
    }
    env.start_daemon();
    let ours = wait_mirrored(&env);
    let media: BTreeSet<&str> = ours
        .iter()
        .map(|n| n["media_type"].as_str().unwrap().split(';').next().unwrap())
        .collect();
    assert_eq!(
        media,
        BTreeSet::from(["application/pdf", "text/csv", "text/plain"])
    );
    // Every CSV notice of the (independently written) simulator reads into the daemon's
    // layouts with nothing left over: same item counts, record counts and envelope.
    for n in ours
        .iter()
        .filter(|n| n["media_type"].as_str().unwrap().starts_with("text/csv"))
    {
        let bytes = relay_ok([
            "notices",
            "--config",
            env.daemon_config.to_str().unwrap(),
            "--get",
            n["notice_id"].as_str().unwrap(),
        ])
        .stdout;
        assert_eq!(sha256_hex(&bytes), n["sha256"]);
        let parsed = kaigo_relay::notice::parse(&bytes).unwrap();
        assert_eq!(parsed.kind_id, n["kind_id"].as_str().unwrap());
        assert!(
            parsed.problems.is_empty(),
            "{}: {:?}",
            n["kind_id"],
            parsed.problems
        );
        assert!(
            parsed
                .rows
                .iter()
                .all(|r| !r.cells.iter().any(|(c, _)| c.starts_with("項目"))),
            "{}",
            n["kind_id"]
        );
    }
    assert_eq!(
        returns(&env)["returns"].as_array().unwrap().len(),
        expected.len()
    );

    // January: …17 is sent again (its December services), and is linked to its returns.
    env.set_sim_clock("2027-01-05T10:00:00+09:00");
    std::thread::sleep(Duration::from_secs(2)); // the daemon reads the window every second
    drop_generated(&env, "202701", Some("202611"), vec![1_000_000_017], 9);
    let resubmitted = env.wait_for("the resubmission to be accepted", T, |env| {
        let s = env.status();
        let jan: Vec<Value> = s
            .into_iter()
            .filter(|s| s["processing_month"] == "202701")
            .collect();
        (jan.len() == 2 && jan.iter().all(|s| s["state"] == "accepted")).then_some(jan)
    });
    let ids: BTreeSet<&str> = resubmitted
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    env.wait_for("the returns of …17 to be linked", T, |env| {
        let doc = returns(env);
        let items = items_of(&doc, "1000000017");
        items
            .iter()
            .all(|r| {
                r["status"] == "resubmitted"
                    && r["linked_submission"]
                        .as_str()
                        .is_some_and(|id| ids.contains(id))
            })
            .then_some(())
    });
    // January's 返戻一覧 does not return …17 again: resolved. The held ones stay open.
    advance(&env, "month_end");
    wait_mirrored(&env);
    env.wait_for("the returns of …17 to be resolved", T, |env| {
        let doc = returns(env);
        items_of(&doc, "1000000017")
            .iter()
            .all(|r| r["status"] == "resolved")
            .then_some(())
    });
    let doc = returns(&env);
    assert!(
        items_of(&doc, "1000000019")
            .iter()
            .all(|r| r["status"] == "open")
    );

    // Closing by hand needs a note, and keeps it.
    let held = items_of(&doc, "1000000019")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = std::process::Command::new(&tests::bins().relay)
        .args([
            "returns",
            "--config",
            env.daemon_config.to_str().unwrap(),
            "--close",
            &held,
            "--note",
            " ",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("メモ"),
        "{refused:?}"
    );
    let closed = cli(
        &env,
        &[
            "returns",
            "--close",
            &held,
            "--note",
            "給付管理票の提出待ち",
        ],
    );
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["note"], "給付管理票の提出待ち");
    env.daemon().terminate();
    // With the daemon stopped the commands read the store themselves.
    let doc = returns(&env);
    assert_eq!(
        doc["returns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == held.as_str())
            .unwrap()["status"],
        "closed"
    );
    assert_eq!(
        cli(&env, &["notices"])["notices"].as_array().unwrap().len(),
        sim(&env, "/sim/notices").as_array().unwrap().len()
    );
}
