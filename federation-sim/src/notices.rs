//! The notices (通知文書) the simulated federation issues per office: the month-end set (7211
//! 審査決定増減表, 7311 審査増減単位数通知書, 7411 返戻（保留）一覧表, a text お知らせ) and the payment
//! set (7513 支払決定額通知書, 7521 支払決定額内訳書, 7611 過誤決定通知書, 7621 再審査決定通知書 and
//! a PDF payment advice), written from reviewed statements ([`Reviewed`]).
//!
//! Pure functions, no I/O, no clock: the bytes depend only on the reviewed statements, the
//! office, the processing month and the creation date, so the same inputs always give the same
//! bytes. CSV notices use the envelope of claim-format.md §1 (control record
//! `1,1,0,<data records>,<data type>,0,0,<事業所番号>,0,7,<M>,0`, data records
//! `2,<recno>,<ID>,<H1|D1|T1…>,…`, end record `3,<n>`), CP932, CRLF after every record; an item
//! is written in double quotes (`""` for a quote) when it holds anything but ASCII letters,
//! digits and `-`. Item counts per record follow claim-format.md §6.2 and are listed in
//! README.md ("Notices"); the amounts follow the rules stated there.

use std::collections::BTreeMap;

use jiff::civil::Date;

use crate::review::{Decision, Reviewed, assessment_detail, insurer6};
use crate::statements::Kind;
use crate::window::Month;

/// Media type of the interface-spec (CSV) notices.
pub const CSV: &str = "text/csv; charset=Shift_JIS";
/// Media type of the お知らせ.
pub const TEXT: &str = "text/plain; charset=Shift_JIS";
/// Media type of the printable payment advice.
pub const PDF: &str = "application/pdf";

/// Kind ID of the PDF payment advice.
pub const KIND_PDF: &str = "PDF1";
/// Kind ID of the text お知らせ.
pub const KIND_TEXT: &str = "TXT1";

/// 円 per unit in the payment notices (単価 10.00 円).
pub const YEN_PER_UNIT: u64 = 10;
/// 給付率 (%) of the payment notices: 介護給付費 = ⌊金額 × 90 / 100⌋.
pub const BENEFIT_PERCENT: u64 = 90;
/// Day of month M+1 on which the payment for M is transferred (7513 作成年月日, お知らせ).
pub const TRANSFER_DAY: i8 = 20;

/// One notice document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub kind_id: &'static str,
    pub title: &'static str,
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
}

/// Every notice kind: (kind ID, title, CSV データ種別).
pub const KINDS: [(&str, &str, &str); 9] = [
    ("7211", "介護保険審査決定増減表", "721"),
    ("7311", "介護保険審査増減単位数通知書", "731"),
    ("7411", "請求明細書・給付管理票返戻（保留）一覧表", "741"),
    (KIND_TEXT, "お知らせ", ""),
    ("7513", "介護給付費等支払決定額通知書", "751"),
    ("7521", "介護給付費支払決定額内訳書", "752"),
    ("7611", "介護給付費過誤決定通知書（事業所）", "761"),
    ("7621", "介護給付費再審査決定通知書（事業所）", "762"),
    (KIND_PDF, "支払決定額通知書 (PDF)", ""),
];

fn kind(id: &str) -> (&'static str, &'static str, &'static str) {
    KINDS
        .iter()
        .copied()
        .find(|(k, _, _)| *k == id)
        .unwrap_or(("", "", ""))
}

/// Who issues to whom, for when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    pub office_number: String,
    /// 事業所名 as registered (may be empty).
    pub office_name: String,
    /// 審査年月 / 取扱年月.
    pub month: Month,
    /// 作成年月日.
    pub created: Date,
}

impl Issuer {
    /// The registered name, or a synthetic one (`事業所` + the number in full width).
    fn office_name(&self) -> String {
        let name = self.office_name.trim();
        if name.is_empty() {
            format!("事業所{}", full_width(&self.office_number))
        } else {
            name.to_owned()
        }
    }

    /// 国保連合会名 from the office's prefecture digits.
    pub fn federation(&self) -> String {
        federation_name(&self.office_number)
    }

    fn created(&self) -> String {
        yyyymmdd(self.created)
    }
}

const PREFECTURES: [&str; 47] = [
    "北海道",
    "青森県",
    "岩手県",
    "宮城県",
    "秋田県",
    "山形県",
    "福島県",
    "茨城県",
    "栃木県",
    "群馬県",
    "埼玉県",
    "千葉県",
    "東京都",
    "神奈川県",
    "新潟県",
    "富山県",
    "石川県",
    "福井県",
    "山梨県",
    "長野県",
    "岐阜県",
    "静岡県",
    "愛知県",
    "三重県",
    "滋賀県",
    "京都府",
    "大阪府",
    "兵庫県",
    "奈良県",
    "和歌山県",
    "鳥取県",
    "島根県",
    "岡山県",
    "広島県",
    "山口県",
    "徳島県",
    "香川県",
    "愛媛県",
    "高知県",
    "福岡県",
    "佐賀県",
    "長崎県",
    "熊本県",
    "大分県",
    "宮崎県",
    "鹿児島県",
    "沖縄県",
];

/// The prefecture of a number whose first two digits are the 都道府県番号.
fn prefecture(number: &str) -> Option<&'static str> {
    let n: usize = number.get(..2)?.parse().ok()?;
    PREFECTURES.get(n.checked_sub(1)?).copied()
}

/// `東京都国民健康保険団体連合会` for an office number starting with `13`.
pub fn federation_name(office_number: &str) -> String {
    format!(
        "{}国民健康保険団体連合会",
        prefecture(office_number).unwrap_or("")
    )
}

/// Full-width form of ASCII text (digits become `０`–`９`).
fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ' ' => '\u{3000}',
            '!'..='~' => char::from_u32(u32::from(c) + 0xFEE0).unwrap_or(c),
            c => c,
        })
        .collect()
}

/// Synthetic 保険者名: prefecture + `保険者` + the 6-digit number in full width.
pub fn insurer_name(insurer: &str) -> String {
    let six = insurer6(insurer);
    format!("{}保険者{}", prefecture(six).unwrap_or(""), full_width(six))
}

/// Synthetic カナ氏名 (半角) from the 被保険者番号: the tens digit picks the family name, the
/// hundreds digit the given name (non-digits count by their code point).
pub fn kana_name(insured: &str) -> String {
    const FAMILY: [&str; 10] = [
        "ﾔﾏﾀﾞ",
        "ｽｽﾞｷ",
        "ﾀﾅｶ",
        "ｻﾄｳ",
        "ﾜﾀﾅﾍﾞ",
        "ｲﾄｳ",
        "ﾀｶﾊｼ",
        "ｺﾊﾞﾔｼ",
        "ﾅｶﾑﾗ",
        "ｶﾄｳ",
    ];
    const GIVEN: [&str; 10] = [
        "ﾊﾅｺ",
        "ﾀﾛｳ",
        "ﾖｼｺ",
        "ｲﾁﾛｳ",
        "ｶｽﾞｺ",
        "ｼﾞﾛｳ",
        "ﾐﾁｺ",
        "ｻﾌﾞﾛｳ",
        "ﾄﾐｺ",
        "ｼﾛｳ",
    ];
    let digit = |from_end: usize| -> usize {
        insured
            .chars()
            .rev()
            .nth(from_end)
            .map_or(0, |c| c.to_digit(10).map_or(c as usize, |d| d as usize))
            % 10
    };
    if insured.is_empty() {
        return "ﾌﾒｲ".to_owned();
    }
    format!("{} {}", FAMILY[digit(1)], GIVEN[digit(2)])
}

/// サービス種類 name for the 7521/7611 種類名 items.
pub fn service_type_name(code: &str) -> &'static str {
    match code {
        "11" => "訪問介護",
        "12" => "訪問入浴介護",
        "13" => "訪問看護",
        "14" => "訪問リハビリテーション",
        "15" => "通所介護",
        "16" => "通所リハビリテーション",
        "17" => "福祉用具貸与",
        "21" => "短期入所生活介護",
        "22" => "短期入所療養介護（介護老人保健施設）",
        "23" => "短期入所療養介護（病院等）",
        "31" => "居宅療養管理指導",
        "32" => "認知症対応型共同生活介護",
        "33" => "特定施設入居者生活介護",
        "43" => "居宅介護支援",
        "46" => "介護予防支援",
        "51" => "介護福祉施設サービス",
        "52" => "介護保健施設サービス",
        "53" => "介護療養施設サービス",
        "71" => "夜間対応型訪問介護",
        "72" => "認知症対応型通所介護",
        "73" => "小規模多機能型居宅介護",
        "76" => "定期巡回・随時対応型訪問介護看護",
        "78" => "地域密着型通所介護",
        _ => "その他のサービス",
    }
}

fn yyyymmdd(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

/// `令和7年6月` (平成 before 2019-05).
fn wareki_month(year: i16, month: i8) -> String {
    let (era, y) = if (year, month) >= (2019, 5) {
        ("令和", year - 2018)
    } else {
        ("平成", year - 1988)
    };
    if y == 1 {
        format!("{era}元年{month}月")
    } else {
        format!("{era}{y}年{month}月")
    }
}

fn wareki_date(d: Date) -> String {
    format!("{}{}日", wareki_month(d.year(), d.month()), d.day())
}

/// The date the payment for `month` is transferred: [`TRANSFER_DAY`] of the next month.
pub fn transfer_date(month: Month) -> Date {
    let next = month.next();
    Date::new(next.year, next.month, TRANSFER_DAY).unwrap_or(Date::MAX)
}

/// CP932 bytes; characters CP932 cannot hold become `〓`.
pub fn cp932(text: &str) -> Vec<u8> {
    let (bytes, _, had_errors) = encoding_rs::SHIFT_JIS.encode(text);
    if !had_errors {
        return bytes.into_owned();
    }
    let mut out = Vec::with_capacity(text.len() * 2);
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let (b, _, bad) = encoding_rs::SHIFT_JIS.encode(c.encode_utf8(&mut buf));
        if bad {
            out.extend_from_slice(&encoding_rs::SHIFT_JIS.encode("〓").0);
        } else {
            out.extend_from_slice(&b);
        }
    }
    out
}

/// Replaces what may not appear inside a CSV item or a line of text.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            c if c.is_control() => ' ',
            '\'' => '’',
            c => c,
        })
        .collect()
}

/// One CSV item: bare when it is only ASCII letters, digits and `-`, else quoted.
fn item(value: &str) -> String {
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        value.to_owned()
    } else {
        format!("\"{}\"", clean(value).replace('"', "\"\""))
    }
}

macro_rules! row {
    ($($x:expr),* $(,)?) => { vec![$(($x).to_string()),*] };
}

/// A CSV notice being written: its data records, numbered when finished.
#[derive(Debug)]
struct Csv {
    id: &'static str,
    records: Vec<Vec<String>>,
}

impl Csv {
    fn new(id: &'static str) -> Csv {
        Csv {
            id,
            records: Vec::new(),
        }
    }

    /// A data record `<ID>,<kind>,<items…>`.
    fn push(&mut self, kind: &str, items: Vec<String>) {
        let mut record = Vec::with_capacity(items.len() + 2);
        record.push(self.id.to_owned());
        record.push(kind.to_owned());
        record.extend(items);
        self.records.push(record);
    }

    fn finish(self, issuer: &Issuer) -> Document {
        let (kind_id, title, data_type) = kind(self.id);
        let mut text = format!(
            "1,1,0,{},{data_type},0,0,{},0,7,{},0\r\n",
            self.records.len(),
            item(&issuer.office_number),
            issuer.month
        );
        for (i, record) in self.records.iter().enumerate() {
            text.push_str(&format!("2,{}", i + 2));
            for value in record {
                text.push(',');
                text.push_str(&item(value));
            }
            text.push_str("\r\n");
        }
        text.push_str(&format!("3,{}\r\n", self.records.len() + 2));
        Document {
            kind_id,
            title,
            media_type: CSV,
            bytes: cp932(&text),
        }
    }
}

/// The H1 record shared by 7211, 7411 and 7521: 事業所番号, 事業所名, 審査年月, 作成年月日, 頁,
/// 国保連合会名.
fn header8(csv: &mut Csv, issuer: &Issuer) {
    csv.push(
        "H1",
        row![
            issuer.office_number,
            issuer.office_name(),
            issuer.month,
            issuer.created(),
            1,
            issuer.federation(),
        ],
    );
}

/// Counts and units of one 7211 group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Group {
    count: i64,
    units: i64,
}

impl Group {
    fn add(&mut self, units: i64) {
        self.count += 1;
        self.units += units;
    }

    fn plus(self, other: Group) -> Group {
        Group {
            count: self.count + other.count,
            units: self.units + other.units,
        }
    }

    /// 件数 介護, 件数 特定入所者, 単位数 介護, 特定入所者介護費等.
    fn items(self) -> Vec<String> {
        row![self.count, 0, self.units, 0]
    }
}

/// 返戻, 査定増減, 保留, 保留復活.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Groups([Group; 4]);

impl Groups {
    fn plus(self, o: Groups) -> Groups {
        let [a, b, c, d] = self.0;
        let [e, f, g, h] = o.0;
        Groups([a.plus(e), b.plus(f), c.plus(g), d.plus(h)])
    }

    fn items(self) -> Vec<String> {
        self.0.iter().flat_map(|g| g.items()).collect()
    }
}

fn units_i64(u: u64) -> i64 {
    i64::try_from(u).unwrap_or(i64::MAX)
}

/// 7211: H1; one D1 per (保険者番号, サービス提供年月) with any 返戻/査定/保留/保留復活 of a
/// `請`/`サ` statement; T1 with 請求差 and the group totals.
fn write_7211(issuer: &Issuer, reviewed: &[Reviewed]) -> Document {
    let mut rows: BTreeMap<(String, String), Groups> = BTreeMap::new();
    for r in reviewed.iter().filter(|r| r.kind != Kind::Benefit) {
        let g = rows
            .entry((r.insurer8(), r.service_month.clone()))
            .or_default();
        let units = units_i64(r.units);
        match r.decision {
            Decision::Returned => g.0[0].add(units),
            Decision::Assessed => g.0[1].add(r.adjustment),
            Decision::Held => g.0[2].add(units),
            Decision::Accepted if r.revived => g.0[3].add(units),
            Decision::Accepted => {}
        }
    }
    rows.retain(|_, g| g.0.iter().any(|x| x.count > 0));
    let mut csv = Csv::new("7211");
    header8(&mut csv, issuer);
    let mut total = Groups::default();
    for ((insurer, month), g) in &rows {
        let mut items = row![insurer, month];
        items.extend(g.items());
        csv.push("D1", items);
        total = total.plus(*g);
    }
    let [returned, assessed, held, _] = total.0;
    let diff_count = -(returned.count + held.count);
    let diff_units = -(returned.units + held.units) + assessed.units;
    let mut items = row![diff_count, 0, diff_units, 0];
    items.extend(total.items());
    csv.push("T1", items);
    csv.finish(issuer)
}

/// 7311: H1 (with 審査委員会名, 連絡事項) and one D1 per 査定.
fn write_7311(issuer: &Issuer, reviewed: &[Reviewed]) -> Document {
    let mut csv = Csv::new("7311");
    csv.push(
        "H1",
        row![
            issuer.office_number,
            issuer.office_name(),
            issuer.month,
            issuer.created(),
            1,
            issuer.federation(),
            "介護給付費等審査委員会",
            "",
        ],
    );
    for r in reviewed.iter().filter(|r| r.decision == Decision::Assessed) {
        csv.push(
            "D1",
            row![
                r.insurer8(),
                r.insured,
                kana_name(&r.insured),
                r.service_month,
                r.service_type,
                r.service_code.get(2..).unwrap_or(""),
                r.adjustment,
                r.reason_code.as_deref().unwrap_or("D"),
                r.content,
                assessment_detail(r),
            ],
        );
    }
    csv.finish(issuer)
}

/// 7411: H1 and one D1 per returned or held statement.
fn write_7411(issuer: &Issuer, reviewed: &[Reviewed]) -> Document {
    let mut csv = Csv::new("7411");
    header8(&mut csv, issuer);
    for r in reviewed
        .iter()
        .filter(|r| matches!(r.decision, Decision::Returned | Decision::Held))
    {
        let (number, name) = if r.kind == Kind::Benefit {
            (
                r.planner.clone(),
                format!("居宅介護支援事業所{}", full_width(&r.planner)),
            )
        } else {
            (r.insurer6().to_owned(), insurer_name(&r.insurer))
        };
        csv.push(
            "D1",
            row![
                number,
                name,
                r.insured,
                kana_name(&r.insured),
                r.kind,
                r.service_month,
                r.service_type,
                r.units,
                r.reason_code.as_deref().unwrap_or(""),
                r.content,
                if r.decision == Decision::Held {
                    "保留"
                } else {
                    ""
                },
                r.service_code,
            ],
        );
    }
    csv.finish(issuer)
}

/// The text お知らせ of the month-end run (CP932, CRLF lines).
fn write_notice_text(issuer: &Issuer, reviewed: &[Reviewed]) -> Document {
    let count = |kind: Option<Kind>, decision: Decision| {
        reviewed
            .iter()
            .filter(|r| r.decision == decision && kind.is_none_or(|k| r.kind == k))
            .count()
    };
    let m = wareki_month(issuer.month.year, issuer.month.month);
    let assessed: i64 = reviewed.iter().map(|r| r.adjustment).sum();
    let lines = [
        format!("{m}審査分の返戻件数と支払予定日のお知らせ"),
        String::new(),
        format!("事業所番号：{}", issuer.office_number),
        format!("事業所名：{}", clean(&issuer.office_name())),
        format!("審査年月：{m}（{}）", issuer.month),
        format!("作成年月日：{}", wareki_date(issuer.created)),
        String::new(),
        format!("{m}審査分の審査結果をお知らせします。"),
        format!("　審査件数：{}件", reviewed.len()),
        format!(
            "　返戻件数：{}件（請求明細書 {}件、給付管理票 {}件、計画費明細書 {}件）",
            count(None, Decision::Returned),
            count(Some(Kind::Claim), Decision::Returned),
            count(Some(Kind::Benefit), Decision::Returned),
            count(Some(Kind::Plan), Decision::Returned),
        ),
        format!("　保留件数：{}件", count(None, Decision::Held)),
        format!(
            "　査定件数：{}件（増減単位数 {assessed}）",
            count(None, Decision::Assessed)
        ),
        format!("　支払予定日：{}", wareki_date(transfer_date(issuer.month))),
        String::new(),
        "詳しくは介護保険審査決定増減表、審査増減単位数通知書、\
         請求明細書・給付管理票返戻（保留）一覧表をご覧ください。"
            .to_owned(),
        issuer.federation(),
    ];
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push_str("\r\n");
    }
    let (kind_id, title, _) = kind(KIND_TEXT);
    Document {
        kind_id,
        title,
        media_type: TEXT,
        bytes: cp932(&text),
    }
}

/// The month-end set for one office: 7211, 7311, 7411 and the お知らせ (always all four, even
/// without a detail row).
pub fn month_end_documents(issuer: &Issuer, reviewed: &[Reviewed]) -> Vec<Document> {
    vec![
        write_7211(issuer, reviewed),
        write_7311(issuer, reviewed),
        write_7411(issuer, reviewed),
        write_notice_text(issuer, reviewed),
    ]
}

/// Amounts of one 7521 line or trailer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    pub count: i64,
    pub days: i64,
    pub units: i64,
    /// 金額 = units × [`YEN_PER_UNIT`].
    pub amount: i64,
    /// 介護給付費 = ⌊金額 × [`BENEFIT_PERCENT`] / 100⌋ per statement.
    pub benefit: i64,
}

impl Amounts {
    fn of(r: &Reviewed) -> Amounts {
        let units = units_i64(r.paid_units());
        let amount = units.saturating_mul(YEN_PER_UNIT as i64);
        Amounts {
            count: 1,
            days: units_i64(r.days),
            units,
            amount,
            benefit: amount.saturating_mul(BENEFIT_PERCENT as i64) / 100,
        }
    }

    fn add(&mut self, o: Amounts) {
        self.count += o.count;
        self.days += o.days;
        self.units += o.units;
        self.amount += o.amount;
        self.benefit += o.benefit;
    }

    fn minus(self, o: Amounts) -> Amounts {
        Amounts {
            count: self.count - o.count,
            days: self.days - o.days,
            units: self.units - o.units,
            amount: self.amount - o.amount,
            benefit: self.benefit - o.benefit,
        }
    }

    /// 件数, 日数, 単位数, 金額, 介護給付費, then 特定入所者 件数, 日数, 費用額, 給付費 (all 0).
    fn items(self) -> Vec<String> {
        row![
            self.count,
            self.days,
            self.units,
            self.amount,
            self.benefit,
            0,
            0,
            0,
            0
        ]
    }
}

/// A paid statement is also a 過誤 (7611) when its 被保険者番号 ends in `5`.
pub fn is_kago(r: &Reviewed) -> bool {
    r.is_paid() && r.insured.ends_with('5')
}

/// The payment totals of one office: (T1 合計, T2 過誤調整, T3 支払決定 = T1 − T2).
pub fn payment_totals(reviewed: &[Reviewed]) -> (Amounts, Amounts, Amounts) {
    let mut total = Amounts::default();
    let mut kago = Amounts::default();
    for r in reviewed.iter().filter(|r| r.is_paid()) {
        total.add(Amounts::of(r));
        if is_kago(r) {
            kago.add(Amounts::of(r));
        }
    }
    (total, kago, total.minus(kago))
}

/// 7513: the single H1 of the payment advice.
fn write_7513(issuer: &Issuer, reviewed: &[Reviewed]) -> Document {
    let (_, _, paid) = payment_totals(reviewed);
    let pay = paid.benefit;
    let mut csv = Csv::new("7513");
    csv.push(
        "H1",
        row![
            issuer.month,
            "100",
            "0001",
            format!(
                "{}中央一丁目１番１号",
                prefecture(&issuer.office_number).unwrap_or("")
            ),
            issuer.office_name(),
            "開設者　介護太郎",
            issuer.office_number,
            pay, // 振込金額
            pay, // 介護給付費支払額
            0,   // 主治医意見書作成料
            0,   // 同消費税
            0,   // 認定調査費委託料
            0,   // 同消費税
            0,   // 総合事業費支払額
            0,   // 電子証明書発行手数料
            pay, // 合計金額
            "模擬銀行",
            "本店",
            yyyymmdd(transfer_date(issuer.month)),
            issuer.federation(),
        ],
    );
    csv.finish(issuer)
}

/// 7521: H1; D1 per (保険者番号, サービス提供年月, サービス種類) of the paid statements; T1 合計,
/// T2 過誤調整, T3 支払決定.
fn write_7521(issuer: &Issuer, reviewed: &[Reviewed]) -> Document {
    let mut rows: BTreeMap<(String, String, String), Amounts> = BTreeMap::new();
    for r in reviewed.iter().filter(|r| r.is_paid()) {
        rows.entry((
            r.insurer8(),
            r.service_month.clone(),
            r.service_type.clone(),
        ))
        .or_default()
        .add(Amounts::of(r));
    }
    let mut csv = Csv::new("7521");
    header8(&mut csv, issuer);
    for ((insurer, month, service_type), a) in &rows {
        let mut items = row![
            insurer,
            month,
            service_type,
            service_type_name(service_type)
        ];
        items.extend(a.items());
        csv.push("D1", items);
    }
    let (t1, t2, t3) = payment_totals(reviewed);
    csv.push("T1", t1.items());
    csv.push("T2", t2.items());
    csv.push("T3", t3.items());
    csv.finish(issuer)
}

/// 7611: H1; D1 per 過誤 statement (単位数, 保険者負担額 = its 介護給付費, positive = recovered);
/// T1 件数, 単位数, 保険者負担額 and three 0 items.
fn write_7611(issuer: &Issuer, reviewed: &[Reviewed]) -> Document {
    let mut csv = Csv::new("7611");
    csv.push(
        "H1",
        row![
            issuer.month,
            issuer.office_number,
            issuer.office_name(),
            issuer.created(),
            1,
            issuer.federation(),
        ],
    );
    let mut total = Amounts::default();
    for r in reviewed.iter().filter(|r| is_kago(r)) {
        let a = Amounts::of(r);
        total.add(a);
        csv.push(
            "D1",
            row![
                r.insurer8(),
                insurer_name(&r.insurer),
                r.insured,
                kana_name(&r.insured),
                r.service_month,
                r.service_type,
                service_type_name(&r.service_type),
                "1002",
                "請求誤りによる実績の取下げ",
                a.units,
                a.benefit,
            ],
        );
    }
    csv.push("T1", row![total.count, total.units, total.benefit, 0, 0, 0]);
    csv.finish(issuer)
}

/// 7621: H1 (with 審査委員会名); D1 per 査定 (再審査結果 01 原審どおり); T1 totals.
fn write_7621(issuer: &Issuer, reviewed: &[Reviewed]) -> Document {
    let mut csv = Csv::new("7621");
    csv.push(
        "H1",
        row![
            issuer.month,
            issuer.office_number,
            issuer.office_name(),
            issuer.created(),
            1,
            issuer.federation(),
            "介護給付費等審査委員会",
        ],
    );
    let (mut count, mut first, mut original, mut claimed, mut decided) =
        (0i64, 0i64, 0i64, 0i64, 0i64);
    for r in reviewed.iter().filter(|r| r.decision == Decision::Assessed) {
        let (units, paid) = (units_i64(r.units), units_i64(r.paid_units()));
        count += 1;
        first += units;
        original += paid;
        claimed += units;
        decided += paid;
        csv.push(
            "D1",
            row![
                r.insurer8(),
                insurer_name(&r.insurer),
                r.insured,
                kana_name(&r.insured),
                r.service_month,
                r.service_type,
                r.service_code,
                "0101",
                "査定（算定回数）に対する再審査申立",
                "01",
                units, // 当初請求単位数
                paid,  // 原審単位数
                units, // 申立単位数
                paid,  // 決定単位数
                0,     // 調整単位数
                0,     // 保険者負担額
            ],
        );
    }
    // 件数, 当初請求, 原審, 申立, 決定, 調整, 保険者負担額, 件数 per 結果コード 01–05, 調整単位数
    // per 結果コード 01–05, 予備.
    csv.push(
        "T1",
        row![
            count, first, original, claimed, decided, 0, 0, count, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ],
    );
    csv.finish(issuer)
}

/// The payment set for one office: 7513, 7521, 7611 (only with a 過誤), 7621 (only with a 査定)
/// and the PDF advice; nothing when the office has no paid statement.
pub fn payment_documents(issuer: &Issuer, reviewed: &[Reviewed]) -> Vec<Document> {
    if !reviewed.iter().any(Reviewed::is_paid) {
        return Vec::new();
    }
    let mut docs = vec![write_7513(issuer, reviewed), write_7521(issuer, reviewed)];
    if reviewed.iter().any(is_kago) {
        docs.push(write_7611(issuer, reviewed));
    }
    if reviewed.iter().any(|r| r.decision == Decision::Assessed) {
        docs.push(write_7621(issuer, reviewed));
    }
    let (_, _, paid) = payment_totals(reviewed);
    let (kind_id, title, _) = kind(KIND_PDF);
    docs.push(Document {
        kind_id,
        title,
        media_type: PDF,
        bytes: crate::pdf::payment_advice(&crate::pdf::Advice {
            office_number: &issuer.office_number,
            processing_month: issuer.month,
            transfer_date: transfer_date(issuer.month),
            amount: paid.benefit,
            statements: paid.count,
            units: paid.units,
        }),
    });
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> Issuer {
        Issuer {
            office_number: "1379999996".into(),
            office_name: "デモ訪問介護ステーション".into(),
            month: Month::parse("202506").unwrap(),
            created: Date::new(2025, 6, 30).unwrap(),
        }
    }

    fn reviewed(insured: &str, kind: Kind, decision: Decision, units: u64) -> Reviewed {
        Reviewed {
            office_number: "1379999996".into(),
            receipt_id: "R20250603-000001".into(),
            kind,
            id: "7131".into(),
            service_month: "202505".into(),
            insurer: "00139998".into(),
            insured: insured.into(),
            planner: "1379999988".into(),
            units,
            service_type: "11".into(),
            service_code: "111111".into(),
            days: 8,
            decision,
            reason_code: match decision {
                Decision::Accepted => None,
                Decision::Held => Some("C".into()),
                Decision::Assessed => Some("D".into()),
                Decision::Returned => Some("B".into()),
            },
            content: if decision == Decision::Accepted {
                String::new()
            } else {
                "内容, \"引用\"".into()
            },
            adjustment: if decision == Decision::Assessed {
                -i64::try_from(units / 10).unwrap()
            } else {
                0
            },
            resubmission: false,
            revived: false,
        }
    }

    fn sample() -> Vec<Reviewed> {
        let mut revived = reviewed("0000000019", Kind::Claim, Decision::Accepted, 300);
        revived.revived = true;
        let mut other_insurer = reviewed("0000000027", Kind::Claim, Decision::Returned, 700);
        other_insurer.insurer = "00131011".into();
        vec![
            reviewed("0000000010", Kind::Claim, Decision::Accepted, 1000),
            reviewed("0000000015", Kind::Claim, Decision::Accepted, 500),
            reviewed("0000000017", Kind::Claim, Decision::Returned, 2000),
            reviewed("0000000017", Kind::Benefit, Decision::Returned, 2000),
            reviewed("0000000018", Kind::Claim, Decision::Assessed, 1500),
            reviewed("0000000029", Kind::Claim, Decision::Held, 400),
            revived,
            other_insurer,
        ]
    }

    /// Decodes strictly and splits into records of items (quotes removed).
    fn parse(doc: &Document) -> Vec<Vec<String>> {
        let text = encoding_rs::SHIFT_JIS
            .decode_without_bom_handling_and_without_replacement(&doc.bytes)
            .expect("CP932");
        let body = text.strip_suffix("\r\n").expect("final CRLF");
        body.split("\r\n")
            .map(|r| crate::reception::split_items(r).expect("well-formed CSV"))
            .collect()
    }

    /// Items per record after `2,<recno>,` (ID and 帳票レコード種別 included).
    fn shape(doc: &Document) -> Vec<(String, usize)> {
        let recs = parse(doc);
        let n = recs.len();
        assert_eq!(recs[0].len(), 12, "control record");
        assert_eq!(
            recs[0][3].parse::<usize>().unwrap(),
            n - 2,
            "control record counts the data records"
        );
        assert_eq!(recs[0][7], "1379999996");
        assert_eq!((recs[0][9].as_str(), recs[0][10].as_str()), ("7", "202506"));
        assert_eq!(recs[n - 1], vec!["3".to_owned(), n.to_string()]);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r[1], (i + 1).to_string(), "record number");
        }
        recs[1..n - 1]
            .iter()
            .map(|r| {
                assert_eq!(r[0], "2");
                assert_eq!(r[2], doc.kind_id);
                (r[3].clone(), r.len() - 2)
            })
            .collect()
    }

    fn counts(shape: &[(String, usize)]) -> BTreeMap<String, (usize, usize)> {
        let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (k, items) in shape {
            let e = out.entry(k.clone()).or_insert((*items, 0));
            assert_eq!(e.0, *items, "every {k} record has the same item count");
            e.1 += 1;
        }
        out
    }

    /// (kind ID, [(帳票レコード種別, items per record, records)]) expected in one notice.
    type Layout<'a> = (&'a str, &'a [(&'a str, usize, usize)]);

    #[test]
    fn record_layouts_have_the_item_counts_of_the_spec() {
        let docs = month_end_documents(&issuer(), &sample());
        let ids: Vec<&str> = docs.iter().map(|d| d.kind_id).collect();
        assert_eq!(ids, ["7211", "7311", "7411", "TXT1"]);
        let expect: [Layout<'_>; 3] = [
            ("7211", &[("D1", 20, 2), ("H1", 8, 1), ("T1", 22, 1)]),
            ("7311", &[("D1", 12, 1), ("H1", 10, 1)]),
            ("7411", &[("D1", 14, 4), ("H1", 8, 1)]),
        ];
        for ((id, want), doc) in expect.iter().zip(&docs) {
            assert_eq!(doc.kind_id, *id);
            assert_eq!(doc.media_type, CSV);
            let got = counts(&shape(doc));
            let want: BTreeMap<String, (usize, usize)> = want
                .iter()
                .map(|(k, items, n)| ((*k).to_owned(), (*items, *n)))
                .collect();
            assert_eq!(got, want, "{id}");
        }
        let docs = payment_documents(&issuer(), &sample());
        let ids: Vec<&str> = docs.iter().map(|d| d.kind_id).collect();
        assert_eq!(ids, ["7513", "7521", "7611", "7621", "PDF1"]);
        let expect: [Layout<'_>; 4] = [
            ("7513", &[("H1", 22, 1)]),
            (
                "7521",
                &[
                    ("D1", 15, 1),
                    ("H1", 8, 1),
                    ("T1", 11, 1),
                    ("T2", 11, 1),
                    ("T3", 11, 1),
                ],
            ),
            ("7611", &[("D1", 13, 1), ("H1", 8, 1), ("T1", 8, 1)]),
            ("7621", &[("D1", 18, 1), ("H1", 9, 1), ("T1", 20, 1)]),
        ];
        for ((id, want), doc) in expect.iter().zip(&docs) {
            assert_eq!(doc.kind_id, *id);
            let got = counts(&shape(doc));
            let want: BTreeMap<String, (usize, usize)> = want
                .iter()
                .map(|(k, items, n)| ((*k).to_owned(), (*items, *n)))
                .collect();
            assert_eq!(got, want, "{id}");
        }
        assert_eq!(docs[4].media_type, PDF);
    }

    #[test]
    fn month_end_values() {
        let docs = month_end_documents(&issuer(), &sample());
        let r7211 = parse(&docs[0]);
        // H1.
        assert_eq!(
            r7211[1][4..],
            [
                "1379999996",
                "デモ訪問介護ステーション",
                "202506",
                "20250630",
                "1",
                "東京都国民健康保険団体連合会"
            ]
        );
        // D1 00131011: one 返戻 of 700 units; D1 00139998: 返戻 2000, 査定 −150, 保留 400,
        // 保留復活 300 (the 給 return is not counted).
        assert_eq!(r7211[2][4..6], ["00131011", "202505"]);
        assert_eq!(
            r7211[2][6..],
            [
                "1", "0", "700", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0"
            ]
        );
        assert_eq!(r7211[3][4..6], ["00139998", "202505"]);
        assert_eq!(
            r7211[3][6..],
            [
                "1", "0", "2000", "0", "1", "0", "-150", "0", "1", "0", "400", "0", "1", "0",
                "300", "0"
            ]
        );
        // T1: 請求差 −3 件, −(2700 + 400) − 150 units; then the totals.
        assert_eq!(
            r7211[4][4..],
            [
                "-3", "0", "-3250", "0", "2", "0", "2700", "0", "1", "0", "-150", "0", "1", "0",
                "400", "0", "1", "0", "300", "0"
            ]
        );

        let r7311 = parse(&docs[1]);
        assert_eq!(
            r7311[2][4..],
            [
                "00139998",
                "0000000018",
                "ｽｽﾞｷ ﾊﾅｺ",
                "202505",
                "11",
                "1111",
                "-150",
                "D",
                "内容, \"引用\"",
                "確定単位数(1350)、請求単位数(1500)"
            ]
        );

        let r7411 = parse(&docs[2]);
        let rows: Vec<&[String]> = r7411[2..r7411.len() - 1].iter().map(|r| &r[4..]).collect();
        assert_eq!(
            rows[0][..4],
            [
                "139998",
                "東京都保険者１３９９９８",
                "0000000017",
                "ｽｽﾞｷ ﾊﾅｺ"
            ]
        );
        assert_eq!(
            rows[0][4..10],
            ["請", "202505", "11", "2000", "B", "内容, \"引用\""]
        );
        assert_eq!(rows[0][10..], ["", "111111"]);
        assert_eq!(
            rows[1][..2],
            ["1379999988", "居宅介護支援事業所１３７９９９９９８８"]
        );
        assert_eq!(rows[1][4], "給");
        assert_eq!((rows[2][8].as_str(), rows[2][10].as_str()), ("C", "保留"));
        assert_eq!(rows[3][0], "131011");

        // Quoting: kanji, kana with a space, commas and quotes are quoted; numbers are bare.
        let raw = String::from_utf8_lossy(&docs[2].bytes).into_owned();
        assert!(
            raw.starts_with("1,1,0,5,741,0,0,1379999996,0,7,202506,0\r\n2,2,7411,H1,1379999996,")
        );
        let text = encoding_rs::SHIFT_JIS.decode(&docs[2].bytes).0;
        assert!(
            text.contains(",\"内容, \"\"引用\"\"\",,111111\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n3,7\r\n"));

        let notice = encoding_rs::SHIFT_JIS
            .decode_without_bom_handling_and_without_replacement(&docs[3].bytes)
            .unwrap();
        assert_eq!(docs[3].media_type, TEXT);
        assert!(notice.starts_with("令和7年6月審査分の返戻件数と支払予定日のお知らせ\r\n"));
        assert!(
            notice.contains("返戻件数：3件（請求明細書 2件、給付管理票 1件、計画費明細書 0件）")
        );
        assert!(notice.contains("支払予定日：令和7年7月20日\r\n"));
        assert!(notice.ends_with("東京都国民健康保険団体連合会\r\n"));
        assert!(!notice.replace("\r\n", "").contains(['\r', '\n']));
    }

    #[test]
    fn an_empty_review_still_gives_the_month_end_set_but_no_payment() {
        let docs = month_end_documents(&issuer(), &[]);
        assert_eq!(docs.len(), 4);
        assert_eq!(counts(&shape(&docs[0]))["T1"], (22, 1));
        assert!(!counts(&shape(&docs[2])).contains_key("D1"));
        assert!(payment_documents(&issuer(), &[]).is_empty());
        let only_returns = vec![reviewed("0000000017", Kind::Claim, Decision::Returned, 10)];
        assert!(payment_documents(&issuer(), &only_returns).is_empty());
        // A paid statement without 過誤 or 査定: no 7611, no 7621.
        let plain = vec![reviewed("0000000010", Kind::Claim, Decision::Accepted, 10)];
        let ids: Vec<&str> = payment_documents(&issuer(), &plain)
            .iter()
            .map(|d| d.kind_id)
            .collect();
        assert_eq!(ids, ["7513", "7521", "PDF1"]);
    }

    #[test]
    fn payment_values() {
        let docs = payment_documents(&issuer(), &sample());
        // Paid: 1000 + 500 + (1500 − 150) + 300 = 3150 units; 過誤: the ...15 one (500 units).
        let r7521 = parse(&docs[1]);
        let t = |k: &str| -> Vec<i64> {
            r7521
                .iter()
                .find(|r| r.get(3).map(String::as_str) == Some(k))
                .unwrap()[4..]
                .iter()
                .map(|v| v.parse().unwrap())
                .collect()
        };
        assert_eq!(r7521[2][4..8], ["00139998", "202505", "11", "訪問介護"]);
        assert_eq!(t("T1"), vec![4, 32, 3150, 31500, 28350, 0, 0, 0, 0]);
        assert_eq!(t("T2"), vec![1, 8, 500, 5000, 4500, 0, 0, 0, 0]);
        assert_eq!(t("T3"), vec![3, 24, 2650, 26500, 23850, 0, 0, 0, 0]);
        let r7513 = parse(&docs[0]);
        let h1 = &r7513[1];
        assert_eq!(h1[4], "202506");
        assert_eq!(
            (h1[11].as_str(), h1[12].as_str(), h1[19].as_str()),
            ("23850", "23850", "23850")
        );
        assert_eq!(h1[22], "20250720");
        let r7611 = parse(&docs[2]);
        assert_eq!(r7611[2][6], "0000000015");
        assert_eq!(r7611[2][13..], ["500", "4500"]);
        assert_eq!(r7611[3][4..7], ["1", "500", "4500"]);
        let r7621 = parse(&docs[3]);
        assert_eq!(
            r7621[2][13..],
            ["01", "1500", "1350", "1500", "1350", "0", "0"]
        );
        assert_eq!(
            counts(&shape(&docs[3])),
            BTreeMap::from([
                ("D1".to_owned(), (18, 1)),
                ("H1".to_owned(), (9, 1)),
                ("T1".to_owned(), (20, 1))
            ])
        );
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        assert_eq!(
            month_end_documents(&issuer(), &sample()),
            month_end_documents(&issuer(), &sample())
        );
        assert_eq!(
            payment_documents(&issuer(), &sample()),
            payment_documents(&issuer(), &sample())
        );
    }

    #[test]
    fn names_and_text_helpers() {
        assert_eq!(kana_name("0000000010"), "ｽｽﾞｷ ﾊﾅｺ");
        assert_eq!(kana_name("0000000123"), "ﾀﾅｶ ﾀﾛｳ");
        assert_eq!(kana_name(""), "ﾌﾒｲ");
        let kana = kana_name("0000000999");
        let (bytes, _, bad) = encoding_rs::SHIFT_JIS.encode(&kana);
        assert!(!bad);
        assert!(
            bytes
                .iter()
                .all(|b| b.is_ascii() || (0xA1..=0xDF).contains(b)),
            "半角"
        );
        assert_eq!(
            federation_name("2710000000"),
            "大阪府国民健康保険団体連合会"
        );
        assert_eq!(federation_name("9910000000"), "国民健康保険団体連合会");
        assert_eq!(insurer_name("00131011"), "東京都保険者１３１０１１");
        assert_eq!(wareki_month(2019, 5), "令和元年5月");
        assert_eq!(wareki_month(2019, 4), "平成31年4月");
        assert_eq!(
            transfer_date(Month::parse("202512").unwrap()),
            Date::new(2026, 1, 20).unwrap()
        );
        assert_eq!(cp932("a😀b"), b"a\x81\xacb".to_vec());
        assert_eq!(clean("a'b\r"), "a’b ");
        assert_eq!(item("-150"), "-150");
        assert_eq!(item("a b"), "\"a b\"");
        assert_eq!(item(""), "");
    }
}
