//! Alerts: conditions that need a person (today the reception window closing with offices that
//! have sent nothing), kept in the store by a de-duplication key so that one condition is one
//! alert however often it is seen, and removed when it is resolved. `status` shows them; the
//! delivery by mail and webhook (issue 10) reads the same records.
//!
//! Invariant: an alert's key names its condition (`window_closing/202611`); raising the same
//! key again updates the text but keeps the time it was first raised, so a condition that
//! persists is one alert, not one per check.

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

/// Raises (or refreshes) an alert. The first-raised time of an existing key is kept.
pub fn raise(store: &Store, mut alert: Alert) -> Result<Raised, StoreError> {
    let previous = store
        .alerts()?
        .into_iter()
        .find(|(k, _)| *k == alert.key)
        .and_then(|(_, v)| serde_json::from_slice::<Alert>(&v).ok());
    let raised = match &previous {
        None => Raised::New,
        Some(p) => {
            alert.raised_at = p.raised_at;
            if p.offices == alert.offices && p.message_ja == alert.message_ja {
                Raised::Same
            } else {
                Raised::Changed
            }
        }
    };
    let bytes = serde_json::to_vec(&alert).map_err(|source| StoreError::Record {
        id: alert.key.clone(),
        source,
    })?;
    store.put_alert(&alert.key, bytes)?;
    Ok(raised)
}

/// Resolves an alert; true if there was one.
pub fn resolve(store: &Store, key: &str) -> Result<bool, StoreError> {
    Ok(store.remove_alert(key)?.is_some())
}

/// Every current alert, oldest first. Unreadable records are skipped (and logged).
pub fn current(store: &Store) -> Result<Vec<Alert>, StoreError> {
    let mut out: Vec<Alert> = store
        .alerts()?
        .into_iter()
        .filter_map(|(k, v)| match serde_json::from_slice(&v) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(key = %k, error = %e, "unreadable alert record");
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
