//! The service manager (systemd, `Type=notify`): readiness, reload and stop notices, and a
//! watchdog that is pinged only while the appliance proves it is alive.
//!
//! Invariant: the watchdog is pinged only after a round trip through what can hang: the store's
//! committer answers a write, and the drop-folder scan has completed recently while the pipeline
//! runs. A wedged daemon stops pinging and is restarted by systemd. It does not keep looking
//! healthy. Outside systemd (no `NOTIFY_SOCKET`) every notice here does nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::store::Store;

/// A drop-folder scan may take this long (or ten rescan intervals, if longer) before the
/// watchdog stops being pinged: a burst of thousands of files is slow, and that is no hang.
const INTAKE_STALL_MIN: Duration = Duration::from_secs(600);

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        debug!(error = %e, "the service manager did not take a notice");
    }
}

/// The appliance is up: the store is open, the admin UI listens, the stages run.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload (SIGHUP) started; [`ready`] follows when the new configuration runs.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
}

/// The stop started (in-flight work is being finished).
pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("停止中 (stopping: finishing in-flight work)"),
    ]);
}

/// When the drop-folder scan last completed, shared by the intake (which beats) and the watchdog
/// (which reads). Zero means "not running": the pipeline is stopped (no office yet, or between
/// two runs), which is no hang.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

/// The clock the heartbeat counts in (milliseconds since the first use, plus one).
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

impl Heartbeat {
    /// A scan completed (or the stage started).
    pub fn beat(&self) {
        self.0.store(now_ms(), Ordering::Relaxed);
    }

    /// The stage stopped: nothing is expected from it until it starts again.
    pub fn idle(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// How long since the last beat, when the stage runs.
    pub fn age(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            t => Some(Duration::from_millis(now_ms().saturating_sub(t))),
        }
    }
}

/// Why the watchdog was not pinged this time.
#[derive(Debug, PartialEq, Eq)]
pub enum Unwell {
    /// The store's committer did not answer in time.
    Store(String),
    /// The drop-folder scan has not completed for this long.
    Intake(Duration),
}

/// One liveness check: the committer answers a write (deferred durability: no fsync of its
/// own) within `within`, and the intake's last scan is younger than its limit.
pub async fn check(
    store: &Store,
    intake: &Heartbeat,
    intake_limit: Duration,
    within: Duration,
) -> Result<(), Unwell> {
    match tokio::time::timeout(within, store.write_async_deferred(|_| Ok(()))).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Unwell::Store(e.to_string())),
        Err(_) => return Err(Unwell::Store(format!("no answer in {within:?}"))),
    }
    match intake.age() {
        Some(age) if age > intake_limit => Err(Unwell::Intake(age)),
        _ => Ok(()),
    }
}

/// The watchdog: when systemd asked for one (`WatchdogSec=`), checks liveness three times per
/// watchdog period and pings after each good check. Returns at shutdown; without a watchdog it
/// only waits for the shutdown.
pub async fn watchdog(
    store: Store,
    intake: Heartbeat,
    rescan_interval: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(period) = sd_notify::watchdog_enabled() else {
        shutdown.cancelled().await;
        return Ok(());
    };
    let every = (period / 3).max(Duration::from_millis(100));
    let intake_limit = INTAKE_STALL_MIN.max(rescan_interval * 10);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        match check(&store, &intake, intake_limit, every).await {
            Ok(()) => notify(&[NotifyState::Watchdog]),
            Err(why) => {
                warn!(
                    ?why,
                    "動作確認に失敗しました。続くと systemd が再起動します (liveness check failed; the watchdog is not pinged, and systemd restarts the service if this goes on)"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_running_store_and_a_fresh_scan_are_well_and_a_stalled_scan_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let beat = Heartbeat::default();
        let limit = Duration::from_millis(200);
        let within = Duration::from_secs(5);
        // Not running: nothing expected.
        assert_eq!(check(&store, &beat, limit, within).await, Ok(()));
        beat.beat();
        assert_eq!(check(&store, &beat, limit, within).await, Ok(()));
        std::thread::sleep(Duration::from_millis(300));
        assert!(matches!(
            check(&store, &beat, limit, within).await,
            Err(Unwell::Intake(age)) if age >= limit
        ));
        // A stopped stage is no hang.
        beat.idle();
        assert_eq!(check(&store, &beat, limit, within).await, Ok(()));
    }

    #[tokio::test]
    async fn a_read_only_store_is_unwell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        drop(Store::open(&path).unwrap());
        let store = Store::open_read_only(&path).unwrap();
        assert!(matches!(
            check(
                &store,
                &Heartbeat::default(),
                Duration::from_secs(1),
                Duration::from_secs(5)
            )
            .await,
            Err(Unwell::Store(_))
        ));
    }
}
