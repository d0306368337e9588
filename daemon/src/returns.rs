//! The 返戻 tracker: every 7411 detail row becomes a return item, a to-do for the office that
//! closes itself. An item is `open` until a later submission of the same office holds a
//! statement for the same 被保険者番号, service month and form (`resubmitted`, linked to that
//! submission); it is `resolved` when the 返戻一覧 of the month of that resubmission does not
//! return it again (`returned_again` when it does: the new row is a new open item), or `closed`
//! by hand with a note. 7311 査定 rows are kept beside them as assessments.
//!
//! Invariants: items are derived once, in the same store transaction that stores their notice,
//! so a crash neither loses nor doubles one; an item is never deleted, and every status change
//! is appended to its history. A link to a submission that later fails (rejected, withdrawn,
//! refused) is undone and the item is open again: only a claim the federation has, or is about
//! to get, counts as a resubmission.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::claim::{Month, StatementRef};
use crate::notice::{self, AssessmentRow, Parsed, ReturnRow};
use crate::store::{NoticeRecord, Store, StoreError};
use crate::submission::{State, Submission, SubmissionId};

/// Where a return item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnStatus {
    /// Returned (or held); nothing sent for it yet.
    Open,
    /// A later submission holds the statement again.
    Resubmitted,
    /// The month's notices after the resubmission did not return it again.
    Resolved,
    /// The resubmission came back again; the new row is its own item.
    ReturnedAgain,
    /// Closed by a person, with a note.
    Closed,
}

impl ReturnStatus {
    /// Every status.
    pub const ALL: [ReturnStatus; 5] = [
        ReturnStatus::Open,
        ReturnStatus::Resubmitted,
        ReturnStatus::Resolved,
        ReturnStatus::ReturnedAgain,
        ReturnStatus::Closed,
    ];

    /// The status named `name` (its [`ReturnStatus::as_str`]).
    pub fn from_name(name: &str) -> Option<ReturnStatus> {
        ReturnStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReturnStatus::Open => "open",
            ReturnStatus::Resubmitted => "resubmitted",
            ReturnStatus::Resolved => "resolved",
            ReturnStatus::ReturnedAgain => "returned_again",
            ReturnStatus::Closed => "closed",
        }
    }

    /// Japanese label.
    pub fn label_ja(self) -> &'static str {
        match self {
            ReturnStatus::Open => "未対応",
            ReturnStatus::Resubmitted => "再請求済み",
            ReturnStatus::Resolved => "解決",
            ReturnStatus::ReturnedAgain => "再返戻",
            ReturnStatus::Closed => "完了（手動）",
        }
    }

    /// English label.
    pub fn label_en(self) -> &'static str {
        match self {
            ReturnStatus::Open => "open",
            ReturnStatus::Resubmitted => "resubmitted",
            ReturnStatus::Resolved => "resolved",
            ReturnStatus::ReturnedAgain => "returned again",
            ReturnStatus::Closed => "closed by hand",
        }
    }

    /// Whether nothing more happens to it by itself.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ReturnStatus::Resolved | ReturnStatus::ReturnedAgain | ReturnStatus::Closed
        )
    }
}

/// One status change of a return item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnEvent {
    /// When.
    pub at: Timestamp,
    /// The new status.
    pub status: ReturnStatus,
    /// Why, in Japanese and English.
    pub reason: String,
}

/// One returned or held statement, from one 7411 row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnItem {
    /// `<notice id>-<record number>`: stable, so deriving twice cannot make two items.
    pub id: String,
    /// 事業所番号 of the notice.
    pub office_number: String,
    /// 処理対象年月 (審査月) of the notice.
    pub processing_month: Month,
    /// The 7411 notice it came from.
    pub notice_id: String,
    /// The row, typed.
    pub row: ReturnRow,
    /// Where it stands.
    pub status: ReturnStatus,
    /// The resubmission, once linked.
    pub linked_submission: Option<SubmissionId>,
    /// The processing month of that resubmission.
    pub linked_processing_month: Option<Month>,
    /// The item that replaced this one when it was returned again.
    pub returned_again_as: Option<String>,
    /// A person's note (closing by hand needs one).
    pub note: Option<String>,
    /// Every status change, oldest first.
    pub history: Vec<ReturnEvent>,
}

impl ReturnItem {
    /// The statement it is about, when its row names one.
    pub fn statement(&self) -> Option<StatementRef> {
        Some(StatementRef {
            insured_number: self.row.insured_number.clone(),
            service_month: self.row.service_month?,
            form: self.row.form.clone(),
        })
    }

    fn set(&mut self, status: ReturnStatus, reason: String, at: Timestamp) {
        self.status = status;
        self.history.push(ReturnEvent { at, status, reason });
    }
}

/// One 7311 査定 row, kept beside the returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    /// `<notice id>-<record number>`.
    pub id: String,
    /// 事業所番号.
    pub office_number: String,
    /// 審査月.
    pub processing_month: Month,
    /// The 7311 notice.
    pub notice_id: String,
    /// The row, typed.
    pub row: AssessmentRow,
}

/// What deriving needs from the store inside the transaction that stores the notices.
pub trait ReturnBook {
    /// The items of an office still in work (open or resubmitted).
    fn pending_of_office(&mut self, office: &str) -> Result<Vec<ReturnItem>, StoreError>;
    /// Whether an item exists.
    fn has_item(&mut self, id: &str) -> Result<bool, StoreError>;
    /// Inserts or replaces an item.
    fn put_item(&mut self, item: &ReturnItem) -> Result<(), StoreError>;
    /// Inserts an assessment.
    fn put_assessment(&mut self, a: &Assessment) -> Result<(), StoreError>;
}

/// A newly stored notice with its parse (CSV notices only).
#[derive(Debug, Clone)]
pub struct Derived {
    /// The notice.
    pub record: NoticeRecord,
    /// Its rows, when it is a CSV notice that could be read.
    pub parsed: Option<Parsed>,
}

fn key_of(office: &str, s: &StatementRef) -> String {
    format!(
        "{office}|{}|{}|{}",
        s.insured_number, s.service_month, s.form
    )
}

/// Applies newly stored notices to the returns: new items from 7411 rows, assessments from 7311
/// rows, and the resolution of resubmitted items by a later month's 返戻一覧. Runs inside the
/// store transaction that stores the notices, once per notice.
pub fn apply(
    book: &mut dyn ReturnBook,
    notices: &[Derived],
    now: Timestamp,
) -> Result<(), StoreError> {
    for d in notices {
        let Some(parsed) = &d.parsed else { continue };
        let Some(month) = d.record.processing_month() else {
            continue;
        };
        let office = d.record.office_number.clone();
        match parsed.kind_id.as_str() {
            "7411" | "7421" => {
                let rows = notice::return_rows(parsed);
                let mut new_items = Vec::new();
                for row in rows {
                    let id = format!("{}-{:06}", d.record.notice_id, row.record_no);
                    if book.has_item(&id)? {
                        continue;
                    }
                    let mut item = ReturnItem {
                        id,
                        office_number: office.clone(),
                        processing_month: month,
                        notice_id: d.record.notice_id.clone(),
                        row,
                        status: ReturnStatus::Open,
                        linked_submission: None,
                        linked_processing_month: None,
                        returned_again_as: None,
                        note: None,
                        history: Vec::new(),
                    };
                    let why = if item.row.held {
                        format!(
                            "{} の返戻（保留）一覧で保留 / held in the 7411 of {month}",
                            month.to_japanese()
                        )
                    } else {
                        format!(
                            "{} の返戻一覧で返戻（事由 {}） / returned in the 7411 of {month} (reason {})",
                            month.to_japanese(),
                            item.row.reason_code,
                            item.row.reason_code
                        )
                    };
                    item.set(ReturnStatus::Open, why, now);
                    new_items.push(item);
                }
                // Resubmissions sent in (or before) this month that are not returned again are
                // resolved; those that are, are superseded by their new row.
                let returned_now: HashMap<String, String> = new_items
                    .iter()
                    .filter_map(|i| Some((key_of(&office, &i.statement()?), i.id.clone())))
                    .collect();
                for mut old in book.pending_of_office(&office)? {
                    let due = old.status == ReturnStatus::Resubmitted
                        && old.linked_processing_month.is_some_and(|m| m <= month)
                        && old.processing_month < month;
                    if !due {
                        continue;
                    }
                    let again = old
                        .statement()
                        .and_then(|s| returned_now.get(&key_of(&office, &s)).cloned());
                    match again {
                        Some(new_id) => {
                            old.returned_again_as = Some(new_id.clone());
                            old.set(
                                ReturnStatus::ReturnedAgain,
                                format!("{} の返戻一覧で再び返戻（{new_id}） / returned again in the 7411 of {month}", month.to_japanese()),
                                now,
                            );
                        }
                        None => old.set(
                            ReturnStatus::Resolved,
                            format!("{} の返戻一覧に再請求分の返戻なし / not returned again in the 7411 of {month}", month.to_japanese()),
                            now,
                        ),
                    }
                    book.put_item(&old)?;
                }
                for item in &new_items {
                    book.put_item(item)?;
                }
            }
            "7311" => {
                for row in notice::assessment_rows(parsed) {
                    let id = format!("{}-{:06}", d.record.notice_id, row.record_no);
                    book.put_assessment(&Assessment {
                        id,
                        office_number: office.clone(),
                        processing_month: month,
                        notice_id: d.record.notice_id.clone(),
                        row,
                    })?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether a submission counts as a resubmission: the federation has it or is about to get it.
fn counts_as_sent(state: State) -> bool {
    matches!(
        state,
        State::Queued
            | State::Held
            | State::Sending
            | State::Arrived
            | State::Accepted
            | State::AcceptedWithReturns
    )
}

/// What a linking pass changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkReport {
    /// Items newly linked to a resubmission.
    pub linked: usize,
    /// Links undone because their submission failed.
    pub unlinked: usize,
}

/// Links open items to later submissions that hold their statement, and undoes links whose
/// submission failed. Reads the statements of each candidate submission once (cached in the
/// store).
pub fn link(store: &Store, now: Timestamp) -> Result<LinkReport, StoreError> {
    let items: Vec<ReturnItem> = store.pending_returns()?;
    if items.is_empty() {
        return Ok(LinkReport::default());
    }
    let offices: HashSet<&str> = items.iter().map(|i| i.office_number.as_str()).collect();
    let earliest: HashMap<&str, Month> = items.iter().fold(HashMap::new(), |mut m, i| {
        let e = m
            .entry(i.office_number.as_str())
            .or_insert(i.processing_month);
        *e = (*e).min(i.processing_month);
        m
    });
    // Candidate submissions: of these offices, later than the earliest open item, sent or on
    // their way. Oldest first, so an item links to the first resubmission.
    let mut candidates: Vec<Submission> = Vec::new();
    let mut states: HashMap<SubmissionId, State> = HashMap::new();
    store.each(|sub| {
        states.insert(sub.id.clone(), sub.state);
        let office = sub.office_number.as_ref().map(|o| o.as_str().to_owned());
        if let (Some(o), Some(m)) = (office, sub.processing_month)
            && offices.contains(o.as_str())
            && earliest.get(o.as_str()).is_some_and(|e| m > *e)
            && counts_as_sent(sub.state)
        {
            candidates.push(sub);
        }
        Ok::<(), StoreError>(())
    })?;
    let mut held: HashMap<String, Vec<(SubmissionId, Month)>> = HashMap::new();
    for sub in &candidates {
        let (Some(office), Some(month)) = (&sub.office_number, sub.processing_month) else {
            continue;
        };
        let list = match store.statements_of(&sub.id)? {
            Some(list) => list,
            None => {
                let Some(bytes) = store.blob(&sub.sha256)? else {
                    continue;
                };
                let list = crate::claim::statements(&bytes);
                store.put_statements_of(&sub.id, &list)?;
                list
            }
        };
        for s in list {
            held.entry(key_of(office.as_str(), &s))
                .or_default()
                .push((sub.id.clone(), month));
        }
    }
    let mut report = LinkReport::default();
    for item in items {
        let mut changed = item.clone();
        if item.status == ReturnStatus::Resubmitted {
            let gone = item
                .linked_submission
                .as_ref()
                .is_none_or(|id| states.get(id).is_none_or(|s| !counts_as_sent(*s)));
            if !gone {
                continue;
            }
            changed.linked_submission = None;
            changed.linked_processing_month = None;
            changed.set(
                ReturnStatus::Open,
                "再請求したファイルが送信されませんでした（エラー・取消） / the resubmission failed or was withdrawn".into(),
                now,
            );
            report.unlinked += 1;
        }
        let found = item.statement().and_then(|s| {
            held.get(&key_of(&item.office_number, &s))?
                .iter()
                .find(|(_, m)| *m > item.processing_month)
                .cloned()
        });
        if let Some((id, month)) = found {
            changed.linked_submission = Some(id.clone());
            changed.linked_processing_month = Some(month);
            changed.set(
                ReturnStatus::Resubmitted,
                format!(
                    "{} 分として再請求（{id}） / resubmitted in {month}",
                    month.to_japanese()
                ),
                now,
            );
            report.linked += 1;
        }
        if changed != item {
            store.put_return(changed)?;
        }
    }
    Ok(report)
}

/// Closes an item by hand. A note is required: the next person must see why.
pub fn close(
    store: &Store,
    id: &str,
    note: &str,
    now: Timestamp,
) -> Result<ReturnItem, CloseError> {
    let note = note.trim();
    if note.is_empty() {
        return Err(CloseError::NoteRequired);
    }
    let Some(mut item) = store.return_item(id)? else {
        return Err(CloseError::NotFound(id.to_owned()));
    };
    if item.status == ReturnStatus::Closed {
        return Ok(item);
    }
    item.note = Some(note.to_owned());
    item.set(
        ReturnStatus::Closed,
        format!("手動で完了 / closed by hand: {note}"),
        now,
    );
    store.put_return(item.clone())?;
    Ok(item)
}

/// Why closing failed.
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    /// No note.
    #[error("完了にする理由（メモ）を入力してください (a note is required to close a return)")]
    NoteRequired,
    /// Unknown id.
    #[error("返戻 {0} が見つかりません (no such return item)")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The linking task: links after every hint (a file taken, notices stored) and every
/// `interval`, until `shutdown`.
pub async fn run(
    store: Store,
    hint: Arc<Notify>,
    interval: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let s = store.clone();
        match tokio::task::spawn_blocking(move || link(&s, Timestamp::now())).await? {
            Ok(r) if r.linked + r.unlinked > 0 => {
                info!(
                    linked = r.linked,
                    unlinked = r.unlinked,
                    "returns linked to resubmissions"
                )
            }
            Ok(_) => debug!("returns: nothing to link"),
            Err(e) => {
                warn!(error = %e, "返戻と請求ファイルの結び付けに失敗しました。後で自動でやり直します (returns: linking failed; tried again later)")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = hint.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{IncomingNotice, MirrorCursor};
    use encoding_rs::SHIFT_JIS;
    use sha2::{Digest, Sha256};

    const OFFICE: &str = "1379999996";

    fn returns_list(id: &str, month: &str, rows: &[(&str, &str, bool)]) -> IncomingNotice {
        let mut lines = vec![
            format!("1,1,0,{},741,0,0,{OFFICE},0,7,{month},0", rows.len() + 1),
            format!("2,2,7411,H1,{OFFICE},さくら,{month},20250630,1,東京都国民健康保険団体連合会"),
        ];
        for (n, (insured, reason, held)) in rows.iter().enumerate() {
            lines.push(format!(
                "2,{},7411,D1,139998,千代田区,{insured},ﾃｽﾄ,請,202505,11,2000,{reason},内容,{},111111",
                n + 3,
                if *held { "保留" } else { "" }
            ));
        }
        lines.push(format!("3,{}", rows.len() + 3));
        let body = SHIFT_JIS
            .encode(&(lines.join("\r\n") + "\r\n"))
            .0
            .into_owned();
        let sha256 = hex::encode(Sha256::digest(&body));
        IncomingNotice {
            record: NoticeRecord {
                notice_id: id.into(),
                user_id: "KJ1".into(),
                office_number: OFFICE.into(),
                kind_id: "7411".into(),
                title: "返戻一覧".into(),
                processing_month: month.into(),
                issued_at: String::new(),
                media_type: "text/csv; charset=Shift_JIS".into(),
                size: body.len() as u64,
                sha256,
                received_at: Timestamp::now(),
            },
            parsed: Some(notice::parse(&body).unwrap()),
            body,
        }
    }

    fn cursor(c: &str) -> MirrorCursor {
        MirrorCursor {
            cursor: Some(c.into()),
            ..MirrorCursor::default()
        }
    }

    fn resubmit(store: &Store, insured: &[&str], month: &str, state: State) -> SubmissionId {
        let office: crate::claim::OfficeNumber = OFFICE.parse().unwrap();
        let manager: crate::claim::OfficeNumber = "1379999988".parse().unwrap();
        // Services of 202505, as in the returned rows.
        let bytes = crate::claim::sample::care_claim(
            &office,
            &manager,
            "202506".parse().unwrap(),
            insured,
            7,
        );
        let mut sub = Submission::new(
            "R.CSV".into(),
            hex::encode(Sha256::digest(&bytes)),
            bytes.len() as u64,
            Timestamp::now(),
        );
        sub.office_number = Some(office);
        sub.processing_month = Some(month.parse().unwrap());
        sub.state = state;
        let id = sub.id.clone();
        store.record_new(sub, bytes).unwrap();
        id
    }

    fn status_of(store: &Store, insured: &str) -> Vec<ReturnStatus> {
        store
            .returns()
            .unwrap()
            .into_iter()
            .filter(|i| i.row.insured_number == insured)
            .map(|i| i.status)
            .collect()
    }

    #[test]
    fn returns_open_link_to_a_resubmission_and_resolve_next_month() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let first = returns_list(
            "N1",
            "202506",
            &[("0000000017", "B", false), ("0000000019", "C", true)],
        );
        let stored = store
            .store_notice_page_blocking("KJ1", vec![first.clone()], cursor("1"))
            .unwrap();
        assert_eq!(stored.new.len(), 1);
        assert_eq!(store.returns().unwrap().len(), 2);
        assert!(
            store
                .returns()
                .unwrap()
                .iter()
                .all(|i| i.status == ReturnStatus::Open)
        );
        assert!(store.returns().unwrap().iter().any(|i| i.row.held));
        assert_eq!(
            store
                .mirror_cursor("KJ1")
                .unwrap()
                .unwrap()
                .cursor
                .as_deref(),
            Some("1")
        );
        // The same page again (a crash after the commit, before the cursor was seen): nothing new.
        let again = store
            .store_notice_page_blocking("KJ1", vec![first], cursor("1"))
            .unwrap();
        assert_eq!((again.new.len(), again.known), (0, 1));
        assert_eq!(store.returns().unwrap().len(), 2);

        // A submission of the same month does not count; a later one does.
        resubmit(&store, &["0000000017"], "202506", State::Accepted);
        assert_eq!(
            link(&store, Timestamp::now()).unwrap(),
            LinkReport::default()
        );
        let sub = resubmit(&store, &["0000000017"], "202507", State::Queued);
        assert_eq!(link(&store, Timestamp::now()).unwrap().linked, 1);
        let item = store.return_item("N1-000003").unwrap().unwrap();
        assert_eq!(item.status, ReturnStatus::Resubmitted);
        assert_eq!(item.linked_submission.as_ref(), Some(&sub));
        assert_eq!(status_of(&store, "0000000019"), vec![ReturnStatus::Open]);
        // Linking again changes nothing.
        assert_eq!(
            link(&store, Timestamp::now()).unwrap(),
            LinkReport::default()
        );

        // July's 返戻一覧 returns only the held one again: the resubmitted one is resolved.
        let july = returns_list("N2", "202507", &[("0000000019", "C", true)]);
        store
            .store_notice_page_blocking("KJ1", vec![july], cursor("2"))
            .unwrap();
        assert_eq!(
            status_of(&store, "0000000017"),
            vec![ReturnStatus::Resolved]
        );
        assert_eq!(
            status_of(&store, "0000000019"),
            vec![ReturnStatus::Open, ReturnStatus::Open]
        );
        let history = store.return_item("N1-000003").unwrap().unwrap().history;
        assert_eq!(history.len(), 3, "{history:?}");
    }

    #[test]
    fn a_resubmission_returned_again_supersedes_and_a_failed_one_unlinks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let june = returns_list(
            "N1",
            "202506",
            &[("0000000017", "B", false), ("0000000027", "B", false)],
        );
        store
            .store_notice_page_blocking("KJ1", vec![june], cursor("1"))
            .unwrap();
        resubmit(&store, &["0000000017"], "202507", State::Arrived);
        let failing = resubmit(&store, &["0000000027"], "202507", State::Queued);
        assert_eq!(link(&store, Timestamp::now()).unwrap().linked, 2);
        store
            .update(&failing, |s| {
                s.transition(State::Rejected, "×", Timestamp::now())
            })
            .unwrap();
        let r = link(&store, Timestamp::now()).unwrap();
        assert_eq!((r.linked, r.unlinked), (0, 1));
        assert_eq!(status_of(&store, "0000000027"), vec![ReturnStatus::Open]);

        let july = returns_list("N2", "202507", &[("0000000017", "A", false)]);
        store
            .store_notice_page_blocking("KJ1", vec![july], cursor("2"))
            .unwrap();
        let old = store.return_item("N1-000003").unwrap().unwrap();
        assert_eq!(old.status, ReturnStatus::ReturnedAgain);
        assert_eq!(old.returned_again_as.as_deref(), Some("N2-000003"));
        assert_eq!(
            store.return_item("N2-000003").unwrap().unwrap().status,
            ReturnStatus::Open
        );
        // The one whose resubmission failed stays open (it was not resubmitted).
        assert_eq!(status_of(&store, "0000000027"), vec![ReturnStatus::Open]);
    }

    #[test]
    fn closing_by_hand_needs_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let june = returns_list("N1", "202506", &[("0000000017", "E", false)]);
        store
            .store_notice_page_blocking("KJ1", vec![june], cursor("1"))
            .unwrap();
        assert!(matches!(
            close(&store, "N1-000003", "  ", Timestamp::now()),
            Err(CloseError::NoteRequired)
        ));
        assert!(matches!(
            close(&store, "N9-000001", "x", Timestamp::now()),
            Err(CloseError::NotFound(_))
        ));
        let item = close(
            &store,
            "N1-000003",
            "時効のため請求しない",
            Timestamp::now(),
        )
        .unwrap();
        assert_eq!(item.status, ReturnStatus::Closed);
        assert_eq!(item.note.as_deref(), Some("時効のため請求しない"));
        // A closed item is not linked any more.
        resubmit(&store, &["0000000017"], "202507", State::Queued);
        assert_eq!(
            link(&store, Timestamp::now()).unwrap(),
            LinkReport::default()
        );
    }
}
