//! Snapshots: a consistent copy of the whole store in a fresh redb file, for backups.
//!
//! redb has no backup API, and copying its file while the daemon has it open is unsafe (the
//! header marks an open file as needing recovery). So a snapshot copies, from **one read
//! transaction**, every table of the schema registry into a new file, row by row, and hashes
//! each table while copying (its row count and a BLAKE3 over every key and value, length
//! prefixed). One thread reads and hashes, another inserts into the new file: rows go between
//! them in batches encoded exactly as they are hashed. The new file is then closed, reopened,
//! checked with `check_integrity()`, and hashed again; only when both hashes agree is the
//! snapshot returned.
//!
//! Invariants kept here:
//! - **Backups never copy the live file**, and writers keep working throughout: a read
//!   transaction sees one commit and blocks nobody.
//! - A store holding a table the registry does not know is refused ([`SnapshotError::UnknownTable`]):
//!   a copy that silently left a table out would restore as a store that lost data.
//! - Every table of the registry has a typed copier here (a test walks the registry), so a table
//!   added to the store without one fails the tests, not a customer's backup.

use std::path::Path;

use redb::{
    Database, Durability, Key, MultimapTableHandle as _, ReadTransaction, ReadableDatabase,
    ReadableTable, TableDefinition, TableHandle as _, Value, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::{SCHEMA, SCHEMA_VERSION, Store, StoreError, parse_version};

/// A fresh snapshot commits after this many bytes of rows, so that its write transaction does
/// not hold a whole store's pages in memory (the commits are not durable; the last one is).
const COMMIT_EVERY_BYTES: u64 = 64 * 1024 * 1024;

/// Rows go from the reading thread to the inserting one in batches of about this many bytes.
const BATCH_BYTES: usize = 1024 * 1024;
/// Batches in flight between the two threads (bounds the memory a snapshot takes).
const BATCHES_IN_FLIGHT: usize = 4;

/// What a snapshot holds, table by table: the basis of every later verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDigest {
    /// The table's name in the schema registry.
    pub name: String,
    /// Its rows.
    pub rows: u64,
    /// BLAKE3 (hex) over each row's key and value, each preceded by its length (u64 LE).
    pub blake3: String,
}

/// The digest of a whole snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDigest {
    /// The schema version recorded in the copied `meta` table.
    pub schema_version: u64,
    /// Every table, in registry order (tables absent from the source are absent here).
    pub tables: Vec<TableDigest>,
}

impl SnapshotDigest {
    /// All rows of all tables.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// Why a snapshot or its verification failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The store has a table the schema registry does not list.
    #[error(
        "the store holds a table \"{0}\" that this version does not know; refusing to back up an incomplete copy"
    )]
    UnknownTable(String),
    /// The destination exists already.
    #[error("{0} exists already; a snapshot is always written to a new file")]
    Exists(String),
    /// The copy does not match what was read (or what a manifest says).
    #[error("the copy does not match: {0}")]
    Mismatch(String),
    /// `check_integrity()` found damage.
    #[error("the copy failed redb's integrity check")]
    Integrity,
    /// A database or file error.
    #[error(transparent)]
    Store(#[from] StoreError),
}

macro_rules! snap_err {
    ($e:expr) => {
        $e.map_err(|e| SnapshotError::Store(StoreError::Db(e.into())))
    };
}

/// Hashes rows in the order they are read. Rows are small, and BLAKE3 hashes many 1 KiB
/// chunks at once (SIMD) only when it is given many at once, so rows are gathered into a
/// buffer first: the hash is the same as feeding each row straight in, several times faster.
struct RowHasher {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
    rows: u64,
}

/// The gathering buffer of [`RowHasher`].
const HASH_BUFFER: usize = 64 * 1024;

impl RowHasher {
    fn new() -> RowHasher {
        RowHasher {
            hasher: blake3::Hasher::new(),
            buf: Vec::with_capacity(HASH_BUFFER),
            rows: 0,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > HASH_BUFFER {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
        if bytes.len() >= HASH_BUFFER {
            self.hasher.update(bytes);
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    fn row(&mut self, key: &[u8], value: &[u8]) {
        self.feed(&(key.len() as u64).to_le_bytes());
        self.feed(key);
        self.feed(&(value.len() as u64).to_le_bytes());
        self.feed(value);
        self.rows += 1;
    }

    fn finish(mut self, name: &str) -> TableDigest {
        self.hasher.update(&self.buf);
        TableDigest {
            name: name.to_owned(),
            rows: self.rows,
            blake3: self.hasher.finalize().to_hex().to_string(),
        }
    }
}

/// The destination of a copy: a write transaction that is committed (without fsync) every
/// [`COMMIT_EVERY_BYTES`] and once more, durably, at the end.
struct Sink<'a> {
    db: &'a Database,
    txn: Option<WriteTransaction>,
    pending_bytes: u64,
}

impl<'a> Sink<'a> {
    fn new(db: &'a Database) -> Result<Sink<'a>, SnapshotError> {
        let mut sink = Sink {
            db,
            txn: None,
            pending_bytes: 0,
        };
        sink.begin()?;
        Ok(sink)
    }

    fn begin(&mut self) -> Result<(), SnapshotError> {
        let mut txn = snap_err!(self.db.begin_write())?;
        snap_err!(txn.set_durability(Durability::None))?;
        self.txn = Some(txn);
        self.pending_bytes = 0;
        Ok(())
    }

    fn txn(&self) -> Result<&WriteTransaction, SnapshotError> {
        self.txn
            .as_ref()
            .ok_or_else(|| SnapshotError::Mismatch("no open write transaction".into()))
    }

    fn commit(&mut self, durable: bool) -> Result<(), SnapshotError> {
        if let Some(mut txn) = self.txn.take() {
            if durable {
                snap_err!(txn.set_durability(Durability::Immediate))?;
            }
            snap_err!(txn.commit())?;
        }
        Ok(())
    }
}

/// Expands `$go!(K, V)` with the key and value types of the registry table `$name`; an
/// unknown name is [`SnapshotError::UnknownTable`]. The one list of the registry's types: the
/// reading, inserting and hashing sides all go through it, and a test walks the registry.
macro_rules! by_table_types {
    ($name:expr, $go:ident) => {
        match $name {
            "meta"
            | "submissions"
            | "blobs"
            | "agenda"
            | "alerts"
            | "notices"
            | "notice_bodies"
            | "mirror_cursors"
            | "return_items"
            | "assessments"
            | "submission_statements"
            | "accounts"
            | "corporations"
            | "sessions"
            | "offices"
            | "backup_log"
            | "alert_outbox"
            | "alert_deliveries" => {
                $go!(&str, &[u8])
            }
            "submissions_by_sha256" | "pending_moves" | "return_items_by_office_month" => {
                $go!(&str, &str)
            }
            "notices_by_office_month" | "return_items_pending" | "alert_deliveries_pending" => {
                $go!(&str, ())
            }
            "audit_log" => $go!(u64, &[u8]),
            "submissions_by_office_month" => $go!(&str, (&str, bool)),
            "notice_reads" | "alert_events" => $go!(&str, i64),
            other => Err(SnapshotError::UnknownTable(other.to_owned())),
        }
    };
}

/// What the reading thread sends the inserting one.
enum Piece {
    /// The rows that follow belong to this table (created in the copy even when empty).
    Table(&'static str),
    /// Rows, each as `key length (u64 LE), key, value length (u64 LE), value`: the bytes the
    /// table's hash is taken over.
    Rows(Vec<u8>),
    /// The end of the current table.
    End,
    /// Every table was read: the copy may be committed durably.
    Done,
}

/// The inserting thread stopped (its error is the one to report).
struct Hangup;

fn push_row(batch: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    batch.extend_from_slice(&(key.len() as u64).to_le_bytes());
    batch.extend_from_slice(key);
    batch.extend_from_slice(&(value.len() as u64).to_le_bytes());
    batch.extend_from_slice(value);
}

/// The rows of a batch made by [`push_row`].
fn batch_rows(mut batch: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), SnapshotError>> {
    fn take<'b>(rest: &mut &'b [u8]) -> Option<&'b [u8]> {
        let (len, tail) = rest.split_first_chunk::<8>()?;
        let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
        if tail.len() < len {
            return None;
        }
        let (part, tail) = tail.split_at(len);
        *rest = tail;
        Some(part)
    }
    std::iter::from_fn(move || {
        if batch.is_empty() {
            return None;
        }
        Some(match (take(&mut batch), take(&mut batch)) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => {
                batch = &[];
                Err(SnapshotError::Mismatch(
                    "a batch of rows was cut short".into(),
                ))
            }
        })
    })
}

/// The reading half of a copy: sends one table's rows in batches, hashing them; returns `None`
/// when the source has no such table.
fn read_table<K: Key + 'static, V: Value + 'static>(
    name: &'static str,
    src: &ReadTransaction,
    to: &std::sync::mpsc::SyncSender<Piece>,
    def: TableDefinition<'static, K, V>,
) -> Result<Result<Option<TableDigest>, Hangup>, SnapshotError> {
    let table = match src.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Ok(None)),
        Err(e) => return Err(SnapshotError::Store(StoreError::Db(e.into()))),
    };
    let send = |piece| to.send(piece).map_err(|_| Hangup);
    if let Err(h) = send(Piece::Table(name)) {
        return Ok(Err(h));
    }
    let mut hasher = blake3::Hasher::new();
    let mut rows = 0u64;
    let mut batch = Vec::with_capacity(BATCH_BYTES + HASH_BUFFER);
    for entry in snap_err!(table.iter())? {
        let (k, v) = snap_err!(entry)?;
        push_row(
            &mut batch,
            K::as_bytes(&k.value()).as_ref(),
            V::as_bytes(&v.value()).as_ref(),
        );
        rows += 1;
        if batch.len() >= BATCH_BYTES {
            hasher.update(&batch);
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_BYTES + HASH_BUFFER));
            if let Err(h) = send(Piece::Rows(full)) {
                return Ok(Err(h));
            }
        }
    }
    hasher.update(&batch);
    if !batch.is_empty()
        && let Err(h) = send(Piece::Rows(batch))
    {
        return Ok(Err(h));
    }
    if let Err(h) = send(Piece::End) {
        return Ok(Err(h));
    }
    Ok(Ok(Some(TableDigest {
        name: def.name().to_owned(),
        rows,
        blake3: hasher.finalize().to_hex().to_string(),
    })))
}

/// The inserting half of a copy: one table's batches, until its end.
fn write_table<K: Key + 'static, V: Value + 'static>(
    sink: &mut Sink<'_>,
    from: &std::sync::mpsc::Receiver<Piece>,
    def: TableDefinition<'static, K, V>,
) -> Result<(), SnapshotError> {
    snap_err!(sink.txn()?.open_table(def))?;
    loop {
        match from.recv() {
            Ok(Piece::Rows(batch)) => {
                if sink.pending_bytes >= COMMIT_EVERY_BYTES {
                    sink.commit(false)?;
                    sink.begin()?;
                }
                let mut out = snap_err!(sink.txn()?.open_table(def))?;
                for row in batch_rows(&batch) {
                    let (k, v) = row?;
                    snap_err!(out.insert(K::from_bytes(k), V::from_bytes(v)))?;
                }
                drop(out);
                sink.pending_bytes += batch.len() as u64;
            }
            Ok(Piece::End) => return Ok(()),
            Ok(Piece::Table(_) | Piece::Done) => {
                return Err(SnapshotError::Mismatch(format!(
                    "table {} ended without its end mark",
                    def.name()
                )));
            }
            Err(_) => return Err(reader_stopped()),
        }
    }
}

fn reader_stopped() -> SnapshotError {
    SnapshotError::Mismatch("the reading side of the copy stopped".into())
}

/// The inserting thread: creates `dest`, inserts every table it is sent, and commits durably
/// only when the reader says every table was read.
fn write_copy(dest: &Path, from: std::sync::mpsc::Receiver<Piece>) -> Result<(), SnapshotError> {
    let db = snap_err!(Database::builder().create(dest))?;
    let mut sink = Sink::new(&db)?;
    loop {
        match from.recv() {
            Ok(Piece::Table(name)) => {
                macro_rules! go {
                    ($k:ty, $v:ty) => {{
                        let def: TableDefinition<'static, $k, $v> = TableDefinition::new(name);
                        write_table(&mut sink, &from, def)
                    }};
                }
                by_table_types!(name, go)?;
            }
            Ok(Piece::Done) => break,
            Ok(Piece::Rows(_) | Piece::End) => {
                return Err(SnapshotError::Mismatch(
                    "rows arrived outside a table".into(),
                ));
            }
            Err(_) => return Err(reader_stopped()),
        }
    }
    sink.commit(true)
}

/// Hashes one table of an opened copy.
fn hash_table<K: Key + 'static, V: Value + 'static>(
    src: &ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<Option<TableDigest>, SnapshotError> {
    let table = match src.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(SnapshotError::Store(StoreError::Db(e.into()))),
    };
    let mut hasher = RowHasher::new();
    for entry in snap_err!(table.iter())? {
        let (k, v) = snap_err!(entry)?;
        hasher.row(
            K::as_bytes(&k.value()).as_ref(),
            V::as_bytes(&v.value()).as_ref(),
        );
    }
    Ok(Some(hasher.finish(def.name())))
}

/// What to do with a table: send its rows to the inserting thread, or only hash it.
enum Job<'s> {
    Read(&'s std::sync::mpsc::SyncSender<Piece>),
    Hash,
}

/// Dispatches a registry name to its typed table definition. Every name in [`SCHEMA`] has an
/// arm (tested); an unknown name is an error. `Ok(Err(Hangup))`: the inserting thread stopped.
fn visit(
    name: &'static str,
    src: &ReadTransaction,
    job: &Job<'_>,
) -> Result<Result<Option<TableDigest>, Hangup>, SnapshotError> {
    macro_rules! go {
        ($k:ty, $v:ty) => {{
            let def: TableDefinition<'static, $k, $v> = TableDefinition::new(name);
            match job {
                Job::Read(to) => read_table(name, src, to, def),
                Job::Hash => hash_table(src, def).map(Ok),
            }
        }};
    }
    by_table_types!(name, go)
}

/// Refuses a file holding a table outside the registry (multimap tables included).
fn guard_unknown(txn: &ReadTransaction) -> Result<(), SnapshotError> {
    for t in snap_err!(txn.list_tables())? {
        if !SCHEMA.contains(&t.name()) {
            return Err(SnapshotError::UnknownTable(t.name().to_owned()));
        }
    }
    if let Some(t) = snap_err!(txn.list_multimap_tables())?.next() {
        return Err(SnapshotError::UnknownTable(t.name().to_owned()));
    }
    Ok(())
}

fn digest_of(
    txn: &ReadTransaction,
    tables: Vec<TableDigest>,
) -> Result<SnapshotDigest, SnapshotError> {
    let meta: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
    let schema_version = match txn.open_table(meta) {
        Ok(t) => snap_err!(t.get("schema_version"))?
            .map(|v| parse_version(v.value()))
            .unwrap_or(0),
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(SnapshotError::Store(StoreError::Db(e.into()))),
    };
    Ok(SnapshotDigest {
        schema_version,
        tables,
    })
}

impl Store {
    /// Writes a consistent snapshot of the store into `dest` (which must not exist), verifies it
    /// (reopen, `check_integrity()`, re-hash) and returns its digest. On any error the partial
    /// file is removed.
    pub fn snapshot_to(&self, dest: &Path) -> Result<SnapshotDigest, SnapshotError> {
        if dest.exists() {
            return Err(SnapshotError::Exists(dest.display().to_string()));
        }
        let result = self.snapshot_unchecked(dest).and_then(|digest| {
            let again = verify_file(dest)?;
            if again != digest {
                return Err(SnapshotError::Mismatch(format!(
                    "the reopened copy hashes differently ({} rows read, {} rows in the copy)",
                    digest.rows(),
                    again.rows()
                )));
            }
            Ok(digest)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        result
    }

    fn snapshot_unchecked(&self, dest: &Path) -> Result<SnapshotDigest, SnapshotError> {
        let src = self.read()?;
        guard_unknown(&src)?;
        let (to, from) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT);
        std::thread::scope(|scope| {
            let writer = std::thread::Builder::new()
                .name("snapshot-insert".into())
                .spawn_scoped(scope, move || write_copy(dest, from))
                .map_err(|e| SnapshotError::Store(StoreError::Db(redb::Error::Io(e))))?;
            let read = (|| {
                let mut tables = Vec::new();
                for name in SCHEMA {
                    match visit(name, &src, &Job::Read(&to))? {
                        Ok(Some(d)) => tables.push(d),
                        Ok(None) => {}
                        Err(Hangup) => return Ok(None),
                    }
                }
                Ok(to.send(Piece::Done).ok().map(|()| tables))
            })();
            drop(to);
            let written = writer.join().unwrap_or_else(|_| {
                Err(SnapshotError::Mismatch(
                    "the inserting thread panicked".into(),
                ))
            });
            // The reader's own error first; else the writer's (a hang-up means it has one).
            match (read, written) {
                (Err(e), _) => Err(e),
                (Ok(_), Err(e)) => Err(e),
                (Ok(Some(tables)), Ok(())) => digest_of(&src, tables),
                (Ok(None), Ok(())) => Err(reader_stopped()),
            }
        })
    }
}

/// Opens a snapshot file on its own, runs redb's integrity check and hashes every table: the
/// verification of a copy downloaded from a site. Refuses unknown tables, and a file newer than
/// this version understands.
pub fn verify_file(path: &Path) -> Result<SnapshotDigest, SnapshotError> {
    let mut db = snap_err!(Database::builder().open(path))?;
    if !snap_err!(db.check_integrity())? {
        return Err(SnapshotError::Integrity);
    }
    let txn = snap_err!(db.begin_read())?;
    guard_unknown(&txn)?;
    let mut tables = Vec::new();
    for name in SCHEMA {
        if let Ok(Some(d)) = visit(name, &txn, &Job::Hash)? {
            tables.push(d);
        }
    }
    let digest = digest_of(&txn, tables)?;
    if digest.schema_version > SCHEMA_VERSION {
        return Err(SnapshotError::Store(StoreError::Version {
            found: digest.schema_version,
        }));
    }
    Ok(digest)
}

/// Turns a snapshot into what the previous release (schema 6, before the backup log) wrote: for
/// the test that such a copy restores and is migrated.
#[cfg(test)]
pub(crate) fn make_previous_schema(path: &Path) -> Result<(), SnapshotError> {
    let db = snap_err!(Database::open(path))?;
    let txn = snap_err!(db.begin_write())?;
    let log: TableDefinition<&str, &[u8]> = TableDefinition::new("backup_log");
    snap_err!(txn.delete_table(log))?;
    {
        let meta: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
        let mut t = snap_err!(txn.open_table(meta))?;
        snap_err!(t.insert("schema_version", 6u64.to_le_bytes().as_slice()))?;
    }
    snap_err!(txn.commit())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_gathered_row_hash_equals_feeding_each_row_straight_in() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut gathered = RowHasher::new();
        let mut straight = blake3::Hasher::new();
        // Sizes around the buffer's edges, including values larger than the buffer.
        for len in [
            0,
            1,
            100,
            HASH_BUFFER - 8,
            HASH_BUFFER,
            HASH_BUFFER + 1,
            3 * HASH_BUFFER,
            7,
        ]
        .into_iter()
        .cycle()
        .take(40)
        {
            let key: Vec<u8> = (0..rng.usize(0..40)).map(|_| rng.u8(..)).collect();
            let value: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            gathered.row(&key, &value);
            for part in [
                &(key.len() as u64).to_le_bytes()[..],
                &key,
                &(value.len() as u64).to_le_bytes(),
                &value,
            ] {
                straight.update(part);
            }
        }
        let d = gathered.finish("t");
        assert_eq!(d.rows, 40);
        assert_eq!(d.blake3, straight.finalize().to_hex().to_string());
    }

    #[test]
    fn a_batch_reads_back_row_by_row_and_a_cut_batch_is_an_error() {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = (0..50)
            .map(|i| (format!("k{i}").into_bytes(), vec![i as u8; i * 37]))
            .collect();
        let mut batch = Vec::new();
        let mut hasher = RowHasher::new();
        for (k, v) in &rows {
            push_row(&mut batch, k, v);
            hasher.row(k, v);
        }
        let back: Vec<(Vec<u8>, Vec<u8>)> = batch_rows(&batch)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        assert_eq!(back, rows);
        // The batch is the bytes the hash is taken over.
        assert_eq!(
            blake3::hash(&batch).to_hex().to_string(),
            hasher.finish("t").blake3
        );
        for cut in [1, 8, 9, batch.len() - 1] {
            let results: Vec<_> = batch_rows(&batch[..cut]).collect();
            assert!(
                matches!(results.last(), Some(Err(SnapshotError::Mismatch(_)))),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_copy_that_cannot_be_written_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        for i in 0..2000 {
            store.put_alert(&format!("k{i:05}"), vec![1; 2000]).unwrap();
        }
        // The inserting side fails at once; the reader must stop, not wait for it.
        let dest = dir.path().join("no-such-folder").join("copy.redb");
        match store.snapshot_to(&dest) {
            Err(SnapshotError::Store(StoreError::Db(_))) => {}
            other => panic!("expected the file error, got {other:?}"),
        }
        assert!(!dest.exists());
    }

    #[test]
    fn every_registry_table_has_a_copier() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let txn = store.read().unwrap();
        for name in SCHEMA {
            let r = visit(name, &txn, &Job::Hash);
            assert!(
                !matches!(r, Err(SnapshotError::UnknownTable(_))),
                "{name} has no copier"
            );
        }
        assert!(matches!(
            visit("not_a_table", &txn, &Job::Hash),
            Err(SnapshotError::UnknownTable(_))
        ));
    }

    #[test]
    fn a_table_outside_the_registry_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        drop(Store::open(&path).unwrap());
        {
            let db = Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            let def: TableDefinition<&str, &str> = TableDefinition::new("intruder");
            txn.open_table(def).unwrap().insert("k", "v").unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open_read_only(&path).unwrap();
        let dest = dir.path().join("copy.redb");
        match store.snapshot_to(&dest) {
            Err(SnapshotError::UnknownTable(name)) => assert_eq!(name, "intruder"),
            other => panic!("expected the guard, got {other:?}"),
        }
        assert!(!dest.exists(), "no partial copy is left behind");
        drop(store);
        // The copy of a file is refused on verification as well.
        assert!(matches!(
            verify_file(&path),
            Err(SnapshotError::UnknownTable(_))
        ));
    }

    #[test]
    fn snapshot_matches_and_writers_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        for i in 0..300 {
            store
                .put_alert(&format!("k{i:04}"), vec![i as u8; 5000])
                .unwrap();
        }
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    store
                        .put_backup_log(&format!("run/{i:010}"), vec![7; 100])
                        .unwrap();
                }
            })
        };
        let dest = dir.path().join("copy.redb");
        let digest = store.snapshot_to(&dest).unwrap();
        writer.join().unwrap();
        assert_eq!(verify_file(&dest).unwrap(), digest);
        let alerts = digest.tables.iter().find(|t| t.name == "alerts").unwrap();
        assert_eq!(alerts.rows, 300);
        let log = digest
            .tables
            .iter()
            .find(|t| t.name == "backup_log")
            .unwrap();
        assert!(log.rows <= 300, "a consistent cut of the concurrent writes");
        // Every registry table is in the copy.
        assert_eq!(digest.tables.len(), SCHEMA.len());
        assert_eq!(digest.schema_version, SCHEMA_VERSION);
        // Another snapshot after the writes sees all of them.
        let dest2 = dir.path().join("copy2.redb");
        let d2 = store.snapshot_to(&dest2).unwrap();
        let log2 = d2.tables.iter().find(|t| t.name == "backup_log").unwrap();
        assert_eq!(log2.rows, 300);
        assert!(matches!(
            store.snapshot_to(&dest2),
            Err(SnapshotError::Exists(_))
        ));
    }

    #[test]
    fn one_changed_byte_in_a_copy_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        for i in 0..50 {
            store
                .put_alert(
                    &format!("k{i:04}"),
                    format!("value {i} ").repeat(100).into_bytes(),
                )
                .unwrap();
        }
        let dest = dir.path().join("copy.redb");
        let digest = store.snapshot_to(&dest).unwrap();
        let mut bytes = std::fs::read(&dest).unwrap();
        let needle = b"value 25 value 25";
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap();
        bytes[at + 6] = b'9';
        let bad = dir.path().join("bad.redb");
        std::fs::write(&bad, &bytes).unwrap();
        // Either redb's checksums refuse the page, or the digest shows the change.
        if let Ok(d) = verify_file(&bad) {
            assert_ne!(d, digest, "the digest shows the change");
        }
    }
}
