//! The admin UI's home page (and the machine figures `/healthz` and `/metrics` share): this month's reception window, what each office sent and what
//! the federation answered, open returns, new notices, the alerts a person must see, the
//! appliance's disks and memory, and files sent and claims returned per month.
//!
//! Invariant: everything is counted from the store (the truth) for the offices the caller may
//! see, and nothing else: an office the caller may not see adds nothing to any figure, and an
//! alert about only such offices is not shown. The window comes from the gateway's last
//! answer (never this machine's clock); machine figures (disk, memory) are read at most every
//! few seconds however many browsers ask.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use admin_ui::{AlertView, HealthView, MonthBar, OfficeSummary, WindowView};
use tokio::sync::watch;

use crate::claim::Month;
use crate::federation::GatewayWindow;
use crate::returns::ReturnStatus;
use crate::store::{OfficeReturn, OfficeSubmission};
use crate::submission::State;
use crate::timefmt::jst_minutes;

/// Months the chart shows, ending with the current processing month.
pub const CHART_MONTHS: usize = 12;
/// Unread notices are counted over the processing months from this many before the current
/// one to the next (notices of a month come until the middle of the month after).
pub const UNREAD_MONTHS_BACK: usize = 2;
/// A client certificate is announced this many days before it expires.
pub const CERTIFICATE_WARNING_DAYS: i64 = 90;
/// Free space under this share of a volume is an alert.
pub const LOW_DISK_PERCENT: u8 = 10;
/// Machine figures are read again after this long.
const HEALTH_TTL: Duration = Duration::from_secs(5);

/// What the home page, `/healthz` and `/metrics` need besides the store.
#[derive(Debug)]
pub struct Surroundings {
    /// The gateway's reception window, as the relay last read it.
    pub window: watch::Receiver<Option<GatewayWindow>>,
    /// The drop folder (its volume's free space is shown).
    pub drop_dir: PathBuf,
    /// The state folder (the store's volume).
    pub state_dir: PathBuf,
    /// When the daemon started.
    pub started: Instant,
    /// The bearer token a scraper elsewhere on the LAN must show.
    pub metrics_token: Option<crate::config::Secret>,
    /// The local CA the browsers are to trust, when the appliance made its own.
    pub ca: Option<admin_ui::CaCertificate>,
    /// Wakes the relay for a file sent again from the UI.
    pub relay_wakeup: std::sync::Arc<tokio::sync::Notify>,
    machine: Mutex<Option<(Instant, Machine)>>,
}

/// The machine's figures at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Machine {
    /// Free and total bytes of the drop folder's volume (None when unknown).
    pub drop_disk: Option<(u64, u64)>,
    /// Free and total bytes of the state volume.
    pub state_disk: Option<(u64, u64)>,
    /// Memory used and total of the machine, bytes.
    pub memory: Option<(u64, u64)>,
    /// This process's resident memory, bytes.
    pub process_resident: Option<u64>,
    /// How long the daemon has run.
    pub uptime: Duration,
}

impl Surroundings {
    /// For a daemon started now.
    pub fn new(
        window: watch::Receiver<Option<GatewayWindow>>,
        drop_dir: PathBuf,
        state_dir: PathBuf,
        metrics_token: Option<crate::config::Secret>,
    ) -> Surroundings {
        Surroundings {
            window,
            drop_dir,
            state_dir,
            started: Instant::now(),
            metrics_token,
            ca: None,
            relay_wakeup: Default::default(),
            machine: Mutex::new(None),
        }
    }

    /// The machine's figures, read at most every [`HEALTH_TTL`] (the uptime is always now's).
    pub fn machine(&self) -> Machine {
        let mut cached = self
            .machine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut m = match cached.as_ref() {
            Some((at, m)) if at.elapsed() < HEALTH_TTL => *m,
            _ => {
                let m = read_machine(&self.drop_dir, &self.state_dir);
                *cached = Some((Instant::now(), m));
                m
            }
        };
        m.uptime = self.started.elapsed();
        m
    }

    /// The machine's figures as the home page shows them.
    pub fn health(&self) -> HealthView {
        health_view(&self.machine())
    }
}

/// Reads disks and memory from the system.
fn read_machine(drop_dir: &Path, state_dir: &Path) -> Machine {
    let disks = sysinfo::Disks::new_with_refreshed_list()
        .inspect_err(
            |e| tracing::warn!(error = %e, "ディスクの情報を読めません (cannot read the disks)"),
        )
        .ok();
    let free_of = |path: &Path| -> Option<(u64, u64)> {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        // The volume is the disk with the longest mount point the path is under.
        disks
            .iter()
            .flat_map(|d| d.iter())
            .filter(|d| path.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len())
            .filter(|d| d.total_space() > 0)
            .map(|d| (d.available_space(), d.total_space()))
    };
    let (memory, process_resident) = match sysinfo::System::new() {
        Ok(mut sys) => {
            sys.refresh_memory();
            let pid = sysinfo::Pid::from_u32(std::process::id());
            sys.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::Some(&[pid]),
                false,
                sysinfo::ProcessRefreshKind::nothing().with_memory(),
            );
            (
                Some((sys.used_memory(), sys.total_memory())),
                sys.process(pid).map(|p| p.memory()),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "メモリーの使用量を読めません (cannot read the memory figures)");
            (None, None)
        }
    };
    Machine {
        drop_disk: free_of(drop_dir),
        state_disk: free_of(state_dir),
        memory,
        process_resident,
        uptime: Duration::ZERO,
    }
}

/// The figures as text for people.
pub fn health_view(m: &Machine) -> HealthView {
    let unknown = || "不明 (unknown)".to_owned();
    let disk = |d: Option<(u64, u64)>| match d {
        Some((free, total)) => (bytes_text(free), percent(free, total)),
        None => (unknown(), 100),
    };
    let (drop_free, drop_free_percent) = disk(m.drop_disk);
    let (state_free, state_free_percent) = disk(m.state_disk);
    HealthView {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime: duration_text(m.uptime),
        drop_free,
        drop_free_percent,
        state_free,
        state_free_percent,
        memory: m
            .memory
            .map(|(used, total)| format!("{} / {}", bytes_text(used), bytes_text(total)))
            .unwrap_or_else(unknown),
        process_memory: m.process_resident.map(bytes_text).unwrap_or_else(unknown),
    }
}

/// Whole percent of `part` in `whole` (0 for an empty whole).
pub fn percent(part: u64, whole: u64) -> u8 {
    if whole == 0 {
        return 0;
    }
    ((u128::from(part) * 100 / u128::from(whole)).min(100)) as u8
}

/// "12.3 GB", "850 MB", "4 KB".
pub fn bytes_text(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit >= 3 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// "3日 4時間", "2時間 5分", "7分".
pub fn duration_text(d: Duration) -> String {
    let mins = d.as_secs() / 60;
    let (days, hours, minutes) = (mins / 1440, (mins / 60) % 24, mins % 60);
    if days > 0 {
        format!("{days}日 {hours}時間")
    } else if hours > 0 {
        format!("{hours}時間 {minutes}分")
    } else {
        format!("{minutes}分")
    }
}

/// The window as the page shows it, with the files held for it.
pub fn window_view(w: &GatewayWindow, held: usize) -> WindowView {
    let target = if w.open { w.closes_at } else { w.opens_at };
    let secs = target.duration_since(w.gateway_now).as_secs().max(0);
    WindowView {
        processing_month: w.processing_month.to_string(),
        open: w.open,
        opens_at: jst_minutes(w.opens_at),
        closes_at: jst_minutes(w.closes_at),
        days_left: secs / 86_400,
        hours_left: (secs % 86_400) / 3600,
        held,
    }
}

/// An office the caller may see, with what the counting needs of it (from the store's office
/// indexes: states, not records).
#[derive(Debug, Clone, Default)]
pub struct VisibleOffice {
    /// 事業所番号.
    pub number: String,
    /// 事業所名.
    pub name: String,
    /// Its submissions, every month.
    pub submissions: Vec<OfficeSubmission>,
    /// Its return items, every month.
    pub returns: Vec<OfficeReturn>,
    /// Its notices of the recent months ([`unread_months`]) the caller has not opened.
    pub new_notices: usize,
}

/// Counts each visible office's files of `month`, its open returns and its new notices, and
/// the chart's months (files sent and claims returned, over the visible offices).
pub fn summarize(
    offices: &[VisibleOffice],
    month: Option<Month>,
) -> (Vec<OfficeSummary>, Vec<MonthBar>) {
    let chart_months: Vec<Month> = match month {
        Some(m) => {
            let mut v = vec![m];
            while v.len() < CHART_MONTHS {
                let prev = v[v.len() - 1].previous();
                v.push(prev);
            }
            v.reverse();
            v
        }
        None => Vec::new(),
    };
    let mut bars: BTreeMap<Month, (usize, usize)> =
        chart_months.iter().map(|m| (*m, (0, 0))).collect();
    let mut summaries: Vec<OfficeSummary> = Vec::with_capacity(offices.len());
    for o in offices {
        let mut sum = OfficeSummary {
            number: o.number.clone(),
            name: o.name.clone(),
            new_notices: o.new_notices,
            ..Default::default()
        };
        for s in &o.submissions {
            if let Some(bar) = s.processing_month.and_then(|m| bars.get_mut(&m))
                && s.has_receipt
                && s.state != State::Withdrawn
            {
                bar.0 += 1;
            }
            if month.is_none() || s.processing_month != month {
                // Needing a person is shown whatever the month.
                if s.state == State::FailedNeedsAttention {
                    sum.needs_attention += 1;
                }
                continue;
            }
            if s.state == State::Duplicate {
                continue;
            }
            sum.files += 1;
            match s.state {
                State::Queued | State::Sending => sum.in_progress += 1,
                State::Arrived => sum.arrived += 1,
                State::Accepted => sum.accepted += 1,
                State::AcceptedWithReturns => sum.accepted_with_returns += 1,
                State::Rejected => sum.rejected += 1,
                State::Held => sum.held += 1,
                State::Refused => sum.refused += 1,
                State::FailedNeedsAttention => sum.needs_attention += 1,
                State::Withdrawn | State::Duplicate => {}
            }
        }
        for r in &o.returns {
            if r.status == ReturnStatus::Open {
                sum.open_returns += 1;
            }
            if let Some(bar) = bars.get_mut(&r.processing_month) {
                bar.1 += 1;
            }
        }
        summaries.push(sum);
    }
    summaries.sort_by(|a, b| a.number.cmp(&b.number));
    let months = bars
        .into_iter()
        .map(|(m, (sent, returned))| MonthBar {
            month: m.to_string(),
            sent,
            returned,
        })
        .collect();
    (summaries, months)
}

/// The page's alerts: the store's (window closing, notices missing) that concern a visible
/// office, certificates expiring, submissions needing a person, low disk.
pub fn alerts(
    stored: &[crate::alerts::Alert],
    may_see: impl Fn(&str) -> bool,
    is_admin: bool,
    certificates: &[(String, String, i64)],
    summaries: &[OfficeSummary],
    health: &HealthView,
) -> Vec<AlertView> {
    let mut out = Vec::new();
    for s in summaries.iter().filter(|s| s.needs_attention > 0) {
        out.push(AlertView {
            severity: "error".into(),
            message_ja: format!(
                "{} {}：送れない請求ファイルが {} 件あります。内容を確認してください。",
                s.number, s.name, s.needs_attention
            ),
            message_en: format!(
                "{} {}: {} claim file(s) cannot be sent until a person acts.",
                s.number, s.name, s.needs_attention
            ),
            link: Some(format!("/submissions?office={}", s.number)),
            help: "/help/submissions#needs-attention".into(),
        });
    }
    for (number, name, days) in certificates {
        if *days < 0 {
            out.push(AlertView {
                severity: "error".into(),
                message_ja: format!(
                    "{number} {name}：電子証明書の有効期限が切れています。新しい証明書を登録してください。"
                ),
                message_en: format!(
                    "{number} {name}: the client certificate has expired; register a new one."
                ),
                link: Some(format!("/offices/{number}")),
                help: "/help/offices#certificate".into(),
            });
        } else if *days <= CERTIFICATE_WARNING_DAYS {
            out.push(AlertView {
                severity: "warning".into(),
                message_ja: format!(
                    "{number} {name}：電子証明書の有効期限まであと {days} 日です。更新の準備をしてください。"
                ),
                message_en: format!(
                    "{number} {name}: the client certificate expires in {days} days; prepare its renewal."
                ),
                link: Some(format!("/offices/{number}")),
                help: "/help/offices#certificate".into(),
            });
        }
    }
    for a in stored {
        let shown = if a.offices.is_empty() {
            is_admin
        } else {
            a.offices.iter().any(|o| may_see(o))
        };
        if shown {
            out.push(AlertView {
                severity: if a.severity == "error" {
                    "error".into()
                } else {
                    "warning".into()
                },
                message_ja: a.message_ja.clone(),
                message_en: a.message_en.clone(),
                link: None,
                help: admin_ui::help::href(&format!("alert.{}", a.kind)),
            });
        }
    }
    for (what_ja, what_en, free, pct) in [
        (
            "共有フォルダー",
            "drop folder",
            &health.drop_free,
            health.drop_free_percent,
        ),
        (
            "データベース",
            "store",
            &health.state_free,
            health.state_free_percent,
        ),
    ] {
        if pct < LOW_DISK_PERCENT {
            out.push(AlertView {
                severity: "error".into(),
                message_ja: format!(
                    "{what_ja}のディスクの空きが少なくなっています（残り {free}、{pct}%）。管理者に連絡してください。"
                ),
                message_en: format!(
                    "The {what_en}'s disk is nearly full ({free}, {pct}% free); tell the administrator."
                ),
                link: None,
                help: "/help/system#disk".into(),
            });
        }
    }
    // Most serious first, in a stable order.
    out.sort_by_key(|a| a.severity != "error");
    out
}

/// The processing months whose unread notices the home page counts: the next, the current
/// and [`UNREAD_MONTHS_BACK`] before it.
pub fn unread_months(current: Month) -> Vec<Month> {
    let mut out = vec![current.next(), current];
    let mut m = current;
    for _ in 0..UNREAD_MONTHS_BACK {
        m = m.previous();
        out.push(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submission::SubmissionId;
    use jiff::Timestamp;

    fn month(s: &str) -> Month {
        s.parse().unwrap()
    }

    fn sub(m: &str, state: State, has_receipt: bool) -> OfficeSubmission {
        OfficeSubmission {
            id: SubmissionId::new(),
            processing_month: Some(month(m)),
            state,
            has_receipt,
        }
    }

    fn ret(m: &str, status: ReturnStatus) -> OfficeReturn {
        OfficeReturn {
            id: "N1-000003".into(),
            processing_month: month(m),
            status,
        }
    }

    #[test]
    fn the_month_decides_what_is_this_months_and_offices_are_counted_apart() {
        let offices = vec![
            VisibleOffice {
                number: "1379999996".into(),
                name: "さくら".into(),
                submissions: vec![
                    sub("202612", State::Accepted, true),
                    sub("202612", State::AcceptedWithReturns, true),
                    sub("202612", State::Held, false),
                    sub("202612", State::Refused, false),
                    sub("202612", State::Duplicate, false),
                    sub("202612", State::Withdrawn, true),
                    sub("202611", State::Accepted, true),
                    sub("202611", State::FailedNeedsAttention, false),
                    // Older than the chart: counted nowhere.
                    sub("202501", State::Accepted, true),
                ],
                returns: vec![
                    ret("202612", ReturnStatus::Open),
                    ret("202611", ReturnStatus::Open),
                    ret("202611", ReturnStatus::Closed),
                ],
                new_notices: 3,
            },
            VisibleOffice {
                number: "1379999988".into(),
                name: "ひまわり".into(),
                submissions: vec![sub("202612", State::Accepted, true)],
                returns: vec![ret("202612", ReturnStatus::Resolved)],
                new_notices: 9,
            },
        ];
        let (sums, months) = summarize(&offices, Some(month("202612")));
        assert_eq!(sums.len(), 2);
        let s = &sums[1];
        assert_eq!(s.number, "1379999996", "in office-number order");
        assert_eq!(
            (
                s.files,
                s.accepted,
                s.accepted_with_returns,
                s.held,
                s.refused
            ),
            (5, 1, 1, 1, 1)
        );
        assert_eq!(
            s.needs_attention, 1,
            "needing a person counts whatever the month"
        );
        assert_eq!((s.new_notices, s.open_returns), (3, 2));
        assert_eq!((sums[0].files, sums[0].open_returns), (1, 0));
        assert_eq!(months.len(), CHART_MONTHS);
        let last = months.last().unwrap();
        assert_eq!(last.month, "202612");
        assert_eq!((last.sent, last.returned), (3, 2), "withdrawn is not sent");
        assert_eq!(
            (
                months[CHART_MONTHS - 2].sent,
                months[CHART_MONTHS - 2].returned
            ),
            (1, 2)
        );
        assert_eq!(months[0].month, "202601");
    }

    #[test]
    fn alerts_hide_other_offices_and_put_errors_first() {
        let stored = vec![
            crate::alerts::Alert {
                key: "window_closing/202612".into(),
                kind: "window_closing".into(),
                severity: "warning".into(),
                offices: vec!["1379999988".into()],
                message_ja: "他の事業所".into(),
                message_en: "other".into(),
                raised_at: Timestamp::now(),
                updated_at: Timestamp::now(),
            },
            crate::alerts::Alert {
                key: "notice_missing/1379999996/202611".into(),
                kind: "notice_missing".into(),
                severity: "warning".into(),
                offices: vec!["1379999996".into()],
                message_ja: "通知が届いていません".into(),
                message_en: "missing".into(),
                raised_at: Timestamp::now(),
                updated_at: Timestamp::now(),
            },
        ];
        let health = HealthView {
            drop_free_percent: 50,
            state_free_percent: 4,
            state_free: "1 GB".into(),
            ..Default::default()
        };
        let certs = vec![
            ("1379999996".to_owned(), "さくら".to_owned(), 30),
            ("1379999996".to_owned(), "さくら".to_owned(), 400),
        ];
        let a = alerts(&stored, |o| o == "1379999996", false, &certs, &[], &health);
        let texts: Vec<&str> = a.iter().map(|a| a.message_ja.as_str()).collect();
        assert!(!texts.iter().any(|t| t.contains("他の事業所")), "{texts:?}");
        assert!(texts.iter().any(|t| t.contains("通知が届いていません")));
        assert!(texts.iter().any(|t| t.contains("あと 30 日")));
        assert!(!texts.iter().any(|t| t.contains("400")));
        assert_eq!(a[0].severity, "error", "the full store disk comes first");
        assert!(a[0].message_ja.contains("データベース"));
    }

    #[test]
    fn figures_read_as_a_clerk_reads_them() {
        assert_eq!(bytes_text(12_345_678_901), "12.3 GB");
        assert_eq!(bytes_text(850_000_000), "850 MB");
        assert_eq!(
            duration_text(Duration::from_secs(3 * 86_400 + 4 * 3600 + 59)),
            "3日 4時間"
        );
        assert_eq!(duration_text(Duration::from_secs(7 * 60)), "7分");
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(5, 0), 0);
    }
}
