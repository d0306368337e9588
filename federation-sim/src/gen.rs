//! Synthetic claim files for tests and benchmarks: for one office and processing month, a `711`
//! file (one 7111 請求書 for 保険 + one 7131 居宅サービス明細書 per member: 基本 01, 明細 02…,
//! 集計 10) and an `821` file (one 8222 給付管理票 per member: detail line 01 + closing line 99),
//! shaped like the examples of claim-format.md §1.6, in ほのぼの or QKAN quoting, encoded in CP932.
//! Services are in the month before the processing month, or in a given earlier month (月遅れ);
//! the members' 被保険者番号 are consecutive from a seeded start, or given.
//!
//! Invariant: every file returned passes the simulator's own 到達 and 受付 checks with ○ in
//! its processing month — record numbers run 1..n, the control record counts the data records,
//! every 事業所番号 / 保険者番号 carries the check digit of claim-format.md §7 (computed by
//! `ids`), and the 7111 totals are exactly the sums over the 明細書 in the file. The output is a
//! pure function of [`GenOptions`] (a seeded splitmix64 generator, no clock, no I/O), and the two
//! [`Style`]s carry the same values item for item: only the quoting differs, plus the control
//! record's zero padding and ファイル管理番号 (claim-format.md §1.3 notes).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::ids;
use crate::window::Month;

/// 単位数単価 in 1/100 yen (訪問介護 in a 1級地: 11.40 円).
pub const UNIT_PRICE: u64 = 1140;

/// The 居宅介護支援事業所番号 written in item 20 of every 7131 基本 record (valid check digit).
pub const CARE_PLAN_OFFICE: &str = "1379999988";

/// The largest member count [`generate`] accepts (a 711 file takes about 500 bytes per member
/// in ほのぼの style, 740 in QKAN style).
pub const MAX_MEMBERS: u32 = 1_000_000;

/// サービス種類コード of every generated service (訪問介護).
const SERVICE_TYPE: &str = "11";

/// Synthetic 訪問介護 サービス項目コード and their units (in code order).
const SERVICE_ITEMS: [(&str, u32); 6] = [
    ("1111", 250),
    ("1121", 396),
    ("1211", 183),
    ("1221", 225),
    ("1311", 101),
    ("1321", 163),
];

/// Distinct insurers (保険者) per generated file set.
const INSURERS: usize = 4;
/// Distinct 介護支援専門員 numbers per generated file set.
const CARE_MANAGERS: usize = 5;

/// Quoting style of the data records (claim-format.md §1.1 "Quoting in practice").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Style {
    /// ほのぼの: only item 1 (交換情報識別番号), the 被保険者番号 and 摘要 (`""`) are quoted;
    /// files `KK<yymm>01.CSV` / `KY<yymm>01.CSV`.
    Honobono,
    /// QKAN: every data-record item is quoted, control and end records bare;
    /// files `i<RR><MM>a.csv` / `i<RR><MM>b.csv` (RR = 和暦 year).
    Qkan,
}

impl Style {
    /// `honobono` or `qkan`.
    pub fn as_str(self) -> &'static str {
        match self {
            Style::Honobono => "honobono",
            Style::Qkan => "qkan",
        }
    }
}

impl fmt::Display for Style {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Style {
    type Err = String;

    fn from_str(s: &str) -> Result<Style, String> {
        match s {
            "honobono" => Ok(Style::Honobono),
            "qkan" => Ok(Style::Qkan),
            other => Err(format!(
                "unknown style {other:?} (expected honobono or qkan)"
            )),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenOptions {
    /// The provider's 事業所番号: 10 digits with a valid check digit. It is the sender of both
    /// files, the 事業所番号 of the 明細書 and both office items of the 給付管理票.
    pub office: String,
    /// 処理対象年月 (control item 11), 2001-01 ..= 2099-12. Services are in the month before
    /// unless `service_month` says otherwise.
    pub processing_month: Month,
    /// Number of members (利用者): one 明細書 and one 給付管理票 each, 1 ..= [`MAX_MEMBERS`].
    pub members: u32,
    pub style: Style,
    /// Seed of the generator: the same options give the same bytes.
    pub seed: u64,
    /// サービス提供年月 of every 明細書 and 給付管理票 (a late claim, 月遅れ). `None`: the month
    /// before `processing_month`. Must not be later than that month.
    pub service_month: Option<Month>,
    /// The exact 被保険者番号 of the members, in member order (before sorting). `None`:
    /// consecutive numbers from a seeded start. Exactly `members` distinct numbers below 10¹⁰.
    /// Everything else the seed decides stays the same whether or not numbers are given.
    pub insured_numbers: Option<Vec<u64>>,
}

/// One generated claim file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// An 8.3 file name in the style's convention.
    pub name: String,
    /// The file, CP932, every record CRLF-terminated.
    pub bytes: Vec<u8>,
    /// データ種別 (control item 5): `711` or `821`.
    pub data_type: &'static str,
    /// Records in the file: control + data + end.
    pub records: usize,
}

/// Options [`generate`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenError {
    #[error("事業所番号「{office}」が不正です (bad office number {office:?}: {reason})")]
    BadOffice { office: String, reason: String },
    #[error(
        "処理対象年月「{0}」は範囲外です (processing month {0} is not a month of 2001-01..=2099-12)"
    )]
    BadMonth(Month),
    #[error("利用者数が 0 です (members must be at least 1)")]
    NoMembers,
    #[error("利用者数 {members} は多すぎます (members must be at most {max})")]
    TooManyMembers { members: u32, max: u32 },
    #[error("CP932 で表せない文字があります (the generated text is not representable in CP932)")]
    NotCp932,
    #[error(
        "サービス提供年月「{service}」が不正です (service month {service} must be 2001-01 or later \
         and not later than {latest}, the month before the processing month)"
    )]
    BadServiceMonth { service: Month, latest: Month },
    #[error("被保険者番号の指定が不正です (bad insured numbers: {0})")]
    BadInsuredNumbers(String),
}

/// Generates the 711 file and the 821 file (in that order) described by `opts`.
pub fn generate(opts: &GenOptions) -> Result<Vec<GeneratedFile>, GenError> {
    check_office(&opts.office)?;
    if opts.members == 0 {
        return Err(GenError::NoMembers);
    }
    if opts.members > MAX_MEMBERS {
        return Err(GenError::TooManyMembers {
            members: opts.members,
            max: MAX_MEMBERS,
        });
    }
    let month = YearMonth::of(opts.processing_month)?;
    let service = match opts.service_month {
        None => month.minus(1),
        Some(m) => {
            let latest = opts.processing_month.prev();
            let bad = || GenError::BadServiceMonth { service: m, latest };
            let service = YearMonth::of(m).map_err(|_| bad())?;
            if m > latest {
                return Err(bad());
            }
            service
        }
    };
    if let Some(numbers) = &opts.insured_numbers {
        check_insured_numbers(numbers, opts.members)?;
    }
    let plan = Plan::random(opts, month, service);
    let (claim_name, benefit_name) = file_names(opts.style, month);
    let (claims, claim_records) = write_711(&plan, opts.style);
    let (benefits, benefit_records) = write_821(&plan, opts.style);
    Ok(vec![
        GeneratedFile {
            name: claim_name,
            bytes: encode(claims)?,
            data_type: "711",
            records: claim_records,
        },
        GeneratedFile {
            name: benefit_name,
            bytes: encode(benefits)?,
            data_type: "821",
            records: benefit_records,
        },
    ])
}

fn check_office(office: &str) -> Result<(), GenError> {
    let bad = |reason: String| {
        Err(GenError::BadOffice {
            office: office.to_owned(),
            reason,
        })
    };
    if office.len() != 10 || !office.bytes().all(|b| b.is_ascii_digit()) {
        return bad("not 10 digits".into());
    }
    if !ids::is_valid_office_number(office) {
        let expected = office
            .get(..9)
            .and_then(ids::check_digit)
            .map_or_else(String::new, |d| format!("; it should be {d}"));
        return bad(format!("wrong check digit (claim-format.md §7){expected}"));
    }
    Ok(())
}

/// The rules of [`GenOptions::insured_numbers`].
fn check_insured_numbers(numbers: &[u64], members: u32) -> Result<(), GenError> {
    if numbers.len() != members as usize {
        return Err(GenError::BadInsuredNumbers(format!(
            "{} numbers for {members} members",
            numbers.len()
        )));
    }
    if let Some(n) = numbers.iter().find(|n| **n >= 10_000_000_000) {
        return Err(GenError::BadInsuredNumbers(format!(
            "{n} has more than 10 digits"
        )));
    }
    let mut seen = BTreeSet::new();
    if let Some(n) = numbers.iter().find(|n| !seen.insert(**n)) {
        return Err(GenError::BadInsuredNumbers(format!("{n} is given twice")));
    }
    Ok(())
}

/// CP932 bytes of the generated text. ASCII (all the generator writes) is the same in CP932.
fn encode(text: String) -> Result<Vec<u8>, GenError> {
    if text.is_ascii() {
        return Ok(text.into_bytes());
    }
    let (bytes, _, had_errors) = encoding_rs::SHIFT_JIS.encode(&text);
    if had_errors {
        return Err(GenError::NotCp932);
    }
    Ok(bytes.into_owned())
}

/// `(711 name, 821 name)` for the processing month.
fn file_names(style: Style, month: YearMonth) -> (String, String) {
    match style {
        Style::Honobono => {
            let yymm = format!("{:02}{:02}", month.year % 100, month.month);
            (format!("KK{yymm}01.CSV"), format!("KY{yymm}01.CSV"))
        }
        Style::Qkan => {
            // 令和 from 2019-05 (R1), 平成 before (2019-01..04 = H31).
            let era_year = if (month.year, month.month) >= (2019, 5) {
                month.year - 2018
            } else {
                month.year - 1988
            };
            let rrmm = format!("{era_year:02}{:02}", month.month);
            (format!("i{rrmm}a.csv"), format!("i{rrmm}b.csv"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Calendar

/// A validated month of 2001-01 ..= 2099-12.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct YearMonth {
    year: u32,
    month: u32,
}

impl YearMonth {
    fn of(m: Month) -> Result<YearMonth, GenError> {
        let year = u32::try_from(m.year).map_err(|_| GenError::BadMonth(m))?;
        let month = u32::try_from(m.month).map_err(|_| GenError::BadMonth(m))?;
        if !(2001..=2099).contains(&year) || !(1..=12).contains(&month) {
            return Err(GenError::BadMonth(m));
        }
        Ok(YearMonth { year, month })
    }

    /// Months since year 0.
    fn index(self) -> u32 {
        self.year * 12 + self.month - 1
    }

    fn from_index(index: u32) -> YearMonth {
        YearMonth {
            year: index / 12,
            month: index % 12 + 1,
        }
    }

    fn plus(self, months: u32) -> YearMonth {
        YearMonth::from_index(self.index() + months)
    }

    fn minus(self, months: u32) -> YearMonth {
        YearMonth::from_index(self.index().saturating_sub(months))
    }

    fn days(self) -> u32 {
        match self.month {
            2 if self.year.is_multiple_of(4)
                && (!self.year.is_multiple_of(100) || self.year.is_multiple_of(400)) =>
            {
                29
            }
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// `YYYYMM` as a number.
    fn yyyymm(self) -> u64 {
        u64::from(self.year * 100 + self.month)
    }

    /// `YYYYMMDD` of a day of this month as a number.
    fn date(self, day: u32) -> u64 {
        self.yyyymm() * 100 + u64::from(day)
    }
}

// ---------------------------------------------------------------------------------------------
// The values of one generated file set

/// splitmix64: tiny, fast and good enough for synthetic data.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// In `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    fn small(&mut self, lo: u32, hi: u32) -> u32 {
        self.range(u64::from(lo), u64::from(hi)) as u32
    }
}

/// One 明細 line (7131-02).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    code: &'static str,
    units: u32,
    count: u32,
}

/// The amounts of one 明細書.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Amounts {
    /// 保険単位数合計.
    units: u64,
    /// 費用 = floor(units × 単価 / 100).
    cost: u64,
    /// 保険請求額 = floor(費用 × 給付率 / 100).
    claim: u64,
    /// 利用者負担額 = 費用 − 保険請求額.
    copay: u64,
}

/// One member (利用者) with everything their 明細書 and 給付管理票 say.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    /// Index into [`Plan::insurers`].
    insurer: usize,
    /// 被保険者番号, written with 10 digits.
    insured: u64,
    /// YYYYMMDD.
    birth: u64,
    /// 1 男 / 2 女.
    sex: u8,
    /// 要介護状態区分 21..=25.
    level: u8,
    /// 認定有効期間 (YYYYMMDD), containing the service month.
    cert_start: u64,
    cert_end: u64,
    /// 給付率 (90, 80 or 70).
    rate: u64,
    /// Distinct service codes in code order, at least one.
    lines: Vec<Line>,
    /// サービス実日数 (≤ days of the service month).
    days: u32,
    /// 担当介護支援専門員番号 (8 digits).
    care_manager: u32,
}

impl Member {
    fn amounts(&self) -> Amounts {
        let units: u64 = self
            .lines
            .iter()
            .map(|l| u64::from(l.units) * u64::from(l.count))
            .sum();
        let cost = units * UNIT_PRICE / 100;
        let claim = cost * self.rate / 100;
        Amounts {
            units,
            cost,
            claim,
            copay: cost - claim,
        }
    }
}

/// 区分支給限度基準額 (units per month) of a 要介護状態区分.
fn limit_units(level: u8) -> u64 {
    match level {
        21 => 16765,
        22 => 19705,
        23 => 27048,
        24 => 30938,
        _ => 36217,
    }
}

/// Everything both files are written from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    /// The service provider: sender of the 711 file, 事業所番号 of its records, and
    /// サービス事業所番号 of the 給付管理票.
    office: String,
    /// 居宅介護支援事業所番号 of the 給付管理票 (item 4) and sender of the 821 file.
    benefit_office: String,
    /// 居宅介護支援事業所番号 in item 20 of the 7131 基本 record.
    care_plan_office: String,
    processing: YearMonth,
    service: YearMonth,
    /// 給付管理票 作成年月日 (YYYYMMDD, in the processing month).
    created: u64,
    /// 証記載保険者番号, 8 digits (`00` + 6 with a check digit).
    insurers: Vec<String>,
    /// Sorted by (insurer, 被保険者番号), as ほのぼの sorts its 明細書.
    members: Vec<Member>,
}

/// `body` followed by its check digit (`body` is always all digits here).
fn with_check_digit(body: &str) -> String {
    let digit = ids::check_digit(body).map_or('0', |d| char::from(b'0' + d));
    format!("{body}{digit}")
}

impl Plan {
    /// Random members for `opts` (already validated; `processing` and `service` are its
    /// months).
    fn random(opts: &GenOptions, processing: YearMonth, service: YearMonth) -> Plan {
        let mut rng = SplitMix64(opts.seed);
        let prefecture = opts.office.get(..2).unwrap_or("13");

        let mut municipalities = BTreeSet::new();
        while municipalities.len() < INSURERS {
            municipalities.insert(rng.range(100, 999));
        }
        let insurers = municipalities
            .iter()
            .map(|m| format!("00{}", with_check_digit(&format!("{prefecture}{m:03}"))))
            .collect();
        let prefecture_no: u32 = prefecture.parse().unwrap_or(13);
        let care_managers: Vec<u32> = (0..CARE_MANAGERS)
            .map(|_| prefecture_no * 1_000_000 + rng.small(0, 999_999))
            .collect();

        let members = u64::from(opts.members);
        let first_insured = rng.range(1, 9_999_999_999 - members);
        let mut list: Vec<Member> = (0..members)
            .map(|i| {
                let insurer = rng.index(INSURERS);
                let birth_month = YearMonth {
                    year: service.year - rng.small(65, 100),
                    month: rng.small(1, 12),
                };
                let birth = birth_month.date(rng.small(1, birth_month.days()));
                let sex = if rng.below(2) == 0 { 1 } else { 2 };
                let level = 21 + rng.below(5) as u8;
                let start = service.minus(rng.small(0, 11));
                let end = start.plus([12, 24, 36][rng.index(3)] - 1);
                let rate = match rng.below(20) {
                    0 => 70,
                    1 | 2 => 80,
                    _ => 90,
                };
                let mut items: Vec<usize> = (0..SERVICE_ITEMS.len()).collect();
                let n = rng.index(3) + 1;
                for k in 0..n {
                    let pick = k + rng.index(items.len() - k);
                    items.swap(k, pick);
                }
                let mut chosen = items[..n].to_vec();
                chosen.sort_unstable();
                let lines: Vec<Line> = chosen
                    .into_iter()
                    .map(|k| Line {
                        code: SERVICE_ITEMS[k].0,
                        units: SERVICE_ITEMS[k].1,
                        count: rng.small(1, 12),
                    })
                    .collect();
                let visits: u32 = lines.iter().map(|l| l.count).sum();
                let insured = opts
                    .insured_numbers
                    .as_ref()
                    .and_then(|n| usize::try_from(i).ok().and_then(|i| n.get(i)).copied())
                    .unwrap_or(first_insured + i);
                Member {
                    insurer,
                    insured,
                    birth,
                    sex,
                    level,
                    cert_start: start.date(1),
                    cert_end: end.date(end.days()),
                    rate,
                    lines,
                    days: visits.min(service.days()),
                    care_manager: care_managers[rng.index(CARE_MANAGERS)],
                }
            })
            .collect();
        list.sort_unstable_by_key(|m| (m.insurer, m.insured));
        let created = processing.date(rng.small(1, 5));
        Plan {
            office: opts.office.clone(),
            benefit_office: opts.office.clone(),
            care_plan_office: CARE_PLAN_OFFICE.to_owned(),
            processing,
            service,
            created,
            insurers,
            members: list,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Appends the decimal digits of `n`, left-padded with zeros to `width`.
fn push_number(out: &mut String, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    start = start.min(buf.len().saturating_sub(width));
    for &b in &buf[start..] {
        out.push(char::from(b));
    }
}

/// Builds one file record by record, numbering them. Values never contain a comma or a quote.
#[derive(Debug)]
struct Writer {
    out: String,
    style: Style,
    /// Number of the next record.
    next: u64,
}

impl Writer {
    fn new(style: Style, capacity: usize) -> Writer {
        Writer {
            out: String::with_capacity(capacity),
            style,
            next: 1,
        }
    }

    /// The control record (record 1), always bare.
    fn control(&mut self, data_records: usize, data_type: &str, office: &str, month: YearMonth) {
        let (insurer, prefecture, file_no) = match self.style {
            Style::Honobono => ("0", "0", "1"),
            Style::Qkan => ("000000", "00", "0"),
        };
        self.out.push_str("1,1,0,");
        push_number(&mut self.out, data_records as u64, 1);
        for item in [data_type, "0", insurer, office, prefecture, "7"] {
            self.out.push(',');
            self.out.push_str(item);
        }
        self.out.push(',');
        push_number(&mut self.out, month.yyyymm(), 6);
        self.out.push(',');
        self.out.push_str(file_no);
        self.out.push_str("\r\n");
        self.next = 2;
    }

    /// Starts a data record with its (always quoted) 交換情報識別番号.
    fn begin(&mut self, id: &str) {
        self.out.push_str("2,");
        push_number(&mut self.out, self.next, 1);
        self.next += 1;
        self.key(id);
    }

    fn open(&mut self) {
        self.out.push(',');
        if self.style == Style::Qkan {
            self.out.push('"');
        }
    }

    fn close(&mut self) {
        if self.style == Style::Qkan {
            self.out.push('"');
        }
    }

    /// An item quoted in both styles.
    fn key(&mut self, value: &str) {
        self.out.push_str(",\"");
        self.out.push_str(value);
        self.out.push('"');
    }

    /// A number quoted in both styles, zero-padded to `width`.
    fn key_number(&mut self, n: u64, width: usize) {
        self.out.push_str(",\"");
        push_number(&mut self.out, n, width);
        self.out.push('"');
    }

    /// An item quoted only in QKAN style.
    fn text(&mut self, value: &str) {
        self.open();
        self.out.push_str(value);
        self.close();
    }

    fn number(&mut self, n: u64) {
        self.padded(n, 1);
    }

    fn padded(&mut self, n: u64, width: usize) {
        self.open();
        push_number(&mut self.out, n, width);
        self.close();
    }

    /// `count` empty items.
    fn blank(&mut self, count: usize) {
        for _ in 0..count {
            self.text("");
        }
    }

    /// `count` items `0`.
    fn zeros(&mut self, count: usize) {
        for _ in 0..count {
            self.text("0");
        }
    }

    fn finish(&mut self) {
        self.out.push_str("\r\n");
    }

    /// Writes the end record; returns the text and the number of records.
    fn end(mut self) -> (String, usize) {
        let records = self.next;
        self.out.push_str("3,");
        push_number(&mut self.out, records, 1);
        self.out.push_str("\r\n");
        (self.out, records as usize)
    }
}

/// The `711` file: control, 7111, then per member 7131 01, 02…, 10, end.
fn write_711(plan: &Plan, style: Style) -> (String, usize) {
    let data_records = 1 + plan
        .members
        .iter()
        .map(|m| 2 + m.lines.len())
        .sum::<usize>();
    // About 500 bytes per member in ほのぼの style, 740 in QKAN style.
    let per_member = match style {
        Style::Honobono => 520,
        Style::Qkan => 760,
    };
    let mut w = Writer::new(style, 256 + plan.members.len() * per_member);
    w.control(data_records, "711", &plan.office, plan.processing);

    let mut total = Amounts::default();
    for m in &plan.members {
        let a = m.amounts();
        total.units += a.units;
        total.cost += a.cost;
        total.claim += a.claim;
        total.copay += a.copay;
    }
    // 7111 請求書 (保険): 件数, 単位数, 費用合計, 保険請求額, 公費請求額, 利用者負担, 13–18 特定入所者.
    w.begin("7111");
    w.padded(plan.service.yyyymm(), 6);
    w.text(&plan.office);
    w.text("1");
    w.text("0");
    w.text("01");
    w.number(plan.members.len() as u64);
    w.number(total.units);
    w.number(total.cost);
    w.number(total.claim);
    w.zeros(1);
    w.number(total.copay);
    w.zeros(6);
    w.finish();

    for m in &plan.members {
        let a = m.amounts();
        let header = |w: &mut Writer, kind: &str| {
            w.begin("7131");
            w.text(kind);
            w.padded(plan.service.yyyymm(), 6);
            w.text(&plan.office);
            w.text(&plan.insurers[m.insurer]);
            w.key_number(m.insured, 10);
        };
        // 01 基本 (56 items).
        header(&mut w, "01");
        w.blank(6); // 7–12 公費
        w.number(m.birth);
        w.number(u64::from(m.sex));
        w.number(u64::from(m.level));
        w.blank(1); // 16 旧措置入所者特例
        w.number(m.cert_start);
        w.number(m.cert_end);
        w.text("1"); // 19 居宅サービス計画作成区分
        w.text(&plan.care_plan_office);
        w.blank(8); // 21–28 開始/中止, 入退所
        w.number(m.rate);
        w.blank(3); // 30–32 公費給付率
        w.number(a.units);
        w.number(a.claim);
        w.number(a.copay);
        w.zeros(21); // 36–56 公費, 緊急時施設療養, 特定診療費 …
        w.finish();
        // 02 明細 (18 items).
        for line in &m.lines {
            header(&mut w, "02");
            w.text(SERVICE_TYPE);
            w.text(line.code);
            w.number(u64::from(line.units));
            w.number(u64::from(line.count));
            w.zeros(3); // 11–13 公費回数
            w.number(u64::from(line.units) * u64::from(line.count));
            w.zeros(3); // 15–17 公費対象単位数
            w.key(""); // 18 摘要
            w.finish();
        }
        // 10 集計 (38 items).
        header(&mut w, "10");
        w.text(SERVICE_TYPE);
        w.number(u64::from(m.days));
        w.number(a.units); // 9 計画単位数
        w.number(a.units); // 10 限度額管理対象単位数
        w.zeros(1);
        w.blank(2);
        w.number(a.units); // 14 保険単位数合計
        w.number(UNIT_PRICE);
        w.number(a.claim);
        w.number(a.copay);
        w.zeros(9); // 18–26 公費
        w.blank(12); // 27–38 保険分出来高医療費 …
        w.finish();
    }
    w.end()
}

/// The `821` file: control, per member 8222 line 01 and closing line 99, end.
fn write_821(plan: &Plan, style: Style) -> (String, usize) {
    let per_member = match style {
        Style::Honobono => 280,
        Style::Qkan => 380,
    };
    let mut w = Writer::new(style, 256 + plan.members.len() * per_member);
    w.control(
        2 * plan.members.len(),
        "821",
        &plan.benefit_office,
        plan.processing,
    );
    for m in &plan.members {
        let units = m.amounts().units;
        let header = |w: &mut Writer, line_no: &str| {
            w.begin("8222");
            w.padded(plan.service.yyyymm(), 6);
            w.text(&plan.insurers[m.insurer]);
            w.text(&plan.benefit_office);
            w.text("1"); // 作成区分 新規
            w.number(plan.created);
            w.text("3"); // 種別区分 居宅サービス
            w.text(line_no);
            w.key_number(m.insured, 10);
            w.number(m.birth);
            w.number(u64::from(m.sex));
            w.number(u64::from(m.level));
            w.padded(m.cert_start / 100, 6);
            w.padded(m.cert_end / 100, 6);
        };
        header(&mut w, "01");
        w.blank(1); // 15 支給限度額 (99 line only)
        w.text("1"); // 16 計画作成区分
        w.text(&plan.office);
        w.text("1"); // 18 指定/基準該当等区分
        w.text(SERVICE_TYPE);
        w.number(units);
        w.blank(7);
        w.finish();

        header(&mut w, "99");
        w.number(limit_units(m.level));
        w.text("1");
        w.zeros(3); // 17–19
        w.blank(2);
        w.number(units); // 22 指定サービス分小計
        w.zeros(1);
        w.number(units); // 24 給付計画合計単位数
        w.padded(u64::from(m.care_manager), 8);
        w.blank(2);
        w.finish();
    }
    w.end()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;
    use crate::config::WindowConfig;
    use crate::reception::{self, ReceptionContext, ReceptionStatus};
    use crate::window::Window;

    const OFFICE: &str = "1379999996";

    /// claim-format.md §1.6, 711 file (ほのぼの style).
    const EXAMPLE_711: &str = "1,1,0,4,711,0,0,1379999996,0,7,202506,1\r\n\
2,2,\"7111\",202505,1379999996,1,0,01,1,2000,22800,20520,0,2280,0,0,0,0,0,0\r\n\
2,3,\"7131\",01,202505,1379999996,00139998,\"0000123456\",,,,,,,19400101,2,22,,20240401,20260331,1,1379999988,,,,,,,,,90,,,,2000,20520,2280,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\r\n\
2,4,\"7131\",02,202505,1379999996,00139998,\"0000123456\",11,1111,250,8,0,0,0,2000,0,0,0,\"\"\r\n\
2,5,\"7131\",10,202505,1379999996,00139998,\"0000123456\",11,8,2000,2000,0,,,2000,1140,20520,2280,0,0,0,0,0,0,0,0,0,,,,,,,,,,,,\r\n\
3,6\r\n";

    /// claim-format.md §1.6, 821 file.
    const EXAMPLE_821: &str = "1,1,0,2,821,0,0,1379999988,0,7,202506,1\r\n\
2,2,\"8222\",202505,00139998,1379999988,1,20250603,3,01,\"0000123456\",19400101,2,22,202404,202603,,1,1379999996,1,11,2000,,,,,,,\r\n\
2,3,\"8222\",202505,00139998,1379999988,1,20250603,3,99,\"0000123456\",19400101,2,22,202404,202603,19705,1,0,0,0,,,2000,0,2000,13012345,,\r\n\
3,4\r\n";

    fn month(s: &str) -> Month {
        Month::parse(s).unwrap()
    }

    fn opts(style: Style, members: u32, seed: u64) -> GenOptions {
        GenOptions {
            office: OFFICE.into(),
            processing_month: month("202606"),
            members,
            style,
            seed,
            service_month: None,
            insured_numbers: None,
        }
    }

    /// The plan of the §1.6 example.
    fn example_plan() -> Plan {
        Plan {
            office: "1379999996".into(),
            benefit_office: "1379999988".into(),
            care_plan_office: "1379999988".into(),
            processing: YearMonth {
                year: 2025,
                month: 6,
            },
            service: YearMonth {
                year: 2025,
                month: 5,
            },
            created: 20250603,
            insurers: vec!["00139998".into()],
            members: vec![Member {
                insurer: 0,
                insured: 123456,
                birth: 19400101,
                sex: 2,
                level: 22,
                cert_start: 20240401,
                cert_end: 20260331,
                rate: 90,
                lines: vec![Line {
                    code: "1111",
                    units: 250,
                    count: 8,
                }],
                days: 8,
                care_manager: 13012345,
            }],
        }
    }

    /// Items of one record as (value, quoted). Independent of the generator and of
    /// `reception::split_items`: generated values never hold commas or quotes.
    fn items(record: &str) -> Vec<(String, bool)> {
        record
            .split(',')
            .map(
                |item| match item.strip_prefix('"').and_then(|i| i.strip_suffix('"')) {
                    Some(inner) if item.len() >= 2 => (inner.to_owned(), true),
                    _ => {
                        assert!(!item.contains('"'), "stray quote in {record:?}");
                        (item.to_owned(), false)
                    }
                },
            )
            .collect()
    }

    /// Decodes strictly as CP932 and splits into records (each must end with CRLF).
    fn records(bytes: &[u8]) -> Vec<String> {
        let text = encoding_rs::SHIFT_JIS
            .decode_without_bom_handling_and_without_replacement(bytes)
            .expect("CP932");
        assert!(text.ends_with("\r\n"));
        let body = &text[..text.len() - 2];
        let recs: Vec<String> = body.split("\r\n").map(str::to_owned).collect();
        for r in &recs {
            assert!(!r.contains(['\r', '\n']), "lone CR/LF in {r:?}");
        }
        recs
    }

    /// Values of every record (quotes removed).
    fn values(bytes: &[u8]) -> Vec<Vec<String>> {
        records(bytes)
            .iter()
            .map(|r| items(r).into_iter().map(|(v, _)| v).collect())
            .collect()
    }

    fn num(s: &str) -> u64 {
        s.parse()
            .unwrap_or_else(|_| panic!("{s:?} is not a number"))
    }

    fn valid_date(s: &str) -> bool {
        if s.len() != 8 {
            return false;
        }
        let y = num(&s[..4]) as u32;
        let m = num(&s[4..6]) as u32;
        let d = num(&s[6..]) as u32;
        (1..=12).contains(&m) && d >= 1 && d <= YearMonth { year: y, month: m }.days()
    }

    #[test]
    fn reproduces_the_design_example_exactly() {
        let plan = example_plan();
        let (claims, n) = write_711(&plan, Style::Honobono);
        assert_eq!(claims, EXAMPLE_711);
        assert_eq!(n, 6);
        let (benefits, n) = write_821(&plan, Style::Honobono);
        assert_eq!(benefits, EXAMPLE_821);
        assert_eq!(n, 4);
        let (qkan, _) = write_711(&plan, Style::Qkan);
        let lines: Vec<&str> = qkan.split("\r\n").collect();
        assert_eq!(lines[0], "1,1,0,4,711,0,000000,1379999996,00,7,202506,0");
        assert_eq!(
            lines[1],
            "2,2,\"7111\",\"202505\",\"1379999996\",\"1\",\"0\",\"01\",\"1\",\"2000\",\"22800\",\
             \"20520\",\"0\",\"2280\",\"0\",\"0\",\"0\",\"0\",\"0\",\"0\""
        );
        assert!(lines[3].ends_with(",\"0\",\"\""), "{}", lines[3]);
        assert_eq!(lines[5], "3,6");
    }

    #[test]
    fn files_decode_and_are_numbered_and_counted() {
        for style in [Style::Honobono, Style::Qkan] {
            let files = generate(&opts(style, 57, 7)).unwrap();
            assert_eq!(files.len(), 2);
            assert_eq!(files[0].data_type, "711");
            assert_eq!(files[1].data_type, "821");
            for f in &files {
                let recs = values(&f.bytes);
                assert_eq!(recs.len(), f.records);
                let n = recs.len();
                for (i, r) in recs.iter().enumerate() {
                    let expected_type = if i == 0 {
                        "1"
                    } else if i == n - 1 {
                        "3"
                    } else {
                        "2"
                    };
                    assert_eq!(r[0], expected_type, "{}: record {}", f.name, i + 1);
                    assert_eq!(num(&r[1]), i as u64 + 1, "{}", f.name);
                }
                let control = &recs[0];
                assert_eq!(control.len(), 12);
                assert_eq!(num(&control[3]), n as u64 - 2);
                assert_eq!(control[4], f.data_type);
                assert_eq!(control[7], OFFICE);
                assert_eq!(control[9], "7");
                assert_eq!(control[10], "202606");
                assert_eq!(recs[n - 1].len(), 2);
                let ids: &[&str] = if f.data_type == "711" {
                    &["7111", "7131"]
                } else {
                    &["8222"]
                };
                for r in &recs[1..n - 1] {
                    assert!(ids.contains(&r[2].as_str()), "{r:?}");
                }
            }
            assert_eq!(files[1].records, 2 + 2 * 57);
        }
    }

    #[test]
    fn file_names_follow_each_style() {
        let names = |style, m: &str| -> Vec<String> {
            let mut o = opts(style, 1, 0);
            o.processing_month = month(m);
            generate(&o).unwrap().into_iter().map(|f| f.name).collect()
        };
        assert_eq!(
            names(Style::Honobono, "202606"),
            ["KK260601.CSV", "KY260601.CSV"]
        );
        assert_eq!(names(Style::Qkan, "202606"), ["i0806a.csv", "i0806b.csv"]);
        assert_eq!(names(Style::Qkan, "202510"), ["i0710a.csv", "i0710b.csv"]);
        assert_eq!(names(Style::Qkan, "201904"), ["i3104a.csv", "i3104b.csv"]);
        assert_eq!(names(Style::Qkan, "201905"), ["i0105a.csv", "i0105b.csv"]);
        for name in names(Style::Honobono, "202612")
            .into_iter()
            .chain(names(Style::Qkan, "202612"))
        {
            assert!(reception::is_8_3_name(&name), "{name}");
        }
    }

    /// Recomputes every statement and the 7111 totals from the parsed 711 file, checks the
    /// record shapes, and checks the 821 file against the statements.
    #[test]
    fn totals_equal_the_sums_over_the_statements() {
        for style in [Style::Honobono, Style::Qkan] {
            let files = generate(&opts(style, 200, 42)).unwrap();
            let recs = values(&files[0].bytes);
            let data = &recs[1..recs.len() - 1];
            let bill = &data[0];
            assert_eq!(bill.len(), 20, "7111 has 18 items");
            assert_eq!(bill[2], "7111");
            let item = |r: &Vec<String>, k: usize| r[k + 1].clone();
            assert_eq!(item(bill, 2), "202605");
            assert_eq!(item(bill, 3), OFFICE);
            assert_eq!(
                (item(bill, 4), item(bill, 5), item(bill, 6)),
                ("1".into(), "0".into(), "01".into())
            );

            #[derive(Default)]
            struct Sums {
                count: u64,
                units: u64,
                cost: u64,
                claim: u64,
                copay: u64,
            }
            let mut sums = Sums::default();
            // Per insured: (units, 保険請求額) for the 821 cross-check.
            let mut statements: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            let mut i = 1;
            while i < data.len() {
                let basic = &data[i];
                assert_eq!(basic.len(), 58, "7131-01 has 56 items");
                assert_eq!(
                    (item(basic, 1).as_str(), item(basic, 2).as_str()),
                    ("7131", "01")
                );
                let key: Vec<String> = (3..=6).map(|k| item(basic, k)).collect();
                assert_eq!(key[0], "202605");
                assert_eq!(key[1], OFFICE);
                assert!(crate::ids::is_valid_insurer_number_8(&key[2]), "{key:?}");
                assert!(key[3].len() == 10 && key[3].bytes().all(|b| b.is_ascii_digit()));
                assert!(valid_date(&item(basic, 13)));
                assert!(["1", "2"].contains(&item(basic, 14).as_str()));
                assert!((21..=25).contains(&num(&item(basic, 15))));
                let (start, end) = (item(basic, 17), item(basic, 18));
                assert!(valid_date(&start) && valid_date(&end));
                assert!(start.as_str() <= "20260501" && end.as_str() >= "20260531");
                assert_eq!(item(basic, 19), "1");
                assert!(crate::ids::is_valid_office_number(&item(basic, 20)));
                let rate = num(&item(basic, 29));
                assert!([70, 80, 90].contains(&rate));
                i += 1;

                let mut units = 0;
                let mut codes = Vec::new();
                while item(&data[i], 2) == "02" {
                    let line = &data[i];
                    assert_eq!(line.len(), 20, "7131-02 has 18 items");
                    let k: Vec<String> = (3..=6).map(|k| item(line, k)).collect();
                    assert_eq!(k, key);
                    assert_eq!(item(line, 7), "11");
                    codes.push(item(line, 8));
                    let line_units = num(&item(line, 9)) * num(&item(line, 10));
                    assert_eq!(num(&item(line, 14)), line_units);
                    assert_eq!(item(line, 18), "");
                    units += line_units;
                    i += 1;
                }
                assert!(!codes.is_empty());
                assert!(codes.windows(2).all(|w| w[0] < w[1]), "{codes:?}");

                let total = &data[i];
                assert_eq!(total.len(), 40, "7131-10 has 38 items");
                assert_eq!(item(total, 2), "10");
                assert_eq!((3..=6).map(|k| item(total, k)).collect::<Vec<_>>(), key);
                let price = num(&item(total, 15));
                assert_eq!(price, 1140);
                let cost = units * price / 100;
                let claim = cost * rate / 100;
                let copay = cost - claim;
                for k in [9, 10, 14] {
                    assert_eq!(num(&item(total, k)), units);
                }
                assert_eq!(num(&item(total, 16)), claim);
                assert_eq!(num(&item(total, 17)), copay);
                assert!((1..=31).contains(&num(&item(total, 8))));
                assert_eq!(num(&item(basic, 33)), units);
                assert_eq!(num(&item(basic, 34)), claim);
                assert_eq!(num(&item(basic, 35)), copay);
                i += 1;

                sums.count += 1;
                sums.units += units;
                sums.cost += cost;
                sums.claim += claim;
                sums.copay += copay;
                assert!(
                    statements.insert(key[3].clone(), (units, claim)).is_none(),
                    "insured numbers are distinct"
                );
            }
            assert_eq!(sums.count, 200);
            assert_eq!(num(&item(bill, 7)), sums.count);
            assert_eq!(num(&item(bill, 8)), sums.units);
            assert_eq!(num(&item(bill, 9)), sums.cost);
            assert_eq!(num(&item(bill, 10)), sums.claim);
            assert_eq!(num(&item(bill, 11)), 0);
            assert_eq!(num(&item(bill, 12)), sums.copay);
            for k in 13..=18 {
                assert_eq!(num(&item(bill, k)), 0);
            }
            let insurers: HashSet<String> = data[1..].iter().map(|r| item(r, 5)).collect();
            assert!(insurers.len() > 1, "several insurers");

            // 821: one 01 line and one 99 line per statement, same units.
            let recs = values(&files[1].bytes);
            let lines = &recs[1..recs.len() - 1];
            assert_eq!(lines.len(), 2 * statements.len());
            for pair in lines.chunks(2) {
                let (detail, closing) = (&pair[0], &pair[1]);
                for r in pair {
                    assert_eq!(r.len(), 29, "8222 has 27 items");
                    assert_eq!(item(r, 1), "8222");
                    assert_eq!(item(r, 2), "202605");
                    assert!(crate::ids::is_valid_insurer_number_8(&item(r, 3)));
                    assert_eq!(item(r, 4), OFFICE);
                    let created = item(r, 6);
                    assert!(valid_date(&created) && created.starts_with("202606"));
                    assert_eq!(item(r, 7), "3");
                    assert!(item(r, 13).len() == 6 && item(r, 14).len() == 6);
                    assert!(item(r, 13).as_str() <= "202605" && item(r, 14).as_str() >= "202605");
                }
                assert_eq!(
                    (item(detail, 8), item(closing, 8)),
                    ("01".into(), "99".into())
                );
                assert_eq!(item(detail, 9), item(closing, 9));
                let (units, _) = statements[&item(detail, 9)];
                assert_eq!(item(detail, 17), OFFICE);
                assert_eq!(item(detail, 19), "11");
                assert_eq!(num(&item(detail, 20)), units);
                assert_eq!(item(detail, 15), "");
                let limit = num(&item(closing, 15));
                assert!(units <= limit, "{units} > {limit}");
                assert_eq!(num(&item(closing, 22)), units);
                assert_eq!(num(&item(closing, 24)), units);
                assert_eq!(item(closing, 25).len(), 8);
            }
        }
    }

    #[test]
    fn both_styles_carry_the_same_values() {
        let hono = generate(&opts(Style::Honobono, 120, 3)).unwrap();
        let qkan = generate(&opts(Style::Qkan, 120, 3)).unwrap();
        for (h, q) in hono.iter().zip(&qkan) {
            assert_ne!(h.bytes, q.bytes);
            let (hr, qr) = (records(&h.bytes), records(&q.bytes));
            assert_eq!(hr.len(), qr.len());
            let last = hr.len() - 1;
            for (i, (hrec, qrec)) in hr.iter().zip(&qr).enumerate() {
                let (hi, qi) = (items(hrec), items(qrec));
                assert_eq!(hi.len(), qi.len(), "record {}", i + 1);
                if i == 0 || i == last {
                    // Control and end records are bare in both; the control record differs
                    // only in zero padding (items 7, 9) and ファイル管理番号 (item 12).
                    assert!(hi.iter().chain(&qi).all(|(_, quoted)| !quoted));
                    for (k, ((hv, _), (qv, _))) in hi.iter().zip(&qi).enumerate() {
                        if k != 11 {
                            assert_eq!(num(hv), num(qv), "control item {}", k + 1);
                        }
                    }
                    continue;
                }
                let id = hi[2].0.clone();
                for (k, ((hv, hq), (qv, qq))) in hi.iter().zip(&qi).enumerate() {
                    assert_eq!(hv, qv, "record {} item {k}", i + 1);
                    // Type and number are bare in both; every item is quoted in QKAN.
                    assert_eq!(*qq, k >= 2, "{qrec}");
                    let item_no = k.saturating_sub(1);
                    let honobono_quoted = k >= 2
                        && match id.as_str() {
                            "7131" => {
                                item_no == 1 || item_no == 6 || (hi[3].0 == "02" && item_no == 18)
                            }
                            "8222" => item_no == 1 || item_no == 9,
                            _ => item_no == 1,
                        };
                    assert_eq!(*hq, honobono_quoted, "item {item_no} of {hrec}");
                }
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        for style in [Style::Honobono, Style::Qkan] {
            let a = generate(&opts(style, 300, 99)).unwrap();
            let b = generate(&opts(style, 300, 99)).unwrap();
            assert_eq!(a, b);
            let c = generate(&opts(style, 300, 100)).unwrap();
            assert_ne!(a[0].bytes, c[0].bytes);
            assert_ne!(a[1].bytes, c[1].bytes);
        }
    }

    /// The simulator's own 到達 and 受付 checks, with the processing month its window rule puts
    /// in force at the clock time, accept every generated file with ○.
    #[test]
    fn the_simulator_accepts_the_files() {
        let window = Window::new(&WindowConfig::default()).unwrap();
        for now in ["2026-06-03T10:00:00+09:00", "2027-01-10T23:00:00+09:00"] {
            let status = window.status(now.parse().unwrap()).unwrap();
            assert!(status.open);
            let processing = status.processing_month();
            let processing_text = processing.to_string();
            let offices = vec![OFFICE.to_owned()];
            for style in [Style::Honobono, Style::Qkan] {
                for members in [1, 25] {
                    let mut o = opts(style, members, u64::from(members));
                    o.processing_month = processing;
                    for f in generate(&o).unwrap() {
                        assert_eq!(
                            reception::check_arrival(Some(&f.name), &f.bytes),
                            vec![],
                            "{}",
                            f.name
                        );
                        let result = reception::check_reception(
                            &f.bytes,
                            &ReceptionContext {
                                processing_month: &processing_text,
                                offices: &offices,
                            },
                        );
                        assert_eq!(result.status, ReceptionStatus::Accepted, "{result:?}");
                        assert_eq!(result.status.mark(), "○");
                        assert!(result.errors.is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn bad_options_are_refused() {
        for office in ["137999999", "13799999960", "13799a9996", "", "1379999997"] {
            let mut o = opts(Style::Honobono, 1, 0);
            o.office = office.into();
            let err = generate(&o).unwrap_err();
            assert!(matches!(err, GenError::BadOffice { .. }), "{office}: {err}");
            assert!(err.to_string().contains(office), "{err}");
        }
        let mut o = opts(Style::Honobono, 1, 0);
        o.office = "1379999997".into();
        assert!(
            generate(&o)
                .unwrap_err()
                .to_string()
                .contains("it should be 6")
        );
        assert_eq!(
            generate(&opts(Style::Qkan, 0, 0)).unwrap_err(),
            GenError::NoMembers
        );
        assert!(matches!(
            generate(&opts(Style::Qkan, MAX_MEMBERS + 1, 0)).unwrap_err(),
            GenError::TooManyMembers { .. }
        ));
        for m in [
            Month {
                year: 2026,
                month: 13,
            },
            Month {
                year: 2026,
                month: 0,
            },
            month("200012"),
            month("210001"),
        ] {
            let mut o = opts(Style::Qkan, 1, 0);
            o.processing_month = m;
            assert_eq!(generate(&o).unwrap_err(), GenError::BadMonth(m));
        }
    }

    #[test]
    fn january_claims_are_for_december_services() {
        let mut o = opts(Style::Honobono, 3, 5);
        o.processing_month = month("202701");
        let files = generate(&o).unwrap();
        let recs = values(&files[0].bytes);
        assert_eq!(recs[0][10], "202701");
        assert!(
            recs[1..recs.len() - 1]
                .iter()
                .all(|r| r[3] == "202612" || r[4] == "202612")
        );
        assert_eq!(files[0].name, "KK270101.CSV");
    }

    #[test]
    fn late_service_months_and_given_insured_numbers() {
        let mut o = opts(Style::Honobono, 3, 5);
        o.service_month = Some(month("202304"));
        o.insured_numbers = Some(vec![17, 9_999_999_999, 1_000_000_005]);
        let files = generate(&o).unwrap();
        for f in &files {
            let recs = values(&f.bytes);
            assert_eq!(recs[0][10], "202606", "processing month unchanged");
            let data = &recs[1..recs.len() - 1];
            let mut insured = BTreeSet::new();
            for r in data {
                match r[2].as_str() {
                    "7111" => assert_eq!(r[3], "202304"),
                    "7131" => {
                        assert_eq!(r[4], "202304");
                        insured.insert(r[7].clone());
                    }
                    _ => {
                        assert_eq!(r[3], "202304");
                        insured.insert(r[10].clone());
                    }
                }
            }
            let expected: BTreeSet<String> = ["0000000017", "9999999999", "1000000005"]
                .into_iter()
                .map(str::to_owned)
                .collect();
            assert_eq!(insured, expected, "{}", f.name);
        }
        // The rest of the plan does not depend on the given numbers.
        let mut plain = opts(Style::Honobono, 3, 5);
        plain.service_month = Some(month("202304"));
        let plain = generate(&plain).unwrap();
        assert_eq!(plain[0].bytes.len(), files[0].bytes.len());
        // Still ○ for the simulator in its processing month.
        let offices = vec![OFFICE.to_owned()];
        for f in &files {
            let r = reception::check_reception(
                &f.bytes,
                &ReceptionContext {
                    processing_month: "202606",
                    offices: &offices,
                },
            );
            assert_eq!(r.status, ReceptionStatus::Accepted, "{r:?}");
        }
        // The default service month is the month before.
        let mut o = opts(Style::Qkan, 1, 1);
        o.service_month = Some(month("202605"));
        assert_eq!(
            generate(&o).unwrap(),
            generate(&opts(Style::Qkan, 1, 1)).unwrap()
        );
    }

    #[test]
    fn bad_service_months_and_insured_numbers_are_refused() {
        for bad in ["202606", "202607", "200012"] {
            let mut o = opts(Style::Honobono, 1, 0);
            o.service_month = Some(month(bad));
            let err = generate(&o).unwrap_err();
            assert!(
                matches!(err, GenError::BadServiceMonth { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains(bad), "{err}");
        }
        for (numbers, needle) in [
            (vec![1, 2], "2 numbers for 3 members"),
            (vec![1, 2, 10_000_000_000], "more than 10 digits"),
            (vec![1, 2, 1], "given twice"),
        ] {
            let mut o = opts(Style::Honobono, 3, 0);
            o.insured_numbers = Some(numbers);
            let err = generate(&o).unwrap_err();
            assert!(matches!(err, GenError::BadInsuredNumbers(_)), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn style_names_round_trip() {
        for style in [Style::Honobono, Style::Qkan] {
            assert_eq!(style.as_str().parse::<Style>().unwrap(), style);
            assert_eq!(style.to_string(), style.as_str());
        }
        assert!("QKAN".parse::<Style>().is_err());
    }

    #[test]
    fn scales_to_thirty_thousand_members() {
        let files = generate(&opts(Style::Honobono, 30_000, 1)).unwrap();
        let claims = &files[0];
        assert!(claims.bytes.len() > 8_000_000, "{}", claims.bytes.len());
        let crlf = claims.bytes.windows(2).filter(|w| w == b"\r\n").count();
        assert_eq!(crlf, claims.records);
        assert_eq!(files[1].records, 2 + 60_000);
    }
}
