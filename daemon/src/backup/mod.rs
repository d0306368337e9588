//! Backups: snapshot → verify → fan out to every site → retention, plus restore drills and
//! restore itself.
//!
//! A run takes a snapshot of the store (see `store::snapshot`: one read transaction copied table
//! by table into a fresh redb file, hashed, reopened, `check_integrity()`, re-hashed), encrypts
//! it once if any site wants encrypted copies, then writes it to each site independently:
//! the object first (`copies/<seq>/store.redb` or `….redb.enc`), read back and compared by size
//! and SHA-256, and only then the manifest (`copies/<seq>/manifest.json`: versions, sequence,
//! hashes, key ID), which is read back too. A copy without a manifest is not a copy.
//! Each site then applies its own retention; the newest verified copy is never deleted.
//! The outcome of every run and drill is recorded in the store's backup log.
//!
//! Invariants kept here:
//! - **Backups never copy the live file**, and a site's copy counts once read back and checked
//!   (its manifest is written last).
//! - Sites are independent: one failing site does not stop the others, and each is reported.
//! - A restore never trusts a copy before it was downloaded, its size and SHA-256 matched the
//!   manifest, it decrypted (when encrypted), opened, passed `check_integrity()` and hashed to
//!   the manifest's table digests; a copy that fails is skipped for the next site's. The live
//!   file is kept aside, never deleted.

pub mod command;
pub mod crypt;
pub mod site;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use admin_ui::help::{Code, code};

use crate::config::{BackupSettings, Retention};
use crate::store::{SnapshotDigest, Store, TableDigest};
pub use crypt::BackupKey;
pub use site::Site;

/// The name of the encryption scheme in manifests.
pub const ENCRYPTION: &str = "XChaCha20-Poly1305-STREAM-BE32-1MiB";
const COPIES: &str = "copies";
const MANIFEST: &str = "manifest.json";

/// Why a backup step failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// No site is configured.
    #[error(
        "バックアップの保存先が設定されていません ([[backup.sites]] がありません) (no backup site is configured)"
    )]
    NoSites,
    /// The snapshot failed.
    #[error("スナップショットを作れませんでした (snapshot failed): {0}")]
    Snapshot(#[from] crate::store::SnapshotError),
    /// A site failed.
    #[error("保存先 {site}: {source}")]
    Site {
        site: String,
        #[source]
        source: site::SiteError,
    },
    /// Encryption or the key.
    #[error(transparent)]
    Crypt(#[from] crypt::CryptError),
    /// A copy does not match its manifest.
    #[error("保存先 {site} のコピー {seq} が正しくありません (copy does not verify): {reason}")]
    Verify {
        site: String,
        seq: u64,
        reason: String,
    },
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A file in the work folder.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// No copy could be found or verified.
    #[error("{0}")]
    NothingToRestore(String),
    /// No site of this name is configured.
    #[error("保存先「{0}」は設定にありません (no such site)")]
    NoSuchSite(String),
    /// A restore chosen in the admin UI was not put in place at the restart.
    #[error(
        "予約された復元を行えませんでした。今までのデータのまま起動します (the staged restore was not applied): {0}"
    )]
    StagedRestoreFailed(String),
}

impl BackupError {
    /// Its entry in the message catalogue, as a failure of a backup run.
    pub fn code(&self) -> Code {
        match self {
            BackupError::NoSites => code::BACKUP_NO_SITES,
            BackupError::Snapshot(_) => code::BACKUP_SNAPSHOT,
            BackupError::Site { source, .. } => source.code(),
            BackupError::Crypt(c) => match c {
                crypt::CryptError::Io { .. } => code::BACKUP_WORK_FOLDER,
                crypt::CryptError::BadKey(_) => code::BACKUP_KEY_BAD,
                crypt::CryptError::WrongKey { .. } => code::BACKUP_KEY_WRONG,
                crypt::CryptError::Damaged => code::BACKUP_COPY_DAMAGED,
                crypt::CryptError::NoKey { .. } => code::BACKUP_KEY_MISSING,
            },
            BackupError::Verify { .. } => code::BACKUP_VERIFY,
            BackupError::Store(_) => code::SYSTEM_STORE_FAILED,
            BackupError::Io { .. } => code::BACKUP_WORK_FOLDER,
            BackupError::NothingToRestore(_) => code::BACKUP_NOTHING_TO_RESTORE,
            BackupError::NoSuchSite(_) => code::BACKUP_NO_SUCH_SITE,
            BackupError::StagedRestoreFailed(_) => code::BACKUP_STAGED_RESTORE_FAILED,
        }
    }

    /// Its entry as a failure to read a copy back (a drill, a restore): a site or file
    /// fault is `fallback`'s; a key, a damaged or unverifiable copy keeps its own entry.
    pub fn reading_code(&self, fallback: Code) -> Code {
        match self {
            BackupError::Site { .. } | BackupError::Io { .. } | BackupError::Store(_) => fallback,
            other => other.code(),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Encryption of one copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// [`ENCRYPTION`].
    pub algorithm: String,
    /// The ID of the key it needs.
    pub key_id: String,
}

/// What a site holds about one copy; written last, after the object was read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format (1).
    pub format: u32,
    /// The copy's sequence number (grows by one per run, over all sites).
    pub seq: u64,
    /// When the snapshot was taken.
    pub created_at: Timestamp,
    /// The kaigo-relay version that wrote it.
    pub kaigo_relay_version: String,
    /// The store's schema version inside.
    pub schema_version: u64,
    /// The site it was written to.
    pub site: String,
    /// The object's file name inside the copy's folder.
    pub object: String,
    /// The object's size as stored.
    pub size: u64,
    /// The object's SHA-256 as stored (hex).
    pub sha256: String,
    /// The snapshot's size before encryption.
    pub snapshot_size: u64,
    /// Encryption, when the copy is encrypted.
    pub encryption: Option<Encryption>,
    /// Every table's row count and BLAKE3.
    pub tables: Vec<TableDigest>,
}

impl Manifest {
    fn key(seq: u64) -> String {
        format!("{COPIES}/{seq:010}/{MANIFEST}")
    }

    fn object_key(&self) -> String {
        format!("{COPIES}/{:010}/{}", self.seq, self.object)
    }

    /// All rows.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// One site's part of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteOutcome {
    /// The site.
    pub site: String,
    /// Whether its copy was written and read back.
    pub ok: bool,
    /// Bytes stored.
    pub size: u64,
    /// Milliseconds the upload and its read-back took.
    pub upload_ms: u64,
    /// Copies deleted by retention.
    #[serde(default)]
    pub pruned: Vec<u64>,
    /// What went wrong (Japanese, then the detail).
    pub error: Option<String>,
    /// Its entry in the message catalogue (absent in records of older versions).
    #[serde(default)]
    pub error_code: Option<String>,
}

/// One backup run, as recorded in the backup log (`run/<seq>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The copy's sequence number.
    pub seq: u64,
    /// Why it ran (`schedule`, `accounts`, `manual`, `command`).
    pub reason: String,
    /// Start.
    pub started_at: Timestamp,
    /// End.
    pub finished_at: Timestamp,
    /// Snapshot size.
    pub snapshot_size: u64,
    /// Rows in it.
    pub rows: u64,
    /// Milliseconds the snapshot and its verification took.
    pub snapshot_ms: u64,
    /// Milliseconds encryption took (0 when no site encrypts).
    pub encrypt_ms: u64,
    /// Each site.
    pub sites: Vec<SiteOutcome>,
    /// A failure before any site was written.
    pub error: Option<String>,
    /// Its entry in the message catalogue (absent in records of older versions).
    #[serde(default)]
    pub error_code: Option<String>,
}

impl RunRecord {
    /// Whether every site got its copy.
    pub fn all_ok(&self) -> bool {
        self.error.is_none() && self.sites.iter().all(|s| s.ok)
    }
}

/// One restore drill, as recorded in the backup log (`drill/<time>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// The site drilled.
    pub site: String,
    /// The copy tried (0 when none was found).
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// Whether it downloaded, decrypted, opened, checked and hashed right.
    pub ok: bool,
    /// Milliseconds it took.
    pub ms: u64,
    /// What went wrong.
    pub error: Option<String>,
    /// Its entry in the message catalogue (absent in records of older versions).
    #[serde(default)]
    pub error_code: Option<String>,
}

/// A copy on a site, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyInfo {
    /// Sequence number.
    pub seq: u64,
    /// Its manifest, when it is complete.
    pub manifest: Option<Manifest>,
}

/// The copy to use from a site's listing (oldest first): copy `seq` when asked for, else the
/// newest; only complete copies (with their manifest) count.
pub fn chosen_copy(copies: &[CopyInfo], seq: Option<u64>) -> Option<u64> {
    copies
        .iter()
        .rev()
        .filter(|c| c.manifest.is_some())
        .find(|c| seq.is_none_or(|n| n == c.seq))
        .map(|c| c.seq)
}

/// A copy that was downloaded and verified: a plain redb file ready to be put in place.
#[derive(Debug)]
pub struct VerifiedCopy {
    /// The site it came from.
    pub site: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// The verified snapshot (in the work folder).
    pub path: PathBuf,
}

/// Backups of one store to the configured sites.
#[derive(Debug, Clone)]
pub struct Backups {
    store: Store,
    settings: BackupSettings,
    sites: Vec<Site>,
    key: Option<BackupKey>,
}

impl Backups {
    /// Prepares the sites and loads the key (making it at set-up, when a site encrypts and there
    /// is none yet; the administrator is then asked to export it).
    pub fn new(store: Store, settings: BackupSettings) -> Result<Backups, BackupError> {
        let (sites, key) = open_sites(&settings, true)?;
        Ok(Backups {
            store,
            settings,
            sites,
            key,
        })
    }

    /// The sites.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// The key's ID, when a site encrypts.
    pub fn key(&self) -> Option<&BackupKey> {
        self.key.as_ref()
    }

    /// The settings.
    pub fn settings(&self) -> &BackupSettings {
        &self.settings
    }

    /// Runs one backup to every site and records it.
    pub async fn run(&self, reason: &str) -> Result<RunRecord, BackupError> {
        if self.sites.is_empty() {
            return Err(BackupError::NoSites);
        }
        let started_at = Timestamp::now();
        let mut seq = self.last_seq()? + 1;
        let listings = futures::future::join_all(self.sites.iter().map(list)).await;
        for l in listings.iter().flatten() {
            if let Some(max) = l.iter().map(|c| c.seq).max() {
                seq = seq.max(max + 1);
            }
        }
        let span = tracing::info_span!("backup", seq, reason);
        let _enter = span.enter();
        let record = match self.run_seq(seq, reason, started_at).await {
            Ok(r) => r,
            Err(e) => {
                error!(
                    code = %e.code(),
                    error = format!("{e:#}"),
                    "どの保存先にも書き込む前に、バックアップが失敗しました (backup failed before any site was written)"
                );
                failed_record(seq, reason, started_at, &e)
            }
        };
        let bytes =
            serde_json::to_vec(&record).map_err(|source| crate::store::StoreError::Record {
                id: format!("run/{seq}"),
                source,
            })?;
        self.store
            .put_backup_log(&format!("run/{seq:010}"), bytes)?;
        Ok(record)
    }

    fn last_seq(&self) -> Result<u64, BackupError> {
        Ok(self
            .store
            .backup_log("run/", 1)?
            .first()
            .and_then(|(k, _)| k.strip_prefix("run/")?.parse().ok())
            .unwrap_or(0))
    }

    async fn run_seq(
        &self,
        seq: u64,
        reason: &str,
        started_at: Timestamp,
    ) -> Result<RunRecord, BackupError> {
        let work = &self.settings.work_dir;
        std::fs::create_dir_all(work).map_err(io_err(work))?;
        clean_work_dir(work);
        let plain = work.join(format!("snapshot-{seq:010}.redb"));
        let t = Instant::now();
        let (store, dest) = (self.store.clone(), plain.clone());
        let digest: SnapshotDigest = tokio::task::spawn_blocking(move || store.snapshot_to(&dest))
            .await
            .map_err(|e| BackupError::NothingToRestore(format!("snapshot task: {e}")))??;
        let snapshot_ms = t.elapsed().as_millis() as u64;
        let snapshot_size = std::fs::metadata(&plain).map_err(io_err(&plain))?.len();
        info!(
            rows = digest.rows(),
            bytes = snapshot_size,
            ms = snapshot_ms,
            "snapshot verified"
        );
        crate::failpoint::hit("backup.after_snapshot");
        let t = Instant::now();
        let enc = work.join(format!("snapshot-{seq:010}.redb.enc"));
        let encrypted = match &self.key {
            Some(key) if self.sites.iter().any(|s| s.settings.encrypt) => {
                let (key, src, dest) = (key.clone(), plain.clone(), enc.clone());
                tokio::task::spawn_blocking(move || crypt::encrypt_file(&key, &src, &dest))
                    .await
                    .map_err(|e| BackupError::NothingToRestore(format!("encrypt task: {e}")))??;
                true
            }
            _ => false,
        };
        let encrypt_ms = if encrypted {
            t.elapsed().as_millis() as u64
        } else {
            0
        };
        let outcomes = futures::future::join_all(self.sites.iter().map(|site| {
            let (object, local, encryption) = if site.settings.encrypt {
                (
                    "store.redb.enc",
                    enc.as_path(),
                    self.key.as_ref().map(|k| Encryption {
                        algorithm: ENCRYPTION.into(),
                        key_id: k.id(),
                    }),
                )
            } else {
                ("store.redb", plain.as_path(), None)
            };
            let manifest = Manifest {
                format: 1,
                seq,
                created_at: started_at,
                kaigo_relay_version: env!("CARGO_PKG_VERSION").into(),
                schema_version: digest.schema_version,
                site: site.name().to_owned(),
                object: object.into(),
                size: 0,
                sha256: String::new(),
                snapshot_size,
                encryption,
                tables: digest.tables.clone(),
            };
            self.write_site(site, manifest, local)
        }))
        .await;
        let _ = std::fs::remove_file(&plain);
        let _ = std::fs::remove_file(&enc);
        Ok(RunRecord {
            seq,
            reason: reason.to_owned(),
            started_at,
            finished_at: Timestamp::now(),
            snapshot_size,
            rows: digest.rows(),
            snapshot_ms,
            encrypt_ms,
            sites: outcomes,
            error: None,
            error_code: None,
        })
    }

    async fn write_site(&self, site: &Site, mut manifest: Manifest, local: &Path) -> SiteOutcome {
        let t = Instant::now();
        let result: Result<u64, site::SiteError> = async {
            if manifest.encryption.is_none() && site.settings.encrypt {
                return Err(site::SiteError::NoKey);
            }
            let fp = site.put_file(&manifest.object_key(), local).await?;
            crate::failpoint::hit("backup.after_object");
            manifest.size = fp.size;
            manifest.sha256 = fp.sha256;
            let bytes = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| site::SiteError::Settings(e.to_string()))?;
            site.put_bytes(&Manifest::key(manifest.seq), bytes).await?;
            Ok(fp.size)
        }
        .await;
        let upload_ms = t.elapsed().as_millis() as u64;
        match result {
            Ok(size) => {
                info!(
                    site = site.name(),
                    bytes = size,
                    ms = upload_ms,
                    "copy written and read back"
                );
                let pruned = match self.prune(site, manifest.seq).await {
                    Ok(p) => p,
                    Err(e) => {
                        warn!(
                            code = %code::BACKUP_RETENTION_FAILED,
                            site = site.name(),
                            error = format!("{e:#}"),
                            "保存先の古いバックアップを整理できませんでした (retention failed)"
                        );
                        Vec::new()
                    }
                };
                SiteOutcome {
                    site: site.name().to_owned(),
                    ok: true,
                    size,
                    upload_ms,
                    pruned,
                    error: None,
                    error_code: None,
                }
            }
            Err(e) => {
                error!(
                    code = %e.code(),
                    site = site.name(),
                    error = format!("{e:#}"),
                    "バックアップの保存先に書けませんでした (backup copy failed)"
                );
                SiteOutcome {
                    site: site.name().to_owned(),
                    ok: false,
                    size: 0,
                    upload_ms,
                    pruned: Vec::new(),
                    error: Some(format!(
                        "保存先「{}」に書けませんでした (could not write to the site): {e}",
                        site.name()
                    )),
                    error_code: Some(e.code().as_str().into()),
                }
            }
        }
    }

    /// Applies a site's retention after copy `newest` was written: keeps the newest copy of each
    /// of the last N hours, days, weeks and months, and always the newest complete copy; removes
    /// leftovers of interrupted runs (no manifest, older than `newest`).
    async fn prune(&self, site: &Site, newest: u64) -> Result<Vec<u64>, BackupError> {
        let copies = list(site).await?;
        let keep = retained(&copies, site.settings.retention);
        let mut pruned = Vec::new();
        for c in &copies {
            let drop = match &c.manifest {
                Some(_) => !keep.contains(&c.seq),
                None => c.seq < newest,
            };
            if drop {
                let keys: Vec<String> = site
                    .list(&format!("{COPIES}/{:010}", c.seq))
                    .await
                    .map_err(|source| BackupError::Site {
                        site: site.name().to_owned(),
                        source,
                    })?;
                // The manifest goes first, so that a copy half-deleted is not a copy.
                let (manifests, objects): (Vec<String>, Vec<String>) =
                    keys.into_iter().partition(|k| k.ends_with(MANIFEST));
                for part in [manifests, objects] {
                    site.delete(&part)
                        .await
                        .map_err(|source| BackupError::Site {
                            site: site.name().to_owned(),
                            source,
                        })?;
                }
                pruned.push(c.seq);
            }
        }
        if !pruned.is_empty() {
            info!(
                site = site.name(),
                ?pruned,
                "old copies removed by retention"
            );
        }
        Ok(pruned)
    }

    /// The newest recorded runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, BackupError> {
        Ok(self
            .store
            .backup_log("run/", limit)?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }

    /// The newest recorded drills, newest first.
    pub fn drills(&self, limit: usize) -> Result<Vec<DrillRecord>, BackupError> {
        Ok(self
            .store
            .backup_log("drill/", limit)?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }

    /// Runs a restore drill on the site whose last drill is oldest (never drilled first):
    /// download, decrypt, verify, open, `check_integrity()`, compare hashes; records the result.
    pub async fn drill(&self) -> Result<DrillRecord, BackupError> {
        if self.sites.is_empty() {
            return Err(BackupError::NoSites);
        }
        let drills = self.drills(1000)?;
        let site = self
            .sites
            .iter()
            .min_by_key(|s| {
                drills
                    .iter()
                    .find(|d| d.site == s.name())
                    .map(|d| d.at)
                    .unwrap_or(Timestamp::MIN)
            })
            .ok_or(BackupError::NoSites)?;
        self.drill_site(site).await
    }

    /// A restore drill of one site's newest complete copy.
    pub async fn drill_site(&self, site: &Site) -> Result<DrillRecord, BackupError> {
        let at = Timestamp::now();
        let t = Instant::now();
        let work = self.settings.work_dir.join("drill");
        let result = async {
            let copies = list(site).await?;
            let newest = copies
                .iter()
                .rev()
                .find(|c| c.manifest.is_some())
                .map(|c| c.seq)
                .ok_or_else(|| {
                    BackupError::NothingToRestore(format!(
                        "保存先「{}」に完全なコピーがありません (no complete copy)",
                        site.name()
                    ))
                })?;
            let copy = fetch_verified(site, newest, self.key.as_ref(), &work, &|_, _| {}).await?;
            let _ = std::fs::remove_file(&copy.path);
            Ok::<u64, BackupError>(newest)
        }
        .await;
        let _ = std::fs::remove_dir_all(&work);
        let record = DrillRecord {
            site: site.name().to_owned(),
            seq: *result.as_ref().unwrap_or(&0),
            at,
            ok: result.is_ok(),
            ms: t.elapsed().as_millis() as u64,
            error: result.as_ref().err().map(|e| e.to_string()),
            error_code: result
                .as_ref()
                .err()
                .map(|e| e.reading_code(code::BACKUP_DRILL_FAILED).as_str().into()),
        };
        match &result {
            Ok(seq) => info!(
                site = site.name(),
                seq,
                ms = record.ms,
                "restore drill passed"
            ),
            Err(e) => error!(
                code = %e.reading_code(code::BACKUP_DRILL_FAILED),
                site = site.name(),
                error = format!("{e:#}"),
                "復元テストに失敗しました (restore drill failed)"
            ),
        }
        let bytes =
            serde_json::to_vec(&record).map_err(|source| crate::store::StoreError::Record {
                id: "drill".into(),
                source,
            })?;
        self.store
            .put_backup_log(&format!("drill/{}", at.as_millisecond()), bytes)?;
        Ok(record)
    }

    /// Raises or resolves the per-site alerts: the newest verified copy, or the last good
    /// drill, older than configured.
    pub fn check_alerts(&self, now: Timestamp) -> Result<(), BackupError> {
        if let Some(key) = &self.key {
            let k = "backup_key_not_exported";
            if key_confirmed(&self.settings, &key.id()) {
                crate::alerts::resolve(&self.store, k)?;
            } else {
                let mut a = alert(
                    k,
                    k,
                    now,
                    format!(
                        "バックアップの暗号化の鍵（鍵ID {}）が書き出されていません。管理画面の「バックアップ」で鍵を書き出して装置とは別の場所に保管し、保管したことを記録してください。鍵がないと暗号化したコピーは戻せません。",
                        key.id()
                    ),
                    format!(
                        "The backup encryption key (ID {}) has not been exported. Export it on the Backups page, keep it away from the appliance and record that; encrypted copies cannot be restored without it.",
                        key.id()
                    ),
                );
                a.severity = "warning".into();
                crate::alerts::raise(&self.store, a)?;
            }
        }
        let runs = self.runs(2000)?;
        let drills = self.drills(2000)?;
        for site in &self.sites {
            let last_copy = runs
                .iter()
                .filter(|r| r.sites.iter().any(|s| s.site == site.name() && s.ok))
                .map(|r| r.started_at)
                .max();
            let last_drill = drills
                .iter()
                .filter(|d| d.site == site.name() && d.ok)
                .map(|d| d.at)
                .max();
            // A site not drilled yet is late only once its first copy is as old as a drill may
            // be: the drills take the sites in turn, so a new site waits for its turn.
            let first_copy = runs
                .iter()
                .filter(|r| r.sites.iter().any(|s| s.site == site.name() && s.ok))
                .map(|r| r.started_at)
                .min();
            let copy_key = format!("backup_stale/{}", site.name());
            let stale = |t: Option<Timestamp>, max: Duration| {
                t.is_none_or(|t| now.duration_since(t).unsigned_abs() > max)
            };
            // "When", in each language's text.
            let since = |t: Option<Timestamp>| match t {
                Some(t) => (
                    crate::timefmt::jst_minutes(t),
                    format!("{} JST", crate::timefmt::jst_seconds(t)),
                ),
                None => ("一度もありません".to_owned(), "never".to_owned()),
            };
            if stale(last_copy, self.settings.max_copy_age) {
                let (since_ja, since_en) = since(last_copy);
                crate::alerts::raise(
                    &self.store,
                    alert(
                        &copy_key,
                        "backup_stale",
                        now,
                        format!(
                            "保存先「{}」に新しいバックアップが作られていません。最後に確認できたコピー: {since_ja}。保存先がつながっているか確認し、管理画面の「バックアップ」から今すぐ実行してください。",
                            site.name()
                        ),
                        format!(
                            "No recent verified backup at site \"{}\" (last verified copy: {since_en}). Check that the site is reachable and run a backup from the Backups page.",
                            site.name()
                        ),
                    ),
                )?;
            } else {
                crate::alerts::resolve(&self.store, &copy_key)?;
            }
            let drill_key = format!("backup_drill_stale/{}", site.name());
            if self.settings.drill_interval > Duration::ZERO
                && stale(last_drill.or(first_copy), self.settings.max_drill_age)
                && last_copy.is_some()
            {
                let (since_ja, since_en) = since(last_drill);
                crate::alerts::raise(
                    &self.store,
                    alert(
                        &drill_key,
                        "backup_drill_stale",
                        now,
                        format!(
                            "保存先「{}」の復元テストが成功していません（最後の成功: {since_ja}）。管理画面の「バックアップ」で結果を確認してください。",
                            site.name()
                        ),
                        format!(
                            "No successful restore drill for site \"{}\" (last good drill: {since_en}). See the Backups page.",
                            site.name()
                        ),
                    ),
                )?;
            } else {
                crate::alerts::resolve(&self.store, &drill_key)?;
            }
        }
        Ok(())
    }

    /// Runs the schedule until `shutdown`: a backup every `interval` (the first soon after
    /// start when the last is older), one a minute after accounts or offices change (seen in the
    /// audit log, whoever changed them), on `run_now` (the UI) and on a command's request, and a
    /// drill every `drill_interval`; the alerts are checked after each.
    pub async fn run_schedule(
        self,
        state_dir: PathBuf,
        run_now: std::sync::Arc<tokio::sync::Notify>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        if self.sites.is_empty() {
            shutdown.cancelled().await;
            return Ok(());
        }
        let now = Timestamp::now();
        let since = |t: Option<Timestamp>| {
            t.map(|t| now.duration_since(t).unsigned_abs())
                .unwrap_or(Duration::MAX)
        };
        let last_run = self.runs(1)?.first().map(|r| r.started_at);
        let last_drill = self.drills(1)?.first().map(|d| d.at);
        let first_run = self.settings.interval.saturating_sub(since(last_run));
        let first_drill = self
            .settings
            .drill_interval
            .saturating_sub(since(last_drill));
        let start = tokio::time::Instant::now();
        let mut next_run = start + first_run.max(Duration::from_secs(5));
        let mut next_drill = start + first_drill.max(Duration::from_secs(60));
        let mut seen_audit = self.store.audit_log(1)?.first().map_or(0, |e| e.seq);
        let mut account_change_at: Option<tokio::time::Instant> = None;
        if let Err(e) = self.check_alerts(now) {
            warn!(
                error = format!("{e:#}"),
                "バックアップの通知を確認できませんでした (backup alerts could not be checked)"
            );
        }
        loop {
            let wake = account_change_at.map_or(next_run, |t| t.min(next_run));
            let reason = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(wake) => {
                    if account_change_at.is_some_and(|t| t <= next_run) { "accounts" } else { "schedule" }
                }
                _ = run_now.notified() => "manual",
                _ = tokio::time::sleep_until(next_drill), if self.settings.drill_interval > Duration::ZERO => {
                    if let Err(e) = self.drill().await {
                        warn!(error = format!("{e:#}"), "復元テストを実行できませんでした (restore drill could not run)");
                    }
                    next_drill = tokio::time::Instant::now() + self.settings.drill_interval;
                    if let Err(e) = self.check_alerts(Timestamp::now()) {
                        warn!(error = format!("{e:#}"), "バックアップの通知を確認できませんでした (backup alerts could not be checked)");
                    }
                    continue;
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if command::take_request(&state_dir) {
                        "command"
                    } else {
                        if self.settings.after_account_change
                            && account_change_at.is_none()
                            && self.accounts_changed(&mut seen_audit)
                        {
                            // Several changes in a row make one backup, a minute after the first.
                            account_change_at = Some(tokio::time::Instant::now() + Duration::from_secs(60));
                        }
                        continue;
                    }
                }
            };
            account_change_at = None;
            if let Ok(entries) = self.store.audit_log(1) {
                seen_audit = entries.first().map_or(seen_audit, |e| e.seq);
            }
            let record = match self.run(reason).await {
                Ok(r) => r,
                Err(e) => failed_record(0, reason, Timestamp::now(), &e),
            };
            if !record.all_ok() {
                warn!(
                    seq = record.seq,
                    "バックアップは終わりましたが、書けなかった保存先があります (backup finished with failures)"
                );
            }
            if reason == "command" {
                command::answer(&state_dir, &record);
            }
            next_run = tokio::time::Instant::now() + self.settings.interval;
            if let Err(e) = self.check_alerts(Timestamp::now()) {
                warn!(
                    error = format!("{e:#}"),
                    "バックアップの通知を確認できませんでした (backup alerts could not be checked)"
                );
            }
        }
    }

    /// Whether the audit log has an account or office change after `seen` (logins and
    /// withdrawals are not changes); moves `seen` on.
    fn accounts_changed(&self, seen: &mut u64) -> bool {
        let Ok(entries) = self.store.audit_log(50) else {
            return false;
        };
        let changed = entries.iter().any(|e| {
            e.seq > *seen
                && !matches!(
                    e.action.as_str(),
                    "login"
                        | "login_failed"
                        | "lockout"
                        | "logout"
                        | "withdraw"
                        | "withdrawn"
                        | "withdraw_refused"
                )
        });
        if let Some(first) = entries.first() {
            *seen = (*seen).max(first.seq);
        }
        changed
    }
}

fn failed_record(seq: u64, reason: &str, started_at: Timestamp, e: &BackupError) -> RunRecord {
    RunRecord {
        seq,
        reason: reason.to_owned(),
        started_at,
        finished_at: Timestamp::now(),
        snapshot_size: 0,
        rows: 0,
        snapshot_ms: 0,
        encrypt_ms: 0,
        sites: Vec::new(),
        error: Some(e.to_string()),
        error_code: Some(e.code().as_str().into()),
    }
}

fn alert(key: &str, kind: &str, now: Timestamp, ja: String, en: String) -> crate::alerts::Alert {
    crate::alerts::Alert {
        key: key.into(),
        kind: kind.into(),
        severity: "error".into(),
        offices: Vec::new(),
        message_ja: ja,
        message_en: en,
        raised_at: now,
        updated_at: now,
    }
}

/// Prepares the sites and loads the key; `make_key` makes it when missing and a site encrypts
/// (set-up); commands that only read copies never make one.
pub fn open_sites(
    settings: &BackupSettings,
    make_key: bool,
) -> Result<(Vec<Site>, Option<BackupKey>), BackupError> {
    let sites = settings
        .sites
        .iter()
        .map(|s| {
            Site::new(s).map_err(|source| BackupError::Site {
                site: s.name.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let key = if settings.needs_key() && make_key {
        let (key, made) = BackupKey::load_or_create(&settings.key_file)?;
        if made {
            warn!(
                key_id = %key.id(),
                path = %settings.key_file.display(),
                "バックアップの暗号化の鍵を新しく作りました。鍵を書き出して、装置とは別の場所に保管してください (a new backup key was made; export it (kaigo-relay backup key-export) and keep it away from the appliance)"
            );
        }
        Some(key)
    } else if settings.key_file.exists() {
        Some(BackupKey::load(&settings.key_file)?)
    } else {
        None
    };
    Ok((sites, key))
}

/// Removes snapshot files an interrupted run left in the work folder.
fn clean_work_dir(work: &Path) {
    if let Ok(entries) = std::fs::read_dir(work) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("snapshot-")
                || name.starts_with("restore-")
                    && !name.starts_with("restore-staged")
                    && !name.starts_with("restore-pending")
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The copies on a site, oldest first, with their manifests when complete.
pub async fn list(site: &Site) -> Result<Vec<CopyInfo>, BackupError> {
    let keys = site
        .list(COPIES)
        .await
        .map_err(|source| BackupError::Site {
            site: site.name().to_owned(),
            source,
        })?;
    let mut seqs: Vec<(u64, bool)> = Vec::new();
    for k in &keys {
        let mut parts = k.split('/');
        let (Some(COPIES), Some(seq), Some(file)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(seq) = seq.parse::<u64>() else {
            continue;
        };
        let is_manifest = file == MANIFEST;
        match seqs.iter_mut().find(|(s, _)| *s == seq) {
            Some(e) => e.1 |= is_manifest,
            None => seqs.push((seq, is_manifest)),
        }
    }
    seqs.sort();
    let mut out = Vec::new();
    for (seq, has_manifest) in seqs {
        let manifest = if has_manifest {
            match site.get_bytes(&Manifest::key(seq)).await {
                Ok(bytes) => match serde_json::from_slice::<Manifest>(&bytes) {
                    Ok(m) if m.seq == seq => Some(m),
                    _ => {
                        warn!(
                            code = %code::BACKUP_COPY_INCOMPLETE,
                            site = site.name(),
                            seq, "バックアップの目録を読めないため、このコピーは使えるコピーに数えません (unreadable manifest; the copy is not counted)"
                        );
                        None
                    }
                },
                Err(e) => {
                    warn!(code = %code::BACKUP_COPY_INCOMPLETE, site = site.name(), seq, error = %e, "バックアップの目録を読めませんでした (manifest could not be read)");
                    None
                }
            }
        } else {
            None
        };
        out.push(CopyInfo { seq, manifest });
    }
    Ok(out)
}

/// The sequence numbers a retention policy keeps among the complete copies.
pub fn retained(copies: &[CopyInfo], r: Retention) -> std::collections::BTreeSet<u64> {
    let mut complete: Vec<(&CopyInfo, &Manifest)> = copies
        .iter()
        .filter_map(|c| c.manifest.as_ref().map(|m| (c, m)))
        .collect();
    complete.sort_by_key(|(c, _)| std::cmp::Reverse(c.seq));
    let mut keep = std::collections::BTreeSet::new();
    if let Some((newest, _)) = complete.first() {
        keep.insert(newest.seq);
    }
    type Bucket = fn(&jiff::ZonedDateTime) -> String;
    let bucket_kinds: [(u32, Bucket); 4] = [
        (r.hourly, |z| z.strftime("%Y%m%d%H").to_string()),
        (r.daily, |z| z.strftime("%Y%m%d").to_string()),
        (r.weekly, |z| {
            let w = z.iso_week_date();
            format!("{}-{}", w.year(), w.week())
        }),
        (r.monthly, |z| z.strftime("%Y%m").to_string()),
    ];
    for (count, bucket) in bucket_kinds {
        let mut seen = std::collections::BTreeSet::new();
        for (c, m) in &complete {
            let b = bucket(&m.created_at.to_zoned_datetime(crate::timefmt::jst()));
            if seen.contains(&b) {
                continue;
            }
            if seen.len() as u32 >= count {
                break;
            }
            seen.insert(b);
            keep.insert(c.seq);
        }
    }
    keep
}

/// Downloads a copy, checks it against its manifest, decrypts it and verifies the snapshot.
/// `progress` hears the bytes downloaded so far and the copy's size.
pub async fn fetch_verified(
    site: &Site,
    seq: u64,
    key: Option<&BackupKey>,
    work: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<VerifiedCopy, BackupError> {
    let bad = |reason: String| BackupError::Verify {
        site: site.name().to_owned(),
        seq,
        reason,
    };
    let site_err = |source| BackupError::Site {
        site: site.name().to_owned(),
        source,
    };
    std::fs::create_dir_all(work).map_err(io_err(work))?;
    let manifest: Manifest = serde_json::from_slice(
        &site
            .get_bytes(&Manifest::key(seq))
            .await
            .map_err(site_err)?,
    )
    .map_err(|e| bad(format!("目録 (manifest) を読めません: {e}")))?;
    if manifest.seq != seq || manifest.format != 1 {
        return Err(bad(
            "目録の番号か形式が違います (manifest seq or format)".into()
        ));
    }
    let stamp = format!("{}-{seq:010}-{}", site.name(), std::process::id());
    let raw = work.join(format!("restore-{stamp}.download"));
    let plain = work.join(format!("restore-{stamp}.redb"));
    let _ = std::fs::remove_file(&raw);
    let _ = std::fs::remove_file(&plain);
    let result = async {
        let fp = site
            .get_file_progress(&manifest.object_key(), &raw, &|done| progress(done, manifest.size))
            .await
            .map_err(site_err)?;
        if fp.size != manifest.size || fp.sha256 != manifest.sha256 {
            return Err(bad(format!(
                "大きさか SHA-256 が目録と違います（壊れています）: {} bytes / {} (manifest: {} bytes / {})",
                fp.size, fp.sha256, manifest.size, manifest.sha256
            )));
        }
        match &manifest.encryption {
            Some(enc) => {
                let key = key.ok_or_else(|| crypt::CryptError::NoKey {
                    copy: enc.key_id.clone(),
                })?;
                if key.id() != enc.key_id {
                    return Err(crypt::CryptError::WrongKey {
                        copy: enc.key_id.clone(),
                        ours: key.id(),
                    }
                    .into());
                }
                let (key, src, dest) = (key.clone(), raw.clone(), plain.clone());
                tokio::task::spawn_blocking(move || crypt::decrypt_file(&key, &src, &dest))
                    .await
                    .map_err(|e| bad(format!("decrypt task: {e}")))??;
                let _ = std::fs::remove_file(&raw);
            }
            None => std::fs::rename(&raw, &plain).map_err(io_err(&plain))?,
        }
        let path = plain.clone();
        let digest = tokio::task::spawn_blocking(move || crate::store::verify_snapshot(&path))
            .await
            .map_err(|e| bad(format!("verify task: {e}")))?
            .map_err(|e| bad(e.to_string()))?;
        if digest.tables != manifest.tables || digest.schema_version != manifest.schema_version {
            return Err(bad(
                "表の行数かハッシュが目録と違います (table digests differ from the manifest)".into(),
            ));
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&raw);
        let _ = std::fs::remove_file(&plain);
        return Err(e);
    }
    Ok(VerifiedCopy {
        site: site.name().to_owned(),
        manifest,
        path: plain,
    })
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// The site the copy came from.
    pub site: String,
    /// The copy.
    pub seq: u64,
    /// When it was taken.
    pub created_at: Timestamp,
    /// Where the store that was in place was kept.
    pub kept_aside: Option<PathBuf>,
    /// The sites tried before, and why they failed.
    pub skipped: Vec<(String, String)>,
}

/// Restores the store from the newest verified copy (or copy `seq`), trying `site` first and
/// then the others in configured order. The daemon must be stopped (the caller checks that the
/// store is not open). The file in place is renamed aside, never deleted.
pub async fn restore(
    settings: &BackupSettings,
    store_path: &Path,
    site: Option<&str>,
    seq: Option<u64>,
    progress: &(dyn Fn(&str, u64, u64) + Sync),
) -> Result<Restored, BackupError> {
    let (sites, key) = open_sites(settings, false)?;
    if sites.is_empty() {
        return Err(BackupError::NoSites);
    }
    let mut order: Vec<&Site> = Vec::new();
    if let Some(name) = site {
        let first = sites
            .iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| BackupError::NoSuchSite(name.to_owned()))?;
        order.push(first);
    }
    order.extend(sites.iter().filter(|s| Some(s.name()) != site));
    let work = settings.work_dir.clone();
    let mut skipped = Vec::new();
    for s in order {
        let candidate = match list(s).await {
            Ok(copies) => chosen_copy(&copies, seq),
            Err(e) => {
                warn!(code = %code::BACKUP_SITE_LIST, site = s.name(), error = %e, "保存先の中身を一覧できません。次の保存先を試します (site cannot be listed; trying the next)");
                skipped.push((s.name().to_owned(), e.to_string()));
                continue;
            }
        };
        let Some(n) = candidate else {
            skipped.push((
                s.name().to_owned(),
                "使えるコピーがありません (no complete copy)".into(),
            ));
            continue;
        };
        let name = s.name().to_owned();
        match fetch_verified(s, n, key.as_ref(), &work, &|done, total| {
            progress(&name, done, total)
        })
        .await
        {
            Ok(copy) => {
                let kept_aside = put_in_place(&copy.path, store_path)?;
                return Ok(Restored {
                    site: copy.site,
                    seq: n,
                    created_at: copy.manifest.created_at,
                    kept_aside,
                    skipped,
                });
            }
            Err(e) => {
                warn!(site = s.name(), seq = n, error = %e, "バックアップのコピーが検査に通りませんでした。次の保存先を試します (copy failed verification; trying the next site)");
                skipped.push((s.name().to_owned(), e.to_string()));
            }
        }
    }
    Err(BackupError::NothingToRestore(format!(
        "どの保存先からも確認できるコピーを取り出せませんでした (no site had a copy that verified): {}",
        skipped
            .iter()
            .map(|(s, e)| format!("{s}: {e}"))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

const STAGED: &str = "restore-staged.redb";
const PENDING: &str = "restore-pending.json";

/// A restore chosen in the admin UI, waiting for the daemon's restart: the copy is already
/// downloaded and verified (`restore-staged.redb` in the work folder); its digest is kept here so
/// that it is verified once more before it is put in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRestore {
    /// The site it came from.
    pub site: String,
    /// The copy.
    pub seq: u64,
    /// When the copy was taken.
    pub created_at: Timestamp,
    /// Who asked for it.
    pub requested_by: String,
    /// The schema version inside.
    pub schema_version: u64,
    /// Every table's digest.
    pub tables: Vec<TableDigest>,
}

impl Backups {
    /// Downloads and verifies copy `seq` (default: the newest complete one) of `site`, and
    /// leaves it staged for [`apply_pending_restore`] at the daemon's next start. The live store
    /// is not touched here.
    pub async fn stage_restore(
        &self,
        site: &str,
        seq: Option<u64>,
        requested_by: &str,
    ) -> Result<PendingRestore, BackupError> {
        let s = self
            .sites
            .iter()
            .find(|s| s.name() == site)
            .ok_or_else(|| BackupError::NoSuchSite(site.to_owned()))?;
        let copies = list(s).await?;
        let n = chosen_copy(&copies, seq).ok_or_else(|| {
            BackupError::NothingToRestore(format!(
                "保存先「{site}」に使えるコピーがありません (no complete copy)"
            ))
        })?;
        let work = &self.settings.work_dir;
        let copy = fetch_verified(s, n, self.key.as_ref(), work, &|_, _| {}).await?;
        let staged = work.join(STAGED);
        std::fs::rename(&copy.path, &staged).map_err(io_err(&staged))?;
        let pending = PendingRestore {
            site: site.to_owned(),
            seq: n,
            created_at: copy.manifest.created_at,
            requested_by: requested_by.to_owned(),
            schema_version: copy.manifest.schema_version,
            tables: copy.manifest.tables.clone(),
        };
        let path = work.join(PENDING);
        let bytes = serde_json::to_vec_pretty(&pending)
            .map_err(|e| BackupError::NothingToRestore(e.to_string()))?;
        std::fs::write(&path, bytes)
            .and_then(|()| std::fs::File::open(&path)?.sync_all())
            .map_err(io_err(&path))?;
        warn!(
            site,
            seq = n,
            by = requested_by,
            "復元の準備ができました。kaigo-relay を再起動して、データベースを入れ替えます (restore staged; the daemon restarts to put it in place)"
        );
        Ok(pending)
    }
}

/// Whether a restore is staged for the next start.
pub fn restore_pending(settings: &BackupSettings) -> bool {
    settings.work_dir.join(PENDING).exists()
}

/// At start, before the store is opened: puts a staged restore in place once it verified again
/// (the live file is kept aside). A staged copy that no longer verifies is set aside (`.failed`)
/// and the live store stays; the error says why.
pub fn apply_pending_restore(
    settings: &BackupSettings,
    store_path: &Path,
) -> Result<Option<Restored>, BackupError> {
    let (pending_path, staged) = (
        settings.work_dir.join(PENDING),
        settings.work_dir.join(STAGED),
    );
    let Ok(bytes) = std::fs::read(&pending_path) else {
        return Ok(None);
    };
    let set_aside = |why: String| {
        let _ = std::fs::rename(&pending_path, pending_path.with_extension("json.failed"));
        let _ = std::fs::remove_file(&staged);
        BackupError::StagedRestoreFailed(why)
    };
    let pending: PendingRestore =
        serde_json::from_slice(&bytes).map_err(|e| set_aside(e.to_string()))?;
    match crate::store::verify_snapshot(&staged) {
        Ok(d) if d.tables == pending.tables && d.schema_version == pending.schema_version => {}
        Ok(_) => return Err(set_aside("the staged copy changed".into())),
        Err(e) => return Err(set_aside(e.to_string())),
    }
    let kept_aside = put_in_place(&staged, store_path)?;
    std::fs::remove_file(&pending_path).map_err(io_err(&pending_path))?;
    Ok(Some(Restored {
        site: pending.site,
        seq: pending.seq,
        created_at: pending.created_at,
        kept_aside,
        skipped: Vec::new(),
    }))
}

/// Renames the live file aside and moves the verified snapshot into its place.
fn put_in_place(verified: &Path, store_path: &Path) -> Result<Option<PathBuf>, BackupError> {
    let dir = store_path
        .parent()
        .ok_or_else(|| BackupError::NothingToRestore("the store has no folder".into()))?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let staged = store_path.with_extension("redb.restoring");
    std::fs::copy(verified, &staged).map_err(io_err(&staged))?;
    std::fs::File::open(&staged)
        .and_then(|f| f.sync_all())
        .map_err(io_err(&staged))?;
    let kept = if store_path.exists() {
        let stamp = Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let aside = store_path.with_extension(format!("redb.before-restore-{stamp}"));
        std::fs::rename(store_path, &aside).map_err(io_err(&aside))?;
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&staged, store_path).map_err(io_err(store_path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    let _ = std::fs::remove_file(verified);
    Ok(kept)
}

/// Whether the administrator confirmed having exported key `id` (a mark beside the key file).
pub fn key_confirmed(settings: &BackupSettings, id: &str) -> bool {
    std::fs::read_to_string(confirm_path(settings)).is_ok_and(|s| s.trim() == id)
}

/// Records that the administrator exported and kept key `id`.
pub fn confirm_key(settings: &BackupSettings, id: &str) -> Result<(), BackupError> {
    let path = confirm_path(settings);
    std::fs::write(&path, format!("{id}\n")).map_err(io_err(&path))
}

fn confirm_path(settings: &BackupSettings) -> PathBuf {
    let mut name = settings
        .key_file
        .file_name()
        .unwrap_or_default()
        .to_os_string();
    name.push(".exported");
    settings.key_file.with_file_name(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::{SiteLocation, SiteSettings};

    fn site(name: &str, path: &Path, encrypt: bool, keep: u32) -> SiteSettings {
        SiteSettings {
            name: name.into(),
            location: SiteLocation::Directory { path: path.into() },
            encrypt,
            retention: Retention {
                hourly: keep,
                daily: keep,
                weekly: keep,
                monthly: keep,
            },
        }
    }

    fn settings(dir: &Path, sites: Vec<SiteSettings>) -> BackupSettings {
        BackupSettings {
            interval: Duration::from_secs(3600),
            after_account_change: true,
            drill_interval: Duration::from_secs(86400),
            max_copy_age: Duration::from_secs(26 * 3600),
            max_drill_age: Duration::from_secs(8 * 86400),
            key_file: dir.join("state/backup.key"),
            work_dir: dir.join("state/backup-work"),
            sites,
        }
    }

    fn filled_store(dir: &Path) -> Store {
        let store = Store::open(&dir.join("store.redb")).unwrap();
        for i in 0..40 {
            store
                .put_alert(
                    &format!("a{i}"),
                    format!("alert {i}").repeat(50).into_bytes(),
                )
                .unwrap();
        }
        store
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn run_then_restore_falls_back_past_a_damaged_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("site-a"), dir.path().join("site-b"));
        let s = settings(
            dir.path(),
            vec![site("a", &a, false, 5), site("b", &b, true, 5)],
        );
        let store = filled_store(dir.path());
        let backups = Backups::new(store.clone(), s.clone()).unwrap();
        let key = backups.key().unwrap().clone();
        assert!(s.key_file.exists(), "the key is made at set-up");
        let run = backups.run("test").await.unwrap();
        assert!(run.all_ok(), "{run:?}");
        assert_eq!(run.seq, 1);
        assert_eq!(backups.runs(10).unwrap()[0], run);
        // Site b holds an encrypted copy naming the key; site a a plain one.
        let copies_b = list(&backups.sites()[1]).await.unwrap();
        let m = copies_b[0].manifest.as_ref().unwrap();
        assert_eq!(m.encryption.as_ref().unwrap().key_id, key.id());
        assert_eq!(
            crypt::key_id_of(&b.join(m.object_key())).unwrap(),
            Some(key.id())
        );
        let m_a = list(&backups.sites()[0]).await.unwrap()[0]
            .manifest
            .clone()
            .unwrap();
        assert!(m_a.encryption.is_none());
        assert_eq!(m_a.tables, m.tables);

        // One byte changed in site a's copy: restore detects it and takes site b's.
        let object = a.join(m_a.object_key());
        let mut bytes = std::fs::read(&object).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&object, &bytes).unwrap();
        drop(backups);
        drop(store);
        let target = dir.path().join("restored/store.redb");
        let restored = restore(&s, &target, Some("a"), None, &|_, _, _| {})
            .await
            .unwrap();
        assert_eq!(restored.site, "b");
        assert_eq!(restored.skipped.len(), 1);
        assert!(
            restored.skipped[0].1.contains("SHA-256"),
            "{:?}",
            restored.skipped
        );
        let digest = crate::store::verify_snapshot(&target).unwrap();
        assert_eq!(digest.tables, m.tables);
        let back = Store::open(&target).unwrap();
        assert_eq!(back.alerts().unwrap().len(), 40);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_site_without_a_copy_is_alerted_in_each_language_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(
            dir.path(),
            vec![site("usb", &dir.path().join("usb"), false, 5)],
        );
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        let backups = Backups::new(store.clone(), s).unwrap();
        backups.check_alerts(Timestamp::now()).unwrap();
        let alerts = crate::alerts::current(&store).unwrap();
        let stale = alerts
            .iter()
            .find(|a| a.key == "backup_stale/usb")
            .unwrap_or_else(|| panic!("{alerts:?}"));
        assert!(stale.message_ja.contains("一度もありません"), "{stale:?}");
        assert!(
            stale.message_en.contains("(last verified copy: never)"),
            "{stale:?}"
        );
        assert!(
            stale.message_en.is_ascii(),
            "no Japanese in the English text: {}",
            stale.message_en
        );

        // A first copy: the copy alert ends, and no drill is late yet (the site awaits its turn)…
        assert!(backups.run("test").await.unwrap().all_ok());
        let now = Timestamp::now();
        backups.check_alerts(now).unwrap();
        let keys = |store: &Store| -> Vec<String> {
            crate::alerts::current(store)
                .unwrap()
                .into_iter()
                .map(|a| a.key)
                .filter(|k| k.starts_with("backup_"))
                .collect()
        };
        assert_eq!(keys(&store), Vec::<String>::new());
        // …until that copy is older than a drill may be, with no drill since.
        let later = now
            .checked_add(jiff::SignedDuration::from_hours(8 * 24 + 1))
            .unwrap();
        backups.check_alerts(later).unwrap();
        assert!(
            keys(&store).contains(&"backup_drill_stale/usb".to_owned()),
            "{:?}",
            keys(&store)
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn retention_keeps_the_newest_and_removes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("site-a");
        let s = settings(dir.path(), vec![site("a", &a, false, 0)]);
        let store = filled_store(dir.path());
        let backups = Backups::new(store, s).unwrap();
        // A leftover of an interrupted run: an object without a manifest.
        std::fs::create_dir_all(a.join("copies/0000000001")).unwrap();
        std::fs::write(a.join("copies/0000000001/store.redb"), b"half").unwrap();
        for _ in 0..3 {
            assert!(backups.run("test").await.unwrap().all_ok());
        }
        let copies = list(&backups.sites()[0]).await.unwrap();
        assert_eq!(copies.len(), 1, "{copies:?}");
        assert_eq!(copies[0].seq, 4);
        assert!(copies[0].manifest.is_some());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_copy_of_the_previous_schema_restores_and_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("site-a");
        let s = settings(dir.path(), vec![site("a", &a, false, 5)]);
        let store = filled_store(dir.path());
        let backups = Backups::new(store.clone(), s.clone()).unwrap();
        let run = backups.run("test").await.unwrap();
        assert!(run.all_ok());
        drop(backups);
        drop(store);
        // Rewrite the copy as schema 6 wrote it, with a manifest to match.
        let copy_dir = a.join(format!("copies/{:010}", run.seq));
        let object = copy_dir.join("store.redb");
        crate::store::make_previous_schema(&object).unwrap();
        let digest = crate::store::verify_snapshot(&object).unwrap();
        assert_eq!(digest.schema_version, 6);
        assert!(!digest.tables.iter().any(|t| t.name == "backup_log"));
        let manifest_path = copy_dir.join(MANIFEST);
        let mut m: Manifest =
            serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        let bytes = std::fs::read(&object).unwrap();
        m.size = bytes.len() as u64;
        m.sha256 = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        m.schema_version = 6;
        m.tables = digest.tables.clone();
        std::fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();

        let target = dir.path().join("restored/store.redb");
        let restored = restore(&s, &target, None, None, &|_, _, _| {})
            .await
            .unwrap();
        assert_eq!(restored.seq, run.seq);
        let back = Store::open(&target).unwrap();
        assert_eq!(back.alerts().unwrap().len(), 40);
        back.put_backup_log("run/0000000099", b"{}".to_vec())
            .unwrap();
        drop(back);
        let migrated = crate::store::verify_snapshot(&target).unwrap();
        assert_eq!(migrated.schema_version, crate::store::SCHEMA_VERSION);
        assert!(
            migrated
                .tables
                .iter()
                .any(|t| t.name == "backup_log" && t.rows == 1)
        );
    }

    #[test]
    fn retention_buckets() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let copy = |seq, t: &str| CopyInfo {
            seq,
            manifest: Some(Manifest {
                format: 1,
                seq,
                created_at: at(t),
                kaigo_relay_version: String::new(),
                schema_version: 7,
                site: "a".into(),
                object: "store.redb".into(),
                size: 0,
                sha256: String::new(),
                snapshot_size: 0,
                encryption: None,
                tables: Vec::new(),
            }),
        };
        let copies = vec![
            copy(1, "2026-10-01T00:00:00Z"),
            copy(2, "2026-11-01T00:00:00Z"),
            copy(3, "2026-12-01T01:00:00Z"),
            copy(4, "2026-12-01T01:30:00Z"),
            copy(5, "2026-12-01T02:10:00Z"),
            copy(6, "2026-12-02T02:10:00Z"),
        ];
        let r = |h, d, w, m| Retention {
            hourly: h,
            daily: d,
            weekly: w,
            monthly: m,
        };
        let keep: Vec<u64> = retained(&copies, r(0, 0, 0, 0)).into_iter().collect();
        assert_eq!(keep, vec![6]);
        let keep: Vec<u64> = retained(&copies, r(3, 0, 0, 0)).into_iter().collect();
        assert_eq!(
            keep,
            vec![4, 5, 6],
            "the newest of each of the last 3 hours"
        );
        let keep: Vec<u64> = retained(&copies, r(0, 0, 0, 2)).into_iter().collect();
        assert_eq!(
            keep,
            vec![2, 6],
            "the newest of December (6) and of November (2)"
        );
        let keep: Vec<u64> = retained(&copies, r(0, 0, 0, 3)).into_iter().collect();
        assert_eq!(keep, vec![1, 2, 6]);
        let keep: Vec<u64> = retained(&copies, r(0, 2, 0, 0)).into_iter().collect();
        assert_eq!(keep, vec![5, 6], "days in JST: Dec 2 (6) and Dec 1 (5)");
    }
}
