//! The alert dispatcher: a long-running task that routes new outbox messages to their
//! recipients, delivers what is due by mail and webhook, retries failures with a growing
//! delay, holds digest deliveries for the daily digest, and keeps every destination under
//! `alerts.max_per_destination_per_hour` by combining the excess into one message. Every hour
//! it also looks at the certificates and prunes old history.
//!
//! Invariant: a delivery is marked sent only after its server accepted it, and marked in the
//! store before the next pass, so a restart sends nothing twice that was accepted and marked;
//! what was pending when the daemon stopped (or the mail server was down) is sent when it can
//! be, once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::mail::Mailer;
use super::outbox::{Delivery, DeliveryState, Destination, Phase};
use super::render::{self, Combined, OfficeNames};
use super::routing::{self, Directory};
use super::webhook::Hook;
use crate::config::AlertSettings;
use crate::store::Store;

/// How often the outbox is looked at when nothing wakes the dispatcher (events written inside
/// other transactions are found this way).
const POLL: Duration = Duration::from_secs(2);
/// How long a stop waits for a send in flight to finish and be recorded.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How often certificates are checked and history pruned.
const SWEEP: Duration = Duration::from_secs(3600);
/// Sent deliveries are kept this long for the UI.
const KEEP_HISTORY: SignedDuration = SignedDuration::from_hours(24 * 90);
/// One-time event keys are kept this long (longer than any retry of their cause).
const KEEP_EVENTS: SignedDuration = SignedDuration::from_hours(24 * 400);

/// The configured ways out.
#[derive(Clone, Debug, Default)]
pub struct Senders {
    /// Mail, when `[alerts.mail]` is set.
    pub mailer: Option<Mailer>,
    /// Webhooks by name.
    pub hooks: BTreeMap<String, Hook>,
}

impl Senders {
    /// Builds the senders of `settings` (reads CA files now).
    pub fn new(settings: &AlertSettings) -> anyhow::Result<Senders> {
        let mailer = match &settings.mail {
            Some(m) => Some(Mailer::new(m)?),
            None => None,
        };
        let mut hooks = BTreeMap::new();
        for w in &settings.webhooks {
            hooks.insert(w.name.clone(), Hook::new(w)?);
        }
        Ok(Senders { mailer, hooks })
    }

    /// Sends one rendered unit (one delivery or several combined) to `dest`.
    pub async fn send(
        &self,
        dest: &Destination,
        unit: &[&Delivery],
        why: Option<Combined>,
        names: &OfficeNames,
        base_url: &str,
        id: &str,
    ) -> Result<(), SendError> {
        let kind = match (unit, why) {
            ([one], None) => one.message.kind.clone(),
            _ => "combined".to_owned(),
        };
        match dest {
            Destination::Mail { address, name } => {
                let Some(mailer) = &self.mailer else {
                    return Err(SendError {
                        code: admin_ui::help::code::ALERTS_MAIL_NOT_CONFIGURED,
                        permanent: true,
                        text: "メールサーバーが設定されていません ([alerts.mail] is not set)"
                            .into(),
                    });
                };
                let rendered = match (unit, why) {
                    ([one], None) => render::mail(one, names, base_url),
                    _ => render::combined_mail(
                        unit,
                        why.unwrap_or(Combined::Digest),
                        names,
                        base_url,
                    ),
                };
                mailer
                    .send(address, name, &rendered, id, &kind)
                    .await
                    .map_err(|e| SendError {
                        code: e.code(),
                        permanent: e.is_permanent(),
                        text: e.to_string(),
                    })
            }
            Destination::Webhook { name } => {
                let Some(hook) = self.hooks.get(name) else {
                    return Err(SendError {
                        code: admin_ui::help::code::ALERTS_WEBHOOK_UNKNOWN,
                        permanent: true,
                        text: format!(
                            "Webhook「{name}」は設定にありません (webhook {name} is no longer configured)"
                        ),
                    });
                };
                let body = render::webhook_body(unit, why, names, base_url);
                hook.send(&body, id, &kind).await.map_err(|e| SendError {
                    code: e.code(),
                    permanent: e.is_permanent(),
                    text: e.to_string(),
                })
            }
        }
    }
}

/// A failed send.
#[derive(Debug, Clone)]
pub struct SendError {
    /// Its entry in the message catalogue.
    pub code: admin_ui::help::Code,
    /// Retrying will not help.
    pub permanent: bool,
    /// What went wrong (Japanese and English).
    pub text: String,
}

/// The dispatcher task.
#[derive(Debug)]
pub struct Dispatcher {
    store: Store,
    settings: AlertSettings,
    senders: Senders,
    base_url: String,
    /// Office names from the config file (the store's records add the rest).
    config_names: OfficeNames,
    /// When each destination was last sent to, for the hourly limit.
    sent: HashMap<Destination, VecDeque<Timestamp>>,
}

/// The next digest time after `now`: `at` (JST hour, minute) today or tomorrow.
pub fn next_digest(now: Timestamp, at: (i8, i8)) -> Timestamp {
    let z = now.to_zoned_datetime(crate::timefmt::jst());
    let today = z
        .date()
        .at(at.0, at.1, 0, 0)
        .to_zoned_datetime(crate::timefmt::jst())
        .map(|t| t.timestamp())
        .unwrap_or(now);
    if today > now {
        today
    } else {
        today
            .checked_add(SignedDuration::from_hours(24))
            .unwrap_or(now)
    }
}

/// The delay before try `attempts + 1`: `initial`, doubled each time, at most `max`.
pub fn backoff(attempts: u32, initial: Duration, max: Duration) -> Duration {
    initial
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(max)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(t)
}

impl Dispatcher {
    /// A dispatcher for `settings`, linking to `base_url` (the admin UI's address).
    pub fn new(
        store: Store,
        settings: &crate::config::Settings,
        base_url: String,
    ) -> anyhow::Result<Dispatcher> {
        let senders = Senders::new(&settings.alerts)?;
        let config_names = settings
            .offices
            .iter()
            .map(|o| (o.office_number.to_string(), o.name.clone()))
            .collect();
        Ok(Dispatcher {
            store,
            settings: settings.alerts.clone(),
            senders,
            base_url: base_url.trim_end_matches('/').to_owned(),
            config_names,
            sent: HashMap::new(),
        })
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let store = self.store.clone();
        let since = Timestamp::now()
            .checked_sub(SignedDuration::from_hours(1))
            .unwrap_or_else(|_| Timestamp::now());
        // The hourly limit survives a restart: seed it with the last hour's sends.
        let history = tokio::task::spawn_blocking(move || store.deliveries(false)).await??;
        for d in history {
            if let Some(at) = d.sent_at.filter(|t| *t > since) {
                self.sent.entry(d.destination).or_default().push_back(at);
            }
        }
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_sweep {
                next_sweep = tokio::time::Instant::now() + SWEEP;
                let (store, days) = (self.store.clone(), self.settings.certificate_warning_days);
                let swept = tokio::task::spawn_blocking(
                    move || -> Result<usize, crate::store::StoreError> {
                        let now = Timestamp::now();
                        super::sweep::check_certificates(&store, days, now)?;
                        store.prune_alert_history(
                            now.checked_sub(KEEP_HISTORY).unwrap_or(now),
                            now.checked_sub(KEEP_EVENTS).unwrap_or(now),
                        )
                    },
                )
                .await?;
                if let Err(e) = swept {
                    warn!(error = %e, "証明書の確認ができませんでした。1時間後に再試行します (certificate check failed; retrying in an hour)");
                }
            }
            let wait = {
                let pass = self.pass();
                tokio::pin!(pass);
                tokio::select! {
                    w = &mut pass => w,
                    _ = shutdown.cancelled() => {
                        // A send in flight finishes and is recorded (within a bound), so that
                        // a stop does not make the next start send it again.
                        let _ = tokio::time::timeout(STOP_GRACE, &mut pass).await;
                        return Ok(());
                    }
                }
            };
            let wait = match wait {
                Ok(w) => w.min(POLL),
                Err(e) => {
                    warn!(
                        code = %admin_ui::help::code::ALERTS_PREPARE_FAILED,
                        error = format!("{e:#}"),
                        "通知の送信処理に失敗しました。数秒後にやり直します (alert dispatch pass failed; retrying)"
                    );
                    POLL
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = super::woken() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn names(&self) -> anyhow::Result<OfficeNames> {
        let store = self.store.clone();
        let mut names = self.config_names.clone();
        for o in tokio::task::spawn_blocking(move || store.office_records()).await?? {
            names.entry(o.office_number).or_insert(o.name);
        }
        Ok(names)
    }

    /// Routes the outbox and sends what is due; returns how long until something is due.
    pub async fn pass(&mut self) -> anyhow::Result<Duration> {
        self.route_outbox().await?;
        let store = self.store.clone();
        let pending = tokio::task::spawn_blocking(move || store.deliveries(true)).await??;
        if pending.is_empty() {
            return Ok(POLL);
        }
        let now = Timestamp::now();
        let names = self.names().await?;
        let mut by_dest: BTreeMap<Destination, Vec<Delivery>> = BTreeMap::new();
        for d in pending {
            by_dest.entry(d.destination.clone()).or_default().push(d);
        }
        let hour_ago = now
            .checked_sub(SignedDuration::from_hours(1))
            .unwrap_or(now);
        let mut plans = Vec::new();
        let mut next_due: Option<Timestamp> = None;
        for (dest, ds) in by_dest {
            let sent = self.sent.entry(dest.clone()).or_default();
            while sent.front().is_some_and(|t| *t <= hour_ago) {
                sent.pop_front();
            }
            let budget =
                (self.settings.max_per_destination_per_hour as usize).saturating_sub(sent.len());
            let (due, later): (Vec<Delivery>, Vec<Delivery>) =
                ds.into_iter().partition(|d| d.next_attempt_at <= now);
            for d in &later {
                next_due = Some(next_due.map_or(d.next_attempt_at, |t| t.min(d.next_attempt_at)));
            }
            if due.is_empty() {
                continue;
            }
            if budget == 0 {
                if let Some(first) = sent.front() {
                    let free_at = first
                        .checked_add(SignedDuration::from_hours(1))
                        .unwrap_or(now);
                    next_due = Some(next_due.map_or(free_at, |t| t.min(free_at)));
                }
                continue;
            }
            plans.push(plan(dest, due, budget));
        }
        let base = self.base_url.clone();
        let senders = &self.senders;
        let results = futures::future::join_all(plans.into_iter().map(|p| {
            let (names, base) = (&names, &base);
            async move {
                let mut done = Vec::new();
                for (unit, why) in p.units {
                    let refs: Vec<&Delivery> = unit.iter().collect();
                    let id = match (refs.as_slice(), why) {
                        ([one], None) => one.id.clone(),
                        _ => uuid::Uuid::now_v7().to_string(),
                    };
                    let r = senders.send(&p.dest, &refs, why, names, base, &id).await;
                    done.push((unit, why, id, r));
                }
                (p.dest, done)
            }
        }))
        .await;
        let now = Timestamp::now();
        let mut updates = Vec::new();
        // What to log, once the outcome is stored: a line saying "delivered" or "will retry"
        // is never ahead of the record.
        let mut said: Vec<Said> = Vec::new();
        for (dest, done) in results {
            for (unit, why, id, r) in done {
                match r {
                    Ok(()) => {
                        self.sent.entry(dest.clone()).or_default().push_back(now);
                        said.push(Said::Delivered {
                            destination: dest.label(),
                            kind: unit
                                .first()
                                .map_or(String::new(), |d| d.message.kind.clone()),
                            items: unit.len(),
                            combined: why,
                        });
                        for mut d in unit {
                            d.state = DeliveryState::Sent;
                            d.sent_at = Some(now);
                            d.last_error = None;
                            d.last_error_code = None;
                            d.sent_in = why.map(|_| id.clone());
                            updates.push(d);
                        }
                    }
                    Err(e) => {
                        for mut d in unit {
                            d.attempts += 1;
                            d.last_error = Some(e.text.clone());
                            d.last_error_code = Some(e.code.as_str().into());
                            let age = now.duration_since(d.created_at).unsigned_abs();
                            if e.permanent || age >= self.settings.give_up_after {
                                d.state = DeliveryState::GaveUp;
                                said.push(Said::GaveUp {
                                    destination: dest.label(),
                                    kind: d.message.kind.clone(),
                                    attempts: d.attempts,
                                    error: e.text.clone(),
                                });
                            } else {
                                let delay = backoff(
                                    d.attempts,
                                    self.settings.retry_initial,
                                    self.settings.retry_max,
                                );
                                d.next_attempt_at = add(now, delay);
                                next_due = Some(
                                    next_due
                                        .map_or(d.next_attempt_at, |t| t.min(d.next_attempt_at)),
                                );
                                said.push(Said::Retry {
                                    destination: dest.label(),
                                    kind: d.message.kind.clone(),
                                    attempts: d.attempts,
                                    retry_in_secs: delay.as_secs(),
                                    error: e.text.clone(),
                                });
                            }
                            updates.push(d);
                        }
                    }
                }
            }
        }
        if !updates.is_empty() {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.put_deliveries(updates)).await??;
        }
        for line in said {
            line.log();
        }
        let now = Timestamp::now();
        Ok(next_due
            .map(|t| t.duration_since(now).unsigned_abs())
            .unwrap_or(POLL))
    }

    /// Routes every message waiting in the outbox.
    async fn route_outbox(&self) -> anyhow::Result<()> {
        let store = self.store.clone();
        let messages = tokio::task::spawn_blocking(move || store.outbox()).await??;
        if messages.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        let (accounts, corporations) =
            tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
                Ok((store.accounts()?, store.corporations()?))
            })
            .await??;
        let people = Directory {
            accounts: &accounts,
            corporations: &corporations,
        };
        let now = Timestamp::now();
        for m in messages {
            let mut ds = routing::route(&m, &self.settings, &people, now);
            for d in &mut ds {
                if d.digest {
                    d.next_attempt_at = next_digest(now, self.settings.digest_at_jst);
                }
            }
            if ds.is_empty() && m.phase != Phase::Resolved {
                info!(kind = %m.kind, key = %m.key, "この通知の宛先がありません。管理画面にだけ表示します (alert has no recipient; shown in the admin UI only)");
            }
            let store = self.store.clone();
            let id = m.id.clone();
            tokio::task::spawn_blocking(move || store.route_message(&id, ds)).await??;
        }
        Ok(())
    }
}

/// A log line of a pass, written after its outcome is stored.
enum Said {
    Delivered {
        destination: String,
        kind: String,
        items: usize,
        combined: Option<Combined>,
    },
    Retry {
        destination: String,
        kind: String,
        attempts: u32,
        retry_in_secs: u64,
        error: String,
    },
    GaveUp {
        destination: String,
        kind: String,
        attempts: u32,
        error: String,
    },
}

impl Said {
    fn log(self) {
        match self {
            Said::Delivered {
                destination,
                kind,
                items,
                combined,
            } => info!(%destination, %kind, items, ?combined, "通知を送りました (alert delivered)"),
            Said::Retry {
                destination,
                kind,
                attempts,
                retry_in_secs,
                error,
            } => warn!(
                code = %admin_ui::help::code::ALERTS_DELIVERY_RETRYING,
                %destination,
                %kind,
                attempts,
                retry_in_secs,
                %error,
                "通知を送れませんでした。あとで送り直します (alert delivery failed; will retry)"
            ),
            Said::GaveUp {
                destination,
                kind,
                attempts,
                error,
            } => error!(
                code = %admin_ui::help::code::ALERTS_DELIVERY_FAILED,
                %destination,
                %kind,
                attempts,
                %error,
                "通知を届けられませんでした。管理画面の「通知」で宛先とメールサーバーの設定を確認してください (an alert could not be delivered; check the destination and the mail settings)"
            ),
        }
    }
}

/// What one destination gets in one pass.
struct Plan {
    dest: Destination,
    units: Vec<(Vec<Delivery>, Option<Combined>)>,
}

/// Splits a destination's due deliveries into sends within `budget` (≥ 1): due digest items
/// go together as the digest; immediate ones go one by one while the budget lasts, and the
/// rest together in one rate-limited summary.
fn plan(dest: Destination, due: Vec<Delivery>, mut budget: usize) -> Plan {
    let (digest, mut single): (Vec<Delivery>, Vec<Delivery>) =
        due.into_iter().partition(|d| d.digest);
    let mut units = Vec::new();
    if !digest.is_empty() {
        units.push((digest, Some(Combined::Digest)));
        budget -= 1;
    }
    if budget > 0 && !single.is_empty() {
        if single.len() <= budget {
            units.extend(single.into_iter().map(|d| (vec![d], None)));
        } else {
            let rest = single.split_off(budget - 1);
            units.extend(single.into_iter().map(|d| (vec![d], None)));
            units.push((rest, Some(Combined::RateLimited)));
        }
    }
    Plan { dest, units }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::outbox::Message;
    use crate::config::Language;

    fn d(digest: bool) -> Delivery {
        let m = Message::new(
            "k",
            Phase::Event,
            "claim_refused",
            "error",
            vec![],
            "ja".into(),
            "en".into(),
            None,
            Timestamp::now(),
        );
        Delivery::new(
            m,
            Destination::Webhook { name: "w".into() },
            Language::Ja,
            digest,
            None,
            Timestamp::now(),
        )
    }

    fn shape(p: &Plan) -> Vec<(usize, Option<Combined>)> {
        p.units.iter().map(|(u, w)| (u.len(), *w)).collect()
    }

    #[test]
    fn a_burst_is_cut_to_the_budget_and_nothing_is_dropped() {
        let dest = Destination::Webhook { name: "w".into() };
        let p = plan(dest.clone(), (0..3).map(|_| d(false)).collect(), 5);
        assert_eq!(shape(&p), vec![(1, None), (1, None), (1, None)]);
        let p = plan(dest.clone(), (0..50).map(|_| d(false)).collect(), 5);
        assert_eq!(
            shape(&p),
            vec![
                (1, None),
                (1, None),
                (1, None),
                (1, None),
                (46, Some(Combined::RateLimited))
            ]
        );
        let p = plan(dest.clone(), (0..4).map(|_| d(false)).collect(), 1);
        assert_eq!(shape(&p), vec![(4, Some(Combined::RateLimited))]);
        let mut mixed: Vec<Delivery> = (0..2).map(|_| d(true)).collect();
        mixed.push(d(false));
        let p = plan(dest, mixed, 1);
        assert_eq!(
            shape(&p),
            vec![(2, Some(Combined::Digest))],
            "the digest takes the budget; the other waits"
        );
    }

    #[test]
    fn retries_back_off_to_a_ceiling_and_digests_come_at_their_hour() {
        let (i, m) = (Duration::from_secs(30), Duration::from_secs(600));
        assert_eq!(backoff(1, i, m), Duration::from_secs(30));
        assert_eq!(backoff(2, i, m), Duration::from_secs(60));
        assert_eq!(backoff(4, i, m), Duration::from_secs(240));
        assert_eq!(backoff(30, i, m), m);
        let now: Timestamp = "2026-12-07T00:30:00Z".parse().unwrap(); // 09:30 JST
        assert_eq!(next_digest(now, (8, 0)).to_string(), "2026-12-07T23:00:00Z");
        assert_eq!(
            next_digest(now, (18, 0)).to_string(),
            "2026-12-07T09:00:00Z"
        );
    }
}
