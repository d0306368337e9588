//! Persistence in `state_dir/sim.redb` (redb 4): offices, submissions (metadata as JSON), claim
//! bodies, the idempotency-key and receipt-ID indexes, the per-key presentation counts, the
//! clock setting, the receipt and notice counters, notices (metadata as JSON) and their bodies,
//! the phase markers, the statements each month-end run reviewed, and the returned/held
//! statements per (office, 被保険者番号, service month, 種別).
//!
//! Invariants: this is the only module that names redb tables. Every change is one write
//! transaction committed with redb's default (immediate, fsync) durability before the caller
//! answers, so a 202 is only ever sent for a submission that survives `kill -9`. An
//! idempotency key maps to at most one submission per user ID: the key lookup and the insert
//! happen in the same write transaction, which redb serialises. A key's presentation count
//! ([`State::present`]) is kept whether or not the key was ever recorded, and a recorded
//! submission's `presented` always equals it. A phase run ([`State::commit_phase`]) writes its
//! notices, its reviewed statements, the return history and its "done" marker in one write
//! transaction that first checks the marker, so a phase runs at most once per month and its
//! notices exist exactly when its marker does. Notice sequence numbers are allocated inside
//! that transaction, so notices become visible in sequence order (a cursor over them is
//! monotonic).

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::clock::ClockSetting;
use crate::reception::{Issue, ReceptionResult};
use crate::review::Reviewed;

const OFFICES: TableDefinition<&str, &str> = TableDefinition::new("offices");
const SUBMISSIONS: TableDefinition<u64, &str> = TableDefinition::new("submissions");
const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("claim_bodies");
const IDEMPOTENCY: TableDefinition<&str, u64> = TableDefinition::new("idempotency_keys");
const RECEIPTS: TableDefinition<&str, u64> = TableDefinition::new("receipt_ids");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// How many requests presented each (user ID, idempotency key), recorded or not.
const PRESENTATIONS: TableDefinition<&str, u64> = TableDefinition::new("presentations");
/// Notice metadata (JSON [`NoticeMeta`]) by notice sequence number.
const NOTICES: TableDefinition<u64, &str> = TableDefinition::new("notices");
/// Notice bytes by notice sequence number.
const NOTICE_BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("notice_bodies");
/// `<phase>:<YYYYMM>` → JSON [`PhaseMarker`]: the phase ran for that processing month.
const PHASES: TableDefinition<&str, &str> = TableDefinition::new("phase_markers");
/// `<YYYYMM>\x1f<office>` → JSON list of the [`Reviewed`] statements of that month-end run.
const REVIEWS: TableDefinition<&str, &str> = TableDefinition::new("month_end_reviews");
/// `<office>\x1f<insured>\x1f<service month>\x1f<種別>` → JSON list of [`ReturnMark`]: the
/// month-end runs that returned or held that statement.
const RETURNED: TableDefinition<&str, &str> = TableDefinition::new("returned_statements");

const META_CLOCK: &str = "clock";
const META_SERVER_NAMES: &str = "server_names";
const COUNTER_RECEIPT: &str = "receipt";
const COUNTER_NOTICE: &str = "notice";

/// A failure of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database error: {0}")]
    Db(#[from] redb::Error),
    #[error("state record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("state is inconsistent: {0}")]
    Inconsistent(String),
}

macro_rules! db_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StateError {
            fn from(e: $t) -> Self {
                StateError::Db(e.into())
            }
        }
    )*};
}
db_error_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A client certificate the simulator issued (its files are `clients/<office_number>.pem` and
/// `.key` in the state directory; paths are derived, not stored, so the directory can move).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    pub fingerprint: String,
}

/// A registered office.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfficeRecord {
    pub office_number: String,
    pub name: String,
    pub user_id: String,
    pub password: String,
    /// Configured fingerprints (lowercase hex).
    pub certificate_fingerprints: Vec<String>,
    /// The certificate the simulator issued for this office, if any.
    pub issued: Option<IssuedCert>,
}

impl OfficeRecord {
    /// Every allowed fingerprint: the configured ones and the issued certificate's.
    pub fn allowed_fingerprints(&self) -> Vec<String> {
        let mut all = self.certificate_fingerprints.clone();
        if let Some(issued) = &self.issued
            && !all.contains(&issued.fingerprint)
        {
            all.push(issued.fingerprint.clone());
        }
        all
    }
}

/// One recorded submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// Arrival order, also the receipt counter value.
    pub seq: u64,
    pub receipt_id: String,
    pub idempotency_key: String,
    pub user_id: String,
    /// Lowercase hex SHA-256 of the body.
    pub sha256: String,
    pub office_number: Option<String>,
    pub file_name: Option<String>,
    pub size: u64,
    pub arrived_at_ms: i64,
    /// 処理対象年月 in force at arrival (`YYYYMM`).
    pub processing_month: String,
    /// 到達 problems; empty means the claim arrived.
    pub arrival_errors: Vec<Issue>,
    /// The 受付 result, decided at arrival and revealed at `reception_due_ms`.
    pub reception: Option<ReceptionResult>,
    pub reception_due_ms: i64,
    pub revealed_at_ms: Option<i64>,
    pub withdrawn_at_ms: Option<i64>,
    /// How many requests presented this idempotency key (see [`State::present`]).
    pub presented: u64,
    pub updated_at_ms: i64,
}

impl Submission {
    pub fn arrival_failed(&self) -> bool {
        !self.arrival_errors.is_empty()
    }

    /// Whether the 受付 result is still hidden.
    pub fn is_pending(&self) -> bool {
        !self.arrival_failed() && self.revealed_at_ms.is_none() && self.withdrawn_at_ms.is_none()
    }

    /// The status shown by `GET /v1/claims/{id}` and `/sim/received`.
    pub fn status(&self) -> &'static str {
        if self.withdrawn_at_ms.is_some() {
            "withdrawn"
        } else if self.arrival_failed() {
            "rejected"
        } else if let (Some(_), Some(r)) = (self.revealed_at_ms, &self.reception) {
            r.status.as_str()
        } else {
            "arrived"
        }
    }

    /// ○ / △ / × once revealed, else `None`.
    pub fn reception_mark(&self) -> Option<&'static str> {
        match (self.revealed_at_ms, &self.reception) {
            (Some(_), Some(r)) => Some(r.status.mark()),
            _ => None,
        }
    }

    /// The errors shown with the status.
    pub fn errors(&self) -> &[Issue] {
        if self.arrival_failed() {
            &self.arrival_errors
        } else {
            match (self.revealed_at_ms, &self.reception) {
                (Some(_), Some(r)) => &r.errors,
                _ => &[],
            }
        }
    }
}

/// A submission about to be recorded (everything but the counter-derived fields).
#[derive(Debug, Clone)]
pub struct NewSubmission {
    /// `YYYYMMDD` of the arrival in JST, used in the receipt ID.
    pub receipt_date: String,
    pub idempotency_key: String,
    pub user_id: String,
    pub sha256: String,
    pub office_number: Option<String>,
    pub file_name: Option<String>,
    pub size: u64,
    pub arrived_at_ms: i64,
    pub processing_month: String,
    pub arrival_errors: Vec<Issue>,
    pub reception: Option<ReceptionResult>,
    pub reception_due_ms: i64,
}

/// The result of [`State::record_submission`].
#[derive(Debug, Clone)]
pub enum Recorded {
    /// A new submission was committed.
    New(Submission),
    /// The key was already recorded (by a concurrent request).
    Existing(Submission),
}

/// The result of [`State::present`].
#[derive(Debug, Clone)]
pub struct Presentation {
    /// How many times the key has now been presented, this time included (1-based).
    pub count: u64,
    /// The submission recorded under the key, if any (its `presented` equals `count`).
    pub existing: Option<Submission>,
}

/// One issued notice (what `GET /v1/notices` lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeMeta {
    pub seq: u64,
    /// `N` + the sequence number, zero-padded to 8 digits.
    pub notice_id: String,
    pub office_number: String,
    pub kind_id: String,
    pub title: String,
    /// `YYYYMM`.
    pub processing_month: String,
    /// RFC 3339 with `+09:00`.
    pub issued_at: String,
    pub media_type: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
}

/// A notice about to be stored (the sequence number and ID are allocated on commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotice {
    pub office_number: String,
    pub kind_id: String,
    pub title: String,
    pub processing_month: String,
    pub issued_at: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// The record that a phase ran for a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseMarker {
    /// RFC 3339 JST time the run is dated (the clock, or the scheduled time).
    pub ran_at: String,
    /// Notice IDs it issued.
    pub notices: Vec<String>,
}

/// One month-end run that returned or held a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnMark {
    /// `YYYYMM` of the run.
    pub processing_month: String,
    pub reason_code: String,
    pub held: bool,
}

/// Everything one phase run stores, committed together with its marker.
#[derive(Debug, Clone, Default)]
pub struct PhaseCommit {
    /// `<phase>:<YYYYMM>`.
    pub marker: String,
    pub ran_at: String,
    pub notices: Vec<NewNotice>,
    /// The month-end run's reviewed statements per office (`YYYYMM`, office, statements).
    pub reviews: Vec<(String, String, Vec<Reviewed>)>,
    /// History entries to append (key as [`crate::review::history_key`]).
    pub returned: Vec<(String, ReturnMark)>,
}

/// The notice ID of a sequence number.
pub fn notice_id(seq: u64) -> String {
    format!("N{seq:08}")
}

/// The sequence number of a notice ID (`N` + digits; the caller compares the stored ID).
pub fn notice_seq(notice_id: &str) -> Option<u64> {
    let digits = notice_id.strip_prefix('N')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The redb-backed store.
#[derive(Debug)]
pub struct State {
    db: Database,
}

fn key_index(user_id: &str, key: &str) -> String {
    format!("{user_id}\u{1f}{key}")
}

fn read_json<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T, StateError> {
    Ok(serde_json::from_str(s)?)
}

impl State {
    /// Opens or creates `path` and makes sure every table exists.
    pub fn open(path: &Path) -> Result<State, StateError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(OFFICES)?;
        tx.open_table(SUBMISSIONS)?;
        tx.open_table(BODIES)?;
        tx.open_table(IDEMPOTENCY)?;
        tx.open_table(RECEIPTS)?;
        tx.open_table(META)?;
        tx.open_table(COUNTERS)?;
        tx.open_table(PRESENTATIONS)?;
        tx.open_table(NOTICES)?;
        tx.open_table(NOTICE_BODIES)?;
        tx.open_table(PHASES)?;
        tx.open_table(REVIEWS)?;
        tx.open_table(RETURNED)?;
        tx.commit()?;
        Ok(State { db })
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(META)?;
        Ok(table.get(key)?.map(|v| v.value().to_owned()))
    }

    fn meta_set(&self, key: &str, value: Option<&str>) -> Result<(), StateError> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(META)?;
            match value {
                Some(v) => {
                    table.insert(key, v)?;
                }
                None => {
                    table.remove(key)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The persisted clock setting (`None` = real time).
    pub fn clock(&self) -> Result<Option<ClockSetting>, StateError> {
        self.meta_get(META_CLOCK)?
            .map(|s| read_json(&s))
            .transpose()
    }

    /// Persists the clock setting (`None` = real time).
    pub fn set_clock(&self, setting: Option<ClockSetting>) -> Result<(), StateError> {
        let json = setting.map(|s| serde_json::to_string(&s)).transpose()?;
        self.meta_set(META_CLOCK, json.as_deref())
    }

    /// The server names the current server certificate was issued for.
    pub fn server_names(&self) -> Result<Option<Vec<String>>, StateError> {
        self.meta_get(META_SERVER_NAMES)?
            .map(|s| read_json(&s))
            .transpose()
    }

    /// Records the server names of a newly issued server certificate.
    pub fn set_server_names(&self, names: &[String]) -> Result<(), StateError> {
        let json = serde_json::to_string(names)?;
        self.meta_set(META_SERVER_NAMES, Some(&json))
    }

    /// Every registered office, ordered by office number.
    pub fn offices(&self) -> Result<Vec<OfficeRecord>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OFFICES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(read_json(v.value())?);
        }
        Ok(out)
    }

    /// Registers or replaces an office.
    pub fn put_office(&self, office: &OfficeRecord) -> Result<(), StateError> {
        let json = serde_json::to_string(office)?;
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(OFFICES)?;
            table.insert(office.office_number.as_str(), json.as_str())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The submission recorded under this user ID and key, if any (read only).
    pub fn find_by_key(&self, user_id: &str, key: &str) -> Result<Option<Submission>, StateError> {
        let tx = self.db.begin_read()?;
        let index = tx.open_table(IDEMPOTENCY)?;
        let Some(seq) = index
            .get(key_index(user_id, key).as_str())?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let subs = tx.open_table(SUBMISSIONS)?;
        subs.get(seq)?.map(|v| read_json(v.value())).transpose()
    }

    /// Counts one more presentation of the key (committed) and returns the new count with the
    /// submission recorded under the key, if any (updated to the same count).
    pub fn present(&self, user_id: &str, key: &str) -> Result<Presentation, StateError> {
        let index_key = key_index(user_id, key);
        let tx = self.db.begin_write()?;
        let presentation = {
            let index = tx.open_table(IDEMPOTENCY)?;
            let mut subs = tx.open_table(SUBMISSIONS)?;
            let mut counts = tx.open_table(PRESENTATIONS)?;
            let seq = index.get(index_key.as_str())?.map(|v| v.value());
            let mut existing = match seq {
                Some(seq) => Some(load_submission(&subs, seq)?),
                None => None,
            };
            // A state directory from before the counts table knows only `presented`.
            let before = counts
                .get(index_key.as_str())?
                .map(|v| v.value())
                .unwrap_or(0)
                .max(existing.as_ref().map_or(0, |s| s.presented));
            let count = before + 1;
            counts.insert(index_key.as_str(), count)?;
            if let (Some(seq), Some(sub)) = (seq, existing.as_mut()) {
                sub.presented = count;
                let json = serde_json::to_string(&*sub)?;
                subs.insert(seq, json.as_str())?;
            }
            Presentation { count, existing }
        };
        tx.commit()?;
        Ok(presentation)
    }

    /// How many times the key has been presented (0 if never).
    #[cfg(test)]
    pub fn presentations(&self, user_id: &str, key: &str) -> Result<u64, StateError> {
        let tx = self.db.begin_read()?;
        let counts = tx.open_table(PRESENTATIONS)?;
        Ok(counts
            .get(key_index(user_id, key).as_str())?
            .map_or(0, |v| v.value()))
    }

    /// Records a new submission and its body, unless its key was taken meanwhile (then returns
    /// the existing one unchanged). Committed before returning. The request's presentation is
    /// expected to have been counted by [`State::present`]; the new submission's `presented` is
    /// the key's count (a key never presented counts as presented once).
    pub fn record_submission(
        &self,
        new: NewSubmission,
        body: &[u8],
    ) -> Result<Recorded, StateError> {
        let tx = self.db.begin_write()?;
        let index_key = key_index(&new.user_id, &new.idempotency_key);
        let recorded = {
            let mut index = tx.open_table(IDEMPOTENCY)?;
            let mut subs = tx.open_table(SUBMISSIONS)?;
            let existing = index.get(index_key.as_str())?.map(|v| v.value());
            if let Some(seq) = existing {
                Recorded::Existing(load_submission(&subs, seq)?)
            } else {
                let mut counts = tx.open_table(PRESENTATIONS)?;
                let presented = counts
                    .get(index_key.as_str())?
                    .map(|v| v.value())
                    .unwrap_or(0)
                    .max(1);
                counts.insert(index_key.as_str(), presented)?;
                let mut counters = tx.open_table(COUNTERS)?;
                let seq = counters
                    .get(COUNTER_RECEIPT)?
                    .map(|v| v.value())
                    .unwrap_or(0)
                    + 1;
                counters.insert(COUNTER_RECEIPT, seq)?;
                let sub = Submission {
                    seq,
                    receipt_id: format!("R{}-{seq:06}", new.receipt_date),
                    idempotency_key: new.idempotency_key,
                    user_id: new.user_id,
                    sha256: new.sha256,
                    office_number: new.office_number,
                    file_name: new.file_name,
                    size: new.size,
                    arrived_at_ms: new.arrived_at_ms,
                    processing_month: new.processing_month,
                    arrival_errors: new.arrival_errors,
                    reception: new.reception,
                    reception_due_ms: new.reception_due_ms,
                    revealed_at_ms: None,
                    withdrawn_at_ms: None,
                    presented,
                    updated_at_ms: new.arrived_at_ms,
                };
                let json = serde_json::to_string(&sub)?;
                subs.insert(seq, json.as_str())?;
                tx.open_table(BODIES)?.insert(seq, body)?;
                tx.open_table(RECEIPTS)?
                    .insert(sub.receipt_id.as_str(), seq)?;
                index.insert(index_key.as_str(), seq)?;
                Recorded::New(sub)
            }
        };
        tx.commit()?;
        Ok(recorded)
    }

    /// The submission with this receipt ID.
    pub fn by_receipt(&self, receipt_id: &str) -> Result<Option<Submission>, StateError> {
        let tx = self.db.begin_read()?;
        let receipts = tx.open_table(RECEIPTS)?;
        let Some(seq) = receipts.get(receipt_id)?.map(|v| v.value()) else {
            return Ok(None);
        };
        let subs = tx.open_table(SUBMISSIONS)?;
        subs.get(seq)?.map(|v| read_json(v.value())).transpose()
    }

    /// Applies `change` to the stored submission `seq` in one write transaction. `change`
    /// returns whether it changed anything; only then is the transaction committed.
    pub fn modify_submission(
        &self,
        seq: u64,
        change: impl FnOnce(&mut Submission) -> bool,
    ) -> Result<Option<Submission>, StateError> {
        let tx = self.db.begin_write()?;
        let (sub, changed) = {
            let mut subs = tx.open_table(SUBMISSIONS)?;
            let current: Option<Submission> =
                subs.get(seq)?.map(|v| read_json(v.value())).transpose()?;
            let Some(mut sub) = current else {
                drop(subs);
                tx.abort()?;
                return Ok(None);
            };
            let changed = change(&mut sub);
            if changed {
                let json = serde_json::to_string(&sub)?;
                subs.insert(seq, json.as_str())?;
            }
            (sub, changed)
        };
        if changed {
            tx.commit()?;
        } else {
            tx.abort()?;
        }
        Ok(Some(sub))
    }

    /// Every submission in arrival order.
    pub fn submissions(&self) -> Result<Vec<Submission>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SUBMISSIONS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(read_json(v.value())?);
        }
        Ok(out)
    }

    /// The stored body of submission `seq`.
    pub fn body(&self, seq: u64) -> Result<Option<Vec<u8>>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BODIES)?;
        Ok(table.get(seq)?.map(|v| v.value().to_vec()))
    }

    /// Every phase marker key (`<phase>:<YYYYMM>`).
    pub fn phase_markers(&self) -> Result<Vec<String>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(PHASES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, _) = entry?;
            out.push(k.value().to_owned());
        }
        Ok(out)
    }

    /// The marker of a phase run, if it ran.
    pub fn phase_marker(&self, marker: &str) -> Result<Option<PhaseMarker>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(PHASES)?;
        table.get(marker)?.map(|v| read_json(v.value())).transpose()
    }

    /// The whole return history: key → the runs that returned or held it.
    pub fn return_history(
        &self,
    ) -> Result<std::collections::HashMap<String, Vec<ReturnMark>>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RETURNED)?;
        let mut out = std::collections::HashMap::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.insert(k.value().to_owned(), read_json(v.value())?);
        }
        Ok(out)
    }

    /// The reviewed statements of the month-end runs, ordered by (month, office); only `month`
    /// (`YYYYMM`) when given.
    pub fn reviews(
        &self,
        month: Option<&str>,
    ) -> Result<Vec<(String, String, Vec<Reviewed>)>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(REVIEWS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let key = k.value();
            let Some((m, office)) = key.split_once('\u{1f}') else {
                return Err(StateError::Inconsistent(format!("bad review key {key:?}")));
            };
            if month.is_some_and(|want| want != m) {
                continue;
            }
            out.push((m.to_owned(), office.to_owned(), read_json(v.value())?));
        }
        Ok(out)
    }

    /// Commits one phase run: unless its marker exists (then nothing is written and `None` is
    /// returned), allocates the notices' sequence numbers and stores them with their bodies,
    /// the reviews, the history entries and the marker, in one write transaction.
    pub fn commit_phase(&self, commit: PhaseCommit) -> Result<Option<Vec<NoticeMeta>>, StateError> {
        let tx = self.db.begin_write()?;
        let issued = {
            let mut phases = tx.open_table(PHASES)?;
            if phases.get(commit.marker.as_str())?.is_some() {
                drop(phases);
                tx.abort()?;
                return Ok(None);
            }
            let mut counters = tx.open_table(COUNTERS)?;
            let mut notices = tx.open_table(NOTICES)?;
            let mut bodies = tx.open_table(NOTICE_BODIES)?;
            let mut next = counters
                .get(COUNTER_NOTICE)?
                .map(|v| v.value())
                .unwrap_or(0);
            let mut issued = Vec::with_capacity(commit.notices.len());
            for n in commit.notices {
                next += 1;
                let meta = NoticeMeta {
                    seq: next,
                    notice_id: notice_id(next),
                    office_number: n.office_number,
                    kind_id: n.kind_id,
                    title: n.title,
                    processing_month: n.processing_month,
                    issued_at: n.issued_at,
                    media_type: n.media_type,
                    size: n.bytes.len() as u64,
                    sha256: hex::encode(sha2::Sha256::digest(&n.bytes)),
                };
                notices.insert(next, serde_json::to_string(&meta)?.as_str())?;
                bodies.insert(next, n.bytes.as_slice())?;
                issued.push(meta);
            }
            counters.insert(COUNTER_NOTICE, next)?;
            let mut reviews = tx.open_table(REVIEWS)?;
            for (month, office, list) in &commit.reviews {
                let key = format!("{month}\u{1f}{office}");
                reviews.insert(key.as_str(), serde_json::to_string(list)?.as_str())?;
            }
            let mut returned = tx.open_table(RETURNED)?;
            for (key, mark) in commit.returned {
                let mut marks: Vec<ReturnMark> = returned
                    .get(key.as_str())?
                    .map(|v| read_json(v.value()))
                    .transpose()?
                    .unwrap_or_default();
                if !marks.contains(&mark) {
                    marks.push(mark);
                }
                returned.insert(key.as_str(), serde_json::to_string(&marks)?.as_str())?;
            }
            let marker = PhaseMarker {
                ran_at: commit.ran_at,
                notices: issued.iter().map(|m| m.notice_id.clone()).collect(),
            };
            phases.insert(
                commit.marker.as_str(),
                serde_json::to_string(&marker)?.as_str(),
            )?;
            issued
        };
        tx.commit()?;
        Ok(Some(issued))
    }

    /// Up to `limit` notices with a sequence number above `after` that `keep` accepts, in
    /// sequence order.
    pub fn notices_after(
        &self,
        after: u64,
        limit: usize,
        keep: impl Fn(&NoticeMeta) -> bool,
    ) -> Result<Vec<NoticeMeta>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(NOTICES)?;
        let mut out = Vec::new();
        if limit == 0 || after == u64::MAX {
            return Ok(out);
        }
        for entry in table.range(after + 1..)? {
            let (_, v) = entry?;
            let meta: NoticeMeta = read_json(v.value())?;
            if keep(&meta) {
                out.push(meta);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// One notice with its bytes.
    pub fn notice(&self, seq: u64) -> Result<Option<(NoticeMeta, Vec<u8>)>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(NOTICES)?;
        let Some(meta) = table.get(seq)?.map(|v| read_json::<NoticeMeta>(v.value())) else {
            return Ok(None);
        };
        let meta = meta?;
        let bodies = tx.open_table(NOTICE_BODIES)?;
        let body = bodies
            .get(seq)?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| {
                StateError::Inconsistent(format!("notice {} has no body", meta.notice_id))
            })?;
        Ok(Some((meta, body)))
    }
}

/// The submission `seq`, which an index points at (so it must exist).
fn load_submission(
    subs: &redb::Table<'_, u64, &'static str>,
    seq: u64,
) -> Result<Submission, StateError> {
    subs.get(seq)?
        .map(|v| read_json(v.value()))
        .transpose()?
        .ok_or_else(|| {
            StateError::Inconsistent(format!("an index points at missing submission {seq}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_submission(key: &str) -> NewSubmission {
        NewSubmission {
            receipt_date: "20250603".into(),
            idempotency_key: key.into(),
            user_id: "KJ00000001".into(),
            sha256: "ab".repeat(32),
            office_number: Some("1379999996".into()),
            file_name: Some("KK250601.CSV".into()),
            size: 3,
            arrived_at_ms: 1_000,
            processing_month: "202506".into(),
            arrival_errors: Vec::new(),
            reception: None,
            reception_due_ms: 3_000,
        }
    }

    #[test]
    fn clock_setting_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.redb");
        let setting = ClockSetting {
            virtual_ms: 1_780_000_000_000,
            set_at_real_ms: 1_700_000_000_000,
        };
        {
            let state = State::open(&path).unwrap();
            assert_eq!(state.clock().unwrap(), None);
            state.set_clock(Some(setting)).unwrap();
        }
        {
            let state = State::open(&path).unwrap();
            assert_eq!(state.clock().unwrap(), Some(setting));
            state.set_clock(None).unwrap();
        }
        assert_eq!(State::open(&path).unwrap().clock().unwrap(), None);
    }

    #[test]
    fn a_key_is_recorded_once_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("sim.redb")).unwrap();
        // Presented twice before it is recorded (e.g. two faulted attempts), then recorded.
        let p = state.present("KJ00000001", "k1").unwrap();
        assert_eq!((p.count, p.existing.is_none()), (1, true));
        assert_eq!(state.present("KJ00000001", "k1").unwrap().count, 2);
        let p = state.present("KJ00000001", "k1").unwrap();
        assert_eq!(p.count, 3);
        let Recorded::New(first) = state
            .record_submission(new_submission("k1"), b"abc")
            .unwrap()
        else {
            panic!("expected a new submission");
        };
        assert_eq!(first.receipt_id, "R20250603-000001");
        assert_eq!(first.presented, 3);
        // A concurrent loser gets the existing one, not counted again.
        let Recorded::Existing(again) = state
            .record_submission(new_submission("k1"), b"abc")
            .unwrap()
        else {
            panic!("expected the existing submission");
        };
        assert_eq!(again.receipt_id, first.receipt_id);
        assert_eq!(again.presented, 3);
        let p = state.present("KJ00000001", "k1").unwrap();
        assert_eq!(p.count, 4);
        assert_eq!(p.existing.unwrap().presented, 4);
        assert_eq!(state.presentations("KJ00000001", "k1").unwrap(), 4);
        // Keys are scoped per user ID.
        let p = state.present("KJ00000002", "k1").unwrap();
        assert_eq!((p.count, p.existing.is_none()), (1, true));
        assert_eq!(state.presentations("KJ00000001", "nope").unwrap(), 0);

        // Recorded without a counted presentation: counts as one.
        let Recorded::New(second) = state.record_submission(new_submission("k2"), b"x").unwrap()
        else {
            panic!("expected a new submission");
        };
        assert_eq!(second.receipt_id, "R20250603-000002");
        assert_eq!(second.presented, 1);
        assert_eq!(state.present("KJ00000001", "k2").unwrap().count, 2);
        let all = state.submissions().unwrap();
        assert_eq!(all.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(state.body(1).unwrap().unwrap(), b"abc");
        assert_eq!(
            state.by_receipt("R20250603-000002").unwrap().unwrap().seq,
            2
        );
        assert!(state.by_receipt("R20250603-000009").unwrap().is_none());
        assert_eq!(
            state
                .find_by_key("KJ00000001", "k1")
                .unwrap()
                .unwrap()
                .presented,
            4
        );
    }

    fn notice(office: &str, kind: &str, bytes: &[u8]) -> NewNotice {
        NewNotice {
            office_number: office.into(),
            kind_id: kind.into(),
            title: "t".into(),
            processing_month: "202506".into(),
            issued_at: "2025-06-30T17:00:00+09:00".into(),
            media_type: "text/plain; charset=Shift_JIS".into(),
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn a_phase_commits_once_with_its_notices() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.redb");
        {
            let state = State::open(&path).unwrap();
            let mark = ReturnMark {
                processing_month: "202506".into(),
                reason_code: "B".into(),
                held: false,
            };
            let commit = PhaseCommit {
                marker: "month_end:202506".into(),
                ran_at: "2025-06-30T17:00:00+09:00".into(),
                notices: vec![
                    notice("1379999996", "7211", b"a"),
                    notice("1379999988", "7211", b"bb"),
                    notice("1379999996", "TXT1", b"ccc"),
                ],
                reviews: vec![("202506".into(), "1379999996".into(), Vec::new())],
                returned: vec![("k".into(), mark.clone()), ("k".into(), mark.clone())],
            };
            let issued = state.commit_phase(commit.clone()).unwrap().unwrap();
            assert_eq!(
                issued
                    .iter()
                    .map(|m| m.notice_id.as_str())
                    .collect::<Vec<_>>(),
                ["N00000001", "N00000002", "N00000003"]
            );
            assert_eq!(issued[1].size, 2);
            assert_eq!(
                issued[0].sha256,
                "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
            );
            // Again: nothing written.
            assert!(state.commit_phase(commit).unwrap().is_none());
            assert_eq!(state.return_history().unwrap()["k"], vec![mark]);
        }
        let state = State::open(&path).unwrap();
        assert_eq!(state.phase_markers().unwrap(), ["month_end:202506"]);
        let marker = state.phase_marker("month_end:202506").unwrap().unwrap();
        assert_eq!(marker.notices.len(), 3);
        let mine = state
            .notices_after(0, 10, |m| m.office_number == "1379999996")
            .unwrap();
        assert_eq!(mine.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(state.notices_after(1, 1, |_| true).unwrap()[0].seq, 2);
        assert!(state.notices_after(3, 10, |_| true).unwrap().is_empty());
        assert!(
            state
                .notices_after(u64::MAX, 10, |_| true)
                .unwrap()
                .is_empty()
        );
        let (meta, body) = state.notice(3).unwrap().unwrap();
        assert_eq!(
            (meta.kind_id.as_str(), body.as_slice()),
            ("TXT1", &b"ccc"[..])
        );
        assert!(state.notice(4).unwrap().is_none());
        assert_eq!(state.reviews(Some("202506")).unwrap().len(), 1);
        assert!(state.reviews(Some("202507")).unwrap().is_empty());
        // The counter continues.
        let next = state
            .commit_phase(PhaseCommit {
                marker: "payment:202506".into(),
                notices: vec![notice("1379999996", "7513", b"d")],
                ..PhaseCommit::default()
            })
            .unwrap()
            .unwrap();
        assert_eq!(next[0].notice_id, "N00000004");
        assert_eq!(notice_seq("N00000004"), Some(4));
        assert_eq!(notice_seq("N4"), Some(4));
        assert_eq!(notice_seq("N"), None);
        assert_eq!(notice_seq("X1"), None);
        assert_eq!(notice_seq("N-1"), None);
    }

    #[test]
    fn modify_commits_only_changes() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("sim.redb")).unwrap();
        state.record_submission(new_submission("k"), b"a").unwrap();
        let s = state
            .modify_submission(1, |s| {
                s.withdrawn_at_ms = Some(5);
                true
            })
            .unwrap()
            .unwrap();
        assert_eq!(s.status(), "withdrawn");
        state
            .modify_submission(1, |s| {
                s.withdrawn_at_ms = None;
                false
            })
            .unwrap();
        assert_eq!(
            state.by_receipt(&s.receipt_id).unwrap().unwrap().status(),
            "withdrawn"
        );
        assert!(state.modify_submission(7, |_| true).unwrap().is_none());
    }
}
