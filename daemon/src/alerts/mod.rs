//! Alerts: everything that needs a person. Stages report here: conditions (the window closing
//! with offices that have sent nothing, a low disk, a stale backup, a certificate expiring, a
//! notice missing) are raised and resolved by a de-duplication key, and one-time events (a
//! claim refused or not sendable, new returns, a payment notice) are recorded by theirs. Each
//! new condition, resolution and event becomes one message in a durable outbox; the dispatcher
//! routes it to the people who subscribe (per office and corporation, by kind), and delivers it
//! by e-mail and webhook with retries, a rate limit and a daily digest.
//!
//! Invariant: an alert's key names its condition (`window_closing/202611`); raising the same
//! key again updates the text but keeps the time it was first raised and sends nothing, so a
//! condition that persists is one message (and one "resolved" message), not one per check.

pub mod dispatch;
pub mod events;
pub mod kinds;
pub mod mail;
pub mod outbox;
pub mod render;
pub mod routing;
pub mod sweep;
pub mod trial;
pub mod webhook;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// One current alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The de-duplication key: one condition, one key.
    pub key: String,
    /// What kind of condition (`window_closing`, …).
    pub kind: String,
    /// `warning` or `error`.
    pub severity: String,
    /// The offices concerned.
    #[serde(default)]
    pub offices: Vec<String>,
    /// What happened and what to do, in Japanese.
    pub message_ja: String,
    /// The same in English.
    pub message_en: String,
    /// When the condition was first seen.
    pub raised_at: Timestamp,
    /// When it was last seen.
    pub updated_at: Timestamp,
}

/// Whether raising changed anything a person should hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raised {
    /// A new condition.
    New,
    /// The same condition, with different details (say, one office fewer).
    Changed,
    /// Nothing new.
    Same,
}

/// Raises (or refreshes) an alert. The first-raised time of an existing key is kept; a new
/// condition's message is queued with it.
pub fn raise(store: &Store, alert: Alert) -> Result<Raised, StoreError> {
    store.raise_alert(alert)
}

/// Resolves an alert; true if there was one (and then its "resolved" message is queued).
pub fn resolve(store: &Store, key: &str) -> Result<bool, StoreError> {
    store.resolve_alert(key)
}

/// The outbox message that tells of `alert` beginning or ending.
pub fn message_of(alert: &Alert, phase: outbox::Phase) -> outbox::Message {
    let (severity, ja, en, at) = match phase {
        outbox::Phase::Resolved => (
            "info",
            format!("解決しました: {}", alert.message_ja),
            format!("Resolved: {}", alert.message_en),
            jiff::Timestamp::now(),
        ),
        _ => (
            alert.severity.as_str(),
            alert.message_ja.clone(),
            alert.message_en.clone(),
            alert.updated_at,
        ),
    };
    outbox::Message::new(
        alert.key.clone(),
        phase,
        &alert.kind,
        severity,
        alert.offices.clone(),
        ja,
        en,
        None,
        at,
    )
}

static WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Tells the dispatcher that the outbox has something new (called by the store after queueing).
pub fn wake() {
    WAKE.notify_one();
}

/// Waits until [`wake`] is called (or was called since the last wait).
pub async fn woken() {
    WAKE.notified().await;
}

/// Every current alert, oldest first. Unreadable records are skipped (and logged).
pub fn current(store: &Store) -> Result<Vec<Alert>, StoreError> {
    let mut out: Vec<Alert> = store
        .alerts()?
        .into_iter()
        .filter_map(|(k, v)| match serde_json::from_slice(&v) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(key = %k, error = %e, "読めない通知の記録があります (unreadable alert record)");
                None
            }
        })
        .collect();
    out.sort_by_key(|a| a.raised_at);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(offices: &[&str], at: Timestamp) -> Alert {
        Alert {
            key: "window_closing/202611".into(),
            kind: "window_closing".into(),
            severity: "error".into(),
            offices: offices.iter().map(|s| s.to_string()).collect(),
            message_ja: format!("未送信: {}", offices.join(",")),
            message_en: format!("not sent: {}", offices.join(",")),
            raised_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn one_condition_is_one_alert_until_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let t0: Timestamp = "2026-11-10T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-11-10T01:00:00Z".parse().unwrap();
        assert_eq!(raise(&store, alert(&["1", "2"], t0)).unwrap(), Raised::New);
        assert_eq!(raise(&store, alert(&["1", "2"], t1)).unwrap(), Raised::Same);
        assert_eq!(raise(&store, alert(&["2"], t1)).unwrap(), Raised::Changed);
        let now = current(&store).unwrap();
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].raised_at, t0, "first seen time kept");
        assert_eq!(now[0].offices, vec!["2".to_string()]);
        assert!(resolve(&store, "window_closing/202611").unwrap());
        assert!(!resolve(&store, "window_closing/202611").unwrap());
        assert!(current(&store).unwrap().is_empty());
    }
}
