//! The life of a submission after the gateway has accepted the request: recording it with its
//! 到達 result and its (hidden) 受付 result, revealing the 受付 result when it is due, and
//! withdrawal (取消).
//!
//! Invariants: the 受付 result is decided once, at arrival, from the bytes, the processing month
//! in force then and the user's offices then; it is revealed `reception_delay_ms` of simulated
//! time later (or at once on `POST /sim/advance`), and a reveal is persisted, so moving the
//! virtual clock backwards never un-decides it. A withdrawn submission stays withdrawn.
//! All functions here block on the state store; async callers run them on the blocking pool.

use jiff::Timestamp;

use crate::clock::JST;
use crate::reception::{self, ReceptionContext};
use crate::sim::{Core, UserView};
use crate::state::{NewSubmission, Recorded, StateError, Submission};

/// What the gateway knows about a request that passed every synchronous check.
#[derive(Debug, Clone)]
pub struct Arrival<'a> {
    pub user: &'a UserView,
    pub idempotency_key: &'a str,
    pub file_name: Option<&'a str>,
    pub body: &'a [u8],
    pub sha256: &'a str,
    pub arrived_at: Timestamp,
    pub processing_month: String,
}

/// The outcome of a withdrawal request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withdrawal {
    NotFound,
    Closed,
    Withdrawn(Box<Submission>),
}

impl Core {
    /// Runs the 到達 and 受付 checks and records the submission (committed before returning).
    pub fn record_arrival(&self, arrival: &Arrival<'_>) -> Result<Recorded, StateError> {
        let arrival_errors = reception::check_arrival(arrival.file_name, arrival.body);
        let reception = arrival_errors.is_empty().then(|| {
            reception::check_reception(
                arrival.body,
                &ReceptionContext {
                    processing_month: &arrival.processing_month,
                    offices: &arrival.user.offices,
                },
            )
        });
        let arrived_at_ms = arrival.arrived_at.as_millisecond();
        let delay = i64::try_from(self.config.reception_delay_ms).unwrap_or(i64::MAX);
        let receipt_date = JST
            .to_datetime(arrival.arrived_at)
            .date()
            .strftime("%Y%m%d")
            .to_string();
        let new = NewSubmission {
            receipt_date,
            idempotency_key: arrival.idempotency_key.to_owned(),
            user_id: arrival.user.user_id.clone(),
            sha256: arrival.sha256.to_owned(),
            office_number: reception::control_office_number(arrival.body),
            file_name: arrival.file_name.map(str::to_owned),
            size: arrival.body.len() as u64,
            arrived_at_ms,
            processing_month: arrival.processing_month.clone(),
            arrival_errors,
            reception,
            reception_due_ms: arrived_at_ms.saturating_add(delay),
        };
        let recorded = self.state.record_submission(new, arrival.body)?;
        if let Recorded::New(sub) = &recorded {
            tracing::info!(
                receipt_id = %sub.receipt_id,
                idempotency_key = %sub.idempotency_key,
                user_id = %sub.user_id,
                office_number = sub.office_number.as_deref().unwrap_or("-"),
                file_name = sub.file_name.as_deref().unwrap_or("-"),
                size = sub.size,
                status = sub.status(),
                "claim recorded"
            );
            if let Some(month) = crate::window::Month::parse(&sub.processing_month) {
                self.review_months
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(month);
            }
            if sub.is_pending() {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(sub.seq, sub.reception_due_ms);
            }
        }
        Ok(recorded)
    }

    /// Reveals (and persists) the 受付 result of `seq` if it is still pending.
    /// `at_ms` is the reveal time recorded as `updated_at`.
    fn reveal(&self, seq: u64, at_ms: i64) -> Result<Option<Submission>, StateError> {
        let sub = self.state.modify_submission(seq, |s| {
            if !s.is_pending() {
                return false;
            }
            s.revealed_at_ms = Some(at_ms);
            s.updated_at_ms = at_ms;
            true
        })?;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&seq);
        if let Some(s) = &sub {
            tracing::info!(
                receipt_id = %s.receipt_id,
                status = s.status(),
                mark = s.reception_mark().unwrap_or("-"),
                "受付 result revealed"
            );
        }
        Ok(sub)
    }

    /// Reveals every pending result that is due by the simulated clock. Returns how many.
    pub fn finalise_due(&self) -> Result<usize, StateError> {
        let now = self.clock.now_ms();
        let due: Vec<(u64, i64)> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, due)| **due <= now)
            .map(|(seq, due)| (*seq, *due))
            .collect();
        for (seq, due) in &due {
            self.reveal(*seq, *due)?;
        }
        Ok(due.len())
    }

    /// Reveals every pending result now (`POST /sim/advance {"phase":"reception"}`).
    pub fn finalise_all(&self) -> Result<usize, StateError> {
        let now = self.clock.now_ms();
        let all: Vec<u64> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        for seq in &all {
            self.reveal(*seq, now)?;
        }
        Ok(all.len())
    }

    /// Brings one submission up to date (reveals its result if due) and returns it.
    pub fn refresh(&self, sub: Submission) -> Result<Submission, StateError> {
        if sub.is_pending() && sub.reception_due_ms <= self.clock.now_ms() {
            return Ok(self.reveal(sub.seq, sub.reception_due_ms)?.unwrap_or(sub));
        }
        Ok(sub)
    }

    /// The user's submission with this receipt ID, up to date.
    pub fn claim_for_user(
        &self,
        user_id: &str,
        receipt_id: &str,
    ) -> Result<Option<Submission>, StateError> {
        match self.state.by_receipt(receipt_id)? {
            Some(sub) if sub.user_id == user_id => Ok(Some(self.refresh(sub)?)),
            _ => Ok(None),
        }
    }

    /// Withdraws the user's submission if the withdraw cut-off of its window has not passed.
    /// Withdrawing an already withdrawn submission succeeds again.
    pub fn withdraw(&self, user_id: &str, receipt_id: &str) -> Result<Withdrawal, StateError> {
        let Some(sub) = self.claim_for_user(user_id, receipt_id)? else {
            return Ok(Withdrawal::NotFound);
        };
        if sub.withdrawn_at_ms.is_some() {
            return Ok(Withdrawal::Withdrawn(Box::new(sub)));
        }
        let now = self.clock.now();
        let allowed = crate::window::Month::parse(&sub.processing_month)
            .map(|m| self.window.withdraw_allowed(m, now))
            .transpose()
            .map_err(|e| StateError::Inconsistent(e.to_string()))?
            .unwrap_or(false);
        if !allowed {
            return Ok(Withdrawal::Closed);
        }
        let now_ms = now.as_millisecond();
        let updated = self.state.modify_submission(sub.seq, |s| {
            if s.withdrawn_at_ms.is_some() {
                return false;
            }
            s.withdrawn_at_ms = Some(now_ms);
            s.updated_at_ms = now_ms;
            true
        })?;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&sub.seq);
        match updated {
            Some(s) => {
                tracing::info!(receipt_id = %s.receipt_id, "claim withdrawn");
                Ok(Withdrawal::Withdrawn(Box::new(s)))
            }
            None => Ok(Withdrawal::NotFound),
        }
    }

    /// Every submission in arrival order, up to date.
    pub fn received(&self) -> Result<Vec<Submission>, StateError> {
        self.finalise_due()?;
        self.state.submissions()
    }
}
