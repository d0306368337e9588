//! The store: the only module that imports redb. It holds every submission record, the bytes of
//! every file taken (content-addressed by SHA-256), the indexes the pipeline works from, and
//! (in `notices`) the mirrored notices and the return items derived from them.
//!
//! Invariants kept here:
//! - **The truth is in redb.** Each operation is one write transaction committed with redb's
//!   default `Durability::Immediate` (fsync) before it returns; callers move files and answer
//!   only after that.
//! - **Exactly once.** A file's bytes are recognised by SHA-256 inside the same transaction that
//!   records it, so two drops of one file can never both be queued for sending.
//! - Bytes are never deleted or altered; a record is only ever updated through `update`, which
//!   keeps the indexes (the agenda of active submissions, pending moves) consistent with the
//!   record's state.
//! - **Group commit.** Every write goes through one committer thread, which runs the writes
//!   waiting at that moment in one transaction and one fsync, then answers each caller. A caller
//!   is answered only after the commit that holds its write, so durability per call is unchanged;
//!   under load (a month-start burst) many calls share one fsync. A write that fails before
//!   touching a table fails alone; a database error aborts the whole group, and every caller in it
//!   gets the error and retries.
//! - **Deferred durability, only where the gateway holds the truth.** A few relay writes (a
//!   receipt after `sending`, a 受付 result after `arrived`) may be committed without their own
//!   fsync ([`Store::write_async_deferred`]): they are visible at once and made durable by the
//!   next durable commit, which the committer runs within `DEFERRED_FLUSH` at the latest (and
//!   when the store closes). A power cut in that window loses only what the gateway can tell
//!   again: the submission is back in `sending` (reconciled by key) or `arrived` (polled).
//!   Everything else — every intake record, every `sending` mark, every account and notice
//!   write — is durable before its caller hears of it.
//! - `SCHEMA` lists every table, so backups can refuse a file holding a table they do not know.
//!
//! The daemon opens the file as the single writer; `status` and other commands open it
//! read-only at the same time (redb `ConcurrencyMode::ExclusiveWriter`) and see every commit.

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use jiff::Timestamp;
use redb::{
    ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition, TableHandle as _, WriteTransaction,
};
use serde::{Deserialize, Serialize};

mod accounts;
mod by_office;
mod notices;
mod outbox;
mod snapshot;

pub(crate) use outbox::enqueue_event_in;

pub use accounts::{AuditEntry, NewAudit, Put};
pub use by_office::{OfficeReturn, OfficeSubmission};
pub use notices::{IncomingNotice, MirrorCursor, NoticePage, NoticeRecord, PageStored};
#[cfg(test)]
pub(crate) use snapshot::make_previous_schema;
pub use snapshot::{SnapshotDigest, SnapshotError, TableDigest, verify_file as verify_snapshot};

use crate::claim::{Finding, Month, Severity};
use crate::submission::{State, Submission, SubmissionId};

macro_rules! db_err {
    ($e:expr) => {
        $e.map_err(|e| StoreError::Db(e.into()))
    };
}

/// Schema version written into `meta`; a newer file is refused rather than misread.
/// 2: the `agenda` index (state, next action, month per active submission) replaced the bare
/// `active_submissions` set; a version-1 file is migrated when it is opened for writing.
/// 3: the notice tables (notices, bodies, index, cursors, return items, assessments, statement
/// cache), created empty when an older file is opened for writing.
/// 4: accounts, corporations, the audit log and sessions, likewise.
/// 5: the offices registered on the appliance, likewise.
/// 6: the indexes of submissions and return items by office and month, built from the records
/// when an older file is opened for writing, and the accounts' notice read marks (empty).
/// 7: the backup log (runs, restore drills, key confirmations), created empty.
pub const SCHEMA_VERSION: u64 = 8;

/// Most writes run in one group transaction.
const MAX_GROUP: usize = 512;
/// The longest a deferred-durability write stays without an fsync.
const DEFERRED_FLUSH: std::time::Duration = std::time::Duration::from_millis(200);
/// redb's page cache (its default is 1 GiB): 8 MiB holds the agenda and the records in work
/// (a 10 000-file burst ran no slower than with 32 MiB),
/// and the daemon's memory stays bounded as the store grows over the years.
const CACHE_BYTES: usize = 8 * 1024 * 1024;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SUBMISSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("submissions");
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
const BY_SHA256: TableDefinition<&str, &str> = TableDefinition::new("submissions_by_sha256");
const AGENDA: TableDefinition<&str, &[u8]> = TableDefinition::new("agenda");
const PENDING_MOVES: TableDefinition<&str, &str> = TableDefinition::new("pending_moves");
/// Conditions that need a person, by de-duplication key (the `alerts` module owns the values).
const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");
/// The backup log by key (`run/<seq>`, `drill/<time>`, `key/<id>`; the `backup` module owns
/// the values).
const BACKUP_LOG: TableDefinition<&str, &[u8]> = TableDefinition::new("backup_log");
/// Schema 1's set of active ids, replaced by `agenda`; read once by the migration, then deleted.
const ACTIVE_V1: TableDefinition<&str, ()> = TableDefinition::new("active_submissions");

/// Every table of the store: the schema registry.
pub const SCHEMA: &[&str] = &[
    "meta",
    "submissions",
    "blobs",
    "submissions_by_sha256",
    "agenda",
    "pending_moves",
    "alerts",
    "notices",
    "notice_bodies",
    "notices_by_office_month",
    "mirror_cursors",
    "return_items",
    "return_items_pending",
    "submissions_by_office_month",
    "return_items_by_office_month",
    "notice_reads",
    "assessments",
    "submission_statements",
    "accounts",
    "corporations",
    "audit_log",
    "sessions",
    "offices",
    "backup_log",
    "alert_outbox",
    "alert_deliveries",
    "alert_deliveries_pending",
    "alert_events",
];

/// What the relay needs to plan its work, kept for every active (non-final) submission in
/// the `agenda` index, so that a planning pass reads a few bytes per submission instead of
/// whole records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgendaEntry {
    /// The submission.
    pub id: SubmissionId,
    /// Its state.
    pub state: State,
    /// When the relay should act on it next (none: now, or when the window opens).
    pub next_action_at: Option<Timestamp>,
    /// The processing month in its control record.
    pub processing_month: Option<Month>,
}

#[derive(Serialize, Deserialize)]
struct AgendaValue {
    #[serde(rename = "s")]
    state: State,
    #[serde(rename = "n", default)]
    next_action_at: Option<Timestamp>,
    #[serde(rename = "m", default)]
    processing_month: Option<Month>,
}

fn agenda_value(sub: &Submission) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&AgendaValue {
        state: sub.state,
        next_action_at: sub.next_action_at,
        processing_month: sub.processing_month,
    })
    .map_err(|source| StoreError::Record {
        id: sub.id.to_string(),
        source,
    })
}

/// Keeps the agenda in step with one record: present with its planning fields while the
/// submission is active, absent once it is final.
fn index_agenda(txn: &WriteTransaction, sub: &Submission) -> Result<(), StoreError> {
    let mut agenda = db_err!(txn.open_table(AGENDA))?;
    if sub.state.is_final() {
        db_err!(agenda.remove(sub.id.as_str()))?;
    } else {
        db_err!(agenda.insert(sub.id.as_str(), agenda_value(sub)?.as_slice()))?;
    }
    Ok(())
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb refused an operation (I/O error, corruption, lock).
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    /// Another kaigo-relay process has the store open for writing.
    #[error("the store is already open by another kaigo-relay process")]
    AlreadyOpen,
    /// A record could not be (de)serialised.
    #[error("record {id} is unreadable: {source}")]
    Record {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    /// The file was written by a newer version of kaigo-relay.
    #[error(
        "the store has schema version {found}; this kaigo-relay understands up to {SCHEMA_VERSION}"
    )]
    Version { found: u64 },
    /// A write on a read-only handle.
    #[error("the store was opened read-only")]
    ReadOnly,
    /// `update` on an id that does not exist.
    #[error("no submission {0}")]
    NotFound(String),
    /// An account (or other record that must be new) with this ID exists already.
    #[error("{0} は既に登録されています (already exists)")]
    Exists(String),
    /// The group transaction holding this write failed to commit (or the committer stopped);
    /// nothing of it was stored.
    #[error("the write was not committed: {0}")]
    NotCommitted(String),
    /// An index entry that does not parse (the index and its records disagree).
    #[error("index entry {0}")]
    Index(String),
}

enum Handle {
    Writer(Writer),
    Reader(ReadOnlyDatabase),
}

/// A write waiting for the committer: it runs inside the group transaction and returns what
/// to tell its caller once the commit's fate is known, and whether it failed in a way that
/// spoils the whole group (a database error after it may have written).
type WriteFn = Box<dyn FnOnce(&WriteTransaction) -> (Reply, Option<String>) + Send>;

/// A queued write and whether its caller must wait for an fsync.
struct WriteOp {
    run: WriteFn,
    durable: bool,
}
/// Tells one caller how its write ended: `None` committed, `Some(reason)` not committed.
type Reply = Box<dyn FnOnce(Option<&str>) + Send>;

/// The database opened for writing, and the committer thread that owns all writes.
struct Writer {
    db: Arc<LiveDb>,
    ops: Option<mpsc::Sender<WriteOp>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the committer after the writes already queued; joining it
        // means the file is closed when the last handle is gone (a reopen then succeeds).
        self.ops.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The open database, which the committer may close and reopen: redb refuses every operation
/// after an I/O error (a full disk) until the file is reopened.
struct LiveDb {
    path: std::path::PathBuf,
    db: std::sync::RwLock<Option<Arc<Database>>>,
}

impl LiveDb {
    fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.db.read().ok().and_then(|g| g.clone()).ok_or_else(|| {
            StoreError::NotCommitted("the store is being reopened after a disk error".into())
        })
    }

    /// Closes the database (once no one else holds it) and opens it again.
    fn reopen(&self) -> Result<(), String> {
        let old = self
            .db
            .write()
            .map_err(|_| "lock poisoned".to_owned())?
            .take();
        if let Some(mut old) = old {
            // Readers hold the handle only while they begin a transaction.
            let closed = loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => break db,
                    Err(still) => {
                        old = still;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            };
            drop(closed);
        }
        let db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::ExclusiveWriter)
            .set_cache_size(CACHE_BYTES)
            .create(&self.path)
            .map_err(|e| e.to_string())?;
        *self.db.write().map_err(|_| "lock poisoned".to_owned())? = Some(Arc::new(db));
        Ok(())
    }
}

/// The committer: takes every write waiting, runs them in one transaction, commits once, and
/// answers each caller after the commit. The commit is durable (fsync) when any write in the
/// group asks for it, or when a deferred write has waited `DEFERRED_FLUSH`; a deferred write
/// alone never waits longer than that for its fsync. After a failed transaction (a disk
/// error) it reopens the database before the next one; callers of the failed one were told,
/// and retry.
fn committer(live: Arc<LiveDb>, ops: mpsc::Receiver<WriteOp>) {
    let mut broken = false;
    let mut pause = std::time::Duration::from_millis(100);
    // Since when committed writes have waited for an fsync.
    let mut undurable_since: Option<std::time::Instant> = None;
    loop {
        // After a failure the file is reopened at once (readers need it too), retrying with a
        // growing pause while the disk still refuses.
        if broken {
            match live.reopen() {
                Ok(()) => {
                    tracing::info!("store reopened after a disk error");
                    broken = false;
                    pause = std::time::Duration::from_millis(100);
                }
                Err(e) => {
                    // Said once at the failure itself; the retries are not news.
                    tracing::debug!(error = %e, "the store cannot be reopened yet; retrying");
                    pause = (pause * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
        let first = if broken {
            match ops.recv_timeout(pause) {
                Ok(op) => Some(op),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else if let Some(since) = undurable_since {
            let left = DEFERRED_FLUSH.saturating_sub(since.elapsed());
            match ops.recv_timeout(left) {
                Ok(op) => Some(op),
                // Time to make the deferred writes durable, with or without new work.
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    flush_deferred(&live);
                    return;
                }
            }
        } else {
            match ops.recv() {
                Ok(op) => Some(op),
                Err(_) => return,
            }
        };
        let flush_due = first.is_none();
        let mut group: Vec<WriteOp> = first.into_iter().collect();
        while group.len() < MAX_GROUP {
            match ops.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        if broken {
            drop(group); // their callers read the closed channels as not committed
            continue;
        }
        let durable = flush_due
            || group.iter().any(|op| op.durable)
            || undurable_since.is_some_and(|t| t.elapsed() >= DEFERRED_FLUSH);
        let txn = match live.get().and_then(|db| db_err!(db.begin_write())) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "データベースに書き込めません (the store cannot write)");
                broken = true;
                drop(group);
                continue;
            }
        };
        let mut txn = txn;
        if !durable && let Err(e) = txn.set_durability(redb::Durability::None) {
            tracing::warn!(error = %e, "後でまとめてディスクに確定する予定の書き込みを、その場で確定します (a deferred write is committed durably instead)");
        }
        let mut replies = Vec::with_capacity(group.len());
        let mut failed: Option<String> = None;
        for op in group {
            if failed.is_some() {
                // Not run: dropping it closes its caller's channel, which reads as not committed.
                drop(op);
                continue;
            }
            let (reply, spoiled) = (op.run)(&txn);
            failed = spoiled;
            replies.push(reply);
        }
        let outcome = match failed {
            Some(why) => {
                let _ = txn.abort();
                Some(why)
            }
            None => txn.commit().err().map(|e| format!("commit failed: {e}")),
        };
        if let Some(why) = &outcome {
            tracing::error!(error = %why, writes = replies.len(), "データベースへの書き込みに失敗しました。書き込みは自動でやり直します (a store transaction failed; its writes are retried by their callers)");
            broken = true;
            // A failed transaction leaves redb refusing writes until the file is reopened;
            // deferred writes before it that were never made durable are gone with the reopen,
            // exactly as after a power cut: the gateway tells them again.
            undurable_since = None;
        } else if durable {
            undurable_since = None;
        } else if undurable_since.is_none() {
            undurable_since = Some(std::time::Instant::now());
        }
        for reply in replies {
            reply(outcome.as_deref());
        }
    }
}

/// Makes the deferred writes durable when the store closes: an empty durable commit persists
/// every non-durable commit before it.
fn flush_deferred(live: &LiveDb) {
    let result = live
        .get()
        .and_then(|db| db_err!(db.begin_write()))
        .and_then(|txn| db_err!(txn.commit()));
    if let Err(e) = result {
        tracing::warn!(error = %e, "終了するときに、残っていた書き込みをディスクに確定できませんでした。次の起動時にゲートウェイに問い合わせて確かめます (deferred writes could not be made durable at close; the gateway is asked again at the next start)");
    }
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match *self.handle {
            Handle::Writer(_) => "writer",
            Handle::Reader(_) => "read-only",
        };
        f.debug_struct("Store").field("mode", &mode).finish()
    }
}

/// The result of recording a newly taken file.
#[derive(Debug)]
pub enum Recorded {
    /// Recorded as given.
    New(Submission),
    /// The same bytes are already queued or sent: recorded as a duplicate of that submission.
    Duplicate {
        /// The duplicate record as stored.
        submission: Submission,
        /// The submission that has these bytes.
        original: Box<Submission>,
    },
}

impl Recorded {
    /// The record as stored.
    pub fn submission(&self) -> &Submission {
        match self {
            Recorded::New(s) => s,
            Recorded::Duplicate { submission, .. } => submission,
        }
    }
}

fn decode(id: &str, bytes: &[u8]) -> Result<Submission, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Record {
        id: id.to_owned(),
        source,
    })
}

fn encode(s: &Submission) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(s).map_err(|source| StoreError::Record {
        id: s.id.to_string(),
        source,
    })
}

impl Store {
    /// Opens (or creates) the store as its single writer, migrating an older schema, and
    /// starts its committer thread.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::ExclusiveWriter)
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen,
                other => StoreError::Db(other.into()),
            })?;
        let txn = db_err!(db.begin_write())?;
        {
            for def in [META, SUBMISSIONS, BLOBS, AGENDA, ALERTS, BACKUP_LOG] {
                db_err!(txn.open_table(def))?;
            }
            db_err!(txn.open_table(BY_SHA256))?;
            db_err!(txn.open_table(PENDING_MOVES))?;
            for def in [
                notices::NOTICES,
                notices::NOTICE_BODIES,
                notices::MIRROR_CURSORS,
                notices::RETURNS,
                notices::ASSESSMENTS,
                notices::STATEMENTS,
            ] {
                db_err!(txn.open_table(def))?;
            }
            db_err!(txn.open_table(notices::NOTICES_BY_OFFICE))?;
            db_err!(txn.open_table(notices::RETURNS_PENDING))?;
            db_err!(txn.open_table(by_office::SUBMISSIONS_BY_OFFICE))?;
            db_err!(txn.open_table(by_office::RETURNS_BY_OFFICE))?;
            db_err!(txn.open_table(notices::NOTICE_READS))?;
            db_err!(txn.open_table(accounts::ACCOUNTS))?;
            db_err!(txn.open_table(accounts::CORPORATIONS))?;
            db_err!(txn.open_table(accounts::AUDIT))?;
            db_err!(txn.open_table(accounts::SESSIONS))?;
            db_err!(txn.open_table(accounts::OFFICES))?;
            db_err!(txn.open_table(outbox::ALERT_OUTBOX))?;
            db_err!(txn.open_table(outbox::ALERT_DELIVERIES))?;
            db_err!(txn.open_table(outbox::ALERT_PENDING))?;
            db_err!(txn.open_table(outbox::ALERT_EVENTS))?;
            let mut meta = db_err!(txn.open_table(META))?;
            let found = db_err!(meta.get("schema_version"))?.map(|v| parse_version(v.value()));
            match found {
                Some(v) if v > SCHEMA_VERSION => return Err(StoreError::Version { found: v }),
                Some(v) if v < SCHEMA_VERSION => {
                    migrate_v1(&txn)?;
                    if v < 6 {
                        by_office::build(&txn)?;
                    }
                    tracing::info!(from = v, to = SCHEMA_VERSION, "store schema migrated");
                }
                Some(_) => {}
                None => {}
            }
            db_err!(meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice()))?;
        }
        db_err!(txn.commit())?;
        let db = Arc::new(LiveDb {
            path: path.to_owned(),
            db: std::sync::RwLock::new(Some(Arc::new(db))),
        });
        let (ops, queue) = mpsc::channel();
        let for_thread = db.clone();
        let thread = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || committer(for_thread, queue))
            .map_err(|e| StoreError::NotCommitted(format!("cannot start the committer: {e}")))?;
        Ok(Store {
            handle: Arc::new(Handle::Writer(Writer {
                db,
                ops: Some(ops),
                thread: Some(thread),
            })),
        })
    }

    /// Opens the store read-only, alongside a running daemon.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let db = redb::Builder::new()
            .set_concurrency_mode(ConcurrencyMode::ExclusiveWriter)
            .set_cache_size(CACHE_BYTES)
            .open_read_only(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen,
                other => StoreError::Db(other.into()),
            })?;
        Ok(Store {
            handle: Arc::new(Handle::Reader(db)),
        })
    }

    /// Opens the store for reading from a command (`status`) when no daemon holds it. A file left needing recovery by a crash cannot be read as it is; if no daemon has
    /// it open, it is recovered here (as the daemon would at its next start); if the daemon is
    /// just starting and recovering it, this waits for it briefly.
    pub fn open_for_reading(path: &Path) -> Result<Store, StoreError> {
        let mut tries = 0;
        loop {
            match Self::open_read_only(path) {
                Err(StoreError::Db(redb::Error::RepairAborted)) => match Self::open(path) {
                    Ok(store) => return Ok(store),
                    Err(StoreError::AlreadyOpen) if tries < 50 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    Err(e) => return Err(e),
                },
                other => return other,
            }
        }
    }

    /// The store's file, when this handle is the writer (a read-only handle does not keep it).
    pub fn path(&self) -> Option<&Path> {
        match &*self.handle {
            Handle::Writer(w) => Some(w.db.path.as_path()),
            Handle::Reader(_) => None,
        }
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        match &*self.handle {
            Handle::Writer(w) => db_err!(w.db.get()?.begin_read()),
            Handle::Reader(db) => db_err!(db.begin_read()),
        }
    }

    /// Runs `f` in the committer's next group transaction and returns its result once that
    /// transaction is committed. `f` must not write anything before an error it returns, except
    /// through redb calls whose errors it passes on (those abort the whole group).
    pub fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel::<Result<T, StoreError>>(1);
        self.enqueue(f, true, move |answer| {
            let _ = tx.send(answer);
        })?;
        rx.recv()
            .unwrap_or_else(|_| Err(not_committed_with_group()))
    }

    /// Makes every write committed so far durable: an empty durable commit persists the deferred
    /// writes before it. The daemon calls this when it stops, so that a state it has shown
    /// survives even when the last handle is held by a thread that outlives the runtime (the
    /// process may exit before that thread lets go, and the close-time flush never runs).
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.write_async(|_| Ok(())).await
    }

    /// [`Store::write`] for async callers: the committer answers the task directly, with no
    /// blocking thread in between (a month-start burst makes thousands of these).
    pub async fn write_async<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_async_with(f, true).await
    }

    /// [`Store::write_async`] without waiting for an fsync: the write is committed and visible
    /// when this returns, and durable within `DEFERRED_FLUSH` (or at the next durable commit,
    /// whichever is first). Only for writes whose loss in a power cut the gateway repairs (see
    /// the module docs): a receipt, a 受付 result, a poll's next time.
    pub async fn write_async_deferred<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_async_with(f, false).await
    }

    async fn write_async_with<T, F>(&self, f: F, durable: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, StoreError>>();
        self.enqueue(f, durable, move |answer| {
            let _ = tx.send(answer);
        })?;
        rx.await.unwrap_or_else(|_| Err(not_committed_with_group()))
    }

    /// Queues `f` for the committer; `deliver` gets its outcome after the commit. If the group
    /// fails before `f` runs, `deliver` is dropped unrun, which its caller reads as not committed.
    fn enqueue<T, F>(
        &self,
        f: F,
        durable: bool,
        deliver: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let Handle::Writer(writer) = &*self.handle else {
            return Err(StoreError::ReadOnly);
        };
        let Some(queue) = &writer.ops else {
            return Err(StoreError::NotCommitted("the store is closing".into()));
        };
        let run: WriteFn = Box::new(move |txn| {
            let result = f(txn);
            let spoiled = match &result {
                Err(e @ (StoreError::Db(_) | StoreError::NotCommitted(_))) => Some(e.to_string()),
                _ => None,
            };
            let reply: Reply = Box::new(move |outcome| {
                deliver(match (result, outcome) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Some(why)) => Err(StoreError::NotCommitted(why.to_owned())),
                    (Ok(v), None) => Ok(v),
                });
            });
            (reply, spoiled)
        });
        queue
            .send(WriteOp { run, durable })
            .map_err(|_| StoreError::NotCommitted("the committer has stopped".into()))
    }

    /// Records a newly taken file and its bytes in one transaction. A sendable (queued or held)
    /// submission whose bytes are already queued or sent is stored as a duplicate instead, with
    /// a finding that names the original. The record is pending a move until `mark_moved`.
    pub fn record_new(&self, sub: Submission, bytes: Vec<u8>) -> Result<Recorded, StoreError> {
        self.write(move |txn| record_new_in(txn, sub, &bytes))
    }

    /// Records a batch of newly taken files in one transaction (one fsync for all), each as
    /// [`Store::record_new`] does, in order: a later file with the bytes of an earlier one is its
    /// duplicate. A file that cannot be recorded (its record does not encode) gets its own error
    /// and the others are recorded; a database error fails the whole batch.
    pub fn record_new_batch(
        &self,
        items: Vec<(Submission, Vec<u8>)>,
    ) -> Result<Vec<Result<Recorded, StoreError>>, StoreError> {
        self.write(move |txn| {
            let mut out = Vec::with_capacity(items.len());
            for (sub, bytes) in items {
                match record_new_in(txn, sub, &bytes) {
                    Err(e @ (StoreError::Db(_) | StoreError::NotCommitted(_))) => return Err(e),
                    other => out.push(other),
                }
            }
            Ok(out)
        })
    }

    /// Records where each file of a batch went ([`Store::mark_moved`]), in one transaction.
    pub fn mark_moved_batch(
        &self,
        items: Vec<(SubmissionId, String)>,
    ) -> Result<Vec<Result<Submission, StoreError>>, StoreError> {
        self.write(move |txn| {
            let mut out = Vec::with_capacity(items.len());
            for (id, moved_to) in items {
                match update_in(txn, &id, |s| s.moved_to = Some(moved_to)) {
                    Err(e @ (StoreError::Db(_) | StoreError::NotCommitted(_))) => return Err(e),
                    other => out.push(other),
                }
            }
            Ok(out)
        })
    }

    /// The submission whose file of this name was committed but not yet moved out of the drop
    /// folder (a crash between the commit and the move).
    pub fn pending_move(&self, file_name: &str) -> Result<Option<Submission>, StoreError> {
        let txn = self.read()?;
        let (Some(pending), Some(subs)) = (
            read_table(&txn, PENDING_MOVES)?,
            read_table(&txn, SUBMISSIONS)?,
        ) else {
            return Ok(None);
        };
        let Some(id) = db_err!(pending.get(file_name))?.map(|v| v.value().to_owned()) else {
            return Ok(None);
        };
        match db_err!(subs.get(id.as_str()))? {
            Some(v) => Ok(Some(decode(&id, v.value())?)),
            None => Ok(None),
        }
    }

    /// Every submission whose file was committed but whose move out of the drop folder is not
    /// recorded yet: normally none or the one being taken; more only after a crash or an error
    /// between the commit and `mark_moved`.
    pub fn pending_moves(&self) -> Result<Vec<Submission>, StoreError> {
        let txn = self.read()?;
        let (Some(pending), Some(subs)) = (
            read_table(&txn, PENDING_MOVES)?,
            read_table(&txn, SUBMISSIONS)?,
        ) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(pending.iter())? {
            let (_, id) = db_err!(entry)?;
            let id = id.value();
            if let Some(v) = db_err!(subs.get(id))? {
                out.push(decode(id, v.value())?);
            }
        }
        Ok(out)
    }

    /// Records where the file went, ending its pending move.
    pub fn mark_moved(
        &self,
        id: &SubmissionId,
        moved_to: String,
    ) -> Result<Submission, StoreError> {
        self.update(id, |s| {
            s.moved_to = Some(moved_to);
        })
    }

    /// [`Store::update`] for async callers ([`Store::write_async`]).
    pub async fn update_async(
        &self,
        id: &SubmissionId,
        f: impl FnOnce(&mut Submission) + Send + 'static,
    ) -> Result<Submission, StoreError> {
        let id = id.clone();
        self.write_async(move |txn| update_in(txn, &id, f)).await
    }

    /// [`Store::update_async`] with deferred durability ([`Store::write_async_deferred`]).
    pub async fn update_async_deferred(
        &self,
        id: &SubmissionId,
        f: impl FnOnce(&mut Submission) + Send + 'static,
    ) -> Result<Submission, StoreError> {
        let id = id.clone();
        self.write_async_deferred(move |txn| update_in(txn, &id, f))
            .await
    }

    /// Reads a submission, changes it with `f`, and writes it back, all in one transaction;
    /// keeps the agenda and pending-move indexes in step. Returns the record as stored.
    pub fn update(
        &self,
        id: &SubmissionId,
        f: impl FnOnce(&mut Submission) + Send + 'static,
    ) -> Result<Submission, StoreError> {
        let id = id.clone();
        self.write(move |txn| update_in(txn, &id, f))
    }

    /// One submission.
    pub fn get(&self, id: &SubmissionId) -> Result<Option<Submission>, StoreError> {
        let txn = self.read()?;
        let Some(subs) = read_table(&txn, SUBMISSIONS)? else {
            return Ok(None);
        };
        match db_err!(subs.get(id.as_str()))? {
            Some(v) => Ok(Some(decode(id.as_str(), v.value())?)),
            None => Ok(None),
        }
    }

    /// The agenda: every submission that is not in a final state, oldest first, with what
    /// the relay needs to plan (state, next action, month).
    pub fn agenda(&self) -> Result<Vec<AgendaEntry>, StoreError> {
        let txn = self.read()?;
        let Some(agenda) = read_table(&txn, AGENDA)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(agenda.iter())? {
            let (k, v) = db_err!(entry)?;
            let id = k.value();
            let value: AgendaValue =
                serde_json::from_slice(v.value()).map_err(|source| StoreError::Record {
                    id: id.to_owned(),
                    source,
                })?;
            out.push(AgendaEntry {
                id: SubmissionId::from_string(id.to_owned()),
                state: value.state,
                next_action_at: value.next_action_at,
                processing_month: value.processing_month,
            });
        }
        Ok(out)
    }

    /// Every submission that is not in a final state, oldest first.
    pub fn active(&self) -> Result<Vec<Submission>, StoreError> {
        let mut out = Vec::new();
        for entry in self.agenda()? {
            if let Some(sub) = self.get(&entry.id)? {
                out.push(sub);
            }
        }
        Ok(out)
    }

    /// Sets the value of an alert; returns the previous one.
    pub fn put_alert(&self, key: &str, value: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.write(move |txn| {
            let mut t = db_err!(txn.open_table(ALERTS))?;
            let old =
                db_err!(t.insert(key.as_str(), value.as_slice()))?.map(|v| v.value().to_vec());
            Ok(old)
        })
    }

    /// Removes an alert (it is resolved); returns its last value.
    pub fn remove_alert(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.write(move |txn| {
            let mut t = db_err!(txn.open_table(ALERTS))?;
            let old = db_err!(t.remove(key.as_str()))?.map(|v| v.value().to_vec());
            Ok(old)
        })
    }

    /// Every current alert, by key.
    pub fn alerts(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, ALERTS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(t.iter())? {
            let (k, v) = db_err!(entry)?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Writes one entry of the backup log.
    pub fn put_backup_log(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |txn| {
            let mut t = db_err!(txn.open_table(BACKUP_LOG))?;
            db_err!(t.insert(key.as_str(), value.as_slice()))?;
            Ok(())
        })
    }

    /// The newest `limit` entries of the backup log whose keys start with `prefix`, newest
    /// (greatest key) first.
    pub fn backup_log(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, BACKUP_LOG)? else {
            return Ok(Vec::new());
        };
        let end = format!("{prefix}\u{10FFFF}");
        let mut out = Vec::new();
        for entry in db_err!(t.range(prefix..end.as_str()))?.rev() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = db_err!(entry)?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Every submission, oldest first.
    pub fn all(&self) -> Result<Vec<Submission>, StoreError> {
        let mut out = Vec::new();
        self.each(|sub| {
            out.push(sub);
            Ok::<(), StoreError>(())
        })?;
        Ok(out)
    }

    /// Calls `f` with every submission, oldest first, one at a time from one read transaction:
    /// memory stays flat however many years of claims the store holds.
    pub fn each<E: From<StoreError>>(
        &self,
        mut f: impl FnMut(Submission) -> Result<(), E>,
    ) -> Result<(), E> {
        let txn = self.read()?;
        let Some(subs) = read_table(&txn, SUBMISSIONS)? else {
            return Ok(());
        };
        for entry in db_err!(subs.iter())? {
            let (k, v) = db_err!(entry)?;
            f(decode(k.value(), v.value())?)?;
        }
        Ok(())
    }

    /// The bytes of a file taken, by SHA-256.
    pub fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let Some(blobs) = read_table(&txn, BLOBS)? else {
            return Ok(None);
        };
        Ok(db_err!(blobs.get(sha256))?.map(|v| v.value().to_vec()))
    }

    /// Runs `f` on a blocking thread (redb commits fsync; the async runtime must not wait on
    /// them). A panic in `f` becomes an error rather than taking the caller down.
    pub async fn call<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        let out = tokio::task::spawn_blocking(move || f(&store)).await??;
        Ok(out)
    }
}

fn not_committed_with_group() -> StoreError {
    StoreError::NotCommitted(
        "another write in its group failed, so the group was rolled back".into(),
    )
}

fn record_new_in(
    txn: &WriteTransaction,
    mut sub: Submission,
    bytes: &[u8],
) -> Result<Recorded, StoreError> {
    let mut original = None;
    let mut by_sha = db_err!(txn.open_table(BY_SHA256))?;
    let mut subs = db_err!(txn.open_table(SUBMISSIONS))?;
    let sendable = matches!(sub.state, State::Queued | State::Held);
    if sendable {
        let existing = db_err!(by_sha.get(sub.sha256.as_str()))?.map(|v| v.value().to_owned());
        if let Some(orig_id) = existing {
            let orig = match db_err!(subs.get(orig_id.as_str()))? {
                Some(v) => decode(&orig_id, v.value())?,
                None => return Err(StoreError::NotFound(orig_id)),
            };
            // Bytes withdrawn (取消) or rejected (×) at the federation are not there: sending
            // them again is no double claim.
            if !matches!(orig.state, State::Withdrawn | State::Rejected) {
                mark_duplicate(&mut sub, &orig);
                original = Some(Box::new(orig));
            }
        }
    }
    // Everything that can fail without a database error is done before the first write.
    let record = encode(&sub)?;
    let agenda = agenda_value(&sub)?;
    if sendable && original.is_none() {
        db_err!(by_sha.insert(sub.sha256.as_str(), sub.id.as_str()))?;
    }
    let mut blobs = db_err!(txn.open_table(BLOBS))?;
    if db_err!(blobs.get(sub.sha256.as_str()))?.is_none() {
        db_err!(blobs.insert(sub.sha256.as_str(), bytes))?;
    }
    db_err!(subs.insert(sub.id.as_str(), record.as_slice()))?;
    by_office::index_submission(txn, None, &sub)?;
    crate::alerts::events::on_submission(txn, None, &sub)?;
    if !sub.state.is_final() {
        let mut table = db_err!(txn.open_table(AGENDA))?;
        db_err!(table.insert(sub.id.as_str(), agenda.as_slice()))?;
    }
    let mut pending = db_err!(txn.open_table(PENDING_MOVES))?;
    db_err!(pending.insert(sub.file_name.as_str(), sub.id.as_str()))?;
    Ok(match original {
        Some(original) => Recorded::Duplicate {
            submission: sub,
            original,
        },
        None => Recorded::New(sub),
    })
}

fn update_in(
    txn: &WriteTransaction,
    id: &SubmissionId,
    f: impl FnOnce(&mut Submission),
) -> Result<Submission, StoreError> {
    let mut subs = db_err!(txn.open_table(SUBMISSIONS))?;
    let mut sub = match db_err!(subs.get(id.as_str()))? {
        Some(v) => decode(id.as_str(), v.value())?,
        None => return Err(StoreError::NotFound(id.to_string())),
    };
    let old_key = by_office::submission_key(&sub);
    let before = sub.state;
    f(&mut sub);
    let record = encode(&sub)?;
    agenda_value(&sub)?; // fails here, before any write, if it cannot be encoded
    db_err!(subs.insert(id.as_str(), record.as_slice()))?;
    index_agenda(txn, &sub)?;
    by_office::index_submission(txn, old_key, &sub)?;
    crate::alerts::events::on_submission(txn, Some(before), &sub)?;
    if sub.moved_to.is_some() {
        let mut pending = db_err!(txn.open_table(PENDING_MOVES))?;
        let ours =
            db_err!(pending.get(sub.file_name.as_str()))?.is_some_and(|v| v.value() == id.as_str());
        if ours {
            db_err!(pending.remove(sub.file_name.as_str()))?;
        }
    }
    Ok(sub)
}

/// Schema 1 → 2: builds the agenda from the set of active ids and the records, then deletes
/// the old set. Runs inside the opening transaction, so it happens entirely or not at all.
fn migrate_v1(txn: &WriteTransaction) -> Result<(), StoreError> {
    let exists = db_err!(txn.list_tables())?.any(|t| t.name() == ACTIVE_V1.name());
    if !exists {
        return Ok(());
    }
    let ids: Vec<String> = {
        let old = db_err!(txn.open_table(ACTIVE_V1))?;
        let mut ids = Vec::new();
        for entry in db_err!(old.iter())? {
            let (k, _) = db_err!(entry)?;
            ids.push(k.value().to_owned());
        }
        ids
    };
    {
        let subs = db_err!(txn.open_table(SUBMISSIONS))?;
        let mut agenda = db_err!(txn.open_table(AGENDA))?;
        for id in &ids {
            if let Some(v) = db_err!(subs.get(id.as_str()))? {
                let sub = decode(id, v.value())?;
                if !sub.state.is_final() {
                    db_err!(agenda.insert(id.as_str(), agenda_value(&sub)?.as_slice()))?;
                }
            }
        }
    }
    db_err!(txn.delete_table(ACTIVE_V1))?;
    Ok(())
}

/// Opens a table for reading; a table the writer has not created yet reads as absent (a reader
/// may open the file between its creation and the first commit).
fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(StoreError::Db(e.into())),
    }
}

fn parse_version(bytes: &[u8]) -> u64 {
    let mut raw = [0u8; 8];
    let n = bytes.len().min(8);
    raw[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(raw)
}

fn mark_duplicate(sub: &mut Submission, original: &Submission) {
    let when = crate::timefmt::jst_minutes(original.taken_at);
    let when_en = crate::timefmt::jst_minutes_en(original.taken_at);
    sub.state = State::Duplicate;
    sub.duplicate_of = Some(original.id.clone());
    sub.findings.push(Finding {
        severity: Severity::Error,
        code: admin_ui::help::code::INTAKE_DUPLICATE.as_str().into(),
        record_no: None,
        item_no: None,
        message_ja: format!(
            "同じ内容のファイルが {when} に「{}」として受け付け済みです（状態: {}）。二重請求を防ぐため、このファイルは送信しません。",
            original.file_name,
            original.state.label_ja()
        ),
        message_en: format!(
            "A file with the same content was already taken at {when_en} as \"{}\" (state: {}). To prevent a double claim this copy is not sent.",
            original.file_name,
            original.state.as_str()
        ),
    });
    if let Some(t) = sub.history.last_mut() {
        t.state = State::Duplicate;
        t.reason = "同じ内容のファイルを受付済み / same bytes already taken".into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn sub(name: &str, sha: &str, state: State) -> Submission {
        let mut s = Submission::new(name.into(), sha.into(), 3, Timestamp::now());
        s.transition(state, "taken", Timestamp::now());
        s
    }

    #[test]
    fn records_survive_reopen_and_duplicates_are_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let first = {
            let store = Store::open(&path).unwrap();
            let a = store
                .record_new(sub("A.CSV", "aa", State::Queued), b"abc".to_vec())
                .unwrap();
            assert!(matches!(a, Recorded::New(_)));
            let b = store
                .record_new(sub("B.CSV", "aa", State::Queued), b"abc".to_vec())
                .unwrap();
            match &b {
                Recorded::Duplicate {
                    submission,
                    original,
                } => {
                    assert_eq!(submission.state, State::Duplicate);
                    assert_eq!(submission.duplicate_of.as_ref(), Some(&original.id));
                    assert_eq!(submission.findings[0].code, "intake.duplicate");
                    assert!(submission.findings[0].message_ja.contains("A.CSV"));
                }
                other => panic!("{other:?}"),
            }
            // A refused file with the same bytes is not a duplicate: it is refused on its own.
            let c = store
                .record_new(sub("C.CSV", "aa", State::Refused), b"abc".to_vec())
                .unwrap();
            assert!(matches!(c, Recorded::New(_)));
            a.submission().clone()
        };
        let store = Store::open(&path).unwrap();
        let all = store.all().unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].id, first.id, "ids sort in the order taken");
        assert_eq!(store.blob("aa").unwrap().unwrap(), b"abc");
        let active = store.active().unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].id, first.id);
    }

    #[test]
    fn updates_keep_indexes_in_step() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let s = store
            .record_new(sub("A.CSV", "bb", State::Queued), b"x".to_vec())
            .unwrap();
        let id = s.submission().id.clone();
        assert_eq!(store.pending_move("A.CSV").unwrap().unwrap().id, id);
        store.mark_moved(&id, "送信済/A.CSV".into()).unwrap();
        assert!(store.pending_move("A.CSV").unwrap().is_none());
        store
            .update(&id, |s| {
                s.transition(State::Accepted, "○", Timestamp::now())
            })
            .unwrap();
        assert!(store.active().unwrap().is_empty());
        let got = store.get(&id).unwrap().unwrap();
        assert_eq!(got.state, State::Accepted);
        assert_eq!(got.history.len(), 2);
        assert!(matches!(
            store.update(&SubmissionId::new(), |_| {}),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn the_writer_holds_the_file_alone_and_a_reader_sees_its_commits_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let writer = Store::open(&path).unwrap();
        writer
            .record_new(sub("A.CSV", "cc", State::Queued), b"x".to_vec())
            .unwrap();
        assert!(
            matches!(Store::open_read_only(&path), Err(StoreError::AlreadyOpen)),
            "no reader beside the writer"
        );
        assert!(matches!(Store::open(&path), Err(StoreError::AlreadyOpen)));
        drop(writer);
        let reader = Store::open_read_only(&path).unwrap();
        assert_eq!(reader.all().unwrap().len(), 1);
        assert!(matches!(
            reader.record_new(sub("B.CSV", "dd", State::Queued), b"y".to_vec()),
            Err(StoreError::ReadOnly)
        ));
        assert!(
            matches!(Store::open(&path), Err(StoreError::AlreadyOpen)),
            "no writer beside a reader"
        );
    }

    #[test]
    fn a_batch_is_recorded_in_one_commit_and_its_moves_in_another() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let recorded = store
            .record_new_batch(vec![
                (sub("A.CSV", "aa", State::Queued), b"a".to_vec()),
                (sub("B.CSV", "bb", State::Refused), b"b".to_vec()),
                // The same bytes as A later in the same batch: a duplicate of A.
                (sub("C.CSV", "aa", State::Queued), b"a".to_vec()),
            ])
            .unwrap();
        let recorded: Vec<Recorded> = recorded.into_iter().map(Result::unwrap).collect();
        assert!(matches!(&recorded[0], Recorded::New(s) if s.state == State::Queued));
        assert!(matches!(&recorded[1], Recorded::New(s) if s.state == State::Refused));
        let Recorded::Duplicate { original, .. } = &recorded[2] else {
            panic!("C is a duplicate of A: {:?}", recorded[2]);
        };
        assert_eq!(original.id, recorded[0].submission().id);
        assert_eq!(
            store.pending_moves().unwrap().len(),
            3,
            "all pending a move"
        );
        assert_eq!(store.blob("aa").unwrap().as_deref(), Some(b"a".as_slice()));

        let moves = recorded
            .iter()
            .map(|r| {
                let s = r.submission();
                (s.id.clone(), format!("送信済/{}", s.file_name))
            })
            .chain([(SubmissionId::new(), "送信済/NOBODY.CSV".to_owned())])
            .collect();
        let marked = store.mark_moved_batch(moves).unwrap();
        assert_eq!(marked.len(), 4);
        assert!(
            marked[..3]
                .iter()
                .all(|m| m.as_ref().is_ok_and(|s| s.moved_to.is_some()))
        );
        assert!(
            matches!(marked[3], Err(StoreError::NotFound(_))),
            "an unknown id fails alone"
        );
        assert!(store.pending_moves().unwrap().is_empty(), "no move pending");
    }

    #[test]
    fn concurrent_writes_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for n in 0..50 {
                        let name = format!("T{t}N{n}.CSV");
                        let sha = format!("{t}-{n}");
                        let r = store
                            .record_new(sub(&name, &sha, State::Queued), vec![t as u8, n as u8])
                            .unwrap();
                        store
                            .mark_moved(&r.submission().id, format!("送信済/{name}"))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.all().unwrap().len(), 400);
        assert_eq!(store.agenda().unwrap().len(), 400);
        assert!(store.all().unwrap().iter().all(|s| s.moved_to.is_some()));
        assert!(store.pending_move("T3N7.CSV").unwrap().is_none());
    }

    #[test]
    fn a_failing_write_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let a = store
            .record_new(sub("A.CSV", "ee", State::Queued), b"x".to_vec())
            .unwrap();
        let missing = store.update(&SubmissionId::new(), |_| {});
        assert!(matches!(missing, Err(StoreError::NotFound(_))));
        let id = a.submission().id.clone();
        let next = Timestamp::now();
        store
            .update(&id, move |s| s.next_action_at = Some(next))
            .unwrap();
        let agenda = store.agenda().unwrap();
        assert_eq!(agenda.len(), 1);
        assert_eq!(agenda[0].state, State::Queued);
        assert_eq!(agenda[0].next_action_at, Some(next));
    }

    #[test]
    fn a_version_1_file_is_migrated_to_the_agenda() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let queued = sub("A.CSV", "ff", State::Queued);
        let done = sub("B.CSV", "gg", State::Accepted);
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                meta.insert("schema_version", 1u64.to_le_bytes().as_slice())
                    .unwrap();
                let mut subs = txn.open_table(SUBMISSIONS).unwrap();
                let mut active = txn.open_table(ACTIVE_V1).unwrap();
                for s in [&queued, &done] {
                    subs.insert(s.id.as_str(), encode(s).unwrap().as_slice())
                        .unwrap();
                }
                active.insert(queued.id.as_str(), ()).unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let agenda = store.agenda().unwrap();
        assert_eq!(agenda.len(), 1);
        assert_eq!(agenda[0].id, queued.id);
        assert_eq!(agenda[0].state, State::Queued);
        drop(store);
        let db = Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .collect();
        assert!(
            !names.contains(&"active_submissions".to_owned()),
            "{names:?}"
        );
        for name in &names {
            assert!(
                SCHEMA.contains(&name.as_str()),
                "{name} is in the schema registry"
            );
        }
        let meta = txn.open_table(META).unwrap();
        let v = parse_version(meta.get("schema_version").unwrap().unwrap().value());
        assert_eq!(v, SCHEMA_VERSION);
    }

    /// The child half of the deferred-durability crash test: writes, says how far it got on
    /// stdout, and waits to be killed.
    fn deferred_child(path: &Path) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = Store::open(path).unwrap();
        let ids: Vec<SubmissionId> = ["A.CSV", "B.CSV", "C.CSV"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let r = store
                    .record_new(sub(name, &format!("s{i}"), State::Sending), vec![i as u8])
                    .unwrap();
                r.submission().id.clone()
            })
            .collect();
        rt.block_on(async {
            let accept =
                |s: &mut Submission| s.transition(State::Arrived, "receipt", Timestamp::now());
            // B: deferred, then left alone for longer than the flush window.
            store.update_async_deferred(&ids[1], accept).await.unwrap();
            std::thread::sleep(DEFERRED_FLUSH * 3);
            // A: deferred, then made durable by a durable write right after it.
            store.update_async_deferred(&ids[0], accept).await.unwrap();
            store
                .update_async(&ids[2], |s| {
                    s.note = Some(crate::submission::Note {
                        code: None,
                        ja: "durable".into(),
                        en: "durable".into(),
                    })
                })
                .await
                .unwrap();
        });
        println!("ready {} {} {}", ids[0], ids[1], ids[2]);
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        std::thread::sleep(std::time::Duration::from_secs(60));
    }

    #[test]
    fn deferred_writes_are_durable_after_the_flush_window_or_the_next_durable_commit() {
        if let Ok(path) = std::env::var("KAIGO_STORE_DEFERRED_CHILD") {
            deferred_child(Path::new(&path));
            return;
        }
        use std::io::BufRead as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::tests::deferred_writes_are_durable_after_the_flush_window_or_the_next_durable_commit",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KAIGO_STORE_DEFERRED_CHILD", &path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = std::io::BufReader::new(stdout)
            .lines()
            .map(Result::unwrap)
            // The harness prints the test's name on the same line first.
            .find_map(|l| l.split_once("ready ").map(|(_, ids)| ids.to_owned()))
            .expect("the child got through its writes");
        let ids: Vec<SubmissionId> = line
            .split_whitespace()
            .map(|s| SubmissionId::from_string(s.to_owned()))
            .collect();
        child.kill().unwrap(); // SIGKILL: no close, no flush
        child.wait().unwrap();
        let store = Store::open(&path).unwrap();
        let state = |i: usize| store.get(&ids[i]).unwrap().unwrap();
        assert_eq!(state(1).state, State::Arrived, "flushed by the timer");
        assert_eq!(
            state(0).state,
            State::Arrived,
            "flushed by the durable commit after it"
        );
        assert!(state(2).note.is_some(), "a durable write is durable");
    }

    /// The child half of the sync test: a deferred write, a handle kept by a thread that never
    /// ends, `sync` (unless told not to), and an exit that runs no destructors, as when `main`
    /// returns while another thread still holds the store.
    fn sync_child(path: &Path, sync: bool) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = Store::open(path).unwrap();
        let id = store
            .record_new(sub("A.CSV", "aa", State::Sending), b"a".to_vec())
            .unwrap()
            .submission()
            .id
            .clone();
        let held = store.clone();
        std::thread::spawn(move || {
            let _held = held;
            std::thread::sleep(std::time::Duration::from_secs(3600));
        });
        rt.block_on(async {
            store
                .update_async_deferred(&id, |s| {
                    s.transition(State::Arrived, "receipt", Timestamp::now())
                })
                .await
                .unwrap();
            if sync {
                store.sync().await.unwrap();
            }
        });
        println!("ready {id}");
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        std::process::exit(0);
    }

    #[test]
    fn sync_makes_a_deferred_write_durable_before_the_process_exits() {
        if let Ok(path) = std::env::var("KAIGO_STORE_SYNC_CHILD") {
            sync_child(Path::new(&path), std::env::var("KAIGO_STORE_SYNC").is_ok());
            return;
        }
        let run = |sync: bool| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.redb");
            let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
            cmd.args([
                "--exact",
                "store::tests::sync_makes_a_deferred_write_durable_before_the_process_exits",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KAIGO_STORE_SYNC_CHILD", &path);
            if sync {
                cmd.env("KAIGO_STORE_SYNC", "1");
            }
            let out = cmd.output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let id = text
                .split_once("ready ")
                .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_owned())
                .unwrap_or_else(|| panic!("the child got through its writes: {text}"));
            let store = Store::open(&path).unwrap();
            store
                .get(&SubmissionId::from_string(id))
                .unwrap()
                .unwrap()
                .state
        };
        assert_eq!(run(true), State::Arrived, "synced before the exit");
        // Without it the exit comes well inside the flush window: the write is gone, which is
        // what the daemon's stop used to risk.
        assert_eq!(run(false), State::Sending, "the deferred write was lost");
    }

    #[tokio::test]
    async fn a_deferred_write_is_visible_at_once_and_durable_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let id = {
            let store = Store::open(&path).unwrap();
            let id = store
                .record_new(sub("A.CSV", "aa", State::Sending), b"a".to_vec())
                .unwrap()
                .submission()
                .id
                .clone();
            store
                .update_async_deferred(&id, |s| {
                    s.transition(State::Arrived, "receipt", Timestamp::now())
                })
                .await
                .unwrap();
            assert_eq!(store.get(&id).unwrap().unwrap().state, State::Arrived);
            assert_eq!(store.agenda().unwrap()[0].state, State::Arrived);
            id
        };
        let store = Store::open(&path).unwrap();
        assert_eq!(store.get(&id).unwrap().unwrap().state, State::Arrived);
    }
}
