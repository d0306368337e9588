//! `check(bytes, context) -> Report`: every problem the federation's 到達 and 受付 checks would
//! reject, found before sending, each explained in Japanese and English.
//!
//! Invariant: the checker is pure and total. It never panics on any input, never stops at the
//! first problem, and reports each finding with a stable code, the record number and item where
//! it applies. This first cut checks the envelope (control record first, end record last,
//! record count, numbering, CRLF, CP932, 事業所番号, 処理対象年月); the full checklist of
//! claim-format.md §1.7 builds on it.

use serde::{Deserialize, Serialize};

use super::ids::{Month, OfficeNumber};
use super::records::{self, Terminator};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The federation would reject the file: it is not sent.
    Error,
    /// Worth a look, but the file is sent.
    Warning,
}

/// One problem found in a claim file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code, e.g. `control.record_count`.
    pub code: String,
    /// The record (line) number it concerns, 1-based.
    pub record_no: Option<u32>,
    /// The item number within the record, 1-based (item 1 is the record type).
    pub item_no: Option<u32>,
    /// What is wrong and what to do, in Japanese.
    pub message_ja: String,
    /// The same in English.
    pub message_en: String,
}

/// What the checker learnt of a file it could read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimSummary {
    /// 事業所番号 of the control record.
    pub office_number: OfficeNumber,
    /// 処理対象年月 of the control record.
    pub processing_month: Month,
    /// データ種別 of the control record.
    pub data_type: String,
    /// Number of data records in the file.
    pub data_records: u32,
}

/// Everything the checker found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Every finding, in file order.
    pub findings: Vec<Finding>,
    /// Present when the control record could be read well enough to identify the file.
    pub summary: Option<ClaimSummary>,
}

/// The checker's verdict on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing to say: the file is sent.
    Ok,
    /// Sendable; the federation would accept it, but something deserves a look.
    Warning,
    /// Not sent: the federation would reject it, or it is not a 介護 claim file.
    Refused,
}

impl Verdict {
    /// The verdict in Japanese, for clerks.
    pub fn label_ja(self) -> &'static str {
        match self {
            Verdict::Ok => "問題なし",
            Verdict::Warning => "注意あり（送信します）",
            Verdict::Refused => "送信できません",
        }
    }
}

impl Report {
    /// True when no finding is an error: the file may be sent.
    pub fn is_sendable(&self) -> bool {
        self.summary.is_some() && !self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// `Refused` unless sendable; `Warning` when sendable with warnings; else `Ok`.
    pub fn verdict(&self) -> Verdict {
        if !self.is_sendable() {
            Verdict::Refused
        } else if self.findings.is_empty() {
            Verdict::Ok
        } else {
            Verdict::Warning
        }
    }

    /// The error findings.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    fn push(
        &mut self,
        severity: Severity,
        code: &str,
        record_no: Option<u32>,
        item_no: Option<u32>,
        ja: String,
        en: String,
    ) {
        self.findings.push(Finding {
            severity,
            code: code.to_owned(),
            record_no,
            item_no,
            message_ja: ja,
            message_en: en,
        });
    }

    fn error(
        &mut self,
        code: &str,
        record_no: Option<u32>,
        item_no: Option<u32>,
        ja: String,
        en: String,
    ) {
        self.push(Severity::Error, code, record_no, item_no, ja, en);
    }
}

/// What the checker needs to know beyond the file.
#[derive(Debug, Clone, Default)]
pub struct CheckContext {
    /// The processing month of the reception window the file will be sent into, as the gateway
    /// reports it. `None` skips that check.
    pub processing_month: Option<Month>,
}

/// Whether a file on disk is finished, judged by its own envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// Starts with a control record and ends with an end record and a line break.
    Complete,
    /// Starts like a claim file but does not (yet) end with an end record: still being written,
    /// or cut short.
    Truncated,
    /// Does not start like a claim file at all; waiting will not make it one.
    NotAClaim,
}

/// Judges whether `bytes` hold a whole claim file, without decoding it.
pub fn completeness(bytes: &[u8]) -> Completeness {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let starts_like_claim = body.starts_with(b"1,") || body.starts_with(b"\"1\",");
    if !starts_like_claim {
        return Completeness::NotAClaim;
    }
    let mut end = body.len();
    while end > 0 && body[end - 1] == 0x1A {
        end -= 1; // an EOF marker some DOS-era tools append
    }
    let body = &body[..end];
    if !body.ends_with(b"\n") {
        return Completeness::Truncated;
    }
    let trimmed = body.trim_ascii_end();
    let last_line = match trimmed.iter().rposition(|&b| b == b'\n') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    };
    if last_line.starts_with(b"3,") || last_line.starts_with(b"\"3\",") {
        Completeness::Complete
    } else {
        Completeness::Truncated
    }
}

/// Number of items of a 介護 control record (claim-format.md §1.3).
const CONTROL_ITEMS: usize = 12;

/// Checks a claim file and returns every finding.
pub fn check(bytes: &[u8], ctx: &CheckContext) -> Report {
    let mut report = Report::default();
    if bytes.is_empty() {
        report.error(
            "file.empty",
            None,
            None,
            "ファイルが空です。請求ソフトでもう一度ファイルを作成してください。".into(),
            "The file is empty. Create the file again in the billing software.".into(),
        );
        return report;
    }
    let mut body = bytes;
    if let Some(rest) = body.strip_prefix(b"\xEF\xBB\xBF") {
        report.error(
            "file.utf8_bom",
            Some(1),
            None,
            "ファイルの先頭に UTF-8 の印（BOM）があります。請求ファイルは Shift_JIS で作成してください。".into(),
            "The file starts with a UTF-8 byte order mark. Claim files must be Shift_JIS (CP932).".into(),
        );
        body = rest;
    }
    let eof_markers = body.iter().rev().take_while(|&&b| b == 0x1A).count();
    if eof_markers > 0 {
        body = &body[..body.len() - eof_markers];
        report.push(
            Severity::Warning,
            "file.eof_marker",
            None,
            None,
            "ファイルの末尾に EOF 記号 (0x1A) があります。通常は問題ありません。".into(),
            "The file ends with an EOF marker (0x1A). This is usually harmless.".into(),
        );
    }
    let text = match records::decode_cp932(body) {
        Ok(t) => t,
        Err(e) => {
            report.error(
                "file.not_cp932",
                None,
                None,
                format!(
                    "{} バイト目に Shift_JIS (CP932) として読めない文字があります。請求ソフトの出力設定（文字コード）を確認してください。",
                    e.offset + 1
                ),
                format!(
                    "Byte {} is not valid Shift_JIS (CP932). Check the billing software's output encoding.",
                    e.offset + 1
                ),
            );
            return report;
        }
    };
    let lines = records::lines(&text);
    check_terminators(&lines, &mut report);

    let mut parsed: Vec<(u32, Vec<String>)> = Vec::with_capacity(lines.len());
    for line in &lines {
        match records::items(line.text) {
            Some(items) => parsed.push((line.position, items)),
            None => report.error(
                "record.quote",
                Some(line.position),
                None,
                format!("{} 行目の引用符 (\") が閉じていません。", line.position),
                format!("Line {}: a double quote is not closed.", line.position),
            ),
        }
    }
    if parsed.is_empty() {
        report.error(
            "control.missing",
            Some(1),
            None,
            "読み取れるレコードがありません。".into(),
            "The file holds no readable record.".into(),
        );
        return report;
    }

    check_numbering(&parsed, &mut report);
    let data_records = parsed
        .iter()
        .filter(|(_, items)| items.first().map(String::as_str) == Some("2"))
        .count();
    let data_records = u32::try_from(data_records).unwrap_or(u32::MAX);
    check_end_record(&parsed, &lines, &mut report);
    report.summary = check_control_record(&parsed[0], data_records, ctx, &mut report);
    report
}

fn check_terminators(lines: &[records::Line<'_>], report: &mut Report) {
    let bare_lf: Vec<u32> = lines
        .iter()
        .filter(|l| l.terminator == Terminator::Lf)
        .map(|l| l.position)
        .collect();
    if let Some(&first) = bare_lf.first() {
        report.error(
            "file.line_ending",
            Some(first),
            None,
            format!(
                "改行コードが CRLF ではない行が {} 行あります（最初は {} 行目）。請求ファイルの改行は CRLF でなければなりません。",
                bare_lf.len(),
                first
            ),
            format!(
                "{} line(s) end with LF instead of CRLF (first: line {}). Claim files must use CRLF.",
                bare_lf.len(),
                first
            ),
        );
    }
    if let Some(last) = lines.last().filter(|l| l.terminator == Terminator::None) {
        report.error(
            "file.no_final_line_break",
            Some(last.position),
            None,
            format!(
                "最後の行（{} 行目）に改行 (CRLF) がありません。ファイルが途中で切れている可能性があります。",
                last.position
            ),
            format!(
                "The last line ({}) has no line break (CRLF); the file may be cut short.",
                last.position
            ),
        );
    }
}

fn check_numbering(parsed: &[(u32, Vec<String>)], report: &mut Report) {
    let mut wrong = Vec::new();
    for (position, items) in parsed {
        let kind = items.first().map(String::as_str).unwrap_or("");
        if !matches!(kind, "1" | "2" | "3") {
            report.error(
                "record.type",
                Some(*position),
                Some(1),
                format!(
                    "{position} 行目のレコード種別「{kind}」が正しくありません（1: コントロール, 2: データ, 3: エンド）。"
                ),
                format!("Line {position}: record type \"{kind}\" is not 1 (control), 2 (data) or 3 (end)."),
            );
            continue;
        }
        let number = items.get(1).map(String::as_str).unwrap_or("");
        if number.parse::<u32>().ok() != Some(*position) {
            wrong.push((*position, number.to_owned()));
        }
    }
    if let Some((position, number)) = wrong.first() {
        report.error(
            "record.number",
            Some(*position),
            Some(2),
            format!(
                "レコード番号が行の位置と合っていない行が {} 行あります（最初は {} 行目: 「{}」、正しくは {}）。",
                wrong.len(),
                position,
                number,
                position
            ),
            format!(
                "{} record number(s) do not match their line (first: line {}: \"{}\", expected {}).",
                wrong.len(),
                position,
                number,
                position
            ),
        );
    }
}

fn check_end_record(
    parsed: &[(u32, Vec<String>)],
    lines: &[records::Line<'_>],
    report: &mut Report,
) {
    let ends: Vec<u32> = parsed
        .iter()
        .filter(|(_, items)| items.first().map(String::as_str) == Some("3"))
        .map(|(p, _)| *p)
        .collect();
    let last_position = lines.last().map(|l| l.position).unwrap_or(0);
    match ends.as_slice() {
        [] => report.error(
            "end.missing",
            Some(last_position),
            None,
            "エンドレコード（3 で始まる最後の行）がありません。ファイルが途中で切れているか、作成が終わっていません。".into(),
            "There is no end record (the last line, starting with 3). The file is cut short or not finished.".into(),
        ),
        [one] if *one == last_position => {
            if let Some((_, items)) = parsed.iter().find(|(p, _)| p == one)
                && items.len() != 2
            {
                report.error(
                    "end.items",
                    Some(*one),
                    None,
                    format!("エンドレコードの項目数が {} です（正しくは 2）。", items.len()),
                    format!("The end record has {} items (expected 2).", items.len()),
                );
            }
        }
        _ => report.error(
            "end.position",
            ends.first().copied(),
            None,
            "エンドレコードはファイルの最後に 1 つだけ置きます。".into(),
            "There must be exactly one end record, as the last line.".into(),
        ),
    }
}

fn check_control_record(
    (position, items): &(u32, Vec<String>),
    data_records: u32,
    ctx: &CheckContext,
    report: &mut Report,
) -> Option<ClaimSummary> {
    if items.first().map(String::as_str) != Some("1") {
        report.error(
            "control.missing",
            Some(*position),
            Some(1),
            "1 行目がコントロールレコード（1 で始まる行）ではありません。介護給付費の請求ファイルか確認してください。".into(),
            "The first line is not a control record (starting with 1). Is this a claim file?".into(),
        );
        return None;
    }
    if items.len() != CONTROL_ITEMS {
        report.error(
            "control.items",
            Some(1),
            None,
            format!(
                "コントロールレコードの項目数が {} です（介護の請求ファイルは 12）。",
                items.len()
            ),
            format!(
                "The control record has {} items (介護 claim files have 12).",
                items.len()
            ),
        );
        return None;
    }
    let count = &items[3];
    if count.parse::<u32>().ok() != Some(data_records) {
        report.error(
            "control.record_count",
            Some(1),
            Some(4),
            format!(
                "コントロールレコードのレコード件数は「{count}」ですが、データレコードは {data_records} 件あります。ファイルが壊れているか途中で切れています。"
            ),
            format!(
                "The control record says {count} data records, but the file has {data_records}. The file is damaged or cut short."
            ),
        );
    }
    let data_type = items[4].clone();
    let office = match items[7].parse::<OfficeNumber>() {
        Ok(o) => Some(o),
        Err(e) => {
            report.error(
                "control.office_number",
                Some(1),
                Some(8),
                format!("コントロールレコードの事業所番号が正しくありません: {e}"),
                format!("The control record's office number is invalid: {e}"),
            );
            None
        }
    };
    let month = match items[10].parse::<Month>() {
        Ok(m) => Some(m),
        Err(_) => {
            report.error(
                "control.processing_month",
                Some(1),
                Some(11),
                format!(
                    "処理対象年月「{}」が YYYYMM 形式の年月ではありません。",
                    items[10]
                ),
                format!(
                    "The processing month \"{}\" is not a YYYYMM month.",
                    items[10]
                ),
            );
            None
        }
    };
    if let (Some(m), Some(expected)) = (month, ctx.processing_month)
        && m != expected
    {
        report.error(
            "control.processing_month_mismatch",
            Some(1),
            Some(11),
            format!(
                "処理対象年月が {} になっていますが、いま受け付けているのは {} 分です。請求ソフトで処理対象年月（請求年月）を確認して作り直してください。",
                m.to_japanese(),
                expected.to_japanese()
            ),
            format!(
                "The processing month is {m}, but the federation is now receiving {expected}. Check the claim month in the billing software and create the file again."
            ),
        );
    }
    Some(ClaimSummary {
        office_number: office?,
        processing_month: month?,
        data_type,
        data_records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The synthetic example of claim-format.md §1.6.
    const EXAMPLE: &str = "1,1,0,4,711,0,0,1379999996,0,7,202506,1\r\n\
2,2,\"7111\",202505,1379999996,1,0,01,1,2000,22800,20520,0,2280,0,0,0,0,0,0\r\n\
2,3,\"7131\",01,202505,1379999996,00139998,\"0000123456\",,,,,,,19400101,2,22,,20240401,20260331,1,1379999988,,,,,,,,,90,,,,2000,20520,2280,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\r\n\
2,4,\"7131\",02,202505,1379999996,00139998,\"0000123456\",11,1111,250,8,0,0,0,2000,0,0,0,\"\"\r\n\
2,5,\"7131\",10,202505,1379999996,00139998,\"0000123456\",11,8,2000,2000,0,,,2000,1140,20520,2280,0,0,0,0,0,0,0,0,0,,,,,,,,,,,,\r\n\
3,6\r\n";

    fn ctx() -> CheckContext {
        CheckContext {
            processing_month: Some("202506".parse().unwrap()),
        }
    }

    fn codes(r: &Report) -> Vec<&str> {
        r.findings.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn the_example_file_is_sendable() {
        let r = check(EXAMPLE.as_bytes(), &ctx());
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert!(r.is_sendable());
        let s = r.summary.unwrap();
        assert_eq!(s.office_number.as_str(), "1379999996");
        assert_eq!(s.processing_month.to_string(), "202506");
        assert_eq!(s.data_type, "711");
        assert_eq!(s.data_records, 4);
    }

    #[test]
    fn record_count_mismatch_is_found() {
        let bad = EXAMPLE.replacen("1,1,0,4,", "1,1,0,5,", 1);
        let r = check(bad.as_bytes(), &ctx());
        assert_eq!(codes(&r), vec!["control.record_count"]);
        assert_eq!(r.findings[0].record_no, Some(1));
        assert_eq!(r.findings[0].item_no, Some(4));
        assert!(r.findings[0].message_ja.contains("4 件"));
        assert!(!r.is_sendable());
    }

    #[test]
    fn a_truncated_file_reports_every_problem() {
        let cut = &EXAMPLE[..EXAMPLE.find("2,5,").unwrap()];
        let r = check(cut.as_bytes(), &ctx());
        assert_eq!(codes(&r), vec!["end.missing", "control.record_count"]);
    }

    #[test]
    fn end_record_must_be_last_and_numbered() {
        let moved = EXAMPLE
            .replace("3,6\r\n", "")
            .replace("1,1,0,4,", "1,1,0,3,");
        let moved = moved.replacen("2,5,", "3,5\r\n2,6,", 1);
        let r = check(moved.as_bytes(), &ctx());
        assert!(codes(&r).contains(&"end.position"), "{:?}", codes(&r));
        let renumbered = EXAMPLE.replace("3,6\r\n", "3,7\r\n");
        let r = check(renumbered.as_bytes(), &ctx());
        assert_eq!(codes(&r), vec!["record.number"]);
        assert_eq!(r.findings[0].record_no, Some(6));
    }

    #[test]
    fn line_endings_and_encoding() {
        let lf = EXAMPLE.replace("\r\n", "\n");
        let r = check(lf.as_bytes(), &ctx());
        assert_eq!(codes(&r), vec!["file.line_ending"]);
        assert!(r.findings[0].message_en.contains("6 line(s)"));
        let mut bad = EXAMPLE.as_bytes().to_vec();
        bad.insert(10, 0x81);
        bad.insert(11, 0x0A);
        let r = check(&bad, &ctx());
        assert_eq!(codes(&r), vec!["file.not_cp932"]);
        assert!(r.findings[0].message_ja.contains("11 バイト目"));
    }

    #[test]
    fn office_number_and_processing_month() {
        let bad = EXAMPLE.replacen("1379999996,0,7,202506", "1379999990,0,7,202513", 1);
        let r = check(bad.as_bytes(), &ctx());
        assert_eq!(
            codes(&r),
            vec!["control.office_number", "control.processing_month"]
        );
        assert!(r.summary.is_none());
        let other_month = EXAMPLE.replacen(",202506,1\r\n", ",202507,1\r\n", 1);
        let r = check(other_month.as_bytes(), &ctx());
        assert_eq!(codes(&r), vec!["control.processing_month_mismatch"]);
        assert!(r.findings[0].message_ja.contains("2025年6月"));
        // Without a known processing month that check is skipped.
        let r = check(other_month.as_bytes(), &CheckContext::default());
        assert!(r.is_sendable());
    }

    #[test]
    fn eleven_item_control_records_are_not_read_as_kaigo() {
        let shogai = "1,1,0,1,J11,0,1219999990,0,7,202506,\r\n2,2,\"J111\",01\r\n3,3\r\n";
        let r = check(shogai.as_bytes(), &ctx());
        assert_eq!(codes(&r), vec!["control.items"]);
    }

    #[test]
    fn empty_garbage_and_bom() {
        assert_eq!(codes(&check(b"", &ctx())), vec!["file.empty"]);
        let r = check(b"hello world\r\n", &ctx());
        assert!(codes(&r).contains(&"control.missing"));
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(EXAMPLE.as_bytes());
        assert_eq!(codes(&check(&bom, &ctx())), vec!["file.utf8_bom"]);
        let mut eof = EXAMPLE.as_bytes().to_vec();
        eof.push(0x1A);
        let r = check(&eof, &ctx());
        assert_eq!(codes(&r), vec!["file.eof_marker"]);
        assert!(r.is_sendable());
    }

    #[test]
    fn completeness_follows_the_envelope() {
        assert_eq!(completeness(EXAMPLE.as_bytes()), Completeness::Complete);
        let half = &EXAMPLE.as_bytes()[..EXAMPLE.len() / 2];
        assert_eq!(completeness(half), Completeness::Truncated);
        let at_record_boundary = &EXAMPLE[..EXAMPLE.find("3,6").unwrap()];
        assert_eq!(
            completeness(at_record_boundary.as_bytes()),
            Completeness::Truncated
        );
        let no_final_crlf = EXAMPLE.trim_end();
        assert_eq!(
            completeness(no_final_crlf.as_bytes()),
            Completeness::Truncated
        );
        assert_eq!(completeness(b"PK\x03\x04"), Completeness::NotAClaim);
        assert_eq!(completeness(b""), Completeness::NotAClaim);
        let mut eof = EXAMPLE.as_bytes().to_vec();
        eof.push(0x1A);
        assert_eq!(completeness(&eof), Completeness::Complete);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A cheap deterministic sweep; the fuzzer of the full checker goes further.
        let mut seed = 0x2545F4914F6CDD1Du64;
        for len in 0..400 {
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                const ALPHABET: &[u8] = b"1,2,3\r\n\"x\x81\x40\x1A\xEF";
                bytes.push(ALPHABET[(seed % ALPHABET.len() as u64) as usize]);
            }
            let r = check(&bytes, &ctx());
            assert!(bytes.is_empty() || !r.findings.is_empty() || r.summary.is_some());
            let _ = completeness(&bytes);
        }
    }
}
