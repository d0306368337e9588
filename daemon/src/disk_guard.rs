//! Disk guard: watches the free space of the two volumes the appliance writes to — the drop
//! folder's (billing software writes there) and the state folder's (the store) — and acts before
//! either is full. While the state volume is low, intake takes no file and the mirror downloads
//! no notice; each low volume is one alert (raised once, resolved once) and one ERROR line in the
//! journal.
//!
//! Invariant: new work never fills the store's volume. Below `disk.min_free_mib` nothing new is
//! written to the store — the files wait in the drop folder, the notices wait at the federation —
//! and work resumes by itself once free space is back above the limit plus a margin (so that a
//! volume hovering at the limit does not flap). A low drop volume pauses nothing: taking a file
//! frees no space there, and a file the billing software could not finish has no end record and
//! is held back by intake's completeness check.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::alerts::{self, Alert};
use crate::store::Store;

/// Settings of the guard (`[disk]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSettings {
    /// Free bytes below which a volume is low.
    pub min_free_bytes: u64,
    /// How often the volumes are looked at.
    pub check_interval: Duration,
}

/// What the guard last saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// The state volume is low: intake and the mirror pause.
    pub state_low: bool,
    /// The drop volume is low: the billing software may soon fail to write.
    pub drop_low: bool,
}

/// The stages' view of the guard: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct DiskGate(watch::Receiver<Pressure>);

impl DiskGate {
    /// A gate that never closes (for callers without a guard).
    pub fn open() -> DiskGate {
        let (tx, rx) = watch::channel(Pressure::default());
        // Keep the sender alive for the whole process, so that `changed()` waits instead of
        // failing at once.
        std::mem::forget(tx);
        DiskGate(rx)
    }

    /// Whether new work must wait because the store's volume is low.
    pub fn store_paused(&self) -> bool {
        self.0.borrow().state_low
    }

    /// Resolves when the guard's view changes.
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            // The guard stopped (the appliance is stopping): nothing will change any more.
            std::future::pending::<()>().await;
        }
    }
}

/// Free and total bytes of the volume holding `path` (as an unprivileged user sees them).
pub fn free_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let st = rustix::fs::statvfs(path)?;
    let unit = st.f_frsize.max(1);
    Ok((
        st.f_bavail.saturating_mul(unit),
        st.f_blocks.saturating_mul(unit),
    ))
}

/// The guard task and the sender of its view.
#[derive(Debug)]
pub struct DiskGuard {
    store: Store,
    drop_dir: PathBuf,
    state_dir: PathBuf,
    settings: DiskSettings,
    tx: watch::Sender<Pressure>,
    /// Per volume (drop, state): whether its alert is in the store. A raise that failed (the
    /// store's disk may be that full) is tried again at the next look.
    recorded: std::sync::Mutex<[bool; 2]>,
}

/// One watched volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Volume {
    Drop,
    State,
}

impl Volume {
    fn key(self) -> &'static str {
        match self {
            Volume::Drop => "disk_low/drop",
            Volume::State => "disk_low/state",
        }
    }
}

/// The margin above the limit that free space must reach before a low volume counts as
/// recovered: a tenth of the limit, at least 16 MiB.
fn recovery_margin(min_free: u64) -> u64 {
    (min_free / 10).max(16 << 20)
}

/// Whether a volume is low now, given whether it was low at the last look.
fn is_low(free: u64, min_free: u64, was_low: bool) -> bool {
    if was_low {
        free < min_free.saturating_add(recovery_margin(min_free))
    } else {
        free < min_free
    }
}

/// Bytes as people read them.
fn human(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= 10 * 1024 * MIB {
        format!("{} GiB", bytes / (1024 * MIB))
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

impl DiskGuard {
    /// A guard for the two folders, and the gate the stages read.
    pub fn new(
        store: Store,
        drop_dir: PathBuf,
        state_dir: PathBuf,
        settings: DiskSettings,
    ) -> (DiskGuard, DiskGate) {
        let (tx, rx) = watch::channel(Pressure::default());
        let guard = DiskGuard {
            store,
            drop_dir,
            state_dir,
            settings,
            tx,
            recorded: std::sync::Mutex::new([false, false]),
        };
        // The first look happens before any stage starts, so that a daemon started on a full
        // disk takes nothing.
        guard.check_once();
        (guard, DiskGate(rx))
    }

    /// Looks every `check_interval` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let this = std::sync::Arc::new(self);
        let mut tick = tokio::time::interval(this.settings.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate: `new` already looked
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    // statvfs and the store's write may wait on a slow (network) volume.
                    let guard = this.clone();
                    if let Err(e) = tokio::task::spawn_blocking(move || guard.check_once()).await {
                        warn!(code = %admin_ui::help::code::SYSTEM_DISK_CHECK_FAILED, error = %e, "ディスクの確認に失敗しました。次の確認で自動でやり直します (the disk check failed; the next look retries)");
                    }
                }
            }
        }
    }

    /// One look at both volumes: updates the gate, raises or resolves alerts.
    fn check_once(&self) {
        let mut recorded = self
            .recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = *self.tx.borrow();
        let mut now = before;
        for (i, volume, dir) in [
            (0, Volume::Drop, &self.drop_dir),
            (1, Volume::State, &self.state_dir),
        ] {
            let was_low = match volume {
                Volume::Drop => before.drop_low,
                Volume::State => before.state_low,
            };
            let (free, total) = match free_space(dir) {
                Ok(f) => f,
                Err(e) => {
                    warn!(code = %admin_ui::help::code::SYSTEM_DISK_CHECK_FAILED, folder = %dir.display(), error = %e, "ディスクの空きを調べられません (cannot read the free space)");
                    continue;
                }
            };
            let low = is_low(free, self.settings.min_free_bytes, was_low);
            match volume {
                Volume::Drop => now.drop_low = low,
                Volume::State => now.state_low = low,
            }
            if low && !was_low {
                self.log_low(volume, dir, free, total);
            } else if !low && was_low {
                info!(folder = %dir.display(), free_mib = free >> 20, volume = volume.key(),
                    "ディスクの空きが戻りました (free space is back)");
            }
            if low && !recorded[i] {
                recorded[i] = self.raise(volume, dir, free);
            } else if !low && recorded[i] {
                match alerts::resolve(&self.store, volume.key()) {
                    Ok(_) => recorded[i] = false,
                    Err(e) => {
                        warn!(error = %e, "ディスクの通知を解除できません (cannot resolve the disk alert)")
                    }
                }
            }
        }
        if now != before {
            if now.state_low && !before.state_low {
                error!(
                    code = %admin_ui::help::code::SYSTEM_DISK_LOW,
                    "データベースのディスクの空きが少ないため、ファイルの受付とお知らせの取得を一時停止しました。ファイルは共有フォルダーに残っています (intake and the notice mirror are paused: the store's disk is nearly full; files stay in the drop folder)"
                );
            } else if before.state_low && !now.state_low {
                info!(
                    "ファイルの受付とお知らせの取得を再開しました (intake and the notice mirror resume)"
                );
            }
            self.tx.send_replace(now);
        }
    }

    fn log_low(&self, volume: Volume, dir: &Path, free: u64, total: u64) {
        let code = match volume {
            Volume::Drop => admin_ui::help::code::SYSTEM_DROP_DISK_LOW,
            Volume::State => admin_ui::help::code::SYSTEM_DISK_NEARLY_FULL,
        };
        error!(
            %code,
            folder = %dir.display(),
            free_mib = free >> 20,
            total_mib = total >> 20,
            min_free_mib = self.settings.min_free_bytes >> 20,
            volume = volume.key(),
            "ディスクの空きが少なくなっています (a disk is nearly full)"
        );
    }

    /// Records the alert; false when the store could not take it.
    fn raise(&self, volume: Volume, dir: &Path, free: u64) -> bool {
        let (free_h, min_h) = (human(free), human(self.settings.min_free_bytes));
        let (message_ja, message_en) = match volume {
            Volume::State => (
                format!(
                    "データベース（{dir}）のディスクの空きが {free_h} しかありません（下限 {min_h}）。新しい請求ファイルの受付とお知らせの取得を止めています。ファイルは共有フォルダーに残っていて、失われていません。不要なファイルを消すかディスクを増やしてください。空きが戻ると自動で再開します。",
                    dir = dir.display()
                ),
                format!(
                    "The store's disk ({dir}) has only {free_h} free (limit {min_h}). New claim files are not taken and notices are not fetched; the files stay in the drop folder and nothing is lost. Free some space or enlarge the disk; work resumes by itself.",
                    dir = dir.display()
                ),
            ),
            Volume::Drop => (
                format!(
                    "共有フォルダー（{dir}）のディスクの空きが {free_h} しかありません（下限 {min_h}）。請求ソフトがファイルを書けなくなるおそれがあります。不要なファイルを消すかディスクを増やしてください。",
                    dir = dir.display()
                ),
                format!(
                    "The drop folder's disk ({dir}) has only {free_h} free (limit {min_h}); billing software may soon fail to write claim files. Free some space or enlarge the disk.",
                    dir = dir.display()
                ),
            ),
        };
        let now = Timestamp::now();
        let alert = Alert {
            key: volume.key().to_owned(),
            kind: "disk_low".to_owned(),
            severity: "error".to_owned(),
            offices: Vec::new(),
            message_ja,
            message_en,
            raised_at: now,
            updated_at: now,
        };
        match alerts::raise(&self.store, alert) {
            Ok(_) => true,
            Err(e) => {
                warn!(error = %e, "ディスクの警告を記録できません。次の確認で再試行します (cannot record the disk alert; retrying at the next check)");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_low_volume_recovers_only_past_the_margin() {
        let min = 100 << 20;
        let margin = recovery_margin(min);
        assert_eq!(
            margin,
            16 << 20,
            "a tenth of 100 MiB is below the 16 MiB floor"
        );
        assert!(!is_low(min, min, false), "exactly the limit is not low");
        assert!(is_low(min - 1, min, false));
        assert!(
            is_low(min + margin - 1, min, true),
            "still within the margin"
        );
        assert!(!is_low(min + margin, min, true));
        assert_eq!(recovery_margin(10 << 30), 1 << 30);
    }

    #[test]
    fn free_space_reads_the_volume_of_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = free_space(dir.path()).unwrap();
        assert!(total > 0 && free <= total, "free {free} of {total}");
        let err = free_space(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_limit_above_the_free_space_closes_the_gate_with_one_alert_per_volume() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        let settings = DiskSettings {
            min_free_bytes: u64::MAX / 2,
            check_interval: Duration::from_millis(20),
        };
        let (guard, gate) = DiskGuard::new(
            store.clone(),
            dir.path().to_owned(),
            dir.path().to_owned(),
            settings,
        );
        assert!(gate.store_paused(), "the first look happens in new()");
        let first = alerts::current(&store).unwrap();
        let keys: Vec<&str> = first.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["disk_low/drop", "disk_low/state"]);
        let token = CancellationToken::new();
        let task = tokio::spawn(guard.run(token.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let later = alerts::current(&store).unwrap();
        assert_eq!(
            later, first,
            "a condition that persists is not raised again at each look"
        );
        token.cancel();
        task.await.unwrap().unwrap();
    }

    #[test]
    fn an_ample_volume_leaves_the_gate_open_and_resolves_old_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        let (guard, gate) = DiskGuard::new(
            store.clone(),
            dir.path().to_owned(),
            dir.path().to_owned(),
            DiskSettings {
                min_free_bytes: 0,
                check_interval: Duration::from_secs(1),
            },
        );
        assert!(!gate.store_paused());
        assert!(alerts::current(&store).unwrap().is_empty());
        // Simulate a volume that was low and has recovered.
        guard.tx.send_replace(Pressure {
            state_low: true,
            drop_low: false,
        });
        *guard.recorded.lock().unwrap() = [false, true];
        assert!(guard.raise(Volume::State, dir.path(), 0));
        assert_eq!(alerts::current(&store).unwrap().len(), 1);
        guard.check_once();
        assert!(!gate.store_paused());
        assert_eq!(*guard.recorded.lock().unwrap(), [false, false]);
        assert!(alerts::current(&store).unwrap().is_empty());
    }
}
