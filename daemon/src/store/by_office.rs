//! The store's indexes by office and month: for every submission and every return item,
//! `<事業所番号>/<YYYYMM>/<id>` → its state (and, for a submission, whether it has a receipt).
//! The admin UI counts an office's files and returns, and lists one office's records, from
//! these instead of decoding every record the store holds.
//!
//! Invariant: each index entry is written in the same transaction as the record it describes
//! (by `record_new_in`/`update_in` for submissions, by the return book's `put_item` for
//! returns), and a store of an older schema has both built from its records when it is opened
//! for writing, so an index never disagrees with the records.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{Store, StoreError, read_table};
use crate::claim::Month;
use crate::returns::{ReturnItem, ReturnStatus};
use crate::submission::{State, Submission, SubmissionId};

macro_rules! db_err {
    ($e:expr) => {
        $e.map_err(|e| StoreError::Db(e.into()))
    };
}

/// `<office>/<YYYYMM>/<submission id>` → (state name, has a receipt). A submission without a
/// processing month is filed under `000000`; one without an office number is not indexed.
pub(super) const SUBMISSIONS_BY_OFFICE: TableDefinition<&str, (&str, bool)> =
    TableDefinition::new("submissions_by_office_month");
/// `<office>/<YYYYMM>/<return item id>` → status name.
pub(super) const RETURNS_BY_OFFICE: TableDefinition<&str, &str> =
    TableDefinition::new("return_items_by_office_month");

/// The month part of a key for a submission without one.
const NO_MONTH: &str = "000000";

/// One submission as the office index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfficeSubmission {
    /// The submission.
    pub id: SubmissionId,
    /// Its processing month, when its control record has one.
    pub processing_month: Option<Month>,
    /// Its state.
    pub state: State,
    /// Whether the gateway gave it a receipt (到達).
    pub has_receipt: bool,
}

/// One return item as the office index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfficeReturn {
    /// The item.
    pub id: String,
    /// The 審査月 of its 7411 notice.
    pub processing_month: Month,
    /// Where it stands.
    pub status: ReturnStatus,
}

pub(super) fn submission_key(sub: &Submission) -> Option<String> {
    let office = sub.office_number.as_ref()?;
    let month = sub
        .processing_month
        .map(|m| m.to_string())
        .unwrap_or_else(|| NO_MONTH.to_owned());
    Some(format!("{office}/{month}/{}", sub.id.as_str()))
}

fn return_key(item: &ReturnItem) -> String {
    format!(
        "{}/{}/{}",
        item.office_number, item.processing_month, item.id
    )
}

/// Keeps the submission index in step with a record written in `txn` (`old_key`: the
/// record's key as it was, when it existed).
pub(super) fn index_submission(
    txn: &WriteTransaction,
    old_key: Option<String>,
    sub: &Submission,
) -> Result<(), StoreError> {
    let mut t = db_err!(txn.open_table(SUBMISSIONS_BY_OFFICE))?;
    let key = submission_key(sub);
    if let Some(old_key) = old_key
        && Some(&old_key) != key.as_ref()
    {
        db_err!(t.remove(old_key.as_str()))?;
    }
    if let Some(key) = key {
        db_err!(t.insert(key.as_str(), (sub.state.as_str(), sub.receipt.is_some())))?;
    }
    Ok(())
}

/// Keeps the return index in step with an item written in `txn` (an item's office and month
/// never change).
pub(super) fn index_return(txn: &WriteTransaction, item: &ReturnItem) -> Result<(), StoreError> {
    let mut t = db_err!(txn.open_table(RETURNS_BY_OFFICE))?;
    db_err!(t.insert(return_key(item).as_str(), item.status.as_str()))?;
    Ok(())
}

/// Builds both indexes from the records (schema 5 → 6), inside the opening transaction.
pub(super) fn build(txn: &WriteTransaction) -> Result<(), StoreError> {
    let subs = db_err!(txn.open_table(super::SUBMISSIONS))?;
    let mut n_subs = 0u64;
    for entry in db_err!(subs.iter())? {
        let (k, v) = db_err!(entry)?;
        let sub = super::decode(k.value(), v.value())?;
        index_submission(txn, None, &sub)?;
        n_subs += 1;
    }
    let returns = db_err!(txn.open_table(super::notices::RETURNS))?;
    let mut n_returns = 0u64;
    for entry in db_err!(returns.iter())? {
        let (k, v) = db_err!(entry)?;
        let item: ReturnItem = super::notices::unjson(k.value(), v.value())?;
        index_return(txn, &item)?;
        n_returns += 1;
    }
    tracing::info!(
        submissions = n_subs,
        returns = n_returns,
        "office indexes built"
    );
    Ok(())
}

/// The key range of one office (and month).
fn range_of(office: &str, month: Option<Month>) -> (String, String) {
    super::notices::prefix_range(&match month {
        Some(m) => format!("{office}/{m}/"),
        None => format!("{office}/"),
    })
}

/// `<office>/<month>/<id>` → (month, id).
fn split_key(key: &str) -> (&str, &str) {
    let mut parts = key.splitn(3, '/');
    let _office = parts.next();
    let month = parts.next().unwrap_or_default();
    let id = parts.next().unwrap_or_default();
    (month, id)
}

fn unreadable(key: &str, what: &str) -> StoreError {
    StoreError::Index(format!("{key} is unreadable: {what:?}"))
}

impl Store {
    /// One office's submissions (of one month, or of every month) from the index, oldest
    /// month first: the counts without the records.
    pub fn office_submissions(
        &self,
        office: &str,
        month: Option<Month>,
    ) -> Result<Vec<OfficeSubmission>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, SUBMISSIONS_BY_OFFICE)? else {
            return Ok(Vec::new());
        };
        let (start, end) = range_of(office, month);
        let mut out = Vec::new();
        for entry in db_err!(t.range(start.as_str()..end.as_str()))? {
            let (k, v) = db_err!(entry)?;
            let key = k.value();
            let (m, id) = split_key(key);
            let (state, has_receipt) = v.value();
            let state = State::from_name(state).ok_or_else(|| unreadable(key, state))?;
            let processing_month = if m == NO_MONTH {
                None
            } else {
                Some(m.parse().map_err(|_| unreadable(key, m))?)
            };
            out.push(OfficeSubmission {
                id: SubmissionId::from_string(id.to_owned()),
                processing_month,
                state,
                has_receipt,
            });
        }
        Ok(out)
    }

    /// One office's submission records (of one month, or of every month), oldest month first,
    /// from one read transaction.
    pub fn submissions_of(
        &self,
        office: &str,
        month: Option<Month>,
    ) -> Result<Vec<Submission>, StoreError> {
        let txn = self.read()?;
        let (Some(index), Some(subs)) = (
            read_table(&txn, SUBMISSIONS_BY_OFFICE)?,
            read_table(&txn, super::SUBMISSIONS)?,
        ) else {
            return Ok(Vec::new());
        };
        let (start, end) = range_of(office, month);
        let mut out = Vec::new();
        for entry in db_err!(index.range(start.as_str()..end.as_str()))? {
            let (k, _) = db_err!(entry)?;
            let (_, id) = split_key(k.value());
            if let Some(v) = db_err!(subs.get(id))? {
                out.push(super::decode(id, v.value())?);
            }
        }
        Ok(out)
    }

    /// One office's return items (of one month, or of every month) from the index: the
    /// counts without the items.
    pub fn office_returns(
        &self,
        office: &str,
        month: Option<Month>,
    ) -> Result<Vec<OfficeReturn>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, RETURNS_BY_OFFICE)? else {
            return Ok(Vec::new());
        };
        let (start, end) = range_of(office, month);
        let mut out = Vec::new();
        for entry in db_err!(t.range(start.as_str()..end.as_str()))? {
            let (k, v) = db_err!(entry)?;
            let key = k.value();
            let (m, id) = split_key(key);
            let status = v.value();
            out.push(OfficeReturn {
                id: id.to_owned(),
                processing_month: m.parse().map_err(|_| unreadable(key, m))?,
                status: ReturnStatus::from_name(status).ok_or_else(|| unreadable(key, status))?,
            });
        }
        Ok(out)
    }

    /// One office's return items (of one month, or of every month), oldest month first, from
    /// one read transaction.
    pub fn returns_of(
        &self,
        office: &str,
        month: Option<Month>,
    ) -> Result<Vec<ReturnItem>, StoreError> {
        let txn = self.read()?;
        let (Some(index), Some(items)) = (
            read_table(&txn, RETURNS_BY_OFFICE)?,
            read_table(&txn, super::notices::RETURNS)?,
        ) else {
            return Ok(Vec::new());
        };
        let (start, end) = range_of(office, month);
        let mut out = Vec::new();
        for entry in db_err!(index.range(start.as_str()..end.as_str()))? {
            let (k, _) = db_err!(entry)?;
            let (_, id) = split_key(k.value());
            if let Some(v) = db_err!(items.get(id))? {
                out.push(super::notices::unjson(id, v.value())?);
            }
        }
        Ok(out)
    }

    /// Every return item's status, over every office, from the index (for `/metrics`).
    pub fn return_status_counts(&self) -> Result<Vec<(ReturnStatus, u64)>, StoreError> {
        let txn = self.read()?;
        let mut counts: Vec<(ReturnStatus, u64)> =
            ReturnStatus::ALL.into_iter().map(|s| (s, 0)).collect();
        let Some(t) = read_table(&txn, RETURNS_BY_OFFICE)? else {
            return Ok(counts);
        };
        for entry in db_err!(t.iter())? {
            let (k, v) = db_err!(entry)?;
            let status = v.value();
            let status =
                ReturnStatus::from_name(status).ok_or_else(|| unreadable(k.value(), status))?;
            if let Some(c) = counts.iter_mut().find(|(s, _)| *s == status) {
                c.1 += 1;
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim::OfficeNumber;
    use crate::notice::ReturnRow;
    use jiff::Timestamp;
    use redb::{Database, ReadableDatabase, TableHandle as _};

    const A: &str = "1379999996";
    const B: &str = "1379999988";

    fn sub(office: &str, month: &str, state: State) -> Submission {
        let mut s = Submission::new(
            format!("{office}-{month}.CSV"),
            format!("{office}{month}{}", state.as_str()),
            3,
            Timestamp::now(),
        );
        s.office_number = Some(office.parse::<OfficeNumber>().unwrap());
        s.processing_month = Some(month.parse().unwrap());
        s.state = state;
        s
    }

    fn receipt() -> crate::submission::Receipt {
        crate::submission::Receipt {
            receipt_id: "R1".into(),
            arrived_at: "2026-12-03T10:00:00+09:00".into(),
            arrival_status: "arrived".into(),
            arrival_errors: Vec::new(),
            stored_at: Timestamp::now(),
        }
    }

    fn item(id: &str, office: &str, month: &str, status: ReturnStatus) -> ReturnItem {
        ReturnItem {
            id: id.into(),
            office_number: office.into(),
            processing_month: month.parse().unwrap(),
            notice_id: "N1".into(),
            row: ReturnRow {
                record_no: 3,
                insurer_number: "139998".into(),
                insurer_name: "千代田区".into(),
                insured_number: "0000000017".into(),
                name_kana: "ﾃｽﾄ".into(),
                form: "請".into(),
                service_month: None,
                service_type: "11".into(),
                units: Some(2000),
                reason_code: "B".into(),
                content: "内容".into(),
                held: false,
                service_item: String::new(),
            },
            status,
            linked_submission: None,
            linked_processing_month: None,
            returned_again_as: None,
            note: None,
            history: Vec::new(),
        }
    }

    fn states(store: &Store, office: &str, month: Option<&str>) -> Vec<(String, State, bool)> {
        store
            .office_submissions(office, month.map(|m| m.parse().unwrap()))
            .unwrap()
            .into_iter()
            .map(|s| {
                (
                    s.processing_month
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    s.state,
                    s.has_receipt,
                )
            })
            .collect()
    }

    #[test]
    fn the_indexes_follow_every_write_and_keep_offices_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let a1 = store
            .record_new(sub(A, "202611", State::Queued), b"a1".to_vec())
            .unwrap()
            .submission()
            .id
            .clone();
        store
            .record_new(sub(A, "202612", State::Held), b"a2".to_vec())
            .unwrap();
        store
            .record_new(sub(B, "202612", State::Refused), b"b1".to_vec())
            .unwrap();
        // A file whose control record had no office is in no office's index.
        let mut nowhere = sub(A, "202612", State::Refused);
        nowhere.office_number = None;
        store.record_new(nowhere, b"x".to_vec()).unwrap();
        assert_eq!(
            states(&store, A, None),
            vec![
                ("202611".into(), State::Queued, false),
                ("202612".into(), State::Held, false)
            ]
        );
        assert_eq!(
            states(&store, B, Some("202612")),
            vec![("202612".into(), State::Refused, false)]
        );
        assert!(states(&store, B, Some("202611")).is_empty());

        // A state change and a receipt replace the entry; a month change moves it.
        store
            .update(&a1, |s| {
                s.state = State::Arrived;
                s.receipt = Some(receipt());
            })
            .unwrap();
        assert_eq!(
            states(&store, A, Some("202611")),
            vec![("202611".into(), State::Arrived, true)]
        );
        store
            .update(&a1, |s| {
                s.processing_month = Some("202610".parse().unwrap())
            })
            .unwrap();
        assert!(states(&store, A, Some("202611")).is_empty());
        assert_eq!(
            store
                .submissions_of(A, Some("202610".parse().unwrap()))
                .unwrap()[0]
                .id,
            a1
        );
        assert_eq!(store.submissions_of(A, None).unwrap().len(), 2);

        store
            .put_return(item("N1-000003", A, "202611", ReturnStatus::Open))
            .unwrap();
        store
            .put_return(item("N2-000003", B, "202612", ReturnStatus::Open))
            .unwrap();
        store
            .put_return(item("N1-000003", A, "202611", ReturnStatus::Closed))
            .unwrap();
        let a_returns = store.office_returns(A, None).unwrap();
        assert_eq!(a_returns.len(), 1);
        assert_eq!(a_returns[0].status, ReturnStatus::Closed);
        assert_eq!(a_returns[0].processing_month.to_string(), "202611");
        assert_eq!(store.returns_of(B, None).unwrap()[0].id, "N2-000003");
        assert!(
            store
                .returns_of(B, Some("202611".parse().unwrap()))
                .unwrap()
                .is_empty()
        );
        let counts = store.return_status_counts().unwrap();
        assert!(counts.contains(&(ReturnStatus::Open, 1)));
        assert!(counts.contains(&(ReturnStatus::Closed, 1)));
    }

    #[test]
    fn a_version_5_file_has_its_indexes_built_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let (before_subs, before_returns) = {
            let store = Store::open(&path).unwrap();
            let mut done = sub(A, "202612", State::Accepted);
            done.receipt = Some(receipt());
            store.record_new(done, b"a".to_vec()).unwrap();
            store
                .record_new(sub(B, "202611", State::Queued), b"b".to_vec())
                .unwrap();
            store
                .put_return(item("N1-000003", A, "202611", ReturnStatus::Open))
                .unwrap();
            (
                (states(&store, A, None), states(&store, B, None)),
                store.office_returns(A, None).unwrap(),
            )
        };
        {
            // What a version-5 kaigo-relay left: the records without the indexes.
            let db = Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(SUBMISSIONS_BY_OFFICE).unwrap();
            txn.delete_table(RETURNS_BY_OFFICE).unwrap();
            {
                let mut meta = txn.open_table(super::super::META).unwrap();
                meta.insert("schema_version", 5u64.to_le_bytes().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
            let txn = db.begin_read().unwrap();
            let names: Vec<String> = txn
                .list_tables()
                .unwrap()
                .map(|t| t.name().to_owned())
                .collect();
            assert!(!names.contains(&SUBMISSIONS_BY_OFFICE.name().to_owned()));
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            (states(&store, A, None), states(&store, B, None)),
            before_subs
        );
        assert_eq!(store.office_returns(A, None).unwrap(), before_returns);
        assert_eq!(
            before_subs.0,
            vec![("202612".into(), State::Accepted, true)]
        );
    }
}
