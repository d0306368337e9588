//! Identifiers of the claim domain as typed values, parsed once at the edge.
//!
//! Invariant: an `OfficeNumber` or `InsurerNumber` that exists has the right number of digits and
//! a valid modulus-10 check digit (claim-format.md §7), and a `ProcessingMonth` is a real
//! calendar month. Code past the parser never re-validates them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused, with a message a clerk can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Wrong length or a non-digit character.
    #[error(
        "{what}は{digits}桁の数字でなければなりません: 「{value}」 ({what_en} must be {digits} digits)"
    )]
    Format {
        what: &'static str,
        what_en: &'static str,
        digits: usize,
        value: String,
    },
    /// The last digit does not match the modulus-10 check digit.
    #[error(
        "{what}「{value}」の検証番号（最後の桁）が正しくありません。正しくは {expected} です ({what_en} {value}: bad check digit, expected {expected})"
    )]
    CheckDigit {
        what: &'static str,
        what_en: &'static str,
        value: String,
        expected: u8,
    },
    /// Not a YYYYMM month.
    #[error("年月「{value}」は YYYYMM 形式の正しい年月ではありません (not a valid YYYYMM month)")]
    Month { value: String },
    /// A 被保険者番号 that is not ten half-width letters or digits.
    #[error(
        "被保険者番号は半角の英数字 10 文字です（短い番号は前を 0 で埋めます）: 「{value}」 (insured numbers are 10 ASCII letters or digits)"
    )]
    Insured { value: String },
    /// A federation user ID that does not start with `KJ`.
    #[error(
        "国保連の伝送用ユーザーIDは「KJ」で始まります: 「{value}」 (federation user IDs start with KJ)"
    )]
    UserId { value: String },
}

/// The modulus-10 check digit over `body` (the digits before the check digit): multiply from the
/// right alternately by 2, 1, 2, 1…, add the digits of each product, and take
/// `(10 - sum % 10) % 10`. `None` if `body` holds a non-digit.
pub fn mod10_check_digit(body: &str) -> Option<u8> {
    let mut sum = 0u32;
    for (i, c) in body.chars().rev().enumerate() {
        let d = c.to_digit(10)?;
        let p = if i % 2 == 0 { d * 2 } else { d };
        sum += p / 10 + p % 10;
    }
    Some(((10 - sum % 10) % 10) as u8)
}

fn parse_checked(
    value: &str,
    digits: usize,
    what: &'static str,
    what_en: &'static str,
) -> Result<(), IdError> {
    if value.len() != digits || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdError::Format {
            what,
            what_en,
            digits,
            value: value.to_owned(),
        });
    }
    let (body, check) = value.split_at(digits - 1);
    let expected = mod10_check_digit(body).ok_or_else(|| IdError::Format {
        what,
        what_en,
        digits,
        value: value.to_owned(),
    })?;
    if check.as_bytes()[0] - b'0' != expected {
        return Err(IdError::CheckDigit {
            what,
            what_en,
            value: value.to_owned(),
            expected,
        });
    }
    Ok(())
}

/// 事業所番号: 10 digits, the last a check digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OfficeNumber(String);

impl OfficeNumber {
    /// The number as written in claim files.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for OfficeNumber {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        parse_checked(s, 10, "事業所番号", "office number")?;
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for OfficeNumber {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<OfficeNumber> for String {
    fn from(n: OfficeNumber) -> String {
        n.0
    }
}

impl fmt::Display for OfficeNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 保険者番号: 6 digits, the last a check digit. In 明細書 records it is written with two leading
/// zeros (8 digits); `parse_padded` accepts that form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InsurerNumber(String);

impl InsurerNumber {
    /// Parses the 8-digit `00xxxxxx` form used in 明細書 and 給付管理票 records.
    pub fn parse_padded(s: &str) -> Result<Self, IdError> {
        match s.strip_prefix("00") {
            Some(rest) if s.len() == 8 => rest.parse(),
            _ => Err(IdError::Format {
                what: "証記載保険者番号",
                what_en: "insurer number (8-digit form)",
                digits: 8,
                value: s.to_owned(),
            }),
        }
    }

    /// The 6-digit number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for InsurerNumber {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        parse_checked(s, 6, "保険者番号", "insurer number")?;
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for InsurerNumber {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<InsurerNumber> for String {
    fn from(n: InsurerNumber) -> String {
        n.0
    }
}

impl fmt::Display for InsurerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A calendar month written `YYYYMM` in claim files. Used for 処理対象年月 (the month whose
/// reception window a file is for) and サービス提供年月.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Month {
    year: i16,
    month: i8,
}

/// 処理対象年月: the month of the reception window a claim file is submitted in.
pub type ProcessingMonth = Month;

/// サービス提供年月: the month the care was given in.
pub type ServiceMonth = Month;

impl Month {
    /// A month from its parts; `None` unless `month` is 1–12 and the year has four digits.
    pub fn new(year: i16, month: i8) -> Option<Month> {
        ((1000..=9999).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    /// The year.
    pub fn year(self) -> i16 {
        self.year
    }

    /// The month, 1–12.
    pub fn month(self) -> i8 {
        self.month
    }

    /// The month before this one.
    pub fn previous(self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// The month after this one.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Months from `self` to `later` (negative when `later` is earlier).
    pub fn months_until(self, later: Month) -> i32 {
        (i32::from(later.year) * 12 + i32::from(later.month))
            - (i32::from(self.year) * 12 + i32::from(self.month))
    }

    /// Written the Japanese way, e.g. `2026年12月`.
    pub fn to_japanese(self) -> String {
        format!("{}年{}月", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::Month {
            value: s.to_owned(),
        };
        if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i16 = s[..4].parse().map_err(|_| bad())?;
        let month: i8 = s[4..].parse().map_err(|_| bad())?;
        Month::new(year, month).ok_or_else(bad)
    }
}

impl TryFrom<String> for Month {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<Month> for String {
    fn from(m: Month) -> String {
        m.to_string()
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}{:02}", self.year, self.month)
    }
}

/// 被保険者番号: 10 half-width characters, digits or capital letters (shorter numbers are
/// right-aligned and zero-filled; public-assistance recipients start with `H`). It has no check
/// digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InsuredNumber(String);

impl InsuredNumber {
    /// The number as written in claim files.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for InsuredNumber {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let ok = s.len() == 10
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Insured {
                value: s.to_owned(),
            })
        }
    }
}

impl TryFrom<String> for InsuredNumber {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<InsuredNumber> for String {
    fn from(n: InsuredNumber) -> String {
        n.0
    }
}

impl fmt::Display for InsuredNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The federation's user ID for internet claims (starts with `KJ`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FederationUserId(String);

impl FederationUserId {
    /// The ID as sent to the gateway.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for FederationUserId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let ok = s.len() > 2
            && s.starts_with("KJ")
            && s.bytes().all(|b| b.is_ascii_alphanumeric())
            && s.len() <= 32;
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::UserId {
                value: s.to_owned(),
            })
        }
    }
}

impl TryFrom<String> for FederationUserId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<FederationUserId> for String {
    fn from(n: FederationUserId) -> String {
        n.0
    }
}

impl fmt::Display for FederationUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_of_published_numbers() {
        // Real numbers whose check digits claim-format.md §7 verified by computation.
        for n in [
            "1210600472",
            "1210700306",
            "1210600043",
            "1213100017",
            "1379999996",
        ] {
            assert!(n.parse::<OfficeNumber>().is_ok(), "{n}");
        }
        for n in ["131011", "131045", "122192", "122382", "139998"] {
            assert!(n.parse::<InsurerNumber>().is_ok(), "{n}");
        }
    }

    #[test]
    fn every_wrong_check_digit_is_refused() {
        for last in 0..=9u8 {
            let n = format!("137999999{last}");
            let r = n.parse::<OfficeNumber>();
            assert_eq!(r.is_ok(), last == 6, "{n}: {r:?}");
        }
        match "1379999990".parse::<OfficeNumber>() {
            Err(IdError::CheckDigit { expected, .. }) => assert_eq!(expected, 6),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_numbers_are_refused_with_a_reason() {
        for n in [
            "",
            "137999999",
            "13799999966",
            "137999999x",
            "１３７９９９９９９６",
        ] {
            let e = n.parse::<OfficeNumber>().unwrap_err();
            assert!(matches!(e, IdError::Format { .. }), "{n}: {e:?}");
            assert!(e.to_string().contains("事業所番号"));
        }
    }

    #[test]
    fn padded_insurer_numbers() {
        assert_eq!(
            InsurerNumber::parse_padded("00139998").unwrap().as_str(),
            "139998"
        );
        assert!(InsurerNumber::parse_padded("139998").is_err());
        assert!(InsurerNumber::parse_padded("01139998").is_err());
        assert!(InsurerNumber::parse_padded("00139990").is_err());
    }

    #[test]
    fn months_parse_and_step() {
        let m: Month = "202612".parse().unwrap();
        assert_eq!(m.next().to_string(), "202701");
        assert_eq!(m.next().previous(), m);
        assert_eq!(
            "202601".parse::<Month>().unwrap().previous().to_string(),
            "202512"
        );
        for bad in ["202613", "202600", "20261", "2026-1", "abcdef"] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
        assert_eq!(m.to_japanese(), "2026年12月");
    }

    #[test]
    fn insured_numbers_and_month_distance() {
        assert!("0000123456".parse::<InsuredNumber>().is_ok());
        assert!("H000123456".parse::<InsuredNumber>().is_ok());
        for bad in [
            "123456",
            "00001234567",
            "h000123456",
            "0000-12345",
            "０００００１２３４５",
        ] {
            assert!(bad.parse::<InsuredNumber>().is_err(), "{bad}");
        }
        let a: Month = "202505".parse().unwrap();
        assert_eq!(a.months_until("202506".parse().unwrap()), 1);
        assert_eq!(a.months_until("202705".parse().unwrap()), 24);
        assert_eq!(a.months_until("202412".parse().unwrap()), -5);
    }

    #[test]
    fn user_ids_start_with_kj() {
        assert!("KJ12345678".parse::<FederationUserId>().is_ok());
        for bad in ["KJ", "kj1234", "AB1234", "KJ12 34"] {
            assert!(bad.parse::<FederationUserId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: OfficeNumber = serde_json::from_str("\"1379999996\"").unwrap();
        assert_eq!(ok.as_str(), "1379999996");
        assert!(serde_json::from_str::<OfficeNumber>("\"1379999990\"").is_err());
    }
}
