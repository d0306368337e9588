//! Identifiers of the 介護 claim world that the simulator validates: 事業所番号 (10 digits),
//! 保険者番号 (6 digits, written as 8 with a leading `00` inside 明細書 records) and the KJ user ID.
//!
//! Invariant: every number is checked with the single modulus-10 check-digit rule of
//! claim-format.md §7 (weights 2,1,2,1… from the right, digit sums of the products,
//! check = (10 − sum mod 10) mod 10); nothing else in the crate re-implements it.

/// Computes the check digit for the digits that precede it. `None` if a byte is not a digit.
pub fn check_digit(body: &str) -> Option<u8> {
    let mut sum: u32 = 0;
    for (i, b) in body.bytes().rev().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        let d = u32::from(b - b'0');
        let product = if i % 2 == 0 { d * 2 } else { d };
        sum += product / 10 + product % 10;
    }
    // `sum % 10` is below 10, so the result always fits in a u8.
    Some(((10 - sum % 10) % 10) as u8)
}

/// True when `number` is all digits, exactly `len` long, and its last digit is the check digit
/// of the others.
fn valid_with_check_digit(number: &str, len: usize) -> bool {
    if number.len() != len || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let (body, last) = number.split_at(len - 1);
    match (check_digit(body), last.bytes().next()) {
        (Some(expected), Some(actual)) => actual - b'0' == expected,
        _ => false,
    }
}

/// A valid 10-digit 事業所番号.
pub fn is_valid_office_number(number: &str) -> bool {
    valid_with_check_digit(number, 10)
}

/// A valid 6-digit 保険者番号.
pub fn is_valid_insurer_number(number: &str) -> bool {
    valid_with_check_digit(number, 6)
}

/// A valid 8-digit 証記載保険者番号 as written in 明細書 records: `00` + a valid 6-digit number.
pub fn is_valid_insurer_number_8(number: &str) -> bool {
    number.len() == 8
        && number.starts_with("00")
        && number.get(2..).is_some_and(is_valid_insurer_number)
}

/// A plausible KJ user ID: starts with `KJ`, then at least one more printable ASCII character
/// other than `:` (it travels in HTTP Basic credentials).
pub fn is_valid_user_id(user_id: &str) -> bool {
    user_id.len() > 2
        && user_id.starts_with("KJ")
        && user_id.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// A SHA-256 fingerprint written as 64 hexadecimal digits (either case).
pub fn is_valid_fingerprint(fingerprint: &str) -> bool {
    fingerprint.len() == 64 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn office_numbers_from_the_design_documents_are_valid() {
        for n in [
            "1379999996",
            "1379999988",
            "1210600472",
            "1210700306",
            "1210600043",
            "1213100017",
        ] {
            assert!(is_valid_office_number(n), "{n}");
        }
    }

    #[test]
    fn insurer_numbers_from_the_design_documents_are_valid() {
        for n in ["139998", "131011", "131045", "122192", "122382"] {
            assert!(is_valid_insurer_number(n), "{n}");
        }
        assert!(is_valid_insurer_number_8("00139998"));
        assert!(is_valid_insurer_number_8("00131011"));
    }

    #[test]
    fn a_wrong_check_digit_is_rejected() {
        assert!(!is_valid_office_number("1379999997"));
        assert!(!is_valid_office_number("1379999990"));
        assert!(!is_valid_insurer_number("139997"));
        assert!(!is_valid_insurer_number_8("00139997"));
        assert!(!is_valid_insurer_number_8("10139998"));
        assert!(!is_valid_insurer_number_8("139998"));
    }

    #[test]
    fn wrong_lengths_and_non_digits_are_rejected() {
        assert!(!is_valid_office_number("137999999"));
        assert!(!is_valid_office_number("13799999960"));
        assert!(!is_valid_office_number("13799a9996"));
        assert!(!is_valid_office_number(""));
        assert_eq!(check_digit("12a"), None);
    }

    #[test]
    fn check_digit_follows_the_weighting_rule() {
        // 137999999: from the right 9×2→18→9, 9, 9×2→9, 9, 9×2→9, 9, 7×2→14→5, 3, 1×2→2 = 64.
        assert_eq!(check_digit("137999999"), Some(6));
        // 13999: 9×2→9, 9, 9×2→9, 3, 1×2→2 = 32 → 8.
        assert_eq!(check_digit("13999"), Some(8));
        // 19: 9×2→18→9, 1 = 10, a multiple of ten, gives 0.
        assert_eq!(check_digit("19"), Some(0));
    }

    #[test]
    fn user_ids_need_the_kj_prefix() {
        assert!(is_valid_user_id("KJ00000001"));
        assert!(!is_valid_user_id("KX00000001"));
        assert!(!is_valid_user_id("KJ"));
        assert!(!is_valid_user_id("KJ0:1"));
        assert!(!is_valid_user_id("kj00000001"));
    }
}
