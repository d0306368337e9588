//! Synthetic claim files in the interface-spec format, for the demo, tests and benchmarks.
//!
//! Invariant: every file built here passes `check` for its processing month (the tests below
//! hold it to that), uses valid check digits, and carries only synthetic people: no real
//! insured person's data ever appears in a sample.

use super::ids::{Month, OfficeNumber};

/// 証記載保険者番号 of the synthetic insurer (139998, check digit valid), in its 8-digit form.
const INSURER_8: &str = "00139998";

/// A 介護給付費 claim file (data type 711) for a home-care office: one 7111 請求書 and, per
/// insured person, a 7131 明細書 with its 基本 (01), 明細 (02) and 集計 (10) records, for the
/// services of the month before `processing_month`. `file_no` goes into the control record's
/// ファイル管理番号 so that otherwise equal files differ.
pub fn care_claim(
    office: &OfficeNumber,
    care_manager_office: &OfficeNumber,
    processing_month: Month,
    insured: &[&str],
    file_no: u32,
) -> Vec<u8> {
    let service = processing_month.previous();
    let n = insured.len() as u64;
    let mut lines = vec![format!(
        "1,1,0,{},711,0,0,{office},0,7,{processing_month},{file_no}",
        1 + 3 * insured.len()
    )];
    lines.push(format!(
        "2,2,\"7111\",{service},{office},1,0,01,{n},{},{},{},0,{},0,0,0,0,0,0",
        2000 * n,
        22800 * n,
        20520 * n,
        2280 * n
    ));
    let mut no = 3;
    for person in insured {
        let key = format!("{service},{office},{INSURER_8},\"{person}\"");
        lines.push(format!(
            "2,{no},\"7131\",01,{key},,,,,,,19400101,2,22,,20240401,20260331,1,{care_manager_office},,,,,,,,,90,,,,2000,20520,2280,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0"
        ));
        lines.push(format!(
            "2,{},\"7131\",02,{key},11,1111,250,8,0,0,0,2000,0,0,0,\"\"",
            no + 1
        ));
        lines.push(format!(
            "2,{},\"7131\",10,{key},11,8,2000,2000,0,,,2000,1140,20520,2280,0,0,0,0,0,0,0,0,0,,,,,,,,,,,,",
            no + 2
        ));
        no += 3;
    }
    lines.push(format!("3,{no}"));
    join_crlf(&lines)
}

/// A 給付管理票 file (data type 821) from a care-management office: per insured person one 8222
/// detail line for `service_office` and the closing 99 line.
pub fn benefit_plan(
    office: &OfficeNumber,
    service_office: &OfficeNumber,
    processing_month: Month,
    insured: &[&str],
    file_no: u32,
) -> Vec<u8> {
    let service = processing_month.previous();
    let mut lines = vec![format!(
        "1,1,0,{},821,0,0,{office},0,7,{processing_month},{file_no}",
        2 * insured.len()
    )];
    let mut no = 2;
    let made = format!("{processing_month}03");
    for person in insured {
        lines.push(format!(
            "2,{no},\"8222\",{service},{INSURER_8},{office},1,{made},3,01,\"{person}\",19400101,2,22,202404,202603,,1,{service_office},1,11,2000,,,,,,,"
        ));
        lines.push(format!(
            "2,{},\"8222\",{service},{INSURER_8},{office},1,{made},3,99,\"{person}\",19400101,2,22,202404,202603,19705,1,0,0,0,,,2000,0,2000,13012345,,",
            no + 1
        ));
        no += 2;
    }
    lines.push(format!("3,{no}"));
    join_crlf(&lines)
}

fn join_crlf(lines: &[String]) -> Vec<u8> {
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::check::{CheckContext, check};
    use super::*;

    #[test]
    fn samples_pass_the_checker() {
        let office: OfficeNumber = "1379999996".parse().unwrap();
        let cm: OfficeNumber = "1379999988".parse().unwrap();
        let month: Month = "202612".parse().unwrap();
        let ctx = CheckContext {
            processing_month: Some(month),
            ..Default::default()
        };
        let claim = care_claim(&office, &cm, month, &["0000123456", "0000654321"], 7);
        let r = check(&claim, &ctx);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        let s = r.summary.unwrap();
        assert_eq!((s.data_type.as_str(), s.data_records), ("711", 7));
        let text = String::from_utf8(claim).unwrap();
        assert!(text.contains("\"7111\",202611,1379999996,1,0,01,2,4000,45600,41040,0,4560,"));
        assert!(text.ends_with("3,9\r\n"));

        let plan = benefit_plan(&cm, &office, month, &["0000123456"], 1);
        let r = check(&plan, &ctx);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.summary.unwrap().data_type, "821");
    }
}
