#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The fixtures corpus (`tests/fixtures/claims/`, written by its `make.py`): every file is named
//! `<verdict>--<code>[--variant].CSV` and must get exactly that verdict from the claim checker,
//! with the named finding among its findings; an `ok` file must have no finding at all, and a
//! refused file's errors must all be of the named code (so each fixture proves one rule). The
//! same corpus goes through the `kaigo-relay validate --json` command, whose exit status and
//! JSON must agree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use kaigo_relay::claim::{
    CheckContext, Month, OfficeNumber, OfficeStanding, Severity, Verdict, check,
};

fn corpus() -> Vec<(String, Verdict, Option<String>, PathBuf)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/claims");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".CSV") else {
            continue;
        };
        let mut parts = stem.split("--");
        let verdict = match parts.next().unwrap() {
            "ok" => Verdict::Ok,
            "warning" => Verdict::Warning,
            "refused" => Verdict::Refused,
            other => panic!("{name}: unknown verdict {other}"),
        };
        let code = (verdict != Verdict::Ok).then(|| parts.next().unwrap().to_owned());
        out.push((name, verdict, code, path));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn context() -> CheckContext {
    let standing = |name: &str, ended: Option<&str>| OfficeStanding {
        name: name.into(),
        ended_from: ended.map(|m| m.parse().unwrap()),
    };
    let offices: BTreeMap<OfficeNumber, OfficeStanding> = [
        ("1379999996", standing("テスト訪問介護", None)),
        ("1379999988", standing("テスト居宅介護支援", None)),
        ("1379999970", standing("閉じた事業所", Some("202504"))),
    ]
    .into_iter()
    .map(|(n, s)| (n.parse().unwrap(), s))
    .collect();
    CheckContext {
        processing_month: Some("202506".parse::<Month>().unwrap()),
        offices: Some(offices),
    }
}

#[test]
fn every_fixture_gets_the_verdict_its_name_promises() {
    let corpus = corpus();
    assert!(corpus.len() >= 40, "only {} fixtures", corpus.len());
    let invalid = corpus.iter().filter(|c| c.1 != Verdict::Ok).count();
    assert!(invalid >= 40, "only {invalid} invalid fixtures");
    let ctx = context();
    let mut failures = Vec::new();
    for (name, verdict, code, path) in &corpus {
        let bytes = std::fs::read(path).unwrap();
        let report = check(&bytes, &ctx);
        let codes: BTreeSet<&str> = report.findings.iter().map(|f| f.code.as_str()).collect();
        let error_codes: BTreeSet<&str> = report.errors().map(|f| f.code.as_str()).collect();
        let ok = report.verdict() == *verdict
            && match (verdict, code) {
                (Verdict::Ok, _) => report.findings.is_empty(),
                (Verdict::Warning, Some(c)) => codes.contains(c.as_str()),
                (Verdict::Refused, Some(c)) => {
                    error_codes.len() == 1 && error_codes.contains(c.as_str())
                }
                _ => false,
            };
        if !ok {
            failures.push(format!(
                "{name}: got {:?} with {codes:?} (errors {error_codes:?})",
                report.verdict()
            ));
        }
        for f in &report.findings {
            assert!(
                !f.message_ja.is_empty() && !f.message_en.is_empty(),
                "{name}"
            );
            let entry = admin_ui::help::find(&f.code)
                .unwrap_or_else(|| panic!("{name}: {} has no help catalogue entry", f.code));
            if f.severity == Severity::Error {
                assert_eq!(
                    entry.severity,
                    admin_ui::help::Severity::Error,
                    "{name}: {} is an error but catalogued as {:?}",
                    f.code,
                    entry.severity
                );
            }
            if f.severity == Severity::Error && f.record_no.is_none() {
                assert!(
                    f.code.starts_with("file.") || f.message_ja.contains("ほかに"),
                    "{name}: {} has no line",
                    f.code
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Files from `federation-sim gen-claims`, which the simulator accepts with ○, pass the
/// daemon's checker without a finding, in both quoting styles and for several seeds.
#[test]
fn generated_claim_files_pass_the_checker() {
    for style in [federation_sim::Style::Honobono, federation_sim::Style::Qkan] {
        for seed in 1..=5u64 {
            let opts = federation_sim::GenOptions {
                office: "1379999996".into(),
                processing_month: federation_sim::Month {
                    year: 2025,
                    month: 6,
                },
                members: 40,
                style,
                seed,
                service_month: None,
                insured_numbers: None,
            };
            for file in federation_sim::generate(&opts).unwrap() {
                let ctx = CheckContext {
                    processing_month: Some("202506".parse().unwrap()),
                    offices: None,
                };
                let report = check(&file.bytes, &ctx);
                assert!(
                    report.findings.is_empty(),
                    "{} ({style:?}, seed {seed}): {:#?}",
                    file.name,
                    report.findings
                );
                assert_eq!(report.verdict(), Verdict::Ok);
                let summary = report.summary.unwrap();
                assert_eq!(summary.data_type, file.data_type);
                assert_eq!(summary.statements, 40);
            }
        }
    }
}

/// `kaigo-relay validate --json --month 202506` over the whole corpus: one JSON entry per file
/// with the verdict its name promises, exit status 1 because some are refused, 0 for the
/// sendable ones alone, and 64 for a bad `--month`.
#[test]
fn the_validate_command_agrees_with_the_names() {
    let corpus = corpus();
    let relay = &tests::bins().relay;
    let out = std::process::Command::new(relay)
        .args(["validate", "--json", "--month", "202506"])
        .args(corpus.iter().map(|c| &c.3))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), corpus.len());
    for ((name, verdict, code, _), r) in corpus.iter().zip(&results) {
        assert!(r["file"].as_str().unwrap().ends_with(name.as_str()), "{r}");
        let expected = match verdict {
            Verdict::Ok => "ok",
            Verdict::Warning => "warning",
            Verdict::Refused => "refused",
        };
        // Without a config the office standing is not checked: those two fixtures pass.
        if name.contains("office.") {
            assert_eq!(r["verdict"], "ok", "{name}: {r}");
            continue;
        }
        assert_eq!(r["verdict"], expected, "{name}: {r}");
        if let Some(code) = code {
            let codes: Vec<&str> = r["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["code"].as_str().unwrap())
                .collect();
            assert!(codes.contains(&code.as_str()), "{name}: {codes:?}");
            let f = &r["findings"][0];
            for key in [
                "severity",
                "code",
                "record_no",
                "item",
                "message_ja",
                "message_en",
            ] {
                assert!(f.get(key).is_some(), "{name}: {key} missing in {f}");
            }
        }
    }
    let sendable: Vec<&PathBuf> = corpus
        .iter()
        .filter(|c| c.1 != Verdict::Refused)
        .map(|c| &c.3)
        .collect();
    let status = std::process::Command::new(relay)
        .args(["validate", "--month", "202506"])
        .args(&sendable)
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0));
    let text = String::from_utf8(status.stdout).unwrap();
    assert!(text.contains("注意あり（送信します）"), "{text}");
    let bad_month = std::process::Command::new(relay)
        .args(["validate", "--month", "2025-06"])
        .args(&sendable)
        .output()
        .unwrap();
    assert_eq!(bad_month.status.code(), Some(64));
}
