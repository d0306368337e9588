//! Times as people in a Japanese care office read them: Japan Standard Time (UTC+9, no daylight
//! saving), in Japanese date order.
//!
//! Invariant: display only. The pipeline never takes the processing month or the reception
//! window from these; those come from the gateway.

use jiff::Timestamp;
use jiff::tz::{self, TimeZone};

/// Japan Standard Time.
pub fn jst() -> TimeZone {
    TimeZone::fixed(tz::offset(9))
}

/// `2026年12月3日 10:05`.
pub fn jst_minutes(t: Timestamp) -> String {
    let z = t.to_zoned_datetime(jst());
    format!(
        "{}年{}月{}日 {:02}:{:02}",
        z.year(),
        z.month(),
        z.day(),
        z.hour(),
        z.minute()
    )
}

/// `2026-12-03 10:05 JST`, for English text beside [`jst_minutes`].
pub fn jst_minutes_en(t: Timestamp) -> String {
    let z = t.to_zoned_datetime(jst());
    format!(
        "{}-{:02}-{:02} {:02}:{:02} JST",
        z.year(),
        z.month(),
        z.day(),
        z.hour(),
        z.minute()
    )
}

/// `20261203-100507` in JST, for file names.
pub fn jst_file_stamp(t: Timestamp) -> String {
    let z = t.to_zoned_datetime(jst());
    format!(
        "{}{:02}{:02}-{:02}{:02}{:02}",
        z.year(),
        z.month(),
        z.day(),
        z.hour(),
        z.minute(),
        z.second()
    )
}

/// `10:05:07`, for progress lines.
pub fn jst_clock(t: Timestamp) -> String {
    let z = t.to_zoned_datetime(jst());
    format!("{:02}:{:02}:{:02}", z.hour(), z.minute(), z.second())
}

/// `2026-12-03 10:05:07` in JST (log lines).
pub fn jst_seconds(t: Timestamp) -> String {
    let z = t.to_zoned_datetime(jst());
    format!(
        "{}-{:02}-{:02} {:02}:{:02}:{:02}",
        z.year(),
        z.month(),
        z.day(),
        z.hour(),
        z.minute(),
        z.second()
    )
}

/// RFC 3339 with the +09:00 offset, e.g. `2026-12-03T10:05:07+09:00`.
pub fn jst_rfc3339(t: Timestamp) -> String {
    t.display_with_offset(tz::offset(9)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_jst() {
        let t: Timestamp = "2026-12-03T01:05:07Z".parse().unwrap();
        assert_eq!(jst_minutes(t), "2026年12月3日 10:05");
        assert_eq!(jst_clock(t), "10:05:07");
        assert!(
            jst_rfc3339(t).starts_with("2026-12-03T10:05:07"),
            "{}",
            jst_rfc3339(t)
        );
        assert!(jst_rfc3339(t).ends_with("+09:00"));
    }
}
