//! Fuzz target: `claim::check` and `claim::completeness` must never panic, whatever the bytes.
//!
//! Each input is checked twice, once against the June-2025 reception window (so the processing
//! month comparison runs) and once with no known processing month (so that check is skipped),
//! and `completeness` judges the same bytes. Beyond "no panic", cheap invariants are asserted:
//! checking the same bytes twice gives the same report, a non-empty input always gets a finding
//! or a summary, and a sendable report always has a summary.
#![no_main]

use kaigo_relay::claim::{CheckContext, Month, Verdict, check, completeness};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let with_month = CheckContext {
        processing_month: Month::new(2025, 6),
        ..Default::default()
    };
    let without_month = CheckContext {
        processing_month: None,
        ..Default::default()
    };
    let report = check(data, &with_month);
    assert_eq!(
        report,
        check(data, &with_month),
        "same bytes, different report"
    );
    for report in [report, check(data, &without_month)] {
        assert!(data.is_empty() || !report.findings.is_empty() || report.summary.is_some());
        if report.verdict() != Verdict::Refused {
            assert!(report.summary.is_some());
        }
    }
    let _ = completeness(data);
});
