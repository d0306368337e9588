//! Reading the federation's notices (claim-format.md §6.2): which kind an ID is, its Japanese
//! title, the Japanese column names of each record (H1 header, D1 detail, T1–T3 trailers), and
//! the parse of a CSV notice into typed rows, plus the typed 7411 返戻 and 7311 査定 rows the
//! returns tracker works from.
//!
//! Invariant: pure and lossless. Nothing here touches files, the network or the clock; the
//! original bytes are never changed (a parse reads them, a UTF-8 download transcodes them), and
//! a row that does not fit its layout is still shown, with its extra items named by position and
//! the mismatch reported, never dropped.

use serde::{Deserialize, Serialize};

use crate::claim::Month;
use crate::claim::records::{decode_cp932, items, lines};

/// Which monthly cycle a notice belongs to (for the "expected notice missing" alert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// 返戻系: issued at the end of the 審査 month (7211, 7311, 7411…).
    Returns,
    /// 支払系: issued in the middle of the next month (7513, 7521, 7611, 7621…).
    Payment,
    /// Anything else (お知らせ, printable forms).
    Other,
}

/// One record layout: its 帳票レコード種別 and its column names, item 1 (the ID) included.
#[derive(Debug)]
pub struct Layout {
    /// `H1`, `D1`, `T1`…
    pub record: &'static str,
    /// Column names, one per item.
    pub columns: &'static [&'static str],
}

/// A notice kind the appliance knows.
#[derive(Debug)]
pub struct Kind {
    /// 交換情報識別番号, e.g. `7411`.
    pub id: &'static str,
    /// Japanese title.
    pub title_ja: &'static str,
    /// English title.
    pub title_en: &'static str,
    /// Its cycle.
    pub group: Group,
    /// Its record layouts.
    pub layouts: &'static [Layout],
}

const ID: &str = "交換情報識別番号";
const REC: &str = "帳票レコード種別";

/// H1 of the 7211, 7411 and 7521 families.
const HEAD_8: &[&str] = &[
    ID,
    REC,
    "事業所番号",
    "事業所名",
    "審査年月",
    "作成年月日",
    "頁",
    "国保連合会名",
];

const GROUPS_7211: [&str; 16] = [
    "返戻_件数_介護",
    "返戻_件数_特定入所者",
    "返戻_単位数_介護",
    "返戻_特定入所者介護費等",
    "査定増減_件数_介護",
    "査定増減_件数_特定入所者",
    "査定増減_単位数_介護",
    "査定増減_特定入所者介護費等",
    "保留_件数_介護",
    "保留_件数_特定入所者",
    "保留_単位数_介護",
    "保留_特定入所者介護費等",
    "保留復活_件数_介護",
    "保留復活_件数_特定入所者",
    "保留復活_単位数_介護",
    "保留復活_特定入所者介護費等",
];

macro_rules! cols {
    ($($head:expr),* ; $groups:expr) => {{
        const HEAD: &[&str] = &[$($head),*];
        const N: usize = HEAD.len() + 16;
        const OUT: [&str; N] = {
            let mut out = [""; N];
            let mut i = 0;
            while i < HEAD.len() {
                out[i] = HEAD[i];
                i += 1;
            }
            let mut j = 0;
            while j < 16 {
                out[HEAD.len() + j] = $groups[j];
                j += 1;
            }
            out
        };
        &OUT
    }};
}

/// The amounts of a 7521 total (T1 合計, T2 過誤調整, T3 支払決定).
const TOTALS_7521: &[&str] = &[
    ID,
    REC,
    "件数",
    "日数",
    "単位数",
    "金額",
    "介護給付費",
    "特定入所者_件数",
    "特定入所者_日数",
    "特定入所者_費用額",
    "特定入所者_給付費",
];

const D1_7521: &[&str] = &[
    ID,
    REC,
    "保険者番号",
    "サービス提供年月",
    "サービス種類コード",
    "サービス種類名",
    "件数",
    "日数",
    "単位数",
    "金額",
    "介護給付費",
    "特定入所者_件数",
    "特定入所者_日数",
    "特定入所者_費用額",
    "特定入所者_給付費",
];

/// Every notice kind of claim-format.md §6.2 the appliance reads as a table. 総合事業 kinds
/// (7221, 7421, 7541, 7631) share the layouts of their 介護 counterparts.
pub static KINDS: &[Kind] = &[
    Kind {
        id: "7211",
        title_ja: "介護保険審査決定増減表",
        title_en: "examination result increase/decrease table",
        group: Group::Returns,
        layouts: &[
            Layout {
                record: "H1",
                columns: HEAD_8,
            },
            Layout {
                record: "D1",
                columns: cols!(ID, REC, "保険者番号", "サービス提供年月"; GROUPS_7211),
            },
            Layout {
                record: "T1",
                columns: cols!(
                    ID, REC, "請求差_件数_介護", "請求差_件数_特定入所者",
                    "請求差_単位数_介護", "請求差_特定入所者介護費等"; GROUPS_7211
                ),
            },
        ],
    },
    Kind {
        id: "7311",
        title_ja: "介護保険審査増減単位数通知書",
        title_en: "notice of units changed by examination (査定)",
        group: Group::Returns,
        layouts: &[
            Layout {
                record: "H1",
                columns: &[
                    ID,
                    REC,
                    "事業所番号",
                    "事業所名",
                    "審査年月",
                    "作成年月日",
                    "頁",
                    "国保連合会名",
                    "委員会名",
                    "連絡事項",
                ],
            },
            Layout {
                record: "D1",
                columns: &[
                    ID,
                    REC,
                    "保険者番号",
                    "被保険者番号",
                    "カナ氏名",
                    "サービス提供年月",
                    "サービス種類",
                    "サービス項目",
                    "増減単位数",
                    "事由",
                    "内容1",
                    "内容2",
                ],
            },
        ],
    },
    Kind {
        id: "7411",
        title_ja: "請求明細書・給付管理票返戻（保留）一覧表",
        title_en: "list of returned (held) statements and benefit plans",
        group: Group::Returns,
        layouts: &[
            Layout {
                record: "H1",
                columns: HEAD_8,
            },
            Layout {
                record: "D1",
                columns: &[
                    ID,
                    REC,
                    "保険者番号",
                    "保険者名",
                    "被保険者番号",
                    "カナ氏名",
                    "種別",
                    "サービス提供年月",
                    "サービス種類",
                    "単位数",
                    "事由",
                    "内容",
                    "備考",
                    "サービス項目コード等",
                ],
            },
        ],
    },
    Kind {
        id: "7513",
        title_ja: "介護給付費等支払決定額通知書",
        title_en: "notice of payment amounts",
        group: Group::Payment,
        layouts: &[Layout {
            record: "H1",
            columns: &[
                ID,
                REC,
                "審査年月",
                "郵便番号_3桁",
                "郵便番号_4桁",
                "住所",
                "事業所名",
                "開設者氏名",
                "事業所番号",
                "振込金額",
                "介護給付費支払額",
                "主治医意見書作成料",
                "主治医意見書作成料_消費税",
                "認定調査費委託料",
                "認定調査費委託料_消費税",
                "総合事業費支払額",
                "電子証明書発行手数料",
                "合計金額",
                "金融機関名",
                "支店名",
                "作成年月日",
                "国保連合会名",
            ],
        }],
    },
    Kind {
        id: "7521",
        title_ja: "介護給付費支払決定額内訳書",
        title_en: "breakdown of payment amounts",
        group: Group::Payment,
        layouts: &[
            Layout {
                record: "H1",
                columns: HEAD_8,
            },
            Layout {
                record: "D1",
                columns: D1_7521,
            },
            Layout {
                record: "T1",
                columns: TOTALS_7521,
            },
            Layout {
                record: "T2",
                columns: TOTALS_7521,
            },
            Layout {
                record: "T3",
                columns: TOTALS_7521,
            },
        ],
    },
    Kind {
        id: "7611",
        title_ja: "介護給付費過誤決定通知書（事業所）",
        title_en: "notice of correction (過誤) decisions",
        group: Group::Payment,
        layouts: &[
            Layout {
                record: "H1",
                columns: &[
                    ID,
                    REC,
                    "取扱年月",
                    "事業所番号",
                    "事業所名",
                    "作成年月日",
                    "頁",
                    "国保連合会名",
                ],
            },
            Layout {
                record: "D1",
                columns: &[
                    ID,
                    REC,
                    "証記載保険者番号",
                    "保険者名",
                    "被保険者番号",
                    "カナ氏名",
                    "サービス提供年月",
                    "サービス種類コード",
                    "サービス種類名",
                    "過誤申立事由コード",
                    "事由",
                    "単位数",
                    "保険者負担額",
                ],
            },
            Layout {
                record: "T1",
                columns: &[
                    ID,
                    REC,
                    "件数",
                    "単位数",
                    "保険者負担額",
                    "予備1",
                    "予備2",
                    "予備3",
                ],
            },
        ],
    },
    Kind {
        id: "7621",
        title_ja: "介護給付費再審査決定通知書（事業所）",
        title_en: "notice of re-examination decisions",
        group: Group::Payment,
        layouts: &[
            Layout {
                record: "H1",
                columns: &[
                    ID,
                    REC,
                    "取扱年月",
                    "事業所番号",
                    "事業所名",
                    "作成年月日",
                    "頁",
                    "国保連合会名",
                    "審査委員会名",
                ],
            },
            Layout {
                record: "D1",
                columns: &[
                    ID,
                    REC,
                    "証記載保険者番号",
                    "保険者名",
                    "被保険者番号",
                    "カナ氏名",
                    "サービス提供年月",
                    "サービス種類コード",
                    "サービス種類名",
                    "再審査申立事由コード",
                    "事由",
                    "再審査結果コード",
                    "当初請求単位数",
                    "原審単位数",
                    "申立単位数",
                    "決定単位数",
                    "調整単位数",
                    "保険者負担額",
                ],
            },
            Layout {
                record: "T1",
                columns: &[
                    ID,
                    REC,
                    "件数",
                    "当初請求単位数",
                    "原審単位数",
                    "申立単位数",
                    "決定単位数",
                    "調整単位数",
                    "保険者負担額",
                    "件数_原審どおり",
                    "件数_全部増点",
                    "件数_全部減点",
                    "件数_一部増点",
                    "件数_一部減点",
                    "調整単位数_原審どおり",
                    "調整単位数_全部増点",
                    "調整単位数_全部減点",
                    "調整単位数_一部増点",
                    "調整単位数_一部減点",
                    "予備",
                ],
            },
        ],
    },
];

/// The kind with this ID; the 総合事業 IDs map to their 介護 counterparts' layouts.
pub fn kind(id: &str) -> Option<&'static Kind> {
    let id = match id {
        "7221" => "7211",
        "7421" => "7411",
        "7541" => "7521",
        "7631" => "7611",
        other => other,
    };
    KINDS.iter().find(|k| k.id == id)
}

/// The cycle a kind ID belongs to.
pub fn group(kind_id: &str) -> Group {
    kind(kind_id).map_or(Group::Other, |k| k.group)
}

/// One data record of a notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Its record number (レコード番号) in the file.
    pub record_no: u32,
    /// `H1`, `D1`, `T1`…
    pub record: String,
    /// `(column name, value)` per item, the ID first. Items beyond the layout are named
    /// `項目N`.
    pub cells: Vec<(String, String)>,
}

impl Row {
    /// The value of a column, by its Japanese name.
    pub fn get(&self, column: &str) -> Option<&str> {
        self.cells
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, v)| v.as_str())
    }
}

/// A CSV notice read into rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parsed {
    /// 交換情報識別番号 of its data records.
    pub kind_id: String,
    /// 処理対象年月 of the control record, when readable.
    pub processing_month: Option<Month>,
    /// 事業所番号 of the control record.
    pub office_number: Option<String>,
    /// Every data record, in file order.
    pub rows: Vec<Row>,
    /// What did not fit (a row with more or fewer items than its layout, a record count that
    /// does not match…), in Japanese and English. The rows are shown regardless.
    pub problems: Vec<String>,
}

/// Why a notice cannot be read as a table at all (it is still stored and downloadable as is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not CP932.
    #[error(
        "通知が Shift_JIS (CP932) として読めません（{offset} バイト目） (not CP932 at byte {offset})"
    )]
    Encoding { offset: usize },
    /// No control/data/end envelope.
    #[error("通知の形式が不正です: {0} (not a notice file: {0})")]
    Envelope(String),
}

/// Reads a CSV notice: the control record, every data record as a row with its Japanese column
/// names, and the end record.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    let text = decode_cp932(bytes).map_err(|e| ParseError::Encoding { offset: e.offset })?;
    let lines = lines(&text);
    let records: Vec<_> = lines.iter().filter(|l| !l.text.is_empty()).collect();
    let Some(first) = records.first() else {
        return Err(ParseError::Envelope("empty".into()));
    };
    let control =
        items(first.text).ok_or_else(|| ParseError::Envelope("control record quoting".into()))?;
    if control.first().map(String::as_str) != Some("1") {
        return Err(ParseError::Envelope(
            "the first record is not a control record".into(),
        ));
    }
    let processing_month = control.get(10).and_then(|m| m.parse().ok());
    let office_number = control.get(7).cloned().filter(|s| !s.is_empty());
    let declared: Option<usize> = control.get(3).and_then(|n| n.parse().ok());
    let mut out = Parsed {
        kind_id: String::new(),
        processing_month,
        office_number,
        rows: Vec::new(),
        problems: Vec::new(),
    };
    let mut saw_end = false;
    for line in &records[1..] {
        let Some(fields) = items(line.text) else {
            out.problems.push(format!(
                "{} 行目の引用符が不正です (line {}: broken quoting)",
                line.position, line.position
            ));
            continue;
        };
        match fields.first().map(String::as_str) {
            Some("2") => {}
            Some("3") => {
                saw_end = true;
                continue;
            }
            _ => {
                out.problems.push(format!(
                    "{} 行目はデータレコードではありません (line {}: not a data record)",
                    line.position, line.position
                ));
                continue;
            }
        }
        let record_no = fields.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
        let values = &fields[2.min(fields.len())..];
        let kind_id = values.first().cloned().unwrap_or_default();
        if out.kind_id.is_empty() {
            out.kind_id = kind_id.clone();
        }
        let record = values.get(1).cloned().unwrap_or_default();
        let layout = kind(&kind_id).and_then(|k| k.layouts.iter().find(|l| l.record == record));
        let names: &[&str] = layout.map_or(&[], |l| l.columns);
        if layout.is_some() && names.len() != values.len() {
            out.problems.push(format!(
                "{} 行目（{kind_id} {record}）の項目数が {} です（様式では {}） (line {}: {} items, the layout has {})",
                line.position,
                values.len(),
                names.len(),
                line.position,
                values.len(),
                names.len()
            ));
        }
        let cells = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let name = names
                    .get(i)
                    .map_or_else(|| format!("項目{}", i + 1), |n| (*n).to_owned());
                (name, v.clone())
            })
            .collect();
        out.rows.push(Row {
            record_no,
            record,
            cells,
        });
    }
    if !saw_end {
        out.problems
            .push("終了レコードがありません (no end record)".into());
    }
    if let Some(n) = declared
        && n != out.rows.len()
    {
        out.problems.push(format!(
            "レコード件数が {n} とありますが、データレコードは {} 件です (control says {n} data records, found {})",
            out.rows.len(),
            out.rows.len()
        ));
    }
    Ok(out)
}

/// The notice as UTF-8 text (with a byte-order mark, which Excel needs to read UTF-8 CSV), every
/// byte of the original transcoded and nothing else changed.
pub fn to_utf8(bytes: &[u8]) -> Result<String, ParseError> {
    let text = decode_cp932(bytes).map_err(|e| ParseError::Encoding { offset: e.offset })?;
    Ok(format!("\u{feff}{text}"))
}

/// One 7411 detail row: a returned or held statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnRow {
    /// Record number in the notice.
    pub record_no: u32,
    /// 保険者(事業所)番号 as written.
    pub insurer_number: String,
    /// Its name.
    pub insurer_name: String,
    /// 被保険者番号.
    pub insured_number: String,
    /// カナ氏名.
    pub name_kana: String,
    /// 種別: `請` 請求明細書, `給` 給付管理票, `サ` 計画費明細書.
    pub form: String,
    /// サービス提供年月.
    pub service_month: Option<Month>,
    /// サービス種類.
    pub service_type: String,
    /// 単位数.
    pub units: Option<i64>,
    /// 事由 A–E.
    pub reason_code: String,
    /// 内容.
    pub content: String,
    /// 備考 says 保留: held, not returned.
    pub held: bool,
    /// サービス項目コード等.
    pub service_item: String,
}

/// One 7311 detail row: units changed by the examination (査定).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssessmentRow {
    /// Record number in the notice.
    pub record_no: u32,
    /// 保険者番号.
    pub insurer_number: String,
    /// 被保険者番号.
    pub insured_number: String,
    /// カナ氏名.
    pub name_kana: String,
    /// サービス提供年月.
    pub service_month: Option<Month>,
    /// サービス種類.
    pub service_type: String,
    /// サービス項目.
    pub service_item: String,
    /// 増減単位数 (signed).
    pub units_change: Option<i64>,
    /// 事由.
    pub reason_code: String,
    /// 内容1 and 内容2.
    pub content: String,
}

fn cell(row: &Row, name: &str) -> String {
    row.get(name).unwrap_or("").trim().to_owned()
}

/// The 返戻/保留 rows of a parsed 7411 (or 7421).
pub fn return_rows(parsed: &Parsed) -> Vec<ReturnRow> {
    parsed
        .rows
        .iter()
        .filter(|r| r.record == "D1" && matches!(parsed.kind_id.as_str(), "7411" | "7421"))
        .map(|r| ReturnRow {
            record_no: r.record_no,
            insurer_number: cell(r, "保険者番号"),
            insurer_name: cell(r, "保険者名"),
            insured_number: cell(r, "被保険者番号"),
            name_kana: cell(r, "カナ氏名"),
            form: cell(r, "種別"),
            service_month: cell(r, "サービス提供年月").parse().ok(),
            service_type: cell(r, "サービス種類"),
            units: cell(r, "単位数").parse().ok(),
            reason_code: cell(r, "事由"),
            content: cell(r, "内容"),
            held: cell(r, "備考").contains("保留"),
            service_item: cell(r, "サービス項目コード等"),
        })
        .collect()
}

/// The 査定 rows of a parsed 7311.
pub fn assessment_rows(parsed: &Parsed) -> Vec<AssessmentRow> {
    parsed
        .rows
        .iter()
        .filter(|r| r.record == "D1" && parsed.kind_id == "7311")
        .map(|r| {
            let (c1, c2) = (cell(r, "内容1"), cell(r, "内容2"));
            AssessmentRow {
                record_no: r.record_no,
                insurer_number: cell(r, "保険者番号"),
                insured_number: cell(r, "被保険者番号"),
                name_kana: cell(r, "カナ氏名"),
                service_month: cell(r, "サービス提供年月").parse().ok(),
                service_type: cell(r, "サービス種類"),
                service_item: cell(r, "サービス項目"),
                units_change: cell(r, "増減単位数").parse().ok(),
                reason_code: cell(r, "事由"),
                content: [c1, c2]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::SHIFT_JIS;

    fn cp932(s: &str) -> Vec<u8> {
        SHIFT_JIS.encode(s).0.into_owned()
    }

    const RETURNS: &str = "1,1,0,2,741,0,0,1379999996,0,7,202506,0\r\n\
        2,2,7411,H1,1379999996,さくら訪問介護,202506,20250630,1,東京都国民健康保険団体連合会\r\n\
        2,3,7411,D1,139998,千代田区,0000123457,ﾋﾎｹﾝｼﾔ ﾊﾅｺ,請,202505,11,2000,B,受給者台帳に該当がありません（ＡＳＢ１）,,111111\r\n\
        3,4\r\n";

    #[test]
    fn every_layout_has_the_item_count_of_the_specification() {
        let count = |id: &str, rec: &str| {
            kind(id)
                .and_then(|k| k.layouts.iter().find(|l| l.record == rec))
                .map(|l| l.columns.len())
        };
        assert_eq!(count("7211", "H1"), Some(8));
        assert_eq!(count("7211", "D1"), Some(20));
        assert_eq!(count("7211", "T1"), Some(22));
        assert_eq!(count("7311", "H1"), Some(10));
        assert_eq!(count("7311", "D1"), Some(12));
        assert_eq!(count("7411", "H1"), Some(8));
        assert_eq!(count("7411", "D1"), Some(14));
        assert_eq!(count("7513", "H1"), Some(22));
        assert_eq!(count("7521", "D1"), Some(15));
        assert_eq!(count("7611", "D1"), Some(13));
        assert_eq!(count("7611", "T1"), Some(8));
        assert_eq!(count("7621", "T1"), Some(20));
        assert_eq!(count("7521", "T3"), Some(11));
        assert_eq!(count("7621", "H1"), Some(9));
        assert_eq!(count("7621", "D1"), Some(18));
        assert_eq!(count("7421", "D1"), Some(14));
    }

    #[test]
    fn a_returns_list_reads_into_typed_rows() {
        let parsed = parse(&cp932(RETURNS)).unwrap();
        assert_eq!(parsed.kind_id, "7411");
        assert_eq!(parsed.processing_month, "202506".parse().ok());
        assert_eq!(parsed.office_number.as_deref(), Some("1379999996"));
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(parsed.rows[0].get("事業所名"), Some("さくら訪問介護"));
        let rows = return_rows(&parsed);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.insured_number, "0000123457");
        assert_eq!(r.form, "請");
        assert_eq!(r.service_month, "202505".parse().ok());
        assert_eq!(r.units, Some(2000));
        assert_eq!(r.reason_code, "B");
        assert!(!r.held);
    }

    #[test]
    fn rows_that_do_not_fit_are_kept_and_reported() {
        let text = RETURNS
            .replace(",111111\r\n", ",111111,余分\r\n")
            .replace("3,4", "");
        let parsed = parse(&cp932(&text)).unwrap();
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!(parsed.rows[1].cells.last().unwrap().0, "項目15");
        assert_eq!(parsed.problems.len(), 2, "{:?}", parsed.problems);
        assert!(parsed.problems.iter().any(|p| p.contains("no end record")));
    }

    #[test]
    fn bad_bytes_are_an_error_not_a_panic() {
        assert!(matches!(
            parse(&[0x31, 0x2c, 0x82]),
            Err(ParseError::Encoding { .. })
        ));
        assert!(matches!(parse(b""), Err(ParseError::Envelope(_))));
        assert!(matches!(
            parse(b"2,1,7411\r\n"),
            Err(ParseError::Envelope(_))
        ));
    }

    #[test]
    fn the_utf8_download_is_the_same_text() {
        let bytes = cp932(RETURNS);
        let utf8 = to_utf8(&bytes).unwrap();
        assert!(utf8.starts_with('\u{feff}'));
        assert_eq!(cp932(&utf8[3..]), bytes);
    }
}
