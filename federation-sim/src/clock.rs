//! The simulator clock: real time, or a virtual time that was set once and runs on at real
//! speed from there. Also the JST (fixed +09:00) helpers every other module formats times with.
//!
//! Invariant: the virtual clock is a pure function of the persisted [`ClockSetting`]
//! (`virtual_ms`, `set_at_real_ms`) and the real clock —
//! `now = virtual_ms + (real_now − set_at_real_ms)` — so it survives restarts and `kill -9`
//! (the `state` module stores the setting) and never needs a ticking task.

use std::sync::RwLock;

use jiff::Timestamp;
use jiff::tz::Offset;
use serde::{Deserialize, Serialize};

/// Japan Standard Time; Asia/Tokyo has had no DST since 1951.
pub const JST: Offset = Offset::constant(9);

/// Formats a timestamp as RFC 3339 with the `+09:00` offset.
pub fn format_jst(ts: Timestamp) -> String {
    ts.display_with_offset(JST).to_string()
}

/// Formats milliseconds since the Unix epoch as RFC 3339 JST.
pub fn format_jst_ms(ms: i64) -> String {
    format_jst(timestamp_from_ms(ms))
}

/// Milliseconds since the epoch to a timestamp, saturating at jiff's range limits.
pub fn timestamp_from_ms(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// A persisted virtual clock setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSetting {
    /// The virtual time that was set, in ms since the epoch.
    pub virtual_ms: i64,
    /// The real time at which it was set, in ms since the epoch.
    pub set_at_real_ms: i64,
}

impl ClockSetting {
    /// The virtual time at real time `real_ms`.
    pub fn now_at(&self, real_ms: i64) -> i64 {
        self.virtual_ms
            .saturating_add(real_ms.saturating_sub(self.set_at_real_ms))
    }
}

/// The clock shared by the gateway, the control API and the background finaliser.
#[derive(Debug, Default)]
pub struct Clock {
    setting: RwLock<Option<ClockSetting>>,
}

fn real_now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

impl Clock {
    /// A clock starting from a persisted setting (`None` = real time).
    pub fn new(setting: Option<ClockSetting>) -> Clock {
        Clock {
            setting: RwLock::new(setting),
        }
    }

    /// The current setting (`None` = real time).
    pub fn setting(&self) -> Option<ClockSetting> {
        *self.setting.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the setting. The caller persists it first.
    pub fn apply(&self, setting: Option<ClockSetting>) {
        *self.setting.write().unwrap_or_else(|e| e.into_inner()) = setting;
    }

    /// A setting that makes the clock read `now` at this real instant.
    pub fn setting_for(now: Timestamp) -> ClockSetting {
        ClockSetting {
            virtual_ms: now.as_millisecond(),
            set_at_real_ms: real_now_ms(),
        }
    }

    /// Simulated now, in ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        let real = real_now_ms();
        match self.setting() {
            Some(s) => s.now_at(real),
            None => real,
        }
    }

    /// Simulated now.
    pub fn now(&self) -> Timestamp {
        timestamp_from_ms(self.now_ms())
    }

    /// Whether a virtual time is in force.
    pub fn is_virtual(&self) -> bool {
        self.setting().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_time_runs_on_from_the_setting() {
        let s = ClockSetting {
            virtual_ms: 1_000_000,
            set_at_real_ms: 50,
        };
        assert_eq!(s.now_at(50), 1_000_000);
        assert_eq!(s.now_at(1_050), 1_001_000);
    }

    #[test]
    fn a_clock_set_to_a_time_reads_that_time() {
        let target: Timestamp = "2026-12-03T10:00:00+09:00".parse().unwrap();
        let clock = Clock::new(None);
        assert!(!clock.is_virtual());
        clock.apply(Some(Clock::setting_for(target)));
        assert!(clock.is_virtual());
        let drift = clock.now_ms() - target.as_millisecond();
        assert!((0..5_000).contains(&drift), "drift {drift}");
        clock.apply(None);
        assert!((clock.now_ms() - real_now_ms()).abs() < 5_000);
    }

    #[test]
    fn formats_in_jst() {
        let ts: Timestamp = "2026-12-03T01:00:00Z".parse().unwrap();
        assert_eq!(format_jst(ts), "2026-12-03T10:00:00+09:00");
    }
}
