//! The monthly reception window (受付期間) and the processing month (処理対象年月), in JST.
//!
//! Rule kept here and nowhere else: the window of month M opens at `open_day` 00:00 and closes
//! at `close_day` + `close_time` (`24:00` = the next day 00:00); `closes_at` is the first closed
//! instant, so the window is open for `opens_at <= now < closes_at`. The processing month of a
//! submission is the month of the window it arrived in. After the cut-off the processing month in
//! force is the next month and the times shown are those of the next month's window. Withdrawal
//! is allowed while `opens_at <= now < withdraw_until` of the arrival window. Days beyond the
//! end of a month mean its last day.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, Time};

use crate::clock::{JST, timestamp_from_ms};
use crate::config::{ConfigError, WindowConfig};

/// A calendar month (the processing month, 処理対象年月).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i16,
    /// 1..=12
    pub month: i8,
}

impl Month {
    /// The JST month containing `ts`.
    pub fn of(ts: Timestamp) -> Month {
        let dt = JST.to_datetime(ts);
        Month {
            year: dt.year(),
            month: dt.month(),
        }
    }

    /// The following month.
    pub fn next(self) -> Month {
        if self.month >= 12 {
            Month {
                year: self.year.saturating_add(1),
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The preceding month (the service month of a claim processed in this month).
    pub fn prev(self) -> Month {
        if self.month <= 1 {
            Month {
                year: self.year.saturating_sub(1),
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// Parses `YYYYMM`.
    pub fn parse(s: &str) -> Option<Month> {
        if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year: i16 = s.get(..4)?.parse().ok()?;
        let month: i8 = s.get(4..)?.parse().ok()?;
        (1..=12).contains(&month).then_some(Month { year, month })
    }

    /// Months since the year 0 (`year × 12 + month − 1`): differences count whole months.
    pub fn ordinal(self) -> i32 {
        i32::from(self.year) * 12 + i32::from(self.month) - 1
    }

    /// The number of days in this month (28..=31); 31 if the month cannot be represented.
    pub fn days(self) -> i8 {
        Date::new(self.year, self.month, 1).map_or(31, |d| d.days_in_month())
    }

    /// The given day of this month at 00:00 JST, clamping the day to the month's length.
    pub(crate) fn day_start(self, day: u8) -> Result<Timestamp, WindowError> {
        let first = Date::new(self.year, self.month, 1)?;
        let last = first.days_in_month();
        let day = i8::try_from(day).unwrap_or(i8::MAX).clamp(1, last);
        let date = Date::new(self.year, self.month, day)?;
        Ok(JST.to_timestamp(date.to_datetime(Time::midnight()))?)
    }
}

impl fmt::Display for Month {
    /// `YYYYMM`, as in the control record and the health response.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}{:02}", self.year, self.month)
    }
}

/// A time that cannot be represented (years far outside the supported range).
#[derive(Debug, thiserror::Error)]
#[error("time out of range: {0}")]
pub struct WindowError(#[from] jiff::Error);

/// The instants of one month's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowTimes {
    pub month: Month,
    pub opens_at: Timestamp,
    pub closes_at: Timestamp,
    pub withdraw_until: Timestamp,
}

/// The window as seen at one instant (what `/v1/health` reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStatus {
    pub open: bool,
    /// This month's window while open or before it opens; next month's after the cut-off.
    pub times: WindowTimes,
}

impl WindowStatus {
    /// The processing month in force.
    pub fn processing_month(&self) -> Month {
        self.times.month
    }
}

/// A validated window rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    open_day: u8,
    close_day: u8,
    close_minutes: u32,
    withdraw_minutes: u32,
}

fn plus_minutes(ts: Timestamp, minutes: u32) -> Timestamp {
    timestamp_from_ms(
        ts.as_millisecond()
            .saturating_add(i64::from(minutes) * 60_000),
    )
}

impl Window {
    /// Builds the rule from the configuration.
    pub fn new(config: &WindowConfig) -> Result<Window, ConfigError> {
        Ok(Window {
            open_day: config.open_day,
            close_day: config.close_day,
            close_minutes: config.close_minutes()?,
            withdraw_minutes: config.withdraw_close_minutes()?,
        })
    }

    /// The window of `month`.
    pub fn times(&self, month: Month) -> Result<WindowTimes, WindowError> {
        let opens_at = month.day_start(self.open_day)?;
        let close_day = month.day_start(self.close_day)?;
        Ok(WindowTimes {
            month,
            opens_at,
            closes_at: plus_minutes(close_day, self.close_minutes),
            withdraw_until: plus_minutes(close_day, self.withdraw_minutes),
        })
    }

    /// The window in force at `now`.
    pub fn status(&self, now: Timestamp) -> Result<WindowStatus, WindowError> {
        let this = self.times(Month::of(now))?;
        if now < this.closes_at {
            return Ok(WindowStatus {
                open: now >= this.opens_at,
                times: this,
            });
        }
        Ok(WindowStatus {
            open: false,
            times: self.times(this.month.next())?,
        })
    }

    /// Whether a submission that arrived in the window of `month` may still be withdrawn.
    pub fn withdraw_allowed(&self, month: Month, now: Timestamp) -> Result<bool, WindowError> {
        let t = self.times(month)?;
        Ok(t.opens_at <= now && now < t.withdraw_until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn window(open: u8, close: u8, close_time: &str, withdraw: &str) -> Window {
        Window::new(&WindowConfig {
            open_day: open,
            close_day: close,
            close_time: close_time.into(),
            withdraw_close_time: withdraw.into(),
        })
        .unwrap()
    }

    fn default_window() -> Window {
        Window::new(&WindowConfig::default()).unwrap()
    }

    #[test]
    fn open_inside_the_window_with_this_months_times() {
        let s = default_window()
            .status(ts("2025-06-03T10:00:00+09:00"))
            .unwrap();
        assert!(s.open);
        assert_eq!(s.processing_month().to_string(), "202506");
        assert_eq!(s.times.opens_at, ts("2025-06-01T00:00:00+09:00"));
        assert_eq!(s.times.closes_at, ts("2025-06-11T00:00:00+09:00"));
        assert_eq!(s.times.withdraw_until, ts("2025-06-11T00:00:00+09:00"));
    }

    #[test]
    fn the_24_00_cut_off_is_the_next_day_midnight() {
        let w = default_window();
        let last = w.status(ts("2025-06-10T23:59:59.999+09:00")).unwrap();
        assert!(last.open);
        assert_eq!(last.processing_month().to_string(), "202506");
        let closed = w.status(ts("2025-06-11T00:00:00+09:00")).unwrap();
        assert!(!closed.open);
        assert_eq!(closed.processing_month().to_string(), "202507");
        assert_eq!(closed.times.opens_at, ts("2025-07-01T00:00:00+09:00"));
        assert_eq!(closed.times.closes_at, ts("2025-07-11T00:00:00+09:00"));
    }

    #[test]
    fn jst_month_boundary_not_utc() {
        let w = default_window();
        // 2025-06-30T15:00Z is 2025-07-01 00:00 JST: July's window is open.
        let s = w.status(ts("2025-06-30T15:00:00Z")).unwrap();
        assert!(s.open);
        assert_eq!(s.processing_month().to_string(), "202507");
        // One millisecond earlier it is still June 30 in Japan: closed, next is July.
        let s = w.status(ts("2025-06-30T14:59:59.999Z")).unwrap();
        assert!(!s.open);
        assert_eq!(s.processing_month().to_string(), "202507");
    }

    #[test]
    fn december_rolls_into_the_next_year() {
        let s = default_window()
            .status(ts("2026-12-20T12:00:00+09:00"))
            .unwrap();
        assert!(!s.open);
        assert_eq!(s.processing_month().to_string(), "202701");
        assert_eq!(s.times.opens_at, ts("2027-01-01T00:00:00+09:00"));
    }

    #[test]
    fn regional_cut_offs() {
        let w = window(1, 10, "23:30", "20:00");
        let t = w.times(Month::parse("202506").unwrap()).unwrap();
        assert_eq!(t.closes_at, ts("2025-06-10T23:30:00+09:00"));
        assert_eq!(t.withdraw_until, ts("2025-06-10T20:00:00+09:00"));
        assert!(w.status(ts("2025-06-10T23:29:59+09:00")).unwrap().open);
        assert!(!w.status(ts("2025-06-10T23:30:00+09:00")).unwrap().open);
        let m = Month::parse("202506").unwrap();
        assert!(
            w.withdraw_allowed(m, ts("2025-06-10T19:59:59+09:00"))
                .unwrap()
        );
        assert!(
            !w.withdraw_allowed(m, ts("2025-06-10T20:00:00+09:00"))
                .unwrap()
        );
        assert!(
            !w.withdraw_allowed(m, ts("2025-05-31T23:00:00+09:00"))
                .unwrap()
        );
    }

    #[test]
    fn before_a_late_opening_day_the_window_of_this_month_is_next() {
        let w = window(3, 12, "17:15", "17:15");
        let s = w.status(ts("2025-06-02T08:00:00+09:00")).unwrap();
        assert!(!s.open);
        assert_eq!(s.processing_month().to_string(), "202506");
        assert_eq!(s.times.opens_at, ts("2025-06-03T00:00:00+09:00"));
    }

    #[test]
    fn days_past_the_month_end_are_clamped() {
        let w = window(1, 31, "24:00", "24:00");
        let t = w.times(Month::parse("202502").unwrap()).unwrap();
        assert_eq!(t.closes_at, ts("2025-03-01T00:00:00+09:00"));
        // Always open with this rule.
        assert!(w.status(ts("2025-02-28T23:59:59+09:00")).unwrap().open);
        assert!(w.status(ts("2025-03-01T00:00:00+09:00")).unwrap().open);
    }

    #[test]
    fn month_parse_and_display() {
        assert_eq!(Month::parse("202612").unwrap().next().to_string(), "202701");
        assert_eq!(Month::parse("202701").unwrap().prev().to_string(), "202612");
        assert_eq!(Month::parse("202606").unwrap().prev().to_string(), "202605");
        assert!(Month::parse("202613").is_none());
        assert!(Month::parse("20261").is_none());
        assert!(Month::parse("2026a1").is_none());
        let (a, b) = (
            Month::parse("202606").unwrap(),
            Month::parse("202405").unwrap(),
        );
        assert_eq!(a.ordinal() - b.ordinal(), 25);
        assert_eq!(Month::parse("202402").unwrap().days(), 29);
        assert_eq!(Month::parse("202502").unwrap().days(), 28);
        assert_eq!(Month::parse("202507").unwrap().days(), 31);
    }
}
