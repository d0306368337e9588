//! Intake: watches the drop folder, decides when a file is complete, checks it, commits it to
//! the store and only then moves it out of the drop folder — to `送信済/`, or to `エラー/` with
//! a reason file in Japanese and English.
//!
//! Invariants kept here:
//! - **Commit before acknowledge.** A file leaves the drop folder only after its bytes and its
//!   submission record are committed. A crash between the two leaves the file in place and a
//!   record marked "pending move"; the next look at the file finishes the move instead of
//!   taking it twice. A crash after the move and before it is recorded is found by the next
//!   rescan, which records where the file went (`settle_stranded_moves`).
//! - **Events are hints, scans are truth.** inotify events make intake fast; a full listing
//!   every `rescan_interval` (and on event overflow) makes it correct, and is all there is in
//!   `poll` mode.
//! - **Complete files only.** A file renamed into the folder is complete. A file written in
//!   place is taken once its size and mtime are unchanged over two checks. Either way a file
//!   that starts like a claim must end with its end record, or it is waited for (up to
//!   `incomplete_grace`) rather than sent half-written.
//! - **Nothing is lost, nothing is silent.** Intake never deletes a file; every refused file is
//!   in `エラー/` with its reason beside it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use admin_ui::help::code;
use anyhow::Context as _;
use jiff::Timestamp;
use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn};

use crate::claim::{
    self, CheckContext, Completeness, Finding, OfficeNumber, OfficeStanding, Severity,
};
use crate::config::{IntakeMode, IntakeSettings};
use crate::federation::GatewayWindow;
use crate::store::{Recorded, Store};
use crate::submission::{Note, State, Submission};

/// Folder (inside the drop folder) for files taken for sending.
pub const SENT_DIR: &str = "送信済";
/// Folder (inside the drop folder) for files that were not sent, with their reasons.
pub const ERROR_DIR: &str = "エラー";
/// Suffix of the reason file written next to a refused file.
pub const REASON_SUFFIX: &str = ".エラー.txt";
/// Suffix of the result file next to a file in `送信済/`: where the claim stands now.
pub const RESULT_SUFFIX: &str = ".結果.txt";
/// Mode of `送信済/` and `エラー/`: the office PCs (the Samba share gives them the daemon's
/// group) may read the results but neither add, rename nor delete anything there.
pub const RESULT_DIR_MODE: u32 = 0o750;
/// Mode of the result and reason notes: readable by the daemon's group, written by it only.
pub const NOTE_MODE: u32 = 0o640;

/// Names intake never takes: temporary files of editors and copy tools, and files Windows
/// Explorer leaves in shared folders.
pub fn is_ignored_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false; // a non-UTF-8 name is still a file someone dropped: take and report it
    };
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.starts_with("~$")
        || lower.ends_with(".tmp")
        || lower.ends_with(".part")
        || lower == "desktop.ini"
        || lower == "thumbs.db"
}

/// Whether a name is an 8.3 name the federation accepts (claim-format.md §4).
pub fn is_8_3_name(name: &str) -> bool {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) => (s, e),
        None => (name, ""),
    };
    let ok = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    !stem.is_empty() && stem.len() <= 8 && ext.len() <= 3 && ok(stem) && ok(ext)
}

/// An 8.3 name for a file whose own name the federation would refuse: `K` and seven characters
/// of the submission's random identity, so names do not repeat within a month.
pub fn generated_name(id: &crate::submission::SubmissionId) -> String {
    let tail: String = id
        .as_str()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .rev()
        .take(7)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("K{}.CSV", tail.to_ascii_uppercase())
}

/// Most files taken as one batch: read and checked in parallel, recorded in one store
/// transaction, moved, the folders synced once, and their moves recorded in a second
/// transaction. Bounded so that the loop gets back to new events and a renamed-in file is not
/// queued behind a folder holding 100 000 files.
const TAKES_PER_PASS: usize = 256;

/// File events waiting for intake: as many as the kernel's own inotify queue holds by default
/// (`fs.inotify.max_queued_events`, 16 384; a few MB at most). A month-start burst renames
/// thousands of files into the folder within a fraction of a second, while intake is busy
/// taking the first of them; an overflow would make the rest wait for a rescan and then for
/// two stability checks, since a listing cannot tell a renamed-in file from one written in
/// place.
const EVENT_QUEUE: usize = 16_384;

/// What intake needs to run.
pub struct Intake {
    /// Folder settings.
    pub settings: IntakeSettings,
    /// The store.
    pub store: Store,
    /// Offices this appliance sends for, with their standing (active, or ended from a month).
    pub offices: Arc<BTreeMap<OfficeNumber, OfficeStanding>>,
    /// The gateway's reception window (its processing month is checked against each file).
    pub window: watch::Receiver<Option<GatewayWindow>>,
    /// Woken when a submission is queued.
    pub relay_wakeup: Arc<Notify>,
    /// Beats at every completed scan (the service watchdog reads it).
    pub heartbeat: crate::service::Heartbeat,
    /// Closed while the store's disk is nearly full: files wait in the drop folder.
    pub disk: crate::disk_guard::DiskGate,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("drop_dir", &self.settings.drop_dir)
            .finish()
    }
}

#[derive(Debug, Clone)]
struct Candidate {
    size: u64,
    mtime: Option<SystemTime>,
    stable_checks: u32,
    renamed_in: bool,
    observed: bool,
    last_check: Option<Instant>,
    retry_not_before: Option<Instant>,
}

impl Candidate {
    fn new(renamed_in: bool) -> Self {
        Candidate {
            size: 0,
            mtime: None,
            stable_checks: 0,
            renamed_in,
            observed: false,
            last_check: None,
            retry_not_before: None,
        }
    }
}

/// The result of trying to take one file.
#[derive(Debug)]
enum TakeOutcome {
    /// Recorded and moved (or a pending move finished).
    Taken { queued: bool },
    /// Changed while being read, or cut short and still young: look again later.
    NotYet,
    /// The processing month is not known yet (the gateway has not answered).
    NeedWindow,
    /// The file is gone.
    Gone,
}

impl Intake {
    /// Creates the drop folder and its `送信済/` and `エラー/` folders if missing, and gives the
    /// two result folders [`RESULT_DIR_MODE`] (whatever the daemon's umask).
    pub fn prepare_folders(drop_dir: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        for (dir, mode) in [
            (drop_dir.to_owned(), None),
            (drop_dir.join(SENT_DIR), Some(RESULT_DIR_MODE)),
            (drop_dir.join(ERROR_DIR), Some(RESULT_DIR_MODE)),
        ] {
            std::fs::create_dir_all(&dir).with_context(|| {
                format!(
                    "フォルダー {} を作成できません (cannot create)",
                    dir.display()
                )
            })?;
            if let Some(mode) = mode
                && let Err(e) =
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
            {
                // Made by someone else (an administrator by hand): it still works, but the
                // PCs' rights there are whatever that person gave.
                warn!(folder = %dir.display(), error = %e, "フォルダーの権限を設定できません (cannot set the folder's mode)");
            }
        }
        Ok(())
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        Self::prepare_folders(&self.settings.drop_dir)?;
        let overflow = Arc::new(AtomicBool::new(false));
        let (tx, mut events) = mpsc::channel::<notify::Result<notify::Event>>(EVENT_QUEUE);
        let _watcher = match self.settings.mode {
            IntakeMode::Watch => Some(self.start_watcher(tx, overflow.clone())?),
            IntakeMode::Poll => {
                drop(tx);
                None
            }
        };
        let mut candidates: HashMap<PathBuf, Candidate> = HashMap::new();
        // Look four times per settle interval; a check only counts once a full interval has
        // passed since the previous one, so a file is taken between 2 and 2¼ intervals after
        // its last change.
        let tick = (self.settings.settle_interval / 4).max(Duration::from_millis(25));
        let mut settle = tokio::time::interval(tick);
        settle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rescan = tokio::time::interval(self.settings.rescan_interval);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!(drop_dir = %self.settings.drop_dir.display(), mode = ?self.settings.mode, "intake started");
        self.heartbeat.beat();
        // However the loop ends, the watchdog expects no more scans from this run.
        struct Idle(crate::service::Heartbeat);
        impl Drop for Idle {
            fn drop(&mut self) {
                self.0.idle();
            }
        }
        let _idle = Idle(self.heartbeat.clone());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(event) = events.recv() => {
                    let mut urgent = self.on_event(event, &mut candidates);
                    // Take every event already waiting, so that a burst becomes one batch.
                    while let Ok(event) = events.try_recv() {
                        urgent |= self.on_event(event, &mut candidates);
                    }
                    if overflow.swap(false, Ordering::Relaxed) {
                        warn!("ファイルの変化を追いきれなかったため、投入フォルダーを調べ直します (file event queue overflowed; rescanning the drop folder)");
                        self.rescan(&mut candidates).await;
                    }
                    if urgent {
                        self.evaluate(&mut candidates, &shutdown).await;
                    }
                }
                _ = settle.tick() => {
                    if !candidates.is_empty() {
                        self.evaluate(&mut candidates, &shutdown).await;
                    }
                }
                _ = rescan.tick() => {
                    self.rescan(&mut candidates).await;
                    self.evaluate(&mut candidates, &shutdown).await;
                    self.heartbeat.beat();
                }
                Ok(()) = self.window.changed() => {
                    for c in candidates.values_mut() {
                        c.retry_not_before = None;
                    }
                    self.evaluate(&mut candidates, &shutdown).await;
                }
                () = self.disk.changed() => {
                    if !self.disk.store_paused() {
                        self.rescan(&mut candidates).await;
                        self.evaluate(&mut candidates, &shutdown).await;
                    }
                }
            }
        }
        info!("intake stopped");
        Ok(())
    }

    fn start_watcher(
        &self,
        tx: mpsc::Sender<notify::Result<notify::Event>>,
        overflow: Arc<AtomicBool>,
    ) -> anyhow::Result<notify::RecommendedWatcher> {
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Opening and reading files (intake's own reads included) are not news; only a
            // close after writing is. Dropping them here keeps a crowded folder from flooding
            // the queue.
            if let Ok(e) = &res
                && matches!(e.kind, EventKind::Access(k) if k != AccessKind::Close(AccessMode::Write))
            {
                return;
            }
            if tx.try_send(res).is_err() {
                overflow.store(true, Ordering::Relaxed);
            }
        })
        .context("ファイル監視を開始できません (cannot start the file watcher)")?;
        watcher
            .watch(&self.settings.drop_dir, RecursiveMode::NonRecursive)
            .with_context(|| {
                format!(
                    "フォルダー {} を監視できません (cannot watch)",
                    self.settings.drop_dir.display()
                )
            })?;
        Ok(watcher)
    }

    /// Applies one event to the candidates; true when a file was renamed in (take it now) or
    /// closed after writing (observe it now).
    fn on_event(
        &self,
        event: notify::Result<notify::Event>,
        candidates: &mut HashMap<PathBuf, Candidate>,
    ) -> bool {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "投入フォルダーの見張りでエラーが起きました。定期的に投入フォルダーを調べ直すので、ファイルはそのときに受け付けます (file watcher error; the periodic rescan covers it)");
                return false;
            }
        };
        if event.need_rescan() {
            candidates.clear();
            return false; // the next rescan tick rebuilds them; force one soon
        }
        let mut urgent = false;
        for (i, path) in event.paths.iter().enumerate() {
            if path.parent() != Some(self.settings.drop_dir.as_path()) {
                continue;
            }
            let Some(name) = path.file_name() else {
                continue;
            };
            if is_ignored_name(name) {
                continue;
            }
            match event.kind {
                EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                    candidates.insert(path.clone(), Candidate::new(true));
                    urgent = true;
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) if i == 1 => {
                    candidates.insert(path.clone(), Candidate::new(true));
                    urgent = true;
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::From | RenameMode::Both))
                | EventKind::Remove(_) => {
                    candidates.remove(path);
                }
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    // The writer closed it: take the baseline size and mtime now, so the two
                    // stability checks start from this moment.
                    let c = candidates
                        .entry(path.clone())
                        .or_insert_with(|| Candidate::new(false));
                    c.observed = false;
                    c.last_check = None;
                    urgent = true;
                }
                EventKind::Create(CreateKind::File | CreateKind::Any) | EventKind::Modify(_) => {
                    let c = candidates
                        .entry(path.clone())
                        .or_insert_with(|| Candidate::new(false));
                    c.stable_checks = 0;
                }
                _ => {}
            }
        }
        urgent
    }

    /// Records where files went whose move a crash cut short after the rename
    /// ([`settle_stranded_moves`]). Runs with every rescan, never alongside a take.
    async fn settle_stranded_moves(&self) {
        let store = self.store.clone();
        let drop_dir = self.settings.drop_dir.clone();
        match tokio::task::spawn_blocking(move || settle_stranded_moves(&store, &drop_dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!(
                    error = format!("{e:#}"),
                    "ファイルの移動先を記録できませんでした。自動でやり直します (cannot record where files went; will retry)"
                )
            }
            Err(e) => {
                error!(error = %e, "ファイルの移動先を記録する内部の処理が失敗しました (the task recording where files went failed)")
            }
        }
    }

    /// Lists the drop folder: new files become candidates, vanished ones are forgotten.
    async fn rescan(&self, candidates: &mut HashMap<PathBuf, Candidate>) {
        self.settle_stranded_moves().await;
        let dir = self.settings.drop_dir.clone();
        let listing = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<PathBuf>> {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                if entry.file_type()?.is_file() && !is_ignored_name(&entry.file_name()) {
                    files.push(entry.path());
                }
            }
            Ok(files)
        })
        .await;
        let files = match listing {
            Ok(Ok(files)) => files,
            Ok(Err(e)) => {
                // A folder that is gone, and one that cannot be read, have entries of their own.
                let code = if e.kind() == std::io::ErrorKind::NotFound {
                    code::SYSTEM_DROP_FOLDER_MISSING
                } else {
                    code::SYSTEM_DROP_FOLDER_UNREADABLE
                };
                error!(%code, error = %e, drop_dir = %self.settings.drop_dir.display(), "投入フォルダーの中身を読めません (cannot list the drop folder)");
                return;
            }
            Err(e) => {
                error!(error = %e, "投入フォルダーの中身を調べる内部の処理が失敗しました (drop folder listing task failed)");
                return;
            }
        };
        let present: HashSet<&PathBuf> = files.iter().collect();
        candidates.retain(|p, _| present.contains(p));
        for f in &files {
            candidates
                .entry(f.clone())
                .or_insert_with(|| Candidate::new(false));
        }
    }

    /// Looks at every candidate that is due once (in one blocking call for all of them) and
    /// takes those that are complete, as one batch: renamed-in files first, at most
    /// `TAKES_PER_PASS` per call ([`take_batch`]).
    async fn evaluate(
        &self,
        candidates: &mut HashMap<PathBuf, Candidate>,
        shutdown: &CancellationToken,
    ) {
        if self.disk.store_paused() {
            // Nothing new goes into the store until the disk guard sees space again; the files
            // stay where they are (the guard has logged and raised the alert).
            debug!(
                waiting = candidates.len(),
                "intake paused: the store's disk is nearly full"
            );
            return;
        }
        let now = Instant::now();
        let settle = self.settings.settle_interval;
        // A stability check counts only if a full settle interval has passed since the last
        // one: an early look (a tick, or an event for another file) must not shorten the rule.
        let mut due: Vec<(PathBuf, bool)> = candidates
            .iter()
            .filter(|(_, c)| c.retry_not_before.is_none_or(|t| now >= t))
            .filter(|(_, c)| {
                c.renamed_in || c.last_check.is_none_or(|t| now.duration_since(t) >= settle)
            })
            .map(|(p, c)| (p.clone(), c.renamed_in))
            .collect();
        if due.is_empty() {
            return;
        }
        // Renamed-in files are complete: look at no more of them than one pass takes (a
        // burst of 10 000 is not stat'ed 40 times over). Files written in place are all looked
        // at, since each look is one of their stability checks.
        let mut renamed = 0;
        due.retain(|(_, renamed_in)| {
            if *renamed_in {
                renamed += 1;
                renamed <= TAKES_PER_PASS
            } else {
                true
            }
        });
        due.sort_by_key(|(_, renamed)| !renamed);
        let paths: Vec<PathBuf> = due.into_iter().map(|(p, _)| p).collect();
        let looked = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|p| {
                    let meta = std::fs::symlink_metadata(&p)
                        .ok()
                        .filter(std::fs::Metadata::is_file)
                        .map(|m| (m.len(), m.modified().ok()));
                    (p, meta)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(looked) = looked else {
            error!(
                "投入フォルダーを確認する内部の処理が失敗しました。次の確認で自動でやり直します (drop folder check task failed; the next tick retries)"
            );
            return;
        };
        let mut ready: Vec<(PathBuf, bool)> = Vec::new();
        for (path, meta) in looked {
            let Some(c) = candidates.get_mut(&path) else {
                continue;
            };
            c.last_check = Some(now);
            let Some((size, mtime)) = meta else {
                candidates.remove(&path);
                continue;
            };
            if !c.observed || size != c.size || mtime != c.mtime {
                c.size = size;
                c.mtime = mtime;
                c.stable_checks = 0;
                c.observed = true;
                if !c.renamed_in {
                    continue;
                }
            } else {
                c.stable_checks += 1;
            }
            if (c.renamed_in || c.stable_checks >= 2) && ready.len() < TAKES_PER_PASS {
                ready.push((path, c.renamed_in));
            }
        }
        if ready.is_empty() || shutdown.is_cancelled() {
            return;
        }
        let jobs: Vec<TakeJob> = ready
            .iter()
            .map(|(path, renamed_in)| self.take_job(path, *renamed_in))
            .collect();
        // One log line per distinct failure, not one per file: a full disk fails every file.
        let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (path, outcome) in take_batch(jobs).await {
            match outcome {
                Ok(TakeOutcome::Taken { queued }) => {
                    candidates.remove(&path);
                    if queued {
                        self.relay_wakeup.notify_one();
                    }
                }
                Ok(TakeOutcome::Gone) => {
                    candidates.remove(&path);
                }
                Ok(TakeOutcome::NotYet) => {
                    if let Some(c) = candidates.get_mut(&path) {
                        c.stable_checks = 0;
                        c.renamed_in = false;
                    }
                }
                Ok(TakeOutcome::NeedWindow) => {
                    if let Some(c) = candidates.get_mut(&path) {
                        c.retry_not_before = Some(now + self.settings.rescan_interval);
                    }
                }
                Err(e) => {
                    failures
                        .entry(format!("{e:#}"))
                        .or_default()
                        .push(file_label(&path).into_owned());
                    if let Some(c) = candidates.get_mut(&path) {
                        c.retry_not_before = Some(now + self.settings.rescan_interval);
                    }
                }
            }
        }
        for (error, files) in failures {
            error!(
                files = files.len(),
                first = %files[0],
                %error,
                "投入フォルダーのファイルを受け付けられませんでした。ファイルはそのまま残し、自動でやり直します (could not take files from the drop folder; they stay there and are tried again)"
            );
        }
    }

    fn take_job(&self, path: &Path, renamed_in: bool) -> TakeJob {
        let window = self.window.borrow().clone();
        TakeJob {
            path: path.to_owned(),
            drop_dir: self.settings.drop_dir.clone(),
            renamed_in,
            incomplete_grace: self.settings.incomplete_grace,
            processing_month: window.as_ref().map(|w| w.processing_month),
            offices: self.offices.clone(),
            store: self.store.clone(),
        }
    }
}

struct TakeJob {
    path: PathBuf,
    drop_dir: PathBuf,
    renamed_in: bool,
    incomplete_grace: Duration,
    processing_month: Option<claim::Month>,
    offices: Arc<BTreeMap<OfficeNumber, OfficeStanding>>,
    store: Store,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What reading and checking one file decided.
enum Step {
    /// Checked: record it (and its bytes), then move it.
    Record(Box<Submission>, Vec<u8>),
    /// Committed before a restart and still in the folder: only move it.
    FinishMove(Box<Submission>),
    /// Nothing to record now.
    Done(TakeOutcome),
}

impl TakeJob {
    /// Reads the file (unchanged while read), and checks it; or finds that it was committed
    /// before a restart. Writes nothing, except when a committed name was reused for new bytes.
    fn prepare(&self) -> anyhow::Result<Step> {
        let before = match std::fs::symlink_metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Step::Done(TakeOutcome::Gone));
            }
            Err(e) => return Err(e).context("stat"),
        };
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Step::Done(TakeOutcome::Gone));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.path.display()));
            }
        };
        let after = std::fs::symlink_metadata(&self.path).context("stat")?;
        if before.len() != after.len()
            || before.modified().ok() != after.modified().ok()
            || bytes.len() as u64 != after.len()
        {
            debug!("file changed while being read; waiting");
            return Ok(Step::Done(TakeOutcome::NotYet));
        }
        let file_name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sha256 = sha256_hex(&bytes);

        // A crash after the commit and before the move: finish the move, take nothing new.
        if let Some(pending) = self.store.pending_move(&file_name)? {
            if pending.sha256 == sha256 {
                info!(submission = %pending.id, "finishing the move of a file committed before a restart");
                return Ok(Step::FinishMove(Box::new(pending)));
            }
            // The name was reused for new bytes: the old bytes are safe in the store.
            self.store.mark_moved(
                &pending.id,
                "(投入フォルダーで新しい内容に置き換えられました / replaced in the drop folder)"
                    .into(),
            )?;
        }

        let completeness = claim::completeness(&bytes);
        if completeness == Completeness::Truncated && !self.renamed_in {
            let age = after
                .modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .unwrap_or_default();
            if age < self.incomplete_grace {
                debug!(?age, "no end record yet; waiting for the writer");
                return Ok(Step::Done(TakeOutcome::NotYet));
            }
        }
        if self.processing_month.is_none() {
            return Ok(Step::Done(TakeOutcome::NeedWindow));
        }

        let ctx = CheckContext {
            processing_month: self.processing_month,
            offices: Some(self.offices.as_ref().clone()),
        };
        let mut report = claim::check(&bytes, &ctx);
        let sendable = report.is_sendable();
        let now = Timestamp::now();
        let mut sub = Submission::new(file_name.clone(), sha256, bytes.len() as u64, now);
        if !is_8_3_name(&file_name) {
            let send_name = generated_name(&sub.id);
            report.findings.insert(0, Finding {
                severity: Severity::Warning,
                code: code::FILE_NAME_REPLACED.as_str().into(),
                record_no: None,
                item_no: None,
                message_ja: format!(
                    "ファイル名「{file_name}」は国保連合会が受け付けない形（半角英数字 8 文字＋拡張子 3 文字以内ではない）のため、「{send_name}」という名前で送ります。内容は変えません。"
                ),
                message_en: format!(
                    "The federation does not accept the file name \"{file_name}\" (not 8 ASCII letters or digits plus a 3-letter extension), so it is sent as \"{send_name}\". The contents are unchanged."
                ),
            });
            sub.send_name = Some(send_name);
        }
        if let Some(summary) = &report.summary {
            sub.office_number = Some(summary.office_number.clone());
            sub.processing_month = Some(summary.processing_month);
            sub.data_type = Some(summary.data_type.clone());
        }
        sub.findings = report.findings;
        if sendable {
            sub.transition(State::Queued, "点検済み・送信待ち / checked, queued", now);
        } else {
            let n = sub
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
            sub.note = Some(Note {
                code: Some(code::INTAKE_REFUSED.as_str().into()),
                ja: format!("点検で {n} 件の誤りが見つかったため送信しませんでした。"),
                en: format!("Not sent: the check found {n} error(s)."),
            });
            sub.transition(State::Refused, "点検で誤り / refused by the check", now);
        }
        Ok(Step::Record(Box::new(sub), bytes))
    }
}

/// Takes a batch of files: reads and checks them in parallel, records the checked ones in one
/// store transaction, moves each to `送信済/` or `エラー/`, syncs the folders once, and records
/// the moves in a second transaction. Whatever fails for one file is that file's outcome; the
/// others go on.
async fn take_batch(jobs: Vec<TakeJob>) -> Vec<(PathBuf, anyhow::Result<TakeOutcome>)> {
    let Some(first) = jobs.first() else {
        return Vec::new();
    };
    let (store, drop_dir) = (first.store.clone(), first.drop_dir.clone());
    let workers = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2)
        .clamp(1, 4);
    let per_worker = jobs.len().div_ceil(workers);
    let mut chunks = Vec::new();
    let mut jobs = jobs.into_iter();
    loop {
        let chunk: Vec<TakeJob> = jobs.by_ref().take(per_worker).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .map(|job| {
                    let span = info_span!("intake", file = %file_label(&job.path));
                    let step = span.in_scope(|| job.prepare());
                    (job.path, step)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut prepared = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        match chunk.await {
            Ok(steps) => prepared.extend(steps),
            Err(e) => {
                error!(error = %e, "ファイルを受け付ける内部の処理が失敗しました。次に投入フォルダーを調べるときに自動でやり直します (an intake task failed; the next rescan retries its files)")
            }
        }
    }
    let mut to_record = Vec::new();
    let mut to_move = Vec::new();
    for (path, step) in prepared {
        match step {
            Ok(Step::Record(sub, bytes)) => to_record.push((path, *sub, bytes)),
            Ok(Step::FinishMove(sub)) => to_move.push((path, *sub)),
            Ok(Step::Done(outcome)) => out.push((path, Ok(outcome))),
            Err(e) => out.push((path, Err(e))),
        }
    }
    if to_record.is_empty() && to_move.is_empty() {
        return out;
    }
    match tokio::task::spawn_blocking(move || {
        commit_and_place(&store, &drop_dir, to_record, to_move)
    })
    .await
    {
        Ok(done) => out.extend(done),
        Err(e) => {
            error!(error = %e, "ファイルを受け付ける内部の処理が失敗しました。次に投入フォルダーを調べるときに自動でやり直します (an intake task failed; the next rescan retries its files)")
        }
    }
    out
}

fn file_label(path: &Path) -> std::borrow::Cow<'_, str> {
    path.file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default()
}

/// The blocking half of [`take_batch`]: commit, move, sync, record the moves.
fn commit_and_place(
    store: &Store,
    drop_dir: &Path,
    to_record: Vec<(PathBuf, Submission, Vec<u8>)>,
    mut to_move: Vec<(PathBuf, Submission)>,
) -> Vec<(PathBuf, anyhow::Result<TakeOutcome>)> {
    let mut out = Vec::new();
    if !to_record.is_empty() {
        for _ in &to_record {
            crate::failpoint::hit("intake.before_commit");
        }
        let (paths, items): (Vec<PathBuf>, Vec<(Submission, Vec<u8>)>) = to_record
            .into_iter()
            .map(|(path, sub, bytes)| (path, (sub, bytes)))
            .unzip();
        match store.record_new_batch(items) {
            Ok(recorded) => {
                for (path, recorded) in paths.into_iter().zip(recorded) {
                    crate::failpoint::hit("intake.after_commit");
                    let _span = info_span!("intake", file = %file_label(&path)).entered();
                    match recorded {
                        Ok(recorded) => {
                            log_recorded(&recorded);
                            to_move.push((path, recorded.submission().clone()));
                        }
                        Err(e) => out.push((
                            path,
                            Err(anyhow::Error::new(e).context("cannot record the file")),
                        )),
                    }
                }
            }
            Err(e) => {
                let why = format!("{e:#}");
                out.extend(paths.into_iter().map(|p| {
                    (
                        p,
                        Err(anyhow::anyhow!("{why}").context("cannot record the file")),
                    )
                }));
            }
        }
    }
    // Move every recorded file, then sync the folders once for all of them.
    let mut moved = Vec::new();
    let mut touched = HashSet::new();
    for (path, sub) in to_move {
        let _span = info_span!("intake", file = %file_label(&path)).entered();
        match place(drop_dir, &path, &sub) {
            Ok((folder, rel)) => {
                crate::failpoint::hit("intake.after_move");
                touched.insert(folder);
                moved.push((path, sub, rel));
            }
            Err(e) => out.push((path, Err(e))),
        }
    }
    if moved.is_empty() {
        return out;
    }
    for folder in &touched {
        sync_dir(&drop_dir.join(folder));
    }
    sync_dir(drop_dir);
    let items = moved
        .iter()
        .map(|(_, sub, rel)| (sub.id.clone(), rel.clone()))
        .collect();
    match store.mark_moved_batch(items) {
        Ok(marked) => {
            for ((path, sub, _), marked) in moved.into_iter().zip(marked) {
                crate::failpoint::hit("intake.after_mark_moved");
                match marked {
                    Ok(latest) => {
                        // The relay may have moved the claim on between the commit and the move.
                        if latest.state != sub.state {
                            refresh_result_note(store, drop_dir, &latest.id);
                        }
                        out.push((
                            path,
                            Ok(TakeOutcome::Taken {
                                queued: sub.state == State::Queued,
                            }),
                        ));
                    }
                    Err(e) => out.push((
                        path,
                        Err(anyhow::Error::new(e).context("cannot record where the file went")),
                    )),
                }
            }
        }
        Err(e) => {
            // The files are archived; the next rescan records where they went.
            let why = format!("{e:#}");
            out.extend(moved.into_iter().map(|(p, _, _)| {
                (
                    p,
                    Err(anyhow::anyhow!("{why}").context("cannot record where the file went")),
                )
            }));
        }
    }
    out
}

fn log_recorded(recorded: &Recorded) {
    match recorded {
        Recorded::New(s) if s.state == State::Queued => {
            info!(submission = %s.id, office = ?s.office_number.as_ref().map(|o| o.to_string()), "file taken and queued")
        }
        Recorded::New(s) => warn!(
            submission = %s.id,
            errors = s.findings.iter().filter(|f| f.severity == Severity::Error).count(),
            "請求ファイルの点検で誤りが見つかりました。送信せず「エラー」フォルダーに移しました (file refused by the check; moved to the error folder)"
        ),
        Recorded::Duplicate {
            submission,
            original,
        } => warn!(
            submission = %submission.id,
            original = %original.id,
            "同じ内容のファイルをすでに受け付けています。もう一度は送信しません (same bytes already taken; not sent again)"
        ),
    }
}

/// Moves the file at `path` to `送信済/` (with its result note) or `エラー/` (with its reason
/// file). Returns the folder and the archived name relative to the drop folder. The caller
/// syncs the folders and records the move.
fn place(drop_dir: &Path, path: &Path, sub: &Submission) -> anyhow::Result<(&'static str, String)> {
    let to_error = matches!(sub.state, State::Refused | State::Duplicate);
    let folder = if to_error { ERROR_DIR } else { SENT_DIR };
    let dest_dir = drop_dir.join(folder);
    std::fs::create_dir_all(&dest_dir)
        .with_context(|| format!("cannot create {}", dest_dir.display()))?;
    let dest = free_name(&dest_dir, &sub.file_name);
    if to_error {
        let reason_path = PathBuf::from(format!("{}{REASON_SUFFIX}", dest.display()));
        write_reason_file(&reason_path, sub)?;
    } else {
        let result_path = PathBuf::from(format!("{}{RESULT_SUFFIX}", dest.display()));
        write_note_file(&result_path, &result_text(sub))?;
    }
    std::fs::rename(path, &dest)
        .with_context(|| format!("cannot move {} to {}", path.display(), dest.display()))?;
    let rel = format!(
        "{folder}/{}",
        dest.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    Ok((folder, rel))
}

/// `name`, or `stem (2).ext`, `stem (3).ext`… — the first that does not exist in `dir`.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    (2u32..)
        .map(|n| dir.join(format!("{stem} ({n}){ext}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// Finishes the record of moves cut short between the rename and `mark_moved` (a crash): a
/// submission still pending a move whose file is no longer in the drop folder was archived
/// before the crash. Its copy is found in the folder `place` uses, under its name or a
/// `free_name` variant, by SHA-256, and recorded (and its result file brought up to date); a
/// file someone took out of the drop folder before it was archived is recorded as such (its
/// bytes are in the store). A file still in the drop folder is left to the next take, which
/// finishes its move.
fn settle_stranded_moves(store: &Store, drop_dir: &Path) -> anyhow::Result<()> {
    for sub in store.pending_moves()? {
        if sub.moved_to.is_some() || drop_dir.join(&sub.file_name).exists() {
            continue;
        }
        let folder = if matches!(sub.state, State::Refused | State::Duplicate) {
            ERROR_DIR
        } else {
            SENT_DIR
        };
        let moved_to = match find_archived(&drop_dir.join(folder), &sub) {
            Some(name) => {
                info!(submission = %sub.id, file = %sub.file_name, archived_as = %name, "recorded where a file went before a restart");
                format!("{folder}/{name}")
            }
            None => {
                warn!(submission = %sub.id, file = %sub.file_name, "受け付けたファイルが投入フォルダーからなくなりましたが、「{folder}」フォルダーにもありません。ファイルの内容はデータベースに保存されています (a committed file left the drop folder but is not in {folder}/; its bytes are in the store)");
                "(保存前に投入フォルダーから取り除かれました / taken out of the drop folder before it was archived)".into()
            }
        };
        let latest = store.mark_moved(&sub.id, moved_to)?;
        refresh_result_note(store, drop_dir, &latest.id);
    }
    Ok(())
}

/// The name in `dir` of the archived copy of `sub`: its own name or `stem (n).ext`, with its
/// SHA-256. `free_name` takes the first free name, so of several identical copies the one with
/// the highest number is the latest.
fn find_archived(dir: &Path, sub: &Submission) -> Option<String> {
    let (stem, ext) = match sub.file_name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (sub.file_name.as_str(), String::new()),
    };
    let prefix = format!("{stem} (");
    let suffix = format!("){ext}");
    let mut found: Vec<(u32, String)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = if name == sub.file_name {
                1
            } else {
                name.strip_prefix(&prefix)?
                    .strip_suffix(&suffix)?
                    .parse()
                    .ok()?
            };
            Some((n, name))
        })
        .collect();
    found.sort();
    found.into_iter().rev().find_map(|(_, name)| {
        let bytes = std::fs::read(dir.join(&name)).ok()?;
        (sha256_hex(&bytes) == sub.sha256).then_some(name)
    })
}

fn sync_dir(dir: &Path) {
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        warn!(dir = %dir.display(), error = %e, "フォルダーの内容をディスクに確定できませんでした (could not sync folder)");
    }
}

/// The reason file: what is wrong, where, and what to do, in Japanese then English. UTF-8 with a
/// BOM and CRLF line ends, so that Notepad on any Windows version shows it right.
pub fn reason_text(sub: &Submission) -> String {
    let errors: Vec<&Finding> = sub
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    let warnings: Vec<&Finding> = sub
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .collect();
    let where_ja = |f: &Finding| match (f.record_no, f.item_no) {
        (Some(r), Some(i)) => format!("{r} 行目 {i} 列目"),
        (Some(r), None) => format!("{r} 行目"),
        _ => "ファイル全体".to_owned(),
    };
    let where_en = |f: &Finding| match (f.record_no, f.item_no) {
        (Some(r), Some(i)) => format!("line {r}, column {i}"),
        (Some(r), None) => format!("line {r}"),
        _ => "whole file".to_owned(),
    };
    let mut ja = vec![
        "このファイルは国保連合会へ送信していません。".to_owned(),
        String::new(),
        format!("ファイル名: {}", sub.file_name),
        format!(
            "取り込み日時: {}",
            crate::timefmt::jst_minutes(sub.taken_at)
        ),
    ];
    let mut en = vec![
        "This file was NOT sent to the federation.".to_owned(),
        String::new(),
        format!("File: {}", sub.file_name),
        format!("Taken: {} JST", crate::timefmt::jst_seconds(sub.taken_at)),
    ];
    if let Some(o) = &sub.office_number {
        ja.push(format!("事業所番号: {o}"));
        en.push(format!("Office: {o}"));
    }
    if let Some(m) = sub.processing_month {
        ja.push(format!("処理対象年月: {}", m.to_japanese()));
        en.push(format!("Processing month: {m}"));
    }
    let mut section = |heading_ja: String, heading_en: String, list: &[&Finding]| {
        if list.is_empty() {
            return;
        }
        ja.push(String::new());
        ja.push(heading_ja);
        en.push(String::new());
        en.push(heading_en);
        for (n, f) in list.iter().enumerate() {
            let n = n + 1;
            ja.push(format!(
                "{n:>3}. [{}] {}  （コード {}）",
                where_ja(f),
                f.message_ja,
                f.code
            ));
            en.push(format!(
                "{n:>3}. [{}] {}  (code {})",
                where_en(f),
                f.message_en,
                f.code
            ));
        }
    };
    section(
        format!("見つかった誤り（{} 件）:", errors.len()),
        format!("Errors found ({}):", errors.len()),
        &errors,
    );
    section(
        format!("注意（これだけなら送信できます）（{} 件）:", warnings.len()),
        format!(
            "Warnings (these alone would not stop the file) ({}):",
            warnings.len()
        ),
        &warnings,
    );
    // Each code once, with what the help catalogue says to do about it.
    let mut explained = std::collections::BTreeSet::new();
    for f in errors.iter().chain(warnings.iter()) {
        if !explained.insert(f.code.as_str()) {
            continue;
        }
        let Some(e) = admin_ui::help::find(&f.code) else {
            continue;
        };
        if explained.len() == 1 {
            ja.push(String::new());
            ja.push(
                "コードの意味と対処（管理画面の「ヘルプ」→「メッセージ一覧」にも載っています）:"
                    .into(),
            );
            en.push(String::new());
            en.push(
                "What each code means and what to do (also in the admin UI: Help → All messages):"
                    .into(),
            );
        }
        ja.push(format!(
            "  {} {}: {}",
            e.code,
            e.title_ja,
            e.remedy_ja.replace('\n', " ")
        ));
        en.push(format!(
            "  {} {}: {}",
            e.code,
            e.title_en,
            e.remedy_en.replace('\n', " ")
        ));
    }
    ja.push(String::new());
    ja.push(
        "直し方: 請求ソフトで内容を直してファイルを作り直し、もう一度投入フォルダーに置いてください。行目は請求ファイルの何行目か、列目はカンマで区切った何番目の項目かを表します。このファイルとこの説明は、装置が記録として残します（消す必要はありません）。"
            .into(),
    );
    en.push(String::new());
    en.push("What to do: correct the data in the billing software, create the file again and put it in the drop folder. \"Line\" is the line of the claim file, \"column\" the comma-separated item. This file and this note stay as the appliance's record; there is no need to delete them.".into());
    let mut text = ja.join("\r\n");
    text.push_str("\r\n\r\n----\r\n\r\n");
    text.push_str(&en.join("\r\n"));
    text.push_str("\r\n");
    text
}

/// The result file of a file in `送信済/`: where the claim stands, its 受付番号 and 受付 mark,
/// the federation's reasons for △ or ×, and what to do, in Japanese then English. It holds no
/// time of writing, so it changes only when the claim's standing does.
pub fn result_text(sub: &Submission) -> String {
    let mut ja = vec![
        "国保連合会への送信状況（状況が変わるたびに装置が書き直します）".to_owned(),
        String::new(),
        format!("ファイル名: {}", sub.file_name),
    ];
    let mut en = vec![
        "Where this claim stands with the federation (the appliance rewrites this note whenever that changes)".to_owned(),
        String::new(),
        format!("File: {}", sub.file_name),
    ];
    if let Some(send_name) = &sub.send_name {
        ja.push(format!("送信時の名前: {send_name}（国保連合会に届く名前）"));
        en.push(format!(
            "Sent as: {send_name} (the name the federation sees)"
        ));
    }
    if let Some(o) = &sub.office_number {
        ja.push(format!("事業所番号: {o}"));
        en.push(format!("Office: {o}"));
    }
    if let Some(m) = sub.processing_month {
        ja.push(format!("処理対象年月: {}", m.to_japanese()));
        en.push(format!("Processing month: {m}"));
    }
    ja.push(format!("状況: {}", sub.state.label_ja()));
    en.push(format!("State: {}", sub.state.label_en()));
    if let Some(r) = &sub.receipt {
        ja.push(format!("受付番号: {}", r.receipt_id));
        // The gateway's RFC 3339 time, as people read times elsewhere (JST).
        let arrived = r.arrived_at.parse::<jiff::Timestamp>().ok();
        let arrived_ja = arrived.map_or_else(|| r.arrived_at.clone(), crate::timefmt::jst_minutes);
        let arrived_en = arrived.map_or_else(
            || r.arrived_at.clone(),
            |t| format!("{} JST", crate::timefmt::jst_seconds(t)),
        );
        ja.push(format!("到達日時: {arrived_ja}"));
        en.push(format!("Receipt: {}", r.receipt_id));
        en.push(format!("Arrived: {arrived_en}"));
        for e in &r.arrival_errors {
            ja.push(format!("・到達エラー: {} [{}]", e.message, e.code));
            en.push(format!("- arrival error: {} [{}]", e.message, e.code));
        }
    }
    if let Some(r) = &sub.reception {
        let mark = r.mark.as_deref().unwrap_or("—");
        ja.push(format!("受付結果: {mark}"));
        en.push(format!("Reception result: {mark}"));
        for e in &r.errors {
            let at = e
                .record_no
                .map(|n| format!("{n} 行目: "))
                .unwrap_or_default();
            let at_en = e
                .record_no
                .map(|n| format!("line {n}: "))
                .unwrap_or_default();
            ja.push(format!("・{at}{} [{}]", e.message, e.code));
            en.push(format!("- {at_en}{} [{}]", e.message, e.code));
        }
    }
    let warnings: Vec<&Finding> = sub
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .collect();
    if !warnings.is_empty() {
        ja.push(String::new());
        ja.push("点検での注意（送信には影響しません）:".into());
        en.push(String::new());
        en.push("Warnings from the check (the file was sent anyway):".into());
        for f in warnings {
            ja.push(format!("・{} [{}]", f.message_ja, f.code));
            en.push(format!("- {} [{}]", f.message_en, f.code));
        }
    }
    if let Some(note) = &sub.note {
        ja.push(String::new());
        ja.push(format!("説明: {}", note.ja));
        en.push(String::new());
        en.push(format!("Note: {}", note.en));
    }
    ja.push(String::new());
    ja.push(match sub.state {
        State::Accepted => "国保連合会が受け付けました。このファイルについてすることはありません。".to_owned(),
        State::AcceptedWithReturns => "受け付けられましたが、△の明細書は月末の返戻一覧で返戻されます。内容を直して翌月以降に再請求してください。".to_owned(),
        State::Rejected => "受け付けられませんでした（×）。上の理由を直してファイルを作り直し、受付期間内にもう一度投入フォルダーに置いてください。".to_owned(),
        State::FailedNeedsAttention => "装置が自動では送れない状態です。上の説明に従って対応するか、管理者に連絡してください。".to_owned(),
        State::Held => "受付期間になると装置が自動で送信します。何もする必要はありません。".to_owned(),
        _ => "装置が送信と結果の確認を続けています。何もする必要はありません。".to_owned(),
    });
    let mut text = ja.join("\r\n");
    text.push_str("\r\n\r\n----\r\n\r\n");
    text.push_str(&en.join("\r\n"));
    text.push_str("\r\n");
    text
}

/// Serializes rewrites of result notes, so that two writers (intake finishing a move, the
/// relay recording a result) cannot leave an older state on top of a newer one.
static NOTE_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Keeps result notes up to date off the relay's path: the relay hands over the id of each
/// claim it changed and goes on; one thread rewrites each note from the claim's latest record,
/// once for a burst of changes to the same claim. A note is a view of the store, never the
/// truth: one lost to a crash is rewritten when the relay starts.
#[derive(Debug, Clone)]
pub struct NoteWriter {
    tx: std::sync::mpsc::Sender<crate::submission::SubmissionId>,
}

impl NoteWriter {
    /// Starts the writer thread; it ends when every handle is dropped.
    pub fn start(store: Store, drop_dir: PathBuf) -> std::io::Result<NoteWriter> {
        let (tx, rx) = std::sync::mpsc::channel::<crate::submission::SubmissionId>();
        std::thread::Builder::new()
            .name("result-notes".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut ids = vec![first];
                    ids.extend(rx.try_iter());
                    let mut seen = HashSet::new();
                    for id in ids {
                        if seen.insert(id.clone()) {
                            refresh_result_note(&store, &drop_dir, &id);
                        }
                    }
                }
            })?;
        Ok(NoteWriter { tx })
    }

    /// Asks for the note of `id` to be brought up to date.
    pub fn refresh(&self, id: &crate::submission::SubmissionId) {
        let _ = self.tx.send(id.clone());
    }
}

/// Rewrites the result note of submission `id` from its latest record in the store (read under
/// the note lock, so the last writer always writes the latest state).
pub fn refresh_result_note(store: &Store, drop_dir: &Path, id: &crate::submission::SubmissionId) {
    let _guard = NOTE_WRITER.lock().unwrap_or_else(|e| e.into_inner());
    match store.get(id) {
        Ok(Some(latest)) => write_result_file_if_changed(drop_dir, &latest),
        Ok(None) => {}
        Err(e) => {
            warn!(submission = %id, error = %e, "請求ファイルの記録を読めないため、結果ファイルを更新できません (cannot read the claim to update its result file)")
        }
    }
}

/// Rewrites the result file of a submission archived in `送信済/` when its text changed. The
/// new text goes to a temporary file first and is renamed over the old one, so a clerk never
/// opens half a note. Notes are not synced to disk one by one: the store is the truth, and the
/// relay brings every recent note up to date at start. A failure here is logged, not fatal.
/// For a claim that may change meanwhile, use [`refresh_result_note`].
pub fn refresh_result_file(drop_dir: &Path, sub: &Submission) {
    let _guard = NOTE_WRITER.lock().unwrap_or_else(|e| e.into_inner());
    write_result_file_if_changed(drop_dir, sub);
}

fn write_result_file_if_changed(drop_dir: &Path, sub: &Submission) {
    let Some(moved_to) = sub.moved_to.as_deref() else {
        return;
    };
    if !moved_to.starts_with(SENT_DIR) {
        return;
    }
    let path = drop_dir.join(format!("{moved_to}{RESULT_SUFFIX}"));
    if let Err(e) = write_note_file(&path, &result_text(sub)) {
        warn!(submission = %sub.id, path = %path.display(), error = %e, "結果ファイルを更新できませんでした (could not update the result file)");
    }
}

/// Writes a note for clerks, UTF-8 with a BOM (Notepad), unless it already says exactly that.
/// A new note is written to a temporary file and renamed into place, so it appears whole. An
/// existing note is overwritten in place with one write: no new file, no deleted one (creating
/// and deleting thousands of small files is what a month-start burst would otherwise cost the
/// file system), and a reader sees the old text or the new.
fn write_note_file(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Read as _;
    use std::os::unix::fs::FileExt as _;
    let wanted = [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat();
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(mut f) => {
            let mut current = Vec::with_capacity(wanted.len());
            f.read_to_end(&mut current)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if current != wanted {
                f.write_all_at(&wanted, 0)
                    .and_then(|()| f.set_len(wanted.len() as u64))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = path.with_file_name(format!(".{name}.tmp"));
            std::fs::write(&tmp, &wanted)
                .and_then(|()| set_note_mode(&tmp))
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| {
                format!("cannot rename {} to {}", tmp.display(), path.display())
            })?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot open {}", path.display())),
    }
}

/// Gives a note [`NOTE_MODE`]: the daemon's umask (077 under systemd) would keep it from the
/// office PCs.
fn set_note_mode(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(NOTE_MODE))
}

fn write_reason_file(path: &Path, sub: &Submission) -> anyhow::Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    set_note_mode(path)?;
    f.write_all(b"\xEF\xBB\xBF")?;
    f.write_all(reason_text(sub).as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_file_lists_every_finding_with_its_place() {
        let mut sub = Submission::new("KK.CSV".into(), "00".into(), 10, Timestamp::UNIX_EPOCH);
        let bytes = b"1,1,0,1,711,0,0,1379999996,0,4,202506,1\r\n2,2,\"7111\"\r\n3,3\r\n";
        let ctx = CheckContext {
            processing_month: Some("202506".parse().unwrap()),
            offices: None,
        };
        sub.findings = claim::check(bytes, &ctx).findings;
        sub.office_number = Some("1379999996".parse().unwrap());
        let errors = sub
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        assert!(errors >= 2, "{:?}", sub.findings);
        let text = reason_text(&sub);
        assert!(
            text.contains(&format!("見つかった誤り（{errors} 件）")),
            "{text}"
        );
        assert!(
            text.contains("1 行目 10 列目"),
            "media code at line 1, column 10: {text}"
        );
        assert!(text.contains("line 1, column 10"), "{text}");
        assert!(text.contains("control.media_type"), "{text}");
        // The English half names the file, when it was taken (JST) and the office.
        assert!(text.contains("Taken: 1970-01-01 09:00:00 JST"), "{text}");
        assert!(text.contains("Office: 1379999996"), "{text}");
        assert!(!text.contains("注意（"), "no warnings here: {text}");
        assert!(!text.replace("\r\n", "").contains('\n'), "CRLF only");
    }

    #[test]
    fn the_result_file_follows_the_claim() {
        use crate::submission::{GatewayIssue, Receipt, Reception};
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(SENT_DIR)).unwrap();
        let mut sub = Submission::new("KK.CSV".into(), "00".into(), 10, Timestamp::UNIX_EPOCH);
        // Not archived yet: nothing is written.
        refresh_result_file(dir.path(), &sub);
        let path = dir.path().join(format!("{SENT_DIR}/KK.CSV{RESULT_SUFFIX}"));
        assert!(!path.exists());
        sub.moved_to = Some(format!("{SENT_DIR}/KK.CSV"));
        refresh_result_file(dir.path(), &sub);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("状況: 送信待ち"), "{text}");
        sub.receipt = Some(Receipt {
            receipt_id: "R1".into(),
            arrived_at: "2026-12-03T10:00:00+09:00".into(),
            arrival_status: "arrived".into(),
            arrival_errors: vec![],
            stored_at: Timestamp::UNIX_EPOCH,
        });
        sub.reception = Some(Reception {
            status: "rejected".into(),
            mark: Some("×".into()),
            errors: vec![GatewayIssue {
                record_no: Some(1),
                code: "control_office_mismatch".into(),
                message: "事業所番号が違います".into(),
            }],
            updated_at: "2026-12-03T10:01:00+09:00".into(),
        });
        sub.transition(State::Rejected, "x", Timestamp::UNIX_EPOCH);
        refresh_result_file(dir.path(), &sub);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with('\u{feff}'));
        for want in [
            "受付番号: R1",
            "受付結果: ×",
            "1 行目: 事業所番号が違います",
            "作り直し",
            "line 1:",
            // The arrival time as people read it, in both halves (10:00 +09:00 is 10:00 JST).
            "到達日時: 2026年12月3日 10:00",
            "Arrived: 2026-12-03 10:00:00 JST",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join(SENT_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
    }

    #[test]
    fn ignored_names() {
        for n in [
            ".hidden",
            "~$KK.CSV",
            "KK.CSV.tmp",
            "x.PART",
            "Thumbs.db",
            "desktop.ini",
        ] {
            assert!(is_ignored_name(OsStr::new(n)), "{n}");
        }
        for n in ["KK261201.CSV", "tmp.csv", "請求.csv"] {
            assert!(!is_ignored_name(OsStr::new(n)), "{n}");
        }
    }

    #[test]
    fn eight_three_names() {
        for n in [
            "KK261201.CSV",
            "i0706a.csv",
            "A.CSV",
            "ABCDEFGH.CSV",
            "K_1-2.CSV",
        ] {
            assert!(is_8_3_name(n), "{n}");
        }
        for n in [
            "ABCDEFGHI.CSV",
            "KK.CSVX",
            "請求.CSV",
            ".CSV",
            "KK 1.CSV",
            "a.b.csv",
        ] {
            assert!(!is_8_3_name(n), "{n}");
        }
    }

    #[test]
    fn a_move_cut_short_by_a_crash_is_recorded_at_the_next_rescan() {
        let dir = tempfile::tempdir().unwrap();
        let drop_dir = dir.path().join("drop");
        Intake::prepare_folders(&drop_dir).unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        let record = |name: &str, bytes: &[u8]| {
            let mut sub = Submission::new(
                name.into(),
                sha256_hex(bytes),
                bytes.len() as u64,
                Timestamp::UNIX_EPOCH,
            );
            sub.transition(State::Queued, "queued", Timestamp::UNIX_EPOCH);
            store
                .record_new(sub, bytes.to_vec())
                .unwrap()
                .submission()
                .clone()
        };
        let sent = drop_dir.join(SENT_DIR);
        // Committed and renamed to `KK (2).CSV` (an older `KK.CSV` was archived before), then
        // the crash: the store still says "pending move".
        let moved = record("KK.CSV", b"new claim");
        std::fs::write(sent.join("KK.CSV"), b"older claim").unwrap();
        std::fs::write(sent.join("KK (2).CSV"), b"new claim").unwrap();
        // Committed, not renamed: the next take finishes this one.
        let waiting = record("KL.CSV", b"another claim");
        std::fs::write(drop_dir.join("KL.CSV"), b"another claim").unwrap();
        // Committed, then taken out of the drop folder by someone before it was archived.
        let gone = record("KM.CSV", b"a third claim");

        settle_stranded_moves(&store, &drop_dir).unwrap();
        let get = |id| store.get(id).unwrap().unwrap();
        assert_eq!(
            get(&moved.id).moved_to.as_deref(),
            Some("送信済/KK (2).CSV")
        );
        let note =
            std::fs::read_to_string(sent.join(format!("KK (2).CSV{RESULT_SUFFIX}"))).unwrap();
        assert!(note.contains("送信待ち"), "{note}");
        assert_eq!(get(&waiting.id).moved_to, None);
        assert!(get(&gone.id).moved_to.unwrap().contains("taken out"));
        let pending: Vec<_> = store
            .pending_moves()
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(pending, vec![waiting.id]);
    }

    #[test]
    fn free_names_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(free_name(dir.path(), "A.CSV"), dir.path().join("A.CSV"));
        std::fs::write(dir.path().join("A.CSV"), b"1").unwrap();
        assert_eq!(free_name(dir.path(), "A.CSV"), dir.path().join("A (2).CSV"));
        std::fs::write(dir.path().join("A (2).CSV"), b"1").unwrap();
        assert_eq!(free_name(dir.path(), "A.CSV"), dir.path().join("A (3).CSV"));
        std::fs::write(dir.path().join("NOEXT"), b"1").unwrap();
        assert_eq!(free_name(dir.path(), "NOEXT"), dir.path().join("NOEXT (2)"));
    }
}
