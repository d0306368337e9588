//! `federation-sim gen-claims`: writes the generator's files into a directory (the same bytes as
//! the library), prints one line per file, and exits with 64 for bad arguments.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use federation_sim::{GenOptions, Month, Style, generate};

fn gen_claims(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_federation-sim"))
        .arg("gen-claims")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn writes_both_files_into_a_new_directory() {
    let dir = tempfile::tempdir().unwrap();
    for (style, names) in [
        (Style::Honobono, ["KK260601.CSV", "KY260601.CSV"]),
        (Style::Qkan, ["i0806a.csv", "i0806b.csv"]),
    ] {
        let out_dir = dir.path().join(style.as_str()).join("nested");
        let out = gen_claims(&[
            "--office",
            "1379999996",
            "--month",
            "202606",
            "--members",
            "40",
            "--style",
            style.as_str(),
            "--seed",
            "7",
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = generate(&GenOptions {
            office: "1379999996".into(),
            processing_month: Month::parse("202606").unwrap(),
            members: 40,
            style,
            seed: 7,
            service_month: None,
            insured_numbers: None,
        })
        .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        for ((file, name), line) in expected.iter().zip(names).zip(&lines) {
            assert_eq!(file.name, name);
            assert_eq!(std::fs::read(out_dir.join(name)).unwrap(), file.bytes);
            assert_eq!(
                *line,
                format!(
                    "{name} {} bytes {} records (data type {})",
                    file.bytes.len(),
                    file.records,
                    file.data_type
                )
            );
        }
        assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 2);
    }
}

#[test]
fn the_seed_defaults_to_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = gen_claims(&[
        "--office",
        "1210600472",
        "--month",
        "202512",
        "--members",
        "3",
        "--style",
        "honobono",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let expected = generate(&GenOptions {
        office: "1210600472".into(),
        processing_month: Month::parse("202512").unwrap(),
        members: 3,
        style: Style::Honobono,
        seed: 1,
        service_month: None,
        insured_numbers: None,
    })
    .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("KK251201.CSV")).unwrap(),
        expected[0].bytes
    );
}

#[test]
fn bad_arguments_exit_with_64_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out_arg = out_dir.to_str().unwrap();
    let run = |office: &str, month: &str, members: &str, style: &str| {
        gen_claims(&[
            "--office",
            office,
            "--month",
            month,
            "--members",
            members,
            "--style",
            style,
            "--out",
            out_arg,
        ])
    };
    for (args, needle) in [
        (
            ["1379999997", "202606", "5", "qkan"],
            "1379999997", // wrong check digit
        ),
        (["13799999", "202606", "5", "qkan"], "13799999"),
        (["1379999996", "202613", "5", "qkan"], "--month"),
        (["1379999996", "2026-06", "5", "qkan"], "--month"),
        (["1379999996", "199912", "5", "qkan"], "199912"),
        (["1379999996", "202606", "0", "qkan"], "members"),
        (["1379999996", "202606", "many", "qkan"], "--members"),
        (["1379999996", "202606", "5", "orca"], "orca"),
    ] {
        let out = run(args[0], args[1], args[2], args[3]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    // A missing required argument is a usage error too.
    let out = gen_claims(&["--office", "1379999996"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(!out_dir.exists(), "nothing is written for bad arguments");
}

#[test]
fn service_month_and_insured_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let out = gen_claims(&[
        "--office",
        "1379999996",
        "--month",
        "202606",
        "--members",
        "3",
        "--style",
        "qkan",
        "--service-month",
        "202404",
        "--insured",
        "17,9999999999,5",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = generate(&GenOptions {
        office: "1379999996".into(),
        processing_month: Month::parse("202606").unwrap(),
        members: 3,
        style: Style::Qkan,
        seed: 1,
        service_month: Month::parse("202404"),
        insured_numbers: Some(vec![17, 9_999_999_999, 5]),
    })
    .unwrap();
    for f in &expected {
        assert_eq!(std::fs::read(dir.path().join(&f.name)).unwrap(), f.bytes);
    }
    for (flag, value, needle) in [
        ("--service-month", "202606", "202606"),
        ("--service-month", "2024-04", "--service-month"),
        ("--insured", "1,2", "2 numbers for 3 members"),
        ("--insured", "1,x,3", "--insured"),
    ] {
        let out = gen_claims(&[
            "--office",
            "1379999996",
            "--month",
            "202606",
            "--members",
            "3",
            "--style",
            "qkan",
            flag,
            value,
            "--out",
            dir.path().join("bad").to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{flag} {value}: {stderr}");
        assert!(stderr.contains(needle), "{flag} {value}: {stderr}");
    }
}

#[test]
fn help_still_exits_with_zero() {
    let out = gen_claims(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--members"));
}
