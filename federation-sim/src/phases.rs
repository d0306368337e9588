//! The notice phases of a processing month M: month end (review every statement of M's
//! submissions and issue 7211 / 7311 / 7411 / お知らせ per office) and payment (7513 / 7521 /
//! 7611 / 7621 / PDF per office with a paid statement), run from `POST /sim/advance` or by
//! themselves when the simulator clock passes their scheduled time (`[notices]`).
//!
//! Invariants: a phase runs at most once per month — phases are serialised by
//! `Core::phase_lock` and each run is committed by `State::commit_phase`, which checks and sets
//! the month's marker in the same write transaction as the notices, reviews and return history
//! it writes, so a crash leaves either all of a run or none of it. The payment phase of M runs
//! the month-end phase of M first if it has not run. Scheduled phases run in the order of their
//! times, so moving the clock far ahead runs each due month once, oldest first, and the
//! first-claim test of a later month sees the returns of the earlier ones. Only months with a
//! recorded submission are scheduled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::clock::{JST, format_jst, timestamp_from_ms};
use crate::notices::{self, Issuer};
use crate::reception::{Issue, ReceptionStatus};
use crate::review::{self, Decision, History, Reviewed};
use crate::sim::Core;
use crate::state::{NewNotice, NoticeMeta, PhaseCommit, ReturnMark, StateError};
use crate::statements;
use crate::window::{Month, WindowError};

/// How often the scheduler looks for due phases.
const SCHEDULE_EVERY: Duration = Duration::from_secs(1);

/// A notice phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    MonthEnd,
    Payment,
}

impl Phase {
    /// `month_end` or `payment` (as in `POST /sim/advance`).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::MonthEnd => "month_end",
            Phase::Payment => "payment",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        match s {
            "month_end" => Some(Phase::MonthEnd),
            "payment" => Some(Phase::Payment),
            _ => None,
        }
    }

    /// The state store's marker key of this phase for `month`.
    pub fn marker(self, month: Month) -> String {
        format!("{}:{month}", self.as_str())
    }

    /// Parses a marker key back.
    pub fn from_marker(marker: &str) -> Option<(Phase, Month)> {
        let (phase, month) = marker.split_once(':')?;
        Some((Phase::parse(phase)?, Month::parse(month)?))
    }
}

/// Why a phase could not run.
#[derive(Debug, thiserror::Error)]
pub enum PhaseError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Window(#[from] WindowError),
}

/// What one phase request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseRun {
    pub phase: Phase,
    pub month: Month,
    /// The phase had already run for the month: nothing was issued.
    pub already_done: bool,
    /// 受付 results revealed first (month end only).
    pub finalised: usize,
    /// Notices issued by this request (for `payment`, the month-end ones first if the month
    /// end ran now too).
    pub issued: Vec<NoticeMeta>,
}

impl Core {
    /// The 審査月 of `now`: the month whose reception window opened most recently (with the
    /// default window, the calendar month of `now`, also after its window has closed).
    pub fn review_month(&self, now: Timestamp) -> Result<Month, WindowError> {
        let this = Month::of(now);
        let times = self.window.times(this)?;
        Ok(if now >= times.opens_at {
            this
        } else {
            this.prev()
        })
    }

    /// When `phase` of `month` is due by the `[notices]` schedule.
    pub fn phase_time(&self, phase: Phase, month: Month) -> Result<Timestamp, WindowError> {
        let config = &self.config.notices;
        let (day_month, day, minutes) = match phase {
            Phase::MonthEnd => (
                month,
                config.month_end_day,
                config.month_end_minutes().unwrap_or(17 * 60),
            ),
            Phase::Payment => (
                month.next(),
                config.payment_day,
                config.payment_minutes().unwrap_or(17 * 60),
            ),
        };
        let day = u8::try_from(day.in_month(day_month.days())).unwrap_or(1);
        let start = day_month.day_start(day)?;
        Ok(timestamp_from_ms(
            start
                .as_millisecond()
                .saturating_add(i64::from(minutes) * 60_000),
        ))
    }

    fn phase_done(&self, phase: Phase, month: Month) -> bool {
        self.phases_done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(month, phase))
    }

    fn mark_done(&self, phase: Phase, month: Month) {
        self.phases_done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((month, phase));
    }

    /// Runs `phase` for `month` now, dated `at` (作成年月日 and `issued_at`). Idempotent: a
    /// phase that already ran issues nothing (`already_done`).
    pub fn run_phase(
        &self,
        phase: Phase,
        month: Month,
        at: Timestamp,
    ) -> Result<PhaseRun, PhaseError> {
        let _serial = self.phase_lock.lock().unwrap_or_else(|e| e.into_inner());
        let run = match phase {
            Phase::MonthEnd => self.month_end(month, at)?,
            Phase::Payment => self.payment(month, at)?,
        };
        tracing::info!(
            phase = phase.as_str(),
            processing_month = %month,
            already_done = run.already_done,
            notices = run.issued.len(),
            "notice phase"
        );
        Ok(run)
    }

    /// The month-end phase (the caller holds `phase_lock`).
    fn month_end(&self, month: Month, at: Timestamp) -> Result<PhaseRun, PhaseError> {
        let mut run = PhaseRun {
            phase: Phase::MonthEnd,
            month,
            already_done: true,
            finalised: 0,
            issued: Vec::new(),
        };
        let marker = Phase::MonthEnd.marker(month);
        if self.state.phase_marker(&marker)?.is_some() {
            self.mark_done(Phase::MonthEnd, month);
            return Ok(run);
        }
        run.finalised = self.finalise_all()?;
        let reviewed = self.review_submissions(month)?;
        let month_text = month.to_string();
        let created = JST.to_datetime(at).date();
        let mut commit = PhaseCommit {
            marker,
            ran_at: format_jst(at),
            ..PhaseCommit::default()
        };
        for (office, list) in reviewed {
            let issuer = self.issuer(&office, month, created);
            for doc in notices::month_end_documents(&issuer, &list) {
                commit.notices.push(new_notice(&office, month, at, doc));
            }
            for r in list
                .iter()
                .filter(|r| matches!(r.decision, Decision::Returned | Decision::Held))
            {
                commit.returned.push((
                    r.history_key(),
                    ReturnMark {
                        processing_month: month_text.clone(),
                        reason_code: r.reason_code.clone().unwrap_or_default(),
                        held: r.decision == Decision::Held,
                    },
                ));
            }
            commit.reviews.push((month_text.clone(), office, list));
        }
        if let Some(issued) = self.state.commit_phase(commit)? {
            run.already_done = false;
            run.issued = issued;
        }
        self.mark_done(Phase::MonthEnd, month);
        Ok(run)
    }

    /// The payment phase (the caller holds `phase_lock`); runs the month end first if needed.
    fn payment(&self, month: Month, at: Timestamp) -> Result<PhaseRun, PhaseError> {
        let mut run = PhaseRun {
            phase: Phase::Payment,
            month,
            already_done: true,
            finalised: 0,
            issued: Vec::new(),
        };
        let marker = Phase::Payment.marker(month);
        if self.state.phase_marker(&marker)?.is_some() {
            self.mark_done(Phase::Payment, month);
            return Ok(run);
        }
        let first = self.month_end(month, at)?;
        run.finalised = first.finalised;
        run.issued = first.issued;
        let created = JST.to_datetime(at).date();
        let mut commit = PhaseCommit {
            marker,
            ran_at: format_jst(at),
            ..PhaseCommit::default()
        };
        for (_, office, list) in self.state.reviews(Some(&month.to_string()))? {
            let issuer = self.issuer(&office, month, created);
            for doc in notices::payment_documents(&issuer, &list) {
                commit.notices.push(new_notice(&office, month, at, doc));
            }
        }
        if let Some(issued) = self.state.commit_phase(commit)? {
            run.already_done = false;
            run.issued.extend(issued);
        }
        self.mark_done(Phase::Payment, month);
        Ok(run)
    }

    fn issuer(&self, office: &str, month: Month, created: jiff::civil::Date) -> Issuer {
        Issuer {
            office_number: office.to_owned(),
            office_name: self.office(office).map(|o| o.name).unwrap_or_default(),
            month,
            created,
        }
    }

    /// Reviews every statement of the submissions of `month` that arrived, were not withdrawn
    /// and were not rejected (×), per office, in arrival order.
    fn review_submissions(
        &self,
        month: Month,
    ) -> Result<BTreeMap<String, Vec<Reviewed>>, PhaseError> {
        let month_text = month.to_string();
        let history = self.state.return_history()?;
        let mut by_office: BTreeMap<String, Vec<Reviewed>> = BTreeMap::new();
        for sub in self.state.submissions()? {
            let reception = match &sub.reception {
                Some(r) if r.status != ReceptionStatus::Rejected => r,
                _ => continue,
            };
            let Some(office) = sub.office_number.as_deref() else {
                continue;
            };
            if sub.processing_month != month_text
                || sub.arrival_failed()
                || sub.withdrawn_at_ms.is_some()
            {
                continue;
            }
            let body = self.state.body(sub.seq)?.ok_or_else(|| {
                StateError::Inconsistent(format!("submission {} has no body", sub.receipt_id))
            })?;
            let parsed = statements::statements(&body);
            let errors: &[Issue] = if reception.status == ReceptionStatus::AcceptedWithReturns {
                &reception.errors
            } else {
                &[]
            };
            let by_statement = statements::errors_by_statement(&parsed, errors);
            let list = by_office.entry(office.to_owned()).or_default();
            for (st, errs) in parsed.statements.iter().zip(&by_statement) {
                let key = review::history_key(office, &st.insured, &st.service_month, st.kind);
                let earlier: Vec<&ReturnMark> = history
                    .get(&key)
                    .map(|marks| {
                        marks
                            .iter()
                            .filter(|m| m.processing_month < month_text)
                            .collect()
                    })
                    .unwrap_or_default();
                let h = History {
                    returned_before: !earlier.is_empty(),
                    held_before: earlier.iter().any(|m| m.held),
                };
                list.push(review::review(office, &sub.receipt_id, st, errs, month, h));
            }
        }
        Ok(by_office)
    }

    /// Phases whose scheduled time has passed at `now` and that have not run, for months with
    /// a recorded submission, in the order of their times (month end before payment).
    pub fn due_phases(&self, now: Timestamp) -> Vec<(Timestamp, Phase, Month)> {
        let months: Vec<Month> = self
            .review_months
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        let mut due = Vec::new();
        for month in months {
            for phase in [Phase::MonthEnd, Phase::Payment] {
                if self.phase_done(phase, month) {
                    continue;
                }
                if let Ok(at) = self.phase_time(phase, month)
                    && at <= now
                {
                    due.push((at, phase, month));
                }
            }
        }
        due.sort();
        due
    }

    /// Runs every due phase in order, each dated its scheduled time.
    pub fn run_due_phases(&self) -> Result<Vec<PhaseRun>, PhaseError> {
        let mut runs = Vec::new();
        for (at, phase, month) in self.due_phases(self.clock.now()) {
            runs.push(self.run_phase(phase, month, at)?);
        }
        Ok(runs)
    }
}

fn new_notice(office: &str, month: Month, at: Timestamp, doc: notices::Document) -> NewNotice {
    NewNotice {
        office_number: office.to_owned(),
        kind_id: doc.kind_id.to_owned(),
        title: doc.title.to_owned(),
        processing_month: month.to_string(),
        issued_at: format_jst(at),
        media_type: doc.media_type.to_owned(),
        bytes: doc.bytes,
    }
}

/// Runs due phases by themselves (`[notices] auto`), looking once a second, until shutdown.
pub(crate) async fn scheduler(core: Arc<Core>, shutdown: CancellationToken) {
    if !core.config.notices.auto {
        return;
    }
    let mut tick = tokio::time::interval(SCHEDULE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if core.due_phases(core.clock.now()).is_empty() {
            continue;
        }
        let c = Arc::clone(&core);
        match tokio::task::spawn_blocking(move || c.run_due_phases()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot run a scheduled notice phase"),
            Err(e) => tracing::error!(error = %e, "notice scheduler task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DayOfMonth, SimConfig};
    use crate::sim::Simulator;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn markers_round_trip() {
        let m = Month::parse("202506").unwrap();
        for phase in [Phase::MonthEnd, Phase::Payment] {
            assert_eq!(Phase::from_marker(&phase.marker(m)), Some((phase, m)));
        }
        assert_eq!(Phase::MonthEnd.marker(m), "month_end:202506");
        assert_eq!(Phase::from_marker("reception:202506"), None);
    }

    #[test]
    fn schedule_times() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SimConfig::new(dir.path());
        config.notices.auto = false;
        let sim = Simulator::open(config.clone()).unwrap();
        let core = sim.core();
        let m = |s| Month::parse(s).unwrap();
        assert_eq!(
            core.phase_time(Phase::MonthEnd, m("202506")).unwrap(),
            ts("2025-06-30T17:00:00+09:00")
        );
        assert_eq!(
            core.phase_time(Phase::MonthEnd, m("202402")).unwrap(),
            ts("2024-02-29T17:00:00+09:00")
        );
        assert_eq!(
            core.phase_time(Phase::Payment, m("202512")).unwrap(),
            ts("2026-01-15T17:00:00+09:00")
        );
        // The 審査月 stays the month of the latest opened window.
        assert_eq!(
            core.review_month(ts("2025-06-30T17:00:00+09:00")).unwrap(),
            m("202506")
        );
        assert_eq!(
            core.review_month(ts("2025-06-01T00:00:00+09:00")).unwrap(),
            m("202506")
        );
        drop(sim);

        config.notices.month_end_day = DayOfMonth::Day(28);
        config.notices.month_end_time = "24:00".into();
        config.notices.payment_day = DayOfMonth::Last;
        config.window.open_day = 3;
        config.window.close_day = 12;
        let sim = Simulator::open(config).unwrap();
        let core = sim.core();
        assert_eq!(
            core.phase_time(Phase::MonthEnd, m("202502")).unwrap(),
            ts("2025-03-01T00:00:00+09:00")
        );
        assert_eq!(
            core.phase_time(Phase::Payment, m("202501")).unwrap(),
            ts("2025-02-28T17:00:00+09:00")
        );
        assert_eq!(
            core.review_month(ts("2025-06-02T10:00:00+09:00")).unwrap(),
            m("202505")
        );
    }
}
