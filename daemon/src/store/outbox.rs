//! The store's alert tables: the current conditions (`alerts`, owned by the `alerts` module),
//! the outbox of messages not yet routed, the deliveries (pending, sent, given up) and the keys
//! of one-time events already told.
//!
//! Invariants: raising a new condition, resolving one and recording a one-time event each write
//! their message in the same transaction as the change itself; an event key is told at most
//! once; a message leaves the outbox only in the transaction that writes its deliveries.

use jiff::Timestamp;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::{ALERTS, Store, StoreError, read_table};
use crate::alerts::outbox::{Delivery, DeliveryState, Message, Phase};
use crate::alerts::{Alert, Raised};

macro_rules! db_err {
    ($e:expr) => {
        $e.map_err(|e| StoreError::Db(e.into()))
    };
}

/// Message id → message (JSON), waiting to be routed.
pub(super) const ALERT_OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("alert_outbox");
/// Delivery id → delivery (JSON).
pub(super) const ALERT_DELIVERIES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("alert_deliveries");
/// Delivery id → (): the deliveries not yet sent or given up, so that the dispatcher's look
/// every few seconds reads those and not the whole history.
pub(super) const ALERT_PENDING: TableDefinition<&str, ()> =
    TableDefinition::new("alert_deliveries_pending");
/// One-time event key → when it was first told (Unix ms).
pub(super) const ALERT_EVENTS: TableDefinition<&str, i64> = TableDefinition::new("alert_events");

fn json<T: serde::Serialize>(id: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|source| StoreError::Record {
        id: id.to_owned(),
        source,
    })
}

fn unjson<T: for<'de> serde::Deserialize<'de>>(id: &str, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|source| StoreError::Record {
        id: id.to_owned(),
        source,
    })
}

/// Puts `message` in the outbox (inside the caller's transaction). The dispatcher finds it at
/// its next look (within seconds); callers outside a transaction also [`crate::alerts::wake`] it.
pub(crate) fn enqueue_in(txn: &WriteTransaction, message: &Message) -> Result<(), StoreError> {
    let bytes = json(&message.id, message)?;
    let mut t = db_err!(txn.open_table(ALERT_OUTBOX))?;
    db_err!(t.insert(message.id.as_str(), bytes.as_slice()))?;
    Ok(())
}

/// Puts a one-time event's message in the outbox unless its key was told before; true if it
/// was queued.
pub(crate) fn enqueue_event_in(
    txn: &WriteTransaction,
    message: &Message,
) -> Result<bool, StoreError> {
    let bytes = json(&message.id, message)?;
    let mut events = db_err!(txn.open_table(ALERT_EVENTS))?;
    if db_err!(events.get(message.key.as_str()))?.is_some() {
        return Ok(false);
    }
    db_err!(events.insert(message.key.as_str(), message.at.as_millisecond()))?;
    let mut t = db_err!(txn.open_table(ALERT_OUTBOX))?;
    db_err!(t.insert(message.id.as_str(), bytes.as_slice()))?;
    Ok(true)
}

/// Writes deliveries and keeps the pending index in step (inside the caller's transaction).
fn put_deliveries_in(
    txn: &WriteTransaction,
    encoded: &[(String, DeliveryState, Vec<u8>)],
) -> Result<(), StoreError> {
    let mut t = db_err!(txn.open_table(ALERT_DELIVERIES))?;
    let mut p = db_err!(txn.open_table(ALERT_PENDING))?;
    for (id, state, bytes) in encoded {
        db_err!(t.insert(id.as_str(), bytes.as_slice()))?;
        if *state == DeliveryState::Pending {
            db_err!(p.insert(id.as_str(), ()))?;
        } else {
            db_err!(p.remove(id.as_str()))?;
        }
    }
    Ok(())
}

impl Store {
    /// Raises (or refreshes) a condition; a new one puts its message in the outbox in the same
    /// transaction. The first-raised time of a known key is kept.
    pub fn raise_alert(&self, mut alert: Alert) -> Result<Raised, StoreError> {
        self.write(move |txn| {
            let mut t = db_err!(txn.open_table(ALERTS))?;
            let previous = db_err!(t.get(alert.key.as_str()))?
                .and_then(|v| serde_json::from_slice::<Alert>(v.value()).ok());
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
            let bytes = json(&alert.key, &alert)?;
            db_err!(t.insert(alert.key.as_str(), bytes.as_slice()))?;
            drop(t);
            if raised == Raised::New {
                enqueue_in(txn, &crate::alerts::message_of(&alert, Phase::Raised))?;
            }
            Ok(raised)
        })
        .inspect(|r| {
            if *r == Raised::New {
                crate::alerts::wake();
            }
        })
    }

    /// Resolves a condition; true if there was one, and then its "resolved" message is put in
    /// the outbox in the same transaction.
    pub fn resolve_alert(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.write(move |txn| {
            let mut t = db_err!(txn.open_table(ALERTS))?;
            let old = db_err!(t.remove(key.as_str()))?.map(|v| v.value().to_vec());
            drop(t);
            let Some(old) = old else { return Ok(false) };
            match serde_json::from_slice::<Alert>(&old) {
                Ok(alert) => enqueue_in(txn, &crate::alerts::message_of(&alert, Phase::Resolved))?,
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "読めない通知の記録を解除しました (unreadable alert record resolved)")
                }
            }
            Ok(true)
        })
        .inspect(|resolved| {
            if *resolved {
                crate::alerts::wake();
            }
        })
    }

    /// Records a one-time event (a claim refused, new returns); false if its key was told
    /// before.
    pub fn record_event(&self, message: Message) -> Result<bool, StoreError> {
        self.write(move |txn| enqueue_event_in(txn, &message))
            .inspect(|queued| {
                if *queued {
                    crate::alerts::wake();
                }
            })
    }

    /// The messages waiting to be routed, oldest first.
    pub fn outbox(&self) -> Result<Vec<Message>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, ALERT_OUTBOX)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(t.iter())? {
            let (k, v) = db_err!(entry)?;
            match unjson::<Message>(k.value(), v.value()) {
                Ok(m) => out.push(m),
                Err(e) => {
                    tracing::warn!(id = k.value(), error = %e, "送信待ちの通知に読めないものがあります (unreadable outbox message)")
                }
            }
        }
        Ok(out)
    }

    /// Routes a message: writes its deliveries and takes it out of the outbox, together.
    pub fn route_message(
        &self,
        message_id: &str,
        deliveries: Vec<Delivery>,
    ) -> Result<(), StoreError> {
        let message_id = message_id.to_owned();
        let mut encoded = Vec::with_capacity(deliveries.len());
        for d in &deliveries {
            encoded.push((d.id.clone(), d.state, json(&d.id, d)?));
        }
        self.write(move |txn| {
            put_deliveries_in(txn, &encoded)?;
            let mut o = db_err!(txn.open_table(ALERT_OUTBOX))?;
            db_err!(o.remove(message_id.as_str()))?;
            Ok(())
        })
    }

    /// Every delivery, oldest first (`pending_only`: those not yet sent or given up, read
    /// through their index).
    pub fn deliveries(&self, pending_only: bool) -> Result<Vec<Delivery>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, ALERT_DELIVERIES)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if pending_only {
            let Some(p) = read_table(&txn, ALERT_PENDING)? else {
                return Ok(Vec::new());
            };
            for entry in db_err!(p.iter())? {
                let (k, _) = db_err!(entry)?;
                let Some(v) = db_err!(t.get(k.value()))? else {
                    continue;
                };
                match unjson::<Delivery>(k.value(), v.value()) {
                    Ok(d) if d.state == DeliveryState::Pending => out.push(d),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(id = k.value(), error = %e, "通知の配信記録に読めないものがあります (unreadable alert delivery)")
                    }
                }
            }
            return Ok(out);
        }
        for entry in db_err!(t.iter())? {
            let (k, v) = db_err!(entry)?;
            match unjson::<Delivery>(k.value(), v.value()) {
                Ok(d) if !pending_only || d.state == DeliveryState::Pending => out.push(d),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(id = k.value(), error = %e, "通知の配信記録に読めないものがあります (unreadable alert delivery)")
                }
            }
        }
        Ok(out)
    }

    /// The newest `limit` deliveries, newest first (for the UI).
    pub fn recent_deliveries(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let txn = self.read()?;
        let Some(t) = read_table(&txn, ALERT_DELIVERIES)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in db_err!(t.iter())?.rev() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = db_err!(entry)?;
            if let Ok(d) = unjson::<Delivery>(k.value(), v.value()) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Writes deliveries back (after a try), in one transaction.
    pub fn put_deliveries(&self, deliveries: Vec<Delivery>) -> Result<(), StoreError> {
        let mut encoded = Vec::with_capacity(deliveries.len());
        for d in &deliveries {
            encoded.push((d.id.clone(), d.state, json(&d.id, d)?));
        }
        self.write(move |txn| put_deliveries_in(txn, &encoded))
    }

    /// Forgets sent and given-up deliveries older than `before`, and event keys older than
    /// `events_before`; returns how many rows went.
    pub fn prune_alert_history(
        &self,
        before: Timestamp,
        events_before: Timestamp,
    ) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let mut gone = 0;
            let mut t = db_err!(txn.open_table(ALERT_DELIVERIES))?;
            let old: Vec<String> = {
                let mut ids = Vec::new();
                for entry in db_err!(t.iter())? {
                    let (k, v) = db_err!(entry)?;
                    let Ok(d) = unjson::<Delivery>(k.value(), v.value()) else {
                        continue;
                    };
                    let done_at = d.sent_at.unwrap_or(d.next_attempt_at);
                    if d.state != DeliveryState::Pending && done_at < before {
                        ids.push(k.value().to_owned());
                    }
                }
                ids
            };
            for id in old {
                db_err!(t.remove(id.as_str()))?;
                gone += 1;
            }
            let mut e = db_err!(txn.open_table(ALERT_EVENTS))?;
            let cutoff = events_before.as_millisecond();
            let before_len = db_err!(e.len())?;
            db_err!(e.retain(|_, at| at >= cutoff))?;
            gone += usize::try_from(before_len - db_err!(e.len())?).unwrap_or(usize::MAX);
            Ok(gone)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::outbox::Destination;
    use crate::config::Language;
    use crate::submission::{State, Submission};

    fn alert(key: &str, text: &str) -> Alert {
        let now = Timestamp::now();
        Alert {
            key: key.into(),
            kind: "disk_low".into(),
            severity: "error".into(),
            offices: vec![],
            message_ja: text.into(),
            message_en: text.into(),
            raised_at: now,
            updated_at: now,
        }
    }

    fn phases(store: &Store) -> Vec<(String, Phase)> {
        store
            .outbox()
            .unwrap()
            .into_iter()
            .map(|m| (m.key, m.phase))
            .collect()
    }

    #[test]
    fn a_condition_queues_one_message_when_it_begins_and_one_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        assert_eq!(
            store.raise_alert(alert("disk_low/state", "a")).unwrap(),
            Raised::New
        );
        assert_eq!(
            store.raise_alert(alert("disk_low/state", "a")).unwrap(),
            Raised::Same
        );
        assert_eq!(
            store.raise_alert(alert("disk_low/state", "b")).unwrap(),
            Raised::Changed
        );
        assert_eq!(
            phases(&store),
            vec![("disk_low/state".into(), Phase::Raised)]
        );
        assert!(store.resolve_alert("disk_low/state").unwrap());
        assert!(!store.resolve_alert("disk_low/state").unwrap());
        assert_eq!(
            phases(&store),
            vec![
                ("disk_low/state".into(), Phase::Raised),
                ("disk_low/state".into(), Phase::Resolved)
            ]
        );
        // Routing takes a message out and puts its deliveries in, together.
        let first = store.outbox().unwrap().remove(0);
        let d = Delivery::new(
            first.clone(),
            Destination::Webhook { name: "w".into() },
            Language::Ja,
            false,
            None,
            Timestamp::now(),
        );
        store.route_message(&first.id, vec![d.clone()]).unwrap();
        assert_eq!(store.outbox().unwrap().len(), 1);
        assert_eq!(store.deliveries(true).unwrap(), vec![d.clone()]);
        let mut sent = d;
        sent.state = DeliveryState::Sent;
        sent.sent_at = Some(Timestamp::now());
        store.put_deliveries(vec![sent.clone()]).unwrap();
        assert!(store.deliveries(true).unwrap().is_empty());
        assert_eq!(store.recent_deliveries(10).unwrap(), vec![sent]);
        // History older than the cutoff goes; newer stays.
        let past = Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_hours(1))
            .unwrap();
        assert_eq!(store.prune_alert_history(past, past).unwrap(), 0);
        let future = Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(1))
            .unwrap();
        assert_eq!(store.prune_alert_history(future, past).unwrap(), 1);
    }

    #[test]
    fn a_state_change_queues_its_event_once_in_its_own_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let mut sub = Submission::new("A.CSV".into(), "ab".repeat(32), 3, Timestamp::now());
        sub.transition(State::Queued, "taken", Timestamp::now());
        let id = sub.id.clone();
        store.record_new(sub, b"abc".to_vec()).unwrap();
        assert!(store.outbox().unwrap().is_empty(), "queued needs nobody");
        store
            .update(&id, |s| {
                s.transition(State::FailedNeedsAttention, "no", Timestamp::now())
            })
            .unwrap();
        // The same state written again (a retry of the update) tells nothing new.
        store.update(&id, |s| s.note = None).unwrap();
        let out = store.outbox().unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].kind, "claim_failed");
        assert_eq!(out[0].key, format!("claim_failed/{id}"));
        assert_eq!(
            out[0].link.as_deref(),
            Some(format!("/submissions/{id}").as_str())
        );
        // An event key is told once, even if recorded again.
        assert!(!store.record_event(out[0].clone()).unwrap());
    }
}
