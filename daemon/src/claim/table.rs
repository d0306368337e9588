//! The table of 介護 exchange IDs (交換情報識別番号) a provider may send: which data types each
//! belongs to, which service months it is valid for, and the layout of its records (item counts,
//! numeric, date and month items, where the office, insurer and insured numbers are, and which
//! items feed the 7111 請求書 totals). The table is data (`exchange_ids.toml`, embedded at build
//! time) so that a fee revision (制度改正) is a table change, not a code change.
//!
//! Invariant: the embedded table is validated by a unit test (every item number lies inside its
//! record, every month parses); at run time a table that fails to load makes every check refuse
//! the file with `internal.table` instead of waving files through.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use super::ids::Month;

/// The embedded table's text.
pub const TABLE_TOML: &str = include_str!("exchange_ids.toml");

/// What a record of an exchange ID is for; decides how it takes part in the cross-checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 請求書 (7111, 7112, 7113): carries the totals of the statements in the file.
    Invoice,
    /// 明細書 (7131 …, 71R1): one statement per insured person and service month, split into
    /// records by the レコード種別コード in item 2.
    Statement,
    /// 居宅介護支援・介護予防支援 明細書 (8124, 8125, 8171): one record per line of a statement.
    CarePlanStatement,
    /// 給付管理票 (8222).
    BenefitPlan,
    /// 再審査申立書 (71B2).
    Reexamination,
}

/// How an insurer number is written in an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InsurerForm {
    /// 8 digits, the 6-digit number left-padded with `00` (証記載保険者番号 of 明細書).
    Padded8,
    /// The plain 6-digit number (8124/8125 item 5).
    Plain6,
}

/// One 介護 exchange ID.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeId {
    /// The 4-character ID, e.g. `7131`.
    pub id: String,
    /// Japanese name (様式).
    pub name_ja: String,
    /// English name.
    pub name_en: String,
    /// What its records are for.
    pub role: Role,
    /// データ種別 values of files it may appear in.
    pub data_types: Vec<String>,
    /// First service month it is valid for (inclusive); `None` = since the start of the system.
    #[serde(default)]
    pub service_month_from: Option<Month>,
    /// Last service month it is valid for (inclusive); `None` = still current.
    #[serde(default)]
    pub service_month_until: Option<Month>,
    /// Item number (item 1 = the ID) of the サービス提供年月 / 対象年月.
    #[serde(default)]
    pub service_month_item: Option<usize>,
    /// Item number of the 事業所番号 that must equal the control record's.
    #[serde(default)]
    pub office_item: Option<usize>,
    /// Item number of the 証記載保険者番号 and how it is written.
    #[serde(default)]
    pub insurer_item: Option<usize>,
    /// See `insurer_item`.
    #[serde(default)]
    pub insurer_form: Option<InsurerForm>,
    /// Item number of the 被保険者番号.
    #[serde(default)]
    pub insured_item: Option<usize>,
    /// Record layouts; for `Statement` IDs one per レコード種別コード (item 2).
    #[serde(default)]
    pub records: Vec<RecordLayout>,
    /// Takes the record layouts of another ID (the 明細書 forms share one set of layouts, so a
    /// revision of them is one change).
    #[serde(default)]
    pub records_like: Option<String>,
    /// For statements: which items feed the 7111 totals.
    #[serde(default)]
    pub totals: Option<Totals>,
    /// Takes the totals mapping of another ID.
    #[serde(default)]
    pub totals_like: Option<String>,
}

/// The layout of one record of an exchange ID. Item numbers count from the ID as item 1, as the
/// interface specification does (the CSV column is the item number + 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordLayout {
    /// The レコード種別コード (item 2) for statement IDs; `None` when the ID has one layout.
    #[serde(default)]
    pub code: Option<String>,
    /// Japanese name of the record, e.g. `基本情報`.
    #[serde(default)]
    pub name_ja: Option<String>,
    /// Number of items, the ID included. `None` when not known: the count is then not checked.
    #[serde(default)]
    pub items: Option<usize>,
    /// Items that must not be empty.
    #[serde(default)]
    pub required: Vec<usize>,
    /// Items that hold only digits when present (数字, unsigned).
    #[serde(default)]
    pub numeric: Vec<usize>,
    /// Items that hold digits with an optional leading `-` when present.
    #[serde(default)]
    pub signed: Vec<usize>,
    /// Items that hold a date `YYYYMMDD` when present (an all-zero value means omitted).
    #[serde(default)]
    pub dates: Vec<usize>,
    /// Items that hold a month `YYYYMM` when present.
    #[serde(default)]
    pub months: Vec<usize>,
    /// Maximum lengths in bytes (CP932), as `[item, bytes]` pairs.
    #[serde(default)]
    pub max_bytes: Vec<[usize; 2]>,
}

/// Which items of a statement feed the 7111 請求書 totals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// The record holding the statement's totals: a レコード種別コード (`10` 集計情報), or `None`
    /// when every record of the statement repeats them (8124: take them from its first record).
    #[serde(default)]
    pub record: Option<String>,
    /// 保険 単位数合計 items (summed).
    pub units: Vec<usize>,
    /// 保険 請求額 items (summed).
    pub insurance_claim: Vec<usize>,
    /// 利用者負担額 items (summed).
    #[serde(default)]
    pub user_burden: Vec<usize>,
    /// 公費 請求額 items (summed).
    #[serde(default)]
    pub public_claim: Vec<usize>,
    /// 7111 請求情報区分 (item 6) of the invoice these statements belong to: `01` 居宅・施設等,
    /// `02` 居宅介護支援・介護予防支援.
    pub invoice_kind: String,
}

/// The whole table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// Version line of the table (which 制度改正 it reflects).
    pub revision: String,
    /// Every known 介護 exchange ID.
    pub exchange_id: Vec<ExchangeId>,
    /// データ種別 values of 介護 claim files.
    pub data_types: Vec<DataType>,
    #[serde(skip)]
    by_id: HashMap<String, usize>,
}

/// A 介護 データ種別 (control item 5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataType {
    /// The code, e.g. `711`.
    pub code: String,
    /// What the file holds, in Japanese.
    pub name_ja: String,
    /// The same in English.
    pub name_en: String,
}

impl Table {
    /// Parses and validates a table.
    pub fn parse(text: &str) -> Result<Table, String> {
        let mut table: Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut ids = std::collections::HashSet::new();
        if let Some(e) = table
            .exchange_id
            .iter()
            .find(|e| !ids.insert(e.id.as_str()))
        {
            return Err(format!("{}: listed twice", e.id));
        }
        table.resolve_likes()?;
        table.validate()?;
        table.by_id = table
            .exchange_id
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        Ok(table)
    }

    /// Copies the layouts and totals named by `records_like` / `totals_like`. The named ID must
    /// carry its own (no chains), and an ID may not have both its own and a borrowed set.
    fn resolve_likes(&mut self) -> Result<(), String> {
        let snapshot = self.exchange_id.clone();
        let find = |id: &str| snapshot.iter().find(|e| e.id == id);
        for e in &mut self.exchange_id {
            if let Some(like) = &e.records_like {
                let source = find(like)
                    .ok_or_else(|| format!("{}: records_like {like} is not in the table", e.id))?;
                if source.records_like.is_some()
                    || source.records.is_empty()
                    || !e.records.is_empty()
                {
                    return Err(format!(
                        "{}: records_like {like} must name an ID with its own records",
                        e.id
                    ));
                }
                e.records = source.records.clone();
            }
            if let Some(like) = &e.totals_like {
                let source = find(like)
                    .ok_or_else(|| format!("{}: totals_like {like} is not in the table", e.id))?;
                if source.totals_like.is_some() || source.totals.is_none() || e.totals.is_some() {
                    return Err(format!(
                        "{}: totals_like {like} must name an ID with its own totals",
                        e.id
                    ));
                }
                e.totals = source.totals.clone();
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for e in &self.exchange_id {
            if e.id.len() != 4 || !e.id.is_ascii() {
                return Err(format!("{}: an ID has four ASCII characters", e.id));
            }
            if !seen.insert(e.id.as_str()) {
                return Err(format!("{}: listed twice", e.id));
            }
            for dt in &e.data_types {
                if !self.data_types.iter().any(|d| &d.code == dt) {
                    return Err(format!("{}: unknown data type {dt}", e.id));
                }
            }
            if e.insurer_item.is_some() != e.insurer_form.is_some() {
                return Err(format!("{}: insurer_item needs insurer_form", e.id));
            }
            if let (Some(from), Some(until)) = (e.service_month_from, e.service_month_until)
                && from > until
            {
                return Err(format!("{}: valid range is empty", e.id));
            }
            for r in &e.records {
                let Some(n) = r.items else { continue };
                let lists = [&r.required, &r.numeric, &r.signed, &r.dates, &r.months];
                let pairs = r.max_bytes.iter().map(|p| p[0]);
                let fixed = [
                    e.service_month_item,
                    e.office_item,
                    e.insurer_item,
                    e.insured_item,
                ];
                let all = lists
                    .iter()
                    .flat_map(|l| l.iter().copied())
                    .chain(pairs)
                    .chain(fixed.into_iter().flatten());
                for item in all {
                    if item < 1 || item > n {
                        return Err(format!(
                            "{} record {:?}: item {item} outside 1..={n}",
                            e.id, r.code
                        ));
                    }
                }
            }
            if e.role == Role::Statement && e.records.iter().any(|r| r.code.is_none()) {
                return Err(format!("{}: statement records need a code", e.id));
            }
        }
        Ok(())
    }

    /// The entry for an ID.
    pub fn get(&self, id: &str) -> Option<&ExchangeId> {
        self.by_id.get(id).map(|&i| &self.exchange_id[i])
    }

    /// The データ種別 entry for a code.
    pub fn data_type(&self, code: &str) -> Option<&DataType> {
        self.data_types.iter().find(|d| d.code == code)
    }
}

impl ExchangeId {
    /// The layout of a record of this ID: by レコード種別コード for statements.
    pub fn layout(&self, code: Option<&str>) -> Option<&RecordLayout> {
        match self.role {
            Role::Statement => self.records.iter().find(|r| r.code.as_deref() == code),
            _ => self.records.first(),
        }
    }

    /// Whether the ID is valid for a service month.
    pub fn valid_for(&self, month: Month) -> bool {
        self.service_month_from.is_none_or(|from| month >= from)
            && self.service_month_until.is_none_or(|until| month <= until)
    }
}

static TABLE: LazyLock<Result<Table, String>> = LazyLock::new(|| Table::parse(TABLE_TOML));

/// The embedded table, or why it could not be loaded.
pub fn table() -> Result<&'static Table, &'static str> {
    TABLE.as_ref().map_err(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_table_loads() {
        let t = table().unwrap();
        for id in ["7111", "7131", "8222", "8124", "71R1"] {
            assert!(t.get(id).is_some(), "{id}");
        }
        let s = t.get("7131").unwrap();
        assert_eq!(s.layout(Some("01")).and_then(|l| l.items), Some(56));
        assert_eq!(s.layout(Some("10")).and_then(|l| l.items), Some(38));
        // Forms that share the 明細書 layouts get them whole.
        let shared = t.get("7183").unwrap();
        assert_eq!(shared.layout(Some("01")).and_then(|l| l.items), Some(56));
        assert_eq!(
            shared.totals.as_ref().map(|t| t.units.clone()),
            Some(vec![14])
        );
        assert!(t.get("7121").unwrap().valid_for("200201".parse().unwrap()));
        assert!(!t.get("7121").unwrap().valid_for("200202".parse().unwrap()));
    }

    #[test]
    fn bad_tables_are_refused() {
        let bad = TABLE_TOML.replacen("id = \"7111\"", "id = \"7131\"", 1);
        assert!(Table::parse(&bad).unwrap_err().contains("twice"));
        let unknown = format!("{TABLE_TOML}\nsurprise = 1\n");
        assert!(Table::parse(&unknown).is_err());
        let dangling = TABLE_TOML.replacen("records_like = \"7131\"", "records_like = \"7999\"", 1);
        assert!(Table::parse(&dangling).unwrap_err().contains("7999"));
    }
}
