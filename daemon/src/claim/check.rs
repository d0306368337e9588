//! `check(bytes, context) -> Report`: everything the federation's 到達 and 受付 checks would
//! reject, found before sending, each problem explained in Japanese and English for a clerk.
//! The rules are claim-format.md §1.7: encoding and characters, CRLF records, the control record
//! (12 items for 介護), numbering and counts, data type against the exchange IDs (from the
//! table in `table.rs`), per-record item counts and numeric, date and month items, the office,
//! insurer and insured numbers with their check digits, service months against the processing
//! month and the claim time limit, the 7111 請求書 totals against the statements in the file,
//! the office's registration, and 障害 files, which are refused outright.
//!
//! Invariant: the checker is pure and total. It never panics on any input, never stops at the
//! first problem (only a file it cannot read as text, or a 障害 file, ends the check early), and
//! reports each finding with a stable code, the line (record number) and the CSV column where
//! it applies. A rule that fires on many lines is reported for its first lines and then once as
//! a count, so a broken 10 MB file still gives a readable report.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use admin_ui::help::{Code, code};
use serde::{Deserialize, Serialize};

use super::ids::{InsuredNumber, InsurerNumber, Month, OfficeNumber};
use super::records::{self, QuoteError, Terminator};
use super::table::{self, ExchangeId, InsurerForm, RecordLayout, Role, Table};

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
    /// The CSV column within the line, 1-based (column 1 is the record type, 2 the record
    /// number, 3 the exchange ID of a data record).
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
    /// Number of statements (明細書) and benefit-management forms in the file.
    #[serde(default)]
    pub statements: u32,
    /// The service months (サービス提供年月) the file claims for, in order.
    #[serde(default)]
    pub service_months: Vec<Month>,
}

/// Everything the checker found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Every finding, file-level ones first, then by line.
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
}

/// What the appliance knows of an office, for the registration check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfficeStanding {
    /// The office's name, for messages.
    pub name: String,
    /// The first processing month in which the office no longer sends (事業所の廃止・休止);
    /// `None` while it is active.
    pub ended_from: Option<Month>,
}

/// What the checker needs to know beyond the file.
#[derive(Debug, Clone, Default)]
pub struct CheckContext {
    /// The processing month of the reception window the file will be sent into, as the gateway
    /// reports it. `None` skips that check.
    pub processing_month: Option<Month>,
    /// The offices registered on this appliance. `None` skips the registration check (the
    /// offline `validate` command without a configuration).
    pub offices: Option<BTreeMap<OfficeNumber, OfficeStanding>>,
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
/// Number of items of a 障害 control record, used to recognise (and refuse) disability files.
const SHOGAI_CONTROL_ITEMS: usize = 11;
/// How many findings of one code are listed before the rest are counted.
const SHOWN_PER_CODE: u32 = 20;
/// A service month this many months before the processing month is past the two-year claim
/// time limit whichever way its start (the 1st of the month after next, or the month after
/// that) is counted: refused.
const TIME_LIMIT_REFUSE_MONTHS: i32 = 27;
/// From this many months the limit may have passed: a warning.
const TIME_LIMIT_WARN_MONTHS: i32 = 25;

/// Collects findings, capping each code at `SHOWN_PER_CODE` listed findings.
struct Findings {
    list: Vec<Finding>,
    per_code: HashMap<&'static str, (u32, Severity)>,
}

impl Findings {
    fn new() -> Self {
        Findings {
            list: Vec::new(),
            per_code: HashMap::new(),
        }
    }

    fn push(
        &mut self,
        severity: Severity,
        code: Code,
        at: (Option<u32>, Option<u32>),
        ja: String,
        en: String,
    ) {
        let seen = self.per_code.entry(code.as_str()).or_insert((0, severity));
        seen.0 += 1;
        if seen.0 <= SHOWN_PER_CODE {
            self.list.push(Finding {
                severity,
                code: code.as_str().to_owned(),
                record_no: at.0,
                item_no: at.1,
                message_ja: ja,
                message_en: en,
            });
        }
    }

    fn error(&mut self, code: Code, at: (Option<u32>, Option<u32>), ja: String, en: String) {
        self.push(Severity::Error, code, at, ja, en);
    }

    fn warning(&mut self, code: Code, at: (Option<u32>, Option<u32>), ja: String, en: String) {
        self.push(Severity::Warning, code, at, ja, en);
    }

    fn has(&self, code: &str) -> bool {
        self.per_code.contains_key(code)
    }

    fn finish(mut self, summary: Option<ClaimSummary>) -> Report {
        self.list.sort_by_key(|f| f.record_no.unwrap_or(0));
        let mut more: Vec<(&'static str, u32, Severity)> = self
            .per_code
            .iter()
            .filter(|(_, (n, _))| *n > SHOWN_PER_CODE)
            .map(|(code, (n, sev))| (*code, n - SHOWN_PER_CODE, *sev))
            .collect();
        more.sort_by_key(|m| m.0);
        for (code, n, severity) in more {
            self.list.push(Finding {
                severity,
                code: code.to_owned(),
                record_no: None,
                item_no: None,
                message_ja: format!("同じ誤り（{code}）がほかに {n} か所あります。"),
                message_en: format!("The same problem ({code}) occurs in {n} more place(s)."),
            });
        }
        Report {
            findings: self.list,
            summary,
        }
    }
}

fn line_at(line: u32) -> (Option<u32>, Option<u32>) {
    (Some(line), None)
}

fn item_at(line: u32, column: usize) -> (Option<u32>, Option<u32>) {
    (Some(line), u32::try_from(column).ok())
}

const NOWHERE: (Option<u32>, Option<u32>) = (None, None);

/// True when `s` is non-empty and all ASCII digits.
fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// An all-zero value (`0`, `000000`) means "omitted" for dates and codes (claim-format.md §1.1).
fn is_zero(s: &str) -> bool {
    is_digits(s) && s.bytes().all(|b| b == b'0')
}

/// A real calendar date written `YYYYMMDD`.
fn is_date(s: &str) -> bool {
    if s.len() != 8 || !is_digits(s) {
        return false;
    }
    let year: u32 = s[..4].parse().unwrap_or(0);
    let month: u32 = s[4..6].parse().unwrap_or(0);
    let day: u32 = s[6..].parse().unwrap_or(0);
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    };
    year >= 1800 && (1..=days).contains(&day)
}

/// Length in bytes once encoded in CP932: ASCII and half-width katakana take one byte, every
/// other character two.
fn cp932_len(s: &str) -> usize {
    s.chars()
        .map(|c| {
            if c.is_ascii() || ('\u{FF61}'..='\u{FF9F}').contains(&c) {
                1
            } else {
                2
            }
        })
        .sum()
}

/// A signed amount; `None` when not a number (already reported by the item checks).
fn amount(s: &str) -> Option<i64> {
    if s.is_empty() {
        return Some(0);
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !is_digits(digits) || digits.len() > 15 {
        return None;
    }
    s.parse().ok()
}

/// Whether the text is UTF-8 that holds Japanese, rather than CP932 that happens to decode.
fn looks_like_utf8_japanese(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    let japanese = text
        .chars()
        .any(|c| ('\u{3000}'..='\u{9FFF}').contains(&c) || ('\u{FF00}'..='\u{FFEF}').contains(&c));
    japanese.then_some(text)
}

/// The control record, as far as it could be read.
#[derive(Default)]
struct Control {
    count: Option<u32>,
    data_type: Option<String>,
    office: Option<OfficeNumber>,
    month: Option<Month>,
}

/// The running totals of one statement (明細書), for the 7111 cross-check.
struct Statement {
    line: u32,
    id: &'static ExchangeId,
    month: Option<Month>,
    invoice_kind: &'static str,
    has_basic: bool,
    has_totals: bool,
    units: i64,
    insurance_claim: i64,
    user_burden: i64,
    public_claim: i64,
}

/// One 請求書 record.
struct Invoice {
    line: u32,
    month: Option<Month>,
    insurance: bool,
    kind: String,
    count: Option<i64>,
    units: Option<i64>,
    insurance_claim: Option<i64>,
    public_claim: Option<i64>,
    user_burden: Option<i64>,
}

/// Everything gathered while reading the lines.
struct Pass {
    table: &'static Table,
    out: Findings,
    control: Option<Control>,
    data_records: u32,
    ends: Vec<(u32, usize)>,
    statements: Vec<Statement>,
    statement_index: HashMap<(String, String), usize>,
    invoices: Vec<Invoice>,
    service_months: Vec<Month>,
    benefit_forms: u32,
    wrong_numbers: (u32, Option<(u32, String, u32)>),
    shogai: bool,
    /// Records so far (non-blank lines): the record number the current line should carry.
    ordinal: u32,
    /// Physical line of the last record.
    last_record_line: u32,
    /// The statement the previous record belonged to, for forms whose statements open with a
    /// 基本 (01) record.
    current_statement: Option<usize>,
}

/// Checks a claim file and returns every finding.
pub fn check(bytes: &[u8], ctx: &CheckContext) -> Report {
    let mut out = Findings::new();
    let table = match table::table() {
        Ok(t) => t,
        Err(e) => {
            out.error(
                code::INTERNAL_TABLE,
                NOWHERE,
                "点検用の様式表を読み込めないため、ファイルを送信しません。サポートに連絡してください。".into(),
                format!("The checker's exchange-ID table cannot be loaded ({e}); the file is not sent. Contact support."),
            );
            return out.finish(None);
        }
    };
    if bytes.is_empty() {
        out.error(
            code::FILE_EMPTY,
            NOWHERE,
            "ファイルが空です。請求ソフトでもう一度ファイルを作成してください。".into(),
            "The file is empty. Create the file again in the billing software.".into(),
        );
        return out.finish(None);
    }
    let mut body = bytes;
    let bom = body.starts_with(b"\xEF\xBB\xBF");
    if bom {
        body = &body[3..];
    }
    let eof_markers = body.iter().rev().take_while(|&&b| b == 0x1A).count();
    if eof_markers > 0 {
        body = &body[..body.len() - eof_markers];
        out.warning(
            code::FILE_EOF_MARKER,
            NOWHERE,
            "ファイルの末尾に EOF 記号 (0x1A) があります。通常は問題ありません（送信時もそのまま送ります）。".into(),
            "The file ends with an EOF marker (0x1A). This is usually harmless (the file is sent as it is).".into(),
        );
    }
    let decoded: Cow<'_, str> = if let Some(text) = looks_like_utf8_japanese(body) {
        out.error(
            code::FILE_UTF8,
            NOWHERE,
            "このファイルは UTF-8 で保存されています。国保連合会は Shift_JIS (CP932) のファイルしか受け付けません。請求ソフトの出力設定で文字コードを Shift_JIS にして作り直してください（メモ帳などで開いて保存し直さないでください）。".into(),
            "This file is saved as UTF-8. The federation accepts Shift_JIS (CP932) files only. Set the billing software's output encoding to Shift_JIS and create the file again (do not re-save it in a text editor).".into(),
        );
        Cow::Borrowed(text)
    } else {
        if bom {
            out.error(
                code::FILE_UTF8_BOM,
                line_at(1),
                "ファイルの先頭に UTF-8 の印（BOM）があります。メモ帳などで保存し直すと付きます。請求ソフトから出力したファイルをそのまま置いてください。".into(),
                "The file starts with a UTF-8 byte order mark, which text editors add when re-saving. Drop the file exactly as the billing software wrote it.".into(),
            );
        }
        match records::decode_cp932(body) {
            Ok(t) => Cow::Owned(t),
            Err(e) => {
                out.error(
                    code::FILE_NOT_CP932,
                    NOWHERE,
                    format!(
                        "{} バイト目に Shift_JIS (CP932) として読めない文字があります。請求ソフトの出力設定（文字コード）を確認してください。",
                        e.offset + 1
                    ),
                    format!(
                        "Byte {} is not valid Shift_JIS (CP932). Check the billing software's output encoding.",
                        e.offset + 1
                    ),
                );
                return out.finish(None);
            }
        }
    };
    let lines = records::lines(&decoded);
    check_terminators(&lines, &mut out);

    let mut pass = Pass {
        table,
        out,
        control: None,
        data_records: 0,
        ends: Vec::new(),
        statements: Vec::new(),
        statement_index: HashMap::new(),
        invoices: Vec::new(),
        service_months: Vec::new(),
        benefit_forms: 0,
        wrong_numbers: (0, None),
        shogai: false,
        ordinal: 0,
        last_record_line: 0,
        current_statement: None,
    };
    let mut items: Vec<Cow<'_, str>> = Vec::with_capacity(64);
    for line in &lines {
        pass.characters(line.position, line.text);
        if line.text.is_empty() {
            pass.out.error(
                code::RECORD_BLANK,
                line_at(line.position),
                format!(
                    "{} 行目が空行です。請求ファイルに空の行があってはいけません。",
                    line.position
                ),
                format!(
                    "Line {} is empty. Claim files may not hold blank lines.",
                    line.position
                ),
            );
            continue;
        }
        pass.ordinal += 1;
        pass.last_record_line = line.position;
        if let Err(e) = records::split_items(line.text, &mut items) {
            let control = pass.ordinal == 1 && line.text.starts_with("1,");
            if !control && !line.text.starts_with("3,") {
                pass.data_records += 1;
            }
            let (ja, en) = match e {
                QuoteError::Unterminated => (
                    "引用符 (\") が閉じていません",
                    "a double quote is not closed",
                ),
                QuoteError::Stray => (
                    "項目の途中に引用符 (\") があります",
                    "a double quote appears inside an item",
                ),
            };
            pass.out.error(
                code::RECORD_QUOTE,
                line_at(line.position),
                format!(
                    "{} 行目: {ja}。請求ソフトで作り直してください。",
                    line.position
                ),
                format!(
                    "Line {}: {en}. Create the file again in the billing software.",
                    line.position
                ),
            );
            continue;
        }
        pass.record(line.position, &items, ctx);
        if pass.shogai {
            return pass.out.finish(None);
        }
    }
    pass.finish(&lines, ctx)
}

fn check_terminators(lines: &[records::Line<'_>], out: &mut Findings) {
    let mut bare_lf = lines.iter().filter(|l| l.terminator == Terminator::Lf);
    if let Some(first) = bare_lf.next() {
        let n = 1 + bare_lf.count();
        out.error(
            code::FILE_LINE_ENDING,
            line_at(first.position),
            format!(
                "改行コードが CRLF ではない（LF だけの）行が {n} 行あります（最初は {} 行目）。請求ファイルの改行は CRLF でなければなりません。請求ソフトから出力したファイルをそのまま置いてください。",
                first.position
            ),
            format!(
                "{n} line(s) end with LF instead of CRLF (first: line {}). Claim files must use CRLF; drop the file exactly as the billing software wrote it.",
                first.position
            ),
        );
    }
    if let Some(last) = lines.last().filter(|l| l.terminator == Terminator::None) {
        out.error(
            code::FILE_NO_FINAL_LINE_BREAK,
            line_at(last.position),
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

impl Pass {
    /// Forbidden characters: the single quote, control characters, and (a warning) 外字.
    fn characters(&mut self, line: u32, text: &str) {
        if !text
            .bytes()
            .any(|b| b < 0x20 || b == b'\'' || b == 0x7F || b >= 0xEE)
        {
            return;
        }
        for (i, c) in text.chars().enumerate() {
            let column = i + 1;
            if c == '\'' {
                self.out.error(
                    code::CHAR_SINGLE_QUOTE,
                    line_at(line),
                    format!("{line} 行目の {column} 文字目に使えない文字「'」（シングルクォート）があります。"),
                    format!("Line {line}, character {column}: the single quote (') is not allowed."),
                );
            } else if c.is_ascii_control() {
                self.out.error(
                    code::CHAR_CONTROL,
                    line_at(line),
                    format!(
                        "{line} 行目の {column} 文字目に制御文字 (0x{:02X}) があります。請求ファイルには使えません。",
                        u32::from(c)
                    ),
                    format!(
                        "Line {line}, character {column}: control character 0x{:02X} is not allowed.",
                        u32::from(c)
                    ),
                );
            } else if ('\u{E000}'..='\u{F8FF}').contains(&c) {
                self.out.warning(
                    code::CHAR_GAIJI,
                    line_at(line),
                    format!("{line} 行目の {column} 文字目に外字（利用者が作った文字）があります。国保連合会では空白として扱われます。"),
                    format!("Line {line}, character {column}: a user-defined character (外字); the federation prints it as a space."),
                );
            }
        }
    }

    fn record(&mut self, line: u32, items: &[Cow<'_, str>], ctx: &CheckContext) {
        let kind = items.first().map(|s| s.as_ref()).unwrap_or("");
        let ordinal = self.ordinal;
        if matches!(kind, "1" | "2" | "3") {
            let number = items.get(1).map(|s| s.as_ref()).unwrap_or("");
            if number.parse::<u32>().ok() != Some(ordinal) {
                self.wrong_numbers.0 += 1;
                if self.wrong_numbers.1.is_none() {
                    self.wrong_numbers.1 = Some((line, number.to_owned(), ordinal));
                }
            }
        }
        if kind != "2" {
            self.current_statement = None;
        }
        match kind {
            "1" if ordinal == 1 => self.control(items, ctx),
            "1" => self.out.error(
                code::CONTROL_POSITION,
                item_at(line, 1),
                format!("{line} 行目にコントロールレコード（1 で始まる行）があります。コントロールレコードはファイルの先頭に 1 つだけです。"),
                format!("Line {line} is a control record (starting with 1); there must be exactly one, as the first line."),
            ),
            "2" => {
                self.data_records += 1;
                self.data(line, items);
            }
            "3" => self.ends.push((line, items.len())),
            _ => {
                self.data_records += 1;
                self.record_type_error(line, kind);
            }
        }
    }

    fn record_type_error(&mut self, line: u32, kind: &str) {
        {
            self.out.error(
                code::RECORD_TYPE,
                item_at(line, 1),
                format!("{line} 行目のレコード種別「{kind}」が正しくありません（1: コントロール, 2: データ, 3: エンド）。"),
                format!("Line {line}: record type \"{kind}\" is not 1 (control), 2 (data) or 3 (end)."),
            );
        }
    }

    fn refuse_shogai(&mut self, line: u32, why_ja: &str, why_en: &str) {
        self.shogai = true;
        self.out.error(
            code::SHOGAI_REFUSED,
            line_at(line),
            format!(
                "障害福祉サービスの請求ファイルです（{why_ja}）。この装置は介護給付費の請求だけを国保連合会へ送ります。障害福祉サービスの請求は、障害者総合支援用の電子請求受付システムから送ってください。"
            ),
            format!(
                "This is a disability-services (障害) claim file ({why_en}). This appliance relays long-term-care (介護) claims only; send disability claims through the federation's disability-services reception system."
            ),
        );
    }

    fn control(&mut self, items: &[Cow<'_, str>], ctx: &CheckContext) {
        let at = |column: usize| item_at(1, column);
        let data_type = items.get(4).map(|s| s.as_ref()).unwrap_or("");
        if data_type.starts_with('J') || data_type.starts_with('L') {
            self.refuse_shogai(
                1,
                &format!("データ種別 {data_type}"),
                &format!("data type {data_type}"),
            );
            return;
        }
        if items.len() == SHOGAI_CONTROL_ITEMS {
            self.refuse_shogai(
                1,
                "コントロールレコードが 11 項目",
                "an 11-item control record",
            );
            return;
        }
        if items.len() != CONTROL_ITEMS {
            self.out.error(
                code::CONTROL_ITEMS,
                line_at(1),
                format!(
                    "コントロールレコード（1 行目）の項目数が {} です。介護給付費の請求ファイルは 12 項目です。",
                    items.len()
                ),
                format!(
                    "The control record (line 1) has {} items; 介護 claim files have 12.",
                    items.len()
                ),
            );
            self.control = Some(Control::default());
            return;
        }
        let item = |n: usize| items[n - 1].as_ref();
        let mut control = Control::default();
        if item(3).parse::<u32>().ok() != Some(0) {
            self.out.error(
                code::CONTROL_VOLUME,
                at(3),
                format!(
                    "ボリューム通番が「{}」です。インターネット請求では 0 です。",
                    item(3)
                ),
                format!(
                    "The volume number is \"{}\"; internet claims use 0.",
                    item(3)
                ),
            );
        }
        match item(4).parse::<u32>() {
            Ok(n) if is_digits(item(4)) => control.count = Some(n),
            _ => self.out.error(
                code::CONTROL_RECORD_COUNT,
                at(4),
                format!(
                    "コントロールレコードのレコード件数「{}」が数字ではありません。",
                    item(4)
                ),
                format!(
                    "The control record's record count \"{}\" is not a number.",
                    item(4)
                ),
            ),
        }
        if self.table.data_type(data_type).is_some() {
            control.data_type = Some(data_type.to_owned());
        } else {
            self.out.error(
                code::CONTROL_DATA_TYPE,
                at(5),
                format!("データ種別「{data_type}」は介護給付費の請求ファイルの種別ではありません（711: 請求書・明細書, 821: 給付管理票 など）。"),
                format!("Data type \"{data_type}\" is not a 介護 claim file type (711 invoices and statements, 821 benefit management forms, …)."),
            );
        }
        for (n, what_ja, what_en) in [
            (6, "福祉事務所特定番号", "welfare-office number"),
            (7, "保険者番号", "insurer number"),
            (9, "都道府県番号", "prefecture number"),
        ] {
            if !is_zero(item(n)) {
                self.out.error(
                    code::CONTROL_SENDER,
                    at(n),
                    format!("コントロールレコードの{what_ja}が「{}」です。事業所から送るファイルでは 0 です。", item(n)),
                    format!("The control record's {what_en} is \"{}\"; files sent by a care office carry 0.", item(n)),
                );
            }
        }
        match item(8).parse::<OfficeNumber>() {
            Ok(o) => control.office = Some(o),
            Err(e) => self.out.error(
                code::CONTROL_OFFICE_NUMBER,
                at(8),
                format!("コントロールレコードの事業所番号が正しくありません: {e}"),
                format!("The control record's office number is invalid: {e}"),
            ),
        }
        match item(10) {
            "7" => {}
            "1" => self.out.warning(
                code::CONTROL_MEDIA_ISDN,
                at(10),
                "媒体区分が 1（ISDN 伝送）です。インターネット請求では通常 7 です。多くの連合会はそのまま受け付けますが、請求ソフトの設定を確認してください。".into(),
                "The media code is 1 (ISDN); internet claims normally carry 7. Most federations accept it, but check the billing software's setting.".into(),
            ),
            other => self.out.error(
                code::CONTROL_MEDIA_TYPE,
                at(10),
                format!("媒体区分が「{other}」です。インターネット請求は 7 です（2 と 4 は MO や CD-R で提出するときの値です）。請求ソフトの送付方法の設定を確認してください。"),
                format!("The media code is \"{other}\"; internet claims carry 7 (2 and 4 are for MO or CD-R submissions). Check the billing software's submission setting."),
            ),
        }
        match item(11).parse::<Month>() {
            Ok(m) => control.month = Some(m),
            Err(_) => self.out.error(
                code::CONTROL_PROCESSING_MONTH,
                at(11),
                format!(
                    "処理対象年月「{}」が YYYYMM 形式の年月ではありません。",
                    item(11)
                ),
                format!(
                    "The processing month \"{}\" is not a YYYYMM month.",
                    item(11)
                ),
            ),
        }
        if let (Some(m), Some(expected)) = (control.month, ctx.processing_month)
            && m != expected
        {
            self.out.error(
                code::CONTROL_PROCESSING_MONTH_MISMATCH,
                at(11),
                format!(
                    "処理対象年月が {} になっていますが、いま国保連合会が受け付けているのは {} 分です。請求ソフトで処理対象年月（請求年月）を確認して作り直してください。",
                    m.to_japanese(),
                    expected.to_japanese()
                ),
                format!(
                    "The processing month is {m}, but the federation is now receiving {expected}. Check the claim month in the billing software and create the file again."
                ),
            );
        }
        if !is_digits(item(12)) {
            self.out.error(
                code::CONTROL_ITEM_FORMAT,
                at(12),
                format!("ファイル管理番号「{}」が数字ではありません。", item(12)),
                format!(
                    "The file management number \"{}\" is not a number.",
                    item(12)
                ),
            );
        }
        if let (Some(office), Some(offices)) = (&control.office, &ctx.offices) {
            match offices.get(office) {
                None => self.out.error(
                    code::OFFICE_NOT_REGISTERED,
                    at(8),
                    format!("事業所番号 {office} はこの装置に登録されていません。事業所番号が正しいか確認し、正しければ管理者に事業所の登録を依頼してください。"),
                    format!("Office number {office} is not registered on this appliance. Check the number; if it is right, ask the administrator to register the office."),
                ),
                Some(standing) => {
                    if let (Some(ended), Some(month)) = (standing.ended_from, control.month)
                        && month >= ended
                    {
                        self.out.error(
                            code::OFFICE_ENDED,
                            at(8),
                            format!(
                                "{}（{office}）は {} 分から請求を終了した事業所として登録されています。事業所番号が変わった場合は新しい番号で作り直してください。",
                                standing.name,
                                ended.to_japanese()
                            ),
                            format!(
                                "{} ({office}) is registered as having stopped claiming from {ended}. If the office number changed, create the file with the new number.",
                                standing.name
                            ),
                        );
                    }
                }
            }
        }
        self.control = Some(control);
    }
}

impl Pass {
    fn data(&mut self, line: u32, items: &[Cow<'_, str>]) {
        let Some(id) = items.get(2).map(|s| s.as_ref()) else {
            self.out.error(
                code::DATA_ITEMS,
                line_at(line),
                format!("{line} 行目のデータレコードに交換情報識別番号がありません。"),
                format!("Line {line}: the data record has no exchange ID."),
            );
            return;
        };
        let table = self.table;
        let Some(entry) = table.get(id) else {
            let b = id.as_bytes();
            if b.len() == 4
                && matches!(b[0], b'J' | b'L')
                && b[1..]
                    .iter()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            {
                self.refuse_shogai(
                    line,
                    &format!("交換情報識別番号 {id}"),
                    &format!("exchange ID {id}"),
                );
                return;
            }
            self.out.error(
                code::DATA_EXCHANGE_ID,
                item_at(line, 3),
                format!("{line} 行目の交換情報識別番号「{id}」は介護給付費の様式にありません。"),
                format!("Line {line}: exchange ID \"{id}\" is not a 介護 claim form."),
            );
            return;
        };
        let data_type = self.control.as_ref().and_then(|c| c.data_type.clone());
        if let Some(dt) = &data_type
            && !entry.data_types.iter().any(|d| d == dt)
        {
            self.out.error(
                code::DATA_ID_DATA_TYPE,
                item_at(line, 3),
                format!(
                    "{line} 行目の {}（{id}）は、データ種別 {dt} のファイルには入れられません。請求書・明細書と給付管理票は別のファイルにします。",
                    entry.name_ja
                ),
                format!(
                    "Line {line}: {} ({id}) does not belong in a file of data type {dt}. Invoices/statements and benefit management forms go in separate files.",
                    entry.name_en
                ),
            );
        }
        // Item n of the exchange information is CSV column n + 2.
        let item = |n: usize| items.get(n + 1).map(|s| s.as_ref());
        let code = if matches!(entry.role, Role::Statement) {
            item(2)
        } else {
            None
        };
        let layout = entry.layout(code);
        if layout.is_none() && !entry.records.is_empty() {
            self.out.error(
                code::DATA_RECORD_CODE,
                item_at(line, 4),
                format!(
                    "{line} 行目の {} のレコード種別コード「{}」は様式にありません。",
                    entry.name_ja,
                    code.unwrap_or("")
                ),
                format!(
                    "Line {line}: record code \"{}\" does not exist for {}.",
                    code.unwrap_or(""),
                    entry.name_en
                ),
            );
        }
        if let Some(layout) = layout {
            self.layout(line, items, entry, layout);
        }
        let month = self.head(line, items, entry);
        match entry.role {
            Role::Statement | Role::CarePlanStatement => {
                self.statement(line, items, entry, code, month);
            }
            Role::Invoice => self.invoices.push(Invoice {
                line,
                month,
                insurance: item(4) == Some("1"),
                kind: item(6).unwrap_or("").to_owned(),
                count: item(7).filter(|v| !v.is_empty()).and_then(amount),
                units: item(8).filter(|v| !v.is_empty()).and_then(amount),
                insurance_claim: item(10).filter(|v| !v.is_empty()).and_then(amount),
                public_claim: item(11).filter(|v| !v.is_empty()).and_then(amount),
                user_burden: item(12).filter(|v| !v.is_empty()).and_then(amount),
            }),
            Role::BenefitPlan => {
                if item(8) != Some("99") {
                    self.benefit_forms += 1;
                }
            }
            Role::Reexamination => {}
        }
    }

    /// Item count and the form of each item, as the table describes the record.
    fn layout(
        &mut self,
        line: u32,
        items: &[Cow<'_, str>],
        entry: &ExchangeId,
        layout: &RecordLayout,
    ) {
        let present = items.len().saturating_sub(2);
        let name_ja = layout.name_ja.as_deref().unwrap_or("");
        if let Some(expected) = layout.items
            && present != expected
        {
            self.out.error(
                code::DATA_ITEMS,
                line_at(line),
                format!(
                    "{line} 行目（{} {name_ja}）の項目数が {present} です。正しくは {expected} 項目です（先頭のレコード種別とレコード番号を除く）。請求ソフトで作り直してください。",
                    entry.id
                ),
                format!(
                    "Line {line} ({} record) has {present} items; it should have {expected} (not counting the record type and number). Create the file again in the billing software.",
                    entry.id
                ),
            );
        }
        let value = |n: usize| items.get(n + 1).map(|s| s.as_ref()).unwrap_or("");
        let column = |n: usize| n + 2;
        for &n in &layout.required {
            if n <= present && value(n).is_empty() {
                self.out.error(
                    code::DATA_REQUIRED,
                    item_at(line, column(n)),
                    format!(
                        "{line} 行目の {} 列目（{} の項目 {n}）は必ず入力する項目ですが、空です。",
                        column(n),
                        entry.id
                    ),
                    format!(
                        "Line {line}, column {} ({} item {n}) is mandatory but empty.",
                        column(n),
                        entry.id
                    ),
                );
            }
        }
        let skip = entry.service_month_item;
        for &n in &layout.numeric {
            let v = value(n);
            if !v.is_empty() && !is_digits(v) {
                self.numeric_error(line, column(n), entry, n, v);
            }
        }
        for &n in &layout.signed {
            let v = value(n);
            if !v.is_empty() && !is_digits(v.strip_prefix('-').unwrap_or(v)) {
                self.numeric_error(line, column(n), entry, n, v);
            }
        }
        for &n in &layout.dates {
            let v = value(n);
            if !v.is_empty() && !is_zero(v) && !is_date(v) {
                self.out.error(
                    code::DATA_DATE,
                    item_at(line, column(n)),
                    format!("{line} 行目の {} 列目（{} の項目 {n}）の「{v}」は正しい年月日 (YYYYMMDD) ではありません。", column(n), entry.id),
                    format!("Line {line}, column {} ({} item {n}): \"{v}\" is not a valid YYYYMMDD date.", column(n), entry.id),
                );
            }
        }
        for &n in &layout.months {
            let v = value(n);
            if Some(n) != skip && !v.is_empty() && !is_zero(v) && v.parse::<Month>().is_err() {
                self.out.error(
                    code::DATA_MONTH,
                    item_at(line, column(n)),
                    format!("{line} 行目の {} 列目（{} の項目 {n}）の「{v}」は正しい年月 (YYYYMM) ではありません。", column(n), entry.id),
                    format!("Line {line}, column {} ({} item {n}): \"{v}\" is not a valid YYYYMM month.", column(n), entry.id),
                );
            }
        }
        for &[n, max] in &layout.max_bytes {
            let v = value(n);
            let len = cp932_len(v);
            if len > max {
                self.out.error(
                    code::DATA_TOO_LONG,
                    item_at(line, column(n)),
                    format!("{line} 行目の {} 列目（{} の項目 {n}）が {len} バイトあります。最大 {max} バイトです。", column(n), entry.id),
                    format!("Line {line}, column {} ({} item {n}) is {len} bytes long; at most {max} are allowed.", column(n), entry.id),
                );
            }
        }
    }

    fn numeric_error(&mut self, line: u32, column: usize, entry: &ExchangeId, n: usize, v: &str) {
        self.out.error(
            code::DATA_NUMERIC,
            item_at(line, column),
            format!("{line} 行目の {column} 列目（{} の項目 {n}）は数字の項目ですが「{v}」になっています。", entry.id),
            format!("Line {line}, column {column} ({} item {n}) must be a number but is \"{v}\".", entry.id),
        );
    }

    /// The items every record of an ID shares: service month, office, insurer and insured.
    /// Returns the service month when it could be read.
    fn head(&mut self, line: u32, items: &[Cow<'_, str>], entry: &ExchangeId) -> Option<Month> {
        let value = |n: usize| items.get(n + 1).map(|s| s.as_ref());
        let (office, processing) = match &self.control {
            Some(c) => (c.office.clone(), c.month),
            None => (None, None),
        };
        if let Some(n) = entry.office_item
            && let (Some(v), Some(office)) = (value(n), &office)
            && v != office.as_str()
        {
            self.out.error(
                code::DATA_OFFICE_MISMATCH,
                item_at(line, n + 2),
                format!("{line} 行目の事業所番号「{v}」が、コントロールレコード（1 行目）の事業所番号 {office} と違います。1 つのファイルには 1 つの事業所の請求だけを入れます。"),
                format!("Line {line}: office number \"{v}\" differs from the control record's {office}. One file holds the claims of one office."),
            );
        }
        if let (Some(n), Some(form)) = (entry.insurer_item, entry.insurer_form)
            && let Some(v) = value(n)
        {
            let parsed = match form {
                InsurerForm::Padded8 => InsurerNumber::parse_padded(v),
                InsurerForm::Plain6 => v.parse(),
            };
            if let Err(e) = parsed {
                self.out.error(
                    code::DATA_INSURER_NUMBER,
                    item_at(line, n + 2),
                    format!("{line} 行目の保険者番号が正しくありません: {e}"),
                    format!("Line {line}: the insurer number is invalid: {e}"),
                );
            }
        }
        if let Some(n) = entry.insured_item
            && let Some(v) = value(n)
            && let Err(e) = v.parse::<InsuredNumber>()
        {
            self.out.error(
                code::DATA_INSURED_NUMBER,
                item_at(line, n + 2),
                format!("{line} 行目の被保険者番号が正しくありません: {e}"),
                format!("Line {line}: the insured number is invalid: {e}"),
            );
        }
        let n = entry.service_month_item?;
        let v = value(n)?;
        let Ok(month) = v.parse::<Month>() else {
            self.out.error(
                code::DATA_SERVICE_MONTH,
                item_at(line, n + 2),
                format!(
                    "{line} 行目のサービス提供年月「{v}」が正しい年月 (YYYYMM) ではありません。"
                ),
                format!("Line {line}: the service month \"{v}\" is not a valid YYYYMM month."),
            );
            return None;
        };
        if let Some(p) = processing {
            let age = month.months_until(p);
            if age < 1 {
                self.out.error(
                    code::DATA_SERVICE_MONTH_FUTURE,
                    item_at(line, n + 2),
                    format!(
                        "{line} 行目のサービス提供年月が {} です。{} 分の請求で送れるのは {} 以前のサービスだけです。請求ソフトで年月を確認してください。",
                        month.to_japanese(),
                        p.to_japanese(),
                        p.previous().to_japanese()
                    ),
                    format!(
                        "Line {line}: the service month is {month}; a claim for processing month {p} may only cover services up to {}. Check the months in the billing software.",
                        p.previous()
                    ),
                );
            } else if age >= TIME_LIMIT_REFUSE_MONTHS {
                self.out.error(
                    code::DATA_SERVICE_MONTH_EXPIRED,
                    item_at(line, n + 2),
                    format!(
                        "{line} 行目のサービス提供年月 {} は請求できる期限（2 年）を過ぎています。国保連合会から返戻されるため送信しません。",
                        month.to_japanese()
                    ),
                    format!(
                        "Line {line}: service month {month} is past the two-year claim time limit; the federation would return it, so it is not sent."
                    ),
                );
            } else if age >= TIME_LIMIT_WARN_MONTHS {
                self.out.warning(
                    code::DATA_SERVICE_MONTH_TIME_LIMIT,
                    item_at(line, n + 2),
                    format!(
                        "{line} 行目のサービス提供年月 {} は請求期限（2 年）の境目です。期限を過ぎていると返戻されます。",
                        month.to_japanese()
                    ),
                    format!(
                        "Line {line}: service month {month} is at the edge of the two-year claim time limit; if the limit has passed, the claim will be returned."
                    ),
                );
            }
        }
        if !entry.valid_for(month) {
            self.out.error(
                code::DATA_ID_NOT_VALID_FOR_MONTH,
                item_at(line, 3),
                format!(
                    "{line} 行目の様式 {}（{}）は {} のサービスには使えません（制度改正で様式が変わっています）。請求ソフトを最新にして作り直してください。",
                    entry.id,
                    entry.name_ja,
                    month.to_japanese()
                ),
                format!(
                    "Line {line}: form {} ({}) is not valid for services in {month} (the forms changed with a fee revision). Update the billing software and create the file again.",
                    entry.id, entry.name_en
                ),
            );
        }
        if !self.service_months.contains(&month) {
            self.service_months.push(month);
        }
        Some(month)
    }

    fn statement(
        &mut self,
        line: u32,
        items: &[Cow<'_, str>],
        entry: &'static ExchangeId,
        code: Option<&str>,
        month: Option<Month>,
    ) {
        let value = |n: Option<usize>| {
            n.and_then(|n| items.get(n + 1))
                .map(|s| s.as_ref())
                .unwrap_or("")
        };
        // Statements without a 基本 record to open them are told apart by their head items.
        let key = || {
            (
                format!("{}|{}", entry.id, value(entry.service_month_item)),
                format!(
                    "{}|{}",
                    value(entry.insurer_item),
                    value(entry.insured_item)
                ),
            )
        };
        let opens_with_basic = entry.role == Role::Statement && entry.layout(Some("01")).is_some();
        let current = self
            .current_statement
            .filter(|&i| self.statements[i].id.id == entry.id);
        let known = if opens_with_basic {
            if code == Some("01") { None } else { current }
        } else {
            self.statement_index.get(&key()).copied()
        };
        let index = match known {
            Some(i) => i,
            None => {
                let invoice_kind = match (&entry.totals, entry.role) {
                    (Some(t), _) => t.invoice_kind.as_str(),
                    (None, Role::CarePlanStatement) => "02",
                    (None, _) => "01",
                };
                self.statements.push(Statement {
                    line,
                    id: entry,
                    month,
                    invoice_kind,
                    has_basic: false,
                    has_totals: false,
                    units: 0,
                    insurance_claim: 0,
                    user_burden: 0,
                    public_claim: 0,
                });
                if !opens_with_basic {
                    self.statement_index
                        .insert(key(), self.statements.len() - 1);
                }
                self.statements.len() - 1
            }
        };
        self.current_statement = Some(index);
        let s = &mut self.statements[index];
        if code == Some("01") {
            s.has_basic = true;
        }
        let Some(totals) = &entry.totals else { return };
        let sum = |list: &[usize]| -> i64 {
            list.iter()
                .filter_map(|&n| items.get(n + 1).and_then(|v| amount(v)))
                .fold(0i64, i64::saturating_add)
        };
        match &totals.record {
            // A totals record per service type (集計情報): add them up.
            Some(record) if code == Some(record.as_str()) => {
                s.has_totals = true;
                s.units = s.units.saturating_add(sum(&totals.units));
                s.insurance_claim = s
                    .insurance_claim
                    .saturating_add(sum(&totals.insurance_claim));
                s.user_burden = s.user_burden.saturating_add(sum(&totals.user_burden));
                s.public_claim = s.public_claim.saturating_add(sum(&totals.public_claim));
            }
            Some(_) => {}
            // The statement's totals on its lines (8124): QKAN repeats them on every line,
            // ほのぼの writes them on the closing line only, so the last line that carries them
            // counts.
            None => {
                let carries = totals
                    .units
                    .iter()
                    .any(|&n| items.get(n + 1).is_some_and(|v| !v.is_empty()));
                if carries {
                    s.has_totals = true;
                    s.units = sum(&totals.units);
                    s.insurance_claim = sum(&totals.insurance_claim);
                    s.user_burden = sum(&totals.user_burden);
                    s.public_claim = sum(&totals.public_claim);
                }
            }
        }
    }
}

impl Pass {
    fn finish(mut self, lines: &[records::Line<'_>], _ctx: &CheckContext) -> Report {
        if let (n, Some((line, number, expected))) = &self.wrong_numbers {
            self.out.error(
                code::RECORD_NUMBER,
                item_at(*line, 2),
                format!(
                    "レコード番号が行の位置と合っていない行が {n} 行あります（最初は {line} 行目: 「{number}」、正しくは {expected}）。請求ソフトで作り直してください。"
                ),
                format!(
                    "{n} record number(s) do not match their line (first: line {line}: \"{number}\", expected {expected}). Create the file again in the billing software."
                ),
            );
        }
        let last = self.last_record_line;
        let _ = lines;
        match self.ends.as_slice() {
            [] => self.out.error(
                code::END_MISSING,
                line_at(last.max(1)),
                "エンドレコード（3 で始まる最後の行）がありません。ファイルが途中で切れているか、作成が終わっていません。".into(),
                "There is no end record (the last line, starting with 3). The file is cut short or not finished.".into(),
            ),
            [(line, items)] if *line == last => {
                if *items != 2 {
                    self.out.error(
                        code::END_ITEMS,
                        line_at(*line),
                        format!("エンドレコードの項目数が {items} です（正しくは 2）。"),
                        format!("The end record has {items} items (expected 2)."),
                    );
                }
            }
            [(line, _), ..] => self.out.error(
                code::END_POSITION,
                line_at(*line),
                "エンドレコード（3 で始まる行）はファイルの最後に 1 つだけ置きます。".into(),
                "There must be exactly one end record (starting with 3), as the last line.".into(),
            ),
        }
        let Some(control) = self.control.take() else {
            if !self.out.has("record.quote") || lines.len() > 1 {
                self.out.error(
                    code::CONTROL_MISSING,
                    item_at(1, 1),
                    "1 行目がコントロールレコード（1 で始まる行）ではありません。介護給付費の請求ファイルか確認してください。".into(),
                    "The first line is not a control record (starting with 1). Is this a claim file?".into(),
                );
            }
            return self.out.finish(None);
        };
        if let Some(count) = control.count
            && count != self.data_records
        {
            let data_records = self.data_records;
            self.out.error(
                code::CONTROL_RECORD_COUNT,
                item_at(1, 4),
                format!(
                    "コントロールレコードのレコード件数は {count} 件ですが、データレコードは {data_records} 件あります。ファイルが壊れているか途中で切れています。請求ソフトで作り直してください。"
                ),
                format!(
                    "The control record says {count} data records, but the file has {data_records}. The file is damaged or cut short; create it again in the billing software."
                ),
            );
        }
        // When records could not be read or sit in the wrong place, statements cannot be told
        // apart reliably; their structure and the invoice totals are checked once that is fixed.
        let unreadable = [
            code::RECORD_QUOTE,
            code::RECORD_TYPE,
            code::END_POSITION,
            code::CONTROL_POSITION,
        ]
        .iter()
        .any(|c| self.out.has(c.as_str()));
        if unreadable {
            return self.finish_summary(control);
        }
        self.statement_structure();
        if control
            .data_type
            .as_deref()
            .is_some_and(|d| d == "711" || d == "71R")
        {
            self.totals();
        }
        self.finish_summary(control)
    }

    fn finish_summary(self, control: Control) -> Report {
        let statements = u32::try_from(self.statements.len())
            .unwrap_or(u32::MAX)
            .saturating_add(self.benefit_forms);
        let summary = match (control.office, control.month, control.data_type) {
            (Some(office_number), Some(processing_month), Some(data_type)) => Some(ClaimSummary {
                office_number,
                processing_month,
                data_type,
                data_records: self.data_records,
                statements,
                service_months: self.service_months,
            }),
            _ => None,
        };
        self.out.finish(summary)
    }

    /// A 明細書 of a form whose layout is known needs its 基本 record and its 集計 record.
    fn statement_structure(&mut self) {
        for s in &self.statements {
            if s.id.role != Role::Statement {
                continue;
            }
            if s.id.layout(Some("01")).is_some() && !s.has_basic {
                self.out.error(
                    code::STATEMENT_BASIC_MISSING,
                    line_at(s.line),
                    format!(
                        "{} 行目から始まる明細書（{}）に基本情報レコード（01）がありません。",
                        s.line, s.id.id
                    ),
                    format!(
                        "The statement ({}) starting at line {} has no basic record (01).",
                        s.id.id, s.line
                    ),
                );
            }
            if let Some(record) = s.id.totals.as_ref().and_then(|t| t.record.as_deref())
                && !s.has_totals
            {
                self.out.error(
                    code::STATEMENT_SUMMARY_MISSING,
                    line_at(s.line),
                    format!(
                        "{} 行目から始まる明細書（{}）に集計情報レコード（{record}）がありません。",
                        s.line, s.id.id
                    ),
                    format!(
                        "The statement ({}) starting at line {} has no totals record ({record}).",
                        s.id.id, s.line
                    ),
                );
            }
        }
    }

    /// The 7111 請求書 totals against the sums of the statements in the file (保険 lines; 公費
    /// lines are checked for presence only).
    fn totals(&mut self) {
        type Key = (Option<Month>, String);
        // A month that could not be read was reported; statements cannot be matched to
        // invoices without it.
        if self.statements.iter().any(|s| s.month.is_none())
            || self.invoices.iter().any(|i| i.month.is_none())
        {
            return;
        }
        let mut groups: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
        for (i, s) in self.statements.iter().enumerate() {
            groups
                .entry((s.month, s.invoice_kind.to_owned()))
                .or_default()
                .push(i);
        }
        let mut seen: BTreeMap<Key, u32> = BTreeMap::new();
        for inv in &self.invoices {
            let key = (inv.month, inv.kind.clone());
            if !inv.insurance {
                continue;
            }
            if let Some(first) = seen.insert(key.clone(), inv.line) {
                self.out.error(
                    code::TOTALS_INVOICE_DUPLICATE,
                    line_at(inv.line),
                    format!("{} 行目の請求書（保険分）は {first} 行目と同じ提供年月・請求情報区分です。請求書は 1 つにまとめます。", inv.line),
                    format!("The invoice (insurance part) on line {} repeats the month and kind of line {first}; there must be one.", inv.line),
                );
                continue;
            }
            let members = groups.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            let count = i64::try_from(members.len()).unwrap_or(i64::MAX);
            let all_known = members.iter().all(|&i| {
                let s = &self.statements[i];
                s.id.totals.is_some() && s.has_totals
            });
            let sum = |f: fn(&Statement) -> i64| {
                members
                    .iter()
                    .map(|&i| f(&self.statements[i]))
                    .fold(0i64, i64::saturating_add)
            };
            // (code, 7111 item, what in Japanese, in English, stated, sum of the statements)
            type Comparison = (Code, usize, &'static str, &'static str, Option<i64>, i64);
            let mut compare: Vec<Comparison> = vec![(
                code::TOTALS_COUNT,
                7,
                "件数",
                "count of statements",
                inv.count,
                count,
            )];
            if all_known {
                compare.push((
                    code::TOTALS_UNITS,
                    8,
                    "単位数",
                    "units",
                    inv.units,
                    sum(|s| s.units),
                ));
                compare.push((
                    code::TOTALS_INSURANCE_CLAIM,
                    10,
                    "保険請求額",
                    "insurance claim",
                    inv.insurance_claim,
                    sum(|s| s.insurance_claim),
                ));
                compare.push((
                    code::TOTALS_PUBLIC_CLAIM,
                    11,
                    "公費請求額",
                    "public-expense claim",
                    inv.public_claim,
                    sum(|s| s.public_claim),
                ));
                compare.push((
                    code::TOTALS_USER_BURDEN,
                    12,
                    "利用者負担",
                    "user share",
                    inv.user_burden,
                    sum(|s| s.user_burden),
                ));
            }
            for (code, item, ja, en, stated, actual) in compare {
                let Some(stated) = stated else { continue };
                if stated != actual {
                    self.out.error(
                        code,
                        item_at(inv.line, item + 2),
                        format!(
                            "{} 行目の請求書の{ja}は {stated} ですが、このファイルの明細書を合計すると {actual} です。請求書と明細書が合っていないため、国保連合会で受け付けられません。請求ソフトで作り直してください。",
                            inv.line
                        ),
                        format!(
                            "Line {}: the invoice states {en} {stated}, but the statements in this file add up to {actual}. The federation does not accept an invoice that disagrees with its statements; create the file again.",
                            inv.line
                        ),
                    );
                }
            }
        }
        for (key, members) in &groups {
            let public_invoice = self
                .invoices
                .iter()
                .any(|inv| !inv.insurance && inv.month == key.0 && inv.kind == key.1);
            if !seen.contains_key(key) && !public_invoice {
                let first = self.statements[members[0]].line;
                let month = key.0.map(|m| m.to_japanese()).unwrap_or_default();
                self.out.error(
                    code::TOTALS_INVOICE_MISSING,
                    line_at(first),
                    format!(
                        "{first} 行目などの明細書（サービス提供年月 {month}、請求情報区分 {}）に対応する請求書（7111）がありません。",
                        key.1
                    ),
                    format!(
                        "The statements from line {first} (service month {}, invoice kind {}) have no matching invoice (7111).",
                        key.0.map(|m| m.to_string()).unwrap_or_default(),
                        key.1
                    ),
                );
            }
        }
    }
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
            ..Default::default()
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
        let c = codes(&r);
        for code in [
            "end.missing",
            "control.record_count",
            "statement.summary_missing",
        ] {
            assert!(c.contains(&code), "{code} in {c:?}");
        }
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
        assert_eq!(codes(&r), vec!["shogai.refused"]);
        assert!(r.findings[0].message_ja.contains("介護給付費の請求だけ"));
        assert_eq!(r.verdict(), Verdict::Refused);
        // A 介護-looking control record with a 障害 record inside is refused the same way.
        let mixed = EXAMPLE.replacen("2,3,\"7131\"", "2,3,\"J121\"", 1);
        assert_eq!(
            codes(&check(mixed.as_bytes(), &ctx())),
            vec!["shogai.refused"]
        );
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
    fn many_findings_of_one_kind_are_counted_not_listed() {
        let mut text = String::from("1,1,0,100,711,0,0,1379999996,0,7,202506,1\r\n");
        for n in 2..102 {
            text.push_str(&format!("2,{n},\"9999\"\r\n"));
        }
        text.push_str("3,102\r\n");
        let r = check(text.as_bytes(), &ctx());
        let listed = r
            .findings
            .iter()
            .filter(|f| f.code == "data.exchange_id")
            .count();
        assert_eq!(listed, SHOWN_PER_CODE as usize + 1);
        let last = r.findings.last().unwrap();
        assert_eq!(last.code, "data.exchange_id");
        assert!(
            last.message_ja.contains("ほかに 80 か所"),
            "{}",
            last.message_ja
        );
    }

    #[test]
    fn summary_counts_statements_and_months() {
        let r = check(EXAMPLE.as_bytes(), &ctx());
        let s = r.summary.clone().unwrap();
        assert_eq!(s.statements, 1);
        assert_eq!(s.service_months, vec!["202505".parse::<Month>().unwrap()]);
        assert_eq!(r.verdict(), Verdict::Ok);
    }

    #[test]
    fn invoice_totals_must_match_the_statements() {
        let bad = EXAMPLE.replacen(",01,1,2000,22800,20520,", ",01,1,2100,22800,20520,", 1);
        let r = check(bad.as_bytes(), &ctx());
        assert_eq!(codes(&r), vec!["totals.units"]);
        assert_eq!(
            (r.findings[0].record_no, r.findings[0].item_no),
            (Some(2), Some(10))
        );
        assert!(r.findings[0].message_ja.contains("2100"));
        assert!(r.findings[0].message_ja.contains("2000"));
    }

    #[test]
    fn utf8_files_are_recognised() {
        let utf8 = EXAMPLE.replacen(",\"\"\r\n", ",\"訪問介護\"\r\n", 1);
        let r = check(utf8.as_bytes(), &ctx());
        assert_eq!(codes(&r), vec!["file.utf8"]);
        let (cp932, _, _) = encoding_rs::SHIFT_JIS.encode(&utf8);
        assert_eq!(check(&cp932, &ctx()).verdict(), Verdict::Ok);
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
