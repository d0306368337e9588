//! The store: the only module that imports redb. It holds every submission record, the bytes of
//! every file taken (content-addressed by SHA-256), and the indexes the pipeline works from.
//!
//! Invariants kept here:
//! - **The truth is in redb.** Each operation is one write transaction committed with redb's
//!   default `Durability::Immediate` (fsync) before it returns; callers move files and answer
//!   only after that.
//! - **Exactly once.** A file's bytes are recognised by SHA-256 inside the same transaction that
//!   records it, so two drops of one file can never both be queued for sending.
//! - Bytes are never deleted or altered; a record is only ever updated through `update`, which
//!   keeps the indexes (`active`, pending moves) consistent with the record's state.
//! - `SCHEMA` lists every table, so backups can refuse a file holding a table they do not know.
//!
//! The daemon opens the file as the single writer; `status` and other commands open it
//! read-only at the same time (redb `ConcurrencyMode::SingleWriter`) and see every commit.

use std::path::Path;
use std::sync::Arc;

use redb::{
    ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition,
};

use crate::claim::{Finding, Severity};
use crate::submission::{State, Submission, SubmissionId};

/// Schema version written into `meta`; a newer file is refused rather than misread.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SUBMISSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("submissions");
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
const BY_SHA256: TableDefinition<&str, &str> = TableDefinition::new("submissions_by_sha256");
const ACTIVE: TableDefinition<&str, ()> = TableDefinition::new("active_submissions");
const PENDING_MOVES: TableDefinition<&str, &str> = TableDefinition::new("pending_moves");

/// Every table of the store: the schema registry.
pub const SCHEMA: &[&str] = &[
    "meta",
    "submissions",
    "blobs",
    "submissions_by_sha256",
    "active_submissions",
    "pending_moves",
];

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
}

macro_rules! db_err {
    ($e:expr) => {
        $e.map_err(|e| StoreError::Db(e.into()))
    };
}

enum Handle {
    Writer(Database),
    Reader(ReadOnlyDatabase),
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
    /// Opens (or creates) the store as its single writer.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen,
                other => StoreError::Db(other.into()),
            })?;
        let txn = db_err!(db.begin_write())?;
        {
            for def in [META, SUBMISSIONS, BLOBS] {
                db_err!(txn.open_table(def))?;
            }
            db_err!(txn.open_table(BY_SHA256))?;
            db_err!(txn.open_table(ACTIVE))?;
            db_err!(txn.open_table(PENDING_MOVES))?;
            let mut meta = db_err!(txn.open_table(META))?;
            let found = db_err!(meta.get("schema_version"))?.map(|v| parse_version(v.value()));
            match found {
                Some(v) if v > SCHEMA_VERSION => return Err(StoreError::Version { found: v }),
                Some(_) => {}
                None => {
                    db_err!(
                        meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())
                    )?;
                }
            }
        }
        db_err!(txn.commit())?;
        Ok(Store {
            handle: Arc::new(Handle::Writer(db)),
        })
    }

    /// Opens the store read-only, alongside a running daemon.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let db = redb::Builder::new()
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .open_read_only(path)
            .map_err(|e| StoreError::Db(e.into()))?;
        Ok(Store {
            handle: Arc::new(Handle::Reader(db)),
        })
    }

    /// Opens the store for reading from a command (`status`): read-only alongside a running
    /// daemon. A file left needing recovery by a crash cannot be read as it is; if no daemon has
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

    fn writer(&self) -> Result<&Database, StoreError> {
        match &*self.handle {
            Handle::Writer(db) => Ok(db),
            Handle::Reader(_) => Err(StoreError::ReadOnly),
        }
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        match &*self.handle {
            Handle::Writer(db) => db_err!(db.begin_read()),
            Handle::Reader(db) => db_err!(db.begin_read()),
        }
    }

    /// Records a newly taken file and its bytes in one transaction. A sendable (queued or held)
    /// submission whose bytes are already queued or sent is stored as a duplicate instead, with
    /// a finding that names the original. The record is pending a move until `mark_moved`.
    pub fn record_new(&self, mut sub: Submission, bytes: &[u8]) -> Result<Recorded, StoreError> {
        let db = self.writer()?;
        let txn = db_err!(db.begin_write())?;
        let mut original = None;
        {
            let mut by_sha = db_err!(txn.open_table(BY_SHA256))?;
            let mut subs = db_err!(txn.open_table(SUBMISSIONS))?;
            let sendable = matches!(sub.state, State::Queued | State::Held);
            if sendable {
                let existing =
                    db_err!(by_sha.get(sub.sha256.as_str()))?.map(|v| v.value().to_owned());
                match existing {
                    Some(orig_id) => {
                        let orig = match db_err!(subs.get(orig_id.as_str()))? {
                            Some(v) => decode(&orig_id, v.value())?,
                            None => return Err(StoreError::NotFound(orig_id)),
                        };
                        mark_duplicate(&mut sub, &orig);
                        original = Some(Box::new(orig));
                    }
                    None => {
                        db_err!(by_sha.insert(sub.sha256.as_str(), sub.id.as_str()))?;
                    }
                }
            }
            let mut blobs = db_err!(txn.open_table(BLOBS))?;
            if db_err!(blobs.get(sub.sha256.as_str()))?.is_none() {
                db_err!(blobs.insert(sub.sha256.as_str(), bytes))?;
            }
            db_err!(subs.insert(sub.id.as_str(), encode(&sub)?.as_slice()))?;
            let mut active = db_err!(txn.open_table(ACTIVE))?;
            if !sub.state.is_final() {
                db_err!(active.insert(sub.id.as_str(), ()))?;
            }
            let mut pending = db_err!(txn.open_table(PENDING_MOVES))?;
            db_err!(pending.insert(sub.file_name.as_str(), sub.id.as_str()))?;
        }
        db_err!(txn.commit())?;
        Ok(match original {
            Some(original) => Recorded::Duplicate {
                submission: sub,
                original,
            },
            None => Recorded::New(sub),
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

    /// Reads a submission, changes it with `f`, and writes it back, all in one transaction;
    /// keeps the `active` and pending-move indexes in step. Returns the record as stored.
    pub fn update(
        &self,
        id: &SubmissionId,
        f: impl FnOnce(&mut Submission),
    ) -> Result<Submission, StoreError> {
        let db = self.writer()?;
        let txn = db_err!(db.begin_write())?;
        let sub = {
            let mut subs = db_err!(txn.open_table(SUBMISSIONS))?;
            let mut sub = match db_err!(subs.get(id.as_str()))? {
                Some(v) => decode(id.as_str(), v.value())?,
                None => return Err(StoreError::NotFound(id.to_string())),
            };
            f(&mut sub);
            db_err!(subs.insert(id.as_str(), encode(&sub)?.as_slice()))?;
            let mut active = db_err!(txn.open_table(ACTIVE))?;
            if sub.state.is_final() {
                db_err!(active.remove(id.as_str()))?;
            } else {
                db_err!(active.insert(id.as_str(), ()))?;
            }
            if sub.moved_to.is_some() {
                let mut pending = db_err!(txn.open_table(PENDING_MOVES))?;
                let ours = db_err!(pending.get(sub.file_name.as_str()))?
                    .is_some_and(|v| v.value() == id.as_str());
                if ours {
                    db_err!(pending.remove(sub.file_name.as_str()))?;
                }
            }
            sub
        };
        db_err!(txn.commit())?;
        Ok(sub)
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

    /// Every submission that is not in a final state, oldest first.
    pub fn active(&self) -> Result<Vec<Submission>, StoreError> {
        let txn = self.read()?;
        let (Some(active), Some(subs)) =
            (read_table(&txn, ACTIVE)?, read_table(&txn, SUBMISSIONS)?)
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(active.iter())? {
            let (k, _) = db_err!(entry)?;
            let id = k.value();
            if let Some(v) = db_err!(subs.get(id))? {
                out.push(decode(id, v.value())?);
            }
        }
        Ok(out)
    }

    /// Every submission, oldest first.
    pub fn all(&self) -> Result<Vec<Submission>, StoreError> {
        let txn = self.read()?;
        let Some(subs) = read_table(&txn, SUBMISSIONS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(subs.iter())? {
            let (k, v) = db_err!(entry)?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
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
    sub.state = State::Duplicate;
    sub.duplicate_of = Some(original.id.clone());
    sub.findings.push(Finding {
        severity: Severity::Error,
        code: "intake.duplicate".into(),
        record_no: None,
        item_no: None,
        message_ja: format!(
            "同じ内容のファイルが {when} に「{}」として受け付け済みです（状態: {}）。二重請求を防ぐため、このファイルは送信しません。",
            original.file_name,
            original.state.label_ja()
        ),
        message_en: format!(
            "A file with the same content was already taken at {when} as \"{}\" (state: {}). To prevent a double claim this copy is not sent.",
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
                .record_new(sub("A.CSV", "aa", State::Queued), b"abc")
                .unwrap();
            assert!(matches!(a, Recorded::New(_)));
            let b = store
                .record_new(sub("B.CSV", "aa", State::Queued), b"abc")
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
                .record_new(sub("C.CSV", "aa", State::Refused), b"abc")
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
            .record_new(sub("A.CSV", "bb", State::Queued), b"x")
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
    fn a_reader_sees_the_writers_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let writer = Store::open(&path).unwrap();
        let reader = Store::open_read_only(&path).unwrap();
        assert!(reader.all().unwrap().is_empty());
        writer
            .record_new(sub("A.CSV", "cc", State::Queued), b"x")
            .unwrap();
        assert_eq!(reader.all().unwrap().len(), 1);
        assert!(matches!(
            reader.record_new(sub("B.CSV", "dd", State::Queued), b"y"),
            Err(StoreError::ReadOnly)
        ));
        assert!(matches!(Store::open(&path), Err(StoreError::AlreadyOpen)));
    }
}
