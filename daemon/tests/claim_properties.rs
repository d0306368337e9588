#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests of the claim checker (`kaigo_relay::claim::check` and `completeness`), on
//! inputs that proptest generates and, on failure, shrinks to a minimal case. They prove:
//!
//! 1. The checker is total. No input makes it panic: arbitrary bytes; the valid example files of
//!    claim-format.md §1.6 with arbitrary bytes inserted, replaced, deleted or cut off at
//!    arbitrary positions; and line-structured inputs built from a small grammar of records
//!    (random items joined by commas, each bare, quoted or broken-quoted, lines ending in CRLF or
//!    LF). Every such input also gets a consistent report: the same bytes give the same report,
//!    a non-empty input gets a finding or a summary, and the verdict agrees with the findings.
//! 2. Quoting is not meaning. The §1.6 example 711 and 821 files, and variants of them mutated
//!    by proptest (a changed record count, a wrong check digit, a wrong month, an extra item, a
//!    non-numeric amount, a removed line, another media type), get the same verdict and the
//!    same set of finding codes whether every data-record item is quoted (QKAN style), only the
//!    items that must be (minimal quoting: a comma, a double quote, a space or a non-ASCII
//!    character, with `""` inside quotes), or every item but the record type and number
//!    (control and end records included). The record type and record number stay bare, as
//!    real generators write them.
//!
//! The default is a modest 256 cases per property so that the file runs in seconds in debug
//! builds; `PROPTEST_CASES=20000 cargo test -p kaigo-relay --test claim_properties` goes further.

use std::collections::BTreeSet;

use kaigo_relay::claim::{CheckContext, Report, Severity, Verdict, check, completeness};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------------------------
// Contexts and invariants
// ---------------------------------------------------------------------------------------------

/// The June-2025 reception window the §1.6 examples were made for.
fn ctx() -> CheckContext {
    CheckContext {
        processing_month: Some("202506".parse().unwrap()),
        ..Default::default()
    }
}

/// No known processing month: the month checks are skipped.
fn ctx_without_month() -> CheckContext {
    CheckContext {
        processing_month: None,
        ..Default::default()
    }
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Runs both contexts and `completeness` on `bytes`; panics (which proptest reports and shrinks)
/// if the checker panics or gives an inconsistent report.
fn assert_total(bytes: &[u8]) {
    for ctx in [ctx(), ctx_without_month()] {
        let report = check(bytes, &ctx);
        assert_eq!(
            report,
            check(bytes, &ctx),
            "the same bytes gave two reports"
        );
        assert!(
            bytes.is_empty() || !report.findings.is_empty() || report.summary.is_some(),
            "a non-empty input got neither a finding nor a summary"
        );
        let has_error = report
            .findings
            .iter()
            .any(|f| f.severity == Severity::Error);
        match report.verdict() {
            Verdict::Ok => assert!(report.findings.is_empty() && report.summary.is_some()),
            Verdict::Warning => assert!(!has_error && report.summary.is_some()),
            Verdict::Refused => assert!(has_error || report.summary.is_none()),
        }
        for f in &report.findings {
            assert!(!f.code.is_empty() && !f.message_ja.is_empty() && !f.message_en.is_empty());
        }
    }
    let _ = completeness(bytes);
}

fn codes(report: &Report) -> BTreeSet<&str> {
    report.findings.iter().map(|f| f.code.as_str()).collect()
}

fn cp932(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let cp = u32::from(c);
        if (0xE000..=0xE757).contains(&cp) {
            // 外字: encoding_rs decodes 0xF040–0xF9FC to U+E000–U+E757 but does not encode them.
            let pointer = cp - 0xE000 + 8836;
            let (lead, trail) = (pointer / 188, pointer % 188);
            out.push(u8::try_from(lead + 0xC1).unwrap());
            out.push(u8::try_from(trail + if trail < 0x3F { 0x40 } else { 0x41 }).unwrap());
        } else {
            let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(c.encode_utf8(&mut buf));
            assert!(!unmappable, "not representable in CP932: {c:?}");
            out.extend_from_slice(&bytes);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The example files of claim-format.md §1.6 (ほのぼの-style quoting)
// ---------------------------------------------------------------------------------------------

const EXAMPLE_711: &[&str] = &[
    "1,1,0,4,711,0,0,1379999996,0,7,202506,1",
    "2,2,\"7111\",202505,1379999996,1,0,01,1,2000,22800,20520,0,2280,0,0,0,0,0,0",
    "2,3,\"7131\",01,202505,1379999996,00139998,\"0000123456\",,,,,,,19400101,2,22,,20240401,20260331,1,1379999988,,,,,,,,,90,,,,2000,20520,2280,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0",
    "2,4,\"7131\",02,202505,1379999996,00139998,\"0000123456\",11,1111,250,8,0,0,0,2000,0,0,0,\"\"",
    "2,5,\"7131\",10,202505,1379999996,00139998,\"0000123456\",11,8,2000,2000,0,,,2000,1140,20520,2280,0,0,0,0,0,0,0,0,0,,,,,,,,,,,,",
    "3,6",
];

const EXAMPLE_821: &[&str] = &[
    "1,1,0,2,821,0,0,1379999988,0,7,202506,1",
    "2,2,\"8222\",202505,00139998,1379999988,1,20250603,3,01,\"0000123456\",19400101,2,22,202404,202603,,1,1379999996,1,11,2000,,,,,,,",
    "2,3,\"8222\",202505,00139998,1379999988,1,20250603,3,99,\"0000123456\",19400101,2,22,202404,202603,19705,1,0,0,0,,,2000,0,2000,13012345,,",
    "3,4",
];

fn crlf_text(lines: &[&str]) -> String {
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    text
}

// ---------------------------------------------------------------------------------------------
// The re-quoting helper: split lines into items honouring quotes, re-emit in a quoting style
// ---------------------------------------------------------------------------------------------

/// A claim file as the values of its items, line by line (quotes removed, `""` unescaped).
type Model = Vec<Vec<String>>;

/// How a generator quotes items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Quote an item only when the spec requires it (§1.1): it holds a comma, a double quote, a
    /// space or a non-ASCII (2-byte) character.
    Minimal,
    /// QKAN: every item of a data record quoted except the record type and number; control and
    /// end records as in `Minimal`.
    Qkan,
    /// Every item of every record quoted except the record type and number.
    AllQuoted,
}

const STYLES: [Style; 3] = [Style::Minimal, Style::Qkan, Style::AllQuoted];

/// Splits one line into item values. A quoted item runs to the next lone `"`, with `""` standing
/// for one quote; anything between a closing quote and the next comma is kept as written.
fn split_items(line: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        value.push('"');
                    } else {
                        break;
                    }
                } else {
                    value.push(c);
                }
            }
        }
        let mut more = false;
        for c in chars.by_ref() {
            if c == ',' {
                more = true;
                break;
            }
            value.push(c);
        }
        items.push(value);
        if !more {
            return items;
        }
    }
}

fn needs_quotes(value: &str) -> bool {
    value
        .chars()
        .any(|c| c == ',' || c == '"' || c == ' ' || !c.is_ascii())
}

fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// One record in `style`. Items 1 and 2 (record type and number) are bare unless they must be
/// quoted, which they never are in these tests.
fn emit_line(items: &[String], style: Style) -> String {
    let data_record = items.first().is_some_and(|t| t == "2");
    items
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let quote = needs_quotes(value)
                || (i >= 2
                    && match style {
                        Style::Minimal => false,
                        Style::Qkan => data_record,
                        Style::AllQuoted => true,
                    });
            if quote { quoted(value) } else { value.clone() }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn parse(text: &str) -> Model {
    text.split_terminator("\r\n").map(split_items).collect()
}

fn emit(model: &Model, style: Style) -> String {
    let mut text = String::new();
    for items in model {
        text.push_str(&emit_line(items, style));
        text.push_str("\r\n");
    }
    text
}

/// Re-writes a CRLF claim file in `style`.
fn requote(text: &str, style: Style) -> String {
    emit(&parse(text), style)
}

#[test]
fn requote_writes_the_styles_real_generators_write() {
    let text = crlf_text(EXAMPLE_711);
    let qkan = requote(&text, Style::Qkan);
    let lines: Vec<&str> = qkan.split_terminator("\r\n").collect();
    assert_eq!(
        lines[0], EXAMPLE_711[0],
        "QKAN leaves the control record bare"
    );
    assert_eq!(
        lines[1],
        "2,2,\"7111\",\"202505\",\"1379999996\",\"1\",\"0\",\"01\",\"1\",\"2000\",\"22800\",\"20520\",\"0\",\"2280\",\"0\",\"0\",\"0\",\"0\",\"0\",\"0\""
    );
    assert!(lines[3].ends_with(",\"0\",\"\""));
    assert_eq!(lines[5], "3,6");
    let minimal = requote(&text, Style::Minimal);
    assert!(minimal.contains("\r\n2,2,7111,202505,1379999996,1,0,01,"));
    assert!(minimal.contains(",0000123456,11,1111,250,8,0,0,0,2000,0,0,0,\r\n"));
    let all = requote(&text, Style::AllQuoted);
    assert!(all.starts_with("1,1,\"0\",\"4\",\"711\","));
    assert!(all.ends_with("\r\n3,6\r\n"));
    // Round trip: every style holds the same item values.
    for style in STYLES {
        assert_eq!(parse(&requote(&text, style)), parse(&text), "{style:?}");
    }
    assert_eq!(
        split_items(r#"a,"x,""y""",,"""#),
        vec!["a", "x,\"y\"", "", ""]
    );
    assert_eq!(
        emit_line(&split_items(r#"2,2,"a b",介護,x"#), Style::Minimal),
        r#"2,2,"a b","介護",x"#
    );
}

#[test]
fn the_examples_are_clean_in_every_style() {
    for example in [EXAMPLE_711, EXAMPLE_821] {
        let text = crlf_text(example);
        for style in STYLES {
            let r = check(&cp932(&requote(&text, style)), &ctx());
            assert_eq!(r.verdict(), Verdict::Ok, "{style:?}: {:?}", r.findings);
        }
    }
}

#[test]
fn warnings_survive_requoting() {
    assert_eq!(cp932("\u{E000}\u{E757}介"), b"\xF0\x40\xF9\xFC\x89\xEE");
    // ISDN media type and a 外字 in the 摘要 of the 7131-02 record: sendable, with warnings.
    let mut model = parse(&crlf_text(EXAMPLE_711));
    model[0][9] = "1".to_owned();
    *model[3].last_mut().unwrap() = "\u{E000}".to_owned();
    let reports: Vec<Report> = STYLES
        .iter()
        .map(|&style| check(&cp932(&emit(&model, style)), &ctx()))
        .collect();
    for r in &reports {
        assert_eq!(r.verdict(), Verdict::Warning, "{:?}", r.findings);
        assert_eq!(codes(r), codes(&reports[0]));
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations of the example files (on item values, before quoting)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Mutation {
    /// Control item 4 (レコード件数) set to a number.
    RecordCount(u32),
    /// The last digit of an office, insurer or insured number replaced.
    CheckDigit(Index, char),
    /// A YYYYMM item (processing, service or validity month) replaced.
    Month(Index, String),
    /// An item inserted after the record number of some record.
    ExtraItem(Index, Index, String),
    /// A numeric item (amount, units, count, code) made non-numeric.
    NonNumeric(Index, String),
    /// A line removed (without renumbering the rest).
    RemoveLine(Index),
    /// Control item 10 (媒体区分) set, e.g. to `1` (ISDN), which is only a warning.
    Media(String),
}

/// An item value that may need quoting: plain digits, IDs, text with spaces, commas, quotes and
/// 2-byte characters (all representable in CP932; no single quote, no control characters).
fn item_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[0-9]{1,10}",
        "[A-Z0-9 ,\"]{1,8}",
        prop::sample::select(vec![
            "7111",
            "7131",
            "8222",
            "介護",
            "訪問介護　身体介護",
            "ｶﾅ ｶﾅ",
            "a,b",
            "say \"hi\"",
            "\"",
            "\"\"",
            " ",
            "①",
            "\u{E000}\u{E001}", // 外字 (user-defined, CP932 0xF040 0xF041): a warning
        ])
        .prop_map(str::to_owned),
    ]
}

fn month_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (2023u32..=2027, 1u32..=12).prop_map(|(y, m)| format!("{y}{m:02}")),
        prop::sample::select(vec![
            "202513",
            "202500",
            "2025-6",
            "",
            "20256",
            "２０２５０６"
        ])
        .prop_map(str::to_owned),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        prop_oneof![0u32..12, any::<u32>()].prop_map(Mutation::RecordCount),
        (any::<Index>(), prop::char::range('0', '9')).prop_map(|(i, d)| Mutation::CheckDigit(i, d)),
        (any::<Index>(), month_value()).prop_map(|(i, m)| Mutation::Month(i, m)),
        (any::<Index>(), any::<Index>(), item_value())
            .prop_map(|(r, at, v)| Mutation::ExtraItem(r, at, v)),
        (
            any::<Index>(),
            prop::sample::select(vec![
                "12a", "１２", "1,000", "2 000", "-", "1.5", "千円", "0x10", "\"5\"", "+3", "--1",
            ])
        )
            .prop_map(|(i, v)| Mutation::NonNumeric(i, v.to_owned())),
        any::<Index>().prop_map(Mutation::RemoveLine),
        prop::sample::select(vec!["1", "2", "4", "7", "9", "A"])
            .prop_map(|m| Mutation::Media(m.to_owned())),
    ]
}

/// The (line, item) cells whose value satisfies `pred`, skipping record type and number.
fn cells(model: &Model, pred: impl Fn(&str) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (l, items) in model.iter().enumerate() {
        for (i, v) in items.iter().enumerate().skip(2) {
            if pred(v) {
                out.push((l, i));
            }
        }
    }
    out
}

fn set_cell(model: &mut Model, cells: &[(usize, usize)], index: &Index, value: String) {
    if !cells.is_empty() {
        let (l, i) = *index.get(cells);
        model[l][i] = value;
    }
}

fn apply(model: &mut Model, mutation: &Mutation) {
    match mutation {
        Mutation::RecordCount(n) => {
            if let Some(item) = model
                .first_mut()
                .filter(|items| items.first().is_some_and(|t| t == "1"))
                .and_then(|items| items.get_mut(3))
            {
                *item = n.to_string();
            }
        }
        Mutation::CheckDigit(index, digit) => {
            let targets = cells(model, |v| {
                matches!(
                    v,
                    "1379999996" | "1379999988" | "00139998" | "0000123456" | "139998"
                )
            });
            if !targets.is_empty() {
                let (l, i) = *index.get(&targets);
                model[l][i].pop();
                model[l][i].push(*digit);
            }
        }
        Mutation::Month(index, month) => {
            let targets = cells(model, |v| {
                v.len() == 6 && v.starts_with("20") && v.bytes().all(|b| b.is_ascii_digit())
            });
            set_cell(model, &targets, index, month.clone());
        }
        Mutation::ExtraItem(line, at, value) => {
            if !model.is_empty() {
                let items = line.get_mut(model);
                let at = 2 + at.index(items.len().saturating_sub(2) + 1);
                let at = at.min(items.len());
                items.insert(at, value.clone());
            }
        }
        Mutation::NonNumeric(index, value) => {
            let targets = cells(model, |v| {
                !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
            });
            set_cell(model, &targets, index, value.clone());
        }
        Mutation::Media(media) => {
            if let Some(item) = model
                .first_mut()
                .filter(|items| items.first().is_some_and(|t| t == "1"))
                .and_then(|items| items.get_mut(9))
            {
                item.clone_from(media);
            }
        }
        Mutation::RemoveLine(index) => {
            if !model.is_empty() {
                let l = index.index(model.len());
                model.remove(l);
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Quoting style never changes the verdict or the finding codes.
    #[test]
    fn quoting_does_not_change_the_verdict(
        base in prop::sample::select(vec![EXAMPLE_711, EXAMPLE_821]),
        mutations in prop::collection::vec(mutation(), 1..=3),
    ) {
        let mut model = parse(&crlf_text(base));
        for m in &mutations {
            apply(&mut model, m);
        }
        let reference = emit(&model, Style::Minimal);
        for context in [ctx(), ctx_without_month()] {
            let minimal = check(&cp932(&reference), &context);
            for style in [Style::Qkan, Style::AllQuoted] {
                let text = emit(&model, style);
                prop_assert_eq!(parse(&text), model.clone(), "the helper lost an item");
                let other = check(&cp932(&text), &context);
                prop_assert_eq!(
                    minimal.verdict(),
                    other.verdict(),
                    "{:?} vs Minimal\n{}\n{}\n{:?}\n{:?}",
                    style, reference, text, minimal.findings, other.findings
                );
                prop_assert_eq!(
                    codes(&minimal),
                    codes(&other),
                    "{:?} vs Minimal\n{}\n{}",
                    style, reference, text
                );
                prop_assert_eq!(completeness(&cp932(&reference)), completeness(&cp932(&text)));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// No input panics the checker
// ---------------------------------------------------------------------------------------------

/// Bytes a claim file is made of, and the ones that trip decoders and line splitters.
const INTERESTING: &[u8] = b"0123456789,,,\"\"\r\n\r\n'\x00\x1A\x7F\x80\x81\x40\x82\xA0\x9F\xA0\xE0\xEF\xBB\xBF\xF0\x40\xF9\xFC\xFD\xFF 12-";

fn some_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..=max),
        prop::collection::vec(prop::sample::select(INTERESTING), 0..=max),
    ]
}

/// Valid files to splice into: both examples, each as ほのぼの wrote it and in every style.
fn valid_files() -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for example in [EXAMPLE_711, EXAMPLE_821] {
        let text = crlf_text(example);
        files.push(cp932(&text));
        for style in STYLES {
            files.push(cp932(&requote(&text, style)));
        }
    }
    files
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(Index, Vec<u8>),
    Replace(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), some_bytes(16)).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), some_bytes(16)).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<Index>().prop_map(Edit::Truncate),
    ]
}

fn apply_edit(bytes: &mut Vec<u8>, edit: &Edit) {
    match edit {
        Edit::Insert(at, new) => {
            let at = at.index(bytes.len() + 1);
            bytes.splice(at..at, new.iter().copied());
        }
        Edit::Replace(at, new) => {
            let at = at.index(bytes.len() + 1);
            let end = (at + new.len()).min(bytes.len());
            bytes.splice(at..end, new.iter().copied());
        }
        Edit::Delete(at, n) => {
            let at = at.index(bytes.len() + 1);
            let end = (at + n).min(bytes.len());
            bytes.drain(at..end);
        }
        Edit::Truncate(at) => {
            let at = at.index(bytes.len() + 1);
            bytes.truncate(at);
        }
    }
}

/// How an item of a grammar-built record is written.
#[derive(Debug, Clone, Copy)]
enum Quoting {
    Bare,
    Quoted,
    /// An opening quote that is never closed.
    Unterminated,
    /// A quoted item followed by stray characters before the comma.
    TrailingJunk,
}

fn grammar_item() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => item_value(),
        2 => prop::sample::select(vec![
            "7111", "7131", "7132", "8222", "8124", "J111", "711", "821", "71R", "J11", "1379999996",
            "1379999988", "1379999990", "00139998", "139998", "0000123456", "202505", "202506",
            "202513", "20250531", "20250230", "01", "02", "10", "99", "-10", "000", "0", "7", "1",
        ])
        .prop_map(str::to_owned),
        1 => "[ -~]{0,12}",
        1 => "[\\x00-\\x1f']{1,3}",
        1 => "[\u{FF61}-\u{FF9F}\u{3041}-\u{3093}介護訪問身体髙①　]{1,4}",
    ]
}

fn write_item(value: &str, quoting: Quoting) -> String {
    match quoting {
        Quoting::Bare => value.to_owned(),
        Quoting::Quoted => quoted(value),
        Quoting::Unterminated => format!("\"{value}"),
        Quoting::TrailingJunk => format!("{}x", quoted(value)),
    }
}

fn quoting() -> impl Strategy<Value = Quoting> {
    prop_oneof![
        8 => Just(Quoting::Bare),
        8 => Just(Quoting::Quoted),
        1 => Just(Quoting::Unterminated),
        1 => Just(Quoting::TrailingJunk),
    ]
}

/// One record: record type, record number (`None`: its true position), items after them.
#[derive(Debug, Clone)]
struct Record {
    kind: String,
    number: Option<String>,
    items: Vec<(String, Quoting)>,
}

fn record_kind() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("2".to_owned()),
        1 => Just("1".to_owned()),
        1 => Just("3".to_owned()),
        1 => "[0-9\"]{0,2}",
    ]
}

fn record(kind: impl Strategy<Value = String>, items: usize) -> impl Strategy<Value = Record> {
    (
        kind,
        prop_oneof![4 => Just(None), 1 => "[0-9]{0,3}".prop_map(Some)],
        prop::collection::vec((grammar_item(), quoting()), 0..=items),
    )
        .prop_map(|(kind, number, items)| Record {
            kind,
            number,
            items,
        })
}

/// A control record close enough to a real one that the checker reads past it.
fn control_record() -> impl Strategy<Value = Record> {
    (
        0u32..12,
        prop::sample::select(vec!["711", "821", "71R", "7A1", "J11", "999"]),
        prop::sample::select(vec!["1379999996", "1379999988", "1379999990", "12345"]),
        prop::sample::select(vec!["7", "1", "4", "9"]),
        month_value(),
        prop::collection::vec(quoting(), 10),
    )
        .prop_map(|(count, data_type, office, media, month, quotings)| {
            let values = [
                "0".to_owned(),
                count.to_string(),
                data_type.to_owned(),
                "0".to_owned(),
                "0".to_owned(),
                office.to_owned(),
                "0".to_owned(),
                media.to_owned(),
                month,
                "1".to_owned(),
            ];
            Record {
                kind: "1".to_owned(),
                number: None,
                items: values.into_iter().zip(quotings).collect(),
            }
        })
}

/// A line-structured input: records with their line endings; the last may have none.
fn grammar_file() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            3 => control_record().prop_map(Some),
            1 => record(record_kind(), 14).prop_map(Some),
            1 => Just(None),
        ],
        prop::collection::vec(record(record_kind(), 40), 0..8),
        prop_oneof![
            3 => record(Just("3".to_owned()), 1).prop_map(Some),
            1 => Just(None),
        ],
        prop::collection::vec(
            prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\n", "\r", ""]),
            10,
        ),
    )
        .prop_map(|(control, data, end, endings)| {
            let records: Vec<Record> = control.into_iter().chain(data).chain(end).collect();
            let mut text = String::new();
            for (position, r) in records.iter().enumerate() {
                let mut line = vec![
                    r.kind.clone(),
                    r.number
                        .clone()
                        .unwrap_or_else(|| (position + 1).to_string()),
                ];
                line.extend(r.items.iter().map(|(v, q)| write_item(v, *q)));
                text.push_str(&line.join(","));
                text.push_str(endings[position % endings.len()]);
            }
            cp932(&text)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_do_not_panic(bytes in some_bytes(2048)) {
        assert_total(&bytes);
    }

    #[test]
    fn spliced_valid_files_do_not_panic(
        base in prop::sample::select(valid_files()),
        edits in prop::collection::vec(edit(), 1..5),
    ) {
        let mut bytes = base;
        for e in &edits {
            apply_edit(&mut bytes, e);
        }
        assert_total(&bytes);
    }

    #[test]
    fn grammar_built_files_do_not_panic(bytes in grammar_file()) {
        assert_total(&bytes);
    }
}
