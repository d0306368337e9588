//! `kaigo-relay validate [--month YYYYMM] [--json] [--config PATH] FILE...`: the drop folder's
//! check, offline, for clerks and for billing-software vendors testing their output.
//!
//! Invariant: the same `claim::check` as intake, with the same context where it is known (the
//! registered offices come from the config when one is given; the processing month from
//! `--month`, else the current month in Japan). A file that cannot be read is reported as
//! refused, never skipped, and the exit status is 0 only when every file is sendable.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::claim::{self, CheckContext, Finding, Month, Report, Severity, Verdict};

/// One file's result, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct FileResult {
    /// The path as given.
    pub file: String,
    /// `ok`, `warning` or `refused`.
    pub verdict: Verdict,
    /// 事業所番号 of the control record, when readable.
    pub office_number: Option<String>,
    /// 処理対象年月 (YYYYMM), when readable.
    pub processing_month: Option<String>,
    /// データ種別, when readable.
    pub data_type: Option<String>,
    /// Number of data records, when readable.
    pub records: Option<u32>,
    /// Every finding.
    pub findings: Vec<JsonFinding>,
}

/// One finding, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct JsonFinding {
    /// `error` or `warning`.
    pub severity: Severity,
    /// Stable code.
    pub code: String,
    /// Line number (1-based), when it applies.
    pub record_no: Option<u32>,
    /// CSV column (1-based), when it applies.
    pub item: Option<u32>,
    /// Japanese message.
    pub message_ja: String,
    /// English message.
    pub message_en: String,
}

impl From<&Finding> for JsonFinding {
    fn from(f: &Finding) -> Self {
        JsonFinding {
            severity: f.severity,
            code: f.code.clone(),
            record_no: f.record_no,
            item: f.item_no,
            message_ja: f.message_ja.clone(),
            message_en: f.message_en.clone(),
        }
    }
}

/// The current month in Japan, the default processing month.
pub fn current_month_in_japan() -> Option<Month> {
    let now = jiff::Timestamp::now().to_zoned_datetime(crate::timefmt::jst());
    Month::new(now.year(), now.month())
}

/// Checks one file on disk.
pub fn check_file(path: &Path, ctx: &CheckContext) -> FileResult {
    let report = match std::fs::read(path) {
        Ok(bytes) => claim::check(&bytes, ctx),
        Err(e) => Report {
            findings: vec![Finding {
                severity: Severity::Error,
                code: admin_ui::help::code::FILE_UNREADABLE.as_str().into(),
                record_no: None,
                item_no: None,
                message_ja: format!("ファイルを読めません: {e}"),
                message_en: format!("The file cannot be read: {e}"),
            }],
            summary: None,
        },
    };
    let summary = report.summary.as_ref();
    FileResult {
        file: path.display().to_string(),
        verdict: report.verdict(),
        office_number: summary.map(|s| s.office_number.to_string()),
        processing_month: summary.map(|s| s.processing_month.to_string()),
        data_type: summary.map(|s| s.data_type.clone()),
        records: summary.map(|s| s.data_records),
        findings: report.findings.iter().map(JsonFinding::from).collect(),
    }
}

/// Checks every file and prints the results; returns whether every file is sendable.
pub fn run(
    files: &[PathBuf],
    ctx: &CheckContext,
    json: bool,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let results: Vec<FileResult> = files.iter().map(|f| check_file(f, ctx)).collect();
    if json {
        serde_json::to_writer_pretty(&mut *out, &results)?;
        writeln!(out)?;
    } else {
        for r in &results {
            write_human(r, out)?;
        }
    }
    Ok(results.iter().all(|r| r.verdict != Verdict::Refused))
}

fn write_human(r: &FileResult, out: &mut dyn Write) -> std::io::Result<()> {
    let verdict_en = match r.verdict {
        Verdict::Ok => "ok",
        Verdict::Warning => "warning, sendable",
        Verdict::Refused => "refused, not sendable",
    };
    writeln!(out, "{}: {} ({verdict_en})", r.file, r.verdict.label_ja())?;
    if let (Some(o), Some(m), Some(d), Some(n)) = (
        &r.office_number,
        &r.processing_month,
        &r.data_type,
        r.records,
    ) {
        writeln!(
            out,
            "  事業所番号 {o}  処理対象年月 {m}  データ種別 {d}  データレコード {n} 件"
        )?;
    }
    for f in &r.findings {
        let mark = match f.severity {
            Severity::Error => "誤り/error",
            Severity::Warning => "注意/warning",
        };
        let at = match (f.record_no, f.item) {
            (Some(l), Some(c)) => format!("{l} 行目 {c} 列目 / line {l} col {c}"),
            (Some(l), None) => format!("{l} 行目 / line {l}"),
            _ => "ファイル全体 / whole file".into(),
        };
        writeln!(out, "  [{mark}] [{at}] {}", f.code)?;
        writeln!(out, "      {}", f.message_ja)?;
        writeln!(out, "      {}", f.message_en)?;
    }
    if !r.findings.is_empty() {
        writeln!(
            out,
            "  説明と対処 / what to do: kaigo-relay explain <コード / code>"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("KK250601.CSV");
        let office: claim::OfficeNumber = "1379999996".parse().unwrap();
        let cm: claim::OfficeNumber = "1379999988".parse().unwrap();
        let month: Month = "202506".parse().unwrap();
        std::fs::write(
            &good,
            claim::sample::care_claim(&office, &cm, month, &["0000123456"], 2),
        )
        .unwrap();
        let missing = dir.path().join("NOFILE.CSV");
        let ctx = CheckContext {
            processing_month: Some(month),
            offices: None,
        };
        let mut out = Vec::new();
        assert!(run(std::slice::from_ref(&good), &ctx, true, &mut out).unwrap());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[0]["verdict"], "ok");
        assert_eq!(v[0]["office_number"], "1379999996");
        assert_eq!(v[0]["processing_month"], "202506");
        assert_eq!(v[0]["data_type"], "711");
        assert_eq!(v[0]["records"], 4);

        let mut out = Vec::new();
        assert!(!run(&[good, missing], &ctx, false, &mut out).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("問題なし"), "{text}");
        assert!(text.contains("file.unreadable"), "{text}");
        assert!(text.contains("送信できません"), "{text}");
    }
}
