//! Which statements (明細書, 給付管理票) a claim file holds, by insured person and service
//! month: what the returns tracker needs to recognise a resubmission of a returned claim.
//!
//! Invariant: pure, like the rest of `claim`: the same bytes give the same list, and a file the
//! checker would refuse gives what can be read of it, never a panic.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::Month;
use super::records::{decode_cp932, lines, split_items};
use super::table::{self, Role};

/// One statement of a claim file, as the federation's 返戻一覧 (7411) names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StatementRef {
    /// 被保険者番号.
    pub insured_number: String,
    /// サービス提供年月 (対象年月 for a 給付管理票).
    pub service_month: Month,
    /// 7411 種別: `請` 請求明細書, `給` 給付管理票, `サ` 計画費明細書.
    pub form: String,
}

/// Every statement in a claim file, each once, sorted.
pub fn statements(bytes: &[u8]) -> Vec<StatementRef> {
    let Ok(table) = table::table() else {
        return Vec::new();
    };
    let Ok(text) = decode_cp932(bytes) else {
        return Vec::new();
    };
    let mut out = BTreeSet::new();
    let mut items: Vec<Cow<'_, str>> = Vec::new();
    for line in lines(&text) {
        if split_items(line.text, &mut items).is_err()
            || items.first().map(|s| s.as_ref()) != Some("2")
        {
            continue;
        }
        let Some(entry) = items.get(2).and_then(|id| table.get(id.as_ref())) else {
            continue;
        };
        let form = match entry.role {
            Role::Statement => "請",
            Role::CarePlanStatement => "サ",
            Role::BenefitPlan => "給",
            Role::Invoice | Role::Reexamination => continue,
        };
        let value = |n: Option<usize>| n.and_then(|n| items.get(n + 1)).map(|s| s.trim());
        let (Some(insured), Some(month)) = (
            value(entry.insured_item).filter(|s| !s.is_empty()),
            value(entry.service_month_item).and_then(|m| m.parse::<Month>().ok()),
        ) else {
            continue;
        };
        out.insert(StatementRef {
            insured_number: insured.to_owned(),
            service_month: month,
            form: form.to_owned(),
        });
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statements_of_a_claim_and_a_benefit_plan_file() {
        let office: crate::claim::OfficeNumber = "1379999996".parse().unwrap();
        let manager: crate::claim::OfficeNumber = "1379999988".parse().unwrap();
        let month: Month = "202506".parse().unwrap();
        let claim = crate::claim::sample::care_claim(
            &office,
            &manager,
            month,
            &["0000123456", "0000123457"],
            1,
        );
        let plans =
            crate::claim::sample::benefit_plan(&manager, &office, month, &["0000123456"], 1);
        let list = statements(&claim);
        let item = |n: &str, form: &str| StatementRef {
            insured_number: n.into(),
            service_month: "202505".parse().unwrap(),
            form: form.into(),
        };
        assert_eq!(
            list,
            vec![item("0000123456", "請"), item("0000123457", "請")]
        );
        assert_eq!(statements(&plans), vec![item("0000123456", "給")]);
        assert!(statements(b"\x82").is_empty());
        assert!(statements(b"").is_empty());
    }
}
