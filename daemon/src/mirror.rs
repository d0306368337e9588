//! The notice mirror: polls the gateway's notice list per federation user ID, downloads every
//! new notice, verifies it (`Content-Digest`, and the size and SHA-256 the list announced), and
//! stores it with the cursor that covers it; returns and assessments are derived in the same
//! transaction (`returns::apply`). The cadence adapts: soon after a submission (results and
//! notices follow it), slower otherwise, plus a daily catch-up. After each pass it checks that
//! the notices a month should bring have come, and raises an alert when they have not.
//!
//! Invariants: **never lost, never doubled, never altered.** A page of notices and the cursor
//! after it are committed together, so a crash before the commit re-reads the page and a crash
//! after it does not; a notice ID already stored is never stored again, and bodies are kept by
//! SHA-256 and never deleted. A body that fails verification is not stored (it is downloaded
//! again on the next pass). A user ID whose offices have all ended is not polled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jiff::{Timestamp, ToSpan as _, civil};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::alerts::{self, Alert};
use crate::claim::{Month, OfficeNumber};
use crate::config::{MirrorSettings, OfficeSettings};
use crate::federation::{GatewayApi, GatewayError, NoticeSource, WireNotice};
use crate::notice::{self, Group};
use crate::store::{IncomingNotice, NoticeRecord, Store, StoreError};

/// The offices polled under one federation user ID.
#[derive(Debug, Clone)]
pub struct UserPlan {
    /// The federation user ID.
    pub user_id: String,
    /// Its offices and the first processing month each no longer sends in.
    pub offices: Vec<(OfficeNumber, String, Option<Month>)>,
}

impl UserPlan {
    /// One plan per user ID, from the configured offices.
    pub fn from_offices(offices: &[OfficeSettings]) -> Vec<UserPlan> {
        let mut by_user: BTreeMap<String, UserPlan> = BTreeMap::new();
        for o in offices {
            by_user
                .entry(o.federation_user_id.as_str().to_owned())
                .or_insert_with(|| UserPlan {
                    user_id: o.federation_user_id.as_str().to_owned(),
                    offices: Vec::new(),
                })
                .offices
                .push((o.office_number.clone(), o.name.clone(), o.ended_from_month));
        }
        by_user.into_values().collect()
    }

    /// Whether any of its offices is still polled in processing month `month`: an office that
    /// ended from month E sent its last claims in E − 1, whose payment notices come in E, so it
    /// is polled up to E and not after.
    pub fn active_in(&self, month: Month) -> bool {
        self.offices
            .iter()
            .any(|(_, _, ended)| ended.is_none_or(|e| month <= e))
    }
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The gateway failed or refused.
    #[error("gateway: {0}")]
    Gateway(#[from] GatewayError),
    /// A body did not match its digest, size or announced SHA-256.
    #[error("notice {notice_id} failed verification: {detail}")]
    Verification { notice_id: String, detail: String },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl PassError {
    /// Its entry in the message catalogue (logged as the line's `code`, which the system
    /// page links to its explanation).
    pub fn code(&self) -> admin_ui::help::Code {
        use admin_ui::help::code;
        match self {
            PassError::Gateway(GatewayError::NotSent { .. } | GatewayError::Unknown { .. }) => {
                code::MIRROR_GATEWAY_UNREACHABLE
            }
            PassError::Gateway(GatewayError::UnknownOffice(_)) => code::MIRROR_USER_NOT_CONFIGURED,
            PassError::Gateway(_) => code::MIRROR_GATEWAY_REFUSED,
            PassError::Verification { .. } => code::MIRROR_VERIFICATION_FAILED,
            PassError::Store(_) => code::MIRROR_STORE_FAILED,
        }
    }
}

/// What one pass over one user ID did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Notices stored.
    pub stored: usize,
    /// Pages read.
    pub pages: usize,
    /// 7411 notices among the stored (returns were derived).
    pub returns_lists: usize,
}

/// `sha-256=:<base64>:` from a `Content-Digest` header, as raw bytes.
fn digest_sha256(header: &str) -> Option<Vec<u8>> {
    header.split(',').find_map(|part| {
        let (alg, value) = part.trim().split_once('=')?;
        if !alg.trim().eq_ignore_ascii_case("sha-256") {
            return None;
        }
        let b64 = value.trim().strip_prefix(':')?.strip_suffix(':')?;
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    })
}

/// Checks a downloaded body against its `Content-Digest` and the list's size and SHA-256.
pub fn verify(listed: &WireNotice, body: &[u8], header: Option<&str>) -> Result<String, String> {
    let computed = Sha256::digest(body);
    let hex = hex::encode(computed);
    let header = header.ok_or("no Content-Digest header")?;
    let sent = digest_sha256(header).ok_or("no sha-256 in Content-Digest")?;
    if sent.as_slice() != computed.as_slice() {
        return Err("Content-Digest does not match the body".into());
    }
    if body.len() as u64 != listed.size {
        return Err(format!(
            "{} bytes, the list said {}",
            body.len(),
            listed.size
        ));
    }
    if !hex.eq_ignore_ascii_case(&listed.sha256) {
        return Err("SHA-256 differs from the list".into());
    }
    Ok(hex)
}

/// When the next pass is due: the short interval for a while after a submission, the idle
/// interval otherwise, and never later than the next daily catch-up (JST) after the last pass.
pub fn next_due(
    last_pass: Option<Timestamp>,
    last_submission: Option<Timestamp>,
    now: Timestamp,
    s: &MirrorSettings,
) -> Timestamp {
    let Some(last) = last_pass else {
        return now;
    };
    let recent = last_submission.is_some_and(|t| {
        now.duration_since(t)
            .try_into()
            .is_ok_and(|d: Duration| d <= s.after_submission_for)
    });
    let interval = if recent {
        s.after_submission_interval
    } else {
        s.idle_interval
    };
    let regular = last + jiff::SignedDuration::try_from(interval).unwrap_or_default();
    regular.min(next_catch_up(last, s.catch_up_at_jst))
}

/// The first `hh:mm` JST strictly after `after`.
fn next_catch_up(after: Timestamp, (h, m): (i8, i8)) -> Timestamp {
    let tz = crate::timefmt::jst();
    let local = after.to_zoned_datetime(tz.clone());
    let today = local.date().at(h, m, 0, 0);
    let at = |d: civil::DateTime| {
        d.to_zoned_datetime(tz.clone())
            .map(|z| z.timestamp())
            .unwrap_or(after)
    };
    let t = at(today);
    if t > after {
        t
    } else {
        at(today.checked_add(1.day()).unwrap_or(today))
    }
}

/// The mirror stage.
#[derive(Debug)]
pub struct Mirror<G> {
    /// The gateway.
    pub gateway: Arc<G>,
    /// The store.
    pub store: Store,
    /// Settings.
    pub settings: MirrorSettings,
    /// One plan per federation user ID.
    pub users: Vec<UserPlan>,
    /// Woken by the relay when a claim was sent: poll soon.
    pub sent: Arc<Notify>,
    /// Wakes the returns linker after notices were stored.
    pub returns_hint: Arc<Notify>,
    /// Closed while the store's disk is nearly full: notices wait at the federation.
    pub disk: crate::disk_guard::DiskGate,
}

impl<G: GatewayApi + NoticeSource> Mirror<G> {
    /// Polls until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        if !self.settings.enabled || self.users.is_empty() {
            info!(code = %admin_ui::help::code::MIRROR_DISABLED, "notice mirror disabled");
            shutdown.cancelled().await;
            return Ok(());
        }
        let mut last_pass: Option<Timestamp> = None;
        let mut last_submission: Option<Timestamp> = None;
        let mut retry_at: Option<Timestamp> = None;
        let mut failures = 0u32;
        loop {
            let now = Timestamp::now();
            let due = retry_at
                .unwrap_or_else(|| next_due(last_pass, last_submission, now, &self.settings));
            let wait = due.duration_since(now).try_into().unwrap_or(Duration::ZERO);
            if !wait.is_zero() {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = self.sent.notified() => {
                        last_submission = Some(Timestamp::now());
                        // A claim that arrived may be the resubmission of a return.
                        self.returns_hint.notify_one();
                        continue;
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            if shutdown.is_cancelled() {
                return Ok(());
            }
            if self.disk.store_paused() {
                // The federation keeps the notices; they are fetched once there is space.
                let mut gate = self.disk.clone();
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    () = gate.changed() => {}
                }
                continue;
            }
            match self.pass_all(&shutdown).await {
                Ok(()) => {
                    failures = 0;
                    retry_at = None;
                    last_pass = Some(Timestamp::now());
                }
                Err(e) => {
                    failures += 1;
                    // 5 s, 10 s, 20 s … but never later than the regular cadence.
                    let retry = Duration::from_secs(5u64 << (failures - 1).min(10))
                        .min(self.settings.idle_interval);
                    retry_at = Some(
                        Timestamp::now()
                            + jiff::SignedDuration::try_from(retry).unwrap_or_default(),
                    );
                    if failures == 1 || failures.is_multiple_of(10) {
                        warn!(code = %e.code(), error = %e, failures, retry_s = retry.as_secs(), "通知文書の取得に失敗しました。自動でやり直します (notice mirror pass failed; trying again)");
                    }
                }
            }
        }
    }

    async fn pass_all(&self, shutdown: &CancellationToken) -> Result<(), PassError> {
        let window = self.gateway.window().await?;
        let mut stored = 0;
        for plan in &self.users {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            if !plan.active_in(window.processing_month) {
                debug!(user = %plan.user_id, "every office of this user ID has ended; not polled");
                continue;
            }
            let report = self
                .pass(&plan.user_id)
                .instrument(info_span!("mirror", user = %plan.user_id))
                .await?;
            stored += report.stored;
            if report.returns_lists > 0 {
                self.returns_hint.notify_one();
            }
        }
        if stored > 0 {
            info!(stored, "notices mirrored");
        }
        let store = self.store.clone();
        let users = self.users.clone();
        let settings = self.settings.clone();
        tokio::task::spawn_blocking(move || {
            check_expected(
                &store,
                &users,
                &settings,
                window.gateway_now,
                window.processing_month,
            )
        })
        .await
        .map_err(|e| PassError::Store(StoreError::NotCommitted(e.to_string())))??;
        Ok(())
    }

    /// Reads every new page for one user ID and stores it.
    pub async fn pass(&self, user_id: &str) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        let mut cursor = self.store.mirror_cursor(user_id)?.unwrap_or_default();
        loop {
            let page = self
                .gateway
                .list_notices(user_id, cursor.cursor.as_deref(), self.settings.page_size)
                .await?;
            report.pages += 1;
            let now = Timestamp::now();
            if page.notices.is_empty() {
                cursor.last_pass_at = Some(now);
                if cursor.cursor.as_deref() != Some(page.next_cursor.as_str())
                    && !page.next_cursor.is_empty()
                {
                    cursor.cursor = Some(page.next_cursor);
                }
                self.store.put_mirror_cursor(user_id, cursor).await?;
                return Ok(report);
            }
            let mut incoming = Vec::with_capacity(page.notices.len());
            for listed in &page.notices {
                if let Some(known) = self.store.notice(&listed.notice_id)? {
                    if !known.sha256.eq_ignore_ascii_case(&listed.sha256) {
                        warn!(code = %admin_ui::help::code::MIRROR_NOTICE_BYTES_DIFFER, notice = %listed.notice_id, "ゲートウェイが、保存済みの通知文書と中身の違うものを示しています。保存済みの元の文書を残します (the gateway lists a stored notice with other bytes; the stored original is kept)");
                    }
                    continue;
                }
                let content = self
                    .gateway
                    .notice_content(user_id, &listed.notice_id)
                    .await?;
                let sha256 = verify(listed, &content.bytes, content.content_digest.as_deref())
                    .map_err(|detail| PassError::Verification {
                        notice_id: listed.notice_id.clone(),
                        detail,
                    })?;
                let body = content.bytes.to_vec();
                let parsed = if listed.media_type.starts_with("text/csv") {
                    match notice::parse(&body) {
                        Ok(p) => Some(p),
                        Err(e) => {
                            warn!(code = %admin_ui::help::code::MIRROR_NOTICE_UNPARSED, notice = %listed.notice_id, error = %e, "通知文書はそのまま保存しましたが、表として読めません (notice stored as is but cannot be read as a table)");
                            None
                        }
                    }
                } else {
                    None
                };
                incoming.push(IncomingNotice {
                    record: NoticeRecord {
                        notice_id: listed.notice_id.clone(),
                        user_id: user_id.to_owned(),
                        office_number: listed.office_number.clone(),
                        kind_id: listed.kind_id.clone(),
                        title: listed.title.clone(),
                        processing_month: listed.processing_month.clone(),
                        issued_at: listed.issued_at.clone(),
                        media_type: listed.media_type.clone(),
                        size: listed.size,
                        sha256,
                        received_at: now,
                    },
                    body,
                    parsed,
                });
            }
            let advanced = cursor.cursor.as_deref() != Some(page.next_cursor.as_str());
            cursor.cursor = Some(page.next_cursor.clone());
            cursor.last_pass_at = Some(now);
            if !incoming.is_empty() {
                cursor.last_new_at = Some(now);
            }
            crate::failpoint::hit("mirror.before_page_commit");
            let stored = self
                .store
                .store_notice_page(user_id, incoming, cursor.clone())
                .await?;
            crate::failpoint::hit("mirror.after_page_commit");
            for n in &stored.new {
                info!(notice = %n.notice_id, office = %n.office_number, kind = %n.kind_id, month = %n.processing_month, bytes = n.size, "notice stored");
                if matches!(n.kind_id.as_str(), "7411" | "7421") {
                    report.returns_lists += 1;
                }
            }
            report.stored += stored.new.len();
            if !advanced {
                // A gateway that does not move its cursor would loop for ever.
                return Ok(report);
            }
        }
    }
}

/// Raises (or resolves) an alert per office and month whose expected notices have not come:
/// 返戻系 by the end of the 審査 month plus a grace, 支払系 by a day of the next month. Only
/// months in which the office had a claim accepted, and only the last three, are checked.
pub fn check_expected(
    store: &Store,
    users: &[UserPlan],
    s: &MirrorSettings,
    gateway_now: Timestamp,
    current: Month,
) -> Result<(), StoreError> {
    let tz = crate::timefmt::jst();
    let first_of = |m: Month| {
        civil::date(m.year(), m.month(), 1)
            .at(0, 0, 0, 0)
            .to_zoned_datetime(tz.clone())
            .map(|z| z.timestamp())
            .ok()
    };
    let mut accepted: BTreeMap<(String, Month), ()> = BTreeMap::new();
    store.each(|sub| {
        if matches!(
            sub.state,
            crate::submission::State::Accepted | crate::submission::State::AcceptedWithReturns
        ) && let (Some(o), Some(m)) = (&sub.office_number, sub.processing_month)
            && m.months_until(current) <= 3
        {
            accepted.insert((o.as_str().to_owned(), m), ());
        }
        Ok::<(), StoreError>(())
    })?;
    let names: BTreeMap<String, String> = users
        .iter()
        .flat_map(|u| u.offices.iter())
        .map(|(n, name, _)| (n.as_str().to_owned(), name.clone()))
        .collect();
    for (office, month) in accepted.keys() {
        let Some(name) = names.get(office) else {
            continue;
        };
        let notices = store.notices_of(office, Some(*month))?;
        let has = |g: Group| notices.iter().any(|n| notice::group(&n.kind_id) == g);
        let returns_due = first_of(month.next()).map(|t| {
            t + jiff::SignedDuration::try_from(s.returns_notices_grace).unwrap_or_default()
        });
        let payment_due = first_of(month.next()).map(|t| {
            t + jiff::SignedDuration::from_hours(24 * (i64::from(s.payment_notices_due_day) - 1))
        });
        for (group, due, ja, en) in [
            (
                Group::Returns,
                returns_due,
                "返戻系の通知（審査決定増減表・返戻一覧など）",
                "the month-end notices (examination results, returns list)",
            ),
            (
                Group::Payment,
                payment_due,
                "支払系の通知（支払決定額通知書など）",
                "the payment notices",
            ),
        ] {
            let key = format!(
                "notice_missing/{}/{office}/{month}",
                if group == Group::Returns {
                    "returns"
                } else {
                    "payment"
                }
            );
            let missing = due.is_some_and(|d| gateway_now >= d) && !has(group);
            if missing {
                let now = Timestamp::now();
                alerts::raise(
                    store,
                    Alert {
                        key,
                        kind: "notice_missing".into(),
                        severity: "warning".into(),
                        offices: vec![office.clone()],
                        message_ja: format!(
                            "{name}（{office}）の {} 審査分の{ja}がまだ届いていません。国保連の電子請求受付システムで通知が出ているか確認し、出ていない場合は国保連に問い合わせてください。",
                            month.to_japanese()
                        ),
                        message_en: format!(
                            "{en} for {month} of {name} ({office}) have not arrived. Check the federation's portal; if they are not there either, ask the federation."
                        ),
                        raised_at: now,
                        updated_at: now,
                    },
                )?;
            } else {
                alerts::resolve(store, &key)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> MirrorSettings {
        MirrorSettings {
            enabled: true,
            idle_interval: Duration::from_secs(3600),
            after_submission_interval: Duration::from_secs(60),
            after_submission_for: Duration::from_secs(1800),
            catch_up_at_jst: (9, 30),
            page_size: 100,
            returns_notices_grace: Duration::from_secs(24 * 3600),
            payment_notices_due_day: 20,
        }
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_cadence_adapts_and_catches_up_at_half_past_nine() {
        let s = settings();
        let now = t("2026-12-03T14:00:00+09:00");
        // Never polled: now.
        assert_eq!(next_due(None, None, now, &s), now);
        // Idle: an hour after the last pass.
        let last = t("2026-12-03T13:30:00+09:00");
        assert_eq!(
            next_due(Some(last), None, now, &s),
            t("2026-12-03T14:30:00+09:00")
        );
        // Shortly after a submission: a minute after the last pass.
        let sent = t("2026-12-03T13:50:00+09:00");
        assert_eq!(
            next_due(Some(last), Some(sent), now, &s),
            t("2026-12-03T13:31:00+09:00")
        );
        // A submission long ago does not count.
        let old = t("2026-12-03T10:00:00+09:00");
        assert_eq!(
            next_due(Some(last), Some(old), now, &s),
            t("2026-12-03T14:30:00+09:00")
        );
        // The catch-up comes first when it is due before the interval ends.
        let mut long = settings();
        long.idle_interval = Duration::from_secs(6 * 3600);
        let evening = t("2026-12-03T22:00:00+09:00");
        assert_eq!(
            next_due(Some(evening), None, evening, &long),
            t("2026-12-04T04:00:00+09:00")
        );
        let night = t("2026-12-04T05:00:00+09:00");
        assert_eq!(
            next_due(Some(night), None, night, &long),
            t("2026-12-04T09:30:00+09:00")
        );
    }

    fn listed(body: &[u8]) -> WireNotice {
        WireNotice {
            notice_id: "N1".into(),
            office_number: "1379999996".into(),
            kind_id: "7411".into(),
            title: String::new(),
            processing_month: "202506".into(),
            issued_at: String::new(),
            media_type: "text/csv; charset=Shift_JIS".into(),
            size: body.len() as u64,
            sha256: hex::encode(Sha256::digest(body)),
        }
    }

    #[test]
    fn bodies_are_verified_against_the_digest_and_the_list() {
        let body = b"1,1,0,0,741\r\n3,2\r\n";
        let header = crate::federation::content_digest(body);
        let ok = listed(body);
        assert_eq!(verify(&ok, body, Some(&header)).unwrap(), ok.sha256);
        assert!(verify(&ok, body, None).is_err());
        assert!(verify(&ok, b"other", Some(&header)).is_err());
        let wrong = crate::federation::content_digest(b"other");
        assert!(verify(&ok, body, Some(&wrong)).is_err());
        let mut short = ok.clone();
        short.size += 1;
        assert!(verify(&short, body, Some(&header)).is_err());
        let mut other = ok.clone();
        other.sha256 = hex::encode(Sha256::digest(b"x"));
        assert!(verify(&other, body, Some(&header)).is_err());
        // Several digests in one header: the sha-256 one counts.
        let both = format!("sha-512=:AAAA:, {header}");
        assert!(verify(&ok, body, Some(&both)).is_ok());
    }

    #[test]
    fn ended_offices_are_polled_until_their_last_payment_notices() {
        let plan = UserPlan {
            user_id: "KJ1".into(),
            offices: vec![(
                "1379999996".parse().unwrap(),
                "a".into(),
                Some("202604".parse().unwrap()),
            )],
        };
        assert!(plan.active_in("202603".parse().unwrap()));
        assert!(plan.active_in("202604".parse().unwrap()));
        assert!(!plan.active_in("202605".parse().unwrap()));
    }

    #[test]
    fn a_missing_notice_raises_one_alert_until_it_comes() {
        use crate::store::{IncomingNotice, MirrorCursor};
        use crate::submission::{State, Submission};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let office: OfficeNumber = "1379999996".parse().unwrap();
        let december: Month = "202612".parse().unwrap();
        let mut sub = Submission::new("A.CSV".into(), "ab".into(), 2, Timestamp::now());
        sub.office_number = Some(office.clone());
        sub.processing_month = Some(december);
        sub.state = State::Accepted;
        store.record_new(sub, b"ab".to_vec()).unwrap();
        let users = vec![UserPlan {
            user_id: "KJ1".into(),
            offices: vec![(office.clone(), "さくら".into(), None)],
        }];
        let s = settings();
        let keys = || -> Vec<String> {
            alerts::current(&store)
                .unwrap()
                .into_iter()
                .map(|a| a.key)
                .collect()
        };
        // Before the end of December plus a day: nothing is missing yet.
        check_expected(&store, &users, &s, t("2027-01-01T23:00:00+09:00"), december).unwrap();
        assert!(keys().is_empty());
        // After it, the 返戻系 notices are missing; raised once however often it is checked.
        for _ in 0..3 {
            check_expected(
                &store,
                &users,
                &s,
                t("2027-01-02T01:00:00+09:00"),
                december.next(),
            )
            .unwrap();
        }
        assert_eq!(
            keys(),
            vec!["notice_missing/returns/1379999996/202612".to_owned()]
        );
        let alert = &alerts::current(&store).unwrap()[0];
        assert!(alert.message_ja.contains("さくら") && alert.message_ja.contains("2026年12月"));
        // The 7411 comes: resolved. By the 20th of January the payment notices are missing.
        let body = b"1,1,0,0,741,0,0,1379999996,0,7,202612,0\r\n3,2\r\n".to_vec();
        let record = NoticeRecord {
            notice_id: "N1".into(),
            user_id: "KJ1".into(),
            office_number: office.to_string(),
            kind_id: "7411".into(),
            title: String::new(),
            processing_month: "202612".into(),
            issued_at: String::new(),
            media_type: "text/csv; charset=Shift_JIS".into(),
            size: body.len() as u64,
            sha256: hex::encode(Sha256::digest(&body)),
            received_at: Timestamp::now(),
        };
        store
            .store_notice_page_blocking(
                "KJ1",
                vec![IncomingNotice {
                    record,
                    body,
                    parsed: None,
                }],
                MirrorCursor::default(),
            )
            .unwrap();
        check_expected(
            &store,
            &users,
            &s,
            t("2027-01-20T00:00:01+09:00"),
            december.next(),
        )
        .unwrap();
        assert_eq!(
            keys(),
            vec!["notice_missing/payment/1379999996/202612".to_owned()]
        );
    }
}
