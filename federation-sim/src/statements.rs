//! 明細書 (statements) inside a recorded claim body, as the month-end review sees them: which
//! records make up each statement, its key, its units, its service type, and which statements
//! the 受付 check's record-level (△) errors belong to.
//!
//! Pure functions of the bytes, no I/O. The grouping rule, stated in README.md ("Notices") and
//! kept here only: a statement is the set of data records sharing
//! - (ID, サービス提供年月 item 3, 証記載保険者番号 item 5, 被保険者番号 item 6) for 71xx records
//!   other than the 請求書 IDs 7111/7112/7113 → 種別 `請`;
//! - (対象年月 item 2, 証記載保険者番号 item 3, 被保険者番号 item 9) for 8222 → 種別 `給`;
//! - (ID, サービス提供年月 item 4, 証記載保険者番号 item 5, 被保険者番号 item 7) for 8124/8125
//!   → 種別 `サ`.
//!
//! Statements are listed in the order of their first record. Items are compared trimmed, with
//! quotes removed (`reception::split_items`).

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::reception::{self, Issue};

/// 種別 of a statement in the 7411 返戻一覧.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `請`: a 請求明細書 (71xx).
    Claim,
    /// `給`: a 給付管理票 (8222).
    Benefit,
    /// `サ`: a 居宅介護支援 / 介護予防支援 計画費明細書 (8124 / 8125).
    Plan,
}

impl Kind {
    /// The 種別 character written in 7411 (`請`, `給`, `サ`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Claim => "請",
            Kind::Benefit => "給",
            Kind::Plan => "サ",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "請" => Some(Kind::Claim),
            "給" => Some(Kind::Benefit),
            "サ" => Some(Kind::Plan),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        let s = String::deserialize(d)?;
        Kind::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown 種別 {s:?}")))
    }
}

/// One statement of a claim file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub kind: Kind,
    /// 交換情報識別番号 (`7131`, `8222`, `8124`, …).
    pub id: String,
    /// サービス提供年月 / 対象年月 as written (`YYYYMM` in a valid file).
    pub service_month: String,
    /// 証記載保険者番号 as written (8 digits in 71xx/8222, 6 in 8124/8125).
    pub insurer: String,
    /// 被保険者番号 as written (may be empty in a △ file).
    pub insured: String,
    /// 居宅介護支援事業所番号 (8222 item 4); empty for other kinds.
    pub planner: String,
    /// Total units as the file states them (see [`statements`]).
    pub units: u64,
    /// サービス種類コード (2 digits) of the first 明細 / 集計 line; empty if none.
    pub service_type: String,
    /// サービスコード (種類 + 項目, 6 digits) of the first 明細 line; empty if none.
    pub service_code: String,
    /// サービス実日数 (the largest 集計 item 8 of a 71xx statement), else 0.
    pub days: u64,
    /// Record numbers (position in the file, control = 1) of the statement's records.
    pub records: Vec<u64>,
}

/// A 請求書 record (7111/7112/7113): its record number and its サービス提供年月 (item 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bill {
    pub record_no: u64,
    pub service_month: String,
}

/// The statements and 請求書 records of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub statements: Vec<Statement>,
    pub bills: Vec<Bill>,
}

fn number(s: &str) -> Option<u64> {
    let s = s.trim();
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Units bookkeeping while a statement's records are read.
#[derive(Debug, Default)]
struct Tally {
    /// 71xx: Σ 集計 (10) item 14 保険単位数合計; 8222: 99-line item 24 給付計画合計単位数;
    /// 8124/8125: the largest item 21 サービス単位数合計.
    stated: Option<u64>,
    /// 71xx: Σ 明細 (02) item 14 サービス単位数; 8222: Σ detail item 20; 8124/8125: Σ item 20.
    lines: u64,
}

/// Splits one claim body into statements. Units: a 71xx statement's units are the sum of its
/// 集計 (レコード種別コード `10`) records' item 14 (保険単位数合計), or, without a numeric one, the
/// sum of its 明細 (`02`) records' item 14 (サービス単位数); an 8222 給付管理票's units are the
/// closing line's (明細行番号 `99`) item 24 (給付計画合計単位数), else the sum of the detail
/// lines' item 20 (給付計画単位数); an 8124/8125 statement's units are its largest item 21
/// (サービス単位数合計), else the sum of item 20 (サービス単位数). Non-numeric items count 0.
pub fn statements(body: &[u8]) -> Parsed {
    let text = encoding_rs::SHIFT_JIS.decode_without_bom_handling(body).0;
    let text = text.strip_suffix("\r\n").unwrap_or(&text);
    let mut parsed = Parsed::default();
    let mut index: HashMap<(Kind, [String; 4]), usize> = HashMap::new();
    let mut tallies: Vec<Tally> = Vec::new();
    for (i, record) in text.split("\r\n").enumerate() {
        let record_no = i as u64 + 1;
        let Some(items) = reception::split_items(record) else {
            continue;
        };
        if items.first().map(|s| s.trim()) != Some("2") {
            continue;
        }
        let item = |k: usize| items.get(k + 1).map_or("", |s| s.trim());
        let id = item(1);
        let (kind, key) = if matches!(id, "7111" | "7112" | "7113") {
            parsed.bills.push(Bill {
                record_no,
                service_month: item(2).to_owned(),
            });
            continue;
        } else if id.starts_with("71") {
            (Kind::Claim, [id, item(3), item(5), item(6)])
        } else if id == "8222" {
            (Kind::Benefit, [id, item(2), item(3), item(9)])
        } else if matches!(id, "8124" | "8125") {
            (Kind::Plan, [id, item(4), item(5), item(7)])
        } else {
            continue;
        };
        let key = (kind, key.map(str::to_owned));
        let n = match index.get(&key) {
            Some(n) => *n,
            None => {
                let [id, month, insurer, insured] = key.1.clone();
                parsed.statements.push(Statement {
                    kind,
                    id,
                    service_month: month,
                    insurer,
                    insured,
                    planner: if kind == Kind::Benefit {
                        item(4).to_owned()
                    } else {
                        String::new()
                    },
                    units: 0,
                    service_type: String::new(),
                    service_code: String::new(),
                    days: 0,
                    records: Vec::new(),
                });
                tallies.push(Tally::default());
                index.insert(key, parsed.statements.len() - 1);
                parsed.statements.len() - 1
            }
        };
        let (Some(st), Some(tally)) = (parsed.statements.get_mut(n), tallies.get_mut(n)) else {
            continue;
        };
        st.records.push(record_no);
        let set_if_empty = |field: &mut String, value: &str| {
            if field.is_empty() && !value.is_empty() {
                *field = value.to_owned();
            }
        };
        match kind {
            Kind::Claim => match item(2) {
                "02" => {
                    set_if_empty(&mut st.service_type, item(7));
                    if st.service_code.is_empty() && !item(7).is_empty() && !item(8).is_empty() {
                        st.service_code = format!("{}{}", item(7), item(8));
                    }
                    tally.lines += number(item(14)).unwrap_or(0);
                }
                "10" => {
                    set_if_empty(&mut st.service_type, item(7));
                    st.days = st.days.max(number(item(8)).unwrap_or(0));
                    if let Some(u) = number(item(14)) {
                        tally.stated = Some(tally.stated.unwrap_or(0) + u);
                    }
                }
                _ => {}
            },
            Kind::Benefit => {
                if item(8) == "99" {
                    if let Some(u) = number(item(24)) {
                        tally.stated = Some(u);
                    }
                } else {
                    set_if_empty(&mut st.service_type, item(19));
                    tally.lines += number(item(20)).unwrap_or(0);
                }
            }
            Kind::Plan => {
                set_if_empty(&mut st.service_code, item(17));
                if let Some(u) = number(item(21)) {
                    tally.stated = Some(tally.stated.unwrap_or(0).max(u));
                }
                tally.lines += number(item(20)).unwrap_or(0);
            }
        }
    }
    for (st, tally) in parsed.statements.iter_mut().zip(&tallies) {
        st.units = tally.stated.unwrap_or(tally.lines);
        if st.kind == Kind::Plan && st.service_type.is_empty() {
            st.service_type = match st.service_code.get(..2) {
                Some(t) if st.service_code.len() == 6 => t.to_owned(),
                _ if st.id == "8125" => "46".to_owned(),
                _ => "43".to_owned(),
            };
        }
    }
    parsed
}

/// The record-level 受付 errors of each statement (same order as `parsed.statements`): an
/// error on one of a statement's records belongs to it; an error on a 請求書 record (7111 …)
/// belongs to every `請` statement of the file with the 請求書's サービス提供年月. Other errors
/// (none exist today) belong to no statement.
pub fn errors_by_statement<'a>(parsed: &Parsed, errors: &'a [Issue]) -> Vec<Vec<&'a Issue>> {
    let mut out: Vec<Vec<&Issue>> = vec![Vec::new(); parsed.statements.len()];
    let mut owner: HashMap<u64, usize> = HashMap::new();
    for (n, st) in parsed.statements.iter().enumerate() {
        for r in &st.records {
            owner.entry(*r).or_insert(n);
        }
    }
    for e in errors {
        let Some(r) = e.record_no else { continue };
        if let Some(n) = owner.get(&r) {
            if let Some(list) = out.get_mut(*n) {
                list.push(e);
            }
        } else if let Some(bill) = parsed.bills.iter().find(|b| b.record_no == r) {
            for (n, st) in parsed.statements.iter().enumerate() {
                if st.kind == Kind::Claim
                    && st.service_month == bill.service_month
                    && let Some(list) = out.get_mut(n)
                {
                    list.push(e);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// claim-format.md §1.6 with a second 7131 statement and an 8124 statement.
    const FILE: &str = "1,1,0,8,711,0,0,1379999996,0,7,202506,1\r\n\
2,2,\"7111\",202505,1379999996,1,0,01,2,2300,26220,23598,0,2622,0,0,0,0,0,0\r\n\
2,3,\"7131\",01,202505,1379999996,00139998,\"0000123456\",,,,,,,19400101,2,22,,20240401,20260331,1,1379999988,,,,,,,,,90,,,,2000,20520,2280,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\r\n\
2,4,\"7131\",02,202505,1379999996,00139998,\"0000123456\",11,1111,250,8,0,0,0,2000,0,0,0,\"\"\r\n\
2,5,\"7131\",10,202505,1379999996,00139998,\"0000123456\",11,8,2000,2000,0,,,2000,1140,20520,2280,0,0,0,0,0,0,0,0,0,,,,,,,,,,,,\r\n\
2,6,\"7131\",01,202505,1379999996,00139998,\"0000123457\",,,,,,,19400101,2,22,,20240401,20260331,1,1379999988,,,,,,,,,90,,,,300,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\r\n\
2,7,\"7131\",02,202505,1379999996,00139998,\"0000123457\",11,1211,150,2,0,0,0,300,0,0,0,\"\"\r\n\
2,8,\"8124\",1379999996,1,202505,139998,1140,\"0000000016\",,,19400101,2,22,20240401,20260331,20240401,01,431111,1076,1,1076,1076,12266,13012345,\"\"\r\n\
2,9,\"8124\",1379999996,1,202505,139998,1140,\"0000000016\",,,19400101,2,22,20240401,20260331,20240401,02,434000,300,1,300,1376,0,13012345,\"\"\r\n\
3,10\r\n";

    const BENEFIT: &str = "1,1,0,2,821,0,0,1379999988,0,7,202506,1\r\n\
2,2,\"8222\",202505,00139998,1379999988,1,20250603,3,01,\"0000123456\",19400101,2,22,202404,202603,,1,1379999996,1,11,2000,,,,,,,\r\n\
2,3,\"8222\",202505,00139998,1379999988,1,20250603,3,01,\"0000123456\",19400101,2,22,202404,202603,,1,1379999996,1,13,500,,,,,,,\r\n\
2,4,\"8222\",202505,00139998,1379999988,1,20250603,3,99,\"0000123456\",19400101,2,22,202404,202603,19705,1,0,0,0,,,2500,0,2500,13012345,,\r\n\
3,5\r\n";

    #[test]
    fn groups_claim_and_plan_statements() {
        let p = statements(FILE.as_bytes());
        assert_eq!(
            p.bills,
            vec![Bill {
                record_no: 2,
                service_month: "202505".into()
            }]
        );
        assert_eq!(p.statements.len(), 3);
        let a = &p.statements[0];
        assert_eq!(
            (a.kind, a.id.as_str(), a.service_month.as_str()),
            (Kind::Claim, "7131", "202505")
        );
        assert_eq!(
            (a.insurer.as_str(), a.insured.as_str()),
            ("00139998", "0000123456")
        );
        assert_eq!(a.records, vec![3, 4, 5]);
        assert_eq!(a.units, 2000, "集計 item 14");
        assert_eq!(
            (a.service_type.as_str(), a.service_code.as_str(), a.days),
            ("11", "111111", 8)
        );
        // No 集計 record: the sum of the 明細 lines.
        let b = &p.statements[1];
        assert_eq!((b.records.clone(), b.units), (vec![6, 7], 300));
        assert_eq!(b.service_code, "111211");
        let c = &p.statements[2];
        assert_eq!(c.kind, Kind::Plan);
        assert_eq!(
            (
                c.insurer.as_str(),
                c.insured.as_str(),
                c.service_month.as_str()
            ),
            ("139998", "0000000016", "202505")
        );
        assert_eq!((c.units, c.records.clone()), (1376, vec![8, 9]));
        assert_eq!(
            (c.service_type.as_str(), c.service_code.as_str()),
            ("43", "431111")
        );
    }

    #[test]
    fn benefit_statements_take_the_closing_line() {
        let p = statements(BENEFIT.as_bytes());
        assert_eq!(p.statements.len(), 1);
        let s = &p.statements[0];
        assert_eq!(s.kind, Kind::Benefit);
        assert_eq!(s.planner, "1379999988");
        assert_eq!((s.units, s.service_type.as_str()), (2500, "11"));
        assert_eq!(s.records, vec![2, 3, 4]);
        let without_99 = BENEFIT.replace(",3,99,", ",3,02,");
        assert_eq!(statements(without_99.as_bytes()).statements[0].units, 2500);
    }

    #[test]
    fn errors_map_to_their_statements() {
        let p = statements(FILE.as_bytes());
        let issue = |r| Issue {
            record_no: Some(r),
            code: "x".into(),
            message: String::new(),
        };
        let errors = vec![issue(4), issue(7), issue(7)];
        let by = errors_by_statement(&p, &errors);
        assert_eq!(by.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 2, 0]);
        // A 請求書 error belongs to every 請 statement of its service month.
        let errors = vec![issue(2)];
        let by = errors_by_statement(&p, &errors);
        assert_eq!(by.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1, 0]);
    }

    #[test]
    fn kind_round_trips_through_json() {
        for k in [Kind::Claim, Kind::Benefit, Kind::Plan] {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<Kind>(&json).unwrap(), k);
        }
        assert_eq!(serde_json::to_string(&Kind::Plan).unwrap(), "\"サ\"");
        assert!(serde_json::from_str::<Kind>("\"x\"").is_err());
    }
}
