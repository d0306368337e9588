//! The federation's two checks on claim bytes: 到達 (arrival, synchronous, on the envelope) and
//! 受付 (reception, the format check whose result is revealed later).
//!
//! Pure functions of their inputs, no I/O, so tests can predict every outcome. The rules are
//! listed in README.md ("受付 decision rules") and must stay in step with it:
//! a control-record or numbering problem gives `rejected` / `×`; otherwise a record-level
//! problem in a 明細書 or 7111 record gives `accepted_with_returns` / `△`; otherwise
//! `accepted` / `○`. Quoted and bare CSV values are treated alike.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::ids;

/// One problem found by a check. Arrival problems have no record number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    pub record_no: Option<u64>,
    pub code: String,
    pub message: String,
}

impl Issue {
    fn file(code: &str, message: String) -> Issue {
        Issue {
            record_no: None,
            code: code.to_owned(),
            message,
        }
    }

    fn record(record_no: usize, code: &str, message: String) -> Issue {
        Issue {
            record_no: Some(record_no as u64),
            code: code.to_owned(),
            message,
        }
    }
}

/// The 受付 outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceptionStatus {
    Accepted,
    AcceptedWithReturns,
    Rejected,
}

impl ReceptionStatus {
    /// The wire name (`accepted`, `accepted_with_returns`, `rejected`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReceptionStatus::Accepted => "accepted",
            ReceptionStatus::AcceptedWithReturns => "accepted_with_returns",
            ReceptionStatus::Rejected => "rejected",
        }
    }

    /// The reception mark (○ / △ / ×).
    pub fn mark(self) -> &'static str {
        match self {
            ReceptionStatus::Accepted => "○",
            ReceptionStatus::AcceptedWithReturns => "△",
            ReceptionStatus::Rejected => "×",
        }
    }
}

/// The 受付 result with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceptionResult {
    pub status: ReceptionStatus,
    pub errors: Vec<Issue>,
}

/// What the 受付 check needs besides the bytes.
#[derive(Debug, Clone, Copy)]
pub struct ReceptionContext<'a> {
    /// 処理対象年月 in force at arrival, `YYYYMM`.
    pub processing_month: &'a str,
    /// 事業所番号 of every office registered for the submitting user ID.
    pub offices: &'a [String],
}

/// データ種別 values of 介護 provider files.
const DATA_TYPES: [&str; 5] = ["711", "71R", "821", "812", "71B"];

fn decode_strict(body: &[u8]) -> Option<Cow<'_, str>> {
    encoding_rs::SHIFT_JIS.decode_without_bom_handling_and_without_replacement(body)
}

/// An 8.3 file name: stem of 1–8 and optional extension of 1–3 ASCII alphanumerics, `_` or `-`.
pub fn is_8_3_name(name: &str) -> bool {
    let ok = |part: &str, max: usize| {
        !part.is_empty()
            && part.len() <= max
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    match name.split_once('.') {
        Some((stem, ext)) => ok(stem, 8) && ok(ext, 3),
        None => ok(name, 8),
    }
}

/// The record type (first item, quotes removed) of a raw record.
fn record_type(record: &str) -> &str {
    let first = record.split(',').next().unwrap_or("").trim();
    first
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(first)
        .trim()
}

/// Splits decoded text into records. The final CRLF, if any, ends the last record.
fn records(text: &str) -> Vec<&str> {
    let body = text.strip_suffix("\r\n").unwrap_or(text);
    if body.is_empty() {
        return Vec::new();
    }
    body.split("\r\n").collect()
}

/// The 到達 check: file name, CP932 decoding, control record first, CRLF-terminated end
/// record last. An empty result means the claim arrived.
pub fn check_arrival(file_name: Option<&str>, body: &[u8]) -> Vec<Issue> {
    let mut issues = Vec::new();
    match file_name {
        None => issues.push(Issue::file(
            "missing_file_name",
            "ファイル名がありません (the X-File-Name header is missing)".into(),
        )),
        Some(name) if !is_8_3_name(name) => issues.push(Issue::file(
            "bad_file_name",
            format!(
                "ファイル名「{name}」は8.3形式の半角英数字ではありません \
                 (the file name is not an 8.3 name of ASCII letters, digits, _ or -)"
            ),
        )),
        Some(_) => {}
    }
    let text = match decode_strict(body) {
        Some(text) => text,
        None => {
            issues.push(Issue::file(
                "not_cp932",
                "CP932 (Shift_JIS) として読めないバイトがあります (the body is not valid CP932)"
                    .into(),
            ));
            encoding_rs::SHIFT_JIS.decode_without_bom_handling(body).0
        }
    };
    let recs = records(&text);
    if recs.first().map(|r| record_type(r)) != Some("1") {
        issues.push(Issue::file(
            "missing_control_record",
            "先頭のレコードがコントロールレコードではありません \
             (the first record is not a control record)"
                .into(),
        ));
    }
    if recs.len() < 2 || recs.last().map(|r| record_type(r)) != Some("3") {
        issues.push(Issue::file(
            "missing_end_record",
            "最後のレコードがエンドレコードではありません (the last record is not an end record)"
                .into(),
        ));
    }
    if !text.ends_with("\r\n") {
        issues.push(Issue::file(
            "missing_final_crlf",
            "最後のレコードが CRLF で終わっていません (the last record is not CRLF-terminated)"
                .into(),
        ));
    }
    issues
}

/// Splits one record into items: comma-separated, each either bare or wrapped in double quotes
/// with `""` standing for one quote. `None` if the record is malformed.
pub fn split_items(record: &str) -> Option<Vec<String>> {
    let mut items = Vec::new();
    let mut chars = record.chars().peekable();
    loop {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        item.push('"');
                    }
                    '"' => break,
                    c => item.push(c),
                }
            }
            match chars.next() {
                None => {
                    items.push(item);
                    return Some(items);
                }
                Some(',') => items.push(item),
                Some(_) => return None,
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        items.push(item);
                        return Some(items);
                    }
                    Some(',') => break,
                    Some('"') => return None,
                    Some(c) => item.push(c),
                }
            }
            items.push(item);
        }
    }
}

fn number(value: &str) -> Option<u64> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// 事業所番号 (control record item 8) of a claim, if the envelope can be read.
pub fn control_office_number(body: &[u8]) -> Option<String> {
    let text = encoding_rs::SHIFT_JIS.decode_without_bom_handling(body).0;
    let first = records(&text).into_iter().next()?;
    let items = split_items(first)?;
    items
        .get(7)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The 受付 check (see the module documentation and README.md for the rules).
pub fn check_reception(body: &[u8], ctx: &ReceptionContext<'_>) -> ReceptionResult {
    let rejected = |errors| ReceptionResult {
        status: ReceptionStatus::Rejected,
        errors,
    };
    let Some(text) = decode_strict(body) else {
        return rejected(vec![Issue::file(
            "not_cp932",
            "CP932 (Shift_JIS) として読めないバイトがあります (the body is not valid CP932)".into(),
        )]);
    };
    let raw = records(&text);
    let mut errors = Vec::new();
    let mut parsed: Vec<Option<Vec<String>>> = Vec::with_capacity(raw.len());
    for (i, rec) in raw.iter().enumerate() {
        let no = i + 1;
        if rec.contains(['\r', '\n']) {
            errors.push(Issue::record(
                no,
                "bad_line_ending",
                "レコード内に CR または LF 単独の改行があります (a lone CR or LF inside a record)"
                    .into(),
            ));
            parsed.push(None);
            continue;
        }
        let items = split_items(rec);
        if items.is_none() {
            errors.push(Issue::record(
                no,
                "malformed_record",
                "CSV の引用符が正しくありません (malformed CSV quoting)".into(),
            ));
        }
        parsed.push(items);
    }

    // Record types and numbering.
    let last = parsed.len();
    let data_records = raw.iter().filter(|r| record_type(r) == "2").count() as u64;
    for (i, items) in parsed.iter().enumerate() {
        let no = i + 1;
        let Some(items) = items else { continue };
        let kind = items.first().map(|s| s.trim()).unwrap_or("");
        let expected = if no == 1 {
            "1"
        } else if no == last {
            "3"
        } else {
            "2"
        };
        if kind != expected {
            errors.push(Issue::record(
                no,
                "unexpected_record_type",
                format!(
                    "レコード種別「{kind}」はこの位置に置けません \
                     (record type {kind:?} where {expected} is expected)"
                ),
            ));
        }
        let record_no = items.get(1).map(String::as_str).unwrap_or("");
        if number(record_no) != Some(no as u64) {
            errors.push(Issue::record(
                no,
                "record_number_mismatch",
                format!(
                    "レコード番号「{record_no}」が位置 {no} と一致しません \
                     (record number {record_no:?} at position {no})"
                ),
            ));
        }
    }

    // The control record.
    if let Some(Some(control)) = parsed.first() {
        if control.len() != 12 {
            errors.push(Issue::record(
                1,
                "control_item_count",
                format!(
                    "コントロールレコードの項目数が {} です。12 項目が必要です \
                     (the control record has {} items, expected 12)",
                    control.len(),
                    control.len()
                ),
            ));
        } else {
            check_control(control, data_records, ctx, &mut errors);
        }
    }
    if !errors.is_empty() {
        return rejected(errors);
    }

    // Record-level checks.
    for (i, items) in parsed.iter().enumerate() {
        let Some(items) = items else { continue };
        if items.first().map(|s| s.trim()) != Some("2") {
            continue;
        }
        check_data_record(i + 1, items, &mut errors);
    }
    ReceptionResult {
        status: if errors.is_empty() {
            ReceptionStatus::Accepted
        } else {
            ReceptionStatus::AcceptedWithReturns
        },
        errors,
    }
}

fn check_control(
    control: &[String],
    data_records: u64,
    ctx: &ReceptionContext<'_>,
    errors: &mut Vec<Issue>,
) {
    let item = |n: usize| control.get(n - 1).map(|s| s.trim()).unwrap_or("");
    let count = item(4);
    if number(count) != Some(data_records) {
        errors.push(Issue::record(
            1,
            "record_count_mismatch",
            format!(
                "レコード件数「{count}」がデータレコード数 {data_records} と一致しません \
                 (record count {count:?} but {data_records} data records)"
            ),
        ));
    }
    let data_type = item(5);
    if !DATA_TYPES.contains(&data_type) {
        errors.push(Issue::record(
            1,
            "bad_data_type",
            format!(
                "データ種別「{data_type}」は受け付けられません \
                 (data type {data_type:?} is not one of 711, 71R, 821, 812, 71B)"
            ),
        ));
    }
    let office = item(8);
    if !ctx.offices.iter().any(|o| o == office) {
        errors.push(Issue::record(
            1,
            "office_not_registered",
            format!(
                "事業所番号「{office}」はこの利用者IDの事業所ではありません \
                 (office {office:?} is not registered for this user ID)"
            ),
        ));
    }
    let media = item(10);
    if media != "7" {
        errors.push(Issue::record(
            1,
            "bad_media_type",
            format!("媒体区分「{media}」は 7 ではありません (media type {media:?} is not 7)"),
        ));
    }
    let month = item(11);
    if month != ctx.processing_month {
        errors.push(Issue::record(
            1,
            "processing_month_mismatch",
            format!(
                "処理対象年月「{month}」が受付中の処理対象年月 {} と一致しません \
                 (processing month {month:?}, expected {})",
                ctx.processing_month, ctx.processing_month
            ),
        ));
    }
}

/// Record-level (△) checks of one data record; `items[0]` is `2`, `items[1]` the record number
/// and `items[k + 1]` item k (item 1 = 交換情報識別番号).
fn check_data_record(no: usize, items: &[String], errors: &mut Vec<Issue>) {
    let item = |k: usize| items.get(k + 1).map(|s| s.trim()).unwrap_or("");
    let id = item(1);
    if id == "7111" {
        let office = item(3);
        if !ids::is_valid_office_number(office) {
            errors.push(Issue::record(
                no,
                "bad_office_number",
                format!(
                    "請求書の事業所番号「{office}」が不正です (check digit) \
                     (invalid office number {office:?} in the 7111 record)"
                ),
            ));
        }
    } else if id.starts_with("71") && !matches!(id, "7112" | "7113") {
        let insurer = item(5);
        if !ids::is_valid_insurer_number_8(insurer) {
            errors.push(Issue::record(
                no,
                "bad_insurer_number",
                format!(
                    "証記載保険者番号「{insurer}」が不正です \
                     (invalid insurer number {insurer:?}: 00 + 6 digits with a check digit)"
                ),
            ));
        }
        if item(6).is_empty() {
            errors.push(Issue::record(
                no,
                "missing_insured_number",
                "被保険者番号がありません (the insured person's number is missing)".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example claim of claim-format.md §1.6 (ほのぼの-style quoting).
    pub const EXAMPLE: &str = "1,1,0,4,711,0,0,1379999996,0,7,202506,1\r\n\
2,2,\"7111\",202505,1379999996,1,0,01,1,2000,22800,20520,0,2280,0,0,0,0,0,0\r\n\
2,3,\"7131\",01,202505,1379999996,00139998,\"0000123456\",,,,,,,19400101,2,22,,20240401,20260331,1,1379999988,,,,,,,,,90,,,,2000,20520,2280,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\r\n\
2,4,\"7131\",02,202505,1379999996,00139998,\"0000123456\",11,1111,250,8,0,0,0,2000,0,0,0,\"\"\r\n\
2,5,\"7131\",10,202505,1379999996,00139998,\"0000123456\",11,8,2000,2000,0,,,2000,1140,20520,2280,0,0,0,0,0,0,0,0,0,,,,,,,,,,,,\r\n\
3,6\r\n";

    /// The same claim with every data item quoted (QKAN style).
    const QKAN: &str = "1,1,0,4,711,0,000000,1379999996,00,7,202506,0\r\n\
2,2,\"7111\",\"202505\",\"1379999996\",\"1\",\"0\",\"01\",\"1\",\"2000\",\"22800\",\"20520\",\"0\",\"2280\",\"0\",\"\",\"0\",\"0\",\"0\",\"0\"\r\n\
2,3,\"7131\",\"01\",\"202505\",\"1379999996\",\"00139998\",\"0000123456\",\"\",\"19400101\"\r\n\
2,4,\"7131\",\"02\",\"202505\",\"1379999996\",\"00139998\",\"0000123456\",\"11\",\"1111\"\r\n\
2,5,\"7131\",\"10\",\"202505\",\"1379999996\",\"00139998\",\"0000123456\",\"11\",\"8\"\r\n\
3,6\r\n";

    fn cp932(s: &str) -> Vec<u8> {
        let (bytes, _, errors) = encoding_rs::SHIFT_JIS.encode(s);
        assert!(!errors);
        bytes.into_owned()
    }

    fn offices() -> Vec<String> {
        vec!["1379999996".to_owned()]
    }

    fn reception(s: &str) -> ReceptionResult {
        let offices = offices();
        check_reception(
            &cp932(s),
            &ReceptionContext {
                processing_month: "202506",
                offices: &offices,
            },
        )
    }

    fn codes(r: &ReceptionResult) -> Vec<(Option<u64>, &str)> {
        r.errors
            .iter()
            .map(|e| (e.record_no, e.code.as_str()))
            .collect()
    }

    #[test]
    fn the_example_is_accepted_in_both_quoting_styles() {
        for s in [EXAMPLE, QKAN] {
            let r = reception(s);
            assert_eq!(r.status, ReceptionStatus::Accepted, "{:?}", r.errors);
            assert_eq!(r.status.mark(), "○");
            assert!(check_arrival(Some("KK250601.CSV"), &cp932(s)).is_empty());
        }
    }

    #[test]
    fn wrong_processing_month_is_rejected() {
        let s = EXAMPLE.replace(",7,202506,1", ",7,202505,1");
        let r = reception(&s);
        assert_eq!(r.status, ReceptionStatus::Rejected);
        assert_eq!(r.status.mark(), "×");
        assert_eq!(codes(&r), vec![(Some(1), "processing_month_mismatch")]);
    }

    #[test]
    fn control_record_problems_are_all_listed() {
        let s = EXAMPLE.replace(
            "1,1,0,4,711,0,0,1379999996,0,7,202506,1",
            "1,1,0,5,999,0,0,1379999988,0,1,202506,1",
        );
        let r = reception(&s);
        assert_eq!(r.status, ReceptionStatus::Rejected);
        assert_eq!(
            codes(&r),
            vec![
                (Some(1), "record_count_mismatch"),
                (Some(1), "bad_data_type"),
                (Some(1), "office_not_registered"),
                (Some(1), "bad_media_type"),
            ]
        );
    }

    #[test]
    fn control_record_item_count_and_numbering() {
        let s = EXAMPLE.replace(",7,202506,1\r\n", ",7,202506\r\n");
        let r = reception(&s);
        assert_eq!(codes(&r), vec![(Some(1), "control_item_count")]);

        let s = EXAMPLE.replace("2,4,\"7131\",02", "2,7,\"7131\",02");
        let r = reception(&s);
        assert_eq!(r.status, ReceptionStatus::Rejected);
        assert_eq!(codes(&r), vec![(Some(4), "record_number_mismatch")]);

        let s = EXAMPLE.replace("3,6\r\n", "3,9\r\n");
        assert_eq!(
            codes(&reception(&s)),
            vec![(Some(6), "record_number_mismatch")]
        );
    }

    #[test]
    fn record_level_problems_give_returns() {
        // Bad insurer check digit in record 4, empty insured number in record 5 (quoted ""),
        // bad office check digit in the 7111 record.
        let s = EXAMPLE
            .replace(
                "2,4,\"7131\",02,202505,1379999996,00139998",
                "2,4,\"7131\",02,202505,1379999996,00139997",
            )
            .replace(
                "2,5,\"7131\",10,202505,1379999996,00139998,\"0000123456\"",
                "2,5,\"7131\",10,202505,1379999996,00139998,\"\"",
            )
            .replace(
                "2,2,\"7111\",202505,1379999996",
                "2,2,\"7111\",202505,1379999990",
            );
        let r = reception(&s);
        assert_eq!(r.status, ReceptionStatus::AcceptedWithReturns);
        assert_eq!(r.status.mark(), "△");
        assert_eq!(
            codes(&r),
            vec![
                (Some(2), "bad_office_number"),
                (Some(4), "bad_insurer_number"),
                (Some(5), "missing_insured_number"),
            ]
        );
    }

    #[test]
    fn record_level_problems_in_qkan_style() {
        let s = QKAN.replace(
            "\"00139998\",\"0000123456\",\"11\",\"1111\"",
            "\"139998\",\"0000123456\",\"11\",\"1111\"",
        );
        let r = reception(&s);
        assert_eq!(r.status, ReceptionStatus::AcceptedWithReturns);
        assert_eq!(codes(&r), vec![(Some(4), "bad_insurer_number")]);
    }

    #[test]
    fn rejection_hides_record_level_problems() {
        let s = EXAMPLE.replace(",7,202506,1", ",7,202507,1").replace(
            "00139998,\"0000123456\",11,1111",
            "00139997,\"0000123456\",11,1111",
        );
        let r = reception(&s);
        assert_eq!(r.status, ReceptionStatus::Rejected);
        assert_eq!(codes(&r), vec![(Some(1), "processing_month_mismatch")]);
    }

    #[test]
    fn malformed_quoting_is_rejected() {
        let s = EXAMPLE.replace("\"0000123456\",11,1111", "\"0000\"123456\",11,1111");
        let r = reception(&s);
        assert_eq!(r.status, ReceptionStatus::Rejected);
        assert_eq!(codes(&r), vec![(Some(4), "malformed_record")]);
    }

    #[test]
    fn arrival_checks() {
        let body = cp932(EXAMPLE);
        let arrival = |name: Option<&str>, body: &[u8]| -> Vec<String> {
            check_arrival(name, body)
                .into_iter()
                .map(|i| i.code)
                .collect()
        };
        assert_eq!(arrival(None, &body), vec!["missing_file_name"]);
        assert_eq!(
            arrival(Some("TOOLONGNAME.CSV"), &body),
            vec!["bad_file_name"]
        );
        assert_eq!(arrival(Some("KK2506.CSVX"), &body), vec!["bad_file_name"]);
        assert_eq!(arrival(Some("a.b.c"), &body), vec!["bad_file_name"]);
        assert_eq!(arrival(Some("日本.CSV"), &body), vec!["bad_file_name"]);
        assert!(arrival(Some("K_1-2"), &body).is_empty());

        let mut bad = body.clone();
        bad.extend_from_slice(&[0x82]);
        bad.extend_from_slice(b"\r\n");
        // A lone lead byte: not CP932, and the last record is no longer an end record.
        assert_eq!(
            arrival(Some("A.CSV"), &bad),
            vec!["not_cp932", "missing_end_record"]
        );

        let no_crlf = &body[..body.len() - 2];
        assert_eq!(arrival(Some("A.CSV"), no_crlf), vec!["missing_final_crlf"]);
        let lf_only = EXAMPLE.replace("\r\n", "\n");
        assert_eq!(
            arrival(Some("A.CSV"), lf_only.as_bytes()),
            vec!["missing_end_record", "missing_final_crlf"]
        );
        assert_eq!(
            arrival(Some("A.CSV"), b""),
            vec![
                "missing_control_record",
                "missing_end_record",
                "missing_final_crlf"
            ]
        );
        let no_control = EXAMPLE.replacen("1,1,", "2,1,", 1);
        assert_eq!(
            arrival(Some("A.CSV"), no_control.as_bytes()),
            vec!["missing_control_record"]
        );
    }

    #[test]
    fn kanji_in_quoted_items_are_fine() {
        let s = EXAMPLE.replace(",0,0,0,\"\"\r\n", ",0,0,0,\"摘要,です\"\r\n");
        assert_eq!(reception(&s).status, ReceptionStatus::Accepted);
    }

    #[test]
    fn split_items_handles_quotes() {
        assert_eq!(
            split_items("2,3,\"7131\",,\"a\"\"b\",\"\"").unwrap(),
            vec!["2", "3", "7131", "", "a\"b", ""]
        );
        assert_eq!(split_items("").unwrap(), vec![""]);
        assert!(split_items("\"abc").is_none());
        assert!(split_items("\"a\"b").is_none());
        assert!(split_items("a\"b").is_none());
    }

    #[test]
    fn reads_the_control_office_number() {
        assert_eq!(
            control_office_number(&cp932(EXAMPLE)).as_deref(),
            Some("1379999996")
        );
        assert_eq!(control_office_number(b"garbage"), None);
    }
}
