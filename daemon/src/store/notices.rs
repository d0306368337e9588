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
pub(super) const STATEMENTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("submission_statements");

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
fn prefix_range(prefix: &str) -> (String, String) {
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

fn unjson<T: for<'de> Deserialize<'de>>(id: &str, bytes: &[u8]) -> Result<T, StoreError> {
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
