//! The home page's bar chart: files sent and claims returned per month, laid out here as plain
//! numbers and drawn by the template as inline SVG (no script, no external asset, prints as
//! it shows).
//!
//! Invariant: every coordinate is computed from the data and the fixed frame below; a month
//! with nothing draws no bar (never a bar of negative or NaN height), and the scale always has
//! room for the largest bar.

use serde::Serialize;

use crate::backend::MonthBar;

/// Drawing area, in SVG user units.
const WIDTH: u32 = 640;
const HEIGHT: u32 = 200;
/// Room under the bars for the month labels, and left of them for the scale.
const LABEL_ROOM: u32 = 24;
const SCALE_ROOM: u32 = 36;

/// The chart as the template draws it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Chart {
    pub width: u32,
    pub height: u32,
    /// y of the baseline.
    pub base_y: u32,
    /// The largest value the scale shows.
    pub max: usize,
    /// One group per month.
    pub groups: Vec<Group>,
    /// A readable summary for screen readers and the table under it.
    pub months: Vec<MonthBar>,
}

/// One month's two bars.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Group {
    /// "2026年11月".
    pub label: String,
    /// x of the label's centre.
    pub label_x: u32,
    pub sent: Bar,
    pub returned: Bar,
}

/// One bar.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Bar {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    pub value: usize,
}

/// Lays out `months` (oldest first).
pub(crate) fn layout(months: &[MonthBar]) -> Chart {
    let base_y = HEIGHT - LABEL_ROOM;
    let max = months
        .iter()
        .map(|m| m.sent.max(m.returned))
        .max()
        .unwrap_or(0)
        .max(1);
    let n = months.len().max(1) as u32;
    let slot = (WIDTH - SCALE_ROOM) / n;
    let bar_w = (slot / 3).max(1);
    let usable = u64::from(base_y - 8);
    let height_of = |v: usize| -> u32 {
        // v <= max, so this is at most `usable`.
        ((v as u64 * usable) / max as u64) as u32
    };
    let groups = months
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let left = SCALE_ROOM + i as u32 * slot + slot / 6;
            let (hs, hr) = (height_of(m.sent), height_of(m.returned));
            Group {
                // The year only where it starts (and on the first bar): twelve full labels
                // would run into each other.
                label: if i == 0 || m.month.ends_with("01") {
                    month_label(&m.month)
                } else {
                    short_label(&m.month)
                },
                label_x: left + bar_w,
                sent: Bar {
                    x: left,
                    y: base_y - hs,
                    w: bar_w,
                    h: hs,
                    value: m.sent,
                },
                returned: Bar {
                    x: left + bar_w,
                    y: base_y - hr,
                    w: bar_w,
                    h: hr,
                    value: m.returned,
                },
            }
        })
        .collect();
    Chart {
        width: WIDTH,
        height: HEIGHT,
        base_y,
        max,
        groups,
        months: months.to_vec(),
    }
}

/// "202611" → "11月"; anything else as it is.
fn short_label(m: &str) -> String {
    match m.get(4..6) {
        Some(mo) if m.len() == 6 && m.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{}月", mo.trim_start_matches('0'))
        }
        _ => m.to_owned(),
    }
}

/// "202611" → "2026年11月"; anything else as it is.
fn month_label(m: &str) -> String {
    match (m.get(..4), m.get(4..6)) {
        (Some(y), Some(mo)) if m.len() == 6 && m.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{y}年{}月", mo.trim_start_matches('0'))
        }
        _ => m.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(month: &str, sent: usize, returned: usize) -> MonthBar {
        MonthBar {
            month: month.into(),
            sent,
            returned,
        }
    }

    #[test]
    fn the_largest_bar_fills_the_frame_and_empty_months_draw_nothing() {
        let c = layout(&[
            bar("202609", 0, 0),
            bar("202610", 40, 4),
            bar("202611", 20, 0),
        ]);
        assert_eq!(c.max, 40);
        let tallest = &c.groups[1].sent;
        assert_eq!(tallest.y + tallest.h, c.base_y);
        assert_eq!(tallest.h, c.base_y - 8);
        assert_eq!(c.groups[2].sent.h, tallest.h / 2);
        assert_eq!(c.groups[0].sent.h, 0);
        assert_eq!(c.groups[2].returned.h, 0);
        assert_eq!(c.groups[1].returned.h, tallest.h / 10);
        // Bars stay inside the frame and do not overlap the next month.
        for w in c.groups.windows(2) {
            assert!(w[0].returned.x + w[0].returned.w <= w[1].sent.x);
        }
        let last = &c.groups[2].returned;
        assert!(last.x + last.w <= c.width);
        assert_eq!(c.groups[0].label, "2026年9月");
        assert_eq!(c.groups[1].label, "10月");
        assert_eq!(
            layout(&[bar("202612", 1, 0), bar("202701", 1, 0)]).groups[1].label,
            "2027年1月"
        );
    }

    #[test]
    fn no_months_is_an_empty_chart_not_a_division_by_zero() {
        let c = layout(&[]);
        assert!(c.groups.is_empty());
        assert_eq!(c.max, 1);
    }
}
