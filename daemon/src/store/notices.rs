//! The store's notice tables: mirrored notices (metadata by notice ID, bodies content-addressed
//! by SHA-256), the index by office and month, the mirror's cursor per federation user ID, the
//! return items and assessments derived from the notices, and the cache of which statements
//! each submission holds.
//!
//! Invariants: a notice and its body are written once and never altered or deleted; the
//! cursor that covers a page of notices is committed in the same transaction as those notices
//! (and their derived return items), so a crash can neither skip a notice nor store one twice.

use jiff::Timestamp;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, read_table};
use crate::claim::{Month, StatementRef};
use crate::returns::{Assessment, Derived, ReturnBook, ReturnItem};
use crate::submission::SubmissionId;

macro_rules! db_err {
    ($e:expr) => {
        $e.map_err(|e| StoreError::Db(e.into()))
    };
}

pub(super) const NOTICES: TableDefinition<&str, &[u8]> = TableDefinition::new("notices");
pub(super) const NOTICE_BODIES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("notice_bodies");
/// `<office>/<YYYYMM>/<notice id>` → (): one office's notices of one month, by range.
pub(super) const NOTICES_BY_OFFICE: TableDefinition<&str, ()> =
    TableDefinition::new("notices_by_office_month");
pub(super) const MIRROR_CURSORS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("mirror_cursors");
pub(super) const RETURNS: TableDefinition<&str, &[u8]> = TableDefinition::new("return_items");
/// `<office>/<item id>` → (): the items still in work (open or resubmitted), so that linking
/// and resolving read those, not the whole history.
pub(super) const RETURNS_PENDING: TableDefinition<&str, ()> =
    TableDefinition::new("return_items_pending");
pub(super) const ASSESSMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("assessments");
/// `<account id>/<notice id>` → when (Unix seconds) the account first opened or downloaded
/// the notice: the admin UI's unread marks.
pub(super) const NOTICE_READS: TableDefinition<&str, i64> = TableDefinition::new("notice_reads");
pub(super) const STATEMENTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("submission_statements");

/// One page of an office's notices ([`Store::notice_page`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoticePage {
    /// The page's notices, newest first.
    pub rows: Vec<NoticeRecord>,
    /// For each row: the reader has not opened it.
    pub unread: Vec<bool>,
    /// Notices matching, over every page.
    pub total: usize,
}

/// One mirrored notice, as the gateway listed it, plus when it was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeRecord {
    /// The gateway's notice ID.
    pub notice_id: String,
    /// The federation user ID it was listed for.
    pub user_id: String,
    /// 事業所番号.
    pub office_number: String,
    /// 交換情報識別番号 (`7411`…) or the gateway's ID for other media.
    pub kind_id: String,
    /// Title as the gateway gave it.
    pub title: String,
    /// `YYYYMM` as the gateway gave it.
    pub processing_month: String,
    /// As the gateway gave it (RFC 3339).
    pub issued_at: String,
    /// `text/csv; charset=Shift_JIS`, `application/pdf`, `text/plain; charset=Shift_JIS`.
    pub media_type: String,
    /// Bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the bytes (verified).
    pub sha256: String,
    /// When the appliance stored it.
    pub received_at: Timestamp,
}

impl NoticeRecord {
    /// The processing month, when it is a month.
    pub fn processing_month(&self) -> Option<Month> {
        self.processing_month.parse().ok()
    }

    fn index_key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.office_number, self.processing_month, self.notice_id
        )
    }
}

/// The mirror's position in one user ID's notice list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorCursor {
    /// The gateway's opaque cursor after the last stored page.
    pub cursor: Option<String>,
    /// When a pass last completed.
    pub last_pass_at: Option<Timestamp>,
    /// When a notice was last stored.
    pub last_new_at: Option<Timestamp>,
}

/// One notice of a page, with its verified bytes.
#[derive(Debug, Clone)]
pub struct IncomingNotice {
    /// Its record.
    pub record: NoticeRecord,
    /// Its bytes.
    pub body: Vec<u8>,
    /// Its rows, for CSV notices that could be read.
    pub parsed: Option<crate::notice::Parsed>,
}

/// What storing a page did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PageStored {
    /// Notices stored now.
    pub new: Vec<NoticeRecord>,
    /// Notices the store already had (same ID and bytes).
    pub known: usize,
    /// Notices listed again under a known ID with other bytes: the stored one is kept.
    pub conflicts: Vec<(String, String)>,
}

/// The keys starting with `prefix`, as a half-open range: everything from the prefix up to the
/// prefix with its last byte raised by one (prefixes here end in `/`).
pub(super) fn prefix_range(prefix: &str) -> (String, String) {
    let mut end = prefix.to_owned();
    if let Some(last) = end.pop() {
        end.push(char::from_u32(u32::from(last) + 1).unwrap_or(char::MAX));
    }
    (prefix.to_owned(), end)
}

fn json<T: Serialize>(id: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|source| StoreError::Record {
        id: id.to_owned(),
        source,
    })
}

pub(super) fn unjson<T: for<'de> Deserialize<'de>>(
    id: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Record {
        id: id.to_owned(),
        source,
    })
}

/// The return tables inside one write transaction.
struct TxnBook<'t> {
    txn: &'t WriteTransaction,
}

impl ReturnBook for TxnBook<'_> {
    fn pending_of_office(&mut self, office: &str) -> Result<Vec<ReturnItem>, StoreError> {
        let t = db_err!(self.txn.open_table(RETURNS))?;
        let pending = db_err!(self.txn.open_table(RETURNS_PENDING))?;
        let (start, end) = prefix_range(&format!("{office}/"));
        let mut out = Vec::new();
        for entry in db_err!(pending.range(start.as_str()..end.as_str()))? {
            let (k, _) = db_err!(entry)?;
            let id = k.value().rsplit('/').next().unwrap_or_default().to_owned();
            if let Some(v) = db_err!(t.get(id.as_str()))? {
                out.push(unjson(&id, v.value())?);
            }
        }
        Ok(out)
    }

    fn has_item(&mut self, id: &str) -> Result<bool, StoreError> {
        let t = db_err!(self.txn.open_table(RETURNS))?;
        Ok(db_err!(t.get(id))?.is_some())
    }

    fn put_item(&mut self, item: &ReturnItem) -> Result<(), StoreError> {
        let bytes = json(&item.id, item)?;
        let mut t = db_err!(self.txn.open_table(RETURNS))?;
        db_err!(t.insert(item.id.as_str(), bytes.as_slice()))?;
        let mut pending = db_err!(self.txn.open_table(RETURNS_PENDING))?;
        super::by_office::index_return(self.txn, item)?;
        let key = format!("{}/{}", item.office_number, item.id);
        if item.status.is_final() {
            db_err!(pending.remove(key.as_str()))?;
        } else {
            db_err!(pending.insert(key.as_str(), ()))?;
        }
        Ok(())
    }

    fn put_assessment(&mut self, a: &Assessment) -> Result<(), StoreError> {
        let bytes = json(&a.id, a)?;
        let mut t = db_err!(self.txn.open_table(ASSESSMENTS))?;
        if db_err!(t.get(a.id.as_str()))?.is_none() {
            db_err!(t.insert(a.id.as_str(), bytes.as_slice()))?;
        }
        Ok(())
    }
}

fn store_page_in(
    txn: &WriteTransaction,
    user_id: &str,
    page: Vec<IncomingNotice>,
    cursor: MirrorCursor,
    now: Timestamp,
) -> Result<PageStored, StoreError> {
    // Everything that can fail without a database error first.
    let cursor_bytes = json(user_id, &cursor)?;
    let mut encoded = Vec::with_capacity(page.len());
    for n in &page {
        encoded.push(json(&n.record.notice_id, &n.record)?);
    }
    let mut out = PageStored::default();
    let mut derived = Vec::new();
    {
        let mut notices = db_err!(txn.open_table(NOTICES))?;
        let mut bodies = db_err!(txn.open_table(NOTICE_BODIES))?;
        let mut index = db_err!(txn.open_table(NOTICES_BY_OFFICE))?;
        for (n, bytes) in page.into_iter().zip(encoded) {
            let id = n.record.notice_id.as_str();
            let existing = db_err!(notices.get(id))?.map(|v| v.value().to_vec());
            if let Some(existing) = existing {
                let old: NoticeRecord = unjson(id, &existing)?;
                if old.sha256 == n.record.sha256 {
                    out.known += 1;
                } else {
                    out.conflicts
                        .push((n.record.notice_id.clone(), n.record.sha256.clone()));
                }
                continue;
            }
            if db_err!(bodies.get(n.record.sha256.as_str()))?.is_none() {
                db_err!(bodies.insert(n.record.sha256.as_str(), n.body.as_slice()))?;
            }
            db_err!(notices.insert(id, bytes.as_slice()))?;
            db_err!(index.insert(n.record.index_key().as_str(), ()))?;
            out.new.push(n.record.clone());
            derived.push(Derived {
                record: n.record,
                parsed: n.parsed,
            });
        }
    }
    crate::returns::apply(&mut TxnBook { txn }, &derived, now)?;
    crate::alerts::events::on_notices(txn, &derived)?;
    let mut cursors = db_err!(txn.open_table(MIRROR_CURSORS))?;
    db_err!(cursors.insert(user_id, cursor_bytes.as_slice()))?;
    Ok(out)
}

impl Store {
    /// Stores one page of notices listed for `user_id` (each notice once; a known ID is left
    /// as it is), the return items and assessments derived from them, and the cursor after the
    /// page, in one transaction.
    pub async fn store_notice_page(
        &self,
        user_id: &str,
        page: Vec<IncomingNotice>,
        cursor: MirrorCursor,
    ) -> Result<PageStored, StoreError> {
        let user_id = user_id.to_owned();
        self.write_async(move |txn| store_page_in(txn, &user_id, page, cursor, Timestamp::now()))
            .await
    }

    /// Blocking form of [`Store::store_notice_page`] (benchmarks, tools).
    pub fn store_notice_page_blocking(
        &self,
        user_id: &str,
        page: Vec<IncomingNotice>,
        cursor: MirrorCursor,
    ) -> Result<PageStored, StoreError> {
        let user_id = user_id.to_owned();
        self.write(move |txn| store_page_in(txn, &user_id, page, cursor, Timestamp::now()))
    }

    /// Saves the cursor alone (a pass that found nothing new).
    pub async fn put_mirror_cursor(
        &self,
        user_id: &str,
        cursor: MirrorCursor,
    ) -> Result<(), StoreError> {
        let user_id = user_id.to_owned();
        let bytes = json(&user_id, &cursor)?;
        self.write_async(move |txn| {
            let mut t = db_err!(txn.open_table(MIRROR_CURSORS))?;
            db_err!(t.insert(user_id.as_str(), bytes.as_slice()))?;
            Ok(())
        })
        .await
    }

    /// The mirror's cursor for a user ID.
    pub fn mirror_cursor(&self, user_id: &str) -> Result<Option<MirrorCursor>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, MIRROR_CURSORS)? else {
            return Ok(None);
        };
        db_err!(t.get(user_id))?
            .map(|v| unjson(user_id, v.value()))
            .transpose()
    }

    /// How many notices the store holds (read from the table's header, not counted).
    pub fn notice_count(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata as _;
        let txn = self.read()?;
        match read_table(&txn, NOTICES)? {
            Some(t) => Ok(db_err!(t.len())?),
            None => Ok(0),
        }
    }

    /// One notice's record.
    pub fn notice(&self, notice_id: &str) -> Result<Option<NoticeRecord>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, NOTICES)? else {
            return Ok(None);
        };
        db_err!(t.get(notice_id))?
            .map(|v| unjson(notice_id, v.value()))
            .transpose()
    }

    /// A notice's bytes, by SHA-256.
    pub fn notice_body(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, NOTICE_BODIES)? else {
            return Ok(None);
        };
        Ok(db_err!(t.get(sha256))?.map(|v| v.value().to_vec()))
    }

    /// One office's notices, of one month or of every month, in notice-ID order.
    pub fn notices_of(
        &self,
        office: &str,
        month: Option<Month>,
    ) -> Result<Vec<NoticeRecord>, StoreError> {
        let txn = self.read()?;
        let (Some(index), Some(notices)) = (
            read_table(&txn, NOTICES_BY_OFFICE)?,
            read_table(&txn, NOTICES)?,
        ) else {
            return Ok(Vec::new());
        };
        let (start, end) = prefix_range(&match month {
            Some(m) => format!("{office}/{m}/"),
            None => format!("{office}/"),
        });
        let mut out = Vec::new();
        for entry in db_err!(index.range(start.as_str()..end.as_str()))? {
            let (k, _) = db_err!(entry)?;
            let key = k.value();
            let id = key.rsplit('/').next().unwrap_or_default();
            if let Some(v) = db_err!(notices.get(id))? {
                out.push(unjson(id, v.value())?);
            }
        }
        Ok(out)
    }

    /// One page of an office's notices (of one month, or of every month), newest month first
    /// and, within a month, last listed first: those `keep` accepts (and, with `unread_for`,
    /// that this account has not opened), `skip` of them passed over, at most `take`. Also
    /// gives how many match in all, and whether each row of the page is unread for
    /// `reader`. Without a filter only the page's records are decoded.
    #[allow(clippy::too_many_arguments)]
    pub fn notice_page(
        &self,
        office: &str,
        month: Option<Month>,
        keep: Option<&dyn Fn(&NoticeRecord) -> bool>,
        unread_for: Option<&str>,
        reader: &str,
        skip: usize,
        take: usize,
    ) -> Result<NoticePage, StoreError> {
        let txn = self.read()?;
        let (Some(index), Some(notices)) = (
            read_table(&txn, NOTICES_BY_OFFICE)?,
            read_table(&txn, NOTICES)?,
        ) else {
            return Ok(NoticePage::default());
        };
        let reads = read_table(&txn, NOTICE_READS)?;
        let is_read_by = |account: &str, id: &str| -> Result<bool, StoreError> {
            match &reads {
                Some(t) => Ok(db_err!(t.get(format!("{account}/{id}").as_str()))?.is_some()),
                None => Ok(false),
            }
        };
        let (start, end) = prefix_range(&match month {
            Some(m) => format!("{office}/{m}/"),
            None => format!("{office}/"),
        });
        let mut page = NoticePage::default();
        for entry in db_err!(index.range(start.as_str()..end.as_str()))?.rev() {
            let (k, _) = db_err!(entry)?;
            let key = k.value();
            let id = key.rsplit('/').next().unwrap_or_default();
            let filtered = keep.is_some() || unread_for.is_some();
            let in_page = page.total >= skip && page.rows.len() < take;
            if !filtered && !in_page {
                page.total += 1;
                continue;
            }
            let Some(v) = db_err!(notices.get(id))? else {
                continue;
            };
            let record: NoticeRecord = unjson(id, v.value())?;
            if keep.is_some_and(|f| !f(&record)) {
                continue;
            }
            if let Some(account) = unread_for
                && is_read_by(account, id)?
            {
                continue;
            }
            if page.total >= skip && page.rows.len() < take {
                page.unread.push(!is_read_by(reader, id)?);
                page.rows.push(record);
            }
            page.total += 1;
        }
        Ok(page)
    }

    /// How many of an office's notices of `month` `reader` has not opened: index keys and
    /// read marks only, no record decoded.
    pub fn unread_count(
        &self,
        office: &str,
        month: Month,
        reader: &str,
    ) -> Result<usize, StoreError> {
        let txn = self.read()?;
        let Some(index) = read_table(&txn, NOTICES_BY_OFFICE)? else {
            return Ok(0);
        };
        let reads = read_table(&txn, NOTICE_READS)?;
        let (start, end) = prefix_range(&format!("{office}/{month}/"));
        let mut n = 0;
        for entry in db_err!(index.range(start.as_str()..end.as_str()))? {
            let (k, _) = db_err!(entry)?;
            let id = k.value().rsplit('/').next().unwrap_or_default();
            let read = match &reads {
                Some(t) => db_err!(t.get(format!("{reader}/{id}").as_str()))?.is_some(),
                None => false,
            };
            if !read {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The months an office has notices for, newest first: one index seek per month.
    pub fn notice_months(&self, office: &str) -> Result<Vec<Month>, StoreError> {
        let txn = self.read()?;
        let Some(index) = read_table(&txn, NOTICES_BY_OFFICE)? else {
            return Ok(Vec::new());
        };
        let (start, mut upper) = prefix_range(&format!("{office}/"));
        let mut out = Vec::new();
        loop {
            let last = db_err!(index.range(start.as_str()..upper.as_str()))?
                .next_back()
                .transpose();
            let Some((k, _)) = db_err!(last)? else {
                break;
            };
            let month_text = k.value().split('/').nth(1).unwrap_or_default().to_owned();
            match month_text.parse::<Month>() {
                Ok(m) => out.push(m),
                Err(_) => {
                    return Err(StoreError::Index(format!("{} has no month", k.value())));
                }
            }
            // Every key of that month sorts after "<office>/<month>/".
            upper = format!("{office}/{month_text}/");
        }
        Ok(out)
    }

    /// Records that `account` has opened or downloaded `notice_id` (the first time counts).
    pub fn mark_notice_read(
        &self,
        account: &str,
        notice_id: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let key = format!("{account}/{notice_id}");
        let already = {
            let txn = self.read()?;
            match read_table(&txn, NOTICE_READS)? {
                Some(t) => db_err!(t.get(key.as_str()))?.is_some(),
                None => false,
            }
        };
        if already {
            return Ok(());
        }
        self.write(move |txn| {
            let mut t = db_err!(txn.open_table(NOTICE_READS))?;
            if db_err!(t.get(key.as_str()))?.is_none() {
                db_err!(t.insert(key.as_str(), at.as_second()))?;
            }
            Ok(())
        })
    }

    /// Calls `f` with every notice, in notice-ID order, from one read transaction.
    pub fn each_notice<E: From<StoreError>>(
        &self,
        mut f: impl FnMut(NoticeRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, NOTICES)? else {
            return Ok(());
        };
        for entry in db_err!(t.iter())? {
            let (k, v) = db_err!(entry)?;
            f(unjson(k.value(), v.value())?)?;
        }
        Ok(())
    }

    /// The items still in work (open or resubmitted), by office.
    pub fn pending_returns(&self) -> Result<Vec<ReturnItem>, StoreError> {
        let txn = self.read()?;
        let (Some(t), Some(pending)) = (
            read_table(&txn, RETURNS)?,
            read_table(&txn, RETURNS_PENDING)?,
        ) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(pending.iter())? {
            let (k, _) = db_err!(entry)?;
            let id = k.value().rsplit('/').next().unwrap_or_default().to_owned();
            if let Some(v) = db_err!(t.get(id.as_str()))? {
                out.push(unjson(&id, v.value())?);
            }
        }
        Ok(out)
    }

    /// Every return item, by ID.
    pub fn returns(&self) -> Result<Vec<ReturnItem>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, RETURNS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(t.iter())? {
            let (k, v) = db_err!(entry)?;
            out.push(unjson(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// One return item.
    pub fn return_item(&self, id: &str) -> Result<Option<ReturnItem>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, RETURNS)? else {
            return Ok(None);
        };
        db_err!(t.get(id))?
            .map(|v| unjson(id, v.value()))
            .transpose()
    }

    /// Replaces a return item (status changes; items are never deleted).
    pub fn put_return(&self, item: ReturnItem) -> Result<(), StoreError> {
        self.write(move |txn| TxnBook { txn }.put_item(&item))
    }

    /// Every assessment (7311 査定 row), by ID.
    pub fn assessments(&self) -> Result<Vec<Assessment>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, ASSESSMENTS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(t.iter())? {
            let (k, v) = db_err!(entry)?;
            out.push(unjson(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// The statements a submission holds, if already read.
    pub fn statements_of(
        &self,
        id: &SubmissionId,
    ) -> Result<Option<Vec<StatementRef>>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, STATEMENTS)? else {
            return Ok(None);
        };
        db_err!(t.get(id.as_str()))?
            .map(|v| unjson(id.as_str(), v.value()))
            .transpose()
    }

    /// Caches the statements a submission holds (derived from its bytes, which never change).
    pub fn put_statements_of(
        &self,
        id: &SubmissionId,
        list: &[StatementRef],
    ) -> Result<(), StoreError> {
        let bytes = json(id.as_str(), &list)?;
        let id = id.clone();
        self.write(move |txn| {
            let mut t = db_err!(txn.open_table(STATEMENTS))?;
            db_err!(t.insert(id.as_str(), bytes.as_slice()))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod page_tests {
    use crate::bench_support::{NoticeFill, PER_OFFICE_MONTH, office_number};
    use crate::claim::Month;
    use crate::store::{NoticeRecord, Store};
    use jiff::Timestamp;

    #[test]
    fn pages_go_newest_first_with_filters_unread_marks_and_months() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let first: Month = "202609".parse().unwrap();
        // Two offices, three months each.
        let total = 2 * 3 * PER_OFFICE_MONTH;
        NoticeFill::synthetic(total, 2, first)
            .fill(&store, |_, _| {})
            .unwrap();
        let office = office_number(0);
        let per_office = (3 * PER_OFFICE_MONTH) as usize;

        let all = store
            .notice_page(&office, None, None, None, "staff01", 0, 10)
            .unwrap();
        assert_eq!(all.total, per_office);
        assert_eq!(all.rows.len(), 10);
        assert!(all.unread.iter().all(|u| *u));
        assert!(all.rows.iter().all(|n| n.office_number == office));
        assert_eq!(all.rows[0].processing_month, "202611", "newest month first");
        let ids: Vec<&str> = all.rows.iter().map(|n| n.notice_id.as_str()).collect();
        let mut sorted = ids.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(ids, sorted, "last listed first within the month");

        // The pages cover every notice once.
        let mut seen = std::collections::BTreeSet::new();
        for p in 0..(per_office.div_ceil(10)) {
            let page = store
                .notice_page(&office, None, None, None, "staff01", p * 10, 10)
                .unwrap();
            for n in page.rows {
                assert!(seen.insert(n.notice_id));
            }
        }
        assert_eq!(seen.len(), per_office);

        // A month, a kind.
        let m = store
            .notice_page(&office, Some(first), None, None, "staff01", 0, 1000)
            .unwrap();
        assert_eq!(m.total, PER_OFFICE_MONTH as usize);
        assert!(m.rows.iter().all(|n| n.processing_month == "202609"));
        let only_7411 = |n: &NoticeRecord| n.kind_id == "7411";
        let k = store
            .notice_page(&office, None, Some(&only_7411), None, "staff01", 0, 5)
            .unwrap();
        assert_eq!(k.total, 3 * 6, "six 7411 a month");
        assert_eq!(k.rows.len(), 5);
        assert!(k.rows.iter().all(|n| n.kind_id == "7411"));

        // Read marks are the account's own.
        let opened = all.rows[0].notice_id.clone();
        store
            .mark_notice_read("staff01", &opened, Timestamp::now())
            .unwrap();
        store
            .mark_notice_read("staff01", &opened, Timestamp::now())
            .unwrap();
        let again = store
            .notice_page(&office, None, None, None, "staff01", 0, 2)
            .unwrap();
        assert_eq!(again.unread, vec![false, true]);
        let other = store
            .notice_page(&office, None, None, None, "staff02", 0, 1)
            .unwrap();
        assert_eq!(other.unread, vec![true]);
        let unread = store
            .notice_page(&office, None, None, Some("staff01"), "staff01", 0, 1000)
            .unwrap();
        assert_eq!(unread.total, per_office - 1);
        assert!(unread.rows.iter().all(|n| n.notice_id != opened));

        assert_eq!(
            store
                .unread_count(&office, "202611".parse().unwrap(), "staff01")
                .unwrap(),
            PER_OFFICE_MONTH as usize - 1,
            "the opened one is in the newest month"
        );
        assert_eq!(
            store
                .unread_count(&office, "202611".parse().unwrap(), "staff02")
                .unwrap(),
            PER_OFFICE_MONTH as usize
        );
        let months: Vec<String> = store
            .notice_months(&office)
            .unwrap()
            .iter()
            .map(|m| m.to_string())
            .collect();
        assert_eq!(months, vec!["202611", "202610", "202609"]);
        assert!(store.notice_months("1379999996").unwrap().is_empty());
    }
}
