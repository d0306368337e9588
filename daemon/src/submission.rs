//! The submission record: one dropped file, its bytes' hash, its check findings, and its way to
//! the federation (state, attempts, receipt, 受付 result), as stored in redb.
//!
//! Invariants: a submission's `id` is also its idempotency key; it is chosen once at intake and
//! never changes. Every state change goes through [`Submission::transition`], which appends to
//! the history, so the timeline shown to people is complete.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::claim::{Finding, Month, OfficeNumber};

/// The identity of a submission, and the `Idempotency-Key` sent with it. A UUIDv7, so that ids
/// sort in the order files were taken.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubmissionId(String);

impl SubmissionId {
    /// A new, unique id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps an id read back from the store or typed by a person.
    pub fn from_string(s: String) -> Self {
        Self(s)
    }
}

impl Default for SubmissionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SubmissionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a submission stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Checked, committed, waiting to be sent.
    Queued,
    /// A request is (or may have been) on its way; after a crash this is reconciled with the
    /// gateway by idempotency key before anything is sent again.
    Sending,
    /// The gateway returned a receipt (到達 ○); waiting for the 受付 result.
    Arrived,
    /// 受付 ○.
    Accepted,
    /// 受付 △: accepted, but some 明細書 will come back as 返戻.
    AcceptedWithReturns,
    /// 到達 or 受付 ×: the federation refused the file; it must be corrected and sent again.
    Rejected,
    /// Withdrawn (取消) at the federation.
    Withdrawn,
    /// Valid, but the reception window is closed: sent when it opens.
    Held,
    /// Refused by the checker before sending; the file is in the error folder.
    Refused,
    /// The same bytes were already taken; not sent again.
    Duplicate,
    /// The gateway refused it for a reason a person must resolve (credentials, certificate, …).
    FailedNeedsAttention,
}

impl State {
    /// Every state, in the order of the workflow.
    pub const ALL: [State; 11] = [
        State::Queued,
        State::Sending,
        State::Arrived,
        State::Accepted,
        State::AcceptedWithReturns,
        State::Rejected,
        State::Withdrawn,
        State::Held,
        State::Refused,
        State::Duplicate,
        State::FailedNeedsAttention,
    ];

    /// The state named `name` (its [`State::as_str`]).
    pub fn from_name(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True when nothing more will happen without a person.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            State::Queued | State::Sending | State::Arrived | State::Held
        )
    }

    /// The name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Sending => "sending",
            State::Arrived => "arrived",
            State::Accepted => "accepted",
            State::AcceptedWithReturns => "accepted_with_returns",
            State::Rejected => "rejected",
            State::Withdrawn => "withdrawn",
            State::Held => "held",
            State::Refused => "refused",
            State::Duplicate => "duplicate",
            State::FailedNeedsAttention => "failed_needs_attention",
        }
    }

    /// What a clerk reads.
    pub fn label_ja(self) -> &'static str {
        match self {
            State::Queued => "送信待ち",
            State::Sending => "送信中",
            State::Arrived => "到達済（受付結果待ち）",
            State::Accepted => "受付済 ○",
            State::AcceptedWithReturns => "受付済 △（返戻あり）",
            State::Rejected => "受付不可 ×",
            State::Withdrawn => "取消済",
            State::Held => "保留（受付期間外）",
            State::Refused => "エラー（送信していません）",
            State::Duplicate => "重複（送信していません）",
            State::FailedNeedsAttention => "要対応（送信できません）",
        }
    }

    /// The same in English.
    pub fn label_en(self) -> &'static str {
        match self {
            State::Queued => "waiting to be sent",
            State::Sending => "sending",
            State::Arrived => "arrived (waiting for the reception result)",
            State::Accepted => "accepted ○",
            State::AcceptedWithReturns => "accepted △ (with returns)",
            State::Rejected => "rejected ×",
            State::Withdrawn => "withdrawn",
            State::Held => "held (outside the reception window)",
            State::Refused => "refused by the check (not sent)",
            State::Duplicate => "duplicate (not sent)",
            State::FailedNeedsAttention => "needs a person (cannot be sent)",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message for people, in Japanese and English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The catalogue code that explains it (`relay.held`); none in records written before
    /// the catalogue existed.
    #[serde(default)]
    pub code: Option<String>,
    /// Japanese.
    pub ja: String,
    /// English.
    pub en: String,
}

impl Note {
    /// A note explained by the catalogue entry `code`.
    pub fn new(code: admin_ui::help::Code, ja: impl Into<String>, en: impl Into<String>) -> Note {
        Note {
            code: Some(code.as_str().to_owned()),
            ja: ja.into(),
            en: en.into(),
        }
    }
}

/// An error item reported by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayIssue {
    /// Record number, when the gateway names one.
    #[serde(default)]
    pub record_no: Option<u32>,
    /// The gateway's code.
    pub code: String,
    /// The gateway's message.
    pub message: String,
}

/// The gateway's receipt: proof that the federation has the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// 受付番号 assigned by the gateway.
    pub receipt_id: String,
    /// When it arrived, as the gateway says (RFC 3339).
    pub arrived_at: String,
    /// `arrived` or `arrival_failed`.
    pub arrival_status: String,
    /// 到達 errors, if it failed.
    #[serde(default)]
    pub arrival_errors: Vec<GatewayIssue>,
    /// When this daemon stored the receipt.
    pub stored_at: Timestamp,
}

/// The 受付 result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reception {
    /// The gateway's status word.
    pub status: String,
    /// ○, △ or ×.
    pub mark: Option<String>,
    /// The gateway's reasons for △ or ×.
    #[serde(default)]
    pub errors: Vec<GatewayIssue>,
    /// When the gateway last changed it (RFC 3339).
    pub updated_at: String,
}

/// One try at talking to the gateway about this submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// What was done: `send` or `reconcile`.
    pub action: String,
    /// When it started.
    pub started_at: Timestamp,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// What came of it, in a few words (`receipt R…`, `http 503`, `connect refused` …).
    pub outcome: String,
    /// Whether the gateway gave a usable answer (a receipt, a status, a definite refusal).
    #[serde(default)]
    pub answered: bool,
}

/// One entry of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// When.
    pub at: Timestamp,
    /// The state it entered.
    pub state: State,
    /// Why, for people.
    pub reason: String,
}

/// One dropped file and everything that happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// Identity and idempotency key.
    pub id: SubmissionId,
    /// The file's name as dropped.
    pub file_name: String,
    /// The 8.3 name it is sent under when `file_name` is not one the federation accepts
    /// (claim-format.md §4); `None` when it is sent under its own name.
    #[serde(default)]
    pub send_name: Option<String>,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    /// Size of the file.
    pub size_bytes: u64,
    /// When intake took the file.
    pub taken_at: Timestamp,
    /// 事業所番号 from the control record, when readable.
    pub office_number: Option<OfficeNumber>,
    /// 処理対象年月 from the control record, when readable.
    pub processing_month: Option<Month>,
    /// データ種別 from the control record, when readable.
    pub data_type: Option<String>,
    /// Where it stands.
    pub state: State,
    /// The checker's findings (errors and warnings).
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// For a duplicate: the submission that has the same bytes.
    #[serde(default)]
    pub duplicate_of: Option<SubmissionId>,
    /// The gateway's receipt, once sent.
    #[serde(default)]
    pub receipt: Option<Receipt>,
    /// The 受付 result, once known.
    #[serde(default)]
    pub reception: Option<Reception>,
    /// Every try at the gateway.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Every state it went through.
    #[serde(default)]
    pub history: Vec<Transition>,
    /// Not before this time is the next send or poll due.
    #[serde(default)]
    pub next_action_at: Option<Timestamp>,
    /// Where the file was moved to, relative to the drop folder; `None` while it is still in
    /// the drop folder (only between the commit and the move).
    #[serde(default)]
    pub moved_to: Option<String>,
    /// The latest explanation for people (why it is held, refused or needs attention).
    #[serde(default)]
    pub note: Option<Note>,
}

impl Submission {
    /// A file just taken from the drop folder: a new id, nothing known of it yet but its bytes'
    /// hash and size. Its first state comes with the first `transition`.
    pub fn new(file_name: String, sha256: String, size_bytes: u64, taken_at: Timestamp) -> Self {
        Submission {
            id: SubmissionId::new(),
            file_name,
            send_name: None,
            sha256,
            size_bytes,
            taken_at,
            office_number: None,
            processing_month: None,
            data_type: None,
            state: State::Queued,
            findings: vec![],
            duplicate_of: None,
            receipt: None,
            reception: None,
            attempts: vec![],
            history: vec![],
            next_action_at: None,
            moved_to: None,
            note: None,
        }
    }

    /// Moves to `state`, recording when and why.
    pub fn transition(&mut self, state: State, reason: impl Into<String>, at: Timestamp) {
        self.state = state;
        self.history.push(Transition {
            at,
            state,
            reason: reason.into(),
        });
    }

    /// The name the gateway sees.
    pub fn name_sent(&self) -> &str {
        self.send_name.as_deref().unwrap_or(&self.file_name)
    }

    /// How many times the file was sent (reconciliations do not count).
    pub fn send_attempts(&self) -> usize {
        self.attempts.iter().filter(|a| a.action == "send").count()
    }

    /// How many of the latest attempts in a row got no usable answer (for backoff).
    pub fn consecutive_failures(&self) -> u32 {
        self.attempts
            .iter()
            .rev()
            .take_while(|a| !a.answered)
            .count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_ordered() {
        let a = SubmissionId::new();
        let b = SubmissionId::new();
        assert_ne!(a, b);
        assert!(a < b, "{a} {b}");
    }

    #[test]
    fn final_states() {
        for s in [State::Queued, State::Sending, State::Arrived, State::Held] {
            assert!(!s.is_final(), "{s}");
        }
        for s in [
            State::Accepted,
            State::AcceptedWithReturns,
            State::Rejected,
            State::Withdrawn,
            State::Refused,
            State::Duplicate,
            State::FailedNeedsAttention,
        ] {
            assert!(s.is_final(), "{s}");
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.as_str().into())
            );
        }
    }
}
