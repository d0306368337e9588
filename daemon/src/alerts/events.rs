//! One-time events, recorded inside the store transaction that makes them true: a submission
//! entering `refused`, `failed_needs_attention` or `rejected`, a newly stored 返戻一覧 with
//! rows, and the first payment-cycle notice of a month for an office.
//!
//! Invariant: an event is queued in the same transaction as the state change or notice that
//! causes it, under a key that names it (`claim_refused/<submission id>`), so it is told
//! exactly once however often the change is retried or the notice is listed again. Messages
//! carry counts, file names and links only: never an insured person's number or name.

use redb::WriteTransaction;

use super::outbox::{Message, Phase};
use crate::claim::Severity;
use crate::notice::{self, Group as NoticeGroup};
use crate::returns::Derived;
use crate::store::StoreError;
use crate::submission::{State, Submission};

/// The message for a submission that has just entered `sub.state`, if that state needs a
/// person.
pub fn submission_message(sub: &Submission) -> Option<Message> {
    let office = sub.office_number.as_ref().map(|o| o.to_string());
    let offices: Vec<String> = office.iter().cloned().collect();
    let errors = sub
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let file = &sub.file_name;
    let link = Some(format!("/submissions/{}", sub.id));
    let note_ja = sub.note.as_ref().map(|n| n.ja.as_str()).unwrap_or_default();
    let note_en = sub.note.as_ref().map(|n| n.en.as_str()).unwrap_or_default();
    let (kind, severity, ja, en) = match sub.state {
        State::Refused => (
            "claim_refused",
            "error",
            format!(
                "請求ファイル「{file}」にエラーが {errors} 件あり、国保連には送信していません。管理画面でエラーの内容を確認し、請求ソフトで直してから投入フォルダーに保存し直してください。"
            ),
            format!(
                "The claim file \"{file}\" has {errors} error(s) and was not sent to the federation. See the errors on the admin UI, correct them in the billing software and save the file to the drop folder again."
            ),
        ),
        State::FailedNeedsAttention => (
            "claim_failed",
            "error",
            format!(
                "請求ファイル「{file}」を国保連に送信できません。理由: {note_ja} 直したあと、管理画面から再送できます。"
            ),
            format!(
                "The claim file \"{file}\" cannot be sent to the federation. Reason: {note_en} Once fixed, you can resend it from the admin UI."
            ),
        ),
        State::Rejected => (
            "claim_rejected",
            "error",
            format!(
                "請求ファイル「{file}」は国保連の受付結果が「受付不可（×）」でした。管理画面で受付結果を確認し、請求ソフトで直して再送してください。"
            ),
            format!(
                "The federation rejected the claim file \"{file}\" (受付不可 ×). See the reception result on the admin UI, correct it and send it again."
            ),
        ),
        _ => return None,
    };
    Some(Message::new(
        format!("{kind}/{}", sub.id),
        Phase::Event,
        kind,
        severity,
        offices,
        ja,
        en,
        link,
        jiff::Timestamp::now(),
    ))
}

/// Queues the event for a submission whose state changed from `before` (inside the store
/// transaction that changed it).
pub(crate) fn on_submission(
    txn: &WriteTransaction,
    before: Option<State>,
    sub: &Submission,
) -> Result<(), StoreError> {
    if before == Some(sub.state) {
        return Ok(());
    }
    if let Some(m) = submission_message(sub) {
        crate::store::enqueue_event_in(txn, &m)?;
    }
    Ok(())
}

/// The messages for newly stored notices: one per 返戻一覧 with rows, one per office and month
/// for the payment cycle.
pub fn notice_messages(new: &[Derived]) -> Vec<Message> {
    let mut out = Vec::new();
    for d in new {
        let r = &d.record;
        let office = r.office_number.clone();
        let month = r
            .processing_month()
            .map(|m| (m.to_japanese(), m.to_string()))
            .unwrap_or_else(|| (r.processing_month.clone(), r.processing_month.clone()));
        let link = Some(format!("/notices/{}", r.notice_id));
        match notice::group(&r.kind_id) {
            NoticeGroup::Returns if matches!(r.kind_id.as_str(), "7411" | "7421") => {
                let rows = d
                    .parsed
                    .as_ref()
                    .map(|p| notice::return_rows(p).len())
                    .unwrap_or(0);
                if rows == 0 {
                    continue;
                }
                out.push(Message::new(
                    format!("returns_new/{}", r.notice_id),
                    Phase::Event,
                    "returns_new",
                    "warning",
                    vec![office],
                    format!(
                        "{} 審査分の返戻（保留）一覧が届き、{rows} 件の返戻・保留があります。管理画面の「返戻」で内容を確認し、直して再請求してください。",
                        month.0
                    ),
                    format!(
                        "The returns list for {} has arrived with {rows} returned or held statement(s). See them on the Returns page, correct them and claim again.",
                        month.1
                    ),
                    Some("/returns".to_owned()),
                    jiff::Timestamp::now(),
                ));
            }
            NoticeGroup::Payment => {
                out.push(Message::new(
                    format!("payment_notice/{office}/{}", r.processing_month),
                    Phase::Event,
                    "payment_notice",
                    "info",
                    vec![office],
                    format!(
                        "{} 審査分の支払の通知（{}）が届きました。管理画面の「通知」で確認してください。",
                        month.0,
                        notice::kind(&r.kind_id).map_or(r.kind_id.as_str(), |k| k.title_ja)
                    ),
                    format!(
                        "A payment notice for {} has arrived ({}). See it on the Notices page.",
                        month.1,
                        notice::kind(&r.kind_id).map_or(r.kind_id.as_str(), |k| k.title_en)
                    ),
                    link,
                    jiff::Timestamp::now(),
                ));
            }
            _ => {}
        }
    }
    out
}

/// Queues the events of newly stored notices (inside the store transaction that stores them).
pub(crate) fn on_notices(txn: &WriteTransaction, new: &[Derived]) -> Result<(), StoreError> {
    for m in notice_messages(new) {
        crate::store::enqueue_event_in(txn, &m)?;
    }
    Ok(())
}
