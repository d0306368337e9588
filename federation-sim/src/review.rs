//! The month-end review (審査) of statements: the deterministic rules that decide whether a
//! statement is accepted, returned (返戻, 事由 A–E), held (保留, 事由 C) or assessed (査定).
//!
//! Pure functions, no I/O. The rules are listed in README.md ("Notices", table "Review
//! rules") and must stay in step with it. In order of precedence, for processing month M:
//! 1. E — the service month is more than 24 months before M (or not a month at all);
//! 2. A — one of the statement's records has a 受付 record-level (△) error;
//! 3. only for a statement's first claim (its (office, 被保険者番号, service month, 種別) was not
//!    returned or held by the month-end run of an earlier month), by the last character of
//!    the 被保険者番号: `7` → B; `6` on a `サ` statement → D; `9` → held (C, 保留); `8` on a
//!    `請`/`サ` statement → 査定;
//! 4. otherwise accepted.

use serde::{Deserialize, Serialize};

use crate::reception::Issue;
use crate::statements::{Kind, Statement};
use crate::window::Month;

/// How far back a service month may lie (in months before the processing month).
pub const TIME_LIMIT_MONTHS: i32 = 24;

/// Byte limit of the 7411 内容 item (漢字 210) in CP932.
const CONTENT_BYTES: usize = 210;

/// What the review decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Accepted,
    /// 返戻: listed in 7411 with its 事由.
    Returned,
    /// 保留: listed in 7411 with 事由 C and 備考 `保留`; not paid.
    Held,
    /// 査定: listed in 7311; paid with the adjusted units.
    Assessed,
}

/// A statement with the review's decision, as stored with the month-end run (the payment
/// phase and `/sim/returns` read it back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reviewed {
    pub office_number: String,
    pub receipt_id: String,
    pub kind: Kind,
    /// 交換情報識別番号.
    pub id: String,
    pub service_month: String,
    /// 証記載保険者番号 as written.
    pub insurer: String,
    pub insured: String,
    /// 居宅介護支援事業所番号 of a 給付管理票.
    pub planner: String,
    pub units: u64,
    pub service_type: String,
    pub service_code: String,
    pub days: u64,
    pub decision: Decision,
    /// 事由: `A`–`E` for returned/held statements, `D` (過剰) for 査定; `None` if accepted.
    pub reason_code: Option<String>,
    /// 7411 内容 or 7311 内容1 (with the error code); empty if accepted.
    pub content: String,
    /// 査定 増減単位数 (negative or 0).
    pub adjustment: i64,
    /// A resubmission: the same statement was returned or held by an earlier month's run.
    pub resubmission: bool,
    /// Accepted after an earlier month held it (counted as 保留復活 in 7211).
    pub revived: bool,
}

impl Reviewed {
    /// Paid in the payment phase: an accepted or assessed `請`/`サ` statement.
    pub fn is_paid(&self) -> bool {
        self.kind != Kind::Benefit
            && matches!(self.decision, Decision::Accepted | Decision::Assessed)
    }

    /// Units after 査定.
    pub fn paid_units(&self) -> u64 {
        self.units.saturating_sub(self.adjustment.unsigned_abs())
    }

    /// The 6-digit 保険者番号 (`00` of an 8-digit number removed).
    pub fn insurer6(&self) -> &str {
        insurer6(&self.insurer)
    }

    /// The 8-digit 保険者番号 (`00` + 6 digits).
    pub fn insurer8(&self) -> String {
        insurer8(&self.insurer)
    }

    /// The key of the first-claim test: (office, 被保険者番号, service month, 種別).
    pub fn history_key(&self) -> String {
        history_key(
            &self.office_number,
            &self.insured,
            &self.service_month,
            self.kind,
        )
    }
}

/// `00123456` → `123456`; other forms unchanged.
pub fn insurer6(insurer: &str) -> &str {
    match insurer.strip_prefix("00") {
        Some(six) if insurer.len() == 8 => six,
        _ => insurer,
    }
}

/// `123456` → `00123456`; other forms unchanged.
pub fn insurer8(insurer: &str) -> String {
    if insurer.len() == 6 {
        format!("00{insurer}")
    } else {
        insurer.to_owned()
    }
}

/// The key under which returned and held statements are remembered.
pub fn history_key(office: &str, insured: &str, service_month: &str, kind: Kind) -> String {
    format!("{office}\u{1f}{insured}\u{1f}{service_month}\u{1f}{kind}")
}

/// What earlier months' runs did with a statement's key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    /// Returned or held by the run of an earlier month.
    pub returned_before: bool,
    /// Held by the run of an earlier month.
    pub held_before: bool,
}

/// The Japanese part of an error message (before the English part in parentheses).
fn japanese_part(message: &str) -> &str {
    message
        .find(" (")
        .and_then(|i| message.get(..i))
        .unwrap_or(message)
        .trim()
}

/// Cuts `text` so that its CP932 encoding has at most `max` bytes.
fn fit_cp932(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut bytes = 0;
    for c in text.chars() {
        let width = if c.is_ascii() || ('\u{ff61}'..='\u{ff9f}').contains(&c) {
            1
        } else {
            2
        };
        if bytes + width > max {
            break;
        }
        bytes += width;
        out.push(c);
    }
    out
}

/// Reviews one statement of processing month `month` (see the module documentation).
pub fn review(
    office_number: &str,
    receipt_id: &str,
    st: &Statement,
    errors: &[&Issue],
    month: Month,
    history: History,
) -> Reviewed {
    let mut r = Reviewed {
        office_number: office_number.to_owned(),
        receipt_id: receipt_id.to_owned(),
        kind: st.kind,
        id: st.id.clone(),
        service_month: st.service_month.clone(),
        insurer: st.insurer.clone(),
        insured: st.insured.clone(),
        planner: st.planner.clone(),
        units: st.units,
        service_type: st.service_type.clone(),
        service_code: st.service_code.clone(),
        days: st.days,
        decision: Decision::Accepted,
        reason_code: None,
        content: String::new(),
        adjustment: 0,
        resubmission: history.returned_before,
        revived: false,
    };
    let set = |r: &mut Reviewed, decision, reason: &str, content: String| {
        r.decision = decision;
        r.reason_code = Some(reason.to_owned());
        r.content = fit_cp932(&content, CONTENT_BYTES);
    };
    // 1. E: 時効 (or no service month at all).
    match Month::parse(&st.service_month) {
        None => {
            set(
                &mut r,
                Decision::Returned,
                "E",
                format!(
                    "サービス提供年月「{}」が不正です（エラーコード ASE2）",
                    st.service_month
                ),
            );
            return r;
        }
        Some(service) if month.ordinal() - service.ordinal() > TIME_LIMIT_MONTHS => {
            set(
                &mut r,
                Decision::Returned,
                "E",
                "請求期限（サービス提供月から２年）を過ぎているため却下します（エラーコード ASE1）"
                    .to_owned(),
            );
            return r;
        }
        Some(_) => {}
    }
    // 2. A: 一次チェック.
    if let Some(first) = errors.first() {
        let more = if errors.len() > 1 {
            format!("（ほか{}件）", errors.len() - 1)
        } else {
            String::new()
        };
        set(
            &mut r,
            Decision::Returned,
            "A",
            format!(
                "一次チェックエラー（エラーコード {}、レコード番号 {}）{}{more}",
                first.code,
                first.record_no.unwrap_or(0),
                japanese_part(&first.message)
            ),
        );
        return r;
    }
    // 3. First claims only.
    if !history.returned_before {
        let last = st.insured.chars().last();
        match (last, st.kind) {
            (Some('7'), _) => {
                set(
                    &mut r,
                    Decision::Returned,
                    "B",
                    "受給者台帳に該当する被保険者が存在しません（エラーコード ASB1）".to_owned(),
                );
                return r;
            }
            (Some('6'), Kind::Plan) => {
                set(
                    &mut r,
                    Decision::Returned,
                    "D",
                    "居宅介護支援費等に対応する給付管理票が存在しません（エラーコード ASD1）"
                        .to_owned(),
                );
                return r;
            }
            (Some('9'), _) => {
                set(
                    &mut r,
                    Decision::Held,
                    "C",
                    "給付管理票との突合ができないため審査を保留します（エラーコード ASC1）"
                        .to_owned(),
                );
                return r;
            }
            (Some('8'), Kind::Claim | Kind::Plan) => {
                let cut = st.units.min((st.units / 10).max(1));
                r.adjustment = -i64::try_from(cut).unwrap_or(i64::MAX);
                set(
                    &mut r,
                    Decision::Assessed,
                    "D",
                    "サービス提供回数が算定基準を超えています（エラーコード SAD1）".to_owned(),
                );
                return r;
            }
            _ => {}
        }
    }
    // 4. Accepted.
    r.revived = history.held_before;
    r
}

/// 7311 内容2: `確定単位数(X)、請求単位数(Y)`.
pub fn assessment_detail(r: &Reviewed) -> String {
    format!("確定単位数({})、請求単位数({})", r.paid_units(), r.units)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(kind: Kind, insured: &str, service_month: &str, units: u64) -> Statement {
        Statement {
            kind,
            id: match kind {
                Kind::Claim => "7131",
                Kind::Benefit => "8222",
                Kind::Plan => "8124",
            }
            .into(),
            service_month: service_month.into(),
            insurer: if kind == Kind::Plan {
                "139998"
            } else {
                "00139998"
            }
            .into(),
            insured: insured.into(),
            planner: String::new(),
            units,
            service_type: "11".into(),
            service_code: "111111".into(),
            days: 8,
            records: vec![3, 4, 5],
        }
    }

    fn decide(st: &Statement, errors: &[&Issue], history: History) -> Reviewed {
        review(
            "1379999996",
            "R20250603-000001",
            st,
            errors,
            Month::parse("202506").unwrap(),
            history,
        )
    }

    fn outcome(r: &Reviewed) -> (Decision, Option<&str>) {
        (r.decision, r.reason_code.as_deref())
    }

    const FIRST: History = History {
        returned_before: false,
        held_before: false,
    };

    #[test]
    fn last_digit_rules_on_first_claims() {
        use Decision::*;
        let expect = [
            ('0', [(Accepted, None), (Accepted, None), (Accepted, None)]),
            ('5', [(Accepted, None), (Accepted, None), (Accepted, None)]),
            (
                '6',
                [(Accepted, None), (Accepted, None), (Returned, Some("D"))],
            ),
            (
                '7',
                [
                    (Returned, Some("B")),
                    (Returned, Some("B")),
                    (Returned, Some("B")),
                ],
            ),
            (
                '8',
                [
                    (Assessed, Some("D")),
                    (Accepted, None),
                    (Assessed, Some("D")),
                ],
            ),
            (
                '9',
                [(Held, Some("C")), (Held, Some("C")), (Held, Some("C"))],
            ),
        ];
        for (digit, outcomes) in expect {
            for (kind, want) in [Kind::Claim, Kind::Benefit, Kind::Plan]
                .into_iter()
                .zip(outcomes)
            {
                let st = statement(kind, &format!("000012345{digit}"), "202505", 2000);
                let r = decide(&st, &[], FIRST);
                assert_eq!(outcome(&r), want, "{digit} {kind}");
                assert_eq!(r.content.is_empty(), want.1.is_none());
            }
        }
        let r = decide(
            &statement(Kind::Claim, "0000000009", "202505", 1),
            &[],
            FIRST,
        );
        assert!(r.content.contains("ASC1"), "{}", r.content);
        assert!(!r.is_paid());
    }

    #[test]
    fn assessments_cut_a_tenth_at_least_one_unit() {
        for (units, cut, paid) in [(2000, -200, 1800), (15, -1, 14), (9, -1, 8), (0, 0, 0)] {
            let r = decide(
                &statement(Kind::Claim, "0000000008", "202505", units),
                &[],
                FIRST,
            );
            assert_eq!((r.adjustment, r.paid_units()), (cut, paid), "{units}");
            assert!(r.is_paid());
            assert_eq!(
                assessment_detail(&r),
                format!("確定単位数({paid})、請求単位数({units})")
            );
        }
    }

    #[test]
    fn precedence_time_limit_then_first_check_then_digits() {
        let issue = Issue {
            record_no: Some(4),
            code: "bad_insurer_number".into(),
            message: "証記載保険者番号「00139997」が不正です (invalid insurer number)".into(),
        };
        // 24 months before is still in time; 25 is not.
        let r = decide(
            &statement(Kind::Claim, "0000000007", "202306", 10),
            &[],
            FIRST,
        );
        assert_eq!(outcome(&r), (Decision::Returned, Some("B")));
        let r = decide(
            &statement(Kind::Claim, "0000000007", "202305", 10),
            &[&issue],
            FIRST,
        );
        assert_eq!(outcome(&r), (Decision::Returned, Some("E")));
        assert!(r.content.contains("ASE1"));
        let r = decide(
            &statement(Kind::Claim, "0000000007", "2024-5", 10),
            &[],
            FIRST,
        );
        assert_eq!(outcome(&r), (Decision::Returned, Some("E")));
        // A beats the digit rules, and names the error.
        let r = decide(
            &statement(Kind::Claim, "0000000007", "202505", 10),
            &[&issue, &issue],
            FIRST,
        );
        assert_eq!(outcome(&r), (Decision::Returned, Some("A")));
        assert_eq!(
            r.content,
            "一次チェックエラー（エラーコード bad_insurer_number、レコード番号 4）\
             証記載保険者番号「00139997」が不正です（ほか1件）"
        );
    }

    #[test]
    fn resubmissions_skip_the_digit_rules_but_not_e_and_a() {
        let again = History {
            returned_before: true,
            held_before: false,
        };
        for digit in ['6', '7', '8', '9'] {
            let r = decide(
                &statement(Kind::Plan, &format!("000000000{digit}"), "202505", 10),
                &[],
                again,
            );
            assert_eq!(outcome(&r), (Decision::Accepted, None), "{digit}");
            assert!(r.resubmission && !r.revived);
        }
        let r = decide(
            &statement(Kind::Claim, "0000000007", "202305", 10),
            &[],
            again,
        );
        assert_eq!(outcome(&r), (Decision::Returned, Some("E")));
        let held = History {
            returned_before: true,
            held_before: true,
        };
        let r = decide(
            &statement(Kind::Claim, "0000000009", "202505", 10),
            &[],
            held,
        );
        assert_eq!(outcome(&r), (Decision::Accepted, None));
        assert!(r.revived);
    }

    #[test]
    fn contents_fit_the_item() {
        let long = Issue {
            record_no: Some(4),
            code: "x".into(),
            message: "長".repeat(300),
        };
        let r = decide(&statement(Kind::Claim, "1", "202505", 1), &[&long], FIRST);
        let (bytes, _, bad) = encoding_rs::SHIFT_JIS.encode(&r.content);
        assert!(!bad);
        assert!(bytes.len() <= CONTENT_BYTES && bytes.len() >= CONTENT_BYTES - 1);
    }

    #[test]
    fn insurer_forms() {
        assert_eq!(insurer6("00139998"), "139998");
        assert_eq!(insurer6("139998"), "139998");
        assert_eq!(insurer8("139998"), "00139998");
        assert_eq!(insurer8("00139998"), "00139998");
    }
}
