//! The deadline watch: while the reception window is open and its close is nearer than
//! `relay.window_closing_alert_hours`, it names the offices that have no claim at the federation
//! for the processing month being received, as one alert (`window_closing/<YYYYMM>`) that is
//! rewritten as offices send and resolved when the last one has.
//!
//! Invariants: time is the gateway's (the window and its clock come from `GET /v1/health`,
//! advanced by the local monotonic clock since), so the watch agrees with the federation and runs
//! under the simulator's virtual clock and `tokio::time::pause()` alike; an office counts as
//! having sent once a file of its own for the month has arrived (到達) and was not rejected.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::alerts::{self, Alert, Raised};
use crate::claim::{Month, OfficeNumber, OfficeStanding};
use crate::federation::GatewayWindow;
use crate::store::Store;
use crate::submission::{State, Submission};

/// How often the offices are checked again once the alert period has begun.
const RECHECK: Duration = Duration::from_secs(300);

/// What the watch works with.
#[derive(Debug)]
pub struct DeadlineWatch {
    /// The store: submissions to count, alerts to keep.
    pub store: Store,
    /// The offices this appliance sends for.
    pub offices: BTreeMap<OfficeNumber, OfficeStanding>,
    /// The gateway's window, as the relay last read it.
    pub window: watch::Receiver<Option<GatewayWindow>>,
    /// How long before the close the alert begins (zero: never).
    pub lead: Duration,
}

/// The alert key for a processing month.
pub fn alert_key(month: Month) -> String {
    format!("window_closing/{month}")
}

/// Offices expected to claim in `month` that have no arrived (and not rejected) file for it.
pub fn offices_without_claims(
    offices: &BTreeMap<OfficeNumber, OfficeStanding>,
    subs: &[Submission],
    month: Month,
) -> Vec<(OfficeNumber, String)> {
    offices
        .iter()
        // An office that ended from month M still claims, in processing month M, the services
        // of the month before; after that it claims nothing.
        .filter(|(_, st)| st.ended_from.is_none_or(|end| month <= end))
        .filter(|(number, _)| {
            !subs.iter().any(|s| {
                s.office_number.as_ref() == Some(*number)
                    && s.processing_month == Some(month)
                    && matches!(
                        s.state,
                        State::Arrived | State::Accepted | State::AcceptedWithReturns
                    )
            })
        })
        .map(|(n, st)| (n.clone(), st.name.clone()))
        .collect()
}

impl DeadlineWatch {
    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        if self.lead.is_zero() {
            shutdown.cancelled().await;
            return Ok(());
        }
        // The window and the local instant it was read at: gateway time = read time + elapsed.
        let mut anchor: Option<(GatewayWindow, tokio::time::Instant)> = None;
        loop {
            let latest = self.window.borrow_and_update().clone();
            if let Some(w) = latest
                && anchor.as_ref().is_none_or(|(a, _)| *a != w)
            {
                anchor = Some((w, tokio::time::Instant::now()));
            }
            let wait = match &anchor {
                Some((w, at)) => {
                    let gateway_now = advance(w.gateway_now, at.elapsed());
                    match self.check(w, gateway_now).await {
                        Ok(wait) => wait,
                        Err(e) => {
                            error!(
                                error = format!("{e:#}"),
                                "受付期間の締め切りの確認で、データベースを読めません (deadline watch cannot read the store)"
                            );
                            RECHECK
                        }
                    }
                }
                None => RECHECK,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                changed = self.window.changed() => {
                    if changed.is_err() {
                        return Ok(()); // the relay is gone: shutting down
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One look: raises, refreshes or resolves the alert; returns when to look again.
    async fn check(&self, w: &GatewayWindow, now: Timestamp) -> anyhow::Result<Duration> {
        let key = alert_key(w.processing_month);
        if !w.open || now >= w.closes_at {
            return Ok(RECHECK);
        }
        let left = Duration::try_from(w.closes_at.duration_since(now)).unwrap_or_default();
        if left > self.lead {
            return Ok((left - self.lead).min(Duration::from_secs(3600)));
        }
        let store = self.store.clone();
        let subs = tokio::task::spawn_blocking(move || store.all()).await??;
        let missing = offices_without_claims(&self.offices, &subs, w.processing_month);
        let store = self.store.clone();
        if missing.is_empty() {
            let k = key.clone();
            if tokio::task::spawn_blocking(move || alerts::resolve(&store, &k)).await?? {
                info!(processing_month = %w.processing_month, "every office has sent this month's claims; window alert resolved");
            }
            return Ok(RECHECK);
        }
        let hours = left.as_secs() / 3600;
        let minutes = left.as_secs() % 3600 / 60;
        let closes = crate::timefmt::jst_minutes(w.closes_at);
        let names_ja: Vec<String> = missing
            .iter()
            .map(|(n, name)| format!("{name}（{n}）"))
            .collect();
        let names_en: Vec<String> = missing
            .iter()
            .map(|(n, name)| format!("{name} ({n})"))
            .collect();
        let alert = Alert {
            key,
            kind: "window_closing".into(),
            severity: "error".into(),
            offices: missing.iter().map(|(n, _)| n.to_string()).collect(),
            message_ja: format!(
                "{} 分の受付は {closes} に締め切られます（残り {hours} 時間 {minutes} 分）。次の事業所はまだ請求が国保連に到達していません: {}。請求ソフトで請求ファイルを作成し、投入フォルダーに保存してください。",
                w.processing_month.to_japanese(),
                names_ja.join("、")
            ),
            message_en: format!(
                "Reception for {} closes at {closes} JST ({hours} h {minutes} min left). These offices have no claim at the federation yet: {}. Create the claim files in the billing software and save them to the drop folder.",
                w.processing_month,
                names_en.join(", ")
            ),
            raised_at: now,
            updated_at: now,
        };
        let offices = alert.offices.clone();
        let raised = tokio::task::spawn_blocking(move || alerts::raise(&store, alert)).await??;
        match raised {
            Raised::New | Raised::Changed => error!(
                code = %admin_ui::help::code::ALERT_WINDOW_CLOSING,
                processing_month = %w.processing_month,
                offices = ?offices,
                hours_left = hours,
                "受付期間がまもなく終わりますが、まだ何も送信していない事業所があります (reception window closing with offices that have sent nothing)"
            ),
            Raised::Same => {}
        }
        Ok(RECHECK.min(left))
    }
}

fn advance(t: Timestamp, by: Duration) -> Timestamp {
    SignedDuration::try_from(by)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or_else(|| {
            warn!("ゲートウェイの時刻をもとにした計算ができませんでした (gateway clock arithmetic overflowed)");
            t
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submission::SubmissionId;

    fn office(n: &str) -> OfficeNumber {
        n.parse().unwrap()
    }

    fn window(now: &str, open: bool) -> GatewayWindow {
        GatewayWindow {
            gateway_now: now.parse().unwrap(),
            open,
            processing_month: "202611".parse().unwrap(),
            opens_at: "2026-10-31T15:00:00Z".parse().unwrap(),
            closes_at: "2026-11-10T15:00:00Z".parse().unwrap(),
            withdraw_until: "2026-11-10T15:00:00Z".parse().unwrap(),
        }
    }

    fn arrived(office_number: &OfficeNumber, state: State) -> Submission {
        let mut s = Submission::new(
            "A.CSV".into(),
            SubmissionId::new().to_string(),
            1,
            Timestamp::now(),
        );
        s.office_number = Some(office_number.clone());
        s.processing_month = Some("202611".parse().unwrap());
        s.transition(state, "test", Timestamp::now());
        s
    }

    #[tokio::test(start_paused = true)]
    async fn names_the_offices_that_sent_nothing_and_resolves_when_they_have() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let a = office("1310000011");
        let b = office("1310000029");
        let mut offices = BTreeMap::new();
        for (n, name) in [(&a, "あおば"), (&b, "さくら")] {
            offices.insert(
                n.clone(),
                OfficeStanding {
                    name: name.into(),
                    ended_from: None,
                },
            );
        }
        let (tx, rx) = watch::channel(None);
        let watch = DeadlineWatch {
            store: store.clone(),
            offices,
            window: rx,
            lead: Duration::from_secs(48 * 3600),
        };
        // Three days before the close: nothing yet, and the next look is when the lead begins.
        let w = window("2026-11-07T15:00:00Z", true);
        let wait = watch.check(&w, w.gateway_now).await.unwrap();
        assert_eq!(
            wait,
            Duration::from_secs(3600),
            "looks again at least hourly"
        );
        assert!(alerts::current(&store).unwrap().is_empty());

        // 24 hours before: both offices are named.
        let w = window("2026-11-09T15:00:00Z", true);
        watch.check(&w, w.gateway_now).await.unwrap();
        let now = alerts::current(&store).unwrap();
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].offices, vec![a.to_string(), b.to_string()]);
        assert!(
            now[0].message_ja.contains("あおば（1310000011）"),
            "{}",
            now[0].message_ja
        );
        assert!(
            now[0].message_ja.contains("残り 24 時間"),
            "{}",
            now[0].message_ja
        );

        // A queued or rejected file does not count; an arrived one does.
        store
            .record_new(arrived(&a, State::Rejected), b"x".to_vec())
            .unwrap();
        store
            .record_new(arrived(&b, State::Arrived), b"y".to_vec())
            .unwrap();
        watch.check(&w, w.gateway_now).await.unwrap();
        let now = alerts::current(&store).unwrap();
        assert_eq!(now[0].offices, vec![a.to_string()]);

        store
            .record_new(arrived(&a, State::Accepted), b"z".to_vec())
            .unwrap();
        watch.check(&w, w.gateway_now).await.unwrap();
        assert!(alerts::current(&store).unwrap().is_empty(), "resolved");

        // The task runs on the gateway's clock advanced by tokio's: paused time drives it.
        let store2 = Store::open(&dir.path().join("t.redb")).unwrap();
        let mut offices = BTreeMap::new();
        offices.insert(
            a.clone(),
            OfficeStanding {
                name: "あおば".into(),
                ended_from: None,
            },
        );
        let (tx2, rx2) = watch::channel(Some(window("2026-11-08T14:00:00Z", true)));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(
            DeadlineWatch {
                store: store2.clone(),
                offices,
                window: rx2,
                lead: Duration::from_secs(48 * 3600),
            }
            .run(shutdown.clone()),
        );
        tokio::time::sleep(Duration::from_secs(30 * 60)).await;
        assert!(
            alerts::current(&store2).unwrap().is_empty(),
            "49 h before: no alert"
        );
        tokio::time::sleep(Duration::from_secs(31 * 60)).await;
        let now = alerts::current(&store2).unwrap();
        assert_eq!(now.len(), 1, "48 h before: the alert");
        shutdown.cancel();
        task.await.unwrap().unwrap();
        drop((tx, tx2));
    }
}
